"""Work-order store: one open order per fault, replay-safe events, transitions, SLAs."""

from __future__ import annotations

from typing import Any

import pytest

from citywatch.settings import CrewSettings, NotifierSettings, RouteRule
from notifier.routing import Router
from notifier.store import Conflict, NotFound, Store, idempotency_key


def ev(
    state: str = "raised",
    alert: str = "a1",
    target: str = "lamp-1",
    ts: int = 10**18,
    severity: str = "major",
    kind: str = "lamp_out",
) -> dict[str, Any]:
    return {
        "alert_id": alert,
        "kind": kind,
        "target": target,
        "target_type": "device",
        "family": "streetlight",
        "district": "north",
        "severity": severity,
        "state": state,
        "episode_start": ts,
        "ts": ts,
        "message": "dark at night",
    }


@pytest.fixture
def store() -> Store:
    st = Store("sqlite://")
    st.create_schema()
    return st


@pytest.fixture
def router() -> Router:
    return Router(
        NotifierSettings(
            crews=[CrewSettings(id="crew-n", webhook_url="http://x/h", email=["n@x"])],
            routes=[RouteRule(crew="crew-n")],
            default_crew="crew-n",
            supervisor=CrewSettings(id="boss", webhook_url="http://x/boss", mqtt=False),
        )
    )


def test_open_repeat_clear_lifecycle(store: Store, router: Router) -> None:
    out, oid = store.apply_event(ev(), "crew-n", router.plan)
    assert out == "opened" and oid is not None
    assert store.apply_event(ev(), "crew-n", router.plan) == ("duplicate", None)
    # Same fault under a new alert id: the open order is updated, nobody is messaged again.
    assert store.apply_event(ev(alert="a2", ts=2 * 10**18), "crew-n", router.plan) == (
        "updated",
        oid,
    )
    o = store.get_order(oid)
    assert o["repeats"] == 1 and o["alert_id"] == "a2" and o["status"] == "open"
    assert [d["event"] for d in store.deliveries(oid)] == ["opened"] * 3
    assert store.apply_event(
        ev("escalated", "a2", ts=3 * 10**18, severity="critical"), "crew-n", router.plan
    ) == ("escalated", oid)
    assert store.apply_event(ev("cleared", "a2", ts=4 * 10**18), "crew-n", router.plan) == (
        "resolved",
        oid,
    )
    o = store.get_order(oid)
    assert o["status"] == "resolved" and o["resolved_by"] == "system"
    assert o["severity"] == "critical"
    events = [d["event"] for d in store.deliveries(oid)]
    assert events.count("escalated") == 3 and events.count("auto_resolved") == 3
    # The order is no longer open: the next fault of the same kind opens a new order.
    out2, oid2 = store.apply_event(ev(alert="a3", ts=5 * 10**18), "crew-n", router.plan)
    assert out2 == "opened" and oid2 != oid


def test_clear_after_manual_resolve_closes(store: Store, router: Router) -> None:
    _, oid = store.apply_event(ev(), "crew-n", router.plan)
    assert oid is not None
    store.transition(oid, "acknowledged", "crew-n", crew_id="crew-n")
    store.transition(oid, "resolved", "crew-n", "lamp replaced", crew_id="crew-n")
    assert store.apply_event(ev("cleared", ts=2 * 10**18), "crew-n", router.plan) == ("closed", oid)
    t = store.transitions(oid)
    assert [(x["from"], x["to"], x["by"]) for x in t] == [
        (None, "open", "system"),
        ("open", "acknowledged", "crew-n"),
        ("acknowledged", "resolved", "crew-n"),
        ("resolved", "closed", "system"),
    ]
    assert t[2]["note"] == "lamp replaced" and all(x["at"] > 0 for x in t)


def test_transition_rules(store: Store, router: Router) -> None:
    _, oid = store.apply_event(ev(), "crew-n", router.plan)
    assert oid is not None
    with pytest.raises(PermissionError):
        store.transition(oid, "acknowledged", "crew-s", crew_id="crew-s")
    with pytest.raises(Conflict):
        store.transition(oid, "closed", "boss")
    with pytest.raises(NotFound):
        store.transition(999, "acknowledged", "boss")
    assert store.transition(oid, "acknowledged", "a")["acked_by"] == "a"
    assert store.transition(oid, "acknowledged", "b")["acked_by"] == "a"  # idempotent
    with pytest.raises(Conflict):
        store.transition(oid, "bogus", "a")


def test_sla_escalation_levels(store: Store, router: Router) -> None:
    _, oid = store.apply_event(ev(severity="critical"), "crew-n", router.plan, now=1000.0)
    assert oid is not None
    ack, res = {"critical": 60.0}, {"critical": 600.0}
    assert store.overdue(ack, res, 1059.0) == []
    assert store.overdue(ack, res, 1060.0) == [(oid, 1)]
    assert store.escalate(oid, 1, router.plan, now=1060.0)
    assert not store.escalate(oid, 1, router.plan, now=1061.0)  # once per level
    assert store.overdue(ack, res, 1100.0) == []
    store.transition(oid, "acknowledged", "crew-n")
    assert store.overdue(ack, res, 1600.0) == [(oid, 2)]
    assert store.escalate(oid, 2, router.plan, now=1600.0)
    sup = [d for d in store.deliveries(oid) if d["crew_id"] == "boss"]
    assert [(d["event"], d["channel"]) for d in sup] == [
        ("sla_ack", "webhook"),
        ("sla_resolve", "webhook"),
    ]
    store.transition(oid, "resolved", "crew-n")
    assert store.overdue(ack, res, 10**6) == []


def test_deliveries_keys_and_retry_states(store: Store, router: Router) -> None:
    _, oid = store.apply_event(ev(), "crew-n", router.plan, now=100.0)
    ds = store.deliveries(oid)
    assert len({d["idempotency_key"] for d in ds}) == len(ds) == 3
    assert ds[0]["idempotency_key"] == idempotency_key(
        "a1|raised|1000000000000000000", "opened", ds[0]["channel"], ds[0]["recipient"]
    )
    assert len(store.due_deliveries(100.0, not_before=99.0, limit=10)) == 0  # delay window
    due = store.due_deliveries(100.0, not_before=100.0, limit=10)
    assert len(due) == 3
    store.mark_sent(due[0]["id"])
    store.mark_failed(due[1]["id"], "HTTP 503", retry_at=200.0)
    store.mark_failed(due[2]["id"], "HTTP 400", retry_at=None)
    assert store.due_deliveries(150.0, 150.0, 10) == []
    again = store.due_deliveries(200.0, 200.0, 10)
    assert [d["id"] for d in again] == [due[1]["id"]] and again[0]["attempts"] == 1
    states = {d["id"]: d["state"] for d in store.deliveries(oid)}
    assert states == {due[0]["id"]: "sent", due[1]["id"]: "pending", due[2]["id"]: "failed"}


def test_tokens_hashed_and_revocable(store: Store) -> None:
    tok = store.create_token("crew-n", "crew", ["north"])
    with store.engine.connect() as c:
        stored = [r[0] for r in c.exec_driver_sql("SELECT token_hash FROM crew_tokens")]
    assert tok not in stored and len(stored[0]) == 64
    info = store.principal_for_token(tok)
    assert info is not None and info.districts == frozenset({"north"})
    assert store.principal_for_token(tok + "x") is None
    assert store.revoke_tokens("crew-n") == 1
    assert store.principal_for_token(tok) is None
    with pytest.raises(ValueError):
        store.create_token("x", "admin")


def test_crew_status_counts(store: Store, router: Router) -> None:
    _, a = store.apply_event(ev(target="l-1"), "crew-n", router.plan)
    store.apply_event(ev(target="l-2", alert="b1"), "crew-n", router.plan)
    assert a is not None
    store.transition(a, "acknowledged", "crew-n")
    assert store.crew_status("crew-n") == {"open": 1, "acknowledged": 1}
    assert store.crew_status("other") == {"open": 0, "acknowledged": 0}
