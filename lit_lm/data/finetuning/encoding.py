"""Formatting fine-tuning inputs and batching them, for every task family.

- Formatting: :func:`encode_pairs` turns (first text, second text) pairs into model inputs, in one of two layouts::

      decoder (GPT-1):  [CLS]? first [DELIM] second [EXTRACT]     token types all 0, features read at [EXTRACT]
      encoder (BERT):   [CLS] first [SEP] second [SEP]            token types 0 ... 0 1 ... 1, features at [CLS]

  Pairs longer than ``max_seq_length`` are cut longest-first: one token at a time from the end of the longer
  text (the second one on ties), as Hugging Face's ``truncation="longest_first"`` does. The special tokens are
  always kept.
- Batching: :class:`NLICollator` and :class:`MultipleChoiceCollator` pad each batch to its own longest sequence;
  :class:`~lit_lm.data.core.samplers.LengthGroupedSampler` orders training examples so that a batch holds similar
  lengths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

TaskFormat = Literal["decoder", "encoder"]

# --------------------------------------------------------------------------------------------------- formatting
def num_special_tokens(format: TaskFormat, start_token: bool = True, pair: bool = True) -> int:
    """How many special tokens a formatted pair (or, ``pair=False``, one text) carries."""
    if format == "decoder":
        return 1 + int(pair) + int(start_token)
    if format == "encoder":
        return 2 + int(pair)
    raise DataError(f"format must be 'decoder' (GPT-1) or 'encoder' (BERT), got {format!r}")


def check_max_seq_length(max_seq_length: int, format: TaskFormat, start_token: bool = True) -> int:
    """Raise :class:`DataError` naming ``max_seq_length`` unless it fits the special tokens and one token of each
    text; returns the number of special tokens."""
    n_special = num_special_tokens(format, start_token)
    if max_seq_length < n_special + 2:
        raise DataError(
            f"max_seq_length={max_seq_length} is too small: the {format} format uses {n_special} special tokens "
            f"and needs room for at least one token of each text; set max_seq_length >= {n_special + 2}"
        )
    return n_special


def truncate_longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths after removing tokens one at a time from the longer of two texts (from ``b`` on ties) until
    ``len_a + len_b <= budget``. Closed form of that loop."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:  # only the longer one is cut
        return (budget - short, short) if len_a > len_b else (short, budget - short)
    return (budget + 1) // 2, budget // 2  # both cut to (near) equal; a keeps the odd token


@dataclass
class EncodedSequences:
    """Formatted token sequences stored flat: sequence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``.

    Attributes:
        tokens: All token ids, concatenated (int32).
        offsets: (n + 1,) start of each sequence in ``tokens``.
        segment_starts: (n,) first position whose token type id is 1 (the sequence length in the decoder
            format, which has no second segment).
        extract_positions: (n,) position the classifier reads: ``[EXTRACT]`` (decoder) or 0 (``[CLS]``, encoder).
        n_truncated: How many sequences were cut to fit ``max_seq_length``.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    segment_starts: np.ndarray
    extract_positions: np.ndarray
    n_truncated: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def _encode_unique(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """``encode_batch`` on the distinct texts only (SNLI repeats each premise three times)."""
    index: dict[str, int] = {}
    for t in texts:
        index.setdefault(t, len(index))
    encoded = tokenizer.encode_batch(list(index)) if index else []
    return [encoded[index[t]] for t in texts]


def encode_pairs(
    tokenizer: Tokenizer,
    firsts: Sequence[str],
    seconds: Sequence[str] | None,
    format: TaskFormat = "decoder",
    start_token: bool = True,
    max_seq_length: int = 128,
) -> EncodedSequences:
    """Tokenize and format text pairs, or single texts (see the module docstring for the layouts).

    Args:
        tokenizer: Supplies the token ids; the decoder format needs its ``[DELIM]`` and ``[EXTRACT]``.
        firsts: First texts (premise, multiple-choice context, or the one text).
        seconds: Second texts (hypothesis, or choice), same length as ``firsts``; ``None`` for one-text tasks:
            ``[CLS]? text [EXTRACT]`` (decoder) or ``[CLS] text [SEP]`` (encoder).
        format: ``decoder`` (GPT-1) or ``encoder`` (BERT).
        start_token: Decoder format only: begin with ``[CLS]`` as GPT-1's start token.
        max_seq_length: Longest sequence, special tokens included; longer pairs are cut longest-first, a longer
            single text at its end.
    """
    pair = seconds is not None
    if pair and len(firsts) != len(seconds):
        raise ValueError(f"encode_pairs got {len(firsts)} first texts but {len(seconds)} second texts")
    n_special = check_max_seq_length(max_seq_length, format, start_token)
    if format == "decoder":
        tokenizer.require_decoder_tokens()
        head = [tokenizer.cls_id] if start_token else []
        mid, tail = [tokenizer.delim_id], [tokenizer.extract_id]
    else:
        head, mid, tail = [tokenizer.cls_id], [tokenizer.sep_id], [tokenizer.sep_id]
    if not pair:
        mid, n_special = [], n_special - 1
    budget = max_seq_length - n_special
    enc_a = _encode_unique(tokenizer, firsts)
    enc_b = _encode_unique(tokenizer, seconds) if pair else [[] for _ in enc_a]
    n = len(enc_a)
    lengths = np.empty(n, dtype=np.int64)
    segment_starts = np.empty(n, dtype=np.int64)
    pieces: list[list[int]] = []
    n_truncated = 0
    for i, (a, b) in enumerate(zip(enc_a, enc_b, strict=True)):
        la, lb = truncate_longest_first(len(a), len(b), budget) if pair else (min(len(a), budget), 0)
        if la < len(a) or lb < len(b):
            n_truncated += 1
            a, b = a[:la], b[:lb]
        seq = head + a + mid + b + tail
        pieces.append(seq)
        lengths[i] = len(seq)
        # token type 1 from the second text on (encoder pairs); none for a decoder or a single text
        segment_starts[i] = len(head) + la + 1 if format == "encoder" and pair else len(seq)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter((t for seq in pieces for t in seq), dtype=np.int32, count=int(offsets[-1]))
    extract = lengths - 1 if format == "decoder" else np.zeros(n, dtype=np.int64)
    return EncodedSequences(tokens, offsets, segment_starts, extract, n_truncated)


def log_truncation(what: str, encoded: EncodedSequences, max_seq_length: int) -> None:
    """Log how many sequences were cut (WARNING when more than 1%)."""
    n, k = len(encoded), encoded.n_truncated
    if k == 0:
        return
    level = logging.WARNING if k > 0.01 * n else logging.INFO
    log.log(level, "%s: truncated %d of %d sequences to max_seq_length=%d (longest-first)", what, k, n, max_seq_length)


# --------------------------------------------------------------------------------------------------- batching
def pad_batch(seqs: Sequence[np.ndarray], segment_starts: Sequence[int], pad_id: int):
    """Right-pad to the longest sequence -> (input_ids, attention_mask, token_type_ids), each (N, T) long."""
    t = max(len(s) for s in seqs)
    ids = np.full((len(seqs), t), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), t), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    starts = np.asarray(segment_starts, dtype=np.int64)
    types = (np.arange(t)[None, :] >= starts[:, None]).astype(np.int64) * mask
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)


class ClassificationDataset(Dataset):
    """Formatted texts or pairs with their labels, in one or more *views* of each example (GPT-1's similarity
    format: both orderings of a pair); items are collated by :class:`ClassificationCollator`.

    Args:
        views: The formatted sequences per view (from :func:`encode_pairs`), each of the same examples in order.
        labels: (n,) class ids (int) or scores (float: regression).
    """

    def __init__(self, views: Sequence[EncodedSequences], labels: np.ndarray) -> None:
        if not views or any(len(v) != len(labels) for v in views):
            raise ValueError(f"{[len(v) for v in views]} sequences per view but {len(labels)} labels")
        self.views = list(views)
        self.labels = np.asarray(labels)

    @property
    def encoded(self) -> EncodedSequences:
        """The first (or only) view."""
        return self.views[0]

    @property
    def n_truncated(self) -> int:
        """Sequences cut to fit ``max_seq_length`` (what the DataModule's ``stats`` report)."""
        return self.encoded.n_truncated

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = self.labels[i]
        item = {"label": float(label) if self.labels.dtype.kind == "f" else int(label)}
        if len(self.views) == 1:
            e = self.encoded
            return {"input_ids": e.sequence(i), "segment_start": int(e.segment_starts[i]),
                    "extract_position": int(e.extract_positions[i]), **item}  # fmt: skip
        return {
            "input_ids": [v.sequence(i) for v in self.views],
            "segment_start": [int(v.segment_starts[i]) for v in self.views],
            "extract_position": [int(v.extract_positions[i]) for v in self.views],
            **item,
        }

    @property
    def lengths(self) -> np.ndarray:
        """The longest view of each example (what a length-grouped batch pads to)."""
        return np.max([v.lengths for v in self.views], axis=0)


class ClassificationCollator:
    """Pads classification / regression items (from :class:`ClassificationDataset`) into a batch dict::

        input_ids (B, T), attention_mask (B, T) 1/0, token_type_ids (B, T), extract_positions (B,), labels (B,)

    all ``torch.long`` but regression ``labels`` (``float32``); with several views (items whose ``input_ids`` is a
    list) every tensor but ``labels`` gets a view dimension: ``(B, V, T)`` and ``extract_positions`` ``(B, V)``.
    ``T`` is the longest sequence in this batch (dynamic padding).

    Args:
        pad_id: Token id used for padding (the tokenizer's ``[PAD]``).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = [it["label"] for it in items]
        dtype = torch.float32 if isinstance(labels[0], float) else torch.long
        if not isinstance(items[0]["input_ids"], list):
            ids, mask, types = pad_batch([it["input_ids"] for it in items], [it["segment_start"] for it in items],
                                    self.pad_id)  # fmt: skip
            extract = torch.tensor([it["extract_position"] for it in items], dtype=torch.long)
        else:
            b, v = len(items), len(items[0]["input_ids"])
            ids, mask, types = pad_batch([s for it in items for s in it["input_ids"]],
                                    [s for it in items for s in it["segment_start"]], self.pad_id)  # fmt: skip
            ids, mask, types = (x.view(b, v, -1) for x in (ids, mask, types))
            extract = torch.tensor([it["extract_position"] for it in items], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "extract_positions": extract,
                "labels": torch.tensor(labels, dtype=dtype)}  # fmt: skip


#: The sentence-pair collator of NLI (the same as every classification task's).
NLICollator = ClassificationCollator


class MultipleChoiceCollator:
    """Pads multiple-choice items (from :class:`lit_lm.data.finetuning.multiple_choice.MultipleChoiceDataset`)::

        input_ids (B, C, T), attention_mask (B, C, T), token_type_ids (B, C, T), extract_positions (B, C),
        labels (B,)  -- the index of the right choice

    all ``torch.long``; ``T`` is the longest choice sequence in this batch.

    Args:
        pad_id: Token id used for padding (the tokenizer's ``[PAD]``).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        b, c = len(items), len(items[0]["input_ids"])
        seqs = [s for it in items for s in it["input_ids"]]
        starts = [s for it in items for s in it["segment_start"]]
        ids, mask, types = pad_batch(seqs, starts, self.pad_id)
        t = ids.size(1)
        extract = np.stack([np.asarray(it["extract_position"], dtype=np.int64) for it in items])
        return {
            "input_ids": ids.view(b, c, t),
            "attention_mask": mask.view(b, c, t),
            "token_type_ids": types.view(b, c, t),
            "extract_positions": torch.from_numpy(extract),
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


