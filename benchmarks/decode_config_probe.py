"""Sweep small-M configs of the mma.sync kernel on the GPU against the default config and the Humming package.

fp16 x uint4 g128 (or --b/--group), M in --m, shapes in --shapes; every config's output is checked against the
default config's before it is timed; times are `humming_cute.bench.timing.bench_ms` medians (L2 flushed before
each call). GB/s counts the packed weight and its scales. Usage:

    python3 benchmarks/decode_config_probe.py --m 1,16 --shapes 8192x8192,4096x4096 [--rotate 8]
"""
import argparse
import itertools
import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.arch import current_arch  # noqa: E402
from humming_cute.bench.peers import humming_peer  # noqa: E402
from humming_cute.bench.timing import bench_ms, bench_ms_back_to_back, copy_bandwidth  # noqa: E402
from humming_cute.quant.weight import dequantize_weight  # noqa: E402
from humming_cute.tune.heuristics import default_config  # noqa: E402
from probe_common import print_header, weight_and_peer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--m", default="1,16")
p.add_argument("--shapes", default="8192x8192,4096x4096,28672x4096,4096x14336")
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--bn", default="64,128")
p.add_argument("--kw", default="256/64,512/128,512/64,1024/128,1024/64")   # block_k / warp_k
p.add_argument("--stages", default="3,4")
p.add_argument("--split", default="1,2")
p.add_argument("--two-level", default="0,1", help="two_level_scales values to sweep")
p.add_argument("--rotate", type=int, default=0,
               help="also time R back-to-back default calls over R weight copies in one CUDA graph (ours and "
                    "Humming's), per call: the steady state of consecutive layers, without a single launch's "
                    "fixed cost")
p.add_argument("--hot", type=int, default=0,
               help="also time R back-to-back default calls on ONE weight (L2-resident when it fits: no DRAM "
                    "traffic), ours and Humming's: what the kernel takes when memory is not what limits it")
p.add_argument("--only", default="",
               help="regular expression: time only the candidates whose label (as printed) it matches")
p.add_argument("--cluster", action="store_true",
               help="also split-K inside a thread-block cluster (cluster_split_k) for every "
                    "split > 1")
p.add_argument("--a-rows8", action="store_true",
               help="at M <= 8 also every 16-row candidate with rows8 and a_rows8 (8 activation rows per stage; "
                    "with --stages, deeper pipelines than 16-row tiles fit)")
p.add_argument("--fold", action="store_true",
               help="also every candidate with fold_offsets (fp16 x int4 / uint4 with two-level scales) and, at M <= 8, "
                    "rows8")
p.add_argument("--top", type=int, default=10, help="print the fastest TOP candidates of each point")
p.add_argument("--warp-pipeline", action="store_true",
               help="also every candidate with warp_pipeline (each K-split warp copies and waits for its own slices; "
                    "one warp column per tile), and the default tile with it")
p.add_argument("--swap", action="store_true",
               help="at M <= 8 also every candidate with rows8 + swap_ab (weights as the MMA's A operand), and the "
                    "default tile (with warp_pipeline where it takes it) with them")
p.add_argument("--launch-bounds", action="store_true",
               help="with --swap: the default + swap lines also with launch_min_blocks=1 (launch bounds of one CTA "
                    "per SM: ptxas may take up to 255 registers)")
p.add_argument("--pdl-ab", type=int, default=0, metavar="ROUNDS",
               help="with --rotate: the default config with pdl off, and on with each pdl_prefetch (weight stages "
                    "copied before the wait; a wgmma default (M >= 64 on sm_90a) with 1), each timed flushed, back "
                    "to back, and back to back with a small torch kernel between the GEMMs (as a norm or "
                    "activation sits between two layers); ROUNDS rounds in alternating order, medians")
p.add_argument("--unverified", action="store_true",
               help="set config.ALLOW_UNVERIFIED (options built but not yet GPU-verified); every output is still "
                    "checked against the default's")
args = p.parse_args()
if args.unverified:
    import humming_cute.config as _hconfig
    _hconfig.ALLOW_UNVERIFIED = True
if args.hot == 1:
    p.error("--hot takes 0 (off) or >= 2 calls")

# candidate variants: plain; fold_offsets (+ rows8 at M <= 8); rows8 + a_rows8; all three
VARIANTS = [dict(fold_offsets=False, a_rows8=False), dict(fold_offsets=True, a_rows8=False),
            dict(fold_offsets=False, a_rows8=True), dict(fold_offsets=True, a_rows8=True)]
variants = [0] + ([1] if args.fold else []) + ([2] if args.a_rows8 else []) + ([3] if args.fold and args.a_rows8
                                                                               else [])


def back_to_back_us(calls) -> float:
    """Per-call microseconds of `calls` replayed back to back as one CUDA graph (`bench_ms_back_to_back`)."""
    return bench_ms_back_to_back(list(calls), 50.0) * 1e3


def pdl_ab(x, y, pw, pws, m, floor_us):
    """pdl off / on (each pdl_prefetch) on the default tile: flushed, back to back, and back to back with a torch
    kernel between the GEMMs, `args.pdl_ab` rounds in alternating order; medians, and each against pdl off."""
    import statistics

    base = default_config(m, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype=args.b, c_dtype="float16",
                          group_size=args.group, arch=arch)
    if base.persistent_ctas or base.stream_k:
        return               # (pdl takes the wgmma kernel without a persistent grid)
    cfgs = {"off": base.with_(pdl=False).validate()}
    # (the wgmma kernel copies the first k-tile's weights before the wait: pdl_prefetch 1 only)
    for pre in (range(1, base.stages) if base.mainloop == "sm80" else (1,)):
        cfgs[f"pdl pre{pre}"] = base.with_(pdl=True, pdl_prefetch=pre).validate()
    for name, c in cfgs.items():
        if not torch.equal(hc.gemm(x, pw, config=c), y):
            print(f"  {name}: NOT BITWISE EQUAL to the default's output", flush=True)
    between = torch.zeros_like(y)
    res = {name: {"flushed": [], "b2b": [], "b2b+torch": []} for name in cfgs}
    names = list(cfgs)
    for r in range(args.pdl_ab):
        for name in (names if r % 2 == 0 else names[::-1]):
            c = cfgs[name]
            res[name]["flushed"].append(bench_ms(lambda: hc.gemm(x, pw, config=c)) * 1e3)
            res[name]["b2b"].append(back_to_back_us([(lambda p_=p_: hc.gemm(x, p_, config=c)) for p_ in pws]))
            res[name]["b2b+torch"].append(back_to_back_us(
                [(lambda p_=p_: between.add_(hc.gemm(x, p_, config=c))) for p_ in pws]))
    med = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in res.items()}
    print(f"  pdl A/B ({args.pdl_ab} rounds, {base.stages} stages; flushed / back to back / back to back with a "
          f"torch add after each GEMM, us per call):", flush=True)
    for name in names:
        cells = []
        for k in ("flushed", "b2b", "b2b+torch"):
            t = med[name][k]
            rel = "" if name == "off" else f" x{t / med['off'][k]:.3f}"
            cells.append(f"{k} {t:.2f}{rel}")
        print(f"    {name:9s} " + "  ".join(cells) + f"  ({floor_us / med[name]['b2b']:.0%} of floor b2b)",
              flush=True)


print_header()
bw = copy_bandwidth()
print(f"# copy bandwidth {bw / 1e9:.0f} GB/s", flush=True)
_tiny = torch.zeros(1, device="cuda")
print(f"# one-element kernel, same timer: {bench_ms(lambda: _tiny.add_(1)) * 1e3:.1f} us "
      f"(the timer's fixed cost per call)", flush=True)
arch = current_arch().target
torch.manual_seed(0)
for shape in args.shapes.split(","):
    n, k = map(int, shape.split("x"))
    w, qw, pw, hm = weight_and_peer((n, k), args.b, args.group)
    nbytes = pw.packed.numel() * 4 + (pw.group_scales.numel() * 4 if pw.group_scales is not None else 0)
    floor_us = nbytes / bw * 1e6
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        y = hc.gemm(x, pw)
        t_def = bench_ms(lambda: hc.gemm(x, pw)) * 1e3
        t_hm = bench_ms(lambda: hm.call(hm.to_input(x))) * 1e3 if hm else float("nan")
        print(f"N={n} K={k} M={m}: floor {floor_us:.1f}us  default {t_def:.1f}us ({floor_us / t_def:.0%} of floor)  "
              f"humming {t_hm:.1f}us  ratio {t_def / t_hm:.2f}", flush=True)
        if args.rotate:
            # enough copies that the set is 3x the L2: every call reads its weight from DRAM
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
            reps = max(args.rotate, -(-3 * l2 // nbytes))
            pws = [hc.prepare_weight(qw, "float16") for _ in range(reps)]
            ours_r = back_to_back_us([(lambda p_=p_: hc.gemm(x, p_)) for p_ in pws])
            line = (f"  back to back over {reps} weight copies: ours {ours_r:.1f}us/call "
                    f"({floor_us / ours_r:.0%})")
            if args.pdl_ab:
                pdl_ab(x, y, pw, pws, m, floor_us)
            if hm is not None:
                hms = [humming_peer(qw, w, dequantize_weight(qw, dtype=torch.float32), torch.float16, 1e-2)
                       for _ in range(reps)]
                hm_r = back_to_back_us([(lambda h_=h_: h_.call(h_.to_input(x))) for h_ in hms])
                line += f"  humming {hm_r:.1f}us/call  ratio {ours_r / hm_r:.2f}"
                del hms
            print(line, flush=True)
            del pws
        if args.hot:
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)
            ours_h = back_to_back_us([lambda: hc.gemm(x, pw)] * args.hot)
            line = (f"  hot L2 ({nbytes / 2**20:.1f} MiB weight, L2 {l2 / 2**20:.0f} MiB), {args.hot} calls back to "
                    f"back: ours {ours_h:.1f}us/call")
            if hm is not None:
                hm_h = back_to_back_us([lambda: hm.call(hm.to_input(x))] * args.hot)
                line += f"  humming {hm_h:.1f}us/call"
            print(line, flush=True)
        # the default config of this point (what hc.gemm ran above), for the "default + option" lines
        dcfg = default_config(m, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype=args.b, c_dtype="float16",
                              group_size=args.group, arch=arch)
        if args.warp_pipeline:
            if dcfg.mainloop == "sm80":
                wcfg = dcfg.with_(block_n=dcfg.warp_n, warp_pipeline=True).validate()
                yw = hc.gemm(x, pw, config=wcfg)
                ok = torch.equal(yw, y) if wcfg.block_n == dcfg.block_n else True
                t_w = bench_ms(lambda: hc.gemm(x, pw, config=wcfg)) * 1e3
                print(f"  default + warp_pipeline (bn{wcfg.block_n}): {t_w:.1f}us  x{t_w / t_def:.3f} default  "
                      f"x{t_w / t_hm:.2f} humming{'' if ok else '  NOT BITWISE EQUAL'}", flush=True)
        if args.swap and m <= 8:
            if dcfg.mainloop == "sm80":
                for extra, lb in itertools.product((dict(), dict(block_n=dcfg.warp_n, warp_pipeline=True)),
                                                   (0, 1) if args.launch_bounds else (0,)):
                    try:
                        scfg = dcfg.with_(rows8=True, swap_ab=True, launch_min_blocks=lb, **extra).validate()
                    except (ValueError, NotImplementedError):
                        continue
                    ys = hc.gemm(x, pw, config=scfg)
                    err = ((ys.float() - y.float()).norm() / y.float().norm()).item()
                    t_s = bench_ms(lambda: hc.gemm(x, pw, config=scfg)) * 1e3
                    print(f"  default + rows8 + swap_ab{' + warp_pipeline' if scfg.warp_pipeline else ''}"
                          f"{' + launch bounds' if lb else ''} "
                          f"(bn{scfg.block_n}): {t_s:.1f}us  x{t_s / t_def:.3f} default  x{t_s / t_hm:.2f} humming  "
                          f"(rel diff {err:.1e})", flush=True)
        rows = []
        for bn, kw, st, split, tl, cl, fold, wp, sw in itertools.product(map(int, args.bn.split(",")), args.kw.split(","),
                                                                  map(int, args.stages.split(",")),
                                                                  map(int, args.split.split(",")),
                                                                  map(int, args.two_level.split(",")),
                                                                  (0, 1) if args.cluster else (0,),
                                                                  variants,
                                                                  (0, 1) if args.warp_pipeline else (0,),
                                                                  (0, 1) if args.swap and m <= 8 else (0,)):
            opts = VARIANTS[fold]
            if (cl and split == 1) or (opts["fold_offsets"] and not tl) or (opts["a_rows8"] and m > 8) \
                    or (sw and opts["fold_offsets"]):
                continue
            bk, wk = map(int, kw.split("/"))
            if k % bk or (k // bk) // split < 2 or n % bn:
                continue
            try:
                cfg = hc.GemmConfig(a_dtype="float16", b_dtype=args.b, c_dtype="float16", group_size=args.group,
                                    block_m=16, block_n=bn, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=st,
                                    split_k=split, two_level_scales=bool(tl), arch=arch,
                                    cluster_split_k=bool(cl), rows8=(bool(fold) or bool(sw)) and m <= 8,
                                    warp_pipeline=bool(wp), swap_ab=bool(sw),
                                    **opts).validate()
            except (ValueError, NotImplementedError):     # (invalid, or not enabled)
                continue
            label = (f"bn{bn} bk{bk} wk{wk} warps{cfg.num_threads // 32} st{st} split{split}"
                     f"{' cluster' if cl else ''} 2lvl{tl}{' fold' if opts['fold_offsets'] else ''}"
                     f"{' rows8' if (fold or sw) and m <= 8 else ''}{' a_rows8' if opts['a_rows8'] else ''}"
                     f"{' wpipe' if wp else ''}{' swap' if sw else ''}")
            if args.only and not re.search(args.only, label):
                continue
            yy = hc.gemm(x, pw, config=cfg)
            err = ((yy.float() - y.float()).norm() / y.float().norm()).item()
            if err > 1e-3:
                print(f"  WRONG bn{bn} bk{bk} wk{wk} st{st} split{split} fold{fold}: rel err {err:.2e}",
                      flush=True)
                continue
            t = bench_ms(lambda: hc.gemm(x, pw, config=cfg)) * 1e3
            rows.append((t, label))
        rows.sort()
        for t, name in rows[:args.top]:
            print(f"  {name}: {t:.1f}us  {nbytes / (t * 1e-6) / 1e9:.0f} GB/s  {floor_us / t:.0%} of floor  "
                  f"x{t / t_hm:.2f} humming", flush=True)
