"""Corridor violation: a muck truck outside its permitted corridor (the buffered route line).

- ``corridor_violation`` (major, muck): >= 3 consecutive good fixes outside the route line
  buffered by 150 m (fixes inside a depot or approved disposal site do not count).

Example:
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> route = shapely.LineString([(121.47, 31.23), (121.49, 31.23)])  # lon/lat, 1.9 km east
    >>> rule, out = CorridorViolation(LocalProjection(31.23, 121.47), {"r1": route}), []
    >>> for i, lat in enumerate([31.2300, 31.2305, 31.2330, 31.2331, 31.2332]):
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "vehicle_kind": "muck", "route_id": "r1", "ts": i * 30 * NS,
    ...                      "lat": lat, "lon": 121.48}, out)
    >>> [(c.kind, c.active, c.severity, c.message) for c in out]
    [('corridor_violation', True, 'major', '356 m off route r1 (corridor 150 m)')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import shapely
from shapely.geometry.base import BaseGeometry

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import EMIT_ON
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.geo import (
    Area,
    Areas,
    LocalProjection,
    model_sites,
    model_vehicle_routes,
    projection_for,
)


class CorridorViolation(VehicleRule):
    """A muck truck outside its permitted corridor (buffered route line)."""

    name: ClassVar[str] = "corridor_violation"
    kind: ClassVar[str] = "corridor_violation"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = ">= 3 consecutive fixes outside the route buffer (150 m)"
    fresh_clears: ClassVar[bool] = True

    def _needs(self) -> tuple[int, int]:
        return self.cfg.corridor_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        routes: Mapping[str, BaseGeometry],
        cfg: VehicleRulesConfig | None = None,
        vehicle_route: Mapping[str, str] | None = None,
        sites: Iterable[BaseGeometry] = (),
        buffers_m: Mapping[str, float] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.lines = {rid: proj.geom(g) for rid, g in routes.items()}
        self.buffers = {rid: (buffers_m or {}).get(rid, self.cfg.corridor_m) for rid in routes}
        self.corridors = {rid: Area(g.buffer(self.buffers[rid])) for rid, g in self.lines.items()}
        self.vehicle_route = dict(vehicle_route or {})
        self.sites = Areas(proj.geom(g) for g in sites)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        dev = rec["device_id"]
        rid: str | None = rec.get("route_id") or self.vehicle_route.get(dev)
        if rid is None:
            return
        corridor = self.corridors.get(rid)
        if corridor is None:
            return
        xy = self._good_fix(rec)
        if xy is None:
            return
        x, y = xy
        bad = not corridor.contains(x, y) and not self.sites.contains(x, y)
        r = self._streak(dev).step(rec["ts"], bad, self.p)
        if r == EMIT_ON:
            d = float(shapely.distance(self.lines[rid], shapely.Point(x, y)))
            self._emit(
                r, rec, out, f"{d:.0f} m off route {rid} (corridor {self.buffers[rid]:.0f} m)", d
            )
        elif r:
            self._emit(r, rec, out, "", off_msg="back in the corridor")


def build(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None or not city.routes:
        return None
    muck = {rid: r for rid, r in city.routes.items() if r.vehicle_kind == "muck"}
    return CorridorViolation(
        projection_for(city),
        {rid: shapely.LineString(r.line.coordinates) for rid, r in muck.items()},
        vehicle_route=model_vehicle_routes(city),
        sites=model_sites(city),
        buffers_m={rid: r.corridor_buffer_m for rid, r in muck.items()},
        **common_kwargs(cfg),
    )
