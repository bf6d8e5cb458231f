"""Each objective learns: it overfits one small batch, and its pieces behave as documented."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_lm.tasks import CausalLM, MaskedLM, MultipleChoice, SequenceClassification
from lit_lm.tasks.base import lr_lambda

V = 64
SMALL = {"n_layer": 2, "n_embd": 64, "n_head": 2, "intermediate_size": 128, "dropout": 0.0, "attention_dropout": 0.0}


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


def _fit(module, batch, steps=60):
    """Train on the same batch for ``steps`` steps; returns (first loss, last loss)."""
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, b, batch_idx):
            losses.append(float(outputs["loss"]))

    loader = DataLoader(_Repeat(batch, steps), batch_size=None)
    trainer = L.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Record()], accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, loader)
    return losses[0], losses[-1]


def _ids(B=4, T=16, seed=0):
    return torch.randint(7, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_causal_lm_overfits_one_batch():
    torch.manual_seed(0)
    x = _ids(T=17)
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V, learning_rate=3e-3, lr_schedule="constant")
    first, last = _fit(model, {"input_ids": x[:, :-1], "labels": x[:, 1:]})
    assert first > 0.8 * math.log(V) and last < first / 10


def test_masked_lm_overfits_one_batch():
    torch.manual_seed(0)
    x = _ids()
    labels = torch.full_like(x, -100)
    labels[:, 2::4] = x[:, 2::4]
    inputs = x.masked_fill(labels != -100, 4)  # [MASK]
    batch = {
        "input_ids": inputs, "attention_mask": torch.ones_like(x), "token_type_ids": torch.zeros_like(x),
        "labels": labels, "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }  # fmt: skip
    model = MaskedLM(preset="bert-tiny", config=SMALL, vocab_size=V, learning_rate=3e-3, lr_schedule="constant")
    first, last = _fit(model, batch)
    assert last < first / 10


@pytest.mark.parametrize("preset", ["gpt-micro", "bert-tiny"])
def test_sequence_classification_overfits_one_batch(preset):
    torch.manual_seed(0)
    x = _ids(B=6)
    batch = {
        "input_ids": x, "attention_mask": torch.ones_like(x), "token_type_ids": torch.zeros_like(x),
        "extract_positions": torch.full((6,), 15), "labels": torch.tensor([0, 1, 2, 0, 1, 2]),
    }  # fmt: skip
    model = SequenceClassification(
        preset=preset, config=SMALL, vocab_size=V, num_labels=3, learning_rate=3e-3, lr_schedule="constant",
        warmup_steps=0, lm_loss_weight=0.5 if preset.startswith("gpt") else 0.0,
    )  # fmt: skip
    first, last = _fit(model, batch)
    assert last < first / 5


def test_multiple_choice_overfits_one_batch():
    torch.manual_seed(0)
    x = _ids(B=8).view(4, 2, 16)
    batch = {
        "input_ids": x, "attention_mask": torch.ones_like(x), "token_type_ids": torch.zeros_like(x),
        "extract_positions": torch.full((4, 2), 15), "labels": torch.tensor([0, 1, 1, 0]),
    }  # fmt: skip
    model = MultipleChoice(preset="gpt-micro", config=SMALL, vocab_size=V, learning_rate=3e-3, lr_schedule="constant",
                           warmup_steps=0)  # fmt: skip
    first, last = _fit(model, batch)
    assert last < first / 5


def test_multiple_choice_runs_each_choice_as_its_own_sequence():
    """Swapping the two choices swaps the two scores: the choices never see each other."""
    torch.manual_seed(0)
    model = MultipleChoice(preset="gpt-micro", config=SMALL, vocab_size=V).eval()
    x = _ids(B=2).view(1, 2, 16)
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "extract_positions": torch.full((1, 2), 15)}
    swapped = {k: v.flip(1) for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0].flip(1), model(swapped)[0])


def test_pooling_reads_what_it_says():
    """pooler: BERT's tanh pooler on [CLS]; token: the state at extract_positions; mean: the mean over the real
    tokens only (padding changes nothing)."""
    torch.manual_seed(0)
    x = _ids(B=2)
    mask = torch.ones_like(x)
    mask[1, 10:] = 0
    batch = {"input_ids": x, "attention_mask": mask, "extract_positions": torch.tensor([0, 0])}
    feats = {}
    for pooling in ("pooler", "token", "mean"):
        torch.manual_seed(0)
        model = SequenceClassification(preset="bert-tiny", config=SMALL, vocab_size=V, num_labels=3, pooling=pooling)
        model.eval()
        with torch.no_grad():
            hidden = model.backbone(x, mask)
            feats[pooling] = model._features(hidden, batch["extract_positions"], mask)
            torch.testing.assert_close(model(batch)[0], model.classifier(feats[pooling]).float())
    torch.testing.assert_close(feats["pooler"], torch.tanh(model.backbone.pooler(hidden[:, 0])))
    torch.testing.assert_close(feats["token"], hidden[:, 0])
    torch.testing.assert_close(feats["mean"], torch.stack([hidden[0].mean(0), hidden[1, :10].mean(0)]))
    # the default: the pooler where the encoder has one, the [EXTRACT] token for a decoder
    assert SequenceClassification(preset="bert-tiny", vocab_size=V, num_labels=3)._pooling() == "pooler"
    assert SequenceClassification(preset="gpt-micro", vocab_size=V, num_labels=3)._pooling() == "token"
    torch.manual_seed(0)
    choice = MultipleChoice(preset="bert-tiny", config=SMALL, vocab_size=V, pooling="mean").eval()
    mc = {k: v.view(1, 2, -1) for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(choice(mc)[0], choice.scorer(choice._features(
            choice.backbone(x, mask), batch["extract_positions"], mask), 2).float())  # fmt: skip


def test_pooling_refuses_what_the_backbone_cannot_do():
    with pytest.raises(ValueError, match="pooling='mean'.*causal decoder"):
        SequenceClassification(preset="gpt-micro", vocab_size=V, num_labels=3, pooling="mean")
    with pytest.raises(ValueError, match="pooling='pooler' needs an encoder"):
        MultipleChoice(preset="gpt-micro", vocab_size=V, pooling="pooler")
    with pytest.raises(ValueError, match="pooling='cls': expected one of pooler, token, mean"):
        SequenceClassification(preset="bert-tiny", vocab_size=V, num_labels=3, pooling="cls")


def test_no_weight_decay_on_biases_layernorm_embeddings():
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V, weight_decay=0.1)
    decay, plain = model.parameter_groups()
    decay_ids = {id(p) for p in decay["params"]}
    assert id(model.backbone.wte.weight) not in decay_ids
    assert id(model.backbone.h[0].ln_1.weight) not in decay_ids
    assert id(model.backbone.h[0].attn.qkv.bias) not in decay_ids
    assert id(model.backbone.h[0].attn.qkv.weight) in decay_ids
    n_total = sum(1 for _ in model.parameters())
    assert len(decay["params"]) + len(plain["params"]) == n_total  # tied weight counted once


def test_adamw_is_fused_on_cpu_and_updates_like_the_reference_loop():
    torch.manual_seed(0)
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V, learning_rate=1e-2, lr_schedule="constant")
    reference = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V, learning_rate=1e-2, lr_schedule="constant")
    reference.load_state_dict(model.state_dict())
    seen = []

    class Keep(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(trainer.optimizers[0])

    x = _ids(T=17)
    batch = {"input_ids": x[:, :-1], "labels": x[:, 1:]}
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Keep()], accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(_Repeat(batch, 3), batch_size=None))
    assert seen[0].defaults["fused"] is True
    groups = reference.parameter_groups()
    loop = torch.optim.AdamW(groups, lr=1e-2, betas=tuple(model.hparams.betas), eps=model.hparams.eps, foreach=False)
    for _ in range(3):
        loop.zero_grad()
        reference.training_step(batch, 0).backward()
        loop.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        if name.endswith("attn.qkv.bias"):  # the key bias gets a ~0 gradient (softmax ignores it): AdamW's
            p, q = p[: SMALL["n_embd"]], q[: SMALL["n_embd"]]  # update of rounding noise is noise; query part only
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)


def test_lr_schedules():
    lin = lr_lambda("linear", 10, 110, 0.0)
    assert lin(0) == pytest.approx(0.1) and lin(9) == pytest.approx(1.0) and lin(60) == pytest.approx(0.5)
    assert lin(110) == pytest.approx(0.0)
    cos = lr_lambda("cosine", 0.1, 100, 0.1)  # a fraction: 10 warm-up steps
    assert cos(4) == pytest.approx(0.5) and cos(55) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    assert lr_lambda("cosine", 5, float("inf"), 0.0)(1000) == 1.0  # no step or time budget: no planned decay
    used = [0.0]
    timed = lr_lambda("linear", 5, float("inf"), 0.0, lambda: used[0])  # bounded by time only
    used[0] = 0.25
    assert timed(2) == pytest.approx(0.6) and timed(50) == pytest.approx(0.75)
    used[0] = 1.0
    assert timed(51) == pytest.approx(0.0)
    both = lr_lambda("linear", 0, 100, 0.0, lambda: used[0])  # steps and time: whichever runs out first
    used[0] = 0.1
    assert both(50) == pytest.approx(0.5) and lr_lambda("constant", 0, 100, 0.0, lambda: 0.9)(50) == 1.0


def test_a_time_budget_decays_the_learning_rate_to_its_end():
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V, lr_schedule="linear", learning_rate=1e-3)
    x = _ids(T=17)
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    loader = DataLoader(_Repeat({"input_ids": x[:, :-1], "labels": x[:, 1:]}, 10**6), batch_size=None)
    trainer = L.Trainer(max_time={"seconds": 3}, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Record()], accelerator="cpu")  # fmt: skip
    trainer.fit(model, loader)
    assert len(lrs) > 10 and lrs[0] > 0.9e-3  # the first step at the peak ...
    assert lrs[-1] < 0.2e-3 and all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # ... the last near zero


def test_generate_respects_greedy_and_length():
    torch.manual_seed(0)
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=V).eval()
    prompt = _ids(B=2, T=5)
    out = model.generate(prompt, max_new_tokens=7, temperature=0)
    assert out.shape == (2, 12) and torch.equal(out[:, :5], prompt)
    again = model.generate(prompt, max_new_tokens=7, temperature=0)
    assert torch.equal(out, again)
    sampled = model.generate(prompt, 200, temperature=1.0, top_k=3)  # longer than n_positions: context is cropped
    assert sampled.shape == (2, 205)


def test_task_refuses_the_wrong_kind_of_backbone():
    with pytest.raises(ValueError, match="CausalLM needs a decoder"):
        CausalLM(preset="bert-tiny", vocab_size=V)
    with pytest.raises(ValueError, match="MaskedLM needs an encoder"):
        MaskedLM(preset="gpt-micro", vocab_size=V)
    with pytest.raises(ValueError, match="lm_loss_weight > 0.*needs a decoder"):
        SequenceClassification(preset="bert-tiny", vocab_size=V, num_labels=3, lm_loss_weight=0.5)


def test_unknown_preset_is_a_clear_error():
    from lit_lm.config import ConfigError

    with pytest.raises(ConfigError, match="unknown preset 'gpt-huge'"):
        CausalLM(preset="gpt-huge", vocab_size=V)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_causal_lm_reports_bits_per_character_only_over_text_it_round_trips(kind, tmp_path, caplog):
    from lit_lm.data import CausalLMDataModule

    dm = CausalLMDataModule(cache_dir=tmp_path, vocab_size=400, block_size=16, batch_size=8, split="tail",
                            tokenizer_kind=kind)  # fmt: skip
    torch.manual_seed(0)
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=dm.vocab_size)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with caplog.at_level("INFO"):
        metrics = trainer.validate(model, dm, verbose=False)[0]
        trainer.validate(model, dm, verbose=False)
    said = [r for r in caplog.records if "val/bpc not reported" in r.getMessage()]
    if kind == "wordpiece":
        assert "val/bpc" not in metrics and len(said) == 1  # once per run, not once per validation
        return
    assert not said
    # the same figure from scratch: total NLL of every validation token over every validation character
    nll = 0.0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = model(batch["input_ids"]).float()
            nll += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                           reduction="sum"))  # fmt: skip
    chars = len(dm.tokenizer.decode(dm.corpus.tokens("val").tolist()))
    assert metrics["val/bpc"] == pytest.approx(nll / chars / math.log(2), rel=1e-4)


def test_pretraining_tasks_log_the_unigram_baseline_once(tmp_path):
    """baseline/unigram_*: a unigram model counted on the training tokens (add-one smoothed), scored on validation."""
    from collections import Counter

    from lit_lm.data import CausalLMDataModule, MaskedLMDataModule
    from lit_lm.tasks import MaskedLM

    dm = CausalLMDataModule(cache_dir=tmp_path, vocab_size=400, block_size=16, batch_size=8, split="tail")
    model = CausalLM(preset="gpt-micro", config=SMALL, vocab_size=dm.vocab_size)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    metrics = trainer.validate(model, dm, verbose=False)[0]
    train, val = dm.corpus.tokens("train").tolist(), dm.corpus.tokens("val").tolist()
    counts, vocab = Counter(train), dm.corpus.vocab_size
    loss = -sum(math.log((counts[t] + 1) / (len(train) + vocab)) for t in val) / len(val)
    top = counts.most_common(1)[0][0]
    assert metrics["baseline/unigram_loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["baseline/unigram_acc"] == pytest.approx(sum(t == top for t in val) / len(val))
    chars = len(dm.tokenizer.decode(val))
    assert metrics["baseline/unigram_bpc"] == pytest.approx(loss * len(val) / chars / math.log(2), rel=1e-5)
    assert "baseline/unigram_loss" not in trainer.validate(model, dm, verbose=False)[0]  # logged once per run

    mdm = MaskedLMDataModule(cache_dir=tmp_path, vocab_size=400, max_seq_length=32, batch_size=8, nsp=False)
    bert = MaskedLM(preset="bert-tiny", config=SMALL, vocab_size=mdm.vocab_size, nsp=False)
    metrics = trainer.validate(bert, mdm, verbose=False)[0]
    assert 0 < metrics["baseline/unigram_acc"] < 1 and metrics["baseline/unigram_loss"] > 0
    assert "baseline/unigram_bpc" not in metrics  # WordPiece sentences do not give the text back
