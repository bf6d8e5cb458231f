"""Kept for imports written before :mod:`lit_lm.errors`: ``from lit_lm.data.errors import DataError``."""

from lit_lm.errors import DataError

__all__ = ["DataError"]
