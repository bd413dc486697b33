"""``python -m fastconv tune``: autotune every conv shape of a catalogue network, save the choices to a file.

    python -m fastconv tune --network resnet18 --batch 8 --save resnet18-b8.json
    python -m fastconv tune --network resnet50 --batch 32 --layout nhwc --save r50.json --jobs 16
    FASTCONV_TUNING_FILE=resnet18-b8.json python my_program.py     # on another machine: same GPU and Triton

The network is torchvision's (or :mod:`fastconv.bench.archs`' copy of its conv layers without torchvision),
converted by :func:`fastconv.convert`, in ``eval()`` mode on the GPU, and tuned by :func:`fastconv.tune` on a
random ``(batch, 3, 224, 224)`` input (one progress line per conv shape).  Exit status: 0; 2 without a GPU or
for usage errors.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .archs import ARCHS, build

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, choices=sorted(ARCHS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw")
    parser.add_argument("--save", required=True, help="JSON file for the tuned choices (fastconv.load_tuning)")
    parser.add_argument("--jobs", type=int, default=None, help="compiler threads (default min(8, CPUs))")
    parser.add_argument("--retune", action="store_true", help="time again shapes tuned before")


def run(args: argparse.Namespace) -> int:
    import fastconv

    if not torch.cuda.is_available():
        print("fastconv tune: tuning times configs on a CUDA GPU; none is available here", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("fastconv tune: --batch must be >= 1", file=sys.stderr)
        return 2
    model, source = build(args.network)
    fmt = torch.channels_last if args.layout == "nhwc" else torch.contiguous_format
    model = fastconv.convert(model.cuda().eval().to(memory_format=fmt))
    x = torch.randn(args.batch, 3, 224, 224, device="cuda").contiguous(memory_format=fmt)
    print(f"fastconv tune: {args.network} ({source}) batch {args.batch} {args.layout}", file=sys.stderr)
    fastconv.tune(model, x, save=args.save, jobs=args.jobs, retune=args.retune)
    return 0
