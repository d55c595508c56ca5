"""Render a bench JSON as the Markdown table the README shows: `python -m humming_cute.bench.markdown FILE.json`.

Numbers come from the JSON only, so a README table can always be regenerated from the committed results."""

from __future__ import annotations

import json
import sys
from typing import Optional

__all__ = ["table", "back_to_back_table"]


def _ms(impl: Optional[dict], key: str = "ms") -> str:
    ok = impl and impl.get("status") == "ok" and impl.get(key) is not None
    return f"{impl[key]:.4f}" if ok else "-"


def _ratio(row: dict, peer: str, key: str = "ratio_vs") -> str:
    r = row.get(key, {}).get(peer)
    return f"{r:.2f}" if r is not None else "-"


def table(result: dict) -> str:
    """The Markdown table of one bench result (dense or MoE mode). An 8-bit activation run (rows with
    ``ratio_end_to_end_vs``) adds humming_cute's quantization and end-to-end times and the end-to-end ratios."""
    rows = result["rows"]
    peers = result["config"].get("peers", [])
    names = {"torch": "cuBLAS fp16" if result["config"]["mode"] == "dense" else "torch loop", "int4": "torch int4",
             "scaled_mm": "torch._scaled_mm fp8", "int_mm": "torch._int_mm", "humming": "Humming"}
    moe = result["config"]["mode"] == "moe"
    act8 = any("ratio_end_to_end_vs" in row for row in rows)
    head = ["layer", "tokens"] if moe else ["N x K", "M"]
    head += ["humming-cute ms"] + (["quantize ms", "end-to-end ms"] if act8 else [])
    head += ["% memory floor", "% compute floor"]
    head += [f"{names.get(p, p)} ms" for p in peers] + [f"vs {names.get(p, p)}" for p in peers]
    head += [f"vs {names.get(p, p)} end-to-end" for p in peers] if act8 else []
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for row in rows:
        ours = row["impls"].get("humming_cute", {})
        lead = ([row["panel"], str(row["tokens"])] if moe else [f"{row['n']} x {row['k']}", str(row["m"])])
        ok = ours.get("status") == "ok"
        cells = lead + [_ms(ours)]
        if act8:
            cells += [_ms(ours, "quant_ms"), _ms(ours, "ms_end_to_end")]
        cells += [f"{ours['pct_of_memory_floor']:.1f} %" if ok else "-",
                  f"{ours['pct_of_compute_floor']:.1f} %" if ok else "-"]
        cells += [_ms(row["impls"].get(p)) for p in peers] + [_ratio(row, p) for p in peers]
        if act8:
            cells += [_ratio(row, p, "ratio_end_to_end_vs") for p in peers]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def back_to_back_table(result: dict) -> Optional[str]:
    """The Markdown table of a dense run's back-to-back timings (rows with ``ratio_back_to_back_vs``): our time
    and % of the memory floor, each peer's time and our ratio to it; None when the run has none."""
    rows = [row for row in result["rows"] if "ratio_back_to_back_vs" in row]
    if not rows:
        return None
    peers = result["config"].get("peers", [])
    names = {"torch": "cuBLAS fp16", "int4": "torch int4", "scaled_mm": "torch._scaled_mm fp8",
             "int_mm": "torch._int_mm", "humming": "Humming"}
    moe = result["config"]["mode"] == "moe"
    if moe:
        names["torch"] = "torch loop"
    head = (["layer", "tokens"] if moe else ["N x K", "M"]) + ["humming-cute ms", "% memory floor"] + [
        f"{names.get(p, p)} ms" for p in peers] + [
        f"vs {names.get(p, p)}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for row in rows:
        ours = row["impls"].get("humming_cute", {})
        pct = ours.get("pct_of_memory_floor_back_to_back")
        lead = [row["panel"], str(row["tokens"])] if moe else [f"{row['n']} x {row['k']}", str(row["m"])]
        cells = lead + [_ms(ours, "ms_back_to_back"),
                 f"{pct:.1f} %" if pct is not None else "-"]
        cells += [_ms(row["impls"].get(p), "ms_back_to_back") for p in peers]
        cells += [_ratio(row, p, "ratio_back_to_back_vs") for p in peers]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m humming_cute.bench.markdown RESULT.json [...]", file=sys.stderr)
        return 2
    for path in argv:
        with open(path) as f:
            doc = json.load(f)
        print(table(doc))
        b2b = back_to_back_table(doc)
        if b2b:
            print("\nback to back:\n" + b2b)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
