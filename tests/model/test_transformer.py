from pathlib import Path

import pytest
import torch

from lit_lm.config import TransformerConfig
from lit_lm.model import (
    ClassificationHead,
    Decoder,
    Encoder,
    MultipleChoiceHead,
    build_backbone,
    gather_positions,
)

BACKENDS = ["math", "sdpa"]


def _config(name, **kw):
    return TransformerConfig.from_name(name, vocab_size=50, n_positions=32, dropout=0.0, attention_dropout=0.0, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls,name", [(Encoder, "bert-tiny"), (Decoder, "gpt-micro")])
def test_padding_does_not_change_real_positions(cls, name, backend):
    torch.manual_seed(0)
    model = cls(_config(name, attention_backend=backend)).eval()
    ids = torch.randint(5, 50, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 6)], dim=1).long()
    with torch.no_grad():
        alone = model(ids)
        with_pad = model(padded, attention_mask=mask)
    torch.testing.assert_close(with_pad[:, :9], alone, atol=1e-5, rtol=0)
    assert torch.isfinite(with_pad).all()


README = Path(__file__).resolve().parents[2] / "README.md"
README_MARKER = "<!-- tested: tests/model/test_transformer.py runs the next block -->"


def test_the_readme_model_snippet_runs_and_padding_does_not_change_real_positions():
    """The README's Models example, run as printed: its claim that padding never changes the outputs at real
    positions holds for the model it builds."""
    text = README.read_text()
    assert text.count(README_MARKER) == 1, f"README.md should mark the Models example with {README_MARKER}"
    code = text.split(README_MARKER, 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
    torch.manual_seed(0)
    input_ids = torch.randint(7, 8192, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, 8:] = 0  # the first row: 8 tokens, then 4 of padding
    scope = {"input_ids": input_ids, "mask": mask}
    with torch.no_grad():
        exec(compile(code, "README.md (Models example)", "exec"), scope)
        gpt, hidden = scope["gpt"], scope["hidden"]
        alone = gpt(input_ids[:1, :8])  # the first row without its padding
        other_padding = gpt(input_ids.masked_fill(mask == 0, 3), attention_mask=mask)  # other ids where padded
    assert hidden.shape == (2, 12, 768) and scope["logits"].shape == (2, 12, 8192)
    torch.testing.assert_close(hidden[:1, :8], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(other_padding[mask == 1], hidden[mask == 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_is_causal_encoder_is_not(backend):
    torch.manual_seed(0)
    dec = Decoder(_config("gpt-micro", attention_backend=backend)).eval()
    enc = Encoder(_config("bert-tiny", attention_backend=backend)).eval()
    a = torch.randint(5, 50, (1, 10))
    b = a.clone()
    b[0, 7] = (a[0, 7] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(dec(a)[:, :7], dec(b)[:, :7])
        assert not torch.allclose(dec(a)[:, 7:], dec(b)[:, 7:])
        assert not torch.allclose(enc(a)[:, :7], enc(b)[:, :7])


@pytest.mark.parametrize("name", ["bert-tiny", "gpt-micro"])
def test_backends_agree_with_padding(name):
    torch.manual_seed(0)
    math_model = build_backbone(_config(name, attention_backend="math")).eval()
    sdpa_model = build_backbone(_config(name, attention_backend="sdpa")).eval()
    sdpa_model.load_state_dict(math_model.state_dict())
    ids = torch.randint(0, 50, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        torch.testing.assert_close(math_model(ids, mask), sdpa_model(ids, mask), atol=1e-5, rtol=0)


def test_pre_norm_option_has_final_layernorm_and_runs_backward():
    model = Decoder(_config("gpt-micro", norm_position="pre"))
    assert model.ln_f is not None
    out = model(torch.randint(0, 50, (2, 8)))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p is not model.pooler)


def test_too_long_sequence_is_a_clear_error():
    model = Encoder(_config("bert-tiny"))
    with pytest.raises(ValueError, match="sequence length 40 exceeds the model's n_positions=32"):
        model(torch.zeros(1, 40, dtype=torch.long))


def test_token_types_on_a_model_without_segments():
    model = Decoder(_config("gpt-micro"))
    with pytest.raises(ValueError, match="no segment embeddings"):
        model(torch.zeros(1, 4, dtype=torch.long), token_type_ids=torch.zeros(1, 4, dtype=torch.long))


def test_classification_and_multiple_choice_heads():
    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 16)
    pos = torch.tensor([6, 2, 0, 3])
    feats = gather_positions(hidden, pos)
    assert torch.equal(feats[1], hidden[1, 2])
    assert ClassificationHead(16, 3).eval()(feats).shape == (4, 3)
    scores = MultipleChoiceHead(16).eval()(feats, n_choices=2)
    assert scores.shape == (2, 2)
    with pytest.raises(ValueError, match="num_labels >= 1"):
        ClassificationHead(16, 0)


def test_tied_embeddings_share_storage():
    from lit_lm.model import LMHead, MLMHead

    cfg = _config("bert-tiny")
    enc = Encoder(cfg)
    assert MLMHead(cfg, enc.wte).decoder.weight is enc.wte.weight
    assert LMHead(enc.wte).decoder.weight is enc.wte.weight
