"""Mixed precision: every objective trains a few steps under ``bf16-mixed`` (CPU) / ``16-mixed`` (GPU) with finite
losses close to the fp32 run from the same initialisation and batch.

The models are tiny on purpose: CPUs without bf16 matrix units (AVX2 only) emulate bf16 products ~100x slower
than fp32.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_lm.tasks import CausalLM, MaskedLM, MultipleChoice, SequenceClassification

V = 64
TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2, "intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0}
STEPS = 3
OPT = {"learning_rate": 3e-3, "warmup_steps": 0, "lr_schedule": "constant"}


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, batch: dict, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.batch


def _ids(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(7, V, shape, generator=torch.Generator().manual_seed(seed))


def _causal() -> tuple:
    x = _ids((4, 17))
    batch = {"input_ids": x[:, :-1], "labels": x[:, 1:]}
    return lambda: CausalLM(preset="gpt-micro", config=TINY, vocab_size=V, **OPT), batch


def _masked() -> tuple:
    x = _ids((4, 16))
    labels = torch.full_like(x, -100)
    labels[:, 2::4] = x[:, 2::4]
    mask = torch.ones_like(x)
    mask[1, 12:] = 0  # some padding
    batch = {
        "input_ids": x.masked_fill(labels != -100, 4), "attention_mask": mask, "token_type_ids": torch.zeros_like(x),
        "labels": labels, "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }  # fmt: skip
    return lambda: MaskedLM(preset="bert-tiny", config=TINY, vocab_size=V, **OPT), batch


def _classification() -> tuple:
    x = _ids((6, 16))
    mask = torch.ones_like(x)
    mask[0, 14:] = 0
    batch = {
        "input_ids": x, "attention_mask": mask, "token_type_ids": torch.zeros_like(x),
        "extract_positions": torch.tensor([13, 15, 15, 15, 15, 15]), "labels": torch.tensor([0, 1, 2, 0, 1, 2]),
    }  # fmt: skip
    return (
        lambda: SequenceClassification(
            preset="gpt-micro", config=TINY, vocab_size=V, num_labels=3, lm_loss_weight=0.5, **OPT
        ),
        batch,
    )


def _multiple_choice() -> tuple:
    x = _ids((4, 2, 16))
    batch = {
        "input_ids": x, "attention_mask": torch.ones_like(x), "extract_positions": torch.full((4, 2), 15),
        "labels": torch.tensor([0, 1, 1, 0]),
    }  # fmt: skip
    return lambda: MultipleChoice(preset="gpt-micro", config=TINY, vocab_size=V, lm_loss_weight=0.5, **OPT), batch


OBJECTIVES = {"causal_lm": _causal, "masked_lm": _masked, "classification": _classification,
              "multiple_choice": _multiple_choice}  # fmt: skip


def _losses(make_model, batch: dict, precision: str, accelerator: str = "cpu") -> list[float]:
    """Train ``STEPS`` steps on ``batch`` from seed 0, clipping gradients as every config does; the training
    losses."""
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, b, batch_idx):
            losses.append(float(outputs["loss"]))

    L.seed_everything(0, verbose=False)
    model = make_model()
    trainer = L.Trainer(
        max_steps=STEPS, precision=precision, accelerator=accelerator, devices=1, logger=False, gradient_clip_val=1.0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
    )  # fmt: skip
    trainer.fit(model, DataLoader(_Repeat(batch, STEPS), batch_size=None))
    return losses


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_bf16_mixed_on_cpu_matches_fp32(objective):
    make_model, batch = OBJECTIVES[objective]()
    fp32 = _losses(make_model, batch, "32-true")
    bf16 = _losses(make_model, batch, "bf16-mixed")
    assert len(bf16) == STEPS and all(math.isfinite(x) for x in bf16)
    # bf16 keeps 8 bits of mantissa: a few per mille per operation; the same init and batch give close losses
    for a, b in zip(fp32, bf16, strict=True):
        assert b == pytest.approx(a, rel=0.03, abs=0.03)
    assert fp32[-1] < fp32[0] and bf16[-1] < bf16[0]  # and both learn


def test_bf16_mixed_clips_before_a_fused_adamw_step(monkeypatch):
    """Lightning's MixedPrecision plugin refuses to clip for a fused optimizer; bf16 scales no gradient, so lit_lm
    clips itself and keeps the fused step."""
    make_model, batch = OBJECTIVES["causal_lm"]()
    clip, norms, fused = 0.05, [], []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        total = real(parameters, max_norm, *args, **kwargs)
        norms.append((float(total), float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])))))
        return total

    class Fused(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            fused.append(optimizer.defaults["fused"])

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=STEPS, precision="bf16-mixed", accelerator="cpu", devices=1, logger=False,
                        gradient_clip_val=clip, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Fused()])  # fmt: skip
    trainer.fit(make_model(), DataLoader(_Repeat(batch, STEPS), batch_size=None))
    assert fused == [True] * STEPS and len(norms) == STEPS
    for before, after in norms:
        assert before > clip and after == pytest.approx(clip, rel=1e-3)  # the clip bound and was applied


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed (fp16 + GradScaler) needs a CUDA GPU")
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_16_mixed_on_gpu_matches_fp32(objective):
    make_model, batch = OBJECTIVES[objective]()
    fp32 = _losses(make_model, batch, "32-true", accelerator="gpu")
    fp16 = _losses(make_model, batch, "16-mixed", accelerator="gpu")
    assert all(math.isfinite(x) for x in fp16)
    for a, b in zip(fp32, fp16, strict=True):
        assert b == pytest.approx(a, rel=0.01, abs=0.01)
