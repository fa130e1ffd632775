"""Replay CSV series through a detector, write NAB-format results and score them.

Inputs are ``timestamp,value`` CSVs (one file or a directory tree of them). Each result file
``<output>/<same relative folder>/<detector>_<file name>`` has the columns
``timestamp,value,anomaly_score`` — the layout of NAB's ``results/`` tree — so the scores can
be compared with published NAB results.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = (tmp / "in.csv").write_text("timestamp,value\\n2024-01-01 00:00:00,1\\n")
    >>> [r.output.name for r in backtest_paths("passthrough", tmp / "in.csv", tmp / "out")]
    ['passthrough_in.csv']
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from processors.backtest.nab_scoring import (
    FloatArray,
    LabelledSeries,
    ProfileResult,
    parse_timestamp,
    score_corpus,
    window_rows,
)
from processors.detectors.base import Detector
from processors.detectors.registry import create

DetectorFactory = Callable[[], Detector]


@dataclass(frozen=True, slots=True)
class Series:
    """A ``timestamp,value`` CSV: the timestamps as written, as epoch seconds, and the values."""

    timestamps: list[str]
    epoch: FloatArray
    values: FloatArray


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One replayed input: its path relative to the input root, the output file, the scores."""

    relative: Path
    output: Path
    series: Series
    scores: FloatArray


def _epoch(text: str) -> float:
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        # NAB timestamps are naive; read them as UTC so replay never depends on the host zone.
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV (extra columns are ignored)."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    epoch = np.fromiter((_epoch(s) for s in stamps), dtype=np.float64, count=len(stamps))
    return Series(stamps, epoch, np.asarray(values, dtype=np.float64))


def find_inputs(root: Path) -> list[Path]:
    """CSV files under ``root`` (or ``root`` itself), relative to it, in a stable order."""
    if root.is_file():
        return [Path(root.name)]
    return sorted(p.relative_to(root) for p in root.rglob("*.csv") if p.is_file())


def run_detector(detector: Detector, epoch: Iterable[float], values: Iterable[float]) -> FloatArray:
    """Score a whole series with one fresh detector; scores are clamped into [0, 1]."""
    update = detector.update
    out = [update(t, v) for t, v in zip(epoch, values, strict=True)]
    scores = np.asarray(out, dtype=np.float64)
    # A detector bug must not turn into an out-of-range or NaN result file.
    return np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)


def result_path(output: Path, relative: Path, detector: str) -> Path:
    """NAB's results layout: ``<output>/<folder>/<detector>_<file>``."""
    return output / relative.parent / f"{detector}_{relative.name}"


def write_result(path: Path, series: Series, scores: FloatArray) -> None:
    """Write ``timestamp,value,anomaly_score``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for stamp, value, score in zip(series.timestamps, series.values, scores, strict=True):
            writer.writerow([stamp, repr(float(value)), f"{score:.9g}"])


def backtest_paths(
    detector: str,
    input_path: Path,
    output: Path | None,
    params: Mapping[str, Any] | None = None,
    on_file: Callable[[Path, int], None] | None = None,
) -> list[BacktestResult]:
    """Replay every input through a fresh ``detector`` and write results under ``output``.

    ``on_file(relative, n_rows)`` is called after each file (for progress reporting);
    ``output=None`` skips writing.
    """
    root = input_path
    results: list[BacktestResult] = []
    for rel in find_inputs(root):
        src = root if root.is_file() else root / rel
        series = read_series(src)
        scores = run_detector(create(detector, **dict(params or {})), series.epoch, series.values)
        out = result_path(output, rel, detector) if output is not None else Path()
        if output is not None:
            write_result(out, series, scores)
        results.append(BacktestResult(rel, out, series, scores))
        if on_file is not None:
            on_file(rel, len(scores))
    return results


def match_label_key(relative: Path, keys: Iterable[str]) -> str | None:
    """The labels-file key for an input: the exact relative path or a unique suffix match."""
    rel = relative.as_posix()
    keys = list(keys)
    if rel in keys:
        return rel
    hits = [k for k in keys if k.endswith("/" + rel) or rel.endswith("/" + k)]
    return hits[0] if len(hits) == 1 else None


def labelled(
    results: Sequence[BacktestResult], windows: Mapping[str, Sequence[tuple[str, str]]]
) -> list[LabelledSeries]:
    """Attach label windows to backtest results; inputs missing from the labels are an error."""
    corpus: list[LabelledSeries] = []
    for res in results:
        key = match_label_key(res.relative, windows)
        if key is None:
            raise KeyError(f"{res.relative} is not in the labels file")
        stamps = np.array([parse_timestamp(s) for s in res.series.timestamps])
        corpus.append(LabelledSeries(key, res.scores, window_rows(stamps, windows[key])))
    return corpus


def score_results(
    results: Sequence[BacktestResult], windows: Mapping[str, Sequence[tuple[str, str]]]
) -> dict[str, ProfileResult]:
    """Normalised NAB score per profile over all results."""
    return score_corpus(labelled(results, windows))


def points_per_second(factory: DetectorFactory, n: int = 50_000, seed: int = 7) -> float:
    """Single-core throughput of ``factory()`` on a noisy daily-seasonal synthetic series."""
    import time

    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) * 300.0
    v = 10.0 + 3.0 * np.sin(2 * math.pi * t / 86_400.0) + rng.normal(0.0, 0.5, n)
    ts, vs = t.tolist(), v.tolist()
    det = factory()
    update = det.update
    start = time.perf_counter()
    for a, b in zip(ts, vs, strict=True):
        update(a, b)
    return n / (time.perf_counter() - start)
