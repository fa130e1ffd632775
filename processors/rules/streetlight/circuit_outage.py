"""Raise one ``circuit_outage`` alert when most of a circuit's lamps draw nothing at night.

- ``circuit_outage`` (fleet rule; streetlight readings are keyed by circuit, so one processor
  sees a whole circuit): >= 80 % of a circuit's lamps report zero current at night within one
  reporting interval -> one alert, target = circuit id, target_type "circuit"; clears when
  fewer than 50 % are dark.

A new rule (a restarted processor, or one that took the circuit over) does not know whether
the circuit was out before its time. It clears once more than half the circuit's lamps have
been seen lit at night (then fewer than half can be dark, whatever the others do): an episode
the previous run left open ends even if the power came back while no processor ran. Without
a city model the circuit's size is known only after one reporting interval of readings.

Example:
    >>> from processors.rules.solar import NS, LocalClock, SolarSchedule
    >>> from processors.rules.streetlight.schedule import LampSchedule
    >>> sched = LampSchedule(SolarSchedule(31.23, 121.47, 1200), LocalClock("Asia/Shanghai"))
    >>> rule = CircuitOutage(sched, circuits={"c1": ["a", "b", "c"]})
    >>> out = []
    >>> night = 1717243200 * NS + 2 * 3600 * NS  # 22:00 local, well after sunset
    >>> for lamp in ["a", "b", "c"]:
    ...     rule.on_reading({"device_id": lamp, "family": "streetlight", "district": "c",
    ...                      "ts": night, "current_a": 0.0}, out)
    >>> [(c.kind, c.target, c.target_type, c.active, c.message) for c in out]
    [('circuit_outage', 'c1', 'circuit', True, '3 of 3 lamps at zero current at night')]
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from typing import Any, ClassVar

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.solar import NS
from processors.rules.streak import EMIT_OFF, EMIT_ON, NOTHING, Streak, StreakParams
from processors.rules.streetlight.base import Scheduled, common_kwargs
from processors.rules.streetlight.circuits import CircuitTracker, model_circuits, zero_current
from processors.rules.streetlight.schedule import LampSchedule, schedule_for


class CircuitOutage(Rule, Scheduled):
    """Most of a circuit's lamps draw nothing at night at the same time: one circuit alert."""

    name: ClassVar[str] = "circuit_outage"
    families: ClassVar[tuple[str, ...]] = ("streetlight",)
    description: ClassVar[str] = ">= 80% of a circuit's lamps at zero current at night"
    fresh_clears: ClassVar[bool] = True

    def use_overrides(self, overrides: Any) -> None:
        self.overrides = overrides

    def __init__(
        self,
        schedule: LampSchedule,
        cfg: StreetlightRulesConfig | None = None,
        circuits: Mapping[str, Collection[str]] | None = None,
        cabinets: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        self.cfg = c = cfg or StreetlightRulesConfig()
        self.schedule = schedule
        self.tracker = CircuitTracker(circuits, c)
        self.lamp_circuit = {lamp: cid for cid, lamps in (circuits or {}).items() for lamp in lamps}
        self.cabinets = dict(cabinets or {})
        self.state: dict[str, Streak] = {}
        self.p = StreakParams(
            1, 1, int(hold_s * NS), int(repeat_s * NS), fresh_clears=self.fresh_clears
        )
        # Circuits not yet known to be out or back since this rule began: lamps seen lit at
        # night, and the time of the circuit's first reading here.
        self.unsettled: dict[str, tuple[int, set[str]]] = {}
        self.settled: set[str] = set()
        self.window_ns = int(c.circuit_window_s * NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        circuit = rec.get("circuit_id") or self.lamp_circuit.get(dev)
        if circuit is None:
            return
        ts = rec["ts"]
        exp = self._expected(rec, dev, ts)
        c = self.cfg
        zero = (
            zero_current(rec, c.circuit_zero_a, c.circuit_zero_w)
            if exp is not None and exp != 0.0
            else None
        )
        self.tracker.update(circuit, dev, ts, zero)
        st = self.state.get(circuit)
        if st is None:
            if not self.tracker.is_open(circuit) and not self._back(circuit, dev, ts, zero):
                return
            self.unsettled.pop(circuit, None)
            st = self.state[circuit] = Streak()
        r = st.step(ts, self.tracker.is_open(circuit), self.p)
        if r == NOTHING:
            return
        nd, n = self.tracker.dark_count(circuit)
        cab = rec.get("cabinet_id") or self.cabinets.get(circuit)
        where = f" at cabinet {cab}" if cab else ""
        if r == EMIT_ON:
            msg = f"{nd} of {n} lamps at zero current at night"
            cmd: str | None = (
                f"isolate circuit {circuit}{where} and send a crew to check "
                "the feeder (possible cable theft)"
            )
        else:
            msg, cmd = f"circuit back ({nd} of {n} lamps dark)", None
        out.append(
            Condition(
                "circuit_outage",
                circuit,
                "circuit",
                r == EMIT_ON,
                ts,
                "critical",
                "streetlight",
                rec["district"],
                msg,
                float(nd) / n if n else None,
                cmd,
            )
        )
        if r == EMIT_OFF and not st.on and st.off_since is None:
            del self.state[circuit]
            self.settled.add(circuit)

    def _back(self, circuit: str, dev: str, ts: int, zero: bool | None) -> bool:
        """Is a circuit this rule has not judged yet known to have power (see module)?"""
        if zero is None or circuit in self.settled:
            return False
        u = self.unsettled.get(circuit)
        if u is None:
            u = self.unsettled[circuit] = (ts, set())
        first, lit = u
        if zero:
            lit.discard(dev)
            return False
        lit.add(dev)
        _, n = self.tracker.dark_count(circuit)
        if self.tracker.model.get(circuit, 0) == 0 and ts - first < self.window_ns:
            return False  # after one interval every lamp has reported: the size is known
        return len(lit) > (1.0 - self.cfg.circuit_clear_ratio) * n

    def forget(self, devices: Container[str]) -> Collection[str]:
        # Another processor holds these lamps' partition now: if it comes back here, what
        # this rule knew of their circuits is stale, and the circuits are new again.
        gone = [
            cid
            for cid, circ in self.tracker.circuits.items()
            if any(lamp in devices for lamp in circ.seen)
        ]
        for cid in gone:
            del self.tracker.circuits[cid]
            self.state.pop(cid, None)
            self.unsettled.pop(cid, None)
            self.settled.discard(cid)
        return gone


def build(cfg: RulesConfig, city: Any) -> Rule:
    circuits, cabinets = model_circuits(city)
    return CircuitOutage(
        schedule_for(cfg, city), cfg.streetlight, circuits or None, cabinets, **common_kwargs(cfg)
    )
