"""Evaluation: score alerts against the simulator's ground truth, and account for every reading.

- ``scorecard``: alerts matched to faults per kind: recall, precision, detection delay (pure).
- ``losses``: the loss ledger, readings Mosquitto acknowledged vs what a stage holds (pure).
- ``collect``: what Kafka and InfluxDB hold for a run (I/O).
- ``render``: all of it printed with rich.
- ``run``: ``run_evaluation``, the whole of ``citywatch evaluate`` and the demo's last step.

Example:
    >>> f = TruthFault("f1", "bin_fire", "bin-1", "bin", 1000.0, 2000.0)
    >>> a = AlertRec("a1", "bin_fire", "bin-1", episode_start=1100.0, raised_at=1100.0)
    >>> score([f], [a], sim_start=0.0, sim_end=5000.0).kinds["bin_fire"].recall
    1.0
"""

from processors.evaluate.collect import Collected, collect
from processors.evaluate.losses import StageCount, compare
from processors.evaluate.render import render
from processors.evaluate.run import run_evaluation
from processors.evaluate.scorecard import (
    KIND_FAMILY,
    NS,
    PRECISION_TARGET,
    RECALL_TARGET,
    AlertRec,
    KindScore,
    Scorecard,
    TruthFault,
    alerts_from_events,
    faults_from_truth,
    percentile,
    score,
)

__all__ = [
    "KIND_FAMILY",
    "NS",
    "PRECISION_TARGET",
    "RECALL_TARGET",
    "AlertRec",
    "Collected",
    "KindScore",
    "Scorecard",
    "StageCount",
    "TruthFault",
    "alerts_from_events",
    "collect",
    "compare",
    "faults_from_truth",
    "percentile",
    "render",
    "run_evaluation",
    "score",
]
