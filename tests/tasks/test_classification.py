"""SequenceClassification across problems: regression, GPT-1's two views of a pair, the metric sets and the one check
of the task against the data; and the CLI's best checkpoint chosen by the data's main metric."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lit_lm.errors import ConfigError
from lit_lm.tasks import SequenceClassification

V = 64
SMALL = {"n_layer": 2, "n_embd": 64, "n_head": 2, "intermediate_size": 128, "dropout": 0.0, "attention_dropout": 0.0}


def _ids(*shape, seed=0):
    return torch.randint(7, V, shape, generator=torch.Generator().manual_seed(seed))


def _pair_batch(B=6, T=12, views=2, regression=True, seed=0):
    """GPT-1's similarity format: each example as (B, V, T) views, [EXTRACT] last."""
    x = _ids(B, views, T, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    labels = torch.rand(B, generator=g) * 5 if regression else torch.randint(0, 2, (B,), generator=g)
    return {
        "input_ids": x, "attention_mask": torch.ones_like(x), "token_type_ids": torch.zeros_like(x),
        "extract_positions": torch.full((B, views), T - 1), "labels": labels,
    }  # fmt: skip


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


class _Data(L.LightningDataModule):
    """A DataModule stating its problem as lit_lm's fine-tuning DataModules do, serving one fixed batch."""

    def __init__(self, batch, steps=2, **problem):
        super().__init__()
        self.batch, self.steps = batch, steps
        self.vocab_size = V
        for k, v in problem.items():
            setattr(self, k, v)

    def train_dataloader(self):
        return DataLoader(_Repeat(self.batch, self.steps), batch_size=None)

    val_dataloader = test_dataloader = predict_dataloader = train_dataloader


def _trainer(steps=2, **kwargs):
    return L.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def test_regression_overfits_a_tiny_batch_and_predicts_scores():
    torch.manual_seed(0)
    batch = _pair_batch(views=1)
    batch = {k: (v if k == "labels" else v[:, 0]) for k, v in batch.items()}  # one view: (B, T)
    model = SequenceClassification(
        preset="bert-tiny", config=SMALL, vocab_size=V, problem_type="regression", learning_rate=3e-3,
        lr_schedule="constant", warmup_steps=0,
    )  # fmt: skip
    assert model.hparams.num_labels == 1 and model.classifier.classifier.out_features == 1
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, b, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = _trainer(steps=80, callbacks=[Record()])
    trainer.fit(model, DataLoader(_Repeat(batch, 80), batch_size=None))
    assert losses[-1] < losses[0] / 20
    model.eval()
    with torch.no_grad():
        scores = model.predict_step(batch, 0)
    assert scores.shape == (6,) and scores.dtype == torch.float32
    assert (scores - batch["labels"]).abs().max() < 0.3  # labels spread over 0..5


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_two_views_are_added_before_the_head_so_their_order_does_not_matter(pooling):
    """GPT-1 (section 3.3, similarity): both orderings run through the backbone, their features are added
    element-wise, then the linear head. Swapping the views changes no prediction."""
    torch.manual_seed(0)
    preset = "gpt-micro" if pooling == "token" else "bert-tiny"
    model = SequenceClassification(preset=preset, config=SMALL, vocab_size=V, num_labels=2, pooling=pooling).eval()
    batch = _pair_batch(B=3, regression=False)
    batch["attention_mask"][1, 0, 9:] = 0  # padding in one view of one example
    swapped = {k: (v if k == "labels" else v.flip(1)) for k, v in batch.items()}
    with torch.no_grad():
        logits, hidden = model(batch)
        torch.testing.assert_close(model(swapped)[0], logits)
        assert torch.equal(model.predict_step(swapped, 0), model.predict_step(batch, 0))
        assert hidden.shape == (6, 12, 64)  # B * V sequences
        features = [
            model._features(
                model.backbone(batch["input_ids"][:, v], batch["attention_mask"][:, v]),
                batch["extract_positions"][:, v], batch["attention_mask"][:, v],
            )
            for v in range(2)
        ]  # fmt: skip
        torch.testing.assert_close(logits, model.classifier(features[0] + features[1]).float())
        # and not merely symmetric: the sum differs from either view alone
        assert not torch.allclose(logits, model.classifier(2 * features[0]).float())


def test_views_train_with_the_auxiliary_lm_loss_over_all_views():
    torch.manual_seed(0)
    batch = _pair_batch(regression=False)
    model = SequenceClassification(preset="gpt-micro", config=SMALL, vocab_size=V, num_labels=2, lm_loss_weight=0.5)
    model.eval()
    with torch.no_grad():
        logits, hidden = model(batch)
        per_view = [
            model._lm_loss(model.backbone(batch["input_ids"][:, v]), batch["input_ids"][:, v], None) for v in range(2)
        ]
        loss = model._step(batch, "train")  # (self.log without a trainer only warns)
        expected = F.cross_entropy(logits, batch["labels"]) + 0.5 * (per_view[0] + per_view[1]) / 2
        torch.testing.assert_close(loss, expected)
    model.train()
    trainer = _trainer(steps=2)
    data = _Data(batch, num_labels=2, metrics=("f1", "acc"), main_metric="f1", views=2)
    trainer.fit(model, datamodule=data)
    assert {"train/lm_loss", "train/f1", "train/acc", "val/f1", "val/acc", "val/lm_loss"} <= set(
        trainer.callback_metrics
    )


def test_the_data_states_the_problem_and_metrics_of_an_unbuilt_model():
    batch = _pair_batch()
    data = _Data(batch, num_labels=1, problem_type="regression", metrics=("pearson", "spearman"),
                 main_metric="pearson", views=2)  # fmt: skip
    model = SequenceClassification(preset="gpt-micro", config=SMALL)
    trainer = _trainer(steps=2)
    trainer.fit(model, datamodule=data)
    assert model.hparams.problem_type == "regression" and model.hparams.num_labels == 1
    assert model.hparams.metrics == ["pearson", "spearman"]
    assert {"val/pearson", "val/spearman", "val/loss"} <= set(trainer.callback_metrics)
    assert model.val_confusion is None  # no confusion matrix for a regression
    preds = trainer.predict(model, datamodule=data)
    assert preds[0].shape == (6,) and preds[0].is_floating_point()


def test_a_model_built_before_the_data_takes_its_metric_list():
    """vocab_size and num_labels given: the network is built at once, with the default metrics; the DataModule's
    list (CoLA: mcc first) replaces them when the trainer attaches it."""
    batch = {k: (v if k == "labels" else v[:, 0]) for k, v in _pair_batch(regression=False).items()}
    model = SequenceClassification(preset="bert-tiny", config=SMALL, vocab_size=V, num_labels=2)
    assert sorted(k for k in model.metrics if k.startswith("val")) == ["val_acc", "val_macro_f1"]
    trainer = _trainer(steps=2)
    trainer.fit(model, datamodule=_Data(batch, num_labels=2, metrics=("mcc", "acc"), main_metric="mcc"))
    assert sorted(k for k in model.metrics if k.startswith("val")) == ["val_acc", "val_mcc"]
    assert {"val/mcc", "val/acc"} <= set(trainer.callback_metrics) and "val/macro_f1" not in trainer.callback_metrics
    preds = trainer.predict(model, datamodule=_Data(batch, num_labels=2))
    assert preds[0].dtype == torch.long and preds[0].shape == (6,)  # class ids


def test_classification_keeps_its_default_metrics():
    """An NLI DataModule of before (num_labels only): accuracy and macro F1, logged as {stage}/macro_f1."""
    batch = {k: (v if k == "labels" else v[:, 0]) for k, v in _pair_batch(regression=False).items()}
    batch["labels"] = torch.tensor([0, 1, 2, 0, 1, 2])
    model = SequenceClassification(preset="gpt-micro", config=SMALL)
    trainer = _trainer(steps=2)
    trainer.fit(model, datamodule=_Data(batch, num_labels=3))
    assert model.hparams.problem_type == "single_label_classification" and model.hparams.metrics is None
    assert {"train/acc", "train/macro_f1", "val/acc", "val/macro_f1"} <= set(trainer.callback_metrics)
    assert model.val_confusion is not None


def test_the_task_is_checked_against_the_data_in_one_place():
    def check(model, **data):
        model._resolve_data_settings(SimpleNamespace(**data))

    with pytest.raises(ConfigError, match="model problem_type='regression' but the DataModule's problem is "
                                          "'single_label_classification'"):  # fmt: skip
        check(SequenceClassification(problem_type="regression"), num_labels=2)
    with pytest.raises(ConfigError, match="problem_type='single_label_classification'.*DataModule's problem is 'regr"):
        check(SequenceClassification(problem_type="single_label_classification"), num_labels=1,
              problem_type="regression")  # fmt: skip
    with pytest.raises(ConfigError, match="model num_labels=3 but the DataModule has 2 labels"):
        check(SequenceClassification(num_labels=3), num_labels=2)
    with pytest.raises(ConfigError, match="selects checkpoints by 'mcc'.*logs only acc, macro_f1; add 'mcc'"):
        check(SequenceClassification(metrics=["acc", "macro_f1"]), num_labels=2, metrics=("mcc", "acc"),
              main_metric="mcc")  # fmt: skip
    with pytest.raises(ConfigError, match="problem_type='regression' has one output, but num_labels=3"):
        SequenceClassification(preset="gpt-micro", vocab_size=V, num_labels=3, problem_type="regression")
    with pytest.raises(ConfigError, match="'acc' is a classification metric"):
        SequenceClassification(preset="gpt-micro", vocab_size=V, problem_type="regression", metrics=["acc"])
    with pytest.raises(ConfigError, match="'f1' is the F1 of the positive class"):
        SequenceClassification(preset="gpt-micro", vocab_size=V, num_labels=3, metrics=["f1"])
    # a model built with other labels than the data's is refused when the trainer attaches the data
    batch = {k: (v if k == "labels" else v[:, 0]) for k, v in _pair_batch(regression=False).items()}
    with pytest.raises(ConfigError, match="model num_labels=3 but the DataModule has 2 labels"):
        _trainer().fit(SequenceClassification(preset="gpt-micro", config=SMALL, vocab_size=V, num_labels=3),
                       datamodule=_Data(batch, num_labels=2))  # fmt: skip


# ----------------------------------------------------------------------------------- the CLI's best checkpoint
def _best_checkpoint(tmp_path):
    from lit_lm.cli import LitLMCLI

    args = ["--config", "experiments/quickstart/gpt_pretrain.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--data.cache_dir", str(tmp_path / "cache")]  # fmt: skip
    c = LitLMCLI(args=args, run=False)
    (best,) = [cb for cb in c.trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.filename == "best"]
    return best


def test_the_cli_keeps_the_lowest_val_loss_without_a_main_metric(tmp_path):
    best = _best_checkpoint(tmp_path)
    assert (best.monitor, best.mode) == ("val/loss", "min")


def test_the_cli_keeps_the_best_checkpoint_by_the_datas_main_metric(tmp_path, monkeypatch):
    from lit_lm.data import CausalLMDataModule

    monkeypatch.setattr(CausalLMDataModule, "main_metric", "mcc", raising=False)
    best = _best_checkpoint(tmp_path)
    assert (best.monitor, best.mode) == ("val/mcc", "max")
