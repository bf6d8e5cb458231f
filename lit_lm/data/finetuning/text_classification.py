"""One-text classification (SST-2, CoLA, any labelled text): :class:`TextClassificationDataModule`.

Formats: GPT-1's ``[CLS] text [EXTRACT]`` (``format: decoder``) and BERT's ``[CLS] text [SEP]`` (``encoder``); the
classifier reads ``[EXTRACT]`` or the pooled ``[CLS]``, as for NLI (:class:`lit_lm.tasks.SequenceClassification`).
"""

from __future__ import annotations

from typing import Literal

from lit_lm.data.core.tokenizer import TokenizerKind
from lit_lm.data.finetuning.builtin import BUILTIN_TASKS_VERSION, builtin_text_classification
from lit_lm.data.finetuning.classification import LabelledTextDataModule
from lit_lm.data.finetuning.examples import TextExample
from lit_lm.data.finetuning.tables import TableFormat
from lit_lm.errors import DataError

__all__ = ["TextClassificationDataModule"]


class TextClassificationDataModule(LabelledTextDataModule):
    """Labelled single texts for GPT-1 or BERT style fine-tuning (or a regression on a score per text).

    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T), ``extract_positions`` (B,) and ``labels``
    (B,): class ids (``torch.long``), or scores (``float32``) with ``regression``.

    Args:
        task: A named one-text task (``sst2``, ``cola``; :mod:`lit_lm.data.finetuning.registry`): its label set,
            the layout of its published files, its metrics and main metric. None: say ``labels`` (or ``regression``)
            and the columns.
        train_files: Training files (TSV/CSV/JSONL/Parquet; a named task's own files as published). None: the
            built-in generated set (is the subject moving or resting? :mod:`lit_lm.data.finetuning.builtin`).
        val_files: Validation files. None: a seeded ``val_fraction`` of the training examples is held out (the
            built-in validation split without ``train_files``).
        test_files: Test files (also used by ``predict``).
        tokenizer: The model's tokenizer: a ``tokenizer.json``, a BERT ``vocab.txt``, a lit_lm ``.ckpt`` or a
            Hugging Face directory. None with a checkpoint (``init_from``/``--ckpt_path``): the CLI uses the
            checkpoint's; else one is trained on the training text (cached in ``cache_dir``).
        labels: The label names in id order (labels in a file may be names or ids); default: the task's.
        regression: One score per text instead of a class (mean-squared error); default: the task's.
        score_range: The (low, high) a regression score must lie in; a score outside is a data error.
        text_column: The text's column (header name or JSON key; 0-based index with ``header: false``).
        label_column: The label's (or score's) column.
        header: Whether TSV/CSV files start with a header line naming the columns.
        reader: File format: ``auto`` (by suffix), ``tsv``, ``csv``, ``jsonl`` or ``parquet`` (needs pyarrow).
        format: ``decoder``: ``[CLS] text [EXTRACT]`` (GPT-1); ``encoder``: ``[CLS] text [SEP]`` (BERT).
        start_token: Decoder format: begin each sequence with ``[CLS]`` as the start token (GPT-1 had one).
        max_seq_length: Longest sequence including special tokens; a longer text is cut at its end (counted).
        batch_size: Examples per batch (per device).
        group_by_length: Order training batches so each holds similar lengths (less padding, still shuffled).
        num_workers: DataLoader worker processes.
        seed: Seed for shuffling, length grouping and the validation hold-out.
        val_fraction: Share of the training examples held out for validation when ``val_files`` is None.
        vocab_size: Vocabulary size of a tokenizer trained here (ignored when ``tokenizer`` is given).
        lowercase: Lowercase the text when training a tokenizer or loading a ``vocab.txt`` (see NLIDataModule).
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` or ``bpe``.
        cache_dir: Where trained task tokenizers are cached.
        test_fraction: With no ``test_files``: hold out this share of ``train_files`` as the test split, left out
            of training and validation; the split is fixed (the same for every ``seed``). 0: none.
        extra_train_files: More training files, added to the training split only (the hold-out comes from
            ``train_files`` alone).
    """

    family = "text"

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
        label_column: str | int | None = None,
        header: bool = True,
        reader: TableFormat = "auto",
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
        super().__init__(
            task=task, train_files=train_files, val_files=val_files, test_files=test_files, tokenizer=tokenizer,
            labels=labels, regression=regression, score_range=score_range, text_column=text_column,
            text_pair_column=None, label_column=label_column, header=header, reader=reader, views=1, format=format,
            start_token=start_token, max_seq_length=max_seq_length, batch_size=batch_size,
            group_by_length=group_by_length, num_workers=num_workers, seed=seed, val_fraction=val_fraction,
            vocab_size=vocab_size, lowercase=lowercase, tokenizer_kind=tokenizer_kind, cache_dir=cache_dir,
            extra_train_files=extra_train_files, test_fraction=test_fraction,
        )  # fmt: skip

    def _check_builtin(self) -> None:
        if self.regression or self.num_labels != 2:
            raise DataError(
                "the built-in one-text set (used when train_files is not set) has 2 labels; "
                f"{'regression' if self.regression else f'{self.num_labels} labels'} needs train_files"
            )

    def _builtin_key(self) -> list[str]:
        return [f"builtin-text-v{BUILTIN_TASKS_VERSION}"]

    def _builtin(self, split: str) -> list[TextExample]:
        return builtin_text_classification(split)
