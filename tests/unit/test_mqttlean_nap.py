"""The gateway's MQTT connection naps under light load: reading paused, then resumed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from citywatch.mqttlean import LeanSubscriber


class _Transport:
    def __init__(self) -> None:
        self.reading = True
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.reading = False
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.reading = True
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return False


def _sub() -> tuple[LeanSubscriber, _Transport]:
    sub = LeanSubscriber("127.0.0.1", 1, "c", "u", "p", on_message=lambda *a: None)
    t = _Transport()
    sub._proto = SimpleNamespace(transport=t)  # type: ignore[assignment]
    return sub, t


async def test_a_nap_pauses_reading_and_resumes_it() -> None:
    sub, t = _sub()
    task = asyncio.create_task(sub.nap(0.02))
    await asyncio.sleep(0.005)
    assert t.reading is False  # packets gather in the socket meanwhile
    await task
    assert t.reading is True and t.calls == ["pause", "resume"]


async def test_a_nap_leaves_flow_control_pauses_alone() -> None:
    sub, t = _sub()
    task = asyncio.create_task(sub.nap(0.02))
    await asyncio.sleep(0.005)
    sub.pause_reading()  # the gateway's inbox filled up during the nap
    await task
    assert t.reading is False  # still paused until the inbox drains
    sub.resume_reading()
    assert t.reading is True
