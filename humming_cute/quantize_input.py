"""`quantize_input(x, dtype, group_size)`: activation quantization on the GPU with the fused CuTe DSL kernel of
`kernels/quantize_input.py`, bit-identical to the reference `humming_cute.quant.activation.quantize_activation`.

Every argument is checked (type, dtype, shape, group size, device) before anything is compiled. Kernels are
compiled once per `QuantizeInputConfig` (target type, group size, input dtype, arch, vector width, conversion
path) and kept in a process-wide dict, like `runtime/compile.py` does for the GEMM; calls go through the DSL's
TVM-FFI path on torch's current stream.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from . import dtypes as _dt
from .runtime.compile import KernelCache

if TYPE_CHECKING:  # the kernel module imports cutlass: keep `import humming_cute` free of it
    from .kernels.quantize_input import QuantizeInputConfig

__all__ = ["quantize_input", "select_config", "get_quantize_kernel", "compile_quantize_input", "compile_stats",
           "clear_cache"]

_STORAGE = {
    "float8e4m3": torch.float8_e4m3fn,
    "float8e5m2": torch.float8_e5m2,
    "int8": torch.int8,
    "int4": torch.int8,
    "float4e2m1": torch.uint8,
}
QUANT_TYPES = tuple(_STORAGE)
_IN_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}

_KERNELS = KernelCache("quantize_input")


def compile_stats() -> dict:
    """Number of quantize-input compilations and seconds spent in them in this process."""
    return dict(_KERNELS.stats)


def clear_cache() -> None:
    _KERNELS.kernels.clear()


# ---------------------------------------------------------------------------------------------- argument checks
def _parse_qtype(dtype) -> str:
    t = _dt.parse_dtype(dtype)
    if t.name not in QUANT_TYPES:
        if t.name in ("float16", "bfloat16", "float32"):
            raise ValueError(f"{t.name} activations are not quantized; quantize_input targets one of "
                             f"{', '.join(QUANT_TYPES)}")
        raise ValueError(f"{t.name} is not a quantized activation type; choose one of {', '.join(QUANT_TYPES)}")
    return t.name


def _check_group(group_size, k: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int (0 = one scale per token), got {group_size!r}")
    if group_size == 0:
        return 0
    if group_size < 0:
        raise ValueError(f"group_size must be 0 (per token) or a power of two in [16, K], got {group_size}")
    if group_size < 16 or group_size & (group_size - 1):
        raise ValueError(f"the quantize-input kernel supports group sizes that are powers of two >= 16 (or 0, per "
                         f"token), got {group_size}; humming_cute.quantize_activation (reference) takes any divisor")
    if group_size > k:
        raise ValueError(f"group_size {group_size} is larger than K = {k}")
    if k % group_size:
        raise ValueError(f"group_size {group_size} does not divide K = {k}")
    return group_size


def check_arguments(x, dtype, group_size) -> tuple[str, int]:
    """All argument checks of `quantize_input` except the device; returns (target type name, group size)."""
    from .quant.activation import check_activation_input

    qtype = _parse_qtype(dtype)
    _, k = check_activation_input(x)
    return qtype, _check_group(group_size, k)


# ---------------------------------------------------------------------------------------------- compile + cache
def select_config(x: torch.Tensor, qtype: str, group_size: int, arch: str, soft_float: bool = False
                  ) -> QuantizeInputConfig:
    """The kernel variant for `x` (rows contiguous): the widest vector load (<= 16 bytes) that divides K and
    matches the alignment of x's data pointer."""
    from .kernels.quantize_input import QuantizeInputConfig

    eb = x.element_size()
    vec = 16 // eb
    k = x.shape[1]
    ptr = x.data_ptr()
    while vec > 1 and (k % vec or ptr % (vec * eb)):
        vec //= 2
    return QuantizeInputConfig(qtype, group_size, _IN_NAMES[x.dtype], arch, vec=vec, soft_float=soft_float)


def compile_quantize_input(cfg: QuantizeInputConfig, extra_options: str = ""):
    """Compile `cfg` for its arch (no GPU needed). Returns the compiled TVM-FFI callable f(x, q_uint8, scales)."""
    import cutlass.cute as cute

    from .arch import dsl_target
    from .kernels.quantize_input import QuantizeInputKernel, fake_operands

    from .runtime.compile import target_arch

    target = dsl_target(cfg.arch)
    with target_arch(target):
        t0 = time.perf_counter()
        compiled = cute.compile(QuantizeInputKernel(cfg), *fake_operands(cfg),
                                options=f"--gpu-arch {target} --enable-tvm-ffi {extra_options}".strip())
        dt_s = time.perf_counter() - t0
    _KERNELS.record(dt_s)
    return compiled


def get_quantize_kernel(cfg: QuantizeInputConfig):
    """The compiled kernel of `cfg`, compiled on first use."""
    return _KERNELS.get(cfg, compile_quantize_input)


def _arch_of(device: torch.device) -> str:
    from .ops import device_target

    return device_target(device)


# ---------------------------------------------------------------------------------------------- public entry
def _rows_contiguous(x: torch.Tensor) -> torch.Tensor:
    m, k = x.shape
    if x.stride(1) != 1 or (m > 1 and x.stride(0) != k):
        x = x.contiguous()
    if m == 1 and x.stride(0) != k:  # a single row may carry any leading stride; the kernel expects K
        x = x.as_strided((1, k), (k, 1))
    return x


def _run(x: torch.Tensor, qtype: str, group: int, arch: str, soft_float: bool, kernel_for=None):
    """Allocate the outputs and launch (`kernel_for(cfg)` gives the callable; tests substitute it)."""
    m, k = x.shape
    x = _rows_contiguous(x)
    q = torch.empty(m, k, dtype=_STORAGE[qtype], device=x.device)
    scales = torch.empty(m, k // group if group else 1, dtype=torch.float32, device=x.device)
    if m == 0:
        return q, scales
    cfg = select_config(x, qtype, group, arch, soft_float)
    kernel = (kernel_for or get_quantize_kernel)(cfg)
    kernel(x, q.view(torch.uint8), scales)
    return q, scales


def quantize_input(x: torch.Tensor, dtype, group_size: int = 0, *, soft_float: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize activations ``x[M, K]`` (fp16/bf16/fp32, CUDA) to `dtype` in one fused kernel on the current
    stream. Returns ``(q, scales)`` exactly as `humming_cute.quantize_activation` does (same storage dtypes, same
    codes bit for bit, same fp32 scales): `q` ``[M, K]`` (``float8_e4m3fn``, ``float8_e5m2``, ``int8`` for int8
    and int4, ``uint8`` e2m1 codes), `scales` fp32 ``[M, 1]`` (``group_size=0``) or ``[M, K // group_size]``.

    `dtype`: float8e4m3, float8e5m2, int8, int4 or float4e2m1 (names, humming_cute dtypes or torch fp8 dtypes).
    `group_size`: 0 (per token) or a power of two >= 16 dividing K. `soft_float`: round fp8 with the kernel's
    integer path instead of ``cvt.rn.satfinite`` even on sm_89+ (bit-identical; used by the tests).
    """
    qtype, group = check_arguments(x, dtype, group_size)
    if x.device.type != "cuda":
        raise ValueError(f"quantize_input runs on CUDA tensors; x is on {x.device} "
                         f"(humming_cute.quantize_activation is the device-agnostic reference)")
    return _run(x, qtype, group, _arch_of(x.device), bool(soft_float))
