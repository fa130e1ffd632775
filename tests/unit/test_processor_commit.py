"""A batch's commit after a rebalance: only partitions still owned, never a crash."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import IllegalStateError

from processors.app import Processor
from processors.engine import Output


class _Consumer:
    def __init__(self, owned: set[str], fail: BaseException | None = None) -> None:
        self.owned, self.fail = owned, fail
        self.commits: list[dict[str, int]] = []

    def assignment(self) -> set[str]:
        return self.owned

    async def commit(self, offsets: dict[str, int]) -> None:
        if self.fail is not None:
            raise self.fail
        self.commits.append(offsets)


def _stub(consumer: _Consumer) -> Any:
    async def emit(out: Output, stop: asyncio.Event) -> None:
        await asyncio.sleep(0)

    stub = SimpleNamespace(consumer=consumer, _emit=emit, _inflight=None)
    stub.stats = {"commit_failed": 0, "batches": 0}
    return stub


async def test_only_partitions_still_assigned_are_committed() -> None:
    c = _Consumer({"p0"})
    stub = _stub(c)
    await Processor._finish(stub, Output(), {"p0": 10, "p1": 20}, asyncio.Event())  # type: ignore[arg-type]
    assert c.commits == [{"p0": 10}]
    assert stub.stats == {"commit_failed": 1, "batches": 1}


async def test_a_commit_refused_as_not_assigned_does_not_crash_the_processor() -> None:
    # Seen in bench.scaling: a second processor joined, the first crashed on this error.
    c = _Consumer({"p0"}, fail=IllegalStateError("Partition p0 is not assigned"))
    stub = _stub(c)
    await Processor._finish(stub, Output(), {"p0": 10}, asyncio.Event())  # type: ignore[arg-type]
    assert stub.stats["commit_failed"] == 1 and stub.stats["batches"] == 1


async def test_settle_waits_for_a_batch_another_caller_is_already_waiting_for() -> None:
    done = asyncio.Event()

    async def finish() -> None:
        await asyncio.sleep(0.05)
        done.set()

    stub = SimpleNamespace(_inflight=None)
    stub._inflight = asyncio.create_task(finish())
    first = asyncio.create_task(Processor.settle(stub))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the main loop is waiting already...
    await Processor.settle(stub)  # type: ignore[arg-type]
    assert done.is_set()  # ...and the revocation callback still waited for the commit
    await first
    assert stub._inflight is None
