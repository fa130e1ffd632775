"""Canonical readings: one pydantic model per device family, and the one Kafka record format.

Every reading is validated here before it leaves the gateway. Models are strict (no
string-to-number or 0/1-to-bool coercion), reject NaN/inf and unknown fields, and check
time: ``ts`` more than ``max_future`` (default 5 min) after ``received_at`` or more than
``max_age`` (default 30 days) before it is rejected, and
``ts`` more than ``max_lateness`` (default 1 h) before it sets ``late=True``. Field names
follow FIWARE Smart Data Models (Streetlight, WasteContainer, Vehicle, AirQualityObserved,
NoiseLevelObserved) in snake_case with the unit in the name.

Canonical Kafka record (topic ``citywatch.readings``, key = ``reading_key``): one compact
JSON object (orjson), flat, no nesting::

    {"device_id":"lamp-0001","family":"streetlight","district":"central",
     "ts":1714564800000000000,"received_at":1714564801250000000,"seq":42,"late":false,
     "power_state":"on","power_w":85.5}

- ``ts`` and ``received_at``: integer nanoseconds since 1970-01-01T00:00:00Z (device time and
  gateway time; InfluxDB's native precision). Python datetimes carry microseconds, so the
  last three digits are always 0.
- ``late``: always present (bool).
- every other field: present only when known (``None`` is omitted, never written as null).
- numbers are JSON numbers (floats for measurements, ints for ``seq``), strings for enums and
  ids, JSON booleans for ``lid_open``/``emptied``/``ignition``.

Processors read a record with ``orjson.loads`` (or ``from_record``), which yields that dict.

Example:
    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    >>> r = validate_reading({"device_id": "lamp-0001", "family": "streetlight",
    ...                       "district": "central", "ts": t, "received_at": t,
    ...                       "power_state": "on", "power_w": 85.5})
    >>> to_record(r)[:48]
    b'{"device_id":"lamp-0001","family":"streetlight",'
    >>> from_record(to_record(r))["ts"]
    1714564800000000000
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal, Self

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEVICE_ID_PATTERN",
    "DISTRICT_PATTERN",
    "FAMILIES",
    "BinReading",
    "DustReading",
    "Family",
    "Reading",
    "ReadingBase",
    "StreetlightReading",
    "ValidationPolicy",
    "VehicleReading",
    "from_record",
    "reading_from_record",
    "reading_key",
    "to_record",
    "validate_reading",
]

DEVICE_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{2,63}$"
DISTRICT_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{1,31}$"
# Ids that become InfluxDB tags: no spaces, commas or '=' so they never need escaping.
TAG_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

Family = Literal["streetlight", "bin", "vehicle", "dust"]
FAMILIES: Final[tuple[str, ...]] = ("streetlight", "bin", "vehicle", "dust")

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
DistrictId = Annotated[str, StringConstraints(pattern=DISTRICT_PATTERN)]
TagId = Annotated[str, StringConstraints(pattern=TAG_ID_PATTERN)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]
# Sequence counters end up as InfluxDB int64 fields.
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Time rules applied during validation (pass via ``validate_reading(policy=...)``)."""

    max_lateness: timedelta = timedelta(hours=1)
    max_future: timedelta = timedelta(minutes=5)
    # Older than this is refused (an unset RTC sends 1970, a corrupt clock year 1): InfluxDB
    # rejects points outside the raw retention policy (90 d) or before 1677 (int64 ns),
    # and one such point would block a processor's whole batch forever.
    max_age: timedelta = timedelta(days=30)


DEFAULT_POLICY: Final = ValidationPolicy()
_DEFAULT_CONTEXT: Final = {"policy": DEFAULT_POLICY}


class ReadingBase(BaseModel):
    """The envelope every reading carries; family models add their measured fields."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        # Readings are built from device input at 20k/s: skip work not needed on that path.
        validate_default=False,
        revalidate_instances="never",
        hide_input_in_errors=True,
    )

    # Subclasses list their measured fields; at least one must be present.
    MEASURED: ClassVar[tuple[str, ...]] = ()

    device_id: DeviceId
    family: Family
    district: DistrictId
    ts: AwareDatetime
    received_at: AwareDatetime
    seq: Seq | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    late: bool = False

    @model_validator(mode="after")
    def _check_time_and_content(self, info: ValidationInfo) -> Self:
        d = self.__dict__
        # Writing __dict__ directly: BaseModel.__setattr__ is several times slower and
        # these normalisations are not user-visible assignments.
        ts: datetime = d["ts"]
        received_at: datetime = d["received_at"]
        if ts.tzinfo is not UTC:
            ts = d["ts"] = ts.astimezone(UTC)
        if received_at.tzinfo is not UTC:
            received_at = d["received_at"] = received_at.astimezone(UTC)
        ctx = info.context
        policy: ValidationPolicy = ctx["policy"] if ctx else DEFAULT_POLICY
        skew = ts - received_at
        if skew > policy.max_future:
            raise ValueError(
                f"ts is {skew.total_seconds():.0f} s after received_at "
                f"(limit {policy.max_future.total_seconds():.0f} s)"
            )
        if -skew > policy.max_age:
            raise ValueError(
                f"ts is {-skew.total_seconds() / 86400:.0f} days before received_at "
                f"(limit {policy.max_age.days} days)"
            )
        d["late"] = -skew > policy.max_lateness
        for name in self.MEASURED:
            if d[name] is not None:
                return self
        raise ValueError(f"no measured field; expected at least one of {', '.join(self.MEASURED)}")


class StreetlightReading(ReadingBase):
    """One lamp (FIWARE Streetlight / StreetlightControlCabinet)."""

    MEASURED: ClassVar[tuple[str, ...]] = (
        "power_state",
        "dimming_pct",
        "power_w",
        "voltage_v",
        "current_a",
        "power_factor",
    )

    family: Literal["streetlight"]
    power_state: Literal["on", "off", "dim"] | None = None
    dimming_pct: Annotated[float, Field(ge=0.0, le=100.0)] | None = None
    power_w: Annotated[float, Field(ge=0.0, le=2000.0)] | None = None
    voltage_v: Annotated[float, Field(ge=0.0, le=300.0)] | None = None
    current_a: Annotated[float, Field(ge=0.0, le=20.0)] | None = None
    power_factor: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    circuit_id: TagId | None = None
    cabinet_id: TagId | None = None


class BinReading(ReadingBase):
    """One waste container (FIWARE WasteContainer: fillingLevel -> fill_ratio)."""

    MEASURED: ClassVar[tuple[str, ...]] = (
        "fill_ratio",
        "temperature_c",
        "tilt_deg",
        "lid_open",
        "battery_v",
        "emptied",
    )

    family: Literal["bin"]
    fill_ratio: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    temperature_c: Annotated[float, Field(ge=-40.0, le=150.0)] | None = None
    tilt_deg: Annotated[float, Field(ge=0.0, le=180.0)] | None = None
    lid_open: bool | None = None
    battery_v: Annotated[float, Field(ge=0.0, le=15.0)] | None = None
    emptied: bool | None = None


class VehicleReading(ReadingBase):
    """One position fix of a city vehicle (FIWARE Vehicle); lat/lon are required here.

    ``vehicle_kind`` is required because it selects the rule set (a muck truck's route
    rules differ from a sweeper's); ``route_id`` and ``payload_state`` are optional.
    """

    MEASURED: ClassVar[tuple[str, ...]] = (
        "lat",
        "lon",
        "speed_kmh",
        "heading_deg",
        "ignition",
        "odometer_km",
        "payload_state",
    )

    family: Literal["vehicle"]
    lat: Latitude
    lon: Longitude
    vehicle_kind: Literal["sanitation", "garbage", "muck"]
    speed_kmh: Annotated[float, Field(ge=0.0, le=250.0)] | None = None
    heading_deg: Annotated[float, Field(ge=0.0, le=360.0)] | None = None
    ignition: bool | None = None
    odometer_km: Annotated[float, Field(ge=0.0)] | None = None
    route_id: TagId | None = None
    payload_state: Literal["empty", "loaded", "unknown"] | None = None


class DustReading(ReadingBase):
    """One air-quality/noise sample (FIWARE AirQualityObserved + NoiseLevelObserved).

    ``site_id`` (e.g. a construction site) is optional: kerbside monitors belong to none.
    """

    MEASURED: ClassVar[tuple[str, ...]] = (
        "pm25_ugm3",
        "pm10_ugm3",
        "tsp_ugm3",
        "noise_dba",
        "wind_ms",
    )

    family: Literal["dust"]
    pm25_ugm3: Annotated[float, Field(ge=0.0, le=2000.0)] | None = None
    pm10_ugm3: Annotated[float, Field(ge=0.0, le=2000.0)] | None = None
    tsp_ugm3: Annotated[float, Field(ge=0.0, le=5000.0)] | None = None
    noise_dba: Annotated[float, Field(ge=0.0, le=200.0)] | None = None
    wind_ms: Annotated[float, Field(ge=0.0, le=80.0)] | None = None
    site_id: TagId | None = None


Reading = Annotated[
    StreetlightReading | BinReading | VehicleReading | DustReading,
    Field(discriminator="family"),
]

_ADAPTER: Final[TypeAdapter[Reading]] = TypeAdapter(Reading)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)


def validate_reading(data: Mapping[str, Any], *, policy: ValidationPolicy | None = None) -> Reading:
    """Validate one raw reading dict (datetimes for ``ts``/``received_at``).

    Raises ``pydantic.ValidationError``; the discriminator ``family`` picks the model.
    """
    ctx = _DEFAULT_CONTEXT if policy is None else {"policy": policy}
    return _ADAPTER.validate_python(data, context=ctx)


def _ns(dt: datetime) -> int:
    # Integer arithmetic on timedeltas: float timestamps lose the microseconds.
    return (dt - _EPOCH) // _ONE_US * 1000


def to_record(reading: ReadingBase) -> bytes:
    """The canonical Kafka value for a reading (see the module docstring for the format)."""
    out = {k: v for k, v in reading.__dict__.items() if v is not None}
    out["ts"] = _ns(reading.ts)
    out["received_at"] = _ns(reading.received_at)
    return orjson.dumps(out)


def from_record(record: bytes) -> dict[str, Any]:
    """Parse a canonical record into its flat dict (times stay integer nanoseconds)."""
    obj = orjson.loads(record)
    if not isinstance(obj, dict):
        raise ValueError(f"record is a JSON {type(obj).__name__}, not an object")
    return obj


def reading_from_record(record: bytes, *, policy: ValidationPolicy | None = None) -> Reading:
    """Parse and re-validate a canonical record into a model (``late`` is recomputed)."""
    obj = from_record(record)
    for key in ("ts", "received_at"):
        ns = obj.get(key)
        if type(ns) is int:
            obj[key] = _EPOCH + timedelta(microseconds=ns // 1000)
    return validate_reading(obj, policy=policy)


def reading_key(reading: ReadingBase) -> bytes:
    """The Kafka key: the device id, so one device's readings stay on one partition."""
    return reading.device_id.encode("ascii")
