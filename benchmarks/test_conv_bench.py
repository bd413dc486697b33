"""Benchmarks of fastconv against cuDNN and the seed's ``direct`` kernel, one group per problem.

On a GPU every case is timed with CUDA events (see :mod:`fastconv.bench.pytest_bench`) and checked against
the fp64 reference.  Without a GPU the same tests run the tiny ``SMOKE`` problems once in Triton's
interpreter as a correctness smoke test, NOT timed.

    pytest -m benchmark benchmarks/                       # full catalogue (GPU) / smoke (CPU)
    pytest -m benchmark benchmarks/ --bench-quick         # the quick subset
    pytest -m benchmark benchmarks/ --bench-problems kb80,resnet50 --bench-dtype bfloat16 --bench-layout nhwc
"""

import pytest

from fastconv.bench.problems import IMPLS

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d(conv_bench, bench_case, impl):
    conv_bench(bench_case, impl)
