"""Compile a kernel variant once per (config, arch) and keep it; launch through the DSL's TVM-FFI path.

`cute.compile` never caches, so compiled kernels live in a process-wide dict keyed by the frozen config (which
names the arch). Tensors are passed straight to the compiled function (TVM-FFI: argument checks in C, torch's
current stream), so the launch path does no Python-side re-validation.

On disk, compiled kernels can also be kept across processes (`disk_cache_dir`): the DSL exports a compiled function
as an object file (host code and the embedded cubin), which loads in milliseconds instead of seconds of compiling.
Files are keyed by the config, the library and DSL versions and a hash of this package's sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
import warnings
from typing import Optional

from ..config import GemmConfig

__all__ = ["KernelCache", "get_kernel", "compile_stats", "clear_cache", "disk_cache_dir", "DISK_CACHE_ENABLED"]

#: the on-disk kernel cache (export, key, load CPU-tested; a kernel loaded from disk launches on the GPU and matches
#: the compiled one bitwise: tests/test_kernel_disk_cache.py) is on by default; False turns it off for the process
DISK_CACHE_ENABLED = True
_EXPORT_NAME = "hc_kernel"          # the exported function's name inside each object file
_OFF = ("0", "off", "false", "no", "none")
_warned: set = set()


def _warn_once(tag: str, msg: str) -> None:
    if tag not in _warned:
        _warned.add(tag)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def disk_cache_dir() -> Optional[str]:
    """Where compiled kernels are kept across processes, or None when that is off: ``$HUMMING_CUTE_KERNEL_CACHE``
    (``0`` / ``off`` turns it off), by default ``~/.cache/humming_cute/kernels``."""
    v = os.environ.get("HUMMING_CUTE_KERNEL_CACHE")
    if v is not None and v.strip().lower() in _OFF:
        return None
    if not DISK_CACHE_ENABLED:
        if v:
            _warn_once("disabled", "HUMMING_CUTE_KERNEL_CACHE is set, but the on-disk kernel cache is switched off "
                                     "(runtime.compile.DISK_CACHE_ENABLED = False); kernels are compiled per process")
        return None
    return v or os.path.join(os.path.expanduser("~"), ".cache", "humming_cute", "kernels")


_SOURCE_HASH: Optional[str] = None


def _source_hash() -> str:
    """sha256 of every .py file of the package (path and content): any change to the kernels' code, the configs
    or the layouts gives new cache keys."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    h.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as fh:
                        h.update(fh.read())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


def _dsl_version() -> str:
    try:
        from importlib.metadata import version

        return version("nvidia-cutlass-dsl")
    except Exception:  # noqa: BLE001 - any failure gives a key that never matches a real version
        return "unknown"


def disk_key(family: str, key) -> str:
    """The file name (without directory) of a compiled kernel on disk."""
    from .. import __version__

    text = "|".join((family, repr(key), __version__, _dsl_version(), _source_hash()))
    return f"{family}-{hashlib.sha256(text.encode()).hexdigest()[:40]}.o"


class KernelCache:
    """Compiled kernels of one kernel family, keyed by their frozen config, with compile-time statistics. With a
    `family` name the kernels are also kept on disk (`disk_cache_dir`) and loaded from there by later processes."""

    def __init__(self, family: Optional[str] = None):
        self.family = family
        self.kernels: dict = {}
        self.lock = threading.Lock()
        self.stats = {"compiles": 0, "seconds": 0.0, "last_seconds": 0.0, "disk_loads": 0, "disk_seconds": 0.0}

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
                    k = self.kernels[key] = self._load_or_compile(key, compile_fn)
        return k

    def _load_or_compile(self, key, compile_fn):
        """From the disk cache where it holds `key` (a file that does not load is replaced), else compiled and
        written there; configs with a custom Python activation are never kept on disk."""
        d = disk_cache_dir() if self.family and getattr(key, "custom_activation", None) is None else None
        if d is None:
            return compile_fn(key)
        path = os.path.join(d, disk_key(self.family, key))
        if os.path.exists(path):
            t0 = time.perf_counter()
            try:
                import cutlass.runtime as cr

                fn = getattr(cr.load_module(path, enable_tvm_ffi=True), _EXPORT_NAME)
                self.stats["disk_loads"] += 1
                self.stats["disk_seconds"] += time.perf_counter() - t0
                return fn
            except Exception as e:  # noqa: BLE001 - a bad file is recompiled and rewritten
                _warn_once("load", f"humming_cute: could not load the cached kernel {path} ({type(e).__name__}: "
                                   f"{e}); compiling it again")
        compiled = compile_fn(key)
        tmp = None
        try:
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".o", dir=d)
            os.close(fd)
            compiled.export_to_c(tmp, function_name=_EXPORT_NAME)
            os.replace(tmp, path)            # atomic: other processes see the whole file or none
            tmp = None
        except Exception as e:  # noqa: BLE001 - the kernel still runs; only the disk copy is missing
            _warn_once("export", f"humming_cute: could not write the kernel cache in {d} ({type(e).__name__}: {e})")
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
        return compiled


_GEMMS = KernelCache("gemm")


def compile_stats() -> dict:
    """Number of GEMM compilations and seconds spent in them in this process (and kernels loaded from the disk
    cache, and seconds spent loading them)."""
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
