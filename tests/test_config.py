import pytest

from lit_lm.config import PRESETS, ConfigError, TransformerConfig


def test_gpt1_preset_is_the_paper_architecture():
    c = TransformerConfig.from_name("gpt1")
    assert (c.n_layer, c.n_embd, c.intermediate_size, c.n_head, c.n_positions) == (12, 768, 3072, 12, 512)
    assert c.causal and c.norm_position == "post" and c.activation == "gelu_tanh" and c.tie_word_embeddings
    assert c.dropout == c.attention_dropout == 0.1


def test_bert_presets():
    base = TransformerConfig.from_name("bert-base")
    assert (base.n_layer, base.n_embd, base.n_head, base.type_vocab_size) == (12, 768, 12, 2)
    assert not base.causal and base.embedding_norm and base.pooler and base.activation == "gelu"
    assert TransformerConfig.from_name("bert-mini").n_embd == 256
    assert TransformerConfig.from_name("bert-small").n_embd == 512


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    assert TransformerConfig.from_name(name).name == name


def test_overrides():
    c = TransformerConfig.from_name("gpt1", dropout=0.0, vocab_size=1000)
    assert c.dropout == 0.0 and c.vocab_size == 1000 and c.n_layer == 12


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_embd=100, n_head=12), "n_embd \\(100\\) must be divisible by n_head \\(12\\)"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(dropout=1.0), "dropout must be in \\[0, 1\\)"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(attention_backend="flash"), "attention_backend must be one of"),
        (dict(norm_position="middle"), "norm_position must be one of"),
        (dict(type_vocab_size=-1), "type_vocab_size must be >= 0"),
    ],
)
def test_validation_errors_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig(**kwargs)


def test_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="unknown preset 'gpt3'.*bert-base"):
        TransformerConfig.from_name("gpt3")
    with pytest.raises(ConfigError, match="unknown TransformerConfig field.*'hidden_size'"):
        TransformerConfig.from_name("gpt1", hidden_size=10)
