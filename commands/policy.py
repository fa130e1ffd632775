"""Who may command what: role and district, confirmation for district-wide, a rate limit per target.

Rules, checked in this order (the first that fails decides):

1. a crew may command only devices, circuits and cabinets of its own districts (403);
2. district-wide commands are for supervisors (403; ``commands.crews_district_wide`` lets
   crews do it in their own district) and need ``confirm=true`` from the issuer (428);
3. at most ``rate_limit_count`` commands per target in any ``rate_limit_window_s`` (429),
   whoever issues them, so a stuck script cannot hammer a circuit.

Example:
    >>> from citywatch.settings import CommandSettings
    >>> crew = Issuer("crew-north", "crew", frozenset({"north"}))
    >>> check(CommandSettings(), crew, "circuit", "central", confirm=False, recent=0)
    Traceback (most recent call last):
    ...
    commands.policy.Forbidden: crew-north may not command district central
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from citywatch.settings import CommandSettings


class PrincipalLike(Protocol):
    """What the API's principal (notifier.auth.Principal) and the CLI's issuer share."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def districts(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Issuer:
    name: str
    role: str  # "crew" | "supervisor"
    districts: frozenset[str]  # empty: every district (supervisors)


class Refused(Exception):
    """A command the policy does not allow; ``status`` is the HTTP status to answer with."""

    status = 400


class Forbidden(Refused):
    status = 403


class ConfirmationRequired(Refused):
    status = 428  # Precondition Required: resend with confirm=true


class RateLimited(Refused):
    status = 429


def may_act_in(p: PrincipalLike, district: str) -> bool:
    if p.role == "supervisor":
        return True
    return p.role == "crew" and district in p.districts


def check(
    cfg: CommandSettings,
    p: PrincipalLike,
    target_type: str,
    district: str,
    *,
    confirm: bool,
    recent: int,
) -> None:
    """Raise ``Refused`` unless ``p`` may send this command now; ``recent``: commands to the
    same target within the rate-limit window."""
    if p.role not in ("crew", "supervisor"):
        raise Forbidden(f"role {p.role!r} may not send commands")
    if not may_act_in(p, district):
        raise Forbidden(f"{p.name} may not command district {district}")
    if target_type == "district":
        if p.role != "supervisor" and not cfg.crews_district_wide:
            raise Forbidden("district-wide commands are for supervisors")
        if not confirm:
            raise ConfirmationRequired(
                f"a district-wide command reaches every lamp of {district}: "
                "resend with confirm=true"
            )
    if recent >= cfg.rate_limit_count:
        raise RateLimited(
            f"rate limit: {recent} commands to this target in the last "
            f"{cfg.rate_limit_window_s:g} s (max {cfg.rate_limit_count})"
        )
