"""deploy/compose.yaml must use the same configuration as the local stack."""

from __future__ import annotations

from pathlib import Path

import yaml

from citywatch.settings import Settings
from citywatch.stack.kafka import Kafka
from citywatch.stack.mosquitto import ACL, Mosquitto

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HOST_SPECIFIC = (
    "user ",
    "pid_file",
    "persistence_location",
    "password_file",
    "acl_file",
    "listener",
    "#",
)


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, cache_dir=tmp_path / "cache")


def _portable(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(HOST_SPECIFIC)]


def test_mosquitto_conf_and_acl_match_local(tmp_path: Path) -> None:
    m = Mosquitto(_settings(tmp_path))
    m.write_config()
    assert _portable(m.conf_path.read_text()) == _portable(
        (DEPLOY / "compose/mosquitto.conf").read_text()
    )
    assert (DEPLOY / "compose/acl").read_text() == ACL


def test_kafka_and_influx_versions_and_settings_match(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert compose["kafka"]["image"] == f"apache/kafka:{s.kafka.version}"
    assert (
        compose["influxdb"]["image"] == "influxdb:" + s.influx.version.lstrip("v").rsplit(".", 1)[0]
    )
    kafka = compose["kafka"]
    assert kafka["environment"]["CLUSTER_ID"] == s.kafka.cluster_id
    assert "./compose/kafka.sh:/citywatch/kafka.sh:ro" in kafka["volumes"]
    assert kafka["entrypoint"] == ["/bin/sh", "/citywatch/kafka.sh"]
    iql = (DEPLOY / "compose/influxdb-init.iql").read_text()
    assert f'"{s.influx.retention_policy}"' in iql and f"DURATION {s.influx.retention}" in iql
    assert f"DURATION {s.influx.kpi_retention}" in iql


def test_compose_kafka_properties_match_local_sasl(tmp_path: Path) -> None:
    """deploy/compose/kafka.sh writes the local server.properties with kafka.sasl = true."""
    s = Settings(
        state_dir=tmp_path,
        kafka={"sasl": True},
        passwords={"kafka": "PW"},  # type: ignore[arg-type]
    )
    local = Kafka(s).config_text().replace('password="PW"', 'password="$CITYWATCH_KAFKA_PASSWORD"')
    script = (DEPLOY / "compose/kafka.sh").read_text()
    heredoc = script.split("<<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    docker = {  # where the container differs from the host: bind address and data dir
        "listeners": "CLIENT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093",
        "log.dirs": "/var/lib/kafka/data",
    }
    want = [
        f"{k}={docker.get(k, v)}"
        for k, v in (ln.split("=", 1) for ln in local.splitlines() if not ln.startswith("#"))
    ]
    assert heredoc.splitlines() == want
    assert f"[name={s.kafka.sasl_user},password=" in script
