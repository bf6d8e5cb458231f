"""Triton kernels of lit_lm's fused attention (FlashAttention-2) and the host functions that launch them.

The algorithm (Dao, "FlashAttention-2", 2023) never builds the ``T x T`` score matrix in memory:

- forward (:func:`_fwd_kernel`): one program per (query block, batch*head). It streams key/value blocks through
  on-chip memory and keeps, per query row, a running maximum ``m``, a running softmax denominator ``l`` and the
  un-normalised output ``acc`` (online softmax). It writes ``O = acc / l`` and ``lse = m + log(l)`` (fp32), the
  only per-row statistic the backward needs.
- backward: :func:`_bwd_preprocess_kernel` computes ``delta_i = sum_d O_id dO_id`` (minus the incoming gradient of
  ``lse``, which makes ``lse`` differentiable for free); :func:`_bwd_dkdv_kernel` (one program per key block) walks
  over the query blocks and accumulates ``dK`` and ``dV`` in registers; :func:`_bwd_dq_kernel` (one program per query
  block) walks over the key blocks and accumulates ``dQ``. Each output element is written by exactly one program,
  so there are no atomics and the gradients are bitwise deterministic.

Masks: a key is visible to query ``i`` iff ``j < kv_len[b]`` (optional per-sequence lengths), ``key_mask[b, j]``
(optional general 0/1 key mask) and, when causal, ``j <= i`` (top-left aligned, like ``torch`` ``is_causal``).
Only keys are masked: queries at padded positions still attend to the valid keys (the ``sdpa`` convention). A
query row that sees no key at all gets ``O = 0``, ``lse = +inf`` and zero gradients, never NaN.

Dropout on the attention probabilities uses Philox (``tl.rand``) keyed on ``seed + b * H + h`` (the seed is read
from device memory) with the element's index ``i * Tk + j`` as counter, so the backward regenerates the forward's
mask exactly, whatever block sizes the two passes use. Normalisation uses the probabilities before dropout, the
kept ones are scaled by ``1 / (1 - p)``: the same function as ``dropout(softmax(S)) @ V``.

Numerics: products in the input dtype (fp16 / bf16; fp32 uses IEEE fp32 unless ``torch.backends.cuda.matmul.
allow_tf32`` is set), accumulation in fp32 (fp64 for fp64 inputs, which exist for ``gradcheck``). Under the
Triton interpreter (``TRITON_INTERPRET=1``, CPU) bf16 operands are upcast to fp32 before ``tl.dot`` because the
interpreter's bf16 ``tl.dot`` is wrong (upstream bug).

Only plain pointer arithmetic is used (no ``tl.make_block_ptr``), so the code runs on Triton 3.x both compiled and
interpreted. Nothing here touches the Triton driver at import time. (No ``from __future__ import annotations``:
kernel parameters are recognised as constexpr from their real annotations.)
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # log2(e): exp(x) == exp2(x * LOG2E)
LN2 = 0.6931471805599453  # ln(2)
# The same constants for use inside kernels (compiled kernels may only read constexpr globals).
_LOG2E = tl.constexpr(LOG2E)
_LN2 = tl.constexpr(LN2)
MAX_HEAD_DIM = 256  # largest supported head dim (tiles of BLOCK_D = next power of 2 >= D columns)


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _dropout_keep(seed, bh, rows, cols, seq_k, dropout_p):
    """Keep mask (True = keep, probability ``1 - dropout_p``) at score positions (rows, cols) of head ``bh``.

    ``rows`` and ``cols`` broadcast against each other ((BM, 1) x (1, BN) or transposed). Philox is keyed on
    ``seed + bh`` (one independent stream per batch * head) with the 32-bit counter ``i * Tk + j``, so every kernel
    that asks about (b, h, i, j) gets the same answer, whatever its tiles. (32-bit counters keep Philox in its fast
    uint32 form on every Triton version; they are unique while Tq * Tk < 2**32.)
    """
    offsets = rows * seq_k + cols  # int32; wraps past 2**31 but stays unique modulo 2**32
    return tl.rand(seed + bh, offsets) >= dropout_p


@triton.jit
def _key_visible(KeyMaskRow, cols, kv_end):
    """Key-mask lookup: (BN,) bool, True where key ``cols`` is a real token (and below ``kv_end``)."""
    return tl.load(KeyMaskRow + cols, mask=cols < kv_end, other=0) != 0


@triton.jit
def _fwd_inner(
    acc, l_i, m_i, q,  # (BM, BD) acc, (BM,) l_i, m_i, (BM, BD) q
    K_base, V_base, KeyMaskRow, seed,
    stride_kn, stride_kd, stride_vn, stride_vd,
    offs_m, offs_d, bh, seq_q, seq_k, kv_end, lo, hi,
    qk_scale, dropout_p,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_KEY_MASK: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Online-softmax update of one query block with the key blocks starting in [lo, hi).

    ``MASK`` applies the boundary (``j < kv_end``) and causal masks; it is only needed on the last and diagonal
    blocks, the bulk of the loop runs without them.
    """
    d_ok = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)  # (BN,)
        n_ok = offs_n < kv_end
        # K^T block: (BD, BN)
        kt = tl.load(
            K_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=n_ok[None, :] & d_ok[:, None],
            other=0.0,
        )
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # (BM, BN), log2 units
        if MASK:
            visible = n_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_m[:, None] >= offs_n[None, :])
            s = tl.where(visible, s, float("-inf"))
        if HAS_KEY_MASK:
            s = tl.where(_key_visible(KeyMaskRow, offs_n, kv_end)[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))  # (BM,)
        # A row that has seen only masked keys keeps m = -inf; subtract 0 instead to avoid (-inf) - (-inf) = NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)  # (BM,) rescales what was accumulated so far
        p = tl.math.exp2(s - m_safe[:, None])  # (BM, BN)
        l_i = l_i * alpha + tl.sum(p, 1)  # the denominator uses the probabilities before dropout
        acc = acc * alpha[:, None]
        if DROPOUT:
            keep = _dropout_keep(seed, bh, offs_m[:, None], offs_n[None, :], seq_k, dropout_p)
            p = tl.where(keep, p, 0.0)
        v = tl.load(
            V_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BN, BD)
        if UPCAST:
            v = v.to(tl.float32)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(
    Q, K, V, Out, Lse, KeyMask, KvLens, Seed,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_maskb,
    n_heads, seq_q, seq_k,
    qk_scale, dropout_p, dropout_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENS: tl.constexpr, HAS_KEY_MASK: tl.constexpr, DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Forward. Grid: (cdiv(Tq, BLOCK_M), B * H). Q: (B, H, Tq, D), K/V: (B, H, Tk, D), Out: like Q, Lse: (B, H, Tq).

    ``qk_scale`` is ``softmax_scale * log2(e)``: scores live in log2 units so the kernel can use ``exp2``.
    """
    pid_m = tl.program_id(0)
    if CAUSAL:  # the last query blocks have the most keys to visit: start them first
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    off_b = bh // n_heads
    off_h = bh % n_heads
    start_m = pid_m * BLOCK_M

    Q_base = Q + off_b.to(tl.int64) * stride_qb + off_h.to(tl.int64) * stride_qh
    K_base = K + off_b.to(tl.int64) * stride_kb + off_h.to(tl.int64) * stride_kh
    V_base = V + off_b.to(tl.int64) * stride_vb + off_h.to(tl.int64) * stride_vh
    O_base = Out + off_b.to(tl.int64) * stride_ob + off_h.to(tl.int64) * stride_oh
    KeyMaskRow = KeyMask + off_b.to(tl.int64) * stride_maskb

    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BM,)
    offs_d = tl.arange(0, BLOCK_D)  # (BD,)
    m_ok = offs_m < seq_q
    d_ok = offs_d < HEAD_DIM

    kv_end = seq_k
    if HAS_LENS:
        kv_end = tl.minimum(tl.maximum(tl.load(KvLens + off_b), 0), seq_k)
    seed = 0
    if DROPOUT:
        seed = tl.load(Seed)

    q = tl.load(
        Q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        mask=m_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BM, BD)
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC_DTYPE)  # running max of the scores (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC_DTYPE)  # running un-normalised output

    # Keys in [0, hi) can be visible; the blocks in [0, mid) need neither the boundary nor the causal mask.
    hi = kv_end
    mid = (kv_end // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(hi, start_m + BLOCK_M)
        mid = tl.minimum(mid, (start_m // BLOCK_N) * BLOCK_N)
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, K_base, V_base, KeyMaskRow, seed,
        stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, offs_d, bh, seq_q, seq_k, kv_end, 0, mid,
        qk_scale, dropout_p,
        HEAD_DIM, BLOCK_N, False, CAUSAL, HAS_KEY_MASK, DROPOUT, UPCAST, DOT_PRECISION,
    )
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, K_base, V_base, KeyMaskRow, seed,
        stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, offs_d, bh, seq_q, seq_k, kv_end, mid, hi,
        qk_scale, dropout_p,
        HEAD_DIM, BLOCK_N, True, CAUSAL, HAS_KEY_MASK, DROPOUT, UPCAST, DOT_PRECISION,
    )

    # Rows that saw no visible key: l = 0 -> O = 0 and lse = +inf (so the backward's exp(s - lse) is 0).
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    if DROPOUT:
        out = out * dropout_scale
    lse = tl.where(empty, float("inf"), (m_i + tl.math.log2(l_safe)) * _LN2)  # natural log
    tl.store(
        O_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
        out.to(Out.dtype.element_ty),
        mask=m_ok[:, None] & d_ok[None, :],
    )
    tl.store(Lse + bh.to(tl.int64) * seq_q + offs_m, lse.to(Lse.dtype.element_ty), mask=m_ok)


@triton.jit
def _bwd_preprocess_kernel(
    Out, DO, DLse, Delta,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_dob, stride_doh, stride_dom, stride_dod,
    n_heads, seq_q,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_DLSE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    """delta = rowsum(O * dO) - dLse. Grid: (cdiv(Tq, BLOCK_M), B * H). Out, DO: (B, H, Tq, D); DLse, Delta: (B, H, Tq).

    ``dS = P * (dP - delta)`` is the softmax backward; subtracting ``dLse`` adds the gradient that flows in
    through ``lse`` (d lse_i / d S_ij = P_ij).
    """
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    off_b = bh // n_heads
    off_h = bh % n_heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m < seq_q)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o = tl.load(
        Out + off_b.to(tl.int64) * stride_ob + off_h.to(tl.int64) * stride_oh
        + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
        mask=mask,
        other=0.0,
    ).to(ACC_DTYPE)
    do = tl.load(
        DO + off_b.to(tl.int64) * stride_dob + off_h.to(tl.int64) * stride_doh
        + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
        mask=mask,
        other=0.0,
    ).to(ACC_DTYPE)
    delta = tl.sum(o * do, 1)  # (BM,)
    row = bh.to(tl.int64) * seq_q + offs_m
    if HAS_DLSE:
        dlse = tl.load(DLse + row, mask=offs_m < seq_q, other=0.0).to(ACC_DTYPE)
        delta = delta - dlse
    tl.store(Delta + row, delta, mask=offs_m < seq_q)


@triton.jit
def _bwd_dkdv_inner(
    dk, dv, k, v,  # (BN, BD) each
    Q_base, DO_base, Lse_row, Delta_row, seed,
    stride_qm, stride_qd, stride_dom, stride_dod,
    offs_n, offs_d, bh, seq_q, seq_k, lo, hi,
    qk_scale, dropout_p, dropout_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL_MASK: tl.constexpr, DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Accumulate dK, dV of one key block over the query blocks starting in [lo, hi).

    Works on transposed scores ``S^T`` (BN, BM) so that no tile needs transposing before ``tl.dot`` with K or V.
    Query rows beyond ``seq_q`` load ``lse = +inf`` and ``dO = 0``, so they contribute exactly zero; keys that are
    masked out are zeroed once at the end by the caller (their dK/dV rows only depend on themselves).
    """
    d_ok = offs_d < HEAD_DIM
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)  # (BM,)
        m_ok = offs_m < seq_q
        q = tl.load(
            Q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
            mask=m_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BM, BD)
        do = tl.load(
            DO_base + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
            mask=m_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BM, BD)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse2 = tl.load(Lse_row + offs_m, mask=m_ok, other=float("inf")) * _LOG2E  # (BM,) log2 units
        delta = tl.load(Delta_row + offs_m, mask=m_ok, other=0.0)  # (BM,)

        st = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BN, BM) = S^T, log2 units
        pt = tl.math.exp2(st - lse2[None, :])  # P^T before dropout
        if CAUSAL_MASK:
            pt = tl.where(offs_m[None, :] >= offs_n[:, None], pt, 0.0)
        dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BN, BM) = (dO V^T)^T, w.r.t. dropped P
        if DROPOUT:
            keep = _dropout_keep(seed, bh, offs_m[None, :], offs_n[:, None], seq_k, dropout_p)
            pt_drop = tl.where(keep, pt * dropout_scale, 0.0)
            dpt = tl.where(keep, dpt * dropout_scale, 0.0)
        else:
            pt_drop = pt
        dv = tl.dot(pt_drop.to(do.dtype), do, dv, input_precision=DOT_PRECISION)  # (BN, BD)
        dst = pt * (dpt - delta[None, :])  # (BN, BM) = dS^T
        dk = tl.dot(dst.to(q.dtype), q, dk, input_precision=DOT_PRECISION)  # (BN, BD)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, Lse, Delta, DK, DV, KeyMask, KvLens, Seed,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    stride_maskb,
    n_heads, seq_q, seq_k,
    sm_scale, qk_scale, dropout_p, dropout_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENS: tl.constexpr, HAS_KEY_MASK: tl.constexpr, DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dK, dV. Grid: (cdiv(Tk, BLOCK_N), B * H); each program owns one key block and loops over query blocks."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    off_b = bh // n_heads
    off_h = bh % n_heads
    start_n = pid_n * BLOCK_N

    Q_base = Q + off_b.to(tl.int64) * stride_qb + off_h.to(tl.int64) * stride_qh
    K_base = K + off_b.to(tl.int64) * stride_kb + off_h.to(tl.int64) * stride_kh
    V_base = V + off_b.to(tl.int64) * stride_vb + off_h.to(tl.int64) * stride_vh
    DO_base = DO + off_b.to(tl.int64) * stride_dob + off_h.to(tl.int64) * stride_doh
    Lse_row = Lse + bh.to(tl.int64) * seq_q
    Delta_row = Delta + bh.to(tl.int64) * seq_q

    offs_n = start_n + tl.arange(0, BLOCK_N)  # (BN,)
    offs_d = tl.arange(0, BLOCK_D)  # (BD,)
    d_ok = offs_d < HEAD_DIM

    kv_end = seq_k
    if HAS_LENS:
        kv_end = tl.minimum(tl.maximum(tl.load(KvLens + off_b), 0), seq_k)
    n_ok = offs_n < kv_end
    seed = 0
    if DROPOUT:
        seed = tl.load(Seed)

    k = tl.load(
        K_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        mask=n_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BN, BD)
    v = tl.load(
        V_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
        mask=n_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BN, BD)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)

    # Query blocks to visit: [lo, end); the ones in [lo, mid) straddle the causal diagonal and need its mask.
    end = tl.where(start_n < kv_end, seq_q, 0)  # a block of only masked keys has zero gradients: skip the loops
    mid = 0
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M  # queries i < start_n see none of these keys
        mid = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, end)
        dk, dv = _bwd_dkdv_inner(
            dk, dv, k, v, Q_base, DO_base, Lse_row, Delta_row, seed,
            stride_qm, stride_qd, stride_dom, stride_dod,
            offs_n, offs_d, bh, seq_q, seq_k, lo, mid,
            qk_scale, dropout_p, dropout_scale,
            HEAD_DIM, BLOCK_M, True, DROPOUT, UPCAST, DOT_PRECISION,
        )
    # (when end == 0, mid <= 0 too: both loops are empty)
    dk, dv = _bwd_dkdv_inner(
        dk, dv, k, v, Q_base, DO_base, Lse_row, Delta_row, seed,
        stride_qm, stride_qd, stride_dom, stride_dod,
        offs_n, offs_d, bh, seq_q, seq_k, mid, end,
        qk_scale, dropout_p, dropout_scale,
        HEAD_DIM, BLOCK_M, False, DROPOUT, UPCAST, DOT_PRECISION,
    )

    # Masked keys do not influence the output: their gradients are exactly zero (whatever was accumulated).
    visible = n_ok
    if HAS_KEY_MASK:
        visible = visible & _key_visible(KeyMask + off_b.to(tl.int64) * stride_maskb, offs_n, kv_end)
    dk = tl.where(visible[:, None], dk * sm_scale, 0.0)
    dv = tl.where(visible[:, None], dv, 0.0)
    store_mask = (offs_n < seq_k)[:, None] & d_ok[None, :]
    tl.store(
        DK + off_b.to(tl.int64) * stride_dkb + off_h.to(tl.int64) * stride_dkh
        + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd,
        dk.to(DK.dtype.element_ty),
        mask=store_mask,
    )
    tl.store(
        DV + off_b.to(tl.int64) * stride_dvb + off_h.to(tl.int64) * stride_dvh
        + offs_n[:, None] * stride_dvn + offs_d[None, :] * stride_dvd,
        dv.to(DV.dtype.element_ty),
        mask=store_mask,
    )


@triton.jit
def _bwd_dq_inner(
    dq, q, do, lse2, delta,  # (BM, BD) dq, q, do; (BM,) lse2, delta
    K_base, V_base, KeyMaskRow, seed,
    stride_kn, stride_kd, stride_vn, stride_vd,
    offs_m, offs_d, bh, seq_q, seq_k, kv_end, lo, hi,
    qk_scale, dropout_p, dropout_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_KEY_MASK: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Accumulate dQ of one query block over the key blocks starting in [lo, hi) (``MASK`` as in the forward)."""
    d_ok = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)  # (BN,)
        n_ok = offs_n < kv_end
        kt = tl.load(
            K_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=n_ok[None, :] & d_ok[:, None],
            other=0.0,
        )  # (BD, BN)
        vt = tl.load(
            V_base + offs_n[None, :] * stride_vn + offs_d[:, None] * stride_vd,
            mask=n_ok[None, :] & d_ok[:, None],
            other=0.0,
        )  # (BD, BN)
        if UPCAST:
            kt = kt.to(tl.float32)
            vt = vt.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # (BM, BN), log2 units
        p = tl.math.exp2(s - lse2[:, None])  # (BM, BN) before dropout
        if MASK:
            visible = n_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(visible, p, 0.0)
        if HAS_KEY_MASK:
            p = tl.where(_key_visible(KeyMaskRow, offs_n, kv_end)[None, :], p, 0.0)
        dp = tl.dot(do, vt, input_precision=DOT_PRECISION)  # (BM, BN), w.r.t. the dropped probabilities
        if DROPOUT:
            keep = _dropout_keep(seed, bh, offs_m[:, None], offs_n[None, :], seq_k, dropout_p)
            dp = tl.where(keep, dp * dropout_scale, 0.0)
        ds = p * (dp - delta[:, None])  # (BM, BN)
        dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision=DOT_PRECISION)  # (BM, BD)
    return dq


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, Lse, Delta, DQ, KeyMask, KvLens, Seed,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dqb, stride_dqh, stride_dqm, stride_dqd,
    stride_maskb,
    n_heads, seq_q, seq_k,
    sm_scale, qk_scale, dropout_p, dropout_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENS: tl.constexpr, HAS_KEY_MASK: tl.constexpr, DROPOUT: tl.constexpr,
    UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dQ. Grid: (cdiv(Tq, BLOCK_M), B * H); each program owns one query block and loops over key blocks."""
    pid_m = tl.program_id(0)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    off_b = bh // n_heads
    off_h = bh % n_heads
    start_m = pid_m * BLOCK_M

    Q_base = Q + off_b.to(tl.int64) * stride_qb + off_h.to(tl.int64) * stride_qh
    K_base = K + off_b.to(tl.int64) * stride_kb + off_h.to(tl.int64) * stride_kh
    V_base = V + off_b.to(tl.int64) * stride_vb + off_h.to(tl.int64) * stride_vh
    DO_base = DO + off_b.to(tl.int64) * stride_dob + off_h.to(tl.int64) * stride_doh
    KeyMaskRow = KeyMask + off_b.to(tl.int64) * stride_maskb

    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BM,)
    offs_d = tl.arange(0, BLOCK_D)  # (BD,)
    m_ok = offs_m < seq_q
    d_ok = offs_d < HEAD_DIM

    kv_end = seq_k
    if HAS_LENS:
        kv_end = tl.minimum(tl.maximum(tl.load(KvLens + off_b), 0), seq_k)
    seed = 0
    if DROPOUT:
        seed = tl.load(Seed)

    q = tl.load(
        Q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        mask=m_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BM, BD)
    do = tl.load(
        DO_base + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
        mask=m_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BM, BD)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse2 = tl.load(Lse + bh.to(tl.int64) * seq_q + offs_m, mask=m_ok, other=float("inf")) * _LOG2E  # (BM,)
    delta = tl.load(Delta + bh.to(tl.int64) * seq_q + offs_m, mask=m_ok, other=0.0)  # (BM,)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC_DTYPE)

    hi = kv_end
    mid = (kv_end // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(hi, start_m + BLOCK_M)
        mid = tl.minimum(mid, (start_m // BLOCK_N) * BLOCK_N)
    dq = _bwd_dq_inner(
        dq, q, do, lse2, delta, K_base, V_base, KeyMaskRow, seed,
        stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, offs_d, bh, seq_q, seq_k, kv_end, 0, mid,
        qk_scale, dropout_p, dropout_scale,
        HEAD_DIM, BLOCK_N, False, CAUSAL, HAS_KEY_MASK, DROPOUT, UPCAST, DOT_PRECISION,
    )
    dq = _bwd_dq_inner(
        dq, q, do, lse2, delta, K_base, V_base, KeyMaskRow, seed,
        stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, offs_d, bh, seq_q, seq_k, kv_end, mid, hi,
        qk_scale, dropout_p, dropout_scale,
        HEAD_DIM, BLOCK_N, True, CAUSAL, HAS_KEY_MASK, DROPOUT, UPCAST, DOT_PRECISION,
    )
    dq = dq * sm_scale
    tl.store(
        DQ + off_b.to(tl.int64) * stride_dqb + off_h.to(tl.int64) * stride_dqh
        + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
        dq.to(DQ.dtype.element_ty),
        mask=m_ok[:, None] & d_ok[None, :],
    )


@triton.jit
def _dropout_mask_kernel(
    Seed, Out, seq_q, seq_k, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Writes the attention-dropout keep mask (B*H, Tq, Tk) as int8. Grid: (cdiv(Tq, BM), cdiv(Tk, BN), B*H).
    For tests and debugging only."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    bh = tl.program_id(2)
    keep = _dropout_keep(tl.load(Seed), bh, offs_m[:, None], offs_n[None, :], seq_k, dropout_p)
    mask = (offs_m < seq_q)[:, None] & (offs_n < seq_k)[None, :]
    rows = bh.to(tl.int64) * seq_q + offs_m
    tl.store(Out + rows[:, None] * seq_k + offs_n[None, :], keep.to(tl.int8), mask=mask)


# ----------------------------------------------------------------------------------------------------------------
# Host side: configuration and launches
# ----------------------------------------------------------------------------------------------------------------


def is_interpreted() -> bool:
    """True when the kernels above were built by the Triton interpreter (``TRITON_INTERPRET=1`` at import time)."""
    return type(_fwd_kernel).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and launch options of one kernel: ``block_m`` query rows, ``block_n`` key rows."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


@dataclass(frozen=True)
class AttentionConfigs:
    """One :class:`BlockConfig` per kernel of the forward / backward pass."""

    fwd: BlockConfig
    bwd_dkdv: BlockConfig
    bwd_dq: BlockConfig


# Small tiles under the interpreter: they are cheap in numpy and make tiny test shapes cross several blocks.
INTERPRETER_CONFIGS = AttentionConfigs(
    fwd=BlockConfig(32, 16), bwd_dkdv=BlockConfig(16, 32), bwd_dq=BlockConfig(32, 16)
)


def select_configs(head_dim: int, dtype: torch.dtype, capability: tuple[int, int] | None) -> AttentionConfigs:
    """Fixed tile sizes by head dim / dtype / GPU generation (no autotuning: no tuning time, reproducible bits).

    ``head_dim`` is the padded (power of 2) head dim; ``capability`` the CUDA compute capability, None for the
    interpreter. The fp16/bf16 choices were checked offline with ``tests/kernels/cuda_compile_check.py`` to compile
    for sm_80 and sm_90 without register spills (fwd: 128 query rows x 64 keys, dK/dV: 128 keys x 32 query rows,
    dQ: 128 query rows x 32 keys, 8 warps); their speed has not been tuned on a GPU yet, see
    ``benchmarks/attention.py --tune``.
    """
    if capability is None:
        return INTERPRETER_CONFIGS
    stages = 3 if capability[0] >= 8 else 2
    if dtype == torch.float64:
        cfg = BlockConfig(32, 16, 4, 1)
        return AttentionConfigs(cfg, cfg, cfg)
    if dtype == torch.float32:  # IEEE fp32 dots run on FMA units, with much bigger register tiles
        if head_dim <= 64:
            cfg = BlockConfig(32, 32, 4, 2)
        else:
            cfg = BlockConfig(32, 16, 4, 2) if head_dim <= 128 else BlockConfig(16, 16, 4, 1)
        return AttentionConfigs(cfg, cfg, cfg)
    if head_dim <= 64:
        return AttentionConfigs(
            fwd=BlockConfig(128, 64, 8, stages),
            bwd_dkdv=BlockConfig(32, 128, 8, stages),
            bwd_dq=BlockConfig(128, 32, 8, stages),
        )
    if head_dim <= 128:
        hopper = capability[0] >= 9
        return AttentionConfigs(
            fwd=BlockConfig(128, 64, 8, stages) if hopper else BlockConfig(128, 32, 8, stages),
            bwd_dkdv=BlockConfig(32, 128, 8, stages),
            bwd_dq=BlockConfig(128, 32, 8, stages) if hopper else BlockConfig(64, 32, 4, stages),
        )
    return AttentionConfigs(
        fwd=BlockConfig(64, 32, 4, 2), bwd_dkdv=BlockConfig(16, 32, 4, 2), bwd_dq=BlockConfig(32, 16, 4, 2)
    )


# An override for tests and tuning experiments: when set, used instead of :func:`select_configs`.
CONFIG_OVERRIDE: AttentionConfigs | None = None


def _configs(head_dim_padded: int, dtype: torch.dtype, device: torch.device) -> AttentionConfigs:
    if CONFIG_OVERRIDE is not None:
        return CONFIG_OVERRIDE
    interpreted = device.type != "cuda" or is_interpreted()
    capability = None if interpreted else torch.cuda.get_device_capability(device)
    return select_configs(head_dim_padded, dtype, capability)


# Debug switch for tests: fill every buffer the kernels write (outputs and intermediates) with NaN before the launch,
# so that an element a kernel forgot to write shows up instead of passing by luck.
POISON_OUTPUTS: bool = False


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype, device=device)
    return t.fill_(float("nan")) if POISON_OUTPUTS else t


def _check_device(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and is_interpreted():
        return
    raise RuntimeError(
        f"lit_lm flash_attention got a {t.device.type} tensor, but its Triton kernels run only on CUDA GPUs, or on "
        "the CPU through the Triton interpreter: set TRITON_INTERPRET=1 in the environment before lit_lm.kernels is "
        "imported (slow, for tests), or use attention_backend='sdpa' / 'math'."
    )


def _check_index_range(name: str, t: torch.Tensor) -> None:
    # Offsets inside one (batch, head) slice are int32 in the kernels; batch/head offsets are int64.
    seq, dim = t.shape[-2], t.shape[-1]
    span = (seq - 1) * abs(t.stride(-2)) + (dim - 1) * abs(t.stride(-1))
    if span >= 2**31:
        raise ValueError(f"flash_attention: {name} with shape {tuple(t.shape)} and strides {t.stride()} spans more "
                         "than 2**31 elements within one head; make it contiguous in (B, H, T, D) order.")


def _kernel_flags(q: torch.Tensor) -> dict:
    """Constexpr flags that depend on dtype / mode: accumulator dtype, interpreter bf16 upcast, dot precision."""
    if q.dtype == torch.float64:
        acc, precision = tl.float64, "ieee"
    else:
        acc = tl.float32
        precision = "tf32" if q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return {
        "ACC_DTYPE": acc,
        "UPCAST": is_interpreted() and q.dtype == torch.bfloat16,
        "DOT_PRECISION": precision,
    }


def _launch_options(cfg: BlockConfig) -> dict:
    return {} if is_interpreted() else {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the saved log-sum-exp: fp32, or fp64 for fp64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _mask_args(
    q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None, kv_lens: torch.Tensor | None, dummy: torch.Tensor
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Checked kernel arguments for the masks: (key mask (B, Tk) int8 or a dummy, its batch stride, lengths (B,)
    int32 or a dummy). Absent masks are replaced by a dummy tensor that the kernel never reads (HAS_* = False)."""
    B, Tk = q.shape[0], k.shape[2]
    if key_mask is not None:
        if tuple(key_mask.shape) != (B, Tk):
            raise ValueError(f"flash_attention: key_mask must be (B, Tk) = ({B}, {Tk}); got {tuple(key_mask.shape)}")
        if key_mask.dtype != torch.int8:
            key_mask = (key_mask != 0).to(torch.int8)
        if key_mask.stride(1) != 1:
            key_mask = key_mask.contiguous()
    if kv_lens is not None:
        if tuple(kv_lens.shape) != (B,):
            raise ValueError(f"flash_attention: kv_lens must be ({B},); got {tuple(kv_lens.shape)}")
        kv_lens = kv_lens.to(torch.int32)
    key_mask_arg = key_mask if key_mask is not None else dummy
    stride_maskb = key_mask.stride(0) if key_mask is not None else 0
    kv_lens_arg = kv_lens if kv_lens is not None else dummy
    return key_mask_arg, stride_maskb, kv_lens_arg


def _check_launch(q: torch.Tensor, seed: torch.Tensor | None, dropout_p: float) -> None:
    _check_device(q)
    if q.shape[0] * q.shape[1] > 65535:
        raise ValueError(f"flash_attention: batch * heads = {q.shape[0] * q.shape[1]} exceeds the grid limit 65535")
    if dropout_p > 0.0 and (seed is None or seed.numel() != 1 or seed.dtype != torch.int64):
        raise ValueError("flash_attention: dropout_p > 0 needs a seed: a (1,) int64 tensor on the device of q")


def flash_attn_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. q: (B, H, Tq, D); k, v: (B, H, Tk, D); key_mask: (B, Tk) int8/bool or None;
    kv_lens: (B,) int32 or None; seed: (1,) int64 (needed when dropout_p > 0).

    Returns out (B, H, Tq, D), stored in (B, Tq, H, D) memory order so that ``out.transpose(1, 2)`` is contiguous,
    and lse (B, H, Tq) fp32 (fp64 for fp64 inputs), natural log, ``+inf`` for rows without a visible key.
    """
    _check_launch(q, seed, dropout_p)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    out = _empty((B, Tq, H, D), q.dtype, q.device).transpose(1, 2)  # (B, H, Tq, D)
    lse = _empty((B, H, Tq), lse_dtype(q.dtype), q.device)
    if out.numel() == 0:
        return out, lse.fill_(float("inf"))
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_index_range(name, t)
    block_d = max(16, triton.next_power_of_2(D))
    cfg = _configs(block_d, q.dtype, q.device).fwd
    dropout = dropout_p > 0.0
    key_mask_arg, stride_maskb, kv_lens_arg = _mask_args(q, k, key_mask, kv_lens, lse)
    grid = (triton.cdiv(Tq, cfg.block_m), B * H)
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        _fwd_kernel[grid](
            q, k, v, out, lse, key_mask_arg, kv_lens_arg, seed if dropout else lse,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(),
            stride_maskb,
            H, Tq, Tk,
            scale * LOG2E, dropout_p, 1.0 / (1.0 - dropout_p),
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
            CAUSAL=causal, HAS_LENS=kv_lens is not None, HAS_KEY_MASK=key_mask is not None, DROPOUT=dropout,
            **_kernel_flags(q), **_launch_options(cfg),
        )
    return out, lse


def flash_attn_backward(
    grad_out: torch.Tensor,
    grad_lse: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_mask: torch.Tensor | None,
    kv_lens: torch.Tensor | None,
    seed: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels. Shapes as in :func:`flash_attn_forward`; grad_out like out, grad_lse like
    lse (or None). Returns dq, dk, dv, contiguous (B, H, T, D) in the dtype of q, k, v."""
    _check_launch(q, seed, dropout_p)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    dq = _empty(q.shape, q.dtype, q.device)
    dk = _empty(k.shape, k.dtype, k.device)
    dv = _empty(v.shape, v.dtype, v.device)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    for name, t in (("q", q), ("k", k), ("v", v), ("grad_out", grad_out)):
        _check_index_range(name, t)
    block_d = max(16, triton.next_power_of_2(D))
    cfgs = _configs(block_d, q.dtype, q.device)
    flags = _kernel_flags(q)
    dropout = dropout_p > 0.0
    lse = lse.contiguous()
    delta = _empty(lse.shape, lse.dtype, lse.device)  # (B, H, Tq)
    key_mask_arg, stride_maskb, kv_lens_arg = _mask_args(q, k, key_mask, kv_lens, lse)
    seed_arg = seed if dropout else lse
    dropout_scale = 1.0 / (1.0 - dropout_p)
    common = {
        "HEAD_DIM": D,
        "BLOCK_D": block_d,
        "CAUSAL": causal,
        "HAS_LENS": kv_lens is not None,
        "HAS_KEY_MASK": key_mask is not None,
        "DROPOUT": dropout,
        **flags,
    }
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        pre_block = 64 if block_d <= 128 else 32
        if grad_lse is not None:
            grad_lse = grad_lse.contiguous()
        _bwd_preprocess_kernel[(triton.cdiv(Tq, pre_block), B * H)](
            out, grad_out, grad_lse if grad_lse is not None else lse, delta,
            *out.stride(), *grad_out.stride(),
            H, Tq,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=pre_block, HAS_DLSE=grad_lse is not None,
            ACC_DTYPE=flags["ACC_DTYPE"],
        )
        cfg = cfgs.bwd_dkdv
        _bwd_dkdv_kernel[(triton.cdiv(Tk, cfg.block_n), B * H)](
            q, k, v, grad_out, lse, delta, dk, dv, key_mask_arg, kv_lens_arg, seed_arg,
            *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dk.stride(), *dv.stride(),
            stride_maskb,
            H, Tq, Tk,
            scale, scale * LOG2E, dropout_p, dropout_scale,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, **common, **_launch_options(cfg),
        )
        cfg = cfgs.bwd_dq
        _bwd_dq_kernel[(triton.cdiv(Tq, cfg.block_m), B * H)](
            q, k, v, grad_out, lse, delta, dq, key_mask_arg, kv_lens_arg, seed_arg,
            *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dq.stride(),
            stride_maskb,
            H, Tq, Tk,
            scale, scale * LOG2E, dropout_p, dropout_scale,
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, **common, **_launch_options(cfg),
        )
    return dq, dk, dv


def dropout_keep_mask(
    seed: torch.Tensor, batch: int, n_heads: int, seq_q: int, seq_k: int, dropout_p: float
) -> torch.Tensor:
    """The keep mask (B, H, Tq, Tk) bool that the kernels apply for this seed: for tests and debugging."""
    _check_device(seed)
    out = torch.full((batch * n_heads * seq_q, seq_k), -1, dtype=torch.int8, device=seed.device)
    if out.numel() > 0:
        block_m, block_n = 32, 32
        grid = (triton.cdiv(seq_q, block_m), triton.cdiv(seq_k, block_n), batch * n_heads)
        with torch.cuda.device(seed.device) if seed.is_cuda else nullcontext():
            _dropout_mask_kernel[grid](seed, out, seq_q, seq_k, dropout_p, BLOCK_M=block_m, BLOCK_N=block_n)
    if (out < 0).any():
        raise RuntimeError("dropout_keep_mask: the kernel left elements unwritten")
    return out.view(batch, n_heads, seq_q, seq_k).bool()


def flops(batch: int, n_heads: int, seq_q: int, seq_k: int, head_dim: int, causal: bool, backward: bool) -> float:
    """Matmul FLOPs of attention (2 per multiply-add): 2 matmuls forward, 5 in the backward; causal halves them."""
    f = 4.0 * batch * n_heads * seq_q * seq_k * head_dim
    if causal:
        f /= 2
    return f * (1 + 2.5) if backward else f


__all__ = [
    "AttentionConfigs",
    "BlockConfig",
    "dropout_keep_mask",
    "flash_attn_backward",
    "flash_attn_forward",
    "flops",
    "is_interpreted",
    "lse_dtype",
    "select_configs",
]
