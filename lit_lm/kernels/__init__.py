"""Triton kernels, each with its autograd / custom-op wrapper.

- :func:`flash_attention`: fused FlashAttention-2 attention (forward + backward, causal, key padding masks,
  dropout, fp16/bf16/fp32), registered as the ``torch.ops.lit_lm.flash_attn_fwd`` / ``flash_attn_bwd`` custom ops
  so that it works under autocast, ``torch.compile`` and DDP::

      from lit_lm.kernels import flash_attention

      y = flash_attention(q, k, v, attention_mask, causal=True, dropout_p=0.1)  # q, k, v: (B, H, T, D)

Importing this package needs ``triton`` (ImportError otherwise) but never touches a GPU or the Triton driver, so
it is safe on CPU-only machines. The kernels run on CUDA, or on the CPU under the Triton interpreter: set
``TRITON_INTERPRET=1`` before this package is first imported (Triton decides interpreted-or-compiled when the
kernels are defined); CPU tensors without it raise an error that says so.
"""

try:
    import triton  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("lit_lm.kernels needs the 'triton' package (pip install triton, Linux x86_64 only)") from e

from lit_lm.kernels._flash_attention_triton import dropout_keep_mask, flops, is_interpreted
from lit_lm.kernels.attention import flash_attention

__all__ = ["dropout_keep_mask", "flash_attention", "flops", "is_interpreted"]
