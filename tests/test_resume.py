"""Fault tolerance: a `python -m lit_lm fit` killed at any point (SIGKILL inside a step, during validation, during a
checkpoint write) or stopped by SIGTERM/Ctrl-C and restarted with `--ckpt_path last` computes the same per-step
training losses as an uninterrupted run; checkpoint files are crash-safe and bad ones give clear errors.

The end-to-end tests run real subprocesses. Each process records its per-step losses with :class:`StepLog`
(``--trainer.callbacks+=test_resume.StepLog``; this file is importable in the subprocesses through PYTHONPATH) and
kills itself at an exact point with :class:`Kill` or :class:`KillDuringWrite`, so the tests are deterministic.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import lightning as L
import numpy as np
import pytest
import torch

from lit_lm.checkpointing import AtomicCheckpointIO, LastCheckpoint, TrainingRNG, resume_command
from lit_lm.model.hf import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = '{"n_layer": 1, "n_embd": 32, "n_head": 2, "intermediate_size": 64, "dropout": 0.1, "n_positions": 128}'
MAX_STEPS = 24
TASK_VOCAB = 1000


# ============================================================================================= subprocess helpers
class StepLog(L.Callback):
    """Appends ``<global step> <training loss>`` to ``path`` after every training step (flushed at once, so a
    killed process leaves every finished step in the file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step} {float(loss):.9e}\n")


class Kill(L.Callback):
    """Sends ``sig`` to this process once, at step ``at_step`` (``trainer.global_step``): ``where="step"`` inside
    the training step (after backward, before the optimizer step), ``where="validation"`` after the first validation
    batch."""

    def __init__(self, at_step: int, sig: str = "SIGKILL", where: str = "step") -> None:
        self.at_step, self.sig, self.where = at_step, sig, where
        self.fired = False

    def _fire(self, trainer: L.Trainer, where: str) -> None:
        if where == self.where and trainer.global_step == self.at_step and not trainer.sanity_checking:
            if not self.fired:  # once (a second Ctrl-C means: stop at once, without saving)
                self.fired = True
                os.kill(os.getpid(), getattr(signal, self.sig))

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self._fire(trainer, "step")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._fire(trainer, "validation")


class KillDuringWrite(AtomicCheckpointIO):
    """Writes the temporary file of the checkpoint of step ``at_step`` completely, then SIGKILLs the process before
    it is moved into place."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def _write(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        super()._write(checkpoint, file)
        if checkpoint.get("global_step") == self.at_step:
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(ROOT), env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"  # the same threading in every run (two runs share the 2 CI cores)
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _command(family: str, root: Path, cache: Path, log: Path, *extra: str) -> list[str]:
    config = {"causal": "gpt_pretrain", "masked": "bert_pretrain", "nli": "gpt_nli"}[family]
    data = (["--data.train_samples_per_epoch", "320"] if family == "causal"  # epochs of 10 batches of 32
            else ["--data.batch_size", "8", "--data.max_seq_length", "64", "--trainer.limit_train_batches", "10"])
    if family == "nli":  # no pretraining run: random weights and the task tokenizer of the task_cache fixture
        data += ["--model.init_from", "null", "--data.tokenizer", "null", "--data.vocab_size", str(TASK_VOCAB)]
    return [
        sys.executable, "-m", "lit_lm", "fit", "--config", f"experiments/quickstart/{config}.yaml",
        "--model.config", TINY, "--trainer.max_steps", str(MAX_STEPS), "--trainer.val_check_interval", "5",
        "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1", "--checkpoint_every_n_steps", "4",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root), "--data.cache_dir", str(cache), *data,
        "--trainer.callbacks+=test_resume.StepLog", "--trainer.callbacks.path", str(log), *extra,
    ]  # fmt: skip


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, expect: int) -> str:
    """Wait for ``proc``; assert its exit status (negative: killed by that signal); return its stderr."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expect, f"exit status {proc.returncode}, expected {expect}\n{out[-3000:]}\n{err[-6000:]}"
    return err


def _losses(log: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in log.read_text().splitlines():
        step, loss = line.split()
        assert int(step) not in out, f"{log}: step {step} logged twice by one process"
        out[int(step)] = float(loss)
    return out


def _saved_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _assert_same(run: dict[int, float], reference: dict[int, float], first: int, last: int) -> None:
    assert sorted(run) == list(range(first, last + 1)), f"steps {sorted(run)}, expected {first}..{last}"
    diffs = {s: abs(run[s] - reference[s]) for s in run}
    assert max(diffs.values()) <= 1e-6, f"losses differ from the uninterrupted run: {diffs}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in corpus' tokenizers (BPE for the causal runs, WordPiece for the masked ones) and prepared corpora,
    made once here: otherwise the reference and the first interrupted run, started together, would both train and
    write the same tokenizer and corpus at once."""
    from lit_lm.data import CausalLMDataModule, MaskedLMDataModule

    path = tmp_path_factory.mktemp("cache")
    CausalLMDataModule(cache_dir=path, vocab_size=2048).prepare_data()
    MaskedLMDataModule(cache_dir=path, vocab_size=2048, max_seq_length=64).prepare_data()
    return path


@pytest.fixture(scope="module")
def task_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The task tokenizers of the built-in NLI and multiple-choice sets, trained once here for every subprocess."""
    from lit_lm.data import MultipleChoiceDataModule, NLIDataModule

    path = tmp_path_factory.mktemp("task_cache")
    with pytest.warns(UserWarning, match="no tokenizer given"):
        NLIDataModule(cache_dir=str(path), vocab_size=TASK_VOCAB).prepare_data()
        MultipleChoiceDataModule(cache_dir=str(path), vocab_size=TASK_VOCAB).prepare_data()
    return path


# ============================================================================================= end to end
def test_causal_lm_resumes_step_exactly_after_sigterm_and_a_kill_during_a_checkpoint_write(
    tmp_path: Path, cache: Path
) -> None:
    ref_log, logs = tmp_path / "ref.log", [tmp_path / f"run{i}.log" for i in range(3)]
    root = tmp_path / "run"
    ckpt = root / "checkpoints" / "last.ckpt"
    reference = _start(_command("causal", tmp_path / "ref", cache, ref_log))  # alongside the interrupted runs

    # 1. SIGTERM (a scheduler's preemption notice) during step 14: that step finishes, last.ckpt is written, the
    #    process exits with 128 + 15 and prints the command that resumes.
    err = _finish(_start(_command("causal", root, cache, logs[0], "--trainer.callbacks+=test_resume.Kill",
                                  "--trainer.callbacks.at_step", "13", "--trainer.callbacks.sig", "SIGTERM")), 143)
    assert "stopped by SIGTERM at step 14" in err and f"checkpoint saved: {ckpt}" in err
    hint = err.split("resume with:")[1].strip().splitlines()[0]
    assert hint.endswith("--ckpt_path last") and "experiments/quickstart/gpt_pretrain.yaml" in hint
    assert _saved_step(ckpt) == 14

    # 2. resumed with --ckpt_path last; SIGKILL while the checkpoint of step 20 is being written: the complete
    #    temporary file is left beside the untouched last.ckpt of step 16.
    _finish(_start(_command("causal", root, cache, logs[1], "--ckpt_path", "last",
                            "--trainer.plugins", "test_resume.KillDuringWrite", "--trainer.plugins.at_step", "20")),
            -signal.SIGKILL)  # fmt: skip
    assert _saved_step(ckpt) == 16
    assert [p.name for p in ckpt.parent.glob(".last.ckpt.*.tmp")]

    # 3. resumed again: runs to the end; the stale temporary file is gone.
    _finish(_start(_command("causal", root, cache, logs[2], "--ckpt_path", "last")), 0)
    assert _saved_step(ckpt) == MAX_STEPS and not list(ckpt.parent.glob(".last.ckpt.*.tmp"))

    _finish(reference, 0)
    ref = _losses(ref_log)
    _assert_same(ref, ref, 1, MAX_STEPS)
    _assert_same(_losses(logs[0]), ref, 1, 14)
    _assert_same(_losses(logs[1]), ref, 15, 20)  # killed in step 20's checkpoint write, after its loss was logged
    _assert_same(_losses(logs[2]), ref, 17, MAX_STEPS)
    _assert_same_tensorboard_steps(root, tmp_path / "ref")


def _assert_same_tensorboard_steps(run_root: Path, ref_root: Path) -> None:
    """The logger continues at the right step: the last run (resumed from step 16) logged ``train/loss`` at the
    same TensorBoard steps, with the same values, as the uninterrupted run did for steps 17..24."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(path: Path) -> dict[int, float]:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        return {e.step: e.value for e in acc.Scalars("train/loss")}

    ref = scalars(ref_root / "tensorboard")
    last_run = max((run_root / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    resumed = scalars(last_run)
    assert sorted(resumed) == sorted(ref)[-len(resumed) :] and len(resumed) == MAX_STEPS - 16  # steps 17..24
    assert all(abs(v - ref[s]) <= 1e-6 for s, v in resumed.items())


def test_masked_lm_with_nsp_resumes_step_exactly_after_a_kill_and_ctrl_c_in_validation(
    tmp_path: Path, cache: Path
) -> None:
    ref_log, logs = tmp_path / "ref.log", [tmp_path / f"run{i}.log" for i in range(3)]
    root = tmp_path / "run"
    ckpt = root / "checkpoints" / "last.ckpt"
    reference = _start(_command("masked", tmp_path / "ref", cache, ref_log))

    # 1. SIGKILL in the middle of the validation at step 15 (epochs are 10 batches: step 15 is mid-epoch)
    _finish(_start(_command("masked", root, cache, logs[0], "--trainer.callbacks+=test_resume.Kill",
                            "--trainer.callbacks.at_step", "15", "--trainer.callbacks.where", "validation")),
            -signal.SIGKILL)  # fmt: skip
    assert _saved_step(ckpt) == 12
    # 2. resumed; Ctrl-C (SIGINT) during the validation at step 20: the validation finishes, last.ckpt is written,
    #    exit status 128 + 2
    err = _finish(_start(_command("masked", root, cache, logs[1], "--ckpt_path", "last",
                                  "--trainer.callbacks+=test_resume.Kill", "--trainer.callbacks.at_step", "20",
                                  "--trainer.callbacks.sig", "SIGINT", "--trainer.callbacks.where", "validation")),
                  130)  # fmt: skip
    assert "stopped by Ctrl-C at step 20" in err and "--ckpt_path last" in err
    assert _saved_step(ckpt) == 20
    # 3. resumed (from the end of a validation) to the end
    _finish(_start(_command("masked", root, cache, logs[2], "--ckpt_path", "last")), 0)

    _finish(reference, 0)
    ref = _losses(ref_log)
    _assert_same(ref, ref, 1, MAX_STEPS)
    _assert_same(_losses(logs[0]), ref, 1, 15)
    _assert_same(_losses(logs[1]), ref, 13, 20)
    _assert_same(_losses(logs[2]), ref, 21, MAX_STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("group_by_length", [True])  # the plain permutation order: the sampler unit tests below
def test_nli_fine_tuning_resumes_step_exactly_after_a_kill_in_the_middle_of_an_epoch(
    tmp_path: Path, task_cache: Path, group_by_length: bool
) -> None:
    """Epochs of 10 batches; SIGKILL inside step 16, after the checkpoint of step 12: the resumed run continues the
    second epoch at its third batch (restarting that epoch from its first example would change every later loss)."""
    ref_log, logs = tmp_path / "ref.log", [tmp_path / f"run{i}.log" for i in range(2)]
    root = tmp_path / "run"
    extra = ["--data.group_by_length", str(group_by_length).lower()]
    reference = _start(_command("nli", tmp_path / "ref", task_cache, ref_log, *extra))
    _finish(_start(_command("nli", root, task_cache, logs[0], *extra, "--trainer.callbacks+=test_resume.Kill",
                            "--trainer.callbacks.at_step", "15")), -signal.SIGKILL)  # fmt: skip
    assert _saved_step(root / "checkpoints" / "last.ckpt") == 12
    _finish(_start(_command("nli", root, task_cache, logs[1], *extra, "--ckpt_path", "last")), 0)
    _finish(reference, 0)
    ref = _losses(ref_log)
    _assert_same(ref, ref, 1, MAX_STEPS)
    _assert_same(_losses(logs[0]), ref, 1, 15)
    _assert_same(_losses(logs[1]), ref, 13, MAX_STEPS)


@pytest.mark.slow
def test_causal_lm_resumes_after_kills_inside_steps_with_workers_and_validation_checkpoints(
    tmp_path: Path, cache: Path
) -> None:
    """Without --checkpoint_every_n_steps last.ckpt is written at the end of each validation (steps 5, 10, ...);
    SIGKILL inside the training steps 8 and 17 (after backward, before the optimizer step); 2 DataLoader workers
    (whose prefetched batches must not count as consumed)."""
    ref_log, logs = tmp_path / "ref.log", [tmp_path / f"run{i}.log" for i in range(3)]
    root = tmp_path / "run"
    reference = _start(_command("causal", tmp_path / "ref", cache, ref_log))
    every_validation = ["--checkpoint_every_n_steps", "null", "--data.num_workers", "2"]
    kill = ["--trainer.callbacks+=test_resume.Kill", "--trainer.callbacks.at_step"]
    _finish(_start(_command("causal", root, cache, logs[0], *every_validation, *kill, "7")), -signal.SIGKILL)
    _finish(_start(_command("causal", root, cache, logs[1], *every_validation, *kill, "16", "--ckpt_path", "last")),
            -signal.SIGKILL)  # fmt: skip
    _finish(_start(_command("causal", root, cache, logs[2], *every_validation, "--ckpt_path", "last")), 0)
    _finish(reference, 0)
    ref = _losses(ref_log)
    _assert_same(_losses(logs[0]), ref, 1, 7)  # the step killed before its optimizer step logs nothing
    _assert_same(_losses(logs[1]), ref, 6, 16)
    _assert_same(_losses(logs[2]), ref, 16, MAX_STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["causal"])  # masked LM: killed at chosen moments above (a step, validation)
def test_resume_after_sigkills_at_random_moments(tmp_path: Path, cache: Path, family: str) -> None:
    """SIGKILL from outside at random moments after a few new steps (whatever the process is doing then: a step,
    validation, a checkpoint write), then resume, until the run completes; every logged loss matches the
    uninterrupted run."""
    import time

    rng = random.Random(1234)
    ref_log = tmp_path / "ref.log"
    reference = _start(_command(family, tmp_path / "ref", cache, ref_log))  # alongside the interrupted runs
    try:
        root = tmp_path / "run"
        kills = 0
        runs: list[tuple[int, dict[int, float]]] = []
        for attempt in range(12):
            log = tmp_path / f"run{attempt}.log"
            extra = ["--ckpt_path", "last"] if attempt else []
            proc = _start(_command(family, root, cache, log, *extra))
            target = rng.randint(5, 9)  # kill after this many new steps (so a new last.ckpt exists), plus a little
            while proc.poll() is None and (not log.exists() or len(log.read_text().splitlines()) < target):
                time.sleep(0.01)
            if proc.poll() is None:
                time.sleep(rng.random() * 0.05)
                proc.kill()
            proc.communicate(timeout=600)
            kills += proc.returncode == -signal.SIGKILL
            if log.exists() and log.read_text():
                runs.append((attempt, _losses(log)))
            if proc.returncode == 0:
                break
        else:
            pytest.fail("the run did not complete in 12 attempts")
    except BaseException:  # a failed attempt: the reference run is not left running
        reference.kill()
        raise
    _finish(reference, 0)
    ref = _losses(ref_log)
    for attempt, run in runs:
        assert all(abs(loss - ref[s]) <= 1e-6 for s, loss in run.items()), (attempt, run)
    assert kills >= 2, f"only {kills} of the runs were killed before they completed"
    assert _saved_step(root / "checkpoints" / "last.ckpt") == MAX_STEPS


# ============================================================================================= CLI errors
def test_truncated_last_checkpoint_gives_a_clear_error(tmp_path: Path, cache: Path, capsys) -> None:
    from lit_lm.cli import main

    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as exit_info:
        main(_command("causal", root, cache, tmp_path / "log")[3:-3] + ["--ckpt_path", "last"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "last.ckpt: not a readable checkpoint" in err


def test_resume_command_replaces_ckpt_path() -> None:
    args = ["fit", "--config", "a b.yaml", "--ckpt_path", "best", "--ckpt_path=x", "--trainer.max_steps", "3"]
    assert resume_command(args, program="python -m lit_lm") == (
        "python -m lit_lm fit --config 'a b.yaml' --trainer.max_steps 3 --ckpt_path last"
    )


# ============================================================================================= checkpoint files
def _state(step: int) -> dict[str, Any]:
    return {"state_dict": {"w": torch.full((3,), float(step))}, "global_step": step}


def test_atomic_save_replaces_the_file_only_when_complete(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint(_state(1), path)
    assert io.load_checkpoint(path)["global_step"] == 1

    class Crash(AtomicCheckpointIO):
        def _write(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
            file.write(b"PK\x03\x04 half a checkpoint")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        Crash().save_checkpoint(_state(2), path)
    assert io.load_checkpoint(path)["global_step"] == 1  # the previous checkpoint, intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left

    from lit_lm.data.core.io import host_name

    host = host_name()
    stale = path.parent / f".last.ckpt.{host}.99999999.deadbeef.tmp"  # what a process killed during a write leaves
    other = path.parent / f".best.ckpt.{host}.99999999.deadbeef.tmp"
    similar = path.parent / f".last.ckpt.json.{host}.99999999.deadbeef.tmp"  # another target's name starts alike
    remote = path.parent / ".last.ckpt.another-node.99999999.deadbeef.tmp"  # a writer on another host sharing the dir
    for leftover in (stale, other, similar, remote):
        leftover.write_bytes(b"partial")
    io.save_checkpoint(_state(3), path)
    assert io.load_checkpoint(path)["global_step"] == 3
    assert not stale.exists() and other.exists() and similar.exists() and remote.exists()  # only ours, dead, here
    in_flight = path.parent / f".last.ckpt.{host}.{os.getppid()}.cafe0000.tmp"  # a running writer's file is kept
    in_flight.write_bytes(b"partial")
    io.save_checkpoint(_state(4), path)
    assert in_flight.exists()


def test_loading_bad_files_names_the_file(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    good = tmp_path / "good.ckpt"
    io.save_checkpoint(_state(1), good)
    cases = {
        "missing.ckpt": None,
        "truncated.ckpt": good.read_bytes()[:200],
        "text.ckpt": b"hello, this is not a checkpoint\n",
        "empty.ckpt": b"",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        expected = rf"{name}: (checkpoint file not found|not a readable checkpoint|empty file)"
        with pytest.raises(CheckpointError, match=expected):
            io.load_checkpoint(tmp_path / name)
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="list.ckpt: not a Lightning checkpoint"):
        io.load_checkpoint(tmp_path / "list.ckpt")


# ============================================================================================= random streams
def test_training_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    """The training stream is saved as plain tensors/ints (``torch.load(weights_only=True)``) and restored exactly;
    draws made between steps (outside the training stream) do not disturb it."""
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    cb = TrainingRNG()
    cb.on_train_start(None, None)  # type: ignore[arg-type]

    def step() -> tuple[float, float, float]:
        cb.on_train_batch_start(None, None, None, 0)  # type: ignore[arg-type]
        out = (torch.rand(()).item(), float(np.random.rand()), random.random())
        cb.on_train_batch_end(None, None, None, None, 0)  # type: ignore[arg-type]
        return out

    step()
    torch.save({"cb": cb.state_dict()}, tmp_path / "rng.ckpt")
    expected = [step() for _ in range(3)]
    torch.rand(5)  # e.g. a DataLoader iterator drawing its base seed
    resumed = TrainingRNG()
    resumed.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["cb"])
    resumed.on_train_start(None, None)  # type: ignore[arg-type]
    cb = resumed
    torch.rand(7)
    assert [step() for _ in range(3)] == expected


# ============================================================================================= samplers
def test_samplers_skip_the_consumed_part_of_one_epoch_once(cache: Path) -> None:
    from lit_lm.data.pretraining.causal_lm import WindowSampler
    from lit_lm.data.pretraining.masked_lm import MaskedLMDataModule

    dm = MaskedLMDataModule(cache_dir=cache, vocab_size=2048, max_seq_length=64, batch_size=8)
    dm.setup("fit")
    for sampler in (WindowSampler(10_000, 16, "random", seed=3), WindowSampler(10_000, 16, "sequential", seed=3),
                    dm.train_sampler):  # fmt: skip
        sampler.set_epoch(2)
        full = [repr(x) for x in sampler]
        sampler.resume_from(2, 24)
        assert [repr(x) for x in sampler] == full[24:]  # the rest of epoch 2, in the same order
        assert [repr(x) for x in sampler] == full  # once only
        sampler.resume_from(2, 24)
        sampler.set_epoch(3)  # Lightning moved on to the next epoch: nothing to skip there
        assert len(list(sampler)) == len(sampler)


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_shards_continue_where_each_rank_stopped(world: int) -> None:
    """Each rank takes every ``world``-th item of the epoch's order: after ``resume_from(epoch,
    batches * batch_size * world)`` every rank's shard is the rest of its own shard of the uninterrupted epoch
    (padding included), nothing twice."""
    from lit_lm.data.pretraining.causal_lm import WindowSampler

    batch_size, batches = 4, 3

    def shard(rank: int, resumed: bool) -> list[int]:
        sampler = WindowSampler(1_000, 16, "random", num_samples=61, seed=0, num_replicas=world, rank=rank)  # 61: pad
        if resumed:
            sampler.resume_from(5, batches * batch_size * world)
        sampler.set_epoch(5)
        return list(sampler)

    for rank in range(world):
        assert shard(rank, True) == shard(rank, False)[batches * batch_size :]  # exactly the rest: nothing twice


def _finetuning_samplers(**ranks: int) -> list:
    from lit_lm.data.core.samplers import LengthGroupedSampler, PermutationSampler

    lengths = np.random.default_rng(0).integers(5, 100, size=203)  # 203: padding under DDP
    return [PermutationSampler(203, seed=3, **ranks), LengthGroupedSampler(lengths, 8, seed=3, mega_batches=4, **ranks)]


def test_finetuning_samplers_skip_the_consumed_part_of_one_epoch_once() -> None:
    for sampler, again in zip(_finetuning_samplers(), _finetuning_samplers(), strict=True):
        sampler.set_epoch(2)
        full = list(sampler)
        assert sorted(full) == list(range(203))
        sampler.resume_from(2, 24)
        assert list(sampler) == full[24:]  # the rest of epoch 2, in the same order
        assert list(sampler) == full  # once only
        sampler.resume_from(2, 24)
        sampler.set_epoch(3)  # Lightning moved on to the next epoch: nothing to skip there
        assert len(list(sampler)) == len(sampler) and list(sampler) != full
        torch.manual_seed(123), np.random.seed(123), random.seed(123)
        again.set_epoch(2)
        assert list(again) == full  # from the seed and the epoch only, not from global random state


@pytest.mark.parametrize("world", [2, 3])
def test_finetuning_samplers_shard_themselves_and_each_rank_continues_its_shard(world: int) -> None:
    """Lightning leaves a ``DistributedSampler`` in place (its ``DistributedSamplerWrapper`` would shuffle the list
    once more); after ``resume_from(epoch, batches * batch_size * world)``, as the DataModule calls it
    under DDP, every rank's shard is the rest of its own shard of the uninterrupted epoch (padding included)."""
    from torch.utils.data import DistributedSampler

    batch_size, batches = 8, 2

    def shards(resumed: bool) -> list[list[list[int]]]:  # [sampler][rank] -> indices
        out: list[list[list[int]]] = [[], []]
        for rank in range(world):
            for i, sampler in enumerate(_finetuning_samplers(num_replicas=world, rank=rank)):
                assert isinstance(sampler, DistributedSampler)
                if resumed:
                    sampler.resume_from(5, batches * batch_size * world)
                sampler.set_epoch(5)
                out[i].append(list(sampler))
        return out

    for full, resumed in zip(shards(False), shards(True), strict=True):
        assert set().union(*full) == set(range(203)) and all(len(s) == -(-203 // world) for s in full)
        for rank in range(world):
            assert resumed[rank] == full[rank][batches * batch_size :]  # exactly the rest: nothing twice


def test_task_datamodules_continue_an_epoch_from_their_state(task_cache: Path) -> None:
    """NLI and multiple choice, with and without ``group_by_length``: after ``load_state_dict`` (epoch 1, 3 batches
    consumed) the training loader yields the rest of epoch 1, then whole epochs again."""
    import warnings

    from lit_lm.data import MultipleChoiceDataModule, NLIDataModule

    def batches(dm: Any, epoch: int, n: int) -> list[dict[str, torch.Tensor]]:
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # as Lightning does at the start of each epoch
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                return out
        return out

    for cls in (NLIDataModule, MultipleChoiceDataModule):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the task tokenizer
            dm = cls(cache_dir=str(task_cache), vocab_size=TASK_VOCAB, batch_size=4)
        for dm.group_by_length in (False, True):
            full = batches(dm, 1, 8)
            dm.load_state_dict({"epoch": 1, "batches": 3, "batch_size": 4, "seed": dm.seed, "world_size": 1})
            rest = batches(dm, 1, 5)
            for a, b in zip(full[3:], rest, strict=True):
                assert all(torch.equal(a[k], b[k]) for k in a), (cls.__name__, dm.group_by_length)
            dm.train_dataloader()
            assert len(list(dm.train_sampler)) == len(dm.train_sampler) == len(dm.datasets["train"])  # then whole


# ============================================================================================= last.ckpt
class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=4)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Recording(AtomicCheckpointIO):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.steps.append(checkpoint["global_step"])
        super().save_checkpoint(checkpoint, path, storage_options)


@pytest.mark.parametrize(("steps", "minutes", "expected"), [(3, None, [3, 6, 7]), (None, 1e-9, [1, 2, 3, 4, 5, 6, 7]),
                                                             (None, 60.0, [7])])  # fmt: skip
def test_last_checkpoint_every_n_steps_or_minutes_and_at_the_end(tmp_path: Path, steps, minutes, expected) -> None:
    io = _Recording()
    cb = LastCheckpoint(tmp_path / "ckpt", every_n_train_steps=steps, every_n_minutes=minutes)
    handler = signal.getsignal(signal.SIGINT)
    trainer = L.Trainer(max_steps=7, callbacks=[cb], plugins=[io], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)  # fmt: skip
    trainer.fit(_Tiny())
    assert io.steps == expected
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 7
    assert signal.getsignal(signal.SIGINT) is handler  # the signal handlers are restored after training


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, capsys) -> None:
    cb = LastCheckpoint(tmp_path)
    before = signal.getsignal(signal.SIGINT)
    cb._install_signal_handlers()
    assert signal.getsignal(signal.SIGINT) == cb._on_signal
    cb._on_signal(signal.SIGINT, None)  # first: only a flag and a message
    assert "Ctrl-C received" in capsys.readouterr().err and cb._signal_received == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        cb._on_signal(signal.SIGINT, None)  # second: Lightning's KeyboardInterrupt shutdown, no checkpoint
    assert signal.getsignal(signal.SIGINT) is before
