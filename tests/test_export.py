"""``python -m lit_lm export``: transformers loads the directory, tokenizes to the same ids, computes the same
logits, runs its pipelines; importing it back with ``init_from`` gives the same weights."""

from __future__ import annotations

import pytest
import torch

from lit_lm.cli import main
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.export import export_checkpoint
from lit_lm.serialization import read_checkpoint
from lit_lm.tasks import CausalLM, MaskedLM
from lit_lm.tasks.pretrained import load_pretrained

transformers = pytest.importorskip("transformers")

TEXT = "The old sailor walked to the harbour, and the dog followed him."


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_export_loads_in_transformers_with_the_same_ids_and_logits(family, pretrained, tmp_path, capsys):
    ckpt, out = pretrained[family], tmp_path / "hf"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ckpt), "--out", str(out)])
    assert exit_info.value.code == 0
    assert "exported" in capsys.readouterr().out
    ours = Tokenizer.from_file(ckpt)
    assert ours.kind == {"bert": "wordpiece", "gpt": "bpe"}[family]  # each family's default
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json"} | ({"vocab.txt"} if family == "bert" else set())  # fmt: skip
    assert expected <= {p.name for p in out.iterdir()}

    theirs = transformers.AutoTokenizer.from_pretrained(out)
    assert theirs(TEXT, add_special_tokens=False)["input_ids"] == ours.encode(TEXT)
    # what lit_lm adds: [CLS] ... [SEP] for BERT; nothing for a GPT language model (predict continues the prompt)
    assert theirs(TEXT)["input_ids"] == ours.encode(TEXT, add_special_tokens=family == "bert")
    if family == "gpt":  # GPT-2's end-of-text token survives export; lossless in transformers too
        assert ours.eot_id is not None and theirs.eos_token == theirs.bos_token == "<|endoftext|>"
        assert theirs.convert_tokens_to_ids("<|endoftext|>") == ours.eot_id
        verse = "First Citizen:\nBefore we proceed,  hear me.\r\n\n\tAll: Speak, speak."
        assert theirs.decode(theirs(verse, add_special_tokens=False)["input_ids"]) == verse

    task = (MaskedLM if family == "bert" else CausalLM).load_from_checkpoint(ckpt, map_location="cpu").eval()
    ids = torch.tensor([ours.encode(TEXT, add_special_tokens=family == "bert")])
    auto = transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(out).eval()
    if family == "gpt":
        assert model.config.eos_token_id == model.config.bos_token_id == ours.eot_id
    with torch.no_grad():
        hidden = task.backbone(ids)
        logits = task.mlm_head(hidden) if family == "bert" else task.lm_head(hidden)
        torch.testing.assert_close(model(ids).logits, logits, rtol=1e-4, atol=1e-4)

    if family == "bert":
        filled = transformers.pipeline("fill-mask", str(out))("the old [MASK] walked.")
        assert len(filled) == 5 and all("sequence" in f for f in filled)
    else:  # greedy: the pipeline continues the prompt as lit_lm's predict does
        generated = transformers.pipeline("text-generation", str(out))("the old sailor", max_new_tokens=6,
                                                                        do_sample=False)  # fmt: skip
        prompt = torch.tensor([ours.encode("the old sailor")])
        with torch.no_grad():
            ids = task.generate(prompt, max_new_tokens=6, temperature=0.0)
        assert generated[0]["generated_text"] == ours.decode(ids[0].tolist())

    back = load_pretrained(out)  # model.init_from: <dir>
    saved = read_checkpoint(ckpt)["state_dict"]
    for key, value in back.state_dict.items():
        if key.startswith("backbone."):
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert sum(k.startswith("backbone.") for k in back.state_dict) == sum(k.startswith("backbone.") for k in saved)


def test_export_names_what_has_no_hugging_face_equivalent(pretrained, tmp_path, capsys):
    ckpt = read_checkpoint(pretrained["bert"])
    ckpt["lit_lm"]["config"]["tie_word_embeddings"] = False
    untied = tmp_path / "untied.ckpt"
    torch.save(ckpt, untied)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(untied), "--out", str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "untied.ckpt: cannot be exported to Hugging Face" in err and "tie" in err
    assert "Traceback" not in err


def test_pre_layernorm_decoder_exports_as_gpt2_with_the_same_logits_and_comes_back(tmp_path, cache, capsys):
    """Every GPT config of experiments/cpu trains pre-LN: it leaves as GPT2LMHeadModel (Conv1D weights, ln_f,
    n_inner, the tanh GELU as gelu_new) computing the same logits, and `init_from` reads it back bit for bit."""
    from cli_helpers import cli, fast_args

    root = tmp_path / "run"
    cli("fit", "--config", "experiments/quickstart/gpt_pretrain.yaml",
        *fast_args(root, cache, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
                   "--model.config", '{"norm_position": "pre", "intermediate_size": 200}'))  # fmt: skip
    ckpt, out = root / "checkpoints" / "last.ckpt", tmp_path / "hf"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ckpt), "--out", str(out)])
    assert exit_info.value.code == 0
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_inner == 200
    task = CausalLM.load_from_checkpoint(ckpt, map_location="cpu").eval()
    ids = torch.tensor([Tokenizer.from_file(ckpt).encode(TEXT * 3)])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, task.lm_head(task.backbone(ids)), rtol=1e-4, atol=1e-4)
    back = load_pretrained(out)
    saved = read_checkpoint(ckpt)["state_dict"]
    assert back.config.norm_position == "pre" and back.config.intermediate_size == 200
    backbone = {k: v for k, v in saved.items() if k.startswith("backbone.")}
    assert set(backbone) == {k for k in back.state_dict if k.startswith("backbone.")}
    for key, value in backbone.items():
        torch.testing.assert_close(back.state_dict[key], value, rtol=0, atol=0)


def test_pre_layernorm_encoder_exports_as_roberta_prelayernorm(tmp_path, cache):
    """The pre-LN BERT of experiments/cpu leaves as RobertaPreLayerNormForMaskedLM: the same logits on a padded
    batch (RoBERTa numbers positions from pad + 1: the table is shifted), and it comes back bit for bit."""
    from cli_helpers import cli, fast_args

    root = tmp_path / "run"
    cli("fit", "--config", "experiments/quickstart/bert_pretrain.yaml",
        *fast_args(root, cache, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
                   "--model.config", '{"norm_position": "pre"}'))  # fmt: skip
    ckpt, out = root / "checkpoints" / "last.ckpt", tmp_path / "hf"
    export_checkpoint(str(ckpt), str(out))
    model = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(model).__name__ == "RobertaPreLayerNormForMaskedLM"
    tok = Tokenizer.from_file(ckpt)
    ids = [tok.encode(TEXT, add_special_tokens=True), tok.encode("The dog.", add_special_tokens=True)]
    batch = torch.full((2, len(ids[0])), tok.pad_id)
    mask = torch.zeros_like(batch)
    for i, seq in enumerate(ids):
        batch[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
    task = MaskedLM.load_from_checkpoint(ckpt, map_location="cpu").eval()
    with torch.no_grad():
        ours = task.mlm_head(task.backbone(batch, mask))
        theirs = model(input_ids=batch, attention_mask=mask).logits
        torch.testing.assert_close(theirs[mask.bool()], ours[mask.bool()], rtol=1e-4, atol=1e-4)
    back = load_pretrained(out)
    saved = read_checkpoint(ckpt)["state_dict"]
    assert back.config.norm_position == "pre" and back.config.n_positions == task.backbone_config.n_positions
    for key, value in saved.items():
        if key.startswith(("backbone.", "mlm_head.")):
            torch.testing.assert_close(back.state_dict[key], value, rtol=0, atol=0)
