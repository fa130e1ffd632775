"""The processors' event-time clock: how far one batch of a partition got (``progress``).

The app keeps each partition's progress and ticks the time-based rules (silence, trips) with
the least of them (processors.app ``Processor.watermark``); ``processors.evaluate.restarts``
ticks its in-memory runs the same way.
"""

from __future__ import annotations

from typing import Any


def progress(recs: list[dict[str, Any]]) -> tuple[int, int]:
    """How far a partition's event time got in one batch: (lower quartile, robust front).

    The lower quartile of ts is the clock while records flow: one device whose clock runs
    minutes ahead would otherwise drag the clock forward and make every 10-second vehicle on
    the partition look silent; on a steady stream it lags the true front by a fraction of a
    batch. The front (ts with the newest 1 %, at least 3, left out, so such a device is still
    ignored) is the clock once the partition has gone quiet.

    Example:
        >>> progress([{"ts": t} for t in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10**9)])
        (3, 7)
    """
    if not recs:
        return 0, 0
    ts = sorted(r["ts"] for r in recs)
    n = len(ts)
    return int(ts[n // 4]), int(ts[n - 1 - min(n - 1, max(3, n // 100))])
