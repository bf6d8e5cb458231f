"""Helpers for tests that run the CLI (``python -m lit_lm``) in-process."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every LightningCLI config under experiments/; experiments/suite/ holds recipe overrides of `python -m lit_lm suite`
# (see SUITE_RECIPES), which are not fit configs.
SUITE_RECIPES = sorted((ROOT / "experiments" / "suite").glob("*.yaml"))
CONFIGS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p not in SUITE_RECIPES)
TINY = '{"n_layer": 1, "n_embd": 32, "n_head": 2, "intermediate_size": 64, "n_positions": 512}'


def cli(*args: str):
    from lit_lm.cli import LitLMCLI

    return LitLMCLI(args=list(args))


def fast_args(root: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
        "--trainer.precision", "32-true", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--data.cache_dir", str(cache), *extra,
    ]  # fmt: skip
