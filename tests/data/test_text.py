"""Corpus reading: BOM, CRLF, Gutenberg headers, JSONL, sentence splitting, errors with file:line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lit_lm.data.core.io import file_identities
from lit_lm.data.pretraining.text import read_corpus, resolve_files, split_sentences
from lit_lm.errors import DataError

GUTENBERG = (
    "\ufeffThe Project Gutenberg EBook of Tiny Book, by Nobody\r\n"
    "\r\n"
    "This eBook is for the use of anyone anywhere.\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***\r\n"
    "\r\n"
    "\r\n"
    "CHAPTER I.\r\n"
    "\r\n"
    "It was a bright cold day in April, and the clocks were\r\n"
    "striking thirteen. Mr. Smith went home. “Who is there?” said he.\r\n"
    "\r\n"
    "The second paragraph has one sentence.\r\n"
    "\r\n"
    "End of the Project Gutenberg EBook of Tiny Book, by Nobody\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***\r\n"
    "\r\n"
    "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm\r\n"
)


# --------------------------------------------------------------------------------------------- sentences
def test_sentence_splitter_rules() -> None:
    text = 'Mr. Darcy came at 5 p.m. today. He sat down! "Who?" she asked. J. R. Smith wrote it. (Yes.) Fine.'
    assert split_sentences(text) == [
        "Mr. Darcy came at 5 p.m. today.",
        "He sat down!",
        '"Who?" she asked.',
        "J. R. Smith wrote it.",
        "(Yes.)",
        "Fine.",
    ]
    wrapped = "It was a bright cold day in April, and the\nclocks were striking thirteen. Winston\nSmith slipped in."
    assert split_sentences(wrapped) == [
        "It was a bright cold day in April, and the clocks were striking thirteen.",
        "Winston Smith slipped in.",
    ]
    verses = (
        "  1 In the beginning God created the heaven.\n  2 And the earth was void; and dark.\n"
        "  3 And God said, Let there be light: and there was light."
    )
    assert split_sentences(verses) == [  # auto: every line ends in punctuation -> one unit per line
        "1 In the beginning God created the heaven.",
        "2 And the earth was void; and dark.",
        "3 And God said, Let there be light: and there was light.",
    ]
    assert split_sentences("a b\nc d", "line") == ["a b", "c d"]
    assert split_sentences("a b\nc d", "punct") == ["a b c d"]
    assert split_sentences("   \n ") == []


# --------------------------------------------------------------------------------------------- reading
def test_bom_crlf_gutenberg_text(tmp_path: Path) -> None:
    f = tmp_path / "book.txt"
    f.write_bytes(GUTENBERG.encode("utf-8"))
    docs = read_corpus([f]).documents()
    assert [d.sentences for d in docs] == [
        ["CHAPTER I."],
        [
            "It was a bright cold day in April, and the clocks were striking thirteen.",
            "Mr. Smith went home.",
            "“Who is there?” said he.",
        ],
        ["The second paragraph has one sentence."],
    ]
    assert [d.line for d in docs] == [8, 10, 13]
    everything = "".join(s for d in docs for s in d.sentences)
    assert "\ufeff" not in everything and "\r" not in everything and "Gutenberg" not in everything
    assert docs[1].num_chars == len(
        "It was a bright cold day in April, and the clocks were\n"
        "striking thirteen. Mr. Smith went home. “Who is there?” said he."
    )
    assert docs[1].num_bytes == docs[1].num_chars + 2 * 2  # two 3-byte curly quotes
    # a whole file as one document; no stripping keeps the header
    (one,) = read_corpus([f], doc_split="file").documents()
    assert len(one.sentences) == 5
    kept = read_corpus([f], strip_gutenberg=False).documents()
    assert kept[0].sentences[0].startswith("The Project Gutenberg EBook") and kept[0].line == 1


def test_plain_text_without_markers_is_unchanged(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("*** Not a Gutenberg line ***\n\nHello there. Good bye.\n", encoding="utf-8")
    docs = read_corpus([f]).documents()
    assert [d.sentences for d in docs] == [["*** Not a Gutenberg line ***"], ["Hello there.", "Good bye."]]


def test_jsonl_records_and_skipped_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "c.jsonl"
    lines = [
        {"body": "First doc. Two sentences.", "id": 1},
        {"body": "   ", "id": 2},
        {"body": "Second doc.\n\nWith a paragraph. And more.", "id": 3},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        c = read_corpus([f], text_field="body")
    docs = c.documents()
    assert [d.sentences for d in docs] == [
        ["First doc.", "Two sentences."],
        ["Second doc.", "With a paragraph.", "And more."],
    ]
    assert [d.line for d in docs] == [1, 3]
    assert c.skipped == {"empty_records": 1}
    assert "skipped 1 JSONL record" in caplog.text


def test_directory_means_sorted_txt_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Bee.\n")
    (tmp_path / "a.jsonl").write_text('{"text": "Ay."}\n')
    (tmp_path / "notes.md").write_text("ignored\n")
    assert [p.name for p in resolve_files(tmp_path)] == ["a.jsonl", "b.txt"]
    assert [d.sentences for d in read_corpus(tmp_path).documents()] == [["Ay."], ["Bee."]]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no \\*.txt, \\*.jsonl or WikiText"):
        resolve_files(empty)


WIKITEXT = (
    " \r\n"
    " = First Article = \r\n"
    " It cost 1 @,@ 000 pounds in a well @-@ known shop . It weighed 2 @.@ 5 kg .\r\n"
    " = = A Section = = \r\n"
    " The second paragraph .\r\n"
    " = = = A Subsection = = = \r\n"
    " = Second ( Song ) = \r\n"
    " Last paragraph = not a heading .\r\n"
)


def test_wikitext_articles_paragraphs_and_markup(tmp_path: Path) -> None:
    """WikiText: articles at ` = Title = `, section headings dropped, one paragraph per line, @-@ markup undone,
    every paragraph at its line in the file."""
    f = tmp_path / "wiki.test.raw"
    f.write_bytes(WIKITEXT.encode("utf-8"))
    docs = read_corpus([f]).documents()
    assert [d.sentences for d in docs] == [
        ["It cost 1,000 pounds in a well-known shop .", "It weighed 2.5 kg ."],
        ["The second paragraph ."],
        ["Last paragraph = not a heading ."],
    ]
    assert [d.line for d in docs] == [3, 5, 8]
    articles = read_corpus([f], doc_split="file").documents()
    assert [len(a.sentences) for a in articles] == [3, 1] and [a.line for a in articles] == [3, 8]
    assert read_corpus([f]).full_text() == (
        "It cost 1,000 pounds in a well-known shop . It weighed 2.5 kg .\n\nThe second paragraph .\n\n"
        "Last paragraph = not a heading ."
    )
    # the same bytes under another name are plain text: one paragraph, headings and markup kept
    g = tmp_path / "notes.txt"
    g.write_bytes(WIKITEXT.encode("utf-8"))
    (plain,) = read_corpus([g]).documents()
    assert "First Article" in plain.text and "@,@" in plain.text
    # a directory includes WikiText files; their cache keys say how they are read (caches of them made when they
    # were read as plain text are not reused)
    assert [p.name for p in resolve_files(tmp_path)] == ["notes.txt", "wiki.test.raw"]
    assert [len(i) for i in file_identities(resolve_files(tmp_path))] == [3, 4]
    # a WikiText file of headings only has no text: skipped with a warning, and alone it is an empty corpus
    (tmp_path / "wiki.valid.raw").write_text(" = Only A Title = \n = = A Section = = \n \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty corpus"):
        read_corpus([tmp_path / "wiki.valid.raw"])
    assert read_corpus(tmp_path).skipped == {"empty_files": 1}


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        ("bad.txt", b"ok line\nsecond\nthird \xff\xfe here\n", 3, "not valid UTF-8"),
        ("bad.jsonl", b'{"text": "fine"}\n{"text": "broken"\n', 2, "malformed JSON"),
        ("nofield.jsonl", b'{"text": "fine"}\n\n{"txt": "x"}\n', 3, "no field 'text'"),
        ("notstr.jsonl", b'{"text": 5}\n', 1, "is int, expected a string"),
        ("notobj.jsonl", b'["text"]\n', 1, "expected a JSON object"),
        ("null.jsonl", b'{"text": "a"}\n{"text": null}\n', 2, "is NoneType"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, content: bytes, line: int, message: str) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_corpus([f])
    assert e.value.path == str(f.resolve()) and e.value.line == line
    assert f"{name}:{line}:" in str(e.value)


def test_missing_path_and_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as e:
        read_corpus([tmp_path / "missing.txt"])
    assert "missing.txt" in str(e.value)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\r\n")
    with pytest.raises(DataError, match="empty corpus"):
        read_corpus([blank])
    only_header = tmp_path / "pg.txt"
    only_header.write_text("header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n*** END OF THE PROJECT GUTENBERG")
    with pytest.raises(DataError, match="empty corpus"):
        read_corpus([only_header])


def test_real_gutenberg_and_kjv_reading(shared_data_dir: Path) -> None:
    alice = read_corpus([shared_data_dir / "gutenberg" / "11-0.txt"]).documents()
    assert alice[0].sentences[0].startswith("ALICE’S ADVENTURES IN WONDERLAND")
    assert "THE END" in alice[-1].sentences[-1]
    text = " ".join(s for d in alice for s in d.sentences)
    assert "Project Gutenberg" not in text and "\ufeff" not in text and "\r" not in text
    kjv = read_corpus([shared_data_dir / "kjv-bible" / "kjv.txt"]).documents()
    assert kjv[0].sentences == ["Genesis 1"]
    assert kjv[1].sentences[0] == "1 In the beginning God created the heaven and the earth."
    assert kjv[1].sentences[2] == "And the Spirit of God moved upon the face of the waters."  # verse 2's 2nd
    assert kjv[-1].sentences[-2:] == ["21 The grace of our Lord Jesus Christ be with you all.", "Amen."]


def test_real_wikitext_reading(shared_data_dir: Path) -> None:
    wiki = shared_data_dir / "wikitext-2-raw" / "wiki.test.raw"
    if not wiki.is_file():
        pytest.skip("no WikiText-2 in the shared data")
    corpus = read_corpus([wiki])
    assert len(corpus.files[0].units) == 62  # articles
    docs = corpus.documents()
    assert docs[0].line == 2
    assert docs[0].sentences[0] == "Robert Boulter is an English film , television and theatre actor ."
    text = " ".join(s for d in docs for s in d.sentences)
    assert " @-@ " not in text and " @,@ " not in text and " = = " not in text and "\r" not in text
