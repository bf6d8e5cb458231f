"""Token classification (named-entity recognition: CoNLL-2003): :class:`TokenClassificationDataModule`.

Each sentence's words are joined with single spaces into one text, tokenized with character offsets, and every
token is mapped to the word its offsets fall in (:func:`align_words`): the same code for WordPiece and for
byte-level BPE, whose tokens carry the space before a word. The first token of each word is labelled with the word's
tag, the rest with ``-100`` (ignored by the loss), as Hugging Face's ``run_ner.py`` does; ``label_all_tokens``
labels them all (``B-X`` continuation pieces as ``I-X``). A word that yields no token at all (only characters the
tokenizer drops) is given one ``[UNK]`` token, counted and logged, so that every word gets exactly one prediction
and the scores count every gold entity.

Formats: BERT's ``[CLS] words [SEP]`` (``format: encoder``) or GPT-1's ``[CLS]? words [EXTRACT]`` (``decoder``).
A sentence longer than ``max_seq_length`` is split into windows at word boundaries (no word dropped; counted);
a single word with more pieces than a window keeps its first ones (counted). Each window carries its
``sentence_index`` and ``window_index``, so predictions are put back together per sentence (:func:`merge_windows`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_lm.config import IGNORE_INDEX
from lit_lm.data.core.io import file_digest
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind
from lit_lm.data.finetuning.base import TaskDataModule
from lit_lm.data.finetuning.conll import (
    BUILTIN_NER_VERSION,
    TaggedReader,
    TaggedSentence,
    TagScheme,
    builtin_token_classification,
    check_label_names,
    default_labels,
    read_tagged,
    write_conll,
)
from lit_lm.data.finetuning.encoding import EncodedSequences, pad_batch
from lit_lm.errors import DataError

__all__ = ["TokenClassificationCollator", "TokenClassificationDataModule", "TokenClassificationDataset",
           "AlignedWords", "align_words", "merge_windows"]  # fmt: skip

log = logging.getLogger(__name__)
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- alignment
@dataclass
class AlignedWords:
    """The tokens of many sentences, each mapped to its word.

    Attributes:
        ids: (N,) the token ids of all sentences, concatenated; every word's tokens adjacent and in order.
        word: (N,) the word of each token, as an index into all sentences' words concatenated.
        offsets: (n + 1,) sentence ``i``'s tokens are ``ids[offsets[i]:offsets[i + 1]]``.
        word_offsets: (n + 1,) sentence ``i``'s words are ``word_offsets[i]`` to ``word_offsets[i + 1] - 1``.
        n_empty: How many words yielded no token (each was given one ``[UNK]``).
    """

    ids: np.ndarray
    word: np.ndarray
    offsets: np.ndarray
    word_offsets: np.ndarray
    n_empty: int

    def sentence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sentence ``i``'s token ids and the index of each token's word within the sentence."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.word[a:b] - self.word_offsets[i]


def align_words(tokenizer: Tokenizer, sentences: Sequence[Sequence[str]]) -> AlignedWords:
    """Tokenize each sentence as its words joined by single spaces, and map every token to its word by character
    offsets: the same for WordPiece and byte-level BPE.

    A token belongs to the word its first character falls in; a token that starts on the space joining two words
    (byte-level BPE's ``Ġword``) starts one character later, and a token of nothing but that space belongs to none.
    A word that yields no token (only characters the tokenizer drops) is given one ``[UNK]``.
    """
    n = len(sentences)
    n_words = np.fromiter((len(ws) for ws in sentences), dtype=np.int64, count=n)
    if (n_words == 0).any():
        raise ValueError(f"sentence {int(np.argmin(n_words))} has no words")
    word_len = np.fromiter((len(w) for ws in sentences for w in ws), dtype=np.int64, count=int(n_words.sum()))
    # positions in all texts joined by single spaces: word k starts after the words and spaces before it
    word_start = np.zeros(len(word_len), dtype=np.int64)
    np.cumsum(word_len[:-1] + 1, out=word_start[1:])
    word_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_words, out=word_offsets[1:])
    encodings = tokenizer.hf.encode_batch([" ".join(ws) for ws in sentences], add_special_tokens=False) if n else []
    n_tokens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
    total = int(n_tokens.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
    chars = (c for e in encodings for o in e.offsets for c in o)
    spans = np.fromiter(chars, dtype=np.int64, count=2 * total).reshape(-1, 2)
    spans += np.repeat(word_start[word_offsets[:-1]], n_tokens)[:, None]  # offsets within all texts joined
    first = spans[:, 0]
    word = np.searchsorted(word_start, first, side="right") - 1
    joiner = first == word_start[word] + word_len[word]  # starts on the space after its word
    first, word = first + joiner, np.minimum(word + joiner, len(word_len) - 1)
    keep = first < spans[:, 1]
    ids, word = ids[keep], word[keep]
    counts = np.bincount(word, minlength=len(word_len))
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        at = np.cumsum(counts)[empty]  # where the missing word's tokens would be
        ids = np.insert(ids, at, tokenizer.unk_id)
        word = np.insert(word, at, empty)
    sentence = np.searchsorted(word_offsets, word, side="right") - 1
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(sentence, minlength=n), out=offsets[1:])
    return AlignedWords(ids, word, offsets, word_offsets, len(empty))


def _windows(word: np.ndarray, budget: int) -> tuple[list[tuple[int, int]], int]:
    """Split a sentence's tokens (``word``: the word of each token) into windows of at most ``budget`` tokens at word
    boundaries: ``[(token_start, token_end)]`` and how many words were cut to ``budget`` pieces (their own window)."""
    if len(word) <= budget:
        return [(0, len(word))], 0
    bounds = np.flatnonzero(np.diff(word, prepend=-1, append=-2))  # token index where each word starts, + the end
    windows: list[tuple[int, int]] = []
    cut = 0
    start = bounds[0]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - start > budget and a > start:  # the word does not fit: close the window before it
            windows.append((int(start), int(a)))
            start = a
        if b - start > budget:  # a single word longer than a window keeps its first pieces
            windows.append((int(start), int(start + budget)))
            cut += 1
            start = b
    if start < bounds[-1]:
        windows.append((int(start), int(bounds[-1])))
    return windows, cut


def merge_windows(
    sentence_index: Sequence[int], window_index: Sequence[int], tags: Sequence[Sequence[T]]
) -> dict[int, list[T]]:
    """Per sentence, the tags of its windows' words concatenated in window order. A window seen twice (the copies a
    distributed sampler adds to even out the ranks) counts once."""
    windows: dict[tuple[int, int], list[T]] = {}
    for s, w, t in zip(sentence_index, window_index, tags, strict=True):
        windows.setdefault((int(s), int(w)), list(t))
    out: dict[int, list[T]] = {}
    for s, w in sorted(windows):
        out.setdefault(s, []).extend(windows[(s, w)])
    return out


# --------------------------------------------------------------------------------------------------- dataset
class TokenClassificationDataset(Dataset):
    """Formatted windows of tagged sentences; items are collated by :class:`TokenClassificationCollator`.

    Args:
        encoded: The token ids of each window, special tokens included (``n_truncated``: words cut to a window).
        labels: Flat like ``encoded.tokens``: the label id of each token, ``-100`` where none.
        word_starts: Flat like ``encoded.tokens``: True on the first token of every word.
        sentence_index: (n,) the sentence each window is of.
        window_index: (n,) its place among the windows of that sentence.
    """

    def __init__(self, encoded: EncodedSequences, labels: np.ndarray, word_starts: np.ndarray,
                 sentence_index: np.ndarray, window_index: np.ndarray) -> None:  # fmt: skip
        self.encoded, self.labels, self.word_starts = encoded, labels, word_starts
        self.sentence_index, self.window_index = sentence_index, window_index

    @property
    def n_truncated(self) -> int:
        """Sequences cut to fit ``max_seq_length`` (what the DataModule's ``stats`` report)."""
        return self.encoded.n_truncated

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def lengths(self) -> np.ndarray:
        return self.encoded.lengths

    def __getitem__(self, i: int) -> dict[str, Any]:
        a, b = self.encoded.offsets[i], self.encoded.offsets[i + 1]
        return {"input_ids": self.encoded.tokens[a:b], "labels": self.labels[a:b],
                "word_starts": self.word_starts[a:b], "sentence_index": int(self.sentence_index[i]),
                "window_index": int(self.window_index[i])}  # fmt: skip


class TokenClassificationCollator:
    """Pads windows into a batch dict::

        input_ids, attention_mask, token_type_ids (B, T)   long; token types all 0
        labels (B, T)            long, -100 on special, ignored and padding positions
        word_starts (B, T)       bool, True on the first token of every word
        sentence_index, window_index (B,)   long

    Args:
        pad_id: Token id used for padding (the tokenizer's ``[PAD]``).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs = [it["input_ids"] for it in items]
        ids, mask, types = pad_batch(seqs, [len(s) for s in seqs], self.pad_id)
        labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
        starts = np.zeros(ids.shape, dtype=bool)
        for i, it in enumerate(items):
            labels[i, : len(it["labels"])] = it["labels"]
            starts[i, : len(it["word_starts"])] = it["word_starts"]
        return {
            "input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": torch.from_numpy(labels),
            "word_starts": torch.from_numpy(starts),
            "sentence_index": torch.tensor([it["sentence_index"] for it in items], dtype=torch.long),
            "window_index": torch.tensor([it["window_index"] for it in items], dtype=torch.long),
        }  # fmt: skip


# --------------------------------------------------------------------------------------------------- DataModule
class TokenClassificationDataModule(TaskDataModule):
    """Tagged sentences (one tag per word, BIO2) for BERT or GPT-1 style token classification: NER.

    Batches: see :class:`TokenClassificationCollator`. The label set is :attr:`label_names` (``O`` first), the
    scores are entity-level precision, recall and F1 as ``conlleval`` computes them (:attr:`metrics`; checkpoints are
    selected by ``val/f1``). After :meth:`setup`, :attr:`stats` holds per split the ``windows``, the
    ``split_sentences`` (longer than one window), ``words_without_tokens`` and ``truncated`` (words cut to a window).

    Args:
        train_files: Training files (CoNLL column files, ``word tag`` files, JSONL or Parquet; see
            :mod:`lit_lm.data.finetuning.conll`). None: the built-in generated set
            (:func:`~lit_lm.data.finetuning.conll.builtin_token_classification`).
        val_files: Validation files. None: a seeded ``val_fraction`` of the training sentences is held out (the
            built-in validation split without ``train_files``).
        test_files: Test files (also used by ``predict``).
        tokenizer: The model's tokenizer: a ``tokenizer.json``, a BERT ``vocab.txt``, a lit_lm ``.ckpt`` or a
            Hugging Face directory. None with a checkpoint (``init_from``/``--ckpt_path``): the CLI uses the
            checkpoint's; else one is trained on the training text (cached in ``cache_dir``).
        labels: The tags in id order (BIO2 names; ``O`` among them); integer tags in JSONL/Parquet files are ids
            into this list. Default: ``O``, then ``B-`` and ``I-`` of every entity type in the training files (the
            model stores the list in its checkpoints). A tag outside the list is a data error naming file:line.
        reader: File format: ``auto`` (by suffix and first line), ``conll``, ``two_column``, ``jsonl`` or
            ``parquet`` (needs pyarrow).
        tag_scheme: ``iob1``: convert IOB1 tags (CoNLL-2003 as published) to BIO2; a BIO2 file reads unchanged.
            ``bio2``: the tags must already be BIO2 (an entity starting with ``I-`` is an error).
        tokens_column: JSONL/Parquet: the column holding each sentence's list of words.
        tags_column: JSONL/Parquet: the column holding its list of tags (names or ids into ``labels``).
        label_all_tokens: Label every token of a word (continuations of a ``B-X`` word as ``I-X``), not only its
            first; predictions and scores still read the first token of each word.
        format: ``encoder``: ``[CLS] words [SEP]`` (BERT); ``decoder``: ``[CLS]? words [EXTRACT]`` (GPT-1; a decoder
            reads left to right only, so each word's label is predicted from the words before it and itself).
        start_token: Decoder format: begin each sequence with ``[CLS]`` as the start token (GPT-1 had one).
        max_seq_length: Longest sequence including special tokens; a longer sentence is split into windows at word
            boundaries (counted, nothing dropped but the extra pieces of a word longer than a window).
        batch_size: Windows per batch (per device).
        group_by_length: Order training batches so each holds similar lengths (less padding, still shuffled).
        num_workers: DataLoader worker processes.
        seed: Seed for shuffling, length grouping and the validation hold-out.
        val_fraction: Share of the training sentences held out for validation when ``val_files`` is None.
        vocab_size: Vocabulary size of a tokenizer trained here (ignored when ``tokenizer`` is given).
        lowercase: Lowercase the text when training a tokenizer or loading a ``vocab.txt`` (see NLIDataModule).
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` or ``bpe``.
        cache_dir: Where trained task tokenizers are cached.
        test_fraction: With no ``test_files``: hold out this share of ``train_files`` as the test split, left out
            of training and validation; the split is fixed (the same for every ``seed``). 0: none.
        extra_train_files: More training files, added to the training split only (the hold-out comes from
            ``train_files`` alone).
    """

    #: What this DataModule feeds: one label per word (the task checks it).
    problem_type = "token_classification"
    #: Logged per validation/test epoch as ``{stage}/{name}`` (entity level, micro-averaged over the types).
    metrics: tuple[str, ...] = ("f1", "precision", "recall")
    #: Checkpoints are selected by the highest ``val/f1``.
    main_metric = "f1"

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        tokenizer: str | None = None,
        labels: list[str] | None = None,
        reader: TaggedReader = "auto",
        tag_scheme: TagScheme = "iob1",
        tokens_column: str = "tokens",
        tags_column: str = "ner_tags",
        label_all_tokens: bool = False,
        format: Literal["decoder", "encoder"] = "encoder",
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
        super().__init__(train_files, val_files, test_files, tokenizer, format, start_token, max_seq_length,
                         batch_size, group_by_length, num_workers, seed, val_fraction, vocab_size, lowercase,
                         cache_dir, tokenizer_kind, extra_train_files, test_fraction)  # fmt: skip
        if reader not in ("auto", "conll", "two_column", "jsonl", "parquet"):
            raise DataError(f"reader must be auto, conll, two_column, jsonl or parquet, got {reader!r}")
        if tag_scheme not in ("iob1", "bio2"):
            raise DataError(f"tag_scheme must be 'iob1' or 'bio2', got {tag_scheme!r}")
        self.reader, self.tag_scheme = reader, tag_scheme
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.label_all_tokens = label_all_tokens
        self._given_labels = None if labels is None else check_label_names(labels)
        self._label_names: list[str] | None = self._given_labels
        self._read_cache: dict[tuple[str, bool], Any] = {}

    # ---------------------------------------------------------------------------------------------- labels
    @property
    def label_names(self) -> list[str]:
        """The tags in id order: ``labels``, or those of the training files (read on first use)."""
        if self._label_names is None:
            if self.train_files is None:
                train = builtin_token_classification("train")
            else:
                train = self._read(self.train_files + (self.extra_train_files or []))[0]
            self._label_names = default_labels(train)
        return self._label_names

    def adopt_model_labels(self, names: Sequence[str]) -> None:
        """Tag with a trained model's labels where this DataModule has none of its own: no ``labels`` and no
        training files, only files to test or predict (``test --ckpt_path``). A tag of those files outside the
        model's labels is then a :class:`DataError` naming its line."""
        if self._given_labels is None and self.train_files is None and self.test_files is not None:
            self._label_names = check_label_names(list(names))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    # ---------------------------------------------------------------------------------------------- reading
    def _read_file(self, path: str, check: bool) -> Any:
        key = (path, check)
        if key not in self._read_cache:
            # ids in a file index `labels` as given (or a Hub file's own names), never the derived list
            allowed = self.label_names if check else None
            self._read_cache[key] = read_tagged(path, self.reader, self.tag_scheme, self._given_labels,
                                                self.tokens_column, self.tags_column, allowed)  # fmt: skip
        return self._read_cache[key]

    def _read(self, files: list[str]) -> tuple[list[TaggedSentence], dict[str, int]]:
        training = set(self.train_files or []) | set(self.extra_train_files or [])
        out: list[TaggedSentence] = []
        for f in files:
            # the training files define the default label set; every other file is checked against it
            out.extend(self._read_file(f, check=self._given_labels is not None or f not in training).examples)
        return out, {}

    def _builtin(self, split: str) -> list[TaggedSentence]:
        return builtin_token_classification(split)  # type: ignore[arg-type]

    def _tokenizer_key(self) -> list[str]:
        if self.train_files is None:
            return [f"builtin-ner-v{BUILTIN_NER_VERSION}"]
        key = ["tagged", self.reader, self.tag_scheme, self.tokens_column, self.tags_column]
        key += [f"{f}:{file_digest(f)}" for f in self.train_files]
        if self.extra_train_files:
            key += ["extra"] + [f"{f}:{file_digest(f)}" for f in self.extra_train_files]
        return key

    def _tokenizer_texts(self) -> list[str]:
        return [" ".join(s.words) for s in self.examples("train")]

    # ---------------------------------------------------------------------------------------------- encoding
    def _special(self) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        if self.format == "decoder":
            return ([tok.cls_id] if self.start_token else []), [tok.extract_id]  # type: ignore[list-item]
        return [tok.cls_id], [tok.sep_id]

    def _tokenize(self, examples: list[TaggedSentence], split: str) -> TokenClassificationDataset:
        names = self.label_names
        ids_of = {n: i for i, n in enumerate(names)}
        # label of a continuation piece with label_all_tokens: I-X for B-X (where the list has I-X)
        inside = np.array([ids_of.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(names)])
        head, tail = self._special()
        h, t = len(head), len(tail)
        budget = self.max_seq_length - h - t
        al = align_words(self.tokenizer, [s.words for s in examples])
        word_labels = np.fromiter((ids_of[tag] for s in examples for tag in s.tags), dtype=np.int64)
        token_labels = word_labels[al.word]
        first = np.diff(al.word, prepend=-1) != 0  # the first token of each word
        continuation = inside[token_labels] if self.label_all_tokens else IGNORE_INDEX
        labels = np.where(first, token_labels, continuation)

        # windows: a whole sentence, or (longer than the budget) consecutive words of it
        starts, ends = al.offsets[:-1], al.offsets[1:]
        sentence_index, window_index = np.arange(len(examples)), np.zeros(len(examples), dtype=np.int64)
        long = np.flatnonzero(ends - starts > budget)
        n_cut = n_split = 0
        if len(long):
            split_at: dict[int, list[tuple[int, int]]] = {}
            for i in long:
                windows, cut = _windows(al.word[starts[i] : ends[i]], budget)
                split_at[int(i)] = [(starts[i] + a, starts[i] + b) for a, b in windows]
                n_cut += cut
                n_split += len(windows) > 1
            rows = [split_at.get(i, [(starts[i], ends[i])]) for i in range(len(examples))]
            starts = np.array([a for r in rows for a, _ in r], dtype=np.int64)
            ends = np.array([b for r in rows for _, b in r], dtype=np.int64)
            sentence_index = np.repeat(np.arange(len(examples)), [len(r) for r in rows])
            window_index = np.concatenate([np.arange(len(r)) for r in rows])
        n = len(starts)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(ends - starts + h + t, out=offsets[1:])
        # where each token goes: after its window's head tokens (the cut pieces of an overlong word go nowhere)
        token = np.arange(len(al.ids))
        window = np.searchsorted(starts, token, side="right") - 1
        kept = token < ends[window]
        window, token = window[kept], token[kept]
        at = offsets[window] + h + token - starts[window]
        tokens = np.empty(offsets[-1], dtype=np.int32)
        out_labels = np.full(offsets[-1], IGNORE_INDEX, dtype=np.int64)
        word_starts = np.zeros(offsets[-1], dtype=bool)
        tokens[at], out_labels[at], word_starts[at] = al.ids[token], labels[token], first[token]
        if h:
            tokens[offsets[:-1, None] + np.arange(h)] = head
        if t:
            tokens[offsets[1:, None] - t + np.arange(t)] = tail
        lengths = np.diff(offsets)
        encoded = EncodedSequences(tokens, offsets, lengths.copy(), np.zeros(n, dtype=np.int64), n_cut)
        self.stats.setdefault(split, {}).update(windows=n, split_sentences=n_split, words_without_tokens=al.n_empty)
        if n_split or n_cut or al.n_empty:
            log.info("%s: %d sentences -> %d windows of at most %d tokens (%d sentences split at word boundaries, %d "
                     "words cut to a window, %d words without tokens given [UNK])", split, len(examples), n,
                     self.max_seq_length, n_split, n_cut, al.n_empty)  # fmt: skip
        return TokenClassificationDataset(encoded, out_labels, word_starts, sentence_index.astype(np.int64),
                                          window_index.astype(np.int64))  # fmt: skip

    def _collator(self) -> Callable:
        return TokenClassificationCollator(self.pad_token_id)

    # ---------------------------------------------------------------------------------------------- predictions
    def sentence_tags(self, predictions: Sequence[dict[str, Any]], split: str = "test") -> list[list[str]]:
        """The predicted tags of every sentence of ``split``, from ``trainer.predict``'s outputs (batches of
        ``tags``, ``sentence_index``, ``window_index``: :meth:`lit_lm.tasks.TokenClassification.predict_step`)."""
        merged = merge_windows(
            [int(s) for p in predictions for s in p["sentence_index"]],
            [int(w) for p in predictions for w in p["window_index"]],
            [t for p in predictions for t in p["tags"]],
        )  # fmt: skip
        sentences = self.examples(split)
        out = [merged.get(i, []) for i in range(len(sentences))]
        for s, tags in zip(sentences, out, strict=True):
            if len(tags) != len(s.words):
                raise DataError(f"{s.source or split}: {len(s.words)} words but {len(tags)} predicted tags; were the "
                                "predictions made on this split with these settings?")  # fmt: skip
        return out

    def write_predictions(self, path: str, predictions: Sequence[dict[str, Any]], split: str = "test") -> None:
        """Write ``word gold predicted`` per line for ``conlleval``
        (:func:`~lit_lm.data.finetuning.conll.write_conll`)."""
        write_conll(path, self.examples(split), self.sentence_tags(predictions, split))
