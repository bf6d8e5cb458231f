"""Which lit_lm backbone weight is which Hugging Face weight, as one table per architecture.

A table names the embeddings, the weights of one block (each a ``.weight`` and a ``.bias`` on both sides), what
follows the last block, and the block prefix on the Hugging Face side; :func:`weight_names` unrolls it over the
layers of a config. Conversions that are not 1:1 (GPT-2 / OpenAI GPT Conv1D weights are transposed, RoBERTa's
position table is shifted, BERT's separate q/k/v are fused in lit_lm) are handled by the callers; here a Conv1D
weight is only marked.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_lm.config import TransformerConfig

__all__ = ["BERT", "GPT2", "OPENAI_GPT", "ROBERTA_PRELN", "NameMap", "weight_names"]


@dataclass(frozen=True)
class NameMap:
    """The 1:1 weights of one architecture (Hugging Face names without the model prefix: ``bert.``, ...).

    Attributes:
        embeddings: ``(lit_lm, HF)`` names before the first block.
        block: The HF prefix of block ``i`` (``encoder.layer.{i}.``); lit_lm's is ``h.{i}.``.
        layer: ``(lit_lm, HF, conv1d)`` module names inside a block; each stands for its ``.weight`` and ``.bias``,
            and ``conv1d`` marks a weight stored transposed (GPT's Conv1D).
        final: ``(lit_lm, HF)`` names after the last block.
        token_types: HF name of the segment embedding (used when the config has ``type_vocab_size > 0``).
        pooler: Map BERT's pooler (``pooler.dense``) when the config has one.
    """

    embeddings: tuple[tuple[str, str], ...]
    block: str
    layer: tuple[tuple[str, str, bool], ...]
    final: tuple[tuple[str, str], ...] = ()
    token_types: str | None = None
    pooler: bool = False


def weight_names(names: NameMap, config: TransformerConfig) -> list[tuple[str, str, bool]]:
    """``(lit_lm key, HF key, transposed)`` for every 1:1 weight of a backbone of ``config``."""
    pairs = [(ours, theirs, False) for ours, theirs in names.embeddings]
    if names.token_types is not None and config.type_vocab_size > 0:
        pairs.append(("embeddings.wtt.weight", names.token_types, False))
    for i in range(config.n_layer):
        theirs_prefix = names.block.format(i=i)
        for ours, theirs, conv1d in names.layer:
            pairs.append((f"h.{i}.{ours}.weight", f"{theirs_prefix}{theirs}.weight", conv1d))
            pairs.append((f"h.{i}.{ours}.bias", f"{theirs_prefix}{theirs}.bias", False))
    pairs += [(ours, theirs, False) for ours, theirs in names.final]
    if names.pooler and config.pooler:
        pairs += [("pooler.weight", "pooler.dense.weight", False), ("pooler.bias", "pooler.dense.bias", False)]
    return pairs


_LN = ("embeddings.ln.weight", "embeddings.LayerNorm.weight"), ("embeddings.ln.bias", "embeddings.LayerNorm.bias")

#: BERT (post-LN): the q/k/v projections are separate there and fused here, so they are converted apart.
BERT = NameMap(
    embeddings=(("embeddings.wte.weight", "embeddings.word_embeddings.weight"),
                ("embeddings.wpe.weight", "embeddings.position_embeddings.weight"), *_LN),
    block="encoder.layer.{i}.",
    layer=(("attn.proj", "attention.output.dense", False), ("ln_1", "attention.output.LayerNorm", False),
           ("mlp.fc", "intermediate.dense", False), ("mlp.proj", "output.dense", False),
           ("ln_2", "output.LayerNorm", False)),
    token_types="embeddings.token_type_embeddings.weight",
    pooler=True,
)  # fmt: skip

#: RoBERTa-PreLayerNorm (a pre-LN encoder): the position table (shifted by ``pad + 1`` rows) and q/k/v apart.
ROBERTA_PRELN = NameMap(
    embeddings=(("embeddings.wte.weight", "embeddings.word_embeddings.weight"), *_LN),
    block="encoder.layer.{i}.",
    layer=(("ln_1", "attention.LayerNorm", False), ("attn.proj", "attention.output.dense", False),
           ("ln_2", "intermediate.LayerNorm", False), ("mlp.fc", "intermediate.dense", False),
           ("mlp.proj", "output.dense", False)),
    final=(("ln_f.weight", "LayerNorm.weight"), ("ln_f.bias", "LayerNorm.bias")),
    token_types="embeddings.token_type_embeddings.weight",
    pooler=True,
)  # fmt: skip

_GPT_LAYER = (("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj", True), ("ln_1", "ln_1", False),
              ("mlp.fc", "mlp.c_fc", True), ("mlp.proj", "mlp.c_proj", True), ("ln_2", "ln_2", False))  # fmt: skip

#: OpenAI GPT (GPT-1, post-LN), names without ``transformer.``.
OPENAI_GPT = NameMap(
    embeddings=(("embeddings.wte.weight", "tokens_embed.weight"), ("embeddings.wpe.weight", "positions_embed.weight")),
    block="h.{i}.",
    layer=_GPT_LAYER,
)

#: GPT-2 (pre-LN, with a final LayerNorm), names without ``transformer.``.
GPT2 = NameMap(
    embeddings=(("embeddings.wte.weight", "wte.weight"), ("embeddings.wpe.weight", "wpe.weight")),
    block="h.{i}.",
    layer=_GPT_LAYER,
    final=(("ln_f.weight", "ln_f.weight"), ("ln_f.bias", "ln_f.bias")),
)
