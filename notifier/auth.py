"""Bearer-token authentication for the crew API (and the command endpoints next to it).

Tokens are created with ``citywatch orders token <name> --role crew|supervisor`` and stored
only as SHA-256 hashes (see ``store.hash_token`` for why a plain hash suffices for random
256-bit tokens). The app keeps its ``Store`` in ``app.state.store``.

Example:
    >>> from fastapi import Depends, FastAPI
    >>> app = FastAPI()
    >>> @app.get("/whoami")
    ... async def whoami(p: Principal = Depends(current_principal)) -> dict[str, str]:
    ...     return {"name": p.name, "role": p.role}
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from notifier.store import Store

_bearer = HTTPBearer(auto_error=False, description="crew or supervisor token")


@dataclass(frozen=True)
class Principal:
    name: str  # crew id or supervisor name
    role: Literal["crew", "supervisor"]
    districts: frozenset[str]  # districts a crew may act on; empty = all (supervisors)

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    def may_act_in(self, district: str) -> bool:
        return not self.districts or district in self.districts


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Principal:
    """FastAPI dependency: the caller behind the bearer token; 401 on a bad or missing one."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise _unauthorized("missing bearer token")
    store = cast(Store, request.app.state.store)
    info = await asyncio.to_thread(store.principal_for_token, creds.credentials)
    if info is None:
        raise _unauthorized("invalid or revoked token")
    role: Literal["crew", "supervisor"] = "supervisor" if info.role == "supervisor" else "crew"
    return Principal(info.name, role, frozenset() if role == "supervisor" else info.districts)


def require_supervisor(p: Principal = Depends(current_principal)) -> Principal:
    """FastAPI dependency: like current_principal, but 403 unless the caller is a supervisor."""
    if p.role != "supervisor":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "supervisors only")
    return p
