"""Idle too long: the engine running and the vehicle not moving for too long.

- ``idle_too_long`` (info): ignition on and speed < 1 km/h for > 20 min.

Example:
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> rule, out = IdleTooLong(LocalProjection(31.23, 121.47)), []
    >>> for m in range(23):  # a reading a minute, ignition off at the last one
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "ts": m * 60 * NS, "ignition": m < 22, "speed_kmh": 0.0}, out)
    >>> [(c.kind, c.active, c.message) for c in out]
    [('idle_too_long', True, 'idling for 21 min'), ('idle_too_long', False, 'back to normal')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import NS, Streak
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.geo import LocalProjection, projection_for


class _Idle:
    __slots__ = ("since", "streak")

    def __init__(self) -> None:
        self.since: int | None = None
        self.streak = Streak()


class IdleTooLong(VehicleRule):
    """Engine running, not moving, for too long."""

    name: ClassVar[str] = "idle_too_long"
    kind: ClassVar[str] = "idle_too_long"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "ignition on and speed ~0 for > 20 min"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.after_ns = int(self.cfg.idle_after_min * 60 * NS)
        self.max_gap_ns = int(self.cfg.max_gap_s * NS)
        self.idle: dict[str, _Idle] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        ign, v = rec.get("ignition"), rec.get("speed_kmh")
        if ign is None or v is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.idle.get(dev)
        if st is None:
            st = self.idle[dev] = _Idle()
        last = st.streak.last_ts
        if ts <= last:
            return
        bad: bool | None
        if ign and v < self.cfg.idle_kmh:
            if st.since is None or ts - last > self.max_gap_ns:
                st.since = ts
            # A new streak's clock may have started late, after a restart.
            bad = True if ts - st.since > self.after_ns else None if st.streak.fresh else False
        else:
            st.since = None
            bad = False
        r = st.streak.step(ts, bad, self.p)
        if r:
            mins = (ts - st.since) / (60 * NS) if st.since is not None else 0.0
            self._emit(r, rec, out, f"idling for {mins:.0f} min", mins)


def build(cfg: RulesConfig, city: Any) -> Rule:
    return IdleTooLong(projection_for(city), **common_kwargs(cfg))
