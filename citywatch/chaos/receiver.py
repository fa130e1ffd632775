"""The crew webhook receiver of the fault matrix: records every notification POSTed to it and
checks its signature.

Example:
    >>> rx = Receiver(b"secret")
    >>> rx.url.startswith("http://127.0.0.1:")
    True
    >>> rx.record(b"not json", {})
    >>> rx.got
    [Received(key='', event='malformed', alert_id='', target='', order_id=0, signed=False)]
    >>> rx.close()
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from typing import Any

import orjson


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
