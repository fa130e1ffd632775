"""chirpstack_v4: a realistic uplink event, identity by name or EUI, malformed events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.decode import decode_message
from ingest.decoders.chirpstack_v4 import ChirpstackV4
from ingest.readings import DustReading

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOPIC = "city/harbour/dust/dust-0007/up"
VECTOR = Path(__file__).parent / "vectors" / "chirpstack_v4_uplink.json"


def event() -> dict[str, Any]:
    msg: dict[str, Any] = orjson.loads(VECTOR.read_bytes())
    return msg


def decode(msg: object, topic: str = TOPIC) -> tuple[list[object], list[tuple[str, int | None]]]:
    res = decode_message(topic, orjson.dumps(msg), NOW)
    assert res.decoder == "chirpstack_v4"
    return list(res.readings), [(j.reason, j.index) for j in res.rejects]


def test_realistic_event() -> None:
    (r,), rejects = decode(event())
    assert rejects == []
    assert isinstance(r, DustReading)
    assert (r.device_id, r.district, r.site_id) == ("dust-0007", "harbour", "pier-4")
    assert (r.pm25_ugm3, r.pm10_ugm3, r.tsp_ugm3, r.noise_dba, r.wind_ms) == (
        18.4,
        41.0,
        96.5,
        63.2,
        2.4,
    )
    assert r.seq == 88
    assert r.ts == datetime(2024, 5, 1, 11, 59, 58, 512345, tzinfo=UTC)
    # rxInfo[].location is the gateway's: never copied onto the reading
    assert (r.lat, r.lon) == (None, None)


def test_dev_eui_identifies_the_device() -> None:
    (r,), rejects = decode(event(), "city/harbour/dust/0101010101010101/up")
    assert rejects == []
    assert r.device_id == "0101010101010101"


def test_foreign_device_is_a_mismatch() -> None:
    msg = event()
    msg["deviceInfo"].update(deviceName="dust-0008", devEui="0202020202020202")
    assert decode(msg) == ([], [("device_mismatch", 0)])


def test_object_ts_and_seq_win_and_missing_time_uses_received_at() -> None:
    msg = event()
    msg["object"].update(ts=1714564500, seq=5)
    (r,), _ = decode(msg)
    assert (r.ts, r.seq) == (datetime(2024, 5, 1, 11, 55, tzinfo=UTC), 5)
    msg = event()
    del msg["time"]
    (r,), _ = decode(msg)
    assert r.ts == NOW


def test_future_time_is_a_validation_reject() -> None:
    msg = event()
    msg["time"] = "2024-05-01T12:10:00Z"
    _, rejects = decode(msg)
    assert rejects == [("validation", 0)]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: m.pop("object"), "no_decoded_payload"),
        (lambda m: m.update(object="pm10=3"), "bad_envelope"),
        (lambda m: m.update(deviceInfo=None), "bad_envelope"),
        (lambda m: m.update(time=12.5e12), "bad_ts"),
    ],
)
def test_malformed_events(mutate: Any, reason: str) -> None:
    msg = event()
    mutate(msg)
    assert decode(msg) == ([], [(reason, None)])


def test_sniff() -> None:
    assert ChirpstackV4().matches(TOPIC, VECTOR.read_bytes())
    assert not ChirpstackV4().matches(TOPIC, b'{"object": {}}')
