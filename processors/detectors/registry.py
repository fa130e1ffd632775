"""Names -> detector classes. Adding a detector is one new module plus one line here.

Example:
    >>> from processors.detectors.registry import DETECTORS, create
    >>> "passthrough" in DETECTORS
    True
"""

from __future__ import annotations

from typing import Any

from processors.detectors.base import Detector, PassThrough

DETECTORS: dict[str, type[Detector]] = {
    PassThrough.name: PassThrough,
}

DEFAULT_DETECTOR = "passthrough"


def create(name: str, **params: Any) -> Detector:
    """A fresh detector instance for one series."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise KeyError(f"unknown detector {name!r}; known: {known}") from None
    return cls(**params)
