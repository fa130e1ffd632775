"""lamp_binary: documented vectors, round trips, concentrator frames and every malformation."""

from __future__ import annotations

import binascii
import struct
from datetime import UTC, datetime

import pytest

from ingest.decode import decode_message
from ingest.decoders.base import DecodeError
from ingest.decoders.lamp_binary import (
    LampBinary,
    LampRecord,
    child_device_id,
    decode_lamp_frame,
    encode_lamp_frame,
)
from ingest.readings import StreetlightReading

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)
TOPIC = "city/central/streetlight/cab-0007/up"

# The two examples of docs/lamp_frame.md, byte for byte.
DOC_SINGLE = bytes.fromhex("c1010001 0000002a 66318600 00000164 035759e4 017403b6 b08e")
DOC_CONCENTRATOR = bytes.fromhex(
    "c1010102 00000007 0000018f3173700000010228 0136ffff ffffffff000200ff ffffffff ffffffff849c"
)
FULL = LampRecord(
    power_state="on",
    dimming_pct=100,
    power_w=85.5,
    voltage_v=230.12,
    current_a=0.372,
    power_factor=0.95,
)


def refresh_crc(body: bytes) -> bytes:
    """A frame with ``body`` (everything but the CRC) and a correct CRC."""
    return body + struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))


def reasons(payload: bytes, topic: str = TOPIC) -> list[tuple[str, int | None]]:
    return [(j.reason, j.index) for j in decode_message(topic, payload, NOW).rejects]


def test_crc_is_ccitt_false() -> None:
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1


def test_documented_single_lamp_vector_encodes_and_decodes() -> None:
    assert encode_lamp_frame([FULL], seq=42, ts=MIDNIGHT) == DOC_SINGLE
    frame = decode_lamp_frame(DOC_SINGLE)
    assert (frame.seq, frame.ts, frame.records) == (42, MIDNIGHT, [FULL])


def test_documented_concentrator_vector_encodes_and_decodes() -> None:
    records = [
        LampRecord(lamp_no=1, power_state="dim", dimming_pct=40, power_w=31.0),
        LampRecord(lamp_no=2, power_state="off"),
    ]
    assert encode_lamp_frame(records, seq=7, ts=MIDNIGHT, ts_ms=True) == DOC_CONCENTRATOR
    assert decode_lamp_frame(DOC_CONCENTRATOR).records == records


def test_single_lamp_frame_becomes_one_reading_of_the_topic_device() -> None:
    res = decode_message(TOPIC, DOC_SINGLE, NOW)
    assert res.decoder == "lamp_binary"
    assert res.rejects == []
    (r,) = res.readings
    assert isinstance(r, StreetlightReading)
    assert (r.device_id, r.seq, r.ts, r.cabinet_id) == ("cab-0007", 42, MIDNIGHT, None)
    assert (r.power_state, r.dimming_pct, r.power_w, r.voltage_v) == ("on", 100, 85.5, 230.12)
    assert (r.current_a, r.power_factor) == (0.372, 0.95)
    assert r.late is True  # midnight is 12 h before NOW


def test_concentrator_lamps_become_child_devices() -> None:
    readings = decode_message(TOPIC, DOC_CONCENTRATOR, NOW).readings
    assert [(r.device_id, r.cabinet_id, r.power_state) for r in readings] == [
        ("cab-0007-001", "cab-0007", "dim"),
        ("cab-0007-002", "cab-0007", "off"),
    ]
    assert all(isinstance(r, StreetlightReading) and r.voltage_v is None for r in readings)
    assert child_device_id("cab-0007", 0) == "cab-0007"
    assert child_device_id("cab-0007", 1234) == "cab-0007-1234"


def test_full_concentrator_of_255_lamps() -> None:
    records = [LampRecord(lamp_no=n, power_w=float(n)) for n in range(1, 256)]
    frame = encode_lamp_frame(records, seq=2**32 - 1, ts=NOW)
    assert len(frame) == 12 + 255 * 12 + 2
    res = decode_message(TOPIC, frame, NOW)
    assert len(res.readings) == 255
    assert res.readings[-1].device_id == "cab-0007-255"
    assert res.readings[0].seq == 2**32 - 1


def test_zero_time_means_no_clock_and_uses_received_at() -> None:
    frame = encode_lamp_frame([LampRecord(power_state="off")], seq=1, ts=0)
    (r,) = decode_message(TOPIC, frame, NOW).readings
    assert r.ts == NOW


def test_millisecond_time_keeps_milliseconds() -> None:
    frame = encode_lamp_frame([LampRecord(power_w=1)], seq=1, ts=1714564799.123, ts_ms=True)
    assert decode_lamp_frame(frame).ts == datetime(2024, 5, 1, 11, 59, 59, 123000, tzinfo=UTC)


def test_scaling_extremes_round_trip() -> None:
    rec = LampRecord(dimming_pct=0, power_w=6553.4, voltage_v=655.34, current_a=65.534)
    assert decode_lamp_frame(encode_lamp_frame([rec], seq=0, ts=NOW)).records == [rec]


def test_out_of_range_lamp_is_rejected_alone() -> None:
    records = [
        LampRecord(lamp_no=1, power_state="on", dimming_pct=150),
        LampRecord(lamp_no=2, power_state="on", voltage_v=400.0),
        LampRecord(lamp_no=3, power_state="on"),
    ]
    res = decode_message(TOPIC, encode_lamp_frame(records, seq=1, ts=NOW), NOW)
    assert [r.device_id for r in res.readings] == ["cab-0007-003"]
    assert [(j.reason, j.index) for j in res.rejects] == [("validation", 0), ("validation", 1)]
    assert "dimming_pct" in res.rejects[0].detail
    assert "voltage_v" in res.rejects[1].detail


def test_unknown_power_state_code_is_rejected_for_that_lamp() -> None:
    records = [LampRecord(lamp_no=1, power_state="on"), LampRecord(lamp_no=2, power_state="on")]
    frame = bytearray(encode_lamp_frame(records, seq=1, ts=NOW))
    frame[12 + 2] = 7  # lamp 1's power_state byte
    res = decode_message(TOPIC, refresh_crc(bytes(frame[:-2])), NOW)
    assert [(j.reason, j.index) for j in res.rejects] == [("validation", 0)]
    assert "power_state" in res.rejects[0].detail
    assert [r.device_id for r in res.readings] == ["cab-0007-002"]
    assert decode_lamp_frame(refresh_crc(bytes(frame[:-2]))).records[0].power_state == "code_7"


@pytest.mark.parametrize("cut", range(1, len(DOC_SINGLE)))
def test_every_truncation_is_rejected(cut: int) -> None:
    assert reasons(DOC_SINGLE[:cut]) == [("truncated", None)]


def test_trailing_bytes_are_rejected() -> None:
    assert reasons(DOC_SINGLE + b"\x00") == [("bad_frame", None)]


@pytest.mark.parametrize("bit", range(8 * len(DOC_SINGLE)))
def test_every_single_bit_flip_is_rejected(bit: int) -> None:
    frame = bytearray(DOC_SINGLE)
    frame[bit // 8] ^= 1 << (bit % 8)
    res = decode_message(TOPIC, bytes(frame), NOW)
    assert res.readings == []
    assert len(res.rejects) == 1


@pytest.mark.parametrize("pos", range(12, len(DOC_SINGLE)))
def test_payload_corruption_is_a_crc_reject(pos: int) -> None:
    frame = bytearray(DOC_SINGLE)
    frame[pos] ^= 0x5A
    assert reasons(bytes(frame)) == [("crc", None)]


@pytest.mark.parametrize(
    ("body_patch", "reason"),
    [
        ({1: 0x02}, "bad_version"),
        ({1: 0x00}, "bad_version"),
        ({2: 0x02}, "bad_frame"),  # reserved flag
        ({2: 0x80}, "bad_frame"),
        ({3: 0x00}, "bad_frame"),  # no records
        ({3: 0x02}, "truncated"),  # says 2 records, carries 1
    ],
)
def test_header_errors(body_patch: dict[int, int], reason: str) -> None:
    body = bytearray(DOC_SINGLE[:-2])
    for pos, value in body_patch.items():
        body[pos] = value
    assert reasons(refresh_crc(bytes(body))) == [(reason, None)]


def test_wrong_version_is_reported_even_with_a_foreign_layout() -> None:
    assert reasons(b"\xc1\x07\x00") == [("truncated", None)]
    assert reasons(b"\xc1\x07\x00\x01") == [("bad_version", None)]


def test_duplicate_lamp_numbers_are_rejected() -> None:
    frame = encode_lamp_frame([LampRecord(lamp_no=4), LampRecord(lamp_no=4)], seq=1, ts=NOW)
    assert reasons(frame) == [("bad_frame", None)]


def test_far_future_millisecond_time_is_bad_ts() -> None:
    body = bytearray(encode_lamp_frame([LampRecord(power_w=1)], seq=1, ts=NOW, ts_ms=True)[:-2])
    body[8:16] = b"\xff" * 8
    assert reasons(refresh_crc(bytes(body))) == [("bad_ts", None)]


@pytest.mark.parametrize(
    ("records", "kwargs"),
    [
        ([], {}),
        ([LampRecord()] * 256, {}),
        ([LampRecord(power_state="bright")], {}),
        ([LampRecord(dimming_pct=256)], {}),
        ([LampRecord(power_w=-1.0)], {}),
        ([LampRecord(power_w=6553.5)], {}),  # would collide with "not reported"
        ([LampRecord(voltage_v=float("nan"))], {}),
        ([LampRecord()], {"seq": 2**32}),
        ([LampRecord()], {"ts": -1.0}),
        ([LampRecord()], {"ts": 2.0**32}),
    ],
)
def test_encoder_refuses_what_the_frame_cannot_carry(
    records: list[LampRecord], kwargs: dict[str, float]
) -> None:
    args: dict[str, float] = {"seq": 1, "ts": 1714564800.0}
    args.update(kwargs)
    with pytest.raises(ValueError):
        encode_lamp_frame(records, seq=int(args["seq"]), ts=args["ts"])


def test_decode_lamp_frame_raises_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        decode_lamp_frame(DOC_SINGLE[:-1] + b"\x00")
    assert info.value.reason == "crc"


def test_sniff_is_the_first_byte() -> None:
    assert LampBinary().matches(TOPIC, b"\xc1")
    assert not LampBinary().matches(TOPIC, b"")
    assert not LampBinary().matches(TOPIC, b"{\xc1")
