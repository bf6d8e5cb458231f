"""What both pretraining DataModules share: they run in a Lightning Trainer and shard under DDP."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lit_lm.data.pretraining.causal_lm import CausalLMDataModule, WindowSampler
from lit_lm.data.pretraining.masked_lm import MaskedLMDataModule


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
def test_samplers_shard_themselves_so_lightning_leaves_them_in_place(cache: Path) -> None:
    """Lightning wraps any training sampler that is no DistributedSampler in a DistributedSamplerWrapper that
    reshuffles it; ours are DistributedSamplers that shard by rank, so the order follows ``seed`` alone and the
    shards of all ranks cover the epoch."""
    from torch.utils.data import DistributedSampler

    from lit_lm.data.pretraining.masked_lm import PairSampler

    dm = MaskedLMDataModule(cache_dir=cache, max_seq_length=64, batch_size=8)
    dm.setup("fit")
    corpus = dm._corpus()
    shard_items = []
    for make in (lambda **r: PairSampler(corpus, "train", 64, 0.1, True, seed=0, **r),
                 lambda **r: WindowSampler(5000, 16, "random", num_samples=301, seed=0, **r)):  # fmt: skip
        whole = make(num_replicas=1, rank=0)
        shards = [make(num_replicas=2, rank=r) for r in (0, 1)]
        assert isinstance(whole, DistributedSampler)
        for sampler in (whole, *shards):
            sampler.set_epoch(3)
        items = [list(shard) for shard in shards]
        assert len(items[0]) == len(items[1]) == len(shards[0])  # padded to equal shards, as DistributedSampler pads
        everything = [repr(x) for x in whole]
        assert {repr(x) for x in items[0] + items[1]} == set(everything)
        assert [repr(x) for x in items[0]] == everything[0::2]
        shard_items.append(items[1])
    batch = dm.collator([dm.train_dataset[item] for item in shard_items[0][:4]])  # the pair sampler's rank 1
    assert batch["input_ids"].shape[0] == 4
