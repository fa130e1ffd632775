"""Processor throughput beside a bare aiokafka consumer reading the same topic, in one run.

Fills a benchmark topic with N canonical readings of all four families (100 per device, see
``devices_for``), then measures
(1) a bare aiokafka consumer reading it end to end, and (2) one ``citywatch process`` with all
rules and the default detector, consuming it with a fresh group and writing to InfluxDB —
timed until its committed offsets reach the log end, and (3) the same process with every rule
disabled and the pass-through detector (``floor_rules``): what fetching, parsing, line protocol,
the InfluxDB write and the commit cost on their own, the most any rule set could reach, and
(4) ``bare_pipeline``: a bare consumer of the same readings' pre-built lines that only writes
them to InfluxDB and commits: the most any processor could reach on this machine. Targets:
>= 50,000 readings/s and >= 0.5 x the raw consumer.

Example:
    $ .venv/bin/python -m bench.processor --n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import cpu_s
from citywatch import influxql
from citywatch.kafkautil import client_kwargs, end_offsets
from citywatch.settings import Settings
from ingest.kafka_sink import PartitionBatches

REPO = Path(__file__).resolve().parents[1]
S = 1_000_000_000


def records(n: int, devices: int = 10_000) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``n`` canonical readings: rounds of one reading per device, 10 s apart.

    10 s is within every family's expected interval (vehicles report every 10 s), so no
    device looks silent between its readings. Rounds 60 s apart, as before 2026-12-04, made
    every vehicle "silent" between two batches and back again: 47,500 device_silence events
    per 200,000 readings, a fifth of the processor's time spent on alerts no city would see.
    """
    rnd = random.Random(1)
    t0 = (time.time_ns() // S - 86_400) * S
    out = []
    for i in range(n):
        d = i % devices
        k = i // devices
        fam = ("streetlight", "bin", "vehicle", "dust")[d % 4]
        rec: dict[str, object] = {
            "device_id": f"{fam[:4]}-b{d}",
            "family": fam,
            "district": f"d{d % 5}",
            "seq": k,
            "late": False,
        }
        ts = t0 + k * 10 * S + d * 1000
        rec["ts"] = rec["received_at"] = ts
        if fam == "streetlight":
            rec |= {
                "power_state": "on",
                "dimming_pct": 100.0,
                "power_w": 80 + rnd.random(),
                "voltage_v": 230.0,
                "current_a": 0.36,
                "power_factor": 0.95,
                "circuit_id": f"c{d // 20}",
            }
        elif fam == "bin":
            rec |= {"fill_ratio": min(1.0, k * 0.01), "temperature_c": 15 + rnd.random()}
        elif fam == "vehicle":
            rec |= {
                "lat": 31.2 + d * 1e-5,
                "lon": 121.4 + k * 1e-5,
                "speed_kmh": 30.0,
                "heading_deg": 90.0,
                "ignition": True,
                "vehicle_kind": "garbage",
            }
        else:
            rec |= {
                "pm10_ugm3": 40 + 5 * rnd.random(),
                "pm25_ugm3": 20.0,
                "noise_dba": 55.0,
                "site_id": f"s{d // 3}",
            }
        out.append((str(rec["device_id"]).encode(), orjson.dumps(rec)))
    return out


def devices_for(n: int) -> int:
    """Devices for ``n`` readings: 100 readings each (10,000 at most) so detector windows are
    nearly full, as in a steady stream. With 20 each (before 2026-12-04) the sentinel sorted
    20 values per point where a live series sorts 128, and the bench overstated the steady
    rate by a third."""
    return max(1, min(10_000, n // 100))


async def create_topic(s: Settings, topic: str) -> None:
    """An empty benchmark readings topic, with as many partitions as the real one."""
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, s.kafka.readings_partitions, 1)])
    finally:
        await admin.close()


async def fill(
    s: Settings,
    topic: str,
    n: int,
    recs: list[tuple[bytes, bytes]] | None = None,
    *,
    create: bool = True,
) -> None:
    """Create ``topic`` (unless ``create`` is False) and produce ``recs`` (by default
    ``records(n)``) into it."""
    if create:
        await create_topic(s, topic)
    p = AIOKafkaProducer(
        **client_kwargs(s),
        linger_ms=50,
        acks=1,
        max_batch_size=1024 * 1024,
        compression_type="lz4",
    )
    await p.start()
    recs = recs if recs is not None else records(n, devices_for(n))
    # Whole batches per partition, as the gateway sends them (ingest.kafka_sink): aiokafka's
    # per-record send made the fill as slow as the processor, so readings written while
    # processors run (bench.scaling) arrived no faster than they were consumed.
    batches = PartitionBatches(p, linger_s=0.05)
    await batches.start([topic])
    acks = {batches.append(topic, k, v, []) for k, v in recs}  # one future per batch
    await batches.flush()
    await asyncio.gather(*acks)
    await batches.close(ConnectionError("fill done"))
    await p.stop()


def bare_consumer(s: Settings, topic: str, kind: str) -> AIOKafkaConsumer:
    """A consumer of ``topic`` from its start, in a fresh group, with large fetches."""
    return AIOKafkaConsumer(
        topic,
        **client_kwargs(s),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"bench-{kind}-{uuid.uuid4().hex[:6]}",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024**2,
    )


async def raw_consume(
    s: Settings, topic: str, n: int, cpu: dict[str, float] | None = None
) -> float:
    """Readings/s of a bare consumer; ``cpu`` (if given) gets its readings per CPU-second."""
    c = bare_consumer(s, topic, "raw")
    await c.start()
    got, t0 = 0, 0.0
    while got < n:
        batch = await c.getmany(timeout_ms=500, max_records=5000)
        if batch and not t0:
            t0, c0 = time.monotonic(), time.process_time()
        for msgs in batch.values():
            for m in msgs:
                orjson.loads(m.value)  # the processor parses every record too
            got += sum(len(m) for m in batch.values())
    rate = got / (time.monotonic() - t0)
    if cpu is not None:
        cpu["raw_per_cpu_s"] = got / max(time.process_time() - c0, 1e-9)
    await c.stop()
    return rate


async def fill_lines(s: Settings, topic: str, n: int) -> list[bytes]:
    """``fill``, but each value is the reading's line protocol as the processor writes it
    (``processors.sinks.lines.reading_line``): the input of ``bare_pipeline``. Returns the
    lines."""
    from processors.sinks.lines import reading_line

    recs = [(k, reading_line(orjson.loads(v)).encode()) for k, v in records(n, devices_for(n))]
    await fill(s, topic, n, recs)
    return [line for _, line in recs]


async def bare_pipeline(
    s: Settings, topic: str, n: int, db: str, batch: int = 20_000, writers: int = 2
) -> float:
    """Readings/s of a bare consumer that writes each record's pre-built line to InfluxDB
    (database ``db``) in batches like the processor's (its ``max_batch``), fetching the
    next batch while ``writers`` writes are in flight, and commits each batch's offsets once
    InfluxDB confirmed it.

    No parsing, no rules, no line protocol: only what every processor of this design must
    do (fetch, write, commit), so its rate is the most any processor reaches on this
    machine, with the InfluxDB server sharing its cores as it does in the pipeline.
    """
    c = bare_consumer(s, topic, "bare")
    auth = influxql.auth(s)
    url, params = influxql.write_request(s, db)
    # Writes in flight while the next batch is fetched; the bounded queue holds one more.
    # Each item: lines, the offsets to commit, its readings, and the events that order the
    # commits (a batch commits once written and once the batch before it has committed).
    Item = tuple[bytes, dict[Any, int], int, asyncio.Event, asyncio.Event]
    queue: asyncio.Queue[Item | None] = asyncio.Queue(1)
    written = 0

    async def writer(client: httpx.AsyncClient) -> None:
        nonlocal written
        while (item := await queue.get()) is not None:
            body, offsets, count, before, mine = item
            r = await client.post(url, params=params, content=body, auth=auth)
            r.raise_for_status()
            await before.wait()
            await c.commit(offsets)
            written += count
            mine.set()

    async def put(item: Item | None) -> None:
        # A writer that failed (InfluxDB refused a batch) raises here instead of leaving the
        # queue full for ever.
        putting = asyncio.create_task(queue.put(item))
        while not putting.done():
            running = {task for task in tasks if not task.done()}
            done, _ = await asyncio.wait({putting, *running}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {putting}:
                if task.exception() is not None:
                    putting.cancel()
                    task.result()

    await c.start()
    try:
        async with httpx.AsyncClient(timeout=120.0) as client:
            tasks = [asyncio.create_task(writer(client)) for _ in range(writers)]
            try:
                got, t0 = 0, 0.0
                last = asyncio.Event()
                last.set()
                while got < n:
                    fetched = await c.getmany(timeout_ms=500, max_records=batch)
                    if not fetched:
                        continue
                    t0 = t0 or time.monotonic()
                    values = [m.value for msgs in fetched.values() for m in msgs]
                    offsets = {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items()}
                    mine = asyncio.Event()
                    await put((b"\n".join(values), offsets, len(values), last, mine))
                    last = mine
                    got += len(values)
                for _ in tasks:
                    await put(None)
                await asyncio.gather(*tasks)
            finally:
                # After a failure the other writers are stopped, and their errors collected.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await c.stop()
    return written / (time.monotonic() - t0)


BARE_DB = "citywatch_bench_bare"


def bare(s: Settings, n: int, batch: int = 20_000, writers: int = 2) -> float:
    """``bare_pipeline`` over n readings' lines, in a scratch database dropped afterwards."""
    topic = f"citywatch.bench.lines.{uuid.uuid4().hex[:6]}"
    lines = asyncio.run(fill_lines(s, topic, n))
    influxql.execute(s, f'CREATE DATABASE "{BARE_DB}"')
    try:
        # The first round (a reading per device) written beforehand, so the timed run writes
        # into existing series, as the processor's runs do, not creating them.
        influxql.write(s, b"\n".join(lines[: devices_for(n)]), db=BARE_DB)
        return asyncio.run(bare_pipeline(s, topic, n, BARE_DB, batch, writers))
    finally:
        influxql.execute(s, f'DROP DATABASE "{BARE_DB}"')
        asyncio.run(_delete(s, topic))


def floor_rules(path: Path) -> Path:
    """Write a rules file that disables every rule and scores with the pass-through detector.

    Example:
        >>> import tempfile
        >>> from processors.config import RulesConfig
        >>> from processors.rules.registry import RULES
        >>> cfg = RulesConfig.load(floor_rules(Path(tempfile.mkdtemp()) / "floor.toml"))
        >>> sorted(cfg.disabled_rules) == sorted(RULES), cfg.detectors.name
        (True, 'passthrough')
    """
    from processors.rules.registry import RULES

    names = ", ".join(json.dumps(name) for name in RULES)
    path.write_text(f'disabled_rules = [{names}]\n\n[detectors]\nname = "passthrough"\n')
    return path


async def committed_total(s: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    try:
        offs = await admin.list_consumer_group_offsets(group)
        return sum(o.offset for o in offs.values() if o.offset > 0)
    finally:
        await admin.close()


def spawn(
    topic: str, group: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """One ``citywatch process`` reading ``topic`` in consumer group ``group``, with no
    warm-up replay and no metrics port."""
    env = {
        **os.environ,
        "CITYWATCH_KAFKA__READINGS_TOPIC": topic,
        "CITYWATCH_PROCESSOR__GROUP_ID": group,
        "CITYWATCH_PROCESSOR__METRICS_PORT": "0",
        "CITYWATCH_PROCESSOR__WARMUP_S": "0",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "citywatch", "process"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def processor(
    s: Settings,
    topic: str,
    n: int,
    cpu: dict[str, float] | None = None,
    rules_file: Path | None = None,
) -> float:
    """Readings/s of one ``citywatch process``; ``cpu`` gets its readings per CPU-second.

    ``rules_file`` replaces the settings' rules (``floor_rules`` for the floor)."""
    group = f"bench-proc-{uuid.uuid4().hex[:6]}"
    extra = {} if rules_file is None else {"CITYWATCH_PROCESSOR__RULES_FILE": str(rules_file)}
    p = spawn(topic, group, extra)
    end = sum(asyncio.run(end_offsets(s, topic)).values())
    t0 = None
    done = 0
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        done = asyncio.run(committed_total(s, group))
        if done and t0 is None:
            t0, first, c0 = time.monotonic(), done, cpu_s(p.pid)
        if done >= end:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - (t0 or time.monotonic())
    if cpu is not None and t0:
        cpu["processor_per_cpu_s"] = (done - first) / max(cpu_s(p.pid) - c0, 1e-9)
    p.terminate()
    p.wait(60)
    return (done - first) / max(elapsed, 1e-9) if t0 else 0.0


def processor_floor(s: Settings, topic: str, n: int, cpu: dict[str, float] | None = None) -> float:
    """``processor`` with ``floor_rules``: every rule off, the pass-through detector."""
    with tempfile.TemporaryDirectory() as tmp:
        return processor(s, topic, n, cpu, floor_rules(Path(tmp) / "floor.toml"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    a = ap.parse_args()
    s = Settings()
    topic = f"citywatch.bench.{uuid.uuid4().hex[:6]}"
    asyncio.run(fill(s, topic, a.n))
    cpu: dict[str, float] = {}
    raw = asyncio.run(raw_consume(s, topic, a.n, cpu))
    proc = processor(s, topic, a.n, cpu)
    floor_cpu: dict[str, float] = {}
    floor = processor_floor(s, topic, a.n, floor_cpu)
    asyncio.run(_delete(s, topic))
    bare_rate = bare(s, a.n)
    print(f"raw aiokafka consumer (+ JSON parse): {raw:10,.0f} readings/s")
    print(f"citywatch process (rules, detector, InfluxDB, commit): {proc:10,.0f} readings/s")
    print(f"same, no rules, pass-through detector (floor): {floor:10,.0f} readings/s")
    print(f"bare consumer -> InfluxDB, pre-built lines, commit: {bare_rate:10,.0f} readings/s")
    print(
        f"ratio processor/raw: {proc / raw:.2f}; floor/raw: {floor / raw:.2f}   "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"per CPU-second: raw {cpu.get('raw_per_cpu_s', 0):,.0f}, "
        f"processor {cpu.get('processor_per_cpu_s', 0):,.0f}, "
        f"floor {floor_cpu.get('processor_per_cpu_s', 0):,.0f} readings"
    )
    print(
        json.dumps(
            {
                "raw_per_s": raw,
                "processor_per_s": proc,
                "ratio": proc / raw,
                "floor_per_s": floor,
                "floor_ratio": floor / raw,
                "floor_per_cpu_s": floor_cpu.get("processor_per_cpu_s", 0.0),
                "bare_per_s": bare_rate,
                "bare_ratio": bare_rate / raw,
                "n": a.n,
                **cpu,
            }
        )
    )


async def _delete(s: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    await admin.delete_topics([topic])
    await admin.close()


if __name__ == "__main__":
    main()
