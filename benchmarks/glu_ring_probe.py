"""GLU layers on the wgmma mainloop: the default config (fp32 staging tiles in the activation ring, so the deepest
pipeline, 8 stages) against the same config with the pipeline the staging tiles used to leave beside the ring
(7 stages for 4-bit weights, 6 for 8-bit), in alternating rounds; outputs checked equal first.

    python3 benchmarks/glu_ring_probe.py --m 256,1024,4096
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
p.add_argument("--m", default="256,1024,4096")
p.add_argument("--shapes", default="28672x4096,8192x8192")
p.add_argument("--formats", default="uint4/128,int8/0")
p.add_argument("--rounds", type=int, default=3)
args = p.parse_args()
print_header()
torch.manual_seed(0)
limit = get_arch("sm_90a").smem_per_block_bytes
for fmt in args.formats.split(","):
    b, g = fmt.split("/")
    for shape in args.shapes.split(","):
        n, k = map(int, shape.split("x"))
        pw = hc.prepare_weight(hc.quantize_weight(torch.randn(n, k, device="cuda"), b, int(g)), "float16")
        for m in map(int, args.m.split(",")):
            x = torch.randn(m, k, device="cuda", dtype=torch.float16)
            ref = hc.gemm(x, pw, activation="silu_glu", glu=True)
            cfg = next(v[1] for key, v in hops._DEFAULTS.items() if key[0] == m and v[0]() is pw and v[1].glu)
            old = cfg
            while smem_bytes(old) + old.staging_bytes + 16 > limit and old.stages > 2:
                old = old.with_(stages=old.stages - 1)
            runs = {"default": cfg, f"st{old.stages}": old}
            out = torch.empty_like(ref)
            same = all(torch.equal(hc.gemm(x, pw, activation="silu_glu", glu=True, config=c), ref)
                       for c in runs.values())
            times = {name: [] for name in runs}
            for r in range(args.rounds):
                for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                    c = runs[name]
                    times[name].append(bench_ms(lambda c=c: hc.gemm(x, pw, activation="silu_glu", glu=True, config=c,
                                                                    out=out), 60) * 1e3)
            med = {name: statistics.median(t) for name, t in times.items()}
            d, o = med["default"], med[f"st{old.stages}"]
            print(f"  fp16 x {b} g{g} N={n} K={k} M={m} {cfg.block_m}x{cfg.block_n}x{cfg.block_k} "
                  f"{'ws ' if cfg.warp_specialized else ''}st{cfg.stages} (ring {cfg.staging_in_ring}): {d:8.1f}us  "
                  f"st{old.stages}: {o:8.1f}us  default / st{old.stages} x{d / o:.3f}"
                  f"{'' if same else '  OUTPUTS DIFFER'}", flush=True)
print("done", flush=True)
