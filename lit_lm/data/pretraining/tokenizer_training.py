"""Training tokenizers (WordPiece or byte-level BPE) on a corpus or on task text, once: cached by inputs and
settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lit_lm.data.core.io import file_identities
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind, resolve_lowercase, train_once
from lit_lm.data.pretraining.corpus import SplitMode, split_corpus
from lit_lm.data.pretraining.text import DocSplit, read_corpus, resolve_files

__all__ = ["cached_tokenizer", "train_tokenizer"]

log = logging.getLogger(__name__)



def train_tokenizer(
    files: str | Path | Iterable[str | Path],
    vocab_size: int = 30000,
    lowercase: bool | None = None,
    min_frequency: int = 2,
    *,
    kind: TokenizerKind = "wordpiece",
    text_field: str = "text",
    strip_gutenberg: bool = True,
    split: SplitMode | None = None,
    val_fraction: float = 0.05,
    val_docs: int | None = None,
    seed: int = 42,
    doc_split: DocSplit = "blank_line",
) -> Tokenizer:
    """Train a tokenizer on the documents of ``files``, read as :func:`prepare_corpus` reads them.

    Args:
        files: Text/JSONL files or directories.
        vocab_size: Largest vocabulary size.
        lowercase: Lowercase the text (uncased model; WordPiece only). Default: WordPiece yes, BPE no.
        min_frequency: Least count of a merged piece.
        kind: ``wordpiece`` (BERT) or ``bpe`` (byte-level, lossless: GPT); see :mod:`lit_lm.data.core.tokenizer`.
        text_field: The text field of JSONL records.
        strip_gutenberg: Remove Project Gutenberg headers and footers.
        split: With a split mode, train only on the train part of that split (same arguments as
            :func:`~lit_lm.data.pretraining.corpus.prepare_corpus`), so validation text stays unseen.
        val_fraction: Validation share of that split.
        val_docs: Exact number of validation documents of that split.
        seed: Seed of that split.
        doc_split: ``blank_line`` (a paragraph is a document) or ``file``.
    """
    corpus = read_corpus(files, text_field, doc_split, "punct", strip_gutenberg)
    # WordPiece learns from sentences (BERT's units); a byte-level BPE from the text as a causal LM reads it
    # (units="text": line breaks and spacing included), so those get pieces of their own; documents end with the
    # <|endoftext|> token, which is no text to learn pieces from.
    if kind == "bpe":
        if split is None:
            texts = [d.text for d in corpus.documents(sentences=False)]  # documents end with <|endoftext|>
        else:
            train = split_corpus(corpus, split, val_fraction, val_docs, seed, "text", separator="")["train"]
            texts = ["".join(d) for d in train.docs]
    else:
        if split is None:
            docs = [d.sentences for d in corpus.documents()]
        else:
            docs = split_corpus(corpus, split, val_fraction, val_docs, seed)["train"].docs
        texts = [" ".join(d) for d in docs]
    return Tokenizer.train_from_texts(
        texts, vocab_size=vocab_size, lowercase=lowercase, min_frequency=min_frequency, kind=kind
    )  # fmt: skip


def cached_tokenizer(
    files: str | Path | Iterable[str | Path],
    cache_dir: str | Path,
    vocab_size: int = 30000,
    lowercase: bool | None = None,
    min_frequency: int = 2,
    kind: TokenizerKind = "wordpiece",
    **split_settings: Any,
) -> Tokenizer:
    """:func:`train_tokenizer`, cached by :func:`train_once` (key: input file identities and all settings)."""
    paths = resolve_files(files)
    lowercase = resolve_lowercase(kind, lowercase)
    key = {"inputs": file_identities(paths), "vocab_size": vocab_size, "lowercase": lowercase,
           "min_frequency": min_frequency, "split": split_settings}  # fmt: skip
    return train_once(key, cache_dir, lambda: train_tokenizer(paths, vocab_size, lowercase, min_frequency, kind=kind,
                                                              **split_settings), kind)  # fmt: skip
