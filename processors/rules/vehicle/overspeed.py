"""Overspeed: reported speed above the vehicle kind's limit for consecutive fixes.

- ``overspeed`` (warning): reported speed above the limit for the vehicle kind (default
  60 km/h) for >= 3 consecutive fixes.

Example:
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> rule, out = Overspeed(LocalProjection(31.23, 121.47)), []
    >>> for i, v in enumerate([70.0, 72.0, 75.0, 40.0]):
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "vehicle_kind": "garbage", "ts": i * 10 * NS, "speed_kmh": v}, out)
    >>> [(c.kind, c.active, c.message) for c in out]
    [('overspeed', True, '75 km/h over the 60 km/h limit')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.geo import LocalProjection, projection_for


class Overspeed(VehicleRule):
    """Reported speed above the kind's limit for consecutive fixes."""

    name: ClassVar[str] = "overspeed"
    kind: ClassVar[str] = "overspeed"
    description: ClassVar[str] = "speed above the limit for the vehicle kind, >= 3 fixes"
    fresh_clears: ClassVar[bool] = True

    def _needs(self) -> tuple[int, int]:
        return self.cfg.overspeed_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.limits = dict(self.cfg.overspeed_kmh)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("speed_kmh")
        limit = self.limits.get(rec.get("vehicle_kind", ""))
        if v is None or limit is None:
            return
        r = self._streak(rec["device_id"]).step(rec["ts"], v > limit, self.p)
        if r:
            self._emit(r, rec, out, f"{v:.0f} km/h over the {limit:.0f} km/h limit", v)


def build(cfg: RulesConfig, city: Any) -> Rule:
    return Overspeed(projection_for(city), **common_kwargs(cfg))
