"""Resuming in the middle of an epoch: the DataModule half that records and restores where training stands in the
data (the samplers that skip what was consumed are in :mod:`lit_lm.data.core.samplers`), and the loader settings every
lit_lm DataModule shares.

The DataModule's ``state_dict`` (which Lightning stores in every checkpoint) records the epoch and how many training
batches of it the trainer has consumed; after ``load_state_dict`` the training sampler skips exactly those examples
once, so a run resumed mid-epoch sees the rest of the epoch's examples, none twice and none skipped (also under DDP,
where each rank continues its own shard; with a different number of processes the epoch starts again, with a
warning).
"""

from __future__ import annotations

import logging
import signal
import warnings
from typing import Any

import lightning as L

from lit_lm.data.core.samplers import ResumableSampler
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.errors import DataError

log = logging.getLogger(__name__)


class ResumableDataModule(L.LightningDataModule):
    """A DataModule whose training sampler (``self.train_sampler``, a :class:`ResumableSampler` with ``set_epoch``)
    continues mid-epoch after a resume; the base of every lit_lm DataModule that trains. Subclasses set
    ``batch_size``, ``seed`` and ``tokenizer`` (``vocab_size`` and ``pad_token_id`` follow from it), create
    ``train_sampler`` in ``train_dataloader`` and call :meth:`_apply_resume` on it there."""

    batch_size: int
    seed: int
    tokenizer: Tokenizer
    _resume_state: dict[str, Any] | None = None

    @property
    def vocab_size(self) -> int:
        """Size of the tokenizer's vocabulary (the model's embedding rows)."""
        return self.tokenizer.vocab_size

    @property
    def pad_token_id(self) -> int:
        """Id of ``[PAD]``."""
        return self.tokenizer.pad_id

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data, for the checkpoint: the epoch and how many of its training batches
        the trainer has consumed (batches prefetched by the DataLoader or its workers are not counted)."""
        trainer = self.trainer
        sampler: ResumableSampler | None = getattr(self, "train_sampler", None)
        if trainer is None or sampler is None:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        epoch, batches = int(epochs.processed), 0
        if epochs.started > epochs.processed:  # inside an epoch (between epochs the next one starts afresh)
            batches = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
            if batches >= trainer.num_training_batches:  # its last batch is done: the next epoch is next
                epoch, batches = epoch + 1, 0
        return {
            "epoch": epoch,
            "batches": batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": int(trainer.world_size),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the data where the checkpoint's training stopped: the next training epoch skips the examples of
        the batches already consumed (applied when the training DataLoader is next created)."""
        if state_dict:
            self._resume_state = dict(state_dict)

    def _apply_resume(self, sampler: ResumableSampler) -> None:
        """Fit the new training sampler to this run: shard it over the ranks unless the trainer says
        ``use_distributed_sampler: false``, and continue a resumed epoch where it stopped."""
        connector = getattr(self.trainer, "_accelerator_connector", None) if self.trainer is not None else None
        if hasattr(sampler, "sharded"):
            sampler.sharded = bool(getattr(connector, "use_distributed_sampler", True))
        state = self._resume_state
        if state is None:
            return
        self._resume_state = None
        epoch, batches = int(state["epoch"]), int(state["batches"])
        world = int(self.trainer.world_size) if self.trainer is not None else 1
        saved_world = int(state.get("world_size", 1))
        if batches and saved_world != world:
            log.warning(
                "the checkpoint stopped in the middle of epoch %d with %d processes, this run has %d: that epoch's "
                "data starts again from its first example", epoch, saved_world, world,
            )  # fmt: skip
            sampler.set_epoch(epoch)
            return
        saved_bs, saved_seed = int(state.get("batch_size", self.batch_size)), state.get("seed", self.seed)
        if saved_bs != self.batch_size or saved_seed != self.seed:
            log.warning(
                "the checkpoint was trained with batch_size=%d, seed=%s; this run has batch_size=%d, seed=%s: the "
                "rest of epoch %d is not the exact continuation", saved_bs, saved_seed, self.batch_size, self.seed,
                epoch,
            )  # fmt: skip
        consumed = batches * saved_bs * world  # all ranks together; rank r took every world-th example
        sampler.resume_from(epoch, consumed)
        if batches:
            log.info("resuming epoch %d after its first %d batches (%d examples)", epoch, batches, consumed)
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this DataModule does it itself.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")


def check_loader_settings(batch_size: int, num_workers: int) -> None:
    """:class:`DataError` naming ``batch_size`` < 1 or ``num_workers`` < 0 (every DataModule's loader settings)."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise DataError(f"num_workers must be >= 0, got {num_workers}")


def worker_ignores_interrupts(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops training cleanly with a
    checkpoint (a Ctrl-C reaches every process of the terminal's group; a dead worker would end the run with a
    ``DataLoader worker exited unexpectedly`` error instead). Workers still exit when the main process does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
