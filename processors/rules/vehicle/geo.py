"""Geometry for the vehicle rules: local metres, point-in-area, the city model's sites and routes.

Positions are projected once per fix to local metres (equirectangular around the city
centre: a multiply and a subtract; under 0.3 % distance error within 20 km, and routes and
zones are projected the same way, so inside/outside tests are unaffected). Geometry tests use
shapely only for muck trucks, behind a bounding-box test and a per-cell cache (:class:`Area`):
most fixes are answered by one dict lookup.

Example:
    >>> proj = LocalProjection(31.23, 121.47)
    >>> x, y = proj.xy(31.231, 121.471)
    >>> round(x), round(y), round(haversine_m(31.23, 121.47, 31.231, 121.471))
    (95, 111, 146)
    >>> site = Area(proj.geom(shapely.box(121.469, 31.229, 121.4715, 31.2315)))  # lon/lat
    >>> site.contains(x, y), site.contains(300.0, 0.0)
    (True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from processors.rules.solar import city_location

EARTH_M = 6_371_008.8


class LocalProjection:
    """lon/lat -> metres east/north of a centre (equirectangular)."""

    __slots__ = ("kx", "ky", "lat0", "lon0")

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self.ky = EARTH_M * math.pi / 180.0
        self.kx = self.ky * math.cos(math.radians(lat0))

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def geom(self, g: BaseGeometry) -> BaseGeometry:
        """Project a shapely geometry in (lon, lat) order."""
        kx, ky, lon0, lat0 = self.kx, self.ky, self.lon0, self.lat0
        out: BaseGeometry = shapely.transform(g, lambda c: (c - (lon0, lat0)) * (kx, ky))
        return out


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_M * math.asin(min(1.0, math.sqrt(a)))


class Area:
    """Point-in-area for one geometry in local metres, O(1) for most points.

    Cells of ``cell_m`` are classified lazily (wholly inside, wholly outside, on the edge)
    with two prepared-geometry tests, then remembered; only edge cells call shapely per
    point. Trucks revisit the same streets, so the cache stays small and warm.
    """

    __slots__ = ("b0", "b1", "b2", "b3", "cell", "cells", "geom")

    def __init__(self, geom: BaseGeometry, cell_m: float = 25.0) -> None:
        self.geom = geom
        shapely.prepare(geom)
        self.b0, self.b1, self.b2, self.b3 = geom.bounds
        self.cell = cell_m
        self.cells: dict[int, int] = {}

    def contains(self, x: float, y: float) -> bool:
        if x < self.b0 or x > self.b2 or y < self.b1 or y > self.b3:
            return False
        ix, iy = int(x // self.cell), int(y // self.cell)
        key = ix * 4_194_304 + iy  # one int hashes faster than a tuple
        st = self.cells.get(key)
        if st is None:
            if len(self.cells) > 200_000:
                self.cells.clear()
            c = self.cell
            box = shapely.box(ix * c, iy * c, (ix + 1) * c, (iy + 1) * c)
            st = 1 if self.geom.contains(box) else 0 if not self.geom.intersects(box) else 2
            self.cells[key] = st
        if st == 2:
            return bool(shapely.contains_xy(self.geom, x, y))
        return st == 1


class Areas:
    """Any of several areas (depots and approved disposal sites)."""

    __slots__ = ("areas",)

    def __init__(self, geoms: Iterable[BaseGeometry]) -> None:
        self.areas = [Area(g) for g in geoms]

    def contains(self, x: float, y: float) -> bool:
        return any(a.contains(x, y) for a in self.areas)


# --- the city model -----------------------------------------------------------------------


def projection_for(city: Any) -> LocalProjection:
    return LocalProjection(*city_location(city))


def poly(p: Any) -> BaseGeometry:
    return shapely.Polygon(p.coordinates[0])


def model_sites(city: Any) -> list[BaseGeometry]:
    """Approved disposal sites and depots (lon/lat polygons) of the city model."""
    return [poly(s.area) for s in (*city.disposal_sites.values(), *city.depots.values())]


def model_vehicle_routes(city: Any) -> dict[str, str]:
    out = {v.id: v.route_id for v in city.vehicles.values()}
    out.update(
        {d.id: d.route_id for d in city.devices.values() if d.family == "vehicle" and d.route_id}
    )
    return out
