"""Fine-tuning examples and their labels: the leaf that readers, built-in sets and DataModules all import.

- :class:`TextExample` (text, optional second text, class id or score), :class:`NLIExample` (premise, hypothesis,
  label) and :class:`MultipleChoiceExample` (context, choices, label).
- :class:`LabelVocab`: label name -> id, case-insensitive; :data:`NLI_LABELS`, :data:`NLI_LABELS_2WAY`.
- :class:`ReadResult`: what a reader returns, the examples and the counts of skipped records.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from lit_lm.errors import DataError

log = logging.getLogger(__name__)

E = TypeVar("E")

NO_GOLD_LABEL = "no gold label ('-' or -1)"

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
"""The 3-way SNLI/MultiNLI/SICK/ANLI label list: entailment=0, neutral=1, contradiction=2."""
NLI_LABELS_2WAY: tuple[str, ...] = ("entailment", "not_entailment")
"""The 2-way RTE/SciTail label list: entailment=0, not_entailment=1."""


@dataclass(frozen=True)
class NLIExample:
    """One sentence pair with its label id.

    Args:
        premise: The first sentence (or passage).
        hypothesis: The sentence to judge against the premise.
        label: Index into the task's label list.
        source: ``file:line`` the example came from (empty for generated data).
    """

    premise: str
    hypothesis: str
    label: int
    source: str = ""


@dataclass(frozen=True)
class TextExample:
    """One text, or a pair of texts, with its label: a class id, or a float score (regression).

    Args:
        text: The text (the first one of a pair).
        text_pair: The second text of a pair; ``None`` for one-text tasks.
        label: Index into the task's label list, or the score of a regression task.
        source: ``file:line`` (``file:row N`` for Parquet) the example came from (empty for generated data).
    """

    text: str
    text_pair: str | None
    label: int | float
    source: str = ""


@dataclass(frozen=True)
class MultipleChoiceExample:
    """A context, its candidate continuations and the index of the right one.

    Args:
        context: Shared first segment (story, or COPA premise + connective).
        choices: The candidate second segments.
        label: Index of the right choice.
        source: ``file:line`` the example came from (empty for generated data).
    """

    context: str
    choices: tuple[str, ...]
    label: int
    source: str = ""


@dataclass
class ReadResult(Generic[E]):
    """What a reader returns: the examples, and how many input records it skipped and why.

    Unpacks as ``examples, skipped = read_...(path)``.
    """

    examples: list[E]
    skipped: dict[str, int] = field(default_factory=dict)
    path: str = ""

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def __iter__(self) -> Iterator[Any]:
        yield self.examples
        yield self.skipped

    def __len__(self) -> int:
        return len(self.examples)

    def log_summary(self) -> None:
        """Log the counts (skipped records at WARNING level, so they are never silent)."""
        if self.skipped:
            detail = ", ".join(f"{n} with {why}" for why, n in self.skipped.items())
            log.warning("%s: read %d examples, skipped %d (%s)", self.path, len(self.examples), self.n_skipped, detail)
        else:
            log.info("%s: read %d examples", self.path, len(self.examples))


class LabelVocab:
    """A fixed, ordered label list: ``names[i]`` has id ``i``. Lookup ignores case and surrounding spaces.

    A label may also be given as its id (an int, or a string of digits that is not a label name). ``-`` and
    ``-1`` mean "no gold label" (SNLI/MultiNLI pairs without annotator consensus): :meth:`lookup` returns None
    and the reader skips and counts the record.
    """

    def __init__(self, names: Sequence[str]) -> None:
        names = [str(n) for n in names]
        if not names:
            raise DataError("labels must list at least one label name")
        folded = [n.strip().lower() for n in names]
        dupes = sorted({n for n in folded if folded.count(n) > 1})
        if dupes or "" in folded:
            raise DataError(f"labels must be distinct, non-empty names (case-insensitive); got {names}")
        self.names: list[str] = names
        self._ids = {n: i for i, n in enumerate(folded)}

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, value: object, path: str | Path, line: int) -> int | None:
        """The id of ``value``; None for "no gold label"; :class:`DataError` (at ``path:line``) if unknown."""
        if isinstance(value, bool):
            pass  # JSON true/false is no label
        elif isinstance(value, int):
            if value == -1:
                return None
            if 0 <= value < len(self.names):
                return value
        elif isinstance(value, str):
            key = value.strip().lower()
            if key in self._ids:
                return self._ids[key]
            if key == "-" or key == "-1":
                return None
            if key.isdigit() and int(key) < len(self.names):
                return int(key)
        allowed = ", ".join(self.names)
        raise DataError(
            f"unknown label {value!r}; allowed: {allowed} (or their ids 0..{len(self.names) - 1}); "
            "set `labels` to this dataset's label list (e.g. [entailment, not_entailment] for RTE/SciTail)",
            path,
            line,
        )


