"""City generation: a reproducible ``CityModel`` from (seed, scale).

Each district is a 4 km square laid on a grid around the city centre, with streets every
500 m (at 250 m, 750 m, ... from its south-west corner); the outermost streets form a ring
road. Inside each district:

- the no-haul zone is the central 2 km square (no street runs along its edge, so a truck is
  clearly in or out); the depot sits at the south-west ring corner, the approved disposal
  site at the north-east one;
- lamp circuits of 10-30 lamps run along 500 m street blocks; cabinets feed 1-3 adjacent
  circuits, some of them as concentrators that report all their lamps in one binary frame;
- bins stand at collection points along the garbage routes (area type by location);
- construction sites sit inside the zone (their muck routes take a spoke street in) or on
  the ring (outer sites), each with 2-4 dust/noise sensors and one muck truck;
- garbage trucks serpentine along north-south streets, sweepers along east-west ones.

Example:
    >>> city = generate_city(7, 1, CitySettings())
    >>> 300 <= len(city.devices) <= 600, list(city.districts)
    (True, ['central'])
"""

from __future__ import annotations

import math
import random
from typing import Final

from citywatch.citymodel import (
    DEFAULT_INTERVALS_S,
    AreaType,
    Cabinet,
    Circuit,
    CityModel,
    CollectionPoint,
    CollectionRound,
    ConstructionSite,
    Depot,
    Device,
    DisposalSite,
    District,
    LineString,
    NoHaulZone,
    PayloadFormat,
    Polygon,
    Route,
    Shift,
    Vehicle,
    VehicleKind,
)
from citywatch.settings import CitySettings

SIZE_M: Final = 4000.0
STREETS: Final = [250.0 + 500.0 * k for k in range(8)]  # 250 .. 3750
RING_LO, RING_HI = STREETS[0], STREETS[-1]
ZONE: Final = (1000.0, 3000.0)  # the no-haul zone square, mid-block on every side
ROUND_TIMES: Final[dict[str, list[str]]] = {
    "residential": ["07:00"],
    "commercial": ["06:00", "15:00"],
    "market": ["06:00", "12:00", "18:00"],
    "park": ["08:00"],
}
SHIFTS: Final[dict[str, list[tuple[str, str]]]] = {
    "sanitation": [("05:00", "13:00"), ("14:00", "22:00")],
    "garbage": [("05:30", "13:30"), ("14:30", "19:30")],
    "muck_outer": [("09:00", "17:30"), ("20:30", "05:00")],
    "muck_inner": [("20:30", "05:00")],
}

XY = tuple[float, float]


def _pick_format(rng: random.Random, weights: dict[PayloadFormat, float]) -> PayloadFormat:
    formats = list(weights)
    return rng.choices(formats, weights=[weights[f] for f in formats])[0]


def _square(cx: float, cy: float, half: float) -> list[XY]:
    return [
        (cx - half, cy - half),
        (cx + half, cy - half),
        (cx + half, cy + half),
        (cx - half, cy + half),
        (cx - half, cy - half),
    ]


def _dedupe(points: list[XY]) -> list[XY]:
    out: list[XY] = []
    for p in points:
        if not out or math.dist(out[-1], p) > 1e-6:
            out.append(p)
    return out


class _DistrictBuilder:
    """Lays out one district in local metres (origin = its south-west corner)."""

    def __init__(
        self, city: CityModel, rng: random.Random, name: str, code: str, origin: XY
    ) -> None:
        self.city, self.rng, self.name, self.code = city, rng, name, code
        self.ox, self.oy = origin

    def ll(self, p: XY) -> tuple[float, float]:
        """(lat, lon) of a district-local point, rounded to ~1 cm."""
        lat, lon = self.city.to_latlon(self.ox + p[0], self.oy + p[1])
        return round(lat, 7), round(lon, 7)

    def line(self, pts: list[XY]) -> LineString:
        return LineString(coordinates=[(lon, lat) for lat, lon in map(self.ll, _dedupe(pts))])

    def poly(self, pts: list[XY]) -> Polygon:
        return Polygon(coordinates=[[(lon, lat) for lat, lon in map(self.ll, pts)]])

    def build(self) -> None:
        c, d = self.city, self.code
        lat, lon = self.ll((SIZE_M / 2, SIZE_M / 2))
        c.districts[self.name] = District(id=self.name, code=d, lat=lat, lon=lon, size_m=SIZE_M)
        c.depots[f"depot-{d}"] = Depot(
            id=f"depot-{d}", district=self.name, area=self.poly(_square(RING_LO, RING_LO, 100))
        )
        c.disposal_sites[f"disposal-{d}"] = DisposalSite(
            id=f"disposal-{d}", district=self.name, area=self.poly(_square(RING_HI, RING_HI, 150))
        )
        lo, hi = ZONE
        c.no_haul_zones[f"zone-{d}"] = NoHaulZone(
            id=f"zone-{d}",
            district=self.name,
            area=self.poly([(lo, lo), (hi, lo), (hi, hi), (lo, hi), (lo, lo)]),
        )
        self.lamps()
        garbage_columns = self.fleet()
        self.bins(garbage_columns)
        self.sites()

    # -- street lighting ---------------------------------------------------------------
    def lamps(self) -> None:
        rng, d = self.rng, self.code
        blocks: list[tuple[str, XY, XY]] = []
        for i, s in enumerate(STREETS):
            for j in range(len(STREETS) - 1):
                lo, hi = STREETS[j], STREETS[j + 1]
                blocks.append((f"ew{i}", (lo, s), (hi, s)))
                blocks.append((f"ns{i}", (s, lo), (s, hi)))
        rng.shuffle(blocks)
        budget = rng.randint(220, 360)
        placed = 0
        cab_no = 0
        while placed < budget and blocks:
            cab_no += 1
            cab_id = f"lamp-{d}-c{cab_no:02d}"
            n_circuits = min(rng.choice([1, 1, 2, 2, 3]), len(blocks))
            street, start, _ = blocks[0]
            cab_lat, cab_lon = self.ll(start)
            concentrator = rng.random() < 0.4
            circuit_ids: list[str] = []
            lamp_no = 0
            for k in range(1, n_circuits + 1):
                street, a, b = blocks.pop(0)
                count = rng.randint(10, 30)
                ring = street in ("ew0", "ew7", "ns0", "ns7")
                nominal = rng.choice([120.0, 135.0, 150.0] if ring else [40.0, 55.0, 70.0, 90.0])
                circ_id = f"circ-{d}-c{cab_no:02d}-{k}"
                # One controller model per circuit (as installed), so one payload format.
                fmt: PayloadFormat = (
                    "lamp_binary"
                    if concentrator
                    else _pick_format(rng, {"lamp_binary": 0.4, "json_native": 0.4, "senml": 0.2})
                )
                lamp_ids = []
                for n in range(count):
                    lamp_no += 1
                    f = (n + 0.5) / count
                    lat, lon = self.ll((a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f))
                    lamp_id = f"{cab_id}-{lamp_no:03d}"
                    self.city.devices[lamp_id] = Device(
                        id=lamp_id,
                        family="streetlight",
                        district=self.name,
                        interval_s=DEFAULT_INTERVALS_S["streetlight"],
                        payload_format=fmt,
                        lat=lat,
                        lon=lon,
                        circuit_id=circ_id,
                        cabinet_id=cab_id,
                        concentrator_id=cab_id if concentrator else None,
                        nominal_power_w=nominal,
                    )
                    lamp_ids.append(lamp_id)
                placed += count
                self.city.circuits[circ_id] = Circuit(
                    id=circ_id,
                    district=self.name,
                    cabinet_id=cab_id,
                    street=f"{d}-{street}",
                    lamp_ids=lamp_ids,
                )
                circuit_ids.append(circ_id)
            self.city.cabinets[cab_id] = Cabinet(
                id=cab_id,
                district=self.name,
                lat=cab_lat,
                lon=cab_lon,
                circuit_ids=circuit_ids,
                concentrator=concentrator,
            )

    # -- vehicles ----------------------------------------------------------------------
    def _vehicle(self, kind: VehicleKind, n: int, route: Route, shifts: str) -> None:
        vid = f"veh-{self.code}-{kind}-{n:02d}"
        depot = route.depot_id
        self.city.vehicles[vid] = Vehicle(
            id=vid,
            district=self.name,
            kind=kind,
            route_id=route.id,
            depot_id=depot,
            shifts=[Shift(start=a, end=b) for a, b in SHIFTS[shifts]],
        )
        lat, lon = self.ll((RING_LO, RING_LO))
        self.city.devices[vid] = Device(
            id=vid,
            family="vehicle",
            district=self.name,
            interval_s=DEFAULT_INTERVALS_S["vehicle"],
            payload_format=_pick_format(self.rng, {"json_native": 0.8, "senml": 0.2}),
            lat=lat,
            lon=lon,
            route_id=route.id,
            vehicle_kind=kind,
        )

    def fleet(self) -> list[list[float]]:
        """Garbage and sanitation routes and trucks; returns the garbage trucks' columns."""
        d, rng = self.code, self.rng
        inner = STREETS[1:-1]  # 750 .. 3250
        columns: list[list[float]] = []
        n_garbage = rng.randint(2, 3)
        per = math.ceil(len(inner) / n_garbage)
        for g in range(n_garbage):
            cols = inner[g * per : (g + 1) * per]
            columns.append(cols)
            pts: list[XY] = [(RING_LO, RING_LO)]
            for i, x in enumerate(cols):
                ys = (RING_LO, RING_HI) if i % 2 == 0 else (RING_HI, RING_LO)
                pts += [(x, ys[0]), (x, ys[1])]
            pts += [(cols[-1], RING_LO), (RING_LO, RING_LO)]
            route = self._route(f"route-{d}-garbage-{g + 1:02d}", "garbage", pts)
            self._vehicle("garbage", g + 1, route, "garbage")
        n_sweep = rng.randint(2, 3)
        per = math.ceil(len(inner) / n_sweep)
        for s in range(n_sweep):
            rows = inner[s * per : (s + 1) * per]
            pts = [(RING_LO, RING_LO)]
            for i, y in enumerate(rows):
                xs = (RING_LO, RING_HI) if i % 2 == 0 else (RING_HI, RING_LO)
                pts += [(xs[0], y), (xs[1], y)]
            pts += [(RING_LO, rows[-1]), (RING_LO, RING_LO)]
            route = self._route(f"route-{d}-sanitation-{s + 1:02d}", "sanitation", pts)
            self._vehicle("sanitation", s + 1, route, "sanitation")
        return columns

    def _route(
        self,
        rid: str,
        kind: VehicleKind,
        pts: list[XY],
        site_id: str | None = None,
        crosses: bool = False,
    ) -> Route:
        route = Route(
            id=rid,
            district=self.name,
            vehicle_kind=kind,
            line=self.line(pts),
            depot_id=f"depot-{self.code}",
            site_id=site_id,
            disposal_site_id=f"disposal-{self.code}" if kind == "muck" else None,
            crosses_no_haul_zone=crosses,
        )
        self.city.routes[rid] = route
        return route

    # -- bins --------------------------------------------------------------------------
    def bins(self, columns: list[list[float]]) -> None:
        d, rng = self.code, self.rng
        budget = rng.randint(70, 130)
        spots = [(x, y) for cols in columns for x in cols for y in range(400, 3700, 200)]
        rng.shuffle(spots)
        rounds: dict[str, list[str]] = {}
        n_bins = 0
        for p_no, (x, y) in enumerate(spots, start=1):
            if n_bins >= budget:
                break
            in_zone = ZONE[0] < x < ZONE[1] and ZONE[0] < y < ZONE[1]
            area: AreaType = (
                rng.choice(["commercial", "commercial", "market"])
                if in_zone
                else rng.choice(["residential", "residential", "residential", "park"])
            )
            pid = f"cp-{d}-{p_no:03d}"
            rid = f"round-{d}-{area}"
            rounds.setdefault(rid, []).append(pid)
            bin_ids = []
            for _ in range(rng.randint(1, 3)):
                n_bins += 1
                bid = f"bin-{d}-{n_bins:04d}"
                lat, lon = self.ll((x + 8.0, float(y)))
                self.city.devices[bid] = Device(
                    id=bid,
                    family="bin",
                    district=self.name,
                    interval_s=DEFAULT_INTERVALS_S["bin"],
                    payload_format=_pick_format(
                        rng, {"ttn_v3": 0.6, "json_native": 0.3, "senml": 0.1}
                    ),
                    lat=lat,
                    lon=lon,
                    collection_point_id=pid,
                    area_type=area,
                )
                bin_ids.append(bid)
            lat, lon = self.ll((x + 8.0, float(y)))
            self.city.collection_points[pid] = CollectionPoint(
                id=pid,
                district=self.name,
                area_type=area,
                lat=lat,
                lon=lon,
                bin_ids=bin_ids,
                round_id=rid,
            )
        for rid, points in sorted(rounds.items()):
            area_name = rid.rsplit("-", 1)[1]
            area_t: AreaType = self.city.collection_points[points[0]].area_type
            self.city.collection_rounds[rid] = CollectionRound(
                id=rid,
                district=self.name,
                area_type=area_t,
                times_local=ROUND_TIMES[area_name],
                point_ids=sorted(points),
            )

    # -- construction sites and muck -----------------------------------------------------
    def sites(self) -> None:
        d, rng = self.code, self.rng
        inner_spots = [(x, y) for x in STREETS[2:6] for y in STREETS[3:6]]
        outer_spots = [(x, RING_LO) for x in STREETS[2:7]] + [(RING_HI, y) for y in STREETS[1:6]]
        n_inner = rng.randint(1, 2)
        n_outer = rng.randint(2, 3)
        chosen = [(p, True) for p in rng.sample(inner_spots, n_inner)]
        chosen += [(p, False) for p in rng.sample(outer_spots, n_outer)]
        for n, ((sx, sy), inner) in enumerate(chosen, start=1):
            sid = f"site-{d}-{n:02d}"
            sensor_ids = []
            corners = [(-60.0, -60.0), (60.0, 60.0), (-60.0, 60.0), (60.0, -60.0)]
            for k in range(rng.randint(2, 4)):
                dev_id = f"dust-{d}-s{n:02d}-{k + 1}"
                lat, lon = self.ll((sx + corners[k][0], sy + corners[k][1]))
                self.city.devices[dev_id] = Device(
                    id=dev_id,
                    family="dust",
                    district=self.name,
                    interval_s=DEFAULT_INTERVALS_S["dust"],
                    payload_format=_pick_format(
                        rng, {"chirpstack_v4": 0.5, "senml": 0.25, "json_native": 0.25}
                    ),
                    lat=lat,
                    lon=lon,
                    site_id=sid,
                )
                sensor_ids.append(dev_id)
            lat, lon = self.ll((sx, sy))
            self.city.sites[sid] = ConstructionSite(
                id=sid,
                district=self.name,
                area=self.poly(_square(sx, sy, 75)),
                lat=lat,
                lon=lon,
                sensor_ids=sensor_ids,
                inside_no_haul_zone=inner,
            )
            route = self._route(
                f"route-{d}-muck-{n:02d}", "muck", self._muck_path((sx, sy), inner), sid, inner
            )
            self._vehicle("muck", n, route, "muck_inner" if inner else "muck_outer")

    @staticmethod
    def _muck_path(site: XY, inner: bool) -> list[XY]:
        """Depot -> site -> disposal -> depot, clockwise round the ring (spoke if inner)."""
        sx, sy = site
        lo, hi = RING_LO, RING_HI
        if inner:
            head = [(lo, lo), (sx, lo), (sx, sy), (sx, lo), (hi, lo)]
        elif sy == lo:
            head = [(lo, lo), (sx, lo), (hi, lo)]
        else:
            head = [(lo, lo), (hi, lo), (hi, sy)]
        return [*head, (hi, hi), (lo, hi), (lo, lo)]


def district_names(scale: int, city: CitySettings) -> list[str]:
    """The first districts take the settings' names, the rest ``d004``, ``d005``..."""
    names = list(city.districts[:scale])
    names += [f"d{i:03d}" for i in range(len(names) + 1, scale + 1)]
    return names


def generate_city(seed: int, scale: int, city: CitySettings) -> CityModel:
    """Build the model; the same (seed, scale, city) always yields the same JSON."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    model = CityModel(
        name=city.name,
        seed=seed,
        scale=scale,
        latitude=city.latitude,
        longitude=city.longitude,
        # Fixed offset from the longitude: no tz database needed, right for most cities.
        utc_offset_minutes=round(city.longitude / 15.0) * 60,
    )
    cols = math.ceil(math.sqrt(scale))
    rows = math.ceil(scale / cols)
    for i, name in enumerate(district_names(scale, city)):
        col, row = i % cols, i // cols
        origin = (col * SIZE_M - cols * SIZE_M / 2, row * SIZE_M - rows * SIZE_M / 2)
        rng = random.Random(f"citywatch-city:{seed}:{i}")
        _DistrictBuilder(model, rng, name, f"{name[0]}{i + 1:02d}", origin).build()
    return model
