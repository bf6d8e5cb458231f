"""Benchmark lit_lm's Triton FlashAttention-2 kernel against ``torch.nn.functional.scaled_dot_product_attention``.

GPU only (on a machine without CUDA it says so and exits 0). For each dtype (bf16, fp16), head dim (64, 128), causal
or not, with or without a key padding mask, and sequence length (512 .. 16k) it measures, for our kernel and every
applicable SDPA backend (FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION, MATH):

- forward and forward+backward time (median, ``triton.testing.do_bench``) and TFLOP/s;
- peak extra memory of forward+backward (``torch.cuda.max_memory_allocated`` above the inputs).

Shapes follow the FlashAttention-2 paper: batch * seqlen = 16k tokens, hidden size 2048 (32 heads of 64 or 16 heads
of 128). TFLOP/s count the dense attention matmuls (4 * B * H * T^2 * D forward, halved when causal; backward = 2.5x
forward) for every implementation alike, so with a padding mask they are "dense-equivalent" TFLOP/s: an
implementation that skips padded keys shows a higher number. The padding mask keeps a length in [T/2, T] per
sequence (right padding). FLASH_ATTENTION takes no mask, MATH runs only up to --math-max-seq.

Before timing, the same run checks correctness at a moderate size: relative error ``||x - ref|| / ||ref||`` of the
output and of dq, dk, dv of every implementation against an fp32 math reference.

The tables are printed as markdown; ``--record`` also appends them as a new section to ``benchmarks/RESULTS.md``
(with GPU name, torch / triton versions and date). Every case is guarded: an out-of-memory prints ``oom``, an
unsupported backend ``n/a``, and a time budget (--time-budget) stops the sweep early rather than overrunning.

    python benchmarks/attention.py            # full sweep, ~5 minutes on an H100
    python benchmarks/attention.py --quick    # a small subset, ~1 minute
    python benchmarks/attention.py --tune     # also try other tile sizes for our kernel (adds minutes)
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: make lit_lm importable without installing it
    sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Sections appended by the scripts in `benchmarks/` (newest last); each names the machine, versions and date.\n"
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
HIDDEN = 2048
TOKENS = 16384
IMPLS = ("triton", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math")


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    dtype: str
    head_dim: int
    causal: bool
    masked: bool
    seq: int

    @property
    def batch(self) -> int:
        return max(1, TOKENS // self.seq)

    @property
    def heads(self) -> int:
        return HIDDEN // self.head_dim


@dataclass
class Measurement:
    """Results of one implementation on one case; strings ('oom', 'n/a', ...) where there is no number."""

    fwd_ms: float | str = "-"
    fwdbwd_ms: float | str = "-"
    peak_mib: float | str = "-"


# Errors seen during the run, deduplicated: (impl, exception type, first line) -> [count, first full message].
ERRORS: dict[tuple[str, str, str], list] = {}


def record_error(impl: str, where: str, e: BaseException) -> str:
    """Remember an exception (printed in full the first time) and return its short table cell."""
    text = str(e).strip()
    key = (impl, type(e).__name__, text.splitlines()[0][:200] if text else "")
    if key not in ERRORS:
        ERRORS[key] = [0, f"{where}: {type(e).__name__}: {text[:3000]}"]
        if describe_error(e) == "err":
            print(f"ERROR {impl} {ERRORS[key][1]}", flush=True)
    ERRORS[key][0] += 1
    return describe_error(e)


# ----------------------------------------------------------------------------------------------------------------
# Inputs and implementations
# ----------------------------------------------------------------------------------------------------------------


def make_inputs(
    case: Case, device: torch.device, seed: int = 0, batch: int | None = None, heads: int | None = None
) -> dict:
    """q, k, v (B, H, T, D) requiring grad, grad_out, and the masks in both conventions (B, H default to the
    case's benchmark shape)."""
    g = torch.Generator(device=device).manual_seed(seed)
    B, H, T = batch or case.batch, heads or case.heads, case.seq
    shape = (B, H, T, case.head_dim)
    dtype = DTYPES[case.dtype]
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g).requires_grad_() for _ in range(3))
    inputs = {"q": q, "k": k, "v": v, "grad_out": None, "key_mask": None, "sdpa_mask": None}
    if case.masked:
        lengths = T - (torch.arange(B, device=device) * (T // 2)) // max(B, 2)  # in [T/2, T]
        key_mask = torch.arange(T, device=device)[None, :] < lengths[:, None]  # (B, T) bool
        inputs["key_mask"] = key_mask.long()
        sdpa_mask = key_mask[:, None, None, :]  # (B, 1, 1, T)
        if case.causal:
            sdpa_mask = sdpa_mask & torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (B, 1, T, T)
        inputs["sdpa_mask"] = sdpa_mask
    return inputs


def sdpa_backends() -> dict[str, object]:
    from torch.nn.attention import SDPBackend

    backends = {
        "sdpa-flash": SDPBackend.FLASH_ATTENTION,
        "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
        "sdpa-math": SDPBackend.MATH,
    }
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        backends["sdpa-cudnn"] = SDPBackend.CUDNN_ATTENTION
    return backends


def make_forward(impl: str, case: Case, inputs: dict) -> Callable[[], torch.Tensor] | None:
    """A zero-argument forward for ``impl``, or None when the implementation does not apply to the case."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    if impl == "triton":
        from lit_lm.kernels import flash_attention

        return lambda: flash_attention(q, k, v, inputs["key_mask"], causal=case.causal)
    backends = sdpa_backends()
    if impl not in backends:
        return None
    if impl == "sdpa-flash" and case.masked:
        return None  # the flash backend takes no attention mask
    from torch.nn.attention import sdpa_kernel

    backend = backends[impl]
    mask = inputs["sdpa_mask"]
    is_causal = case.causal and mask is None

    def forward() -> torch.Tensor:
        with sdpa_kernel(backend), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    return forward


def reference(case: Case, inputs: dict, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """fp32 math reference: output and dq, dk, dv."""
    q, k, v = (inputs[n].detach().float().requires_grad_() for n in ("q", "k", "v"))
    s = (q @ k.transpose(-2, -1)) / math.sqrt(case.head_dim)  # (B, H, T, T)
    mask = inputs["sdpa_mask"]
    if mask is None and case.causal:
        mask = torch.ones(case.seq, case.seq, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    out = s.softmax(dim=-1) @ v
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out.float())
    return out.detach(), dq, dk, dv


# ----------------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------------


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def describe_error(e: BaseException) -> str:
    if is_oom(e):
        return "oom"
    text = str(e).lower()
    phrases = ("no available kernel", "no viable backend", "not supported", "unsupported input", "unsupported dtype")
    if isinstance(e, RuntimeError) and any(m in text for m in phrases):
        return "n/a"
    return "err"


def time_ms(fn: Callable[[], object], grad_to_none: list[torch.Tensor], warmup: int, rep: int) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median"))


def measure(impl: str, case: Case, inputs: dict, args: argparse.Namespace) -> Measurement:
    """Forward time, forward+backward time and peak memory of one implementation on one case."""
    res = Measurement()
    if impl == "sdpa-math" and case.seq > args.math_max_seq:
        res.fwd_ms = res.fwdbwd_ms = res.peak_mib = f">{args.math_max_seq}"
        return res
    forward = make_forward(impl, case, inputs)
    if forward is None:
        res.fwd_ms = res.fwdbwd_ms = res.peak_mib = "n/a"
        return res
    q, k, v, grad_out = inputs["q"], inputs["k"], inputs["v"], inputs["grad_out"]

    def step() -> None:
        forward().backward(grad_out)

    try:
        with torch.no_grad():
            res.fwd_ms = time_ms(forward, [], args.warmup, args.rep)
    except Exception as e:
        res.fwd_ms = res.fwdbwd_ms = res.peak_mib = record_error(impl, f"{case} forward", e)
        torch.cuda.empty_cache()
        return res
    try:
        torch.cuda.synchronize()
        q.grad = k.grad = v.grad = None
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        res.peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        res.fwdbwd_ms = time_ms(step, [q, k, v], args.warmup, args.rep)
    except Exception as e:
        res.fwdbwd_ms = record_error(impl, f"{case} forward+backward", e)
        if not isinstance(res.peak_mib, float):
            res.peak_mib = res.fwdbwd_ms
        torch.cuda.empty_cache()
    q.grad = k.grad = v.grad = None
    return res


def tflops(case: Case, ms: float | str, backward: bool) -> str:
    from lit_lm.kernels import flops

    if not isinstance(ms, float):
        return ms
    f = flops(case.batch, case.heads, case.seq, case.seq, case.head_dim, case.causal, backward)
    value = f / (ms * 1e-3) / 1e12
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


# ----------------------------------------------------------------------------------------------------------------
# Parallel pre-compilation: each Triton kernel variant takes seconds to compile; do it in worker processes that fill
# Triton's on-disk cache, so the timed process only loads cubins.
# ----------------------------------------------------------------------------------------------------------------


def _warm_variant(dtype: str, head_dim: int, causal: bool, masked: bool) -> str:
    """Worker: run forward + backward once on a small input with the benchmark's specialisation (same H, T % 16)."""
    try:
        case = Case(dtype, head_dim, causal, masked, 256)
        inputs = make_inputs(case, torch.device("cuda"))
        out = make_forward("triton", case, inputs)()
        out.backward(torch.randn_like(out))
        torch.cuda.synchronize()
        return ""
    except Exception as e:  # the main process will compile (and report) it itself
        return f"warm-up {dtype} D={head_dim} causal={causal} mask={masked}: {type(e).__name__}: {e}"


def precompile(cases: list[Case], workers: int) -> None:
    variants = sorted({(c.dtype, c.head_dim, c.causal, c.masked) for c in cases})
    if workers <= 0 or not variants:
        return
    import multiprocessing as mp

    t0 = time.time()
    workers = min(workers, len(variants))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for msg in pool.map(_warm_variant, *zip(*variants, strict=True)):
                if msg:
                    print(msg, flush=True)
    except Exception as e:  # e.g. a worker died: the timed process compiles lazily instead
        print(f"pre-compilation failed ({type(e).__name__}: {e}); kernels compile on first use", flush=True)
        return
    print(f"pre-compiled {len(variants)} kernel variants in {time.time() - t0:.0f} s with {workers} processes",
          flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Sweeps
# ----------------------------------------------------------------------------------------------------------------


def correctness(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Relative errors of every implementation vs the fp32 reference, at a moderate size."""
    lines = [
        f"Correctness: relative error vs fp32 math reference (B=2, H=16, T={args.check_seq}; padding keeps T/2..T).",
        "",
        "| dtype | D | causal | mask | impl | out | dq | dk | dv |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    worst: dict[str, float] = {}
    for dtype, head_dim, causal, masked in itertools.product(args.dtypes, args.head_dims, (False, True), (False, True)):
        case = Case(dtype, head_dim, causal, masked, args.check_seq)
        inputs = make_inputs(case, device, seed=1, batch=2, heads=16)  # H % 16 == 0: same kernel specialisation
        grad_out = torch.randn_like(inputs["q"])
        ref = reference(case, inputs, grad_out)
        for impl in IMPLS:
            forward = make_forward(impl, case, inputs)
            if forward is None:
                continue
            try:
                out = forward()
                grads = torch.autograd.grad(out, (inputs["q"], inputs["k"], inputs["v"]), grad_out)
                errs = [rel_err(x, r) for x, r in zip((out, *grads), ref, strict=True)]
                cells = [f"{e:.1e}" for e in errs]
                worst[impl] = max(worst.get(impl, 0.0), *errs)
            except Exception as e:
                cells = [record_error(impl, f"correctness {case}", e)] * 4
            lines.append(f"| {dtype} | {head_dim} | {causal:d} | {masked:d} | {impl} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Worst relative error per implementation: "
                 + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))
    ours, best = worst.get("triton"), min((v for k, v in worst.items() if k != "triton"), default=None)
    if ours is not None and best is not None and ours > max(3 * best, 2e-2):
        lines.append(f"**WARNING: triton error {ours:.1e} is well above the best SDPA backend's {best:.1e}**")
    return lines


def speed(args: argparse.Namespace, device: torch.device, cases: list[Case], deadline: float) -> list[str]:
    """Timing and memory tables (markdown lines) for all cases, within the time budget."""
    impls = [i for i in IMPLS if i == "triton" or i in sdpa_backends()]
    head = "| dtype | D | causal | mask | T | BxH | " + " | ".join(impls) + " |"
    sep = "|---" * (6 + len(impls)) + "|"
    speed_lines = [
        "Speed: TFLOP/s forward / forward+backward (dense-equivalent FLOPs; higher is better).",
        "",
        head,
        sep,
    ]
    mem_lines = ["Peak extra memory of forward+backward, MiB (lower is better).", "", head, sep]
    for case in cases:
        prefix = (f"| {case.dtype} | {case.head_dim} | {case.causal:d} | {case.masked:d} | {case.seq} | "
                  f"{case.batch}x{case.heads} | ")
        if time.time() > deadline:
            speed_lines.append(prefix + " | ".join(["skipped (time budget)"] * len(impls)) + " |")
            mem_lines.append(speed_lines[-1])
            continue
        t0 = time.time()
        try:
            inputs = make_inputs(case, device)
            inputs["grad_out"] = torch.randn_like(inputs["q"])
        except Exception as e:
            speed_lines.append(prefix + " | ".join([record_error("inputs", str(case), e)] * len(impls)) + " |")
            torch.cuda.empty_cache()
            continue
        results = {impl: measure(impl, case, inputs, args) for impl in impls}
        del inputs
        cells = [f"{tflops(case, r.fwd_ms, False)} / {tflops(case, r.fwdbwd_ms, True)}" for r in results.values()]
        mems = [f"{r.peak_mib:.0f}" if isinstance(r.peak_mib, float) else r.peak_mib for r in results.values()]
        speed_lines.append(prefix + " | ".join(cells) + " |")
        mem_lines.append(prefix + " | ".join(mems) + " |")
        print(speed_lines[-1], f"({time.time() - t0:.1f} s)", flush=True)
    return speed_lines + [""] + mem_lines


def tune(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Try other tile sizes for each of our kernels (one kernel at a time) at T=--tune-seq; report the fastest."""
    import lit_lm.kernels._flash_attention_triton as fa

    bc = fa.BlockConfig
    candidates = {
        "fwd": [bc(128, 64, 8, 3), bc(128, 64, 4, 3), bc(128, 128, 8, 3), bc(64, 64, 4, 3), bc(128, 32, 8, 3),
                bc(128, 64, 8, 4)],
        "bwd_dkdv": [bc(32, 128, 8, 3), bc(32, 64, 4, 3), bc(64, 64, 4, 3), bc(64, 128, 8, 3), bc(32, 128, 4, 3)],
        "bwd_dq": [bc(128, 32, 8, 3), bc(64, 32, 4, 3), bc(128, 64, 8, 3), bc(64, 64, 4, 3)],
    }
    lines = [f"Tile-size sweep of the triton kernel (bf16, T={args.tune_seq}, no mask): ms of the forward (fwd rows) "
             "or forward+backward (bwd rows).", "",
             "| D | causal | kernel | config (BM, BN, warps, stages) | ms |", "|---|---|---|---|---|"]
    for head_dim, causal in itertools.product(args.head_dims, (False, True)):
        case = Case("bf16", head_dim, causal, False, args.tune_seq)
        inputs = make_inputs(case, device)
        inputs["grad_out"] = torch.randn_like(inputs["q"])
        default = fa.select_configs(head_dim, torch.bfloat16, torch.cuda.get_device_capability(device))
        for kernel, cands in candidates.items():
            best = None
            for cfg in cands:
                fa.CONFIG_OVERRIDE = fa.AttentionConfigs(**{**default.__dict__, kernel: cfg})
                forward = make_forward("triton", case, inputs)
                try:
                    if kernel == "fwd":
                        with torch.no_grad():
                            ms = time_ms(forward, [], args.warmup, args.rep)
                    else:
                        ms = time_ms(lambda f=forward, g=inputs["grad_out"]: f().backward(g),
                                     [inputs["q"], inputs["k"], inputs["v"]], args.warmup, args.rep)
                    cell = f"{ms:.3f}"
                    best = min(best or (ms, cfg), (ms, cfg), key=lambda t: t[0])
                except Exception as e:
                    cell = record_error("triton", f"tune {kernel} {cfg}", e)
                mark = " (default)" if cfg == getattr(default, kernel) else ""
                lines.append(f"| {head_dim} | {causal:d} | {kernel} | {cfg.block_m}, {cfg.block_n}, {cfg.num_warps}, "
                             f"{cfg.num_stages}{mark} | {cell} |")
                print(lines[-1], flush=True)
            fa.CONFIG_OVERRIDE = None
            if best is not None:
                lines.append(f"| {head_dim} | {causal:d} | {kernel} | **best** {best[1]} | {best[0]:.3f} |")
    return lines


def append_results(section: list[str]) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER)
    with RESULTS.open("a") as f:
        f.write("\n" + "\n".join(section) + "\n")
    print(f"appended to {RESULTS}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small subset: bf16, D=64, T in {1024, 4096}")
    p.add_argument("--seqs", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"], choices=sorted(DTYPES))
    p.add_argument("--math-max-seq", type=int, default=4096, help="longest sequence for the MATH backend")
    p.add_argument("--check-seq", type=int, default=1024, help="sequence length of the correctness check")
    p.add_argument("--warmup", type=int, default=10, help="do_bench warm-up time, ms")
    p.add_argument("--rep", type=int, default=40, help="do_bench measuring time, ms")
    p.add_argument("--time-budget", type=float, default=420.0, help="stop starting new cases after this many s")
    p.add_argument("--workers", type=int, default=min(8, (os.cpu_count() or 2) // 2),
                   help="processes that pre-compile the Triton kernels (0: compile lazily in this process)")
    p.add_argument("--tune", action="store_true", help="also sweep tile sizes of our kernel")
    p.add_argument("--tune-seq", type=int, default=4096, help="sequence length of the --tune sweep")
    p.add_argument("--record", action="store_true",
                   help=f"append the tables to benchmarks/{RESULTS.name} (a tracked file); default: print only")
    args = p.parse_args(argv)
    if args.quick:
        args.seqs, args.head_dims, args.dtypes = [1024, 4096], [64], ["bf16"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/attention.py needs a CUDA GPU (the Triton kernel and the fused SDPA backends run only "
              "there); no GPU found, nothing to do.")
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("TRITON_INTERPRET is set: unset it to benchmark the compiled kernels.")
        return 1
    import triton

    import lit_lm.kernels  # noqa: F401  (fails early, with a clear ImportError, if triton is missing)

    start = time.time()
    device = torch.device("cuda")
    gpu = torch.cuda.get_device_name(device)
    cap = torch.cuda.get_device_capability(device)
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = [
        f"## attention: lit_lm triton FlashAttention-2 vs SDPA backends ({gpu}, {when})",
        "",
        f"- GPU: {gpu} (sm_{cap[0]}{cap[1]}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"triton {triton.__version__}, cuDNN {torch.backends.cudnn.version()}, Python {platform.python_version()}",
        f"- command: `python benchmarks/attention.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"- shapes: B*T = {TOKENS} tokens, H*D = {HIDDEN}; timings are medians of triton.testing.do_bench",
        "",
    ]
    print("\n".join(header), flush=True)

    cases = [
        Case(dtype, head_dim, causal, masked, seq)
        for dtype, head_dim, causal, masked, seq in itertools.product(
            args.dtypes, args.head_dims, (False, True), (False, True), args.seqs
        )
    ]
    precompile(cases, args.workers)

    section = header
    try:
        check = correctness(args, device)
        print("\n".join(check), flush=True)
        section += check + [""]
    except Exception:
        traceback.print_exc()
        section += ["Correctness check failed with an exception (see the console log).", ""]
    torch.cuda.empty_cache()

    deadline = start + args.time_budget
    section += speed(args, device, cases, deadline) + [""]
    if args.tune:
        try:
            section += tune(args, device) + [""]
        except Exception:
            traceback.print_exc()
    if ERRORS:
        section.append("Errors and unsupported cases (count, first occurrence):")
        section.append("")
        for (impl, _, _), (count, message) in ERRORS.items():
            first_line = message.splitlines()[0][:300].replace("|", "/")
            section.append(f"- {impl} x{count}: {first_line}")
        section.append("")
    section.append(f"Total run time {time.time() - start:.0f} s.")
    print("\n".join(section))
    if args.record:
        append_results(section)
    else:
        print(f"(not recorded: --record appends these tables to {RESULTS.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
