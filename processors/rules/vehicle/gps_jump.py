"""GPS jump: a fix implying an impossible speed is dropped and reported as data quality.

- ``gps_jump`` (info, data quality): a dropped fix; clears with the next good one.

Example:
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> proj = LocalProjection(31.23, 121.47)
    >>> rule, out = GpsJump(proj), []
    >>> fixes = [(31.2300, 121.47), (31.2301, 121.47), (31.2800, 121.47), (31.2302, 121.47)]
    >>> for i, (lat, lon) in enumerate(fixes):
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "ts": i * 10 * NS, "lat": lat, "lon": lon}, out)
    >>> [(c.kind, c.active, c.severity) for c in out][1:]  # [0]: the first fix compared clears
    [('gps_jump', True, 'info'), ('gps_jump', False, 'info')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.fixes import JUMP, STALE
from processors.rules.vehicle.geo import projection_for


class GpsJump(VehicleRule):
    """A fix implying an impossible speed: dropped, reported as a data-quality event."""

    name: ClassVar[str] = "gps_jump"
    kind: ClassVar[str] = "gps_jump"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "implied speed between fixes > 200 km/h"
    fresh_clears: ClassVar[bool] = True

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        lat, lon = rec.get("lat"), rec.get("lon")
        if lat is None or lon is None:
            return
        dev = rec["device_id"]
        x, y = self.proj.xy(lat, lon)
        first = dev not in self.filter.fixes  # nothing to compare it with: no verdict
        v = self.filter.check(dev, rec["ts"], x, y)
        if v == STALE:
            return
        r = self._streak(dev).step(rec["ts"], None if first else v == JUMP, self.p)
        if r:
            speed = self.filter.speed(dev)
            self._emit(
                r,
                rec,
                out,
                f"fix implies {speed:.0f} km/h; dropped",
                speed,
                off_msg="fixes consistent again",
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return GpsJump(projection_for(city), **common_kwargs(cfg))
