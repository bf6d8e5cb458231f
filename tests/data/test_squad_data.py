"""Extractive QA data: SQuAD readers and their errors, windows over long contexts, answers mapped to tokens and back
to the context's characters for both tokenizer kinds, the hold-out by article."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lit_lm.data import Tokenizer
from lit_lm.data.finetuning.question_answering import QuestionAnsweringDataModule, encode_windows
from lit_lm.data.finetuning.squad import QAExample, builtin_question_answering, read_squad, write_predictions
from lit_lm.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SQUAD_DEV = SHARED / "squad" / "dev-v1.1.json"
needs_squad = pytest.mark.skipif(not SQUAD_DEV.is_file(), reason="../shared/data/squad is absent here")


@pytest.fixture(scope="module")
def squad_excerpt(tmp_path_factory) -> Path:
    """The first 3 and the last article of the real dev file, as published (a few hundred questions)."""
    doc = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))
    doc["data"] = doc["data"][:3] + doc["data"][-1:]
    path = tmp_path_factory.mktemp("squad") / "excerpt.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizers(squad_excerpt) -> dict[str, Tokenizer]:
    examples, _ = read_squad(squad_excerpt)
    texts = list(dict.fromkeys(e.context for e in examples)) + [e.question for e in examples]
    return {kind: Tokenizer.train_from_texts(texts, vocab_size=2000, kind=kind) for kind in ("wordpiece", "bpe")}


def _squad_file(tmp_path: Path, qas: list[dict], context: str = "Paris is the capital of France.") -> Path:
    doc = {"version": "1.1", "data": [{"title": "France", "paragraphs": [{"context": context, "qas": qas}]}]}
    path = tmp_path / "data.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------- readers
@needs_squad
def test_reads_the_official_dev_file():
    examples, skipped = read_squad(SQUAD_DEV)
    assert len(examples) == 10570 and not skipped
    assert len({e.title for e in examples}) == 48
    assert all(e.context[s : s + len(t)] == t for e in examples for t, s in e.answers)


def test_answer_that_does_not_match_its_offset_names_file_line_article_and_question(tmp_path):
    good = {"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 0}]}
    bad = {"id": "q2", "question": "Of what?", "answers": [{"text": "France", "answer_start": 3}]}
    path = _squad_file(tmp_path, [good, bad])
    with pytest.raises(DataError) as e:
        read_squad(path)
    msg = str(e.value)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if '"q2"' in text)
    assert f"{path}:{line}:" in msg and "'France'" in msg and "'q2'" in msg and "skip_bad_answers" in msg
    examples, skipped = read_squad(path, skip_bad_answers=True)
    assert [e.id for e in examples] == ["q1"]
    assert skipped == {"answer not at answer_start": 1, "question with no valid answer": 1}


@pytest.mark.parametrize(
    "qa, problem",
    [
        ({"id": "q", "answers": [{"text": "Paris", "answer_start": 0}]}, "'question'"),
        ({"id": "q", "question": "Where?", "answers": [{"text": "Paris"}]}, "answer_start"),
        ({"id": "q", "question": "Where?", "answers": []}, "is_impossible"),
        ({"question": "Where?", "answers": []}, "'id'"),
        ({"id": "q", "question": "Where?", "answers": {"text": "Paris", "answer_start": 0}}, "must be a list"),
        ({"id": "q", "question": "Where?", "answers": ["Paris"]}, "must be a list"),
    ],
)
def test_missing_fields_are_data_errors(tmp_path, qa, problem):
    with pytest.raises(DataError, match=problem) as e:
        read_squad(_squad_file(tmp_path, [qa]))
    assert str(tmp_path) in str(e.value)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n {"title": "x",\n "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:3: malformed JSON"):
        read_squad(path)


def test_squad_v2_questions_without_answer(tmp_path):
    qas = [{"id": "q", "question": "Who?", "answers": [], "is_impossible": True}]
    (ex,), _ = read_squad(_squad_file(tmp_path, qas))
    assert ex.answers == () and ex.answer_texts == [""]


def test_hub_columns_in_jsonl_and_parquet(tmp_path):
    rows = [
        {"id": "a", "title": "T", "context": "Oslo is in Norway.", "question": "Where is Oslo?",
         "answers": {"text": ["Norway", "in Norway"], "answer_start": [11, 8]}},
        {"id": "b", "title": "T", "context": "Oslo is in Norway.", "question": "Which city?",
         "answers": {"text": ["Oslo"], "answer_start": [0]}},
    ]  # fmt: skip
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    examples, _ = read_squad(jsonl)
    assert examples[0].answers == (("Norway", 11), ("in Norway", 8))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert read_squad(parquet)[0] == examples
    rows[1]["answers"]["answer_start"] = [1]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{jsonl}:2: article 'T', question 'b'"):
        read_squad(jsonl)


def test_duplicate_question_ids_are_refused(tmp_path):
    qa = {"id": "q", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}
    with pytest.raises(DataError, match="appears twice"):
        read_squad(_squad_file(tmp_path, [qa, dict(qa)]))


def test_write_predictions_is_the_official_format(tmp_path):
    path = write_predictions(tmp_path / "predictions.json", {"q1": "Paris", "q2": ""})
    assert json.loads(path.read_text(encoding="utf-8")) == {"q1": "Paris", "q2": ""}


# --------------------------------------------------------------------------------------------------- windows
def _window_answers(tok: Tokenizer, examples: list[QAExample], format: str, **kw) -> tuple[list[str], list[str]]:
    """(the characters each window's labelled span covers, the answer) over every window that holds its answer."""
    w = encode_windows(tok, examples, format, **kw)
    head = 1
    got, want = [], []
    for k, i in enumerate(w.example):
        ex, c = examples[i], w.context_of[i]
        offset = head + len(w.questions[i]) + 1
        null = 0 if format == "encoder" else offset + w.window_len[k]
        if w.start_positions[k] == null:
            continue
        a = w.start_positions[k] - offset + w.window_start[k]
        b = w.end_positions[k] - offset + w.window_start[k]
        got.append(ex.context[w.starts[c][a] : w.ends[c][b]])
        want.append(ex.answers[0][0].strip())
    return got, want


@needs_squad
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
@pytest.mark.parametrize("format", ["encoder", "decoder"])
def test_every_answer_maps_to_tokens_whose_characters_are_the_answer(squad_excerpt, tokenizers, kind, format):
    examples, _ = read_squad(squad_excerpt)
    tok = tokenizers[kind]
    got, want = _window_answers(tok, examples, format, max_seq_length=384, doc_stride=128)
    w = encode_windows(tok, examples, format)
    differ = [(g, t) for g, t in zip(got, want, strict=True) if g != t]
    # an answer that starts or ends inside a token ("1990" of "1990s") cannot be cut out exactly: it is trained on
    # the tokens around it, counted, and their characters hold it
    assert len(differ) <= w.off_boundary <= 0.02 * len(examples)
    assert all(t in g for g, t in differ)
    assert len(got) >= len(examples) - w.off_boundary  # every answer is in at least one window


@needs_squad
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_long_context_windows_overlap_and_only_those_holding_the_answer_point_at_it(squad_excerpt, tokenizers, kind):
    examples, _ = read_squad(squad_excerpt)
    tok = tokenizers[kind]
    w = encode_windows(tok, examples, "encoder", max_seq_length=64, doc_stride=16, max_query_length=16)
    assert len(w.example) > 3 * len(examples)  # real paragraphs need several windows of 64 tokens
    got, want = _window_answers(tok, examples, "encoder", max_seq_length=64, doc_stride=16, max_query_length=16)
    assert sum(g == t for g, t in zip(got, want, strict=True)) >= len(examples) - w.off_boundary
    for k in np.flatnonzero(np.diff(w.example) == 0):  # consecutive windows of one question overlap by doc_stride
        assert w.window_start[k] + w.window_len[k] - w.window_start[k + 1] == 16


def test_answers_decode_the_best_span_of_the_window_that_holds_it(tokenizers):
    tok = tokenizers["wordpiece"]
    context = " ".join(f"Sentence {i} is about nothing in particular." for i in range(40)) + " The key is blue."
    ex = QAExample("q", "t", context, "What colour is the key?", (("blue", context.index("blue")),))
    dm = QuestionAnsweringDataModule(tokenizer=None, max_seq_length=48, doc_stride=8, max_query_length=12)
    dm.__dict__["tokenizer"] = tok
    dm._splits["test"] = [ex]
    dm._dataset("test")
    w = dm.windows["test"]
    holds = np.flatnonzero(w.start_positions != 0)
    assert len(w.example) > 5 and list(holds) == [len(w.example) - 1]  # only the last window holds the answer
    n = len(w.example)
    starts = np.tile(np.array([[5, 6]]), (n, 1))  # every other window's best span: some context tokens
    ends = starts + 1
    scores = np.full((n, 2), 1.0)
    scores[holds[0]] = [9.0, 2.0]
    starts[holds[0]], ends[holds[0]] = w.start_positions[holds[0]], w.end_positions[holds[0]]
    answers = dm.answers("test", np.arange(n), starts, ends, scores, np.zeros(n))
    assert answers == {"q": "blue"}


# --------------------------------------------------------------------------------------------------- splits
@needs_squad
def test_test_articles_and_the_validation_hold_out_share_no_article(squad_excerpt, tokenizers, tmp_path):
    dm = QuestionAnsweringDataModule(train_files=[str(squad_excerpt)], test_articles=1, val_fraction=0.34, seed=3,
                                     cache_dir=str(tmp_path))  # fmt: skip
    titles = {s: {e.title for e in dm.examples(s)} for s in ("train", "val", "test")}
    assert titles["test"] == {json.loads(squad_excerpt.read_text())["data"][-1]["title"]}
    assert len(titles["val"]) == 1 and len(titles["train"]) == 2
    assert not (titles["train"] & titles["val"]) and not (titles["train"] | titles["val"]) & titles["test"]


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(DataError, match="doc_stride"):
        QuestionAnsweringDataModule(max_seq_length=128, max_query_length=64, doc_stride=64)
    with pytest.raises(DataError, match="test_articles"):
        QuestionAnsweringDataModule(test_articles=2)


def test_builtin_set_is_fixed_and_answers_are_spans():
    a, b = builtin_question_answering("train"), builtin_question_answering("train")
    assert a == b and len(a) == 2000
    assert {e.title for e in a}.isdisjoint({e.title for e in builtin_question_answering("test")})
    assert all(e.context[s : s + len(t)] == t for e in a for t, s in e.answers)


def test_an_unknown_reader_is_named(tmp_path):
    path = _squad_file(tmp_path, [{"id": "q", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}])
    with pytest.raises(DataError, match="reader must be auto, squad, jsonl or parquet, got 'csv'"):
        read_squad(path, reader="csv")
