"""Evaluation: score alerts against the simulator's ground truth, and account for every reading.

Scorecard (pure, ``score``): an alert — counted once, by its ``raised`` event — matches a
fault when kind and target are equal and its episode start lies in
[fault.start − 1 reporting interval, (fault.end or the end of the run) + the kind's
detection allowance] (docs/faults.md). Per kind: recall = faults matched by at least one
alert / faults; precision = alerts matching some fault / alerts; detection delay = the
first matching alert's raise time (its ``ts``, device time; the episode start if absent)
− fault start, as a median and a nearest-rank p95, in seconds and in the family's
reporting intervals. Alerts whose episode starts more than an hour outside the simulated
window belong to another run and are ignored (and counted).

Loss ledger (pure, ``compare``): readings acknowledged by Mosquitto (the simulator's ledger)
vs distinct (device_id, seq) found in Kafka ``citywatch.readings`` (records received since
the run started), in InfluxDB (the run's time range) and the dead-letter counts by reason
(vs the malformed messages the simulator sent), listing the first 20 missing ids.

I/O (``run_evaluation``): aiokafka from the beginning of each topic to its end offsets,
InfluxQL over HTTP with chunked responses; everything else is pure and unit-tested.

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
from pathlib import Path
from typing import Any, Final

import orjson

from citywatch.citymodel import DEFAULT_INTERVALS_S
from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from ingest.simulator.ledger import Ledger, RangeSet, ledger_path
from ingest.simulator.truth import CONTRACT_KINDS, parse_iso, read_truth

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


# -- loss ledger ---------------------------------------------------------------------------
@dataclass
class StageCount:
    stage: str
    present: int
    missing: int
    first_missing: list[str]
    extra: int  # readings of the ledger's devices that it does not know (other runs, bugs)


def compare(stage: str, acked: Mapping[str, RangeSet], found: Mapping[str, RangeSet]) -> StageCount:
    """How many acked readings a stage holds, which are missing (first 20), how many extra.

    Only the ledger's devices count as extra: other devices' readings belong to other
    producers (tests, other simulations) sharing the topic."""
    present = missing = extra = 0
    first: list[str] = []
    for device in sorted(acked):
        mine = acked[device]
        theirs = found.get(device) or RangeSet()
        n = mine.count_in(theirs)
        present += n
        lost = len(mine) - n
        missing += lost
        if lost and len(first) < MISSING_LISTED:
            first += [
                f"{device}#{s}" for s in mine.missing_from(theirs, MISSING_LISTED - len(first))
            ]
    for device, theirs in found.items():
        ours = acked.get(device)
        if ours is not None:
            extra += len(theirs) - theirs.count_in(ours)
    return StageCount(stage, present, missing, first, extra)


# -- I/O -----------------------------------------------------------------------------------
@dataclass
class Collected:
    """What the pipeline holds for this run (filled by ``collect``)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    kafka: dict[str, RangeSet] = field(default_factory=dict)
    influx: dict[str, RangeSet] | None = None
    dead: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    notes: list[str] = field(default_factory=list)


async def _read_topic(settings: Any, topic: str, handle: Any, limit_s: float) -> bool:
    """Feed every record of ``topic`` (beginning to current end) to ``handle``; False if
    ``limit_s`` ran out first."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return True
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return await read_to_end(consumer, handle, limit_s, max_records=20_000)
    finally:
        await consumer.stop()


async def _influx_readings(
    settings: Any, t0: float, t1: float, since_ns: int
) -> dict[str, RangeSet]:
    import httpx

    from citywatch.credentials import password

    s = settings.influx
    found: dict[str, RangeSet] = {}
    auth = {"u": s.admin_user, "p": password(settings, "influx")}
    async with httpx.AsyncClient(timeout=120.0) as client:
        for family in DEFAULT_INTERVALS_S:
            query = (
                f'SELECT "seq", "device_id", "received_at" FROM "{s.database}".'
                f'"{s.retention_policy}"."{family}" '
                f"WHERE time >= {int(t0 * NS)} AND time <= {int(t1 * NS)}"
            )
            params = {"q": query, "db": s.database, "epoch": "ns", "chunked": "true"}
            params["chunk_size"] = "20000"
            async with client.stream("GET", f"{s.url}/query", params={**params, **auth}) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if line.strip():
                        _influx_chunk(orjson.loads(line), since_ns, found)
    return found


def _influx_chunk(chunk: dict[str, Any], since_ns: int, found: dict[str, RangeSet]) -> None:
    for result in chunk.get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {result['error']}")
        for series in result.get("series", []):
            cols = series["columns"]
            i_seq, i_dev, i_rat = (cols.index(c) for c in ("seq", "device_id", "received_at"))
            for row in series["values"]:
                seq, dev, rat = row[i_seq], row[i_dev], row[i_rat]
                if seq is None or dev is None or (rat is not None and rat < since_ns):
                    continue
                found.setdefault(dev, RangeSet()).add(int(seq))


async def collect(
    settings: Any,
    *,
    since_ns: int,
    t0: float,
    t1: float,
    alerts_from_kafka: bool,
    use_kafka: bool,
    use_influx: bool,
    limit_s: float,
) -> Collected:
    """Read alerts, readings and dead letters from Kafka and readings from InfluxDB."""
    out = Collected()
    if use_kafka:
        k = settings.kafka

        def on_alert(rec: Any) -> None:
            # Only this run's alerts: an earlier run with the same seed covers the same
            # simulated window with the same alert ids and would be counted twice.
            if rec.timestamp * 1_000_000 >= since_ns:
                out.events.append(orjson.loads(rec.value))

        def on_reading(rec: Any) -> None:
            obj = orjson.loads(rec.value)
            if obj.get("received_at", 0) >= since_ns and obj.get("seq") is not None:
                out.kafka.setdefault(obj["device_id"], RangeSet()).add(int(obj["seq"]))

        def on_dead(rec: Any) -> None:
            headers = dict(rec.headers or ())
            if int(headers.get("received_at", b"0") or 0) >= since_ns:
                out.dead[headers.get("reason", b"?").decode(errors="replace")] += 1

        if alerts_from_kafka:
            out.complete &= await _read_topic(settings, k.alerts_topic, on_alert, limit_s)
        out.complete &= await _read_topic(settings, k.readings_topic, on_reading, limit_s)
        out.complete &= await _read_topic(settings, k.deadletter_topic, on_dead, limit_s)
    if use_influx:
        try:
            out.influx = await _influx_readings(settings, t0, t1, since_ns)
        except Exception as exc:  # report and go on: the scorecard is still useful
            out.notes.append(f"InfluxDB not counted: {exc}")
    return out


def run_evaluation(
    settings: Any,
    *,
    truth: Path,
    ledger: Path | None,
    city_model: Path | None,
    alerts_file: Path | None,
    use_kafka: bool,
    use_influx: bool,
    json_out: Path | None,
    timeout: float,
    console: Any,
) -> bool:
    """Read everything, score, print; True when every target is met and nothing was lost."""
    import asyncio

    entries = read_truth(truth)
    led = Ledger.load(ledger or ledger_path(truth))
    sim_start, sim_end = parse_iso(led.meta["sim_start"]), parse_iso(led.meta["sim_end"])
    since_ns = int((float(led.meta.get("wall_start", 0.0)) - 5.0) * NS)
    intervals: dict[str, float] = dict(DEFAULT_INTERVALS_S)
    model_path = city_model or (Path(led.meta["city_model"]) if "city_model" in led.meta else None)
    if model_path is not None and model_path.exists():
        from citywatch.citymodel import CityModel

        intervals.update(CityModel.load(model_path).intervals_s)
    got = asyncio.run(
        collect(
            settings,
            since_ns=since_ns,
            t0=sim_start - 3600,
            t1=sim_end + 3600,
            alerts_from_kafka=alerts_file is None,
            use_kafka=use_kafka,
            use_influx=use_influx,
            limit_s=timeout,
        )
    )
    if alerts_file is not None:
        got.events = [orjson.loads(x) for x in alerts_file.read_bytes().splitlines() if x.strip()]
    card = score(
        faults_from_truth(entries),
        alerts_from_events(got.events),
        sim_start=sim_start,
        sim_end=sim_end,
        intervals_s=intervals,
    )
    stages = []
    if use_kafka:
        stages.append(compare("kafka", led.acked, got.kafka))
    if got.influx is not None:
        stages.append(compare("influxdb", led.acked, got.influx))
    for note in got.notes:
        console.print(f"[yellow]{note}[/]")
    render(console, card, led, stages, got.dead, got.complete)
    if json_out is not None:
        kinds = sorted(card.kinds.values(), key=lambda k: k.kind)
        report = {
            "kinds": [k.as_dict() for k in kinds],
            "other_alerts": dict(card.other_alerts),
            "ignored_alerts": card.ignored_alerts,
            "ledger": {
                "acked": led.readings_acked,
                "stages": [s.__dict__ for s in stages],
                "deadletter": dict(got.dead),
                "malformed_acked": dict(led.malformed_by_reason),
            },
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    lossless = all(s.missing == 0 for s in stages)
    return card.ok and lossless and got.complete


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _delays(ks: KindScore) -> str:
    """Median and p95 detection delay in whole seconds: ``"317 / 442 s"``."""
    if ks.median_delay_s is None or ks.p95_delay_s is None:
        return "–"
    return f"{ks.median_delay_s:.0f} / {ks.p95_delay_s:.0f} s"


def render(
    console: Any,
    card: Scorecard,
    led: Ledger,
    stages: list[StageCount],
    dead: Counter[str],
    complete: bool,
) -> None:
    """Print the scorecard, the loss ledger and the dead letters; each fits 80 columns.

    The scorecard leaves out the alert count and the delays in reporting intervals (both are
    in ``as_dict``) so that a log or an 80-column terminal shows every kind and figure whole;
    a kind below target is printed red and named under the table.
    """
    from rich import box
    from rich.table import Table

    t = Table(
        title=f"scorecard (targets: recall ≥ {RECALL_TARGET:.0%}, "
        f"precision ≥ {PRECISION_TARGET:.0%})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for col in ("kind", "faults", "found", "false", "recall", "precision", "delay p50 / p95"):
        t.add_column(col, justify="left" if col == "kind" else "right", no_wrap=True)
    kinds = sorted(card.kinds.values(), key=lambda k: CONTRACT_KINDS.index(k.kind))
    for ks in kinds:
        t.add_row(
            ks.kind if ks.ok else f"[red]{ks.kind}[/]",
            str(ks.faults),
            str(ks.detected),
            str(len(ks.false_alerts)),
            _pct(ks.recall),
            _pct(ks.precision),
            _delays(ks),
        )
    console.print(t)
    below = [ks.kind for ks in kinds if not ks.ok]
    if below:
        console.print(f"[red]below target:[/] {', '.join(below)}")
    elif kinds:
        console.print(f"[green]every kind at target[/] ({len(kinds)} kinds)")
    if card.other_alerts:
        console.print(f"other alert kinds (not scored): {dict(card.other_alerts)}")
    if card.ignored_alerts:
        console.print(f"alerts from outside this run's window (ignored): {card.ignored_alerts}")
    lt = Table(title="loss ledger (distinct device_id, seq)")
    for col in ("stage", "readings", "missing", "extra"):
        lt.add_column(col, justify="left" if col == "stage" else "right")
    lt.add_row("published (acked by Mosquitto)", f"{led.readings_acked:,}", "", "")
    for s in stages:
        lt.add_row(s.stage, f"{s.present:,}", f"{s.missing:,}", f"{s.extra:,}")
    console.print(lt)
    for s in stages:
        if s.first_missing:
            console.print(
                f"missing in {s.stage} (first {len(s.first_missing)}): "
                + ", ".join(s.first_missing)
            )
    sent = led.malformed_by_reason
    dt = Table(title="dead letters of this run, by reason")
    dt.add_column("reason")
    dt.add_column("dead-lettered", justify="right")
    dt.add_column("malformed sent", justify="right")
    for reason in sorted(set(dead) | set(sent)):
        dt.add_row(reason, str(dead.get(reason, 0)), str(sent.get(reason, 0)))
    console.print(dt)
    if not complete:
        console.print("[yellow]a Kafka topic was not read to its end before the timeout[/]")
