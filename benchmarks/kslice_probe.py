"""warp_k = block_k / 2 on the wgmma mainloop (two consumer warpgroups per weight row range, one half of every
k-tile each; `GemmConfig.consumer_warpgroups`) against the default tile with whole k-tiles per warpgroup
("default" below: warp_k = block_k, whatever the default's own warp_k), in alternating rounds: fp16 x (--b,
--group) at every M in --m over --shapes where the default is a wgmma tile 128 deep. Each variant's output is first
checked against the default's (relative error; the K order differs), then timed with L2 flushed (CUDA graph).

    python3 benchmarks/kslice_probe.py --m 64,256 --b uint4 --group 128
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import humming_cute as hc  # noqa: E402
import humming_cute.ops as hops  # noqa: E402
from humming_cute.arch import get_arch  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.config import smem_bytes  # noqa: E402
from probe_common import print_header  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--m", default="64,256")
p.add_argument("--shapes", default="4096x14336,8192x8192,4096x4096,28672x4096")
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--rounds", type=int, default=3)
args = p.parse_args()
print_header()
torch.manual_seed(0)
limit = get_arch("sm_90a").smem_per_block_bytes
print(f"# fp16 x {args.b} group {args.group}; default / K halves per warpgroup, {args.rounds} rounds", flush=True)
for shape in args.shapes.split(","):
    n, k = map(int, shape.split("x"))
    pw = hc.prepare_weight(hc.quantize_weight(torch.randn(n, k, device="cuda"), args.b, args.group), "float16")
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        ref = hc.gemm(x, pw)
        cfg = next(v[1] for key, v in hops._DEFAULTS.items() if key[0] == m and v[0]() is pw)
        if cfg.mainloop != "sm90" or cfg.block_k != 128:
            print(f"  N={n} K={k} M={m}: default {cfg.mainloop} block_k {cfg.block_k}: skipped", flush=True)
            continue
        cfg = cfg.with_(warp_k=cfg.block_k)        # (the default may already split K across warpgroups)
        runs = {"default": cfg}
        for name, kw in (("kslice", {}), ("kslice-unsplit", dict(split_k=1, cluster_split_k=False)),
                         ("kslice-ws", dict(split_k=1, cluster_split_k=False, warp_specialized=True))):
            c = cfg.with_(warp_k=64, **kw)
            while smem_bytes(c) > limit and c.stages > 2:     # (the partial sums take shared memory: re-fit)
                c = c.with_(stages=c.stages - 1)
            try:
                runs[name] = c.validate()
            except (ValueError, NotImplementedError) as e:
                print(f"    N={n} K={k} M={m} {name}: {e}", flush=True)
        out = torch.empty_like(ref)
        errs = {}
        for name, c in runs.items():
            y = hc.gemm(x, pw, config=c)
            errs[name] = ((y.float() - ref.float()).norm() / ref.float().norm()).item()
        times = {name: [] for name in runs}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                c = runs[name]
                times[name].append(bench_ms(lambda c=c: hc.gemm(x, pw, config=c, out=out), 60) * 1e3)
        med = {name: statistics.median(t) for name, t in times.items()}
        tile = f"{cfg.block_m}x{cfg.block_n}x{cfg.block_k} split{cfg.split_k}{' ws' if cfg.warp_specialized else ''}"
        cols = "  ".join(f"{name} st{runs[name].stages} {med[name]:7.1f}us"
                         + (f" x{med[name] / med['default']:.3f} (err {errs[name]:.1e})" if name != "default" else "")
                         for name in runs)
        print(f"  N={n} K={k} M={m} {tile}: {cols}", flush=True)
print("done", flush=True)
