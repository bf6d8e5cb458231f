"""Token classification (named-entity recognition): a tag per word from each token's hidden state, scored by
entity-level precision, recall and F1 as ``conlleval`` computes them (via seqeval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from lit_lm._lightning import attached_trainer
from lit_lm.config import IGNORE_INDEX, ConfigError, TransformerConfig
from lit_lm.data.finetuning.token_classification import merge_windows
from lit_lm.model import ClassificationHead
from lit_lm.tasks.classification import _FineTune

__all__ = ["EntityScores", "TokenClassification"]

_SEQEVAL_HINT = "entity-level NER scores need seqeval: pip install 'lit_lm[ner]'"


def _require_seqeval() -> None:
    try:
        import seqeval.metrics  # noqa: F401
    except ImportError:
        raise ConfigError(_SEQEVAL_HINT) from None


def _cat(state: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """A ``cat`` state as one tensor: a list of the batches' tensors (one process), or already one (synced)."""
    if isinstance(state, torch.Tensor):
        return state
    return torch.cat(state) if state else torch.zeros(0, dtype=torch.long)


class EntityScores(Metric):
    """Entity-level precision, recall and F1 over a whole split, micro-averaged and per entity type, as ``conlleval``
    counts them (seqeval's default mode: an entity is a maximal run of one type starting at ``B-`` or at a change
    of type, and counts only if its type and both boundaries are right).

    :meth:`update` keeps the tag ids of the first token of each word with the window's ``sentence_index`` and
    ``window_index``; :meth:`compute` gathers them from all ranks, puts each sentence's windows back together and
    scores the sentences: a sentence split into windows is scored as one sentence, so an entity is never counted
    twice or cut in two by the split.

    Args:
        label_names: The tags in id order (BIO2).
    """

    full_state_update = False

    def __init__(self, label_names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _require_seqeval()
        self.label_names = list(label_names)
        for name in ("preds", "target", "lengths", "sentence_index", "window_index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, word_starts: torch.Tensor,
               sentence_index: torch.Tensor, window_index: torch.Tensor) -> None:  # fmt: skip
        """preds, target (B, T) tag ids; word_starts (B, T) True on each word's first token; the indices (B,)."""
        starts = word_starts.bool()
        self.preds.append(preds[starts])
        self.target.append(target[starts])
        self.lengths.append(starts.sum(1))
        self.sentence_index.append(sentence_index)
        self.window_index.append(window_index)

    def sentences(self) -> tuple[list[list[str]], list[list[str]]]:
        """(gold, predicted) tag names per sentence, in sentence order."""
        states = [_cat(s) for s in (self.preds, self.target, self.lengths, self.sentence_index, self.window_index)]
        preds, target, lengths, sentence, window = (s.cpu().tolist() for s in states)
        names = self.label_names
        pairs, at = [], 0
        for n in lengths:
            pairs.append(list(zip(target[at : at + n], preds[at : at + n], strict=True)))
            at += n
        merged = merge_windows(sentence, window, pairs)
        gold = [[names[g] for g, _ in merged[s]] for s in sorted(merged)]
        pred = [[names[p] for _, p in merged[s]] for s in sorted(merged)]
        return gold, pred

    def compute(self) -> dict[str, torch.Tensor]:
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        gold, pred = self.sentences()
        out = {"f1": 0.0, "precision": 0.0, "recall": 0.0}
        if gold:
            out["f1"] = f1_score(gold, pred, zero_division=0)
            out["precision"] = precision_score(gold, pred, zero_division=0)
            out["recall"] = recall_score(gold, pred, zero_division=0)
            report = classification_report(gold, pred, output_dict=True, zero_division=0)
            kinds = sorted({n[2:] for n in self.label_names if n != "O"})
            for kind in kinds:
                if kind in report:
                    out[f"f1_{kind}"] = report[kind]["f1-score"]
        return {k: torch.tensor(float(v)) for k, v in out.items()}


class TokenClassification(_FineTune):
    """Tag every word (named-entity recognition): dropout and a linear classifier on each token's hidden state,
    cross-entropy over the labelled tokens (the first token of each word; ``-100`` elsewhere).

    Batches (:class:`lit_lm.data.finetuning.token_classification.TokenClassificationDataModule`): ``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``labels``, ``word_starts`` (B, T), ``sentence_index`` and
    ``window_index`` (B,). Logs ``{stage}/loss`` and the token accuracy ``{stage}/acc`` (per step in training), and
    for validation and test, per epoch, the entity-level ``f1``, ``precision``, ``recall`` and ``f1_<TYPE>`` per
    entity type (:class:`EntityScores`, computed over the whole split, windows reassembled per sentence).

    Args:
        num_labels: Number of tags. Default: the DataModule's ``num_labels``.
        label_names: The tags in id order (BIO2, e.g. ``[O, B-LOC, I-LOC, ...]``), stored in the checkpoint.
            Default: the DataModule's; the two must agree.
        classifier_dropout: Dropout before the classifier.
        (other arguments: see :class:`~lit_lm.tasks.base.LMTask`)
    """

    def __init__(
        self,
        preset: str = "bert-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: float = 0.1,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
        num_labels: int | None = None,
        label_names: list[str] | None = None,
        classifier_dropout: float = 0.1,
    ) -> None:
        _require_seqeval()  # before any training, not at the first validation
        if label_names is not None and num_labels is not None and len(label_names) != num_labels:
            raise ConfigError(f"num_labels={num_labels} but label_names has {len(label_names)} names")
        if label_names is not None and num_labels is None:
            num_labels = len(label_names)
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip
        self.hparams["num_labels"] = num_labels

    # ------------------------------------------------------------------------------------ the problem
    def _labels_known(self) -> bool:
        return self.hparams.get("num_labels") is not None

    def _resolve_data_settings(self, datamodule: Any) -> None:
        """The one check of this task against the data: a token-classification DataModule whose labels are the
        model's (or fill them in when the model leaves them to the data)."""
        hp = self.hparams
        problem = getattr(datamodule, "problem_type", None)
        if problem is not None and problem != "token_classification":
            raise ConfigError(
                f"TokenClassification tags words, but the DataModule's problem is {problem!r}; use "
                "lit_lm.data.finetuning.token_classification.TokenClassificationDataModule"
            )
        if hp.get("label_names") is not None and hasattr(datamodule, "adopt_model_labels"):
            datamodule.adopt_model_labels(hp.label_names)  # test/predict files only: the checkpoint's tag set
        names = getattr(datamodule, "label_names", None)
        if names is not None and hp.get("label_names") is not None and list(names) != list(hp.label_names):
            raise ConfigError(
                f"the model's label_names {list(hp.label_names)} are not the DataModule's {list(names)}; set "
                f"data.labels to the model's list (in that order) so that tag ids mean the same"
            )
        n = getattr(datamodule, "num_labels", None)
        if hp.num_labels is None:
            if n is None:
                raise ConfigError("TokenClassification needs num_labels: pass it or use a DataModule with num_labels")
            hp["num_labels"] = n
        elif n is not None and n != hp.num_labels:
            raise ConfigError(f"model num_labels={hp.num_labels} but the DataModule has {n} labels")
        if hp.get("label_names") is None and names is not None:
            hp["label_names"] = list(names)

    def _check_format(self, datamodule: Any) -> None:
        """Every token is read, so either format works with either backbone (a decoder sees only the left)."""

    def head_flops_per_token(self, seq_len: int) -> float:
        return 6.0 * self.backbone_config.n_embd * self.hparams.num_labels

    # ------------------------------------------------------------------------------------ building
    def build_heads(self, config: TransformerConfig) -> None:
        n = self.hparams.num_labels
        if n < 2:
            raise ConfigError(f"TokenClassification needs num_labels >= 2 (O and at least one tag), got {n}")
        # named apart from SequenceClassification's `classifier`, so init_from a sequence classifier loads no head
        self.token_classifier = ClassificationHead(
            config.n_embd, n, self.hparams.classifier_dropout, config.initializer_range
        )
        self.accuracy = torch.nn.ModuleDict(
            {
                f"{s}_acc": MulticlassAccuracy(n, average="micro", ignore_index=IGNORE_INDEX)
                for s in ("train", "val", "test")
            }
        )
        self._build_entity_scores()

    def _build_entity_scores(self) -> None:
        names = self.hparams.get("label_names")
        if names is None or getattr(self, "_entity_names", None) == list(names):
            return
        if len(names) != self.hparams.num_labels:
            raise ConfigError(f"num_labels={self.hparams.num_labels} but label_names has {len(names)} names")
        self.entity_scores = torch.nn.ModuleDict({s: EntityScores(list(names)) for s in ("val", "test")})
        self._entity_names = list(names)

    def configure_model(self) -> None:
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if datamodule is not None and self.backbone is not None:
            self._resolve_data_settings(datamodule)  # else the base class does, before it builds
        super().configure_model()
        if self.backbone is not None:
            self._build_entity_scores()

    # ------------------------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Returns the logits (B, T, num_labels), fp32."""
        types = batch.get("token_type_ids") if self.backbone_config.type_vocab_size > 0 else None
        hidden = self.backbone(batch["input_ids"], batch.get("attention_mask"), types)  # (B, T, C)
        return self.token_classifier(hidden).float()

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch)
        labels = batch["labels"]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        preds = logits.detach().argmax(-1)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        acc = self.accuracy[f"{stage}_acc"]
        acc(preds, labels)
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=not on_step, metric_attribute=f"accuracy.{stage}_acc")
        if stage != "train":
            if not hasattr(self, "entity_scores"):
                raise ConfigError("TokenClassification needs label_names to score entities: pass them or fit with "
                                  "a DataModule that has label_names")  # fmt: skip
            self.entity_scores[stage].update(preds, labels, batch["word_starts"], batch["sentence_index"],
                                             batch["window_index"])  # fmt: skip
        return loss

    def _log_entity_scores(self, stage: str) -> None:
        scores = self.entity_scores[stage]
        values = scores.compute()  # over the whole split, gathered from every rank
        scores.reset()
        for i, (name, value) in enumerate(values.items()):
            self.log(f"{stage}/{name}", value, prog_bar=i == 0, sync_dist=False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_entity_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_entity_scores("test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Per window, the predicted tag names of its words (at their first tokens), with ``sentence_index`` and
        ``window_index``; :meth:`TokenClassificationDataModule.sentence_tags` puts them back together per sentence
        (and ``write_predictions`` writes them for ``conlleval``)."""
        preds = self(batch).argmax(-1).cpu()
        starts = batch["word_starts"].bool().cpu()
        names = self.hparams.get("label_names") or [str(i) for i in range(self.hparams.num_labels)]
        tags = [[names[int(p)] for p in row[mask]] for row, mask in zip(preds, starts, strict=True)]
        out = {"tags": tags, "sentence_index": batch["sentence_index"].cpu(),
               "window_index": batch["window_index"].cpu()}  # fmt: skip
        if hasattr(self, "_predicted"):
            self._predicted.append(out)
        return out

    def on_predict_epoch_start(self) -> None:
        self._predicted: list[dict[str, Any]] = []

    def on_predict_epoch_end(self) -> None:
        """Write the predicted tags as ``word gold predicted`` lines (``predictions.conll`` in the run's log
        directory), which ``conlleval`` scores (one process; under DDP each rank saw a part)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "write_predictions") or self.trainer.world_size > 1 or not self._predicted:
            return
        loaders = self.trainer.predict_dataloaders
        loader = loaders[0] if isinstance(loaders, list) and len(loaders) == 1 else loaders
        if getattr(loader, "dataset", None) is not datamodule.datasets.get("test"):
            return  # predictions on other data than the DataModule's test split: the caller has them
        path = Path(self.trainer.log_dir or ".") / "predictions.conll"
        path.parent.mkdir(parents=True, exist_ok=True)
        datamodule.write_predictions(str(path), self._predicted)
        print(f"lit_lm: wrote the predicted tags of {len(datamodule.examples('test'))} sentences to {path}", flush=True)
