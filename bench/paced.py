"""Processor CPU per reading under light and moderate load: readings fed at paced rates.

``bench.processor`` measures one processor draining a full topic, its best case. A city's
processors mostly run far below that: a megacity's 10,000 readings/s over several processors.
There the fixed costs of each batch and fetch (the clock tick, the InfluxDB request, the
commit, Kafka's fetch requests) are paid for few readings. This starts one ``citywatch
process`` on an empty topic, produces ``bench.processor.records`` into it at each rate for
``--seconds``, waits until the processor has committed them, and reports the processor's CPU
(from /proc) per reading and as a share of one core, with its idle CPU beside.

Example:
    $ .venv/bin/python -m bench.paced --seconds 20 --rates 1000 3000 10000 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import cpu_s
from bench.processor import _delete, committed_total, create_topic, records, spawn
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings

TICK_S = 0.01


async def pace(
    s: Settings, topic: str, recs: list[tuple[bytes, bytes]], first: int, rate: int, n: int
) -> None:
    """Produce ``n`` of ``recs`` (cyclically, from index ``first``) at ``rate`` per second."""
    p = AIOKafkaProducer(**client_kwargs(s), linger_ms=5, acks=1, compression_type="lz4")
    await p.start()
    try:
        t0 = time.monotonic()
        sent = 0
        futs = []
        while sent < n:
            due = min(n, int((time.monotonic() - t0) * rate))
            for i in range(sent, due):
                k, v = recs[(first + i) % len(recs)]
                futs.append(await p.send(topic, v, key=k))
            sent = max(sent, due)
            await asyncio.sleep(TICK_S)
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def _wait_committed(s: Settings, group: str, total: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while asyncio.run(committed_total(s, group)) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the processor did not commit {total} readings")
        time.sleep(0.2)


def run(s: Settings, rates: list[int], seconds: float, idle_s: float = 10.0) -> dict[str, Any]:
    """Idle CPU, then CPU per reading at each rate, of one ``citywatch process``."""
    topic = f"citywatch.bench.{uuid.uuid4().hex[:6]}"
    group = f"bench-paced-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(s, topic))
    # Enough for every rate: wrapping round would replay old timestamps (no-ops for the rules).
    recs = records(int(sum(rates) * seconds) + 1, 5_000)
    proc = spawn(topic, group)
    out: dict[str, Any] = {"rates": []}
    try:
        time.sleep(8.0)  # started and assigned
        c0 = cpu_s(proc.pid)
        time.sleep(idle_s)
        idle = (cpu_s(proc.pid) - c0) / idle_s
        out["idle_core_share"] = idle
        total = 0
        for rate in rates:
            n = int(rate * seconds)
            c0, t0 = cpu_s(proc.pid), time.monotonic()
            asyncio.run(pace(s, topic, recs, total, rate, n))
            total += n
            _wait_committed(s, group, total)
            el, cpu = time.monotonic() - t0, cpu_s(proc.pid) - c0
            out["rates"].append(
                {"rate": rate, "n": n, "core_share": cpu / el, "us_per_reading": cpu / n * 1e6}
            )
    finally:
        proc.terminate()
        proc.wait(60)
        asyncio.run(_delete(s, topic))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", type=int, nargs="+", default=[1_000, 3_000, 10_000, 20_000])
    a = ap.parse_args()
    res = run(Settings(), a.rates, a.seconds)
    print(f"processor idle: {res['idle_core_share']:.1%} of a core")
    for r in res["rates"]:
        print(
            f"{r['rate']:>7,}/s: {r['core_share']:6.1%} of a core, "
            f"{r['us_per_reading']:6.1f} µs CPU per reading"
        )
    print(f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
