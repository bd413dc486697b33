"""Depthwise and small-group convolution as a memory-bound direct kernel (no ``tl.dot`` on K < 16).

With ``C_in/groups`` of 1 (depthwise) or a few channels, the reduction per output is only
``C_in/groups * KH * KW`` long: too short for tensor cores, and the problem is bound by memory traffic.  Each
program computes a ``[BLOCK_W, BLOCK_C]`` tile of one output row (``BLOCK_W`` output columns of ``BLOCK_C``
output channels) with fp32 FMAs, the kernel taps unrolled.  Loads go through the input's strides, so NCHW
(coalesced along W) and NHWC (coalesced along C) are both read in place; neighbouring taps hit in L1/L2.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..vocab import DTYPES
from .base import ConvKernel, StaticVariant, meta_tensor, register, static_variant
from .config import KernelConfig, configs_of, table
from .launch import FastLaunch, cdiv

__all__ = ["depthwise_conv2d_kernel", "DEPTHWISE", "MAX_CIN_PER_GROUP"]

# Above this many input channels per group the reduction is long enough for the implicit GEMM.
MAX_CIN_PER_GROUP = 4


@triton.jit
def depthwise_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    H, W, C_OUT, OH, OW,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wo, stride_wc, stride_wh, stride_ww,
    stride_yn, stride_yc, stride_yh, stride_yw,
    conv_stride_h, conv_stride_w, pad_h, pad_w, dil_h, dil_w,
    C_IN_G: tl.constexpr, C_OUT_G: tl.constexpr,
    KH: tl.constexpr, KW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC_FP64: tl.constexpr,  # float64 operands: accumulate in float64
    BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # -- map program ids: axis 0 = (batch, output row), axis 1 = column block, axis 2 = channel block ---------
    pid_row = tl.program_id(0)
    pid_w = tl.program_id(1)
    pid_c = tl.program_id(2)
    n = (pid_row // OH).to(tl.int64)
    oh = pid_row % OH
    offs_w = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    w_mask = offs_w < OW
    c_mask = offs_c < C_OUT

    # -- first input channel each output channel reads (depthwise: the same index) ----------------------------
    if C_OUT_G == 1:
        cin0 = offs_c * C_IN_G
    else:
        cin0 = (offs_c // C_OUT_G) * C_IN_G
    x_base = x_ptr + n * stride_xn + cin0.to(tl.int64)[None, :] * stride_xc  # [1, BLOCK_C]
    w_base = w_ptr + offs_c.to(tl.int64) * stride_wo  # [BLOCK_C]
    iw0 = offs_w * conv_stride_w - pad_w
    ih0 = oh * conv_stride_h - pad_h

    # -- taps, unrolled; fp32 FMAs (fp64 for float64) -----------------------------------------------------------
    if ACC_FP64:
        acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
    for ci in tl.static_range(C_IN_G):
        for kh in tl.static_range(KH):
            ih = ih0 + kh * dil_h
            h_ok = (ih >= 0) & (ih < H)
            x_row = x_base + ci * stride_xc + ih.to(tl.int64) * stride_xh
            for kw in tl.static_range(KW):
                iw = iw0 + kw * dil_w
                ok = ((w_mask & (iw >= 0) & (iw < W) & h_ok)[:, None] & c_mask[None, :]) != 0
                xv = tl.load(x_row + iw.to(tl.int64)[:, None] * stride_xw, mask=ok, other=0.0)
                wv = tl.load(w_base + ci * stride_wc + kh * stride_wh + kw * stride_ww, mask=c_mask, other=0.0)
                acc += xv.to(acc.dtype) * wv.to(acc.dtype)[None, :]

    # -- epilogue ------------------------------------------------------------------------------------------------
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_c, mask=c_mask, other=0.0).to(acc.dtype)[None, :]
    y_ptrs = (y_ptr + n * stride_yn + oh.to(tl.int64) * stride_yh + offs_w.to(tl.int64)[:, None] * stride_yw
              + offs_c.to(tl.int64)[None, :] * stride_yc)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=w_mask[:, None] & c_mask[None, :])


def _supports(p: ConvProblem, precision: str) -> bool:
    return p.groups > 1 and p.c_in_per_group <= MAX_CIN_PER_GROUP


def _configs(p: ConvProblem, precision: str) -> list[KernelConfig]:
    """Tiles along W for NCHW (W contiguous), along C for NHWC (C contiguous); the layout's own first
    (tables/depthwise.json).  float64 keeps at most 8 outputs per thread: 16 spill (static gate, sm_89 and
    sm_90, Triton 3.6)."""
    along_w, along_c = configs_of(table("depthwise")["along_w"]), configs_of(table("depthwise")["along_c"])
    configs = along_c + along_w if p.channels_last else along_w + along_c
    if p.dtype == "float64":
        configs = [c for c in configs if c["BLOCK_W"] * c["BLOCK_C"] <= 8 * 32 * c.num_warps]
    return configs


def _args(x, weight, bias, out, p: ConvProblem, blocks: dict) -> dict:
    """Every argument of ``depthwise_conv2d_kernel`` by name, for a launch (and for the static gate)."""
    return dict(
        x_ptr=x, w_ptr=weight, b_ptr=bias if bias is not None else weight, y_ptr=out,
        H=p.h, W=p.w, C_OUT=p.c_out, OH=p.oh, OW=p.ow,
        **dict(zip(("stride_xn", "stride_xc", "stride_xh", "stride_xw"), x.stride())),
        **dict(zip(("stride_wo", "stride_wc", "stride_wh", "stride_ww"), weight.stride())),
        **dict(zip(("stride_yn", "stride_yc", "stride_yh", "stride_yw"), out.stride())),
        conv_stride_h=p.stride_h, conv_stride_w=p.stride_w, pad_h=p.pad_h, pad_w=p.pad_w,
        dil_h=p.dil_h, dil_w=p.dil_w,
        C_IN_G=p.c_in_per_group, C_OUT_G=p.c_out_per_group, KH=p.kh, KW=p.kw, HAS_BIAS=p.has_bias,
        ACC_FP64=p.dtype == "float64", **blocks,
    )


def _launcher(p: ConvProblem, precision: str, config: KernelConfig):
    blocks = config.kwargs
    grid = (p.batch * p.oh, cdiv(p.ow, blocks["BLOCK_W"]), cdiv(p.c_out, blocks["BLOCK_C"]))
    site = FastLaunch(depthwise_conv2d_kernel, grid, ("x_ptr", "w_ptr", "b_ptr", "y_ptr"),
                      num_warps=config.num_warps, num_stages=config.num_stages)

    def launch(x, weight, bias, out) -> None:
        site((x, weight, bias if bias is not None else weight, out),
             lambda: _args(x, weight, bias, out, p, blocks))

    return launch


def _static_variants() -> list[StaticVariant]:
    """KernelBench #82 (depthwise 3x3) in NCHW and NHWC, each dtype, every config."""
    out = []
    for cl in (False, True):
        for dtype in DTYPES:
            prob = ConvProblem.make(16, 64, 64, 512, 512, 3, groups=64, has_bias=True, channels_last=cl, dtype=dtype)
            x, y = meta_tensor(prob.input_shape, dtype, cl), meta_tensor(prob.output_shape, dtype, cl)
            w, b = meta_tensor(prob.weight_shape, dtype), meta_tensor((prob.c_out,), dtype)
            for cfg in _configs(prob, "ieee"):
                out.append(static_variant("depthwise", depthwise_conv2d_kernel, _args(x, w, b, y, prob, cfg.kwargs),
                                          cfg, f"depthwise {dtype} k3x3 {'nhwc' if cl else 'nchw'}",
                                          tensor_core=False, mode=f"{dtype}/*"))
    return out


DEPTHWISE = register(ConvKernel(
    name="depthwise",
    supports=_supports,
    configs=_configs,
    make_launcher=_launcher,
    static_variants=_static_variants,
    description="direct fp32-FMA kernel for depthwise and small-group convolutions (memory-bound)",
))
