"""Names -> detector classes. Adding a detector is one new module plus one line here.

Example:
    >>> from processors.detectors.registry import DETECTORS, create
    >>> "passthrough" in DETECTORS
    True
"""

from __future__ import annotations

from typing import Any

from processors.detectors.base import Detector, PassThrough
from processors.detectors.ewma import Ewma
from processors.detectors.robust_z import RobustZ
from processors.detectors.sentinel import Sentinel

DETECTORS: dict[str, type[Detector]] = {
    PassThrough.name: PassThrough,
    RobustZ.name: RobustZ,
    Ewma.name: Ewma,
    Sentinel.name: Sentinel,
}

DEFAULT_DETECTOR = "sentinel"


def create(name: str, **params: Any) -> Detector:
    """A fresh detector instance for one series."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise KeyError(f"unknown detector {name!r}; known: {known}") from None
    return cls(**params)
