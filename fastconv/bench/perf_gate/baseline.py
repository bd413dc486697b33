"""The performance gate's baselines: another fastconv package loaded beside the running one, or a saved run.

A git ref is extracted with ``git archive`` (``fastconv/`` only) into a temporary directory under a distinct
package name (``fastconv_baseline_<sha>``; fastconv imports itself relatively, and absolute imports are
rewritten), a directory is copied the same way, and the default candidate is the ``fastconv`` being run (the
working tree).  Each gets its own autotuning cache (:func:`isolate_tuning_cache`), so neither inherits the
other's choices.  A saved run (``fastconv bench`` / gate / pytest-benchmark JSON) gives timings only.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import fastconv

from .stats import Summary, summarize

__all__ = ["load_package", "load_saved_run", "isolate_tuning_cache"]


_TMP: list[tempfile.TemporaryDirectory] = []  # kept alive for the process (kernels' sources are read lazily)

_ABS_IMPORT = re.compile(r"^(\s*)(from|import)\s+fastconv(?=[\s.])", re.MULTILINE)


def _repo_root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("not inside a git repository: cannot resolve a git ref")
    return Path(out.stdout.strip())


def _rewrite_absolute_imports(pkg_dir: Path, name: str) -> int:
    """``from fastconv.x import y`` inside the copy -> ``from <name>.x import y``; returns files changed."""
    changed = 0
    for f in pkg_dir.rglob("*.py"):
        text = f.read_text()
        new = _ABS_IMPORT.sub(lambda m: f"{m.group(1)}{m.group(2)} {name}", text)
        if new != text:
            f.write_text(new)
            changed += 1
    return changed


def _import_copy(src_dir: Path | None, tar_bytes: bytes | None, name: str):
    tmp = tempfile.TemporaryDirectory(prefix="fastconv_gate_")
    _TMP.append(tmp)
    dest = Path(tmp.name) / name
    if src_dir is not None:
        shutil.copytree(src_dir, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp.name, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tf.extractall(tmp.name)
        (Path(tmp.name) / "fastconv").rename(dest)
    if not (dest / "__init__.py").exists():
        raise RuntimeError(f"{src_dir or 'archive'} holds no fastconv package (__init__.py missing)")
    _rewrite_absolute_imports(dest, name)
    sys.path.insert(0, tmp.name)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(tmp.name)


def load_package(spec: str | None, label: str):
    """Import a fastconv package: ``None``/``"worktree"`` = the running ``fastconv``; a directory (a package
    dir, or a tree holding ``fastconv/``) is copied; anything else is a git ref, extracted with git archive.
    Returns ``(module, description)``."""
    if spec in (None, "", "worktree", "WORKTREE"):
        return fastconv, f"working tree ({Path(fastconv.__file__).parent})"
    path = Path(spec)
    if path.is_dir():
        pkg = path if (path / "__init__.py").exists() else path / "fastconv"
        digest = hashlib.sha1(str(pkg.resolve()).encode()).hexdigest()[:10]
        return _import_copy(pkg, None, f"fastconv_{label}_{digest}"), f"tree {pkg}"
    root = _repo_root()
    rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        raise RuntimeError(f"{spec!r} is neither a directory, a saved run (.json) nor a git ref")
    sha = rev.stdout.strip()
    arch = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", sha, "fastconv"],
                          capture_output=True)
    if arch.returncode != 0:
        err = arch.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git archive {sha} fastconv failed: {err}")
    return _import_copy(None, arch.stdout, f"fastconv_{label}_{sha[:10]}"), f"git {spec} ({sha[:10]})"


def isolate_tuning_cache(package, directory: Path) -> None:
    """Point ``package``'s autotuning cache at ``directory`` (fresh per package: no shared choices)."""
    try:
        autotuner = importlib.import_module(package.__name__ + ".tuning.autotuner")
    except ImportError:
        return
    original = getattr(autotuner, "cache_path", None)
    if original is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    autotuner.cache_path = lambda device, _orig=original: directory / _orig(device).name


def load_saved_run(path: Path) -> tuple[dict[str, Summary], str | None]:
    """Timings of fastconv per case id from a saved run: ``fastconv bench`` JSON, a gate ``--json`` output,
    or a pytest-benchmark JSON of ``benchmarks/`` (its ``extra_info``).  Returns ``(by case id, gpu)``."""
    data = json.loads(Path(path).read_text())
    out: dict[str, Summary] = {}
    if data.get("schema") == "fastconv-bench/1":
        for r in data["results"]:
            t = (r["impls"].get("fastconv") or {}).get("timing")
            if t:
                out[r["id"]] = summarize(t["times_ms"])
        return out, (data.get("machine") or {}).get("gpu")
    if data.get("schema") == "fastconv-gate/1":
        for r in data["problems"]:
            if r.get("candidate_times_ms"):
                out[r["id"]] = summarize(r["candidate_times_ms"])
        return out, (data.get("machine") or {}).get("gpu")
    if "benchmarks" in data:
        for b in data["benchmarks"]:
            info = b.get("extra_info") or {}
            if info.get("impl") != "fastconv" or not info.get("timed"):
                continue
            s = b["stats"]
            label = {"bfloat16": "bf16", "float16": "fp16"}.get(info["dtype"]) or info["precision"]
            cid = f"{info['problem']}-{label}-{info['layout']}"
            data_s = s.get("data")
            out[cid] = (summarize([t * 1e3 for t in data_s]) if data_s else
                        Summary(s["median"] * 1e3, s["q1"] * 1e3, s["q3"] * 1e3, s["rounds"]))
        return out, ((data.get("machine_info") or {}).get("fastconv") or {}).get("gpu")
    raise ValueError(f"{path}: not a fastconv bench, gate or pytest-benchmark JSON")
