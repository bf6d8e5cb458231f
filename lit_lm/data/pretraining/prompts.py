"""Prompts for ``python -m lit_lm predict`` with a :class:`~lit_lm.tasks.CausalLM`."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.errors import DataError


class PromptDataModule(L.LightningDataModule):
    """Text prompts to continue, one prompt per batch (prompts differ in length; generation needs no padding).

    Args:
        prompts: The texts to continue.
        tokenizer: The tokenizer of the model: a ``tokenizer.json``, or the lit_lm ``.ckpt`` being used (which
            stores its tokenizer). ``python -m lit_lm predict --ckpt_path x.ckpt`` sets it to ``x.ckpt`` when unset.
        prompts_file: Also read prompts from this UTF-8 file, one per line (blank lines skipped).
    """

    def __init__(
        self, tokenizer: str | None = None, prompts: list[str] | None = None, prompts_file: str | None = None
    ) -> None:
        super().__init__()
        if tokenizer is None:
            raise DataError("no tokenizer: set data.tokenizer to the model's checkpoint (or pass --ckpt_path)")
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.vocab_size: int = self.tokenizer.vocab_size
        texts = list(prompts or [])
        if prompts_file is not None:
            try:
                with open(prompts_file, encoding="utf-8") as f:
                    texts += [line.rstrip("\n") for line in f if line.strip()]
            except FileNotFoundError:
                raise DataError("prompts file not found", prompts_file) from None
            except UnicodeDecodeError as e:
                raise DataError(f"not UTF-8 ({e.reason} at byte {e.start})", prompts_file) from None
        if not texts:
            raise DataError("no prompts: give prompts: [...] or prompts_file")
        self.prompts = texts
        self.encoded = [self.tokenizer.encode(t) for t in texts]
        empty = [t for t, ids in zip(texts, self.encoded, strict=True) if not ids]
        if empty:
            raise DataError(f"prompt(s) {empty[:3]} tokenize to nothing; give at least one word")

    def predict_dataloader(self) -> DataLoader:
        batches = [{"input_ids": torch.tensor([ids], dtype=torch.long)} for ids in self.encoded]
        return DataLoader(batches, batch_size=None)
