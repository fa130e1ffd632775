"""The fault matrix: kill -9 or stall each part under steady load and count what was lost.

A PRIVATE stack (own state dir and ports, shared binaries from ``cache_dir``) runs Mosquitto,
Kafka and InfluxDB; a gateway and a processor run as real processes. For each case a
publisher sends QoS 1 bin readings (unique ``seq`` per message) at a steady rate and records
every id the broker acknowledged (the device-side ledger). During the load one component
gets ``kill -9`` (then restarted, as a supervisor would) or ``SIGSTOP`` for ``stall_s``
then ``SIGCONT``. Afterwards:

- lost: acknowledged ids that never reached InfluxDB;
- dup: readings that reached Kafka more than once (at-least-once) and points stored in
  InfluxDB beyond one per id (must be 0: a replay overwrites its own series and time);
- alert dup: alert events with the same (alert id, state) published twice;
- recovery: seconds from the fault's end until InfluxDB holds every id acknowledged before it;
- max RSS of gateway and processor during the case (bounded while a downstream part is down).

Example:
    $ citywatch chaos --cases gateway:kill9,processor:stall --stall-s 30
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from citywatch import credentials, influxql, kafkautil
from citywatch.mqtt import AsyncMqtt
from citywatch.settings import Settings
from citywatch.stack import services
from citywatch.stack import up as stack_up
from citywatch.stack.process import ManagedProcess

COMPONENTS = ("gateway", "processor", "kafka", "influxdb", "mosquitto")
FAULTS = ("kill9", "stall")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        "CITYWATCH_KAFKA__CONTROLLER_PORT": str(s.kafka.controller_port),
        "CITYWATCH_KAFKA__READINGS_PARTITIONS": str(s.kafka.readings_partitions),
        "CITYWATCH_INFLUX__PORT": str(s.influx.port),
        "CITYWATCH_INFLUX__RPC_PORT": str(s.influx.rpc_port),
        "CITYWATCH_GATEWAY__METRICS_PORT": "0",
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "600",
        "CITYWATCH_PROCESSOR__METRICS_PORT": "0",
        "CITYWATCH_SECURITY__TLS": "false",
    }


class Worker:
    """A ``citywatch <cmd>`` process the harness supervises (restarts after a kill)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "citywatch.cli", *self.args],
                env={**os.environ, **self.env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.p is not None and self.p.poll() is None else None

    def wait_log(self, text: str, timeout_s: float = 90.0, after: int = 0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace")[after:]:
                return
            if self.pid is None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {text!r} not seen in {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.p is None or self.p.poll() is not None:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class CaseResult:
    component: str
    fault: str
    acked: int = 0
    stored: int = 0
    lost: int = 0
    dup_kafka: int = 0
    dup_influx: int = 0
    alert_dups: int = 0
    recovery_s: float | None = None
    max_rss_mb: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Load:
    """QoS 1 publisher in its own thread; ``acked`` holds every PUBACKed seq."""

    def __init__(self, s: Settings, rid: str, rate: float, seconds: float, devices: int = 50):
        self.s, self.rid, self.rate, self.seconds, self.devices = s, rid, rate, seconds, devices
        self.acked: set[int] = set()
        self.sent = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def topic(self, i: int) -> str:
        return f"city/central/bin/bin-{self.rid}-{i % self.devices}/up"

    def _done(self, i: int, f: asyncio.Future[None]) -> None:
        if not f.cancelled() and f.exception() is None:
            self.acked.add(i)

    async def _run(self) -> None:
        c = AsyncMqtt(
            host=self.s.mqtt.host,
            port=self.s.mqtt.port,
            client_id=f"chaos-pub-{self.rid}",
            username="simulator",
            password=credentials.password(self.s, "simulator"),
            max_inflight=200,
        )
        await c.connect()
        pending: set[asyncio.Future[None]] = set()
        n = int(self.rate * self.seconds)
        t0 = time.monotonic()
        for i in range(n):
            ahead = i / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
            ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            body = orjson.dumps({"ts": ts, "fill_ratio": 0.5, "seq": i})
            while len(pending) >= 200:  # a bounded window, like a device's
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            try:
                fut = c.publish_nowait(self.topic(i), body, qos=1)
            except Exception:
                continue  # not connected: the device would retry later; not acked, not counted
            fut.add_done_callback(functools.partial(self._done, i))
            pending.add(fut)
            self.sent += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 60)
        with contextlib.suppress(Exception):
            await c.close()


class Chaos:
    """The private stack plus gateway and processor; ``run_case`` measures one cell."""

    def __init__(
        self, base: Settings, workdir: Path | None = None, log: Callable[[str], None] = print
    ) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="citywatch-chaos-"))
        self.s = private_settings(self.dir / "state", base)
        self.env = settings_env(self.s)
        self.log = log
        self.workers: dict[str, Worker] = {}

    # -- stack ------------------------------------------------------------------------
    def up(self) -> None:
        stack_up(self.s, log=lambda m: self.log(f"  {m}"))

    def down(self) -> None:
        for w in self.workers.values():
            w.stop()
        for svc in reversed(services(self.s)):
            svc.proc.stop(20)

    def server(self, name: str) -> Any:
        return {svc.proc.name: svc for svc in services(self.s)}[name]

    def start_workers(self, rid: str) -> None:
        env = {**self.env, "CITYWATCH_PROCESSOR__GROUP_ID": f"chaos-{rid}"}
        self.workers = {
            "gateway": Worker("gateway", ["gateway", "--instance", "gw-chaos"], env,
                              self.dir / f"gateway-{rid}.log"),
            "processor": Worker("processor", ["process", "--instance", "p-chaos"], env,
                                self.dir / f"processor-{rid}.log"),
        }  # fmt: skip
        for w in self.workers.values():
            w.start()
        self.workers["gateway"].wait_log("up (mode")
        self.workers["processor"].wait_log("processor p-chaos up")

    def pid(self, component: str) -> int | None:
        if component in self.workers:
            return self.workers[component].pid
        proc: ManagedProcess = self.server(component).proc
        return proc.pid()

    def restart(self, component: str) -> None:
        if component in self.workers:
            w = self.workers[component]
            if w.p is not None:
                w.p.wait(10)  # reap the killed one
            w.start()
        else:
            self.server(component).up()

    # -- measuring --------------------------------------------------------------------
    def stored_seqs(self, rid: str) -> tuple[set[int], int]:
        rows = influxql.rows(
            self.s, f"SELECT \"seq\" FROM \"bin\" WHERE \"device_id\" =~ /^bin-{rid}-/"
        )
        seqs = [int(r[1]) for r in rows if r[1] is not None]
        return set(seqs), len(seqs)

    async def kafka_readings(self, rid: str, topic: str, key: str) -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        ends = await kafkautil.end_offsets(self.s.kafka.bootstrap, topic)
        if not any(ends.values()):
            return []
        c = AIOKafkaConsumer(bootstrap_servers=self.s.kafka.bootstrap, enable_auto_commit=False)
        await c.start()
        out: list[Any] = []
        try:
            c.assign(list(ends))
            for tp in ends:
                c.seek(tp, 0)
            while True:
                positions = {tp: await c.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    break
                batch = await c.getmany(timeout_ms=500, max_records=20000)
                for msgs in batch.values():
                    for m in msgs:
                        rec = orjson.loads(m.value)
                        if isinstance(rec, dict) and str(rec.get(key, "")).find(rid) >= 0:
                            out.append(rec)
        finally:
            # aiokafka's stop() of a group-less consumer can surface a CancelledError of its
            # own internal task; the records are already read.
            with contextlib.suppress(asyncio.CancelledError):
                await c.stop()
        return out

    def run_case(
        self, component: str, fault: str, *, rate: float = 200.0, stall_s: float = 30.0,
        settle_s: float = 120.0,
    ) -> CaseResult:  # fmt: skip
        rid = uuid.uuid4().hex[:6]
        res = CaseResult(component, fault)
        self.start_workers(rid)
        before, fault_at = 5.0, 5.0
        load_s = before + (stall_s if fault == "stall" else 5.0) + 10.0
        load = Load(self.s, rid, rate, load_s)
        rss: dict[str, float] = {"gateway": 0.0, "processor": 0.0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for name in rss:
                    rss[name] = max(rss[name], rss_mb(self.workers[name].pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load.thread.start()
        time.sleep(fault_at)
        pid = self.pid(component)
        if pid is None:
            res.note = f"{component} not running before the fault"
        elif fault == "kill9":
            os.kill(pid, signal.SIGKILL)
            time.sleep(1.0)
            self.restart(component)
        else:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(stall_s)
            os.kill(pid, signal.SIGCONT)
        fault_end = time.monotonic()
        acked_before = set(load.acked)
        deadline = fault_end + settle_s + load_s
        while time.monotonic() < deadline:
            seqs, _ = self._safe_stored(rid)
            if acked_before <= seqs:
                res.recovery_s = round(time.monotonic() - fault_end, 1)
                break
            time.sleep(0.5)
        load.thread.join(timeout=load_s + 90)
        # Everything acked must arrive: wait until it has, or until settle_s of no progress.
        last, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < settle_s:
            seqs, points = self._safe_stored(rid)
            if load.acked <= seqs:
                break
            if len(seqs) != last:
                last, last_change = len(seqs), time.monotonic()
            time.sleep(1.0)
        done.set()
        seqs, points = self._safe_stored(rid)
        res.acked, res.stored = len(load.acked), len(seqs & load.acked)
        res.lost = len(load.acked - seqs)
        res.dup_influx = points - len(seqs)
        kafka = asyncio.run(self.kafka_readings(rid, self.s.kafka.readings_topic, "device_id"))
        res.dup_kafka = len(kafka) - len({r.get("seq") for r in kafka})
        alerts = asyncio.run(self.kafka_readings(rid, self.s.kafka.alerts_topic, "target"))
        keys = [(a.get("alert_id"), a.get("state")) for a in alerts]
        res.alert_dups = len(keys) - len(set(keys))
        res.max_rss_mb = {k: round(v, 1) for k, v in rss.items()}
        for w in self.workers.values():
            if w.pid is None:
                res.note += f" {w.name} not running at the end;"
            w.stop()
        return res

    def _safe_stored(self, rid: str) -> tuple[set[int], int]:
        try:
            return self.stored_seqs(rid)
        except Exception:
            return set(), 0  # InfluxDB down or restarting: try again


def format_matrix(results: list[CaseResult]) -> str:
    head = (
        f"{'component':<10} {'fault':<6} {'acked':>6} {'lost':>5} {'dup kafka':>9} "
        f"{'dup influx':>10} {'alert dup':>9} {'recovery s':>10}  max RSS MB gw/proc"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        lines.append(
            f"{r.component:<10} {r.fault:<6} {r.acked:>6} {r.lost:>5} {r.dup_kafka:>9} "
            f"{r.dup_influx:>10} {r.alert_dups:>9} {rec:>10}  "
            f"{r.max_rss_mb.get('gateway', 0):.0f}/{r.max_rss_mb.get('processor', 0):.0f}"
            + (f"  {r.note.strip()}" if r.note else "")
        )
    return "\n".join(lines)


def run_matrix(
    base: Settings,
    cases: list[tuple[str, str]],
    *,
    stall_s: float = 30.0,
    rate: float = 200.0,
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[CaseResult]:
    chaos = Chaos(base, log=log)
    log(f"private stack under {chaos.dir}")
    results: list[CaseResult] = []
    try:
        chaos.up()
        for component, fault in cases:
            log(f"case {component} {fault} ...")
            r = chaos.run_case(component, fault, rate=rate, stall_s=stall_s)
            log(f"  -> lost {r.lost} of {r.acked}, recovery {r.recovery_s}s {r.note}")
            results.append(r)
    finally:
        chaos.down()
    if out is not None:
        out.write_bytes(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2))
    return results


def parse_cases(spec: str) -> list[tuple[str, str]]:
    if spec == "all":
        return [(c, f) for c in COMPONENTS for f in FAULTS]
    cases = []
    for part in spec.split(","):
        component, _, fault = part.strip().partition(":")
        if component not in COMPONENTS or fault not in FAULTS:
            raise ValueError(f"bad case {part!r}: use component:fault with {COMPONENTS} x {FAULTS}")
        cases.append((component, fault))
    return cases


def chaos_command(
    cases: str = "gateway:kill9,processor:stall",
    stall_s: float = 30.0,
    rate: float = 200.0,
    out: Path | None = None,
) -> None:
    """Run the fault matrix on a private stack and print component x fault -> loss/recovery.

    CASES: comma-separated component:fault (components gateway, processor, kafka, influxdb,
    mosquitto; faults kill9, stall) or "all".
    """
    import typer

    from citywatch.settings import get_settings

    results = run_matrix(
        get_settings(), parse_cases(cases), stall_s=stall_s, rate=rate, out=out
    )
    print(format_matrix(results))
    if any(r.lost or r.dup_influx or r.alert_dups for r in results):
        raise typer.Exit(1)
