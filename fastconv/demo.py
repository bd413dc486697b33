"""The main job: the seed's problem through fastconv, cuDNN and the seed's own kernel, checked and timed.

``python -m fastconv demo``

- On a CUDA GPU: KernelBench level-1 #80 at full size (batch 8, 32 -> 64 channels, 512x512, kernel (5, 9),
  padding (2, 4), dilation (2, 3)) with KernelBench's inputs (``torch.rand``; ``ModelNew`` initialised as
  the reference ``nn.Conv2d``).  Each implementation is checked against the fp64 reference with the
  tolerance model of :mod:`fastconv.testing` and timed with CUDA events (warm-up, L2 flushed, median).
- Without a GPU: the same problem shrunk (batch 1, 8 -> 16 channels, 12x20) in Triton's interpreter, checked
  the same way.  Interpreter times are not performance and are not printed as such.

Exit status 0 when every implementation passes its check.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from .bench.problems import get
from .validation import interpreter_enabled

SEED_PROBLEM = get("kb80").stages[0]  # from the benchmark catalogue
SMALL_PROBLEM = SEED_PROBLEM.replace(batch=1, c_in=8, c_out=16, h=12, w=20)


def configure(parser: argparse.ArgumentParser) -> None:
    from .dispatch import FLOAT32_PRECISIONS

    parser.add_argument("--small", action="store_true", help="the shrunk problem even on a GPU")
    parser.add_argument("--precision", default=None, choices=list(FLOAT32_PRECISIONS),
                        help="fastconv's float32 precision (default: torch's allow_tf32 setting)")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed's direct kernel (115 ms on a GPU)")


def run(args: argparse.Namespace) -> int:
    from . import ModelNew, conv2d
    from .testing import check_conv, error_model, reference_conv2d

    gpu = torch.cuda.is_available() and not interpreter_enabled()
    p = SMALL_PROBLEM if (args.small or not gpu) else SEED_PROBLEM
    device = "cuda" if gpu else "cpu"
    where = "CUDA: " + torch.cuda.get_device_name() if gpu else "CPU, Triton interpreter (TRITON_INTERPRET=1)"
    print(f"fastconv demo on {where}\nproblem: {p.short()}  ({p.flops / 1e9:.2f} GFLOP)")

    # KernelBench's protocol: seed, build the reference model and ModelNew, inputs from torch.rand.
    torch.manual_seed(42)
    ref_model = torch.nn.Conv2d(p.c_in, p.c_out, (p.kh, p.kw), stride=1, padding=(p.pad_h, p.pad_w),
                                dilation=(p.dil_h, p.dil_w), bias=False).to(device)
    torch.manual_seed(42)
    model = ModelNew(p.c_in, p.c_out, (p.kh, p.kw), 1, (p.pad_h, p.pad_w), (p.dil_h, p.dil_w)).to(device)
    assert torch.equal(model.conv2d.weight, ref_model.weight), "ModelNew must initialise as nn.Conv2d"
    x = torch.rand(p.input_shape, device=device)
    w = model.conv2d.weight.detach()
    conv_args = ((p.stride_h, p.stride_w), (p.pad_h, p.pad_w), (p.dil_h, p.dil_w), p.groups)

    ref = reference_conv2d(x[:1], w, None, *conv_args)  # one sample: enough to judge, cheap in fp64
    fp32_mode = "tf32" if gpu and torch.backends.cudnn.allow_tf32 else "ieee"  # torch's (and fastconv's) default
    impls = [
        ("cuDNN (F.conv2d)" if gpu else "torch (F.conv2d)", lambda: F.conv2d(x, w, None, *conv_args),
         fp32_mode if gpu else "ieee"),
        ("fastconv", lambda: conv2d(x, w, None, *conv_args, precision=args.precision),
         args.precision or fp32_mode),
    ]
    if not args.no_seed:
        impls.append(("seed (direct)", lambda: conv2d(x, w, None, *conv_args, backend="direct"), "ieee"))

    rows, ok = [], True
    timings = {}
    if gpu:  # interleaved rounds, CUDA events, L2 flushed, first call apart: the bench's own timing
        from .bench.timing import CudaEvents, measure

        with torch.no_grad():
            timings = measure({name: fn for name, fn, _ in impls}, CudaEvents(x.device), rounds=20)
    for name, fn, precision in impls:
        t0 = time.perf_counter()
        with torch.no_grad():
            y = fn()
        first = timings[name].first_call_s if gpu else time.perf_counter() - t0
        chk = check_conv(y[:1], ref, error_model(x.dtype, precision))
        ok &= chk.passed
        rows.append((name, precision, timings[name].median_ms if gpu else None, first, chk))

    base_ms = rows[0][2]
    print(f"\n{'implementation':18s} {'precision':9s} {'time ms':>9s} {'vs cuDNN':>8s} {'TFLOP/s':>8s} "
          f"{'first call s':>12s} {'rel err':>9s} {'max abs err':>11s}  check")
    for name, precision, ms, first, chk in rows:
        t = f"{ms:9.3f}" if ms is not None else f"{'(interp)':>9s}"
        speed = f"{base_ms / ms:7.2f}x" if ms else f"{'-':>8s}"
        tf = f"{p.flops / ms / 1e9:8.1f}" if ms else f"{'-':>8s}"
        print(f"{name:18s} {precision:9s} {t} {speed} {tf} {first:12.2f} {chk.rel_norm:9.2e} "
              f"{chk.max_abs:11.2e}  {'PASS' if chk.passed else 'FAIL'}")
    if not gpu:
        print("\n(interpreter run: correctness only; times on a CPU say nothing about the kernels' speed)")
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1
