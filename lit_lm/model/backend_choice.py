"""``attention_backend: auto`` by evidence: the Triton kernel only where it was measured faster, else SDPA.

The first time attention runs with a new *shape class* (device name, dtype, head size, sequence-length bucket,
causal, padded or not), :class:`BackendChooser` runs both backends once on those very tensors, without gradients:

1. Triton unavailable (not CUDA, no triton, an import error): SDPA.
2. Triton raises, or its output differs from SDPA's beyond the dtype's tolerance: SDPA, and one warning line.
3. Otherwise both are timed (best of ``repeats``, the device synchronised) and the faster one is kept.

The choice and its reason are logged once per shape class and cached for the process. A Triton failure later (a
launch error on a new shape of the same class) switches that class to SDPA with one warning, never a crash: the
failing call itself is recomputed with SDPA. (A failure inside Triton's *backward* surfaces in ``backward()``, after
this choice; the forward probe runs the kernel's compile and launch path first, which is where it fails in practice.)
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["BackendChooser", "Choice", "CHOOSER"]

log = logging.getLogger(__name__)

#: Largest element-wise difference accepted between the backends' outputs, by dtype (the kernel accumulates in fp32;
#: bf16/fp16 outputs are rounded differently).
TOLERANCE = {torch.float32: 2e-3, torch.float64: 1e-6, torch.float16: 2e-2, torch.bfloat16: 6e-2}

ShapeKey = tuple[str, str, int, int, bool, bool]
Runner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", bool, float], torch.Tensor]


@dataclass(frozen=True)
class Choice:
    backend: str  # "triton" or "sdpa"
    reason: str


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _triton_importable(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda":
        return False, f"the Triton kernel runs on CUDA, this is {device.type}"
    try:
        from lit_lm.kernels import flash_attention  # noqa: F401
    except Exception as e:  # ImportError, or a Triton that fails while importing
        return False, f"the Triton kernel cannot be imported ({type(e).__name__}: {e})"
    return True, ""


def run_triton(q, k, v, attention_mask, causal: bool, scale: float) -> torch.Tensor:
    from lit_lm.kernels import flash_attention

    return flash_attention(q, k, v, attention_mask, causal=causal, dropout_p=0.0, scale=scale)


def run_sdpa(q, k, v, attention_mask, causal: bool, scale: float) -> torch.Tensor:
    from lit_lm.model.attention import key_padding_to_bool_mask

    mask = None if attention_mask is None else key_padding_to_bool_mask(attention_mask, causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale)


def wall_timer(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up), the device synchronised around each."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


class BackendChooser:
    """Chooses and remembers the attention backend per shape class (see the module docstring).

    Args:
        available: ``device -> (usable, why not)``; default: CUDA and an importable kernel.
        triton / sdpa: The two implementations, ``(q, k, v, mask, causal, scale) -> out``.
        timer: ``(fn, repeats, device) -> seconds``.
        repeats: Timed calls per backend.
    """

    def __init__(
        self,
        available: Callable[[torch.device], tuple[bool, str]] = _triton_importable,
        triton: Runner = run_triton,
        sdpa: Runner = run_sdpa,
        timer: Callable[[Callable[[], object], int, torch.device], float] = wall_timer,
        repeats: int = 5,
    ) -> None:
        self.available, self.triton, self.sdpa, self.timer, self.repeats = available, triton, sdpa, timer, repeats
        self.choices: dict[ShapeKey, Choice] = {}

    @staticmethod
    def key(q: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool) -> ShapeKey:
        """(device name, dtype, head size, length bucket: the next power of two, causal, padded)."""
        length = q.size(-2)
        bucket = 1 << max(0, (length - 1).bit_length())
        return (_device_name(q.device), str(q.dtype).removeprefix("torch."), q.size(-1), bucket, causal,
                attention_mask is not None)  # fmt: skip

    def choose(self, q, k, v, attention_mask, causal: bool, scale: float) -> str:
        """The backend for this call's shape class, probing it the first time."""
        if q.device.type != "cuda" and self.available is _triton_importable:
            return "sdpa"  # the hot path on CPUs: nothing to choose
        key = self.key(q, attention_mask, causal)
        choice = self.choices.get(key)
        if choice is None:
            if torch.compiler.is_compiling():
                return "sdpa"  # no probing inside a traced graph
            choice = self._probe(q, k, v, attention_mask, causal, scale)
            self.choices[key] = choice
            log.info("attention backend %s for %s: %s", choice.backend, _describe(key), choice.reason)
        return choice.backend

    def _probe(self, q, k, v, attention_mask, causal: bool, scale: float) -> Choice:
        ok, why = self.available(q.device)
        if not ok:
            return Choice("sdpa", why)
        args = (q.detach(), k.detach(), v.detach(), attention_mask, causal, scale)
        with torch.no_grad():
            reference = self.sdpa(*args)
            try:
                out = self.triton(*args)
            except Exception as e:  # a compile or launch error: never a crash
                return self._fall_back(f"the Triton kernel failed on first use ({type(e).__name__}: {e})")
            real = (attention_mask.bool()[:, None, :, None] if attention_mask is not None else
                    torch.ones(1, dtype=torch.bool, device=q.device))  # padded query rows are meaningless  # fmt: skip
            diff = ((out.float() - reference.float()).abs() * real).max().item()
            if not diff <= TOLERANCE.get(q.dtype, 1e-2):
                return self._fall_back(f"the Triton kernel's output differs from SDPA's by {diff:.3g}")
            t_triton = self.timer(lambda: self.triton(*args), self.repeats, q.device)
            t_sdpa = self.timer(lambda: self.sdpa(*args), self.repeats, q.device)
        timings = f"Triton {t_triton * 1e3:.3f} ms, SDPA {t_sdpa * 1e3:.3f} ms"
        if t_triton < t_sdpa:
            return Choice("triton", f"measured {t_sdpa / max(t_triton, 1e-12):.2f}x faster than SDPA ({timings})")
        return Choice("sdpa", f"SDPA measured faster ({timings})")

    @staticmethod
    def _fall_back(reason: str) -> Choice:
        warnings.warn(f"attention_backend auto: using SDPA: {reason}", RuntimeWarning, stacklevel=4)
        return Choice("sdpa", reason)

    def failed(self, q: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool, error: Exception) -> None:
        """Record that Triton failed at run time for this shape class: SDPA from now on, one warning."""
        key = self.key(q, attention_mask, causal)
        reason = f"the Triton kernel failed ({type(error).__name__}: {error})"
        self.choices[key] = self._fall_back(reason)
        log.info("attention backend sdpa for %s: %s", _describe(key), reason)


def _describe(key: ShapeKey) -> str:
    device, dtype, head, bucket, causal, padded = key
    return (f"{device} {dtype}, head size {head}, length <= {bucket}, {'causal' if causal else 'bidirectional'}"
            f"{', padded' if padded else ''}")  # fmt: skip


#: The process-wide chooser that ``attention_backend: auto`` uses.
CHOOSER = BackendChooser()
