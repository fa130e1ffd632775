"""Store + downlink logic without servers: expansion, expiry, offline hold, retries, acks,
verification by readings, supersession, audit trail (MQTT replaced by a recorder)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from citywatch.citymodel import CityModel
from citywatch.settings import Settings
from commands.downlink import Downlink
from commands.model import Command
from commands.store import Store, Suggestion
from commands.targets import Targets, UnknownTarget

T0 = 1_800_000_000.0


class FakeMqtt:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.connected = SimpleNamespace(is_set=lambda: self.up)
        self.up = True

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.sent.append((topic, orjson.loads(payload)))


@pytest.fixture(scope="module")
def targets() -> Targets:
    return Targets(CityModel.generate(1, 1))


@pytest.fixture
def dl(targets: Targets) -> Downlink:
    s = Settings()
    s = s.model_copy(
        update={
            "commands": s.commands.model_copy(
                update={"ack_timeout_s": 10.0, "max_attempts": 3, "verify_timeout_s": 100.0}
            )
        }
    )
    d = Downlink(s, Store("sqlite://"), targets)
    d.mqtt = FakeMqtt()  # type: ignore[assignment]
    return d


def lamp(targets: Targets, i: int = 0) -> Any:
    return sorted(
        (d for d in targets.city.devices.values() if d.family == "streetlight"), key=lambda d: d.id
    )[i]


def submit(
    dl: Downlink,
    kind: str,
    ttype: str,
    target: str,
    params: dict[str, Any],
    created: float = T0,
    expires: float = T0 + 600,
) -> Command:
    district = dl.targets.resolve(ttype, target).district
    cmd = Command(
        id=f"c{len(dl.store.list_commands(limit=1000))}",
        kind=kind,
        params=params,
        target_type=ttype,
        target=target,
        district=district,
        issuer="ana",
        role="supervisor",
        created_at=created,
        expires_at=expires,
    )
    dl.store.add_command(cmd)
    loaded = dl.load(cmd.model_dump_json().encode())
    if loaded:
        dl.register(*loaded)
    return cmd


def ack(dl: Downlink, topic: str, cmd_id: str, device: str, status: str = "ok") -> None:
    dl.on_ack(
        SimpleNamespace(
            topic=topic.replace("/down", "/ack"),  # type: ignore[arg-type]
            payload=orjson.dumps({"cmd_id": cmd_id, "device_id": device, "status": status}),
        )
    )


def reading(dl: Downlink, dev: Any, received: float, **fields: Any) -> None:
    rec = {"device_id": dev.id, "received_at": int(received * 1e9), "seq": 9}
    rec.update(fields)
    dl.on_reading(f"circuit:{dev.circuit_id}".encode(), orjson.dumps(rec))


async def flush(dl: Downlink) -> None:
    await dl.flush()


def test_targets(targets: Targets) -> None:
    dev = lamp(targets)
    assert targets.resolve("device", dev.id).devices == (dev,)
    circ = targets.city.circuits[dev.circuit_id]
    assert {d.id for d in targets.resolve("circuit", circ.id).devices} == set(circ.lamp_ids)
    district = targets.resolve("district", dev.district)
    assert all(d.family == "streetlight" for d in district.devices) and len(district.devices) > 20
    with pytest.raises(UnknownTarget):
        targets.resolve("circuit", "nope")
    bin_ = next(d for d in targets.city.devices.values() if d.family == "bin")
    with pytest.raises(Exception, match="takes no commands"):
        targets.resolve("device", bin_.id)


async def test_switch_delivered_acked_applied(dl: Downlink, monkeypatch: Any) -> None:
    dev = lamp(dl.targets)
    monkeypatch.setattr("time.time", lambda: T0 + 1)
    cmd = submit(dl, "switch", "device", dev.id, {"state": "on"})
    dl.tick(T0 + 1)
    sent = dl.mqtt.sent  # type: ignore[union-attr]
    assert len(sent) == 1
    topic, body = sent[0]
    assert topic == f"city/{dev.district}/streetlight/{dev.publisher_id}/down"
    assert body == {
        "cmd_id": cmd.id,
        "device_id": dev.id,
        "kind": "switch",
        "params": {"state": "on"},
        "expires_at": int(T0 + 600),
        "attempt": 1,
    }
    monkeypatch.setattr("time.time", lambda: T0 + 2)
    ack(dl, topic, cmd.id, dev.id)
    reading(dl, dev, T0 + 1.0, power_state="on")  # before the ack: not evidence
    reading(dl, dev, T0 + 3, power_state="on")
    await flush(dl)
    assert dl.store.get(cmd.id).state == "applied"  # type: ignore[union-attr]
    assert not dl.open and not dl.by_device and not dl.open_cmds  # nothing left behind
    actions = [a.action for a in dl.store.audit(cmd.id)]
    assert actions[0] == "issued" and "device_acked" in actions and actions[-1] == "applied"


async def test_expired_command_is_never_sent(dl: Downlink) -> None:
    dev = lamp(dl.targets)
    cmd = submit(dl, "switch", "device", dev.id, {"state": "off"}, created=1.0, expires=2.0)
    dl.tick()
    assert dl.mqtt.sent == []  # type: ignore[union-attr]
    assert dl.store.get(cmd.id).state == "expired"  # type: ignore[union-attr]


async def test_offline_device_waits_then_gets_it(dl: Downlink) -> None:
    dev = lamp(dl.targets, 1)
    status = {"device_id": dev.publisher_id, "status": "offline"}
    dl.on_presence(orjson.dumps(status))
    cmd = submit(dl, "dim", "device", dev.id, {"level_pct": 40}, expires=T0 + 10**6)
    for t in (T0 + 1, T0 + 100, T0 + 1000):
        dl.tick(t)
    assert dl.mqtt.sent == []  # type: ignore[union-attr]
    await flush(dl)
    assert any("held" in a.detail for a in dl.store.audit(cmd.id))
    dl.on_presence(orjson.dumps({**status, "status": "online"}))
    dl.tick(T0 + 1001)
    assert [b["cmd_id"] for _, b in dl.mqtt.sent] == [cmd.id]  # type: ignore[union-attr]


async def test_retries_with_backoff_then_fails(dl: Downlink) -> None:
    dev = lamp(dl.targets, 2)
    cmd = submit(dl, "ping", "device", dev.id, {}, expires=T0 + 10**6)
    times = [T0 + x for x in (0, 5, 10, 15, 29, 30, 69)]
    attempts_at = []
    for t in times:
        before = len(dl.mqtt.sent)  # type: ignore[union-attr]
        dl.tick(t)
        if len(dl.mqtt.sent) > before:  # type: ignore[union-attr]
            attempts_at.append(t - T0)
    assert attempts_at == [0, 10, 30]  # 10 s, then 20 s: doubling
    dl.mqtt.up = False  # type: ignore[union-attr]
    dl.tick(T0 + 100)  # the broker is away: the last attempt is not used up
    assert dl.open[(cmd.id, dev.id)].d.state == "sent"
    dl.mqtt.up = True  # type: ignore[union-attr]
    dl.tick(T0 + 200)
    await flush(dl)
    got = dl.store.get(cmd.id)
    assert got is not None and got.state == "failed" and "no ack after 3 attempts" in got.detail


async def test_circuit_command_and_mismatch(dl: Downlink, monkeypatch: Any) -> None:
    dev = lamp(dl.targets)
    circ = dl.targets.city.circuits[dev.circuit_id]
    monkeypatch.setattr("time.time", lambda: T0)
    cmd = submit(dl, "switch", "circuit", circ.id, {"state": "off"})
    dl.tick(T0)
    assert len(dl.mqtt.sent) == len(circ.lamp_ids)  # type: ignore[union-attr]
    for topic, body in dl.mqtt.sent:  # type: ignore[union-attr]
        ack(dl, topic, cmd.id, body["device_id"])
    lamps = [dl.targets.city.devices[i] for i in circ.lamp_ids]
    for d in lamps[1:]:
        reading(dl, d, T0 + 1, power_state="off")
    await flush(dl)
    assert dl.store.get(cmd.id).state == "acked"  # type: ignore[union-attr]
    reading(dl, lamps[0], T0 + 1, power_state="on")
    reading(dl, lamps[0], T0 + 1.5, power_state="on")  # the same reading again: counts once
    await flush(dl)
    assert dl.store.get(cmd.id).state == "acked"  # type: ignore[union-attr]
    reading(dl, lamps[0], T0 + 2, power_state="on", seq=10)  # second contradiction: failed
    await flush(dl)
    got = dl.store.get(cmd.id)
    assert got is not None and got.state == "failed" and "power_state=on" in got.detail
    states = {d.device_id: d.state for d in dl.store.deliveries(cmd.id)}
    assert (
        states[lamps[0].id] == "failed" and list(states.values()).count("applied") == len(lamps) - 1
    )


async def test_refusal_and_supersession(dl: Downlink, monkeypatch: Any) -> None:
    dev = lamp(dl.targets, 3)
    monkeypatch.setattr("time.time", lambda: T0)
    first = submit(dl, "switch", "device", dev.id, {"state": "on"})
    second = submit(dl, "switch", "device", dev.id, {"state": "off"}, created=T0 + 1)
    await flush(dl)
    assert dl.store.get(first.id).state == "failed"  # type: ignore[union-attr]
    assert "superseded" in dl.store.get(first.id).detail  # type: ignore[union-attr]
    dl.tick(T0 + 1)
    topic, _body = dl.mqtt.sent[-1]  # type: ignore[union-attr]
    ack(dl, topic, second.id, dev.id, status="rejected")
    await flush(dl)
    assert dl.store.get(second.id).state == "failed"  # type: ignore[union-attr]


def test_unknown_or_replayed_records_are_skipped(dl: Downlink) -> None:
    dev = lamp(dl.targets)
    stranger = Command(
        id="zz",
        kind="switch",
        params={"state": "on"},
        target_type="device",
        target=dev.id,
        district=dev.district,
        issuer="mallory",
        role="supervisor",
        created_at=T0,
        expires_at=T0 + 10**9,
    )
    assert dl.load(stranger.model_dump_json().encode()) is None  # not in the store
    assert dl.load(b"{not json") is None
    assert dl.stats.skipped == 2


def test_alert_suggestions(dl: Downlink) -> None:
    ev = {
        "alert_id": "a1",
        "kind": "day_burn",
        "target": "lamp-1",
        "district": "central",
        "severity": "warning",
        "state": "raised",
        "ts": 10**18,
        "suggested_command": "switch off lamp lamp-1",
    }
    dl.on_alert(orjson.dumps(ev))
    dl.on_alert(orjson.dumps(ev))  # replay: still one
    dl.on_alert(orjson.dumps({**ev, "alert_id": "a2", "suggested_command": None}))
    assert [s.alert_id for s in dl.store.suggestions()] == ["a1"]
    dl.on_alert(orjson.dumps({**ev, "state": "cleared"}))
    got = dl.store.suggestion("a1")
    assert isinstance(got, Suggestion) and got.state == "obsolete"
