"""NAB (Numenta Anomaly Benchmark) scoring, written from the NAB paper and documentation.

A detector's per-row anomaly scores become detections at a threshold. Each labelled anomaly
window rewards its *earliest* detection with a scaled sigmoid of the detection's relative
position (1.0 at the window's left edge, ~0 at its right edge) and costs ``-A_FN`` when it
has no detection. Detections outside windows cost ``A_FP`` times a sigmoid of their distance
after the preceding window (mild right after a window, a full ``-A_FP`` far from one or before
the first window). The first 15 % of each series (at most 750 rows) is a probationary period
that is neither rewarded nor penalised. One threshold per application profile is chosen to
maximise the summed raw score over all files, and that score is normalised so the null
detector (never detects) scores 0 and a perfect detector (one detection at every window's
start) scores 100.

Example:
    >>> import numpy as np
    >>> series = LabelledSeries("s", np.zeros(1000), [(600, 699)])
    >>> hit = series.scores.copy()
    >>> hit[600] = 1.0
    >>> res = score_corpus([LabelledSeries("s", hit, [(600, 699)])])
    >>> round(res["standard"].normalised, 6)
    100.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_PERCENT = 0.15
#: The probationary period is capped at 15 % of 5000 rows = 750 rows.
PROBATION_CAP_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """Cost weights of one NAB application profile (``tn`` is counted, never weighted)."""

    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """One file's anomaly scores and its label windows as inclusive row-index pairs."""

    name: str
    scores: FloatArray
    windows: Sequence[tuple[int, int]] = ()


@dataclass(slots=True)
class FileResult:
    """One file at the chosen threshold: raw score and the detection counts behind it."""

    name: str
    raw: float
    windows: int
    detected_windows: int
    false_positives: int


@dataclass(slots=True)
class ProfileResult:
    """Corpus score for one profile at its optimised threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalised: float
    files: list[FileResult] = field(default_factory=list)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a series that are not scored."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS))


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """``2·σ(-5·x) − 1`` (in (−1, 1), 0 at x = 0), clamped to −1 beyond x = 3."""
    out = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, out)


_MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


def row_weights(
    n_rows: int, windows: Sequence[tuple[int, int]], profile: Profile
) -> tuple[FloatArray, IntArray]:
    """The score each row would earn if it were a detection, and its window id (−1 = none).

    Inside window ``[l, r]`` (width ``w = r − l + 1``) row ``i`` sits at relative position
    ``−(r − i + 1)/w`` (−1 at the left edge), and earns ``A_TP·sig(pos)/sig(−1)``. After a
    window a row sits at ``(i − r)/(w − 1)`` and costs ``A_FP·sig(pos)`` (negative); before
    the first window a row costs ``−A_FP``.
    """
    weights = np.full(n_rows, -profile.fp, dtype=np.float64)
    window_id = np.full(n_rows, -1, dtype=np.int64)
    idx = np.arange(n_rows, dtype=np.float64)
    ordered = sorted(windows)
    for k, (left, right) in enumerate(ordered):
        width = right - left + 1
        inside = slice(left, right + 1)
        pos = -(right - idx[inside] + 1.0) / width
        weights[inside] = scaled_sigmoid(pos) * profile.tp / _MAX_TP
        window_id[inside] = k
        stop = ordered[k + 1][0] if k + 1 < len(ordered) else n_rows
        after = slice(right + 1, stop)
        # A one-row window would divide by zero; treat its tail like a two-row window's.
        pos_after = (idx[after] - right) / max(width - 1, 1)
        weights[after] = scaled_sigmoid(pos_after) * profile.fp
    return weights, window_id


def _contributions(series: LabelledSeries, profile: Profile) -> tuple[FloatArray, FloatArray, int]:
    """Per scored row: (anomaly score, score increment when it becomes a detection), windows.

    A false-positive row adds its own weight. Inside a window only the earliest detection
    counts; ranking the window's rows by descending anomaly score, a row's increment is how
    much it raises the running best weight (starting from the ``−A_FN`` of a missed window).
    Summing increments over all rows with score ≥ t then gives the raw score at threshold t.
    """
    n = len(series.scores)
    weights, window_id = row_weights(n, series.windows, profile)
    start = probation_length(n)
    scores = np.asarray(series.scores, dtype=np.float64)[start:]
    weights = weights[start:]
    window_id = window_id[start:]
    incr = np.where(window_id < 0, weights, 0.0)
    n_windows = 0
    for k in np.unique(window_id[window_id >= 0]):
        rows = np.flatnonzero(window_id == k)
        # Stable sort with ties broken by position: equal scores are all detected together, so
        # only the increments summed over a whole tie group matter.
        order = rows[np.argsort(-scores[rows], kind="stable")]
        best = np.maximum.accumulate(weights[order])
        incr[order] = np.diff(best, prepend=-profile.fn)
        n_windows += 1
    return scores, incr, n_windows


def threshold_curve(
    corpus: Iterable[LabelledSeries], profile: Profile
) -> tuple[FloatArray, FloatArray, float]:
    """Raw corpus score at every candidate threshold (descending), and the no-detection score.

    A row is a detection when its anomaly score is ≥ the threshold.
    """
    parts = [_contributions(s, profile) for s in corpus]
    if not parts:
        return np.empty(0), np.empty(0), 0.0
    scores = np.concatenate([p[0] for p in parts])
    incr = np.concatenate([p[1] for p in parts])
    base = -profile.fn * sum(p[2] for p in parts)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    total = base + np.cumsum(incr[order])
    # The score at threshold t includes every row with score ≥ t: the end of each tie group.
    last_of_group = np.flatnonzero(np.append(np.diff(sorted_scores) != 0, True))
    return sorted_scores[last_of_group], total[last_of_group], base


def best_threshold(corpus: Sequence[LabelledSeries], profile: Profile) -> tuple[float, float]:
    """The threshold maximising the summed raw score, and that score.

    "No detections" is represented by ``math.inf``; the highest threshold wins ties.
    """
    thresholds, totals, base = threshold_curve(corpus, profile)
    if len(totals) == 0 or totals.max() <= base:
        return math.inf, base
    i = int(np.argmax(totals))
    return float(thresholds[i]), float(totals[i])


def row_contributions(series: LabelledSeries, profile: Profile, threshold: float) -> FloatArray:
    """Per-row score at ``threshold``, laid out like NAB's ``S(t)_<profile>`` result columns.

    A detected false positive carries its own weight; a window's whole score (its earliest
    detection's weight, or ``−A_FN`` when missed) sits on the window's first scored row;
    every other row, and the probationary period, is 0. The sum is the file's raw score.
    """
    n = len(series.scores)
    weights, window_id = row_weights(n, series.windows, profile)
    start = probation_length(n)
    out = np.zeros(n, dtype=np.float64)
    detected = np.asarray(series.scores, dtype=np.float64) >= threshold
    detected[:start] = False
    window_id[:start] = -2
    fp_rows = detected & (window_id == -1)
    out[fp_rows] = weights[fp_rows]
    for k in np.unique(window_id[window_id >= 0]):
        rows = np.flatnonzero(window_id == k)
        hits = rows[detected[rows]]
        out[rows[0]] = weights[hits].max() if len(hits) else -profile.fn
    return out


def score_file(series: LabelledSeries, profile: Profile, threshold: float) -> FileResult:
    """Raw score of one file when every row with score ≥ ``threshold`` is a detection."""
    contrib = row_contributions(series, profile, threshold)
    n = len(series.scores)
    _, window_id = row_weights(n, series.windows, profile)
    start = probation_length(n)
    detected = np.asarray(series.scores, dtype=np.float64)[start:] >= threshold
    window_id = window_id[start:]
    scored_windows = np.unique(window_id[window_id >= 0])
    hits = sum(1 for k in scored_windows if detected[window_id == k].any())
    false_positives = int((detected & (window_id < 0)).sum())
    return FileResult(series.name, float(contrib.sum()), len(scored_windows), hits, false_positives)


def score_corpus(
    corpus: Sequence[LabelledSeries],
    profiles: Mapping[str, Profile] = PROFILES,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, ProfileResult]:
    """Normalised NAB score per profile, optimising the threshold unless one is given."""
    results: dict[str, ProfileResult] = {}
    n_label_windows = sum(len(s.windows) for s in corpus)
    null_corpus = [LabelledSeries(s.name, np.zeros(len(s.scores)), s.windows) for s in corpus]
    for name, profile in profiles.items():
        if thresholds is not None and name in thresholds:
            threshold = thresholds[name]
        else:
            threshold, _ = best_threshold(corpus, profile)
        files = [score_file(s, profile, threshold) for s in corpus]
        raw = sum(f.raw for f in files)
        _, null = best_threshold(null_corpus, profile)
        perfect = n_label_windows * profile.tp
        denom = perfect - null
        normalised = 100.0 * (raw - null) / denom if denom else 0.0
        results[name] = ProfileResult(name, threshold, raw, null, perfect, normalised, files)
    return results


def parse_timestamp(text: str) -> np.datetime64:
    """NAB timestamps (``2014-04-10 07:15:00[.000000]``) as numpy datetimes."""
    return np.datetime64(datetime.fromisoformat(text.strip()), "us")


def load_windows(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """NAB's ``combined_windows.json``: relative data path -> list of [start, end] strings."""
    raw = json.loads(Path(path).read_text())
    return {str(k): [(str(a), str(b)) for a, b in v] for k, v in raw.items()}


def window_rows(
    timestamps: npt.NDArray[np.datetime64], windows: Iterable[tuple[str, str]]
) -> list[tuple[int, int]]:
    """Label windows as inclusive row ranges: first row ≥ start to last row ≤ end."""
    rows: list[tuple[int, int]] = []
    for start, end in windows:
        left = int(np.searchsorted(timestamps, parse_timestamp(start), side="left"))
        right = int(np.searchsorted(timestamps, parse_timestamp(end), side="right")) - 1
        if left <= right:
            rows.append((left, right))
    return rows
