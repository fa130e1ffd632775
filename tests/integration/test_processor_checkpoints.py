"""A processor killed and restarted, or giving up partitions in a rebalance, hands on what its
detectors learnt (processors.checkpoints): the first anomaly after the hand-over is caught,
and nothing else is stored."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from citywatch import influxql
from citywatch.settings import Settings

from .helpers import (
    delete_topic,
    own_readings_topic,
    produce_and_wait_stored,
    wait_for,
    wait_log,
)

S = 1_000_000_000
DEVICES = 12
BEFORE, AFTER, SPIKE = 200, 40, 215  # points per device before and after the hand-over


def _readings(rid: str, t0: int, start: int, n: int) -> list[dict[str, Any]]:
    out = []
    for k in range(start, start + n):
        for d in range(DEVICES):
            ts = t0 + k * 300 * S
            value = 30 + 8 * math.sin(k / 15 + d) + (k * 7919 + d) % 11 / 5
            out.append(
                {
                    "device_id": f"dust-{rid}-{d}",
                    "family": "dust",
                    "district": f"ck{rid}",
                    "ts": ts,
                    "received_at": ts,
                    "late": False,
                    "seq": k,
                    "pm10_ugm3": round(value + (200.0 if k == SPIKE else 0.0), 3),
                    "noise_dba": 55.0,
                }
            )
    return out


async def _hand_over(
    s: Settings, spawn: Any, rid: str, checkpoint_s: str, fault: Any
) -> tuple[list[list[Any]], int]:
    """Readings before, ``fault`` (which returns the processor judging what comes after),
    readings after with a spike; returns the anomalies stored after, and the spike's time."""
    topic, on_topic = await own_readings_topic(s, rid)
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__CHECKPOINT_S": checkpoint_s,
        # The replay covers the last readings before the hand-over, not the whole history (as
        # 15 minutes would in a city, where 200 readings of a device take 17 hours).
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": "30",
    }
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    prefix = f"dust-{rid}-"
    try:
        p1 = spawn("process", "--instance", f"p1-{rid}", env=env, name="processor-1")
        await asyncio.to_thread(wait_log, p1, "processor p1-")
        await produce_and_wait_stored(
            on_topic, _readings(rid, t0, 0, BEFORE), "dust", "pm10_ugm3", prefix
        )
        await fault(p1, env)
        await produce_and_wait_stored(
            on_topic, _readings(rid, t0, BEFORE, AFTER), "dust", "pm10_ugm3", prefix
        )
        await asyncio.sleep(1)  # anomaly lines go in the same writes; allow a last batch
        found = influxql.series(
            s,
            f"SELECT score, device_id FROM anomalies WHERE device_id =~ /^{prefix}/ "
            f"AND time >= {t0 + BEFORE * 300 * S}",
        )
    finally:
        await delete_topic(s, topic)
    return [v for ser in found for v in ser["values"]], t0 + SPIKE * 300 * S


def _check_every_spike_and_nothing_else(rows: list[list[Any]], spike_ns: int, rid: str) -> None:
    at_spike = {r[2] for r in rows if r[0] == spike_ns}
    assert at_spike == {f"dust-{rid}-{d}" for d in range(DEVICES)}, rows
    assert len(rows) == DEVICES, f"anomalies besides the spikes: {rows}"


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "replay-only"])
async def test_restarted_processor_keeps_its_detectors(
    stack_settings: Settings, spawn: Any, rid: str, checkpoints: bool
) -> None:
    restarted: list[Any] = []

    async def kill9(p1: Any, env: dict[str, str]) -> None:
        if checkpoints:
            await asyncio.to_thread(wait_log, p1, "checkpointed the detectors of")
        await asyncio.sleep(3)  # a checkpoint a second: the last readings are in one too
        p1.kill9()
        p2 = spawn("process", "--instance", f"p1-{rid}", env=env, name="processor-restarted")
        await asyncio.to_thread(wait_log, p2, "processor p1-")
        restarted.append(p2)

    rows, spike_ns = await _hand_over(
        stack_settings, spawn, rid, "1" if checkpoints else "0", kill9
    )
    if checkpoints:
        assert f"{DEVICES} devices" in restarted[0].log_text(), restarted[0].log_text()[-2000:]
        _check_every_spike_and_nothing_else(rows, spike_ns, rid)
    else:
        # The replay alone leaves every detector in its 100-point warm-up: the spike is missed.
        assert not rows


async def test_a_joining_processor_takes_over_partitions_with_their_detectors(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    """No periodic checkpoint here (an hour apart): what the second processor gets was written
    when the first gave up its partitions in the rebalance."""

    async def join(p1: Any, env: dict[str, str]) -> None:
        assert "checkpointed" not in p1.log_text()
        p2 = spawn("process", "--instance", f"p2-{rid}", env=env, name="processor-2")
        await asyncio.to_thread(wait_log, p2, "detector checkpoints of", 60.0)
        assert f"checkpointed the detectors of {DEVICES} devices" in p1.log_text()

    rows, spike_ns = await _hand_over(stack_settings, spawn, rid, "3600", join)
    # Both processors now hold partitions, each with its devices' detectors restored.
    _check_every_spike_and_nothing_else(rows, spike_ns, rid)


LAMPS = 6


def _alert_rows(s: Settings, fields: str, where: str) -> list[list[Any]]:
    """The rows (time first) of the ``alerts`` points ``where`` selects."""
    found = influxql.series(s, f"SELECT {fields} FROM alerts WHERE {where}")
    return [v for ser in found for v in ser["values"]]


async def _across_a_kill(
    s: Settings,
    spawn: Any,
    rid: str,
    topic: str,
    stored: tuple[Any, str, str, str],
    before: list[dict[str, Any]],
    raised: Callable[[], object],
    after: list[dict[str, Any]],
    done: Callable[[], list[list[Any]]],
) -> list[list[Any]]:
    """``before`` through a processor until ``raised()`` (its alerts are in), a checkpoint
    of it all, ``kill -9``, then ``after`` through the restarted processor, which replays
    nothing: what it knows of the time before comes from the checkpoints and open episodes.
    Returns ``done()`` once it has rows (or its last, empty, answer); deletes ``topic``.
    ``stored``: (producer, family, metric, device prefix) for ``produce_and_wait_stored``."""
    try:
        await _kill_between(spawn, rid, topic, stored, before, raised, after)
        rows: list[list[Any]] = await asyncio.to_thread(wait_for, done)
    finally:
        await delete_topic(s, topic)
    return rows


async def _kill_between(
    spawn: Any,
    rid: str,
    topic: str,
    stored: tuple[Any, str, str, str],
    before: list[dict[str, Any]],
    raised: Callable[[], object],
    after: list[dict[str, Any]],
) -> None:
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__CHECKPOINT_S": "1",
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": "0",
    }
    on_topic, family, metric, prefix = stored
    p1 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
    await asyncio.to_thread(wait_log, p1, "processor p-")
    await produce_and_wait_stored(on_topic, before, family, metric, prefix)
    assert await asyncio.to_thread(wait_for, raised), "the alerts before the kill never came"
    await asyncio.to_thread(wait_log, p1, "checkpointed the detectors of")
    await asyncio.sleep(3)  # a checkpoint a second: the last readings are in one too
    p1.kill9()
    p2 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor-restarted")
    await asyncio.to_thread(wait_log, p2, "open alert episodes to continue")
    await produce_and_wait_stored(on_topic, after, family, metric, prefix)


def _lamps(rid: str, t0: int, start: int, watts: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "device_id": f"lamp-{rid}-{d}",
            "family": "streetlight",
            "district": f"ck{rid}",
            "ts": t0 + (start + k) * 300 * S + d * S,
            "received_at": t0 + (start + k) * 300 * S,
            "late": False,
            "seq": start + k,
            "power_state": "on",
            "dimming_pct": 100.0,
            "power_w": w,
            "current_a": round(w / 230.0, 4),
        }
        for k, w in enumerate(watts)
        for d in range(LAMPS)
    ]


async def test_a_lamp_repaired_while_no_processor_ran_clears_against_its_checkpointed_baseline(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    """The rules' learning is checkpointed too: the restarted processor judges the repaired
    lamps against the baselines learnt before the kill, and ends the open degradations
    (without them it learnt the lamps anew, and the episodes stayed open for good)."""
    s = stack_settings
    topic, on_topic = await own_readings_topic(s, rid)
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    prefix = f"lamp-{rid}-"

    def events() -> list[list[Any]]:
        where = f"kind = 'lamp_degradation' AND target =~ /^{prefix}/"
        return _alert_rows(s, "alert_id, target, state", where)

    def raised() -> list[list[Any]]:
        got = events()
        assert {r[3] for r in got} <= {"raised"}, got
        return got if len(got) >= LAMPS else []

    def all_cleared() -> list[list[Any]]:
        got = events()
        return got if sum(r[3] == "cleared" for r in got) >= LAMPS else []

    rows = await _across_a_kill(
        s,
        spawn,
        rid,
        topic,
        (on_topic, "streetlight", "power_w", prefix),
        _lamps(rid, t0, 0, [100.0] * 14 + [70.0] * 4),  # learnt, then 30 % low
        raised,
        _lamps(rid, t0, 30, [100.0] * 8),  # repaired
        all_cleared,
    )
    assert rows, f"no degradation cleared after the restart: {events()}"
    by_target: dict[str, set[tuple[str, str]]] = {}
    for _, aid, target, state in rows:
        by_target.setdefault(target, set()).add((aid, state))
    assert len(by_target) == LAMPS
    for target, got in by_target.items():
        assert {state for _, state in got} == {"raised", "cleared"}, (target, got)
        assert len({aid for aid, _ in got}) == 1, (target, got)


BINS = 4


def _bins(rid: str, t0: int, hours: range, fill: float) -> list[dict[str, Any]]:
    """Readings of ``BINS`` bins every 15 minutes over ``hours``, all at ``fill``."""
    return [
        {
            "device_id": f"bin-{rid}-{d}",
            "family": "bin",
            "district": f"ck{rid}",
            "ts": t0 + q * 900 * S + d * S,
            "received_at": t0 + q * 900 * S,
            "late": False,
            "seq": q,
            "fill_ratio": fill,
        }
        for q in range(4 * hours.start, 4 * hours.stop)
        for d in range(BINS)
    ]


async def test_an_overflow_under_way_at_a_restart_is_overdue_12_h_after_it_began(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    """When the overflow began, and that the bins were overflowing, go through the
    checkpoint: after a `kill -9` 6 h into the overflow, bins at 0.85 (between the clear and
    raise levels) keep their episode, which is escalated, and are overdue 12 h after the
    overflow began. Before, the restarted rules could not judge 0.85 at all: no escalation,
    and never overdue; at 0.95, overdue 18 h after the overflow began."""
    s = stack_settings
    topic, on_topic = await own_readings_topic(s, rid)
    t0 = (time.time_ns() // S - 3 * 86_400) * S
    prefix = f"bin-{rid}-"

    def events() -> list[list[Any]]:
        return _alert_rows(
            s, "alert_id, target, kind, state, episode_start", f"target =~ /^{prefix}/"
        )

    def overdue() -> list[list[Any]]:
        got = events()
        return got if sum(r[3] == "bin_overflow_unserved" for r in got) >= BINS else []

    rows = await _across_a_kill(
        s,
        spawn,
        rid,
        topic,
        (on_topic, "bin", "fill_ratio", prefix),
        _bins(rid, t0, range(0, 6), 0.95),
        lambda: len({r[2] for r in events() if r[4] == "escalated"}) >= BINS,
        _bins(rid, t0, range(6, 14), 0.85),
        overdue,
    )
    assert rows, f"no bin overdue after the restart: {events()}"
    for d in range(BINS):
        mine = [r for r in rows if r[2] == f"{prefix}{d}"]
        # Escalated once: the adopted episode carries its escalation (processors.open_alerts).
        assert sorted((r[3], r[4]) for r in mine) == [
            ("bin_overflow", "escalated"),
            ("bin_overflow", "raised"),
            ("bin_overflow_unserved", "raised"),
        ], mine
        overflow = {r[1] for r in mine if r[3] == "bin_overflow"}
        assert len(overflow) == 1, mine  # one episode, not a second one after the restart
        (unserved,) = [r for r in mine if r[3] == "bin_overflow_unserved"]
        began = t0 + d * S
        assert unserved[5] == began + 12 * 3600 * S, (unserved, began)
