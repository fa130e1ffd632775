"""Dashboards as code: committed JSON up to date, every panel InfluxQL with known columns,
variables present, provisioning consistent with settings, push builds the right requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from citywatch.settings import Settings
from dashboards.boards import all_queries
from dashboards.build import JSON_DIR, render, stale
from dashboards.push import push

REPO = Path(__file__).resolve().parents[2]
PROV = REPO / "deploy/grafana/provisioning"


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, cache_dir=tmp_path / "cache")


def _targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            yield panel, t


def test_committed_json_is_up_to_date() -> None:
    # If this fails: run `citywatch dashboards build` and commit dashboards/json.
    assert stale(Settings()) == []


def test_six_dashboards_with_district_and_family_variables() -> None:
    boards = [json.loads(t) for t in render(Settings()).values()]
    assert len(boards) == 6
    assert len({b["uid"] for b in boards}) == 6
    for b in boards:
        names = {v["name"] for v in b["templating"]["list"]}
        assert {"district", "family"} <= names, b["title"]
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids))


def test_every_target_is_known_influxql_or_math_over_known_refs() -> None:
    s = Settings()
    known = all_queries(s)
    n = 0
    for text in render(s).values():
        board = json.loads(text)
        for panel, t in _targets(board):
            if t.get("datasource", {}).get("type") == "__expr__" or "expression" in t:
                refs = {x["refId"] for x in panel["targets"]}
                assert {"A", "B"} <= refs
                continue
            assert t["rawQuery"] is True and t["datasource"]["uid"] == s.grafana.datasource_uid
            assert t["query"] in known, f"{board['title']} / {panel['title']}: unknown query"
            assert t["query"].lstrip().upper().startswith(("SELECT", "SHOW"))
            n += 1
    assert n >= 30


def test_compose_provisioning_matches_settings() -> None:
    s = Settings()
    ds = yaml.safe_load((PROV / "datasources/citywatch.yaml").read_text())
    d = ds["datasources"][0]
    assert (d["uid"], d["name"]) == (s.grafana.datasource_uid, s.grafana.datasource_name)
    assert d["jsonData"]["dbName"] == s.influx.database
    prov = yaml.safe_load((PROV / "dashboards/citywatch.yaml").read_text())
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())["services"]["grafana"]
    mount = next(v for v in compose["volumes"] if v.startswith("../dashboards:"))
    in_container = mount.split(":")[1]
    assert prov["providers"][0]["options"]["path"] == f"{in_container}/{JSON_DIR.name}"


class _FakeGrafana(BaseHTTPRequestHandler):
    """Records requests; the datasource and folder exist after being created once."""

    calls: ClassVar[list[tuple[str, str, Any, str]]] = []
    existing: ClassVar[set[str]] = set()

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        self.calls.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.path in self.existing:
            self._reply(200, {"uid": self.path.rsplit("/", 1)[-1]})
        else:
            self._reply(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/datasources":
            self.existing.add(f"/api/datasources/uid/{body['uid']}")
        elif self.path == "/api/folders":
            self.existing.add(f"/api/folders/{body['uid']}")
        self._reply(200, {"status": "success", "uid": (body or {}).get("uid", "")})

    def do_PUT(self) -> None:
        self._record()
        self._reply(200, {"status": "success"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_grafana() -> Iterator[str]:
    _FakeGrafana.calls, _FakeGrafana.existing = [], set()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_push_creates_then_updates_idempotently(tmp_path: Path, fake_grafana: str) -> None:
    s = _settings(tmp_path)
    uids = push(s, fake_grafana, "tok123", log=lambda m: None)
    first = list(_FakeGrafana.calls)
    assert len(uids) == 6
    assert all(auth == "Bearer tok123" for *_, auth in first)
    posts = {p: b for m, p, b, _ in first if m == "POST"}
    ds = posts["/api/datasources"]
    assert ds["uid"] == s.grafana.datasource_uid and ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["secureJsonData"]["password"]
    assert posts["/api/folders"]["title"] == s.grafana.folder
    boards = [b for m, p, b, _ in first if p == "/api/dashboards/db"]
    assert len(boards) == 6
    assert all(b["overwrite"] is True and b["folderUid"] == "citywatch-citywatch" for b in boards)
    assert {b["dashboard"]["uid"] for b in boards} == set(uids)
    # Second run: datasource updated by uid, folder not created again, dashboards overwritten.
    _FakeGrafana.calls.clear()
    push(s, fake_grafana, "tok123", log=lambda m: None)
    again = [(m, p) for m, p, _, _ in _FakeGrafana.calls]
    assert ("PUT", f"/api/datasources/uid/{s.grafana.datasource_uid}") in again
    assert ("POST", "/api/folders") not in again and ("POST", "/api/datasources") not in again
    assert sum(1 for m, p in again if p == "/api/dashboards/db") == 6
