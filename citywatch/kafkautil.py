"""Small Kafka helpers shared by the demo, the benchmarks and the tests.

Example:
    >>> async def demo(s):  # doctest: +SKIP
    ...     ends = await end_offsets(s.kafka.bootstrap, "citywatch.readings")
    ...     await commit_group_at(s.kafka.bootstrap, "my-group", ends)
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The log end offset of every partition of ``topic``."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            # A fresh client may not have the topic's metadata yet.
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic) or set()
        return dict(await c.end_offsets([TopicPartition(topic, p) for p in parts]))
    finally:
        await c.stop()


async def commit_group_at(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for a consumer group (e.g. so a new group starts at the log end)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()
