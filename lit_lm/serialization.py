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

import _compat_pickle
import io
import os
import pickle
import pickletools
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
# None: not set in this context (a process started by ``spawn`` then reads the parent's opt-in: _TRUST_ENV).
_trusted: ContextVar[bool | None] = ContextVar("lit_lm_trust_checkpoints", default=None)
#: Set while a :func:`trust_checkpoints` block is open, so that processes it spawns (``strategy: ddp_spawn``, whose
#: ranks run the training in a fresh interpreter) inherit the opt-in; read only in such child processes.
_TRUST_ENV = "LIT_LM_TRUST_CHECKPOINTS"


def checkpoints_trusted() -> bool:
    """Whether the user opted in to unpickling arbitrary objects (:func:`trust_checkpoints`) in this context, or,
    in a process spawned from inside such a block (``ddp_spawn`` ranks), in its parent."""
    value = _trusted.get()
    if value is not None:
        return value
    import multiprocessing

    return multiprocessing.parent_process() is not None and os.environ.get(_TRUST_ENV) == "1"


@contextmanager
def trust_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within this block (this thread or task only, and the processes it spawns, e.g. the ranks of
    ``strategy: ddp_spawn``), checkpoint files are read with ``torch.load(weights_only=False)``: they may run code.

    Use it only for files whose origin you trust. Nesting restores the previous setting on exit. The default ``ddp``
    strategy re-runs the command line, so ``--trust_checkpoint true`` reaches every rank that way.
    """
    token = _trusted.set(bool(enabled))
    previous = os.environ.get(_TRUST_ENV)
    os.environ[_TRUST_ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        _trusted.reset(token)
        if previous is None:
            os.environ.pop(_TRUST_ENV, None)
        else:
            os.environ[_TRUST_ENV] = previous


def _first_sentence(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0].rstrip(".")


# Modules (by top-level package) whose objects run commands or code, import code, unpickle more data, or reach files
# and the network: a checkpoint has no reason to name any of them, so a file that does is refused without offering
# the opt-in. A harmless unknown class (a user's own dataclass, a pathlib.Path in hyperparameters) keeps the opt-in.
_DANGEROUS_MODULES = frozenset({
    # processes and the operating system
    "os", "posix", "nt", "subprocess", "commands", "popen2", "_posixsubprocess", "pty", "multiprocessing",
    "concurrent", "asyncio", "signal", "sys", "platform", "webbrowser",
    # running, compiling or importing code, and reaching any attribute or memory
    "code", "codeop", "runpy", "importlib", "imp", "pkgutil", "zipimport", "ctypes", "_ctypes", "cffi",
    "operator", "pdb", "bdb", "timeit", "trace", "profile", "cProfile", "doctest",
    # unpickling (or evaluating) further data, which can name anything
    "pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib",
    # files and the network
    "io", "_io", "shutil", "tempfile", "glob", "fileinput", "socket", "_socket", "ssl", "http",
    "urllib", "urllib2", "ftplib", "smtplib", "telnetlib", "xmlrpc", "requests",
})  # fmt: skip
# Single objects of other modules that do the same: built-ins that run or compile code, import modules, reach any
# attribute or open files, and the types that build functions from code objects.
_DANGEROUS_NAMES = frozenset({
    *(f"builtins.{name}" for name in ("eval", "exec", "compile", "__import__", "__build_class__", "getattr",
                                      "setattr", "delattr", "open", "breakpoint", "globals", "locals", "vars",
                                      "input", "exit", "quit", "help")),
    "types.FunctionType", "types.LambdaType", "types.CodeType", "types.MethodType",
})  # fmt: skip
# The forms in which torch's weights_only unpickler names what it refused (torch 2.4 to 2.13).
_REFUSED_PATTERNS = (
    r"Unsupported global: GLOBAL (\S+) was not an allowed global",
    r"unsupported GLOBAL (\S+) whose module \S+ is blocked",
    r"Can only (?:create new object|build) .* but got <class '([^']+)'>",
)


def _normalize_global(name: str) -> str:
    """``module.name`` as Python 3 spells it: torch drops ``builtins.``, and protocol-2 pickles say ``__builtin__``
    and ``commands`` for ``builtins`` and ``subprocess``."""
    module, _, attr = name.partition(".")
    if not attr:
        return f"builtins.{name}"
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def _is_dangerous(name: str) -> bool:
    """Whether the global ``module.name`` runs commands or code or reaches files (``_DANGEROUS_MODULES``,
    ``_DANGEROUS_NAMES``)."""
    name = _normalize_global(name)
    module, _, attr = name.partition(".")
    return module in _DANGEROUS_MODULES or f"{module}.{attr.split('.')[0]}" in _DANGEROUS_NAMES


def _refused_global(e: BaseException) -> str | None:
    """The ``module.name`` that ``weights_only`` refused, in any of the wordings torch uses; None if it names none."""
    for pattern in _REFUSED_PATTERNS:
        m = re.search(pattern, str(e))
        if m:
            return _normalize_global(m.group(1))
    return None


def _globals_in_pickle(data: io.BytesIO) -> list[str]:
    """Every ``module.name`` the pickles in ``data`` name, read with :mod:`pickletools` (which runs nothing), in
    order; stops quietly where the bytes stop being a pickle."""
    found: list[str] = []
    pushed: list[Any] = []  # what each opcode pushed (strings; None for anything else), enough for STACK_GLOBAL
    memo: dict[int, Any] = {}
    try:
        while True:
            for op, arg, _ in pickletools.genops(data):
                if op.name in ("GLOBAL", "INST"):
                    module, _, name = str(arg).partition(" ")
                    found.append(f"{module}.{name}")
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                    found.append(f"{pushed[-2]}.{pushed[-1]}")
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE") and pushed:
                    memo[len(memo) if op.name == "MEMOIZE" else int(arg)] = pushed[-1]
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(arg)))
                elif op.stack_after:
                    pushed.append(arg if isinstance(arg, str) else None)
            if not data.read(1):  # a legacy torch file is several pickles in a row
                break
            data.seek(-1, io.SEEK_CUR)
    except (ValueError, EOFError):
        pass  # not (or no longer) a pickle: the globals found so far are all there are
    return found


def _globals_in_file(path: Path, limit: int = 64 << 20) -> list[str]:
    """The globals that the pickles of a torch file (zip: its ``.pkl`` members; else its first ``limit`` bytes)
    name, without unpickling anything."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith(".pkl")]
                return [g for m in members for g in _globals_in_pickle(io.BytesIO(archive.read(m)))]
        with path.open("rb") as f:
            return _globals_in_pickle(io.BytesIO(f.read(limit)))
    except (OSError, zipfile.BadZipFile, ValueError):
        return []


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
        dangerous = name if name and _is_dangerous(name) else None
        dangerous = dangerous or next((_normalize_global(g) for g in _globals_in_file(p) if _is_dangerous(g)), None)
        if dangerous:  # never offer the opt-in for a file that would run a command
            raise CheckpointError(
                f"{p}: refused to load: the file calls the Python object {dangerous}, which runs commands or code "
                f"(or reads and writes files) on the machine that loads it; no {what} needs that (lit_lm's own "
                f"checkpoints hold only tensors and plain data), so do not load this file: get the {what} again from "
                f"a source you trust"
            ) from None
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
