"""Webhook channel: POST the notification as JSON, signed with HMAC-SHA256.

Headers: ``X-Citywatch-Timestamp`` (unix seconds), ``X-Citywatch-Signature``
(``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``) and ``Idempotency-Key`` (the same
key on every retry; receivers dedupe on it). 2xx is success; 408, 425, 429 and 5xx or a
network error are retried by the service; any other status is a permanent failure.

Receivers verify with ``verify_signature`` (or the same three lines in any language).

Example:
    >>> sig = sign(b"k", 1700000000, b"{}")
    >>> verify_signature(b"k", "1700000000", b"{}", sig, now=1700000010)
    True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from typing import Any

import httpx

from citywatch.settings import Settings
from notifier.channels import DeliveryError, body

RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: bytes, ts: int, payload: bytes) -> str:
    mac = hmac.new(secret, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_signature(
    secret: bytes,
    ts: str,
    payload: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True if ``signature`` matches and ``ts`` is within ``tolerance_s`` (replay guard)."""
    try:
        t = int(ts)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, t, payload), signature)


def webhook_secret(s: Settings) -> bytes:
    """The signing key: from settings, else generated once in ``<state_dir>/webhook.key``."""
    if s.notifier.webhook_secret is not None:
        return s.notifier.webhook_secret.get_secret_value().encode()
    path = s.state_dir / "webhook.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        tmp.replace(path)
    return path.read_text().strip().encode()


class WebhookChannel:
    name = "webhook"

    def __init__(self, s: Settings) -> None:
        self.secret = webhook_secret(s)
        self.timeout = s.notifier.webhook_timeout_s
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout)

    async def send(self, delivery: dict[str, Any]) -> None:
        assert self.client is not None, "start() first"
        payload = body(delivery)
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery["idempotency_key"],
            "X-Citywatch-Timestamp": str(ts),
            "X-Citywatch-Signature": sign(self.secret, ts, payload),
            "X-Citywatch-Event": delivery["event"],
        }
        try:
            r = await self.client.post(delivery["recipient"], content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {delivery['recipient']}: {exc!r}") from exc
        if r.is_success:
            return
        permanent = r.status_code < 500 and r.status_code not in RETRY_STATUSES
        raise DeliveryError(
            f"webhook {delivery['recipient']}: HTTP {r.status_code}", permanent=permanent
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
