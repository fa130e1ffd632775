"""E-mail channel: one message per recipient over SMTP (optional STARTTLS and login).

The Message-ID is derived from the idempotency key and the key is also in the
``X-Citywatch-Idempotency-Key`` header, so a mail system or a crew's inbox rule can drop a
resent copy. The body is a short text plus the JSON document as an attachment-free part.

Example:
    >>> d = {"idempotency_key": "cw-1", "event": "opened", "crew_id": "c", "recipient": "a@b",
    ...      "payload": {"order": {"id": 1, "severity": "major", "kind": "lamp_out",
    ...                            "target": "l-1", "district": "north", "message": "dark"}}}
    >>> build_message(d, "cw@city").get("Message-ID")
    '<cw-1@citywatch>'
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from citywatch.settings import Settings
from notifier.channels import DeliveryError, body

_EVENT_TEXT = {
    "opened": "New work order",
    "escalated": "Severity raised",
    "auto_resolved": "Alert cleared",
    "sla_ack": "Not acknowledged within SLA",
    "sla_resolve": "Not resolved within SLA",
}


def build_message(delivery: dict[str, Any], sender: str) -> EmailMessage:
    o = delivery["payload"]["order"]
    what = _EVENT_TEXT.get(delivery["event"], delivery["event"])
    m = EmailMessage()
    m["From"] = sender
    m["To"] = delivery["recipient"]
    m["Subject"] = (
        f"[citywatch] {what}: {o['severity']} {o['kind']} at {o['target']} "
        f"({o['district']}, WO #{o['id']})"
    )
    m["Message-ID"] = f"<{delivery['idempotency_key']}@citywatch>"
    m["X-Citywatch-Idempotency-Key"] = delivery["idempotency_key"]
    m["X-Citywatch-Event"] = delivery["event"]
    m.set_content(
        f"{what}\n\nWork order #{o['id']}: {o['kind']} at {o['target']} ({o['district']})\n"
        f"Severity: {o['severity']}\n{o.get('message') or ''}\n\n"
        f"{body(delivery).decode()}\n"
    )
    return m


class EmailChannel:
    name = "email"

    def __init__(self, s: Settings) -> None:
        self.smtp = s.notifier.smtp

    async def start(self) -> None:
        return None

    async def send(self, delivery: dict[str, Any]) -> None:
        c = self.smtp
        msg = build_message(delivery, c.sender)
        try:
            await aiosmtplib.send(
                msg,
                hostname=c.host,
                port=c.port,
                start_tls=c.starttls,
                username=c.username,
                password=c.password.get_secret_value() if c.password else None,
                timeout=c.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            who = delivery["recipient"]
            raise DeliveryError(f"e-mail to {who}: {exc}", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"e-mail to {delivery['recipient']}: {exc!r}") from exc

    async def close(self) -> None:
        return None
