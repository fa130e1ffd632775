"""``lamp_binary``: the compact binary lamp-controller frame (spec: docs/lamp_frame.md).

A frame is a 12-byte header (16 with millisecond time), 1-255 lamp records of 12 bytes
and a CRC-16/CCITT-FALSE, all big-endian. Lamp number 0 is the sending controller itself;
a cabinet concentrator reports lamp n >= 1 as the child device ``{its id}-{n:03d}``.
``encode_lamp_frame`` builds frames (the simulator uses it); ``decode_lamp_frame`` parses
them; ``LampBinary`` is the registry's decoder.

Example:
    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> frame = encode_lamp_frame([LampRecord(power_state="on", power_w=85.5)], seq=7, ts=t)
    >>> len(frame), frame[:2].hex()
    (26, 'c101')
    >>> decode_lamp_frame(frame).records[0].power_w
    85.5
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple

from ingest.decoders.base import DecodeError, Decoder, RawReading, TopicInfo

MAGIC: Final = 0xC1  # never a valid UTF-8 byte, so a frame cannot pass for JSON text
VERSION: Final = 1
FLAG_TS_MS: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_TS_MS
MAX_RECORDS: Final = 255

_HDR_S: Final = struct.Struct(">BBBBII")  # magic, version, flags, count, seq, ts (s)
_HDR_MS: Final = struct.Struct(">BBBBIQ")  # ... ts (ms)
_REC: Final = struct.Struct(">HBBHHHH")  # lamp, state, dim, power, voltage, current, pf
_CRC: Final = struct.Struct(">H")
_CRC_INIT: Final = 0xFFFF  # binascii.crc_hqx with 0xFFFF is CRC-16/CCITT-FALSE

_NA8: Final = 0xFF
_NA16: Final = 0xFFFF
_STATES: Final = {0: "off", 1: "on", 2: "dim"}
_STATE_CODES: Final = {v: k for k, v in _STATES.items()}
# Field -> units per LSB, so wire value = round(value / scale).
_SCALE_POWER: Final = 0.1
_SCALE_VOLTAGE: Final = 0.01
_SCALE_CURRENT: Final = 0.001
_SCALE_PF: Final = 0.001


class LampRecord(NamedTuple):
    """One lamp's state in a frame; ``None`` means "not reported"."""

    lamp_no: int = 0
    power_state: str | None = None
    dimming_pct: int | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    power_factor: float | None = None


class LampFrame(NamedTuple):
    """A decoded frame: ``ts`` is ``None`` when the controller sent 0 (no valid clock)."""

    seq: int
    ts: datetime | None
    records: list[LampRecord]


def child_device_id(parent: str, lamp_no: int) -> str:
    """The device id of lamp ``lamp_no`` behind concentrator ``parent`` (0 = parent)."""
    return parent if lamp_no == 0 else f"{parent}-{lamp_no:03d}"


def _crc(data: bytes) -> int:
    return binascii.crc_hqx(data, _CRC_INIT)


def _scaled(value: float | None, scale: float, name: str) -> int:
    if value is None:
        return _NA16
    wire = round(value / scale) if math.isfinite(value) else -1
    if not 0 <= wire < _NA16:
        raise ValueError(f"{name}={value!r} does not fit the frame (0..{(_NA16 - 1) * scale:g})")
    return wire


def _unscaled(wire: int, scale: float) -> float | None:
    # round() strips binary noise such as 230.10000000000002 from the scaled integers.
    return None if wire == _NA16 else round(wire * scale, 3)


def encode_lamp_frame(
    records: Sequence[LampRecord], *, seq: int, ts: datetime | float, ts_ms: bool = False
) -> bytes:
    """A complete frame (header, records, CRC) for ``records`` measured at ``ts``.

    ``ts`` is an aware datetime or epoch seconds; ``ts_ms`` sends it as u64 milliseconds
    instead of u32 seconds. Raises ``ValueError`` for values the frame cannot carry.
    """
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"a frame carries 1..{MAX_RECORDS} records, not {len(records)}")
    if not 0 <= seq < 2**32:
        raise ValueError(f"seq={seq} is not a u32")
    seconds = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    wire_ts = round(seconds * 1000) if ts_ms else int(seconds)
    if not 0 <= wire_ts < 2 ** (64 if ts_ms else 32):
        raise ValueError(f"ts={ts!r} does not fit the frame")
    hdr = _HDR_MS if ts_ms else _HDR_S
    header = hdr.pack(MAGIC, VERSION, FLAG_TS_MS if ts_ms else 0, len(records), seq, wire_ts)
    parts = [header]
    for rec in records:
        if rec.power_state is not None and rec.power_state not in _STATE_CODES:
            raise ValueError(f"power_state={rec.power_state!r} is not on/off/dim")
        dim = _NA8 if rec.dimming_pct is None else rec.dimming_pct
        if not 0 <= dim <= _NA8:
            raise ValueError(f"dimming_pct={rec.dimming_pct!r} is not a u8")
        parts.append(
            _REC.pack(
                rec.lamp_no,
                _NA8 if rec.power_state is None else _STATE_CODES[rec.power_state],
                dim,
                _scaled(rec.power_w, _SCALE_POWER, "power_w"),
                _scaled(rec.voltage_v, _SCALE_VOLTAGE, "voltage_v"),
                _scaled(rec.current_a, _SCALE_CURRENT, "current_a"),
                _scaled(rec.power_factor, _SCALE_PF, "power_factor"),
            )
        )
    body = b"".join(parts)
    return body + _CRC.pack(_crc(body))


def decode_lamp_frame(frame: bytes) -> LampFrame:
    """Parse and check a frame; raise ``DecodeError`` (truncated, bad_version, crc...)."""
    if len(frame) < 4:
        raise DecodeError("truncated", f"{len(frame)} bytes is shorter than a frame header")
    magic, version, flags, count = frame[0], frame[1], frame[2], frame[3]
    if magic != MAGIC:
        raise DecodeError("bad_frame", f"magic 0x{magic:02x}, expected 0x{MAGIC:02x}")
    if version != VERSION:
        raise DecodeError("bad_version", f"frame version {version}, this decoder reads {VERSION}")
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError("bad_frame", f"reserved flag bits set: 0x{flags:02x}")
    if count == 0:
        raise DecodeError("bad_frame", "frame holds no lamp records")
    header = _HDR_MS if flags & FLAG_TS_MS else _HDR_S
    expected = header.size + count * _REC.size + _CRC.size
    if len(frame) < expected:
        raise DecodeError("truncated", f"{len(frame)} bytes, {count} records need {expected}")
    if len(frame) > expected:
        raise DecodeError("bad_frame", f"{len(frame) - expected} bytes after the CRC")
    (sent,) = _CRC.unpack_from(frame, expected - _CRC.size)
    actual = _crc(frame[: expected - _CRC.size])
    if sent != actual:
        raise DecodeError("crc", f"CRC 0x{sent:04x} sent, 0x{actual:04x} computed")
    _, _, _, _, seq, raw_ts = header.unpack_from(frame)
    try:
        ts = (
            None
            if raw_ts == 0
            else datetime.fromtimestamp(raw_ts / 1000 if flags & FLAG_TS_MS else raw_ts, UTC)
        )
    except (OverflowError, ValueError, OSError):
        raise DecodeError("bad_ts", f"frame time {raw_ts} is out of range") from None
    records: list[LampRecord] = []
    seen: set[int] = set()
    for lamp_no, state, dim, power, voltage, current, pf in _REC.iter_unpack(
        frame[header.size : expected - _CRC.size]
    ):
        if lamp_no in seen:
            raise DecodeError("bad_frame", f"lamp {lamp_no} appears twice")
        seen.add(lamp_no)
        records.append(
            LampRecord(
                lamp_no=lamp_no,
                # An unknown code is kept visible so validation rejects just this lamp.
                power_state=None if state == _NA8 else _STATES.get(state, f"code_{state}"),
                dimming_pct=None if dim == _NA8 else dim,
                power_w=_unscaled(power, _SCALE_POWER),
                voltage_v=_unscaled(voltage, _SCALE_VOLTAGE),
                current_a=_unscaled(current, _SCALE_CURRENT),
                power_factor=_unscaled(pf, _SCALE_PF),
            )
        )
    return LampFrame(seq, ts, records)


class LampBinary(Decoder):
    """Binary lamp frames, recognised by their first byte."""

    name = "lamp_binary"
    speaks_for_children = True

    def matches(self, topic: str, payload: bytes) -> bool:
        return payload[:1] == b"\xc1"

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        frame = decode_lamp_frame(payload)
        ts = received_at if frame.ts is None else frame.ts
        out: list[RawReading | DecodeError] = []
        for rec in frame.records:
            raw: RawReading = {
                "device_id": child_device_id(topic.device_id, rec.lamp_no),
                "ts": ts,
                "seq": frame.seq,
            }
            if rec.lamp_no:
                raw["cabinet_id"] = topic.device_id
            for key in (
                "power_state",
                "dimming_pct",
                "power_w",
                "voltage_v",
                "current_a",
                "power_factor",
            ):
                value = getattr(rec, key)
                if value is not None:
                    raw[key] = value
            out.append(raw)
        return out
