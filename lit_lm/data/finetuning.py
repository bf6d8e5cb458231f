"""Machinery shared by the fine-tuning task data (NLI in :mod:`lit_lm.data.nli`, multiple choice in
:mod:`lit_lm.data.multiple_choice`); the examples and labels themselves live in :mod:`lit_lm.data.examples`.

- Formatting: :func:`encode_pairs` turns (first text, second text) pairs into model inputs, in one of two layouts::

      decoder (GPT-1):  [CLS]? first [DELIM] second [EXTRACT]     token types all 0, features read at [EXTRACT]
      encoder (BERT):   [CLS] first [SEP] second [SEP]            token types 0 ... 0 1 ... 1, features at [CLS]

  Pairs longer than ``max_seq_length`` are cut longest-first: one token at a time from the end of the longer
  text (the second one on ties), as Hugging Face's ``truncation="longest_first"`` does. The special tokens are
  always kept.
- Batching: :class:`NLICollator` and :class:`MultipleChoiceCollator` pad each batch to its own longest sequence;
  :class:`LengthGroupedSampler` orders training examples so that a batch holds similar lengths.
- :func:`task_tokenizer`: load the given tokenizer, or train (and cache) one on the task text.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from lit_lm.data.io import require_file
from lit_lm.data.resume import ResumableDataModule, check_loader_settings
from lit_lm.data.samplers import LengthGroupedSampler, PermutationSampler, ShardedSampler
from lit_lm.data.splits import check_fraction, holdout_split
from lit_lm.data.tokenizer import Tokenizer, TokenizerKind, resolve_lowercase
from lit_lm.data.tokenizer_training import train_once
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

TaskFormat = Literal["decoder", "encoder"]

# --------------------------------------------------------------------------------------------------- formatting
def num_special_tokens(format: TaskFormat, start_token: bool = True) -> int:
    """How many special tokens a formatted pair carries."""
    if format == "decoder":
        return 2 + int(start_token)
    if format == "encoder":
        return 3
    raise DataError(f"format must be 'decoder' (GPT-1) or 'encoder' (BERT), got {format!r}")


def check_max_seq_length(max_seq_length: int, format: TaskFormat, start_token: bool = True) -> int:
    """Raise :class:`DataError` naming ``max_seq_length`` unless it fits the special tokens and one token of each
    text; returns the number of special tokens."""
    n_special = num_special_tokens(format, start_token)
    if max_seq_length < n_special + 2:
        raise DataError(
            f"max_seq_length={max_seq_length} is too small: the {format} format uses {n_special} special tokens "
            f"and needs room for at least one token of each text; set max_seq_length >= {n_special + 2}"
        )
    return n_special


def truncate_longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths after removing tokens one at a time from the longer of two texts (from ``b`` on ties) until
    ``len_a + len_b <= budget``. Closed form of that loop."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:  # only the longer one is cut
        return (budget - short, short) if len_a > len_b else (short, budget - short)
    return (budget + 1) // 2, budget // 2  # both cut to (near) equal; a keeps the odd token


@dataclass
class EncodedSequences:
    """Formatted token sequences stored flat: sequence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``.

    Attributes:
        tokens: All token ids, concatenated (int32).
        offsets: (n + 1,) start of each sequence in ``tokens``.
        segment_starts: (n,) first position whose token type id is 1 (the sequence length in the decoder
            format, which has no second segment).
        extract_positions: (n,) position the classifier reads: ``[EXTRACT]`` (decoder) or 0 (``[CLS]``, encoder).
        n_truncated: How many sequences were cut to fit ``max_seq_length``.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    segment_starts: np.ndarray
    extract_positions: np.ndarray
    n_truncated: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def _encode_unique(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """``encode_batch`` on the distinct texts only (SNLI repeats each premise three times)."""
    index: dict[str, int] = {}
    for t in texts:
        index.setdefault(t, len(index))
    encoded = tokenizer.encode_batch(list(index)) if index else []
    return [encoded[index[t]] for t in texts]


def encode_pairs(
    tokenizer: Tokenizer,
    firsts: Sequence[str],
    seconds: Sequence[str],
    format: TaskFormat = "decoder",
    start_token: bool = True,
    max_seq_length: int = 128,
) -> EncodedSequences:
    """Tokenize and format text pairs (see the module docstring for the two layouts).

    Args:
        tokenizer: Supplies the token ids; the decoder format needs its ``[DELIM]`` and ``[EXTRACT]``.
        firsts: First texts (premise, or multiple-choice context).
        seconds: Second texts (hypothesis, or choice), same length as ``firsts``.
        format: ``decoder`` (GPT-1) or ``encoder`` (BERT).
        start_token: Decoder format only: begin with ``[CLS]`` as GPT-1's start token.
        max_seq_length: Longest sequence, special tokens included; longer pairs are cut longest-first.
    """
    if len(firsts) != len(seconds):
        raise ValueError(f"encode_pairs got {len(firsts)} first texts but {len(seconds)} second texts")
    n_special = check_max_seq_length(max_seq_length, format, start_token)
    if format == "decoder":
        tokenizer.require_decoder_tokens()
        head = [tokenizer.cls_id] if start_token else []
        mid, tail = [tokenizer.delim_id], [tokenizer.extract_id]
    else:
        head, mid, tail = [tokenizer.cls_id], [tokenizer.sep_id], [tokenizer.sep_id]
    budget = max_seq_length - n_special
    enc_a = _encode_unique(tokenizer, firsts)
    enc_b = _encode_unique(tokenizer, seconds)

    n = len(enc_a)
    lengths = np.empty(n, dtype=np.int64)
    segment_starts = np.empty(n, dtype=np.int64)
    pieces: list[list[int]] = []
    n_truncated = 0
    for i, (a, b) in enumerate(zip(enc_a, enc_b, strict=True)):
        la, lb = truncate_longest_first(len(a), len(b), budget)
        if la < len(a) or lb < len(b):
            n_truncated += 1
            a, b = a[:la], b[:lb]
        seq = head + a + mid + b + tail
        pieces.append(seq)
        lengths[i] = len(seq)
        segment_starts[i] = len(seq) if format == "decoder" else len(head) + la + 1
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter((t for seq in pieces for t in seq), dtype=np.int32, count=int(offsets[-1]))
    extract = lengths - 1 if format == "decoder" else np.zeros(n, dtype=np.int64)
    return EncodedSequences(tokens, offsets, segment_starts, extract, n_truncated)


def log_truncation(what: str, encoded: EncodedSequences, max_seq_length: int) -> None:
    """Log how many sequences were cut (WARNING when more than 1%)."""
    n, k = len(encoded), encoded.n_truncated
    if k == 0:
        return
    level = logging.WARNING if k > 0.01 * n else logging.INFO
    log.log(level, "%s: truncated %d of %d sequences to max_seq_length=%d (longest-first)", what, k, n, max_seq_length)


# --------------------------------------------------------------------------------------------------- batching
def _pad(seqs: Sequence[np.ndarray], segment_starts: Sequence[int], pad_id: int):
    """Right-pad to the longest sequence -> (input_ids, attention_mask, token_type_ids), each (N, T) long."""
    t = max(len(s) for s in seqs)
    ids = np.full((len(seqs), t), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), t), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    starts = np.asarray(segment_starts, dtype=np.int64)
    types = (np.arange(t)[None, :] >= starts[:, None]).astype(np.int64) * mask
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)


class NLICollator:
    """Pads sentence-pair items (from :class:`lit_lm.data.nli.NLIDataset`) into a batch dict::

        input_ids (B, T), attention_mask (B, T) 1/0, token_type_ids (B, T), extract_positions (B,), labels (B,)

    all ``torch.long``; ``T`` is the longest sequence in this batch (dynamic padding).

    Args:
        pad_id: Token id used for padding (the tokenizer's ``[PAD]``).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask, types = _pad([it["input_ids"] for it in items], [it["segment_start"] for it in items], self.pad_id)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "extract_positions": torch.tensor([it["extract_position"] for it in items], dtype=torch.long),
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


class MultipleChoiceCollator:
    """Pads multiple-choice items (from :class:`lit_lm.data.multiple_choice.MultipleChoiceDataset`)::

        input_ids (B, C, T), attention_mask (B, C, T), token_type_ids (B, C, T), extract_positions (B, C),
        labels (B,)  -- the index of the right choice

    all ``torch.long``; ``T`` is the longest choice sequence in this batch.

    Args:
        pad_id: Token id used for padding (the tokenizer's ``[PAD]``).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        b, c = len(items), len(items[0]["input_ids"])
        seqs = [s for it in items for s in it["input_ids"]]
        starts = [s for it in items for s in it["segment_start"]]
        ids, mask, types = _pad(seqs, starts, self.pad_id)
        t = ids.size(1)
        extract = np.stack([np.asarray(it["extract_position"], dtype=np.int64) for it in items])
        return {
            "input_ids": ids.view(b, c, t),
            "attention_mask": mask.view(b, c, t),
            "token_type_ids": types.view(b, c, t),
            "extract_positions": torch.from_numpy(extract),
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


# --------------------------------------------------------------------------------------------------- tokenizer
def task_tokenizer(
    tokenizer: str | None,
    texts: Callable[[], Iterable[str]],
    key: Callable[[], Sequence[str]],
    vocab_size: int,
    lowercase: bool | None,
    cache_dir: str,
    kind: TokenizerKind = "wordpiece",
) -> Tokenizer:
    """Load ``tokenizer`` (a tokenizer.json, BERT vocab.txt or a directory holding one); if None, train a
    WordPiece tokenizer on ``texts()`` and cache it under ``cache_dir`` keyed on ``key()`` (e.g. the training
    files' hashes) and the settings.

    A task-only tokenizer is for trying things out: a fine-tuning run normally passes the pretraining
    tokenizer (its ids are what the pretrained embeddings were trained on), so this warns.
    """
    if tokenizer is not None:
        return Tokenizer.from_file(tokenizer, lowercase=lowercase)
    lowercase = resolve_lowercase(kind, lowercase)
    settings = {"task": list(key()), "vocab_size": vocab_size, "lowercase": lowercase}
    tok = train_once(settings, cache_dir, lambda: Tokenizer.train_from_texts(texts(), vocab_size, lowercase, kind=kind),
                     kind)  # fmt: skip
    warnings.warn(
        f"no tokenizer given: using a WordPiece tokenizer trained on this task's training text ({tok.path}); a "
        "fine-tuning run normally passes the pretraining tokenizer (`tokenizer: path/to/tokenizer.json`)",
        UserWarning,
        stacklevel=3,
    )
    return tok


def as_file_list(files: str | Sequence[str] | None) -> list[str] | None:
    """Accept one path or a list of paths (YAML users write either)."""
    if files is None:
        return None
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    out = [str(f) for f in files]
    if not out:
        raise DataError("an empty file list was given; leave the setting out (null) instead")
    return out


class TaskDataModule(ResumableDataModule):
    """What the NLI and multiple-choice DataModules share: which examples make each split (files, the built-in
    set, or a seeded hold-out of the training files), tokenizing each split once, and the loaders.

    Training order: a :class:`LengthGroupedSampler` (``group_by_length``) or a :class:`PermutationSampler`, both
    derived from ``seed`` and the epoch only, sharded over the ranks under DDP; a run resumed mid-epoch continues
    the epoch exactly (:mod:`lit_lm.data.resume`).

    Construction only checks the settings: the tokenizer is loaded, or trained on the training text and cached,
    on first use of :attr:`tokenizer` (``prepare_data`` does it on the one process that writes the cache), and the
    files are read and tokenized once, in :meth:`setup`.

    ``extra_train_files`` join the training split only: the validation hold-out is drawn from ``train_files``
    alone, so adding or changing extra data leaves the validation split (and so the comparison of runs on it)
    unchanged.

    Subclasses pass the shared settings to ``__init__`` and implement :meth:`_read` (files -> examples and skipped
    counts), :meth:`_builtin` (a split of the built-in set), :meth:`_tokenizer_key` and :meth:`_tokenizer_texts`
    (what a tokenizer trained here is keyed on and trained with), :meth:`_tokenize` (examples -> dataset with
    ``lengths`` and ``encoded``) and :meth:`_collator`; :meth:`_check` may validate a split's examples.
    """

    train_sampler: ShardedSampler | None = None

    def __init__(
        self,
        train_files: str | Sequence[str] | None,
        val_files: str | Sequence[str] | None,
        test_files: str | Sequence[str] | None,
        tokenizer: str | None,
        format: TaskFormat,
        start_token: bool,
        max_seq_length: int,
        batch_size: int,
        group_by_length: bool,
        num_workers: int,
        seed: int,
        val_fraction: float,
        vocab_size: int,
        lowercase: bool | None,
        cache_dir: str,
        tokenizer_kind: TokenizerKind = "wordpiece",
        extra_train_files: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.train_files = as_file_list(train_files)
        self.extra_train_files = as_file_list(extra_train_files)
        if self.extra_train_files is not None and self.train_files is None:
            raise DataError(
                "extra_train_files adds to train_files, but train_files is not set; list every training file "
                "in train_files (the validation split is held out of train_files only)"
            )
        self.val_files = as_file_list(val_files)
        self.test_files = as_file_list(test_files)
        for files in (self.train_files, self.extra_train_files, self.val_files, self.test_files):
            for f in files or ():  # a missing file is a clear error at once; reading waits for setup
                if not Path(f).exists():  # a directory is fine here: an InferSent split
                    require_file(f)
        for f in self.extra_train_files or ():  # else held-out (or test) examples would be trained on
            for setting in ("train_files", "val_files", "test_files"):
                if any(Path(f).resolve() == Path(g).resolve() for g in getattr(self, setting) or ()):
                    raise DataError(
                        f"{f} is in both extra_train_files and {setting}; list each file once (extra_train_files "
                        "adds training data that the validation hold-out and the test set must not contain)"
                    )
        if format not in ("decoder", "encoder"):
            raise DataError(f"format must be 'decoder' (GPT-1) or 'encoder' (BERT), got {format!r}")
        self.format: TaskFormat = format
        self.start_token = start_token
        check_max_seq_length(max_seq_length, format, start_token)
        self.max_seq_length = max_seq_length
        check_loader_settings(batch_size, num_workers)
        check_fraction(val_fraction)
        self.batch_size, self.group_by_length, self.num_workers = batch_size, group_by_length, num_workers
        self.seed, self.val_fraction = seed, val_fraction
        self._tokenizer_file, self._vocab_size, self._lowercase, self.cache_dir = (
            tokenizer, vocab_size, lowercase, cache_dir
        )
        self._tokenizer_kind: TokenizerKind = tokenizer_kind
        if tokenizer is None:
            resolve_lowercase(tokenizer_kind, lowercase)  # a bad combination fails here, not on first use
        self._splits: dict[str, list[Any]] = {}
        self.datasets: dict[str, Any] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        """Per split: ``examples``, ``skipped`` (reason -> count) and ``truncated``, filled by :meth:`setup`."""

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The given tokenizer (normally the pretraining one), or one trained on the training text (cached)."""
        tok = task_tokenizer(
            self._tokenizer_file,
            texts=self._tokenizer_texts,
            key=self._cache_key,
            vocab_size=self._vocab_size,
            lowercase=self._lowercase,
            cache_dir=self.cache_dir,
            kind=self._tokenizer_kind,
        )
        if self.format == "decoder":
            tok.require_decoder_tokens()
        return tok

    def prepare_data(self) -> None:
        """Load the tokenizer, or train and cache it (on one process; the others then read the cache)."""
        self.tokenizer  # noqa: B018

    def _tokenizer_key(self) -> list[str]:
        raise NotImplementedError

    def _cache_key(self) -> list[str]:
        """What a tokenizer trained here is cached by: the training data, and which of it was held out (the
        tokenizer learns from the training split only, so another seed or ``val_fraction`` is another text)."""
        key = list(self._tokenizer_key())
        if self.train_files is not None and self.val_files is None:
            key.append(f"holdout:seed={self.seed},val_fraction={self.val_fraction}")
        return key

    def _tokenizer_texts(self) -> list[str]:
        raise NotImplementedError

    def _read(self, files: list[str]) -> tuple[list[Any], dict[str, int]]:
        raise NotImplementedError

    def _builtin(self, split: str) -> list[Any]:
        raise NotImplementedError

    def _tokenize(self, examples: list[Any], split: str) -> Any:
        raise NotImplementedError

    def _collator(self) -> Callable:
        raise NotImplementedError

    def _check(self, examples: list[Any]) -> None:
        """Validate a split's examples (default: nothing)."""

    def examples(self, split: str) -> list[Any]:
        """The examples of ``train``, ``val`` or ``test`` (read once and kept)."""
        if split in self._splits:
            return self._splits[split]
        files = {"train": self.train_files, "val": self.val_files, "test": self.test_files}[split]
        skipped: dict[str, int] = {}
        if files is not None:
            examples, skipped = self._read(files)
            if split == "train" and self.val_files is None:
                train_idx, _ = holdout_split(len(examples), self.val_fraction, self.seed)
                examples = [examples[i] for i in train_idx]
            if split == "train" and self.extra_train_files is not None:
                extra, extra_skipped = self._read(self.extra_train_files)
                log.info("training: %d examples of train_files + %d of extra_train_files", len(examples), len(extra))
                examples = examples + extra
                for reason, n in extra_skipped.items():
                    skipped[reason] = skipped.get(reason, 0) + n
        elif self.train_files is None:
            examples = self._builtin(split)
        elif split == "val":
            full, skipped = self._read(self.train_files)
            _, val_idx = holdout_split(len(full), self.val_fraction, self.seed)
            examples = [full[i] for i in val_idx]
            skipped = {}  # counted with the training split
            log.info(
                "validation: held out %d of %d training examples (val_fraction=%s)",
                len(examples), len(full), self.val_fraction,
            )  # fmt: skip
        else:
            raise DataError("no test_files set; give test_files to run test or predict")
        self._check(examples)
        self._splits[split] = examples
        self.stats.setdefault(split, {}).update(examples=len(examples), skipped=skipped)
        return examples

    def setup(self, stage: str | None = None) -> None:
        """Read and tokenize the splits the stage needs (``fit``: train + val; ``validate``: val;
        ``test``/``predict``: test)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage or "fit", ("train", "val")):
            self._dataset(split)

    def _dataset(self, split: str) -> Any:
        if split not in self.datasets:
            dataset = self._tokenize(self.examples(split), split)
            self.datasets[split] = dataset
            self.stats[split]["truncated"] = dataset.encoded.n_truncated
        return self.datasets[split]

    def _loader(self, ds: Any, train: bool) -> DataLoader:
        kwargs: dict[str, Any] = dict(
            batch_size=self.batch_size,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
        if train:
            if self.group_by_length:
                self.train_sampler = LengthGroupedSampler(ds.lengths, self.batch_size, self.seed)
            else:
                self.train_sampler = PermutationSampler(len(ds), self.seed)
            self._apply_resume(self.train_sampler)
            kwargs["sampler"] = self.train_sampler
        return DataLoader(ds, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), train=False)
