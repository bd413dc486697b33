"""Host-side cost of one fastconv.conv2d call (what a latency-bound user pays), with a cProfile breakdown."""
import cProfile
import pstats
import sys
import time

import torch
import torch.nn.functional as F

import fastconv

x = torch.randn(32, 64, 56, 56, device="cuda")
w = torch.randn(64, 64, 3, 3, device="cuda")
for _ in range(3):
    fastconv.conv2d(x, w, padding=1)
torch.cuda.synchronize()


def host_us(fn, n=300):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6


print(f"F.conv2d        host {host_us(lambda: F.conv2d(x, w, padding=1)):8.1f} us/call")
print(f"fastconv.conv2d host {host_us(lambda: fastconv.conv2d(x, w, padding=1)):8.1f} us/call")
pr = cProfile.Profile()
pr.enable()
for _ in range(300):
    fastconv.conv2d(x, w, padding=1)
pr.disable()
torch.cuda.synchronize()
pstats.Stats(pr, stream=sys.stdout).sort_stats("tottime").print_stats(22)
