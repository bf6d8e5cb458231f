"""``flash_attention``: lit_lm's fused Triton attention as a PyTorch custom op.

Two ops are registered with :mod:`torch.library`:

- ``lit_lm::flash_attn_fwd(q, k, v, key_mask, kv_lens, seed, causal, dropout_p, scale) -> (out, lse)``
- ``lit_lm::flash_attn_bwd(grad_out, grad_lse, q, k, v, out, lse, key_mask, kv_lens, seed, causal, dropout_p,
  scale) -> (dq, dk, dv)``

each with a fake (meta) implementation, so ``torch.compile`` traces through them without running the kernels, and
the forward op has an autograd formula that calls the backward op. Autocast is handled in :func:`flash_attention`
(q, k, v are cast to the autocast dtype, as ``scaled_dot_product_attention`` does). DDP needs nothing special.

This module deliberately does not use ``from __future__ import annotations``: ``torch.library.custom_op`` reads
the real type annotations to build the op schema.
"""

import math
from typing import Any

import torch

from lit_lm.kernels._flash_attention_triton import (
    MAX_HEAD_DIM,
    flash_attn_backward,
    flash_attn_forward,
    lse_dtype,
)

_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@torch.library.custom_op("lit_lm::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention forward. q: (B, H, Tq, D); k, v: (B, H, Tk, D); key_mask: (B, Tk) int8 (1 = visible) or
    None; kv_lens: (B,) int32 (keys j >= kv_lens[b] are masked) or None; seed: (1,) int64 on q's device, required
    when dropout_p > 0. Returns out (B, H, Tq, D) and lse (B, H, Tq) (fp32; natural log; +inf for empty rows)."""
    return flash_attn_forward(q, k, v, key_mask, kv_lens, seed, causal, dropout_p, scale)


@flash_attn_fwd.register_fake
def _flash_attn_fwd_fake(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, H, Tq, D = q.shape
    out = q.new_empty((B, Tq, H, D)).transpose(1, 2)  # same memory order as the real kernel's output
    lse = q.new_empty((B, H, Tq), dtype=lse_dtype(q.dtype))
    return out, lse


@torch.library.custom_op("lit_lm::flash_attn_bwd", mutates_args=())
def flash_attn_bwd(
    grad_out: torch.Tensor,
    grad_lse: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused attention backward: gradients (dq, dk, dv) from grad_out (like out) and optional grad_lse (like lse)."""
    return flash_attn_backward(
        grad_out, grad_lse, q, k, v, out, lse, key_mask, kv_lens, seed, causal, dropout_p, scale
    )


@flash_attn_bwd.register_fake
def _flash_attn_bwd_fake(
    grad_out: torch.Tensor,
    grad_lse: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.empty(q.shape, dtype=q.dtype, device=q.device),
        torch.empty(k.shape, dtype=k.dtype, device=k.device),
        torch.empty(v.shape, dtype=v.dtype, device=v.device),
    )


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    q, k, v, key_mask, kv_lens, seed, causal, dropout_p, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, key_mask, kv_lens, seed)
    ctx.causal = causal
    ctx.dropout_p = dropout_p
    ctx.scale = scale


def _backward(ctx: Any, grad_out: torch.Tensor | None, grad_lse: torch.Tensor | None) -> tuple:
    q, k, v, out, lse, key_mask, kv_lens, seed = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = flash_attn_bwd(
        grad_out, grad_lse, q, k, v, out, lse, key_mask, kv_lens, seed, ctx.causal, ctx.dropout_p, ctx.scale
    )
    return dq, dk, dv, None, None, None, None, None, None


flash_attn_fwd.register_autograd(_backward, setup_context=_setup_context)


def _key_mask_args(
    attention_mask: torch.Tensor | None, batch: int, seq_k: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Public mask argument -> (key_mask (B, Tk) int8 | None, kv_lens (B,) int32 | None), without a host sync.

    A (B, Tk) 0/1 mask becomes the mask itself plus ``kv_lens`` = 1 + index of the last visible key, which lets the
    kernels skip trailing padding blocks (for right padding they then never find a masked key inside the range).
    """
    if attention_mask is None:
        return None, None
    if attention_mask.device != device:
        raise ValueError(f"flash_attention: attention_mask is on {attention_mask.device}, q on {device}")
    if attention_mask.dim() == 1:
        if attention_mask.is_floating_point() or attention_mask.dtype == torch.bool or attention_mask.numel() != batch:
            raise ValueError(
                "flash_attention: a 1-D attention_mask means per-sequence key lengths and must be an integer tensor "
                f"of shape ({batch},); got {attention_mask.dtype} {tuple(attention_mask.shape)}"
            )
        return None, attention_mask.to(torch.int32).contiguous()
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch, seq_k):
        raise ValueError(
            f"flash_attention: attention_mask must be (B, Tk) = ({batch}, {seq_k}) with 1 for tokens and 0 for "
            f"padding, or (B,) integer key lengths; got shape {tuple(attention_mask.shape)}"
        )
    key_mask = (attention_mask != 0).to(torch.int8).contiguous()  # (B, Tk)
    positions = torch.arange(1, seq_k + 1, device=device, dtype=torch.int32)  # (Tk,)
    kv_lens = (key_mask.to(torch.int32) * positions).amax(dim=-1).to(torch.int32)  # (B,) last visible key + 1
    return key_mask, kv_lens


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    *,
    seed: int | None = None,
) -> torch.Tensor:
    """Fused attention ``dropout(softmax(q k^T * scale + mask)) v`` (FlashAttention-2 in Triton), differentiable.

    Args:
        q: queries (B, H, Tq, D); any strides (e.g. a permuted view of a fused qkv projection).
        k: keys (B, H, Tk, D).
        v: values (B, H, Tk, D).
        attention_mask: which keys may be attended to: (B, Tk) with 1 (or True) for tokens and 0 for padding (any
            pattern; a 0/1 mask, not an additive -inf mask), or (B,) integer key lengths. Only keys are masked;
            padded query rows attend like the others (as in sdpa). Rows with no visible key give zeros (and zero
            gradients).
        causal: mask keys after the query (key j visible to query i iff j <= i, top-left aligned).
        dropout_p: probability of dropping an attention probability (the kept ones are scaled by 1 / (1 - p)).
        scale: softmax scale; default ``1 / sqrt(D)``.
        seed: seed of the dropout mask; None draws one from torch's generator on q's device (so
            ``torch.manual_seed`` makes runs reproducible). The backward reuses the forward's mask.

    Returns:
        (B, H, Tq, D) in the dtype of q (the autocast dtype under autocast), laid out in (B, Tq, H, D) memory order
        so that ``y.transpose(1, 2).reshape(B, Tq, H * D)`` is free.

    fp16, bf16 and fp32 (and fp64, for gradcheck) inputs are supported; head dims up to 256 (16..128 tested).
    Runs on CUDA; on CPU only under the Triton interpreter (``TRITON_INTERPRET=1`` set before import; slow).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"flash_attention expects q, k, v of shape (B, H, T, D); got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    B, H, Tq, D = q.shape
    if k.shape != v.shape or k.shape[:2] != (B, H) or k.shape[3] != D:
        raise ValueError(
            f"flash_attention: k and v must be (B, H, Tk, D) matching q {tuple(q.shape)}; got {tuple(k.shape)} and "
            f"{tuple(v.shape)}"
        )
    if not q.device == k.device == v.device:
        raise ValueError(f"flash_attention: q, k, v on different devices: {q.device}, {k.device}, {v.device}")
    if D > MAX_HEAD_DIM:
        raise ValueError(f"flash_attention supports head dims up to {MAX_HEAD_DIM}; got {D}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"flash_attention: dropout_p must be in [0, 1); got {dropout_p}")

    if torch.is_autocast_enabled(q.device.type):
        # Same policy as autocast's lower-precision ops (e.g. sdpa): floating inputs other than fp64 are cast.
        dtype = torch.get_autocast_dtype(q.device.type)
        q, k, v = (t.to(dtype) if t.is_floating_point() and t.dtype != torch.float64 else t for t in (q, k, v))
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"flash_attention: q, k, v must have one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"flash_attention supports {_SUPPORTED_DTYPES}; got {q.dtype}")

    key_mask, kv_lens = _key_mask_args(attention_mask, B, k.shape[2], q.device)
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    seed_t = None
    if dropout_p > 0.0:
        if seed is None:
            seed_t = torch.randint(0, 2**62, (1,), device=q.device, dtype=torch.int64)
        else:
            seed_t = torch.tensor([seed], device=q.device, dtype=torch.int64)
    out, _ = flash_attn_fwd(q, k, v, key_mask, kv_lens, seed_t, causal, float(dropout_p), float(scale))
    return out
