"""The toolchain matrix: the test suite against every supported Triton, each in a fresh venv from its pins.

    nox                          # every test session
    nox -t other-toolchains      # every toolchain but the primary (.ci/run, after the README's two commands)
    nox -l                       # list the sessions
    nox -s "tests(3.9.0)"       # one toolchain; extra pytest arguments after `--`
    nox -s "pins(3.9.0)"        # regenerate constraints/triton-3.9.0.txt (not run by default)

A test session builds a fresh stdlib venv under .nox/ (the README's `python3 -m venv`, never the machine's
site-packages), installs exactly as the README does but from that toolchain's pin file, checks that the venv
holds exactly the pinned versions, prints them, and runs pytest with xdist.  With $FASTCONV_CI_REPORT set, each
session appends one JSON line (name, status, seconds, versions) to that file; .ci/run prints them as a table.

torch is always asked for as `torch==2.13.0` (the CPU wheel on this machine): pip never resolves torch itself.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
TORCH = "torch==2.13.0"
PRIMARY = "3.7.1"  # the README's toolchain: the Triton that torch 2.13's CUDA wheel pins
TRITONS = ("3.6.0", PRIMARY, "3.9.0")  # oldest we support (our GPU runner), primary, newest
# Only Triton 3.6's CPU interpreter needs numpy < 2.4 (it calls int() on 1-element arrays).
EXTRA_CAPS = {"3.6.0": ["numpy<2.4"]}
# One pytest command for every toolchain: the whole suite (tests/, properties/, benchmarks/ smoke run).
# `--dist loadfile` keeps tests/test_static.py on one worker: its session fixture compiles the whole registry,
# and on two workers both would compile it (cold) at once.
PYTEST = ("-m", "pytest", "-n", "2", "--dist", "loadfile", "--durations=10")

nox.options.default_venv_backend = "venv"  # the stdlib venv + pip of the README; uv/conda would not see /opt/wheels
nox.options.reuse_venv = "no"  # a fresh venv every run
nox.options.error_on_missing_interpreters = True
nox.options.error_on_external_run = True
nox.options.download_python = "never"
nox.options.stop_on_first_error = False  # run every toolchain, report every failure


def pins_file(triton: str) -> str:
    return f"constraints/triton-{triton}.txt"


def _children_cpu() -> float:
    """User + system CPU seconds of the finished commands this process ran (pip, pytest and their workers):
    with the wall time it shows how much of a slow run was waiting for a busy machine."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _record(entry: dict) -> None:
    path = os.environ.get("FASTCONV_CI_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


@nox.session(venv_backend="venv")
# tag "other-toolchains": every Triton but the primary, whose pins the README's own commands (and so .ci/run's
# first steps) already test in a fresh venv; `nox -t other-toolchains` runs just those.
@nox.parametrize("triton", [nox.param(t, id=t, tags=[] if t == PRIMARY else ["other-toolchains"]) for t in TRITONS])
def tests(session: nox.Session, triton: str) -> None:
    """The whole test suite under one Triton, installed from constraints/triton-<version>.txt."""
    pins = pins_file(triton)
    t0, cpu0, status, versions = time.monotonic(), _children_cpu(), "failed", {}
    # Not session.create_tmp(): that sets $TMPDIR inside the checkout, where the pytest runs that tests start
    # in tmp_path would pick up this repo's pyproject.toml and conftest.py.
    vfile = Path(tempfile.mkdtemp(prefix="fastconv-nox-")) / "versions.json"
    try:
        # The README's install, with this toolchain's pins (setuptools pinned too: no build isolation).
        session.install("-c", pins, TORCH, "setuptools")
        session.install("-c", pins, "--no-build-isolation", "-e", ".[test]")
        session.run("python", "constraints/check_env.py", pins, "--json", str(vfile))
        versions = json.loads(vfile.read_text())
        session.run("python", *PYTEST, *session.posargs)
        status = "passed"
    except Exception as e:  # nox's CommandFailed: "Returned code 5" and the like
        status = f"failed ({e})"
        raise
    finally:
        seconds, cpu = round(time.monotonic() - t0, 1), round(_children_cpu() - cpu0, 1)
        session.log(f"{session.name}: {status} in {seconds} s ({cpu} CPU s)")
        _record({"session": session.name, "status": status, "seconds": seconds, "cpu_seconds": cpu,
                 "versions": versions})


@nox.session(venv_backend="venv", default=False)
@nox.parametrize("triton", TRITONS, ids=list(TRITONS))
def pins(session: nox.Session, triton: str) -> None:
    """Regenerate constraints/triton-<version>.txt: `pip freeze` of a fresh venv with the newest allowed versions."""
    session.install("--upgrade", "setuptools")
    session.install(TORCH, f"triton=={triton}", *EXTRA_CAPS.get(triton, []))
    session.install("--no-build-isolation", "-e", ".[test]")
    frozen = session.run("python", "-m", "pip", "freeze", "--all", "--exclude-editable", silent=True)
    caps = EXTRA_CAPS.get(triton, [])
    notes = {"numpy": f"  # {', '.join(caps)}: Triton {triton}'s interpreter"} if caps else {}
    lines = []
    for line in frozen.splitlines():
        name, sep, version = line.partition("==")
        if not sep or name.lower() == "pip":  # pip comes with the venv; editable/direct URLs never get here
            continue
        version = version.split("+", 1)[0] if name.lower() == "torch" else version  # 2.13.0+cpu -> 2.13.0
        lines.append(f"{name}=={version}{notes.get(name.lower(), '')}")
    header = [
        f"# Toolchain pins: Triton {triton}, torch 2.13.0 (CPU wheel here), CPython "
        f"{'.'.join(platform.python_version_tuple()[:2])} on {platform.machine()} Linux.",
        f"# Generated by `nox -s 'pins({triton})'` on {datetime.date.today()}: pip freeze of a fresh venv after",
        "#   pip install --upgrade setuptools",
        f"#   pip install {TORCH} triton=={triton} {' '.join(EXTRA_CAPS.get(triton, []))}".rstrip(),
        '#   pip install --no-build-isolation -e ".[test]"',
        "# Every installed distribution, exact (pip and fastconv itself excepted); constraints/check_env.py checks it.",
    ]
    out = ROOT / pins_file(triton)
    out.write_text("\n".join(header + sorted(lines, key=str.lower)) + "\n")
    session.log(f"wrote {out.relative_to(ROOT)} ({len(lines)} pins)")
