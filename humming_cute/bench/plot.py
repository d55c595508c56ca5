"""PNG of a benchmark result: time and % of the memory floor vs M, one panel per shape, one line per
implementation (matplotlib; nothing here needs a GPU)."""

from __future__ import annotations

import math
from typing import Optional

from .core import OURS, PEERS

__all__ = ["series", "write_png"]

#: legend names (short enough for one legend row under the panels)
_LEGEND = {OURS: "humming_cute", "torch": "torch cuBLAS (dequantized W)", "int4": "torch int4 (tinygemm)",
           "humming": "Humming"}


def series(rows: list, impl: str, key: str, shape: tuple) -> tuple[list, list]:
    """(Ms, values) of `impl`'s `key` on the rows of `shape` = (N, K) where it was timed."""
    xs, ys = [], []
    for r in rows:
        e = r["impls"].get(impl, {})
        v = e.get(key)
        if (r["n"], r["k"]) == tuple(shape) and e.get("status") == "ok" and v is not None and math.isfinite(v):
            xs.append(r["m"])
            ys.append(v)
    return xs, ys


def write_png(doc: dict, path: str) -> Optional[str]:
    """Draw `doc` (the JSON document) into `path`. Returns None on success, else why nothing was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG written"
    rows = doc.get("rows", [])
    shapes = []
    for r in rows:
        if (r["n"], r["k"]) not in shapes:
            shapes.append((r["n"], r["k"]))
    if not shapes:
        return "no rows: no PNG written"
    impls = [OURS] + [p for p in PEERS if any(p in r["impls"] for r in rows)]
    fig, axes = plt.subplots(2, len(shapes), figsize=(max(8.0, 4.2 * len(shapes)), 7.5), squeeze=False)
    for j, shape in enumerate(shapes):
        for impl in impls:
            style = dict(marker="o", linewidth=2.2 if impl == OURS else 1.3, label=_LEGEND.get(impl, impl))
            xs, ys = series(rows, impl, "ms", shape)
            if xs:
                axes[0][j].plot(xs, ys, **style)
            xs, ys = series(rows, impl, "pct_of_memory_floor", shape)
            if xs:
                axes[1][j].plot(xs, ys, **style)
        axes[0][j].set_title(f"N={shape[0]} K={shape[1]}")
        axes[0][j].set_yscale("log")
        axes[0][j].set_ylabel("time (ms, median, L2 flushed)")
        axes[1][j].set_ylabel("% of memory floor")
        axes[1][j].axhline(100.0, color="grey", linewidth=0.8, linestyle="--")
        for i in range(2):
            axes[i][j].set_xscale("log", base=2)
            axes[i][j].set_xlabel("M")
            axes[i][j].grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:  # the legend of the panel with the most lines
        h, lab = ax.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels = h, lab
    cfg = doc.get("config", {})
    fig.suptitle(f"{doc.get('card', '?')}: {cfg.get('a_dtype')} x {cfg.get('b_dtype')} g{cfg.get('group_size')} "
                 f"({cfg.get('scale_dtype')} scales), copy {doc.get('copy_bandwidth_gbps', 0):.0f} GB/s, "
                 f"{doc.get('date', '')[:10]}")
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(4, len(labels))))
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
