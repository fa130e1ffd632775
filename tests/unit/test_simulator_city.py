"""City model: reproducible generation, structure, persistence, schedule and geometry lookups."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from citywatch.citymodel import CityModel
from ingest.decoders.lamp_binary import child_device_id
from ingest.readings import DEVICE_ID_PATTERN, TAG_ID_PATTERN
from ingest.simulator.timebase import default_start

SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def city() -> CityModel:
    return CityModel.generate(seed=1, scale=1)


def local_ts(y: int, m: int, d: int, hh: int, mm: int = 0) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI).timestamp()


def test_same_seed_same_city_other_seed_other_city(city: CityModel) -> None:
    again = CityModel.generate(seed=1, scale=1)
    assert again.model_dump_json() == city.model_dump_json()
    other = CityModel.generate(seed=2, scale=1)
    assert other.model_dump_json() != city.model_dump_json()


def test_default_scale_is_one_small_district(city: CityModel) -> None:
    assert list(city.districts) == ["central"]
    assert 300 <= len(city.devices) <= 600
    families = Counter(d.family for d in city.devices.values())
    assert set(families) == {"streetlight", "bin", "vehicle", "dust"}
    assert city.utc_offset_minutes == 480  # longitude 121.47 -> UTC+8


def test_ids_and_links_are_consistent(city: CityModel) -> None:
    pattern = re.compile(DEVICE_ID_PATTERN)
    tag = re.compile(TAG_ID_PATTERN)
    for dev in city.devices.values():
        assert pattern.fullmatch(dev.id), dev.id
        assert (
            dev.interval_s
            == {"streetlight": 300, "bin": 900, "vehicle": 10, "dust": 60}[dev.family]
        )
        for link in (dev.circuit_id, dev.cabinet_id, dev.site_id, dev.route_id):
            assert link is None or tag.fullmatch(link), link
    for circuit in city.circuits.values():
        assert 10 <= len(circuit.lamp_ids) <= 30
        assert circuit.id in city.cabinets[circuit.cabinet_id].circuit_ids
        assert len({city.devices[lamp].payload_format for lamp in circuit.lamp_ids}) == 1
        for lamp in circuit.lamp_ids:
            assert city.circuit_of(lamp) is circuit
    for cab in city.cabinets.values():
        assert 1 <= len(cab.circuit_ids) <= 3
    for site in city.sites.values():
        assert 2 <= len(site.sensor_ids) <= 4
        assert site.pm10_limit_ugm3 == 150.0 and site.night_noise_limit_dba == 55.0
    kinds = Counter(v.kind for v in city.vehicles.values())
    assert set(kinds) == {"sanitation", "garbage", "muck"}


def test_concentrator_lamps_are_named_as_the_binary_frame_names_them(city: CityModel) -> None:
    lamps = [d for d in city.devices.values() if d.concentrator_id]
    assert lamps, "seed 1 has concentrator cabinets"
    for dev in lamps:
        assert dev.payload_format == "lamp_binary"
        lamp_no = int(dev.id.rsplit("-", 1)[1])
        assert child_device_id(dev.concentrator_id or "", lamp_no) == dev.id
        assert pattern_ok(dev.concentrator_id or "")


def pattern_ok(device_id: str) -> bool:
    return re.fullmatch(DEVICE_ID_PATTERN, device_id) is not None


def test_save_load_round_trip(city: CityModel, tmp_path: Path) -> None:
    path = tmp_path / "city.json"
    city.save(path)
    loaded = CityModel.load(path)
    assert loaded.model_dump() == city.model_dump()
    raw = path.read_text()
    assert '"type":"LineString"' in raw and '"type":"Polygon"' in raw


def test_lamp_schedule_at_dusk_and_dawn(city: CityModel) -> None:
    lamp = next(d.id for d in city.devices.values() if d.family == "streetlight")
    day = city.local_day(local_ts(2024, 6, 1, 12))
    sunrise, sunset = city.sun_times(day)
    # Shanghai, 1 June: sunset ~19:00, sunrise ~04:50 local.
    assert city.local_time(sunset).hour in (18, 19)
    assert city.local_time(sunrise).hour == 4
    before, after = city.lamp_expected(lamp, sunset - 60), city.lamp_expected(lamp, sunset + 60)
    assert (before.state, after.state) == ("off", "on")
    assert before.near_switch and after.near_switch
    assert not city.lamp_expected(lamp, sunset + 3 * 3600).near_switch
    next_sunrise = city.sun_times(day + 1)[0]
    assert city.lamp_expected(lamp, next_sunrise - 60).lit
    assert not city.lamp_expected(lamp, next_sunrise + 60).lit
    assert city.lamp_expected(lamp, local_ts(2024, 6, 1, 12)).state == "off"


def test_lamps_dim_after_midnight(city: CityModel) -> None:
    circuit = next(iter(city.circuits))
    at_one = city.lamp_expected(circuit, local_ts(2024, 12, 1, 1))
    assert (at_one.state, at_one.dimming_pct, at_one.near_switch) == ("dim", 50, False)
    assert city.lamp_expected(circuit, local_ts(2024, 12, 1, 23)).dimming_pct == 100
    assert city.lamp_expected(circuit, local_ts(2024, 12, 1, 0, 5)).near_switch
    switches = city.switch_times(circuit, local_ts(2024, 12, 1, 12), local_ts(2024, 12, 2, 12))
    assert len(switches) == 4  # on, dim, full, off


def test_geometry_lookups(city: CityModel) -> None:
    route = next(r for r in city.routes.values() if r.vehicle_kind == "muck")
    for lon, lat in route.line.coordinates:
        assert city.in_corridor(route.id, lat, lon)
    lon, lat = route.line.coordinates[0]
    x, y = city.to_xy(lat, lon)
    assert city.to_latlon(x, y) == pytest.approx((lat, lon), abs=1e-9)
    far_lat, far_lon = city.to_latlon(x - 500.0, y - 500.0)
    assert city.corridor_distance_m(route.id, far_lat, far_lon) > route.corridor_buffer_m
    assert not city.in_corridor(route.id, far_lat, far_lon)
    district = city.districts["central"]
    assert city.no_haul_zone_at(district.lat, district.lon) is not None
    depot = city.depots[route.depot_id]
    d_lon, d_lat = depot.area.coordinates[0][0]
    assert city.no_haul_zone_at(d_lat, d_lon) is None
    assert city.depot_at(lat, lon) is depot  # muck routes start at their depot
    disposal = city.disposal_sites[route.disposal_site_id or ""]
    ring = city.polygon_xy(disposal.area)
    cx, cy = sum(p[0] for p in ring[:-1]) / 4, sum(p[1] for p in ring[:-1]) / 4
    assert city.disposal_site_at(*city.to_latlon(cx, cy)) is disposal


def test_banned_hours_and_site_night(city: CityModel) -> None:
    assert city.is_banned_hour(local_ts(2024, 5, 2, 7, 30))
    assert not city.is_banned_hour(local_ts(2024, 5, 2, 20, 30))
    site = next(iter(city.sites))
    assert city.is_site_night(site, local_ts(2024, 5, 2, 23))
    assert not city.is_site_night(site, local_ts(2024, 5, 2, 12))


def test_default_start_is_16_local_and_ends_before_now(city: CityModel) -> None:
    now = local_ts(2024, 5, 2, 10)
    start = default_start(city, now, 16 * 3600)
    assert city.local_time(start).hour == 16
    assert start + 16 * 3600 <= now
    assert now - start < 2 * 86400


@pytest.mark.slow
def test_scales_to_100k_devices() -> None:
    t = time.perf_counter()
    big = CityModel.generate(seed=1, scale=250)
    assert len(big.devices) >= 100_000
    assert time.perf_counter() - t < 60
    assert len(big.districts) == 250 and len({d.code for d in big.districts.values()}) == 250
    assert math.isfinite(big.devices[next(iter(big.devices))].lat or 0.0)
