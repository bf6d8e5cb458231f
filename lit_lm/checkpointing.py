"""Fault tolerance for long runs: crash-safe checkpoint files, ``last.ckpt`` kept current, step-exact resume of the
random number streams, and a clean stop (with a checkpoint) on Ctrl-C or SIGTERM.

The pieces, which ``python -m lit_lm fit`` installs by default and any Lightning project can use::

    trainer = L.Trainer(
        plugins=[AtomicCheckpointIO()],                       # a kill during a write leaves the old file intact
        callbacks=[TrainingRNG(),                             # dropout masks continue exactly after a resume
                   LastCheckpoint("runs/x/checkpoints", every_n_train_steps=500, every_n_minutes=30)],
    )
    trainer.fit(model, datamodule, ckpt_path="last")

What a resume restores, and who does it: weights, optimizer, learning-rate schedule, step and epoch counters and
the logger's step (Lightning); the random streams that training steps draw from (:class:`TrainingRNG`); the
position in the epoch's data (the DataModule's ``state_dict``: see
:class:`lit_lm.data.CausalLMDataModule`). With all three, a run killed at any point and resumed from
its last checkpoint computes the same per-step losses as an uninterrupted run (CPU, fp32).
"""

from __future__ import annotations

import random
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_lm._lightning import is_local_path
from lit_lm.data.core.io import atomic_write
from lit_lm.errors import ConfigError
from lit_lm.serialization import checkpoints_trusted, read_checkpoint

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "TrainingRNG",
    "resume_command",
]

# ================================================================================================ checkpoint files
class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save``/``torch.load`` checkpoints, written crash-safe and read with clear errors.

    Saving (:func:`lit_lm.data.core.io.atomic_write`) writes ``.<name>.<pid>.<random>.tmp`` in the checkpoint's own
    directory, fsyncs it, moves it over ``<name>`` with :func:`os.replace` (an atomic rename on POSIX file systems)
    and fsyncs the directory. A process killed at any moment therefore leaves either the previous complete file or
    the new complete file, never a truncated one; the temporary file a killed writer leaves behind is removed by the
    next save of the same name. (Lightning's own ``TorchCheckpointIO`` stages the bytes in the system temp directory
    and moves them with ``shutil.move``: a plain copy, not atomic, when that directory is on another file system;
    and it does not fsync.)

    Loading raises :class:`~lit_lm.errors.CheckpointError` naming the file for a missing, truncated or foreign
    file, instead of a pickle or zip traceback.

    Remote paths (``s3://...``) are passed to ``TorchCheckpointIO`` unchanged.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (see the class docstring)."""
        if storage_options is not None or not is_local_path(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            self._write(checkpoint, f)

    def _write(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        """Serialise ``checkpoint`` into the open temporary ``file`` (override to change the format)."""
        torch.save(checkpoint, file)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint safely (:func:`lit_lm.serialization.load_torch_file`); :class:`CheckpointError`
        naming the file if it cannot be read or holds objects a safe load refuses.

        Arbitrary objects are unpickled only on an explicit opt-in: ``weights_only=False`` here (Lightning's
        ``trainer.fit(..., weights_only=False)``) or :func:`lit_lm.serialization.trust_checkpoints`.
        """
        trusted = weights_only is False or checkpoints_trusted()
        if not is_local_path(path):  # Lightning would default to an unsafe load for remote files
            return super().load_checkpoint(path, map_location, weights_only=not trusted)
        return read_checkpoint(path, trust=trusted)


# ================================================================================================ random streams
def _capture() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _to_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Plain tensors, ints and lists only, so that ``torch.load(weights_only=True)`` reads it."""
    kind, keys, pos, has_gauss, cached = state["numpy"]
    version, internal, gauss_next = state["python"]
    out = {
        "torch": state["torch"].clone(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if "cuda" in state:
        out["cuda"] = [s.clone() for s in state["cuda"]]
    return out


def _from_checkpoint(saved: dict[str, Any]) -> dict[str, Any]:
    n = saved["numpy"]
    p = saved["python"]
    state = {
        "torch": saved["torch"].to(torch.uint8).cpu(),
        "numpy": (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]),
        "python": (p["version"], tuple(p["internal"]), p["gauss_next"]),
    }
    if "cuda" in saved:
        state["cuda"] = [s.to(torch.uint8).cpu() for s in saved["cuda"]]
    return state


class TrainingRNG(L.Callback):
    """Gives training steps a random stream of their own and stores it in every checkpoint.

    Dropout (and anything else a training step draws from the torch, numpy or Python global generators) reads
    the global random state, which Lightning neither saves nor restores. Restoring it is not enough on its own:
    between two training steps Lightning and PyTorch draw from the same global generator for other purposes
    (each ``DataLoader`` iterator draws a base seed; a validation run creates one), so the state at a checkpoint
    is not the state the next step would have seen. This callback therefore swaps a dedicated training state in
    at ``on_train_batch_start`` and out at ``on_train_batch_end``: the training stream advances only by training
    steps, is saved in the checkpoint (``state_dict``) and continues exactly after a resume.

    Without a checkpoint the training stream starts from the global state at ``on_train_start`` (i.e. from
    ``seed_everything``), so runs with the same seed are reproducible as before.
    """

    def __init__(self) -> None:
        self._train: dict[str, Any] | None = None
        self._outside: dict[str, Any] | None = None
        self._loaded: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "TrainingRNG"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._loaded is not None:
            self._train, self._loaded = self._loaded, None
        elif self._train is None:
            self._train = _capture()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._train is None:  # fit started without on_train_start (should not happen); begin from here
            self._train = _capture()
        self._outside = _capture()
        _restore(self._train)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._train = _capture()
        if self._outside is not None:
            _restore(self._outside)
            self._outside = None

    def state_dict(self) -> dict[str, Any]:
        return {} if self._train is None else {"train": _to_checkpoint(self._train)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train" in state_dict:
            self._loaded = _from_checkpoint(state_dict["train"])


# ================================================================================================ last.ckpt
class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<dirpath>/last.ckpt`` current so that ``--ckpt_path last`` (``ckpt_path="last"``) resumes a run.

    ``last.ckpt`` is written (replacing the previous one):

    - every ``every_n_train_steps`` optimizer steps and/or every ``every_n_minutes`` minutes of training, at the
      end of the training step (a state from which the next step continues exactly);
    - with neither set: at the end of each validation (or of each epoch, when there is no validation);
    - at the end of training (at the last step when ``max_steps`` ends it), unless it was just written;
    - on Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send before preemption), with ``save_on_interrupt``:
      the signal only sets a flag; when the current training step (or the validation under way) ends,
      ``last.ckpt`` is written, training stops, and a message says how to resume (:attr:`resume_hint`). A second
      Ctrl-C stops at once without saving. :attr:`interrupted_by` tells the caller which signal it was.

    It keeps no other files (``save_top_k=0``); combine it with a ``ModelCheckpoint(monitor=...)`` for the best
    model. The file names are fixed (no ``last-v1.ckpt``): a new run in the same directory overwrites it.

    ``every_n_minutes`` is not Lightning's ``ModelCheckpoint(train_time_interval=...)``, which refuses to be combined
    with ``every_n_train_steps`` (mutually exclusive there) and does not restart its clock on a step-triggered save.
    The saving itself is ModelCheckpoint's (private members used: see :mod:`lit_lm._lightning`).

    Args:
        dirpath: Directory of ``last.ckpt`` (default: Lightning's ``<default_root_dir>/checkpoints``).
        every_n_train_steps: Save every N optimizer steps.
        every_n_minutes: Save when at least this many minutes of training have passed since the last save.
        save_on_interrupt: Stop cleanly with a checkpoint on SIGINT/SIGTERM.
        resume_hint: The command (or code) that resumes this run, printed after an interrupt; ``None``: a
            ``trainer.fit(..., ckpt_path=...)`` hint.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        save_on_interrupt: bool = True,
        resume_hint: str | None = None,
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigError(f"checkpoint_every_n_steps must be >= 1 (or null), got {every_n_train_steps}")
        if every_n_minutes is not None and not every_n_minutes > 0:
            raise ConfigError(f"checkpoint_every_n_minutes must be > 0 (or null), got {every_n_minutes}")
        super().__init__(
            dirpath=dirpath, filename=None, monitor=None, save_last=True, save_top_k=0,
            every_n_train_steps=every_n_train_steps, enable_version_counter=False,
        )  # fmt: skip
        self.every_n_minutes = every_n_minutes
        self.save_on_interrupt = save_on_interrupt
        self.resume_hint = resume_hint
        #: The signal that stopped training (``signal.SIGINT`` / ``signal.SIGTERM``), else ``None``.
        self.interrupted_by: signal.Signals | None = None
        self._periodic = every_n_train_steps is not None or every_n_minutes is not None
        self._last_save_time = time.monotonic()
        self._signal_received: signal.Signals | None = None
        self._previous_handlers: dict[signal.Signals, Any] = {}

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"  # stable when the save interval changes between a run and its resume

    # ------------------------------------------------------------------------------------------------ saving
    @property
    def last_path(self) -> Path:
        """Where ``last.ckpt`` goes (known once training is set up)."""
        return Path(str(self.dirpath)) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def save_now(self, trainer: L.Trainer) -> bool:
        """Write ``last.ckpt`` for the current step (unless already written at this step, or not fitting)."""
        if self._should_skip_saving_checkpoint(trainer):
            return False
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_save_time = time.monotonic()
        return True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_save_time = time.monotonic()
        self.interrupted_by = self._signal_received = None
        if self.save_on_interrupt:
            self._install_signal_handlers()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # every_n_train_steps
        if self._last_global_step_saved == trainer.global_step:
            self._last_save_time = time.monotonic()
        elif self.every_n_minutes is not None:
            due = time.monotonic() - self._last_save_time >= 60.0 * self.every_n_minutes
            if trainer.strategy.broadcast(due):
                self.save_now(trainer)
        if 0 <= trainer.max_steps <= trainer.global_step:
            # the last step: save now, in the middle of the epoch, rather than at on_train_end, where Lightning has
            # already closed the epoch; a run resumed with a larger max_steps then continues this epoch's data
            self.save_now(trainer)
        if self._stop_requested(trainer):
            self._stop(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._periodic and not self._should_save_on_train_epoch_end(trainer) and self._epoch_due(trainer):
            self.save_now(trainer)
        if not trainer.sanity_checking and self._stop_requested(trainer):
            self._stop(trainer)  # after the best-model checkpoint of this validation (an earlier callback)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._periodic and self._should_save_on_train_epoch_end(trainer) and self._epoch_due(trainer):
            self.save_now(trainer)

    def _epoch_due(self, trainer: L.Trainer) -> bool:
        return self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signal_handlers()
        if self.interrupted_by is None:
            self.save_now(trainer)
        elif trainer.is_global_zero:
            self._report_interrupt(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signal_handlers()  # no save: the state of an interrupted step is not one to resume from

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_signal_handlers()

    # ------------------------------------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous_handlers:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self._signal_received is not None and sig == signal.SIGINT:
            self._restore_signal_handlers()
            raise KeyboardInterrupt  # second Ctrl-C: stop now, without a checkpoint
        if self._signal_received is None:
            self._signal_received = sig
            what = "Ctrl-C" if sig == signal.SIGINT else sig.name
            print(
                f"\nlit_lm: {what} received: finishing the current step (or validation), then saving {self.last_path} "
                "and stopping"
                + (" (Ctrl-C again stops at once, without saving)" if sig == signal.SIGINT else ""),
                file=sys.stderr,
                flush=True,
            )

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        flag = self._signal_received is not None
        if trainer.world_size > 1:  # a signal may reach one rank only: stop together
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        return flag

    def _stop(self, trainer: L.Trainer) -> None:
        self.save_now(trainer)  # no-op when the periodic save just wrote this step
        self.interrupted_by = self._signal_received or signal.SIGTERM
        trainer.should_stop = True

    def _report_interrupt(self, trainer: L.Trainer) -> None:
        assert self.interrupted_by is not None
        what = "Ctrl-C" if self.interrupted_by == signal.SIGINT else self.interrupted_by.name
        hint = self.resume_hint or f"trainer.fit(model, datamodule, ckpt_path={str(self.last_path)!r})"
        print(
            f"lit_lm: stopped by {what} at step {trainer.global_step}; checkpoint saved: {self.last_path}\n"
            f"lit_lm: resume with:\n  {hint}",
            file=sys.stderr,
            flush=True,
        )


# ================================================================================================ CLI helper
def resume_command(argv: Sequence[str], program: str | None = None) -> str:
    """The shell command that resumes a run started with ``argv`` (the arguments after the program): the same
    arguments with ``--ckpt_path last`` in place of any ``--ckpt_path``."""
    args: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--ckpt_path":
            skip = True
            continue
        if a.startswith("--ckpt_path="):
            continue
        args.append(a)
    return f"{program or _program()} {shlex.join([*args, '--ckpt_path', 'last'])}"


def _program() -> str:
    """How this process was started: ``python -m lit_lm`` (with the interpreter's name when it is on PATH) or
    the ``lit_lm`` script."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if argv0.name not in ("__main__.py", "-m") and argv0.stem == "lit_lm":
        return shlex.quote(str(argv0)) if shutil.which(argv0.name) is None else argv0.name
    exe = Path(sys.executable)
    found = shutil.which(exe.name)
    python = exe.name if found and Path(found).resolve() == exe.resolve() else str(exe)
    return f"{shlex.quote(python)} -m lit_lm"
