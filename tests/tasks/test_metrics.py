"""The fine-tuning metrics (torchmetrics, updated batch by batch) equal independent references on fixed predictions:
scipy's correlations, and MCC / F1 / accuracy computed here from the confusion matrix with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from lit_lm.errors import ConfigError
from lit_lm.tasks.metrics import METRICS, build_metrics


def _confusion(preds: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.float64)  # (true, predicted)
    np.add.at(m, (target, preds), 1)
    return m


def _per_class_f1(m: np.ndarray) -> np.ndarray:
    tp = np.diag(m)
    precision, recall = tp / m.sum(0), tp / m.sum(1)
    return 2 * precision * recall / (precision + recall)


def _mcc(m: np.ndarray) -> float:
    """Gorodkin's multi-class MCC (scikit-learn's matthews_corrcoef): for two classes the familiar
    (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn))."""
    t, p, c, s = m.sum(1), m.sum(0), np.trace(m), m.sum()
    return float((c * s - t @ p) / np.sqrt((s**2 - p @ p) * (s**2 - t @ t)))


def _compute(names, num_labels, preds, target, batch=7):
    """The metrics of ``names`` updated in batches of ``batch``, then computed."""
    metrics = build_metrics(names, num_labels)
    for i in range(0, len(target), batch):
        for metric in metrics.values():
            metric.update(preds[i : i + batch], target[i : i + batch])
    return {name: float(metric.compute()) for name, metric in metrics.items()}


def _classes(k: int, n: int = 61, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions that are right about 60% of the time, every class present in both."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (n,), generator=g)
    wrong = torch.randint(0, k, (n,), generator=g)
    preds = torch.where(torch.rand(n, generator=g) < 0.6, target, wrong)
    preds[:k], target[:k] = torch.arange(k), torch.arange(k)
    return preds, target


def test_binary_metrics_equal_the_confusion_matrix_formulas():
    preds, target = _classes(2)
    got = _compute(("acc", "f1", "macro_f1", "mcc"), 2, preds, target)
    m = _confusion(preds.numpy(), target.numpy(), 2)
    tn, fp, fn, tp = m.ravel()
    assert got["acc"] == pytest.approx((tp + tn) / m.sum())
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # the positive class (id 1), as GLUE's MRPC/QQP
    assert got["macro_f1"] == pytest.approx(_per_class_f1(m).mean())
    binary_mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert got["mcc"] == pytest.approx(binary_mcc) and binary_mcc == pytest.approx(_mcc(m))
    # the positive-class F1 is not the other class's: swapping the classes changes it
    assert _compute(("f1",), 2, 1 - preds, 1 - target)["f1"] != pytest.approx(got["f1"])


def test_multiclass_metrics_equal_the_confusion_matrix_formulas():
    preds, target = _classes(3, seed=1)
    got = _compute(("acc", "macro_f1", "mcc"), 3, preds, target)
    m = _confusion(preds.numpy(), target.numpy(), 3)
    assert got["acc"] == pytest.approx(np.trace(m) / m.sum())
    assert got["macro_f1"] == pytest.approx(_per_class_f1(m).mean())
    assert got["mcc"] == pytest.approx(_mcc(m))


@pytest.mark.parametrize("num_labels", [2, 3])
def test_mcc_of_a_constant_guess_is_zero(num_labels):
    """CoLA's trap: always answering the majority class scores 80% accuracy here but MCC 0, as scikit-learn (GLUE's
    scorer) has it; torchmetrics' own binary MCC gives such a guess about 0.47 (an epsilon-based limit)."""
    target = torch.tensor([1, 1, 1, 0, 1, 1, 0, 1, 1, 1])
    got = _compute(("acc", "mcc"), num_labels, torch.ones_like(target), target)
    assert got == {"acc": pytest.approx(0.8), "mcc": 0.0}
    assert _compute(("mcc",), num_labels, target, torch.ones_like(target))["mcc"] == 0.0  # all labels one class
    assert _compute(("mcc",), num_labels, target, target)["mcc"] == 1.0  # both classes present and all right


def test_correlations_equal_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 11, (53,), generator=g).float() / 2  # STS-B-like scores 0..5 in halves: many ties
    preds = (target + torch.randn(53, generator=g)).round()  # rounded: ties among the predictions too
    assert len(set(target.tolist())) < 15 and len(set(preds.tolist())) < 15
    got = _compute(("pearson", "spearman"), 1, preds, target)
    assert got["pearson"] == pytest.approx(stats.pearsonr(preds.numpy(), target.numpy())[0], abs=1e-5)
    assert got["spearman"] == pytest.approx(stats.spearmanr(preds.numpy(), target.numpy())[0], abs=1e-5)


def test_each_stage_gets_its_own_objects():
    a, b = build_metrics(("acc",), 3), build_metrics(("acc",), 3)
    assert a["acc"] is not b["acc"]
    assert list(build_metrics(("mcc", "acc"), 2)) == ["mcc", "acc"]  # the order given (the first goes on the bar)


def test_wrong_metric_names_are_config_errors():
    with pytest.raises(ConfigError, match="unknown metric 'f2'; known: " + ", ".join(METRICS)):
        build_metrics(("acc", "f2"), 3)
    with pytest.raises(ConfigError, match="'f1' is the F1 of the positive class .* 3 labels; use 'macro_f1'"):
        build_metrics(("f1",), 3)
    with pytest.raises(ConfigError, match="'acc' is a classification metric .* regression task.*use pearson, spear"):
        build_metrics(("acc",), 1)
    with pytest.raises(ConfigError, match="'pearson' is a regression metric .* classification task .*use acc, f1"):
        build_metrics(("pearson",), 2)
