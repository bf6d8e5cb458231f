"""Reading torch files without running code from them.

A ``.ckpt``/``.bin`` file is a pickle, and unpickling can call any Python function the file names: a checkpoint
downloaded from somewhere else could run a program on your machine. Every checkpoint lit_lm reads (``init_from``,
a DataModule's ``tokenizer``, ``--ckpt_path``, ``pytorch_model.bin``) goes through :func:`load_torch_file`, which
uses ``torch.load(weights_only=True)``: only tensors and plain data (dicts, lists, numbers, strings) are rebuilt,
and a file that names anything else is refused before any of it runs. lit_lm's own checkpoints hold nothing else.

A file you trust that holds other objects (e.g. written by a LightningModule that saved custom classes in its
hyperparameters) can be read after an explicit opt-in: ``--trust_checkpoint true`` on the command line, or
``with lit_lm.trust_checkpoints(): ...`` in Python.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from lit_lm.errors import CheckpointError

__all__ = ["LIT_LM_KEY", "TRUST_HINT", "checkpoints_trusted", "load_torch_file", "read_checkpoint", "trust_checkpoints"]

#: Key under which lit_lm stores its own metadata (version, config, tokenizer) in a Lightning checkpoint.
LIT_LM_KEY = "lit_lm"

#: How to opt in, named in every refusal.
TRUST_HINT = (
    "only if you trust where the file comes from, read it anyway with --trust_checkpoint true "
    "(in Python: `with lit_lm.trust_checkpoints(): ...`), which lets the file run code"
)

# A context variable, not a global: an opt-in in one thread (or asyncio task) does not reach a load in another.
_trusted: ContextVar[bool] = ContextVar("lit_lm_trust_checkpoints", default=False)


def checkpoints_trusted() -> bool:
    """Whether the user opted in to unpickling arbitrary objects (:func:`trust_checkpoints`) in this context."""
    return _trusted.get()


@contextmanager
def trust_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within this block (this thread or task only), checkpoint files are read with
    ``torch.load(weights_only=False)``: they may run code.

    Use it only for files whose origin you trust. Nesting restores the previous setting on exit. Processes started
    by ``spawn`` (``strategy: ddp_spawn``) do not inherit it; the default ``ddp`` strategy re-runs the command line,
    so ``--trust_checkpoint true`` reaches every rank.
    """
    token = _trusted.set(bool(enabled))
    try:
        yield
    finally:
        _trusted.reset(token)


def _first_sentence(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0].rstrip(".")


def _refused_global(e: BaseException) -> str | None:
    """The ``module.name`` that ``weights_only`` refused, from torch's ``Unsupported global: GLOBAL x was not...``."""
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
    return m.group(1) if m else None


def load_torch_file(path: str | Path, what: str = "checkpoint", trust: bool | None = None) -> Any:
    """``torch.load`` a local file safely (``weights_only=True``) with one clear :class:`CheckpointError`.

    Args:
        path: The file.
        what: What the file should be, for messages (``checkpoint``, ``state dict``).
        trust: Allow arbitrary objects (``weights_only=False``); default: :func:`checkpoints_trusted`.

    Raises:
        CheckpointError: The file is missing, empty, truncated, not a torch file, or holds objects that a safe load
            refuses (the message names the first one and the opt-in).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: {what} file not found")
    if not p.is_file():
        raise CheckpointError(f"{p}: is a directory, not a {what} file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file, not a {what}")
    trusted = checkpoints_trusted() if trust is None else trust
    try:
        # memory-map zip-format files (torch.save's default) so that only the tensors used are read
        return torch.load(p, map_location="cpu", weights_only=not trusted, mmap=zipfile.is_zipfile(p))
    except pickle.UnpicklingError as e:
        name = _refused_global(e)
        if name is None:  # random bytes, or a pickle that uses what a safe load does not read
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
            stopped = f"; the safe load stopped at: {detail.group(1).strip()}" if detail else ""
            raise CheckpointError(
                f"{p}: not a readable {what} (corrupt, or not written by torch.save{stopped}); {TRUST_HINT}"
            ) from None
        raise CheckpointError(
            f"{p}: refused to load: the file refers to the Python object {name}, and rebuilding it could run "
            f"code, so a safe load (weights_only) stops (lit_lm's own checkpoints hold only tensors and plain "
            f"data); {TRUST_HINT}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, ImportError, AttributeError, KeyError,
            TypeError, IndexError, UnicodeDecodeError) as e:  # fmt: skip
        raise CheckpointError(
            f"{p}: not a readable {what} (truncated, or not written by torch.save): {_first_sentence(e)}"
        ) from None


def read_checkpoint(path: str | Path, trust: bool | None = None) -> dict[str, Any]:
    """Read a Lightning checkpoint (a dict with a ``state_dict``) safely (``trust``: see :func:`load_torch_file`);
    :class:`CheckpointError` otherwise."""
    ckpt = load_torch_file(path, "checkpoint", trust=trust)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt


def lit_lm_metadata(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The section lit_lm's tasks write into each checkpoint (``config``, ``tokenizer``, ``version``)."""
    meta = ckpt.get(LIT_LM_KEY)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: not written by a lit_lm task (no '{LIT_LM_KEY}' metadata)")
    return meta
