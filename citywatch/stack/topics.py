"""Create citywatch's Kafka topics idempotently with aiokafka's admin client.

Example:
    >>> from citywatch.settings import Settings
    >>> [t.name for t in topic_specs(Settings())][:2]
    ['citywatch.readings', 'citywatch.deadletter']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(s: Settings) -> list[TopicSpec]:
    k = s.kafka
    keep = {"retention.ms": str(k.retention_ms)}
    return [
        TopicSpec(k.readings_topic, k.readings_partitions, keep | {"compression.type": "producer"}),
        TopicSpec(k.deadletter_topic, 1, {"retention.ms": str(k.deadletter_retention_ms)}),
        TopicSpec(k.alerts_topic, 3, keep),
        TopicSpec(k.commands_topic, 3, keep),
        # Latest presence per device is all that matters: compaction keeps exactly that.
        TopicSpec(k.presence_topic, 3, {"cleanup.policy": "compact"}),
        # Alert episodes still open: one record per (group, kind, target), removed on clear.
        TopicSpec(k.open_alerts_topic, 3, {"cleanup.policy": "compact"}),
        # Latest detector state per device; a group's device not seen for the retention
        # (a past benchmark's group) is deleted.
        TopicSpec(
            k.detector_state_topic,
            k.readings_partitions,
            {"cleanup.policy": "compact,delete"} | keep,
        ),
    ]


async def ensure_topics(s: Settings) -> dict[str, str]:
    """Create missing topics and grow partition counts; returns topic -> what was done."""
    admin = AIOKafkaAdminClient(**client_kwargs(s), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = await admin.describe_topics()
        current = {t["topic"]: len(t["partitions"]) for t in existing if not t.get("error_code")}
        done: dict[str, str] = {}
        missing = [t for t in topic_specs(s) if t.name not in current]
        if missing:
            await admin.create_topics(
                [NewTopic(t.name, t.partitions, 1, topic_configs=t.configs) for t in missing]
            )
            done |= {t.name: f"created ({t.partitions} partitions)" for t in missing}
        for t in topic_specs(s):
            if t.name in current:
                have = current[t.name]
                if have < t.partitions:
                    await admin.create_partitions({t.name: NewPartitions(total_count=t.partitions)})
                    done[t.name] = f"grown {have} -> {t.partitions} partitions"
                else:
                    done[t.name] = f"exists ({have} partitions)"
        return done
    finally:
        await admin.close()
