"""Trip summaries: mileage (odometer / haversine), operating hours, route coverage, days."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import shapely

from citywatch.citymodel import CityModel
from processors.config import RulesConfig
from processors.rules.solar import LocalClock
from processors.rules.streak import NS
from processors.rules.vehicle import trip_summary
from processors.rules.vehicle.coverage import RouteSampler
from processors.rules.vehicle.geo import LocalProjection
from processors.rules.vehicle.trip_summary import TripSummaries

LAT0, LON0 = 31.23, 121.47
PROJ = LocalProjection(LAT0, LON0)
T0 = 1_717_200_000 * NS  # 2024-06-01 08:00 local (UTC+8)
ROUTE = shapely.LineString([(LON0 + x / PROJ.kx, LAT0) for x in (0.0, 2000.0)])


def ll(x: float, y: float = 0.0) -> tuple[float, float]:
    return LAT0 + y / PROJ.ky, LON0 + x / PROJ.kx


def fix(t_s: float, x: float, y: float = 0.0, dev: str = "truck-1", **kw: Any) -> dict[str, Any]:
    lat, lon = ll(x, y)
    return {
        "device_id": dev,
        "family": "vehicle",
        "district": "central",
        "ts": T0 + int(t_s * NS),
        "lat": lat,
        "lon": lon,
        "vehicle_kind": "garbage",
        "route_id": "r1",
        "ignition": True,
        **kw,
    }


def summaries(recs: list[dict[str, Any]], **kw: Any) -> TripSummaries:
    t = TripSummaries(PROJ, LocalClock("Asia/Shanghai"), {"r1": ROUTE}, **kw)
    for r in recs:
        t.on_reading(r, [])
    return t


def fields(t: TripSummaries) -> dict[str, Any]:
    (p,) = t.kpi_points(include_open=True)
    out: dict[str, Any] = p["fields"]
    return out


def test_gps_mileage_hours_and_full_coverage() -> None:
    recs = [fix(10 * k, 80.0 * k) for k in range(26)]  # 0 .. 2000 m in 250 s
    f = fields(summaries(recs))
    assert f["mileage_source"] == "gps"
    assert f["mileage_km"] == pytest.approx(2.0, rel=0.005)
    assert f["operating_h"] == pytest.approx(250 / 3600)
    assert f["route_coverage"] == pytest.approx(1.0, abs=0.02)
    assert f["fixes"] == 26 and f["jumps_dropped"] == 0


def test_half_the_route_is_half_covered() -> None:
    f = fields(summaries([fix(10 * k, 80.0 * k) for k in range(13)]))  # 0 .. 960 m
    assert f["route_coverage"] == pytest.approx(0.5, abs=0.04)


def test_odometer_wins_and_order_does_not_matter() -> None:
    recs = [fix(10 * k, 80.0 * k, odometer_km=1000.0 + 0.1 * k) for k in range(10)]
    recs.reverse()
    f = fields(summaries(recs))
    assert f["mileage_source"] == "odometer"
    assert f["mileage_km"] == pytest.approx(0.9)


def test_gps_jump_adds_no_distance() -> None:
    recs = [fix(10 * k, 80.0 * k) for k in range(10)]
    recs[5] = fix(50, 400.0, 5000.0)
    f = fields(summaries(recs))
    assert f["mileage_km"] == pytest.approx(0.72, rel=0.01)
    assert f["jumps_dropped"] == 1


def test_operating_hours_need_the_ignition_and_cap_gaps() -> None:
    recs = [
        fix(0, 0),
        fix(10, 80),
        fix(20, 160, ignition=False),
        fix(30, 160, ignition=False),
        fix(40, 160),
        fix(50, 240),
        fix(3650, 240),
        fix(3660, 320),
    ]
    f = fields(summaries(recs))
    # 0-10, 40-50, then a one-hour hole counted as max_gap_s (120 s), then 3650-3660.
    assert f["operating_h"] * 3600 == pytest.approx(10 + 10 + 120 + 10)


def test_days_are_local_and_close_after_midnight_plus_grace() -> None:
    before = fix(15 * 3600 + 59 * 60, 0.0)  # 23:59 local on June 1
    after = fix(16 * 3600 + 60, 80.0)  # 00:01 local on June 2
    t = summaries([before, after])
    assert t.kpi_points(after["ts"]) == []  # June 1 not yet final
    open_days = t.kpi_points(after["ts"], include_open=True)
    assert sorted(p["tags"]["day"] for p in open_days) == ["2024-06-01", "2024-06-02"]
    done = t.kpi_points(after["ts"] + 3600 * NS)
    assert [p["tags"] for p in done] == [
        {"vehicle": "truck-1", "day": "2024-06-01", "kind": "garbage"}
    ]
    assert done[0]["measurement"] == "trips"
    assert done[0]["ts"] == T0 - 8 * 3600 * NS  # local midnight of June 1, in UTC
    assert [p["tags"]["day"] for p in t.flush()] == ["2024-06-02"]
    assert t.flush() == []


def test_late_fix_lands_in_its_own_day() -> None:
    t = summaries([fix(16 * 3600 + 60, 80.0), fix(15 * 3600, 0.0, odometer_km=5.0)])
    days = {p["tags"]["day"]: p["fields"] for p in t.kpi_points(include_open=True)}
    assert set(days) == {"2024-06-01", "2024-06-02"} and days["2024-06-01"]["fixes"] == 1


def test_a_day_found_after_an_empty_look_is_still_closed_on_time() -> None:
    # The first look finds nothing due and remembers when the next day closes; days that
    # arrive later (a late fix of the day before, a restored checkpoint) may close sooner.
    june1 = fix(15 * 3600, 0.0)  # 23:00 local on June 1
    t = summaries([fix(16 * 3600 + 60, 80.0, dev="truck-2")])  # June 2
    assert t.kpi_points(june1["ts"]) == []
    t.on_reading(june1, [])
    restored = summaries([])
    restored.relearn("truck-1", t.learnt("truck-1"))
    closes = june1["ts"] + 2 * 3600 * NS  # June 1 ends at 00:00 local, final at 01:00
    for s in (t, restored):
        assert s.kpi_points(closes - 1) == []
        assert [p["tags"]["vehicle"] for p in s.kpi_points(closes)] == ["truck-1"]
        assert s.kpi_points(closes + 3600 * NS) == []  # each day once


def test_a_23_hour_day_closes_at_its_own_midnight() -> None:
    # Berlin's 2024-03-31 lasts 23 hours (the clocks go forward at 02:00): it ends at
    # 22:00 UTC and is final an hour later, not at start + 24 h + 1 h.
    t = TripSummaries(PROJ, LocalClock("Europe/Berlin"))
    noon = 1_711_886_400 * NS  # 2024-03-31 12:00 UTC, 14:00 local
    t.on_reading({**fix(0, 0.0), "ts": noon}, [])
    final = 1_711_926_000 * NS  # 2024-03-31 23:00 UTC
    assert t.kpi_points(final - 1) == []
    assert [p["tags"]["day"] for p in t.kpi_points(final)] == ["2024-03-31"]


def test_route_sampler_near() -> None:
    s = RouteSampler(PROJ.geom(ROUTE), 50.0)
    assert s.n == 81
    near = s.near(1000.0, 30.0)
    assert near and all(abs(25.0 * k - 1000.0) <= 55.0 for k in near)
    assert s.near(1000.0, 80.0) == ()


def test_build_from_city_model() -> None:
    city = CityModel.generate(seed=1, scale=1)
    rule = trip_summary.build(RulesConfig(), city)
    assert isinstance(rule, TripSummaries) and set(rule.routes) == set(city.routes)
    assert rule.clock.minute_of_day(0) == city.utc_offset_minutes % 1440


@pytest.mark.parametrize("odometer", [False, True])
def test_a_restart_goes_on_from_the_checkpointed_day(odometer: bool) -> None:
    """The morning in a checkpoint, a replay of fixes it holds, then the afternoon: the same
    day as a processor that never stopped."""
    odo = (lambda k: {"odometer_km": 1000.0 + 0.08 * k}) if odometer else (lambda k: {})
    recs = [fix(10 * k, 80.0 * k, **odo(k)) for k in range(26)]
    whole = summaries(recs)
    before = summaries(recs[:15])
    state = orjson.loads(orjson.dumps(before.learnt("truck-1")))
    after = TripSummaries(PROJ, LocalClock("Asia/Shanghai"), {"r1": ROUTE})
    after.relearn("truck-1", state)
    for r in recs[10:]:  # the replay begins before the checkpoint's last fix
        after.on_reading(r, [])
    assert fields(after) == pytest.approx(fields(whole))
    # Without the checkpoint the day begins at the replay: a third of it is missing.
    assert fields(summaries(recs[10:]))["mileage_km"] < 0.7 * fields(whole)["mileage_km"]


def test_a_checkpoint_restores_only_the_days_still_open() -> None:
    late = 2 * 86_400  # two days on: the first day closed long before this fix
    t = summaries([fix(0, 0.0), fix(10, 80.0), fix(late, 0.0), fix(late + 10, 80.0)])
    state = orjson.loads(orjson.dumps(t.learnt("truck-1")))
    assert [row[0] for row in state] == [t.clock.local_day(T0 + late * NS)]
    back = TripSummaries(PROJ, LocalClock("Asia/Shanghai"), {"r1": ROUTE})
    back.relearn("truck-1", [[state[0][0] - 2, *state[0][1:]], *state])
    assert len(back.days) == 1  # the day closed before the vehicle's last fix is not revived
    with pytest.raises((ValueError, TypeError)):
        back.relearn("truck-1", [["a day", "garbage"]])


def test_a_vehicle_given_to_another_processor_takes_its_days_along() -> None:
    t = summaries([fix(0, 0.0), fix(10, 80.0), fix(0, 0.0, dev="truck-2")])
    t.forget({"truck-1"})
    assert [p["tags"]["vehicle"] for p in t.kpi_points(include_open=True)] == ["truck-2"]
    assert t.learnt("truck-1") is None
