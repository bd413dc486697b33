"""Every launch config of every kernel computes the right answer on its own (forced), not just the one the
tuner picks: on a GPU the tuner may pick any of them for some problem."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.kernels import REGISTRY
from fastconv.precision import resolve_precision
from fastconv.testing import assert_conv_close, poisoned_allocations
from fastconv.tuning.autotuner import forced_config

from .harness import DEVICE, KERNELS, context, conv, reference
from .strategies import backend_cases, budget_for, examples

pytestmark = pytest.mark.property


@pytest.mark.parametrize("kernel_name", KERNELS)
@settings(max_examples=examples("configs"))
@given(data=st.data())
def test_every_config_matches_reference(kernel_name, data):
    kernel = REGISTRY[kernel_name]
    lim = budget_for(kernel_name).limits
    case, precision = data.draw(
        backend_cases(kernel_name, limits={"max_batch": min(lim.max_batch, 2), "max_spatial": min(lim.max_spatial, 8)}),
        label="case, precision")
    x, w, b = case.make_inputs(DEVICE)
    ref = reference(case, x, w, b)
    configs = kernel.configs(case.problem, resolve_precision(case.geometry.dtype, precision, DEVICE))
    assert configs, f"{kernel_name} has no config for {case.short()}"
    for cfg in configs:
        with forced_config(kernel_name, cfg), poisoned_allocations():
            y = conv(kernel_name, case, precision, x, w, b)
        ctx = context(kernel_name, case, precision)
        ctx["problem"] += f" config={cfg.name()}"
        assert_conv_close(y, x, w, b, **case.conv_kwargs(), precision=precision, reference=ref, **ctx)
