"""Alert policy: conditions -> alert events with deterministic ids, hysteresis and escalation.

- An episode opens on the first active condition for (kind, target); its id is
  ``sha1(target|kind|episode_start_ns)[:16]``, so a replay of the same readings yields the same
  id and the pipeline never raises a second alert for one episode.
- Hysteresis: an episode clears only after its condition stayed inactive for
  ``clear_after_s`` of event time; re-activation meanwhile continues the same episode
  (no flapping).
- Escalation: an episode still open after ``escalate_after_s[severity]`` is escalated once to
  the next severity.
- Events: ``raised``, ``escalated``, ``cleared``; each is one JSON record for
  ``citywatch.alerts`` (key = alert id) and one point in the ``alerts`` measurement.

Example:
    >>> from processors.rules.base import Condition
    >>> am = AlertManager(AlertPolicy(clear_after_s=0))
    >>> ev = am.apply(Condition("bin_fire", "bin-1", "device", True, 10**9, "critical",
    ...                          "bin", "north", "71 C"))
    >>> [e.state for e in ev], ev[0].alert_id == alert_id("bin-1", "bin_fire", 10**9)
    (['raised'], True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from processors.rules.base import Condition

SEVERITIES = ("info", "warning", "major", "critical")
_NS = 1_000_000_000


def alert_id(target: str, kind: str, episode_start_ns: int) -> str:
    return hashlib.sha1(f"{target}|{kind}|{episode_start_ns}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AlertPolicy:
    clear_after_s: float = 600.0
    escalate_after_s: dict[str, float] = field(
        default_factory=lambda: {"warning": 4 * 3600.0, "major": 2 * 3600.0}
    )


@dataclass(slots=True)
class Episode:
    alert_id: str
    start: int
    severity: str
    last_active: int
    inactive_since: int | None = None
    escalated: bool = False


@dataclass(slots=True)
class AlertEvent:
    alert_id: str
    kind: str
    target: str
    target_type: str
    family: str
    district: str
    severity: str
    state: str
    episode_start: int
    ts: int
    message: str
    value: float | None = None
    suggested_command: str | None = None

    def to_json(self) -> bytes:
        d: dict[str, Any] = {k: getattr(self, k) for k in _EVENT_FIELDS}
        return orjson.dumps({k: v for k, v in d.items() if v is not None})


# Not __slots__: a compiled class (citywatch.native) has none.
_EVENT_FIELDS = tuple(f.name for f in fields(AlertEvent))


class AlertManager:
    def __init__(self, policy: AlertPolicy | None = None) -> None:
        self.policy = policy or AlertPolicy()
        self.open: dict[tuple[str, str], Episode] = {}
        # Episodes raised before this manager's time (by a previous run of the processor, or
        # the partition's previous owner) and not cleared: the next condition for the same
        # (kind, target) continues one instead of opening an episode with a new id.
        self.adopted: dict[tuple[str, str], Episode] = {}
        # When the faults of adopted episodes ended, from the rules' checkpoints (quiet).
        self.quiet_since: dict[tuple[str, str], int] = {}

    def adopt(self, episodes: dict[tuple[str, str], Episode]) -> None:
        """Take over open episodes published earlier (processors.open_alerts).

        One of ours with another id for the same (kind, target) is stale: the topic holds the
        latest episode of the group, which another processor raised while it held the target.
        """
        self.adopted = dict(episodes)
        for key, ep in episodes.items():
            mine = self.open.get(key)
            if mine is not None and mine.alert_id != ep.alert_id:
                del self.open[key]

    def quiet(self, key: tuple[str, str], since: int) -> None:
        """The fault of (kind, target) ended at event time ``since`` and its rule is holding
        the clear, as a checkpoint says: an episode adopted for it starts its hysteresis there.
        The open-alerts topic holds the episode, not when its fault ended; counted from the
        first inactive condition this manager saw, the rule's last one (at its hold's end)
        came too soon, and the episode never cleared. A hint from before the episode began
        is ignored."""
        self.quiet_since[key] = since

    def forget(self, targets: Container[str]) -> None:
        """Drop the episodes of ``targets``: another processor continues them now."""
        for key in [k for k in self.open if k[1] in targets]:
            del self.open[key]
        for key in [k for k in self.adopted if k[1] in targets]:
            del self.adopted[key]
        for key in [k for k in self.quiet_since if k[1] in targets]:
            del self.quiet_since[key]

    def replayed(self, c: Condition) -> None:
        """Apply a condition of the warm-up replay, whose events the run before sent: only to
        an episode open or adopted (an adopted one ending meanwhile starts its clear's hold
        at the right time); no episode opens, and nothing is sent."""
        if c.key in self.open or c.key in self.adopted:
            self.apply(c)

    def _event(self, c: Condition, ep: Episode, state: str, ts: int) -> AlertEvent:
        return AlertEvent(
            ep.alert_id,
            c.kind,
            c.target,
            c.target_type,
            c.family,
            c.district,
            ep.severity,
            state,
            ep.start,
            ts,
            c.message,
            c.value,
            c.suggested_command,
        )

    def apply(self, c: Condition) -> list[AlertEvent]:
        ep = self.open.get(c.key)
        if ep is None and self.adopted:
            taken = self.adopted.get(c.key)
            if taken is not None:
                if c.ts < taken.start:
                    # From before the episode began (the replay reaching further back): the
                    # previous run judged that time with more history, and what it found is
                    # sent. A raise here was a second alert for the episode under a new id
                    # (a window refilled from 15 minutes of replay crosses its limit earlier),
                    # and the crews' alert stayed open for good.
                    return []
                ep = self.open[c.key] = self.adopted.pop(c.key)
                if self.quiet_since:
                    since = self.quiet_since.pop(c.key, None)
                    if since is not None and since >= ep.start and ep.inactive_since is None:
                        ep.inactive_since = since
        if c.active:
            if ep is None:
                ep = Episode(alert_id(c.target, c.kind, c.ts), c.ts, c.severity, c.ts)
                self.open[c.key] = ep
                return [self._event(c, ep, "raised", c.ts)]
            ep.last_active = max(ep.last_active, c.ts)
            ep.inactive_since = None
            esc = self.policy.escalate_after_s.get(ep.severity)
            if esc is not None and not ep.escalated and c.ts - ep.start >= esc * _NS:
                ep.escalated = True
                ep.severity = SEVERITIES[min(SEVERITIES.index(ep.severity) + 1, 3)]
                return [self._event(c, ep, "escalated", c.ts)]
            return []
        if ep is None:
            return []
        if ep.inactive_since is None:
            ep.inactive_since = c.ts
        hold = self.policy.clear_after_s if c.clear_after_s is None else c.clear_after_s
        if c.ts - ep.inactive_since >= hold * _NS:
            del self.open[c.key]
            # A late reading can end an episode "before" it began (a silence raised on the
            # watermark, then a delayed reading from inside the silence): never before start.
            return [self._event(c, ep, "cleared", max(c.ts, ep.start))]
        return []
