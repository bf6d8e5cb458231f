"""Distributed data parallel on 2 CPU processes (gloo) trains exactly like one process with the same global batch.

Why the two runs are equal: the same seed gives the same initial weights (and DDP broadcasts rank 0's anyway);
dropout is off. The DataModule's train sampler is a DistributedSampler that shards itself
(:class:`lit_lm.data.core.samplers.ShardedSampler`, so Lightning does not wrap and reshuffle it): rank ``r`` takes items
``order[r::2]`` of the epoch's order, which depends only on the data seed and the epoch. So with a per-rank batch of
B/2, step k of the two ranks together is ``order[kB:(k+1)B]``, the single process's batch k (same seed, same
length). Every window has the same number of labelled tokens, so DDP's gradient average over the ranks equals the
single process's token mean. Validation is not shuffled (rank ``r`` reads items ``r, r+2, ...``) and its metrics
(sums of NLL and tokens) are reduced over the ranks, so ``val/loss`` is the single process's.

With ``accumulate_grad_batches=2`` (per-rank micro-batches of B/4) an optimizer step still sees the same B windows;
Lightning skips the gradient all-reduce (DDP ``no_sync``) on the first micro-batch and syncs on the last, which
the run records and the test asserts.

This file is also the script that each DDP rank runs: ``python tests/test_ddp.py OUT_DIR CACHE_DIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

GLOBAL_BATCH = 8
BLOCK = 32
STEPS = 3
VAL_BATCHES = 2  # validation: the first 2 x GLOBAL_BATCH windows, however they are split
MODEL = {"n_layer": 2, "n_embd": 64, "n_head": 2, "intermediate_size": 128, "n_positions": BLOCK,
         "dropout": 0.0, "attention_dropout": 0.0}  # fmt: skip


def _run(out: Path, cache: Path, devices: int, batch_size: int, accumulate: int = 1, name: str = "run") -> dict:
    """Fit a tiny CausalLM on the built-in corpus; returns (on every rank) what the test compares."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lit_lm.data import CausalLMDataModule
    from lit_lm.tasks import CausalLM

    record: dict = {"batches": [], "val_batches": [], "grad_sync": [], "pid": os.getpid()}

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            record["batches"].append((trainer.global_step, batch["input_ids"].clone()))

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            record["val_batches"].append(batch["input_ids"].clone())

        def on_before_backward(self, trainer, pl_module, loss):
            ddp = trainer.strategy.model
            record["grad_sync"].append(bool(getattr(ddp, "require_backward_grad_sync", True)))

    L.seed_everything(42, verbose=False)
    # our training samplers shard themselves by rank (Lightning leaves them unwrapped), so one process with the
    # global batch sees the union of the ranks' batches
    dm = CausalLMDataModule(files=None, vocab_size=512, block_size=BLOCK, batch_size=batch_size, cache_dir=cache,
                            seed=42)
    model = CausalLM(preset="gpt-micro", config=MODEL, learning_rate=1e-3, lr_schedule="constant")
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=STEPS,
        accumulate_grad_batches=accumulate, val_check_interval=STEPS * accumulate,
        limit_val_batches=VAL_BATCHES * GLOBAL_BATCH // (devices * batch_size),  # the same windows in all runs
        num_sanity_val_steps=0, logger=CSVLogger(out / name, name="logs"), enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=out / name,
        callbacks=[Record(), ModelCheckpoint(dirpath=out / name / "ckpt", save_last=True, monitor="val/loss")],
    )  # fmt: skip
    trainer.fit(model, dm)
    record["val_loss"] = float(trainer.callback_metrics["val/loss"])
    record["state_dict"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    record["rank"] = trainer.global_rank
    return record


def main(out: Path, cache: Path) -> None:
    """The DDP side (2 ranks): a plain run, then one with gradient accumulation; each rank saves its records."""
    import torch.distributed as dist

    runs = {
        "ddp": _run(out, cache, 2, GLOBAL_BATCH // 2, name="ddp"),
        "ddp_accum": _run(out, cache, 2, GLOBAL_BATCH // 4, accumulate=2, name="ddp_accum"),
    }
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("LOCAL_RANK", 0))
    torch.save(runs, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))


# ------------------------------------------------------------------------------------------------ the test
def _rows(t: torch.Tensor) -> list[tuple[int, ...]]:
    return sorted(map(tuple, t.tolist()))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    cache = tmp_path / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs: a matmul's summation order depends on the thread count
    try:
        single = _run(tmp_path, cache, 1, GLOBAL_BATCH, name="single")  # also prepares the cache the ranks read
    finally:
        torch.set_num_threads(threads)
    root = Path(__file__).resolve().parents[1]
    path = str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # 2 ranks x 1 thread on 2 cores
    proc = subprocess.run([sys.executable, __file__, str(tmp_path), str(cache)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    for run in ("ddp", "ddp_accum"):
        r0, r1 = ranks[0][run], ranks[1][run]
        assert (r0["rank"], r1["rank"]) == (0, 1) and r0["pid"] != r1["pid"]
        # data: the ranks read distinct windows, and together exactly the single process's batch of each step
        for step in range(STEPS):
            b0 = torch.cat([b for s, b in r0["batches"] if s == step])
            b1 = torch.cat([b for s, b in r1["batches"] if s == step])
            assert not set(_rows(b0)) & set(_rows(b1)), f"{run}: ranks share windows at step {step}"
            assert _rows(torch.cat([b0, b1])) == _rows(single["batches"][step][1]), f"{run}: step {step} data"
        # same weights after the same steps (DDP averaged the gradients), identical on both ranks
        for k, v in single["state_dict"].items():
            torch.testing.assert_close(r0["state_dict"][k], v, rtol=0, atol=1e-5, msg=f"{run}: {k} differs")
            torch.testing.assert_close(r1["state_dict"][k], r0["state_dict"][k], rtol=0, atol=0)
        # validation metrics reduced over the ranks: the single process's value
        val = torch.cat(r0["val_batches"] + r1["val_batches"])
        assert _rows(val) == _rows(torch.cat(single["val_batches"])), f"{run}: validation data"
        assert r0["val_loss"] == pytest.approx(single["val_loss"], abs=1e-5)
        assert r1["val_loss"] == r0["val_loss"]
        # only rank 0 writes: one metrics file, one set of checkpoints
        assert len(list((tmp_path / run / "logs").rglob("metrics.csv"))) == 1
        assert sorted(p.name for p in (tmp_path / run / "ckpt").iterdir()) == sorted(
            p.name for p in (tmp_path / "single" / "ckpt").iterdir()
        )

    assert ranks[0]["ddp"]["grad_sync"] == [True] * STEPS
    # accumulation: no gradient all-reduce on the first micro-batch of each step, one on the last
    assert ranks[0]["ddp_accum"]["grad_sync"] == [False, True] * STEPS
    assert ranks[1]["ddp_accum"]["grad_sync"] == [False, True] * STEPS
