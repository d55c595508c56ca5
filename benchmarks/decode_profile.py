"""Profile the default kernel of a dense problem under Nsight Compute: fp16 x uint4 g128 (--b / --group), M = --m,
N = K in --sizes or NxK in --shapes (e.g. the decode kernel at M = 1, or the wgmma kernel at M = 4096).

    ncu --profile-from-start off --section SpeedOfLight ... python3 benchmarks/decode_profile.py
    ... python3 benchmarks/decode_profile.py --m 4096 --shapes 28672x4096 --b int8 --group 0
Only the launches between cudaProfilerStart/Stop (one per problem, after a warm-up) are profiled."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--sizes", default="4096,8192")
p.add_argument("--shapes", default="", help="comma-separated NxK (instead of --sizes)")
p.add_argument("--m", type=int, default=1)
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--config", default="", help="bn,bk,wk,stages,split (default: the default config)")
args = p.parse_args()
torch.manual_seed(0)
work = []
shapes = ([tuple(map(int, v.split("x"))) for v in args.shapes.split(",")] if args.shapes
          else [(s, s) for s in map(int, args.sizes.split(","))])
for n, k in shapes:
    qw = hc.quantize_weight(torch.randn(n, k, device="cuda"), args.b, args.group)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(args.m, k, device="cuda", dtype=torch.float16)
    cfg = None
    if args.config:
        from humming_cute.arch import current_arch
        bn, bk, wk, st, sp = map(int, args.config.split(","))
        cfg = hc.GemmConfig(a_dtype="float16", b_dtype=args.b, c_dtype="float16", group_size=args.group, block_m=16,
                            block_n=bn, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=st, split_k=sp,
                            arch=current_arch().target).validate()
    for _ in range(3):
        hc.gemm(x, pw, config=cfg)
    work.append((x, pw, cfg))
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for x, pw, cfg in work:
    hc.gemm(x, pw, config=cfg)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
print("done")
