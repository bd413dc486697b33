"""Compile one :class:`~fastconv.kernels.StaticVariant` for one target GPU without a GPU; read its cubin.

``triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", cap, 32),
options=...)`` runs Triton's whole pipeline down to ``ptxas`` (shipped in the Triton wheel) with no driver
involved; the cubin is then read with the wheel's ``cuobjdump`` (``--dump-resource-usage`` and ``-sass``).

Compilation needs real :class:`triton.runtime.JITFunction` objects, which do not exist when
``TRITON_INTERPRET=1`` (``@triton.jit`` then returns an ``InterpretedFunction``, and the CPU test suite runs
that way).  :mod:`fastconv.static.gate` therefore describes and compiles variants in worker processes started
with the interpreter off (:mod:`fastconv.static.worker`); :func:`compile_report` refuses an interpreted
function with a clear error.

Arguments are specialised as the JIT does at launch, as far as the variant says: pointer arguments carry
``tt.divisibility=16`` (torch's allocations are 16-byte aligned); an integer typed ``"i32:16"`` carries it too
(the JIT marks every integer argument that is a multiple of 16); an integer the JIT would see as 1 (a unit
stride) belongs in ``constexprs`` (the JIT makes 1 a constant).  Other integers carry nothing (the general
shape).  This matters: without contiguity and alignment facts, loads are not vectorised, ``cp.async``
pipelining does not happen and shared memory is under-estimated (:mod:`fastconv.static.specialize` derives
the types from launch values).  The compile options are ``num_warps``/``num_stages`` from the variant's
config plus any override (``maxnreg``).

Cache: Triton keeps its own compilation cache (``~/.triton/cache`` or ``$TRITON_CACHE_DIR``); on top of it
:class:`JSONCache` keeps variant lists and parsed :class:`ResourceReport` s as JSON under
``$FASTCONV_CACHE_DIR/static`` (default ``~/.cache/fastconv/static``), keyed by :func:`hash_key` of what they
depend on (:func:`describe` of the variant: Triton's ``JITFunction.cache_key`` of the kernel (its source and
its dependencies), signature, constexprs, config; plus target, overrides, Triton's version and the gate's own
code), so a repeat run starts no compiler and no worker, and editing one kernel recompiles only that kernel.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..env import cache_dir, triton_version
from ..gpus import TargetLimits
from ..kernels.base import StaticVariant
from ..locks import FileLock, LockTimeout
from .report import ResourceReport

__all__ = [
    "toolchain", "ast_signature", "ast_signature_and_attrs", "compile_options", "compile_report", "describe",
    "tree_digest", "gate_digest", "hash_key", "JSONCache", "default_cache_dir", "CACHE_SCHEMA",
]

# Bump when ResourceReport or the way it is measured changes (old cache entries then miss).
CACHE_SCHEMA = 1


def toolchain() -> dict[str, Path]:
    """Paths of ``ptxas``, ``cuobjdump`` and ``nvdisasm`` shipped under ``triton/backends/nvidia/bin``."""
    import triton  # on use (in a compile worker): importing Triton must wait for the interpreter decision

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    tools = {name: bin_dir / name for name in ("ptxas", "cuobjdump", "nvdisasm")}
    missing = [str(p) for p in tools.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the Triton wheel lacks the CUDA binaries the static gate needs: {missing}")
    return tools


def _raw_function(fn: Any):
    """The Python function under a ``JITFunction`` / ``InterpretedFunction`` (both keep it in ``.fn``)."""
    return getattr(fn, "fn", fn)


def ast_signature(variant: StaticVariant) -> dict[str, str]:
    """The full ``ASTSource`` signature: every argument of the kernel in order, constexprs as ``"constexpr"``.

    An argument may be both typed and in ``constexprs`` (a unit stride the JIT specialises to the constant 1):
    the constant wins, as at launch.
    """
    arg_names = list(inspect.signature(_raw_function(variant.fn)).parameters)
    unknown = sorted((set(variant.signature) | set(variant.constexprs)) - set(arg_names))
    missing = [a for a in arg_names if a not in variant.signature and a not in variant.constexprs]
    if unknown or missing:
        raise ValueError(f"static variant {variant.label!r} of {variant.kernel!r} does not match "
                         f"{_raw_function(variant.fn).__name__}{tuple(arg_names)}: unknown {unknown}, "
                         f"missing {missing}")
    return {a: ("constexpr" if a in variant.constexprs else variant.signature[a]) for a in arg_names}


def ast_signature_and_attrs(variant: StaticVariant) -> tuple[dict[str, str], dict[tuple[int], list]]:
    """:func:`ast_signature` without ``:16`` suffixes, and the ``tt.divisibility=16`` attributes.

    Pointers always get the attribute (torch's allocations are 16-byte aligned); integers get it when their
    type says so (``"i32:16"``).  That is what the JIT does at launch for such values; an integer equal to 1
    is a constexpr at launch (declare it in ``constexprs``, e.g. a unit stride).
    """
    signature, attrs = {}, {}
    for i, (name, ty) in enumerate(ast_signature(variant).items()):
        base, _, div = ty.partition(":")
        if div not in ("", "16") or (div and base.startswith("*")):
            raise ValueError(f"static variant {variant.label!r}: bad type {ty!r} for {name} "
                             "(a Triton type, optionally 'iN:16' for a multiple of 16)")
        signature[name] = base
        if base.startswith("*") or div:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, attrs


def compile_options(variant: StaticVariant, maxnreg: int | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_warps": variant.config.num_warps, "num_stages": variant.config.num_stages}
    if maxnreg is not None:
        opts["maxnreg"] = int(maxnreg)
    return opts


def compile_report(variant: StaticVariant, target: TargetLimits, *,
                   maxnreg: int | None = None) -> ResourceReport:
    """Compile ``variant`` for ``target`` and return what its cubin uses.  Needs ``TRITON_INTERPRET`` off."""
    import triton  # on use (in a compile worker, interpreter off; see fastconv.env)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    if not isinstance(variant.fn, JITFunction):
        raise RuntimeError(
            f"{variant.kernel}: {type(variant.fn).__name__} cannot be compiled (TRITON_INTERPRET is on in "
            "this process); use fastconv.static.gate.check, which compiles in worker processes with it off")
    signature, attrs = ast_signature_and_attrs(variant)
    options = compile_options(variant, maxnreg)
    src = ASTSource(variant.fn, signature, dict(variant.constexprs), attrs)
    t0 = time.perf_counter()
    kernel = triton.compile(src, target=GPUTarget("cuda", target.capability, 32), options=options)
    seconds = time.perf_counter() - t0
    meta = kernel.metadata
    with tempfile.TemporaryDirectory(prefix="fastconv-static-") as tmp:
        cubin = Path(tmp) / f"{meta.name}.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        cuobjdump = str(toolchain()["cuobjdump"])
        usage, sass = (subprocess.run([cuobjdump, flag, str(cubin)], capture_output=True, text=True,
                                      check=True).stdout for flag in ("--dump-resource-usage", "-sass"))
    return ResourceReport.from_cuobjdump(
        usage, sass, function=meta.name, arch=str(meta.arch), num_warps=meta.num_warps,
        num_stages=meta.num_stages, dynamic_shared_bytes=meta.shared, maxnreg=maxnreg,
        compile_seconds=round(seconds, 3), triton_version=triton.__version__,
    )


# --------------------------------------------------------------------------------------------------------
# Source digests and the JSON cache
# --------------------------------------------------------------------------------------------------------

_DIGESTS: dict[tuple[Path, str], str] = {}


def tree_digest(directory: Path | str, pattern: str = "*.py") -> str:
    """Hash of every file matching ``pattern`` under ``directory`` (names and contents), memoised."""
    directory = Path(directory).resolve()
    if (directory, pattern) not in _DIGESTS:
        h = hashlib.sha256()
        for p in sorted(directory.glob(pattern)):
            if "__pycache__" not in p.parts:
                h.update(str(p.relative_to(directory)).encode() + b"\0" + p.read_bytes() + b"\0")
        _DIGESTS[(directory, pattern)] = h.hexdigest()
    return _DIGESTS[(directory, pattern)]


def gate_digest() -> str:
    """Hash of the code that makes a report (this module and :mod:`.report`): changing how a report is
    measured or parsed invalidates the cached ones; the gate's other modules do not."""
    here = Path(__file__).resolve().parent
    parts = [tree_digest(here, name) for name in ("compile.py", "report.py")]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def describe(variant: StaticVariant) -> dict[str, Any]:
    """A JSON description of ``variant``: everything its compilation depends on (made where it compiles)."""
    fn = _raw_function(variant.fn)
    ast_signature_and_attrs(variant)  # validate here, where the error names the variant
    return {
        "kernel": variant.kernel, "label": variant.label, "config": variant.config.to_json(),
        "tensor_core": bool(variant.tensor_core), "targets": list(getattr(variant, "targets", None) or []),
        "mode": getattr(variant, "mode", ""),
        "function": f"{fn.__module__}:{fn.__qualname__}",
        # Triton's own key of the function: its source, the @jit functions it calls, the globals it reads
        "jit_key": getattr(variant.fn, "cache_key", None),
        "signature": sorted(variant.signature.items()),
        "constexprs": sorted((k, repr(v)) for k, v in variant.constexprs.items()),
    }


def default_cache_dir() -> Path:
    return cache_dir() / "static"


class JSONCache:
    """One JSON file per key under ``root``, safe for concurrent processes (pytest-xdist workers, two users'
    runs): an entry is written to a temporary file and moved into place, so a reader sees all of it or none.

    An entry is a pure function of its key, except for what the run measured on the side (a report's
    ``compile_seconds``).  :meth:`put` with ``replace=False`` keeps the entry another process stored first and
    returns that one, so every process reports the same thing for one key.
    """

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def get(self, key: str) -> Any | None:
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def _lock(self, key: str) -> FileLock:
        return FileLock(self.root / ".locks" / key)

    def claim(self, key: str) -> FileLock | None:
        """The right to make ``key``'s entry (held until the returned lock is closed), or None while another
        process holds it: concurrent gate runs (pytest-xdist workers) then compile each key once."""
        lock = self._lock(key)
        try:
            lock.acquire("exclusive", timeout=0)
        except (LockTimeout, OSError):
            lock.close()
            return None
        return lock

    def wait_for(self, key: str, timeout: float) -> Any | None:
        """Wait (at most ``timeout`` s) until no process holds ``key``'s claim; then its entry, if one was made."""
        lock = self._lock(key)
        try:
            lock.acquire("exclusive", timeout=timeout)
        except (LockTimeout, OSError):
            pass
        finally:
            lock.close()
        return self.get(key)

    def put(self, key: str, value: Any, *, replace: bool = True) -> Any:
        """Store ``value`` under ``key``; return what the cache holds for ``key`` afterwards."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        final = self.root / f"{key}.json"
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f, indent=1, sort_keys=True)
            if not replace:
                try:
                    os.link(tmp, final)  # atomic, and fails where the entry exists
                    return value
                except FileExistsError:
                    held = self.get(key)
                    if held is not None:
                        return held
                except OSError:  # a file system without hard links: replace
                    pass
            os.replace(tmp, final)
            return value
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def hash_key(payload: Any) -> str:
    """The cache key of a JSON-able payload (plus the cache schema, Triton's version and the gate's code)."""
    full = {"schema": CACHE_SCHEMA, "triton": triton_version(), "gate": gate_digest(), "payload": payload}
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:32]
