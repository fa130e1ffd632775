"""Issue #11's bad-input list, item by item, against the gateway's decode path.

Each case must end as readings or as rejects with a stable reason (the gateway dead-letters
rejects with that reason), never as an exception, and an accepted reading must always
serialise to a canonical record that InfluxDB can store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from citywatch.security.devices import DevicePolicy, DeviceRegister
from citywatch.settings import Settings
from ingest import decode as decode_mod
from ingest.decode import DecodeResult, decode_message
from ingest.readings import to_record

NOW = datetime.now(UTC).replace(microsecond=0)
BIN = "city/north/bin/bin-0042/up"
LAMP = "city/north/streetlight/lamp-0042/up"
INT64_NS_MIN = datetime(1677, 9, 22, tzinfo=UTC)


def reasons(res: DecodeResult) -> list[str]:
    return [j.reason for j in res.rejects]


def accepted_are_storable(res: DecodeResult) -> None:
    for r in res.readings:
        rec = orjson.loads(to_record(r))
        assert INT64_NS_MIN < r.ts <= NOW + timedelta(minutes=5)
        assert isinstance(rec["ts"], int)


def test_oversized_payload_is_rejected_before_any_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise AssertionError("a decoder was picked for an oversized payload")

    monkeypatch.setattr(decode_mod, "pick_decoder", boom)
    body = b'{"fill_ratio": 0.5, "pad": "' + b"x" * 65536 + b'"}'
    res = decode_message(BIN, body, NOW)
    assert reasons(res) == ["payload_too_large"]
    assert decode_message(BIN, b"{" * 70_000, NOW, max_payload_bytes=65536).rejects[0].reason == (
        "payload_too_large"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"fill_ratio": NaN}',
        b'{"fill_ratio": Infinity}',
        b'{"fill_ratio": -Infinity}',
        b'{"fill_ratio": 1e999}',
        b'{"fill_ratio": -1e400}',
        b'{"ts": 1e999, "fill_ratio": 0.5}',
        b'[{"bn": "bin-0042:", "n": "fill_ratio", "v": 1e999}]',
        b'[{"bn": "bin-0042:", "n": "fill_ratio", "v": NaN}]',
    ],
)
def test_nan_and_infinity_never_become_readings(payload: bytes) -> None:
    res = decode_message(BIN, payload, NOW)
    assert not res.readings
    assert reasons(res) and set(reasons(res)) <= {"bad_json", "validation", "senml"}


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("0001-01-01T00:00:00Z", "validation"),  # before InfluxDB's int64-ns range
        ("1677-01-01T00:00:00Z", "validation"),
        ("1970-01-01T00:00:00Z", "validation"),  # an unset RTC
        (0, "validation"),
        (1, "validation"),
        ("9999-12-31T23:59:59Z", "validation"),  # far future
        ("2262-04-12T00:00:00Z", "validation"),
        (2**32, "bad_ts"),  # epoch milliseconds are not guessed
        (1_714_564_800_000, "bad_ts"),
        (-1, "bad_ts"),
        ("yesterday", "bad_ts"),
        ("2024-05-01T12:00:00", "bad_ts"),  # no offset
        (True, "bad_ts"),
        ([2024, 5, 1], "bad_ts"),
    ],
)
def test_absurd_timestamps_are_dead_lettered(ts: object, reason: str) -> None:
    res = decode_message(BIN, orjson.dumps({"ts": ts, "fill_ratio": 0.5}), NOW)
    assert reasons(res) == [reason], res.rejects


def test_old_but_plausible_timestamps_are_kept_and_flagged_late() -> None:
    ts = NOW - timedelta(days=2)
    res = decode_message(BIN, orjson.dumps({"ts": ts.isoformat(), "fill_ratio": 0.5}), NOW)
    assert [r.late for r in res.readings] == [True]
    accepted_are_storable(res)


@pytest.mark.parametrize(
    "fields",
    [
        {"fill_ratio": "0.5"},
        {"fill_ratio": True},
        {"fill_ratio": None},
        {"fill_ratio": [0.5]},
        {"fill_ratio": {"v": 0.5}},
        {"fill_ratio": 0.5, "lid_open": 1},
        {"fill_ratio": 0.5, "lid_open": "true"},
        {"fill_ratio": 0.5, "seq": 1.5},
        {"fill_ratio": 0.5, "seq": -1},
        {"fill_ratio": 0.5, "seq": 2**64},
        {"fill_ratio": 0.5, "lat": "31.2"},
        {"fill_ratio": 0.5, "unknown_field": 1},
        {"fill_ratio": 0.5, "device_id": 42},
        {"fill_ratio": 0.5, "family": ["bin"]},
    ],
)
def test_wrong_types_are_dead_lettered(fields: dict[str, object]) -> None:
    # The standard library's encoder: orjson itself refuses integers beyond 64 bits.
    res = decode_message(BIN, json.dumps({"ts": NOW.isoformat(), **fields}).encode(), NOW)
    assert not res.readings
    assert len(res.rejects) == 1
    assert res.rejects[0].reason in ("validation", "device_mismatch", "family_mismatch")


@pytest.mark.parametrize("depth", [100, 1024, 1025, 20_000])
def test_deeply_nested_json_is_refused_without_recursion_errors(depth: int) -> None:
    for payload in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        res = decode_message(BIN, payload, NOW)
        assert not res.readings
        assert set(reasons(res)) <= {"bad_json", "bad_item", "validation", "payload_too_large"}
        assert "internal" not in reasons(res)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"fill_ratio": 0.5, "ts": "\xff\xfe"}',
        b'{"\xc3\x28": 0.5}',
        b'{"fill_ratio": 0.5, "site_id": "\xed\xa0\x80"}',  # an encoded surrogate
        b'[{"bn": "bin-0042:\xff", "n": "fill_ratio", "v": 0.5}]',
        b"\xef\xbb\xbf\xff{}",
    ],
)
def test_invalid_utf8_is_dead_lettered(payload: bytes) -> None:
    res = decode_message(BIN, payload, NOW)
    assert not res.readings
    assert reasons(res) and set(reasons(res)) <= {"bad_json", "unknown_format"}


@pytest.mark.parametrize(
    "value", ["a b", "a,b", "a=b", 'a"b', "a'b", "a\nb", "a\\b", "x" * 65, "", "é"]
)
def test_tag_fields_with_line_protocol_characters_are_refused_at_the_gateway(value: str) -> None:
    """Tag values come only from id fields with a strict pattern, so nothing hostile reaches
    InfluxDB as a tag (the sink escapes anyway: tests/integration/test_security_influx.py)."""
    body = {"ts": NOW.isoformat(), "power_w": 50.0, "circuit_id": value}
    res = decode_message(LAMP, orjson.dumps(body), NOW)
    assert reasons(res) == ["validation"]


def test_free_text_is_not_a_field_of_any_reading() -> None:
    body = {"ts": NOW.isoformat(), "fill_ratio": 0.5, "note": 'x" y=1\nbin,device_id=evil v=1'}
    assert reasons(decode_message(BIN, orjson.dumps(body), NOW)) == ["validation"]


def test_unknown_device_policy(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    DeviceRegister(s).add("bin-0042", "pw")
    good = orjson.dumps({"ts": NOW.isoformat(), "fill_ratio": 0.5})
    strict = DevicePolicy(s.model_copy(update={"security": s.security.model_copy(
        update={"unknown_devices": "deadletter"})}))  # fmt: skip
    assert decode_message(BIN, good, NOW, allow_device=strict.allows).readings
    other = "city/north/bin/bin-0043/up"
    res = decode_message(other, good, NOW, allow_device=strict.allows)
    assert reasons(res) == ["unknown_device"]
    assert "bin-0043" in res.rejects[0].detail
    # "accept" takes it and remembers the id as auto-registered.
    lenient = DevicePolicy(s)
    assert decode_message(other, good, NOW, allow_device=lenient.allows).readings
    assert DeviceRegister(s).auto_registered() == ["bin-0043"]
    # A device registered later is picked up by the strict policy without a restart.
    DeviceRegister(s).add("bin-0044", "pw")
    res = decode_message("city/north/bin/bin-0044/up", good, NOW, allow_device=strict.allows)
    assert res.readings


def test_policy_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown_devices"):
        Settings(security={"unknown_devices": "maybe"})  # type: ignore[arg-type]
