"""The city model: districts, lamp circuits, bins, routes, sites and every device, with lookups.

One JSON file (``citywatch simulate --city-model PATH`` writes it, the processors load it)
describes the simulated city: which lamps hang on which circuit and cabinet and when they
should burn, which bins stand where, the muck trucks' routes and permitted corridors, the
approved disposal sites and the no-haul zone with its banned hours, the construction sites
with their PM10 and night-noise limits, and each device's family, payload format and expected
reporting interval. Collections are dicts keyed by id, so every lookup is one dict access.

Geometries are GeoJSON-style (``{"type": "LineString", "coordinates": [[lon, lat], ...]}``).
Geometry tests run in local metres (an equirectangular projection around the city centre,
consistent to centimetres across a 100 km city) on a grid index built on first use: a few
microseconds per lookup, so rules can call them for every reading.
Times passed to the helpers are epoch seconds (UTC); divide nanoseconds by 1e9.
``docs/city_model.md`` documents every field.

Example:
    >>> city = CityModel.generate(seed=1, scale=1)
    >>> lamp = next(d for d in city.devices.values() if d.family == "streetlight")
    >>> city.circuit_of(lamp.id).id == lamp.circuit_id, city.expected_interval_s(lamp.id)
    (True, 300)
    >>> city.lamp_expected(lamp.id, 1_700_000_000.0).state in ("on", "dim", "off")
    True
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from citywatch.geo import GeoIndex
from citywatch.settings import CitySettings

__all__ = [
    "DEFAULT_INTERVALS_S",
    "Cabinet",
    "Circuit",
    "CityModel",
    "CollectionPoint",
    "CollectionRound",
    "ConstructionSite",
    "Depot",
    "Device",
    "DimStep",
    "DisposalSite",
    "District",
    "LampExpectation",
    "LampSchedule",
    "LineString",
    "NoHaulZone",
    "Polygon",
    "Route",
    "Shift",
    "Vehicle",
    "hhmm_seconds",
]

Family = Literal["streetlight", "bin", "vehicle", "dust"]
PayloadFormat = Literal["json_native", "senml", "ttn_v3", "chirpstack_v4", "lamp_binary"]
VehicleKind = Literal["sanitation", "garbage", "muck"]
AreaType = Literal["residential", "commercial", "market", "park"]

DEFAULT_INTERVALS_S: Final[dict[str, int]] = {
    "streetlight": 300,
    "bin": 900,
    "vehicle": 10,
    "dust": 60,
}
# Spherical Earth: metres per degree of latitude (and of longitude at the equator).
M_PER_DEG: Final = 6_371_008.8 * math.pi / 180.0
DAY_S: Final = 86_400


def hhmm_seconds(hhmm: str) -> int:
    """Seconds after local midnight of an ``"HH:MM"`` string (``"24:00"`` is 86400).

    Example:
        >>> hhmm_seconds("07:30")
        27000
    """
    h, m = hhmm.split(":")
    return int(h) * 3600 + int(m) * 60


def _in_daily_window(sod: float, start: int, end: int) -> bool:
    """Is second-of-day ``sod`` inside [start, end), a window that may wrap midnight?"""
    if start <= end:
        return start <= sod < end
    return sod >= start or sod < end


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# -- geometry ----------------------------------------------------------------------------
class LineString(_Model):
    """GeoJSON LineString, coordinates ``[lon, lat]``."""

    type: Literal["LineString"] = "LineString"
    coordinates: list[tuple[float, float]]


class Polygon(_Model):
    """GeoJSON Polygon: one exterior ring ``[[lon, lat], ...]`` (closed), no holes here."""

    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[tuple[float, float]]]


# -- street lighting ---------------------------------------------------------------------
class DimStep(_Model):
    """Burn at ``level_pct`` between two local times (the window may wrap midnight)."""

    start: str = "00:00"
    end: str = "05:00"
    level_pct: int = Field(50, ge=1, le=100)


class LampSchedule(_Model):
    """On at sunset + ``on_offset_s``, off at sunrise + ``off_offset_s``, dimmed by profile."""

    on_offset_s: int = 0
    off_offset_s: int = 0
    dimming: list[DimStep] = Field(default_factory=lambda: [DimStep()])


@dataclass(frozen=True, slots=True)
class LampExpectation:
    """What a lamp should do at one instant according to its circuit's schedule.

    ``near_switch`` is true within the model's ``switch_grace_s`` of a scheduled switch
    (on, off, or a dimming step): rules should not judge a lamp then.
    """

    state: Literal["on", "dim", "off"]
    dimming_pct: int
    near_switch: bool

    @property
    def lit(self) -> bool:
        return self.state != "off"


class Cabinet(_Model):
    """A control cabinet feeding 1-3 circuits; a concentrator reports all its lamps at once."""

    id: str
    district: str
    lat: float
    lon: float
    circuit_ids: list[str]
    concentrator: bool = False


class Circuit(_Model):
    """One lamp circuit (10-30 lamps) along a street, switched as one by its cabinet."""

    id: str
    district: str
    cabinet_id: str
    street: str
    lamp_ids: list[str]
    schedule: LampSchedule = Field(default_factory=LampSchedule)


# -- waste -------------------------------------------------------------------------------
class CollectionPoint(_Model):
    id: str
    district: str
    area_type: AreaType
    lat: float
    lon: float
    bin_ids: list[str]
    round_id: str


class CollectionRound(_Model):
    """Bins of one area type emptied at each local time, ``minutes_per_point`` apart."""

    id: str
    district: str
    area_type: AreaType
    times_local: list[str]
    point_ids: list[str]
    minutes_per_point: float = 2.0


# -- vehicles and hauling ----------------------------------------------------------------
class Depot(_Model):
    id: str
    district: str
    area: Polygon


class DisposalSite(_Model):
    """An approved place to tip muck."""

    id: str
    district: str
    area: Polygon


class NoHaulZone(_Model):
    """Muck trucks may not move inside ``area`` between ``banned_from`` and ``banned_to``."""

    id: str
    district: str
    area: Polygon
    banned_from: str = "07:00"
    banned_to: str = "20:00"


class Route(_Model):
    """A vehicle's route; muck trucks must stay within ``corridor_buffer_m`` of ``line``."""

    id: str
    district: str
    vehicle_kind: VehicleKind
    line: LineString
    corridor_buffer_m: float = 150.0
    depot_id: str
    site_id: str | None = None
    disposal_site_id: str | None = None
    crosses_no_haul_zone: bool = False


class Shift(_Model):
    """A daily working window in local time (may wrap midnight)."""

    start: str
    end: str


class Vehicle(_Model):
    id: str
    district: str
    kind: VehicleKind
    route_id: str
    depot_id: str
    shifts: list[Shift]


class ConstructionSite(_Model):
    id: str
    district: str
    area: Polygon
    lat: float
    lon: float
    pm10_limit_ugm3: float = 150.0
    night_noise_limit_dba: float = 55.0
    night_from: str = "22:00"
    night_to: str = "06:00"
    working_from: str = "08:00"
    working_to: str = "18:00"
    sensor_ids: list[str]
    inside_no_haul_zone: bool = False


class District(_Model):
    id: str
    code: str  # short code used inside device ids
    lat: float  # centre
    lon: float
    size_m: float


class Device(_Model):
    """One reporting device. Family-specific links are set for their family only.

    ``concentrator_id``: a lamp reported by its cabinet's concentrator (binary frames on
    the concentrator's topic) rather than by itself.
    """

    id: str
    family: Family
    district: str
    interval_s: int
    payload_format: PayloadFormat
    lat: float | None = None
    lon: float | None = None
    # streetlight
    circuit_id: str | None = None
    cabinet_id: str | None = None
    concentrator_id: str | None = None
    nominal_power_w: float | None = None
    # bin
    collection_point_id: str | None = None
    area_type: AreaType | None = None
    # dust
    site_id: str | None = None
    # vehicle
    route_id: str | None = None
    vehicle_kind: VehicleKind | None = None

    @property
    def publisher_id(self) -> str:
        """The MQTT topic's device id (the concentrator for lamps behind one)."""
        return self.concentrator_id or self.id


@dataclass(frozen=True, slots=True)
class _DayPlan:
    lit: list[tuple[float, float]]
    dims: list[tuple[float, float, int]]
    edges: list[float]  # every switch: on, off and dimming steps


@lru_cache(maxsize=4096)
def _sun_times(lat: float, lon: float, offset_min: int, day_ordinal: int) -> tuple[float, float]:
    """(sunrise, sunset) of a local date as epoch seconds."""
    from astral import Observer
    from astral.sun import sunrise, sunset

    tz = timezone(timedelta(minutes=offset_min))
    day = date.fromordinal(day_ordinal)
    obs = Observer(latitude=lat, longitude=lon)
    try:
        return sunrise(obs, day, tzinfo=tz).timestamp(), sunset(obs, day, tzinfo=tz).timestamp()
    except ValueError:
        # Polar day or night: fall back to 06:00 / 18:00 local so lamps still cycle.
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        return midnight + 6 * 3600, midnight + 18 * 3600


class CityModel(_Model):
    """The whole city. Build with ``generate``, persist with ``save`` / ``load``."""

    version: int = 1
    name: str
    seed: int
    scale: int
    latitude: float
    longitude: float
    utc_offset_minutes: int
    switch_grace_s: int = 1200
    intervals_s: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_INTERVALS_S))
    districts: dict[str, District] = Field(default_factory=dict)
    cabinets: dict[str, Cabinet] = Field(default_factory=dict)
    circuits: dict[str, Circuit] = Field(default_factory=dict)
    collection_points: dict[str, CollectionPoint] = Field(default_factory=dict)
    collection_rounds: dict[str, CollectionRound] = Field(default_factory=dict)
    depots: dict[str, Depot] = Field(default_factory=dict)
    disposal_sites: dict[str, DisposalSite] = Field(default_factory=dict)
    no_haul_zones: dict[str, NoHaulZone] = Field(default_factory=dict)
    routes: dict[str, Route] = Field(default_factory=dict)
    sites: dict[str, ConstructionSite] = Field(default_factory=dict)
    vehicles: dict[str, Vehicle] = Field(default_factory=dict)
    devices: dict[str, Device] = Field(default_factory=dict)

    _geo: GeoIndex | None = PrivateAttr(default=None)
    _m_per_deg_lon: float | None = PrivateAttr(default=None)
    _plans: dict[tuple[str, int], _DayPlan] = PrivateAttr(default_factory=dict)

    # -- construction and persistence --------------------------------------------------
    @classmethod
    def generate(cls, seed: int = 1, scale: int = 1, city: CitySettings | None = None) -> CityModel:
        """A reproducible city: ``scale`` districts of ~300-600 devices each."""
        from ingest.simulator.citygen import generate_city

        return generate_city(seed, scale, city or CitySettings())

    def save(self, path: Path) -> None:
        """Write the model as JSON (atomically: a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.model_dump_json(exclude_none=True).encode())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> CityModel:
        return cls.model_validate_json(path.read_bytes())

    # -- identity lookups --------------------------------------------------------------
    def device(self, device_id: str) -> Device:
        """The device (``KeyError`` for an unknown id)."""
        return self.devices[device_id]

    def expected_interval_s(self, device_id: str) -> int:
        """The device's expected reporting interval in seconds of device time."""
        return self.devices[device_id].interval_s

    def circuit_of(self, device_id: str) -> Circuit | None:
        dev = self.devices.get(device_id)
        return self.circuits.get(dev.circuit_id) if dev and dev.circuit_id else None

    def site_of(self, device_id: str) -> ConstructionSite | None:
        dev = self.devices.get(device_id)
        return self.sites.get(dev.site_id) if dev and dev.site_id else None

    def route_of(self, device_id: str) -> Route | None:
        dev = self.devices.get(device_id)
        return self.routes.get(dev.route_id) if dev and dev.route_id else None

    def devices_in(self, district: str, family: str | None = None) -> list[Device]:
        return [
            d
            for d in self.devices.values()
            if d.district == district and (family is None or d.family == family)
        ]

    # -- local time and the sun --------------------------------------------------------
    @property
    def tz(self) -> timezone:
        return timezone(timedelta(minutes=self.utc_offset_minutes))

    def local_time(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC).astimezone(self.tz)

    def local_seconds(self, ts: float) -> float:
        """Seconds since local midnight."""
        return (ts + self.utc_offset_minutes * 60) % DAY_S

    def local_day(self, ts: float) -> int:
        """The local date of ``ts`` as a proleptic Gregorian ordinal."""
        days = math.floor((ts + self.utc_offset_minutes * 60) / DAY_S)
        return date(1970, 1, 1).toordinal() + days

    def local_midnight(self, day_ordinal: int) -> float:
        return (day_ordinal - date(1970, 1, 1).toordinal()) * DAY_S - self.utc_offset_minutes * 60

    def sun_times(self, day_ordinal: int) -> tuple[float, float]:
        """(sunrise, sunset) of a local date (ordinal) as epoch seconds."""
        return _sun_times(self.latitude, self.longitude, self.utc_offset_minutes, day_ordinal)

    def lit_intervals(self, circuit_id: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """The [on, off) intervals of a circuit's schedule that overlap [t0, t1)."""
        sched = self.circuits[circuit_id].schedule
        out = []
        for day in range(self.local_day(t0) - 1, self.local_day(t1) + 1):
            on = self.sun_times(day)[1] + sched.on_offset_s
            off = self.sun_times(day + 1)[0] + sched.off_offset_s
            if on < t1 and off > t0:
                out.append((on, off))
        return out

    def switch_times(self, circuit_id: str, t0: float, t1: float) -> list[float]:
        """Every scheduled switch (on, off, dimming steps while lit) in [t0, t1]."""
        sched = self.circuits[circuit_id].schedule
        times: list[float] = []
        for on, off in self.lit_intervals(circuit_id, t0 - DAY_S, t1 + DAY_S):
            times += [on, off]
            for step in sched.dimming:
                for day in range(self.local_day(on), self.local_day(off) + 1):
                    base = self.local_midnight(day)
                    for edge in (hhmm_seconds(step.start), hhmm_seconds(step.end)):
                        t = base + edge
                        if on < t < off:
                            times.append(t)
        return sorted(t for t in set(times) if t0 <= t <= t1)

    def _day_plan(self, circuit_id: str, day: int) -> _DayPlan:
        """A circuit's schedule around local day ``day``, in absolute times (cached)."""
        key = (circuit_id, day)
        plan = self._plans.get(key)
        if plan is None:
            sched = self.circuits[circuit_id].schedule
            lit, dims, edges = [], [], []
            for d in (day - 1, day):
                on = self.sun_times(d)[1] + sched.on_offset_s
                off = self.sun_times(d + 1)[0] + sched.off_offset_s
                lit.append((on, off))
                edges += [on, off]
            for d in (day - 1, day, day + 1):
                base = self.local_midnight(d)
                for step in sched.dimming:
                    a, b = hhmm_seconds(step.start), hhmm_seconds(step.end)
                    b = b if b > a else b + DAY_S
                    dims.append((base + a, base + b, step.level_pct))
                    edges += [base + a, base + b]
            plan = self._plans[key] = _DayPlan(lit, dims, sorted(edges))
            if len(self._plans) > 100_000:  # a long replay: forget old days
                self._plans.clear()
                self._plans[key] = plan
        return plan

    def lamp_expected(self, lamp_or_circuit_id: str, ts: float) -> LampExpectation:
        """What the schedule says a lamp (or any lamp of a circuit) should do at ``ts``."""
        circuit = self.circuits.get(lamp_or_circuit_id) or self.circuit_of(lamp_or_circuit_id)
        if circuit is None:
            raise KeyError(f"{lamp_or_circuit_id!r} is neither a lamp nor a circuit")
        plan = self._day_plan(circuit.id, self.local_day(ts))
        grace = self.switch_grace_s
        lit = any(on <= ts < off for on, off in plan.lit)
        level = 100
        if lit:
            for a, b, pct in plan.dims:
                if a <= ts < b and pct < level:
                    level = pct
        i = bisect.bisect_left(plan.edges, ts - grace)
        near = i < len(plan.edges) and plan.edges[i] < ts + grace
        if lit:
            return LampExpectation("dim" if level < 100 else "on", level, near)
        # Dimming steps only matter while lit; off, only on/off switches count.
        near = any(abs(ts - t) < grace for pair in plan.lit for t in pair)
        return LampExpectation("off", 0, near)

    def is_banned_hour(self, ts: float, zone_id: str | None = None) -> bool:
        """Are muck trucks banned from the no-haul zone(s) at ``ts``?"""
        zones = [self.no_haul_zones[zone_id]] if zone_id else list(self.no_haul_zones.values())
        sod = self.local_seconds(ts)
        return any(
            _in_daily_window(sod, hhmm_seconds(z.banned_from), hhmm_seconds(z.banned_to))
            for z in zones
        )

    def is_site_night(self, site_id: str, ts: float) -> bool:
        """Does the site's night-noise limit apply at ``ts``?"""
        s = self.sites[site_id]
        return _in_daily_window(
            self.local_seconds(ts), hhmm_seconds(s.night_from), hhmm_seconds(s.night_to)
        )

    def in_shift(self, vehicle_id: str, ts: float) -> bool:
        sod = self.local_seconds(ts)
        return any(
            _in_daily_window(sod, hhmm_seconds(s.start), hhmm_seconds(s.end))
            for s in self.vehicles[vehicle_id].shifts
        )

    # -- geometry ----------------------------------------------------------------------
    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Local metres east/north of the city centre."""
        return (lon - self.longitude) * self._kx(), (lat - self.latitude) * M_PER_DEG

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.latitude + y / M_PER_DEG, self.longitude + x / self._kx()

    def _kx(self) -> float:
        if self._m_per_deg_lon is None:
            self._m_per_deg_lon = M_PER_DEG * math.cos(math.radians(self.latitude))
        return self._m_per_deg_lon

    @property
    def geo(self) -> GeoIndex:
        if self._geo is None:
            self._geo = GeoIndex(self)
        return self._geo

    def corridor_distance_m(self, route_id: str, lat: float, lon: float) -> float:
        """Distance in metres from a position to the route's line."""
        return self.geo.route_distance(route_id, *self.to_xy(lat, lon))

    def in_corridor(self, route_id: str, lat: float, lon: float) -> bool:
        """Within the route's ``corridor_buffer_m`` of its line?"""
        return (
            self.corridor_distance_m(route_id, lat, lon) <= self.routes[route_id].corridor_buffer_m
        )

    def no_haul_zone_at(self, lat: float, lon: float) -> NoHaulZone | None:
        zid = self.geo.find("zone", self.to_xy(lat, lon))
        return self.no_haul_zones[zid] if zid else None

    def disposal_site_at(self, lat: float, lon: float) -> DisposalSite | None:
        sid = self.geo.find("disposal", self.to_xy(lat, lon))
        return self.disposal_sites[sid] if sid else None

    def depot_at(self, lat: float, lon: float) -> Depot | None:
        did = self.geo.find("depot", self.to_xy(lat, lon))
        return self.depots[did] if did else None

    def polygon_xy(self, poly: Polygon) -> list[tuple[float, float]]:
        return [self.to_xy(lat, lon) for lon, lat in poly.coordinates[0]]

    def line_xy(self, line: LineString) -> list[tuple[float, float]]:
        return [self.to_xy(lat, lon) for lon, lat in line.coordinates]
