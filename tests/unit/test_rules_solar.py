"""Sun schedule (day/night/twilight, offsets, polar) and the local clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from astral import Observer
from astral.sun import sunrise, sunset

from processors.rules.solar import (
    DAY,
    NIGHT,
    NS,
    TWILIGHT,
    LocalClock,
    SolarSchedule,
    in_window,
    parse_hhmm,
)

LAT, LON = 31.23, 121.47
OBS = Observer(LAT, LON)


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


SUNSET = ns(sunset(OBS, date(2024, 6, 1), tzinfo=UTC))  # ~10:53 UTC, 18:53 local
SUNRISE = ns(sunrise(OBS, date(2024, 6, 1), tzinfo=UTC))  # ~20:50 UTC, 04:50 local on June 2


def test_day_night_and_twilight_around_sunset_and_sunrise() -> None:
    s = SolarSchedule(LAT, LON, grace_s=1200)
    assert SUNRISE < SUNSET + 12 * 3600 * NS
    m = 60 * NS
    assert s.phase(SUNSET - 30 * m) == DAY
    assert s.phase(SUNSET - 15 * m) == TWILIGHT
    assert s.phase(SUNSET + 15 * m) == TWILIGHT
    assert s.phase(SUNSET + 21 * m) == NIGHT
    assert s.phase(SUNRISE - 21 * m) == NIGHT
    assert s.phase(SUNRISE - 19 * m) == TWILIGHT
    assert s.phase(SUNRISE + 19 * m) == TWILIGHT
    assert s.phase(SUNRISE + 21 * m) == DAY


def test_midnight_utc_is_inside_a_night_that_spans_it() -> None:
    # 2024-06-01 16:00 UTC (midnight local) and 2024-06-01 00:00 UTC (08:00 local).
    s = SolarSchedule(LAT, LON, 1200)
    assert s.phase(ns(datetime(2024, 6, 1, 16, tzinfo=UTC))) == NIGHT
    assert s.phase(ns(datetime(2024, 6, 1, 0, tzinfo=UTC))) == DAY
    assert s.phase(ns(datetime(2024, 6, 1, 23, 59, tzinfo=UTC))) == DAY
    assert s.phase(ns(datetime(2024, 6, 2, 0, 1, tzinfo=UTC))) == DAY


def test_west_of_greenwich() -> None:
    s = SolarSchedule(40.7, -74.0, 1200)  # New York: sunset ~00:20 UTC
    assert s.phase(ns(datetime(2024, 6, 1, 17, tzinfo=UTC))) == DAY
    assert s.phase(ns(datetime(2024, 6, 1, 4, tzinfo=UTC))) == NIGHT


def test_switch_offsets_shift_the_window() -> None:
    plain = SolarSchedule(LAT, LON, 1200)
    late = SolarSchedule(LAT, LON, 1200, on_offset_s=900, off_offset_s=-900)
    t = SUNSET + 25 * 60 * NS
    assert plain.phase(t) == NIGHT
    assert late.phase(t) == TWILIGHT  # on at sunset + 15 min, grace until + 35 min
    assert late.phase(SUNRISE - 25 * 60 * NS) == TWILIGHT


def test_polar_day_and_night() -> None:
    s = SolarSchedule(78.0, 15.0, 1200)
    assert s.phase(ns(datetime(2024, 6, 21, 0, tzinfo=UTC))) == DAY
    assert s.phase(ns(datetime(2024, 6, 21, 12, tzinfo=UTC))) == DAY
    assert s.phase(ns(datetime(2024, 12, 21, 12, tzinfo=UTC))) == NIGHT


def test_sun_computed_once_per_day() -> None:
    s = SolarSchedule(LAT, LON, 1200)
    base = ns(datetime(2024, 6, 1, tzinfo=UTC))
    for k in range(0, 86400, 60):
        s.phase(base + k * NS)
    assert len(s._cache) == 1


def test_local_clock() -> None:
    t = ns(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    assert LocalClock("Asia/Shanghai").minute_of_day(t) == 20 * 60
    assert LocalClock(timezone(timedelta(hours=8))).minute_of_day(t) == 20 * 60
    berlin = LocalClock("Europe/Berlin")
    assert berlin.minute_of_day(t) == 14 * 60  # CEST, UTC+2
    assert berlin.minute_of_day(ns(datetime(2024, 1, 1, 12, tzinfo=UTC))) == 13 * 60
    sh = LocalClock("Asia/Shanghai")
    day = sh.local_day(t)
    assert datetime.fromtimestamp(sh.day_start_ns(day) / NS, UTC) == datetime(
        2024, 5, 31, 16, tzinfo=UTC
    )  # local midnight starting June 1 (20:00 local)


def test_windows() -> None:
    night = (parse_hhmm("22:00"), parse_hhmm("06:00"))
    assert in_window(23 * 60, *night) and in_window(5 * 60, *night)
    assert not in_window(6 * 60, *night) and not in_window(21 * 60 + 59, *night)
    day = (parse_hhmm("07:00"), parse_hhmm("20:00"))
    assert in_window(7 * 60, *day) and not in_window(20 * 60, *day)
    assert parse_hhmm("24:00") == 1440
