"""Every launch config of every fastconv kernel computes the right answer on its own (forced), not just the
one the tuner picks: on a GPU the tuner may pick any of them for some problem.  (fastconv's kernels only:
skipped for other implementations under test.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.kernels import REGISTRY
from fastconv.precision import resolve_precision
from fastconv.testing import Watch, assert_conv_close, poisoned_allocations
from fastconv.testing.strategies import budget_for, examples, impl_cases
from fastconv.tuning.autotuner import forced_config

from .harness import DEVICE, call, context, reference

pytestmark = pytest.mark.property


@settings(max_examples=examples("configs"))
@given(data=st.data())
def test_every_config_matches_reference(conv_impl, data):
    kernel_name = conv_impl.name.partition(":")[2]
    if not conv_impl.name.startswith("fastconv:") or kernel_name not in REGISTRY:
        pytest.skip(f"{conv_impl.name}: the config sweep covers fastconv's kernels")
    kernel = REGISTRY[kernel_name]
    lim = budget_for(conv_impl.budget).limits
    case, precision = data.draw(
        impl_cases(conv_impl, limits={"max_batch": min(lim.max_batch, 2), "max_spatial": min(lim.max_spatial, 8)}),
        label="case, precision")
    x, w, b = case.make_inputs(DEVICE)
    ref = reference(case, x, w, b)
    configs = kernel.configs(case.problem, resolve_precision(case.geometry.dtype, precision, DEVICE))
    assert configs, f"{kernel_name} has no config for {case.short()}"
    for cfg in configs:
        with forced_config(kernel_name, cfg), poisoned_allocations(), Watch() as watch:
            y = call(watch, conv_impl, case, precision, x, w, b, what=f"config {cfg.name()}")
        ctx = context(conv_impl, case, precision)
        ctx["problem"] += f" config={cfg.name()}"
        assert_conv_close(y, x, w, b, **case.conv_kwargs(), precision=precision, reference=ref, **ctx)
