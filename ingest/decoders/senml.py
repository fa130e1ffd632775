"""``senml``: SenML JSON packs (RFC 8428, units from RFC 8798) to canonical readings.

Resolution follows RFC 8428 section 4: base name/time/unit/value (``bn``/``bt``/``bu``/
``bv``) apply to their record and every later one until redefined; name = ``bn`` + ``n``;
time = ``bt`` + ``t``, where a result below 2**28 is relative to "now" (the gateway's
``received_at``) and a missing time means now; value = ``bv`` + ``v``. ``bver`` above 10 and
labels ending in ``_`` (must-understand) are refused; other unknown labels are ignored.

Records are grouped into readings by (device, resolved time): a pack holding several times
yields several readings.

Name mapping. The resolved name is split at its last ``:`` or ``/``: the tail is the field,
the segment before it (after an optional ``urn:dev:`` prefix) the device id, compared in
lower case with the topic's (``urn:dev:lamp-0001:power_w`` -> device ``lamp-0001``, field
``power_w``). The field is either

- a canonical name (``power_w``, ``fill_ratio``...), its unit optional but checked, or
- a unit-less alias plus a SenML unit (``power`` + ``W``, ``temperature`` + ``Cel``).

Accepted units convert to the canonical one (``kW`` -> W, ``mV`` -> V, ``%`` -> ratio,
``m/s`` -> km/h...); see ``FIELDS`` and ``ALIASES`` below. ``dB`` is read as dB(A) for
``noise_dba``: sound-level meters report A-weighted levels. Strings come in ``vs``, booleans
in ``vb``, ``seq`` as an integral ``v``. Unknown names pass through unchanged, so validation
rejects them as unknown fields instead of dropping them silently. Sums (``s``) and data
values (``vd``) have no canonical field and make their reading a reject.

Example:
    >>> from datetime import datetime, timezone
    >>> from ingest.decoders.base import parse_topic
    >>> topic = parse_topic("city/central/streetlight/lamp-0001/up")
    >>> now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> pack = b'[{"bn":"urn:dev:lamp-0001:","bt":1714521600,"n":"power","u":"kW","v":0.085}]'
    >>> r = SenML().decode(topic, pack, now)[0]
    >>> r["device_id"], r["power_w"], r["ts"].isoformat()
    ('lamp-0001', 85.0, '2024-05-01T00:00:00+00:00')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from ingest.decoders.base import (
    DecodeError,
    Decoder,
    RawReading,
    TopicInfo,
    json_start,
    load_json,
)

_ARRAY: Final = ord("[")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*")
# A bare field name: legal name characters and no ':' or '/' (so it cannot hold a device).
_TAIL_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
# RFC 8428 labels this decoder knows; a record with only these has no must-understand label.
_KNOWN: Final = frozenset(
    ("bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "l")
)
_MEASURE: Final = frozenset(("n", "v", "vs", "vb", "vd", "s"))
_VALUES: Final = ("v", "vs", "vb", "vd")
_SNIFF_RE: Final = re.compile(
    rb'\s*\[\s*\{\s*"(?:bn|bt|bu|bv|bs|bver|n|u|v|vs|vb|vd|s|t|ut|l)"\s*:'
)
_RELATIVE_LIMIT: Final = 2**28
_SENML_VERSION: Final = 10
_RAD: Final = 180.0 / math.pi


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one canonical field arrives: the SenML value label and accepted units."""

    label: str  # "v", "vs" or "vb"
    units: dict[str, float] = field(default_factory=dict)  # unit -> factor to canonical
    integer: bool = False


def _num(**units: float) -> FieldSpec:
    return FieldSpec("v", units)


_PCT = {"%": 1.0, "/": 100.0}
_RATIO = {"/": 1.0, "%": 0.01}
_VOLT = {"V": 1.0, "mV": 0.001}
_DEG = {"deg": 1.0, "rad": _RAD}
_UGM3 = {"ug/m3": 1.0}
_STR = FieldSpec("vs")
_BOOL = FieldSpec("vb")

FIELDS: Final[dict[str, FieldSpec]] = {
    "seq": FieldSpec("v", {"count": 1.0}, integer=True),
    "lat": _num(lat=1.0),
    "lon": _num(lon=1.0),
    # streetlight
    "power_state": _STR,
    "dimming_pct": FieldSpec("v", _PCT),
    "power_w": _num(W=1.0, kW=1000.0),
    "voltage_v": FieldSpec("v", _VOLT),
    "current_a": _num(A=1.0, mA=0.001),
    "power_factor": FieldSpec("v", _RATIO),
    "circuit_id": _STR,
    "cabinet_id": _STR,
    # bin
    "fill_ratio": FieldSpec("v", _RATIO),
    "temperature_c": _num(Cel=1.0),
    "tilt_deg": FieldSpec("v", _DEG),
    "lid_open": _BOOL,
    "battery_v": FieldSpec("v", _VOLT),
    "emptied": _BOOL,
    # vehicle
    "speed_kmh": FieldSpec("v", {"km/h": 1.0, "m/s": 3.6}),
    "heading_deg": FieldSpec("v", _DEG),
    "ignition": _BOOL,
    "odometer_km": _num(km=1.0, m=0.001),
    "vehicle_kind": _STR,
    "route_id": _STR,
    "payload_state": _STR,
    # dust
    "pm25_ugm3": FieldSpec("v", _UGM3),
    "pm10_ugm3": FieldSpec("v", _UGM3),
    "tsp_ugm3": FieldSpec("v", _UGM3),
    "noise_dba": FieldSpec("v", {"dBA": 1.0, "dB": 1.0}),
    "wind_ms": FieldSpec("v", {"m/s": 1.0, "km/h": 1 / 3.6}),
    "site_id": _STR,
}

# Unit-less SenML names -> canonical field (the unit then comes from ``u``/``bu``).
ALIASES: Final[dict[str, str]] = {
    "latitude": "lat",
    "longitude": "lon",
    "dimming": "dimming_pct",
    "power": "power_w",
    "voltage": "voltage_v",
    "current": "current_a",
    "pf": "power_factor",
    "fill": "fill_ratio",
    "fill_level": "fill_ratio",
    "temperature": "temperature_c",
    "temp": "temperature_c",
    "tilt": "tilt_deg",
    "battery": "battery_v",
    "speed": "speed_kmh",
    "heading": "heading_deg",
    "odometer": "odometer_km",
    "pm2.5": "pm25_ugm3",
    "pm25": "pm25_ugm3",
    "pm10": "pm10_ugm3",
    "tsp": "tsp_ugm3",
    "noise": "noise_dba",
    "sound_level": "noise_dba",
    "wind": "wind_ms",
    "wind_speed": "wind_ms",
}


def _number(rec: dict[str, Any], key: str) -> float:
    value = rec[key]
    # bool is an int subclass in Python, but a JSON true is no number.
    if type(value) not in (int, float):
        raise DecodeError("senml", f"{key!r} must be a number")
    return float(value)


def _string(rec: dict[str, Any], key: str) -> str:
    value = rec[key]
    if not isinstance(value, str):
        raise DecodeError("senml", f"{key!r} must be a string")
    return value


def _resolve_name(name: str) -> tuple[str | None, str] | None:
    """(device, field) of a resolved name, ``None`` when it breaks RFC 8428's charset."""
    if not _NAME_RE.fullmatch(name):
        return None
    return split_name(name)


@lru_cache(maxsize=1024)
def _bare_field(n: str) -> bool:
    """Whether ``n`` is only a field name. Cached: a fleet uses a few hundred of them."""
    return _TAIL_RE.fullmatch(n) is not None


def _base_device(bn: str) -> tuple[bool, str | None]:
    """(usable, device): usable when ``bn`` is a valid base name ending in ':' or '/', so
    that ``bn + n`` with a bare field ``n`` is valid and splits into (device, n)."""
    if not bn or bn[-1] not in ":/" or not _NAME_RE.fullmatch(bn):
        return False, None
    return True, split_name(bn)[0]


def split_name(name: str) -> tuple[str | None, str]:
    """(device id or None, field) of a resolved SenML name."""
    if name.startswith("urn:dev:"):
        name = name[8:]
    cut = max(name.rfind(":"), name.rfind("/"))
    head, tail = name[: max(cut, 0)], name[cut + 1 :]
    cut = max(head.rfind(":"), head.rfind("/"))
    device = head[cut + 1 :].lower()
    return device or None, tail


def _convert(name: str, unit: str | None, rec: dict[str, Any], bv: float | None) -> tuple[str, Any]:
    """(canonical field, value) of one record; unknown names pass through as given."""
    canonical = name if name in FIELDS else ALIASES.get(name)
    spec = FIELDS.get(canonical) if canonical else None
    present = [label for label in _VALUES if label in rec]
    if len(present) > 1:
        raise DecodeError("senml", f"{name}: more than one value field")
    if not present:
        if "s" in rec:
            raise DecodeError("senml", f"{name}: sums have no canonical field")
        if bv is None:
            raise DecodeError("senml", f"{name}: record has no value")
        present = ["v"]
    label = present[0]
    if spec is None or canonical is None:
        # Unknown name: hand it on so validation reports it as an unknown field.
        return name, rec.get(label, bv)
    if label != spec.label:
        raise DecodeError("senml", f"{name}: expected {spec.label!r}, got {label!r}")
    if label == "vs":
        return canonical, _string(rec, "vs")
    if label == "vb":
        value = rec["vb"]
        if not isinstance(value, bool):
            raise DecodeError("senml", f"{name}: 'vb' must be a boolean")
        return canonical, value
    number = (_number(rec, "v") if "v" in rec else 0.0) + (bv or 0.0)
    factor = 1.0
    if unit is not None:
        if unit not in spec.units:
            known = ", ".join(spec.units) or "none"
            raise DecodeError("senml", f"{name}: unit {unit!r} not accepted (known: {known})")
        factor = spec.units[unit]
    number *= factor
    if spec.integer:
        if not number.is_integer():
            raise DecodeError("senml", f"{name}: must be an integer")
        return canonical, int(number)
    return canonical, number


class SenML(Decoder):
    """RFC 8428 JSON packs: a JSON array whose first record starts with a SenML label."""

    name = "senml"

    def matches(self, topic: str, payload: bytes) -> bool:
        # The first key of the first record decides: SenML labels never collide with
        # canonical field names, whereas a '"n"' anywhere could be a nested key.
        return json_start(payload) == _ARRAY and _SNIFF_RE.match(payload, 0, 256) is not None

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        pack = load_json(payload)
        if not isinstance(pack, list) or not pack:
            raise DecodeError("senml", "a SenML pack is a non-empty JSON array")
        bn = ""
        # Per pack rather than per record: the device of the base name, for names bn + n
        # whose n is a bare field (the usual pack). A per-name cache missed on every name
        # once a fleet outgrew it (the device id is part of each name).
        bn_usable, bn_device = False, None
        bu: str | None = None
        bt = 0.0
        bv: float | None = None
        groups: dict[tuple[str | None, float], RawReading | DecodeError] = {}
        for i, rec in enumerate(pack):
            if not isinstance(rec, dict):
                raise DecodeError("senml", f"record {i} is not a JSON object")
            if not _KNOWN.issuperset(rec):
                for label in rec:
                    if label.endswith("_"):
                        raise DecodeError("senml", f"record {i}: must-understand label {label!r}")
            bver = rec.get("bver")
            if bver is not None and (type(bver) is not int or not 0 < bver <= _SENML_VERSION):
                raise DecodeError("senml", f"record {i}: unsupported SenML version {bver!r}")
            try:
                if "bn" in rec:
                    bn = _string(rec, "bn")
                    bn_usable, bn_device = _base_device(bn)
                if "bu" in rec:
                    bu = _string(rec, "bu")
                if "bt" in rec:
                    bt = _number(rec, "bt")
                if "bv" in rec:
                    bv = _number(rec, "bv")
                n = _string(rec, "n") if "n" in rec else ""
                unit = _string(rec, "u") if "u" in rec else bu
                t = _number(rec, "t") if "t" in rec else 0.0
            except DecodeError as exc:
                raise DecodeError(exc.reason, f"record {i}: {exc.detail}") from None
            if _MEASURE.isdisjoint(rec):
                continue  # a record of base fields only
            if bn_usable and n and _bare_field(n):
                device, fname = bn_device, n  # what split_name(bn + n) gives, checked
            else:
                name = bn + n
                resolved = _resolve_name(name)
                if resolved is None:
                    raise DecodeError("senml", f"record {i}: invalid SenML name {name[:64]!r}")
                device, fname = resolved
                if not fname:  # the shortcut's n is never empty
                    raise DecodeError("senml", f"record {i}: name {name[:64]!r} has no field part")
            when = bt + t
            key = (device, when)
            group = groups.get(key)
            if isinstance(group, DecodeError):
                continue
            if group is None:
                try:
                    ts = (
                        received_at + timedelta(seconds=when)
                        if when < _RELATIVE_LIMIT
                        else datetime.fromtimestamp(when, UTC)
                    )
                except (OverflowError, ValueError, OSError):
                    raise DecodeError("bad_ts", f"record {i}: time {when!r} out of range") from None
                group = groups[key] = {"ts": ts}
                if device is not None:
                    group["device_id"] = device
            try:
                fkey, value = _convert(fname, unit, rec, bv)
                if fkey in group:
                    raise DecodeError("senml", f"{fkey} given twice for one time")
            except DecodeError as exc:
                groups[key] = DecodeError(exc.reason, f"record {i}: {exc.detail}")
                continue
            group[fkey] = value
        if not groups:
            raise DecodeError("senml", "the pack holds no measurements")
        return list(groups.values())
