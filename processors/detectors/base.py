"""The detector interface: one small, synchronous, I/O-free object per (device, metric) series.

A detector sees a series one point at a time and answers an anomaly score in [0, 1]
(0 = normal, 1 = surely anomalous) *before* learning from the point, so a score never uses
the point it judges (no look-ahead). Thresholding and alert policy live elsewhere
(processors.alerts); a detector only scores.

The shape follows river (``score_one`` / ``learn_one``) and NAB (``handleRecord`` -> score);
``update`` does both in one call and is what hot paths use.

Example:
    >>> from processors.detectors.registry import create
    >>> det = create("passthrough")
    >>> det.update(0.0, 1.5)
    0.0
"""

from __future__ import annotations

import binascii
import sys
from abc import ABC, abstractmethod
from array import array
from typing import Any, ClassVar

from mypy_extensions import mypyc_attr


# Subclassed by code that stays interpreted (plug-in rules and detectors, tests).
@mypyc_attr(allow_interpreted_subclasses=True)
class Detector(ABC):
    """Online anomaly detector for one series; subclasses keep their state small (<= 2 KiB)."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: Slots holding immutable objects shared by many instances (parameters): not per-series
    #: state, so ``state_bytes`` skips them.
    _shared_slots: ClassVar[tuple[str, ...]] = ()
    # Empty slots here let subclasses that declare __slots__ go without a per-instance __dict__.
    __slots__ = ()

    @abstractmethod
    def score_one(self, ts: float, value: float) -> float:
        """Score ``value`` at ``ts`` (epoch seconds) against what was learnt so far."""

    @abstractmethod
    def learn_one(self, ts: float, value: float) -> None:
        """Fold the point into the state."""

    def update(self, ts: float, value: float) -> float:
        """Score then learn; subclasses may fuse the two for speed."""
        score = self.score_one(ts, value)
        self.learn_one(ts, value)
        return score

    def get_state(self) -> list[Any] | None:
        """What this series has learnt, as JSON-ready values, for a checkpoint (parameters
        are not included: they come from the configuration); None if not supported."""
        return None

    def set_state(self, state: list[Any]) -> None:
        """Take back what ``get_state`` gave, into a fresh detector with the same parameters.

        Raises ValueError or TypeError when the state does not fit; the detector is then
        unusable and should be replaced by a fresh one.
        """
        raise ValueError(f"detector {self.name!r} keeps no checkpoints")


#: Readings beyond this magnitude are treated like NaN: not scored, not learnt. No physical
#: sensor reads 1e15, and keeping values below it keeps float32 storage and squares finite.
MAX_ABS_VALUE = 1e15


def usable(value: float) -> bool:
    """Whether a reading can be scored and learnt (finite and below ``MAX_ABS_VALUE``).

    Example:
        >>> usable(21.5), usable(float("nan")), usable(1e300)
        (True, False, False)
    """
    return -MAX_ABS_VALUE < value < MAX_ABS_VALUE


def pack_array(values: array[Any] | bytearray) -> str:
    """An array's machine bytes as base64 text, for checkpoints (NaN and float32 kept exact).

    Example:
        >>> unpack_array("f", pack_array(array("f", [1.5, 2.0])), 2).tolist()
        [1.5, 2.0]
    """
    return binascii.b2a_base64(values, newline=False).decode("ascii")


def unpack_array(typecode: str, text: object, most: int) -> array[Any]:
    """The array ``pack_array`` wrote; ValueError if it is not one or holds over ``most`` items."""
    if not isinstance(text, str):
        raise TypeError("an array must be base64 text")
    out: array[Any] = array(typecode)
    out.frombytes(binascii.a2b_base64(text, strict_mode=True))
    if len(out) > most:
        raise ValueError(f"{len(out)} values where at most {most} fit")
    return out


def state_number(value: object) -> float:
    """A checkpoint's number (JSON null stands for NaN, which JSON cannot hold)."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a number expected, got {type(value).__name__}")
    return float(value)


def state_count(value: object, most: int) -> int:
    """A checkpoint's count in 0..``most``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"a count in 0..{most} expected, got {value!r}")
    return value


def state_bytes(obj: object) -> int:
    """Bytes of memory an object holds: itself plus everything it references, each counted once.

    Follows ``__slots__`` (or a compiled class's attributes), ``__dict__`` and containers;
    class attributes, small ints (-5..256, cached by CPython) and the slots a class lists in
    ``_shared_slots`` are shared by every instance and not counted. This is how the per-series
    state budget (2 KiB) is measured.

    Example:
        >>> state_bytes(PassThrough()) <= 64
        True
    """
    seen: set[int] = set()

    def walk(o: object) -> int:
        if o is None or isinstance(o, bool | type) or id(o) in seen:
            return 0
        if type(o) is int and -5 <= o <= 256:
            return 0  # CPython's shared small ints, like None: no instance owns one
        seen.add(id(o))
        size = sys.getsizeof(o)
        if isinstance(o, list | tuple | set | frozenset):
            size += sum(walk(x) for x in o)
        elif isinstance(o, dict):
            size += sum(walk(k) + walk(v) for k, v in o.items())
        shared = getattr(type(o), "_shared_slots", ())
        for name in getattr(type(o), "__mypyc_attrs__", ()):
            # A compiled (citywatch.native) object holds its attributes itself, numbers
            # unboxed: getsizeof counted those; follow the references.
            if name in shared or name == "__dict__":
                continue
            value = getattr(o, name, None)
            if type(value) not in (int, float):
                size += walk(value)
        for cls in type(o).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot in shared or slot in ("__dict__", "__weakref__"):
                    continue
                if hasattr(o, slot):
                    size += walk(getattr(o, slot))
        if hasattr(o, "__dict__"):
            size += walk(vars(o))
        return size

    return walk(obj)


class PassThrough(Detector):
    """Scores everything 0: the baseline for detector speed benchmarks.

    Example:
        >>> PassThrough().update(0.0, 42.0)
        0.0
    """

    name = "passthrough"
    description = "scores every point 0 (speed baseline)"
    __slots__ = ()

    def score_one(self, ts: float, value: float) -> float:
        return 0.0

    def learn_one(self, ts: float, value: float) -> None:
        return None

    def update(self, ts: float, value: float) -> float:
        return 0.0

    def get_state(self) -> list[Any] | None:
        return []

    def set_state(self, state: list[Any]) -> None:
        if state:
            raise ValueError("a pass-through detector has no state")
