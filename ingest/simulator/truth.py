"""Ground truth: the ``Fault`` record and the JSON Lines file of docs/faults.md.

One line per injected fault, in simulated (device) time::

    {"fault_id": "f000123", "kind": "lamp_out", "target": "lamp-c01-c03-007",
     "target_type": "device", "family": "streetlight", "district": "central",
     "start": "2026-11-22T09:31:05Z", "end": "2026-11-22T10:02:40Z"}

``end`` is null when the fault was still active when the simulation stopped. Transport
faults (``malformed``, ``duplicate``, ``out_of_order``, ``clock_skew``) use the same shape
and add ``seq`` / ``reason`` / ``skew_s`` where they apply.

Example:
    >>> f = Fault("f000001", "bin_fire", "bin-c01-0001", "device", "bin", "central", 60.0, 120.0)
    >>> f.mark()
    >>> f.truth(sim_end=100.0)["end"] is None, iso(60.0)
    (True, '1970-01-01T00:01:00Z')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

CONTRACT_KINDS: Final[tuple[str, ...]] = (
    "lamp_out",
    "day_burn",
    "circuit_outage",
    "lamp_degradation",
    "voltage_out_of_band",
    "bin_overflow",
    "bin_fire",
    "bin_knocked_over",
    "gps_jump",
    "illegal_dump",
    "daytime_hauling",
    "corridor_violation",
    "dust_exceedance",
    "night_noise",
    "stuck_sensor",
    "sensor_drift",
    "device_silence",
)
TRANSPORT_KINDS: Final[tuple[str, ...]] = ("malformed", "duplicate", "out_of_order", "clock_skew")


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a ``Z`` (milliseconds only when there are some)."""
    dt = datetime.fromtimestamp(round(ts, 3), UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(slots=True)
class Fault:
    """One fault. ``start``/``end``: the plan (for vehicle kinds, ``start`` is a trigger).

    Behaviours call ``mark()`` when the fault shows in emitted data (planned kinds keep
    their planned times) or ``observe(t, active)`` when the truth is measured from the
    emitted data itself (vehicle kinds). Only faults that showed are written.
    """

    fault_id: str
    kind: str
    target: str
    target_type: str
    family: str
    district: str
    start: float
    end: float
    params: dict[str, Any] = field(default_factory=dict)
    truth_start: float | None = None
    truth_end: float | None = None
    done: bool = False

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def mark(self) -> None:
        if self.truth_start is None:
            self.truth_start, self.truth_end = self.start, self.end

    def observe(self, t: float, active: bool, step: float) -> None:
        """Measured truth: the fault holds (or not) at the fix at ``t`` (``step`` = fix
        interval); the truth spans the first to the last holding fix, plus one step."""
        if active:
            if self.truth_start is None:
                self.truth_start = t
            self.truth_end = t + step

    def truth(self, sim_end: float) -> dict[str, Any]:
        assert self.truth_start is not None
        end = self.truth_end
        out: dict[str, Any] = {
            "fault_id": self.fault_id,
            "kind": self.kind,
            "target": self.target,
            "target_type": self.target_type,
            "family": self.family,
            "district": self.district,
            "start": iso(self.truth_start),
            "end": None if end is None or end > sim_end else iso(end),
        }
        for key in ("seq", "reason", "skew_s"):
            if key in self.params:
                out[key] = self.params[key]
        return out


def write_truth(path: Path, entries: Iterable[dict[str, Any]]) -> int:
    """Write JSON Lines atomically; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as fh:
        for entry in entries:
            fh.write(orjson.dumps(entry) + b"\n")
            n += 1
    tmp.replace(path)
    return n


def read_truth(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                out.append(orjson.loads(line))
    return out
