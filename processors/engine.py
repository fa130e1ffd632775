"""The processing core, free of I/O: records in; line protocol and alert events out.

For each canonical reading record: the rules of its family produce conditions, the alert
manager turns them into events, the configured detector scores the configured metrics, and the
reading becomes a line for InfluxDB. ``tick`` runs the time-based rules as event time (the
highest device ``ts`` seen) advances. The app (processors.app) does the Kafka and InfluxDB I/O.

Example:
    >>> from processors.config import RulesConfig
    >>> eng = Engine(RulesConfig())
    >>> out = eng.process([{"device_id": "bin-1", "family": "bin", "district": "n",
    ...                     "ts": 10**18, "received_at": 10**18, "fill_ratio": 0.4, "late": False}])
    >>> len(out.lines), out.events
    (1, [])
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from processors.alerts import AlertEvent, AlertManager, AlertPolicy
from processors.config import RulesConfig
from processors.detectors.base import Detector
from processors.detectors.features import Feature, build_features
from processors.detectors.registry import create
from processors.rules.base import Condition, Record, Rule
from processors.rules.overrides import LampOverrides
from processors.rules.registry import build_rules
from processors.sinks.lines import encode_fields, point_line, reading_line, series_prefix

FAMILIES = ("streetlight", "bin", "vehicle", "dust")


@dataclass(slots=True)
class Output:
    lines: list[str] = field(default_factory=list)  # to the default (raw) retention policy
    events: list[AlertEvent] = field(default_factory=list)
    kpi_lines: list[str] = field(default_factory=list)  # to the long-lived KPI policy


def alert_line(ev: AlertEvent) -> str:
    tags = {
        "kind": ev.kind,
        "severity": ev.severity,
        "family": ev.family,
        "district": ev.district,
        "target": ev.target,
        "state": ev.state,
    }
    fields: dict[str, Any] = {
        "alert_id": ev.alert_id,
        "message": ev.message,
        "episode_start": ev.episode_start,
        "target_type": ev.target_type,
    }
    if ev.value is not None:
        fields["value"] = float(ev.value)
    if ev.state == "cleared":
        # Time to clear, ready for a plain mean()/median() in the dashboards.
        fields["duration_s"] = (ev.ts - ev.episode_start) / 1e9
    return point_line("alerts", tags, fields, ev.ts)


class Engine:
    def __init__(self, cfg: RulesConfig, city: Any = None) -> None:
        self.cfg = cfg
        self.rules: list[Rule] = build_rules(cfg, city)
        self.by_family: dict[str, list[Rule]] = {
            fam: [r for r in self.rules if not r.families or fam in r.families] for fam in FAMILIES
        }
        self.alerts = AlertManager(
            AlertPolicy(cfg.alerts.clear_after_s, dict(cfg.alerts.escalate_after_s))
        )
        self.detector_name = cfg.detectors.name
        features = build_features(cfg)
        # Per family: (metric, feature or None = the value as reported), looked up once here.
        self.metrics: dict[str, tuple[tuple[str, Feature | None], ...]] = {
            fam: tuple((m, features.get((fam, m))) for m in ms)
            for fam, ms in cfg.detectors.metrics.items()
        }
        self.store_above = cfg.detectors.store_above
        self.detectors: dict[tuple[str, str], Detector] = {}
        # Checkpointed detector state waiting for its series' first reading (see restore), and
        # the restored series' checkpoint times: readings up to then are already learnt.
        self.pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self.resume: dict[tuple[str, str], int] = {}
        self.restored = 0
        self.restore_refused = 0
        # Rules that keep something of each device in the checkpoints (Rule.learns).
        self.learners: dict[str, Rule] = {r.name: r for r in self.rules if r.learns}
        self.watermark = 0
        self._conds: list[Condition] = []
        # Operators' lamp commands, so a lamp switched off on purpose is not "out".
        self.overrides = LampOverrides()
        for rule in self.rules:
            rule.use_overrides(self.overrides)

    def process(
        self,
        records: list[Record],
        out: Output | None = None,
        *,
        tick: bool = True,
        replay: bool = False,
    ) -> Output:
        """Run rules and detectors over records; ``tick=False`` leaves the clock to the caller
        (the app advances it by a watermark that holds back for lagging partitions).

        ``replay``: the warm-up replay after an assignment, which only rebuilds state. The run
        before judged these readings, with more history, and sent what it found: their
        conditions only bring the episodes it left open up to date, and send nothing
        (``AlertManager.replayed``). Applied at the next tick like live ones, as they were,
        they raised again an episode that run had raised and cleared (a truck off its
        corridor 10 minutes before the restart), under another id: the crews got it twice."""
        out = out or Output()
        conds = self._conds
        kept = len(conds)
        lines = out.lines
        resume = self.resume
        for rec in records:
            fam = rec["family"]
            for rule in self.by_family.get(fam, ()):
                rule.on_reading(rec, conds)
            ts = rec["ts"]
            if ts > self.watermark:
                self.watermark = ts
            for metric, feature in self.metrics.get(fam, ()):
                v = rec.get(metric)
                if v is None:
                    continue
                x = v if feature is None else feature(rec)
                if x is None:
                    continue
                key = (rec["device_id"], metric)
                det = self.detectors.get(key)
                if det is None:
                    det = self._new_detector(key)
                if resume:
                    until = resume.get(key)
                    if until is not None:
                        if ts <= until:
                            continue  # a replayed reading the checkpoint already holds
                        del resume[key]
                score = det.update(ts / 1e9, x)
                if score >= self.store_above:
                    # The series part is escaped per anomaly line, not cached per series: a
                    # cache held ~250 B for most device-metrics (most series store a score
                    # soon after their warm-up, against young records), an eighth of the
                    # 2 KiB state budget, while anomaly lines are a small share of all lines.
                    tags = {
                        "device_id": rec["device_id"],
                        "family": fam,
                        "metric": metric,
                        "district": rec["district"],
                    }
                    fields = {"score": float(score), "value": float(v)}
                    lines.append(f"{series_prefix('anomalies', tags)}{encode_fields(fields)} {ts}")
            lines.append(reading_line(rec))
        if replay:
            for c in conds[kept:]:
                self.alerts.replayed(c)
            del conds[kept:]
        if tick:
            self.tick(self.watermark, out)
        return out

    def _new_detector(self, key: tuple[str, str]) -> Detector:
        """A detector for a new series, with its checkpointed state when one is pending."""
        det = self.detectors[key] = create(self.detector_name)
        snap = self.pending.get(key[0]) if self.pending else None
        if snap is None:
            return det
        state = snap[1].pop(key[1], None)
        if not snap[1]:
            del self.pending[key[0]]
        if state is None:
            return det
        try:
            det.set_state(state)
        except (ValueError, TypeError, IndexError, OverflowError):
            # A checkpoint from another version or a damaged one: learn afresh, as without.
            self.restore_refused += 1
            det = self.detectors[key] = create(self.detector_name)
            return det
        self.restored += 1
        self.resume[key] = snap[0]
        return det

    def restore(
        self,
        device_id: str,
        ts: int,
        states: dict[str, Any],
        learnt: dict[str, Any] | None = None,
    ) -> None:
        """Hold a device's checkpointed detector states (by metric, learnt up to device time
        ``ts``) for its series' next readings, and give the rules what they had ``learnt``
        of it (by rule name) at once. The checkpoint replaces what this engine already has:
        either what this engine wrote when its partitions were revoked, or newer (another
        processor's, while that one held the partition).

        The engine does not hold the rules back from replayed readings the checkpoint already
        holds, as it does the detectors: most rules need the replay to rebuild their streaks
        (a reading learnt twice moves a baseline by one small EWMA step). A rule that restores
        a fault's state with its time (the bin rules, and those that keep their whole streak:
        lamp_degradation and the dust rules but stuck_sensor) skips those readings itself, and
        says which clears it is holding (``Rule.clearing``), which the alert manager takes."""
        for name, state in (learnt or {}).items():
            rule = self.learners.get(name)
            if rule is None:
                continue  # a rule switched off since
            try:
                rule.relearn(device_id, state)
            except (ValueError, TypeError, IndexError, KeyError, OverflowError):
                self.restore_refused += 1
            else:
                self.restored += 1
                for kind, target, since in rule.clearing(device_id):
                    self.alerts.quiet((kind, target), since)
        for metric in states:
            self.detectors.pop((device_id, metric), None)
            self.resume.pop((device_id, metric), None)
        if states:
            self.pending[device_id] = (ts, dict(states))

    def expire_pending(self, before_ns: int) -> None:
        """Forget checkpoints not taken up, and replay guards not passed, from before then."""
        for device in [d for d, (ts, _) in self.pending.items() if ts < before_ns]:
            del self.pending[device]
        for key in [k for k, ts in self.resume.items() if ts < before_ns]:
            del self.resume[key]

    def forget(self, devices: Container[str]) -> None:
        """Drop the rule state, detectors and open episodes of ``devices``, whose partitions
        another processor has taken over (their detectors were checkpointed on revocation)."""
        fleet: set[str] = set()
        for rule in self.rules:
            fleet.update(rule.forget(devices))
        for key in [k for k in self.detectors if k[0] in devices]:
            del self.detectors[key]
        for key in [k for k in self.resume if k[0] in devices]:
            del self.resume[key]
        for device in [d for d in self.pending if d in devices]:
            del self.pending[device]
        self.alerts.forget(devices)
        self.alerts.forget(fleet)

    def learnt(self, device_id: str) -> dict[str, Any]:
        """What the rules have learnt of a device, by rule name, for its checkpoint."""
        out = {}
        for name, rule in self.learners.items():
            state = rule.learnt(device_id)
            if state is not None:
                out[name] = state
        return out

    def series_of(self, devices: Container[str]) -> dict[str, list[tuple[str, Detector]]]:
        """The detectors of ``devices``, by device: (metric, detector)."""
        out: dict[str, list[tuple[str, Detector]]] = {}
        for (device, metric), det in self.detectors.items():
            if device in devices:
                out.setdefault(device, []).append((metric, det))
        return out

    def command(self, record: dict[str, Any]) -> bool:
        """Take one record of ``citywatch.commands``; True when it overrides lamp schedules."""
        return self.overrides.apply(record)

    def tick(self, now_ns: int, out: Output) -> None:
        conds = self._conds
        self.overrides.prune(now_ns)
        for rule in self.rules:
            rule.on_tick(now_ns, conds)
            # Rules that summarise (per-vehicle trips) hand over finished KPI points.
            kpis = getattr(rule, "kpi_points", None)
            if kpis is not None:
                for p in kpis(now_ns):
                    line = point_line(p["measurement"], p["tags"], p["fields"], p["ts"])
                    out.kpi_lines.append(line)
        for c in conds:
            for ev in self.alerts.apply(c):
                out.events.append(ev)
                out.lines.append(alert_line(ev))
        conds.clear()
