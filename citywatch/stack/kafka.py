"""Apache Kafka in KRaft combined mode (one broker + controller) from Maven Central jars.

Storage is formatted once with Kafka's StorageTool and a fixed cluster id; the broker runs as
``java -cp '<libs>/*' kafka.Kafka server.properties`` with a capped heap and a log4j2 config.

With ``kafka.sasl`` the client listener (also the inter-broker one) is SASL_PLAINTEXT with
SCRAM-SHA-512 only; the controller listener stays PLAINTEXT on the loopback address (only this
process talks to it). The SCRAM user is created at format time (``--add-scram``, passed in an
``@file`` so the password is never on a command line). A storage formatted without it (or
with another password) is migrated in place: Kafka is restarted once with an extra PLAINTEXT
listener on a free loopback port, advertised only then, through which Kafka's ConfigCommand
adds the user (``--bootstrap-controller`` cannot: 4.3.1 answers "This Admin API is not yet
supported when communicating directly with the controller quorum"); then it restarts without
it. ``up`` restarts a running Kafka whose configuration changed (e.g. ``sasl`` switched on).

Example:
    >>> from citywatch.settings import Settings
    >>> Kafka(Settings()).libs.name
    'libs'
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from citywatch import credentials
from citywatch.kafkautil import PASSWORD_ROLE, SCRAM_MECHANISM, client_kwargs
from citywatch.settings import Settings
from citywatch.stack.ports import free_port
from citywatch.stack.process import (
    ManagedProcess,
    StackError,
    port_open,
    require_free_port,
    wait_until,
)

LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.filePattern = {log_dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


class Kafka:
    """The local single-node KRaft cluster on 127.0.0.1."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.state_dir / "kafka"
        self.proc = ManagedProcess("kafka", self.dir, marker=str(self.dir / "server.properties"))

    @property
    def libs(self) -> Path:
        return self.s.cache_dir / f"kafka-{self.s.kafka.version}" / "libs"

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.s.kafka.bootstrap.rsplit(":", 1)
        return host, int(port)

    def install(self) -> None:
        if (self.libs / ".complete").exists():
            return
        for tool in ("java", "mvn"):
            if not shutil.which(tool):
                raise StackError(f"{tool} not found: Kafka needs a JDK >= 17 and Maven")
        script = self.s.repo_dir / "deploy" / "local" / "install_kafka.sh"
        env = {"CITYWATCH_CACHE_DIR": str(self.s.cache_dir)}
        run = subprocess.run(
            ["bash", str(script), self.s.kafka.version],
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise StackError(f"fetching Kafka jars failed:\n{run.stdout}\n{run.stderr}")

    def sasl_password(self) -> str:
        pw = credentials.password(self.s, PASSWORD_ROLE)
        # It goes verbatim into a JAAS string in a .properties file and into ConfigCommand's
        # key=value syntax; generated passwords (URL-safe base64) never contain these.
        if not pw or any(c in pw for c in '"\\,[]=') or not pw.isprintable() or " " in pw:
            raise StackError(
                f"the Kafka password (role {PASSWORD_ROLE!r}) must be non-empty printable text "
                'without spaces or any of  " \\ , [ ] =  (set another in passwords.kafka)'
            )
        return pw

    def config_text(self, setup_port: int | None = None) -> str:
        """server.properties; ``setup_port`` adds the temporary PLAINTEXT listener SETUP."""
        k = self.s.kafka
        host, port = self.host_port
        data = self.dir / "data"
        if not k.sasl:
            net = f"""listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{k.controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
"""
        else:
            listeners = [f"CLIENT://{host}:{port}", f"CONTROLLER://{host}:{k.controller_port}"]
            advertised = [f"CLIENT://{host}:{port}"]
            protocols = ["CLIENT:SASL_PLAINTEXT", "CONTROLLER:PLAINTEXT"]
            if setup_port is not None:
                # Advertised too: an admin client bootstrapped on SETUP needs a node there.
                listeners.append(f"SETUP://{host}:{setup_port}")
                advertised.append(f"SETUP://{host}:{setup_port}")
                protocols.append("SETUP:PLAINTEXT")
            jaas = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{k.sasl_user}" password="{self.sasl_password()}";'
            )
            net = f"""listeners={",".join(listeners)}
advertised.listeners={",".join(advertised)}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map={",".join(protocols)}
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}
"""
        return f"""# Generated by citywatch from settings; do not edit.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{k.controller_port}
{net}log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
num.network.threads=2
num.io.threads=4
"""

    @property
    def props_path(self) -> Path:
        return self.dir / "server.properties"

    def write_config(self, setup_port: int | None = None) -> Path:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        props = self.props_path
        # 0600: with SASL it holds the broker's own SCRAM password.
        _write_private(props, self.config_text(setup_port))
        (self.dir / "log4j2.properties").write_text(LOG4J2.format(log_dir=self.dir))
        return props

    def config_current(self) -> bool:
        """Whether server.properties (what the running broker read) matches the settings."""
        try:
            return self.props_path.read_text() == self.config_text()
        except OSError:
            return False

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        heap = heap or self.s.kafka.heap
        return [
            "java",
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def format_storage(self, props: Path) -> bool:
        """Format an empty data dir (with the SCRAM user when ``sasl``); True if it did."""
        if (self.dir / "data" / "meta.properties").exists():
            return False
        with self._private_file("format.args") as args:
            extra: list[str] = []
            if self.s.kafka.sasl:
                # argparse4j reads one argument per line from an @file: keeps the password
                # off the command line, which other local users can read in /proc.
                user, pw = self.s.kafka.sasl_user, self.sasl_password()
                _write_private(args, f"--add-scram\n{SCRAM_MECHANISM}=[name={user},password={pw}]")
                extra = [f"@{args}"]
            run = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    self.s.kafka.cluster_id,
                    "-c",
                    str(props),
                    "--ignore-formatted",
                    *extra,
                    heap="256m",
                ),
                capture_output=True,
                text=True,
            )
        if run.returncode != 0:
            raise StackError(
                f"Kafka storage format failed in {self.dir / 'data'} (corrupt data dir? "
                f"remove it to start afresh):\n{self._redact(run.stdout + run.stderr)}"
            )
        return True

    def healthy(self) -> bool:
        host, port = self.host_port
        if not port_open(host, port):
            return False
        return asyncio.run(_metadata_ok(client_kwargs(self.s)))

    def up(self) -> str:
        self.install()
        current = self.config_current()
        if self.proc.running() and current and self.healthy():
            return "already running"
        what = "started"
        if self.proc.running() and not current:
            added = ""
            if self.s.kafka.sasl and self._serves_plaintext():
                # Switching SASL on: add the user through the running broker's plaintext
                # listener, which saves the two extra restarts of add_scram_user.
                self._alter_scram_user(self.s.kafka.bootstrap)
                added = "SCRAM user added; "
            self.proc.stop()
            what = f"{added}restarted (configuration changed)"
        props = self.write_config()
        if not self.proc.running():
            self._start(props, check_ports=True)
        if self.s.kafka.sasl and self._auth_state() == "denied":
            # Storage formatted without our SCRAM user, or with another password.
            self.add_scram_user()
            what += "; SCRAM user added to the existing storage"
        self._wait(self.healthy)
        return what

    def _start(self, props: Path, check_ports: bool) -> None:
        if check_ports:
            host, port = self.host_port
            require_free_port(host, port, "Kafka")
            require_free_port(host, self.s.kafka.controller_port, "Kafka's controller")
        self.format_storage(props)
        self.proc.start(self._java("kafka.Kafka", str(props)))

    def _wait(self, check: Any, timeout_s: float | None = None) -> None:
        wait_until(
            check,
            timeout_s or max(self.s.health_timeout_s, 90.0),
            self.proc,
            "Kafka",
            "port in use, no JDK >= 17, too little memory for the heap, or a corrupt "
            f"data dir {self.dir / 'data'} (see {self.dir / 'server.log'})",
        )

    def _auth_state(self) -> Literal["ok", "denied"]:
        """Once the client listener answers: does it accept our SCRAM credentials?"""
        state: list[str] = []

        def answered() -> bool:
            state.append(asyncio.run(_sasl_probe(self.s)))
            return state[-1] != "down"

        self._wait(answered)
        if state[-1] == "denied":
            # Denied once more a moment later: not a broker still loading its metadata.
            time.sleep(1.0)
            if asyncio.run(_sasl_probe(self.s)) != "ok":
                return "denied"
        return "ok"

    def add_scram_user(self) -> None:
        """Create (or reset) the SCRAM user in the running broker's existing storage.

        Restarts Kafka with the loopback SETUP listener, runs ConfigCommand through it,
        then restarts Kafka with the normal configuration.
        """
        host, _ = self.host_port
        setup_port = free_port(host)
        self.proc.stop()
        try:
            self.proc.start(self._java("kafka.Kafka", str(self.write_config(setup_port))))
            setup = {"bootstrap_servers": f"{host}:{setup_port}"}
            self._wait(lambda: port_open(host, setup_port) and asyncio.run(_metadata_ok(setup)))
            self._alter_scram_user(f"{host}:{setup_port}")
        finally:
            self.proc.stop()
            self.proc.start(self._java("kafka.Kafka", str(self.write_config())))

    def _serves_plaintext(self) -> bool:
        """Whether the running broker has our plaintext client listener and answers on it."""
        try:
            running = self.props_path.read_text()
        except OSError:
            return False
        host, port = self.host_port
        return f"\nlisteners=PLAINTEXT://{host}:{port}," in running and asyncio.run(
            _metadata_ok({"bootstrap_servers": self.s.kafka.bootstrap})
        )

    def _alter_scram_user(self, plaintext_bootstrap: str) -> None:
        """ConfigCommand --alter through a PLAINTEXT listener, the password in a 0600 file."""
        with self._private_file("scram.properties") as cfg:
            # --add-config-file takes SCRAM-SHA-512=password=<pw> (no brackets).
            _write_private(cfg, f"{SCRAM_MECHANISM}=password={self.sasl_password()}\n")
            run = subprocess.run(
                self._java(
                    "kafka.admin.ConfigCommand",
                    "--bootstrap-server",
                    plaintext_bootstrap,
                    "--alter",
                    "--add-config-file",
                    str(cfg),
                    "--entity-type",
                    "users",
                    "--entity-name",
                    self.s.kafka.sasl_user,
                    heap="256m",
                ),
                capture_output=True,
                text=True,
            )
        if run.returncode != 0:
            raise StackError(
                "adding Kafka's SCRAM user failed:\n" + self._redact(run.stdout + run.stderr)
            )

    @contextmanager
    def _private_file(self, name: str) -> Iterator[Path]:
        path = self.dir / name
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _redact(self, text: str) -> str:
        if self.s.kafka.sasl:
            text = text.replace(credentials.password(self.s, PASSWORD_ROLE), "***")
        return text


async def _metadata_ok(kwargs: dict[str, Any]) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kwargs, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def _sasl_probe(s: Settings) -> Literal["ok", "denied", "down"]:
    """One SASL handshake; a plain client would only log the broker's refusal."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import SaslAuthenticationFailed

    kw = client_kwargs(s)
    host, port = kw.pop("bootstrap_servers").rsplit(":", 1)
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=3000, **kw)
    except SaslAuthenticationFailed:
        return "denied"
    except Exception:
        return "down"
    conn.close()
    return "ok"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)
