"""Output heads that sit on a backbone's hidden states.

- :class:`LMHead`: next-token logits, weight tied to the token embedding (GPT-1).
- :class:`MLMHead`: BERT's masked-LM head: dense -> GELU -> LayerNorm -> tied decoder + bias.
- :class:`NSPHead`: next-sentence prediction on the backbone's pooled output (tanh pooler on the first token).
- :class:`ClassificationHead`: classifier on the hidden state at a chosen position (``[EXTRACT]`` or ``[CLS]``).
- :class:`MultipleChoiceHead`: one score per choice sequence, reshaped to (B, n_choices).
- :class:`SpanHead`: start and end logits per token (extractive QA; Hugging Face's ``qa_outputs``).

:func:`linear_cross_entropy` is the loss of the vocabulary-sized heads: the output projection and the cross-entropy
fused and computed in row chunks, so the ``(N, vocab)`` logits never exist whole (see its docstring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_lm.config import IGNORE_INDEX, TransformerConfig
from lit_lm.model.transformer import activation_fn


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick one hidden state per sequence. hidden: (B, T, C); positions: (B,) -> (B, C)."""
    return hidden[torch.arange(hidden.size(0), device=hidden.device), positions]


#: Logit elements per chunk of :func:`linear_cross_entropy` (32 MiB in fp32): big enough for efficient matrix
#: products, small enough to stay out of the way of the peak memory.
CHUNK_ELEMENTS = 1 << 23


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matrix product on ``t``'s device in (``t.dtype`` outside autocast)."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of ``hidden @ weight.T + bias`` computed chunk by chunk, gradients included.

    The forward pass works through ``chunk_rows`` rows at a time: logits, log-softmax, the loss terms, and (when
    gradients are wanted) ``d loss / d logits = softmax - onehot`` immediately turned into the gradients of
    ``hidden``, ``weight`` and ``bias``. The backward pass only scales those by the incoming gradient (a scalar).
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        ignore_index: int,
        mean: bool,
        chunk_rows: int,
        need_grad: bool,
        want_argmax: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _compute_dtype(hidden)
        h_all, w = hidden.to(dtype), weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        N = h_all.size(0)
        valid = labels != ignore_index
        safe = labels.masked_fill(~valid, 0)
        # mean over valid rows: the divisor as a tensor (no host sync); 0 valid rows -> loss 0, gradients 0
        denom = valid.sum().clamp(min=1).float() if mean else torch.ones((), device=hidden.device)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        argmax = torch.empty(N if want_argmax else 0, dtype=torch.long, device=hidden.device)
        grad_h = torch.empty_like(h_all) if need_grad and ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_grad and ctx.needs_input_grad[1] else None
        grad_b = None
        if need_grad and bias is not None and ctx.needs_input_grad[2]:
            grad_b = torch.zeros_like(bias, dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, N, chunk_rows):
                e = min(N, s + chunk_rows)
                h = h_all[s:e]
                logits = F.linear(h, w, b).float()  # (n, V); F.linear: oneDNN kernels for bf16 on CPUs
                target = safe[s:e, None]
                v = valid[s:e]
                if want_argmax:
                    top, argmax[s:e] = logits.max(dim=-1)
                else:
                    top = logits.amax(dim=-1)  # no indices needed: amax is cheaper than max
                picked = logits.gather(1, target).squeeze(1)
                g = torch.softmax(logits, dim=-1)  # one exp per logit (log_softmax + exp would be two)
                del logits
                # logsumexp = max - log(max of the softmax): that max is >= 1/V, so the log never underflows
                lse = top - g.amax(dim=-1).log()
                loss += ((lse - picked) * v).sum()
                if not need_grad:
                    continue
                g.scatter_add_(1, target, torch.full_like(g[:, :1], -1.0))
                g.mul_((v.float() / denom)[:, None])  # ignored rows -> 0; mean reduction
                gc = g.to(dtype)
                if grad_h is not None:
                    torch.mm(gc, w, out=grad_h[s:e])
                if grad_w is not None:
                    if gc.dtype == torch.float32:
                        torch.addmm(grad_w, gc.T, h, out=grad_w)  # = addmm_ (which FLOP counters miss)
                    else:
                        grad_w += (gc.T @ h).float()
                if grad_b is not None:
                    grad_b += g.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(argmax)
        return loss / denom, argmax

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_argmax: torch.Tensor | None):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        if grad_h is None and grad_w is None and grad_b is None and any(ctx.needs_input_grad[:3]):
            raise RuntimeError(
                "linear_cross_entropy was computed without gradients (under no_grad / inference mode); "
                "call it with gradients enabled to backpropagate through it"
            )
        dt_h, dt_w, dt_b = ctx.dtypes
        out_h = None if grad_h is None else (grad_h * grad_loss).to(dt_h)
        out_w = None if grad_w is None else (grad_w * grad_loss).to(dt_w)
        out_b = None if grad_b is None else (grad_b * grad_loss).to(dt_b)
        return out_h, out_w, out_b, None, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    chunk_elements: int = CHUNK_ELEMENTS,
    return_argmax: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.cross_entropy(hidden @ weight.T + bias, labels)`` without materialising the ``(N, vocab)`` logits.

    The rows are processed in chunks of about ``chunk_elements`` logits; each chunk's gradient with respect to
    ``hidden``, ``weight`` and ``bias`` is computed right away (``softmax - onehot``), so neither the whole logits
    nor their log-softmax or gradient are ever held: for GPT-mini at batch 32 x 128 that is 3 x 134 MB less at the
    peak, and two passes over the logits fewer than autograd's ``log_softmax`` + ``nll_loss`` backward. The same
    FLOPs as the unfused head. Under autocast the products run in the autocast dtype and the softmax in fp32, as
    autocast would do it; gradients come back in the inputs' dtypes.

    The gradients are computed in the forward pass whenever autograd could need them (grad mode on and an input
    that requires grad); under ``no_grad`` (validation) only the loss is computed.

    Args:
        hidden: ``(..., C)`` features.
        weight: ``(V, C)`` output projection (e.g. the tied token embedding).
        labels: ``(...)`` target ids; ``ignore_index`` marks rows that do not count.
        bias: Optional ``(V,)`` output bias.
        ignore_index: Label value of rows to ignore.
        reduction: ``"mean"`` over the counted rows (0 when there are none) or ``"sum"``.
        chunk_elements: Logits per chunk (rows per chunk = ``chunk_elements // V``, at least 1).
        return_argmax: Also return the ``(N,)`` argmax of the logits (for accuracy), from the same chunks.

    Returns:
        The fp32 scalar loss, or ``(loss, argmax)`` with ``return_argmax``.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    hidden = hidden.reshape(-1, hidden.size(-1))
    labels = labels.reshape(-1)
    if labels.numel() != hidden.size(0):
        raise ValueError(f"{hidden.size(0)} rows of features but {labels.numel()} labels")
    tensors = (hidden, weight) if bias is None else (hidden, weight, bias)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    chunk_rows = max(1, chunk_elements // weight.size(0))
    loss, argmax = _LinearCrossEntropy.apply(
        hidden, weight, bias, labels, ignore_index, reduction == "mean", chunk_rows, need_grad, return_argmax
    )
    return (loss, argmax) if return_argmax else loss


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

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Next-token cross-entropy of ``(..., C)`` features against ``(...)`` labels (-100 = ignore), without
        materialising the logits (:func:`linear_cross_entropy`)."""
        return linear_cross_entropy(hidden, self.decoder.weight, labels, reduction=reduction)


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

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """dense -> activation -> LayerNorm: the features the tied decoder reads, (..., C)."""
        return self.ln(self.act(self.dense(hidden)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., vocab) logits. Pass only the masked positions to save the vocabulary projection."""
        return self.decoder(self.transform(hidden)) + self.bias

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the (masked positions') ``(N, C)`` features against ``(N,)`` labels and the
        ``(N,)`` predicted ids, without materialising the ``(N, vocab)`` logits (:func:`linear_cross_entropy`)."""
        return linear_cross_entropy(self.transform(hidden), self.decoder.weight, labels, self.bias, return_argmax=True)


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


class SpanHead(nn.Module):
    """Extractive QA: a linear layer giving each token a start and an end logit (``qa_outputs`` of Hugging Face's
    ``*ForQuestionAnswering``, so the weights carry over as they are)."""

    def __init__(self, n_embd: int, initializer_range: float = 0.02) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(n_embd, 2)
        nn.init.normal_(self.qa_outputs.weight, std=initializer_range)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C) -> start and end logits, each (B, T)."""
        start, end = self.qa_outputs(hidden).unbind(-1)
        return start, end
