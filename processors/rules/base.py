"""What a rule is: a small synchronous object that turns readings into *conditions*.

A condition says "fault ``kind`` on ``target`` is (or is no longer) present at event time
``ts``". Rules do no I/O and know nothing of alert ids, hysteresis or notification — the
alert manager (processors.alerts) turns conditions into alert events.

Example:
    >>> c = Condition("bin_overflow", "bin-1", "device", True, 0, "warning", "bin", "north",
    ...               "fill 0.95 >= 0.90", value=0.95)
    >>> c.key
    ('bin_overflow', 'bin-1')
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from mypy_extensions import mypyc_attr

Record = dict[str, Any]


@dataclass(slots=True)
class Condition:
    kind: str
    target: str
    target_type: str  # device | circuit | site
    active: bool
    ts: int  # event time, ns
    severity: str  # info | warning | major | critical
    family: str
    district: str
    message: str
    value: float | None = None
    suggested_command: str | None = None
    # Seconds the fault must stay gone before its alert clears; None = the policy's default.
    # A rule whose single "gone" condition is decisive (a silent device reporting again) says 0.
    clear_after_s: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.target)


# Subclassed by code that stays interpreted (plug-in rules and detectors, tests).
@mypyc_attr(allow_interpreted_subclasses=True)
class Rule(ABC):
    """One rule; ``families`` says which readings it sees (empty = all)."""

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # Whether the processor's checkpoints keep something of each device for this rule across
    # restarts (``learnt`` and ``relearn``): what it learns over days (a baseline), or state
    # older than the replay's 15 minutes that a fault depends on (when an overflow began).
    learns: ClassVar[bool] = False
    # Whether a new streak's first good verdicts end an episode the previous run left open
    # (StreakParams.fresh_clears): only where a good verdict needs no history. Off by
    # default, the safe side for a plug-in rule.
    fresh_clears: ClassVar[bool] = False

    @abstractmethod
    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        """Judge one reading (event time ``rec['ts']``, ns); append conditions to ``out``."""

    def on_tick(self, now_ns: int, out: list[Condition]) -> None:
        """Called as event time advances (after each batch): for time-based rules."""
        return None

    def forget(self, devices: Container[str]) -> Collection[str]:
        """Drop what is kept of ``devices``: their partitions went to another processor.
        Returns the fleet targets (circuits, sites) dropped with them, whose open episodes
        the new owner continues too.

        Rules whose clock would judge a device that no longer reports here (the silence rule)
        must; for the others it only frees memory, and stale state is harmless (a new streak
        and the adopted open episodes settle it when the devices come back)."""
        return ()

    def learnt(self, device: str) -> Any:
        """What the rule has learnt of ``device`` (JSON-ready), for the processor's
        checkpoints (processors.checkpoints); None when nothing yet."""
        return None

    def relearn(self, device: str, state: Any) -> None:
        """Take back what ``learnt`` gave, read from a checkpoint after a restart. Raises
        ValueError or TypeError for a state it cannot use (another version, damage)."""
        return None

    def clearing(self, device: str) -> Iterable[tuple[str, str, int]]:
        """(kind, target, event time the fault ended) of each fault whose clear ``device``'s
        relearnt state is holding: the alert manager, which adopts the episode from the
        open-alerts topic without that time, starts its hysteresis there (AlertManager.quiet).
        Only rules that skip the replayed readings their checkpoint holds need it: for the
        others the replay sends the inactive conditions again."""
        return ()

    def use_overrides(self, overrides: Any) -> None:
        """Rules that judge lamps against their schedule take the operators' overrides
        (processors.rules.overrides.LampOverrides) here; others ignore them."""
        return None
