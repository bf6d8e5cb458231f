"""TokenThroughputMonitor logs throughput and MFU from shapes; NaNGuard stops a run at a non-finite loss before a broken
checkpoint; the FLOP counts behind MFU match torch's FLOP counter."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from lit_lm import callbacks
from lit_lm.callbacks import NaNGuard, NonFiniteLossError, TokenThroughputMonitor, peak_flops_for
from lit_lm.tasks import CausalLM, MaskedLM

V = 64
TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int, B: int = 4, T: int = 16) -> None:
        self.n, self.B, self.T = n, B, T

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        x = torch.randint(0, V, (self.B, self.T + 1), generator=torch.Generator().manual_seed(i))
        return {"input_ids": x[:, :-1], "labels": x[:, 1:]}


class _Memory(Logger):
    """Keeps what is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def _trainer(tmp_path, callbacks, steps, **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, default_root_dir=tmp_path, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, **kw,
    )  # fmt: skip


def _model(**kw) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(preset="gpt-micro", config=TINY, vocab_size=V, lr_schedule="constant", **kw)


def test_throughput_monitor_logs_rates_and_mfu_every_n_steps(tmp_path):
    logger = _Memory()
    monitor = TokenThroughputMonitor(log_every_n_steps=2, peak_flops=1e12)
    model = _model()
    trainer = _trainer(tmp_path, [monitor], 7, logger=logger, enable_checkpointing=False)
    trainer.fit(model, DataLoader(_Batches(7), batch_size=None))
    rows = [(step, m) for step, m in logger.rows if "throughput/tokens_per_sec" in m]
    # the first batch only starts the clock; then one row per 2 optimizer steps
    assert [step for step, _ in rows] == [2, 4, 6]
    for _, m in rows:
        assert m["throughput/tokens_per_sec"] > 0
        # counted from shapes: 16 tokens per sample
        assert m["throughput/tokens_per_sec"] == pytest.approx(16 * m["throughput/samples_per_sec"])
        tflops = m["throughput/tokens_per_sec_per_device"] * model.flops_per_token(16) / 1e12
        assert m["throughput/tflops_per_device"] == pytest.approx(tflops)
        assert m["throughput/mfu"] == pytest.approx(tflops * 1e12 / 1e12)
    assert monitor.metrics == rows[-1][1]


def test_tokens_seen_counts_every_batch_and_survives_a_resume(tmp_path):
    logger = _Memory()
    monitor = TokenThroughputMonitor(log_every_n_steps=2)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = _trainer(tmp_path, [monitor, ckpt], 5, logger=logger)
    trainer.fit(_model(), DataLoader(_Batches(10), batch_size=None))
    assert monitor.tokens_seen == 5 * 4 * 16  # the first batch too
    assert logger.rows[-1] == (5, {"throughput/tokens_seen": 320.0})  # at the end
    resumed = TokenThroughputMonitor(log_every_n_steps=2)
    trainer = _trainer(tmp_path, [resumed, ModelCheckpoint(dirpath=tmp_path)], 8, logger=_Memory())
    trainer.fit(_model(), DataLoader(_Batches(10), batch_size=None), ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.tokens_seen == 8 * 4 * 16


def test_throughput_monitor_without_a_peak_logs_no_mfu(tmp_path):
    logger = _Memory()
    trainer = _trainer(
        tmp_path, [TokenThroughputMonitor(log_every_n_steps=1)], 3, logger=logger, enable_checkpointing=False
    )
    trainer.fit(_model(), DataLoader(_Batches(3), batch_size=None))
    rows = [m for _, m in logger.rows if "throughput/tokens_per_sec" in m]
    assert rows and all("throughput/mfu" not in m and "throughput/tflops_per_device" in m for m in rows)
    assert peak_flops_for(torch.device("cpu"), "bf16-mixed") is None


def test_the_former_name_is_an_alias_distinct_from_lightnings_callback():
    from lightning.pytorch.callbacks import ThroughputMonitor as LightningThroughputMonitor

    assert callbacks.ThroughputMonitor is TokenThroughputMonitor
    assert not issubclass(TokenThroughputMonitor, LightningThroughputMonitor)


@pytest.mark.parametrize(
    ("name", "precision", "expected", "matmul"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16-mixed", 989.4e12, "highest"),  # Lightning's figure ("h100 sxm")
        ("NVIDIA H100 PCIe", "16-mixed", 756e12, "highest"),  # Lightning's
        ("NVIDIA A10G", "bf16-true", 125e12, "highest"),  # Lightning's; not in lit_lm's table
        ("NVIDIA A100-SXM4-80GB", "32-true", 19.5e12, "highest"),  # fp32 on CUDA cores
        ("NVIDIA A100-SXM4-80GB", "32-true", 156e12, "high"),  # tf32 tensor cores
        ("NVIDIA H200", "bf16-mixed", 989.4e12, "highest"),  # Lightning has no figure: lit_lm's table
        ("NVIDIA H200", "32-true", 494.7e12, "high"),
        ("NVIDIA H100 NVL", "bf16-mixed", 989.4e12, "highest"),  # Lightning 2.6 lists the with-sparsity peak
        ("NVIDIA H100 80GB HBM3", "transformer-engine", None, "highest"),
    ],
)
def test_peak_flops_come_from_lightning_with_a_dense_fallback(monkeypatch, recwarn, name, precision, expected, matmul):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: matmul)
    peak = peak_flops_for(torch.device("cuda", 0), precision)
    assert peak == (None if expected is None else pytest.approx(expected, rel=0.01))
    assert not [w for w in recwarn if "FLOPs not found" in str(w.message)]


def test_peak_flops_of_an_unknown_gpu_is_none_with_lightnings_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Imaginary GPU 9000")
    with pytest.warns(UserWarning, match="FLOPs not found"):
        assert peak_flops_for(torch.device("cuda", 0), "bf16-mixed") is None


@pytest.mark.parametrize("task", ["causal", "masked"])
def test_flops_per_token_matches_torch_flop_counter(task):
    """6 N + 12 L T C + the head, exactly what torch counts for a training step (math attention, no dropout)."""
    B, T = 2, 16
    config = {**TINY, "attention_backend": "math"}
    x = torch.randint(5, V, (B, T), generator=torch.Generator().manual_seed(0))
    if task == "causal":
        model = CausalLM(preset="gpt-micro", config=config, vocab_size=V)
        batch = {"input_ids": x, "labels": x}
        expected = model.flops_per_token(T) * B * T
    else:
        model = MaskedLM(preset="bert-tiny", config=config, vocab_size=V, nsp=False)
        labels = torch.full_like(x, -100)
        labels[:, ::4] = x[:, ::4]  # 25% masked
        batch = {"input_ids": x, "labels": labels}
        C = model.backbone_config.n_embd
        # the MLM head at the masked positions: 8 of 32 tokens, whatever share flops_per_token assumes
        expected = model.backbone.flops_per_token(T) * B * T + 8 * 6 * (C * C + C * V)
    with FlopCounterMode(display=False) as counter:
        model.training_step(batch, 0).backward()
    assert counter.get_total_flops() == expected


def test_nan_guard_stops_before_the_bad_update_and_checkpoint(tmp_path):
    """A NaN appears at step 3: the run stops with the step and loss named; checkpoints stay finite."""

    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.backbone.h[0].mlp.fc.weight[0, 0] = float("nan")

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True, save_top_k=-1)
    trainer = _trainer(tmp_path, [Poison(), NaNGuard(), ckpt], 6, logger=False)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at global step 3 .*loss = nan"):
        trainer.fit(_model(), DataLoader(_Batches(6), batch_size=None))
    assert trainer.global_step == 3  # the step with the NaN loss was not taken
    saved = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert saved
    for path in saved:
        ckpt_data = torch.load(path, map_location="cpu", weights_only=True)
        assert ckpt_data["global_step"] <= 3
        assert all(torch.isfinite(v).all() for v in ckpt_data["state_dict"].values() if v.is_floating_point())


def test_nan_guard_checking_every_n_steps_still_refuses_the_broken_checkpoint(tmp_path):
    """Checked every 4 steps, the NaN update of step 3 is applied, but the step-4 checkpoint is not written."""

    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2:
                with torch.no_grad():
                    pl_module.backbone.h[0].mlp.fc.weight[0, 0] = float("nan")

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    trainer = _trainer(tmp_path, [Poison(), NaNGuard(check_every_n_steps=4), ckpt], 8, logger=False)
    with pytest.raises(NonFiniteLossError, match=r"global step 2 .*checkpoint save"):
        trainer.fit(_model(), DataLoader(_Batches(8), batch_size=None))
    steps = sorted(torch.load(p, map_location="cpu", weights_only=True)["global_step"]
                   for p in (tmp_path / "ckpt").glob("*.ckpt"))  # fmt: skip
    assert steps == [1, 2]  # written before the poison; none after it


def test_nan_guard_refuses_a_checkpoint_with_non_finite_weights(tmp_path):
    model = _model()
    trainer = _trainer(tmp_path, [NaNGuard()], 2, logger=False, enable_checkpointing=False)
    trainer.fit(model, DataLoader(_Batches(2), batch_size=None))
    with torch.no_grad():
        model.backbone.h[1].attn.proj.bias[3] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights in \['backbone.h.1.attn.proj.bias'\]"):
        trainer.save_checkpoint(tmp_path / "broken.ckpt")
    assert not (tmp_path / "broken.ckpt").exists()
