"""Does the autotuner pick the same config in separate processes?  (A noisy timer makes it pick at random.)

    for i in 1 2 3; do FASTCONV_CACHE_DIR=$(mktemp -d) PYTHONPATH=. python scripts/tuner_repeatability.py; done

Prints, per problem, the config the tuner chose with a cold cache and the tuning time.
"""
import sys

import torch

import fastconv
from fastconv.bench.problems import get
from fastconv.tuning.autotuner import tuning_report

names = sys.argv[1:] or ["lat_b1_c64_14_3x3", "resnet_3x3_s1", "resnet_3x3_l4"]
for name in names:
    p = get(name).stages[0]
    x = torch.randn(p.input_shape, device="cuda")
    w = torch.randn(p.weight_shape, device="cuda")
    plan = fastconv.plan(x, w, None, (p.stride_h, p.stride_w), (p.pad_h, p.pad_w), (p.dil_h, p.dil_w), p.groups)
    secs = [r["seconds"] for r in tuning_report() if r["problem"] == p.short()]
    print(f"{name:20s} {plan.kernel:9s} {plan.config.name():50s} {plan.config_source:7s} "
          f"tuned in {secs[-1] if secs else 0:.1f} s")
