"""The ledger: which readings Mosquitto acknowledged, as compact per-device seq ranges.

A reading is identified by (device_id, seq). ``RangeSet`` keeps a device's seqs as sorted,
merged ``[lo, hi]`` ranges (a steady device is one range, whatever its length), so the
ledger of a 100,000-device run stays a few megabytes. The evaluation loads the same
structure from Kafka and InfluxDB and compares.

File (JSON, written next to the truth file as ``<truth stem>.ledger.json``)::

    {"meta": {"seed": 1, "sim_start": "...", "sim_end": "...", "wall_start": 1.7e9, ...},
     "counts": {"messages_published": .., "messages_acked": .., "readings_acked": ..,
                "malformed_acked": .., "duplicates_acked": .., "status_acked": ..},
     "malformed_by_reason": {"crc": 3, ...},
     "acked": {"lamp-c01-c01-001": [[1, 190]], ...}}

Example:
    >>> r = RangeSet()
    >>> for s in (1, 2, 3, 7, 5, 6, 2):
    ...     r.add(s)
    >>> r.ranges, len(r), 4 in r
    ([[1, 3], [5, 7]], 6, False)
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


class RangeSet:
    """A set of non-negative integers stored as merged, sorted inclusive ranges."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: list[list[int]] | None = None) -> None:
        self.ranges: list[list[int]] = [list(r) for r in ranges] if ranges else []

    def add(self, x: int) -> None:
        rs = self.ranges
        if rs:
            last = rs[-1]
            if last[1] + 1 == x:  # the common case: the next seq
                last[1] = x
                return
            if last[0] <= x <= last[1]:
                return
        if not rs or x > rs[-1][1] + 1:
            rs.append([x, x])
            return
        i = bisect.bisect_right(rs, [x, 2**63])
        if i and rs[i - 1][1] >= x:
            return
        if i and rs[i - 1][1] + 1 == x:
            rs[i - 1][1] = x
        elif i < len(rs) and rs[i][0] - 1 == x:
            rs[i][0] = x
        else:
            rs.insert(i, [x, x])
            return
        # Merge a range that now touches its right neighbour.
        j = i - 1 if rs[i - 1][1] == x else i
        if j + 1 < len(rs) and rs[j][1] + 1 >= rs[j + 1][0]:
            rs[j][1] = max(rs[j][1], rs[j + 1][1])
            del rs[j + 1]

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect.bisect_right(self.ranges, [x, 2**63])
        return bool(i) and self.ranges[i - 1][1] >= x

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def missing_from(self, other: RangeSet, limit: int) -> list[int]:
        """Up to ``limit`` members of self that are not in ``other``."""
        out = []
        for x in self:
            if x not in other:
                out.append(x)
                if len(out) >= limit:
                    break
        return out

    def count_in(self, other: RangeSet) -> int:
        """How many members of self are also in ``other`` (range intersection)."""
        n, j, b = 0, 0, other.ranges
        for lo, hi in self.ranges:
            while j < len(b) and b[j][1] < lo:
                j += 1
            k = j
            while k < len(b) and b[k][0] <= hi:
                n += min(hi, b[k][1]) - max(lo, b[k][0]) + 1
                k += 1
        return n


class Ledger:
    """Acked readings per device plus message counters (see the module docstring)."""

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.counts: Counter[str] = Counter()
        self.malformed_by_reason: Counter[str] = Counter()
        self.acked: dict[str, RangeSet] = {}

    def ack(self, readings: tuple[tuple[str, int], ...]) -> None:
        acked = self.acked
        for device, seq in readings:
            rs = acked.get(device)
            if rs is None:
                rs = acked[device] = RangeSet()
            rs.add(seq)

    @property
    def readings_acked(self) -> int:
        return sum(len(r) for r in self.acked.values())

    def to_json(self) -> bytes:
        counts = dict(self.counts)
        counts["readings_acked"] = self.readings_acked
        return orjson.dumps(
            {
                "meta": self.meta,
                "counts": counts,
                "malformed_by_reason": dict(self.malformed_by_reason),
                "acked": {d: r.ranges for d, r in sorted(self.acked.items())},
            }
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        data = orjson.loads(path.read_bytes())
        led = cls(data.get("meta"))
        led.counts.update(data.get("counts", {}))
        led.malformed_by_reason.update(data.get("malformed_by_reason", {}))
        led.acked = {d: RangeSet(r) for d, r in data.get("acked", {}).items()}
        return led


def ledger_path(truth_path: Path) -> Path:
    """``out/truth.jsonl`` -> ``out/truth.ledger.json``."""
    return truth_path.with_name(truth_path.stem + ".ledger.json")
