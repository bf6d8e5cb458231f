"""Pretraining DataModules: causal LM windows (GPT-1) and BERT sentence pairs with dynamic masking (MLM + NSP).

Both DataModules work alone in any Lightning project::

    dm = CausalLMDataModule(files=["books/"], block_size=256)   # tokenizer trained (and cached) here
    model = MyGPT(vocab_size=dm.vocab_size)
    trainer.fit(model, dm)                                       # corpus prepared (and cached) in prepare_data()

With ``files=None`` they use the built-in generated corpus (:mod:`lit_lm.data.builtin_text`).

Randomness: every random choice derives from ``seed`` and the epoch (train) or from ``seed`` alone (validation),
never from global state, so a run is reproducible with any ``num_workers`` and under DDP (Lightning shards the
custom samplers with its ``DistributedSamplerWrapper`` and forwards ``set_epoch`` to them).

Resuming: the DataModules' ``state_dict`` (which Lightning stores in every checkpoint) records the epoch and how many
training batches of it the trainer has consumed; after ``load_state_dict`` the training sampler skips exactly those
examples once, so a run resumed mid-epoch sees the rest of the epoch's examples, none twice and none skipped
(also under DDP, where each rank continues its own shard; with a different number of processes the epoch starts
again, with a warning).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_lm.data.builtin_text import write_builtin_corpus
from lit_lm.data.corpus import PreparedCorpus, cached_tokenizer, prepare_corpus, resolve_files
from lit_lm.data.errors import DataError
from lit_lm.data.tokenizer import Tokenizer

__all__ = [
    "CausalLMDataModule",
    "CausalValDataset",
    "CausalWindowDataset",
    "MLMCollator",
    "MaskedLMDataModule",
    "PairSampler",
    "SentencePairDataset",
    "WindowSampler",
    "build_pair_specs",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_VAL_KEY_BASE = 1 << 62  # keys of validation examples (train keys are epoch << 32 | index)


# ================================================================================================ causal LM
class CausalWindowDataset(Dataset):
    """Training windows of a token array: item ``start`` -> ``input_ids = t[start:start+T]``,
    ``labels = t[start+1:start+T+1]``. Indices come from a :class:`WindowSampler`.

    Args:
        corpus: The prepared corpus.
        split: Which split's tokens.
        block_size: Window length ``T``.
    """

    def __init__(self, corpus: PreparedCorpus, split: str, block_size: int) -> None:
        self.corpus, self.split, self.block_size = corpus, split, block_size

    def __len__(self) -> int:
        """Number of valid window starts."""
        return max(0, self.corpus.num_tokens(self.split) - self.block_size)

    def __getitem__(self, start: int) -> dict[str, torch.Tensor]:
        t = self.corpus.tokens(self.split)
        a = torch.from_numpy(t[start : start + self.block_size + 1].astype(np.int64))
        return {"input_ids": a[:-1], "labels": a[1:]}


class _ResumableSampler:
    """Continues one epoch after the examples a resumed run had already trained on (once)."""

    epoch: int
    _resume: tuple[int, int, bool] | None = None

    def resume_from(self, epoch: int, num_examples: int, rotate: bool = False) -> None:
        """Continue in ``epoch`` after its first ``num_examples`` examples: the next iteration over that epoch
        leaves them out (later iterations, and an iteration over another epoch, do not).

        With ``rotate`` they are moved to the end instead, so the epoch keeps its length: under DDP, Lightning's
        ``DistributedSamplerWrapper`` deals the (fixed-length) list round-robin to the ranks, and after a rotation
        by ``batches * batch_size * world_size`` every rank continues exactly where its own shard stopped (the
        trainer ends the epoch before the moved examples come round).
        """
        self.epoch = epoch
        self._resume = (epoch, num_examples, rotate)

    def _resumed(self, order: np.ndarray) -> np.ndarray:
        """``order`` (this epoch's examples) after a pending :meth:`resume_from`, which is used up."""
        if self._resume is None:
            return order
        epoch, n, rotate = self._resume
        self._resume = None
        if epoch != self.epoch or n <= 0:
            return order
        return np.concatenate([order[n:], order[:n]]) if rotate else order[n:]


class WindowSampler(_ResumableSampler, Sampler[int]):
    """Start offsets of training windows for one epoch, derived from ``(seed, epoch)``.

    Args:
        num_tokens: Length of the token array.
        block_size: Window length ``T`` (a window reads ``T + 1`` tokens).
        mode: ``"random"``: ``num_samples`` uniformly random starts (windows may overlap); ``"sequential"``: the
            non-overlapping windows ``off, off+T, off+2T, ...`` with a random ``off < T`` per epoch, in a shuffled
            order, so an epoch sees (almost) every token once.
        num_samples: Windows per epoch; default (``None``) ``num_tokens // T`` in random mode and all windows in
            sequential mode (where a smaller number takes the first ones of the shuffled order).
        seed: Base seed.
    """

    def __init__(
        self, num_tokens: int, block_size: int, mode: Literal["random", "sequential"] = "random",
        num_samples: int | None = None, seed: int = 0,
    ) -> None:  # fmt: skip
        if num_tokens < block_size + 1:
            raise DataError(f"{num_tokens} tokens are fewer than block_size + 1 = {block_size + 1}")
        if mode not in ("random", "sequential"):
            raise DataError(f"train_mode must be 'random' or 'sequential', got {mode!r}")
        self.num_tokens, self.block_size, self.mode, self.seed = num_tokens, block_size, mode, seed
        self.num_samples = num_samples
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _starts(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        last = self.num_tokens - self.block_size - 1  # largest valid start
        if self.mode == "random":
            n = self.num_samples if self.num_samples is not None else max(1, self.num_tokens // self.block_size)
            return rng.integers(0, last + 1, size=n)
        off = int(rng.integers(0, min(self.block_size, last + 1)))
        starts = np.arange(off, last + 1, self.block_size)
        starts = starts[rng.permutation(len(starts))]
        return starts if self.num_samples is None else starts[: self.num_samples]

    def __iter__(self) -> Iterator[int]:
        return iter(self._resumed(self._starts()).tolist())

    def __len__(self) -> int:
        if self.mode == "random":
            return self.num_samples if self.num_samples is not None else max(1, self.num_tokens // self.block_size)
        return len(self._starts())


class CausalValDataset(Dataset):
    """A fixed pass over the validation tokens that predicts every token exactly once.

    The stream ``[context] + val_tokens`` is cut into non-overlapping windows of ``T + 1``; window ``i`` has
    ``input_ids = s[iT : iT+T]`` and ``labels = s[iT+1 : iT+T+1]``, so label positions cover ``val_tokens``
    once. ``context`` (the token before the first validation token) is the last train token: for
    ``split="tail"`` the true predecessor; for ``split="document"`` a document boundary as training sees them.
    The last window is padded at the end (``input_ids`` with ``pad_id``, ``labels`` with -100).
    """

    def __init__(self, corpus: PreparedCorpus, block_size: int, pad_id: int, split: str = "val") -> None:
        self.corpus, self.block_size, self.pad_id, self.split = corpus, block_size, pad_id, split
        train = corpus.tokens("train")
        self.context = int(train[-1]) if train.size else pad_id

    def __len__(self) -> int:
        return -(-self.corpus.num_tokens(self.split) // self.block_size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        v = self.corpus.tokens(self.split)
        T, s = self.block_size, i * self.block_size
        labels = v[s : s + T].astype(np.int64)
        n = labels.size
        inputs = np.concatenate([[self.context], v[: n - 1]]) if s == 0 else v[s - 1 : s - 1 + n]
        x = np.full(T, self.pad_id, dtype=np.int64)
        y = np.full(T, IGNORE_INDEX, dtype=np.int64)
        x[:n], y[:n] = inputs, labels
        return {"input_ids": torch.from_numpy(x), "labels": torch.from_numpy(y)}


# ================================================================================================ BERT pairs
def _truncate(a0: int, a1: int, b0: int, b1: int, max_tokens: int, rng: random.Random) -> tuple[int, int, int, int]:
    """google-research ``truncate_seq_pair`` on token ranges: trim the longer segment (B on a tie) by one token
    at a time from its front or back (each with probability 1/2) until both fit ``max_tokens``. Computed in
    closed form: the per-segment trim counts are deterministic, the front share of each is Binomial(n, 1/2)."""
    la, lb = a1 - a0, b1 - b0
    excess = la + lb - max_tokens
    if excess <= 0:
        return a0, a1, b0, b1
    ta = tb = 0
    if la > lb:
        ta = min(excess, la - lb)
    elif lb > la:
        tb = min(excess, lb - la)
    rest = excess - ta - tb
    tb += (rest + 1) // 2
    ta += rest // 2
    fa = bin(rng.getrandbits(ta)).count("1") if ta else 0
    fb = bin(rng.getrandbits(tb)).count("1") if tb else 0
    return a0 + fa, a1 - (ta - fa), b0 + fb, b1 - (tb - fb)


def build_pair_specs(
    sent_offsets: np.ndarray,
    doc_sent_offsets: np.ndarray,
    max_seq_length: int,
    short_seq_prob: float,
    nsp: bool,
    rng: random.Random,
) -> np.ndarray:
    """BERT pretraining instances as token ranges, following google-research ``create_pretraining_data.py``.

    For each document: a target length (``max_seq_length - 3``, or with probability ``short_seq_prob`` a random
    length in ``[2, max]``); sentences are gathered until the target is reached or the document ends; the chunk
    is split at a random sentence boundary into A and B. With probability 1/2 (always, if the chunk has one
    sentence) B is replaced by consecutive sentences from a random start in a random *other* document and the
    unused sentences of the chunk are put back; then the pair is truncated (:func:`_truncate`).
    With ``nsp=False`` the whole chunk is a single segment A (target ``max_seq_length - 2``), truncated from a
    random end.

    Returns:
        ``(n, 5)`` int64 array of ``a_start, a_end, b_start, b_end, nsp_label`` (token offsets into the split's
        token array; ``nsp_label``: 0 = B is the continuation, 1 = random B, -1 = no B).
    """
    so = sent_offsets.tolist()
    ds = doc_sent_offsets.tolist()
    n_docs = len(ds) - 1
    if nsp and n_docs < 2:
        raise DataError(f"next sentence prediction needs at least 2 documents, the split has {n_docs}")
    max_tokens = max_seq_length - 3 if nsp else max_seq_length - 2
    out: list[tuple[int, int, int, int, int]] = []
    for d in range(n_docs):
        s_lo, s_hi = ds[d], ds[d + 1]
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk_start = i = s_lo
        cur = 0
        while i < s_hi:
            cur += so[i + 1] - so[i]
            if i == s_hi - 1 or cur >= target:
                n_seg = i - chunk_start + 1
                if not nsp:
                    a0, a1, _, _ = _truncate(so[chunk_start], so[i + 1], 0, 0, max_tokens, rng)
                    out.append((a0, a1, 0, 0, -1))
                else:
                    a_end = chunk_start + (rng.randint(1, n_seg - 1) if n_seg >= 2 else 1)
                    a0, a1 = so[chunk_start], so[a_end]
                    if n_seg == 1 or rng.random() < 0.5:
                        label = 1
                        target_b = target - (a1 - a0)
                        rd = rng.randrange(n_docs - 1)
                        rd += rd >= d
                        j = rng.randint(ds[rd], ds[rd + 1] - 1)
                        b0 = so[j]
                        while True:
                            j += 1
                            if so[j] - b0 >= target_b or j == ds[rd + 1]:
                                break
                        b1 = so[j]
                        i = a_end - 1  # the unused sentences go back
                    else:
                        label = 0
                        b0, b1 = a1, so[i + 1]
                    a0, a1, b0, b1 = _truncate(a0, a1, b0, b1, max_tokens, rng)
                    out.append((a0, a1, b0, b1, label))
                chunk_start = i + 1
                cur = 0
            i += 1
    return np.array(out, dtype=np.int64).reshape(-1, 5)


class SentencePairDataset(Dataset):
    """``[CLS] A [SEP] B [SEP]`` examples (or ``[CLS] A [SEP]``) from token ranges of a prepared corpus.

    An item is either an index into ``specs`` (validation: a fixed array) or a tuple
    ``(key, a_start, a_end, b_start, b_end, nsp_label)`` sent by a :class:`PairSampler`. Items are dicts with
    ``input_ids``, ``token_type_ids`` (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``), ``next_sentence_label``
    (absent without NSP) and ``key`` (seeds the collator's masking).
    """

    def __init__(
        self, corpus: PreparedCorpus, split: str, cls_id: int, sep_id: int, specs: np.ndarray | None = None
    ) -> None:
        self.corpus, self.split, self.cls_id, self.sep_id, self.specs = corpus, split, cls_id, sep_id, specs

    def __len__(self) -> int:
        if self.specs is None:
            raise TypeError("this SentencePairDataset takes its items from a PairSampler")
        return len(self.specs)

    def __getitem__(self, item: int | Sequence[int]) -> dict[str, Any]:
        if isinstance(item, (int, np.integer)):
            assert self.specs is not None
            key = _VAL_KEY_BASE + int(item)
            a0, a1, b0, b1, label = (int(x) for x in self.specs[item])
        else:
            key, a0, a1, b0, b1, label = item
        t = self.corpus.tokens(self.split)
        la, lb = a1 - a0, b1 - b0
        n = la + 2 + (lb + 1 if label >= 0 else 0)
        ids = np.empty(n, dtype=np.int64)
        ids[0] = self.cls_id
        ids[1 : la + 1] = t[a0:a1]
        ids[la + 1] = self.sep_id
        types = np.zeros(n, dtype=np.int64)
        if label >= 0:
            ids[la + 2 : la + 2 + lb] = t[b0:b1]
            ids[-1] = self.sep_id
            types[la + 2 :] = 1
        ex: dict[str, Any] = {"input_ids": ids, "token_type_ids": types, "key": key}
        if label >= 0:
            ex["next_sentence_label"] = label
        return ex


class PairSampler(_ResumableSampler, Sampler[tuple]):
    """Builds the training instances of an epoch (:func:`build_pair_specs` with a ``(seed, epoch)`` generator)
    and yields them in a shuffled order as ``(key, a_start, a_end, b_start, b_end, nsp_label)`` tuples.

    Args:
        corpus: The prepared corpus.
        split: Which split.
        max_seq_length: Longest example, special tokens included.
        short_seq_prob: Probability of a shorter target length for a document.
        nsp: Make sentence pairs (else single segments).
        seed: Base seed.
    """

    def __init__(
        self, corpus: PreparedCorpus, split: str, max_seq_length: int, short_seq_prob: float, nsp: bool, seed: int
    ) -> None:
        self.sent_offsets = np.asarray(corpus.sent_offsets(split))
        self.doc_sent_offsets = corpus.doc_sent_offsets(split)
        self.max_seq_length, self.short_seq_prob, self.nsp, self.seed = max_seq_length, short_seq_prob, nsp, seed
        self.epoch = 0
        self._specs: np.ndarray | None = None
        self._specs_epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def specs(self) -> np.ndarray:
        """This epoch's instances, ``(n, 5)``."""
        if self._specs is None or self._specs_epoch != self.epoch:
            rng = random.Random(f"lit_lm-pairs-{self.seed}-train-{self.epoch}")
            self._specs = build_pair_specs(self.sent_offsets, self.doc_sent_offsets, self.max_seq_length,
                                           self.short_seq_prob, self.nsp, rng)  # fmt: skip
            self._specs_epoch = self.epoch
        return self._specs

    def __len__(self) -> int:
        return len(self.specs())

    def __iter__(self) -> Iterator[tuple]:
        specs = self.specs()
        order = self._resumed(np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(specs)))
        base = (self.epoch & 0x3FFFFFFF) << 32
        for i in order.tolist():
            a0, a1, b0, b1, label = specs[i].tolist()
            yield (base | i, a0, a1, b0, b1, label)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_specs"], state["_specs_epoch"] = None, -1
        return state


class MLMCollator:
    """Pads a batch and masks it for masked language modelling, anew on every call (dynamic masking).

    Masking follows google-research BERT: per sequence exactly ``max(1, round(mlm_probability * n))`` of the
    ``n`` maskable tokens (not special, not padding) are chosen — a fixed count per sequence, not HF's Bernoulli
    draw — and of those 80% become ``[MASK]``, 10% a random non-special token, 10% stay unchanged (decided per
    token). With ``whole_word_masking`` whole words (a token plus its following ``##`` pieces) are chosen in a
    random order while the running count stays within the budget (at least one word).

    Reproducibility: when every example has an integer ``"key"`` (the DataModules' do), the batch's generator is
    seeded from ``(seed, keys)``, so masks depend on the examples only, not on workers or the call order.
    Otherwise a generator seeded from ``seed`` (and the DataLoader worker id) advances call by call.

    Input examples: mappings with ``input_ids`` and optionally ``token_type_ids``, ``next_sentence_label``,
    ``key``, or plain id sequences. Output: ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 = token,
    0 = padding), ``labels`` (original id at chosen positions, -100 elsewhere), all ``(B, T)`` long, and
    ``next_sentence_label`` ``(B,)`` long when the examples have it (0 = B is the continuation, 1 = random).

    Args:
        tokenizer: Supplies the ids below (or pass them directly).
        mlm_probability: Share of maskable tokens to predict, in (0, 1).
        whole_word_masking: Mask whole words (needs the tokenizer's ``##`` continuation pieces).
        pad_to_multiple_of: Pad the length up to a multiple of this (e.g. 8 for tensor cores).
        seed: Seed of the masking.
        pad_id: Padding id.
        mask_id: ``[MASK]`` id.
        vocab_size: Vocabulary size (random replacements are drawn below it).
        special_ids: Ids never masked nor drawn as replacements (``[PAD] [UNK] [CLS] [SEP] [MASK] ...``).
        continuation_mask: Boolean array over the vocabulary, True for ``##`` pieces (whole-word masking).
    """

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        mlm_probability: float = 0.15,
        whole_word_masking: bool = False,
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
        *,
        pad_id: int | None = None,
        mask_id: int | None = None,
        vocab_size: int | None = None,
        special_ids: Sequence[int] | None = None,
        continuation_mask: np.ndarray | None = None,
    ) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise DataError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise DataError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        if tokenizer is not None:
            pad_id = tokenizer.pad_id if pad_id is None else pad_id
            mask_id = tokenizer.mask_id if mask_id is None else mask_id
            vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
            special_ids = tokenizer.special_ids if special_ids is None else special_ids
            if whole_word_masking and continuation_mask is None:
                continuation_mask = tokenizer.continuation_mask()
        if pad_id is None or mask_id is None or vocab_size is None:
            raise DataError("MLMCollator needs a tokenizer or pad_id, mask_id and vocab_size")
        if whole_word_masking and continuation_mask is None:
            raise DataError("whole_word_masking needs a tokenizer or a continuation_mask")
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        self.pad_to_multiple_of, self.seed = pad_to_multiple_of, seed
        self.pad_id, self.mask_id, self.vocab_size = int(pad_id), int(mask_id), int(vocab_size)
        specials = sorted({int(i) for i in (special_ids or [])} | {self.pad_id, self.mask_id})
        self.special_ids = specials
        self.replacement_ids = np.setdiff1d(np.arange(self.vocab_size), specials)
        if self.replacement_ids.size == 0:
            raise DataError("the vocabulary has no non-special token to draw random replacements from")
        self.continuation_mask = None if continuation_mask is None else np.asarray(continuation_mask, dtype=bool)
        self._gen: torch.Generator | None = None
        self._tensors: dict[str, torch.Tensor] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_gen"], state["_tensors"] = None, None
        return state

    def _t(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            t = {"special": torch.tensor(self.special_ids), "repl": torch.from_numpy(self.replacement_ids)}
            if self.continuation_mask is not None:
                t["cont"] = torch.from_numpy(self.continuation_mask)
            self._tensors = t
        return self._tensors

    def _generator(self, keys: list[int] | None) -> torch.Generator:
        if keys is not None:
            h = hashlib.blake2b(repr((self.seed, keys)).encode(), digest_size=8).digest()
            return torch.Generator().manual_seed(int.from_bytes(h, "little") & ((1 << 63) - 1))
        if self._gen is None:
            info = torch.utils.data.get_worker_info()
            self._gen = torch.Generator().manual_seed(self.seed * 1000003 + (info.id if info else 0))
        return self._gen

    def __call__(self, examples: Sequence[Mapping[str, Any] | Sequence[int]]) -> dict[str, torch.Tensor]:
        exs = [e if isinstance(e, Mapping) else {"input_ids": e} for e in examples]
        seqs = [np.asarray(e["input_ids"], dtype=np.int64) for e in exs]
        B = len(seqs)
        T = max((len(s) for s in seqs), default=0)
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        attn = np.zeros((B, T), dtype=np.int64)
        for r, (e, s) in enumerate(zip(exs, seqs, strict=True)):
            ids[r, : len(s)] = s
            attn[r, : len(s)] = 1
            if e.get("token_type_ids") is not None:
                types[r, : len(s)] = np.asarray(e["token_type_ids"], dtype=np.int64)
        keys = [e.get("key") for e in exs]
        gen = self._generator([int(k) for k in keys] if B and all(k is not None for k in keys) else None)
        input_ids = torch.from_numpy(ids)
        attention_mask = torch.from_numpy(attn)
        masked, labels = self.mask(input_ids, attention_mask, gen)
        batch = {
            "input_ids": masked,
            "token_type_ids": torch.from_numpy(types),
            "attention_mask": attention_mask,
            "labels": labels,
        }
        nsp = [e.get("next_sentence_label") for e in exs]
        if B and all(x is not None for x in nsp):
            batch["next_sentence_label"] = torch.tensor(nsp, dtype=torch.long)
        return batch

    def mask(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a padded ``(B, T)`` batch. Returns ``(masked input_ids, labels)``; the input is not modified."""
        t = self._t()
        g = generator if generator is not None else self._generator(None)
        B, T = input_ids.shape
        if B * T == 0:
            return input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
        cand = ~torch.isin(input_ids, t["special"])
        if attention_mask is not None:
            cand &= attention_mask.bool()
        n = cand.sum(1)
        k = torch.where(n > 0, torch.floor(n.double() * self.mlm_probability + 0.5).long().clamp(min=1), 0)
        if not self.whole_word_masking:
            keys = torch.rand(B, T, generator=g)
            keys[~cand] = 2.0
            ranks = keys.argsort(1).argsort(1)
            chosen = ranks < k[:, None]
        else:
            chosen = self._choose_words(input_ids, cand, k, g, t["cont"])
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        u = torch.rand(B, T, generator=g)
        to_mask = chosen & (u < 0.8)
        to_random = chosen & (u >= 0.8) & (u < 0.9)
        out = input_ids.clone()
        out[to_mask] = self.mask_id
        n_rand = int(to_random.sum())
        if n_rand:
            out[to_random] = t["repl"][torch.randint(len(t["repl"]), (n_rand,), generator=g)]
        return out, labels

    @staticmethod
    def _choose_words(
        ids: torch.Tensor, cand: torch.Tensor, k: torch.Tensor, g: torch.Generator, cont_vocab: torch.Tensor
    ) -> torch.Tensor:
        B, T = ids.shape
        # index_select: indexing a bool tensor with a (B, T) index tensor is ~400x slower on CPU
        in_vocab = ids.clamp(0, len(cont_vocab) - 1).flatten()
        cont = cont_vocab.index_select(0, in_vocab).view(B, T) & (ids < len(cont_vocab)) & cand
        prev_cand = torch.zeros_like(cand)
        prev_cand[:, 1:] = cand[:, :-1]
        start = cand & ~(cont & prev_cand)  # a word starts at a maskable token that does not continue one
        word = start.long().cumsum(1) - 1  # word index of each position (valid where cand)
        word = torch.where(cand, word, torch.zeros_like(word))
        n_words = start.sum(1)
        wlen = torch.zeros(B, T, dtype=torch.long).scatter_add_(1, word, cand.long())
        wkey = torch.rand(B, T, generator=g)
        wkey[torch.arange(T)[None, :] >= n_words[:, None]] = 2.0  # not a word
        order = wkey.argsort(1)
        csum = wlen.gather(1, order).cumsum(1)
        sel_sorted = (csum <= k[:, None]) & (torch.arange(T)[None, :] < n_words[:, None])
        sel_sorted[:, 0] |= (k > 0) & (n_words > 0)
        sel = torch.zeros(B, T, dtype=torch.bool).scatter_(1, order, sel_sorted)
        return cand & sel.gather(1, word)


# ================================================================================================ DataModules
def _worker_ignores_interrupts(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops training cleanly with a
    checkpoint (a Ctrl-C reaches every process of the terminal's group; a dead worker would end the run with a
    ``DataLoader worker exited unexpectedly`` error instead). Workers still exit when the main process does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _PretrainingDataModule(L.LightningDataModule):
    """Shared part: files, tokenizer, cached corpus preparation."""

    def __init__(
        self,
        files: Sequence[str | Path] | None,
        tokenizer: str | Path | None,
        vocab_size: int,
        lowercase: bool,
        batch_size: int,
        split: str,
        val_fraction: float,
        cache_dir: str | Path,
        num_workers: int,
        seed: int,
        text_field: str,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise DataError(f"num_workers must be >= 0, got {num_workers}")
        if split not in ("document", "tail"):
            raise DataError(f"split must be 'document' or 'tail', got {split!r}")
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.batch_size, self.split, self.val_fraction = batch_size, split, val_fraction
        self.cache_dir = Path(cache_dir).expanduser()
        self.num_workers, self.seed, self.text_field = num_workers, seed, text_field
        self.files: list[Path] = (
            resolve_files(files) if files else [write_builtin_corpus(self.cache_dir / "builtin")]
        )
        self.builtin = not files
        if tokenizer is not None:
            #: The tokenizer (loaded or trained in ``__init__``).
            self.tokenizer = Tokenizer.from_file(tokenizer, lowercase=lowercase)
        else:
            self.tokenizer = cached_tokenizer(
                self.files, self.cache_dir, vocab_size=vocab_size, lowercase=lowercase, text_field=text_field,
                split=split, val_fraction=val_fraction, seed=seed,
            )  # fmt: skip
        #: Size of the tokenizer's vocabulary (the model's embedding rows).
        self.vocab_size: int = self.tokenizer.vocab_size
        #: Id of ``[PAD]``.
        self.pad_token_id: int = self.tokenizer.pad_id
        self.corpus: PreparedCorpus | None = None
        self._resume_state: dict[str, Any] | None = None

    def _prepare(self) -> PreparedCorpus:
        return prepare_corpus(
            self.files, self.tokenizer, self.cache_dir / "corpus", split=self.split, val_fraction=self.val_fraction,
            seed=self.seed, text_field=self.text_field,
        )  # fmt: skip

    def prepare_data(self) -> None:
        """Read, split and tokenize the corpus into the cache (reused when unchanged)."""
        self._prepare()

    def _corpus(self) -> PreparedCorpus:
        if self.corpus is None:
            self.corpus = self._prepare()
        return self.corpus

    def _loader(self, dataset: Dataset, **kw: Any) -> DataLoader:
        if self.num_workers > 0:
            # workers only read memmaps; keep the Rust tokenizer's fork warning away
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            kw["worker_init_fn"] = _worker_ignores_interrupts
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, **kw,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data, for the checkpoint: the epoch and how many of its training batches
        the trainer has consumed (batches prefetched by the DataLoader or its workers are not counted)."""
        trainer = self.trainer
        sampler: _ResumableSampler | None = getattr(self, "train_sampler", None)
        if trainer is None or sampler is None:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        epoch, batches = int(epochs.processed), 0
        if epochs.started > epochs.processed:  # inside an epoch (between epochs the next one starts afresh)
            batches = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
            if batches >= trainer.num_training_batches:  # its last batch is done: the next epoch is next
                epoch, batches = epoch + 1, 0
        return {
            "epoch": epoch,
            "batches": batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": int(trainer.world_size),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the data where the checkpoint's training stopped: the next training epoch skips the examples of
        the batches already consumed (applied when the training DataLoader is next created)."""
        if state_dict:
            self._resume_state = dict(state_dict)

    def _apply_resume(self, sampler: _ResumableSampler) -> None:
        state = self._resume_state
        if state is None:
            return
        self._resume_state = None
        epoch, batches = int(state["epoch"]), int(state["batches"])
        world = int(self.trainer.world_size) if self.trainer is not None else 1
        saved_world = int(state.get("world_size", 1))
        if batches and saved_world != world:
            log.warning(
                "the checkpoint stopped in the middle of epoch %d with %d processes, this run has %d: that epoch's "
                "data starts again from its first example", epoch, saved_world, world,
            )  # fmt: skip
            sampler.set_epoch(epoch)
            return
        saved_bs, saved_seed = int(state.get("batch_size", self.batch_size)), state.get("seed", self.seed)
        if saved_bs != self.batch_size or saved_seed != self.seed:
            log.warning(
                "the checkpoint was trained with batch_size=%d, seed=%s; this run has batch_size=%d, seed=%s: the "
                "rest of epoch %d is not the exact continuation", saved_bs, saved_seed, self.batch_size, self.seed,
                epoch,
            )  # fmt: skip
        consumed = batches * saved_bs * world  # all ranks together; rank r took every world-th example
        sampler.resume_from(epoch, consumed, rotate=world > 1)
        if batches:
            log.info("resuming epoch %d after its first %d batches (%d examples)", epoch, batches, consumed)
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this DataModule does it itself.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")

    @property
    def num_train_tokens(self) -> int:
        return self._corpus().num_tokens("train")

    @property
    def num_val_tokens(self) -> int:
        """Validation tokens (each predicted once by the causal LM's validation pass)."""
        return self._corpus().num_tokens("val")

    @property
    def val_num_chars(self) -> int:
        """Characters of the validation text, for bits per character = NLL nats / (val_num_chars * ln 2)."""
        return self._corpus().num_chars("val")

    @property
    def val_num_bytes(self) -> int:
        """UTF-8 bytes of the validation text, for bits per byte."""
        return self._corpus().num_bytes("val")


class CausalLMDataModule(_PretrainingDataModule):
    """Contiguous token windows for causal (GPT-style) language modelling.

    Batches: ``{"input_ids": (B, T) long, "labels": (B, T) long}`` with ``labels[:, i] = next token after
    input_ids[:, i]``. Validation is a fixed pass of non-overlapping windows in which every validation token is a
    label exactly once (the last window padded: ``input_ids`` with ``[PAD]``, ``labels`` with -100, at the end,
    so no attention mask is needed). Bits per character = sum of the validation NLL (nats) /
    (``val_num_chars`` * ln 2). Documents follow each other in the token stream without a separator (GPT-1 style).

    Args:
        files: Text/JSONL files or directories; ``None`` = the built-in generated corpus.
        tokenizer: A ``tokenizer.json`` / BERT ``vocab.txt``; ``None`` = train a WordPiece tokenizer of
            ``vocab_size`` on the train split (cached in ``cache_dir``).
        vocab_size: Vocabulary size when training a tokenizer.
        lowercase: Lowercase text (when training a tokenizer, or loading a ``vocab.txt``).
        block_size: Context length ``T``.
        batch_size: Windows per batch.
        split: ``"document"`` (validation = whole documents) or ``"tail"`` (the last ``val_fraction`` of the
            characters, as nanoGPT splits tiny shakespeare).
        val_fraction: Share of documents / characters for validation.
        train_mode: ``"random"``: random window starts; ``"sequential"``: each epoch a shuffled pass over
            non-overlapping windows (random phase per epoch).
        train_samples_per_epoch: Windows per training epoch (default: ``train_tokens // block_size``, or all
            windows in sequential mode).
        cache_dir: Where tokenizers and prepared corpora are cached.
        num_workers: DataLoader worker processes.
        seed: Seed of the split, the tokenizer's training data and the window sampling.
        text_field: JSONL field holding the text.
    """

    def __init__(
        self,
        files: list[str | Path] | None = None,
        tokenizer: str | Path | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        block_size: int = 128,
        batch_size: int = 32,
        split: Literal["document", "tail"] = "document",
        val_fraction: float = 0.05,
        train_mode: Literal["random", "sequential"] = "random",
        train_samples_per_epoch: int | None = None,
        cache_dir: str | Path = ".cache/lit_lm",
        num_workers: int = 0,
        seed: int = 42,
        text_field: str = "text",
    ) -> None:
        if block_size < 1:
            raise DataError(f"block_size must be >= 1, got {block_size}")
        if train_mode not in ("random", "sequential"):
            raise DataError(f"train_mode must be 'random' or 'sequential', got {train_mode!r}")
        if train_samples_per_epoch is not None and train_samples_per_epoch < 1:
            raise DataError(f"train_samples_per_epoch must be >= 1, got {train_samples_per_epoch}")
        super().__init__(files, tokenizer, vocab_size, lowercase, batch_size, split, val_fraction, cache_dir,
                         num_workers, seed, text_field)  # fmt: skip
        self.block_size, self.train_mode, self.train_samples_per_epoch = block_size, train_mode, train_samples_per_epoch
        self.train_dataset: CausalWindowDataset | None = None
        self.val_dataset: CausalValDataset | None = None
        self.train_sampler: WindowSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the prepared corpus (preparing it if ``prepare_data`` did not run) and build the datasets."""
        pc = self._corpus()
        n_train = pc.num_tokens("train")
        if n_train < self.block_size + 1:
            raise DataError(
                f"the train split has {n_train} tokens ({pc.num_docs('train')} documents), fewer than "
                f"block_size + 1 = {self.block_size + 1}; lower block_size or add text"
            )
        self.train_dataset = CausalWindowDataset(pc, "train", self.block_size)
        self.train_sampler = WindowSampler(n_train, self.block_size, self.train_mode, self.train_samples_per_epoch,
                                           self.seed)  # fmt: skip
        self.val_dataset = CausalValDataset(pc, self.block_size, self.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_sampler is not None
        self._apply_resume(self.train_sampler)
        return self._loader(self.train_dataset, sampler=self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        return self._loader(self.val_dataset, shuffle=False)


class MaskedLMDataModule(_PretrainingDataModule):
    """BERT pretraining data: sentence pairs (google-research ``create_pretraining_data.py``) with dynamic
    masking (:class:`MLMCollator`).

    Each training epoch builds new pair instances from every train document (seeded by ``seed`` and the epoch,
    in place of a ``dupe_factor``) and masks anew at every batch; validation instances and masks are fixed.
    Batches: ``input_ids``, ``token_type_ids``, ``attention_mask`` (1/0), ``labels`` (-100 where not predicted),
    all ``(B, T)`` long with ``T <= max_seq_length`` (dynamic padding), and ``next_sentence_label`` ``(B,)`` long
    (0 = B is the continuation, 1 = random) when ``nsp``. With ``nsp=False`` examples are single segments
    ``[CLS] A [SEP]`` of consecutive sentences and the batch has no ``next_sentence_label``.

    Args:
        files: Text/JSONL files or directories; ``None`` = the built-in generated corpus.
        tokenizer: A ``tokenizer.json`` / BERT ``vocab.txt``; ``None`` = train a WordPiece tokenizer of
            ``vocab_size`` on the train split (cached in ``cache_dir``).
        vocab_size: Vocabulary size when training a tokenizer.
        lowercase: Lowercase text (when training a tokenizer, or loading a ``vocab.txt``).
        max_seq_length: Longest example, ``[CLS]``/``[SEP]`` included (at least 8).
        short_seq_prob: Probability that a document's target length is a random shorter one.
        nsp: Sentence pairs with next sentence prediction labels; else single segments.
        mlm_probability: Share of maskable tokens to predict, in (0, 1).
        whole_word_masking: Mask whole words rather than single WordPiece tokens.
        pad_to_multiple_of: Pad batch lengths up to a multiple of this.
        batch_size: Examples per batch.
        val_fraction: Share of documents for validation.
        cache_dir: Where tokenizers and prepared corpora are cached.
        num_workers: DataLoader worker processes.
        seed: Seed of the split, the tokenizer's training data, the pairs and the masks.
        text_field: JSONL field holding the text.
    """

    def __init__(
        self,
        files: list[str | Path] | None = None,
        tokenizer: str | Path | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        nsp: bool = True,
        mlm_probability: float = 0.15,
        whole_word_masking: bool = False,
        pad_to_multiple_of: int | None = None,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        cache_dir: str | Path = ".cache/lit_lm",
        num_workers: int = 0,
        seed: int = 42,
        text_field: str = "text",
    ) -> None:
        if max_seq_length < 8:
            raise DataError(f"max_seq_length must be >= 8, got {max_seq_length}")
        if not 0.0 < mlm_probability < 1.0:
            raise DataError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise DataError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        super().__init__(files, tokenizer, vocab_size, lowercase, batch_size, "document", val_fraction, cache_dir,
                         num_workers, seed, text_field)  # fmt: skip
        self.max_seq_length, self.short_seq_prob, self.nsp = max_seq_length, short_seq_prob, nsp
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        self.pad_to_multiple_of = pad_to_multiple_of
        # validate the collator settings now (cheap), build the real ones in setup
        self.collator = MLMCollator(self.tokenizer, mlm_probability, whole_word_masking, pad_to_multiple_of, seed)
        self.train_dataset: SentencePairDataset | None = None
        self.val_dataset: SentencePairDataset | None = None
        self.train_sampler: PairSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the prepared corpus (preparing it if ``prepare_data`` did not run) and build the datasets."""
        pc = self._corpus()
        for split in ("train", "val"):
            if self.nsp and pc.num_docs(split) < 2:
                raise DataError(
                    f"next sentence prediction needs at least 2 documents in the {split} split, it has "
                    f"{pc.num_docs(split)} ({pc.num_tokens(split)} tokens); raise val_fraction, add text, "
                    "or set nsp=False"
                )
        tk = self.tokenizer
        self.train_sampler = PairSampler(pc, "train", self.max_seq_length, self.short_seq_prob, self.nsp, self.seed)
        self.train_dataset = SentencePairDataset(pc, "train", tk.cls_id, tk.sep_id)
        val_rng = random.Random(f"lit_lm-pairs-{self.seed}-val")
        val_specs = build_pair_specs(np.asarray(pc.sent_offsets("val")), pc.doc_sent_offsets("val"),
                                     self.max_seq_length, self.short_seq_prob, self.nsp, val_rng)  # fmt: skip
        if len(val_specs) == 0:
            raise DataError("the validation split gave no examples; raise val_fraction or add text")
        self.val_dataset = SentencePairDataset(pc, "val", tk.cls_id, tk.sep_id, specs=val_specs)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_sampler is not None
        self._apply_resume(self.train_sampler)
        return self._loader(self.train_dataset, sampler=self.train_sampler, collate_fn=self.collator)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        return self._loader(self.val_dataset, shuffle=False, collate_fn=self.collator)
