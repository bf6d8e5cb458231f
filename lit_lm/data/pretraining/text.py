"""Reading corpus text: text/JSONL files -> documents of sentences.

Reading
    * Plain text (any suffix but ``.jsonl``/``.ndjson``): UTF-8 with or without a BOM, LF, CRLF or CR line ends.
      Project Gutenberg's header (up to ``*** START OF THE/THIS PROJECT GUTENBERG ...``) and footer (from
      ``*** END OF ...``, plus the "End of the Project Gutenberg EBook ..." line before it) are removed when
      present (``strip_gutenberg``, on by default; text without the markers is unchanged).
    * JSONL (``.jsonl``/``.ndjson``): one JSON object per line, the document in ``text_field``; blank lines are
      skipped, records with empty text are counted and logged.
    * WikiText (files named as its distributions name them: ``wiki.train.raw``, ``wiki.test.tokens``, ...):
      an article starts at each `` = Title = `` line; section headings (`` = = Section = = ``) are dropped, every
      line is a paragraph, and the tokenization markup ``@-@ @,@ @.@`` is undone (``1 @,@ 000`` -> ``1,000``,
      ``guest @-@ starring`` -> ``guest-starring``); the spaces around other punctuation stay as in the file.
    * A directory means all ``*.txt``, ``*.jsonl`` and WikiText files directly in it, sorted by name.

Documents
    ``doc_split="blank_line"`` (default): every paragraph (text between blank lines; a line of WikiText) of a
    text file is a document; ``doc_split="file"``: a whole text file (a WikiText article) is one document. A JSONL
    record is always one document.

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
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lit_lm.data.core.io import decode_utf8, is_wikitext, jsonl_records
from lit_lm.errors import DataError

__all__ = [
    "CorpusText",
    "Document",
    "read_corpus",
    "remove_gutenberg_boilerplate",
    "resolve_files",
    "split_sentences",
]

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
DIR_SUFFIXES = (".txt", ".jsonl")

DocSplit = Literal["blank_line", "file"]
SentenceSplit = Literal["auto", "punct", "line"]

# ------------------------------------------------------------------------------------------------ sentences
_ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Mt", "Messrs", "Mme", "Mlle", "Capt", "Col", "Gen", "Lt",
    "Sgt", "Rev", "Hon", "Gov", "Sen", "Rep", "Co", "Inc", "Ltd", "vs", "viz", "cf", "al",
)  # fmt: skip
# The lookbehinds sit after the end punctuation, so they are tried only there (each ends in "\.": never after "!", "?").
_NOT_AFTER = "".join(rf"(?<!\b{a}\.)" for a in _ABBREVIATIONS) + r"(?<!\b[A-Z]\.)"
# group 1: the sentence end (punctuation + closing quotes/brackets); then whitespace; then (lookahead) a capital.
# It starts with a character set (the lookbehinds cannot match after "!" or "?"), so the regex engine skips ahead to
# the next [.!?] instead of trying the pattern at every character.
_SENT_END = re.compile(
    rf"([.!?]{_NOT_AFTER}[.!?]*[\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[_]*[A-Z\u00c0-\u00de])"
)
_LINE_END_PUNCT = tuple(".!?:;")
_CLOSERS = "\"'\u201d\u2019)] \t"


def _punct_split(text: str) -> list[str]:
    text = " ".join(text.split())  # runs of whitespace -> one space (str.split's whitespace is the regex \s)
    if not text:
        return []
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        out.append(text[start : m.end(1)])
        start = m.end()
    out.append(text[start:])
    return out


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
_LINE_SEP = re.compile(r"\n")  # WikiText: one paragraph per line
_WIKI_TITLE = re.compile(r"\s*= (?!=).*(?<!=) =\s*")  # " = Title = ", not " = = Section = = "
_WIKI_HEADING = re.compile(r"\s*(?:= )+.*?(?: =)+\s*")
_WIKI_MARKUP = re.compile(r" @([-,.])@ ")


def read_wikitext(text: str) -> list[tuple[str, int]]:
    """WikiText -> ``(article, 1-based line of its title)``: section headings blanked (so the lines still count
    as in the file), ``@-@ @,@ @.@`` undone. Text before the first title is an article of its own."""
    units: list[tuple[str, int]] = []
    lines: list[str] = []
    start = 1
    for i, line in enumerate(text.split("\n"), 1):
        if _WIKI_TITLE.fullmatch(line):
            if any(x.strip() for x in lines):
                units.append(("\n".join(lines), start))
            lines, start = [""], i
            continue
        lines.append("" if _WIKI_HEADING.fullmatch(line) else _WIKI_MARKUP.sub(r"\1", line))
    if any(x.strip() for x in lines):
        units.append(("\n".join(lines), start))
    return units


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
    """UTF-8 text with every line end (CRLF, CR) as ``\\n``."""
    text = decode_utf8(data, path)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class Document:
    """One document: its sentences, its text and the size of that text.

    ``text`` is the document as it stands in the file, without the whitespace around it (a paragraph; a whole
    file or JSONL record with ``doc_split="file"``, its inner blank lines kept); ``num_chars``/``num_bytes``
    measure the text of its sentences (paragraphs without their separators).
    """

    sentences: list[str]
    num_chars: int
    num_bytes: int
    source: str
    line: int
    text: str = ""


@dataclass
class _FileText:
    """What one input file contributed: its units of text (a text file: one; JSONL: one per record)."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str
    units: list[tuple[str, int]]  # (text, 1-based first line)
    jsonl: bool
    wikitext: bool = False  # units are articles, each line a paragraph

    def paragraph_sep(self) -> re.Pattern[str]:
        return _LINE_SEP if self.wikitext else _PARA_SEP


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

    def documents(self, sentences: bool = True) -> list[Document]:
        """All documents, in file order (``sentences=False``: without splitting them into sentences)."""
        docs: list[Document] = []
        for f in self.files:
            for text, line in f.units:
                docs.extend(
                    _documents_from_text(text, str(f.path), line, "file" if f.jsonl else self.doc_split,
                                         self.sentence_split if sentences else None, f.paragraph_sep())
                )  # fmt: skip
        return docs

    def full_text(self) -> str:
        """The whole text (units joined by one blank line; WikiText's paragraphs too), as ``split="tail"`` cuts it."""

        def paragraphs(f: _FileText, text: str) -> str:
            return "\n\n".join(p.strip() for p in text.split("\n") if p.strip()) if f.wikitext else text

        return "\n\n".join(paragraphs(f, t) for f in self.files for t, _ in f.units)


def _documents_from_text(
    text: str,
    source: str,
    first_line: int,
    doc_split: DocSplit,
    sentence_split: SentenceSplit | None,
    paragraph_sep: re.Pattern[str] = _PARA_SEP,
) -> list[Document]:
    """The documents of one text unit; ``sentence_split=None``: documents with their text only (no sentences)."""
    docs: list[Document] = []
    sentences: list[str] = []
    chars = nbytes = 0
    doc_line = None
    pos, line = 0, first_line
    for m in itertools.chain(paragraph_sep.finditer(text), [None]):
        end = len(text) if m is None else m.start()
        raw = text[pos:end]
        para = raw.strip()
        if para:
            para_line = line + raw.count("\n", 0, len(raw) - len(raw.lstrip()))
            sents = split_sentences(para, sentence_split) if sentence_split is not None else []
            if doc_split == "blank_line":
                docs.append(Document(sents, len(para), len(para.encode("utf-8")), source, para_line, para))
            else:
                if doc_line is None:
                    doc_line = para_line
                sentences.extend(sents)
                chars += len(para)
                nbytes += len(para.encode("utf-8"))
        if m is not None:
            line += text.count("\n", pos, m.end())
            pos = m.end()
    if doc_split == "file" and chars:
        docs.append(Document(sentences, chars, nbytes, source, doc_line or first_line, text.strip()))
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
            found = sorted(
                q for q in p.iterdir() if q.is_file() and (q.suffix.lower() in DIR_SUFFIXES or is_wikitext(q))
            )
            if not found:
                raise DataError("directory has no *.txt, *.jsonl or WikiText files; name the files instead", p)
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
    wikitext = not jsonl and is_wikitext(path)
    text = _decode(path, data)
    units: list[tuple[str, int]] = []
    if jsonl:
        for i, rec in jsonl_records(text.split("\n"), path):
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
    elif wikitext:
        units = read_wikitext(text)
        if units:
            log.info("%s: read as WikiText, %d articles (headings dropped, @-@ @,@ @.@ undone)", path, len(units))
        else:
            skipped["empty_files"] = skipped.get("empty_files", 0) + 1
            log.warning("%s: no text; file skipped", path)
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
    return _FileText(path, st.st_size, st.st_mtime_ns, sha, units, jsonl, wikitext)


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


