"""Fine-tuned heads as the Hugging Face ``*For<Task>`` classes a user loads: what each lit_lm head becomes, and
where a head reads something no ``transformers`` class reproduces (then the export is refused, never approximated).

====================  ==========================================  ==============================================
lit_lm task (keys)    BERT (encoder; RoBERTa-PreLayerNorm if pre-LN)  GPT (decoder: GPT-2 if pre-LN, else OpenAI GPT)
====================  ==========================================  ==============================================
SequenceClass.        ``BertForSequenceClassification``: the      ``GPT2ForSequenceClassification`` /
(``classifier.*``)    pooler + dropout + ``classifier`` (pooling  ``OpenAIGPTForSequenceClassification``: ``score``
                      ``pooler`` only)                            on the last non-padding token (``[EXTRACT]``)
MultipleChoice        ``BertForMultipleChoice``                   refused (no such class)
QuestionAnswering     ``BertForQuestionAnswering`` (``qa_outputs``)  refused (no such class for these decoders)
TokenClassification   ``BertForTokenClassification``              refused (GPT-2's reads the token itself: allowed)
====================  ==========================================  ==============================================

GPT's ``score`` layer has no bias, lit_lm's classifier has one: the bias is moved into the final LayerNorm's bias
(``ln_f`` of GPT-2, the last block's ``ln_2`` of OpenAI GPT; nothing else reads them in a ``*ForSequence
Classification``): with ``W`` the classifier weight, ``beta' = beta + W^T (W W^T)^-1 b`` gives ``W h' = W h + b``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lit_lm.config import TransformerConfig
from lit_lm.errors import CheckpointError

__all__ = ["HEAD_KINDS", "find_head", "head_export"]

#: lit_lm's fine-tuning heads by the state-dict key that marks them.
HEAD_KINDS = {
    "classifier.classifier.weight": "sequence_classification",
    "scorer.scorer.classifier.weight": "multiple_choice",
    "span_head.qa_outputs.weight": "question_answering",
    "token_classifier.classifier.weight": "token_classification",
}


def find_head(state: Mapping[str, torch.Tensor]) -> str | None:
    """The fine-tuning head a checkpoint's state dict holds (None for a pretraining checkpoint)."""
    return next((kind for key, kind in HEAD_KINDS.items() if key in state), None)


def _labels(hparams: Mapping[str, Any], n: int) -> dict[str, Any]:
    names = hparams.get("label_names") or [f"LABEL_{i}" for i in range(n)]
    if len(names) != n:
        raise CheckpointError(f"the classifier has {n} outputs but label_names lists {len(names)}")
    return {"id2label": {str(i): name for i, name in enumerate(names)}, "label2id": {name: i for i, name in
            enumerate(names)}}  # fmt: skip


def _fold_bias(state: dict[str, torch.Tensor], weight: torch.Tensor, bias: torch.Tensor, ln_bias_key: str) -> None:
    """Move a classifier's bias into the LayerNorm bias the classifier reads (see the module docstring)."""
    w = weight.double()
    try:
        shift = w.T @ torch.linalg.solve(w @ w.T, bias.double())
    except RuntimeError:  # W W^T singular: the classes' weight rows are linearly dependent
        raise CheckpointError("the classifier's weight rows are linearly dependent: its bias cannot be moved "
                              "into the final LayerNorm, and the transformers class has no bias") from None  # fmt: skip
    state[ln_bias_key] = (state[ln_bias_key].double() + shift).to(state[ln_bias_key].dtype)


def head_export(
    kind: str, state: Mapping[str, torch.Tensor], hparams: Mapping[str, Any], config: TransformerConfig
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(architecture, config.json fields, backbone state to export in lit_lm keys, head tensors in HF keys).

    Raises :class:`CheckpointError` with one line naming what the ``transformers`` class cannot reproduce."""
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    pooling = hparams.get("pooling")
    if not config.causal:
        if kind in ("sequence_classification", "multiple_choice"):
            if pooling not in (None, "pooler") or not config.pooler:
                raise CheckpointError(
                    f"pooling={pooling or 'token'!r}: BERT's *ForSequenceClassification / *ForMultipleChoice read the "
                    "pooler (tanh dense on [CLS]); a head trained on another pooling would predict differently"
                )
        else:  # the token-level heads read no pooler
            backbone = {k: v for k, v in backbone.items() if not k.startswith("backbone.pooler.")}
        name = "RobertaPreLayerNorm" if config.norm_position == "pre" else "Bert"
        if kind == "sequence_classification":
            w, b = state["classifier.classifier.weight"], state["classifier.classifier.bias"]
            fields = {"problem_type": hparams.get("problem_type") or "single_label_classification",
                      "classifier_dropout": hparams.get("classifier_dropout"), **_labels(hparams, w.size(0))}
            tensors = {"classifier.weight": w, "classifier.bias": b}
            if name != "Bert":  # RoBERTa's classifier: a tanh dense on the first token (the pooler), then out_proj
                tensors = {"classifier.dense.weight": state["backbone.pooler.weight"],
                           "classifier.dense.bias": state["backbone.pooler.bias"],
                           "classifier.out_proj.weight": w, "classifier.out_proj.bias": b}  # fmt: skip
                backbone = {k: v for k, v in backbone.items() if not k.startswith("backbone.pooler.")}
            return f"{name}ForSequenceClassification", fields, backbone, tensors
        if kind == "multiple_choice":
            w, b = state["scorer.scorer.classifier.weight"], state["scorer.scorer.classifier.bias"]
            fields = {"classifier_dropout": hparams.get("classifier_dropout")}
            return f"{name}ForMultipleChoice", fields, backbone, {"classifier.weight": w, "classifier.bias": b}
        if kind == "question_answering":
            tensors = {"qa_outputs.weight": state["span_head.qa_outputs.weight"],
                       "qa_outputs.bias": state["span_head.qa_outputs.bias"]}  # fmt: skip
            return f"{name}ForQuestionAnswering", {}, backbone, tensors
        w, b = state["token_classifier.classifier.weight"], state["token_classifier.classifier.bias"]
        fields = {"classifier_dropout": hparams.get("classifier_dropout"), **_labels(hparams, w.size(0))}
        return f"{name}ForTokenClassification", fields, backbone, {"classifier.weight": w, "classifier.bias": b}

    gpt2 = config.norm_position == "pre"
    name = "GPT2" if gpt2 else "OpenAIGPT"
    if kind != "sequence_classification":
        raise CheckpointError(f"a decoder's {kind.replace('_', ' ')} head has no {name}For... class that computes it")
    if pooling not in (None, "token"):
        raise CheckpointError(f"pooling={pooling!r}: {name}ForSequenceClassification reads the last token's state")
    w, b = state["classifier.classifier.weight"], state["classifier.classifier.bias"]
    ln = "backbone.ln_f.bias" if gpt2 else f"backbone.h.{config.n_layer - 1}.ln_2.bias"
    backbone = dict(backbone)
    _fold_bias(backbone, w, b, ln)
    fields = {"problem_type": hparams.get("problem_type") or "single_label_classification",
              **_labels(hparams, w.size(0))}  # fmt: skip
    return f"{name}ForSequenceClassification", fields, backbone, {"score.weight": w}


def import_head(architecture: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Take a ``*For<Task>`` head's tensors out of a Hugging Face state dict ``sd`` (removed from it) and return
    them in lit_lm keys, the inverse of :func:`head_export`: ``init_from`` an exported fine-tuned model then starts
    with its head. A RoBERTa classifier's dense layer goes back into ``sd`` as the pooler it came from; a GPT
    ``score`` layer gets a zero bias (its bias lives in the final LayerNorm)."""
    def pop(*keys: str) -> list[torch.Tensor | None]:
        return [sd.pop(k, None) for k in keys]

    out: dict[str, torch.Tensor] = {}
    if architecture.endswith("ForSequenceClassification"):
        if "score.weight" in sd:
            (w,) = pop("score.weight")
            out = {"classifier.classifier.weight": w, "classifier.classifier.bias": w.new_zeros(w.size(0))}
        elif "classifier.out_proj.weight" in sd:
            dw, db, w, b = pop("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                               "classifier.out_proj.bias")  # fmt: skip
            sd["roberta_prelayernorm.pooler.dense.weight"], sd["roberta_prelayernorm.pooler.dense.bias"] = dw, db
            out = {"classifier.classifier.weight": w, "classifier.classifier.bias": b}
        else:
            w, b = pop("classifier.weight", "classifier.bias")
            out = {"classifier.classifier.weight": w, "classifier.classifier.bias": b}
    elif architecture.endswith("ForMultipleChoice"):
        w, b = pop("classifier.weight", "classifier.bias")
        out = {"scorer.scorer.classifier.weight": w, "scorer.scorer.classifier.bias": b}
    elif architecture.endswith("ForQuestionAnswering"):
        w, b = pop("qa_outputs.weight", "qa_outputs.bias")
        out = {"span_head.qa_outputs.weight": w, "span_head.qa_outputs.bias": b}
    elif architecture.endswith("ForTokenClassification"):
        w, b = pop("classifier.weight", "classifier.bias")
        out = {"token_classifier.classifier.weight": w, "token_classifier.classifier.bias": b}
    return {k: v for k, v in out.items() if v is not None}
