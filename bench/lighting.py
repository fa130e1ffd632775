"""What the lighting rate costs InfluxDB: the query shapes, the roll-up and the monitor's round.

Writes ``--lamps`` synthetic lamps (``--per-circuit`` to a circuit, one district of their
own, every 300 s, one lamp in 97 dark now and then) over ``--hours`` hours, starting at a
midnight 60 days back (inside the raw retention policy), into the local stack's InfluxDB.
Then it times, best of ``--rounds``:

- the lighting rate over the readings for 1 h and 6 h: city-wide (no GROUP BY), by district
  (as the panels asked until 2026-12-07) and per hour and circuit (as the roll-up asks);
- ``roll_up`` of all the hours (what the monitor did every round before ``fill_hours``);
- ``fill_hours`` over them with nothing changed, and with a late reading in the last hour;
- the by-district rate from the roll-up, as the panels ask it now.

Its readings and roll-up points are deleted at the end, and its hours rolled up again
without them. Prints seconds and the ratios to compare; figures in docs/kpis.md.

Example:
    $ .venv/bin/python -m bench.lighting --lamps 5000 --hours 26
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from citywatch import influxql
from citywatch.settings import Settings
from dashboards import rollup
from dashboards.kpis import LIGHTING_COUNTS, lighting_rate_query

DISTRICT = "bench lighting"
STEP_S = 300


def lamp_lines(lamps: int, per_circuit: int, start_s: int, hours: int) -> Iterator[str]:
    """Lamp readings (line protocol, s precision): each lamp every 300 s, spread over the step.

    >>> next(lamp_lines(40, 20, 0, 1)).split(",", 3)[3]
    'district=bench\\\\ lighting lit=0i,switched_on=1i 0'
    >>> sum(1 for _ in lamp_lines(40, 20, 0, 1))
    480
    """
    district = DISTRICT.replace(" ", "\\ ")
    for step in range(hours * 3600 // STEP_S):
        ts = start_s + step * STEP_S
        for i in range(lamps):
            lit = 0 if (i * 7 + step) % 97 == 0 else 1
            yield (
                f"streetlight,device_id=bl-{i},circuit_id=blc-{i // per_circuit},"
                f"district={district} lit={lit}i,switched_on=1i {ts + i % STEP_S}"
            )


def write(s: Settings, lines: Iterator[str], batch: int = 50_000) -> int:
    n, buf = 0, []
    for line in lines:
        buf.append(line)
        if len(buf) >= batch:
            influxql.write(s, "\n".join(buf), precision="s")
            n, buf = n + len(buf), []
    if buf:
        influxql.write(s, "\n".join(buf), precision="s")
        n += len(buf)
    return n


def best(rounds: int, fn: Callable[[int], Any]) -> float:
    """The shortest of ``rounds`` wall times of ``fn(round)``: the machine is shared."""
    times = []
    for k in range(rounds):
        t = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - t)
    return min(times)


def ask(s: Settings, q: str) -> Callable[[int], Any]:
    """A round of ``best``: query ``q`` once."""
    return lambda _: influxql.series(s, q, 1800)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lamps", type=int, default=5000)
    ap.add_argument("--per-circuit", type=int, default=20)
    ap.add_argument("--hours", type=int, default=26)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    s = Settings()
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo = day - timedelta(days=60)
    hi = lo + timedelta(hours=a.hours)
    t = time.perf_counter()
    n = write(s, lamp_lines(a.lamps, a.per_circuit, int(lo.timestamp()), a.hours))
    print(
        f"wrote {n:,} lamp readings ({a.lamps:,} lamps, {a.lamps // a.per_circuit:,} circuits, "
        f"{a.hours} h from {lo:%Y-%m-%d %H:%M}Z) in {time.perf_counter() - t:.1f} s"
    )
    own = f"district = '{DISTRICT}'"
    try:
        for hours in (1, 6):
            w = rollup._span(lo, lo + timedelta(hours=hours))
            shapes = {
                "city": lighting_rate_query(f"{w} AND {own}", w),
                "by district": lighting_rate_query(f"{w} AND {own}", w, " GROUP BY district"),
                "per hour and circuit": lighting_rate_query(
                    f"{w} AND {own}",
                    w,
                    " GROUP BY time(1h), circuit_id, district fill(none)",
                    select=LIGHTING_COUNTS,
                ),
            }
            got = {name: best(a.rounds, ask(s, q)) for name, q in shapes.items()}
            ratio = got["by district"] / got["per hour and circuit"]
            print(
                f"lighting rate over {hours} h of readings: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in got.items())
                + f" (by district / per circuit: {ratio:.1f} x)"
            )
        full = best(a.rounds, lambda _: asyncio.run(rollup.roll_up(s, lo, hi)))
        none = best(a.rounds, lambda _: asyncio.run(rollup.fill_hours(s, lo, hi)))
        late = int((hi - timedelta(minutes=57)).timestamp())
        district = DISTRICT.replace(" ", "\\ ")

        def one_late(k: int) -> None:
            influxql.write(
                s,
                f"streetlight,device_id=bl-late-{k},circuit_id=blc-0,district={district} "
                f"lit=1i,switched_on=1i {late}",
                precision="s",
            )
            assert len(asyncio.run(rollup.fill_hours(s, lo, hi))) == 1

        changed = best(a.rounds, one_late)
        print(
            f"roll-up of all {a.hours} h {full:.2f} s; the monitor's round (fill_hours): "
            f"nothing changed {none:.2f} s ({none / full:.3f} x), the last hour changed "
            f"{changed:.2f} s ({changed / full:.3f} x)"
        )
        panel = (
            f'SELECT sum(lit) / sum(n) FROM "{s.influx.kpi_retention_policy}".'
            f'"{rollup.MEASUREMENT}" WHERE {rollup._span(lo, hi)} AND {own} GROUP BY district'
        )
        print(
            f"by-district rate over {a.hours} h from the roll-up: "
            f"{best(a.rounds, lambda _: influxql.series(s, panel)):.3f} s"
        )
    finally:
        influxql.execute(s, f"DELETE FROM streetlight WHERE {own}")
        # Rolled up again without them: the bench's points go, and each hour's state is the
        # count of what readings it still has (a real city's, if any).
        asyncio.run(rollup.fill_hours(s, lo, hi))


if __name__ == "__main__":
    main()
