"""pingpong (two sets of consumer warpgroups on alternate tiles of the persistent wgmma grid, `GemmConfig.pingpong`)
against the default config, in alternating rounds: the MoE GEMM (bench presets, fp16 x uint4 g128) and dense GEMMs
(fp16 x --b / --group). For each problem: the default; where it is a wgmma tile, the same tile on the persistent grid
(if it is not already) and pingpong variants of it - the same tile with twice the consumer warpgroups, half-width
tiles (the default's warpgroups split into two sets) and 128-wide one-warpgroup tiles of two atoms - and any
`--try` overrides of the default, each at the deepest pipeline that fits (`--only` keeps the variants whose name
matches). Every variant's output is first checked against the default's, then timed with L2 flushed (CUDA graph),
medians of --rounds. With --b2b, dense problems are also timed back to back (one CUDA graph of calls on rotating
weight copies together >= 3x the L2), and with --hot on one weight copy (what the kernel takes with its weight in the
L2 where it fits).

    python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:4096 --dense 28672x4096:4096
    python3 benchmarks/pingpong_probe.py --moe "" --dense 8192x8192:4096 --only '^persistent$' --rounds 5
    python3 benchmarks/pingpong_probe.py --try bk128=block_k:128,warp_k:128,a_split:2 --only '^bk128$'
"""
import argparse
import os
import re
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import humming_cute as hc  # noqa: E402
import humming_cute.ops as hops  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.bench.timing import bench_ms, bench_ms_back_to_back, l2_bytes, rotation_copies  # noqa: E402
from humming_cute.config import GemmConfig, smem_bytes  # noqa: E402
from humming_cute.tune.heuristics import default_moe_config, moe_block144_tile, moe_block_size, moe_uses_wgmma  # noqa: E402
from probe_common import precompile, print_header  # noqa: E402

args = limit = sms = None       # (set by main)


def fitted(cfg: GemmConfig):
    """cfg at the deepest pipeline (8 down to 2) that fits shared memory and validates, or None."""
    for st in range(8, 1, -1):
        c = cfg.with_(stages=st)
        if smem_bytes(c) <= limit:
            try:
                return c.validate()
            except (ValueError, NotImplementedError):
                return None
    return None


def variants(cfg: GemmConfig) -> dict:
    """The default and its persistent / pingpong / `--try` variants (wgmma tiles only), each at its deepest fitting
    pipeline; variants that do not validate, repeat another or fail `--only` are dropped."""
    runs = {"default": cfg}
    if cfg.mainloop != "sm90" or cfg.warp_k < cfg.block_k or cfg.split_k > 1 or cfg.stream_k or cfg.cluster_n > 1:
        # other tiles: only the `--try` overrides, at the default's pipeline depth unless they set one
        for name, over in tries():
            try:
                runs[name] = cfg.with_(**over).validate()
            except (ValueError, NotImplementedError) as ex:
                print(f"    (--try {name} does not validate: {str(ex)[:160]})", flush=True)
        return keep(runs)
    base = cfg if cfg.persistent_ctas else cfg.with_(warp_specialized=True, persistent_ctas=sms, pdl=False,
                                                     pdl_prefetch=0)
    if not cfg.persistent_ctas:
        runs["persistent"] = fitted(base)
    n_wg = base.block_n // base.warp_n
    runs["pp"] = fitted(base.with_(pingpong=True))
    if n_wg >= 2:
        runs["pp-half"] = fitted(base.with_(block_n=base.block_n // 2, pingpong=True))
    if base.block_n >= 128:
        runs["pp-128x2"] = fitted(base.with_(block_n=128, warp_n=128, pingpong=True))
        runs["pp-128x1"] = fitted(base.with_(block_n=128, warp_n=64, pingpong=True))
    for name, over in tries():              # --try NAME=field:value,...: overrides of the default itself
        runs[name] = fitted(cfg.with_(**over))
    return keep(runs)


def tries() -> list:
    """The `--try` specs as (name, {field: value}) pairs."""
    out = []
    for spec in args.extra:
        name, _, fields = spec.partition("=")
        over = {}
        for item in filter(None, fields.split(",")):
            f, _, v = item.partition(":")
            over[f] = {"True": True, "False": False}.get(v, int(v) if v.lstrip("-").isdigit() else v)
        out.append((name, over))
    return out


def keep(runs: dict) -> dict:
    """`runs` without the variants that do not validate (None), repeat another or fail `--only`."""
    kept = {}
    for name, c in runs.items():
        if name != "default" and args.only and not re.search(args.only, name):
            continue
        if c is not None and c not in kept.values():
            kept[name] = c
    return kept


def compare(label: str, runs: dict, call, b2b=None) -> None:
    """Check every variant against the default's output, time them in alternating rounds, print one line each.
    `b2b(c)`: the back-to-back call list of config c (one per weight copy), timed too where given."""
    ref = call(runs["default"]).float().clone()
    errs, times, times_b2b = {}, {name: [] for name in runs}, {name: [] for name in runs}
    times_hot = {name: [] for name in runs}
    for name, c in list(runs.items()):
        try:
            y = call(c).float()
            torch.cuda.synchronize()
        except Exception as ex:  # noqa: BLE001 - a probe reports and goes on
            print(f"    {label} {name}: FAILED {type(ex).__name__}: {str(ex)[:200]}", flush=True)
            del runs[name], times[name], times_b2b[name], times_hot[name]
            continue
        errs[name] = ((y - ref).norm() / ref.norm()).item()
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            times[name].append(bench_ms(lambda c=runs[name]: call(c), 60) * 1e3)
            if b2b is not None:
                times_b2b[name].append(bench_ms_back_to_back(b2b(runs[name]), 60) * 1e3)
                if args.hot:
                    times_hot[name].append(bench_ms_back_to_back(b2b(runs[name], hot=True), 60) * 1e3)
    med = {name: statistics.median(t) for name, t in times.items()}
    med_b2b = {name: statistics.median(t) if t else 0.0 for name, t in times_b2b.items()}
    med_hot = {name: statistics.median(t) if t else 0.0 for name, t in times_hot.items()}
    print(f"  {label}", flush=True)
    for name, c in runs.items():
        tile = (f"{c.mainloop} {c.block_m}x{c.block_n}x{c.block_k} wn{c.warp_n} st{c.stages} wgs{c.consumer_warpgroups}"
                f"{' persistent' if c.persistent_ctas else ''}{' pp' if c.pingpong else ''}"
                f"{' rows' if c.moe_cp_async_rows else ''}{' staged' if c.staged_store else ''}"
                f"{' 2lvl' if c.two_level_scales else ''}{' fold' if c.fold_offsets else ''}"
                f"{' wpipe' if c.warp_pipeline else ''}{f' cn{c.cluster_n}' if c.cluster_n > 1 else ''}"
                f"{f' split{c.split_k}' if c.split_k > 1 else ''}{' cluster' if c.cluster_split_k else ''}"
                f"{' ef' if c.evict_first else ''}{' ws' if c.warp_specialized else ''}")
        print(f"    {name:10s} {tile:72s} {med[name]:8.1f} us  x{med[name] / med['default']:.3f}  "
              f"(err {errs[name]:.1e})" + (f"   back to back {med_b2b[name]:7.2f} us  "
                                          f"x{med_b2b[name] / med_b2b['default']:.3f}" if b2b is not None else "")
              + (f"   hot {med_hot[name]:7.2f} us" if b2b is not None and args.hot else ""),
              flush=True)


def main() -> None:
    """Build every problem and its variants, compile them all in parallel processes, then check and time them."""
    global args, limit, sms
    p = argparse.ArgumentParser()
    p.add_argument("--moe", default="qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512",
                   help="preset:up|down:tokens[:block_m], comma-separated")
    p.add_argument("--dense", default="", help="NxK:M, comma-separated")
    p.add_argument("--b", default="uint4")
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="", help="only the variants whose name matches this regex (and the default)")
    p.add_argument("--b2b", action="store_true", help="dense problems: also time back to back on rotating copies")
    p.add_argument("--hot", action="store_true",
                   help="with --b2b: also back to back on ONE weight copy (L2-resident where it fits)")
    p.add_argument("--try", dest="extra", action="append", default=[],
                   help="one more variant of every default: NAME=field:value[,field:value...] (ints, True / False), "
                        "e.g. bk128=block_k:128,warp_k:128,a_split:2; repeatable")
    args = p.parse_args()
    if args.hot and not args.b2b:
        p.error("--hot times back to back on one weight copy: it takes --b2b")
    arch, limit = print_header()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    problems = []
    for spec in filter(None, args.moe.split(",")):
        preset, proj, tokens, *bm = spec.split(":")
        problems.append(moe_problem(preset, proj, int(tokens), arch, int(bm[0]) if bm else 0))
    for spec in filter(None, args.dense.split(",")):
        shape, m = spec.split(":")
        n, k = map(int, shape.split("x"))
        problems.append(dense_problem(n, k, int(m)))
    precompile([c for _, runs, _, _ in problems for c in runs.values()])
    for label, runs, call, b2b in problems:
        compare(label, runs, call, b2b)
    print("done", flush=True)


def moe_problem(preset: str, proj: str, tokens: int, arch: str, block_m: int = 0):
    """(label, variants, call, None) of one MoE bench problem (fp16 x uint4 g128, uniform routing). `block_m`: align
    the routing to blocks of that many rows instead of `moe_block_size`'s; the variants are then the default config of
    the chosen block size with block_m replaced (at the deepest pipeline that fits, if it validates) and each `--try`
    on top of that, the first one that validates standing in as the default where that does not."""
    pr = MOE_PRESETS[preset]
    e, top_k = pr["num_experts"], pr["top_k"]
    n, k = pr[proj]
    down = proj == "down"
    torch.manual_seed(0)
    pw = hc.prepare_weight(hc.quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128), "float16")
    ids, tw = draw_routing(tokens, e, top_k, tokens, "cuda")
    x = torch.randn(tokens * top_k if down else tokens, k, device="cuda", dtype=torch.float16)
    out = torch.empty(tokens, top_k, n, device="cuda", dtype=torch.float16)
    chosen = moe_block_size(tokens, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"),
                            block144=moe_block144_tile("float16", "uint4", pw.n_pad))
    bm = block_m or chosen
    s, ei, npost = hc.moe_align_block_size(ids, bm, e)
    cfg = default_moe_config(chosen, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                             group_size=128, arch=arch, top_k=top_k, is_down=down, mul_topk_weights=down,
                             num_tokens=tokens, num_experts=e, num_sms=sms)
    if bm != chosen:
        base = cfg.with_(block_m=bm, warp_m=bm)
        runs = {"default": fitted(base)}
        for name, over in tries():
            runs[name] = fitted(base.with_(**over))
        runs = {k: v for k, v in runs.items() if v is not None}
        if "default" not in runs and runs:
            first = next(iter(runs))
            runs = {"default": runs.pop(first), **runs}
            print(f"    (bm{bm}: the block-{chosen} default does not validate; --try {first} stands in)", flush=True)
        runs = keep(runs)

    def call(c):
        return hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw, mul_topk_weights=down,
                           is_down=down, out=out, config=c)
    return (f"{preset} {proj} E={e} top{top_k} N={n} K={k} tokens={tokens} bm{bm}",
            runs if bm != chosen else variants(cfg), call, None)


def dense_problem(n: int, k: int, m: int):
    """(label, variants, call, back-to-back calls or None) of one dense GEMM (fp16 x --b / --group)."""
    torch.manual_seed(0)
    qw = hc.quantize_weight(torch.randn(n, k, device="cuda"), args.b, args.group)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    hc.gemm(x, pw)                          # (the default config, chosen and cached by the call)
    cfg = next(v[1] for key, v in hops._DEFAULTS.items() if key[0] == m and v[0]() is pw)
    out = torch.empty(m, n, device="cuda", dtype=torch.float16)
    pws = None
    if args.b2b:
        pws = [pw] + [hc.prepare_weight(qw, "float16") for _ in
                      range(rotation_copies(pw.packed.numel() * pw.packed.element_size(),
                                            l2_bytes(torch.device("cuda"))) - 1)]

    def rotating(c, hot=False):
        return [lambda p=p: hc.gemm(x, p, config=c, out=out) for p in ([pw, pw] if hot else pws)]
    return (f"dense {args.b} g{args.group} N={n} K={k} M={m}", variants(cfg),
            lambda c: hc.gemm(x, pw, config=c, out=out), rotating if pws else None)


if __name__ == "__main__":
    main()
