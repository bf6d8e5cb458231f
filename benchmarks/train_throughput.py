"""Full training steps (forward, backward, AdamW step): lit_lm's pretraining tasks vs Hugging Face transformers.

- BERT: :class:`lit_lm.tasks.MaskedLM` (MLM + NSP; the MLM head only at the masked positions, fused with the
  cross-entropy) against ``transformers.BertForPreTraining`` (``attn_implementation="sdpa"``).
- GPT: :class:`lit_lm.tasks.CausalLM` (LM head fused with the cross-entropy) against
  ``transformers.OpenAIGPTLMHeadModel`` (its own eager attention: it has no SDPA implementation).

Both sides get the same architecture, dropout, batch, sequence length and optimizer (``torch.optim.AdamW``, fused,
same hyper-parameters, fp32 master weights); lit_lm's side runs the task's real ``training_step`` (metrics included).
The BERT batch comes from lit_lm's ``MLMCollator`` (15% of the tokens predicted, 80/10/10, padding: 10% of the
sequences shorter, as with ``short_seq_prob=0.1``); the GPT batch is full windows without a mask. The two
implementations run alternately (interleaved repeats, median), so machine noise hits both alike. Peak memory is
measured per implementation in a fresh subprocess (CPU: peak RSS growth over two steps; CUDA:
``max_memory_allocated`` growth). MFU uses lit_lm's model FLOPs (``task.flops_per_token``: 6 per weight per token
+ attention + the heads' useful work) for *both* sides, so the MFU ratio equals the speed ratio; the peak is that of
the precision used: measured in the same run with a big matmul on CPUs, from a table of dense datasheet peaks on
known GPUs.

    python benchmarks/train_throughput.py                        # bert-mini + gpt-mini, fp32 + bf16-mixed
    python benchmarks/train_throughput.py --size base --batch-size 8 --precision fp32 --record   # + RESULTS.md
    python benchmarks/train_throughput.py --family gpt --precision fp32 --profile   # + top ops of both sides
    python benchmarks/train_throughput.py --compile              # + lit_lm with its backbone torch.compile'd

With ``--compile`` a third side runs: lit_lm's task with the same weights and its backbone compiled in place
(:class:`lit_lm.callbacks.CompileModel`'s ``backbone.compile``, inductor, static shapes as in this benchmark),
timed in the same interleaved rounds; the table adds its tokens/s, the compiled/eager ratio (paired) and the first
step's seconds (the compilation, which a short run pays once).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch
from _common import machine, record, reset_peak_rss, status_mib  # benchmarks/_common.py

from lit_lm.callbacks import peak_flops_for
from lit_lm.config import TransformerConfig
from lit_lm.model.hf import config_to_hf

RESULTS = Path(__file__).with_name("RESULTS.md")
PRESETS = {"small": {"bert": "bert-mini", "gpt": "gpt-mini"}, "base": {"bert": "bert-base", "gpt": "gpt1"}}
IMPLS = ("lit_lm", "transformers")


# ------------------------------------------------------------------------------------------------ models, batches
def model_config(family: str, size: str, dropout: float | None, seq_len: int) -> TransformerConfig:
    overrides: dict[str, Any] = {"attention_backend": "sdpa"}
    if dropout is not None:
        overrides.update(dropout=dropout, attention_dropout=dropout)
    config = TransformerConfig.from_name(PRESETS[size][family], **overrides)
    return config.replace(n_positions=max(config.n_positions, seq_len))


def build(impl: str, family: str, config: TransformerConfig) -> torch.nn.Module:
    if impl == "lit_lm":
        from lit_lm.tasks import CausalLM, MaskedLM

        task = MaskedLM if family == "bert" else CausalLM
        return task(preset=config.name, config=config.to_dict(), vocab_size=config.vocab_size)
    import transformers

    fields = {k: v for k, v in config_to_hf(config).items() if k not in ("architectures", "model_type")}
    if family == "gpt":  # OpenAIGPT has one (eager) attention implementation
        return transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**fields))
    return transformers.BertForPreTraining(transformers.BertConfig(**fields, attn_implementation="sdpa"))


def make_batch(family: str, config: TransformerConfig, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if family == "gpt":
        x = torch.randint(0, config.vocab_size, (batch_size, seq_len + 1), generator=g)
        return {"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}
    from lit_lm.data.pretraining.masking import MLMCollator

    # [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; 10% of the pairs shorter (BERT's short_seq_prob)
    collator = MLMCollator(pad_id=0, mask_id=4, vocab_size=config.vocab_size, special_ids=[0, 1, 2, 3, 4], seed=0)
    examples = []
    for i in range(batch_size):
        n = seq_len if i % 10 else int(torch.randint(8, seq_len, (1,), generator=g))
        ids = torch.randint(5, config.vocab_size, (n,), generator=g)
        ids[0], ids[n // 2], ids[-1] = 2, 3, 3
        types = torch.zeros(n, dtype=torch.long)
        types[n // 2 + 1 :] = 1
        examples.append({"input_ids": ids.tolist(), "token_type_ids": types.tolist(), "next_sentence_label": i % 2,
                         "key": i})  # fmt: skip
    return collator(examples)


def make_step(
    impl: str, family: str, model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str
) -> Callable[[], None]:
    """One optimizer step: forward, backward, AdamW step, zero_grad."""
    device = next(model.parameters()).device
    # the fused kernel on both sides, as lit_lm's configure_optimizers (and transformers' default `adamw_torch_fused`)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type in ("cuda", "cpu"))
    dtype = {"fp32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()

    def loss() -> torch.Tensor:
        if impl == "lit_lm":
            return model.training_step(batch, 0)  # the task's own step (self.log is a no-op without a Trainer)
        if family == "gpt":  # HF shifts the labels itself: give it the unshifted ids
            return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        return model(**batch).loss

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            value = loss()
        value.backward()  # fp16 would need a GradScaler for training; for timing the unscaled step is the same work
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_alternately(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> tuple[dict[str, float], dict[str, list[float]], float, dict[str, float]]:
    """Interleaved timing, the order flipped every round (ABBA) so drifts hit both sides alike.

    Returns the median seconds per step of each implementation, all samples, the median over rounds of the
    paired ratio ``t(transformers) / t(lit_lm)`` (robust to load that changes between rounds), and the seconds of
    each side's first step (a compiled side compiles then).
    """
    first: dict[str, float] = {}
    for name, step in steps.items():
        for i in range(max(1, warmup)):
            sync(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            if i == 0:
                first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    paired = [b / a for a, b in zip(times["lit_lm"], times["transformers"], strict=True)]
    return {k: statistics.median(v) for k, v in times.items()}, times, statistics.median(paired), first


# ------------------------------------------------------------------------------------------------ peaks, memory
def measure_peak(device: torch.device, precision: str) -> tuple[float, str]:
    """The precision's peak FLOP/s: best of a few big matrix products (CPU), or the datasheet table (GPU)."""
    if device.type == "cuda":
        peak = peak_flops_for(device, {"fp32": "32-true"}.get(precision, precision))
        if peak is not None:
            return peak, "datasheet (dense)"
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    n = 4096 if device.type == "cuda" or dtype == torch.float32 else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(8):
        sync(device)
        t0 = time.perf_counter()
        torch.nn.functional.linear(a, b)  # F.linear: the oneDNN kernels autocast uses for bf16 linears on CPUs
        sync(device)
        best = min(best, time.perf_counter() - t0)
    name = str(dtype).removeprefix("torch.")
    return 2 * n**3 / best, f"measured: {n}x{n} {name} F.linear, best of 8, at the start and the end of the run"


def memory_probe(args: argparse.Namespace) -> None:
    """In a subprocess: print the peak memory growth (MiB) of two training steps of one implementation."""
    device = torch.device(args.device)
    config = model_config(args.family[0], args.size, args.dropout, args.seq_len)
    model = build(args.memory_probe, args.family[0], config).to(device)
    batch = make_batch(args.family[0], config, args.batch_size, args.seq_len)
    step = make_step(args.memory_probe, args.family[0], model, batch, args.precision[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = status_mib("VmRSS") * 2**20
    step()
    step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = status_mib("VmHWM") * 2**20
    print(json.dumps({"peak_mib": (peak - base) / 2**20}))


def measure_memory(args: argparse.Namespace, impl: str, family: str, precision: str, batch_size: int) -> float:
    cmd = [
        sys.executable, __file__, "--memory-probe", impl, "--family", family, "--precision", precision,
        "--size", args.size, "--batch-size", str(batch_size), "--seq-len", str(args.seq_len),
        "--device", args.device, "--threads", str(torch.get_num_threads()),
    ]  # fmt: skip
    if args.dropout is not None:
        cmd += ["--dropout", str(args.dropout)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def profile_top(step: Callable[[], None], device: torch.device, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def versions() -> str:
    import lightning
    import transformers

    return f"Python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}, " \
        f"transformers {transformers.__version__}"  # fmt: skip


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", nargs="+", default=["bert", "gpt"], choices=["bert", "gpt"])
    p.add_argument("--size", default="small", choices=list(PRESETS), help="small: bert-mini/gpt-mini; base: "
                   "bert-base/gpt1")  # fmt: skip
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"], choices=["fp32", "bf16-mixed", "16-mixed"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bf16-batch-size", type=int, default=None,
                   help="batch size of the mixed-precision rows (default: --batch-size on GPUs, 2 on CPUs without "
                        "bf16 matrix units, where bf16 products are emulated and ~100x slower)")  # fmt: skip
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--dropout", type=float, default=None, help="dropout and attention dropout (default: preset's 0.1)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--profile", action="store_true", help="print the top ops (torch.profiler) of each side")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--compile", action="store_true", help="also time lit_lm with its backbone torch.compile'd")
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # the task's self.log without a Trainer
    warnings.filterwarnings("ignore", message=".*loss_type.*")
    if args.memory_probe:
        return memory_probe(args)

    device = torch.device(args.device)
    cpu_bf16_slow = device.type == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX512"
    rows, profiles, peaks = [], [], {}
    for precision in args.precision:
        peaks[precision] = measure_peak(device, precision)
        print(f"peak {precision}: {peaks[precision][0] / 1e12:.3f} TFLOP/s ({peaks[precision][1]})", flush=True)
    for family in args.family:
        torch.manual_seed(0)
        config = model_config(family, args.size, args.dropout, args.seq_len)
        models = {impl: build(impl, family, config).to(device) for impl in IMPLS}
        if args.compile:  # the same weights, the backbone compiled in place (CompileModel's call)
            models["compiled"] = build("lit_lm", family, config).to(device)
            models["compiled"].load_state_dict(models["lit_lm"].state_dict())
            models["compiled"].backbone.compile(dynamic=False)
        flops_per_token = models["lit_lm"].flops_per_token(args.seq_len)
        for precision in args.precision:
            mixed = precision != "fp32"
            batch_size = args.batch_size
            if mixed:
                batch_size = args.bf16_batch_size or (2 if cpu_bf16_slow else args.batch_size)
            repeats = args.repeats if not (mixed and cpu_bf16_slow) else min(args.repeats, 3)
            batch = make_batch(family, config, batch_size, args.seq_len)
            steps = {impl: make_step("lit_lm" if impl == "compiled" else impl, family, m, batch, precision)
                     for impl, m in models.items()}  # fmt: skip
            sec, samples, paired, first = time_alternately(
                steps, device, repeats, 1 if (mixed and cpu_bf16_slow) else args.warmup
            )
            compiled = None
            if args.compile:
                ratios = [a / c for a, c in zip(samples["lit_lm"], samples["compiled"], strict=True)]
                compiled = (batch_size * args.seq_len / sec["compiled"], statistics.median(ratios), first["compiled"])
                print(f"  compiled: {compiled[0]:,.0f} tok/s, {compiled[1]:.2f}x eager (paired), first step "
                      f"{compiled[2]:.1f} s", flush=True)  # fmt: skip
            tokens = batch_size * args.seq_len
            mem = {impl: float("nan") for impl in IMPLS}
            if not args.no_memory:
                mem = {impl: measure_memory(args, impl, family, precision, batch_size) for impl in IMPLS}
            tps = {impl: tokens / sec[impl] for impl in IMPLS}
            mfu = {impl: tps[impl] * flops_per_token for impl in IMPLS}  # FLOP/s; over the peak at the end
            spread = {impl: (tokens / max(samples[impl]), tokens / min(samples[impl])) for impl in IMPLS}
            rows.append((config.name, precision, batch_size, tps, sec["transformers"] / sec["lit_lm"], paired, mem,
                         mfu, spread, repeats, compiled))  # fmt: skip
            print(f"{config.name} {precision} B={batch_size}: lit_lm {tps['lit_lm']:,.0f} tok/s, transformers "
                  f"{tps['transformers']:,.0f} tok/s, ratio {sec['transformers'] / sec['lit_lm']:.2f}x (paired "
                  f"{paired:.2f}x); peak MiB "
                  f"{mem['lit_lm']:,.0f} vs {mem['transformers']:,.0f}", flush=True)  # fmt: skip
            if args.profile:
                for impl in IMPLS:
                    table = profile_top(steps[impl], device)
                    profiles.append(f"{config.name} {precision} {impl}\n{table}")
                    print(profiles[-1], flush=True)
        del models

    for precision in args.precision:  # again at the end: on a shared machine the better of the two is the peak
        peaks[precision] = max(peaks[precision], measure_peak(device, precision), key=lambda p: p[0])
    dropout = "preset (0.1)" if args.dropout is None else args.dropout
    header = (
        f"### train_throughput: forward + backward + AdamW step, seq {args.seq_len}, dropout {dropout}, "
        f"{date.today()}\n\n"
        f"Machine: {machine(device)}; {versions()}. lit_lm: the task's `training_step` (MaskedLM: MLM + NSP, "
        "MLM head at the masked positions only, head fused with the cross-entropy; CausalLM: LM head fused with "
        "the cross-entropy); transformers: `BertForPreTraining` (sdpa) / `OpenAIGPTLMHeadModel` (eager). "
        "Interleaved repeats (ABBA order), median (the range of the single-step rates in brackets); speed ratio = "
        "ratio of the medians, paired = median over rounds of the per-round ratio. Peak memory: "
        f"{'peak RSS growth over 2 steps in a fresh process' if device.type == 'cpu' else 'max_memory_allocated'}. "
        "MFU: lit_lm's model FLOPs per token for both sides over the precision's peak ("
        + "; ".join(f"{k}: {v[0] / 1e12:.3f} TFLOP/s, {v[1]}" for k, v in peaks.items())
        + ").\n\n"
        "| model | precision | batch | repeats | lit_lm tok/s | transformers tok/s | speed ratio (paired) | lit_lm MFU "
        "| transformers MFU | lit_lm peak MiB | transformers peak MiB |"
        + (" compiled tok/s | compiled / eager (paired) | compiled first step |" if args.compile else "")
        + "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.compile else "")
        + "\n"
    )
    table = header + "".join(
        f"| {name} | {prec} | {bs} | {reps} "
        f"| {tps['lit_lm']:,.0f} [{spread['lit_lm'][0]:,.0f}-{spread['lit_lm'][1]:,.0f}] "
        f"| {tps['transformers']:,.0f} [{spread['transformers'][0]:,.0f}-{spread['transformers'][1]:,.0f}] "
        f"| {ratio:.2f}x ({paired:.2f}x) | {mfu['lit_lm'] / peaks[prec][0]:.1%} "
        f"| {mfu['transformers'] / peaks[prec][0]:.1%} | {mem['lit_lm']:,.0f} "
        f"| {mem['transformers']:,.0f} |"
        + (f" {compiled[0]:,.0f} | {compiled[1]:.2f}x | {compiled[2]:.1f} s |" if compiled else "")
        + "\n"
        for name, prec, bs, tps, ratio, paired, mem, mfu, spread, reps, compiled in rows
    )
    record(table, RESULTS, args.record)


if __name__ == "__main__":
    main()
