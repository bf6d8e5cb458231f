"""What every fine-tuning DataModule shares (:class:`TaskDataModule`): which examples make each split (files, the
built-in set, or a seeded hold-out of the training files), the tokenizer (given, or trained on the task text and
cached: :func:`task_tokenizer`), tokenizing each split once, and the loaders. A task family adds a reader, a
DataModule subclass and, where its batches differ, a collator (:mod:`lit_lm.data.finetuning.encoding`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from lit_lm.data.core.io import require_file
from lit_lm.data.core.resume import ResumableDataModule, check_loader_settings
from lit_lm.data.core.samplers import LengthGroupedSampler, PermutationSampler, ShardedSampler
from lit_lm.data.core.splits import check_fraction, holdout_split
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind, resolve_lowercase, train_once
from lit_lm.data.finetuning.encoding import TaskFormat, check_max_seq_length
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

#: Seed of the ``test_fraction`` hold-out: fixed, so that runs with different seeds share one test split.
TEST_HOLDOUT_SEED = 20260101


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
    the epoch exactly (:mod:`lit_lm.data.core.resume`).

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
        test_fraction: float = 0.0,
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
        if test_fraction and not (0.0 < test_fraction < 1.0 and self.train_files is not None and
                                  self.test_files is None):  # fmt: skip
            raise DataError(
                f"test_fraction={test_fraction}: holds out that share of train_files as the test split; it needs "
                "train_files, no test_files, and 0 <= test_fraction < 1"
            )
        self.test_fraction = test_fraction
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
        if self.test_fraction:
            key.append(f"test_holdout:test_fraction={self.test_fraction}")
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

    def _test_holdout(self, examples: list[Any]) -> tuple[list[Any], list[Any]]:
        """``(rest, test)``: the training files' examples split by ``test_fraction`` (none held out at 0). The split
        follows a fixed seed, not ``seed``: every run of a task, whatever its seed, is tested on the same examples."""
        if not self.test_fraction:
            return examples, []
        rest, test = holdout_split(len(examples), self.test_fraction, TEST_HOLDOUT_SEED, hint="pass test_files")
        return [examples[i] for i in rest], [examples[i] for i in test]

    def examples(self, split: str) -> list[Any]:
        """The examples of ``train``, ``val`` or ``test`` (read once and kept)."""
        if split in self._splits:
            return self._splits[split]
        files = {"train": self.train_files, "val": self.val_files, "test": self.test_files}[split]
        skipped: dict[str, int] = {}
        if files is not None:
            examples, skipped = self._read(files)
            if split == "train":
                examples = self._test_holdout(examples)[0]
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
        elif split == "test" and self.test_fraction:
            full, _ = self._read(self.train_files)
            examples = self._test_holdout(full)[1]
            log.info("test: held out %d of %d training examples (test_fraction=%s, the same for every seed)",
                     len(examples), len(full), self.test_fraction)  # fmt: skip
        elif split == "val":
            full, skipped = self._read(self.train_files)
            full = self._test_holdout(full)[0]
            _, val_idx = holdout_split(len(full), self.val_fraction, self.seed)
            examples = [full[i] for i in val_idx]
            skipped = {}  # counted with the training split
            log.info(
                "validation: held out %d of %d training examples (val_fraction=%s)",
                len(examples), len(full), self.val_fraction,
            )  # fmt: skip
        else:
            raise DataError("no test_files set; give test_files (or test_fraction) to run test or predict")
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
            self.stats[split]["truncated"] = dataset.n_truncated
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
