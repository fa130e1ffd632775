"""The base of the vehicle rules: one streak and one fix filter per rule, and factory kwargs.

:class:`VehicleRule` holds the city projection, the rules file's ``vehicle`` section, its own
:class:`~processors.rules.vehicle.fixes.FixFilter` and one :class:`Streak` per vehicle; a rule
says how many readings in a row raise and clear it (``_needs``). :func:`common_kwargs` is what
every factory passes on from the rules config.

Example:
    >>> from processors.config import RulesConfig
    >>> kw = common_kwargs(RulesConfig())
    >>> kw["cfg"].jump_kmh, kw["hold_s"], kw["repeat_s"]
    (200.0, 600.0, 60.0)
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Record
from processors.rules.streak import NS, DeviceRule, Streak, StreakParams
from processors.rules.vehicle.fixes import OK, FixFilter
from processors.rules.vehicle.geo import LocalProjection


class VehicleRule(DeviceRule):
    families: ClassVar[tuple[str, ...]] = ("vehicle",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"
    muck_only: ClassVar[bool] = False

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        self.proj = proj
        self.cfg = c = cfg or VehicleRulesConfig()
        self.filter = FixFilter(c.jump_kmh, c.jump_min_m)
        self.state: dict[str, Streak] = {}
        self.hold_ns = int(hold_s * NS)
        self.repeat_ns = int(repeat_s * NS)
        self.p = self._params(*self._needs())

    def _needs(self) -> tuple[int, int]:
        """Readings in a row to raise, and to clear; one each unless a rule says otherwise."""
        return 1, 1

    def _params(self, need: int, clear_need: int) -> StreakParams:
        return StreakParams(
            need,
            clear_need,
            self.hold_ns,
            self.repeat_ns,
            int(self.cfg.max_gap_s * NS),
            fresh_clears=self.fresh_clears,
        )

    def _streak(self, dev: str) -> Streak:
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        return st

    def _good_fix(self, rec: Record) -> tuple[float, float] | None:
        """The fix in metres if it is a good one (not a jump, not stale), else None."""
        lat, lon = rec.get("lat"), rec.get("lon")
        if lat is None or lon is None:
            return None
        x, y = self.proj.xy(lat, lon)
        if self.filter.check(rec["device_id"], rec["ts"], x, y) != OK:
            return None
        return x, y

    def _speed(self, rec: Record) -> float:
        v = rec.get("speed_kmh")
        return float(v) if v is not None else self.filter.speed(rec["device_id"])


def common_kwargs(cfg: RulesConfig) -> dict[str, Any]:
    return {"cfg": cfg.vehicle, "hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}
