"""Raw ceilings of the pipeline's parts, each with a bare client, on the local stack.

- MQTT publish -> subscribe through Mosquitto, QoS 0 and QoS 1: the lean MQTT client of
  ``citywatch.mqttlean`` (the one the gateway and simulator use) with nothing behind it, as a
  publisher process and a subscriber process (QoS 1: PUBACK per message, receive maximum as
  the gateway's);
- Kafka: bare aiokafka produce (configured like the gateway's producer: acks=all,
  idempotent, lz4) of pre-built canonical records, and bare aiokafka consume (+ JSON parse,
  ``bench.processor.raw_consume``); for reference Kafka's own ``ProducerPerformance``
  (kafka-producer-perf-test) run from the cached jars with the machine's java;
- InfluxDB: pre-built line protocol written in large batches by two writers, into a scratch
  database (``citywatch_bench``) that is dropped afterwards.

Every figure is a rate over the receive (or write) span, so start-up does not count.

Example:
    $ .venv/bin/python -m bench.ceilings --mqtt 50000 --kafka 200000 --influx 500000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import payload
from bench.gateway import _last_json, _spawn
from bench.processor import raw_consume, records
from citywatch import influxql
from citywatch.kafkautil import client_kwargs, java_client_properties
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings

SCRATCH_DB = "citywatch_bench"


# -- MQTT ---------------------------------------------------------------------------------
# Bare clients: the lean MQTT client the gateway and simulator use (citywatch.mqttlean), with
# nothing behind it. paho is not a ceiling any more: its packet reader is slower than the
# whole gateway (see citywatch/mqttlean.py), so a paho subscriber would measure paho.
async def subscribe_lean(n: int, prefix: str, qos: int, timeout_s: float) -> dict[str, float]:
    """Count (and PUBACK) n messages on ``prefix/+/+/up``; prints "ready" once subscribed."""
    from citywatch.mqttlean import LeanSubscriber

    s = Settings()
    st = {"n": 0.0, "first": 0.0, "last": 0.0}
    done = asyncio.Event()

    def on_message(_topic: str, _payload: bytes, q: int, pid: int) -> None:
        now = time.monotonic()
        if not st["n"]:
            st["first"] = now
        st["n"] += 1
        st["last"] = now
        sub.ack(pid, q)
        if st["n"] >= n:
            done.set()

    sub = LeanSubscriber(
        **mqtt_kwargs(s, "gateway"),
        client_id=f"bench-sub-{time.time_ns()}",
        on_message=on_message,
        clean_start=True,
        receive_maximum=s.gateway.receive_maximum,
    )
    await sub.connect()
    await sub.subscribe([(f"{prefix}/+/+/up", qos)])
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout_s)
    await sub.close()
    return st


async def publish_qos0(n: int, prefix: str, devices: int = 1000) -> dict[str, float]:
    """n QoS 0 publishes on the simulator's lean connection (MQTT 3.1.1), written in chunks
    as fast as the socket drains."""
    from citywatch.mqttlean import packet, string
    from ingest.simulator.mqttpub import FastPublisher

    s = Settings()
    pub = FastPublisher(
        **mqtt_kwargs(s, "simulator"),
        client_id=f"bench-pub0-{time.time_ns()}",
        on_ack=lambda _t, _ok: None,
    )
    await pub.connect()
    bodies = [payload(i, 1) for i in range(min(n, 5000))]
    topics = [string(f"{prefix}/bin/bin-bench-{d}/up") for d in range(devices)]

    def backlog() -> int:
        proto = pub._proto  # the socket's write buffer is the only flow control QoS 0 has
        return proto.transport.get_write_buffer_size() if proto and proto.transport else 0

    t0 = time.monotonic()
    for i in range(n):
        pub._queue(packet(0x30, topics[i % devices] + bodies[i % len(bodies)]))
        if i % 500 == 499:
            await asyncio.sleep(0)
            while backlog() > 1 << 20:
                await asyncio.sleep(0.001)
    await asyncio.sleep(0)
    while backlog():
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - t0
    await pub.close()
    return {"published": n, "seconds": elapsed, "rate": n / elapsed}


def mqtt_ceiling(n: int, qos: int, timeout_s: float = 120.0) -> dict[str, float]:
    """Publish -> subscribe through Mosquitto with bare lean clients, as two processes."""
    prefix = f"city/raw{qos}{uuid.uuid4().hex[:6]}"
    args = [f"--n={n}", f"--prefix={prefix}", f"--qos={qos}", f"--timeout={timeout_s}"]
    sub = _spawn(["-m", "bench.ceilings", "sub", *args])
    assert sub.stdout is not None
    sub.stdout.readline()  # "ready"
    time.sleep(0.5)
    if qos == 0:
        pub = _spawn(["-m", "bench.ceilings", "pub0", f"--n={n}", f"--prefix={prefix}"])
    else:
        pub = _spawn(["-m", "bench.common", "publish", "--n", str(n), "--prefix", prefix])
    pub_out, _ = pub.communicate(timeout=600)
    out, _ = sub.communicate(timeout=600)
    st = _last_json(out)
    return {
        "per_s": st["n"] / max(st["last"] - st["first"], 1e-9),
        "delivered": st["n"] / n,
        "publish_per_s": _last_json(pub_out)["rate"],
    }


# -- Kafka --------------------------------------------------------------------------------
async def _admin(s: Settings, create: str | None = None, delete: str | None = None) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(create, s.kafka.readings_partitions, 1)])
        if delete:
            await admin.delete_topics([delete])
    finally:
        await admin.close()


async def kafka_produce(s: Settings, topic: str, recs: list[tuple[bytes, bytes]]) -> float:
    """Records/s of a bare aiokafka producer set up as the gateway's (pre-built records)."""
    g = s.gateway
    p = AIOKafkaProducer(
        **client_kwargs(s),
        acks="all",
        enable_idempotence=True,
        linger_ms=g.linger_ms,
        max_batch_size=g.max_batch_bytes,
        compression_type=g.compression,
    )
    await p.start()
    try:
        t0 = time.monotonic()
        futs = [await p.send(topic, v, key=k) for k, v in recs]
        await asyncio.gather(*futs)
        return len(recs) / (time.monotonic() - t0)
    finally:
        await p.stop()


def kafka(s: Settings, n: int) -> dict[str, float]:
    topic = f"citywatch.bench.ceil{uuid.uuid4().hex[:6]}"
    recs = records(n)
    asyncio.run(_admin(s, create=topic))
    try:
        produce = asyncio.run(kafka_produce(s, topic, recs))
        consume = asyncio.run(raw_consume(s, topic, n))
    finally:
        asyncio.run(_admin(s, delete=topic))
    return {
        "produce_per_s": produce,
        "consume_per_s": consume,
        "record_bytes": sum(len(v) for _, v in recs) / n,
    }


PERF_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def parse_perf_test(text: str) -> dict[str, float]:
    """The summary (last) line of ProducerPerformance's output.

    >>> parse_perf_test("100 records sent, 5.0 records/sec (0.1 MB/sec), 3.2 ms avg latency")
    {'records': 100.0, 'per_s': 5.0, 'mb_per_s': 0.1}
    """
    found = PERF_LINE.findall(text)
    if not found:
        raise ValueError(f"no ProducerPerformance summary in: {text[-500:]!r}")
    n, rate, mb = found[-1]
    return {"records": float(n), "per_s": float(rate), "mb_per_s": float(mb)}


def kafka_perf_test(s: Settings, n: int, record_size: int = 300) -> dict[str, float]:
    """Kafka's own kafka-producer-perf-test (``ProducerPerformance``), same producer settings."""
    libs = s.cache_dir / f"kafka-{s.kafka.version}" / "libs"
    topic = f"citywatch.bench.perf{uuid.uuid4().hex[:6]}"
    g = s.gateway
    asyncio.run(_admin(s, create=topic))
    # Connection (and SASL password) in a 0600 file, not on the command line.
    fd, name = tempfile.mkstemp(prefix="cw-perf-", suffix=".properties")
    with open(fd, "w") as fh:
        fh.write(java_client_properties(s))
    conn = Path(name)
    try:
        cmd = [
            *("java", "-Xmx256m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance"),
            *("--topic", topic, "--num-records", str(n), "--record-size", str(record_size)),
            *("--throughput", "-1", "--producer.config", str(conn), "--producer-props"),
            *("acks=all", f"linger.ms={g.linger_ms}", f"batch.size={g.max_batch_bytes}"),
            f"compression.type={g.compression}",
        ]
        run = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        conn.unlink(missing_ok=True)
        asyncio.run(_admin(s, delete=topic))
    return {**parse_perf_test(run.stdout + run.stderr), "record_bytes": record_size}


# -- InfluxDB -----------------------------------------------------------------------------
def line_protocol(n: int, devices: int = 10_000, t0_ns: int | None = None) -> list[bytes]:
    """n points shaped like the processor's (tags device_id/district, a few fields).

    >>> line_protocol(1, t0_ns=0)[0]
    b'bench,device_id=dev-0,district=d0 value=20.0,fill_ratio=0.0,seq=0i 0'
    """
    t0 = t0_ns if t0_ns is not None else time.time_ns() - 3600 * 10**9
    return [
        f"bench,device_id=dev-{i % devices},district=d{i % 5} "
        f"value={20.0 + (i % 7)},fill_ratio={(i % 100) / 100},seq={i}i {t0 + i * 1000}".encode()
        for i in range(n)
    ]


async def _write_batches(s: Settings, batches: list[bytes], writers: int) -> float:
    auth = influxql.auth(s)
    url, params = influxql.write_request(s, SCRATCH_DB)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def writer(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            r = await client.post(url, params=params, content=body, auth=auth)
            r.raise_for_status()

    async with httpx.AsyncClient(timeout=120.0) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(writer(client) for _ in range(writers)))
        return time.monotonic() - t0


def influx(s: Settings, n: int, batch: int = 10_000, writers: int = 2) -> dict[str, float]:
    lines = line_protocol(n)
    batches = [b"\n".join(lines[i : i + batch]) for i in range(0, n, batch)]
    influxql.execute(s, f'CREATE DATABASE "{SCRATCH_DB}"')
    try:
        elapsed = asyncio.run(_write_batches(s, batches, writers))
    finally:
        influxql.execute(s, f'DROP DATABASE "{SCRATCH_DB}"')
    return {"per_s": n / elapsed, "batch": batch, "writers": writers}


def run(s: Settings, *, mqtt_n: int, kafka_n: int, influx_n: int) -> dict[str, Any]:
    return {
        "mqtt_qos0": mqtt_ceiling(mqtt_n, 0),
        "mqtt_qos1": mqtt_ceiling(mqtt_n, 1),
        "kafka": kafka(s, kafka_n),
        "kafka_perf_test": kafka_perf_test(s, kafka_n),
        "influx_write": influx(s, influx_n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", choices=["all", "pub0", "sub"], default="all")
    ap.add_argument("--n", type=int, default=50_000, help="pub0/sub: messages")
    ap.add_argument("--prefix", default="city/bench", help="pub0/sub: topic prefix")
    ap.add_argument("--qos", type=int, default=1, help="sub: subscription QoS")
    ap.add_argument("--timeout", type=float, default=120.0, help="sub: give up after (s)")
    ap.add_argument("--mqtt", type=int, default=50_000)
    ap.add_argument("--kafka", type=int, default=200_000)
    ap.add_argument("--influx", type=int, default=500_000)
    a = ap.parse_args()
    if a.role == "pub0":
        print(json.dumps(asyncio.run(publish_qos0(a.n, a.prefix))), flush=True)
        sys.exit(0)
    if a.role == "sub":
        print(json.dumps(asyncio.run(subscribe_lean(a.n, a.prefix, a.qos, a.timeout))))
        sys.exit(0)
    out = run(Settings(), mqtt_n=a.mqtt, kafka_n=a.kafka, influx_n=a.influx)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
