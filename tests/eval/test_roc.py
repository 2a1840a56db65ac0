"""roc_auc against hand-counted pairs."""

from __future__ import annotations

import numpy as np
import pytest

from cryoai.eval.roc import roc_auc


def test_hand_counted_pairs():
    """Positives 3, 1; negatives 2, 0: of the 4 (positive, negative) pairs, 3 are ordered right → 0.75."""
    assert roc_auc([3, 2, 1, 0], [True, False, True, False]) == pytest.approx(0.75)


def test_ties_count_half():
    """Positive 1 vs negatives 1, 0: one tie (½) and one win → 0.75; all scores equal → 0.5."""
    assert roc_auc([1, 1, 0], [True, False, False]) == pytest.approx(0.75)
    assert roc_auc([5, 5, 5, 5], [True, False, True, False]) == pytest.approx(0.5)


def test_perfect_reversed_and_brute_force():
    """Perfect ranking 1, reversed 0, and random scores with ties equal to counting all pairs."""
    assert roc_auc([4, 3, 2, 1], [True, True, False, False]) == 1.0
    assert roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 60), rng.random(60) < 0.4
    diff = s[y][:, None] - s[~y][None, :]
    assert roc_auc(s, y) == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_one_class_only_is_an_error():
    with pytest.raises(ValueError):
        roc_auc([1, 2], [True, True])
