"""Alert events already on ``citywatch.alerts``, so a replay does not publish them again.

After a crash or a rebalance, a processor replays readings from the last committed offset and
raises the same alert events (same alert id, state and time) it, or the partitions' previous
owner, had already published before the commit. Each event carries the processors' consumer
group in a ``group`` header and only the group's own events count: another deployment (or a
second demo replaying the same simulated day) raising identical events is not a replay.
Consumers dedupe on that key, but crews'
tools and the fault matrix should see each event once: before consuming readings, and on
every assignment, the processor reads the recent tail of the alerts topic (``since_s``) into
a bounded set and skips events found there.

Example:
    >>> seen = PublishedAlerts(max_keys=2)
    >>> seen.add(("a1", "raised", 10)); seen.add(("a2", "raised", 11))
    >>> ("a1", "raised", 10) in seen, ("a1", "cleared", 12) in seen
    (True, False)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from citywatch.settings import Settings

log = logging.getLogger(__name__)
Key = tuple[str, str, int]
GROUP_HEADER = "group"  # on every alert event: the processors' consumer group that raised it


class PublishedAlerts:
    """A bounded, insertion-ordered set of (alert id, state, ts) keys."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._keys: dict[Key, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Key) -> None:
        self._keys[key] = None
        if len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]  # the oldest

    async def load(self, s: Settings, group: str, since_s: float, timeout_s: float = 20.0) -> int:
        """Read ``group``'s events on the alerts topic from ``since_s`` ago to its current
        end; returns how many were read. A Kafka problem only costs the dedupe, so it is
        logged, not raised."""
        c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False, group_id=None)
        n = 0
        try:
            await c.start()
            topic = s.kafka.alerts_topic
            tps = await topic_partitions(c, topic)
            if not tps:
                return 0
            c.assign(tps)
            ends = await c.end_offsets(tps)
            since_ms = int((time.time() - since_s) * 1000)
            found = await c.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                at = found.get(tp)
                c.seek(tp, at.offset if at is not None else ends[tp])

            mine = group.encode()

            def take(m: Any) -> None:
                nonlocal n
                if dict(m.headers or ()).get(GROUP_HEADER) == mine:
                    n += self._take(m.value)

            await read_to_end(c, take, timeout_s)
        except Exception as exc:
            log.warning("published alerts not loaded (%r): a replay may re-send some", exc)
        finally:
            await c.stop()
        return n

    def _take(self, value: bytes) -> int:
        try:
            ev: Any = orjson.loads(value)
            self.add((str(ev["alert_id"]), str(ev["state"]), int(ev["ts"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0
        return 1
