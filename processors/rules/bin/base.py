"""What the bin rules share: the ``BinRule`` base, the overflow verdict, ``HOUR_NS``, and
``learnt_pair`` and ``learnt_ts``, which check what a bin rule keeps in the checkpoints.

A ``BinRule`` that sets ``learns`` keeps, for each bin whose fault is on, the device time of
its last reading in the checkpoints: a restarted processor goes on with the fault
(``Streak.resume``). Without it a bin between the clear and raise levels (fill 0.8-0.9, a
tilt of 30-45 degrees) could not be judged after a restart: its episode stayed open but sent
no repeats, so the alert manager never escalated it.

``overflow_verdict`` judges one reading for ``bin_overflow`` and ``bin_overflow_unserved``:
False when the bin reports ``emptied``, None without a fill, else fill >= 0.9, or >= 0.8 while
already overflowing (the gap keeps a bin hovering at 0.9 from flapping). Between the two, a
rule that does not know whether it was overflowing (``on=None``: new state after a restart)
cannot judge.

Example:
    >>> cfg = BinRulesConfig()
    >>> [overflow_verdict({"fill_ratio": 0.85}, on, cfg) for on in (False, True)]
    [False, True]
    >>> overflow_verdict({"fill_ratio": 0.95, "emptied": True}, True, cfg)
    False
    >>> print(overflow_verdict({}, True, cfg), overflow_verdict({"fill_ratio": 0.85}, None, cfg))
    None None
"""

from __future__ import annotations

from collections.abc import Collection, Container
from typing import Any, ClassVar

from processors.config import BinRulesConfig
from processors.rules.base import Record
from processors.rules.streak import NS, DeviceRule, Streak, StreakParams

HOUR_NS = 3600 * NS


class BinRule(DeviceRule):
    families: ClassVar[tuple[str, ...]] = ("bin",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def __init__(self, cfg: BinRulesConfig | None, hold_s: float, repeat_s: float) -> None:
        self.cfg = cfg or BinRulesConfig()
        self.p = StreakParams(
            1, 1, int(hold_s * NS), int(repeat_s * NS), fresh_clears=self.fresh_clears
        )
        self.state: dict[str, Streak] = {}

    def _streak(self, dev: str) -> Streak:
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        return st

    def learnt(self, device: str) -> Any:
        st = self.state.get(device)
        return st.last_ts if st is not None and st.on else None

    def relearn(self, device: str, state: Any) -> None:
        self._streak(device).resume(learnt_ts(state, f"{self.name} time"))

    def forget(self, devices: Container[str]) -> Collection[str]:
        # Dropped, not kept stale: the partition's next owner may have seen the bin emptied,
        # and its checkpoint then says nothing that would replace an old "on".
        for dev in [d for d in self.state if d in devices]:
            del self.state[dev]
        return ()


def learnt_pair(state: Any, what: str) -> tuple[float, int]:
    """A checkpointed (value, readings learnt from) of a bin rule; ValueError unless one."""
    value, n = state
    if not isinstance(value, float) or not isinstance(n, int) or n < 1:
        raise ValueError(f"not a {what}: {state!r}")
    return value, n


def learnt_ts(state: Any, what: str) -> int:
    """A checkpointed device time (ns) of a bin rule; ValueError unless one."""
    if not isinstance(state, int) or isinstance(state, bool) or state < 0:
        raise ValueError(f"not a {what}: {state!r}")
    return state


def overflow_verdict(rec: Record, on: bool | None, cfg: BinRulesConfig) -> bool | None:
    if rec.get("emptied"):
        return False
    f = rec.get("fill_ratio")
    if f is None:
        return None
    if f >= cfg.overflow_fill:
        return True
    # Once overflowing, it stays so until the fill drops below the clear level.
    if f >= cfg.overflow_clear_fill:
        return on
    return False
