"""Vehicle rules on hand-made tracks: GPS jumps (and that they poison nothing), overspeed,
idling, and the muck-truck corridor, dumping and daytime-hauling rules."""

from __future__ import annotations

from typing import Any

import shapely
from rulefeed import feed

from citywatch.citymodel import CityModel
from processors.alerts import AlertManager, AlertPolicy
from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition
from processors.rules.solar import LocalClock
from processors.rules.streak import NS
from processors.rules.vehicle import corridor_violation, daytime_hauling, illegal_dump
from processors.rules.vehicle.corridor_violation import CorridorViolation
from processors.rules.vehicle.daytime_hauling import DaytimeHauling
from processors.rules.vehicle.fixes import JUMP, OK, FixFilter
from processors.rules.vehicle.geo import Area, LocalProjection, haversine_m
from processors.rules.vehicle.gps_jump import GpsJump
from processors.rules.vehicle.idle_too_long import IdleTooLong
from processors.rules.vehicle.illegal_dump import IllegalDump
from processors.rules.vehicle.overspeed import Overspeed

LAT0, LON0 = 31.23, 121.47
PROJ = LocalProjection(LAT0, LON0)
T_DAY = 1_717_207_200 * NS  # 2024-06-01 10:00 local (UTC+8)
T_EVE = 1_717_246_800 * NS  # 2024-06-01 21:00 local


def ll(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x m east, y m north of the centre."""
    return LAT0 + y / PROJ.ky, LON0 + x / PROJ.kx


def lonlat_poly(pts: list[tuple[float, float]]) -> shapely.Polygon:
    return shapely.Polygon([(ll(x, y)[1], ll(x, y)[0]) for x, y in pts])


def square(cx: float, cy: float, h: float) -> shapely.Polygon:
    return lonlat_poly([(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)])


ROUTE = shapely.LineString([(ll(x, 0)[1], ll(x, 0)[0]) for x in (0.0, 1500.0, 3000.0)])
DEPOT = square(0.0, 400.0, 50.0)  # outside the 150 m corridor
DISPOSAL = square(3000.0, 500.0, 150.0)
ZONE = lonlat_poly([(1000, -1000), (2000, -1000), (2000, 1000), (1000, 1000)])


def fix(
    k: int, x: float, y: float = 0.0, t0: int = T_DAY, dt_s: int = 10, kind: str = "muck", **kw: Any
) -> dict[str, Any]:
    lat, lon = ll(x, y)
    return {
        "device_id": "truck-1",
        "family": "vehicle",
        "district": "central",
        "ts": t0 + k * dt_s * NS,
        "lat": lat,
        "lon": lon,
        "vehicle_kind": kind,
        "route_id": "r1",
        **kw,
    }


def raised(conds: list[Condition]) -> list[tuple[str, str]]:
    am = AlertManager(AlertPolicy(clear_after_s=600))
    return [(e.kind, e.target) for c in conds for e in am.apply(c) if e.state == "raised"]


def drive(n: int, v_ms: float = 8.0, y: float = 0.0, **kw: Any) -> list[dict[str, Any]]:
    return [fix(k, 10.0 * v_ms * k, y, speed_kmh=v_ms * 3.6, **kw) for k in range(n)]


# --- projection, areas, filter ------------------------------------------------------------


def test_projection_matches_haversine_within_a_city() -> None:
    lat, lon = ll(8000.0, 6000.0)
    x, y = PROJ.xy(lat, lon)
    assert abs((x * x + y * y) ** 0.5 - haversine_m(LAT0, LON0, lat, lon)) < 25.0
    assert abs(x - 8000.0) < 1e-6 and abs(y - 6000.0) < 1e-6


def test_area_cells_agree_with_shapely() -> None:
    poly = PROJ.geom(ROUTE).buffer(150.0)
    area = Area(poly)
    for x in range(-300, 3300, 37):
        for y in range(-400, 400, 23):
            assert area.contains(float(x), float(y)) == poly.contains(shapely.Point(x, y))


def test_filter_drops_a_jump_and_keeps_the_track() -> None:
    f = FixFilter()
    assert f.check("v", 0, 0.0, 0.0) == OK
    assert f.check("v", 10 * NS, 80.0, 0.0) == OK
    assert f.check("v", 20 * NS, 3000.0, 2000.0) == JUMP
    assert f.check("v", 30 * NS, 160.0, 0.0) == OK  # judged against the last good fix


def test_filter_re_anchors_when_the_reference_was_the_bad_fix() -> None:
    f = FixFilter()
    f.check("v", 0, 5000.0, 5000.0)  # a bad first fix
    results = [f.check("v", k * 10 * NS, 80.0 * k, 0.0) for k in range(1, 6)]
    assert results == [JUMP, JUMP, OK, OK, OK]


# --- gps_jump -----------------------------------------------------------------------------


def test_gps_jump_is_an_info_event_that_clears() -> None:
    recs = drive(10)
    recs[5] = fix(5, 4000.0, 3000.0, speed_kmh=28.8)
    conds = feed(GpsJump(PROJ), recs)
    assert [(c.kind, c.active, c.severity) for c in conds] == [
        ("gps_jump", True, "info"),
        ("gps_jump", False, "info"),
    ]
    assert conds[0].ts == recs[5]["ts"] and conds[0].value is not None and conds[0].value > 200


def test_slow_drift_and_long_gaps_are_not_jumps() -> None:
    recs = drive(20, v_ms=15.0)
    recs.append(fix(200, 25_000.0, 0.0))  # 23 km in 30 min: 46 km/h
    assert feed(GpsJump(PROJ), recs) == []


def test_duplicates_and_late_fixes_are_not_jumps() -> None:
    recs = drive(5)
    recs.insert(3, dict(recs[2]))
    recs.append(fix(1, 4000.0, 0.0))  # late and far: stale, not judged
    assert feed(GpsJump(PROJ), recs) == []


# --- overspeed and idling -----------------------------------------------------------------


def test_overspeed_needs_three_fixes() -> None:
    rule = Overspeed(PROJ)
    speeds = [50, 65, 66, 50, 65, 66, 67, 40, 40, 40]
    conds = feed(rule, [fix(k, 0.0, speed_kmh=float(v)) for k, v in enumerate(speeds)])
    assert [(c.active, c.ts) for c in conds] == [
        (True, fix(6, 0).get("ts")),
        (False, fix(9, 0).get("ts")),
    ]


def test_overspeed_limit_per_kind() -> None:
    cfg = VehicleRulesConfig(overspeed_kmh={"sanitation": 40.0, "muck": 60.0})
    rule = Overspeed(PROJ, cfg)
    assert feed(rule, [fix(k, 0.0, speed_kmh=50.0) for k in range(5)]) == []
    sweeper = [
        fix(k, 0.0, speed_kmh=50.0, kind="sanitation") | {"device_id": "sw-1"} for k in range(5)
    ]
    assert raised(feed(rule, sweeper)) == [("overspeed", "sw-1")]


def test_idle_too_long() -> None:
    rule = IdleTooLong(PROJ)
    recs = [fix(k, 0.0, dt_s=60, ignition=True, speed_kmh=0.0) for k in range(21)]
    assert feed(rule, recs) == []  # 20 min is not more than 20 min
    conds = feed(rule, [fix(21, 0.0, dt_s=60, ignition=True, speed_kmh=0.0)])
    assert [(c.kind, c.active, c.severity) for c in conds] == [("idle_too_long", True, "info")]
    off = feed(rule, [fix(22, 0.0, dt_s=60, ignition=False, speed_kmh=0.0)])
    assert [c.active for c in off] == [False]


def test_idle_restarts_after_a_gap() -> None:
    rule = IdleTooLong(PROJ)
    recs = [fix(k, 0.0, dt_s=60, ignition=True, speed_kmh=0.0) for k in range(10)]
    recs += [fix(k, 0.0, dt_s=60, ignition=True, speed_kmh=0.0) for k in range(30, 45)]
    assert feed(rule, recs) == []  # 9 min, a 20 min hole, then 14 min


# --- corridor -----------------------------------------------------------------------------


def corridor() -> CorridorViolation:
    return CorridorViolation(PROJ, {"r1": ROUTE}, sites=[DEPOT, DISPOSAL])


def test_corridor_three_fixes_outside() -> None:
    recs = drive(5)
    recs += [fix(k, 400.0 + 10 * k, 300.0, speed_kmh=20.0) for k in range(5, 7)]
    recs += [fix(k, 470.0, 0.0, speed_kmh=20.0) for k in (7,)]
    assert feed(corridor(), recs) == []  # two outside, then back
    recs = drive(5) + [fix(k, 400.0 + 10 * k, 300.0, speed_kmh=20.0) for k in range(5, 8)]
    conds = feed(corridor(), recs)
    assert [(c.kind, c.active, c.severity) for c in conds] == [
        ("corridor_violation", True, "major")
    ]
    assert conds[0].value is not None and 290.0 < conds[0].value < 310.0


def test_corridor_clears_after_three_fixes_back_inside() -> None:
    recs = [fix(k, 500.0, 400.0) for k in range(4)]
    recs += [fix(k, 500.0, 50.0) for k in range(4, 7)]
    conds = feed(corridor(), recs)
    assert [(c.active, c.ts) for c in conds] == [(True, recs[2]["ts"]), (False, recs[6]["ts"])]


def test_gps_jump_does_not_cause_a_corridor_violation() -> None:
    recs = drive(12)
    recs[6] = fix(6, 480.0, 2500.0, speed_kmh=28.8)  # one fix kilometres off the route
    recs[7] = fix(7, 560.0, 0.0, speed_kmh=28.8)
    assert feed(corridor(), recs) == []
    # Three jumps in a row that disagree with each other are still three jumps.
    recs = drive(12)
    for k, y in ((5, 2500.0), (6, -2600.0), (7, 2700.0)):
        recs[k] = fix(k, 80.0 * k, y, speed_kmh=28.8)
    assert feed(corridor(), recs) == []


def test_depot_and_disposal_site_are_not_violations() -> None:
    recs = [fix(k, 0.0, 400.0, speed_kmh=0.0) for k in range(6)]
    recs += [fix(k, 3000.0, 500.0, speed_kmh=0.0) for k in range(200, 206)]
    assert feed(corridor(), recs) == []


def test_non_muck_vehicles_and_unknown_routes_are_skipped() -> None:
    recs = [fix(k, 500.0, 900.0, kind="garbage") for k in range(6)]
    recs += [fix(k, 500.0, 900.0) | {"route_id": "other"} for k in range(6, 12)]
    assert feed(corridor(), recs) == []


# --- illegal dump -------------------------------------------------------------------------


def dump() -> IllegalDump:
    return IllegalDump(PROJ, [DEPOT, DISPOSAL])


def stop(
    x: float,
    y: float,
    minutes: int,
    k0: int = 0,
    payload: str = "loaded",
) -> list[dict[str, Any]]:
    return [
        fix(k0 + k, x + (k % 3), y, dt_s=60, speed_kmh=0.5, payload_state=payload)
        for k in range(minutes + 1)
    ]


def test_loaded_stop_outside_sites_is_an_illegal_dump() -> None:
    recs = stop(1200.0, 600.0, 10)
    assert feed(dump(), recs) == []  # 10 min is not more than 10 min
    conds = feed(dump(), stop(1200.0, 600.0, 12))
    assert [(c.kind, c.active, c.severity) for c in conds[:1]] == [("illegal_dump", True, "major")]
    assert conds[0].ts == fix(11, 0, dt_s=60)["ts"]


def test_stop_at_disposal_site_or_empty_is_fine() -> None:
    assert feed(dump(), stop(3000.0, 500.0, 20)) == []
    assert feed(dump(), stop(1200.0, 600.0, 20, payload="empty")) == []


def test_unloading_during_the_stop_still_counts_and_moving_clears() -> None:
    recs = stop(1200.0, 600.0, 4) + stop(1200.0, 600.0, 8, k0=5, payload="empty")[:8]
    recs += [
        fix(k, 1200.0 + 100 * (k - 12), 600.0, dt_s=60, speed_kmh=30.0, payload_state="empty")
        for k in range(13, 15)
    ]
    conds = feed(dump(), recs)
    flips = [a for i, a in enumerate(c.active for c in conds) if i == 0 or a != conds[i - 1].active]
    assert flips == [True, False]
    assert conds[0].ts == fix(11, 0, dt_s=60)["ts"]
    assert next(c.ts for c in conds if not c.active) == fix(13, 0, dt_s=60)["ts"]


def test_stop_survives_a_quiet_tracker_but_not_a_move() -> None:
    recs = stop(1200.0, 600.0, 3)
    recs += [fix(k, 1201.0, 600.0, dt_s=60, speed_kmh=0.0) for k in (11, 12)]  # 7 min silent
    assert raised(feed(dump(), recs)) == [("illegal_dump", "truck-1")]
    moved = stop(1200.0, 600.0, 6) + stop(1600.0, 600.0, 6, k0=7)  # two short stops
    assert feed(dump(), moved) == []


def test_a_gps_jump_does_not_break_or_fake_a_stop() -> None:
    recs = stop(1200.0, 600.0, 12)
    # 10 km off in a minute: dropped, so neither a new stop nor a visit to a site.
    recs[6] = fix(6, 11200.0, 600.0, dt_s=60, speed_kmh=0.5, payload_state="loaded")
    assert raised(feed(dump(), recs)) == [("illegal_dump", "truck-1")]


# --- daytime hauling ----------------------------------------------------------------------


def hauling() -> DaytimeHauling:
    return DaytimeHauling(PROJ, [(ZONE, "07:00", "20:00")], LocalClock("Asia/Shanghai"))


def through_zone(t0: int) -> list[dict[str, Any]]:
    return [fix(k, 800.0 + 80.0 * k, 0.0, t0=t0, speed_kmh=28.8) for k in range(10)]


def test_moving_in_the_zone_in_banned_hours() -> None:
    conds = feed(hauling(), through_zone(T_DAY))
    assert [(c.kind, c.active) for c in conds][:1] == [("daytime_hauling", True)]
    # First fix inside the zone is k = 3 (x = 1040): raised on the third one inside.
    assert conds[0].ts == through_zone(T_DAY)[5]["ts"]


def test_evening_and_outside_the_zone_are_allowed() -> None:
    assert feed(hauling(), through_zone(T_EVE)) == []
    outside = [fix(k, 2500.0 + 80.0 * k, 0.0, speed_kmh=28.8) for k in range(10)]
    assert feed(hauling(), outside) == []


def test_standing_in_the_zone_neither_counts_nor_resets() -> None:
    recs = [fix(k, 1500.0, 0.0, speed_kmh=0.0) for k in range(10)]
    assert feed(hauling(), recs) == []
    recs = [fix(0, 1500.0, 0.0, speed_kmh=30.0), fix(1, 1580.0, 0.0, speed_kmh=30.0)]
    recs += [fix(k, 1580.0, 0.0, speed_kmh=0.0) for k in range(2, 6)]
    recs += [fix(6, 1660.0, 0.0, speed_kmh=30.0)]
    assert raised(feed(hauling(), recs)) == [("daytime_hauling", "truck-1")]


# --- wiring with the city model -----------------------------------------------------------


def test_factories_use_the_city_model() -> None:
    city = CityModel.generate(seed=1, scale=1)
    cfg = RulesConfig()
    assert corridor_violation.build(cfg, None) is None and illegal_dump.build(cfg, None) is None
    rule = corridor_violation.build(cfg, city)
    dh = daytime_hauling.build(cfg, city)
    assert isinstance(rule, CorridorViolation) and isinstance(dh, DaytimeHauling)
    truck = next(v for v in city.vehicles.values() if v.kind == "muck")
    line = shapely.LineString(city.line_xy(city.routes[truck.route_id].line))
    recs = []
    for k in range(12):
        x, y = shapely.get_coordinates(line.interpolate(40.0 * k))[0]
        off = 400.0 if k >= 6 else 0.0  # leaves the corridor sideways
        p = shapely.get_coordinates(line.interpolate(40.0 * k + 1.0))[0]
        nx, ny = -(p[1] - y), p[0] - x  # normal to the route
        n = (nx * nx + ny * ny) ** 0.5
        lat, lon = city.to_latlon(x + off * nx / n, y + off * ny / n)
        recs.append(
            {
                "device_id": truck.id,
                "family": "vehicle",
                "district": truck.district,
                "ts": T_EVE + k * 10 * NS,
                "lat": lat,
                "lon": lon,
                "vehicle_kind": "muck",
                "speed_kmh": 14.0,
            }
        )
    conds = feed(rule, recs)
    assert raised(conds) == [("corridor_violation", truck.id)]
    assert conds[0].ts == recs[8]["ts"]
