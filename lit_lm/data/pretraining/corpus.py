"""Corpus preparation: documents (:mod:`lit_lm.data.pretraining.text`) -> train/validation split -> memory-mapped
token arrays.

Preparation (:func:`prepare_corpus`)
    Documents are split into train and validation (by whole document, or the last characters with
    ``split="tail"``), tokenized in batches of units (each distinct word once where the tokenizer allows it:
    :class:`~lit_lm.data.core.tokenizer.ChunkEncoder`; in this process or in ``workers`` forked processes), and
    each split written as ``{split}_tokens.npy`` (uint16 when the vocabulary fits, else uint32),
    ``{split}_doc_offsets.npy`` and ``{split}_sent_offsets.npy`` (int64 token offsets of the documents and
    of the units, ``n + 1`` entries starting at 0) plus ``meta.json``. The directory is written atomically and
    reused when the same inputs (path, size, mtime), tokenizer and settings come again.

Units (``units``)
    * ``"sentence"`` (masked LM, next sentence prediction): each sentence is tokenized alone, so the token stream
      has no whitespace between sentences and no line breaks.
    * ``"text"`` (causal LM): the text itself, line by line with the line ends, so that decoding a split's tokens
      gives its text back exactly when the tokenizer is lossless. With ``split="tail"`` that text is the exact
      slice of the corpus text; with ``split="document"`` it is each document's text (its paragraph, or with
      ``doc_split="file"`` the whole file) followed by one blank line (``"\n\n"``), which the model predicts too.
      Preparation decodes each split once and records whether it round-trips (``meta.json`` ->
      ``splits.<split>.round_trip``); bits per character are honest only where it does.

What the text is, before tokenizing (:func:`~lit_lm.data.pretraining.text.read_corpus`): UTF-8 without a BOM, line ends
``\n`` (CRLF and CR converted), Project Gutenberg header/footer removed (``strip_gutenberg``), files joined by
one blank line; the units above are cut from that text.

Character counts (for bits per character): with ``units="text"`` a split's ``num_chars`` is the exact length of
its text as defined above: every character the model is asked to predict. With ``units="sentence"`` and
``split="document"`` it counts the characters of the documents' paragraphs (without the whitespace around them
and the blank lines between them); with ``split="tail"`` the exact slice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lit_lm.data.core.io import atomic_write, digest, file_identities
from lit_lm.data.core.splits import holdout_split
from lit_lm.data.core.tokenizer import ChunkEncoder, Tokenizer
from lit_lm.data.pretraining.text import (
    CorpusText,
    DocSplit,
    SentenceSplit,
    _documents_from_text,
    read_corpus,
    resolve_files,
)
from lit_lm.errors import DataError

__all__ = ["PreparedCorpus", "prepare_corpus", "split_corpus", "unigram_scores"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: <|endoftext|> after each document (byte-level BPE), not a blank line
SPLITS = ("train", "val")

SplitMode = Literal["document", "tail"]
Units = Literal["sentence", "text"]
# After each document of a document split with units="text", for a tokenizer without an end-of-text token (a
# byte-level BPE trained by lit_lm has <|endoftext|>, which ends each document instead: a token, not text).
DOC_SEPARATOR = "\n\n"


# ------------------------------------------------------------------------------------------------ splitting
@dataclass
class _SplitText:
    docs: list[list[str]]  # units (sentences, or lines of text) per document
    doc_chars: np.ndarray  # (D,) int64
    doc_bytes: np.ndarray  # (D,) int64
    exact_chars: int | None = None  # tail mode: the exact slice size
    exact_bytes: int | None = None


def split_corpus(
    corpus: CorpusText,
    split: SplitMode = "document",
    val_fraction: float = 0.05,
    val_docs: int | None = None,
    seed: int = 42,
    units: Units = "sentence",
    separator: str = DOC_SEPARATOR,
) -> dict[str, _SplitText]:
    """Divide the corpus into ``"train"`` and ``"val"``, each document as its units (see the module docstring).

    ``split="document"``: a seeded permutation picks ``val_docs`` (default ``round(val_fraction * n)``, at least
    1, at most ``n - 1``) whole documents for validation; both splits keep the file order. The same documents and
    seed always give the same split. ``split="tail"``: the first ``int(n_chars * (1 - val_fraction))`` characters
    of the text are train and the rest validation, as nanoGPT does for tiny shakespeare; ``val_fraction`` 1.0 (or
    0.0) makes the whole text, every character of it, the validation (or training) split and leaves the other empty:
    how a DataModule scores whole files (``val_files``) or trains on all of ``files``. ``separator``: the text after
    each document (units ``text``, document split); "" where the tokenizer ends documents with ``<|endoftext|>``.
    """
    if units not in ("sentence", "text"):
        raise DataError(f"units must be 'sentence' or 'text', got {units!r}")
    if split == "tail":
        if not 0.0 <= val_fraction <= 1.0:
            raise DataError(f"val_fraction must be in [0, 1] with split='tail', got {val_fraction}")
        text = corpus.full_text()
        cut = int(len(text) * (1.0 - val_fraction))
        parts = {"train": text[:cut], "val": text[cut:]}
        out = {}
        for name, part in parts.items():
            if units == "text":  # the slice itself, one document
                lines = part.splitlines(keepends=True) if part.strip() else []
                lens = [len(part)] if lines else []
                blens = [len(part.encode("utf-8"))] if lines else []
                docs_units = [lines] if lines else []
            else:
                docs = _documents_from_text(part, "<tail>", 1, corpus.doc_split, corpus.sentence_split)
                docs_units = [d.sentences for d in docs]
                lens, blens = [d.num_chars for d in docs], [d.num_bytes for d in docs]
            out[name] = _SplitText(
                docs_units,
                np.array(lens, dtype=np.int64),
                np.array(blens, dtype=np.int64),
                exact_chars=len(part),
                exact_bytes=len(part.encode("utf-8")),
            )
        wanted = [name for name, share in (("train", 1.0 - val_fraction), ("val", val_fraction)) if share > 0]
        for name in wanted:
            if not out[name].docs:
                raise DataError(
                    f"split='tail' left the {name} part without text ({len(text)} characters in all, "
                    f"val_fraction={val_fraction}); add text or change val_fraction"
                )
        return out
    if split != "document":
        raise DataError(f"split must be 'document' or 'tail', got {split!r}")
    docs = corpus.documents(sentences=units == "sentence")
    _, val_idx = holdout_split(
        len(docs), val_fraction, seed, count=val_docs, what="documents",
        hint="add text, use doc_split='blank_line' (one document per paragraph) or split='tail'",
    )  # fmt: skip
    is_val = np.zeros(len(docs), dtype=bool)
    is_val[val_idx] = True
    out = {}
    for name, flag in (("train", False), ("val", True)):
        chosen = [d for d, v in zip(docs, is_val, strict=True) if v == flag]
        if units == "text":
            texts = [d.text + separator for d in chosen]
            out[name] = _SplitText(
                [t.splitlines(keepends=True) for t in texts],
                np.array([len(t) for t in texts], dtype=np.int64),
                np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64),
            )
        else:
            out[name] = _SplitText(
                [d.sentences for d in chosen],
                np.array([d.num_chars for d in chosen], dtype=np.int64),
                np.array([d.num_bytes for d in chosen], dtype=np.int64),
            )
    return out


# ------------------------------------------------------------------------------------------------ tokenizing
def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


_WORKER_ENCODER: ChunkEncoder | None = None


def _worker_encode(sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_ENCODER is not None
    return _WORKER_ENCODER(sentences)


def _encode_chunks(
    chunks: list[list[str]], tokenizer: Tokenizer, workers: int, on_done
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encode chunks of sentences in order: in this process (Rust threads) or in ``workers`` forked processes."""
    encoder = ChunkEncoder(tokenizer)  # each distinct chunk (about a word) encoded once, where the tokenizer allows
    if workers <= 1 or len(chunks) < 2 or "fork" not in _mp_methods():
        for c in chunks:
            out = encoder(c)
            on_done(c)
            yield out
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder
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
        _WORKER_ENCODER = None


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _mp_methods() -> list[str]:
    import multiprocessing as mp

    return mp.get_all_start_methods()


def _tokenize_split(
    st: _SplitText, tokenizer: Tokenizer, name: str, batch_sentences: int, workers: int, progress: bool,
    units: Units = "sentence", doc_end: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
    doc_offsets = np.concatenate([[0], np.cumsum(doc_len[doc_kept])]).astype(np.int64)
    sent_offsets = np.concatenate([[0], np.cumsum(sent_len[keep])]).astype(np.int64)
    text_tokens = tokens
    if doc_end is not None and len(doc_offsets) > 1:  # the end-of-text token after each document's last token
        ends = doc_offsets[1:]
        tokens = np.insert(tokens, ends, np.asarray(doc_end, dtype=tokens.dtype))
        sent_offsets = sent_offsets + np.searchsorted(ends, sent_offsets, side="right")  # a doc's last sentence
        doc_offsets = doc_offsets + np.arange(len(doc_offsets))  # ... and its document get the token
    arrays = {"tokens": tokens, "doc_offsets": doc_offsets, "sent_offsets": sent_offsets}
    counts = {
        "num_tokens": int(tokens.size),
        "num_docs": int(doc_kept.sum()),
        "num_sentences": int(keep.sum()),
        "num_chars": int(st.exact_chars if st.exact_chars is not None else st.doc_chars[doc_kept].sum()),
        "num_bytes": int(st.exact_bytes if st.exact_bytes is not None else st.doc_bytes[doc_kept].sum()),
        "docs_without_tokens": int((~doc_kept).sum()),
        # units of text that gave no tokens; not blank ones (a WordPiece drops the blank line after each document)
        "sentences_without_tokens": sum(1 for i in np.flatnonzero(~keep) if sentences[i].strip()),
    }
    if units == "text":
        # once, here: does the token stream decode to exactly the text the model will be asked to predict?
        text = "".join(sentences)
        counts["round_trip"] = tokenizer.decode(text_tokens.tolist(), skip_special_tokens=False) == text
        if not counts["round_trip"]:
            log.info(
                "%s split: the %s tokenizer does not give the text back (decode(encode(text)) != text); "
                "bits per character are not computed on it", name, tokenizer.kind,
            )  # fmt: skip
    if counts["docs_without_tokens"] or counts["sentences_without_tokens"]:
        log.warning(
            "%s split: dropped %d document(s) and %d sentence(s) that gave no tokens",
            name, counts["docs_without_tokens"], counts["sentences_without_tokens"],
        )  # fmt: skip
    return arrays, counts


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

    def unigram_baseline(self, split: str = "val") -> dict[str, float]:
        """What a model that ignores context scores on ``split``: token frequencies counted on the training split
        (add-one smoothed over the vocabulary) give ``loss``, the mean NLL in nats per token of ``split``, and
        ``acc``, the share of ``split`` tokens equal to the most frequent training token. A language model has
        learned something beyond word frequencies only once it gets below this loss (the MLM "unigram plateau")."""
        tokens = self.tokens(split)
        if tokens.size == 0:
            raise DataError(f"the {split} split has no tokens", self.path)
        return unigram_scores(self.tokens("train"), tokens, self.vocab_size)

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={self.num_tokens(k)} tokens/{self.num_docs(k)} docs" for k in SPLITS)
        return f"PreparedCorpus({str(self.path)!r}, {s})"


def unigram_scores(train_tokens: np.ndarray, tokens: np.ndarray, vocab_size: int) -> dict[str, float]:
    """A context-free model's scores on ``tokens``: token frequencies of ``train_tokens``, add-one smoothed over the
    vocabulary, give ``loss`` (mean NLL, nats per token) and ``acc`` (share of ``tokens`` equal to the most frequent
    training token). See :meth:`PreparedCorpus.unigram_baseline`."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    hist = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)
    return {"loss": float(-(hist * log_p).sum() / tokens.size), "acc": float(hist[int(counts.argmax())] / tokens.size)}


def _written_for(path: Path, key: str) -> bool:
    try:
        return json.loads((path / "meta.json").read_text()).get("key") == key
    except (OSError, ValueError):
        return False


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
    units: Units = "sentence",
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
        units: ``"sentence"`` (BERT: sentences, for sentence pairs) or ``"text"`` (GPT: the text with its line
            breaks and spaces; see the module docstring).
        workers: 0 or 1: tokenize in this process; N > 1: in N forked processes where the platform can fork
            (2 processes on 2 cores: 1.35x faster than one, benchmarks/data_pipeline.py).
        batch_sentences: Sentences per ``encode_batch`` call.
        progress: Show a tqdm progress bar on stderr.
        force: Prepare again even when the cache has this corpus.
    """
    t0 = time.perf_counter()
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(tokenizer)
    paths = resolve_files(files)
    settings = {"split": split, "val_fraction": val_fraction, "val_docs": val_docs, "seed": seed,
                "text_field": text_field, "doc_split": doc_split, "sentence_split": sentence_split,
                "strip_gutenberg": strip_gutenberg, "units": units}  # fmt: skip
    inputs = file_identities(paths)
    key = digest({"v": FORMAT_VERSION, "inputs": inputs, "tok": tok.fingerprint, "settings": settings})
    root = Path(out_dir)
    final = root / key
    if not force and (final / "meta.json").is_file():
        pc = PreparedCorpus(final)
        if pc.meta.get("key") == key:
            pc.reused = True
            log.info("reusing prepared corpus %s", final)
            return pc
    corpus = read_corpus(paths, text_field, doc_split, sentence_split, strip_gutenberg)
    eot = tok.eot_id if units == "text" and split == "document" else None
    parts = split_corpus(corpus, split, val_fraction, val_docs, seed, units, "" if eot is not None else DOC_SEPARATOR)
    t_read = time.perf_counter() - t0
    if final.exists():
        if not force and _written_for(final, key):  # a concurrent process (another DDP rank, a second run with the
            pc = PreparedCorpus(final)            # same cache) finished it meanwhile: never delete a corpus in use
            pc.reused = True
            return pc
        shutil.rmtree(final, ignore_errors=True)  # stale (another key inside, no meta.json), or force: ours replaces it
    with atomic_write(final) as tmp:  # a concurrent writer of the same key may win; its result is the same
        tmp.mkdir()
        stats: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            arrays, counts = _tokenize_split(parts[name], tok, name, batch_sentences, workers, progress, units, eot)
            if counts["num_tokens"] == 0 and parts[name].docs:
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
    log.info("prepared corpus %s in %.1fs: %s", final, t_total, stats)
    return PreparedCorpus(final)


