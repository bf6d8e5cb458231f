"""Transformer backbones: embeddings, blocks, :class:`Encoder` (BERT) and :class:`Decoder` (GPT).

Plain ``torch.nn``; parameter names map one to one onto the Hugging Face BERT and OpenAI GPT checkpoints
(see :mod:`lit_lm.model.hf`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_lm.config import ConfigError, TransformerConfig
from lit_lm.model.attention import SelfAttention, dropout


def activation_fn(name: str):
    """The feed-forward activation: exact GELU (BERT), tanh-approximated GELU (GPT-1) or ReLU."""
    if name == "gelu":
        return F.gelu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ConfigError(f"unknown activation {name!r}")


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`lit_lm.model.attention.dropout` (a faster mask on the CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class Embeddings(nn.Module):
    """Token + learned position (+ segment) embeddings, optional LayerNorm (BERT), dropout."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_positions = config.n_positions
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.wtt = nn.Embedding(config.type_vocab_size, config.n_embd) if config.type_vocab_size > 0 else None
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps) if config.embedding_norm else None
        self.drop = Dropout(config.dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        T = input_ids.size(1)
        if T > self.n_positions:
            raise ValueError(
                f"sequence length {T} exceeds the model's n_positions={self.n_positions}; "
                "truncate the inputs (data module max_seq_length / block_size) or use a config with more positions"
            )
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(position_ids)  # (B, T, C)
        if self.wtt is not None:
            if token_type_ids is None:
                x = x + self.wtt.weight[0]
            else:
                x = x + self.wtt(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids given, but this model has no segment embeddings (type_vocab_size=0)")
        if self.ln is not None:
            x = self.ln(x)
        return self.drop(x)


class MLP(nn.Module):
    """Position-wise feed-forward: ``fc`` -> activation -> ``proj``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.intermediate_size)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd)
        self.act = activation_fn(config.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """One transformer block.

    ``post`` (GPT-1, BERT): ``x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))``.
    ``pre`` (GPT-2 style): ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``.
    """

    def __init__(self, config: TransformerConfig, causal: bool) -> None:
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.attn = SelfAttention(config, causal)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attn(self.ln_1(x), attention_mask))
            return x + self.drop(self.mlp(self.ln_2(x)))
        x = self.ln_1(x + self.drop(self.attn(x, attention_mask)))
        return self.ln_2(x + self.drop(self.mlp(x)))


def without_full_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``None`` for a host (CPU) mask with no padding, else the mask: without one, attention runs its fastest
    kernels (flash attention on GPUs). Only host tensors are checked, so this never waits for a device."""
    if attention_mask is None or attention_mask.device.type != "cpu" or torch.compiler.is_compiling():
        return attention_mask
    return None if bool(attention_mask.all()) else attention_mask


class Transformer(nn.Module):
    """Embeddings + a stack of blocks (+ final LayerNorm for pre-norm, + pooler if configured).

    Use :class:`Encoder` or :class:`Decoder`; ``causal`` is fixed by the class.
    """

    causal: bool = False

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.causal != self.causal:
            config = config.replace(causal=self.causal)
        self.config = config
        self.embeddings = Embeddings(config)
        self.h = nn.ModuleList(Block(config, self.causal) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps) if config.norm_position == "pre" else None
        self.pooler = nn.Linear(config.n_embd, config.n_embd) if config.pooler else None
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def wte(self) -> nn.Embedding:
        """The token embedding (tied to the LM / MLM output projection)."""
        return self.embeddings.wte

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states of the last layer.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: optional (B, T), 1 for tokens, 0 for padding. ``None`` means no padding.
            token_type_ids: optional (B, T) segment ids (BERT); zeros when omitted.
            position_ids: optional (T,) or (B, T) positions; ``arange(T)`` when omitted.

        Returns:
            (B, T, n_embd) hidden states.
        """
        attention_mask = without_full_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        for block in self.h:
            x = block(x, attention_mask)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pooled output: ``tanh(dense(hidden[:, 0]))``, shape (B, n_embd)."""
        if self.pooler is None:
            raise ConfigError("this backbone has no pooler; build it with TransformerConfig(pooler=True)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> int:
        """Training (forward + backward) FLOPs per token of the blocks, PaLM appendix B: ``6 N + 12 L T C``.

        ``N`` counts the blocks' weight matrices (each does a multiply-add per token forward, two backward);
        ``12 L T C`` is the attention products ``q k^T`` and ``att v`` (``2 * 2 * T * C`` forward per layer, times
        3). Embedding lookups, LayerNorms and activations are not counted, and causal attention counts the full
        ``T x T`` (the usual convention). The heads (LM / MLM vocabulary projection, pooler) are the task's:
        :meth:`lit_lm.tasks.LMTask.flops_per_token` adds them.
        """
        n_matmul = sum(p.numel() for p in self.h.parameters() if p.dim() == 2)
        attn = 2 * 2 * self.config.n_layer * seq_len * self.config.n_embd  # q k^T and att v, forward
        return 6 * n_matmul + 3 * attn


class Encoder(Transformer):
    """Bidirectional transformer (BERT). Padding is masked with ``attention_mask``."""

    causal = False


class Decoder(Transformer):
    """Causal transformer (GPT): position t attends to positions <= t; also accepts a padding mask."""

    causal = True


def build_backbone(config: TransformerConfig) -> Transformer:
    """:class:`Decoder` if ``config.causal`` else :class:`Encoder`."""
    return Decoder(config) if config.causal else Encoder(config)
