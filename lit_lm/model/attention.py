"""Multi-head self-attention with a backend switch.

Backends compute the same function:

- ``math``: explicit ``softmax(q k^T / sqrt(d) + mask) v``; the readable reference.
- ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient / cuDNN kernels
  on GPU, a fused kernel on CPU).
- ``triton``: lit_lm's fused FlashAttention-2 kernel (CUDA only), from :mod:`lit_lm.kernels`.
- ``auto``: ``triton`` only where it was measured faster than ``sdpa`` for the shape class at hand, else ``sdpa``;
  a Triton failure falls back to ``sdpa`` with one warning (:mod:`lit_lm.model.backend_choice`).

Dropout (here and in :mod:`lit_lm.model.transformer`) goes through :func:`dropout`: ``F.dropout`` on GPUs, and on
the CPU a mask drawn from 16 random bits per element, faster than ``F.dropout``'s ``bernoulli_`` and kept as
``bool`` (1 byte per element instead of a float mask). On the CPU, attention-probability dropout makes SDPA fall back
to its unfused math path anyway; lit_lm then runs :func:`math_attention` itself, with that dropout.

Masks follow the Hugging Face convention: ``attention_mask`` is ``(B, T)`` with 1 for real tokens and 0 for
padding. Only keys are masked; outputs at padded query positions are finite but meaningless.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_lm.config import TransformerConfig
from lit_lm.model.backend_choice import CHOOSER


def key_padding_to_bool_mask(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """``(B, T)`` 1/0 key mask -> boolean ``(B, 1, T|1, T)`` mask, True where attention is allowed."""
    B, T = attention_mask.shape
    keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        tril = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
        keep = keep & tril  # (B, 1, T, T)
    return keep


class _CPUDropout(torch.autograd.Function):
    """Inverted dropout with a ``bool`` mask drawn from 16 random bits per element (CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        # one 64-bit draw gives four uniform 16-bit integers in [-2**15, 2**15)
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        threshold = round(p * 65536) - 32768  # P(bits16 < threshold) = p, to 1/65536
        keep = bits.view(torch.int16)[:n].view(x.shape) >= threshold
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        # multiplying by the mask's bytes (uint8 view) beats masked_fill or a bool product on CPUs
        return x.mul(keep.view(torch.uint8)).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep.view(torch.uint8)).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout (zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``).

    ``F.dropout`` except on the CPU outside ``torch.compile``, where the mask comes from 16 random bits per element
    (so ``p`` is rounded to a multiple of 1/65536) drawn from the global CPU generator: reproducible under
    ``torch.manual_seed``, faster than ``F.dropout`` there, with a ``bool`` mask saved for backward.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or torch.compiler.is_compiling() or p >= 1.0:
        return F.dropout(x, p, training=True)
    return _CPUDropout.apply(x, p)


def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> torch.Tensor:
    """Reference attention. q, k, v: (B, nh, T, hs); mask: bool, broadcastable to (B, nh, T, T), True = keep."""
    T = q.size(-2)
    att = (q * scale) @ k.transpose(-2, -1)  # (B, nh, T, T); scaling q is cheaper than scaling att when T > hs
    if causal and mask is None:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        # an additive bias (0 / dtype min), added in place (the product's backward needs only q and k): a
        # a broadcast add beats masked_fill_ with a broadcast mask on CPUs; same result
        bias = torch.zeros(mask.shape, dtype=att.dtype, device=att.device)
        att = att.add_(bias.masked_fill_(~mask, torch.finfo(att.dtype).min))
    att = att.softmax(dim=-1)
    att = dropout(att, dropout_p)
    return att @ v  # (B, nh, T, hs)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection.

    Parameters map onto the reference checkpoints: ``qkv`` is BERT's query/key/value (stacked along the output
    dimension) and GPT-1's ``c_attn``; ``proj`` is BERT's ``attention.output.dense`` and GPT-1's ``c_proj``.
    """

    def __init__(self, config: TransformerConfig, causal: bool) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.causal = causal
        self.backend = config.attention_backend
        self.attention_dropout = config.attention_dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C); attention_mask: optional (B, T), 1 = token, 0 = padding. Returns (B, T, C)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        dropout_p = self.attention_dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(self.head_size)
        backend = self.backend
        if backend == "auto":  # Triton only where it was measured faster on this shape class (backend_choice)
            backend = CHOOSER.choose(q, k, v, attention_mask, self.causal, scale)

        y = None
        if backend == "triton":
            from lit_lm.kernels import flash_attention

            try:
                y = flash_attention(q, k, v, attention_mask, causal=self.causal, dropout_p=dropout_p, scale=scale)
            except Exception as e:
                if self.backend != "auto":
                    raise  # asked for by name: the error is the answer
                CHOOSER.failed(q, attention_mask, self.causal, e)  # auto: SDPA from now on, and for this call
                backend = "sdpa"
        if y is None:
            mask = None if attention_mask is None else key_padding_to_bool_mask(attention_mask, self.causal)
            if backend == "sdpa" and dropout_p > 0.0 and x.device.type == "cpu":
                backend = "math"  # what SDPA falls back to on the CPU with dropout; ours has the faster dropout
            if backend == "sdpa":
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=self.causal and mask is None, scale=scale
                )
            else:
                y = math_attention(q, k, v, mask, self.causal, dropout_p, scale)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble heads side by side
        return self.proj(y)
