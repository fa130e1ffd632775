"""The lighting rate rolled up per hour and district, so that a month of it is one quick query.

The lighting rate needs a per-circuit, 5-minute subquery over every lamp reading
(``dashboards.kpis.lighting_subquery``): 10.6 s for a day of 5,000 lamps on 250 circuits on
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
every ``grafana.rollup_interval_s`` ``citywatch dashboards monitor`` redoes the hours of the
last ``grafana.rollup_lookback_h`` whose lamp readings changed since their last roll-up
(``fill_hours``); ``citywatch dashboards rollup --since`` redoes any range;
``citywatch report`` redoes the nights of its month whose lamp readings per hour differ
from those counted when the hour was last rolled up (measurement ``lighting_hourly_state``,
field ``readings``): never rolled up, rolled up in part, or readings come or gone since
(``fill_nights``). Why not a continuous query: a CQ runs on wall-clock intervals, and device
time (a backfill, the simulator) may lie days behind.

Example:
    >>> series = [{"tags": {"circuit_id": c, "district": "north"},
    ...            "values": [[3_600_000_000_000, 49, 50]]} for c in ("c1", "c2")]
    >>> hour_lines(series)
    ['lighting_hourly,district=north lighting_rate=0.98,lit=98i,n=100i 3600000000000']
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from citywatch import influxql
from citywatch.settings import Settings
from dashboards.kpis import LIGHTING_COUNTS, LIGHTING_ROLLUP, lighting_rate_query
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import point_line

log = logging.getLogger("citywatch.rollup")

MEASUREMENT = LIGHTING_ROLLUP
# Per hour rolled up, the lamp readings it had just before: how fill_nights tells an hour
# whose readings changed since (or that was never rolled up) without asking for the rate.
STATE = f"{LIGHTING_ROLLUP}_state"
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


def _span(lo: datetime, hi: datetime) -> str:
    return f"time >= '{_rfc3339(lo)}' AND time < '{_rfc3339(hi)}'"


def rollup_query(lo: datetime, hi: datetime) -> str:
    """Per hour and circuit in [lo, hi): lit lamp readings and all, in switched-on slots.

    Per circuit, not per district: grouped by exactly the subquery's own tags, InfluxDB
    1.12 answers 7-14 times faster than grouped by district over it (5,000 lamps on 250
    circuits, one day: 10.6 s against 151 s). ``hour_lines`` sums the circuits per district.
    """
    where = _span(lo, hi)
    return lighting_rate_query(
        where,
        where,
        " GROUP BY time(1h), circuit_id, district fill(none)",
        select=LIGHTING_COUNTS,
    )


def hour_lines(series: list[dict[str, Any]]) -> list[str]:
    """Line protocol per district and hour, summing the rows ``[time ns, lit, n]`` of the
    query's series (one a circuit, tagged with its district)."""
    totals: dict[tuple[str, int], list[int]] = {}
    for ser in series:
        district = (ser.get("tags") or {}).get("district", "")
        for ts, lit, n in ser.get("values", []):
            if n:
                acc = totals.setdefault((district, int(ts)), [0, 0])
                acc[0] += int(lit)
                acc[1] += int(n)
    out = []
    for (district, ts), (lit, n) in sorted(totals.items()):
        fields = {"lighting_rate": lit / n, "lit": lit, "n": n}
        out.append(point_line(MEASUREMENT, {"district": district}, fields, ts))
    return out


def state_lines(start: datetime, stop: datetime, readings: list[dict[str, Any]]) -> list[str]:
    """One ``STATE`` point per hour in [start, stop) (whole hours): its lamp readings, 0 too.

    >>> state_lines(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 2, tzinfo=UTC),
    ...             [{"values": [[3_600_000_000_000, 42]]}])
    ['lighting_hourly_state readings=0i 0', 'lighting_hourly_state readings=42i 3600000000000']
    """
    per_hour = {h: int(v[0]) for h, v in _per_hour(readings).items()}
    out = []
    while start < stop:
        ns = int(start.timestamp()) * 1_000_000_000
        out.append(point_line(STATE, {}, {"readings": per_hour.get(ns, 0)}, ns))
        start += HOUR
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
    bucket = f"{i.database}/{i.kpi_retention_policy}"
    sink = InfluxSink(s)
    written = 0
    try:
        start, end = hours_of(lo, hi)
        while start < end:
            stop = min(start + CHUNK, end)
            span = _span(start, stop)
            # The queries are blocking HTTP (citywatch.influxql): off the event loop. Readings
            # are counted before the rate: one that lands in between makes the hour look
            # changed to fill_nights (rolled up again), never up to date when it is not.
            readings = await asyncio.to_thread(
                influxql.series, s, lamp_hours_query(start, stop), QUERY_TIMEOUT_S
            )
            counts = await asyncio.to_thread(
                influxql.series, s, rollup_query(start, stop), QUERY_TIMEOUT_S
            )
            lines = hour_lines(counts)
            await sink.write(lines, bucket=bucket)
            written += len(lines)
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
            # Written last: an hour counts as rolled up only once its points are right.
            await sink.write(state_lines(start, stop, readings), bucket=bucket)
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


def night_of(hour_ns: int, tz: ZoneInfo) -> datetime:
    """The local night (12:00 to 12:00 in ``tz``) a UTC hour belongs to, as its start.

    Judged at the hour's middle: in a zone whose offset is not whole hours an hour straddles
    local noon, and goes to the night it overlaps most (the roll-up takes nights in whole
    UTC hours).

    >>> sh = ZoneInfo("Asia/Shanghai")
    >>> [str(night_of(int(datetime(2026, 12, 5, h, tzinfo=UTC).timestamp()) * 10**9, sh))
    ...  for h in (3, 4)]
    ['2026-12-04 12:00:00+08:00', '2026-12-05 12:00:00+08:00']
    """
    local = datetime.fromtimestamp(hour_ns / 1e9, tz) + HOUR / 2
    day = local.date() if local.hour >= 12 else local.date() - timedelta(days=1)
    return datetime.combine(day, time(12), tz)


def _per_hour(series: list[dict[str, Any]]) -> dict[int, list[Any]]:
    return {int(row[0]): row[1:] for ser in series for row in ser.get("values", [])}


def changed_hours(now: dict[int, int], held: dict[int, int]) -> set[int]:
    """The hours (ns) whose lamp readings now (``now``) differ from those the roll-up last
    counted (``held``): never rolled up, or readings come or gone since.

    >>> sorted(changed_hours({0: 5, 1: 7, 2: 3}, {0: 5, 1: 6, 3: 4}))
    [1, 2, 3]
    """
    return {h for h in now.keys() | held.keys() if now.get(h, 0) != held.get(h, 0)}


def hour_spans(hours: set[int]) -> list[tuple[datetime, datetime]]:
    """Hours (ns), as the fewest [start, end) spans of consecutive hours, in order.

    >>> [(a.hour, b.hour) for a, b in hour_spans({0, 3_600_000_000_000, 4 * 3_600_000_000_000})]
    [(0, 2), (4, 5)]
    """
    spans: list[tuple[datetime, datetime]] = []
    for h in sorted(hours):
        start = datetime.fromtimestamp(h / 1e9, UTC)
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], start + HOUR)
        else:
            spans.append((start, start + HOUR))
    return spans


def stale_nights(
    now: dict[int, tuple[int, int]], held: dict[int, int], tz: ZoneInfo
) -> tuple[set[datetime], list[datetime]]:
    """From the lamp readings per hour now and when each hour was last rolled up: the nights
    with switched-on readings (``now`` is hour ns -> (readings, switched-on readings)) and,
    sorted, those with an hour whose readings changed since (or never rolled up).

    >>> sh, h = ZoneInfo("Asia/Shanghai"), 3_600_000_000_000
    >>> nights, stale = stale_nights({0: (5, 5), 24 * h: (7, 0)}, {0: 5, 24 * h: 6}, sh)
    >>> [str(t) for t in nights], [str(t) for t in stale]
    (['1969-12-31 12:00:00+08:00'], ['1970-01-01 12:00:00+08:00'])
    """
    lit = {night_of(h, tz) for h, (_, on) in now.items() if on}
    changed = changed_hours({h: n for h, (n, _) in now.items()}, held)
    return lit, sorted({night_of(h, tz) for h in changed})


def lamp_hours_query(lo: datetime, hi: datetime, select: str = "count(lit)") -> str:
    """Per UTC hour in [lo, hi): ``select`` over the lamp readings (``count(lit)``: those the
    roll-up counts, as a reading without ``lit`` adds to neither of its counts)."""
    return f"SELECT {select} FROM streetlight WHERE {_span(lo, hi)} GROUP BY time(1h) fill(none)"


async def hour_counts(
    s: Settings, lo: datetime, hi: datetime
) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Per hour (ns) of the whole hours [lo, hi): the lamp readings and switched-on ones now,
    and the lamp readings each hour had when it was last rolled up (``STATE``). Two count
    queries, far cheaper than the roll-up's per-circuit subquery."""
    now, held = await asyncio.gather(
        asyncio.to_thread(
            influxql.series,
            s,
            lamp_hours_query(lo, hi, select="count(lit), sum(switched_on)"),
            QUERY_TIMEOUT_S,
        ),
        asyncio.to_thread(
            influxql.series,
            s,
            f'SELECT last(readings) FROM "{s.influx.kpi_retention_policy}"."{STATE}" '
            f"WHERE {_span(lo, hi)} GROUP BY time(1h) fill(none)",
            QUERY_TIMEOUT_S,
        ),
    )
    return (
        {h: (int(n), int(on or 0)) for h, (n, on) in _per_hour(now).items()},
        {h: int(v[0]) for h, v in _per_hour(held).items()},
    )


async def fill_hours(s: Settings, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
    """Roll up the hours overlapping [lo, hi) whose lamp readings are not the ones the roll-up
    last counted (never rolled up, or readings that arrived or went since); returns the spans
    rolled up. What the monitor runs each round: on a live city only the hours still filling
    (and any a late reading reached) are redone, not the whole lookback.
    """
    hours = hours_of(lo, hi)
    now, held = await hour_counts(s, *hours)
    spans = hour_spans(changed_hours({h: n for h, (n, _) in now.items()}, held))
    for start, stop in spans:
        await roll_up(s, start, stop)
    return spans


async def fill_nights(s: Settings, lo: datetime, hi: datetime) -> tuple[int, list[datetime]]:
    """Roll up each local night in [lo, hi) (local noons) with an hour whose lamp readings
    are not the ones the roll-up last counted: never rolled up, rolled up only in part (a
    monitor stopped mid-night), or readings that arrived or went since. Returns the number
    of nights with switched-on lamp readings and the nights rolled up, as local night starts.
    """
    tz = ZoneInfo(s.grafana.timezone)
    now, held = await hour_counts(s, *hours_of(lo, hi))
    lit, stale = stale_nights(now, held, tz)
    # The whole hours may reach past [lo, hi) by part of an hour: not into another night.
    stale = [n for n in stale if lo <= n < hi]
    for start in stale:
        await roll_up(s, start, start + NIGHT)
    return len({n for n in lit if lo <= n < hi}), stale
