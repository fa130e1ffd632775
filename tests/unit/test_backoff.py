"""citywatch.backoff.retry: waits double up to the cap; a set stop raises instead of waiting."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Generic, TypeVar

import pytest
import tenacity

from citywatch import backoff

T = TypeVar("T")


class Clock:
    """Stands in for asyncio.sleep and tenacity's clock: waits are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.now += s


class Flaky(Generic[T]):
    """An attempt that raises ``error`` on its first ``fails`` calls, then returns ``result``
    once; a call after that success is a bug in the retry loop."""

    def __init__(self, fails: int, error: Exception, result: T) -> None:
        self.fails, self.error, self.result = fails, error, result
        self.calls = 0

    async def __call__(self) -> T:
        self.calls += 1
        if self.calls <= self.fails:
            raise self.error
        if self.calls == self.fails + 1:
            return self.result
        raise AssertionError("called after success")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(backoff.asyncio, "sleep", c.sleep)
    # tenacity's own clock only (the event loop keeps the real one).
    monkeypatch.setattr(tenacity, "time", SimpleNamespace(monotonic=lambda: c.now))
    return c


async def test_waits_double_up_to_the_cap_and_other_errors_pass(clock: Clock) -> None:
    waits = clock.waits
    attempt = Flaky(6, ConnectionError("away"), 7)
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


async def test_give_up_raises_before_a_wait_would_pass_the_limit(clock: Clock) -> None:
    waits = clock.waits

    async def away() -> None:
        raise ConnectionError("down for good")

    log = logging.getLogger("test")
    with pytest.raises(ConnectionError):
        await backoff.retry(
            away, ConnectionError, what="x", log=log, first_s=0.5, max_s=5.0, give_up_s=4.0
        )
    # 0.5 + 1 + 2 = 3.5 s waited; the next wait (4 s) would end past 4 s: raised instead.
    assert waits == [0.5, 1.0, 2.0]


async def test_each_failure_is_logged_at_the_level_given_with_the_wait(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    twice_away = Flaky(2, OSError("refused"), "ok")
    caplog.set_level(logging.ERROR, logger="test.level")
    log = logging.getLogger("test.level")
    got = await backoff.retry(twice_away, OSError, what="storing", log=log, level=logging.ERROR)
    assert got == "ok"
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert msgs == [
        (logging.ERROR, "storing failed (OSError('refused')); retrying in 0.2 s"),
        (logging.ERROR, "storing failed (OSError('refused')); retrying in 0.4 s"),
    ]


async def test_an_attempt_that_only_returns_an_awaitable_is_awaited() -> None:
    calls: list[int] = []

    def store() -> list[int]:
        calls.append(1)
        if len(calls) < 2:
            raise OSError("locked")
        return [len(calls)]

    log = logging.getLogger("test")
    got = await backoff.retry(
        lambda: asyncio.to_thread(store), OSError, what="x", log=log, first_s=0.001
    )
    assert got == [2]


async def test_reconnect_pauses_first_then_backs_off_until_connected(clock: Clock) -> None:
    connect = Flaky(3, TimeoutError("no CONNACK"), None)
    await backoff.reconnect(connect, (ConnectionError, TimeoutError), log=logging.getLogger("t"))
    assert connect.calls == 4
    assert clock.waits == [0.2, 0.4, 0.8, 1.6]
