"""decode_message: topic rules, size limit, sniffing, identity claims, never raising."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest import decode as decode_mod
from ingest.decode import DecodeResult, decode_message
from ingest.decoders import registry
from ingest.decoders.base import DecodeError, Decoder, RawReading, TopicInfo, parse_topic
from ingest.decoders.lamp_binary import LampRecord, encode_lamp_frame
from ingest.readings import ValidationPolicy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOPIC = "city/north/bin/bin-0042/up"
GOOD = b'{"ts": 1714564740, "fill_ratio": 0.5}'


def reasons(res: DecodeResult) -> list[str]:
    return [j.reason for j in res.rejects]


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "city/north/bin/bin-0042",
        "city/north/bin/bin-0042/down",
        "city/north/bin/bin-0042/status",
        "city/north/toaster/bin-0042/up",
        "city/North/bin/bin-0042/up",
        "city/north/bin/BIN-0042/up",
        "city/north/bin/b/up",
        "city/north/bin/bin-0042/up/extra",
        "/city/north/bin/bin-0042/up",
        "town/north/bin/bin-0042/up",
        "city/north/bin/bin-0042/up\n",
        "city/+/bin/#",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    res = decode_message(topic, GOOD, NOW)
    assert res.readings == []
    assert reasons(res) == ["bad_topic"]


def test_parse_topic_parts() -> None:
    topic = "city/n1/dust/d_01/up"
    assert parse_topic(topic) == TopicInfo(topic, "n1", "dust", "d_01")


def test_oversized_payload_is_rejected_before_parsing() -> None:
    big = b"\xff" * 65537  # not even JSON: the size check must come first
    assert reasons(decode_message(TOPIC, big, NOW)) == ["payload_too_large"]
    padded = GOOD + b" " * (100 - len(GOOD))
    assert reasons(decode_message(TOPIC, padded, NOW, max_payload_bytes=99)) == [
        "payload_too_large"
    ]
    assert decode_message(TOPIC, padded, NOW, max_payload_bytes=100).rejects == []


def test_empty_and_unknown_payloads() -> None:
    assert reasons(decode_message(TOPIC, b"", NOW)) == ["empty_payload"]
    assert reasons(decode_message(TOPIC, b"fill=0.5", NOW)) == ["unknown_format"]
    assert reasons(decode_message(TOPIC, b"\xef\xbb\xbf{}", NOW)) == ["unknown_format"]


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_buffer_types_are_accepted(wrap: type) -> None:
    res = decode_message(TOPIC, wrap(GOOD), NOW)
    assert res.rejects == []
    assert len(res.readings) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"device_id": "bin-0043", "ts": 1714564740, "fill_ratio": 0.5}', "device_mismatch"),
        (b'{"device_id": 42, "ts": 1714564740, "fill_ratio": 0.5}', "device_mismatch"),
        (b'{"family": "dust", "ts": 1714564740, "pm10_ugm3": 5}', "family_mismatch"),
        (b'{"district": "south", "ts": 1714564740, "fill_ratio": 0.5}', "district_mismatch"),
        (b'{"device_id": "bin-0042-001", "ts": 1714564740, "fill_ratio": 0.5}', "device_mismatch"),
    ],
)
def test_a_payload_cannot_speak_for_another(payload: bytes, reason: str) -> None:
    res = decode_message(TOPIC, payload, NOW)
    assert res.readings == []
    assert reasons(res) == [reason]


def test_only_concentrator_frames_may_name_children() -> None:
    frame = encode_lamp_frame([LampRecord(lamp_no=3, power_state="on")], seq=1, ts=NOW)
    res = decode_message("city/north/streetlight/cab-01/up", frame, NOW)
    assert [r.device_id for r in res.readings] == ["cab-01-003"]


@pytest.mark.parametrize(
    ("payload", "decoder"),
    [
        (encode_lamp_frame([LampRecord(power_w=1)], seq=1, ts=NOW), "lamp_binary"),
        (b'{"end_device_ids": {}, "uplink_message": {}}', "ttn_v3"),
        (b'{"deviceInfo": {}, "object": {}}', "chirpstack_v4"),
        (b'[{"bn": "bin-0042:", "n": "fill", "v": 0.5}]', "senml"),
        (GOOD, "json_native"),
        (b"[" + GOOD + b"]", "json_native"),
    ],
)
def test_decoder_is_chosen_by_sniffing(payload: bytes, decoder: str) -> None:
    assert decode_message(TOPIC, payload, NOW).decoder == decoder


def test_registry_order_puts_the_catch_all_last() -> None:
    assert list(registry.DECODERS)[-1] == "json_native"
    assert next(iter(registry.DECODERS)) == "lamp_binary"


class _Spy(Decoder):
    """Records which decoders decode (a wrapper, since compiled methods cannot be patched)."""

    name = "spy"

    def __init__(self, inner: Decoder, calls: list[str]) -> None:
        self.inner, self.calls = inner, calls

    def matches(self, topic: str, payload: bytes) -> bool:
        return self.inner.matches(topic, payload)

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        self.calls.append(self.inner.name)
        return self.inner.decode(topic, payload, received_at)


def test_sniffing_does_not_try_every_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name, dec in list(registry.DECODERS.items()):
        monkeypatch.setitem(registry.DECODERS, name, _Spy(dec, calls))
    res = decode_message(TOPIC, b'{"fill_ratio": "x"}', NOW)
    assert calls == ["json_native"]
    assert reasons(res) == ["validation"]


class _Broken(Decoder):
    name = "broken"

    def matches(self, topic: str, payload: bytes) -> bool:
        return payload.startswith(b"!")

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        raise ZeroDivisionError("bug")


def test_a_buggy_decoder_becomes_an_internal_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.DECODERS, "broken", _Broken())
    res = decode_message(TOPIC, b"!boom", NOW)
    assert reasons(res) == ["internal"]
    assert "ZeroDivisionError" in res.rejects[0].detail


def test_wrong_argument_types_do_not_raise() -> None:
    res = decode_message(123, GOOD, NOW)  # type: ignore[arg-type]
    assert reasons(res) == ["bad_topic"]
    res = decode_message(TOPIC, "text", NOW)  # type: ignore[arg-type]
    assert reasons(res) == ["internal"]


def test_naive_received_at_gives_validation_rejects_not_exceptions() -> None:
    res = decode_message(TOPIC, GOOD, datetime(2024, 5, 1, 12))
    assert reasons(res) == ["validation"]
    assert "received_at" in res.rejects[0].detail


def test_policy_is_passed_to_validation() -> None:
    strict = ValidationPolicy(max_lateness=timedelta(seconds=30))
    assert decode_message(TOPIC, GOOD, NOW, policy=strict).readings[0].late is True
    assert decode_message(TOPIC, GOOD, NOW).readings[0].late is False


def test_validation_detail_is_short_and_names_fields() -> None:
    payload = (
        b'{"ts": 1714564740, "fill_ratio": 9, "tilt_deg": -1, "battery_v": 99, "x": 1, "y": 2}'
    )
    (rej,) = decode_message(TOPIC, payload, NOW).rejects
    assert rej.reason == "validation"
    assert rej.detail.startswith("fill_ratio: ")
    assert "(+2 more)" in rej.detail
    assert len(rej.detail) <= decode_mod._MAX_DETAIL


def test_detail_never_echoes_long_device_input() -> None:
    payload = b'{"device_id": "%s", "fill_ratio": 0.1}' % (b"a" * 5000)
    (rej,) = decode_message(TOPIC, payload, NOW).rejects
    assert rej.reason == "device_mismatch"
    assert len(rej.detail) <= decode_mod._MAX_DETAIL
