"""experiments/results.py: one record per run in results.json (from the run's TensorBoard logs), a table of means and
standard deviations over seeds with the pretrained-minus-scratch gap paired by seed, targets judged on them, and
only the README's results block rewritten."""

from __future__ import annotations

import importlib.util
import json
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
    monkeypatch.setattr(module, "RESULTS_JSON", tmp_path / "results.json")
    monkeypatch.setattr(module, "CURVES_JSON", tmp_path / "curves.json")
    monkeypatch.setattr(module, "SUITE_RECORDS", tmp_path / "suite")
    return module


def _log(root: Path, scalars: dict[str, list[float]], config: dict | None = None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(root / "tensorboard"))
    writer.add_scalar("hp_metric", -1, 0)
    for tag, values in scalars.items():
        for step, v in enumerate(values):
            writer.add_scalar(tag, v, step * 10)
    writer.close()
    if config is not None:
        import yaml

        (root / "tensorboard" / "config.yaml").write_text(yaml.safe_dump(config))


def _record(results, name: str, seed, value: float) -> None:
    exp = results.BY_NAME[name]
    results.save_record({"name": name, "family": exp.family, "init": exp.init, "seed": seed, "task": exp.task,
                         "metric": exp.metric, "value": value, "steps": 600, "tokens": 1000, "wall_s": 400.0,
                         "machine": "test CPU", "precision": "32-true"})  # fmt: skip


def _rows(results) -> dict[str, str]:
    text = results.table()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    return {e.name: rows[e.what] for e in results.EXPERIMENTS}


def test_collect_reads_a_run_into_a_record(results):
    exp = results.BY_NAME["snli_from_gpt"]
    root = exp.run_dir(2)
    _log(root, {"train/loss": [1.0, 0.9, 0.8], "test/acc": [0.61], "throughput/tokens_seen": [100.0, 900.0, 2000.0]},
         config={"seed_everything": 2, "trainer": {"precision": "bf16-mixed"}})  # fmt: skip
    (root / "wall.json").write_text(json.dumps({"started": 0.0, "fit_s": 420.5, "test_s": 30.0}))
    record = results.collect(exp, 2)
    assert record["value"] == pytest.approx(0.61) and record["seed"] == 2 and record["steps"] == 20
    assert record["tokens"] == 2000 and record["wall_s"] == 420.5 and record["precision"] == "bf16-mixed"
    assert {"name", "family", "init", "seed", "task", "metric", "value", "steps", "tokens", "wall_s", "machine",
            "precision"} <= set(record)  # fmt: skip
    assert record["family"] == "gpt" and record["init"] == "pretrained" and record["task"] == "snli"


def test_steps_are_the_fits_not_the_last_logged_point(results):
    # 1080 steps, train/ logged every 50 (0-based steps): the last train/ point is 1049; tokens_seen is logged
    # again when training ends, at the trainer's global step
    logs = {"train/loss": [(0.0, s, 1.0) for s in range(49, 1080, 50)],
            "throughput/tokens_seen": [(0.0, 1049, 9.0), (1.0, 1080, 10.0)]}  # fmt: skip
    assert results.steps_done(logs) == 1080
    assert results.steps_done({"train/loss": logs["train/loss"]}) == 1050  # older logs: the last point, 1-based


def test_a_rerun_replaces_its_record(results):
    _record(results, "snli_from_gpt", 1, 0.50)
    _record(results, "snli_from_gpt", 2, 0.52)
    _record(results, "snli_from_gpt", 1, 0.55)
    records = json.loads(results.RESULTS_JSON.read_text())
    assert [(r["seed"], r["value"]) for r in records] == [(1, 0.55), (2, 0.52)]


def test_table_shows_mean_std_and_the_paired_gap(results):
    _record(results, "gpt_shakespeare", None, 2.40)
    for seed, scratch, pre in [(1, 0.50, 0.54), (2, 0.52, 0.55), (3, 0.49, 0.53)]:
        _record(results, "snli_gpt_scratch", seed, scratch)
        _record(results, "snli_from_gpt", seed, pre)
    for seed, scratch, pre in [(1, 0.50, 0.51), (2, 0.52, 0.51), (3, 0.49, 0.52)]:
        _record(results, "snli_bert_scratch", seed, scratch)
        _record(results, "snli_from_bert", seed, pre)
    _record(results, "snli_minilm", 1, 0.79)
    _record(results, "story_cloze_gpt_scratch", 1, 0.50)
    _record(results, "story_cloze_from_gpt", 1, 0.60)
    by_run = _rows(results)
    assert "val/bpc 2.400" in by_run["gpt_shakespeare"] and "<= 2.45 bpc met" in by_run["gpt_shakespeare"]
    assert "test/acc 54.0% ± 1.0 (3 seeds)" in by_run["snli_from_gpt"]
    # paired gaps +4, +3, +4 points: mean +3.7, sd 0.6 -> beats by >= 2 points and by more than the spread
    assert "+3.7 ± 0.6 pts vs snli_gpt_scratch (3 seeds)" in by_run["snli_from_gpt"]
    assert "> snli_gpt_scratch by >= 2 pts met" in by_run["snli_from_gpt"]
    assert "> snli_bert_scratch by >= 2 pts **missed**" in by_run["snli_from_bert"]  # +1, -1, +3
    # a target is of the mean over all the arm's seeds: one seed of three is not yet met or missed
    assert ">= 80% pending (1 of 3 seeds)" in by_run["snli_minilm"] and "600" in by_run["snli_minilm"]
    assert "pending (1 of 3 seeds)" in by_run["story_cloze_from_gpt"] and " met" not in by_run["story_cloze_from_gpt"]
    assert "not run" in by_run["bert_gutenberg"]


def test_report_rewrites_only_the_results_block(results):
    pytest.importorskip("matplotlib")
    exp = results.BY_NAME["gpt_shakespeare"]
    _log(exp.run_dir(None), {"val/bpc": [3.1, 2.40], "val/loss": [5.0, 4.0], "train/loss": [6.0, 4.0]})
    _record(results, "gpt_shakespeare", None, 2.40)
    results.README.write_text(f"# title\nbefore\n{results.BEGIN}\nold table\n{results.END}\nafter\n")
    results.report(record=True)
    text = results.README.read_text()
    assert text.startswith("# title\nbefore\n") and text.endswith("\nafter\n")
    assert "old table" not in text and "val/bpc 2.400" in text and "test CPU" in text
    assert (results.PLOTS / "gpt_shakespeare.png").is_file()


def test_report_writes_each_cross_task_table_into_the_suite_block(results):
    pytest.importorskip("matplotlib")
    from lit_lm.suite import RecordsFile

    suite = results.SUITE_BY_NAME["gpt_gutenberg"]
    store = RecordsFile(suite.records("aaaa"))
    for arm, seed, value in (("pretrained", 1, 0.62), ("pretrained", 2, 0.60), ("scratch", 1, 0.55),
                             ("scratch", 2, 0.56)):  # fmt: skip
        store.add({"task": "sst2", "title": "SST-2", "arm": arm, "seed": seed, "metric": "acc", "value": value,
                   "metric_title": "accuracy", "steps": 600, "wall_s": 90.0, "machine": "test CPU",
                   "precision": "32-true", "checkpoint": "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt",
                   "date": "2026-12-05"})  # fmt: skip
    # a later session pretrained the checkpoint again (another fingerprint): its lone SST-2 run is not mixed in,
    # and its CoLA runs make their own row
    other = RecordsFile(suite.records("bbbb"))
    for task, title, value in (("sst2", "SST-2", 0.99), ("cola", "CoLA", 0.2)):
        other.add({"task": task, "title": title, "arm": "pretrained", "seed": 1, "metric": "mcc", "value": value,
                   "metric_title": "Matthews corr.", "steps": 600, "wall_s": 90.0, "machine": "test CPU",
                   "precision": "32-true", "checkpoint": "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt",
                   "date": "2026-12-06"})  # fmt: skip
    results.README.write_text(f"{results.BEGIN}\n{results.END}\nmiddle\n{results.SUITE_BEGIN}\nold\n"
                              f"{results.SUITE_END}\nafter\n")  # fmt: skip
    results.report(record=True)
    text = results.README.read_text()
    block = text.split(results.SUITE_BEGIN)[1].split(results.SUITE_END)[0]
    assert "\nmiddle\n" in text and text.endswith("\nafter\n") and "old" not in block
    assert "| SST-2 | accuracy | 600 | 61.0 ± 1.4 | 1, 2 | 55.5 ± 0.7 | 5.5 ± 2.1 ✓ |" in block and "99.0" not in block
    assert "| CoLA | Matthews corr. | 600 | 20.0 |" in block
    assert "2 checkpoints, by fingerprint: `aaaa`: SST-2; `bbbb`: CoLA." in block
    assert "suite gpt_gutenberg`; recipes: the defaults with [`gutenberg_recipes.yaml`]" in block
    assert "| SST-2 |" in block.split("| CoLA |")[0]  # the recipes' order, whatever the files' names
    # a third file as complete for SST-2 as the first, and finished later the same day: the newest wins
    third = RecordsFile(suite.records("0000"))
    for arm, seed in (("pretrained", 1), ("pretrained", 2), ("scratch", 1), ("scratch", 2)):
        third.add({"task": "sst2", "title": "SST-2", "arm": arm, "seed": seed, "metric": "acc", "value": 0.5,
                   "metric_title": "accuracy", "wall_s": 90.0, "machine": "test CPU", "precision": "32-true",
                   "checkpoint": "x", "date": "2026-12-05", "finished": "2026-12-05T15:00:00+00:00"})  # fmt: skip
    records, used = results.suite_records(suite)
    assert used == {"0000": ["sst2"], "bbbb": ["cola"]}
    assert {r["value"] for r in records if r["task"] == "sst2"} == {0.5}
    # one checkpoint: the README still names it
    for path in suite.records_dir.glob("*.json"):
        if path.stem != "aaaa":
            path.unlink()
    results.report(record=True)
    assert "Checkpoint fingerprint `aaaa` (every row)." in results.README.read_text()
    assert block.count("Not run yet.") == 2  # the BERT and MiniLM tables
    assert "![suite_gpt_gutenberg](plots/suite_gpt_gutenberg.png)" in block
    assert (results.PLOTS / "suite_gpt_gutenberg.png").is_file()


def test_suite_records_leave_out_runs_of_another_recipe(results, capsys):
    from lit_lm.suite import RecordsFile

    suite = results.SUITE_BY_NAME["gpt_gutenberg"]
    today = results.suite_recipes(suite)
    assert today["rte"]["learning_rate"] == 2e-4  # the suite's recipes file is applied
    store = RecordsFile(suite.records("aaaa"))
    base = {"title": "SST-2", "metric": "acc", "metric_title": "accuracy", "machine": "test CPU",
            "precision": "32-true", "wall_s": 90.0, "checkpoint": "x", "date": "2026-12-05"}  # fmt: skip
    older = {**today["sst2"], "learning_rate": 1e-4}
    store.add({**base, "task": "sst2", "arm": "pretrained", "seed": 1, "value": 0.6, "recipe": older})
    store.add({**base, "task": "sst2", "arm": "pretrained", "seed": 2, "value": 0.7, "recipe": today["sst2"]})
    store.add({**base, "task": "cola", "arm": "pretrained", "seed": 1, "value": 0.2})  # before records kept recipes
    records, used = results.suite_records(suite)
    assert sorted((r["task"], r["seed"]) for r in records) == [("cola", 1), ("sst2", 2)]
    assert used == {"aaaa": ["sst2", "cola"]}
    err = capsys.readouterr().err
    assert "1 run(s) of sst2 left out" in err and f"learning_rate 0.0001 -> {today['sst2']['learning_rate']!r}" in err
    # every run of a file stale: the file gives no rows at all
    store.add({**base, "task": "cola", "arm": "pretrained", "seed": 1, "value": 0.2, "recipe": {"max_steps": 1}})
    store.add({**base, "task": "sst2", "arm": "pretrained", "seed": 2, "value": 0.7, "recipe": older})
    assert results.suite_records(suite) == ([], {})
    # display names, and a decoder's auxiliary LM loss for an encoder's run, do not change a run
    store = RecordsFile(suite.records("bbbb"))
    renamed = {**today["sst2"], "title": "SST-2 (GLUE)", "metric": "acc."}
    store.add({**base, "task": "sst2", "arm": "pretrained", "seed": 1, "value": 0.7, "recipe": renamed})
    no_lm = {**today["rte"], "decoder_model": {"lm_loss_weight": 0.0}}
    for seed, fmt in ((1, "encoder"), (2, "decoder")):
        store.add({**base, "task": "rte", "arm": "pretrained", "seed": seed, "value": 0.5, "format": fmt,
                   "recipe": no_lm})  # fmt: skip
    capsys.readouterr()
    records, _ = results.suite_records(suite)
    assert sorted((r["task"], r["seed"]) for r in records) == [("rte", 1), ("sst2", 1)]
    assert "1 run(s) of rte left out of the table: recipe changed since: decoder_model" in capsys.readouterr().err


def test_report_refuses_a_readme_without_the_block(results):
    pytest.importorskip("matplotlib")
    results.README.write_text("# title\n")
    with pytest.raises(SystemExit, match="results:begin"):
        results.report(record=True)
    assert not results.PLOTS.exists() and not results.CURVES_JSON.exists(), "nothing is written before the check"


def test_report_keeps_the_curves_and_redraws_from_them_without_the_runs(results):
    pytest.importorskip("matplotlib")
    import shutil

    exp = results.BY_NAME["gpt_shakespeare"]
    _log(exp.run_dir(None), {"val/bpc": [3.1, 2.40], "val/loss": [5.0, 4.0], "train/loss": [6.0, 4.0]})
    _record(results, "gpt_shakespeare", None, 2.40)
    results.PLOTS.mkdir(parents=True)
    (results.PLOTS / "snli.png").write_bytes(b"committed figure")
    results.README.write_text(f"{results.BEGIN}\n{results.END}\n")
    results.report(record=True)
    saved = json.loads(results.CURVES_JSON.read_text())
    assert [v for _, s, v in saved["gpt_shakespeare"]["series"]["val/bpc"]] == pytest.approx([3.1, 2.40])
    assert [s for _, s, _ in saved["gpt_shakespeare"]["series"]["val/bpc"]] == [0, 10]
    # a figure whose compared arms have no curves is not redrawn half-empty: the committed file stays
    assert (results.PLOTS / "snli.png").read_bytes() == b"committed figure"

    shutil.rmtree(results.RUNS)  # a fresh checkout: no runs/cpu, the curves from curves.json
    (results.PLOTS / "gpt_shakespeare.png").unlink()
    results.report(record=True)
    assert (results.PLOTS / "gpt_shakespeare.png").is_file()
    assert json.loads(results.CURVES_JSON.read_text()) == saved


def _fake_lit_lm(results, monkeypatch, value: float) -> list[list[str]]:
    """``python -m lit_lm ...`` replaced by writing the logs a finished run leaves (its metric: ``value``)."""
    commands = []

    def fake_run(cmd, cwd, check):
        commands.append(cmd)
        root = Path(cmd[cmd.index("--trainer.default_root_dir") + 1])
        _log(root, {"val/bpc": [3.0, value], "throughput/tokens_seen": [10.0, 20.0]}, config={"seed_everything": 1})

    monkeypatch.setattr(results.subprocess, "run", fake_run)
    return commands


def test_run_keeps_its_records_beside_the_runs_unless_told_to_record(results, monkeypatch, capsys):
    results.RESULTS_JSON.write_text("[]\n")
    _fake_lit_lm(results, monkeypatch, 2.30)
    results.main(["run", "gpt_shakespeare"])
    assert results.RESULTS_JSON.read_text() == "[]\n", "a plain run leaves the tracked records alone"
    unrecorded = results.RUNS / "results.json"
    kept = json.loads(unrecorded.read_text())
    assert [(r["name"], r["value"]) for r in kept] == [("gpt_shakespeare", pytest.approx(2.30))]
    assert f"record -> {unrecorded}" in capsys.readouterr().out

    _record(results, "gpt_shakespeare", 1, 2.50)  # the recorded run of the config's seed (experiments/results.json)
    results.README.write_text(f"{results.BEGIN}\nold table\n{results.END}\n")
    results.main(["report"])
    out = capsys.readouterr().out
    assert "val/bpc 2.300" in out and "val/bpc 2.500" not in out, "report shows the unrecorded run in place"
    assert "old table" in results.README.read_text() and not results.PLOTS.exists() and not results.CURVES_JSON.exists()

    _fake_lit_lm(results, monkeypatch, 2.20)
    results.main(["run", "gpt_shakespeare", "--record"])
    assert [r["value"] for r in json.loads(results.RESULTS_JSON.read_text())] == [pytest.approx(2.20)]
    assert json.loads(unrecorded.read_text())[0]["value"] == pytest.approx(2.30)
    results.main(["report", "--record"])
    assert "val/bpc 2.200" in results.README.read_text() and "old table" not in results.README.read_text()


def test_a_damaged_results_file_is_named(results):
    results.RESULTS_JSON.write_text('[{"name": "gpt_shakespeare",\n')
    with pytest.raises(SystemExit, match=r"results\.json:2: not valid JSON"):
        results.load_records()
    results.CURVES_JSON.write_text("[]")
    with pytest.raises(SystemExit, match=r"curves\.json: expected a JSON dict, got list"):
        results.curves()


def test_a_suite_piece_runs_lit_lm_suite_into_the_tracked_records(results, monkeypatch, tmp_path):
    monkeypatch.setattr(results, "ROOT", tmp_path)
    calls = []
    monkeypatch.setattr(results.subprocess, "run", lambda command, **kw: calls.append((command, kw)))
    with pytest.raises(SystemExit, match="needs runs/cpu/gpt_gutenberg/checkpoints/last.ckpt: run `python .*"
                                         "results.py run gpt_gutenberg`"):  # fmt: skip
        results.main(["suite", "gpt_gutenberg"])
    (tmp_path / "runs" / "hf" / "all-MiniLM-L6-v2").mkdir(parents=True)
    (tmp_path / "runs" / "hf" / "all-MiniLM-L6-v2" / "config.json").write_text("{}")
    from lit_lm.suite.runner import checkpoint_fingerprint

    fingerprint = checkpoint_fingerprint(tmp_path / "runs" / "hf" / "all-MiniLM-L6-v2")
    results.main(["suite", "minilm", "--tasks", "sst2,stsb", "--seeds", "1", "2", "--record"])
    (command, kw), = calls
    assert command[1:] == ["-m", "lit_lm", "suite", "--checkpoint", "runs/hf/all-MiniLM-L6-v2", "--out",
                           f"runs/suite/minilm/{fingerprint}", "--scratch", "false", "--tasks", "sst2,stsb",
                           "--seeds", "1,2", "--records", f"suite/minilm/{fingerprint}.json"]  # fmt: skip
    assert kw["cwd"] == tmp_path and kw["check"]
    # the Gutenberg tables pass their recipes file (tracked, beside the records)
    (tmp_path / "runs" / "cpu" / "gpt_gutenberg" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "cpu" / "gpt_gutenberg" / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    results.main(["suite", "gpt_gutenberg", "--tasks", "snli"])
    recipes = calls[-1][0][calls[-1][0].index("--recipes") + 1]
    assert recipes == "experiments/suite/gutenberg_recipes.yaml" and (ROOT / recipes).is_file()
