"""Line protocol for canonical reading records, alerts and KPIs (no I/O; the sink sends it).

Schema (DESIGN.md): one measurement per family; identity tags (device_id, district and the
family's circuit_id/cabinet_id, site_id or vehicle_kind/route_id); every other value a field
(``seq`` an integer, ``late`` a boolean, ``received_at`` integer ns); a lamp's reading also
gets the 1/0 indicators ``lit`` and ``switched_on`` (``lamp_indicators``), a dust reading
its noise level as energy (``noise_energy``); time = device ``ts`` in ns. A replayed
reading writes the same series and time, so it overwrites itself.

Escaping is influxdb-client's own (its ``point`` module's tag/field/key/string encoders, the
code behind ``Point.to_line_protocol``); calling them directly, with the tag part cached per
device and escaped field keys cached, is what makes 50k points/s possible. Field values of
the four JSON types are formatted here exactly as the client formats them (its generic
``_append_fields`` checks numpy and Decimal types on every value, which profiling showed to
be a fifth of the processor's time), floats with orjson's shortest round-trip digits
(``float_text``: the same text as the client's ``str()``, in a quarter of the time); anything
else goes through the client's own encoder.
tests/unit/test_influx_lines.py checks that the lines equal ``Point.to_line_protocol()`` for
hostile tag and field values.

Example:
    >>> line = reading_line({"device_id": "bin-1", "family": "bin", "district": "north",
    ...                      "ts": 1_700_000_000_000_000_000, "received_at": 1,
    ...                      "fill_ratio": 0.5, "seq": 3, "late": False})
    >>> line.split(" ")[:2]
    ['bin,device_id=bin-1,district=north', 'fill_ratio=0.5,late=false,received_at=1i,seq=3i']
"""

from __future__ import annotations

from typing import Any, Final

from influxdb_client.client.write.point import (
    _ESCAPE_MEASUREMENT,
    _append_fields,
    _append_tags,
    _escape_key,
    _escape_string,
)
from orjson import dumps as _json

TAGS: Final[dict[str, tuple[str, ...]]] = {
    "streetlight": ("device_id", "district", "circuit_id", "cabinet_id"),
    "bin": ("device_id", "district"),
    "vehicle": ("device_id", "district", "vehicle_kind", "route_id"),
    "dust": ("device_id", "district", "site_id"),
}
_NOT_FIELDS: Final = frozenset({"family", "ts"})
_NO_TYPES: Final[dict[str, str]] = {}
_prefix_cache: dict[tuple[str, ...], str] = {}


def series_prefix(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,tag=value,...`` followed by the space before the fields."""
    return f"{_escape_key(measurement, _ESCAPE_MEASUREMENT)}{_append_tags(tags)}"  # type: ignore[no-untyped-call]


_plans: dict[tuple[tuple[str, ...], frozenset[str]], tuple[tuple[str, str], ...]] = {}
_SKIP_NONE: Final[frozenset[str]] = frozenset()
# Not fields of a reading line: the family (the measurement), ts (the time) and the tags.
_SKIP_READING: Final = {fam: _NOT_FIELDS | frozenset(tags) for fam, tags in TAGS.items()}


def _plan(names: tuple[str, ...], skip: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """(key, escaped key and "=") of the fields to write, in the client's (sorted) order."""
    return tuple((k, f"{_escape_key(k)}=") for k in sorted(names) if k not in skip)


def encode_fields(fields: dict[str, Any], skip: frozenset[str] = _SKIP_NONE) -> str:
    """The field set of a line, as influxdb-client's ``_append_fields`` would write it."""
    # Records of one device arrive with the same keys in the same order: sorting and
    # escaping the keys once per key set, not per line, is a tenth of the processor's time.
    names = tuple(fields)
    plan = _plans.get((names, skip))
    if plan is None:
        plan = _plan(names, skip)
        if len(_plans) < 10_000:
            _plans[(names, skip)] = plan
    parts = []
    for k, key_eq in plan:
        v = fields[k]
        t = type(v)
        if t is float:
            if v - v != 0.0:  # NaN or +-inf: the client leaves them out
                continue
            parts.append(key_eq + float_text(v))
        elif t is int:
            parts.append(f"{key_eq}{v}i")
        elif t is bool:
            parts.append(key_eq + ("true" if v else "false"))
        elif t is str:
            # Most strings (a lamp's power_state) need no escaping; looking is cheaper.
            text = _escape_string(v) if '"' in v or "\\" in v else v
            parts.append(f'{key_eq}"{text}"')
        elif v is not None:
            parts.append(_append_fields({k: v}, _NO_TYPES))  # type: ignore[no-untyped-call]
    return ",".join(parts)


def float_text(v: float) -> str:
    """A finite float as the client writes it: ``str(v)`` without a trailing ``.0``.

    >>> float_text(71.93457976527216), float_text(230.0), float_text(1.5e-05)
    ('71.93457976527216', '230', '1.5e-05')
    """
    # orjson writes the same shortest round-trip digits as str() in a quarter of the time
    # (a lamp's line has five floats, about a third of its encoding). Only below 1e-4 in magnitude
    # does its notation differ (0.000015 for 1.5e-05), so those, and zero, go to str().
    # tests/unit/test_influx_lines.py holds it to str() over every magnitude.
    text = _json(v).decode() if v >= 1e-4 or v <= -1e-4 else repr(v)
    return text[:-2] if text.endswith(".0") else text


def clear_caches() -> None:
    """Forget the cached series prefixes and field plans (they refill on the next lines).

    For measurements: the caches are per process, so without this the first engine built
    in a process would be charged for the series prefixes every later engine reuses.
    """
    _prefix_cache.clear()
    _plans.clear()


def reading_line(rec: dict[str, Any]) -> str:
    """One line of protocol for a canonical reading record."""
    family = rec["family"]
    tag_names = TAGS[family]
    key = (family, *map(rec.get, tag_names))
    prefix = _prefix_cache.get(key)
    if prefix is None:
        tags = {t: str(rec[t]) for t in tag_names if rec.get(t) not in (None, "")}
        prefix = series_prefix(family, tags)
        if len(_prefix_cache) < 1_000_000:
            _prefix_cache[key] = prefix
    derive = _DERIVED.get(family)
    if derive is not None:
        rec = derive(rec)
    return f"{prefix}{encode_fields(rec, _SKIP_READING[family])} {rec['ts']}"


def lamp_indicators(rec: dict[str, Any]) -> dict[str, Any]:
    """The record plus ``lit`` (power_w > 0) and ``switched_on`` (dimming_pct > 0) as 1/0.

    The lighting-rate KPI counts lit lamp readings while their circuit is switched on
    (dashboards/kpis.py). Computed per point inside the query, the indicators made it
    4-5 x slower than ``sum``/``mean`` over stored fields (city, a day of 4.27 million lamp
    readings: ~17 s against ~3 s; docs/kpis.md). A reading without the value gets no
    indicator, as the query-time one gave none.
    """
    out = dict(rec)
    power, dim = rec.get("power_w"), rec.get("dimming_pct")
    if power is not None:
        out["lit"] = 1 if power > 0 else 0
    if dim is not None:
        out["switched_on"] = 1 if dim > 0 else 0
    return out


def noise_energy(rec: dict[str, Any]) -> dict[str, Any]:
    """The record plus ``noise_energy`` = 10^(noise_dba / 10), the level as relative energy.

    Sound levels average as energy, not as decibels (Leq = 10·log10(mean(10^(L/10)))), so
    the dust KPIs take ``10 * log10(mean(noise_energy))``. Computed per point inside the
    query (a subquery with ``pow``), the "now" KPI took 11.5 s for a day of 4.6 million dust
    readings, against 2.3 s over the stored field (docs/kpis.md).

    >>> round(noise_energy({"noise_dba": 60.0})["noise_energy"])
    1000000
    """
    level = rec.get("noise_dba")
    if level is None:
        return rec
    out = dict(rec)
    out["noise_energy"] = 10.0 ** (level / 10.0)
    return out


# Fields the dashboards aggregate but could only compute per point at query time.
_DERIVED: Final = {"streetlight": lamp_indicators, "dust": noise_energy}


def point_line(measurement: str, tags: dict[str, str], fields: dict[str, Any], ts_ns: int) -> str:
    """A line for anything else (alerts, KPIs), same escaping."""
    return f"{series_prefix(measurement, tags)}{encode_fields(fields)} {ts_ns}"
