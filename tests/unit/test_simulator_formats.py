"""Payload encoders: every format decodes to the same canonical reading; malformed ones fail."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.decode import decode_message
from ingest.simulator.formats import ENCODERS, encode, lamp_frame, malformed

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
TS = NOW.timestamp() - 600

FIELDS: dict[str, dict[str, Any]] = {
    "streetlight": {
        "power_state": "dim",
        "dimming_pct": 50,
        "power_w": 42.3,
        "voltage_v": 229.87,
        "current_a": 0.197,
        "power_factor": 0.933,
    },
    "bin": {
        "fill_ratio": 0.512,
        "temperature_c": 14.2,
        "tilt_deg": 1.3,
        "lid_open": False,
        "battery_v": 3.598,
        "emptied": True,
    },
    "vehicle": {
        "lat": 31.2301,
        "lon": 121.4702,
        "speed_kmh": 33.1,
        "heading_deg": 270.0,
        "ignition": True,
        "odometer_km": 12.345,
        "vehicle_kind": "muck",
        "route_id": "route-c01-muck-01",
        "payload_state": "loaded",
    },
    "dust": {
        "pm25_ugm3": 20.1,
        "pm10_ugm3": 48.2,
        "tsp_ugm3": 81.9,
        "noise_dba": 64.5,
        "wind_ms": 2.1,
        "site_id": "site-c01-01",
    },
}
DEVICE = {"streetlight": "lamp-c01-c01-001", "bin": "bin-c01-0001", "vehicle": "veh-c01-muck-01",
          "dust": "dust-c01-s01-1"}  # fmt: skip
FORMATS = {
    "streetlight": ["json_native", "senml", "lamp_binary"],
    "bin": ["json_native", "senml", "ttn_v3"],
    "vehicle": ["json_native", "senml"],
    "dust": ["json_native", "senml", "chirpstack_v4"],
}


@pytest.mark.parametrize(
    ("family", "fmt"), [(fam, fmt) for fam, fmts in FORMATS.items() for fmt in fmts]
)
@pytest.mark.parametrize("ts", [TS, TS + 0.5])
def test_every_format_round_trips(family: str, fmt: str, ts: float) -> None:
    device = DEVICE[family]
    payload = encode(fmt, device, ts, 42, FIELDS[family])
    res = decode_message(f"city/central/{family}/{device}/up", payload, NOW)
    assert res.rejects == [] and res.decoder == fmt
    [reading] = res.readings
    assert (reading.device_id, reading.seq) == (device, 42)
    assert reading.ts.timestamp() == pytest.approx(ts, abs=1e-3)
    for key, value in FIELDS[family].items():
        assert getattr(reading, key) == pytest.approx(value), key


def test_all_formats_are_covered() -> None:
    assert {f for fmts in FORMATS.values() for f in fmts} == set(ENCODERS)


def test_concentrator_frame_speaks_for_its_lamps() -> None:
    records = [(n, {**FIELDS["streetlight"], "power_w": 40.0 + n}) for n in (1, 2, 30)]
    frame = lamp_frame(records, TS, 9)
    res = decode_message("city/central/streetlight/lamp-c01-c07/up", frame, NOW)
    assert res.rejects == []
    ids = [(r.device_id, r.seq, r.cabinet_id, r.power_w) for r in res.readings]
    assert ids == [
        ("lamp-c01-c07-001", 9, "lamp-c01-c07", 41.0),
        ("lamp-c01-c07-002", 9, "lamp-c01-c07", 42.0),
        ("lamp-c01-c07-030", 9, "lamp-c01-c07", 70.0),
    ]


@pytest.mark.parametrize("family", list(FIELDS))
def test_malformed_payloads_give_exactly_the_expected_reject(family: str) -> None:
    rng = random.Random(5)
    reasons = set()
    for _ in range(60):
        payload, reason = malformed(rng, family, TS)
        res = decode_message(f"city/central/{family}/{DEVICE[family]}/up", payload, NOW)
        assert res.readings == []
        assert [r.reason for r in res.rejects] == [reason]
        reasons.add(reason)
    assert reasons == {"bad_json", "crc", "validation", "unknown_format", "truncated"}
