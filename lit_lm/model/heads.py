"""Output heads that sit on a backbone's hidden states.

- :class:`LMHead`: next-token logits, weight tied to the token embedding (GPT-1).
- :class:`MLMHead`: BERT's masked-LM head: dense -> GELU -> LayerNorm -> tied decoder + bias.
- :class:`NSPHead`: next-sentence prediction on the backbone's pooled output (tanh pooler on the first token).
- :class:`ClassificationHead`: classifier on the hidden state at a chosen position (``[EXTRACT]`` or ``[CLS]``).
- :class:`MultipleChoiceHead`: one score per choice sequence, reshaped to (B, n_choices).
"""

from __future__ import annotations

import torch
from torch import nn

from lit_lm.config import TransformerConfig
from lit_lm.model.transformer import activation_fn


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick one hidden state per sequence. hidden: (B, T, C); positions: (B,) -> (B, C)."""
    return hidden[torch.arange(hidden.size(0), device=hidden.device), positions]


class LMHead(nn.Module):
    """Language-model head with the output projection tied to the token embedding."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        n_vocab, n_embd = embedding.weight.shape
        self.decoder = nn.Linear(n_embd, n_vocab, bias=False)
        self.decoder.weight = embedding.weight  # tied: one tensor, two names

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., vocab) logits."""
        return self.decoder(hidden)


class MLMHead(nn.Module):
    """BERT's masked-LM head (``cls.predictions``): transform, then tied decoder plus an output bias."""

    def __init__(self, config: TransformerConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.act = activation_fn(config.activation)
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.decoder.weight = embedding.weight
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        nn.init.normal_(self.dense.weight, std=config.initializer_range)
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., vocab) logits. Pass only the masked positions to save the vocabulary projection."""
        return self.decoder(self.ln(self.act(self.dense(hidden)))) + self.bias


class NSPHead(nn.Module):
    """Next-sentence prediction (``cls.seq_relationship``): 2 logits from the pooled (B, C) output."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.classifier = nn.Linear(config.n_embd, 2)
        nn.init.normal_(self.classifier.weight, std=config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)


class ClassificationHead(nn.Module):
    """Dropout + linear classifier on one feature vector per sequence.

    Feed it ``gather_positions(hidden, extract_positions)`` (GPT-1: the ``[EXTRACT]`` token) or the backbone's
    pooled ``[CLS]`` output (BERT).
    """

    def __init__(self, n_embd: int, num_labels: int, dropout: float = 0.1, initializer_range: float = 0.02) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"ClassificationHead needs num_labels >= 1, got {num_labels}")
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_embd, num_labels)
        nn.init.normal_(self.classifier.weight, std=initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, num_labels) logits."""
        return self.classifier(self.drop(features))


class MultipleChoiceHead(nn.Module):
    """One scalar score per choice; the caller runs each choice as its own sequence through the backbone."""

    def __init__(self, n_embd: int, dropout: float = 0.1, initializer_range: float = 0.02) -> None:
        super().__init__()
        self.scorer = ClassificationHead(n_embd, 1, dropout, initializer_range)

    def forward(self, features: torch.Tensor, n_choices: int) -> torch.Tensor:
        """features: (B * n_choices, C), choices of one example adjacent -> (B, n_choices) scores."""
        return self.scorer(features).view(-1, n_choices)
