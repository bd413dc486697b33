"""Make a deliberately broken copy of the working tree's ``fastconv/`` package, to show the gate failing.

    python benchmarks/make_candidate.py slow DEST        # autotuner picks a >= 20% slower config
    python benchmarks/make_candidate.py off-by-one DEST  # the input-width bound is off by one

Both faults are planted where every kernel passes, so they do not depend on one kernel's internals:

- ``slow``: in ``tuning/autotuner.py`` the choice ``min(timings)`` becomes "the fastest config at least
  ``SLOW_FACTOR`` x slower than the best" (a kernel forced to a poor config; problems with a single config
  are unaffected);
- ``off-by-one``: in ``kernels/base.py`` every launcher is built for the problem with its input one column
  narrower and one more column of right padding, i.e. the bound every kernel masks input columns with
  (``iw < W``) is off by one: the last input column reads as padding.  Output shapes are unchanged and no
  access goes out of bounds (the kernels read less), so the gate sees wrong values, not a crash.

Exits non-zero if the code to patch is not found (the script must be updated with the code it patches).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

SLOW_FACTOR = 1.2

PATCHES = {
    "slow": (
        "tuning/autotuner.py",
        re.compile(r"^(?P<ind>[ \t]*)best_ms, best = min\(timings, key=lambda t: t\[0\]\)[ \t]*$", re.M),
        lambda m: (
            f"{m['ind']}best_ms, best = min(timings, key=lambda t: t[0])\n"
            f"{m['ind']}# GATE DEMO: deliberately slowed - take the fastest config >= {SLOW_FACTOR}x "
            "slower than the best\n"
            f"{m['ind']}_poor = [t for t in timings if {SLOW_FACTOR} * best_ms <= t[0] < float('inf')]\n"
            f"{m['ind']}best_ms, best = min(_poor, key=lambda t: t[0]) if _poor else "
            "max((t for t in timings if t[0] < float('inf')), key=lambda t: t[0])"
        ),
    ),
    "off-by-one": (
        "kernels/base.py",
        re.compile(r"^(?P<ind>[ \t]*)return self\.make_launcher\(problem, precision, config\)[ \t]*$", re.M),
        lambda m: (
            f"{m['ind']}# GATE DEMO: planted off-by-one - the input-width bound excludes the last column\n"
            f"{m['ind']}problem = problem.replace(w=problem.w - 1, pad_w_end=problem.pad_w_end + 1)\n"
            f"{m['ind']}return self.make_launcher(problem, precision, config)"
        ),
    ),
}


def make(kind: str, dest: Path, source: Path) -> Path:
    """Copy ``source`` (a fastconv package dir) to ``dest/fastconv``, plant ``kind``; returns the package."""
    rel, pattern, repl = PATCHES[kind]
    pkg = dest / "fastconv"
    if pkg.exists():
        shutil.rmtree(pkg)
    shutil.copytree(source, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = pkg / rel
    text = target.read_text()
    new, n = pattern.subn(repl, text, count=1)
    if n != 1:
        raise SystemExit(f"make_candidate: the line to patch for {kind!r} is not in {rel}; update PATCHES")
    target.write_text(new)
    return pkg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=sorted(PATCHES))
    ap.add_argument("dest", type=Path)
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1] / "fastconv")
    args = ap.parse_args(argv)
    pkg = make(args.kind, args.dest, args.source)
    print(f"make_candidate: {args.kind} candidate in {pkg} (patched {PATCHES[args.kind][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
