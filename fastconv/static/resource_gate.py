"""The static resource gate: every (variant, target) compiled or read from cache, parsed, and checked.

What is checked comes from providers, functions that return :class:`~fastconv.kernels.StaticVariant` lists:
:func:`registry_variants` (``REGISTRY[name].static_variants()``, so a new kernel is covered as soon as it
is registered) and, for the gate's own negative tests, :mod:`fastconv.static.probes`.

Providers run in the compile workers, with ``TRITON_INTERPRET`` off, never in the calling process: a kernel
module may describe its GPU variants differently under the interpreter (fastconv's kernels upcast half
``tl.dot`` there), and the gate must check what runs on the GPU.  A worker returns a JSON description per
variant (:class:`VariantInfo`); the list is cached by a digest of the provider's package source, so a warm run
starts no process at all.

A :class:`GateItem` is a variant plus optional overrides (bigger blocks, more stages, a ``maxnreg``, a
different ``tensor_core`` flag) and the targets it is declared for: every shipped config must fit both
``sm_89`` (RTX 4090) and ``sm_90`` (H100) unless the variant carries a ``targets`` attribute naming fewer.
:func:`check` reads each (item, target) report from the cache or compiles it in the worker pool, then
evaluates it against :data:`~fastconv.gpus.TARGETS` (limits apply at evaluation, so changing one
needs no recompilation).

Example::

    run = check(registry_items())
    for r in run.failures:
        print(r.item.label, r.target.name, r.violations)
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ..gpus import TARGETS, TargetLimits
from ..kernels import get_kernel, registry
from ..kernels.config import KernelConfig
from .compile import JSONCache, hash_key, tree_digest
from .report import Occupancy, ResourceReport, evaluate, occupancy, tensor_core_opcodes
from .variants import REGISTRY_PROVIDER, check_overrides
from .worker import get_pool, job_timeout, share_of

__all__ = [
    "DEFAULT_TARGETS", "VariantInfo", "GateItem", "StaticResult", "GateRun", "check", "registry_items",
    "items_from", "default_jobs", "REGISTRY_PROVIDER",
]

DEFAULT_TARGETS: tuple[str, ...] = ("sm_89", "sm_90")
# What a compilation depends on, of a variant's description (label, flags and targets do not change it).
_COMPILE_FIELDS = ("function", "jit_key", "signature", "constexprs", "config")


# --------------------------------------------------------------------------------------------------------
# Caller side: variant descriptions, items, the check
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantInfo:
    """What the caller knows of a variant: its worker-made description (JSON)."""

    data: dict = field(hash=False)

    @property
    def kernel(self) -> str:
        return self.data["kernel"]

    @property
    def label(self) -> str:
        return self.data["label"]

    @property
    def config(self) -> KernelConfig:
        return KernelConfig.from_json(self.data["config"])

    @property
    def tensor_core(self) -> bool:
        return self.data["tensor_core"]

    @property
    def mode(self) -> str:
        """``dtype/precision`` the variant serves (``dtype/*``: any precision), see fastconv.kernels.fitness."""
        return self.data.get("mode", "")

    @property
    def constexprs(self) -> dict[str, str]:
        """Constexpr name -> ``repr`` of its value."""
        return dict(self.data["constexprs"])

    @property
    def signature(self) -> dict[str, str]:
        return dict(self.data["signature"])

    @property
    def fingerprint(self) -> str:
        return self.data["fingerprint"]

    def with_overrides(self, overrides: dict[str, Any]) -> VariantInfo:
        """The description of the overridden variant (mirrors :func:`apply_overrides`)."""
        check_overrides(overrides)
        if not overrides:
            return self
        cx = {**self.constexprs, **{k: repr(v) for k, v in overrides.get("constexprs", {}).items()}}
        base = self.config
        blocks = {k: (overrides.get("constexprs", {}).get(k, val)) for k, val in base.blocks}
        cfg = KernelConfig.of(num_warps=overrides.get("num_warps", base.num_warps),
                              num_stages=overrides.get("num_stages", base.num_stages), **blocks)
        sig = {**self.signature, **overrides.get("signature", {})}
        return VariantInfo({**self.data, "constexprs": sorted(cx.items()), "signature": sorted(sig.items()),
                            "config": cfg.to_json(),
                            "tensor_core": overrides.get("tensor_core", self.tensor_core),
                            "label": overrides.get("label", self.label)})


@dataclass(frozen=True, eq=False)
class GateItem:
    """One variant to check: where it comes from, overrides, compile-only options, and its targets."""

    provider: str
    args: tuple
    base: VariantInfo
    overrides: dict[str, Any] = field(default_factory=dict)
    maxnreg: int | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS

    @cached_property
    def variant(self) -> VariantInfo:
        """The description of what is compiled (overrides applied)."""
        return self.base.with_overrides(self.overrides)

    @property
    def kernel(self) -> str:
        return self.variant.kernel

    @property
    def label(self) -> str:
        return self.variant.label

    def derive(self, *, constexprs: dict | None = None, signature: dict | None = None,
               num_warps: int | None = None, num_stages: int | None = None, tensor_core: bool | None = None,
               maxnreg: int | None = None, label: str | None = None,
               targets: tuple[str, ...] | None = None) -> GateItem:
        """A modified copy (negative tests: blown-up blocks, forced spills, a wrong tensor-core flag)."""
        ov = dict(self.overrides)
        for k, val in (("constexprs", constexprs), ("signature", signature)):
            if val:
                ov[k] = {**ov.get(k, {}), **val}
        for k, val in (("num_warps", num_warps), ("num_stages", num_stages), ("tensor_core", tensor_core),
                       ("label", label)):
            if val is not None:
                ov[k] = val
        return replace(self, overrides=ov, maxnreg=self.maxnreg if maxnreg is None else maxnreg,
                       targets=self.targets if targets is None else tuple(targets))

    def report_key(self, target: str) -> str:
        """The cache key of this item's report on ``target``: what the compilation depends on, no more (two
        variants that differ only in label or launch-side settings share one compilation)."""
        v = self.variant.data
        if v.get("jit_key") is None:
            raise ValueError(f"{self.label}: no Triton cache key in its description")
        payload = {"compile": {k: v[k] for k in _COMPILE_FIELDS}, "maxnreg": self.maxnreg,
                   "target": [target, TARGETS[target].capability]}
        return "report-" + hash_key(payload)

    def job(self, target: str) -> dict:
        return {"op": "compile", "ref": [self.provider, list(self.args)], "target": target,
                "fingerprint": self.base.fingerprint, "overrides": self.overrides, "maxnreg": self.maxnreg}


def _provider_digest(provider: str) -> str:
    """Digest of the source of the top-level package that holds ``provider`` (all its ``.py`` files)."""
    top = provider.partition(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(top)
    root = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    return tree_digest(root, "**/*.py") if root.is_dir() else tree_digest(root.parent, root.name)


@dataclass
class _Stats:
    compiled: int = 0
    cached: int = 0
    described: int = 0


def _describe_all(refs: list[tuple[str, tuple]], cache: JSONCache, use_cache: bool, jobs: int,
                  stats: _Stats) -> dict[tuple, list[dict]]:
    out, keys, todo = {}, {}, []
    for ref in refs:
        keys[ref] = "variants-" + hash_key({"provider": ref[0], "args": list(ref[1]),
                                            "source": _provider_digest(ref[0])})
        hit = cache.get(keys[ref]) if use_cache else None
        if hit is not None:
            out[ref] = hit
        else:
            todo.append(ref)
    if todo:
        answers = get_pool(jobs).map([{"op": "describe", "ref": [p, list(a)]} for p, a in todo])
        for ref, answer in zip(todo, answers):
            if "error" in answer:
                raise RuntimeError(f"describing {ref[0]}{ref[1]} failed in a compile worker:\n{answer['error']}")
            out[ref] = answer["variants"]
            cache.put(keys[ref], out[ref])
            stats.described += 1
    return out


def items_from(provider: str, *args: Any, cache: JSONCache | None = None, use_cache: bool = True,
               jobs: int | None = None) -> list[GateItem]:
    """Gate items for every variant ``provider(*args)`` returns, each for its declared targets."""
    return _items([(provider, tuple(args))], cache, use_cache, jobs)


def registry_items(kernels: list[str] | None = None, *, cache: JSONCache | None = None,
                   use_cache: bool = True, jobs: int | None = None) -> list[GateItem]:
    """Gate items for every static variant of every registered kernel (or of ``kernels``)."""
    names = list(registry()) if kernels is None else [get_kernel(k).name for k in kernels]
    return _items([(REGISTRY_PROVIDER, (name,)) for name in names], cache, use_cache, jobs)


def _items(refs, cache, use_cache, jobs) -> list[GateItem]:
    described = _describe_all(refs, cache or JSONCache(), use_cache, jobs or default_jobs(), _Stats())
    return [GateItem(p, a, VariantInfo(d), targets=tuple(d["targets"]) or DEFAULT_TARGETS)
            for (p, a) in refs for d in described[(p, a)]]


@dataclass
class StaticResult:
    """The gate's verdict on one item for one target."""

    item: GateItem
    target: TargetLimits
    report: ResourceReport | None
    violations: list[str]
    occupancy: Occupancy | None
    source: str  # "cache" or "compiled"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def row(self) -> dict:
        """A flat, JSON-able row (the ``inspect`` table and ``--json`` output)."""
        v, r, o = self.item.variant, self.report, self.occupancy
        row = {
            "kernel": v.kernel, "variant": v.label, "config": v.config.name(), "target": self.target.name,
            "tensor_core": v.tensor_core, "maxnreg": self.item.maxnreg, "ok": self.ok,
            "violations": self.violations, "source": self.source,
        }
        if r is not None:
            row.update({
                "registers": r.registers, "stack_bytes": r.stack_bytes, "local_bytes": r.local_bytes,
                "spill_stores": r.spill_stores, "spill_loads": r.spill_loads, "shared_bytes": r.shared_bytes,
                "tensor_core_ops": r.count(*tensor_core_opcodes(self.target)), "ffma": r.count("FFMA"),
                "instructions": r.instructions, "compile_seconds": r.compile_seconds, "arch": r.arch,
            })
        if o is not None:
            row.update({"blocks_per_sm": o.blocks_per_sm, "warps_per_sm": o.warps_per_sm,
                        "occupancy": round(o.fraction, 4), "limiter": o.limiter})
        if self.error:
            row["error"] = self.error
        return row


@dataclass
class GateRun:
    results: list[StaticResult]
    compiled: int
    cached: int
    workers_started: int
    seconds: float

    @property
    def failures(self) -> list[StaticResult]:
        return [r for r in self.results if not r.ok]

    def result(self, item: GateItem, target: str) -> StaticResult:
        for r in self.results:
            if r.item is item and r.target.name == target:
                return r
        raise KeyError((item.label, target))


def default_jobs() -> int:
    """Compile workers of this process: ``$FASTCONV_STATIC_JOBS``, else the CPU count (at most 8), shared out
    between the pytest-xdist workers of a test session (:func:`~fastconv.static.worker.share_of`)."""
    env = os.environ.get("FASTCONV_STATIC_JOBS")
    return share_of(max(1, int(env)) if env else max(1, min(os.cpu_count() or 1, 8)))


def check(items: list[GateItem], *, targets: list[str] | tuple[str, ...] | None = None,
          jobs: int | None = None, use_cache: bool = True, cache: JSONCache | None = None) -> GateRun:
    """Check every item on each of its declared targets (restricted to ``targets`` when given)."""
    t0 = time.perf_counter()
    if targets is not None:
        unknown = sorted(set(targets) - set(TARGETS))
        if unknown:
            raise ValueError(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    cache = cache if cache is not None else JSONCache()
    slots = [(item, name, item.report_key(name)) for item in items for name in item.targets
             if targets is None or name in targets]

    reports: dict[str, ResourceReport] = {}
    if use_cache:
        for _, _, key in slots:
            if key not in reports and (hit := cache.get(key)) is not None:
                reports[key] = ResourceReport.from_json(hit)
    cached_keys = set(reports)
    todo: dict[str, tuple[GateItem, str]] = {}
    for item, name, key in slots:
        if key not in reports:
            todo.setdefault(key, (item, name))
    errors: dict[str, str] = {}
    workers = compiled = 0
    if todo:
        pool = get_pool(jobs or default_jobs())
        started = pool.started
        made, errors = _compile(todo, cache, use_cache, pool)
        workers = pool.started - started
        compiled = sum(1 for key in made if made[key][1])
        cached_keys |= {key for key in made if not made[key][1]}
        reports.update({key: report for key, (report, _) in made.items()})
    results = []
    for item, name, key in slots:
        target = TARGETS[name]
        if key in errors:
            last = errors[key].strip().splitlines()[-1]
            results.append(StaticResult(item, target, None, [f"compile error: {last}"], None, "compiled",
                                        errors[key]))
            continue
        r = reports[key]
        occ = occupancy(registers=r.registers, shared_bytes=r.shared_bytes, num_warps=r.num_warps,
                        target=target)
        verdict = evaluate(r, target, tensor_core=item.variant.tensor_core)
        results.append(StaticResult(item, target, r, verdict, occ, "cache" if key in cached_keys else "compiled"))
    return GateRun(results, compiled=compiled, cached=len(cached_keys), workers_started=workers,
                   seconds=time.perf_counter() - t0)


def _compile(todo: dict[str, tuple[GateItem, str]], cache: JSONCache, use_cache: bool, pool
             ) -> tuple[dict[str, tuple[ResourceReport, bool]], dict[str, str]]:
    """Compile the ``todo`` keys: ``({key: (report, compiled here)}, {key: error})``.

    With the cache on, a key is compiled only by the process that claims it first: a key another process
    (an xdist worker, another user's run) is compiling is skipped and its entry read once that process is
    done, or compiled here after all if it made none.  The report stored first wins (see :class:`JSONCache`)."""
    keys = list(todo)
    held: dict[str, Any] = {}

    def claim(i: int) -> dict | None:
        if not use_cache:
            return None
        lock = cache.claim(keys[i])
        if lock is None:
            return {"elsewhere": True}
        hit = cache.get(keys[i])  # made while this run was busy with other keys
        if hit is not None:
            lock.close()
            return {"report": hit, "elsewhere": True}
        held[keys[i]] = lock
        return None

    made: dict[str, tuple[ResourceReport, bool]] = {}
    errors: dict[str, str] = {}

    def take(key: str, answer: dict) -> None:
        if "report" in answer:
            here = not answer.get("elsewhere")
            stored = cache.put(key, answer["report"], replace=not use_cache) if here else answer["report"]
            made[key] = (ResourceReport.from_json(stored), here)
        else:
            errors[key] = answer.get("error", "unknown error")

    def done(i: int, answer: dict) -> None:  # stored, then the claim let go: a waiting process reads it now
        take(keys[i], answer)
        if keys[i] in held:
            held.pop(keys[i]).close()

    try:
        answers = pool.map([todo[key][0].job(todo[key][1]) for key in keys], claim=claim, done=done)
        for key, answer in zip(keys, answers):
            if answer.get("elsewhere") and "report" in answer:
                take(key, answer)
    finally:
        for lock in list(held.values()):
            lock.close()
    late = [key for key, answer in zip(keys, answers) if answer.get("elsewhere") and "report" not in answer]
    again = []
    for key in late:
        hit = cache.wait_for(key, job_timeout())
        if hit is not None:
            take(key, {"report": hit, "elsewhere": True})
        else:  # the other process failed on it: compile it here, reporting the error as ours
            again.append(key)
    for key, answer in zip(again, pool.map([todo[key][0].job(todo[key][1]) for key in again])):
        take(key, answer)
    return made, errors
