"""Multi-head self-attention with a backend switch.

Backends compute the same function:

- ``math``: explicit ``softmax(q k^T / sqrt(d) + mask) v``; the readable reference.
- ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient / cuDNN kernels
  on GPU, a fused kernel on CPU).
- ``triton``: lit_lm's fused FlashAttention-2 kernel (CUDA only), from :mod:`lit_lm.kernels`.
- ``auto``: ``triton`` on CUDA when the kernel is available, ``sdpa`` otherwise.

Masks follow the Hugging Face convention: ``attention_mask`` is ``(B, T)`` with 1 for real tokens and 0 for
padding. Only keys are masked; outputs at padded query positions are finite but meaningless.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_lm.config import TransformerConfig


def key_padding_to_bool_mask(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """``(B, T)`` 1/0 key mask -> boolean ``(B, 1, T|1, T)`` mask, True where attention is allowed."""
    B, T = attention_mask.shape
    keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        tril = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
        keep = keep & tril  # (B, 1, T, T)
    return keep


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
    att = (q @ k.transpose(-2, -1)) * scale  # (B, nh, T, T)
    if causal and mask is None:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        att = att.masked_fill(~mask, torch.finfo(att.dtype).min)
    att = att.softmax(dim=-1)
    if dropout_p > 0.0:
        att = F.dropout(att, p=dropout_p)
    return att @ v  # (B, nh, T, hs)


def _triton_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        from lit_lm.kernels import flash_attention  # noqa: F401
    except ImportError:
        return False
    return True


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
        if backend == "auto":
            backend = "triton" if _triton_available(x.device) else "sdpa"

        if backend == "triton":
            from lit_lm.kernels import flash_attention

            y = flash_attention(q, k, v, attention_mask, causal=self.causal, dropout_p=dropout_p, scale=scale)
        else:
            mask = None if attention_mask is None else key_padding_to_bool_mask(attention_mask, self.causal)
            if backend == "sdpa":
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=self.causal and mask is None, scale=scale
                )
            else:
                y = math_attention(q, k, v, mask, self.causal, dropout_p, scale)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble heads side by side
        return self.proj(y)
