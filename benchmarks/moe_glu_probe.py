"""Time the MoE up projection with a fused silu GLU (gate / up pairs combined in the epilogue) on the mma.sync
mainloop and on the wgmma mainloop (staged store, with and without the producer warpgroup), against the default, to
choose `heuristics.WGMMA_GLU` for MoE layers. fp16 x uint4 g128, the bench's presets; each output is checked against
the default's. Usage:

    python3 benchmarks/moe_glu_probe.py --tokens 512,4096 [--presets qwen3-30b-a3b,mixtral]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.config import smem_bytes  # noqa: E402
from humming_cute.tune.heuristics import default_moe_config, moe_block_size, with_glu_staging  # noqa: E402
from probe_common import print_header  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--tokens", default="512,4096")
p.add_argument("--presets", default="qwen3-30b-a3b,mixtral")
args = p.parse_args()
arch, limit = print_header()
for preset in args.presets.split(","):
    pr = MOE_PRESETS[preset]
    e, top_k = pr["num_experts"], pr["top_k"]
    n, k = pr["up"]
    pw = hc.prepare_weight(hc.quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128), "float16")
    for tokens in map(int, args.tokens.split(",")):
        ids, tw = draw_routing(tokens, e, top_k, tokens, "cuda")
        x = torch.randn(tokens, k, device="cuda", dtype=torch.float16)
        bm = moe_block_size(tokens, top_k, e, wgmma=True)
        s, ei, npost = hc.moe_align_block_size(ids, bm, e)

        def call(cfg=None):
            return hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw,
                               activation="silu_glu", config=cfg)

        y0 = call().float()
        t_def = bench_ms(call, 60) * 1e3
        print(f"{preset} up+silu_glu E={e} top{top_k} N={n} K={k} tokens={tokens} bm{bm}: default {t_def:.1f}us",
              flush=True)
        common = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch=arch, top_k=top_k,
                      num_tokens=tokens, num_experts=e)
        cands = {"mma.sync": default_moe_config(bm, pw.n_pad, pw.k_pad, mainloop="sm80", epilogue=True, **common)}
        wg = default_moe_config(bm, pw.n_pad, pw.k_pad, mainloop="sm90", **common)
        for ws in (False, True):
            for bn in (128, 256):
                if pw.n_pad % bn == 0 and not (ws and bn > 128):     # the producer takes a 5th warpgroup
                    c = with_glu_staging(wg.with_(block_n=bn, warp_specialized=ws, stages=8), keep_block_m=True)
                    if smem_bytes(c.with_(glu=True, activation="silu_glu")) <= limit:
                        cands[f"wgmma{' ws' if ws else ''} bn{c.block_n} st{c.stages}"] = c
        for name, cfg in cands.items():
            try:
                cfg = cfg.with_(activation="silu_glu", glu=True).validate()
                y = call(cfg).float()
                err = ((y - y0).norm() / y0.norm()).item()
                t = bench_ms(lambda: call(cfg), 60) * 1e3
                print(f"  {name:28s} {t:8.1f}us  x{t / t_def:.2f} default  (rel diff {err:.1e})", flush=True)
            except Exception as ex:  # noqa: BLE001 - a probe reports and goes on
                print(f"  {name:28s} failed: {type(ex).__name__}: {str(ex)[:120]}", flush=True)
