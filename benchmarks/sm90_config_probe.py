"""Time wgmma-mainloop tile configs against the mma.sync default on the GPU (fp16 x uint4 g128 by default):
`python benchmarks/sm90_config_probe.py [b_dtype group]`. Each config's output is checked against the mma.sync
result first. Prints one line per (shape, M, config) with time and TFLOP/s."""
import os
import sys

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.tune.heuristics import default_config  # noqa: E402

b_dtype = sys.argv[1] if len(sys.argv) > 1 else "uint4"
group = int(sys.argv[2]) if len(sys.argv) > 2 else 128
print(torch.cuda.get_device_name(), b_dtype, "group", group, flush=True)
torch.manual_seed(0)
for n, k in [(8192, 8192), (28672, 4096)]:
    qw = hc.quantize_weight(torch.randn(n, k, device="cuda"), b_dtype, group)
    pw = hc.prepare_weight(qw, "float16")
    for m in (64, 256, 1024, 4096):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        ref_cfg = default_config(m, n, k, a_dtype="float16", b_dtype=b_dtype, c_dtype="float16", group_size=group,
                                 arch="sm_90a", batch_invariant=True).with_(block_k=64, warp_k=64)
        y0 = hc.gemm(x, pw, config=ref_cfg)
        cands = [("sm80", ref_cfg)]
        for bm, bn, bk, st in [(64, 128, 64, 4), (128, 128, 64, 4), (128, 256, 64, 3), (256, 128, 64, 3),
                               (128, 128, 128, 3), (64, 256, 64, 4)]:
            if bm > max(64, 2 * m):
                continue
            cfg = hc.GemmConfig(a_dtype="float16", b_dtype=b_dtype, c_dtype="float16", group_size=group,
                                block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk, stages=st,
                                arch="sm_90a", mainloop="sm90")
            cands.append((f"sm90 {bm}x{bn}x{bk} st{st}", cfg))
        for name, cfg in cands:
            try:
                y = hc.gemm(x, pw, config=cfg)
                torch.cuda.synchronize()
                rel = ((y.float() - y0.float()).norm() / y0.float().norm()).item()
                t = do_bench(lambda: hc.gemm(x, pw, config=cfg), warmup=25, rep=60, return_mode="median")
                print(f"N={n} K={k} M={m:5d} {name:24s} {t * 1e3:9.1f} us {2 * m * n * k / t / 1e9:7.1f} TFLOP/s "
                      f"rel {rel:.1e}", flush=True)
            except Exception as e:  # noqa: BLE001 - a probe reports and goes on
                print(f"N={n} K={k} M={m:5d} {name:24s} FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
