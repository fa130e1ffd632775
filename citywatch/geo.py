"""Geometry of the city model in local metres: a grid index of its routes and areas.

``CityModel.geo`` builds a ``GeoIndex`` on first use; ``CityModel.corridor_distance_m``,
``no_haul_zone_at`` and the like ask it. Rings are closed lists of (x, y) metres (first point
repeated last), as ``CityModel.polygon_xy`` returns them.

Example:
    >>> square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0)]
    >>> inside(square, 5.0, 5.0), inside(square, 15.0, 5.0)
    (True, False)
    >>> ring_distance(square, 13.0, 14.0)  # to the corner (10, 10)
    5.0
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    # Type-only: citymodel imports this module, and the index only reads the model passed in.
    from citywatch.citymodel import CityModel, Polygon


class GeoIndex:
    """Routes and areas in local metres with a grid index: pure Python, a few µs a lookup
    (a shapely call costs more than the arithmetic for polygons of a handful of vertices)."""

    CELL_M: Final = 1000.0

    def __init__(self, city: CityModel) -> None:
        self.routes: dict[str, list[tuple[float, float, float, float]]] = {}
        self._points: dict[str, list[tuple[float, float]]] = {}
        self._route_lines: dict[str, Any] | None = None
        for rid, route in city.routes.items():
            pts = self._points[rid] = city.line_xy(route.line)
            self.routes[rid] = [(*a, *b) for a, b in itertools.pairwise(pts)]
        groups: dict[str, Iterable[tuple[str, Polygon]]] = {
            "zone": ((z.id, z.area) for z in city.no_haul_zones.values()),
            "disposal": ((d.id, d.area) for d in city.disposal_sites.values()),
            "depot": ((d.id, d.area) for d in city.depots.values()),
            "site": ((s.id, s.area) for s in city.sites.values()),
        }
        # group -> cell -> [(id, bbox, ring)]
        self.grid: dict[str, dict[tuple[int, int], list[Area]]] = {}
        for name, items in groups.items():
            cells: dict[tuple[int, int], list[Area]] = {}
            for gid, poly in items:
                ring = city.polygon_xy(poly)
                xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                area = (gid, (min(xs), min(ys), max(xs), max(ys)), ring)
                for cx in range(self._cell(min(xs)), self._cell(max(xs)) + 1):
                    for cy in range(self._cell(min(ys)), self._cell(max(ys)) + 1):
                        cells.setdefault((cx, cy), []).append(area)
            self.grid[name] = cells

    @property
    def route_lines(self) -> dict[str, Any]:
        """shapely LineStrings of the routes in local metres (built on first use)."""
        if self._route_lines is None:
            import shapely

            self._route_lines = {rid: shapely.LineString(p) for rid, p in self._points.items()}
        return self._route_lines

    def _cell(self, v: float) -> int:
        return math.floor(v / self.CELL_M)

    def route_distance(self, route_id: str, x: float, y: float) -> float:
        """Metres from (x, y) to the route's polyline."""
        best = math.inf
        for ax, ay, bx, by in self.routes[route_id]:
            dx, dy = bx - ax, by - ay
            seg2 = dx * dx + dy * dy
            f = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / seg2))
            ex, ey = ax + f * dx - x, ay + f * dy - y
            d2 = ex * ex + ey * ey
            if d2 < best:
                best = d2
        return math.sqrt(best)

    def find(self, group: str, xy: tuple[float, float]) -> str | None:
        """The id of the first area of ``group`` containing the point, if any."""
        x, y = xy
        for gid, (x0, y0, x1, y1), ring in self.grid[group].get((self._cell(x), self._cell(y)), ()):
            if x0 <= x <= x1 and y0 <= y <= y1 and inside(ring, x, y):
                return gid
        return None

    def near(self, group: str, xy: tuple[float, float], radius: float) -> bool:
        """Is any area of ``group`` within ``radius`` metres of the point?"""
        x, y = xy
        seen: set[str] = set()
        for cx in range(self._cell(x - radius), self._cell(x + radius) + 1):
            for cy in range(self._cell(y - radius), self._cell(y + radius) + 1):
                for gid, _, ring in self.grid[group].get((cx, cy), ()):
                    if gid in seen:
                        continue
                    seen.add(gid)
                    if inside(ring, x, y) or ring_distance(ring, x, y) <= radius:
                        return True
        return False


Area = tuple[str, tuple[float, float, float, float], list[tuple[float, float]]]


def inside(ring: list[tuple[float, float]], x: float, y: float) -> bool:
    """Ray casting; ``ring`` is closed (first point repeated last)."""
    crossed = False
    for (ax, ay), (bx, by) in itertools.pairwise(ring):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            crossed = not crossed
    return crossed


def ring_distance(ring: list[tuple[float, float]], x: float, y: float) -> float:
    best = math.inf
    for (ax, ay), (bx, by) in itertools.pairwise(ring):
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        f = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / seg2))
        best = min(best, math.hypot(ax + f * dx - x, ay + f * dy - y))
    return best
