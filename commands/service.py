"""Accepting a command: resolve its target, apply the policy, store it, put it on Kafka.

The API, the CLI and confirmed alert suggestions all go through ``Submitter.submit``; the
command is stored (with its audit row) *before* it is produced to ``citywatch.commands``
(key = target), so the trail has it even when Kafka is down — it is then marked failed
with the reason and the caller gets the error. Alert suggestions are free text today
("switch off lamp X"); ``parse_suggestion`` turns the texts processors write into requests.

Example:
    >>> parse_suggestion("switch off lamp lamp-c01-0007")
    ('switch', 'device', 'lamp-c01-0007', {'state': 'off'})
    >>> parse_suggestion("dim circuit c-3 to 40%")
    ('dim', 'circuit', 'c-3', {'level_pct': 40})
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from commands.model import Command, CommandError, CommandRequest, new_id
from commands.policy import PrincipalLike, check
from commands.store import Store
from commands.targets import Targets

log = logging.getLogger(__name__)

_SUGGESTION: Final = re.compile(
    r"^\s*(?:(?P<switch>switch)\s+(?P<state>on|off)|(?P<dim>dim))\s+"
    r"(?P<ttype>lamp|device|circuit|cabinet|district)\s+(?P<target>\S+?)"
    r"(?:\s+to\s+(?P<level>\d{1,3})\s*%?)?\s*$",
    re.IGNORECASE,
)


class KafkaUnavailable(CommandError):
    """The command was stored and audited but could not be put on Kafka."""


def parse_suggestion(text: str) -> tuple[str, str, str, dict[str, Any]]:
    """(kind, target_type, target, params) of a suggestion text; CommandError if unknown."""
    m = _SUGGESTION.match(text)
    if m is None or (m["dim"] and m["level"] is None):
        raise CommandError(f"cannot turn the suggestion {text!r} into a command")
    ttype = m["ttype"].lower()
    ttype = "device" if ttype == "lamp" else ttype
    if m["switch"]:
        return "switch", ttype, m["target"], {"state": m["state"].lower()}
    return "dim", ttype, m["target"], {"level_pct": int(m["level"])}


def command_record(cmd: Command) -> bytes:
    """The value on ``citywatch.commands`` (state is tracked in the store, not here)."""
    return orjson.dumps(cmd.model_dump(exclude={"state", "detail"}))


class Submitter:
    """Shared by the API (one per app) and the CLI (one per call)."""

    def __init__(self, settings: Settings, store: Store, targets: Targets | None = None) -> None:
        self.s = settings
        self.store = store
        self._targets = targets
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _get_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                p = AIOKafkaProducer(
                    **client_kwargs(self.s),
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=10000,
                )
                try:
                    await p.start()
                except Exception as exc:
                    await p.stop()
                    raise KafkaUnavailable(f"Kafka {self.s.kafka.bootstrap}: {exc}") from exc
                self._producer = p
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def targets(self) -> Targets:
        """The city model, read on first use (an API may start before the model exists)."""
        if self._targets is None:
            self._targets = Targets.load(self.s)
        return self._targets

    def prepare(
        self, p: PrincipalLike, req: CommandRequest, source: str, now: float | None = None
    ) -> Command:
        """Check and store the command (queued); raises CommandError or policy.Refused."""
        cfg = self.s.commands
        now = time.time() if now is None else now
        resolved = self.targets.resolve(req.target_type, req.target)
        if not resolved.devices:
            raise CommandError(f"{req.target_type} {req.target} has no device that takes commands")
        recent = self.store.count_since(req.target, now - cfg.rate_limit_window_s)
        check(cfg, p, req.target_type, resolved.district, confirm=req.confirm, recent=recent)
        expires_in = req.expires_in_s or cfg.default_expiry_s
        if expires_in > cfg.max_expiry_s:
            raise CommandError(f"expires_in_s may be at most {cfg.max_expiry_s:g}")
        cmd = Command(
            id=new_id(),
            kind=req.kind,
            params=req.params,
            target_type=req.target_type,
            target=req.target,
            district=resolved.district,
            issuer=p.name,
            role=p.role,
            created_at=now,
            expires_at=now + expires_in,
            confirmed=req.confirm,
            source=source,
            note=req.note,
        )
        self.store.add_command(cmd)
        return cmd

    async def submit(self, p: PrincipalLike, req: CommandRequest, source: str = "api") -> Command:
        cmd = await asyncio.to_thread(self.prepare, p, req, source)
        try:
            producer = await self._get_producer()
            await asyncio.wait_for(
                await producer.send(self.s.kafka.commands_topic, command_record(cmd), key=cmd.key),
                timeout=30,
            )
        except Exception as exc:
            why = f"not sent to Kafka: {exc or type(exc).__name__}"
            await asyncio.to_thread(self.store.set_state, cmd.id, "failed", why, "api")
            raise KafkaUnavailable(f"command {cmd.id} {why}") from exc
        log.info(
            "command %s %s -> %s %s by %s",
            cmd.id,
            cmd.kind,
            cmd.target_type,
            cmd.target,
            cmd.issuer,
        )
        return cmd

    async def confirm_suggestion(
        self, p: PrincipalLike, alert_id: str, *, confirm_district: bool = False
    ) -> Command:
        """Turn a pending alert suggestion into a command on a person's confirmation."""
        sug = await asyncio.to_thread(self.store.suggestion, alert_id)
        if sug is None:
            raise CommandError(f"no suggested command for alert {alert_id}")
        if sug.state != "pending":
            raise CommandError(f"the suggestion of alert {alert_id} is already {sug.state}")
        kind, ttype, target, params = parse_suggestion(sug.text)
        req = CommandRequest.model_validate(
            {
                "kind": kind,
                "target_type": ttype,
                "target": target,
                "params": params,
                "confirm": confirm_district,
                "note": f"suggested by alert {alert_id} ({sug.alert_kind})",
            }
        )
        # Claim it first so that two people confirming at once send one command.
        if not await asyncio.to_thread(self.store.decide_suggestion, alert_id, "confirmed", p.name):
            raise CommandError(f"the suggestion of alert {alert_id} was just decided")
        try:
            cmd = await self.submit(p, req, source=f"alert:{alert_id}")
        except Exception:
            await asyncio.to_thread(self.store.reopen_suggestion, alert_id)
            raise
        await asyncio.to_thread(self.store.link_suggestion, alert_id, cmd.id)
        return cmd
