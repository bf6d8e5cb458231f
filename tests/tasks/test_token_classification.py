"""TokenClassification: entity-level scores equal seqeval's on whole sentences (windows put back together), a tiny
model fits the built-in data and a CoNLL excerpt and logs val/f1 (the CLI's checkpoint metric), predictions give one
tag per word and round-trip through the conlleval file, and the one check of the task against the data."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from cli_helpers import TINY, cli, fast_args
from lightning.pytorch.callbacks import ModelCheckpoint
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.finetuning.conll import builtin_token_classification, read_conll
from lit_lm.data.finetuning.token_classification import TokenClassificationDataModule
from lit_lm.errors import ConfigError, DataError
from lit_lm.tasks.token_classification import EntityScores, TokenClassification

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
SMALL = json.loads(TINY)


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent (the real data folder sits beside the checkout in CI)")
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _corrupt(tags: tuple[str, ...], rng: random.Random) -> list[str]:
    """Prediction errors of every kind conlleval distinguishes: wrong type, boundary too short or too long, entity
    missed, spurious entity."""
    out = list(tags)
    for i, tag in enumerate(tags):
        r = rng.random()
        if tag.startswith("B-") and r < 0.15:  # wrong type, whole entity
            kind = rng.choice([k for k in ("PER", "LOC", "ORG", "MISC") if k != tag[2:]])
            j = i
            while j < len(tags) and (j == i or tags[j] == "I-" + tag[2:]):
                out[j] = ("B-" if j == i else "I-") + kind
                j += 1
        elif tag.startswith("I-") and r < 0.2:  # boundary: entity cut short
            out[i] = "O"
        elif tag == "O" and i > 0 and tags[i - 1] != "O" and r < 0.2:  # boundary: entity runs on
            out[i] = "I-" + tags[i - 1][2:]
        elif tag.startswith("B-") and r < 0.25:  # missed
            out[i] = "O"
        elif tag == "O" and r < 0.03:  # spurious
            out[i] = "B-MISC"
    return out


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory) -> str:
    texts = [" ".join(s.words) for s in builtin_token_classification("train")]
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    Tokenizer.train_from_texts(texts, vocab_size=500).save(path)
    return str(path)


def test_entity_scores_equal_seqeval_on_whole_sentences(tmp_path, tok_path):
    sentences = read_conll(shared_file("conll2003/eng.testa")).examples[:300]
    rng = random.Random(0)
    predicted = [_corrupt(s.tags, rng) for s in sentences]
    rows = [{"tokens": list(s.words), "ner_tags": list(s.tags)} for s in sentences]
    path = write(tmp_path / "val.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    dm = TokenClassificationDataModule(train_files=[str(path)], val_files=[str(path)], tokenizer=tok_path,
                                       labels=LABELS, max_seq_length=12, batch_size=16)  # fmt: skip
    dm.setup("validate")
    assert dm.stats["val"]["split_sentences"] > 50  # many sentences span several windows
    batches, next_word = [], [0] * len(sentences)
    for batch in dm.val_dataloader():
        preds = batch["labels"].clone()
        for row, s in enumerate(batch["sentence_index"].tolist()):
            starts = batch["word_starts"][row]
            n = int(starts.sum())
            preds[row, starts] = torch.tensor([LABELS.index(t) for t in predicted[s][next_word[s] : next_word[s] + n]])
            next_word[s] += n
        batches.append((preds, batch["labels"], batch["word_starts"], batch["sentence_index"], batch["window_index"]))
    assert next_word == [len(s.words) for s in sentences]
    metric = EntityScores(LABELS)
    for b in [*reversed(batches), batches[3]]:  # any order; a window seen twice (DDP padding) counts once
        metric.update(*b)
    got = {k: float(v) for k, v in metric.compute().items()}
    gold = [list(s.tags) for s in sentences]
    want = {"f1": f1_score(gold, predicted), "precision": precision_score(gold, predicted),
            "recall": recall_score(gold, predicted)}  # fmt: skip
    report = classification_report(gold, predicted, output_dict=True)
    want.update({f"f1_{k}": report[k]["f1-score"] for k in ("LOC", "MISC", "ORG", "PER")})
    assert got == pytest.approx(want, abs=1e-6)
    assert 0.4 < got["f1"] < 0.9 and got["precision"] != got["recall"]
    assert metric.sentences() == (gold, predicted)
    for name in ("preds", "target", "lengths", "sentence_index", "window_index"):  # as a DDP sync leaves them
        setattr(metric, name, torch.cat(getattr(metric, name)))
    assert metric.sentences() == (gold, predicted)


def _trainer(steps: int = 3, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=steps, val_check_interval=steps, limit_val_batches=2, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("preset, format", [("bert-tiny", "encoder"), ("gpt-micro", "decoder")])
def test_a_tiny_model_fits_the_builtin_set_and_predicts_one_tag_per_word(tmp_path, tok_path, cache, preset, format):
    dm = TokenClassificationDataModule(tokenizer=tok_path, format=format, batch_size=32, cache_dir=str(cache))
    model = TokenClassification(preset=preset, config=SMALL, learning_rate=1e-3)
    trainer = _trainer(default_root_dir=tmp_path)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "val/precision", "val/recall"} <= set(metrics)
    assert {"val/f1_PER", "val/f1_LOC"} & set(metrics)
    assert model.hparams.label_names == dm.label_names and model.hparams.num_labels == 9
    predictions = trainer.predict(model, dataloaders=dm.val_dataloader())
    tags = dm.sentence_tags(predictions, "val")
    sentences = dm.examples("val")
    assert [len(t) for t in tags] == [len(s.words) for s in sentences] and set(sum(tags, [])) <= set(LABELS)
    out = tmp_path / "val.conll"
    dm.write_predictions(str(out), predictions, "val")
    gold = read_conll(out, "bio2", tag_column=1).examples
    assert [(s.words, s.tags) for s in gold] == [(s.words, s.tags) for s in sentences]
    assert [line.split()[2] for line in out.read_text().splitlines() if line] == sum(tags, [])
    # the checkpoint knows the labels: a model loaded from it predicts the same without the DataModule
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = TokenClassification.load_from_checkpoint(tmp_path / "m.ckpt").eval()
    assert loaded.hparams.label_names == dm.label_names
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    with torch.no_grad():
        assert loaded.predict_step(batch, 0)["tags"] == model.predict_step(batch, 0)["tags"]
    trainer.predict(model, datamodule=dm)  # the test split: `predict` writes word gold predicted for conlleval
    written = read_conll(tmp_path / "predictions.conll", "bio2", tag_column=1).examples
    assert [(s.words, s.tags) for s in written] == [(s.words, s.tags) for s in dm.examples("test")]


def test_cli_fits_a_conll_excerpt_and_keeps_the_best_val_f1(tmp_path, cache):
    def excerpt(name: str, n: int) -> str:
        text = shared_file(f"conll2003/{name}").read_text()
        return str(write(tmp_path / name, "\n\n".join(text.split("\n\n")[: n + 1]) + "\n"))

    c = cli(
        "fit", "--model", "lit_lm.tasks.token_classification.TokenClassification", "--model.preset", "bert-tiny",
        "--model.config", TINY, "--data", "lit_lm.data.finetuning.token_classification.TokenClassificationDataModule",
        "--data.train_files", f"[{excerpt('eng.train', 200)}]", "--data.val_files", f"[{excerpt('eng.testa', 60)}]",
        "--data.vocab_size", "600", "--data.batch_size", "16",
        *fast_args(tmp_path, cache, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                   "--trainer.limit_val_batches", "2", "--trainer.logger", "false"),
    )  # fmt: skip
    assert c.trainer.global_step == 2 and "val/f1" in c.trainer.callback_metrics
    [best] = [cb for cb in c.trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    assert best.monitor == "val/f1" and best.mode == "max"
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert c.model.hparams.label_names == LABELS


def test_the_task_checks_the_data_once(tok_path, tmp_path):
    from lit_lm.data import TextClassificationDataModule

    dm = TokenClassificationDataModule(tokenizer=tok_path)
    with pytest.raises(ConfigError, match="label_names .* are not the DataModule's"):
        TokenClassification(label_names=["O", "B-X", "I-X"])._resolve_data_settings(dm)
    with pytest.raises(ConfigError, match="model num_labels=3 but the DataModule has 9"):
        TokenClassification(num_labels=3)._resolve_data_settings(dm)
    with pytest.raises(ConfigError, match="DataModule's problem is 'single_label_classification'"):
        TokenClassification()._resolve_data_settings(TextClassificationDataModule(tokenizer=tok_path))
    with pytest.raises(ConfigError, match="num_labels=2 but label_names has 3"):
        TokenClassification(num_labels=2, label_names=["O", "B-X", "I-X"])
    # a test-only run (no training files) tags with the checkpoint's labels, not the built-in set's
    test_file = write(tmp_path / "test.txt", "Ann B-X\nSmith I-X\nsings O\n")
    dm = TokenClassificationDataModule(tokenizer=tok_path, test_files=[str(test_file)], reader="two_column",
                                       tag_scheme="bio2")  # fmt: skip
    TokenClassification(label_names=["O", "B-X", "I-X"])._resolve_data_settings(dm)
    assert dm.label_names == ["O", "B-X", "I-X"]
    assert [list(s.tags) for s in dm.examples("test")] == [["B-X", "I-X", "O"]]
    other = TokenClassificationDataModule(tokenizer=tok_path, test_files=[str(test_file)], reader="two_column",
                                          tag_scheme="bio2")  # fmt: skip
    TokenClassification(label_names=["O", "B-Y", "I-Y"])._resolve_data_settings(other)
    with pytest.raises(DataError, match="test.txt:1: .*B-X"):
        other.examples("test")
    model = TokenClassification(vocab_size=500, label_names=LABELS, config=SMALL)  # built at once, scores included
    assert model.token_classifier.classifier.out_features == 9 and set(model.entity_scores) == {"val", "test"}


def test_without_seqeval_construction_fails_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "seqeval", None)
    monkeypatch.setitem(sys.modules, "seqeval.metrics", None)
    with pytest.raises(ConfigError, match=r"pip install 'lit_lm\[ner\]'"):
        TokenClassification()
