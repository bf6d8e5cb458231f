"""Tests of lit_lm's fused Triton attention against a float64 math reference.

On a machine without a GPU they run under the Triton interpreter (see conftest.py), which is slow: sizes are tiny,
but chosen so that every case crosses several tiles (the interpreter's tiles are 16 and 32 rows) with ragged ends.
"""

import itertools
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

import lit_lm.kernels._flash_attention_triton as fa
from lit_lm.kernels import dropout_keep_mask, flash_attention

# ----------------------------------------------------------------------------------------------------------------
# Reference and helpers
# ----------------------------------------------------------------------------------------------------------------


def visible_keys(
    batch: int, seq_q: int, seq_k: int, key_mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """(B, 1, Tq, Tk) bool: which keys each query may attend to."""
    vis = torch.ones(seq_q, seq_k, dtype=torch.bool, device=key_mask.device if key_mask is not None else "cpu")
    if causal:
        vis = vis.tril()  # top-left aligned: key j visible to query i iff j <= i
    vis = vis.expand(batch, 1, seq_q, seq_k)
    if key_mask is not None:
        vis = vis & key_mask.bool()[:, None, None, :]
    return vis


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    keep: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dropout(softmax(q k^T * scale + mask)) v`` in the dtype of the inputs (use float64), and the log-sum-exp.

    Written so that rows without a visible key give zeros and zero gradients (not NaN): that is the kernel's
    contract. ``keep`` (B, H, Tq, Tk) bool is the dropout keep mask.
    """
    B, _, Tq, D = q.shape
    Tk = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    vis = visible_keys(B, Tq, Tk, key_mask, causal).to(s.device)
    s = torch.where(vis, s, torch.finfo(s.dtype).min)
    m = s.amax(dim=-1, keepdim=True).detach()
    e = torch.exp(s - m) * vis
    denom = e.sum(dim=-1, keepdim=True)
    p = e / torch.where(denom == 0, 1.0, denom)
    lse = torch.where(denom == 0, float("inf"), m + torch.log(denom)).squeeze(-1)
    if keep is not None:
        p = p * keep / (1.0 - dropout_p)
    return p @ v, lse


def make_qkv(
    batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int, dtype: torch.dtype, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh random q (B, H, Tq, D), k, v (B, H, Tk, D) that require grad."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, seq_q, head_dim), (batch, heads, seq_k, head_dim), (batch, heads, seq_k, head_dim)]
    return tuple(torch.randn(s, generator=g).to(device=device, dtype=dtype).requires_grad_() for s in shapes)


def make_mask(kind: str | None, batch: int, seq: int, device: torch.device, seed: int) -> torch.Tensor | None:
    """(B, T) 1/0 key mask: None, right padding (lengths vary per row), or random holes (first key kept)."""
    if kind is None:
        return None
    g = torch.Generator().manual_seed(seed)
    if kind == "right":
        lengths = torch.randint(1, seq + 1, (batch,), generator=g)
        lengths[0] = seq  # one full row
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    elif kind == "random":
        mask = (torch.rand(batch, seq, generator=g) > 0.3).long()
        mask[:, 0] = 1
    else:
        raise ValueError(kind)
    return mask.to(device)


TOLERANCES = {  # (atol, rtol) against the float64 reference; inputs are randn, T <= 70
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}


def check_against_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    scale: float | None = None,
    keep: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    seed: int | None = None,
) -> None:
    """Forward output and dq, dk, dv of flash_attention vs the float64 reference, for a random upstream gradient."""
    out = flash_attention(q, k, v, mask, causal=causal, dropout_p=dropout_p, scale=scale, seed=seed)
    assert out.shape == q.shape and out.dtype == q.dtype
    grad_out = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)

    q64, k64, v64 = (t.detach().cpu().double().requires_grad_() for t in (q, k, v))
    mask64 = None if mask is None else mask.cpu()
    keep64 = None if keep is None else keep.cpu()
    ref, _ = reference_attention(q64, k64, v64, mask64, causal, scale, keep64, dropout_p)
    rdq, rdk, rdv = torch.autograd.grad(ref, (q64, k64, v64), grad_out.cpu().double())

    atol, rtol = TOLERANCES[q.dtype]
    for name, got, want in (("out", out, ref), ("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert torch.isfinite(got).all(), f"{name} has non-finite values (unwritten or NaN)"
        torch.testing.assert_close(got.cpu().double(), want, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")


def skip_bf16_on_cpu(dtype: torch.dtype, device: torch.device) -> None:
    if dtype == torch.bfloat16 and device.type == "cpu":
        pytest.skip("bf16 tl.dot is wrong under the Triton interpreter (upstream bug); bf16 is tested on the GPU")


# ----------------------------------------------------------------------------------------------------------------
# Forward / backward against the reference
# ----------------------------------------------------------------------------------------------------------------

# Every (length, causal, mask) combination once; head dim and dtype rotate so each of the 8 (head dim, dtype)
# pairs appears too. Lengths: 1 (single row and key), 17 (ragged, under one query tile), 70 (several ragged tiles).
_CASES = [
    (seq, causal, mask, (16, 32, 64, 128)[i % 4], (torch.float32, torch.float16)[(i // 4) % 2])
    for i, (seq, causal, mask) in enumerate(itertools.product((17, 70, 1), (False, True), (None, "right", "random")))
]


@pytest.mark.parametrize(("seq", "causal", "mask_kind", "head_dim", "dtype"), _CASES)
def test_matches_reference(
    seq: int, causal: bool, mask_kind: str | None, head_dim: int, dtype: torch.dtype, device: torch.device
) -> None:
    case_seed = zlib.crc32(repr((seq, causal, mask_kind, head_dim, dtype)).encode())  # distinct, reproducible
    q, k, v = make_qkv(2, 2, seq, seq, head_dim, dtype, device, case_seed)
    mask = make_mask(mask_kind, 2, seq, device, case_seed + 1)
    check_against_reference(q, k, v, mask, causal)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_head_dims(dtype: torch.dtype, head_dim: int, causal: bool, device: torch.device) -> None:
    skip_bf16_on_cpu(dtype, device)
    if device.type == "cpu" and dtype == torch.float16:
        pytest.skip("covered on the CPU by test_matches_reference; this grid is for the GPU")
    q, k, v = make_qkv(2, 3, 200, 200, head_dim, dtype, device, 7 + head_dim + causal)
    mask = make_mask("right", 2, 200, device, 8)
    check_against_reference(q, k, v, mask, causal)


def test_bf16_interpreter_upcast(device: torch.device) -> None:
    """On the CPU the kernels upcast bf16 tiles to fp32 before tl.dot (interpreter bug); the result is bf16-exact."""
    if device.type != "cpu":
        pytest.skip("the upcast path exists only under the interpreter")
    q, k, v = make_qkv(1, 2, 33, 33, 32, torch.bfloat16, device, 11)
    check_against_reference(q, k, v, make_mask("random", 1, 33, device, 12), causal=True)


@pytest.mark.parametrize(("seq_q", "seq_k", "causal"), [(19, 45, False), (19, 45, True), (45, 19, True)])
def test_cross_attention_lengths(seq_q: int, seq_k: int, causal: bool, device: torch.device) -> None:
    """Tq != Tk (causal is top-left aligned, like torch's is_causal), and a head dim that is not a power of 2."""
    q, k, v = make_qkv(2, 1, seq_q, seq_k, 24, torch.float32, device, 21 + causal + seq_q)
    check_against_reference(q, k, v, make_mask("random", 2, seq_k, device, 22), causal, scale=0.3)


def test_lengths_mask_equals_boolean_mask(device: torch.device) -> None:
    """A (B,) tensor of key lengths means the same as the (B, T) right-padding mask."""
    q, k, v = make_qkv(3, 2, 40, 40, 16, torch.float32, device, 31)
    lengths = torch.tensor([40, 17, 0], device=device)
    mask = (torch.arange(40, device=device)[None, :] < lengths[:, None]).long()
    out_mask = flash_attention(q, k, v, mask, causal=True)
    out_lens = flash_attention(q, k, v, lengths, causal=True)
    torch.testing.assert_close(out_lens, out_mask, atol=0, rtol=0)
    check_against_reference(q, k, v, mask, causal=True)


def test_lse_output_and_its_gradient(device: torch.device) -> None:
    """The raw op also returns the log-sum-exp; it matches the reference and is differentiable."""
    q, k, v = make_qkv(2, 2, 23, 23, 16, torch.float32, device, 41)
    mask = make_mask("random", 2, 23, device, 42)
    key_mask = (mask != 0).to(torch.int8)
    kv_lens = mask.sum(-1).to(torch.int32) * 0 + 23
    out, lse = torch.ops.lit_lm.flash_attn_fwd(q, k, v, key_mask, kv_lens, None, True, 0.0, 0.25)
    go, gl = torch.randn_like(out), torch.randn_like(lse)
    grads = torch.autograd.grad((out, lse), (q, k, v), (go, gl))

    q64, k64, v64 = (t.detach().cpu().double().requires_grad_() for t in (q, k, v))
    rout, rlse = reference_attention(q64, k64, v64, mask.cpu(), True, 0.25)
    rgrads = torch.autograd.grad((rout, rlse), (q64, k64, v64), (go.cpu().double(), gl.cpu().double()))
    torch.testing.assert_close(lse.cpu().double(), rlse, atol=2e-5, rtol=1e-5)
    for got, want in zip(grads, rgrads, strict=True):
        torch.testing.assert_close(got.cpu().double(), want, atol=2e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# gradcheck (float64: the kernels then accumulate in float64 too)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("causal", "mask_kind", "dropout_p"), [(False, "random", 0.0), (True, "right", 0.3)])
def test_gradcheck_float64(causal: bool, mask_kind: str, dropout_p: float, device: torch.device) -> None:
    """gradcheck of both outputs (out, lse) of the op; with dropout the seed is fixed, so the function is too."""
    q, k, v = make_qkv(2, 1, 18, 18, 16, torch.float64, device, 51 + causal)
    mask = make_mask(mask_kind, 2, 18, device, 52)
    key_mask = (mask != 0).to(torch.int8)
    kv_lens = torch.full((2,), 18, dtype=torch.int32, device=device)
    seed = torch.tensor([1234], dtype=torch.int64, device=device) if dropout_p > 0 else None

    def fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ops.lit_lm.flash_attn_fwd(q, k, v, key_mask, kv_lens, seed, causal, dropout_p, 0.3)

    assert torch.autograd.gradcheck(fn, (q, k, v), fast_mode=True, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Masked rows, layouts, determinism
# ----------------------------------------------------------------------------------------------------------------


def test_fully_masked_rows_give_zeros_and_finite_grads(device: torch.device) -> None:
    """Batch 1 has no real key; batch 2 is left-padded, so its first causal rows see no key either."""
    T = 37
    q, k, v = make_qkv(3, 2, T, T, 32, torch.float16, device, 61)
    mask = torch.ones(3, T, dtype=torch.long, device=device)
    mask[1] = 0
    mask[2, :5] = 0  # left padding: causal rows 0..4 only see masked keys
    out = flash_attention(q, k, v, mask, causal=True)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all() and (out[2, :, :5] == 0).all()
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
    for g in (dq, dk, dv):
        assert torch.isfinite(g).all()
        assert (g[1] == 0).all()
    assert (dq[2, :, :5] == 0).all() and (dk[2, :, :5] == 0).all() and (dv[2, :, :5] == 0).all()
    check_against_reference(q, k, v, mask, causal=True)


def test_non_contiguous_inputs(device: torch.device) -> None:
    """q, k, v as permuted views of a fused (B, T, 3, H, D) projection, as in SelfAttention; same bits as
    contiguous inputs. The output is laid out so that out.transpose(1, 2) is contiguous."""
    B, T, H, D = 2, 29, 2, 32
    g = torch.Generator().manual_seed(71)
    qkv = torch.randn(B, T, 3, H, D, generator=g).to(device).requires_grad_()
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, D), strides of the fused layout
    assert not q.is_contiguous()
    mask = make_mask("right", B, T, device, 72)
    out = flash_attention(q, k, v, mask, causal=True)
    assert out.transpose(1, 2).is_contiguous()
    out_c = flash_attention(q.contiguous(), k.contiguous(), v.contiguous(), mask, causal=True)
    torch.testing.assert_close(out, out_c, atol=0, rtol=0)

    grad_y = torch.randn(B, T, H * D, generator=g).to(device)
    (out.transpose(1, 2).reshape(B, T, H * D) * grad_y).sum().backward()
    qc, kc, vc = (t.detach().contiguous().requires_grad_() for t in (q, k, v))
    out_c = flash_attention(qc, kc, vc, mask, causal=True)
    dq, dk, dv = torch.autograd.grad(out_c, (qc, kc, vc), grad_y.view(B, T, H, D).transpose(1, 2))
    torch.testing.assert_close(qkv.grad.permute(2, 0, 3, 1, 4), torch.stack([dq, dk, dv]), atol=0, rtol=0)
    check_against_reference(q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_(),
                            mask, causal=True)

    # out.sum() sends back an expanded gradient whose strides are all 0
    qkv.grad = None
    flash_attention(q, k, v, mask, causal=True).sum().backward()
    out_c = flash_attention(qc, kc, vc, mask, causal=True)
    dq, dk, dv = torch.autograd.grad(out_c, (qc, kc, vc), torch.ones_like(out_c))
    torch.testing.assert_close(qkv.grad.permute(2, 0, 3, 1, 4), torch.stack([dq, dk, dv]), atol=0, rtol=0)


def test_backward_is_deterministic(device: torch.device) -> None:
    q, k, v = make_qkv(1, 2, 50, 50, 16, torch.float32, device, 81)
    grads = []
    for _ in range(2):
        out = flash_attention(q, k, v, causal=True)
        grads.append(torch.autograd.grad(out, (q, k, v), torch.ones_like(out)))
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("block", [(16, 16), (16, 64), (64, 16)])
def test_other_tile_sizes(block: tuple[int, int], device: torch.device) -> None:
    """The masking logic (diagonal / boundary split) must not depend on BLOCK_M == BLOCK_N or their ratio."""
    bm, bn = block
    cfg = fa.BlockConfig(bm, bn)
    old = fa.CONFIG_OVERRIDE
    fa.CONFIG_OVERRIDE = fa.AttentionConfigs(fwd=cfg, bwd_dkdv=cfg, bwd_dq=cfg)
    try:
        q, k, v = make_qkv(2, 1, 45, 45, 16, torch.float32, device, 91 + bm + bn)
        check_against_reference(q, k, v, make_mask("random", 2, 45, device, 92), causal=True)
    finally:
        fa.CONFIG_OVERRIDE = old


# ----------------------------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------------------------


def test_dropout_same_seed_same_output(device: torch.device) -> None:
    q, k, v = make_qkv(2, 2, 33, 33, 16, torch.float32, device, 101)
    a = flash_attention(q, k, v, causal=True, dropout_p=0.2, seed=5)
    b = flash_attention(q, k, v, causal=True, dropout_p=0.2, seed=5)
    c = flash_attention(q, k, v, causal=True, dropout_p=0.2, seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    torch.manual_seed(0)
    d = flash_attention(q, k, v, dropout_p=0.2)
    torch.manual_seed(0)
    e = flash_attention(q, k, v, dropout_p=0.2)
    assert torch.equal(d, e), "the seed drawn from torch's generator must follow torch.manual_seed"


def test_dropout_keep_rate(device: torch.device) -> None:
    p = 0.25
    seed = torch.tensor([2024], dtype=torch.int64, device=device)
    keep = dropout_keep_mask(seed, 2, 3, 40, 50, p)  # (B, H, Tq, Tk), 12000 draws
    assert keep.shape == (2, 3, 40, 50)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.02
    assert not torch.equal(keep[0, 0], keep[0, 1]), "heads must get different masks"


@pytest.mark.parametrize(("causal", "mask_kind"), [(False, "random"), (True, "right")])
def test_dropout_matches_reference_with_same_mask(causal: bool, mask_kind: str, device: torch.device) -> None:
    """Forward and backward apply exactly the keep mask that dropout_keep_mask reconstructs from the seed."""
    p, seed = 0.3, 77
    B, H, T, D = 2, 2, 41, 32
    q, k, v = make_qkv(B, H, T, T, D, torch.float32, device, 111 + causal)
    mask = make_mask(mask_kind, B, T, device, 112)
    keep = dropout_keep_mask(torch.tensor([seed], device=device), B, H, T, T, p)
    check_against_reference(q, k, v, mask, causal, keep=keep, dropout_p=p, seed=seed)


# ----------------------------------------------------------------------------------------------------------------
# Custom op integration: opcheck, autocast, torch.compile, DDP
# ----------------------------------------------------------------------------------------------------------------


def test_opcheck(device: torch.device) -> None:
    q, k, v = make_qkv(2, 1, 18, 18, 16, torch.float32, device, 121)
    mask = make_mask("random", 2, 18, device, 122)
    key_mask = (mask != 0).to(torch.int8)
    kv_lens = torch.tensor([18, 13], dtype=torch.int32, device=device)
    seed = torch.tensor([3], dtype=torch.int64, device=device)
    torch.library.opcheck(torch.ops.lit_lm.flash_attn_fwd.default, (q, k, v, key_mask, kv_lens, seed, True, 0.1, 0.25))
    torch.library.opcheck(torch.ops.lit_lm.flash_attn_fwd.default, (q, k, v, None, None, None, False, 0.0, 0.25))
    out, lse = torch.ops.lit_lm.flash_attn_fwd(q, k, v, key_mask, kv_lens, seed, True, 0.1, 0.25)
    grads = (torch.randn_like(out), torch.randn_like(lse))
    saved = (q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), key_mask, kv_lens, seed)
    torch.library.opcheck(torch.ops.lit_lm.flash_attn_bwd.default, (*grads, *saved, True, 0.1, 0.25),
                          test_utils=("test_schema", "test_faketensor"))


def test_autocast_casts_inputs(device: torch.device) -> None:
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    q, k, v = make_qkv(1, 2, 21, 21, 32, torch.float32, device, 131)
    with torch.autocast(device.type, dtype=dtype):
        out = flash_attention(q, k, v, causal=True)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all()
    ref, _ = reference_attention(*(t.detach().to(dtype).double() for t in (q, k, v)), causal=True)
    torch.testing.assert_close(out.double().cpu(), ref.cpu(), atol=6e-2, rtol=6e-2)


def test_torch_compile_fullgraph(device: torch.device) -> None:
    """The op traces through dynamo / AOTAutograd without graph breaks (fake impls), grads equal eager's."""
    torch._dynamo.reset()

    def fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return flash_attention(q * 2.0, k, v, mask, causal=True).sum(dim=1)

    q, k, v = make_qkv(2, 2, 24, 24, 16, torch.float32, device, 141)
    mask = make_mask("right", 2, 24, device, 142)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    out_c = compiled(q, k, v, mask)
    grads_c = torch.autograd.grad(out_c.square().sum(), (q, k, v))
    out_e = fn(q, k, v, mask)
    grads_e = torch.autograd.grad(out_e.square().sum(), (q, k, v))
    torch.testing.assert_close(out_c, out_e, atol=0, rtol=0)
    for a, b in zip(grads_c, grads_e, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    # autocast and a dropout seed drawn inside the compiled graph
    def fn_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return flash_attention(q, k, v, dropout_p=0.1)

    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=dtype):
        out = torch.compile(fn_dropout, backend="aot_eager", fullgraph=True)(q, k, v)
    assert out.dtype == dtype
    grads = torch.autograd.grad(out.float().sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)


def test_ddp_single_process(device: torch.device, tmp_path: Path) -> None:
    """A module that calls the kernel trains under DistributedDataParallel (gloo, world size 1) like without it."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(32, 96)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            B, T, _ = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, 2, 16).permute(2, 0, 3, 1, 4)
            return flash_attention(q, k, v, mask, causal=False)

    torch.manual_seed(151)
    model = Tiny().to(device)
    x = torch.randn(2, 19, 32, device=device)
    mask = make_mask("right", 2, 19, device, 152)
    model(x, mask).square().sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        ddp(x, mask).square().sum().backward()
    finally:
        dist.destroy_process_group()
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


# ----------------------------------------------------------------------------------------------------------------
# Errors and import behaviour
# ----------------------------------------------------------------------------------------------------------------


def test_argument_errors(device: torch.device) -> None:
    q, k, v = make_qkv(2, 2, 8, 8, 16, torch.float32, device, 161)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        flash_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="attention_mask must be"):
        flash_attention(q, k, v, torch.ones(2, 9, device=device))
    with pytest.raises(ValueError, match="integer"):
        flash_attention(q, k, v, torch.ones(2, device=device))
    with pytest.raises(ValueError, match="dropout_p"):
        flash_attention(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match="one dtype"):
        flash_attention(q, k.half(), v)


def test_import_without_interpreter_or_gpu() -> None:
    """``import lit_lm.kernels`` must not touch the Triton driver (absent without a GPU), and CPU tensors without
    TRITON_INTERPRET=1 must fail with an error that says what to do."""
    code = (
        "import torch, lit_lm.kernels as K\n"
        "assert not K.is_interpreted()\n"
        "q = torch.randn(1, 1, 4, 16)\n"
        "try:\n"
        "    K.flash_attention(q, q, q)\n"
        "except RuntimeError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e) and 'sdpa' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
