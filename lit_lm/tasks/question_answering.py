"""Extractive question answering (SQuAD): :class:`QuestionAnswering`, a start/end span head on every token."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.text import squad
from torchmetrics.utilities import dim_zero_cat

from lit_lm._lightning import attached_trainer
from lit_lm.config import ConfigError, TransformerConfig
from lit_lm.model import SpanHead
from lit_lm.tasks.classification import _FineTune

__all__ = ["QuestionAnswering", "SpanCandidates", "best_spans"]


def best_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    context_start: torch.Tensor,
    context_end: torch.Tensor,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n_best`` highest-scoring spans of each window: start logit + end logit over the spans that lie in the
    context (``context_start <= i <= j < context_end``) and are at most ``max_answer_length`` tokens long.

    Exact (every allowed pair is scored: ``(B, T, max_answer_length)`` sums), where ``run_qa.py`` pairs only the
    20 best starts with the 20 best ends. Returns (scores, starts, ends), each (B, n_best); a window with fewer
    allowed spans fills the rest with score ``-inf``.
    """
    B, T = start_logits.shape
    L = min(max_answer_length, T)
    ends = F.pad(end_logits.float(), (0, L - 1), value=float("-inf")).unfold(1, L, 1)  # (B, T, L): end at i + l
    scores = start_logits.float().unsqueeze(-1) + ends
    pos = torch.arange(T, device=start_logits.device)
    last = pos[None, :, None] + torch.arange(L, device=start_logits.device)  # (1, T, L): the end position i + l
    allowed = (pos[None, :, None] >= context_start[:, None, None]) & (last < context_end[:, None, None])
    scores = scores.masked_fill(~allowed, float("-inf")).view(B, T * L)
    k = min(n_best, T * L)
    top, idx = scores.topk(k, dim=1)
    starts = torch.div(idx, L, rounding_mode="floor")
    return top, starts, starts + idx % L


class SpanCandidates(Metric):
    """Collects each window's best spans over an epoch (summed over DDP ranks by concatenation), for the
    DataModule to turn into one answer per question."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("window_index", "scores", "starts", "ends", "null_scores"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, window_index, scores, starts, ends, null_scores) -> None:  # type: ignore[override]
        self.window_index.append(window_index)
        self.scores.append(scores)
        self.starts.append(starts)
        self.ends.append(ends)
        self.null_scores.append(null_scores)

    def compute(self) -> dict[str, np.ndarray]:
        if not self.window_index:
            return {}
        names = ("window_index", "scores", "starts", "ends", "null_scores")
        return {n: dim_zero_cat(getattr(self, n)).float().cpu().numpy() if n in ("scores", "null_scores")
                else dim_zero_cat(getattr(self, n)).cpu().numpy() for n in names}  # fmt: skip


class QuestionAnswering(_FineTune):
    """Extractive question answering: a linear layer gives every token a start and an end logit (BERT, section
    4.2); the loss is the mean of the start and end cross-entropies over the window's positions.

    A window whose answer lies outside it (or a SQuAD v2 question with none) is trained to point at its null
    position (``[CLS]``, or ``[EXTRACT]`` of the decoder format). At validation and test the best spans of every
    window of a question are pooled, the best becomes its answer (the context's own characters), and exact match
    and F1 are computed as the official SQuAD scorer does (torchmetrics' SQuAD, the same normalisation), logged as
    fractions (``val/f1`` 0.853 is the scorer's 85.3) like every lit_lm metric. ``test`` and ``predict`` write the
    answers as ``predictions.json`` (the official format) into the run's log directory.

    Batches: see :class:`~lit_lm.data.finetuning.question_answering.QACollator`.

    Args:
        n_best_size: Best spans kept per window (and pooled per question).
        max_answer_length: Longest answer in tokens.
        null_score_diff_threshold: SQuAD v2: answer "no answer" when the null score exceeds the best span's by more
            than this.
        lm_loss_weight: GPT-1's auxiliary LM loss on the input (decoders).
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
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        lm_loss_weight: float = 0.0,
    ) -> None:
        if n_best_size < 1 or max_answer_length < 1:
            raise ConfigError(
                f"n_best_size and max_answer_length must be >= 1, got {n_best_size} and {max_answer_length}"
            )
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip
        self.candidates = torch.nn.ModuleDict({s: SpanCandidates() for s in ("val", "test", "predict")})
        self.predictions: dict[str, str] = {}
        """The last validation, test or predict run's answers (question id -> text)."""

    def build_heads(self, config: TransformerConfig) -> None:
        self.span_head = SpanHead(config.n_embd, config.initializer_range)
        self._build_lm_head(config)

    def head_flops_per_token(self, seq_len: int) -> float:
        return super().head_flops_per_token(seq_len) + 6.0 * self.backbone_config.n_embd * 2

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (start logits (B, T), end logits (B, T), hidden (B, T, C)); padding positions get -1e9."""
        types = batch.get("token_type_ids") if self.backbone_config.type_vocab_size > 0 else None
        mask = batch.get("attention_mask")
        hidden = self.backbone(batch["input_ids"], mask, types)
        start, end = (x.float() for x in self.span_head(hidden))
        if mask is not None:
            start, end = (x.masked_fill(mask == 0, -1e9) for x in (start, end))
        return start, end, hidden

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        start, end, hidden = self(batch)
        loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
        on_step = stage == "train"
        if self.hparams.lm_loss_weight > 0:
            lm = self._lm_loss(hidden, batch["input_ids"], batch.get("attention_mask"))
            self.log(f"{stage}/lm_loss", lm, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
            loss = loss + self.hparams.lm_loss_weight * lm
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        if stage != "train":
            self._collect(stage, batch, start, end)
        return loss

    def _collect(self, stage: str, batch: dict[str, torch.Tensor], start: torch.Tensor, end: torch.Tensor) -> None:
        hp = self.hparams
        scores, starts, ends = best_spans(start, end, batch["context_start"], batch["context_end"],
                                          hp.n_best_size, hp.max_answer_length)  # fmt: skip
        rows = torch.arange(start.size(0), device=start.device)
        null = start[rows, batch["null_positions"]] + end[rows, batch["null_positions"]]
        self.candidates[stage].update(batch["window_index"], scores, starts, ends, null)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        start, end, _ = self(batch)
        self._collect("predict", batch, start, end)

    # ------------------------------------------------------------------------------------ answers and scores
    def _answers(self, stage: str) -> dict[str, str]:
        """The questions' answers from the collected spans (the DataModule maps tokens back to characters)."""
        found = self.candidates[stage].compute()
        self.candidates[stage].reset()
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if not found or datamodule is None or not hasattr(datamodule, "answers"):
            return {}
        split = "val" if stage == "val" else "test"
        return datamodule.answers(split, found["window_index"].astype(np.int64), found["starts"], found["ends"],
                                  found["scores"], found["null_scores"],
                                  self.hparams.null_score_diff_threshold)  # fmt: skip

    def _score(self, stage: str) -> None:
        answers = self._answers(stage)
        self.predictions = answers
        if not answers:
            return
        datamodule = self.trainer.datamodule
        references = datamodule.references("val" if stage == "val" else "test", set(answers))
        result = squad([{"id": k, "prediction_text": v} for k, v in answers.items()], references)
        self.log(f"{stage}/f1", float(result["f1"]) / 100, prog_bar=True)
        self.log(f"{stage}/exact_match", float(result["exact_match"]) / 100)
        if stage == "test":
            self._write(answers)

    def _write(self, answers: dict[str, str]) -> None:
        if not self.trainer.is_global_zero:
            return
        from lit_lm.data.finetuning.squad import write_predictions

        path = write_predictions(Path(self.trainer.log_dir or ".") / "predictions.json", answers)
        print(f"lit_lm: wrote {len(answers)} answers to {path}", flush=True)

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def on_predict_epoch_end(self) -> None:
        self.predictions = self._answers("predict")
        if self.predictions:
            self._write(self.predictions)
