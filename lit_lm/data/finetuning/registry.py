"""Named fine-tuning tasks, as ``run_glue.py --task_name`` has them: ``task: sst2`` brings the label set (or a
regression range), how the published files are laid out, the metrics the benchmark reports and the main one (what
checkpoints are selected by and the results table shows), and whether the pair has a natural order.

One row per task; a new task is a new row. Files of another layout still load by naming their columns
(``text_column``, ``text_pair_column``, ``label_column`` in the DataModules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lit_lm.data.finetuning.examples import NLI_LABELS, NLI_LABELS_2WAY
from lit_lm.data.finetuning.tables import Columns, TableFormat
from lit_lm.errors import DataError

__all__ = ["METRICS", "TASKS", "TaskSpec", "task_spec"]

#: Metric names a task may list (computed with torchmetrics by :mod:`lit_lm.tasks.metrics`): ``acc`` accuracy,
#: ``f1`` F1 of the positive class (id 1; MRPC, QQP), ``macro_f1`` the mean F1 over the classes, ``mcc`` Matthews
#: correlation (CoLA), ``pearson`` / ``spearman`` correlations of a regression (STS-B).
METRICS: tuple[str, ...] = ("acc", "f1", "macro_f1", "mcc", "pearson", "spearman")


@dataclass(frozen=True)
class TaskSpec:
    """What a named task fixes.

    Attributes:
        name: The task's name (``sst2``).
        family: ``text`` (one text per example) or ``pair`` (two).
        labels: The label names in id order; ``None`` for a regression task (one output, mean-squared error).
        score_range: A regression task's score range (a score outside it is a data error).
        metrics: What is logged per stage, each from :data:`METRICS`.
        main_metric: The one checkpoints are selected by and the results table reports (higher is better).
        layouts: How the published files are laid out, tried in order: a layout with a header matches a file
            whose first line names its columns; a headerless one matches otherwise.
        reader: ``table`` (:mod:`lit_lm.data.finetuning.tables`) or ``nli`` (the NLI readers, which also take
            SNLI's JSONL and InferSent's parallel files).
        symmetric: The two texts have no natural order (similarity, paraphrase): a decoder reads both orderings.
        source: Where the data comes from, for ``--help`` and the README.
    """

    name: str
    family: Literal["text", "pair"]
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    layouts: tuple[tuple[Columns, TableFormat], ...] = ()
    score_range: tuple[float, float] | None = None
    reader: Literal["table", "nli"] = "table"
    symmetric: bool = False
    source: str = ""

    @property
    def regression(self) -> bool:
        return self.labels is None


def _nli(name: str, labels: tuple[str, ...], source: str) -> TaskSpec:
    return TaskSpec(name, "pair", labels, ("acc", "macro_f1"), "acc", reader="nli", source=source)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", "text", ("negative", "positive"), ("acc",), "acc",
                 layouts=((Columns("sentence", None, "label"), "tsv"),),
                 source="GLUE SST-2 train.tsv / dev.tsv (sentence, label)"),
        TaskSpec("cola", "text", ("unacceptable", "acceptable"), ("mcc", "acc"), "mcc",
                 layouts=((Columns("sentence", None, "label"), "tsv"), (Columns(3, None, 1, header=False), "tsv")),
                 source="CoLA in_domain_train.tsv / in_domain_dev.tsv / out_of_domain_dev.tsv (headerless: source, "
                        "label, original mark, sentence) or GLUE's with a header"),
        TaskSpec("mrpc", "pair", ("not_paraphrase", "paraphrase"), ("f1", "acc"), "f1",
                 layouts=((Columns("#1 String", "#2 String", "Quality"), "tsv"),
                          (Columns("sentence1", "sentence2", "label"), "tsv")),
                 symmetric=True, source="MRPC msr_paraphrase_train.txt / _test.txt, or GLUE's train.tsv / dev.tsv"),
        TaskSpec("qqp", "pair", ("not_duplicate", "duplicate"), ("f1", "acc"), "f1",
                 layouts=((Columns("question1", "question2", "is_duplicate"), "tsv"),
                          (Columns("question1", "question2", "label"), "tsv")),  # the Hub's Parquet
                 symmetric=True, source="GLUE QQP train.tsv / dev.tsv"),
        TaskSpec("stsb", "pair", None, ("pearson", "spearman"), "pearson", score_range=(0.0, 5.0),
                 layouts=((Columns("sentence1", "sentence2", "score"), "tsv"),
                          (Columns("sentence1", "sentence2", "label"), "tsv"),  # the Hub's Parquet
                          (Columns(5, 6, 4, header=False), "tsv")),
                 symmetric=True, source="STS Benchmark sts-train.csv / sts-dev.csv / sts-test.csv (headerless, tab-"
                                        "separated: genre, file, year, id, score, sentence1, sentence2), or GLUE's"),
        TaskSpec("sick_relatedness", "pair", None, ("pearson", "spearman"), "pearson", score_range=(1.0, 5.0),
                 layouts=((Columns("sentence_A", "sentence_B", "relatedness_score"), "tsv"),),
                 symmetric=True, source="SICK (sentence_A, sentence_B, relatedness_score)"),
        _nli("snli", NLI_LABELS, "SNLI (JSONL, the .txt TSV, or InferSent files)"),
        _nli("mnli", NLI_LABELS, "MultiNLI (JSONL or GLUE TSV)"),
        _nli("sick", NLI_LABELS, "SICK entailment labels"),
        _nli("anli", NLI_LABELS, "ANLI"),
        _nli("rte", NLI_LABELS_2WAY, "RTE (GLUE TSV or JSONL)"),
        _nli("scitail", NLI_LABELS_2WAY, "SciTail"),
        TaskSpec("wnli", "pair", ("not_entailment", "entailment"), ("acc",), "acc",
                 layouts=((Columns("sentence1", "sentence2", "label"), "tsv"),), source="GLUE WNLI"),
    )
}  # fmt: skip


def task_spec(name: str, family: str | None = None) -> TaskSpec:
    """The named task; :class:`DataError` naming the known ones (of ``family``) if there is none by that name."""
    spec = TASKS.get(name.strip().lower())
    known = [n for n, s in TASKS.items() if family is None or s.family == family]
    if spec is None or (family is not None and spec.family != family):
        what = f"a {family} task" if spec is not None else "a known task"
        raise DataError(f"task {name!r} is not {what}; known: {', '.join(known)}")
    return spec
