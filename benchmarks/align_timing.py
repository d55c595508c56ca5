"""Time `moe_align_block_size`'s torch ops against its single-CTA kernel on the GPU (`bench_ms`: L2 flushed, CUDA
graph replay), uniform random routing; above 4096 ids the kernel also with 32-id load batches (`wide`, enabled
through config.ALLOW_UNVERIFIED until verified). Usage: python3 benchmarks/align_timing.py"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute.config as hconfig  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.moe_align import kernel_threads, load_unroll, moe_align_block_size  # noqa: E402

print(torch.cuda.get_device_name(), flush=True)
for tokens, top_k, experts, block_m in [(1, 8, 128, 16), (64, 8, 128, 16), (512, 8, 128, 64), (4096, 8, 128, 64),
                                        (4096, 2, 8, 128), (8192, 8, 256, 64)]:
    ids = torch.rand(tokens, experts, device="cuda").argsort(dim=1)[:, :top_k].to(torch.int32)
    threads = kernel_threads(ids.numel(), experts, "sm_90a")
    t = {}
    for impl, wide in (("torch", False), ("kernel", False), ("kernel", True)):
        if wide and (threads or 0) < 128:
            continue
        hconfig.ALLOW_UNVERIFIED = wide
        us = bench_ms(lambda: moe_align_block_size(ids, block_m, experts, impl=impl), 30) * 1e3
        t[impl + (" wide" if wide else "")] = (us, load_unroll(threads or 0))
    hconfig.ALLOW_UNVERIFIED = False
    print(f"tokens {tokens} top_k {top_k} E {experts} block_m {block_m} (threads {threads}): "
          + ", ".join(f"{k} {us:.1f} us" + (f" ({u}-id batches)" if k != "torch" else "") for k, (us, u) in t.items()),
          flush=True)
