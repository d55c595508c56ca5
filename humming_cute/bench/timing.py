"""GPU timing: medians with L2 flushed, the copy bandwidth and the cuBLAS rates (16-bit, fp8, int8) of this card,
environment info."""

from __future__ import annotations

import datetime
import platform
import statistics
import subprocess
from typing import Callable

import torch

from ..quant.reference import full_fp32_matmul  # noqa: F401  (shared with the oracle)

__all__ = ["bench_ms", "timer_name", "copy_bandwidth", "cublas_peak_flops", "act8_peak_flops", "environment",
           "full_fp32_matmul"]

_WARMUP_MS = 25.0
_FLUSH_BYTES = 256 * 1024 * 1024  # far larger than the L2 of any current GPU (H100: 50 MB, B200: 126 MB)


def timer_name() -> str:
    try:
        import triton.testing  # noqa: F401

        return "triton.testing.do_bench(return_mode='median')"
    except ImportError:
        return "CUDA events around each call, 256 MB buffer zeroed before each call, median"


def bench_ms(fn: Callable[[], object], rep_ms: float = 100.0) -> float:
    """Median milliseconds of one ``fn()`` with the L2 cache flushed before every timed call.

    With triton installed this is ``triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median")``:
    it zeroes a 256 MB buffer before each call, times each call with CUDA events and runs as many calls as fit in
    `rep_ms`. Without triton the same method is done here."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        return float(do_bench(fn, warmup=_WARMUP_MS, rep=rep_ms, return_mode="median"))

    flush = torch.empty(_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    # estimate one call (flush included), as do_bench does, to turn milliseconds into a number of calls
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(5):
        flush.zero_()
        fn()
    e.record()
    torch.cuda.synchronize()
    est = max(s.elapsed_time(e) / 5, 1e-3)
    for _ in range(max(1, int(_WARMUP_MS / est))):
        fn()
    n = max(1, int(rep_ms / est))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        flush.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(starts, ends))


def copy_bandwidth(rep_ms: float = 100.0) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting the bytes read and the bytes written, on 1 GiB."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src), rep_ms)
    del src, dst
    return 2 * (1 << 30) / (ms * 1e-3)


def cublas_peak_flops(dtype: torch.dtype, size: int = 8192, rep_ms: float = 100.0) -> float:
    """flop/s of a ``size^3`` torch.matmul (cuBLAS) in `dtype` on random data: the compute roof of this run."""
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    ms = bench_ms(lambda: torch.matmul(a, b), rep_ms)
    del a, b
    return 2.0 * size ** 3 / (ms * 1e-3)


def act8_peak_flops(a_dtype: str, size: int = 8192, rep_ms: float = 100.0) -> tuple[float, str]:
    """flop/s of a ``size^3`` 8-bit GEMM on random data, the compute roof of an `a_dtype` activation run, and what
    was timed: ``torch._int_mm`` for int8; for fp8, ``torch._scaled_mm`` e4m3 x e4m3 with tensor-wise scales and
    bf16 output (cuBLASLt's plain fp8 path; e5m2 runs on the same tensor cores at the same rate)."""
    a = torch.randn(size, size, device="cuda")
    b = torch.randn(size, size, device="cuda")
    if a_dtype == "int8":
        a8, b8 = (t.mul_(32).round_().clamp_(-127, 127).to(torch.int8) for t in (a, b))
        what = f"torch._int_mm int8 {size}x{size}x{size}, random data"

        def fn():
            return torch._int_mm(a8, b8.t())
    else:
        a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda")
        what = f"torch._scaled_mm float8_e4m3fn {size}x{size}x{size}, tensor-wise scales, bf16 output, random data"

        def fn():
            return torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    del a, b
    ms = bench_ms(fn, rep_ms)
    del a8, b8
    return 2.0 * size ** 3 / (ms * 1e-3), what


def _driver_version():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(module: str, dist: str = None):
    """The version of an importable module (its __version__, else its distribution's), or None."""
    try:
        mod = __import__(module)
        v = getattr(mod, "__version__", None)
        if v:
            return str(v)
    except Exception:  # noqa: BLE001 - any failure to import means "not available"
        pass
    if dist:
        try:
            from importlib.metadata import version

            return version(dist)
        except Exception:  # noqa: BLE001
            return None
    return None


def environment(device: torch.device, command: str) -> dict:
    """Card, driver and versions of everything that was timed, the date and the command."""
    import humming_cute

    props = torch.cuda.get_device_properties(device)
    return dict(
        card=props.name, sm=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
        l2_bytes=getattr(props, "L2_cache_size", None), gpu_memory_bytes=props.total_memory,
        driver=_driver_version(), torch=torch.__version__, cuda=torch.version.cuda,
        cutlass_dsl=_version("cutlass", "nvidia-cutlass-dsl"), triton=_version("triton"),
        humming_kernels=_version("humming", "humming-kernels"), humming_cute=humming_cute.__version__,
        python=platform.python_version(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        command=command, timer=timer_name())
