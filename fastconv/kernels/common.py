"""Pieces shared by the tensor-core kernels: TF32 rounding, operand preparation, the packed-weight cache.

TF32 rounding.  A tensor core fed float32 in TF32 mode ignores the low 13 mantissa bits of its operands: it
*truncates*.  Truncation errors all point toward zero, so they do not cancel in a long reduction; cuDNN rounds
to nearest instead.  That bias is why a plain Triton ``tl.dot(..., input_precision="tf32")`` implicit GEMM
lands at about 2.5x cuDNN's error on KernelBench #80.  We round both operands to nearest TF32 once, before the
main loop (the activation in the layout-changing pass, the weight when it is packed), so the tensor cores see
exact TF32 values and every product is exact; only the fp32 accumulation rounds.
"""

from __future__ import annotations

import weakref

import torch
import triton
import triton.language as tl

from .launch import FastLaunch, cdiv, next_pow2

__all__ = ["round_tf32", "round_tf32_torch", "NhwcPass", "packed_weight", "PACK_CACHE"]


@triton.jit
def round_tf32(x):
    """Round float32 to the nearest TF32 value (ties away from zero, as ``cvt.rna.tf32.f32``)."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x1000) & -8192  # -8192 == 0xFFFFE000: keep sign, exponent and the top 10 mantissa bits
    return bits.to(tl.float32, bitcast=True)


def round_tf32_torch(t: torch.Tensor) -> torch.Tensor:
    """The same rounding in torch (for packed weights); returns a new float32 tensor."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & -8192).view(torch.float32)


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
# ------------------------------------------------------------------------------------------------------
class _PackCache:
    """Packed weights, reused while the weight tensor is the same object with the same storage and version.

    The key is ``id(weight)``; an entry is valid only while a weak reference still points at that very
    tensor, its data pointer is unchanged (``param.data = ...`` swaps storage) and its ``_version`` is
    unchanged (every in-place update, e.g. an optimizer step, bumps it).  So a freed tensor whose address is
    reused, an in-place update and a ``.data`` swap all repack.  At most ``max_entries`` are kept.
    """

    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple] = {}
        self.hits = 0
        self.misses = 0

    def get(self, weight: torch.Tensor, kind: str, make) -> torch.Tensor:
        key = (id(weight), kind)
        stamp = (weight.data_ptr(), weight._version, tuple(weight.shape), tuple(weight.stride()), weight.dtype)
        entry = self._entries.get(key)
        if entry is not None:
            ref, old_stamp, packed = entry
            if ref() is weight and old_stamp == stamp:
                self.hits += 1
                return packed
        self.misses += 1
        packed = make(weight)
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (weakref.ref(weight), stamp, packed)
        return packed

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0


PACK_CACHE = _PackCache()


def packed_weight(weight: torch.Tensor, round_to_tf32: bool) -> torch.Tensor:
    """``weight`` ``(C_out, C_in/g, KH, KW)`` packed K-contiguous as ``(C_out, KH*KW*C_in/g)``; cached."""

    def make(w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = w.detach().permute(0, 2, 3, 1).reshape(w.shape[0], -1).contiguous()
            return round_tf32_torch(p) if round_to_tf32 else p

    return PACK_CACHE.get(weight, "khwc_tf32" if round_to_tf32 else "khwc", make)
