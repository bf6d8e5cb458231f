"""Fine-tuned heads leave as the transformers class a user loads and predict the same through its pipelines:
sequence classification and regression (BERT; GPT-2 and OpenAI GPT with the classifier's bias moved into the
final LayerNorm), multiple choice, question answering and token classification (BERT); what no class computes is
refused in one line."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lit_lm.data import (
    MultipleChoiceDataModule,
    NLIDataModule,
    QuestionAnsweringDataModule,
    SentencePairDataModule,
    TokenClassificationDataModule,
)
from lit_lm.data.finetuning.builtin import builtin_nli
from lit_lm.errors import CheckpointError
from lit_lm.export import export_checkpoint
from lit_lm.tasks import (
    MultipleChoice,
    QuestionAnswering,
    SequenceClassification,
    TokenClassification,
)

transformers = pytest.importorskip("transformers")
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "intermediate_size": 256, "dropout": 0.0, "attention_dropout": 0.0}


def _fine_tune(model: L.LightningModule, dm: L.LightningDataModule, path: Path, steps: int = 3) -> Path:
    """A few real optimizer steps (the heads leave their initialisation), then the checkpoint lit_lm writes."""
    torch.manual_seed(0)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, dm)
    trainer.save_checkpoint(path)
    return path


def _pairs(n: int = 12) -> list[tuple[str, str]]:
    return [(e.premise, e.hypothesis) for e in builtin_nli("test")[:n]]


def _our_logits(model, dm, firsts, seconds) -> torch.Tensor:
    from lit_lm.data.finetuning.encoding import ClassificationCollator, ClassificationDataset, encode_pairs

    enc = encode_pairs(dm.tokenizer, firsts, seconds, dm.format, dm.start_token, dm.max_seq_length)
    import numpy as np

    batch = ClassificationCollator(dm.tokenizer.pad_id)([ClassificationDataset([enc], np.zeros(len(firsts),
                                                        dtype=np.int64))[i] for i in range(len(firsts))])  # fmt: skip
    model.eval()
    with torch.no_grad():
        return model(batch)[0]


@pytest.mark.parametrize("family", ["bert", "roberta-preln", "gpt2", "openai-gpt"])
def test_sequence_classification_predicts_the_same_through_the_pipeline(family, pretrained, tmp_path):
    if family == "bert":
        dm = NLIDataModule(tokenizer=str(pretrained["bert"]), format="encoder", batch_size=8, max_seq_length=64)
        model = SequenceClassification(init_from=str(pretrained["bert"]), learning_rate=1e-3)
    elif family == "roberta-preln":  # a pre-LN encoder: RoBERTa-PreLayerNorm's classifier = lit_lm's pooler + head
        dm = NLIDataModule(tokenizer=str(pretrained["bert"]), format="encoder", batch_size=8, max_seq_length=64)
        model = SequenceClassification(preset="bert-tiny", config={**TINY, "norm_position": "pre"}, learning_rate=1e-3)
    else:
        dm = NLIDataModule(tokenizer=str(pretrained["gpt"]), format="decoder", batch_size=8, max_seq_length=64)
        norm = "pre" if family == "gpt2" else "post"
        model = SequenceClassification(preset="gpt-micro", config={**TINY, "norm_position": norm}, learning_rate=1e-3)
    ckpt = _fine_tune(model, dm, tmp_path / "model.ckpt")
    out = export_checkpoint(str(ckpt), str(tmp_path / "hf"))
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    expected = {"bert": "BertForSequenceClassification", "gpt2": "GPT2ForSequenceClassification",
                "roberta-preln": "RobertaPreLayerNormForSequenceClassification",
                "openai-gpt": "OpenAIGPTForSequenceClassification"}[family]  # fmt: skip
    assert type(hf).__name__ == expected and hf.config.id2label == dict(enumerate(dm.label_names))
    pairs = _pairs()
    ours = torch.softmax(_our_logits(model, dm, [a for a, _ in pairs], [b for _, b in pairs]), -1)
    pipe = transformers.pipeline("text-classification", model=str(out), top_k=None)
    theirs = pipe([{"text": a, "text_pair": b} for a, b in pairs])
    for row, got in zip(ours, theirs, strict=True):
        by_label = {d["label"]: d["score"] for d in got}
        assert max(by_label, key=by_label.get) == dm.label_names[int(row.argmax())]
        torch.testing.assert_close(torch.tensor([by_label[n] for n in dm.label_names]), row, rtol=1e-4, atol=1e-5)


def test_regression_exports_with_its_problem_type(pretrained, tmp_path):
    dm = SentencePairDataModule(task="stsb", tokenizer=str(pretrained["bert"]), format="encoder", batch_size=8,
                                max_seq_length=64)  # fmt: skip
    model = SequenceClassification(init_from=str(pretrained["bert"]), learning_rate=1e-3)
    out = export_checkpoint(str(_fine_tune(model, dm, tmp_path / "m.ckpt")), str(tmp_path / "hf"))
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert hf.config.problem_type == "regression" and hf.config.num_labels == 1
    pairs = _pairs(6)
    ours = _our_logits(model, dm, [a for a, _ in pairs], [b for _, b in pairs]).squeeze(-1)
    pipe = transformers.pipeline("text-classification", model=str(out), function_to_apply="none")
    theirs = torch.tensor([r["score"] for r in pipe([{"text": a, "text_pair": b} for a, b in pairs])])
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


def test_multiple_choice_and_token_classification_logits(pretrained, tmp_path):
    dm = MultipleChoiceDataModule(tokenizer=str(pretrained["bert"]), format="encoder", batch_size=4, max_seq_length=64)
    model = MultipleChoice(init_from=str(pretrained["bert"]), learning_rate=1e-3)
    out = export_checkpoint(str(_fine_tune(model, dm, tmp_path / "mc.ckpt")), str(tmp_path / "mc"))
    hf = transformers.AutoModelForMultipleChoice.from_pretrained(out).eval()
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    with torch.no_grad():
        kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        torch.testing.assert_close(hf(**kwargs).logits, model(batch)[0], rtol=1e-4, atol=1e-4)

    dm = TokenClassificationDataModule(tokenizer=str(pretrained["bert"]), format="encoder", batch_size=8)
    model = TokenClassification(init_from=str(pretrained["bert"]), learning_rate=1e-3)
    out = export_checkpoint(str(_fine_tune(model, dm, tmp_path / "ner.ckpt")), str(tmp_path / "ner"))
    pipe = transformers.pipeline("token-classification", model=str(out), ignore_labels=[])
    words = dm.examples("val")[0].words
    text = " ".join(words)
    theirs = [d["entity"] for d in pipe(text)]
    ids = torch.tensor([dm.tokenizer.encode(text, add_special_tokens=True)])
    model.eval()
    with torch.no_grad():
        ours = model({"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(
            ids)})  # fmt: skip
    logits = ours[0] if isinstance(ours, tuple) else ours
    assert theirs == [model.hparams.label_names[int(i)] for i in logits[0, 1:-1].argmax(-1)]


def test_question_answering_gives_the_same_logits_and_answers(pretrained, tmp_path):
    """transformers 5 has no question-answering pipeline: BertForQuestionAnswering's logits on the windows, decoded
    by the same n-best search, give the same answer to every question."""
    from lit_lm.tasks.question_answering import best_spans

    dm = QuestionAnsweringDataModule(tokenizer=str(pretrained["bert"]), max_seq_length=128, doc_stride=32,
                                     max_query_length=32, batch_size=8)  # fmt: skip
    model = QuestionAnswering(init_from=str(pretrained["bert"]), learning_rate=2e-3)
    out = export_checkpoint(str(_fine_tune(model, dm, tmp_path / "qa.ckpt", steps=6)), str(tmp_path / "hf"))
    dm._splits["val"] = dm.examples("val")[:48]  # enough questions, some of them over several windows
    dm.datasets.pop("val", None)
    hf = transformers.AutoModelForQuestionAnswering.from_pretrained(out).eval()
    assert type(hf).__name__ == "BertForQuestionAnswering"
    model.eval()
    rows = {k: [] for k in ("window_index", "scores", "starts", "ends", "null")}
    answers = {}
    for source in ("ours", "theirs"):
        for batch in dm.val_dataloader():
            with torch.no_grad():
                if source == "ours":
                    start, end, _ = model(batch)
                else:
                    logits = hf(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
                    start, end = (x.masked_fill(batch["attention_mask"] == 0, -1e9)
                                  for x in (logits.start_logits, logits.end_logits))  # fmt: skip
            scores, s, e = best_spans(start, end, batch["context_start"], batch["context_end"])
            for key, value in zip(rows, (batch["window_index"], scores, s, e, start[:, 0] + end[:, 0]), strict=True):
                rows[key].append(value)
        cat = {k: torch.cat(v).numpy() for k, v in rows.items()}
        answers[source] = dm.answers("val", cat["window_index"], cat["starts"], cat["ends"], cat["scores"], cat["null"])
        rows = {k: [] for k in rows}
    assert answers["ours"] == answers["theirs"] and len(answers["ours"]) == len(dm.examples("val"))


def test_heads_no_transformers_class_computes_are_refused(pretrained, tmp_path):
    dm = SentencePairDataModule(task="stsb", tokenizer=str(pretrained["gpt"]), format="decoder", batch_size=8,
                                max_seq_length=64)  # fmt: skip
    assert dm.views == 2  # GPT-1's similarity format: both orderings, added
    model = SequenceClassification(preset="gpt-micro", config=TINY)
    with pytest.raises(CheckpointError, match="2 views"):
        export_checkpoint(str(_fine_tune(model, dm, tmp_path / "sim.ckpt", steps=1)), str(tmp_path / "a"))
    dm = NLIDataModule(tokenizer=str(pretrained["bert"]), format="encoder", batch_size=8, max_seq_length=64)
    model = SequenceClassification(init_from=str(pretrained["bert"]), pooling="mean")
    with pytest.raises(CheckpointError, match="pooling='mean'"):
        export_checkpoint(str(_fine_tune(model, dm, tmp_path / "mean.ckpt", steps=1)), str(tmp_path / "b"))


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_an_exported_fine_tuned_model_comes_back_with_its_head(family, pretrained, tmp_path):
    """`init_from` an exported *ForSequenceClassification directory starts from its classifier too (GPT-2's with the
    bias in ln_f and a zero classifier bias: the same function), its rows put in the task's label order."""
    import json

    tok = pretrained["bert" if family == "bert" else "gpt"]
    fmt = "encoder" if family == "bert" else "decoder"
    dm = NLIDataModule(tokenizer=str(tok), format=fmt, batch_size=8, max_seq_length=64)
    if family == "bert":
        model = SequenceClassification(init_from=str(pretrained["bert"]), learning_rate=1e-3)
    else:
        model = SequenceClassification(preset="gpt-micro", config={**TINY, "norm_position": "pre"}, learning_rate=1e-3)
    out = export_checkpoint(str(_fine_tune(model, dm, tmp_path / "m.ckpt")), str(tmp_path / "hf"))
    config = json.loads((out / "config.json").read_text())  # the labels in another order (and case), rows to match
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    config["id2label"] = {str(i): n.upper() for i, n in enumerate(reversed(names))}
    config["label2id"] = {n: int(i) for i, n in config["id2label"].items()}
    (out / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(out / "model.safetensors"))
    for key in ("classifier.weight", "classifier.bias", "score.weight"):
        if key in weights:
            weights[key] = weights[key].flip(0).contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    back = SequenceClassification(init_from=str(out))
    trainer = L.Trainer(max_steps=0, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(back, dm)  # builds the model from init_from with the DataModule's labels
    pairs = _pairs(8)
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    torch.testing.assert_close(_our_logits(back, dm, firsts, seconds), _our_logits(model, dm, firsts, seconds),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
