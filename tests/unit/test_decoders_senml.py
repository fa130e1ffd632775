"""senml: RFC 8428 base-field resolution, time rules, name/unit mapping, malformed packs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.decode import decode_message
from ingest.decoders.senml import SenML, _base_device, _resolve_name, split_name
from ingest.readings import (
    BinReading,
    DustReading,
    StreetlightReading,
    ValidationPolicy,
    VehicleReading,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BT = 1714564740  # NOW - 60 s
VECTORS = Path(__file__).parent / "vectors"
LAMP = "city/central/streetlight/lamp-0001/up"
DUST = "city/harbour/dust/dust-0007/up"


def decode(topic: str, pack: bytes) -> tuple[list[object], list[tuple[str, int | None]]]:
    res = decode_message(topic, pack, NOW)
    assert res.decoder == "senml"
    return list(res.readings), [(j.reason, j.index) for j in res.rejects]


def test_rfc_style_pack_with_two_times_gives_two_readings() -> None:
    readings, rejects = decode(DUST, (VECTORS / "senml_rfc8428_multi.json").read_bytes())
    assert rejects == []
    assert len(readings) == 2
    first, second = readings
    assert isinstance(first, DustReading)
    assert isinstance(second, DustReading)
    assert first.ts == NOW - timedelta(seconds=60)
    assert (first.pm25_ugm3, first.pm10_ugm3, first.noise_dba) == (12.5, 30.25, 58.0)
    assert first.wind_ms == pytest.approx(2.5)
    assert second.ts == NOW - timedelta(seconds=120)
    assert (second.pm25_ugm3, second.pm10_ugm3, second.wind_ms) == (11.0, 29.0, None)


def test_canonical_names_without_units() -> None:
    pack = b'[{"bn":"urn:dev:lamp-0001:","bt":%d,"n":"power_w","v":80},' % BT
    (r,), rejects = decode(LAMP, pack + b'{"n":"power_state","vs":"on"}]')
    assert rejects == []
    assert isinstance(r, StreetlightReading)
    assert (r.power_w, r.power_state, r.device_id) == (80.0, "on", "lamp-0001")


@pytest.mark.parametrize(
    ("name", "unit", "value", "field", "expected"),
    [
        ("power", "W", 85.0, "power_w", 85.0),
        ("power", "kW", 0.085, "power_w", 85.0),
        ("power_w", "W", 85.0, "power_w", 85.0),
        ("voltage", "mV", 230000, "voltage_v", 230.0),
        ("current", "mA", 370, "current_a", 0.37),
        ("dimming", "/", 0.4, "dimming_pct", 40.0),
        ("pf", "%", 95, "power_factor", 0.95),
    ],
)
def test_unit_named_names_convert(
    name: str, unit: str, value: float, field: str, expected: float
) -> None:
    pack = b'[{"bn":"urn:dev:lamp-0001:","bt":%d,"n":"%s","u":"%s","v":%s}]' % (
        BT,
        name.encode(),
        unit.encode(),
        repr(value).encode(),
    )
    (r,), rejects = decode(LAMP, pack)
    assert rejects == []
    assert getattr(r, field) == pytest.approx(expected)


def test_bin_and_vehicle_mappings() -> None:
    bin_pack = (
        b'[{"bn":"bin-0042/","bt":%d,"n":"fill","u":"%%","v":55},'
        b'{"n":"temperature","u":"Cel","v":19.5},{"n":"lid_open","vb":true},'
        b'{"n":"battery","u":"mV","v":3600},{"n":"tilt","u":"rad","v":0}]' % BT
    )
    (b,), rejects = decode("city/north/bin/bin-0042/up", bin_pack)
    assert rejects == []
    assert isinstance(b, BinReading)
    assert (b.fill_ratio, b.temperature_c, b.lid_open, b.battery_v, b.tilt_deg) == (
        0.55,
        19.5,
        True,
        3.6,
        0.0,
    )
    truck = (
        b'[{"bn":"urn:dev:truck-007:","bt":%d,"n":"latitude","u":"lat","v":31.2},'
        b'{"n":"longitude","u":"lon","v":121.5},{"n":"speed","u":"m/s","v":10},'
        b'{"n":"vehicle_kind","vs":"garbage"},{"n":"ignition","vb":false},'
        b'{"n":"odometer","u":"m","v":1500},{"n":"seq","v":41}]' % BT
    )
    (v,), rejects = decode("city/north/vehicle/truck-007/up", truck)
    assert rejects == []
    assert isinstance(v, VehicleReading)
    assert (v.lat, v.lon, v.vehicle_kind, v.ignition, v.seq) == (31.2, 121.5, "garbage", False, 41)
    assert v.speed_kmh == pytest.approx(36.0)
    assert v.odometer_km == pytest.approx(1.5)


def test_base_value_and_base_unit_apply_to_following_records() -> None:
    pack = (
        b'[{"bn":"urn:dev:lamp-0001:","bt":%d,"bu":"W","bv":100,"n":"power","v":-20},'
        b'{"n":"power","t":10,"v":5},'
        b'{"bv":0,"bu":"V","n":"voltage","t":20,"v":230}]' % BT
    )
    (a, b, c), rejects = decode(LAMP, pack)
    assert rejects == []
    assert isinstance(a, StreetlightReading)
    assert isinstance(b, StreetlightReading)
    assert isinstance(c, StreetlightReading)
    assert (a.power_w, b.power_w, c.power_w) == (80.0, 105.0, None)
    assert c.voltage_v == 230.0
    assert c.ts - a.ts == timedelta(seconds=20)


def test_relative_and_missing_times_are_relative_to_received_at() -> None:
    pack = (
        b'[{"bn":"urn:dev:lamp-0001:","n":"power_w","v":1},'
        b'{"n":"power_w","t":-30,"v":2},{"bt":-90,"n":"power_w","v":3}]'
    )
    readings, rejects = decode(LAMP, pack)
    assert rejects == []
    assert [(r.ts, r.power_w) for r in readings if isinstance(r, StreetlightReading)] == [
        (NOW, 1.0),
        (NOW - timedelta(seconds=30), 2.0),
        (NOW - timedelta(seconds=90), 3.0),
    ]


def test_time_2_to_28_is_absolute_and_just_below_is_relative() -> None:
    pack = b'[{"bn":"lamp-0001:","bt":268435456,"n":"power_w","v":1}]'
    # 1978 is far more than an hour behind: accepted but flagged late (when the policy's
    # max_age allows such old readings at all; the default refuses > 30 days).
    res = decode_message(LAMP, pack, NOW, policy=ValidationPolicy(max_age=timedelta(days=36500)))
    assert res.readings[0].ts == datetime(1978, 7, 4, 21, 24, 16, tzinfo=UTC)
    assert res.readings[0].late is True
    pack = b'[{"bn":"lamp-0001:","bt":-1,"t":0,"n":"power_w","v":1}]'
    assert decode_message(LAMP, pack, NOW).readings[0].ts == NOW - timedelta(seconds=1)


def test_base_only_record_is_skipped() -> None:
    pack = b'[{"bn":"urn:dev:lamp-0001:","bt":%d},{"n":"power_w","v":7}]' % BT
    (r,), rejects = decode(LAMP, pack)
    assert rejects == []
    assert (r.ts, r.power_w) == (NOW - timedelta(seconds=60), 7.0)


def test_device_in_name_must_match_topic() -> None:
    pack = b'[{"bn":"urn:dev:lamp-0002:","bt":%d,"n":"power_w","v":80}]' % BT
    readings, rejects = decode(LAMP, pack)
    assert readings == []
    assert rejects == [("device_mismatch", 0)]


def test_names_without_device_take_the_topic_device() -> None:
    (r,), rejects = decode(LAMP, b'[{"n":"power_w","v":80,"t":-5}]')
    assert rejects == []
    assert r.device_id == "lamp-0001"


def test_eui_device_compares_case_insensitively() -> None:
    pack = b'[{"bn":"urn:dev:mac:0024BEFFFE804FF1:","n":"power_w","v":80}]'
    (r,), rejects = decode("city/central/streetlight/0024befffe804ff1/up", pack)
    assert rejects == []
    assert r.device_id == "0024befffe804ff1"


def test_unknown_name_is_rejected_not_dropped() -> None:
    pack = b'[{"bn":"lamp-0001:","n":"power_w","v":80},{"n":"rssi","v":-97}]'
    readings, rejects = decode(LAMP, pack)
    assert readings == []
    assert rejects == [("validation", 0)]


@pytest.mark.parametrize(
    "record",
    [
        b'{"n":"power","u":"hp","v":1}',  # unit not accepted
        b'{"n":"power_state","v":1}',  # wrong value label
        b'{"n":"power_w","vs":"80"}',
        b'{"n":"power_w","v":"80"}',  # a string in v
        b'{"n":"power_w","v":true}',
        b'{"n":"power_w","v":1,"vs":"x"}',  # two values
        b'{"n":"power_w","s":100}',  # sums have no field
        b'{"n":"power_w"}',  # no value
        b'{"n":"seq","v":1.5}',
        b'{"n":"lid_open","vb":"yes"}',
    ],
)
def test_bad_record_rejects_its_reading_only(record: bytes) -> None:
    pack = (
        b'[{"bn":"lamp-0001:","bt":%d,"n":"power_state","vs":"on"},'
        b'{"bn":"lamp-0001:","bt":%d,"n":"power_state","vs":"off"},'
        b'{"bt":%d,%s]' % (BT - 10, BT, BT, record[1:])
    )
    readings, rejects = decode(LAMP, pack)
    assert [r.power_state for r in readings if isinstance(r, StreetlightReading)] == ["on"]
    assert rejects == [("senml", 1)]


def test_duplicate_field_at_one_time_is_rejected() -> None:
    pack = b'[{"bn":"lamp-0001:","n":"power_w","v":1},{"n":"power_w","v":2}]'
    assert decode(LAMP, pack) == ([], [("senml", 0)])


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        (b'[{"bn":"lamp-0001:","n":"power_w","v":1,"bver":11}]', "senml"),
        (b'[{"bn":"lamp-0001:","n":"power_w","v":1,"bver":"10"}]', "senml"),
        (b'[{"bn":"lamp-0001:","n":"power_w","v":1,"x_":1}]', "senml"),
        (b'[{"bn":"lamp 0001:","n":"power_w","v":1}]', "senml"),  # space in name
        (b'[{"bn":"-lamp:","n":"power_w","v":1}]', "senml"),  # bad first char
        (b'[{"bn":"lamp-0001:","v":1}]', "senml"),  # no field part
        (b'[{"bn":5,"n":"power_w","v":1}]', "senml"),
        (b'[{"n":"power_w","v":1,"t":"now"}]', "senml"),
        (b'[{"n":"power_w","v":1}, 7]', "senml"),
        (b'[{"bn":"lamp-0001:","bt":1e300,"n":"power_w","v":1}]', "bad_ts"),
        (b'[{"bn":"lamp-0001:","bt":-1e300,"n":"power_w","v":1}]', "bad_ts"),
        (b'[{"bn":"lamp-0001:"}]', "senml"),  # nothing measured
        (b'[{"bn":"lamp-0001:","n":"power_w","v":1}', "bad_json"),
    ],
)
def test_malformed_packs_reject_the_message(pack: bytes, reason: str) -> None:
    res = decode_message(LAMP, pack, NOW)
    assert res.decoder == "senml"
    assert res.readings == []
    assert [(j.reason, j.index) for j in res.rejects] == [(reason, None)]


def test_unknown_labels_are_ignored() -> None:
    (r,), rejects = decode(LAMP, b'[{"n":"power_w","v":1,"ut":300,"l":"x","foo":{}}]')
    assert rejects == []
    assert r.power_w == 1.0


@pytest.mark.parametrize(
    ("name", "device", "field"),
    [
        ("urn:dev:lamp-0001:power_w", "lamp-0001", "power_w"),
        ("urn:dev:mac:0024BEFFFE:temp", "0024befffe", "temp"),
        ("city/lamp-0001/power", "lamp-0001", "power"),
        ("power_w", None, "power_w"),
        ("pm2.5", None, "pm2.5"),
        ("lamp-0001:", "lamp-0001", ""),
    ],
)
def test_split_name(name: str, device: str | None, field: str) -> None:
    assert split_name(name) == (device, field)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'[{"n":"x","v":1}]', True),
        (b' [{"bn":"x:"}]', True),
        (b'[ {\n "v": 1, "n": "x"}]', True),
        (b'[{"ts": 1, "x": {"n": 1}}]', False),  # a nested "n" is no SenML
        (b'[{"ts":1,"power_w":1}]', False),  # a json_native batch
        (b'{"n":"x","v":1}', False),  # SenML JSON is always an array
    ],
)
def test_sniff(payload: bytes, expected: bool) -> None:
    assert SenML().matches(LAMP, payload) is expected


@pytest.mark.parametrize(
    "bn",
    [
        "urn:dev:LAMP-0001:",
        "urn:dev:",
        "urn:dev:mac:0024BEFFFE:",
        "city/x1/bin-7/",
        "lamp:",
        "-lamp:",
        "lamp",
        "",
        "a b:",
        "urn:dev:lamp-1/",
    ],
)
@pytest.mark.parametrize("n", ["power_w", "pm2.5", "seq", "x:y", "a/b", "", "_x", "bad name"])
def test_base_name_shortcut_resolves_as_the_whole_name(bn: str, n: str) -> None:
    # The decoder resolves bn once per pack and takes a bare n as the field; whenever it
    # does, that must be what resolving the whole name bn + n gives.
    usable, device = _base_device(bn)
    if usable and n and all(c.isalnum() or c in "._-" for c in n):
        assert _resolve_name(bn + n) == (device, n)
    else:
        assert not usable or not n or ":" in n or "/" in n or " " in n
