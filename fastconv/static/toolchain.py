"""The static gate per toolchain: what a failing config means depends on the Triton it was compiled with.

Registers and spills are the compiler's choice, so a Triton upgrade can make a shipped config spill without
any kernel change.  :func:`judge` sorts the gate's failures of the shipped variants (registry items) under the
installed Triton by the package's record of that toolchain (``fastconv/kernels/tables/toolchains.json``, see
:mod:`fastconv.kernels.fitness`):

- **recorded**: the record of this Triton lists the config as pruned: expected, the tuner never offers it;
- **new toolchain**: the package has no record of this Triton: reported and pruned (written to the machine's
  local record, which the tuner reads), not a failure;
- **regression**: the package has a record of this Triton and does not list the config: a kernel change broke
  it on a supported toolchain; the gate fails.

Independently of that, the gate fails when a (kernel, dtype/precision, target) has no passing config at all
(:attr:`Verdict.uncovered`): pruning must never leave a mode without a kernel.  Configs the record lists but
that now pass are reported as stale (the record can be refreshed with ``python -m fastconv inspect --record``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..env import triton_version
from ..kernels import fitness
from ..kernels.config import table
from .resource_gate import GateRun, StaticResult

__all__ = ["Verdict", "judge", "write_local_record", "write_package_record", "entries"]

_MISSING = object()


@dataclass
class Verdict:
    version: str
    recorded: bool  # the package has a record of this Triton (a supported toolchain)
    passed: list[StaticResult] = field(default_factory=list)
    known_pruned: list[StaticResult] = field(default_factory=list)
    new_pruned: list[StaticResult] = field(default_factory=list)
    regressions: list[StaticResult] = field(default_factory=list)
    stale: list[tuple] = field(default_factory=list)  # recorded keys whose config now passes
    uncovered: list[tuple[str, str, str]] = field(default_factory=list)  # (kernel, mode, target)

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.uncovered

    @property
    def pruned(self) -> list[StaticResult]:
        return self.known_pruned + self.new_pruned

    def summary(self) -> str:
        state = "supported (recorded)" if self.recorded else "not recorded (new toolchain)"
        lines = [f"toolchain: Triton {self.version}, {state}: {len(self.passed)} pass, "
                 f"{len(self.known_pruned)} pruned as recorded, {len(self.new_pruned)} pruned (new), "
                 f"{len(self.regressions)} regressions, {len(self.uncovered)} modes without a config"]
        for r in self.new_pruned:
            lines.append(f"  pruned (new toolchain): {_describe(r)}")
        for r in self.known_pruned:
            lines.append(f"  pruned (recorded for Triton {self.version}): {_describe(r)}")
        for r in self.regressions:
            lines.append(f"  REGRESSION (not recorded for Triton {self.version}): {_describe(r)}")
        for kernel, mode, target in self.uncovered:
            lines.append(f"  NO CONFIG LEFT: {kernel} {mode} on {target}")
        for key in self.stale:
            lines.append(f"  stale record (now passes): {' '.join(key)}")
        lines.append(f"static gate (toolchain): {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


def _describe(r: StaticResult) -> str:
    v = r.item.variant
    return f"{v.kernel} {v.mode} {v.config} on {r.target.name} ({v.label}): {'; '.join(r.violations)}"


def _key(r: StaticResult) -> tuple[str, str, str, str]:
    v = r.item.variant
    return fitness.entry_key(v.kernel, v.mode, v.config, r.target.name)


def judge(run: GateRun, version: str | None = None, record=_MISSING) -> Verdict:
    """Sort ``run``'s results of shipped variants (those with a ``mode``; probes and overridden items are
    ignored) under Triton ``version`` (default: installed) by the package's ``record`` of it (default: the
    committed one; None: no record, as for a toolchain the package does not know)."""
    version = version or triton_version()
    if record is _MISSING:
        record = fitness.record_of(version)
    verdict = Verdict(version, record is not None)
    shipped = [r for r in run.results if r.item.variant.mode and not r.item.overrides and r.item.maxnreg is None]
    passing_keys, groups = set(), defaultdict(list)
    for r in shipped:
        v = r.item.variant
        groups[(v.kernel, v.mode, r.target.name)].append(r)
        if r.ok:
            verdict.passed.append(r)
            passing_keys.add(_key(r))
        elif record is None:
            verdict.new_pruned.append(r)
        elif _key(r) in record:
            verdict.known_pruned.append(r)
        else:
            verdict.regressions.append(r)
    failing_keys = {_key(r) for r in shipped if not r.ok}
    if record is not None:  # a key passes only if none of its variants fail (several problems share a config)
        verdict.stale = sorted(k for k in record if k in passing_keys and k not in failing_keys)
    verdict.uncovered = sorted(g for g, rs in groups.items() if not any(r.ok for r in rs))
    return verdict


def entries(results: list[StaticResult]) -> list[dict]:
    """Record entries (kernel, mode, config, target, why) of failing results, deduplicated and sorted."""
    out = {}
    for r in results:
        kernel, mode, config, target = _key(r)
        out.setdefault((kernel, mode, config, target), {"kernel": kernel, "mode": mode, "config": config,
                                                        "target": target, "why": "; ".join(r.violations)})
    return [out[k] for k in sorted(out)]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_local_record(verdict: Verdict, path: Path | None = None) -> Path:
    """The machine's record of this toolchain (every config that fails here), read by the tuner."""
    path = path or fitness.local_record_path(verdict.version)
    _atomic_write(path, json.dumps({"triton": verdict.version, "pruned": entries(verdict.pruned + verdict.regressions)},
                                   indent=1) + "\n")
    return path


def write_package_record(verdict: Verdict, path: Path | None = None) -> Path:
    """Record this toolchain in the package table (a developer's step when a Triton version becomes
    supported, or when a kernel change is accepted): its failing configs become the expected prunes."""
    path = path or Path(fitness.__file__).parent / "tables" / "toolchains.json"
    data = json.loads(path.read_text()) if path.exists() else {"_doc": [], "triton": {}}
    data["triton"][verdict.version] = {"pruned": entries(verdict.pruned + verdict.regressions)}
    data["triton"] = dict(sorted(data["triton"].items(), key=lambda kv: tuple(int(x) for x in kv[0].split(".")
                                                                          if x.isdigit())))
    text = "{\n" + f' "_doc": {json.dumps(data.get("_doc", []), indent=None)},\n' + ' "triton": {\n'
    text += ",\n".join(f'  {json.dumps(v)}: {{"pruned": [' + ",".join("\n   " + json.dumps(e) for e in rec["pruned"])
                       + ("\n  " if rec["pruned"] else "") + "]}" for v, rec in data["triton"].items())
    text += "\n }\n}\n"
    json.loads(text)
    _atomic_write(path, text)
    table.cache_clear()
    return path
