"""The masked LM DataModule: BERT sentence pairs, NSP negatives and dynamic masking."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_lm.config import IGNORE_INDEX
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.pretraining.masked_lm import MaskedLMDataModule, _truncate, build_pair_specs
from lit_lm.data.pretraining.masking import MLMCollator
from lit_lm.errors import DataError

TAGS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


@pytest.fixture(scope="module")
def tag_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Documents whose every word is the document's tag, one sentence per line; and a tokenizer that has every
    tag as one token."""
    rng = random.Random(0)
    docs = []
    for tag in TAGS:
        lines = [" ".join([tag] * rng.randint(3, 6)) + "." for _ in range(rng.randint(10, 20))]
        docs.append("\n".join(lines))
    d = tmp_path_factory.mktemp("tags")
    (d / "tags.txt").write_text("\n\n".join(docs) + "\n")
    Tokenizer.train_from_texts(docs, vocab_size=400).save(d / "tok.json")
    return d / "tags.txt", d / "tok.json"


def original_ids(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.where(batch["labels"] != IGNORE_INDEX, batch["labels"], batch["input_ids"])


# ============================================================================================= causal LM
def test_mlm_batch_layout_and_segments(cache: Path) -> None:
    dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=64, batch_size=16)
    dm.setup("fit")
    tk = dm.tokenizer
    for batch in [next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))]:
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
        B, T = batch["input_ids"].shape
        assert B == 16 and T <= 64 and batch["next_sentence_label"].shape == (16,)
        assert all(v.dtype == torch.long for v in batch.values())
        ids = original_ids(batch)
        for r in range(B):
            n = int(batch["attention_mask"][r].sum())
            assert batch["attention_mask"][r, :n].all() and not batch["attention_mask"][r, n:].any()
            row, types = ids[r, :n].tolist(), batch["token_type_ids"][r, :n].tolist()
            assert row[0] == tk.cls_id and row[-1] == tk.sep_id and row.count(tk.sep_id) == 2
            first_sep = row.index(tk.sep_id)
            assert first_sep >= 2 and n - first_sep >= 3  # A and B each have a token
            assert types == [0] * (first_sep + 1) + [1] * (n - first_sep - 1)
            assert (ids[r, n:] == tk.pad_id).all() and not batch["token_type_ids"][r, n:].any()
            assert (batch["labels"][r, n:] == -100).all()
        assert set(batch["next_sentence_label"].tolist()) <= {0, 1}


def test_nsp_negatives_come_from_other_documents(tag_corpus: tuple[Path, Path], tmp_path: Path) -> None:
    files, tok = tag_corpus
    dm = MaskedLMDataModule(files=[str(files)], tokenizer=str(tok), cache_dir=tmp_path, max_seq_length=32,
                            batch_size=64, short_seq_prob=0.0, val_fraction=0.1)  # fmt: skip
    dm.setup("fit")
    tag_ids = {dm.tokenizer.encode(t)[0] for t in TAGS}
    assert all(len(dm.tokenizer.encode(t)) == 1 for t in TAGS)
    labels, checked = [], 0
    loader = dm.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            ids = original_ids(batch)
            for r in range(ids.shape[0]):
                row = ids[r][batch["attention_mask"][r].bool()].tolist()
                sep = row.index(dm.tokenizer.sep_id)
                a_tags = {t for t in row[1:sep] if t in tag_ids}
                b_tags = {t for t in row[sep + 1 : -1] if t in tag_ids}
                assert len(a_tags) <= 1 and len(b_tags) <= 1  # a segment never mixes documents
                nsp = int(batch["next_sentence_label"][r])
                if a_tags and b_tags:
                    checked += 1
                    assert (a_tags == b_tags) == (nsp == 0)
                labels.append(nsp)
    assert checked > 0.9 * len(labels)
    share_random = np.mean(labels)
    assert 0.4 < share_random < 0.65  # 1/2, a bit more: a one-sentence chunk always takes a random B (google)


def test_pair_specs_follow_google_rules() -> None:
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 30, size=400)
    sent_offsets = np.concatenate([[0], np.cumsum(lens)])
    doc_sents = np.concatenate([[0], np.cumsum(rng.integers(1, 12, size=60))])
    doc_sents = doc_sents[doc_sents < 400].tolist() + [400]
    doc_sents = np.array(doc_sents)
    doc_tok = sent_offsets[doc_sents]
    specs = build_pair_specs(sent_offsets, doc_sents, 64, 0.1, True, random.Random(1))
    a0, a1, b0, b1, lab = specs.T
    assert ((a1 - a0 >= 1) & (b1 - b0 >= 1) & ((a1 - a0) + (b1 - b0) <= 61)).all()
    doc_of = lambda x: np.searchsorted(doc_tok, x, side="right") - 1  # noqa: E731
    assert (doc_of(a0) == doc_of(a1 - 1)).all() and (doc_of(b0) == doc_of(b1 - 1)).all()
    assert (doc_of(a0)[lab == 0] == doc_of(b0)[lab == 0]).all()
    assert (doc_of(a0)[lab == 1] != doc_of(b0)[lab == 1]).all()
    assert (b0[lab == 0] >= a1[lab == 0]).all()
    single = build_pair_specs(sent_offsets, doc_sents, 64, 0.0, False, random.Random(1))
    assert (single[:, 4] == -1).all() and (single[:, 1] - single[:, 0] <= 62).all()
    # deterministic for a seeded generator
    assert np.array_equal(specs, build_pair_specs(sent_offsets, doc_sents, 64, 0.1, True, random.Random(1)))


@given(st.integers(1, 200), st.integers(1, 200), st.integers(5, 120), st.integers(0, 10**6))
@settings(max_examples=200, deadline=None)
def test_truncate_matches_google_loop(la: int, lb: int, budget: int, seed: int) -> None:
    a0, a1, b0, b1 = _truncate(1000, 1000 + la, 5000, 5000 + lb, budget, random.Random(seed))
    # lengths equal google's loop: trim the longer (B on ties) until it fits
    x, y = la, lb
    while x + y > budget:
        if x > y:
            x -= 1
        else:
            y -= 1
    assert (a1 - a0, b1 - b0) == (x, y)
    assert 1000 <= a0 <= a1 <= 1000 + la and 5000 <= b0 <= b1 <= 5000 + lb


def test_mlm_is_deterministic_and_changes_per_epoch(cache: Path) -> None:
    def batches(epoch: int, workers: int = 0) -> list[dict[str, torch.Tensor]]:
        dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=48, batch_size=8, seed=7, num_workers=workers)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        it = iter(loader)
        return [next(it) for _ in range(3)]

    def same(x: list, y: list) -> bool:
        return all(torch.equal(a[k], b[k]) for a, b in zip(x, y, strict=True) for k in a)

    first = batches(0)
    assert same(first, batches(0))
    assert same(first, batches(0, workers=2))  # masks depend on the examples, not on the worker processes
    assert not same(first, batches(1))


def test_mlm_without_nsp_single_segments(cache: Path) -> None:
    dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=40, batch_size=8, nsp=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert "next_sentence_label" not in batch and not batch["token_type_ids"].any()
    ids = original_ids(batch)
    for r in range(8):
        row = ids[r][batch["attention_mask"][r].bool()].tolist()
        assert row[0] == dm.tokenizer.cls_id and row[-1] == dm.tokenizer.sep_id and len(row) <= 40
        assert row.count(dm.tokenizer.sep_id) == 1


def test_mlm_settings_errors(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="max_seq_length must be >= 8"):
        MaskedLMDataModule(cache_dir=cache, max_seq_length=7)
    for p in (0.0, 1.0):
        with pytest.raises(DataError, match="mlm_probability"):
            MaskedLMDataModule(cache_dir=cache, mlm_probability=p)
    small = tmp_path / "small.txt"
    small.write_text("One doc here. Yes.\n\nTwo docs here. Yes.\n\nThree docs here. Yes.\n")
    dm = MaskedLMDataModule(files=[str(small)], cache_dir=tmp_path, vocab_size=100)
    with pytest.raises(DataError, match="at least 2 documents in the val split, it has 1 .* raise val_fraction"):
        dm.setup("fit")


def test_mlm_on_real_gutenberg(shared_data_dir: Path, tmp_path: Path) -> None:
    dm = MaskedLMDataModule(files=[str(shared_data_dir / "gutenberg" / "11-0.txt")], cache_dir=tmp_path,
                            vocab_size=2000, max_seq_length=128, batch_size=32, whole_word_masking=True)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 32 and batch["input_ids"].shape[1] <= 128
    assert (batch["labels"] != -100).any(dim=1).all()


# ============================================================================================= masking
def random_batch(rng: np.random.Generator, n: int = 64, vocab: int = 1000) -> list[dict]:
    out = []
    for _ in range(n):
        la, lb = rng.integers(1, 60, size=2)
        a, b = rng.integers(7, vocab, size=la), rng.integers(7, vocab, size=lb)
        ids = np.concatenate([[2], a, [3], b, [3]])
        ids[rng.random(len(ids)) < 0.03] = 1  # some [UNK]
        out.append({"input_ids": ids, "token_type_ids": np.r_[np.zeros(la + 2), np.ones(lb + 1)].astype(int)})
    return out


@pytest.mark.parametrize(
    ("p", "mask_ratio", "random_ratio"), [(0.15, 0.8, 0.1), (0.3, 1.0, 0.0), (0.3, 0.5, 0.5), (0.15, 0.0, 0.0)]
)  # BERT's 15% and 80/10/10; Wettig et al.'s 30% with all [MASK]; any split
def test_masking_statistics(p: float, mask_ratio: float, random_ratio: float) -> None:
    coll = MLMCollator(pad_id=0, mask_id=4, vocab_size=1000, special_ids=range(7), seed=0, mlm_probability=p,
                       mask_token_ratio=mask_ratio, random_token_ratio=random_ratio)  # fmt: skip
    rng = np.random.default_rng(0)
    examples = random_batch(rng)
    counts = {"mask": 0, "random": 0, "same": 0}
    T = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), T, dtype=torch.long)
    for r, e in enumerate(examples):
        ids[r, : len(e["input_ids"])] = torch.as_tensor(e["input_ids"])
    for _ in range(60):  # ~35k chosen tokens: the shares' standard errors are ~0.002
        batch = coll(examples)
        chosen = batch["labels"] != -100
        maskable = (ids >= 7) & batch["attention_mask"].bool()
        assert not (chosen & ~maskable).any()  # never special tokens or padding
        assert torch.equal(batch["labels"][chosen], ids[chosen])
        assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])
        n = maskable.sum(1).double()
        assert torch.equal(chosen.sum(1), torch.floor(n * p + 0.5).clamp(min=1).long())
        got = batch["input_ids"][chosen]
        counts["mask"] += int((got == 4).sum())
        counts["same"] += int((got == ids[chosen]).sum())
        counts["random"] += int(((got != 4) & (got != ids[chosen])).sum())
        assert (got[got != 4] >= 7).all()  # random replacements are never special
    total = sum(counts.values())
    assert abs(counts["mask"] / total - mask_ratio) < 0.015
    # a random replacement equal to the original counts as unchanged (1 in ~1000 here)
    assert abs(counts["random"] / total - random_ratio) < 0.01
    assert abs(counts["same"] / total - (1 - mask_ratio - random_ratio)) < 0.01


def test_replacement_ratios_are_checked(cache: Path) -> None:
    with pytest.raises(DataError, match="at most 1"):
        MLMCollator(pad_id=0, mask_id=4, vocab_size=100, mask_token_ratio=0.9, random_token_ratio=0.2)
    with pytest.raises(DataError, match=r"must be in \[0, 1\]"):
        MaskedLMDataModule(cache_dir=cache, mask_token_ratio=-0.1)
    dm = MaskedLMDataModule(cache_dir=cache, mlm_probability=0.3, mask_token_ratio=1.0, random_token_ratio=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    chosen = batch["labels"] != -100
    assert (batch["input_ids"][chosen] == dm.tokenizer.mask_id).all()


def test_masking_share_over_a_real_batch(cache: Path) -> None:
    dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=128, batch_size=64)
    dm.setup("fit")
    chosen = maskable = 0
    for i, batch in enumerate(dm.train_dataloader()):
        ids = original_ids(batch)
        maskable += int(((ids >= 7) & batch["attention_mask"].bool()).sum())
        chosen += int((batch["labels"] != -100).sum())
        if i == 5:
            break
    assert abs(chosen / maskable - 0.15) < 0.01


def test_whole_word_masking_masks_whole_words() -> None:
    vocab = 100
    cont = np.zeros(vocab, dtype=bool)
    cont[50:] = True  # ids >= 50 are ## pieces
    coll = MLMCollator(pad_id=0, mask_id=4, vocab_size=vocab, special_ids=range(7), whole_word_masking=True,
                       continuation_mask=cont, seed=1)  # fmt: skip
    rng = np.random.default_rng(1)
    seqs = []
    for _ in range(32):
        words = [[int(rng.integers(7, 50))] + rng.integers(50, 100, size=rng.integers(0, 4)).tolist()
                 for _ in range(rng.integers(3, 25))]  # fmt: skip
        seqs.append([2] + [t for w in words for t in w] + [3])
    for _ in range(20):
        batch = coll(seqs)
        chosen = batch["labels"] != -100
        for r, s in enumerate(seqs):
            row = chosen[r, : len(s)].tolist()
            for i in range(2, len(s) - 1):
                if cont[s[i]]:
                    assert row[i] == row[i - 1]  # a piece goes with its word
            assert any(row[i] and not cont[t] for i, t in enumerate(s))  # at least one word
            k = max(1, int(np.floor(0.15 * (len(s) - 2) + 0.5)))
            assert sum(row) <= max(k, 4)  # within the budget, or one word (at most 4 tokens) when it is larger


@given(
    st.lists(st.lists(st.integers(0, 39), min_size=0, max_size=40), min_size=1, max_size=8),
    st.floats(0.01, 0.99),
    st.booleans(),
    st.sampled_from([None, 1, 8]),
    st.integers(0, 2**31),
)
@settings(max_examples=80, deadline=None)
def test_collator_invariants(seqs: list[list[int]], p: float, wwm: bool, multiple: int | None, seed: int) -> None:
    cont = np.arange(40) >= 30
    coll = MLMCollator(
        pad_id=0, mask_id=4, vocab_size=40, special_ids=range(7), mlm_probability=p, whole_word_masking=wwm,
        continuation_mask=cont, pad_to_multiple_of=multiple, seed=seed,
    )  # fmt: skip
    batch = coll([{"input_ids": s, "key": i} for i, s in enumerate(seqs)])
    B, T = batch["input_ids"].shape
    assert B == len(seqs) and T >= max(map(len, seqs)) and (multiple is None or T % multiple == 0)
    for r, s in enumerate(seqs):
        ids = torch.tensor(s + [0] * (T - len(s)), dtype=torch.long)
        att = batch["attention_mask"][r]
        assert att.tolist() == [1] * len(s) + [0] * (T - len(s))
        chosen = batch["labels"][r] != -100
        maskable = (ids >= 7) & att.bool()
        assert not (chosen & ~maskable).any()
        assert torch.equal(batch["labels"][r][chosen], ids[chosen])
        assert torch.equal(batch["input_ids"][r][~chosen], ids[~chosen])
        assert (batch["input_ids"][r][chosen] >= 4).all() and (batch["input_ids"][r][chosen] != 5).all()
        n = int(maskable.sum())
        k = int(np.floor(n * p + 0.5)) if n else 0
        k = max(k, 1) if n else 0
        if not wwm:
            assert int(chosen.sum()) == k
        else:
            assert (int(chosen.sum()) >= 1) == (n > 0)
    again = coll([{"input_ids": s, "key": i} for i, s in enumerate(seqs)])
    assert all(torch.equal(batch[k], again[k]) for k in batch)  # keyed examples -> same masks


