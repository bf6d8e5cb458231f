"""A file that another run writes names that run: a config reading a missing pretraining checkpoint says which
config writes it, and ``--ckpt_path best`` / ``last`` of a new ``test`` process either finds the run's file or says
which ``fit`` command writes it, in one line with exit status 2 (``lit_lm.prerequisites``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import CONFIGS, ROOT, cli, fast_args

from lit_lm.cli import main
from lit_lm.errors import CheckpointError, ConfigError
from lit_lm.prerequisites import INPUT_KEYS, check_inputs, evaluation_checkpoint, producer_of

GPT_NLI = "experiments/quickstart/gpt_nli.yaml"
FINE_TUNING_TASKS = ("lit_lm.tasks.SequenceClassification", "lit_lm.tasks.MultipleChoice")


def error_line(capsys, *args: str) -> str:
    """Run ``python -m lit_lm <args>`` in-process; return its one error line (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lit_lm: error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch) -> Path:
    """A working directory like a fresh clone's: ``experiments/`` (a link to the repository's) and no ``runs/``."""
    work = tmp_path / "clone"
    work.mkdir()
    (work / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(work)
    return work


# ------------------------------------------------------------------------------- a missing input names its producer
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("experiments/cpu/snli_from_gpt.yaml", "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt: not found; it is "
         "written by `python -m lit_lm fit --config experiments/cpu/gpt_gutenberg.yaml`: run that first"),
        ("experiments/cpu/snli_bert_scratch.yaml", "runs/cpu/bert_gutenberg/checkpoints/last.ckpt: not found; it is "
         "written by `python -m lit_lm fit --config experiments/cpu/bert_gutenberg.yaml`: run that first"),
        ("experiments/quickstart/bert_nli.yaml", "runs/quickstart/bert_pretrain/checkpoints/last.ckpt: not found; it "
         "is written by `python -m lit_lm fit --config experiments/quickstart/bert_pretrain.yaml`: run that first"),
        ("experiments/cpu/story_cloze_minilm.yaml",
         "runs/hf/all-MiniLM-L6-v2: not found; it is written by `make minilm`: run that first"),
    ],
)  # fmt: skip
def test_a_missing_input_names_the_config_that_writes_it(config, message, fresh_clone, capsys):
    assert error_line(capsys, "fit", "--config", config) == f"lit_lm: error: {message}"


def test_outside_the_repository_the_config_is_named_by_its_full_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no experiments/ here: the ones beside the lit_lm package are read
    line = error_line(capsys, "fit", "--config", str(ROOT / "experiments/quickstart/gpt_nli.yaml"))
    producer = (ROOT / "experiments/quickstart/gpt_pretrain.yaml").resolve()
    assert line == (
        "lit_lm: error: runs/quickstart/gpt_pretrain/checkpoints/last.ckpt: not found; it is written by "
        f"`python -m lit_lm fit --config {producer}`: run that first"
    )


def test_every_input_under_a_run_directory_has_a_producer(fresh_clone):
    """Each config reading another run's output (7 of experiments/cpu, the quickstart and paper fine-tuning configs)
    gets the message: the file lies in some config's run directory or a Makefile target writes it."""
    readers = 0
    for path in CONFIGS:
        text = yaml.safe_load(path.read_text())
        for section, keys in INPUT_KEYS.items():
            init_args = (text.get(section) or {}).get("init_args") or {}
            for key in keys:
                value = init_args.get(key)
                if isinstance(value, str) and value.startswith("runs/"):
                    readers += 1
                    assert producer_of(value) is not None, (path, key, value)
                    with pytest.raises((CheckpointError, ConfigError), match="run that first"):
                        check_inputs({section: {"init_args": {key: value}}})
    assert readers >= 2 * 8  # init_from and tokenizer of at least 8 configs


def test_a_file_no_config_writes_is_left_to_its_reader(fresh_clone, tmp_path):
    check_inputs({"model": {"init_args": {"init_from": str(tmp_path / "nowhere.ckpt")}}, "ckpt_path": "best"})
    assert producer_of(tmp_path / "nowhere.ckpt") is None
    assert producer_of("runs/hf/some-other-model") is None  # `make minilm` writes runs/hf/all-MiniLM-L6-v2 only
    existing = fresh_clone / "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt"
    existing.parent.mkdir(parents=True)
    existing.touch()
    check_inputs({"model": {"init_args": {"init_from": "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt"}}})


def test_without_an_experiments_folder_nothing_is_named(tmp_path):
    assert producer_of("runs/cpu/gpt_gutenberg/checkpoints/last.ckpt", root=tmp_path) is None


# ------------------------------------------------------------------------------------- --ckpt_path best / last
@pytest.mark.parametrize("which", ["best", "last"])
def test_evaluating_a_run_that_has_not_run_says_which_fit_writes_it(which, fresh_clone, capsys):
    config = "experiments/cpu/snli_from_gpt.yaml"
    assert error_line(capsys, "test", "--config", config, "--ckpt_path", which) == (
        f"lit_lm: error: --ckpt_path {which}: runs/cpu/snli_from_gpt/checkpoints/{which}.ckpt not found; it is "
        f"written by `python -m lit_lm fit --config {config}`: run that first, or pass a checkpoint file to --ckpt_path"
    )


def test_the_fit_command_keeps_a_typed_run_directory(tmp_path):
    config = {"trainer": {"default_root_dir": str(tmp_path / "r")}}
    argv = ["test", "--config=a b.yaml", "--trainer.default_root_dir", str(tmp_path / "r"), "--ckpt_path", "best"]
    with pytest.raises(CheckpointError, match=f"`python -m lit_lm fit --config 'a b.yaml' --trainer.default_root_dir "
                                              f"{tmp_path / 'r'}`"):  # fmt: skip
        evaluation_checkpoint(config, "best", argv)
    (tmp_path / "r/checkpoints").mkdir(parents=True)
    (tmp_path / "r/checkpoints/last.ckpt").touch()  # a run that never validated: the message says so
    with pytest.raises(CheckpointError, match="wrote last.ckpt but no best.ckpt"):
        evaluation_checkpoint(config, "best", argv)
    assert evaluation_checkpoint(config, "last", argv) == str(tmp_path / "r/checkpoints/last.ckpt")


def test_a_config_with_its_own_model_checkpoint(tmp_path):
    def config(**init_args):
        callback = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": init_args}
        return {"trainer": {"default_root_dir": str(tmp_path), "callbacks": [callback]}}

    with pytest.raises(CheckpointError, match="does not give the best checkpoint a fixed dirpath and filename"):
        evaluation_checkpoint(config(dirpath=str(tmp_path), monitor="val/acc", filename="{epoch}-{step}"), "best", [])
    fixed = config(dirpath=str(tmp_path / "ck"), monitor="val/acc", filename="top", save_last=True)
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'ck' / 'top.ckpt'} not found"):
        evaluation_checkpoint(fixed, "best", ["test", "--config", "x.yaml"])
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck/top.ckpt").touch()
    (tmp_path / "ck/last.ckpt").touch()
    assert evaluation_checkpoint(fixed, "best", []) == str(tmp_path / "ck/top.ckpt")
    assert evaluation_checkpoint(fixed, "last", []) == str(tmp_path / "ck/last.ckpt")
    with pytest.raises(CheckpointError, match="enable_checkpointing: false"):
        evaluation_checkpoint({"trainer": {"default_root_dir": "r", "enable_checkpointing": False}}, "best", [])


def _configs_tested_with_best() -> list[Path]:
    """The configs that the README, the Makefile and the configs' own headers tell to ``test --ckpt_path best``."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "Makefile", *CONFIGS]
    told = set()
    for text in texts:
        for line in text.read_text().splitlines():
            for command in line.split("&&"):
                words = command.split()
                if "test" in words and "best" in words and "--config" in words:
                    told.add(words[words.index("--config") + 1])
    return sorted(ROOT / name for name in told)


def test_every_config_told_to_test_best_writes_best_ckpt():
    """Their fit runs get lit_lm's ModelCheckpoint(filename="best", monitor: the main metric, else val/loss; no
    checkpoint callback of their own), validate at least once and log that score; the end-to-end case below."""
    told = _configs_tested_with_best()
    fine_tuning = [p for p in CONFIGS if yaml.safe_load(p.read_text())["model"]["class_path"] in FINE_TUNING_TASKS]
    assert ROOT / "experiments/cpu/snli_from_gpt.yaml" in told and len(told) >= 9
    for path in sorted(set(told) | set(fine_tuning)):
        trainer = yaml.safe_load(path.read_text())["trainer"]
        callbacks = trainer.get("callbacks") or []
        assert not any("Checkpoint" in str(cb.get("class_path", cb)) for cb in callbacks), path
        assert trainer.get("enable_checkpointing", True) and trainer.get("limit_val_batches", 1) != 0, path
        assert not trainer.get("fast_dev_run"), path
        interval = trainer.get("val_check_interval")
        max_steps = trainer.get("max_steps", -1)
        if isinstance(interval, int) and max_steps and max_steps > 0:
            assert interval <= max_steps, path  # a validation, so a score to choose the best by
        elif trainer.get("check_val_every_n_epoch", 1) is None:
            pytest.fail(f"{path}: validates neither by steps nor by epochs")


def test_fit_writes_best_ckpt_and_test_best_reads_it(tmp_path, cache, pretrained, monkeypatch):
    monkeypatch.chdir(ROOT)  # the relative config path, as in the README
    init = [
        "--model.init_from",
        str(pretrained["gpt"]),
        "--data.tokenizer",
        str(pretrained["gpt"]),
        "--data.batch_size",
        "4",
    ]
    fit = cli("fit", "--config", GPT_NLI, *init, *fast_args(tmp_path, cache, "--trainer.max_steps", "3",
              "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"))  # fmt: skip
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert best.is_file() and fit.trainer.global_step == 3
    saved = torch.load(best, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2  # the validated step, not the last one
    tested = cli("test", "--config", GPT_NLI, *init, "--ckpt_path", "best",
                 *fast_args(tmp_path, cache, "--trainer.limit_test_batches", "1"))  # fmt: skip
    assert tested.trainer.ckpt_path == str(best)
    state = tested.model.state_dict()
    for name, tensor in saved["state_dict"].items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)
