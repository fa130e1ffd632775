"""Retry an async step with exponential backoff while a server (Kafka, MQTT) is away.

Services wait for their servers rather than exit: a broker restart must not take the
processor or the downlink service down with it. Each failure with one of ``errors`` is
logged with the wait before the next attempt (``first_s``, doubled up to ``max_s``); once
``stop`` is set, the error is raised instead, so a shutdown is never held up by a server that
will not come back.

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

T = TypeVar("T")


async def retry(
    attempt: Callable[[], Awaitable[T]],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    *,
    what: str,
    log: logging.Logger,
    stop: asyncio.Event | None = None,
    first_s: float = 0.2,
    max_s: float = 10.0,
) -> T:
    """``await attempt()`` until it returns; ``what`` names the step in the log."""
    delay = first_s
    while True:
        try:
            return await attempt()
        except errors as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_s)
