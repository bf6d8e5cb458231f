"""Reproduce the README's Results: run the real-data experiments of ``experiments/cpu`` in turn, then tabulate and
plot them from their TensorBoard logs.

    python experiments/results.py run                  # all of them, prerequisites first (~100 min on 2 CPU cores)
    python experiments/results.py run snli_minilm      # some (their prerequisites must have run before)
    python experiments/results.py report               # table + plots -> experiments/plots, README.md

``make results`` does both. Each run is ``python -m lit_lm fit --config experiments/cpu/<name>.yaml`` (then ``test
--ckpt_path best`` for the fine-tuning runs) in a fresh ``runs/cpu/<name>``; the wall time of every command is kept
in ``runs/cpu/<name>/wall.json``. Data: ``../shared/data`` beside the checkout; the MiniLM runs need ``make minilm``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "cpu"
PLOTS = ROOT / "experiments" / "plots"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # the table's description of the run
    metric: str  # TensorBoard tag of the headline number (its last value)
    unit: str  # "bpc" or "%"
    reference: str = ""
    at_most: float | None = None  # target: the metric's last value at most this (bpc)
    at_least: float | None = None  # target: at least this (accuracy, a fraction)
    beats: str = ""  # target: above the result of this experiment (pretrained vs from scratch)
    needs: tuple[str, ...] = ()
    test: bool = False  # run `test --ckpt_path best` after fit
    extra: tuple[str, ...] = field(default=())  # further metrics shown beside the headline one

    @property
    def config(self) -> str:
        return f"experiments/cpu/{self.name}.yaml"

    @property
    def target(self) -> str:
        if self.at_most is not None:
            return f"<= {self.at_most} {self.unit}"
        if self.at_least is not None:
            return f">= {100 * self.at_least:.0f}%"
        return f"> {self.beats}" if self.beats else ""


NANOGPT_BPC = 2.739  # benchmarks/nanogpt_shakespeare.py, 2026-12-01, AMD EPYC 2 cores (see benchmarks/RESULTS.md)
NANOGPT = f"nanoGPT's CPU baby GPT (char-level, 2000 iters: 159 s here): {NANOGPT_BPC} bpc"
GPT1_SNLI = "GPT-1 (117M params, 550k SNLI training pairs): 89.9%"
GPT1_CLOZE = "GPT-1 (117M params): 86.5%"
BERT_MNLI = "the BERT paper has no SNLI row; BERT-base (110M) MNLI-m: 84.6%"
EXPERIMENTS = [
    Experiment("gpt_shakespeare", "GPT, tiny shakespeare (2x128, byte-level BPE 2k), 80 s", "val/bpc", "bpc",
               NANOGPT, at_most=2.45),
    Experiment("gpt_gutenberg", "GPT pretraining, Gutenberg + KJV (gpt-mini 4x256), 10 min", "val/bpc", "bpc",
               extra=("val/loss",)),
    Experiment("bert_gutenberg", "BERT pretraining, Gutenberg + KJV (bert-mini 4x256), 15 min", "val/mlm_acc", "%",
               extra=("val/nsp_acc",)),
    Experiment("snli_scratch", "SNLI (a) from scratch (gpt-mini 4x256), 8 min", "test/acc", "%", GPT1_SNLI, test=True),
    Experiment("snli_from_gpt", "SNLI (b) from the Gutenberg GPT, 8 min", "test/acc", "%", GPT1_SNLI,
               beats="snli_scratch", needs=("gpt_gutenberg",), test=True),
    Experiment("snli_from_bert", "SNLI (c) from the Gutenberg BERT, 8 min", "test/acc", "%", BERT_MNLI,
               beats="snli_scratch", needs=("bert_gutenberg",), test=True),
    Experiment("snli_minilm", "SNLI (d) from all-MiniLM-L6-v2 (imported, 6x384), 15 min", "test/acc", "%",
               BERT_MNLI, at_least=0.80, test=True),
    Experiment("story_cloze_scratch", "Story Cloze from scratch (gpt-mini 4x256), 4 min", "test/acc", "%", GPT1_CLOZE,
               test=True),
    Experiment("story_cloze_from_gpt", "Story Cloze from the Gutenberg GPT, 4 min", "test/acc", "%", GPT1_CLOZE,
               beats="story_cloze_scratch", needs=("gpt_gutenberg",), test=True),
    Experiment("story_cloze_minilm", "Story Cloze from all-MiniLM-L6-v2 (imported), 8 min", "test/acc", "%",
               GPT1_CLOZE, beats="story_cloze_scratch", test=True),
]
BY_NAME = {e.name: e for e in EXPERIMENTS}
assert all(e.beats in BY_NAME for e in EXPERIMENTS if e.beats), "a target names an unknown experiment"


# ----------------------------------------------------------------------------------------------------------- run
def run(names: list[str]) -> None:
    chosen = [e for e in EXPERIMENTS if not names or e.name in names]
    unknown = set(names) - set(BY_NAME)
    if unknown:
        raise SystemExit(f"unknown experiment(s) {sorted(unknown)}; known: {', '.join(BY_NAME)}")
    for exp in chosen:
        for need in exp.needs:
            if not (RUNS / need / "checkpoints" / "last.ckpt").is_file():
                raise SystemExit(f"{exp.name} needs the checkpoint of {need}: run `python {__file__} run {need}`")
        root = RUNS / exp.name
        shutil.rmtree(root, ignore_errors=True)  # a fresh log directory: curves of older runs would mix in
        root.mkdir(parents=True)
        wall = {"started": time.time()}
        commands = [["fit", "--config", exp.config, "--trainer.enable_progress_bar", "false"]]
        if exp.test:
            commands.append(["test", "--config", exp.config, "--ckpt_path", "best", "--trainer.enable_progress_bar",
                             "false"])  # fmt: skip
        for command in commands:
            print(f"\n=== {exp.name}: python -m lit_lm {' '.join(command)}", flush=True)
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "lit_lm", *command], cwd=ROOT, check=True)
            wall[f"{command[0]}_s"] = round(time.time() - t0, 1)
            (root / "wall.json").write_text(json.dumps(wall, indent=1))


# -------------------------------------------------------------------------------------------------------- report
def scalars(name: str) -> dict[str, list[tuple[float, int, float]]]:
    """Every scalar in the run's TensorBoard logs (fit and test) as tag -> [(wall_time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[float, int, float]]] = {}
    log_dir = RUNS / name / "tensorboard"
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(v) for tag, v in out.items()}


def timings(name: str, logs: dict) -> dict[str, float]:
    """Seconds of data preparation (process start to the first log: tokenizer, caches, model), of training (first
    log to the last training/validation log) and of the test command."""
    wall_file = RUNS / name / "wall.json"
    wall = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
    out = {k: v for k, v in wall.items() if k.endswith("_s")}
    fit_events = [t for tag, v in logs.items() if tag.startswith(("train/", "val/")) for t, _, _ in v]
    if fit_events and "hp_metric" in logs:
        start = logs["hp_metric"][0][0]  # logged when training starts, after the DataModule's setup
        out["train_s"] = max(fit_events) - start
        if "started" in wall:
            out["prep_s"] = start - wall["started"]
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not run"
    return f"{value:.3f}" if unit == "bpc" else f"{100 * value:.1f}%"


def passed(exp: Experiment, value: float | None, results: dict[str, float | None]) -> str:
    if value is None or not exp.target:
        return ""
    if exp.at_most is not None:
        ok = value <= exp.at_most
    elif exp.at_least is not None:
        ok = value >= exp.at_least
    else:
        base = results.get(exp.beats)
        if base is None:
            return ""
        ok = value > base
    return "met" if ok else "**missed**"


def machine() -> str:
    from lit_lm.hardware import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}"


def detected_precision() -> str:
    from lit_lm.hardware import detect_precision

    return f"`{detect_precision('cpu').precision}`"


def table() -> tuple[str, dict[str, dict]]:
    results: dict[str, float | None] = {}
    logs_by_name = {}
    for exp in EXPERIMENTS:
        logs = scalars(exp.name) if (RUNS / exp.name / "tensorboard").is_dir() else {}
        logs_by_name[exp.name] = logs
        results[exp.name] = logs[exp.metric][-1][2] if exp.metric in logs else None
    rows = [
        "| Run | Result | Target | Reference | Prep | Train | Test | Command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for exp in EXPERIMENTS:
        logs, value = logs_by_name[exp.name], results[exp.name]
        shown = f"{exp.metric} {fmt(value, exp.unit)}"
        for tag in (t for t in exp.extra if t in logs):
            last = logs[tag][-1][2]
            shown += f", {tag} {last:.3f}" if tag.endswith("loss") else f", {tag} {fmt(last, '%')}"
        t = timings(exp.name, logs)
        target = f"{exp.target} {passed(exp, value, results)}".strip()
        secs = [f"{t[k]:.0f} s" if k in t else "" for k in ("prep_s", "train_s", "test_s")]
        rows.append(f"| {exp.what} | {shown} | {target} | {exp.reference} | {' | '.join(secs)} | "
                    f"`python experiments/results.py run {exp.name}` |")  # fmt: skip
    return "\n".join(rows), logs_by_name


def plot(logs_by_name: dict[str, dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    written = []

    def curve(ax, name: str, tag: str, label: str, x: str = "step", scale: float = 1.0) -> None:
        series = logs_by_name.get(name, {}).get(tag)
        if not series:
            return
        t0 = logs_by_name[name]["hp_metric"][0][0] if "hp_metric" in logs_by_name[name] else series[0][0]
        xs = [(w - t0) if x == "time" else s for w, s, _ in series]
        ax.plot(xs, [scale * v for _, _, v in series], marker="o" if len(series) < 30 else None, ms=3, label=label)

    def save(fig, filename: str) -> None:
        for ax in fig.axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.tight_layout()
        path = PLOTS / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    shakespeare = logs_by_name.get("gpt_shakespeare", {})
    if "val/bpc" in shakespeare and "val/loss" in shakespeare:  # nats per token -> bits per character
        per_nat = shakespeare["val/bpc"][-1][2] / shakespeare["val/loss"][-1][2]
        curve(ax, "gpt_shakespeare", "train/loss", "lit_lm GPT, train (at val's chars/token)", x="time", scale=per_nat)
    curve(ax, "gpt_shakespeare", "val/bpc", "lit_lm GPT, validation", x="time")
    ax.axhline(NANOGPT_BPC, color="gray", ls="--", label=f"nanoGPT baby GPT after 159 s: {NANOGPT_BPC}")
    ax.axhline(2.45, color="green", ls=":", label="target 2.45")
    ax.set(xlabel="training seconds (2 CPU cores)", ylabel="bits per character", title="Tiny shakespeare")
    ax.set_ylim(2.0, 4.0)
    save(fig, "gpt_shakespeare.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    curve(a1, "gpt_gutenberg", "val/bpc", "GPT val bpc", x="time")
    a1.set(xlabel="training seconds", ylabel="bits per character", title="GPT on Gutenberg + KJV")
    curve(a2, "bert_gutenberg", "val/mlm_acc", "MLM accuracy", x="time", scale=100)
    curve(a2, "bert_gutenberg", "val/nsp_acc", "NSP accuracy", x="time", scale=100)
    a2.set(xlabel="training seconds", ylabel="% (held-out documents)", title="BERT on Gutenberg + KJV")
    save(fig, "pretraining_gutenberg.png")

    for task in ("snli", "story_cloze"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for exp in EXPERIMENTS:
            if exp.name.startswith(task + "_"):
                curve(ax, exp.name, "val/acc", exp.name.removeprefix(task + "_"), x="time", scale=100)
        ax.set(xlabel="training seconds", ylabel="validation accuracy (%)", title=f"{task}: fine-tuning")
        save(fig, f"{task}.png")
    return written


def report(readme: bool) -> None:
    text, logs_by_name = table()
    plots = plot(logs_by_name)
    block = "\n".join([
        BEGIN,
        f"Measured on {machine()}, one run each (seeds in the configs), precision as detected for this CPU "
        f"({detected_precision()}). "
        "Prep: tokenizer training, data preparation and model set-up; Train: the fit's training and validation "
        "(bounded by the config's `max_time`); Test: the `test` command on the best checkpoint.",
        "",
        text,
        "",
        *[f"![{p.stem}]({Path(os.path.relpath(p, README.parent)).as_posix()})" for p in plots],
        END,
    ])  # fmt: skip
    print(block)
    if readme:
        current = README.read_text()
        if BEGIN not in current or END not in current:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block to replace")
        head, rest = current.split(BEGIN, 1)
        README.write_text(head + block + rest.split(END, 1)[1])
        print(f"\nwrote the table into {README}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run experiments (all, or those named)")
    p_run.add_argument("names", nargs="*", help=f"any of: {', '.join(BY_NAME)}")
    p_report = sub.add_parser("report", help="table + plots from the logs in runs/cpu")
    p_report.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    if args.command == "run":
        run(args.names)
    else:
        report(readme=not args.no_readme)


if __name__ == "__main__":
    main()
