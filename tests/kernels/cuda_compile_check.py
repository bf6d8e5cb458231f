"""Compile the flash-attention kernels for NVIDIA GPUs on a machine without one (no launch, no driver).

The Triton interpreter (how the CPU tests run the kernels) accepts code that the real compiler rejects (loop-carried
type changes, unsupported shapes, ...). This script replays the launches that ``flash_attn_forward`` /
``flash_attn_backward`` would make on a GPU, with the tile sizes the GPU would use, and compiles each kernel to a
cubin for the given compute capabilities with Triton's own compiler and ptxas. It prints registers, spills and
shared memory per kernel (``cuobjdump -res-usage``) and exits non-zero if a compilation fails.

It uses Triton internals (``create_function_from_signature``, ``JITFunction._pack_args``) of Triton 3.x; run it in a
process where ``TRITON_INTERPRET`` is not set::

    python tests/kernels/cuda_compile_check.py [--capability 80 90] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("cuda_compile_check: unset TRITON_INTERPRET (it needs the real compiler)")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

import lit_lm.kernels._flash_attention_triton as fa  # noqa: E402


class _Recorder:
    """Stands in for a JITFunction: ``kernel[grid](*args, **kwargs)`` records the call instead of launching it."""

    def __init__(self, fn: Any, calls: list) -> None:
        self.fn = fn
        self.calls = calls

    def __getitem__(self, grid: tuple):
        def launch(*args: Any, **kwargs: Any) -> None:
            self.calls.append((self.fn, grid, args, kwargs))

        return launch


@contextmanager
def _recording(calls: list, capability: tuple[int, int]):
    names = ["_fwd_kernel", "_bwd_preprocess_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel"]
    saved = {n: getattr(fa, n) for n in names}
    saved_check, saved_override = fa._check_device, fa.CONFIG_OVERRIDE
    try:
        for n in names:
            setattr(fa, n, _Recorder(saved[n], calls))
        fa._check_device = lambda t: None

        def configs(head_dim: int, dtype: torch.dtype, device: torch.device) -> fa.AttentionConfigs:
            return fa.select_configs(head_dim, dtype, capability)

        saved_configs = fa._configs
        fa._configs = configs
        yield
    finally:
        for n, f in saved.items():
            setattr(fa, n, f)
        fa._check_device, fa.CONFIG_OVERRIDE = saved_check, saved_override
        fa._configs = saved_configs


def record_launches(
    capability: tuple[int, int], dtype: torch.dtype, head_dim: int, causal: bool, mask: bool, dropout: bool
) -> list:
    """The kernel launches (fn, grid, args, kwargs) of one forward + backward, with CPU stand-in tensors."""
    B, H, T = 2, 4, 1024
    qkv = torch.empty(B, T, 3, H, head_dim, dtype=dtype).permute(2, 0, 3, 1, 4)  # non-contiguous like the model
    q, k, v = qkv[0], qkv[1], qkv[2]
    key_mask = torch.ones(B, T, dtype=torch.int8) if mask else None
    kv_lens = torch.full((B,), T, dtype=torch.int32) if mask else None
    seed = torch.zeros(1, dtype=torch.int64) if dropout else None
    p = 0.1 if dropout else 0.0
    calls: list = []
    with _recording(calls, capability):
        out = torch.empty(B, T, H, head_dim, dtype=dtype).transpose(1, 2)
        lse = torch.empty(B, H, T, dtype=fa.lse_dtype(dtype))
        fa.flash_attn_forward(q, k, v, key_mask, kv_lens, seed, causal, p, head_dim**-0.5)
        fa.flash_attn_backward(torch.empty_like(out), None, q, k, v, out, lse, key_mask, kv_lens, seed, causal, p,
                               head_dim**-0.5)
    return calls


def compile_launch(fn: Any, args: tuple, kwargs: dict, capability: tuple[int, int]) -> Any:
    """Compile one recorded launch for ``capability`` exactly as ``JITFunction.run`` would specialise it."""
    target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def resource_usage(cubin: bytes) -> str:
    """Registers, stack (spills) and static shared memory of a cubin, from ``cuobjdump -res-usage``."""
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"lit_lm_fa_{os.getpid()}.cubin"
    tmp.write_bytes(cubin)
    try:
        res = subprocess.run([str(cuobjdump), "-res-usage", str(tmp)], capture_output=True, text=True)
    finally:
        tmp.unlink(missing_ok=True)
    usage = re.search(r"REG:(\d+) STACK:(\d+)", res.stdout)
    if res.returncode != 0 or usage is None:
        return f"(cuobjdump failed: {(res.stderr or res.stdout).strip()[:200]})"
    return f"regs={usage.group(1)} stack={usage.group(2)}B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capability", type=int, nargs="+", default=[80, 90], help="e.g. 80 (A100) 90 (H100)")
    parser.add_argument("--quick", action="store_true", help="one variant per head dim instead of all flags")
    parser.add_argument("--no-usage", action="store_true", help="skip the register/spill report")
    args = parser.parse_args(argv)

    failures = 0
    for cap_int in args.capability:
        capability = (cap_int // 10, cap_int % 10)
        variants = [(torch.float16, 64, True, True, True), (torch.bfloat16, 128, False, True, True)]
        if not args.quick:
            variants = [
                (dt, d, c, m, dp)
                for dt, d in itertools.product((torch.float16, torch.bfloat16), (16, 32, 64, 128))
                for c, m, dp in ((False, False, False), (True, True, True))
            ] + [(torch.float32, 64, True, True, False), (torch.float32, 128, False, True, True),
               (torch.float16, 80, True, False, False), (torch.float16, 256, True, True, False)]
        for dtype, head_dim, causal, mask, dropout in variants:
            for fn, _grid, fargs, fkwargs in record_launches(capability, dtype, head_dim, causal, mask, dropout):
                name = f"sm{cap_int} {fn.__name__:24s} {str(dtype)[6:]:8s} D={head_dim:<3d} causal={causal:d} " \
                       f"mask={mask:d} dropout={dropout:d}"
                try:
                    ck = compile_launch(fn, fargs, fkwargs, capability)
                except Exception as e:  # report every failure, not only the first
                    failures += 1
                    print(f"FAIL {name}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
                    continue
                usage = "" if args.no_usage else resource_usage(ck.asm["cubin"])
                print(f"ok   {name} warps={ck.metadata.num_warps} smem={ck.metadata.shared}B {usage}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
