"""experiments/results.py: the table reads the headline metric from TensorBoard logs, judges targets, and rewrites
only the README's results block."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("tensorboard")


@pytest.fixture
def results(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "experiments" / "results.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "results_script", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(module, "PLOTS", tmp_path / "plots")
    monkeypatch.setattr(module, "README", tmp_path / "README.md")
    return module


def _log(results, name: str, scalars: dict[str, list[float]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(results.RUNS / name / "tensorboard"))
    writer.add_scalar("hp_metric", -1, 0)
    for tag, values in scalars.items():
        for step, v in enumerate(values):
            writer.add_scalar(tag, v, step)
    writer.close()


def test_table_reports_last_values_and_targets(results):
    _log(results, "gpt_shakespeare", {"val/bpc": [3.1, 2.40]})
    _log(results, "snli_scratch", {"test/acc": [0.55]})
    _log(results, "snli_from_gpt", {"test/acc": [0.60]})
    _log(results, "snli_from_bert", {"test/acc": [0.50]})
    _log(results, "snli_minilm", {"test/acc": [0.79]})
    text, _ = results.table()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    by_run = {e.name: rows[e.what] for e in results.EXPERIMENTS}
    assert "val/bpc 2.400" in by_run["gpt_shakespeare"] and "<= 2.45 bpc met" in by_run["gpt_shakespeare"]
    assert "> snli_scratch met" in by_run["snli_from_gpt"]
    assert "> snli_scratch **missed**" in by_run["snli_from_bert"]
    assert "test/acc 79.0%" in by_run["snli_minilm"] and ">= 80% **missed**" in by_run["snli_minilm"]
    assert "not run" in by_run["bert_gutenberg"]


def test_report_rewrites_only_the_results_block(results):
    pytest.importorskip("matplotlib")
    _log(results, "gpt_shakespeare", {"val/bpc": [3.1, 2.40]})
    results.README.write_text(f"# title\nbefore\n{results.BEGIN}\nold table\n{results.END}\nafter\n")
    results.report(readme=True)
    text = results.README.read_text()
    assert text.startswith("# title\nbefore\n") and text.endswith("\nafter\n")
    assert "old table" not in text and "val/bpc 2.400" in text
    assert (results.PLOTS / "gpt_shakespeare.png").is_file()


def test_report_refuses_a_readme_without_the_block(results):
    pytest.importorskip("matplotlib")
    results.README.write_text("# title\n")
    with pytest.raises(SystemExit, match="results:begin"):
        results.report(readme=True)
