"""The gateway's Kafka side: readings, dead letters and presence events, idempotent and acks=all.

Every ``send_*`` returns a future that resolves when Kafka acknowledged the record, so the
caller can acknowledge the MQTT message only then.

Records are appended to per-partition record batches built in place (aiokafka's
``create_batch``/``send_batch``) and sealed after ``linger_ms``: one future per batch instead
of one coroutine, accumulator lookup and future per record, which profiling showed to be half
of the gateway's CPU time. Partitioning is aiokafka's default (murmur2 of the key, as in the
Java client), so keys land where ``producer.send`` would put them.

Example:
    >>> async def demo(settings):  # doctest: +SKIP
    ...     sink = KafkaSink(settings); await sink.start()
    ...     await sink.send_deadletter(b"\\xff", "city/a/bin/b1/up", "bad_json", "x", 0)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from ingest.readings import ReadingBase, reading_key, to_record

Ack = asyncio.Future[object]
# Keys whose partition is remembered; a city has ~10^5 devices, each key is ~40 bytes.
_MAX_KEYS = 500_000


def partition_key(reading: ReadingBase) -> bytes:
    """The Kafka key: which readings must meet in one processor.

    Fleet rules judge a whole lamp circuit (cable theft) and a dust sensor against the other
    sensors of its district, so those readings are keyed by circuit / district; everything
    else by device id. A device never changes circuit or district, so each device's readings
    still stay in order on one partition.
    """
    family = reading.family
    if family == "streetlight":
        circuit = getattr(reading, "circuit_id", None)
        if circuit:
            return f"circuit:{circuit}".encode()
    elif family == "dust":
        return f"district:{reading.district}".encode()
    return reading_key(reading)


class PartitionBatches:
    """Open record batches per (topic, partition), sealed on linger and sent in order."""

    def __init__(self, producer: AIOKafkaProducer, linger_s: float) -> None:
        self.producer = producer
        self.linger_s = linger_s
        self.partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        # murmur2 in pure Python was 15 % of the gateway's CPU; a device's key always maps to
        # the same partition while the partition count stays, so remember it (bounded).
        self._where: dict[tuple[str, bytes], int] = {}
        self._open: dict[tuple[str, int], tuple[Any, Ack]] = {}
        self._sealed: deque[tuple[str, int, Any, Ack]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None

    async def start(self, topics: list[str]) -> None:
        for topic in topics:
            self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        self._sender = asyncio.create_task(self._send_loop())

    def append(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Ack:
        if self._closed is not None:
            raise self._closed
        partition = self._where.get((topic, key))
        if partition is None:
            parts = self.partitions[topic]
            partition = self._partitioner(key, parts, parts)
            if len(self._where) >= _MAX_KEYS:
                self._where.clear()
            self._where[(topic, key)] = partition
        slot = self._open.get((topic, partition))
        if slot is None:
            slot = self._new(topic, partition)
        if slot[0].append(timestamp=None, key=key, value=value, headers=headers) is None:
            self._seal(topic, partition)  # full: an empty batch takes any one record
            slot = self._new(topic, partition)
            slot[0].append(timestamp=None, key=key, value=value, headers=headers)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self.seal_all)
        return slot[1]

    def _new(self, topic: str, partition: int) -> tuple[Any, Ack]:
        slot = (self.producer.create_batch(), asyncio.get_running_loop().create_future())
        self._open[(topic, partition)] = slot
        return slot

    def _seal(self, topic: str, partition: int) -> None:
        builder, fut = self._open.pop((topic, partition))
        self._sealed.append((topic, partition, builder, fut))
        self._wake.set()

    def seal_all(self) -> None:
        self._timer = None
        for topic, partition in list(self._open):
            self._seal(topic, partition)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._sealed:
                topic, partition, builder, fut = self._sealed.popleft()
                try:
                    sent = await self.producer.send_batch(builder, topic, partition=partition)
                except Exception as exc:
                    fut.set_exception(exc)
                    continue
                sent.add_done_callback(functools.partial(_chain, fut))

    async def flush(self, limit_s: float = 10.0) -> None:
        """Hand every open batch to the producer (not waiting for Kafka's acks)."""
        self.seal_all()
        deadline = asyncio.get_running_loop().time() + limit_s
        while self._sealed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    async def close(self, exc: BaseException) -> None:
        """Fail whatever was not handed to the producer yet (the caller spools it)."""
        self._closed = exc
        if self._timer is not None:
            self._timer.cancel()
        self.seal_all()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        for _, _, _, fut in self._sealed:
            if not fut.done():
                fut.set_exception(exc)
        self._sealed.clear()


def _chain(out: Ack, sent: asyncio.Future[Any]) -> None:
    if out.done():
        return
    if sent.cancelled():
        out.cancel()
    elif (exc := sent.exception()) is not None:
        out.set_exception(exc)
    else:
        out.set_result(None)


class KafkaSink:
    """One aiokafka producer shared by readings, dead letters and presence."""

    def __init__(self, settings: Settings, client_id: str = "citywatch-gateway") -> None:
        g, k = settings.gateway, settings.kafka
        self.topics = k
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings),
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=g.linger_ms,
            max_batch_size=g.max_batch_bytes,
            compression_type=g.compression or None,
            request_timeout_ms=g.request_timeout_ms,
            retry_backoff_ms=200,
        )
        self.batches = PartitionBatches(self.producer, g.linger_ms / 1000)

    async def start(self) -> None:
        await self.producer.start()
        k = self.topics
        await self.batches.start([k.readings_topic, k.deadletter_topic, k.presence_topic])

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.batches.flush()
        await self.batches.close(ConnectionError("Kafka producer stopped"))
        await self.producer.stop()

    def send_reading(self, reading: ReadingBase) -> Ack:
        return self.batches.append(
            self.topics.readings_topic, partition_key(reading), to_record(reading), []
        )

    def send_deadletter(
        self, raw: bytes, mqtt_topic: str, reason: str, detail: str, received_at_ns: int
    ) -> Ack:
        """The raw bytes stay verbatim in the value; why and where travel in headers."""
        headers = [
            ("reason", reason.encode()),
            ("detail", detail.encode()[:2000]),
            ("mqtt_topic", mqtt_topic.encode(errors="replace")),
            ("received_at", str(received_at_ns).encode()),
            ("origin", b"gateway"),
        ]
        key = mqtt_topic.encode(errors="replace")
        return self.batches.append(self.topics.deadletter_topic, key, raw, headers)

    def send_presence(
        self, device_id: str, family: str, district: str, status: str, ts_ns: int
    ) -> Ack:
        value = orjson.dumps(
            {
                "device_id": device_id,
                "family": family,
                "district": district,
                "status": status,
                "ts": ts_ns,
            }
        )
        return self.batches.append(self.topics.presence_topic, device_id.encode(), value, [])

    async def flush(self) -> None:
        await self.batches.flush()
        await self.producer.flush()
