"""Stuck sensor: the same PM10 value again and again on one device.

- ``stuck_sensor`` (warning): >= 10 identical consecutive PM10 values on one device.

Example:
    >>> from processors.rules.streak import NS
    >>> rule, out = StuckSensor(), []
    >>> for m in range(12):
    ...     rule.on_reading({"device_id": "d-1", "family": "dust", "district": "n",
    ...                      "ts": m * 60 * NS, "pm10_ugm3": 42.0}, out)
    >>> [(c.kind, c.target, c.target_type, c.active, c.message) for c in out[:1]]
    [('stuck_sensor', 'd-1', 'device', True, 'PM10 stuck at 42.0 for 10 readings')]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.base import DustRule, common_kwargs
from processors.rules.streak import NOTHING, Streak


class _Stuck:
    __slots__ = ("n", "streak", "value")

    def __init__(self) -> None:
        self.value = math.nan
        self.n = 0
        self.streak = Streak()


class StuckSensor(DustRule):
    """The same PM10 value again and again: a normally noisy metric gone flat."""

    name: ClassVar[str] = "stuck_sensor"
    kind: ClassVar[str] = "stuck_sensor"
    description: ClassVar[str] = ">= 10 identical consecutive PM10 values"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self, cfg: DustRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, None, hold_s, repeat_s)
        self.devs: dict[str, _Stuck] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.devs.get(dev)
        if st is None:
            st = self.devs[dev] = _Stuck()
        if ts <= st.streak.last_ts:
            return
        moved = v != st.value and not math.isnan(st.value)
        if v == st.value:
            st.n += 1
        else:
            st.value, st.n = v, 1
        bad: bool | None = st.n >= self.cfg.stuck_count
        if not bad and not moved and st.streak.fresh:
            bad = None  # a new state's few equal values may be the end of a long flat run
        r = st.streak.step(ts, bad, self.p)
        if r != NOTHING:
            out.append(
                self._cond(
                    r,
                    dev,
                    "device",
                    ts,
                    rec["district"],
                    f"PM10 stuck at {v} for {st.n} readings",
                    v,
                    "values moving again",
                )
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return StuckSensor(**common_kwargs(cfg))
