"""The fault matrix's notification checks can fail: the harness's webhook receiver counts a
second key for one notification as a duplicate, the same key again as a resend, a bad
signature as bad, and an alert without a delivery as lost (no servers but the receiver).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from citywatch.chaos import CaseResult, Chaos, Receiver
from citywatch.settings import Settings
from notifier.channels.webhook import sign


def post(url: str, secret: bytes, key: str, alert: str, event: str = "opened") -> None:
    body = orjson.dumps(
        {
            "idempotency_key": key,
            "event": event,
            "crew_id": "c",
            "order": {"id": 1, "alert_id": alert, "target": f"bin-r1d-a{alert}"},
        }
    )
    ts = int(time.time())
    r = httpx.post(
        url,
        content=body,
        headers={
            "Idempotency-Key": key,
            "X-Citywatch-Timestamp": str(ts),
            "X-Citywatch-Signature": sign(secret, ts, body),
        },
    )
    assert r.status_code == 200


def test_receiver_counts_duplicates_resends_bad_and_lost(tmp_path: Any) -> None:
    chaos = Chaos(Settings(), workdir=tmp_path)
    chaos.receiver = rx = Receiver(b"secret")
    try:
        post(rx.url, b"secret", "cw-1", "1")
        post(rx.url, b"secret", "cw-1", "1")  # resent after a crash: same key
        post(rx.url, b"secret", "cw-2", "1")  # same notification, second key: duplicate
        post(rx.url, b"secret", "cw-3", "2")
        post(rx.url, b"forged", "cw-4", "3")  # wrong signature
        alerts = [
            {"alert_id": a, "state": "raised", "target": f"bin-r1d-a{a}"}
            for a in ("1", "2", "3", "4")
        ]
        res = CaseResult("notifier", "kill9")
        chaos._count_notifications("r1d", alerts, res)
        assert chaos._notified("r1d") == {"bin-r1d-a1", "bin-r1d-a2", "bin-r1d-a3"}
        assert chaos._notified("other") == set()
    finally:
        rx.close()
    assert (res.alerts, res.notified, res.notif_lost) == (4, 3, 1)  # alert 4 never arrived
    assert (res.notif_dups, res.notif_resent, res.notif_bad) == (1, 1, 1)
