"""The local stack: Mosquitto, Kafka (KRaft) and InfluxDB 1.12 on 127.0.0.1, under one state dir.

``up`` installs what is missing and starts what is not running (twice is harmless); ``down``
stops only the processes it started, found by pid file.

Example:
    >>> from citywatch.settings import Settings
    >>> [svc.proc.name for svc in services(Settings())]
    ['mosquitto', 'kafka', 'influxdb']
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from citywatch.settings import Settings
from citywatch.stack.influxdb import InfluxDB
from citywatch.stack.kafka import Kafka
from citywatch.stack.mosquitto import Mosquitto
from citywatch.stack.process import ManagedProcess, StackError
from citywatch.stack.topics import ensure_topics

__all__ = ["StackError", "down", "services", "status", "up"]


class Service(Protocol):
    proc: ManagedProcess

    def up(self) -> str: ...

    def healthy(self) -> bool: ...


def services(s: Settings) -> list[Service]:
    return [Mosquitto(s), Kafka(s), InfluxDB(s)]


def up(s: Settings, log: Callable[[str], None] = print) -> None:
    for svc in services(s):
        log(f"{svc.proc.name}: {svc.up()}")
    for topic, what in asyncio.run(ensure_topics(s)).items():
        log(f"topic {topic}: {what}")


def down(s: Settings, log: Callable[[str], None] = print) -> None:
    for svc in reversed(services(s)):
        stopped = svc.proc.stop()
        log(f"{svc.proc.name}: {'stopped' if stopped else 'not running'}")


def status(s: Settings) -> dict[str, tuple[bool, bool]]:
    """name -> (process running, healthy)."""
    out: dict[str, tuple[bool, bool]] = {}
    for svc in services(s):
        running = svc.proc.running()
        try:
            healthy = svc.healthy()
        except Exception:
            healthy = False
        out[svc.proc.name] = (running, healthy)
    return out
