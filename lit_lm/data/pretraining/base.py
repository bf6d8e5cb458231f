"""What the pretraining DataModules share: the corpus files (or the built-in corpus), the tokenizer (given, or
trained once on the train split and cached), the prepared memory-mapped corpus and the loaders.

The DataModules themselves: :class:`lit_lm.data.pretraining.causal_lm.CausalLMDataModule` (GPT) and
:class:`lit_lm.data.pretraining.masked_lm.MaskedLMDataModule` (BERT). Both work alone in any Lightning project::

    dm = CausalLMDataModule(files=["books/"], block_size=256)
    model = MyGPT(vocab_size=dm.vocab_size)                      # the tokenizer is trained (and cached) on first use
    trainer.fit(model, dm)                                       # corpus prepared (and cached) in prepare_data()

Whole files as validation or test text (``val_files``, ``test_files``): every character of them is scored, from the
first, and none of them is trained on; the training split is then all of ``files``. Evaluating a trained model on
another text::

    dm = CausalLMDataModule(tokenizer="runs/x/checkpoints/last.ckpt", val_files=["book.txt"])
    trainer.validate(model, dm)                                  # val/bpc over every character of book.txt

Randomness: every random choice derives from ``seed`` and the epoch (train) or from ``seed`` alone (validation),
never from global state, so a run is reproducible with any ``num_workers`` and under DDP (the training samplers
shard themselves over the ranks: :class:`lit_lm.data.core.samplers.ShardedSampler`). Resuming mid-epoch
(exactly, also under DDP): :mod:`lit_lm.data.core.resume`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from lit_lm.data.core.io import show_data_progress
from lit_lm.data.core.resume import ResumableDataModule, check_loader_settings, worker_ignores_interrupts
from lit_lm.data.core.splits import check_fraction
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind, resolve_lowercase
from lit_lm.data.pretraining.builtin import write_builtin_corpus
from lit_lm.data.pretraining.corpus import PreparedCorpus, Units, prepare_corpus, unigram_scores
from lit_lm.data.pretraining.text import resolve_files
from lit_lm.data.pretraining.tokenizer_training import cached_tokenizer
from lit_lm.errors import DataError

__all__ = ["PretrainingDataModule"]


class PretrainingDataModule(ResumableDataModule):
    """Shared part: files, tokenizer, cached corpus preparation.

    Construction only checks the settings. The tokenizer is trained (and cached) or loaded on first use of
    :attr:`tokenizer`, which ``prepare_data`` does on the one process that writes the cache; ``setup`` and the other
    processes then read it from there.

    Up to three prepared corpora: the training corpus (``files``: its train split, and its validation split unless
    ``val_files`` is given), and one per set of whole evaluation files (``val_files``, ``test_files``), each prepared
    as one exact text (:func:`~lit_lm.data.pretraining.corpus.split_corpus` with ``val_fraction`` 1).
    """

    #: What the corpus is tokenized as (:mod:`lit_lm.data.pretraining.corpus`): ``"text"`` for a causal LM,
    #: ``"sentence"`` for sentence pairs.
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
        val_files: Sequence[str | Path] | None = None,
        test_files: Sequence[str | Path] | None = None,
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
        self.val_files = resolve_files(val_files) if val_files else None
        self.test_files = resolve_files(test_files) if test_files else None
        self._tokenizer_file, self._vocab_size, self._lowercase = tokenizer, vocab_size, lowercase
        self._tokenizer_kind: TokenizerKind = tokenizer_kind
        if tokenizer is None:
            resolve_lowercase(tokenizer_kind, lowercase)  # a bad combination fails here, not on first use
        self.corpus: PreparedCorpus | None = None
        self._eval_corpora: dict[str, PreparedCorpus] = {}

    @cached_property
    def files(self) -> list[Path]:
        """The corpus files (the built-in corpus is written to ``cache_dir`` on first use)."""
        return self._user_files or [write_builtin_corpus(self.cache_dir / "builtin")]

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The given tokenizer, or one of ``tokenizer_kind`` and ``vocab_size`` trained on the train split (cached)."""
        if self._tokenizer_file is not None:
            return Tokenizer.from_file(self._tokenizer_file, lowercase=self._lowercase)
        holdout = {"split": self.split, "val_fraction": self.val_fraction} if self.val_files is None else {}
        return cached_tokenizer(
            self.files, self.cache_dir, vocab_size=self._vocab_size, lowercase=self._lowercase,
            kind=self._tokenizer_kind, text_field=self.text_field, seed=self.seed, **holdout,
        )  # fmt: skip

    def _prepare(self, files: Sequence[Path] | None = None) -> PreparedCorpus:
        """The training corpus (``files=None``), or whole ``files`` as one validation text."""
        if files is not None:  # every character of them, in order: the "val" split of a tail split at 0
            split, val_fraction = "tail", 1.0
        elif self.val_files is not None:  # all of `files` is training text
            split, val_fraction = "tail", 0.0
        else:
            split, val_fraction = self.split, self.val_fraction
        return prepare_corpus(
            files or self.files, self.tokenizer, self.cache_dir / "corpus", split=split, val_fraction=val_fraction,
            seed=self.seed, text_field=self.text_field, units=self.units, progress=show_data_progress(self.trainer),
        )  # fmt: skip

    def prepare_data(self) -> None:
        """Train the tokenizer if none was given, then read, split and tokenize the corpus (and the whole validation
        and test files) into the cache (all reused when unchanged)."""
        self._prepare()
        for files in (self.val_files, self.test_files):
            if files is not None:
                self._prepare(files)

    def _corpus(self) -> PreparedCorpus:
        if self.corpus is None:
            self.corpus = self._prepare()
        return self.corpus

    def _eval_source(self, stage: str) -> tuple[PreparedCorpus, str]:
        """The prepared corpus and split that ``stage`` (``"val"`` or ``"test"``) scores."""
        files = self.val_files if stage == "val" else self.test_files
        if files is None:
            if stage == "test":
                raise DataError("no test text: set data.test_files (text files scored in full by `test`)")
            return self._corpus(), "val"
        if stage not in self._eval_corpora:
            self._eval_corpora[stage] = self._prepare(files)
        return self._eval_corpora[stage], "val"

    def _loader(self, dataset: Dataset, **kw: Any) -> DataLoader:
        if self.num_workers > 0:
            # workers only read memmaps; keep the Rust tokenizer's fork warning away
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            kw["worker_init_fn"] = worker_ignores_interrupts
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, **kw,
        )  # fmt: skip

    def predict_dataloader(self) -> DataLoader:
        """A corpus has nothing to predict: ``predict`` generates from prompts (:class:`PromptDataModule`)."""
        raise DataError(
            f"{type(self).__name__} has no predict split: predict generates text from prompts, e.g. "
            "--data lit_lm.data.PromptDataModule --data.prompts '[\"ROMEO:\"]' (the tokenizer comes from "
            "--ckpt_path); to score a corpus, run validate or test"
        )

    @property
    def num_train_tokens(self) -> int:
        return self._corpus().num_tokens("train")

    def eval_text(self, stage: str = "val") -> dict[str, Any]:
        """What the ``stage`` (``"val"`` or ``"test"``) pass scores: ``num_tokens`` (each predicted once by the causal
        LM's pass), ``num_chars`` and ``num_bytes`` of the text, and ``round_trip``: whether the tokens decode to
        exactly that text (checked once, when the corpus was prepared with ``units="text"``), so that only then
        NLL / ``num_chars`` is a bits-per-character figure."""
        corpus, split = self._eval_source(stage)
        stats = corpus.stats(split)
        return {"num_tokens": int(stats["num_tokens"]), "num_chars": int(stats["num_chars"]),
                "num_bytes": int(stats["num_bytes"]), "round_trip": bool(stats.get("round_trip", False))}  # fmt: skip

    def unigram(self, stage: str = "val") -> dict[str, float]:
        """The ``stage`` scores of a unigram model fit on the training split (see
        :func:`~lit_lm.data.pretraining.corpus.unigram_scores`): ``loss`` (nats/token), ``acc`` and, where the tokens
        are exactly
        the text (``round_trip``), ``bpc``. Tasks log them as ``baseline/unigram_*``."""
        corpus, split = self._eval_source(stage)
        tokens = corpus.tokens(split)
        if tokens.size == 0:
            raise DataError(f"the {stage} text has no tokens", corpus.path)
        out = unigram_scores(self._corpus().tokens("train"), tokens, self.tokenizer.vocab_size)
        text = self.eval_text(stage)
        if text["round_trip"] and text["num_chars"]:
            out["bpc"] = out["loss"] * text["num_tokens"] / text["num_chars"] / math.log(2)
        return out

    @property
    def num_val_tokens(self) -> int:
        """Validation tokens (each predicted once by the causal LM's validation pass)."""
        return self.eval_text("val")["num_tokens"]

    @property
    def val_num_chars(self) -> int:
        """Characters of the validation text, for bits per character = NLL nats / (val_num_chars * ln 2)."""
        return self.eval_text("val")["num_chars"]

    @property
    def val_round_trip(self) -> bool:
        """Whether the validation tokens decode to exactly the validation text (see :meth:`eval_text`)."""
        return self.eval_text("val")["round_trip"]

    @cached_property
    def val_unigram(self) -> dict[str, float]:
        """:meth:`unigram` of the validation text."""
        return self.unigram("val")

    @property
    def val_num_bytes(self) -> int:
        """UTF-8 bytes of the validation text, for bits per byte."""
        return self.eval_text("val")["num_bytes"]
