"""Sweep decode (M=1) configs of the mma.sync kernel on the GPU: fp16 x uint4 g128, CUDA-graph replay times."""
import os, sys, time, torch
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc
from humming_cute.arch import current_arch
from triton.testing import do_bench
torch.manual_seed(0)
arch = current_arch().target
def graph_time(fn):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        fn()
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            fn()
    torch.cuda.synchronize()
    return do_bench(lambda: g.replay(), warmup=25, rep=100, return_mode="median")
for (n, k) in [(8192, 8192), (4096, 4096)]:
    qw = hc.quantize_weight(torch.randn(n, k, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(1, k, device="cuda", dtype=torch.float16)
    y = hc.gemm(x, pw); torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(200): hc.gemm(x, pw)
    torch.cuda.synchronize(); cpu_us = (time.perf_counter() - t0) / 200 * 1e6
    print(f"N={n} K={k} default: do_bench {do_bench(lambda: hc.gemm(x, pw), return_mode='median')*1e3:.1f}us graph {graph_time(lambda: hc.gemm(x, pw))*1e3:.1f}us  per-call wall {cpu_us:.1f}us", flush=True)
    bytes_ = pw.packed.numel()*4 + pw.group_scales.numel()*4*2
    for bn in (64, 128):
      for bk, wk in ((256, 64), (512, 128)):
        for split in (1, 2, 4):
          for st in (4, 6):
            try:
                cfg = hc.GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16,
                    block_n=bn, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=st, split_k=split, arch=arch).validate()
                if (k // bk) // split < 2: continue
                f = lambda: hc.gemm(x, pw, config=cfg)
                yy = f(); torch.cuda.synchronize()
                assert ((yy.float()-y.float()).norm()/y.float().norm()).item() < 1e-3
                t = graph_time(f)
                print(f"  bn{bn} bk{bk} wk{wk} split{split} st{st}: {t*1e3:.1f}us  {bytes_/(t*1e-3)/1e9:.0f} GB/s", flush=True)
            except ValueError as e:
                pass
