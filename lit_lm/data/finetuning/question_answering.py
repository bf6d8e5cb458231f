"""Extractive question answering (SQuAD): :class:`QuestionAnsweringDataModule`.

A question and its context become one or more windows, as Hugging Face's ``run_qa.py`` and BERT's ``run_squad.py``
build them::

    encoder (BERT):   [CLS] question [SEP] context window [SEP]         token types 0 ... 0 1 ... 1
    decoder (GPT-1):  [CLS]? question [DELIM] context window [EXTRACT]   (the context's states have read the question)

The question is cut to ``max_query_length`` tokens; a context longer than the rest of ``max_seq_length`` is split
into windows that overlap by ``doc_stride`` tokens. Token positions come from the tokenizer's character offsets
(WordPiece and byte-level BPE alike; a byte-level token's leading space is not part of its span), so an answer's
characters map to a start and an end token, and a predicted span maps back to the context's own characters. A
window that does not hold the whole answer is trained to point at its *null position*: ``[CLS]`` (encoder) or
``[EXTRACT]`` (decoder; a causal decoder's first token has seen nothing, its last has seen the window), which is
also where SQuAD v2's "no answer" points.

Splits: validation is a seeded hold-out of whole *articles* of ``train_files`` (no paragraph is in both), and
``test_articles: N`` makes the last N articles of ``train_files`` the test split (SQuAD's train file is not always at
hand: train on the dev file's first articles, report on its last ones, no question of a reported article trained on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_lm.data.core.io import file_digest
from lit_lm.data.core.splits import holdout_split
from lit_lm.data.core.tokenizer import Tokenizer, TokenizerKind
from lit_lm.data.finetuning.base import TaskDataModule
from lit_lm.data.finetuning.encoding import TaskFormat, pad_batch
from lit_lm.data.finetuning.squad import BUILTIN_QA_VERSION, QAExample, QAReader, builtin_question_answering, read_squad
from lit_lm.errors import DataError

__all__ = ["QADataset", "QuestionAnsweringDataModule", "encode_windows", "token_spans"]

log = logging.getLogger(__name__)


def token_spans(context: str, offsets: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) character span of each token of ``context``, leading whitespace left out (a byte-level BPE
    token ``Ġword`` covers the space before the word; a token of spaces or line breaks only gets an empty span)."""
    n = len(context)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    space = np.frombuffer(context.encode("utf-32-le"), dtype=np.uint32)
    is_space = np.isin(space, _SPACES) if n else np.zeros(0, dtype=bool)
    # next[i]: the first non-space character at or after i (n at the end)
    idx = np.where(is_space, n, np.arange(n))
    nxt = np.append(np.minimum.accumulate(idx[::-1])[::-1], n) if n else np.zeros(1, dtype=np.int64)
    starts = np.minimum(nxt[np.minimum(off[:, 0], n)], off[:, 1])
    return starts, off[:, 1].copy()


_SPACES = np.array([ord(c) for c in map(chr, range(0x3000 + 1)) if c.isspace()], dtype=np.uint32)


@dataclass
class QAWindows:
    """The windows (features) of a split's examples, kept compactly: token ids are assembled per item.

    Attributes:
        questions: Per example, its question's token ids (cut to ``max_query_length``).
        contexts: Per distinct context, its token ids; ``starts`` / ``ends`` their character spans.
        context_of: (n_examples,) index of each example's context.
        example: (n_windows,) the example of each window; ``window_start`` / ``window_len``: its context tokens.
        start_positions / end_positions: (n_windows,) sequence positions of the answer (the null position when
            the window does not hold it, or the question has none).
        n_truncated: Questions cut to ``max_query_length``.
        off_boundary: Answers whose characters start or end inside a token (trained on the tokens around them).
    """

    questions: list[np.ndarray]
    contexts: list[np.ndarray]
    starts: list[np.ndarray]
    ends: list[np.ndarray]
    context_of: np.ndarray
    example: np.ndarray
    window_start: np.ndarray
    window_len: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    n_truncated: int = 0
    off_boundary: int = 0


def _answer_tokens(ex: QAExample, starts: np.ndarray, ends: np.ndarray) -> tuple[int, int, bool]:
    """(first token, last token, on token boundaries) of the first answer; (-1, -1, True) for no answer."""
    if not ex.answers:
        return -1, -1, True
    text, s = ex.answers[0]
    e = s + len(text.rstrip())
    s += len(text) - len(text.lstrip())
    a = int(np.searchsorted(ends, s, side="right"))  # first token ending after the answer's first character
    b = int(np.searchsorted(starts, e, side="left")) - 1  # last token starting before its end
    if a >= len(starts) or b < a:
        return -1, -1, False
    return a, b, bool(starts[a] == s and ends[b] == e)


def encode_windows(
    tokenizer: Tokenizer,
    examples: Sequence[QAExample],
    format: TaskFormat = "encoder",
    start_token: bool = True,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> QAWindows:
    """Tokenize questions and contexts (``encode_batch`` on the distinct contexts, with offsets) and cut each
    example into windows (see the module docstring)."""
    head = 1 if format == "encoder" or start_token else 0
    n_special = 3 if format == "encoder" else 2 + int(start_token)
    questions = [np.asarray(ids[:max_query_length], dtype=np.int32)
                 for ids in tokenizer.encode_batch([ex.question for ex in examples])]  # fmt: skip
    n_truncated = sum(len(q) == max_query_length for q in questions)  # at the limit: possibly cut
    index: dict[str, int] = {}
    context_of = np.array([index.setdefault(ex.context, len(index)) for ex in examples], dtype=np.int64)
    encoded = tokenizer.hf.encode_batch(list(index), add_special_tokens=False) if index else []
    contexts = [np.asarray(enc.ids, dtype=np.int32) for enc in encoded]
    spans = [token_spans(text, enc.offsets) for text, enc in zip(index, encoded, strict=True)]
    example, wstart, wlen, spos, epos = [], [], [], [], []
    off_boundary = 0
    for i, ex in enumerate(examples):
        c = context_of[i]
        n_ctx, q = len(contexts[c]), len(questions[i])
        room = max_seq_length - q - n_special
        step = room - doc_stride
        a, b, aligned = _answer_tokens(ex, *spans[c])
        off_boundary += not aligned
        offset = head + q + 1  # position of the first context token
        ws = 0
        while True:
            wl = min(room, n_ctx - ws)
            null = 0 if format == "encoder" else offset + wl  # [EXTRACT]
            inside = a >= 0 and ws <= a and b < ws + wl
            example.append(i)
            wstart.append(ws)
            wlen.append(wl)
            spos.append(offset + a - ws if inside else null)
            epos.append(offset + b - ws if inside else null)
            if ws + wl >= n_ctx:
                break
            ws += step
    as_array = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return QAWindows(questions, contexts, [s for s, _ in spans], [e for _, e in spans], context_of,
                     as_array(example), as_array(wstart), as_array(wlen), as_array(spos), as_array(epos),
                     n_truncated, off_boundary)  # fmt: skip


class QADataset(Dataset):
    """The windows of one split as items for :class:`QACollator` (token ids assembled on access)."""

    def __init__(self, windows: QAWindows, tokenizer: Tokenizer, format: TaskFormat, start_token: bool) -> None:
        self.w, self.format = windows, format
        if format == "encoder":
            self.head, self.mid, self.tail = [tokenizer.cls_id], [tokenizer.sep_id], [tokenizer.sep_id]
        else:
            self.head = [tokenizer.cls_id] if start_token else []
            self.mid, self.tail = [tokenizer.delim_id], [tokenizer.extract_id]
        self.n_truncated = windows.n_truncated

    def __len__(self) -> int:
        return len(self.w.example)

    @property
    def lengths(self) -> np.ndarray:
        n_special = len(self.head) + len(self.mid) + len(self.tail)
        q = np.array([len(self.w.questions[i]) for i in self.w.example], dtype=np.int64)
        return q + self.w.window_len + n_special

    def __getitem__(self, k: int) -> dict[str, Any]:
        w = self.w
        i = int(w.example[k])
        ws, wl = int(w.window_start[k]), int(w.window_len[k])
        q = w.questions[i]
        ctx = w.contexts[w.context_of[i]][ws : ws + wl]
        ids = np.concatenate([self.head, q, self.mid, ctx, self.tail]).astype(np.int64)
        offset = len(self.head) + len(q) + len(self.mid)
        null = 0 if self.format == "encoder" else len(ids) - 1
        return {
            "input_ids": ids,
            "segment_start": offset if self.format == "encoder" else len(ids),
            "start_position": int(w.start_positions[k]),
            "end_position": int(w.end_positions[k]),
            "context_start": offset,
            "context_end": offset + wl,
            "null_position": null,
            "window_index": k,
        }


class QACollator:
    """Pads QA windows into a batch::

        input_ids, attention_mask, token_type_ids (B, T); start_positions, end_positions, context_start,
        context_end (exclusive), null_positions, window_index (B,)

    all ``torch.long``; ``T`` is the longest window of this batch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        starts = [it["segment_start"] for it in items]
        ids, mask, types = pad_batch([it["input_ids"] for it in items], starts, self.pad_id)
        col = lambda key: torch.tensor([it[key] for it in items], dtype=torch.long)  # noqa: E731
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                "start_positions": col("start_position"), "end_positions": col("end_position"),
                "context_start": col("context_start"), "context_end": col("context_end"),
                "null_positions": col("null_position"), "window_index": col("window_index")}  # fmt: skip


class QuestionAnsweringDataModule(TaskDataModule):
    """SQuAD-style extractive question answering for BERT (default) or GPT-1 style fine-tuning.

    Batches: see :class:`QACollator`. After an epoch, :meth:`answers` turns the model's best spans per window
    into one answer text per question, and :meth:`references` gives the gold answers as the official scorer reads
    them.

    Args:
        train_files: SQuAD v1.1/v2.0 JSON, or JSONL/Parquet with the Hub's ``squad`` columns. None: the built-in
            generated set (:func:`~lit_lm.data.finetuning.squad.builtin_question_answering`).
        val_files: Validation files. None: a seeded ``val_fraction`` of the training *articles* is held out.
        test_files: Test files (also read by ``predict``, which writes ``predictions.json``).
        tokenizer: The model's tokenizer (see :class:`~lit_lm.data.TextClassificationDataModule`).
        reader: ``auto`` (by suffix: .json, .jsonl, .parquet), ``squad``, ``jsonl`` or ``parquet``.
        test_articles: With no ``test_files``: the last this many articles of ``train_files`` are the test split,
            left out of training and validation.
        skip_bad_answers: Drop (count and log) answers whose ``answer_start`` does not match their text, instead of
            stopping at the first with a :class:`DataError`.
        version_2_with_negative: SQuAD v2: questions may have no answer (predicted when the null score beats the
            best span by the task's ``null_score_diff_threshold``). None: when the split has such questions.
        format: ``encoder`` (``[CLS] question [SEP] context [SEP]``) or ``decoder`` (``question [DELIM] context
            [EXTRACT]``).
        start_token: Decoder format: begin with ``[CLS]`` as the start token.
        max_seq_length: Longest window, special tokens and question included (384 as ``run_qa.py``).
        doc_stride: Tokens shared by consecutive windows of a long context (128 as ``run_qa.py``).
        max_query_length: Question tokens kept (64).
        batch_size, group_by_length, num_workers, seed, val_fraction, vocab_size, lowercase, tokenizer_kind,
        cache_dir, extra_train_files: as for the other fine-tuning DataModules.
    """

    family = "qa"
    main_metric = "f1"
    metrics = ("f1", "exact_match")

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        tokenizer: str | None = None,
        reader: QAReader = "auto",
        test_articles: int = 0,
        skip_bad_answers: bool = False,
        version_2_with_negative: bool | None = None,
        format: Literal["decoder", "encoder"] = "encoder",
        start_token: bool = True,
        max_seq_length: int = 384,
        doc_stride: int = 128,
        max_query_length: int = 64,
        batch_size: int = 16,
        group_by_length: bool = False,
        num_workers: int = 0,
        seed: int = 42,
        val_fraction: float = 0.05,
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "wordpiece",
        cache_dir: str = ".cache/lit_lm",
        extra_train_files: list[str] | None = None,
    ) -> None:
        super().__init__(train_files, val_files, test_files, tokenizer, format, start_token, max_seq_length,
                         batch_size, group_by_length, num_workers, seed, val_fraction, vocab_size, lowercase,
                         cache_dir, tokenizer_kind, extra_train_files)  # fmt: skip
        if reader not in ("auto", "squad", "jsonl", "parquet"):
            raise DataError(f"reader must be auto, squad, jsonl or parquet, got {reader!r}")
        if test_articles < 0 or (test_articles and (self.train_files is None or self.test_files is not None)):
            raise DataError(
                f"test_articles={test_articles}: takes the last articles of train_files as the test split; it needs "
                "train_files and no test_files, and must be >= 0"
            )
        n_special = 3 if format == "encoder" else 2 + int(start_token)
        if max_query_length < 1 or doc_stride < 0 or max_seq_length - max_query_length - n_special <= doc_stride:
            raise DataError(
                f"max_seq_length={max_seq_length}, max_query_length={max_query_length}, doc_stride={doc_stride}: a "
                f"window holds at least max_seq_length - max_query_length - {n_special} context tokens, which must "
                "exceed doc_stride (the overlap of consecutive windows) so that windows advance"
            )
        self.reader, self.test_articles, self.skip_bad_answers = reader, test_articles, skip_bad_answers
        self.version_2_with_negative = version_2_with_negative
        self.doc_stride, self.max_query_length = doc_stride, max_query_length
        self._read_cache: dict[tuple[str, ...], tuple[list[QAExample], dict[str, int]]] = {}
        self.windows: dict[str, QAWindows] = {}

    # ---------------------------------------------------------------------------------------------- splits
    def _read(self, files: list[str]) -> tuple[list[QAExample], dict[str, int]]:
        key = tuple(files)
        if key not in self._read_cache:
            self._read_cache[key] = read_squad(files, self.reader, self.skip_bad_answers)
        return self._read_cache[key]

    def _builtin(self, split: str) -> list[QAExample]:
        return builtin_question_answering(split)

    def _by_article(self) -> dict[str, list[QAExample]]:
        """The train / val / test examples drawn from ``train_files`` by whole articles."""
        examples, _ = self._read(self.train_files)
        titles = list(dict.fromkeys(ex.title for ex in examples))
        test = set(titles[len(titles) - self.test_articles :]) if self.test_articles else set()
        if self.test_articles >= len(titles):
            raise DataError(f"test_articles={self.test_articles} but train_files have {len(titles)} articles",
                            self.train_files[0])  # fmt: skip
        rest = [t for t in titles if t not in test]
        val: set[str] = set()
        if self.val_files is None:
            _, val_idx = holdout_split(len(rest), self.val_fraction, self.seed, what="articles")
            val = {rest[i] for i in val_idx}
        return {
            "train": [ex for ex in examples if ex.title not in test and ex.title not in val],
            "val": [ex for ex in examples if ex.title in val],
            "test": [ex for ex in examples if ex.title in test],
        }

    def examples(self, split: str) -> list[QAExample]:
        """The examples of ``train``, ``val`` or ``test`` (read once and kept)."""
        if split in self._splits:
            return self._splits[split]
        files = {"train": None, "val": self.val_files, "test": self.test_files}[split]
        skipped: dict[str, int] = {}
        if files is not None:
            examples, skipped = self._read(files)
        elif self.train_files is None:
            examples = self._builtin(split)
        elif split == "test" and not self.test_articles:
            raise DataError("no test_files set; give test_files (or test_articles) to run test or predict")
        else:
            examples = self._by_article()[split]
            if split == "train":
                skipped = dict(self._read(self.train_files)[1])
                if self.extra_train_files is not None:
                    extra, extra_skipped = self._read(self.extra_train_files)
                    examples = examples + extra
                    for reason, n in extra_skipped.items():
                        skipped[reason] = skipped.get(reason, 0) + n
            titles = len({ex.title for ex in examples})
            log.info("%s: %d questions of %d articles of train_files", split, len(examples), titles)
        if not examples:
            raise DataError(f"the {split} split has no questions")
        self._splits[split] = examples
        self.stats.setdefault(split, {}).update(examples=len(examples), skipped=skipped)
        return examples

    # ---------------------------------------------------------------------------------------------- tokenizing
    def _tokenizer_key(self) -> list[str]:
        if self.train_files is None:
            return [f"builtin-qa-v{BUILTIN_QA_VERSION}"]
        key = ["qa", self.reader, f"test_articles={self.test_articles}"]
        key += [f"{f}:{file_digest(f)}" for f in self.train_files + (self.extra_train_files or [])]
        return key

    def _tokenizer_texts(self) -> list[str]:
        train = self.examples("train")
        return list(dict.fromkeys(ex.context for ex in train)) + [ex.question for ex in train]

    def _tokenize(self, examples: list[QAExample], split: str) -> QADataset:
        windows = encode_windows(self.tokenizer, examples, self.format, self.start_token, self.max_seq_length,
                                 self.doc_stride, self.max_query_length)  # fmt: skip
        self.windows[split] = windows
        n = len(windows.example)
        if n > len(examples):
            log.info("%s: %d questions -> %d windows (max_seq_length=%d, doc_stride=%d)",
                     split, len(examples), n, self.max_seq_length, self.doc_stride)  # fmt: skip
        if windows.off_boundary:
            log.info("%s: %d of %d answers start or end inside a token (trained on the tokens around them)",
                     split, windows.off_boundary, len(examples))  # fmt: skip
        self.stats.setdefault(split, {})["windows"] = n
        return QADataset(windows, self.tokenizer, self.format, self.start_token)

    def _collator(self) -> Callable:
        return QACollator(self.tokenizer.pad_id)

    # ---------------------------------------------------------------------------------------------- decoding
    def allows_no_answer(self, split: str) -> bool:
        """Whether a question of ``split`` may be answered "no answer" (SQuAD v2)."""
        if self.version_2_with_negative is not None:
            return self.version_2_with_negative
        return any(not ex.answers for ex in self.examples(split))

    def answers(
        self,
        split: str,
        window_index: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        scores: np.ndarray,
        null_scores: np.ndarray,
        null_threshold: float = 0.0,
    ) -> dict[str, str]:
        """One answer per question seen: the best-scoring span over all of its windows, as the context's own
        characters ("" when SQuAD v2's null score wins by more than ``null_threshold``).

        Args:
            split: Which split's windows the arrays refer to.
            window_index: (N,) window of each row (windows not listed are not answered).
            starts, ends: (N, K) sequence positions of each window's K best spans (from the model).
            scores: (N, K) their scores, ``-inf`` for no span.
            null_scores: (N,) the score of the window's null position (start and end).
        """
        w, examples = self.windows[split], self.examples(split)
        no_answer = self.allows_no_answer(split)
        order = np.argsort(w.example[window_index], kind="stable")
        rows = window_index[order]
        ex_of_row = w.example[rows]
        bounds = np.flatnonzero(np.diff(ex_of_row)) + 1
        out: dict[str, str] = {}
        head = 1 if self.format == "encoder" or self.start_token else 0
        for group in np.split(np.arange(len(rows)), bounds):
            if not len(group):
                continue
            i = int(ex_of_row[group[0]])
            ex = examples[i]
            c = int(w.context_of[i])
            r = order[group]  # rows of this example in the given arrays
            flat = scores[r].reshape(-1)
            best = int(np.argmax(flat))
            text = ""
            if np.isfinite(flat[best]):
                k_row, k = divmod(best, scores.shape[1])
                window = int(window_index[r[k_row]])
                offset = head + len(w.questions[i]) + 1
                a = int(starts[r[k_row], k]) - offset + int(w.window_start[window])
                b = int(ends[r[k_row], k]) - offset + int(w.window_start[window])
                text = ex.context[int(w.starts[c][a]) : int(w.ends[c][b])]
                if no_answer and float(null_scores[r].min()) > float(flat[best]) + null_threshold:
                    text = ""
            out[ex.id] = text
        return out

    def references(self, split: str, ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Gold answers in torchmetrics' SQuAD format (of the questions in ``ids``; all if None)."""
        return [{"id": ex.id, "answers": {"text": ex.answer_texts, "answer_start": [s for _, s in ex.answers]}}
                for ex in self.examples(split) if ids is None or ex.id in ids]  # fmt: skip
