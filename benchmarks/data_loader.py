"""Data is never the bottleneck: a training step fed by the real DataLoader vs the same step on pre-built tensors.

For CausalLM (``CausalLMDataModule``: random windows of the prepared corpus) and MaskedLM (``MaskedLMDataModule``:
sentence pairs, padding and dynamic masking in the collator) on the built-in corpus, small models (gpt-mini /
bert-mini sizes). Each round runs K steps pulling batches from the train DataLoader (``next(iterator)`` inside
the timed step), then K steps on those same batches as ready tensors; medians over the rounds are compared. The
loader's own time per batch is measured too.

    python benchmarks/data_loader.py                     # num_workers 0, batch 32, 128 tokens
    python benchmarks/data_loader.py --num-workers 2 --record   # and append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def _datamodule(family: str, args: argparse.Namespace) -> Any:
    from lit_lm.data import CausalLMDataModule, MaskedLMDataModule

    common = dict(files=None, vocab_size=8192, batch_size=args.batch_size, cache_dir=args.cache_dir,
                  num_workers=args.num_workers, seed=0)  # fmt: skip
    if family == "gpt":
        return CausalLMDataModule(block_size=args.seq_len, **common)
    return MaskedLMDataModule(max_seq_length=args.seq_len, **common)


def _model(family: str, vocab_size: int, seq_len: int) -> Any:
    from lit_lm.tasks import CausalLM, MaskedLM

    if family == "gpt":
        return CausalLM(preset="gpt-mini", config={"n_positions": max(256, seq_len)}, vocab_size=vocab_size)
    return MaskedLM(preset="bert-mini", config={"n_positions": max(512, seq_len)}, vocab_size=vocab_size)


def _endless(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _timed_steps(step: Callable[[dict], None], next_batch: Callable[[], dict], k: int) -> tuple[list[float], list]:
    """Run k steps, each timed including ``next_batch()``; returns the times and the batches used."""
    times, batches = [], []
    for _ in range(k):
        t0 = time.perf_counter()
        batch = next_batch()
        step(batch)
        times.append(time.perf_counter() - t0)
        batches.append(batch)
    return times, batches


def run(family: str, args: argparse.Namespace) -> dict[str, float]:
    dm = _datamodule(family, args)
    dm.prepare_data()
    dm.setup("fit")
    model = _model(family, dm.vocab_size, args.seq_len)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch: dict) -> None:
        model.on_before_batch_transfer(batch, 0)  # what the Trainer calls (drops all-ones masks)
        model.training_step(batch, 0).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    loader_iter = _endless(dm.train_dataloader())
    # the loader alone
    t0 = time.perf_counter()
    for _ in range(args.loader_batches):
        next(loader_iter)
    loader_ms = (time.perf_counter() - t0) / args.loader_batches * 1e3
    for _ in range(2):  # warm-up
        step(next(loader_iter))
    with_loader: list[float] = []
    with_tensors: list[float] = []
    for _ in range(args.rounds):
        # K steps pulling from the loader, then the same K batches again as ready tensors (same shapes, same
        # masks: only the data pipeline differs)
        times, batches = _timed_steps(step, lambda: next(loader_iter), args.steps)
        again, _ = _timed_steps(step, functools.partial(next, iter(batches)), args.steps)
        with_loader += times
        with_tensors += again
    a, b = statistics.median(with_loader), statistics.median(with_tensors)
    return {"loader_ms": loader_ms, "step_loader_ms": a * 1e3, "step_tensors_ms": b * 1e3, "overhead": a / b - 1}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", nargs="+", default=["gpt", "bert"], choices=["gpt", "bert"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--steps", type=int, default=4, help="steps per round and side")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--loader-batches", type=int, default=50)
    p.add_argument("--cache-dir", default=".cache/lit_lm")
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*self.log.*")

    rows = {family: run(family, args) for family in args.family}
    from _common import machine, record
    from train_throughput import versions  # noqa: E402  (the sibling script)

    header = (
        f"### data_loader: training step with the real DataLoader vs pre-built tensors, {date.today()}\n\n"
        f"Machine: {machine(torch.device('cpu'))}; {versions()}. Built-in corpus, batch {args.batch_size} x "
        f"{args.seq_len} tokens, num_workers {args.num_workers}; gpt-mini / bert-mini sizes, fp32, full step "
        f"(forward, backward, AdamW). {args.rounds} alternating rounds of {args.steps} steps per side, medians.\n\n"
        "| task | DataLoader alone ms/batch | step with DataLoader ms | step on tensors ms | overhead |\n"
        "|---|---:|---:|---:|---:|\n"
    )
    names = {"gpt": "CausalLM (CausalLMDataModule)", "bert": "MaskedLM (MaskedLMDataModule, NSP, dynamic masking)"}
    table = header + "".join(
        f"| {names[f]} | {r['loader_ms']:.2f} | {r['step_loader_ms']:.0f} | {r['step_tensors_ms']:.0f} "
        f"| {r['overhead']:+.1%} |\n"
        for f, r in rows.items()
    )
    record(table, RESULTS, args.record)


if __name__ == "__main__":
    main()
