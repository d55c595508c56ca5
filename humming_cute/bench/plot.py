"""PNG of a benchmark result: time and % of the memory floor vs M (MoE: vs tokens), one panel per shape (MoE: per
preset and projection), one line per implementation (matplotlib; nothing here needs a GPU). An 8-bit activation
run adds humming_cute's end-to-end time (GEMM + activation quantization) as a dashed line; rows also timed back to
back (``--back-to-back-m``) add those times as dotted lines."""

from __future__ import annotations

import math
from typing import Optional

from .core import DENSE_PEERS, MOE_PEERS, OURS

__all__ = ["series", "panel_of", "x_of", "write_png", "main"]

#: legend names (short enough for one legend row under the panels)
_LEGEND = {OURS: "humming_cute", "torch": "torch cuBLAS (dequantized W)", "int4": "torch int4 (tinygemm)",
           "scaled_mm": "torch._scaled_mm fp8", "int_mm": "torch._int_mm int8", "humming": "Humming"}
_MOE_LEGEND = {OURS: "humming_cute moe_gemm", "torch": "torch per-expert loop (dequantized W)",
               "humming": "Humming (indexed GEMM)"}


def panel_of(row: dict):
    """The panel a row is drawn in: ``(N, K)`` for a dense row, its ``panel`` string (preset and projection)
    for an MoE row."""
    return row["panel"] if row.get("mode") == "moe" else (row["n"], row["k"])


def x_of(row: dict) -> int:
    """The x value of a row: M (dense) or the token count (MoE)."""
    return row["tokens"] if row.get("mode") == "moe" else row["m"]


def series(rows: list, impl: str, key: str, panel) -> tuple[list, list]:
    """(xs, values) of `impl`'s `key` on the rows of `panel` (``(N, K)``, or an MoE panel string) where it was
    timed; xs are Ms (dense) or token counts (MoE)."""
    want = panel if isinstance(panel, str) else tuple(panel)
    xs, ys = [], []
    for r in rows:
        e = r["impls"].get(impl, {})
        v = e.get(key)
        if panel_of(r) == want and e.get("status") == "ok" and v is not None and math.isfinite(v):
            xs.append(x_of(r))
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
        if panel_of(r) not in shapes:
            shapes.append(panel_of(r))
    if not shapes:
        return "no rows: no PNG written"
    is_moe = any(r.get("mode") == "moe" for r in rows)
    legend = _MOE_LEGEND if is_moe else _LEGEND
    impls = [OURS] + [p for p in (MOE_PEERS if is_moe else DENSE_PEERS) if any(p in r["impls"] for r in rows)]
    fig, axes = plt.subplots(2, len(shapes), figsize=(max(8.0, 4.2 * len(shapes)), 7.5), squeeze=False)
    for j, shape in enumerate(shapes):
        for c, impl in enumerate(impls):
            color = f"C{c}"
            style = dict(marker="o", linewidth=2.2 if impl == OURS else 1.3, label=legend.get(impl, impl),
                         color=color)
            b2b = dict(marker="x", linewidth=1.2, linestyle=":", color=color,
                       label=f"{legend.get(impl, impl)}, back to back")
            for i, (key, b2b_key) in enumerate((("ms", "ms_back_to_back"),
                                                 ("pct_of_memory_floor", "pct_of_memory_floor_back_to_back"))):
                xs, ys = series(rows, impl, key, shape)
                if xs:
                    axes[i][j].plot(xs, ys, **style)
                xs, ys = series(rows, impl, b2b_key, shape)      # dense runs with --back-to-back-m
                if xs:
                    axes[i][j].plot(xs, ys, **b2b)
        xs, ys = series(rows, OURS, "ms_end_to_end", shape)
        if xs:
            axes[0][j].plot(xs, ys, marker="o", linewidth=1.6, linestyle="--",
                            label="humming_cute + quantize_input")
        if isinstance(shape, str):
            first = next(r for r in rows if panel_of(r) == shape)
            axes[0][j].set_title(f"{shape}: E={first['num_experts']} top_k={first['top_k']} N={first['n']} "
                                 f"K={first['k']}", fontsize=9)
        else:
            axes[0][j].set_title(f"N={shape[0]} K={shape[1]}")
        axes[0][j].set_yscale("log")
        axes[0][j].set_ylabel("time (ms, median; L2 flushed, dotted: back to back)")
        axes[1][j].set_ylabel("% of memory floor")
        axes[1][j].axhline(100.0, color="grey", linewidth=0.8, linestyle="--")
        for i in range(2):
            axes[i][j].set_xscale("log", base=2)
            axes[i][j].set_xlabel("tokens" if isinstance(shape, str) else "M")
            axes[i][j].grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:  # the legend of the panel with the most lines
        h, lab = ax.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels = h, lab
    cfg = doc.get("config", {})
    fig.suptitle(f"{doc.get('card', '?')}: {'MoE ' if is_moe else ''}{cfg.get('a_dtype')} x {cfg.get('b_dtype')} "
                 f"g{cfg.get('group_size')} ({cfg.get('scale_dtype')} scales), "
                 f"copy {doc.get('copy_bandwidth_gbps', 0):.0f} GB/s, {doc.get('date', '')[:10]}")
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(4, len(labels))))
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv=None) -> int:
    """``python -m humming_cute.bench.plot RESULT.json OUT.png``: redraw the plot of a saved benchmark run."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m humming_cute.bench.plot", description=main.__doc__)
    p.add_argument("json", help="a JSON file written by `python -m humming_cute.bench --json`")
    p.add_argument("png", help="where to write the plot")
    args = p.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    why = write_png(doc, args.png)
    if why is not None:
        print(why)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
