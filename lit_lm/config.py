"""Transformer configuration and named presets.

One dataclass describes every backbone lit_lm builds: the GPT-1 decoder, BERT encoders, and small variants
for CPU work. ``TransformerConfig.from_name("gpt1", dropout=0.0)`` returns a preset with fields overridden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from lit_lm.errors import ConfigError

#: Label value that a loss ignores (padding, unmasked positions): PyTorch's ``cross_entropy`` default.
IGNORE_INDEX = -100

Activation = Literal["gelu", "gelu_tanh", "relu"]
NormPosition = Literal["post", "pre"]
AttentionBackend = Literal["auto", "math", "sdpa", "triton"]

_ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
_NORM_POSITIONS = ("post", "pre")
_BACKENDS = ("auto", "math", "sdpa", "triton")


@dataclass
class TransformerConfig:
    """Architecture of a transformer backbone.

    Args:
        name: Preset name this config came from (informational).
        causal: True for a decoder (GPT: each token sees only earlier ones), False for an encoder (BERT).
        vocab_size: Number of token embeddings. Usually set from the tokenizer by the data module.
        n_positions: Maximum sequence length (learned position embeddings).
        n_layer: Number of transformer blocks.
        n_head: Number of attention heads; must divide ``n_embd``.
        n_embd: Hidden size.
        intermediate_size: Feed-forward inner size (4 * n_embd in GPT-1 and BERT).
        type_vocab_size: Number of segment (token type) embeddings; 2 for BERT, 0 for none (GPT).
        activation: Feed-forward activation: ``gelu`` (exact, erf; BERT), ``gelu_tanh`` (tanh approximation;
            GPT-1) or ``relu``.
        norm_position: ``post`` (LayerNorm after each residual add, as in GPT-1 and BERT) or ``pre``
            (LayerNorm before each sub-layer plus a final LayerNorm, as in GPT-2).
        embedding_norm: Apply LayerNorm to the summed embeddings (BERT does, GPT-1 does not).
        layer_norm_eps: LayerNorm epsilon (1e-12 in BERT, 1e-5 in GPT-1).
        dropout: Dropout on embeddings and on each residual branch.
        attention_dropout: Dropout on the attention probabilities.
        pooler: Add BERT's pooler (dense + tanh on the first token), used by NSP and classification heads.
        tie_word_embeddings: Share the token embedding matrix with the output (LM / MLM) projection.
        initializer_range: Standard deviation of the normal initialisation of weights.
        attention_backend: ``math`` (explicit softmax, the reference), ``sdpa`` (PyTorch's
            scaled_dot_product_attention), ``triton`` (lit_lm's fused kernel, CUDA) or ``auto`` (the fastest
            that applies on the current device).
    """

    name: str = "custom"
    causal: bool = False
    vocab_size: int = 30522
    n_positions: int = 512
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    intermediate_size: int = 3072
    type_vocab_size: int = 2
    activation: Activation = "gelu"
    norm_position: NormPosition = "post"
    embedding_norm: bool = True
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pooler: bool = True
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    attention_backend: AttentionBackend = "auto"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for field in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "intermediate_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TransformerConfig.{field} must be a positive integer, got {value!r}")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ConfigError(f"TransformerConfig.type_vocab_size must be >= 0, got {self.type_vocab_size!r}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"TransformerConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"choose n_head from {[h for h in range(1, min(self.n_embd, 64) + 1) if self.n_embd % h == 0]}"
            )
        for field in ("dropout", "attention_dropout"):
            value = getattr(self, field)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"TransformerConfig.{field} must be in [0, 1), got {value!r}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"TransformerConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.initializer_range <= 0:
            raise ConfigError(f"TransformerConfig.initializer_range must be > 0, got {self.initializer_range!r}")
        for field, allowed in (
            ("activation", _ACTIVATIONS),
            ("norm_position", _NORM_POSITIONS),
            ("attention_backend", _BACKENDS),
        ):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"TransformerConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}")

    @classmethod
    def from_name(cls, name: str, /, **overrides: Any) -> TransformerConfig:
        """Return the preset ``name`` (see :data:`PRESETS`) with ``overrides`` applied (``name`` included)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown TransformerConfig field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_BERT = dict(
    causal=False,
    vocab_size=30522,
    n_positions=512,
    type_vocab_size=2,
    activation="gelu",
    norm_position="post",
    embedding_norm=True,
    layer_norm_eps=1e-12,
    pooler=True,
)
_GPT1 = dict(
    causal=True,
    vocab_size=40478,  # the original GPT-1 BPE vocabulary (40,000 merges + 478 base symbols)
    n_positions=512,
    type_vocab_size=0,
    activation="gelu_tanh",
    norm_position="post",
    embedding_norm=False,
    layer_norm_eps=1e-5,
    pooler=False,
)

#: Named presets: the published architectures and small sizes for CPU work.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt1": dict(_GPT1, n_layer=12, n_head=12, n_embd=768, intermediate_size=3072),
    "gpt-small": dict(_GPT1, vocab_size=30522, n_layer=6, n_head=8, n_embd=512, intermediate_size=2048),
    "gpt-mini": dict(_GPT1, vocab_size=8192, n_positions=256, n_layer=4, n_head=4, n_embd=256, intermediate_size=1024),
    "gpt-micro": dict(_GPT1, vocab_size=4096, n_positions=128, n_layer=4, n_head=4, n_embd=128, intermediate_size=512),
    "bert-base": dict(_BERT, n_layer=12, n_head=12, n_embd=768, intermediate_size=3072),
    "bert-large": dict(_BERT, n_layer=24, n_head=16, n_embd=1024, intermediate_size=4096),
    # The small BERTs of Turc et al. (2019), "Well-Read Students Learn Better".
    "bert-small": dict(_BERT, n_layer=4, n_head=8, n_embd=512, intermediate_size=2048),
    "bert-mini": dict(_BERT, n_layer=4, n_head=4, n_embd=256, intermediate_size=1024),
    "bert-tiny": dict(_BERT, n_layer=2, n_head=2, n_embd=128, intermediate_size=512),
}
