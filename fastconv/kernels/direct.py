"""The seed's direct convolution, kept as the ``direct`` baseline.

One program per (batch, output channel) pair and block of output pixels; scalar loops over input channel,
kernel row and kernel column; no tensor cores.  Changes from the seed (``shared/seed``), none of which
changes its algorithm: it reads the input and writes the output through their strides (any memory
format), supports groups and asymmetric ("same") padding, computes offsets in 64 bits, accumulates in fp32
for half inputs, and is launched with an explicit config instead of ``@triton.autotune`` (which crashes
under the interpreter).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..vocab import DTYPES
from .base import ConvKernel, StaticVariant, meta_tensor, register, static_variant
from .config import KernelConfig, configs_of, table
from .launch import cdiv, report_compiled

__all__ = ["direct_conv2d_kernel", "DIRECT"]


@triton.jit
def direct_conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C_IN_G, H, W, C_OUT, C_OUT_G, OH, OW,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wo, stride_wc, stride_wh, stride_ww,
    stride_yn, stride_yc, stride_yh, stride_yw,
    conv_stride_h, conv_stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC_FP64: tl.constexpr,  # float64 operands: accumulate in float64
    BLOCK_HW: tl.constexpr,
):
    # -- map program ids: axis 0 = (batch, output channel), axis 1 = block of output pixels --------------
    pid_nc = tl.program_id(0)
    pid_hw = tl.program_id(1)
    n = pid_nc // C_OUT
    oc = pid_nc % C_OUT
    g = oc // C_OUT_G

    offs_hw = pid_hw * BLOCK_HW + tl.arange(0, BLOCK_HW)
    mask_hw = offs_hw < OH * OW
    oh = offs_hw // OW
    ow = offs_hw % OW
    ih0 = oh * conv_stride_h - pad_h
    iw0 = ow * conv_stride_w - pad_w

    # -- pointers to this sample / this filter (64-bit: tensors may pass 2**31 elements) ----------------
    x_base = x_ptr + n.to(tl.int64) * stride_xn + (g * C_IN_G).to(tl.int64) * stride_xc
    w_base = w_ptr + oc.to(tl.int64) * stride_wo

    # -- the seed's scalar loops --------------------------------------------------------------------------
    if ACC_FP64:
        acc = tl.zeros([BLOCK_HW], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK_HW], dtype=tl.float32)
    x_c = x_base  # advanced by one channel per iteration: pointer arithmetic stays 64-bit
    for ic in range(0, C_IN_G):
        for kh in range(0, KH):  # runtime loops, as the seed: unrolling 45 taps spills at BLOCK_HW=256
            ih = ih0 + kh * dil_h
            valid_h = (ih >= 0) & (ih < H)
            row = x_c + tl.where(valid_h, ih, 0).to(tl.int64) * stride_xh
            for kw in range(0, KW):
                iw = iw0 + kw * dil_w
                valid = mask_hw & valid_h & (iw >= 0) & (iw < W)
                x_val = tl.load(row + tl.where(valid, iw, 0).to(tl.int64) * stride_xw, mask=valid, other=0.0)
                w_val = tl.load(w_base + ic * stride_wc + kh * stride_wh + kw * stride_ww)
                acc += x_val.to(acc.dtype) * w_val.to(acc.dtype)
        x_c += stride_xc

    # -- epilogue: bias, cast, store through the output's strides ----------------------------------------
    if HAS_BIAS:
        acc += tl.load(b_ptr + oc).to(acc.dtype)
    y_offs = (n.to(tl.int64) * stride_yn + oc.to(tl.int64) * stride_yc
              + oh.to(tl.int64) * stride_yh + ow.to(tl.int64) * stride_yw)
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=mask_hw)


def _configs(problem: ConvProblem, precision: str) -> list[KernelConfig]:
    """The seed's three configs (tables/direct.json); float64 without BLOCK_HW 256, which spills (static gate,
    sm_90, Triton 3.6)."""
    configs = configs_of(table("direct")["configs"])
    return [c for c in configs if c["BLOCK_HW"] <= 128] if problem.dtype == "float64" else configs


def _args(x, weight, bias, out, p: ConvProblem, blocks: dict) -> dict:
    """Every argument of ``direct_conv2d_kernel`` by name, for a launch (and for the static gate)."""
    return dict(
        x_ptr=x, w_ptr=weight, b_ptr=bias if bias is not None else weight, y_ptr=out,
        C_IN_G=p.c_in_per_group, H=p.h, W=p.w, C_OUT=p.c_out, C_OUT_G=p.c_out_per_group, OH=p.oh, OW=p.ow,
        **dict(zip(("stride_xn", "stride_xc", "stride_xh", "stride_xw"), x.stride())),
        **dict(zip(("stride_wo", "stride_wc", "stride_wh", "stride_ww"), weight.stride())),
        **dict(zip(("stride_yn", "stride_yc", "stride_yh", "stride_yw"), out.stride())),
        conv_stride_h=p.stride_h, conv_stride_w=p.stride_w, pad_h=p.pad_h, pad_w=p.pad_w,
        dil_h=p.dil_h, dil_w=p.dil_w, KH=p.kh, KW=p.kw, HAS_BIAS=p.has_bias, ACC_FP64=p.dtype == "float64",
        **blocks,
    )


def _launcher(p: ConvProblem, precision: str, config: KernelConfig):
    grid = (p.batch * p.c_out, cdiv(p.oh * p.ow, config["BLOCK_HW"]))

    def launch(x, weight, bias, out) -> None:  # the seed's own launch path: Triton's run() every call
        report_compiled(direct_conv2d_kernel[grid](**_args(x, weight, bias, out, p, config.kwargs),
                                                   num_warps=config.num_warps, num_stages=config.num_stages))

    return launch


def _static_variants() -> list[StaticVariant]:
    """The seed's own problem (kernel 5x9), in each dtype, for every config."""
    variants = []
    for dtype in DTYPES:
        seed = ConvProblem.make(8, 32, 64, 512, 512, (5, 9), 1, (2, 4), (2, 3), dtype=dtype)
        x, w, y = (meta_tensor(s, dtype) for s in (seed.input_shape, seed.weight_shape, seed.output_shape))
        for cfg in _configs(seed, "ieee"):
            variants.append(static_variant("direct", direct_conv2d_kernel, _args(x, w, None, y, seed, cfg.kwargs),
                                           cfg, f"direct {dtype} k5x9", tensor_core=False, mode=f"{dtype}/*"))
    return variants


DIRECT = register(ConvKernel(
    name="direct",
    supports=lambda p, precision: True,
    configs=_configs,
    make_launcher=_launcher,
    static_variants=_static_variants,
    description="the seed's scalar direct convolution (baseline; no tensor cores)",
))
