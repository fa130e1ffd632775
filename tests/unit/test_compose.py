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
    env = compose["kafka"]["environment"]
    props = dict(
        ln.split("=", 1)
        for ln in Kafka(s).write_config().read_text().splitlines()
        if "=" in ln and not ln.startswith("#")
    )
    for key, value in props.items():
        if key in ("listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"):
            continue
        env_key = "KAFKA_" + key.upper().replace(".", "_")
        if key == "node.id":
            env_key = "KAFKA_NODE_ID"
        assert env.get(env_key) == value, f"{key}: compose {env.get(env_key)!r} != local {value!r}"
    assert env["CLUSTER_ID"] == s.kafka.cluster_id
    iql = (DEPLOY / "compose/influxdb-init.iql").read_text()
    assert f'"{s.influx.retention_policy}"' in iql and f"DURATION {s.influx.retention}" in iql
    assert f"DURATION {s.influx.kpi_retention}" in iql
