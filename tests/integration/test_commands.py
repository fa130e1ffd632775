"""Device commands end to end on the real Mosquitto and Kafka.

One gateway, one ``citywatch downlink`` and a small simulated city (lamps only, obeying
commands through ``ingest.simulator.downlink``) run for the whole module; commands go in
through the HTTP API (``notifier.api.create_app`` with real bearer tokens) or the submitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from citywatch.citymodel import CityModel, Device
from citywatch.kafkautil import client_kwargs
from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings, override
from commands.model import Command, CommandRequest
from commands.policy import Issuer
from commands.service import Submitter
from commands.store import Store
from ingest.simulator.config import SimConfig
from ingest.simulator.downlink import SimDownlink
from ingest.simulator.engine import Simulation
from ingest.simulator.publisher import publish

from .helpers import Proc, end_offsets, read_topic, run_id, stop_all, wait_for, wait_log

pytestmark = pytest.mark.integration

SPEED = 5.0


def small_city(rid: str) -> CityModel:
    """Two districts, three lamp circuits, no other devices (keeps the test light).

    Ids get the run id: other simulators (the demo, other tests) publish the same seeded
    ids ("lamp-c01-c01-001") at the same time, and their readings must not count here."""
    city = CityModel.generate(11, 2)
    central = [c for c in city.circuits.values() if c.district == "central"][:2]
    north = [c for c in city.circuits.values() if c.district == "north"][:1]
    circuits = {c.id: c for c in central + north}
    lamps = {i: city.devices[i] for c in circuits.values() for i in c.lamp_ids}
    small = city.model_copy(
        update={
            "circuits": circuits,
            "cabinets": {
                k: v for k, v in city.cabinets.items() if set(v.circuit_ids) & set(circuits)
            },
            "devices": lamps,
            "collection_points": {},
            "collection_rounds": {},
            "routes": {},
            "sites": {},
            "vehicles": {},
        }
    )
    text = small.model_dump_json(exclude_none=True)
    text = text.replace('"lamp-', f'"lamp{rid}-').replace('"circ-', f'"circ{rid}-')
    return CityModel.model_validate_json(text)


@dataclass
class World:
    s: Settings
    city: CityModel
    sim: Simulation
    simdl: SimDownlink
    store: Store
    http: TestClient
    tokens: dict[str, str]
    downlink: Proc
    errors: list[BaseException]
    env: dict[str, str]
    procs: list[Proc]
    tmp: Path

    def lamp(self, district: str, i: int = 0) -> Device:
        lamps = sorted(
            (d for d in self.city.devices.values() if d.district == district),
            key=lambda d: d.id,
        )
        return lamps[i]

    def post(self, who: str, body: dict[str, Any]) -> Any:
        return self.http.post(
            "/commands", json=body, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )

    def wait_state(self, cmd_id: str, states: set[str], timeout_s: float = 60.0) -> Command:
        cmd = wait_for(
            lambda: (c := self.store.get(cmd_id)) is not None and c.state in states and c,
            timeout_s=timeout_s,
            every=0.3,
        )
        got = self.store.get(cmd_id)
        assert cmd, (
            f"{cmd_id} still {got.state if got else None}: {self.trail(cmd_id)}\n"
            + (self.downlink.log_text()[-3000:])
        )
        assert isinstance(cmd, Command)
        return cmd

    def trail(self, cmd_id: str) -> list[str]:
        return [f"{a.action}: {a.detail}" for a in self.store.audit(cmd_id)]

    def set_presence(self, lamp: Device, status: str) -> None:
        """Publish the lamp's status as its Last Will would; wait until it is on Kafka."""
        topic = f"city/{lamp.district}/streetlight/{lamp.publisher_id}/status"
        key = lamp.publisher_id.encode()

        async def say() -> None:
            c = AsyncMqtt(
                **mqtt_kwargs(self.s, "simulator"),
                client_id=f"t-lamp-{run_id()}",
            )
            await c.connect()
            await c.publish(topic, status.encode(), qos=1)
            await c.close()

        def seen(rs: list[Any]) -> bool:
            return any(r.key == key and status.encode() in r.value for r in rs)

        start = asyncio.run(end_offsets(self.s, self.s.kafka.presence_topic))
        asyncio.run(say())
        got = asyncio.run(
            read_topic(self.s, self.s.kafka.presence_topic, start, idle_s=5, until=seen)
        )
        assert seen(got)

    def restart_downlink(self) -> None:
        self.downlink.kill9()
        self.downlink = Proc(["downlink"], self.env, self.tmp / "downlink2.log").start()
        self.procs.append(self.downlink)
        wait_log(self.downlink, "downlink ready", 90)

    def received(self, cmd_id: str) -> list[dict[str, Any]]:
        assert not self.errors, self.errors  # the simulator is still running
        return [b for b in list(self.simdl.received) if b["cmd_id"] == cmd_id]


def _run_sim(
    sim: Simulation,
    simdl: SimDownlink,
    s: Settings,
    ready: threading.Event,
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    async def main() -> None:
        await simdl.start()
        task = asyncio.create_task(publish(sim, s, speed=SPEED, client_id=f"t-sim-{run_id()}"))
        ready.set()
        try:
            while not stop.is_set() and not task.done():
                await asyncio.sleep(0.1)
            if task.done() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await simdl.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced by the fixture
        errors.append(exc)
        ready.set()


@pytest.fixture(scope="module")
def world(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from notifier.api import create_app
    from notifier.store import Store as NotifierStore

    rid = run_id()
    tmp = tmp_path_factory.mktemp("commands")
    city = small_city(rid)
    city_path = tmp / "city.json"
    city.save(city_path)
    env = {
        "CITYWATCH_STATE_DIR": str(stack_settings.state_dir),
        "CITYWATCH_GATEWAY__METRICS_PORT": "0",
        "CITYWATCH_GATEWAY__INSTANCE": f"tcmd{rid}",
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "120",
        "CITYWATCH_GATEWAY__DEVICE_REGISTRY": str(city_path),
        "CITYWATCH_COMMANDS__DB_URL": f"sqlite:///{tmp / 'commands.db'}",
        "CITYWATCH_COMMANDS__CITY_MODEL": str(city_path),
        "CITYWATCH_COMMANDS__GROUP_ID": f"citywatch-test-downlink-{rid}",
        "CITYWATCH_COMMANDS__INSTANCE": f"t{rid}",
        "CITYWATCH_COMMANDS__ACK_TIMEOUT_S": "1.0",
        "CITYWATCH_COMMANDS__MAX_ATTEMPTS": "4",
        "CITYWATCH_COMMANDS__TICK_S": "0.2",
    }
    s = override(
        stack_settings,
        "commands",
        db_url=env["CITYWATCH_COMMANDS__DB_URL"],
        city_model=city_path,
        rate_limit_count=20,
    )
    gw = Proc(["gateway"], env, tmp / "gateway.log").start()
    dl = Proc(["downlink"], env, tmp / "downlink.log").start()
    procs = [gw, dl]
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    thread = None
    try:
        wait_log(gw, "up (mode", 60)
        wait_log(dl, "downlink ready", 90)
        cfg = SimConfig(
            seed=11,
            sim_seconds=SPEED * 900,
            fault_rate=0.0,
            min_faults_per_kind=0,
            transport_rate=0.0,
            clock_skew_rate=0.0,
        )
        sim = Simulation(cfg, city)
        ignored = sorted(d.id for d in city.devices.values() if d.district == "central")[-1]
        simdl = SimDownlink(sim, s, ignore={ignored}, client_id=f"t-simdl-{rid}")
        thread = threading.Thread(
            target=_run_sim, args=(sim, simdl, s, ready, stop, errors), daemon=True
        )
        thread.start()
        assert ready.wait(90) and not errors, errors
        nstore = NotifierStore(f"sqlite:///{tmp / 'notifier.db'}")
        nstore.create_schema()
        tokens = {
            "crew-central": nstore.create_token("crew-central", "crew", ["central"]),
            "crew-north": nstore.create_token("crew-north", "crew", ["north"]),
            "boss": nstore.create_token("boss", "supervisor"),
        }
        app = create_app(s, store=nstore)
        store = Store(env["CITYWATCH_COMMANDS__DB_URL"])
        with TestClient(app) as http:
            yield World(s, city, sim, simdl, store, http, tokens, dl, errors, env, procs, tmp)
        store.close()
    finally:
        stop.set()
        if thread is not None:
            thread.join(20)
        stop_all(s, reversed(procs))


def test_switch_is_delivered_acknowledged_and_confirmed_by_the_next_reading(w: World) -> None:
    lamp = w.lamp("central", 0)
    r = w.post(
        "crew-central",
        {
            "kind": "switch",
            "target_type": "device",
            "target": lamp.id,
            "params": {"state": "on"},
            "note": "dark street",
        },
    )
    assert r.status_code == 201, r.text
    cmd_id = r.json()["id"]
    cmd = w.wait_state(cmd_id, {"applied", "failed", "expired"})
    assert cmd.state == "applied", "\n".join(w.trail(cmd_id))
    (d,) = w.store.deliveries(cmd_id)
    assert d.attempts >= 1 and d.acked_at is not None and d.done_at is not None
    assert d.done_at >= d.acked_at >= (d.sent_at or 0) - 60
    assert "shows it" in d.detail  # confirmed by a reading, not by the ack alone
    got = w.received(cmd_id)
    assert got and got[0]["kind"] == "switch" and got[0]["params"] == {"state": "on"}
    # the lamp really is on now, and the audit trail says who did it
    assert w.sim.lamps.overrides[lamp.id].state == "on"
    actions = [a.action for a in w.store.audit(cmd_id)]
    assert actions[0] == "issued" and w.store.audit(cmd_id)[0].actor == "crew-central"
    assert {"device_sent", "device_acked", "device_applied", "applied"} <= set(actions)
    detail = w.http.get(
        f"/commands/{cmd_id}", headers={"Authorization": f"Bearer {w.tokens['crew-central']}"}
    ).json()
    assert detail["state"] == "applied" and detail["deliveries"][0]["state"] == "applied"


def test_offline_lamp_gets_the_command_after_reconnecting(w: World) -> None:
    lamp = w.lamp("central", 1)
    w.set_presence(lamp, "offline")
    time.sleep(1.5)  # the downlink polls presence every 0.5 s
    r = w.post(
        "boss",
        {"kind": "dim", "target_type": "device", "target": lamp.id, "params": {"level_pct": 40}},
    )
    assert r.status_code == 201, r.text
    cmd_id = r.json()["id"]
    held = wait_for(lambda: any("held: device offline" in t for t in w.trail(cmd_id)), 30, 0.3)
    assert held, w.trail(cmd_id)
    time.sleep(2.0)
    assert w.store.get(cmd_id).state == "queued"  # type: ignore[union-attr]
    assert w.received(cmd_id) == []  # nothing went down while it was offline
    w.set_presence(lamp, "online")
    cmd = w.wait_state(cmd_id, {"applied", "failed", "expired"})
    assert cmd.state == "applied", "\n".join(w.trail(cmd_id))
    assert w.received(cmd_id)[0]["params"] == {"level_pct": 40}


def test_expired_command_is_never_delivered(w: World) -> None:
    lamp = w.lamp("central", 2)
    # A command that waited in Kafka past its expiry (e.g. while the downlink was down).
    sub = Submitter(w.s, w.store)
    boss = Issuer("boss", "supervisor", frozenset())
    req = CommandRequest(
        kind="switch", target_type="device", target=lamp.id, params={"state": "off"}, expires_in_s=5
    )
    cmd = sub.prepare(boss, req, "test", now=time.time() - 60)

    async def produce() -> None:
        from commands.service import command_record

        p = await sub._get_producer()
        await (await p.send(w.s.kafka.commands_topic, command_record(cmd), key=cmd.key))
        await sub.close()

    asyncio.run(produce())
    got = w.wait_state(cmd.id, {"expired", "applied", "failed"})
    assert got.state == "expired" and "before delivery" in got.detail
    time.sleep(2.0)
    assert w.received(cmd.id) == [] and w.store.deliveries(cmd.id) == []


def test_lamp_ignoring_commands_fails_after_retries(w: World) -> None:
    ignored = next(iter(w.simdl.ignore))
    r = w.post(
        "boss",
        {"kind": "switch", "target_type": "device", "target": ignored, "params": {"state": "on"}},
    )
    cmd_id = r.json()["id"]
    cmd = w.wait_state(cmd_id, {"applied", "failed", "expired"})
    assert cmd.state == "failed" and "no ack after 4 attempts" in cmd.detail
    assert len(w.received(cmd_id)) == 4, (  # sent 4 times (1, 2, 4 s backoff), never acked
        [(b["cmd_id"], b["device_id"]) for b in w.simdl.received],
        w.trail(cmd_id),
        w.city.devices[ignored],
    )


def test_crew_cannot_command_another_district(w: World) -> None:
    north = w.lamp("north", 0)
    r = w.post(
        "crew-central",
        {"kind": "switch", "target_type": "device", "target": north.id, "params": {"state": "off"}},
    )
    assert r.status_code == 403 and "north" in r.json()["detail"]
    circuit = next(c for c in w.city.circuits.values() if c.district == "north")
    r = w.post(
        "crew-central",
        {
            "kind": "switch",
            "target_type": "circuit",
            "target": circuit.id,
            "params": {"state": "off"},
        },
    )
    assert r.status_code == 403
    assert w.store.list_commands(target=north.id) == []  # refused: not stored, not sent


def test_district_wide_needs_confirmation(w: World) -> None:
    r = w.post("boss", {"kind": "ping", "target_type": "district", "target": "north"})
    assert r.status_code == 428 and "confirm" in r.json()["detail"]
    assert w.store.list_commands(target="north") == []
    r = w.post(
        "crew-north",
        {"kind": "ping", "target_type": "district", "target": "north", "confirm": True},
    )
    assert r.status_code == 403
    r = w.post(
        "boss", {"kind": "ping", "target_type": "district", "target": "north", "confirm": True}
    )
    assert r.status_code == 201
    cmd = w.wait_state(r.json()["id"], {"applied", "failed", "expired"})
    north_lamps = [d for d in w.city.devices.values() if d.district == "north"]
    assert cmd.state == "applied"
    assert len(w.store.deliveries(cmd.id)) == len(north_lamps)


def test_alert_suggestion_runs_only_when_a_person_confirms(w: World) -> None:
    from aiokafka import AIOKafkaProducer

    lamp = w.lamp("central", 3)
    alert_id = f"a{run_id()}"
    event = {
        "alert_id": alert_id,
        "kind": "day_burn",
        "target": lamp.id,
        "target_type": "device",
        "family": "streetlight",
        "district": "central",
        "severity": "warning",
        "state": "raised",
        "episode_start": time.time_ns(),
        "ts": time.time_ns(),
        "message": "lit while it should be dark",
        "suggested_command": f"switch off lamp {lamp.id}",
    }

    async def produce() -> None:
        p = AIOKafkaProducer(**client_kwargs(w.s))
        await p.start()
        try:
            await p.send_and_wait(
                w.s.kafka.alerts_topic, orjson.dumps(event), key=alert_id.encode()
            )
        finally:
            await p.stop()

    asyncio.run(produce())
    auth = {"Authorization": f"Bearer {w.tokens['crew-central']}"}
    listed = wait_for(
        lambda: [
            s
            for s in w.http.get("/commands/suggestions", headers=auth).json()
            if s["alert_id"] == alert_id
        ],
        30,
        0.3,
    )
    assert listed and listed[0]["text"] == f"switch off lamp {lamp.id}"
    time.sleep(1.0)
    assert w.store.list_commands(target=lamp.id) == []  # suggested, not executed
    r = w.http.post(f"/commands/suggestions/{alert_id}/confirm", headers=auth)
    assert r.status_code == 201, r.text
    cmd = w.wait_state(r.json()["id"], {"applied", "failed", "expired"})
    assert cmd.state == "applied" and cmd.source == f"alert:{alert_id}"
    assert cmd.issuer == "crew-central" and w.sim.lamps.overrides[lamp.id].state == "off"


def test_downlink_restart_resumes_a_held_command(w: World) -> None:
    lamp = w.lamp("north", 1)
    w.set_presence(lamp, "offline")
    time.sleep(1.5)
    r = w.post(
        "crew-north",
        {"kind": "switch", "target_type": "device", "target": lamp.id, "params": {"state": "on"}},
    )
    assert r.status_code == 201, r.text
    cmd_id = r.json()["id"]
    assert wait_for(lambda: any("held" in t for t in w.trail(cmd_id)), 30, 0.3), w.trail(cmd_id)
    w.restart_downlink()  # kill -9: the held delivery lives on in the store
    assert "resuming 1 open deliveries" in w.downlink.log_text()
    w.set_presence(lamp, "online")
    cmd = w.wait_state(cmd_id, {"applied", "failed", "expired"})
    assert cmd.state == "applied", "\n".join(w.trail(cmd_id))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The page includes the panel itself; a second include must not add a second panel.
INCLUDE_PANEL = """document.addEventListener("DOMContentLoaded", () => {
  const s = document.createElement("script"); s.src = "/commands/live.js"; document.body.append(s);
});"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
async def test_operations_page_shows_command_state_and_confirms_suggestions(w: World) -> None:
    import uvicorn
    from playwright.async_api import async_playwright, expect

    from notifier.api import create_app

    from .test_notifier_support import free_port

    port = free_port()
    app = create_app(w.s, store=w.http.app.state.store)  # type: ignore[attr-defined]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    lamp = w.lamp("central", 4)
    try:
        assert wait_for(lambda: server.started, 30, 0.1)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = await browser.new_page()
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
            await page.add_init_script(script=INCLUDE_PANEL)
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.fill("#token", w.tokens["crew-central"])
            await page.click("#login button")
            await expect(page.locator("#conn")).to_have_text("live")
            await expect(page.locator("#commands")).to_have_count(1)
            r = await asyncio.to_thread(
                w.post,
                "crew-central",
                {
                    "kind": "switch",
                    "target_type": "device",
                    "target": lamp.id,
                    "params": {"state": "on"},
                },
            )
            cmd_id = r.json()["id"]
            assert w.wait_state(cmd_id, {"applied", "failed"}).state == "applied", (
                w.trail(cmd_id),
                w.received(cmd_id),
            )
            row = page.locator("#cmd-table tbody tr", has_text=cmd_id)
            await expect(row).to_have_count(1, timeout=30_000)  # pushed by the event stream
            await expect(row).to_contain_text("applied", timeout=60_000)
            # A suggestion from an alert: shown with a Confirm button; confirming sends it.
            from commands.store import Suggestion

            alert_id = f"b{run_id()}"
            w.store.upsert_suggestion(
                Suggestion(
                    alert_id,
                    f"switch off lamp {lamp.id}",
                    "day_burn",
                    lamp.id,
                    "central",
                    "warning",
                    time.time(),
                    "pending",
                    None,
                    None,
                )
            )
            await page.reload()
            await expect(page.locator("#conn")).to_have_text("live")
            sug = page.locator("#sug-table tbody tr", has_text=alert_id)
            await expect(sug).to_have_count(1, timeout=30_000)
            await sug.locator("button").click()
            await expect(sug).to_have_count(0, timeout=30_000)
            got = w.store.suggestion(alert_id)
            assert got is not None and got.state == "confirmed" and got.cmd_id
            confirmed = page.locator("#cmd-table tbody tr", has_text=got.cmd_id)
            await expect(confirmed).to_contain_text("applied", timeout=60_000)
            await browser.close()
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def w(world: World) -> World:
    return world
