"""The command store (SQLAlchemy 2): commands, per-device deliveries, alert suggestions, audit.

Every change of a command goes through here and leaves an audit row (who, what, when), so
the trail of "who switched off circuit X" survives the processes that did it. The API, the
CLI and the downlink service share one database: SQLite (WAL, so readers never block the
writer) by default, PostgreSQL by URL. Calls are synchronous; async code wraps them in
``asyncio.to_thread``.

Example:
    >>> from commands.model import Command
    >>> st = Store("sqlite://")
    >>> cmd = Command(id="c1", kind="ping", params={}, target_type="device", target="lamp-1",
    ...               district="central", issuer="ana", role="supervisor",
    ...               created_at=0.0, expires_at=60.0)
    >>> st.add_command(cmd)
    >>> st.get("c1").issuer, [a.action for a in st.audit("c1")]
    ('ana', ['issued'])
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from citywatch.settings import Settings
from citywatch.sqldb import make_engine
from commands.model import Command, Delivery, aggregate, can_move


class Base(DeclarativeBase):
    pass


class CommandRow(Base):
    __tablename__ = "cmd_commands"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[str] = mapped_column(Text)  # JSON
    target_type: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(200), index=True)
    district: Mapped[str] = mapped_column(String(100), index=True)
    issuer: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float, index=True)
    expires_at: Mapped[float] = mapped_column(Float)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class DeliveryRow(Base):
    __tablename__ = "cmd_deliveries"

    cmd_id: Mapped[str] = mapped_column(ForeignKey("cmd_commands.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    publisher_id: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(100))
    family: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")


class AuditRow(Base):
    __tablename__ = "cmd_audit"
    __table_args__ = (Index("ix_cmd_audit_cmd", "cmd_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cmd_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class SuggestionRow(Base):
    """A command an alert suggests; it becomes a command only when a person confirms it."""

    __tablename__ = "cmd_suggestions"

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    alert_kind: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(100), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    raised_at: Mapped[float] = mapped_column(Float)
    # pending | confirmed | dismissed | obsolete (the alert cleared first)
    state: Mapped[str] = mapped_column(String(16), index=True)
    cmd_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    cmd_id: str
    ts: float
    actor: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class Suggestion:
    alert_id: str
    text: str
    alert_kind: str
    target: str
    district: str
    severity: str
    raised_at: float
    state: str
    cmd_id: str | None
    decided_by: str | None


def _to_command(r: CommandRow) -> Command:
    return Command(
        id=r.id,
        kind=r.kind,
        params=json.loads(r.params),
        target_type=r.target_type,
        target=r.target,
        district=r.district,
        issuer=r.issuer,
        role=r.role,
        created_at=r.created_at,
        expires_at=r.expires_at,
        confirmed=r.confirmed,
        source=r.source,
        note=r.note,
        state=r.state,
        detail=r.detail,
    )


_DELIVERY_FIELDS = tuple(Delivery.model_fields)


def _to_delivery(r: DeliveryRow) -> Delivery:
    return Delivery.model_validate({f: getattr(r, f) for f in _DELIVERY_FIELDS})


def _to_suggestion(r: SuggestionRow) -> Suggestion:
    return Suggestion(
        r.alert_id,
        r.text,
        r.alert_kind,
        r.target,
        r.district,
        r.severity,
        r.raised_at,
        r.state,
        r.cmd_id,
        r.decided_by,
    )


# Several processes (API, CLI, downlink) share the file: WAL lets readers run beside the
# writer, and a busy timeout makes a second writer wait instead of failing.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL")


def db_url(settings: Settings) -> str:
    """The configured store URL (default: SQLite under the state directory)."""
    return settings.commands.db_url or f"sqlite:///{settings.state_dir / 'commands.db'}"


class Store:
    """Commands, deliveries, suggestions and the audit trail in one database."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, timeout_s=10, pragmas=_SQLITE_PRAGMAS)
        Base.metadata.create_all(self.engine)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- commands ------------------------------------------------------------------------
    def add_command(self, cmd: Command, detail: str = "") -> None:
        """Insert a new command with its ``issued`` audit row."""
        with self._tx() as s:
            s.add(
                CommandRow(
                    id=cmd.id,
                    kind=cmd.kind,
                    params=json.dumps(cmd.params, sort_keys=True),
                    target_type=cmd.target_type,
                    target=cmd.target,
                    district=cmd.district,
                    issuer=cmd.issuer,
                    role=cmd.role,
                    created_at=cmd.created_at,
                    expires_at=cmd.expires_at,
                    confirmed=cmd.confirmed,
                    source=cmd.source,
                    note=cmd.note,
                    state=cmd.state,
                    detail=cmd.detail,
                )
            )
            s.add(
                AuditRow(
                    cmd_id=cmd.id,
                    ts=cmd.created_at,
                    actor=cmd.issuer,
                    action="issued",
                    detail=detail
                    or f"{cmd.kind} {json.dumps(cmd.params, sort_keys=True)} -> "
                    f"{cmd.target_type} {cmd.target} ({cmd.source})",
                )
            )

    def get(self, cmd_id: str) -> Command | None:
        with self._tx() as s:
            row = s.get(CommandRow, cmd_id)
            return _to_command(row) if row else None

    def list_commands(
        self,
        *,
        state: str | None = None,
        target: str | None = None,
        district: str | None = None,
        districts: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[Command]:
        """Newest first."""
        q = select(CommandRow).order_by(CommandRow.created_at.desc()).limit(limit)
        if state:
            q = q.where(CommandRow.state == state)
        if target:
            q = q.where(CommandRow.target == target)
        if district:
            q = q.where(CommandRow.district == district)
        if districts is not None:
            q = q.where(CommandRow.district.in_(list(districts)))
        with self._tx() as s:
            return [_to_command(r) for r in s.scalars(q)]

    def changed_since(
        self, since: float, districts: Sequence[str] | None = None, limit: int = 200
    ) -> list[Command]:
        """Commands with an audit entry at or after ``since`` (the live page's feed)."""
        ids = select(AuditRow.cmd_id).where(AuditRow.ts >= since).distinct()
        q = (
            select(CommandRow)
            .where(CommandRow.id.in_(ids))
            .order_by(CommandRow.created_at.desc())
            .limit(limit)
        )
        if districts is not None:
            q = q.where(CommandRow.district.in_(list(districts)))
        with self._tx() as s:
            return [_to_command(r) for r in s.scalars(q)]

    def count_since(self, target: str, since: float) -> int:
        """Commands issued to ``target`` at or after ``since`` (the rate limit's count)."""
        q = select(func.count()).where(CommandRow.target == target, CommandRow.created_at >= since)
        with self._tx() as s:
            return int(s.scalar(q) or 0)

    def set_state(self, cmd_id: str, state: str, detail: str = "", actor: str = "downlink") -> bool:
        """Move a command with no deliveries (e.g. expired before expansion); audited."""
        with self._tx() as s:
            row = s.get(CommandRow, cmd_id)
            if row is None or not can_move(row.state, state):
                return False
            row.state, row.detail = state, detail
            s.add(AuditRow(cmd_id=cmd_id, ts=time.time(), actor=actor, action=state, detail=detail))
            return True

    def audit_note(self, cmd_id: str, actor: str, action: str, detail: str = "") -> None:
        with self._tx() as s:
            s.add(
                AuditRow(cmd_id=cmd_id, ts=time.time(), actor=actor, action=action, detail=detail)
            )

    def audit(self, cmd_id: str) -> list[AuditEntry]:
        q = select(AuditRow).where(AuditRow.cmd_id == cmd_id).order_by(AuditRow.id)
        with self._tx() as s:
            return [AuditEntry(r.cmd_id, r.ts, r.actor, r.action, r.detail) for r in s.scalars(q)]

    # -- deliveries ----------------------------------------------------------------------
    def add_deliveries(self, cmd_id: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Insert the deliveries not stored yet (a replayed command adds nothing); returns
        every delivery of the command."""
        with self._tx() as s:
            have = {
                r.device_id: r
                for r in s.scalars(select(DeliveryRow).where(DeliveryRow.cmd_id == cmd_id))
            }
            for d in deliveries:
                if d.device_id not in have:
                    row = DeliveryRow(**d.model_dump())
                    s.add(row)
                    have[d.device_id] = row
            if deliveries and len(have) == len(deliveries):
                s.add(
                    AuditRow(
                        cmd_id=cmd_id,
                        ts=time.time(),
                        actor="downlink",
                        action="expanded",
                        detail=f"{len(deliveries)} device(s)",
                    )
                )
            return [_to_delivery(r) for r in have.values()]

    def deliveries(self, cmd_id: str) -> list[Delivery]:
        q = select(DeliveryRow).where(DeliveryRow.cmd_id == cmd_id).order_by(DeliveryRow.device_id)
        with self._tx() as s:
            return [_to_delivery(r) for r in s.scalars(q)]

    def open_deliveries(self) -> list[tuple[Command, Delivery]]:
        """Every delivery not yet applied/failed/expired, with its command (service restart)."""
        q = (
            select(CommandRow, DeliveryRow)
            .join(DeliveryRow, DeliveryRow.cmd_id == CommandRow.id)
            .where(DeliveryRow.state.in_(("queued", "sent", "acked")))
        )
        with self._tx() as s:
            return [(_to_command(c), _to_delivery(d)) for c, d in s.execute(q)]

    def save_delivery(self, d: Delivery, *, log: str | None = None) -> str:
        """Write a delivery's new state and recompute its command's; returns the command's
        state. ``log``: an audit detail for this delivery's transition."""
        return self.save_deliveries([(d, log)])[d.cmd_id]

    def save_deliveries(self, items: Sequence[tuple[Delivery, str | None]]) -> dict[str, str]:
        """``save_delivery`` for many in one transaction; returns cmd_id -> command state."""
        now = time.time()
        touched: dict[str, str] = {}
        with self._tx() as s:
            # One SELECT for all the rows of the commands involved, not one per delivery.
            rows = {
                (r.cmd_id, r.device_id): r
                for r in s.scalars(
                    select(DeliveryRow).where(DeliveryRow.cmd_id.in_({d.cmd_id for d, _ in items}))
                )
            }
            for d, log in items:
                row = rows.get((d.cmd_id, d.device_id))
                if row is None:
                    raise KeyError(f"no delivery {d.cmd_id}/{d.device_id}")
                old = row.state
                for f in _DELIVERY_FIELDS:
                    setattr(row, f, getattr(d, f))
                if log is not None or old != d.state:
                    s.add(
                        AuditRow(
                            cmd_id=d.cmd_id,
                            ts=now,
                            actor="downlink",
                            action=f"device_{d.state}",
                            detail=f"{d.device_id}: {log or d.detail}".rstrip(": "),
                        )
                    )
                if d.state in ("failed", "expired") or d.cmd_id not in touched:
                    touched[d.cmd_id] = d.detail
            s.flush()
            out: dict[str, str] = {}
            # One aggregate per command, not per delivery: a district-wide command moves
            # thousands of deliveries in one batch.
            for cmd_id, detail in touched.items():
                states = s.scalars(select(DeliveryRow.state).where(DeliveryRow.cmd_id == cmd_id))
                new = aggregate(states)
                cmd = s.get(CommandRow, cmd_id)
                assert cmd is not None
                if cmd.state != new:
                    cmd.state = new
                    cmd.detail = detail if new in ("failed", "expired") else ""
                    s.add(AuditRow(cmd_id=cmd_id, ts=now, actor="downlink", action=new, detail=""))
                out[cmd_id] = new
            return out

    # -- suggestions ---------------------------------------------------------------------
    def upsert_suggestion(self, sug: Suggestion) -> bool:
        """Record an alert's suggestion once (a replayed alert changes nothing); True if new."""
        with self._tx() as s:
            if s.get(SuggestionRow, sug.alert_id) is not None:
                return False
            s.add(
                SuggestionRow(
                    alert_id=sug.alert_id,
                    text=sug.text,
                    alert_kind=sug.alert_kind,
                    target=sug.target,
                    district=sug.district,
                    severity=sug.severity,
                    raised_at=sug.raised_at,
                    state=sug.state,
                    cmd_id=sug.cmd_id,
                    decided_by=sug.decided_by,
                )
            )
            return True

    def suggestion(self, alert_id: str) -> Suggestion | None:
        with self._tx() as s:
            row = s.get(SuggestionRow, alert_id)
            return _to_suggestion(row) if row else None

    def suggestions(
        self, *, state: str | None = "pending", districts: Sequence[str] | None = None
    ) -> list[Suggestion]:
        q = select(SuggestionRow).order_by(SuggestionRow.raised_at.desc()).limit(200)
        if state:
            q = q.where(SuggestionRow.state == state)
        if districts is not None:
            q = q.where(SuggestionRow.district.in_(list(districts)))
        with self._tx() as s:
            return [_to_suggestion(r) for r in s.scalars(q)]

    def decide_suggestion(
        self, alert_id: str, state: str, actor: str | None, cmd_id: str | None = None
    ) -> bool:
        """pending -> confirmed/dismissed/obsolete; False if it was already decided."""
        with self._tx() as s:
            row = s.get(SuggestionRow, alert_id)
            if row is None or row.state != "pending":
                return False
            row.state, row.decided_by, row.cmd_id = state, actor, cmd_id
            return True

    def reopen_suggestion(self, alert_id: str) -> None:
        """Back to pending (its command could not be sent)."""
        with self._tx() as s:
            row = s.get(SuggestionRow, alert_id)
            if row is not None and row.state == "confirmed" and row.cmd_id is None:
                row.state, row.decided_by = "pending", None

    def link_suggestion(self, alert_id: str, cmd_id: str) -> None:
        with self._tx() as s:
            row = s.get(SuggestionRow, alert_id)
            if row is not None:
                row.cmd_id = cmd_id
