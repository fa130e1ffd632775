"""Channel helpers without servers: webhook signatures, e-mail headers, event parsing, KPIs."""

from __future__ import annotations

import pytest

from citywatch.settings import Settings
from notifier.channels import body
from notifier.channels.email import build_message
from notifier.channels.webhook import sign, verify_signature, webhook_secret
from notifier.events import BadEvent, parse
from notifier.kpis import compute, lines

D = {
    "idempotency_key": "cw-abc",
    "event": "opened",
    "crew_id": "crew-n",
    "recipient": "n@x",
    "payload": {
        "event": "opened",
        "order": {
            "id": 7,
            "severity": "major",
            "kind": "lamp_out",
            "target": "l-1",
            "district": "north",
            "message": "dark",
        },
    },
}


def test_signature_roundtrip_and_rejections() -> None:
    payload = body(D)
    sig = sign(b"secret", 1_700_000_000, payload)
    assert sig.startswith("v1=") and len(sig) == 67
    assert verify_signature(b"secret", "1700000000", payload, sig, now=1_700_000_100)
    assert not verify_signature(b"other", "1700000000", payload, sig, now=1_700_000_100)
    assert not verify_signature(b"secret", "1700000000", payload + b" ", sig, now=1_700_000_100)
    assert not verify_signature(b"secret", "1700000000", payload, sig, now=1_700_001_000)
    assert not verify_signature(b"secret", "soon", payload, sig)


def test_generated_webhook_secret_is_stable_and_private(tmp_path: object) -> None:
    s = Settings(state_dir=tmp_path)
    k = webhook_secret(s)
    assert len(k) >= 32 and webhook_secret(s) == k
    assert (s.state_dir / "webhook.key").stat().st_mode & 0o077 == 0


def test_email_carries_the_idempotency_key() -> None:
    m = build_message(D, "cw@city")
    assert m["Message-ID"] == "<cw-abc@citywatch>"
    assert m["X-Citywatch-Idempotency-Key"] == "cw-abc"
    assert "WO #7" in m["Subject"] and "lamp_out" in m["Subject"]


@pytest.mark.parametrize(
    "raw,why",
    [
        (b"", "empty"),
        (b"{nope", "not JSON"),
        (b"[1]", "object"),
        (b'{"alert_id": "a", "kind": "k", "target": "t", "state": "exploded", "ts": 1}', "state"),
        (b'{"alert_id": "a", "kind": "k", "target": "t", "state": "raised"}', "ts"),
    ],
)
def test_bad_events_are_clear_errors(raw: bytes, why: str) -> None:
    with pytest.raises(BadEvent, match=why):
        parse(raw)


def test_kpis_closure_rate_and_times() -> None:
    rows = [
        {
            "district": "n",
            "family": "bin",
            "status": "closed",
            "created_at": 0.0,
            "acked_at": 60.0,
            "resolved_at": 600.0,
        },
        {
            "district": "n",
            "family": "bin",
            "status": "open",
            "created_at": 0.0,
            "acked_at": None,
            "resolved_at": None,
        },
        {
            "district": "s",
            "family": "dust",
            "status": "acknowledged",
            "created_at": 0.0,
            "acked_at": 120.0,
            "resolved_at": None,
        },
    ]
    k = compute(rows)
    assert k[("n", "bin")]["closure_rate"] == 0.5 and k[("n", "bin")]["resolve_s_mean"] == 600
    assert k[("all", "all")]["ack_s_median"] == 90.0 and k[("all", "all")]["active"] == 2
    ls = lines(k, 123)
    assert ls[0].startswith("workorders,district=all,family=all ") and ls[0].endswith(" 123")
