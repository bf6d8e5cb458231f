"""The console of lit_lm's commands: Lightning's known noise hidden (and nothing else), the true reason training
stopped, the final metrics, and only checkpoints that exist."""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from cli_helpers import TINY, fast_args
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary import summarize

from lit_lm import console
from lit_lm.cli import main
from lit_lm.data.core.io import show_data_progress

GPT_PRETRAIN = "experiments/quickstart/gpt_pretrain.yaml"


class _Lines(logging.Handler):
    """Collects what Lightning's ``rank_zero_info`` logs (after the loggers' filters)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_lines():
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in console._LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler.messages
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Model(BoringModel):
    """BoringModel logging ``val/loss``; ``sleep`` seconds per training step."""

    def __init__(self, sleep: float = 0.0) -> None:
        super().__init__()
        self.sleep = sleep

    def training_step(self, batch, batch_idx):
        time.sleep(self.sleep)
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"])
        return out

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/loss", out["x"])
        return out


def _fit(tmp_path: Path, model: L.LightningModule | None = None, **kw) -> L.Trainer:
    settings = {"default_root_dir": tmp_path, "accelerator": "cpu", "devices": 1, "logger": False,
                "enable_progress_bar": False, "enable_model_summary": False, "limit_val_batches": 2, **kw}  # fmt: skip
    settings["callbacks"] = [console.FinalMetrics(), *settings.get("callbacks", [])]
    trainer = L.Trainer(**settings)
    trainer.fit(model or _Model())
    return trainer


# ------------------------------------------------------------------------------------------------ noise
def test_known_warnings_are_hidden_while_a_command_runs_and_unknown_ones_still_show(tmp_path):
    from lightning.pytorch.utilities._pytree import _tree_flatten

    model = BoringModel()
    model.trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", precision="bf16-mixed", logger=False)

    def emit() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with console.quiet("fit"):
                _tree_flatten({"a": torch.zeros(1)})  # Lightning's deprecated LeafSpec (torch >= 2.10)
                summarize(model)  # "Precision bf16-mixed is not supported by the model summary"
                warnings.warn("an unknown warning", UserWarning, stacklevel=1)
        return [str(w.message) for w in caught]

    shown = emit()
    assert shown == ["an unknown warning"], shown
    with warnings.catch_warnings(record=True) as caught:  # outside the command: everything shows again
        warnings.simplefilter("always")
        summarize(model)
    assert any("not supported by the model summary" in str(w.message) for w in caught)


def test_a_cli_given_its_args_ignores_the_process_argv_without_a_warning(tmp_path, monkeypatch):
    """The suite runs each fit as ``LitLMCLI(args=[...])`` inside ``python -m lit_lm suite ...``: Lightning's warning
    about args given beside a command line would print once per run."""
    from lit_lm.cli import LitLMCLI

    argv = ["lit_lm", "suite", "--checkpoint", "x.ckpt"]
    monkeypatch.setattr("sys.argv", argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = LitLMCLI(args=["--config", GPT_PRETRAIN, *fast_args(tmp_path, tmp_path / "cache")], run=False)
    assert not [w for w in caught if "args parameter" in str(w.message)], [str(w.message) for w in caught]
    assert cli.trainer.max_steps > 0
    assert sys.argv is argv  # restored


def test_evaluation_commands_also_hide_warnings_about_the_training_run():
    for command, hidden in (("validate", True), ("fit", False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with console.quiet(command):
                warnings.warn_explicit("The dirpath has changed from 'a' to 'b'", UserWarning, "model_checkpoint.py",
                                       1, module="lightning.pytorch.callbacks.model_checkpoint")  # fmt: skip
        assert (not caught) == hidden, command


def test_known_log_lines_are_hidden_by_message_and_module(tmp_path, lightning_lines):
    with console.quiet("fit"):
        L.Trainer(default_root_dir=tmp_path, accelerator="cpu", enable_checkpointing=True)  # tips, TPU line
        rank_zero_info("💡 Tip: For seamless cloud things, from another module")  # same text, not Lightning's
        rank_zero_info("an unknown line")
    assert not any("litlogger" in m or "litmodels" in m or "TPU available" in m for m in lightning_lines)
    assert "an unknown line" in lightning_lines
    assert "💡 Tip: For seamless cloud things, from another module" in lightning_lines
    lightning_lines.clear()
    L.Trainer(default_root_dir=tmp_path, accelerator="cpu")  # outside a command: Lightning as usual
    assert any("TPU available" in m for m in lightning_lines)


# ------------------------------------------------------------------------------------------------ why it stopped
def test_a_run_stopped_by_max_steps_says_max_steps(tmp_path):
    trainer = _fit(tmp_path, max_steps=3, val_check_interval=3)
    assert console.stop_reason(trainer) == "max_steps=3 reached"
    report = console.fit_report(trainer)
    assert "training stopped at step 3: max_steps=3 reached." in report
    assert "last validation (step 3):" in report and "val/loss" in report and "train/loss" in report
    assert str(tmp_path / "checkpoints") in report  # Lightning's default ModelCheckpoint wrote one


def test_a_time_limit_reached_in_the_last_epoch_says_time_limit_only(tmp_path, lightning_lines):
    # Lightning's loop reports `max_epochs=1` reached here: the time limit stopped the epoch, which then counts
    with console.quiet("fit"):
        trainer = _fit(tmp_path, _Model(sleep=0.3), max_epochs=1, max_time={"seconds": 1}, limit_train_batches=20)
    assert trainer.global_step < 20
    reason = console.stop_reason(trainer)
    assert reason.startswith("time limit max_time=0:01 reached"), reason
    assert "max_epochs" not in console.fit_report(trainer)
    assert not any("stopped" in m or "Time limit" in m for m in lightning_lines), lightning_lines


def test_early_stopping_and_max_epochs_are_told_apart(tmp_path):
    early = EarlyStopping("val/loss", stopping_threshold=1e9)  # stops at the first validation
    trainer = _fit(tmp_path / "a", max_epochs=5, limit_train_batches=2, callbacks=[early])
    assert trainer.current_epoch < 5
    reason = console.stop_reason(trainer)
    assert reason.startswith("early stopping on val/loss: Stopping threshold reached"), reason
    assert "Signaling" not in reason
    trainer = _fit(tmp_path / "b", max_epochs=2, limit_train_batches=2)
    assert console.stop_reason(trainer) == "max_epochs=2 reached"


def test_fast_dev_run_says_so_and_names_no_checkpoint(tmp_path):
    trainer = _fit(tmp_path, fast_dev_run=2)
    report = console.fit_report(trainer)
    assert console.stop_reason(trainer).startswith("fast_dev_run=2")
    assert "checkpoints: none (fast_dev_run writes no checkpoint)" in report
    assert ".ckpt" not in report


def test_only_checkpoints_on_disk_are_named(tmp_path):
    trainer = _fit(tmp_path, max_steps=2, limit_val_batches=0, enable_checkpointing=True)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        path.unlink()
    report = console.fit_report(trainer)
    assert "checkpoints: none written" in report and ".ckpt" not in report
    assert "no validation ran" in report


def test_data_preparation_shows_a_progress_bar_only_where_the_trainer_does(tmp_path):
    shown = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=True)
    hidden = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    assert show_data_progress(shown) and not show_data_progress(hidden)


def test_metrics_table_aligns_names_and_values():
    lines = console.metrics_table({"val/loss": 3.21459, "val/acc": 0.5, "val/n": 120.0})
    assert lines == ["  val/loss  3.2146", "  val/acc   0.5000", "  val/n        120"]


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_fit_and_validate_print_the_reason_and_a_short_table(tmp_path, cache, capfd):
    args = ["--config", GPT_PRETRAIN, "--model.config", TINY, "--data.vocab_size", "512"]
    main(["fit", *args, *fast_args(tmp_path, cache, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
                                   "--trainer.limit_val_batches", "1")])  # fmt: skip
    out, err = capfd.readouterr()
    assert "lit_lm: training stopped at step 3: max_steps=3 reached." in out, out
    assert "last validation (step 3):" in out and "val/loss" in out
    assert re.search(rf"\n    last +{re.escape(str(tmp_path / 'checkpoints' / 'last.ckpt'))}\n", out), out
    for noise in ("`Trainer.fit` stopped", "💡", "litlogger", "LeafSpec", "TPU available"):
        assert noise not in out + err, noise

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    main(["validate", *args, "--ckpt_path", str(ckpt),
          *fast_args(tmp_path / "eval", cache, "--trainer.limit_val_batches", "1")])  # fmt: skip
    out, err = capfd.readouterr()
    assert f"lit_lm: validate results ({ckpt}):" in out, out
    assert "val/loss" in out and "Validate metric" not in out  # lit_lm's table in place of Lightning's
    for noise in ("dirpath has changed", "Be aware that when using `ckpt_path`", "💡"):
        assert noise not in out + err, noise
