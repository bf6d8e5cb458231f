"""Holding out a validation split: one seeded rule for corpus documents and fine-tuning examples alike."""

from __future__ import annotations

import numpy as np

from lit_lm.errors import DataError


def check_fraction(val_fraction: float) -> None:
    """:class:`DataError` unless ``0 < val_fraction < 1``."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")


def holdout_split(
    n: int,
    val_fraction: float,
    seed: int,
    count: int | None = None,
    what: str = "examples",
    hint: str = "pass val_files",
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_idx, val_idx)`` of ``n`` items: a seeded permutation's first ``count`` (default
    ``round(val_fraction * n)``, at least 1, at most ``n - 1``) are held out. The same ``n`` and seed always give
    the same split.

    Args:
        n: Number of items.
        val_fraction: Share held out when ``count`` is None.
        seed: Seed of the permutation.
        count: Exact number held out.
        what: What the items are, for messages (``examples``, ``documents``).
        hint: What to do when there are too few items to split.
    """
    if n < 2:
        raise DataError(f"cannot hold out a validation split from {n} {what} (at least 2 are needed); {hint}")
    if count is None:
        check_fraction(val_fraction)
        count = min(n - 1, max(1, round(val_fraction * n)))
    elif not 1 <= count < n:
        raise DataError(f"val_docs must be in [1, {n - 1}] for {n} {what}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[count:]), np.sort(perm[:count])
