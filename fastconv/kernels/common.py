"""Pieces shared by the tensor-core kernels: TF32 rounding, operand preparation (NHWC pass, weight packing).

TF32 rounding.  A tensor core fed float32 in TF32 mode ignores the low 13 mantissa bits of its operands: it
*truncates*.  Truncation errors all point toward zero, so they do not cancel in a long reduction; cuDNN rounds
to nearest instead.  That bias is why a plain Triton ``tl.dot(..., input_precision="tf32")`` implicit GEMM
lands at about 2.5x cuDNN's error on KernelBench #80.  We round both operands to nearest TF32 once, before the
main loop (the activation in the layout-changing pass, the weight when it is packed), so the tensor cores see
exact TF32 values and every product is exact; only the fp32 accumulation rounds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..precision import round_tf32_torch
from .launch import FastLaunch, cdiv, next_pow2

__all__ = ["round_tf32", "round_tf32_torch", "NhwcPass", "WeightPack", "packed_weight", "pack_weight_kernel"]


@triton.jit
def round_tf32(x):
    """Round float32 to the nearest TF32 value (ties away from zero, as ``cvt.rna.tf32.f32``)."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x1000) & -8192  # -8192 == 0xFFFFE000: keep sign, exponent and the top 10 mantissa bits
    return bits.to(tl.float32, bitcast=True)


# ------------------------------------------------------------------------------------------------------
# Activation preparation: any layout -> NHWC (channels contiguous), optionally rounded to TF32, in one pass.
# ------------------------------------------------------------------------------------------------------
@triton.jit
def nhwc_prepare_kernel(
    x_ptr, y_ptr,
    C, HW, W,
    stride_xn, stride_xc, stride_xh, stride_xw,
    FLAT_HW: tl.constexpr,  # input's (h, w) flatten to one index p with stride stride_xw (e.g. NCHW)
    ROUND_TF32: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # -- map program ids: axis 0 = pixel block, axis 1 = channel block, axis 2 = sample ------------------
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (offs_p < HW)[:, None] & (offs_c < C)[None, :]

    # -- gather from the input's layout -----------------------------------------------------------------
    if FLAT_HW:
        pix_off = offs_p.to(tl.int64) * stride_xw
    else:
        pix_off = (offs_p // W).to(tl.int64) * stride_xh + (offs_p % W).to(tl.int64) * stride_xw
    src = x_ptr + n * stride_xn + pix_off[:, None] + offs_c.to(tl.int64)[None, :] * stride_xc
    v = tl.load(src, mask=mask)
    if ROUND_TF32:
        v = round_tf32(v)

    # -- scatter to NHWC (channels contiguous) --------------------------------------------------------------
    dst = y_ptr + n * HW * C + offs_p.to(tl.int64)[:, None] * C + offs_c[None, :]
    tl.store(dst, v, mask=mask)


class NhwcPass:
    """``x`` ``(N, C, H, W)`` -> a channels_last tensor, rounded to TF32 if asked: one launch site per plan
    (a plan fixes ``x``'s shape and strides, so the grid and every integer argument).

    No copy when ``x`` already is channels_last-contiguous and no rounding is needed.
    """

    __slots__ = ("round_to_tf32", "_site", "_blocks")

    def __init__(self, round_to_tf32: bool):
        self.round_to_tf32 = round_to_tf32
        self._site: FastLaunch | None = None
        self._blocks: tuple[int, int] = (0, 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.round_to_tf32 and x.is_contiguous(memory_format=torch.channels_last):
            return x
        n, c, h, w = x.shape
        y = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        if y.numel() == 0:
            return y
        if self._site is None:
            block_c = min(64, next_pow2(c))
            block_p = 64 if block_c >= 32 else 128
            self._blocks = (block_p, block_c)
            grid = (cdiv(h * w, block_p), cdiv(c, block_c), n)
            self._site = FastLaunch(nhwc_prepare_kernel, grid, ("x_ptr", "y_ptr"), num_warps=4)
        self._site((x, y), lambda: self._args(x, y))
        return y

    def _args(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        _, c, h, w = x.shape
        sn, sc, sh, sw = x.stride()
        block_p, block_c = self._blocks
        return dict(x_ptr=x, y_ptr=y, C=c, HW=h * w, W=w, stride_xn=sn, stride_xc=sc, stride_xh=sh,
                    stride_xw=sw, FLAT_HW=sh == w * sw, ROUND_TF32=self.round_to_tf32, BLOCK_P=block_p,
                    BLOCK_C=block_c)


# ------------------------------------------------------------------------------------------------------
# Packed weights: (C_out, C_in/g, KH, KW) -> (C_out, KH*KW*C_in/g) with K ordered (kh, kw, ci), ci fastest.
# Packed on every call: a cache keyed on the weight tensor (its storage and version counter) served stale
# weights after an update through ``weight.data`` (which bumps no version counter: EMA updates, gradcheck's
# perturbations) and could leave a CUDA graph pointing at an evicted buffer.  A packing pass reads and writes
# the weight once (small next to the activation) in one launch; a channels_last weight that needs no TF32
# rounding already is in the packed layout and costs nothing.
# ------------------------------------------------------------------------------------------------------
@triton.jit
def pack_weight_kernel(
    w_ptr, out_ptr,
    C_IN_G, KW, K,
    stride_wo, stride_wc, stride_wh, stride_ww,
    ROUND_TF32: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # -- map program ids: axis 0 = block of K, axis 1 = output channel --------------------------------------
    pid_k = tl.program_id(0)
    o = tl.program_id(1).to(tl.int64)
    k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = k < K
    # -- k -> (kh, kw, ci), ci fastest; gather through the weight's strides ----------------------------------
    ci = k % C_IN_G
    tap = k // C_IN_G
    src = w_ptr + o * stride_wo + ci.to(tl.int64) * stride_wc + (tap // KW).to(tl.int64) * stride_wh \
        + (tap % KW).to(tl.int64) * stride_ww
    v = tl.load(src, mask=mask)
    if ROUND_TF32:
        v = round_tf32(v)
    tl.store(out_ptr + o * K + k, v, mask=mask)


class WeightPack:
    """``weight`` ``(C_out, C_in/g, KH, KW)`` -> ``(C_out, KH*KW*C_in/g)``, K-contiguous, rounded to TF32 if
    asked: one launch site per plan (a plan fixes the weight's shape and strides).  Fresh every call."""

    __slots__ = ("round_to_tf32", "_site")

    def __init__(self, round_to_tf32: bool):
        self.round_to_tf32 = round_to_tf32
        self._site: FastLaunch | None = None

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        c_out = weight.shape[0]
        if not self.round_to_tf32 and weight.is_contiguous(memory_format=torch.channels_last):
            return weight.permute(0, 2, 3, 1).reshape(c_out, -1)  # a view: already (kh, kw, ci)-contiguous
        k = weight[0].numel()
        out = torch.empty((c_out, k), dtype=weight.dtype, device=weight.device)
        if out.numel() == 0:
            return out
        if self._site is None:
            self._site = FastLaunch(pack_weight_kernel, (cdiv(k, _PACK_BLOCK), c_out), ("w_ptr", "out_ptr"),
                                    num_warps=4)
        self._site((weight, out), lambda: self._args(weight, out))
        return out

    def _args(self, weight: torch.Tensor, out: torch.Tensor) -> dict:
        _, c_in_g, _, kw = weight.shape
        so, sc, sh, sw = weight.stride()
        return dict(w_ptr=weight, out_ptr=out, C_IN_G=c_in_g, KW=kw, K=out.shape[1], stride_wo=so, stride_wc=sc,
                    stride_wh=sh, stride_ww=sw, ROUND_TF32=self.round_to_tf32, BLOCK_K=_PACK_BLOCK)


_PACK_BLOCK = 256


def packed_weight(weight: torch.Tensor, round_to_tf32: bool) -> torch.Tensor:
    """``weight`` packed as ``(C_out, KH*KW*C_in/g)`` (one call through a throw-away :class:`WeightPack`)."""
    return WeightPack(round_to_tf32)(weight)
