"""Summarize an Nsight Compute source-page CSV (``ncu --import R --page source --print-source sass --csv``): the SASS
instructions with the most warp-stall samples, and the samples summed by opcode. Column names are found by their
words ("Source", "Warp Stall Sampling (All Samples)"), so small changes between ncu versions do not matter. Usage:

    python3 benchmarks/ncu_top_sass.py SOURCE.csv [--top 40]
"""
import argparse
import collections
import csv
import re
import sys


def _column(header, *words):
    for i, name in enumerate(header):
        if all(w.lower() in name.lower() for w in words):
            return i
    return None


def _number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args(argv)
    with open(args.csv, newline="") as f:
        rows = list(csv.reader(line for line in f if not line.startswith("==")))
    head_at = next((i for i, r in enumerate(rows) if _column(r, "source") is not None
                    and _column(r, "stall sampling", "all") is not None), None)
    if head_at is None:
        print("no header with 'Source' and 'Warp Stall Sampling (All Samples)' columns", file=sys.stderr)
        return 2
    header = rows[head_at]
    src, allc = _column(header, "source"), _column(header, "stall sampling", "all")
    notc = _column(header, "stall sampling", "not")
    addr = _column(header, "address")
    body = [r for r in rows[head_at + 1:] if len(r) == len(header)]
    total = sum(_number(r[allc]) for r in body) or 1.0
    print(f"{len(body)} SASS lines, {total:.0f} stall samples")
    by_op = collections.Counter()
    for r in body:
        op = re.sub(r"^@!?U?P\w+\s+", "", r[src].strip()).split(" ")[0]
        by_op[op] += _number(r[allc])
    print("samples by opcode:")
    for op, n in by_op.most_common(20):
        print(f"  {op:24s} {n:8.0f} {100 * n / total:5.1f} %")
    print(f"top {args.top} instructions (all samples, not-issued samples):")
    for r in sorted(body, key=lambda r: -_number(r[allc]))[:args.top]:
        extra = f" {_number(r[notc]):7.0f}" if notc is not None else ""
        where = r[addr] if addr is not None else ""
        print(f"  {where:>8} {_number(r[allc]):7.0f}{extra}  {r[src].strip()[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
