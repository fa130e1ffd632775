"""Gateway throughput beside the raw MQTT ceiling, measured in one run on the local stack.

1. raw: a bare paho subscriber (QoS 1) receives N messages from a publisher process;
2. gateway: one gateway process forwards the same kind of N messages to Kafka, counted as they
   land in ``citywatch.readings``.
Rates are receive spans (first to last message) so that start-up costs do not count. Prints
both rates and their ratio; the issue's targets are >= 20,000 readings/s and >= 0.5 x raw.
Because the two cores are shared with the broker, Kafka, the publisher (and whatever else
runs), wall rates swing with load; the CPU time each side spends per message is much steadier,
so the bench also prints readings per CPU-second of the subscriber / gateway process.

Example:
    $ .venv/bin/python -m bench.gateway --n 50000 --batch 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.common import cpu_s
from citywatch.chaos import Worker
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
#: The count stops after this long without a new reading (the burst itself takes seconds).
IDLE_S = 60.0


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _last_json(out: str) -> dict[str, float]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(out[-2000:])


def raw(n: int, batch: int) -> tuple[float, float]:
    prefix = f"city/raw{uuid.uuid4().hex[:6]}"
    sub = _spawn(["-m", "bench.common", "subscribe", "--n", str(n), "--prefix", prefix])
    assert sub.stdout is not None
    sub.stdout.readline()  # "ready"
    time.sleep(0.5)
    pub = _spawn(
        ["-m", "bench.common", "publish", "--n", str(n), "--prefix", prefix, "--batch", str(batch)]
    )
    pub.communicate(timeout=600)
    out, _ = sub.communicate(timeout=600)
    st = _last_json(out)
    cpu = max(st["cpu_last"] - st["cpu_first"], 1e-9)
    return st["n"] / max(st["last"] - st["first"], 1e-9), st["n"] / cpu


async def _count_kafka(
    s: Settings, prefix: str, expect: int, timeout_s: float, ready: asyncio.Event
) -> dict[str, float]:
    c = AIOKafkaConsumer(
        s.kafka.readings_topic,
        **client_kwargs(s),
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await c.start()
    await c.seek_to_end()
    for tp in c.assignment():
        await c.position(tp)
    ready.set()
    n, first, last = 0, 0.0, 0.0
    marker = prefix.split("/")[1].encode()
    start = time.monotonic()
    deadline = start + timeout_s
    try:
        while n < expect and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200, max_records=20000)
            now = time.monotonic()
            for msgs in batch.values():
                got = sum(1 for m in msgs if marker in m.value)
                if got:
                    first = first or now
                    n += got
                    last = now
            if now - (last or start) > IDLE_S:
                break  # nothing more is coming: report what arrived instead of waiting on
    finally:
        await c.stop()
    return {"n": n, "first": first, "last": last}


def gateway(n: int, batch: int) -> tuple[float, float, float]:
    s = Settings()
    rid = uuid.uuid4().hex[:6]
    district = f"gwb{rid}"
    prefix = f"city/{district}"
    env = {
        "CITYWATCH_GATEWAY__INSTANCE": f"bench-{rid}",
        "CITYWATCH_GATEWAY__UPLINK_FILTER": f"{prefix}/+/+/up",
        "CITYWATCH_GATEWAY__METRICS_PORT": "0",
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "60",
    }
    # Logged to a file, not a pipe nobody reads: a chatty gateway cannot block on it, and the
    # log of a failed run is kept.
    log = s.state_dir / "bench" / f"gateway-{rid}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    gw = Worker("gateway", ["gateway"], env, log)
    gw.start()
    assert gw.p is not None
    pid = gw.p.pid

    async def run() -> dict[str, float]:
        ready = asyncio.Event()
        counter = asyncio.create_task(_count_kafka(s, prefix, n * batch, 600, ready))
        await ready.wait()
        marks["cpu0"] = cpu_s(pid)
        pub = await asyncio.create_subprocess_exec(
            PY,
            "-m",
            "bench.common",
            "publish",
            "--n",
            str(n),
            "--prefix",
            prefix,
            "--batch",
            str(batch),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        await pub.communicate()
        got = await counter
        marks["cpu1"] = cpu_s(pid)
        return got

    marks: dict[str, float] = {}
    try:
        # Not a fixed sleep: a gateway that subscribes after the burst is published gets none
        # of it (one harness run measured 0/s that way, its Kafka producer slow to start).
        gw.wait_log("up (mode", 90)
        st = asyncio.run(run())
    finally:
        gw.stop()
    if st["n"] == 0:
        raise RuntimeError(f"the gateway forwarded none of {n} readings ({log}):\n{gw.log_tail()}")
    span = max(st["last"] - st["first"], 1e-9)
    return st["n"] / span, st["n"], st["n"] / max(marks["cpu1"] - marks["cpu0"], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="MQTT messages per phase")
    ap.add_argument("--batch", type=int, default=1, help="readings per MQTT message")
    a = ap.parse_args()
    raw_msgs, raw_cpu = raw(a.n, a.batch)
    gw_readings, got, gw_cpu = gateway(a.n, a.batch)
    raw_readings = raw_msgs * a.batch
    load = os.getloadavg()[0]
    print(f"messages: {a.n} x {a.batch} reading(s); gateway delivered {got:.0f} readings")
    print(f"raw MQTT subscriber : {raw_msgs:10,.0f} msg/s  = {raw_readings:10,.0f} readings/s")
    gw_msgs = gw_readings / a.batch
    print(f"gateway -> Kafka    : {gw_msgs:10,.0f} msg/s  = {gw_readings:10,.0f} readings/s")
    print(f"ratio gateway/raw   : {gw_readings / raw_readings:.2f}   (load average {load:.1f})")
    print(f"per CPU-second      : raw {raw_cpu * a.batch:10,.0f} readings, gateway {gw_cpu:10,.0f}")
    print(
        json.dumps(
            {
                "raw_msgs_per_s": raw_msgs,
                "gateway_readings_per_s": gw_readings,
                "ratio": gw_readings / raw_readings,
                "raw_readings_per_cpu_s": raw_cpu * a.batch,
                "gateway_readings_per_cpu_s": gw_cpu,
                "load_average": load,
                "batch": a.batch,
                "n": a.n,
            }
        )
    )


if __name__ == "__main__":
    main()
