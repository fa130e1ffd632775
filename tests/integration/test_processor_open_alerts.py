"""An alert episode older than the warm-up replay survives a processor's kill -9: after the
restart it escalates and clears under the id the crews were given (processors.open_alerts)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from citywatch import influxql
from citywatch.settings import Settings

from .helpers import create_topic, delete_topic, influx_query, produce_records, wait_for, wait_log

S = 1_000_000_000
BINS = 3


def _readings(rid: str, t0: int, start: int, n: int) -> list[dict[str, Any]]:
    out = []
    for k in range(start, start + n):
        for d in range(BINS):
            ts = t0 + k * 300 * S + d * S
            out.append(
                {
                    "device_id": f"bin-{rid}-{d}",
                    "family": "bin",
                    "district": f"oa{rid}",
                    "ts": ts,
                    "received_at": ts,
                    "late": False,
                    "seq": k,
                    # Overflowing from the start for 5 hours, then emptied.
                    "fill_ratio": 0.95 if k < 60 else 0.1,
                    "temperature_c": 20.0,
                }
            )
    return out


def _count(s: Settings, rid: str) -> int:
    rows = influx_query(s, f"SELECT count(fill_ratio) FROM bin WHERE device_id =~ /^bin-{rid}-/")
    return int(rows[0][1]) if rows else 0


async def test_an_old_episode_escalates_and_clears_under_its_id_after_a_restart(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    s = stack_settings
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic)
    # The replay reaches 5 readings back, far short of the episodes' start (as 15 minutes
    # would for an overflow reported 3 hours ago).
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": "5",
    }
    on_topic = s.model_copy(update={"kafka": s.kafka.model_copy(update={"readings_topic": topic})})
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    before = 40  # readings per bin before the kill: 3 h 20 min of overflow
    try:
        p1 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
        await asyncio.to_thread(wait_log, p1, "processor p-")
        await produce_records(on_topic, _readings(rid, t0, 0, before))
        done = await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= BINS * before, 90, 0.2)
        assert done, f"{_count(s, rid)} of {BINS * before} readings stored"
        await asyncio.sleep(1)
        p1.kill9()
        p2 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor-restarted")
        await asyncio.to_thread(wait_log, p2, "open alert episodes to continue")
        await produce_records(on_topic, _readings(rid, t0, before, 35))
        done = await asyncio.to_thread(wait_for, lambda: _count(s, rid) >= BINS * 75, 90, 0.2)
        assert done, f"{_count(s, rid)} of {BINS * 75} readings stored"

        def events() -> list[list[Any]]:
            found = influxql.series(
                s,
                "SELECT alert_id, target, state FROM alerts WHERE kind = 'bin_overflow' "
                f"AND target =~ /^bin-{rid}-/",
            )
            return [v for ser in found for v in ser["values"]]

        rows = await asyncio.to_thread(
            wait_for, lambda: (r := events()) and sum(x[3] == "cleared" for x in r) >= BINS and r
        )
    finally:
        await delete_topic(s, topic)
    assert f"{BINS} open alert episodes to continue" in p2.log_text()
    by_target: dict[str, set[tuple[str, str]]] = {}
    for _, aid, target, state in rows:
        by_target.setdefault(target, set()).add((aid, state))
    for d in range(BINS):
        got = by_target.get(f"bin-{rid}-{d}", set())
        ids = {aid for aid, _ in got}
        assert len(ids) == 1, f"bin {d}: episode ids {got}"
        assert {state for _, state in got} == {"raised", "escalated", "cleared"}, got
