"""An alert episode older than the warm-up replay survives a processor's kill -9: after the
restart it escalates and clears under the id the crews were given (processors.open_alerts)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from citywatch import influxql
from citywatch.settings import Settings

from .helpers import delete_topic, own_readings_topic, produce_and_wait_stored, wait_for, wait_log

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


async def _restart_mid_episode(
    s: Settings, spawn: Any, rid: str, warmup_records: int, after: tuple[int, int]
) -> tuple[Any, dict[str, set[tuple[str, str]]]]:
    """40 overflowing readings per bin, kill -9, a restart, then readings ``after`` (first k,
    count); the bins' bin_overflow events once all have cleared, by bin."""
    topic, on_topic = await own_readings_topic(s, rid)
    env = {
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__WARMUP_MAX_RECORDS": str(warmup_records),
    }
    t0 = (time.time_ns() // S - 2 * 86_400) * S
    before = 40  # readings per bin before the kill: 3 h 20 min of overflow
    prefix = f"bin-{rid}-"
    try:
        p1 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
        await asyncio.to_thread(wait_log, p1, "processor p-")
        await produce_and_wait_stored(
            on_topic, _readings(rid, t0, 0, before), "bin", "fill_ratio", prefix
        )
        await asyncio.sleep(1)
        p1.kill9()
        p2 = spawn("process", "--instance", f"p-{rid}", env=env, name="processor-restarted")
        await asyncio.to_thread(wait_log, p2, "open alert episodes to continue")
        await produce_and_wait_stored(
            on_topic, _readings(rid, t0, *after), "bin", "fill_ratio", prefix
        )

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
        assert len({aid for aid, _ in got}) == 1, f"bin {d}: episode ids {got}"
    return p2, by_target


async def test_an_old_episode_escalates_and_clears_under_its_id_after_a_restart(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    # The replay reaches 5 readings back, far short of the episodes' start (as 15 minutes
    # would for an overflow reported 3 hours ago); the overflow goes on, then ends.
    _, by_target = await _restart_mid_episode(stack_settings, spawn, rid, 5, (40, 35))
    for got in by_target.values():
        assert {state for _, state in got} == {"raised", "escalated", "cleared"}, got


async def test_an_episode_that_ended_unseen_clears_under_its_id_after_a_restart(
    stack_settings: Settings, spawn: Any, rid: str
) -> None:
    # No replay, and the bins emptied while no processor ran: the restarted processor's rules
    # never see the overflow, so their first readings of emptied bins must end the episodes.
    _, by_target = await _restart_mid_episode(stack_settings, spawn, rid, 0, (60, 6))
    for got in by_target.values():
        assert {state for _, state in got} == {"raised", "cleared"}, got
