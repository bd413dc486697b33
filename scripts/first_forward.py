"""How long the first forward of a converted network takes: cold caches, and with Triton's disk cache warm (GPU).

    python scripts/first_forward.py                                  # ResNet-18, ResNet-50, MobileNetV2, batch 8
    python scripts/first_forward.py --models resnet18 --batch 8 --layout nhwc

Per model, two fresh processes (each a subprocess of this script, so nothing is shared in memory):

- *cold*: new, empty ``TRITON_CACHE_DIR`` and ``FASTCONV_CACHE_DIR``: every binary is compiled;
- *warm Triton cache*: the same ``TRITON_CACHE_DIR`` again (binaries load from disk), a new empty
  ``FASTCONV_CACHE_DIR``: what a second run of a program sees.

In each process: the model (torchvision's, or :mod:`fastconv.bench.archs`' copy of its conv layers when
torchvision is missing) is built on the GPU in ``eval()``; the original runs once on cuDNN (``cudnn first``:
its own first call, which also initialises CUDA and cuDNN); Triton and fastconv's kernels are imported
(``import``, reported apart); the model is ``fastconv.convert``-ed and its first forward is timed
(``first``: synchronised, host seconds, every config chosen untimed and every binary compiled or loaded),
then a second (``second``).  Binaries are counted with Triton's ``jit_post_compile_hook`` (compiled or
loaded from the disk cache) and as new ``.cubin`` files in the cache (compiled).  Nothing is tuned unless
``FASTCONV_AUTOTUNE=1`` is in the environment.

Prints a table; writes ``$OUT/first_forward.json`` (default ``out/first_forward``).  About 1-2 minutes for
the three models on an H200 (process start-up and model building included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cubins(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.cubin"))


def child(args) -> dict:
    """One process: build, cuDNN first call, import kernels, convert, first and second forward."""
    import torch

    t_proc = time.perf_counter()
    import fastconv
    from fastconv.bench.archs import build
    from fastconv.tuning.autotuner import tuning_report

    device = torch.device("cuda")
    model, source = build(args.model)
    model = model.to(device).eval()
    fmt = torch.channels_last if args.layout == "nhwc" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=fmt)

    def timed(fn):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    cudnn_first = timed(lambda: model(x))
    t0 = time.perf_counter()
    from fastconv.kernels import registry  # imports Triton and defines the kernels (a fixed one-time cost)

    registry()
    import triton

    import_s = time.perf_counter() - t0
    loaded: list[str] = []

    def hook(**kw):
        loaded.append(getattr(kw.get("fn"), "name", "?"))
        return False

    triton.knobs.runtime.jit_post_compile_hook = hook
    fastconv.convert(model)
    cache = Path(os.environ["TRITON_CACHE_DIR"])
    before = _cubins(cache)
    first = timed(lambda: model(x))
    compiled = _cubins(cache) - before
    n_loaded = len(loaded)
    second = timed(lambda: model(x))
    convs = sum(1 for m in model.modules() if isinstance(m, fastconv.Conv2d))
    return {"model": args.model, "source": source, "batch": args.batch, "layout": args.layout, "convs": convs,
            "cudnn_first_s": cudnn_first, "import_s": import_s, "first_s": first, "second_s": second,
            "binaries_loaded_or_compiled": n_loaded, "binaries_compiled": compiled,
            "by_kernel": {k: loaded.count(k) for k in sorted(set(loaded))},
            "tuned_shapes": len(tuning_report()), "process_s": time.perf_counter() - t_proc,
            "gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "torch": torch.__version__}


def _run_child(model: str, batch: int, layout: str, triton_cache: Path, timeout: float) -> dict:
    env = dict(os.environ, TRITON_CACHE_DIR=str(triton_cache), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
               FASTCONV_CACHE_DIR=tempfile.mkdtemp(prefix="fastconv-cache-"))
    cmd = [sys.executable, __file__, "--child", "--models", model, "--batch", str(batch), "--layout", layout]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"model": model, "error": (p.stderr or p.stdout).strip().splitlines()[-5:]}
    out = json.loads(lines[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layout", default="nchw", choices=("nchw", "nhwc"))
    ap.add_argument("--timeout", type=float, default=240, help="seconds per process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.model = args.models
        print(json.dumps(child(args)), flush=True)
        return 0
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        cache = Path(tempfile.mkdtemp(prefix="triton-cache-"))
        for condition in ("cold", "warm-triton"):
            r = _run_child(model, args.batch, args.layout, cache, args.timeout)
            r["condition"] = condition
            rows.append(r)
            print(json.dumps(r), flush=True)
    out = Path(os.environ.get("OUT") or "out/first_forward")
    out.mkdir(parents=True, exist_ok=True)
    (out / "first_forward.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'model':14s} {'batch':>5s} {'layout':6s} {'condition':12s} {'convs':>5s} {'first s':>8s} "
          f"{'second s':>8s} {'compiled':>8s} {'binaries':>8s} {'import s':>8s} {'cudnn 1st':>9s}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:14s} {r['condition']}: ERROR {r['error']}")
            continue
        print(f"{r['model']:14s} {r['batch']:5d} {r['layout']:6s} {r['condition']:12s} {r['convs']:5d} "
              f"{r['first_s']:8.2f} {r['second_s']:8.3f} {r['binaries_compiled']:8d} "
              f"{r['binaries_loaded_or_compiled']:8d} {r['import_s']:8.2f} {r['cudnn_first_s']:9.2f}")
    print("targets (H200): ResNet-18 batch 8 first forward <= 10 s cold, <= 2 s with Triton's cache warm")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
