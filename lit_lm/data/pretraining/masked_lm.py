"""Masked LM + next sentence prediction data (BERT): sentence-pair specs (B follows A, or B is a random sentence
from another document), the dynamic-masking collator and :class:`MaskedLMDataModule`.

Randomness: every random choice derives from ``seed`` and the epoch (train) or from ``seed`` alone (validation),
never from global state, so a run is reproducible with any ``num_workers`` and under DDP (the training samplers
shard themselves over the ranks: :class:`lit_lm.data.core.samplers.ShardedSampler`). Resuming mid-epoch
(exactly, also under DDP): :mod:`lit_lm.data.core.resume`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from lit_lm.data.core.samplers import ShardedSampler
from lit_lm.data.core.tokenizer import TokenizerKind
from lit_lm.data.pretraining.base import PretrainingDataModule
from lit_lm.data.pretraining.corpus import PreparedCorpus
from lit_lm.data.pretraining.masking import MLMCollator, check_replacement_ratios
from lit_lm.errors import DataError

__all__ = ["MaskedLMDataModule", "PairSampler", "SentencePairDataset", "build_pair_specs"]

_VAL_KEY_BASE = 1 << 62  # keys of validation examples (train keys are epoch << 32 | index)


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
    sent_start = sent_offsets.tolist()
    doc_first_sent = doc_sent_offsets.tolist()
    n_docs = len(doc_first_sent) - 1
    if nsp and n_docs < 2:
        raise DataError(f"next sentence prediction needs at least 2 documents, the split has {n_docs}")
    max_tokens = max_seq_length - 3 if nsp else max_seq_length - 2
    out: list[tuple[int, int, int, int, int]] = []
    for d in range(n_docs):
        s_lo, s_hi = doc_first_sent[d], doc_first_sent[d + 1]
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk_start = i = s_lo
        cur = 0
        while i < s_hi:
            cur += sent_start[i + 1] - sent_start[i]
            if i == s_hi - 1 or cur >= target:
                n_seg = i - chunk_start + 1
                if not nsp:
                    a0, a1, _, _ = _truncate(sent_start[chunk_start], sent_start[i + 1], 0, 0, max_tokens, rng)
                    out.append((a0, a1, 0, 0, -1))
                else:
                    a_end = chunk_start + (rng.randint(1, n_seg - 1) if n_seg >= 2 else 1)
                    a0, a1 = sent_start[chunk_start], sent_start[a_end]
                    if n_seg == 1 or rng.random() < 0.5:
                        label = 1
                        target_b = target - (a1 - a0)
                        other_doc = rng.randrange(n_docs - 1)
                        other_doc += other_doc >= d
                        j = rng.randint(doc_first_sent[other_doc], doc_first_sent[other_doc + 1] - 1)
                        b0 = sent_start[j]
                        while True:
                            j += 1
                            if sent_start[j] - b0 >= target_b or j == doc_first_sent[other_doc + 1]:
                                break
                        b1 = sent_start[j]
                        i = a_end - 1  # the unused sentences go back
                    else:
                        label = 0
                        b0, b1 = a1, sent_start[i + 1]
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


class PairSampler(ShardedSampler):
    """Builds the training instances of an epoch (:func:`build_pair_specs` with a ``(seed, epoch)`` generator)
    and yields them in a shuffled order as ``(key, a_start, a_end, b_start, b_end, nsp_label)`` tuples; under DDP
    each rank takes its own share (:class:`~lit_lm.data.core.samplers.ShardedSampler`).

    Args:
        corpus: The prepared corpus.
        split: Which split.
        max_seq_length: Longest example, special tokens included.
        short_seq_prob: Probability of a shorter target length for a document.
        nsp: Make sentence pairs (else single segments).
        seed: Base seed.
        num_replicas: World size; None: from ``torch.distributed``.
        rank: This process's rank; None: from ``torch.distributed``.
    """

    def __init__(
        self, corpus: PreparedCorpus, split: str, max_seq_length: int, short_seq_prob: float, nsp: bool, seed: int,
        num_replicas: int | None = None, rank: int | None = None,
    ) -> None:  # fmt: skip
        self.sent_offsets = np.asarray(corpus.sent_offsets(split))
        self.doc_sent_offsets = corpus.doc_sent_offsets(split)
        super().__init__(0, seed, num_replicas, rank)
        self.max_seq_length, self.short_seq_prob, self.nsp = max_seq_length, short_seq_prob, nsp
        self._specs: np.ndarray | None = None
        self._specs_epoch = -1

    def specs(self) -> np.ndarray:
        """This epoch's instances, ``(n, 5)``."""
        if self._specs is None or self._specs_epoch != self.epoch:
            rng = random.Random(f"lit_lm-pairs-{self.seed}-train-{self.epoch}")
            self._specs = build_pair_specs(self.sent_offsets, self.doc_sent_offsets, self.max_seq_length,
                                           self.short_seq_prob, self.nsp, rng)  # fmt: skip
            self._specs_epoch = self.epoch
        return self._specs

    def _epoch_size(self) -> int:
        return len(self.specs())

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(self.specs()))

    def __iter__(self) -> Iterator[tuple]:  # type: ignore[override]
        specs = self.specs()
        base = (self.epoch & 0x3FFFFFFF) << 32
        for i in self.shard().tolist():
            a0, a1, b0, b1, label = specs[i].tolist()
            yield (base | i, a0, a1, b0, b1, label)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_specs"], state["_specs_epoch"] = None, -1
        return state


class MaskedLMDataModule(PretrainingDataModule):
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
        lowercase: Lowercase the text: when training a tokenizer (unset: WordPiece yes, as BERT; byte-level BPE no,
            and it refuses True: it would not be lossless) or loading a ``vocab.txt`` (unset: yes).
        tokenizer_kind: Kind of a tokenizer trained here: ``wordpiece`` (BERT) or ``bpe`` (byte-level, lossless:
            ``decode(encode(text)) == text``; see :mod:`lit_lm.data.core.tokenizer`). Ignored when ``tokenizer`` is
            given.
        max_seq_length: Longest example, ``[CLS]``/``[SEP]`` included (at least 8).
        short_seq_prob: Probability that a document's target length is a random shorter one.
        nsp: Sentence pairs with next sentence prediction labels; else single segments.
        mlm_probability: Share of maskable tokens to predict, in (0, 1).
        whole_word_masking: Mask whole words rather than single WordPiece tokens.
        mask_token_ratio: Share of the chosen tokens replaced by ``[MASK]`` (BERT: 0.8).
        random_token_ratio: Share of the chosen tokens replaced by a random token (BERT: 0.1); the rest stay.
        pad_to_multiple_of: Pad batch lengths up to a multiple of this.
        batch_size: Examples per batch.
        val_fraction: Share of documents for validation.
        cache_dir: Where tokenizers and prepared corpora are cached.
        num_workers: DataLoader worker processes.
        seed: Seed of the split, the tokenizer's training data, the pairs and the masks.
        text_field: JSONL field holding the text.
        val_files: Text files whose every sentence is validated on (pairs and masks fixed by ``seed``), instead of a
            hold-out of ``files``, which then all go to training.
        test_files: Text files that ``test`` scores the same way (``test/mlm_acc``, ``test/loss``).
    """

    def __init__(
        self,
        files: list[str | Path] | None = None,
        tokenizer: str | Path | None = None,
        vocab_size: int = 8192,
        lowercase: bool | None = None,
        tokenizer_kind: TokenizerKind = "wordpiece",
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        nsp: bool = True,
        mlm_probability: float = 0.15,
        whole_word_masking: bool = False,
        mask_token_ratio: float = 0.8,
        random_token_ratio: float = 0.1,
        pad_to_multiple_of: int | None = None,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        cache_dir: str | Path = ".cache/lit_lm",
        num_workers: int = 0,
        seed: int = 42,
        text_field: str = "text",
        val_files: list[str | Path] | str | Path | None = None,
        test_files: list[str | Path] | str | Path | None = None,
    ) -> None:
        if max_seq_length < 8:
            raise DataError(f"max_seq_length must be >= 8, got {max_seq_length}")
        if not 0.0 < mlm_probability < 1.0:
            raise DataError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise DataError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        super().__init__(files, tokenizer, vocab_size, lowercase, batch_size, "document", val_fraction, cache_dir,
                         num_workers, seed, text_field, tokenizer_kind, val_files, test_files)  # fmt: skip
        self.max_seq_length, self.short_seq_prob, self.nsp = max_seq_length, short_seq_prob, nsp
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        check_replacement_ratios(mask_token_ratio, random_token_ratio)
        self.mask_token_ratio, self.random_token_ratio = mask_token_ratio, random_token_ratio
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise DataError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        self.pad_to_multiple_of = pad_to_multiple_of
        self.collator: MLMCollator | None = None  # needs the tokenizer: built in setup
        self.train_dataset: SentencePairDataset | None = None
        self.val_dataset: SentencePairDataset | None = None
        self.test_dataset: SentencePairDataset | None = None
        self.train_sampler: PairSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the prepared corpora (preparing them if ``prepare_data`` did not run) and build the datasets that
        ``stage`` uses (``fit``: train and validation; ``validate``; ``test``; ``None``: all there are)."""
        tk = self.tokenizer
        self.collator = MLMCollator(tk, self.mlm_probability, self.whole_word_masking, self.pad_to_multiple_of,
                                    self.seed, mask_token_ratio=self.mask_token_ratio,
                                    random_token_ratio=self.random_token_ratio)  # fmt: skip
        if stage in ("fit", None):
            pc = self._corpus()
            self._check_documents(pc, "train", "train split")  # (with val_files: all of `files`)
            self.train_sampler = PairSampler(pc, "train", self.max_seq_length, self.short_seq_prob, self.nsp,
                                             self.seed)  # fmt: skip
            self.train_dataset = SentencePairDataset(pc, "train", tk.cls_id, tk.sep_id)
        if stage in ("fit", "validate", None):
            self.val_dataset = self._eval_dataset("val")
        if stage == "test" or (stage is None and self.test_files is not None):
            self.test_dataset = self._eval_dataset("test")

    def _check_documents(self, pc: PreparedCorpus, split: str, what: str) -> None:
        if self.nsp and pc.num_docs(split) < 2:
            raise DataError(
                f"next sentence prediction needs at least 2 documents in the {what}, it has {pc.num_docs(split)} "
                f"({pc.num_tokens(split)} tokens); raise val_fraction, add text, or set nsp=False"
            )

    def _eval_dataset(self, stage: str) -> SentencePairDataset:
        """Fixed pairs (seeded by ``seed`` and the stage) over every sentence of the ``stage`` text."""
        pc, split = self._eval_source(stage)
        files = self.val_files if stage == "val" else self.test_files
        what = f"{stage} split" if files is None else f"{stage}_files text"
        self._check_documents(pc, split, what)
        rng = random.Random(f"lit_lm-pairs-{self.seed}-{stage}")
        specs = build_pair_specs(np.asarray(pc.sent_offsets(split)), pc.doc_sent_offsets(split),
                                 self.max_seq_length, self.short_seq_prob, self.nsp, rng)  # fmt: skip
        if len(specs) == 0:
            raise DataError(f"the {what} text gave no examples; raise val_fraction or add text")
        return SentencePairDataset(pc, split, self.tokenizer.cls_id, self.tokenizer.sep_id, specs=specs)

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

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, shuffle=False, collate_fn=self.collator)
