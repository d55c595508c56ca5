"""What each supported GPU architecture (SM) offers, as plain data.

Kernels, configs and tests ask this module instead of re-deriving hardware facts, so every
"does sm_XY have instruction Z" decision lives in one place. Pure Python: importing it pulls in
neither torch nor cutlass (torch is imported lazily by :func:`current_arch` only).

Sources of the facts below (checked, not guessed):

* PTX ISA (NVIDIA "Parallel Thread Execution ISA", target ISA notes of each instruction):
  ``ldmatrix`` sm_75+; ``cp.async`` sm_80+; ``mma.sync`` m16n8k8 f16 sm_75+, m16n8k16 f16/bf16,
  m16n8k32 s8 and m16n8k64 s4 sm_80+; ``mma.sync`` with e4m3/e5m2 (m16n8k32) sm_89+;
  ``cp.async.bulk.tensor`` (TMA) sm_90+; ``wgmma.mma_async`` sm_90a only; ``tcgen05.*`` the
  sm_100a/sm_103a/sm_110a family; block-scaled ``mma.sync`` (``kind::mxf4`` etc.) sm_120a/sm_121a.
* CuTe DSL 4.8.1 admissibility checks (``cutlass.cute.nvgpu``): TMA copy ops require arch >= sm_90;
  tcgen05 MMA ops admit the sm_100f and sm_110f families; ``MmaSM120BlockScaledOp`` admits
  sm_120a/sm_121a only; the DSL has no sm_75 target (``Arch`` enum starts at sm_80).
* Native vs emulated, verified by compiling an inline-PTX ``mma.sync`` with CuTe DSL 4.8.1
  (ptxas 13.4) and disassembling the cubin with nvdisasm:
  - s4 m16n8k64 -> one ``IMMA.16864.S4.S4`` on sm_80/86/87/89; on sm_90a, sm_100a and sm_120a
    ptxas accepts it but emits two ``IMMA.16832.S8.S8`` plus sign-extension shifts (emulated).
  - e4m3 m16n8k32 -> one ``QMMA.16832.F32.E4M3.E4M3`` on sm_89 and sm_120a; on sm_90a, sm_100a
    and sm_110a ptxas emits ``F2FP.F16.E4M3.UNPACK`` conversions and two ``HMMA.16816`` (emulated).
  - s8 m16n8k32 -> one ``IMMA.16832.S8.S8`` on every target from sm_80 to sm_121a.
* Shared memory sizes: CUDA C++ Programming Guide, "Technical Specifications per Compute
  Capability" (max shared memory per SM / max opt-in shared memory per block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "ArchInfo",
    "KNOWN_ARCHS",
    "CI_TARGETS",
    "ACTIVATION_TYPES",
    "get_arch",
    "current_arch",
    "dsl_target",
]

KiB = 1024

#: Every activation type name the library knows, in a stable order.
ACTIVATION_TYPES: tuple[str, ...] = (
    "float16",
    "bfloat16",
    "float8e4m3",
    "float8e5m2",
    "int8",
    "int4",
    "float4e2m1",
)


@dataclass(frozen=True)
class ArchInfo:
    """Hardware and compiler facts for one SM version.

    ``has_mma_sync_*`` means ptxas accepts that ``mma.sync`` form for this target (the shapes the
    library uses: f16/bf16 m16n8k16, fp8 m16n8k32, s8 m16n8k32, s4 m16n8k64; on sm_75 only the
    older m16n8k8 / m8n8k16 / m8n8k32 shapes exist). ``mma_sync_*_native`` says whether it runs
    on a native tensor-core instruction rather than a ptxas emulation.
    """

    sm: int
    name: str
    target: str | None
    has_cp_async: bool
    has_ldmatrix: bool
    has_mma_sync_f16: bool
    has_mma_sync_fp8: bool
    has_mma_sync_int8: bool
    has_mma_sync_int4: bool
    has_tma: bool
    has_wgmma: bool
    has_tcgen05: bool
    has_blockscaled_mma_sync: bool
    smem_per_block_bytes: int
    smem_per_sm_bytes: int
    activation_types: tuple[str, ...]
    mma_sync_fp8_native: bool = False
    mma_sync_int4_native: bool = False

    @property
    def major(self) -> int:
        return self.sm // 10

    @property
    def minor(self) -> int:
        return self.sm % 10

    @property
    def capability(self) -> tuple[int, int]:
        """``(major, minor)`` as torch.cuda.get_device_capability returns it."""
        return (self.major, self.minor)

    @property
    def dsl_supported(self) -> bool:
        """Whether CuTe DSL can compile kernels for this SM (False only for sm_75)."""
        return self.target is not None

    def supports_activation(self, dtype_name: str) -> bool:
        return dtype_name in self.activation_types

    def __str__(self) -> str:
        return self.name


def _activations(sm: int) -> tuple[str, ...]:
    """Activation types allowed on ``sm`` (SPEC.md section 1 table, "min SM" column)."""
    if sm < 80:
        # sm_75 is served only by the torch fallback path, for fp16 and int8 activations.
        return ("float16", "int8")
    allowed = {"float16", "bfloat16", "int8", "int4"}
    if sm >= 89:
        allowed |= {"float8e4m3", "float8e5m2"}
    if sm >= 120:
        allowed.add("float4e2m1")
    return tuple(t for t in ACTIVATION_TYPES if t in allowed)


def _make(
    sm: int,
    target: str | None,
    smem_per_block_kib: int,
    smem_per_sm_kib: int,
) -> ArchInfo:
    return ArchInfo(
        sm=sm,
        name=f"sm_{sm}",
        target=target,
        has_cp_async=sm >= 80,
        has_ldmatrix=sm >= 75,
        has_mma_sync_f16=sm >= 75,
        has_mma_sync_fp8=sm >= 89,
        has_mma_sync_int8=sm >= 75,
        has_mma_sync_int4=sm >= 75,
        has_tma=sm >= 90,
        has_wgmma=sm == 90,
        has_tcgen05=sm in (100, 103, 110),
        has_blockscaled_mma_sync=sm in (120, 121),
        smem_per_block_bytes=smem_per_block_kib * KiB,
        smem_per_sm_bytes=smem_per_sm_kib * KiB,
        activation_types=_activations(sm),
        mma_sync_fp8_native=sm in (89, 120, 121),
        mma_sync_int4_native=75 <= sm <= 89,
    )


#: Every SM the library knows, keyed by its integer SM number (e.g. 90), in ascending order.
KNOWN_ARCHS: Mapping[int, ArchInfo] = {
    info.sm: info
    for info in (
        #     sm   DSL target  smem/block KiB  smem/SM KiB
        _make(75, None, 64, 64),
        _make(80, "sm_80", 163, 164),
        _make(86, "sm_86", 99, 100),
        _make(87, "sm_87", 163, 164),
        _make(89, "sm_89", 99, 100),
        _make(90, "sm_90a", 227, 228),
        _make(100, "sm_100a", 227, 228),
        _make(103, "sm_103a", 227, 228),
        _make(110, "sm_110a", 227, 228),
        _make(120, "sm_120a", 99, 100),
        _make(121, "sm_121a", 99, 100),
    )
}

#: The compile targets every kernel family is checked against on CPU (DESIGN.md, SPEC.md section 7).
CI_TARGETS: tuple[str, ...] = ("sm_80", "sm_86", "sm_89", "sm_90a", "sm_100a", "sm_120a")

_ARCH_STR_RE = re.compile(r"^(?:sm_?)?(\d{2,3})([af]?)$")
_CAPABILITY_STR_RE = re.compile(r"^(\d{1,2})\.(\d)$")


def _known_list() -> str:
    return ", ".join(info.name for info in KNOWN_ARCHS.values())


def _unknown(value: Any) -> ValueError:
    return ValueError(f"unknown GPU architecture {value!r}; known architectures: {_known_list()}")


def _to_sm(arch: Any) -> int:
    if isinstance(arch, ArchInfo):
        return arch.sm
    if isinstance(arch, bool):
        raise _unknown(arch)
    if isinstance(arch, int):
        return arch
    if isinstance(arch, tuple) and len(arch) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in arch
    ):
        major, minor = arch
        if not 0 <= minor <= 9:
            raise _unknown(arch)
        return major * 10 + minor
    if isinstance(arch, str):
        text = arch.strip().lower()
        match = _ARCH_STR_RE.match(text)
        if match:
            return int(match.group(1))
        match = _CAPABILITY_STR_RE.match(text)
        if match:
            return int(match.group(1)) * 10 + int(match.group(2))
    raise _unknown(arch)


def get_arch(sm: int | str | tuple[int, int] | ArchInfo) -> ArchInfo:
    """Look up an architecture by SM number or name.

    Accepts ``90``, ``"sm_90"``, ``"sm_90a"``, ``"90a"``, ``"9.0"``, ``(9, 0)`` or an
    :class:`ArchInfo`. Raises ``ValueError`` naming the known architectures otherwise.
    """
    number = _to_sm(sm)
    try:
        return KNOWN_ARCHS[number]
    except KeyError:
        raise _unknown(sm) from None


def current_arch(device: Any = None) -> ArchInfo:
    """The :class:`ArchInfo` of a CUDA device (default: torch's current device).

    Raises ``RuntimeError`` when CUDA is unavailable and ``NotImplementedError`` for a GPU whose
    architecture the library does not know.
    """
    import torch  # lazy: keep this module importable without torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "current_arch() needs a CUDA GPU, but torch.cuda.is_available() is False "
            "(no GPU, no driver, or a CPU-only torch build); name the architecture explicitly, "
            "e.g. get_arch('sm_90a'), to compile without a GPU"
        )
    capability = torch.cuda.get_device_capability(device)
    try:
        return get_arch(tuple(capability))
    except ValueError:
        name = torch.cuda.get_device_name(device)
        raise NotImplementedError(
            f"GPU {name!r} has compute capability {capability[0]}.{capability[1]} "
            f"(sm_{capability[0]}{capability[1]}), which humming_cute does not support; "
            f"supported architectures: {_known_list()}"
        ) from None


def dsl_target(arch: int | str | tuple[int, int] | ArchInfo) -> str:
    """The CuTe DSL compile target (``--gpu-arch`` value) for an architecture, e.g. ``"sm_90a"``.

    Raises ``NotImplementedError`` for sm_75, which CuTe DSL cannot target.
    """
    info = get_arch(arch)
    if info.target is None:
        raise NotImplementedError(
            f"CuTe DSL cannot target {info.name}; the library falls back to a torch "
            "dequantize+matmul path there"
        )
    return info.target
