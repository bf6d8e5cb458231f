"""The causal LM DataModule: training windows, the validation pass, settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_lm.data.pretraining.causal_lm import CausalLMDataModule, WindowSampler
from lit_lm.errors import DataError


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




def test_causal_datamodule_trains_a_byte_level_bpe_when_asked(tmp_path: Path) -> None:
    dm = CausalLMDataModule(cache_dir=tmp_path, vocab_size=600, block_size=32, batch_size=4, tokenizer_kind="bpe")
    dm.prepare_data()
    assert dm.tokenizer.kind == "bpe" and dm.vocab_size == 600
    assert [p.name.split("-")[0] for p in (tmp_path / "tokenizers").iterdir()] == ["bpe"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 32)
    text = "The old sailor walked.\nThen he sat down.\n"
    assert dm.tokenizer.decode(dm.tokenizer.encode(text)) == text


def test_causal_datamodule_defaults_to_a_lossless_tokenizer_and_vouches_for_the_text(tmp_path: Path) -> None:
    dm = CausalLMDataModule(cache_dir=tmp_path, vocab_size=600, block_size=32, batch_size=4, split="tail")
    assert dm.tokenizer.kind == "bpe" and dm.tokenizer.lossless
    assert dm.val_round_trip
    assert dm.val_num_chars == len(dm.tokenizer.decode(dm.corpus.tokens("val").tolist()))
    wp = CausalLMDataModule(cache_dir=tmp_path, vocab_size=600, block_size=32, tokenizer_kind="wordpiece")
    assert not wp.val_round_trip


def test_lowercase_is_refused_for_a_byte_level_bpe(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lowercase=True needs a WordPiece tokenizer"):
        CausalLMDataModule(cache_dir=tmp_path, lowercase=True)
    assert CausalLMDataModule(cache_dir=tmp_path, lowercase=True, tokenizer_kind="wordpiece")
