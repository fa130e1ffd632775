"""Notifier end to end with real Kafka, Mosquitto, an aiosmtpd SMTP server and an HTTP
receiver: each channel gets each notification exactly once, repeats do not spam, SLAs
escalate, and a kill -9 between persisting and sending still yields exactly one message."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citywatch.settings import Settings
from notifier.channels.webhook import verify_signature
from notifier.store import Store

from .helpers import influx_query, start_group_at_end, wait_for, wait_log
from .test_notifier_support import SECRET, Receivers, alert, produce_alerts, write_config

pytestmark = pytest.mark.integration


@pytest.fixture
def receivers(stack_settings: Settings, rid: str) -> Iterator[Receivers]:
    r = Receivers(stack_settings, f"crew-{rid}").start()
    yield r
    r.stop()


async def _start(
    spawn: Any, s: Settings, rid: str, cfg: Path, env: dict[str, str] | None = None
) -> Any:
    p = spawn("notify", env={"CITYWATCH_CONFIG": str(cfg), **(env or {})}, name="notify")
    wait_log(p, "notifier running", 60)
    return p


async def test_each_channel_once_repeats_update_and_sla_escalates(
    stack_settings: Settings, spawn: Any, rid: str, receivers: Receivers, tmp_path: Path
) -> None:
    s = stack_settings
    db = tmp_path / "orders.db"
    cfg = write_config(tmp_path / "c.toml", rid, receivers, db, short_sla=True)
    await start_group_at_end(s, f"citywatch-notifier-test-{rid}", s.kafka.alerts_topic)
    proc = await _start(spawn, s, rid, cfg)
    lamp, bin_ = f"lamp-{rid}", f"bin-{rid}"
    t0 = time.time_ns()
    await produce_alerts(
        s,
        [
            alert(rid, f"A{rid}", lamp, "lamp_out", "major", "raised", t0),
            b"{not an alert",  # bad input: logged and skipped
            alert(rid, f"B{rid}", lamp, "lamp_out", "major", "raised", t0 + 1),  # same fault again
            alert(rid, f"A{rid}", lamp, "lamp_out", "major", "raised", t0),  # a replayed record
            alert(rid, f"F{rid}", bin_, "bin_fire", "critical", "raised", t0 + 2),
        ],
    )
    assert wait_for(
        lambda: len(receivers.of(event="opened")) >= 6 and receivers.of(event="sla_resolve"), 60
    )
    await produce_alerts(
        s, [alert(rid, f"B{rid}", lamp, "lamp_out", "major", "cleared", t0 + 10**12)]
    )
    assert wait_for(lambda: len(receivers.of(event="auto_resolved")) >= 3, 60)
    receivers.settle()
    assert "skipping bad alert record" in proc.log_text() and proc.alive()

    for ch in ("webhook", "email", "mqtt"):
        got = Counter(
            (g.doc["order"]["target"], g.event)
            for g in receivers.of(ch)
            if g.where != "/supervisor"
        )
        assert got == {(lamp, "opened"): 1, (bin_, "opened"): 1, (lamp, "auto_resolved"): 1}, ch
    # (Other alerts on the shared topic go to nobody-<rid>, but may reach the supervisor.)
    sup = [
        g
        for g in receivers.of("webhook")
        if g.where == "/supervisor" and g.doc["order"]["target"] in (lamp, bin_)
    ]
    assert sorted((g.doc["order"]["target"], g.event) for g in sup) == [
        (bin_, "sla_ack"),
        (bin_, "sla_resolve"),
    ]
    keys = [g.key for g in receivers.got if g.doc["order"]["target"] in (lamp, bin_)]
    assert len(keys) == len(set(keys))
    for g in receivers.of("webhook"):
        assert verify_signature(
            SECRET.encode(),
            g.headers["X-Citywatch-Timestamp"],
            g.raw,
            g.headers["X-Citywatch-Signature"],
        )
    # The repeat updated the lamp's order; the clear resolved it.
    st = Store(f"sqlite:///{db}")
    orders = {o["target"]: o for o in st.list_orders(statuses=["open", "resolved"])}
    assert orders[lamp]["repeats"] == 1 and orders[lamp]["status"] == "resolved"
    assert orders[bin_]["escalation_level"] == 2 and orders[bin_]["status"] == "open"
    # The crew's retained status reaches a late subscriber.
    late = Receivers(s, receivers.crew)
    late.start()
    try:
        assert wait_for(lambda: late.status, 10)
        doc, retained = late.status[-1]
        assert retained and doc["open"] == 1 and doc["crew_id"] == receivers.crew
    finally:
        late.stop()


async def test_kill9_between_persist_and_send_sends_exactly_once(
    stack_settings: Settings, spawn: Any, rid: str, receivers: Receivers, tmp_path: Path
) -> None:
    s = stack_settings
    db = tmp_path / "orders.db"
    # A long delivery delay holds every notification after it is persisted: the kill lands
    # exactly between the two steps.
    cfg = write_config(tmp_path / "c.toml", rid, receivers, db, "delivery_delay_s = 3600")
    await start_group_at_end(s, f"citywatch-notifier-test-{rid}", s.kafka.alerts_topic)
    p = await _start(spawn, s, rid, cfg)
    target = f"lamp-{rid}"
    await produce_alerts(s, [alert(rid, f"K{rid}", target, "lamp_out", "major", "raised")])
    st = Store(f"sqlite:///{db}")

    def mine() -> list[dict[str, Any]]:
        # Other tests' alerts share the topic (routed to nobody-<rid>): look at ours only.
        ids = {o["id"] for o in st.list_orders(statuses=["open"]) if o["target"] == target}
        return [d for d in st.deliveries() if d["work_order_id"] in ids]

    wait_for(lambda: db.exists() and len(mine()) == 3, 60)
    assert [d["state"] for d in mine()] == ["pending"] * 3
    p.kill9()
    assert receivers.of(target=target) == []

    p2 = await _start(spawn, s, rid, cfg, {"CITYWATCH_NOTIFIER__DELIVERY_DELAY_S": "0"})
    assert wait_for(lambda: len(receivers.of(target=target)) >= 3, 60)
    receivers.settle()
    got = Counter((g.channel, g.event) for g in receivers.of(target=target))
    assert got == {("webhook", "opened"): 1, ("email", "opened"): 1, ("mqtt", "opened"): 1}
    assert wait_for(lambda: all(d["state"] == "sent" for d in mine()), 30)
    assert len([o for o in st.list_orders() if o["target"] == target]) == 1
    assert "sent opened" in p2.log_text()


async def test_kpis_reach_influxdb(stack_settings: Settings, rid: str, tmp_path: Path) -> None:
    from notifier.kpis import write_kpis

    s = stack_settings
    st = Store(f"sqlite:///{tmp_path / 'k.db'}")
    st.create_schema()
    now = time.time()
    for i in range(4):
        e = alert(rid, f"K{rid}{i}", f"bin-{rid}-{i}", "bin_overflow", "major", "raised")
        st.apply_event(e, "c", lambda o, ev: [], now=now - 3600)
    for oid in (1, 2, 3):
        st.transition(oid, "acknowledged", "c")
        st.transition(oid, "resolved", "c", "emptied")
    assert await write_kpis(s, st) == 2  # d<rid>/bin and all/all
    q = (
        f"SELECT last(closure_rate), last(created), last(ack_s_mean) "
        f'FROM "{s.influx.database}"."{s.influx.kpi_retention_policy}"."workorders" '
        f"WHERE district = 'd{rid}' AND family = 'bin'"
    )
    rows = wait_for(lambda: influx_query(s, q), 30)
    assert rows and rows[0][1] == 0.75 and rows[0][2] == 4.0 and rows[0][3] >= 3600
