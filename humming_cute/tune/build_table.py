"""Measure the table of tuned configs shipped for a GPU: ``python -m humming_cute.tune.build_table`` runs
`humming_cute.autotune` over shapes and M on this GPU and merges the winners into
``humming_cute/tune/tables/<GPU name>.json`` (keys with version ``*``), which `gemm` consults where the user's own
tuning cache has no entry. Problems where the heuristic default stays (no candidate `--min-gain` faster) get no
entry, so later changes to the heuristics still reach them. Usage (on the GPU, once per weight format)::

    python -m humming_cute.tune.build_table --b-dtype uint4 --group-size 128
    python -m humming_cute.tune.build_table --b-dtype int8 --group-size 0 --shapes 4096x4096 --m 1,16
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

DEFAULT_SHAPES = "8192x8192,4096x4096,28672x4096,4096x14336"
DEFAULT_MS = "1,16,64,256,1024,4096"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m humming_cute.tune.build_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--a-dtype", default="float16", help="activation dtype (float16, bfloat16, or an 8-bit one)")
    p.add_argument("--b-dtype", default="uint4")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--scale-dtype", default="float16")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated NxK")
    p.add_argument("--m", default=DEFAULT_MS, help="comma-separated M (one entry per power-of-two bucket)")
    p.add_argument("--max-candidates", type=int, default=40)
    p.add_argument("--rep-ms", type=float, default=50.0)
    p.add_argument("--min-gain", type=float, default=0.03,
                   help="a candidate replaces the heuristic default only when at least this much faster (0.03: 3%%), "
                        "so that timing noise does not ship an equal config in its place")
    p.add_argument("--confirm", type=int, default=3,
                   help="time a non-default winner and the default this many more times, alternating, and compare "
                        "the medians (0: the single sweep decides)")
    p.add_argument("--out", default=None, help="table file (default: the shipped table of this GPU)")
    args = p.parse_args(argv)
    try:
        args.shape_list = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",") if s]
        args.m_list = [int(v) for v in args.m.split(",") if v]
    except ValueError:
        p.error("--shapes takes NxK pairs and --m integers, comma-separated")
    if not args.shape_list or any(len(s) != 2 or min(s) <= 0 for s in args.shape_list):
        p.error(f"--shapes must list positive NxK pairs, got {args.shapes!r}")
    if not args.m_list or min(args.m_list) <= 0:
        p.error(f"--m must list positive integers, got {args.m!r}")
    if args.max_candidates < 1 or not args.rep_ms > 0:
        p.error("--max-candidates and --rep-ms must be positive")
    if args.confirm < 0:
        p.error(f"--confirm must be >= 0, got {args.confirm}")
    if not 0 <= args.min_gain < 1:
        p.error(f"--min-gain must be in [0, 1), got {args.min_gain}")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("build_table measures on a CUDA GPU; none is visible", file=sys.stderr)
        return 2
    import humming_cute as hc
    from humming_cute.quant.activation import quantize_activation

    from ..ops import device_target
    from .autotune import TuneCache, _device_name, _key_for, autotune, table_file

    dev = torch.device("cuda")
    out = args.out or table_file(_device_name(dev))
    cache = TuneCache(out)
    act8 = args.a_dtype not in ("float16", "bfloat16")
    torch.manual_seed(0)
    for n, k in args.shape_list:
        qw = hc.quantize_weight(torch.randn(n, k, device=dev), args.b_dtype, args.group_size, args.scale_dtype)
        pw = hc.prepare_weight(qw, args.a_dtype)
        for m in args.m_list:
            x = torch.randn(m, k, device=dev, dtype=torch.float16 if act8 else getattr(torch, args.a_dtype))
            kw = {}
            if act8:
                x, xs = quantize_activation(x, args.a_dtype, 0)
                kw = dict(x_scales=xs, out_dtype=torch.float16)
            best = autotune(x, pw, rep_ms=args.rep_ms, max_candidates=args.max_candidates, cache=cache, version="*",
                            min_gain=args.min_gain, confirm_rounds=args.confirm, **kw)
            c_name = "float16" if act8 else args.a_dtype
            key = _key_for(x, pw, c_name, False, 0, device_target(dev), version="*")
            entry = cache.get(key)
            gain = (entry["default_ms"] / entry["ms"]) if entry.get("default_ms") else float("nan")
            print(f"{n}x{k} M={m}: {best.mainloop} {best.block_m}x{best.block_n}x{best.block_k} wk{best.warp_k} "
                  f"st{best.stages} split{best.split_k}: {entry['ms'] * 1e3:.1f} us, {gain:.2f}x the default"
                  + (" (the default: no entry)" if entry.get("is_default") else ""), flush=True)
            if entry.get("is_default"):
                cache.drop(key)        # the heuristics answer there; an entry would pin today's default
    print(f"table: {out} ({len(cache.entries)} entries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
