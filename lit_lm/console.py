"""What lit_lm's commands print: Lightning's known noise filtered, and a short report at the end of a run.

- :func:`quiet`: for the duration of a command (``python -m lit_lm ...``; entered by :func:`lit_lm.cli.main` and
  the data commands, never on import), hides the warnings and log lines listed in :data:`NOISE`: Lightning's
  advertising, deprecations inside Lightning that a user cannot act on, warnings that are wrong for the way lit_lm
  uses Lightning, and Lightning's "why training stopped" lines, which :func:`stop_reason` replaces with the true
  reason. Every other warning and log line still shows.
- :func:`fit_report` / :func:`evaluation_report`: the final metrics as a small table, why training stopped, and the
  logs and checkpoints a run wrote (only files that exist).
- :class:`FinalMetrics`: a callback that keeps the metrics of the last validation and the step it ran at.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lit_lm.callbacks import _clock, time_budget
from lit_lm.checkpointing import LastCheckpoint

__all__ = [
    "NOISE",
    "FinalMetrics",
    "Noise",
    "checkpoint_files",
    "evaluation_report",
    "fit_report",
    "metrics_table",
    "quiet",
    "stop_reason",
]

#: lit_lm's subcommands that only read a checkpoint (callback state such as a Timer's is only used by ``fit``).
_EVALUATION_COMMANDS = ("validate", "test", "predict")


@dataclass(frozen=True)
class Noise:
    """A known, harmless message: a Python warning (``kind="warning"``) or a Lightning log line (``kind="log"``).

    Attributes:
        kind: ``"warning"`` or ``"log"``.
        message: Regular expression matched against the start of the message.
        module: The module that emits it (for a warning, the module the warning is attributed to; for a log line,
            the module whose code logs it through Lightning's ``rank_zero_info``).
        why: Why it is hidden (for the reader of :data:`NOISE`).
        commands: Hidden only in these subcommands; empty: in every command.
    """

    kind: str
    message: str
    module: str
    why: str
    commands: tuple[str, ...] = ()

    def applies_to(self, command: str | None) -> bool:
        return not self.commands or command in self.commands


_PL = r"(?:lightning\.pytorch|pytorch_lightning)"
_FABRIC = r"(?:lightning\.fabric|lightning_fabric)"

#: Every message :func:`quiet` hides, in one place.
NOISE: tuple[Noise, ...] = (
    Noise("log", r"💡 Tip: For seamless cloud", rf"{_PL}\.trainer\.connectors\.(logger|callback)_connector",
          "advertising for Lightning's cloud services (litlogger, litmodels), on every run"),
    Noise("log", r"(TPU available: False|HPU available: False)", rf"{_PL}\.trainer\.setup",
          "accelerators this machine does not have"),
    Noise("log", r"Loading `train_dataloader` to estimate number of stepping batches", rf"{_PL}\.trainer\.trainer",
          "an internal step of the learning-rate schedule's set-up"),
    Noise("log", r"`Trainer\.fit` stopped: ", rf"{_PL}\.loops\.fit_loop",
          "names the loop's last check, not always what stopped training (a time limit reached in the last epoch "
          "reads `max_epochs=3` reached); lit_lm prints the true reason at the end"),
    Noise("log", r"Time limit reached\. Elapsed time is", rf"{_PL}\.callbacks\.timer",
          "lit_lm prints why training stopped at the end"),
    Noise("warning", r"`isinstance\(treespec, LeafSpec\)` is deprecated", rf"{_PL}\.utilities\._pytree",
          "a deprecation inside Lightning (torch >= 2.10), on every run; nothing for a user to change"),
    Noise("warning", r"Precision \S+-mixed is not supported by the model summary", rf"{_PL}\.utilities\.model_summary",
          "mixed precision keeps the weights in float32, so the 32-bit size the summary falls back to is right"),
    Noise("warning", r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",
          rf"{_PL}\.trainer\.call", "callback state (a Timer's elapsed time) matters only to a fit that resumes",
          _EVALUATION_COMMANDS),
    Noise("warning", r"The dirpath has changed from", rf"{_PL}\.callbacks\.model_checkpoint",
          "evaluating a checkpoint of another run directory: nothing is written to the directory it names",
          _EVALUATION_COMMANDS),
)  # fmt: skip

#: The loggers Lightning's ``rank_zero_info`` writes to (the last one imported wins; all are covered).
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)  # fmt: skip


class _LogFilter(logging.Filter):
    """Drops the log records of :data:`NOISE` (matched by message and by the module that logged them)."""

    def __init__(self, noise: list[Noise]) -> None:
        super().__init__()
        self._noise = [(re.compile(n.message), re.compile(n.module)) for n in noise]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        module = _module_of(record.pathname)
        return not any(msg.match(message) and mod.match(module) for msg, mod in self._noise)


def _module_of(pathname: str) -> str:
    """``.../site-packages/lightning/pytorch/loops/fit_loop.py`` -> ``lightning.pytorch.loops.fit_loop``."""
    parts = Path(pathname).with_suffix("").parts
    for top in ("lightning", "pytorch_lightning", "lightning_fabric"):
        if top in parts:
            index = len(parts) - 1 - parts[::-1].index(top)
            return ".".join(parts[index:])
    return ".".join(parts[-1:])


@contextlib.contextmanager
def quiet(command: str | None = None) -> Iterator[None]:
    """Hide :data:`NOISE` (the entries for ``command``, a subcommand such as ``"fit"``) while the block runs.

    Warnings filters are restored on exit (:func:`warnings.catch_warnings`) and the log filter is removed, so a
    process that runs commands in turn (tests) keeps its own settings. Not thread-safe, as ``catch_warnings``.
    """
    noise = [n for n in NOISE if n.applies_to(command)]
    log_filter = _LogFilter([n for n in noise if n.kind == "log"])
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    with warnings.catch_warnings():
        for n in noise:
            if n.kind == "warning":
                warnings.filterwarnings("ignore", message=n.message, module=n.module)
        for logger in loggers:
            logger.addFilter(log_filter)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(log_filter)


# ================================================================================================ final report
class FinalMetrics(L.Callback):
    """Keeps the metrics of the last validation during ``fit`` (not the sanity check) and the step it ran at."""

    def __init__(self) -> None:
        #: ``{name: value}`` of the last validation (names starting with ``val``).
        self.metrics: dict[str, float] = {}
        #: The optimizer step the last validation ran at (None: no validation ran).
        self.step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.metrics = _scalars(trainer.callback_metrics, prefix="val")
        self.step = trainer.global_step


def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The scalar entries of ``metrics`` whose names start with ``prefix``, as floats, sorted by name."""
    out = {}
    for name, value in sorted(metrics.items()):
        if not name.startswith(prefix):
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError, RuntimeError):  # a tensor with more than one element
            continue
    return out


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def metrics_table(metrics: Mapping[str, float], indent: str = "  ") -> list[str]:
    """``metrics`` as lines of a two-column table (names left, values right-aligned)."""
    return _table({name: _number(value) for name, value in metrics.items()}, indent, align_right=True)


def _table(rows: Mapping[str, str], indent: str, align_right: bool = False) -> list[str]:
    if not rows:
        return []
    name_width, value_width = max(map(len, rows)), max(map(len, rows.values()))
    align = ">" if align_right else "<"
    return [f"{indent}{name:<{name_width}}  {value:{align}{value_width}}".rstrip() for name, value in rows.items()]


def stop_reason(trainer: L.Trainer) -> str:
    """Why ``trainer.fit`` ended, the one true reason: interrupted (Ctrl-C/SIGTERM, by
    :class:`~lit_lm.checkpointing.LastCheckpoint`), ``fast_dev_run``, ``max_steps``, early stopping, the time limit
    (``max_time``), ``max_epochs``, another request to stop, or no training batches.

    Lightning's own line names the last check of its loop: a time limit reached in the last epoch reads as
    ``max_epochs`` reached; here the time limit wins when it set ``trainer.should_stop``.
    """
    for cb in trainer.callbacks:
        signum = getattr(cb, "interrupted_by", None) if isinstance(cb, LastCheckpoint) else None
        if signum is not None:
            return "interrupted by " + ("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)
    if trainer.fast_dev_run:
        n = int(trainer.fast_dev_run)
        return f"fast_dev_run={n} done (a smoke test of {n} batch{'es' if n > 1 else ''})"
    fit_loop = trainer.fit_loop
    if fit_loop.max_batches == 0:
        return "no training batches"
    if trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step:
        return f"max_steps={trainer.max_steps} reached"
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and _early_stopped(cb):
            detail = (getattr(cb, "stopping_reason_message", None) or "").removesuffix(" Signaling Trainer to stop.")
            return f"early stopping on {cb.monitor}" + (f": {detail.rstrip('.')}" if detail else "")
    budget = time_budget(trainer)
    if trainer.should_stop and budget is not None and budget[0] >= budget[1]:
        return f"time limit max_time={_clock(budget[1])} reached (elapsed {_clock(budget[0])})"
    max_epochs = fit_loop.max_epochs
    if max_epochs is not None and 0 <= max_epochs <= fit_loop.epoch_progress.current.processed:
        return f"max_epochs={max_epochs} reached"
    if trainer.should_stop:
        return "a callback or the model set trainer.should_stop"
    return "training ended"


def _early_stopped(cb: EarlyStopping) -> bool:
    reason = getattr(cb, "stopping_reason", None)  # Lightning >= 2.6: an EarlyStoppingReason
    if reason is not None:
        return reason.name != "NOT_STOPPED"
    return cb.stopped_epoch > 0 or cb.wait_count >= cb.patience


def checkpoint_files(trainer: L.Trainer) -> list[tuple[str, Path]]:
    """``(what, path)`` of the checkpoint files this run's checkpoint callbacks point to and that exist on disk."""
    found: dict[Path, str] = {}
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint):
            continue
        if isinstance(cb, LastCheckpoint):
            candidates = [("last", str(cb.last_path) if cb.dirpath else "")]
        else:
            best = f"best {cb.monitor}" if cb.monitor else "saved"
            candidates = [(best, cb.best_model_path), ("last", cb.last_model_path)]
        for what, path in candidates:
            if path and Path(path).is_file():
                found.setdefault(Path(path), what)
    return [(what, path) for path, what in found.items()]


def fit_report(trainer: L.Trainer, log_dir: str | None = None) -> str:
    """What ``fit`` prints at the end: why training stopped, the final metrics, the logs, the checkpoints."""
    lines = ["", f"lit_lm: training stopped at step {trainer.global_step}: {stop_reason(trainer)}."]
    final = next((cb for cb in trainer.callbacks if isinstance(cb, FinalMetrics)), None)
    if final is not None and final.step is not None and final.metrics:
        lines.append(f"  last validation (step {final.step}):")
        lines += metrics_table(final.metrics, indent="    ")
    elif final is None and _scalars(trainer.callback_metrics, prefix="val"):  # fit() outside the CLI: no step known
        lines.append("  last validation:")
        lines += metrics_table(_scalars(trainer.callback_metrics, prefix="val"), indent="    ")
    else:
        lines.append("  no validation ran")
    train = _scalars(trainer.callback_metrics, prefix="train")
    if train:
        lines.append("  training (last logged):")
        lines += metrics_table(train, indent="    ")
    if log_dir:
        lines.append(f"  TensorBoard logs: {log_dir}   (tensorboard --logdir {log_dir})")
    if trainer.fast_dev_run:
        lines.append("  checkpoints: none (fast_dev_run writes no checkpoint)")
    else:
        files = checkpoint_files(trainer)
        lines.append("  checkpoints:" if files else "  checkpoints: none written")
        lines += _table({what: str(path) for what, path in files}, indent="    ")
    return "\n".join(lines)


def evaluation_report(trainer: L.Trainer, stage: str) -> str:
    """What ``validate`` / ``test`` print at the end: which weights were evaluated and the metrics, as a table."""
    weights = trainer.ckpt_path or "no --ckpt_path: the weights the model was built with"
    metrics = _scalars(trainer.callback_metrics)
    lines = ["", f"lit_lm: {stage} results ({weights}):"]
    lines += metrics_table(metrics) or ["  no metrics were logged"]
    return "\n".join(lines)
