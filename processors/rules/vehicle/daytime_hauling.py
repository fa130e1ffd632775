"""Daytime hauling: a muck truck driving inside the no-haul zone during the banned hours.

- ``daytime_hauling`` (warning, muck): moving > 5 km/h inside the no-haul zone during the
  banned hours (local time, default 07:00-20:00), >= 3 fixes; stops in between neither
  count nor reset.

Example:
    >>> import shapely
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> zone = shapely.box(121.46, 31.22, 121.48, 31.24)  # lon/lat
    >>> proj, clock = LocalProjection(31.23, 121.47), LocalClock("UTC")
    >>> rule, out = DaytimeHauling(proj, [(zone, None, None)], clock), []
    >>> for i, v in enumerate([30.0, 0.0, 30.0, 30.0]):  # 08:00 UTC, a stop in between
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "vehicle_kind": "muck", "ts": (8 * 3600 + i * 10) * NS,
    ...                      "lat": 31.23, "lon": 121.47, "speed_kmh": v}, out)
    >>> [(c.kind, c.active, c.severity) for c in out]
    [('daytime_hauling', True, 'warning')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from shapely.geometry.base import BaseGeometry

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.solar import LocalClock, city_timezone, in_window, parse_hhmm
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.geo import Area, LocalProjection, poly, projection_for


class DaytimeHauling(VehicleRule):
    """A muck truck driving inside the no-haul zone during the banned hours."""

    name: ClassVar[str] = "daytime_hauling"
    kind: ClassVar[str] = "daytime_hauling"
    description: ClassVar[str] = "moving > 5 km/h in the no-haul zone in banned hours, >= 3 fixes"
    fresh_clears: ClassVar[bool] = True

    def _needs(self) -> tuple[int, int]:
        return self.cfg.haul_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        zones: Iterable[tuple[BaseGeometry, str | None, str | None]],
        clock: LocalClock,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        """``zones``: (area in lon/lat, banned from, banned to); None = the configured hours."""
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.clock = clock
        da, db = self.cfg.banned_hours
        self.zones = [
            (Area(proj.geom(g), 50.0), parse_hhmm(a or da), parse_hhmm(b or db))
            for g, a, b in zones
        ]

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        xy = self._good_fix(rec)
        if xy is None:
            return
        ts = rec["ts"]
        bad: bool | None = False
        m = self.clock.minute_of_day(ts)
        for area, a, b in self.zones:
            if in_window(m, a, b) and area.contains(*xy):
                bad = True if self._speed(rec) > self.cfg.haul_kmh else None
                break
        r = self._streak(rec["device_id"]).step(ts, bad, self.p)
        if r:
            self._emit(
                r,
                rec,
                out,
                "moving in the no-haul zone during banned hours",
                rec.get("speed_kmh"),
                off_msg="outside the zone or the banned hours",
            )


def build(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None or not city.no_haul_zones:
        return None
    zones = [(poly(z.area), z.banned_from, z.banned_to) for z in city.no_haul_zones.values()]
    return DaytimeHauling(
        projection_for(city),
        zones,
        LocalClock(city_timezone(cfg.timezone, city)),
        **common_kwargs(cfg),
    )
