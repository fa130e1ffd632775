"""A processor killed and restarted keeps what its detectors learnt (processors.checkpoints):
the first anomaly after the restart is caught, and nothing else is stored."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from citywatch import influxql
from citywatch.settings import Settings

from .helpers import create_topic, delete_topic, influx_query, produce_records, wait_for, wait_log

S = 1_000_000_000
DEVICES = 12
BEFORE, AFTER, SPIKE = 200, 40, 215  # points per device before and after the restart


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


def _count(s: Settings, rid: str) -> int:
    rows = influx_query(s, f"SELECT count(pm10_ugm3) FROM dust WHERE device_id =~ /^dust-{rid}-/")
    return int(rows[0][1]) if rows else 0


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "replay-only"])
async def test_restarted_processor_keeps_its_detectors(
    stack_settings: Settings, spawn: Any, rid: str, checkpoints: bool
) -> None:
    s = stack_settings
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic)
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__CHECKPOINT_S": "1" if checkpoints else "0",
        # The replay covers the last readings before the restart, not the whole history (as
        # 15 minutes would in a city, where 200 readings of a device take 17 hours).
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": "30",
    }
    on_topic = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": topic})})
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    try:
        p1 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
        await asyncio.to_thread(wait_log, p1, "processor p-")
        await produce_records(on_topic, _readings(rid, t0, 0, BEFORE))
        done = await asyncio.to_thread(
            wait_for, lambda: _count(s, rid) >= DEVICES * BEFORE, 90, 0.2
        )
        assert done, f"{_count(s, rid)} of {DEVICES * BEFORE} readings stored"
        if checkpoints:
            await asyncio.to_thread(wait_log, p1, "checkpointed the detectors of")
        await asyncio.sleep(3)  # a checkpoint a second: the last readings are in one too
        p1.kill9()

        p2 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor-restarted")
        await asyncio.to_thread(wait_log, p2, "processor p-")
        await produce_records(on_topic, _readings(rid, t0, BEFORE, AFTER))
        total = DEVICES * (BEFORE + AFTER)
        done = await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= total, 90, 0.2)
        assert done, f"{_count(s, rid)} of {total} readings stored"
        await asyncio.sleep(1)  # anomaly lines go in the same writes; allow a last batch
        found = influxql.series(
            s,
            f"SELECT score, device_id FROM anomalies WHERE device_id =~ /^dust-{rid}-/ "
            f"AND time >= {t0 + BEFORE * 300 * S}",
        )
        rows = [v for ser in found for v in ser["values"]]
    finally:
        await delete_topic(s, topic)
    spike_ns = t0 + SPIKE * 300 * S
    at_spike = {r[2] for r in rows if r[0] == spike_ns}
    if checkpoints:
        assert f"{DEVICES} devices" in p2.log_text(), p2.log_text()[-2000:]
        assert at_spike == {f"dust-{rid}-{d}" for d in range(DEVICES)}, rows
        assert len(rows) == DEVICES, f"anomalies besides the spikes: {rows}"
    else:
        # The replay alone leaves every detector in its 100-point warm-up: the spike is missed.
        assert not rows


async def test_a_joining_processor_takes_over_partitions_with_their_detectors(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    """No periodic checkpoint here (an hour apart): what the second processor gets was written
    when the first gave up its partitions in the rebalance."""
    s = stack_settings
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic)
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__CHECKPOINT_S": "3600",
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": "30",
    }
    on_topic = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": topic})})
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    try:
        p1 = spawn("process", "--instance", f"p1-{rid}", env=env, name="processor-1")
        await asyncio.to_thread(wait_log, p1, "processor p1-")
        await produce_records(on_topic, _readings(rid, t0, 0, BEFORE))
        done = await asyncio.to_thread(
            wait_for, lambda: _count(s, rid) >= DEVICES * BEFORE, 90, 0.2
        )
        assert done, f"{_count(s, rid)} of {DEVICES * BEFORE} readings stored"
        assert "checkpointed" not in p1.log_text()
        p2 = spawn("process", "--instance", f"p2-{rid}", env=env, name="processor-2")
        await asyncio.to_thread(wait_log, p2, "detector checkpoints of", 60.0)
        assert f"checkpointed the detectors of {DEVICES} devices" in p1.log_text()
        await produce_records(on_topic, _readings(rid, t0, BEFORE, AFTER))
        total = DEVICES * (BEFORE + AFTER)
        done = await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= total, 90, 0.2)
        assert done, f"{_count(s, rid)} of {total} readings stored"
        await asyncio.sleep(1)
        found = influxql.series(
            s,
            f"SELECT score, device_id FROM anomalies WHERE device_id =~ /^dust-{rid}-/ "
            f"AND time >= {t0 + BEFORE * 300 * S}",
        )
        rows = [v for ser in found for v in ser["values"]]
    finally:
        await delete_topic(s, topic)
    # Both processors now hold partitions, each with its devices' detectors restored.
    spike_ns = t0 + SPIKE * 300 * S
    assert {r[2] for r in rows if r[0] == spike_ns} == {f"dust-{rid}-{d}" for d in range(DEVICES)}
    assert len(rows) == DEVICES, f"anomalies besides the spikes: {rows}"
