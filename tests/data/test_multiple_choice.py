"""Multiple-choice readers (Story Cloze, COPA, generic JSONL), formatting, batching, the data module and the
built-in multiple-choice dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from lit_lm.data.core.samplers import LengthGroupedSampler
from lit_lm.data.finetuning.builtin import MC_SIZES, builtin_multiple_choice
from lit_lm.data.finetuning.encoding import MultipleChoiceCollator
from lit_lm.data.finetuning.examples import MultipleChoiceExample
from lit_lm.data.finetuning.multiple_choice import (
    MultipleChoiceDataModule,
    read_choices_jsonl,
    read_copa_jsonl,
    read_copa_xml,
    read_multiple_choice,
    read_story_cloze,
    tokenize_multiple_choice,
)
from lit_lm.errors import DataError

try:
    from .fixtures_tasks import category, oracle, shared_data, shared_file, small_tokenizer, write
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    from fixtures_tasks import category, oracle, shared_data, shared_file, small_tokenizer, write

STORY_HEADER = (
    "InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,"
    "RandomFifthSentenceQuiz1,RandomFifthSentenceQuiz2,AnswerRightEnding"
)
COPA_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE copa-corpus SYSTEM "copa.dtd">
<copa-corpus version="1.0">
  <item id="1" asks-for="cause" most-plausible-alternative="1">
    <p>My body cast a shadow over the grass.</p>
    <a1>The sun was rising.</a1>
    <a2>The grass was cut.</a2>
  </item>
  <item id="2" asks-for="effect" most-plausible-alternative="2">
    <p>The item was packaged in bubble wrap.</p>
    <a1>It was small.</a1>
    <a2>It was fragile.</a2>
  </item>
</copa-corpus>
"""


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# --------------------------------------------------------------------------------------------------- readers
def test_story_cloze_csv(tmp_path: Path) -> None:
    f = write(
        tmp_path / "cloze.csv",
        f"{STORY_HEADER}\r\n"
        'id1,Rick grew up poor.,"He never found support, and turned to gangs.",He got shot.,He changed.,'
        "He is happy now.,He joined a gang.,1\r\n"
        'id2,A.,B.,C.,D.,"End ""one"".",End two.,2',  # no newline after the last row, as in the real files
    )
    res = read_story_cloze(f)
    assert res.examples[0] == MultipleChoiceExample(
        "Rick grew up poor. He never found support, and turned to gangs. He got shot. He changed.",
        ("He is happy now.", "He joined a gang."),
        0,
        f"{f}:2",
    )
    assert res.examples[1].choices == ('End "one".', "End two.") and res.examples[1].label == 1


def test_copa_xml_and_context_connective(tmp_path: Path) -> None:
    res = read_copa_xml(write(tmp_path / "copa.xml", COPA_XML))
    first, second = res.examples
    assert first.context == "My body cast a shadow over the grass because"
    assert first.choices == ("The sun was rising.", "The grass was cut.") and first.label == 0
    assert second.context == "The item was packaged in bubble wrap so" and second.label == 1
    assert first.source.endswith("copa.xml:4")


def test_copa_jsonl_both_schemas(tmp_path: Path) -> None:
    sse = {"id": "501", "asks-for": "cause", "most-plausible-alternative": "1", "p": "The item was wrapped.",
           "a1": "It was fragile.", "a2": "It was small.", "human-explanations": [{"text": "x"}]}  # fmt: skip
    glue = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause",
            "label": 0, "idx": 0}  # fmt: skip
    res = read_copa_jsonl(write(tmp_path / "copa.jsonl", jsonl(sse, glue)))
    assert [(e.context, e.label) for e in res.examples] == [("The item was wrapped because", 0),
                                                              ("The man fell because", 0)]  # fmt: skip


def test_generic_choices_jsonl(tmp_path: Path) -> None:
    f = write(tmp_path / "mc.jsonl", jsonl({"context": "A dog", "choices": ["runs.", "flies.", "swims."], "label": 2}))
    assert read_multiple_choice(f).examples == [
        MultipleChoiceExample("A dog", ("runs.", "flies.", "swims."), 2, f"{f}:1")
    ]


def test_auto_detection(tmp_path: Path) -> None:
    assert len(read_multiple_choice(write(tmp_path / "c.xml", COPA_XML))) == 2
    f = write(tmp_path / "c.jsonl", jsonl({"premise": "P.", "choice1": "a", "choice2": "b", "question": "effect",
                                           "label": 1}))  # fmt: skip
    assert read_multiple_choice(f).examples[0].context == "P so"
    with pytest.raises(DataError, match=r"odd\.jsonl:1: cannot tell the reader"):
        read_multiple_choice(write(tmp_path / "odd.jsonl", jsonl({"x": 1})))
    with pytest.raises(DataError, match=r"data\.dat: cannot tell the reader.*set reader"):
        read_multiple_choice(write(tmp_path / "data.dat", "x"))


GOOD_ROW = "id,a,b,c,d,e1,e2,1"
BAD_MC = [
    ("s.csv", f"{STORY_HEADER}\n{GOOD_ROW}\nid,a,b,c,d,e1,e2,3\n", 3, "AnswerRightEnding must be 1 or 2, got '3'"),
    ("s.csv", f"{STORY_HEADER}\n{GOOD_ROW}\nid,a,b,c,d,e1,1\n", 3, "expected 8 comma-separated fields"),
    ("s.csv", STORY_HEADER.replace(",AnswerRightEnding", "") + "\nid,a,b,c,d,e1,e2\n", 1,
     "lacks the Story Cloze column(s) ['AnswerRightEnding']"),
    ("s.csv", f"{STORY_HEADER}\n{GOOD_ROW}\n".encode() + b"id,caf\xe9,b,c,d,e1,e2,1\n", 3, "not valid UTF-8"),
    ("c.xml", COPA_XML.replace("rising.</a1>", "rising.</a2>"), 6, "malformed XML (mismatched tag"),
    ("c.xml", COPA_XML.replace('asks-for="effect"', 'asks-for="reason"'), 9, "asks-for must be 'cause' or 'effect'"),
    ("c.xml", COPA_XML.replace("<a2>The grass was cut.</a2>", ""), 4, "lacks 'a2'"),
    ("c.jsonl", jsonl({"p": "P.", "a1": "a", "a2": "b", "asks-for": "cause", "most-plausible-alternative": "1"},
                      {"p": "P.", "a1": "a", "asks-for": "cause", "most-plausible-alternative": "2"}), 2, "lacks 'a2'"),
    ("c.jsonl", jsonl({"premise": "P.", "choice1": "a", "choice2": "b", "question": "cause", "label": 2}), 1,
     "label must be 0 or 1"),
    ("c.jsonl", '{"p": "P.", "a1": "a"\n', 1, "malformed JSON"),
    ("m.jsonl", jsonl({"context": "c", "choices": ["a", "b"], "label": 0}, {"context": "c", "choices": ["a", "b"],
     "label": 5}), 2, "label must be a 0-based choice index below 2"),
    ("m.jsonl", jsonl({"context": "c", "choices": ["a", "b"], "label": 0}, {"context": "c", "label": 0}), 2,
     "missing field 'choices'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_MC)
def test_bad_multiple_choice_input_names_file_and_line(tmp_path: Path, name: str, content, line: int, message: str):
    f = write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        read_multiple_choice(f)
    assert f"{name}:{line}: " in str(err.value) and message in str(err.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"none\.csv: file not found"):
        read_multiple_choice(tmp_path / "none.csv")
    with pytest.raises(DataError, match=r"empty\.xml: file is empty"):
        read_copa_xml(write(tmp_path / "empty.xml", ""))
    with pytest.raises(DataError, match=r"items\.xml: no <item> elements"):
        read_copa_xml(write(tmp_path / "items.xml", "<copa-corpus></copa-corpus>\n"))
    with pytest.raises(DataError, match=r"empty\.jsonl: file is empty"):
        read_choices_jsonl(write(tmp_path / "empty.jsonl", "\n"))


# --------------------------------------------------------------------------------------------------- formatting
EXAMPLES = [
    MultipleChoiceExample("A dog is running in the park.", ("An animal is moving.", "A dog is sleeping."), 0),
    MultipleChoiceExample("A man is sleeping.", ("A woman is walking indoors at night.", "A man is resting."), 1),
]


@pytest.mark.parametrize("fmt", ["decoder", "encoder"])
def test_each_choice_is_a_formatted_sequence(fmt: str) -> None:
    tok = small_tokenizer()
    ds = tokenize_multiple_choice(EXAMPLES, tok, fmt, max_seq_length=64)
    batch = MultipleChoiceCollator(tok.pad_id)([ds[0], ds[1]])
    b, c, t = batch["input_ids"].shape
    assert (b, c) == (2, 2) and batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, 2, t)
    assert batch["extract_positions"].shape == (2, 2) and batch["labels"].tolist() == [0, 1]
    assert all(v.dtype == torch.long for v in batch.values())
    for i, ex in enumerate(EXAMPLES):
        ctx = tok.encode(ex.context)
        for j, choice in enumerate(ex.choices):
            n = int(batch["attention_mask"][i, j].sum())
            seq = batch["input_ids"][i, j, :n].tolist()
            assert (batch["input_ids"][i, j, n:] == tok.pad_id).all()
            if fmt == "decoder":
                assert seq == [tok.cls_id, *ctx, tok.delim_id, *tok.encode(choice), tok.extract_id]
                assert batch["extract_positions"][i, j] == n - 1
                assert (batch["token_type_ids"][i, j] == 0).all()
            else:
                assert seq == [tok.cls_id, *ctx, tok.sep_id, *tok.encode(choice), tok.sep_id]
                assert batch["extract_positions"][i, j] == 0
                types = batch["token_type_ids"][i, j, :n].tolist()
                assert types == [0] * (len(ctx) + 2) + [1] * (n - len(ctx) - 2)


def test_truncation_keeps_extract_token() -> None:
    tok = small_tokenizer()
    long_ex = MultipleChoiceExample(" ".join(["A dog is running in the park."] * 10), ("A dog.", "A cat."), 0)
    ds = tokenize_multiple_choice([long_ex, *EXAMPLES], tok, "decoder", max_seq_length=16)
    assert ds.encoded.lengths.max() <= 16 and ds.encoded.n_truncated == 2
    item = ds[0]
    for seq, pos in zip(item["input_ids"], item["extract_position"], strict=True):
        assert len(seq) == 16 and seq[pos] == tok.extract_id and tok.delim_id in seq.tolist()
    assert ds.lengths.shape == (3,)


def test_choice_count_must_agree(tmp_path: Path) -> None:
    f = write(tmp_path / "mixed.jsonl", jsonl({"context": "c", "choices": ["a", "b"], "label": 0},
                                              {"context": "c", "choices": ["a", "b", "c"], "label": 0}))  # fmt: skip
    with pytest.raises(DataError, match=r"mixed\.jsonl:2' has 3 choices, others have 2"):
        tokenize_multiple_choice(read_multiple_choice(f).examples, small_tokenizer())


# --------------------------------------------------------------------------------------------------- datamodule
def test_datamodule_builtin_end_to_end(tmp_path: Path) -> None:
    dm = MultipleChoiceDataModule(batch_size=4, cache_dir=str(tmp_path), group_by_length=True)
    with pytest.warns(UserWarning, match="pretraining tokenizer"):
        dm.prepare_data()
    assert dm.num_choices == 2 and dm.format == "decoder" and dm.pad_token_id == 0 and dm.vocab_size > 7
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    batch = next(iter(loader))
    t = batch["input_ids"].shape[-1]
    assert batch["input_ids"].shape == (4, 2, t) and batch["extract_positions"].shape == (4, 2)
    flat = batch["input_ids"].view(8, t)
    assert (flat[torch.arange(8), batch["extract_positions"].view(8)] == dm.tokenizer.extract_id).all()
    val = next(iter(dm.val_dataloader()))
    assert val["labels"].shape == (4,)
    assert dm.stats["train"]["examples"] == MC_SIZES["train"] and dm.stats["val"]["examples"] == MC_SIZES["val"]


def test_datamodule_generic_files_and_holdout(tmp_path: Path) -> None:
    records = [{"context": f"A dog is running {i}.", "choices": ["a", "b", "c"], "label": i % 3} for i in range(20)]
    f = write(tmp_path / "train.jsonl", jsonl(*records))
    tok = small_tokenizer()
    tok_path = tmp_path / "tok" / "tokenizer.json"
    tok.save(tok_path)
    dm = MultipleChoiceDataModule(train_files=[str(f)], tokenizer=str(tok_path), format="encoder", batch_size=3)
    assert dm.num_choices == 3
    dm.setup("fit")
    assert dm.stats["train"]["examples"] == 18 and dm.stats["val"]["examples"] == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[:2] == (3, 3) and (batch["extract_positions"] == 0).all()
    with pytest.raises(DataError, match="no test_files set"):
        dm.setup("test")
    extra = write(tmp_path / "extra.jsonl", jsonl(*[{"context": f"x {i}", "choices": ["a", "b", "c"], "label": 0}
                                                    for i in range(5)]))  # fmt: skip
    more = MultipleChoiceDataModule(train_files=[str(f)], extra_train_files=[str(extra)], tokenizer=str(tok_path),
                                    format="encoder", batch_size=3)  # fmt: skip
    more.setup("fit")
    assert more.stats["train"]["examples"] == 23 and more.examples("val") == dm.examples("val")
    assert dm._tokenizer_key() != more._tokenizer_key()


def test_real_copa_in_a_datamodule(tmp_path: Path) -> None:
    train, test = shared_file("copa/balanced-copa-dev-all.xml"), shared_file("copa/test-explained.jsonl")
    dm = MultipleChoiceDataModule(
        train_files=[str(train)], test_files=[str(test)], cache_dir=str(tmp_path), vocab_size=2000, batch_size=8
    )
    with pytest.warns(UserWarning, match="trained on this task's training text"):
        dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.stats["train"]["examples"] == 900 and dm.stats["val"]["examples"] == 100
    batch = next(iter(dm.test_dataloader()))
    assert batch["input_ids"].shape[:2] == (8, 2) and batch["labels"].tolist() == [e.label for e in
                                                                                   dm.examples("test")[:8]]  # fmt: skip


# --------------------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize(("split", "answers"), [("val", (962, 909)), ("test", (960, 911))])
def test_real_story_cloze(split: str, answers: tuple[int, int]) -> None:
    f = shared_data() / "story-cloze-2016" / f"cloze_test_{split}__spring2016 - cloze_test_ALL_{split}.csv"
    if not f.is_file():
        pytest.skip(reason=f"{f} is absent")
    res = read_multiple_choice(f)
    assert len(res) == 1871
    assert tuple(Counter(e.label for e in res.examples)[i] for i in range(2)) == answers
    assert all(len(e.choices) == 2 and all(e.choices) and len(e.context) > 40 for e in res.examples)
    if split == "val":
        assert res.examples[0].context.startswith("Rick grew up in a troubled household. He never found good support")
        assert res.examples[0].choices == ("He is happy now.", "He joined a gang.") and res.examples[0].label == 0


def test_real_copa() -> None:
    xml = read_multiple_choice(shared_file("copa/balanced-copa-dev-all.xml")).examples
    assert len(xml) == 1000
    assert Counter(e.context.rsplit(" ", 1)[1] for e in xml) == {"because": 500, "so": 500}
    assert Counter(e.label for e in xml) == {0: 506, 1: 494}
    test = read_multiple_choice(shared_file("copa/test-explained.jsonl")).examples
    assert len(test) == 500
    assert Counter(e.context.rsplit(" ", 1)[1] for e in test) == {"because": 250, "so": 250}
    assert Counter(e.label for e in test) == {0: 250, 1: 250}
    assert test[0].context == "The item was packaged in bubble wrap because"


# --------------------------------------------------------------------------------------------------- built-in
def test_builtin_multiple_choice_right_choice_is_entailed() -> None:
    splits = {s: builtin_multiple_choice(s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in splits.items()} == MC_SIZES
    for examples in splits.values():
        for ex in examples:
            sentences = [s + "." for s in ex.context.rstrip(".").split(". ")]
            assert len(sentences) == 2 and {category(s) for s in sentences} == {"animal", "person"}
            for j, choice in enumerate(ex.choices):
                about = next(s for s in sentences if category(s) == category(choice))
                expected = "entailment" if j == ex.label else "contradiction"
                assert oracle(about, choice) == expected, (ex.context, choice, expected)
    labels = Counter(ex.label for ex in splits["train"])
    assert min(labels.values()) > 0.4 * MC_SIZES["train"]
    keys = [{(ex.context, ex.choices) for ex in v} for v in splits.values()]
    assert sum(len(k) for k in keys) == len(set().union(*keys))
    assert builtin_multiple_choice("test") == splits["test"]
