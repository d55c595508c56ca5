"""Time `moe_align_block_size`'s torch ops against its single-CTA kernel on the GPU (`bench_ms`: L2 flushed, CUDA
graph replay), uniform random routing; above 4096 ids the single CTA against the multi-CTA kernel pair (`multi`,
the default there). Usage: python3 benchmarks/align_timing.py"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from humming_cute import moe_align  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.moe_align import kernel_threads, moe_align_block_size, multi_ctas  # noqa: E402

print(torch.cuda.get_device_name(), flush=True)
for tokens, top_k, experts, block_m in [(1, 8, 128, 16), (64, 8, 128, 16), (512, 8, 128, 64), (4096, 8, 128, 64),
                                        (4096, 2, 8, 128), (8192, 8, 256, 64)]:
    ids = torch.rand(tokens, experts, device="cuda").argsort(dim=1)[:, :top_k].to(torch.int32)
    threads = kernel_threads(ids.numel(), experts, "sm_90a")
    t = {}
    for impl, multi in (("torch", False), ("kernel", False), ("kernel", True)):
        if multi and ids.numel() <= 4096:
            continue
        moe_align.MULTI_CTA = multi         # False: one CTA at any size
        t[impl + (f" multi ({multi_ctas(ids.numel())} CTAs)" if multi else "")] = bench_ms(
            lambda: moe_align_block_size(ids, block_m, experts, impl=impl), 30) * 1e3
    moe_align.MULTI_CTA = True
    print(f"tokens {tokens} top_k {top_k} E {experts} block_m {block_m} (one CTA: {threads} threads): "
          + ", ".join(f"{k} {us:.1f} us" for k, us in t.items()), flush=True)
