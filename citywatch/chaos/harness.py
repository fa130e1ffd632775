"""The chaos harness: a private stack plus gateway and processor (and notifier), one fault
injected under load, and what it cost (``CaseResult``).

Example:
    >>> CaseResult("gateway", "kill9").lost
    0
    >>> chaos = Chaos(Settings())  # doctest: +SKIP
    >>> chaos.up()  # doctest: +SKIP
    >>> chaos.run_case("gateway", "kill9", rate=150).lost  # doctest: +SKIP
    0
    >>> chaos.down()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from citywatch import influxql, kafkautil
from citywatch.chaos.env import notifier_env, private_settings, settings_env
from citywatch.chaos.load import Load
from citywatch.chaos.receiver import Receiver
from citywatch.chaos.worker import Worker, rss_mb
from citywatch.settings import Settings
from citywatch.stack import services
from citywatch.stack import up as stack_up
from citywatch.stack.process import ManagedProcess, StackError


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
