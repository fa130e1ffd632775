"""GPS jump filtering for the vehicle rules: :class:`FixFilter` and its verdicts.

Each rule that uses positions runs its own :class:`FixFilter` (deterministic, so they all
agree): a fix implying > 200 km/h from the last good fix (and > 300 m away) is a jump and is
dropped, so one bad fix can neither start nor break a corridor, dump or hauling streak.
Three mutually consistent "jumps" in a row mean the *previous* fix was the bad one: the
filter re-anchors.

Example:
    >>> f, name = FixFilter(), {OK: "ok", JUMP: "jump", STALE: "stale"}
    >>> fixes = [(0, 0.0), (10, 50.0), (20, 5000.0), (5, 60.0), (30, 100.0)]  # (s, m east)
    >>> [name[f.check("truck-1", t * NS, x, 0.0)] for t, x in fixes]
    ['ok', 'ok', 'jump', 'stale', 'ok']
"""

from __future__ import annotations

import math

from processors.rules.streak import NS

OK = 1
JUMP = 0
STALE = -1


class _Fix:
    __slots__ = ("rej", "rts", "rx", "ry", "speed", "ts", "x", "y")

    def __init__(self, ts: int, x: float, y: float) -> None:
        self.ts, self.x, self.y = ts, x, y
        self.rej = 0  # consecutive rejected fixes that agree with each other
        self.rts, self.rx, self.ry = 0, 0.0, 0.0
        self.speed = 0.0  # implied km/h of the last fix checked


class FixFilter:
    """Drops GPS jumps: the last good fix per vehicle, and the candidates that disagree."""

    __slots__ = ("fixes", "min_m", "reanchor", "vmax")

    def __init__(self, jump_kmh: float = 200.0, min_m: float = 300.0, reanchor: int = 3) -> None:
        self.vmax = jump_kmh / 3.6
        self.min_m = min_m
        self.reanchor = reanchor
        self.fixes: dict[str, _Fix] = {}

    def check(self, dev: str, ts: int, x: float, y: float) -> int:
        """OK (the fix is good and is now the reference), JUMP, or STALE (old/duplicate)."""
        f = self.fixes.get(dev)
        if f is None:
            self.fixes[dev] = _Fix(ts, x, y)
            return OK
        if ts <= f.ts:
            return STALE
        dt = (ts - f.ts) / NS
        dx, dy = x - f.x, y - f.y
        d2 = dx * dx + dy * dy
        lim = max(self.vmax * dt, self.min_m)
        f.speed = math.sqrt(d2) / dt * 3.6
        if d2 <= lim * lim:
            f.ts, f.x, f.y, f.rej = ts, x, y, 0
            return OK
        if f.rej:
            if ts <= f.rts:
                return STALE
            dtr = (ts - f.rts) / NS
            ex, ey = x - f.rx, y - f.ry
            limr = max(self.vmax * dtr, self.min_m)
            f.rej = f.rej + 1 if ex * ex + ey * ey <= limr * limr else 1
        else:
            f.rej = 1
        f.rts, f.rx, f.ry = ts, x, y
        if f.rej >= self.reanchor:
            f.ts, f.x, f.y, f.rej = ts, x, y, 0
            return OK
        return JUMP

    def speed(self, dev: str) -> float:
        f = self.fixes.get(dev)
        return f.speed if f is not None else 0.0
