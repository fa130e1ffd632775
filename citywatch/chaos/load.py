"""The steady load of a fault-matrix case: QoS 1 bin readings, each with a unique ``seq``,
recording every id the broker acknowledged (the device-side ledger).

Every ``alert_every``-th reading comes from a new bin at fill 0.95 (one new alert each).

Example:
    >>> load = Load(Settings(), "r1", rate=100, seconds=10, alert_every=40)
    >>> load.topic(41), load.topic(40)
    ('city/central/bin/bin-r1-41/up', 'city/central/bin/bin-r1-a40/up')
    >>> load.thread.start(); load.thread.join()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from datetime import UTC, datetime

import orjson

from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings


class Load:
    """QoS 1 publisher in its own thread; ``acked`` holds every PUBACKed seq."""

    def __init__(
        self, s: Settings, rid: str, rate: float, seconds: float, devices: int = 50,
        alert_every: int = 0,
    ) -> None:  # fmt: skip
        self.s, self.rid, self.rate, self.seconds, self.devices = s, rid, rate, seconds, devices
        self.alert_every = alert_every
        self.acked: set[int] = set()
        self.sent = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def is_alert(self, i: int) -> bool:
        return self.alert_every > 0 and i % self.alert_every == 0

    def device(self, i: int) -> str:
        # An alert reading comes from a bin of its own: one overflow episode, one work order.
        return f"bin-{self.rid}-a{i}" if self.is_alert(i) else f"bin-{self.rid}-{i % self.devices}"

    def topic(self, i: int) -> str:
        return f"city/central/bin/{self.device(i)}/up"

    def alert_devices(self, seqs: set[int]) -> set[str]:
        return {self.device(i) for i in seqs if self.is_alert(i)}

    def _done(self, i: int, f: asyncio.Future[None]) -> None:
        if not f.cancelled() and f.exception() is None:
            self.acked.add(i)

    async def _run(self) -> None:
        c = AsyncMqtt(
            **mqtt_kwargs(self.s, "simulator"),
            client_id=f"chaos-pub-{self.rid}",
            max_inflight=200,
        )
        await c.connect()
        pending: set[asyncio.Future[None]] = set()
        n = int(self.rate * self.seconds)
        t0 = time.monotonic()
        for i in range(n):
            ahead = i / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
            ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            fill = 0.95 if self.is_alert(i) else 0.5
            body = orjson.dumps({"ts": ts, "fill_ratio": fill, "seq": i})
            while len(pending) >= 200:  # a bounded window, like a device's
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            try:
                fut = c.publish_nowait(self.topic(i), body, qos=1)
            except Exception:
                continue  # not connected: the device would retry later; not acked, not counted
            fut.add_done_callback(functools.partial(self._done, i))
            pending.add(fut)
            self.sent += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 60)
        with contextlib.suppress(Exception):
            await c.close()
