"""What checkpoints cost: bytes per device, CPU to write and restore, Kafka round trip.

Feeds an Engine ``--readings`` (150) each from N devices of all families (every detector
window full, as in bench.memory), then measures in one run:
(1) serialising every device's detector states and rules' learning into its checkpoint record (what
``processors.checkpoints`` does each ``checkpoint_s``), as CPU per device and bytes per record;
(2) restoring them: decoding, ``set_state`` into fresh detectors and the rules' learning into
a fresh engine, CPU per device;
(3) the real thing on the local stack: ``Checkpoints.save`` of all devices to the checkpoint
topic (wall and CPU time: serialising and producing) and ``Checkpoints.load`` back, under a
group of its own; and relates the CPU of (3) to the processor's CPU per reading
(``--reading-us``, from bench.processor):
the share of a processor's CPU that checkpoints take for devices reporting at a given interval.

Example:
    $ .venv/bin/python -m bench.checkpoints --devices 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import orjson

from bench.processor import records
from citywatch.settings import Settings
from processors.checkpoints import Checkpoints, decode, encode
from processors.config import RulesConfig
from processors.detectors.registry import create
from processors.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--readings", type=int, default=150, help="per device")
    ap.add_argument("--reading-us", type=float, default=12.6, help="processor CPU per reading")
    a = ap.parse_args()
    recs = [orjson.loads(v) for _, v in records(a.devices * a.readings, devices=a.devices)]
    eng = Engine(RulesConfig())
    for i in range(0, len(recs), 5000):
        eng.process(recs[i : i + 5000])
    last = {r["device_id"]: int(r["ts"]) for r in recs}
    name = eng.detector_name
    series = len(eng.detectors)

    t0 = time.process_time()
    series_of = eng.series_of(last)
    blobs = {}
    for dev, ts in last.items():
        states = {m: d.get_state() for m, d in series_of.get(dev, ())}
        rules = eng.learnt(dev)
        if states or rules:  # as Checkpoints.save: nothing learnt, no record
            blobs[dev] = encode(name, ts, states, rules)
    write_s = time.process_time() - t0
    n = len(blobs)
    size = sum(map(len, blobs.values())) / n
    learnt = sum(b'"rules"' in blob for blob in blobs.values())

    t0 = time.process_time()
    twin = Engine(RulesConfig())
    for dev, blob in blobs.items():
        snap = decode(blob, name)
        assert snap is not None
        for state in snap[1].values():
            create(name).set_state(state)
        twin.restore(dev, snap[0], {}, snap[2])
    read_s = time.process_time() - t0

    s = Settings()
    s.processor.group_id = f"bench-checkpoints-{uuid.uuid4().hex[:8]}"
    save_s, save_cpu, load_s, loaded = asyncio.run(_kafka(s, eng, last))

    write_us = write_s / n * 1e6
    # What the processor pays per device and checkpoint: serialising it and producing it.
    save_us = save_cpu / n * 1e6
    out = {
        "devices": n,
        "series": series,
        "devices_with_rule_learning": learnt,
        "bytes_per_device": size,
        "write_us_per_device": write_us,
        "restore_us_per_device": read_s / n * 1e6,
        "kafka_save_s": save_s,
        "kafka_save_cpu_us_per_device": save_us,
        "kafka_load_s": load_s,
        "kafka_loaded": loaded,
    }
    print(f"{n:,} devices ({series:,} detector series; {learnt:,} with rules' learning too)")
    print(f"checkpoint record: {size:,.0f} bytes per device (JSON, before lz4)")
    print(f"write: {write_us:.1f} us CPU per device; restore: {read_s / n * 1e6:.1f} us")
    print(
        f"Kafka: save {save_s:.2f} s ({save_us:.1f} us CPU per device, serialising included), "
        f"load {load_s:.2f} s ({loaded:,} devices back)"
    )
    every_s = s.processor.checkpoint_s
    print(f"share of the processor's CPU, checkpoints every {every_s:.0f} s:")
    for every in (10, 60, 300, 900):
        # A device is written once per checkpoint in which it reported: at most once per
        # reading, and once per checkpoint_s / every readings when it reports faster.
        per_reading = min(1.0, every / every_s)
        share = save_us * per_reading / (a.reading_us + save_us * per_reading)
        out[f"cpu_share_every_{every}s"] = share
        print(f"  a device reporting every {every:>3} s: {share:.1%}")
    print(json.dumps(out))


async def _kafka(s: Settings, eng: Engine, last: dict[str, int]) -> tuple[float, float, float, int]:
    parts = s.kafka.readings_partitions
    cp = Checkpoints(s, eng, "bench")
    await cp.start()
    try:
        for i, (dev, ts) in enumerate(last.items()):
            cp.touched.setdefault(i % parts, {})[dev] = ts
        t0, c0 = time.perf_counter(), time.process_time()
        await cp.save()
        save_s, save_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        loaded = await cp.load(list(range(parts)), timeout_s=120.0)
        load_s = time.perf_counter() - t0
    finally:
        await cp.stop()
    return save_s, save_cpu, load_s, loaded


if __name__ == "__main__":
    main()
