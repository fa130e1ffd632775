"""Scorecard: score alerts against the simulator's ground truth (pure).

An alert — counted once, by its ``raised`` event — matches a fault when kind and target are
equal and its episode start lies in [fault.start − 1 reporting interval, (fault.end or the
end of the run) + the kind's detection allowance] (docs/faults.md). Per kind: recall =
faults matched by at least one alert / faults; precision = alerts matching some fault /
alerts; detection delay = the first matching alert's raise time (its ``ts``, device time; the
episode start if absent) − fault start, as a median and a nearest-rank p95, in seconds and in
the family's reporting intervals. Alerts whose episode starts more than an hour outside the
simulated window belong to another run and are ignored (and counted).

Example:
    >>> f = TruthFault("f1", "bin_fire", "bin-1", "bin", 1000.0, 2000.0)
    >>> a = AlertRec("a1", "bin_fire", "bin-1", episode_start=1100.0, raised_at=1100.0)
    >>> card = score([f], [a], sim_start=0.0, sim_end=5000.0)
    >>> s = card.kinds["bin_fire"]
    >>> (s.recall, s.precision, s.median_delay_s)
    (1.0, 1.0, 100.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from citywatch.citymodel import DEFAULT_INTERVALS_S
from ingest.simulator.truth import CONTRACT_KINDS, parse_iso

NS: Final = 1_000_000_000
RECALL_TARGET: Final = 0.98
PRECISION_TARGET: Final = 0.95
FOREIGN_MARGIN_S: Final = 3600.0
MISSING_LISTED: Final = 20
KIND_FAMILY: Final[dict[str, str]] = {
    "lamp_out": "streetlight",
    "day_burn": "streetlight",
    "circuit_outage": "streetlight",
    "lamp_degradation": "streetlight",
    "voltage_out_of_band": "streetlight",
    "bin_overflow": "bin",
    "bin_fire": "bin",
    "bin_knocked_over": "bin",
    "gps_jump": "vehicle",
    "illegal_dump": "vehicle",
    "daytime_hauling": "vehicle",
    "corridor_violation": "vehicle",
    "dust_exceedance": "dust",
    "night_noise": "dust",
    "stuck_sensor": "dust",
    "sensor_drift": "dust",
}
# How long after a fault's end an alert may still start and count (seconds); the rule's
# own window plus slack. Never less than 4 reporting intervals of the family.
DEFAULT_ALLOWANCE_S: Final[dict[str, float]] = {
    "lamp_out": 900.0,
    "day_burn": 1800.0,
    "circuit_outage": 900.0,
    "lamp_degradation": 1200.0,
    "voltage_out_of_band": 900.0,
    "bin_overflow": 1800.0,
    "bin_fire": 1800.0,
    "bin_knocked_over": 1800.0,
    "gps_jump": 60.0,
    "illegal_dump": 900.0,
    "daytime_hauling": 300.0,
    "corridor_violation": 300.0,
    "dust_exceedance": 1800.0,
    "night_noise": 1800.0,
    "stuck_sensor": 900.0,
    "sensor_drift": 3600.0,
    "device_silence": 0.0,
}


@dataclass(frozen=True, slots=True)
class TruthFault:
    fault_id: str
    kind: str
    target: str
    family: str
    start: float
    end: float | None


@dataclass(frozen=True, slots=True)
class AlertRec:
    alert_id: str
    kind: str
    target: str
    episode_start: float  # seconds (device time)
    raised_at: float  # seconds: the raised event's ts
    family: str = ""


def faults_from_truth(entries: Iterable[Mapping[str, Any]]) -> list[TruthFault]:
    """Contract faults of a truth file (transport entries are the ledger's business)."""
    out = []
    for e in entries:
        if e["kind"] not in CONTRACT_KINDS:
            continue
        end = e.get("end")
        out.append(
            TruthFault(
                e["fault_id"],
                e["kind"],
                e["target"],
                e["family"],
                parse_iso(e["start"]),
                None if end is None else parse_iso(end),
            )
        )
    return out


def alerts_from_events(events: Iterable[Mapping[str, Any]]) -> list[AlertRec]:
    """One ``AlertRec`` per alert id, from its first ``raised`` event (times in ns)."""
    seen: dict[str, AlertRec] = {}
    for ev in events:
        if ev.get("state") != "raised":
            continue
        aid = str(ev.get("alert_id"))
        if aid in seen:
            continue
        ep = ev.get("episode_start")
        ts = ev.get("ts", ep)
        if ep is None or ts is None:
            continue
        seen[aid] = AlertRec(
            aid,
            str(ev.get("kind")),
            str(ev.get("target")),
            int(ep) / NS,
            int(ts) / NS,
            str(ev.get("family") or ""),
        )
    return list(seen.values())


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class KindScore:
    kind: str
    interval_s: float
    faults: int = 0
    detected: int = 0
    alerts: int = 0
    matched_alerts: int = 0
    delays_s: list[float] = field(default_factory=list)
    delays_iv: list[float] = field(default_factory=list)  # in the fault family's intervals
    missed: list[str] = field(default_factory=list)  # fault ids
    false_alerts: list[str] = field(default_factory=list)  # alert ids

    @property
    def recall(self) -> float | None:
        return self.detected / self.faults if self.faults else None

    @property
    def precision(self) -> float | None:
        return self.matched_alerts / self.alerts if self.alerts else None

    @property
    def median_delay_s(self) -> float | None:
        return percentile(self.delays_s, 0.5)

    @property
    def p95_delay_s(self) -> float | None:
        return percentile(self.delays_s, 0.95)

    @property
    def median_delay_iv(self) -> float | None:
        return percentile(self.delays_iv, 0.5)

    @property
    def p95_delay_iv(self) -> float | None:
        return percentile(self.delays_iv, 0.95)

    @property
    def ok(self) -> bool:
        recall_ok = self.recall is None or self.recall >= RECALL_TARGET
        precision_ok = self.precision is None or self.precision >= PRECISION_TARGET
        return recall_ok and precision_ok and not (self.faults == 0 and self.alerts > 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "faults": self.faults,
            "detected": self.detected,
            "recall": self.recall,
            "alerts": self.alerts,
            "matched_alerts": self.matched_alerts,
            "precision": self.precision,
            "median_delay_s": self.median_delay_s,
            "p95_delay_s": self.p95_delay_s,
            "median_delay_intervals": self.median_delay_iv,
            "p95_delay_intervals": self.p95_delay_iv,
            "missed": self.missed[:MISSING_LISTED],
            "false_alerts": self.false_alerts[:MISSING_LISTED],
            "ok": self.ok,
        }


@dataclass
class Scorecard:
    kinds: dict[str, KindScore]
    other_alerts: Counter[str] = field(default_factory=Counter)  # non-contract kinds
    ignored_alerts: int = 0  # outside the run's window

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds.values())


def score(
    faults: list[TruthFault],
    alerts: list[AlertRec],
    *,
    sim_start: float,
    sim_end: float,
    intervals_s: Mapping[str, float] | None = None,
    allowance_s: Mapping[str, float] | None = None,
) -> Scorecard:
    """Match alerts to faults (see the module docstring) and score every contract kind."""
    intervals = {**DEFAULT_INTERVALS_S, **(intervals_s or {})}
    allowance = {**DEFAULT_ALLOWANCE_S, **(allowance_s or {})}
    card = Scorecard({})

    def kind_score(kind: str, family: str) -> KindScore:
        ks = card.kinds.get(kind)
        if ks is None:
            iv = float(intervals.get(family or KIND_FAMILY.get(kind, ""), 0.0))
            ks = card.kinds[kind] = KindScore(kind, iv)
        return ks

    by_key: dict[tuple[str, str], list[TruthFault]] = {}
    for f in faults:
        by_key.setdefault((f.kind, f.target), []).append(f)
        kind_score(f.kind, f.family).faults += 1
    first_alert: dict[str, float] = {}  # fault id -> earliest raise time of a matching alert
    for a in sorted(alerts, key=lambda a: (a.raised_at, a.alert_id)):
        if a.kind not in CONTRACT_KINDS:
            card.other_alerts[a.kind] += 1
            continue
        if not sim_start - FOREIGN_MARGIN_S <= a.episode_start <= sim_end + FOREIGN_MARGIN_S:
            card.ignored_alerts += 1
            continue
        candidates = by_key.get((a.kind, a.target), [])
        ks = kind_score(a.kind, candidates[0].family if candidates else a.family)
        ks.alerts += 1
        matched = False
        for f in candidates:
            iv = float(intervals.get(f.family, 0.0))
            allow = max(allowance.get(a.kind, 0.0), 4 * iv)
            end = sim_end if f.end is None else f.end
            if f.start - iv <= a.episode_start <= end + allow:
                matched = True
                first_alert.setdefault(f.fault_id, a.raised_at)
        if matched:
            ks.matched_alerts += 1
        else:
            ks.false_alerts.append(a.alert_id)
    for f in faults:
        ks = card.kinds[f.kind]
        if f.fault_id in first_alert:
            ks.detected += 1
            delay = first_alert[f.fault_id] - f.start
            ks.delays_s.append(delay)
            iv = float(intervals.get(f.family, 0.0))
            if iv:
                ks.delays_iv.append(delay / iv)
        else:
            ks.missed.append(f.fault_id)
    return card
