"""Hostile tag and field values through processors/sinks/influx.py into the real InfluxDB
and back: stored verbatim, and never a second line, series or measurement (no injection)."""

from __future__ import annotations

import asyncio
import time

import pytest

from citywatch.settings import Settings
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import point_line, reading_line

from .helpers import influx_query

pytestmark = pytest.mark.integration

# Spaces, commas, equals signs, both quotes, a backslash, and what looks like a second line.
HOSTILE = "a b,c=d\"e'f\\g x=1 0\nbin,device_id=evil fill_ratio=1"


def _write(s: Settings, lines: list[str]) -> None:
    async def go() -> None:
        sink = InfluxSink(s)
        try:
            await sink.write(lines)
        finally:
            await sink.close()

    asyncio.run(go())


def _evil_rows(s: Settings, ts: int) -> list[list[object]]:
    q = f'SELECT * FROM "bin" WHERE "device_id" = \'evil\' AND time > {ts - 10**9}'
    return influx_query(s, q)


def test_hostile_values_round_trip_verbatim(stack_settings: Settings, rid: str) -> None:
    s = stack_settings
    meas = f"cw_escape_{rid}"
    one_line_tag = HOSTILE.replace("\n", " ")
    ts = time.time_ns() // 1000 * 1000
    line = point_line(
        meas,
        {"target": one_line_tag, "kind": "k=1,2 3"},
        {"message": HOSTILE, "value": 1.5},
        ts,
    )
    # A newline inside a quoted string field is legal line protocol: InfluxDB keeps it.
    _write(s, [line])
    rows = influx_query(s, f'SELECT "kind", "target", "message", "value" FROM "{meas}"')
    assert len(rows) == 1
    _, kind, target, message, value = rows[0]
    assert (kind, target, message, value) == ("k=1,2 3", one_line_tag, HOSTILE, 1.5)
    assert not _evil_rows(s, ts)


def test_newline_in_a_tag_cannot_inject_but_is_not_stored_verbatim(
    stack_settings: Settings, rid: str
) -> None:
    """InfluxDB 1.x line protocol has no escape for a newline in a tag value: the client
    writes ``\\n`` and InfluxDB keeps those two characters. Device input never reaches a tag
    with one (ids are pattern-checked at the gateway, tests/unit/test_bad_input.py)."""
    s = stack_settings
    meas = f"cw_escape_nl_{rid}"
    ts = time.time_ns() // 1000 * 1000
    _write(s, [point_line(meas, {"target": HOSTILE}, {"value": 1.0}, ts)])
    rows = influx_query(s, f'SELECT "target", "value" FROM "{meas}"')
    assert len(rows) == 1
    assert rows[0][1] == HOSTILE.replace("\n", "\\n")
    assert not _evil_rows(s, ts)


def test_reading_line_with_hostile_tag_ids_round_trips(stack_settings: Settings, rid: str) -> None:
    """The canonical reading path (reading_line) with the same hostile values in its tags."""
    s = stack_settings
    ts = time.time_ns() // 1000 * 1000
    device = f'dev {rid},x="1"'
    rec = {
        "device_id": device,
        "family": "dust",
        "district": "dist rict,=",
        "site_id": "site 'a' \\ b",
        "ts": ts,
        "received_at": ts,
        "pm10_ugm3": 12.5,
        "late": False,
    }
    _write(s, [reading_line(rec)])
    q = (
        'SELECT "district", "site_id", "pm10_ugm3" FROM "dust" '
        f'WHERE "device_id" = \'dev {rid},x="1"\' AND time = {ts}'
    )
    rows = influx_query(s, q)
    assert [r[1:] for r in rows] == [["dist rict,=", "site 'a' \\ b", 12.5]]
