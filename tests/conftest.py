"""Session-wide test set-up.

Triton decides between compiled and interpreted kernels when it is imported and when ``@triton.jit`` decorates a
kernel, and torch/Lightning may import Triton early (through torch._inductor). Without a GPU the kernel tests run
on the Triton interpreter, so the choice is made here, before any test module imports torch or lit_lm.
"""

import os
import shutil

if "TRITON_INTERPRET" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["TRITON_INTERPRET"] = "1"

# `make test` runs the tests in parallel processes (pytest-xdist, `-n`): each gets its share of the cores for torch's
# threads, so that two workers on two cores do not oversubscribe them (set before torch is imported).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))


# ----------------------------------------------------------------------------------- checkpoints shared by test files
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from cli_helpers import cli, fast_args  # noqa: E402


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, cache) -> dict[str, Path]:
    """Tiny GPT and BERT checkpoints written by the quickstart pretraining configs (a few steps each)."""
    out = {}
    for family in ("gpt", "bert"):
        root = tmp_path_factory.mktemp(f"{family}_pretrain")
        c = cli(
            "fit", "--config", f"experiments/quickstart/{family}_pretrain.yaml",
            *fast_args(root, cache, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
                   "--trainer.limit_val_batches", "2"),
        )  # fmt: skip
        assert c.trainer.global_step == 3
        out[family] = root / "checkpoints" / "last.ckpt"
        assert out[family].is_file()
    return out


