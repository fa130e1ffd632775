"""Route coverage for trip summaries: a route line as sample points, and which are near a fix.

Route coverage is the share of the route line (sampled every 25 m) within 50 m of some good
fix, judged per 10 m cell (:class:`RouteSampler`).

Example:
    >>> s = RouteSampler(shapely.LineString([(0, 0), (1000, 0)]))  # local metres
    >>> s.n, s.near(0.0, 0.0), len(s.near(500.0, 10.0)), s.near(500.0, 200.0)
    (41, (0, 1, 2), 4, ())
"""

from __future__ import annotations

import shapely
from shapely.geometry.base import BaseGeometry

_NONE: tuple[int, ...] = ()


class RouteSampler:
    """A route line (local metres) as points every ``radius_m / 2``; which are near a fix.

    Answers are per cell of ``radius_m / 5`` (judged from the cell's centre, so up to 7 m
    off for a 50 m radius) and remembered: a truck on its daily round asks about the same
    cells every day, so after the first round a fix costs one dict lookup.
    """

    __slots__ = ("buckets", "cell", "memo", "n", "r2", "radius", "xs", "ys")

    def __init__(self, line_xy: BaseGeometry, radius_m: float = 50.0) -> None:
        step = radius_m / 2.0
        n = max(2, int(line_xy.length // step) + 1)
        pts = shapely.line_interpolate_point(line_xy, [i * step for i in range(n)])
        coords = shapely.get_coordinates(pts)
        self.xs = [float(c[0]) for c in coords]
        self.ys = [float(c[1]) for c in coords]
        self.n = n
        self.radius = radius_m
        self.r2 = radius_m * radius_m
        self.cell = radius_m / 5.0
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, (x, y) in enumerate(zip(self.xs, self.ys, strict=True)):
            key = (int(x // radius_m), int(y // radius_m))
            self.buckets.setdefault(key, []).append(i)
        self.memo: dict[int, tuple[int, ...]] = {}

    def near(self, x: float, y: float) -> tuple[int, ...]:
        """Indices of the sample points within the radius of (x, y)'s cell centre."""
        ix, iy = int(x // self.cell), int(y // self.cell)
        key = ix * 4_194_304 + iy  # cells of 10 m: +-20,000 km fit, and ints hash fast
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        if len(self.memo) > 500_000:
            self.memo.clear()
        mx, my = (ix + 0.5) * self.cell, (iy + 0.5) * self.cell
        cx, cy = int(mx // self.radius), int(my // self.radius)
        found: list[int] = []
        xs, ys, r2 = self.xs, self.ys, self.r2
        for i in (cx - 1, cx, cx + 1):
            for j in (cy - 1, cy, cy + 1):
                for k in self.buckets.get((i, j), ()):
                    dx, dy = xs[k] - mx, ys[k] - my
                    if dx * dx + dy * dy <= r2:
                        found.append(k)
        hit = self.memo[key] = tuple(found) if found else _NONE
        return hit
