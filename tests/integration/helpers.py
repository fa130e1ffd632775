"""Helpers for integration tests: publish readings, read Kafka, run pipeline processes.

Everything talks to the real servers on 127.0.0.1 started by ``citywatch stack up``.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from citywatch import influxql, kafkautil
from citywatch.chaos import Worker
from citywatch.mqtt import AsyncMqtt, end_session
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings, gateway_client_id

REPO = Path(__file__).resolve().parents[2]


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def bin_payload(seq: int, fill: float = 0.5, ts: datetime | None = None) -> bytes:
    t = (ts or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"ts": t, "fill_ratio": fill, "seq": seq})


async def publish(
    s: Settings,
    messages: Iterable[tuple[str, bytes]],
    *,
    window: int = 500,
    client_id: str | None = None,
    acked_ids: set[int] | None = None,
    rate: float | None = None,
) -> int:
    """Publish QoS 1 with at most ``window`` unacknowledged; returns how many were PUBACKed.

    ``acked_ids`` collects the index of every message the broker acknowledged (the loss ledger
    counts from the device's side); ``rate`` caps messages per second.
    """
    c = AsyncMqtt(
        **mqtt_kwargs(s, "simulator"),
        client_id=client_id or f"test-pub-{run_id()}",
        max_inflight=window,
    )
    await c.connect()
    sem = asyncio.Semaphore(window)
    acked = 0

    def done(i: int, f: asyncio.Future[None]) -> None:
        nonlocal acked
        sem.release()
        if not f.cancelled() and f.exception() is None:
            acked += 1
            if acked_ids is not None:
                acked_ids.add(i)

    pending = []
    t0 = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        await sem.acquire()
        if rate:
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
        fut = c.publish_nowait(topic, payload, qos=1)
        fut.add_done_callback(lambda f, i=i: done(i, f))
        pending.append(fut)
    await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 120)
    await c.close()
    return acked


async def end_offsets(s: Settings, topic: str) -> dict[TopicPartition, int]:
    return await kafkautil.end_offsets(s, topic)


async def read_topic(
    s: Settings,
    topic: str,
    start: dict[TopicPartition, int],
    *,
    idle_s: float = 3.0,
    until: Any = None,
    timeout_s: float = 60.0,
) -> list[Any]:
    """Records after ``start``, until ``idle_s`` without new ones or ``until(records)``."""
    c = AIOKafkaConsumer(**kafkautil.client_kwargs(s), enable_auto_commit=False)
    await c.start()
    out: list[Any] = []
    try:
        c.assign(list(start))
        for tp, off in start.items():
            c.seek(tp, off)
        last_new = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=300, max_records=10000)
            for msgs in batch.values():
                out.extend(msgs)
                last_new = time.monotonic()
            if until is not None and until(out):
                break
    finally:
        await c.stop()
    return out


def bin_messages(rid: str, n: int, devices: int = 100) -> list[tuple[str, bytes]]:
    """n readings spread over ``devices`` bins; message i has seq i (unique per run)."""
    return [(f"city/central/bin/bin-{rid}-{i % devices}/up", bin_payload(i)) for i in range(n)]


def seqs_for(records: list[Any], prefix: str) -> list[tuple[str, int]]:
    out = []
    for m in records:
        rec = orjson.loads(m.value)
        if rec["device_id"].startswith(prefix):
            out.append((rec["device_id"], rec["seq"]))
    return out


class Proc(Worker):
    """A citywatch command run as a real process (so tests can kill -9 it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(args[0] if args else "citywatch", args, env, log)

    def kill9(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def gateway_client_id(self) -> str | None:
        """The MQTT client id when this is a gateway with a known instance, else None."""
        if not self.args or self.args[0] != "gateway":
            return None
        a = self.args
        instance = a[a.index("--instance") + 1] if "--instance" in a else None
        instance = instance or self.env.get("CITYWATCH_GATEWAY__INSTANCE")
        return gateway_client_id(instance) if instance else None


def stop_all(s: Settings, procs: Iterable[Proc], timeout: float = 20) -> None:
    """Stop the processes, then drop the stopped gateways' sessions on the broker.

    A test's gateway never returns under its run-scoped id, and Mosquitto 2.0 forgets the
    expiry of sessions it restores after a restart (eclipse-mosquitto/mosquitto#2610): such
    a session then queues a copy of every later uplink for good (six were found holding
    200,000 messages each, with the broker dropping more for them every second).
    """
    procs = list(procs)
    for p in procs:
        p.stop(timeout=timeout)
    for p in procs:
        cid = p.gateway_client_id()
        if cid is not None:
            asyncio.run(end_session(s, "gateway", cid))


def wait_log(proc: Proc, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in proc.log_text():
            return
        if not proc.alive():
            raise AssertionError(f"process exited:\n{proc.log_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in {timeout_s}s:\n{proc.log_text()[-3000:]}")


async def start_group_at_end(s: Settings, group: str, topic: str) -> None:
    """Commit a new consumer group at the log end, so a test processor skips older data."""
    await kafkautil.commit_group_at(s, group, await end_offsets(s, topic))


async def produce_records(s: Settings, records: list[dict[str, Any]]) -> None:
    """Canonical reading records straight onto citywatch.readings (keyed by device id)."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(**kafkautil.client_kwargs(s), linger_ms=20, acks="all")
    await p.start()
    try:
        futs = [
            await p.send(s.kafka.readings_topic, orjson.dumps(r), key=r["device_id"].encode())
            for r in records
        ]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def influx_query(s: Settings, q: str) -> list[list[Any]]:
    return influxql.rows(s, q)


def wait_for(pred: Any, timeout_s: float = 120.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    return last


async def create_topic(s: Settings, name: str, partitions: int = 6) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafkautil.client_kwargs(s))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(s: Settings, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafkautil.client_kwargs(s))
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def own_readings_topic(s: Settings, rid: str) -> tuple[str, Settings]:
    """A readings topic for one test (its event time is the test's alone, so a processor's
    clock sees no other run), and settings that produce to it; delete it with delete_topic."""
    topic = f"citywatch.readings.test-{rid}"
    await create_topic(s, topic)
    kafka = s.kafka.model_copy(update={"readings_topic": topic})
    return topic, s.model_copy(update={"kafka": kafka})


def stored(s: Settings, measurement: str, field: str, prefix: str) -> int:
    """How many points of ``field`` the devices whose id starts with ``prefix`` have."""
    rows = influx_query(
        s, f"SELECT count({field}) FROM {measurement} WHERE device_id =~ /^{prefix}/"
    )
    return int(rows[0][1]) if rows else 0


async def produce_and_wait_stored(
    s: Settings, records: list[dict[str, Any]], measurement: str, field: str, prefix: str
) -> None:
    """Produce ``records`` and wait until InfluxDB holds that many more points of them."""
    want = stored(s, measurement, field, prefix) + len(records)
    await produce_records(s, records)
    done = await asyncio.to_thread(
        wait_for, lambda: stored(s, measurement, field, prefix) >= want, 90, 0.2
    )
    assert done, f"{stored(s, measurement, field, prefix)} of {want} readings stored"
