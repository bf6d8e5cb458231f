"""Tagged sentences (named-entity recognition: CoNLL-2003 and the like): readers, tag schemes, the built-in set and
:func:`write_conll`.

Readers return a :class:`~lit_lm.data.finetuning.examples.ReadResult` of :class:`TaggedSentence`, tags in BIO2:

==============  =================================================================================================
``conll``       CoNLL column files as published: one word per line, columns separated by spaces (or tabs), the word
                first and the tag last (CoNLL-2003: ``word POS chunk NER``); a blank line ends a sentence and a
                ``-DOCSTART-`` line starts a document. Every line has as many columns as the first word line.
``two_column``  the same with exactly two columns, ``word tag``.
``jsonl``       one JSON object per line with a list of words (``tokens``) and a list of tags (``ner_tags``): tag
                names, or integer ids into ``labels`` (Hugging Face's ``conll2003`` stores ids).
``parquet``     the same columns in a Parquet file (the Hugging Face Hub's format; needs pyarrow). Ids without
                ``labels`` take the names the Hub writes into the file's metadata (its ``ClassLabel`` feature).
==============  =================================================================================================

Tag schemes: CoNLL-2003's tags are IOB1 (``I-XXX`` inside an entity and at its start; ``B-XXX`` only where an
entity directly follows another of the same type); models are trained on BIO2 (``B-XXX`` at every entity start),
so ``tag_scheme: iob1`` (the default) converts (:func:`iob1_to_bio2`). A BIO2 sequence is also a valid IOB1 one
and converts to itself, so the default reads BIO2 files unchanged; ``tag_scheme: bio2`` instead refuses an entity
that starts with ``I-``. A tag that is neither ``O`` nor ``B-``/``I-`` with a type, or (with ``labels``) a tag not
in the list, is a :class:`DataError` naming ``file:line`` (``file: row N`` for Parquet). Empty sentences and
documents are skipped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from lit_lm.data.core.io import atomic_write, jsonl_records, read_text_lines, require_file
from lit_lm.data.finetuning.builtin import cut_splits, split_of
from lit_lm.data.finetuning.examples import ReadResult
from lit_lm.data.finetuning.tables import located_error, parquet_columns
from lit_lm.errors import DataError

__all__ = ["BUILTIN_NER_VERSION", "TagScheme", "TaggedReader", "TaggedSentence", "builtin_token_classification",
           "check_bio2", "default_labels", "detect_tagged_format", "iob1_to_bio2", "read_conll", "read_tagged",
           "read_tagged_records", "write_conll"]  # fmt: skip

TagScheme = Literal["iob1", "bio2"]
TaggedReader = Literal["auto", "conll", "two_column", "jsonl", "parquet"]
DOCSTART = "-DOCSTART-"
Loc = int | str  # a line number, or "row N" in a Parquet file

BUILTIN_NER_VERSION = 1
"""Bumped whenever the generated sentences change (it keys the task-tokenizer cache)."""
NER_SIZES = {"train": 2000, "val": 200, "test": 200}


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words and one BIO2 tag per word.

    Args:
        words: The words, as the file splits them.
        tags: ``O``, ``B-TYPE`` or ``I-TYPE`` per word (BIO2: ``B-`` at every entity start).
        source: ``file:line`` of its first word (``file:row N`` for Parquet; empty for generated data).
    """

    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = ""


# --------------------------------------------------------------------------------------------------- tag schemes
def split_tag(tag: str) -> tuple[str, str] | None:
    """``("O", "")``, ``("B", type)`` or ``("I", type)``; None for a malformed tag."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I") and kind.strip():
        return prefix, kind
    return None


def _malformed(tag: str, scheme: str) -> str:
    return (
        f"malformed tag {tag!r}: {scheme} tags are O, B-TYPE or I-TYPE (an IOBES/BILOU file needs converting "
        "first; a column count that varies within the file may put another column here)"
    )


def _fail(message: str, path: str | Path | None, lines: Sequence[Loc] | None, i: int) -> None:
    if path is None:
        raise DataError(f"tag {i + 1} of the sentence: {message}")
    raise located_error(message, path, lines[i] if lines is not None else None)


def iob1_to_bio2(tags: Sequence[str], path: str | Path | None = None, lines: Sequence[Loc] | None = None) -> list[str]:
    """IOB1 tags -> BIO2: an ``I-X`` that starts an entity (after ``O`` or another type) becomes ``B-X``.

    ``B-X`` starts an entity wherever it is; a BIO2 sequence converts to itself. A malformed tag raises
    :class:`DataError` naming ``path:lines[i]`` (or the tag's position when no path is given).
    """
    out: list[str] = []
    prev = ""
    for i, tag in enumerate(tags):
        parts = split_tag(tag)
        if parts is None:
            _fail(_malformed(tag, "IOB1"), path, lines, i)
        prefix, kind = parts  # type: ignore[misc]
        out.append(f"B-{kind}" if prefix == "I" and prev != kind else tag)
        prev = kind
    return out


def check_bio2(tags: Sequence[str], path: str | Path | None = None, lines: Sequence[Loc] | None = None) -> list[str]:
    """The tags as they are, after checking that they are BIO2 (every entity starts with ``B-``)."""
    prev = ""
    for i, tag in enumerate(tags):
        parts = split_tag(tag)
        if parts is None:
            _fail(_malformed(tag, "BIO2"), path, lines, i)
        prefix, kind = parts  # type: ignore[misc]
        if prefix == "I" and prev != kind:
            after = "O" if not prev else f"a {prev} tag"
            _fail(
                f"{tag!r} after {after}: in BIO2 an entity starts with B-; set tag_scheme: iob1 if the file is "
                "IOB1 (CoNLL-2003 as published), which reads I- at an entity's start as its start",
                path,
                lines,
                i,
            )
        prev = kind
    return list(tags)


def to_bio2(tags: Sequence[str], scheme: TagScheme, path=None, lines: Sequence[Loc] | None = None) -> list[str]:
    if scheme == "iob1":
        return iob1_to_bio2(tags, path, lines)
    if scheme == "bio2":
        return check_bio2(tags, path, lines)
    raise DataError(f"tag_scheme must be 'iob1' or 'bio2', got {scheme!r}")


def default_labels(sentences: Iterable[TaggedSentence]) -> list[str]:
    """``O``, then ``B-`` and ``I-`` of every entity type seen, types sorted (both prefixes even where only one is
    seen, so that the validation and test data may hold the other)."""
    kinds = sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def check_label_names(labels: Sequence[str]) -> list[str]:
    """``labels`` as a list, after checking it: distinct BIO tags including ``O``."""
    if isinstance(labels, str):
        raise DataError(f"labels must be a list of tag names, got the string {labels!r}")
    names = [str(n) for n in labels]
    bad = [n for n in names if split_tag(n) is None]
    if bad or "O" not in names or len(set(names)) != len(names):
        raise DataError(f"labels must be distinct tags O, B-TYPE, I-TYPE including O; got {names}")
    return names


# --------------------------------------------------------------------------------------------------- readers
def _allowed(labels: Sequence[str] | None, allowed: Sequence[str] | None) -> list[str] | None:
    given = allowed if allowed is not None else labels
    return None if given is None else check_label_names(given)


def _sentence(words: list[str], raw: list[Any], locs: list[Loc], path: str | Path, scheme: TagScheme,
              labels: Sequence[str] | None, known: list[str] | None) -> TaggedSentence:  # fmt: skip
    names: list[str] = []
    for i, tag in enumerate(raw):
        if isinstance(tag, int) and not isinstance(tag, bool):
            if labels is None:
                raise located_error(f"tag {tag} is an id, but no labels are given; set labels to the names in id order",
                             path, locs[i])  # fmt: skip
            if not 0 <= tag < len(labels):
                raise located_error(f"tag id {tag} is outside labels (ids 0..{len(labels) - 1}: {list(labels)})",
                             path, locs[i])  # fmt: skip
            tag = labels[tag]
        elif not isinstance(tag, str):
            raise located_error(f"tag {tag!r} is neither a tag name nor an integer id", path, locs[i])
        names.append(tag)
    bio2 = to_bio2(names, scheme, path, locs)
    if known is not None:
        for i, tag in enumerate(bio2):
            if tag not in known:
                read = "" if tag == names[i] else f" (read as {tag!r})"
                raise located_error(f"unknown tag {names[i]!r}{read} for word {words[i]!r}; the labels are {known}: "
                             "add it to labels, or fix the tag", path, locs[i])  # fmt: skip
    return TaggedSentence(tuple(words), tuple(bio2), f"{path}:{locs[0]}")


def _finish(out: list[TaggedSentence], path: str | Path) -> ReadResult[TaggedSentence]:
    if not out:
        raise DataError("no tagged sentences in the file", path)
    result = ReadResult(out, {}, str(path))
    result.log_summary()
    return result


def read_conll(
    path: str | Path,
    tag_scheme: TagScheme = "iob1",
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    tag_column: int = -1,
    allowed: Sequence[str] | None = None,
) -> ReadResult[TaggedSentence]:
    """Read a CoNLL column file (see the module docstring).

    Args:
        path: The file.
        tag_scheme: ``iob1`` (CoNLL-2003 as published; also reads BIO2) or ``bio2`` (checked).
        labels: The task's tags (BIO2 names); a tag outside them is a :class:`DataError`. None: any tag.
        columns: The number of columns every word line must have (2 for ``word tag`` files); None: as the first.
        tag_column: Which column holds the tag (0-based; -1: the last). :func:`write_conll`'s files hold the gold
            tag in column 1 and the predicted one last.
        allowed: The tags the file may hold, when they are not ``labels`` (e.g. those of the training files).
    """
    known = _allowed(labels, allowed)
    out: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    locs: list[Loc] = []
    first: tuple[int, int] | None = None  # (line, number of columns) of the first word line

    def flush() -> None:
        if words:
            out.append(_sentence(words, tags, locs, path, tag_scheme, None, known))
            words.clear()
            tags.clear()
            locs.clear()

    for number, line in enumerate(read_text_lines(path), 1):
        cells = line.split()
        if not cells or cells[0] == DOCSTART:
            flush()
            continue
        if first is None:
            need = columns if columns is not None else max(2, len(cells))
            if len(cells) != need or not -need <= tag_column < need or tag_column in (0, -need):
                raise DataError(f"found {len(cells)} columns; expected {need} with the word in column 0 and the tag "
                                f"in column {tag_column}", path, number)  # fmt: skip
            first = (number, len(cells))
        elif len(cells) != first[1]:
            raise DataError(
                f"found {len(cells)} columns, but the first word line ({first[0]}) has {first[1]}; every word line "
                "needs the same columns (a word with a space in it?)",
                path,
                number,
            )
        words.append(cells[0])
        tags.append(cells[tag_column])
        locs.append(number)
    flush()
    return _finish(out, path)


def _hub_label_names(path: str | Path, column: str) -> list[str] | None:
    """The ``ClassLabel`` names the Hugging Face Hub writes into a Parquet file's metadata for ``column``."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(require_file(path)).metadata or {}
    try:
        feature = json.loads(meta[b"huggingface"])["info"]["features"][column]
        inner = feature.get("feature", feature)
        return [str(n) for n in inner["names"]] if isinstance(inner.get("names"), list) else None
    except (KeyError, TypeError, ValueError):
        return None


def _records(path: str | Path, kind: str, tokens_column: str, tags_column: str) -> Iterator[tuple[Loc, Any, Any]]:
    if kind == "jsonl":
        for number, record in jsonl_records(read_text_lines(path), path):
            for column in (tokens_column, tags_column):
                if column not in record:
                    raise DataError(f"the record has no {column!r} field (its keys: {sorted(record)}); set "
                                    "tokens_column / tags_column to the file's names", path, number)  # fmt: skip
            yield number, record[tokens_column], record[tags_column]
        return
    names = parquet_columns(path)
    missing = [c for c in (tokens_column, tags_column) if c not in names]
    if missing:
        raise DataError(f"no column {missing[0]!r} (columns: {names}); set tokens_column / tags_column", path)
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=[tokens_column, tags_column])
    for n, (words, tags) in enumerate(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)):
        yield f"row {n}", words, tags


def read_tagged_records(
    path: str | Path,
    format: Literal["jsonl", "parquet"],
    tag_scheme: TagScheme = "iob1",
    labels: Sequence[str] | None = None,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    allowed: Sequence[str] | None = None,
) -> ReadResult[TaggedSentence]:
    """Read JSONL or Parquet records holding a list of words and a list of tags: names, or ids into ``labels`` (else
    into the names in a Hub Parquet file's metadata). Tags outside ``allowed`` (default: ``labels``) are errors."""
    known = _allowed(labels, allowed)
    id_names = check_label_names(labels) if labels is not None else None
    if format == "parquet" and id_names is None:
        parquet_columns(path)  # a clear error without pyarrow
        id_names = _hub_label_names(path, tags_column)
    out: list[TaggedSentence] = []
    for loc, words, tags in _records(path, format, tokens_column, tags_column):
        for column, value in ((tokens_column, words), (tags_column, tags)):
            if not isinstance(value, list):
                got = "null" if value is None else type(value).__name__
                raise located_error(f"{column!r} must be a list, got {got}", path, loc)
        if len(words) != len(tags):
            raise located_error(f"{len(words)} words but {len(tags)} tags", path, loc)
        if not words:
            continue  # an empty sentence
        bad = next((w for w in words if not isinstance(w, str) or not w.strip()), None)
        if bad is not None:
            raise located_error(f"word {bad!r} in {tokens_column!r}: every word must be non-empty text", path, loc)
        out.append(_sentence(list(words), list(tags), [loc] * len(words), path, tag_scheme, id_names, known))
    return _finish(out, path)


def detect_tagged_format(path: str | Path) -> Literal["conll", "two_column", "jsonl", "parquet"]:
    """``auto``: JSONL or Parquet by name (or first bytes); a text file by its first word line's columns."""
    p = require_file(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    with open(p, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    for line in read_text_lines(p):
        cells = line.split()
        if cells and cells[0] != DOCSTART:
            if line.lstrip().startswith("{"):
                return "jsonl"
            return "two_column" if len(cells) == 2 else "conll"
    raise DataError("no word lines in the file", p)


def read_tagged(
    path: str | Path,
    reader: TaggedReader = "auto",
    tag_scheme: TagScheme = "iob1",
    labels: Sequence[str] | None = None,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    allowed: Sequence[str] | None = None,
) -> ReadResult[TaggedSentence]:
    """Read one file of tagged sentences with the reader ``reader`` names (``auto``: :func:`detect_tagged_format`)."""
    kind = detect_tagged_format(path) if reader == "auto" else reader
    if kind in ("conll", "two_column"):
        return read_conll(path, tag_scheme, labels, columns=2 if kind == "two_column" else None, allowed=allowed)
    if kind in ("jsonl", "parquet"):
        return read_tagged_records(path, kind, tag_scheme, labels, tokens_column, tags_column, allowed)
    raise DataError(f"unknown reader {reader!r}; use auto, conll, two_column, jsonl or parquet", path)


def write_conll(path: str | Path, sentences: Sequence[TaggedSentence], predicted: Sequence[Sequence[str]]) -> None:
    """Write ``word gold predicted`` per line, a blank line after each sentence: the input of ``conlleval``
    (``perl conlleval.pl < file``), and readable by :func:`read_conll` (``tag_column=1`` for the gold tags)."""
    if len(sentences) != len(predicted):
        raise ValueError(f"{len(sentences)} sentences but {len(predicted)} predicted tag sequences")
    lines: list[str] = []
    for s, tags in zip(sentences, predicted, strict=True):
        if len(tags) != len(s.words):
            raise ValueError(f"{s.source or 'a sentence'}: {len(s.words)} words but {len(tags)} predicted tags")
        lines += [f"{w} {g} {p}" for w, g, p in zip(s.words, s.tags, tags, strict=True)] + [""]
    with atomic_write(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------- built-in set
_FIRST = ("John", "Mary", "Peter", "Anna", "David", "Maria", "James", "Laura", "Michael", "Sarah", "Carlos", "Yuki",
          "Ahmed", "Olga", "Pierre", "Ingrid", "Kofi", "Elena")  # fmt: skip
_LAST = ("Smith", "Johnson", "Brown", "Garcia", "Mueller", "Rossi", "Tanaka", "Kowalski", "Dubois", "Hansen",
         "Silva", "Novak", "Khan", "Ivanova", "Mensah", "Washington")  # fmt: skip
_LOC = ("Paris", "London", "Berlin", "Tokyo", "Madrid", "Rome", "Moscow", "Cairo", "Sydney", "Toronto", "Munich",
        "Manchester", "Washington", "New York", "Los Angeles", "South Africa", "Buenos Aires", "Hong Kong",
        "Rio de Janeiro", "Germany", "France", "Brazil", "Japan", "Canada", "Kenya", "Sri Lanka",
        "New Zealand")  # fmt: skip
_ORG = ("Reuters", "Siemens", "Toyota", "Barclays", "Ajax", "Juventus", "Bayern Munich", "Manchester United",
        "Real Madrid", "United Nations", "European Union", "Bank of England", "World Bank", "General Motors",
        "Deutsche Bank", "Red Cross", "NATO", "Interpol")  # fmt: skip
_NATIONALITY = ("French", "German", "Japanese", "Brazilian", "Italian", "British", "Kenyan", "Canadian")
_EVENT = ("World Cup", "Olympic Games", "Tour de France", "Nobel Prize", "Grand Prix", "Euro 96")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# {PER} {LOC} {ORG} {NAT} {EVENT}: entities (NAT and EVENT are MISC); {n}, {day}, {year}: plain words
_TEMPLATES = (
    "{PER} scored twice as {ORG} beat {ORG} {n} - {n} in {LOC} .",
    "{PER} , who joined {ORG} in {year} , said on {day} that the {NAT} team would travel to {LOC} .",
    "{ORG} shares rose {n} percent in {LOC} on {day} .",
    "The {NAT} minister {PER} met {PER} in {LOC} on {day} .",
    "{PER} told {ORG} that {LOC} would host the {EVENT} in {year} .",
    "{ORG} signed {NAT} striker {PER} from {ORG} .",
    "Police in {LOC} arrested {n} people on {day} , {ORG} reported .",
    "{PER} ( {LOC} ) {n} minutes {n} seconds",
    "{LOC} {n} {LOC} {n}",
    "{PER} won the {EVENT} ahead of {PER} .",
    "{ORG} said it would cut {n} jobs in {LOC} .",
    "Troops on the {LOC} {LOC} border were put on alert on {day} .",  # two LOC entities back to back
    "{NAT} {NAT} talks in {LOC} ended on {day} without a deal .",  # two MISC entities back to back
    "{PER} {PER} and {ORG} were named on {day} .",  # two PER entities back to back
    "The weather in {LOC} was fine on {day} .",
    "Prices fell {n} percent in the year to {day} .",
)
_SLOTS = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "NAT": "MISC", "EVENT": "MISC"}


def _entity(rng: random.Random, slot: str) -> list[str]:
    if slot == "PER":
        r = rng.random()
        if r < 0.55:
            return [rng.choice(_FIRST), rng.choice(_LAST)]
        if r < 0.65:
            return [rng.choice(_FIRST), "de", rng.choice(_LAST)]
        return [rng.choice(_LAST)]
    pool = {"LOC": _LOC, "ORG": _ORG, "NAT": _NATIONALITY, "EVENT": _EVENT}[slot]
    return rng.choice(pool).split()


_PLAIN = {"n": lambda rng: str(rng.randint(1, 99)), "day": lambda rng: rng.choice(_DAYS),
          "year": lambda rng: str(rng.randint(1960, 1996))}  # fmt: skip


def _generate(rng: random.Random, template: str) -> TaggedSentence:
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        name = piece.strip("{}") if piece.startswith("{") else None
        if name in _SLOTS:
            entity = _entity(rng, name)
            words += entity
            tags += [f"B-{_SLOTS[name]}"] + [f"I-{_SLOTS[name]}"] * (len(entity) - 1)
        else:
            words.append(_PLAIN[name](rng) if name is not None else piece)
            tags.append("O")
    return TaggedSentence(tuple(words), tuple(tags))


@lru_cache(maxsize=1)
def _ner_pool() -> dict[str, tuple[TaggedSentence, ...]]:
    rng = random.Random(20240605)
    seen: set[tuple[str, ...]] = set()
    pool: list[TaggedSentence] = []
    while len(pool) < sum(NER_SIZES.values()):
        sentence = _generate(rng, rng.choice(_TEMPLATES))
        if sentence.words not in seen:
            seen.add(sentence.words)
            pool.append(sentence)
    return cut_splits(pool, NER_SIZES)


def builtin_token_classification(split: Literal["train", "val", "test"] = "train") -> list[TaggedSentence]:
    """The built-in NER split (2,000 / 200 / 200 disjoint sentences): news-like templates filled with PER, LOC, ORG
    and MISC entities, multi-word ones included, some ambiguous by context (``Madrid`` vs ``Real Madrid``,
    ``Washington``) and some directly after one of the same type (``B-`` after ``I-`` in BIO2)."""
    return split_of(_ner_pool(), split)
