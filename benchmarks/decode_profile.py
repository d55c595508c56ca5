"""Profile the small-M (decode) kernel under Nsight Compute: fp16 x uint4 g128, M=1, N=K in --sizes.

    ncu --profile-from-start off --section SpeedOfLight ... python3 benchmarks/decode_profile.py
Only the launches between cudaProfilerStart/Stop (one per size, after a warm-up) are profiled."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--sizes", default="4096,8192")
p.add_argument("--m", type=int, default=1)
p.add_argument("--config", default="", help="bn,bk,wk,stages,split (default: the default config)")
args = p.parse_args()
torch.manual_seed(0)
work = []
for s in map(int, args.sizes.split(",")):
    qw = hc.quantize_weight(torch.randn(s, s, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(args.m, s, device="cuda", dtype=torch.float16)
    cfg = None
    if args.config:
        from humming_cute.arch import current_arch
        bn, bk, wk, st, sp = map(int, args.config.split(","))
        cfg = hc.GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16,
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
