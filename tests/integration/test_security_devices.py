"""Per-device credentials on a private Mosquitto (own state dir and port): ACL, revocation,
and a device speaking for another one ending in the dead-letter topic through the gateway."""

from __future__ import annotations

import asyncio
import queue
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from citywatch import credentials
from citywatch.security.devices import DeviceRegister, apply
from citywatch.security.tls import BrokerTls
from citywatch.settings import Settings
from citywatch.stack.mosquitto import Mosquitto
from citywatch.stack.ports import free_port

from .helpers import end_offsets, read_topic, wait_log

pytestmark = pytest.mark.integration


def private_settings(state: Path, **security: Any) -> Settings:
    base = Settings()
    return Settings(
        state_dir=state,
        cache_dir=base.cache_dir,
        mqtt=base.mqtt.model_copy(update={"port": free_port()}),
        kafka=base.kafka,
        influx=base.influx,
        security=base.security.model_copy(update={"tls_port": free_port(), **security}),
        # The broker is private, Kafka and InfluxDB are the shared ones: their passwords too.
        passwords={
            role: SecretStr(credentials.password(base, role)) for role in ("kafka", "influx")
        },
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(private_settings(tmp_path / "state", tls=True))
    m.up()
    yield m
    m.proc.stop(10)


class Client:
    """A blocking MQTT 5 client for tests: connect result, received messages, PUBACK codes."""

    def __init__(
        self,
        s: Settings,
        user: str | None,
        password: str | None,
        *,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{time.monotonic_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls is not None:
            self.c.tls_set_context(tls)
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[int] = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self.disconnected = False
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc.value)
        self.c.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload))
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc.value)

        def gone(*_: object) -> None:
            self.disconnected = True

        self.c.on_disconnect = gone
        self.c.connect(s.mqtt.host, port or s.mqtt.port, keepalive=10)
        self.c.loop_start()
        try:
            self.rc = self.connack.get(timeout=3)  # a local broker answers in milliseconds
        except queue.Empty:
            self.rc = -1

    def publish(self, topic: str, payload: bytes) -> int:
        """The PUBACK reason code; 0x10 (no matching subscribers) is a success too: 0."""
        info = self.c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.02)
        rc = self.pubacks.get(info.mid, -1)
        return 0 if rc == 0x10 else rc

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        time.sleep(0.3)

    def received(self, wait_s: float = 1.5) -> list[tuple[str, bytes]]:
        out = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                out.append(self.inbox.get(timeout=0.1))
            except queue.Empty:
                continue
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def role(s: Settings, name: str) -> Client:
    return Client(s, name, credentials.password(s, name))


def test_device_publishes_only_under_its_own_topic(broker: Mosquitto) -> None:
    s = broker.s
    reg = DeviceRegister(s)
    pw_a, pw_b = reg.add("dev-aaa"), reg.add("dev-bbb")
    assert apply(s) is True  # SIGHUP to the running broker, no restart
    watcher = role(s, "gateway")
    watcher.subscribe("city/#")
    a, b = Client(s, "dev-aaa", pw_a), Client(s, "dev-bbb", pw_b)
    assert (a.rc, b.rc) == (0, 0)
    assert a.publish("city/central/bin/dev-aaa/up", b"own") == 0
    # MQTT 5: Mosquitto answers an ACL-denied QoS 1 publish with 0x87 Not authorized.
    assert a.publish("city/central/bin/dev-bbb/up", b"spoof") == 0x87
    assert a.publish("city/central/bin/dev-aaa/down", b"self-command") == 0x87
    got = watcher.received()
    assert got == [("city/central/bin/dev-aaa/up", b"own")]
    # Reading: only its own down topic.
    a.subscribe("city/#")
    a.subscribe("city/central/bin/dev-bbb/down")
    b.subscribe("city/central/bin/dev-bbb/down")
    notifier = role(s, "notifier")
    assert notifier.publish("city/central/bin/dev-bbb/down", b"cmd-b") == 0
    assert notifier.publish("city/central/bin/dev-aaa/down", b"cmd-a") == 0
    assert b.received() == [("city/central/bin/dev-bbb/down", b"cmd-b")]
    # a's wildcard and its subscription to b's topic deliver only what is a's own.
    assert a.received(0.5) == [("city/central/bin/dev-aaa/down", b"cmd-a")]
    for c in (a, b, watcher, notifier):
        c.close()


def test_wrong_password_and_revoked_device_are_refused(broker: Mosquitto) -> None:
    s = broker.s
    reg = DeviceRegister(s)
    pw = reg.add("dev-ccc")
    apply(s)
    # Mosquitto 2.0.11 answers a bad password with 0x87 Not authorized (0x86 on others).
    refused = (0x86, 0x87)
    assert Client(s, "dev-ccc", pw + "x").rc in refused
    connected = Client(s, "dev-ccc", pw)
    assert connected.rc == 0
    assert reg.revoke("dev-ccc") is not None
    apply(s)
    assert Client(s, "dev-ccc", pw).rc in refused
    # The reload also re-checks connected clients: the revoked one is dropped.
    deadline = time.monotonic() + 5
    while not connected.disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connected.disconnected
    connected.close()
    # Re-adding with a new password works without a restart either.
    pw2 = reg.add("dev-ccc")
    apply(s)
    assert Client(s, "dev-ccc", pw2).rc == 0


def test_devices_survive_stack_restart(broker: Mosquitto) -> None:
    s = broker.s
    pw = DeviceRegister(s).add("dev-ddd")
    apply(s)
    broker.proc.stop(10)
    broker.up()  # `citywatch stack up` regenerates the password file from the register
    assert Client(s, "dev-ddd", pw).rc == 0


def _ctx(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_tls_listener_with_project_ca(broker: Mosquitto) -> None:
    s = broker.s
    tls = BrokerTls(s)
    pw = DeviceRegister(s).add("dev-tls")
    apply(s)
    port = s.security.tls_port
    ok = Client(s, "dev-tls", pw, port=port, tls=_ctx(tls.ca_cert))
    assert ok.rc == 0
    assert ok.publish("city/central/bin/dev-tls/up", b"x") == 0
    ok.close()
    # A client that does not trust the project CA refuses the server's certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(s, "dev-tls", pw, port=port, tls=_ctx(None))
    # Plain MQTT on the TLS port gets no CONNACK.
    assert Client(s, "dev-tls", pw, port=port).rc != 0
    # The plaintext loopback listener stays on by default.
    assert Client(s, "dev-tls", pw).rc == 0


def test_require_tls_turns_plaintext_off(tmp_path: Path) -> None:
    s = private_settings(tmp_path / "state", require_tls=True)
    m = Mosquitto(s)
    m.up()
    try:
        pw = credentials.password(s, "gateway")
        with pytest.raises(ConnectionRefusedError):
            Client(s, "gateway", pw)
        ca = BrokerTls(s).ca_cert
        assert Client(s, "gateway", pw, port=s.security.tls_port, tls=_ctx(ca)).rc == 0
    finally:
        m.proc.stop(10)


def test_client_certificate_auth_and_revocation(tmp_path: Path) -> None:
    s = private_settings(tmp_path / "state", tls=True, tls_client_certs=True)
    tls = BrokerTls(s)
    tls.ensure()
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key, serial = tls.issue_client("dev-crt")
    (certs / "c.crt").write_bytes(cert)
    (certs / "c.key").write_bytes(key)
    DeviceRegister(s).add("dev-crt", cert_serial=serial)
    m = Mosquitto(s)
    m.up()
    port = s.security.tls_port
    try:
        with_cert = Client(s, None, None, port=port, tls=_ctx(tls.ca_cert, *_pair(certs)))
        assert with_cert.rc == 0
        # CN = username: the ACL pattern applies to the certificate's device id.
        assert with_cert.publish("city/central/bin/dev-crt/up", b"x") == 0
        assert with_cert.publish("city/central/bin/other-dev/up", b"x") == 0x87
        with_cert.close()
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
            bare = Client(s, "dev-crt", "whatever", port=port, tls=_ctx(tls.ca_cert))
            assert bare.rc != 0
            raise ssl.SSLError("refused after handshake")
        DeviceRegister(s).revoke("dev-crt")
        m.proc.stop(10)
        m.up()  # the CRL is read when the listener starts
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
            again = Client(s, None, None, port=port, tls=_ctx(tls.ca_cert, *_pair(certs)))
            assert again.rc != 0
            raise ssl.SSLError("refused after handshake")
    finally:
        m.proc.stop(10)


def _pair(d: Path) -> tuple[Path, Path]:
    return d / "c.crt", d / "c.key"


def _gateway_env(s: Settings, **extra: str) -> dict[str, str]:
    """A gateway on the private broker (its own state dir) and the shared Kafka."""
    return {
        "CITYWATCH_STATE_DIR": str(s.state_dir),
        "CITYWATCH_MQTT__PORT": str(s.mqtt.port),
        # Its own state dir, the shared Kafka: the shared Kafka password.
        "CITYWATCH_PASSWORDS": orjson.dumps({"kafka": credentials.password(s, "kafka")}).decode(),
        **extra,
    }


def test_spoofed_device_id_is_dead_lettered_end_to_end(
    broker: Mosquitto, spawn: Any, rid: str
) -> None:
    s = broker.s
    dev = f"dev-{rid}"
    pw = DeviceRegister(s).add(dev)
    apply(s)
    start = asyncio.run(end_offsets(s, s.kafka.deadletter_topic))
    gw = spawn(
        "gateway",
        "--instance",
        f"gw-sec-{rid}",
        env=_gateway_env(s),
        name="gateway",
    )
    wait_log(gw, "up (mode", 60)
    c = Client(s, dev, pw)
    topic = f"city/central/bin/{dev}/up"
    body = {"device_id": "bin-0001", "fill_ratio": 0.5, "ts": time.time()}
    assert c.publish(topic, orjson.dumps(body)) == 0
    c.close()

    def mine(recs: list[Any]) -> list[Any]:
        return [r for r in recs if dict(r.headers or []).get("mqtt_topic", b"") == topic.encode()]

    recs = asyncio.run(
        read_topic(s, s.kafka.deadletter_topic, start, until=lambda r: mine(r), timeout_s=60)
    )
    got = mine(recs)
    assert len(got) == 1
    headers = dict(got[0].headers)
    assert headers["reason"] == b"device_mismatch"
    assert orjson.loads(got[0].value) == body  # raw bytes kept verbatim
    # Secrets never reach a log: the gateway's, the broker's.
    logs = gw.log_text() + broker.proc.log_file.read_text(errors="replace")
    assert "gateway up" in logs or "up (mode" in logs
    secrets = [pw, *credentials.load_all(s).values()]
    leaked = [x for x in secrets if x in logs]
    assert not leaked


@pytest.mark.parametrize("client_certs", [False, True], ids=["ca", "client-certs"])
def test_pipeline_over_tls_when_plaintext_is_off(
    tmp_path: Path, spawn: Any, rid: str, client_certs: bool
) -> None:
    """With require_tls the gateway itself connects over TLS (with its role certificate when
    client certificates are required) and a device's TLS reading reaches Kafka."""
    s = private_settings(tmp_path / "state", require_tls=True, tls_client_certs=client_certs)
    m = Mosquitto(s)
    m.up()
    try:
        dev = f"dev-{rid}"
        pw = DeviceRegister(s).add(dev)
        apply(s)
        tls = BrokerTls(s)
        start = asyncio.run(end_offsets(s, s.kafka.readings_topic))
        gw = spawn(
            "gateway",
            "--instance",
            f"gw-tls-{rid}",
            env=_gateway_env(
                s,
                CITYWATCH_SECURITY__REQUIRE_TLS="true",
                CITYWATCH_SECURITY__TLS_PORT=str(s.security.tls_port),
                CITYWATCH_SECURITY__TLS_CLIENT_CERTS=str(client_certs).lower(),
            ),
            name="gateway",
        )
        wait_log(gw, "up (mode", 60)
        if client_certs:
            cert, key, _ = tls.issue_client(dev)
            (tmp_path / "d.crt").write_bytes(cert)
            (tmp_path / "d.key").write_bytes(key)
            ctx = _ctx(tls.ca_cert, tmp_path / "d.crt", tmp_path / "d.key")
            c = Client(s, None, None, port=s.security.tls_port, tls=ctx)
        else:
            c = Client(s, dev, pw, port=s.security.tls_port, tls=_ctx(tls.ca_cert))
        assert c.rc == 0
        body = {"fill_ratio": 0.42, "ts": time.time()}
        assert c.publish(f"city/central/bin/{dev}/up", orjson.dumps(body)) == 0
        c.close()

        def mine(recs: list[Any]) -> list[Any]:
            return [r for r in recs if r.key == dev.encode()]

        recs = asyncio.run(read_topic(s, s.kafka.readings_topic, start, until=mine, timeout_s=60))
        got = mine(recs)
        assert len(got) == 1 and orjson.loads(got[0].value)["fill_ratio"] == 0.42
    finally:
        m.proc.stop(10)
