"""Natural language inference data: readers for the common file formats, the tokenized dataset, and
:class:`NLIDataModule`.

Readers (each returns a :class:`~lit_lm.data.finetuning.examples.ReadResult`; bad input raises :class:`DataError` naming
file:line; records without a gold label are skipped, counted and logged):

==============  ===============================================================================================
``jsonl``       one JSON object per line, either SNLI/MultiNLI's own fields ``sentence1``/``sentence2``/
                ``gold_label`` (``-`` = no consensus, skipped) or the simplified ``premise``/``hypothesis``/
                ``label`` (label name, or its id as an int; ``-1`` skipped). The schema is taken from line 1.
``tsv``         tab-separated with a header; columns found by name: premise ``sentence1|sentence_A|premise``,
                hypothesis ``sentence2|sentence_B|hypothesis``, label ``gold_label|entailment_label|label``
                (GLUE MNLI/SNLI/RTE, SNLI's ``.txt``, counterfactual SNLI, SICK). No quoting; CRLF is fine.
``infersent``   three parallel files ``s1.<split>``, ``s2.<split>``, ``labels.<split>`` (InferSent / e-SNLI):
                give the directory (if it holds one split) or any of the three files.
==============  ===============================================================================================

``auto`` picks by name: a directory or ``s1.*``/``s2.*``/``labels.*`` -> infersent, ``.jsonl``/``.json`` -> jsonl,
``.tsv`` -> tsv, anything else by its first line (``{`` -> jsonl, a tab -> tsv).

Labels map to ids through a fixed list per task, case-insensitively: by default the 3-way
``entailment=0, neutral=1, contradiction=2``; 2-way sets (RTE, SciTail) use ``[entailment, not_entailment]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from lit_lm.data.core.io import file_digest, jsonl_records, read_text_lines, require_file
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind
from lit_lm.data.finetuning.builtin import BUILTIN_TASKS_VERSION, builtin_nli
from lit_lm.data.finetuning.encoding import ClassificationDataset, TaskFormat, encode_pairs, log_truncation
from lit_lm.data.finetuning.examples import (
    NLI_LABELS,
    NO_GOLD_LABEL,
    LabelVocab,
    NLIExample,
    ReadResult,
    TextExample,
)
from lit_lm.data.finetuning.registry import task_spec
from lit_lm.data.finetuning.sentence_pair import SentencePairDataModule
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

NLIReader = Literal["auto", "jsonl", "tsv", "infersent"]

_JSONL_SCHEMAS = {
    "SNLI/MultiNLI": ("sentence1", "sentence2", "gold_label"),
    "simplified": ("premise", "hypothesis", "label"),
}
_TSV_COLUMNS = {
    "premise": ("sentence1", "sentence_a", "premise"),
    "hypothesis": ("sentence2", "sentence_b", "hypothesis"),
    "label": ("gold_label", "entailment_label", "label"),
}


def _labels(labels: Sequence[str] | LabelVocab) -> LabelVocab:
    return labels if isinstance(labels, LabelVocab) else LabelVocab(labels)


# --------------------------------------------------------------------------------------------------- readers
def read_nli_jsonl(path: str | Path, labels: Sequence[str] | LabelVocab = NLI_LABELS) -> ReadResult[NLIExample]:
    """Read SNLI/MultiNLI JSONL (``sentence1/sentence2/gold_label``) or the simplified JSONL
    (``premise/hypothesis/label``); see the module docstring."""
    vocab = _labels(labels)
    lines = read_text_lines(path)
    out: list[NLIExample] = []
    skipped: dict[str, int] = {}
    schema: str | None = None
    schema_line = 0
    for no, obj in jsonl_records(lines, path):
        if schema is None:
            schema = next((name for name, fields in _JSONL_SCHEMAS.items() if fields[0] in obj), None)
            if schema is None:
                wanted = " or ".join("/".join(f) for f in _JSONL_SCHEMAS.values())
                raise DataError(f"unrecognised NLI record (keys {sorted(obj)}); expected fields {wanted}", path, no)
            schema_line = no
        f_prem, f_hyp, f_label = _JSONL_SCHEMAS[schema]
        for name in (f_prem, f_hyp, f_label):
            if name not in obj:
                raise DataError(
                    f"missing field {name!r} (this file uses the {schema} fields {f_prem}/{f_hyp}/{f_label}, "
                    f"seen on line {schema_line})",
                    path,
                    no,
                )
        for name in (f_prem, f_hyp):
            if not isinstance(obj[name], str):
                raise DataError(f"field {name!r} must be a string, got {type(obj[name]).__name__}", path, no)
        label = vocab.lookup(obj[f_label], path, no)
        if label is None:
            skipped[NO_GOLD_LABEL] = skipped.get(NO_GOLD_LABEL, 0) + 1
            continue
        out.append(NLIExample(obj[f_prem], obj[f_hyp], label, f"{path}:{no}"))
    return _finish(out, skipped, path)


def read_nli_tsv(path: str | Path, labels: Sequence[str] | LabelVocab = NLI_LABELS) -> ReadResult[NLIExample]:
    """Read a tab-separated file with a header naming the premise, hypothesis and label columns (see the
    module docstring for the accepted names); other columns are ignored."""
    vocab = _labels(labels)
    lines = read_text_lines(path)
    header_no = next(i for i, ln in enumerate(lines, 1) if ln.strip())
    header = lines[header_no - 1].split("\t")
    folded = [h.strip().lower() for h in header]
    cols: dict[str, int] = {}
    for role, names in _TSV_COLUMNS.items():
        idx = next((folded.index(n) for n in names if n in folded), None)
        if idx is None:
            raise DataError(
                f"header has no {role} column (looked for {', '.join(names)}); found columns {header}. "
                "NLI TSV files need a header line naming their columns",
                path,
                header_no,
            )
        cols[role] = idx
    out: list[NLIExample] = []
    skipped: dict[str, int] = {}
    for no in range(header_no + 1, len(lines) + 1):
        text = lines[no - 1]
        if not text.strip():
            continue
        row = text.split("\t")
        if len(row) != len(header):
            raise DataError(
                f"expected {len(header)} tab-separated columns as in the header (line {header_no}), found {len(row)}; "
                "fields must not contain tabs or line breaks",
                path,
                no,
            )
        label = vocab.lookup(row[cols["label"]], path, no)
        if label is None:
            skipped[NO_GOLD_LABEL] = skipped.get(NO_GOLD_LABEL, 0) + 1
            continue
        out.append(NLIExample(row[cols["premise"]].strip(), row[cols["hypothesis"]].strip(), label, f"{path}:{no}"))
    if not out and not skipped:
        raise DataError("has a header but no examples", path, header_no)
    return _finish(out, skipped, path)


def infersent_files(path: str | Path) -> tuple[Path, Path, Path]:
    """(s1, s2, labels) paths of an InferSent-style split, given its directory or one of its three files."""
    p = Path(path)
    if p.is_dir():
        splits = sorted(f.name[3:] for f in p.iterdir() if f.name.startswith("s1.") and f.is_file())
        if len(splits) != 1:
            raise DataError(
                f"directory holds {len(splits)} InferSent splits {splits}; give the s1.<split> file of the one to read",
                p,
            )
        directory, split = p, splits[0]
    elif p.name.startswith(("s1.", "s2.", "labels.")):
        directory, split = p.parent, p.name.split(".", 1)[1]
    else:
        raise DataError("not an InferSent-style split: give its directory or a file named s1.<split>", p)
    return directory / f"s1.{split}", directory / f"s2.{split}", directory / f"labels.{split}"


def read_nli_infersent(path: str | Path, labels: Sequence[str] | LabelVocab = NLI_LABELS) -> ReadResult[NLIExample]:
    """Read InferSent-style parallel files ``s1.<split>`` (premises), ``s2.<split>`` (hypotheses) and
    ``labels.<split>``: line *i* of each is one pair. Tokenized text is used as it is."""
    vocab = _labels(labels)
    s1, s2, lab = infersent_files(path)
    texts = [read_text_lines(f) for f in (s1, s2, lab)]
    n = len(texts[0])
    for f, t in zip((s2, lab), texts[1:], strict=True):
        if len(t) != n:
            raise DataError(
                f"has {len(t)} lines but {s1.name} has {n}; the s1/s2/labels files must be parallel "
                "(line i of each is one pair)",
                f,
                min(len(t), n) + 1,
            )
    out: list[NLIExample] = []
    skipped: dict[str, int] = {}
    for no, (a, b, y) in enumerate(zip(*texts, strict=True), 1):
        if not y.strip():
            raise DataError("empty label line", lab, no)
        label = vocab.lookup(y, lab, no)
        if label is None:
            skipped[NO_GOLD_LABEL] = skipped.get(NO_GOLD_LABEL, 0) + 1
            continue
        out.append(NLIExample(a.strip(), b.strip(), label, f"{s1}:{no}"))
    return _finish(out, skipped, s1)


def _finish(out: list[NLIExample], skipped: dict[str, int], path: str | Path) -> ReadResult[NLIExample]:
    if not out:
        detail = f" (all {sum(skipped.values())} records skipped: {skipped})" if skipped else ""
        raise DataError(f"no examples{detail}", path)
    result = ReadResult(out, skipped, str(path))
    result.log_summary()
    return result


def detect_nli_reader(path: str | Path) -> str:
    """The reader ``auto`` picks for ``path`` (see the module docstring)."""
    p = Path(path)
    if p.is_dir() or p.name.startswith(("s1.", "s2.", "labels.")):
        return "infersent"
    require_file(p)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    with open(p, "rb") as f:
        first = next((ln for ln in f if ln.strip()), b"")
    if first.lstrip(b"\xef\xbb\xbf \t").startswith(b"{"):
        return "jsonl"
    if b"\t" in first:
        return "tsv"
    raise DataError("cannot tell the file format from its name or first line; set reader: jsonl, tsv or infersent", p)


_READERS = {"jsonl": read_nli_jsonl, "tsv": read_nli_tsv, "infersent": read_nli_infersent}


def read_nli(
    path: str | Path, labels: Sequence[str] | LabelVocab = NLI_LABELS, reader: NLIReader = "auto"
) -> ReadResult[NLIExample]:
    """Read an NLI file with the named reader, or the one ``auto`` detects."""
    kind = detect_nli_reader(path) if reader == "auto" else reader
    if kind not in _READERS:
        raise DataError(f"unknown reader {reader!r}; use auto, jsonl, tsv or infersent", path)
    return _READERS[kind](path, labels)


# --------------------------------------------------------------------------------------------------- dataset
#: Tokenized NLI pairs: the dataset of every classification task (one view).
NLIDataset = ClassificationDataset


def tokenize_nli(
    examples: Sequence[NLIExample],
    tokenizer: Tokenizer,
    format: TaskFormat = "decoder",
    start_token: bool = True,
    max_seq_length: int = 128,
    name: str = "nli",
) -> ClassificationDataset:
    """Format and tokenize NLI examples once (premise first, hypothesis second); truncations are logged."""
    encoded = encode_pairs(
        tokenizer, [e.premise for e in examples], [e.hypothesis for e in examples], format, start_token, max_seq_length
    )
    log_truncation(name, encoded, max_seq_length)
    return ClassificationDataset([encoded], np.array([e.label for e in examples], dtype=np.int64))


# --------------------------------------------------------------------------------------------------- datamodule
class NLIDataModule(SentencePairDataModule):
    """Natural language inference data (SNLI, MultiNLI, SICK, RTE, ...) for GPT-1 or BERT style fine-tuning: a
    :class:`~lit_lm.data.SentencePairDataModule` that reads the NLI formats (module docstring) and defaults to the
    3-way SNLI label set.

    ``num_labels`` is known at once; the tokenizer (``vocab_size``, ``pad_token_id``) on first use, and the files
    are read and tokenized once, in :meth:`setup` (:class:`~lit_lm.data.finetuning.base.TaskDataModule`).

    Batches are dicts of ``torch.long`` tensors: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T),
    ``extract_positions`` (B,) -- the position the classifier reads (``[EXTRACT]`` for decoder, 0 for encoder)
    -- and ``labels`` (B,).

    Args:
        train_files: Training files (any reader format; see :mod:`lit_lm.data.finetuning.nli`). None: the built-in
            generated dataset (:func:`lit_lm.data.finetuning.builtin.builtin_nli`), which needs no files.
        val_files: Validation files. None: the built-in validation split when ``train_files`` is None,
            else a seeded random ``val_fraction`` of the training examples is held out.
        test_files: Test files (also used by ``predict``). None: the built-in test split when ``train_files``
            is None, else no test set.
        tokenizer: Path to a ``tokenizer.json``, a BERT ``vocab.txt``, or a directory holding one -- normally the
            pretraining tokenizer. None: train a WordPiece tokenizer on the training text (cached in
            ``cache_dir``).
        labels: The label list; ``labels[i]`` gets id ``i``; matched case-insensitively. None: the 3-way
            ``[entailment, neutral, contradiction]``. Use ``[entailment, not_entailment]`` for RTE/SciTail.
        format: ``decoder``: GPT-1's ``[CLS] premise [DELIM] hypothesis [EXTRACT]``; ``encoder``: BERT's
            ``[CLS] premise [SEP] hypothesis [SEP]`` with token type ids 0/1.
        start_token: Decoder format: begin each sequence with ``[CLS]`` as the start token (GPT-1 had one).
        max_seq_length: Longest sequence including special tokens; longer pairs are cut longest-first.
        batch_size: Examples per batch (per device).
        group_by_length: Order training batches so each holds similar lengths (less padding, still shuffled).
        num_workers: DataLoader worker processes (0: load in the main process; batches are cheap here).
        seed: Seed for shuffling, length grouping and the validation hold-out.
        val_fraction: Share of the training examples held out for validation when ``val_files`` is None.
        reader: File format: ``auto`` (by name, then by first line), ``jsonl``, ``tsv`` or ``infersent``.
        vocab_size: Vocabulary size of a tokenizer trained here (ignored when ``tokenizer`` is given).
        lowercase: Lowercase the text: when training a tokenizer (unset: WordPiece yes, as BERT; byte-level BPE no,
            and it refuses True: it would not be lossless) or loading a ``vocab.txt`` (unset: yes).
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` (BERT) or ``bpe`` (byte-level, lossless:
            ``decode(encode(text)) == text``; see :mod:`lit_lm.data.core.tokenizer`). Ignored when ``tokenizer`` is
            given.
        cache_dir: Where trained task tokenizers are cached.
        test_fraction: With no ``test_files``: hold out this share of ``train_files`` as the test split, left out
            of training and validation; the split is fixed (the same for every ``seed``). 0: none.
        extra_train_files: More training files, added to the training split only: the validation hold-out
            comes from ``train_files`` alone, so runs with different extra data validate on the same examples.
        task: A named NLI task (``snli``, ``mnli``, ``rte``, ``scitail``, ``sick``, ``anli``): its label set, unless
            ``labels`` is given. Metrics: accuracy (main) and macro F1.
    """

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        tokenizer: str | None = None,
        labels: list[str] | None = None,
        format: Literal["decoder", "encoder"] = "decoder",
        start_token: bool = True,
        max_seq_length: int = 128,
        batch_size: int = 32,
        group_by_length: bool = False,
        num_workers: int = 0,
        seed: int = 42,
        val_fraction: float = 0.05,
        reader: Literal["auto", "jsonl", "tsv", "infersent"] = "auto",
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "wordpiece",
        cache_dir: str = ".cache/lit_lm",
        extra_train_files: list[str] | None = None,
        test_fraction: float = 0.0,
        task: str | None = None,
    ) -> None:
        if task is not None and task_spec(task, "pair").reader != "nli":
            raise DataError(f"task {task!r} is not an NLI task; use SentencePairDataModule for it")
        if task is None and labels is None:
            labels = list(NLI_LABELS)
        self.nli_reader: NLIReader = reader
        super().__init__(task=task, train_files=train_files, val_files=val_files, test_files=test_files,
                         tokenizer=tokenizer, labels=labels, format=format, start_token=start_token,
                         max_seq_length=max_seq_length, batch_size=batch_size, group_by_length=group_by_length,
                         num_workers=num_workers, seed=seed, val_fraction=val_fraction, vocab_size=vocab_size,
                         lowercase=lowercase, tokenizer_kind=tokenizer_kind, cache_dir=cache_dir,
                         extra_train_files=extra_train_files, test_fraction=test_fraction)  # fmt: skip
        self.metrics, self.main_metric = ("acc", "macro_f1"), "acc"

    def _check_builtin(self) -> None:
        if [n.lower() for n in self.label_names or ()] != list(NLI_LABELS):
            raise DataError(
                f"the built-in NLI dataset (used when train_files is not set) is 3-way {list(NLI_LABELS)}; "
                f"labels={self.label_names} needs train_files with those labels"
            )

    # ---------------------------------------------------------------------------------------------- reading
    def _tokenizer_key(self) -> list[str]:
        if self.train_files is None:
            return [f"builtin-nli-v{BUILTIN_TASKS_VERSION}"]
        key = ["nli", self.nli_reader] + [f"{f}:{file_digest(p)}" for f in self.train_files for p in self._paths(f)]
        if self.extra_train_files:  # apart, so adding none keeps the keys of caches made before the setting
            key += ["extra"] + [f"{f}:{file_digest(p)}" for f in self.extra_train_files for p in self._paths(f)]
        return key

    def _paths(self, f: str) -> list[Path]:
        p = Path(f)
        if p.is_dir() or p.name.startswith(("s1.", "s2.", "labels.")):
            return list(infersent_files(p))
        return [require_file(p)]

    def _read_file(self, path: str) -> ReadResult[TextExample]:
        result = read_nli(path, self.label_vocab, self.nli_reader)
        examples = [TextExample(e.premise, e.hypothesis, e.label, e.source) for e in result.examples]
        return ReadResult(examples, result.skipped, result.path)

    def _builtin(self, split: str) -> list[TextExample]:
        return [TextExample(e.premise, e.hypothesis, e.label, e.source) for e in builtin_nli(split)]
