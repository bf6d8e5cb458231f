"""lit_lm's exceptions: one base class, so a caller (the CLI) catches every user-facing error in one place.

Each message says what was wrong, where (the setting, or file and line for data) and what to do.
"""

from __future__ import annotations

from pathlib import Path


class LitLMError(Exception):
    """Base of every error lit_lm raises on bad settings, data or files (never on its own bugs)."""


class ConfigError(LitLMError, ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


class CheckpointError(LitLMError, ValueError):
    """A checkpoint cannot be read, may not be read safely, or does not fit the model; the message names the file."""


class DataError(LitLMError, ValueError):
    """Bad input data or data settings. The message names the file and line (or the setting) and the fix.

    Args:
        message: What is wrong and what to do about it.
        path: The offending file, if any.
        line: 1-based line number in ``path``, if known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class NonFiniteLossError(LitLMError, RuntimeError):
    """Training produced a NaN or infinite loss (or non-finite weights); see :class:`lit_lm.callbacks.NaNGuard`."""
