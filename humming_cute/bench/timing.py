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

__all__ = ["bench_ms", "bench_ms_back_to_back", "rotation_copies", "l2_bytes", "back_to_back_name", "timer_name", "copy_bandwidth", "cublas_peak_flops", "act8_peak_flops", "environment",
           "full_fp32_matmul"]

_WARMUP_MS = 25.0
_FLUSH_BYTES = 256 * 1024 * 1024  # far larger than the L2 of any current GPU (H100: 50 MB, B200: 126 MB)


def timer_name() -> str:
    return ("CUDA events around each call, after a read of a 256 MB buffer that evicts the L2 and leaves it clean; "
            "the call's kernels replayed as a CUDA graph where they can be captured (else called eagerly); median")


_flush_buf = None
# how the last bench_ms call ran its function: "cuda_graph" or "eager" (recorded per timed entry)
last_mode = None


def _flush() -> None:
    """Evict the L2 by reading 256 MB (a read leaves no dirty lines behind for the timed kernel to write back)."""
    global _flush_buf
    if _flush_buf is None:
        _flush_buf = torch.zeros(_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    _flush_buf.max()


def _as_graph(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn`'s kernels captured into a CUDA graph (its replay), so the host time of a Python wrapper is not timed
    when it exceeds the flush's GPU time; `fn` itself when it cannot be captured (a host sync, say)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        torch.cuda.synchronize()
        return g.replay
    except Exception:  # noqa: BLE001 - any capture failure means: time it eagerly
        torch.cuda.synchronize()
        return fn


def bench_ms(fn: Callable[[], object], rep_ms: float = 100.0, graph: bool = True) -> float:
    """Median milliseconds of one ``fn()`` with the L2 evicted (and clean) before every timed call.

    After a warm-up, ``fn`` is captured as a CUDA graph where possible (`graph`), then each timed call is: the L2
    flush (a 256 MB read, ~60 us of GPU time that also covers the host's launch time), a start event, the call, an
    end event; as many calls as fit in `rep_ms`."""
    global last_mode
    fn()
    torch.cuda.synchronize()
    call = _as_graph(fn) if graph else fn
    last_mode = "eager" if call is fn else "cuda_graph"
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(5):
        _flush()
        call()
    e.record()
    torch.cuda.synchronize()
    est = max(s.elapsed_time(e) / 5, 1e-3)
    for _ in range(max(1, int(_WARMUP_MS / est))):
        call()
    n = max(10, int(rep_ms / est))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        _flush()
        starts[i].record()
        call()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(starts, ends))


def back_to_back_name(between: bool = False) -> str:
    """How the back-to-back times were taken (`between`: a torch kernel on each call's output after it)."""
    return ("one CUDA graph of many calls back to back, each on its own copy of the weight (the copies together at "
            "least 3x the L2, so every call reads its weight from memory), CUDA events around each replay; median "
            "replay time / calls: no per-call event or launch cost, as in a serving engine's captured decode step"
            + ("; after each call a torch kernel on its output (y.add_(0), timed with it), as a norm or activation "
               "kernel sits between two layers" if between else ""))


def l2_bytes(device) -> int:
    """The L2 size of `device` in bytes."""
    return torch.cuda.get_device_properties(device).L2_cache_size


def rotation_copies(weight_bytes: float, l2_bytes: int, factor: float = 3.0, most: int = 64) -> int:
    """How many weight copies a back-to-back timing rotates through: together >= `factor` x the L2 (so a copy's
    lines are gone when its turn comes again), at least 2, at most `most`."""
    need = int(-(-factor * l2_bytes // max(weight_bytes, 1.0)))
    return max(2, min(most, need))


def bench_ms_back_to_back(fns: list, rep_ms: float = 100.0, min_calls: int = 32) -> float:
    """Median milliseconds per call of ``fns[0](), fns[1](), ...`` issued back to back (the list repeated until
    there are >= `min_calls` calls) in one CUDA graph, events around each replay, no flush in between.

    Each function should run on its own copy of the weight, the copies together larger than the L2
    (`rotation_copies`), so that what a call reads comes from memory as in `bench_ms`, while the fixed cost of an
    event pair and a launch per call (several microseconds, more than the kernel itself at small sizes) is shared
    by all the calls of the replay. Raises when the calls cannot be captured."""
    if len(fns) < 2:
        raise ValueError(f"a back-to-back timing rotates >= 2 weight copies, got {len(fns)}")
    calls = fns * max(1, -(-min_calls // len(fns)))
    for fn in fns:
        fn()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for fn in calls:
            fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    g.replay()
    e.record()
    torch.cuda.synchronize()
    est = max(s.elapsed_time(e), 1e-3)
    for _ in range(max(1, int(_WARMUP_MS / est))):
        g.replay()
    n = max(10, int(rep_ms / est))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        starts[i].record()
        g.replay()
        ends[i].record()
    torch.cuda.synchronize()
    del g
    return statistics.median(a.elapsed_time(b) for a, b in zip(starts, ends)) / len(calls)


def copy_bandwidth(rep_ms: float = 100.0) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting the bytes read and the bytes written, on 1 GiB."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    # eager: a D2D copy captured in a CUDA graph becomes a copy-engine memcpy node (2.8 TB/s on an H200 instead of
    # 4.2 from the copy kernel)
    ms = bench_ms(lambda: dst.copy_(src), rep_ms, graph=False)
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
