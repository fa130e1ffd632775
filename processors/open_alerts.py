"""Open alert episodes, kept in Kafka so a restarted processor continues them.

An episode's id is ``sha1(target|kind|episode start)``. After a restart or a rebalance the
warm-up replay reaches back 15 minutes; an episode that began before that (a bin overflowing
for three hours, a lamp out since last night) was rebuilt from the replay with a later start,
hence a new id: its ``raised`` was suppressed as warm-up, and its ``escalated`` and ``cleared``
went out under an id no crew had seen, while the crews' alert stayed open for good.

So with every alert event the processor also writes the episode's latest event to the
compacted ``kafka.open_alerts_topic`` (key ``group|kind|target``), and a tombstone when it
clears. On assignment it reads the group's records and hands the open episodes to the alert
manager, which continues one when the next condition for its (kind, target) comes, keeping
its id, start, severity and escalation.

Example:
    >>> ev = {"alert_id": "a1", "kind": "bin_overflow", "target": "bin-1", "state": "raised",
    ...       "severity": "warning", "episode_start": 5, "ts": 5}
    >>> key, ep = episode(orjson.dumps(ev))
    >>> key, ep.alert_id, ep.start, ep.escalated
    (('bin_overflow', 'bin-1'), 'a1', 5, False)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from citywatch.settings import Settings
from processors.alerts import SEVERITIES, AlertEvent, Episode

log = logging.getLogger("citywatch.processor")


def record_key(group: str, kind: str, target: str) -> bytes:
    return f"{group}|{kind}|{target}".encode()


def record(group: str, ev: AlertEvent, encoded: bytes) -> tuple[bytes, bytes | None]:
    """(key, value) of an alert event (``encoded``: its JSON, as on the alerts topic) on the
    open-alerts topic; a tombstone once cleared."""
    return record_key(group, ev.kind, ev.target), None if ev.state == "cleared" else encoded


def episode(value: bytes) -> tuple[tuple[str, str], Episode] | None:
    """The open episode an event describes; None for a cleared or unreadable one."""
    try:
        ev: Any = orjson.loads(value)
        if ev["state"] not in ("raised", "escalated") or ev["severity"] not in SEVERITIES:
            return None
        ep = Episode(
            str(ev["alert_id"]),
            int(ev["episode_start"]),
            str(ev["severity"]),
            int(ev["ts"]),
            escalated=ev["state"] == "escalated",
        )
        return (str(ev["kind"]), str(ev["target"])), ep
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def open_episodes(values: Iterable[bytes | None]) -> dict[tuple[str, str], Episode]:
    """The open episodes among the latest record of each key (a tombstone is None)."""
    found = {}
    for value in values:
        got = episode(value) if value else None
        if got is not None:
            found[got[0]] = got[1]
    return found


async def exists(s: Settings) -> bool:
    """Whether the open-alerts topic is there; logs how to create it when not."""
    c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False, group_id=None)
    try:
        await c.start()
        if await topic_partitions(c, s.kafka.open_alerts_topic):
            return True
    finally:
        await c.stop()
    log.warning(
        "%s is missing (run `citywatch stack topics`): open alert episodes will not be "
        "continued after a restart",
        s.kafka.open_alerts_topic,
    )
    return False


async def load(s: Settings, group: str, timeout_s: float) -> dict[tuple[str, str], Episode]:
    """The group's open episodes, by (kind, target). A Kafka problem is logged, not raised:
    it only costs the continuation of old episodes."""
    found: dict[tuple[str, str], Episode] = {}
    prefix = f"{group}|".encode()
    c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False, group_id=None)
    try:
        await c.start()
        tps = await topic_partitions(c, s.kafka.open_alerts_topic)
        if not tps:
            return found
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        latest: dict[bytes, bytes | None] = {}

        def take(m: Any) -> None:
            if m.key is not None and m.key.startswith(prefix):
                latest[m.key] = m.value  # compaction keeps the last; the tail may hold more

        if not await read_to_end(c, take, timeout_s):
            log.warning("open alerts: read for %.0f s, the rest is skipped", timeout_s)
        found.update(open_episodes(latest.values()))
    except Exception as exc:
        log.warning("open alerts not loaded (%r): old episodes may open again", exc)
    finally:
        await c.stop()
    return found
