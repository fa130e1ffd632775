"""Operator overrides of lamp schedules, from the commands on ``citywatch.commands``.

A lamp an operator switched off at night is dark on purpose: judged against its schedule alone
it would raise ``lamp_out`` (and a circuit switched off, ``circuit_outage``), sending a crew to
a lamp that works. The processor feeds every command record to :meth:`LampOverrides.apply`;
the streetlight rules ask :meth:`LampOverrides.level` before the schedule.

What a command means for the expected level:

- ``switch`` ``on`` -> lit at an unknown level (-1), ``off`` -> dark (0);
- ``dim`` ``level_pct`` -> that level (0 = dark);
- ``schedule``, ``reboot``, ``ping`` -> no override (a new schedule is not modelled yet).

It holds from the command's ``created_at`` for ``duration_s`` when given, otherwise (as the
downlink does) until the lamp's next scheduled switch: the first time after ``created_at``
its schedule changes between lit and dark, searched in 5-minute steps for at most a day. A
command addressed to a device, circuit, cabinet or district covers the lamps whose reading
carries that id; the latest command covering a lamp wins.

Example:
    >>> ov = LampOverrides()
    >>> ov.apply({"kind": "switch", "params": {"state": "off", "duration_s": 3600},
    ...           "target_type": "circuit", "target": "c-1", "created_at": 1000.0})
    True
    >>> rec = {"device_id": "lamp-1", "circuit_id": "c-1", "district": "n"}
    >>> ov.level(rec, 1500 * NS, lambda t: 100.0), ov.level(rec, 5000 * NS, lambda t: 100.0)
    (0.0, None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

NS: Final = 1_000_000_000
_STEP_NS: Final = 300 * NS
_SEARCH_NS: Final = 86_400 * NS
# Which field of a lamp's reading a command's target type names.
_TARGET_FIELD: Final = {
    "device": "device_id",
    "circuit": "circuit_id",
    "cabinet": "cabinet_id",
    "district": "district",
}
ScheduleAt = Callable[[int], float | None]


@dataclass(slots=True)
class Override:
    """One command's effect: expected ``level`` from ``start_ns`` to ``until_ns`` (None: until
    the next scheduled switch, found per lamp plan on first use and memoised)."""

    level: float
    start_ns: int
    until_ns: int | None
    seq: int
    ends: dict[int, int] = field(default_factory=dict)  # id(schedule plan) -> end ns

    def end_for(self, at: ScheduleAt, plan_key: int) -> int:
        if self.until_ns is not None:
            return self.until_ns
        end = self.ends.get(plan_key)
        if end is None:
            end = self.ends[plan_key] = _next_switch(at, self.start_ns)
        return end


def _lit(level: float | None) -> bool | None:
    return None if level is None else level != 0.0


def _next_switch(at: ScheduleAt, start_ns: int) -> int:
    """First step after ``start_ns`` where the schedule's lit/dark state differs from its
    state at the start (grace periods, None, are skipped); start + 1 day if none."""
    t = start_ns
    first = _lit(at(t))
    while t < start_ns + _SEARCH_NS:
        t += _STEP_NS
        now = _lit(at(t))
        if now is None:
            continue
        if first is None:
            first = now
        elif now != first:
            return t
    return start_ns + _SEARCH_NS


def command_level(kind: str, params: Mapping[str, Any]) -> float | None:
    """The expected level a command imposes, or None when it imposes none."""
    if kind == "switch":
        state = params.get("state")
        return -1.0 if state == "on" else 0.0 if state == "off" else None
    if kind == "dim":
        lvl = params.get("level_pct")
        if isinstance(lvl, int | float) and not isinstance(lvl, bool) and 0 <= lvl <= 100:
            return float(lvl)
    return None


class LampOverrides:
    """Active overrides by (target field, target id); see the module docstring."""

    def __init__(self) -> None:
        self._by_target: dict[tuple[str, str], Override] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_target)

    def apply(self, command: Mapping[str, Any]) -> bool:
        """Take one command record; True when it sets an override. Malformed ones are ignored
        (the commands service validated them; this must never stop the processor)."""
        try:
            field_name = _TARGET_FIELD[command["target_type"]]
            target = str(command["target"])
            params = command.get("params") or {}
            level = command_level(str(command["kind"]), params)
            start = int(float(command["created_at"]) * NS)
        except (KeyError, TypeError, ValueError):
            return False
        if level is None:
            return False
        dur = params.get("duration_s")
        until = start + int(dur * NS) if isinstance(dur, int | float) and dur > 0 else None
        self._seq += 1
        key = (field_name, target)
        old = self._by_target.get(key)
        if old is not None and old.start_ns > start:
            return False  # a replayed older command does not undo a newer one
        self._by_target[key] = Override(level, start, until, self._seq)
        return True

    def level(
        self, rec: Mapping[str, Any], ts: int, at: ScheduleAt, plan_key: int = 0
    ) -> float | None:
        """The level an override imposes on this reading's lamp at ``ts``, or None (none:
        judge by the schedule). ``at(t)`` is the lamp's scheduled level at t."""
        if not self._by_target:
            return None
        best: Override | None = None
        for field_name in ("device_id", "circuit_id", "cabinet_id", "district"):
            value = rec.get(field_name)
            if value is None:
                continue
            ov = self._by_target.get((field_name, value))
            if ov is None or ts < ov.start_ns:
                continue
            if best is not None and (ov.start_ns, ov.seq) < (best.start_ns, best.seq):
                continue
            if ts < ov.end_for(at, plan_key):
                best = ov
        return None if best is None else best.level

    def prune(self, now_ns: int) -> None:
        """Forget overrides that ended more than a day before ``now_ns`` (bounded memory)."""
        old = [
            k
            for k, ov in self._by_target.items()
            if (ov.until_ns if ov.until_ns is not None else ov.start_ns + _SEARCH_NS)
            < now_ns - _SEARCH_NS
        ]
        for k in old:
            del self._by_target[k]
