"""Host cost of one call (what a latency-bound caller pays), fastconv against F.conv2d, on a GPU.

    PYTHONPATH=. python scripts/host_overhead.py [--profile]

For each problem: the host time to enqueue one call while the GPU is kept busy (a long ``torch.cuda._sleep``
ahead of the calls, so no call waits for the device and nothing but the host is measured), median of 5
batches of 200 calls; fastconv with its launch fast path (default) and without (``FASTCONV_FAST_LAUNCH=0``,
Triton's ``JITFunction.run`` on every launch).  ``--profile`` adds a cProfile of the fast path.
"""

import cProfile
import os
import pstats
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import fastconv
from fastconv import functional
from fastconv.bench.problems import get

PROBLEMS = ["lat_b1_c64_14_3x3", "resnet_3x3_s1", "resnet_3x3_s2", "resnet_1x1_expand", "kb83"]
CALLS, BATCHES = 200, 5


def host_us(fn) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(BATCHES):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU spin: the queue never drains while we enqueue
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        per_call.append((time.perf_counter() - t0) / CALLS * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per_call)


def main() -> int:
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; {CALLS} calls x {BATCHES}, median")
    rows = []
    for name in PROBLEMS:
        p = get(name).stages[0]
        x = torch.randn(p.input_shape, device="cuda")
        w = torch.randn(p.weight_shape, device="cuda")
        args = ((p.stride_h, p.stride_w), (p.pad_h, p.pad_w), (p.dil_h, p.dil_w), p.groups)
        cudnn = host_us(lambda x=x, w=w, args=args: F.conv2d(x, w, None, *args))
        times = {}
        for fast in ("1", "0"):
            os.environ["FASTCONV_FAST_LAUNCH"] = fast
            functional._PLANS.clear()  # launchers read the switch when a plan builds them
            times[fast] = host_us(lambda x=x, w=w, args=args: fastconv.conv2d(x, w, None, *args))
        os.environ.pop("FASTCONV_FAST_LAUNCH")
        functional._PLANS.clear()
        y = fastconv.conv2d(x, w, None, *args)
        kernel = fastconv.plan(x, w, None, *args).kernel
        rows.append((name, p.short(), kernel, cudnn, times["1"], times["0"]))
        torch.testing.assert_close(y, F.conv2d(x, w, None, *args), rtol=2e-2, atol=2e-2)
    if "--profile" in sys.argv:
        p = get(PROBLEMS[0]).stages[0]
        x, w = torch.randn(p.input_shape, device="cuda"), torch.randn(p.weight_shape, device="cuda")
        fastconv.conv2d(x, w, None, 1, 1)
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(CALLS):
            fastconv.conv2d(x, w, None, 1, 1)
        pr.disable()
        torch.cuda.synchronize()
        pstats.Stats(pr, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    print(f"\n{'problem':20s} {'kernel':10s} {'cuDNN us':>9s} {'fastconv us':>12s} {'no fast path':>13s}  shape")
    for name, shape, kernel, c, f1, f0 in rows:
        print(f"{name:20s} {kernel:10s} {c:9.1f} {f1:12.1f} {f0:13.1f}  {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
