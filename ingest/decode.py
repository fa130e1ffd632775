"""The gateway's single entry point: MQTT topic + payload bytes -> readings and rejects.

``decode_message`` checks the topic (``city/{district}/{family}/{device_id}/up``) and size,
picks a decoder by a cheap sniff (``ingest.decoders.registry``), lets the topic fill
``device_id``/``family``/``district`` where the payload leaves them out and refuses items
that claim another device, family or district, stamps ``received_at`` and validates each
item with ``ingest.readings``. Good items become readings, each bad one a ``Reject``; no
exception escapes, whatever the bytes.

Reject reasons (stable, machine-readable): ``bad_topic``, ``payload_too_large``,
``empty_payload``, ``unknown_format``, ``bad_json``, ``bad_envelope``, ``bad_item``,
``empty_batch``, ``no_decoded_payload``, ``bad_ts``, ``senml``, ``truncated``,
``bad_version``, ``bad_frame``, ``crc``, ``device_mismatch``, ``family_mismatch``,
``district_mismatch``, ``unknown_device`` (only with an ``allow_device`` check, see
citywatch.security.devices.DevicePolicy), ``validation`` and, should a decoder have a bug,
``internal``.

Example:
    >>> from datetime import datetime, timezone
    >>> now = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    >>> res = decode_message("city/north/bin/bin-0042/up",
    ...                      b'[{"ts": 1714564800, "fill_ratio": 0.5}, {"fill_ratio": 7}]', now)
    >>> [r.fill_ratio for r in res.readings], [(j.reason, j.index) for j in res.rejects]
    ([0.5], [('validation', 1)])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from ingest.decoders.base import DecodeError, Decoder, RawReading, TopicInfo, parse_topic
from ingest.decoders.registry import pick_decoder
from ingest.readings import FAMILIES, Reading, ValidationPolicy, validate_reading

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "DecodeResult", "Reject", "decode_message"]

DEFAULT_MAX_PAYLOAD_BYTES: Final = 65536
_MAX_DETAIL: Final = 300
_MAX_ERRORS_SHOWN: Final = 3


@dataclass(frozen=True, slots=True)
class Reject:
    """Why (part of) a message was refused.

    ``index`` is the item's position in a batch, ``None`` when the whole message failed.
    """

    reason: str
    detail: str
    index: int | None = None


@dataclass(slots=True)
class DecodeResult:
    """Readings and rejects of one message; ``decoder`` names the format that was used."""

    readings: list[Reading] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    decoder: str | None = None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for err in errors[:_MAX_ERRORS_SHOWN]:
        loc = err["loc"]
        # The discriminated union prefixes every location with the family tag.
        if loc and loc[0] in FAMILIES:
            loc = loc[1:]
        where = ".".join(str(p) for p in loc)
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    if len(errors) > _MAX_ERRORS_SHOWN:
        parts.append(f"(+{len(errors) - _MAX_ERRORS_SHOWN} more)")
    return _clip("; ".join(parts))


def _claims(item: RawReading, topic: TopicInfo, decoder: Decoder) -> Reject | None:
    """Fill identity from the topic; a reject when the item speaks for someone else."""
    device = item.setdefault("device_id", topic.device_id)
    if device is None:
        device = item["device_id"] = topic.device_id
    if device != topic.device_id and not (
        decoder.speaks_for_children
        and isinstance(device, str)
        and device.startswith(topic.device_id + "-")
    ):
        return Reject("device_mismatch", _clip(f"payload device {device!r} on {topic.topic}"))
    for key, reason in (("family", "family_mismatch"), ("district", "district_mismatch")):
        expected = getattr(topic, key)
        value = item.setdefault(key, expected)
        if value is None:
            item[key] = expected
        elif value != expected:
            return Reject(reason, _clip(f"payload {key} {value!r} on {topic.topic}"))
    return None


def _decode(
    topic: object,
    payload: object,
    received_at: datetime,
    max_payload_bytes: int,
    policy: ValidationPolicy | None,
    allow_device: Callable[[str], bool] | None = None,
) -> DecodeResult:
    result = DecodeResult()
    if not isinstance(payload, bytes):
        if not isinstance(payload, bytearray | memoryview):
            raise TypeError(f"payload is a {type(payload).__name__}, not bytes")
        payload = bytes(payload)
    if len(payload) > max_payload_bytes:
        result.rejects.append(
            Reject("payload_too_large", f"{len(payload)} bytes > {max_payload_bytes}")
        )
        return result
    info = parse_topic(topic) if isinstance(topic, str) else None
    if info is None:
        result.rejects.append(
            Reject("bad_topic", _clip(f"not city/{{district}}/{{family}}/{{device}}/up: {topic!r}"))
        )
        return result
    if not payload:
        result.rejects.append(Reject("empty_payload", "zero-length payload"))
        return result
    # The topic's device is the one the broker authenticated (ACL: %u in the topic); a
    # cabinet's child lamps are covered by their cabinet.
    if allow_device is not None and not allow_device(info.device_id):
        result.rejects.append(
            Reject("unknown_device", f"device {info.device_id!r} is not registered")
        )
        return result
    decoder = pick_decoder(info.topic, payload)
    if decoder is None:
        result.rejects.append(
            Reject("unknown_format", f"no decoder claims a payload starting {payload[:8]!r}")
        )
        return result
    result.decoder = decoder.name
    try:
        items = decoder.decode(info, payload, received_at)
    except DecodeError as exc:
        result.rejects.append(Reject(exc.reason, _clip(exc.detail)))
        return result
    for i, item in enumerate(items):
        if isinstance(item, DecodeError):
            result.rejects.append(Reject(item.reason, _clip(item.detail), i))
            continue
        claim = _claims(item, info, decoder)
        if claim is not None:
            result.rejects.append(Reject(claim.reason, claim.detail, i))
            continue
        # Gateway-owned fields: whatever a device put there is replaced.
        item["received_at"] = received_at
        item.pop("late", None)
        try:
            result.readings.append(validate_reading(item, policy=policy))
        except ValidationError as invalid:
            result.rejects.append(Reject("validation", _validation_detail(invalid), i))
    return result


def decode_message(
    topic: object,
    payload: object,
    received_at: datetime,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    policy: ValidationPolicy | None = None,
    allow_device: Callable[[str], bool] | None = None,
) -> DecodeResult:
    """Decode and validate one MQTT uplink; never raises (see the module docstring).

    ``topic`` and ``payload`` are typed ``object`` on purpose: whatever arrives (a str topic
    and a bytes-like payload, or not) becomes readings or rejects, compiled or not
    (citywatch.native checks declared argument types at the call).

    ``allow_device`` (e.g. ``DevicePolicy(settings).allows``) refuses unregistered devices.
    """
    try:
        return _decode(topic, payload, received_at, max_payload_bytes, policy, allow_device)
    except Exception as exc:  # the gateway must never die on input: report, don't raise
        return DecodeResult(
            rejects=[Reject("internal", _clip(f"{type(exc).__name__}: {exc}"))],
        )
