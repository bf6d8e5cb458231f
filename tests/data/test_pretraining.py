"""Pretraining DataModules: causal LM windows and validation pass; BERT pairs, NSP and dynamic masking."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_lm.data.errors import DataError
from lit_lm.data.pretraining import (
    CausalLMDataModule,
    MaskedLMDataModule,
    MLMCollator,
    WindowSampler,
    _truncate,
    build_pair_specs,
)
from lit_lm.data.tokenizer import Tokenizer

TAGS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: the built-in corpus' tokenizer and prepared corpus are made once."""
    return tmp_path_factory.mktemp("cache")


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
    return torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


# ============================================================================================= causal LM
def test_causal_labels_are_inputs_shifted(cache: Path) -> None:
    dm = CausalLMDataModule(cache_dir=cache, block_size=32, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    tokens = dm.corpus.tokens("train")
    start = next(iter(dm.train_sampler))
    window = torch.from_numpy(tokens[start : start + 33].astype(np.int64))
    assert torch.equal(batch["input_ids"][0], window[:-1]) and torch.equal(batch["labels"][0], window[1:])
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.pad_token_id == 0
    assert len(dm.train_dataloader()) == -(-(dm.num_train_tokens // 32) // 4)


def test_causal_validation_predicts_every_token_once(cache: Path) -> None:
    dm = CausalLMDataModule(cache_dir=cache, block_size=48, batch_size=3)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    labels = torch.cat([b["labels"] for b in batches]).flatten()
    inputs = torch.cat([b["input_ids"] for b in batches]).flatten()
    val = torch.from_numpy(dm.corpus.tokens("val").astype(np.int64))
    assert torch.equal(labels[labels != -100], val)  # every token once, in order
    assert dm.num_val_tokens == val.numel() and len(dm.val_dataset) == -(-val.numel() // 48)
    assert inputs[0] == int(dm.corpus.tokens("train")[-1])  # context of the first validation token
    real = labels != -100
    assert torch.equal(inputs[1:][real[1:]][: val.numel() - 1], val[:-1])
    assert (inputs[~real] == dm.pad_token_id).all() and not real[: val.numel()].logical_not().any()
    assert dm.val_num_chars == dm.corpus.num_chars("val") > 0 and dm.val_num_bytes >= dm.val_num_chars
    again = list(dm.val_dataloader())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again, strict=True))


def test_causal_training_is_deterministic_per_seed_and_epoch(cache: Path) -> None:
    def first_batch(seed: int, epoch: int, mode: str = "random") -> torch.Tensor:
        dm = CausalLMDataModule(cache_dir=cache, block_size=16, batch_size=8, seed=seed, train_mode=mode)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["input_ids"]

    assert torch.equal(first_batch(1, 0), first_batch(1, 0))
    assert not torch.equal(first_batch(1, 0), first_batch(1, 1))
    assert not torch.equal(first_batch(1, 0), first_batch(2, 0))
    assert torch.equal(first_batch(1, 3, "sequential"), first_batch(1, 3, "sequential"))


def test_window_sampler_modes() -> None:
    s = WindowSampler(1000, 10, "sequential", seed=0)
    for epoch in range(3):
        s.set_epoch(epoch)
        starts = np.array(list(s))
        off = starts.min()
        assert off < 10 and np.all((starts - off) % 10 == 0) and len(set(starts)) == len(starts)
        assert starts.max() + 11 <= 1000 and len(starts) == (1000 - 11 - off) // 10 + 1 == len(s)
        assert not np.all(np.diff(starts) > 0)  # shuffled
    r = WindowSampler(1000, 10, "random", num_samples=500, seed=0)
    starts = np.array(list(r))
    assert len(starts) == 500 == len(r) and starts.min() >= 0 and starts.max() <= 1000 - 11
    assert len(WindowSampler(1000, 10, "random")) == 100
    with pytest.raises(DataError, match="fewer than block_size"):
        WindowSampler(10, 10)


def test_causal_tail_split_and_files(tmp_path: Path) -> None:
    f = tmp_path / "play.txt"
    text = "".join(f"Speaker {i}:\nThis is line number {i} of the play.\n\n" for i in range(300))
    f.write_text(text)
    dm = CausalLMDataModule(files=[str(f)], cache_dir=tmp_path / "c", split="tail", val_fraction=0.1,
                            vocab_size=300, block_size=16)  # fmt: skip
    assert dm.val_num_chars == len(text) - int(len(text) * 0.9)
    dm.setup("fit")
    labels = torch.cat([b["labels"] for b in dm.val_dataloader()]).flatten()
    assert (labels != -100).sum() == dm.num_val_tokens


def test_causal_settings_errors(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError, match="block_size must be >= 1"):
        CausalLMDataModule(cache_dir=cache, block_size=0)
    with pytest.raises(DataError, match="train_mode"):
        CausalLMDataModule(cache_dir=cache, train_mode="shuffled")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not found") as e:
        CausalLMDataModule(files=[str(tmp_path / "missing.txt")], cache_dir=cache)
    assert "missing.txt" in str(e.value)
    with pytest.raises(DataError, match="val_fraction"):
        CausalLMDataModule(cache_dir=cache, val_fraction=0.0)
    dm = CausalLMDataModule(cache_dir=cache, block_size=10**7)
    with pytest.raises(DataError, match="train split has .* tokens .* lower block_size"):
        dm.setup("fit")


class _TinyLM(L.LightningModule):
    """Embedding + linear; records the batches' shapes and the sampler epochs Lightning set."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, 8)
        self.out = torch.nn.Linear(8, vocab_size)
        self.epochs_seen: list[int] = []

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.out(self.emb(batch["input_ids"]))
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    def training_step(self, batch: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        if i == 0:
            self.epochs_seen.append(self.trainer.train_dataloader.sampler.epoch)
        return self._loss(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], i: int) -> None:
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_datamodules_run_in_a_lightning_trainer(cache: Path, kind: str) -> None:
    if kind == "causal":
        dm: L.LightningDataModule = CausalLMDataModule(cache_dir=cache, block_size=16, batch_size=4)
    else:
        dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=32, batch_size=4)
    model = _TinyLM(dm.vocab_size)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, dm)
    assert model.epochs_seen == [0, 1]  # Lightning forwarded set_epoch to our sampler


# ============================================================================================= BERT pairs
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


def test_masking_statistics() -> None:
    coll = MLMCollator(pad_id=0, mask_id=4, vocab_size=1000, special_ids=range(7), seed=0)
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
        assert torch.equal(chosen.sum(1), torch.floor(n * 0.15 + 0.5).clamp(min=1).long())
        got = batch["input_ids"][chosen]
        counts["mask"] += int((got == 4).sum())
        counts["same"] += int((got == ids[chosen]).sum())
        counts["random"] += int(((got != 4) & (got != ids[chosen])).sum())
        assert (got[got != 4] >= 7).all()  # random replacements are never special
    total = sum(counts.values())
    assert abs(counts["mask"] / total - 0.8) < 0.015
    assert abs(counts["random"] / total - 0.1) < 0.01
    assert abs(counts["same"] / total - 0.1) < 0.01


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


def test_samplers_shard_under_lightnings_distributed_wrapper(cache: Path) -> None:
    """Under DDP Lightning wraps a custom sampler in DistributedSamplerWrapper: shards must cover the epoch and
    set_epoch must reach our sampler."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=64, batch_size=8)
    dm.setup("fit")
    for sampler in (dm.train_sampler, WindowSampler(5000, 16, "random", seed=0)):
        shards = [DistributedSamplerWrapper(sampler, num_replicas=2, rank=r, shuffle=False) for r in (0, 1)]
        for shard in shards:
            shard.set_epoch(3)
        assert sampler.epoch == 3
        items = [list(shard) for shard in shards]
        # the shard size is fixed when the wrapper is made; an epoch with other instance counts is padded by
        # repetition or (when larger) loses its last few items
        assert len(items[0]) == len(items[1]) == shards[0].num_samples
        got, everything = {repr(x) for x in items[0] + items[1]}, {repr(x) for x in sampler}
        assert got <= everything and len(got) == min(len(everything), shards[0].total_size)
    pair_items = list(DistributedSamplerWrapper(dm.train_sampler, num_replicas=2, rank=1, shuffle=False))[:4]
    batch = dm.collator([dm.train_dataset[item] for item in pair_items])
    assert batch["input_ids"].shape[0] == 4
