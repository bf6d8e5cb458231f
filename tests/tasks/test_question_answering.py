"""The QuestionAnswering task: exact n-best span search, scores equal to the official SQuAD scorer's, fitting and
predicting on the built-in set in both formats, SQuAD v2's null answer."""

from __future__ import annotations

import collections
import json
import re
import string

import lightning as L
import numpy as np
import pytest
import torch
from torchmetrics.functional.text import squad

from lit_lm.data.finetuning.question_answering import QuestionAnsweringDataModule
from lit_lm.data.finetuning.squad import QAExample
from lit_lm.tasks.question_answering import QuestionAnswering, best_spans


# ------------------------------------------------------------------------------ the official v1.1 scorer's rules
def _normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def _official_f1(prediction: str, truth: str) -> float:
    p, t = _normalize(prediction).split(), _normalize(truth).split()
    same = sum((collections.Counter(p) & collections.Counter(t)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def test_exact_match_and_f1_equal_the_official_scorer():
    cases = {  # prediction, gold answers: case, punctuation, articles, partial overlap, several golds
        "a": ("The Eiffel Tower.", ["Eiffel Tower"]),
        "b": ("denver broncos", ["Denver Broncos", "the Broncos"]),
        "c": ("in the year 1990", ["1990"]),
        "d": ("Carolina Panthers, an NFL team", ["Carolina Panthers"]),
        "e": ("Santa Clara", ["Levi's Stadium", "Santa Clara, California"]),
        "f": ("", ["gold"]),
        "g": ("an apple a day", ["apple; day!"]),
    }
    got = squad([{"id": k, "prediction_text": p} for k, (p, _) in cases.items()],
                [{"id": k, "answers": {"text": g, "answer_start": [0] * len(g)}} for k, (_, g) in cases.items()])
    em = 100 * np.mean([max(_normalize(p) == _normalize(t) for t in g) for p, g in cases.values()])
    f1 = 100 * np.mean([max(_official_f1(p, t) for t in g) for p, g in cases.values()])
    assert float(got["exact_match"]) == pytest.approx(em) and float(got["f1"]) == pytest.approx(f1)
    assert 0 < em < f1 < 100


# ------------------------------------------------------------------------------ span search
def test_best_spans_is_the_exact_n_best_of_allowed_spans():
    g = torch.Generator().manual_seed(0)
    B, T, n_best, max_len = 3, 24, 5, 4
    start, end = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    cs, ce = torch.tensor([3, 5, 20]), torch.tensor([20, 24, 22])
    scores, starts, ends = best_spans(start, end, cs, ce, n_best, max_len)
    for b in range(B):
        allowed = sorted(((start[b, i] + end[b, j]).item(), i, j) for i in range(cs[b], ce[b])
                         for j in range(i, min(ce[b], i + max_len)))[::-1]  # fmt: skip
        want = allowed[:n_best] + [(float("-inf"), None, None)] * (n_best - len(allowed))
        assert scores[b].tolist() == pytest.approx([s for s, _, _ in want])
        for k, (_, i, j) in enumerate(want):
            if i is not None:
                assert (starts[b, k].item(), ends[b, k].item()) == (i, j)


def test_null_answer_wins_only_by_more_than_the_threshold(tmp_path):
    ex = QAExample("q", "t", "Nobody knows where it is.", "Where is it?", ())
    dm = QuestionAnsweringDataModule(max_seq_length=32, doc_stride=4, max_query_length=8, cache_dir=str(tmp_path))
    dm._splits["test"] = [ex]
    dm._dataset("test")
    one = np.array([0])
    starts, ends = np.array([[7]]), np.array([[8]])
    assert dm.answers("test", one, starts, ends, np.array([[2.0]]), np.array([3.0]), 0.0) == {"q": ""}
    assert dm.answers("test", one, starts, ends, np.array([[2.0]]), np.array([3.0]), 1.5) != {"q": ""}
    dm.version_2_with_negative = False  # SQuAD v1: always a span
    assert dm.answers("test", one, starts, ends, np.array([[2.0]]), np.array([3.0]), 0.0) != {"q": ""}


# ------------------------------------------------------------------------------ training
@pytest.mark.slow
@pytest.mark.parametrize("format", ["encoder", "decoder"])
def test_fits_the_builtin_set_and_writes_predictions(format, tmp_path):
    """An encoder learns the generated questions; a decoder (question first, then the context) runs the same path
    (a few steps: causal attention needs longer to learn spans)."""
    torch.manual_seed(0)
    dm = QuestionAnsweringDataModule(format=format, max_seq_length=64, doc_stride=16, max_query_length=16,
                                     batch_size=32, vocab_size=600, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    preset = "bert-tiny" if format == "encoder" else "gpt-micro"
    model = QuestionAnswering(preset=preset, config={"n_layer": 2, "n_embd": 64, "n_head": 2, "intermediate_size":
                              128, "n_positions": 64}, learning_rate=2e-3, warmup_steps=0.1)  # fmt: skip
    steps = 80 if format == "encoder" else 4
    trainer = L.Trainer(max_steps=steps, val_check_interval=steps, check_val_every_n_epoch=None, accelerator="cpu",
                        devices=1, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    untrained = trainer.validate(model, dm, verbose=False)[0]["val/f1"]
    trainer.fit(model, dm)
    f1 = float(trainer.callback_metrics["val/f1"])
    if format == "encoder":
        assert f1 > untrained + 0.15 and f1 > 0.3, (untrained, f1)  # the generated questions are easy to learn
    trainer.test(model, dm, verbose=False)
    predictions = json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8"))
    assert set(predictions) == {e.id for e in dm.examples("test")}
    assert all(p in e.context for e in dm.examples("test") for p in [predictions[e.id]])
    if format == "encoder":
        assert float(trainer.callback_metrics["test/f1"]) > 0.3
    assert {"test/f1", "test/exact_match"} <= set(trainer.callback_metrics)
