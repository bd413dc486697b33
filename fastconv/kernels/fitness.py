"""Which configs do not fit under the installed Triton: the data the tuner prunes with.

A config's registers and spills depend on the compiler: one that fits on Triton 3.6 may spill on 3.7.1
(measured: ``igemm float32/ieee BLOCK_K32_BLOCK_M128_BLOCK_N64_w8_s3`` spills 8 B on sm_90 there).  The
static gate (:mod:`fastconv.static`) compiles every shipped config per target and records the ones that fail:

- for the supported toolchains, in the package (``tables/toolchains.json``, written by
  ``python -m fastconv inspect --record`` and committed): the gate then knows what to expect, and a config
  that fails without being recorded there is a regression of a kernel change;
- for the toolchain of this machine, in the cache (``$FASTCONV_CACHE_DIR/static/pruned-triton<version>.json``,
  written by every gate run): so a Triton that no table knows is still pruned once the gate has run on it.

:func:`pruned` answers for one config (None: it may be launched).  On a GPU the tuner also drops any
candidate whose compiled binary reports spilled registers (:func:`fastconv.kernels.launch.watch_spills`),
which covers a toolchain the gate has never seen.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ..env import cache_dir, triton_version
from .config import KernelConfig, table

__all__ = ["pruned", "record_of", "local_record_path", "device_target", "mode_of", "entry_key", "binary_config"]


def mode_of(dtype: str, precision: str) -> str:
    """The mode a config is recorded under, e.g. ``"float32/ieee"`` (``"float32/*"`` for a kernel whose
    binary does not depend on the precision)."""
    return f"{dtype}/{precision}"


def entry_key(kernel: str, mode: str, config: KernelConfig | str, target: str) -> tuple[str, str, str, str]:
    """What identifies a recorded config: its binary.  Wrapper-level choices (``PREP``) are not part of it, and
    of ``SPLIT_K`` only whether there is one (the slice count is a runtime argument): any count keys as 1."""
    name = binary_config(config).name() if isinstance(config, KernelConfig) else config
    return (kernel, mode, name, target)


def binary_config(config: KernelConfig) -> KernelConfig:
    """``config`` as the binary it compiles to (see :func:`entry_key`)."""
    return KernelConfig(tuple((k, 1 if k == "SPLIT_K" else v) for k, v in config.blocks if k != "PREP"),
                        config.num_warps, config.num_stages)


def _index(entries: list[dict]) -> dict[tuple, str]:
    return {entry_key(e["kernel"], e["mode"], e["config"], e["target"]): e.get("why", "") for e in entries}


def record_of(version: str | None = None) -> dict[tuple, str] | None:
    """The packaged record of Triton ``version`` (default: the installed one): ``{key: why}`` of its pruned
    configs, or None when the package has no record of that toolchain."""
    rec = table("toolchains")["triton"].get(version or triton_version())
    return None if rec is None else _index(rec["pruned"])


def local_record_path(version: str | None = None) -> Path:
    return cache_dir() / "static" / f"pruned-triton{version or triton_version()}.json"


@functools.lru_cache(maxsize=8)
def _local_record(path: Path, mtime: float) -> dict[tuple, str]:
    try:
        return _index(json.loads(path.read_text())["pruned"])
    except (OSError, ValueError, KeyError):
        return {}


def _local(version: str | None) -> dict[tuple, str]:
    path = local_record_path(version)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    return _local_record(path, mtime)


def pruned(kernel: str, dtype: str, precision: str, config: KernelConfig, target: str,
           version: str | None = None) -> str | None:
    """Why ``config`` must not run under Triton ``version`` (default: installed) on ``target``, else None."""
    packaged, local = record_of(version) or {}, _local(version)
    for mode in (mode_of(dtype, str(precision)), mode_of(dtype, "*")):  # "*": a precision-blind kernel
        key = entry_key(kernel, mode, config, target)
        if key in packaged:
            return packaged[key] or "recorded by the static gate"
        if key in local:
            return local[key] or "found by the static gate on this machine"
    return None


def device_target(device) -> str | None:
    """The static gate's target name of a CUDA ``device`` (``"sm_90"``), None for the CPU / interpreter."""
    if getattr(device, "type", device) != "cuda":
        return None

    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"
