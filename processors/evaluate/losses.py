"""Loss ledger (pure): readings the simulator's ledger says Mosquitto acknowledged vs the
distinct (device_id, seq) a stage (Kafka, InfluxDB) holds, listing the first 20 missing ids.

Example:
    >>> from ingest.simulator.ledger import RangeSet
    >>> acked = {"bin-1": RangeSet([[1, 5]])}
    >>> c = compare("influxdb", acked, {"bin-1": RangeSet([[1, 3]])})
    >>> (c.present, c.missing, c.first_missing)
    (3, 2, ['bin-1#4', 'bin-1#5'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ingest.simulator.ledger import RangeSet
from processors.evaluate.scorecard import MISSING_LISTED


@dataclass
class StageCount:
    stage: str
    present: int
    missing: int
    first_missing: list[str]
    extra: int  # readings of the ledger's devices that it does not know (other runs, bugs)


def compare(stage: str, acked: Mapping[str, RangeSet], found: Mapping[str, RangeSet]) -> StageCount:
    """How many acked readings a stage holds, which are missing (first 20), how many extra.

    Only the ledger's devices count as extra: other devices' readings belong to other
    producers (tests, other simulations) sharing the topic."""
    present = missing = extra = 0
    first: list[str] = []
    for device in sorted(acked):
        mine = acked[device]
        theirs = found.get(device) or RangeSet()
        n = mine.count_in(theirs)
        present += n
        lost = len(mine) - n
        missing += lost
        if lost and len(first) < MISSING_LISTED:
            first += [
                f"{device}#{s}" for s in mine.missing_from(theirs, MISSING_LISTED - len(first))
            ]
    for device, theirs in found.items():
        ours = acked.get(device)
        if ours is not None:
            extra += len(theirs) - theirs.count_in(ours)
    return StageCount(stage, present, missing, first, extra)
