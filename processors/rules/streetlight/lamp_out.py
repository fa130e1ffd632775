"""Raise ``lamp_out`` when a lamp stays dark while its schedule says it should be lit.

- ``lamp_out``: dark while it should be lit, >= 2 consecutive readings spanning >= 240 s.
  Held back while much of its circuit is dark (a circuit outage is probably being reported
  lamp by lamp) and suppressed while its circuit has an outage open: one circuit alert,
  not forty lamp alerts.

Example:
    >>> from processors.rules.solar import NS, LocalClock, SolarSchedule
    >>> from processors.rules.streetlight.schedule import LampSchedule
    >>> sched = LampSchedule(SolarSchedule(31.23, 121.47, 1200), LocalClock("Asia/Shanghai"))
    >>> rule = LampOut(sched)
    >>> out = []
    >>> night = 1717243200 * NS + 2 * 3600 * NS  # 22:00 local, well after sunset
    >>> for i in range(2):
    ...     rule.on_reading({"device_id": "lamp-1", "family": "streetlight", "district": "c",
    ...                      "ts": night + i * 300 * NS, "power_w": 0.0}, out)
    >>> [(c.kind, c.active) for c in out]
    [('lamp_out', True)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import Streak
from processors.rules.streetlight.base import LampRule, common_kwargs
from processors.rules.streetlight.circuits import CircuitTracker, model_circuits, zero_current
from processors.rules.streetlight.schedule import LampSchedule, lamp_lit, schedule_for


class LampOut(LampRule):
    """Dark while the schedule says lit (not while its circuit has an outage open)."""

    name: ClassVar[str] = "lamp_out"
    kind: ClassVar[str] = "lamp_out"
    description: ClassVar[str] = "lamp dark while it should be lit, >= 2 readings"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self,
        schedule: LampSchedule,
        cfg: StreetlightRulesConfig | None = None,
        circuits: Mapping[str, Collection[str]] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
        interval_s: float = 300.0,
    ) -> None:
        super().__init__(cfg or StreetlightRulesConfig(), hold_s, repeat_s)
        c = self.cfg
        self.schedule = schedule
        self.tracker = CircuitTracker(circuits, c)
        self.lamp_circuit = {lamp: cid for cid, lamps in (circuits or {}).items() for lamp in lamps}
        # Two readings at least ~one interval apart: a switch event plus the next regular
        # report must not beat the circuit rule to it.
        self.p = self._params(c.out_readings, 1, 0.8 * interval_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        c = self.cfg
        lit = lamp_lit(rec, c.lit_min_w, c.lit_min_a)
        if lit is None:
            return
        dev = rec["device_id"]
        ts = rec["ts"]
        exp = self._expected(rec, dev, ts)
        judged = exp is not None and exp != 0.0
        circuit = rec.get("circuit_id") or self.lamp_circuit.get(dev)
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        if circuit is not None:
            zero = zero_current(rec, c.circuit_zero_a, c.circuit_zero_w) if judged else None
            self.tracker.update(circuit, dev, ts, zero)
            if self.tracker.is_open(circuit):
                if st.on and ts > st.last_ts:
                    st.last_ts = ts
                    r = st.force_off(ts)
                else:
                    r = st.step(ts, None, self.p)
                if r:
                    self._emit(r, rec, out, "", off_msg=f"covered by circuit_outage on {circuit}")
                return
            if judged and not lit and self.tracker.holding(circuit, ts):
                judged = False
        r = st.step(ts, (not lit) if judged else None, self.p)
        if r:
            self._emit(
                r, rec, out, f"dark while it should be lit ({st.n} readings)", rec.get("power_w")
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    circuits, _ = model_circuits(city)
    return LampOut(
        schedule_for(cfg, city),
        cfg.streetlight,
        circuits or None,
        interval_s=cfg.expected_interval_s.get("streetlight", 300.0),
        **common_kwargs(cfg),
    )
