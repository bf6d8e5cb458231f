"""Corpus preparation: the train/validation split, tokenized arrays, the cache and the prepare command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from lit_lm.commands import prepare_main
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.pretraining import corpus as corpus_mod
from lit_lm.data.pretraining.builtin import builtin_corpus, write_builtin_corpus
from lit_lm.data.pretraining.corpus import PreparedCorpus, prepare_corpus, split_corpus
from lit_lm.data.pretraining.text import read_corpus
from lit_lm.errors import DataError


def words_tokenizer(*texts: str, vocab_size: int = 500) -> Tokenizer:
    return Tokenizer.train_from_texts(list(texts) * 5, vocab_size=vocab_size)


def story_docs(n_docs: int = 40, seed: int = 0) -> str:
    docs = builtin_corpus(seed=seed, num_docs=n_docs)
    return "\n\n".join(" ".join(d) for d in docs) + "\n"


@pytest.fixture(scope="module")
def story_tok() -> Tokenizer:
    return Tokenizer.train_from_texts([" ".join(d) for d in builtin_corpus(num_docs=200)], vocab_size=2000)


# --------------------------------------------------------------------------------------------- splitting
def test_document_split_is_deterministic_and_by_document(tmp_path: Path) -> None:
    f = tmp_path / "s.txt"
    f.write_text(story_docs(100))
    c = read_corpus([f])
    a = split_corpus(c, "document", val_fraction=0.1, seed=3)
    b = split_corpus(read_corpus([f]), "document", val_fraction=0.1, seed=3)
    other = split_corpus(c, "document", val_fraction=0.1, seed=4)
    assert len(a["val"].docs) == 10 and len(a["train"].docs) == 90
    assert a["val"].docs == b["val"].docs and a["train"].docs == b["train"].docs
    assert a["val"].docs != other["val"].docs
    all_docs = [d.sentences for d in c.documents()]
    assert sorted(map(tuple, a["val"].docs + a["train"].docs)) == sorted(map(tuple, all_docs))
    assert split_corpus(c, "document", val_docs=7)["val"].docs.__len__() == 7
    with pytest.raises(DataError, match="val_docs must be in"):
        split_corpus(c, "document", val_docs=100)


def test_document_split_needs_two_documents(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("Just one paragraph here. With two sentences.\n")
    with pytest.raises(DataError, match="from 1 documents .*split='tail'"):
        split_corpus(read_corpus([f]), "document")


# --------------------------------------------------------------------------------------------- preparing
def test_prepare_writes_arrays_and_reuses_cache(tmp_path: Path, story_tok: Tokenizer, monkeypatch) -> None:
    f = tmp_path / "s.txt"
    f.write_text(story_docs(60))
    out = tmp_path / "cache"
    pc = prepare_corpus([f], story_tok, out, val_fraction=0.1, progress=False)
    assert not pc.reused and pc.path.parent == out
    assert pc.path.name == pc.key
    assert prepare_corpus([f], story_tok, out, val_fraction=0.2, progress=False).key != pc.key  # settings in the key
    assert pc.tokens("train").dtype == np.uint16 and pc.meta["dtype"] == "uint16"
    assert pc.vocab_size == story_tok.vocab_size
    assert pc.num_docs("val") == 6 and pc.num_docs("train") == 54
    for split in ("train", "val"):
        toks, docs, sents = pc.tokens(split), pc.doc_offsets(split), pc.sent_offsets(split)
        assert docs[0] == 0 and docs[-1] == toks.size == pc.num_tokens(split)
        assert sents[0] == 0 and sents[-1] == toks.size and np.all(np.diff(sents) > 0)
        assert np.isin(docs, sents).all()
        assert docs.dtype == np.int64 and sents.dtype == np.int64
        dso = pc.doc_sent_offsets(split)
        assert dso[0] == 0 and dso[-1] == len(sents) - 1
    # tokens of a document decode to that document's text
    val_docs = split_corpus(read_corpus([f]), "document", val_fraction=0.1, seed=42)["val"].docs
    d = pc.doc_offsets("val")
    assert story_tok.decode(pc.tokens("val")[d[0] : d[1]].tolist()) == story_tok.decode(
        story_tok.encode(" ".join(val_docs[0]))
    )
    assert pc.num_chars("val") == sum(len(" ".join(s)) for s in val_docs)  # one line per doc: spaces only
    meta = json.loads((pc.path / "meta.json").read_text())
    assert meta["inputs"][0]["size"] == f.stat().st_size and len(meta["inputs"][0]["sha256"]) == 64
    assert meta["tokenizer"]["fingerprint"] == story_tok.fingerprint
    mtime = (pc.path / "meta.json").stat().st_mtime_ns

    # the second run reuses the directory without tokenizing
    calls = []
    monkeypatch.setattr(corpus_mod, "_tokenize_split", lambda *a, **k: calls.append(1) / 0)
    again = prepare_corpus([f], story_tok, out, val_fraction=0.1, progress=False)
    assert again.reused and again.path == pc.path and not calls
    assert (pc.path / "meta.json").stat().st_mtime_ns == mtime
    monkeypatch.undo()

    # a changed input, other settings or another tokenizer give a new directory
    f.write_text(story_docs(61))
    changed = prepare_corpus([f], story_tok, out, val_fraction=0.1, progress=False)
    assert not changed.reused and changed.path != pc.path
    other = prepare_corpus([f], story_tok, out, val_fraction=0.2, progress=False)
    assert other.path not in (pc.path, changed.path)
    tok2 = Tokenizer.train_from_texts([story_docs(30)], vocab_size=300)
    assert prepare_corpus([f], tok2, out, val_fraction=0.1, progress=False).path != changed.path
    assert not list(out.glob(".tmp-*"))  # atomic: no temporary directory left


def test_prepare_is_deterministic_across_directories(tmp_path: Path, story_tok: Tokenizer) -> None:
    f = tmp_path / "s.txt"
    f.write_text(story_docs(50))
    a = prepare_corpus([f], story_tok, tmp_path / "a", progress=False)
    b = prepare_corpus([f], story_tok, tmp_path / "b", progress=False, workers=2, batch_sentences=16)
    for split in ("train", "val"):
        np.testing.assert_array_equal(a.tokens(split), b.tokens(split))
        np.testing.assert_array_equal(a.sent_offsets(split), b.sent_offsets(split))
        np.testing.assert_array_equal(a.doc_offsets(split), b.doc_offsets(split))


def test_token_dtype_widens_for_large_vocabularies() -> None:
    assert corpus_mod._token_dtype(30522) == np.uint16
    assert corpus_mod._token_dtype(65536) == np.uint16
    assert corpus_mod._token_dtype(65537) == np.uint32


def test_tail_split_counts_exact_characters(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    text = "Héllo wörld. Second line here.\n\nAnother paragraph follows.\n" * 20
    f.write_text(text, encoding="utf-8")
    tok = words_tokenizer(text)
    pc = prepare_corpus([f], tok, tmp_path / "c", split="tail", val_fraction=0.1, progress=False)
    cut = int(len(text) * 0.9)
    assert pc.num_chars("train") == cut and pc.num_chars("val") == len(text) - cut
    assert pc.num_bytes("val") == len(text[cut:].encode("utf-8"))
    assert pc.num_bytes("train") + pc.num_bytes("val") == len(text.encode("utf-8"))
    assert tok.decode(pc.tokens("val").tolist()) == tok.decode(tok.encode(text[cut:]))


def test_tiny_shakespeare_tail_split_matches_nanogpt(shared_data_dir: Path, tmp_path: Path) -> None:
    f = shared_data_dir / "tinyshakespeare" / "input.txt"
    data = f.read_text(encoding="utf-8")
    n = len(data)
    tok = Tokenizer.train_from_texts([data[: int(n * 0.9)]], vocab_size=2000)
    pc = prepare_corpus([f], tok, tmp_path, split="tail", val_fraction=0.1, progress=False)
    assert pc.num_chars("val") == len(data[int(n * 0.9) :]) == 111540
    assert pc.num_chars("train") == 1003854
    assert pc.num_bytes("val") == 111540  # ASCII
    # play lines: speaker names are their own sentences
    c = read_corpus([f])
    first = c.documents()[0]
    assert first.sentences == ["First Citizen:", "Before we proceed any further, hear me speak."]


# --------------------------------------------------------------------------------------------- units="text"
MESSY = "Line one,  spaced.\r\n\tTabbed\r\n\r\n\r\nÉté 🙂 — done.\nNo trailing newline"


@pytest.fixture(scope="module")
def bpe_tok() -> Tokenizer:
    return Tokenizer.train_from_texts([MESSY * 3, story_docs(20)], vocab_size=400, kind="bpe")


def test_text_units_tail_split_decode_to_the_exact_slices(tmp_path: Path, bpe_tok: Tokenizer) -> None:
    f = tmp_path / "t.txt"
    f.write_bytes(("\ufeff" + MESSY * 10).encode("utf-8"))  # BOM and CRLF: the reader's two normalisations
    text = (MESSY * 10).replace("\r\n", "\n")
    pc = prepare_corpus([f], bpe_tok, tmp_path / "c", split="tail", val_fraction=0.25, units="text", progress=False)
    cut = int(len(text) * 0.75)
    for name, part in (("train", text[:cut]), ("val", text[cut:])):
        assert bpe_tok.decode(pc.tokens(name).tolist()) == part  # every character, line breaks and spaces
        assert pc.num_chars(name) == len(part) and pc.num_bytes(name) == len(part.encode("utf-8"))
        assert pc.stats(name)["round_trip"] is True
    assert pc.meta["settings"]["units"] == "text"


def test_text_units_document_split_keep_each_documents_text_and_end_it_with_endoftext(tmp_path: Path, bpe_tok) -> None:
    """A byte-level BPE trained by lit_lm has <|endoftext|> (GPT-2's): the corpus puts it after every document, as a
    token the model predicts; the characters counted for bits per character are the documents' own text."""
    f = tmp_path / "d.txt"
    paras = [f"Paragraph {i}.\n  Its second line,   spaced." for i in range(12)]
    f.write_text("\n\n\n".join(paras) + "\n")
    pc = prepare_corpus([f], bpe_tok, tmp_path / "c", val_docs=3, units="text", progress=False)
    eot = bpe_tok.eot_id
    assert eot is not None and bpe_tok.hf.id_to_token(eot) == "<|endoftext|>"
    tokens = pc.tokens("val")
    chosen = [p for p in paras if p in bpe_tok.decode(tokens.tolist())]
    assert len(chosen) == 3 and bpe_tok.decode(tokens.tolist()) == "".join(chosen)  # file order, exact text
    assert bpe_tok.decode(tokens.tolist(), skip_special_tokens=False) == "".join(p + "<|endoftext|>" for p in chosen)
    assert pc.num_chars("val") == sum(map(len, chosen)) and pc.num_docs("val") == 3  # the token is no character
    assert pc.stats("val")["round_trip"] is True
    off = pc.doc_offsets("val")
    assert [int(tokens[e - 1]) for e in off[1:]] == [eot] * 3 and (tokens == eot).sum() == 3
    assert bpe_tok.decode(tokens[off[0] : off[1]].tolist()) == chosen[0]
    sent = pc._array("val", "sent_offsets")
    assert sent[-1] == len(tokens) and set(off.tolist()) <= set(sent.tolist())


def test_text_units_with_wordpiece_do_not_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text(MESSY * 10)
    tok = words_tokenizer(MESSY)
    pc = prepare_corpus([f], tok, tmp_path / "c", split="tail", units="text", progress=False)
    assert pc.stats("val")["round_trip"] is False
    sentence = prepare_corpus([f], tok, tmp_path / "c", split="tail", progress=False)
    assert "round_trip" not in sentence.stats("val") and sentence.key != pc.key
    with pytest.raises(DataError, match="units must be"):
        prepare_corpus([f], tok, tmp_path / "c", units="words", progress=False)  # type: ignore[arg-type]


def test_prepare_errors(tmp_path: Path, story_tok: Tokenizer) -> None:
    f = tmp_path / "s.txt"
    f.write_text(story_docs(10))
    with pytest.raises(DataError, match="val_fraction must be in"):
        prepare_corpus([f], story_tok, tmp_path, val_fraction=1.5, progress=False)
    with pytest.raises(DataError, match="split must be"):
        prepare_corpus([f], story_tok, tmp_path, split="random", progress=False)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not found"):
        prepare_corpus([tmp_path / "nope.txt"], story_tok, tmp_path, progress=False)
    with pytest.raises(DataError, match="tokenizer file not found"):
        prepare_corpus([f], tmp_path / "tok.json", tmp_path, progress=False)
    with pytest.raises(DataError, match="not a prepared corpus"):
        PreparedCorpus(tmp_path)


def test_unigram_baseline_of_an_empty_split_names_it(tmp_path: Path, story_tok: Tokenizer) -> None:
    f = tmp_path / "s.txt"
    f.write_text(story_docs(20))
    pc = prepare_corpus([f], story_tok, tmp_path / "cache", val_fraction=0.1, progress=False)
    assert pc.unigram_baseline("val")["loss"] > 0
    pc._arrays["val_tokens"] = np.zeros(0, dtype=pc.dtype)  # e.g. validation documents that tokenize to nothing
    with pytest.raises(DataError, match="the val split has no tokens"):
        pc.unigram_baseline("val")


def test_prepare_cli(
    tmp_path: Path, story_tok: Tokenizer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    f = write_builtin_corpus(tmp_path, num_docs=50)
    tok_path = tmp_path / "tok.json"
    story_tok.save(tok_path)
    argv = ["--files", str(f), "--tokenizer", str(tok_path), "--out_dir", str(tmp_path / "c"), "--progress", "false"]
    caplog.set_level(logging.INFO)  # as the command's own logging set-up: INFO records show

    def everything_shown() -> str:
        captured = capsys.readouterr()
        shown = captured.out + captured.err + caplog.text
        caplog.clear()
        return shown

    assert prepare_main(argv) == 0
    out = everything_shown()
    assert "prepared corpus ->" in out and "written" in out and "val:" in out
    assert out.count("prepared corpus") == 1 and out.count("val:") == 1, f"the summary is printed once:\n{out}"
    assert prepare_main(argv) == 0
    out = everything_shown()
    assert "reused from cache" in out
    assert out.count("prepared corpus") == 1, f"the summary is printed once:\n{out}"
    assert prepare_main([*argv[:2], "--tokenizer", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err


def test_builtin_corpus_is_deterministic_and_sized() -> None:
    a, b = builtin_corpus(), builtin_corpus()
    assert a == b and builtin_corpus(seed=1) != a
    text = "\n\n".join("\n".join(d) for d in a)
    assert 200_000 <= len(text.encode()) <= 500_000
    assert all(4 <= len(d) <= 10 for d in a)
    assert all(s[0].isupper() and s[-1] in ".?!" for d in a for s in d)


def test_only_units_of_text_without_tokens_are_counted_as_dropped(tmp_path: Path, story_tok: Tokenizer,
                                                                  caplog) -> None:  # fmt: skip
    """With units="text" a WordPiece gives the blank line after each document no tokens (it drops whitespace): that
    loses nothing and is not reported; a line of text that gives no tokens (control characters only) is."""
    f = tmp_path / "c.txt"
    f.write_text(story_docs(20) + "\n\x01\x02\n\nThe end.\n")
    with caplog.at_level(logging.WARNING):
        pc = prepare_corpus([f], story_tok, tmp_path / "out", units="text", val_fraction=0.1, progress=False)
    stats = pc.meta["splits"]
    assert stats["train"]["sentences_without_tokens"] + stats["val"]["sentences_without_tokens"] == 1
    assert "1 sentence(s) that gave no tokens" in caplog.text
