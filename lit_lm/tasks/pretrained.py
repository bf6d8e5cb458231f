"""Read pretrained backbones: lit_lm checkpoints (``.ckpt`` of any task) and Hugging Face directories."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from lit_lm.config import TransformerConfig
from lit_lm.errors import CheckpointError
from lit_lm.model.hf import is_hf_checkpoint, load_hf_checkpoint
from lit_lm.serialization import LIT_LM_KEY, lit_lm_metadata, read_checkpoint

#: Config fields a fine-tuning run may change on a pretrained backbone without breaking its weights.
TUNABLE_FIELDS = ("dropout", "attention_dropout", "attention_backend", "name")


@dataclass
class Pretrained:
    """Weights and architecture read from ``init_from``.

    Attributes:
        config: The backbone's architecture.
        state_dict: Weights in lit_lm naming (``backbone.*``, and whatever heads the source had).
        tokenizer_json: The tokenizer the backbone was trained with, if the source carries one.
        source: Where it came from.
        label_names: The labels of a fine-tuned classifier head it carries, in id order (None: unknown or none).
    """

    config: TransformerConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str | None
    source: str
    label_names: list[str] | None = None


def config_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> TransformerConfig:
    """The backbone architecture that a lit_lm task recorded in its checkpoint."""
    known = {f.name for f in fields(TransformerConfig)}
    return TransformerConfig(**{k: v for k, v in lit_lm_metadata(ckpt, path)["config"].items() if k in known})


def load_pretrained(path: str | Path) -> Pretrained:
    """Read a lit_lm ``.ckpt`` or a Hugging Face checkpoint directory, safely (:mod:`lit_lm.serialization`)."""
    if is_hf_checkpoint(path):
        hf = load_hf_checkpoint(path)
        tok = None
        for name in ("tokenizer.json",):
            if (Path(path) / name).is_file():
                tok = (Path(path) / name).read_text()
        return Pretrained(hf.config, hf.state_dict, tok, str(path), hf.label_names)
    if Path(path).is_dir():
        raise CheckpointError(f"{path}: a directory without config.json; expected a .ckpt file or a HF checkpoint")
    ckpt = read_checkpoint(path)
    config = config_from_checkpoint(ckpt, path)
    labels = (ckpt.get("hyper_parameters") or {}).get("label_names")
    return Pretrained(config, ckpt["state_dict"], ckpt[LIT_LM_KEY].get("tokenizer"), str(path),
                      list(labels) if labels else None)  # fmt: skip


def merge_config(pretrained: TransformerConfig, overrides: dict[str, Any] | None, source: str) -> TransformerConfig:
    """Apply the fine-tuning run's ``config`` overrides; refuse ones that change the architecture."""
    overrides = dict(overrides or {})
    bad = {k: v for k, v in overrides.items() if k not in TUNABLE_FIELDS and getattr(pretrained, k, v) != v}
    if bad:
        raise CheckpointError(
            f"config overrides {bad} change the architecture of the pretrained backbone in {source}; "
            f"only {list(TUNABLE_FIELDS)} may differ when fine-tuning"
        )
    return pretrained.replace(**{k: v for k, v in overrides.items() if k in TUNABLE_FIELDS})
