"""The processor runs its engine in slices and lets the event loop turn between them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from processors.app import Processor
from processors.engine import Output


class _Engine:
    def __init__(self) -> None:
        self.slices: list[list[int]] = []

    def process(
        self, records: list[dict[str, Any]], out: Output, *, tick: bool, replay: bool = False
    ) -> Output:
        assert tick is False  # the app owns the clock
        self.slices.append([r["i"] for r in records])
        return out


async def test_a_batch_is_fed_in_slices_with_the_loop_running_between() -> None:
    # Without the turns, the previous batch's InfluxDB write and the next fetch wait until the
    # whole batch is done (bench.processor: 34,185 -> 42,842 readings/s with them).
    engine = _Engine()
    stub = SimpleNamespace(
        engine=engine, s=SimpleNamespace(processor=SimpleNamespace(yield_every=3))
    )
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await Processor._feed(stub, [{"i": i} for i in range(10)], Output())  # type: ignore[arg-type]
    task.cancel()
    assert engine.slices == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert turns - before >= 4  # the other task ran once per slice
