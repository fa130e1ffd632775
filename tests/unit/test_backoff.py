"""citywatch.backoff.retry: waits double up to the cap; a set stop raises instead of waiting."""

from __future__ import annotations

import asyncio
import logging

import pytest

from citywatch import backoff


async def test_waits_double_up_to_the_cap_and_other_errors_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(backoff.asyncio, "sleep", fake_sleep)
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls <= 6:
            raise ConnectionError("away")
        if calls == 7:
            return calls
        raise AssertionError("called after success")

    log = logging.getLogger("test")
    assert await backoff.retry(attempt, ConnectionError, what="x", log=log, max_s=1.0) == 7
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]

    async def wrong() -> None:
        raise ValueError("not a server being away")

    with pytest.raises(ValueError):
        await backoff.retry(wrong, ConnectionError, what="x", log=log)
    assert len(waits) == 6


async def test_a_set_stop_raises_the_error_instead_of_waiting() -> None:
    stop = asyncio.Event()
    stop.set()

    async def away() -> None:
        raise TimeoutError("still away")

    log = logging.getLogger("test")
    with pytest.raises(TimeoutError):
        await backoff.retry(away, (ConnectionError, TimeoutError), what="x", log=log, stop=stop)
