"""A lean asyncio MQTT 5 subscriber with manual QoS 1 acks, for the gateway's hot path.

Why not paho here: profiling the gateway (pyinstrument, 50,000 QoS 1 messages) showed paho's
packet reader (MQTT 5 Properties and ReasonCode objects, one call chain per packet) taking more
time than decoding, validating and producing to Kafka together. This client parses PUBLISH
packets straight out of the received bytes in one loop, hands ``(topic, payload, qos, pid)`` to
a callback, and coalesces PUBACKs into one socket write per event-loop turn. It speaks only
what a subscriber needs: CONNECT (clean start, session expiry, receive maximum), SUBSCRIBE,
PUBLISH in (QoS 0/1), PUBACK out, PINGREQ, DISCONNECT. Everything else stays with
``citywatch.mqtt.AsyncMqtt`` (paho). The packet helpers here are shared with the simulator's
``FastPublisher``.

Flow control: ``pause_reading`` stops reading the socket (the broker then holds the messages,
up to its per-client limits); after a lost connection it reconnects with back-off and
resubscribes, and the broker redelivers the unacknowledged messages of the session.

Example:
    >>> async def demo() -> None:  # doctest: +SKIP
    ...     sub = LeanSubscriber("127.0.0.1", 1883, "gw1", "gateway", "pw",
    ...                          on_message=lambda topic, payload, qos, pid: print(topic))
    ...     await sub.connect()
    ...     await sub.subscribe([("city/+/+/+/up", 1)])
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable
from typing import Final

from citywatch.backoff import reconnect

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, int, int], None]  # topic, payload, qos, packet id

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ: Final = b"\xc0\x00"
PINGRESP: Final = 0xD0
DISCONNECT: Final = b"\xe0\x00"
U16: Final = struct.Struct(">H")
U32: Final = struct.Struct(">I")


class MqttError(ConnectionError):
    """The broker refused us or the connection broke in a way we cannot repair."""


def varint(n: int) -> bytes:
    """MQTT variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when the buffer ends inside the integer."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(buf))):
        b = buf[i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    if len(buf) - pos >= 4:
        raise MqttError("malformed variable byte integer")
    return None


def string(s: str | bytes) -> bytes:
    """MQTT UTF-8 string: two length bytes, then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return U16.pack(len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_v5(
    client_id: str,
    username: str,
    password: str,
    keepalive: int,
    clean_start: bool,
    session_expiry_s: int,
    receive_maximum: int,
) -> bytes:
    flags = 0xC0 | (0x02 if clean_start else 0)  # username + password
    props = b""
    if session_expiry_s:
        props += b"\x11" + U32.pack(session_expiry_s)
    if receive_maximum:
        props += b"\x21" + U16.pack(receive_maximum)
    body = string("MQTT") + bytes([5, flags]) + U16.pack(keepalive) + varint(len(props)) + props
    body += string(client_id) + string(username) + string(password)
    return packet(CONNECT, body)


def subscribe_v5(pid: int, filters: list[tuple[str, int]]) -> bytes:
    body = U16.pack(pid) + b"\x00" + b"".join(string(f) + bytes([q]) for f, q in filters)
    return packet(SUBSCRIBE, body)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: LeanConnection) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        try:
            used = self.owner._parse(buf)
        except MqttError as exc:
            log.error("MQTT protocol error: %s; dropping the connection", exc)
            if self.transport is not None:
                self.transport.close()
            return
        del buf[:used]

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


class LeanConnection:
    """One MQTT connection driven by asyncio: CONNECT/CONNACK, keep-alive, coalesced writes,
    and reconnection with back-off. Subclasses parse what the broker sends (``_parse``) and
    say what to do once (re)connected (``_on_connected``)."""

    def __init__(
        self,
        host: str,
        port: int,
        connect_pkt: bytes,
        keepalive_s: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self.keepalive_s = keepalive_s
        self._connect_pkt = connect_pkt
        self._proto: _Protocol | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closing = False
        self._connack: asyncio.Future[int] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self.reconnects = 0

    def _parse(self, buf: bytearray) -> int:
        """Handle every complete packet in ``buf``; return how many bytes were used."""
        raise NotImplementedError

    async def _on_connected(self) -> None:
        """Called after each successful CONNACK."""

    def _on_connack(self, rc: int) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)

    async def connect(self) -> None:
        """Connect and wait for CONNACK; raises MqttError when refused or unreachable."""
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        try:
            _, proto = await loop.create_connection(
                lambda: _Protocol(self), self.host, self.port, ssl=self.tls
            )
        except OSError as exc:
            raise MqttError(f"MQTT broker {self.host}:{self.port}: {exc}") from exc
        assert isinstance(proto, _Protocol) and proto.transport is not None
        proto.transport.write(self._connect_pkt)
        try:
            rc = await asyncio.wait_for(self._connack, timeout=10.0)
        except BaseException:
            proto.transport.close()
            raise
        if rc != 0:
            proto.transport.close()
            raise MqttError(f"MQTT broker refused the connection (CONNACK rc=0x{rc:02x})")
        self._proto = proto
        self.connects += 1
        self.connected.set()
        await self._on_connected()
        if self._ping_task is None:
            self._ping_task = loop.create_task(self._pinger())

    def _lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self._out.clear()
        self.connected.clear()
        if not self._closing and self._reconnect_task is None:
            log.warning("MQTT connection lost (%s); reconnecting", exc)
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        # Until connected; close() cancels this task.
        try:
            await reconnect(self.connect, (MqttError, TimeoutError), log=log)
            self.reconnects += 1
        finally:
            self._reconnect_task = None

    async def _pinger(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.keepalive_s / 2)
            if self._proto is not None:
                self._queue(PINGREQ)

    def _queue(self, data: bytes) -> None:
        """Send with everything else queued in this event-loop turn (one socket write)."""
        if self._proto is None:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _write(self, data: bytes) -> None:
        """Send now, behind whatever is queued."""
        self._flush()
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(data)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(b"".join(self._out))
        self._out.clear()

    async def close(self) -> None:
        """Send what is queued, DISCONNECT (a persistent session stays) and close."""
        self._closing = True
        for task in (self._ping_task, self._reconnect_task):
            if task is not None:
                task.cancel()
        proto = self._proto
        if proto is not None and proto.transport is not None:
            self._write(DISCONNECT)
            proto.transport.close()
        self._proto = None
        self.connected.clear()


class LeanSubscriber(LeanConnection):
    """One MQTT 5 subscription connection; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        *,
        on_message: OnMessage,
        clean_start: bool = False,
        session_expiry_s: int = 0,
        receive_maximum: int = 0,
        keepalive_s: int = 30,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        pkt = connect_v5(
            client_id,
            username,
            password,
            keepalive_s,
            clean_start,
            session_expiry_s,
            receive_maximum,
        )
        super().__init__(host, port, pkt, keepalive_s, tls)
        self.on_message = on_message
        self._subs: list[tuple[str, int]] = []
        self._paused = False
        self._subacks: dict[int, asyncio.Future[bytes]] = {}
        self._next_pid = 0

    # -- incoming packets --------------------------------------------------------------
    def _parse(self, buf: bytearray) -> int:
        """Handle every complete packet in ``buf``; return how many bytes were used."""
        pos, n = 0, len(buf)
        on_message = self.on_message
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:
                start = pos + 2
            else:
                got = read_varint(buf, pos + 1)
                if got is None:
                    break
                length, start = got
            end = start + length
            if end > n:
                break
            kind = first & 0xF0
            if kind == PUBLISH:
                qos = (first >> 1) & 0x03
                tlen = (buf[start] << 8) | buf[start + 1]
                p = start + 2 + tlen
                topic = buf[start + 2 : p].decode()
                pid = 0
                if qos:
                    pid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                plen = buf[p]  # property length: nearly always 0
                if plen < 0x80:
                    p += 1 + plen
                else:
                    got = read_varint(buf, p)
                    assert got is not None  # inside a complete packet
                    p = got[1] + got[0]
                on_message(topic, bytes(buf[p:end]), qos, pid)
            elif kind == CONNACK:
                self._on_connack(buf[start + 1])
            elif kind == SUBACK:
                sid = (buf[start] << 8) | buf[start + 1]
                fut = self._subacks.pop(sid, None)
                if fut is not None and not fut.done():
                    got = read_varint(buf, start + 2)
                    assert got is not None
                    fut.set_result(bytes(buf[got[1] + got[0] : end]))
            elif kind == 0xE0:  # the broker disconnects us, with a reason code
                reason = buf[start] if length else 0
                raise MqttError(f"broker sent DISCONNECT (reason 0x{reason:02x})")
            elif kind != PINGRESP:
                log.debug("ignoring MQTT packet type 0x%02x", first)
            pos = end
        return pos

    async def _on_connected(self) -> None:
        assert self._proto is not None and self._proto.transport is not None
        if self._paused:
            self._proto.transport.pause_reading()
        if self._subs:
            await self._send_subscribe(self._subs)

    async def subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe now (waiting for SUBACK) and again after every reconnect."""
        self._subs.extend(filters)
        if self._proto is not None:
            await self._send_subscribe(filters)

    async def _send_subscribe(self, filters: list[tuple[str, int]]) -> None:
        self._next_pid = self._next_pid % 65535 + 1
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._subacks[self._next_pid] = fut
        self._write(subscribe_v5(self._next_pid, filters))
        codes = await asyncio.wait_for(fut, timeout=10.0)
        bad = [f for (f, _), c in zip(filters, codes, strict=False) if c >= 0x80]
        if bad:
            raise MqttError(f"subscription refused for {bad} (reason codes {codes.hex()})")

    def ack(self, pid: int, qos: int) -> None:
        """PUBACK a QoS 1 message; sent with the others at the end of this loop turn."""
        if qos == 1:
            self._queue(b"\x40\x02" + U16.pack(pid))

    def pause_reading(self) -> None:
        """Stop reading the socket: unread messages wait in the kernel and the broker."""
        if not self._paused and self._proto is not None and self._proto.transport is not None:
            self._proto.transport.pause_reading()
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused and self._proto is not None and self._proto.transport is not None:
            self._proto.transport.resume_reading()
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    async def nap(self, seconds: float) -> None:
        """Leave the socket unread for ``seconds`` (unless flow control has paused it).

        Under light load every packet otherwise wakes the loop on its own; after a nap one
        read takes whatever arrived meanwhile. The broker holds nothing back: it only sees
        its writes wait in the socket buffer.
        """
        proto = self._proto
        transport = proto.transport if proto is not None else None
        if self._paused or transport is None:
            await asyncio.sleep(seconds)
            return
        transport.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            if not self._paused and not transport.is_closing():
                transport.resume_reading()
