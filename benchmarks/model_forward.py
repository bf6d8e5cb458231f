"""Forward+backward throughput and peak memory: lit_lm's Encoder/Decoder vs Hugging Face transformers.

Both sides get the same architecture, weights-shape, batch and sequence length; timings alternate between the
two implementations in one process so machine noise hits both alike. Peak memory is measured per
implementation in a fresh subprocess (peak RSS growth on CPU, ``max_memory_allocated`` on CUDA).

    python benchmarks/model_forward.py                      # bert-mini and gpt-mini, fp32 and bf16 autocast
    python benchmarks/model_forward.py --preset bert-base --batch-size 8 --seq-len 128
    python benchmarks/model_forward.py --record             # and append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch
from _common import machine, record, reset_peak_rss, status_mib  # benchmarks/_common.py

from lit_lm.config import TransformerConfig
from lit_lm.model import build_backbone
from lit_lm.model.hf import config_to_hf

RESULTS = Path(__file__).with_name("RESULTS.md")


def build(impl: str, config: TransformerConfig) -> torch.nn.Module:
    if impl == "lit_lm":
        return build_backbone(config)
    import transformers

    hf = config_to_hf(config)
    hf.pop("architectures")
    fields = {k: v for k, v in hf.items() if k != "model_type"}
    if config.causal:  # OpenAIGPTModel has a single (eager) attention implementation
        return transformers.OpenAIGPTModel(transformers.OpenAIGPTConfig(**fields))
    cfg = transformers.BertConfig(**fields, attn_implementation="sdpa")
    return transformers.BertModel(cfg, add_pooling_layer=False)


def make_step(impl: str, model: torch.nn.Module, batch: dict, device: torch.device, dtype: torch.dtype | None):
    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if impl == "lit_lm":
                hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"])
            else:
                hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hidden.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    return step


def make_batch(config: TransformerConfig, batch_size: int, seq_len: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_pair(steps: dict, device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each implementation, measured alternately."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def memory_probe(args) -> None:
    """Run in a subprocess: print peak memory growth (MiB) of two training steps of one implementation."""
    device = torch.device(args.device)
    config = TransformerConfig.from_name(args.preset, dropout=0.0, attention_dropout=0.0, attention_backend="sdpa")
    model = build(args.memory_probe, config).to(device)
    batch = make_batch(config, args.batch_size, args.seq_len, device)
    step = make_step(args.memory_probe, model, batch, device, _dtype(args.precision))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = status_mib("VmRSS") * 2**20
    step()
    step()
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else status_mib("VmHWM") * 2**20
    print(json.dumps({"peak_mib": (peak - base) / 2**20}))


def _dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]


def measure_memory(args, impl: str, preset: str, precision: str) -> float:
    cmd = [
        sys.executable, __file__, "--memory-probe", impl, "--preset", preset, "--precision", precision,
        "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--device", args.device,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="+", default=["bert-mini", "gpt-mini"])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"], choices=["fp32", "bf16-mixed", "16-mixed"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        args.preset, args.precision = args.preset[0], args.precision[0]
        return memory_probe(args)

    device = torch.device(args.device)
    rows = []
    for preset in args.preset:
        config = TransformerConfig.from_name(preset, dropout=0.0, attention_dropout=0.0, attention_backend="sdpa")
        if args.seq_len > config.n_positions:
            config = config.replace(n_positions=args.seq_len)
        models = {impl: build(impl, config).to(device) for impl in ("lit_lm", "transformers")}
        batch = make_batch(config, args.batch_size, args.seq_len, device)
        for precision in args.precision:
            steps = {k: make_step(k, m, batch, device, _dtype(precision)) for k, m in models.items()}
            sec = time_pair(steps, device, args.repeats, args.warmup)
            mem = {impl: measure_memory(args, impl, preset, precision) for impl in models}
            tokens = args.batch_size * args.seq_len
            rows.append(
                (preset, precision, tokens / sec["lit_lm"], tokens / sec["transformers"],
                 sec["transformers"] / sec["lit_lm"], mem["lit_lm"], mem["transformers"])
            )  # fmt: skip
            ours, ref = tokens / sec["lit_lm"], tokens / sec["transformers"]
            print(f"{preset} {precision}: ours {ours:.0f} tok/s, ref {ref:.0f}")

    header = (
        f"### model_forward: forward+backward, batch {args.batch_size} x seq {args.seq_len}, {date.today()}\n\n"
        f"Machine: {machine()}; torch {torch.__version__}; transformers (sdpa attention) as reference.\n\n"
        "| preset | precision | lit_lm tok/s | transformers tok/s | speed ratio "
        "| lit_lm peak MiB | transformers peak MiB |\n"
        "|---|---|---:|---:|---:|---:|---:|\n"
    )
    table = header + "".join(
        f"| {r[0]} | {r[1]} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:.2f}x | {r[5]:,.0f} | {r[6]:,.0f} |\n" for r in rows
    )
    record(table, RESULTS, args.record)


if __name__ == "__main__":
    main()
