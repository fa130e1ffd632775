"""The processor's Kafka sink: alert events to ``citywatch.alerts``, refused lines to dead letters.

Every send waits for acks=all and is retried with backoff while Kafka is away, so the caller
commits a batch's offsets only once its events are on the topic. Alert events a replay
raises again after they were published (``processors.published``) are not sent twice; lines
InfluxDB will never accept go to the dead-letter topic with InfluxDB's reason.

Example:
    >>> async def demo(settings, out, stop):  # doctest: +SKIP
    ...     sink = KafkaSink(settings, "p1"); await sink.start()
    ...     skipped = await sink.publish(out.events, stop)
    ...     await sink.dead_letter([("bad line", "unable to parse")], stop)
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from citywatch.backoff import retry
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from processors import open_alerts
from processors.alerts import AlertEvent
from processors.published import GROUP_HEADER, PublishedAlerts

log = logging.getLogger("citywatch.processor")
# topic, value (None: a tombstone), key, headers
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]


class KafkaSink:
    """One idempotent producer (acks=all) for the processor's alert events and dead letters."""

    def __init__(self, settings: Settings, instance: str) -> None:
        self.s = settings
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings),
            client_id=f"citywatch-{instance}-alerts",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )
        self.published = PublishedAlerts()
        # Whether the open-alerts topic exists (processors.open_alerts.exists): a send to a
        # missing topic would be retried for ever and stall the processor.
        self.open_alerts = False

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, events: list[AlertEvent], stop: asyncio.Event) -> int:
        """Send the events not yet on the topic (key = alert id), and each one's episode to the
        open-alerts topic; returns how many were skipped as already published. Consumers
        dedupe on the same key anyway."""
        k = self.s.kafka
        group = self.s.processor.group_id
        headers = [(GROUP_HEADER, group.encode())]
        seen = self.published
        fresh = [ev for ev in events if (ev.alert_id, ev.state, ev.ts) not in seen]
        if fresh:
            records: list[Record] = []
            for ev in fresh:
                encoded = ev.to_json()
                records.append((k.alerts_topic, encoded, ev.alert_id.encode(), headers))
                if self.open_alerts:
                    key, value = open_alerts.record(group, ev, encoded)
                    records.append((k.open_alerts_topic, value, key, []))
            await self.send(stop, records)
            for ev in fresh:
                seen.add((ev.alert_id, ev.state, ev.ts))
        return len(events) - len(fresh)

    async def dead_letter(self, rejected: list[tuple[str, str]], stop: asyncio.Event) -> None:
        """Lines InfluxDB will never accept, each with why: kept, not dropped."""
        log.error("InfluxDB rejected %d lines; dead-lettered: %s", len(rejected), rejected[0][1])
        await self.send(
            stop,
            [
                (
                    self.s.kafka.deadletter_topic,
                    line.encode(),
                    b"influx",
                    [
                        ("reason", b"influx_rejected"),
                        ("detail", why.encode()[:2000]),
                        ("origin", b"processor"),
                    ],
                )
                for line, why in rejected
            ],
        )

    async def send(self, stop: asyncio.Event, records: list[Record]) -> None:
        """Send and wait for acks=all, retried with backoff while Kafka is away (until
        ``stop`` is set, when the error is raised and the batch replays later)."""

        async def attempt() -> None:
            futs = [
                await self.producer.send(topic, value, key=key, headers=headers)
                for topic, value, key, headers in records
            ]
            await asyncio.gather(*futs)

        await retry(attempt, KafkaError, what="Kafka send", log=log, stop=stop)
