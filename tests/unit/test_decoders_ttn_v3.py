"""ttn_v3: a realistic uplink, identity, time and position fallbacks, malformed envelopes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.decode import decode_message
from ingest.decoders.base import parse_topic
from ingest.decoders.ttn_v3 import TtnV3
from ingest.readings import BinReading

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOPIC = "city/north/bin/bin-0042/up"
VECTOR = Path(__file__).parent / "vectors" / "ttn_v3_uplink.json"


def uplink() -> dict[str, Any]:
    msg: dict[str, Any] = orjson.loads(VECTOR.read_bytes())
    return msg


def decode(msg: object, topic: str = TOPIC) -> tuple[list[object], list[tuple[str, int | None]]]:
    res = decode_message(topic, orjson.dumps(msg), NOW)
    assert res.decoder == "ttn_v3"
    return list(res.readings), [(j.reason, j.index) for j in res.rejects]


def test_realistic_uplink() -> None:
    (r,), rejects = decode(uplink())
    assert rejects == []
    assert isinstance(r, BinReading)
    assert (r.device_id, r.family, r.district) == ("bin-0042", "bin", "north")
    assert (r.fill_ratio, r.temperature_c, r.tilt_deg, r.lid_open, r.battery_v) == (
        0.62,
        21.5,
        3.0,
        False,
        3.61,
    )
    assert r.seq == 1287  # the LoRaWAN frame counter
    # uplink_message.received_at, nanoseconds truncated to microseconds
    assert r.ts == datetime(2024, 5, 1, 11, 59, 58, 801234, tzinfo=UTC)
    # the device's registered ("user") location, not the gateway's
    assert (r.lat, r.lon) == (31.22871, 121.47411)


def test_device_time_and_seq_in_decoded_payload_win() -> None:
    msg = uplink()
    msg["uplink_message"]["decoded_payload"].update(ts="2024-05-01T11:50:00Z", seq=3)
    (r,), _ = decode(msg)
    assert r.ts == datetime(2024, 5, 1, 11, 50, tzinfo=UTC)
    assert r.seq == 3


def test_time_falls_back_to_top_level_then_gateway_received_at() -> None:
    msg = uplink()
    del msg["uplink_message"]["received_at"]
    (r,), _ = decode(msg)
    assert r.ts == datetime(2024, 5, 1, 11, 59, 58, 912345, tzinfo=UTC)
    del msg["received_at"]
    (r,), _ = decode(msg)
    assert r.ts == NOW


def test_frm_payload_location_beats_user_location() -> None:
    msg = uplink()
    msg["uplink_message"]["locations"]["frm-payload"] = {"latitude": 31.3, "longitude": 121.6}
    (r,), _ = decode(msg)
    assert (r.lat, r.lon) == (31.3, 121.6)


def test_gateway_location_only_on_request() -> None:
    msg = uplink()
    del msg["uplink_message"]["locations"]
    (r,), _ = decode(msg)
    assert (r.lat, r.lon) == (None, None)
    topic = parse_topic(TOPIC)
    assert topic is not None
    raw = TtnV3(use_gateway_location=True).decode(topic, orjson.dumps(msg), NOW)
    assert isinstance(raw[0], dict)
    assert (raw[0]["lat"], raw[0]["lon"]) == (31.2301, 121.4702)


def test_dev_eui_identifies_the_device_case_free() -> None:
    msg = uplink()
    msg["end_device_ids"]["device_id"] = "some-other-name"
    (r,), rejects = decode(msg, "city/north/bin/70b3d57ed005a1b2/up")
    assert rejects == []
    assert r.device_id == "70b3d57ed005a1b2"


def test_foreign_device_is_a_mismatch() -> None:
    msg = uplink()
    msg["end_device_ids"] = {"device_id": "bin-0099", "dev_eui": "0000000000000001"}
    assert decode(msg) == ([], [("device_mismatch", 0)])


def test_wrong_family_in_payload_is_a_mismatch() -> None:
    msg = uplink()
    msg["uplink_message"]["decoded_payload"]["family"] = "dust"
    assert decode(msg) == ([], [("family_mismatch", 0)])


def test_out_of_range_decoded_value_is_a_validation_reject() -> None:
    msg = uplink()
    msg["uplink_message"]["decoded_payload"]["fill_ratio"] = 62
    _, rejects = decode(msg)
    assert rejects == [("validation", 0)]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: m["uplink_message"].pop("decoded_payload"), "no_decoded_payload"),
        (lambda m: m["uplink_message"].update(decoded_payload=[1]), "bad_envelope"),
        (lambda m: m.update(uplink_message="x"), "bad_envelope"),
        (lambda m: m.update(end_device_ids=[]), "bad_envelope"),
        (lambda m: m["uplink_message"].update(received_at="not a time"), "bad_ts"),
        (lambda m: m["uplink_message"].update(locations={"user": 5}), None),
    ],
)
def test_malformed_envelopes(mutate: Any, reason: str | None) -> None:
    msg = uplink()
    mutate(msg)
    readings, rejects = decode(msg)
    if reason is None:  # a junk location is ignored, the reading survives
        assert len(readings) == 1
        assert rejects == []
    else:
        assert readings == []
        assert rejects == [(reason, None)]


def test_sniff() -> None:
    assert TtnV3().matches(TOPIC, VECTOR.read_bytes())
    assert not TtnV3().matches(TOPIC, b'[{"end_device_ids": 1}]')
    assert not TtnV3().matches(TOPIC, b'{"device_id": "x"}')
