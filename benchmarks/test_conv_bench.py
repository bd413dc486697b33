"""Benchmarks of fastconv against cuDNN and the seed's ``direct`` kernel, one group per problem.

On a GPU every case is timed with CUDA events (see :mod:`fastconv.bench.pytest_bench`) and checked against
the fp64 reference.  Without a GPU the same tests run the tiny ``SMOKE`` problems once in Triton's
interpreter as a correctness smoke test, NOT timed.

    pytest -m benchmark benchmarks/                       # full catalogue (GPU) / smoke (CPU)
    pytest -m benchmark benchmarks/ --bench-quick         # the quick subset
    pytest -m benchmark benchmarks/ --bench-problems kb80,resnet50 --bench-dtype bfloat16 --bench-layout nhwc
    pytest -m benchmark benchmarks/ --conv-impl path/to/solution.py     # your implementation against cuDNN

``bench_impl`` is parametrised by :mod:`fastconv.bench.pytest_bench`: fastconv, cuDNN and the seed's kernel, or
the ``--conv-impl`` implementations and cuDNN.
"""

import pytest

pytestmark = pytest.mark.benchmark


def test_conv2d(conv_bench, bench_case, bench_impl):
    conv_bench(bench_case, bench_impl)
