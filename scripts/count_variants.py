"""Count the Triton binaries a network's first forward compiles, without a GPU.

    python scripts/count_variants.py                          # ResNet-18/50, MobileNetV2 at batch 8, NCHW + NHWC
    python scripts/count_variants.py --choice all             # what timing every candidate would compile
    python scripts/count_variants.py --networks resnet50 --batch 1,8,64 --json out.json

Each conv layer of the network (:func:`fastconv.bench.archs.network_problems`, torchvision's layers) gets
the kernel ``auto`` selects and the config the untimed choice takes on an H200 (``--choice heuristic``:
architecture sm_90, 132 SMs, its shared memory; ``first``: the first candidate; ``all``: every candidate,
as the tuner of a first call used to).  The layer's launcher then runs on ``meta`` tensors with every
Triton launch replaced by a recorder of :func:`fastconv.kernels.specialize.jit_key`: Triton's own
specialisation of the arguments (ints equal to 1 become constants, multiples of 16 carry a divisibility
hint, unless the kernel says ``do_not_specialize``), the constexprs and the launch options.  Distinct keys
are distinct compilations, the NHWC / TF32-rounding pre-pass included.  CPU only, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # real JITFunctions (their specialisation), nothing launched
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fastconv.bench.archs import network_problems  # noqa: E402
from fastconv.dispatch import select_kernel  # noqa: E402
from fastconv.gpus import TARGETS  # noqa: E402
from fastconv.kernels import igemm, launch  # noqa: E402
from fastconv.kernels.specialize import jit_key  # noqa: E402
from fastconv.precision import Precision  # noqa: E402
from fastconv.tuning.autotuner import heuristic_pick  # noqa: E402
from fastconv.vocab import DTYPES  # noqa: E402

H200 = ("sm_90", 132)


def _meta(shape, channels_last: bool, dtype=torch.float32) -> torch.Tensor:
    t = torch.empty(shape, device="meta", dtype=dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def count(network: str, batch: int, layout: str, precision: str, choice: str) -> dict:
    """Compilations of one forward: ``{"convs", "shapes", "binaries", "by_kernel"}``."""
    keys: set = set()
    by_kernel: Counter = Counter()

    def record(site, tensors, make_args):
        key = jit_key(site.fn, make_args(), **site.options)
        if key not in keys:
            keys.add(key)
            by_kernel[key[0]] += 1

    problems = network_problems(network, batch, channels_last=layout == "nhwc")
    saved = launch.FastLaunch.__call__, igemm._device_shared_limit
    launch.FastLaunch.__call__ = record
    igemm._device_shared_limit = lambda: TARGETS[H200[0]].max_shared_bytes
    try:
        for _, p in problems:
            prec = Precision(precision)
            kernel = select_kernel(p, prec)
            configs = kernel.configs(p, prec)
            if choice == "all":
                chosen = configs
            elif choice == "first":
                chosen = configs[:1]
            else:
                chosen = [heuristic_pick(kernel.name, p, prec, layout, configs, *H200)]
            cl = layout == "nhwc"
            x = _meta(p.input_shape, cl, DTYPES[p.dtype].torch)
            w = _meta(p.weight_shape, cl, DTYPES[p.dtype].torch)
            b = _meta((p.c_out,), False) if p.has_bias else None
            out = _meta(p.output_shape, p.channels_last, DTYPES[p.dtype].torch)
            for cfg in chosen:
                kernel.launcher(p, prec, cfg)(x, w, b, out)
    finally:
        launch.FastLaunch.__call__, igemm._device_shared_limit = saved
    return {"network": network, "batch": batch, "layout": layout, "precision": precision, "choice": choice,
            "convs": len(problems), "shapes": len({p.key() for _, p in problems}), "binaries": len(keys),
            "by_kernel": dict(sorted(by_kernel.items()))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes")
    ap.add_argument("--layouts", default="nchw,nhwc")
    ap.add_argument("--precision", default="tf32", help="float32 precision (the GPU default is tf32)")
    ap.add_argument("--choice", default="heuristic", choices=("heuristic", "first", "all"))
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    rows = [count(n, int(b), lay, args.precision, args.choice) for n in args.networks.split(",")
            for b in args.batch.split(",") for lay in args.layouts.split(",")]
    print(f"{'network':14s} {'batch':>5s} {'layout':6s} {'convs':>5s} {'shapes':>6s} {'binaries':>8s}  by kernel")
    for r in rows:
        kinds = ", ".join(f"{k.replace('_conv2d_kernel', '')} {v}" for k, v in r["by_kernel"].items())
        print(f"{r['network']:14s} {r['batch']:5d} {r['layout']:6s} {r['convs']:5d} {r['shapes']:6d} "
              f"{r['binaries']:8d}  {kinds}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
