"""Plain ``torch.nn`` building blocks: backbones and heads (no Lightning inside)."""

from lit_lm.model.attention import SelfAttention
from lit_lm.model.heads import (
    ClassificationHead,
    LMHead,
    MLMHead,
    MultipleChoiceHead,
    NSPHead,
    SpanHead,
    gather_positions,
)
from lit_lm.model.transformer import Block, Decoder, Embeddings, Encoder, Transformer, build_backbone

__all__ = [
    "Block",
    "ClassificationHead",
    "SpanHead",
    "Decoder",
    "Embeddings",
    "Encoder",
    "LMHead",
    "MLMHead",
    "MultipleChoiceHead",
    "NSPHead",
    "SelfAttention",
    "Transformer",
    "build_backbone",
    "gather_positions",
]
