"""The /commands router over HTTP (FastAPI TestClient), Kafka replaced by a recorder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from citywatch.citymodel import CityModel
from citywatch.settings import Settings, override
from commands import api
from commands.service import Submitter
from commands.store import Store
from notifier.auth import Principal, current_principal

CITY = CityModel.generate(1, 2)  # two districts: central and north


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.records.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def stop(self) -> None:
        pass


@pytest.fixture(scope="module")
def city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("city") / "city.json"
    CITY.save(path)
    return path


@pytest.fixture
def client(
    tmp_path: Path, city_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    s = override(
        Settings(),
        "commands",
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        city_model=city_file,
        rate_limit_count=2,
    )
    producer = FakeProducer()

    async def fake_get_producer(self: Submitter) -> FakeProducer:
        return producer

    monkeypatch.setattr(Submitter, "_get_producer", fake_get_producer)
    app = FastAPI()
    app.state.settings = s
    app.state.live_sources = []
    api.install(app)
    who: dict[str, Any] = {"p": Principal("crew-central", "crew", frozenset({"central"}))}
    app.dependency_overrides[current_principal] = lambda: who["p"]
    with TestClient(app) as c:
        yield c, {"who": who, "producer": producer, "app": app}


def _lamp(district: str) -> str:
    return min(
        d.id for d in CITY.devices.values() if d.family == "streetlight" and d.district == district
    )


def test_send_list_show(client: tuple[TestClient, dict[str, Any]]) -> None:
    c, ctx = client
    dev = _lamp("central")
    r = c.post(
        "/commands",
        json={
            "kind": "switch",
            "target_type": "device",
            "target": dev,
            "params": {"state": "on"},
            "note": "dark street",
        },
    )
    assert r.status_code == 201, r.text
    cmd = r.json()
    assert cmd["state"] == "queued" and cmd["issuer"] == "crew-central"
    assert cmd["district"] == "central" and cmd["expires_at"] > cmd["created_at"]
    ((topic, key, _),) = ctx["producer"].records
    assert topic == "citywatch.commands" and key == dev.encode()
    assert [x["id"] for x in c.get("/commands").json()] == [cmd["id"]]
    detail = c.get(f"/commands/{cmd['id']}").json()
    first = detail["audit"][0]
    assert first["action"] == "issued" and first["actor"] == "crew-central"
    assert c.get("/commands/nope").status_code == 404
    assert c.get("/commands?state=bogus").status_code == 422


def test_refusals(client: tuple[TestClient, dict[str, Any]]) -> None:
    c, ctx = client
    r = c.post(
        "/commands", json={"kind": "ping", "target_type": "device", "target": _lamp("north")}
    )
    assert r.status_code == 403 and "district north" in r.json()["detail"]
    r = c.post(
        "/commands",
        json={"kind": "ping", "target_type": "district", "target": "central", "confirm": True},
    )
    assert r.status_code == 403 and "supervisors" in r.json()["detail"]
    ctx["who"]["p"] = Principal("ana", "supervisor", frozenset())
    r = c.post("/commands", json={"kind": "ping", "target_type": "district", "target": "central"})
    assert r.status_code == 428 and "confirm" in r.json()["detail"]
    r = c.post("/commands", json={"kind": "ping", "target_type": "circuit", "target": "nope"})
    assert r.status_code == 404
    r = c.post(
        "/commands",
        json={"kind": "dim", "target_type": "circuit", "target": "x", "params": {"level_pct": 400}},
    )
    assert r.status_code == 422
    dev = _lamp("central")
    for _ in range(2):
        assert (
            c.post(
                "/commands", json={"kind": "ping", "target_type": "device", "target": dev}
            ).status_code
            == 201
        )
    r = c.post("/commands", json={"kind": "ping", "target_type": "device", "target": dev})
    assert r.status_code == 429
    r = c.post(
        "/commands",
        json={"kind": "ping", "target_type": "district", "target": "central", "confirm": True},
    )
    assert r.status_code == 201 and r.json()["confirmed"] is True
    assert len(ctx["producer"].records) == 3  # refused commands never reach Kafka


def test_crew_sees_only_its_districts(client: tuple[TestClient, dict[str, Any]]) -> None:
    c, ctx = client
    ctx["who"]["p"] = Principal("ana", "supervisor", frozenset())
    cmd = c.post(
        "/commands", json={"kind": "ping", "target_type": "device", "target": _lamp("central")}
    ).json()
    ctx["who"]["p"] = Principal("crew-north", "crew", frozenset({"north"}))
    assert c.get("/commands").json() == []
    assert c.get(f"/commands/{cmd['id']}").status_code == 403


def test_suggestion_confirmed_by_a_person(client: tuple[TestClient, dict[str, Any]]) -> None:
    c, ctx = client
    store: Store = ctx["app"].state.command_store
    from commands.store import Suggestion

    dev = _lamp("central")
    store.upsert_suggestion(
        Suggestion(
            "al1",
            f"switch off lamp {dev}",
            "day_burn",
            dev,
            "central",
            "warning",
            1.0,
            "pending",
            None,
            None,
        )
    )
    assert [s["alert_id"] for s in c.get("/commands/suggestions").json()] == ["al1"]
    assert ctx["producer"].records == []  # nothing runs until a person confirms
    ctx["who"]["p"] = Principal("crew-north", "crew", frozenset({"north"}))
    assert c.post("/commands/suggestions/al1/confirm").status_code == 403
    assert store.suggestion("al1").state == "pending"  # type: ignore[union-attr]
    ctx["who"]["p"] = Principal("crew-central", "crew", frozenset({"central"}))
    r = c.post("/commands/suggestions/al1/confirm")
    assert r.status_code == 201, r.text
    cmd = r.json()
    assert (cmd["kind"], cmd["target"], cmd["params"], cmd["source"]) == (
        "switch",
        dev,
        {"state": "off"},
        "alert:al1",
    )
    assert c.post("/commands/suggestions/al1/confirm").status_code == 422  # already confirmed
    sug = store.suggestion("al1")
    assert sug is not None and sug.state == "confirmed" and sug.cmd_id == cmd["id"]


def test_kafka_down_is_503_and_audited(
    client: tuple[TestClient, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, _ctx = client

    async def broken(self: Submitter) -> Any:
        raise ConnectionError("no broker")

    monkeypatch.setattr(Submitter, "_get_producer", broken)
    r = c.post(
        "/commands", json={"kind": "ping", "target_type": "device", "target": _lamp("central")}
    )
    assert r.status_code == 503
    cmd = c.get("/commands").json()[0]
    assert cmd["state"] == "failed" and "not sent to Kafka" in cmd["detail"]


async def test_live_source_reports_changes(client: tuple[TestClient, dict[str, Any]]) -> None:
    c, ctx = client
    c.post("/commands", json={"kind": "ping", "target_type": "device", "target": _lamp("central")})
    (source,) = ctx["app"].state.live_sources
    events = await source(Principal("crew-central", "crew", frozenset({"central"})), 0.0)
    assert [name for name, _ in events] == ["command"]
    assert await source(Principal("crew-north", "crew", frozenset({"north"})), 0.0) == []
    js = c.get("/commands/live.js")
    assert js.status_code == 200 and 'live.on("command"' in js.text
