"""File mechanisms every reader and writer in :mod:`lit_lm.data` shares, each written once.

- Reading: :func:`read_bytes_checked` (missing / directory / empty file), :func:`decode_utf8` (BOM dropped, a bad
  byte named by line), :func:`read_text_lines` (LF or CRLF), :func:`jsonl_records` (one JSON object per line, with
  its line number).
- Writing: :func:`atomic_write` (a temporary file or directory beside the target, renamed into place).
- Cache keys: :func:`file_digest` (sha256 of the bytes), :func:`digest` (of any JSON-able value).
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lit_lm.errors import DataError

TMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------------------------------- reading
def decode_utf8(data: bytes, path: str | Path) -> str:
    """Decode UTF-8, dropping a byte-order mark; a bad byte is named with its line and column."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"not valid UTF-8: byte 0x{data[e.start]:02x} at column {column}; convert the file to UTF-8, e.g. "
            "`iconv -f latin1 -t utf-8 IN > OUT`",
            path,
            line,
        ) from None


def require_file(path: str | Path) -> Path:
    """``path`` as a Path; :class:`DataError` naming it if it is a directory or does not exist."""
    p = Path(path)
    if p.is_dir():
        raise DataError("is a directory; give the data file inside it", p)
    if not p.is_file():
        raise DataError("file not found; check the path (relative paths start at the working directory)", p)
    return p


def read_bytes_checked(path: str | Path) -> tuple[Path, bytes]:
    """Read a whole file, raising :class:`DataError` if it is missing, a directory or empty (whitespace only)."""
    p = require_file(path)
    data = p.read_bytes()
    if not data.strip():
        raise DataError("file is empty; expected examples", p)
    return p, data


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file without their line endings (LF or CRLF); ``lines[i]`` is line ``i + 1``.

    Raises :class:`DataError` if the file is missing, empty or not UTF-8 (naming the line). Only ``\\n`` ends a
    line, so a stray ``\\r`` or Unicode line separator inside a field does not shift line numbers.
    """
    p, data = read_bytes_checked(path)
    text = decode_utf8(data, p)
    if not text.strip():  # e.g. only a byte-order mark, or only Unicode spaces
        raise DataError("file is empty (nothing but whitespace); expected examples", p)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def jsonl_records(lines: Iterable[str], path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of JSONL text (``lines[i]`` is line ``i + 1`` of
    ``path``, e.g. from :func:`read_text_lines`); :class:`DataError` at ``path:line`` for a line that is not one
    JSON object."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON ({e.msg} at column {e.colno}); each line must be one JSON object", path, number
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object per line, got {type(record).__name__}", path, number)
        yield number, record


# --------------------------------------------------------------------------------------------------- writing
def temporary_path(target: Path) -> Path:
    """``.<name>.<host>.<pid>.<random>.tmp`` beside ``target``: unique per writer, so concurrent writers (DDP ranks,
    jobs on other nodes sharing the directory) never share one, and hidden from globs such as ``*.json``."""
    return target.with_name(f".{target.name}.{host_name()}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def host_name() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync a written file, or every file of a written directory and the directory itself."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb+") as f:  # a writable handle: fsync on a read-only one fails on Windows
            os.fsync(f.fileno())
    if path.is_dir():
        fsync_dir(path)


def remove_stale_temporaries(target: Path) -> None:
    """Delete the :func:`temporary_path` leftovers of ``target`` written on this host by processes that no longer
    run (killed mid-write). Files of running writers, of this process and of other hosts are kept."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]{{8}}\.tmp$")
    for p in target.parent.glob(f"{glob.escape(f'.{target.name}.')}*{TMP_SUFFIX}"):
        m = pattern.match(p.name)
        if m is None or m["host"] != host_name() or int(m["pid"]) == os.getpid() or process_exists(int(m["pid"])):
            continue
        _remove(p)


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (True when that cannot be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's), or we cannot tell: keep its file
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(target: str | Path) -> Iterator[Path]:
    """Write ``target`` (a file or a directory) all at once: yields a temporary path beside it to write to; when
    the block ends, what was written is fsynced, renamed over ``target`` (:func:`os.replace`, atomic on POSIX file
    systems) and the directory fsynced. If the block raises, the temporary path is removed and ``target`` is left
    as it was.

    A reader therefore sees the old complete file or the new complete one, never a half-written one, and what a
    writer killed mid-write left behind is removed by the next write of the same target on the same host. For a
    directory target, an existing ``target`` (another writer was first, with the same content) is kept and the new
    copy discarded.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        _fsync_tree(tmp)
        if tmp.is_dir() and target.is_dir():
            _remove(tmp)  # another writer finished first
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if not (tmp.is_dir() and target.is_dir()):
                    raise
                _remove(tmp)  # another writer renamed its directory in between
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(target.parent)


# --------------------------------------------------------------------------------------------------- cache keys
def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (for cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(value: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of ``value`` as canonical JSON (for cache keys of settings)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


#: The file names of the WikiText distributions (Merity et al. 2016), which :mod:`lit_lm.data.pretraining.text`
#: reads as articles.
WIKITEXT_NAME = re.compile(r"wiki\.(train|valid|test)\.(raw|tokens)")


def is_wikitext(path: Path) -> bool:
    return WIKITEXT_NAME.fullmatch(path.name) is not None


def file_identities(paths: Iterable[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` per file: a cheap cache key part that changes when a file is rewritten
    (WikiText files carry ``"wikitext"`` too: caches of them made before they were read as articles are stale)."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns, *(["wikitext"] if is_wikitext(p) else [])])
    return out


def show_data_progress(trainer: Any) -> bool:
    """Whether data preparation (tokenizing a corpus) shows a progress bar: when the trainer shows one (none with
    ``--trainer.enable_progress_bar false``, e.g. for a log file); without a trainer, when stderr is a terminal."""
    if trainer is not None:
        return getattr(trainer, "progress_bar_callback", None) is not None
    return sys.stderr.isatty()
