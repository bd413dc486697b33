"""Every launch config of every fastconv kernel computes the right answer on its own (forced), not just the
one the tuner picks: on a GPU the tuner may pick any of them for some problem.  (fastconv's kernels only:
skipped for other implementations under test.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.kernels import REGISTRY
from fastconv.precision import FLOAT32_PRECISIONS, resolve_precision
from fastconv.problem import ConvProblem
from fastconv.testing import ConvCase, Watch, assert_conv_close, poisoned_allocations
from fastconv.testing.strategies import budget_for, examples, impl_cases
from fastconv.tuning.autotuner import forced_config

from .harness import DEVICE, call, context, reference

pytestmark = pytest.mark.property


def _kernel_of(conv_impl):
    kernel_name = conv_impl.name.partition(":")[2]
    if not conv_impl.name.startswith("fastconv:") or kernel_name not in REGISTRY:
        pytest.skip(f"{conv_impl.name}: the config sweep covers fastconv's kernels")
    return kernel_name


@settings(max_examples=examples("configs"))
@given(data=st.data())
def test_every_config_matches_reference(conv_impl, data):
    kernel_name = _kernel_of(conv_impl)
    lim = budget_for(conv_impl.budget).limits
    case, precision = data.draw(
        impl_cases(conv_impl, limits={"max_batch": min(lim.max_batch, 2), "max_spatial": min(lim.max_spatial, 8)}),
        label="case, precision")
    check_every_config(conv_impl, kernel_name, case, precision)


# Every config in each float32 arithmetic on fixed problems: one per K-loop order of the implicit GEMM (a
# config that rounds the activation in the loop runs only with "tf32"), a depthwise and a 1x1 one.
FIXED = [ConvCase(ConvProblem.make(1, 16, 4, 5, 6, 3, 1, 1, has_bias=True), seed=21),
         ConvCase(ConvProblem.make(1, 3, 4, 5, 6, (3, 2), 1, (1, 0), (1, 2)), seed=22, layout="nhwc"),
         ConvCase(ConvProblem.make(1, 4, 4, 5, 5, 3, 1, 1, groups=4), seed=23),
         ConvCase(ConvProblem.make(1, 8, 4, 4, 5, 1, has_bias=True), seed=24)]


@pytest.mark.parametrize("precision", FLOAT32_PRECISIONS)
def test_every_config_on_fixed_problems_in_each_precision(conv_impl, precision):
    kernel_name = _kernel_of(conv_impl)
    ran = 0
    for case in FIXED:
        if conv_impl.unsupported_case(case, precision) is None:
            check_every_config(conv_impl, kernel_name, case, precision)
            ran += 1
    assert ran, f"{conv_impl.name} supports none of the fixed problems"


def check_every_config(conv_impl, kernel_name: str, case: ConvCase, precision: str | None) -> None:
    kernel = REGISTRY[kernel_name]
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
