"""Latency at a steady load: device timestamp -> queryable in InfluxDB, and -> alert event.

One gateway and one processor (benchmark topics, ``bench.e2e.Pipeline``) take a paced QoS 1
load of bin readings stamped with the wall clock (a publisher process, the simulator's lean
publisher). First a warm-up in which every device reports twice: a city's devices exist
before anyone measures it, and without one the slowest probes were the first 1.5 s's, while
InfluxDB created 10,000 new series and the processor their state. Then about 20 readings a
second are probes: a new bin reporting 95 °C, which raises ``bin_fire`` on its first reading.
Meanwhile this process polls InfluxDB every 50 ms for probe points (``SELECT ... WHERE
temperature_c > 90``) and reads the alerts topic; each latency is the wall time it was first
seen minus the reading's device timestamp. The poll period bounds the InfluxDB figure's
resolution (+0..50 ms).

Example:
    $ .venv/bin/python -m bench.latency --rate 2500 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.e2e import REPO, Pipeline
from citywatch import influxql
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from processors.evaluate import percentile

PROBE_C = 95.0
POLL_S = 0.05


def summary(latencies_s: list[float]) -> dict[str, float | int | None]:
    """Count and p50/p95/p99/max in milliseconds (nearest rank, as the scorecard does).

    >>> summary([0.1, 0.2, 0.3, 0.4])["p50_ms"]
    200.0
    """

    def ms(q: float) -> float | None:
        v = percentile(latencies_s, q)
        return None if v is None else round(v * 1000, 1)

    return {
        "n": len(latencies_s),
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
    }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def warmup_s(rate: float, devices: int) -> float:
    """Long enough for every device to report twice at ``rate``, and at least 3 s.

    >>> warmup_s(6000, 10_000)
    3.3
    """
    return round(max(3.0, 2 * devices / rate), 1)


async def publish_paced(
    rate: float, duration: float, prefix: str, devices: int, probe_rate: float, warmup: float = 0
) -> dict[str, float]:
    """Publish ``rate`` messages/s for ``warmup`` + ``duration`` s; after the warm-up, every
    ``rate/probe_rate``-th message is a probe."""
    from bench.common import bench_publisher

    pub, acks = await bench_publisher("bench-lat", Settings().mqtt.max_inflight_messages)
    every = max(1, round(rate / probe_rate))
    seqs = [0] * devices
    sent = probes = 0
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < warmup + duration:
        probing = elapsed >= warmup
        # Catch up with the schedule every tick: messages go out in small bursts.
        for _ in range(int(elapsed * rate) - sent):
            now = time.time_ns()
            if probing and sent % every == 0:
                topic = f"{prefix}/bin/binp{probes}/up"
                body = {"ts": _iso(now), "temperature_c": PROBE_C, "fill_ratio": 0.3, "seq": 0}
                probes += 1
            else:
                d = sent % devices
                seqs[d] += 1
                topic = f"{prefix}/bin/bin{d}/up"
                body = {"ts": _iso(now), "temperature_c": 20.0, "fill_ratio": 0.3, "seq": seqs[d]}
            if len(pub.inflight) >= pub.window:
                await pub.wait_window()
            pub.publish(topic, orjson.dumps(body))
            sent += 1
        await asyncio.sleep(0.005)
    wall = time.monotonic() - t0
    await pub.drain(60)
    await pub.close()
    return {"sent": sent, "acked": acks.n, "probes": probes, "rate": sent / wall}


async def _poll_influx(
    s: Settings, expect: dict[str, tuple[int, int]], seen: dict[str, float], stop: asyncio.Event
) -> None:
    """Poll InfluxDB for the probes already in Kafka (``expect``) but not yet seen stored.

    The query names those series by tag (an index lookup): a field filter over the whole
    district scanned 10,000 series every 50 ms and kept InfluxDB at ~90 % of a core, which
    starved the pipeline being measured.
    """
    async with httpx.AsyncClient(timeout=10.0, auth=influxql.auth(s)) as client:
        while not stop.is_set():
            waiting = [d for d in list(expect) if d not in seen][:200]
            if not waiting:
                await asyncio.sleep(POLL_S)
                continue
            since = min(expect[d][0] for d in waiting) - 10**9
            ids = " OR ".join(f"\"device_id\" = '{d}'" for d in waiting)
            q = (
                f'SELECT "temperature_c", "device_id" FROM "{s.influx.retention_policy}"."bin" '
                f"WHERE ({ids}) AND time > {since}"
            )
            params = {"db": s.influx.database, "q": q, "epoch": "ns"}
            try:
                r = await client.get(f"{s.influx.url}/query", params=params)
                now = time.time_ns()
                for res in r.json().get("results", []):
                    for series in res.get("series", []) or []:
                        i_dev = series["columns"].index("device_id")
                        for row in series["values"]:
                            if row[i_dev] not in seen:
                                seen[row[i_dev]] = (now - row[0]) / 1e9
            except (httpx.HTTPError, ValueError):
                pass  # a missed poll only coarsens the figure
            await asyncio.sleep(POLL_S)


async def _follow_alerts(
    s: Settings,
    topic: str,
    seen: dict[str, float],
    sent: dict[str, tuple[int, int]],
    stop: asyncio.Event,
) -> None:
    c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=20)
            now = time.time_ns()
            for msgs in batch.values():
                for m in msgs:
                    ev = orjson.loads(m.value)
                    if ev.get("kind") == "bin_fire" and ev.get("state") == "raised":
                        seen.setdefault(ev["target"], (now - int(ev["ts"])) / 1e9)
                        sent.setdefault(ev["target"], (int(ev["ts"]), m.timestamp))
    finally:
        await c.stop()


async def _follow_probe_readings(
    s: Settings, topic: str, seen: dict[str, tuple[int, int]], stop: asyncio.Event
) -> None:
    """Probe readings as they land in Kafka: device -> (device ts ns, Kafka append ms)."""
    c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        c.subscribe([topic])
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=50, max_records=20_000)
            for msgs in batch.values():
                for m in msgs:
                    if m.key is not None and m.key.startswith(b"binp"):
                        rec = orjson.loads(m.value)
                        seen.setdefault(rec["device_id"], (rec["ts"], m.timestamp))
    finally:
        await c.stop()


def stages(
    readings: dict[str, tuple[int, int]], alerts: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    """Where the alert latency goes, from the Kafka record timestamps (CreateTime: when the
    gateway appended the reading, when the processor sent the alert) of each probe.

    >>> stages({"p": (1_000_000_000, 1_050)}, {"p": (1_000_000_000, 1_250)})["processor"]["p50_ms"]
    200.0
    """
    gw, proc = {}, {}
    for dev, (ts_ns, read_ms) in readings.items():
        gw[dev] = read_ms / 1e3 - ts_ns / 1e9
        if dev in alerts:
            proc[dev] = (alerts[dev][1] - read_ms) / 1e3

    def slowest(delays: dict[str, float]) -> list[str]:
        # Probes are numbered in publish order: is the tail a start-up effect or spread out?
        worst = heapq.nlargest(5, delays, key=delays.__getitem__)
        return [d.removeprefix("binp") for d in worst]

    return {
        "mqtt_gateway": summary(list(gw.values())),
        "processor": summary(list(proc.values())),
        "slowest_to_kafka": slowest(gw),
        "slowest_in_processor": slowest(proc),
    }


async def _measure(
    s: Settings, pipe: Pipeline, prefix: str, rate: float, duration: float, devices: int
) -> dict[str, Any]:
    stored: dict[str, float] = {}
    alerted: dict[str, float] = {}
    alert_sent: dict[str, tuple[int, int]] = {}
    in_kafka: dict[str, tuple[int, int]] = {}
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_poll_influx(s, in_kafka, stored, stop)),
        asyncio.create_task(_follow_alerts(s, pipe.topics["alerts"], alerted, alert_sent, stop)),
        asyncio.create_task(_follow_probe_readings(s, pipe.topics["readings"], in_kafka, stop)),
    ]
    warmup = warmup_s(rate, devices)
    pub = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.latency",
        "publish",
        f"--rate={rate}",
        f"--duration={duration}",
        f"--prefix={prefix}",
        f"--devices={devices}",
        f"--warmup={warmup}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await pub.communicate()
    if pub.returncode != 0:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise RuntimeError(f"latency publisher failed: {err.decode()[-1500:]}")
    stats = json.loads(out.decode().strip().splitlines()[-1])
    # Drain: every probe seen in both places, or 15 s of grace.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and min(len(stored), len(alerted)) < stats["probes"]:
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "offered_per_s": rate,
        "warmup_s": warmup,
        "published": stats,
        "influx": summary(list(stored.values())),
        "alert": summary(list(alerted.values())),
        "probes_missing_influx": stats["probes"] - len(stored),
        "probes_missing_alert": stats["probes"] - len(alerted),
        "stages": stages(in_kafka, alert_sent),
    }


def run(
    s: Settings, *, rate: float, duration: float, workdir: Path, devices: int = 10_000
) -> dict[str, Any]:
    from bench.common import broker_backlog

    backlog = broker_backlog(s)
    if backlog and backlog > 100_000:
        print(
            f"warning: Mosquitto stores {backlog:,} messages for dead sessions; its autosave "
            "will stall the pipeline and dominate the latency tail (docs/reliability.md)",
            file=sys.stderr,
        )
    workdir.mkdir(parents=True, exist_ok=True)
    rid = uuid.uuid4().hex[:6]
    prefix = f"city/xl{rid}"
    pipe = Pipeline(s, workdir, uplink_filter=f"{prefix}/+/+/up", rid=f"lat{rid}")
    asyncio.run(pipe.create_topics())
    try:
        pipe.start_gateway()
        pipe.start_processor()
        pipe.wait_ready()
        res = asyncio.run(_measure(s, pipe, prefix, rate, duration, devices))
        return {**res, "broker_backlog_before": backlog}
    finally:
        pipe.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", choices=["measure", "publish"], default="measure")
    ap.add_argument("--rate", type=float, default=2_500, help="messages (= readings) per s")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--probe-rate", type=float, default=20.0, help="probes per s")
    ap.add_argument("--prefix", default="city/xlat", help="publish: topic prefix")
    ap.add_argument("--warmup", type=float, default=0.0, help="publish: s before probes")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    if a.role == "publish":
        stats = asyncio.run(
            publish_paced(a.rate, a.duration, a.prefix, a.devices, a.probe_rate, a.warmup)
        )
        print(json.dumps(stats), flush=True)
        return
    s = Settings()
    wd = a.workdir or s.state_dir / "bench" / f"latency-{time.strftime('%Y%m%d-%H%M%S')}"
    print(json.dumps(run(s, rate=a.rate, duration=a.duration, workdir=wd, devices=a.devices)))


if __name__ == "__main__":
    main()
