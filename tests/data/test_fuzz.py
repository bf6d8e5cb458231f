"""Fuzzing the data readers: random bytes and mutated valid files either load or raise ``DataError`` naming the
file (and a line inside it, where one is given); no other exception escapes and nothing hangs. Plus the MLM
collator's replacement shares (80% [MASK] / 10% random / 10% unchanged) on arbitrary batches.

Each property runs few examples (the whole file takes well under a minute); a failure prints the input, which
belongs as a regular test next to the fix.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.finetuning.multiple_choice import (
    read_choices_jsonl,
    read_copa_jsonl,
    read_copa_xml,
    read_multiple_choice,
    read_story_cloze,
)
from lit_lm.data.finetuning.nli import read_nli, read_nli_infersent, read_nli_jsonl, read_nli_tsv
from lit_lm.data.pretraining.corpus import prepare_corpus, split_corpus
from lit_lm.data.pretraining.masking import MLMCollator
from lit_lm.data.pretraining.text import read_corpus
from lit_lm.errors import CheckpointError, DataError

#: Examples per property; ``FUZZ_EXAMPLES=5000 pytest tests/data/test_fuzz.py`` searches longer, with fresh random
#: inputs (the default run is derandomized: the same inputs every time, so CI never flakes).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(max_examples=EXAMPLES or 40, deadline=None, derandomize=EXAMPLES is None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
SLOW_FUZZ = settings(max_examples=(EXAMPLES or 45) // 3, deadline=None, derandomize=EXAMPLES is None,
                     suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
TIME_LIMIT_S = 20  # an example that takes longer counts as a hang

# ============================================================================================= valid samples
CORPUS_TXT = (
    b"The Project Gutenberg EBook of A Tale\n\n*** START OF THE PROJECT GUTENBERG EBOOK A TALE ***\n\n"
    b"It was the best of times. Mr. Lorry said so!\nDid he? Yes.\n\n\"Well,\" said she. (Indeed.) Then she left.\n\n"
    b"1 In the beginning.\n2 And the earth was void.\n3 And God said.\n\n"
    b"End of the Project Gutenberg EBook of A Tale\n*** END OF THE PROJECT GUTENBERG EBOOK A TALE ***\nlicense\n"
)
CORPUS_JSONL = (
    json.dumps({"text": "A first document. It has two sentences."}) + "\n\n"
    + json.dumps({"text": "Second one!\nWith a line break.", "id": 2}) + "\n"
    + json.dumps({"text": ""}) + "\n"
).encode()  # fmt: skip
NLI_JSONL = (
    json.dumps({"sentence1": "A man sleeps.", "sentence2": "A person rests.", "gold_label": "entailment"}) + "\n"
    + json.dumps({"sentence1": "A man sleeps.", "sentence2": "Nobody sleeps.", "gold_label": "-"}) + "\n"
    + json.dumps({"sentence1": "Kids play.", "sentence2": "Kids sleep.", "gold_label": "contradiction"}) + "\n"
).encode()  # fmt: skip
NLI_SIMPLE_JSONL = (
    json.dumps({"premise": "P one.", "hypothesis": "H one.", "label": 0}) + "\n"
    + json.dumps({"premise": "P two.", "hypothesis": "H two.", "label": "neutral"}) + "\n"
).encode()  # fmt: skip
NLI_TSV = (
    b"gold_label\tsentence1_parse\tsentence1\tsentence2\tpairID\n"
    b"neutral\t(ROOT)\tA dog runs.\tA dog runs fast.\t1\n"
    b"-\t(ROOT)\tA cat.\tA cat sleeps.\t2\n"
    b"entailment\t(ROOT)\tA bird sings.\tAn animal sings.\t3\n"
)
SICK_TSV = (
    b"pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\r\n"
    b"1\tA child plays.\tA kid plays.\tENTAILMENT\t4.5\r\n"
    b"2\tA child plays.\tNobody plays.\tCONTRADICTION\t3.1\r\n"
)
INFERSENT = (b"A man sleeps .\nKids play .\n", b"A person rests .\nKids sleep .\n", b"entailment\ncontradiction\n")
STORY_CSV = (
    b"InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,RandomFifthSentenceQuiz1,"
    b"RandomFifthSentenceQuiz2,AnswerRightEnding\n"
    b'a1,Tom was hungry.,He went out.,"He saw a shop, open.",He went in.,He bought bread.,He flew away.,1\n'
    b"a2,Ann sang.,People came.,They listened.,They clapped.,Ann cried.,Ann bowed.,2\n"
)
COPA_XML = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<copa-corpus version="1.0">\n'
    b'<item id="1" asks-for="cause" most-plausible-alternative="1">\n'
    b"<p>My body cast a shadow over the grass.</p>\n<a1>The sun was rising.</a1>\n<a2>The grass was cut.</a2>\n"
    b"</item>\n"
    b'<item id="2" asks-for="effect" most-plausible-alternative="2">\n'
    b"<p>The woman tolerated her friend's difficult behavior.</p>\n"
    b"<a1>She left.</a1>\n<a2>She stayed &amp; hoped.</a2>\n"
    b"</item>\n</copa-corpus>\n"
)
COPA_JSONL = (
    json.dumps({"p": "The man turned on the faucet.", "a1": "The toilet filled.", "a2": "Water flowed.",
                "asks-for": "effect", "most-plausible-alternative": 2}) + "\n"
    + json.dumps({"premise": "I ran.", "choice1": "I was late.", "choice2": "I was early.", "question": "cause",
                  "label": 0}) + "\n"
).encode()  # fmt: skip
CHOICES_JSONL = (
    json.dumps({"context": "Pick one:", "choices": ["a", "b", "c"], "label": 2}) + "\n"
    + json.dumps({"context": "Again:", "choices": ["x", "y", "z"], "label": 0}) + "\n"
).encode()  # fmt: skip

# ============================================================================================= strategies
_SPECIAL = [
    b"\n", b"\r\n", b"\r", b"\t", b",", b'"', b"'", b"{", b"}", b"[", b"]", b":", b"<", b">", b"&", b"/", b"\\",
    b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", "\u2028".encode(), "\u00a0".encode(), "\u3000".encode(),
    "\u00e9".encode(), b"\xed\xa0\x80", b"-", b"-1", b"1", b"2", b"null", b"true", b"1e999", b"NaN", b"***",
    b"</item>", b"<item>", b"<p>", b"<!DOCTYPE a [<!ENTITY x 'y'>]>", b" ", b"  \n\n  ", b"#",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few random edits: byte flips, inserted special characters, deleted or duplicated spans,
    truncation."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "replace_line"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            pos = min(pos, len(data) - 1)
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(_SPECIAL) | st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 60))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "replace_line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(st.binary(max_size=30) | st.sampled_from(_SPECIAL))
            data = bytearray(b"\n".join(lines))
    return bytes(data)


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", " ", "-", "-1", "0", "1", "2", "3", "entailment", "NEUTRAL", "cause", "effect", "\t", "\n", "\r", ",", '"',
     "\u2028", "\u3000", "<", "&", "&amp;", "\x00"]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated_json(draw: st.DrawFn, obj: Any, depth: int = 0) -> Any:
    """A JSON value with one structural edit somewhere inside: a value replaced, a key dropped or added."""
    if isinstance(obj, dict) and obj and depth < 6 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(obj)))
        action = draw(st.sampled_from(["recurse", "drop", "replace", "add"]))
        out = dict(obj)
        if action == "recurse":
            out[key] = draw(mutated_json(obj[key], depth + 1))
        elif action == "drop":
            del out[key]
        elif action == "replace":
            out[key] = draw(JSON_VALUES)
        else:
            out[draw(_TEXT | st.sampled_from(sorted(obj)))] = draw(JSON_VALUES)
        return out
    if isinstance(obj, list) and obj and depth < 6 and draw(st.booleans()):
        i = draw(st.integers(0, len(obj) - 1))
        out = list(obj)
        out[i] = draw(mutated_json(obj[i], depth + 1)) if draw(st.booleans()) else draw(JSON_VALUES)
        return out
    return draw(JSON_VALUES)


@st.composite
def mutated_jsonl(draw: st.DrawFn, valid: bytes) -> bytes:
    """Valid JSON lines whose records got structural edits (wrong types, missing or extra fields, odd strings),
    plus blank, duplicated or dropped lines."""
    records = [json.loads(line) for line in valid.decode().splitlines() if line.strip()]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(records) - 1))
        records[i] = draw(mutated_json(records[i]))
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in records]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", lines[0]])))
    return ("\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))).encode("utf-8", "surrogatepass")


@st.composite
def mutated_cells(draw: st.DrawFn, valid: bytes, sep: str) -> bytes:
    """A delimited file (TSV/CSV) with random cells replaced, cells added or removed, rows duplicated."""
    rows = [line.split(sep) for line in valid.decode().split("\n")]
    for _ in range(draw(st.integers(1, 4))):
        r = draw(st.integers(0, len(rows) - 1))
        row = rows[r]
        action = draw(st.sampled_from(["replace", "replace", "add", "remove", "duplicate"]))
        if action == "replace" and row:
            row[draw(st.integers(0, len(row) - 1))] = draw(_TEXT)
        elif action == "add":
            row.insert(draw(st.integers(0, len(row))), draw(_TEXT))
        elif action == "remove" and row:
            del row[draw(st.integers(0, len(row) - 1))]
        elif action == "duplicate":
            rows.insert(r, list(row))
    return "\n".join(sep.join(row) for row in rows).encode("utf-8", "surrogatepass")


@st.composite
def mutated_xml(draw: st.DrawFn, valid: bytes) -> bytes:
    """XML with random element texts or attribute values (escaped or raw), or an element dropped."""
    import re

    text = valid.decode()
    spans = [m.span(1) for m in re.finditer(r'>([^<]*)<|"([^"]*)"', text) if m.group(1) is not None]
    spans += [m.span(1) for m in re.finditer(r'"([^"]*)"', text)]
    for _ in range(draw(st.integers(1, 3))):
        a, b = draw(st.sampled_from(spans))
        value = draw(_TEXT)
        if draw(st.booleans()):
            value = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        text = text[:a] + value + text[b:]
        spans = [m.span(1) for m in re.finditer(r'"([^"]*)"', text)] or [(0, 0)]
    if draw(st.booleans()):
        tag = draw(st.sampled_from(["p", "a1", "a2", "item"]))
        text = re.sub(rf"<{tag}[^>]*>.*?</{tag}>", "", text, count=1, flags=re.S)
    return text.encode("utf-8", "surrogatepass")


def inputs(valid: bytes, structure: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """Random bytes, random text, a valid file with byte-level edits, or (when given) with structural edits."""
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200).map(str.encode)
    options = [st.binary(max_size=300), text, mutated(valid)]
    if structure is not None:
        options += [structure, structure]  # the structure-aware edits give more inputs that are almost valid
    return st.one_of(*options)


# fuzzed inputs of each format
CORPUS_JSONL_IN = inputs(CORPUS_JSONL, mutated_jsonl(CORPUS_JSONL))
NLI_JSONL_IN = st.one_of(inputs(NLI_JSONL, mutated_jsonl(NLI_JSONL)),
                         inputs(NLI_SIMPLE_JSONL, mutated_jsonl(NLI_SIMPLE_JSONL)))  # fmt: skip
NLI_TSV_IN = st.one_of(inputs(NLI_TSV, mutated_cells(NLI_TSV, "\t")), inputs(SICK_TSV, mutated_cells(SICK_TSV, "\t")))
STORY_IN = inputs(STORY_CSV, mutated_cells(STORY_CSV, ","))
COPA_XML_IN = inputs(COPA_XML, mutated_xml(COPA_XML))
COPA_JSONL_IN = inputs(COPA_JSONL, mutated_jsonl(COPA_JSONL))
CHOICES_IN = inputs(CHOICES_JSONL, mutated_jsonl(CHOICES_JSONL))


# ============================================================================================= harness
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh_dir(root: Path) -> Path:
    d = root / uuid.uuid4().hex[:12]
    d.mkdir()
    return d


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"reader took more than {seconds}s: it hangs on this input")

    if not hasattr(signal, "SIGALRM"):
        yield
        return
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def loads_or_data_error(read: Callable[[], Any], files: list[Path]) -> Any:
    """Run ``read``; it may return, or raise DataError that names one of ``files`` (and a line within it), or
    CheckpointError naming the file (a ``.ckpt`` that a safe load cannot read)."""
    with _time_limit(TIME_LIMIT_S):
        try:
            result = read()
            _event("loaded")  # --hypothesis-show-statistics: how often the fuzzed input was still valid
            return result
        except (DataError, CheckpointError) as e:
            _event(type(e).__name__)
            message = str(e)
            named = [f for f in files if str(f) in message or f.name in message]
            assert named, f"{type(e).__name__} does not name the file ({[str(f) for f in files]}): {message}"
            if isinstance(e, DataError) and e.line is not None:
                n_lines = max(Path(e.path).read_bytes().count(b"\n") + 1, 1) if e.path else None
                assert e.line >= 1 and (n_lines is None or e.line <= n_lines + 1), f"line {e.line} of {n_lines}"
            return None


def _event(name: str) -> None:
    if currently_in_test_context():
        event(name)


def _write(directory: Path, name: str, data: bytes) -> Path:
    p = directory / name
    p.write_bytes(data)
    return p


# ============================================================================================= corpus
@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    texts = [CORPUS_TXT.decode(), CORPUS_JSONL.decode()] * 5
    return Tokenizer.train_from_texts(texts, vocab_size=200)


@FUZZ
@given(data=inputs(CORPUS_TXT), suffix=st.sampled_from([".txt", ".text", ""]), doc_split=st.sampled_from(
    ["blank_line", "file"]), sentence_split=st.sampled_from(["auto", "punct", "line"]))  # fmt: skip
def test_text_corpus_reader(workdir: Path, data: bytes, suffix: str, doc_split: str, sentence_split: str) -> None:
    path = _write(_fresh_dir(workdir), f"corpus{suffix}", data)

    def read() -> None:
        corpus = read_corpus(path, doc_split=doc_split, sentence_split=sentence_split)
        for doc in corpus.documents():
            assert all(isinstance(s, str) and s.strip() for s in doc.sentences)
        for mode in ("document", "tail"):
            try:
                split_corpus(corpus, mode, val_fraction=0.3)
            except DataError as e:  # too little text to split is a data error without a single file to blame
                assert "split" in str(e) or "document" in str(e)

    loads_or_data_error(read, [path])


@FUZZ
@given(data=CORPUS_JSONL_IN, field=st.sampled_from(["text", "body"]))
def test_jsonl_corpus_reader(workdir: Path, data: bytes, field: str) -> None:
    path = _write(_fresh_dir(workdir), "corpus.jsonl", data)
    loads_or_data_error(lambda: read_corpus(path, text_field=field).documents(), [path])


@SLOW_FUZZ
@given(a=inputs(CORPUS_TXT), b=CORPUS_JSONL_IN, split=st.sampled_from(["document", "tail"]))
def test_prepare_corpus(workdir: Path, tok: Tokenizer, a: bytes, b: bytes, split: str) -> None:
    """The whole preparation path (read, split, tokenize, write arrays) on two fuzzed files."""
    d = _fresh_dir(workdir)
    files = [_write(d, "a.txt", a), _write(d, "b.jsonl", b)]

    def prepare() -> None:
        try:
            pc = prepare_corpus(files, tok, d / "out", split=split, val_fraction=0.3, progress=False)
        except DataError as e:
            if e.path is None:  # a corpus-level problem (too little text to split): names no file, says what
                assert "split" in str(e) or "empty corpus" in str(e) or "document" in str(e), str(e)
                return
            raise
        for s in ("train", "val"):
            assert pc.num_tokens(s) == len(pc.tokens(s)) > 0
            assert int(pc.doc_offsets(s)[-1]) == int(pc.sent_offsets(s)[-1]) == pc.num_tokens(s)

    loads_or_data_error(prepare, files)


@functools.cache
def _tokenizer_json() -> Any:
    """A small lit_lm tokenizer.json, as a JSON value (made once, on first use)."""
    return json.loads(Tokenizer.train_from_texts([CORPUS_TXT.decode()], vocab_size=60).hf.to_str())


VOCAB_TXT = b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\nit\nwas\n"
TOKENIZER_IN = st.one_of(
    st.binary(max_size=200),
    st.deferred(lambda: mutated_json(_tokenizer_json())).map(lambda obj: json.dumps(obj).encode()),
    st.deferred(lambda: st.just(json.dumps(_tokenizer_json()).encode())).flatmap(mutated),
    inputs(VOCAB_TXT, mutated_cells(VOCAB_TXT, " ")),
)


@FUZZ
@given(data=TOKENIZER_IN, suffix=st.sampled_from([".json", ".txt", ".ckpt"]))
def test_tokenizer_files(workdir: Path, data: bytes, suffix: str) -> None:
    """tokenizer.json, BERT vocab.txt and a .ckpt carrying a tokenizer: each loads (and encodes) or is a DataError."""
    path = _write(_fresh_dir(workdir), f"tok{suffix}", data)

    def load() -> None:
        tk = Tokenizer.from_file(path)
        tk.encode("Hello, world. Héllo!")

    loads_or_data_error(load, [path])


# ============================================================================================= NLI
@FUZZ
@given(data=NLI_JSONL_IN)
def test_nli_jsonl_reader(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "dev.jsonl", data)
    loads_or_data_error(lambda: read_nli_jsonl(path), [path])


@FUZZ
@given(data=NLI_TSV_IN)
def test_nli_tsv_reader_snli_and_sick(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "SICK.txt", data)
    loads_or_data_error(lambda: read_nli_tsv(path), [path])


@FUZZ
@given(s1=inputs(INFERSENT[0]), s2=inputs(INFERSENT[1]), labels=inputs(INFERSENT[2], mutated_cells(INFERSENT[2], " ")),
       which=st.integers(0, 3))  # fmt: skip
def test_nli_infersent_reader(workdir: Path, s1: bytes, s2: bytes, labels: bytes, which: int) -> None:
    """One of the three parallel files fuzzed (or all three: which == 3)."""
    d = _fresh_dir(workdir)
    contents = [s1 if which in (0, 3) else INFERSENT[0], s2 if which in (1, 3) else INFERSENT[1],
                labels if which in (2, 3) else INFERSENT[2]]  # fmt: skip
    files = [_write(d, f"{name}.dev", c) for name, c in zip(("s1", "s2", "labels"), contents, strict=True)]
    loads_or_data_error(lambda: read_nli_infersent(files[0]), files)


@FUZZ
@given(data=st.one_of(NLI_JSONL_IN, NLI_TSV_IN), name=st.sampled_from(["x.jsonl", "x.tsv", "x.txt", "x"]))
def test_nli_auto_reader(workdir: Path, data: bytes, name: str) -> None:
    path = _write(_fresh_dir(workdir), name, data)
    loads_or_data_error(lambda: read_nli(path), [path])


# ============================================================================================= multiple choice
@FUZZ
@given(data=STORY_IN)
def test_story_cloze_reader(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "cloze.csv", data)
    loads_or_data_error(lambda: read_story_cloze(path), [path])


@FUZZ
@given(data=COPA_XML_IN)
def test_copa_xml_reader(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "copa.xml", data)
    loads_or_data_error(lambda: read_copa_xml(path), [path])


@FUZZ
@given(data=COPA_JSONL_IN)
def test_copa_jsonl_reader(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "copa.jsonl", data)
    loads_or_data_error(lambda: read_copa_jsonl(path), [path])


@FUZZ
@given(data=CHOICES_IN)
def test_generic_choices_reader(workdir: Path, data: bytes) -> None:
    path = _write(_fresh_dir(workdir), "choices.jsonl", data)
    loads_or_data_error(lambda: read_choices_jsonl(path), [path])


@FUZZ
@given(data=st.one_of(COPA_JSONL_IN, CHOICES_IN, STORY_IN, COPA_XML_IN),
       name=st.sampled_from(["m.jsonl", "m.json", "m.csv", "m.xml", "m.txt"]),
       dataset=st.sampled_from(["auto", "story_cloze", "copa", "generic"]))  # fmt: skip
def test_multiple_choice_auto_reader(workdir: Path, data: bytes, name: str, dataset: str) -> None:
    path = _write(_fresh_dir(workdir), name, data)
    loads_or_data_error(lambda: read_multiple_choice(path, dataset), [path])  # type: ignore[arg-type]


# ============================================================================================= MLM collator
VOCAB, N_SPECIAL, MASK_ID = 60, 7, 4


@st.composite
def mlm_batches(draw: st.DrawFn) -> list[list[int]]:
    """Arbitrary batches: sequences of words and ## pieces with special tokens anywhere, at least 12 maskable
    tokens in all."""
    seqs = draw(st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=40), min_size=1, max_size=6))
    maskable = sum(t >= N_SPECIAL for s in seqs for t in s)
    if maskable < 12:
        seqs.append(draw(st.lists(st.integers(N_SPECIAL, VOCAB - 1), min_size=12 - maskable, max_size=20)))
    return seqs


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seqs=mlm_batches(), p=st.sampled_from([0.15, 0.3, 0.5]), wwm=st.booleans(), seed=st.integers(0, 2**31))
def test_mlm_replacement_shares_hold_on_arbitrary_batches(seqs: list[list[int]], p: float, wwm: bool, seed: int):
    """Many draws on the same batch (its sequences repeated with different keys, in one call): of the chosen tokens
    80% become [MASK], 10% a random non-special token, 10% stay (a random replacement may draw the original token:
    1/|replacements| of the 10%); labels only at chosen positions, never at special tokens or padding, always the
    original token; every sequence with a maskable token has a target."""
    cont = np.arange(VOCAB) >= 40  # ids 40.. are ## pieces
    coll = MLMCollator(pad_id=0, mask_id=MASK_ID, vocab_size=VOCAB, special_ids=range(N_SPECIAL), mlm_probability=p,
                       whole_word_masking=wwm, continuation_mask=cont, seed=seed)  # fmt: skip
    n_maskable = sum(t >= N_SPECIAL for s in seqs for t in s)
    copies = min(2000, -(-4000 // max(1, round(p * n_maskable))))  # about 4000 chosen tokens (fewer with wwm)
    rows = [s for _ in range(copies) for s in seqs]
    batch = coll([{"input_ids": s, "key": i} for i, s in enumerate(rows)])
    T = batch["input_ids"].shape[1]
    ids = torch.tensor([s + [0] * (T - len(s)) for s in rows], dtype=torch.long)
    maskable = ids >= N_SPECIAL
    chosen = batch["labels"] != -100
    assert not (chosen & ~maskable).any()
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])
    assert (chosen.sum(1) >= (maskable.sum(1) > 0).long()).all()
    got, orig = batch["input_ids"][chosen], ids[chosen]
    assert (got[got != MASK_ID] >= N_SPECIAL).all()  # replacements are never special tokens
    counts = {
        "mask": int((got == MASK_ID).sum()),
        "same": int((got == orig).sum()),
        "random": int(((got != MASK_ID) & (got != orig)).sum()),
    }
    total = sum(counts.values())
    assert total >= 500
    n_repl = VOCAB - N_SPECIAL
    expected = {"mask": 0.8, "random": 0.1 * (1 - 1 / n_repl), "same": 0.1 + 0.1 / n_repl}
    for kind, share in expected.items():
        tolerance = 5 * (share * (1 - share) / total) ** 0.5  # 5 standard errors
        assert abs(counts[kind] / total - share) < tolerance, (kind, counts, total)


@pytest.mark.parametrize(
    ("reader", "name", "data", "message"),
    [
        (read_nli_tsv, "bom.tsv", b"\xef\xbb\xbf", "file is empty"),  # was StopIteration
        (read_nli_tsv, "spaces.tsv", "\u3000\n\u00a0\n".encode(), "file is empty"),  # Unicode spaces only
        (read_story_cloze, "bom.csv", b"\xef\xbb\xbf\n", "file is empty"),  # was StopIteration
        (read_copa_xml, "enc.xml", COPA_XML.replace(b'encoding="utf-8"', b'encoding="tf-8"'), None),  # LookupError
        (read_copa_xml, "latin.xml", COPA_XML.replace(b'encoding="utf-8"', b'encoding="latin-1"'), None),
    ],
)
def test_inputs_that_fuzzing_broke(workdir: Path, reader: Callable[[Path], Any], name: str, data: bytes,
                                   message: str | None) -> None:  # fmt: skip
    path = _write(_fresh_dir(workdir), name, data)
    if message is None:  # declared encodings are overridden: the files are read as UTF-8, as documented
        assert len(reader(path).examples) == 2
    else:
        with pytest.raises(DataError, match=message):
            reader(path)


def test_fuzz_harness_catches_a_foreign_exception(workdir: Path) -> None:
    """The harness itself: an exception other than DataError fails the property."""
    path = _write(_fresh_dir(workdir), "x.txt", b"x")
    with pytest.raises(ValueError):
        loads_or_data_error(lambda: int("x"), [path])
    with pytest.raises(AssertionError, match="does not name the file"):
        loads_or_data_error(lambda: (_ for _ in ()).throw(DataError("no file named")), [path])
