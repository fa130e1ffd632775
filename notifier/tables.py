"""The notifier's SQLAlchemy tables: work orders, their transitions, applied alert events,
deliveries and crew tokens.

``work_orders.open_key`` (``"target|kind"`` while open or acknowledged, NULL afterwards) is
UNIQUE, so one fault never holds two open orders; ``alert_events`` keys every applied alert
event (id|state|ts) for replay safety; ``deliveries`` holds one row per (notification,
channel, recipient) with its idempotency key. ``notifier.store.Store`` reads and writes them.

Example:
    >>> from sqlalchemy import create_engine, inspect
    >>> engine = create_engine("sqlite://")
    >>> Base.metadata.create_all(engine)
    >>> sorted(inspect(engine).get_table_names())
    ['alert_events', 'crew_tokens', 'deliveries', 'transitions', 'work_orders']
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class WorkOrder(Base):
    __tablename__ = "work_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(300), unique=True, nullable=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200))
    target_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(32))
    district: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    crew_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    suggested_command: Mapped[str | None] = mapped_column(String(64), nullable=True)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    first_event_ts: Mapped[int] = mapped_column(BigInteger)  # alert time, ns
    last_event_ts: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)  # wall time, s
    updated_at: Mapped[float] = mapped_column(Float, index=True)
    acked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolution_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        cols = self.__table__.columns
        return {c.name: getattr(self, c.name) for c in cols if c.name != "open_key"}


class Transition(Base):
    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertEventRow(Base):
    __tablename__ = "alert_events"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    work_order_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    applied_at: Mapped[float] = mapped_column(Float)


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(300))
    crew_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CrewToken(Base):
    __tablename__ = "crew_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    districts: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(default=False)
