"""Command line: ``python -m fastconv <command>`` (also installed as ``fastconv``).

Commands (each implemented beside the code it drives, and imported only when used):

- ``demo``: the main job.  On a GPU: the seed's problem (KernelBench level-1 #80) against cuDNN and the seed's
  ``direct`` kernel.  Without a GPU: a small problem in Triton's interpreter, compared with ``F.conv2d``.
- ``bench``: the benchmark table, JSON and chart (:mod:`fastconv.bench.runner`).
- ``gate``: the A/B performance and correctness gate for CI (:mod:`fastconv.bench.perf_gate`).
- ``networks``: whole-network forward passes, ``fastconv.convert`` against cuDNN (:mod:`fastconv.bench.networks`).
- ``inspect``: the static resource gate: every kernel config per target GPU (:mod:`fastconv.static`).
- ``tune``: autotune a catalogue network's conv shapes, save the choices (:mod:`fastconv.bench.tune_cli`).
- ``verify``: the property suite, error-input tests and benchmark checks against any conv2d implementation
  (:mod:`fastconv.verify`).
- ``mutate``: the mutation harness: how many planted kernel bugs the property suite kills (:mod:`fastconv.mutate`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .env import ensure_interpreter_if_no_gpu

# command -> module that provides configure(parser) and run(args) -> int
COMMANDS = {
    "demo": ("fastconv.demo", "run a problem against torch (the main job)"),
    "bench": ("fastconv.bench.runner", "benchmark fastconv against cuDNN and the seed"),
    "gate": ("fastconv.bench.perf_gate.cli", "A/B performance + correctness gate against a baseline"),
    "networks": ("fastconv.bench.networks", "whole networks (torchvision) converted to fastconv against cuDNN"),
    "inspect": ("fastconv.static.inspect_cli", "registers/spills/shared memory/occupancy of every kernel config"),
    "tune": ("fastconv.bench.tune_cli", "autotune every conv shape of a network and save the choices to a file"),
    "verify": ("fastconv.verify", "run the property suite against a conv2d implementation (yours or fastconv's)"),
    "mutate": ("fastconv.mutate", "mutation testing: apply each catalogued kernel bug, count those the suite kills"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {name: sub.add_parser(name, help=help_, description=help_) for name, (_, help_) in COMMANDS.items()}
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        # the interpreter decision comes before the command's module (and so any kernel) is imported
        ensure_interpreter_if_no_gpu()
        mod = importlib.import_module(COMMANDS[command][0])
        mod.configure(parsers[command])
    args = parser.parse_args(argv)
    return int(mod.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
