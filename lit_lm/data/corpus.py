"""Corpus reading and preparation: text/JSONL files -> documents of sentences -> memory-mapped token arrays.

Reading
    * Plain text (any suffix but ``.jsonl``/``.ndjson``): UTF-8 with or without a BOM, LF, CRLF or CR line ends.
      Project Gutenberg's header (up to ``*** START OF THE/THIS PROJECT GUTENBERG ...``) and footer (from
      ``*** END OF ...``, plus the "End of the Project Gutenberg EBook ..." line before it) are removed when
      present (``strip_gutenberg``, on by default; text without the markers is unchanged).
    * JSONL (``.jsonl``/``.ndjson``): one JSON object per line, the document in ``text_field``; blank lines are
      skipped, records with empty text are counted and logged.
    * A directory means all ``*.txt`` and ``*.jsonl`` files directly in it, sorted by name.

Documents
    ``doc_split="blank_line"`` (default): every paragraph (text between blank lines) of a text file is a
    document; ``doc_split="file"``: a whole text file is one document. A JSONL record is always one document.

Sentences (``sentence_split``)
    * ``"punct"``: whitespace (including the line breaks of hard-wrapped text) is collapsed to single spaces and
      the text is cut after ``.``, ``!`` or ``?`` (plus closing quotes/brackets) that is followed by whitespace
      and an upper-case letter (optionally after an opening quote). A period after a common abbreviation
      (Mr, Mrs, Dr, St, ...) or a single capital initial does not end a sentence.
    * ``"line"``: every line is a unit, then cut further as in ``"punct"``; right for one-verse-per-line text
      such as the KJV bible or a play's lines.
    * ``"auto"`` (default): per paragraph, ``"line"`` when it has at least two lines and at least 3/4 of them end
      in ``. ! ? : ;`` (ignoring closing quotes), else ``"punct"``. Hard-wrapped prose (Gutenberg novels)
      breaks lines anywhere, so its lines rarely all end in punctuation; verse-per-line text does.

Preparation (:func:`prepare_corpus`)
    Documents are split into train and validation (by whole document, or the last characters with
    ``split="tail"``), their sentences tokenized in batches (``Tokenizer.encode_batch``, Rust threads, or
    ``workers`` forked processes), and each split written as ``{split}_tokens.npy`` (uint16 when the vocabulary
    fits, else uint32), ``{split}_doc_offsets.npy`` and ``{split}_sent_offsets.npy`` (int64 token offsets,
    ``n + 1`` entries starting at 0) plus ``meta.json``. The directory is written atomically and reused when
    the same inputs (path, size, mtime), tokenizer and settings come again.

Character counts (for bits per character): in ``split="document"`` mode a split's ``num_chars`` is the number of
characters of its documents' text after reading (BOM and CR removed, Gutenberg header/footer stripped), without
the whitespace around each document and the blank lines between documents. In ``split="tail"`` mode it is the
exact length of that split's slice of the text (files joined by one blank line), whitespace included.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lit_lm.data.tokenizer import Tokenizer
from lit_lm.errors import DataError, LitLMError
from lit_lm.serialization import trust_checkpoints

__all__ = [
    "CorpusText",
    "Document",
    "PreparedCorpus",
    "cached_tokenizer",
    "corpus_key",
    "prepare_corpus",
    "prepare_main",
    "read_corpus",
    "remove_gutenberg_boilerplate",
    "resolve_files",
    "split_corpus",
    "split_sentences",
    "tokenizer_main",
    "train_tokenizer",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
DIR_SUFFIXES = (".txt", ".jsonl")

SplitMode = Literal["document", "tail"]
DocSplit = Literal["blank_line", "file"]
SentenceSplit = Literal["auto", "punct", "line"]

# ------------------------------------------------------------------------------------------------ sentences
_ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Mt", "Messrs", "Mme", "Mlle", "Capt", "Col", "Gen", "Lt",
    "Sgt", "Rev", "Hon", "Gov", "Sen", "Rep", "Co", "Inc", "Ltd", "vs", "viz", "cf", "al",
)  # fmt: skip
# The lookbehinds sit after the "." so that they are tried only where a period is.
_NOT_AFTER = "".join(rf"(?<!\b{a}\.)" for a in _ABBREVIATIONS) + r"(?<!\b[A-Z]\.)"
# group 1: the sentence end (punctuation + closing quotes/brackets); then whitespace; then (lookahead) a capital.
_SENT_END = re.compile(
    rf"((?:\.{_NOT_AFTER}|[!?])[.!?]*[\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[_]*[A-Z\u00c0-\u00de])"
)
_WS = re.compile(r"\s+")
_LINE_END_PUNCT = tuple(".!?:;")
_CLOSERS = "\"'\u201d\u2019)] \t"


def _punct_split(text: str) -> list[str]:
    text = _WS.sub(" ", text).strip()
    if not text:
        return []
    return _SENT_END.sub("\\1\n", text).split("\n")


def _looks_line_based(lines: list[str]) -> bool:
    if len(lines) < 2:
        return False
    ends = sum(1 for ln in lines if ln.rstrip(_CLOSERS).endswith(_LINE_END_PUNCT))
    return ends * 4 >= len(lines) * 3


def split_sentences(paragraph: str, mode: SentenceSplit = "auto") -> list[str]:
    """Split one paragraph (text without blank lines) into sentences; see the module docstring for the rules.

    >>> split_sentences("Mr. Darcy came. He sat down! Did she? yes.")
    ['Mr. Darcy came.', 'He sat down!', 'Did she? yes.']
    >>> split_sentences("  1 In the beginning.\\n  2 And the earth was\\n  3 And God said.", "line")
    ['1 In the beginning.', '2 And the earth was', '3 And God said.']
    """
    if mode not in ("auto", "punct", "line"):
        raise DataError(f"sentence_split must be 'auto', 'punct' or 'line', got {mode!r}")
    if mode == "punct" or "\n" not in paragraph:
        return _punct_split(paragraph)
    lines = [ln for ln in paragraph.split("\n") if ln.strip()]
    if mode == "auto" and not _looks_line_based(lines):
        return _punct_split(paragraph)
    out: list[str] = []
    for ln in lines:
        out.extend(_punct_split(ln))
    return out


# ------------------------------------------------------------------------------------------------ reading
_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG[^\n]*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG[^\n]*$", re.M | re.I)
_GUTENBERG_END_LINE = re.compile(r"^[ \t]*End of (?:the )?Project Gutenberg", re.M | re.I)
_PARA_SEP = re.compile(r"\n[^\S\n]*\n\s*")


def remove_gutenberg_boilerplate(text: str) -> tuple[str, int]:
    """Remove a Project Gutenberg header and footer if present. Returns the text and the number of lines removed
    before it (to keep line numbers right)."""
    lines_before = 0
    m = _GUTENBERG_START.search(text)
    if m is not None:
        lines_before = text.count("\n", 0, m.end())
        text = text[m.end() :]
    m = _GUTENBERG_END.search(text)
    if m is not None:
        text = text[: m.start()]
        tail_from = max(0, len(text) - 3000)
        ends = list(_GUTENBERG_END_LINE.finditer(text, tail_from))
        if ends:
            text = text[: ends[-1].start()]
    return text, lines_before


def _decode(path: Path, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"not valid UTF-8: byte 0x{data[e.start]:02x} at column {col}; convert the file to UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)",
            path,
            line,
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class Document:
    """One document: its sentences and the size of its text."""

    sentences: list[str]
    num_chars: int
    num_bytes: int
    source: str
    line: int


@dataclass
class _FileText:
    """What one input file contributed: its units of text (a text file: one; JSONL: one per record)."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str
    units: list[tuple[str, int]]  # (text, 1-based first line)
    jsonl: bool


@dataclass
class CorpusText:
    """All input files read into memory (see :func:`read_corpus`)."""

    files: list[_FileText]
    doc_split: DocSplit = "blank_line"
    sentence_split: SentenceSplit = "auto"
    skipped: dict[str, int] = field(default_factory=dict)

    def inputs(self) -> list[dict[str, Any]]:
        return [
            {"path": str(f.path), "size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256} for f in self.files
        ]

    def documents(self) -> list[Document]:
        """All documents, in file order."""
        docs: list[Document] = []
        for f in self.files:
            for text, line in f.units:
                docs.extend(
                    _documents_from_text(text, str(f.path), line, "file" if f.jsonl else self.doc_split,
                                         self.sentence_split)
                )  # fmt: skip
        return docs

    def full_text(self) -> str:
        """The whole text (units joined by one blank line), as ``split="tail"`` cuts it."""
        return "\n\n".join(t for f in self.files for t, _ in f.units)


def _documents_from_text(
    text: str, source: str, first_line: int, doc_split: DocSplit, sentence_split: SentenceSplit
) -> list[Document]:
    docs: list[Document] = []
    sentences: list[str] = []
    chars = nbytes = 0
    doc_line = None
    pos, line = 0, first_line
    for m in itertools.chain(_PARA_SEP.finditer(text), [None]):
        end = len(text) if m is None else m.start()
        raw = text[pos:end]
        para = raw.strip()
        if para:
            para_line = line + raw.count("\n", 0, len(raw) - len(raw.lstrip()))
            sents = split_sentences(para, sentence_split)
            if doc_split == "blank_line":
                docs.append(Document(sents, len(para), len(para.encode("utf-8")), source, para_line))
            else:
                if doc_line is None:
                    doc_line = para_line
                sentences.extend(sents)
                chars += len(para)
                nbytes += len(para.encode("utf-8"))
        if m is not None:
            line += text.count("\n", pos, m.end())
            pos = m.end()
    if doc_split == "file" and sentences:
        docs.append(Document(sentences, chars, nbytes, source, doc_line or first_line))
    return docs


def resolve_files(files: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand the input argument into a list of files: a directory means its ``*.txt``/``*.jsonl`` (sorted).

    Raises:
        DataError: a path does not exist, a directory holds no such files, or nothing was given.
    """
    if isinstance(files, (str, Path)):
        files = [files]
    out: list[Path] = []
    for f in files:
        p = Path(f).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in DIR_SUFFIXES)
            if not found:
                raise DataError("directory has no *.txt or *.jsonl files; name the files instead", p)
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError("corpus file or directory not found", p)
    if not out:
        raise DataError("no corpus files given")
    return [p.resolve() for p in out]


def _read_file(path: Path, text_field: str, strip_gb: bool, skipped: dict[str, int]) -> _FileText:
    data = path.read_bytes()
    st = path.stat()
    sha = hashlib.sha256(data).hexdigest()
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    text = _decode(path, data)
    units: list[tuple[str, int]] = []
    if jsonl:
        for i, ln in enumerate(text.split("\n"), start=1):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path, i) from None
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object per line, got {type(rec).__name__}", path, i)
            if text_field not in rec:
                keys = ", ".join(sorted(rec)[:10])
                raise DataError(f"record has no field {text_field!r} (fields: {keys}); set text_field", path, i)
            value = rec[text_field]
            if not isinstance(value, str):
                raise DataError(f"field {text_field!r} is {type(value).__name__}, expected a string", path, i)
            value = value.replace("\r\n", "\n").replace("\r", "\n")
            if not value.strip():
                skipped["empty_records"] = skipped.get("empty_records", 0) + 1
                log.debug("%s:%d: empty %r, record skipped", path, i, text_field)
                continue
            units.append((value, i))
    else:
        first_line = 1
        if strip_gb:
            text, first_line = remove_gutenberg_boilerplate(text)
            first_line += 1
        if text.strip():
            units.append((text, first_line))
        else:
            skipped["empty_files"] = skipped.get("empty_files", 0) + 1
            log.warning("%s: no text (after removing a Project Gutenberg header/footer); file skipped", path)
    if jsonl and not units:
        skipped["empty_files"] = skipped.get("empty_files", 0) + 1
        log.warning("%s: no records with text; file skipped", path)
    return _FileText(path, st.st_size, st.st_mtime_ns, sha, units, jsonl)


def read_corpus(
    files: str | Path | Iterable[str | Path],
    text_field: str = "text",
    doc_split: DocSplit = "blank_line",
    sentence_split: SentenceSplit = "auto",
    strip_gutenberg: bool = True,
) -> CorpusText:
    """Read text/JSONL files (see the module docstring). Documents are built by :meth:`CorpusText.documents`.

    Raises:
        DataError: missing path, text that is not UTF-8, malformed JSON, a missing or non-string text field
            (all with file:line), or no text at all.
    """
    if doc_split not in ("blank_line", "file"):
        raise DataError(f"doc_split must be 'blank_line' or 'file', got {doc_split!r}")
    if sentence_split not in ("auto", "punct", "line"):
        raise DataError(f"sentence_split must be 'auto', 'punct' or 'line', got {sentence_split!r}")
    paths = resolve_files(files)
    skipped: dict[str, int] = {}
    read = [_read_file(p, text_field, strip_gutenberg, skipped) for p in paths]
    if not any(f.units for f in read):
        raise DataError(f"empty corpus: no text in {', '.join(str(p) for p in paths[:5])}; check the files")
    if skipped.get("empty_records"):
        log.warning("skipped %d JSONL record(s) with empty %r", skipped["empty_records"], text_field)
    return CorpusText(read, doc_split, sentence_split, skipped)


# ------------------------------------------------------------------------------------------------ splitting
@dataclass
class _SplitText:
    docs: list[list[str]]  # sentences per document
    doc_chars: np.ndarray  # (D,) int64
    doc_bytes: np.ndarray  # (D,) int64
    exact_chars: int | None = None  # tail mode: the exact slice size
    exact_bytes: int | None = None


def _val_count(n_docs: int, val_fraction: float, val_docs: int | None) -> int:
    if n_docs < 2:
        raise DataError(
            f"the corpus has {n_docs} document; a train/validation split by document needs at least 2: add text, "
            "use doc_split='blank_line' (one document per paragraph) or split='tail'"
        )
    if val_docs is not None:
        if not 1 <= val_docs < n_docs:
            raise DataError(f"val_docs must be in [1, {n_docs - 1}] for this corpus of {n_docs} documents")
        return val_docs
    return min(n_docs - 1, max(1, round(val_fraction * n_docs)))


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")


def split_corpus(
    corpus: CorpusText,
    split: SplitMode = "document",
    val_fraction: float = 0.05,
    val_docs: int | None = None,
    seed: int = 42,
) -> dict[str, _SplitText]:
    """Divide the corpus into ``"train"`` and ``"val"``.

    ``split="document"``: a seeded permutation picks ``val_docs`` (default ``round(val_fraction * n)``, at least
    1, at most ``n - 1``) whole documents for validation; both splits keep the file order. The same documents and
    seed always give the same split. ``split="tail"``: the first ``int(n_chars * (1 - val_fraction))`` characters
    of the text are train and the rest validation, as nanoGPT does for tiny shakespeare.
    """
    if split == "tail":
        _check_fraction(val_fraction)
        text = corpus.full_text()
        cut = int(len(text) * (1.0 - val_fraction))
        parts = {"train": text[:cut], "val": text[cut:]}
        out = {}
        for name, part in parts.items():
            docs = _documents_from_text(part, "<tail>", 1, corpus.doc_split, corpus.sentence_split)
            out[name] = _SplitText(
                [d.sentences for d in docs],
                np.array([d.num_chars for d in docs], dtype=np.int64),
                np.array([d.num_bytes for d in docs], dtype=np.int64),
                exact_chars=len(part),
                exact_bytes=len(part.encode("utf-8")),
            )
        for name in SPLITS:
            if not out[name].docs:
                raise DataError(
                    f"split='tail' left the {name} part without text ({len(text)} characters in all, "
                    f"val_fraction={val_fraction}); add text or change val_fraction"
                )
        return out
    if split != "document":
        raise DataError(f"split must be 'document' or 'tail', got {split!r}")
    docs = corpus.documents()
    if val_docs is None:
        _check_fraction(val_fraction)
    n_val = _val_count(len(docs), val_fraction, val_docs)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(docs), dtype=bool)
    is_val[rng.permutation(len(docs))[:n_val]] = True
    out = {}
    for name, flag in (("train", False), ("val", True)):
        chosen = [d for d, v in zip(docs, is_val, strict=True) if v == flag]
        out[name] = _SplitText(
            [d.sentences for d in chosen],
            np.array([d.num_chars for d in chosen], dtype=np.int64),
            np.array([d.num_bytes for d in chosen], dtype=np.int64),
        )
    return out


# ------------------------------------------------------------------------------------------------ tokenizing
def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


_WORKER_TOKENIZER: Tokenizer | None = None


def _encode(tokenizer: Tokenizer, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    # encode_batch_fast (tokenizers >= 0.20) skips the offsets we do not need: ~25% faster
    fn = getattr(tokenizer.hf, "encode_batch_fast", tokenizer.hf.encode_batch)
    return _flatten([e.ids for e in fn(sentences, add_special_tokens=False)])


def _worker_encode(sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_TOKENIZER is not None
    return _encode(_WORKER_TOKENIZER, sentences)


def _flatten(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _encode_chunks(
    chunks: list[list[str]], tokenizer: Tokenizer, workers: int, on_done
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encode chunks of sentences in order: in this process (Rust threads) or in ``workers`` forked processes."""
    if workers <= 1 or len(chunks) < 2 or "fork" not in _mp_methods():
        for c in chunks:
            out = _encode(tokenizer, c)
            on_done(c)
            yield out
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer
    # Each child encodes serially (the Rust library turns its threads off after a fork; saying so in the
    # environment the children inherit keeps it from warning about it), all children in parallel.
    old_env = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            results = pool.map(_worker_encode, chunks)  # forks the workers now
            _restore_env("TOKENIZERS_PARALLELISM", old_env)
            for c, out in zip(chunks, results, strict=True):
                on_done(c)
                yield out
    finally:
        _restore_env("TOKENIZERS_PARALLELISM", old_env)
        _WORKER_TOKENIZER = None


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _mp_methods() -> list[str]:
    import multiprocessing as mp

    return mp.get_all_start_methods()


def _tokenize_split(
    st: _SplitText, tokenizer: Tokenizer, name: str, batch_sentences: int, workers: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    from tqdm import tqdm

    dtype = _token_dtype(tokenizer.vocab_size)
    n_sent_per_doc = np.fromiter((len(d) for d in st.docs), dtype=np.int64, count=len(st.docs))
    sentences = [s for d in st.docs for s in d]
    chunks = [sentences[i : i + batch_sentences] for i in range(len(sentences))[::batch_sentences]]
    total_chars = sum(len(s) for s in sentences)
    bar = tqdm(total=total_chars, unit="char", unit_scale=True, desc=f"tokenizing {name}", file=sys.stderr,
               disable=not progress, leave=False)  # fmt: skip
    parts: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    try:
        for flat, lengths in _encode_chunks(chunks, tokenizer, workers, lambda c: bar.update(sum(map(len, c)))):
            parts.append(flat.astype(dtype))
            lens.append(lengths)
    finally:
        bar.close()
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype)
    sent_len = np.concatenate(lens) if lens else np.zeros(0, np.int64)
    doc_of_sent = np.repeat(np.arange(len(st.docs)), n_sent_per_doc)
    keep = sent_len > 0
    doc_len = np.bincount(doc_of_sent[keep], weights=sent_len[keep], minlength=len(st.docs)).astype(np.int64)
    doc_kept = doc_len > 0
    arrays = {
        "tokens": tokens,
        "doc_offsets": np.concatenate([[0], np.cumsum(doc_len[doc_kept])]).astype(np.int64),
        "sent_offsets": np.concatenate([[0], np.cumsum(sent_len[keep])]).astype(np.int64),
    }
    counts = {
        "num_tokens": int(tokens.size),
        "num_docs": int(doc_kept.sum()),
        "num_sentences": int(keep.sum()),
        "num_chars": int(st.exact_chars if st.exact_chars is not None else st.doc_chars[doc_kept].sum()),
        "num_bytes": int(st.exact_bytes if st.exact_bytes is not None else st.doc_bytes[doc_kept].sum()),
        "docs_without_tokens": int((~doc_kept).sum()),
        "sentences_without_tokens": int((~keep).sum()),
    }
    if counts["docs_without_tokens"] or counts["sentences_without_tokens"]:
        log.warning(
            "%s split: dropped %d document(s) and %d sentence(s) that gave no tokens",
            name, counts["docs_without_tokens"], counts["sentences_without_tokens"],
        )  # fmt: skip
    return arrays, counts


# ------------------------------------------------------------------------------------------------ cache keys
def _hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _identities(paths: list[Path]) -> list[list[Any]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _settings(
    split: SplitMode, val_fraction: float, val_docs: int | None, seed: int, text_field: str, doc_split: DocSplit,
    sentence_split: SentenceSplit, strip_gutenberg: bool,
) -> dict[str, Any]:  # fmt: skip
    return {
        "split": split,
        "val_fraction": val_fraction,
        "val_docs": val_docs,
        "seed": seed,
        "text_field": text_field,
        "doc_split": doc_split,
        "sentence_split": sentence_split,
        "strip_gutenberg": strip_gutenberg,
    }


def corpus_key(files: str | Path | Iterable[str | Path], tokenizer: Tokenizer, **settings: Any) -> str:
    """The cache key of a prepared corpus: a hash of the input files' identities (path, size, mtime), the
    tokenizer fingerprint and the settings (keyword arguments of :func:`prepare_corpus`)."""
    full = _settings(**{**_DEFAULTS, **settings})
    return _hash({"v": FORMAT_VERSION, "inputs": _identities(resolve_files(files)), "tok": tokenizer.fingerprint,
                  "settings": full})  # fmt: skip


_DEFAULTS: dict[str, Any] = {
    "split": "document",
    "val_fraction": 0.05,
    "val_docs": None,
    "seed": 42,
    "text_field": "text",
    "doc_split": "blank_line",
    "sentence_split": "auto",
    "strip_gutenberg": True,
}


# ------------------------------------------------------------------------------------------------ prepared corpus
class PreparedCorpus:
    """A prepared corpus directory: token arrays, boundaries and ``meta.json`` of the ``"train"`` and ``"val"``
    splits. Arrays are memory-mapped (opened lazily, so the object can be sent to DataLoader workers cheaply).

    Args:
        path: The directory written by :func:`prepare_corpus`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise DataError("not a prepared corpus (no meta.json); run `python -m lit_lm prepare`", self.path)
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"prepared with format version {self.meta.get('format_version')}, this code reads "
                f"{FORMAT_VERSION}; prepare the corpus again",
                self.path,
            )
        #: True when :func:`prepare_corpus` found this directory in the cache instead of writing it.
        self.reused = False
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def _array(self, split: str, name: str) -> np.ndarray:
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        k = f"{split}_{name}"
        if k not in self._arrays:
            self._arrays[k] = np.load(self.path / f"{k}.npy", mmap_mode="r")
        return self._arrays[k]

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["tokenizer"]["vocab_size"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    def tokens(self, split: str) -> np.ndarray:
        """All tokens of the split, documents one after the other (memory-mapped, read-only)."""
        return self._array(split, "tokens")

    def doc_offsets(self, split: str) -> np.ndarray:
        """Token offsets of the documents: document ``i`` is ``tokens[off[i]:off[i+1]]`` (``num_docs + 1``)."""
        return self._array(split, "doc_offsets")

    def sent_offsets(self, split: str) -> np.ndarray:
        """Token offsets of the sentences (``num_sentences + 1`` entries)."""
        return self._array(split, "sent_offsets")

    def doc_sent_offsets(self, split: str) -> np.ndarray:
        """Sentence index offsets of the documents: document ``i`` has sentences ``[o[i], o[i+1])``."""
        return np.searchsorted(self.sent_offsets(split), self.doc_offsets(split)).astype(np.int64)

    def stats(self, split: str) -> dict[str, int]:
        return self.meta["splits"][split]

    def num_tokens(self, split: str) -> int:
        return int(self.stats(split)["num_tokens"])

    def num_docs(self, split: str) -> int:
        return int(self.stats(split)["num_docs"])

    def num_chars(self, split: str) -> int:
        """Characters of text in the split (see the module docstring for what is counted)."""
        return int(self.stats(split)["num_chars"])

    def num_bytes(self, split: str) -> int:
        """UTF-8 bytes of the same text as :meth:`num_chars`."""
        return int(self.stats(split)["num_bytes"])

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={self.num_tokens(k)} tokens/{self.num_docs(k)} docs" for k in SPLITS)
        return f"PreparedCorpus({str(self.path)!r}, {s})"


def prepare_corpus(
    files: str | Path | Iterable[str | Path],
    tokenizer: Tokenizer | str | Path,
    out_dir: str | Path = ".cache/lit_lm/corpus",
    *,
    split: SplitMode = "document",
    val_fraction: float = 0.05,
    val_docs: int | None = None,
    seed: int = 42,
    text_field: str = "text",
    doc_split: DocSplit = "blank_line",
    sentence_split: SentenceSplit = "auto",
    strip_gutenberg: bool = True,
    workers: int = 0,
    batch_sentences: int = 4096,
    progress: bool = True,
    force: bool = False,
) -> PreparedCorpus:
    """Read, split, tokenize and write a corpus to ``<out_dir>/<key>/``, or reuse it when already there.

    Args:
        files: Text/JSONL files or directories (see :func:`read_corpus`).
        tokenizer: A :class:`Tokenizer` or the path of one.
        out_dir: Root of the cache; the corpus goes into a subdirectory named by its cache key.
        split: ``"document"``: validation = whole documents chosen by a seeded permutation; ``"tail"``: the last
            ``val_fraction`` of the characters.
        val_fraction: Share of documents (or characters, with ``"tail"``) for validation.
        val_docs: Exact number of validation documents (``"document"`` only; overrides ``val_fraction``).
        seed: Seed of the document split.
        text_field: The text field of JSONL records.
        doc_split: ``"blank_line"`` (a paragraph is a document) or ``"file"`` (a text file is a document).
        sentence_split: ``"auto"``, ``"punct"`` or ``"line"`` (see the module docstring).
        strip_gutenberg: Remove Project Gutenberg headers and footers.
        workers: 0 or 1: tokenize in this process (the Rust library's threads); N > 1: in N forked processes
            (where the platform can fork; on the 2-core benchmark machine this was no faster, try it on many
            cores).
        batch_sentences: Sentences per ``encode_batch`` call.
        progress: Show a tqdm progress bar on stderr.
        force: Prepare again even when the cache has this corpus.
    """
    t0 = time.perf_counter()
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(tokenizer)
    paths = resolve_files(files)
    settings = _settings(split, val_fraction, val_docs, seed, text_field, doc_split, sentence_split, strip_gutenberg)
    key = _hash({"v": FORMAT_VERSION, "inputs": _identities(paths), "tok": tok.fingerprint, "settings": settings})
    root = Path(out_dir)
    final = root / key
    if not force and (final / "meta.json").is_file():
        pc = PreparedCorpus(final)
        if pc.meta.get("key") == key:
            pc.reused = True
            log.info("reusing prepared corpus %s", final)
            return pc
    corpus = read_corpus(paths, text_field, doc_split, sentence_split, strip_gutenberg)
    parts = split_corpus(corpus, split, val_fraction, val_docs, seed)
    t_read = time.perf_counter() - t0
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        stats: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            arrays, counts = _tokenize_split(parts[name], tok, name, batch_sentences, workers, progress)
            if counts["num_tokens"] == 0:
                raise DataError(
                    f"the {name} split has no tokens ({len(parts[name].docs)} documents of text that the tokenizer "
                    "maps to nothing); check the files and the tokenizer"
                )
            for arr_name, arr in arrays.items():
                np.save(tmp / f"{name}_{arr_name}.npy", arr)
            stats[name] = counts
        t_total = time.perf_counter() - t0
        meta = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokenizer": {"fingerprint": tok.fingerprint, "vocab_size": tok.vocab_size, "path": tok.path},
            "dtype": _token_dtype(tok.vocab_size).name,
            "settings": settings,
            "inputs": corpus.inputs(),
            "skipped": corpus.skipped,
            "splits": stats,
            "timings_s": {"read_split": round(t_read, 3), "total": round(t_total, 3)},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if final.exists():  # a stale or concurrent result; ours replaces it
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race with the same key: use its result
            if not (final / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("prepared corpus %s in %.1fs: %s", final, t_total, stats)
    return PreparedCorpus(final)


# ------------------------------------------------------------------------------------------------ tokenizers
def train_tokenizer(
    files: str | Path | Iterable[str | Path],
    vocab_size: int = 30000,
    lowercase: bool = True,
    min_frequency: int = 2,
    *,
    text_field: str = "text",
    strip_gutenberg: bool = True,
    split: SplitMode | None = None,
    val_fraction: float = 0.05,
    val_docs: int | None = None,
    seed: int = 42,
    doc_split: DocSplit = "blank_line",
) -> Tokenizer:
    """Train a WordPiece tokenizer on the documents of ``files``, read as :func:`prepare_corpus` reads them.

    With ``split`` set, only the train part of that split (same arguments as :func:`prepare_corpus`) is used,
    so validation text stays unseen.
    """
    corpus = read_corpus(files, text_field, doc_split, "punct", strip_gutenberg)
    if split is None:
        docs = [d.sentences for d in corpus.documents()]
    else:
        docs = split_corpus(corpus, split, val_fraction, val_docs, seed)["train"].docs
    return Tokenizer.train_from_texts(
        (" ".join(d) for d in docs), vocab_size=vocab_size, lowercase=lowercase, min_frequency=min_frequency
    )


def cached_tokenizer(
    files: str | Path | Iterable[str | Path],
    cache_dir: str | Path,
    vocab_size: int = 30000,
    lowercase: bool = True,
    min_frequency: int = 2,
    **split_settings: Any,
) -> Tokenizer:
    """:func:`train_tokenizer`, cached as ``<cache_dir>/tokenizers/wordpiece-<key>.json`` (key: input file
    identities and all settings)."""
    paths = resolve_files(files)
    key = _hash({"v": FORMAT_VERSION, "inputs": _identities(paths), "vocab_size": vocab_size, "lowercase": lowercase,
                 "min_frequency": min_frequency, "split": split_settings})  # fmt: skip
    path = Path(cache_dir) / "tokenizers" / f"wordpiece-{key}.json"
    if path.is_file():
        return Tokenizer.from_file(path)
    t0 = time.perf_counter()
    tok = train_tokenizer(paths, vocab_size, lowercase, min_frequency, **split_settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tok.hf.save(str(tmp))
    tmp.replace(path)
    tok.path = str(path)
    log.info("trained tokenizer (vocab %d) in %.1fs -> %s", tok.vocab_size, time.perf_counter() - t0, path)
    return tok


# ------------------------------------------------------------------------------------------------ CLI
def _add_reading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--files", nargs="+", required=True, help="text/JSONL files or directories (*.txt, *.jsonl)")
    p.add_argument("--text-field", default="text", help="JSONL field with the text (default: text)")
    p.add_argument("--doc-split", choices=["blank_line", "file"], default="blank_line",
                   help="a document is a paragraph (blank_line) or a whole text file (file)")  # fmt: skip
    p.add_argument("--no-strip-gutenberg", dest="strip_gutenberg", action="store_false",
                   help="keep Project Gutenberg headers and footers")  # fmt: skip


def _true_false(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")


def _run_cli(fn, argv: list[str] | None, parser: argparse.ArgumentParser) -> int:
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    trust = getattr(args, "trust_checkpoint", False)
    try:
        with trust_checkpoints(trust):
            return fn(args)
    except LitLMError as e:
        print(f"lit_lm: error: {e}", file=sys.stderr)
        return 2


def tokenizer_main(argv: list[str] | None = None) -> int:
    """``python -m lit_lm tokenizer``: train a WordPiece tokenizer on text files and save ``tokenizer.json``."""
    p = argparse.ArgumentParser(
        prog="python -m lit_lm tokenizer",
        description="Train a WordPiece tokenizer ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 [DELIM]=5 [EXTRACT]=6) "
        "on text/JSONL files, read like `prepare` reads them.",
    )
    _add_reading_args(p)
    p.add_argument("--vocab-size", type=int, default=30000, help="largest vocabulary size (default: 30000)")
    p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                   help="lowercase the text (uncased model; default: on)")  # fmt: skip
    p.add_argument("--min-frequency", type=int, default=2, help="least count of a merged piece (default: 2)")
    p.add_argument("--out", default="tokenizer.json", help="output tokenizer.json (default: tokenizer.json)")

    def run(a: argparse.Namespace) -> int:
        t0 = time.perf_counter()
        tok = train_tokenizer(a.files, a.vocab_size, a.lowercase, a.min_frequency, text_field=a.text_field,
                              strip_gutenberg=a.strip_gutenberg, doc_split=a.doc_split)  # fmt: skip
        tok.save(a.out)
        print(f"tokenizer: vocab {tok.vocab_size}, fingerprint {tok.fingerprint} -> {a.out} "
              f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
        return 0

    return _run_cli(run, argv, p)


def prepare_main(argv: list[str] | None = None) -> int:
    """``python -m lit_lm prepare``: tokenize a corpus into memory-mapped train/val arrays (cached)."""
    p = argparse.ArgumentParser(
        prog="python -m lit_lm prepare",
        description="Read, split and tokenize text/JSONL files into <out>/<key>/ "
        "({train,val}_{tokens,doc_offsets,sent_offsets}.npy + meta.json); reused when nothing changed.",
    )
    _add_reading_args(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer.json, BERT vocab.txt or a lit_lm .ckpt")
    p.add_argument("--trust_checkpoint", nargs="?", const=True, default=False, type=_true_false,
                   help="read a --tokenizer .ckpt with a full unpickler (lets the file run code; trusted files only)")
    p.add_argument("--out", default=".cache/lit_lm/corpus", help="cache root (default: .cache/lit_lm/corpus)")
    p.add_argument("--split", choices=["document", "tail"], default="document",
                   help="validation = whole documents (document) or the last characters (tail)")  # fmt: skip
    p.add_argument("--val-fraction", type=float, default=0.05, help="validation share (default: 0.05)")
    p.add_argument("--val-docs", type=int, default=None, help="exact number of validation documents")
    p.add_argument("--sentence-split", choices=["auto", "punct", "line"], default="auto",
                   help="sentence rule (default: auto)")  # fmt: skip
    p.add_argument("--seed", type=int, default=42, help="seed of the document split (default: 42)")
    p.add_argument("--workers", type=int, default=0,
                   help="0: tokenize in this process (Rust threads); N>1: N forked processes (default: 0)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="prepare again even if cached")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    def run(a: argparse.Namespace) -> int:
        t0 = time.perf_counter()
        pc = prepare_corpus(
            a.files, a.tokenizer, a.out, split=a.split, val_fraction=a.val_fraction, val_docs=a.val_docs,
            seed=a.seed, text_field=a.text_field, doc_split=a.doc_split, sentence_split=a.sentence_split,
            strip_gutenberg=a.strip_gutenberg, workers=a.workers, progress=a.progress, force=a.force,
        )  # fmt: skip
        dt = time.perf_counter() - t0
        total_bytes = sum(i["size"] for i in pc.meta["inputs"])
        how = "reused from cache" if pc.reused else f"written, {total_bytes / 1e6 / max(dt, 1e-9):.2f} MB/s of input"
        print(f"prepared corpus -> {pc.path} ({how}, {dt:.1f}s)")
        for s in SPLITS:
            st = pc.stats(s)
            print(f"  {s}: {st['num_tokens']:,} tokens, {st['num_docs']:,} docs, {st['num_sentences']:,} sentences, "
                  f"{st['num_chars']:,} chars, {st['num_bytes']:,} bytes ({pc.dtype.name})")  # fmt: skip
        return 0

    return _run_cli(run, argv, p)
