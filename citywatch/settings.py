"""One typed settings object for every part of citywatch.

Values come, highest priority first, from: keyword arguments, ``CITYWATCH_*`` environment
variables (nested with ``__``, e.g. ``CITYWATCH_KAFKA__BOOTSTRAP=127.0.0.1:9092``), a TOML
file (``CITYWATCH_CONFIG`` or ``./citywatch.toml``), then the defaults below.

Example:
    >>> from citywatch.settings import Settings
    >>> Settings().kafka.readings_topic
    'citywatch.readings'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _home(*parts: str) -> Path:
    return Path.home().joinpath(*parts)


class CitySettings(BaseModel):
    """Where the city is: sunrise/sunset for the lamp rules are computed here."""

    name: str = "Riverton"
    latitude: float = 31.23
    longitude: float = 121.47
    districts: list[str] = Field(default_factory=lambda: ["central", "north", "harbour"])


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 1883
    # Mosquitto drops QoS 1 messages past this per-client queue length *silently*
    # (see DESIGN.md); it is set deliberately large and the gateway keeps its queue short.
    max_queued_messages: int = 200_000
    max_inflight_messages: int = 1000
    keepalive_s: int = 30
    version: str = "2.0"


class KafkaSettings(BaseModel):
    version: str = "4.3.1"
    bootstrap: str = "127.0.0.1:9092"
    controller_port: int = 9093
    cluster_id: str = "Y2l0eXdhdGNoLWxvY2Fs"  # fixed so the formatted storage stays valid
    heap: str = "768m"
    readings_topic: str = "citywatch.readings"
    deadletter_topic: str = "citywatch.deadletter"
    alerts_topic: str = "citywatch.alerts"
    commands_topic: str = "citywatch.commands"
    presence_topic: str = "citywatch.presence"
    # The processors' detector checkpoints (processors.checkpoints): compacted, and as many
    # partitions as the readings topic.
    detector_state_topic: str = "citywatch.detector-state"
    # The processors' open alert episodes, latest event per (group, kind, target), a
    # tombstone once cleared (processors.open_alerts): compacted.
    open_alerts_topic: str = "citywatch.open-alerts"
    readings_partitions: int = 6
    retention_ms: int = 7 * 24 * 3600 * 1000
    deadletter_retention_ms: int = 30 * 24 * 3600 * 1000
    # SASL/SCRAM-SHA-512 on the client listener (citywatch.stack.kafka, docs/reliability.md).
    # Every client connects with citywatch.kafkautil.client_kwargs; the password is the
    # generated "kafka" role of citywatch.credentials. Changing this restarts Kafka on
    # `citywatch stack up`.
    sasl: bool = True
    sasl_user: str = Field(default="citywatch", pattern=r"^[A-Za-z0-9._-]+$")


class InfluxSettings(BaseModel):
    version: str = "v1.12.4"
    pkg_config_version: str = "v0.2.14"
    host: str = "127.0.0.1"
    port: int = 8086
    rpc_port: int = 8088
    database: str = "citywatch"
    retention_policy: str = "raw"
    retention: str = "90d"
    kpi_retention_policy: str = "kpi"
    kpi_retention: str = "730d"
    admin_user: str = "citywatch"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def bucket(self) -> str:
        return f"{self.database}/{self.retention_policy}"


def gateway_client_id(instance: str) -> str:
    """A gateway instance's MQTT client id, which names its persistent session on the broker
    (and its Kafka client): whoever ends a departed gateway's session names it from here.

    >>> gateway_client_id("gw1")
    'citywatch-gw1'
    """
    return f"citywatch-{instance}"


class GatewaySettings(BaseModel):
    """The MQTT -> Kafka gateway (``citywatch gateway``)."""

    instance: str = "gw1"  # part of the MQTT client id: keep it stable across restarts
    # "shared": $share/<group>/... so gateways split the load dynamically. Mosquitto 2.0.11
    # (Debian 12) does not restore shared subscriptions after a broker restart, so messages
    # published before the gateways resubscribe are lost to them (tests/integration pins this).
    # "exclusive": a plain persistent subscription that survives broker restarts; scale out
    # by giving each gateway its own filters (e.g. one district each).
    subscription: str = "exclusive"
    share_group: str = "citywatch"
    uplink_filter: str = "city/+/+/+/up"
    status_filter: str = "city/+/+/+/status"
    session_expiry_s: int = 7 * 24 * 3600
    # MQTT 5 Receive Maximum: how many unacked QoS 1 messages the broker may have in flight to us.
    receive_maximum: int = 4000
    # Messages held (queued, or sent and awaiting Kafka's ack) before the socket is paused;
    # reading resumes at half. Enforced by the gateway: Mosquitto 2.0.11 overshoots the
    # Receive Maximum above once acks flow (Gateway.held).
    queue_max: int = 8000
    max_payload_bytes: int = 65536
    late_after_s: float = 3600.0
    linger_ms: int = 10
    # Light load (fewer than nap_below messages per wake-up): leave the MQTT socket unread
    # for nap_ms, so one read takes what arrived meanwhile instead of a wake-up per packet.
    nap_ms: float = Field(default=5.0, ge=0)
    nap_below: int = 64
    max_batch_bytes: int = 512 * 1024
    compression: str = "lz4"
    request_timeout_ms: int = 10000
    # Oldest unacked Kafka send older than this -> spool. Under a full load acks can take a
    # second or two (one busy event loop), so this is well above that.
    kafka_stall_s: float = 10.0
    spool_max_bytes: int = 2 * 1024**3
    spool_segment_bytes: int = 64 * 1024**2
    metrics_port: int = 9310  # 0 disables the Prometheus endpoint
    # Asset register (a city model JSON) to fill a lamp's circuit/cabinet when its payload
    # does not carry them; see ingest.registry.
    device_registry: Path | None = None


class ProcessorSettings(BaseModel):
    """The Kafka -> rules/detectors -> InfluxDB processors (``citywatch process``)."""

    group_id: str = "citywatch-processors"
    instance: str = "p1"
    # Records per poll / points per InfluxDB write. Under load, 20,000 instead of 5,000 took
    # bench.processor from 28,815 to 34,885 readings/s (fixed costs per batch: the rules'
    # clock tick, the write, the commit); under light load batch_ms bounds the wait anyway.
    max_batch: int = 20_000
    batch_ms: int = 200  # longest wait for the first record of a batch
    # Once a batch has its first record, keep collecting this long (or to max_batch). Without
    # it each poll returned what had arrived since the last one: at 7,000 readings/s, 66
    # batches of ~100 a second, each paying the rules' clock tick, an InfluxDB request (a
    # WAL write) and an offset commit. Adds up to this much to alert and storage latency.
    linger_ms: int = Field(default=100, ge=0)
    # The broker answers a fetch once it holds fetch_min_bytes for us, or after
    # fetch_max_wait_ms (Kafka's defaults: 1 byte, 500 ms). Under light load the defaults
    # make aiokafka send hundreds of fetch requests a second, built and decoded in Python:
    # a tenth of a core at 1,000 readings/s. 262144 and 100 with linger_ms 0 halve the CPU
    # per reading at 1,000/s at the same latency (bench.paced, README). Not the default yet:
    # a rebalance test that failed with them failed with Kafka's defaults too (slow
    # checkpoint loads, docs/reliability.md), and they have not had a clean CI run since.
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_max_wait_ms: int = Field(default=500, ge=0)
    # Readings processed between two turns of the event loop (so the previous batch's write
    # and the next fetch go on meanwhile; see processors.app).
    yield_every: int = Field(default=1000, ge=1)
    # Garbage collector thresholds once startup is done (citywatch.gctune; None keeps
    # CPython's 700, 10, 10): full collections walking the detectors' state were ~12 % of the
    # processor's CPU.
    gc_threshold: tuple[int, int, int] | None = (50_000, 20, 10)
    # After an assignment, replay this much of each partition's recent past (before the
    # committed offset) with outputs suppressed, to rebuild rule and detector state.
    warmup_s: float = 900.0
    warmup_max_records: int = 200_000
    # Every this many seconds, the detector state of the devices read meanwhile goes to the
    # compacted checkpoint topic (processors.checkpoints), so a restart or a rebalance does
    # not make the detectors learn afresh from the 15-minute replay (0: off). Shorter than
    # warmup_s: the replay then covers every reading since the checkpoint. A device is
    # written at most once per checkpoint (bench.checkpoints: ~11 us of CPU, ~3.5 kB).
    checkpoint_s: float = Field(default=600.0, ge=0.0)
    # Longest a checkpoint's save or load may take (Kafka away): the devices not saved are
    # kept for the next one; what is not loaded learns afresh.
    checkpoint_timeout_s: float = 30.0
    idle_partition_s: float = 5.0  # see Processor.watermark
    max_poll_interval_ms: int = 900_000  # InfluxDB may be down this long before a rebalance
    rules_file: Path | None = None
    city_model: Path | None = None
    metrics_port: int = 9320


class CrewSettings(BaseModel):
    """One maintenance crew (or the supervisor desk) and where its notifications go."""

    id: str
    districts: list[str] = Field(default_factory=list)  # empty: every district
    webhook_url: str | None = None
    email: list[str] = Field(default_factory=list)
    mqtt: bool = True  # crews/{id}/alerts (QoS 1) and retained crews/{id}/status


class RouteRule(BaseModel):
    """First matching rule picks the crew; ``*`` matches anything.

    ``hours`` ("HH:MM-HH:MM", may wrap midnight, in ``NotifierSettings.timezone``) limits a
    rule to a shift; ``min_severity`` matches that severity and above.
    """

    crew: str
    district: str = "*"
    family: str = "*"
    min_severity: str = "info"
    hours: str | None = None


class SlaSettings(BaseModel):
    """Seconds a work order may stay unacknowledged / unresolved before the supervisor hears."""

    ack_s: float
    resolve_s: float


def _default_slas() -> dict[str, SlaSettings]:
    return {
        "critical": SlaSettings(ack_s=15 * 60, resolve_s=4 * 3600),
        "major": SlaSettings(ack_s=3600, resolve_s=24 * 3600),
        "warning": SlaSettings(ack_s=4 * 3600, resolve_s=3 * 24 * 3600),
        "info": SlaSettings(ack_s=24 * 3600, resolve_s=7 * 24 * 3600),
    }


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "citywatch@localhost"
    timeout_s: float = 15.0


class NotifierSettings(BaseModel):
    """Alert routing, work orders and the crew API (``citywatch notify``); see notifier/."""

    group_id: str = "citywatch-notifier"
    instance: str = "n1"
    # SQLAlchemy URL; None: sqlite:///<state_dir>/notifier.db. PostgreSQL works by URL
    # (postgresql+psycopg://user:pw@host/db).
    db_url: str | None = None
    crews: list[CrewSettings] = Field(
        default_factory=lambda: [
            CrewSettings(id="crew-central", districts=["central"]),
            CrewSettings(id="crew-north", districts=["north"]),
            CrewSettings(id="crew-harbour", districts=["harbour"]),
        ]
    )
    routes: list[RouteRule] = Field(
        default_factory=lambda: [
            RouteRule(crew=f"crew-{d}", district=d) for d in ("central", "north", "harbour")
        ]
    )
    default_crew: str = "crew-central"  # when no rule matches
    supervisor: CrewSettings = Field(default_factory=lambda: CrewSettings(id="supervisor"))
    timezone: str = "UTC"  # for RouteRule.hours
    sla: dict[str, SlaSettings] = Field(default_factory=_default_slas)
    escalation_check_s: float = 5.0
    # Webhook signing key (HMAC-SHA256); None: generated once in <state_dir>/webhook.key.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = 10.0
    # Failed sends are retried with exponential backoff (base * 2^n, capped) up to max_attempts.
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    max_attempts: int = 12
    # A persisted notification waits this long before its first send (repeats within it
    # update the order instead of adding messages).
    delivery_delay_s: float = 0.0
    delivery_concurrency: int = 8
    max_batch: int = 500  # alert events per poll / DB transaction
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    mqtt_status_retained: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 8090
    live_poll_s: float = 1.0  # how often the live page's event stream looks for changes
    kpi_interval_s: float = 300.0  # 0 disables KPI points from ``citywatch notify``
    kpi_window_s: float = 30 * 24 * 3600.0


class CommandSettings(BaseModel):
    """Device commands and the downlink service (``citywatch downlink``); see commands/."""

    group_id: str = "citywatch-downlink"
    instance: str = "d1"  # part of the MQTT client id
    # SQLAlchemy URL of the command store; None: sqlite:///<state_dir>/commands.db.
    db_url: str | None = None
    # City model used to resolve targets (district, circuit -> lamps); None: the processor's,
    # else <state_dir>/city.json.
    city_model: Path | None = None
    mqtt_user: str = "notifier"  # the broker role allowed to write .../down and read .../ack
    default_expiry_s: float = 3600.0
    max_expiry_s: float = 7 * 24 * 3600.0
    # Rate limit: at most this many commands per target in any window (any issuer).
    rate_limit_count: int = 6
    rate_limit_window_s: float = 60.0
    # Crews may command devices and circuits of their own districts; district-wide commands
    # (always requiring confirm=true) are for supervisors unless this is set.
    crews_district_wide: bool = False
    # Delivery: resend when no ack came within ack_timeout_s * 2^attempt (capped), then fail.
    ack_timeout_s: float = 10.0
    ack_timeout_cap_s: float = 300.0
    max_attempts: int = 5
    # After the ack, the device's next reading must show the effect within this long.
    verify_timeout_s: float = 900.0
    verify_mismatches: int = 2  # readings contradicting the command before it is failed
    tick_s: float = 0.5


class GrafanaSettings(BaseModel):
    """Dashboards and KPIs (``citywatch dashboards``, ``citywatch report``); see dashboards/."""

    datasource_name: str = "citywatch-influxdb"
    datasource_uid: str = "citywatch-influxdb"
    url: str = "http://127.0.0.1:3000"  # `dashboards push` default target
    folder: str = "citywatch"
    # Dashboards, the report's local day and night hours; IANA name (the city's clock).
    timezone: str = "Asia/Shanghai"
    # The processors' trip summaries (KPI points) live in this retention policy.
    trips_rp: str = "kpi"
    # `citywatch dashboards monitor`: scrape period and what it writes (measurement in `raw`).
    monitor_interval_s: float = 10.0
    monitor_measurement: str = "pipeline"
    # ...and the hourly lighting-rate roll-up (dashboards/rollup.py): every
    # rollup_interval_s, the hours of the last rollup_lookback_h (device time) whose lamp
    # readings changed since their roll-up are rolled up again (0: never; `citywatch
    # dashboards rollup` does any range).
    rollup_interval_s: float = 300.0
    rollup_lookback_h: float = 26.0
    report_dir: Path = Path("out/reports")


class SecuritySettings(BaseModel):
    """Device credentials and broker TLS (``citywatch devices``); see citywatch/security/."""

    # A TLS listener on mqtt.host:tls_port, with a CA and server certificate generated under
    # <state_dir>/tls (citywatch.security.tls). Off by default: listeners change only when
    # the broker restarts, and the pipeline's own clients use the plaintext loopback listener.
    tls: bool = False
    tls_port: int = 8883
    # True: no plaintext listener at all; the pipeline's own clients then connect to tls_port
    # too (citywatch.security.endpoint), with their role certificates if tls_client_certs.
    require_tls: bool = False
    # True: a TLS client must present a certificate signed by the project CA; its CN is then
    # the MQTT username (no password needed on that listener).
    tls_client_certs: bool = False
    tls_cert_days: int = 825
    # Extra names (DNS or IP) for the server certificate besides localhost/127.0.0.1/mqtt.host.
    tls_server_names: list[str] = Field(default_factory=list)
    # Uplinks from a device id not registered with `citywatch devices add`: "accept" them
    # (and remember the id as auto-registered) or "deadletter" them (reason unknown_device).
    unknown_devices: Literal["accept", "deadletter"] = "accept"


class Settings(BaseSettings):
    """Everything configurable. Secrets not given here are generated once under state_dir."""

    model_config = SettingsConfigDict(
        env_prefix="CITYWATCH_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    cache_dir: Path = Field(default_factory=lambda: _home(".cache", "citywatch"))
    state_dir: Path = Field(default_factory=lambda: _home(".local", "state", "citywatch"))
    city: CitySettings = Field(default_factory=CitySettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    notifier: NotifierSettings = Field(default_factory=NotifierSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    # Optional overrides of generated secrets (role -> password); see citywatch.credentials.
    passwords: dict[str, SecretStr] = Field(default_factory=dict)
    health_timeout_s: float = 60.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("CITYWATCH_CONFIG", "citywatch.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    @property
    def repo_dir(self) -> Path:
        """The project checkout (deploy/ scripts and templates live there)."""
        return Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def override(s: Settings, section: str, **values: object) -> Settings:
    """A copy of ``s`` with the given values (those not None) set in one section.

    Example:
        >>> override(Settings(), "gateway", instance="gw2", metrics_port=None).gateway.instance
        'gw2'
    """
    vals = {k: v for k, v in values.items() if v is not None}
    if not vals:
        return s
    return s.model_copy(update={section: getattr(s, section).model_copy(update=vals)})
