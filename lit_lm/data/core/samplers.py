"""Training orders that derive from ``seed`` and the epoch only, shard themselves over the DDP ranks, and can skip
what a resumed run already consumed (:meth:`ResumableSampler.resume_from`; the DataModule half is
:mod:`lit_lm.data.core.resume`).

- :class:`ShardedSampler`: the base; :class:`lit_lm.data.pretraining.causal_lm.WindowSampler` and
  :class:`lit_lm.data.pretraining.masked_lm.PairSampler` build on it for pretraining.
- :class:`PermutationSampler` and :class:`LengthGroupedSampler`: the fine-tuning orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler

__all__ = ["LengthGroupedSampler", "PermutationSampler", "ResumableSampler", "ShardedSampler"]


class ResumableSampler:
    """Continues one epoch after the examples a resumed run had already trained on (once)."""

    epoch: int
    _resume: tuple[int, int] | None = None

    def resume_from(self, epoch: int, num_examples: int) -> None:
        """Continue in ``epoch`` after the first ``num_examples`` items of its order: the next iteration over that
        epoch leaves them out (later iterations, and an iteration over another epoch, do not).

        Under DDP ``num_examples`` counts all ranks (``batches * batch_size * world_size``, a multiple of the world
        size), so after dropping them every rank's share (:class:`ShardedSampler`: items ``r, r + W, ...``) is exactly
        the rest of its own shard, and each rank yields as many batches as the trainer still expects.
        """
        self.epoch = epoch
        self._resume = (epoch, num_examples)

    def _resumed(self, order: np.ndarray) -> np.ndarray:
        """``order`` (this epoch's items over all ranks) after a pending :meth:`resume_from`, which is used up."""
        if self._resume is None:
            return order
        epoch, n = self._resume
        self._resume = None
        if epoch != self.epoch or n <= 0:
            return order
        return order[n:]


class ShardedSampler(ResumableSampler, DistributedSampler):
    """A resumable training sampler that shards itself under DDP: every rank builds the same order over all ranks
    (:meth:`global_order`, from ``seed`` and the epoch) and takes every ``world_size``-th index of it from its rank on.

    It subclasses ``DistributedSampler`` only so that Lightning leaves it in place: Lightning wraps any other
    training sampler in a ``DistributedSamplerWrapper`` that shuffles the sampler's list once more (seeded by
    ``PL_GLOBAL_SEED`` and the epoch), so the order would no longer follow ``seed`` alone and, after
    :meth:`resume_from`, a rank would not continue its own shard. ``DistributedSampler.__init__`` is not called (it
    needs a process group at construction time): world size and rank are read when iterating, from
    ``torch.distributed`` (1 and 0 without a process group). Lightning calls ``set_epoch`` each epoch.

    Subclasses implement :meth:`_order`.

    Args:
        num_examples: Size of the dataset.
        seed: Base seed; the same seed and epoch give the same order.
        num_replicas: World size; None: from ``torch.distributed``.
        rank: This process's rank; None: from ``torch.distributed``.
    """

    def __init__(self, num_examples: int, seed: int, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.num_examples, self.seed = num_examples, seed
        self._num_replicas, self._rank = num_replicas, rank
        self.epoch = 0
        self.shuffle, self.drop_last = True, False

    #: False when the trainer was told not to shard training data (``use_distributed_sampler: false``): every rank
    #: then iterates the whole order, as Lightning's own loaders do in that case (set by the DataModule).
    sharded: bool = True

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if not self.sharded:
            return 1
        if self._num_replicas is not None:
            return self._num_replicas
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size()
        return 1

    @property
    def rank(self) -> int:  # type: ignore[override]
        if not self.sharded:
            return 0
        if self._rank is not None:
            return self._rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank()
        return 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        """This epoch's order of the ``num_examples`` indices over all ranks (may depend on ``num_replicas``)."""
        raise NotImplementedError

    def global_order(self) -> np.ndarray:
        """This epoch's order over all ranks, padded by repeating its first indices to a multiple of the world size
        (as ``DistributedSampler`` pads)."""
        order = self._order()
        pad = (-len(order)) % self.num_replicas
        return np.resize(order, len(order) + pad) if pad else order

    def _epoch_size(self) -> int:
        """Length of this epoch's :meth:`_order` (override when it varies by epoch)."""
        return self.num_examples

    def __len__(self) -> int:
        """Items this rank yields per epoch."""
        return math.ceil(self._epoch_size() / self.num_replicas)

    def shard(self) -> np.ndarray:
        """This rank's items of the epoch (after a pending :meth:`resume_from`, which is used up)."""
        return self._resumed(self.global_order())[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard().tolist())


class PermutationSampler(ShardedSampler):
    """A random order of all examples per epoch, derived from ``(seed, epoch)`` alone (never from global state),
    so that it is reproducible and a resumed run can continue it mid-epoch (:meth:`resume_from`).

    Use it as ``DataLoader(dataset, batch_size=batch_size, sampler=...)``. Under DDP every rank takes every
    ``world_size``-th index of the same permutation (padded by repeats as ``DistributedSampler`` pads); see
    :class:`~lit_lm.data.core.samplers.ShardedSampler`.

    Args:
        num_examples: Size of the dataset.
        seed: Base seed; the same seed and epoch give the same order.
        num_replicas: World size; None: from ``torch.distributed`` (1 without a process group).
        rank: This process's rank; None: from ``torch.distributed`` (0 without a process group).
    """

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples)


class LengthGroupedSampler(ShardedSampler):
    """Shuffled order in which neighbouring examples have similar lengths, so padded batches waste little.

    Each epoch: shuffle all indices (seeded by ``seed`` and the epoch), cut them into groups of ``mega_batches``
    batches, sort each group by length (longest first), cut it into batches, shuffle the batches, and put the
    batch holding the longest example first (an out-of-memory error shows at once).

    Use it as ``DataLoader(dataset, batch_size=batch_size, sampler=...)``. It is distributed-aware: under DDP
    (a ``torch.distributed`` process group is up when it is iterated) every rank builds the same global order
    with "batches" of ``batch_size * world_size`` indices and takes every ``world_size``-th index, so each
    rank's batch again holds similar lengths. Like every :class:`~lit_lm.data.core.samplers.ShardedSampler` it
    subclasses ``DistributedSampler`` only so that Lightning leaves it in place rather than wrapping it in a
    sampler that would reshuffle it; world size and rank are read when iterating, so it works without a process
    group too. Lightning calls ``set_epoch`` each epoch; a resumed run continues the epoch (:meth:`resume_from`).

    Args:
        lengths: Length of each example (for multiple choice, of its longest choice).
        batch_size: Batch size of the DataLoader (per device).
        seed: Base seed; the same seed and epoch give the same order.
        mega_batches: Batches per sorted group: larger groups pad less but shuffle less.
        num_replicas: World size; None: from ``torch.distributed`` (1 without a process group).
        rank: This process's rank; None: from ``torch.distributed`` (0 without a process group).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 42,
        mega_batches: int = 50,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        super().__init__(len(self.lengths), seed, num_replicas, rank)
        self.batch_size = batch_size
        self.mega_batches = max(1, mega_batches)

    def _order(self) -> np.ndarray:
        n, world = len(self.lengths), self.num_replicas
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng = np.random.default_rng([self.seed, self.epoch])
        unit = self.batch_size * world
        perm = rng.permutation(n)
        group = unit * self.mega_batches
        batches: list[np.ndarray] = []
        for start in range(0, n, group):
            chunk = perm[start : start + group]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + unit] for i in range(0, len(chunk), unit))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        longest = max(range(len(batches)), key=lambda i: int(self.lengths[batches[i]].max()))
        batches[0], batches[longest] = batches[longest], batches[0]
        return np.concatenate(batches)
