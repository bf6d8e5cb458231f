"""BERT's dynamic masking: :class:`MLMCollator` pads sentence pairs into a batch and chooses, per draw, the tokens
the masked LM must predict."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lit_lm.config import IGNORE_INDEX
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.errors import DataError

__all__ = ["MLMCollator", "check_replacement_ratios"]


def check_replacement_ratios(mask_token_ratio: float, random_token_ratio: float) -> None:
    """Both shares in [0, 1] and together at most 1 (the rest of the chosen tokens stay unchanged)."""
    if not (0.0 <= mask_token_ratio <= 1.0 and 0.0 <= random_token_ratio <= 1.0):
        raise DataError(
            "mask_token_ratio and random_token_ratio must be in [0, 1], "
            f"got {mask_token_ratio} and {random_token_ratio}"
        )
    if mask_token_ratio + random_token_ratio > 1.0 + 1e-9:
        raise DataError(
            f"mask_token_ratio + random_token_ratio must be at most 1 (the rest stay unchanged), got "
            f"{mask_token_ratio} + {random_token_ratio}"
        )


class MLMCollator:
    """Pads a batch and masks it for masked language modelling, anew on every call (dynamic masking).

    Masking follows google-research BERT: per sequence exactly ``max(1, round(mlm_probability * n))`` of the
    ``n`` maskable tokens (not special, not padding) are chosen — a fixed count per sequence, not HF's Bernoulli
    draw — and of those 80% become ``[MASK]``, 10% a random non-special token, 10% stay unchanged (decided per
    token; ``mask_token_ratio`` and ``random_token_ratio`` set the first two shares, e.g. 1.0/0.0 as in Wettig et
    al. 2022, "Should You Mask 15% in Masked Language Modeling?").
    With ``whole_word_masking`` whole words (a token plus its following ``##`` pieces) are chosen in a
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
        mask_token_ratio: Share of the chosen tokens replaced by ``[MASK]`` (BERT: 0.8).
        random_token_ratio: Share replaced by a random token (BERT: 0.1); the rest stay unchanged.
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
        mask_token_ratio: float = 0.8,
        random_token_ratio: float = 0.1,
    ) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise DataError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        check_replacement_ratios(mask_token_ratio, random_token_ratio)
        self.mask_token_ratio, self.random_token_ratio = mask_token_ratio, random_token_ratio
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

    def _lookup_tensors(self) -> dict[str, torch.Tensor]:
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
        t = self._lookup_tensors()
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
        to_mask = chosen & (u < self.mask_token_ratio)
        to_random = chosen & (u >= self.mask_token_ratio) & (u < self.mask_token_ratio + self.random_token_ratio)
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
        # index_select: indexing a bool tensor with a (B, T) index tensor is far slower on CPU
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
