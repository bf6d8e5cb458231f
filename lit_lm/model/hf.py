"""Move weights between lit_lm and Hugging Face checkpoints, both ways.

Supported: BERT (``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM`` directories; with or without the
``bert.`` prefix, as sentence-transformers ships them), OpenAI GPT (``OpenAIGPTModel``, ``OpenAIGPTLMHeadModel``)
and GPT-2 (``GPT2Model``, ``GPT2LMHeadModel``: lit_lm's pre-LayerNorm decoder, :mod:`lit_lm.model.hf_gpt2`).
A checkpoint directory holds ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``).

lit_lm state dicts use one naming for every objective, so a converted checkpoint loads straight into a task::

    backbone.*            Encoder / Decoder (embeddings, blocks, pooler)
    mlm_head.*            BERT masked-LM head (dense, ln, bias; decoder tied to the token embedding)
    nsp_head.*            BERT next-sentence head
    lm_head.decoder.*     GPT LM head (tied to the token embedding)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lit_lm.config import TransformerConfig
from lit_lm.errors import CheckpointError, ConfigError
from lit_lm.model.hf_gpt2 import config_from_gpt2, gpt2_config
from lit_lm.model.hf_heads import import_head
from lit_lm.model.hf_names import BERT, GPT2, OPENAI_GPT, weight_names
from lit_lm.model.hf_roberta_preln import (
    config_from_roberta_preln,
    lit_to_roberta,
    roberta_preln_config,
    roberta_to_lit,
)
from lit_lm.model.transformer import Transformer, build_backbone
from lit_lm.serialization import load_torch_file

_BERT_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
_GPT_ACT = {"gelu": "gelu_tanh", "relu": "relu"}  # OpenAI GPT's "gelu" is the tanh approximation (gelu_new)

# Buffers and tied copies that HF checkpoints may carry and that hold no weights of their own.
_IGNORED_SUFFIXES = ("embeddings.position_ids", ".attn.bias", ".attn.masked_bias")


@dataclass
class HFCheckpoint:
    """A Hugging Face checkpoint converted to lit_lm naming.

    Attributes:
        config: The backbone architecture.
        family: ``"bert"`` or ``"gpt"``.
        state_dict: Weights with ``backbone.`` / ``mlm_head.`` / ``nsp_head.`` / ``lm_head.`` keys.
        heads: Which pretraining heads the checkpoint had (subset of ``mlm``, ``nsp``, ``lm``).
        source: The directory it came from.
        label_names: A fine-tuned classifier's labels in id order (``id2label``), else None.
    """

    config: TransformerConfig
    family: str
    state_dict: dict[str, torch.Tensor]
    heads: list[str] = field(default_factory=list)
    source: str = ""
    label_names: list[str] | None = None

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return {k[len("backbone.") :]: v for k, v in self.state_dict.items() if k.startswith("backbone.")}

    def build_backbone(self) -> Transformer:
        """A ready :class:`Encoder` / :class:`Decoder` with the checkpoint's weights."""
        model = build_backbone(self.config)
        model.load_state_dict(self.backbone_state_dict())
        return model


# ------------------------------------------------------------------------------------------------- configs
def config_from_hf(hf: Mapping, **overrides) -> tuple[TransformerConfig, str]:
    """Translate a Hugging Face ``config.json`` dict into (TransformerConfig, family)."""
    model_type = hf.get("model_type")
    if model_type == "bert":
        act = hf.get("hidden_act", "gelu")
        if act not in _BERT_ACT:
            raise CheckpointError(f"BERT hidden_act {act!r} is not supported; supported: {sorted(_BERT_ACT)}")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError("only absolute position embeddings are supported (position_embedding_type)")
        fields = dict(
            causal=False,
            vocab_size=hf["vocab_size"],
            n_positions=hf["max_position_embeddings"],
            n_layer=hf["num_hidden_layers"],
            n_head=hf["num_attention_heads"],
            n_embd=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            type_vocab_size=hf.get("type_vocab_size", 2),
            activation=_BERT_ACT[act],
            norm_position="post",
            embedding_norm=True,
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            pooler=True,
            initializer_range=hf.get("initializer_range", 0.02),
        )
        family = "bert"
    elif model_type == "openai-gpt":
        act = hf.get("afn", "gelu")
        if act not in _GPT_ACT:
            raise CheckpointError(f"OpenAI GPT afn {act!r} is not supported; supported: {sorted(_GPT_ACT)}")
        n_embd = hf["n_embd"]
        fields = dict(
            causal=True,
            vocab_size=hf["vocab_size"],
            n_positions=hf["n_positions"],
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=n_embd,
            intermediate_size=4 * n_embd,
            type_vocab_size=0,
            activation=_GPT_ACT[act],
            norm_position="post",
            embedding_norm=False,
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            dropout=hf.get("resid_pdrop", 0.1),
            attention_dropout=hf.get("attn_pdrop", 0.1),
            pooler=False,
            initializer_range=hf.get("initializer_range", 0.02),
        )
        family = "gpt"
    elif model_type == "gpt2":
        fields, family = config_from_gpt2(hf), "gpt"
    elif model_type == "roberta-prelayernorm":
        fields, family = config_from_roberta_preln(hf), "bert"
    else:
        known = "bert, openai-gpt, gpt2, roberta-prelayernorm"
        raise CheckpointError(f"unsupported model_type {model_type!r}; lit_lm reads {known}")
    return TransformerConfig(name=f"hf-{model_type}", **{**fields, **overrides}), family


def config_to_hf(config: TransformerConfig, pad_token_id: int = 0) -> dict:
    """The Hugging Face ``config.json`` dict for a lit_lm config: BertForPreTraining / OpenAIGPTLMHeadModel, and for
    pre-LayerNorm backbones GPT2LMHeadModel / RobertaPreLayerNormForMaskedLM (which numbers positions from
    ``pad_token_id + 1``)."""
    if config.norm_position == "pre":
        return gpt2_config(config) if config.causal else roberta_preln_config(config, pad_token_id)
    if config.norm_position != "post":
        raise CheckpointError(f"norm_position={config.norm_position!r} has no Hugging Face equivalent")
    if not config.tie_word_embeddings:
        raise CheckpointError("Hugging Face BERT / OpenAI GPT tie the output projection to the token embedding")
    if not config.causal:
        if not config.embedding_norm:
            raise CheckpointError("BERT applies LayerNorm to the embeddings; this config has embedding_norm=False")
        act = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[config.activation]
        return dict(
            model_type="bert",
            architectures=["BertForPreTraining"],
            vocab_size=config.vocab_size,
            max_position_embeddings=config.n_positions,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            hidden_size=config.n_embd,
            intermediate_size=config.intermediate_size,
            type_vocab_size=max(config.type_vocab_size, 1),
            hidden_act=act,
            layer_norm_eps=config.layer_norm_eps,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attention_dropout,
            initializer_range=config.initializer_range,
            position_embedding_type="absolute",
            pad_token_id=0,
        )
    if config.embedding_norm or config.type_vocab_size > 0 or config.pooler:
        raise CheckpointError(
            "OpenAI GPT has no embedding LayerNorm, segment embeddings or pooler; "
            "set embedding_norm=False, type_vocab_size=0, pooler=False"
        )
    if config.intermediate_size != 4 * config.n_embd:
        raise CheckpointError("OpenAI GPT's feed-forward size is fixed at 4 * n_embd")
    if config.activation == "gelu":
        raise CheckpointError("OpenAI GPT's 'gelu' is the tanh approximation; use activation='gelu_tanh'")
    return dict(
        model_type="openai-gpt",
        architectures=["OpenAIGPTLMHeadModel"],
        vocab_size=config.vocab_size,
        n_positions=config.n_positions,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        afn={"gelu_tanh": "gelu", "relu": "relu"}[config.activation],
        layer_norm_epsilon=config.layer_norm_eps,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.attention_dropout,
        initializer_range=config.initializer_range,
        tie_word_embeddings=True,
    )


# ------------------------------------------------------------------------------------------------- key maps
_BERT_HEADS = {
    "mlm": [
        ("mlm_head.dense.weight", "cls.predictions.transform.dense.weight"),
        ("mlm_head.dense.bias", "cls.predictions.transform.dense.bias"),
        ("mlm_head.ln.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("mlm_head.ln.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("mlm_head.bias", "cls.predictions.bias"),
    ],
    "nsp": [
        ("nsp_head.classifier.weight", "cls.seq_relationship.weight"),
        ("nsp_head.classifier.bias", "cls.seq_relationship.bias"),
    ],
}


def _normalize_hf_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old TF-converted BERTs name LayerNorm parameters gamma/beta."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".gamma"):
            k = k[: -len(".gamma")] + ".weight"
        elif k.endswith(".beta"):
            k = k[: -len(".beta")] + ".bias"
        out[k] = v
    return out


def hf_to_lit(
    hf_sd: Mapping[str, torch.Tensor], config: TransformerConfig, family: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert a HF state dict to lit_lm keys. Returns (state_dict, heads found). Raises on missing keys,
    unexpected keys or wrong shapes, listing all of them."""
    sd = _normalize_hf_keys(hf_sd)
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def take(*candidates: str) -> torch.Tensor | None:
        for c in candidates:
            if c in sd:
                used.add(c)
                return sd[c]
        return None

    heads: list[str] = []
    if family == "bert" and config.norm_position == "pre":
        out, heads, missing = roberta_to_lit(sd, config, take)
    elif family == "bert":
        prefix = "bert." if any(k.startswith("bert.") for k in sd) else ""
        for ours, theirs, _ in weight_names(BERT, config):
            t = take(prefix + theirs)
            if t is None:
                missing.append(prefix + theirs)
            else:
                out["backbone." + ours] = t
        for i in range(config.n_layer):
            base = f"{prefix}encoder.layer.{i}.attention.self."
            parts = {n: (take(f"{base}{n}.weight"), take(f"{base}{n}.bias")) for n in ("query", "key", "value")}
            for n, (w, b) in parts.items():
                if w is None or b is None:
                    missing += [f"{base}{n}.weight", f"{base}{n}.bias"]
            if not missing:
                out[f"backbone.h.{i}.attn.qkv.weight"] = torch.cat([parts[n][0] for n in parts], dim=0)
                out[f"backbone.h.{i}.attn.qkv.bias"] = torch.cat([parts[n][1] for n in parts], dim=0)
        for head, pairs in _BERT_HEADS.items():
            present = [theirs for _, theirs in pairs if theirs in sd]
            if head == "mlm" and "cls.predictions.bias" not in sd and "cls.predictions.decoder.bias" in sd:
                present.append("cls.predictions.decoder.bias")
            if not present:
                continue
            heads.append(head)
            for ours, theirs in pairs:
                alt = "cls.predictions.decoder.bias" if theirs == "cls.predictions.bias" else theirs
                t = take(theirs, alt)
                if t is None:
                    missing.append(theirs)
                else:
                    out[ours] = t
            if head == "mlm":
                take("cls.predictions.decoder.bias")  # tied copy of cls.predictions.bias
                decoder = take("cls.predictions.decoder.weight")
                wte = out.get("backbone.embeddings.wte.weight")
                if decoder is not None and wte is not None and not torch.equal(decoder, wte):
                    raise CheckpointError("cls.predictions.decoder.weight is not tied to the word embeddings")
                out["mlm_head.decoder.weight"] = out["backbone.embeddings.wte.weight"]
    elif family == "gpt":
        prefix = "transformer." if any(k.startswith("transformer.") for k in sd) else ""
        names = weight_names(GPT2 if config.norm_position == "pre" else OPENAI_GPT, config)
        embed = prefix + ("wte.weight" if config.norm_position == "pre" else "tokens_embed.weight")
        for ours, theirs, transposed in names:
            t = take(prefix + theirs)
            if t is None:
                missing.append(prefix + theirs)
            else:
                out["backbone." + ours] = t.t().contiguous() if transposed else t
        lm = take("lm_head.weight")
        if lm is not None or not missing:
            heads.append("lm")
            out["lm_head.decoder.weight"] = out["backbone.embeddings.wte.weight"]
            if lm is not None and not torch.equal(lm, out["backbone.embeddings.wte.weight"]):
                raise CheckpointError(f"lm_head.weight is not tied to {embed}")
    else:
        raise CheckpointError(f"unknown family {family!r}")

    unexpected = sorted(k for k in sd if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if problems:
        raise CheckpointError("checkpoint does not match the architecture in its config.json; " + "; ".join(problems))
    _check_shapes(out, config)
    return out, heads


def _check_shapes(sd: Mapping[str, torch.Tensor], config: TransformerConfig) -> None:
    expected = {f"backbone.{k}": v.shape for k, v in build_backbone(config).state_dict().items()}
    bad = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(shape)}"
        for k, shape in expected.items()
        if k in sd and sd[k].shape != shape
    ]
    if bad:
        raise CheckpointError("shape mismatch between checkpoint and config: " + "; ".join(bad))


def lit_to_hf(
    sd: Mapping[str, torch.Tensor], config: TransformerConfig, pad_token_id: int = 0
) -> dict[str, torch.Tensor]:
    """Convert a lit_lm state dict (``backbone.`` plus optional head keys) to the keys of the class
    :func:`config_to_hf` names."""
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def get(key: str) -> torch.Tensor | None:
        if key not in sd:
            missing.append(key)
            return None
        return sd[key]

    if not config.causal and config.norm_position == "pre":
        out = lit_to_roberta(sd, config, pad_token_id, missing)
    elif not config.causal:
        for ours, theirs, _ in weight_names(BERT, config):
            t = get("backbone." + ours)
            if t is not None:
                out["bert." + theirs] = t
        for i in range(config.n_layer):
            w, b = get(f"backbone.h.{i}.attn.qkv.weight"), get(f"backbone.h.{i}.attn.qkv.bias")
            if w is None or b is None:
                continue
            for n, wi, bi in zip(("query", "key", "value"), w.chunk(3, dim=0), b.chunk(3, dim=0), strict=True):
                out[f"bert.encoder.layer.{i}.attention.self.{n}.weight"] = wi
                out[f"bert.encoder.layer.{i}.attention.self.{n}.bias"] = bi
        for pairs in _BERT_HEADS.values():
            if any(ours in sd for ours, _ in pairs):
                for ours, theirs in pairs:
                    t = get(ours)
                    if t is not None:
                        out[theirs] = t
        if "cls.predictions.bias" in out:
            out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    else:
        gpt2 = config.norm_position == "pre"
        for ours, theirs, transposed in weight_names(GPT2 if gpt2 else OPENAI_GPT, config):
            t = get("backbone." + ours)
            if t is not None:
                out["transformer." + theirs] = t.t() if transposed else t
        embed = "transformer.wte.weight" if gpt2 else "transformer.tokens_embed.weight"
        if embed in out:
            out["lm_head.weight"] = out[embed]
    if missing:
        raise CheckpointError(f"state dict lacks keys needed for export: {missing}")
    return {k: v.detach().contiguous() for k, v in out.items()}


# ------------------------------------------------------------------------------------------------- files
def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (directory / "model.safetensors").is_file():
        files = [directory / "model.safetensors"]
    elif (directory / "model.safetensors.index.json").is_file():
        index = json.loads((directory / "model.safetensors.index.json").read_text())
        files = [directory / name for name in sorted(set(index["weight_map"].values()))]
    elif (directory / "pytorch_model.bin").is_file():
        sd = load_torch_file(directory / "pytorch_model.bin", "state dict")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{directory / 'pytorch_model.bin'}: not a state dict (a dict of tensors)")
        return sd
    else:
        raise CheckpointError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            sd.update(load_file(str(f)))
        except Exception as e:
            raise CheckpointError(f"{f}: cannot be read as safetensors ({e})") from None
    return sd


def is_hf_checkpoint(path: str | Path) -> bool:
    """True if ``path`` is a directory with a Hugging Face ``config.json``."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def load_hf_checkpoint(path: str | Path, **config_overrides) -> HFCheckpoint:
    """Read a local Hugging Face checkpoint directory into lit_lm naming.

    Args:
        path: Directory with ``config.json`` and weights.
        config_overrides: TransformerConfig fields to change, e.g. ``attention_backend="sdpa"``, ``dropout=0.0``.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (expected a Hugging Face checkpoint directory)")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: no config.json; is this a Hugging Face checkpoint directory?")
    try:
        hf_config = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{config_file}: not UTF-8 text, so not a Hugging Face config.json") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(hf_config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, found {type(hf_config).__name__}")
    try:
        config, family = config_from_hf(hf_config, **config_overrides)
    except (KeyError, TypeError, ConfigError, CheckpointError) as e:
        raise CheckpointError(f"{config_file}: cannot build a lit_lm config ({e})") from None
    sd = _read_state_dict(directory)
    architecture = (hf_config.get("architectures") or [""])[0]
    head = import_head(architecture, sd)  # a fine-tuned *For<Task> head, in lit_lm keys (taken out of sd)
    id2label = hf_config.get("id2label") if head else None
    has_pooler = any(k.endswith("pooler.dense.weight") for k in sd)
    if family == "bert" and not has_pooler and "pooler" not in config_overrides:
        config = config.replace(pooler=False)
    try:
        state, heads = hf_to_lit(sd, config, family)
    except CheckpointError as e:
        raise CheckpointError(f"{directory}: {e}") from None
    labels = [id2label[str(i)] for i in range(len(id2label))] if isinstance(id2label, dict) else None
    return HFCheckpoint(config=config, family=family, state_dict={**state, **head}, heads=heads,
                        source=str(directory), label_names=labels)  # fmt: skip


def save_hf_checkpoint(
    out_dir: str | Path,
    config: TransformerConfig,
    state_dict: Mapping[str, torch.Tensor],
    head: tuple[str, dict, dict[str, torch.Tensor]] | None = None,
    pad_token_id: int = 0,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that ``transformers`` loads with ``from_pretrained``.

    ``state_dict`` uses lit_lm keys (``backbone.*`` and optionally ``mlm_head.*``, ``nsp_head.*``). ``head``: a
    fine-tuned head as (architecture, config.json fields, tensors in Hugging Face keys), from
    :func:`lit_lm.model.hf_heads.head_export`.
    """
    from safetensors.torch import save_file

    hf_config = config_to_hf(config, pad_token_id)
    hf_sd = lit_to_hf(state_dict, config, pad_token_id)
    if head is not None:
        architecture, fields, tensors = head
        hf_config.update(architectures=[architecture], **{k: v for k, v in fields.items() if v is not None})
        hf_sd = {k: v for k, v in hf_sd.items() if k != "lm_head.weight"}
        hf_sd.update({k: v.detach().contiguous() for k, v in tensors.items()})
    # safetensors stores each tensor once; drop the tied aliases, transformers re-ties them on load.
    for alias in ("cls.predictions.decoder.weight", "lm_head.weight", "lm_head.decoder.weight"):
        hf_sd.pop(alias, None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in hf_sd.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    return out
