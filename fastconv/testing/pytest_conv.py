"""pytest plugin of :mod:`fastconv.testing` (the repository's ``conftest.py`` loads it; elsewhere use
``-p fastconv.testing.pytest_conv``).

- a report header line: the device kernels run on (a GPU, or Triton's interpreter), the Hypothesis profile;
- tests marked ``gpu`` are skipped, with the reason, where no CUDA device is present;
- fixtures: ``conv_device`` (where kernel tests put their tensors), ``poisoned`` (NaN-filled
  ``torch.empty`` for the test, see :func:`~fastconv.testing.poisoned_allocations`) and ``tuning_sandbox``
  (a private, empty tuning cache; environment and caches restored afterwards).
"""

from __future__ import annotations

import os

import pytest
import torch

from ..tuning import autotuner
from .memory import poisoned_allocations


def _device_line() -> str:
    if torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name()})"
    interp = os.environ.get("TRITON_INTERPRET", "")
    return f"CPU, Triton interpreter {'on' if interp not in ('', '0') else 'OFF (kernels cannot run)'}"


def pytest_report_header(config) -> list[str]:
    try:  # Hypothesis is optional for this plugin
        from hypothesis import settings

        profile = settings.get_current_profile_name()
    except ImportError:  # pragma: no cover - hypothesis is a test dependency
        profile = "n/a"
    return [f"fastconv: kernels on {_device_line()}; hypothesis profile {profile!r}"]


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def conv_device() -> torch.device:
    """``cuda`` where a GPU is present, else ``cpu`` (kernels then run in Triton's interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def poisoned():
    """Inside the test, ``torch.empty``/``empty_like``/``empty_strided`` return NaN-filled tensors."""
    with poisoned_allocations():
        yield


@pytest.fixture
def tuning_sandbox(tmp_path, monkeypatch):
    """A private tuning cache directory (``$FASTCONV_CACHE_DIR``) with the in-memory choices cleared."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "tuning"))
    autotuner.clear_cache()
    yield tmp_path / "tuning"
    autotuner.clear_cache()
