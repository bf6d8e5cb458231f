"""What the pretraining DataModules share: the corpus files (or the built-in corpus), the tokenizer (given, or
trained once on the train split and cached), the prepared memory-mapped corpus and the loaders.

The DataModules themselves: :class:`lit_lm.data.causal_lm.CausalLMDataModule` (GPT) and
:class:`lit_lm.data.masked_lm.MaskedLMDataModule` (BERT). Both work alone in any Lightning project::

    dm = CausalLMDataModule(files=["books/"], block_size=256)
    model = MyGPT(vocab_size=dm.vocab_size)                      # the tokenizer is trained (and cached) on first use
    trainer.fit(model, dm)                                       # corpus prepared (and cached) in prepare_data()

Randomness: every random choice derives from ``seed`` and the epoch (train) or from ``seed`` alone (validation),
never from global state, so a run is reproducible with any ``num_workers`` and under DDP (the training samplers
shard themselves over the ranks: :class:`lit_lm.data.samplers.ShardedSampler`). Resuming mid-epoch
(exactly, also under DDP): :mod:`lit_lm.data.resume`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from lit_lm.data.builtin_text import write_builtin_corpus
from lit_lm.data.corpus import PreparedCorpus, Units, prepare_corpus
from lit_lm.data.resume import ResumableDataModule, check_loader_settings, worker_ignores_interrupts
from lit_lm.data.splits import check_fraction
from lit_lm.data.text import resolve_files
from lit_lm.data.tokenizer import Tokenizer, TokenizerKind, resolve_lowercase
from lit_lm.data.tokenizer_training import cached_tokenizer
from lit_lm.errors import DataError

__all__ = ["PretrainingDataModule"]


class PretrainingDataModule(ResumableDataModule):
    """Shared part: files, tokenizer, cached corpus preparation.

    Construction only checks the settings. The tokenizer is trained (and cached) or loaded on first use of
    :attr:`tokenizer`, which ``prepare_data`` does on the one process that writes the cache; ``setup`` and the other
    processes then read it from there.
    """

    #: What the corpus is tokenized as (:mod:`lit_lm.data.corpus`): ``"text"`` for a causal LM, ``"sentence"``
    #: for sentence pairs.
    units: Units = "sentence"

    def __init__(
        self,
        files: Sequence[str | Path] | None,
        tokenizer: str | Path | None,
        vocab_size: int,
        lowercase: bool | None,
        batch_size: int,
        split: str,
        val_fraction: float,
        cache_dir: str | Path,
        num_workers: int,
        seed: int,
        text_field: str,
        tokenizer_kind: TokenizerKind = "wordpiece",
    ) -> None:
        super().__init__()
        check_loader_settings(batch_size, num_workers)
        if split not in ("document", "tail"):
            raise DataError(f"split must be 'document' or 'tail', got {split!r}")
        check_fraction(val_fraction)
        self.batch_size, self.split, self.val_fraction = batch_size, split, val_fraction
        self.cache_dir = Path(cache_dir).expanduser()
        self.num_workers, self.seed, self.text_field = num_workers, seed, text_field
        self.builtin = not files
        self._user_files = resolve_files(files) if files else None  # a missing file is a clear error at once
        self._tokenizer_file, self._vocab_size, self._lowercase = tokenizer, vocab_size, lowercase
        self._tokenizer_kind: TokenizerKind = tokenizer_kind
        if tokenizer is None:
            resolve_lowercase(tokenizer_kind, lowercase)  # a bad combination fails here, not on first use
        self.corpus: PreparedCorpus | None = None

    @cached_property
    def files(self) -> list[Path]:
        """The corpus files (the built-in corpus is written to ``cache_dir`` on first use)."""
        return self._user_files or [write_builtin_corpus(self.cache_dir / "builtin")]

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The given tokenizer, or one of ``tokenizer_kind`` and ``vocab_size`` trained on the train split (cached)."""
        if self._tokenizer_file is not None:
            return Tokenizer.from_file(self._tokenizer_file, lowercase=self._lowercase)
        return cached_tokenizer(
            self.files, self.cache_dir, vocab_size=self._vocab_size, lowercase=self._lowercase,
            kind=self._tokenizer_kind, text_field=self.text_field, split=self.split, val_fraction=self.val_fraction,
            seed=self.seed,
        )  # fmt: skip

    def _prepare(self) -> PreparedCorpus:
        return prepare_corpus(
            self.files, self.tokenizer, self.cache_dir / "corpus", split=self.split, val_fraction=self.val_fraction,
            seed=self.seed, text_field=self.text_field, units=self.units,
        )  # fmt: skip

    def prepare_data(self) -> None:
        """Train the tokenizer if none was given, then read, split and tokenize the corpus into the cache (both
        reused when unchanged)."""
        self._prepare()

    def _corpus(self) -> PreparedCorpus:
        if self.corpus is None:
            self.corpus = self._prepare()
        return self.corpus

    def _loader(self, dataset: Dataset, **kw: Any) -> DataLoader:
        if self.num_workers > 0:
            # workers only read memmaps; keep the Rust tokenizer's fork warning away
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            kw["worker_init_fn"] = worker_ignores_interrupts
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, **kw,
        )  # fmt: skip

    @property
    def num_train_tokens(self) -> int:
        return self._corpus().num_tokens("train")

    @property
    def num_val_tokens(self) -> int:
        """Validation tokens (each predicted once by the causal LM's validation pass)."""
        return self._corpus().num_tokens("val")

    @property
    def val_num_chars(self) -> int:
        """Characters of the validation text, for bits per character = NLL nats / (val_num_chars * ln 2)."""
        return self._corpus().num_chars("val")

    @property
    def val_round_trip(self) -> bool:
        """Whether the validation tokens decode to exactly the validation text (checked once, when the corpus was
        prepared with ``units="text"``): only then is NLL / ``val_num_chars`` a bits-per-character figure."""
        return bool(self._corpus().stats("val").get("round_trip", False))

    @cached_property
    def val_unigram(self) -> dict[str, float]:
        """The validation scores of a unigram model fit on the training split (see
        :meth:`~lit_lm.data.corpus.PreparedCorpus.unigram_baseline`): ``loss`` (nats/token), ``acc`` and, where the
        tokens are exactly the text (:attr:`val_round_trip`), ``bpc``. Tasks log them as ``baseline/unigram_*``."""
        corpus = self._corpus()
        out = corpus.unigram_baseline("val")
        if self.val_round_trip and self.val_num_chars:
            out["bpc"] = out["loss"] * self.num_val_tokens / self.val_num_chars / math.log(2)
        return out

    @property
    def val_num_bytes(self) -> int:
        """UTF-8 bytes of the validation text, for bits per byte."""
        return self._corpus().num_bytes("val")


