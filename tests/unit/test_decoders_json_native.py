"""json_native: single objects, batches, time forms, mixed good/bad items, malformed JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.decode import decode_message
from ingest.decoders.base import DecodeError, parse_topic
from ingest.decoders.json_native import JsonNative
from ingest.readings import BinReading

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOPIC = "city/north/bin/bin-0042/up"
TS = 1714564740  # NOW - 60 s


def test_single_object_gets_identity_from_topic() -> None:
    res = decode_message(TOPIC, b'{"ts": %d, "fill_ratio": 0.25, "seq": 9}' % TS, NOW)
    assert res.rejects == []
    assert res.decoder == "json_native"
    (r,) = res.readings
    assert isinstance(r, BinReading)
    assert (r.device_id, r.family, r.district) == ("bin-0042", "bin", "north")
    assert r.ts == NOW - timedelta(seconds=60)
    assert r.received_at == NOW
    assert (r.fill_ratio, r.seq) == (0.25, 9)


def test_full_envelope_matching_topic_is_accepted() -> None:
    payload = (
        b'{"device_id":"bin-0042","family":"bin","district":"north",'
        b'"ts":"2024-05-01T11:59:00Z","lid_open":true}'
    )
    (r,) = decode_message(TOPIC, payload, NOW).readings
    assert isinstance(r, BinReading)
    assert r.lid_open is True


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (b'"2024-05-01T11:59:00Z"', NOW - timedelta(minutes=1)),
        (b'"2024-05-01T13:59:00+02:00"', NOW - timedelta(minutes=1)),
        (b'"2024-05-01T11:59:00.123456789Z"', NOW - timedelta(seconds=59, microseconds=876544)),
        (b"1714564740.5", NOW - timedelta(seconds=59.5)),
    ],
)
def test_time_forms(ts: bytes, expected: datetime) -> None:
    (r,) = decode_message(TOPIC, b'{"ts": %s, "fill_ratio": 0.1}' % ts, NOW).readings
    assert r.ts == expected


@pytest.mark.parametrize(
    "ts",
    [
        b'"2024-05-01T11:59:00"',  # no offset
        b'"yesterday"',
        b"1714564740000",  # milliseconds: refused rather than guessed
        b"-1",
        b"true",
        b"[1]",
    ],
)
def test_bad_times_are_rejected(ts: bytes) -> None:
    res = decode_message(TOPIC, b'{"ts": %s, "fill_ratio": 0.1}' % ts, NOW)
    assert res.readings == []
    assert [j.reason for j in res.rejects] == ["bad_ts"]


def test_missing_ts_is_a_validation_reject() -> None:
    res = decode_message(TOPIC, b'{"fill_ratio": 0.1}', NOW)
    assert [j.reason for j in res.rejects] == ["validation"]
    assert "ts" in res.rejects[0].detail


def test_batch_keeps_good_items_and_rejects_each_bad_one() -> None:
    payload = (
        b'[{"ts": %d, "fill_ratio": 0.1},'
        b' {"ts": %d, "fill_ratio": 1.5},'
        b" 42,"
        b' {"ts": %d, "fill_ratio": 0.3, "colour": "red"},'
        b' {"ts": %d, "fill_ratio": 0.4}]' % (TS, TS, TS, TS + 30)
    )
    res = decode_message(TOPIC, payload, NOW)
    assert [r.fill_ratio for r in res.readings if isinstance(r, BinReading)] == [0.1, 0.4]
    assert [(j.reason, j.index) for j in res.rejects] == [
        ("validation", 1),
        ("bad_item", 2),
        ("validation", 3),
    ]
    assert "fill_ratio" in res.rejects[0].detail
    assert "colour" in res.rejects[2].detail


def test_empty_batch_is_rejected() -> None:
    res = decode_message(TOPIC, b"  []", NOW)
    assert [j.reason for j in res.rejects] == ["empty_batch"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1,',
        b'{"a": 1} trailing',
        b"[1, 2,]",
        b'{"a": "\xff\xfe"}',  # invalid UTF-8
        b"{'a': 1}",
        b"[" * 2000,  # deeper than orjson's limit
    ],
)
def test_malformed_json_is_bad_json(payload: bytes) -> None:
    res = decode_message(TOPIC, payload, NOW)
    assert res.readings == []
    assert [j.reason for j in res.rejects] == ["bad_json"]


def test_gateway_owned_fields_are_overwritten() -> None:
    payload = b'{"ts": %d, "fill_ratio": 0.1, "received_at": 5, "late": true}' % TS
    (r,) = decode_message(TOPIC, payload, NOW).readings
    assert r.received_at == NOW
    assert r.late is False


def test_null_identity_is_filled_from_topic() -> None:
    payload = b'{"device_id": null, "ts": %d, "fill_ratio": 0.2}' % TS
    (r,) = decode_message(TOPIC, payload, NOW).readings
    assert r.device_id == "bin-0042"


@pytest.mark.parametrize("payload", [b'{"x":1}', b"  \n[1]", b'\t{"a":2}'])
def test_sniff_accepts_json_containers(payload: bytes) -> None:
    assert JsonNative().matches(TOPIC, payload)


@pytest.mark.parametrize("payload", [b'"str"', b"123", b"", b"   ", b"\xc1\x01"])
def test_sniff_refuses_non_containers(payload: bytes) -> None:
    assert not JsonNative().matches(TOPIC, payload)


def test_decoder_output_is_raw_dicts_and_errors() -> None:
    topic = parse_topic(TOPIC)
    assert topic is not None
    out = JsonNative().decode(topic, b'[{"ts": 0, "fill_ratio": 2}, "x"]', NOW)
    assert isinstance(out[0], dict)
    assert out[0]["ts"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert out[0]["fill_ratio"] == 2  # ranges are the model's job, not the decoder's
    assert isinstance(out[1], DecodeError)
    assert out[1].reason == "bad_item"
