"""Scaling out on one machine: 1 vs 2 gateway processes, 1 vs 2 processor processes.

Gateways: N gateways share one MQTT subscription (``$share/...``, ``gateway.subscription =
"shared"``) on a benchmark district; a publisher process sends ``--gateway-n`` QoS 1
readings; the rate is the growth of the benchmark readings topic's end offsets over its busy
span. Processors: ``bench.processor.fill`` writes ``--processor-n`` canonical readings to a
benchmark topic; N processors in one consumer group consume it; the rate is the growth of the
group's committed offsets. Everything else on the machine (Mosquitto, Kafka, InfluxDB, the
load generator) shares the same 2 cores, so expect far less than 2x.

Example:
    $ .venv/bin/python -m bench.scaling --gateway-n 30000 --processor-n 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.e2e import REPO, Pipeline, sustained_rate
from bench.processor import committed_total, fill
from citywatch.kafkautil import client_kwargs, end_offsets
from citywatch.settings import Settings


def _names(kind: str, count: int) -> list[str]:
    return [kind] + [f"{kind}{i + 1}" for i in range(1, count)]


def _follow(
    read: Any, target: int, timeout_s: float, idle_s: float = 15.0
) -> list[tuple[float, float]]:
    """Samples (t, read()) every 0.25 s until ``target`` or ``idle_s`` without growth."""
    series: list[tuple[float, float]] = []
    t0 = time.monotonic()
    last_growth = t0
    while time.monotonic() - t0 < timeout_s:
        v = float(read())
        now = time.monotonic()
        if series and v > series[-1][1]:
            last_growth = now
        series.append((now - t0, v))
        if v >= target or now - last_growth > idle_s:
            break
        time.sleep(0.25)
    return series


def gateways(s: Settings, n: int, count: int, workdir: Path) -> dict[str, float]:
    prefix = f"city/gs{uuid.uuid4().hex[:6]}"
    pipe = Pipeline(
        s,
        workdir,
        uplink_filter=f"{prefix}/+/+/up",
        env_extra={"CITYWATCH_GATEWAY__SUBSCRIPTION": "shared"},
    )
    asyncio.run(pipe.create_topics())
    try:
        for name in _names("gateway", count):
            pipe.start_gateway(name)
        pipe.wait_ready()
        topic = pipe.topics["readings"]
        pub = subprocess.Popen(
            [sys.executable, "-m", "bench.common", "publish", "--n", str(n), "--prefix", prefix],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        series = _follow(lambda: sum(asyncio.run(end_offsets(s, topic)).values()), n, 600)
        _, err = pub.communicate(timeout=120)
        if pub.returncode != 0:
            raise RuntimeError(f"publisher failed: {err.decode()[-1500:]}")
    finally:
        pipe.close()
    rate, span = sustained_rate(series)
    return {"per_s": rate, "span_s": span, "readings": series[-1][1] if series else 0}


async def group_members(s: Settings, group: str) -> int:
    """Members of consumer group ``group`` once it is stable (0 while it rebalances)."""
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([group])
        # DescribeGroups v0+: (error_code, group_id, state, protocol_type, protocol, members)
        _, _, state, _, _, members = resp.groups[0][:6]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


def processors(s: Settings, n: int, count: int, workdir: Path) -> dict[str, float]:
    """Readings/s of ``count`` processors in one group, in their steady state: they join
    the group before the readings are written. Joining while a backlog is being worked
    on, a second processor makes the group rebalance, and each replays its new partitions'
    last 15 minutes (processors.app): here every reading written so far, which measured
    the replay, not the scaling (0.52-0.71 x in the runs of 2026-12-07 16:13-22:49)."""
    pipe = Pipeline(s, workdir)
    topic, group = pipe.topics["readings"], f"citywatch-bench-{pipe.rid}"
    asyncio.run(pipe.create_topics())
    try:
        for name in _names("processor", count):
            pipe.start_processor(name)
        deadline = time.monotonic() + 120
        while asyncio.run(group_members(s, group)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} processors did not join {group} in 120 s")
            time.sleep(0.5)
        writer = threading.Thread(target=lambda: asyncio.run(fill(s, topic, n, create=False)))
        writer.start()
        series = _follow(lambda: asyncio.run(committed_total(s, group)), n, 900, idle_s=60)
        writer.join()
    finally:
        pipe.close()
    rate, span = sustained_rate(series)
    return {"per_s": rate, "span_s": span, "readings": series[-1][1] if series else 0}


def run(s: Settings, *, gateway_n: int, processor_n: int, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for count in (1, 2):
        out[f"gateways_{count}"] = gateways(s, gateway_n, count, workdir)
    for count in (1, 2):
        out[f"processors_{count}"] = processors(s, processor_n, count, workdir)
    for kind in ("gateways", "processors"):
        one = out[f"{kind}_1"]["per_s"]
        out[f"{kind}_speedup"] = out[f"{kind}_2"]["per_s"] / one if one else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateway-n", type=int, default=30_000)
    ap.add_argument("--processor-n", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    s = Settings()
    wd = a.workdir or s.state_dir / "bench" / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}"
    print(json.dumps(run(s, gateway_n=a.gateway_n, processor_n=a.processor_n, workdir=wd)))


if __name__ == "__main__":
    main()
