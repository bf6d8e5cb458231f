"""The AdamW step under mixed precision with gradient clipping: PyTorch's fused kernel (lit_lm's choice, clipping
before it itself under ``bf16-mixed``) against the unfused ``foreach`` step (what runs where Lightning's plugin
refuses to clip for a fused optimizer).

Each side trains the same model (seed 0) on the same fixed batch through ``lightning.Trainer`` with
``gradient_clip_val=1.0``, as every lit_lm config does; the sides alternate round by round and the medians are
compared. A step is timed from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward, clipping,
optimizer step); "clip + step" from ``on_before_optimizer_step`` (after the backward) to ``on_train_batch_end``.
The first step of each round (allocation, lazy state) is left out.

    python benchmarks/optimizer_step.py                       # gpt-mini, the detected precision
    python benchmarks/optimizer_step.py --preset gpt-micro --precision 32-true --record   # + RESULTS.md
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

RESULTS = Path(__file__).with_name("RESULTS.md")
SIDES = ("fused", "foreach")


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.step: list[float] = []
        self.update: list[float] = []
        self.fused: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._t1 = time.perf_counter()
        self.fused.append(bool(optimizer.defaults.get("fused")))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t = time.perf_counter()
        self.step.append(t - self._t0)
        self.update.append(t - self._t1)


class _Unfused(torch.optim.AdamW):
    """AdamW whatever ``fused`` the task asks for: the foreach step."""

    def __init__(self, *args, fused: bool | None = None, **kwargs) -> None:
        super().__init__(*args, fused=False, **kwargs)


def _round(side: str, args: argparse.Namespace, batch: dict) -> _StepTimer:
    from lit_lm.tasks import CausalLM

    L.seed_everything(0, verbose=False)
    model = CausalLM(preset=args.preset, vocab_size=args.vocab_size, warmup_steps=0)
    timer = _StepTimer()
    trainer = L.Trainer(max_steps=args.steps, precision=args.precision, accelerator="cpu", devices=1, logger=False,
                        gradient_clip_val=1.0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])  # fmt: skip
    adamw = torch.optim.AdamW
    torch.optim.AdamW = _Unfused if side == "foreach" else adamw
    try:
        trainer.fit(model, DataLoader([batch] * args.steps, batch_size=None))
    finally:
        torch.optim.AdamW = adamw
    expected = side == "fused"
    if set(timer.fused) != {expected}:
        raise RuntimeError(f"side {side}: the AdamW step ran fused={timer.fused[0]}, expected {expected}")
    return timer


def main(argv: list[str] | None = None) -> None:
    from lit_lm.hardware import detect_precision

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt-mini")
    p.add_argument("--precision", default=None, help="the Trainer's precision (default: detected for this CPU)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--steps", type=int, default=8, help="steps per round (the first is left out)")
    p.add_argument("--rounds", type=int, default=4, help="rounds per side, alternating")
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    args = p.parse_args(argv)
    args.precision = args.precision or detect_precision("cpu").precision
    warnings.filterwarnings("ignore", message=".*(self.log|num_workers|does not have many workers).*")

    shape = (args.batch_size, args.seq_len + 1)
    x = torch.randint(0, args.vocab_size, shape, generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": x[:, :-1], "labels": x[:, 1:]}
    steps: dict[str, list[float]] = {s: [] for s in SIDES}
    updates: dict[str, list[float]] = {s: [] for s in SIDES}
    for _ in range(args.rounds):
        for side in SIDES:
            timer = _round(side, args, batch)
            steps[side] += timer.step[1:]
            updates[side] += timer.update[1:]
    ms = {s: (1e3 * statistics.median(steps[s]), 1e3 * statistics.median(updates[s])) for s in SIDES}

    from _common import machine, record  # benchmarks/_common.py
    from train_throughput import versions  # noqa: E402  (the sibling script)

    from lit_lm.tasks import CausalLM

    n_params = sum(w.numel() for w in CausalLM(preset=args.preset, vocab_size=args.vocab_size).parameters())
    header = (
        f"### optimizer_step: fused vs foreach AdamW under {args.precision} with gradient clipping, {date.today()}\n\n"
        f"Machine: {machine(torch.device('cpu'))}; {versions()}. CausalLM {args.preset} ({n_params / 1e6:.1f}M "
        f"weights), batch {args.batch_size} x {args.seq_len} tokens, gradient_clip_val 1.0, through "
        f"lightning.Trainer; {args.rounds} alternating rounds of {args.steps} steps per side (first step of each "
        "left out), medians.\n\n"
        "| AdamW step | train step ms | clip + step ms |\n|---|---:|---:|\n"
    )
    rows = "".join(f"| {s} | {ms[s][0]:.1f} | {ms[s][1]:.1f} |\n" for s in SIDES)
    ratio = ms["foreach"][0] / ms["fused"][0]
    table = header + rows + f"\nfused is {ratio:.2f}x the speed of foreach per train step (medians).\n"
    record(table, RESULTS, args.record)


if __name__ == "__main__":
    main()
