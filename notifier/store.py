"""Work orders, their transitions, pending notifications and crew tokens (SQLAlchemy 2).

SQLite by default (``<state_dir>/notifier.db``), PostgreSQL by URL. Every method is a short
synchronous transaction: async callers wrap them in ``asyncio.to_thread``.

- One *open* work order per (target, kind): ``open_key`` is ``"target|kind"`` while the order
  is open or acknowledged and NULL afterwards; a UNIQUE index on it (NULLs never collide on
  SQLite or PostgreSQL) makes a second open order for the same fault impossible.
- ``alert_events`` remembers every applied alert event (id|state|ts), so a replay after a
  crash (offsets not yet committed) changes nothing and queues no second notification.
- ``deliveries`` holds one row per (notification, channel, recipient) with its idempotency
  key; the row is written in the same transaction as the work order change, and sent later.

Example:
    >>> st = Store("sqlite://")
    >>> st.create_schema()
    >>> tok = st.create_token("crew-north", "crew", ["north"])
    >>> st.principal_for_token(tok).name
    'crew-north'
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from citywatch.settings import Settings
from citywatch.sqldb import make_engine

# Re-exported ("as"): the tables lived here before notifier.tables, and importers still
# take them from notifier.store.
from notifier.tables import AlertEventRow as AlertEventRow
from notifier.tables import Base as Base
from notifier.tables import CrewToken as CrewToken
from notifier.tables import Delivery as Delivery
from notifier.tables import Transition as Transition
from notifier.tables import WorkOrder as WorkOrder

STATUSES = ("open", "acknowledged", "resolved", "closed")
ACTIVE = ("open", "acknowledged")
SYSTEM = "system"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    districts: frozenset[str]


@dataclass(frozen=True)
class PlannedDelivery:
    """A notification the service decided to send; the store adds keys and rows."""

    event: str
    channel: str
    recipient: str
    crew_id: str


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """A transition that the order's current status does not allow."""


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast unsalted hash is enough: nothing to
    # brute-force, and the hash can be looked up directly by an index. A leaked table does
    # not reveal usable tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def open_key(target: str, kind: str) -> str:
    return f"{target}|{kind}"


def idempotency_key(scope: str, event: str, channel: str, recipient: str) -> str:
    """Stable across replays and restarts; receivers dedupe on it (see docs/notifier.md)."""
    digest = hashlib.sha256(f"{scope}|{event}|{channel}|{recipient}".encode()).hexdigest()
    return f"cw-{digest[:32]}"


# WAL lets the API read while the notifier writes (two processes on one file); FULL: a
# committed work order survives power loss too, since offsets follow it.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON")


class Store:
    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url, timeout_s=30, pragmas=_SQLITE_PRAGMAS)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # -- tokens ----------------------------------------------------------------------
    def create_token(self, name: str, role: str, districts: Sequence[str] = ()) -> str:
        if role not in ("crew", "supervisor"):
            raise ValueError(f"role must be crew or supervisor, not {role!r}")
        token = secrets.token_urlsafe(32)
        with self.tx() as s:
            s.add(
                CrewToken(
                    token_hash=hash_token(token),
                    name=name,
                    role=role,
                    districts=json.dumps(sorted(districts)),
                    created_at=time.time(),
                )
            )
        return token

    def revoke_tokens(self, name: str) -> int:
        with self.tx() as s:
            res = s.execute(update(CrewToken).where(CrewToken.name == name).values(revoked=True))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def principal_for_token(self, token: str) -> TokenInfo | None:
        with self.tx() as s:
            row = s.scalar(
                select(CrewToken).where(
                    CrewToken.token_hash == hash_token(token), CrewToken.revoked.is_(False)
                )
            )
            if row is None:
                return None
            return TokenInfo(row.name, row.role, frozenset(json.loads(row.districts)))

    # -- queries ---------------------------------------------------------------------
    def list_orders(
        self,
        *,
        crew_id: str | None = None,
        statuses: Sequence[str] | None = None,
        district: str | None = None,
        family: str | None = None,
        severity: str | None = None,
        updated_since: float | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        q = select(WorkOrder)
        if crew_id is not None:
            q = q.where(WorkOrder.crew_id == crew_id)
        if statuses:
            q = q.where(WorkOrder.status.in_(list(statuses)))
        if district:
            q = q.where(WorkOrder.district == district)
        if family:
            q = q.where(WorkOrder.family == family)
        if severity:
            q = q.where(WorkOrder.severity == severity)
        if updated_since is not None:
            q = q.where(WorkOrder.updated_at >= updated_since)
        q = q.order_by(WorkOrder.updated_at.desc()).limit(limit)
        with self.tx() as s:
            return [o.as_dict() for o in s.scalars(q)]

    def get_order(self, order_id: int) -> dict[str, Any]:
        with self.tx() as s:
            o = s.get(WorkOrder, order_id)
            if o is None:
                raise NotFound(f"work order {order_id} not found")
            return o.as_dict()

    def transitions(self, order_id: int) -> list[dict[str, Any]]:
        with self.tx() as s:
            rows = s.scalars(
                select(Transition)
                .where(Transition.work_order_id == order_id)
                .order_by(Transition.id)
            )
            return [
                {"from": t.from_status, "to": t.to_status, "at": t.at, "by": t.by, "note": t.note}
                for t in rows
            ]

    def deliveries(self, order_id: int | None = None) -> list[dict[str, Any]]:
        q = select(Delivery).order_by(Delivery.id)
        if order_id is not None:
            q = q.where(Delivery.work_order_id == order_id)
        with self.tx() as s:
            return [
                {c.name: getattr(d, c.name) for c in Delivery.__table__.columns}
                for d in s.scalars(q)
            ]

    # -- transitions -----------------------------------------------------------------
    def _move(
        self, s: Session, o: WorkOrder, to: str, by: str, note: str | None, now: float
    ) -> None:
        s.add(
            Transition(
                work_order_id=o.id, from_status=o.status, to_status=to, at=now, by=by, note=note
            )
        )
        o.status = to
        o.updated_at = now
        if to == "acknowledged":
            o.acked_at, o.acked_by = now, by
        elif to == "resolved":
            o.resolved_at, o.resolved_by, o.resolution_note = now, by, note
            o.open_key = None  # a new fault of this kind now opens a new order
        elif to == "closed":
            o.closed_at, o.closed_by = now, by
            o.open_key = None

    def transition(
        self,
        order_id: int,
        to: str,
        by: str,
        note: str | None = None,
        *,
        crew_id: str | None = None,
    ) -> dict[str, Any]:
        """Move an order (ack/resolve/close); ``crew_id`` restricts it to that crew's orders.

        Raises NotFound, PermissionError (another crew's order) or Conflict.
        """
        allowed = {"acknowledged": ("open",), "resolved": ACTIVE, "closed": ("resolved",)}
        if to not in allowed:
            raise Conflict(f"cannot move an order to {to!r}")
        now = time.time()
        with self.tx() as s:
            o = s.get(WorkOrder, order_id, with_for_update=True)
            if o is None:
                raise NotFound(f"work order {order_id} not found")
            if crew_id is not None and o.crew_id != crew_id:
                raise PermissionError(f"work order {order_id} belongs to {o.crew_id}")
            if o.status == to:
                return o.as_dict()  # repeated click: idempotent
            if o.status not in allowed[to]:
                raise Conflict(f"work order {order_id} is {o.status}; cannot become {to}")
            self._move(s, o, to, by, note, now)
            return o.as_dict()

    # -- alert events ----------------------------------------------------------------
    def apply_event(
        self,
        ev: dict[str, Any],
        crew_id: str,
        plan: Any,
        now: float | None = None,
    ) -> tuple[str, int | None]:
        """Apply one alert event in one transaction; returns (outcome, work order id).

        ``plan(order_dict, event_name) -> list[PlannedDelivery]`` says who hears about it.
        Outcomes: duplicate, opened, updated, escalated, resolved, closed, ignored.
        """
        return self.apply_events([(ev, crew_id)], plan, now)[0]

    def apply_events(
        self,
        events: Sequence[tuple[dict[str, Any], str]],
        plan: Any,
        now: float | None = None,
    ) -> list[tuple[str, int | None]]:
        """Apply a batch of (event, crew) in ONE transaction (one fsync per Kafka batch)."""
        now = time.time() if now is None else now
        out: list[tuple[str, int | None]] = []
        with self.tx() as s:
            for ev, crew_id in events:
                out.append(self._apply_one(s, ev, crew_id, plan, now))
                s.flush()
        return out

    def _apply_one(
        self, s: Session, ev: dict[str, Any], crew_id: str, plan: Any, now: float
    ) -> tuple[str, int | None]:
        ev_key = f"{ev['alert_id']}|{ev['state']}|{ev['ts']}"
        if s.get(AlertEventRow, ev_key) is not None:
            return "duplicate", None
        outcome, o = self._apply(s, ev, crew_id, now)
        s.add(AlertEventRow(key=ev_key, work_order_id=o.id if o else None, applied_at=now))
        if o is not None and outcome in ("opened", "escalated", "resolved"):
            event_name = {"resolved": "auto_resolved"}.get(outcome, outcome)
            for p in plan(o.as_dict(), event_name):
                self._add_delivery(s, o, ev_key, p, now)
        return outcome, (o.id if o else None)

    def _apply(
        self, s: Session, ev: dict[str, Any], crew_id: str, now: float
    ) -> tuple[str, WorkOrder | None]:
        key = open_key(ev["target"], ev["kind"])
        o = s.scalar(select(WorkOrder).where(WorkOrder.open_key == key))
        state = ev["state"]
        if state == "cleared":
            if o is not None:
                self._move(s, o, "resolved", SYSTEM, "alert cleared", now)
                return "resolved", o
            # A crew resolved it already: the clear confirms the repair.
            done = s.scalar(
                select(WorkOrder)
                .where(WorkOrder.alert_id == ev["alert_id"], WorkOrder.status == "resolved")
                .order_by(WorkOrder.id.desc())
            )
            if done is not None:
                self._move(s, done, "closed", SYSTEM, "alert cleared", now)
                return "closed", done
            return "ignored", None
        if o is None:
            o = WorkOrder(
                open_key=key,
                alert_id=ev["alert_id"],
                target=ev["target"],
                target_type=ev.get("target_type", "device"),
                kind=ev["kind"],
                family=ev.get("family", ""),
                district=ev.get("district", ""),
                severity=ev.get("severity", "warning"),
                crew_id=crew_id,
                status="open",
                message=ev.get("message", ""),
                suggested_command=ev.get("suggested_command"),
                repeats=0,
                escalation_level=0,
                first_event_ts=ev["ts"],
                last_event_ts=ev["ts"],
                created_at=now,
                updated_at=now,
            )
            s.add(o)
            s.flush()
            s.add(
                Transition(
                    work_order_id=o.id,
                    from_status=None,
                    to_status="open",
                    at=now,
                    by=SYSTEM,
                    note=f"alert {ev['alert_id']} {state}",
                )
            )
            return "opened", o
        # A repeat (same fault again, or the same alert escalated): update, do not re-notify
        # unless the severity went up.
        from processors.alerts import SEVERITIES

        sev = ev.get("severity", o.severity)
        rank = SEVERITIES.index
        raised = sev in SEVERITIES and o.severity in SEVERITIES and rank(sev) > rank(o.severity)
        o.repeats += 1
        o.alert_id = ev["alert_id"]
        o.message = ev.get("message", o.message)
        o.last_event_ts = max(o.last_event_ts, ev["ts"])
        o.updated_at = now
        if raised:
            o.severity = sev
            return "escalated", o
        return "updated", o

    def _add_delivery(
        self, s: Session, o: WorkOrder, scope: str, p: PlannedDelivery, now: float
    ) -> None:
        key = idempotency_key(scope, p.event, p.channel, p.recipient)
        if s.scalar(select(Delivery.id).where(Delivery.idempotency_key == key)) is not None:
            return
        s.add(
            Delivery(
                idempotency_key=key,
                work_order_id=o.id,
                event=p.event,
                channel=p.channel,
                recipient=p.recipient,
                crew_id=p.crew_id,
                payload={"event": p.event, "order": o.as_dict()},
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    # -- escalation ------------------------------------------------------------------
    def overdue(
        self, ack_s: dict[str, float], resolve_s: dict[str, float], now: float
    ) -> list[tuple[int, int]]:
        """(order id, level) for orders past an SLA: level 1 = not acked, 2 = not resolved."""
        out: list[tuple[int, int]] = []
        with self.tx() as s:
            rows = s.execute(
                select(
                    WorkOrder.id,
                    WorkOrder.status,
                    WorkOrder.severity,
                    WorkOrder.created_at,
                    WorkOrder.escalation_level,
                ).where(WorkOrder.status.in_(ACTIVE), WorkOrder.escalation_level < 2)
            ).all()
        for oid, status, sev, created, level in rows:
            age = now - created
            if sev in resolve_s and age >= resolve_s[sev]:
                out.append((oid, 2))
            elif level < 1 and status == "open" and sev in ack_s and age >= ack_s[sev]:
                out.append((oid, 1))
        return out

    def escalate(self, order_id: int, level: int, plan: Any, now: float | None = None) -> bool:
        """Raise an order's escalation level and queue the supervisor notifications."""
        now = time.time() if now is None else now
        with self.tx() as s:
            o = s.get(WorkOrder, order_id, with_for_update=True)
            if o is None or o.escalation_level >= level or o.status not in ACTIVE:
                return False
            o.escalation_level = level
            o.updated_at = now
            event_name = "sla_ack" if level == 1 else "sla_resolve"
            s.add(
                Transition(
                    work_order_id=o.id,
                    from_status=o.status,
                    to_status=o.status,
                    at=now,
                    by=SYSTEM,
                    note=f"escalated: {event_name}",
                )
            )
            for p in plan(o.as_dict(), event_name):
                self._add_delivery(s, o, f"wo{o.id}", p, now)
            return True

    # -- deliveries ------------------------------------------------------------------
    def due_deliveries(self, now: float, not_before: float, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries whose retry time has come, created before ``not_before``."""
        with self.tx() as s:
            rows = s.scalars(
                select(Delivery)
                .where(
                    Delivery.state == "pending",
                    Delivery.next_attempt_at <= now,
                    Delivery.created_at <= not_before,
                )
                .order_by(Delivery.id)
                .limit(limit)
            )
            return [{c.name: getattr(d, c.name) for c in Delivery.__table__.columns} for d in rows]

    def mark_sent(self, delivery_id: int, now: float | None = None) -> None:
        with self.tx() as s:
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(
                    state="sent",
                    sent_at=time.time() if now is None else now,
                    attempts=Delivery.attempts + 1,
                    last_error=None,
                )
            )

    def mark_failed(self, delivery_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at`` None gives up (state failed)."""
        with self.tx() as s:
            values: dict[str, Any] = {"attempts": Delivery.attempts + 1, "last_error": error[:2000]}
            if retry_at is None:
                values["state"] = "failed"
            else:
                values["next_attempt_at"] = retry_at
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))

    def crew_status(self, crew_id: str) -> dict[str, int]:
        with self.tx() as s:
            rows = s.execute(
                select(WorkOrder.status, func.count())
                .where(WorkOrder.crew_id == crew_id, WorkOrder.status.in_(ACTIVE))
                .group_by(WorkOrder.status)
            ).all()
        counts = {st: 0 for st in ACTIVE}
        counts.update({st: int(n) for st, n in rows})
        return counts

    def orders_between(self, since: float) -> list[dict[str, Any]]:
        """Orders created since ``since`` or still active (for KPIs)."""
        with self.tx() as s:
            q = select(WorkOrder).where(
                or_(WorkOrder.created_at >= since, WorkOrder.status.in_(ACTIVE))
            )
            return [o.as_dict() for o in s.scalars(q)]


def db_url(settings: Settings) -> str:
    return settings.notifier.db_url or f"sqlite:///{settings.state_dir / 'notifier.db'}"


def open_store(settings: Settings) -> Store:
    """The configured store with its schema created (idempotent)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    st = Store(db_url(settings))
    st.create_schema()
    return st
