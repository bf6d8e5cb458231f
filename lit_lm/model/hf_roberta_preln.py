"""A lit_lm pre-LayerNorm encoder as Hugging Face RoBERTa-PreLayerNorm, both ways.

``RobertaPreLayerNorm*`` computes what lit_lm's encoder with ``norm_position: pre`` computes: token + position +
segment embeddings, LayerNorm, blocks ``x + attn(ln(x))``, ``x + mlp(ln(x))``, a final LayerNorm, BERT's pooler and
masked-LM head. One difference is only of bookkeeping: RoBERTa numbers the positions of real tokens from
``pad_token_id + 1`` (a padding token gets ``pad_token_id``), so the exported position table is lit_lm's shifted down
by ``pad_token_id + 1`` rows (the rows before it are never read by a real token). Its sequence classifier is a tanh
dense layer on the first token, then ``out_proj``: lit_lm's pooler and classifier.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lit_lm.config import TransformerConfig
from lit_lm.errors import CheckpointError
from lit_lm.model.hf_names import ROBERTA_PRELN, weight_names

__all__ = ["PREFIX", "config_from_roberta_preln", "from_roberta_positions", "roberta_preln_config",
           "to_roberta_positions"]  # fmt: skip

PREFIX = "roberta_prelayernorm."
_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
_FROM_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def roberta_preln_config(config: TransformerConfig, pad_token_id: int) -> dict:
    """``config.json`` of ``RobertaPreLayerNormForMaskedLM`` for the pre-LN encoder ``config``."""
    problems = []
    if config.causal or config.norm_position != "pre":
        problems.append("RoBERTa-PreLayerNorm is an encoder with norm_position='pre'")
    if not config.embedding_norm:
        problems.append("RoBERTa-PreLayerNorm applies LayerNorm to the embeddings (embedding_norm=False here)")
    if not config.tie_word_embeddings:
        problems.append("RoBERTa-PreLayerNorm ties the masked-LM decoder to the token embedding")
    if config.activation not in _ACT:
        problems.append(f"activation {config.activation!r} has no hidden_act")
    if problems:
        raise CheckpointError("; ".join(problems))
    return dict(
        model_type="roberta-prelayernorm",
        architectures=["RobertaPreLayerNormForMaskedLM"],
        vocab_size=config.vocab_size,
        max_position_embeddings=config.n_positions + pad_token_id + 1,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        hidden_size=config.n_embd,
        intermediate_size=config.intermediate_size,
        type_vocab_size=max(config.type_vocab_size, 1),
        hidden_act=_ACT[config.activation],
        layer_norm_eps=config.layer_norm_eps,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.attention_dropout,
        initializer_range=config.initializer_range,
        position_embedding_type="absolute",
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def config_from_roberta_preln(hf: Mapping) -> dict:
    """TransformerConfig fields of a RoBERTa-PreLayerNorm ``config.json``."""
    act = hf.get("hidden_act", "gelu")
    if act not in _FROM_ACT:
        raise CheckpointError(f"hidden_act {act!r} is not supported: {sorted(_FROM_ACT)} are")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("only absolute position embeddings are supported (position_embedding_type)")
    return dict(
        causal=False,
        vocab_size=hf["vocab_size"],
        n_positions=hf["max_position_embeddings"] - hf.get("pad_token_id", 1) - 1,
        n_layer=hf["num_hidden_layers"],
        n_head=hf["num_attention_heads"],
        n_embd=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        type_vocab_size=hf.get("type_vocab_size", 1),
        activation=_FROM_ACT[act],
        norm_position="pre",
        embedding_norm=True,
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pooler=True,
        initializer_range=hf.get("initializer_range", 0.02),
    )


#: lit_lm's masked-LM head -> RoBERTa's ``lm_head`` (the decoder is tied to the word embeddings).
MLM_HEAD = [("mlm_head.dense.weight", "lm_head.dense.weight"), ("mlm_head.dense.bias", "lm_head.dense.bias"),
            ("mlm_head.ln.weight", "lm_head.layer_norm.weight"), ("mlm_head.ln.bias", "lm_head.layer_norm.bias"),
            ("mlm_head.bias", "lm_head.bias")]  # fmt: skip


def to_roberta_positions(wpe: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """lit_lm's (n_positions, C) table -> RoBERTa's (n_positions + pad + 1, C): real token ``t`` reads row
    ``pad + 1 + t``; the rows before are zeros (padding reads row ``pad``, and padding is masked)."""
    return torch.cat([wpe.new_zeros(pad_token_id + 1, wpe.size(1)), wpe])


def from_roberta_positions(table: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    return table[pad_token_id + 1 :].contiguous()


def lit_to_roberta(sd: Mapping[str, torch.Tensor], config: TransformerConfig, pad_token_id: int,
                   missing: list[str]) -> dict[str, torch.Tensor]:  # fmt: skip
    """lit_lm keys (``backbone.*``, optionally ``mlm_head.*``) -> ``RobertaPreLayerNormForMaskedLM`` keys; absent
    lit_lm keys are appended to ``missing``."""
    out: dict[str, torch.Tensor] = {}

    def get(key: str) -> torch.Tensor | None:
        if key not in sd:
            missing.append(key)
        return sd.get(key)

    for ours, theirs, _ in weight_names(ROBERTA_PRELN, config):
        if (t := get("backbone." + ours)) is not None:
            out[PREFIX + theirs] = t
    if (wpe := get("backbone.embeddings.wpe.weight")) is not None:
        out[PREFIX + "embeddings.position_embeddings.weight"] = to_roberta_positions(wpe, pad_token_id)
    for i in range(config.n_layer):
        w, b = get(f"backbone.h.{i}.attn.qkv.weight"), get(f"backbone.h.{i}.attn.qkv.bias")
        if w is not None and b is not None:
            for n, wi, bi in zip(("query", "key", "value"), w.chunk(3, dim=0), b.chunk(3, dim=0), strict=True):
                out[f"{PREFIX}encoder.layer.{i}.attention.self.{n}.weight"] = wi
                out[f"{PREFIX}encoder.layer.{i}.attention.self.{n}.bias"] = bi
    if any(ours in sd for ours, _ in MLM_HEAD):
        for ours, theirs in MLM_HEAD:
            if (t := get(ours)) is not None:
                out[theirs] = t
        out["lm_head.decoder.weight"] = out[PREFIX + "embeddings.word_embeddings.weight"]
    return out


def roberta_to_lit(sd: Mapping[str, torch.Tensor], config: TransformerConfig, take) -> tuple[dict, list[str], list]:
    """``RobertaPreLayerNorm*`` keys -> lit_lm keys: (state dict, heads found, missing keys). ``take(*keys)`` returns
    the first present key's tensor and marks it used (see :func:`lit_lm.model.hf.hf_to_lit`)."""
    prefix = PREFIX if any(k.startswith(PREFIX) for k in sd) else ""
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for ours, theirs, _ in weight_names(ROBERTA_PRELN, config):
        t = take(prefix + theirs)
        if t is None:
            missing.append(prefix + theirs)
        else:
            out["backbone." + ours] = t
    table = take(prefix + "embeddings.position_embeddings.weight")
    if table is None:
        missing.append(prefix + "embeddings.position_embeddings.weight")
    else:
        out["backbone.embeddings.wpe.weight"] = table[table.size(0) - config.n_positions :].contiguous()
    for i in range(config.n_layer):
        base = f"{prefix}encoder.layer.{i}.attention.self."
        parts = [(take(f"{base}{n}.weight"), take(f"{base}{n}.bias")) for n in ("query", "key", "value")]
        if any(w is None or b is None for w, b in parts):
            missing.append(f"{base}query/key/value")
            continue
        out[f"backbone.h.{i}.attn.qkv.weight"] = torch.cat([w for w, _ in parts])
        out[f"backbone.h.{i}.attn.qkv.bias"] = torch.cat([b for _, b in parts])
    heads = []
    if "lm_head.dense.weight" in sd:
        heads.append("mlm")
        for ours, theirs in MLM_HEAD:
            t = take(theirs, "lm_head.decoder.bias" if theirs == "lm_head.bias" else theirs)
            if t is None:
                missing.append(theirs)
            else:
                out[ours] = t
        take("lm_head.decoder.weight")  # tied copies of the word embeddings and of lm_head.bias
        take("lm_head.decoder.bias")
        if "backbone.embeddings.wte.weight" in out:
            out["mlm_head.decoder.weight"] = out["backbone.embeddings.wte.weight"]
    return out, heads, missing
