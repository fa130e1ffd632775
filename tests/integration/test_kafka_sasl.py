"""Kafka with SASL/SCRAM-SHA-512 (``kafka.sasl``) on a PRIVATE single-node stack.

Two brokers of our own (free ports, temporary state dir; the shared stack is not touched):
a storage formatted with the SCRAM user, and a storage first formatted and used without SASL
that ``up`` migrates in place (its records must survive). Authenticated clients work; a client
without credentials or with a wrong password is refused; the password is in no log.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from pydantic import SecretStr

from citywatch import credentials
from citywatch.chaos import private_settings
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from citywatch.stack.kafka import Kafka
from citywatch.stack.topics import ensure_topics

pytestmark = pytest.mark.integration


def with_sasl(s: Settings, on: bool) -> Settings:
    return s.model_copy(update={"kafka": s.kafka.model_copy(update={"sasl": on})})


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Settings]:
    s = private_settings(tmp_path / "state", Settings())
    yield s
    Kafka(s).proc.stop()


async def produce(s: Settings, values: list[bytes]) -> None:
    p = AIOKafkaProducer(**client_kwargs(s), acks="all")
    try:
        await p.start()
        for v in values:
            await p.send_and_wait(s.kafka.alerts_topic, v, partition=0)
    finally:
        await p.stop()


async def consume_all(s: Settings) -> list[bytes]:
    c = AIOKafkaConsumer(**client_kwargs(s), enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(s.kafka.alerts_topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await c.end_offsets([tp]))[tp]
        out: list[bytes] = []
        while len(out) < end:
            batch = await c.getmany(tp, timeout_ms=5000)
            out += [r.value for r in batch.get(tp, []) if r.value is not None]
        return out
    finally:
        await c.stop()


async def handshake(s: Settings, **override: str | None) -> None:
    """One connection to the client listener with our credentials, some replaced."""
    kw = client_kwargs(s) | override
    host, port = str(kw.pop("bootstrap_servers")).rsplit(":", 1)
    conn = await create_conn(host, int(port), request_timeout_ms=5000, **kw)
    conn.close()


def assert_refused(s: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # Wrong password: the broker's SASL answer, as aiokafka raises it.
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        asyncio.run(handshake(s, sasl_plain_password="wrong-password"))
    with pytest.raises(SaslAuthenticationFailed):
        asyncio.run(handshake(s, sasl_plain_username="nobody"))
    # A producer without credentials (plaintext) cannot even bootstrap.
    plain = with_sasl(s, False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(produce(plain, [b"must not arrive"]))
    # ...and a producer with a wrong password is refused at bootstrap too.
    wrong = SecretStr(credentials.password(s, "kafka") + "x")
    bad = s.model_copy(update={"passwords": {"kafka": wrong}})
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(produce(bad, [b"must not arrive"]))
    assert "SaslAuthenticationFailed" in caplog.text


def assert_password_not_logged(s: Settings, *earlier: str) -> None:
    pw = credentials.password(s, "kafka")
    kdir = s.state_dir / "kafka"
    logs = [p for p in s.state_dir.rglob("*") if p.is_file() and "log" in p.name]
    assert kdir / "server.log" in logs
    for p in logs:
        text = p.read_text(errors="replace")
        assert all(secret not in text for secret in (pw, *earlier)), p
    # The broker's own credentials are in its config (unavoidable), readable by us only;
    # no temporary password file is left behind.
    props = kdir / "server.properties"
    assert pw in props.read_text()
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    assert not (kdir / "format.args").exists() and not (kdir / "scram.properties").exists()


def test_fresh_storage_with_sasl(private: Settings, caplog: pytest.LogCaptureFixture) -> None:
    s = with_sasl(private, True)
    k = Kafka(s)
    assert k.up() == "started"  # formatted with the SCRAM user: no migration needed
    assert k.healthy()
    asyncio.run(ensure_topics(s))
    asyncio.run(produce(s, [b"one", b"two"]))
    assert asyncio.run(consume_all(s)) == [b"one", b"two"]
    assert_refused(s, caplog)
    assert asyncio.run(consume_all(s)) == [b"one", b"two"]  # refused producers wrote nothing
    assert k.up() == "already running"
    assert_password_not_logged(s)


def test_plaintext_storage_is_migrated(private: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A storage formatted and used without SASL: `stack up` after `kafka.sasl` is switched on
    while Kafka runs; then a stopped broker whose storage lacks the current password."""
    plain = with_sasl(private, False)
    assert Kafka(plain).up() == "started"
    asyncio.run(ensure_topics(plain))
    asyncio.run(produce(plain, [b"before sasl"]))

    s = with_sasl(private, True)
    k = Kafka(s)
    assert not k.config_current()
    # Running: the user is added through the broker's plaintext listener, then one restart.
    assert k.up() == "SCRAM user added; restarted (configuration changed)"
    asyncio.run(produce(s, [b"after sasl"]))
    assert asyncio.run(consume_all(s)) == [b"before sasl", b"after sasl"]  # nothing lost
    assert_refused(s, caplog)
    assert_password_not_logged(s)

    # Stopped, and the storage does not know the password (a new passwords.kafka here; a
    # storage without the user at all is refused the same way): the SETUP-listener path.
    assert k.proc.stop()
    rotated = s.model_copy(update={"passwords": {"kafka": SecretStr("rotated-Pw-0123456789")}})
    k = Kafka(rotated)
    assert k.up() == "started; SCRAM user added to the existing storage"
    assert "SETUP" not in (s.state_dir / "kafka" / "server.properties").read_text()
    assert asyncio.run(consume_all(rotated)) == [b"before sasl", b"after sasl"]
    with pytest.raises(SaslAuthenticationFailed):  # the old password no longer works
        asyncio.run(handshake(s))
    assert_refused(rotated, caplog)
    assert k.up() == "already running"
    assert_password_not_logged(rotated, credentials.password(s, "kafka"))
