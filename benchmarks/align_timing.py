"""Time `moe_align_block_size`'s torch ops against its single-CTA kernel on the GPU (`bench_ms`: L2 flushed, CUDA
graph replay), uniform random routing. Usage: python3 benchmarks/align_timing.py"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.moe_align import kernel_threads, moe_align_block_size  # noqa: E402

print(torch.cuda.get_device_name(), flush=True)
for tokens, top_k, experts, block_m in [(1, 8, 128, 16), (64, 8, 128, 16), (4096, 8, 128, 64), (4096, 2, 8, 128)]:
    ids = torch.rand(tokens, experts, device="cuda").argsort(dim=1)[:, :top_k].to(torch.int32)
    t = {impl: bench_ms(lambda: moe_align_block_size(ids, block_m, experts, impl=impl), 30) * 1e3
         for impl in ("torch", "kernel")}
    print(f"tokens {tokens} top_k {top_k} E {experts} block_m {block_m} (threads "
          f"{kernel_threads(ids.numel(), experts, 'sm_90a')}): torch {t['torch']:.1f} us, kernel {t['kernel']:.1f} us",
          flush=True)
