"""Commands as data: what to do (kind + params), to whom (target), by whom, until when, and how far.

A command is addressed to one ``device``, a lamp ``circuit`` or ``cabinet``, or a whole
``district``; the downlink service expands it to one ``Delivery`` per device. Each delivery
moves ``queued → sent → acked → applied`` (the device's next reading shows the effect) or
ends ``failed`` / ``expired``; the command's state is the aggregate of its deliveries.

Kinds and their params (validated per kind):

- ``switch``: ``{"state": "on"|"off", "duration_s"?: int}`` (an override; without a duration
  it holds until the next scheduled switch)
- ``dim``: ``{"level_pct": 0..100, "duration_s"?: int}`` (0 = off, 100 = full)
- ``schedule``: ``{"on": T, "off": T, "dim_level_pct"?: 1..99, "dim_from"?: "HH:MM",
  "dim_to"?: "HH:MM"}`` with T a local ``"HH:MM"`` or ``"sunset"``/``"sunrise"`` with an
  optional offset in minutes (``"sunset+15"``, ``"sunrise-10"``)
- ``reboot``, ``ping``: no params

Example:
    >>> req = CommandRequest(kind="dim", target_type="circuit", target="c-1",
    ...                      params={"level_pct": 40})
    >>> req.params
    {'level_pct': 40}
    >>> effect_seen("switch", {"state": "on"}, {"power_state": "dim", "dimming_pct": 50})
    True
    >>> aggregate(["applied", "sent"]), aggregate(["applied", "failed"])
    ('sent', 'failed')
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Kind = Literal["switch", "dim", "schedule", "reboot", "ping"]
TargetType = Literal["device", "circuit", "cabinet", "district"]
State = Literal["queued", "sent", "acked", "applied", "failed", "expired"]

KINDS: Final[tuple[str, ...]] = get_args(Kind)
STATES: Final[tuple[str, ...]] = get_args(State)
TERMINAL: Final = frozenset({"applied", "failed", "expired"})
# sent -> sent is a resend. sent -> applied is not allowed: a lamp that already burned would
# "confirm" a switch-on it never received, so the device's ack is required first.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "queued": frozenset({"sent", "failed", "expired"}),
    "sent": frozenset({"sent", "acked", "failed", "expired"}),
    "acked": frozenset({"applied", "failed", "expired"}),
    "applied": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
}
# Families whose devices take commands (only lamp controllers have a downlink today).
COMMANDABLE_FAMILIES: Final = frozenset({"streetlight"})

_TIME_RE: Final = re.compile(r"^(?:(?:[01]\d|2[0-3]):[0-5]\d|(?:sunset|sunrise)(?:[+-]\d{1,3})?)$")
_HHMM_RE: Final = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


class CommandError(ValueError):
    """A command that cannot be accepted (bad params, unknown target...): say why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SwitchParams(_Strict):
    state: Literal["on", "off"]
    duration_s: int | None = Field(None, gt=0, le=7 * 86400)


class DimParams(_Strict):
    level_pct: int = Field(ge=0, le=100)
    duration_s: int | None = Field(None, gt=0, le=7 * 86400)


class ScheduleParams(_Strict):
    on: str
    off: str
    dim_level_pct: int | None = Field(None, ge=1, le=99)
    dim_from: str | None = None
    dim_to: str | None = None

    @field_validator("on", "off")
    @classmethod
    def _time(cls, v: str) -> str:
        if not _TIME_RE.match(v):
            raise ValueError("expected HH:MM, sunset, sunrise or e.g. sunset+15 (minutes)")
        return v

    @field_validator("dim_from", "dim_to")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not _HHMM_RE.match(v):
            raise ValueError("expected HH:MM")
        return v

    @model_validator(mode="after")
    def _dim_window(self) -> ScheduleParams:
        given = [self.dim_level_pct is not None, self.dim_from is not None, self.dim_to is not None]
        if any(given) and not all(given):
            raise ValueError("dim_level_pct, dim_from and dim_to go together")
        return self


class NoParams(_Strict):
    pass


PARAMS: Final[dict[str, type[BaseModel]]] = {
    "switch": SwitchParams,
    "dim": DimParams,
    "schedule": ScheduleParams,
    "reboot": NoParams,
    "ping": NoParams,
}


def validate_params(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The params of ``kind`` validated and normalised (None values dropped)."""
    model = PARAMS.get(kind)
    if model is None:
        raise CommandError(f"unknown command kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        return model.model_validate(dict(params)).model_dump(exclude_none=True)
    except ValidationError as exc:
        errs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise CommandError(f"bad params for {kind}: {errs}") from None


class CommandRequest(_Strict):
    """What an operator asks for (API body, CLI options, a confirmed alert suggestion)."""

    kind: Kind
    target_type: TargetType
    target: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    expires_in_s: float | None = Field(None, gt=0)
    # District-wide commands are refused unless the issuer confirms them explicitly.
    confirm: bool = False
    note: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _params(self) -> CommandRequest:
        try:
            self.params = validate_params(self.kind, self.params)
        except CommandError as exc:
            raise ValueError(str(exc)) from None
        return self


class Command(BaseModel):
    """An accepted command: the record on ``citywatch.commands`` and in the store."""

    id: str
    kind: Kind
    params: dict[str, Any]
    target_type: TargetType
    target: str
    district: str
    issuer: str
    role: str
    created_at: float  # epoch seconds
    expires_at: float
    confirmed: bool = False
    source: str = "api"  # api | cli | alert:<alert_id>
    note: str = ""
    state: State = "queued"
    detail: str = ""

    @property
    def key(self) -> bytes:
        """The Kafka key: the target, so one target's commands stay in order."""
        return self.target.encode()

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def can_move(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def aggregate(states: Iterable[str]) -> State:
    """A command's state from its deliveries' states.

    While any delivery is open the command is as far as its least advanced open one; once
    all are done it is ``applied`` only if all were, ``expired`` if all expired, else ``failed``.
    """
    seen = list(states)
    if not seen:
        return "queued"
    open_ = [s for s in seen if s not in TERMINAL]
    if open_:
        order: tuple[State, ...] = ("queued", "sent", "acked")
        return next(s for s in order if s in open_)
    if all(s == "applied" for s in seen):
        return "applied"
    if all(s == "expired" for s in seen):
        return "expired"
    return "failed"


def effect_seen(kind: str, params: Mapping[str, Any], reading: Mapping[str, Any]) -> bool | None:
    """Does a reading show the command's effect? None: this reading cannot tell.

    Only ``switch``, ``dim`` and ``reboot`` have a visible effect; ``schedule`` and ``ping``
    are applied when the device acknowledges them.
    """
    state = reading.get("power_state")
    if kind == "reboot":
        return True
    if state is None:
        return None
    if kind == "switch":
        return bool(state != "off") if params.get("state") == "on" else bool(state == "off")
    if kind == "dim":
        level = int(params.get("level_pct", 0))
        if level == 0:
            return bool(state == "off")
        if state == "off":
            return False
        pct = reading.get("dimming_pct")
        if pct is None:
            return None
        return abs(float(pct) - level) <= 1.0
    return None


def verified_on_ack(kind: str) -> bool:
    """Kinds whose acknowledgement is the whole effect (nothing to see in a reading)."""
    return kind in ("schedule", "ping")


class Delivery(BaseModel):
    """One device's share of a command. ``publisher_id``: the MQTT endpoint that carries it
    (a cabinet concentrator for the lamps behind it)."""

    cmd_id: str
    device_id: str
    publisher_id: str
    district: str
    family: str
    state: State = "queued"
    attempts: int = 0
    next_at: float = 0.0  # when to (re)send, epoch seconds
    sent_at: float | None = None
    acked_at: float | None = None
    done_at: float | None = None
    mismatches: int = 0
    detail: str = ""

    @property
    def down_topic(self) -> str:
        return f"city/{self.district}/{self.family}/{self.publisher_id}/down"
