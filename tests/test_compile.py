"""CompileModel: ``torch.compile`` the backbone in place. The mechanism is tested with the ``aot_eager`` backend
(the same graph capture and autograd as inductor, without generating C++); inductor's speed is measured by
``benchmarks/train_throughput.py``."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_lm.callbacks import CompileModel
from lit_lm.data import CausalLMDataModule, NLIDataModule
from lit_lm.tasks import CausalLM, SequenceClassification

TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2, "intermediate_size": 64, "n_positions": 64, "dropout": 0.0,
        "attention_dropout": 0.0}  # fmt: skip


class Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lengths: set[int] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.lengths.add(int(batch["input_ids"].shape[-1]))


def _fit(model, datamodule, tmp_path, *callbacks, steps: int = 4) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=list(callbacks))  # fmt: skip
    trainer.fit(model, datamodule)
    return trainer


@pytest.mark.slow
def test_a_compiled_fit_trains_as_the_eager_one_and_checkpoints_the_same_keys(tmp_path, cache):
    torch._dynamo.reset()
    runs = {}
    for name, extra in (("eager", []), ("compiled", [CompileModel(backend="aot_eager")])):
        L.seed_everything(0)
        dm = CausalLMDataModule(tokenizer_kind="bpe", vocab_size=512, block_size=32, batch_size=4,
                                cache_dir=str(cache))  # fmt: skip
        model = CausalLM(preset="gpt-micro", config=TINY, learning_rate=1e-3)
        losses = Losses()
        trainer = _fit(model, dm, tmp_path / name, losses, *extra)
        runs[name] = (losses.losses, model, trainer)
    eager, compiled = runs["eager"][0], runs["compiled"][0]
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)
    model, trainer = runs["compiled"][1], runs["compiled"][2]
    assert model.backbone._compiled_call_impl is not None
    assert not any("_orig_mod" in k for k in model.state_dict())
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    loaded = CausalLM.load_from_checkpoint(tmp_path / "compiled.ckpt")  # an eager model
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.slow
def test_fine_tuning_batches_of_many_lengths_share_one_graph(tmp_path, cache):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    L.seed_everything(0)
    dm = NLIDataModule(format="encoder", max_seq_length=64, batch_size=8, vocab_size=400, cache_dir=str(cache))
    model = SequenceClassification(preset="bert-tiny", config=TINY, learning_rate=1e-3)
    losses = Losses()
    _fit(model, dm, tmp_path, losses, CompileModel(backend="aot_eager"), steps=8)
    assert len(losses.lengths) >= 4, losses.lengths  # the batches did differ in length
    # one graph per kind of call (with and without a padding mask) at most, never one per length
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])
