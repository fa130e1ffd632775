"""The hourly lighting roll-up: its query, its lines, the CLI's times and the monitor's rounds."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import typer

from citywatch import influxql
from citywatch.monitor import Monitor
from citywatch.settings import Settings
from dashboards import rollup
from dashboards.cli import _when
from dashboards.kpis import expand, kpis


def test_hour_floor_is_the_utc_hour_start_of_any_zone() -> None:
    t = datetime.fromisoformat("2026-12-05T08:45:12.5+08:00")
    assert rollup.hour_floor(t) == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)


def test_query_counts_per_hour_and_circuit_over_switched_on_slots_only() -> None:
    q = rollup.rollup_query(
        datetime(2026, 12, 5, 0, tzinfo=UTC), datetime(2026, 12, 6, 0, tzinfo=UTC)
    )
    assert q.startswith("SELECT sum(lit_n) AS lit, sum(n) AS n FROM (SELECT sum(lit) AS lit_n")
    assert q.count("time >= '2026-12-05T00:00:00Z' AND time < '2026-12-06T00:00:00Z'") == 2
    # Grouped by the subquery's own tags (InfluxDB's fast case); hour_lines sums circuits.
    assert "AND cmd > 0.5 GROUP BY time(1h), circuit_id, district fill(none)" in q
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


async def test_monitor_checks_the_lookback_each_round_and_survives_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings()
    s.grafana.rollup_interval_s = 0.01
    s.grafana.rollup_lookback_h = 26.0
    stop = asyncio.Event()
    spans: list[timedelta] = []

    async def fake_fill_hours(
        settings: Settings, lo: datetime, hi: datetime
    ) -> list[tuple[datetime, datetime]]:
        spans.append(hi - lo)
        if len(spans) == 1:
            raise RuntimeError("InfluxDB refused the roll-up query")
        if len(spans) == 3:
            stop.set()
        return []

    monkeypatch.setattr(rollup, "fill_hours", fake_fill_hours)
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


H = 3_600_000_000_000


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def test_a_night_is_due_when_an_hour_was_never_rolled_up_or_its_readings_changed() -> None:
    sh = ZoneInfo("Asia/Shanghai")
    # Local 20:00 and 21:00 on 2026-12-05 (night of the 5th), 09:00 on the 7th (night of the
    # 6th), 13:00 on the 7th (night of the 7th).
    h20, h21 = (
        _ns(datetime(2026, 12, 5, 12, tzinfo=UTC)),
        _ns(datetime(2026, 12, 5, 13, tzinfo=UTC)),
    )
    h09, h13 = _ns(datetime(2026, 12, 7, 1, tzinfo=UTC)), _ns(datetime(2026, 12, 7, 5, tzinfo=UTC))
    night = {d: datetime(2026, 12, d, 12, tzinfo=sh) for d in (5, 6, 7)}
    now = {h20: (10, 10), h21: (10, 10), h09: (4, 0), h13: (3, 0)}
    # All held as counted: nothing due; nights with switched-on readings: only the 5th.
    held = {h20: 10, h21: 10, h09: 4, h13: 3}
    assert rollup.stale_nights(now, held, sh) == ({night[5]}, [])
    # The monitor stopped after 20:00: the 5th is due, and only it.
    assert rollup.stale_nights(now, {**held, h21: 0}, sh)[1] == [night[5]]
    assert rollup.stale_nights(now, {k: v for k, v in held.items() if k != h21}, sh)[1] == [
        night[5]
    ]
    # A late reading at 09:00 on the 7th belongs to the night of the 6th.
    assert rollup.stale_nights({**now, h09: (5, 0)}, held, sh)[1] == [night[6]]
    # Readings deleted since (an hour held but no longer read), and two nights sorted.
    gone = {k: v for k, v in now.items() if k not in (h13, h20)}
    assert rollup.stale_nights(gone, held, sh)[1] == [night[5], night[7]]


def test_nights_run_noon_to_noon_local_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 02:00 local the clocks go forward; 11:30 local that morning (09:30 UTC) is
    # still the night of the 28th, 12:00 local (10:00 UTC) starts the 29th's.
    before = rollup.night_of(_ns(datetime(2026, 3, 29, 9, tzinfo=UTC)), berlin)
    after = rollup.night_of(_ns(datetime(2026, 3, 29, 10, tzinfo=UTC)), berlin)
    assert before == datetime(2026, 3, 28, 12, tzinfo=berlin)
    assert after == datetime(2026, 3, 29, 12, tzinfo=berlin)
    # The night of the 28th is 23 h long, and its end is the next night's start.
    assert (before + rollup.NIGHT).astimezone(UTC) == after.astimezone(UTC)
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(hours=23)


def test_state_is_written_for_every_hour_rolled_up_with_zero_for_hours_without_readings() -> None:
    lo = datetime(2026, 12, 5, 0, tzinfo=UTC)
    lines = rollup.state_lines(lo, lo + timedelta(hours=3), [{"values": [[_ns(lo) + H, 7]]}])
    assert lines == [
        f"lighting_hourly_state readings=0i {_ns(lo)}",
        f"lighting_hourly_state readings=7i {_ns(lo) + H}",
        f"lighting_hourly_state readings=0i {_ns(lo) + 2 * H}",
    ]


def test_an_hour_straddling_local_noon_goes_to_the_night_it_overlaps_most() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: 06:00-07:00 UTC is 11:30-12:30 local
    first = datetime(2026, 12, 1, 12, tzinfo=kolkata)
    assert rollup.night_of(_ns(datetime(2026, 12, 1, 6, tzinfo=UTC)), kolkata) == first
    assert (
        rollup.night_of(_ns(datetime(2026, 12, 1, 5, tzinfo=UTC)), kolkata) == first - rollup.NIGHT
    )
    # The whole hours fill_nights asks for start at that hour, half an hour before the night.
    lo, hi = rollup.hours_of(first, first + rollup.NIGHT)
    assert (lo, hi) == (datetime(2026, 12, 1, 6, tzinfo=UTC), datetime(2026, 12, 2, 7, tzinfo=UTC))
    assert rollup.lamp_hours_query(lo, hi).endswith(
        "WHERE time >= '2026-12-01T06:00:00Z' AND time < '2026-12-02T07:00:00Z' "
        "GROUP BY time(1h) fill(none)"
    )


def _fake_influx(
    monkeypatch: pytest.MonkeyPatch, now: dict[int, tuple[int, int]], held: dict[int, int]
) -> tuple[list[str], list[tuple[datetime, datetime]]]:
    """InfluxDB answering the two count queries with ``now`` and ``held``, and a roll-up
    that only records its spans: the queries asked and the spans rolled up, as they come."""
    asked: list[str] = []
    rolled: list[tuple[datetime, datetime]] = []

    def fake_series(settings: Settings, q: str, *args: object) -> list[dict[str, object]]:
        asked.append(q)
        if "FROM streetlight" in q:
            return [{"values": [[k, n, on] for k, (n, on) in now.items()]}]
        return [{"values": [[k, v] for k, v in held.items()]}]

    async def fake_roll_up(settings: Settings, a: datetime, b: datetime) -> int:
        rolled.append((a, b))
        return 0

    monkeypatch.setattr(influxql, "series", fake_series)
    monkeypatch.setattr(rollup, "roll_up", fake_roll_up)
    return asked, rolled


async def test_fill_nights_rolls_up_only_the_changed_nights_inside_its_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings()
    s.grafana.timezone = "Asia/Kolkata"
    kolkata = ZoneInfo("Asia/Kolkata")
    lo = datetime(2026, 12, 1, 12, tzinfo=kolkata)
    hi = lo + 2 * rollup.NIGHT
    h = [_ns(datetime(2026, 12, 1, 6, tzinfo=UTC)) + i * H for i in range(49)]
    # Now: readings in the first night's first hour and in the last whole hour (06:00 UTC on
    # the 3rd, which is mostly the third night's); the roll-up held neither.
    now = {h[0]: (5, 5), h[10]: (3, 3), h[48]: (9, 9)}
    held = {h[10]: 3}
    asked, rolled = _fake_influx(monkeypatch, now, held)
    assert await rollup.fill_nights(s, lo, hi) == (1, [lo])
    assert rolled == [(lo, lo + rollup.NIGHT)]
    assert all(
        "time >= '2026-12-01T06:00:00Z' AND time < '2026-12-03T07:00:00Z'" in q for q in asked
    )


def test_changed_hours_are_rolled_up_as_runs_of_consecutive_hours() -> None:
    t0 = datetime(2026, 12, 5, 0, tzinfo=UTC)
    h = [_ns(t0) + i * H for i in range(6)]
    # Hour 1 never rolled up, hour 2 gained a reading, hour 4 lost all of its readings.
    now, held = {h[0]: 5, h[1]: 4, h[2]: 8, h[3]: 2}, {h[0]: 5, h[2]: 7, h[3]: 2, h[4]: 9}
    changed = rollup.changed_hours(now, held)
    assert changed == {h[1], h[2], h[4]}
    assert rollup.hour_spans(changed) == [
        (t0 + timedelta(hours=1), t0 + timedelta(hours=3)),
        (t0 + timedelta(hours=4), t0 + timedelta(hours=5)),
    ]
    assert rollup.hour_spans(set()) == []
    # An hour held at 0 that still has no readings is up to date.
    assert rollup.changed_hours({h[0]: 5}, {h[0]: 5, h[5]: 0}) == set()


async def test_fill_hours_rolls_up_only_the_changed_hours_of_its_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings()
    lo = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    hi = lo + timedelta(hours=26)
    h = [_ns(datetime(2026, 12, 5, 0, tzinfo=UTC)) + i * H for i in range(27)]
    # The lookback's first (partial) hour never rolled up, two hours up to date, and the
    # last, partial hour still filling since its previous roll-up.
    now = {h[0]: (5, 5), h[10]: (3, 3), h[11]: (4, 4), h[26]: (9, 9)}
    held = {h[10]: 3, h[11]: 4, h[26]: 6}
    asked, rolled = _fake_influx(monkeypatch, now, held)
    first, last = datetime(2026, 12, 5, 0, tzinfo=UTC), datetime(2026, 12, 6, 2, tzinfo=UTC)
    expected = [(first, first + rollup.HOUR), (last, last + rollup.HOUR)]
    assert await rollup.fill_hours(s, lo, hi) == expected
    assert rolled == expected
    assert len(asked) == 2
    assert all(
        "time >= '2026-12-05T00:00:00Z' AND time < '2026-12-06T03:00:00Z'" in q for q in asked
    )


def test_hour_lines_sum_the_circuits_of_each_district_and_hour() -> None:
    series = [
        {"tags": {"circuit_id": "c1", "district": "a b"}, "values": [[H, 9, 10], [2 * H, 4, 5]]},
        {"tags": {"circuit_id": "c2", "district": "a b"}, "values": [[H, 10, 10]]},
        {"tags": {"circuit_id": "c3", "district": "z"}, "values": [[H, 0, 0]]},
    ]
    assert rollup.hour_lines(series) == [
        f"lighting_hourly,district=a\\ b lighting_rate=0.95,lit=19i,n=20i {H}",
        f"lighting_hourly,district=a\\ b lighting_rate=0.8,lit=4i,n=5i {2 * H}",
    ]
