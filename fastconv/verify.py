"""``python -m fastconv verify SPEC``: gate any conv2d implementation with fastconv's whole property suite.

``SPEC`` names the implementation under test (:func:`fastconv.testing.load_impl`): ``path/to/solution.py``
(a KernelBench file with ``ModelNew``, or a module with a ``conv2d`` function), ``pkg.module:attr``,
``fastconv`` / ``fastconv:<backend>``, ``torch``, ``inductor``, ``inductor-triton`` or ``jax``.  What it
claims can be overridden with ``--cap KEY=VALUE`` (repeatable: ``--cap dtypes=float32,float16
--cap dilation=false``).

It runs, in the repository checkout this package lives in, ``pytest -m "property or benchmark"`` over
``properties/`` (the reference and metamorphic properties, the error-input tests, the integrity checks
against cheating) and ``benchmarks/`` (timed against cuDNN on a GPU; a checked smoke run in the
interpreter), with ``--conv-impl SPEC``.  Equivalent to
``pytest -m property properties --conv-impl SPEC`` plus the benchmarks; the summary lists what the
implementation does not claim (so not tested).  Exit status: pytest's (0: every test passed or was skipped
with a reason).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

__all__ = ["configure", "run", "pytest_command", "repository"]

PROFILES = ("dev", "ci", "gpu", "nightly")


def repository() -> Path | None:
    """The checkout around this package (the one with ``properties/``), or None for an installed copy."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "properties").is_dir() and (root / "conftest.py").is_file() else None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the implementation under test: path/to/file.py[:ATTR], pkg.module:ATTR, "
                                     "fastconv[:BACKEND], torch, inductor, inductor-triton, jax")
    parser.add_argument("--cap", action="append", default=[], metavar="KEY=VALUE",
                        help="override what it claims (repeatable), e.g. dtypes=float32 dilation=false max_kernel=5")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="Hypothesis profile (default: gpu on a GPU, ci on the CPU)")
    parser.add_argument("--max-examples", type=int, default=None, metavar="N", help="cap every property at N examples")
    parser.add_argument("-k", dest="select", default=None, metavar="EXPR", help="pytest -k selection")
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark fixtures")
    parser.add_argument("--jobs", "-n", type=int, default=0, help="pytest-xdist workers (default: none)")
    parser.add_argument("--pytest-args", default="", metavar="ARGS", help="more pytest arguments (one string)")


def _spec_for(spec: str) -> str:
    """A file spec made absolute (pytest runs in the repository)."""
    target, sep, attr = spec.rpartition(":") if spec.count(":") > (len(spec) > 1 and spec[1] == ":") else \
        (spec, "", "")
    if target.endswith(".py") or os.sep in target or "/" in target:
        return str(Path(target).resolve()) + (f":{attr}" if sep else "")
    return spec


def pytest_command(args) -> list[str]:
    profile = args.profile or ("gpu" if torch.cuda.is_available() else "ci")
    targets = ["properties"] + ([] if args.no_bench else ["benchmarks"])
    cmd = [sys.executable, "-m", "pytest", *targets, "-m", "property" if args.no_bench else "property or benchmark",
           "--conv-impl", _spec_for(args.spec), f"--hypothesis-profile={profile}", "-p", "no:cacheprovider", "-ra"]
    for cap in args.cap:
        cmd += ["--conv-cap", cap]
    if args.max_examples:
        cmd += ["--conv-max-examples", str(args.max_examples)]
    if args.select:
        cmd += ["-k", args.select]
    if args.jobs:
        cmd += ["-n", str(args.jobs)]
    return cmd + shlex.split(args.pytest_args or "")


def run(args) -> int:
    repo = repository()
    if repo is None:
        print("fastconv verify: the property suite lives in the repository (properties/); run it from a checkout "
              "(pip install -e .) or use `pytest -m property --conv-impl SPEC` there", file=sys.stderr)
        return 2
    cmd = pytest_command(args)
    print("+", " ".join(cmd), flush=True)
    # pytest replaces this process (same pid: a timeout or ^C that stops `fastconv verify` stops the suite)
    os.chdir(repo)
    os.execv(sys.executable, cmd)
    return 2  # pragma: no cover - execv does not return
