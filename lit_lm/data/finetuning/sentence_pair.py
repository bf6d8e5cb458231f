"""Sentence-pair classification and regression (MRPC, QQP, STS-B, SICK relatedness, RTE, any labelled pairs):
:class:`SentencePairDataModule`. NLI is an instance of it (:class:`lit_lm.data.NLIDataModule`).

Formats: GPT-1's ``[CLS] A [DELIM] B [EXTRACT]`` and BERT's ``[CLS] A [SEP] B [SEP]``. A decoder reads a pair in one
direction, but similarity and paraphrase have no natural order, so for those GPT-1 runs both orderings
(``A [DELIM] B`` and ``B [DELIM] A``) and adds the two ``[EXTRACT]`` states before the classifier
(Radford et al. 2018, section 3.3): ``both_orderings`` (on by default for a named symmetric task in the decoder
format) makes every example two *views*, and :class:`lit_lm.tasks.SequenceClassification` sums them.
"""

from __future__ import annotations

from typing import Literal

from lit_lm.data.core.tokenizer import TokenizerKind
from lit_lm.data.finetuning.builtin import (
    BUILTIN_TASKS_VERSION,
    ENTAILMENT,
    builtin_nli,
    builtin_similarity,
)
from lit_lm.data.finetuning.classification import LabelledTextDataModule
from lit_lm.data.finetuning.examples import TextExample
from lit_lm.data.finetuning.registry import task_spec
from lit_lm.data.finetuning.tables import TableFormat
from lit_lm.errors import DataError

__all__ = ["SentencePairDataModule"]


class SentencePairDataModule(LabelledTextDataModule):
    """Labelled text pairs (a class, or a score) for GPT-1 or BERT style fine-tuning.

    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T), ``extract_positions`` (B,) and ``labels``
    (B,): class ids (``torch.long``), or scores (``float32``) for a regression; with both orderings every tensor but
    ``labels`` has a view dimension: (B, 2, T) and (B, 2).

    Args:
        task: A named pair task (``mrpc``, ``qqp``, ``stsb``, ``sick_relatedness``, ``rte``, ``snli``, ``mnli``,
            ``scitail``, ...; :mod:`lit_lm.data.finetuning.registry`): its label set or score range, the layout of its
            published files, its metrics and main metric, and whether the pair is symmetric. None: say ``labels``
            (or ``regression``) and the columns.
        train_files: Training files (TSV/CSV/JSONL/Parquet, a named task's own files as published). None: the
            built-in generated pairs (:mod:`lit_lm.data.finetuning.builtin`: similarity scores for a regression,
            the NLI pairs for classification, 2-way as entailment / not for two labels).
        val_files: Validation files. None: a seeded ``val_fraction`` of the training examples is held out (the
            built-in validation split without ``train_files``).
        test_files: Test files (also used by ``predict``).
        tokenizer: The model's tokenizer (see :class:`~lit_lm.data.TextClassificationDataModule`).
        labels: The label names in id order (labels in a file may be names or ids); default: the task's.
        regression: One score per pair instead of a class (mean-squared error); default: the task's.
        score_range: The (low, high) a score must lie in (STS-B: 0-5); a score outside is a data error.
        text_column: The first text's column (header name or JSON key; 0-based index with ``header: false``).
        text_pair_column: The second text's column.
        label_column: The label's (or score's) column.
        header: Whether TSV/CSV files start with a header line naming the columns.
        reader: File format: ``auto`` (by suffix), ``tsv``, ``csv``, ``jsonl`` or ``parquet`` (needs pyarrow).
        both_orderings: Decoder format: read each pair in both orders and add the two states (GPT-1's similarity
            format). None: on for a named symmetric task (mrpc, qqp, stsb, sick_relatedness) in the decoder format.
            The encoder format reads one order (BERT's).
        format: ``decoder``: ``[CLS] A [DELIM] B [EXTRACT]`` (GPT-1); ``encoder``: ``[CLS] A [SEP] B [SEP]`` (BERT).
        start_token: Decoder format: begin each sequence with ``[CLS]`` as the start token (GPT-1 had one).
        max_seq_length: Longest sequence including special tokens; longer pairs are cut longest-first (counted).
        batch_size: Examples per batch (per device).
        group_by_length: Order training batches so each holds similar lengths (less padding, still shuffled).
        num_workers: DataLoader worker processes.
        seed: Seed for shuffling, length grouping and the validation hold-out.
        val_fraction: Share of the training examples held out for validation when ``val_files`` is None.
        vocab_size: Vocabulary size of a tokenizer trained here (ignored when ``tokenizer`` is given).
        lowercase: Lowercase the text when training a tokenizer or loading a ``vocab.txt``.
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` or ``bpe``.
        cache_dir: Where trained task tokenizers are cached.
        test_fraction: With no ``test_files``: hold out this share of ``train_files`` as the test split, left out
            of training and validation; the split is fixed (the same for every ``seed``). 0: none.
        extra_train_files: More training files, added to the training split only.
    """

    family = "pair"

    def __init__(
        self,
        task: str | None = None,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        tokenizer: str | None = None,
        labels: list[str] | None = None,
        regression: bool | None = None,
        score_range: tuple[float, float] | None = None,
        text_column: str | int | None = None,
        text_pair_column: str | int | None = None,
        label_column: str | int | None = None,
        header: bool = True,
        reader: TableFormat = "auto",
        both_orderings: bool | None = None,
        format: Literal["decoder", "encoder"] = "decoder",
        start_token: bool = True,
        max_seq_length: int = 128,
        batch_size: int = 32,
        group_by_length: bool = False,
        num_workers: int = 0,
        seed: int = 42,
        val_fraction: float = 0.05,
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "wordpiece",
        cache_dir: str = ".cache/lit_lm",
        extra_train_files: list[str] | None = None,
        test_fraction: float = 0.0,
    ) -> None:
        if both_orderings is None:
            both_orderings = format == "decoder" and task is not None and task_spec(task, "pair").symmetric
        if both_orderings and format != "decoder":
            raise DataError("both_orderings is GPT-1's format for a decoder; the encoder format reads one order")
        super().__init__(
            task=task, train_files=train_files, val_files=val_files, test_files=test_files, tokenizer=tokenizer,
            labels=labels, regression=regression, score_range=score_range, text_column=text_column,
            text_pair_column=text_pair_column, label_column=label_column, header=header, reader=reader,
            views=2 if both_orderings else 1, format=format, start_token=start_token, max_seq_length=max_seq_length,
            batch_size=batch_size, group_by_length=group_by_length, num_workers=num_workers, seed=seed,
            val_fraction=val_fraction, vocab_size=vocab_size, lowercase=lowercase, tokenizer_kind=tokenizer_kind,
            cache_dir=cache_dir, extra_train_files=extra_train_files, test_fraction=test_fraction,
        )  # fmt: skip

    def _check_builtin(self) -> None:
        if not self.regression and self.num_labels not in (2, 3):
            raise DataError(
                f"the built-in pairs (used when train_files is not set) have 2 or 3 labels (NLI); {self.num_labels} "
                "labels need train_files"
            )

    def _builtin_key(self) -> list[str]:
        kind = "similarity" if self.regression else f"nli{self.num_labels}"
        return [f"builtin-pair-{kind}-v{BUILTIN_TASKS_VERSION}"]

    def _builtin(self, split: str) -> list[TextExample]:
        if self.regression:
            return builtin_similarity(split)
        two_way = self.num_labels == 2  # entailment (0) or not (1)
        return [TextExample(e.premise, e.hypothesis, int(e.label != ENTAILMENT) if two_way else e.label)
                for e in builtin_nli(split)]  # fmt: skip
