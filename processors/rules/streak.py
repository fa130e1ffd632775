"""Per-target fault state shared by the family rules: a streak counter plus emission policy.

A :class:`Streak` turns a sequence of per-reading verdicts (bad / good / not judged) into the
conditions the alert manager needs, with O(1) work per reading:

- it raises after ``need`` consecutive bad readings (optionally spanning at least
  ``min_span_ns`` of event time), and clears after ``clear_need`` consecutive good ones;
- readings older than or equal to the last one judged (duplicates, out-of-order delivery)
  are ignored, and a gap longer than ``max_gap_ns`` restarts the count, so "consecutive"
  always means adjacent in the device's reporting cadence;
- a new streak does not know whether the fault was present before its time (a processor
  restarted, or took the target over from another). With ``fresh_clears`` set, its first
  ``clear_need`` good readings clear as if the fault had just ended, so that an alert episode
  left open by the previous run (processors.open_alerts) ends too; the alert manager ignores
  a clear when nothing is open. Only for rules whose good verdict is evidence by itself: a
  rule that needs history first (a window to fill, a baseline, a duration) says None until it
  has it, else it would end an episode that is still going on.
- while the fault is present it re-emits the active condition at most every ``repeat_ns``
  (the alert manager escalates only when it sees the condition again), and after it is gone
  it keeps emitting the inactive condition for ``hold_ns`` (the manager clears an episode
  only once the condition stayed inactive for its ``clear_after_s``), then goes quiet.

Example:
    >>> s, p = Streak(), StreakParams(need=2, clear_need=1, hold_ns=0, repeat_ns=10**12)
    >>> [s.step(t, bad, p) for t, bad in [(1, True), (1, True), (2, True), (3, False)]]
    [0, 0, 1, -1]
    >>> fresh = StreakParams(hold_ns=10, repeat_ns=10, fresh_clears=True)
    >>> s = Streak()  # its first good reading ends whatever the previous run left open
    >>> [s.step(t, False, fresh) for t in (1, 2, 11, 12)]
    [-1, 0, -1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mypy_extensions import mypyc_attr

from processors.rules.base import Condition, Record, Rule

NS = 1_000_000_000

NOTHING = 0
EMIT_ON = 1
EMIT_OFF = -1


@dataclass(frozen=True, slots=True)
class StreakParams:
    need: int = 1
    clear_need: int = 1
    hold_ns: int = 600 * NS
    repeat_ns: int = 60 * NS
    max_gap_ns: int = 2**62
    min_span_ns: int = 0
    fresh_clears: bool = False


class Streak:
    """The state of one (fault kind, target): a few ints, no per-reading allocation."""

    __slots__ = ("emitted", "fresh", "good", "last_ts", "n", "off_since", "on", "since")

    def __init__(self) -> None:
        self.last_ts = -(2**62)
        self.n = 0  # consecutive bad readings
        self.good = 0  # consecutive good readings
        self.since = 0  # ts of the first bad reading of the current run
        self.on = False
        self.emitted = 0  # ts of the last condition emitted
        self.off_since: int | None = None  # set while the inactive condition is being held
        self.fresh = True  # no verdict of ours has said on or off yet

    def step(self, ts: int, bad: bool | None, p: StreakParams) -> int:
        """Judge one reading; returns EMIT_ON, EMIT_OFF or NOTHING. ``bad=None``: not judged."""
        last = self.last_ts
        if ts <= last:
            return NOTHING
        self.last_ts = ts
        if ts - last > p.max_gap_ns:
            self.n = 0
            self.good = 0
        if bad is None:
            return NOTHING if self.off_since is None else self._hold(ts, p)
        if bad:
            self.good = 0
            n = self.n = self.n + 1
            if n == 1:
                self.since = ts
            if self.on:
                if ts - self.emitted >= p.repeat_ns:
                    self.emitted = ts
                    return EMIT_ON
                return NOTHING
            if n >= p.need and ts - self.since >= p.min_span_ns:
                self.on = True
                self.fresh = False
                self.off_since = None
                self.emitted = ts
                return EMIT_ON
            return NOTHING
        self.n = 0
        if self.on:
            self.good += 1
            return self.force_off(ts) if self.good >= p.clear_need else NOTHING
        if self.fresh and p.fresh_clears:
            self.good += 1
            if self.good < p.clear_need:
                return NOTHING
            # The unknown past is treated as a fault just ended, with one difference: only
            # the first and the last (hold passed) clear go out, not the repeats between. The
            # manager needs no more, and every new target sends these, mostly for nothing.
            self.on = True
            r = self.force_off(ts)
            self.emitted = ts + p.hold_ns
            return r
        return NOTHING if self.off_since is None else self._hold(ts, p)

    def known_on(self) -> bool | None:
        """Whether the fault is on; None while a new streak has not said (fresh_clears): for
        a verdict that keeps the state it had between a raise and a clear level."""
        return True if self.on else None if self.fresh else False

    def resume(self, ts: int) -> None:
        """Go on with a fault that was on at device time ``ts``, the last reading judged
        before a restart (from a checkpoint): readings up to ``ts`` count as judged, the
        next bad one repeats the condition and the next good ones clear it."""
        self.on = True
        self.fresh = False
        self.last_ts = self.emitted = self.since = ts
        self.n = 1
        self.good = 0
        self.off_since = None

    def state(self) -> int | list[Any]:
        """The streak for a checkpoint (JSON-ready): all of it, or only ``last_ts`` while it
        is settled (off, no bad run, no clear being held, not fresh), as most are.

        ``resume`` rebuilds a fault from its time alone; this keeps the counts and the time of
        the last condition too, so a restarted rule clears after the same good reading and
        repeats (escalates) at the same time as it would have without the restart."""
        if not self.on and not self.fresh and self.n == 0 and self.off_since is None:
            return self.last_ts
        return [
            self.last_ts,
            self.n,
            self.good,
            self.since,
            self.on,
            self.emitted,
            self.off_since,
            self.fresh,
        ]

    def load(self, state: Any) -> None:
        """Take back what ``state`` gave; ValueError for anything else."""
        if isinstance(state, int) and not isinstance(state, bool):
            self.last_ts, self.n, self.good, self.since = state, 0, 0, 0
            self.on, self.emitted, self.off_since, self.fresh = False, 0, None, False
            return
        if not isinstance(state, list) or len(state) != 8:
            raise ValueError(f"not a streak: {state!r}")
        last_ts, n, good, since, on, emitted, off_since, fresh = state
        ints = (last_ts, n, good, since, emitted)
        if not all(type(x) is int for x in ints) or type(on) is not bool:
            raise ValueError(f"not a streak: {state!r}")
        if type(fresh) is not bool or not (off_since is None or type(off_since) is int):
            raise ValueError(f"not a streak: {state!r}")
        self.last_ts, self.n, self.good, self.since = last_ts, n, good, since
        self.on, self.emitted, self.off_since, self.fresh = on, emitted, off_since, fresh

    def clearing(self, kind: str, target: str) -> list[tuple[str, str, int]]:
        """[(kind, target, when the fault ended)] while a clear is held, else [] (Rule.clearing)."""
        off = self.off_since
        return [] if off is None or self.on else [(kind, target, off)]

    def force_off(self, ts: int) -> int:
        """End the fault now (e.g. another rule took it over); EMIT_OFF if it was on."""
        self.n = 0
        self.fresh = False
        if not self.on:
            return NOTHING
        self.on = False
        self.off_since = ts
        self.emitted = ts
        return EMIT_OFF

    def _hold(self, ts: int, p: StreakParams) -> int:
        # After a clear, repeat the inactive condition so the manager's hysteresis completes.
        off = self.off_since
        if off is None or self.on:
            return NOTHING
        if ts - off >= p.hold_ns:
            self.off_since = None
            return EMIT_OFF
        if ts - self.emitted >= p.repeat_ns:
            self.emitted = ts
            return EMIT_OFF
        return NOTHING

    def tail(self, ts: int, p: StreakParams) -> int:
        """For rules whose inputs can stop judging a target: keep the clear going."""
        return self._hold(ts, p)


# Subclassed by code that stays interpreted (plug-in rules and detectors, tests).
@mypyc_attr(allow_interpreted_subclasses=True)
class DeviceRule(Rule):
    """A per-device rule with a fixed kind and severity whose streak verdicts become conditions.

    Subclasses set ``kind`` and ``severity`` and call ``_emit`` with a Streak verdict.
    """

    kind: ClassVar[str]
    severity: ClassVar[str]

    def _emit(
        self,
        r: int,
        rec: Record,
        out: list[Condition],
        msg: str,
        value: float | None = None,
        *,
        command: str | None = None,
        off_msg: str = "back to normal",
    ) -> None:
        on = r == EMIT_ON
        out.append(
            Condition(
                self.kind,
                rec["device_id"],
                "device",
                on,
                rec["ts"],
                self.severity,
                rec["family"],
                rec["district"],
                msg if on else off_msg,
                value if on else None,
                command if on else None,
            )
        )
