"""The processor's second source: operators' commands from ``citywatch.commands``.

Every processor reads the whole (small, 7-day) commands topic, not a share of it: any
processor may own the lamps a district-wide command covers. ``catch_up`` reads to the log end
before the first reading is judged (so a restart does not raise ``lamp_out`` for lamps an
operator switched off yesterday evening); ``follow`` then keeps reading until stopped. Each
record goes to a callback (``Engine.command``); a record that is not a JSON object is logged
and skipped — it carries no reading, so nothing is lost.

Example:
    >>> async def demo(settings, engine, stop):  # doctest: +SKIP
    ...     feed = CommandsFeed(settings, engine.command)
    ...     await feed.start(); await feed.catch_up(timeout_s=10)
    ...     await feed.follow(stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from citywatch.settings import Settings

log = logging.getLogger(__name__)


class CommandsFeed:
    """Reads ``citywatch.commands`` from the beginning into ``on_command``."""

    def __init__(self, settings: Settings, on_command: Callable[[dict[str, Any]], bool]) -> None:
        self.s = settings
        self.on_command = on_command
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings), enable_auto_commit=False, group_id=None
        )
        self.applied = 0

    async def start(self) -> None:
        await self.consumer.start()
        topic = self.s.kafka.commands_topic
        tps = await topic_partitions(self.consumer, topic)
        self.consumer.assign(tps)
        if tps:
            await self.consumer.seek_to_beginning(*tps)

    def _take(self, msg: Any) -> None:
        try:
            rec = orjson.loads(msg.value)
        except orjson.JSONDecodeError:
            log.warning("commands: skipping a non-JSON record (offset %d)", msg.offset)
            return
        if isinstance(rec, dict) and self.on_command(rec):
            self.applied += 1

    async def catch_up(self, timeout_s: float) -> None:
        """Read until every partition's position reaches the end seen at the call."""
        if not await read_to_end(self.consumer, self._take, timeout_s, max_records=5000):
            log.warning("commands: not caught up after %.0f s; continuing", timeout_s)

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=1000)
                for msgs in batch.values():
                    for msg in msgs:
                        self._take(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Kafka hiccup must not stop the readings path
                log.warning("commands feed: %r; retrying", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
