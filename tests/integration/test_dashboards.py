"""Every panel's every query, variables expanded to real values, against the real InfluxDB.

A module fixture runs a short accelerated city (simulator -> gateway -> processor, with the
pipeline monitor scraping both) and writes the asset register; then each InfluxQL target of
each generated dashboard must return at least one series with the columns its panel expects.
Also: ``citywatch report`` renders real numbers and PNG charts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from citywatch import influxql
from citywatch.citymodel import CityModel
from citywatch.monitor import scrape_text
from citywatch.settings import Settings
from dashboards.assets import write_assets
from dashboards.boards import all_queries
from dashboards.build import render
from dashboards.kpis import LIGHTING_COUNTS, expand, kpis, lighting_rate_query
from dashboards.report import build_report
from dashboards.rollup import (
    HOUR,
    MEASUREMENT,
    STATE,
    fill_hours,
    fill_nights,
    hour_floor,
    hours_of,
    roll_up,
)

from .helpers import Proc, run_id, start_group_at_end, stop_all

pytestmark = pytest.mark.integration

GW_PORT, PROC_PORT = 19411, 19412
# KPIs of faults still open when the range ends: a family whose faults in this scenario all
# end before the run does (the vehicles') rightly has none, so one family with a series is
# enough to check the query. (Vehicles used to show some only through ~6,000 false
# device_silence episodes per run window, which runs since 2026-11-23 no longer produce.)
OPEN_AT_END = frozenset({"devices_faulty"})


def _metric(port: int, name: str) -> float:
    try:
        m = scrape_text(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text)
    except httpx.HTTPError:
        return -1.0
    return sum(v for (n, _), v in m.items() if n == name)


def _influx(s: Settings, q: str) -> list[dict[str, Any]]:
    return influxql.series(s, q, timeout_s=180, epoch=None)


@pytest.fixture(scope="module")
def city_run(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """10 simulated hours (16:00 -> 02:00 local, yesterday) through the pipeline, ~1 min."""
    s = stack_settings
    out = tmp_path_factory.mktemp("dash")
    rid = run_id()
    model = out / "city.json"
    city = CityModel.generate(1, 1, s.city)
    city.save(model)
    group = f"citywatch-test-dash-{rid}"
    asyncio.run(start_group_at_end(s, group, s.kafka.readings_topic))
    asyncio.run(start_group_at_end(s, f"{group}-notifier", s.kafka.alerts_topic))
    env = {
        "CITYWATCH_STATE_DIR": str(s.state_dir),
        "CITYWATCH_GATEWAY__SHARE_GROUP": f"t{rid}",
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "180",
        "CITYWATCH_GATEWAY__METRICS_PORT": str(GW_PORT),
        "CITYWATCH_GATEWAY__DEVICE_REGISTRY": str(model),
        "CITYWATCH_PROCESSOR__GROUP_ID": group,
        "CITYWATCH_PROCESSOR__WARMUP_S": "0",
        "CITYWATCH_PROCESSOR__METRICS_PORT": str(PROC_PORT),
        "CITYWATCH_GRAFANA__MONITOR_INTERVAL_S": "1",
        # The roll-up is run once the run is through (below), not by the monitor midway.
        "CITYWATCH_GRAFANA__ROLLUP_INTERVAL_S": "0",
        # The notifier turns this run's alerts into work orders and writes their KPIs.
        "CITYWATCH_NOTIFIER__GROUP_ID": f"{group}-notifier",
        "CITYWATCH_NOTIFIER__DB_URL": f"sqlite:///{out / 'orders.db'}",
        "CITYWATCH_NOTIFIER__KPI_INTERVAL_S": "1",
    }
    wall_start = datetime.now(UTC)
    procs = [
        Proc(["gateway", "--instance", f"dash-{rid}"], env, out / "gateway.log").start(),
        Proc(
            ["process", "--instance", f"dash-{rid}", "--city-model", str(model)],
            env,
            out / "processor.log",
        ).start(),
        Proc(["dashboards", "monitor"], env, out / "monitor.log").start(),
        Proc(["notify", "--instance", f"dash-{rid}"], env, out / "notifier.log").start(),
    ]
    try:
        time.sleep(4)
        sim = Proc(
            [
                "simulate",
                "--seed",
                "1",
                "--speed",
                "0",
                "--sim-hours",
                "10",
                "--truth",
                str(out / "truth.jsonl"),
                "--city-model",
                str(out / "sim-city.json"),
            ],
            env,
            out / "sim.log",
        ).start()
        assert sim.p is not None
        procs.append(sim)
        assert sim.p.wait(420) == 0, sim.log_text()[-2000:]
        m = re.search(r"simulated (\S+) \.\. (\S+)", sim.log_text())
        assert m, sim.log_text()[-2000:]
        sim_window = (m.group(1), m.group(2))
        deadline, quiet = time.monotonic() + 180, 0
        while time.monotonic() < deadline and quiet < 3:
            time.sleep(1.5)
            fwd = _metric(GW_PORT, "citywatch_gateway_readings_forwarded_total")
            done = _metric(PROC_PORT, "citywatch_processor_records_total")
            quiet = quiet + 1 if fwd > 0 and done >= fwd else 0
        assert quiet >= 3, "processor did not catch up:\n" + procs[1].log_text()[-2000:]
        time.sleep(3)  # a few more monitor samples
        write_assets(s, city)
        # The hourly lighting roll-up of the run, as an operator backfills past days.
        roll = Proc(
            ["dashboards", "rollup", "--since", sim_window[0], "--until", sim_window[1]],
            env,
            out / "rollup.log",
        ).start()
        assert roll.p is not None and roll.p.wait(300) == 0, roll.log_text()[-2000:]
        yield s, city, out, sim_window, wall_start
    finally:
        stop_all(s, procs)


FMT = "%Y-%m-%dT%H:%M:%SZ"


def _window(query: str, sim: tuple[str, str], wall_start: datetime) -> tuple[str, str]:
    """The dashboard's time range as a user would pick it: the simulated span for device
    data, the day before it for trip summaries (stamped at local midnight), wall-clock time
    for the monitor's pipeline points and the notifier's work-order KPIs."""
    if "FROM pipeline" in query or '"workorders"' in query:
        return wall_start.strftime(FMT), (datetime.now(UTC) + timedelta(minutes=1)).strftime(FMT)
    lo = datetime.fromisoformat(sim[0].replace("Z", "+00:00"))
    if '"trips"' in query:
        lo -= timedelta(days=1)
    return lo.strftime(FMT), sim[1]


def test_every_panel_query_returns_series_with_its_columns(city_run: Any) -> None:
    s, city, _, sim, wall_start = city_run
    districts = [
        r[1] for ser in _influx(s, 'SHOW TAG VALUES WITH KEY = "district"') for r in ser["values"]
    ]
    home = sorted(city.districts)[0]
    assert home in districts
    known = all_queries(s)
    checked, failures = 0, []
    for text in render(s).values():
        board = json.loads(text)
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                if "query" not in t:
                    continue  # a server-side math expression over A and B (checked in unit tests)
                kpi = known[t["query"]]
                families = (
                    ["streetlight", "bin", "vehicle", "dust"] if "$family" in t["query"] else ["-"]
                )
                start, end = _window(t["query"], sim, wall_start)
                empty: list[str] = []
                for fam in families:
                    q = expand(
                        t["query"],
                        start=start,
                        end=end,
                        interval="5m",
                        variables={"district": [home], "family": [fam]},
                    )
                    series = _influx(s, q)
                    where = f"{board['title']} / {panel['title']} / {t['refId']} ({fam})"
                    if not series:
                        empty.append(fam)
                        if kpi.key not in OPEN_AT_END:
                            failures.append(f"{where}: no series\n  {q}")
                        continue
                    missing = [c for c in kpi.columns if c not in series[0]["columns"]]
                    if missing:
                        failures.append(f"{where}: missing columns {missing}")
                    checked += 1
                if kpi.key in OPEN_AT_END and len(empty) == len(families):
                    failures.append(f"{board['title']} / {panel['title']}: no series at all")
    assert not failures, "\n".join(failures)
    assert checked >= 35


def test_dust_now_gives_every_site_of_the_run_its_noise_level(city_run: Any) -> None:
    """The Leq comes from ``noise_energy``, which the processor stores with each dust reading."""
    s, city, _, sim, _ = city_run
    sites = {d.site_id for d in city.devices.values() if d.family == "dust"}
    assert sites
    q = expand(
        kpis(s)["dust_now"].query,
        start=sim[0],
        end=sim[1],
        variables={"district": sorted(city.districts)},
    )
    now = {}
    for ser in _influx(s, q):
        now[ser["tags"]["site_id"]] = dict(zip(ser["columns"], ser["values"][0], strict=True))
    for site in sites:
        row = now[site]
        assert row["noise_dba"] is not None and 20 < row["noise_dba"] < 130, (site, row)
        assert row["pm10_ugm3"] is not None and row["pm10_ugm3"] >= 0, (site, row)


def test_hourly_rollup_holds_the_lighting_counts_of_the_readings(city_run: Any) -> None:
    """Per hour and district the roll-up has the readings' own counts, so any range's rate
    from it equals the rate over the readings; rolling up again changes nothing."""
    s, city, _, sim, _ = city_run
    # The hours the fixture's `dashboards rollup --since sim[0] --until sim[1]` rolled up.
    lo, hi = hours_of(*(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in sim))
    span = f"time >= '{lo.strftime(FMT)}' AND time < '{hi.strftime(FMT)}'"
    own = f"district =~ /^({'|'.join(sorted(city.districts))})$/"

    def counts(q: str) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            (ser["tags"]["district"], row[0]): (int(row[1]), int(row[2]))
            for ser in _influx(s, q)
            for row in ser["values"]
        }

    direct = counts(
        lighting_rate_query(
            f"{span} AND {own}", span, " GROUP BY time(1h), district fill(none)", LIGHTING_COUNTS
        )
    )
    rolled_q = (
        f'SELECT lit, n FROM "{s.influx.kpi_retention_policy}"."{MEASUREMENT}" '
        f"WHERE {span} AND {own} GROUP BY district"
    )
    rolled = counts(rolled_q)
    assert len(direct) >= 10, direct  # 10 simulated hours, most of them at night
    assert sum(n for _, n in direct.values()) > 1000
    assert rolled == direct

    def city_rate(q: str) -> float:
        (row,) = [r for ser in _influx(s, q) for r in ser["values"]]
        return float(row[1])

    k = kpis(s)
    one = {"district": sorted(city.districts)}
    start, end = lo.strftime(FMT), (hi - timedelta(seconds=1)).strftime(FMT)
    from_readings = city_rate(
        expand(k["lighting_rate_city"].query, start=start, end=end, variables=one)
    )
    from_rollup = city_rate(
        expand(k["lighting_rate_rollup"].query, start=start, end=end, variables=one)
    )
    assert 0.5 < from_readings <= 1.0
    assert abs(from_rollup - from_readings) < 1e-12

    # Rolled up again, nothing changes but a point whose readings are gone: it is deleted.
    rp = s.influx.kpi_retention_policy
    ghost_q = f'SELECT n FROM "{rp}"."{MEASUREMENT}" WHERE {span} AND district = \'ghost town\''
    ghost = f"{MEASUREMENT},district=ghost\\ town lit=1i,n=2i {lo.timestamp():.0f}"
    influxql.write(s, ghost, rp=rp, precision="s")
    assert _influx(s, ghost_q)
    asyncio.run(roll_up(s, lo, hi))
    assert counts(rolled_q) == rolled
    assert not _influx(s, ghost_q)


def test_the_report_rolls_up_a_night_the_rollup_holds_in_part(city_run: Any) -> None:
    """A night whose later hours were never rolled up (a monitor stopped mid-night) is found
    and rolled up by fill_nights, which the daily report runs for its month to date; so is
    one with a reading that arrived after its roll-up."""
    s, city, _, sim, _ = city_run
    tz = ZoneInfo(s.grafana.timezone)
    start = datetime.fromisoformat(sim[0].replace("Z", "+00:00")).astimezone(tz)
    # The run is 16:00 -> 02:00 local: all of it in the night that starts at 12:00.
    lo = datetime.combine(start.date(), dtime(12), tz)
    hi = lo + timedelta(days=1)
    # Other hours of the night may hold other runs' readings (the demo simulates the same
    # hours): the fixture rolled up the run's own, so the night is first brought up to date.
    asyncio.run(fill_nights(s, lo, hi))
    assert asyncio.run(fill_nights(s, lo, hi)) == (1, [])
    run_lo, run_hi = hours_of(*(datetime.fromisoformat(x.replace("Z", "+00:00")) for x in sim))
    span = f"time >= '{run_lo.strftime(FMT)}' AND time < '{run_hi.strftime(FMT)}'"
    own = f"district =~ /^({'|'.join(sorted(city.districts))})$/"
    q = (
        f'SELECT lit, n FROM "{s.influx.kpi_retention_policy}"."{MEASUREMENT}" '
        f"WHERE {span} AND {own} GROUP BY district"
    )
    before = _influx(s, q)
    assert sum(len(ser["values"]) for ser in before) >= 10
    # The roll-up of the run's second half never happened: neither its points nor its state.
    mid = (run_lo + (run_hi - run_lo) / 2).replace(minute=0)
    later = f"time >= '{mid.strftime(FMT)}' AND time < '{run_hi.strftime(FMT)}'"
    for m in (MEASUREMENT, STATE):
        influxql.execute(s, f"DELETE FROM {m} WHERE {later}")
    assert _influx(s, q) != before
    assert asyncio.run(fill_nights(s, lo, hi)) == (1, [lo])
    assert _influx(s, q) == before
    assert asyncio.run(fill_nights(s, lo, hi)) == (1, [])

    # A reading that arrives after the roll-up, then goes again: each time the night is due.
    late = run_lo + timedelta(minutes=7)
    line = (
        "streetlight,device_id=late-lamp,circuit_id=late-circuit,district=late\\ town "
        f"lit=1i,switched_on=1i {int(late.timestamp())}"
    )
    influxql.write(s, line, precision="s")
    try:
        assert asyncio.run(fill_nights(s, lo, hi)) == (1, [lo])
    finally:
        influxql.execute(s, "DELETE FROM streetlight WHERE district = 'late town'")
    assert asyncio.run(fill_nights(s, lo, hi)) == (1, [lo])
    assert _influx(s, q) == before
    assert asyncio.run(fill_nights(s, lo, hi)) == (1, [])


def test_the_monitor_redoes_only_the_hours_whose_readings_changed(city_run: Any) -> None:
    """fill_hours, the monitor's round: an hour up to date is left alone; an hour a late
    reading reached is rolled up again, alone, and again once that reading is gone."""
    s, _, _, sim, _ = city_run
    run_lo, run_hi = hours_of(*(datetime.fromisoformat(x.replace("Z", "+00:00")) for x in sim))
    # Other tests may have left hours of the run's span changed since their roll-up.
    asyncio.run(fill_hours(s, run_lo, run_hi))
    assert asyncio.run(fill_hours(s, run_lo, run_hi)) == []

    late = run_lo + timedelta(hours=1, minutes=7)
    hour = hour_floor(late)
    line = (
        "streetlight,device_id=late-lamp-2,circuit_id=late-circuit-2,district=late\\ hour "
        f"lit=1i,switched_on=1i {int(late.timestamp())}"
    )
    point = (
        f'SELECT lit, n FROM "{s.influx.kpi_retention_policy}"."{MEASUREMENT}" '
        f"WHERE time >= '{hour.strftime(FMT)}' AND time < '{(hour + HOUR).strftime(FMT)}' "
        "AND district = 'late hour'"
    )
    influxql.write(s, line, precision="s")
    try:
        assert asyncio.run(fill_hours(s, run_lo, run_hi)) == [(hour, hour + HOUR)]
        assert [ser["values"][0][1:] for ser in _influx(s, point)] == [[1, 1]]
    finally:
        influxql.execute(s, "DELETE FROM streetlight WHERE district = 'late hour'")
    assert asyncio.run(fill_hours(s, run_lo, run_hi)) == [(hour, hour + HOUR)]
    assert _influx(s, point) == []
    assert asyncio.run(fill_hours(s, run_lo, run_hi)) == []


def test_variable_queries_return_values(city_run: Any) -> None:
    s = city_run[0]
    for text in render(s).values():
        for v in json.loads(text)["templating"]["list"]:
            if v["type"] == "query":
                assert _influx(s, v["query"]), v["name"]


def test_daily_report_has_real_numbers_and_charts(city_run: Any, tmp_path: Path) -> None:
    s, sim = city_run[0], city_run[3]

    # The run starts at 16:00 local: that evening's night and that day's trip summaries
    # (closed an hour after midnight) are in it.
    start = datetime.fromisoformat(sim[0].replace("Z", "+00:00"))
    day = start.astimezone(ZoneInfo(s.grafana.timezone)).date()
    html = build_report(s, day, tmp_path)
    text = html.read_text()
    assert "Lighting rate, city (night)" in text
    assert 'Lighting rate, city (night)</td><td class="v">—' not in text
    assert " %" in text and "Mileage" in text
    # The month to date, from the roll-up (the report rolled up its own night afresh).
    assert re.search(r"month to date \(\d+ nights\), city</td><td class=\"v\">\d", text), text
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) >= 4
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
        assert p.name in text


def test_daily_report_has_the_days_work_orders(city_run: Any, tmp_path: Path) -> None:
    """The notifier's work-order KPIs carry wall-clock time: today's report shows the run's."""
    s = city_run[0]
    day = datetime.now(ZoneInfo(s.grafana.timezone)).date()
    text = build_report(s, day, tmp_path).read_text()
    m = re.search(r"Created</td><td class=\"v\">([\d,]+)<", text)
    assert m and int(m.group(1).replace(",", "")) > 0, text
    assert re.search(r"Closure rate \(resolved or closed / created\)</td><td class=\"v\">\d", text)
    assert f"report-{day.isoformat()}-workorders.png" in text
    assert (tmp_path / f"report-{day.isoformat()}-workorders.png").stat().st_size > 5000
