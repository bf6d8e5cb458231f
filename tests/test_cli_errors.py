"""Bad input at the command line ends with one line, ``lit_lm: error: ...``, and exit status 2, never a traceback;
and no file that lit_lm reads can run code unless the user opted in (``--trust_checkpoint true``)."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import pickle
import posix
import re
import struct
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from cli_helpers import ROOT, fast_args

from lit_lm.cli import main
from lit_lm.errors import CheckpointError
from lit_lm.model.hf import config_to_hf, lit_to_hf
from lit_lm.serialization import (
    TRUST_HINT,
    _globals_in_file,
    _is_dangerous,
    checkpoints_trusted,
    load_torch_file,
    read_checkpoint,
    trust_checkpoints,
)
from lit_lm.tasks.pretrained import config_from_checkpoint

GPT_PRETRAIN = "experiments/quickstart/gpt_pretrain.yaml"
GPT_NLI = "experiments/quickstart/gpt_nli.yaml"


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a hostile checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def run_cli(capsys, *args: str) -> str:
    """Run ``python -m lit_lm <args>`` in-process; return its one error line (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("lit_lm: error:")]
    assert len(errors) == 1, err
    assert "usage:" not in err
    return errors[0]


# ------------------------------------------------------------------------------------------------ bad files
def _bad_file(kind: str, good: Path, directory: Path, marker: Path) -> Path:
    path = directory / f"{kind}.ckpt"
    if kind == "malicious":
        torch.save({"state_dict": {}, "lit_lm": Payload(marker)}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind != "missing":
        raise ValueError(kind)
    return path


def _hf_dir(kind: str, directory: Path, marker: Path, pretrained: dict[str, Path]) -> Path:
    """A Hugging Face directory (config.json of a tiny BERT) whose pytorch_model.bin is bad in the given way."""

    ckpt = read_checkpoint(pretrained["bert"])
    config = config_from_checkpoint(ckpt, pretrained["bert"])
    hf = directory / f"hf_{kind}"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(config_to_hf(config)))
    good = hf / "good.bin"
    torch.save(lit_to_hf(ckpt["state_dict"], config), good)
    if kind == "wrong_architecture":  # the GPT's weights under the BERT's config.json
        gpt = read_checkpoint(pretrained["gpt"])
        gpt_config = config_from_checkpoint(gpt, pretrained["gpt"])
        torch.save(lit_to_hf(gpt["state_dict"], gpt_config), hf / "pytorch_model.bin")
    elif kind != "missing":
        _bad_file(kind, good, directory, marker).rename(hf / "pytorch_model.bin")
    good.unlink()
    return hf


KINDS = ["malicious", "missing", "empty", "truncated", "random", "wrong_architecture"]
ENTRY_POINTS = [
    "init_from", "tokenizer", "fit", "validate", "test", "predict", "hf_pytorch_model_bin", "prepare", "export",
]
EXPECTED = {
    "malicious": r"refused to load: the file calls the Python object io\.open, which runs commands or code",
    "missing": r"not found|no model.safetensors",
    "empty": r"empty file",
    "truncated": r"not a readable",
    "random": r"not a readable",
}
WRONG_ARCHITECTURE = {
    "init_from": r"CausalLM needs a decoder",
    "tokenizer": r"data.tokenizer .* is not the tokenizer of the model in .* \(2 of \d+ tokens differ",
    "fit": r"written by a lit_lm.tasks.CausalLM run, but this config's model is lit_lm.tasks.SequenceClassification",
    "validate": r"its weights do not fit this CausalLM \(1 weights missing",
    "test": r"written by a lit_lm.tasks.MaskedLM run",
    "predict": r"written by a lit_lm.tasks.MaskedLM run",
    "hf_pytorch_model_bin": r"hf_wrong_architecture: checkpoint does not match the architecture in its config.json",
    "prepare": r"checkpoint carries no lit_lm tokenizer",
    "export": r"not written by a lit_lm task",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_bad_files_give_one_clear_line_and_never_run_code(entry, kind, tmp_path, cache, pretrained, capsys):
    gpt, bert = str(pretrained["gpt"]), str(pretrained["bert"])
    marker = tmp_path / "payload_ran"
    if kind == "wrong_architecture":
        bad = {
            "init_from": bert,  # a BERT into a GPT objective
            "fit": gpt,  # a CausalLM checkpoint resumed as a classifier
            "test": bert,
            "predict": bert,
        }.get(entry)
        if entry == "validate":  # the right task, but a weight is gone
            ckpt = torch.load(gpt, weights_only=True)
            ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
            bad = tmp_path / "tampered.ckpt"
            torch.save(ckpt, bad)
        if entry == "tokenizer":  # another tokenizer of the same size: two tokens swap ids
            tok = json.loads(read_checkpoint(gpt)["lit_lm"]["tokenizer"])
            vocab = tok["model"]["vocab"]
            first, second = sorted(vocab, key=vocab.get)[100:102]
            vocab[first], vocab[second] = vocab[second], vocab[first]
            bad = tmp_path / "other_tokenizer.json"
            bad.write_text(json.dumps(tok))
        if entry in ("prepare", "export"):  # a Lightning checkpoint that lit_lm did not write
            bad = tmp_path / "foreign.ckpt"
            torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)
    elif entry != "hf_pytorch_model_bin":
        bad = _bad_file(kind, pretrained["gpt"], tmp_path, marker)
    if entry == "hf_pytorch_model_bin":
        bad = _hf_dir(kind, tmp_path, marker, pretrained)
    bad = str(bad)

    run = fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1")
    args = {
        "init_from": ["fit", "--config", GPT_PRETRAIN if kind == "wrong_architecture" else GPT_NLI,
                      "--model.init_from", bad, "--model.config", "null",
                      # unset, a wrong backbone comes with its own tokenizer: the architecture is what is wrong
                      "--data.tokenizer", "null" if kind == "wrong_architecture" else gpt, *run],
        "tokenizer": ["fit", "--config", GPT_NLI, "--model.init_from", gpt, "--data.tokenizer", bad, *run],
        "fit": ["fit", "--config", GPT_NLI, "--data.tokenizer", gpt, "--ckpt_path", bad, *run],
        "validate": ["validate", "--config", GPT_PRETRAIN if kind == "wrong_architecture" else GPT_NLI,
                     "--data.tokenizer", gpt, "--ckpt_path", bad, *run],
        "test": ["test", "--config", GPT_NLI, "--data.tokenizer", gpt, "--ckpt_path", bad, *run],
        "predict": ["predict", "--config", GPT_NLI, "--data.tokenizer", gpt, "--ckpt_path", bad, *run],
        "hf_pytorch_model_bin": ["fit", "--config", "experiments/quickstart/bert_nli.yaml", "--model.init_from", bad,
                                 "--data.tokenizer", bert, *run],
        "prepare": ["prepare", "--files", str(ROOT / "README.md"), "--tokenizer", bad, "--out_dir", str(tmp_path / "p"),
                    "--progress", "false"],
        "export": ["export", "--ckpt_path", bad, "--out", str(tmp_path / "hf")],
    }[entry]  # fmt: skip
    line = run_cli(capsys, *args)
    assert not marker.exists(), "the checkpoint's payload ran"
    pattern = WRONG_ARCHITECTURE[entry] if kind == "wrong_architecture" else EXPECTED[kind]
    assert re.search(pattern, line), line
    if kind == "malicious":
        assert "trust_checkpoint" not in line, "a file that would run code is never worth the opt-in"
    named = Path(bad).name if kind == "wrong_architecture" or entry != "hf_pytorch_model_bin" else "pytorch_model.bin"
    if kind == "missing" and entry == "hf_pytorch_model_bin":
        named = Path(bad).name
    assert named in line, line


def test_the_opt_in_loads_a_trusted_file_and_only_then(tmp_path, cache, pretrained, capsys):
    marker = tmp_path / "payload_ran"
    evil = _bad_file("malicious", pretrained["gpt"], tmp_path, marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_torch_file(evil)
    assert not marker.exists() and not checkpoints_trusted()
    line = run_cli(
        capsys, "fit", "--config", GPT_NLI, "--model.init_from", str(evil), "--data.tokenizer", str(pretrained["gpt"]),
        "--trust_checkpoint", "true", *fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1"),
    )  # fmt: skip
    assert marker.exists(), "--trust_checkpoint true reads the file with the full unpickler"
    assert "not written by a lit_lm task" in line
    assert not checkpoints_trusted(), "the opt-in ends with the CLI run"
    marker.unlink()
    with trust_checkpoints():
        load_torch_file(evil)
    assert marker.exists() and not checkpoints_trusted()


class Calls:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@dataclasses.dataclass
class Settings:
    """A harmless class of the user's own, as a LightningModule may keep in its hyperparameters."""

    width: int = 3


def _hand_written_pickle(module: str, name: str, arg: str | list[str]) -> bytes:
    """Protocol-2 pickle bytes that call ``module.name(arg)``, written opcode by opcode (no Python object needed)."""
    encoded = [s.encode() for s in ([arg] if isinstance(arg, str) else arg)]
    strings = b"".join(b"X" + struct.pack("<I", len(data)) + data for data in encoded)  # BINUNICODE each
    arg_bytes = strings if isinstance(arg, str) else b"](" + strings + b"e"  # a list: EMPTY_LIST MARK ... APPENDS
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + arg_bytes + b"\x85R."


HOSTILE = {  # what the file calls, and with what, to create the marker file
    "os.system": (os.system, lambda marker: f"touch {marker}"),
    "posix.system": (posix.system, lambda marker: f"touch {marker}"),
    "builtins.eval": (eval, lambda marker: f"open({str(marker)!r}, 'w')"),
    "subprocess.Popen": (subprocess.Popen, lambda marker: ["touch", str(marker)]),
}


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "after a harmless class", "pickle protocol 2",
                                 "pickle protocol 4", "hand-written"])  # fmt: skip
@pytest.mark.parametrize("call", HOSTILE)
def test_a_file_that_runs_a_command_is_refused_by_name_and_never_offered_the_opt_in(call, how, tmp_path):
    marker = tmp_path / "payload_ran"
    func, arg = HOSTILE[call]
    payload = Calls(func, arg(marker))
    path = tmp_path / "evil.ckpt"
    if how == "torch.save":
        torch.save({"state_dict": {}, "lit_lm": payload}, path)
    elif how == "torch.save legacy":
        torch.save({"state_dict": {"w": torch.ones(2)}, "x": payload}, path, _use_new_zipfile_serialization=False)
    elif how == "after a harmless class":  # torch names only the first object it refuses: the harmless one
        torch.save({"state_dict": {}, "hparams": Settings(), "lit_lm": payload}, path)
    elif how.startswith("pickle protocol"):
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    else:
        module, name = call.split(".")
        path.write_bytes(_hand_written_pickle(module, name, arg(marker)))
    with pytest.warns() if how == "pickle protocol 4" else contextlib.nullcontext():  # torch warns of protocol 4
        with pytest.raises(CheckpointError) as error:
            load_torch_file(path)
    message = str(error.value)
    assert not marker.exists(), "the file's payload ran"
    name = r"(os|posix)\.system" if call.endswith(".system") else re.escape(call)
    assert re.search(rf"evil.ckpt: refused to load: the file calls the Python object {name}, which runs commands or "
                     rf"code", message), message  # fmt: skip
    assert "trust_checkpoint" not in message, message  # no --trust_checkpoint, no trust_checkpoints()

    if how.startswith("torch.save") or how == "after a harmless class":  # the payload is live: unpickling runs it
        with trust_checkpoints():
            loaded = load_torch_file(path)
    else:  # not a torch file, so torch.load(weights_only=False) stops at its magic number; pickle runs it
        loaded = pickle.loads(path.read_bytes())
    for value in loaded.values() if isinstance(loaded, dict) else [loaded]:
        if isinstance(value, subprocess.Popen):
            value.wait()
    assert marker.exists()


def test_a_harmless_unknown_class_is_named_with_the_opt_in(tmp_path):
    path = tmp_path / "mine.ckpt"
    torch.save({"state_dict": {}, "hparams": Settings(), "data_dir": Path("data")}, path)
    with pytest.raises(CheckpointError) as error:
        load_torch_file(path)
    message = str(error.value)
    assert f"refers to the Python object {__name__}.Settings" in message, message
    assert TRUST_HINT in message
    with trust_checkpoints():
        assert load_torch_file(path)["hparams"] == Settings()
    assert not any(_is_dangerous(name) for name in _globals_in_file(path)), "a pathlib.Path is harmless"


def test_nothing_but_the_safe_loader_calls_torch_load():
    """Every ``torch.load`` in lit_lm/ goes through lit_lm.serialization, which passes weights_only=True unless
    the user opted in."""
    calls = []
    for path in (ROOT / "lit_lm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load":
                if getattr(node.func.value, "id", None) == "torch":
                    calls.append((path.relative_to(ROOT).as_posix(), ast.unparse(node)))
    assert [file for file, _ in calls] == ["lit_lm/serialization.py"], calls
    assert "weights_only=not trusted" in calls[0][1]


# ------------------------------------------------------------------------------------------------ bad settings
def test_misspelled_options_and_config_keys_name_the_close_match(tmp_path, capsys):
    line = run_cli(capsys, "fit", "--config", GPT_NLI, "--model.learnin_rate", "1e-3")
    assert "unknown option --model.learnin_rate" in line and "did you mean --model.learning_rate?" in line
    assert "python -m lit_lm fit --help" in line
    line = run_cli(capsys, "fit", "--config", GPT_NLI, "--trainer.max_stepz", "3")
    assert "unknown option --trainer.max_stepz; did you mean --trainer.max_steps?" in line
    line = run_cli(capsys, "fit", "--config", GPT_NLI, "--data.batch_sise", "3")
    assert "unknown option --data.batch_sise for lit_lm.data.NLIDataModule; did you mean --data.batch_size?" in line

    text = (ROOT / GPT_NLI).read_text()
    for good, bad in (("learning_rate:", "learnin_rate:"), ("  max_epochs:", "  max_epochz:"),
                      ("seed_everything:", "seed_everythin:")):
        assert good in text
        config = tmp_path / f"{bad.strip(' :')}.yaml"
        config.write_text(text.replace(good, bad, 1))
        number = next(i for i, line in enumerate(config.read_text().splitlines(), 1) if bad in line)
        line = run_cli(capsys, "fit", "--config", str(config))
        assert f"{config}:{number}" in line, line
        assert f"did you mean --{'' if 'seed' in bad else 'trainer.' if 'epoch' in bad else 'model.'}" in line, line


def test_a_bad_key_is_located_in_its_own_section(tmp_path, capsys):
    """data.learning_rate (unknown to the DataModule) points at the data section's line, not model.learning_rate's."""
    text = (ROOT / GPT_NLI).read_text().replace("    batch_size: 32", "    batch_size: 32\n    learning_rate: 3")
    config = tmp_path / "misplaced.yaml"
    config.write_text(text)
    number = len(text.split("    learning_rate: 3")[0].splitlines()) + 1
    line = run_cli(capsys, "fit", "--config", str(config))
    assert f"unknown option --data.learning_rate for lit_lm.data.NLIDataModule at {config}:{number}" in line, line


def test_wrong_typed_values_name_the_expected_type(capsys):
    assert "--trainer.max_steps: expected int, got 'abc'" in run_cli(
        capsys, "fit", "--config", GPT_NLI, "--trainer.max_steps", "abc"
    )
    assert "--model.learning_rate: expected float, got 'fast'" in run_cli(
        capsys, "fit", "--config", GPT_NLI, "--model.learning_rate", "fast"
    )
    line = run_cli(capsys, "fit", "--config", GPT_NLI, "--model.lr_schedule", "cosin")
    assert "--model.lr_schedule: expected one of 'linear', 'cosine', 'constant', got 'cosin'" in line
    assert "expected dict or null, got '3'" in run_cli(capsys, "fit", "--config", GPT_NLI, "--model.config", "3")


def test_bad_settings_give_clear_errors(tmp_path, cache, pretrained, capsys):
    def error_of(*args: str) -> str:
        return run_cli(capsys, "fit", *args, *fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1"))

    assert "unknown preset 'gpt-42'; available presets: bert-base" in error_of(
        "--config", GPT_PRETRAIN, "--model.preset", "gpt-42"
    )
    assert "no-such-corpus.txt: corpus file or directory not found" in error_of(
        "--config", GPT_PRETRAIN, "--data.files", '["no-such-corpus.txt"]'
    )
    predicted = run_cli(capsys, "predict", "--config", GPT_PRETRAIN, "--ckpt_path", str(pretrained["gpt"]),
                        *fast_args(tmp_path, cache))  # a pretraining config has a corpus, not prompts
    assert "CausalLMDataModule has no predict split" in predicted and "PromptDataModule" in predicted


# ------------------------------------------------------------------------------------------------ progress bar
@pytest.mark.parametrize("bound", ["steps", "time"])
def test_the_progress_bar_shows_the_true_budget(bound, tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lit_lm.callbacks import BudgetRichProgressBar, BudgetTQDMProgressBar

    for bar in (BudgetRichProgressBar(), BudgetTQDMProgressBar()):
        limit = {"max_steps": 3} if bound == "steps" else {"max_time": "00:00:10:00", "max_epochs": -1,
                                                           "limit_train_batches": 2, "max_steps": 4}  # fmt: skip
        trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[bar], logger=False, enable_checkpointing=False,
                            limit_val_batches=0, enable_model_summary=False, **limit)  # fmt: skip
        trainer.fit(BoringModel())
        items = bar.get_metrics(trainer, trainer.lightning_module)
        assert items["step"] == f"{trainer.global_step}/{trainer.max_steps}"
        if bound == "time":
            assert re.fullmatch(r"0:\d\d/10:00", items["time"]), items
        else:
            assert "time" not in items
        if isinstance(bar, BudgetRichProgressBar):
            description = bar._get_train_description(trainer.current_epoch)
            assert description.strip() == f"Epoch {trainer.current_epoch}", description
