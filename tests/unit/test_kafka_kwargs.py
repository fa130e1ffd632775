"""client_kwargs / java_client_properties and the Kafka server.properties with and without SASL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from citywatch import credentials
from citywatch.kafkautil import client_kwargs, java_client_properties
from citywatch.settings import Settings
from citywatch.stack.kafka import Kafka
from citywatch.stack.process import StackError


def settings(tmp_path: Path, sasl: bool, **extra: object) -> Settings:
    kafka = {"sasl": sasl, "bootstrap": "127.0.0.1:19092", "controller_port": 19093}
    return Settings(state_dir=tmp_path, kafka=kafka, **extra)  # type: ignore[arg-type]


def test_plaintext_kwargs_are_only_the_bootstrap(tmp_path: Path) -> None:
    kw = client_kwargs(settings(tmp_path, sasl=False))
    assert kw == {"bootstrap_servers": "127.0.0.1:19092", "security_protocol": "PLAINTEXT"}
    # No secret is generated for a plaintext client.
    assert not (tmp_path / "secrets.json").exists()


def test_sasl_kwargs_use_the_generated_kafka_password(tmp_path: Path) -> None:
    s = settings(tmp_path, sasl=True)
    kw = client_kwargs(s)
    assert kw == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "citywatch",
        "sasl_plain_password": credentials.password(s, "kafka"),
    }
    assert len(kw["sasl_plain_password"]) >= 20
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert client_kwargs(s) == kw  # stable: the password is stored, not regenerated


def test_sasl_password_override(tmp_path: Path) -> None:
    s = settings(tmp_path, sasl=True, passwords={"kafka": "given-pw"})
    assert client_kwargs(s)["sasl_plain_password"] == "given-pw"
    props = java_client_properties(s)
    assert "security.protocol=SASL_PLAINTEXT" in props
    assert 'username="citywatch" password="given-pw";' in props


def test_plaintext_server_config_is_unchanged(tmp_path: Path) -> None:
    text = Kafka(settings(tmp_path, sasl=False)).config_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n" in text
    assert "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n" in text
    assert "sasl" not in text


def test_sasl_server_config(tmp_path: Path) -> None:
    s = settings(tmp_path, sasl=True, passwords={"kafka": "pw-123"})
    k = Kafka(s)
    text = k.config_text()
    assert "listeners=CLIENT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n" in text
    assert "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT\n" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512\n" in text
    assert "inter.broker.listener.name=CLIENT\n" in text
    assert (
        "listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common."
        'security.scram.ScramLoginModule required username="citywatch" password="pw-123";' in text
    )
    assert "PLAINTEXT://" not in text and "SETUP" not in text
    setup = k.config_text(setup_port=19094)
    assert (
        "listeners=CLIENT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
        "SETUP://127.0.0.1:19094\n" in setup
    )
    assert "advertised.listeners=CLIENT://127.0.0.1:19092,SETUP://127.0.0.1:19094\n" in setup
    props = k.write_config()
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    assert k.config_current()
    assert not Kafka(settings(tmp_path, sasl=False)).config_current()


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a,b", "a=b", "a b", "", "a\nb"])
def test_unsafe_password_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    k = Kafka(settings(tmp_path, sasl=True, passwords={"kafka": bad}))
    with pytest.raises(StackError, match="Kafka password"):
        k.config_text()


def test_unsafe_user_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(state_dir=tmp_path, kafka={"sasl_user": 'x" password="y'})  # type: ignore[arg-type]
