"""Raise ``lamp_degradation`` when a lamp's power draw drifts away from its own baseline.

- ``lamp_degradation``: power draw >= 20 % away from the lamp's own baseline at the same
  dimming level for >= 3 readings. The baseline is the median of the lamp's first 12 lit
  readings at that level, then a slow EWMA fed only by readings within 5 % of it and clamped
  to +-5 % of its start, so slow ageing cannot drag it along. Until a level has its own
  baseline, another level's, scaled by the level ratio, stands in.

The baselines and each lamp's streak are checkpointed (``learnt``): a restarted processor
judges a lamp against them at once, skips the replayed readings its streak has judged, and
clears or repeats an episode on the reading the previous run would have. A baseline learnt
afresh (no checkpoint) may be the degraded draw itself, so against one of those a new rule
says nothing of an episode it did not raise.

Example:
    >>> from processors.rules.solar import NS, LocalClock, SolarSchedule
    >>> from processors.rules.streetlight.schedule import LampSchedule
    >>> sched = LampSchedule(SolarSchedule(31.23, 121.47, 1200), LocalClock("Asia/Shanghai"))
    >>> rule = LampDegradation(sched)
    >>> out = []
    >>> night = 1717243200 * NS + 2 * 3600 * NS  # 22:00 local, well after sunset
    >>> for i, watts in enumerate([100.0] * 12 + [70.0] * 3):  # 12 to learn, then 30 % low
    ...     rule.on_reading({"device_id": "lamp-1", "family": "streetlight", "district": "c",
    ...                      "ts": night + i * 300 * NS, "power_w": watts}, out)
    >>> [(c.kind, c.active, c.message) for c in out]
    [('lamp_degradation', True, 'power 70.0 W is -30% off its baseline 100.0 W at 100%')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import Streak
from processors.rules.streetlight.base import LampRule, common_kwargs
from processors.rules.streetlight.schedule import MIN_JUDGED_LEVEL_PCT, LampSchedule, schedule_for


class _Baseline:
    __slots__ = ("base", "samples", "start")

    def __init__(self) -> None:
        self.samples: list[float] | None = []
        self.start = 0.0
        self.base = 0.0


class LampDegradation(LampRule):
    """Power draw away from the lamp's own learnt baseline at the same dimming level."""

    name: ClassVar[str] = "lamp_degradation"
    kind: ClassVar[str] = "lamp_degradation"
    description: ClassVar[str] = "power >= 20% off the lamp's baseline at its level, >= 3 readings"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True

    def __init__(
        self,
        schedule: LampSchedule,
        cfg: StreetlightRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg or StreetlightRulesConfig(), hold_s, repeat_s)
        self.schedule = schedule
        self.p = self._params(self.cfg.degradation_readings, self.cfg.degradation_readings)
        self.baselines: dict[str, dict[int, _Baseline]] = {}
        self.prior: set[str] = set()  # lamps whose baselines came from a checkpoint
        lo, hi = self.cfg.voltage_band_v
        self.v_lo, self.v_hi = lo, hi

    def _level(self, rec: Record, dev: str) -> float | None:
        lvl = rec.get("dimming_pct")
        if lvl is not None:
            return float(lvl)
        if rec.get("power_state") == "on":
            return 100.0
        exp = self._expected(rec, dev, rec["ts"])
        return exp if exp is not None and exp > 0.0 else None

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        p = rec.get("power_w")
        c = self.cfg
        if p is None or p < c.lit_min_w:
            return  # dark lamps are lamp_out's business
        v = rec.get("voltage_v")
        if v is not None and not self.v_lo <= v <= self.v_hi:
            return  # supply trouble changes the draw; not the lamp's fault
        dev = rec["device_id"]
        lvl = self._level(rec, dev)
        if lvl is None or lvl < MIN_JUDGED_LEVEL_PCT:
            return
        bucket = round(lvl / 5.0) * 5
        per = self.baselines.get(dev)
        if per is None:
            per = self.baselines[dev] = {}
        b = per.get(bucket)
        if b is None:
            b = per[bucket] = _Baseline()
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        elif rec["ts"] <= st.last_ts:
            return  # a repeat, or a replayed reading its checkpointed streak has judged
        ref = b.base
        if b.samples is not None:
            # This level is still learning; meanwhile judge against another learnt level
            # scaled by the level ratio (power ~ level), and learn only from readings that
            # agree with it, so a lamp degrading right after a dimming step is still seen.
            ref = 0.0
            for lvl_b, ob in per.items():
                if ob.samples is None:
                    ref = ob.base * bucket / lvl_b
                    break
            if ref == 0.0 or abs(p / ref - 1.0) < c.degradation_clear_frac:
                b.samples.append(p)
                if len(b.samples) >= c.baseline_samples:
                    srt = sorted(b.samples)
                    b.start = b.base = srt[len(srt) // 2]
                    b.samples = None
            if ref == 0.0:
                st.last_ts = max(st.last_ts, rec["ts"])
                return
        dev_frac = p / ref - 1.0
        a = abs(dev_frac)
        if a >= c.degradation_frac:
            bad: bool | None = True
        elif a < c.degradation_clear_frac:
            # A fresh state judges an episode it did not raise only against an old baseline.
            bad = False if not st.fresh or dev in self.prior else None
        else:
            bad = True if st.on else None  # between clear and raise levels: as before
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(
                r,
                rec,
                out,
                f"power {p:.1f} W is {dev_frac:+.0%} off its baseline {ref:.1f} W at {bucket}%",
                dev_frac,
            )
        elif a < c.baseline_learn_frac and not st.on and b.samples is None:
            # Learn only from readings close to the baseline, and never further than
            # baseline_max_shift from where it started: slow ageing cannot drag it along.
            nb = b.base + c.baseline_alpha * (p - b.base)
            lim = c.baseline_max_shift * b.start
            b.base = b.start - lim if nb < b.start - lim else min(nb, b.start + lim)

    def learnt(self, device: str) -> Any:
        per = self.baselines.get(device)
        if not per:
            return None
        st = self.state.get(device)
        return {
            "levels": [[lvl, b.start, b.base, b.samples] for lvl, b in per.items()],
            "streak": None if st is None else st.state(),
        }

    def relearn(self, device: str, state: Any) -> None:
        # Before 2026-12-07 the state was the list of levels alone.
        levels, streak = (state, None) if isinstance(state, list) else _parts(state)
        per: dict[int, _Baseline] = {}
        for lvl, start, base, samples in levels:
            if not isinstance(lvl, int) or not isinstance(start, float):
                raise ValueError(f"not a lamp_degradation baseline: {state!r}")
            b = per[lvl] = _Baseline()
            b.start, b.base = start, float(base)
            b.samples = None if samples is None else [float(x) for x in samples]
        if streak is not None:
            st = Streak()
            st.load(streak)
            self.state[device] = st
        self.baselines[device] = per
        if any(b.samples is None for b in per.values()):
            self.prior.add(device)

    def clearing(self, device: str) -> Iterable[tuple[str, str, int]]:
        st = self.state.get(device)
        return () if st is None else st.clearing(self.kind, device)


def _parts(state: Any) -> tuple[Any, Any]:
    if not isinstance(state, dict) or not isinstance(state.get("levels"), list):
        raise ValueError(f"not a lamp_degradation state: {state!r}")
    return state["levels"], state.get("streak")


def build(cfg: RulesConfig, city: Any) -> Rule:
    return LampDegradation(schedule_for(cfg, city), cfg.streetlight, **common_kwargs(cfg))
