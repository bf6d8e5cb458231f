"""A lit_lm checkpoint as a Hugging Face directory that ``transformers`` loads.

The directory holds ``config.json`` and ``model.safetensors`` (BertForPreTraining or OpenAIGPTLMHeadModel, with
the pretraining heads where the checkpoint has them), and the tokenizer the checkpoint was trained with:
``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and, for WordPiece, ``vocab.txt``. So
``AutoTokenizer.from_pretrained(dir)``, ``AutoModel.from_pretrained(dir)`` and ``pipeline("fill-mask", dir)``
(BERT) / ``pipeline("text-generation", dir)`` (GPT) work, and ``model.init_from: dir`` reads it back.

A backbone that Hugging Face's BERT / OpenAI GPT cannot express (pre-LayerNorm, untied output projection, a GPT
with embedding LayerNorm, ...) is refused with the setting named.
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_lm.errors import CheckpointError
from lit_lm.model.hf import config_to_hf, save_hf_checkpoint
from lit_lm.serialization import lit_lm_metadata, read_checkpoint
from lit_lm.tasks.pretrained import config_from_checkpoint

__all__ = ["export_checkpoint"]

_SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
            "mask_token": "[MASK]"}  # fmt: skip


def export_checkpoint(ckpt_path: str, out: str) -> Path:
    """Write the Hugging Face directory ``out`` for the lit_lm checkpoint ``ckpt_path`` (see the module docstring).

    Args:
        ckpt_path: A ``.ckpt`` written by any lit_lm task with a BERT or GPT backbone (read safely).
        out: The directory to write (created; files in it are replaced).
    """
    ckpt = read_checkpoint(ckpt_path)
    config = config_from_checkpoint(ckpt, ckpt_path)
    try:
        config_to_hf(config)
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt_path}: cannot be exported to Hugging Face: {e}") from None
    heads = ("mlm_head.", "nsp_head.") if not config.causal else ()
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(("backbone.", *heads))}
    directory = save_hf_checkpoint(out, config, state)
    tokenizer_json = lit_lm_metadata(ckpt, ckpt_path).get("tokenizer")
    if tokenizer_json:
        _write_tokenizer(directory, tokenizer_json, config.n_positions, bert=not config.causal)
    return directory


def _write_tokenizer(directory: Path, tokenizer_json: str, max_length: int, bert: bool) -> None:
    spec = json.loads(tokenizer_json)
    model = spec.get("model") or {}
    normalizer = spec.get("normalizer") or {}
    lowercase = bool(normalizer.get("lowercase", False))
    (directory / "tokenizer.json").write_text(tokenizer_json)
    if model.get("type") == "WordPiece":
        vocab = sorted(model["vocab"].items(), key=lambda item: item[1])
        (directory / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab))
    config = {
        "tokenizer_class": "BertTokenizerFast" if bert else "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "do_lower_case": lowercase,
        **_SPECIAL,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(_SPECIAL, indent=2) + "\n")
