"""Raise when a device sends nothing for k x its family's expected interval (offline).

A new reading from the device clears it at once (``clear_after_s=0``).

Example:
    >>> r = DeviceSilence({"bin": 900.0}, k=3.0)
    >>> out = []
    >>> r.on_reading({"device_id": "bin-1", "family": "bin", "district": "n", "ts": 0}, out)
    >>> r.on_tick(2701 * 10**9, out)
    >>> [(c.kind, c.active) for c in out]
    [('device_silence', True)]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig
from processors.rules.base import Condition, Record, Rule

_NS = 1_000_000_000


class _Seen:
    __slots__ = ("district", "family", "last", "silent")

    def __init__(self, last: int, family: str, district: str) -> None:
        self.last, self.family, self.district, self.silent = last, family, district, False


class DeviceSilence(Rule):
    """Nothing from a device for k x its expected interval -> offline; a new reading clears it."""

    name: ClassVar[str] = "device_silence"
    description: ClassVar[str] = "no reading for k x the expected interval"

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
            self.seen[dev] = _Seen(ts, rec["family"], rec["district"])
            return
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

    def on_tick(self, now_ns: int, out: list[Condition]) -> None:
        if now_ns - self._scanned < self.scan_every_ns:
            return
        self._scanned = now_ns
        for dev, st in self.seen.items():
            limit = self.limit_ns.get(st.family)
            if limit is None or st.silent or now_ns - st.last <= limit:
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
