"""Streetlight rules: lamp_out, day_burn, lamp_degradation, voltage_out_of_band, circuit_outage.

What a lamp *should* do comes from :class:`LampSchedule`: lit from sunset to sunrise (astral,
for the city's lat/lon) at the level of the lamp's dimming profile (local time), dark by day;
within a grace around sunrise/sunset (and around a profile's switch times) nothing is judged.
Whether a lamp *is* lit comes from its power draw when reported (a lamp that says "on" but
draws nothing is out), else its current, else its ``power_state``.

- ``lamp_out``: dark while it should be lit, >= 2 consecutive readings spanning >= 240 s.
  Held back while much of its circuit is dark (a circuit outage is probably being reported
  lamp by lamp) and suppressed while its circuit has an outage open: one circuit alert,
  not forty lamp alerts.
- ``day_burn``: lit while the schedule says dark, >= 2 readings; suggests switching it off.
- ``lamp_degradation``: power draw >= 20 % away from the lamp's own baseline at the same
  dimming level for >= 3 readings. The baseline is the median of the lamp's first 12 lit
  readings at that level, then a slow EWMA fed only by readings within 5 % of it and clamped
  to +-5 % of its start, so slow ageing cannot drag it along. Until a level has its own
  baseline, another level's, scaled by the level ratio, stands in.
- ``voltage_out_of_band``: voltage outside 198-242 V, >= 2 readings (below 50 V the feeder is
  dead: that is an outage, not a band violation).
- ``circuit_outage`` (fleet rule; streetlight readings are keyed by circuit, so one processor
  sees a whole circuit): >= 80 % of a circuit's lamps report zero current at night within one
  reporting interval -> one alert, target = circuit id, target_type "circuit"; clears when
  fewer than 50 % are dark.

Example:
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

from collections.abc import Collection, Iterable, Mapping
from typing import Any, ClassVar

from mypy_extensions import trait

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.overrides import LampOverrides
from processors.rules.solar import (
    DAY,
    NIGHT,
    NS,
    LocalClock,
    SolarSchedule,
    city_location,
    city_timezone,
    parse_hhmm,
    solar_schedule,
)
from processors.rules.streak import EMIT_OFF, EMIT_ON, NOTHING, DeviceRule, Streak, StreakParams

ON_UNKNOWN_LEVEL = -1.0  # expected lit, level uncertain (next to a profile step)
Steps = Iterable[tuple[str | int, str | int, float]]


# --- what a lamp should do ----------------------------------------------------------------


class DimmingProfile:
    """Level (% of full) per local minute while the sun schedule says lit.

    ``steps`` are (start, end, level) in local time, ``"HH:MM"`` or minutes, end exclusive,
    wrapping midnight allowed; minutes not covered are at 100 %, overlapping steps take the
    lowest level. Level 0 means the lamp is switched off (part-night lighting).

    >>> p = DimmingProfile([("23:00", "01:00", 50.0), ("01:00", "05:00", 0.0)], grace_min=5)
    >>> p.levels[0], p.levels[30], p.levels[62], p.levels[120], p.levels[1378], p.levels[400]
    (50.0, 50.0, None, 0.0, -1.0, 100.0)
    """

    __slots__ = ("levels",)

    def __init__(self, steps: Steps, grace_min: int = 5) -> None:
        raw = [100.0] * 1440
        for start, end, level in steps:
            a = start if isinstance(start, int) else parse_hhmm(start)
            b = end if isinstance(end, int) else parse_hhmm(end)
            a, b = a % 1440, b % 1440
            for k in range((b - a) % 1440 or 1440):
                m = (a + k) % 1440
                raw[m] = min(raw[m], float(level))  # overlapping steps: the dimmest wins
        levels: list[float | None] = list(raw)
        # Controllers switch on their own clocks: do not judge right next to a step.
        for m in range(1440):
            prev = raw[m - 1]
            if prev == raw[m]:
                continue
            for k in range(-grace_min, grace_min):
                j = (m + k) % 1440
                on_off = (prev == 0.0) != (raw[m] == 0.0)
                if on_off:
                    levels[j] = None
                elif levels[j] is not None:
                    levels[j] = ON_UNKNOWN_LEVEL
        self.levels = levels


class LampSchedule:
    """Expected level of a lamp at an event time: 0 (dark), > 0 (lit), -1 (lit, level
    uncertain) or None (too close to a switch time to judge).

    ``plans`` maps a lamp to its circuit's (sun schedule with the circuit's switch offsets,
    dimming profile); lamps not listed use ``solar`` and ``default_profile`` (None: 100 %).
    """

    __slots__ = ("_lamp", "_ts", "_val", "clock", "default", "plans")

    def __init__(
        self,
        solar: SolarSchedule,
        clock: LocalClock | None = None,
        plans: Mapping[str, tuple[SolarSchedule, DimmingProfile | None]] | None = None,
        default_profile: DimmingProfile | None = None,
    ) -> None:
        self.clock = clock or LocalClock("UTC")
        self.default = (solar, default_profile)
        self.plans = dict(plans or {})
        self._lamp, self._ts = "", -1
        self._val: float | None = None

    def plan_key(self, lamp: str) -> int:
        """Lamps with the same key share a plan (so an override's end is the same for them)."""
        return id(self.plans.get(lamp, self.default))

    def expected(self, lamp: str, ts: int) -> float | None:
        # Several rules ask about the same reading in a row; answer repeats from a memo.
        if ts == self._ts and lamp == self._lamp:
            return self._val
        solar, prof = self.plans.get(lamp, self.default)
        ph = solar.phase(ts)
        val: float | None
        if ph == DAY:
            val = 0.0
        elif ph != NIGHT:
            val = None
        elif prof is None:
            val = 100.0
        else:
            val = prof.levels[self.clock.minute_of_day(ts)]
        self._lamp, self._ts, self._val = lamp, ts, val
        return val


def lamp_lit(rec: Record, min_w: float, min_a: float) -> bool | None:
    """Is the lamp lit? Measured draw beats the reported state; None when nothing says."""
    p = rec.get("power_w")
    if p is not None:
        return bool(p >= min_w)
    a = rec.get("current_a")
    if a is not None:
        return bool(a >= min_a)
    s = rec.get("power_state")
    if s is not None:
        return bool(s != "off")
    return None


def _zero_current(rec: Record, zero_a: float, zero_w: float) -> bool | None:
    a = rec.get("current_a")
    if a is not None:
        return bool(a <= zero_a)
    p = rec.get("power_w")
    if p is not None:
        return bool(p <= zero_w)
    s = rec.get("power_state")
    return None if s is None else bool(s == "off")


# --- circuits -----------------------------------------------------------------------------


class _Circuit:
    __slots__ = ("dark", "dark_since", "known", "open", "seen")

    def __init__(self, known: int) -> None:
        self.known = known  # lamps on the circuit per the city model (0 = unknown)
        self.seen: dict[str, int] = {}  # lamp -> ts of its latest judged reading
        self.dark: dict[str, int] = {}  # lamp -> ts of its latest zero-current reading
        self.open = False
        self.dark_since: int | None = None  # when >= holdoff share first went dark


class CircuitTracker:
    """Which share of each circuit's lamps draw nothing at night; one per rule that needs it.

    Deterministic in its inputs, so ``lamp_out`` and ``circuit_outage`` each keep their own
    copy and still agree on when an outage is open.
    """

    __slots__ = (
        "circuits",
        "clear_ratio",
        "holdoff_ns",
        "holdoff_ratio",
        "min_lamps",
        "model",
        "ratio",
        "window_ns",
    )

    def __init__(
        self, model: Mapping[str, Collection[str]] | None, cfg: StreetlightRulesConfig
    ) -> None:
        self.model = {c: len(lamps) for c, lamps in (model or {}).items()}
        self.circuits: dict[str, _Circuit] = {}
        self.ratio = cfg.circuit_ratio
        self.clear_ratio = cfg.circuit_clear_ratio
        self.holdoff_ratio = cfg.circuit_holdoff_ratio
        self.window_ns = int(cfg.circuit_window_s * NS)
        self.holdoff_ns = 2 * self.window_ns
        self.min_lamps = cfg.circuit_min_lamps

    def update(self, circuit: str, lamp: str, ts: int, zero: bool | None) -> int:
        """One lamp reading (zero current at night, lit at night, or None = not judged).

        Returns +1 when the outage opens, -1 when it closes, 0 otherwise.
        """
        c = self.circuits.get(circuit)
        if c is None:
            c = self.circuits[circuit] = _Circuit(self.model.get(circuit, 0))
        last = c.seen.get(lamp)
        if last is not None and ts <= last:
            return 0
        c.seen[lamp] = ts
        if zero is None:
            return 0
        if zero:
            c.dark[lamp] = ts
        elif c.dark.pop(lamp, None) is None:
            return 0
        n = max(c.known, len(c.seen))
        nd = len(c.dark)
        if nd >= self.holdoff_ratio * n:
            if c.dark_since is None:
                c.dark_since = ts
        else:
            c.dark_since = None
        if c.open:
            if nd < self.clear_ratio * n:
                c.open = False
                return -1
            return 0
        if n < self.min_lamps or nd < self.ratio * n:
            return 0
        # Rare path (most of a circuit dark): count only lamps dark within one interval.
        fresh = sum(1 for t in c.dark.values() if ts - t <= self.window_ns)
        if fresh >= self.ratio * n:
            c.open = True
            return 1
        return 0

    def is_open(self, circuit: str) -> bool:
        c = self.circuits.get(circuit)
        return c is not None and c.open

    def holding(self, circuit: str, ts: int) -> bool:
        """Much of the circuit went dark recently: a circuit outage may be about to open."""
        c = self.circuits.get(circuit)
        return c is not None and c.dark_since is not None and ts - c.dark_since < self.holdoff_ns

    def dark_count(self, circuit: str) -> tuple[int, int]:
        c = self.circuits.get(circuit)
        if c is None:
            return 0, 0
        return len(c.dark), max(c.known, len(c.seen))


# --- rules --------------------------------------------------------------------------------


# A trait: the lamp rules and the circuit rule have different bases (DeviceRule, Rule), and
# the compiled modules (processors._native) allow multiple inheritance only from traits.
@trait
class _Scheduled:
    """A rule that judges a lamp against what it should do: its schedule, unless an
    operator's command overrides it (``overrides`` is set by the engine)."""

    schedule: LampSchedule
    overrides: LampOverrides | None = None

    def _expected(self, rec: Record, dev: str, ts: int) -> float | None:
        ov = self.overrides
        if ov is not None:
            sch = self.schedule
            level = ov.level(rec, ts, lambda t: sch.expected(dev, t), sch.plan_key(dev))
            if level is not None:
                return level
        return self.schedule.expected(dev, ts)


class _LampRule(DeviceRule, _Scheduled):
    families: ClassVar[tuple[str, ...]] = ("streetlight",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def use_overrides(self, overrides: Any) -> None:
        # Here, not in the trait: the rule base's no-op comes first in this class's MRO.
        self.overrides = overrides

    def __init__(self, cfg: StreetlightRulesConfig, hold_s: float, repeat_s: float) -> None:
        self.cfg = cfg
        self.state: dict[str, Streak] = {}
        self.hold_ns = int(hold_s * NS)
        self.repeat_ns = int(repeat_s * NS)

    def _params(self, need: int, clear_need: int, min_span_s: float = 0.0) -> StreakParams:
        return StreakParams(
            need,
            clear_need,
            self.hold_ns,
            self.repeat_ns,
            int(self.cfg.max_gap_s * NS),
            int(min_span_s * NS),
        )


class LampOut(_LampRule):
    """Dark while the schedule says lit (not while its circuit has an outage open)."""

    name: ClassVar[str] = "lamp_out"
    kind: ClassVar[str] = "lamp_out"
    description: ClassVar[str] = "lamp dark while it should be lit, >= 2 readings"

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
            zero = _zero_current(rec, c.circuit_zero_a, c.circuit_zero_w) if judged else None
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


class DayBurn(_LampRule):
    """Lit while the schedule says dark (by day, or switched off by its dimming profile)."""

    name: ClassVar[str] = "day_burn"
    kind: ClassVar[str] = "day_burn"
    description: ClassVar[str] = "lamp lit while it should be dark, >= 2 readings"

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


class _Baseline:
    __slots__ = ("base", "samples", "start")

    def __init__(self) -> None:
        self.samples: list[float] | None = []
        self.start = 0.0
        self.base = 0.0


class LampDegradation(_LampRule):
    """Power draw away from the lamp's own learnt baseline at the same dimming level."""

    name: ClassVar[str] = "lamp_degradation"
    kind: ClassVar[str] = "lamp_degradation"
    description: ClassVar[str] = "power >= 20% off the lamp's baseline at its level, >= 3 readings"

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
        if lvl is None or lvl < 10.0:
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
            if rec["ts"] > st.last_ts and (
                ref == 0.0 or abs(p / ref - 1.0) < c.degradation_clear_frac
            ):
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
            bad = False
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


class VoltageOutOfBand(_LampRule):
    """Supply voltage outside the band for >= 2 consecutive readings."""

    name: ClassVar[str] = "voltage_out_of_band"
    kind: ClassVar[str] = "voltage_out_of_band"
    description: ClassVar[str] = "voltage outside 198-242 V, >= 2 readings"

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


class CircuitOutage(Rule, _Scheduled):
    """Most of a circuit's lamps draw nothing at night at the same time: one circuit alert."""

    name: ClassVar[str] = "circuit_outage"
    families: ClassVar[tuple[str, ...]] = ("streetlight",)
    description: ClassVar[str] = ">= 80% of a circuit's lamps at zero current at night"

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
        self.p = StreakParams(1, 1, int(hold_s * NS), int(repeat_s * NS))

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        circuit = rec.get("circuit_id") or self.lamp_circuit.get(dev)
        if circuit is None:
            return
        ts = rec["ts"]
        exp = self._expected(rec, dev, ts)
        c = self.cfg
        zero = (
            _zero_current(rec, c.circuit_zero_a, c.circuit_zero_w)
            if exp is not None and exp != 0.0
            else None
        )
        self.tracker.update(circuit, dev, ts, zero)
        st = self.state.get(circuit)
        if st is None:
            if not self.tracker.is_open(circuit):
                return
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


# --- wiring (registry factories) ----------------------------------------------------------


def _model_circuits(city: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """circuit -> lamps and circuit -> cabinet from the city model (empty without one)."""
    circuits = getattr(city, "circuits", None) or {}
    return (
        {cid: list(c.lamp_ids) for cid, c in circuits.items()},
        {cid: c.cabinet_id for cid, c in circuits.items()},
    )


_SCHEDULES: list[tuple[Any, tuple[Any, ...], LampSchedule]] = []


def schedule_for(cfg: RulesConfig, city: Any) -> LampSchedule:
    """Each lamp's plan from its circuit's schedule in the city model (sun-based otherwise).

    A schedule holds no per-engine state (only caches), so the rules built for one city and
    configuration share one: the first rule to ask about a reading computes, the rest hit
    its memo. The cache keeps the city object alive, so its identity stays meaningful.
    """
    c = cfg.streetlight
    key = (c.grace_s, c.profile_grace_s, cfg.timezone, city_location(city))
    for cached_city, cached_key, sched in _SCHEDULES:
        if cached_city is city and cached_key == key:
            return sched
    sched = _build_schedule(cfg, city)
    _SCHEDULES.insert(0, (city, key, sched))
    del _SCHEDULES[4:]
    return sched


def _build_schedule(cfg: RulesConfig, city: Any) -> LampSchedule:
    lat, lon = city_location(city)
    c = cfg.streetlight
    grace = max(c.grace_s, float(getattr(city, "switch_grace_s", 0) or 0))
    grace_min = max(1, int(c.profile_grace_s // 60))
    profiles: dict[tuple[tuple[str, str, float], ...], DimmingProfile] = {}
    plans: dict[str, tuple[SolarSchedule, DimmingProfile | None]] = {}
    for circ in (getattr(city, "circuits", None) or {}).values():
        sch = circ.schedule
        solar = solar_schedule(lat, lon, grace, float(sch.on_offset_s), float(sch.off_offset_s))
        steps = tuple((st.start, st.end, float(st.level_pct)) for st in sch.dimming)
        prof = profiles.get(steps)
        if prof is None:
            prof = profiles[steps] = DimmingProfile(steps, grace_min)
        for lamp in circ.lamp_ids:
            plans[lamp] = (solar, prof)
    return LampSchedule(
        solar_schedule(lat, lon, grace), LocalClock(city_timezone(cfg.timezone, city)), plans
    )


def _common(cfg: RulesConfig) -> dict[str, float]:
    return {"hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}


def build_lamp_out(cfg: RulesConfig, city: Any) -> Rule:
    circuits, _ = _model_circuits(city)
    return LampOut(
        schedule_for(cfg, city),
        cfg.streetlight,
        circuits or None,
        interval_s=cfg.expected_interval_s.get("streetlight", 300.0),
        **_common(cfg),
    )


def build_day_burn(cfg: RulesConfig, city: Any) -> Rule:
    return DayBurn(
        schedule_for(cfg, city),
        cfg.streetlight,
        interval_s=cfg.expected_interval_s.get("streetlight", 300.0),
        **_common(cfg),
    )


def build_lamp_degradation(cfg: RulesConfig, city: Any) -> Rule:
    return LampDegradation(schedule_for(cfg, city), cfg.streetlight, **_common(cfg))


def build_voltage(cfg: RulesConfig, city: Any) -> Rule:
    return VoltageOutOfBand(cfg.streetlight, **_common(cfg))


def build_circuit_outage(cfg: RulesConfig, city: Any) -> Rule:
    circuits, cabinets = _model_circuits(city)
    return CircuitOutage(
        schedule_for(cfg, city), cfg.streetlight, circuits or None, cabinets, **_common(cfg)
    )


__all__ = [
    "CircuitOutage",
    "CircuitTracker",
    "DayBurn",
    "DimmingProfile",
    "LampDegradation",
    "LampOut",
    "LampSchedule",
    "VoltageOutOfBand",
    "lamp_lit",
]
