"""Raise ``voltage_out_of_band`` when a lamp's supply voltage stays outside the band.

- ``voltage_out_of_band``: voltage outside 198-242 V, >= 2 readings (below 50 V the feeder is
  dead: that is an outage, not a band violation).

Example:
    >>> from processors.rules.solar import NS
    >>> rule = VoltageOutOfBand()
    >>> out = []
    >>> for i, volts in enumerate([230.0, 30.0, 251.0, 252.5]):  # 30 V: dead feeder, not judged
    ...     rule.on_reading({"device_id": "lamp-1", "family": "streetlight", "district": "c",
    ...                      "ts": (1 + i) * 300 * NS, "voltage_v": volts}, out)
    >>> [(c.kind, c.active, c.message) for c in out]
    [('voltage_out_of_band', True, '252.5 V outside 198-242 V')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import Streak
from processors.rules.streetlight.base import LampRule, common_kwargs


class VoltageOutOfBand(LampRule):
    """Supply voltage outside the band for >= 2 consecutive readings."""

    name: ClassVar[str] = "voltage_out_of_band"
    kind: ClassVar[str] = "voltage_out_of_band"
    description: ClassVar[str] = "voltage outside 198-242 V, >= 2 readings"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self,
        cfg: StreetlightRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg or StreetlightRulesConfig(), hold_s, repeat_s)
        self.p = self._params(self.cfg.voltage_readings, self.cfg.voltage_readings)
        self.lo, self.hi = self.cfg.voltage_band_v
        self.no_supply = self.cfg.no_supply_below_v

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("voltage_v")
        if v is None:
            return
        bad = None if v < self.no_supply else not (self.lo <= v <= self.hi)
        dev = rec["device_id"]
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(r, rec, out, f"{v:.1f} V outside {self.lo:.0f}-{self.hi:.0f} V", v)


def build(cfg: RulesConfig, city: Any) -> Rule:
    return VoltageOutOfBand(cfg.streetlight, **common_kwargs(cfg))
