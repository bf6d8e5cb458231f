"""The kernels compile for NVIDIA GPUs (sm_80, sm_90) with the real Triton compiler, checked without a GPU.

The CPU tests run the kernels through the interpreter, which accepts some code the compiler rejects; this runs
``cuda_compile_check.py`` in a fresh process (no TRITON_INTERPRET) on a representative subset of variants.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_kernels_compile_for_sm80_and_sm90() -> None:
    pytest.importorskip("triton.backends.nvidia", reason="this Triton build has no NVIDIA backend")
    script = Path(__file__).with_name("cuda_compile_check.py")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(
        [sys.executable, str(script), "--quick", "--no-usage", "--capability", "80", "90"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    assert res.stdout.count("ok ") == 16, res.stdout
