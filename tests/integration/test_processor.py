"""Processor delivery: every reading lands in InfluxDB once, through crashes and InfluxDB outages,
and no alert is raised twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from citywatch.settings import Settings
from citywatch.stack.influxdb import InfluxDB

from .helpers import (
    create_topic,
    delete_topic,
    end_offsets,
    influx_query,
    own_readings_topic,
    produce_records,
    read_topic,
    wait_for,
    wait_log,
)

S = 1_000_000_000
N = 20_000
DEVICES = 200


def _records(rid: str, n: int = N, t0: int | None = None) -> list[dict[str, object]]:
    t0 = t0 or (time.time_ns() // S) * S
    out = []
    for i in range(n):
        dev, k = i % DEVICES, i // DEVICES
        # Every 10th bin silent after half the run -> device_silence alerts to count.
        if dev % 10 == 0 and k > n // DEVICES // 2:
            continue
        ts = t0 + k * 900 * S
        out.append(
            {
                "device_id": f"bin-{rid}-{dev}",
                "family": "bin",
                "district": "central",
                "ts": ts,
                "received_at": ts,
                "seq": k,
                "late": False,
                "fill_ratio": round((k % 10) / 10, 2),
            }
        )
    return out


def _count(s: Settings, rid: str) -> int:
    rows = influx_query(s, f"SELECT count(fill_ratio) FROM bin WHERE device_id =~ /^bin-{rid}-/")
    return int(rows[0][1]) if rows else 0


def _raised_ids(s: Settings, rid: str) -> list[str]:
    rows = influx_query(
        s, f"SELECT alert_id FROM alerts WHERE state = 'raised' AND target =~ /^bin-{rid}-/"
    )
    return [r[1] for r in rows]


async def _run(s: Settings, spawn, rid: str, fault) -> tuple[int, list[str]]:
    # A topic of its own: event time in the shared topic belongs to other runs, and the
    # processor's clock (a watermark) must only see this test's readings.
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic)
    env = {
        "CITYWATCH_PROCESSOR__GROUP_ID": f"citywatch-test-{rid}",
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
    }
    proc = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
    wait_log(proc, "processor p-")
    records = _records(rid)
    _T0[rid] = records[0]["ts"]
    await produce_records(
        s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": topic})}),
        records,
    )
    await asyncio.to_thread(wait_for, lambda: _count(s, rid) > len(records) // 4, 60, 0.1)
    await fault(proc, env)
    await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= len(records), 180)
    # Silence is judged on the event-time clock, which a partition holds back until it has
    # been idle for idle_partition_s (5 s): give the last alerts that long, and more.
    await asyncio.to_thread(wait_for, lambda: len(_silent_targets(s, rid)) >= DEVICES // 10, 30)
    await asyncio.sleep(2)  # anything beyond the expected counts would show up now
    result = _count(s, rid), _raised_ids(s, rid)
    await delete_topic(s, topic)
    return result


async def _no_fault(proc, env) -> None:
    return None


_T0: dict[str, object] = {}


def _silent_targets(s: Settings, rid: str) -> set[str]:
    rows = influx_query(
        s,
        "SHOW TAG VALUES FROM alerts WITH KEY = target WHERE kind = 'device_silence' "
        f"AND target =~ /^bin-{rid}-/",
    )
    return {r[1] for r in rows}


def _check(s: Settings, rid: str, n: int, raised: list[str]) -> None:
    expected = len(_records(rid, t0=_T0[rid]))  # type: ignore[arg-type]
    assert n == expected, f"{n} of {expected} readings in InfluxDB"
    dup = [a for a, c in Counter(raised).items() if c > 1]
    assert not dup, f"alert ids raised twice: {dup[:5]}"
    silent = {f"bin-{rid}-{d}" for d in range(0, DEVICES, 10)}
    got = _silent_targets(s, rid)
    assert got == silent, (
        f"silence alerts for {sorted(got)[:5]}..., expected the {len(silent)} silent bins"
    )


async def test_all_readings_and_alerts_reach_influx(
    stack_settings: Settings, spawn, rid: str
) -> None:
    n, raised = await _run(stack_settings, spawn, rid, _no_fault)
    _check(stack_settings, rid, n, raised)


async def test_kill9_processor_midway_loses_nothing_and_raises_nothing_twice(
    stack_settings: Settings, spawn, rid: str
) -> None:
    async def fault(proc, env) -> None:
        proc.kill9()
        p2 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor-restarted")
        await asyncio.to_thread(wait_log, p2, "processor p-")

    n, raised = await _run(stack_settings, spawn, rid, fault)
    _check(stack_settings, rid, n, raised)


async def test_influx_restart_midway_loses_nothing(
    stack_settings: Settings, spawn, rid: str
) -> None:
    influx = InfluxDB(stack_settings)

    async def fault(proc, env) -> None:
        await asyncio.to_thread(influx.proc.stop)
        await asyncio.sleep(3)
        assert proc.alive()
        await asyncio.to_thread(influx.up)

    n, raised = await _run(stack_settings, spawn, rid, fault)
    _check(stack_settings, rid, n, raised)


async def test_two_processors_split_partitions_and_survive_a_rebalance(
    stack_settings: Settings, spawn, rid: str
) -> None:
    """Two processors share the group; one is killed midway and the other takes its partitions,
    rebuilding state by warm-up replay: every reading lands once, no alert is raised twice."""
    second: dict[str, object] = {}

    async def fault(proc, env) -> None:
        p2 = spawn("process", "--instance", f"p2-{rid}", env=env, name="processor-2")
        await asyncio.to_thread(wait_log, p2, "processor p2-")
        await asyncio.sleep(3)  # both now hold partitions
        second["p2"] = p2
        proc.kill9()  # its partitions move to p2 after the session times out

    n, raised = await _run(stack_settings, spawn, rid, fault)
    _check(stack_settings, rid, n, raised)
    log = second["p2"].log_text()  # type: ignore[attr-defined]
    assert "warming up" in log or "assigned" in log


async def test_lines_influx_rejects_go_to_deadletter_and_do_not_block(
    stack_settings: Settings, spawn, rid: str
) -> None:
    # A field whose type changes (float, then string) is a line InfluxDB refuses forever
    # (HTTP 400, field type conflict): it must be dead-lettered, and what follows written.
    s = stack_settings
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic, partitions=1)
    dead_start = await end_offsets(s, s.kafka.deadletter_topic)
    env = {
        "CITYWATCH_PROCESSOR__GROUP_ID": f"citywatch-test-{rid}",
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
    }
    proc = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
    wait_log(proc, "processor p-")
    t0 = (time.time_ns() // S) * S
    probe = f"probe_{rid}"
    recs = [
        {
            "device_id": f"bin-{rid}-0",
            "family": "bin",
            "district": "central",
            "ts": t0 + i * S,
            "received_at": t0 + i * S,
            "late": False,
            "fill_ratio": 0.5,
            probe: value,
        }
        for i, value in enumerate([1.5, "not a float", 2.5])
    ]
    s_topic = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": topic})})
    await produce_records(s_topic, recs)

    def written() -> list[list[object]]:
        return influx_query(s, f"SELECT \"{probe}\" FROM bin WHERE device_id = 'bin-{rid}-0'")

    rows = await asyncio.to_thread(wait_for, lambda: len(written()) >= 2 and written(), 60)
    assert [r[1] for r in rows] == [1.5, 2.5]
    dead = await read_topic(
        s,
        s.kafka.deadletter_topic,
        dead_start,
        until=lambda rs: any(probe.encode() in m.value for m in rs),
    )
    mine = [m for m in dead if probe.encode() in m.value]
    assert len(mine) == 1 and b"not a float" in mine[0].value
    headers = dict(mine[0].headers)
    assert headers["reason"] == b"influx_rejected" and headers["origin"] == b"processor"
    assert proc.alive()
    await delete_topic(s, topic)


async def test_a_joining_processor_takes_partitions_without_false_silences(
    stack_settings: Settings, spawn, rid: str
) -> None:
    """A second processor joins midway and both go on. The first stops hearing from the
    devices of the partitions it gave up; their silence is not its to judge any more."""
    s = stack_settings
    topic, on_topic = await own_readings_topic(s, rid)
    env = {
        "CITYWATCH_PROCESSOR__GROUP_ID": f"citywatch-test-{rid}",
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
    }
    records = _records(rid)
    _T0[rid] = records[0]["ts"]
    half = len(records) // 2
    try:
        p1 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
        wait_log(p1, "processor p-")
        await produce_records(on_topic, records[:half])
        await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= half, 60, 0.1)
        p2 = spawn("process", "--instance", f"p2-{rid}", env=env, name="processor-2")
        await asyncio.to_thread(wait_log, p2, "warming up")
        await asyncio.to_thread(wait_log, p1, "forgot")
        # The second half's event time runs 12 h past the moved devices' last reading in p1.
        await produce_records(on_topic, records[half:])
        await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= len(records), 120)
        await asyncio.to_thread(wait_for, lambda: len(_silent_targets(s, rid)) >= DEVICES // 10, 30)
        await asyncio.sleep(3)  # a false silence, raised late, would show up now
        _check(s, rid, _count(s, rid), _raised_ids(s, rid))
    finally:
        await delete_topic(s, topic)
