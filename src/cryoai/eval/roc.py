"""Area under the ROC curve of a score that should rank one class above the other."""

from __future__ import annotations

import numpy as np


def roc_auc(scores, positive) -> float:
    """Probability that a random positive scores higher than a random negative (ties count ½):
    the Mann–Whitney U statistic over n₊·n₋, from average ranks. ``positive``: booleans."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positives and negatives")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # rank 1 … n, ties share their average rank
        stop = start
        while stop + 1 < len(scores) and sorted_scores[stop + 1] == sorted_scores[start]:
            stop += 1
        ranks[order[start : stop + 1]] = 0.5 * (start + stop) + 1
        start = stop + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
