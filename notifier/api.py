"""The crew API and live operations page (FastAPI): work orders for crews and supervisors.

- ``GET /api/orders`` lists the caller's orders (a crew: its own; a supervisor: all),
  filterable by status, district, family, severity.
- ``POST /api/orders/{id}/ack`` and ``/resolve`` (with a note) move an order; a crew may only
  touch its own orders (403), supervisors any; ``/close`` is for supervisors.
- ``GET /api/stream`` is a server-sent event stream of order changes for the live page
  (``GET /``); the OpenAPI schema is at ``/openapi.json``, docs at ``/docs``.

Example:
    >>> from citywatch.settings import Settings
    >>> app = create_app(Settings())  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8090)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from citywatch.settings import Settings
from notifier.auth import Principal, current_principal, require_supervisor
from notifier.store import ACTIVE, STATUSES, Conflict, NotFound, Store, open_store

log = logging.getLogger(__name__)
LIVE_DIR = Path(__file__).parent / "live"

# Live-page hook: other parts (e.g. commands/) may append async sources here, each
# ``source(principal, since) -> list[(event_name, data)]``; the stream polls them with the
# orders and the page dispatches the events to handlers registered with
# ``citywatchLive.on(event_name, fn)`` (see live/app.js).
LiveSource = Callable[[Principal, float], Awaitable[list[tuple[str, Any]]]]


class WorkOrderOut(BaseModel):
    id: int
    alert_id: str
    target: str
    target_type: str
    kind: str
    family: str
    district: str
    severity: str
    crew_id: str
    status: str
    message: str
    suggested_command: str | None
    repeats: int
    escalation_level: int
    first_event_ts: int
    last_event_ts: int
    created_at: float
    updated_at: float
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    resolution_note: str | None
    closed_at: float | None
    closed_by: str | None


class TransitionOut(BaseModel):
    from_: str | None = Field(alias="from")
    to: str
    at: float
    by: str
    note: str | None


class WorkOrderDetail(WorkOrderOut):
    transitions: list[TransitionOut]


class ResolveIn(BaseModel):
    note: str = Field("", max_length=4000)


class MeOut(BaseModel):
    name: str
    role: str
    districts: list[str]


def _store(request: Request) -> Store:
    return cast(Store, request.app.state.store)


async def _order_for(store: Store, order_id: int, p: Principal) -> dict[str, Any]:
    try:
        o = await asyncio.to_thread(store.get_order, order_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if not p.is_supervisor and o["crew_id"] != p.name:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this order belongs to another crew")
    return o


async def _move(
    store: Store, order_id: int, to: str, p: Principal, note: str | None
) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(
            store.transition,
            order_id,
            to,
            p.name,
            note,
            crew_id=None if p.is_supervisor else p.name,
        )
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except PermissionError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """The crew API + live page; opens the configured store unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = (
            store if store is not None else await asyncio.to_thread(open_store, settings)
        )
        try:
            yield
        finally:
            if own:
                app.state.store.close()

    app = FastAPI(
        title="citywatch work orders",
        version="1",
        description="Work orders for maintenance crews, raised from citywatch alerts.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.live_sources = []  # list[LiveSource]; see the hook note above
    poll_s = settings.notifier.live_poll_s

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me", response_model=MeOut)
    async def me(p: Principal = Depends(current_principal)) -> MeOut:
        return MeOut(name=p.name, role=p.role, districts=sorted(p.districts))

    @app.get("/api/orders", response_model=list[WorkOrderOut])
    async def list_orders(
        request: Request,
        p: Principal = Depends(current_principal),
        status_: list[str] = Query(list(ACTIVE), alias="status"),
        district: str | None = None,
        family: str | None = None,
        severity: str | None = None,
        limit: int = Query(500, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """My open orders (crew) or everyone's (supervisor); ``status`` may repeat."""
        bad = [s for s in status_ if s not in STATUSES]
        if bad:
            raise HTTPException(422, f"unknown status {bad}; one of {list(STATUSES)}")
        return await asyncio.to_thread(
            _store(request).list_orders,
            crew_id=None if p.is_supervisor else p.name,
            statuses=status_,
            district=district,
            family=family,
            severity=severity,
            limit=limit,
        )

    @app.get("/api/orders/{order_id}", response_model=WorkOrderDetail)
    async def get_order(
        order_id: int, request: Request, p: Principal = Depends(current_principal)
    ) -> dict[str, Any]:
        st = _store(request)
        o = await _order_for(st, order_id, p)
        o["transitions"] = await asyncio.to_thread(st.transitions, order_id)
        return o

    @app.post("/api/orders/{order_id}/ack", response_model=WorkOrderOut)
    async def ack(
        order_id: int, request: Request, p: Principal = Depends(current_principal)
    ) -> dict[str, Any]:
        return await _move(_store(request), order_id, "acknowledged", p, None)

    @app.post("/api/orders/{order_id}/resolve", response_model=WorkOrderOut)
    async def resolve(
        order_id: int,
        request: Request,
        body: ResolveIn | None = None,
        p: Principal = Depends(current_principal),
    ) -> dict[str, Any]:
        note = body.note if body else ""
        return await _move(_store(request), order_id, "resolved", p, note or None)

    @app.post("/api/orders/{order_id}/close", response_model=WorkOrderOut)
    async def close(
        order_id: int, request: Request, p: Principal = Depends(require_supervisor)
    ) -> dict[str, Any]:
        return await _move(_store(request), order_id, "closed", p, None)

    @app.get("/api/stream", response_class=EventSourceResponse)
    async def stream(
        request: Request, p: Principal = Depends(current_principal)
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: ``snapshot`` (active orders), then ``order`` on every change."""
        st = _store(request)
        crew = None if p.is_supervisor else p.name
        since = time.time()
        snap = await asyncio.to_thread(st.list_orders, crew_id=crew, statuses=ACTIVE)
        yield ServerSentEvent(event="snapshot", data=snap)
        seen: dict[int, float] = {o["id"]: o["updated_at"] for o in snap}
        last_ping = time.monotonic()
        while not await request.is_disconnected():
            await asyncio.sleep(poll_s)
            # Overlap the window: another process may commit a row stamped a little earlier.
            window = since - 5.0
            since = time.time()
            changed = await asyncio.to_thread(st.list_orders, crew_id=crew, updated_since=window)
            for o in reversed(changed):
                if seen.get(o["id"]) != o["updated_at"]:
                    seen[o["id"]] = o["updated_at"]
                    yield ServerSentEvent(event="order", data=o)
            for source in app.state.live_sources:
                for name, data in await source(p, window):
                    yield ServerSentEvent(event=name, data=data)
            if time.monotonic() - last_ping > 15:
                last_ping = time.monotonic()
                yield ServerSentEvent(comment="ping")

    # (issue #12 adds its router here: app.include_router(commands.api.router, prefix=...))
    from commands.api import install as install_commands  # /commands (device commands)

    install_commands(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(LIVE_DIR / "index.html")

    app.mount("/live", StaticFiles(directory=LIVE_DIR), name="live")
    return app
