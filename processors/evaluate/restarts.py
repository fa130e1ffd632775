"""Restarts, replayed in memory: the alert events of a stream cut by a processor restart,
against the same stream uninterrupted (pure).

A processor killed at arrival time C and started again gets back what ``processors.app`` gives
it: the open episodes (``processors.open_alerts``), each device's last checkpoint, written at
K < C (``processors.checkpoints``: detector states and the rules' learning), and a replay of
the readings that arrived in [C - warmup, C) with its output suppressed; then it goes on from
C. ``cut_runs`` does that for several cuts of one stream beside one uninterrupted engine, and
``compare`` sets the (alert id, state) pairs each cut run sent against the uninterrupted
run's:

- ``missing``: an episode the restart never raised, escalated or cleared;
- ``extra``: a raise under an id the uninterrupted run never used (a second alert for one
  episode, or a false one), or a clear or escalation it never sent;
- ``moved``: the same (kind, target, state) on both sides under other ids, that is an episode
  raised again with another start, and by how much event time;
- ``late``: the same (alert id, state), sent later in event time.

The simulator's stream (``stream``) has every fault kind and the transport's duplicates,
delays and clock skew. Deterministic: the same stream and cuts give the same result.

Example:
    >>> recs, city = stream(seed=2, hours=2.0, rate=0.3)
    >>> runs = cut_runs(recs, city, RulesConfig(), cuts=[len(recs) // 2])
    >>> [compare(r).ok for r in runs]
    [True]
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from processors.alerts import AlertEvent, Episode
from processors.checkpoints import decode, device_record
from processors.clock import progress
from processors.config import RulesConfig
from processors.engine import Engine
from processors.open_alerts import open_episodes

NS = 1_000_000_000
Arrival = tuple[float, dict[str, Any]]  # (arrival time, epoch s; canonical record)
Key = tuple[str, str]  # (alert id, state)


def stream(
    seed: int = 1, hours: float = 6.0, rate: float = 0.3, scale: int = 1
) -> tuple[list[Arrival], Any]:
    """The simulator's readings in arrival order, decoded as the gateway does, and its city."""
    from ingest.decode import decode_message
    from ingest.readings import from_record, to_record
    from ingest.simulator.config import SimConfig
    from ingest.simulator.engine import Simulation

    cfg = SimConfig(seed=seed, scale=scale, sim_seconds=hours * 3600, fault_rate=rate)
    sim = Simulation(cfg, now=1_717_243_200.0)
    out: list[Arrival] = []
    for m in sim.messages():
        if m.kind != "reading":
            continue
        res = decode_message(m.topic, m.payload, datetime.fromtimestamp(m.t, UTC))
        out.extend((m.t, from_record(to_record(r))) for r in res.readings)
    return out, sim.city


@dataclass
class CutRun:
    """One cut: where, what the uninterrupted run sent before and after it, and what the
    restarted run sent after it."""

    cut: int  # index of the first record not committed before the kill
    at: float  # its arrival time
    before: list[AlertEvent]
    whole_after: list[AlertEvent]
    resumed: list[AlertEvent] = field(default_factory=list)


@dataclass
class RestartDiff:
    missing: list[AlertEvent]
    extra: list[AlertEvent]
    moved: list[tuple[AlertEvent, float]]  # (the restarted run's event, its lag in s)
    late: list[tuple[AlertEvent, float]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.moved or self.late)

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for name, evs in (("missing", self.missing), ("extra", self.extra)):
            for e in evs:
                out[e.kind][f"{name} {e.state}"] += 1
        for name, pairs in (("moved", self.moved), ("late", self.late)):
            for e, _ in pairs:
                out[e.kind][f"{name} {e.state}"] += 1
        return {k: dict(v) for k, v in out.items()}


class _Clocked:
    """An engine ticked as the app ticks it: by the batches' lower quartile of event time
    (processors.clock), not by the newest reading (a device with a skewed clock would make
    every vehicle look silent), and not during the warm-up replay."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.wm = 0

    def run(self, chunk: list[dict[str, Any]], *, replay: bool = False) -> list[AlertEvent]:
        out = self.eng.process(chunk, tick=False, replay=replay)
        self.wm = max(self.wm, progress(chunk)[0])
        if replay:
            return []
        self.eng.tick(self.wm, out)
        return out.events


def _checkpoint(eng: Engine, last_ts: dict[str, int]) -> dict[str, bytes]:
    """Every device's record as ``Checkpoints`` writes it (encoded: the state is copied)."""
    series = eng.series_of(last_ts)
    records = {dev: device_record(eng, dev, ts, series.get(dev, ())) for dev, ts in last_ts.items()}
    return {dev: rec for dev, rec in records.items() if rec is not None}


def _open_episodes(events: Iterable[AlertEvent]) -> dict[tuple[str, str], Episode]:
    """What the open-alerts topic holds after ``events``: the latest event per (kind, target)."""
    latest = {(e.kind, e.target): e.to_json() for e in events}
    return open_episodes(latest.values())


def cut_runs(
    recs: list[Arrival],
    city: Any,
    cfg: RulesConfig,
    cuts: list[int],
    *,
    batch_s: float = 5.0,
    warmup_s: float = 900.0,
    checkpoint_lag_s: float = 300.0,
) -> list[CutRun]:
    """One uninterrupted engine over ``recs``, and for each cut (a record index) a restarted
    engine from there; each cut's checkpoint is taken ``checkpoint_lag_s`` of arrival time
    before it (half the default 600 s period).

    Batches are what arrived in ``batch_s`` (the app's are 100 ms of lingering, or 20,000
    records): batches of a fixed count spanned half an hour at night, and a silence that
    ended within one batch was never seen by a tick. Cuts, checkpoints and replays start
    at a batch, so the restarted run's batches are the uninterrupted run's."""
    times = [t for t, _ in recs]
    bounds = [0]
    bounds += [i for i in range(1, len(recs)) if times[i] // batch_s != times[i - 1] // batch_s]
    bounds.append(len(recs))

    def bound(i: int) -> int:
        return bounds[bisect_right(bounds, i) - 1]

    cuts = sorted({bound(c) for c in cuts if 0 < c < len(recs)} - {0})
    ckpt_at: dict[int, list[int]] = defaultdict(list)
    for c in cuts:
        ckpt_at[bound(bisect_left(times, times[c] - checkpoint_lag_s, hi=c))].append(c)
    whole = _Clocked(Engine(cfg, city))
    events: list[AlertEvent] = []
    last_ts: dict[str, int] = {}
    snaps: dict[int, dict[str, bytes]] = {}  # cut -> checkpoint
    at_bound: dict[int, int] = {}  # batch start -> events sent before it
    for start, stop in pairwise(bounds):
        if start in ckpt_at:
            taken = _checkpoint(whole.eng, last_ts)
            snaps.update((c, taken) for c in ckpt_at[start])
        at_bound[start] = len(events)
        chunk = [r for _, r in recs[start:stop]]
        events += whole.run(chunk)
        for r in chunk:
            last_ts[r["device_id"]] = max(last_ts.get(r["device_id"], 0), r["ts"])
    runs = []
    for c in cuts:
        run = CutRun(c, times[c], events[: at_bound[c]], events[at_bound[c] :])
        eng = Engine(cfg, city)
        for dev, blob in snaps[c].items():
            snap = decode(blob, eng.detector_name)
            if snap is not None:
                eng.restore(dev, *snap)
        eng.alerts.adopt(_open_episodes(run.before))
        clocked = _Clocked(eng)
        first = bound(bisect_left(times, run.at - warmup_s, hi=c))
        for start, stop in pairwise(bounds[bounds.index(first) :]):
            chunk = [r for _, r in recs[start:stop]]
            if start < c:
                clocked.run(chunk, replay=True)
            else:
                run.resumed += clocked.run(chunk)
        runs.append(run)
    return runs


def compare(run: CutRun) -> RestartDiff:
    """The restarted run's events against the uninterrupted run's (see module)."""
    sent = {(e.alert_id, e.state): e for e in run.before}
    want = {(e.alert_id, e.state): e for e in run.whole_after}
    got: dict[Key, AlertEvent] = {}
    for e in run.resumed:
        key = (e.alert_id, e.state)
        if key not in sent:  # processors.published: not sent twice
            got.setdefault(key, e)
    for key in list(want):
        if key in sent:
            del want[key]  # a re-send of the uninterrupted run's
    late = [(e, (e.ts - want[k].ts) / NS) for k, e in got.items() if k in want]
    late = [(e, lag) for e, lag in late if lag]
    missing = [e for k, e in want.items() if k not in got]
    extra = [e for k, e in got.items() if k not in want]
    # The same (kind, target, state) under another id: an episode that started again.
    spare: dict[tuple[str, str, str], list[AlertEvent]] = defaultdict(list)
    for e in missing:
        spare[(e.kind, e.target, e.state)].append(e)
    moved, still_extra = [], []
    for e in extra:
        twins = spare.get((e.kind, e.target, e.state))
        if twins:
            moved.append((e, (e.ts - twins.pop(0).ts) / NS))
        else:
            still_extra.append(e)
    missing = [e for twins in spare.values() for e in twins]
    return RestartDiff(missing, still_extra, moved, late)
