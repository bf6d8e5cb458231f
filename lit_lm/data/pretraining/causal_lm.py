"""Causal LM data (GPT-1): random or sequential training windows over the token stream, a validation pass in
which every token is predicted once, and :class:`CausalLMDataModule`.

Randomness: every random choice derives from ``seed`` and the epoch (train) or from ``seed`` alone (validation),
never from global state, so a run is reproducible with any ``num_workers`` and under DDP (the training samplers
shard themselves over the ranks: :class:`lit_lm.data.core.samplers.ShardedSampler`). Resuming mid-epoch
(exactly, also under DDP): :mod:`lit_lm.data.core.resume`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_lm.config import IGNORE_INDEX
from lit_lm.data.core.samplers import ShardedSampler
from lit_lm.data.core.tokenizer import TokenizerKind
from lit_lm.data.pretraining.base import PretrainingDataModule
from lit_lm.data.pretraining.corpus import DOC_SEPARATOR, PreparedCorpus
from lit_lm.errors import DataError

__all__ = ["CausalLMDataModule", "CausalValDataset", "CausalWindowDataset", "WindowSampler"]


class CausalWindowDataset(Dataset):
    """Training windows of a token array: item ``start`` -> ``input_ids = t[start:start+T]``,
    ``labels = t[start+1:start+T+1]``. Indices come from a :class:`WindowSampler`.

    Args:
        corpus: The prepared corpus.
        split: Which split's tokens.
        block_size: Window length ``T``.
    """

    def __init__(self, corpus: PreparedCorpus, split: str, block_size: int) -> None:
        self.corpus, self.split, self.block_size = corpus, split, block_size

    def __len__(self) -> int:
        """Number of valid window starts."""
        return max(0, self.corpus.num_tokens(self.split) - self.block_size)

    def __getitem__(self, start: int) -> dict[str, torch.Tensor]:
        t = self.corpus.tokens(self.split)
        a = torch.from_numpy(t[start : start + self.block_size + 1].astype(np.int64))
        return {"input_ids": a[:-1], "labels": a[1:]}


class WindowSampler(ShardedSampler):
    """Start offsets of training windows for one epoch, derived from ``(seed, epoch)``; under DDP each rank takes its
    own share of them (:class:`~lit_lm.data.core.samplers.ShardedSampler`).

    Args:
        num_tokens: Length of the token array.
        block_size: Window length ``T`` (a window reads ``T + 1`` tokens).
        mode: ``"random"``: ``num_samples`` uniformly random starts (windows may overlap); ``"sequential"``: the
            non-overlapping windows ``off, off+T, off+2T, ...`` with a random ``off < T`` per epoch, in a shuffled
            order, so an epoch sees (almost) every token once.
        num_samples: Windows per epoch; default (``None``) ``num_tokens // T`` in random mode and all windows in
            sequential mode (where a smaller number takes the first ones of the shuffled order).
        seed: Base seed.
        num_replicas: World size; None: from ``torch.distributed``.
        rank: This process's rank; None: from ``torch.distributed``.
    """

    def __init__(
        self, num_tokens: int, block_size: int, mode: Literal["random", "sequential"] = "random",
        num_samples: int | None = None, seed: int = 0, num_replicas: int | None = None, rank: int | None = None,
    ) -> None:  # fmt: skip
        if num_tokens < block_size + 1:
            raise DataError(f"{num_tokens} tokens are fewer than block_size + 1 = {block_size + 1}")
        if mode not in ("random", "sequential"):
            raise DataError(f"train_mode must be 'random' or 'sequential', got {mode!r}")
        super().__init__(0, seed, num_replicas, rank)
        self.num_tokens, self.block_size, self.mode = num_tokens, block_size, mode
        self.num_samples = num_samples

    def _starts(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        last = self.num_tokens - self.block_size - 1  # largest valid start
        if self.mode == "random":
            n = self.num_samples if self.num_samples is not None else max(1, self.num_tokens // self.block_size)
            return rng.integers(0, last + 1, size=n)
        off = int(rng.integers(0, min(self.block_size, last + 1)))
        starts = np.arange(off, last + 1, self.block_size)
        starts = starts[rng.permutation(len(starts))]
        return starts if self.num_samples is None else starts[: self.num_samples]

    _order = _starts

    def _epoch_size(self) -> int:
        if self.mode == "random":
            return self.num_samples if self.num_samples is not None else max(1, self.num_tokens // self.block_size)
        return len(self._starts())


class CausalValDataset(Dataset):
    """A fixed pass over the validation tokens that predicts every token exactly once.

    The stream ``[context] + val_tokens`` is cut into non-overlapping windows of ``T + 1``; window ``i`` has
    ``input_ids = s[iT : iT+T]`` and ``labels = s[iT+1 : iT+T+1]``, so label positions cover ``val_tokens``
    once. ``context`` (the token before the first validation token) is the last train token: for
    ``split="tail"`` the true predecessor; for ``split="document"`` a document boundary as training sees them.
    A corpus without training text (whole validation files) takes ``context`` instead (the DataModule passes the
    last token of a document boundary). The last window is padded at the end (``input_ids`` with ``pad_id``,
    ``labels`` with -100).
    """

    def __init__(
        self, corpus: PreparedCorpus, block_size: int, pad_id: int, split: str = "val", context: int | None = None
    ) -> None:
        self.corpus, self.block_size, self.pad_id, self.split = corpus, block_size, pad_id, split
        train = corpus.tokens("train")
        self.context = int(train[-1]) if train.size else (pad_id if context is None else context)

    def __len__(self) -> int:
        return -(-self.corpus.num_tokens(self.split) // self.block_size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        v = self.corpus.tokens(self.split)
        T, s = self.block_size, i * self.block_size
        labels = v[s : s + T].astype(np.int64)
        n = labels.size
        inputs = np.concatenate([[self.context], v[: n - 1]]) if s == 0 else v[s - 1 : s - 1 + n]
        x = np.full(T, self.pad_id, dtype=np.int64)
        y = np.full(T, IGNORE_INDEX, dtype=np.int64)
        x[:n], y[:n] = inputs, labels
        return {"input_ids": torch.from_numpy(x), "labels": torch.from_numpy(y)}


class CausalLMDataModule(PretrainingDataModule):
    """Contiguous token windows for causal (GPT-style) language modelling.

    Batches: ``{"input_ids": (B, T) long, "labels": (B, T) long}`` with ``labels[:, i] = next token after
    input_ids[:, i]``. Validation is a fixed pass of non-overlapping windows in which every validation token is a
    label exactly once (the last window padded: ``input_ids`` with ``[PAD]``, ``labels`` with -100, at the end,
    so no attention mask is needed). The token stream is the text itself, line breaks and spaces included
    (:mod:`lit_lm.data.pretraining.corpus`, ``units="text"``): with ``split="document"`` each document is followed by
    ``<|endoftext|>`` (a byte-level BPE trained by lit_lm; a tokenizer without one: a blank line). Bits per character =
    sum of the validation NLL (nats) / (``val_num_chars`` * ln 2): every token is paid for, the end-of-text tokens
    too, and only the text's own characters are counted (the token is no character); reported only when the
    tokenizer gives the validation text back exactly (:attr:`val_round_trip`).

    Args:
        files: Text/JSONL files or directories; ``None`` = the built-in generated corpus.
        tokenizer: A ``tokenizer.json`` / BERT ``vocab.txt`` / lit_lm checkpoint; ``None`` = train a tokenizer of
            ``tokenizer_kind`` and ``vocab_size`` on the train split (cached in ``cache_dir``).
        vocab_size: Vocabulary size when training a tokenizer.
        lowercase: Lowercase the text: when training a tokenizer (unset: WordPiece yes, as BERT; byte-level BPE no,
            and it refuses True: it would not be lossless) or loading a ``vocab.txt`` (unset: yes).
        tokenizer_kind: Kind of a tokenizer trained here: ``bpe`` (byte-level, lossless:
            ``decode(encode(text)) == text``, as GPT-2; the default) or ``wordpiece`` (BERT's: it drops line breaks,
            so no bits per character are reported); see :mod:`lit_lm.data.core.tokenizer`. Ignored when ``tokenizer`` is
            given.
        block_size: Context length ``T``.
        batch_size: Windows per batch.
        split: ``"document"`` (validation = whole documents) or ``"tail"`` (the last ``val_fraction`` of the
            characters, as nanoGPT splits tiny shakespeare). Not used with ``val_files``.
        val_fraction: Share of documents / characters for validation.
        train_mode: ``"random"``: random window starts; ``"sequential"``: each epoch a shuffled pass over
            non-overlapping windows (random phase per epoch).
        train_samples_per_epoch: Windows per training epoch (default: ``train_tokens // block_size``, or all
            windows in sequential mode).
        cache_dir: Where tokenizers and prepared corpora are cached.
        num_workers: DataLoader worker processes.
        seed: Seed of the split, the tokenizer's training data and the window sampling.
        text_field: JSONL field holding the text.
        val_files: Text files to validate on, every character of them (first window from the start of the text),
            instead of a split of ``files``, which then all go to training. ``validate --data.val_files book.txt``
            scores a checkpoint on a book.
        test_files: Text files that ``test`` scores in full, the same way (``test/bpc``).
    """

    units = "text"

    def __init__(
        self,
        files: list[str | Path] | None = None,
        tokenizer: str | Path | None = None,
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "bpe",
        block_size: int = 128,
        batch_size: int = 32,
        split: Literal["document", "tail"] = "document",
        val_fraction: float = 0.05,
        train_mode: Literal["random", "sequential"] = "random",
        train_samples_per_epoch: int | None = None,
        cache_dir: str | Path = ".cache/lit_lm",
        num_workers: int = 0,
        seed: int = 42,
        text_field: str = "text",
        val_files: list[str | Path] | str | Path | None = None,
        test_files: list[str | Path] | str | Path | None = None,
    ) -> None:
        if block_size < 1:
            raise DataError(f"block_size must be >= 1, got {block_size}")
        if train_mode not in ("random", "sequential"):
            raise DataError(f"train_mode must be 'random' or 'sequential', got {train_mode!r}")
        if train_samples_per_epoch is not None and train_samples_per_epoch < 1:
            raise DataError(f"train_samples_per_epoch must be >= 1, got {train_samples_per_epoch}")
        super().__init__(files, tokenizer, vocab_size, lowercase, batch_size, split, val_fraction, cache_dir,
                         num_workers, seed, text_field, tokenizer_kind, val_files, test_files)  # fmt: skip
        self.block_size, self.train_mode, self.train_samples_per_epoch = block_size, train_mode, train_samples_per_epoch
        self.train_dataset: CausalWindowDataset | None = None
        self.val_dataset: CausalValDataset | None = None
        self.test_dataset: CausalValDataset | None = None
        self.train_sampler: WindowSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the prepared corpora (preparing them if ``prepare_data`` did not run) and build the datasets that
        ``stage`` uses (``fit``: train and validation; ``validate``; ``test``; ``None``: all there are)."""
        if stage in ("fit", None):
            pc = self._corpus()
            n_train = pc.num_tokens("train")
            if n_train < self.block_size + 1:
                raise DataError(
                    f"the train split has {n_train} tokens ({pc.num_docs('train')} documents), fewer than "
                    f"block_size + 1 = {self.block_size + 1}; lower block_size or add text"
                )
            self.train_dataset = CausalWindowDataset(pc, "train", self.block_size)
            self.train_sampler = WindowSampler(n_train, self.block_size, self.train_mode, self.train_samples_per_epoch,
                                               self.seed)  # fmt: skip
        if stage in ("fit", "validate", None):
            self.val_dataset = self._eval_dataset("val")
        if stage == "test" or (stage is None and self.test_files is not None):
            self.test_dataset = self._eval_dataset("test")

    def _eval_dataset(self, stage: str) -> CausalValDataset:
        corpus, split = self._eval_source(stage)
        # what precedes a document in training: <|endoftext|>, or the last token of a blank line without one
        eot = self.tokenizer.eot_id
        boundary = [eot] if eot is not None else self.tokenizer.encode(DOC_SEPARATOR)
        return CausalValDataset(corpus, self.block_size, self.pad_token_id, split,
                                context=boundary[-1] if boundary else None)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_sampler is not None
        self._apply_resume(self.train_sampler)
        return self._loader(self.train_dataset, sampler=self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, shuffle=False)


