"""Other libraries' convolutions as implementations under test (thin glue to ``F.conv2d``'s signature; the
arithmetic is theirs).  :func:`make` builds one by name; :func:`fastconv.testing.load_impl` calls it for the
specs ``inductor``, ``inductor-triton`` and ``jax``.

- ``inductor``: ``torch.compile`` of ``F.conv2d`` on the input's device (``dynamic=False``, one compiled
  graph per call signature).  On the CPU Inductor lays the tensors out with its generated C++ and calls the
  oneDNN convolution; on a GPU it is what ``torch.compile`` gives by default.
- ``inductor-triton``: ``mode="max-autotune"`` with the GEMM/conv autotuning backends restricted to
  ``TRITON``, so convolutions run Inductor's Triton conv template (CUDA only).  The template has no dilation
  and no float64: the capabilities say so.  Every compiled signature's generated code is read to count
  which ran the template (reported in the test summary).
- ``jax``: ``jax.lax.conv_general_dilated`` on the same device, tensors exchanged through DLPack (JAX runs on
  its own streams: ``side_streams=True``; the adapter blocks until the result is ready).
"""

from __future__ import annotations

import os
import threading

import torch
import torch.nn.functional as F

from ..problem import same_padding
from .impl import Capabilities, ConvImpl

__all__ = ["make", "inductor_impl", "jax_impl", "ADAPTERS"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ----------------------------------------------------------------------------------------------------------
# Inductor
# ----------------------------------------------------------------------------------------------------------
def _configure_inductor(triton_only: bool) -> None:
    """Inductor's global settings for the adapter: enough recompiles that every drawn signature is compiled
    (dynamo's default limit of 8 per code object would silently fall back to eager), and for
    ``triton_only`` the autotuning backends restricted to Triton templates."""
    import torch._dynamo.config as dynamo_config  # on use: importing Inductor is slow and touches globals
    import torch._inductor.config as inductor_config

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, 1 << 20)
    dynamo_config.automatic_dynamic_shapes = False
    if triton_only:
        inductor_config.max_autotune = True
        inductor_config.max_autotune_gemm_backends = "TRITON"
        if hasattr(inductor_config, "max_autotune_conv_backends"):
            inductor_config.max_autotune_conv_backends = "TRITON"


class _Inductor:
    """One ``torch.compile`` per call signature (shapes, strides, dtype, device, conv arguments)."""

    def __init__(self, triton_only: bool):
        self.triton_only = triton_only
        self.compiled: dict[tuple, object] = {}
        self.template = self.other = 0
        self.lock = threading.Lock()
        _configure_inductor(triton_only)

    def _compile(self, stride, padding, dilation, groups):
        def conv(x, w, b):
            return F.conv2d(x, w, b, stride, padding, dilation, groups)

        kwargs = dict(dynamic=False, fullgraph=True)
        if self.triton_only:
            kwargs["mode"] = "max-autotune-no-cudagraphs"
        return torch.compile(conv, **kwargs)

    def __call__(self, x, w, b, stride, padding, dilation, groups):
        from torch._inductor.utils import run_and_get_code  # on use: see _configure_inductor

        key = (tuple(x.shape), x.stride(), x.dtype, x.device, tuple(w.shape), w.stride(), b is not None,
               str(stride), str(padding), str(dilation), groups)
        with self.lock:
            fn = self.compiled.get(key)
            if fn is None:
                fn = self.compiled[key] = self._compile(stride, padding, dilation, groups)
                y, code = run_and_get_code(fn, x, w, b)
                text = "\n".join(code)
                if "triton_tem" in text or "template" in text and "convolution2d" in text:
                    self.template += 1
                else:
                    self.other += 1
                return y
        return fn(x, w, b)

    def report(self) -> str:
        n = self.template + self.other
        return (f"compiled {n} call signatures: {self.template} ran Inductor's Triton template, {self.other} "
                "other code (extern convolution or a plain Triton/C++ kernel)")


def inductor_impl(triton_only: bool = False) -> ConvImpl:
    runner = _Inductor(triton_only)
    if triton_only:
        caps = Capabilities(dtypes=("float32", "float16", "bfloat16"), dilation=False,
                            padding_modes=("explicit", "valid"))
        name, what = "inductor-triton", ("torch.compile(mode='max-autotune') with the conv/GEMM backends "
                                         "restricted to TRITON (Inductor's Triton conv template)")
    else:
        caps = Capabilities()
        name, what = "inductor", "torch.compile of F.conv2d (Inductor's default lowering on the device)"
    return ConvImpl(runner, name, caps, description=what, report=runner.report)


# ----------------------------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------------------------
def jax_impl() -> ConvImpl:
    # JAX would otherwise take 75% of the GPU's memory when it starts, leaving torch short
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax  # on use: JAX is optional
    import jax.dlpack

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64

    def to_jax(t: torch.Tensor):
        t = t.detach().contiguous()
        try:
            return jax.dlpack.from_dlpack(t)
        except TypeError:  # older JAX takes a DLPack capsule only
            return jax.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t))

    def fn(x, w, b, stride, padding, dilation, groups):
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
        kh, kw = w.shape[2], w.shape[3]
        if padding == "valid":
            pads = [(0, 0), (0, 0)]
        elif padding == "same":
            pads = [same_padding(kh, dh), same_padding(kw, dw)]
        else:
            ph, pw = _pair(padding)
            pads = [(ph, ph), (pw, pw)]
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)  # JAX reads the tensors on its own stream
        # half inputs: a float32 result, the bias added in float32 and one rounding at the end, as F.conv2d
        # (rounding the convolution to float16 before a separate bias add rounds twice)
        half = x.dtype in (torch.float16, torch.bfloat16)
        y = jax.lax.conv_general_dilated(to_jax(x), to_jax(w), window_strides=(sh, sw), padding=pads,
                                         rhs_dilation=(dh, dw), dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         feature_group_count=groups,
                                         preferred_element_type=jax.numpy.float32 if half else None)
        if b is not None:
            y = y + to_jax(b).astype(y.dtype)[None, :, None, None]
        if half:
            y = y.astype(to_jax(x[:0]).dtype)
        y.block_until_ready()
        out = torch.from_dlpack(y)
        return out.squeeze(0) if unbatched else out

    caps = Capabilities(output_format="any", raises_like_torch=False, side_streams=True)
    return ConvImpl(fn, "jax", caps, description=f"jax.lax.conv_general_dilated (jax {jax.__version__}) via DLPack")


ADAPTERS = {"inductor": lambda: inductor_impl(False), "inductor-triton": lambda: inductor_impl(True),
            "jax": jax_impl}


def make(name: str) -> ConvImpl:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; choose one of {sorted(ADAPTERS)}") from None
