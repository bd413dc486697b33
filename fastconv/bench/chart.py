"""The benchmark picture: speedup over cuDNN per problem, and each problem's position on the roofline.

Left: bars of ``cuDNN time / implementation time`` per problem (log scale, 1 = parity) for fastconv and,
where it ran, the seed's kernel.  Right: achieved TFLOP/s against arithmetic intensity (log-log) with the
GPU's ceilings ``min(peak, bandwidth x intensity)`` for the run's precision; one marker per problem for
fastconv and for cuDNN.  Needs matplotlib (``pip install matplotlib``); returns None without it.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["draw"]


def draw(report: dict, path: str | Path) -> Path | None:
    """Draw ``report`` (the JSON of ``fastconv bench``) to ``path`` (PNG).  None if matplotlib is missing
    or nothing was timed."""
    try:  # matplotlib is optional (the `plot` extra)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    rows = [r for r in report["results"] if r["timed"]]
    if not rows:
        return None

    def med(r, impl):
        t = r["impls"].get(impl, {}).get("timing")
        return t["median_ms"] if t else math.nan

    names = [f"{r['problem']} {r.get('layout', '')}".strip() for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(16, max(5.0, 0.32 * len(rows) + 2)),
                                   gridspec_kw={"width_ratios": [1, 1.2]})

    # -- speedup bars -------------------------------------------------------------------------------------
    ys = list(range(len(rows)))
    sp_fast = [med(r, "cudnn") / med(r, "fastconv") for r in rows]
    sp_seed = [med(r, "cudnn") / med(r, "direct") for r in rows]
    # bars start at parity (1x): right of the line is faster than cuDNN, left is slower
    for offset, sp, label, color in ((-0.2, sp_fast, "fastconv", "tab:blue"),
                                     (0.2, sp_seed, "seed (direct)", "tab:gray")):
        ok = [(y, s) for y, s in zip(ys, sp) if math.isfinite(s)]
        ax1.barh([y + offset for y, _ in ok], [s - 1 for _, s in ok], left=1, height=0.4, label=label,
                 color=color)
        for y, s in ok:
            ax1.text(s, y + offset, f" {s:.2f}x " if s >= 1 else f" {s:.3g}x ", va="center", fontsize=7,
                     ha="left" if s >= 1 else "right")
    ax1.axvline(1.0, color="k", lw=0.8)
    ax1.set_xscale("log")
    ax1.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("speedup over cuDNN (F.conv2d), log scale")
    ax1.set_title("speedup per problem")
    ax1.legend(loc="best", fontsize=8)

    # -- roofline -----------------------------------------------------------------------------------------
    ceil = report.get("ceilings") or {}
    pclass = rows[0]["precision_class"]
    tflops = (ceil.get("tflops") or {}).get("tf32" if pclass == "tf32x3" else pclass)
    if tflops is not None and pclass == "tf32x3":
        tflops /= 3
    bw = ceil.get("bw_gbs")
    xs = [r["intensity"] for r in rows]
    lo, hi = min(xs) / 3, max(xs) * 3
    if tflops and bw:
        grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax2.plot(grid, [min(tflops, bw * x / 1e3) for x in grid], "k-", lw=1.2,
                 label=f"roofline: {tflops:.0f} TFLOP/s ({pclass}), {bw:.0f} GB/s")
    for impl, marker, color in (("fastconv", "o", "tab:blue"), ("cudnn", "s", "tab:orange")):
        pts = [(r["intensity"], r["flops"] / (med(r, impl) * 1e-3) / 1e12, r["problem"]) for r in rows
               if math.isfinite(med(r, impl))]
        ax2.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=impl,
                    zorder=3)
        if impl == "fastconv":
            for x, y, name in pts:
                ax2.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("arithmetic intensity (FLOP / byte of minimal DRAM traffic)")
    ax2.set_ylabel("achieved TFLOP/s")
    ax2.set_title(f"position against the roofline ({report.get('machine', {}).get('gpu') or '?'})")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8, loc="lower right")

    fig.suptitle(f"fastconv bench - {report.get('date', '')[:19]} - {rows[0]['label']} {rows[0]['layout']}",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
