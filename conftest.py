"""Root pytest configuration: interpreter switch, Hypothesis profiles, global-state hygiene, plugins.

- Where no CUDA GPU is present, ``TRITON_INTERPRET=1`` is set *here*, before any test module imports
  fastconv's kernels (Triton reads it when a kernel is defined).
- Hypothesis profiles ``dev`` (default), ``ci`` (picked automatically when ``$CI`` is set: derandomized, no
  deadline, sized for a 2-core CPU machine), ``gpu`` and ``nightly``; choose with ``--hypothesis-profile``.
  Each profile also sets the problem-size budget the strategies draw under (see ``fastconv/testing/strategies.py``).
- Every test runs under a fixture that restores torch's global flags (TF32, cuDNN, determinism) and RNG state.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") is None:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

pytest_plugins = ["fastconv.testing.pytest_conv", "fastconv.bench.pytest_bench"]

_common = dict(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
settings.register_profile("dev", max_examples=12, **_common)
settings.register_profile("ci", max_examples=10, derandomize=True, print_blob=True, **_common)
settings.register_profile("gpu", max_examples=150, print_blob=True, **_common)
# the mutation harness (fastconv mutate): ci's examples, but a failure only needs to be found, not shrunk
settings.register_profile("mutate", max_examples=10, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_common)
settings.register_profile("nightly", max_examples=3000, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink], **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def _tf32_flags() -> tuple:
    """torch's TF32 settings, under both flag APIs (reading the legacy ``allow_tf32`` raises once a test mixed
    them, so the newer tree is read where it exists)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return ("tree", conv.fp32_precision, torch.backends.cudnn.fp32_precision, torch.backends.fp32_precision,
                torch.backends.cuda.matmul.fp32_precision)
    return ("legacy", torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def _set_tf32_flags(flags: tuple) -> None:
    if flags[0] == "tree":
        (torch.backends.fp32_precision, torch.backends.cudnn.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
         torch.backends.cuda.matmul.fp32_precision) = flags[3], flags[2], flags[1], flags[4]
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags[1:]


@pytest.fixture(autouse=True)
def _restore_torch_global_state():
    """Tests may flip TF32/cuDNN/determinism flags or reseed: put everything back afterwards."""
    tf32 = _tf32_flags()
    flags = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
    )
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        _set_tf32_flags(tf32)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[:2]
        torch.use_deterministic_algorithms(flags[2])
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
