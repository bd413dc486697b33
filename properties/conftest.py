"""Property tests: config choices are deterministic and the tuning cache private.

On a GPU the autotuner would time every config of every drawn problem (and write them to the user's cache):
property tests take each kernel's first config instead (``FASTCONV_AUTOTUNE=0``) and cover every other
config in ``test_configs.py``, with the tuning cache in a temporary directory.  Package-scoped, so the
benchmarks that run after this package tune as usual.
"""

from __future__ import annotations

import pytest

from fastconv.tuning import autotuner


@pytest.fixture(autouse=True, scope="package")
def _deterministic_private_tuning(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTCONV_AUTOTUNE", "0")
        mp.setenv("FASTCONV_CACHE_DIR", str(tmp_path_factory.mktemp("fastconv-tuning")))
        autotuner.clear_cache()
        yield
    autotuner.clear_cache()
