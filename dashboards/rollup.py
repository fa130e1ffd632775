"""The lighting rate rolled up per hour and district, so that a month of it is one quick query.

The lighting rate needs a per-circuit, 5-minute subquery over every lamp reading
(``dashboards.kpis.lighting_subquery``): ~6 s for a city-wide day of 6 million readings on
this machine, so a month asked of the raw readings would take minutes, and the bureaus
assess the rate by the month. This job asks it once per hour of data instead and writes
measurement ``lighting_hourly`` (retention policy ``influx.kpi_retention_policy``), tag
``district``, fields ``lit`` and ``n`` (lamp readings lit, and all lamp readings, over the
5-min circuit slots that were switched on: the same counts as the lighting rate) and
``lighting_rate`` = lit / n, at the hour's start. Any range is then Σ lit / Σ n over its
hours, weighted exactly as one long query over the readings would weigh it.

Rolling an hour up again overwrites its point (same series, same time) and deletes the
points of hours and districts left without counts (readings deleted since), so readings that
arrive late (a gateway's spool, a replay) or go are taken in by running it again:
``citywatch dashboards monitor`` redoes the last ``grafana.rollup_lookback_h`` hours every
``grafana.rollup_interval_s``; ``citywatch dashboards rollup --since`` fills past days;
``citywatch report`` redoes its own night and fills the nights of its month that have lamp
readings but no roll-up point (``fill_nights``). Why
not a continuous query: a CQ runs on wall-clock intervals, and device time (a backfill, the
simulator) may lie days behind.

Example:
    >>> series = [{"tags": {"district": "north"}, "values": [[3_600_000_000_000, 98, 100]]}]
    >>> hour_lines(series)
    ['lighting_hourly,district=north lighting_rate=0.98,lit=98i,n=100i 3600000000000']
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from citywatch import influxql
from citywatch.settings import Settings
from dashboards.kpis import LIGHTING_COUNTS, LIGHTING_ROLLUP, lighting_rate_query
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import point_line

log = logging.getLogger("citywatch.rollup")

MEASUREMENT = LIGHTING_ROLLUP
HOUR = timedelta(hours=1)
# One query per day of readings: a city-wide day is ~6 s, well inside the query timeout.
CHUNK = timedelta(days=1)
QUERY_TIMEOUT_S = 300.0


def hour_floor(t: datetime) -> datetime:
    """The start of ``t``'s hour (UTC)."""
    t = t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hours_of(lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The whole hours that overlap [lo, hi): the span a roll-up of [lo, hi) rewrites.

    >>> [t.hour for t in hours_of(datetime(2026, 1, 1, 8, 30, tzinfo=UTC),
    ...                           datetime(2026, 1, 1, 18, tzinfo=UTC))]
    [8, 18]
    """
    return hour_floor(lo), hour_floor(hi - timedelta(microseconds=1)) + HOUR


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollup_query(lo: datetime, hi: datetime) -> str:
    """Per hour and district in [lo, hi): lit lamp readings and all, in switched-on slots."""
    where = f"time >= '{_rfc3339(lo)}' AND time < '{_rfc3339(hi)}'"
    return lighting_rate_query(
        where, where, " GROUP BY time(1h), district fill(none)", select=LIGHTING_COUNTS
    )


def hour_lines(series: list[dict[str, Any]]) -> list[str]:
    """Line protocol for the rows ``[time ns, lit, n]`` of the query's series (one a district)."""
    out = []
    for ser in series:
        district = (ser.get("tags") or {}).get("district", "")
        for ts, lit, n in ser.get("values", []):
            if not n:
                continue
            fields = {"lighting_rate": lit / n, "lit": int(lit), "n": int(n)}
            out.append(point_line(MEASUREMENT, {"district": district}, fields, int(ts)))
    return out


def _keys(series: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """(district, hour ns) of the rows that give a point."""
    return {
        ((ser.get("tags") or {}).get("district", ""), int(row[0]))
        for ser in series
        for row in ser.get("values", [])
        if row[-1]
    }


def _quoted(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def roll_up(s: Settings, lo: datetime, hi: datetime) -> int:
    """Roll up every hour that overlaps [lo, hi); returns the points written.

    A point of an earlier roll-up whose hour and district no longer have counts (their
    readings were deleted) is deleted too, so the roll-up is always the readings' own counts.
    Raises httpx.HTTPError or RuntimeError (a query InfluxDB refused: never read as "no
    readings", which would delete the hours' points) on failure.
    """
    i = s.influx
    sink = InfluxSink(s)
    written = 0
    try:
        start, end = hours_of(lo, hi)
        while start < end:
            stop = min(start + CHUNK, end)
            # The queries are blocking HTTP (citywatch.influxql): off the event loop.
            counts = await asyncio.to_thread(
                influxql.series, s, rollup_query(start, stop), QUERY_TIMEOUT_S
            )
            lines = hour_lines(counts)
            await sink.write(lines, bucket=f"{i.database}/{i.kpi_retention_policy}")
            written += len(lines)
            span = f"time >= '{_rfc3339(start)}' AND time < '{_rfc3339(stop)}'"
            held = await asyncio.to_thread(
                influxql.series,
                s,
                f'SELECT n FROM "{i.kpi_retention_policy}"."{MEASUREMENT}" '
                f"WHERE {span} GROUP BY district",
            )
            gone = sorted(_keys(held) - _keys(counts))
            for district, ts in gone:
                await asyncio.to_thread(
                    influxql.execute,
                    s,
                    f"DELETE FROM {MEASUREMENT} WHERE district = {_quoted(district)} "
                    f"AND time = {ts}",
                )
            log.info(
                "lighting roll-up %s .. %s: %d points, %d stale ones deleted",
                start,
                stop,
                len(lines),
                len(gone),
            )
            start = stop
    finally:
        await sink.close()
    return written


NIGHT = timedelta(days=1)


def nights_query(source: str, field: str, lo: datetime, hi: datetime, tz: str, cond: str) -> str:
    """Per local night (12:00 to 12:00 in ``tz``) in [lo, hi): the count of ``field`` in
    ``source`` where ``cond`` holds; a night without points gives no row.

    >>> q = nights_query("streetlight", "switched_on", datetime(2026, 1, 1, 4, tzinfo=UTC),
    ...                  datetime(2026, 1, 2, 4, tzinfo=UTC), "Asia/Shanghai", "switched_on = 1")
    >>> for part in q.split(" AND "):
    ...     print(part)
    SELECT count(switched_on) FROM streetlight WHERE switched_on = 1
    time >= '2026-01-01T04:00:00Z'
    time < '2026-01-02T04:00:00Z' GROUP BY time(1d, 12h) fill(none) tz('Asia/Shanghai')
    """
    return (
        f"SELECT count({field}) FROM {source} WHERE {cond + ' AND ' if cond else ''}"
        f"time >= '{_rfc3339(lo)}' AND time < '{_rfc3339(hi)}' "
        f"GROUP BY time(1d, 12h) fill(none) tz('{tz}')"
    )


def _night_starts(series: list[dict[str, Any]]) -> set[int]:
    return {int(row[0]) for ser in series for row in ser.get("values", []) if row[1]}


async def fill_nights(s: Settings, lo: datetime, hi: datetime) -> tuple[int, list[datetime]]:
    """Roll up each local night in [lo, hi) that has switched-on lamp readings but not one
    roll-up point (no monitor ran then); returns the nights with readings and those filled.

    A night rolled up only in part is not found here: the monitor redoes its last hours.
    """
    tz = s.grafana.timezone
    rollup = f'"{s.influx.kpi_retention_policy}"."{MEASUREMENT}"'
    lamps, held = await asyncio.gather(
        asyncio.to_thread(
            influxql.series,
            s,
            nights_query("streetlight", "switched_on", lo, hi, tz, "switched_on = 1"),
            QUERY_TIMEOUT_S,
        ),
        asyncio.to_thread(
            influxql.series, s, nights_query(rollup, "n", lo, hi, tz, ""), QUERY_TIMEOUT_S
        ),
    )
    with_readings = _night_starts(lamps)
    filled = [
        datetime.fromtimestamp(ns / 1e9, UTC) for ns in sorted(with_readings - _night_starts(held))
    ]
    for start in filled:
        await roll_up(s, start, start + NIGHT)
    return len(with_readings), filled
