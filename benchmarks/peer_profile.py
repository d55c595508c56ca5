"""Profile humming_cute's default kernel and the Humming package's kernel for the same problem under Nsight Compute,
side by side (grid, registers, shared memory, tensor-pipe and memory throughput, stall reasons), to see where the
two differ. Dense: fp16 x (--b, --group), M = --m, NxK in --shapes; MoE: --moe PRESET:PROJ:TOKENS items.

    ncu --profile-from-start off --section LaunchStats --section SpeedOfLight ... \\
        python3 benchmarks/peer_profile.py --m 4096 --shapes 8192x8192 --b int8 --group 0
    ... python3 benchmarks/peer_profile.py --moe qwen3-30b-a3b:down:4096,qwen3-30b-a3b:down:512
Only the launches between cudaProfilerStart/Stop are profiled: per problem one call of ours, then one of Humming's
(each after a warm-up); the order is printed."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.arch import current_arch  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.bench.peers import MoeProblem  # noqa: E402
from humming_cute.tune.heuristics import moe_block_size, moe_uses_wgmma  # noqa: E402
from probe_common import weight_and_peer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--shapes", default="", help="comma-separated NxK (dense)")
p.add_argument("--m", type=int, default=4096)
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--moe", default="", help="comma-separated PRESET:up|down:TOKENS (MoE, fp16 x uint4 g128)")
args = p.parse_args()
torch.manual_seed(0)
calls = []      # (label, ours, humming's)
for shape in filter(None, args.shapes.split(",")):
    n, k = map(int, shape.split("x"))
    _, _, pw, hm = weight_and_peer((n, k), args.b, args.group)
    x = torch.randn(args.m, k, device="cuda", dtype=torch.float16)
    xp = hm.to_input(x) if hm is not None else None
    calls.append((f"dense {args.b} g{args.group} M={args.m} N={n} K={k}", lambda x=x, pw=pw: hc.gemm(x, pw),
                  (lambda hm=hm, xp=xp: hm.call(xp)) if hm is not None else None))
for item in filter(None, args.moe.split(",")):
    preset, proj, tokens = item.split(":")
    tokens = int(tokens)
    pr = MOE_PRESETS[preset]
    e, top_k = pr["num_experts"], pr["top_k"]
    n, k = pr[proj]
    down = proj == "down"
    _, _, pw, hm = weight_and_peer((e, n, k), "uint4", 128, moe=True)
    ids, tw = draw_routing(tokens, e, top_k, 0, "cuda")
    x = torch.randn(tokens * top_k if down else tokens, k, device="cuda", dtype=torch.float16)
    bm = moe_block_size(tokens, top_k, e, wgmma=moe_uses_wgmma(current_arch().target, "float16"))
    s, ei, npost = hc.moe_align_block_size(ids, bm, e)

    def ours(x=x, pw=pw, s=s, ei=ei, npost=npost, top_k=top_k, bm=bm, tw=tw, down=down):
        return hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw, mul_topk_weights=down,
                           is_down=down)
    hm_call = None
    if hm is not None:
        prob = MoeProblem(x=x, topk_ids=ids, topk_weights=tw, top_k=top_k, num_experts=e, is_down=down,
                          out=torch.empty(tokens, top_k, n, device="cuda", dtype=torch.float16))
        hm_call, _ = hm.prepare(prob)
    calls.append((f"moe {preset} {proj} tokens={tokens} bm={bm}", ours, hm_call))
for label, ours, theirs in calls:
    for _ in range(3):
        ours()
        if theirs is not None:
            theirs()
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for label, ours, theirs in calls:
    print(f"{label}: humming_cute's launches, then {'Humming' if theirs is not None else 'no peer'}", flush=True)
    ours()
    torch.cuda.synchronize()
    if theirs is not None:
        theirs()
    torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
print("done")
