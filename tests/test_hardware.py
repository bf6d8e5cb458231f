"""Precision detection: bf16-mixed only where the CPU (or GPU) has native bf16; the configs leave precision unset so
that the CLI detects it, prints it once and records it; an explicit --trainer.precision wins."""

from __future__ import annotations

import pytest
import torch
import yaml

from lit_lm import hardware
from lit_lm.cli import LitLMCLI

AVX2_FLAGS = {"fpu", "sse2", "avx", "avx2", "fma"}
BF16_FLAGS = AVX2_FLAGS | {"avx512f", "avx512_bf16"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(AVX2_FLAGS, "32-true"), (BF16_FLAGS, "bf16-mixed"), (AVX2_FLAGS | {"amx_bf16"}, "bf16-mixed"),
     (AVX2_FLAGS | {"avx512f"}, "32-true"), (set(), "32-true")],
)  # fmt: skip
def test_cpu_precision_follows_the_bf16_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choice = hardware.detect_precision("cpu")
    assert choice.precision == expected
    assert ("avx512_bf16" in choice.reason or "amx_bf16" in choice.reason) == (expected == "bf16-mixed")
    assert hardware.detect_precision("auto").precision == expected


def test_gpu_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.detect_precision("gpu").precision == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.detect_precision("auto").precision == "16-mixed"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2_FLAGS)
    assert hardware.detect_precision("cpu").precision == "32-true"  # accelerator: cpu on a GPU machine


def test_this_machine_is_read_not_assumed():
    flags = hardware.cpu_flags()
    choice = hardware.detect_precision("cpu")
    assert choice.precision == ("bf16-mixed" if {"avx512_bf16", "amx_bf16"} & flags else "32-true")
    assert hardware.cpu_name() in choice.reason


def _cli(tmp_path, *extra):
    args = ["--config", "experiments/quickstart/gpt_pretrain.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--data.cache_dir", str(tmp_path / "cache"), *extra]  # fmt: skip
    return LitLMCLI(args=args, run=False)


@pytest.mark.parametrize("flags", [AVX2_FLAGS, BF16_FLAGS])
def test_cli_detects_prints_and_records_the_precision(monkeypatch, tmp_path, caplog, flags):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    expected = "bf16-mixed" if flags is BF16_FLAGS else "32-true"
    with caplog.at_level("INFO"):
        cli = _cli(tmp_path, "--trainer.accelerator", "cpu")
    assert cli.trainer.precision == expected
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lit_lm: precision")]
    assert len(said) == 1 and expected in said[0] and "--trainer.precision" in said[0]
    hparams = cli.trainer.logger.hparams
    assert hparams["precision"] == expected and hparams["precision_detected"]


def test_an_explicit_precision_wins(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: BF16_FLAGS)
    with caplog.at_level("INFO"):
        cli = _cli(tmp_path, "--trainer.accelerator", "cpu", "--trainer.precision", "32-true")
    assert cli.trainer.precision == "32-true"
    assert not [r for r in caplog.records if "detected" in r.getMessage()]


def test_cpu_configs_leave_precision_to_detection():
    from pathlib import Path

    for path in sorted(Path("experiments/cpu").glob("*.yaml")) + sorted(Path("experiments/quickstart").glob("*.yaml")):
        trainer = yaml.safe_load(path.read_text())["trainer"]
        assert "precision" not in trainer, f"{path}: precision is detected per machine; do not fix it in the config"
