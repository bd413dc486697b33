"""Run one problem once with a forced config (for ncu): python scripts/ncu_one.py kb80 tf32 CONFIGNAME"""
import sys

import torch

import fastconv
from fastconv.dispatch import select_kernel
from fastconv.tuning.autotuner import forced_config
from fastconv.validation import normalize_conv2d_args

sys.path.insert(0, "scripts")
from kernel_lab import MODES, problem  # noqa: E402

pname, mode, cfgname = sys.argv[1], sys.argv[2], sys.argv[3]
p = problem(pname)
dtype, precision, cl, _ = MODES[mode]
x = torch.randn(p.input_shape, device="cuda", dtype=dtype)
w = torch.randn(p.weight_shape, device="cuda", dtype=dtype)
if cl:
    x = x.to(memory_format=torch.channels_last)
args = ((p.stride_h, p.stride_w), p.torch_padding, (p.dil_h, p.dil_w), p.groups)
_, _, prob = normalize_conv2d_args(x, w, None, *args)
prec = fastconv.resolve_precision(prob.dtype, precision)
kernel = select_kernel(prob, prec)
cfg = next(c for c in kernel.configs(prob, prec) if c.name() == cfgname)
with forced_config(kernel.name, cfg):
    for _ in range(2):
        fastconv.conv2d(x, w, None, *args, precision=precision)
torch.cuda.synchronize()
