"""Our BERT and GPT-1 against the Hugging Face implementations on the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_lm.config import TransformerConfig
from lit_lm.model import Decoder, Encoder, LMHead, MLMHead, NSPHead
from lit_lm.model.hf import CheckpointError, load_hf_checkpoint, save_hf_checkpoint

transformers = pytest.importorskip("transformers")

ATOL = 1e-5


class BertPretraining(nn.Module):
    """Backbone + both BERT heads with lit_lm's attribute names (as the MaskedLM task holds them)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.backbone = Encoder(config)
        self.mlm_head = MLMHead(config, self.backbone.wte)
        self.nsp_head = NSPHead(config)


class GPTLM(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.backbone = Decoder(config)
        self.lm_head = LMHead(self.backbone.wte)


def _bert_config(**kw):
    cfg = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=24,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,  # large weights: activations reach the range where GELU variants differ
    )
    cfg.update(kw)
    return transformers.BertConfig(**cfg)


def _gpt_config(**kw):
    cfg = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=24, resid_pdrop=0.0, embd_pdrop=0.0)
    cfg.update(attn_pdrop=0.0, initializer_range=0.2, **kw)
    return transformers.OpenAIGPTConfig(**cfg)


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """HF initialises LayerNorm to (1, 0) and biases to 0: perturb everything so every weight is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(batch=3, T=11, vocab=99, seed=1, pad=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, T), generator=g)
    mask = torch.ones(batch, T, dtype=torch.long)
    if pad:
        mask[1, 7:] = 0
        mask[2, 4:] = 0
    types = torch.zeros(batch, T, dtype=torch.long)
    types[:, 5:] = 1
    return ids, mask, types


@pytest.fixture
def hf_bert(tmp_path):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(_bert_config()).eval()
    _randomize(model)
    model.save_pretrained(tmp_path / "bert")
    return model, tmp_path / "bert"


@pytest.fixture
def hf_gpt(tmp_path):
    torch.manual_seed(0)
    model = transformers.OpenAIGPTLMHeadModel(_gpt_config()).eval()
    _randomize(model)
    model.save_pretrained(tmp_path / "gpt")
    return model, tmp_path / "gpt"


def _load_bert(path, backend):
    ckpt = load_hf_checkpoint(path, attention_backend=backend)
    ours = BertPretraining(ckpt.config).eval()
    ours.load_state_dict(ckpt.state_dict)
    return ours


def _load_gpt(path, backend):
    ckpt = load_hf_checkpoint(path, attention_backend=backend)
    ours = GPTLM(ckpt.config).eval()
    ours.load_state_dict(ckpt.state_dict)
    return ours


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("pad", [False, True])
def test_bert_matches_transformers(hf_bert, backend, pad):
    ref, path = hf_bert
    ours = _load_bert(path, backend)
    ids, mask, types = _inputs(pad=pad)
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        hidden = ours.backbone(ids, attention_mask=mask, token_type_ids=types)
        mlm = ours.mlm_head(hidden)
        nsp = ours.nsp_head(ours.backbone.pool(hidden))
    real = mask.bool()  # positions whose outputs are defined
    torch.testing.assert_close(hidden[real], out.hidden_states[-1][real], atol=ATOL, rtol=0)
    torch.testing.assert_close(mlm[real], out.prediction_logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(nsp, out.seq_relationship_logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("pad", [False, True])
def test_gpt_matches_transformers(hf_gpt, backend, pad):
    ref, path = hf_gpt
    ours = _load_gpt(path, backend)
    ids, mask, _ = _inputs(pad=pad)
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = ours.backbone(ids, attention_mask=mask)
        logits = ours.lm_head(hidden)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], out.hidden_states[-1][real], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[real], out.logits[real], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "family,change",
    [
        ("bert", dict(activation="gelu_tanh")),  # wrong GELU variant
        ("bert", dict(norm_position="pre")),  # wrong LayerNorm placement
        ("bert", dict(embedding_norm=False)),
        ("gpt", dict(activation="gelu")),  # GPT-1 uses the tanh approximation
        ("gpt", dict(norm_position="pre")),
    ],
)
def test_parity_detects_architecture_mistakes(hf_bert, hf_gpt, family, change):
    """The parity check is sharp: each of these plausible mistakes breaks it."""
    ref, path = hf_bert if family == "bert" else hf_gpt
    ckpt = load_hf_checkpoint(path)
    model = (BertPretraining if family == "bert" else GPTLM)(ckpt.config.replace(**change)).eval()
    model.load_state_dict(ckpt.state_dict, strict=False)
    ids, mask, types = _inputs(pad=False)
    with torch.no_grad():
        ref_hidden = ref(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        hidden = model.backbone(ids)
    assert (hidden - ref_hidden).abs().max() > ATOL  # the tolerance of the parity tests above


def test_position_handling_matters(hf_gpt):
    ref, path = hf_gpt
    ours = _load_gpt(path, "math")
    ids, _, _ = _inputs(pad=False)
    with torch.no_grad():
        ref_hidden = ref(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        shifted = ours.backbone(ids, position_ids=torch.arange(1, ids.size(1) + 1))
    assert (shifted - ref_hidden).abs().max() > 1e-3


def test_round_trip_ours_hf_ours_is_exact(tmp_path):
    for model_cls, config in (
        (BertPretraining, TransformerConfig.from_name("bert-tiny", vocab_size=77, n_positions=32)),
        (GPTLM, TransformerConfig.from_name("gpt-micro", vocab_size=77, n_positions=32)),
    ):
        torch.manual_seed(0)
        ours = model_cls(config.replace(initializer_range=0.2))
        _randomize(ours)
        out_dir = save_hf_checkpoint(tmp_path / config.name, config, ours.state_dict())
        ref = transformers.AutoModelForPreTraining.from_pretrained(out_dir).eval()
        back = load_hf_checkpoint(out_dir)
        assert back.config.to_dict() | {"name": ""} == config.to_dict() | {"name": "", "attention_backend": "auto"}
        sd = ours.state_dict()
        assert sd.keys() == back.state_dict.keys()
        for k, v in sd.items():
            assert torch.equal(v, back.state_dict[k]), k
        # and transformers computes the same function from the exported files
        ours.eval()
        ids, mask, types = _inputs(vocab=77)
        with torch.no_grad():
            kwargs = dict(token_type_ids=types) if not config.causal else {}
            hidden = ours.backbone(ids, attention_mask=mask, **kwargs)
            ref_hidden = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs).hidden_states[-1]
        real = mask.bool()
        torch.testing.assert_close(hidden[real], ref_hidden[real], atol=ATOL, rtol=0)


def test_sentence_transformers_layout_without_prefix_or_heads(tmp_path):
    """sentence-transformers ships a bare BertModel: no ``bert.`` prefix, no pretraining heads."""
    torch.manual_seed(0)
    ref = transformers.BertModel(_bert_config()).eval()
    _randomize(ref)
    ref.save_pretrained(tmp_path / "st")
    ckpt = load_hf_checkpoint(tmp_path / "st")
    assert ckpt.heads == [] and ckpt.family == "bert"
    backbone = ckpt.build_backbone().eval()
    ids, mask, types = _inputs()
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        hidden = backbone(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], out.last_hidden_state[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(backbone.pool(hidden), out.pooler_output, atol=ATOL, rtol=0)


def test_mismatched_checkpoint_lists_problems(tmp_path, hf_bert):
    from safetensors.torch import load_file, save_file

    _, path = hf_bert
    sd = load_file(str(path / "model.safetensors"))
    sd.pop("bert.encoder.layer.1.output.dense.weight")
    sd["bert.encoder.layer.9.extra.weight"] = torch.zeros(1)
    save_file(sd, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_hf_checkpoint(path)
    msg = str(err.value)
    assert "missing keys" in msg and "bert.encoder.layer.1.output.dense.weight" in msg
    assert "unexpected keys" in msg and "bert.encoder.layer.9.extra.weight" in msg


def test_shape_mismatch_is_reported(tmp_path, hf_bert):
    import json

    _, path = hf_bert
    cfg = json.loads((path / "config.json").read_text())
    cfg["intermediate_size"] = 40
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch.*intermediate|shape mismatch.*mlp.fc"):
        load_hf_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(CheckpointError, match="unsupported model_type 't5'"):
        load_hf_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "preset,hf_model",
    [("bert-base", "BertModel"), ("bert-large", "BertModel"), ("gpt1", "OpenAIGPTModel")],
)
def test_preset_parameter_counts_match_published_models(preset, hf_model):
    hf_config = transformers.BertConfig() if preset.startswith("bert") else transformers.OpenAIGPTConfig()
    if preset == "bert-large":
        hf_config = transformers.BertConfig(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
        )
    with torch.device("meta"):
        ref = getattr(transformers, hf_model)(hf_config)
        ours = (Decoder if preset == "gpt1" else Encoder)(TransformerConfig.from_name(preset))
    n_ref = sum(p.numel() for p in ref.parameters())
    assert ours.num_parameters() == n_ref
    expected_millions = {"bert-base": 110, "bert-large": 335, "gpt1": 117}[preset]
    assert abs(n_ref / 1e6 - expected_millions) < 3
