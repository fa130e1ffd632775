"""Notification channels: one module each, looked up by name in ``REGISTRY``.

A channel sends one delivery (a row of ``deliveries``: channel, recipient, payload,
idempotency_key) and raises ``DeliveryError`` on failure; ``permanent=True`` means retrying
cannot help (e.g. HTTP 400), anything else is retried by the service with backoff.

Example:
    >>> sorted(REGISTRY)
    ['email', 'mqtt', 'webhook']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from citywatch.settings import Settings


class DeliveryError(RuntimeError):
    def __init__(self, msg: str, *, permanent: bool = False) -> None:
        super().__init__(msg)
        self.permanent = permanent


class Channel(Protocol):
    name: str

    async def start(self) -> None: ...

    async def send(self, delivery: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


def message(delivery: dict[str, Any]) -> dict[str, Any]:
    """The JSON document every channel carries (webhook body, MQTT payload, e-mail part)."""
    return {
        "idempotency_key": delivery["idempotency_key"],
        "event": delivery["event"],
        "crew_id": delivery["crew_id"],
        "order": delivery["payload"]["order"],
    }


def body(delivery: dict[str, Any]) -> bytes:
    return orjson.dumps(message(delivery), option=orjson.OPT_SORT_KEYS)


def _webhook(s: Settings) -> Channel:
    from notifier.channels.webhook import WebhookChannel

    return WebhookChannel(s)


def _mqtt(s: Settings) -> Channel:
    from notifier.channels.mqtt import MqttChannel

    return MqttChannel(s)


def _email(s: Settings) -> Channel:
    from notifier.channels.email import EmailChannel

    return EmailChannel(s)


REGISTRY: dict[str, Callable[[Settings], Channel]] = {
    "webhook": _webhook,
    "mqtt": _mqtt,
    "email": _email,
}
