"""Time humming_cute's GEMM against torch's fp16/bf16 matmul (cuBLAS) on the same card, in the same process.

Every timed output is first checked against the reference. Times are medians with L2 flushed before each run
(triton's do_bench when present). The memory floor is the bytes that must move (packed weight + scales +
activations + output) over the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys

import torch


def _bench(fn, reps: int = 50) -> float:
    """Median milliseconds of fn() with L2 flushed before each call."""
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=reps, return_mode="median"))
    except ImportError:
        flush = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda")
        for _ in range(5):
            fn()
        times = []
        for _ in range(reps):
            flush.zero_()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        return statistics.median(times)


def _driver_version():
    """The NVIDIA driver version as nvidia-smi reports it (None when unavailable)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write) on a buffer far larger than L2."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = _bench(lambda: dst.copy_(src), reps=30)
    return 2 * src.numel() / (ms * 1e-3)


def main(argv=None) -> int:
    import humming_cute as hc
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.runtime.compile import compile_stats

    p = argparse.ArgumentParser(prog="python -m humming_cute.bench", description=__doc__)
    p.add_argument("--a-dtype", default="float16")
    p.add_argument("--b-dtype", default="uint4")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--scale-dtype", default="float16")
    p.add_argument("--shapes", default="8192x8192", help="comma-separated NxK")
    p.add_argument("--m", default="1,16,64,256,1024,4096")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)

    dev = torch.device("cuda")
    ad = getattr(torch, args.a_dtype)
    props = torch.cuda.get_device_properties(dev)
    bw = copy_bandwidth()
    rows = []
    try:
        from tqdm import tqdm  # progress bar when available
    except ImportError:
        def tqdm(x, **_):
            return x
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    ms_list = [int(v) for v in args.m.split(",")]
    work = [(n, k, m) for (n, k) in shapes for m in ms_list]
    cache = {}
    for n, k, m in tqdm(work, desc="bench", file=sys.stderr):
        if (n, k) not in cache:
            torch.manual_seed(0)
            w = torch.randn(n, k, device=dev)
            qw = hc.quantize_weight(w, args.b_dtype, args.group_size, args.scale_dtype)
            pw = hc.prepare_weight(qw, args.a_dtype)
            w16 = hc.dequantize_weight(qw).to(ad)
            cache[(n, k)] = (qw, pw, w16)
        qw, pw, w16 = cache[(n, k)]
        x = torch.randn(m, k, device=dev, dtype=ad)
        y = hc.gemm(x, pw)
        ref = reference_gemm(x, qw, out_dtype=torch.float32)
        rel = ((y.float() - ref).norm() / ref.norm()).item()
        t_hc = _bench(lambda: hc.gemm(x, pw))
        t_torch = _bench(lambda: torch.matmul(x, w16.t()))
        wbytes = pw.packed.numel() * 4 + sum(t.numel() * t.element_size() for t in
                                             (pw.group_scales, pw.neg_sub, pw.channel_scales) if t is not None)
        bytes_total = wbytes + x.numel() * x.element_size() + m * n * 2
        floor_ms = bytes_total / bw * 1e3
        flops = 2.0 * m * n * k
        rows.append(dict(m=m, n=n, k=k, rel_err=rel, humming_cute_ms=t_hc, torch_matmul_ms=t_torch,
                         ratio_vs_torch=t_hc / t_torch, tflops=flops / (t_hc * 1e-3) / 1e12,
                         weight_gbps=wbytes / (t_hc * 1e-3) / 1e9, memory_floor_ms=floor_ms,
                         pct_of_memory_floor=100.0 * floor_ms / t_hc))
    import cutlass

    result = dict(card=props.name, driver=_driver_version(), torch=torch.__version__, cuda=torch.version.cuda,
                  cutlass_dsl=getattr(cutlass, "__version__", None), python=platform.python_version(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(), command=" ".join(sys.argv),
                  a_dtype=args.a_dtype, b_dtype=args.b_dtype, group_size=args.group_size,
                  scale_dtype=args.scale_dtype, copy_bandwidth_gbps=bw / 1e9, compile=compile_stats(), rows=rows)
    print(f"{props.name}  copy bandwidth {bw / 1e9:.0f} GB/s  {args.a_dtype} x {args.b_dtype} g{args.group_size}")
    print(f"{'M':>6} {'N':>6} {'K':>6} {'hc ms':>9} {'torch ms':>9} {'hc/torch':>8} {'%floor':>7} {'TFLOP/s':>8}"
          f" {'relerr':>8}")
    for r in rows:
        print(f"{r['m']:>6} {r['n']:>6} {r['k']:>6} {r['humming_cute_ms']:>9.4f} {r['torch_matmul_ms']:>9.4f} "
              f"{r['ratio_vs_torch']:>8.3f} {r['pct_of_memory_floor']:>6.1f}% {r['tflops']:>8.1f} "
              f"{r['rel_err']:>8.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
