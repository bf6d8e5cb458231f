"""WordPiece tokenizer: training, special ids, save/reload (tokenizers, transformers), BERT vocab.txt."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, trainers

from lit_lm.commands import tokenizer_main
from lit_lm.data.core.tokenizer import SPECIAL_TOKENS, Tokenizer
from lit_lm.data.pretraining.tokenizer_training import train_tokenizer
from lit_lm.errors import DataError

TEXTS = [
    "The lantern was lit in the harbour. The lantern glowed all night.",
    "A sailor carried the lantern to the harbour and the lantern swayed.",
    "The harbour was quiet. Nobody saw the lantern.",
] * 30 + ["An extraordinarily flabbergasted zookeeper appeared once."]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS, vocab_size=300, lowercase=True)


def test_special_tokens_have_fixed_ids(tok: Tokenizer) -> None:
    assert [tok.hf.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(7))
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.delim_id, tok.extract_id) == tuple(
        range(7)
    )
    assert tok.special_ids == list(range(7))


def test_frequent_word_is_one_token_rare_word_splits(tok: Tokenizer) -> None:
    assert tok.tokenize("Lantern") == ["lantern"]
    assert tok.tokenize("harbour") == ["harbour"]
    pieces = tok.tokenize("flabbergasted")
    assert len(pieces) > 1
    assert not pieces[0].startswith("##") and all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.removeprefix("##") for p in pieces) == "flabbergasted"
    cont = tok.continuation_mask()
    ids = tok.encode("flabbergasted")
    assert not cont[ids[0]] and all(cont[i] for i in ids[1:])


def test_wordpiece_training_is_reproducible_and_learns_what_the_library_trainer_learns(shared_data_dir: Path) -> None:
    """The library's WordPieceTrainer numbers the ``##`` characters in hash order (a new seed per training, even in
    one process): on this text ~100 of 2000 ids moved between two trainings, and now and then a token. lit_lm's
    training gives the same tokenizer every time, and the library's vocabulary up to those ties."""
    text = (shared_data_dir / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
    first, second = (Tokenizer.train_from_texts(text, vocab_size=2000) for _ in range(2))
    assert first.hf.to_str() == second.hf.to_str()
    vocab = sorted(first.hf.get_vocab(), key=first.hf.token_to_id)
    assert vocab[:7] == list(SPECIAL_TOKENS) and vocab[7:10] == ["!", "$", "&"]  # then the alphabet by code point
    library = HFTokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    library.normalizer, library.pre_tokenizer = first.hf.normalizer, first.hf.pre_tokenizer
    library.train_from_iterator(text, trainers.WordPieceTrainer(
        vocab_size=2000, min_frequency=2, special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
        show_progress=False))  # fmt: skip
    assert len(set(vocab) & set(library.get_vocab())) >= 0.99 * len(vocab)


HARD_TEXT = (
    "Ünïcödé CAFÉ\u00a0naïve\tTab\r\nCRLF \x0bvt\x0cff a\x1cb \u3000ideo\u4e2d\u6587mixed \u2028ls "
    "don't—dash … \u0301combining e\u0301 \x00nul \ufffdrepl ＦＵＬＬ ΣΙΓΜΑ ς (x)[y]{z} 3.14 emoji🙂x "
    "\u200bzw \xadsoft ##hash"
)


@pytest.mark.parametrize("lowercase", [True, False])
def test_word_counts_equal_the_library_normalizer_and_pre_tokenizer(lowercase: bool, shared_data_dir: Path) -> None:
    """WordPiece training counts each distinct space-separated chunk once (printable ASCII by a regex): the counts
    equal those of running the BERT normalizer and pre-tokenizer over every text, on hard cases and real text."""
    from collections import Counter

    from lit_lm.data.core.tokenizer import _configure, _count_words

    tk = HFTokenizer(models.WordPiece(unk_token="[UNK]"))
    _configure(tk, lowercase)
    texts = [HARD_TEXT, HARD_TEXT[::-1], *(shared_data_dir / "tinyshakespeare" / "input.txt").read_text().split("\n\n")]
    expected = Counter(w for t in texts for w, _ in tk.pre_tokenizer.pre_tokenize_str(tk.normalizer.normalize_str(t)))
    assert _count_words(tk, iter(texts)) == expected


def test_wordpiece_limit_alphabet_splits_words_at_dropped_characters() -> None:
    tok = Tokenizer.train_from_texts(["abc abc abc cab bca"] * 5 + ["aqb"], vocab_size=40, limit_alphabet=3)
    assert "q" not in tok.hf.get_vocab() and "##q" not in tok.hf.get_vocab()
    assert {"abc", "a", "##b", "##c", "c", "b"} <= set(tok.hf.get_vocab())
    assert tok.tokenize("abc") == ["abc"] and tok.tokenize("aqb") == ["[UNK]"]


def test_encode_has_no_special_tokens_by_default(tok: Tokenizer) -> None:
    ids = tok.encode("the lantern")
    assert tok.cls_id not in ids and tok.sep_id not in ids
    assert tok.encode("the lantern", add_special_tokens=True) == [tok.cls_id, *ids, tok.sep_id]
    assert tok.encode_batch(["the lantern", "harbour"]) == [ids, tok.encode("harbour")]


def test_save_reload_with_tokenizers_library(tok: Tokenizer, tmp_path: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    path = tmp_path / "tok.json"
    tok.save(path)
    hf = HFTokenizer.from_file(str(path))
    text = "The sailor saw the flabbergasted lantern."
    assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text)
    pair = hf.encode("the lantern", "the harbour")
    a, b = tok.encode("the lantern"), tok.encode("the harbour")
    assert pair.ids == [2, *a, 3, *b, 3]
    assert pair.type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    again = Tokenizer.from_file(path)
    assert again.fingerprint == tok.fingerprint and again.vocab_size == tok.vocab_size


def test_save_reload_with_transformers(tok: Tokenizer, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "tok.json"
    tok.save(path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    enc = fast("the lantern", "the harbour", return_token_type_ids=True)
    a, b = tok.encode("the lantern"), tok.encode("the harbour")
    assert enc["input_ids"] == [2, *a, 3, *b, 3]
    assert enc["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert fast.convert_ids_to_tokens(enc["input_ids"])[0] == "[CLS]"


def test_bert_vocab_txt(tmp_path: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat", "on", "mat", "."]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tok = Tokenizer.from_file(path)
    assert tok.tokenize("The cats sat on the mat.") == ["the", "cat", "##s", "sat", "on", "the", "mat", "."]
    assert tok.encode("The dog") == [5, 1]  # unknown word -> [UNK]
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 2, 3, 4)
    assert tok.delim_id is None and tok.extract_id is None
    assert tok.hf.encode("the cat", "the mat").ids == [2, 5, 6, 3, 5, 10, 3]
    with pytest.raises(DataError, match="DELIM"):
        tok.require_decoder_tokens()
    # a directory holding vocab.txt works too (Hugging Face checkpoint layout)
    assert Tokenizer.from_file(tmp_path).vocab_size == len(vocab)


def test_fixed_padding_and_truncation_of_a_foreign_tokenizer_json_are_dropped(tmp_path: Path) -> None:
    # Hugging Face exports (all-MiniLM-L6-v2's among them) may pad every text to a fixed length and cut long ones
    # silently; lit_lm pads per batch and counts its own truncations.
    hf = Tokenizer.train_from_texts(TEXTS, vocab_size=300, lowercase=True).hf
    text = "the lantern was lit in the harbour"
    expected = hf.encode(text, add_special_tokens=False).ids
    hf.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    hf.enable_truncation(max_length=4)
    hf.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert loaded.encode(text) == expected and len(expected) > 4


def test_missing_tokenizer_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as e:
        Tokenizer.from_file(tmp_path / "nope.json")
    assert "nope.json" in str(e.value)


def test_train_tokenizer_on_gutenberg_reads_like_prepare(shared_data_dir: Path, tmp_path: Path) -> None:
    alice = shared_data_dir / "gutenberg" / "11-0.txt"  # BOM, CRLF, Gutenberg header
    tok = train_tokenizer([alice], vocab_size=2000)
    assert tok.tokenize("Alice") == ["alice"]
    assert tok.tokenize("rabbit") == ["rabbit"]
    vocab = tok.hf.get_vocab()
    assert "\ufeff" not in "".join(vocab)
    out = tmp_path / "tok.json"
    assert tokenizer_main(["--files", str(alice), "--vocab_size", "2000", "--out", str(out)]) == 0
    # WordPiece training breaks ties between equal counts in hash-map order, so two trainings can differ in a few
    # rare pieces; the CLI reads the same text, so the frequent words agree.
    cli_tok = Tokenizer.from_file(out)
    assert cli_tok.vocab_size == tok.vocab_size and cli_tok.tokenize("Alice rabbit") == ["alice", "rabbit"]


def test_tokenizer_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokenizer_main(["--files", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "t.json")]) == 2
    assert "missing.txt" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- byte-level BPE
@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    texts = ["First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\r\nSpeak, speak.\t(Naïve café 😀)"]
    return Tokenizer.train_from_texts(texts * 20, vocab_size=400, kind="bpe")


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_bpe_round_trips_any_text(bpe: Tokenizer, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize(
    "text",
    ["line one\nline two\n", "crlf\r\nend", "\ttabs\t\tand   runs of spaces  ", "no trailing newline", "",
     "accents: é à ñ ü, emoji: 😀👍🏽", "literal specials [PAD] [MASK] [CLS] stay text", "\n\n\nblank lines\n\n"],
)  # fmt: skip
def test_bpe_round_trips_the_hard_cases(bpe: Tokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert not set(ids) & set(bpe.special_ids)  # "[PAD]" in a text is text, not the special id


def test_bpe_keeps_the_special_ids_and_saves_and_loads(bpe: Tokenizer, tmp_path) -> None:
    assert [bpe.pad_id, bpe.unk_id, bpe.cls_id, bpe.sep_id, bpe.mask_id, bpe.delim_id, bpe.extract_id] == list(range(7))
    assert bpe.kind == "bpe" and bpe.lossless
    bpe.save(tmp_path / "bpe.json")
    again = Tokenizer.from_file(tmp_path / "bpe.json")
    assert again.kind == "bpe" and again.decode(again.encode("a [MASK] b\n")) == "a [MASK] b\n"
    assert bpe.encode("hi", add_special_tokens=True)[0] == bpe.cls_id
    with pytest.raises(DataError, match="whole-word masking needs a WordPiece"):
        bpe.continuation_mask()
    wordpiece = Tokenizer.train_from_texts(["hello world"] * 5, vocab_size=100)
    assert wordpiece.kind == "wordpiece" and not wordpiece.lossless
    with pytest.raises(DataError, match="tokenizer kind must be 'wordpiece' or 'bpe', got 'unigram'"):
        Tokenizer.train_from_texts(["x"], vocab_size=400, kind="unigram")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="larger than the 8 special tokens and the 256 byte tokens"):
        Tokenizer.train_from_texts(["x"], vocab_size=200, kind="bpe")


def test_tokenizer_command_trains_either_kind(tmp_path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("Hello there, world.\nA second line.\n\nAnother paragraph here.\n" * 30)
    out = tmp_path / "bpe.json"
    assert tokenizer_main(["--files", str(corpus), "--kind", "bpe", "--vocab_size", "300", "--out", str(out)]) == 0
    tok = Tokenizer.from_file(out)
    assert tok.kind == "bpe" and tok.decode(tok.encode("Hello there,\n  world.")) == "Hello there,\n  world."


def test_bpe_round_trips_every_text_file_of_the_shared_data(shared_data_dir) -> None:
    """Every text file in ../shared/data (its first 400k characters: all of most files, and a sample of every kind of
    text in the bigger ones): tokenizer trained on a slice of the data, then each file encoded and decoded back
    exactly (UTF-8 text as read, CRLF and all)."""
    files = sorted(p for p in shared_data_dir.rglob("*") if p.is_file() and p.suffix != ".md")
    texts = [p.read_bytes().decode("utf-8", errors="strict")[:400_000] for p in files if _is_utf8(p)]
    assert len(texts) >= 20
    tok = Tokenizer.train_from_texts((t[:20000] for t in texts), vocab_size=2000, kind="bpe")
    for path, text in zip((p for p in files if _is_utf8(p)), texts, strict=True):
        lines = text.splitlines(keepends=True)  # pieces of ~1 MB cut at line ends, encoded in parallel (Rust threads)
        step = max(1, len(lines) * 1_000_000 // max(1, len(text)))
        pieces = ["".join(lines[i : i + step]) for i in range(0, len(lines), step)] or [text]
        encoded = tok.hf.encode_batch(pieces, add_special_tokens=False)
        decoded = [tok.hf.decode(e.ids, skip_special_tokens=False) for e in encoded]
        assert "".join(decoded) == text, path


def _is_utf8(path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_chunk_encoder_gives_the_ids_of_encode_batch(shared_data_dir: Path) -> None:
    """Corpus preparation encodes each distinct chunk (about a word) once, for BERT-style WordPiece and GPT-2-style
    byte-level BPE: the same ids and lengths as encoding each text, on hard cases and real text (lines with their
    line ends, runs of spaces), across batches and after forgetting its chunks."""
    import numpy as np
    from tokenizers import AddedToken, pre_tokenizers

    from lit_lm.data.core.tokenizer import ChunkEncoder

    text = (shared_data_dir / "tinyshakespeare" / "input.txt").read_text()
    lines = text.splitlines(keepends=True)[:3000]
    texts = [HARD_TEXT, HARD_TEXT[::-1], "", "  ", " x", "a   b  \n\n c\t d \u00a0e", "[MASK] x[SEP]y", *lines]
    wordpiece = Tokenizer.train_from_texts(text.split("\n\n"), vocab_size=1000)
    bpe = Tokenizer.train_from_texts(text.split("\n\n")[:300], vocab_size=400, kind="bpe")
    for tok in (wordpiece, bpe):
        expected = tok.encode_batch(texts)
        encoder = ChunkEncoder(tok, max_chunks=500)
        assert encoder.chunk_kind == tok.kind
        parts = [encoder(texts[i : i + 700]) for i in range(0, len(texts), 700)]
        flat, lengths = (np.concatenate(x) for x in zip(*parts, strict=True))
        assert lengths.tolist() == [len(e) for e in expected]
        assert flat.tolist() == [i for e in expected for i in e]
    bpe.hf.add_tokens(["<x>"])  # matched in the text: "a  <x>" ends the regex's text before it, "ĠĠ" is one word
    assert ChunkEncoder(bpe).chunk_kind is None
    with_added = ["a  <x>", "x\n <x>", "  <x> b"]
    assert ChunkEncoder(bpe)(with_added)[0].tolist() == [i for e in bpe.encode_batch(with_added) for i in e]
    bpe.hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # " " before the first word: per text
    wordpiece.hf.add_tokens([AddedToken("<x>", lstrip=True)])  # takes the space before it
    assert ChunkEncoder(bpe).chunk_kind is None and ChunkEncoder(wordpiece).chunk_kind is None
