"""Kernel lab: check and time every config of the chosen kernel on a set of problems, against cuDNN.

A development tool for one GPU session: it builds, checks (relative error norm against an fp64 reference
on one sample) and times (``triton.testing.do_bench``, median, L2 flushed) each config, with cuDNN in the same
run, prints a short table last and writes every number to ``$OUT/lab.json`` (or ``--out``).  The project's
benchmark command (``python -m fastconv bench``) is the source of reported figures; this is for choosing.

    PYTHONPATH=. python scripts/kernel_lab.py --problems kb80 resnet_3x3_s1 --modes tf32 bf16_nhwc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial

import torch
import torch.nn.functional as F
from triton.testing import do_bench

import fastconv
from fastconv.bench.problems import get, select
from fastconv.dispatch import select_kernel
from fastconv.problem import ConvProblem
from fastconv.tuning.autotuner import forced_config
from fastconv.validation import normalize_conv2d_args


def problem(name: str) -> ConvProblem:
    """A problem of the benchmark catalogue (fastconv.bench.problems), by name: kb80, resnet_3x3_s1, ..."""
    stages = get(name).stages
    if len(stages) != 1:
        raise SystemExit(f"{name} has {len(stages)} stages; the lab times single convolutions")
    return stages[0]


# mode -> (dtype, precision, channels_last input, cudnn allow_tf32)
MODES = {
    "tf32": (torch.float32, "tf32", False, True),
    "tf32_nhwc": (torch.float32, "tf32", True, True),
    "ieee": (torch.float32, "ieee", False, False),
    "tf32x3": (torch.float32, "tf32x3", False, False),
    "bf16_nhwc": (torch.bfloat16, None, True, True),
    "fp16_nhwc": (torch.float16, None, True, True),
}


def rel_err(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvProblem) -> float:
    """Relative error norm of sample 0 against an fp64 reference of the same (rounded) inputs."""
    ref = F.conv2d(x[:1].double(), w.double(), None, (p.stride_h, p.stride_w), p.torch_padding,
                   (p.dil_h, p.dil_w), p.groups)
    return ((y[:1].double() - ref).norm() / ref.norm()).item()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", nargs="+", default=[p.name for p in select("quick") if len(p.stages) == 1])
    ap.add_argument("--modes", nargs="+", default=["tf32"])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--max-configs", type=int, default=99)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    rows, table = [], []
    for pname in args.problems:
        p = problem(pname)
        for mode in args.modes:
            dtype, precision, cl, allow_tf32 = MODES[mode]
            torch.manual_seed(0)
            x = torch.randn(p.input_shape, device="cuda", dtype=dtype)
            w = torch.randn(p.weight_shape, device="cuda", dtype=dtype) / (p.gemm_k ** 0.5)
            if cl:
                x = x.to(memory_format=torch.channels_last)
            conv_args = ((p.stride_h, p.stride_w), p.torch_padding, (p.dil_h, p.dil_w), p.groups)
            torch.backends.cudnn.allow_tf32 = allow_tf32
            ms_cudnn = do_bench(partial(F.conv2d, x, w, None, *conv_args), warmup=25, rep=100, return_mode="median")
            err_cudnn = rel_err(F.conv2d(x, w, None, *conv_args), x, w, p)
            torch.backends.cudnn.allow_tf32 = True
            _, _, prob = normalize_conv2d_args(x, w, None, *conv_args)
            prec = fastconv.resolve_precision(prob.dtype, precision)
            kernel = select_kernel(prob, prec, args.backend)
            best = None
            for cfg in kernel.configs(prob, prec)[: args.max_configs]:
                try:
                    with forced_config(kernel.name, cfg):
                        t0 = time.perf_counter()
                        y = fastconv.conv2d(x, w, None, *conv_args, backend=kernel.name, precision=precision)
                        torch.cuda.synchronize()
                        first = time.perf_counter() - t0
                        err = rel_err(y, x, w, p)
                        run = partial(fastconv.conv2d, x, w, None, *conv_args, backend=kernel.name,
                                      precision=precision)
                        ms = do_bench(run, warmup=25, rep=100, return_mode="median")
                except Exception as exc:  # noqa: BLE001 - report and go on with the next config
                    print(f"{pname} {mode} {cfg}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                    continue
                tflops = p.flops / ms / 1e9
                row = dict(problem=pname, mode=mode, kernel=kernel.name, config=cfg.name(), ms=ms,
                           cudnn_ms=ms_cudnn, speedup=ms_cudnn / ms, tflops=tflops, err=err, cudnn_err=err_cudnn,
                           first_call_s=first)
                rows.append(row)
                print(f"{pname:11s} {mode:9s} {cfg.name():48s} {ms:8.3f} ms  x{ms_cudnn / ms:5.2f}  "
                      f"{tflops:6.1f} TF/s  err {err:.2e} (cudnn {err_cudnn:.2e})", flush=True)
                if best is None or ms < best["ms"]:
                    best = row
            if best:
                table.append(best)
            x = w = None  # free the tensors before the next problem
            torch.cuda.empty_cache()
    with open(os.path.join(args.out, "lab.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\nBEST per problem/mode")
    print(f"{'problem':11s} {'mode':9s} {'kernel':9s} {'cuDNN ms':>9s} {'ours ms':>8s} {'speedup':>7s} "
          f"{'TF/s':>6s} {'err':>8s} {'cudnn err':>9s}  config")
    for r in table:
        print(f"{r['problem']:11s} {r['mode']:9s} {r['kernel']:9s} {r['cudnn_ms']:9.3f} {r['ms']:8.3f} "
              f"{r['speedup']:7.2f} {r['tflops']:6.1f} {r['err']:8.1e} {r['cudnn_err']:9.1e}  {r['config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
