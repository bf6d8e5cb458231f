"""The one exception type every lit_lm data reader raises on bad input."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
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
