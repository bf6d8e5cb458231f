"""What the machine is: its CPU, and the fastest training precision it has.

A CPU's bf16 speed depends on its instructions, not on its vendor: with AVX512-BF16 (or AMX) a bf16 matrix product
runs ~2.5x faster than fp32 and lit_lm's training step ~1.9x faster in ``bf16-mixed``; on an AVX2-only CPU bf16 is
emulated and ~60x slower (benchmarks/RESULTS.md). So the precision is detected where the run starts, never
written into a config for one machine. Nothing here runs at import.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["PrecisionChoice", "cpu_flags", "cpu_name", "detect_precision", "native_bf16_flags"]

#: CPU feature flags (``/proc/cpuinfo``) that give native bf16 matrix products.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), for benchmark records."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where that file is not available)."""
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16_flags() -> list[str]:
    """The CPU's flags of :data:`BF16_CPU_FLAGS` (empty: bf16 would be emulated)."""
    flags = cpu_flags()
    return [f for f in BF16_CPU_FLAGS if f in flags]


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


@dataclass(frozen=True)
class PrecisionChoice:
    """A detected precision and why it was chosen (printed once and recorded in the run's hyperparameters)."""

    precision: str
    reason: str


def detect_precision(accelerator: str = "auto") -> PrecisionChoice:
    """The fastest precision that trains well on the device ``accelerator`` resolves to.

    - a CUDA GPU: ``bf16-mixed`` where it supports bf16 (Ampere and later), else ``16-mixed``;
    - a CPU with native bf16 (:data:`BF16_CPU_FLAGS`): ``bf16-mixed``;
    - any other CPU (AVX2-only: bf16 would be emulated) or device: ``32-true``.
    """
    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", f"{name} supports bf16")
        return PrecisionChoice("16-mixed", f"{name} has no bf16")
    if accelerator not in ("auto", "cpu"):
        return PrecisionChoice("32-true", f"accelerator {accelerator!r}: no detection for it")
    found = native_bf16_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return PrecisionChoice("bf16-mixed", f"CPU {cpu_name()} has {'/'.join(found)} (torch: {capability})")
    reason = f"CPU {cpu_name()} has no native bf16 (torch: {capability}; bf16 would be emulated)"
    return PrecisionChoice("32-true", reason)
