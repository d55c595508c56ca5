"""Compile a kernel variant once per (config, arch) and keep it; launch through the DSL's TVM-FFI path.

`cute.compile` never caches, so compiled kernels live in a process-wide dict keyed by the frozen config (which
names the arch). Tensors are passed straight to the compiled function (TVM-FFI: argument checks in C, torch's
current stream), so the launch path does no Python-side re-validation.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from ..config import GemmConfig

__all__ = ["KernelCache", "get_kernel", "compile_stats", "clear_cache"]

class KernelCache:
    """Compiled kernels of one kernel family, keyed by their frozen config, with compile-time statistics."""

    def __init__(self):
        self.kernels: dict = {}
        self.lock = threading.Lock()
        self.stats = {"compiles": 0, "seconds": 0.0, "last_seconds": 0.0}

    def record(self, seconds: float) -> None:
        self.stats["compiles"] += 1
        self.stats["seconds"] += seconds
        self.stats["last_seconds"] = seconds

    def get(self, key, compile_fn):
        """The kernel of `key`, compiled by compile_fn(key) on first use (once, even when threads race)."""
        k = self.kernels.get(key)
        if k is None:
            with self.lock:
                k = self.kernels.get(key)
                if k is None:
                    k = self.kernels[key] = compile_fn(key)
        return k


_GEMMS = KernelCache()


def compile_stats() -> dict:
    """Number of GEMM compilations and seconds spent in them in this process."""
    return dict(_GEMMS.stats)


def clear_cache() -> None:
    _GEMMS.kernels.clear()


def fake_operands(cfg: GemmConfig):
    """Fake (shape-symbolic, memory-less) operands of the GEMM kernel, for compiling without a GPU."""
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

    half = {"float16": cutlass.Float16, "bfloat16": cutlass.BFloat16}
    # 8-bit (4-bit) activations travel as 16-bit units: A is a [M, K/2] ([M, K/4]) 16-bit view of the codes
    a_t, c_t = half.get(cfg.a_dtype, cutlass.Float16), half[cfg.c_dtype]

    def t2(dtype, div_cols, align=16):
        return make_fake_compact_tensor(dtype, (cute.sym_int(), cute.sym_int(divisibility=div_cols)),
                                        stride_order=(1, 0), assumed_align=align)

    def t1(dtype, align=4):
        return make_fake_compact_tensor(dtype, (cute.sym_int(),), assumed_align=align)

    def t3(dtype, div_cols, align=16):
        return make_fake_compact_tensor(dtype, (cute.sym_int(), cute.sym_int(), cute.sym_int(divisibility=div_cols)),
                                        stride_order=(2, 1, 0), assumed_align=align)

    A = t2(a_t, 64 * cfg.act_bits // 16)
    C = make_fake_compact_tensor(c_t, (cute.sym_int(), cute.sym_int()), stride_order=(1, 0), assumed_align=2)
    # the split-K workspace; the MoE GEMM (no split-K) with 8/4-bit activations takes its per-row activation
    # scales [M] in this slot (the row-weight slot holds the routing weights there)
    WS = t1(cutlass.Float32) if cfg.moe and cfg.act_bits < 16 else t2(cutlass.Float32, 64, 16)
    CNT = t1(cutlass.Int32)
    if cfg.moe:
        # per-expert operands carry a leading E mode: B [E, N/64, words], S/Z [E, groups, N/2],
        # CS [E, N_pad], G [E, 1], bias [E, N]
        B, S, Z = t3(cutlass.Int32, 128), t3(cutlass.Int32, 32), t3(cutlass.Int32, 32)
        CS = t2(cutlass.Float32, 4, 16)
        G = make_fake_compact_tensor(cutlass.Float32, (cute.sym_int(), 1), stride_order=(1, 0), assumed_align=4)
        BIAS = make_fake_compact_tensor(c_t, (cute.sym_int(), cute.sym_int()), stride_order=(1, 0),
                                        assumed_align=2)
    else:
        B, S, Z = t2(cutlass.Int32, 128), t2(cutlass.Int32, 32), t2(cutlass.Int32, 32)
        CS, G, BIAS = t1(cutlass.Float32, 16), t1(cutlass.Float32), t1(c_t, 2)
    SORTED, EXPERT, NPOST, TOPKW = t1(cutlass.Int32), t1(cutlass.Int32), t1(cutlass.Int32), t1(cutlass.Float32)
    return (A, B, S, Z, CS, G, BIAS, C, WS, CNT, SORTED, EXPERT, NPOST, TOPKW,
            make_fake_stream(use_tvm_ffi_env_stream=True))


def compile_aux(kernel, operands, arch: str, cache: "KernelCache"):
    """Compile a helper kernel (alignment, gather) for `arch` with its fake operands through TVM-FFI, recording
    the compile time in `cache`'s statistics."""
    import cutlass.cute as cute

    from ..arch import dsl_target

    target = dsl_target(arch)
    with target_arch(target):
        t0 = time.perf_counter()
        compiled = cute.compile(kernel, *operands, options=f"--gpu-arch {target} --enable-tvm-ffi")
        cache.record(time.perf_counter() - t0)
    return compiled


@contextlib.contextmanager
def target_arch(target: str):
    """Name the DSL target in CUTE_DSL_ARCH for the duration (ops built outside cute.compile read it)."""
    prev = os.environ.get("CUTE_DSL_ARCH")
    os.environ["CUTE_DSL_ARCH"] = target
    try:
        yield
    finally:
        if prev is None:
            os.environ.pop("CUTE_DSL_ARCH", None)
        else:
            os.environ["CUTE_DSL_ARCH"] = prev


def compile_kernel(cfg: GemmConfig, extra_options: str = ""):
    """Compile `cfg` for its arch (works without a GPU). Returns the compiled callable."""
    import cutlass.cute as cute

    from ..arch import dsl_target
    target = dsl_target(cfg.arch)
    with target_arch(target):
        if cfg.mainloop == "sm90":
            from ..kernels.mainloop_sm90 import Sm90MixedGemm

            kernel = Sm90MixedGemm(cfg)
        else:
            from ..kernels.gemm_sm80 import Sm80MixedGemm

            kernel = Sm80MixedGemm(cfg)
        t0 = time.perf_counter()
        try:
            compiled = cute.compile(kernel, *fake_operands(cfg),
                                    options=f"--gpu-arch {target} --enable-tvm-ffi {extra_options}".strip())
        except Exception as e:
            if cfg.custom_activation is None:
                raise
            from ..activations import describe

            raise ValueError(
                f"custom activation {describe(cfg.custom_activation)} could not be compiled into the epilogue: "
                f"{type(e).__name__}: {_first_line(e)}. Write it with arithmetic and humming_cute.activations "
                f"(exp, log, tanh, erf, sigmoid, maximum, minimum, where); data-dependent Python `if`/loops and "
                f"the `math`/`numpy` modules cannot be traced.") from e
        dt_s = time.perf_counter() - t0
    _GEMMS.record(dt_s)
    return compiled


def _first_line(e: Exception) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def get_kernel(cfg: GemmConfig):
    """The compiled kernel of `cfg`, compiled on first use."""
    return _GEMMS.get(cfg, compile_kernel)
