"""Implicit-GEMM convolution on tensor cores, and its 1x1 special case as a plain GEMM.

The convolution as a matrix product, per group ``g``:

    out[m, n] = sum_k A[m, k] * B[k, n]
    m = (batch, oh, ow)            M = N * OH * OW        output pixels
    n = output channel in group    N = C_out / groups
    k = (kh, kw, ci)               K = KH * KW * C_in / groups, ci fastest

``A`` is never built: each K step loads a ``[BLOCK_M, BLOCK_K]`` tile straight from the activation.  With
channels contiguous (NHWC) that tile is ``BLOCK_M`` rows of ``BLOCK_K`` consecutive channels of one kernel
tap, so the row addresses and padding masks are computed once per tap (not per element).  The weight is
packed once (and cached) as ``(C_out, K)``, K contiguous, so the ``B`` tile is K-major as the tensor cores
want it.  Two K orders exist:

- per tap (``FLAT_K=False``): the K loop walks (tap, channel block); one row mask per tap;
- flat (``FLAT_K=True``): for small ``C_in/groups`` (a stem layer's 3 channels), k is decoded per element so
  BLOCK_K lanes are not wasted on padding channels.

Accumulation is fp32 (fp64 for float64 operands); bias is added in the epilogue; the output is written
through its strides in the memory format torch would return.  Offsets are 64-bit where tensors may pass
2**31 elements.

Split-K (config key ``SPLIT_K``, for grids too small to fill the GPU: late ResNet layers, batch 1): grid axis 2
cuts the K loop into slices; each slice writes its partial sums (fp32, no bias) to its plane of a workspace
``(SPLIT_K, M, C_out)``, and ``splitk_reduce_kernel`` adds the planes in slice order (so a result never
depends on the schedule), adds the bias and stores the output.  ``SPLIT`` is a constexpr (a split variant
is its own binary; the plain kernel is unchanged), the slice count and length are runtime arguments.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..env import dot_upcast
from ..gpus import TARGETS
from ..precision import Precision, modes
from ..problem import ConvProblem
from .base import ConvKernel, StaticVariant, meta_tensor, register, static_variant
from .common import NhwcPass, WeightPack, round_tf32
from .config import KernelConfig, configs_of, table
from .fitness import binary_config
from .launch import FastLaunch, cdiv, next_pow2

__all__ = ["igemm_conv2d_kernel", "splitk_reduce_kernel", "pointwise_conv2d_kernel", "IGEMM", "POINTWISE",
           "smem_bytes", "split_k_of"]


@triton.jit
def _tap_tile(it, x_rows0, ih0, iw0, m_mask, offs_k, H, W, C_ITERS, KW, dil_h, dil_w,
              stride_xh, stride_xw, stride_xc, BLOCK_K: tl.constexpr):
    """Pointers and row mask of K step ``it`` = (tap, channel block): the tap-(0, 0) row pointers plus one
    scalar offset; rows whose shifted input coordinates fall in the padding are masked."""
    tap = it // C_ITERS
    c0 = (it - tap * C_ITERS) * BLOCK_K
    kh = tap // KW
    dh = kh * dil_h
    dw = (tap - kh * KW) * dil_w
    row_ok = m_mask & (ih0 >= -dh) & (ih0 < H - dh) & (iw0 >= -dw) & (iw0 < W - dw)
    a_ptrs = x_rows0[:, None] + (dh * stride_xh + dw * stride_xw + (c0 + offs_k) * stride_xc)[None, :]
    return a_ptrs, row_ok


@triton.jit
def _dot_step(a, b, acc, ROUND_A: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """acc += a @ b, with the activation rounded to TF32 first when asked and half operands upcast in the
    interpreter."""
    if ROUND_A:
        a = round_tf32(a)
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=acc.dtype)


@triton.jit
def _zero_acc(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC_FP64: tl.constexpr):
    """The accumulator tile: float64 for float64 operands, float32 otherwise."""
    if ACC_FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    return acc


# Arguments that only shape loop bounds, masks and per-step scalar offsets are compiled as plain integers
# (no "== 1" constant, no multiple-of-16 hint), so layers that differ only in them -- a 3x3 and a strided 1x1,
# 56x56 and 28x28 maps, padding 1 and 0 -- share one binary (scripts/count_variants.py counts the binaries
# of a network's forward).  Sizes and strides that decide the alignment of vector loads and stores (C_IN_G,
# C_OUT_G through the group offsets, M / OH / OW through the output masks, every tensor stride) keep
# Triton's specialisation.
_GEOMETRY = ("H", "W", "K_ITERS", "C_ITERS", "conv_stride_h", "conv_stride_w", "pad_h", "pad_w", "dil_h",
             "dil_w", "KH", "KW", "K_PER_SPLIT")


@triton.jit(do_not_specialize=_GEOMETRY)
def igemm_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, H, W, C_IN_G, C_OUT_G, OH, OW, K_ITERS, C_ITERS,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wn,
    stride_yn, stride_yc, stride_yh, stride_yw,
    conv_stride_h, conv_stride_w, pad_h, pad_w, dil_h, dil_w,
    KH, KW,  # runtime: they bound the tap loop and divide the tap index, nothing is unrolled over them
    K_PER_SPLIT, stride_ys,  # split-K: K steps per program along axis 2, and the partial sums' split stride
    FLAT_K: tl.constexpr,  # decode k per element (small C_in/groups)
    EVEN_K: tl.constexpr,  # C_in/groups % BLOCK_K == 0: no channel mask
    HAS_BIAS: tl.constexpr,
    SPLIT: tl.constexpr,  # split-K: this program computes one slice of the K loop (grid axis 2)
    ROUND_A: tl.constexpr,  # round the activation to TF32 in the loop (when it was not rounded before)
    PRECISION: tl.constexpr,  # tl.dot input_precision: "tf32", "tf32x3" or "ieee"
    UPCAST: tl.constexpr,  # interpreter: half operands to fp32 before tl.dot
    ACC_FP64: tl.constexpr,  # float64 operands: accumulate in float64
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # -- map program ids: axis 0 walks (M tile, N tile) with N fastest, so neighbours share A; axis 1 = group;
    # with SPLIT, axis 2 = the slice of the K loop: each slice writes its partial sums to its own plane of a
    # float32 workspace passed as y, without bias, and splitk_reduce_kernel adds them.  (A compile-time switch:
    # without it the binary is the plain kernel's, whose registers the static gate has measured.)
    pid = tl.program_id(0)
    g = tl.program_id(1)
    if SPLIT:  # the loops still count from 0 (a runtime lower bound defeats Triton's pipeliner: spills)
        split = tl.program_id(2)
        it_begin = split * K_PER_SPLIT
        n_steps = tl.minimum(K_PER_SPLIT, K_ITERS - it_begin)
        y_ptr += split.to(tl.int64) * stride_ys
    else:
        it_begin = 0
        n_steps = K_ITERS
    num_pid_n = tl.cdiv(C_OUT_G, BLOCK_N)
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n

    # -- output pixels of this tile: m -> (batch, oh, ow) -------------------------------------------------
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < C_OUT_G
    ow = offs_m % OW
    t = offs_m // OW
    oh = t % OH
    nb = t // OH
    ih0 = oh * conv_stride_h - pad_h
    iw0 = ow * conv_stride_w - pad_w

    # -- base pointers: this tile's samples and group; this tile's filters ---------------------------------
    x_rows = x_ptr + nb.to(tl.int64) * stride_xn + (g * C_IN_G).to(tl.int64) * stride_xc  # [BLOCK_M]
    w_cols = w_ptr + (g * C_OUT_G + offs_n).to(tl.int64) * stride_wn  # [BLOCK_N]

    acc = _zero_acc(BLOCK_M, BLOCK_N, ACC_FP64)
    if FLAT_K:
        # -- K loop, flat: k -> (kh, kw, ci) per element ------------------------------------------------------
        K_TOTAL = KH * KW * C_IN_G
        for step in range(0, n_steps):
            it = it_begin + step
            kk = it * BLOCK_K + offs_k
            k_ok = kk < K_TOTAL
            ci = kk % C_IN_G
            tap = kk // C_IN_G
            ih = ih0[:, None] + ((tap // KW) * dil_h)[None, :]
            iw = iw0[:, None] + ((tap % KW) * dil_w)[None, :]
            a_mask = m_mask[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_ptrs = (x_rows[:, None] + ih.to(tl.int64) * stride_xh + iw.to(tl.int64) * stride_xw
                      + ci[None, :].to(tl.int64) * stride_xc)
            a = tl.load(a_ptrs, mask=a_mask, other=0.0)
            b = tl.load(w_cols[None, :] + kk[:, None], mask=k_ok[:, None] & n_mask[None, :], other=0.0)
            acc = _dot_step(a, b, acc, ROUND_A, UPCAST, PRECISION)
    else:
        # -- K loop, per tap: (kh, kw) outer, channel blocks inner, flattened into one pipelined loop.
        # A row's address for tap (kh, kw) is its tap-(0, 0) address plus one offset common to all rows, so
        # the 64-bit row pointers are built once and each step adds a scalar; the padding mask compares the
        # tap-(0, 0) coordinates against the tap's shifted bounds.  (Offsets within one sample are 32-bit:
        # supports() sends samples of 2**31 elements or more elsewhere.)
        x_rows0 = x_rows + ih0.to(tl.int64) * stride_xh + iw0.to(tl.int64) * stride_xw
        b_ptrs = w_cols[None, :] + (it_begin * BLOCK_K + offs_k)[:, None]
        for step in range(0, n_steps):
            it = it_begin + step
            a_ptrs, row_ok = _tap_tile(it, x_rows0, ih0, iw0, m_mask, offs_k, H, W, C_ITERS, KW, dil_h, dil_w,
                                       stride_xh, stride_xw, stride_xc, BLOCK_K)
            if EVEN_K:  # K advances by exactly BLOCK_K per step: the B pointers just move on
                a = tl.load(a_ptrs, mask=row_ok[:, None], other=0.0)
                b = tl.load(b_ptrs, mask=n_mask[None, :], other=0.0)
                b_ptrs += BLOCK_K
            else:
                tap = it // C_ITERS
                kc = (it - tap * C_ITERS) * BLOCK_K + offs_k
                c_ok = kc < C_IN_G
                a = tl.load(a_ptrs, mask=row_ok[:, None] & c_ok[None, :], other=0.0)
                b = tl.load(w_cols[None, :] + (tap * C_IN_G + kc)[:, None],
                            mask=c_ok[:, None] & n_mask[None, :], other=0.0)
            acc = _dot_step(a, b, acc, ROUND_A, UPCAST, PRECISION)

    # -- epilogue: bias, cast, store through the output's strides -------------------------------------------
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * C_OUT_G + offs_n, mask=n_mask, other=0.0).to(acc.dtype)[None, :]
    y_row = nb.to(tl.int64) * stride_yn + oh.to(tl.int64) * stride_yh + ow.to(tl.int64) * stride_yw
    y_col = (g * C_OUT_G + offs_n).to(tl.int64) * stride_yc
    y_ptrs = y_ptr + y_row[:, None] + y_col[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def splitk_reduce_kernel(
    ws_ptr, b_ptr, y_ptr,
    M, C_OUT, OH, OW, SPLITS, stride_ys,
    stride_yn, stride_yc, stride_yh, stride_yw,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """out[m, n] = sum over the split-K slices s = 0, 1, ... (in that order: the result does not depend on
    the schedule) of ws[s, m, n], plus bias, cast, stored through the output's strides.  ``ws``: float32
    (float64 for float64 operands), ``(SPLITS, M, C_OUT)`` contiguous."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < C_OUT
    mask = m_mask[:, None] & n_mask[None, :]
    ws_ptrs = ws_ptr + offs_m.to(tl.int64)[:, None] * C_OUT + offs_n[None, :]
    acc = tl.load(ws_ptrs, mask=mask, other=0.0)
    for s in range(1, SPLITS):
        acc += tl.load(ws_ptrs + s * stride_ys, mask=mask, other=0.0)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(acc.dtype)[None, :]
    ow = offs_m % OW
    t = offs_m // OW
    oh = t % OH
    nb = t // OH
    y_ptrs = (y_ptr + (nb.to(tl.int64) * stride_yn + oh.to(tl.int64) * stride_yh + ow.to(tl.int64) * stride_yw)[:, None]
              + offs_n.to(tl.int64)[None, :] * stride_yc)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def pointwise_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    HW, C_IN_G, C_OUT_G,
    stride_xn, stride_xc, stride_xp,
    stride_wn,
    stride_yn, stride_yc, stride_yp,
    EVEN_K: tl.constexpr, HAS_BIAS: tl.constexpr, ROUND_A: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC_FP64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """1x1, stride 1, no padding: per sample and group, out[p, n] = sum_c x[p, c] * w[n, c], read in place.

    ``p`` is the flattened pixel index (H and W must flatten to one stride, true of NCHW and NHWC), so an
    NCHW input is read without any layout change: its A tile is pixel-contiguous.
    """
    # -- map program ids: axis 0 = (pixel tile, N tile), axis 1 = sample, axis 2 = group --------------------
    pid = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    g = tl.program_id(2)
    num_pid_n = tl.cdiv(C_OUT_G, BLOCK_N)
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n
    offs_p = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    p_mask = offs_p < HW
    n_mask = offs_n < C_OUT_G

    # -- pointers ---------------------------------------------------------------------------------------------
    a_ptrs = (x_ptr + n * stride_xn + (g * C_IN_G).to(tl.int64) * stride_xc
              + offs_p.to(tl.int64)[:, None] * stride_xp + offs_k[None, :] * stride_xc)
    b_ptrs = w_ptr + (g * C_OUT_G + offs_n).to(tl.int64)[None, :] * stride_wn + offs_k[:, None]

    # -- K loop over input channels -------------------------------------------------------------------------
    acc = _zero_acc(BLOCK_M, BLOCK_N, ACC_FP64)
    for k0 in range(0, C_IN_G, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=p_mask[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=n_mask[None, :], other=0.0)
        else:
            k_ok = (k0 + offs_k) < C_IN_G
            a = tl.load(a_ptrs, mask=p_mask[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None] & n_mask[None, :], other=0.0)
        acc = _dot_step(a, b, acc, ROUND_A, UPCAST, PRECISION)
        a_ptrs += BLOCK_K * stride_xc
        b_ptrs += BLOCK_K

    # -- epilogue -------------------------------------------------------------------------------------------
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * C_OUT_G + offs_n, mask=n_mask, other=0.0).to(acc.dtype)[None, :]
    y_ptrs = (y_ptr + n * stride_yn + offs_p.to(tl.int64)[:, None] * stride_yp
              + (g * C_OUT_G + offs_n).to(tl.int64)[None, :] * stride_yc)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=p_mask[:, None] & n_mask[None, :])


# ==========================================================================================================
# Configs
# ==========================================================================================================
# The tiles are data (tables/igemm.json).  "PREP" is a wrapper-level choice, not a kernel argument: 1 = convert
# the activation to NHWC (rounded to TF32 when needed) in one pass first; 0 = read the activation in place
# (rounding in the loop).  Every config offered on a GPU fits its shared memory; the static gate
# (`python -m fastconv inspect`) proves registers and spills for sm_89 and sm_90.


def smem_bytes(cfg: KernelConfig, elem: int) -> int:
    """Shared memory the software pipeline needs: one A and one B tile per stage (as Triton allocates)."""
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    return max(cfg.num_stages, 1) * (bm * bk + bk * bn) * elem


def _elem(p: ConvProblem) -> int:
    return 2 if p.dtype in ("float16", "bfloat16") else (8 if p.dtype == "float64" else 4)


def _device_shared_limit() -> int:
    """Per-block shared memory of the running GPU (the seed's RTX 4090's without one, e.g. in the interpreter)."""
    if torch.cuda.is_available() and not dot_upcast():
        return _shared_limit_of(torch.cuda.current_device())
    return TARGETS["sm_89"].max_shared_bytes


@functools.cache
def _shared_limit_of(device_index: int) -> int:
    props = torch.cuda.get_device_properties(device_index)
    return int(getattr(props, "shared_memory_per_block_optin", TARGETS["sm_89"].max_shared_bytes))


def _base_tiles(p: ConvProblem) -> list[KernelConfig]:
    tiles = table("igemm")["tiles"]
    return configs_of(tiles["half"] if p.dtype in ("float16", "bfloat16") else tiles[p.dtype])


def _fits(cfg: KernelConfig, p: ConvProblem, limit: int | None = None) -> bool:
    return smem_bytes(cfg, _elem(p)) <= (limit if limit is not None else _device_shared_limit())


def _fits_registers(cfg: KernelConfig, p: ConvProblem, precision: Precision) -> bool:
    """Register-pressure rules that keep every shipped config spill-free (checked by the static gate,
    ``python -m fastconv inspect``, which found these limits): tf32x3 splits both operands into two TF32
    halves, so it allows at most 32 accumulators and 16 A elements per thread; exact products ("ieee", FMA
    dots) keep operand fragments in registers, so 64 accumulators only at BLOCK_K 16, else 32 (float64 values
    take two registers each: half those counts); the flat K order decodes (kh, kw, ci) per A element, so it
    allows at most 16 A elements per thread."""
    threads = 32 * cfg.num_warps
    words = 2 if p.dtype == "float64" else 1
    acc = cfg["BLOCK_M"] * cfg["BLOCK_N"] / threads * words
    a_elems = cfg["BLOCK_M"] * cfg["BLOCK_K"] / threads * words
    if precision == "tf32x3" and (acc > 32 or a_elems > 16):
        return False
    wide_k = cfg["BLOCK_K"] > 16
    if not precision.tensor_cores and (acc > 64 or a_elems > 16 or (acc > 32 and wide_k)):
        return False
    return not (_flat_k(p) and a_elems > 16)


def _clamped_tiles(p: ConvProblem, precision: Precision, clamp_k: bool, limit: int | None = None
                   ) -> list[KernelConfig]:
    """The base tiles with BLOCK_N (and BLOCK_K) clamped to the problem, deduplicated, that fit ``limit``
    bytes of shared memory per block (default: the running GPU's)."""
    max_n = max(16, next_pow2(p.c_out_per_group))
    max_k = max(16, next_pow2(p.c_in_per_group))
    seen, out = set(), []
    for c in _base_tiles(p):
        kw = c.kwargs
        kw["BLOCK_N"] = min(kw["BLOCK_N"], max_n)
        if clamp_k:
            kw["BLOCK_K"] = min(kw["BLOCK_K"], max_k)
        elif _flat_k(p):  # per-element (kh, kw, ci) decoding: at most 16 A elements per thread
            kw["BLOCK_K"] = max(16, min(kw["BLOCK_K"], 16 * 32 * c.num_warps // kw["BLOCK_M"]))
        cfg = KernelConfig.of(num_warps=c.num_warps, num_stages=c.num_stages, **kw)
        if cfg in seen or not _fits(cfg, p, limit) or not _fits_registers(cfg, p, precision):
            continue
        seen.add(cfg)
        out.append(cfg)
    if not out:  # nothing fits: the smallest tile, which always does
        out.append(KernelConfig.of(num_warps=4, num_stages=2, BLOCK_M=64, BLOCK_N=min(max_n, 64), BLOCK_K=16))
    return out


def split_k_of(p: ConvProblem, cfg: KernelConfig) -> int:
    """How many K slices a split-K variant of tile ``cfg`` gets on ``p`` (1: none), by the table's rule
    (``tables/igemm.json``, ``split_k``): only a grid under ``min_programs`` programs is split, into the
    smallest count that fills it whose slices keep ``min_steps`` K steps (else the largest that keeps them);
    no slice is empty."""
    rule = table("igemm")["split_k"]
    programs = cdiv(p.gemm_m, cfg["BLOCK_M"]) * cdiv(p.c_out_per_group, cfg["BLOCK_N"]) * p.groups
    steps = _k_iters(p, cfg["BLOCK_K"])
    if programs >= rule["min_programs"]:
        return 1
    usable = [s for s in rule["splits"] if steps >= s * rule["min_steps"]
              and s * p.gemm_m * p.c_out < 2**31]  # the reduction's offsets are 32-bit
    if not usable:
        return 1
    want = next((s for s in usable if programs * s >= rule["min_programs"]), usable[-1])
    return cdiv(steps, cdiv(steps, want))  # as many slices as the K steps per slice give: none empty


def _igemm_configs(p: ConvProblem, precision: str, limit: int | None = None) -> list[KernelConfig]:
    """The clamped tiles, each with its input pass (``PREP``), then a split-K variant (``SPLIT_K``) of each
    tile whose grid is too small for the GPU (after all the others, so untimed choices that fall back on
    the candidates' order never pick one unmeasured)."""
    precision = Precision(precision)
    # PREP=1 and PREP=0 are the same launch when the input is already NHWC and needs no TF32 rounding
    preps = (1,) if p.channels_last and not precision.rounds_to_tf32 else (1, 0)
    if precision == "tf32x3":  # split operands read K-strided from NCHW spill (static gate, sm_89): NHWC only
        preps = (1,)
    tiles = _clamped_tiles(p, precision, not _flat_k(p), limit)
    out = [KernelConfig(c.blocks + (("PREP", prep),), c.num_warps, c.num_stages) for c in tiles for prep in preps]
    for c in tiles:
        splits = split_k_of(p, c)
        if splits > 1:
            out.append(KernelConfig(c.blocks + (("PREP", preps[0]), ("SPLIT_K", splits)), c.num_warps,
                                    c.num_stages))
    return out


def _pointwise_configs(p: ConvProblem, precision: str, limit: int | None = None) -> list[KernelConfig]:
    return _clamped_tiles(p, Precision(precision), True, limit)


# ==========================================================================================================
# Wrappers: prepare, launch
# ==========================================================================================================
def _flat_k(p: ConvProblem) -> bool:
    return p.c_in_per_group < 16


def _dot_constexprs(p: ConvProblem, precision: Precision, upcast: bool) -> dict:
    """``PRECISION`` (tl.dot's input_precision) and ``UPCAST``: in the interpreter half operands are upcast
    to fp32 (its bf16 dot is wrong) and multiplied exactly."""
    half = p.dtype in ("float16", "bfloat16")
    if half:  # tl.dot ignores input_precision for half operands; "tf32" keeps their tensor-core lowering
        dot = "ieee" if upcast else "tf32"
    else:
        dot = precision.dot_precision
    return dict(PRECISION=dot, UPCAST=upcast and half, ACC_FP64=p.dtype == "float64")


def _k_iters(p: ConvProblem, block_k: int) -> int:
    """Steps of the K loop: flat K in BLOCK_K chunks, or (tap, channel block) pairs."""
    return cdiv(p.gemm_k, block_k) if _flat_k(p) else p.kh * p.kw * cdiv(p.c_in_per_group, block_k)


def _igemm_args(xs, wp, bias, out, p: ConvProblem, precision: Precision, blocks: dict, round_a: bool,
                upcast: bool, splits: int = 1) -> dict:
    """Every argument of ``igemm_conv2d_kernel`` by name, for a launch (and for the static gate).  With
    ``splits`` > 1, ``out`` is the split-K workspace (:func:`_workspace`) and the bias is left to the
    reduction."""
    sxn, sxc, sxh, sxw = xs.stride()
    bk = blocks["BLOCK_K"]
    flat = _flat_k(p)
    c_iters = cdiv(p.c_in_per_group, bk)
    if splits > 1:  # the workspace (SPLITS, M, C_out) seen as SPLITS NHWC outputs, planes 16-aligned
        syn, syc, syh, syw, sys_ = p.oh * p.ow * p.c_out, 1, p.ow * p.c_out, p.c_out, out.stride(0)
        p = p.replace(has_bias=False)
    else:
        (syn, syc, syh, syw), sys_ = out.stride(), 0
    return dict(
        x_ptr=xs, w_ptr=wp, b_ptr=bias if bias is not None else wp, y_ptr=out,
        M=p.gemm_m, H=p.h, W=p.w, C_IN_G=p.c_in_per_group, C_OUT_G=p.c_out_per_group, OH=p.oh, OW=p.ow,
        K_ITERS=cdiv(p.gemm_k, bk) if flat else p.kh * p.kw * c_iters, C_ITERS=c_iters,
        K_PER_SPLIT=cdiv(_k_iters(p, bk), splits), stride_ys=sys_,
        stride_xn=sxn, stride_xc=sxc, stride_xh=sxh, stride_xw=sxw, stride_wn=wp.stride(0),
        stride_yn=syn, stride_yc=syc, stride_yh=syh, stride_yw=syw,
        conv_stride_h=p.stride_h, conv_stride_w=p.stride_w, pad_h=p.pad_h, pad_w=p.pad_w,
        dil_h=p.dil_h, dil_w=p.dil_w,
        KH=p.kh, KW=p.kw, FLAT_K=flat, EVEN_K=p.c_in_per_group % bk == 0, HAS_BIAS=p.has_bias,
        SPLIT=splits > 1, ROUND_A=round_a, **_dot_constexprs(p, precision, upcast), **blocks,
    )


def _igemm_grid(p: ConvProblem, blocks: dict) -> tuple[int, int]:
    return (cdiv(p.gemm_m, blocks["BLOCK_M"]) * cdiv(p.c_out_per_group, blocks["BLOCK_N"]), p.groups)


_PTRS = ("x_ptr", "w_ptr", "b_ptr", "y_ptr")


_REDUCE_BLOCK = {"BLOCK_M": 64, "BLOCK_N": 64}


def _workspace(p: ConvProblem, splits: int, device) -> torch.Tensor:
    """The split-K partial sums, ``(splits, M, C_out)``: float64 for float64 operands, else float32."""
    dtype = torch.float64 if p.dtype == "float64" else torch.float32
    plane = cdiv(p.gemm_m * p.c_out, 16) * 16  # every plane 16-element aligned: the stores stay vectorised
    return torch.empty((splits, plane), dtype=dtype, device=device)


def _reduce_args(ws, bias, out, p: ConvProblem) -> dict:
    """Every argument of ``splitk_reduce_kernel`` by name."""
    syn, syc, syh, syw = out.stride()
    return dict(ws_ptr=ws, b_ptr=bias if bias is not None else ws, y_ptr=out, M=p.gemm_m, C_OUT=p.c_out,
                OH=p.oh, OW=p.ow, SPLITS=ws.shape[0], stride_ys=ws.stride(0), stride_yn=syn, stride_yc=syc,
                stride_yh=syh, stride_yw=syw, HAS_BIAS=p.has_bias, **_REDUCE_BLOCK)


def _igemm_launcher(p: ConvProblem, precision: str, config: KernelConfig):
    precision = Precision(precision)
    tf32 = precision.rounds_to_tf32
    blocks = config.kwargs
    prep = blocks.pop("PREP", 1)
    splits = blocks.pop("SPLIT_K", 1)
    upcast = dot_upcast()
    nhwc = NhwcPass(round_to_tf32=tf32) if prep else None
    pack = WeightPack(round_to_tf32=tf32)
    site = FastLaunch(igemm_conv2d_kernel, _igemm_grid(p, blocks) + (splits,), _PTRS,
                      num_warps=config.num_warps, num_stages=config.num_stages)
    if splits > 1:
        reduce_site = FastLaunch(splitk_reduce_kernel, (cdiv(p.gemm_m, _REDUCE_BLOCK["BLOCK_M"]),
                                                        cdiv(p.c_out, _REDUCE_BLOCK["BLOCK_N"])),
                                 ("ws_ptr", "b_ptr", "y_ptr"), num_warps=4, num_stages=1)

    def launch(x, weight, bias, out) -> None:
        xs = nhwc(x) if nhwc is not None else x
        wp = pack(weight)
        if splits == 1:
            site((xs, wp, bias if bias is not None else wp, out),
                 lambda: _igemm_args(xs, wp, bias, out, p, precision, blocks, round_a=tf32 and not prep,
                                     upcast=upcast))
            return
        ws = _workspace(p, splits, out.device)
        site((xs, wp, wp, ws), lambda: _igemm_args(xs, wp, None, ws, p, precision, blocks,
                                                   round_a=tf32 and not prep, upcast=upcast, splits=splits))
        reduce_site((ws, bias if bias is not None else ws, out), lambda: _reduce_args(ws, bias, out, p))

    return launch


def _igemm_passes(p: ConvProblem, precision: str, config: KernelConfig, input_layout: str) -> tuple[str, ...]:
    """PREP=1 converts the input to NHWC (rounding to TF32 on the way) unless it already is NHWC and needs
    no rounding."""
    tf32 = Precision(precision).rounds_to_tf32
    if dict(config.blocks).get("PREP", 1) and (tf32 or input_layout != "nhwc"):
        return ("nhwc+tf32" if tf32 else "nhwc",)
    return ()


def _pointwise_passes(p: ConvProblem, precision: str, config: KernelConfig, input_layout: str) -> tuple[str, ...]:
    """An input whose (H, W) do not flatten to one stride is copied to a contiguous tensor first."""
    return ("contiguous copy if H, W do not flatten",) if input_layout == "strided" else ()


def _pointwise_supports(p: ConvProblem, precision: str) -> bool:
    return p.is_pointwise and (p.stride_h, p.stride_w) == (1, 1)


def _flat_pixel_stride(t: torch.Tensor) -> int | None:
    """The stride of the flattened (h, w) index, if h and w flatten (``stride_h == W * stride_w``)."""
    _, _, h, w = t.shape
    sh, sw = t.stride(2), t.stride(3)
    if h == 1 or sh == w * sw:
        return sw
    if w == 1:
        return sh
    return None


def _pointwise_args(x, wp, bias, out, p: ConvProblem, precision: Precision, blocks: dict, sxp: int, syp: int,
                    upcast: bool) -> dict:
    """Every argument of ``pointwise_conv2d_kernel`` by name."""
    return dict(
        x_ptr=x, w_ptr=wp, b_ptr=bias if bias is not None else wp, y_ptr=out,
        HW=p.h * p.w, C_IN_G=p.c_in_per_group, C_OUT_G=p.c_out_per_group,
        stride_xn=x.stride(0), stride_xc=x.stride(1), stride_xp=sxp, stride_wn=wp.stride(0),
        stride_yn=out.stride(0), stride_yc=out.stride(1), stride_yp=syp,
        EVEN_K=p.c_in_per_group % blocks["BLOCK_K"] == 0, HAS_BIAS=p.has_bias,
        ROUND_A=precision.rounds_to_tf32, **_dot_constexprs(p, precision, upcast), **blocks,
    )


def _pointwise_launcher(p: ConvProblem, precision: str, config: KernelConfig):
    precision = Precision(precision)
    tf32 = precision.rounds_to_tf32
    blocks = config.kwargs
    upcast = dot_upcast()
    grid = (cdiv(p.h * p.w, blocks["BLOCK_M"]) * cdiv(p.c_out_per_group, blocks["BLOCK_N"]), p.batch, p.groups)
    site = FastLaunch(pointwise_conv2d_kernel, grid, _PTRS, num_warps=config.num_warps,
                      num_stages=config.num_stages)

    pack = WeightPack(round_to_tf32=tf32)

    def launch(x, weight, bias, out) -> None:
        sxp = _flat_pixel_stride(x)
        if sxp is None:  # e.g. a view sliced along W: one copy into a layout whose pixels flatten
            x = x.contiguous()
            sxp = _flat_pixel_stride(x)
        wp = pack(weight)
        site((x, wp, bias if bias is not None else wp, out),
             lambda: _pointwise_args(x, wp, bias, out, p, precision, blocks, sxp, _flat_pixel_stride(out), upcast))

    return launch


def _supports_tensor_cores(p: ConvProblem, precision: str) -> bool:
    # per-sample offsets are 32-bit in the K loop (whole-tensor offsets are 64-bit)
    return p.c_in * p.h * p.w < 2**31


# ==========================================================================================================
# Static variants: what the static gate compiles (every shipped config, each dtype/precision it serves)
# ==========================================================================================================
def _targets(cfg: KernelConfig, p: ConvProblem) -> tuple[str, ...]:
    return ("sm_89", "sm_90") if _fits(cfg, p, TARGETS["sm_89"].max_shared_bytes) else ("sm_90",)


def _igemm_static_variants() -> list[StaticVariant]:
    out, seen = [], set()
    for dtype, precision in modes():
        # the seed's problem (per-tap K order) in every mode; a stem layer (flat K order) in the two modes
        # whose operand types differ (fp32 and 16-bit), as the K order changes only index arithmetic; a late
        # ResNet layer at batch 2 (a small grid, a long K loop) for the split-K binaries, in every mode
        probs = [ConvProblem.make(8, 32, 64, 512, 512, (5, 9), 1, (2, 4), (2, 3), dtype=dtype, has_bias=True)]
        if precision == "tf32" or dtype == "bfloat16":
            probs.append(ConvProblem.make(32, 3, 64, 224, 224, 7, 2, 3, dtype=dtype, has_bias=True))
        split_prob = ConvProblem.make(2, 256, 256, 7, 7, 3, 1, 1, dtype=dtype, has_bias=True)
        probs.append(split_prob)
        for prob in probs:
            x = meta_tensor(prob.input_shape, dtype)
            wp = meta_tensor((prob.c_out, prob.gemm_k), dtype)
            for cfg in _igemm_configs(prob, precision, limit=TARGETS["sm_90"].max_shared_bytes):
                blocks = cfg.kwargs
                prep = blocks.pop("PREP")
                splits = blocks.pop("SPLIT_K", 1)
                if (splits > 1) != (prob is split_prob):  # the plain binaries come from the problems above
                    continue
                y = _workspace(prob, splits, "meta") if splits > 1 else meta_tensor(prob.output_shape, dtype)
                xs = meta_tensor(prob.input_shape, dtype, channels_last=True) if prep else x
                args = _igemm_args(xs, wp, meta_tensor((prob.c_out,), dtype), y, prob, precision, blocks,
                                   round_a=precision.rounds_to_tf32 and not prep, upcast=False, splits=splits)
                kcfg = binary_config(cfg)
                v = static_variant(
                    "igemm", igemm_conv2d_kernel, args, kcfg,
                    f"igemm {dtype}/{precision} k{prob.kh}x{prob.kw} cin{prob.c_in}{'' if prep else ' nchw-in-place'}"
                    f"{' split-K' if splits > 1 else ''}",
                    tensor_core=precision.tensor_cores, targets=_targets(kcfg, prob), mode=f"{dtype}/{precision}")
                key = (tuple(sorted(v.signature.items())), tuple(sorted(v.constexprs.items())), kcfg)
                if key not in seen:  # configs that compile to the same kernel are checked once
                    seen.add(key)
                    out.append(v)
    # the split-K reduction (its slice count is a runtime argument: one binary per output dtype and bias)
    prob = ConvProblem.make(1, 512, 512, 7, 7, 3, 1, 1, has_bias=True)
    for dtype in ("float32", "float16", "bfloat16", "float64"):
        p = prob.replace(dtype=dtype)
        ws = _workspace(p, 4, "meta")
        args = _reduce_args(ws, meta_tensor((p.c_out,), dtype), meta_tensor(p.output_shape, dtype), p)
        out.append(static_variant("igemm", splitk_reduce_kernel, args,
                                  KernelConfig.of(num_warps=4, num_stages=1, **_REDUCE_BLOCK),
                                  f"igemm split-K reduction {dtype}", tensor_core=False, mode=f"{dtype}/*"))
    return out


def _pointwise_static_variants() -> list[StaticVariant]:
    out = []
    prob0 = ConvProblem.make(16, 64, 128, 1024, 1024, 1, has_bias=True)
    for dtype, precision in modes():
        prob = prob0.replace(dtype=dtype)
        x, y = meta_tensor(prob.input_shape, dtype), meta_tensor(prob.output_shape, dtype)
        wp, b = meta_tensor((prob.c_out, prob.gemm_k), dtype), meta_tensor((prob.c_out,), dtype)
        for cfg in _pointwise_configs(prob, precision, limit=TARGETS["sm_90"].max_shared_bytes):
            args = _pointwise_args(x, wp, b, y, prob, precision, cfg.kwargs, 1, 1, upcast=False)
            out.append(static_variant("pointwise", pointwise_conv2d_kernel, args, cfg,
                                      f"pointwise {dtype}/{precision} cin{prob.c_in}",
                                      tensor_core=precision.tensor_cores, targets=_targets(cfg, prob),
                                      mode=f"{dtype}/{precision}"))
    return out


IGEMM = register(ConvKernel(
    name="igemm",
    supports=_supports_tensor_cores,
    configs=_igemm_configs,
    make_launcher=_igemm_launcher,
    static_variants=_igemm_static_variants,
    description="implicit GEMM on tensor cores (any conv2d)",
    passes=_igemm_passes,
))

POINTWISE = register(ConvKernel(
    name="pointwise",
    supports=_pointwise_supports,
    configs=_pointwise_configs,
    make_launcher=_pointwise_launcher,
    static_variants=_pointwise_static_variants,
    description="1x1 stride-1 convolution as a GEMM that reads NCHW or NHWC in place",
    passes=_pointwise_passes,
))
