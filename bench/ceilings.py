"""Raw ceilings of the pipeline's parts, each with a bare client, on the local stack.

- MQTT publish -> subscribe through Mosquitto: QoS 1 (``bench.gateway.raw``: the lean QoS 1
  publisher and a bare paho subscriber, as processes) and QoS 0 (a bare paho publisher);
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
import json
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import payload
from bench.gateway import _last_json, _spawn, raw
from bench.processor import raw_consume, records
from citywatch import credentials
from citywatch.settings import Settings

SCRATCH_DB = "citywatch_bench"


# -- MQTT ---------------------------------------------------------------------------------
def publish_qos0(n: int, prefix: str, devices: int = 1000) -> dict[str, float]:
    """A bare paho client publishing n QoS 0 messages (paho writes from the calling thread)."""
    s = Settings()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub0-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    c.username_pw_set("simulator", credentials.password(s, "simulator"))
    c.connect(s.mqtt.host, s.mqtt.port)
    c.loop_start()
    bodies = [payload(i, 1) for i in range(min(n, 5000))]
    topics = [f"{prefix}/bin/bin-bench-{d}/up" for d in range(devices)]
    t0 = time.monotonic()
    info = None
    for i in range(n):
        info = c.publish(topics[i % devices], bodies[i % len(bodies)], qos=0)
    if info is not None:
        info.wait_for_publish(120)
    elapsed = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    return {"published": n, "seconds": elapsed, "rate": n / elapsed}


def mqtt_qos0(n: int, timeout_s: float = 60.0) -> dict[str, float]:
    """QoS 0 publish -> subscribe: receive rate and the share of messages delivered."""
    prefix = f"city/raw0{uuid.uuid4().hex[:6]}"
    args = ["-m", "bench.common", "subscribe", "--n", str(n), "--prefix", prefix]
    sub = _spawn([*args, "--timeout", str(timeout_s)])
    assert sub.stdout is not None
    sub.stdout.readline()  # "ready"
    time.sleep(0.5)
    pub = _spawn(["-m", "bench.ceilings", "pub0", "--n", str(n), "--prefix", prefix])
    pub_out, _ = pub.communicate(timeout=600)
    out, _ = sub.communicate(timeout=600)
    st = _last_json(out)
    return {
        "per_s": st["n"] / max(st["last"] - st["first"], 1e-9),
        "delivered": st["n"] / n,
        "publish_per_s": _last_json(pub_out)["rate"],
    }


def mqtt_qos1(n: int) -> dict[str, float]:
    got = raw(n, 1)
    # bench.gateway.raw gives (rate, rate per subscriber CPU-second); older versions a float.
    vals = got if isinstance(got, tuple) else (got,)
    return dict(zip(("per_s", "per_cpu_s"), vals, strict=False))


# -- Kafka --------------------------------------------------------------------------------
async def _admin(s: Settings, create: str | None = None, delete: str | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka.bootstrap)
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
        bootstrap_servers=s.kafka.bootstrap,
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
    try:
        cmd = [
            *("java", "-Xmx256m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance"),
            *("--topic", topic, "--num-records", str(n), "--record-size", str(record_size)),
            *("--throughput", "-1", "--producer-props", f"bootstrap.servers={s.kafka.bootstrap}"),
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


def _influx_q(s: Settings, q: str) -> None:
    r = httpx.post(
        f"{s.influx.url}/query",
        params={"u": s.influx.admin_user, "p": credentials.password(s, "influx"), "q": q},
        timeout=60.0,
    )
    r.raise_for_status()


async def _write_batches(s: Settings, batches: list[bytes], writers: int) -> float:
    auth = {"u": s.influx.admin_user, "p": credentials.password(s, "influx")}
    params = {**auth, "db": SCRATCH_DB, "precision": "ns"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def writer(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            r = await client.post(f"{s.influx.url}/write", params=params, content=body)
            r.raise_for_status()

    async with httpx.AsyncClient(timeout=120.0) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(writer(client) for _ in range(writers)))
        return time.monotonic() - t0


def influx(s: Settings, n: int, batch: int = 10_000, writers: int = 2) -> dict[str, float]:
    lines = line_protocol(n)
    batches = [b"\n".join(lines[i : i + batch]) for i in range(0, n, batch)]
    _influx_q(s, f'CREATE DATABASE "{SCRATCH_DB}"')
    try:
        elapsed = asyncio.run(_write_batches(s, batches, writers))
    finally:
        _influx_q(s, f'DROP DATABASE "{SCRATCH_DB}"')
    return {"per_s": n / elapsed, "batch": batch, "writers": writers}


def run(s: Settings, *, mqtt_n: int, kafka_n: int, influx_n: int) -> dict[str, Any]:
    return {
        "mqtt_qos0": mqtt_qos0(mqtt_n),
        "mqtt_qos1": mqtt_qos1(mqtt_n),
        "kafka": kafka(s, kafka_n),
        "kafka_perf_test": kafka_perf_test(s, kafka_n),
        "influx_write": influx(s, influx_n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", choices=["all", "pub0"], default="all")
    ap.add_argument("--n", type=int, default=50_000, help="pub0: messages")
    ap.add_argument("--prefix", default="city/bench", help="pub0: topic prefix")
    ap.add_argument("--mqtt", type=int, default=50_000)
    ap.add_argument("--kafka", type=int, default=200_000)
    ap.add_argument("--influx", type=int, default=500_000)
    a = ap.parse_args()
    if a.role == "pub0":
        print(json.dumps(publish_qos0(a.n, a.prefix)), flush=True)
        sys.exit(0)
    out = run(Settings(), mqtt_n=a.mqtt, kafka_n=a.kafka, influx_n=a.influx)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
