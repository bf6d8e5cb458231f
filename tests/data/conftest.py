"""Shared fixtures of the data tests (keep small)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (real public data); skips the test when absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(reason=f"real data folder {SHARED_DATA_DIR} is absent (it sits beside the checkout in CI)")
    return SHARED_DATA_DIR
