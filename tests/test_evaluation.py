"""Evaluating a checkpoint: its own tokenizer everywhere (never a new one trained on the evaluation text), a
mismatching tokenizer refused before any step, and whole files scored character by character."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from cli_helpers import cli, fast_args

from lit_lm.cli import main
from lit_lm.data import CausalLMDataModule, MaskedLMDataModule, Tokenizer
from lit_lm.data.pretraining.builtin import write_builtin_corpus
from lit_lm.errors import CheckpointError
from lit_lm.tasks import CausalLM

SHAKESPEARE = "experiments/cpu/gpt_shakespeare.yaml"  # the command, on generated books instead of its file
GPT_NLI = "experiments/quickstart/gpt_nli.yaml"


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> dict[str, Path]:
    """Two different generated books: one to train on, one the model never saw."""
    d = tmp_path_factory.mktemp("books")
    return {"train": write_builtin_corpus(d / "a", seed=0, num_docs=300),
            "other": write_builtin_corpus(d / "b", seed=7, num_docs=40)}  # fmt: skip


@pytest.fixture(scope="module")
def gpt(tmp_path_factory, books) -> dict[str, Path]:
    """`fit --config experiments/cpu/gpt_shakespeare.yaml` on the training book, briefly."""
    root, cache = tmp_path_factory.mktemp("gpt"), tmp_path_factory.mktemp("gpt_cache")
    c = cli(
        "fit", "--config", SHAKESPEARE, "--data.files", f"[{books['train']}]", "--data.vocab_size", "512",
        "--trainer.max_time", "null", "--trainer.max_steps", "150", "--trainer.val_check_interval", "150",
        *fast_args(root, cache),
    )  # fmt: skip
    assert c.trainer.global_step == 150
    return {"ckpt": root / "checkpoints" / "last.ckpt", "cache": cache, "root": root}


def _tokenizers_trained(cache: Path) -> list[Path]:
    return sorted((cache / "tokenizers").glob("*.json"))


def test_validate_on_another_book_reads_it_with_the_checkpoint_tokenizer(gpt, books, tmp_path):
    trained_before = _tokenizers_trained(gpt["cache"])
    c = cli(
        "validate", "--config", SHAKESPEARE, "--ckpt_path", str(gpt["ckpt"]), "--data.files", f"[{books['other']}]",
        *fast_args(tmp_path, gpt["cache"]),
    )  # fmt: skip
    dm = c.datamodule
    assert dm.tokenizer.path == str(gpt["ckpt"])
    assert _tokenizers_trained(gpt["cache"]) == trained_before, "no tokenizer is trained for a model that is not new"
    metrics = c.trainer.callback_metrics
    assert float(metrics["val/bpc"]) < float(metrics["baseline/unigram_bpc"]), metrics


def test_a_tokenizer_other_than_the_checkpoint_s_is_refused_in_one_line(gpt, books, tmp_path, capsys):
    other = Tokenizer.train_from_texts([books["other"].read_text()], vocab_size=512, kind="bpe")
    other.save(tmp_path / "other.json")
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", SHAKESPEARE, "--ckpt_path", str(gpt["ckpt"]), "--data.files",
              f"[{books['other']}]", "--data.tokenizer", str(tmp_path / "other.json"),
              *fast_args(tmp_path, gpt["cache"])])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lit_lm: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "other.json" in lines[0] and str(gpt["ckpt"]) in lines[0] and "tokens differ" in lines[0], lines[0]


def test_a_library_user_gets_the_same_refusal(gpt, books, tmp_path):
    """Without the CLI: Trainer.validate with a DataModule tokenized otherwise stops before any step."""
    other = Tokenizer.train_from_texts([books["other"].read_text()], vocab_size=512, kind="bpe")
    other.save(tmp_path / "other.json")
    dm = CausalLMDataModule(val_files=[books["other"]], tokenizer=tmp_path / "other.json", block_size=64,
                            cache_dir=gpt["cache"])  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(CheckpointError, match="is not the one the model in .* was trained with"):
        trainer.validate(CausalLM(), dm, ckpt_path=gpt["ckpt"])


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_whole_files_are_scored_every_character_once(stage, gpt, books, tmp_path):
    option = "--data.val_files" if stage == "validate" else "--data.test_files"
    c = cli(stage, "--config", SHAKESPEARE, "--ckpt_path", str(gpt["ckpt"]), option, str(books["other"]),
            *fast_args(tmp_path, gpt["cache"]))  # fmt: skip
    dm, prefix = c.datamodule, "val" if stage == "validate" else "test"
    text = books["other"].read_text()
    assert dm.tokenizer.path == str(gpt["ckpt"])
    corpus, split = dm._eval_source(prefix)
    tokens = corpus.tokens(split)
    assert dm.tokenizer.decode(tokens.tolist(), skip_special_tokens=False) == text  # from its first character
    info = dm.eval_text(prefix)
    assert info["num_chars"] == len(text) and info["round_trip"] and info["num_tokens"] == tokens.size
    loader = dm.val_dataloader() if stage == "validate" else dm.test_dataloader()
    labels = torch.cat([b["labels"] for b in loader]).flatten()
    assert torch.equal(labels[labels != -100], torch.from_numpy(tokens.astype(np.int64)))  # every token, once
    metrics = c.trainer.callback_metrics
    assert float(metrics[f"{prefix}/bpc"]) < float(metrics[f"baseline/{'' if prefix == 'val' else 'test_'}unigram_bpc"])
    assert c.trainer.global_step == 0


def test_val_files_leave_all_of_files_for_training(cache, books):
    dm = CausalLMDataModule(files=[books["train"]], val_files=[books["other"]], block_size=32, vocab_size=300,
                            cache_dir=cache)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    train = dm.tokenizer.decode(dm.corpus.tokens("train").tolist(), skip_special_tokens=False)
    assert train == books["train"].read_text() and dm.corpus.num_tokens("val") == 0
    assert dm.val_num_chars == len(books["other"].read_text())
    assert set(dm.val_unigram) == {"loss", "acc", "bpc"}


def test_masked_lm_val_files_score_every_sentence_of_them(cache, books):
    dm = MaskedLMDataModule(files=[books["train"]], val_files=[books["other"]], test_files=[books["other"]],
                            max_seq_length=64, vocab_size=300, cache_dir=cache)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    val_corpus, split = dm._eval_source("val")
    assert dm.corpus.num_tokens("val") == 0 and dm.corpus.num_docs("train") == 300
    assert dm.val_dataset.corpus is val_corpus and val_corpus.num_docs(split) == 40
    assert dm.val_dataset.corpus.num_chars(split) == len(books["other"].read_text())
    batch = next(iter(dm.val_dataloader()))
    assert (batch["labels"] != -100).any()
    dm.setup("test")
    assert dm.test_dataset.corpus.num_chars("val") == len(books["other"].read_text()) and len(dm.test_dataset) > 0


def test_fine_tuning_without_a_tokenizer_takes_the_checkpoint_s(pretrained, tmp_path, cache):
    c = cli("fit", "--config", GPT_NLI, "--model.init_from", str(pretrained["gpt"]), "--data.tokenizer", "null",
            *fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1"))  # fmt: skip
    assert c.datamodule.tokenizer.path == str(pretrained["gpt"])


def test_predict_takes_the_checkpoint_tokenizer(pretrained, tmp_path, cache, capsys):
    c = cli("predict", "--model", "lit_lm.tasks.CausalLM", "--data", "lit_lm.data.PromptDataModule",
            "--data.prompts", '["the old sailor"]', "--ckpt_path", str(pretrained["gpt"]),
            "--model.max_new_tokens", "3",
            "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false")  # fmt: skip
    assert c.datamodule.tokenizer.path == str(pretrained["gpt"])
    assert ">>> the old sailor" in capsys.readouterr().out


@pytest.mark.parametrize("bar", [True, False])
def test_corpus_preparation_follows_the_trainer_s_progress_bar(bar, tmp_path, books, capfd):
    dm = CausalLMDataModule(files=[books["other"]], block_size=32, vocab_size=300, cache_dir=tmp_path)
    dm.trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=bar)
    dm.tokenizer  # noqa: B018  (trained first: only the corpus preparation is watched)
    capfd.readouterr()
    dm.prepare_data()
    assert ("tokenizing" in capfd.readouterr().err) == bar
