"""Fine-tune one checkpoint on many tasks, seed by seed, pretrained and from scratch: one record per run.

Each run is a ``fit`` (in this process, through :class:`lit_lm.cli.LitLMCLI`, as ``python -m lit_lm fit`` would run
the config in its directory) followed by a ``test`` of its best validation checkpoint. Its record goes into
``<out>/records.json``, rewritten atomically after every run; a suite started again skips the runs recorded there
and redoes, from its start, the one that was interrupted.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lit_lm import __version__
from lit_lm.config import TransformerConfig
from lit_lm.data.core import io
from lit_lm.errors import ConfigError, LitLMError
from lit_lm.suite.recipes import DEFAULT_DATA_DIR, TaskRecipe, read_recipes, run_config

__all__ = ["ARMS", "RecordsFile", "SuiteRunFailed", "run_suite", "suite_plan"]

log = logging.getLogger(__name__)
ARMS = ("pretrained", "scratch")
RECORDS = "records.json"
FAILURE = "failure.txt"  # in a failed run's directory: its traceback (a restart deletes it with the directory)


class SuiteRunFailed(LitLMError, RuntimeError):
    """Runs of a suite failed; the others ran and were recorded. The message names them and their error."""


class RecordsFile:
    """``<out>/records.json``: a JSON list of run records, one per (task, arm, seed). Each change is a locked
    read-modify-write (suites sharing the file add their records, none lost) of a complete new file, flushed to
    disk and renamed over the old one, so a suite killed at any moment leaves the previous complete list."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            records = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ConfigError(f"{self.path}: expected a JSON list of run records")
        return records

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, record: dict[str, Any], order: list[str] | None = None) -> None:
        """Replace the record of the same (task, arm, seed) or add it; tasks in ``order``, then arm, seed."""
        key = run_key(record)
        with self._locked():
            records = [r for r in self.load() if run_key(r) != key] + [record]
            rank = {t: i for i, t in enumerate(order or [])}
            records.sort(key=lambda r: (rank.get(r["task"], len(rank)), r["task"], ARMS.index(r["arm"]), r["seed"]))
            with io.atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps(records, indent=1) + "\n")


@contextlib.contextmanager
def claimed(run_dir: Path) -> Iterator[str | None]:
    """Claim ``run_dir`` for this process (``<run_dir>.claim``, created exclusively): ``None`` when claimed, else
    who holds it (another suite on this records file is running that run). A claim of a process that is gone is
    taken over; the claim is released when the block ends."""
    claim = run_dir.with_name(run_dir.name + ".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    me = f"{io.host_name()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = claim.read_text().strip() if claim.is_file() else ""
            host, _, pid = owner.partition(" ")
            if host == io.host_name() and pid.isdigit() and not io.process_exists(int(pid)):
                claim.unlink(missing_ok=True)  # left by a killed suite
                continue
            yield owner or "another suite"
            return
        with os.fdopen(fd, "w") as f:
            f.write(me)
        try:
            yield None
        finally:
            claim.unlink(missing_ok=True)
        return
    yield "another suite"


def config_digest(config: dict[str, Any]) -> str:
    """What makes two runs the same run: their config (budget, recipe, data, seed, precision), not their directory."""
    trainer = {k: v for k, v in config.get("trainer", {}).items() if k != "default_root_dir"}
    return io.digest({**config, "trainer": trainer})


def checkpoint_fingerprint(path: str | Path) -> str:
    """A digest of the checkpoint's bytes (a ``.ckpt``; or a Hugging Face directory's config, weights and
    tokenizer files): the same name after more pretraining is another checkpoint."""
    p = Path(path)
    if p.is_file():
        files = [p]
    else:
        names = ("config.json", "tokenizer.json", "vocab.txt")
        files = sorted(f for f in p.iterdir() if f.is_file() and (f.name in names or f.suffix == ".safetensors"))
        if not any(f.suffix == ".safetensors" for f in files):
            files += [f for f in (p / "pytorch_model.bin",) if f.is_file()]
    return io.digest([(f.name, io.file_digest(f)) for f in files])


def run_key(record: dict[str, Any]) -> tuple[str, str, int]:
    return record["task"], record["arm"], int(record["seed"])


def _as_list(value: Any, kind: type, what: str) -> list[Any]:
    """``"a,b"`` / ``"1,2"``, one value, or a list -> a list of ``kind``."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        return [kind(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected a comma-separated list of {kind.__name__}, got {value!r}") from None


def suite_plan(
    recipes: dict[str, TaskRecipe], tasks: list[str], seeds: list[int], arms: list[str], fmt: str
) -> list[tuple[TaskRecipe, str, int]]:
    """The runs in order: task by task, and within a task seed by seed, the pretrained arm first."""
    unknown = [t for t in tasks if t not in recipes]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; known: {', '.join(recipes)}")
    unfit = [t for t in tasks if fmt not in recipes[t].formats]
    if unfit:
        raise ConfigError(f"task(s) {unfit} are not run with a{'n' if fmt == 'encoder' else ''} {fmt} checkpoint "
                          f"(their recipes' formats); leave them out")  # fmt: skip
    return [(recipes[t], arm, seed) for t in tasks for seed in seeds for arm in arms]


def _check_data_files(plan: list[tuple[TaskRecipe, str, int]], data_dir: str) -> None:
    """Every data file of the planned tasks, checked before the first run (not hours later, at its task's turn)."""
    missing = []
    for recipe in {r.name: r for r, _, _ in plan}.values():
        for value in recipe.data.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item.startswith("{data_dir}/"):
                    path = Path(data_dir) / item.removeprefix("{data_dir}/")
                    if not path.exists():
                        missing.append(f"{recipe.name}: {path}")
    if missing:
        shown = "; ".join(missing[:4]) + ("; ..." if len(missing) > 4 else "")
        raise ConfigError(f"{len(missing)} data file(s) missing ({shown}); set --data_dir, or leave those tasks out")


def _check_configs(configs: list[tuple[str, dict[str, Any]]]) -> None:
    """Instantiate the model, data and trainer of each task and arm once (no data read, no training) before the
    first run, so that a recipe that cannot run says so now, not at its turn hours later."""
    from lit_lm import console
    from lit_lm.cli import LitLMCLI, user_error

    seen, problems = set(), []
    with tempfile.TemporaryDirectory() as tmp:
        for task, config in configs:
            key = (task, config["model"]["init_args"].get("init_from") is None)
            if key in seen:
                continue
            seen.add(key)
            path = Path(tmp) / "config.yaml"
            trial = {**config, "trainer": {**config["trainer"], "default_root_dir": str(Path(tmp) / "run")}}
            path.write_text(yaml.safe_dump(trial, sort_keys=False))
            try:
                with console.quiet("fit"):
                    LitLMCLI(args=["--config", str(path)], run=False)  # run=False: no subcommand
            except Exception as e:  # jsonargparse wraps what a class raises while it is instantiated
                error = user_error(e)
                if error is None:
                    raise
                problems.append(f"{task}: {error}")
            except SystemExit:  # the parser refused a setting (and printed why)
                problems.append(f"{task}: its config does not parse (see above)")
    if problems:
        raise ConfigError(f"{len(problems)} run config(s) cannot run: " + "; ".join(problems))


def _pinned_precision(precision: str | None) -> str | None:
    """``precision`` as the Trainer names it (what a record holds), or None; a ConfigError for an unknown one."""
    from lit_lm._lightning import unified_precision

    try:
        return unified_precision(precision)
    except ValueError as e:
        raise ConfigError(f"--precision: {e}") from None


def _without_precision(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "trainer": {k: v for k, v in config["trainer"].items() if k != "precision"}}


def _check_default_precision(store: RecordsFile, digests: set[str], accelerator: str) -> None:
    """Refuse to go on with a suite recorded at another default precision: a run's config names its precision only
    when one is given, so records made where the detected default was ``32-true`` (an AVX2 CPU) would otherwise be
    taken as done on a machine that detects ``bf16-mixed``, and the runs still to do would mix precisions."""
    from lit_lm.hardware import detect_precision

    default = detect_precision(accelerator).precision
    ours = [r for r in store.load() if r.get("config_digest") in digests]
    other = sorted({str(r.get("precision")) for r in ours} - {default})
    if other:
        n = sum(str(r.get("precision")) in other for r in ours)
        raise ConfigError(f"{store.path}: {n} recorded run(s) of this suite trained in {', '.join(other)}, but this "
                          f"machine's default precision is {default}: the runs still to do would mix precisions. "
                          f"Pass --precision {other[0]} to go on as recorded, or give a {default} suite its own --out "
                          "(or --records)")  # fmt: skip


def _architecture(checkpoint: str) -> TransformerConfig:
    from lit_lm.tasks.pretrained import load_pretrained

    return load_pretrained(checkpoint).config


def machine(accelerator: str = "cpu") -> str:
    """The CPU (with torch's vector capability and whether it has native bf16: one model name covers AVX2-only and
    AVX512-BF16 parts), and the GPU where the run used one."""
    import torch

    from lit_lm.hardware import cpu_name, native_bf16_flags

    bf16 = ", native bf16" if native_bf16_flags() else ""
    capability = torch.backends.cpu.get_cpu_capability()
    cpu = f"{cpu_name()} ({capability}{bf16}), {os.cpu_count()} cores, {platform.system()}"
    if accelerator in ("cuda", "gpu"):
        return f"{torch.cuda.get_device_name()} x {torch.cuda.device_count()} ({cpu})"
    return cpu


def run_suite(
    checkpoint: str,
    tasks: str | list[str] | None = None,
    seeds: str | int | list[int] = "1,2,3",
    scratch: bool = False,
    out: str = "runs/suite",
    recipes: str | None = None,
    data_dir: str = DEFAULT_DATA_DIR,
    max_steps: int | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    report: bool = True,
    records: str | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune ``checkpoint`` on each task with each seed (and, with ``scratch``, the same network randomly
    initialised), test each run's best validation checkpoint, and record the task's main metric.

    Args:
        checkpoint: A lit_lm ``.ckpt`` or a Hugging Face checkpoint directory. Its tokenizer reads the data of both
            arms.
        tasks: Task names, comma-separated (``sst2,stsb``). Default: every task of the recipes that runs with the
            checkpoint's kind of backbone (``conll`` needs an encoder).
        seeds: Seeds, comma-separated; each seeds the new weights, dropout, data order and validation hold-out.
        scratch: Add the from-scratch arm: the checkpoint's architecture and tokenizer, random weights.
        out: Directory of the suite: ``records.json``, ``table.md``, ``suite.png`` and ``runs/<task>/<arm>/seed<N>``.
        recipes: A YAML file overriding recipe fields per task (``sst2: {max_steps: 300}``; ``all:`` for every task)
            or adding tasks (:func:`lit_lm.suite.recipes.load_recipes`).
        data_dir: Where the recipes' data files are (``{data_dir}/sst2/train.tsv``).
        max_steps: Optimizer steps of every run, instead of each recipe's (a quick look; the records say it).
        accelerator: The Trainer's accelerator (``auto``, ``cpu``, ``gpu``).
        precision: The Trainer's precision; default: the machine's fastest (detected).
        report: Print and write the table (and figure) when done.
        records: The records file (default ``<out>/records.json``), e.g. a tracked file that outlives ``out``.

    Raises:
        SuiteRunFailed: After the other runs and the report, when runs failed; each failed run's directory holds
            its traceback (``failure.txt``), and the same call retries it.
    """
    book = read_recipes(recipes)
    if not Path(checkpoint).exists():
        raise ConfigError(f"checkpoint {checkpoint} does not exist")
    architecture = _architecture(checkpoint)
    fmt = "decoder" if architecture.causal else "encoder"
    task_names = list(dict.fromkeys(_as_list(tasks, str, "tasks"))) or [n for n, r in book.items() if fmt in r.formats]
    seed_list = list(dict.fromkeys(_as_list(seeds, int, "seeds")))
    if not seed_list:
        raise ConfigError("seeds: give at least one seed")
    arms = ["pretrained", "scratch"] if scratch else ["pretrained"]
    plan = suite_plan(book, task_names, seed_list, arms, fmt)

    _check_data_files(plan, data_dir)
    out_dir = Path(out)
    store = RecordsFile(records or out_dir / RECORDS)
    fingerprint = checkpoint_fingerprint(checkpoint)
    others = {r.get("checkpoint_fingerprint") for r in store.load()} - {fingerprint}
    if others:
        raise ConfigError(f"{store.path} holds runs of another checkpoint than {checkpoint} (fingerprint "
                          f"{fingerprint}, recorded: {sorted(map(str, others))[0]}); give this suite its own --out "
                          "(or --records)")  # fmt: skip
    trainer = {"accelerator": accelerator, **({"precision": precision} if precision else {})}
    runs = []
    for recipe, arm, seed in plan:
        run_dir = out_dir / "runs" / recipe.name / arm / f"seed{seed}"
        config = run_config(recipe, checkpoint, architecture, arm, seed, run_dir, data_dir, max_steps, trainer)
        runs.append((recipe, arm, seed, run_dir, config, config_digest(config)))
    # a run recorded without --precision counts for the same run with --precision when it trained in that precision
    # (its config names no precision: the machine's default chose it)
    unpinned = {run[5]: config_digest(_without_precision(run[4])) for run in runs} if precision else {}
    pinned = _pinned_precision(precision)

    def same_run(record: dict[str, Any], digest: str) -> bool:
        if record.get("config_digest") == digest:
            return True
        loose = unpinned.get(digest)
        return loose is not None and record.get("config_digest") == loose and record.get("precision") == pinned

    def recorded(task: str, arm: str, seed: int, digest: str) -> bool:
        return any(run_key(r) == (task, arm, seed) and same_run(r, digest) for r in store.load())

    todo = [run for run in runs if not recorded(run[0].name, run[1], run[2], run[5])]
    if precision is None and todo:
        _check_default_precision(store, {run[5] for run in runs}, accelerator)
    _check_configs([(recipe.name, config) for recipe, _, _, _, config, _ in todo])
    print(f"suite: {checkpoint} ({fmt}), {len(task_names)} task(s) x {len(seed_list)} seed(s) x {len(arms)} arm(s) "
          f"= {len(plan)} runs; {len(plan) - len(todo)} recorded in {store.path}, {len(todo)} to run", flush=True)
    walls: dict[str, list[float]] = {}  # task -> wall times of its runs done here
    seconds_per_step: list[float] = []
    failures: list[str] = []
    for i, (recipe, arm, seed, run_dir, config, digest) in enumerate(todo, 1):
        what = f"{recipe.name} seed {seed} {arm}"
        if recorded(recipe.name, arm, seed, digest):  # by another suite sharing the records, meanwhile
            continue
        with claimed(run_dir) as holder:
            if holder is not None:
                print(f"{what}: being run by {holder}; left to it", flush=True)
                continue
            try:
                record = run_one(recipe, config, run_dir)
            except Exception as e:  # one run's failure (bad data, a NaN loss, out of memory) ends only that run
                failures.append(_failed(e, what, run_dir))
                print(f"task {task_names.index(recipe.name) + 1}/{len(task_names)} {what}: FAILED "
                      f"({failures[-1]}); the suite goes on", flush=True)  # fmt: skip
                continue
            record.update(task=recipe.name, title=recipe.title, arm=arm, seed=seed, metric_title=recipe.metric,
                          checkpoint=str(checkpoint), checkpoint_fingerprint=fingerprint, format=fmt,
                          max_steps_override=max_steps, config_digest=digest, recipe=recipe.as_record())  # fmt: skip
            store.add(record, order=list(book))
        walls.setdefault(recipe.name, []).append(record["wall_s"])
        seconds_per_step.append(record["wall_s"] / max(1, record["steps"]))
        eta = _eta(todo[i:], walls, statistics.mean(seconds_per_step), max_steps)
        print(f"task {task_names.index(recipe.name) + 1}/{len(task_names)} {what}: "
              f"{100 * record['value']:.1f} {record['metric']}, {record['wall_s']:.0f} s "
              f"(run {i}/{len(todo)}, ETA {_duration(eta)})", flush=True)  # fmt: skip
    final = store.load()
    if report:
        from lit_lm.suite.report import write_report

        print(write_report(out_dir, records=store.path), flush=True)
    if failures:
        shown = "; ".join(failures[:3]) + ("; ..." if len(failures) > 3 else "")
        raise SuiteRunFailed(f"{len(failures)} run(s) failed: {shown}. The same command retries them (a failed run "
                             "has no record) and skips the recorded ones")  # fmt: skip
    return final


def _failed(exc: Exception, what: str, run_dir: Path) -> str:
    """What a failed run leaves: its traceback in ``<run_dir>/failure.txt`` and its memory freed (a run that ran
    out of GPU memory must not take the next one with it); returns one line naming the error and that file."""
    from lit_lm.cli import user_error

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILURE).write_text("".join(traceback.format_exception(exc)))
    ours = user_error(exc)
    line = f"{type(ours or exc).__name__}: {ours or exc}".splitlines()[0]
    log.debug("%s failed", what, exc_info=exc)
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        sys.modules["torch"].cuda.empty_cache()
    return f"{what}: {line} (traceback: {run_dir / FAILURE})"


def _eta(remaining: list[tuple], walls: dict[str, list[float]], seconds_per_step: float,
         max_steps: int | None) -> float:  # fmt: skip
    """Seconds the ``remaining`` runs should take: a task's mean wall time where one of its runs is done here, else
    its steps at the mean seconds per step of the runs done (tasks differ: QA windows cost more than SST-2)."""
    total = 0.0
    for recipe, *_ in remaining:
        done = walls.get(recipe.name)
        total += statistics.mean(done) if done else seconds_per_step * (max_steps or recipe.max_steps)
    return total


def run_one(recipe: TaskRecipe, config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``fit`` ``config`` in a fresh ``run_dir``, then test its best validation checkpoint; the measurements."""
    from lit_lm import console
    from lit_lm.callbacks import TokenThroughputMonitor
    from lit_lm.cli import LitLMCLI
    from lit_lm.serialization import checkpoints_trusted

    if checkpoints_trusted():  # --trust_checkpoint of the suite holds in its runs
        config = {**config, "trust_checkpoint": True}
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from nothing
    run_dir.mkdir(parents=True)
    config_file = run_dir / "suite_config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.perf_counter()
    with console.quiet("fit"):
        cli = LitLMCLI(args=["fit", "--config", str(config_file)])
        fit_s = time.perf_counter() - t0
        trainer, datamodule = cli.trainer, cli.datamodule
        metric = getattr(datamodule, "main_metric", None) or "acc"
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # the per-run test table: noise here
            results = trainer.test(cli.model, datamodule=datamodule, ckpt_path=_best_checkpoint(trainer),
                                   verbose=False)
    value = results[0].get(f"test/{metric}") if results else None
    if value is None:
        logged = sorted(results[0]) if results else []
        raise ConfigError(f"{recipe.name}: the test logged no test/{metric} (logged: {logged})")
    tokens = next((cb.tokens_seen for cb in trainer.callbacks if isinstance(cb, TokenThroughputMonitor)), None)
    record = {
        "metric": metric,
        "value": float(value),
        "steps": int(trainer.global_step),
        "tokens": tokens,
        "wall_s": round(time.perf_counter() - t0, 1),
        "fit_s": round(fit_s, 1),
        "machine": machine(type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()),
        "precision": str(trainer.precision),
        "lit_lm": __version__,
        "date": datetime.date.today().isoformat(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    del cli, trainer, datamodule
    gc.collect()
    return record


def _best_checkpoint(trainer: Any) -> str:
    """The run's best validation checkpoint (LitLMCLI's ``best.ckpt``, by the task's main metric), named rather than
    ``"best"``, which Lightning takes from the first ModelCheckpoint with a warning (``last.ckpt`` has its own)."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_path:
            return callback.best_model_path
    raise ConfigError("the run wrote no best validation checkpoint to test (no validation ran?)")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
