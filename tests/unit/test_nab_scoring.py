"""NAB scorer: hand-computed cases and the windowed-Gaussian reference results.

The scaled sigmoid ``2·σ(−5x) − 1`` equals ``tanh(−5x/2)``, which the expected values below use.
Every hand case is a 1000-row series: the probationary period is ``min(floor(0.15·1000), 750)
= 150`` rows, and the one window is rows 600..699 (width 100).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from processors.backtest.nab_scoring import (
    PROFILES,
    LabelledSeries,
    best_threshold,
    load_windows,
    parse_timestamp,
    probation_length,
    row_contributions,
    score_corpus,
    score_file,
    window_rows,
)

N = 1000
WINDOW = (600, 699)
STANDARD = PROFILES["standard"]
LOW_FP = PROFILES["reward_low_FP_rate"]
LOW_FN = PROFILES["reward_low_FN_rate"]
MAX_TP = math.tanh(2.5)  # scaled sigmoid at the left edge, position −1

NAB = Path("/work/shared/data/nab")
REFERENCE = NAB / "reference_results" / "windowedGaussian"


def detections(*rows: int) -> np.ndarray:
    scores = np.zeros(N)
    scores[list(rows)] = 1.0
    return scores


def raw(scores: np.ndarray, windows: list[tuple[int, int]], profile=STANDARD) -> float:
    return score_file(LabelledSeries("s", scores, windows), profile, 1.0).raw


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert probation_length(1000) == 150
    assert probation_length(1127) == 169
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_detection_at_window_start_scores_a_full_tp() -> None:
    # Position −(699 − 600 + 1)/100 = −1 → weight tanh(2.5)/tanh(2.5) = 1.
    assert raw(detections(600), [WINDOW]) == pytest.approx(1.0)
    result = score_corpus([LabelledSeries("s", detections(600), [WINDOW])])
    # null = −1 (window missed), perfect = +1, so a start-of-window hit normalises to 100.
    assert result["standard"].null == pytest.approx(-1.0)
    assert result["standard"].perfect == pytest.approx(1.0)
    assert result["standard"].normalised == pytest.approx(100.0)


def test_detection_at_window_end_scores_almost_nothing() -> None:
    # Position −1/100 → tanh(5·0.01/2) / tanh(2.5) ≈ 0.0253.
    expected = math.tanh(0.025) / MAX_TP
    assert raw(detections(699), [WINDOW]) == pytest.approx(expected)
    normalised = score_corpus([LabelledSeries("s", detections(699), [WINDOW])])
    assert normalised["standard"].normalised == pytest.approx(100 * (expected + 1) / 2)


def test_detection_in_the_middle_of_the_window() -> None:
    # Row 650: position −(699 − 650 + 1)/100 = −0.5 → tanh(1.25)/tanh(2.5).
    assert raw(detections(650), [WINDOW]) == pytest.approx(math.tanh(1.25) / MAX_TP)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert raw(detections(600, 650, 690), [WINDOW]) == pytest.approx(1.0)
    assert raw(detections(650, 690), [WINDOW]) == pytest.approx(math.tanh(1.25) / MAX_TP)


def test_fp_far_from_any_window_costs_a_full_fp_weight() -> None:
    # Row 200 precedes the first window: −A_FP, and the missed window costs −A_FN.
    assert raw(detections(200), [WINDOW]) == pytest.approx(-0.11 - 1.0)
    assert raw(detections(200), [WINDOW], LOW_FP) == pytest.approx(-0.22 - 1.0)
    assert raw(detections(200), [WINDOW], LOW_FN) == pytest.approx(-0.11 - 2.0)
    # Row 999 is (999 − 699)/99 ≈ 3.03 window-widths after the window: beyond 3 → −A_FP.
    assert raw(detections(600, 999), [WINDOW]) == pytest.approx(1.0 - 0.11)


def test_fp_right_after_a_window_is_mildly_penalised() -> None:
    # Row 700 sits 1/(100 − 1) after the window: tanh(−5/(2·99)) · A_FP.
    expected = 1.0 + math.tanh(-2.5 / 99) * 0.11
    assert raw(detections(600, 700), [WINDOW]) == pytest.approx(expected)
    # Row 798 sits 99/99 = 1 after the window: tanh(−2.5) · A_FP.
    assert raw(detections(600, 798), [WINDOW]) == pytest.approx(1.0 - MAX_TP * 0.11)


def test_series_without_windows_only_loses_on_fps() -> None:
    assert raw(detections(300, 900), []) == pytest.approx(-0.22)
    # Detections inside the probationary period are not scored.
    assert raw(detections(10, 149), []) == 0.0
    assert raw(detections(150), []) == pytest.approx(-0.11)
    result = score_corpus([LabelledSeries("s", detections(300), [])])
    assert result["standard"].raw == 0.0  # the optimiser prefers no detections at all
    assert result["standard"].threshold == math.inf


def test_missed_window_costs_fn_weight_per_profile() -> None:
    assert raw(np.zeros(N), [WINDOW]) == -1.0
    assert raw(np.zeros(N), [WINDOW], LOW_FN) == -2.0


def test_threshold_is_optimised_across_files() -> None:
    # File a: a window hit at score 0.9 and an FP at 0.8. File b: an FP at 0.85.
    a = np.zeros(N)
    a[600], a[300] = 0.9, 0.8
    b = np.zeros(N)
    b[400] = 0.85
    corpus = [LabelledSeries("a", a, [WINDOW]), LabelledSeries("b", b, [])]
    threshold, total = best_threshold(corpus, STANDARD)
    assert threshold == pytest.approx(0.9)
    assert total == pytest.approx(1.0)
    # At 0.85 the extra FP costs 0.11; at 0.8 two FPs.
    result = score_corpus(corpus, thresholds={"standard": 0.8})
    assert result["standard"].raw == pytest.approx(1.0 - 0.22)


def test_row_contributions_put_the_window_score_on_its_first_row() -> None:
    contrib = row_contributions(LabelledSeries("s", detections(650, 200), [WINDOW]), STANDARD, 1.0)
    assert contrib[600] == pytest.approx(math.tanh(1.25) / MAX_TP)
    assert contrib[200] == pytest.approx(-0.11)
    assert np.count_nonzero(contrib) == 2


def test_window_rows_match_timestamps() -> None:
    stamps = np.array([parse_timestamp(f"2024-01-01 00:{m:02d}:00") for m in range(10)])
    rows = window_rows(stamps, [("2024-01-01 00:02:00.000000", "2024-01-01 00:05:00.000000")])
    assert rows == [(2, 5)]


Reference = tuple[list[LabelledSeries], list[dict[str, np.ndarray]]]


@pytest.fixture(scope="module")
def reference() -> Reference:
    if not REFERENCE.is_dir():
        pytest.skip("NAB reference results not available")
    return _reference_corpus()


def _reference_corpus() -> Reference:
    windows = load_windows(NAB / "combined_windows.json")
    corpus: list[LabelledSeries] = []
    columns: list[dict[str, np.ndarray]] = []
    for key, spans in sorted(windows.items()):
        folder, name = key.split("/")
        with (REFERENCE / folder / f"windowedGaussian_{name}").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        stamps = np.array([parse_timestamp(r["timestamp"]) for r in rows])
        scores = np.array([float(r["anomaly_score"]) for r in rows])
        corpus.append(LabelledSeries(key, scores, window_rows(stamps, spans)))
        columns.append({p: np.array([float(r[f"S(t)_{p}"]) for r in rows]) for p in PROFILES})
    return corpus, columns


def test_reproduces_nab_windowed_gaussian_scores(reference: Reference) -> None:
    corpus, _ = reference
    result = score_corpus(corpus)
    assert result["standard"].normalised == pytest.approx(30.8, abs=0.1)
    assert result["reward_low_FP_rate"].normalised == pytest.approx(25.2, abs=0.1)
    assert result["reward_low_FN_rate"].normalised == pytest.approx(34.2, abs=0.1)
    assert all(r.perfect == 39.0 for r in result.values())


def test_reproduces_nab_per_row_scores(reference: Reference) -> None:
    # The reference S(t) columns match detections with score ≥ 1.0 for all three profiles (for
    # standard and low-FN NAB's optimiser reported 0.999999999999, which gives the 30.8 / 34.2
    # totals above, but the per-row columns were written at 1.0).
    corpus, columns = reference
    for series, reference in zip(corpus, columns, strict=True):
        for name, profile in PROFILES.items():
            ours = row_contributions(series, profile, 1.0)
            np.testing.assert_allclose(ours, reference[name], atol=1e-6, err_msg=series.name)
