"""How every citywatch Kafka client connects (``client_kwargs``), plus small offset helpers.

``client_kwargs`` is the one place that knows whether Kafka wants SASL/SCRAM-SHA-512
(``kafka.sasl``) and which user and password to present; every producer, consumer and admin
client is built with ``**client_kwargs(settings)``.

Example:
    >>> from citywatch.settings import Settings
    >>> client_kwargs(Settings(kafka={"sasl": False}))
    {'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
    >>> async def demo(s):  # doctest: +SKIP
    ...     consumer = AIOKafkaConsumer("citywatch.alerts", **client_kwargs(s))
    ...     ends = await end_offsets(s, "citywatch.readings")
    ...     await commit_group_at(s, "my-group", ends)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from citywatch import credentials
from citywatch.settings import Settings

SCRAM_MECHANISM = "SCRAM-SHA-512"
PASSWORD_ROLE = "kafka"  # the citywatch.credentials role of the Kafka SCRAM user


def client_kwargs(s: Settings) -> dict[str, Any]:
    """aiokafka connection arguments (bootstrap, security protocol, SASL) for ``s``.

    The password is read from citywatch.credentials, never from a log or a command line.
    """
    k = s.kafka
    if not k.sasl:
        return {"bootstrap_servers": k.bootstrap, "security_protocol": "PLAINTEXT"}
    return {
        "bootstrap_servers": k.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": SCRAM_MECHANISM,
        "sasl_plain_username": k.sasl_user,
        "sasl_plain_password": credentials.password(s, PASSWORD_ROLE),
    }


def java_client_properties(s: Settings) -> str:
    """The same connection for a Java client (Kafka's own tools), as a .properties text.

    Holds the password when ``sasl``: write it to a 0600 file, never pass it on a command line.
    """
    kw = client_kwargs(s)
    lines = [
        f"bootstrap.servers={kw['bootstrap_servers']}",
        f"security.protocol={kw['security_protocol']}",
    ]
    if s.kafka.sasl:
        lines += [
            f"sasl.mechanism={SCRAM_MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{kw["sasl_plain_username"]}" password="{kw["sasl_plain_password"]}";',
        ]
    return "\n".join(lines) + "\n"


def _connect(target: Settings | str) -> dict[str, Any]:
    # A bare bootstrap string (the older signature) can only mean a plaintext listener.
    return client_kwargs(target) if isinstance(target, Settings) else {"bootstrap_servers": target}


async def topic_partitions(c: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` (none if it does not exist), for a started consumer that
    does not subscribe to it (such a client has no metadata for it yet)."""
    parts = c.partitions_for_topic(topic)
    if not parts:
        await c._client.force_metadata_update()
        parts = c.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_to_end(
    c: AIOKafkaConsumer,
    handle: Callable[[ConsumerRecord[Any, Any]], object],
    timeout_s: float,
    max_records: int = 10_000,
) -> bool:
    """Feed ``handle`` every record of the consumer's assigned partitions, from their current
    positions up to the log ends seen at the call; False if ``timeout_s`` ran out first."""
    tps = list(c.assignment())
    if not tps:
        return True
    ends = await c.end_offsets(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        positions = [await c.position(tp) for tp in tps]
        if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
            return True
        batch = await c.getmany(timeout_ms=200, max_records=max_records)
        for records in batch.values():
            for rec in records:
                handle(rec)
    return False


async def end_offsets(target: Settings | str, topic: str) -> dict[TopicPartition, int]:
    """The log end offset of every partition of ``topic`` (``target``: settings, or a
    plaintext bootstrap string)."""
    c = AIOKafkaConsumer(**_connect(target))
    await c.start()
    try:
        return dict(await c.end_offsets(await topic_partitions(c, topic)))
    finally:
        await c.stop()


async def commit_group_at(
    target: Settings | str, group: str, offsets: dict[TopicPartition, int]
) -> None:
    """Commit ``offsets`` for a consumer group (e.g. so a new group starts at the log end)."""
    c = AIOKafkaConsumer(**_connect(target), group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()
