"""Sweep tile configs of both mainloops at mid-size M (default 64 and 256) on the GPU, against the default config
and the Humming package, to choose the defaults of `humming_cute/tune/heuristics.py`.

Each config's output is checked against the default config's before it is timed; times are
`humming_cute.bench.timing.bench_ms` medians (L2 flushed, CUDA-graph replay). Candidates that do not validate
(shared memory, register or shape limits) are left out silently; a config that validates but fails to compile or
gives a wrong result is printed. Usage:

    python3 benchmarks/config_probe.py --m 64,256 --shapes 8192x8192,4096x4096 [--b int8 --group 0] [--top 8]
"""
import argparse
import itertools
import os
import re
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
import humming_cute.config as hconfig  # noqa: E402
from humming_cute.arch import current_arch, get_arch  # noqa: E402
from humming_cute.bench.timing import bench_ms, copy_bandwidth  # noqa: E402
from humming_cute.config import smem_bytes  # noqa: E402
from probe_common import print_header, sweep_arguments, weight_and_peer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--m", default="64,256")
p.add_argument("--shapes", default="8192x8192,4096x4096,28672x4096,4096x14336")
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--top", type=int, default=8, help="fastest configs printed per problem")
p.add_argument("--families", default="sm90,sm80", help="mainloops to sweep")
sweep_arguments(p)
p.add_argument("--ws", action="store_true",
               help="also the warp-specialized variant of every wgmma candidate with block_n <= 128 (a producer "
                    "warpgroup)")
p.add_argument("--persistent", action="store_true",
               help="with --ws: also a persistent grid (one CTA per SM walking the tiles) of every unsplit "
                    "warp-specialized candidate (persistent_ctas)")
p.add_argument("--stream-k", action="store_true",
               help="with --ws: also stream-K over a persistent grid (stream_k) "
                    "of every unsplit warp-specialized candidate")
p.add_argument("--staged", action="store_true",
               help="also the shared-memory staged C store (staged_store) of every wgmma candidate (with --ws also "
                    "warp-specialized)")
p.add_argument("--cluster", action="store_true",
               help="also cluster split-K (cluster_split_k) for every candidate with split > 1")
p.add_argument("--cluster-n", default="",
               help="comma list of cluster sizes: also every unsplit or cluster-split wgmma candidate (incl. its --ws / "
                    "--persistent / --staged / --cluster variants) with the activation tile multicast over clusters of "
                    "that many CTAs (cluster_n)")
p.add_argument("--glu", action="store_true",
               help="a silu GLU epilogue (N/2 outputs) on the default and every candidate (wgmma ones through the "
                    "staged store; with --unverified while that is not yet GPU-verified); Humming's time is without")
p.add_argument("--stages", default="",
               help="comma list of pipeline depths: every wgmma candidate also at each of these that fits (the "
                    "candidates otherwise take the deepest that fits)")
p.add_argument("--two-atoms", action="store_true",
               help="also every unsplit wgmma candidate with two 64-row weight atoms per warpgroup (warp_n=128), "
                    "and 512-wide weight tiles from the 256-wide ones")
p.add_argument("--a-split", type=int, default=0,
               help="with --two-atoms: every two-atom candidate also with its A fragments double-buffered in this "
                    "many pieces of a k-tile (a_split): taller two-atom tiles such as 176 x 256 fit only with it")
p.add_argument("--block-m", default="",
               help="comma list of wgmma tile heights (activation rows, wgmma N: any multiple of 16) instead of the "
                    "usual 64 / 128 / 256")
p.add_argument("--unverified", action="store_true",
               help="candidates with config.ALLOW_UNVERIFIED (options built but not yet GPU-verified); each output "
                    "is still checked against the default's")
args = p.parse_args()
hconfig.ALLOW_UNVERIFIED = args.unverified
cluster_ns = [int(c) for c in args.cluster_n.split(",") if c]


def candidates(m: int, n: int, arch: str):
    """(name, GemmConfig) pairs to try for M = m and N = n; the stage count is the deepest that fits (at most
    8)."""
    base = dict(a_dtype="float16", b_dtype=args.b, c_dtype="float16", group_size=args.group, arch=arch)
    limit = get_arch(arch).smem_per_block_bytes
    out = []

    def deepest(cfg, top=8):
        for st in range(top, 1, -1):
            c = cfg.with_(stages=st)
            if smem_bytes(c) <= limit:
                return c
        return None

    if "sm90" in args.families and get_arch(arch).sm == 90:
        bms = [64] if m <= 64 else [128, 256] if m >= 256 else [128]
        if args.block_m:
            bms = [int(v) for v in args.block_m.split(",")]
        splits = (1, 2, 4) if m <= 64 else (1, 2)
        for bm, bn, bk, split in itertools.product(bms, (64, 128, 256), (64, 128), splits):
            cfg = hc.GemmConfig(**base, block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk,
                                stages=2, split_k=split, mainloop="sm90")
            cfg = deepest(cfg)
            if cfg is not None:
                out.append((f"sm90 {bm}x{bn}x{bk} st{cfg.stages} split{split}", cfg))
                if args.cluster and split > 1:
                    cl = deepest(cfg.with_(cluster_split_k=True))
                    if cl is not None:
                        out.append((f"sm90 {bm}x{bn}x{bk} st{cl.stages} split{split} cluster", cl))
                if args.ws and bn <= 128:
                    out.append((f"sm90 {bm}x{bn}x{bk} st{cfg.stages} split{split} ws",
                                cfg.with_(warp_specialized=True)))
                    sms = torch.cuda.get_device_properties(0).multi_processor_count
                    if args.persistent and split == 1:
                        out.append((f"sm90 {bm}x{bn}x{bk} st{cfg.stages} split1 ws persistent",
                                    cfg.with_(warp_specialized=True, persistent_ctas=sms)))
                    if args.stream_k and split == 1:
                        sk = deepest(cfg.with_(warp_specialized=True, persistent_ctas=sms, stream_k=True))
                        if sk is not None:
                            out.append((f"sm90 {bm}x{bn}x{bk} st{sk.stages} split1 ws stream-k", sk))
                if args.staged:
                    st = deepest(cfg.with_(staged_store=True))
                    if st is not None:
                        out.append((f"sm90 {bm}x{bn}x{bk} st{st.stages} split{split} staged", st))
                        if args.ws and bn <= 128 and split == 1:
                            out.append((f"sm90 {bm}x{bn}x{bk} st{st.stages} split1 ws staged",
                                        st.with_(warp_specialized=True)))
                            # (a persistent grid keeps its staging tiles beside the ring: its own depth)
                            pst = deepest(st.with_(warp_specialized=True, persistent_ctas=torch.cuda.
                                                   get_device_properties(0).multi_processor_count))
                            if args.persistent and pst is not None:
                                out.append((f"sm90 {bm}x{bn}x{bk} st{pst.stages} split1 ws persistent staged", pst))
    if "sm80" in args.families and m <= 128:
        bm = 64 if m <= 64 else 128
        for (bn, bk, wk, wm), split in itertools.product(
                [(128, 128, 64, 32), (128, 256, 128, 32), (256, 128, 128, 32), (256, 256, 128, 32),
                 (64, 256, 64, 32), (128, 256, 64, 64), (256, 128, 64, 64)], (1, 2, 4)):
            cfg = hc.GemmConfig(**base, block_m=bm, block_n=bn, block_k=bk, warp_m=wm, warp_n=64, warp_k=wk,
                                stages=2, split_k=split, mainloop="sm80")
            if cfg.num_threads > 512:
                continue
            cfg = deepest(cfg, 4)
            if cfg is not None:
                out.append((f"sm80 {bm}x{bn}x{bk} wm{wm} wk{wk} warps{cfg.num_threads // 32} st{cfg.stages} "
                            f"split{split}", cfg))
                if args.cluster and split > 1:
                    cl = deepest(cfg.with_(cluster_split_k=True), 4)
                    if cl is not None:
                        out.append((f"sm80 {bm}x{bn}x{bk} wm{wm} wk{wk} st{cl.stages} split{split} cluster", cl))
    if args.stages:   # other pipeline depths of every wgmma candidate, in the list's order after the deepest
        deeper = []
        for name, cfg in out:
            deeper.append((name, cfg))
            for st in (int(v) for v in args.stages.split(",")):
                alt = cfg.with_(stages=st)
                if cfg.mainloop == "sm90" and st != cfg.stages and smem_bytes(alt) <= limit:
                    deeper.append((name.replace(f" st{cfg.stages} ", f" st{st} "), alt))
        out = deeper
    if args.two_atoms:   # each wgmma candidate followed by its two-atoms-per-warpgroup twin (and 512-wide tiles)
        paired = []
        for name, cfg in out:
            paired.append((name, cfg))
            if cfg.mainloop == "sm90" and cfg.split_k == 1 and cfg.block_n >= 128:
                paired.append((f"{name} wn128", cfg.with_(warp_n=128)))
                if cfg.block_n == 256 and not cfg.warp_specialized:
                    # (a producer warpgroup takes two consumer warpgroups: 256-wide tiles only with two atoms each)
                    sms = torch.cuda.get_device_properties(0).multi_processor_count
                    paired.append((f"{name} ws wn128", cfg.with_(warp_n=128, warp_specialized=True)))
                    if args.persistent:
                        paired.append((f"{name} ws persistent wn128", cfg.with_(warp_n=128, warp_specialized=True,
                                                                                persistent_ctas=sms)))
                    wide = deepest(cfg.with_(block_n=512, warp_n=128), cfg.stages)
                    if wide is not None:
                        paired.append((name.replace("x256x", "x512x").replace(f" st{cfg.stages} ",
                                                                               f" st{wide.stages} ") + " wn128",
                                       wide))
        out = paired
    if args.a_split:     # each two-atom candidate followed by its a_split twin
        split_a = []
        for name, cfg in out:
            split_a.append((name, cfg))
            if cfg.mainloop == "sm90" and cfg.warp_n == 128:
                split_a.append((f"{name} as{args.a_split}", cfg.with_(a_split=args.a_split)))
        out = split_a
    with_cn = []      # each candidate followed by its multicast variants (a --budget-s cut keeps pairs together)
    for name, cfg in out:
        with_cn.append((name, cfg))
        for cn in cluster_ns:
            if (cfg.mainloop == "sm90" and (cfg.split_k == 1 or cfg.cluster_split_k) and cn * cfg.split_k <= 8
                    and (n // cfg.block_n) % cn == 0):
                with_cn.append((f"{name} cn{cn}", cfg.with_(cluster_n=cn)))
    out = with_cn
    if args.glu:     # GLU on every candidate; the fp32 staging tiles of the wgmma ones take pipeline stages
        glu_out = []
        for name, cfg in out:
            cfg = cfg.with_(activation="silu_glu", glu=True, staged_store=cfg.mainloop == "sm90" or cfg.staged_store)
            while smem_bytes(cfg) > limit and cfg.stages > 2:
                cfg = cfg.with_(stages=cfg.stages - 1)
            glu_out.append((f"{name} glu" + (f" st{cfg.stages}" if cfg.mainloop == "sm90" else ""), cfg))
        out = glu_out
    valid = []
    for name, cfg in out:
        try:
            valid.append((name, cfg.validate()))
        except (ValueError, NotImplementedError):
            pass
    return valid


print_header()
bw = copy_bandwidth()
print(f"# copy bandwidth {bw / 1e9:.0f} GB/s; fp16 x {args.b} group {args.group}", flush=True)
arch = current_arch().target
torch.manual_seed(0)
for shape in args.shapes.split(","):
    n, k = map(int, shape.split("x"))
    w, qw, pw, hm = weight_and_peer((n, k), args.b, args.group)
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        act = "silu_glu" if args.glu else None
        y = hc.gemm(x, pw, activation=act)
        t_def = bench_ms(lambda: hc.gemm(x, pw, activation=act), 60) * 1e3
        t_hm = bench_ms(lambda: hm.call(hm.to_input(x)), 60) * 1e3 if hm else float("nan")
        print(f"N={n} K={k} M={m}: default {t_def:.1f}us  humming {t_hm:.1f}us  ratio {t_def / t_hm:.2f}",
              flush=True)
        rows = []
        t_start = time.time()
        for name, cfg in candidates(m, n, arch):
            if args.match and not re.search(args.match, name):
                continue
            if time.time() - t_start > args.budget_s:
                print("  (time budget reached)", flush=True)
                break
            try:
                yy = hc.gemm(x, pw, config=cfg)
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001 - a probe reports and goes on
                print(f"  FAILED {name}: {type(e).__name__}: {str(e)[:160]}", flush=True)
                continue
            err = ((yy.float() - y.float()).norm() / y.float().norm()).item()
            if err > 1e-3:
                print(f"  WRONG {name}: rel err {err:.2e}", flush=True)
                continue
            rows.append((bench_ms(lambda: hc.gemm(x, pw, config=cfg), 60) * 1e3, name))
        rows.sort()
        for t, name in rows[:args.top]:
            print(f"  {name:48s} {t:7.1f}us  {2 * m * n * k / t / 1e6:6.1f} TFLOP/s  x{t / t_def:.2f} default  "
                  f"x{t / t_hm:.2f} humming", flush=True)
