"""Count the Triton binaries a network's first forward compiles, without a GPU.

    python scripts/count_variants.py                          # ResNet-18/50, MobileNetV2 at batch 8, NCHW + NHWC
    python scripts/count_variants.py --choice all             # what timing every candidate would compile
    python scripts/count_variants.py --networks resnet50 --batch 1,8,64 --json out.json
    python scripts/count_variants.py --property-profile gpu --examples 40   # what a property run compiles

Each conv layer of the network (:func:`fastconv.bench.archs.network_problems`, torchvision's layers) gets
the kernel ``auto`` selects and the config the untimed choice takes on an H200 (``--choice heuristic``:
architecture sm_90, 132 SMs, its shared memory; ``first``: the first candidate; ``all``: every candidate,
as the tuner of a first call used to).  The layer's launcher then runs on ``meta`` tensors with every
Triton launch replaced by a recorder of :func:`fastconv.kernels.specialize.jit_key`: Triton's own
specialisation of the arguments (ints equal to 1 become constants, multiples of 16 carry a divisibility
hint, unless the kernel says ``do_not_specialize``), the constexprs and the launch options.  Distinct keys
are distinct compilations, the NHWC / TF32-rounding pre-pass included.  CPU only, a few seconds.

``--property-profile PROFILE`` counts instead what the property suite's draws compile: per fastconv
implementation, ``--examples`` problems drawn by :func:`fastconv.testing.strategies.impl_cases` under that
Hypothesis profile's budget (the GPU's budget for ``gpu``, on this CPU), each launched with the untimed choice,
and which kernel arguments make the binaries differ (Triton's specialisation of an int: equal to 1, a multiple
of 16, or neither).  Layouts are launched as contiguous NCHW / channels_last, so strided views' extra
specialisations are not counted: a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from contextlib import contextmanager
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


@contextmanager
def _recording(keys: dict):
    """Inside: every fastconv launch records its binary's key (``{key: None}``, in first-seen order) instead
    of running; shared memory limits are an H200's."""
    def record(site, tensors, make_args):
        keys.setdefault((jit_key(site.fn, make_args(), **site.options), site.fn), None)

    saved = launch.FastLaunch.__call__, igemm._device_shared_limit
    launch.FastLaunch.__call__ = record
    igemm._device_shared_limit = lambda: TARGETS[H200[0]].max_shared_bytes
    try:
        yield
    finally:
        launch.FastLaunch.__call__, igemm._device_shared_limit = saved


def _launch_on_meta(kernel, p, prec: Precision, configs) -> None:
    x = _meta(p.input_shape, p.channels_last, DTYPES[p.dtype].torch)
    w = _meta(p.weight_shape, p.channels_last, DTYPES[p.dtype].torch)
    b = _meta((p.c_out,), False, DTYPES[p.dtype].torch) if p.has_bias else None
    out = _meta(p.output_shape, p.channels_last, DTYPES[p.dtype].torch)
    for cfg in configs:
        kernel.launcher(p, prec, cfg)(x, w, b, out)


def _untimed_choice(kernel, p, prec: Precision, configs):
    return heuristic_pick(kernel.name, p, prec, "nhwc" if p.channels_last else "nchw", configs, *H200)


def count(network: str, batch: int, layout: str, precision: str, choice: str) -> dict:
    """Compilations of one forward: ``{"convs", "shapes", "binaries", "by_kernel"}``."""
    keys: dict = {}
    problems = network_problems(network, batch, channels_last=layout == "nhwc")
    with _recording(keys):
        for _, p in problems:
            prec = Precision(precision)
            kernel = select_kernel(p, prec)
            configs = kernel.configs(p, prec)
            if choice == "all":
                chosen = configs
            elif choice == "first":
                chosen = configs[:1]
            else:
                chosen = [_untimed_choice(kernel, p, prec, configs)]
            _launch_on_meta(kernel, p, prec, chosen)
    by_kernel = Counter(key[0] for key, _ in keys)
    return {"network": network, "batch": batch, "layout": layout, "precision": precision, "choice": choice,
            "convs": len(problems), "shapes": len({p.key() for _, p in problems}), "binaries": len(keys),
            "by_kernel": dict(sorted(by_kernel.items()))}


def _draw(strategy, n: int) -> list:
    """``n`` examples of ``strategy``, drawn as a test would (no database, no shrinking)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    drawn = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data):
        drawn.append(data.draw(strategy))

    draw()
    return drawn


def count_property_draws(profile: str, examples: int) -> list[dict]:
    """Per fastconv implementation: binaries that ``examples`` draws of the property strategies under
    ``profile``'s budget compile, and the kernel arguments whose specialisation differs between them."""
    from fastconv.kernels import get_kernel
    from fastconv.precision import resolve_precision
    from fastconv.testing.impl import fastconv_impls
    from fastconv.testing.strategies import PROFILE_BUDGETS, impl_cases

    table = PROFILE_BUDGETS[profile]
    rows = []
    for impl in fastconv_impls():
        drawn = _draw(impl_cases(impl, budget=table.get(impl.budget or "default", table["default"])), examples)
        keys: dict = {}
        launched, errors = 0, Counter()
        backend = impl.name.split(":", 1)[1]
        fixed = None if backend == "auto" else get_kernel(backend)
        with _recording(keys):
            for case, precision in drawn:
                p = case.problem
                prec = resolve_precision(p.dtype, precision, "cuda")
                kernel = fixed or select_kernel(p, prec)
                try:
                    configs = kernel.configs(p, prec)
                    _launch_on_meta(kernel, p, prec, [_untimed_choice(kernel, p, prec, configs)])
                    launched += 1
                except Exception as exc:  # a launcher that needs a GPU driver (direct's autotuner)
                    errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
        varying: Counter = Counter()
        by_fn: dict = {}
        for (key, fn) in keys:
            by_fn.setdefault(key[0], (fn, []))[1].append(key[1])
        for name, (fn, specs) in by_fn.items():
            for i, param in enumerate(fn.params):
                values = {spec[i] for spec in specs if len(spec) > i}
                if len(values) > 1:
                    varying[f"{name.replace('_conv2d_kernel', '')}.{param.name}"] = len(values)
        rows.append({"impl": impl.name, "drawn": len(drawn), "launched": launched, "binaries": len(keys),
                     "by_kernel": {k: len(v[1]) for k, v in sorted(by_fn.items())},
                     "varying": dict(varying.most_common()), "not_launched": dict(errors)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes")
    ap.add_argument("--layouts", default="nchw,nhwc")
    ap.add_argument("--precision", default="tf32", help="float32 precision (the GPU default is tf32)")
    ap.add_argument("--choice", default="heuristic", choices=("heuristic", "first", "all"))
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--property-profile", help="count what the property strategies' draws under this "
                                               "Hypothesis profile's budget compile (e.g. gpu)")
    ap.add_argument("--examples", type=int, default=40, help="draws per implementation (--property-profile)")
    args = ap.parse_args(argv)
    if args.property_profile:
        rows = count_property_draws(args.property_profile, args.examples)
        print(f"{'implementation':20s} {'drawn':>5s} {'launched':>8s} {'binaries':>8s} {'per draw':>8s}  "
              "arguments whose specialisation differs (distinct values)")
        for r in rows:
            per = r["binaries"] / r["launched"] if r["launched"] else float("nan")
            top = ", ".join(f"{k} {v}" for k, v in list(r["varying"].items())[:6])
            print(f"{r['impl']:20s} {r['drawn']:5d} {r['launched']:8d} {r['binaries']:8d} {per:8.2f}  {top}")
            for why, n in r["not_launched"].items():
                print(f"{'':20s} not launched ({n}): {why}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
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
