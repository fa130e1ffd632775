"""The processor lingers after a batch's first record so batches are not a trickle."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from processors.app import Processor


class _Consumer:
    """Scripted ``getmany`` results, one per call, each arriving after ``gap_s``."""

    def __init__(self, polls: list[dict[str, list[int]]], gap_s: float = 0.0, stub: Any = None):
        self.polls, self.gap_s, self.stub = polls, gap_s, stub
        self.calls: list[tuple[int, int]] = []
        self.rebalance_before: int | None = None

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        self.calls.append((timeout_ms, max_records))
        if not self.polls:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        await asyncio.sleep(self.gap_s)
        if self.rebalance_before == len(self.calls) and self.stub is not None:
            self.stub.rebalances += 1
        return self.polls.pop(0)


def _stub(consumer: _Consumer, linger_ms: int = 100, max_batch: int = 100) -> Any:
    stub = SimpleNamespace(
        consumer=consumer,
        rebalances=0,
        s=SimpleNamespace(
            processor=SimpleNamespace(batch_ms=200, linger_ms=linger_ms, max_batch=max_batch)
        ),
    )
    consumer.stub = stub
    return stub


async def test_polls_within_the_linger_join_one_batch_in_offset_order() -> None:
    c = _Consumer([{"a": [1, 2]}, {"a": [3], "b": [7]}, {"b": [8]}])
    batch = await Processor.poll(_stub(c))
    assert batch == {"a": [1, 2, 3], "b": [7, 8]}
    # The later polls only wait for what is left of the linger.
    assert all(t <= 100 for t, _ in c.calls[1:])


async def test_the_linger_ends_at_max_batch() -> None:
    c = _Consumer([{"a": [1, 2, 3]}, {"a": [4, 5]}, {"a": [6]}])
    batch = await Processor.poll(_stub(c, max_batch=5))
    assert batch == {"a": [1, 2, 3, 4, 5]}
    assert c.calls[1][1] == 2  # asked for no more than fills the batch
    assert c.polls == [{"a": [6]}]


async def test_the_linger_ends_after_linger_ms() -> None:
    c = _Consumer([{"a": [1]}, {"a": [2]}, {"a": [3]}, {"a": [4]}], gap_s=0.04)
    batch = await Processor.poll(_stub(c, linger_ms=60))
    # 1 at ~40 ms opens the linger; 2 arrives at ~80 ms; 3 would come after the 60 ms.
    assert batch["a"][:2] == [1, 2]
    assert len(batch["a"]) <= 3
    assert c.polls  # the rest stays for the next batch


async def test_no_linger_returns_the_first_poll() -> None:
    c = _Consumer([{"a": [1]}, {"a": [2]}])
    assert await Processor.poll(_stub(c, linger_ms=0)) == {"a": [1]}
    assert len(c.calls) == 1


async def test_an_empty_first_poll_returns_at_once() -> None:
    c = _Consumer([])
    assert await Processor.poll(_stub(c)) == {}
    assert len(c.calls) == 1


async def test_a_rebalance_during_the_linger_keeps_only_what_came_after() -> None:
    # After a rebalance every partition restarts from its committed offset, so the records
    # polled before it come again: keeping them would process them twice, out of order.
    c = _Consumer([{"a": [10, 11]}, {"a": [12]}, {"a": [5, 6]}, {"a": [7]}])
    c.rebalance_before = 3  # the third getmany returns after a rebalance
    batch = await Processor.poll(_stub(c))
    assert batch == {"a": [5, 6, 7]}
