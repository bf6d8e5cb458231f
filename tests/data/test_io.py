"""The shared file mechanisms (lit_lm.data.core.io) and the hold-out rule (lit_lm.data.core.splits)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lit_lm.data.core.io import atomic_write, decode_utf8, digest, jsonl_records, read_text_lines, temporary_path
from lit_lm.data.core.splits import holdout_split
from lit_lm.errors import DataError


def test_atomic_write_replaces_a_file_only_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    with atomic_write(target) as tmp:
        tmp.write_text("one")
        assert not target.exists() and tmp.parent == target.parent and tmp.name.startswith(".a.json.")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "one" and list(target.parent.iterdir()) == [target]


def test_atomic_write_of_a_directory_keeps_the_first_complete_copy(tmp_path: Path) -> None:
    target = tmp_path / "corpus"
    with atomic_write(target) as tmp:
        tmp.mkdir()
        (tmp / "meta.json").write_text("first")
    with atomic_write(target) as tmp:  # a second writer of the same key: the first copy stays
        tmp.mkdir()
        (tmp / "meta.json").write_text("second")
    assert (target / "meta.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_temporary_paths_are_unique_per_writer(tmp_path: Path) -> None:
    a, b = temporary_path(tmp_path / "x"), temporary_path(tmp_path / "x")
    assert a != b and f".{os.getpid()}." in a.name


def test_a_directory_writer_that_loses_the_race_keeps_the_winners_copy(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "corpus"
    real_replace = os.replace

    def racing_replace(src, dst):  # the other writer renames its copy just before ours
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "meta.json").write_text("winner")
        real_replace(tmp_path / "other", dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", racing_replace)
    with atomic_write(target) as tmp:
        tmp.mkdir()
        (tmp / "meta.json").write_text("loser")
    assert (target / "meta.json").read_text() == "winner"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_decode_utf8_drops_a_bom_and_names_a_bad_byte() -> None:
    assert decode_utf8(b"\xef\xbb\xbfhi", "f.txt") == "hi"
    with pytest.raises(DataError, match=r"f.txt:2: not valid UTF-8: byte 0xff at column 3"):
        decode_utf8(b"ok\nab\xffc\n", "f.txt")


def test_jsonl_records_skip_blank_lines_and_name_bad_ones(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"a": 1}\r\n\n{"a": 2}\n')
    assert list(jsonl_records(read_text_lines(f), f)) == [(1, {"a": 1}), (3, {"a": 2})]
    with pytest.raises(DataError, match=r"a.jsonl:2: malformed JSON"):
        list(jsonl_records(['{"a": 1}', '{"a":'], f))
    with pytest.raises(DataError, match=r"a.jsonl:1: expected a JSON object per line, got list"):
        list(jsonl_records(["[1]"], f))


def test_digest_is_stable_and_order_free() -> None:
    assert digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1}) != digest({"a": 2, "b": [2]})


def test_holdout_split_is_deterministic_disjoint_and_bounded() -> None:
    train, val = holdout_split(100, 0.05, seed=1)
    assert len(val) == 5 and len(train) == 95 and not set(train) & set(val)
    assert np.array_equal(val, holdout_split(100, 0.05, seed=1)[1])
    assert not np.array_equal(val, holdout_split(100, 0.05, seed=2)[1])
    assert len(holdout_split(3, 0.01, seed=0)[1]) == 1 and len(holdout_split(3, 0.99, seed=0)[1]) == 2
    assert len(holdout_split(10, 0.5, seed=0, count=3)[1]) == 3
    with pytest.raises(DataError, match="val_fraction must be in"):
        holdout_split(100, 1.5, 0)
    with pytest.raises(DataError, match="from 1 documents.*add text"):
        holdout_split(1, 0.5, 0, what="documents", hint="add text")
    with pytest.raises(DataError, match=r"val_docs must be in \[1, 9\]"):
        holdout_split(10, 0.5, 0, count=10)
