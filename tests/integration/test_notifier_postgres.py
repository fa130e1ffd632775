"""The work-order store on PostgreSQL 15 (Debian's server, a throwaway cluster in tmp):
the same lifecycle as on SQLite, row locks, and the one-open-order-per-fault unique index."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from citywatch.settings import CrewSettings, NotifierSettings, RouteRule
from notifier.routing import Router
from notifier.store import Store, WorkOrder

from .test_notifier_support import free_port

pytestmark = pytest.mark.integration
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*cmd: str) -> list[str]:
    # initdb refuses to run as root; the Debian package's postgres user runs the cluster.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    # Not under pytest's tmp (mode 0700 for root): the postgres user must reach the directory.
    d = Path(tempfile.mkdtemp(prefix="citywatch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(d, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            f"{d}/data",
            "-A",
            "trust",
            "-U",
            "cw",
            "--no-sync",
            "-E",
            "UTF8",
        ),
        check=True,
        capture_output=True,
    )
    ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(
        _as_postgres(
            ctl,
            "-D",
            f"{d}/data",
            "-l",
            f"{d}/log",
            "-w",
            "-o",
            f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://cw@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(ctl, "-D", f"{d}/data", "-m", "immediate", "stop"), capture_output=True
        )
        shutil.rmtree(d, ignore_errors=True)


def ev(state: str, alert: str, ts: int) -> dict[str, Any]:
    return {
        "alert_id": alert,
        "kind": "lamp_out",
        "target": "lamp-pg",
        "target_type": "device",
        "family": "streetlight",
        "district": "north",
        "severity": "critical",
        "state": state,
        "episode_start": ts,
        "ts": ts,
        "message": "dark",
    }


def test_lifecycle_on_postgres(pg_url: str) -> None:
    st = Store(pg_url)
    st.create_schema()
    r = Router(
        NotifierSettings(
            crews=[CrewSettings(id="c", webhook_url="http://x")],
            routes=[RouteRule(crew="c")],
            default_crew="c",
            supervisor=CrewSettings(id="sup", email=["s@x"], mqtt=False),
        )
    )
    out, oid = st.apply_event(ev("raised", "p1", 1), "c", r.plan, now=100.0)
    assert out == "opened" and oid is not None
    assert st.apply_event(ev("raised", "p1", 1), "c", r.plan)[0] == "duplicate"
    assert st.apply_event(ev("raised", "p2", 2), "c", r.plan)[0] == "updated"
    # The unique open key refuses a second open order for the same fault.
    with pytest.raises(IntegrityError), st.tx() as s:
        s.add(
            WorkOrder(
                open_key="lamp-pg|lamp_out",
                alert_id="x",
                target="lamp-pg",
                target_type="device",
                kind="lamp_out",
                family="streetlight",
                district="north",
                severity="major",
                crew_id="c",
                status="open",
                message="",
                repeats=0,
                escalation_level=0,
                first_event_ts=0,
                last_event_ts=0,
                created_at=0.0,
                updated_at=0.0,
            )
        )
    assert st.overdue({"critical": 10.0}, {"critical": 20.0}, 111.0) == [(oid, 1)]
    assert st.escalate(oid, 1, r.plan)
    assert st.transition(oid, "acknowledged", "c", crew_id="c")["acked_by"] == "c"
    assert st.transition(oid, "resolved", "c", "done", crew_id="c")["status"] == "resolved"
    assert st.apply_event(ev("cleared", "p2", 3), "c", r.plan) == ("closed", oid)
    assert [t["to"] for t in st.transitions(oid)] == [
        "open",
        "open",
        "acknowledged",
        "resolved",
        "closed",
    ]
    assert [(d["event"], d["channel"]) for d in st.deliveries(oid)] == [
        ("opened", "webhook"),
        ("opened", "mqtt"),
        ("sla_ack", "email"),
    ]
    tok = st.create_token("c", "crew", ["north"])
    info = st.principal_for_token(tok)
    assert info is not None and info.name == "c"
    st.close()
