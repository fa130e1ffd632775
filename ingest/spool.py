"""A bounded, durable FIFO of raw MQTT messages on local disk, used while Kafka is unreachable.

Why: when Kafka is down, a gateway that just stops acknowledging makes Mosquitto queue
messages for it, and Mosquitto's delivery collapses to a few hundred msg/s once ~100k QoS 1
messages are queued (DESIGN.md). Instead the gateway appends each message here, acknowledges
it once the append is fsync'ed, and drains the spool into Kafka when Kafka is back.

Records sit in segment files ``<n>.seg``: ``>IHq`` (payload length, topic length, received_at
ns), topic, payload, then a CRC-32 of all of it, so a torn tail after a crash is detected
and cut off. The read position is kept in ``cursor``; replaying a few records after a
crash only makes duplicates, which the pipeline merges (same series and timestamp).

Example:
    >>> import asyncio, tempfile, pathlib
    >>> async def demo():
    ...     sp = Spool(pathlib.Path(tempfile.mkdtemp()))
    ...     await sp.append(SpoolRecord("city/a/bin/b1/up", b"{}", 1))
    ...     recs, pos = await sp.read(10)
    ...     await sp.commit(pos)
    ...     return [r.topic for r in recs], sp.empty
    >>> asyncio.run(demo())
    (['city/a/bin/b1/up'], True)
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_HEAD = struct.Struct(">IHq")
_CRC = struct.Struct(">I")


class SpoolFull(RuntimeError):
    """The spool reached its byte bound; the caller must stop accepting messages."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    payload: bytes
    received_at_ns: int


def _encode(rec: SpoolRecord) -> bytes:
    topic = rec.topic.encode()
    body = _HEAD.pack(len(rec.payload), len(topic), rec.received_at_ns) + topic + rec.payload
    return body + _CRC.pack(zlib.crc32(body))


class Spool:
    """Append with group-committed fsync; read and commit from the oldest end."""

    def __init__(
        self, directory: Path, segment_bytes: int = 64 * 1024**2, max_bytes: int = 2 * 1024**3
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Writes, reads and commits move the same cursors in worker threads: one at a time.
        self._io = asyncio.Lock()
        segs = self._segments()
        self._write_seg = segs[-1] if segs else 1
        self._write_off = self._recover_tail(self._write_seg) if segs else 0
        self._read_seg, self._read_off = self._load_cursor(segs)
        if not segs or self._read_seg > segs[-1]:
            # Fully drained last time: the cursor names the next, not yet written segment.
            # Writing must go there, not back to an older number the cursor is already past.
            self._write_seg = max(self._write_seg, self._read_seg)
            self._write_off = 0
            self._read_seg, self._read_off = self._write_seg, 0
        self.bytes_on_disk = sum((self.dir / f"{n:08d}.seg").stat().st_size for n in segs)

    # -- layout ----------------------------------------------------------------------
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.seg"))

    def _seg_path(self, n: int) -> Path:
        return self.dir / f"{n:08d}.seg"

    def _recover_tail(self, n: int) -> int:
        """Cut a torn record off the last segment (a crash mid-append)."""
        data = self._seg_path(n).read_bytes()
        off = 0
        while off + _HEAD.size <= len(data):
            plen, tlen, _ = _HEAD.unpack_from(data, off)
            end = off + _HEAD.size + tlen + plen
            if end + _CRC.size > len(data):
                break
            (crc,) = _CRC.unpack_from(data, end)
            if crc != zlib.crc32(data[off:end]):
                break
            off = end + _CRC.size
        if off != len(data):
            with self._seg_path(n).open("r+b") as fh:
                fh.truncate(off)
        return off

    def _load_cursor(self, segs: list[int]) -> tuple[int, int]:
        try:
            seg_s, off_s = (self.dir / "cursor").read_text().split()
            seg, off = int(seg_s), int(off_s)
        except (OSError, ValueError):
            return (segs[0] if segs else 1), 0
        if segs and seg < segs[0]:
            return segs[0], 0
        return seg, off

    @property
    def empty(self) -> bool:
        return not self._pending and (self._read_seg, self._read_off) >= (
            self._write_seg,
            self._write_off,
        )

    # -- append ----------------------------------------------------------------------
    def append_nowait(self, rec: SpoolRecord) -> asyncio.Future[None]:
        """Queue a record; the future resolves once it is on disk (fsync'ed)."""
        if self.bytes_on_disk >= self.max_bytes:
            raise SpoolFull(
                f"spool {self.dir} holds {self.bytes_on_disk} bytes (max {self.max_bytes})"
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((_encode(rec), fut))
        if self._flusher is None or self._flusher.done():
            self._wake = asyncio.Event()
            self._flusher = loop.create_task(self._flush_loop())
        assert self._wake is not None
        self._wake.set()
        return fut

    async def append(self, rec: SpoolRecord) -> None:
        await self.append_nowait(rec)

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                # One write + fsync per batch: the group commit that keeps the disk off the
                # per-message path; run in a thread so the event loop never blocks on it.
                async with self._io:
                    await asyncio.to_thread(self._write, [b for b, _ in batch])
            except OSError as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _write(self, blobs: list[bytes]) -> None:
        data = b"".join(blobs)
        if self._write_off and self._write_off + len(data) > self.segment_bytes:
            self._write_seg += 1
            self._write_off = 0
        fd = os.open(self._seg_path(self._write_seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_off += len(data)
        self.bytes_on_disk += len(data)

    # -- read / commit ---------------------------------------------------------------
    async def read(self, max_records: int) -> tuple[list[SpoolRecord], tuple[int, int]]:
        """Up to max_records from the read position, and the position just after them."""
        async with self._io:
            return await asyncio.to_thread(self._read, max_records)

    def _read(self, max_records: int) -> tuple[list[SpoolRecord], tuple[int, int]]:
        seg, off = self._read_seg, self._read_off
        out: list[SpoolRecord] = []
        while len(out) < max_records and (seg, off) < (self._write_seg, self._write_off):
            path = self._seg_path(seg)
            if not path.exists() or off >= path.stat().st_size:
                if seg >= self._write_seg:
                    break
                seg, off = seg + 1, 0
                continue
            with path.open("rb") as fh:
                fh.seek(off)
                data = fh.read(4 * 1024 * 1024)
            pos = 0
            while len(out) < max_records and pos + _HEAD.size <= len(data):
                plen, tlen, rat = _HEAD.unpack_from(data, pos)
                end = pos + _HEAD.size + tlen + plen + _CRC.size
                if end > len(data):
                    break
                t0 = pos + _HEAD.size
                topic = data[t0 : t0 + tlen].decode()
                out.append(SpoolRecord(topic, data[t0 + tlen : t0 + tlen + plen], rat))
                pos = end
            off += pos
            if pos == 0:
                break
        return out, (seg, off)

    async def commit(self, position: tuple[int, int]) -> None:
        """Everything before position is in Kafka: persist the cursor, drop old segments."""
        async with self._io:
            await asyncio.to_thread(self._commit, position)

    def _commit(self, position: tuple[int, int]) -> None:
        self._read_seg, self._read_off = position
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{position[0]} {position[1]}")
        tmp.replace(self.dir / "cursor")
        for n in self._segments():
            if n < self._read_seg:
                self.bytes_on_disk -= self._seg_path(n).stat().st_size
                self._seg_path(n).unlink()
        if (self._read_seg, self._read_off) == (
            self._write_seg,
            self._write_off,
        ) and self._read_off:
            # Fully drained: start a fresh segment so the spool file does not grow forever.
            self.bytes_on_disk -= self._seg_path(self._write_seg).stat().st_size
            self._seg_path(self._write_seg).unlink()
            self._write_seg += 1
            self._write_off = 0
            self._read_seg, self._read_off = self._write_seg, 0
            tmp.write_text(f"{self._read_seg} 0")
            tmp.replace(self.dir / "cursor")

    async def close(self) -> None:
        if self._flusher is not None:
            while self._pending:
                await asyncio.sleep(0.01)
            self._flusher.cancel()
