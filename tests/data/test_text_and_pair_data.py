"""The one-text and sentence-pair DataModules: formats of both model families, regression labels, GPT-1's
both-orderings views, named tasks on their published files, column-mapped custom files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_lm.data import NLIDataModule, SentencePairDataModule, TextClassificationDataModule, Tokenizer
from lit_lm.data.finetuning.builtin import builtin_similarity, builtin_text_classification
from lit_lm.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent here")


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> str:
    texts = [e.text for e in builtin_text_classification("train")]
    texts += [t for e in builtin_similarity("train") for t in (e.text, e.text_pair)]
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    Tokenizer.train_from_texts(texts + ["the movie was great , a fine film"], vocab_size=400).save(path)
    return str(path)


def _first_batch(dm, split: str = "train"):
    dm.setup("fit" if split in ("train", "val") else "test")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return next(iter(loader))


@pytest.mark.parametrize("format", ["decoder", "encoder"])
def test_one_text_formats(format, tok):
    dm = TextClassificationDataModule(tokenizer=tok, format=format, batch_size=4)
    t = dm.tokenizer
    batch = _first_batch(dm)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 4 and batch["labels"].dtype == torch.long and dm.num_labels == 2
    for row, m, pos in zip(ids, mask, batch["extract_positions"], strict=True):
        seq = row[m.bool()].tolist()
        assert seq[0] == t.cls_id
        if format == "decoder":
            assert seq[-1] == t.extract_id and t.delim_id not in seq and pos == len(seq) - 1
        else:
            assert seq[-1] == t.sep_id and seq.count(t.sep_id) == 1 and pos == 0
    assert not batch["token_type_ids"].any()  # one segment
    assert dm.problem_type == "single_label_classification" and dm.views == 1


def test_pair_regression_has_float_scores_and_stsb_metrics(tok):
    dm = SentencePairDataModule(task="stsb", tokenizer=tok, format="encoder", batch_size=8)
    batch = _first_batch(dm)
    assert batch["labels"].dtype == torch.float32 and ((batch["labels"] >= 0) & (batch["labels"] <= 5)).all()
    assert dm.num_labels == 1 and dm.problem_type == "regression" and dm.views == 1
    assert dm.metrics == ("pearson", "spearman") and dm.main_metric == "pearson"
    t = dm.tokenizer
    types = batch["token_type_ids"][0][batch["attention_mask"][0].bool()].tolist()
    seq = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    first_sep = seq.index(t.sep_id)
    assert seq.count(t.sep_id) == 2 and types == [0] * (first_sep + 1) + [1] * (len(seq) - first_sep - 1)


def test_a_decoder_reads_a_symmetric_pair_in_both_orders(tok):
    dm = SentencePairDataModule(task="stsb", tokenizer=tok, format="decoder", batch_size=4)
    assert dm.views == 2
    batch = _first_batch(dm, "val")
    assert batch["input_ids"].dim() == 3 and batch["input_ids"].shape[:2] == (4, 2)
    assert batch["extract_positions"].shape == (4, 2)
    t = dm.tokenizer
    example = dm.examples("val")[0]
    a, b = t.encode(example.text), t.encode(example.text_pair)
    first = batch["input_ids"][0, 0][batch["attention_mask"][0, 0].bool()].tolist()
    second = batch["input_ids"][0, 1][batch["attention_mask"][0, 1].bool()].tolist()
    assert first == [t.cls_id, *a, t.delim_id, *b, t.extract_id]
    assert second == [t.cls_id, *b, t.delim_id, *a, t.extract_id]
    assert batch["extract_positions"][0].tolist() == [len(first) - 1, len(second) - 1]
    # a non-symmetric task (and the encoder format) read one order; the switch overrides the default
    assert SentencePairDataModule(task="rte", tokenizer=tok, train_files=None, labels=None).views == 1
    assert SentencePairDataModule(task="stsb", tokenizer=tok, both_orderings=False).views == 1
    with pytest.raises(DataError, match="both_orderings"):
        SentencePairDataModule(task="stsb", tokenizer=tok, format="encoder", both_orderings=True)


def test_nli_is_a_sentence_pair_task(tok):
    dm = NLIDataModule(tokenizer=tok, batch_size=4)
    assert isinstance(dm, SentencePairDataModule) and dm.num_labels == 3 and dm.views == 1
    assert dm.label_names == ["entailment", "neutral", "contradiction"] and dm.main_metric == "acc"
    batch = _first_batch(dm)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "extract_positions", "labels"}


def test_unknown_task_and_missing_labels_are_clear_errors(tok, tmp_path):
    with pytest.raises(DataError, match="task 'sts' is not a known task; known: .*stsb"):
        SentencePairDataModule(task="sts", tokenizer=tok)
    with pytest.raises(DataError, match="task 'sst2' is not a pair task"):
        SentencePairDataModule(task="sst2", tokenizer=tok)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "good", "label": 1}) + "\n")
    with pytest.raises(DataError, match="no label set"):
        TextClassificationDataModule(train_files=[str(data)], tokenizer=tok)


def test_a_column_mapped_custom_file_with_a_bad_label_names_its_line(tok, tmp_path):
    good = tmp_path / "reviews.csv"
    good.write_text('review,stars\n"great film, truly",pos\nawful,neg\n"fine, fine",pos\nbad,neg\n')
    dm = TextClassificationDataModule(train_files=[str(good)], val_files=[str(good)], tokenizer=tok,
                                      labels=["neg", "pos"], text_column="review", label_column="stars")  # fmt: skip
    assert [(e.text, e.label) for e in dm.examples("val")] == [("great film, truly", 1), ("awful", 0),
                                                               ("fine, fine", 1), ("bad", 0)]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("review,stars\ngreat,pos\nmeh,neutral\n")
    dm = TextClassificationDataModule(train_files=[str(bad)], tokenizer=tok, labels=["neg", "pos"],
                                      text_column="review", label_column="stars")  # fmt: skip
    with pytest.raises(DataError, match=r"bad.csv:3: .*'neutral'"):
        dm.setup("fit")



def test_a_stray_tab_in_a_tsv_row_is_named_not_read_as_the_next_cell(tok, tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na fine film\t1\na dull\tfilm\t0\n")  # line 3: a tab inside the text
    dm = TextClassificationDataModule(task="sst2", train_files=[str(path)], val_files=[str(path)], tokenizer=tok)
    with pytest.raises(DataError, match=r"train.tsv:3: found 3 tab-separated cells, the header \(line 1\) has 2"):
        dm.setup("fit")


def test_a_parquet_file_from_the_hub_loads_as_it_is(tok, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"sentence": ["a fine film ", "dull , dull , dull "], "label": [1, 0], "idx": [0, 1]})
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(table, path)
    dm = TextClassificationDataModule(task="sst2", train_files=[str(path)], val_files=[str(path)], tokenizer=tok)
    assert [(e.text, e.label) for e in dm.examples("val")] == [("a fine film", 1), ("dull , dull , dull", 0)]


@needs_data
@pytest.mark.parametrize(
    ("task", "cls", "train", "n_train"),
    [
        ("sst2", TextClassificationDataModule, "sst2/dev.tsv", 872),
        ("cola", TextClassificationDataModule, "cola/in_domain_dev.tsv", 527),
        ("stsb", SentencePairDataModule, "stsb/sts-dev.csv", 1500),
        ("mrpc", SentencePairDataModule, "mrpc/msr_paraphrase_test.txt", 1725),
    ],
)
def test_named_tasks_read_their_published_files(task, cls, train, n_train, tok):
    path = str(SHARED / train)
    dm = cls(task=task, train_files=[path], val_files=[path], tokenizer=tok, format="encoder", batch_size=16)
    examples = dm.examples("val")
    assert len(examples) == n_train
    labels = np.array([e.label for e in examples])
    if dm.regression:
        assert labels.min() >= 0 and labels.max() <= 5 and len(np.unique(labels)) > 20
    else:
        assert set(labels.tolist()) == {0, 1}
    assert next(iter(_first_batch(dm, "val").values())).shape[0] == 16


def test_test_fraction_holds_out_one_test_split_for_every_seed(tok, tmp_path):
    rows = [{"premise": f"a man sleeps {i}", "hypothesis": f"a dog runs {i}", "label": ["entailment", "neutral",
             "contradiction"][i % 3]} for i in range(100)]  # fmt: skip
    f = tmp_path / "all.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tests = []
    for seed in (1, 2):
        dm = NLIDataModule(train_files=[str(f)], tokenizer=tok, test_fraction=0.2, val_fraction=0.1, seed=seed)
        splits = {s: {ex.text for ex in dm.examples(s)} for s in ("train", "val", "test")}
        assert [len(v) for v in splits.values()] == [72, 8, 20]
        assert not splits["train"] & splits["test"] and not splits["val"] & splits["test"]
        assert not splits["train"] & splits["val"]
        tests.append(splits["test"])
    assert tests[0] == tests[1]  # the seed moves the validation hold-out, never the test split
    with pytest.raises(DataError, match="test_fraction=0.2: .* no test_files"):
        NLIDataModule(train_files=[str(f)], test_files=[str(f)], tokenizer=tok, test_fraction=0.2)
