"""Table readers (:mod:`lit_lm.data.finetuning.tables`): TSV, CSV, JSONL and Parquet files, their errors, and the
real GLUE-family files in ``../shared/data`` read through the task registry's layouts."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import pytest

from lit_lm.data.finetuning.examples import NO_GOLD_LABEL, LabelVocab
from lit_lm.data.finetuning.registry import TASKS
from lit_lm.data.finetuning.tables import Columns, detect_table_format, read_labelled, read_task_file
from lit_lm.errors import DataError

SENTIMENT = LabelVocab(["negative", "positive"])
ONE = Columns("sentence", None, "label")
PAIR = Columns("sentence1", "sentence2", "score")


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)
    return path


# --------------------------------------------------------------------------------------------------- TSV
def test_tsv_header_labels_sources_and_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write(tmp_path / "a.tsv", "sentence\tlabel\ngood film \t1\n\nbad film\tNegative\nunsure\t-\nfine\tpositive")
    with caplog.at_level(logging.WARNING):
        result = read_labelled(f, ONE, SENTIMENT)
    assert [(e.text, e.text_pair, e.label) for e in result.examples] == [
        ("good film", None, 1),
        ("bad film", None, 0),
        ("fine", None, 1),  # last line without a final newline is read
    ]
    assert [e.source for e in result.examples] == [f"{f}:2", f"{f}:4", f"{f}:6"]
    assert result.skipped == {NO_GOLD_LABEL: 1}
    assert "skipped 1" in caplog.text


def test_tsv_bom_crlf_control_character_and_unbalanced_quotes(tmp_path: Path) -> None:
    text = '\ufeffQuality\t#1 String\t#2 String\r\n1\tTreasury\x12s plan\tThe "plan\r\n0\ta "b\tc\r\n'
    f = write(tmp_path / "mrpc.txt", text)
    result = read_labelled(f, Columns("#1 String", "#2 String", "Quality"), ["no", "yes"])
    assert [(e.text, e.text_pair, e.label) for e in result.examples] == [
        ("Treasury\x12s plan", 'The "plan', 1),
        ('a "b', "c", 0),
    ]


def test_tsv_extra_trailing_columns_are_accepted(tmp_path: Path) -> None:
    f = write(tmp_path / "sts.tsv", 'g\tf\t2012\t1\t5.000\tA "x.\tA y.\ng\tf\t2012\t2\t0.5\tB.\tC.\tlicense\turl\n')
    result = read_labelled(f, Columns(5, 6, 4, header=False), None, score_range=(0.0, 5.0))
    assert [(e.text, e.text_pair, e.label) for e in result.examples] == [('A "x.', "A y.", 5.0), ("B.", "C.", 0.5)]


def test_tsv_too_few_cells_names_line_and_counts(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "sentence1\tsentence2\tscore\nx\ty\t1\nonly one cell\n")
    with pytest.raises(DataError, match=r"a\.tsv:3: found 1 tab-separated cells, the header \(line 1\) has 3"):
        read_labelled(f, PAIR, None)


def test_headerless_layout_needs_indices(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "x\t1\n")
    with pytest.raises(DataError, match="headerless layout needs 0-based column indices"):
        read_labelled(f, Columns("sentence", None, "label", header=False), SENTIMENT)


# --------------------------------------------------------------------------------------------------- errors
def test_unknown_label_names_file_line_column_and_value(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "sentence\tlabel\nok\t1\nhm\tneutral\n")
    with pytest.raises(DataError, match=r"a\.tsv:3: column 'label': unknown label 'neutral'; allowed: negative"):
        read_labelled(f, ONE, SENTIMENT)


@pytest.mark.parametrize(
    ("score", "message"),
    [
        ("high", "score 'high' is not a finite number"),
        ("nan", "score .nan. is not a finite number"),
        ("5.5", "score .5.5. is outside .*0.0, 5.0"),
    ],
)
def test_bad_scores(tmp_path: Path, score: str, message: str) -> None:
    f = write(tmp_path / "a.tsv", f"sentence1\tsentence2\tscore\na\tb\t1.5\nc\td\t{score}\n")
    with pytest.raises(DataError, match=rf"a\.tsv:3: column 'score': {message}"):
        read_labelled(f, PAIR, None, score_range=(0.0, 5.0))


def test_scores_without_range_and_no_gold(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "sentence1\tsentence2\tscore\na\tb\t 7.25 \nc\td\t-\ne\tf\t-1\n")
    result = read_labelled(f, PAIR, None)
    assert [e.label for e in result.examples] == [7.25, -1.0]  # without a range, -1 is a score
    assert result.skipped == {NO_GOLD_LABEL: 1}
    ranged = read_labelled(f, PAIR, None, score_range=(0.0, 10.0))
    assert [e.label for e in ranged.examples] == [7.25] and ranged.skipped == {NO_GOLD_LABEL: 2}


def test_empty_text_names_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\t  \t2\n")
    with pytest.raises(DataError, match=r"a\.tsv:3: column 'sentence2' is empty"):
        read_labelled(f, PAIR, None)


def test_missing_column_names_found_and_wanted(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(DataError, match=r"a\.tsv:1: the header has columns \['text', 'label'\] but this layout wants"):
        read_labelled(f, ONE, SENTIMENT)


def test_header_columns_match_ignoring_case(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "Sentence \tLABEL\nx\t1\n")
    assert read_labelled(f, ONE, SENTIMENT).examples[0].text == "x"


def test_no_examples(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no examples$"):
        read_labelled(write(tmp_path / "a.tsv", "sentence\tlabel\n"), ONE, SENTIMENT)
    with pytest.raises(DataError, match="all 2 records skipped"):
        read_labelled(write(tmp_path / "b.tsv", "sentence\tlabel\nx\t-\ny\t-1\n"), ONE, SENTIMENT)


def test_score_range_with_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="score_range .* is for regression"):
        read_labelled(write(tmp_path / "a.tsv", "sentence\tlabel\nx\t1\n"), ONE, SENTIMENT, score_range=(0, 1))


# --------------------------------------------------------------------------------------------------- CSV
def test_csv_quoting_and_physical_line_numbers(tmp_path: Path) -> None:
    text = 'sentence,label\n"a, quoted\nsentence",1\n\nplain,0\n"bad ""one""",maybe\n'
    f = write(tmp_path / "a.csv", text)
    with pytest.raises(DataError, match=r"a\.csv:6: column 'label': unknown label 'maybe'"):
        read_labelled(f, ONE, SENTIMENT)
    result = read_labelled(write(tmp_path / "b.csv", text.replace("maybe", "1")), ONE, SENTIMENT)
    assert [(e.text, e.label, e.source.rsplit(":", 1)[1]) for e in result.examples] == [
        ("a, quoted\nsentence", 1, "2"),
        ("plain", 0, "5"),
        ('bad "one"', 1, "6"),
    ]


def test_csv_headerless_with_indices(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "\ufeff1,hello there\r\n0,bye\r\n")
    result = read_labelled(f, Columns(1, None, 0, header=False), SENTIMENT)
    assert [(e.text, e.label) for e in result.examples] == [("hello there", 1), ("bye", 0)]


def test_auto_format_detection(tmp_path: Path) -> None:
    assert detect_table_format(write(tmp_path / "sts-train.csv", "a\tb\t1\n")) == "tsv"  # STS-B's tab-separated .csv
    assert detect_table_format(write(tmp_path / "a.csv", "sentence,label\n")) == "csv"
    assert detect_table_format(write(tmp_path / "a.txt", "x\n")) == "tsv"
    assert detect_table_format(write(tmp_path / "a.json", "{}\n")) == "jsonl"
    assert detect_table_format(write(tmp_path / "data", '{"a": 1}\n')) == "jsonl"
    with pytest.raises(DataError, match="cannot tell the table format"):
        detect_table_format(write(tmp_path / "plain", "just words\n"))


# --------------------------------------------------------------------------------------------------- JSONL
def test_jsonl(tmp_path: Path) -> None:
    rows = [{"sentence": "good", "label": 1, "idx": 0}, {"sentence": "bad", "label": "negative"}, {"sentence": "?"}]
    rows[2]["label"] = -1
    f = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = read_labelled(f, ONE, SENTIMENT)
    assert [(e.text, e.label, e.source) for e in result.examples] == [("good", 1, f"{f}:1"), ("bad", 0, f"{f}:2")]
    assert result.skipped == {NO_GOLD_LABEL: 1}


def test_jsonl_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "a.jsonl", '{"sentence": "x", "label": 1}\n{"sentence": "y", "label": 1\n')
    with pytest.raises(DataError, match=r"a\.jsonl:2: malformed JSON"):
        read_labelled(f, ONE, SENTIMENT)
    f = write(tmp_path / "b.jsonl", '{"sentence": "x", "label": 1}\n{"text": "y", "label": 1}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:2: this record has columns \['label', 'text'\] but this layout"):
        read_labelled(f, ONE, SENTIMENT)
    f = write(tmp_path / "c.jsonl", '{"sentence": 3, "label": 1}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:1: column 'sentence' must hold text, got a int"):
        read_labelled(f, ONE, SENTIMENT)
    with pytest.raises(DataError, match="JSONL names its columns"):
        read_labelled(f, Columns(0, None, 1), SENTIMENT)


# --------------------------------------------------------------------------------------------------- Parquet
def test_parquet_hub_glue_file(tmp_path: Path) -> None:
    """A Hub GLUE split as it is: ``sentence``, int ``label`` (-1 on the unlabelled test split), ``idx``."""
    f = write_parquet(
        tmp_path / "train-00000-of-00001.parquet",
        {"sentence": ["hide new secretions ", "a gem", "?"], "label": [0, 1, -1], "idx": [0, 1, 2]},
    )
    result = read_labelled(f, ONE, SENTIMENT)
    assert [(e.text, e.label, e.source) for e in result.examples] == [
        ("hide new secretions", 0, f"{f}:row 0"),
        ("a gem", 1, f"{f}:row 1"),
    ]
    assert result.skipped == {NO_GOLD_LABEL: 1}
    # Through the task's (TSV) layouts: a Parquet file is read as Parquet, its columns matched by name.
    assert len(read_task_file(f, TASKS["sst2"].layouts, SENTIMENT)) == 2


def test_parquet_regression_and_errors(tmp_path: Path) -> None:
    f = write_parquet(tmp_path / "a.parquet", {"sentence1": ["a", "c"], "sentence2": ["b", "d"], "score": [4.5, -1.0]})
    result = read_labelled(f, PAIR, None, score_range=(0.0, 5.0))
    assert [e.label for e in result.examples] == [4.5] and result.skipped == {NO_GOLD_LABEL: 1}
    with pytest.raises(DataError, match=r"a\.parquet: row 0: column 'score': score 4.5 is outside"):
        read_labelled(f, PAIR, None, score_range=(0.0, 4.0))
    with pytest.raises(DataError, match=r"a\.parquet: the file has columns \['sentence1', 'sentence2', 'score'\]"):
        read_labelled(f, ONE, SENTIMENT)
    g = write_parquet(tmp_path / "b.parquet", {"sentence": ["x", "y"], "label": ["positive", "meh"]})
    with pytest.raises(DataError, match=r"b\.parquet: row 1: column 'label': unknown label 'meh'"):
        read_labelled(g, ONE, SENTIMENT)
    with pytest.raises(DataError, match="cannot read as Parquet"):
        read_labelled(write(tmp_path / "c.parquet", "not parquet"), ONE, SENTIMENT)


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path / "a.parquet", b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes `import pyarrow.parquet` fail
    with pytest.raises(DataError, match=r"reading Parquet needs pyarrow: pip install 'lit_lm\[parquet\]'"):
        read_labelled(f, ONE, SENTIMENT)


# --------------------------------------------------------------------------------------------------- layouts
def test_read_task_file_picks_a_layout(tmp_path: Path) -> None:
    layouts = TASKS["cola"].layouts
    with_header = write(tmp_path / "train.tsv", "sentence\tlabel\nThe cat sat.\t1\n")
    headerless = write(tmp_path / "raw.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.")
    cola = LabelVocab(TASKS["cola"].labels or ())
    assert [(e.text, e.label) for e in read_task_file(with_header, layouts, cola).examples] == [("The cat sat.", 1)]
    assert [e.label for e in read_task_file(headerless, layouts, cola).examples] == [1, 0]
    too_short = write(tmp_path / "short.tsv", "gj04\t1\n")
    with pytest.raises(DataError, match=r"short\.tsv: no layout fits this file: its first line .* \['gj04', '1'\]"):
        read_task_file(too_short, layouts, cola)


def test_read_task_file_none_fits_names_each_layout(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "text\tgold\nx\t1\n")
    with pytest.raises(DataError, match=r"\['text', 'gold'\]; tried tsv with header columns \['sentence', 'label'\]"):
        read_task_file(f, TASKS["sst2"].layouts, SENTIMENT)


# --------------------------------------------------------------------------------------------------- real data
def read_real(shared: Path, task: str, relative: str) -> tuple[Path, list]:
    path = shared / relative
    if not path.is_file():
        pytest.skip(reason=f"{path} is absent from the shared data folder")
    spec = TASKS[task]
    labels = None if spec.labels is None else LabelVocab(spec.labels)
    result = read_task_file(path, spec.layouts, labels, spec.score_range)
    assert result.skipped == {}
    return path, result.examples


def test_real_sst2_train(shared_data_dir: Path) -> None:
    path, examples = read_real(shared_data_dir, "sst2", "sst2/train.tsv")
    assert len(examples) == 67_349  # SOURCE.md: 37,569 positive / 29,780 negative
    assert Counter(e.label for e in examples) == {1: 37_569, 0: 29_780}
    assert examples[0].text == "hide new secretions from the parental units" and examples[0].source == f"{path}:2"


def test_real_cola(shared_data_dir: Path) -> None:
    _, train = read_real(shared_data_dir, "cola", "cola/in_domain_train.tsv")  # headerless
    assert Counter(e.label for e in train) == {1: 6_023, 0: 2_528}
    path, ood = read_real(shared_data_dir, "cola", "cola/out_of_domain_dev.tsv")  # no final newline
    assert Counter(e.label for e in ood) == {1: 354, 0: 162}
    assert ood[-1].source == f"{path}:516" and ood[-1].text == "John talked to Bill about himself."


def test_real_stsb_train_rows_never_merge(shared_data_dir: Path) -> None:
    path, examples = read_real(shared_data_dir, "stsb", "stsb/sts-train.csv")
    assert len(examples) == 5_749  # the STS readme's train size; a default CSV reader merges rows into 5,711
    assert [e.source for e in examples] == [f"{path}:{n}" for n in range(1, 5_750)]  # one example per line
    assert not any("\n" in e.text or "\t" in (e.text + (e.text_pair or "")) for e in examples)
    assert all(0.0 <= e.label <= 5.0 for e in examples)
    assert sum('"' in e.text + (e.text_pair or "") for e in examples) > 0
    with open(path, newline="", encoding="utf-8") as f:  # the trap this reader avoids
        assert len(list(csv.reader(f, delimiter="\t"))) < 5_749
    lines = path.read_text(encoding="utf-8").split("\n")
    wide = [n for n, ln in enumerate(lines, 1) if ln.count("\t") == 8]
    assert len(wide) == 197  # rows with 2 extra columns, read by their first 7
    row = lines[wide[0] - 1].split("\t")
    example = examples[wide[0] - 1]
    assert (example.label, example.text, example.text_pair) == (float(row[4]), row[5].strip(), row[6].strip())


def test_real_mrpc_train(shared_data_dir: Path) -> None:
    path, examples = read_real(shared_data_dir, "mrpc", "mrpc/msr_paraphrase_train.txt")  # BOM, CRLF
    assert len(examples) == 4_076 and Counter(e.label for e in examples) == {1: 2_753, 0: 1_323}
    assert examples[0].source == f"{path}:2" and not examples[0].text.startswith("\ufeff")
    assert not any(e.text.endswith("\r") or (e.text_pair or "").endswith("\r") for e in examples)
    (control,) = [e for e in examples if "\x12" in e.text]  # kept as the release has it
    assert control.source == f"{path}:1766" and control.text.startswith("Treasury\x12s long-range plan")
