"""Raise ``day_burn`` when a lamp is lit while its schedule says it should be dark.

- ``day_burn``: lit while the schedule says dark, >= 2 readings; suggests switching it off.

Example:
    >>> from processors.rules.solar import NS, LocalClock, SolarSchedule
    >>> from processors.rules.streetlight.schedule import LampSchedule
    >>> sched = LampSchedule(SolarSchedule(31.23, 121.47, 1200), LocalClock("Asia/Shanghai"))
    >>> rule = DayBurn(sched)
    >>> out = []
    >>> noon = 1717243200 * NS - 8 * 3600 * NS  # 12:00 local
    >>> for i in range(2):
    ...     rule.on_reading({"device_id": "lamp-1", "family": "streetlight", "district": "c",
    ...                      "ts": noon + i * 300 * NS, "power_w": 80.0}, out)
    >>> [(c.kind, c.active, c.suggested_command) for c in out]
    [('day_burn', True, 'switch off lamp lamp-1')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import Streak
from processors.rules.streetlight.base import LampRule, common_kwargs
from processors.rules.streetlight.schedule import LampSchedule, lamp_lit, schedule_for


class DayBurn(LampRule):
    """Lit while the schedule says dark (by day, or switched off by its dimming profile)."""

    name: ClassVar[str] = "day_burn"
    kind: ClassVar[str] = "day_burn"
    description: ClassVar[str] = "lamp lit while it should be dark, >= 2 readings"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self,
        schedule: LampSchedule,
        cfg: StreetlightRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
        interval_s: float = 300.0,
    ) -> None:
        super().__init__(cfg or StreetlightRulesConfig(), hold_s, repeat_s)
        self.schedule = schedule
        self.p = self._params(self.cfg.out_readings, 1, 0.8 * interval_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        c = self.cfg
        lit = lamp_lit(rec, c.lit_min_w, c.lit_min_a)
        if lit is None:
            return
        dev = rec["device_id"]
        exp = self._expected(rec, dev, rec["ts"])
        bad = None if exp is None else (lit and exp == 0.0)
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(
                r,
                rec,
                out,
                "lit while it should be dark",
                rec.get("power_w"),
                command=f"switch off lamp {dev}",
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return DayBurn(
        schedule_for(cfg, city),
        cfg.streetlight,
        interval_s=cfg.expected_interval_s.get("streetlight", 300.0),
        **common_kwargs(cfg),
    )
