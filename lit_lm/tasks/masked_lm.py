"""BERT-style pretraining: masked language modelling plus (optionally) next-sentence prediction."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from lit_lm._lightning import attached_trainer
from lit_lm.config import IGNORE_INDEX, ConfigError, TransformerConfig
from lit_lm.model import MLMHead, NSPHead
from lit_lm.tasks.base import LMTask


class MaskedLM(LMTask):
    """Masked LM + NSP (BERT pretraining).

    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels`` (original token at masked
    positions, -100 elsewhere) and, with NSP, ``next_sentence_label`` (0 = B follows A, 1 = random B). The MLM
    head runs only at the masked positions (~15% of tokens), which saves most of the vocabulary projection.
    Logs ``{train,val}/loss``, ``mlm_loss``, ``mlm_acc``, ``nsp_loss`` and ``nsp_acc``.

    Args:
        nsp: Train the next-sentence-prediction head too (needs a backbone with a pooler).
        (other arguments: see :class:`~lit_lm.tasks.base.LMTask`)
    """

    def __init__(
        self,
        preset: str = "bert-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        warmup_steps: float = 0.0,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
        nsp: bool = True,
    ) -> None:
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in ("train", "val", "test") for name in ("mlm_acc", "nsp_acc")}
        )

    def build_heads(self, config: TransformerConfig) -> None:
        if config.causal:
            raise ConfigError(f"MaskedLM needs an encoder preset (causal=False); {config.name!r} is a decoder")
        self.mlm_head = MLMHead(config, self.backbone.wte)
        if self.hparams.nsp:
            if not config.pooler:
                raise ConfigError("NSP needs the pooler: set config.pooler=true or nsp=false")
            self.nsp_head = NSPHead(config)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses and predictions of one batch: ``loss``, ``mlm_loss``, ``mlm_preds`` / ``mlm_labels`` (at the
        masked positions) and, with NSP, ``nsp_loss`` and ``nsp_logits``.

        The MLM head runs at the masked positions only, and its vocabulary projection is fused with the
        cross-entropy (:func:`~lit_lm.model.heads.linear_cross_entropy`), so no ``(n_masked, vocab)`` logits are
        kept; ``mlm_preds`` (their argmax) comes from the same pass.
        """
        hidden = self.backbone(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        labels = batch["labels"]
        selected = labels != IGNORE_INDEX
        mlm_labels = labels[selected]
        mlm_loss, mlm_preds = self.mlm_head.loss(hidden[selected], mlm_labels)  # 0 when nothing is masked
        out = {"mlm_preds": mlm_preds, "mlm_labels": mlm_labels, "mlm_loss": mlm_loss, "loss": mlm_loss}
        if self.hparams.nsp and "next_sentence_label" in batch:
            nsp_logits = self.nsp_head(self.backbone.pool(hidden)).float()
            out["nsp_logits"] = nsp_logits
            out["nsp_loss"] = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
            out["loss"] = out["loss"] + out["nsp_loss"]
        return out

    def head_flops_per_token(self, seq_len: int) -> float:
        """MLM head (dense + tied decoder) at the masked share of the positions (``mlm_probability`` of the
        DataModule, else 0.15); the pooler and NSP classifier once per sequence."""
        config = self.backbone_config
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        share = float(getattr(datamodule, "mlm_probability", 0.15))
        C = config.n_embd
        flops = share * 6.0 * (C * C + C * config.vocab_size)
        if self.hparams.nsp:
            flops += 6.0 * (C * C + 2 * C) / seq_len
        return flops

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self(batch)
        on_step = stage == "train"
        self.log(
            f"{stage}/loss", out["loss"], prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step
        )
        self.log(f"{stage}/mlm_loss", out["mlm_loss"], on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        mlm_acc = self.metrics[f"{stage}_mlm_acc"]
        mlm_acc((out["mlm_preds"] == out["mlm_labels"]).float())
        self.log(f"{stage}/mlm_acc", mlm_acc, on_step=on_step, on_epoch=not on_step)
        if "nsp_logits" in out:
            nsp_acc = self.metrics[f"{stage}_nsp_acc"]
            nsp_acc((out["nsp_logits"].argmax(-1) == batch["next_sentence_label"]).float())
            self.log(f"{stage}/nsp_loss", out["nsp_loss"], on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
            self.log(f"{stage}/nsp_acc", nsp_acc, on_step=on_step, on_epoch=not on_step)
        return out["loss"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_unigram_baseline()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_unigram_baseline("test")
