"""Root pytest configuration: interpreter switch, Hypothesis profiles, global-state hygiene, plugins.

- Where no CUDA GPU is present, ``TRITON_INTERPRET=1`` is set *here*, before any test module imports
  fastconv's kernels (Triton reads it when a kernel is defined).
- Hypothesis profiles ``dev`` (default), ``ci`` (picked automatically when ``$CI`` is set: derandomized, no
  deadline, sized for a 2-core CPU machine), ``gpu`` and ``nightly``; choose with ``--hypothesis-profile``.
  Each profile also sets the problem-size budget the strategies draw under (see ``properties/strategies``).
- Every test runs under a fixture that restores torch's global flags (TF32, cuDNN, determinism) and RNG state.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") is None:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

pytest_plugins = ["fastconv.testing.pytest_plugin", "fastconv.bench.pytest_plugin"]

_common = dict(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
settings.register_profile("dev", max_examples=12, **_common)
settings.register_profile("ci", max_examples=10, derandomize=True, print_blob=True, **_common)
settings.register_profile("gpu", max_examples=150, print_blob=True, **_common)
settings.register_profile("nightly", max_examples=3000, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink], **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _restore_torch_global_state():
    """Tests may flip TF32/cuDNN/determinism flags or reseed: put everything back afterwards."""
    flags = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
    )
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.deterministic) = flags[:4]
        torch.use_deterministic_algorithms(flags[4])
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
