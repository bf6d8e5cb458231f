"""Kernel tests run on a CUDA GPU when there is one, otherwise on the CPU through the Triton interpreter.

Triton decides interpreted-or-compiled when ``@triton.jit`` decorates a kernel, i.e. when ``lit_lm.kernels`` is
first imported; so ``TRITON_INTERPRET=1`` is set here, at collection time, before any test module imports it.
(Other test directories do not import ``lit_lm.kernels``.)
"""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where the kernels run: the GPU, or the CPU (interpreted)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    from lit_lm.kernels import is_interpreted

    if not is_interpreted():
        pytest.fail(
            "lit_lm.kernels was imported in compiled mode before tests/kernels/conftest.py set TRITON_INTERPRET=1 "
            f"(imported by: {sys.modules['lit_lm.kernels'].__spec__}); run the kernel tests in their own session "
            "or set TRITON_INTERPRET=1 in the environment"
        )
    return torch.device("cpu")


@pytest.fixture(autouse=True)
def poison_outputs():
    """Fill kernel outputs with NaN before each launch, so that unwritten elements fail the comparisons."""
    import lit_lm.kernels._flash_attention_triton as fa

    fa.POISON_OUTPUTS = True
    yield
    fa.POISON_OUTPUTS = False
