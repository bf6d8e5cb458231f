"""Helpers for the task-data tests: the shared data folder, a small tokenizer, file writing, and an independent
oracle for the built-in datasets' labels (written from a taxonomy, not from the generator's set tables)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from lit_lm.data.core.tokenizer import Tokenizer

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

EXTRA_TEXT = [
    "Two women are embracing while holding to go packages.",
    "The sisters are hugging goodbye while holding to go packages after just eating lunch.",
    "A group of kids is playing in a yard and an old man is standing in the background.",
    "Rick grew up in a troubled household. He joined a gang. He is happy now.",
    "My body cast a shadow over the grass because the sun was rising. The grass was cut.",
    "The item was packaged in bubble wrap so it was fragile. It was small.",
]


def shared_data() -> Path:
    """The real data folder beside the checkout, or skip the calling test."""
    if not SHARED_DATA.is_dir():
        pytest.skip(reason=f"real data folder {SHARED_DATA} is absent (it sits beside the checkout in CI)")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    p = shared_data() / relative
    if not p.exists():
        pytest.skip(reason=f"{p} is absent from the shared data folder")
    return p


@cache
def small_tokenizer() -> Tokenizer:
    """A WordPiece tokenizer (fixed special ids 0..6) trained on the built-in task text plus a few sentences."""
    from lit_lm.data.finetuning.builtin import builtin_multiple_choice, builtin_nli

    texts = [t for e in builtin_nli("train") for t in (e.premise, e.hypothesis)]
    texts += [t for e in builtin_multiple_choice("train") for t in (e.context, *e.choices)]
    return Tokenizer.train_from_texts(texts + EXTRA_TEXT * 3, vocab_size=400)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------------------------------- oracle
# Taxonomies as trees (child -> parent); a missing place/time/adjective is the root ("anything").
NOUN_PARENT = {
    "dog": "animal", "cat": "animal", "horse": "animal", "cow": "animal",
    "man": "adult", "woman": "adult", "boy": "child", "girl": "child", "adult": "person", "child": "person",
}  # fmt: skip
ACTION_PARENT = {
    "is sprinting": "is running", "is jogging": "is running", "is running": "is moving",
    "is strolling": "is walking", "is walking": "is moving", "is napping": "is sleeping", "is sleeping": "is resting",
}  # fmt: skip
PLACE_PARENT = {
    "in the kitchen": "indoors", "in the bedroom": "indoors", "in the living room": "indoors",
    "in the park": "outdoors", "on the beach": "outdoors", "in the garden": "outdoors",
    "indoors": None, "outdoors": None,
}  # fmt: skip
TIME_PARENT = {"in the morning": "during the day", "in the afternoon": "during the day", "during the day": None,
               "at night": None}  # fmt: skip
SCALES = {"black": "colour", "white": "colour", "brown": "colour", "big": "size", "small": "size",
          "tall": "height", "short": "height", "happy": "mood", "sad": "mood"}  # fmt: skip

_alt = lambda words: "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))  # noqa: E731
SENTENCE = re.compile(
    rf"^(?P<article>A|An) (?:(?P<adj>{_alt(SCALES)}) )?(?P<noun>{_alt(set(NOUN_PARENT) | {'animal', 'person'})}) "
    rf"(?P<action>{_alt(set(ACTION_PARENT) | {'is moving', 'is resting'})})"
    rf"(?: (?P<place>{_alt(PLACE_PARENT)}))?(?: (?P<time>{_alt(TIME_PARENT)}))?\.$"
)


def parse(sentence: str) -> dict[str, str | None]:
    m = SENTENCE.match(sentence)
    assert m, f"unexpected sentence shape: {sentence!r}"
    first = m["adj"] or m["noun"]
    assert m["article"] == ("An" if first[0] in "aeiou" else "A"), sentence
    return m.groupdict()


def _ancestors(node: str | None, parent: dict) -> list[str | None]:
    out = [node]
    while node is not None:
        node = parent.get(node)
        out.append(node)
    return out


def _tree_relation(p: str | None, h: str | None, parent: dict) -> str:
    if h in _ancestors(p, parent):
        return "entailment"
    if p in _ancestors(h, parent):
        return "neutral"
    return "contradiction"


def oracle(premise: str, hypothesis: str) -> str:
    """NLI label from the taxonomies: a hypothesis that only generalises is entailed, one incompatible part makes
    a contradiction, and an added or more specific detail makes it neutral."""
    p, h = parse(premise), parse(hypothesis)
    rels = [
        _tree_relation(p["noun"], h["noun"], NOUN_PARENT),
        _tree_relation(p["action"], h["action"], ACTION_PARENT),
        _tree_relation(p["place"], h["place"], PLACE_PARENT),
        _tree_relation(p["time"], h["time"], TIME_PARENT),
    ]
    if h["adj"] is not None:
        if p["adj"] == h["adj"]:
            rels.append("entailment")
        elif p["adj"] is not None and SCALES[p["adj"]] == SCALES[h["adj"]]:
            rels.append("contradiction")
        else:
            rels.append("neutral")
    for label in ("contradiction", "neutral"):
        if label in rels:
            return label
    return "entailment"


def category(sentence: str) -> str:
    noun = parse(sentence)["noun"]
    return "animal" if "animal" in _ancestors(noun, NOUN_PARENT) else "person"
