"""Session-wide test set-up.

Triton decides between compiled and interpreted kernels when it is imported and when ``@triton.jit`` decorates a
kernel, and torch/Lightning may import Triton early (through torch._inductor). Without a GPU the kernel tests run
on the Triton interpreter, so the choice is made here, before any test module imports torch or lit_lm.
"""

import os
import shutil

if "TRITON_INTERPRET" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["TRITON_INTERPRET"] = "1"
