"""Shared by the benchmark scripts: peak host memory of this process (for the memory probes, run in fresh
subprocesses) and recording a result table in RESULTS.md (only when asked: ``--record``).

``ru_maxrss`` is not used: it survives ``exec``, so a child started by a big parent would report the parent's peak.
"""

from __future__ import annotations

from pathlib import Path


def status_mib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) RSS of this process in MiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0), so that the peak of building the model does not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


RESULTS_HEADER = "# Benchmark results\n\nEach section is appended by a script in `benchmarks/` run with `--record`.\n\n"


def record(table: str, results: Path, enabled: bool) -> None:
    """Print a benchmark's markdown table and, if ``enabled`` (the scripts' ``--record``), append it to ``results``
    (RESULTS.md, a tracked file: a run only to look at the numbers leaves it alone)."""
    print("\n" + table)
    if not enabled:
        print(f"(not recorded: --record appends this table to {results.name})")
        return
    if not results.exists():
        results.write_text(RESULTS_HEADER)
    with results.open("a") as f:
        f.write(table + "\n")
    print(f"appended to {results}")


def machine(device: object = None) -> str:
    """The machine a table was measured on: the GPU's name (``device`` a CUDA device, or None with a GPU present),
    else the CPU's model, cores, torch's threads, CPU capability (AVX2 / AVX512) and whether it has native bf16 (it
    decides whether bf16 is fast)."""
    import os

    import torch

    from lit_lm.callbacks import cpu_name
    from lit_lm.hardware import native_bf16_flags

    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda:
        return torch.cuda.get_device_name()
    capability = torch.backends.cpu.get_cpu_capability()
    flags = native_bf16_flags()
    bf16 = f"native bf16 ({'/'.join(flags)})" if flags else "no native bf16"
    return (f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch CPU capability "
            f"{capability}, {bf16}")
