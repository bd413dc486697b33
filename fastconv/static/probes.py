"""Probe kernels with known resource behaviour: they prove the static gate can pass and can fail.

These are not conv kernels and are never registered; :mod:`tests.test_static` checks them with the same
machinery as the shipped kernels (they live in the package so the gate's worker processes can import them):

- ``probe_dot_kernel``, a pipelined ``tl.dot`` GEMM tile loop.  In fp16 it runs on tensor cores (HMMA on
  sm_89, HGMMA on sm_90): the positive control.  In fp32 with ``input_precision="ieee"`` Triton lowers
  the dot to FMA: a variant still flagged ``tensor_core=True`` must be rejected.  With 128x128x64 fp16 tiles
  (32 KB of operands per stage) and 5 stages, Triton allocates 4 stages (128 KB) on sm_89 and 5 (~161 KB) on
  sm_90: over the RTX 4090's 99 KB, under the H100's 227 KB.
- ``probe_spill_kernel`` keeps two ``[BLOCK]`` fp32 tensors live across a loop on one warp: at BLOCK=8192 that
  is 2 x 256 values per thread, more than the 255 registers a thread can have, so ptxas must spill.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..kernels.base import StaticVariant
from ..kernels.config import KernelConfig

__all__ = ["probe_dot_kernel", "probe_spill_kernel", "probe_variants", "PROVIDER"]

PROVIDER = "fastconv.static.probes:probe_variants"


@triton.jit
def probe_dot_kernel(
    a_ptr, b_ptr, c_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """C[M, N] = A[M, K] @ B[K, N], one BLOCK_M x BLOCK_N tile per program."""
    # -- tile of C this program computes -----------------------------------------------------------------
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn

    # -- K loop: the software pipeline keeps num_stages operand tiles in shared memory ---------------------
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    # -- epilogue -------------------------------------------------------------------------------------------
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def probe_spill_kernel(x_ptr, y_ptr, n_iter, BLOCK: tl.constexpr):
    """y[BLOCK] = a recurrence over x[BLOCK] that keeps two BLOCK-wide tensors live across a loop."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for _ in range(n_iter):
        acc = acc * x + x
        x = x * 0.5 + acc
    tl.store(y_ptr + offs, acc + x)


def _dot(dtype: str, precision: str, *, tensor_core: bool, block: tuple[int, int, int] = (64, 64, 32),
         num_warps: int = 4, num_stages: int = 3, label: str) -> StaticVariant:
    bm, bn, bk = block
    cfg = KernelConfig.of(num_warps=num_warps, num_stages=num_stages, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    # As the JIT specialises row-major operands: unit strides are constants, sizes and row strides are
    # multiples of 16 (the JIT marks them), so loads vectorise and the K loop pipelines through cp.async/TMA.
    sig = {"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "c_ptr": f"*{dtype}",
           **{k: "i32:16" for k in ("M", "N", "K", "stride_am", "stride_bk", "stride_cm")}}
    unit = {"stride_ak": 1, "stride_bn": 1, "stride_cn": 1}
    return StaticVariant(kernel="probe", fn=probe_dot_kernel, signature=sig, config=cfg, label=label,
                         constexprs={**unit, **cfg.kwargs, "INPUT_PRECISION": precision},
                         tensor_core=tensor_core)


def probe_variants() -> list[StaticVariant]:
    """The probes, labelled by what the gate must say about them."""
    spill_cfg = KernelConfig.of(num_warps=1, num_stages=1, BLOCK=8192)
    return [
        _dot("fp16", "ieee", tensor_core=True, label="probe dot fp16 (tensor cores: passes)"),
        _dot("fp32", "ieee", tensor_core=True, label="probe dot fp32 ieee (FMA fallback: rejected)"),
        _dot("fp16", "ieee", tensor_core=True, block=(128, 128, 64), num_warps=8, num_stages=5,
             label="probe dot fp16 128x128x64 s5 (>128 KB smem: rejected on sm_89 only)"),
        StaticVariant(kernel="probe", fn=probe_spill_kernel,
                      signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "n_iter": "i32"},
                      constexprs=spill_cfg.kwargs, config=spill_cfg,
                      label="probe spill 2x8192 fp32 on 1 warp (spills: rejected)", tensor_core=False),
    ]
