"""Root pytest configuration: interpreter switch, Hypothesis profiles, global-state hygiene, plugins.

- Where no CUDA GPU is present, ``TRITON_INTERPRET=1`` is set *here*, before any test module imports
  fastconv's kernels (Triton reads it when a kernel is defined).
- Hypothesis profiles ``dev`` (default), ``ci`` (picked automatically when ``$CI`` is set: derandomized, no
  deadline, sized for a 2-core CPU machine), ``gpu`` and ``nightly``; choose with ``--hypothesis-profile``.
  Each profile also sets the problem-size budget the strategies draw under (see ``fastconv/testing/strategies.py``).
  ``$HYPOTHESIS_MAX_EXAMPLES`` caps every profile's examples per test (the budgets stay the profile's).
- Every test runs under a fixture that restores torch's global flags (TF32, cuDNN, determinism) and RNG state.

Parallel runs (``pytest -n auto``, pytest-xdist): every worker is a fresh process that imports this file, so
all of the above holds per worker (session fixtures too: each worker builds its own).  On a GPU machine the
controller has pinned each worker to one GPU through ``CUDA_VISIBLE_DEVICES`` in the worker's environment
before the worker started (:mod:`fastconv.testing.pytest_conv`), so the ``torch.cuda.is_available()`` below,
torch's first device query, already sees only that GPU.  What workers share is safe under concurrency: the
tuning cache (read-modify-write under a file lock), the static gate's cache (one file per key, written by
rename, first writer wins, one compiler per key), and Hypothesis' example database in ``.hypothesis/``
(``DirectoryBasedExampleDatabase``: one file per example, named by its hash, written to a temporary file and
renamed into place, missing or vanished files ignored on read; xdist runs each test in one worker only, and
the ``ci`` profile is derandomized, which turns the database off).
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
if os.environ.get("HYPOTHESIS_MAX_EXAMPLES"):  # a cap on every profile (a quick run of the gpu profile, say)
    for _name in ("dev", "ci", "gpu", "nightly"):
        settings.register_profile(_name, settings.get_profile(_name),
                                  max_examples=int(os.environ["HYPOTHESIS_MAX_EXAMPLES"]))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def _legacy_cudnn_tf32() -> bool | None:
    """The legacy ``torch.backends.cudnn.allow_tf32``, None where reading it raises (the two APIs were mixed)."""
    try:
        return torch.backends.cudnn.allow_tf32
    except RuntimeError:
        return None


def _tf32_flags() -> tuple:
    """torch's TF32 settings, under both flag APIs (reading the legacy ``allow_tf32`` raises once a test mixed
    them, so the newer tree is read where it exists).  The tree's values alone do not restore torch's state:
    a legacy ``allow_tf32 = ...`` also sets a legacy flag (and cuDNN's rnn level), and a mismatch left behind
    makes torch's own reads of the legacy flag raise (torch.export reads it), so both are kept."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return ("tree", conv.fp32_precision, torch.backends.cudnn.fp32_precision, torch.backends.fp32_precision,
                torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision,
                _legacy_cudnn_tf32())
    return ("legacy", torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def _set_tf32_flags(flags: tuple) -> None:
    if flags[0] == "tree":
        if flags[6] is not None:
            torch.backends.cudnn.allow_tf32 = flags[6]  # first: it writes the conv and rnn levels below
        levels = (torch.backends, torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cuda.matmul,
                  torch.backends.cudnn.rnn)  # the global level first: the others override it
        for level, value in zip(levels, (flags[3], flags[2], flags[1], flags[4], flags[5])):
            level.fp32_precision = value
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
