"""Support for the notifier tests (no tests here): a webhook HTTP server, an aiosmtpd SMTP
server, an MQTT subscriber (user ``crews``), plus config writing and alert producing."""

from __future__ import annotations

import email
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from citywatch import credentials
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from citywatch.stack.ports import free_port

SECRET = "test-webhook-secret"


@dataclass
class Got:
    """One received notification: channel, path/recipient, event, key, parsed document."""

    channel: str
    where: str
    event: str
    key: str
    doc: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""


class Receivers:
    def __init__(self, s: Settings, crew: str) -> None:
        self.s, self.crew = s, crew
        self.got: list[Got] = []
        self.status: list[tuple[dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.http_port = free_port()
        self.smtp_port = free_port()
        self._http: ThreadingHTTPServer | None = None
        self._smtp: Controller | None = None
        self._mqtt: mqtt.Client | None = None

    def add(self, g: Got) -> None:
        with self.lock:
            self.got.append(g)

    def start(self) -> Receivers:
        rec = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                doc = orjson.loads(raw)
                rec.add(
                    Got(
                        "webhook",
                        self.path,
                        doc["event"],
                        self.headers["Idempotency-Key"],
                        doc,
                        dict(self.headers.items()),
                        raw,
                    )
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Hook)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

        class Smtp:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                m = email.message_from_bytes(envelope.content)
                text = m.get_payload(decode=True).decode()
                doc = orjson.loads(text[text.index("{") :])
                for rcpt in envelope.rcpt_tos:
                    rec.add(
                        Got(
                            "email",
                            rcpt,
                            m["X-Citywatch-Event"],
                            m["X-Citywatch-Idempotency-Key"],
                            doc,
                            dict(m.items()),
                        )
                    )
                return "250 OK"

        self._smtp = Controller(Smtp(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()

        subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-crew-{self.crew}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        c.username_pw_set("crews", credentials.password(self.s, "crews"))

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            doc = orjson.loads(msg.payload)
            if msg.topic.endswith("/status"):
                with self.lock:
                    self.status.append((doc, bool(msg.retain)))
            else:
                self.add(Got("mqtt", msg.topic, doc["event"], doc["idempotency_key"], doc))

        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_connect = lambda cl, *a: cl.subscribe(f"crews/{self.crew}/#", qos=1)
        c.connect(self.s.mqtt.host, self.s.mqtt.port)
        c.loop_start()
        assert subscribed.wait(10), "MQTT test subscriber did not subscribe"
        self._mqtt = c
        return self

    def stop(self) -> None:
        if self._http:
            self._http.shutdown()
        if self._smtp:
            self._smtp.stop()
        if self._mqtt:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()

    def of(
        self, channel: str | None = None, *, target: str | None = None, event: str | None = None
    ) -> list[Got]:
        with self.lock:
            return [
                g
                for g in self.got
                if (channel is None or g.channel == channel)
                and (target is None or g.doc["order"]["target"] == target)
                and (event is None or g.event == event)
            ]

    def settle(self, idle_s: float = 2.0, timeout_s: float = 30.0) -> None:
        """Wait until nothing new arrived for ``idle_s`` (so late duplicates would show)."""
        deadline = time.monotonic() + timeout_s
        n, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                cur = len(self.got)
            if cur != n:
                n, since = cur, time.monotonic()
            elif time.monotonic() - since >= idle_s:
                return
            time.sleep(0.1)


def write_config(
    path: Path, rid: str, rec: Receivers, db: Path, extra: str = "", short_sla: bool = False
) -> Path:
    """A notifier config routing district d<rid> to the receivers' crew, all else to nobody.

    ``short_sla``: critical orders escalate after 1 s / 2 s (otherwise the defaults apply,
    so other tests' alerts on the shared topic do not escalate to our supervisor).
    """
    crew = rec.crew
    sla = "[notifier.sla.critical]\nack_s = 1.0\nresolve_s = 2.0\n" if short_sla else ""
    path.write_text(f"""
[notifier]
group_id = "citywatch-notifier-test-{rid}"
instance = "t{rid}"
db_url = "sqlite:///{db}"
default_crew = "nobody-{rid}"
escalation_check_s = 0.3
kpi_interval_s = 0
webhook_secret = "{SECRET}"
retry_base_s = 0.2
{extra}

[[notifier.crews]]
id = "{crew}"
districts = ["d{rid}"]
webhook_url = "http://127.0.0.1:{rec.http_port}/crew"
email = ["{crew}@example.org"]

[[notifier.crews]]
id = "nobody-{rid}"
mqtt = false

[[notifier.routes]]
crew = "{crew}"
district = "d{rid}"

[notifier.supervisor]
id = "sup-{rid}"
webhook_url = "http://127.0.0.1:{rec.http_port}/supervisor"
mqtt = false

[notifier.smtp]
host = "127.0.0.1"
port = {rec.smtp_port}

{sla}""")
    return path


def alert(
    rid: str,
    alert_id: str,
    target: str,
    kind: str,
    severity: str,
    state: str,
    ts: int | None = None,
) -> dict[str, Any]:
    t = ts or time.time_ns()
    return {
        "alert_id": alert_id,
        "kind": kind,
        "target": target,
        "target_type": "device",
        "family": "bin" if kind.startswith("bin") else "streetlight",
        "district": f"d{rid}",
        "severity": severity,
        "state": state,
        "episode_start": t,
        "ts": t,
        "message": f"{kind} on {target}",
    }


async def produce_alerts(s: Settings, events: list[dict[str, Any] | bytes]) -> None:
    p = AIOKafkaProducer(**client_kwargs(s), acks="all")
    await p.start()
    try:
        for e in events:
            if isinstance(e, bytes):
                await p.send_and_wait(s.kafka.alerts_topic, e, key=b"junk")
            else:
                await p.send_and_wait(
                    s.kafka.alerts_topic, orjson.dumps(e), key=e["alert_id"].encode()
                )
    finally:
        await p.stop()
