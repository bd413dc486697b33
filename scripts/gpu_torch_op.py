"""fastconv inside real PyTorch programs, on a GPU: a converted torchvision ResNet-18 (batch 8, float32, PyTorch's
TF32 defaults) through every way PyTorch runs a model, plus the host cost of an eager call.

    PYTHONPATH=. python scripts/gpu_torch_op.py [--network resnet18] [--batch 8] [--all] [--no-host]

Rows (each a check; the table says which failed, the exit status is 1 if any did):

- ``cudnn eager``: the original model, for comparison only (its error against fp64 is shown, not judged);
- ``fastconv eager``: the converted model; every conv layer is checked against the fp64 reference of the input
  it got (the tolerance model), and the sum of the layers' norm-wise bounds is the network's bound ``B``
  (tests/test_convert.py's ``run_checked``: first-order propagation through ReLU / eval batch norm /
  residual adds);
- ``compile``: ``torch.compile(model, fullgraph=True)`` (Inductor): one graph, no graph break
  (``torch._dynamo.explain``), output within ``B`` of the fp64 run;
- ``export``: ``torch.export.export``: one ``fastconv::conv2d`` node per conv, output within ``B``;
- ``cuda graph``: the eager converted model captured in a ``torch.cuda.CUDAGraph``; a replay on a new input
  equals the eager output on it, bit for bit;
- ``reduce-overhead``: ``torch.compile(model, mode="reduce-overhead", fullgraph=True)``, third call (a replay),
  within ``B``;
- ``autocast bf16``: under ``torch.autocast("cuda", torch.bfloat16)`` the output dtype is the original's, and
  every conv ran in bfloat16 within the bf16 tolerance model of the operands autocast gave it;
- ``compile+autocast`` (``--all``): the same compiled, one graph;
- ``host us/call``: per-call host time of ``fastconv.conv2d`` (the registered-op wrapper) against
  ``fastconv.functional.conv2d`` (the eager path as it was before the op existed), ``scripts/host_overhead.py``'s
  protocol (GPU kept busy, 200 calls x 5 batches, median), 3 interleaved rounds, best of each; fails above +10%.

``FASTCONV_AUTOTUNE=0`` is set unless the environment says otherwise: configs are the defaults, so the first
forward compiles one kernel per conv shape instead of timing candidates (this checks integration, not speed).
Expected run time on an H200: about 2-3 minutes, most of it Inductor and Triton compiling (cold caches).
Without a GPU it runs the tiny stand-in in Triton's interpreter with the ``aot_eager`` backend and skips the
CUDA-only rows.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import traceback
from pathlib import Path

import torch

os.environ.setdefault("FASTCONV_AUTOTUNE", "0")  # read at call time; set before anything runs
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before fastconv defines its kernels (on first use)

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

from test_convert import fp64_output, rel_error, run_checked  # noqa: E402  (the network checks of the tests)

import fastconv  # noqa: E402
from fastconv import functional  # noqa: E402
from fastconv.bench.networks import _calibrate_batchnorm, select  # noqa: E402
from fastconv.testing import graph_replay  # noqa: E402

OP = torch.ops.fastconv.conv2d.default
HOST_LIMIT = 1.10  # the registration may add at most 10% to an eager call's host time (the budget)


class Check:
    """One row: a named step, its numbers, ok / failed / skipped."""

    def __init__(self, name: str):
        self.name, self.ok, self.skipped, self.note = name, None, False, ""
        self.graphs = self.dtype = self.err = self.bound = self.vs_cudnn = None
        self.seconds = 0.0

    def judge(self, ok: bool, note: str = "") -> None:
        self.ok = bool(ok) if self.ok is None else self.ok and bool(ok)
        if note:
            self.note = f"{self.note}; {note}" if self.note else note

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("info" if self.ok is None else ("ok" if self.ok else "FAIL"))


def run_step(rows: list[Check], name: str, fn, *, skip: str | None = None) -> Check:
    row = Check(name)
    rows.append(row)
    if skip:
        row.skipped, row.note = True, skip
        return row
    t0 = time.perf_counter()
    try:
        fn(row)
    except Exception as exc:  # a step that raises fails; the others still run
        row.ok, row.note = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        traceback.print_exc()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    row.seconds = time.perf_counter() - t0
    return row


def graph_count(fn, *args) -> tuple[int, int]:
    torch._dynamo.reset()
    ex = torch._dynamo.explain(fn)(*args)
    return ex.graph_count, ex.graph_break_count


def host_overhead(row: Check) -> None:
    import host_overhead as ho  # scripts/host_overhead.py: its problems and its timing protocol

    from fastconv.bench.problems import get

    worst = 0.0
    parts = []
    for name in ho.PROBLEMS:
        p = get(name).stages[0]
        x = torch.randn(p.input_shape, device="cuda")
        w = torch.randn(p.weight_shape, device="cuda")
        args = ((p.stride_h, p.stride_w), (p.pad_h, p.pad_w), (p.dil_h, p.dil_w), p.groups)
        wrapper = lambda x=x, w=w, args=args: fastconv.conv2d(x, w, None, *args)
        eager = lambda x=x, w=w, args=args: functional.conv2d(x, w, None, *args)
        assert torch.equal(wrapper(), eager())  # the same plan
        t_wrapper, t_eager = [], []
        for _ in range(3):
            t_wrapper.append(ho.host_us(wrapper))
            t_eager.append(ho.host_us(eager))
        ratio = min(t_wrapper) / min(t_eager)
        worst = max(worst, ratio)
        parts.append(f"{name} {min(t_wrapper):.1f}/{min(t_eager):.1f}")
    row.judge(worst <= HOST_LIMIT, f"worst ratio {worst:.3f} (limit {HOST_LIMIT}); op-wrapper/eager us: "
              + ", ".join(parts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", default="resnet18", help="a fastconv.bench.networks name (default resnet18)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--all", action="store_true", help="also compile the autocast forward (one more compile)")
    ap.add_argument("--no-host", action="store_true", help="skip the host-overhead comparison")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    backend = "inductor" if cuda else "aot_eager"
    no_gpu = None if cuda else "needs a GPU"
    net = select(args.network, gpu=cuda)[0]
    batch = args.batch if cuda else 1
    shape = net.input_shape(batch)
    print(f"{torch.cuda.get_device_name() if cuda else 'CPU (Triton interpreter)'}; torch {torch.__version__}; "
          f"{net.name} batch {batch}; backend {backend}; FASTCONV_AUTOTUNE={os.environ['FASTCONV_AUTOTUNE']}",
          flush=True)

    original = net.build(seed=0).to(device)
    _calibrate_batchnorm(original, shape, device, seed=0)
    model = fastconv.convert(copy.deepcopy(original))
    n_convs = sum(isinstance(m, fastconv.Conv2d) for m in model.modules())
    x = torch.randn(shape, generator=torch.Generator(device=device).manual_seed(1), device=device)
    ref = fp64_output(original, x)
    with torch.no_grad():
        y_cudnn = original(x)
    state = {}
    rows: list[Check] = []

    def record(row: Check, y: torch.Tensor, *, judged: bool = True) -> None:
        row.dtype, row.err = str(y.dtype).replace("torch.", ""), rel_error(y, ref)
        row.vs_cudnn = rel_error(y, y_cudnn)
        if judged:
            row.bound = state["bound"]
            row.judge(row.err <= row.bound, "" if row.err <= row.bound else "error above the network bound")

    def cudnn_eager(row):
        record(row, y_cudnn, judged=False)

    def fastconv_eager(row):
        with torch.no_grad():
            y, state["bound"] = run_checked(model, x)  # raises if a layer is outside the tolerance model
        state["y"] = y
        record(row, y)
        row.note = f"{n_convs} conv layers each within the tolerance model"

    def compiled(row):
        with torch.no_grad():
            graphs, breaks = graph_count(model, x)
            row.graphs = f"{graphs}/{breaks}"
            row.judge((graphs, breaks) == (1, 0), "" if breaks == 0 else f"{breaks} graph breaks")
            torch._dynamo.reset()
            y = torch.compile(model, fullgraph=True, backend=backend)(x)
        record(row, y)

    def exported(row):
        ep = torch.export.export(model, (x,))
        nodes = sum(n.op == "call_function" and n.target == OP for n in ep.graph.nodes)
        row.judge(nodes == n_convs, f"{nodes} fastconv::conv2d nodes for {n_convs} convs")
        with torch.no_grad():
            record(row, ep.module()(x))

    def cuda_graph(row):
        with torch.no_grad():
            x2 = torch.randn(shape, generator=torch.Generator(device=device).manual_seed(2), device=device)
            static_x = x.clone()
            _, same = graph_replay(model, static_x, x2)
            static_y, _ = graph_replay(model, static_x, x)  # recorded: the graph's output on the model's input
            record(row, static_y)
        row.judge(same, "replay on a new input == eager, bit for bit" if same else "replay differs from eager")

    def reduce_overhead(row):
        torch._dynamo.reset()
        fn = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        with torch.no_grad():
            for _ in range(3):  # warm-up, record, replay
                y = fn(x).clone()
        record(row, y)

    def autocast(row):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            y, _ = run_checked(model, x)  # every conv in bf16, within the bf16 model of its operands
            y_orig = original(x)
        row.dtype, row.vs_cudnn = str(y.dtype).replace("torch.", ""), rel_error(y, y_orig)
        row.judge(y.dtype == y_orig.dtype and y.shape == y_orig.shape,
                  f"original's dtype {y_orig.dtype}; every conv ran in bf16 within the tolerance model")

    def autocast_compiled(row):
        def f(x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return model(x)

        with torch.no_grad():
            graphs, breaks = graph_count(f, x)
            row.graphs = f"{graphs}/{breaks}"
            torch._dynamo.reset()
            y = torch.compile(f, fullgraph=True, backend=backend)(x)
        row.dtype = str(y.dtype).replace("torch.", "")
        row.judge((graphs, breaks) == (1, 0) and y.dtype == torch.bfloat16)

    run_step(rows, "cudnn eager", cudnn_eager)
    run_step(rows, "fastconv eager", fastconv_eager)
    if "bound" not in state:
        state["bound"] = float("nan")  # every judged row fails: the eager layers did not check out
    run_step(rows, "compile", compiled)
    run_step(rows, "export", exported)
    run_step(rows, "cuda graph", cuda_graph, skip=no_gpu)
    run_step(rows, "reduce-overhead", reduce_overhead, skip=no_gpu)
    run_step(rows, "autocast bf16", autocast)
    run_step(rows, "compile+autocast", autocast_compiled, skip=None if args.all else "--all")
    run_step(rows, "host us/call", host_overhead, skip=no_gpu or ("--no-host" if args.no_host else None))

    f = lambda v, spec: "-" if v is None else format(v, spec)
    print(f"\n{'step':18s} {'status':6s} {'graphs/breaks':>13s} {'dtype':>8s} {'err vs fp64':>11s} {'bound':>9s} "
          f"{'vs cuDNN':>9s} {'s':>6s}  note")
    for r in rows:
        print(f"{r.name:18s} {r.status:6s} {r.graphs or '-':>13s} {r.dtype or '-':>8s} {f(r.err, '.2e'):>11s} "
              f"{f(r.bound, '.2e'):>9s} {f(r.vs_cudnn, '.2e'):>9s} {r.seconds:6.1f}  {r.note}")
    failed = [r.name for r in rows if r.ok is False]
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'PASS: all checks'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
