"""Circuits: which share of each circuit's lamps draw nothing at night, and when that is an outage.

Streetlight readings are keyed by circuit, so one processor sees a whole circuit. A
:class:`CircuitTracker` opens an outage when >= 80 % of a circuit's lamps report zero current
at night within one reporting interval and closes it when fewer than 50 % are dark;
``lamp_out`` and ``circuit_outage`` each keep one. :func:`zero_current` is the per-reading
verdict, :func:`model_circuits` the circuits of the city model.

Example:
    >>> t = CircuitTracker({"c1": ["a", "b", "c"]}, StreetlightRulesConfig())
    >>> [t.update("c1", lamp, 1000 * NS, zero_current({"current_a": 0.0}, 0.05, 1.0))
    ...  for lamp in "abc"]
    [0, 0, 1]
    >>> t.is_open("c1"), t.dark_count("c1")
    (True, (3, 3))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from processors.config import StreetlightRulesConfig
from processors.rules.base import Record
from processors.rules.solar import NS


def zero_current(rec: Record, zero_a: float, zero_w: float) -> bool | None:
    """Does the lamp draw nothing? Current beats power beats the reported state; None when
    nothing says."""
    a = rec.get("current_a")
    if a is not None:
        return bool(a <= zero_a)
    p = rec.get("power_w")
    if p is not None:
        return bool(p <= zero_w)
    s = rec.get("power_state")
    return None if s is None else bool(s == "off")


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


def model_circuits(city: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """circuit -> lamps and circuit -> cabinet from the city model (empty without one)."""
    circuits = getattr(city, "circuits", None) or {}
    return (
        {cid: list(c.lamp_ids) for cid, c in circuits.items()},
        {cid: c.cabinet_id for cid, c in circuits.items()},
    )
