"""One small recipe per fine-tuning task: which DataModule reads which files, the task's LightningModule, and the
budget (steps, learning rate, batch, sequence length). The suite turns a recipe, a checkpoint, an arm and a seed
into the config of one ``fit`` (:func:`run_config`); a YAML file overrides any field of any recipe, or adds a task.

The files are named relative to ``data_dir`` (``../shared/data`` beside a checkout, the layout of
``experiments/cpu``). Budgets are optimizer steps, so a record means the same on any machine.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_lm.config import TransformerConfig
from lit_lm.errors import ConfigError
from lit_lm.tasks.pretrained import TUNABLE_FIELDS

__all__ = ["DEFAULT_DATA_DIR", "RECIPES", "TaskRecipe", "load_recipes", "read_recipes", "run_config", "run_fields"]

DEFAULT_DATA_DIR = "../shared/data"
_CLASSIFY = "lit_lm.tasks.SequenceClassification"


@dataclass(frozen=True)
class TaskRecipe:
    """How the suite fine-tunes on one task.

    Attributes:
        name: The task's name in ``--tasks`` and in the records (``sst2``).
        title: Its name in the table (``SST-2``).
        datamodule: Class path of the LightningDataModule.
        data: Its ``init_args`` besides the tokenizer, format, sequence length, batch size and seed; a string that
            starts with ``{data_dir}/`` (alone or in a list) names a file under ``data_dir``.
        task: Class path of the LightningModule (:mod:`lit_lm.tasks`).
        model: Its ``init_args`` besides the initialisation and the optimisation budget below.
        decoder_model: Further ``init_args`` for a decoder (GPT-1's auxiliary LM loss).
        metric: The main metric's name as the table shows it (the number itself is the DataModule's
            ``main_metric`` on the test split).
        formats: The backbone kinds the task is run with: ``encoder``, ``decoder``.
        max_steps: Optimizer steps.
        learning_rate: Peak learning rate (linear warm-up over ``warmup_steps``, then linear decay to 0).
        warmup_steps: Warm-up, as a fraction of ``max_steps``.
        batch_size: Examples per step.
        max_seq_length: Longest sequence (lowered to the checkpoint's ``n_positions`` when that is shorter).
        val_check_interval: Steps between validations (the best validation checkpoint is the one tested).
        dropout: Dropout on the embeddings, residual branches and attention probabilities of both arms (the
            checkpoint's own may be 0: pretraining runs on a small budget often turn it off); None: the checkpoint's.
    """

    name: str
    title: str
    datamodule: str
    data: dict[str, Any]
    task: str = _CLASSIFY
    model: dict[str, Any] = field(default_factory=dict)
    decoder_model: dict[str, Any] = field(default_factory=lambda: {"lm_loss_weight": 0.5})
    metric: str = "accuracy"
    formats: tuple[str, ...] = ("encoder", "decoder")
    max_steps: int = 600
    learning_rate: float = 1e-4
    warmup_steps: float = 0.06
    batch_size: int = 32
    max_seq_length: int = 128
    val_check_interval: int = 100
    dropout: float | None = 0.1

    def as_record(self) -> dict[str, Any]:
        """Every field as JSON values (a run record keeps its recipe, so a table can tell runs of an older one)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes: Any) -> TaskRecipe:
        """A copy with ``changes``; ``data`` / ``model`` / ``decoder_model`` are merged key by key."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"task {self.name!r}: unknown recipe field(s) {unknown}; known: {sorted(known)}")
        for merged in ("data", "model", "decoder_model"):
            if merged in changes:
                if not isinstance(changes[merged], dict):
                    raise ConfigError(f"task {self.name!r}: {merged} must be a mapping, got {changes[merged]!r}")
                changes[merged] = {**getattr(self, merged), **changes[merged]}
        if "formats" in changes:
            changes["formats"] = tuple(changes["formats"])
        return dataclasses.replace(self, **changes)


_DISPLAY_FIELDS = ("title", "metric", "formats")  # how the table names a task, not how a run of it trains
_FORMAT_ONLY = {"decoder_model": "decoder"}  # fields that one backbone kind alone reads


def _reads(field_name: str, fmt: str) -> bool:
    """Whether a run of backbone kind ``fmt`` (``encoder``/``decoder``) is shaped by the recipe field."""
    return field_name not in _DISPLAY_FIELDS and _FORMAT_ONLY.get(field_name, fmt) == fmt


def run_fields(recipe: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The fields of ``recipe`` (:meth:`TaskRecipe.as_record`) that shape a run of backbone kind ``fmt``: not the
    table's names for it, nor a field only the other kind reads. Two recipes with the same run fields train the
    same run; :func:`run_config` applies the same rule."""
    return {k: v for k, v in recipe.items() if _reads(k, fmt)}


def _nli(name: str, title: str, files: dict[str, Any]) -> TaskRecipe:
    return TaskRecipe(name, title, "lit_lm.data.NLIDataModule", {"task": name, **files})


_D = "{data_dir}/"
RECIPES: dict[str, TaskRecipe] = {
    r.name: r
    for r in (
        _nli("snli", "SNLI", {"train_files": [_D + "snli/dev.jsonl", _D + "counterfactual-snli/all_combined/train.tsv"],
                              "test_files": [_D + "snli-test-tokenized"]}),
        _nli("mnli", "MNLI-m", {"train_files": [_D + "mnli/dev.jsonl"], "test_fraction": 0.2}),
        _nli("rte", "RTE", {"train_files": [_D + "rte/test.jsonl"], "test_fraction": 0.2}),
        _nli("scitail", "SciTail", {"train_files": [_D + "scitail/test.jsonl"], "test_fraction": 0.2}),
        TaskRecipe("sst2", "SST-2", "lit_lm.data.TextClassificationDataModule",
                   {"task": "sst2", "train_files": [_D + "sst2/train.tsv"], "test_files": [_D + "sst2/dev.tsv"],
                    "group_by_length": True}, max_seq_length=64),
        TaskRecipe("cola", "CoLA", "lit_lm.data.TextClassificationDataModule",
                   {"task": "cola", "train_files": [_D + "cola/in_domain_train.tsv"],
                    "test_files": [_D + "cola/in_domain_dev.tsv", _D + "cola/out_of_domain_dev.tsv"],
                    "val_fraction": 0.1, "group_by_length": True}, metric="Matthews corr.", max_seq_length=64),
        TaskRecipe("stsb", "STS-B", "lit_lm.data.SentencePairDataModule",
                   {"task": "stsb", "train_files": [_D + "stsb/sts-train.csv"],
                    "test_files": [_D + "stsb/sts-test.csv"], "val_fraction": 0.1, "group_by_length": True},
                   metric="Pearson corr."),
        TaskRecipe("mrpc", "MRPC", "lit_lm.data.SentencePairDataModule",
                   {"task": "mrpc", "train_files": [_D + "mrpc/msr_paraphrase_train.txt"],
                    "test_files": [_D + "mrpc/msr_paraphrase_test.txt"], "val_fraction": 0.1,
                    "group_by_length": True}, metric="F1"),
        TaskRecipe("story_cloze", "Story Cloze", "lit_lm.data.MultipleChoiceDataModule",
                   {"train_files": [_D + "story-cloze-2016/cloze_test_val__spring2016 - cloze_test_ALL_val.csv"],
                    "test_files": [_D + "story-cloze-2016/cloze_test_test__spring2016 - cloze_test_ALL_test.csv"]},
                   task="lit_lm.tasks.MultipleChoice", max_steps=300, batch_size=16, val_check_interval=50),
        TaskRecipe("copa", "COPA", "lit_lm.data.MultipleChoiceDataModule",
                   {"reader": "copa", "train_files": [_D + "copa/balanced-copa-dev-all.xml"],
                    "test_files": [_D + "copa/test-explained.jsonl"]},
                   task="lit_lm.tasks.MultipleChoice", max_steps=300, batch_size=16, max_seq_length=64,
                   val_check_interval=50),
        TaskRecipe("squad", "SQuAD v1.1", "lit_lm.data.QuestionAnsweringDataModule",
                   {"train_files": [_D + "squad/dev-v1.1.json"], "test_articles": 8, "doc_stride": 32,
                    "max_query_length": 32, "group_by_length": True},  # windows that fit 128 positions too
                   task="lit_lm.tasks.QuestionAnswering", decoder_model={}, metric="F1", batch_size=16,
                   max_seq_length=256, val_check_interval=200),
        TaskRecipe("conll", "CoNLL-2003 NER", "lit_lm.data.TokenClassificationDataModule",
                   {"train_files": [_D + "conll2003/eng.train"], "test_files": [_D + "conll2003/eng.testa"],
                    "reader": "conll", "tag_scheme": "iob1", "group_by_length": True},
                   task="lit_lm.tasks.TokenClassification", decoder_model={}, metric="entity F1",
                   formats=("encoder",), val_check_interval=200),
    )
}  # fmt: skip


def load_recipes(overrides: dict[str, Any] | None = None, source: str = "recipes") -> dict[str, TaskRecipe]:
    """:data:`RECIPES` with ``overrides`` applied: ``{task: {field: value}}``, where the task ``all`` changes every
    recipe first, and an unknown task name adds a task (then ``title``, ``datamodule`` and ``data`` are needed)."""
    recipes = dict(RECIPES)
    overrides = dict(overrides or {})
    if not all(isinstance(v, dict) for v in overrides.values()):
        raise ConfigError(f"{source}: expected a mapping of task name -> recipe fields")
    everywhere = overrides.pop("all", {})
    recipes = {name: r.replace(**everywhere) for name, r in recipes.items()}
    for name, changes in overrides.items():
        if name in recipes:
            recipes[name] = recipes[name].replace(**changes)
            continue
        missing = [k for k in ("title", "datamodule", "data") if k not in changes]
        if missing:
            raise ConfigError(f"{source}: new task {name!r} needs {missing} (known tasks: {', '.join(RECIPES)})")
        base = TaskRecipe(name, changes["title"], changes["datamodule"], {})
        recipes[name] = base.replace(**{**everywhere, **changes})
    return recipes


def read_recipes(path: str | Path | None) -> dict[str, TaskRecipe]:
    """:func:`load_recipes` with the overrides of the YAML file ``path`` (read with ``yaml.safe_load``); ``None``:
    the defaults."""
    if path is None:
        return load_recipes()
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the recipes file ({e.strerror})") from None
    try:
        overrides = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: expected a mapping of task name -> recipe fields")
    return load_recipes(overrides, source=str(path))


def _files(value: Any, data_dir: str) -> Any:
    if isinstance(value, str) and value.startswith(_D):
        return str(Path(data_dir) / value.removeprefix(_D))
    if isinstance(value, list):
        return [_files(v, data_dir) for v in value]
    return value


def run_config(
    recipe: TaskRecipe,
    checkpoint: str,
    architecture: TransformerConfig,
    arm: str,
    seed: int,
    run_dir: str | Path,
    data_dir: str = DEFAULT_DATA_DIR,
    max_steps: int | None = None,
    trainer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of one ``fit``: ``recipe`` on ``checkpoint`` (``arm`` ``pretrained``: its weights;
    ``scratch``: its architecture, randomly initialised), both arms reading the data with the checkpoint's
    tokenizer; ``seed`` seeds the initialisation of new weights, dropout, the data order and the validation
    hold-out. ``max_steps`` replaces the recipe's budget; ``trainer`` adds Trainer settings."""
    if arm not in ("pretrained", "scratch"):
        raise ConfigError(f"arm must be 'pretrained' or 'scratch', got {arm!r}")
    fmt = "decoder" if architecture.causal else "encoder"
    steps = max_steps if max_steps is not None else recipe.max_steps
    model: dict[str, Any] = {
        **recipe.model,
        **(recipe.decoder_model if _reads("decoder_model", fmt) else {}),
        "learning_rate": recipe.learning_rate,
        "warmup_steps": recipe.warmup_steps,
        "lr_schedule": "linear",
    }
    # what may differ from the checkpoint's config (dropout, the attention backend), the same in both arms
    tuned = dict(model.pop("config", None) or {})
    if recipe.dropout is not None:
        tuned = {"dropout": recipe.dropout, "attention_dropout": recipe.dropout, **tuned}
    changed = sorted(set(tuned) - set(TUNABLE_FIELDS))
    if changed:
        raise ConfigError(f"task {recipe.name!r}: model.config may change only {list(TUNABLE_FIELDS)} of the "
                          f"checkpoint's architecture (both arms share it), not {changed}")  # fmt: skip
    if arm == "pretrained":
        model.update(init_from=str(checkpoint), config=tuned)
    else:  # the same network, new weights: every architecture field of the checkpoint, none of its tensors
        arch = {k: v for k, v in architecture.to_dict().items() if k not in ("name", "vocab_size")}
        model.update(init_from=None, preset="gpt-mini" if architecture.causal else "bert-mini",
                     config={**arch, **tuned})  # fmt: skip
    data = {k: _files(v, data_dir) for k, v in recipe.data.items()}
    data.update(tokenizer=str(checkpoint), format=fmt, seed=seed, batch_size=recipe.batch_size,
                max_seq_length=min(recipe.max_seq_length, architecture.n_positions))  # fmt: skip
    return {
        "seed_everything": seed,
        "trainer": {
            "default_root_dir": str(run_dir),
            "max_steps": steps,
            "max_epochs": -1,
            "val_check_interval": min(recipe.val_check_interval, steps),
            "check_val_every_n_epoch": None,
            "gradient_clip_val": 1.0,
            "log_every_n_steps": max(1, min(50, steps)),
            "enable_progress_bar": False,
            **(trainer or {}),
        },
        "model": {"class_path": recipe.task, "init_args": model},
        "data": {"class_path": recipe.datamodule, "init_args": data},
    }
