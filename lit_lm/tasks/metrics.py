"""Metric sets by name: what a fine-tuning task logs per stage, as the benchmarks report it.

Every metric is a torchmetrics object (no metric arithmetic of our own), so it accumulates over the batches of an
epoch and is summed over DDP ranks before it is computed. The names are those a DataModule lists in ``metrics``
(see :data:`lit_lm.data.finetuning.registry.METRICS`) and a task logs as ``{stage}/{name}``.

Classification metrics take class ids (B,) and the labels (B,); regression metrics take the scores (B,) and the
float labels (B,). A regression task is one with ``num_labels == 1`` (one output, mean-squared error), as in
Hugging Face's ``run_glue.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from lit_lm.errors import ConfigError

__all__ = ["METRICS", "GLUEMatthewsCorrCoef", "MetricSpec", "build_metrics", "is_regression_metric"]


@dataclass(frozen=True)
class MetricSpec:
    """One named metric.

    Attributes:
        regression: Whether it scores a regression (float scores) rather than class ids.
        build: ``num_labels -> Metric``.
        doc: What it is and which benchmark reports it.
    """

    regression: bool
    build: Callable[[int], Metric]
    doc: str


class GLUEMatthewsCorrCoef(MulticlassMatthewsCorrCoef):
    """torchmetrics' Matthews correlation, except where it is undefined (all predictions one class, or all labels):
    0, as scikit-learn's ``matthews_corrcoef`` (GLUE's CoLA scorer) returns.

    torchmetrics (1.9) gives a binary task's degenerate cases an epsilon-based limit instead, so a model that
    always answers "acceptable" on CoLA's dev set would score about 0.4 rather than 0, and be picked as the best
    checkpoint early in a run (torchmetrics issue #3355)."""

    def compute(self) -> torch.Tensor:
        confmat = self.confmat  # (true, predicted) counts, summed over ranks before compute
        if int((confmat.sum(0) > 0).sum()) < 2 or int((confmat.sum(1) > 0).sum()) < 2:
            return torch.zeros((), dtype=torch.float32, device=confmat.device)
        return super().compute()


def _positive_f1(num_labels: int) -> Metric:
    if num_labels != 2:
        raise ConfigError(
            f"metric 'f1' is the F1 of the positive class (id 1) of a binary task, but this task has {num_labels} "
            "labels; use 'macro_f1' (the mean F1 over the classes)"
        )
    return BinaryF1Score()


#: The known metrics by name, in the order :data:`lit_lm.data.finetuning.registry.METRICS` lists them.
METRICS: dict[str, MetricSpec] = {
    "acc": MetricSpec(
        False,
        lambda n: MulticlassAccuracy(n, average="micro"),
        "accuracy: the share of examples classified right (SST-2, MNLI, RTE, QNLI, WNLI; MRPC and QQP beside F1)",
    ),
    "f1": MetricSpec(
        False,
        _positive_f1,
        "F1 of the positive class (id 1: paraphrase, duplicate) of a binary task, as GLUE reports MRPC and QQP "
        "(scikit-learn's f1_score with pos_label=1)",
    ),
    "macro_f1": MetricSpec(
        False,
        lambda n: MulticlassF1Score(n, average="macro"),
        "macro F1: the unweighted mean of the per-class F1 scores (NLI sets with skewed labels: SciTail, ANLI)",
    ),
    "mcc": MetricSpec(
        False,
        lambda n: GLUEMatthewsCorrCoef(n),
        "Matthews correlation coefficient, -1 to 1, 0 for chance or a constant guess (CoLA, whose labels are "
        "skewed: 70% acceptable)",
    ),
    "pearson": MetricSpec(
        True,
        lambda n: PearsonCorrCoef(),
        "Pearson correlation of the predicted and gold scores (STS-B, SICK relatedness)",
    ),
    "spearman": MetricSpec(
        True,
        lambda n: SpearmanCorrCoef(),
        "Spearman rank correlation of the predicted and gold scores, ties ranked by their mean rank (STS-B)",
    ),
}


def is_regression_metric(name: str) -> bool:
    """Whether ``name`` scores a regression; :class:`ConfigError` listing the known names if it is unknown."""
    spec = METRICS.get(name)
    if spec is None:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return spec.regression


def build_metrics(names: Iterable[str], num_labels: int) -> torch.nn.ModuleDict:
    """Fresh torchmetrics objects for ``names``, keyed by name (one set per stage: build it once per stage).

    Args:
        names: Metric names from :data:`METRICS`.
        num_labels: The task's number of classes; 1 means regression (one output).

    Raises:
        ConfigError: an unknown name (the message lists the known ones), a classification metric for a regression
            task or a regression metric for a classification task, or ``f1`` for a task that is not binary.
    """
    names = list(names)
    regression = num_labels == 1
    metrics = torch.nn.ModuleDict()
    for name in names:
        if is_regression_metric(name) != regression:
            fitting = [n for n, s in METRICS.items() if s.regression == regression]
            kind = "regression task (num_labels=1)" if regression else f"classification task ({num_labels} labels)"
            other = "classification" if regression else "regression"
            raise ConfigError(f"metric {name!r} is a {other} metric but this is a {kind}; use {', '.join(fitting)}")
        metrics[name] = METRICS[name].build(num_labels)
    return metrics
