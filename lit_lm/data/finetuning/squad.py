"""Extractive question answering data: SQuAD-style examples, their readers and the built-in generated set.

Readers (:func:`read_squad`):

- SQuAD v1.1 / v2.0 JSON as published: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``.
- JSONL or Parquet with the Hugging Face Hub's ``squad`` / ``squad_v2`` columns: ``id, title, context, question,
  answers{text: [...], answer_start: [...]}`` (an empty ``text`` list: a question with no answer, SQuAD v2).

Every answer is checked against its context: ``context[answer_start:answer_start + len(text)]`` must be ``text``.
A mismatch is a :class:`DataError` naming the file, the line, the article and the question id, or with
``skip_bad_answers`` the answer is dropped (a question left with none is skipped), counted and logged.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lit_lm.data.core.io import decode_utf8, jsonl_records, read_bytes_checked, read_text_lines
from lit_lm.errors import DataError

__all__ = ["QAExample", "builtin_question_answering", "read_squad", "write_predictions"]

log = logging.getLogger(__name__)

QAReader = Literal["auto", "squad", "jsonl", "parquet"]


@dataclass(frozen=True)
class QAExample:
    """One question about one context.

    Attributes:
        id: The question id (the key of ``predictions.json``).
        title: The article's title (the hold-out groups questions by it).
        context: The paragraph, as in the file (answers are character spans of it).
        question: The question.
        answers: ``(text, answer_start)`` of each gold answer; empty for a question with no answer (SQuAD v2).
    """

    id: str
    title: str
    context: str
    question: str
    answers: tuple[tuple[str, int], ...] = field(default=())

    @property
    def answer_texts(self) -> list[str]:
        """The gold texts as the official scorer reads them (``[""]`` for no answer, as SQuAD v2's scorer does)."""
        return [text for text, _ in self.answers] or [""]


def _line_of(text: str, needle: str) -> int | None:
    """The 1-based line of the first occurrence of ``needle`` in ``text`` (to point at a record of a JSON file)."""
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


class _Checker:
    """Checks answers against contexts, raising or (``skip``) counting."""

    def __init__(self, path: str | Path, skip: bool, source: str | None = None) -> None:
        self.path, self.skip, self.source = path, skip, source
        self.skipped: dict[str, int] = {}

    def _where(self, qid: str, line: int | None) -> int | None:
        if line is None and self.source is not None:
            line = _line_of(self.source, json.dumps(qid))
        return line

    def fail(self, problem: str, title: str, qid: str, line: int | None = None) -> None:
        raise DataError(f"article {title!r}, question {qid!r}: {problem}", self.path, self._where(qid, line))

    def answers(
        self, raw: Sequence[tuple[Any, Any]], context: str, title: str, qid: str, line: int | None
    ) -> tuple[tuple[str, int], ...] | None:
        """The checked answers, or None when the question is to be skipped (all of its answers were bad)."""
        out = []
        for text, start in raw:
            if not isinstance(text, str) or not text.strip():
                self.fail(f"an answer's text must be a non-empty string, got {text!r}", title, qid, line)
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                self.fail(f"answer_start must be a non-negative integer, got {start!r}", title, qid, line)
            found = context[start : start + len(text)]
            if found != text:
                if not self.skip:
                    self.fail(
                        f"answer {text!r} does not match the context at answer_start={start} (the context has "
                        f"{found!r} there); fix the offset, or set skip_bad_answers: true to drop such answers",
                        title, qid, line,
                    )  # fmt: skip
                self.skipped["answer not at answer_start"] = self.skipped.get("answer not at answer_start", 0) + 1
                continue
            out.append((text, start))
        if raw and not out:
            self.skipped["question with no valid answer"] = self.skipped.get("question with no valid answer", 0) + 1
            return None
        return tuple(out)


def _field(record: dict[str, Any], key: str, kind: type, what: str, fail) -> Any:
    value = record.get(key)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        got = "missing" if key not in record else f"{value!r}"[:60]
        fail(f"{what} needs {key!r} ({'text' if kind is str else kind.__name__}), got {got}")
    return value


def _read_squad_json(path: str | Path, skip: bool) -> tuple[list[QAExample], dict[str, int]]:
    p, data = read_bytes_checked(path)
    text = decode_utf8(data, p)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", p, e.lineno) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError('expected SQuAD JSON: an object with a "data" list of articles', p, 1)
    check = _Checker(p, skip, text)
    examples: list[QAExample] = []
    for a, article in enumerate(doc["data"]):
        if not isinstance(article, dict):
            raise DataError(f"article {a}: expected an object with title and paragraphs", p)
        title = article.get("title") if isinstance(article.get("title"), str) else f"#{a}"

        def fail_article(msg: str, title: str = title) -> None:
            raise DataError(f"article {title!r}: {msg}", p, _line_of(text, json.dumps(title)))

        for paragraph in _field(article, "paragraphs", list, "an article", fail_article):
            if not isinstance(paragraph, dict):
                fail_article("each paragraph must be an object with context and qas")
            context = _field(paragraph, "context", str, "a paragraph", fail_article)
            for qa in _field(paragraph, "qas", list, "a paragraph", fail_article):
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str) or not qid:
                    fail_article(f"a question needs a non-empty string 'id', got {qid!r}")

                def fail_qa(msg: str, qid: str = qid, title: str = title) -> None:
                    check.fail(msg, title, qid)

                question = _field(qa, "question", str, "a question", fail_qa)
                answers = qa.get("answers", [])
                if not isinstance(answers, list) or any(not isinstance(x, dict) for x in answers):
                    fail_qa(f"'answers' must be a list of {{text, answer_start}} objects, got {answers!r}"[:200])
                if not answers and not qa.get("is_impossible", False):
                    fail_qa("no answers, and the question is not marked is_impossible (SQuAD v2)")
                checked = check.answers([(x.get("text"), x.get("answer_start")) for x in answers],
                                        context, title, qid, None)  # fmt: skip
                if checked is not None:
                    examples.append(QAExample(qid, title, context, question.strip(), checked))
    return examples, check.skipped


def _records(path: str | Path, reader: str) -> Iterator[tuple[int | str, dict[str, Any]]]:
    if reader == "jsonl":
        yield from jsonl_records(read_text_lines(path), path)
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'lit_lm[parquet]'", path) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read as Parquet ({e})", path) from None
    for n, row in enumerate(rows):
        yield f"row {n}", row


def _read_squad_table(path: str | Path, reader: str, skip: bool) -> tuple[list[QAExample], dict[str, int]]:
    check = _Checker(path, skip)
    examples: list[QAExample] = []
    for loc, record in _records(path, reader):
        line = loc if isinstance(loc, int) else None

        def fail(msg: str, loc=loc, line=line) -> None:
            raise DataError(msg if line is not None else f"{loc}: {msg}", path, line)

        qid = record.get("id")
        if not isinstance(qid, (str, int)) or isinstance(qid, bool) or qid == "":
            fail(f"a record needs its question 'id', got {qid!r}")
        qid = str(qid)
        title = record.get("title") if isinstance(record.get("title"), str) else ""
        context = _field(record, "context", str, "a record", fail)
        question = _field(record, "question", str, "a record", fail)
        answers = record.get("answers")
        if not isinstance(answers, dict) or not isinstance(answers.get("text"), list) \
                or not isinstance(answers.get("answer_start"), list):  # fmt: skip
            fail("'answers' must be {\"text\": [...], \"answer_start\": [...]} (the Hub's squad columns)")
        if len(answers["text"]) != len(answers["answer_start"]):
            fail(f"'answers' has {len(answers['text'])} texts but {len(answers['answer_start'])} answer_start values")
        checked = check.answers(list(zip(answers["text"], answers["answer_start"], strict=True)),
                                context, title, qid, line)  # fmt: skip
        if checked is not None:
            examples.append(QAExample(qid, title, context, question.strip(), checked))
    return examples, check.skipped


def detect_qa_reader(path: str | Path) -> str:
    """``squad`` (.json), ``jsonl`` or ``parquet`` by the file's suffix."""
    suffix = Path(path).suffix.lower()
    known = {".json": "squad", ".jsonl": "jsonl", ".parquet": "parquet"}
    if suffix not in known:
        raise DataError(
            f"cannot tell the format of {Path(path).name!r} from its suffix; name it .json (SQuAD), .jsonl or "
            ".parquet, or set reader: squad | jsonl | parquet",
            path,
        )
    return known[suffix]


def read_squad(
    paths: str | Path | Sequence[str | Path], reader: QAReader = "auto", skip_bad_answers: bool = False
) -> tuple[list[QAExample], dict[str, int]]:
    """Read question-answering files (see the module docstring) -> (examples in file order, skipped counts).

    A question id seen twice is a :class:`DataError` (predictions are keyed by it)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    examples: list[QAExample] = []
    skipped: dict[str, int] = {}
    seen: dict[str, str] = {}
    for path in paths:
        kind = detect_qa_reader(path) if reader == "auto" else reader
        if kind not in ("squad", "jsonl", "parquet"):
            raise DataError(f"reader must be auto, squad, jsonl or parquet, got {reader!r}")
        got, got_skipped = (_read_squad_json(path, skip_bad_answers) if kind == "squad"
                            else _read_squad_table(path, kind, skip_bad_answers))  # fmt: skip
        for ex in got:
            if ex.id in seen:
                raise DataError(f"question id {ex.id!r} appears twice (also in {seen[ex.id]}); ids must be unique",
                                path)  # fmt: skip
            seen[ex.id] = str(path)
        examples += got
        for reason, n in got_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    if skipped:
        log.warning("%s: skipped %s", ", ".join(map(str, paths)), ", ".join(f"{n} x {r}" for r, n in skipped.items()))
    return examples, skipped


def write_predictions(path: str | Path, predictions: dict[str, str]) -> Path:
    """Write ``{question id: answer text}`` as SQuAD's ``predictions.json`` (the official scorer's input)."""
    from lit_lm.data.core.io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------- built-in set
_PEOPLE = ["Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ingrid", "Jonas", "Keiko", "Luis",
           "Mona", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Stefan", "Tara", "Umar", "Vera", "Wen", "Yusuf"]
_SURNAMES = ["Abbott", "Bauer", "Castillo", "Duval", "Eriksen", "Fontaine", "Garcia", "Holm", "Ivanova", "Jansen",
             "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Sato", "Torres", "Weber"]
_CITIES = ["Lisbon", "Oslo", "Krakow", "Lyon", "Porto", "Turin", "Ghent", "Tartu", "Bergen", "Seville", "Graz",
           "Utrecht", "Malmo", "Bilbao", "Brno", "Cork", "Riga", "Split", "Aarhus", "Basel"]
_JOBS = ["a painter", "a chemist", "an engineer", "a violinist", "a surgeon", "a poet", "an architect", "a baker",
         "a botanist", "a sailor", "a printer", "a teacher", "a judge", "a weaver", "a clockmaker", "an astronomer"]
_THINGS = ["a bridge", "a telescope", "a library", "a garden", "a ship", "a school", "a theatre", "a mill"]
_FILLER = [
    "The winters there were long and the summers short.",
    "Little is known about the family's early years.",
    "Letters from that period survive in a small archive.",
    "Several neighbours later described the household as quiet.",
    "The town itself grew quickly during those decades.",
    "Historians still disagree about some of the dates.",
]

#: Bump when the generated set changes (trained task tokenizers are cached by it).
BUILTIN_QA_VERSION = 1


def _article(rng: random.Random) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """One generated biography: paragraphs with (question, answer, answer_start) triples."""
    first, last = rng.choice(_PEOPLE), rng.choice(_SURNAMES)
    name = f"{first} {last}"
    city, city2 = rng.sample(_CITIES, 2)
    year = rng.randint(1780, 1950)
    job, thing = rng.choice(_JOBS), rng.choice(_THINGS)
    facts = [
        (f"{name} was born in {city} in {year}.",
         [(f"Where was {name} born?", city), (f"In which year was {first} born?", str(year))]),
        (f"As an adult, {first} worked as {job} in {city2}.",
         [(f"What did {first} work as?", job), (f"In which city did {first} work?", city2)]),
        (f"In {year + rng.randint(20, 40)}, {first} built {thing} near the river.",
         [(f"What did {first} build near the river?", thing)]),
    ]
    rng.shuffle(facts)
    paragraphs = []
    for k in range(0, len(facts), 2):
        sentences, qas = [], []
        for fact, questions in facts[k : k + 2]:
            sentences += rng.sample(_FILLER, rng.randint(0, 2)) + [fact]
            qas += questions
        context = " ".join(sentences)
        paragraphs.append((context, [(question, answer, context.index(answer)) for question, answer in qas]))
    return paragraphs


def builtin_question_answering(split: str) -> list[QAExample]:
    """A generated SQuAD-like set (biographies: where and when someone was born, their work, what they built):
    400 / 40 / 40 articles for ``train`` / ``val`` / ``test``, each question answered by a span of its paragraph,
    the same every time. For ``fit`` without files and for tests."""
    sizes = {"train": (400, 0), "val": (40, 1), "test": (40, 2)}
    if split not in sizes:
        raise ValueError(f"split must be train, val or test, got {split!r}")
    n, salt = sizes[split]
    rng = random.Random(f"builtin-qa-{salt}")
    examples = []
    for a in range(n):
        title = f"{split}-{a}"
        for p, (context, triples) in enumerate(_article(rng)):
            for q, (question, answer, start) in enumerate(triples):
                examples.append(QAExample(f"{title}-{p}-{q}", title, context, question, ((answer, start),)))
    return examples
