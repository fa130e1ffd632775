"""Transport faults: duplicated and out-of-order deliveries, malformed payloads.

Applied to the time-ordered message stream, one seeded draw per message, and only to
"quiet" publishers (no detection fault in the run) so a transport fault never blurs a
detection fault: a duplicate is the same payload again 1-5 s later; an out-of-order
message is held back until after the publisher's next report (one interval + 1-3 s); a
malformed message is an extra broken payload on the same topic (exactly one dead letter,
reason recorded). Each becomes a ground-truth entry.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> from ingest.simulator.context import SimContext
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=60), 1.7e9)
    >>> tr = Transport(ctx)
    >>> tr.apply(0, []), tr.flush()
    ([], [])
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from ingest.simulator.context import SimContext
from ingest.simulator.formats import Message, malformed
from ingest.simulator.truth import Fault


class Transport:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.rng = ctx.rng("transport")
        self.p = ctx.cfg.transport_rate
        self.held: list[tuple[int, int, Message]] = []
        self.faults: list[Fault] = []
        self._n = 0
        self._next_id = len(ctx.plan.faults) + 1

    def _truth(self, kind: str, msg: Message, start: float, end: float, **params: object) -> None:
        district = msg.topic.split("/")[-4]
        fid = f"f{self._next_id:06d}"
        self._next_id += 1
        f = Fault(
            fid, kind, msg.publisher, "device", msg.family, district, start, end, dict(params)
        )
        f.mark()
        self.faults.append(f)

    def _hold(self, release: int, msg: Message) -> None:
        self._n += 1
        heapq.heappush(self.held, (release, self._n, replace(msg, t=release)))

    def apply(self, t: int, out: list[Message]) -> list[Message]:
        """The messages actually sent at second ``t`` (held ones released after)."""
        result: list[Message] = []
        p, rng = self.p, self.rng
        if p > 0:
            quiet = self.ctx.plan.quiet
            intervals = self.ctx.city.intervals_s
            for msg in out:
                if msg.kind != "reading":
                    result.append(msg)
                    continue
                r = rng.random()
                seq = msg.readings[0][1] if msg.readings else None
                if r < 2 * p and msg.publisher in quiet:
                    if r < p:
                        release = t + rng.randint(1, 5)
                        self._hold(release, msg)
                        self._truth("duplicate", msg, t, release, seq=seq)
                    else:
                        release = t + intervals[msg.family] + rng.randint(1, 3)
                        self._hold(release, msg)
                        self._truth("out_of_order", msg, t, release, seq=seq)
                        continue
                result.append(msg)
                if rng.random() < p:
                    payload, reason = malformed(rng, msg.family, t)
                    bad = replace(
                        msg, payload=payload, readings=(), kind="malformed", reason=reason
                    )
                    result.append(bad)
                    self._truth("malformed", bad, t, t, reason=reason)
        else:
            result = out
        while self.held and self.held[0][0] <= t:
            result.append(heapq.heappop(self.held)[2])
        return result

    def flush(self) -> list[Message]:
        """Everything still held when the run ends (sent right away)."""
        out = [m for _, _, m in sorted(self.held)]
        self.held.clear()
        return out
