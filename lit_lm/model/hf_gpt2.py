"""A lit_lm pre-LayerNorm decoder as Hugging Face GPT-2, both ways.

GPT-2 is the pre-LN decoder that lit_lm's ``norm_position: pre`` builds: ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``,
a final ``ln_f``, learned positions from 0, no embedding LayerNorm, no segment embeddings, the output projection
tied to the token embedding. Its linear layers are ``Conv1D`` (weight stored as ``in x out``: lit_lm's transposed);
``n_inner`` carries any feed-forward size and ``activation_function`` the GELU variant (``gelu_new`` is the tanh
approximation, lit_lm's ``gelu_tanh``).
"""

from __future__ import annotations

from collections.abc import Mapping

from lit_lm.config import TransformerConfig
from lit_lm.errors import CheckpointError

__all__ = ["config_from_gpt2", "gpt2_config"]

_TO_GPT2_ACT = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
_FROM_GPT2_ACT = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def gpt2_config(config: TransformerConfig) -> dict:
    """The ``config.json`` of ``GPT2LMHeadModel`` computing the same function as the pre-LN decoder ``config``;
    a :class:`CheckpointError` naming the setting GPT-2 cannot express."""
    problems = []
    if not config.causal or config.norm_position != "pre":
        problems.append("GPT-2 is a causal decoder with norm_position='pre'")
    if config.embedding_norm:
        problems.append("GPT-2 has no embedding LayerNorm (embedding_norm=True here)")
    if config.type_vocab_size > 0:
        problems.append(f"GPT-2 has no segment embeddings (type_vocab_size={config.type_vocab_size} here)")
    if config.pooler:
        problems.append("GPT-2 has no pooler")
    if not config.tie_word_embeddings:
        problems.append("GPT-2 ties the output projection to the token embedding (tie_word_embeddings=False here)")
    if config.activation not in _TO_GPT2_ACT:
        problems.append(f"activation {config.activation!r} has no GPT-2 activation_function")
    if problems:
        raise CheckpointError("; ".join(problems))
    return dict(
        model_type="gpt2",
        architectures=["GPT2LMHeadModel"],
        vocab_size=config.vocab_size,
        n_positions=config.n_positions,
        n_ctx=config.n_positions,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        n_inner=config.intermediate_size,
        activation_function=_TO_GPT2_ACT[config.activation],
        layer_norm_epsilon=config.layer_norm_eps,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.attention_dropout,
        initializer_range=config.initializer_range,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=True,
    )


def config_from_gpt2(hf: Mapping) -> dict:
    """TransformerConfig fields of a GPT-2 ``config.json``; a :class:`CheckpointError` for a variant lit_lm does
    not compute (attention scaled by layer index, no scaling)."""
    act = hf.get("activation_function", "gelu_new")
    if act not in _FROM_GPT2_ACT:
        raise CheckpointError(f"GPT-2 activation_function {act!r} is not supported: {sorted(_FROM_GPT2_ACT)} are")
    if hf.get("scale_attn_by_inverse_layer_idx", False) or not hf.get("scale_attn_weights", True):
        raise CheckpointError("GPT-2 attention scaled other than by 1/sqrt(head size) is not supported")
    n_embd = hf["n_embd"]
    return dict(
        causal=True,
        vocab_size=hf["vocab_size"],
        n_positions=hf["n_positions"],
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=n_embd,
        intermediate_size=hf.get("n_inner") or 4 * n_embd,
        type_vocab_size=0,
        activation=_FROM_GPT2_ACT[act],
        norm_position="pre",
        embedding_norm=False,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        pooler=False,
        initializer_range=hf.get("initializer_range", 0.02),
    )
