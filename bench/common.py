"""Shared pieces of the benchmarks: a fast QoS 1 publisher and a bare subscriber, as processes.

Both run as separate processes so that the thing measured does not share an event loop (or
the GIL) with the load generator.

Example:
    $ python -m bench.common publish --n 1000 --prefix city/b1 --batch 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citywatch import credentials
from citywatch.mqtt import end_session
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from ingest.simulator.mqttpub import FastPublisher


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (from /proc).

    Raises OSError once the process is gone: a benchmark must not divide by a stale figure.

    Example:
        >>> cpu_s(os.getpid()) > 0.0
        True
    """
    # Fields after the ")" that ends the command name: utime and stime are the 12th/13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def payload(i: int, batch: int) -> bytes:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if batch == 1:
        return orjson.dumps(
            {
                "ts": ts,
                "fill_ratio": (i % 100) / 100,
                "temperature_c": 18.5,
                "battery_v": 3.6,
                "seq": i,
            }
        )
    return orjson.dumps(
        [
            {
                "ts": ts,
                "fill_ratio": (i % 100) / 100,
                "temperature_c": 18.5,
                "battery_v": 3.6,
                "seq": i * batch + j,
            }
            for j in range(batch)
        ]
    )


class AckCount:
    """``on_ack`` for a FastPublisher that counts acknowledged publishes."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _token: object, ok: bool) -> None:
        self.n += ok


async def bench_publisher(name: str, window: int) -> tuple[FastPublisher, AckCount]:
    """A connected lean QoS 1 publisher (as the simulator) and its ack counter."""
    s = Settings()
    acks = AckCount()
    pub = FastPublisher(
        **mqtt_kwargs(s, "simulator"),
        client_id=f"{name}-{time.time_ns()}",
        on_ack=acks,
        window=window,
    )
    await pub.connect()
    return pub, acks


async def publish(n: int, prefix: str, batch: int, window: int, devices: int) -> dict[str, float]:
    """Publish n QoS 1 messages as fast as the broker acknowledges them.

    Uses the simulator's lean publisher (ingest.simulator.mqttpub): a paho publisher tops out
    near 4,000 msg/s here and would be the ceiling of both phases of a benchmark.
    """
    pub, acks = await bench_publisher("bench-pub", window)
    bodies = [payload(i, batch) for i in range(min(n, 5000))]
    topics = [f"{prefix}/bin/bin-bench-{d}/up" for d in range(devices)]
    t0 = time.monotonic()
    for i in range(n):
        if len(pub.inflight) >= window:
            await pub.wait_window()
        pub.publish(topics[i % devices], bodies[i % len(bodies)], token=i)
    await pub.drain(300)
    elapsed = time.monotonic() - t0
    await pub.close()
    return {"published": n, "acked": acks.n, "seconds": elapsed, "rate": acks.n / elapsed}


def subscribe(n: int, topic_filter: str, timeout_s: float) -> dict[str, float]:
    """A bare paho subscriber (QoS 1, automatic acks): the raw ceiling of MQTT delivery."""
    s = Settings()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    c.username_pw_set("gateway", credentials.password(s, "gateway"))
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}

    def on_message(_c: object, _u: object, _m: object) -> None:
        now = time.monotonic()
        if state["n"] == 0:
            state["first"] = now
            state["cpu_first"] = time.process_time()
        state["n"] += 1
        state["last"] = now
        state["cpu_last"] = time.process_time()

    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe(topic_filter, 1)
    c.connect(s.mqtt.host, s.mqtt.port)
    print("ready", flush=True)
    deadline = time.monotonic() + timeout_s
    while state["n"] < n and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()
    return state


def _gateway_client(s: Settings, client_id: str) -> mqtt.Client:
    """A paho MQTT 5 client with the gateway role's credentials (it may read ``$SYS``)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set("gateway", credentials.password(s, "gateway"))
    return c


def forget_session(s: Settings, client_id: str) -> None:
    """End a departed benchmark gateway's persistent MQTT session now, not at its expiry.

    Until it expires, the session keeps taking a copy of everything on its filters: the next
    run's messages then overflow its queue, and the broker's drop counter, which the next
    run reads, counts them.
    """
    asyncio.run(end_session(s, "gateway", client_id))


def broker_backlog(s: Settings, wait_s: float = 11.0) -> int | None:
    """Messages Mosquitto holds (``$SYS/broker/store/messages/count``, published every 10 s),
    or None if unknown.

    Dead persistent sessions keep queueing what matches their subscriptions; Mosquitto then
    writes all of it to disk every ``autosave_interval`` (30 s), stalling every client for
    seconds. With ~850,000 stored messages the publish->alert p99 was 3.2 s; with none, 0.2 s.
    """
    got: dict[str, int] = {}
    c = _gateway_client(s, f"bench-sys-{time.time_ns()}")

    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        got["n"] = int(m.payload)

    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe("$SYS/broker/store/messages/count", 0)
    try:
        c.connect(s.mqtt.host, s.mqtt.port)
    except OSError:
        return None
    deadline = time.monotonic() + wait_s
    while "n" not in got and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    return got.get("n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["publish", "subscribe"])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--prefix", default="city/bench")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    if a.role == "publish":
        out = asyncio.run(publish(a.n, a.prefix, a.batch, a.window, a.devices))
    else:
        out = subscribe(a.n, f"{a.prefix}/+/+/up", a.timeout)
    print(json.dumps(out), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
