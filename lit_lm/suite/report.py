"""The suite's table and figure: per task the pretrained arm against the scratch arm, seed by seed.

Every main metric is shown x 100 (accuracy, F1, Matthews and Pearson correlation alike, as GLUE does), as the mean ±
the sample standard deviation over seeds; the gap is pretrained minus scratch paired by seed. The macro average is
GLUE's score: the mean over tasks of each task's main metric, computed per seed (over the seeds every task has).
Each row names its budget in optimizer steps, so a task trained longer or shorter than the others says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_lm.suite.runner import RECORDS, RecordsFile

__all__ = ["GOAL_POINTS", "plot", "table", "write_report"]

#: Pretraining pays off on a task when the paired gap is at least this many points (x 100).
GOAL_POINTS = 2.0


def _by(records: Sequence[dict[str, Any]], task: str, arm: str) -> dict[int, float]:
    return {int(r["seed"]): 100 * float(r["value"]) for r in records if r["task"] == task and r["arm"] == arm}


def _summary(values: Sequence[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in records))


def _macro(records: Sequence[dict[str, Any]], tasks: list[str], arm: str) -> dict[int, float]:
    """Seed -> the mean over tasks of the main metric (x 100), for the seeds that every task has in ``arm``."""
    per_task = [_by(records, t, arm) for t in tasks]
    seeds = set.intersection(*(set(p) for p in per_task)) if per_task else set()
    return {s: statistics.mean(p[s] for p in per_task) for s in sorted(seeds)}


def table(records: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of ``records`` (:class:`~lit_lm.suite.runner.RecordsFile`)."""
    tasks = _tasks(records)
    has_scratch = any(r["arm"] == "scratch" for r in records)
    head = ["task", "metric (x 100)", "steps", "pretrained", "seeds"]
    if has_scratch:
        head += ["scratch", f"gap (paired; goal >= {GOAL_POINTS:g})"]
    rows = [head, ["---"] * 2 + ["---:"] * (len(head) - 2)]
    mixed = []  # rows whose runs trained in more than one precision
    for task in tasks:
        first = next(r for r in records if r["task"] == task)
        precisions = sorted({str(r.get("precision")) for r in records if r["task"] == task})
        steps = sorted({r["steps"] for r in records if r["task"] == task and r.get("steps") is not None})
        if len(precisions) > 1:
            mixed.append(f"{first.get('title', task)} ({', '.join(precisions)})")
        pre, scr = _by(records, task, "pretrained"), _by(records, task, "scratch")
        row = [first.get("title", task), first.get("metric_title", first["metric"]),
               ", ".join(f"{s:,}" for s in steps), _summary(list(pre.values())),
               ", ".join(str(s) for s in sorted(set(pre) | set(scr)))]  # fmt: skip
        if has_scratch:
            gap = [pre[s] - scr[s] for s in sorted(set(pre) & set(scr))]
            verdict = "" if not gap else " ✓" if statistics.mean(gap) >= GOAL_POINTS else " ✗"
            row += [_summary(list(scr.values())), _summary(gap) + verdict]
        rows.append(row)
    if len(tasks) > 1:
        pre_macro = _macro(records, tasks, "pretrained")
        scr_macro = _macro(records, tasks, "scratch") if has_scratch else {}
        common = sorted(set(pre_macro) | set(scr_macro))
        row = ["**macro average**", "mean of the tasks", "", _summary(list(pre_macro.values())),
               ", ".join(str(s) for s in common) or "none common"]  # fmt: skip
        if has_scratch:
            paired = [pre_macro[s] - scr_macro[s] for s in sorted(set(pre_macro) & set(scr_macro))]
            row += [_summary(list(scr_macro.values())), _summary(paired)]
        rows.append(row)
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    budget = {r.get("max_steps_override") for r in records} - {None}
    notes = []
    if budget:
        notes.append(f"Budget: --max_steps {', '.join(str(b) for b in sorted(budget))} for every task (not the "
                     "recipes' budgets): a quick look, not a result.")  # fmt: skip
    if mixed:
        notes.append(f"Mixed precision within a row: {'; '.join(mixed)}; its runs did not train alike.")
    machines = sorted({r.get("machine", "?") for r in records})
    wall = sum(float(r.get("wall_s") or 0) for r in records)
    notes.append(f"{len(records)} runs, {wall / 60:.0f} min in all, on {'; '.join(machines)}; precision "
                 f"{', '.join(sorted({str(r.get('precision')) for r in records}))}.")  # fmt: skip
    checkpoints = sorted({r.get("checkpoint", "?") for r in records})
    return "\n".join([f"Checkpoint: {', '.join(checkpoints)}", "", *lines, "", *notes])


def plot(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A bar chart of ``records``: per task the arms' means (x 100) with the seeds' standard deviation as error
    bars, written as PNG (needs matplotlib: ``pip install lit_lm[experiments]``)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the suite's figure needs matplotlib: pip install 'lit_lm[experiments]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _tasks(records)
    arms = [a for a in ("pretrained", "scratch") if any(r["arm"] == a for r in records)]
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(tasks) + 1.5), 3.6))
    for i, arm in enumerate(arms):
        values = {j: list(_by(records, t, arm).values()) for j, t in enumerate(tasks)}
        shown = [j for j, v in values.items() if v]  # a task without runs of this arm has no bar (not a bar at 0)
        means = [statistics.mean(values[j]) for j in shown]
        errors = [statistics.stdev(values[j]) if len(values[j]) > 1 else 0.0 for j in shown]
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in shown]
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=arm, color=("tab:blue", "tab:gray")[i])
    titles = [next(r.get("title", t) for r in records if r["task"] == t) for t in tasks]
    ax.set_xticks(range(len(tasks)), titles, rotation=30, ha="right")
    ax.set_ylabel("main metric x 100 (test)")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(out: str | Path, figure: bool = True, records: str | Path | None = None) -> str:
    """Read ``records`` (default ``<out>/records.json``), write ``<out>/table.md`` and (``figure``, with matplotlib)
    ``<out>/suite.png``; return the table."""
    out = Path(out)
    source = Path(records) if records is not None else out / RECORDS
    records = RecordsFile(source).load()
    if not records:
        return f"{source}: no runs recorded yet"
    out.mkdir(parents=True, exist_ok=True)
    text = table(records)
    (out / "table.md").write_text(text + "\n")
    if figure:
        try:
            text += f"\n\nFigure: {plot(records, out / 'suite.png')}"
        except ImportError as e:
            text += f"\n\n(no figure: {e})"
    return text
