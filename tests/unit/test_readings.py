"""Reading models: bounds, NaN/inf, time rules, ids, extras, union dispatch, record format."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ingest.readings import (
    BinReading,
    DustReading,
    StreetlightReading,
    ValidationPolicy,
    VehicleReading,
    from_record,
    reading_from_record,
    reading_key,
    to_record,
    validate_reading,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def envelope(family: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "device_id": f"{family}-0001",
        "family": family,
        "district": "central",
        "ts": NOW - timedelta(seconds=5),
        "received_at": NOW,
    }
    base.update(fields)
    return base


GOOD: dict[str, dict[str, Any]] = {
    "streetlight": envelope(
        "streetlight",
        power_state="dim",
        dimming_pct=40,
        power_w=31.5,
        voltage_v=229.9,
        current_a=0.15,
        power_factor=0.91,
        circuit_id="C-12",
        cabinet_id="cab-0007",
    ),
    "bin": envelope(
        "bin",
        fill_ratio=0.8,
        temperature_c=21.0,
        tilt_deg=2.0,
        lid_open=False,
        battery_v=3.6,
        emptied=True,
    ),
    "vehicle": envelope(
        "vehicle",
        lat=31.23,
        lon=121.47,
        vehicle_kind="muck",
        speed_kmh=32.0,
        heading_deg=270.0,
        ignition=True,
        odometer_km=12345.6,
        route_id="R7",
        payload_state="loaded",
    ),
    "dust": envelope(
        "dust",
        pm25_ugm3=12.0,
        pm10_ugm3=30.0,
        tsp_ugm3=80.0,
        noise_dba=61.5,
        wind_ms=3.2,
        site_id="pier-4",
    ),
}
MODELS = {
    "streetlight": StreetlightReading,
    "bin": BinReading,
    "vehicle": VehicleReading,
    "dust": DustReading,
}


def errors_of(data: dict[str, Any], **kwargs: Any) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        validate_reading(data, **kwargs)
    return info.value.errors()


@pytest.mark.parametrize("family", list(GOOD))
def test_each_family_validates_to_its_model(family: str) -> None:
    reading = validate_reading(GOOD[family])
    assert type(reading) is MODELS[family]
    assert reading.family == family
    assert reading.late is False


@pytest.mark.parametrize(
    ("family", "field", "bad"),
    [
        ("streetlight", "dimming_pct", 100.01),
        ("streetlight", "dimming_pct", -1),
        ("streetlight", "power_w", 2000.5),
        ("streetlight", "voltage_v", 300.1),
        ("streetlight", "current_a", 20.01),
        ("streetlight", "power_factor", 1.001),
        ("streetlight", "power_state", "blinking"),
        ("bin", "fill_ratio", 1.01),
        ("bin", "fill_ratio", -0.01),
        ("bin", "temperature_c", -40.5),
        ("bin", "temperature_c", 150.5),
        ("bin", "tilt_deg", 180.5),
        ("bin", "battery_v", 15.1),
        ("vehicle", "speed_kmh", 250.1),
        ("vehicle", "heading_deg", 360.5),
        ("vehicle", "odometer_km", -0.1),
        ("vehicle", "lat", 90.01),
        ("vehicle", "lon", -180.01),
        ("vehicle", "vehicle_kind", "taxi"),
        ("vehicle", "payload_state", "half"),
        ("dust", "pm25_ugm3", 2000.1),
        ("dust", "pm10_ugm3", -1),
        ("dust", "tsp_ugm3", 5000.1),
        ("dust", "noise_dba", 200.1),
        ("dust", "wind_ms", 80.1),
    ],
)
def test_out_of_bounds_values_are_rejected(family: str, field: str, bad: Any) -> None:
    errs = errors_of(dict(GOOD[family], **{field: bad}))
    assert errs[0]["loc"][-1] == field


@pytest.mark.parametrize(
    ("family", "field", "edge"),
    [
        ("streetlight", "dimming_pct", 0),
        ("streetlight", "dimming_pct", 100),
        ("streetlight", "power_w", 2000),
        ("streetlight", "power_factor", 1),
        ("bin", "fill_ratio", 0),
        ("bin", "fill_ratio", 1),
        ("bin", "temperature_c", -40),
        ("vehicle", "heading_deg", 360),
        ("vehicle", "lat", -90),
        ("vehicle", "lon", 180),
        ("dust", "wind_ms", 80),
    ],
)
def test_inclusive_bounds_are_accepted(family: str, field: str, edge: float) -> None:
    reading = validate_reading(dict(GOOD[family], **{field: edge}))
    assert getattr(reading, field) == edge


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("family", "field"),
    [("streetlight", "power_w"), ("bin", "fill_ratio"), ("vehicle", "lat"), ("dust", "pm10_ugm3")],
)
def test_nan_and_inf_are_rejected(family: str, field: str, bad: float) -> None:
    errs = errors_of(dict(GOOD[family], **{field: bad}))
    assert errs[0]["type"] == "finite_number"


def test_odometer_has_no_upper_bound_but_rejects_inf() -> None:
    assert validate_reading(dict(GOOD["vehicle"], odometer_km=9e12)).odometer_km == 9e12
    assert errors_of(dict(GOOD["vehicle"], odometer_km=math.inf))[0]["type"] == "finite_number"


@pytest.mark.parametrize(
    ("field", "value"),
    [("power_w", "85.5"), ("power_w", True), ("seq", 1.0), ("seq", "3"), ("district", 7)],
)
def test_types_are_strict(field: str, value: Any) -> None:
    errs = errors_of(dict(GOOD["streetlight"], **{field: value}))
    assert errs[0]["loc"][-1] == field


def test_bools_must_be_json_booleans() -> None:
    errs = errors_of(dict(GOOD["bin"], lid_open=1))
    assert errs[0]["type"] == "bool_type"


def test_int_is_accepted_for_float_fields() -> None:
    reading = validate_reading(dict(GOOD["streetlight"], power_w=85))
    assert isinstance(reading, StreetlightReading)
    assert reading.power_w == 85.0


def test_extra_field_is_rejected_with_its_name() -> None:
    errs = errors_of(dict(GOOD["bin"], humidity_pct=40))
    assert errs[0]["type"] == "extra_forbidden"
    assert errs[0]["loc"][-1] == "humidity_pct"


def test_field_of_another_family_is_an_extra_field() -> None:
    errs = errors_of(dict(GOOD["bin"], power_w=10.0))
    assert errs[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "device_id",
    ["ab", "Lamp-0001", "-lamp", "_lamp", "lamp 01", "lamp.01", "lamp-0001\n", "x" * 65, "é-lamp"],
)
def test_bad_device_ids_are_rejected(device_id: str) -> None:
    errs = errors_of(dict(GOOD["streetlight"], device_id=device_id))
    assert errs[0]["loc"][-1] == "device_id"


@pytest.mark.parametrize("device_id", ["abc", "0lamp", "lamp_01-x", "a" * 64])
def test_good_device_ids_are_accepted(device_id: str) -> None:
    assert validate_reading(dict(GOOD["streetlight"], device_id=device_id)).device_id == device_id


@pytest.mark.parametrize("district", ["c", "Central", "north side", "x" * 33])
def test_bad_districts_are_rejected(district: str) -> None:
    errs = errors_of(dict(GOOD["dust"], district=district))
    assert errs[0]["loc"][-1] == "district"


@pytest.mark.parametrize("tag", ["bad id", "a,b", "k=v", "", "-x"])
def test_tag_ids_must_be_tag_safe(tag: str) -> None:
    errs = errors_of(dict(GOOD["dust"], site_id=tag))
    assert errs[0]["loc"][-1] == "site_id"


def test_unknown_family_is_rejected_by_the_discriminator() -> None:
    errs = errors_of(dict(GOOD["bin"], family="toaster"))
    assert errs[0]["type"] == "union_tag_invalid"


def test_missing_family_is_rejected() -> None:
    data = dict(GOOD["bin"])
    del data["family"]
    assert errors_of(data)[0]["type"] == "union_tag_not_found"


# A vehicle always has one: lat/lon are required and measured.
@pytest.mark.parametrize("family", ["streetlight", "bin", "dust"])
def test_at_least_one_measured_field_is_required(family: str) -> None:
    model = MODELS[family]
    data = {k: v for k, v in GOOD[family].items() if k not in model.MEASURED}
    errs = errors_of(data)
    assert "no measured field" in errs[0]["msg"]


def test_none_measured_values_count_as_absent() -> None:
    data = envelope("bin", fill_ratio=None)
    assert "no measured field" in errors_of(data)[0]["msg"]


def test_vehicle_requires_position_and_kind() -> None:
    for missing in ("lat", "lon", "vehicle_kind"):
        data = {k: v for k, v in GOOD["vehicle"].items() if k != missing}
        errs = errors_of(data)
        assert errs[0]["loc"][-1] == missing
        assert errs[0]["type"] == "missing"


def test_envelope_position_is_optional_but_bounded() -> None:
    assert validate_reading(dict(GOOD["bin"], lat=10.0, lon=20.0)).lat == 10.0
    assert errors_of(dict(GOOD["bin"], lat=91.0))[0]["loc"][-1] == "lat"


def test_seq_must_be_non_negative() -> None:
    assert validate_reading(dict(GOOD["bin"], seq=0)).seq == 0
    assert errors_of(dict(GOOD["bin"], seq=-1))[0]["loc"][-1] == "seq"
    assert errors_of(dict(GOOD["bin"], seq=2**63))[0]["loc"][-1] == "seq"


def test_naive_datetimes_are_rejected() -> None:
    errs = errors_of(dict(GOOD["bin"], ts=datetime(2024, 5, 1, 12)))
    assert errs[0]["type"] == "timezone_aware"


def test_iso_strings_are_not_coerced_to_times() -> None:
    # Decoders parse times; the model only takes datetimes, so no epoch-unit guessing.
    errs = errors_of(dict(GOOD["bin"], ts="2024-05-01T12:00:00Z"))
    assert errs[0]["loc"][-1] == "ts"


def test_times_are_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    reading = validate_reading(
        dict(GOOD["bin"], ts=datetime(2024, 5, 1, 13, 59, tzinfo=plus2), received_at=NOW)
    )
    assert reading.ts == datetime(2024, 5, 1, 11, 59, tzinfo=UTC)
    assert reading.ts.tzinfo is UTC


def test_ts_up_to_five_minutes_ahead_is_accepted() -> None:
    reading = validate_reading(dict(GOOD["bin"], ts=NOW + timedelta(minutes=5)))
    assert reading.ts > reading.received_at


def test_ts_more_than_five_minutes_ahead_is_rejected() -> None:
    errs = errors_of(dict(GOOD["bin"], ts=NOW + timedelta(minutes=5, seconds=1)))
    assert "after received_at" in errs[0]["msg"]


def test_late_flag_is_set_not_rejected() -> None:
    on_time = validate_reading(dict(GOOD["bin"], ts=NOW - timedelta(hours=1)))
    late = validate_reading(dict(GOOD["bin"], ts=NOW - timedelta(hours=1, seconds=1)))
    assert on_time.late is False
    assert late.late is True


def test_late_flag_from_input_is_recomputed() -> None:
    assert validate_reading(dict(GOOD["bin"], late=True)).late is False


def test_policy_changes_lateness_and_future_limit() -> None:
    policy = ValidationPolicy(max_lateness=timedelta(minutes=1), max_future=timedelta(0))
    assert validate_reading(dict(GOOD["bin"], ts=NOW - timedelta(minutes=2)), policy=policy).late
    errs = errors_of(dict(GOOD["bin"], ts=NOW + timedelta(seconds=1)), policy=policy)
    assert "after received_at" in errs[0]["msg"]


@pytest.mark.parametrize("family", list(GOOD))
def test_record_round_trip(family: str) -> None:
    reading = validate_reading(GOOD[family])
    assert reading_from_record(to_record(reading)) == reading


def test_record_format_is_flat_with_integer_nanoseconds_and_no_nulls() -> None:
    ts = datetime(2024, 5, 1, 11, 59, 59, 123456, tzinfo=UTC)
    reading = validate_reading(envelope("bin", ts=ts, fill_ratio=0.5))
    record = from_record(to_record(reading))
    assert record == {
        "device_id": "bin-0001",
        "family": "bin",
        "district": "central",
        "ts": 1714564799123456000,
        "received_at": 1714564800000000000,
        "late": False,
        "fill_ratio": 0.5,
    }
    assert type(record["ts"]) is int


def test_record_is_compact_json() -> None:
    raw = to_record(validate_reading(GOOD["bin"]))
    assert b" " not in raw
    assert orjson.loads(raw)["device_id"] == "bin-0001"


def test_record_keeps_every_microsecond() -> None:
    # Integer arithmetic: a float timestamp would lose the last microsecond here.
    ts = datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC)
    reading = validate_reading(envelope("bin", ts=ts, received_at=ts, fill_ratio=0.1))
    assert from_record(to_record(reading))["ts"] == 2147483647_999999_000


def test_from_record_refuses_non_objects() -> None:
    with pytest.raises(ValueError, match="not an object"):
        from_record(b"[1,2]")


def test_reading_key_is_the_device_id() -> None:
    assert reading_key(validate_reading(GOOD["vehicle"])) == b"vehicle-0001"
