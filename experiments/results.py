"""Reproduce the README's Results: run the real-data experiments of ``experiments/cpu`` (every fine-tuning arm with
several seeds), record one line per run, and generate the table and plots from the records.

    python experiments/results.py run                        # all, prerequisites first (hours on 2 CPU cores)
    python experiments/results.py run snli_gpt_scratch       # some (their prerequisites must have run before)
    python experiments/results.py run snli_from_gpt --seeds 1   # one seed of an arm
    python experiments/results.py report                     # print the table
    python experiments/results.py run --record               # records -> experiments/results.json
    python experiments/results.py report --record            # table + plots -> README.md, experiments/plots
    python experiments/results.py suite gpt_gutenberg --tasks snli,mnli --record   # a piece of a cross-task table

Recording is opt-in, since it rewrites tracked files: without ``--record``, ``run`` keeps its records in
``runs/cpu/results.json`` (beside the runs, untracked) and ``report`` prints the table of the recorded runs with
those of ``runs/cpu/results.json`` in place of the same name and seed, writing nothing. ``make results`` does both
with ``--record``.

A run is ``python -m lit_lm fit --config experiments/cpu/<name>.yaml`` (then ``test --ckpt_path best`` for the
fine-tuning runs) in a fresh ``runs/cpu/<name>`` (pretraining: the path the fine-tuning configs read) or
``runs/cpu/<name>/seed<N>`` (with ``--seed_everything N --data.init_args.seed N``: the model's initialisation,
dropout, data order and validation hold-out all follow the seed). Each finished run replaces its record (same name
and seed) in ``experiments/results.json`` (with ``--record``; else in ``runs/cpu/results.json``): ``name, family,
init, seed, task, metric, value, steps, tokens, wall_s, machine, precision`` plus the timings. Budgets are optimizer
steps (``max_steps`` in the configs), so a record is reproducible on any machine; ``wall_s`` says what it cost on the
one that ran it. ``report --record`` keeps the plotted series (each pretraining run, each fine-tuning arm's first
seed) in ``experiments/curves.json``, committed beside the records, so a checkout without ``runs/cpu`` redraws the
same figures. Data: ``../shared/data`` beside the checkout; the MiniLM runs need ``make minilm``.

The cross-task tables (:data:`SUITES`) are ``python -m lit_lm suite`` runs of one checkpoint each, on every task of
:mod:`lit_lm.suite.recipes`; ``suite NAME --record`` keeps their records in ``experiments/suite/NAME/<checkpoint
fingerprint>.json`` (tracked), so a table is run in pieces (``--tasks``, ``--seeds``) across sessions: a piece skips
the runs recorded there. Weights are not committed, so a session that has to pretrain the checkpoint again gets
another fingerprint and file; :func:`suite_records` takes each task's rows from one of them.
``report --record`` writes each table and its bar chart into the README's suite block.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "cpu"
PLOTS = ROOT / "experiments" / "plots"
README = ROOT / "README.md"
RESULTS_JSON = ROOT / "experiments" / "results.json"
CURVES_JSON = ROOT / "experiments" / "curves.json"  # the plotted series, kept so a checkout without runs/ redraws them
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SUITE_BEGIN, SUITE_END = "<!-- suite:begin -->", "<!-- suite:end -->"
SUITE_RECORDS = ROOT / "experiments" / "suite"  # <name>/<fingerprint>.json: each cross-task table's records (tracked)
SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # the table's description of the run
    metric: str  # TensorBoard tag of the headline number (its last value)
    unit: str  # "bpc", "%" (a fraction shown x 100 with %), or "x100" (a correlation or F1 shown x 100, GLUE-style)
    family: str  # "gpt" or "bert"
    init: str  # "scratch", "pretrained" or "imported"
    task: str
    reference: str = ""
    at_most: float | None = None  # target: the mean at most this (bpc)
    at_least: float | None = None  # target: the mean at least this (accuracy, a fraction)
    beats: str = ""  # target: above this experiment, paired by seed (pretrained vs scratch)
    beats_by: float = 0.0  # ... by at least this much on average, and by more than the gap's standard deviation
    needs: tuple[str, ...] = ()
    test: bool = False  # run `test --ckpt_path best` after fit
    final_validate: bool = False  # run `validate --ckpt_path last` over the whole validation set after fit
    extra: tuple[str, ...] = field(default=())  # further metrics shown beside the headline one
    seeds: tuple[int, ...] = ()  # empty: one run with the config's own seed

    @property
    def config(self) -> str:
        return f"experiments/cpu/{self.name}.yaml"

    @property
    def target(self) -> str:
        if self.at_most is not None:
            return f"<= {self.at_most} {self.unit}"
        if self.at_least is not None:
            return f">= {100 * self.at_least:.0f}{'%' if self.unit == '%' else ''}"
        if self.beats:
            margin = f" by >= {100 * self.beats_by:.0f} pts" if self.beats_by else ""
            return f"> {self.beats}{margin}"
        return ""

    def run_dir(self, seed: int | None) -> Path:
        return RUNS / self.name if seed is None else RUNS / self.name / f"seed{seed}"


NANOGPT_BPC, NANOGPT_S = 2.739, 78  # benchmarks/nanogpt_shakespeare.py, 2026-12-02, Xeon, 2 cores (RESULTS.md)
NANOGPT = f"nanoGPT's CPU baby GPT (char-level, 2000 iters in fp32: {NANOGPT_S} s here): {NANOGPT_BPC} bpc"
GPT1_SNLI = "GPT-1 (117M params, 550k SNLI training pairs): 89.9%"
GPT1_CLOZE = "GPT-1 (117M params): 86.5%"
BERT_MNLI = "the BERT paper has no SNLI row; BERT-base (110M) MNLI-m: 84.6%"
_FT = {"metric": "test/acc", "unit": "%", "test": True, "seeds": SEEDS}
EXPERIMENTS = [
    Experiment("gpt_shakespeare", "GPT, tiny shakespeare (2x128, byte-level BPE 2k), 80 s", "val/bpc", "bpc", "gpt",
               "scratch", "tinyshakespeare", NANOGPT, at_most=2.45),
    Experiment("gpt_gutenberg", "GPT pretraining, Gutenberg + KJV (gpt-mini 4x256, BPE 8k)", "val/bpc", "bpc", "gpt",
               "scratch", "gutenberg", extra=("val/loss", "baseline/unigram_bpc"), final_validate=True),
    Experiment("bert_gutenberg", "BERT pretraining, Gutenberg + KJV (bert-mini 4x256, WordPiece 8k)", "val/mlm_acc",
               "%", "bert", "scratch", "gutenberg", final_validate=True,
               extra=("val/mlm_loss", "baseline/unigram_loss", "baseline/unigram_acc", "val/nsp_acc")),
    Experiment("snli_gpt_scratch", "SNLI, GPT from scratch (the Gutenberg GPT's tokenizer and architecture)",
               family="gpt", init="scratch", task="snli", reference=GPT1_SNLI, needs=("gpt_gutenberg",), **_FT),
    Experiment("snli_from_gpt", "SNLI, GPT from the Gutenberg GPT", family="gpt", init="pretrained", task="snli",
               reference=GPT1_SNLI, beats="snli_gpt_scratch", beats_by=0.02, needs=("gpt_gutenberg",), **_FT),
    Experiment("snli_bert_scratch", "SNLI, BERT from scratch (the Gutenberg BERT's tokenizer and architecture)",
               family="bert", init="scratch", task="snli", reference=BERT_MNLI, needs=("bert_gutenberg",), **_FT),
    Experiment("snli_from_bert", "SNLI, BERT from the Gutenberg BERT", family="bert", init="pretrained", task="snli",
               reference=BERT_MNLI, beats="snli_bert_scratch", beats_by=0.02, needs=("bert_gutenberg",), **_FT),
    Experiment("snli_minilm", "SNLI, extra row: all-MiniLM-L6-v2 imported (6x384, its own tokenizer)",
               family="bert", init="imported", task="snli", reference=BERT_MNLI, at_least=0.80, **_FT),
    Experiment("story_cloze_gpt_scratch", "Story Cloze, GPT from scratch (the Gutenberg GPT's tokenizer and "
               "architecture)", family="gpt", init="scratch", task="story_cloze", reference=GPT1_CLOZE,
               needs=("gpt_gutenberg",), **_FT),
    Experiment("story_cloze_from_gpt", "Story Cloze, GPT from the Gutenberg GPT", family="gpt", init="pretrained",
               task="story_cloze", reference=GPT1_CLOZE, beats="story_cloze_gpt_scratch", beats_by=0.02,
               needs=("gpt_gutenberg",), **_FT),
    Experiment("story_cloze_minilm", "Story Cloze, extra row: all-MiniLM-L6-v2 imported", family="bert",
               init="imported", task="story_cloze", reference=GPT1_CLOZE, **{**_FT, "seeds": ()}),
    Experiment("sst2_minilm", "SST-2 (GLUE dev), all-MiniLM-L6-v2 imported, 1,000 steps", family="bert",
               init="imported", task="sst2", reference="BERT-base: 93.5%", at_least=0.85, **_FT),
    Experiment("cola_minilm", "CoLA (GLUE dev, in + out of domain), all-MiniLM-L6-v2 imported: Matthews corr. x 100",
               family="bert", init="imported", task="cola", reference="BERT-base: 52.1 (GLUE test)",
               **{**_FT, "metric": "test/mcc", "unit": "x100"}),
    Experiment("stsb_minilm", "STS-B (STS Benchmark test), all-MiniLM-L6-v2 imported: Pearson x 100", family="bert",
               init="imported", task="stsb", reference="BERT-base: 85.8 (GLUE test, Spearman)", at_least=0.80,
               extra=("test/spearman",), **{**_FT, "metric": "test/pearson", "unit": "x100"}),
    Experiment("mrpc_minilm", "MRPC (test), all-MiniLM-L6-v2 imported: F1 of 'paraphrase' x 100 (all-yes: 79.9)",
               family="bert", init="imported", task="mrpc", reference="BERT-base: 88.9 F1 (GLUE test)",
               at_least=0.80, extra=("test/acc",), **{**_FT, "metric": "test/f1", "unit": "x100"}),
    Experiment("squad_minilm", "SQuAD v1.1 (the dev file's last 8 articles; trained on its first 40), "
               "all-MiniLM-L6-v2 imported: F1 x 100", family="bert", init="imported", task="squad",
               reference="BERT-base: 88.5 F1 (all of dev, trained on train)", at_least=0.50,
               extra=("test/exact_match",), **{**_FT, "metric": "test/f1", "unit": "x100"}),
    Experiment("conll_minilm", "CoNLL-2003 NER (eng.testa), all-MiniLM-L6-v2 imported: entity F1 x 100",
               family="bert", init="imported", task="conll2003", reference="BERT-base: 96.4 F1 (eng.testa)",
               at_least=0.75, extra=("test/precision", "test/recall"), **{**_FT, "metric": "test/f1", "unit": "x100"}),
]  # fmt: skip
BY_NAME = {e.name: e for e in EXPERIMENTS}


@dataclass(frozen=True)
class SuiteRun:
    """A cross-task table: ``python -m lit_lm suite`` on one checkpoint (records:
    ``experiments/suite/NAME/<checkpoint fingerprint>.json``)."""

    name: str
    what: str
    checkpoint: str  # relative to the repository root
    scratch: bool  # add the from-scratch arm
    needs: str = ""  # the experiment whose run writes the checkpoint
    recipes: str = ""  # a recipes file (``--recipes``, relative to the repository root) for both arms, if any

    @property
    def records_dir(self) -> Path:
        return SUITE_RECORDS / self.name

    def records(self, fingerprint: str) -> Path:
        """The records of the runs on the checkpoint with this fingerprint (``lit_lm.suite.checkpoint_fingerprint``)."""
        return self.records_dir / f"{fingerprint}.json"


SUITES = [
    SuiteRun("gpt_gutenberg", "the Gutenberg GPT (gpt-mini 4x256, pre-LN, byte-level BPE 8k) against the same network "
             "from scratch", "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt", scratch=True, needs="gpt_gutenberg",
             recipes="experiments/suite/gutenberg_recipes.yaml"),
    SuiteRun("bert_gutenberg", "the Gutenberg BERT (bert-mini 4x256, pre-LN, WordPiece 8k) against the same network "
             "from scratch", "runs/cpu/bert_gutenberg/checkpoints/last.ckpt", scratch=True, needs="bert_gutenberg",
             recipes="experiments/suite/gutenberg_recipes.yaml"),
    SuiteRun("minilm", "all-MiniLM-L6-v2 imported (pretrained arm only)", "runs/hf/all-MiniLM-L6-v2", scratch=False),
]  # fmt: skip
SUITE_BY_NAME = {s.name: s for s in SUITES}
assert all(e.beats in BY_NAME for e in EXPERIMENTS if e.beats), "a target names an unknown experiment"


# ----------------------------------------------------------------------------------------------------------- run
def run(names: list[str], seeds: list[int] | None = None, record: bool = False) -> None:
    """Run the experiments named (all: ``[]``); each run's record goes to :func:`records_file` (``record``)."""
    chosen = [e for e in EXPERIMENTS if not names or e.name in names]
    unknown = set(names) - set(BY_NAME)
    if unknown:
        raise SystemExit(f"unknown experiment(s) {sorted(unknown)}; known: {', '.join(BY_NAME)}")
    for exp in chosen:
        for need in exp.needs:
            if not (RUNS / need / "checkpoints" / "last.ckpt").is_file():
                raise SystemExit(f"{exp.name} needs the checkpoint of {need}: run `python {__file__} run {need}`")
        for seed in seeds or exp.seeds or [None]:
            run_one(exp, seed, record)


def run_one(exp: Experiment, seed: int | None, record: bool = False) -> dict:
    root = exp.run_dir(seed)
    shutil.rmtree(root, ignore_errors=True)  # a fresh log directory: curves of older runs would mix in
    root.mkdir(parents=True)
    wall = {"started": time.time()}
    common = ["--config", exp.config, "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false"]
    if seed is not None:
        common += ["--seed_everything", str(seed), "--data.init_args.seed", str(seed)]
    commands = [["fit", *common]]
    if exp.final_validate:  # the curve reads a fixed part of the validation set; the final number all of it
        last = str(root / "checkpoints" / "last.ckpt")
        commands.append(["validate", *common, "--ckpt_path", last, "--trainer.limit_val_batches", "1.0"])
    if exp.test:
        commands.append(["test", *common, "--ckpt_path", "best"])
    for command in commands:
        print(f"\n=== {exp.name}: python -m lit_lm {' '.join(command)}", flush=True)
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "lit_lm", *command], cwd=ROOT, check=True)
        wall[f"{command[0]}_s"] = round(time.time() - t0, 1)
        (root / "wall.json").write_text(json.dumps(wall, indent=1))
    result = collect(exp, seed)
    path = records_file(record)
    save_record(result, path)
    print(f"\n=== {exp.name}: {exp.metric} {result['value']:.4g}; record -> {path}", flush=True)
    return result


def collect(exp: Experiment, seed: int | None) -> dict:
    """The record of one finished run, from its TensorBoard logs, saved config and wall times."""
    import yaml

    root = exp.run_dir(seed)
    logs = scalars(root)
    if exp.metric not in logs:
        raise SystemExit(f"{exp.name}: the run logged no {exp.metric} ({root / 'tensorboard'})")
    config_file = root / "tensorboard" / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    trainer = config.get("trainer") or {}
    steps = steps_done(logs)
    tokens = logs.get("throughput/tokens_seen", [(0, 0, 0.0)])[-1][2]
    t = timings(root, logs)
    return {
        "name": exp.name, "family": exp.family, "init": exp.init, "seed": seed if seed is not None else
        config.get("seed_everything"), "task": exp.task, "metric": exp.metric, "value": logs[exp.metric][-1][2],
        **{f"{tag}": logs[tag][-1][2] for tag in exp.extra if tag in logs},
        "steps": int(steps), "tokens": int(tokens), "wall_s": t.get("fit_s"), "machine": machine(),
        "precision": str(trainer.get("precision")), "prep_s": t.get("prep_s"), "train_s": t.get("train_s"),
        "test_s": t.get("test_s"), "validate_s": t.get("validate_s"), "date": datetime.date.today().isoformat(),
    }  # fmt: skip


def steps_done(logs: dict) -> int:
    """Optimizer steps of the fit: the step of the last ``throughput/tokens_seen`` (logged when training ends, at the
    trainer's global step); the last ``train/`` log (a point of the logging grid, 0-based) says less."""
    if "throughput/tokens_seen" in logs:
        return max(s for _, s, _ in logs["throughput/tokens_seen"])
    return max((s + 1 for tag, v in logs.items() if tag.startswith("train/") for _, s, _ in v), default=0)


def _read_json(path: Path, kind: type, default):
    """A results file of this script, or ``default`` when absent; a damaged one stops with its name, not a traceback."""
    if not path.is_file():
        return default
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}:{e.lineno}: not valid JSON ({e.msg}); restore it from git") from None
    if not isinstance(data, kind):
        raise SystemExit(f"{path}: expected a JSON {kind.__name__}, got {type(data).__name__}; restore it from git")
    return data


def _experiment_order(name: str) -> int:
    """Sort key: the order of EXPERIMENTS (unknown names last)."""
    return next((i for i, e in enumerate(EXPERIMENTS) if e.name == name), len(EXPERIMENTS))


def records_file(record: bool) -> Path:
    """Where runs keep their records: ``experiments/results.json`` (tracked, the README's source) with ``--record``,
    else ``runs/cpu/results.json`` beside the runs."""
    return RESULTS_JSON if record else RUNS / "results.json"


def load_records(path: Path | None = None) -> list[dict]:
    """The records in ``path`` (default: ``experiments/results.json``)."""
    return _read_json(path or RESULTS_JSON, list, [])


def _record_order(record: dict) -> tuple[int, int]:
    return _experiment_order(record["name"]), record["seed"] if record["seed"] is not None else -1


def save_record(record: dict, path: Path | None = None) -> None:
    """Replace the record of the same name and seed (a re-run) in ``path`` (default: ``experiments/results.json``),
    or add it."""
    path = path or RESULTS_JSON
    records = [r for r in load_records(path) if (r["name"], r["seed"]) != (record["name"], record["seed"])]
    records.append(record)
    records.sort(key=_record_order)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n")


def run_suite_piece(
    name: str, tasks: str | None, seeds: list[int] | None, record: bool, precision: str | None = None
) -> None:
    """``python -m lit_lm suite`` for the table ``name`` (some tasks and seeds, or all): records in
    ``experiments/suite/NAME/<fingerprint>.json`` with ``record``, else in
    ``runs/suite/NAME/<fingerprint>/records.json`` (the fingerprint of the checkpoint's bytes: one pretrained again is
    another checkpoint). ``precision`` pins the Trainer's (default: detected for the machine), e.g. ``32-true`` to
    add runs to a table measured in fp32 from a CPU that would pick bf16."""
    suite = SUITE_BY_NAME.get(name)
    if suite is None:
        raise SystemExit(f"unknown suite {name!r}; known: {', '.join(SUITE_BY_NAME)}")
    if not (ROOT / suite.checkpoint).exists():
        how = f"python {__file__} run {suite.needs}" if suite.needs else "make minilm"
        raise SystemExit(f"{suite.name} needs {suite.checkpoint}: run `{how}`")
    from lit_lm.suite.runner import checkpoint_fingerprint

    fingerprint = checkpoint_fingerprint(ROOT / suite.checkpoint)
    command = [sys.executable, "-m", "lit_lm", "suite", "--checkpoint", suite.checkpoint,
               "--out", f"runs/suite/{name}/{fingerprint}", "--scratch", str(suite.scratch).lower()]  # fmt: skip
    if suite.recipes:
        command += ["--recipes", suite.recipes]
    if tasks:
        command += ["--tasks", tasks]
    if seeds:
        command += ["--seeds", ",".join(str(s) for s in seeds)]
    if precision:
        command += ["--precision", precision]
    if record:
        command += ["--records", str(suite.records(fingerprint).relative_to(ROOT))]
    print(f"\n=== suite {name}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def suite_records(suite: SuiteRun) -> tuple[list[dict], dict[str, list[str]]]:
    """A cross-task table's records, and for each checkpoint fingerprint the tasks taken from it.

    Pieces run in sessions that had to pretrain the checkpoint again (the weights are not committed) have records of
    several checkpoints, one file each. Each task's rows all come from one of them: the one with the most runs of
    that task, then the newest (the latest ``finished`` time of its runs; records without one count by ``date``), so
    a task's arms and seeds always share one checkpoint and its tokenizer. Tasks come in the recipes' order.
    A record that ran with another recipe than today's (the defaults with the suite's recipes file) is left out,
    with a warning; one without ``recipe`` (written before records kept it) is taken as it is.
    """
    from lit_lm.suite import RecordsFile
    from lit_lm.suite.recipes import RECIPES

    today = suite_recipes(suite)
    groups = {}
    for path in sorted(suite.records_dir.glob("*.json")):
        current, stale = [], []
        for r in RecordsFile(path).load():
            (stale if "recipe" in r and _recipe_change(r, today.get(r["task"])) else current).append(r)
        for task in dict.fromkeys(r["task"] for r in stale):
            runs = [r for r in stale if r["task"] == task]
            print(f"warning: {os.path.relpath(path, ROOT)}: {len(runs)} run(s) of {task} left out of the table: "
                  f"{_recipe_change(runs[0], today.get(task))}; run them again", file=sys.stderr)
        if current:
            groups[path.stem] = current
    chosen: list[dict] = []
    used: dict[str, list[str]] = {}
    seen = list(dict.fromkeys(r["task"] for records in groups.values() for r in records))
    order = {name: i for i, name in enumerate(RECIPES)}
    for task in sorted(seen, key=lambda t: (order.get(t, len(order)), seen.index(t))):
        def weight(fingerprint: str, task: str = task) -> tuple[int, str]:
            runs = [r for r in groups[fingerprint] if r["task"] == task]
            return len(runs), max((str(r.get("finished") or r.get("date", "")) for r in runs), default="")

        best = max(groups, key=weight)
        chosen += [r for r in groups[best] if r["task"] == task]
        used.setdefault(best, []).append(task)
    return chosen, used


def suite_recipes(suite: SuiteRun) -> dict[str, dict]:
    """Today's recipe of each task of ``suite`` (the defaults with its recipes file), as records keep them."""
    from lit_lm.suite.recipes import read_recipes

    book = read_recipes(ROOT / suite.recipes if suite.recipes else None)
    return {name: r.as_record() for name, r in book.items()}


def _recipe_change(record: dict, now: dict | None) -> str:
    """How today's recipe ``now`` differs from the one ``record`` ran with, in the fields that change such a run
    (:func:`lit_lm.suite.recipes.run_fields` of the record's format); "" if in none."""
    from lit_lm.suite.recipes import run_fields

    if now is None:
        return "the task is no longer in the recipes"
    fmt = record.get("format", "encoder")
    then, now = run_fields(record["recipe"], fmt), run_fields(now, fmt)
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    if not changed:
        return ""
    return "recipe changed since: " + ", ".join(f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in changed)


def suite_block() -> str:
    """The README's suite block: each recorded cross-task table with its bar chart (drawn into experiments/plots)."""
    from lit_lm.suite import plot as suite_plot
    from lit_lm.suite import table as suite_table

    parts = [SUITE_BEGIN, "Generated by `experiments/results.py report --record` from `experiments/suite/*/*.json` "
             "(`python -m lit_lm suite` runs; how to read them: [docs/suite.md](docs/suite.md))."]  # fmt: skip
    for suite in SUITES:
        records, used = suite_records(suite)
        recipes = f"; recipes: the defaults with [`{Path(suite.recipes).name}`]({suite.recipes})" * bool(suite.recipes)
        parts += ["", f"**{suite.what}** (`python experiments/results.py suite {suite.name}`{recipes})", ""]
        if not records:
            parts.append("Not run yet.")
            continue
        figure = suite_plot(records, PLOTS / f"suite_{suite.name}.png")
        link = Path(os.path.relpath(figure, README.parent)).as_posix()
        parts += [suite_table(records), "", f"![suite_{suite.name}]({link})"]
        if len(used) == 1:
            parts += ["", f"Checkpoint fingerprint `{next(iter(used))}` (every row)."]
        else:
            titles = {r["task"]: r.get("title", r["task"]) for r in records}
            which = "; ".join(f"`{fp}`: {', '.join(titles[t] for t in tasks)}" for fp, tasks in used.items())
            again = (" The checkpoint was pretrained again by its config in the sessions that ran these pieces "
                     "(weights are not committed).") * bool(suite.needs)  # fmt: skip
            parts += ["", f"The rows come from {len(used)} checkpoints, by fingerprint: {which}. A task's arms and "
                      f"seeds share one checkpoint.{again}"]  # fmt: skip
    return "\n".join([*parts, SUITE_END])


# -------------------------------------------------------------------------------------------------------- report
def scalars(root: Path) -> dict[str, list[tuple[float, int, float]]]:
    """Every scalar in a run's TensorBoard logs (fit and test) as tag -> [(wall_time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[float, int, float]]] = {}
    for events in sorted((root / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(v) for tag, v in out.items()}


def timings(root: Path, logs: dict) -> dict[str, float]:
    """Seconds of the fit and test commands, and within the fit: of data preparation (process start to the first log:
    tokenizer, caches, model) and of training (first log to the last training/validation log)."""
    wall_file = root / "wall.json"
    wall = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
    out = {k: v for k, v in wall.items() if k.endswith("_s")}
    fit_end = wall["started"] + wall["fit_s"] if "started" in wall and "fit_s" in wall else float("inf")
    fit_events = [t for tag, v in logs.items() if tag.startswith(("train/", "val/")) for t, _, _ in v if t <= fit_end]
    if fit_events and "hp_metric" in logs:
        start = logs["hp_metric"][0][0]  # logged when training starts, after the DataModule's setup
        out["train_s"] = max(fit_events) - start
        if "started" in wall:
            out["prep_s"] = start - wall["started"]
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not run"
    if unit == "bpc":
        return f"{value:.3f}"
    return f"{100 * value:.1f}{'%' if unit == '%' else ''}"


def summary(values: list[float], unit: str) -> str:
    """``53.1% ± 1.2`` (mean ± sample standard deviation, n seeds) or the one value."""
    if len(values) == 1:
        return fmt(values[0], unit)
    scale = 1.0 if unit == "bpc" else 100.0
    return f"{fmt(statistics.mean(values), unit)} ± {scale * statistics.stdev(values):.{3 if unit == 'bpc' else 1}f}" \
        f" ({len(values)} seeds)"  # fmt: skip


def paired_gap(exp: Experiment, by_name: dict[str, list[dict]]) -> list[float]:
    """This arm minus its baseline, seed by seed (only seeds both have)."""
    base = {r["seed"]: r["value"] for r in by_name.get(exp.beats, [])}
    return [r["value"] - base[r["seed"]] for r in by_name.get(exp.name, []) if r["seed"] in base]


def passed(exp: Experiment, values: list[float], gap: list[float]) -> str:
    if not values or not exp.target:
        return ""
    if len(values) < len(exp.seeds):  # a target is of the mean over all the arm's seeds
        return f"pending ({len(values)} of {len(exp.seeds)} seeds)"
    mean = statistics.mean(values)
    if exp.at_most is not None:
        ok = mean <= exp.at_most
    elif exp.at_least is not None:
        ok = mean >= exp.at_least
    else:
        if len(gap) < len(exp.seeds):
            return f"pending ({len(gap)} of {len(exp.seeds)} paired seeds)"
        spread = statistics.stdev(gap) if len(gap) > 1 else 0.0
        ok = statistics.mean(gap) >= exp.beats_by and statistics.mean(gap) > spread
    return "met" if ok else "**missed**"


def table(records: list[dict] | None = None) -> str:
    records = load_records() if records is None else records
    by_name: dict[str, list[dict]] = {}
    for r in records:
        by_name.setdefault(r["name"], []).append(r)
    rows = [
        "| Run | Result | Gap to baseline (paired by seed) | Target | Reference | Steps | Tokens | Fit wall "
        "| Command |",
        "|---|---|---|---|---|---:|---:|---:|---|",
    ]
    for exp in EXPERIMENTS:
        runs = by_name.get(exp.name, [])
        values = [r["value"] for r in runs]
        shown = f"{exp.metric} {summary(values, exp.unit) if values else 'not run'}"
        for tag in exp.extra:
            extra = [r[tag] for r in runs if tag in r]
            if extra:
                shown += f", {tag} {statistics.mean(extra):.3f}" if tag.endswith(("loss", "bpc")) else \
                    f", {tag} {summary(extra, '%' if tag.endswith('acc') else 'x100')}"  # fmt: skip
        gap = paired_gap(exp, by_name) if exp.beats else []
        gap_text = ""
        if gap:
            spread = f" ± {100 * statistics.stdev(gap):.1f}" if len(gap) > 1 else ""
            gap_text = f"{100 * statistics.mean(gap):+.1f}{spread} pts vs {exp.beats} ({len(gap)} seeds)"
        target = f"{exp.target} {passed(exp, values, gap)}".strip()
        steps = _mean_int(runs, "steps")
        tokens = _mean_int(runs, "tokens")
        wall = [r["wall_s"] for r in runs if r.get("wall_s")]
        wall_text = f"{statistics.mean(wall):.0f} s" if wall else ""
        seeds = " --seeds 1" if exp.seeds else ""
        rows.append(f"| {exp.what} | {shown} | {gap_text} | {target} | {exp.reference} | {steps} | {tokens} | "
                    f"{wall_text} | `python experiments/results.py run {exp.name}{seeds}` |")  # fmt: skip
    return "\n".join(rows)


def _mean_int(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs if r.get(key)]
    return f"{round(statistics.mean(values)):,}" if values else ""


def machine() -> str:
    from lit_lm.suite.runner import machine as suite_machine  # one description of the machine for every record

    return suite_machine()


PLOTTED = ("val/bpc", "val/loss", "train/loss", "val/mlm_loss", "val/mlm_acc", "val/nsp_acc", "val/acc")


def curves() -> dict[str, dict[str, list[list[float]]]]:
    """The plotted series per experiment (its pretraining run, or a fine-tuning arm's first seed) as tag ->
    [[seconds since training started, step, value]]: from the run's TensorBoard logs where ``runs/cpu`` has them
    (and then saved into ``experiments/curves.json``), else as saved there by an earlier report."""
    saved = _read_json(CURVES_JSON, dict, {})
    recorded = {(r["name"], r["seed"]): r["value"] for r in load_records()}
    fresh = {}
    for exp in EXPERIMENTS:
        seed = (exp.seeds or (None,))[0]
        root = exp.run_dir(seed)
        if not (root / "tensorboard").is_dir():
            continue
        logs = scalars(root)
        tags = [t for t in logs if t in PLOTTED or t.startswith("baseline/unigram_")]
        if not tags:
            continue
        value = recorded.get((exp.name, seed)) if seed is not None else next(
            (v for (name, _), v in recorded.items() if name == exp.name), None)  # a pretraining run: its config's seed
        if exp.metric in logs and (value is None or abs(logs[exp.metric][-1][2] - value) > 1e-6):
            continue  # a local run that is not the recorded one (an experiment, a rerun): keep the recorded curve
        t0 = logs["hp_metric"][0][0] if "hp_metric" in logs else min(logs[t][0][0] for t in tags)
        fresh[exp.name] = {"seed": seed, "series": {
            t: [[round(w - t0, 1), s, round(v, 6)] for w, s, v in logs[t]] for t in tags}}  # fmt: skip
    if fresh:
        saved.update(fresh)
        saved = dict(sorted(saved.items(), key=lambda kv: _experiment_order(kv[0])))
        CURVES_JSON.parent.mkdir(parents=True, exist_ok=True)
        CURVES_JSON.write_text(json.dumps(saved, separators=(",", ":")) + "\n")
    return {name: entry["series"] for name, entry in saved.items()}


def plot(series_by_name: dict[str, dict]) -> list[Path]:
    """Draw the figures from the saved curves. A figure whose runs have no curves (a checkout without them in
    runs/cpu or curves.json) is not redrawn: its committed file stays, and it is listed as kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    written = []

    def curve(ax, name: str, tag: str, label: str, x: str = "step", scale: float = 1.0) -> None:
        series = series_by_name.get(name, {}).get(tag)
        if not series:
            return
        xs, last = [], 0
        for t, s, _ in series:  # a later `validate` logs at step 0: the checkpoint's point is the last step's
            last = s if s >= last else last
            xs.append(t if x == "time" else last)
        ax.plot(xs, [scale * v for _, _, v in series], marker="o" if len(series) < 30 else None, ms=3, label=label)

    def figure(filename: str, needs: tuple[str, ...], **kwargs):
        """A new figure, or None (the committed file kept) when a run it draws has no curves."""
        missing = [name for name in needs if name not in series_by_name]
        if missing:
            path = PLOTS / filename
            print(f"kept {path.name} as it was: no curves of {', '.join(missing)} (run them to redraw it)")
            if path.is_file():
                written.append(path)
            return None, None
        return plt.subplots(**kwargs)

    def save(fig, filename: str) -> None:
        for ax in fig.axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.tight_layout()
        path = PLOTS / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = figure("gpt_shakespeare.png", ("gpt_shakespeare",), figsize=(6, 4))
    if fig:
        shakespeare = series_by_name["gpt_shakespeare"]
        if "val/bpc" in shakespeare and "val/loss" in shakespeare:  # nats per token -> bits per character
            per_nat = shakespeare["val/bpc"][-1][2] / shakespeare["val/loss"][-1][2]
            curve(ax, "gpt_shakespeare", "train/loss", "lit_lm GPT, train (at val's chars/token)", x="time",
                  scale=per_nat)
        curve(ax, "gpt_shakespeare", "val/bpc", "lit_lm GPT, validation", x="time")
        ax.axhline(NANOGPT_BPC, color="gray", ls="--", label=f"nanoGPT baby GPT after {NANOGPT_S} s: {NANOGPT_BPC}")
        ax.axhline(2.45, color="green", ls=":", label="target 2.45")
        ax.set(xlabel="training seconds (2 CPU cores)", ylabel="bits per character", title="Tiny shakespeare")
        ax.set_ylim(2.0, 4.0)
        save(fig, "gpt_shakespeare.png")

    def unigram(ax, name: str, what: str, label: str, scale: float = 1.0) -> None:
        """The run's baseline/unigram_<what>: a context-free model's score, the line the curve must cross."""
        series = series_by_name.get(name, {}).get(f"baseline/unigram_{what}")
        if series:
            ax.axhline(scale * series[-1][2], color="gray", ls="--", label=label)

    fig, axes = figure("pretraining_gutenberg.png", ("gpt_gutenberg", "bert_gutenberg"), ncols=3, figsize=(14, 4))
    if fig:
        a1, a2, a3 = axes
        curve(a1, "gpt_gutenberg", "val/bpc", "GPT, validation")
        unigram(a1, "gpt_gutenberg", "bpc", "unigram model")
        a1.set(xlabel="optimizer step", ylabel="bits per character", title="GPT on Gutenberg + KJV")
        curve(a2, "bert_gutenberg", "val/mlm_loss", "BERT, validation")
        unigram(a2, "bert_gutenberg", "loss", "unigram model (entropy)")
        a2.set(xlabel="optimizer step", ylabel="MLM loss (nats per masked token)", title="BERT on Gutenberg + KJV")
        curve(a3, "bert_gutenberg", "val/mlm_acc", "MLM accuracy", scale=100)
        unigram(a3, "bert_gutenberg", "acc", "unigram model (most frequent token)", scale=100)
        curve(a3, "bert_gutenberg", "val/nsp_acc", "NSP accuracy", scale=100)
        a3.set(xlabel="optimizer step", ylabel="% of held-out masked tokens", title="BERT on Gutenberg + KJV")
        save(fig, "pretraining_gutenberg.png")

    for task in ("snli", "story_cloze"):
        arms = [e for e in EXPERIMENTS if e.task == task]  # the compared arms must be there; extra rows if they are
        fig, ax = figure(f"{task}.png", tuple(e.name for e in arms if e.init != "imported"), figsize=(6, 4))
        if fig:
            for exp in arms:
                curve(ax, exp.name, "val/acc", exp.name.removeprefix(task + "_"), x="step", scale=100)
            ax.set(xlabel="optimizer step", ylabel="validation accuracy (%)", title=f"{task}: fine-tuning (first seed)")
            save(fig, f"{task}.png")
    return written


def report(record: bool) -> None:
    """The results table. With ``record``: of ``experiments/results.json``, with the plots drawn into
    ``experiments/plots``, their series kept in ``experiments/curves.json`` and the block written into README.md (all
    tracked files). Without: printed only, of those records with the unrecorded runs' (``runs/cpu/results.json``)
    in place of the same name and seed."""
    if record:
        current = README.read_text()
        if BEGIN not in current or END not in current:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block to replace")
        records, source = load_records(), "`experiments/results.json`"
    else:
        unrecorded = load_records(records_file(False))
        replaced = {(r["name"], r["seed"]) for r in unrecorded}
        records = sorted([r for r in load_records() if (r["name"], r["seed"]) not in replaced] + unrecorded,
                         key=_record_order)  # fmt: skip
        source = f"`experiments/results.json` and the {len(unrecorded)} unrecorded runs of `runs/cpu/results.json`"
    text = table(records)
    plots = plot(curves()) if record else []
    machines = sorted({r["machine"] for r in records}) or [machine()]
    precisions = sorted({r["precision"] for r in records})
    block = "\n".join([
        BEGIN,
        f"Generated by `experiments/results.py report` from {source} ({len(records)} runs). "
        f"Measured on {'; '.join(machines)}, precision as detected for the CPU ({', '.join(precisions) or 'n/a'}). "
        "Budgets are optimizer steps (the configs' `max_steps`; tokens seen beside them); Fit wall is what one run "
        "took here. Fine-tuning arms: mean ± standard deviation over seeds; the gap is this arm minus its "
        "baseline seed by seed.",
        "",
        text,
        "",
        *[f"![{p.stem}]({Path(os.path.relpath(p, README.parent)).as_posix()})" for p in plots],
        END,
    ])  # fmt: skip
    print(block)
    if record:
        head, rest = current.split(BEGIN, 1)
        current = head + block + rest.split(END, 1)[1]
        if SUITE_BEGIN in current and SUITE_END in current:
            suites = suite_block()
            print(suites)
            head, rest = current.split(SUITE_BEGIN, 1)
            current = head + suites + rest.split(SUITE_END, 1)[1]
        README.write_text(current)
        print(f"\nwrote the table into {README}")
    else:
        print("\n(not recorded: `report --record` draws the plots and writes this table into README.md)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run experiments (all, or those named)")
    p_run.add_argument("names", nargs="*", help=f"any of: {', '.join(BY_NAME)}")
    p_run.add_argument("--seeds", type=int, nargs="+", help=f"seeds of the fine-tuning arms (default {SEEDS})")
    p_run.add_argument("--record", action="store_true", help="keep each run's record in experiments/results.json "
                       "(tracked: the README's source); default: runs/cpu/results.json")  # fmt: skip
    p_report = sub.add_parser("report", help="the table (and plots) of the records and the curves of the runs")
    p_report.add_argument("--record", action="store_true", help="write the table into README.md and the plots into "
                          "experiments/plots (their series: experiments/curves.json); default: print the table only")
    p_suite = sub.add_parser("suite", help="run (a piece of) a cross-task table: python -m lit_lm suite")
    p_suite.add_argument("name", help=f"one of: {', '.join(SUITE_BY_NAME)}")
    p_suite.add_argument("--tasks", help="comma-separated task names (default: every task the backbone runs)")
    p_suite.add_argument("--seeds", type=int, nargs="+", help=f"seeds (default {SEEDS})")
    p_suite.add_argument("--record", action="store_true", help="keep the records in experiments/suite/NAME/"
                         "<checkpoint fingerprint>.json (tracked: the README's source); default: under runs/suite/NAME")
    p_suite.add_argument("--precision", help="the Trainer's precision, e.g. 32-true (default: detected for the CPU)")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.names, args.seeds, args.record)
    elif args.command == "suite":
        run_suite_piece(args.name, args.tasks, args.seeds, args.record, args.precision)
    else:
        report(args.record)


if __name__ == "__main__":
    main()
