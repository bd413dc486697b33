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

Accumulation is fp32; bias is added in the epilogue; the output is written through its strides in the memory
format torch would return.  Offsets are 64-bit where tensors may pass 2**31 elements.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..problem import ConvProblem
from ..tuning.configs import KernelConfig
from .base import ConvKernel, StaticVariant, meta_tensor, register, static_variant
from .common import NhwcPass, dot_upcast, packed_weight, round_tf32
from .launch import FastLaunch, cdiv, next_pow2

__all__ = ["igemm_conv2d_kernel", "pointwise_conv2d_kernel", "IGEMM", "POINTWISE", "smem_bytes"]


@triton.jit
def _tap_tile(it, x_rows0, ih0, iw0, m_mask, offs_k, H, W, C_ITERS, KW: tl.constexpr, dil_h, dil_w,
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
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def igemm_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, H, W, C_IN_G, C_OUT_G, OH, OW, K_ITERS, C_ITERS,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wn,
    stride_yn, stride_yc, stride_yh, stride_yw,
    conv_stride_h, conv_stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr,
    FLAT_K: tl.constexpr,  # decode k per element (small C_in/groups)
    EVEN_K: tl.constexpr,  # C_in/groups % BLOCK_K == 0: no channel mask
    HAS_BIAS: tl.constexpr,
    ROUND_A: tl.constexpr,  # round the activation to TF32 in the loop (when it was not rounded before)
    PRECISION: tl.constexpr,  # tl.dot input_precision: "tf32", "tf32x3" or "ieee"
    UPCAST: tl.constexpr,  # interpreter: half operands to fp32 before tl.dot
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # -- map program ids: axis 0 walks (M tile, N tile) with N fastest, so neighbours share A; axis 1 = group
    pid = tl.program_id(0)
    g = tl.program_id(1)
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

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_K:
        # -- K loop, flat: k -> (kh, kw, ci) per element ------------------------------------------------------
        K_TOTAL = KH * KW * C_IN_G
        for it in range(0, K_ITERS):
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
        b_ptrs = w_cols[None, :] + offs_k[:, None]
        for it in range(0, K_ITERS):
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
        acc += tl.load(b_ptr + g * C_OUT_G + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    y_row = nb.to(tl.int64) * stride_yn + oh.to(tl.int64) * stride_yh + ow.to(tl.int64) * stride_yw
    y_col = (g * C_OUT_G + offs_n).to(tl.int64) * stride_yc
    y_ptrs = y_ptr + y_row[:, None] + y_col[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def pointwise_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    HW, C_IN_G, C_OUT_G,
    stride_xn, stride_xc, stride_xp,
    stride_wn,
    stride_yn, stride_yc, stride_yp,
    EVEN_K: tl.constexpr, HAS_BIAS: tl.constexpr, ROUND_A: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
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
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, C_IN_G, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=p_mask[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=n_mask[None, :], other=0.0)
        else:
            k_ok = (k0 + offs_k) < C_IN_G
            a = tl.load(a_ptrs, mask=p_mask[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None] & n_mask[None, :], other=0.0)
        if ROUND_A:
            a = round_tf32(a)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K * stride_xc
        b_ptrs += BLOCK_K

    # -- epilogue -------------------------------------------------------------------------------------------
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * C_OUT_G + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    y_ptrs = (y_ptr + n * stride_yn + offs_p.to(tl.int64)[:, None] * stride_yp
              + (g * C_OUT_G + offs_n).to(tl.int64)[None, :] * stride_yc)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=p_mask[:, None] & n_mask[None, :])


# ==========================================================================================================
# Configs
# ==========================================================================================================
# Every config here fits the RTX 4090 (sm_89: 99 KB of shared memory per block); the static gate
# (`python -m fastconv inspect`) proves it for sm_89 and sm_90.  "PREP" is a wrapper-level choice, not a
# kernel argument: 1 = convert the activation to NHWC (rounded to TF32 when needed) in one pass first;
# 0 = read the activation in place (rounding in the loop).
SHARED_LIMIT_SM89 = 99 * 1024
SHARED_LIMIT_SM90 = 227 * 1024


def smem_bytes(cfg: KernelConfig, elem: int) -> int:
    """Shared memory the software pipeline needs: one A and one B tile per stage (as Triton allocates)."""
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    return max(cfg.num_stages, 1) * (bm * bk + bk * bn) * elem


def _elem(p: ConvProblem, precision: str) -> int:
    return 4 if p.dtype == "float32" else 2


def _device_shared_limit() -> int:
    """Per-block shared memory of the running GPU (the 4090's limit without one, e.g. in the interpreter)."""
    if torch.cuda.is_available() and not dot_upcast():
        return _shared_limit_of(torch.cuda.current_device())
    return SHARED_LIMIT_SM89


@functools.cache
def _shared_limit_of(device_index: int) -> int:
    props = torch.cuda.get_device_properties(device_index)
    return int(getattr(props, "shared_memory_per_block_optin", SHARED_LIMIT_SM89))


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): the tiles that won on at least one problem of the
# H100 sweeps (scripts/kernel_lab.py over KernelBench #55/#56/#63/#80/#87 and ResNet-50 layers; see
# NOTES.md), kept few because the first call on a new shape times every one of them.  num_stages=1 means
# no cp.async pipeline (plain loads through L1), which won on small problems.
_TILES_32 = [  # float32 operands (BLOCK_K in elements)
    (128, 64, 32, 4, 3), (128, 128, 32, 8, 3), (256, 128, 32, 8, 3), (64, 128, 32, 4, 3),
    (128, 64, 32, 4, 2), (64, 64, 32, 4, 1), (256, 64, 32, 8, 3), (128, 64, 16, 4, 4),
    (128, 64, 32, 8, 3), (256, 64, 16, 8, 3),
]
_TILES_16 = [  # float16 / bfloat16 operands
    (256, 64, 64, 8, 3), (128, 64, 64, 4, 4), (128, 128, 64, 8, 3), (256, 128, 64, 8, 3),
    (64, 128, 64, 4, 3), (128, 64, 64, 4, 2), (64, 64, 64, 4, 1), (256, 64, 32, 8, 4),
    (256, 64, 32, 4, 3),
]


def _base_tiles(p: ConvProblem, precision: str) -> list[KernelConfig]:
    tiles = _TILES_32 if p.dtype == "float32" else _TILES_16
    return [KernelConfig.of(num_warps=w, num_stages=s, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
            for bm, bn, bk, w, s in tiles]


def _fits(cfg: KernelConfig, p: ConvProblem, precision: str, limit: int | None = None) -> bool:
    return smem_bytes(cfg, _elem(p, precision)) <= (limit if limit is not None else _device_shared_limit())


def _fits_registers(cfg: KernelConfig, p: ConvProblem, precision: str) -> bool:
    """Register-pressure rules that keep every shipped config spill-free (checked by the static gate,
    ``python -m fastconv inspect``, which found these limits): tf32x3 splits both operands into two TF32
    halves, so it allows at most 32 accumulators and 16 A elements per thread; "ieee" accumulates on FMAs
    with its operand fragments in registers, so 64 accumulators only at BLOCK_K 16, else 32; the flat K
    order decodes (kh, kw, ci) per A element, so it allows at most 16 A elements per thread."""
    threads = 32 * cfg.num_warps
    acc = cfg["BLOCK_M"] * cfg["BLOCK_N"] / threads
    a_elems = cfg["BLOCK_M"] * cfg["BLOCK_K"] / threads
    if p.dtype == "float32" and precision == "tf32x3" and (acc > 32 or a_elems > 16):
        return False
    wide_k = cfg["BLOCK_K"] > 16
    if p.dtype == "float32" and precision == "ieee" and (acc > 64 or a_elems > 16 or (acc > 32 and wide_k)):
        return False
    return not (_flat_k(p) and a_elems > 16)


def _clamped_tiles(p: ConvProblem, precision: str, clamp_k: bool, limit: int | None = None) -> list[KernelConfig]:
    """The base tiles with BLOCK_N (and BLOCK_K) clamped to the problem, deduplicated, that fit ``limit``
    bytes of shared memory per block (default: the running GPU's)."""
    max_n = max(16, next_pow2(p.c_out_per_group))
    max_k = max(16, next_pow2(p.c_in_per_group))
    seen, out = set(), []
    for c in _base_tiles(p, precision):
        kw = c.kwargs
        kw["BLOCK_N"] = min(kw["BLOCK_N"], max_n)
        if clamp_k:
            kw["BLOCK_K"] = min(kw["BLOCK_K"], max_k)
        elif _flat_k(p):  # per-element (kh, kw, ci) decoding: at most 16 A elements per thread
            kw["BLOCK_K"] = max(16, min(kw["BLOCK_K"], 16 * 32 * c.num_warps // kw["BLOCK_M"]))
        cfg = KernelConfig.of(num_warps=c.num_warps, num_stages=c.num_stages, **kw)
        if cfg in seen or not _fits(cfg, p, precision, limit) or not _fits_registers(cfg, p, precision):
            continue
        seen.add(cfg)
        out.append(cfg)
    if not out:  # nothing fits: the smallest tile, which always does
        out.append(KernelConfig.of(num_warps=4, num_stages=2, BLOCK_M=64, BLOCK_N=min(max_n, 64), BLOCK_K=16))
    return out


def _igemm_configs(p: ConvProblem, precision: str, limit: int | None = None) -> list[KernelConfig]:
    # PREP=1 and PREP=0 are the same launch when the input is already NHWC and needs no TF32 rounding
    preps = (1,) if p.channels_last and not (p.dtype == "float32" and precision == "tf32") else (1, 0)
    if precision == "tf32x3":  # split operands read K-strided from NCHW spill (static gate, sm_89): NHWC only
        preps = (1,)
    return [KernelConfig(c.blocks + (("PREP", prep),), c.num_warps, c.num_stages)
            for c in _clamped_tiles(p, precision, not _flat_k(p), limit) for prep in preps]


def _pointwise_configs(p: ConvProblem, precision: str, limit: int | None = None) -> list[KernelConfig]:
    return _clamped_tiles(p, precision, True, limit)


# ==========================================================================================================
# Wrappers: check, prepare, launch
# ==========================================================================================================
def _flat_k(p: ConvProblem) -> bool:
    return p.c_in_per_group < 16


def _dot_precision(p: ConvProblem, precision: str, upcast: bool) -> str:
    """tl.dot's input_precision: the fp32 mode; "ieee" for upcast operands in the interpreter; ignored by
    tl.dot for half types."""
    if upcast:
        return "ieee"
    return precision if p.dtype == "float32" else "tf32"


def _igemm_args(xs, wp, bias, out, p: ConvProblem, precision: str, blocks: dict, round_a: bool,
                upcast: bool) -> dict:
    """Every argument of ``igemm_conv2d_kernel`` by name, for a launch (and for the static gate)."""
    flat = _flat_k(p)
    bk = blocks["BLOCK_K"]
    c_iters = cdiv(p.c_in_per_group, bk)
    sxn, sxc, sxh, sxw = xs.stride()
    syn, syc, syh, syw = out.stride()
    return dict(
        x_ptr=xs, w_ptr=wp, b_ptr=bias if bias is not None else wp, y_ptr=out,
        M=p.gemm_m, H=p.h, W=p.w, C_IN_G=p.c_in_per_group, C_OUT_G=p.c_out_per_group, OH=p.oh, OW=p.ow,
        K_ITERS=cdiv(p.gemm_k, bk) if flat else p.kh * p.kw * c_iters, C_ITERS=c_iters,
        stride_xn=sxn, stride_xc=sxc, stride_xh=sxh, stride_xw=sxw, stride_wn=wp.stride(0),
        stride_yn=syn, stride_yc=syc, stride_yh=syh, stride_yw=syw,
        conv_stride_h=p.stride_h, conv_stride_w=p.stride_w, pad_h=p.pad_h, pad_w=p.pad_w,
        dil_h=p.dil_h, dil_w=p.dil_w,
        KH=p.kh, KW=p.kw, FLAT_K=flat, EVEN_K=p.c_in_per_group % bk == 0, HAS_BIAS=p.has_bias,
        ROUND_A=round_a, PRECISION=_dot_precision(p, precision, upcast), UPCAST=upcast and p.dtype != "float32",
        **blocks,
    )


def _igemm_grid(p: ConvProblem, blocks: dict) -> tuple[int, int]:
    return (cdiv(p.gemm_m, blocks["BLOCK_M"]) * cdiv(p.c_out_per_group, blocks["BLOCK_N"]), p.groups)


_PTRS = ("x_ptr", "w_ptr", "b_ptr", "y_ptr")


def _igemm_launcher(p: ConvProblem, precision: str, config: KernelConfig):
    tf32 = p.dtype == "float32" and precision == "tf32"
    blocks = config.kwargs
    prep = blocks.pop("PREP", 1)
    upcast = dot_upcast()
    nhwc = NhwcPass(round_to_tf32=tf32) if prep else None
    site = FastLaunch(igemm_conv2d_kernel, _igemm_grid(p, blocks), _PTRS,
                      num_warps=config.num_warps, num_stages=config.num_stages)

    def launch(x, weight, bias, out) -> None:
        xs = nhwc(x) if nhwc is not None else x
        wp = packed_weight(weight, round_to_tf32=tf32)
        site((xs, wp, bias if bias is not None else wp, out),
             lambda: _igemm_args(xs, wp, bias, out, p, precision, blocks, round_a=tf32 and not prep, upcast=upcast))

    return launch


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


def _pointwise_args(x, wp, bias, out, p: ConvProblem, precision: str, blocks: dict, sxp: int, syp: int,
                    upcast: bool) -> dict:
    """Every argument of ``pointwise_conv2d_kernel`` by name."""
    return dict(
        x_ptr=x, w_ptr=wp, b_ptr=bias if bias is not None else wp, y_ptr=out,
        HW=p.h * p.w, C_IN_G=p.c_in_per_group, C_OUT_G=p.c_out_per_group,
        stride_xn=x.stride(0), stride_xc=x.stride(1), stride_xp=sxp, stride_wn=wp.stride(0),
        stride_yn=out.stride(0), stride_yc=out.stride(1), stride_yp=syp,
        EVEN_K=p.c_in_per_group % blocks["BLOCK_K"] == 0, HAS_BIAS=p.has_bias,
        ROUND_A=p.dtype == "float32" and precision == "tf32", PRECISION=_dot_precision(p, precision, upcast),
        UPCAST=upcast and p.dtype != "float32", **blocks,
    )


def _pointwise_launcher(p: ConvProblem, precision: str, config: KernelConfig):
    tf32 = p.dtype == "float32" and precision == "tf32"
    blocks = config.kwargs
    upcast = dot_upcast()
    grid = (cdiv(p.h * p.w, blocks["BLOCK_M"]) * cdiv(p.c_out_per_group, blocks["BLOCK_N"]), p.batch, p.groups)
    site = FastLaunch(pointwise_conv2d_kernel, grid, _PTRS, num_warps=config.num_warps,
                      num_stages=config.num_stages)

    def launch(x, weight, bias, out) -> None:
        sxp = _flat_pixel_stride(x)
        if sxp is None:  # e.g. a view sliced along W: one copy into a layout whose pixels flatten
            x = x.contiguous()
            sxp = _flat_pixel_stride(x)
        wp = packed_weight(weight, round_to_tf32=tf32)
        site((x, wp, bias if bias is not None else wp, out),
             lambda: _pointwise_args(x, wp, bias, out, p, precision, blocks, sxp, _flat_pixel_stride(out), upcast))

    return launch


def _supports_tensor_cores(p: ConvProblem, precision: str) -> bool:
    # per-sample offsets are 32-bit in the K loop (whole-tensor offsets are 64-bit)
    return p.c_in * p.h * p.w < 2**31


# ==========================================================================================================
# Static variants: what the static gate compiles (every shipped config, each dtype/precision it serves)
# ==========================================================================================================
_MODES = [("float32", "tf32"), ("float32", "ieee"), ("float32", "tf32x3"), ("float16", "native"),
          ("bfloat16", "native")]


def _targets(cfg: KernelConfig, p: ConvProblem, precision: str) -> tuple[str, ...]:
    return ("sm_89", "sm_90") if _fits(cfg, p, precision, SHARED_LIMIT_SM89) else ("sm_90",)


def _igemm_static_variants() -> list[StaticVariant]:
    out, seen = [], set()
    for dtype, precision in _MODES:
        # the seed's problem (per-tap K order) in every mode; a stem layer (flat K order) in the two modes
        # whose operand types differ (fp32 and 16-bit), as the K order changes only index arithmetic
        probs = [ConvProblem.make(8, 32, 64, 512, 512, (5, 9), 1, (2, 4), (2, 3), dtype=dtype, has_bias=True)]
        if precision == "tf32" or dtype == "bfloat16":
            probs.append(ConvProblem.make(32, 3, 64, 224, 224, 7, 2, 3, dtype=dtype, has_bias=True))
        for prob in probs:
            x = meta_tensor(prob.input_shape, dtype)
            wp = meta_tensor((prob.c_out, prob.gemm_k), dtype)
            y = meta_tensor(prob.output_shape, dtype)
            for cfg in _igemm_configs(prob, precision, limit=SHARED_LIMIT_SM90):
                blocks = cfg.kwargs
                prep = blocks.pop("PREP")
                tf32 = dtype == "float32" and precision == "tf32"
                xs = meta_tensor(prob.input_shape, dtype, channels_last=True) if prep else x
                args = _igemm_args(xs, wp, meta_tensor((prob.c_out,), dtype), y, prob, precision, blocks,
                                   round_a=tf32 and not prep, upcast=False)
                kcfg = KernelConfig.of(num_warps=cfg.num_warps, num_stages=cfg.num_stages, **blocks)
                v = static_variant(
                    "igemm", igemm_conv2d_kernel, args, kcfg,
                    f"igemm {dtype}/{precision} k{prob.kh}x{prob.kw} cin{prob.c_in}{'' if prep else ' nchw-in-place'}",
                    tensor_core=precision != "ieee", targets=_targets(kcfg, prob, precision))
                key = (tuple(sorted(v.signature.items())), tuple(sorted(v.constexprs.items())), kcfg)
                if key not in seen:  # configs that compile to the same kernel are checked once
                    seen.add(key)
                    out.append(v)
    return out


def _pointwise_static_variants() -> list[StaticVariant]:
    out = []
    prob0 = ConvProblem.make(16, 64, 128, 1024, 1024, 1, has_bias=True)
    for dtype, precision in _MODES:
        prob = prob0.replace(dtype=dtype)
        x, y = meta_tensor(prob.input_shape, dtype), meta_tensor(prob.output_shape, dtype)
        wp, b = meta_tensor((prob.c_out, prob.gemm_k), dtype), meta_tensor((prob.c_out,), dtype)
        for cfg in _pointwise_configs(prob, precision, limit=SHARED_LIMIT_SM90):
            args = _pointwise_args(x, wp, b, y, prob, precision, cfg.kwargs, 1, 1, upcast=False)
            out.append(static_variant("pointwise", pointwise_conv2d_kernel, args, cfg,
                                      f"pointwise {dtype}/{precision} cin{prob.c_in}",
                                      tensor_core=precision != "ieee", targets=_targets(cfg, prob, precision)))
    return out


IGEMM = register(ConvKernel(
    name="igemm",
    supports=_supports_tensor_cores,
    configs=_igemm_configs,
    make_launcher=_igemm_launcher,
    static_variants=_igemm_static_variants,
    description="implicit GEMM on tensor cores (any conv2d)",
))

POINTWISE = register(ConvKernel(
    name="pointwise",
    supports=_pointwise_supports,
    configs=_pointwise_configs,
    make_launcher=_pointwise_launcher,
    static_variants=_pointwise_static_variants,
    description="1x1 stride-1 convolution as a GEMM that reads NCHW or NHWC in place",
))
