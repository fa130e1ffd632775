"""The hourly lighting roll-up: its query, its lines, the CLI's times and the monitor's rounds."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
import typer

from citywatch.monitor import Monitor
from citywatch.settings import Settings
from dashboards import rollup
from dashboards.cli import _when
from dashboards.kpis import expand, kpis


def test_hour_floor_is_the_utc_hour_start_of_any_zone() -> None:
    t = datetime.fromisoformat("2026-12-05T08:45:12.5+08:00")
    assert rollup.hour_floor(t) == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)


def test_query_counts_per_hour_and_district_over_switched_on_slots_only() -> None:
    q = rollup.rollup_query(
        datetime(2026, 12, 5, 0, tzinfo=UTC), datetime(2026, 12, 6, 0, tzinfo=UTC)
    )
    assert q.startswith("SELECT sum(lit_n) AS lit, sum(n) AS n FROM (SELECT sum(lit) AS lit_n")
    assert q.count("time >= '2026-12-05T00:00:00Z' AND time < '2026-12-06T00:00:00Z'") == 2
    assert "AND cmd > 0.5 GROUP BY time(1h), district fill(none)" in q
    # The rate the dashboards show is the same subquery with the counts divided.
    rate = kpis(Settings())["lighting_rate_city"].query
    assert q.split(" FROM ", 1)[1].split(") WHERE")[0] == (
        rate.split(" FROM ", 1)[1]
        .split(") WHERE")[0]
        .replace(
            "$timeFilter AND district =~ /^$district$/",
            "time >= '2026-12-05T00:00:00Z' AND time < '2026-12-06T00:00:00Z'",
        )
    )


def test_lines_carry_counts_and_rate_and_skip_empty_hours() -> None:
    series = [
        {"tags": {"district": "old town"}, "values": [[0, 0, 0], [3_600_000_000_000, 3, 4]]},
        {"tags": {"district": "port"}, "values": [[0, 10.0, 10.0]]},
    ]
    assert rollup.hour_lines(series) == [
        r"lighting_hourly,district=old\ town lighting_rate=0.75,lit=3i,n=4i 3600000000000",
        "lighting_hourly,district=port lighting_rate=1,lit=10i,n=10i 0",
    ]


def test_rollup_kpis_divide_the_summed_counts() -> None:
    k = kpis(Settings())
    q = expand(
        k["lighting_rate_daily"].query,
        start="2026-11-01T00:00:00Z",
        end="2026-12-01T00:00:00Z",
        variables={"district": ["north"]},
    )
    assert q.startswith('SELECT sum(lit) / sum(n) AS lighting_rate FROM "kpi"."lighting_hourly"')
    assert "GROUP BY time(1d), district fill(none) tz('Asia/Shanghai')" in q
    assert "sum(lit) / sum(n)" in k["lighting_rate_rollup"].query


def test_cli_times_are_local_days_or_times_with_an_offset() -> None:
    s = Settings()
    assert _when(s, "2026-12-05", "--since") == datetime(2026, 12, 4, 16, tzinfo=UTC)
    assert _when(s, "2026-12-05T01:30:00Z", "--since") == datetime(2026, 12, 5, 1, 30, tzinfo=UTC)
    for bad in ("2026-12-05T01:30:00", "yesterday", "2026-13-01"):
        with pytest.raises(typer.BadParameter):
            _when(s, bad, "--since")


async def test_monitor_redoes_the_lookback_each_round_and_survives_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings()
    s.grafana.rollup_interval_s = 0.01
    s.grafana.rollup_lookback_h = 26.0
    stop = asyncio.Event()
    spans: list[timedelta] = []

    async def fake_roll_up(settings: Settings, lo: datetime, hi: datetime) -> int:
        spans.append(hi - lo)
        if len(spans) == 1:
            raise RuntimeError("InfluxDB refused the roll-up query")
        if len(spans) == 3:
            stop.set()
        return 1

    monkeypatch.setattr(rollup, "roll_up", fake_roll_up)
    with caplog.at_level(logging.WARNING, logger="citywatch.monitor"):
        await asyncio.wait_for(Monitor(s).roll_up(stop), 5)
    assert spans == [timedelta(hours=26)] * 3
    assert "lighting roll-up not written: InfluxDB refused" in caplog.text

    s.grafana.rollup_interval_s = 0  # off: not a single round
    spans.clear()
    await asyncio.wait_for(Monitor(s).roll_up(asyncio.Event()), 5)
    assert spans == []


def test_stale_points_are_told_by_hour_and_district_and_quoted_safely() -> None:
    counts = [{"tags": {"district": "a"}, "values": [[1, 3, 4], [2, 0, 0]]}]
    held = [
        {"tags": {"district": "a"}, "values": [[1, 4], [2, 5]]},
        {"tags": {"district": "b"}, "values": [[1, 9]]},
    ]
    assert rollup._keys(held) - rollup._keys(counts) == {("a", 2), ("b", 1)}
    assert rollup._quoted("o'town \\ east") == "'o\\'town \\\\ east'"
