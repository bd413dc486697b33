"""Print this environment's toolchain and check that it is exactly what a pin file says.

    python constraints/check_env.py constraints/triton-3.7.1.txt [--json PATH]

Prints one line (python, torch, triton, numpy, hypothesis, pytest, pytest-xdist, pytest-benchmark) and exits 1
when a distribution installed here is not in the pin file or has another version: a pin file must list
everything that gets installed.  Exempt: pip (it comes with ``python -m venv``) and fastconv itself (editable).
A pin without a local label matches an installed local build (``torch==2.13.0`` matches ``2.13.0+cpu``).
Standard library only: it runs before anything is known about the environment.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import re
import sys

REPORTED = ("torch", "triton", "numpy", "hypothesis", "pytest", "pytest-xdist", "pytest-benchmark")
EXEMPT = {"pip", "fastconv"}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()) or not version.strip():
                raise SystemExit(f"{path}:{n}: {line!r} is not an exact 'name==version' pin")
            pins[canon(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    return {canon(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}


def matches(pin: str, have: str) -> bool:
    return have == pin or ("+" not in pin and have.split("+", 1)[0] == pin)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pins", help="the pin file this environment was installed from")
    ap.add_argument("--json", metavar="PATH", help="also write the versions as JSON to PATH")
    args = ap.parse_args(argv)

    pins, have = read_pins(args.pins), installed()
    versions = {"python": platform.python_version(), **{k: have.get(k, "-") for k in REPORTED}}
    print(f"toolchain ({args.pins}): " + " | ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(versions, f)

    problems = [f"{name} {version} is installed but not pinned" for name, version in sorted(have.items())
                if name not in pins and name not in EXEMPT]
    problems += [f"{name} is installed at {have[name]}, pinned at {pin}" for name, pin in sorted(pins.items())
                 if name in have and not matches(pin, have[name])]
    problems += [f"{name}=={pin} is pinned but not installed" for name, pin in sorted(pins.items())
                 if name not in have]
    for p in problems:
        print(f"check_env: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
