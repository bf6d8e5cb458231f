import pytest
import torch

from lit_lm.data import DataError
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.pretraining.prompts import PromptDataModule
from lit_lm.tasks import CausalLM


@pytest.fixture
def tok_path(tmp_path):
    tok = Tokenizer.train_from_texts(["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=60)
    tok.save(tmp_path / "tok.json")
    return str(tmp_path / "tok.json")


def test_prompts_become_one_batch_each_and_generate(tok_path, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\n\nthe mat\n", encoding="utf-8")
    dm = PromptDataModule(tok_path, prompts=["the cat"], prompts_file=str(tmp_path / "p.txt"))
    batches = list(dm.predict_dataloader())
    assert [b["input_ids"].shape[0] for b in batches] == [1, 1, 1]
    assert dm.tokenizer.decode(batches[0]["input_ids"][0].tolist()) == "the cat"
    model = CausalLM(preset="gpt-micro", config={"n_layer": 1}, vocab_size=dm.vocab_size, max_new_tokens=5, top_k=5)
    out = model.generate(
        batches[0]["input_ids"], 5, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (1, 7)


def test_prompt_errors(tok_path, tmp_path):
    with pytest.raises(DataError, match="no prompts"):
        PromptDataModule(tok_path)
    with pytest.raises(DataError, match="missing.txt: prompts file not found"):
        PromptDataModule(tok_path, prompts_file=str(tmp_path / "missing.txt"))
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match="bad.txt: not UTF-8"):
        PromptDataModule(tok_path, prompts_file=str(tmp_path / "bad.txt"))
