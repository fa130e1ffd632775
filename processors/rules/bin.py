"""Waste-bin rules: overflow, unserved overflow, fast filling, fire and knocked over.

- ``bin_overflow`` (warning): fill_ratio >= 0.9; clears when the bin reports ``emptied`` or
  its fill drops below 0.8 (the gap keeps a bin hovering at 0.9 from flapping).
- ``bin_overflow_unserved`` (major): the same overflow still not emptied 12 h after it
  began. A separate kind rather than the alert manager's escalation, because the manager
  escalates every warning after one fixed time while the service deadline for bins is its
  own number, and crews need "overdue" as a distinct, routable alert. The scorecard matches
  ``bin_overflow`` alone, so the extra kind never counts against it.
- ``bin_fast_fill`` (info): fill rising >= 0.25 per hour over a >= 1 h window and >= 3x
  the bin's own usual rise rate (learnt from its first three windows, then from calm ones).
- ``bin_fire`` (critical): temperature > 60 °C, or > 25 °C above the bin's own baseline (a
  slow EWMA of its temperature, i.e. roughly ambient); clears below 50 °C and 15 °C over
  baseline.
- ``bin_knocked_over`` (warning): tilt >= 45° (one reading); clears below 30°.

Readings older than the last one seen for a bin (duplicates, out-of-order) are ignored.
The unserved check runs on the bin's own readings, so it fires at most one reporting
interval (15 min) after the deadline.

Example:
    >>> rule, out = BinOverflow(), []
    >>> for i, f in enumerate([0.5, 0.93, 0.1]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": i * 900 * NS, "fill_ratio": f}, out)
    >>> [(c.kind, c.active) for c in out]
    [('bin_overflow', True), ('bin_overflow', False)]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import NS, DeviceRule, Streak, StreakParams

HOUR_NS = 3600 * NS


class _BinRule(DeviceRule):
    families: ClassVar[tuple[str, ...]] = ("bin",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def __init__(self, cfg: BinRulesConfig | None, hold_s: float, repeat_s: float) -> None:
        self.cfg = cfg or BinRulesConfig()
        self.p = StreakParams(1, 1, int(hold_s * NS), int(repeat_s * NS))
        self.state: dict[str, Streak] = {}

    def _streak(self, dev: str) -> Streak:
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        return st


def _overflow_verdict(rec: Record, on: bool, cfg: BinRulesConfig) -> bool | None:
    if rec.get("emptied"):
        return False
    f = rec.get("fill_ratio")
    if f is None:
        return None
    # Once overflowing, it stays so until the fill drops below the clear level.
    return f >= cfg.overflow_fill or (on and f >= cfg.overflow_clear_fill)


class BinOverflow(_BinRule):
    """Fill at or above the threshold until emptied."""

    name: ClassVar[str] = "bin_overflow"
    kind: ClassVar[str] = "bin_overflow"
    description: ClassVar[str] = "fill >= 0.9; clears when emptied or below 0.8"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        st = self._streak(rec["device_id"])
        r = st.step(rec["ts"], _overflow_verdict(rec, st.on, self.cfg), self.p)
        if r:
            f = rec.get("fill_ratio")
            self._emit(
                r,
                rec,
                out,
                f"fill {f} >= {self.cfg.overflow_fill}",
                f,
                off_msg="emptied" if rec.get("emptied") else "fill dropped",
            )


class _Unserved:
    __slots__ = ("last_ts", "over", "since", "streak")

    def __init__(self) -> None:
        self.last_ts = -(2**62)
        self.over = False
        self.since = 0
        self.streak = Streak()


class BinOverflowUnserved(_BinRule):
    """An overflow not emptied within ``unserved_after_h`` of its start."""

    name: ClassVar[str] = "bin_overflow_unserved"
    kind: ClassVar[str] = "bin_overflow_unserved"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "overflowing bin not emptied within 12 h"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Unserved] = {}
        self.after_ns = int(self.cfg.unserved_after_h * HOUR_NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        b = self.bins.get(dev)
        if b is None:
            b = self.bins[dev] = _Unserved()
        ts = rec["ts"]
        if ts <= b.last_ts:
            return
        b.last_ts = ts
        v = _overflow_verdict(rec, b.over, self.cfg)
        if v is True and not b.over:
            b.over, b.since = True, ts
        elif v is False:
            b.over = False
        bad = b.over and ts - b.since >= self.after_ns
        r = b.streak.step(ts, bad, self.p)
        if r:
            hours = (ts - b.since) / HOUR_NS
            self._emit(
                r, rec, out, f"overflowing for {hours:.1f} h, not emptied", hours, off_msg="emptied"
            )


class _Fill:
    __slots__ = ("a_fill", "a_ts", "last_ts", "n", "rate", "streak")

    def __init__(self, ts: int, fill: float) -> None:
        self.a_ts, self.a_fill = ts, fill  # start of the current rate window
        self.last_ts = ts
        self.rate = 0.0  # usual rise rate (per hour) of this bin, EWMA over calm windows
        self.n = 0
        self.streak = Streak()


class BinFastFill(_BinRule):
    """Fill rising much faster than usual (a market day, illegal dumping into the bin)."""

    name: ClassVar[str] = "bin_fast_fill"
    kind: ClassVar[str] = "bin_fast_fill"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "fill rising >= 0.25/h and >= 3x the bin's usual rate"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Fill] = {}
        self.window_ns = int(self.cfg.fast_fill_window_s * NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        f = rec.get("fill_ratio")
        if f is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        b = self.bins.get(dev)
        if b is None:
            self.bins[dev] = _Fill(ts, f)
            return
        if ts <= b.last_ts:
            return
        b.last_ts = ts
        c = self.cfg
        if rec.get("emptied") or f < b.a_fill - 0.05:
            b.a_ts, b.a_fill = ts, f  # emptied inside the window: the rate means nothing
            r = b.streak.step(ts, False, self.p)
            if r:
                self._emit(r, rec, out, "")
            return
        dt = ts - b.a_ts
        if dt < self.window_ns:
            r = b.streak.tail(ts, self.p)
            if r:
                self._emit(r, rec, out, "")
            return
        rate = (f - b.a_fill) * HOUR_NS / dt
        b.a_ts, b.a_fill = ts, f
        # Judged only once the bin's usual rate is known: a market bin always fills fast.
        bad = b.n >= 3 and rate >= c.fast_fill_per_h and rate >= c.fast_fill_factor * b.rate
        if not bad and rate >= 0.0:
            b.rate += (rate - b.rate) / min(b.n + 1, 10)  # a mean at first, then an EWMA
            b.n += 1
        r = b.streak.step(ts, bad, self.p)
        if r:
            self._emit(r, rec, out, f"fill rising {rate:.2f}/h (usual {b.rate:.2f}/h)", rate)


class _Temp:
    __slots__ = ("base", "n", "streak")

    def __init__(self) -> None:
        self.base = 0.0
        self.n = 0
        self.streak = Streak()


class BinFire(_BinRule):
    """Hot bin: absolute limit, or a jump over the bin's own (ambient) baseline."""

    name: ClassVar[str] = "bin_fire"
    kind: ClassVar[str] = "bin_fire"
    severity: ClassVar[str] = "critical"
    description: ClassVar[str] = "temperature > 60 C or > 25 C over the bin's baseline"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Temp] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        t = rec.get("temperature_c")
        if t is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        b = self.bins.get(dev)
        if b is None:
            b = self.bins[dev] = _Temp()
        if ts <= b.streak.last_ts:
            return
        c = self.cfg
        learnt = b.n >= c.temp_baseline_readings
        over = t - b.base if learnt else 0.0
        bad: bool | None
        if t > c.fire_c or over > c.fire_rise_c:
            bad = True
        elif t < c.fire_clear_c and over < c.fire_clear_rise_c:
            bad = False
        else:
            bad = True if b.streak.on else None  # hysteresis: still burning
        r = b.streak.step(ts, bad, self.p)
        # Learn ambient only from ordinary readings, so a fire does not become the baseline.
        if bad is False and not b.streak.on and (not learnt or over < c.fire_clear_rise_c):
            b.base = t if b.n == 0 else b.base + c.temp_baseline_alpha * (t - b.base)
            b.n += 1
        if r:
            msg = f"{t:.1f} C" + (
                f" ({over:+.1f} C over baseline {b.base:.1f} C)" if learnt else ""
            )
            self._emit(r, rec, out, msg, t)


class BinKnockedOver(_BinRule):
    """Tilted past the limit."""

    name: ClassVar[str] = "bin_knocked_over"
    kind: ClassVar[str] = "bin_knocked_over"
    description: ClassVar[str] = "tilt >= 45 degrees"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        tilt = rec.get("tilt_deg")
        if tilt is None:
            return
        c = self.cfg
        st = self._streak(rec["device_id"])
        bad = tilt >= c.tilt_deg or (st.on and tilt >= c.tilt_clear_deg)
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(r, rec, out, f"tilt {tilt:.0f} deg", tilt, off_msg="upright again")


# --- wiring (registry factories) ----------------------------------------------------------


def build(cls: type[_BinRule]) -> Any:
    def factory(cfg: RulesConfig, city: Any) -> Rule:
        return cls(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)

    return factory
