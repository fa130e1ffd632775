"""Crew API: 401 without a valid token, 403 on another crew's order, supervisor powers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from citywatch.settings import Settings
from notifier.api import create_app
from notifier.auth import Principal, require_supervisor
from notifier.store import Store


def ev(alert: str, target: str, district: str, family: str = "bin") -> dict[str, Any]:
    return {
        "alert_id": alert,
        "kind": "bin_fire",
        "target": target,
        "target_type": "device",
        "family": family,
        "district": district,
        "severity": "critical",
        "state": "raised",
        "episode_start": 1,
        "ts": 1,
        "message": "71 C",
    }


@pytest.fixture
def env() -> Iterator[tuple[TestClient, Store, dict[str, dict[str, str]]]]:
    st = Store("sqlite://")
    st.create_schema()
    st.apply_event(ev("a1", "bin-1", "north"), "crew-north", lambda o, e: [])
    st.apply_event(ev("a2", "bin-2", "central"), "crew-central", lambda o, e: [])
    st.apply_event(ev("a3", "dust-1", "north", "dust"), "crew-north", lambda o, e: [])
    auth = {
        name: {"Authorization": f"Bearer {st.create_token(name, role, ds)}"}
        for name, role, ds in [
            ("crew-north", "crew", ["north"]),
            ("crew-central", "crew", ["central"]),
            ("boss", "supervisor", []),
        ]
    }
    app = create_app(Settings(), store=st)

    @app.get("/test/supervisor-only")
    async def sup_only(p: Principal = Depends(require_supervisor)) -> dict[str, str]:
        return {"name": p.name}

    with TestClient(app) as c:
        yield c, st, auth


def test_missing_or_wrong_token_is_401(env: Any) -> None:
    c, _, _ = env
    assert c.get("/api/orders").status_code == 401
    r = c.get("/api/orders", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/api/orders/1/ack", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_crew_sees_and_touches_only_its_own_orders(env: Any) -> None:
    c, st, auth = env
    mine = c.get("/api/orders", headers=auth["crew-north"]).json()
    assert sorted(o["target"] for o in mine) == ["bin-1", "dust-1"]
    only_dust = c.get("/api/orders?family=dust", headers=auth["crew-north"]).json()
    assert [o["target"] for o in only_dust] == ["dust-1"]
    assert c.post("/api/orders/2/ack", headers=auth["crew-north"]).status_code == 403
    assert (
        c.post("/api/orders/2/resolve", json={"note": "x"}, headers=auth["crew-north"]).status_code
        == 403
    )
    assert c.get("/api/orders/2", headers=auth["crew-north"]).status_code == 403
    assert st.get_order(2)["status"] == "open"
    assert c.get("/api/orders/99", headers=auth["crew-north"]).status_code == 404


def test_ack_resolve_with_note_and_history(env: Any) -> None:
    c, _, auth = env
    h = auth["crew-north"]
    assert c.post("/api/orders/1/ack", headers=h).json()["status"] == "acknowledged"
    r = c.post("/api/orders/1/resolve", json={"note": "bin emptied, lid closed"}, headers=h)
    assert r.json()["status"] == "resolved"
    assert c.post("/api/orders/1/ack", headers=h).status_code == 409
    detail = c.get("/api/orders/1", headers=h).json()
    assert [(t["to"], t["by"]) for t in detail["transitions"]] == [
        ("open", "system"),
        ("acknowledged", "crew-north"),
        ("resolved", "crew-north"),
    ]
    assert detail["resolution_note"] == "bin emptied, lid closed"
    assert c.post("/api/orders/1/close", headers=h).status_code == 403
    assert c.post("/api/orders/1/close", headers=auth["boss"]).json()["status"] == "closed"


def test_supervisor_sees_all_and_dependency_contract(env: Any) -> None:
    c, _, auth = env
    assert len(c.get("/api/orders", headers=auth["boss"]).json()) == 3
    assert c.post("/api/orders/2/ack", headers=auth["boss"]).json()["acked_by"] == "boss"
    assert c.get("/test/supervisor-only", headers=auth["crew-north"]).status_code == 403
    assert c.get("/test/supervisor-only", headers=auth["boss"]).json() == {"name": "boss"}
    me = c.get("/api/me", headers=auth["crew-north"]).json()
    assert me == {"name": "crew-north", "role": "crew", "districts": ["north"]}
    assert c.get("/api/orders?status=bogus", headers=auth["boss"]).status_code == 422


def test_openapi_and_live_page_served(env: Any) -> None:
    c, _, _ = env
    paths = c.get("/openapi.json").json()["paths"]
    assert {
        "/api/orders",
        "/api/orders/{order_id}/ack",
        "/api/orders/{order_id}/resolve",
        "/api/stream",
    } <= set(paths)
    page = c.get("/")
    assert page.status_code == 200 and "/live/app.js" in page.text
    assert "citywatchLive" in c.get("/live/app.js").text
