"""What the one-text and the sentence-pair families share (:class:`LabelledTextDataModule`): a named task or a label
set (or a regression), files read by column (:mod:`lit_lm.data.finetuning.tables`) or by the NLI readers, the
built-in data when no files are given, the formats of both model families (GPT-1 and BERT), and what the
DataModule feeds the task, stated once: :attr:`~LabelledTextDataModule.problem_type`, ``num_labels``,
``label_names``, ``metrics``, ``main_metric`` and ``views``.

The families themselves are small subclasses: :class:`lit_lm.data.TextClassificationDataModule`,
:class:`lit_lm.data.SentencePairDataModule` and its NLI instance :class:`lit_lm.data.NLIDataModule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from lit_lm.data.core.io import file_digest
from lit_lm.data.core.tokenizer import TokenizerKind
from lit_lm.data.finetuning.base import TaskDataModule
from lit_lm.data.finetuning.encoding import (
    ClassificationCollator,
    ClassificationDataset,
    TaskFormat,
    encode_pairs,
    log_truncation,
)
from lit_lm.data.finetuning.examples import LabelVocab, TextExample
from lit_lm.data.finetuning.registry import TaskSpec, task_spec
from lit_lm.data.finetuning.tables import Columns, TableFormat, read_labelled, read_task_file
from lit_lm.errors import DataError

__all__ = ["LabelledTextDataModule", "ProblemType"]

ProblemType = Literal["single_label_classification", "regression"]


class LabelledTextDataModule(TaskDataModule):
    """Labelled texts or text pairs -> formatted, tokenized sequences with a class id or a score each.

    Subclasses set :attr:`family` (``text`` or ``pair``) and implement :meth:`_builtin`.
    See :class:`~lit_lm.data.SentencePairDataModule` for the arguments.
    """

    family: Literal["text", "pair"] = "pair"

    def __init__(
        self,
        *,
        task: str | None,
        train_files: str | Sequence[str] | None,
        val_files: str | Sequence[str] | None,
        test_files: str | Sequence[str] | None,
        tokenizer: str | None,
        labels: Sequence[str] | None,
        regression: bool | None,
        score_range: tuple[float, float] | None,
        text_column: str | int | None,
        text_pair_column: str | int | None,
        label_column: str | int | None,
        header: bool,
        reader: str,
        views: int,
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
        tokenizer_kind: TokenizerKind,
        cache_dir: str,
        extra_train_files: str | Sequence[str] | None,
        test_fraction: float = 0.0,
    ) -> None:
        super().__init__(train_files, val_files, test_files, tokenizer, format, start_token, max_seq_length,
                         batch_size, group_by_length, num_workers, seed, val_fraction, vocab_size, lowercase,
                         cache_dir, tokenizer_kind, extra_train_files, test_fraction)  # fmt: skip
        self.task: TaskSpec | None = task_spec(task, self.family) if task is not None else None
        spec = self.task
        if regression is None:
            regression = spec.regression if spec is not None else False
        if regression and labels is not None:
            raise DataError(f"labels={list(labels)} and regression=true: a regression task has scores, not labels")
        if spec is not None and labels is None and not regression and spec.labels is None:
            raise DataError(f"task {spec.name!r} is a regression task; leave regression unset or true")
        self.regression: bool = bool(regression)
        names = labels if labels is not None else (spec.labels if spec is not None and not regression else None)
        if names is None and not self.regression:
            names = self._default_labels()
        self.label_vocab: LabelVocab | None = None if self.regression else LabelVocab(names)
        #: The label names in id order (``None`` for regression).
        self.label_names: list[str] | None = None if self.label_vocab is None else list(self.label_vocab.names)
        #: 1 for regression (one output), else the number of labels.
        self.num_labels: int = 1 if self.label_vocab is None else len(self.label_vocab)
        #: ``single_label_classification`` (cross-entropy) or ``regression`` (one score, mean-squared error).
        self.problem_type: ProblemType = "regression" if self.regression else "single_label_classification"
        if score_range is None and spec is not None and self.regression:
            score_range = spec.score_range
        if score_range is not None and not score_range[0] < score_range[1]:
            raise DataError(f"score_range must be (low, high) with low < high, got {score_range}")
        self.score_range = None if score_range is None else (float(score_range[0]), float(score_range[1]))
        if spec is not None and (labels is None) and (regression == spec.regression):
            self.metrics, self.main_metric = spec.metrics, spec.main_metric
        elif self.regression:
            self.metrics, self.main_metric = ("pearson", "spearman"), "pearson"
        else:
            self.metrics, self.main_metric = ("acc", "macro_f1"), "acc"
        #: Sequences per example: 2 when a decoder reads both orderings of a pair (GPT-1's similarity format).
        self.views: int = views
        self.reader = reader
        self._named_columns = any(c is not None for c in (text_column, text_pair_column, label_column))
        if self._named_columns:
            pair = text_pair_column if self.family == "pair" else None
            if self.family == "pair" and pair is None:
                raise DataError("text_pair_column is not set: a sentence-pair task reads two text columns")
            columns = Columns(
                "text" if text_column is None else text_column, pair, "label" if label_column is None else label_column,
                header,
            )  # fmt: skip
            self.layouts: tuple[tuple[Columns, TableFormat], ...] = ((columns, reader),)  # type: ignore[assignment]
        elif spec is not None:
            self.layouts = tuple((c, f if reader == "auto" else reader) for c, f in spec.layouts)  # type: ignore[misc]
        else:
            default = Columns("text", "text_pair" if self.family == "pair" else None, "label")
            self.layouts = ((default, reader),)  # type: ignore[assignment]
        if self.train_files is None:
            self._check_builtin()
        self._read_cache: dict[str, Any] = {}

    def _default_labels(self) -> Sequence[str]:
        if self.train_files is None:  # the built-in sets are binary
            return ("0", "1")
        raise DataError(
            "no label set: name a task (task: sst2 | cola | mrpc | ...), give labels: [...] in id order, or set "
            "regression: true"
        )

    def _check_builtin(self) -> None:
        """Refuse settings the built-in data (used without ``train_files``) cannot serve."""

    # ---------------------------------------------------------------------------------------------- reading
    def _tokenizer_key(self) -> list[str]:
        if self.train_files is None:
            return self._builtin_key()
        layouts = [f"{c}/{f}" for c, f in self.layouts] if self.task is None or self.task.reader == "table" else []
        key = [self.family, self.task.name if self.task else "custom", self.reader, *layouts]
        key += [f"{f}:{file_digest(f)}" for f in self.train_files]
        if self.extra_train_files:
            key += ["extra"] + [f"{f}:{file_digest(f)}" for f in self.extra_train_files]
        return key

    def _builtin_key(self) -> list[str]:
        raise NotImplementedError

    def _tokenizer_texts(self) -> list[str]:
        return [t for e in self.examples("train") for t in (e.text, e.text_pair) if t is not None]

    def _read_file(self, path: str) -> Any:
        """One file's :class:`~lit_lm.data.finetuning.examples.ReadResult` of :class:`TextExample`."""
        if self.task is not None and self.task.reader == "nli":
            from lit_lm.data.finetuning.nli import read_nli

            result = read_nli(path, self.label_vocab, "auto" if self.reader not in ("jsonl", "tsv") else self.reader)
            result.examples = [TextExample(e.premise, e.hypothesis, e.label, e.source) for e in result.examples]
            return result
        if self._named_columns or self.task is None:
            columns, fmt = self.layouts[0]
            return read_labelled(path, columns, self.label_vocab, score_range=self.score_range, format=fmt)
        return read_task_file(path, self.layouts, self.label_vocab, score_range=self.score_range)

    def _read(self, files: list[str]) -> tuple[list[TextExample], dict[str, int]]:
        examples: list[TextExample] = []
        skipped: dict[str, int] = {}
        for f in files:
            if f not in self._read_cache:
                self._read_cache[f] = self._read_file(f)
            res = self._read_cache[f]
            examples.extend(res.examples)
            for k, v in res.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        return examples, skipped

    def _tokenize(self, examples: list[TextExample], split: str) -> ClassificationDataset:
        firsts = [e.text for e in examples]
        seconds = [e.text_pair for e in examples] if self.family == "pair" else None
        if seconds is not None and any(s is None for s in seconds):
            raise DataError(f"{split}: an example without a second text in a sentence-pair task")
        args = (self.format, self.start_token, self.max_seq_length)
        views = [encode_pairs(self.tokenizer, firsts, seconds, *args)]
        if self.views == 2:  # the other ordering: B [DELIM] A
            views.append(encode_pairs(self.tokenizer, seconds, firsts, *args))
        name = self.task.name if self.task is not None else self.family
        log_truncation(f"{name} {split}", views[0], self.max_seq_length)
        dtype = np.float32 if self.regression else np.int64
        return ClassificationDataset(views, np.array([e.label for e in examples], dtype=dtype))

    def _collator(self) -> ClassificationCollator:
        return ClassificationCollator(self.pad_token_id)
