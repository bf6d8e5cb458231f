"""Fine-tuning objectives: sequence classification and regression (NLI, GLUE-style tasks) and multiple choice."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_lm._lightning import attached_trainer
from lit_lm.config import IGNORE_INDEX, ConfigError, TransformerConfig
from lit_lm.model import ClassificationHead, LMHead, MultipleChoiceHead, gather_positions
from lit_lm.tasks.base import LMTask
from lit_lm.tasks.metrics import build_metrics

#: How a fine-tuning head reads a sequence: BERT's pooler (tanh dense on ``[CLS]``), one token's state (``[CLS]`` or
#: ``[EXTRACT]``), or the mean of the real tokens' states (sentence-transformers).
POOLINGS = ("pooler", "token", "mean")

#: What :class:`SequenceClassification` does with its outputs: cross-entropy over the classes, or one score and the
#: mean squared error (the names of Hugging Face's ``problem_type``).
PROBLEM_TYPES = ("single_label_classification", "regression")

#: Metrics logged when neither the model nor the DataModule lists any.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "single_label_classification": ("acc", "macro_f1"),
    "regression": ("pearson", "spearman"),
}


#: Metrics of a whole split, not of one batch: logged for validation and test only.
_CORPUS_LEVEL = frozenset({"pearson", "spearman", "mcc"})

class _FineTune(LMTask):
    """Shared by the fine-tuning tasks: sequence features and GPT-1's auxiliary LM loss."""

    def _pooling(self) -> str:
        """The ``pooling`` setting with ``None`` resolved: BERT's pooler where the encoder has one, else the token."""
        pooling = self.hparams.pooling
        if pooling is None:
            has_pooler = not self.backbone_config.causal and self.backbone.pooler is not None
            return "pooler" if has_pooler else "token"
        return pooling

    def _check_pooling(self, config: TransformerConfig) -> None:
        pooling = self.hparams.pooling
        if pooling is None:
            return
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
        if pooling == "pooler" and (config.causal or not config.pooler):
            raise ConfigError("pooling='pooler' needs an encoder built with a pooler (TransformerConfig(pooler=True))")
        if pooling == "mean" and config.causal:
            raise ConfigError(
                "pooling='mean' averages the token states of an encoder; a causal decoder's early states see only "
                "a prefix of the sequence: use pooling='token' (the [EXTRACT] token at the end)"
            )

    def _features(
        self, hidden: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, T, C) -> (N, C), as ``pooling`` says: BERT's tanh pooler on ``[CLS]``, the state at ``positions``
        (``[CLS]`` of the encoder format, ``[EXTRACT]`` of the GPT-1 format), or the mean over the real tokens."""
        pooling = self._pooling()
        if pooling == "pooler":
            return self.backbone.pool(hidden)
        if pooling == "mean":
            if attention_mask is None:
                return hidden.mean(1)
            weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (N, T, 1), 0 on padding
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return gather_positions(hidden, positions)

    def _build_lm_head(self, config: TransformerConfig) -> None:
        if self.hparams.lm_loss_weight > 0:
            if not config.causal:
                raise ConfigError("lm_loss_weight > 0 (GPT-1's auxiliary LM loss) needs a decoder backbone")
            self.lm_head = LMHead(self.backbone.wte)

    def _lm_loss(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Next-token loss over the real (non-padding) tokens: GPT-1's auxiliary objective (head and
        cross-entropy fused, no logits kept). ``attention_mask`` None means no padding."""
        labels = input_ids[:, 1:]
        if attention_mask is not None:
            labels = labels.masked_fill(attention_mask[:, 1:] == 0, IGNORE_INDEX)
        return self.lm_head.loss(hidden[:, :-1], labels)

    def head_flops_per_token(self, seq_len: int) -> float:
        """GPT-1's auxiliary LM head when it is on (the classifier, once per sequence, is negligible)."""
        config = self.backbone_config
        return 6.0 * config.n_embd * config.vocab_size if self.hparams.lm_loss_weight > 0 else 0.0

    def _check_format(self, datamodule: Any) -> None:
        fmt = getattr(datamodule, "format", None)
        if fmt == "encoder" and self.backbone_config.causal:
            raise ConfigError(
                "data format 'encoder' reads the [CLS] token at position 0, which a causal decoder cannot use to "
                "see the sequence; use data format: decoder (the [EXTRACT] token at the end) with GPT backbones"
            )

    def configure_model(self) -> None:
        super().configure_model()
        self._check_format(getattr(attached_trainer(self), "datamodule", None))


class SequenceClassification(_FineTune):
    """Classify a text or a pair of texts (natural language inference, sentiment, acceptability, paraphrase), or
    score it (regression: semantic similarity).

    The head reads the ``[EXTRACT]`` token's hidden state (decoder, GPT-1 format ``premise [DELIM] hypothesis
    [EXTRACT]``) or BERT's pooled ``[CLS]`` (encoder format). Batches: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (B, T), ``extract_positions`` (B,) and ``labels`` (B,): class ids, or float scores for a
    regression. With two views (GPT-1's similarity format, both orderings ``A [DELIM] B`` and ``B [DELIM] A`` of a
    pair with no natural order) the inputs are (B, V, T) and ``extract_positions`` (B, V): each view runs through the
    backbone as its own sequence and the V features are added element-wise before the head (GPT-1, section 3.3), so
    the prediction does not depend on the order of the views.

    A classification minimises cross-entropy; a regression (``problem_type: regression``, one output) the mean
    squared error of the score, as Hugging Face's ``run_glue.py`` does for STS-B. Logs the loss and each of
    ``metrics`` (:mod:`lit_lm.tasks.metrics`) as ``{stage}/{name}``, and for a classification a confusion matrix
    to TensorBoard at validation end.

    Args:
        num_labels: Number of classes (1 for a regression). Default: the DataModule's ``num_labels``.
        lm_loss_weight: Weight lambda of the auxiliary LM loss on the input text, over all views (decoders; GPT-1
            used 0.5).
        classifier_dropout: Dropout before the classifier.
        pooling: What the classifier reads: ``"pooler"`` (BERT's tanh pooler on ``[CLS]``), ``"token"`` (the
            ``[CLS]`` / ``[EXTRACT]`` state itself) or ``"mean"`` (the mean over the real tokens, encoders; how
            sentence-transformers models such as all-MiniLM-L6-v2 were trained). Default: the pooler where the
            backbone has one, else the token.
        label_names: Names of the classes, in id order (the confusion matrix's rows). Default: the DataModule's.
        problem_type: ``"single_label_classification"`` (cross-entropy over ``num_labels`` classes) or
            ``"regression"`` (one output, mean squared error). Default: the DataModule's ``problem_type``, else
            regression exactly when ``num_labels`` is 1.
        metrics: What is logged per stage, from :data:`lit_lm.tasks.metrics.METRICS`: ``acc``, ``f1`` (positive
            class of a binary task: MRPC, QQP), ``macro_f1``, ``mcc`` (CoLA) for a classification; ``pearson``,
            ``spearman`` (STS-B) for a regression. Default: the DataModule's ``metrics``, else ``[acc, macro_f1]``
            (classification) or ``[pearson, spearman]`` (regression).
        (other arguments: see :class:`~lit_lm.tasks.base.LMTask`)
    """

    def __init__(
        self,
        preset: str = "gpt-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 6.25e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: float = 0.002,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
        num_labels: int | None = None,
        lm_loss_weight: float = 0.0,
        classifier_dropout: float = 0.1,
        pooling: Literal["pooler", "token", "mean"] | None = None,
        label_names: list[str] | None = None,
        problem_type: Literal["single_label_classification", "regression"] | None = None,
        metrics: list[str] | None = None,
    ) -> None:
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------ the problem
    def _num_labels(self) -> int | None:
        """``num_labels``, or 1 for a regression that does not say."""
        n = self.hparams.get("num_labels")
        return 1 if n is None and self.hparams.get("problem_type") == "regression" else n

    def _problem_type(self) -> str:
        """``problem_type`` resolved: as given, else regression exactly when there is one output."""
        problem = self.hparams.get("problem_type")
        if problem is None:
            return "regression" if self._num_labels() == 1 else "single_label_classification"
        if problem not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type={problem!r}: expected one of {', '.join(PROBLEM_TYPES)}")
        return problem

    @property
    def regression(self) -> bool:
        """Whether this task scores (one output, mean squared error) rather than classifies."""
        return self._problem_type() == "regression"

    def _metric_names(self) -> tuple[str, ...]:
        names = self.hparams.get("metrics")
        return tuple(names) if names is not None else DEFAULT_METRICS[self._problem_type()]

    def _labels_known(self) -> bool:
        return self._num_labels() is not None

    def _resolve_data_settings(self, datamodule: Any) -> None:
        """The one check of this task against the data's problem (``num_labels``, ``problem_type``, ``metrics``,
        ``main_metric``), filling in what the model leaves to the DataModule. Runs whenever a trainer attaches a
        DataModule, also for a model already built (``vocab_size`` and ``num_labels`` given, or loaded)."""
        hp = self.hparams
        n = getattr(datamodule, "num_labels", None)
        problem = getattr(datamodule, "problem_type", None)
        if problem is None and n is not None:
            problem = "regression" if n == 1 else "single_label_classification"
        if problem is not None and hp.get("problem_type") is not None and hp.problem_type != problem:
            raise ConfigError(
                f"model problem_type={hp.problem_type!r} but the DataModule's problem is {problem!r}; leave "
                "model.problem_type unset to take the data's"
            )
        if problem is not None and hp.get("problem_type") is None:
            hp["problem_type"] = problem
        if hp.num_labels is None:
            if n is None and self._num_labels() is None:
                raise ConfigError(
                    "SequenceClassification needs num_labels: pass it or use a DataModule with num_labels"
                )
            hp["num_labels"] = n if n is not None else self._num_labels()
        elif n is not None and n != hp.num_labels:
            raise ConfigError(f"model num_labels={hp.num_labels} but the DataModule has {n} labels")
        if hp.label_names is None and getattr(datamodule, "label_names", None) is not None:
            hp["label_names"] = list(datamodule.label_names)
        if hp.get("metrics") is None and getattr(datamodule, "metrics", None) is not None:
            hp["metrics"] = list(datamodule.metrics)
        self._check_problem()
        main = getattr(datamodule, "main_metric", None)
        if main is not None and main not in self._metric_names():
            raise ConfigError(
                f"the DataModule selects checkpoints by {main!r} (main_metric; logged as val/{main}) but the model "
                f"logs only {', '.join(self._metric_names())}; add {main!r} to model.metrics"
            )

    def _check_problem(self) -> None:
        """num_labels fits problem_type: one output for a regression, at least two classes otherwise."""
        n, problem = self._num_labels(), self._problem_type()
        if problem == "regression" and n != 1:
            raise ConfigError(f"problem_type='regression' has one output, but num_labels={n}")
        if problem != "regression" and n is not None and n < 2:
            raise ConfigError(f"problem_type={problem!r} needs num_labels >= 2, got {n} (one output: regression)")

    # ------------------------------------------------------------------------------------ building
    def build_heads(self, config: TransformerConfig) -> None:
        self._check_pooling(config)
        self._check_problem()
        n = self._num_labels()
        self.hparams["num_labels"] = n
        self.hparams["problem_type"] = self._problem_type()
        self.classifier = ClassificationHead(
            config.n_embd, n, self.hparams.classifier_dropout, config.initializer_range
        )
        self._build_lm_head(config)
        self._build_metrics()

    def _build_metrics(self) -> None:
        """One set of torchmetrics objects per stage (``metrics["val_acc"]``), rebuilt only when the names change
        (a model built before it saw the DataModule takes the DataModule's list)."""
        names = self._metric_names()
        if getattr(self, "_metrics_built", None) == names:
            return
        n = self._num_labels()
        self.metrics = torch.nn.ModuleDict()
        for stage in ("train", "val", "test"):
            for name, metric in build_metrics(names, n).items():
                self.metrics[f"{stage}_{name}"] = metric
        self.val_confusion = None if self.regression else MulticlassConfusionMatrix(n)
        self._metrics_built = names

    def configure_model(self) -> None:
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if datamodule is not None and self.backbone is not None:
            self._resolve_data_settings(datamodule)  # else the base class does, before it builds
        super().configure_model()
        if self.backbone is not None:
            self._build_metrics()

    # ------------------------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits (B, num_labels), hidden (B * V, T, C)); V = 1 (hidden (B, T, C)) without views.
        For a regression the logits are the scores, (B, 1)."""
        flat, views = _flatten_views(batch)
        hidden = self.backbone(flat["input_ids"], flat.get("attention_mask"), self._types(flat))
        features = self._features(hidden, flat["extract_positions"], flat.get("attention_mask"))  # (B * V, C)
        if views is not None:  # GPT-1: the views' representations are added element-wise before the head
            features = features.view(-1, views, features.size(-1)).sum(1)  # (B, C)
        return self.classifier(features).float(), hidden

    def _types(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch.get("token_type_ids") if self.backbone_config.type_vocab_size > 0 else None

    def _predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids (B,), or the scores (B,) of a regression."""
        return logits.squeeze(-1) if self.regression else logits.argmax(-1)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits, hidden = self(batch)
        labels = batch["labels"]
        if self.regression:  # logits are fp32 (forward); the labels may come as any number type
            loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            labels = labels.float()
        else:
            loss = F.cross_entropy(logits, labels)
        on_step = stage == "train"
        if self.hparams.lm_loss_weight > 0:
            flat, _ = _flatten_views(batch)
            lm = self._lm_loss(hidden, flat["input_ids"], flat.get("attention_mask"))
            self.log(f"{stage}/lm_loss", lm, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
            loss = loss + self.hparams.lm_loss_weight * lm
        preds = self._predictions(logits.detach())
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        for i, name in enumerate(self._metrics_built):
            if on_step and name in _CORPUS_LEVEL:
                continue  # a correlation of one batch is noise (and NaN when its labels are all equal)
            key = f"{stage}_{name}"
            self.metrics[key](preds, labels)  # forward: accumulate and keep the batch value
            self.log(f"{stage}/{name}", self.metrics[key], prog_bar=i == 0, on_step=on_step, on_epoch=not on_step,
                     metric_attribute=f"metrics.{key}")  # named: the set may be rebuilt (_build_metrics)  # fmt: skip
        if stage == "val" and self.val_confusion is not None:
            self.val_confusion.update(preds, labels)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class ids (B,), or the scores (B,) of a regression."""
        return self._predictions(self(batch)[0])

    def on_validation_epoch_end(self) -> None:
        if self.val_confusion is None:
            return
        matrix = self.val_confusion.compute()  # (true, predicted) counts, summed over ranks
        self.val_confusion.reset()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        names = self.hparams.label_names or [str(i) for i in range(matrix.size(0))]
        header = "| true \\ predicted | " + " | ".join(names) + " |\n|---" * (len(names) + 1) + "|\n"
        rows = "".join(
            f"| {n} | " + " | ".join(str(int(c)) for c in row) + " |\n" for n, row in zip(names, matrix, strict=False)
        )
        experiment.add_text("val/confusion_matrix", header + rows, self.global_step)
        experiment.add_image("val/confusion_matrix", confusion_image(matrix), self.global_step, dataformats="HW")


def _flatten_views(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int | None]:
    """A batch with views (``input_ids`` (B, V, T), ``extract_positions`` (B, V)) as B * V sequences, the views of
    one example adjacent, and V; a batch without views as it is, and None. ``labels`` stay (B,)."""
    input_ids = batch["input_ids"]
    if input_ids.dim() != 3:
        return batch, None
    B, V, T = input_ids.shape
    flat = dict(batch)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in batch:
            flat[key] = batch[key].reshape(B * V, T)
    flat["extract_positions"] = batch["extract_positions"].reshape(B * V)
    return flat, V


def confusion_image(matrix: torch.Tensor, cell: int = 32) -> torch.Tensor:
    """A (H, W) grayscale heat map of a confusion matrix, rows normalised (white = all of the row)."""
    m = matrix.float()
    m = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    return m.repeat_interleave(cell, 0).repeat_interleave(cell, 1).cpu()


class MultipleChoice(_FineTune):
    """Pick the right ending: each choice runs as its own sequence through the shared backbone, a linear scorer
    gives one number per choice, softmax over the choices.

    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids`` of shape (B, n_choices, T),
    ``extract_positions`` (B, n_choices), ``labels`` (B,). Logs loss and accuracy per stage.

    Args:
        lm_loss_weight: Weight of the auxiliary LM loss (decoders; GPT-1 used 0.5).
        classifier_dropout: Dropout before the scorer.
        pooling: What the scorer reads: ``"pooler"``, ``"token"`` or ``"mean"``, as in
            :class:`SequenceClassification`.
        (other arguments: see :class:`~lit_lm.tasks.base.LMTask`)
    """

    def __init__(
        self,
        preset: str = "gpt-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 6.25e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: float = 0.002,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
        lm_loss_weight: float = 0.0,
        classifier_dropout: float = 0.1,
        pooling: Literal["pooler", "token", "mean"] | None = None,
    ) -> None:
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip
        self.metrics = torch.nn.ModuleDict({f"{s}_acc": MeanMetric() for s in ("train", "val", "test")})

    def build_heads(self, config: TransformerConfig) -> None:
        self._check_pooling(config)
        self.scorer = MultipleChoiceHead(config.n_embd, self.hparams.classifier_dropout, config.initializer_range)
        self._build_lm_head(config)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (scores (B, n_choices), hidden (B * n_choices, T, C))."""
        B, n_choices, T = batch["input_ids"].shape
        flat = {
            k: batch[k].reshape(B * n_choices, -1)
            for k in ("input_ids", "attention_mask", "token_type_ids")
            if k in batch
        }
        types = flat.get("token_type_ids") if self.backbone_config.type_vocab_size > 0 else None
        hidden = self.backbone(flat["input_ids"], flat.get("attention_mask"), types)  # (B * n_choices, T, C)
        features = self._features(hidden, batch["extract_positions"].reshape(-1), flat.get("attention_mask"))
        return self.scorer(features, n_choices).float(), hidden

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        scores, hidden = self(batch)
        loss = F.cross_entropy(scores, batch["labels"])
        on_step = stage == "train"
        if self.hparams.lm_loss_weight > 0:
            B, n_choices, T = batch["input_ids"].shape
            mask = batch.get("attention_mask")
            lm = self._lm_loss(hidden, batch["input_ids"].view(-1, T), None if mask is None else mask.view(-1, T))
            self.log(f"{stage}/lm_loss", lm, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
            loss = loss + self.hparams.lm_loss_weight * lm
        acc = self.metrics[f"{stage}_acc"]
        acc((scores.argmax(-1) == batch["labels"]).float())
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/acc", acc, prog_bar=True, on_step=on_step, on_epoch=not on_step)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch)[0].argmax(-1)
