"""Multiple-choice data (Story Cloze, COPA, or a generic JSONL): readers, the tokenized dataset and
:class:`MultipleChoiceDataModule`.

Every example is a context and ``C`` choices; each choice becomes its own sequence (GPT-1's recipe)::

    decoder:  [CLS] context [DELIM] choice [EXTRACT]        encoder:  [CLS] context [SEP] choice [SEP]

Readers (``reader`` setting; ``auto`` picks by extension: ``.csv`` -> story_cloze, ``.xml`` -> copa, ``.jsonl``
by the keys of its first record):

- ``story_cloze``: the Story Cloze / ROCStories CSV with header ``InputSentence1..4``,
  ``RandomFifthSentenceQuiz1/2``, ``AnswerRightEnding`` (1 or 2). Context = the four sentences joined by spaces.
- ``copa``: COPA's XML (``<item id asks-for most-plausible-alternative><p/><a1/><a2/></item>``) or JSONL with
  the same keys (``p``, ``a1``, ``a2``, ``asks-for``, ``most-plausible-alternative``: COPA-SSE) or SuperGLUE's
  (``premise``, ``choice1``, ``choice2``, ``question``, ``label`` 0/1). COPA asks for the *cause* or the *effect*
  of the premise; the context is the premise without its final period plus a connective, so each choice reads
  as a continuation: ``"My body cast a shadow over the grass because" + "The sun was rising."`` (cause) or
  ``"... so" + choice`` (effect). Choices are kept verbatim (a lowercasing tokenizer hides the capital).
- ``generic``: JSONL ``{"context": str, "choices": [str, ...], "label": int}`` (label is 0-based).

All examples of one data module must have the same number of choices.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from xml.parsers import expat

import numpy as np
from torch.utils.data import Dataset

from lit_lm.data.core.io import (
    decode_utf8,
    file_digest,
    jsonl_records,
    read_bytes_checked,
    read_text_lines,
    require_file,
)
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind
from lit_lm.data.finetuning.base import TaskDataModule
from lit_lm.data.finetuning.builtin import BUILTIN_TASKS_VERSION, builtin_multiple_choice
from lit_lm.data.finetuning.encoding import (
    EncodedSequences,
    MultipleChoiceCollator,
    TaskFormat,
    encode_pairs,
    log_truncation,
)
from lit_lm.data.finetuning.examples import MultipleChoiceExample, ReadResult
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

MultipleChoiceFormat = Literal["auto", "story_cloze", "copa", "generic"]
COPA_CONNECTIVES = {"cause": "because", "effect": "so"}
_STORY_COLUMNS = (
    "InputSentence1",
    "InputSentence2",
    "InputSentence3",
    "InputSentence4",
    "RandomFifthSentenceQuiz1",
    "RandomFifthSentenceQuiz2",
    "AnswerRightEnding",
)


def _finish(out: list[MultipleChoiceExample], path: str | Path) -> ReadResult[MultipleChoiceExample]:
    if not out:
        raise DataError("no examples", path)
    result = ReadResult(out, {}, str(path))
    result.log_summary()
    return result


def copa_example(premise: str, choice1: str, choice2: str, asks_for: str, answer: int, source: str = ""):
    """Build the COPA example (see the module docstring); ``answer`` is the 0-based right choice."""
    premise = premise.strip()
    if premise.endswith("."):
        premise = premise[:-1]
    context = f"{premise} {COPA_CONNECTIVES[asks_for]}"
    return MultipleChoiceExample(context, (choice1.strip(), choice2.strip()), answer, source)


# --------------------------------------------------------------------------------------------------- readers
def read_story_cloze(path: str | Path) -> ReadResult[MultipleChoiceExample]:
    """Read a Story Cloze Test CSV (labelled: needs the ``AnswerRightEnding`` column)."""
    lines = read_text_lines(path)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, [])
    except csv.Error as e:
        raise DataError(f"malformed CSV ({e})", path, reader.line_num) from None
    missing = [c for c in _STORY_COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"header lacks the Story Cloze column(s) {missing}; found {header}. "
            "Unlabelled Story Cloze files (without AnswerRightEnding) cannot be used for training or evaluation",
            path,
            reader.line_num,
        )
    idx = [header.index(c) for c in _STORY_COLUMNS]
    out: list[MultipleChoiceExample] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path, reader.line_num) from None
        no = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"expected {len(header)} comma-separated fields as in the header, found {len(row)}", path, no
            )
        s1, s2, s3, s4, e1, e2, answer = (row[i].strip() for i in idx)
        if answer not in ("1", "2"):
            raise DataError(f"AnswerRightEnding must be 1 or 2, got {answer!r}", path, no)
        out.append(MultipleChoiceExample(" ".join((s1, s2, s3, s4)), (e1, e2), int(answer) - 1, f"{path}:{no}"))
    return _finish(out, path)


def _copa_fields(fields: dict[str, Any], path: str | Path, line: int, item: str = "item"):
    """Validate COPA attributes/elements -> (premise, a1, a2, asks_for, 0-based answer)."""
    for name in ("p", "a1", "a2", "asks-for", "most-plausible-alternative"):
        if name not in fields:
            raise DataError(f"COPA {item} lacks {name!r}", path, line)
    for name in ("p", "a1", "a2"):
        if not isinstance(fields[name], str):
            raise DataError(f"COPA field {name!r} must be a string, got {type(fields[name]).__name__}", path, line)
    asks = str(fields["asks-for"]).strip().lower()
    if asks not in COPA_CONNECTIVES:
        raise DataError(f"asks-for must be 'cause' or 'effect', got {fields['asks-for']!r}", path, line)
    answer = str(fields["most-plausible-alternative"]).strip()
    if answer not in ("1", "2"):
        raise DataError(
            f"most-plausible-alternative must be 1 or 2, got {fields['most-plausible-alternative']!r}", path, line
        )
    return fields["p"], fields["a1"], fields["a2"], asks, int(answer) - 1


def read_copa_xml(path: str | Path) -> ReadResult[MultipleChoiceExample]:
    """Read COPA's XML format (the original release files and Balanced-COPA)."""
    p, data = read_bytes_checked(path)
    decode_utf8(data, p)  # a clear file:line message for non-UTF-8 bytes before expat sees them
    parser = expat.ParserCreate(encoding="utf-8")  # checked above; overrides (a possibly bogus) encoding="..."
    items: list[tuple[int, dict[str, str]]] = []
    state: dict[str, Any] = {"item": None, "field": None, "text": []}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "item":
            state["item"] = (parser.CurrentLineNumber, dict(attrs))
        elif name in ("p", "a1", "a2") and state["item"] is not None:
            state["field"], state["text"] = name, []

    def chars(text: str) -> None:
        if state["field"] is not None:
            state["text"].append(text)

    def end(name: str) -> None:
        if name == state["field"]:
            state["item"][1][name] = "".join(state["text"]).strip()
            state["field"] = None
        elif name == "item" and state["item"] is not None:
            items.append(state["item"])
            state["item"] = None

    parser.StartElementHandler, parser.CharacterDataHandler, parser.EndElementHandler = start, chars, end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        msg = expat.errors.messages[e.code]
        raise DataError(f"malformed XML ({msg}, column {e.offset + 1})", p, e.lineno) from None
    out = []
    for line, fields in items:
        premise, a1, a2, asks, answer = _copa_fields(fields, p, line, f"item id={fields.get('id', '?')!r}")
        out.append(copa_example(premise, a1, a2, asks, answer, f"{p}:{line}"))
    if not items:
        raise DataError("no <item> elements; expected COPA XML (<copa-corpus><item ...>)", p)
    return _finish(out, p)


def _jsonl_objects(path: str | Path):
    return jsonl_records(read_text_lines(path), path)


def read_copa_jsonl(path: str | Path) -> ReadResult[MultipleChoiceExample]:
    """Read COPA JSONL: COPA-SSE's keys (``p``, ``a1``, ``a2``, ``asks-for``, ``most-plausible-alternative``)
    or SuperGLUE's (``premise``, ``choice1``, ``choice2``, ``question``, ``label``)."""
    out = []
    for no, obj in _jsonl_objects(path):
        if "p" not in obj and "premise" in obj:  # SuperGLUE: map onto the COPA names
            if "label" not in obj:
                raise DataError("COPA record lacks 'label' (unlabelled test files cannot be used)", path, no)
            lab = obj["label"]
            if isinstance(lab, bool) or lab not in (0, 1, "0", "1"):
                raise DataError(f"SuperGLUE COPA label must be 0 or 1, got {lab!r}", path, no)
            obj = {
                "p": obj["premise"],
                "a1": obj.get("choice1"),
                "a2": obj.get("choice2"),
                "asks-for": obj.get("question"),
                "most-plausible-alternative": int(lab) + 1,
            }
            obj = {k: v for k, v in obj.items() if v is not None}
        premise, a1, a2, asks, answer = _copa_fields(obj, path, no, "record")
        out.append(copa_example(premise, a1, a2, asks, answer, f"{path}:{no}"))
    return _finish(out, path)


def read_choices_jsonl(path: str | Path) -> ReadResult[MultipleChoiceExample]:
    """Read generic multiple-choice JSONL: ``{"context": str, "choices": [str, ...], "label": int}``."""
    out = []
    for no, obj in _jsonl_objects(path):
        for name in ("context", "choices", "label"):
            if name not in obj:
                raise DataError(f"missing field {name!r} (expected context/choices/label)", path, no)
        choices = obj["choices"]
        if not isinstance(obj["context"], str):
            raise DataError("field 'context' must be a string", path, no)
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError("field 'choices' must be a list of at least 2 strings", path, no)
        lab = obj["label"]
        if isinstance(lab, bool) or not isinstance(lab, int) or not 0 <= lab < len(choices):
            raise DataError(f"label must be a 0-based choice index below {len(choices)}, got {lab!r}", path, no)
        out.append(MultipleChoiceExample(obj["context"], tuple(choices), lab, f"{path}:{no}"))
    return _finish(out, path)


def detect_multiple_choice_reader(path: str | Path, reader: MultipleChoiceFormat = "auto") -> str:
    """Which reader function ``reader`` means for ``path``: ``story_cloze``, ``copa_xml``, ``copa_jsonl`` or
    ``generic``."""
    p = require_file(path)
    suffix = p.suffix.lower()
    if reader == "story_cloze":
        return "story_cloze"
    if reader == "generic":
        return "generic"
    if reader == "copa":
        return "copa_xml" if suffix == ".xml" else "copa_jsonl"
    if reader != "auto":
        raise DataError(f"unknown reader {reader!r}; use auto, story_cloze, copa or generic", p)
    if suffix == ".csv":
        return "story_cloze"
    if suffix == ".xml":
        return "copa_xml"
    if suffix in (".jsonl", ".json", ".ndjson"):
        for no, obj in _jsonl_objects(p):
            if "choices" in obj:
                return "generic"
            if "p" in obj or "choice1" in obj:
                return "copa_jsonl"
            raise DataError(f"cannot tell the reader from the keys {sorted(obj)}; set reader: copa or generic", p, no)
    raise DataError("cannot tell the reader from the file name; set reader: story_cloze, copa or generic", p)


_READERS = {
    "story_cloze": read_story_cloze,
    "copa_xml": read_copa_xml,
    "copa_jsonl": read_copa_jsonl,
    "generic": read_choices_jsonl,
}


def read_multiple_choice(path: str | Path, reader: MultipleChoiceFormat = "auto") -> ReadResult[MultipleChoiceExample]:
    """Read a multiple-choice file with the named reader (or the one ``auto`` detects)."""
    return _READERS[detect_multiple_choice_reader(path, reader)](path)


# --------------------------------------------------------------------------------------------------- dataset
class MultipleChoiceDataset(Dataset):
    """Tokenized examples of ``num_choices`` sequences each (choices of one example adjacent in ``encoded``);
    items are collated by :class:`~lit_lm.data.finetuning.encoding.MultipleChoiceCollator`.

    Args:
        encoded: ``n * num_choices`` formatted sequences.
        labels: (n,) index of the right choice.
        num_choices: Choices per example.
    """

    def __init__(self, encoded: EncodedSequences, labels: np.ndarray, num_choices: int) -> None:
        if len(encoded) != len(labels) * num_choices:
            raise ValueError(f"{len(encoded)} sequences for {len(labels)} examples of {num_choices} choices")
        self.encoded = encoded
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_choices = num_choices

    @property
    def n_truncated(self) -> int:
        """Sequences cut to fit ``max_seq_length`` (what the DataModule's ``stats`` report)."""
        return self.encoded.n_truncated

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, c = self.encoded, self.num_choices
        sl = slice(i * c, (i + 1) * c)
        return {
            "input_ids": [e.sequence(j) for j in range(i * c, (i + 1) * c)],
            "segment_start": e.segment_starts[sl],
            "extract_position": e.extract_positions[sl],
            "label": int(self.labels[i]),
        }

    @property
    def lengths(self) -> np.ndarray:
        """Per example: the length of its longest choice sequence."""
        return self.encoded.lengths.reshape(-1, self.num_choices).max(axis=1)


def check_num_choices(examples: Sequence[MultipleChoiceExample], num_choices: int | None = None) -> int:
    """The common number of choices; :class:`DataError` naming the first example that differs."""
    if not examples:
        raise DataError("no multiple-choice examples")
    n = num_choices if num_choices is not None else len(examples[0].choices)
    for ex in examples:
        if len(ex.choices) != n:
            raise DataError(
                f"example {ex.source or ex.context[:40]!r} has {len(ex.choices)} choices, others have {n}; "
                "all examples of a data module need the same number of choices"
            )
    return n


def tokenize_multiple_choice(
    examples: Sequence[MultipleChoiceExample],
    tokenizer: Tokenizer,
    format: TaskFormat = "decoder",
    start_token: bool = True,
    max_seq_length: int = 128,
    name: str = "multiple choice",
) -> MultipleChoiceDataset:
    """Format and tokenize each (context, choice) once; truncations are logged."""
    c = check_num_choices(examples)
    firsts = [ex.context for ex in examples for _ in range(c)]
    seconds = [choice for ex in examples for choice in ex.choices]
    encoded = encode_pairs(tokenizer, firsts, seconds, format, start_token, max_seq_length)
    log_truncation(name, encoded, max_seq_length)
    return MultipleChoiceDataset(encoded, np.array([ex.label for ex in examples], dtype=np.int64), c)


# --------------------------------------------------------------------------------------------------- datamodule
class MultipleChoiceDataModule(TaskDataModule):
    """Multiple-choice data (Story Cloze, COPA, generic JSONL) for GPT-1 or BERT style fine-tuning.

    Batches are dicts of ``torch.long`` tensors: ``input_ids``, ``attention_mask``, ``token_type_ids``
    (B, C, T), ``extract_positions`` (B, C) and ``labels`` (B,) -- the index of the right choice. The tokenizer
    and ``num_choices`` are read on first use; reading and tokenizing the splits happen once, in :meth:`setup`.

    Args:
        train_files: Training files (see :mod:`lit_lm.data.finetuning.multiple_choice` for formats). None: the built-in
            generated dataset (:func:`lit_lm.data.finetuning.builtin.builtin_multiple_choice`).
        val_files: Validation files. None: the built-in validation split when ``train_files`` is None, else a
            seeded random ``val_fraction`` of the training examples.
        test_files: Test files (also used by ``predict``). None: the built-in test split when ``train_files``
            is None, else no test set.
        tokenizer: Path to a ``tokenizer.json``, a BERT ``vocab.txt``, or a directory holding one -- normally the
            pretraining tokenizer. None: train a WordPiece tokenizer on the training text (cached in
            ``cache_dir``).
        reader: File format: ``auto`` (by extension and keys), ``story_cloze``, ``copa`` or ``generic``.
        format: ``decoder``: ``[CLS] context [DELIM] choice [EXTRACT]``; ``encoder``: ``[CLS] context [SEP]
            choice [SEP]`` with token type ids 0/1.
        start_token: Decoder format: begin each sequence with ``[CLS]`` as the start token.
        max_seq_length: Longest sequence per choice, special tokens included; cut longest-first.
        batch_size: Examples (each of ``num_choices`` sequences) per batch, per device.
        group_by_length: Order training batches so each holds similar lengths.
        num_workers: DataLoader worker processes.
        seed: Seed for shuffling, length grouping and the validation hold-out.
        val_fraction: Share of the training examples held out for validation when ``val_files`` is None.
        vocab_size: Vocabulary size of a tokenizer trained here (ignored when ``tokenizer`` is given).
        lowercase: Lowercase the text: when training a tokenizer (unset: WordPiece yes, as BERT; byte-level BPE no,
            and it refuses True: it would not be lossless) or loading a ``vocab.txt`` (unset: yes).
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` (BERT) or ``bpe`` (byte-level, lossless:
            ``decode(encode(text)) == text``; see :mod:`lit_lm.data.core.tokenizer`). Ignored when ``tokenizer`` is
            given.
        cache_dir: Where trained task tokenizers are cached.
        dataset: Deprecated name of ``reader`` (configs written before lit_lm 0.2).
        test_fraction: With no ``test_files``: hold out this share of ``train_files`` as the test split, left out
            of training and validation; the split is fixed (the same for every ``seed``). 0: none.
        extra_train_files: More training files, added to the training split only: the validation hold-out
            comes from ``train_files`` alone, so runs with different extra data validate on the same examples.
    """

    #: What the best checkpoint is selected by (``val/acc``) and the results report, as for the other families.
    main_metric = "acc"

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        tokenizer: str | None = None,
        reader: Literal["auto", "story_cloze", "copa", "generic"] = "auto",
        format: Literal["decoder", "encoder"] = "decoder",
        start_token: bool = True,
        max_seq_length: int = 128,
        batch_size: int = 16,
        group_by_length: bool = False,
        num_workers: int = 0,
        seed: int = 42,
        val_fraction: float = 0.1,
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "wordpiece",
        cache_dir: str = ".cache/lit_lm",
        dataset: Literal["auto", "story_cloze", "copa", "generic"] | None = None,
        extra_train_files: list[str] | None = None,
        test_fraction: float = 0.0,
    ) -> None:
        if dataset is not None:
            if reader not in ("auto", dataset):
                raise DataError(f"reader={reader!r} and its deprecated name dataset={dataset!r} disagree; set reader")
            warnings.warn("MultipleChoiceDataModule(dataset=...) is deprecated; use reader=...", FutureWarning,
                          stacklevel=2)  # fmt: skip
            reader = dataset
        super().__init__(train_files, val_files, test_files, tokenizer, format, start_token, max_seq_length,
                         batch_size, group_by_length, num_workers, seed, val_fraction, vocab_size, lowercase,
                         cache_dir, tokenizer_kind, extra_train_files, test_fraction)  # fmt: skip
        self.reader: MultipleChoiceFormat = reader
        self._read_cache: dict[str, ReadResult[MultipleChoiceExample]] = {}

    @cached_property
    def num_choices(self) -> int:
        """Choices per example (all examples of the module have the same number; read from the first file)."""
        return self._detect_num_choices()

    # ---------------------------------------------------------------------------------------------- reading
    def _detect_num_choices(self) -> int:
        if self.train_files is None:
            return 2  # the built-in dataset
        first = next(f for files in (self.train_files, self.val_files, self.test_files) if files for f in files)
        kind = detect_multiple_choice_reader(first, self.reader)
        if kind != "generic":
            return 2  # Story Cloze and COPA
        return len(self._read([first])[0][0].choices)

    def _tokenizer_key(self) -> list[str]:
        if self.train_files is None:
            return [f"builtin-mc-v{BUILTIN_TASKS_VERSION}"]
        extra = self.extra_train_files or []
        for f in self.train_files + extra:
            detect_multiple_choice_reader(f, self.reader)  # a clear error for a missing file
        key = ["mc", self.reader] + [f"{f}:{file_digest(f)}" for f in self.train_files]
        if extra:  # apart, so adding none keeps the keys of caches made before the setting
            key += ["extra"] + [f"{f}:{file_digest(f)}" for f in extra]
        return key

    def _tokenizer_texts(self) -> list[str]:
        return [t for ex in self.examples("train") for t in (ex.context, *ex.choices)]

    def _read(self, files: list[str]) -> tuple[list[MultipleChoiceExample], dict[str, int]]:
        out: list[MultipleChoiceExample] = []
        for f in files:
            if f not in self._read_cache:
                self._read_cache[f] = read_multiple_choice(f, self.reader)
            out.extend(self._read_cache[f].examples)
        return out, {}  # no multiple-choice reader skips examples: bad ones are errors

    def _builtin(self, split: str) -> list[MultipleChoiceExample]:
        return builtin_multiple_choice(split)

    def _check(self, examples: list[MultipleChoiceExample]) -> None:
        check_num_choices(examples, self.num_choices)

    def _tokenize(self, examples: list[MultipleChoiceExample], split: str) -> MultipleChoiceDataset:
        return tokenize_multiple_choice(
            examples, self.tokenizer, self.format, self.start_token, self.max_seq_length, split
        )

    def _collator(self) -> MultipleChoiceCollator:
        return MultipleChoiceCollator(self.pad_token_id)
