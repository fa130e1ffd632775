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
- max RSS of gateway, processor (and notifier) during the case (bounded while a downstream
  part is down).

Notifier cells (and any cell with ``notify=True``) also run ``citywatch notify`` on its own
SQLite DB in the private state dir, with one crew whose webhook is a small HTTP receiver the
harness runs (``Receiver``: records every POST, checks its signature). Every
``alert_every``-th reading then comes from a new bin at fill 0.95, which ``bin_overflow``
raises at once: a steady stream of new alerts, hence new work orders and notifications,
through the fault. Afterwards:

- notif lost: alert ids raised on ``citywatch.alerts`` with no ``opened`` webhook delivery;
- notif dup: a notification (alert id, event) delivered under more than one idempotency
  key: a duplicate no receiver can recognise (must be 0);
- resent: the same idempotency key delivered again (a crash between a send and its "sent"
  mark; receivers dedupe on the key, as docs/notifier.md asks);
- notif recovery: seconds from the fault's end until every alert bin acknowledged before it
  had its notification.

Example:
    $ citywatch chaos --cases gateway:kill9,processor:stall --stall-s 30
    $ citywatch chaos --cases notifier:kill9,notifier:stall
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from citywatch import influxql, kafkautil
from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from citywatch.stack import services
from citywatch.stack import up as stack_up
from citywatch.stack.ports import free_port
from citywatch.stack.process import ManagedProcess, StackError

COMPONENTS = ("gateway", "processor", "kafka", "influxdb", "mosquitto", "notifier")
FAULTS = ("kill9", "stall")
REPO = Path(__file__).resolve().parent.parent
WORKERS = ("gateway", "processor", "notifier")


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


@dataclass(frozen=True)
class Received:
    key: str
    event: str
    alert_id: str
    target: str
    order_id: int
    signed: bool


class Receiver:
    """A crew's webhook endpoint: records every delivery (200 to each), in its own thread.

    ``http.server`` rather than a framework: a handful of POSTs per second from one client,
    and no event loop to share with the harness's threads.
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.got: list[Received] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                outer.record(raw, self.headers)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, raw: bytes, headers: Any) -> None:
        from notifier.channels.webhook import verify_signature

        try:
            doc = orjson.loads(raw)
            order = doc["order"]
            r = Received(
                key=str(headers.get("Idempotency-Key", "")),
                event=str(doc["event"]),
                alert_id=str(order["alert_id"]),
                target=str(order["target"]),
                order_id=int(order["id"]),
                signed=verify_signature(
                    self.secret,
                    str(headers.get("X-Citywatch-Timestamp", "")),
                    raw,
                    str(headers.get("X-Citywatch-Signature", "")),
                ),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            r = Received("", "malformed", "", "", 0, False)
        with self.lock:
            self.got.append(r)

    def for_run(self, rid: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if rid in r.target]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    alerts: int = 0  # alert ids raised for this case's bins (notifier cells)
    notified: int = 0  # of which an ``opened`` webhook delivery arrived
    notif_lost: int = 0
    notif_dups: int = 0
    notif_resent: int = 0
    notif_bad: int = 0  # deliveries with a bad signature or body
    notif_recovery_s: float | None = None
    max_rss_mb: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Load:
    """QoS 1 publisher in its own thread; ``acked`` holds every PUBACKed seq."""

    def __init__(
        self, s: Settings, rid: str, rate: float, seconds: float, devices: int = 50,
        alert_every: int = 0,
    ) -> None:  # fmt: skip
        self.s, self.rid, self.rate, self.seconds, self.devices = s, rid, rate, seconds, devices
        self.alert_every = alert_every
        self.acked: set[int] = set()
        self.sent = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def is_alert(self, i: int) -> bool:
        return self.alert_every > 0 and i % self.alert_every == 0

    def device(self, i: int) -> str:
        # An alert reading comes from a bin of its own: one overflow episode, one work order.
        return f"bin-{self.rid}-a{i}" if self.is_alert(i) else f"bin-{self.rid}-{i % self.devices}"

    def topic(self, i: int) -> str:
        return f"city/central/bin/{self.device(i)}/up"

    def alert_devices(self, seqs: set[int]) -> set[str]:
        return {self.device(i) for i in seqs if self.is_alert(i)}

    def _done(self, i: int, f: asyncio.Future[None]) -> None:
        if not f.cancelled() and f.exception() is None:
            self.acked.add(i)

    async def _run(self) -> None:
        c = AsyncMqtt(
            **mqtt_kwargs(self.s, "simulator"),
            client_id=f"chaos-pub-{self.rid}",
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
            fill = 0.95 if self.is_alert(i) else 0.5
            body = orjson.dumps({"ts": ts, "fill_ratio": fill, "seq": i})
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
        self.receiver: Receiver | None = None

    # -- stack ------------------------------------------------------------------------
    def up(self, attempts: int = 3) -> None:
        """Start the private stack; stop what started if it fails, so nothing is left behind.

        A port taken by another program between choosing and binding it gets a fresh state
        dir and fresh ports, up to ``attempts`` times.
        """
        for attempt in range(1, attempts + 1):
            try:
                stack_up(self.s, log=lambda m: self.log(f"  {m}"))
                return
            except StackError as e:
                self.down()
                if "in use" not in str(e) or attempt == attempts:
                    raise
                self.log(f"  a port was taken, trying new ones: {str(e).splitlines()[-1]}")
                self.s = private_settings(self.dir / f"state-{attempt + 1}", self.s)
                self.env = settings_env(self.s)

    def down(self) -> None:
        for w in self.workers.values():
            w.stop()
        if self.receiver is not None:
            self.receiver.close()
        for svc in reversed(services(self.s)):
            svc.proc.stop(20)

    def server(self, name: str) -> Any:
        return {svc.proc.name: svc for svc in services(self.s)}[name]

    def start_workers(self, rid: str, notify: bool = False) -> None:
        env = {**self.env, "CITYWATCH_PROCESSOR__GROUP_ID": f"chaos-{rid}"}
        self.workers = {
            "gateway": Worker("gateway", ["gateway", "--instance", "gw-chaos"], env,
                              self.dir / f"gateway-{rid}.log"),
            "processor": Worker("processor", ["process", "--instance", "p-chaos"], env,
                                self.dir / f"processor-{rid}.log"),
        }  # fmt: skip
        if notify:
            if self.receiver is None:
                from notifier.channels.webhook import webhook_secret

                # Created here, before the notifier starts, so both read the same key file.
                self.receiver = Receiver(webhook_secret(self.s))
            self.workers["notifier"] = Worker(
                "notifier", ["notify", "--instance", "n-chaos"],
                {**env, **notifier_env(self.receiver.url)}, self.dir / f"notifier-{rid}.log",
            )  # fmt: skip
        for w in self.workers.values():
            w.start()
        self.workers["gateway"].wait_log("up (mode")
        self.workers["processor"].wait_log("processor p-chaos up")
        if notify:
            self.workers["notifier"].wait_log("notifier consuming")

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
        rows = influxql.rows(self.s, f'SELECT "seq" FROM "bin" WHERE "device_id" =~ /^bin-{rid}-/')
        seqs = [int(r[1]) for r in rows if r[1] is not None]
        return set(seqs), len(seqs)

    async def kafka_readings(self, rid: str, topic: str, key: str) -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        ends = await kafkautil.end_offsets(self.s, topic)
        if not any(ends.values()):
            return []
        c = AIOKafkaConsumer(**kafkautil.client_kwargs(self.s), enable_auto_commit=False)
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
        settle_s: float = 120.0, notify: bool | None = None, alert_every: int = 40,
    ) -> CaseResult:  # fmt: skip
        """One cell; ``notify`` (default: notifier cells only) runs the notifier and alerts."""
        notify = component == "notifier" if notify is None else notify
        rid = uuid.uuid4().hex[:6]
        res = CaseResult(component, fault)
        self.start_workers(rid, notify)
        before, fault_at = 5.0, 5.0
        load_s = before + (stall_s if fault == "stall" else 5.0) + 10.0
        load = Load(self.s, rid, rate, load_s, alert_every=alert_every if notify else 0)
        rss: dict[str, float] = {name: 0.0 for name in self.workers}
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
        alerts_before = load.alert_devices(acked_before)
        deadline = fault_end + settle_s + load_s
        while time.monotonic() < deadline and (res.recovery_s is None or (
            notify and res.notif_recovery_s is None
        )):  # fmt: skip
            if res.recovery_s is None:
                seqs, _ = self._safe_stored(rid)
                if acked_before <= seqs:
                    res.recovery_s = round(time.monotonic() - fault_end, 1)
            if notify and res.notif_recovery_s is None and alerts_before <= self._notified(rid):
                res.notif_recovery_s = round(time.monotonic() - fault_end, 1)
            time.sleep(0.5)
        load.thread.join(timeout=load_s + 90)
        # Everything acked must arrive (and, with the notifier, be notified): wait until it
        # has, or until settle_s of no progress.
        last, last_change = (-1, -1), time.monotonic()
        while time.monotonic() - last_change < settle_s:
            seqs, points = self._safe_stored(rid)
            notified = self._notified(rid) if notify else set()
            if load.acked <= seqs and load.alert_devices(load.acked) <= notified:
                break
            if (len(seqs), len(notified)) != last:
                last, last_change = (len(seqs), len(notified)), time.monotonic()
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
        if notify:
            self._count_notifications(rid, alerts, res)
            missing = load.alert_devices(load.acked) - {a.get("target") for a in alerts}
            if missing:
                res.note += f" {len(missing)} acked alert bins raised no alert;"
        res.max_rss_mb = {k: round(v, 1) for k, v in rss.items()}
        for w in self.workers.values():
            if w.pid is None:
                res.note += f" {w.name} not running at the end;"
            w.stop()
        return res

    def _notified(self, rid: str) -> set[str]:
        """Bins of this case whose work order's ``opened`` notification arrived."""
        assert self.receiver is not None
        return {r.target for r in self.receiver.for_run(rid) if r.event == "opened"}

    def _count_notifications(self, rid: str, alerts: list[Any], res: CaseResult) -> None:
        assert self.receiver is not None
        got = self.receiver.for_run(rid)
        raised = {str(a.get("alert_id")) for a in alerts if a.get("state") == "raised"}
        opened = {r.alert_id for r in got if r.event == "opened"}
        res.alerts, res.notified = len(raised), len(raised & opened)
        res.notif_lost = len(raised - opened)
        # One notification = (alert id, event) on the one webhook channel. More than one key
        # for it is a duplicate nobody can filter; the same key again is a documented resend.
        keys: dict[tuple[str, str], set[str]] = {}
        for r in got:
            keys.setdefault((r.alert_id, r.event), set()).add(r.key)
        res.notif_dups = sum(len(k) - 1 for k in keys.values())
        per_key = Counter(r.key for r in got)
        res.notif_resent = sum(n - 1 for n in per_key.values())
        res.notif_bad = sum(1 for r in got if not r.signed)

    def _safe_stored(self, rid: str) -> tuple[set[int], int]:
        try:
            return self.stored_seqs(rid)
        except Exception:
            return set(), 0  # InfluxDB down or restarting: try again


def format_matrix(results: list[CaseResult]) -> str:
    notify = any("notifier" in r.max_rss_mb for r in results)
    head = (
        f"{'component':<10} {'fault':<6} {'acked':>6} {'lost':>5} {'dup kafka':>9} "
        f"{'dup influx':>10} {'alert dup':>9} {'recovery s':>10}"
    )
    if notify:
        head += (
            f" {'alerts':>6} {'notif lost':>10} {'notif dup':>9} {'resent':>6} {'notif rec s':>11}"
        )
    head += "  max RSS MB gw/proc" + ("/notif" if notify else "")
    lines = [head, "-" * len(head)]
    for r in results:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        line = (
            f"{r.component:<10} {r.fault:<6} {r.acked:>6} {r.lost:>5} {r.dup_kafka:>9} "
            f"{r.dup_influx:>10} {r.alert_dups:>9} {rec:>10}"
        )
        if notify:
            nrec = "-" if r.notif_recovery_s is None else f"{r.notif_recovery_s:.1f}"
            line += (
                f" {r.alerts:>6} {r.notif_lost:>10} {r.notif_dups:>9} {r.notif_resent:>6} "
                f"{nrec:>11}"
            )
        rss = [r.max_rss_mb.get(w, 0.0) for w in WORKERS if w != "notifier" or notify]
        line += "  " + "/".join(f"{x:.0f}" for x in rss)
        lines.append(line + (f"  {r.note.strip()}" if r.note else ""))
    return "\n".join(lines)


def run_matrix(
    base: Settings,
    cases: list[tuple[str, str]],
    *,
    stall_s: float = 30.0,
    rate: float = 200.0,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    notify_all: bool = False,
) -> list[CaseResult]:
    chaos = Chaos(base, log=log)
    log(f"private stack under {chaos.dir}")
    results: list[CaseResult] = []
    try:
        chaos.up()
        for component, fault in cases:
            log(f"case {component} {fault} ...")
            r = chaos.run_case(
                component, fault, rate=rate, stall_s=stall_s, notify=True if notify_all else None
            )
            log(f"  -> lost {r.lost} of {r.acked}, recovery {r.recovery_s}s {r.note}")
            if "notifier" in r.max_rss_mb:
                log(
                    f"  -> notifications: {r.notified} of {r.alerts} alerts, {r.notif_lost} "
                    f"lost, {r.notif_dups} dup, {r.notif_resent} resent, recovery "
                    f"{r.notif_recovery_s}s"
                )
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
    notify_all: bool = False,
) -> None:
    """Run the fault matrix on a private stack and print component x fault -> loss/recovery.

    CASES: comma-separated component:fault (components gateway, processor, kafka, influxdb,
    mosquitto, notifier; faults kill9, stall) or "all". Notifier cells also run the notifier
    and count notifications; --notify-all does so in every cell.
    """
    import typer

    from citywatch.settings import get_settings

    results = run_matrix(
        get_settings(),
        parse_cases(cases),
        stall_s=stall_s,
        rate=rate,
        out=out,
        notify_all=notify_all,
    )
    print(format_matrix(results))
    if any(
        r.lost or r.dup_influx or r.alert_dups or r.notif_lost or r.notif_dups or r.notif_bad
        for r in results
    ):
        raise typer.Exit(1)
