"""Detector checkpoints: what each device's detectors and rules have learnt, kept in Kafka.

The warm-up replay after an assignment (processors.app) gives the rules their state back from
15 minutes of readings, but a detector learns from days: sentinel scores nothing for its first
100 points (8 hours of 5-minute readings) and keeps records and weekly routines for weeks. So
every ``processor.checkpoint_s`` (and when partitions are revoked, and at shutdown) the processor
writes, for each device it read since the last checkpoint, one record to the compacted topic
``kafka.detector_state_topic``: key ``group|device``, value the device's detector states by
metric and the device time they were learnt up to, in the partition with the same number as the
device's readings partition (the topics have as many partitions). On assignment it reads the
matching partitions; the engine restores each series on its first reading and skips the
replayed readings the checkpoint already holds. A checkpoint from another detector or format
is ignored: the series learns afresh, as it did before checkpoints.

The same record carries, by rule name, what the rules keep of each device beyond the replay's
15 minutes (``Rule.learns``): what they learn over hours or days (a lamp's power baselines, a
bin's ambient temperature and usual fill rate, a vehicle's day so far), and state older than
the replay that a fault depends on (a device's last reading for the silence rule, when a bin's
overflow began, a dust site's hour of readings, a fault's streak). Without it a restarted
processor judged those devices only once it had learnt them again, learnt a degraded lamp's
draw as its baseline, and never saw a device that had fallen silent before the replay's window.

Example:
    >>> blob = encode("sentinel", 10**18, {"pm10_ugm3": [1, 2]}, {"bin_fire": [18.5, 9]})
    >>> decode(blob, "sentinel")
    (1000000000000000000, {'pm10_ugm3': [1, 2]}, {'bin_fire': [18.5, 9]})
    >>> decode(blob, "ewma")  # another detector's states are no use; the rules' still are
    (1000000000000000000, {}, {'bin_fire': [18.5, 9]})
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from citywatch.settings import Settings
from processors.detectors.base import Detector
from processors.engine import Engine

log = logging.getLogger("citywatch.processor.checkpoints")

#: Bumped when the layout of a detector's state changes: older checkpoints are then ignored.
FORMAT = 1
#: Devices serialised between two turns of the event loop.
CHUNK = 500


def encode(
    detector: str, ts: int, states: dict[str, Any], learnt: dict[str, Any] | None = None
) -> bytes:
    """One device's checkpoint record: its detectors' states and what its rules have
    ``learnt``, up to device time ``ts``."""
    doc = {"v": FORMAT, "detector": detector, "ts": ts, "metrics": states}
    if learnt:
        doc["rules"] = learnt
    return orjson.dumps(doc)


def device_record(
    engine: Engine, device: str, ts: int, dets: Iterable[tuple[str, Detector]]
) -> bytes | None:
    """``device``'s checkpoint record: its detectors ``dets`` (metric, detector) and what the
    engine's rules have learnt of it, up to device time ``ts``; None when there is neither."""
    states = {m: st for m, d in dets if (st := d.get_state()) is not None}
    learnt = engine.learnt(device) if engine.learners else None
    if not states and not learnt:
        return None
    return encode(engine.detector_name, ts, states, learnt)


def decode(value: bytes | None, detector: str) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """(ts, detector states by metric, rule states by rule) of a checkpoint record; the
    detector states are empty when another detector wrote them. None for a tombstone, a
    damaged record, one of another format, or one with nothing usable."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        return None
    ts, states, learnt = doc.get("ts"), doc.get("metrics"), doc.get("rules", {})
    if not isinstance(ts, int) or not isinstance(states, dict) or not isinstance(learnt, dict):
        return None
    if doc.get("detector") != detector:
        states = {}
    if not states and not learnt:
        return None
    return ts, states, learnt


class Checkpoints:
    """Writes and reads one processor group's detector checkpoints (see module)."""

    def __init__(self, settings: Settings, engine: Engine, instance: str) -> None:
        self.s = settings
        self.engine = engine
        self.topic = settings.kafka.detector_state_topic
        self.prefix = f"{settings.processor.group_id}|"
        # Devices read since the last checkpoint, by readings partition: device -> latest ts
        # (kept with checkpoints off too: it also says which devices a partition holds).
        self.touched: dict[int, dict[str, int]] = {}
        # Devices read before the last checkpoint, by readings partition.
        self.known: dict[int, set[str]] = {}
        self.saved = 0
        self.loaded = 0
        self.enabled = settings.processor.checkpoint_s > 0
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings),
            client_id=f"citywatch-{instance}-checkpoints",
            acks=1,  # a lost checkpoint costs a fresh start for a few series, nothing more
            # Uncompressed: lz4 cost ~10 us of CPU per device (bench.checkpoints) and gains
            # little on base64 floats.
            max_batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
        self.last_save = time.monotonic()

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.producer.start()
        await self.consumer.start()
        ps = self.s.processor
        if 0 < ps.warmup_s <= ps.checkpoint_s:  # warmup_s 0: no replay, by choice (the demo)
            log.warning(
                "checkpoint_s %.0f >= warmup_s %.0f: after a crash the replay does not reach "
                "back to the last checkpoint, and the detectors miss the readings between",
                ps.checkpoint_s,
                ps.warmup_s,
            )
        parts = await topic_partitions(self.consumer, self.topic)
        want = self.s.kafka.readings_partitions
        if len(parts) < want:
            log.warning(
                "%s has %d partitions, %d needed (run `citywatch stack topics`): "
                "detector checkpoints are off",
                self.topic,
                len(parts),
                want,
            )
            self.enabled = False

    async def stop(self) -> None:
        for client in (self.producer, self.consumer):
            try:
                await client.stop()
            except Exception as exc:  # a client that never started
                log.debug("checkpoint client stop: %r", exc)

    def devices_of(self, partitions: set[int]) -> set[str]:
        """Every device read from these readings partitions since the processor started."""
        out: set[str] = set()
        for part in partitions:
            out.update(self.known.get(part, ()))
            out.update(self.touched.get(part, ()))
        return out

    def drop(self, partitions: set[int]) -> None:
        """Forget these partitions' devices (another processor holds them now)."""
        for part in partitions:
            self.known.pop(part, None)
            self.touched.pop(part, None)

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self.last_save >= self.s.processor.checkpoint_s

    async def save(self, partitions: set[int] | None = None) -> int:
        """Checkpoint the devices read since the last time (only those of ``partitions`` if
        given); returns how many. Best effort: a failure is logged and the devices are kept
        for the next checkpoint."""
        if not self.enabled:
            return 0
        self.last_save = time.monotonic()
        chosen = [p for p in self.touched if partitions is None or p in partitions]
        n = 0
        for part in chosen:
            devices = self.touched.pop(part)
            self.known.setdefault(part, set()).update(devices)
            series = self.engine.series_of(devices)
            names = list(devices)
            try:
                async with asyncio.timeout(self.s.processor.checkpoint_timeout_s):
                    for i in range(0, len(names), CHUNK):
                        chunk = names[i : i + CHUNK]
                        n += await self._send(part, devices, chunk, series)
            except Exception as exc:  # TimeoutError included: Kafka away
                log.warning("detector checkpoint of partition %d failed: %r", part, exc)
                mine = self.touched.setdefault(part, {})
                for device, ts in devices.items():
                    mine.setdefault(device, ts)
        # Checkpoints of devices that have not reported for a day are let go.
        self.engine.expire_pending(self.engine.watermark - 86_400 * 10**9)
        self.saved += n
        if n:
            log.info("checkpointed the detectors of %d devices", n)
        return n

    async def _send(
        self,
        part: int,
        devices: dict[str, int],
        chunk: list[str],
        series: dict[str, list[tuple[str, Detector]]],
    ) -> int:
        """One chunk of devices, in as few record batches as fit: a send per record cost
        ~110 us of CPU per device (3.5 kB records in aiokafka's default 16 kB batches)."""
        sent = []
        batch = self.producer.create_batch()
        n = 0
        for device in chunk:
            value = device_record(self.engine, device, devices[device], series.get(device, ()))
            if value is None:
                continue
            key = (self.prefix + device).encode()
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await self.producer.send_batch(batch, self.topic, partition=part))
                batch = self.producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            n += 1
        if batch.record_count():
            sent.append(await self.producer.send_batch(batch, self.topic, partition=part))
        await asyncio.gather(*sent)
        return n

    async def load(self, partitions: list[int], timeout_s: float) -> int:
        """Read the checkpoints of ``partitions`` into the engine; returns how many devices."""
        if not self.enabled or not partitions:
            return 0
        found: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {}
        try:
            async with asyncio.timeout(timeout_s):
                await self._read(partitions, found, timeout_s)
        except TimeoutError:
            log.warning("detector checkpoints: read for %.0f s, the rest is skipped", timeout_s)
        for device, (ts, states, learnt) in found.items():
            self.engine.restore(device, ts, states, learnt)
        self.loaded += len(found)
        return len(found)

    async def _read(
        self,
        partitions: list[int],
        found: dict[str, tuple[int, dict[str, Any], dict[str, Any]]],
        timeout_s: float,
    ) -> None:
        """Every record of ``partitions`` under this group's prefix, the latest per device."""
        c = self.consumer
        tps = [TopicPartition(self.topic, p) for p in partitions]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        name = self.engine.detector_name
        prefix = self.prefix.encode()

        def take(r: ConsumerRecord[Any, Any]) -> None:
            if r.key is None or not r.key.startswith(prefix):
                return
            device = r.key[len(prefix) :].decode(errors="replace")
            snap = decode(r.value, name)
            if snap is None:
                found.pop(device, None)  # a tombstone, or a later unusable record
            else:
                found[device] = snap

        if not await read_to_end(c, take, timeout_s):
            raise TimeoutError
