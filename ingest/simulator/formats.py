"""Payload encoders: one canonical reading (field dict) -> the bytes a real device would send.

Formats (decoded by ``ingest.decoders``): ``json_native`` (citywatch JSON), ``senml``
(RFC 8428 pack, SenML units), ``ttn_v3`` (The Things Stack uplink; ``seq`` travels as the
LoRaWAN ``f_cnt``, time as the network server's ``received_at``), ``chirpstack_v4`` (``fCnt``
and ``time``) and ``lamp_binary`` (docs/lamp_frame.md; a concentrator frame carries many
lamps). Device time ``ts`` is epoch seconds; a fractional ``ts`` (a skewed clock) is kept to
the millisecond. Also ``malformed``: payloads every gateway must dead-letter, with the reject
reason ``ingest.decode.decode_message`` gives them.

Example:
    >>> encode("json_native", "bin-c01-0001", 1_700_000_000, 7, {"fill_ratio": 0.5})
    b'{"ts":1700000000,"seq":7,"fill_ratio":0.5}'
    >>> topic("city", "central", "bin", "bin-c01-0001")
    'city/central/bin/bin-c01-0001/up'
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ingest.decoders.lamp_binary import LampRecord, encode_lamp_frame

Fields = dict[str, Any]

# Canonical field -> SenML unit (fields missing here are sent without a unit).
SENML_UNITS: Final[dict[str, str]] = {
    "dimming_pct": "%",
    "power_w": "W",
    "voltage_v": "V",
    "current_a": "A",
    "power_factor": "/",
    "fill_ratio": "/",
    "temperature_c": "Cel",
    "tilt_deg": "deg",
    "battery_v": "V",
    "speed_kmh": "km/h",
    "heading_deg": "deg",
    "odometer_km": "km",
    "pm25_ugm3": "ug/m3",
    "pm10_ugm3": "ug/m3",
    "tsp_ugm3": "ug/m3",
    "noise_dba": "dBA",
    "wind_ms": "m/s",
}
_LAMP_FIELDS: Final = ("power_state", "dimming_pct", "power_w", "voltage_v", "current_a")


@dataclass(slots=True)
class Message:
    """One MQTT publish. ``t``: simulated second at which it is sent (drives pacing).

    ``readings``: the (device_id, seq) pairs it carries (the ledger's unit); ``kind`` is
    ``reading``, ``malformed`` (``reason`` = the dead-letter reason expected) or ``status``.
    """

    t: int
    topic: str
    payload: bytes
    readings: tuple[tuple[str, int], ...] = ()
    kind: str = "reading"
    reason: str = ""
    family: str = ""
    publisher: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def topic(root: str, district: str, family: str, device_id: str, leaf: str = "up") -> str:
    return f"{root}/{district}/{family}/{device_id}/{leaf}"


def _ts(ts: float) -> int | float:
    return int(ts) if ts == int(ts) else round(ts, 3)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _json_native(device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    return orjson.dumps({"ts": _ts(ts), "seq": seq, **fields})


def _senml(device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    pack: list[dict[str, Any]] = [
        {"bn": f"urn:dev:{device_id}:", "bt": _ts(ts), "n": "seq", "v": seq}
    ]
    for name, value in fields.items():
        rec: dict[str, Any] = {"n": name}
        if isinstance(value, bool):
            rec["vb"] = value
        elif isinstance(value, str):
            rec["vs"] = value
        else:
            rec["v"] = value
            unit = SENML_UNITS.get(name)
            if unit:
                rec["u"] = unit
        pack.append(rec)
    return orjson.dumps(pack)


def _stable_eui(device_id: str) -> str:
    """A stable pseudo EUI-64 per device (LoRaWAN devices carry one)."""
    a = zlib.crc32(device_id.encode())
    b = zlib.crc32(device_id[::-1].encode())
    return f"{a:08x}{b:08x}"


def _ttn_v3(device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    when = _iso(ts)
    return orjson.dumps(
        {
            "end_device_ids": {
                "device_id": device_id,
                "application_ids": {"application_id": "citywatch"},
                "dev_eui": _stable_eui(device_id).upper(),
            },
            "received_at": when,
            "uplink_message": {
                "f_port": 1,
                "f_cnt": seq,
                "decoded_payload": fields,
                "received_at": when,
            },
        }
    )


def _chirpstack_v4(device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    return orjson.dumps(
        {
            "deviceInfo": {"deviceName": device_id, "devEui": _stable_eui(device_id)},
            "time": _iso(ts),
            "fCnt": seq,
            "fPort": 1,
            "object": fields,
        }
    )


def lamp_record(lamp_no: int, fields: Fields) -> LampRecord:
    dim = fields.get("dimming_pct")
    return LampRecord(
        lamp_no=lamp_no,
        power_state=fields.get("power_state"),
        dimming_pct=None if dim is None else round(dim),
        power_w=fields.get("power_w"),
        voltage_v=fields.get("voltage_v"),
        current_a=fields.get("current_a"),
        power_factor=fields.get("power_factor"),
    )


def lamp_frame(records: Sequence[tuple[int, Fields]], ts: float, seq: int) -> bytes:
    """A binary frame for (lamp_no, fields) pairs; lamp_no 0 is the sender itself."""
    return encode_lamp_frame(
        [lamp_record(n, f) for n, f in records], seq=seq % 2**32, ts=ts, ts_ms=ts != int(ts)
    )


def _lamp_binary(device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    return lamp_frame([(0, fields)], ts, seq)


ENCODERS: Final[dict[str, Callable[[str, float, int, Fields], bytes]]] = {
    "json_native": _json_native,
    "senml": _senml,
    "ttn_v3": _ttn_v3,
    "chirpstack_v4": _chirpstack_v4,
    "lamp_binary": _lamp_binary,
}


def encode(fmt: str, device_id: str, ts: float, seq: int, fields: Fields) -> bytes:
    """The payload of one reading in format ``fmt``.

    Binary frames carry only the lamp fields (``circuit_id``/``cabinet_id`` are dropped).
    """
    if fmt == "lamp_binary":
        fields = {k: v for k, v in fields.items() if k in _LAMP_FIELDS or k == "power_factor"}
    return ENCODERS[fmt](device_id, ts, seq, fields)


# -- malformed payloads --------------------------------------------------------------------
_BAD_VALUES: Final[dict[str, tuple[str, Any]]] = {
    "streetlight": ("dimming_pct", 150.0),
    "bin": ("fill_ratio", 7.0),
    "vehicle": ("speed_kmh", -20.0),
    "dust": ("pm10_ugm3", -5.0),
}


def malformed(rng: random.Random, family: str, ts: float) -> tuple[bytes, str]:
    """(payload, expected dead-letter reason) of a broken uplink; exactly one reject each."""
    choice = rng.randrange(5)
    if choice == 0:
        body = orjson.dumps({"ts": _ts(ts), "fill_ratio": 0.5, "temperature_c": 20.0})
        return body[: rng.randint(5, len(body) - 2)], "bad_json"
    if choice == 1:
        frame = bytearray(lamp_frame([(0, {"power_state": "on", "power_w": 80.0})], ts, 1))
        frame[-1] ^= 0x5A
        return bytes(frame), "crc"
    if choice == 2:
        name, value = _BAD_VALUES[family]
        extra: Fields = {"lat": 31.2, "lon": 121.4} if family == "vehicle" else {}
        return orjson.dumps({"ts": _ts(ts), name: value, **extra}), "validation"
    if choice == 3:
        return b"\x00\x13garbage" + bytes(rng.randrange(256) for _ in range(6)), "unknown_format"
    return b"\xc1\x01\x00", "truncated"
