"""The gateway's disk spool: FIFO, durable across reopen, torn tails cut, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFull, SpoolRecord


def rec(i: int) -> SpoolRecord:
    return SpoolRecord(f"city/a/bin/b{i}/up", f'{{"i":{i}}}'.encode(), i)


async def test_fifo_across_segments_and_commit(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=200)
    for i in range(20):
        await sp.append(rec(i))
    assert len(list(tmp_path.glob("*.seg"))) > 1
    seen: list[int] = []
    while not sp.empty:
        recs, pos = await sp.read(7)
        seen += [r.received_at_ns for r in recs]
        await sp.commit(pos)
    assert seen == list(range(20))
    assert sp.bytes_on_disk == 0 and list(tmp_path.glob("*.seg")) == []


async def test_survives_reopen_and_resumes_at_cursor(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    for i in range(5):
        await sp.append(rec(i))
    recs, pos = await sp.read(2)
    await sp.commit(pos)
    await sp.close()
    again = Spool(tmp_path)
    recs, _ = await again.read(10)
    assert [r.received_at_ns for r in recs] == [2, 3, 4]
    assert recs[0].topic == "city/a/bin/b2/up" and recs[0].payload == b'{"i":2}'


async def test_torn_tail_is_cut_on_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    for i in range(3):
        await sp.append(rec(i))
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("ab") as fh:  # a crash in the middle of an append
        fh.write(b"\x00\x00\x00\x10\x00\x05partial")
    again = Spool(tmp_path)
    recs, _ = await again.read(10)
    assert [r.received_at_ns for r in recs] == [0, 1, 2]
    await again.append(rec(3))
    recs, _ = await again.read(10)
    assert [r.received_at_ns for r in recs] == [0, 1, 2, 3]


async def test_full_spool_refuses(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=100)
    while True:
        try:
            await sp.append(rec(1))
        except SpoolFull:
            break
    assert sp.bytes_on_disk >= 100
    with pytest.raises(SpoolFull):
        sp.append_nowait(rec(2))


async def test_appends_after_a_full_drain_and_reopen_are_drained(tmp_path: Path) -> None:
    # Found by the fault matrix: after a full drain the cursor names segment n+1 and no
    # segment is left; a reopened spool wrote to segment 1 again, looked empty and lost it.
    sp = Spool(tmp_path)
    for i in range(3):
        await sp.append(rec(i))
    recs, pos = await sp.read(10)
    await sp.commit(pos)
    assert sp.empty
    await sp.close()
    again = Spool(tmp_path)
    await again.append(rec(7))
    assert not again.empty
    recs, pos = await again.read(10)
    assert [r.received_at_ns for r in recs] == [7]
    await again.commit(pos)
    third = Spool(tmp_path)
    await third.append(rec(8))
    recs, _ = await third.read(10)
    assert [r.received_at_ns for r in recs] == [8]
