"""``attention_backend: auto`` by evidence (lit_lm.model.backend_choice): the real kernel (interpreted on a CPU)
probed against SDPA, injected timings deciding, injected failures and wrong results falling back to SDPA with one
warning, never a crash; SelfAttention recomputing a failed call with SDPA."""

from __future__ import annotations

import warnings

import pytest
import torch

from lit_lm.config import TransformerConfig
from lit_lm.model import SelfAttention
from lit_lm.model import backend_choice as bc


def _qkv(device, T=16, causal_mask=False):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, T, 16, generator=g).to(device) for _ in range(3))
    mask = None
    if causal_mask:
        mask = torch.ones(1, T, dtype=torch.long, device=device)
        mask[:, -3:] = 0
    return q, k, v, mask


def _timer(times: dict[str, float], calls: list[str]):
    def timer(fn, repeats, device):
        name = "triton" if fn.__code__.co_names and "triton" in fn.__code__.co_names else "sdpa"
        calls.append(name)
        return times[name]

    return timer


@pytest.mark.parametrize("faster", ["triton", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_the_measured_faster_backend_is_chosen_once_per_shape_class(device, faster, padded, caplog):
    calls: list[str] = []
    times = {"triton": 1.0, "sdpa": 2.0} if faster == "triton" else {"triton": 2.0, "sdpa": 1.0}
    chooser = bc.BackendChooser(available=lambda d: (True, ""), timer=_timer(times, calls))
    q, k, v, mask = _qkv(device, causal_mask=padded)
    with caplog.at_level("INFO", logger="lit_lm.model.backend_choice"), warnings.catch_warnings():
        warnings.simplefilter("error")  # the real kernel agrees with SDPA: no warning
        assert chooser.choose(q, k, v, mask, True, 0.25) == faster
    assert sorted(calls) == ["sdpa", "triton"]
    assert f"attention backend {faster}" in caplog.text and "faster" in caplog.text
    q2, k2, v2, mask2 = _qkv(device, T=13, causal_mask=padded)  # same bucket (<= 16): no new probe
    assert chooser.choose(q2, k2, v2, mask2, True, 0.25) == faster and len(calls) == 2
    q3, k3, v3, mask3 = _qkv(device, T=40, causal_mask=padded)
    chooser.choose(q3, k3, v3, mask3, True, 0.25)
    assert len(calls) == 4  # another length bucket: probed again


def test_a_failing_or_wrong_kernel_falls_back_to_sdpa_with_one_warning(device):
    def broken(*args):
        raise RuntimeError("PTX compile error (injected)")

    q, k, v, _ = _qkv(device)
    chooser = bc.BackendChooser(available=lambda d: (True, ""), triton=broken, timer=lambda *a: 0.0)
    with pytest.warns(RuntimeWarning, match="using SDPA: the Triton kernel failed on first use .*injected"):
        assert chooser.choose(q, k, v, None, False, 0.25) == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert chooser.choose(q, k, v, None, False, 0.25) == "sdpa"  # remembered: no second warning
    wrong = bc.BackendChooser(available=lambda d: (True, ""), triton=lambda q, *a: torch.zeros_like(q),
                              timer=lambda *a: 0.0)  # fmt: skip
    with pytest.warns(RuntimeWarning, match="output differs from SDPA's"):
        assert wrong.choose(q, k, v, None, False, 0.25) == "sdpa"


def test_without_cuda_the_default_chooser_keeps_sdpa_and_says_why():
    q, k, v, _ = _qkv(torch.device("cpu"))
    assert bc.BackendChooser().choose(q, k, v, None, True, 0.25) == "sdpa"
    ok, why = bc._triton_importable(torch.device("cpu"))
    assert not ok and "CUDA" in why


def test_self_attention_recomputes_a_failed_triton_call_with_sdpa(device, monkeypatch):
    config = TransformerConfig(n_layer=1, n_head=2, n_embd=32, intermediate_size=64, vocab_size=50, n_positions=32,
                               dropout=0.0, attention_dropout=0.0, attention_backend="auto")  # fmt: skip
    attn = SelfAttention(config, causal=True).to(device).eval()
    x = torch.randn(2, 8, 32, device=device)
    reference = SelfAttention(config.replace(attention_backend="sdpa"), causal=True).to(device).eval()
    reference.load_state_dict(attn.state_dict())
    chooser = bc.BackendChooser(available=lambda d: (True, ""), timer=lambda fn, r, d: 0.5 if "triton" in
                                fn.__code__.co_names else 1.0)  # fmt: skip
    monkeypatch.setattr("lit_lm.model.attention.CHOOSER", chooser)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference(x), rtol=2e-3, atol=2e-3)  # Triton chosen, same result
    assert set(c.backend for c in chooser.choices.values()) == {"triton"}

    def launch_failure(*args, **kwargs):
        raise RuntimeError("CUDA launch failure (injected)")

    monkeypatch.setattr("lit_lm.kernels.flash_attention", launch_failure)
    with pytest.warns(RuntimeWarning, match="failed .*launch failure"), torch.no_grad():
        torch.testing.assert_close(attn(x), reference(x), rtol=1e-5, atol=1e-5)  # this very call: SDPA
    assert set(c.backend for c in chooser.choices.values()) == {"sdpa"}
    named = SelfAttention(config.replace(attention_backend="triton"), causal=True).to(device).eval()
    with pytest.raises(RuntimeError, match="launch failure"), torch.no_grad():
        named(x)  # asked for by name: the error is the answer
