"""A lit_lm checkpoint as a Hugging Face directory that ``transformers`` loads.

The directory holds ``config.json`` and ``model.safetensors`` (BertForPreTraining or OpenAIGPTLMHeadModel, with
the pretraining heads where the checkpoint has them), and the tokenizer the checkpoint was trained with:
``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and, for WordPiece, ``vocab.txt``. So
``AutoTokenizer.from_pretrained(dir)``, ``AutoModel.from_pretrained(dir)`` and ``pipeline("fill-mask", dir)``
(BERT) / ``pipeline("text-generation", dir)`` (GPT) work, and ``model.init_from: dir`` reads it back.

A pre-LayerNorm decoder leaves as GPT-2 (:mod:`lit_lm.model.hf_gpt2`). A fine-tuned model leaves as the
``*For<Task>`` class of its head (:mod:`lit_lm.model.hf_heads`: sequence classification and regression with
``id2label``/``problem_type``, multiple choice, question answering, token classification), its decoder tokenizer with
a post-processor that builds GPT-1's ``[CLS] A [DELIM] B [EXTRACT]``, so ``tokenizer(a, b)`` and the pipelines feed
the model what it was fine-tuned on. What no ``transformers`` class computes identically (a pre-LayerNorm encoder,
mean pooling, GPT-1's both-orderings similarity, an untied output projection, ...) is refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_lm.config import TransformerConfig
from lit_lm.data.core.tokenizer import EOT
from lit_lm.errors import CheckpointError
from lit_lm.model.hf import config_to_hf, save_hf_checkpoint
from lit_lm.model.hf_heads import find_head, head_export
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
    meta = lit_lm_metadata(ckpt, ckpt_path)
    kind = find_head(ckpt["state_dict"])
    head = None
    try:
        config_to_hf(config)  # refuses what no transformers class computes
        if kind is None:
            heads = ("mlm_head.", "nsp_head.") if not config.causal else ()
            state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(("backbone.", *heads))}
        else:
            _check_layout(kind, config, meta.get("data") or {})
            architecture, fields, state, tensors = head_export(kind, ckpt["state_dict"], ckpt.get(
                "hyper_parameters") or {}, config)  # fmt: skip
            if not any(k.startswith("backbone.pooler.") for k in state):
                config = config.replace(pooler=False)
            if config.causal:
                fields["pad_token_id"] = _pad_id(meta.get("tokenizer"))
            head = (architecture, fields, tensors)
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt_path}: cannot be exported to Hugging Face: {e}") from None
    pad_id = _pad_id(meta.get("tokenizer")) if meta.get("tokenizer") else 0
    directory = save_hf_checkpoint(out, config, state, head, pad_token_id=pad_id)
    tokenizer_json = meta.get("tokenizer")
    if config.causal:  # GPT-2's end-of-text token, where the tokenizer has one (else none: not 50256, GPT-2's own)
        eot = _token_id(tokenizer_json, EOT)
        hf_config = json.loads((directory / "config.json").read_text())
        hf_config.update(bos_token_id=eot, eos_token_id=eot)
        (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    if tokenizer_json:
        data = meta.get("data") or {}
        start = bool(data.get("start_token", True)) if config.causal and kind is not None else None
        _write_tokenizer(directory, tokenizer_json, config.n_positions, bert=not config.causal,
                         decoder_task_start=start, language_model=config.causal and kind is None)  # fmt: skip
    return directory


def _check_layout(kind: str, config: TransformerConfig, data: dict) -> None:
    """Refuse a fine-tuned model whose inputs were laid out in a way the ``transformers`` class does not read."""
    if data.get("views") not in (None, 1):
        raise CheckpointError(
            f"the model was fine-tuned on {data['views']} views of each example (GPT-1's both orderings of a pair, "
            "their states added); a transformers *ForSequenceClassification reads one sequence"
        )
    if config.causal and data.get("format") == "encoder":
        raise CheckpointError("a decoder fine-tuned on the encoder format has no transformers equivalent")


def _token_id(tokenizer_json: str | None, token: str) -> int | None:
    spec = json.loads(tokenizer_json or "{}")
    vocab = (spec.get("model") or {}).get("vocab") or {}
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    found = added.get(token, vocab.get(token) if isinstance(vocab, dict) else None)
    return None if found is None else int(found)


def _pad_id(tokenizer_json: str | None) -> int:
    """The ``[PAD]`` id (GPT *ForSequenceClassification finds each sequence's last token by it)."""
    pad = _token_id(tokenizer_json, "[PAD]")
    if pad is None:
        raise CheckpointError("the tokenizer has no [PAD] token, which a GPT *ForSequenceClassification needs")
    return pad


def _write_tokenizer(
    directory: Path,
    tokenizer_json: str,
    max_length: int,
    bert: bool,
    decoder_task_start: bool | None = None,
    language_model: bool = False,
) -> None:
    """The tokenizer files, adding to a text exactly what lit_lm adds: nothing for a decoder language model
    (``language_model``: lit_lm's ``predict`` continues the prompt's own tokens, so ``pipeline("text-generation")``
    must too); for a fine-tuned decoder (``decoder_task_start`` set: whether sequences begin with ``[CLS]``), GPT-1's
    ``[CLS]? A [DELIM] B [EXTRACT]``, so ``tokenizer(a, b)`` makes the input the model was fine-tuned on; BERT's
    ``[CLS] A [SEP] B [SEP]`` for encoders, as trained."""
    spec = json.loads(tokenizer_json)
    if decoder_task_start is not None or language_model:
        spec["post_processor"] = None if language_model else _decoder_template(spec, bool(decoder_task_start))
        tokenizer_json = json.dumps(spec, ensure_ascii=False)
    model = spec.get("model") or {}
    normalizer = spec.get("normalizer") or {}
    lowercase = bool(normalizer.get("lowercase", False))
    (directory / "tokenizer.json").write_text(tokenizer_json)
    if model.get("type") == "WordPiece":
        vocab = sorted(model["vocab"].items(), key=lambda item: item[1])
        (directory / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab))
    special = dict(_SPECIAL)
    if _token_id(tokenizer_json, EOT) is not None:
        special.update(bos_token=EOT, eos_token=EOT)
    config = {
        "tokenizer_class": "BertTokenizerFast" if bert else "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "do_lower_case": lowercase,
        **special,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def _decoder_template(spec: dict, start: bool) -> dict:
    ids = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    missing = [t for t in ("[CLS]", "[DELIM]", "[EXTRACT]") if t not in ids]
    if missing:
        raise CheckpointError(f"the tokenizer lacks {missing}, which the GPT-1 task format needs")
    head = [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}] if start else []
    seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}  # noqa: E731
    special = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}  # noqa: E731
    return {
        "type": "TemplateProcessing",
        "single": head + [seq("A"), special("[EXTRACT]")],
        "pair": head + [seq("A"), special("[DELIM]"), seq("B"), special("[EXTRACT]")],
        "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ("[CLS]", "[DELIM]", "[EXTRACT]")},
    }
