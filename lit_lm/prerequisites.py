"""Files a run reads that another run writes: say which command writes them, not only that they are missing.

A fine-tuning config reads its pretraining run's checkpoint (``model.init_from``, ``data.tokenizer``); ``validate``,
``test`` and ``predict`` read a checkpoint of their own run (``--ckpt_path best`` / ``last``). On a fresh clone
those files do not exist yet, and "file not found" does not tell the user what to run. Here:

- :func:`check_inputs` finds an input file that is missing and lies in the run directory
  (``trainer.default_root_dir``) of a config under ``experiments/``, or that a Makefile target writes, and raises
  one line: ``runs/cpu/gpt_gutenberg/checkpoints/last.ckpt: not found; it is written by `python -m lit_lm fit
  --config experiments/cpu/gpt_gutenberg.yaml`: run that first``.
- :func:`evaluation_checkpoint` turns ``--ckpt_path best`` / ``last`` of a new ``validate``/``test``/``predict``
  process into the file of the run directory (Lightning only knows the best checkpoint of a run in the same
  process, and with no ``last.ckpt`` it would evaluate untrained weights with a warning), or raises one line that
  names the file expected and the ``fit`` command that writes it.

``experiments/`` is looked for in the working directory and beside the ``lit_lm`` package (a source checkout);
where there is none, nothing is named and the reader of the file reports it as before.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lit_lm.errors import CheckpointError, ConfigError

#: The input settings checked, by section: files that another run may have written.
INPUT_KEYS = {
    "model": ("init_from",),
    "data": ("tokenizer", "files", "train_files", "val_files", "test_files", "extra_train_files"),
}
#: ``--ckpt_path`` values that Lightning resolves itself (not file paths).
LIGHTNING_CKPT_FORMS = ("last", "best", "hpc")


def check_inputs(config: Mapping[str, Any], root: str | Path | None = None) -> None:
    """Raise if a file this run reads is missing and a known command writes it.

    Checked: ``ckpt_path`` (a file path, not ``last``/``best``/``hpc``), ``model.init_args.init_from`` and the file
    settings of ``data.init_args`` (:data:`INPUT_KEYS`). A missing file that no config or Makefile target writes
    is left to the code that reads it (its own error names the setting).

    Args:
        config: The parsed config of one subcommand (``cli.config[subcommand]``).
        root: The folder holding ``experiments/`` (default: the working directory, else the ``lit_lm`` package's
            parent).

    Raises:
        CheckpointError: for ``ckpt_path`` and ``model.init_from``.
        ConfigError: for a data setting (``data.tokenizer``, data files).
    """
    for setting, path in _input_paths(config):
        if _exists(path):
            continue
        command = producer_of(path, root)
        if command is not None:
            error = CheckpointError if setting in ("ckpt_path", "model.init_from") else ConfigError
            raise error(f"{path}: not found; it is written by `{command}`: run that first")


def producer_of(path: str | Path, root: str | Path | None = None) -> str | None:
    """The command that writes ``path``: ``python -m lit_lm fit --config <config>`` for the config under
    ``experiments/`` whose ``trainer.default_root_dir`` holds it, else ``make <target>`` for a Makefile target whose
    recipe names it; ``None`` when neither is known (or there is no ``experiments/`` folder)."""
    target = _absolute(path)
    for repo in _repo_roots(root):
        for config, run_dir in _run_directories(repo):
            if _is_within(target, _absolute(run_dir)):
                return f"python -m lit_lm fit --config {_shown(config)}"
        make_target = _make_target(repo / "Makefile", str(path))
        if make_target is not None:
            return f"make {make_target}"
    return None


def evaluation_checkpoint(config: Mapping[str, Any], which: str, argv: Sequence[str]) -> str:
    """The file that ``--ckpt_path best`` / ``last`` means for a ``validate``/``test``/``predict`` process.

    Without a ``ModelCheckpoint`` of its own in ``trainer.callbacks``, a ``fit`` run of lit_lm's CLI writes
    ``<default_root_dir>/checkpoints/best.ckpt`` (the highest ``val/<main_metric>`` of a DataModule that names a
    ``main_metric``, else the lowest ``val/loss``) and ``last.ckpt``; with one, the file is
    that callback's ``dirpath``/``filename`` when both are fixed names.

    Args:
        config: The parsed config of the subcommand (``trainer.default_root_dir`` already filled in).
        which: ``"best"`` or ``"last"``.
        argv: The command line, for the ``fit`` command named in the error (its ``--config`` files and a typed
            ``--trainer.default_root_dir``).

    Raises:
        CheckpointError: the file does not exist, or the config's own checkpoint callback does not say where it is;
            the message names the file and the ``fit`` command that writes it.
    """
    trainer = config["trainer"]
    run_dir = Path(trainer["default_root_dir"])
    fit = _fit_command(argv, run_dir)
    if trainer.get("enable_checkpointing") is False:
        raise CheckpointError(
            f"--ckpt_path {which}: this config writes no checkpoints (trainer.enable_checkpointing: false); pass a "
            "checkpoint file to --ckpt_path"
        )
    own = list(_checkpoint_callbacks(trainer.get("callbacks")))
    expected = _expected_file(own, run_dir, which)
    if expected is None:
        raise CheckpointError(
            f"--ckpt_path {which}: this config's own ModelCheckpoint (trainer.callbacks) does not give the {which} "
            "checkpoint a fixed dirpath and filename, so a new process cannot find it; pass the file to --ckpt_path"
        )
    if expected.is_file():
        return str(expected)
    hint = ""
    if which == "best" and not own and (run_dir / "checkpoints" / "last.ckpt").is_file():
        hint = " (that run wrote last.ckpt but no best.ckpt, which is written when it validates; --ckpt_path last "
        hint += "evaluates its last weights)"
    raise CheckpointError(
        f"--ckpt_path {which}: {expected} not found; it is written by `{fit}`{hint}: run that first, or pass a "
        "checkpoint file to --ckpt_path"
    )


# --------------------------------------------------------------------------------------------------- helpers
def _input_paths(config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    ckpt_path = config.get("ckpt_path")
    if isinstance(ckpt_path, (str, Path)) and str(ckpt_path) not in LIGHTNING_CKPT_FORMS and _is_local(ckpt_path):
        yield "ckpt_path", str(ckpt_path)
    for section, keys in INPUT_KEYS.items():
        init_args = _get(config.get(section), "init_args")
        for key in keys:
            for value in _strings(_get(init_args, key)):
                if _is_local(value):
                    yield f"{section}.{key}", value


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)  # a jsonargparse Namespace


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, (str, Path)):
        yield str(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _is_local(path: str | Path) -> bool:
    text = str(path)
    return bool(text) and "://" not in text and not text.startswith("registry")


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:  # e.g. a name too long to be a file
        return False


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _repo_roots(root: str | Path | None) -> list[Path]:
    candidates = [Path(root)] if root is not None else [Path.cwd(), Path(__file__).resolve().parent.parent]
    roots: list[Path] = []
    for candidate in candidates:
        if (candidate / "experiments").is_dir() and candidate.resolve() not in [r.resolve() for r in roots]:
            roots.append(candidate)
    return roots


def _run_directories(repo: Path) -> tuple[tuple[Path, str], ...]:
    """``(config file, trainer.default_root_dir)`` of every config under ``repo/experiments``, sorted by path."""
    files = []
    for path in sorted((repo / "experiments").rglob("*.yaml")):
        try:
            files.append((path, path.stat().st_mtime_ns))
        except OSError:
            continue
    return _read_run_directories(tuple(files))


@functools.lru_cache(maxsize=8)
def _read_run_directories(files: tuple[tuple[Path, int], ...]) -> tuple[tuple[Path, str], ...]:
    """:func:`_run_directories` of these files (cached by path and modification time: YAML parsing is slow)."""
    import yaml

    found = []
    for path, _ in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # not a config this can read: it names nothing
        trainer = data.get("trainer") if isinstance(data, dict) else None
        run_dir = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
        if isinstance(run_dir, str) and run_dir:
            found.append((path, run_dir))
    return tuple(found)


def _shown(path: Path) -> str:
    """``path`` as the user types it: relative to the working directory where it lies below it."""
    absolute = _absolute(path)
    cwd = Path.cwd()
    return absolute.relative_to(cwd).as_posix() if _is_within(absolute, cwd) else str(absolute)


def _make_target(makefile: Path, path: str) -> str | None:
    """The Makefile target whose recipe names ``path`` (as a whole word), if any."""
    try:
        lines = makefile.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    name = os.path.normpath(path)
    pattern = re.compile(rf"(?<![\w./-]){re.escape(name)}(?![\w./-])")
    target = None
    for line in lines:
        header = re.match(r"([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if header is not None and not line.startswith("\t"):
            target = header.group(1)
        elif line.startswith("\t") and target is not None and pattern.search(line):
            return target
    return None


def _fit_command(argv: Sequence[str], run_dir: Path) -> str:
    """``python -m lit_lm fit`` with the ``--config`` files and the ``--trainer.default_root_dir`` of ``argv`` (with
    no ``--config``: ``...`` for the rest of the settings and the run directory)."""
    kept = []
    names = ("--config", "--trainer.default_root_dir")
    args = list(argv)
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in names:
            if not value and i + 1 < len(args):
                value = args[i + 1]
            kept += [name, value]
    if "--config" not in kept[::2]:
        kept = ["...", "--trainer.default_root_dir", str(run_dir)]
    return shlex.join(["python", "-m", "lit_lm", "fit", *kept])


def _checkpoint_callbacks(callbacks: Any) -> Iterator[tuple[type, Mapping[str, Any]]]:
    """``(class, init_args)`` of each ModelCheckpoint (subclasses too) configured in ``trainer.callbacks``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    items = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    for item in items:
        cls = item if isinstance(item, type) else None
        class_path = _get(item, "class_path")
        if isinstance(class_path, str) and "." in class_path:
            module, _, name = class_path.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                cls = None
        if isinstance(item, ModelCheckpoint):  # an instance (a config built in Python)
            yield type(item), vars(item)
        elif isinstance(cls, type) and issubclass(cls, ModelCheckpoint):
            init_args = _get(item, "init_args")
            yield cls, (vars(init_args) if init_args is not None and not isinstance(init_args, Mapping) else
                        init_args or {})  # fmt: skip


def _expected_file(own: list[tuple[type, Mapping[str, Any]]], run_dir: Path, which: str) -> Path | None:
    """Where a ``fit`` run writes the ``best``/``last`` checkpoint; ``None`` when the config's own callbacks do not
    say it with fixed names."""
    if not own:  # lit_lm's CLI adds ModelCheckpoint(filename="best") and LastCheckpoint in <run>/checkpoints
        return run_dir / "checkpoints" / f"{which}.ckpt"
    from lit_lm.checkpointing import LastCheckpoint

    for cls, init_args in own:
        dirpath = init_args.get("dirpath")
        if not dirpath:
            continue
        if which == "last" and (issubclass(cls, LastCheckpoint) or init_args.get("save_last")):
            return Path(dirpath) / "last.ckpt"
        filename = init_args.get("filename")
        if which == "best" and init_args.get("monitor") and filename and "{" not in str(filename):
            return Path(dirpath) / f"{filename}.ckpt"
    return None
