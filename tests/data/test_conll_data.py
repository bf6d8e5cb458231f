"""Token classification data: CoNLL-2003 as published (IOB1 -> BIO2 keeps every entity), the other readers, bad input
named by file:line, word-to-token alignment for WordPiece and byte-level BPE, windows of long sentences, predictions
mapped back to one tag per word, and the conlleval file round trip."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_tasks import shared_file, write
from seqeval.metrics.sequence_labeling import get_entities

from lit_lm.config import IGNORE_INDEX
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.finetuning.conll import (
    TaggedSentence,
    _ner_pool,
    builtin_token_classification,
    check_bio2,
    default_labels,
    iob1_to_bio2,
    read_conll,
    read_tagged,
    write_conll,
)
from lit_lm.data.finetuning.token_classification import TokenClassificationDataModule, align_words
from lit_lm.errors import DataError

CONLL = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O\n\n"
HF_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # Hugging Face's order
SENTENCES = [
    TaggedSentence(("Peter", "Blackburn", "visited", "Rio", "de", "Janeiro", "."), ("B-PER", "I-PER", "O", "B-LOC",
                   "I-LOC", "I-LOC", "O")),
    TaggedSentence(("Café", "Zürich", "(", "1996-08-22", ")", "n't", "U.S.", "Ünïcödé"), ("B-ORG", "I-ORG", "O", "O",
                   "O", "O", "B-LOC", "B-MISC")),
    TaggedSentence(("Germany", "France", "Smith-Jones", "'s", "supercalifragilistic"), ("B-LOC", "B-LOC", "B-PER",
                   "O", "O")),
]  # fmt: skip


def _tokenizer(kind: str) -> Tokenizer:
    texts = [" ".join(s.words) for s in builtin_token_classification("train")[:500]]
    return Tokenizer.train_from_texts(texts * 2, vocab_size=400 if kind == "wordpiece" else 600, kind=kind)


@pytest.fixture(scope="module", params=["wordpiece", "bpe"])
def tok_path(request, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp(f"tok_{request.param}") / "tok.json"
    _tokenizer(request.param).save(path)
    return str(path)


def _jsonl(path: Path, sentences, labels=None) -> str:
    ids = {n: i for i, n in enumerate(labels or [])}
    rows = [{"tokens": list(s.words), "ner_tags": [ids[t] if labels else t for t in s.tags]} for s in sentences]
    return str(write(path, "".join(json.dumps(r) + "\n" for r in rows)))


def _excerpt(path: Path, n_sentences: int, out: Path) -> str:
    """The first ``n_sentences`` sentences of a CoNLL file, as published (IOB1, -DOCSTART- lines)."""
    lines, seen, prev = [], 0, ""
    for line in path.read_text().splitlines():
        lines.append(line)
        if not line and prev and not prev.startswith("-DOCSTART-"):
            seen += 1
            if seen == n_sentences:
                break
        prev = line
    return str(write(out, "\n".join(lines) + "\n"))


# --------------------------------------------------------------------------------------------------- tag schemes
def test_iob1_to_bio2_keeps_every_entity_of_eng_testa():
    sentences = read_conll(shared_file("conll2003/eng.testa")).examples
    assert len(sentences) == 3250 and sum(len(s.words) for s in sentences) == 51362
    counts = Counter(kind for s in sentences for kind, _, _ in get_entities(list(s.tags)))
    assert counts == {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}  # the published figures
    assert sum(counts.values()) == 5942
    for s in sentences:  # BIO2: every entity starts with B-, and the tags are a fixed point of the conversion
        assert all(s.tags[start].startswith("B-") for _, start, _ in get_entities(list(s.tags)))
        assert iob1_to_bio2(s.tags) == list(s.tags) == check_bio2(s.tags)


def test_iob1_to_bio2_rules():
    assert iob1_to_bio2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "B-MISC"]) == [
        "B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-MISC"
    ]  # fmt: skip
    for bad in (["O", "X-PER"], ["B-"], ["E-PER"], ["I"], ["per"]):
        with pytest.raises(DataError, match="malformed tag"):
            iob1_to_bio2(bad)
    with pytest.raises(DataError, match="tag 2 of the sentence.*in BIO2 an entity starts with B-"):
        check_bio2(["O", "I-PER"])


def test_default_labels_put_o_first_and_both_prefixes_of_every_type():
    assert default_labels(SENTENCES) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


# --------------------------------------------------------------------------------------------------- readers
def test_read_conll_skips_documents_and_empty_sentences(tmp_path):
    text = CONLL + "\n\n-DOCSTART- -X- O O\n\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
    result = read_conll(write(tmp_path / "a.conll", text))
    assert [s.words for s in result.examples] == [("EU", "rejects", "German", "call"), ("Peter", "Blackburn")]
    assert [s.tags for s in result.examples] == [("B-ORG", "O", "B-MISC", "O"), ("B-PER", "I-PER")]
    assert result.examples[1].source.endswith("a.conll:13")


@pytest.mark.parametrize(
    "name, content, reader, line, message",
    [
        ("cols.txt", CONLL.replace("call NN I-NP O", "call NN O"), "conll", 6, "found 3 columns.*line \\(3\\) has 4"),
        ("unknown.txt", CONLL.replace("I-MISC", "I-FOO"), "conll", 5, "unknown tag 'I-FOO'"),
        ("iobes.txt", CONLL.replace("I-MISC", "E-MISC"), "conll", 5, "malformed tag 'E-MISC'"),
        ("bad.jsonl", '{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["b"], "ner_tags": \n', "jsonl", 2,
         "malformed JSON"),
        ("field.jsonl", '{"tokens": ["a"], "ner_tags": ["O"]}\n\n{"tokens": ["b"], "tags": ["O"]}\n', "jsonl", 3,
         "no 'ner_tags' field"),
        ("length.jsonl", '{"tokens": ["a", "b"], "ner_tags": ["O"]}\n', "jsonl", 1, "2 words but 1 tags"),
        ("ids.jsonl", '{"tokens": ["a"], "ner_tags": [12]}\n', "jsonl", 1, "tag id 12 is outside labels"),
        ("two.txt", "a NN O\nb O\n", "two_column", 1, "found 3 columns; expected 2"),
    ],
)  # fmt: skip
def test_bad_input_is_one_data_error_naming_file_and_line(tmp_path, name, content, reader, line, message):
    path = write(tmp_path / name, content)
    labels = HF_LABELS if name in ("unknown.txt", "ids.jsonl") else None
    with pytest.raises(DataError, match=message) as e:
        read_tagged(path, "auto" if name != "two.txt" else reader, labels=labels)
    assert e.value.path == str(path) and e.value.line == line
    assert str(e.value).startswith(f"{path}:{line}: ")


def test_unknown_tag_in_a_test_file_is_named_against_the_training_labels(tmp_path):
    train = write(tmp_path / "train.txt", CONLL)
    test = write(tmp_path / "test.txt", CONLL.replace("I-MISC", "I-PER").replace("I-NP I-ORG", "I-NP I-LOC"))
    dm = TokenClassificationDataModule(train_files=[str(train)], val_files=[str(train)], test_files=[str(test)],
                                       tokenizer="x")  # fmt: skip
    assert dm.label_names == ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG"]
    with pytest.raises(DataError, match="unknown tag 'I-LOC' \\(read as 'B-LOC'\\)") as e:
        dm.examples("test")
    assert e.value.line == 3


def test_jsonl_with_ids_and_labels_and_parquet_load(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    jsonl = _jsonl(tmp_path / "a.jsonl", SENTENCES, HF_LABELS)
    assert read_tagged(jsonl, labels=HF_LABELS).examples == [TaggedSentence(s.words, s.tags, f"{jsonl}:{i + 1}")
                                                             for i, s in enumerate(SENTENCES)]  # fmt: skip
    with pytest.raises(DataError, match="is an id, but no labels"):
        read_tagged(jsonl)
    ids = {n: i for i, n in enumerate(HF_LABELS)}
    table = pa.table({"words": [list(s.words) for s in SENTENCES],
                      "ner_tags": [[ids[t] for t in s.tags] for s in SENTENCES]})  # fmt: skip
    # the Hub writes the ClassLabel names into the file's metadata: ids need no labels then
    features = {"ner_tags": {"feature": {"names": HF_LABELS, "_type": "ClassLabel"}, "_type": "Sequence"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "hub.parquet")
    got = read_tagged(tmp_path / "hub.parquet", tokens_column="words").examples
    assert [(s.words, s.tags) for s in got] == [(s.words, s.tags) for s in SENTENCES]
    assert got[2].source.endswith("hub.parquet:row 2")
    hub = str(tmp_path / "hub.parquet")  # validation ids read by the Hub's names too, not by the sorted label list
    dm = TokenClassificationDataModule(train_files=[hub], val_files=[hub], tokens_column="words", tokenizer="x")
    assert [s.tags for s in dm.examples("val")] == [s.tags for s in SENTENCES] and dm.label_names != HF_LABELS
    pq.write_table(table, tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="row 0: tag 1 is an id, but no labels"):
        read_tagged(tmp_path / "plain.parquet", tokens_column="words")
    with pytest.raises(DataError, match="no column 'tokens'"):
        read_tagged(tmp_path / "plain.parquet", labels=HF_LABELS)


def test_write_conll_round_trips_through_the_reader(tmp_path):
    predicted = [["O" if t.startswith("I-") else t for t in s.tags] for s in SENTENCES]
    path = tmp_path / "out.txt"
    write_conll(path, SENTENCES, predicted)
    assert path.read_text().splitlines()[:2] == ["Peter B-PER B-PER", "Blackburn I-PER O"]
    gold = read_conll(path, tag_scheme="bio2", tag_column=1).examples
    pred = read_conll(path, tag_scheme="bio2").examples
    assert [(s.words, s.tags) for s in gold] == [(s.words, s.tags) for s in SENTENCES]
    assert [list(s.tags) for s in pred] == predicted
    with pytest.raises(ValueError, match="7 words but 6 predicted tags"):
        write_conll(path, SENTENCES[:1], [predicted[0][:-1]])


# --------------------------------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_every_word_maps_to_its_own_tokens(kind):
    tok = _tokenizer(kind)
    words = [list(s.words) for s in SENTENCES] + [["a", "\x00", "b"]]
    aligned = align_words(tok, words)
    assert aligned.n_empty == (1 if kind == "wordpiece" else 0)  # BERT's normalizer drops the control character
    for i, ws in enumerate(words):
        ids, word = aligned.sentence(i)
        assert (np.diff(word) >= 0).all() and sorted(set(word.tolist())) == list(range(len(ws)))
        for k, w in enumerate(ws):
            if kind == "bpe":  # lossless: each word's tokens decode to the word (after the joining space)
                assert tok.decode(ids[word == k].tolist()).strip() == w
            else:  # BERT pre-tokenizes each word on its own: its tokens in context are those of the word alone
                assert ids[word == k].tolist() == (tok.encode(w) or [tok.unk_id])


def test_first_sub_token_of_every_word_gets_its_label_and_predictions_map_back(tmp_path, tok_path):
    sentences = SENTENCES + builtin_token_classification("val")[:40]
    jsonl = _jsonl(tmp_path / "a.jsonl", sentences)
    dm = TokenClassificationDataModule(train_files=[jsonl], val_files=[jsonl], tokenizer=tok_path, labels=HF_LABELS,
                                       max_seq_length=8, batch_size=7)  # fmt: skip
    dm.setup("fit")
    tok, names = dm.tokenizer, dm.label_names
    assert dm.stats["val"]["split_sentences"] > 3 and dm.stats["val"]["windows"] > len(sentences)
    outputs = []
    for batch in dm.val_dataloader():
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "word_starts",
                              "sentence_index", "window_index"}  # fmt: skip
        assert batch["word_starts"].dtype == torch.bool and batch["input_ids"].shape[1] <= 8
        for ids, mask, labels, starts in zip(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                             batch["word_starts"], strict=True):  # fmt: skip
            n = int(mask.sum())
            assert ids[0] == tok.cls_id and ids[n - 1] == tok.sep_id and not starts[n - 1 :].any()
            assert ((labels != IGNORE_INDEX) == starts).all()  # the first sub-token only; -100 on the rest
        # "predictions": the labels read at the word starts, as predict_step reads them
        tags = [[names[i] for i in row[s]] for row, s in zip(batch["labels"], batch["word_starts"], strict=True)]
        outputs.append({"tags": tags, "sentence_index": batch["sentence_index"], "window_index": batch["window_index"]})
    predicted = dm.sentence_tags(outputs, "val")
    assert predicted == [list(s.tags) for s in sentences]  # exactly one tag per word, every word once, in order


def test_label_all_tokens_labels_continuations_b_as_i(tok_path):
    dm = TokenClassificationDataModule(tokenizer=tok_path, label_all_tokens=True, batch_size=64)
    ds = dm._tokenize(list(SENTENCES), "val")
    names = dm.label_names
    item = ds[0]  # Peter Blackburn visited Rio de Janeiro .
    labels, starts = item["labels"], item["word_starts"]
    assert labels[0] == labels[-1] == IGNORE_INDEX  # [CLS] and [SEP]
    labels, starts = labels[1:-1], starts[1:-1]
    assert (labels != IGNORE_INDEX).all() and len(labels) > len(SENTENCES[0].words)  # some words have pieces
    words = np.cumsum(starts) - 1  # the word of each token
    for k, tag in enumerate(SENTENCES[0].tags):
        got = [names[i] for i in labels[words == k]]
        assert got[0] == tag and all(t == tag.replace("B-", "I-") for t in got[1:])


def test_long_sentences_split_into_windows_without_dropping_a_word(tok_path):
    long = TaggedSentence(tuple(f"w{i}" for i in range(300)), tuple("B-PER" if i % 7 == 0 else "O" for i in range(300)))
    huge = TaggedSentence(("a", "-".join(["Paris"] * 20), "b"), ("O", "B-MISC", "O"))  # 39 tokens in one word
    dm = TokenClassificationDataModule(tokenizer=tok_path, max_seq_length=16, format="decoder", batch_size=64)
    short = TaggedSentence(("The", "weather", "in", "Paris", "."), ("O", "O", "O", "B-LOC", "O"))
    ds = dm._tokenize([long, huge, short], "test")
    assert dm.stats["test"]["split_sentences"] == 2 and ds.encoded.n_truncated == 1  # Paris-Paris-... is cut
    assert ds.lengths.max() <= 16
    tok, names = dm.tokenizer, dm.label_names
    per_sentence: dict[int, list[str]] = {}
    for i in range(len(ds)):
        it = ds[i]
        assert it["input_ids"][0] == tok.cls_id and it["input_ids"][-1] == tok.extract_id
        per_sentence.setdefault(it["sentence_index"], []).extend(names[j] for j in it["labels"][it["word_starts"]])
    windows = [ds.window_index[ds.sentence_index == s].tolist() for s in range(3)]
    assert all(w == list(range(len(w))) for w in windows) and len(windows[0]) >= 300 // 14 and len(windows[1]) == 3
    assert windows[2] == [0]
    assert per_sentence == {0: list(long.tags), 1: list(huge.tags), 2: list(short.tags)}


def test_builtin_set_and_a_conll_excerpt_feed_the_same_batches(tmp_path, tok_path):
    builtin = [builtin_token_classification(s) for s in ("train", "val", "test")]
    assert [len(b) for b in builtin] == [2000, 200, 200]
    assert len({s.words for b in builtin for s in b}) == 2400
    _ner_pool.cache_clear()
    assert builtin_token_classification("test") == builtin[2]  # generated again, the same
    tags = [t for s in builtin[0] for t in s.tags]
    assert {"B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"} <= set(tags)
    assert any(a != "O" and b == "B-" + a[2:] for s in builtin[0] for a, b in zip(s.tags[:-1], s.tags[1:], strict=True))
    excerpt = _excerpt(shared_file("conll2003/eng.train"), 200, tmp_path / "train.conll")
    dm = TokenClassificationDataModule(train_files=[excerpt], tokenizer=tok_path, val_fraction=0.1, batch_size=16)
    dm.setup("fit")
    assert dm.stats["train"]["examples"] + dm.stats["val"]["examples"] == 200
    assert dm.label_names == HF_LABELS[:1] + ["B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape == batch["input_ids"].shape and batch["sentence_index"].shape == (16,)
