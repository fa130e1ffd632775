"""Settings for a private stack: its own state dir and ports, and the environment that points
a ``citywatch`` subprocess (gateway, processor, notifier) at it.

Example:
    >>> s = private_settings(Path("/tmp/chaos/state"), Settings())
    >>> settings_env(s)["CITYWATCH_STATE_DIR"]
    '/tmp/chaos/state'
    >>> notifier_env("http://127.0.0.1:8000/hook")["CITYWATCH_NOTIFIER__DEFAULT_CREW"]
    'crew-chaos'
"""

from __future__ import annotations

from pathlib import Path

import orjson

from citywatch.settings import Settings
from citywatch.stack.ports import free_port


def private_settings(state_dir: Path, base: Settings) -> Settings:
    """The base settings with their own state dir and free ports (binaries shared)."""
    return Settings(
        state_dir=state_dir,
        cache_dir=base.cache_dir,
        city=base.city,
        mqtt=base.mqtt.model_copy(update={"port": free_port()}),
        kafka=base.kafka.model_copy(
            update={
                "bootstrap": f"127.0.0.1:{free_port()}",
                "controller_port": free_port(),
                "readings_partitions": 3,
                "heap": "512m",
            }
        ),
        influx=base.influx.model_copy(update={"port": free_port(), "rpc_port": free_port()}),
        gateway=base.gateway.model_copy(update={"metrics_port": 0, "session_expiry_s": 600}),
        processor=base.processor.model_copy(update={"metrics_port": 0}),
        security=base.security.model_copy(update={"tls": False, "require_tls": False}),
    )


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that points a ``citywatch`` subprocess at the private stack."""
    return {
        "CITYWATCH_STATE_DIR": str(s.state_dir),
        "CITYWATCH_CACHE_DIR": str(s.cache_dir),
        "CITYWATCH_MQTT__PORT": str(s.mqtt.port),
        "CITYWATCH_KAFKA__BOOTSTRAP": s.kafka.bootstrap,
        "CITYWATCH_KAFKA__SASL": str(s.kafka.sasl).lower(),
        "CITYWATCH_KAFKA__CONTROLLER_PORT": str(s.kafka.controller_port),
        "CITYWATCH_KAFKA__READINGS_PARTITIONS": str(s.kafka.readings_partitions),
        "CITYWATCH_INFLUX__PORT": str(s.influx.port),
        "CITYWATCH_INFLUX__RPC_PORT": str(s.influx.rpc_port),
        "CITYWATCH_GATEWAY__METRICS_PORT": "0",
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "600",
        "CITYWATCH_PROCESSOR__METRICS_PORT": "0",
        "CITYWATCH_SECURITY__TLS": "false",
    }


def notifier_env(webhook_url: str) -> dict[str, str]:
    """One crew for every district whose only channel is the harness's webhook receiver."""
    crew = {"id": "crew-chaos", "webhook_url": webhook_url, "mqtt": False}
    return {
        "CITYWATCH_NOTIFIER__CREWS": orjson.dumps([crew]).decode(),
        "CITYWATCH_NOTIFIER__ROUTES": "[]",
        "CITYWATCH_NOTIFIER__DEFAULT_CREW": "crew-chaos",
        "CITYWATCH_NOTIFIER__SUPERVISOR": '{"id": "supervisor", "mqtt": false}',
        "CITYWATCH_NOTIFIER__GROUP_ID": "chaos-notifier",
        "CITYWATCH_NOTIFIER__KPI_INTERVAL_S": "0",
        "CITYWATCH_NOTIFIER__RETRY_BASE_S": "0.5",
        "CITYWATCH_NOTIFIER__RETRY_CAP_S": "5",
    }
