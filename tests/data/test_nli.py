"""NLI readers, formatting, batching, NLIDataModule and the built-in NLI dataset."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_lm.data.core.samplers import LengthGroupedSampler
from lit_lm.data.core.splits import holdout_split
from lit_lm.data.finetuning.builtin import NLI_SIZES, builtin_nli
from lit_lm.data.finetuning.encoding import NLICollator, encode_pairs, truncate_longest_first
from lit_lm.data.finetuning.examples import NLI_LABELS, NLI_LABELS_2WAY, NO_GOLD_LABEL, LabelVocab, NLIExample
from lit_lm.data.finetuning.nli import (
    NLIDataModule,
    read_nli,
    read_nli_infersent,
    read_nli_jsonl,
    read_nli_tsv,
    tokenize_nli,
)
from lit_lm.errors import DataError

try:
    from .fixtures_tasks import oracle, shared_data, shared_file, small_tokenizer, write
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    from fixtures_tasks import oracle, shared_data, shared_file, small_tokenizer, write

E, N, C = 0, 1, 2


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# --------------------------------------------------------------------------------------------------- readers
def test_simplified_jsonl_string_and_int_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write(
        tmp_path / "dev.jsonl",
        jsonl(
            {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": "entailment"},
            {"premise": "A dog runs.", "hypothesis": "A cat sleeps.", "label": "CONTRADICTION"},
            {"premise": "A dog runs.", "hypothesis": "A dog runs fast.", "label": 1},
            {"premise": "A dog runs.", "hypothesis": "Unlabelled.", "label": -1},
        )
        + "\n",  # a trailing blank line is fine
    )
    with caplog.at_level(logging.INFO):
        examples, skipped = read_nli_jsonl(f)
    assert [e.label for e in examples] == [E, C, N]
    assert examples[0] == NLIExample("A dog runs.", "An animal moves.", E, f"{f}:1")
    assert sum(skipped.values()) == 1
    assert "skipped 1" in caplog.text and "dev.jsonl" in caplog.text


def test_snli_official_jsonl_skips_and_counts_dash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = {"annotator_labels": ["neutral"], "pairID": "1", "sentence1_parse": "(ROOT)", "genre": "x"}
    f = write(
        tmp_path / "snli_1.0_dev.jsonl",
        jsonl(
            {**rec, "sentence1": "A man.", "sentence2": "A person.", "gold_label": "entailment"},
            {**rec, "sentence1": "A man.", "sentence2": "A cat.", "gold_label": "-"},
            {**rec, "sentence1": "A man.", "sentence2": "A tall man.", "gold_label": "neutral"},
            {**rec, "sentence1": "A man.", "sentence2": "A woman.", "gold_label": "-"},
        ),
    )
    with caplog.at_level(logging.WARNING):
        res = read_nli(f)
    assert [e.label for e in res.examples] == [E, N]
    assert res.n_skipped == 2 and list(res.skipped.values()) == [2]
    assert "skipped 2" in caplog.text


def test_tsv_columns_found_by_header_name(tmp_path: Path) -> None:
    f = write(
        tmp_path / "train.tsv",
        "index\tgold_label\tsentence2\tsentence1\textra\n"
        '0\tneutral\tA "quoted" hypothesis.\tA premise.\tx\n'
        "1\t-\tB.\tA.\tx\n"
        "2\tcontradiction\tC.\tD.\tx\n",
    )
    res = read_nli_tsv(f)
    assert [(e.premise, e.hypothesis, e.label) for e in res.examples] == [
        ("A premise.", 'A "quoted" hypothesis.', N),
        ("D.", "C.", C),
    ]
    assert res.n_skipped == 1
    assert res.examples[1].source == f"{f}:4"


def test_sick_tsv_crlf_upper_case(tmp_path: Path) -> None:
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    f = write(
        tmp_path / "SICK.txt",
        f"{header}\r\n1\tA kid plays.\tA child plays.\tENTAILMENT\t4.5\tTRAIN\r\n"
        "2\tA kid plays.\tNobody plays.\tCONTRADICTION\t3.0\tTRIAL\r\n",
    )
    res = read_nli(f)  # auto: .txt -> sniffed as TSV
    assert [(e.hypothesis, e.label) for e in res.examples] == [("A child plays.", E), ("Nobody plays.", C)]


def test_infersent_parallel_files(tmp_path: Path) -> None:
    write(tmp_path / "s1.test", "A man sleeps . \nA dog runs . \n")
    write(tmp_path / "s2.test", "A person rests . \nA cat sleeps . \n")
    write(tmp_path / "labels.test", "entailment\ncontradiction\n")
    for path in (tmp_path, tmp_path / "s1.test", tmp_path / "labels.test"):
        res = read_nli(path)
        assert [(e.premise, e.hypothesis, e.label) for e in res.examples] == [
            ("A man sleeps .", "A person rests .", E),
            ("A dog runs .", "A cat sleeps .", C),
        ]


def test_two_way_labels(tmp_path: Path) -> None:
    f = write(
        tmp_path / "rte.jsonl",
        jsonl(
            {"premise": "P.", "hypothesis": "H.", "label": "not_entailment", "tag": "train"},
            {"premise": "P.", "hypothesis": "H.", "label": "entailment", "tag": "dev"},
        ),
    )
    assert [e.label for e in read_nli(f, NLI_LABELS_2WAY).examples] == [1, 0]
    with pytest.raises(DataError, match=r"rte\.jsonl:1: unknown label 'not_entailment'.*entailment, neutral"):
        read_nli(f)


def test_label_vocab() -> None:
    v = LabelVocab(["Yes", "No"])
    assert v.lookup(" yes ", "f", 1) == 0 and v.lookup("NO", "f", 1) == 1 and v.lookup(1, "f", 1) == 1
    assert v.lookup("-", "f", 1) is None and v.lookup(-1, "f", 1) is None
    with pytest.raises(DataError, match="f:7: unknown label True"):
        v.lookup(True, "f", 7)
    with pytest.raises(DataError, match="distinct"):
        LabelVocab(["a", "A"])


BAD_NLI = [
    ("a.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": 0}) + '{"premise": "p",\n', 2, "malformed JSON"),
    ("a.jsonl", "[1, 2]\n", 1, "expected a JSON object"),
    ("a.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": 0}, {"premise": "p", "label": 1}), 2,
     "missing field 'hypothesis'"),
    ("a.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": 0}, {"premise": "p", "hypothesis": "h",
     "label": 0}, {"premise": "p", "hypothesis": "h", "label": "maybe"}), 3,
     "unknown label 'maybe'; allowed: entailment, neutral, contradiction"),
    ("a.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": 7}), 1, "unknown label 7"),
    ("a.jsonl", jsonl({"premise": None, "hypothesis": "h", "label": 0}), 1, "'premise' must be a string"),
    ("a.jsonl", jsonl({"text": "p", "label": 0}), 1, "unrecognised NLI record"),
    ("a.jsonl", jsonl({"premise": "p", "hypothesis": "h", "label": 0}).encode() + b'{"premise": "caf\xe9"}\n', 2,
     "not valid UTF-8"),
    ("a.tsv", "sentence1\tsentence2\tgold_label\np\th\tneutral\np\th\n", 3, "expected 3 tab-separated columns"),
    ("a.tsv", "sentence1\tsentence2\tscore\np\th\t1\n", 1, "header has no label column"),
    ("a.tsv", "sentence1\tsentence2\tgold_label\n", 1, "no examples"),
    ("SICK.txt", "sentence_A\tsentence_B\tentailment_label\r\na\tb\tUNKNOWN\r\n", 2, "unknown label 'UNKNOWN'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_NLI)
def test_bad_nli_input_names_file_and_line(tmp_path: Path, name: str, content, line: int, message: str) -> None:
    f = write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        read_nli(f)
    assert f"{name}:{line}: " in str(err.value) and message in str(err.value)
    assert err.value.line == line and err.value.path == str(f)


def test_missing_empty_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        read_nli(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"empty\.jsonl: file is empty"):
        read_nli(write(tmp_path / "empty.jsonl", "\n \n"))
    with pytest.raises(DataError, match=r"plain\.txt: cannot tell the file format.*reader: jsonl, tsv"):
        read_nli(write(tmp_path / "plain.txt", "just words\n"))
    all_dash = write(tmp_path / "dash.jsonl", jsonl({"sentence1": "a", "sentence2": "b", "gold_label": "-"}))
    with pytest.raises(DataError, match=r"dash\.jsonl: no examples \(all 1 records skipped"):
        read_nli(all_dash)


def test_infersent_files_must_be_parallel(tmp_path: Path) -> None:
    write(tmp_path / "s1.dev", "a\nb\nc\n")
    write(tmp_path / "s2.dev", "a\nb\nc\n")
    write(tmp_path / "labels.dev", "neutral\nneutral\n")
    with pytest.raises(DataError, match=r"labels\.dev:3: has 2 lines but s1\.dev has 3"):
        read_nli_infersent(tmp_path)
    write(tmp_path / "s1.test", "a\n")
    with pytest.raises(DataError, match="holds 2 InferSent splits"):
        read_nli_infersent(tmp_path)


# --------------------------------------------------------------------------------------------------- formatting
def naive_truncate(a: int, b: int, budget: int) -> tuple[int, int]:
    while a + b > budget:
        if a > b:
            a -= 1
        else:
            b -= 1
    return a, b


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 80))
def test_truncate_longest_first_matches_the_loop(a: int, b: int, budget: int) -> None:
    assert truncate_longest_first(a, b, budget) == naive_truncate(a, b, budget)


def test_decoder_format_layout() -> None:
    tok = small_tokenizer()
    a, b = "A dog is running.", "An animal is moving."
    enc = encode_pairs(tok, [a], [b], "decoder", start_token=True, max_seq_length=64)
    seq = enc.sequence(0).tolist()
    ids_a, ids_b = tok.encode(a), tok.encode(b)
    assert seq == [tok.cls_id, *ids_a, tok.delim_id, *ids_b, tok.extract_id]
    assert enc.extract_positions[0] == len(seq) - 1 and enc.segment_starts[0] == len(seq)
    enc = encode_pairs(tok, [a], [b], "decoder", start_token=False, max_seq_length=64)
    assert enc.sequence(0).tolist() == [*ids_a, tok.delim_id, *ids_b, tok.extract_id]


def test_encoder_format_layout_and_segments() -> None:
    tok = small_tokenizer()
    ds = tokenize_nli([NLIExample("A dog is running.", "A cat is sleeping.", C)], tok, "encoder", max_seq_length=64)
    batch = NLICollator(tok.pad_id)([ds[0]])
    ids, types = batch["input_ids"][0].tolist(), batch["token_type_ids"][0].tolist()
    la, lb = len(tok.encode("A dog is running.")), len(tok.encode("A cat is sleeping."))
    assert ids[0] == tok.cls_id and ids[la + 1] == tok.sep_id and ids[-1] == tok.sep_id
    assert types == [0] * (la + 2) + [1] * (lb + 1)
    assert batch["extract_positions"].tolist() == [0] and batch["labels"].tolist() == [C]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=6),
    st.integers(5, 40),
    st.sampled_from(["decoder", "encoder"]),
    st.booleans(),
)
def test_truncation_never_exceeds_and_keeps_special_tokens(lengths, max_len, fmt, start) -> None:
    tok = small_tokenizer()
    words = "dog cat man woman park beach".split()
    firsts = [" ".join(words[i % 6] for i in range(la)) for la, _ in lengths]
    seconds = [" ".join(words[(i + 3) % 6] for i in range(lb)) for _, lb in lengths]
    enc = encode_pairs(tok, firsts, seconds, fmt, start, max_len)
    n_special = 3 if fmt == "encoder" or start else 2
    for i, (la, lb) in enumerate(lengths):
        seq = enc.sequence(i).tolist()
        assert len(seq) == min(max_len, la + lb + n_special)
        if fmt == "decoder":
            assert seq[-1] == tok.extract_id and seq.count(tok.delim_id) == 1
            assert enc.extract_positions[i] == len(seq) - 1
            assert (seq[0] == tok.cls_id) == start
        else:
            assert seq[0] == tok.cls_id and seq[-1] == tok.sep_id and seq.count(tok.sep_id) == 2
            assert seq[enc.segment_starts[i] - 1] == tok.sep_id
    assert enc.n_truncated == sum(la + lb + n_special > max_len for la, lb in lengths)


def test_max_seq_length_too_small_names_the_setting(tok_path: str) -> None:
    with pytest.raises(DataError, match=r"max_seq_length=4 is too small.*max_seq_length >= 5"):
        encode_pairs(small_tokenizer(), ["a"], ["b"], "decoder", True, 4)
    with pytest.raises(DataError, match="max_seq_length"):
        NLIDataModule(tokenizer=tok_path, max_seq_length=3)  # checked before any data is read


def test_decoder_format_needs_delim_and_extract(tmp_path: Path) -> None:
    vocab = write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog"]) + "\n")
    dm = NLIDataModule(tokenizer=str(vocab), format="decoder")  # construction reads no file
    with pytest.raises(DataError, match=r"vocab\.txt: the GPT-style task format needs \[DELIM\]"):
        dm.prepare_data()
    dm = NLIDataModule(tokenizer=str(vocab), format="encoder")  # BERT vocab: the encoder format works
    assert dm.pad_token_id == 0 and dm.vocab_size == 7


# --------------------------------------------------------------------------------------------------- batching
def test_collate_pads_dynamically() -> None:
    tok = small_tokenizer()
    examples = [NLIExample("A dog is running.", "An animal is moving.", E),
                NLIExample("A tall man is sleeping in the park at night.", "A man is resting.", N)]  # fmt: skip
    ds = tokenize_nli(examples, tok, "decoder", max_seq_length=64)
    lengths = [len(ds[i]["input_ids"]) for i in range(2)]
    batch = NLICollator(tok.pad_id)([ds[0], ds[1]])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "extract_positions", "labels"}
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert (batch["input_ids"][short, lengths[short] :] == tok.pad_id).all()
    assert (batch["token_type_ids"] == 0).all()
    rows = torch.arange(2)
    assert (batch["input_ids"][rows, batch["extract_positions"]] == tok.extract_id).all()
    single = NLICollator(tok.pad_id)([ds[0]])
    assert single["input_ids"].shape == (1, lengths[0])  # padded per batch, not to max_seq_length


def test_length_grouped_sampler() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    s = LengthGroupedSampler(lengths, batch_size=16, seed=3, mega_batches=8)
    order = list(s)
    assert sorted(order) == list(range(1000))
    assert order == list(LengthGroupedSampler(lengths, batch_size=16, seed=3, mega_batches=8))  # deterministic
    s.set_epoch(1)
    assert list(s) != order and sorted(s) == list(range(1000))
    assert lengths[order[:16]].max() == lengths.max()  # the longest batch comes first

    def padding(idx: list[int]) -> int:
        batches = [idx[i : i + 16] for i in range(0, len(idx), 16)]  # as DataLoader(batch_size=16) cuts them
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)

    assert padding(order) < 0.25 * padding(list(rng.permutation(1000)))


def test_length_grouped_sampler_shards_ranks() -> None:
    lengths = np.random.default_rng(1).integers(5, 200, size=1001)
    ranks = [list(LengthGroupedSampler(lengths, 8, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 501 == len(LengthGroupedSampler(lengths, 8, num_replicas=2, rank=1))
    assert set(ranks[0]) | set(ranks[1]) == set(range(1001))
    for order in ranks:  # each rank's batches of 8 hold similar lengths
        spread = [np.ptp(lengths[order[i : i + 8]]) for i in range(0, 496, 8)]
        assert np.mean(spread) < 20


def test_holdout_split_is_deterministic_and_disjoint() -> None:
    tr, va = holdout_split(100, 0.05, seed=1)
    assert len(va) == 5 and len(tr) == 95 and not set(tr) & set(va)
    assert np.array_equal(va, holdout_split(100, 0.05, seed=1)[1])
    assert not np.array_equal(va, holdout_split(100, 0.05, seed=2)[1])
    with pytest.raises(DataError, match="val_fraction"):
        holdout_split(100, 1.5, 0)


# --------------------------------------------------------------------------------------------------- datamodule
@pytest.fixture(scope="module")
def tok_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The small tokenizer saved as a tokenizer.json, as a user would pass it."""
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    small_tokenizer().hf.save(str(path))
    return str(path)


def test_datamodule_builtin_end_to_end(tmp_path: Path) -> None:
    dm = NLIDataModule(batch_size=8, cache_dir=str(tmp_path))
    assert not (tmp_path / "tokenizers").exists()  # construction trains nothing: prepare_data does
    with pytest.warns(UserWarning, match="normally passes the pretraining tokenizer"):
        dm.prepare_data()
    assert dm.num_labels == 3 and dm.label_names == list(NLI_LABELS) and dm.format == "decoder"
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.pad_token_id == 0
    cached = list((tmp_path / "tokenizers").glob("wordpiece-*.json"))
    assert len(cached) == 1
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    t = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape == (8, t)
    assert batch["extract_positions"].shape == batch["labels"].shape == (8,)
    assert (batch["input_ids"][torch.arange(8), batch["extract_positions"]] == dm.tokenizer.extract_id).all()
    val = next(iter(dm.val_dataloader()))
    assert val["labels"].shape == (8,) and val["labels"].max() <= 2
    assert dm.stats["train"]["examples"] == NLI_SIZES["train"] and dm.stats["val"]["examples"] == NLI_SIZES["val"]
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == NLI_SIZES["test"]
    # a second module reuses the cached tokenizer (same ids)
    again = NLIDataModule(cache_dir=str(tmp_path))
    with pytest.warns(UserWarning):
        assert again.tokenizer.fingerprint == dm.tokenizer.fingerprint
    assert list((tmp_path / "tokenizers").glob("wordpiece-*.json")) == cached


def test_datamodule_files_holdout_and_determinism(tmp_path: Path, tok_path: str) -> None:
    records = [{"premise": f"A dog is running {i}.", "hypothesis": "An animal is moving.", "label": i % 3}
               for i in range(40)]  # fmt: skip
    train = write(tmp_path / "train.jsonl", jsonl(*records))
    tsv = write(tmp_path / "test.tsv", "sentence1\tsentence2\tgold_label\nA man.\tA person.\tentailment\n")
    kw = dict(train_files=[str(train)], test_files=[str(tsv)], tokenizer=tok_path, batch_size=4, format="encoder")
    dm1, dm2 = NLIDataModule(**kw), NLIDataModule(**kw)
    for dm in (dm1, dm2):
        dm.setup("fit")
    assert dm1.stats["train"]["examples"] == 38 and dm1.stats["val"]["examples"] == 2
    train_src, val_src = {e.source for e in dm1.examples("train")}, {e.source for e in dm1.examples("val")}
    assert len(train_src | val_src) == 40 and {e.source for e in dm2.examples("val")} == val_src
    b1, b2 = next(iter(dm1.train_dataloader())), next(iter(dm2.train_dataloader()))
    assert all(torch.equal(b1[k], b2[k]) for k in b1)  # seeded shuffling
    assert b1["token_type_ids"].max() == 1 and (b1["extract_positions"] == 0).all()
    dm1.setup("test")
    assert next(iter(dm1.test_dataloader()))["labels"].tolist() == [E]


def test_extra_train_files_join_training_only(tmp_path: Path, tok_path: str) -> None:
    """Extra files add training examples (skipped records counted with the split) and leave the validation
    hold-out exactly as without them, so runs with different extra data compare on the same examples."""
    records = [{"premise": f"A dog is running {i}.", "hypothesis": "An animal is moving.", "label": i % 3}
               for i in range(40)]  # fmt: skip
    train = write(tmp_path / "train.jsonl", jsonl(*records))
    extra = write(tmp_path / "extra.jsonl", jsonl(*[{"premise": f"A cat {i}.", "hypothesis": "A pet.", "label": 0}
                                                    for i in range(7)], {"premise": "x", "hypothesis": "y",
                                                                         "label": -1}))  # fmt: skip
    kw = dict(train_files=[str(train)], tokenizer=tok_path, batch_size=4, format="encoder")
    base, more = NLIDataModule(**kw), NLIDataModule(**kw, extra_train_files=[str(extra)])
    for dm in (base, more):
        dm.setup("fit")
    assert [e.source for e in more.examples("val")] == [e.source for e in base.examples("val")]
    assert more.stats["train"]["examples"] == base.stats["train"]["examples"] + 7 == 45
    assert more.stats["train"]["skipped"] == {NO_GOLD_LABEL: 1}
    extra_sources = {e.source for e in more.examples("train")} - {e.source for e in base.examples("train")}
    assert len(extra_sources) == 7 and all("extra.jsonl" in s for s in extra_sources)
    assert not extra_sources & {e.source for e in more.examples("val")}
    assert base._tokenizer_key() == NLIDataModule(**kw)._tokenizer_key() != more._tokenizer_key()
    # a tokenizer trained here learns from the training split, so the hold-out is part of its cache key
    assert base._cache_key() != NLIDataModule(**{**kw, "seed": 7})._cache_key()
    assert base._cache_key() != NLIDataModule(**kw, val_fraction=0.1)._cache_key()
    assert NLIDataModule(**kw, val_files=[str(train)])._cache_key() == base._tokenizer_key()
    with pytest.raises(DataError, match="extra_train_files adds to train_files"):
        NLIDataModule(extra_train_files=[str(extra)], tokenizer=tok_path)
    with pytest.raises(DataError, match=r"gone\.jsonl: file not found"):
        NLIDataModule(**kw, extra_train_files=[str(tmp_path / "gone.jsonl")])
    for setting in ("train_files", "val_files", "test_files"):
        with pytest.raises(DataError, match=f"in both extra_train_files and {setting}"):
            NLIDataModule(**{**kw, setting: [str(extra)]}, extra_train_files=[str(tmp_path / "." / "extra.jsonl")])


def test_datamodule_group_by_length_and_errors(tmp_path: Path, tok_path: str) -> None:
    tok = tok_path
    dm = NLIDataModule(tokenizer=tok, batch_size=16, group_by_length=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    batch = next(iter(loader))
    assert batch["attention_mask"].sum(1).min() >= batch["input_ids"].shape[1] - 6  # similar lengths
    train = write(tmp_path / "t.jsonl", jsonl(*[{"premise": "a", "hypothesis": "b", "label": 0}] * 4))
    with pytest.raises(DataError, match="no test_files set"):
        NLIDataModule(train_files=[str(train)], tokenizer=tok).test_dataloader()
    with pytest.raises(DataError, match="built-in NLI dataset.*3-way"):
        NLIDataModule(tokenizer=tok, labels=list(NLI_LABELS_2WAY))
    with pytest.raises(DataError, match=r"missing\.jsonl: file not found"):
        NLIDataModule(train_files=[str(tmp_path / "missing.jsonl")], cache_dir=str(tmp_path))


# --------------------------------------------------------------------------------------------------- built-in
def test_builtin_nli_labels_are_correct_and_balanced() -> None:
    splits = {s: builtin_nli(s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in splits.items()} == NLI_SIZES
    names = NLI_LABELS
    for examples in splits.values():
        for e in examples:
            assert oracle(e.premise, e.hypothesis) == names[e.label], (e.premise, e.hypothesis, names[e.label])
    counts = Counter(e.label for e in splits["train"])
    assert min(counts.values()) > 0.3 * len(splits["train"])
    pairs = [{(e.premise, e.hypothesis) for e in v} for v in splits.values()]
    assert sum(len(p) for p in pairs) == len(set().union(*pairs))  # unique and disjoint splits
    assert builtin_nli("val") == splits["val"]  # deterministic


def test_builtin_nli_spot_checks() -> None:
    assert oracle("A black dog is sprinting in the park.", "An animal is moving outdoors.") == "entailment"
    assert oracle("A dog is running.", "A dog is sprinting.") == "neutral"
    assert oracle("A dog is running.", "A brown dog is running.") == "neutral"
    assert oracle("A dog is running in the kitchen.", "A dog is running on the beach.") == "contradiction"
    assert oracle("A tall man is sleeping.", "A short person is resting.") == "contradiction"


# --------------------------------------------------------------------------------------------------- real data
REAL_NLI = [
    ("snli/dev.jsonl", NLI_LABELS, (3329, 3235, 3278)),
    ("mnli/dev.jsonl", NLI_LABELS, (3479, 3123, 3213)),
    ("sick/SICK_train_trial.txt", NLI_LABELS, (1417, 2805, 712)),
    ("snli-test-tokenized", NLI_LABELS, (3368, 3219, 3237)),
    ("breaking-nli/dataset.jsonl", NLI_LABELS, (982, 47, 7164)),
    ("anli/test.jsonl", NLI_LABELS, (1070, 1068, 1062)),
    ("rte/test.jsonl", NLI_LABELS_2WAY, (1395, 1372)),
    ("scitail/test.jsonl", NLI_LABELS_2WAY, (842, 1284)),
]


@pytest.mark.parametrize(("relative", "labels", "counts"), REAL_NLI, ids=[r[0].split("/")[0] for r in REAL_NLI])
def test_real_nli_files(relative: str, labels, counts) -> None:
    res = read_nli(shared_file(relative), labels)
    assert tuple(Counter(e.label for e in res.examples)[i] for i in range(len(labels))) == counts
    assert res.n_skipped == 0  # these copies already dropped the '-' pairs (see their SOURCE.md)
    assert all(e.premise and e.hypothesis for e in res.examples)


def test_real_snli_first_pairs() -> None:
    snli = read_nli(shared_file("snli/dev.jsonl")).examples
    assert snli[0].premise == "Two women are embracing while holding to go packages." and snli[0].label == N
    tokenized = read_nli(shared_file("snli-test-tokenized/s2.test")).examples
    assert tokenized[0].hypothesis == "The church has cracks in the ceiling ." and tokenized[0].label == N


@pytest.mark.parametrize(("folder", "sizes"), [("all_combined", (8330, 1000, 2000)), ("original", (1666, 200, 400))])
def test_real_counterfactual_snli(folder: str, sizes: tuple[int, int, int]) -> None:
    base = shared_data() / "counterfactual-snli" / folder
    got = tuple(len(read_nli(base / f"{split}.tsv")) for split in ("train", "dev", "test"))
    assert got == sizes


def test_real_data_tokenized_within_max_length(caplog: pytest.LogCaptureFixture) -> None:
    examples = read_nli(shared_file("anli/test.jsonl")).examples[:400]
    with caplog.at_level(logging.INFO):
        ds = tokenize_nli(examples, small_tokenizer(), "decoder", max_seq_length=48, name="anli")
    assert ds.lengths.max() <= 48 and ds.encoded.n_truncated > 0
    assert "anli: truncated" in caplog.text


def test_real_files_in_a_datamodule(tok_path: str) -> None:
    dm = NLIDataModule(
        train_files=[str(shared_file("counterfactual-snli/original/train.tsv"))],
        val_files=[str(shared_file("counterfactual-snli/original/dev.tsv"))],
        test_files=[str(shared_file("snli-test-tokenized"))],
        tokenizer=tok_path,
        batch_size=32,
        max_seq_length=64,
    )
    dm.setup("fit")
    dm.setup("test")
    assert dm.stats["train"]["examples"] == 1666 and dm.stats["val"]["examples"] == 200
    assert dm.stats["test"]["examples"] == 9824
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[0] == 32 and batch["input_ids"].shape[1] <= 64
