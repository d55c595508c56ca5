"""Profile the MoE GEMM's kernels under Nsight Compute: a preset's projection at some token count, with the default
config (its gather / alignment launches show up too) and optional variants.

    ncu --profile-from-start off --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \\
        python3 benchmarks/moe_profile.py --preset qwen3-30b-a3b --proj down --tokens 4096 [--variants persistent,rows]
Only the launches between cudaProfilerStart/Stop (one call per variant, after a warm-up) are profiled. Variants:
persistent (producer warpgroup, one CTA per SM walking the tiles), rows
(the producer warpgroup copies x's rows by cp.async, no gather), cn2 (activation tile multicast over 2 CTAs)."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.arch import current_arch  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.tune.heuristics import default_moe_config, moe_block_size, moe_uses_wgmma  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--preset", default="qwen3-30b-a3b", choices=sorted(MOE_PRESETS))
p.add_argument("--proj", default="down", choices=("up", "down"))
p.add_argument("--tokens", type=int, default=4096)
p.add_argument("--variants", default="", help="comma list of: persistent, rows, cn2")
args = p.parse_args()
pr = MOE_PRESETS[args.preset]
e, top_k = pr["num_experts"], pr["top_k"]
n, k = pr[args.proj]
down = args.proj == "down"
torch.manual_seed(0)
pw = hc.prepare_weight(hc.quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128), "float16")
ids, tw = draw_routing(args.tokens, e, top_k, 0, "cuda")
x = torch.randn(args.tokens * top_k if down else args.tokens, k, device="cuda", dtype=torch.float16)
arch = current_arch().target
bm = moe_block_size(args.tokens, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"))
s, ei, npost = hc.moe_align_block_size(ids, bm, e)
base = default_moe_config(bm, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                          group_size=128, arch=arch, top_k=top_k, is_down=down, mul_topk_weights=down)
configs = [("default", base)]
sms = torch.cuda.get_device_properties(0).multi_processor_count
for v in filter(None, args.variants.split(",")):
    kw = {"persistent": dict(warp_specialized=True, persistent_ctas=sms),
          "rows": dict(warp_specialized=True, moe_cp_async_rows=True), "cn2": dict(cluster_n=2)}[v]
    if kw.get("warp_specialized") and base.block_n > 128:
        kw["block_n"] = 128
    configs.append((v, base.with_(**kw).validate()))
for name, cfg in configs:
    print(name, cfg, flush=True)
    for _ in range(3):
        hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw, mul_topk_weights=down,
                    is_down=down, config=cfg)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for name, cfg in configs:
    hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw, mul_topk_weights=down, is_down=down,
                config=cfg)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
print("done")
