"""``python -m lit_lm suite``: recipes, the two arms, records (atomic, resumable), the table."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml
from cli_helpers import SUITE_RECIPES

from lit_lm.cli import main
from lit_lm.config import TransformerConfig
from lit_lm.errors import ConfigError
from lit_lm.suite import RECIPES, RecordsFile, load_recipes, read_recipes, run_config, run_suite, table
from lit_lm.suite import runner as suite_runner
from lit_lm.suite.recipes import run_fields
from lit_lm.suite.report import write_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ISSUE_TASKS = ["snli", "mnli", "rte", "scitail", "sst2", "cola", "stsb", "mrpc", "story_cloze", "copa", "squad",
               "conll"]  # fmt: skip
TIMINGS = ("wall_s", "fit_s", "date", "finished")

_WORDS = "the a man woman dog cat runs sleeps happy sad good bad park house".split()


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory) -> Path:
    """SST-2 and STS-B in their published layouts, a few dozen lines each, and a recipes file that reads them."""
    root = tmp_path_factory.mktemp("suite_data")
    rng = random.Random(0)
    for split, n in (("train", 60), ("dev", 16)):
        rows = [f"{_sentence(rng)}\t{rng.randint(0, 1)}" for _ in range(n)]
        (root / f"sst2_{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
        rows = [f"g\tf\t2012\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{_sentence(rng)}\t{_sentence(rng)}" for i in range(n)]
        (root / f"stsb_{split}.csv").write_text("\n".join(rows) + "\n")
    recipes = {
        "sst2": {"data": {"train_files": [str(root / "sst2_train.tsv")], "test_files": [str(root / "sst2_dev.tsv")],
                          "val_fraction": 0.1}, "batch_size": 8, "max_seq_length": 32},
        "stsb": {"data": {"train_files": [str(root / "stsb_train.csv")], "test_files": [str(root / "stsb_dev.csv")]},
                 "batch_size": 8, "max_seq_length": 32},
    }  # fmt: skip
    (root / "recipes.yaml").write_text(yaml.safe_dump(recipes))
    return root


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


def test_recipes_cover_every_task_family():
    assert list(RECIPES) == ISSUE_TASKS
    assert RECIPES["conll"].formats == ("encoder",)  # token classification is BERT's


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_recipes_name_files_that_exist():
    for recipe in RECIPES.values():
        for value in recipe.data.values():
            for f in value if isinstance(value, list) else [value]:
                if isinstance(f, str) and f.startswith("{data_dir}/"):
                    assert (SHARED / f.removeprefix("{data_dir}/")).exists(), (recipe.name, f)


@pytest.mark.parametrize("path", SUITE_RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_files_load(path):
    """experiments/suite/*.yaml are recipe overrides (not fit configs): each must load and change something."""
    assert read_recipes(path) != load_recipes()


def test_a_bad_recipes_file_is_named(tmp_path):
    bad = tmp_path / "recipes.yaml"
    bad.write_text("sst2: {max_steps: 5\n")
    with pytest.raises(ConfigError, match=r"recipes.yaml:2: not valid YAML \(expected ',' or '}'"):
        read_recipes(bad)
    bad.write_text("- sst2\n")
    with pytest.raises(ConfigError, match="recipes.yaml: expected a mapping of task name"):
        read_recipes(bad)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read the recipes file"):
        read_recipes(tmp_path / "missing.yaml")
    bad.write_text("sst2: {max_steps: 5}\n")
    assert read_recipes(bad)["sst2"].max_steps == 5 and read_recipes(None) == load_recipes()


def test_recipe_overrides_merge_and_refuse_unknown_fields():
    book = load_recipes({"all": {"max_steps": 50}, "sst2": {"learning_rate": 3e-5, "data": {"val_fraction": 0.2}}})
    assert {r.max_steps for r in book.values()} == {50}
    assert book["sst2"].learning_rate == 3e-5
    assert book["sst2"].data["val_fraction"] == 0.2 and book["sst2"].data["task"] == "sst2"  # merged, not replaced
    new = load_recipes({"mytask": {"title": "Mine", "datamodule": "lit_lm.data.TextClassificationDataModule",
                                   "data": {"train_files": ["a.tsv"]}}})["mytask"]  # fmt: skip
    assert new.title == "Mine" and new.task == "lit_lm.tasks.SequenceClassification"
    with pytest.raises(ConfigError, match="unknown recipe field.*'steps'"):
        load_recipes({"sst2": {"steps": 5}})
    with pytest.raises(ConfigError, match="new task 'other' needs"):
        load_recipes({"other": {"max_steps": 5}})


def test_the_two_arms_differ_only_in_the_initial_weights(tmp_path):
    arch = TransformerConfig.from_name("gpt-micro", vocab_size=1000, n_positions=64)
    configs = {arm: run_config(RECIPES["sst2"], "ckpt/last.ckpt", arch, arm, 3, tmp_path / arm, "/data", 40)
               for arm in ("pretrained", "scratch")}  # fmt: skip
    pre, scr = (configs[a]["model"]["init_args"] for a in ("pretrained", "scratch"))
    assert pre["init_from"] == "ckpt/last.ckpt" and scr["init_from"] is None
    rebuilt = TransformerConfig.from_name(scr["preset"], **scr["config"], vocab_size=1000)
    assert rebuilt.replace(name=arch.name, **pre["config"]) == arch.replace(**pre["config"])  # the checkpoint's
    assert {k: v for k, v in pre.items() if k not in ("init_from", "config")} == {
        k: v for k, v in scr.items() if k not in ("init_from", "preset", "config")
    }
    for arm in ("pretrained", "scratch"):
        data, trainer = configs[arm]["data"]["init_args"], configs[arm]["trainer"]
        assert data["tokenizer"] == "ckpt/last.ckpt" and data["format"] == "decoder" and data["seed"] == 3
        assert data["max_seq_length"] == 64  # the recipe's 64, within the checkpoint's n_positions
        assert data["train_files"] == ["/data/sst2/train.tsv"]
        assert trainer["max_steps"] == 40 and trainer["val_check_interval"] == 40
        assert configs[arm]["seed_everything"] == 3
    assert pre["lm_loss_weight"] == 0.5  # GPT-1's auxiliary LM loss for a decoder
    assert pre["config"] == {"dropout": 0.1, "attention_dropout": 0.1}  # the recipe's, in both arms
    assert scr["config"]["dropout"] == scr["config"]["attention_dropout"] == 0.1
    # an override of what may change reaches both arms; an architecture change is refused
    tuned = RECIPES["sst2"].replace(model={"config": {"attention_dropout": 0.0}})
    for arm in ("pretrained", "scratch"):
        config = run_config(tuned, "c.ckpt", arch, arm, 1, tmp_path, "/data")["model"]["init_args"]["config"]
        assert (config["dropout"], config["attention_dropout"]) == (0.1, 0.0)
    with pytest.raises(ConfigError, match="may change only .* not \\['n_layer'\\]"):
        run_config(RECIPES["sst2"].replace(model={"config": {"n_layer": 2}}), "c.ckpt", arch, "scratch", 1, tmp_path)


def test_run_fields_are_what_a_run_of_its_format_reads(tmp_path):
    """A decoder-only field changes a GPT run and not a BERT one, the table's names change neither; the config
    builder agrees (it reads the decoder's extra model args through the same rule)."""
    base = RECIPES["sst2"]
    no_lm = base.replace(decoder_model={"lm_loss_weight": 0.0})
    renamed = base.replace(title="SST-2 (binary)", metric="acc", formats=("encoder",))
    assert run_fields(no_lm.as_record(), "encoder") == run_fields(base.as_record(), "encoder")
    assert run_fields(no_lm.as_record(), "decoder") != run_fields(base.as_record(), "decoder")
    for fmt in ("encoder", "decoder"):
        assert run_fields(renamed.as_record(), fmt) == run_fields(base.as_record(), fmt)
    assert run_fields(base.replace(max_steps=7).as_record(), "encoder") != run_fields(base.as_record(), "encoder")
    gpt = TransformerConfig.from_name("gpt-micro", vocab_size=1000, n_positions=64)
    bert = TransformerConfig.from_name("bert-tiny", vocab_size=1000, n_positions=64)
    model = {name: run_config(no_lm.replace(decoder_model={"lm_loss_weight": 0.3}), "c.ckpt", arch, "pretrained", 1,
                              tmp_path)["model"]["init_args"] for name, arch in (("gpt", gpt), ("bert", bert))}
    assert model["gpt"]["lm_loss_weight"] == 0.3 and "lm_loss_weight" not in model["bert"]


def test_records_are_written_atomically(tmp_path, monkeypatch):
    records = RecordsFile(tmp_path / "records.json")
    one = {"task": "sst2", "arm": "pretrained", "seed": 1, "value": 0.5}
    records.add(one)
    records.add({**one, "value": 0.6})  # the same run again replaces its record
    assert records.load() == [{**one, "value": 0.6}]

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(suite_runner.os, "replace", crash)
    with pytest.raises(OSError):
        records.add({**one, "seed": 2})
    assert records.load() == [{**one, "value": 0.6}]  # the old list, whole


def test_report_table_pairs_seeds_and_macro_averages():
    def rec(task, arm, seed, value):
        return {"task": task, "title": task.upper(), "arm": arm, "seed": seed, "value": value, "metric": "acc",
                "metric_title": "accuracy", "steps": 3000 if task == "b" else 600, "wall_s": 1.0, "machine": "m",
                "precision": "32-true"}  # fmt: skip

    records = [rec("a", "pretrained", 1, 0.80), rec("a", "pretrained", 2, 0.84), rec("a", "scratch", 1, 0.70),
               rec("a", "scratch", 2, 0.76), rec("b", "pretrained", 1, 0.50), rec("b", "pretrained", 2, 0.52),
               rec("b", "scratch", 1, 0.51), rec("b", "scratch", 2, 0.51)]  # fmt: skip
    lines = table(records).splitlines()
    row_a = next(line for line in lines if line.startswith("| A |"))
    assert row_a.startswith("| A | accuracy | 600 | 82.0 ± 2.8 | 1, 2 |")  # each row names its budget
    assert next(line for line in lines if line.startswith("| B |")).startswith("| B | accuracy | 3,000 |")
    assert "82.0 ± 2.8" in row_a and "73.0 ± 4.2" in row_a and "9.0 ± 1.4 ✓" in row_a
    row_b = next(line for line in lines if line.startswith("| B |"))
    assert "0.0 ± 1.4 ✗" in row_b
    macro = next(line for line in lines if "macro average" in line)
    assert "66.5 ± 2.1" in macro and "4.5 ± 0.0" in macro  # per seed: (80+50)/2, (84+52)/2 vs (70+51)/2, (76+51)/2

    # arms with different seeds: only the seeds both have are paired, in the task rows and in the macro average
    shifted = [rec("a", "pretrained", 1, 0.80), rec("a", "pretrained", 2, 0.90), rec("a", "scratch", 2, 0.90),
               rec("a", "scratch", 3, 0.10), rec("b", "pretrained", 1, 0.5), rec("b", "pretrained", 2, 0.5),
               rec("b", "scratch", 2, 0.5), rec("b", "scratch", 3, 0.5)]  # fmt: skip
    lines = table(shifted).splitlines()
    assert "| 0.0 ✗ |" in next(line for line in lines if line.startswith("| A |"))
    assert next(line for line in lines if "macro average" in line).endswith("| 0.0 |")  # seed 2 alone


@pytest.mark.slow
def test_suite_command_runs_both_arms_and_reports(pretrained, tiny_tasks, tmp_path, capsys):
    out = tmp_path / "suite"
    args = ["suite", "--checkpoint", str(pretrained["gpt"]), "--tasks", "sst2,stsb", "--seeds", "1", "--scratch",
            "--max_steps", "5", "--recipes", str(tiny_tasks / "recipes.yaml"), "--out", str(out),
            "--accelerator", "cpu", "--precision", "32-true"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    records = RecordsFile(out / "records.json").load()
    assert [(r["task"], r["arm"], r["seed"]) for r in records] == [
        ("sst2", "pretrained", 1), ("sst2", "scratch", 1), ("stsb", "pretrained", 1), ("stsb", "scratch", 1)]
    assert [r["metric"] for r in records] == ["acc", "acc", "pearson", "pearson"]
    for r in records:
        assert r["steps"] == 5 and r["tokens"] > 0 and r["format"] == "decoder" and math.isfinite(r["value"])
    book = read_recipes(tiny_tasks / "recipes.yaml")
    assert [r["recipe"] for r in records] == [book[t].as_record() for t in ("sst2", "sst2", "stsb", "stsb")]
    printed = capsys.readouterr().out
    assert "task 2/2 stsb seed 1 scratch:" in printed and "ETA" in printed
    assert "| SST-2 | accuracy |" in printed and "macro average" in printed and "--max_steps 5" in printed

    # started again: everything is recorded, nothing runs
    with pytest.raises(SystemExit):
        main(args)
    assert "0 to run" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["suite", "report", "--out", str(out), "--figure", "false"])
    assert "| STS-B | Pearson corr. |" in capsys.readouterr().out
    assert (out / "table.md").is_file()


@pytest.mark.slow
def test_a_killed_suite_restarts_to_the_same_records(pretrained, tiny_tasks, tmp_path, monkeypatch):
    settings = dict(checkpoint=str(pretrained["bert"]), tasks="sst2", seeds="1,2", max_steps=3,
                    recipes=str(tiny_tasks / "recipes.yaml"), accelerator="cpu", precision="32-true", report=False)
    through = run_suite(**settings, out=str(tmp_path / "through"))
    assert [(r["arm"], r["seed"]) for r in through] == [("pretrained", 1), ("pretrained", 2)]

    original, started = suite_runner.run_one, []

    def killed_in_the_second_run(recipe, config, run_dir):
        started.append(run_dir)
        if len(started) == 2:  # what a kill leaves: a run directory half written, no record
            run_dir.mkdir(parents=True)
            (run_dir / "suite_config.yaml").write_text("half")
            raise KeyboardInterrupt
        return original(recipe, config, run_dir)

    monkeypatch.setattr(suite_runner, "run_one", killed_in_the_second_run)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_suite(**settings, out=str(out))
    assert len(json.loads((out / "records.json").read_text())) == 1
    monkeypatch.setattr(suite_runner, "run_one", original)
    again = run_suite(**settings, out=str(out))
    assert _without_timings(again) == _without_timings(through)
    assert write_report(out, figure=False).count("| SST-2 |") == 1


def test_suite_refuses_what_it_cannot_run_before_the_first_run(pretrained, tmp_path):
    gpt = str(pretrained["gpt"])
    with pytest.raises(ConfigError, match=r"\['conll'\] are not run with a decoder"):
        run_suite(gpt, tasks="conll", out=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown task"):
        run_suite(gpt, tasks="glue", out=str(tmp_path))
    with pytest.raises(ConfigError, match=r"4 data file\(s\) missing \(sst2: nowhere/sst2/train.tsv; "):
        run_suite(gpt, tasks="sst2,stsb", data_dir="nowhere", out=str(tmp_path))
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"sst2": {"data": {"val_fraction": 1.5}}}))
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    (data / "train.tsv").touch()
    (data / "dev.tsv").touch()
    with pytest.raises(ConfigError, match=r"1 run config\(s\) cannot run: sst2: val_fraction must be in \(0, 1\)"):
        run_suite(gpt, tasks="sst2", recipes=str(broken), data_dir=str(data.parent), out=str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()  # refused before any run
    RecordsFile(tmp_path / "records.json").add({"task": "sst2", "arm": "pretrained", "seed": 1, "value": 0.5,
                                                "checkpoint": gpt, "checkpoint_fingerprint": "0123"})  # fmt: skip
    with pytest.raises(ConfigError, match="holds runs of another checkpoint"):  # the same path, other weights
        run_suite(gpt, tasks="sst2", data_dir=str(data.parent), out=str(tmp_path))


def test_a_run_is_known_by_its_config_and_claimed_by_one_suite(tmp_path):
    arch = TransformerConfig.from_name("bert-mini", vocab_size=100)

    def digest(**kw):
        args = {"recipe": RECIPES["sst2"], "checkpoint": "c", "architecture": arch, "arm": "scratch", "seed": 1,
                "run_dir": tmp_path / "a", **kw}  # fmt: skip
        return suite_runner.config_digest(run_config(**args))

    assert digest() == digest(run_dir=tmp_path / "elsewhere")  # the directory is not the run
    assert len({digest(), digest(max_steps=5), digest(seed=2), digest(arm="pretrained")}) == 4
    run_dir = tmp_path / "sst2" / "pretrained" / "seed1"
    with suite_runner.claimed(run_dir) as holder:
        assert holder is None
        with suite_runner.claimed(run_dir) as second:  # a second suite on the same records: not this run
            assert second == f"{suite_runner.io.host_name()} {suite_runner.os.getpid()}"
    claim = run_dir.with_name("seed1.claim")
    assert not claim.exists()
    claim.write_text(f"{suite_runner.io.host_name()} 999999999")  # a suite that was killed
    with suite_runner.claimed(run_dir) as holder:
        assert holder is None


def test_a_failed_run_ends_only_itself_and_is_retried_by_the_next_invocation(pretrained, tiny_tasks, tmp_path,
                                                                              monkeypatch, capsys):
    from lit_lm.errors import DataError

    settings = dict(checkpoint=str(pretrained["gpt"]), tasks="sst2,stsb", seeds="1", max_steps=2,
                    recipes=str(tiny_tasks / "recipes.yaml"), accelerator="cpu", precision="32-true", report=False,
                    out=str(tmp_path))  # fmt: skip

    def fake_run(fail: set[str]):
        def run_one(recipe, config, run_dir):
            if recipe.name in fail:
                raise DataError("bad line", "train.tsv", 7)
            return {"metric": "acc", "value": 0.5, "steps": 2, "wall_s": 1.0}

        return run_one

    monkeypatch.setattr(suite_runner, "run_one", fake_run({"sst2"}))
    with pytest.raises(suite_runner.SuiteRunFailed, match=r"1 run\(s\) failed: sst2 seed 1 pretrained: DataError: "
                                                          r"train.tsv:7: bad line \(traceback: "):  # fmt: skip
        run_suite(**settings)
    assert "sst2 seed 1 pretrained: FAILED (sst2 seed 1 pretrained: DataError" in capsys.readouterr().out
    assert [r["task"] for r in RecordsFile(tmp_path / "records.json").load()] == ["stsb"]  # the next run still ran
    failure = tmp_path / "runs" / "sst2" / "pretrained" / "seed1" / "failure.txt"
    assert "Traceback" in failure.read_text() and "bad line" in failure.read_text()

    monkeypatch.setattr(suite_runner, "run_one", fake_run(set()))
    assert [r["task"] for r in run_suite(**settings)] == ["sst2", "stsb"]  # retried; stsb not run again
    assert "1 recorded in" in capsys.readouterr().out


def test_a_suite_recorded_at_another_default_precision_is_not_resumed_in_this_one(pretrained, tiny_tasks, tmp_path,
                                                                                  monkeypatch):
    """Without --precision a run's config does not name it: records made where 32-true was detected (AVX2) must not
    be taken as done where bf16-mixed is (and the rest run in bf16), nor the report hide a row that mixes them."""
    from lit_lm import hardware

    def fake_run(precision: str):
        def run_one(recipe, config, run_dir):
            return {"metric": "acc", "value": 0.5, "steps": 2, "wall_s": 1.0, "precision": precision}

        return run_one

    settings = dict(checkpoint=str(pretrained["gpt"]), tasks="sst2", max_steps=2, accelerator="cpu",
                    recipes=str(tiny_tasks / "recipes.yaml"), report=False, out=str(tmp_path))  # fmt: skip
    monkeypatch.setattr(hardware, "detect_precision", lambda accelerator: hardware.PrecisionChoice("32-true", "avx2"))
    monkeypatch.setattr(suite_runner, "run_one", fake_run("32-true"))
    run_suite(**settings, seeds="1")
    monkeypatch.setattr(hardware, "detect_precision", lambda accelerator: hardware.PrecisionChoice("bf16-mixed", ""))
    monkeypatch.setattr(suite_runner, "run_one", fake_run("bf16-mixed"))
    assert len(run_suite(**settings, seeds="1")) == 1  # nothing to run: nothing mixed
    with pytest.raises(ConfigError, match=r"1 recorded run\(s\) of this suite trained in 32-true, but this machine's "
                                          r"default precision is bf16-mixed.*Pass --precision 32-true"):  # fmt: skip
        run_suite(**settings, seeds="1,2")
    assert len(RecordsFile(tmp_path / "records.json").load()) == 1  # refused before any run
    ran = []
    monkeypatch.setattr(suite_runner, "run_one", lambda recipe, config, run_dir: ran.append(run_dir) or
                        {"metric": "acc", "value": 0.5, "steps": 2, "wall_s": 1.0, "precision": "32-true"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"--precision: Precision 'fp33' is invalid"):
        run_suite(**settings, seeds="1,2", precision="fp33")
    resumed = run_suite(**settings, seeds="1,2", precision="32")  # as the error says: seed 1 counts, seed 2 runs
    assert [r.name for r in ran] == ["seed2"] and [r["precision"] for r in resumed] == ["32-true", "32-true"]
    monkeypatch.setattr(suite_runner, "run_one", fake_run("bf16-mixed"))

    other = run_suite(**settings, seeds="1,2", records=str(tmp_path / "bf16.json"))  # its own records: no mix
    assert [r["precision"] for r in other] == ["bf16-mixed", "bf16-mixed"]
    mixed = [{**r, "title": "SST-2", "metric_title": "accuracy"} for r in RecordsFile(tmp_path / "records.json").load()]
    mixed.append({**mixed[0], "seed": 3, "precision": "bf16-mixed"})
    assert "Mixed precision within a row: SST-2 (32-true, bf16-mixed)" in table(mixed)
    assert "Mixed precision" not in table(other)


def test_the_eta_weighs_each_task_by_its_own_cost():
    squad, sst2 = RECIPES["squad"], RECIPES["sst2"]
    remaining = [(squad,), (sst2,), (sst2,)]
    # sst2 has a measured run (100 s); squad none yet: its steps at the measured seconds per step
    assert suite_runner._eta(remaining, {"sst2": [100.0]}, 0.5, None) == 0.5 * squad.max_steps + 200.0
    assert suite_runner._eta(remaining, {}, 0.5, 10) == 15.0  # --max_steps: every run takes that many


def test_a_run_is_tested_on_its_best_validation_checkpoint_not_last():
    from types import SimpleNamespace

    from lit_lm.suite.runner import _best_checkpoint

    last = SimpleNamespace(monitor=None, best_model_path="run/checkpoints/last.ckpt")
    best = SimpleNamespace(monitor="val/acc", best_model_path="run/checkpoints/best.ckpt")
    assert _best_checkpoint(SimpleNamespace(checkpoint_callbacks=[last, best])) == "run/checkpoints/best.ckpt"
    unwritten = SimpleNamespace(monitor="val/acc", best_model_path="")
    with pytest.raises(ConfigError, match="no best validation checkpoint"):
        _best_checkpoint(SimpleNamespace(checkpoint_callbacks=[last, unwritten]))


@pytest.mark.parametrize(("flags", "bf16"), [({"avx2"}, False), ({"avx2", "avx512f", "avx512_bf16"}, True)])
def test_a_record_s_machine_says_whether_the_cpu_has_native_bf16(monkeypatch, flags, bf16):
    import torch

    from lit_lm import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.setattr(hardware, "cpu_name", lambda: "AMD EPYC")
    described = suite_runner.machine()
    assert described.startswith(f"AMD EPYC ({torch.backends.cpu.get_cpu_capability()}")
    assert ("native bf16" in described) == bf16
