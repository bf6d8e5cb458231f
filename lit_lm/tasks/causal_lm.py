"""GPT-style pretraining: next-token prediction with a causal decoder."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import SumMetric

from lit_lm.config import IGNORE_INDEX, ConfigError, TransformerConfig
from lit_lm.model import LMHead
from lit_lm.tasks.base import LMTask


class CausalLM(LMTask):
    """Causal language modelling (GPT-1 pretraining).

    Batches: ``{"input_ids": (B, T), "labels": (B, T)}`` with labels the next tokens (-100 = ignore).
    Logs ``train/loss``, ``val/loss`` (nats per token), ``val/ppl`` and ``val/bpc``: bits per character of the
    validation text, from the DataModule's ``eval_text("val")`` (characters and tokens), so that models with
    different tokenizers compare fairly; ``test`` logs the same as ``test/*``. The bpc is logged only when the
    DataModule says (``round_trip``) that the tokens decode to exactly that text (a lossless tokenizer): otherwise
    the model would not pay for what the tokenizer drops, and the run says so once. ``predict`` continues the
    prompts of a batch with :meth:`generate`.

    Args:
        max_new_tokens: Tokens to generate per prompt in ``predict``.
        temperature: Sampling temperature in ``predict`` (0 = greedy).
        top_k: Sample only among the k most likely tokens in ``predict`` (None = all).
        (other arguments: see :class:`~lit_lm.tasks.base.LMTask`)
    """

    def __init__(
        self,
        preset: str = "gpt-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 2.5e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: float = 0.0,
        lr_schedule: Literal["linear", "cosine", "constant"] = "cosine",
        min_lr_ratio: float = 0.0,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = 50,
    ) -> None:
        super().__init__(
            preset, config, vocab_size, init_from, learning_rate, weight_decay, betas, eps, warmup_steps,
            lr_schedule, min_lr_ratio,
        )  # fmt: skip
        self.val_nll = SumMetric()
        self.val_tokens = SumMetric()
        self._said: set[str] = set()

    def build_heads(self, config: TransformerConfig) -> None:
        if not config.causal:
            raise ConfigError(f"CausalLM needs a decoder preset (causal=True); {config.name!r} is an encoder")
        self.lm_head = LMHead(self.backbone.wte)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) next-token logits."""
        return self.lm_head(self.backbone(input_ids, attention_mask=attention_mask))

    def _nll(self, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
        """Next-token NLL (fp32) of a batch; the LM head and the cross-entropy fused (no ``(B, T, vocab)`` logits)."""
        hidden = self.backbone(batch["input_ids"], attention_mask=batch.get("attention_mask"))
        return self.lm_head.loss(hidden, batch["labels"], reduction=reduction)

    def head_flops_per_token(self, seq_len: int) -> float:
        """The tied LM head: a (C x vocab) product at every position, forward and backward."""
        config = self.backbone_config
        return 6.0 * config.n_embd * config.vocab_size

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._nll(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_nll.update(self._nll(batch, reduction="sum"))
        self.val_tokens.update((batch["labels"] != IGNORE_INDEX).sum())

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_text_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_text_scores("test")

    def _log_text_scores(self, stage: str) -> None:
        """``<stage>/loss``, ``/ppl`` and ``/bpc`` of the pass that just ended (both passes sum into the same
        metrics: validation and test never run at once)."""
        nll, tokens = self.val_nll.compute(), self.val_tokens.compute()  # summed over all ranks
        self.val_nll.reset()
        self.val_tokens.reset()
        if tokens == 0:
            return
        self.log_unigram_baseline(stage)
        loss = nll / tokens
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=False)
        self.log(f"{stage}/ppl", torch.exp(loss))
        bpc = self._bits_per_char(loss, int(tokens), stage)
        if bpc is not None:
            self.log(f"{stage}/bpc", bpc, prog_bar=True)

    def _bits_per_char(self, loss: torch.Tensor, tokens: int, stage: str = "val") -> torch.Tensor | None:
        """Bits per character of the ``stage`` text, or None (said once) where the DataModule cannot vouch that the
        tokens are exactly its text: ``eval_text(stage)`` gives ``round_trip`` (decode(tokens) == text),
        ``num_chars`` and ``num_tokens`` (see :class:`~lit_lm.data.CausalLMDataModule`)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.trainer.sanity_checking or not hasattr(datamodule, "eval_text"):  # (sanity-check metrics: not logged)
            return None
        text = datamodule.eval_text(stage)
        chars, total_tokens = text["num_chars"], text["num_tokens"]
        if not (chars and total_tokens):
            return None
        if not text["round_trip"]:
            self._say_once(
                "no_bpc",
                f"{stage}/bpc not reported: the tokenizer does not give the {stage} text back exactly (a WordPiece "
                "tokenizer drops line breaks and spacing, which the model then never pays for); use a byte-level "
                f"BPE (tokenizer_kind: bpe) for bits per character. {stage}/loss and {stage}/ppl are per token.",
            )
            return None
        if tokens != total_tokens:
            self._say_once(
                f"partial_bpc_{stage}",
                f"{stage}/bpc is estimated: this pass predicted {tokens} of the {total_tokens} {stage} tokens "
                "(limit_val_batches, or a sampler that pads), scaled by the text's characters per token",
            )
        # total NLL of the text (nats) / its characters / ln 2
        return loss * total_tokens / chars / math.log(2)

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            rank_zero_info(message)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue (B, T) prompts by ``max_new_tokens`` sampled tokens; returns (B, T + max_new_tokens)."""
        n_positions = self.backbone_config.n_positions
        for _ in range(max_new_tokens):
            context = input_ids[:, -n_positions:]
            logits = self(context)[:, -1, :].float()  # (B, vocab)
            if temperature <= 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            input_ids = torch.cat([input_ids, next_id], dim=1)
        return input_ids

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        hp = self.hparams
        out = self.generate(batch["input_ids"], hp.max_new_tokens, hp.temperature, hp.top_k)
        result: dict[str, Any] = {"input_ids": out}
        tokenizer = getattr(getattr(self.trainer, "datamodule", None), "tokenizer", None)
        if tokenizer is not None:
            result["text"] = [tokenizer.decode(row.tolist()) for row in out]
        return result
