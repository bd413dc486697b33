"""Config choice without timing: nearest measured problems, or a rule where nothing was measured.

The tuner times every candidate config of a problem (:mod:`fastconv.tuning.autotuner`); with
``FASTCONV_TUNE_RECORD`` set it also writes all those times down (:func:`fastconv.tuning.autotuner.record`).
``scripts/fit_heuristic.py`` turns such records into the table ``fastconv/kernels/tables/heuristic.json``,
one entry per GPU architecture (``"sm_90"``), and this module picks configs from it.

The model: k nearest neighbours in log-feature space over *normalised* times.

- A problem's features (:func:`features`) are log2 of the GEMM sizes (output pixels M, output channels per
  group N, reduction K), of the input channels per group, taps, groups, stride and output map size.  Only
  problems of the same *group* -- kernel, dtype, precision and input layout, which decide the binaries and
  the memory traffic -- are neighbours.
- A measured problem keeps each config's time divided by the best time of that problem (1.0 = the best,
  1.3 = 30% slower); a config that failed or spilled there counts as :data:`WORST`.
- A new problem's candidates are scored by the weighted mean of log(normalised time) over its ``k`` nearest
  measured problems (weights ``1 / (d^2 + EPS)``: a near-identical problem decides); a candidate a neighbour
  did not measure gets that neighbour's worst ratio.  The lowest score wins; ties go to the earlier
  candidate (the tables' order).  A problem measured exactly (distance 0) is decided by its own times.

Where no measurement exists for the GPU's architecture or the group (a new GPU, a new dtype), the analytic
rule (:func:`rule_choice`) decides: *the largest output tile that still gives at least two waves of programs
on the GPU's SMs* (so every SM gets work twice and the tail of the last wave is small); when no tile gives
two waves, the smallest tile (most programs).  Ties keep the candidates' order (which puts, e.g., the input
layout's own depthwise tiles and the NHWC pre-pass variant first).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..kernels.config import KernelConfig, table
from ..problem import ConvProblem

__all__ = ["FEATURES", "features", "group_of", "Heuristic", "default_heuristic", "rule_choice", "programs",
           "normalised", "fit_table", "leave_one_out", "cover", "K_NEIGHBOURS", "WORST", "EPS"]

FEATURES = ("log2_m", "log2_n", "log2_k", "log2_cin_g", "log2_taps", "log2_groups", "log2_stride", "log2_out_hw")
K_NEIGHBOURS = 4
WORST = 10.0  # normalised time of a config that failed or spilled where it was measured
EPS = 0.05  # in squared log2 units: a neighbour 0.22 octaves away weighs half of an identical one


def _log2(v: float) -> float:
    return math.log2(max(1.0, float(v)))


def features(p: ConvProblem) -> tuple[float, ...]:
    """The problem as a point of the model's space (:data:`FEATURES`)."""
    return (_log2(p.gemm_m), _log2(p.c_out_per_group), _log2(p.gemm_k), _log2(p.c_in_per_group),
            _log2(p.kh * p.kw), _log2(p.groups), _log2(max(p.stride_h, p.stride_w)), _log2(p.oh * p.ow))


def group_of(kernel: str, dtype: str, precision: str, layout: str) -> str:
    """Problems that may be neighbours: same kernel, dtype, precision and input layout."""
    return f"{kernel}/{dtype}/{precision}/{layout}"


def normalised(times_ms: dict[str, float | None]) -> dict[str, float]:
    """Times of one problem's configs divided by the best; failed/spilled (None, inf, NaN) -> :data:`WORST`."""
    finite = [t for t in times_ms.values() if t is not None and math.isfinite(t) and t > 0]
    if not finite:
        return {}
    best = min(finite)
    return {name: (min(WORST, t / best) if t is not None and math.isfinite(t) and t > 0 else WORST)
            for name, t in times_ms.items()}


# ----------------------------------------------------------------------------------------------------------
# The rule (no data)
# ----------------------------------------------------------------------------------------------------------
def _tile(cfg: KernelConfig) -> int:
    """Output elements one program computes: the product of the config's BLOCK_* except the reduction's."""
    n = 1
    for name, v in cfg.blocks:
        if name.startswith("BLOCK_") and name != "BLOCK_K":
            n *= v
    return n


def programs(p: ConvProblem, cfg: KernelConfig) -> int:
    """About how many programs a launch of ``cfg`` on ``p`` has: output elements over the tile's."""
    out = p.batch * p.c_out * p.oh * p.ow
    return max(1, math.ceil(out / _tile(cfg)))


def rule_choice(p: ConvProblem, candidates: Sequence[KernelConfig], sm_count: int, waves: float = 2.0
                ) -> KernelConfig:
    """The largest tile with at least ``waves`` waves of programs on ``sm_count`` SMs; else the smallest tile.
    Ties keep the order of ``candidates``."""
    enough = [c for c in candidates if programs(p, c) >= waves * sm_count]
    if enough:
        return max(enough, key=_tile)  # max() keeps the first of equals
    return min(candidates, key=_tile)


# ----------------------------------------------------------------------------------------------------------
# The neighbours model
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One measured problem: its group, features and normalised time per config name."""

    group: str
    x: tuple[float, ...]
    times: dict[str, float]
    problem: str = ""


class Heuristic:
    """The neighbours model over the rows of one GPU architecture (see the module's docstring)."""

    def __init__(self, rows: Iterable[Row], k: int = K_NEIGHBOURS):
        self.k = k
        self.groups: dict[str, list[Row]] = {}
        for r in rows:
            self.groups.setdefault(r.group, []).append(r)

    @classmethod
    def from_json(cls, data: dict) -> Heuristic:
        return cls(Row(r["group"], tuple(r["x"]), dict(r["times"]), r.get("problem", "")) for r in data["rows"])

    def __len__(self) -> int:
        return sum(len(v) for v in self.groups.values())

    def neighbours(self, group: str, x: Sequence[float], exclude: str | None = None) -> list[tuple[float, Row]]:
        """The ``k`` nearest rows of ``group`` as ``(squared distance, row)``, nearest first (rows whose
        ``problem`` equals ``exclude`` left out: leave-one-out)."""
        rows = [r for r in self.groups.get(group, ()) if exclude is None or r.problem != exclude]
        d = sorted(((sum((a - b) ** 2 for a, b in zip(x, r.x)), i, r) for i, r in enumerate(rows)),
                   key=lambda t: (t[0], t[1]))
        return [(dist, r) for dist, _, r in d[:self.k]]

    def scores(self, group: str, x: Sequence[float], names: Sequence[str], exclude: str | None = None
               ) -> dict[str, float] | None:
        """Score (weighted mean log normalised time; lower is better) of each name, or None without data."""
        near = self.neighbours(group, x, exclude)
        if not near:
            return None
        if near[0][0] == 0.0:  # this very problem was measured: its own times decide
            near = [n for n in near if n[0] == 0.0]
        if not any(name in r.times for _, r in near for name in names):
            return None
        total = {name: 0.0 for name in names}
        weight = 0.0
        for dist, r in near:
            w = 1.0 / (dist + EPS)
            worst = max(r.times.values())
            for name in names:
                total[name] += w * math.log(r.times.get(name, worst))
            weight += w
        return {name: s / weight for name, s in total.items()}

    def choose(self, group: str, p: ConvProblem, candidates: Sequence[KernelConfig],
               exclude: str | None = None) -> KernelConfig | None:
        """The candidate with the lowest score (first of equals), None when the model has no data here."""
        names = [c.name() for c in candidates]
        s = self.scores(group, features(p), names, exclude)
        if s is None:
            return None
        best = min(range(len(candidates)), key=lambda i: (s[names[i]], i))
        return candidates[best]


@functools.cache
def default_heuristic(arch: str) -> Heuristic | None:
    """The packaged model of GPU architecture ``arch`` (``"sm_90"``), None when the table has none."""
    try:
        data = table("heuristic")["archs"].get(arch)
    except FileNotFoundError:
        return None
    return Heuristic.from_json(data) if data else None


# ----------------------------------------------------------------------------------------------------------
# Fitting and evaluating (scripts/fit_heuristic.py)
# ----------------------------------------------------------------------------------------------------------
def _row_of(rec: dict) -> Row | None:
    p = ConvProblem(**rec["problem"])
    times = normalised(rec["times_ms"])
    if not times:
        return None
    return Row(group_of(rec["kernel"], p.dtype, rec["precision"], rec["layout"]), features(p),
               {k: round(v, 4) for k, v in times.items()}, _record_id(rec))


def _record_id(rec: dict) -> str:
    p = ConvProblem(**rec["problem"])
    return f"{rec['kernel']} {p.short()} {rec['precision']} {rec['layout']}"


def fit_table(records: Iterable[dict]) -> dict[str, dict]:
    """Tuner records (:func:`fastconv.tuning.autotuner.record`) -> ``{arch: {"rows": [...], ...}}`` for
    ``tables/heuristic.json``.  A problem measured twice keeps its latest record."""
    latest: dict[tuple[str, str], dict] = {}
    for rec in records:
        latest[(rec["arch"], _record_id(rec))] = rec
    out: dict[str, dict] = {}
    for (arch, _), rec in latest.items():
        row = _row_of(rec)
        if row is None:
            continue
        entry = out.setdefault(arch, {"gpu": rec.get("gpu"), "triton": rec.get("triton"), "rows": []})
        entry["rows"].append({"group": row.group, "problem": row.problem, "x": [round(v, 4) for v in row.x],
                              "times": row.times})
    for entry in out.values():
        entry["rows"].sort(key=lambda r: (r["group"], r["x"]))
    return out


def cover(rows: Sequence[Row], tolerance: float) -> list[str]:
    """A small set of config names such that every row has one within ``1 + tolerance`` of its best
    (greedy set cover: the config that covers most rows still uncovered, ties to the lowest total log time
    over all rows).  How many configs a group's best choices need: its size says whether a fixed palette
    per group could replace the per-shape choice (fewer binaries per network) at that cost."""
    names = sorted({n for r in rows for n in r.times})
    total = {n: sum(math.log(r.times.get(n, WORST)) for r in rows) for n in names}
    left = list(rows)
    chosen: list[str] = []
    while left:
        covered = {n: sum(r.times.get(n, WORST) <= 1 + tolerance for r in left) for n in names}
        best = max(names, key=lambda n: (covered[n], -total[n]))
        if covered[best] == 0:
            break
        chosen.append(best)
        left = [r for r in left if r.times.get(best, WORST) > 1 + tolerance]
    return chosen


def leave_one_out(records: Sequence[dict], arch: str, which: Iterable[str] | None = None, sm_count: int = 132,
                  palette: float | None = None) -> list[dict]:
    """For each record of ``arch`` (or those whose problem id is in ``which``): the time of the config the
    model picks with that problem's own record left out, over the best measured time; and the same for the
    analytic rule; and the pick of the model fitted on every record, this one included (what the fitted table
    ships: for a problem it holds, its own measurement decides).  ``{"problem" (id), "short", "layout",
    "picked", "ratio", "fitted_ratio", "rule_ratio", "best", "best_ms", "source"}`` per record ("source":
    ``"heuristic"``, or ``"rule"`` where the model had no neighbour).

    ``palette``: the model may pick only from its group's :func:`cover` at this tolerance (fitted without
    the left-out row), where that leaves a candidate: what restricting each group to a few configs costs."""
    fitted = fit_table(records).get(arch, {"rows": []})
    model = Heuristic.from_json(fitted)
    wanted = set(which) if which is not None else None
    out = []
    seen = set()
    for rec in reversed(records):  # the latest record of each problem
        if rec["arch"] != arch:
            continue
        rid = _record_id(rec)
        if rid in seen or (wanted is not None and rid not in wanted):
            continue
        seen.add(rid)
        times = {k: v for k, v in rec["times_ms"].items() if v is not None and math.isfinite(v)}
        if not times:
            continue
        p = ConvProblem(**rec["problem"])
        candidates = [KernelConfig.from_json(rec["configs"][name]) for name in rec["times_ms"]]
        group = group_of(rec["kernel"], p.dtype, rec["precision"], rec["layout"])
        offered = candidates
        if palette is not None:
            allowed = set(cover([r for r in model.groups.get(group, ()) if r.problem != rid], palette))
            offered = [c for c in candidates if c.name() in allowed] or candidates
        ruled = rule_choice(p, candidates, sm_count)
        picked = model.choose(group, p, offered, exclude=rid)
        source = "heuristic"
        if picked is None:
            picked, source = ruled, "rule"
        shipped = model.choose(group, p, candidates) or ruled  # the table ships no palette
        best = min(times.values())
        out.append({"problem": rid, "short": p.short(), "layout": rec["layout"], "picked": picked.name(),
                    "ratio": times.get(picked.name(), math.inf) / best,
                    "fitted_ratio": times.get(shipped.name(), math.inf) / best,
                    "rule_ratio": times.get(ruled.name(), math.inf) / best,
                    "best": min(times, key=times.get), "best_ms": best, "source": source})
    out.reverse()
    return out
