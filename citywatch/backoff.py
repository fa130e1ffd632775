"""Retry an async step with exponential backoff while a server (Kafka, MQTT, a database) is away.

Services wait for their servers rather than exit: a broker restart must not take the
processor, the gateway or the notifier down with it. Each failure with one of ``errors`` is
logged (at ``level``) with the wait before the next attempt (``first_s``, doubled up to
``max_s``). The error is raised instead of waiting once ``stop`` is set, so a shutdown is never
held up by a server that will not come back, or once the next attempt would start more than
``give_up_s`` after the first. Any other error passes through at once.

The retrying itself is tenacity's (``AsyncRetrying``); this module only fixes the one policy
every citywatch service uses, so that its call sites read as one line.

Example:
    >>> import asyncio, logging
    >>> tries = []
    >>> async def flaky() -> str:
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise ConnectionError("away")
    ...     return "sent"
    >>> asyncio.run(retry(flaky, ConnectionError, what="send", log=logging.getLogger("x"),
    ...                   first_s=0.001))
    'sent'
    >>> len(tries)
    3
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_any,
    stop_before_delay,
    stop_never,
    wait_exponential,
)
from tenacity.stop import stop_base

T = TypeVar("T")


class _StopSet(stop_base):
    """Stop retrying once the service's stop event is set."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.stop.is_set()


async def _sleep(seconds: float) -> None:
    # Looked up at call time, so that tests can replace asyncio.sleep.
    await asyncio.sleep(seconds)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    *,
    what: str,
    log: logging.Logger,
    stop: asyncio.Event | None = None,
    first_s: float = 0.2,
    max_s: float = 10.0,
    give_up_s: float | None = None,
    level: int = logging.WARNING,
) -> T:
    """``await attempt()`` until it returns; ``what`` names the step in the log."""

    def log_wait(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.log(level, "%s failed (%r); retrying in %.1f s", what, exc, wait)

    stops: list[stop_base] = []
    if stop is not None:
        stops.append(_StopSet(stop))
    if give_up_s is not None:
        stops.append(stop_before_delay(give_up_s))
    retrying = AsyncRetrying(
        sleep=_sleep,
        stop=stop_any(*stops) if stops else stop_never,
        wait=wait_exponential(multiplier=first_s, max=max_s),
        retry=retry_if_exception_type(errors),
        before_sleep=log_wait,
        reraise=True,
    )

    async def call() -> T:
        # tenacity awaits only what a coroutine function returns; ``attempt`` may be any
        # callable that returns an awaitable (a lambda around asyncio.to_thread, say).
        return await attempt()

    return await retrying(call)


async def reconnect(
    connect: Callable[[], Awaitable[None]],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    *,
    log: logging.Logger,
) -> None:
    """After a connection dropped: a moment's pause, then ``connect`` until it succeeds.

    Waits 0.2 s (the broker is often just restarting), then retries from 0.4 s doubling to
    5 s. No stop event: the client cancels this task when it is closed.
    """
    await asyncio.sleep(0.2)
    await retry(connect, errors, what="MQTT reconnect", log=log, first_s=0.4, max_s=5.0)
