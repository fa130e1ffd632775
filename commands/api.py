"""HTTP endpoints for device commands, next to the work-order API (``notifier.api``).

Mounted at ``/commands`` by ``install(app)`` (one line in ``notifier.api.create_app``), with
the same bearer tokens (``notifier.auth.current_principal``):

- ``POST /commands`` — send: ``{"kind", "target_type", "target", "params", "expires_in_s"?,
  "confirm"?, "note"?}`` → 201 with the command; 403 (a crew outside its districts, or
  district-wide by a crew), 428 (district-wide without ``confirm: true``), 429 (rate limit),
  404 (unknown target), 422 (bad params), 503 (Kafka down: stored as failed);
- ``GET /commands`` (``state``, ``target``, ``district``, ``limit``), ``GET /commands/{id}``
  with its deliveries and audit trail (a crew sees its own districts only);
- ``GET /commands/suggestions``, ``POST /commands/suggestions/{alert_id}/confirm``
  (``{"confirm_district": bool}``) and ``/dismiss`` — an alert's suggested command runs only
  when a person confirms it.

The live page gets ``command`` events (a command whose state changed) via
``app.state.live_sources``; ``GET /commands/live.js`` is the page's command panel.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> app.state.live_sources = []
    >>> install(app)
    >>> sorted(app.openapi()["paths"])[:2]
    ['/commands', '/commands/suggestions']
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from citywatch.settings import Settings, get_settings
from commands.model import STATES, Command, CommandError, CommandRequest, Delivery
from commands.policy import PrincipalLike, Refused, may_act_in
from commands.service import KafkaUnavailable, Submitter
from commands.store import Store, Suggestion, db_url
from commands.targets import UnknownTarget
from notifier.auth import Principal, current_principal


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = cast(Settings, getattr(app.state, "settings", None) or get_settings())
    store = await asyncio.to_thread(Store, db_url(settings))
    app.state.command_store = store
    app.state.command_submitter = Submitter(settings, store)
    try:
        yield
    finally:
        await app.state.command_submitter.close()
        store.close()


router = APIRouter(tags=["commands"], lifespan=_lifespan)


class AuditOut(BaseModel):
    ts: float
    actor: str
    action: str
    detail: str


class CommandDetail(Command):
    deliveries: list[Delivery]
    audit: list[AuditOut]


class ConfirmIn(BaseModel):
    confirm_district: bool = False


def _store(request: Request) -> Store:
    return cast(Store, request.app.state.command_store)


def _submitter(request: Request) -> Submitter:
    return cast(Submitter, request.app.state.command_submitter)


def _districts(p: PrincipalLike) -> list[str] | None:
    return None if p.role == "supervisor" else sorted(p.districts)


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, Refused):
        return HTTPException(exc.status, str(exc))
    if isinstance(exc, UnknownTarget):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, KafkaUnavailable):
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Command)
async def send_command(
    body: CommandRequest, request: Request, p: Principal = Depends(current_principal)
) -> Command:
    try:
        return await _submitter(request).submit(p, body, source="api")
    except (Refused, CommandError) as exc:
        raise _http(exc) from exc


@router.get("", response_model=list[Command])
async def list_commands(
    request: Request,
    p: Principal = Depends(current_principal),
    state: str | None = None,
    target: str | None = None,
    district: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> list[Command]:
    if state is not None and state not in STATES:
        raise HTTPException(422, f"unknown state {state!r}; one of {list(STATES)}")
    return await asyncio.to_thread(
        _store(request).list_commands,
        state=state,
        target=target,
        district=district,
        districts=_districts(p),
        limit=limit,
    )


# The store's frozen dataclass is the response model: FastAPI serialises dataclasses.
@router.get("/suggestions", response_model=list[Suggestion])
async def list_suggestions(
    request: Request,
    p: Principal = Depends(current_principal),
    state: str | None = Query("pending"),
) -> list[Any]:
    return await asyncio.to_thread(
        _store(request).suggestions, state=state, districts=_districts(p)
    )


@router.post(
    "/suggestions/{alert_id}/confirm",
    status_code=status.HTTP_201_CREATED,
    response_model=Command,
)
async def confirm_suggestion(
    alert_id: str,
    request: Request,
    body: ConfirmIn | None = None,
    p: Principal = Depends(current_principal),
) -> Command:
    try:
        return await _submitter(request).confirm_suggestion(
            p, alert_id, confirm_district=bool(body and body.confirm_district)
        )
    except (Refused, CommandError) as exc:
        raise _http(exc) from exc


@router.post("/suggestions/{alert_id}/dismiss", response_model=Suggestion)
async def dismiss_suggestion(
    alert_id: str, request: Request, p: Principal = Depends(current_principal)
) -> Any:
    st = _store(request)
    sug = await asyncio.to_thread(st.suggestion, alert_id)
    if sug is None:
        raise HTTPException(404, f"no suggested command for alert {alert_id}")
    if not may_act_in(p, sug.district):
        raise HTTPException(403, f"{p.name} may not act in district {sug.district}")
    if not await asyncio.to_thread(st.decide_suggestion, alert_id, "dismissed", p.name):
        raise HTTPException(409, f"the suggestion of alert {alert_id} is already {sug.state}")
    return await asyncio.to_thread(st.suggestion, alert_id)


@router.get("/live.js", include_in_schema=False)
async def live_js() -> FileResponse:
    """The live page's command panel (include with ``<script src="/commands/live.js">``)."""
    return FileResponse(
        Path(__file__).parent / "live" / "commands.js", media_type="text/javascript"
    )


@router.get("/{cmd_id}", response_model=CommandDetail)
async def show_command(
    cmd_id: str, request: Request, p: Principal = Depends(current_principal)
) -> CommandDetail:
    st = _store(request)
    cmd = await asyncio.to_thread(st.get, cmd_id)
    if cmd is None:
        raise HTTPException(404, f"no command {cmd_id}")
    if not may_act_in(p, cmd.district):
        raise HTTPException(403, f"command {cmd_id} is in district {cmd.district}")
    deliveries = await asyncio.to_thread(st.deliveries, cmd_id)
    audit = await asyncio.to_thread(st.audit, cmd_id)
    return CommandDetail(
        **cmd.model_dump(),
        deliveries=deliveries,
        audit=[AuditOut(ts=a.ts, actor=a.actor, action=a.action, detail=a.detail) for a in audit],
    )


def install(app: FastAPI) -> None:
    """Mount the router at ``/commands`` and feed ``command`` events to the live page."""
    app.include_router(router, prefix="/commands")

    async def live(p: Principal, since: float) -> list[tuple[str, Any]]:
        store = getattr(app.state, "command_store", None)
        if store is None:
            return []
        changed = await asyncio.to_thread(store.changed_since, since, _districts(p))
        return [("command", c.model_dump()) for c in changed]

    sources = getattr(app.state, "live_sources", None)
    if sources is not None:
        sources.append(live)
