"""Raise when a device sends nothing for k x its family's expected interval (offline).

A new reading from the device clears it at once (``clear_after_s=0``). So do a device's
first reading since the processor started, and a reading after a silence that no scan saw
(the warm-up replay runs no clock): a silence the previous run raised may have ended while
no processor ran, and the alert manager ignores a clear when nothing is open.

Each device's last reading goes into the processor's checkpoints (``learns``): a device that
fell silent shortly before a restart sends nothing for the replay to find, and a restarted
rule that had not seen it never raised its silence.

Example:
    >>> r = DeviceSilence({"bin": 900.0}, k=3.0)
    >>> out = []
    >>> r.on_reading({"device_id": "bin-1", "family": "bin", "district": "n", "ts": 0}, out)
    >>> r.on_tick(2701 * 10**9, out)
    >>> [(c.kind, c.active) for c in out]  # a first reading clears what may have been open
    [('device_silence', False), ('device_silence', True)]
"""

from __future__ import annotations

from collections.abc import Collection, Container
from typing import Any, ClassVar

from processors.config import RulesConfig
from processors.rules.base import Condition, Record, Rule

_NS = 1_000_000_000


class _Seen:
    __slots__ = ("district", "family", "last", "limit", "silent")

    def __init__(self, last: int, family: str, district: str, limit: int) -> None:
        self.last, self.family, self.district, self.silent = last, family, district, False
        self.limit = limit


class DeviceSilence(Rule):
    """Nothing from a device for k x its expected interval -> offline; a new reading clears it."""

    name: ClassVar[str] = "device_silence"
    description: ClassVar[str] = "no reading for k x the expected interval"
    learns: ClassVar[bool] = True  # each device's last reading, across restarts

    def __init__(self, intervals_s: dict[str, float], k: float = 3.0) -> None:
        self.limit_ns = {fam: int(k * s * _NS) for fam, s in intervals_s.items()}
        self.seen: dict[str, _Seen] = {}
        # A scan visits every device, and the app ticks after every batch (many per second at
        # low load): scanning at most every tenth of the shortest limit (event time) keeps
        # the cost flat and delays an alert by <= 10 % of its limit. Its time and id do not
        # change: both come from the device's last reading.
        self.scan_every_ns = min(self.limit_ns.values(), default=0) // 10
        self._scanned = -(2**62)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        st = self.seen.get(dev)
        ts: int = rec["ts"]
        if st is None:
            fam = rec["family"]
            st = self.seen[dev] = _Seen(ts, fam, rec["district"], self.limit_ns.get(fam, 2**62))
            st.silent = True  # for all we know; the clear below is a no-op otherwise
        elif not st.silent and ts - st.last > st.limit:
            st.silent = True
        if ts > st.last:
            st.last = ts
        if st.silent:
            st.silent = False
            out.append(
                Condition(
                    "device_silence",
                    dev,
                    "device",
                    False,
                    ts,
                    "warning",
                    st.family,
                    st.district,
                    "reporting again",
                    clear_after_s=0,
                )
            )

    def learnt(self, device: str) -> Any:
        st = self.seen.get(device)
        return None if st is None else [st.last, st.family, st.district, st.silent]

    def relearn(self, device: str, state: Any) -> None:
        last, family, district, silent = state
        if not isinstance(last, int) or not isinstance(family, str):
            raise ValueError(f"not a device_silence state: {state!r}")
        if not isinstance(district, str) or not isinstance(silent, bool):
            raise ValueError(f"not a device_silence state: {state!r}")
        st = self.seen[device] = _Seen(last, family, district, self.limit_ns.get(family, 2**62))
        st.silent = silent

    def forget(self, devices: Container[str]) -> Collection[str]:
        # Left here, their readings gone to another processor, they would all turn silent.
        for dev in [d for d in self.seen if d in devices]:
            del self.seen[dev]
        return ()

    def on_tick(self, now_ns: int, out: list[Condition]) -> None:
        if now_ns - self._scanned < self.scan_every_ns:
            return
        self._scanned = now_ns
        for dev, st in self.seen.items():
            limit = st.limit  # 2**62 for a family without one: never silent
            if st.silent or now_ns - st.last <= limit:
                continue
            st.silent = True
            out.append(
                Condition(
                    "device_silence",
                    dev,
                    "device",
                    True,
                    st.last + limit,
                    "warning",
                    st.family,
                    st.district,
                    f"no reading for {(now_ns - st.last) / _NS:.0f}s",
                )
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return DeviceSilence(cfg.expected_interval_s, cfg.silence_k)
