"""Alert events from ``citywatch.alerts`` (see processors/alerts.py ``AlertEvent``): parsing.

A record that is not a valid alert event raises ``BadEvent`` with the reason; the service
logs it with its topic/partition/offset and moves on (the record stays in Kafka, nothing
is lost, the notifier never crashes on bad input).

Example:
    >>> ev = parse(b'{"alert_id": "a1", "kind": "lamp_out", "target": "l-1", '
    ...            b'"target_type": "device", "family": "streetlight", "district": "north", '
    ...            b'"severity": "major", "state": "raised", "episode_start": 5, "ts": 5, '
    ...            b'"message": "dark"}')
    >>> ev["state"], ev["suggested_command"]
    ('raised', None)
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class BadEvent(ValueError):
    pass


class AlertEventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alert_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=200)
    target_type: str = "device"
    family: str = ""
    district: str = ""
    severity: Literal["info", "warning", "major", "critical"] = "warning"
    state: Literal["raised", "escalated", "cleared"]
    episode_start: int = 0
    ts: int
    message: str = ""
    value: float | None = None
    suggested_command: str | None = None


def parse(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise BadEvent("empty record")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadEvent("not a JSON object")
    try:
        return AlertEventIn.model_validate(doc).model_dump()
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadEvent(errs) from exc
