"""paho-mqtt 2.x driven by the asyncio event loop (no network thread), with manual acks.

paho's socket callbacks hook the client's socket into the running loop, so ``on_message``
runs inside the loop and may touch asyncio objects directly. Reading can be paused (the
socket is simply not read) so that a slow consumer slows the broker instead of eating memory.

Example:
    >>> async def main():  # doctest: +SKIP
    ...     c = AsyncMqtt(host="127.0.0.1", port=1883, client_id="x", username="u", password="p")
    ...     await c.connect()
    ...     await c.publish("city/a/bin/b1/up", b"{}", qos=1)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citywatch.backoff import reconnect
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings

log = logging.getLogger(__name__)

MessageHandler = Callable[[mqtt.MQTTMessage], None]


class _BufferedClient(mqtt.Client):
    """paho's client with buffered socket I/O.

    paho reads each packet with several tiny ``recv`` calls (one byte for the type, one per
    length byte, then the body) and writes every PUBACK/PUBLISH with its own ``send``: four or
    five system calls per message, which caps a Python gateway far below the broker's rate.
    Here reads are served from one large ``recv`` and PUBACK/PUBLISH packets are coalesced
    into one ``send`` per event-loop turn; every other packet (CONNECT, SUBSCRIBE, PINGREQ,
    DISCONNECT...) is written at once, after what is buffered, so order is kept.
    """

    _rbuf: bytes = b""
    _rpos: int = 0
    _wbuf: bytearray

    def buffered(self) -> bool:
        return self._rpos < len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(256 * 1024)
            if not data:
                return data
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if not hasattr(self, "_wbuf"):
            self._wbuf = bytearray()
        self._wbuf += buf
        if buf and (buf[0] & 0xF0) not in (0x30, 0x40):  # not PUBLISH / PUBACK
            self.flush_writes()
        return len(buf)

    def flush_writes(self) -> bool:
        """Send what is buffered; True when everything left the process."""
        wbuf = getattr(self, "_wbuf", None)
        while wbuf:
            try:
                sent = super()._sock_send(bytes(wbuf))
            except BlockingIOError:
                return False
            except OSError:
                wbuf.clear()  # the connection is gone; paho notices on its next read
                return True
            del wbuf[:sent]
        return True

    def reset_buffers(self) -> None:
        self._rbuf, self._rpos = b"", 0
        self._wbuf = bytearray()


class MqttRefused(ConnectionError):
    """The broker refused the connection (bad credentials, not authorised...)."""


class AsyncMqtt:
    """One MQTT 5 connection that reconnects by itself and resubscribes."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        receive_maximum: int | None = None,
        manual_ack: bool = False,
        keepalive_s: int = 30,
        on_message: MessageHandler | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        max_inflight: int = 1000,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.keepalive_s = host, port, keepalive_s
        self.clean_start = clean_start
        self.client = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=manual_ack,
            reconnect_on_failure=False,  # reconnection is ours, in the loop
        )
        self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        if will:
            self.client.will_set(will[0], will[1], qos=will[2], retain=will[3])
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if session_expiry_s:
            props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        self._connect_props = props
        self._subs: list[tuple[str, int]] = []
        self._pubs: dict[int, asyncio.Future[None]] = {}
        self._early_acks: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._paused = False
        self._closing = False
        self._misc_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self._connack: asyncio.Future[ReasonCode] | None = None
        c = self.client
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        if on_message is not None:
            c.on_message = lambda _c, _u, msg: on_message(msg)

    # -- socket plumbing -------------------------------------------------------------
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        self.client.reset_buffers()
        if not self._paused:
            self._loop.add_reader(sock, self._readable)
        self._misc_task = self._loop.create_task(self._misc())

    def _readable(self) -> None:
        c = self.client
        c.loop_read()
        # paho handles one packet per call; the rest of a large read waits in our buffer,
        # which the selector cannot see, so keep going until it is empty (or we pause).
        while c.buffered() and not self._paused and self._sock is not None:
            c.loop_read()

    def _writable(self) -> None:
        c = self.client
        c.loop_write()
        if c.flush_writes() and not c.want_write() and self._sock is not None:
            assert self._loop is not None
            self._loop.remove_writer(self._sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        if self._misc_task:
            self._misc_task.cancel()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho thinks all is written; our coalescing buffer may still hold bytes.
        if not self.client.flush_writes():
            return
        assert self._loop is not None
        self._loop.remove_writer(sock)

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def pause_reading(self) -> None:
        """Stop reading the socket: unread messages wait in the kernel and the broker."""
        if not self._paused and self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused and self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock, self._readable)
            if self.client.buffered():
                self._loop.call_soon(self._readable)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    # -- connection ------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)
        if not rc.is_failure:
            self.connects += 1
            self.connected.set()
            for topic, qos in self._subs:
                client.subscribe(topic, qos)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)
        if not self._closing and self._loop is not None and self._reconnect_task is None:
            log.warning("MQTT connection lost (%s); reconnecting", rc)
            self._reconnect_task = self._loop.create_task(self._reconnect())

    async def _connect_once(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._connack = self._loop.create_future()
        try:
            self.client.connect(
                self.host,
                self.port,
                keepalive=self.keepalive_s,
                clean_start=self.clean_start,
                properties=self._connect_props,
            )
        except OSError as exc:
            raise ConnectionError(f"MQTT broker {self.host}:{self.port}: {exc}") from exc
        rc = await asyncio.wait_for(self._connack, timeout=10.0)
        if rc.is_failure:
            raise MqttRefused(f"MQTT broker refused the connection: {rc}")

    async def connect(self) -> None:
        """Connect and wait for CONNACK; raises MqttRefused or ConnectionError."""
        await self._connect_once()

    async def _reconnect(self) -> None:
        # Until connected; close() cancels this task.
        try:
            await reconnect(self._connect_once, (ConnectionError, TimeoutError), log=log)
        finally:
            self._reconnect_task = None

    async def subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe now and after every reconnect."""
        self._subs.extend(filters)
        if self.connected.is_set():
            for topic, qos in filters:
                self.client.subscribe(topic, qos)

    # -- publish / ack ---------------------------------------------------------------
    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        fut = self._pubs.pop(mid, None)
        if fut is None:
            self._early_acks.add(mid)
        elif not fut.done():
            if rc.is_failure:
                fut.set_exception(MqttRefused(f"publish refused: {rc}"))
            else:
                fut.set_result(None)

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a publish; the future resolves when the broker acknowledged it (QoS 1)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        # paho 2 keeps QoS>0 messages queued while disconnected (rc NO_CONN) and sends them
        # after reconnecting, so the future simply waits for that PUBACK.
        if qos == 0 or info.mid in self._early_acks:
            self._early_acks.discard(info.mid)
            fut.set_result(None)
        else:
            self._pubs[info.mid] = fut
        return fut

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        await self.publish_nowait(topic, payload, qos, retain)

    def ack(self, mid: int, qos: int) -> None:
        """Send the PUBACK for a message received with manual acks."""
        self.client.ack(mid, qos)

    def fail_pending(self, exc: BaseException) -> None:
        for fut in self._pubs.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pubs.clear()

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task:
            self._reconnect_task.cancel()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        # Give the DISCONNECT packet a moment to leave the socket.
        for _ in range(20):
            if self._sock is None:
                break
            await asyncio.sleep(0.01)
        if self._misc_task:
            self._misc_task.cancel()


async def end_session(settings: Settings, role: str, client_id: str) -> bool:
    """Discard ``client_id``'s persistent session on the broker now, not at its expiry.

    A gateway's session outlives it (that is what lets a restarted gateway collect what came
    meanwhile), so one that will never return under that id, such as a demo's or a
    benchmark's run-scoped instance, leaves a queue that takes a copy of every later uplink
    for ``gateway.session_expiry_s`` (a week by default), up to the broker's queue limit, all of it
    rewritten on every autosave. A clean start discards it; expiry 0 leaves nothing behind.
    False when the broker is not reachable.

    Example:
        >>> asyncio.run(end_session(Settings(), "gateway", "citywatch-demo-1"))  # doctest: +SKIP
        True
    """
    c = AsyncMqtt(**mqtt_kwargs(settings, role), client_id=client_id, clean_start=True)
    try:
        await c.connect()
    except (ConnectionError, TimeoutError):
        return False
    finally:
        await c.close()
    return True
