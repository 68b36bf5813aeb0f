import warnings

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics  # a core dependency (the baseline): never skip the comparison

from raygrid.training.metrics import accuracy, f1_macro


@pytest.mark.parametrize("seed", range(5))
def test_f1_macro_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels, preds = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    preds[:3] = 3  # make sure some classes collide
    assert f1_macro(preds, labels, 4) == pytest.approx(sklearn_metrics.f1_score(labels, preds, average="macro"))
    # rarely seen and never predicted classes, as on small or skewed splits: the fixed label set
    labels, preds = rng.integers(0, 11, 40), rng.integers(0, 6, 40)
    expected = sklearn_metrics.f1_score(labels, preds, labels=np.arange(11), average="macro", zero_division=0)
    assert f1_macro(preds, labels, 11) == pytest.approx(expected)
    assert accuracy(preds, labels) == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))


def test_f1_macro_extremes():
    y = np.array([0, 0, 1, 1])
    assert f1_macro(y, y, 2) == 1.0
    assert f1_macro(1 - y, y, 2) == 0.0
    # always predicting the majority class scores at most 0.5 F1-macro on two classes
    assert f1_macro(np.zeros(4, int), np.array([0, 0, 0, 1]), 2) == pytest.approx((6 / 7) / 2)


def test_a_class_absent_from_the_split_still_counts_as_zero():
    y = np.array([0, 0, 1, 1])
    # class 2 of 3 is neither present nor predicted: the mean is over all three classes, not the two seen
    assert f1_macro(y, y, 3) == pytest.approx(2 / 3)
    assert sklearn_metrics.f1_score(y, y, average="macro") == 1.0  # what the unfixed label set would report
    # class 1 present but never predicted, class 2 predicted but absent: both score 0, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's UndefinedMetricWarning would fail here
        assert f1_macro(np.array([0, 0, 2, 0]), np.array([0, 0, 1, 1]), 3) == pytest.approx((4 / 5) / 3)
    assert f1_macro(np.array([], int), np.array([], int), 2) == 0.0
