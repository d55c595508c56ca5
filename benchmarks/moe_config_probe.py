"""Sweep MoE GEMM tile configs (mma.sync mainloop) at larger token counts on the GPU against the default config and
the Humming package's MoE GEMM, to choose `default_moe_config` / `moe_block_size`.

fp16 x uint4 g128, the bench's presets (Qwen3-30B-A3B-like and Mixtral-like, up and down projections). Each config's
output is checked against the default's; times are `bench_ms` medians (L2 flushed, CUDA-graph replay). Usage:

    python3 benchmarks/moe_config_probe.py --tokens 512,4096 [--presets qwen3-30b-a3b,mixtral]
    python3 benchmarks/moe_config_probe.py --tokens 1,16 --small     # decode: 16-row blocks, deep K-split tiles
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
import humming_cute.ops as hops  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.bench.peers import MoeProblem  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.config import smem_bytes  # noqa: E402
from humming_cute.tune.heuristics import (WGMMA_ONLY_MOE_BLOCKS, default_moe_config, moe_block_size,  # noqa: E402
                                          moe_uses_wgmma)
from probe_common import print_header, sweep_arguments, weight_and_peer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--tokens", default="512,4096")
p.add_argument("--presets", default="qwen3-30b-a3b,mixtral")
p.add_argument("--block-m", default="64,128")
p.add_argument("--bn", default="128,256")
p.add_argument("--bk", default="64,128")
p.add_argument("--small", action="store_true",
               help="decode candidates instead: 16-row blocks, block_n 64/128, (block_k, warp_k) from 128/64 to "
                    "1024/128 (K split across up to 8 warps), 3 or 4 stages")
p.add_argument("--wgmma", action="store_true",
               help="also wgmma-mainloop candidates (sm_90a; the --block-m / --bn / --bk lists, with and without the "
                    "producer warpgroup)")
sweep_arguments(p, "only candidates whose printed name matches this regex")
p.add_argument("--persistent", action="store_true",
               help="with --wgmma: also a persistent grid (one CTA per SM) of every producer-warpgroup candidate "
                    "(persistent_ctas)")
p.add_argument("--n-major", action="store_true",
               help="also the weight-tile-major grid / raster (moe_n_major) of every candidate (wgmma ones need "
                    "--unverified until GPU-verified)")
p.add_argument("--cluster-split", default="",
               help="also split K inside a thread-block cluster by these factors (mma.sync candidates, e.g. 2,4)")
p.add_argument("--cluster-n", default="",
               help="with --wgmma: also every wgmma candidate with the activation tile multicast over clusters of "
                    "these many CTAs (e.g. 2,4; cluster_n)")
p.add_argument("--cp-async-rows", action="store_true",
               help="with --wgmma: also every producer-warpgroup candidate copying x's rows by cp.async instead of "
                    "gathering x first (moe_cp_async_rows)")
p.add_argument("--row-cache", action="store_true",
               help="also every mma.sync candidate with moe_row_cache switched (on by default for 16-row blocks)")
p.add_argument("--grid-bound", action="store_true",
               help="also time the default config launched over the routing tensors' full length (ops.MOE_GRID_BOUND "
                    "off) against the default M * top_k-block prefix")
p.add_argument("--staged", action="store_true",
               help="also every wgmma candidate with staged_store (rows leave a shared-memory tile as 16-byte "
                    "vectors)")
p.add_argument("--wgmma-stages", default="",
               help="with --wgmma: pipeline depths to try (e.g. 3,4: shallow rings leave room for two CTAs per SM); "
                    "default the deepest that fits")
p.add_argument("--two-atoms", action="store_true",
               help="with --wgmma: also every wgmma candidate with two 64-row weight atoms per warpgroup "
                    "(warp_n=128; block_n 512 without the producer warpgroup)")
p.add_argument("--a-split", type=int, default=1,
               help="two-atom wgmma candidates with their A fragments in this many pieces of a k-tile (a_split): "
                    "512-wide tiles of four consumer warpgroups fit the registers only with 2 or 4")
p.add_argument("--four-wg", action="store_true",
               help="with --wgmma: producer-warpgroup tiles of four consumer warpgroups (20 warps): 256 wide with one "
                    "atom each, 512 wide with two (their A fragments in --a-split pieces)")
p.add_argument("--k-slices", action="store_true",
               help="with --wgmma: also every 128-deep wgmma candidate with K slices (warp_k = 64: two consumer "
                    "warpgroups per weight row range, one half of every k-tile each; fewer stages where needed)")
p.add_argument("--warp-pipeline", action="store_true",
               help="also every mma.sync candidate with warp_pipeline (each warp copies its own rows, weight columns "
                    "and scales; warp barrier per k-tile)")
p.add_argument("--unverified", action="store_true",
               help="run the candidates with config.ALLOW_UNVERIFIED (options built but not yet GPU-verified); "
                    "each output is still checked against the default's")
args = p.parse_args()
splits = [int(v) for v in args.cluster_split.split(",") if v]
cluster_ns = [int(v) for v in args.cluster_n.split(",") if v]
arch, limit = print_header()
for preset in args.presets.split(","):
    pr = MOE_PRESETS[preset]
    e, top_k = pr["num_experts"], pr["top_k"]
    for proj in ("up", "down"):
        n, k = pr[proj]
        is_down = proj == "down"
        w, qw, pw, hm = weight_and_peer((e, n, k), "uint4", 128, moe=True)
        for tokens in map(int, args.tokens.split(",")):
            ids, tw = draw_routing(tokens, e, top_k, tokens, "cuda")
            x = torch.randn(tokens * top_k if is_down else tokens, k, device="cuda", dtype=torch.float16)
            out = torch.empty(tokens, top_k, n, device="cuda", dtype=torch.float16)
            bm0 = moe_block_size(tokens, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"))
            aligned = {bm: hc.moe_align_block_size(ids, bm, e) for bm in {bm0, *map(int, args.block_m.split(","))}}

            def call(bm, cfg=None):
                s, ei, npost = aligned[bm]
                return hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw,
                                   mul_topk_weights=is_down, is_down=is_down, out=out, config=cfg)

            y0 = call(bm0).float().clone()
            t_def = bench_ms(lambda: call(bm0), 60) * 1e3
            t_hm = float("nan")
            if hm is not None:
                prob = MoeProblem(x=x, topk_ids=ids, topk_weights=tw, top_k=top_k, num_experts=e, is_down=is_down,
                                  out=torch.empty_like(out))
                hm_call, _ = hm.prepare(prob)
                t_hm = bench_ms(hm_call, 60) * 1e3
            print(f"{preset} {proj} E={e} top{top_k} N={n} K={k} tokens={tokens}: default bm{bm0} {t_def:.1f}us  "
                  f"humming {t_hm:.1f}us  ratio {t_def / t_hm:.2f}", flush=True)
            if args.grid_bound:
                hops.MOE_GRID_BOUND = False
                y = call(bm0).float()
                err = ((y - y0).norm() / y0.norm()).item()
                t_b = bench_ms(lambda: call(bm0), 60) * 1e3
                hops.MOE_GRID_BOUND = True
                print(f"  default over the full-length grid: {t_b:.1f}us  x{t_b / t_def:.2f} default  "
                      f"x{t_b / t_hm:.2f} humming  (rel diff {err:.1e})", flush=True)
            hconfig.ALLOW_UNVERIFIED = args.unverified
            rows = []
            t0 = time.time()
            if args.small:
                cands = [(16, bn, bk, wk, st) for bn in (64, 128, 256)
                         for bk, wk in ((128, 64), (256, 64), (512, 128), (1024, 128)) for st in (3, 4)]
                if args.warp_pipeline:     # K-warps holding whole 128-groups (what warp_pipeline needs)
                    cands += [(16, bn, bk, 128, st) for bn in (64, 128, 256) for bk in (128, 256) for st in (3, 4)]
            else:
                cands = [(bm, bn, bk, 64, None) for bm, bn, bk in itertools.product(
                    map(int, args.block_m.split(",")), map(int, args.bn.split(",")), map(int, args.bk.split(",")))]
            if args.wgmma:   # producer-warpgroup tiles first (their --persistent / --cp-async-rows variants follow)
                cands += [(bm, bn, bk, None, ("sm90", ws)) for ws in (True, False)
                          for bn in map(int, args.bn.split(",")) for bk in map(int, args.bk.split(","))
                          for bm in map(int, args.block_m.split(","))
                          if bn <= (128 if ws else 256) or (args.two_atoms and bn <= (256 if ws else 512))
                          or (args.four_wg and ws and bn <= 512)]
            for bm, bn, bk, wk, stages in cands:
                if time.time() - t0 > args.budget_s:
                    break
                if bm not in aligned:
                    aligned[bm] = hc.moe_align_block_size(ids, bm, e)
                wg_only = bm in WGMMA_ONLY_MOE_BLOCKS          # (48 rows: wgmma tiles only)
                if wg_only and not isinstance(stages, tuple):
                    continue
                base = default_moe_config(bm, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype=pw.b_dtype,
                                          c_dtype="float16", group_size=128, arch=arch, top_k=top_k, is_down=is_down,
                                          mul_topk_weights=is_down, mainloop="sm90" if wg_only else "sm80")
                if pw.n_pad % bn or pw.k_pad % bk:
                    continue
                cfg = None
                wg_more = []
                if isinstance(stages, tuple):      # a wgmma candidate: the deepest pipeline that fits
                    # (--two-atoms only: two atoms per warpgroup; --four-wg: producer tiles of 4 consumers)
                    wide = bn > (256 if args.four_wg else 128) if stages[1] else bn > 256
                    wgb = base.with_(mainloop="sm90", block_m=bm, warp_m=bm, block_n=bn, block_k=bk,
                                     warp_n=128 if wide else 64,
                                     warp_k=bk, warp_specialized=stages[1], two_level_scales=False,
                                     moe_row_cache=False, a_split=args.a_split if wide else 1,
                                     persistent_ctas=0, moe_cp_async_rows=False)    # (--persistent / rows add them)
                    depths = [int(v) for v in args.wgmma_stages.split(",") if v] or range(8, 1, -1)
                    fits = [wgb.with_(stages=st) for st in depths if smem_bytes(wgb.with_(stages=st)) <= limit]
                    if fits:
                        cfg = fits[0] if args.wgmma_stages else max(fits, key=lambda c: c.stages)
                        wg_more = fits[1:] if args.wgmma_stages else []
                else:
                    for st in ([stages] if stages else range(6, 1, -1)):
                        c = base.with_(block_n=bn, block_k=bk, warp_k=wk, stages=st)
                        if smem_bytes(c) <= limit:
                            cfg = c
                            break
                if cfg is None:
                    continue
                variants = [cfg] + wg_more + [cfg.with_(split_k=sp, cluster_split_k=True) for sp in splits
                                    if cfg.mainloop == "sm80" and (pw.k_pad // cfg.block_k) % sp == 0]
                if args.row_cache and cfg.mainloop == "sm80":
                    variants += [v.with_(moe_row_cache=not v.moe_row_cache) for v in variants]
                if args.warp_pipeline and cfg.mainloop == "sm80":
                    for v in list(variants):
                        wv = v.with_(warp_pipeline=True)      # (every warp column its own activation rows)
                        while smem_bytes(wv) > limit and wv.stages > 2:
                            wv = wv.with_(stages=wv.stages - 1)
                        variants.append(wv)
                if args.persistent and cfg.warp_specialized:
                    sms = torch.cuda.get_device_properties(0).multi_processor_count
                    variants.append(cfg.with_(persistent_ctas=sms))
                if cfg.mainloop == "sm90":
                    if args.cp_async_rows and cfg.warp_specialized:
                        variants += [v.with_(moe_cp_async_rows=True) for v in list(variants)]
                    variants += [v.with_(cluster_n=cn) for v in list(variants) for cn in cluster_ns
                                 if (pw.n_pad // bn) % cn == 0 and not v.moe_cp_async_rows]
                    if args.two_atoms:
                        variants += [v.with_(warp_n=128) for v in list(variants) if v.split_k == 1
                                     and v.block_n >= 128 and v.warp_n == 64]
                    if args.staged:      # the staging tiles take shared memory: fewer stages where needed
                        for v in list(variants):
                            sv = v.with_(staged_store=True)
                            while smem_bytes(sv) > limit and sv.stages > 2:
                                sv = sv.with_(stages=sv.stages - 1)
                            variants.append(sv)
                if args.k_slices and cfg.mainloop == "sm90" and cfg.block_k == 128:
                    for v in list(variants):
                        kv = v.with_(warp_k=64)
                        while smem_bytes(kv) > limit and kv.stages > 2:
                            kv = kv.with_(stages=kv.stages - 1)
                        variants.append(kv)
                if args.n_major:      # every variant also on the other grid / raster (wgmma: one routed block's
                    variants += [v.with_(moe_n_major=True) for v in variants]      # weight tiles at a time)
                for cfg in variants:
                    try:
                        cfg = cfg.validate()
                    except (ValueError, NotImplementedError, AttributeError):
                        continue
                    name = (f"{cfg.mainloop}{' ws' if cfg.warp_specialized else ''} bm{bm} bn{bn} bk{bk} "
                            f"wm{cfg.warp_m}{' wn128' if cfg.warp_n == 128 else ''} warps{cfg.num_threads // 32} "
                            f"st{cfg.stages}"
                            f"{f' cluster-split{cfg.split_k}' if cfg.split_k > 1 else ''}"
                            f"{' n-major' if cfg.moe_n_major else ''}{' persistent' if cfg.persistent_ctas else ''}"
                            f"{f' cn{cfg.cluster_n}' if cfg.cluster_n > 1 else ''}"
                            f"{' rows' if cfg.moe_cp_async_rows else ''}{' row-cache' if cfg.moe_row_cache else ''}"
                            f"{' staged' if cfg.staged_store else ''}{' wpipe' if cfg.warp_pipeline else ''}"
                            f"{f' as{cfg.a_split}' if cfg.a_split > 1 else ''}"
                            f"{' ks' if cfg.warp_k < cfg.block_k else ''}")
                    if args.match and not re.search(args.match, name):
                        continue
                    print(f"    running {name}", flush=True)
                    try:
                        y = call(bm, cfg).float()
                        torch.cuda.synchronize()
                    except Exception as ex:  # noqa: BLE001 - a probe reports and goes on
                        print(f"  FAILED {name}: {type(ex).__name__}: {str(ex)[:160]}", flush=True)
                        continue
                    err = ((y - y0).norm() / y0.norm()).item()
                    if err > 2e-3:
                        print(f"  WRONG {name}: rel err {err:.2e}", flush=True)
                        continue
                    rows.append((bench_ms(lambda: call(bm, cfg), 60) * 1e3, name))
                    # (each candidate as it is timed: a run cut off by its time limit keeps what it measured)
                    print(f"    timed {name}: {rows[-1][0]:.1f}us ({time.time() - t0:.0f} s into the sweep)",
                          flush=True)
            hconfig.ALLOW_UNVERIFIED = False
            for t, name in sorted(rows)[:8]:
                print(f"  {name:44s} {t:8.1f}us  x{t / t_def:.2f} default  x{t / t_hm:.2f} humming", flush=True)
