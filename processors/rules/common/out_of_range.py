"""Raise when a measured value falls outside its plausible range; clear when back in range.

The ranges (per metric) are tighter than the gateway's hard bounds; the first metric out of
its range is reported. A device's readings with none of the ranged metrics are not judged.
Like every streak rule it keeps repeating "back in range" until the alert manager's hold has
passed, so the alert clears, and a restarted processor's first in-range reading of a device
ends an episode its previous run left open.

Example:
    >>> r = OutOfRange({"temperature_c": (-40.0, 70.0)}, hold_s=0)
    >>> out = []
    >>> for i, t in enumerate([95.0, 21.0]):
    ...     r.on_reading({"device_id": "bin-1", "family": "bin", "district": "n", "ts": i,
    ...                   "temperature_c": t}, out)
    >>> for c in out:
    ...     print(c.kind, c.active, c.message)
    out_of_range True temperature_c=95.0 outside [-40.0, 70.0]
    out_of_range False back in range
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import NS, DeviceRule, Streak, StreakParams


class OutOfRange(DeviceRule):
    """A measured value outside its plausible range (tighter than the gateway's hard bounds)."""

    name: ClassVar[str] = "out_of_range"
    kind: ClassVar[str] = "out_of_range"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "value outside the plausible range configured per metric"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self, ranges: dict[str, tuple[float, float]], hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        self.ranges = ranges
        self.p = StreakParams(
            1, 1, int(hold_s * NS), int(repeat_s * NS), fresh_clears=self.fresh_clears
        )
        self.state: dict[str, Streak] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        worst: str | None = None
        judged = False
        for metric, (lo, hi) in self.ranges.items():
            v = rec.get(metric)
            if v is None:
                continue
            judged = True
            if not (lo <= v <= hi):
                worst = f"{metric}={v} outside [{lo}, {hi}]"
                break
        if not judged:
            return
        dev = rec["device_id"]
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        r = st.step(rec["ts"], worst is not None, self.p)
        if r:
            self._emit(r, rec, out, worst or "", off_msg="back in range")


def build(cfg: RulesConfig, city: Any) -> Rule:
    return OutOfRange(cfg.plausible_ranges, cfg.alerts.clear_after_s, cfg.repeat_s)
