"""8-bit and 4-bit warp MMAs for CuTe DSL kernels on raw 32-bit registers: signed-integer ``mma.sync`` s8
m16n8k32 and s4 m16n8k64, and fp8 (e4m3 / e5m2) m16n8k32 with fp32 accumulators.

CuTe DSL 4.8.1 ships no integer ``mma.sync`` atom, and an atom built on the plain ``Int8`` type
emits the *unsigned* ``.u8`` form. So the two instructions the integer-activation path needs are
issued here as inline PTX with the signedness spelled out (``.s32.s8.s8.s32``,
``.s32.s4.s4.s32``); the accumulate wraps modulo 2**32 (no ``.satfinite``).

Fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k32" / "mma.m16n8k64"; the same
layout CuTe uses for the e4m3 m16n8k32 and e2m1 m16n8k64 atoms, which a CPU test checks).
Every register is 32 bits of packed elements, element ``j`` in bits ``[j*w, (j+1)*w)`` (lowest
first), ``w`` = 8 (s8) or 4 (s4), so ``E = 32 // w`` elements per register and ``K = 8 * E``.
With ``lane`` the thread's lane, ``g = lane // 4`` and ``t = lane % 4``:

  A (16 x K, row-major), 4 registers; register ``r`` element ``j`` holds
      A[g + 8 * (r % 2), t * E + j + (K / 2) * (r // 2)]
  B (K x 8, "col": stored as 8 rows of K), 2 registers; register ``r`` element ``j`` holds
      B[t * E + j + (K / 2) * r, g]
  C, D (16 x 8, s32), 4 registers; register ``i`` holds
      D[g + 8 * (i // 2), 2 * t + i % 2]

So for s8 (E = 4, K = 32) lane 5 (g = 1, t = 1) holds A[1, 4:8], A[9, 4:8], A[1, 20:24],
A[9, 20:24]; B[4:8, 1], B[20:24, 1]; D[1, 2:4], D[9, 2:4]. :data:`S8_M16N8K32` and
:data:`S4_M16N8K64` give these maps as plain-Python functions (for host-side packing and tests).

Native support: s8 m16n8k32 runs as one IMMA on sm_80 ... sm_121a; s4 m16n8k64 is native on
sm_80/86/87/89 only, ptxas emulates it on sm_90a and newer (see ``humming_cute/arch.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import cutlass
import cutlass.cute as cute
from cutlass import Int32
from cutlass.cutlass_dsl import dsl_user_op

__all__ = [
    "IntMmaSpec",
    "S8_M16N8K32",
    "S4_M16N8K64",
    "int_mma",
    "mma_s8_m16n8k32",
    "mma_s4_m16n8k64",
    "check_int_mma_arch",
    "mma_f8_m16n8k32",
    "mma_f8_m16n8k32_f16acc",
    "mma_f8f6f4_m16n8k32",
    "mma_mxf4_m16n8k64",
    "mma_f16_m16n8k16",
]

#: Registers per thread of the A, B and C/D fragments (the same for both shapes).
A_REGS, B_REGS, CD_REGS = 4, 2, 4

#: An operand fragment: an rmem tensor (32-bit words, or any narrower type that recasts to
#: exactly that many words), or a sequence of 32-bit DSL integers / Python ints.
Fragment = Union[cute.Tensor, Sequence[object]]


def _operand_list(prefix: str, first: int, count: int) -> str:
    """The PTX vector operand ``{ {$r0}, {$r1}, ... }`` in inline_ptx's named-operand syntax."""
    return "{" + ", ".join(f"{{${prefix}{i}}}" for i in range(first, first + count)) + "}"


@dataclass(frozen=True)
class IntMmaSpec:
    """One signed integer ``mma.sync`` shape: its PTX text and per-thread fragment layout."""

    m: int
    n: int
    k: int
    bits: int  # element width of A and B

    @property
    def elem_type(self) -> str:
        """PTX element type of A and B (always signed)."""
        return f"s{self.bits}"

    @property
    def per_reg(self) -> int:
        """A/B elements packed in one 32-bit register."""
        return 32 // self.bits

    @property
    def instruction(self) -> str:
        """The full PTX opcode, e.g. ``mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32``."""
        t = self.elem_type
        return f"mma.sync.aligned.m{self.m}n{self.n}k{self.k}.row.col.s32.{t}.{t}.s32"

    @property
    def ptx(self) -> str:
        """The inline-PTX statement: D = $w0..3, A = $r0..3, B = $r4..5, C = $r6..9."""
        d = _operand_list("w", 0, CD_REGS)
        a = _operand_list("r", 0, A_REGS)
        b = _operand_list("r", A_REGS, B_REGS)
        c = _operand_list("r", A_REGS + B_REGS, CD_REGS)
        return f"{self.instruction} {d}, {a}, {b}, {c};"

    # ---- fragment layout (plain Python; see the module docstring)
    def a_coord(self, lane: int, reg: int, elem: int) -> tuple[int, int]:
        """(row, k) of A held by ``lane`` in register ``reg``, packed element ``elem``."""
        g, t = divmod(lane, 4)
        return g + 8 * (reg % 2), t * self.per_reg + elem + (self.k // 2) * (reg // 2)

    def b_coord(self, lane: int, reg: int, elem: int) -> tuple[int, int]:
        """(k, col) of B held by ``lane`` in register ``reg``, packed element ``elem``."""
        g, t = divmod(lane, 4)
        return t * self.per_reg + elem + (self.k // 2) * reg, g

    def cd_coord(self, lane: int, reg: int) -> tuple[int, int]:
        """(row, col) of C/D held by ``lane`` in accumulator register ``reg``."""
        g, t = divmod(lane, 4)
        return g + 8 * (reg // 2), 2 * t + reg % 2


S8_M16N8K32 = IntMmaSpec(16, 8, 32, 8)
S4_M16N8K64 = IntMmaSpec(16, 8, 64, 4)


def _word(value: object) -> Int32:
    """One 32-bit register value as Int32 (Uint32 and Python ints are reinterpreted bit for bit)."""
    if isinstance(value, bool):
        raise TypeError("an MMA fragment register must be a 32-bit integer, not a bool")
    if isinstance(value, int):
        value &= 0xFFFFFFFF
        return Int32(value - (1 << 32) if value >= (1 << 31) else value)
    if isinstance(value, Int32):
        return value
    if isinstance(value, cutlass.Integer) and value.width == 32:
        return Int32(value)
    raise TypeError(f"an MMA fragment register must be a 32-bit integer, got {type(value).__name__}")


def _words(frag: Fragment, count: int, what: str) -> list[Int32]:
    """The ``count`` 32-bit registers of one fragment, in register order."""
    if isinstance(frag, cute.Tensor):
        if frag.element_type.width != 32:
            frag = cute.recast_tensor(frag, Int32)
        size = cute.size(frag)
        if not isinstance(size, int) or size != count:
            raise ValueError(f"MMA operand {what} must hold {count} x 32 bits, got {size} words")
        return [_word(frag[i]) for i in range(count)]
    values = list(frag)
    if len(values) != count:
        raise ValueError(f"MMA operand {what} must have {count} registers, got {len(values)}")
    return [_word(v) for v in values]


@dsl_user_op
def int_mma(
    spec: IntMmaSpec,
    d: Optional[cute.Tensor],
    a: Fragment,
    b: Fragment,
    c: Fragment,
    *,
    loc=None,
    ip=None,
) -> tuple[Int32, Int32, Int32, Int32]:
    """Issue ``spec``'s ``mma.sync`` (warp-collective): D = A * B + C on this thread's fragments.

    ``a`` (4 registers), ``b`` (2) and ``c`` (4) are rmem tensors or sequences of 32-bit integers
    laid out as the module docstring says. The 4 accumulator words are returned and, when ``d``
    is an rmem tensor (4 x 32-bit; it may be ``c`` itself), also stored into it. Call it from
    warp-uniform code inside ``@cute.kernel`` / ``@cute.jit`` code.
    """
    args = _words(a, A_REGS, "A") + _words(b, B_REGS, "B") + _words(c, CD_REGS, "C")
    out = cute.arch.inline_ptx(spec.ptx, write_only_types=[Int32] * CD_REGS, read_only_args=args,
                               loc=loc, ip=ip)
    if d is not None:
        dst = d if d.element_type.width == 32 else cute.recast_tensor(d, Int32)
        if cute.size(dst) != CD_REGS:
            raise ValueError(f"MMA result D must hold {CD_REGS} x 32 bits, got {cute.size(dst)} words")
        for i in range(CD_REGS):
            dst[i] = out[i]
    return out


def mma_s8_m16n8k32(d: Optional[cute.Tensor], a: Fragment, b: Fragment,
                    c: Fragment) -> tuple[Int32, Int32, Int32, Int32]:
    """``mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32``: signed int8 A (16x32) * B (32x8) + C.

    A: 4 registers of 4 int8, B: 2 registers of 4 int8, C/D: 4 int32 (layout: module docstring).
    Writes D into ``d`` when given and returns its 4 words.
    """
    return int_mma(S8_M16N8K32, d, a, b, c)


def mma_s4_m16n8k64(d: Optional[cute.Tensor], a: Fragment, b: Fragment,
                    c: Fragment) -> tuple[Int32, Int32, Int32, Int32]:
    """``mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32``: signed int4 A (16x64) * B (64x8) + C.

    A: 4 registers of 8 int4 (lowest nibble first), B: 2 registers of 8 int4, C/D: 4 int32.
    Writes D into ``d`` when given and returns its 4 words.
    """
    return int_mma(S4_M16N8K64, d, a, b, c)


_SM_RE = re.compile(r"^(?:sm_?)?(\d{2,3})[af]?$")


def check_int_mma_arch(arch_name: Union[str, int]) -> None:
    """Raise ``NotImplementedError`` when ``arch_name`` is below sm_80; return otherwise.

    The s8/s4 ``mma.sync`` shapes used here need sm_80, and CuTe DSL has no target below it
    (sm_75 and older are served by the torch fallback). Accepts ``"sm_90a"``, ``"sm_80"``,
    ``"90"`` or ``90``; raises ``ValueError`` for anything that does not name an SM.
    """
    if isinstance(arch_name, int) and not isinstance(arch_name, bool):
        sm = arch_name
    else:
        match = _SM_RE.match(str(arch_name).strip().lower())
        if match is None:
            raise ValueError(f"not a GPU architecture name: {arch_name!r} (expected e.g. 'sm_80' or 'sm_90a')")
        sm = int(match.group(1))
    if sm < 80:
        raise NotImplementedError(
            f"integer mma.sync (s8 m16n8k32 / s4 m16n8k64) kernels need sm_80 or newer, got "
            f"{arch_name!r}: CuTe DSL cannot target sm_{sm}; use the torch fallback path there")


_F8_PTX = {"float8e4m3": "e4m3", "float8e5m2": "e5m2"}


@dsl_user_op
def mma_f8_m16n8k32(kind: str, a: Fragment, b: Fragment, c: Sequence[object], *, loc=None,
                    ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k32.row.col.f32.{e4m3,e5m2}.{..}.f32`` (sm_89+): fp8 A (16x32) * B (32x8) + C in
    fp32. `kind` is "float8e4m3" or "float8e5m2"; A and B registers hold 4 fp8 lanes each with the s8 layout of
    the module docstring; C is 4 fp32 values. Returns the 4 new fp32 accumulators."""
    t = _F8_PTX[kind]
    return _mma_k32_f32(f"mma.sync.aligned.m16n8k32.row.col.f32.{t}.{t}.f32", a, b, c, loc=loc, ip=ip)


@dsl_user_op
def mma_f16_m16n8k16(a: Fragment, b: Fragment, c: Sequence[object], *, loc=None, ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32``: fp16 A (16x16) * B (16x8) + C in fp32, with the
    standard register layout (A: rows g / g + 8 x k 2t.. / 2t + 8..; B: k 2t.. / 2t + 8.. of column g); for B
    operands built from constants, which CuTe's tiled MMA does not take."""
    return _mma_k32_f32("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", a, b, c, loc=loc, ip=ip)


@dsl_user_op
def mma_bf16_m16n8k16(a: Fragment, b: Fragment, c: Sequence[object], *, loc=None, ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32``: :func:`mma_f16_m16n8k16` for bf16 operands."""
    return _mma_k32_f32("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", a, b, c, loc=loc, ip=ip)


def _mma_k32_f32(opcode: str, a: Fragment, b: Fragment, c: Sequence[object], *, loc=None, ip=None) -> tuple:
    """Issue an `opcode` with 4 A, 2 B and 4 fp32 C/D registers (m16n8k32 8-bit, m16n8k16 16-bit); returns the 4
    new accumulators."""
    ptx = (f"{opcode} {_operand_list('w', 0, CD_REGS)}, "
           f"{_operand_list('r', 0, A_REGS)}, {_operand_list('r', A_REGS, B_REGS)}, "
           f"{_operand_list('r', A_REGS + B_REGS, CD_REGS)};")
    args = _words(a, A_REGS, "A") + _words(b, B_REGS, "B") + [cutlass.Float32(v) for v in c]
    return cute.arch.inline_ptx(ptx, write_only_types=[cutlass.Float32] * CD_REGS, read_only_args=args,
                                loc=loc, ip=ip)


@dsl_user_op
def mma_f8_m16n8k32_f16acc(kind: str, a: Fragment, b: Fragment, c: Sequence[object], *, loc=None,
                           ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k32.row.col.f16.{e4m3,e5m2}.{..}.f16`` (sm_89+): fp8 A * B + C with fp16
    accumulators (``use_f16_accum``). A and B as for :func:`mma_f8_m16n8k32`; C is 2 registers of packed fp16
    pairs (register ``i`` = D[g + 8 i, 2 t .. 2 t + 1], the fp32 layout two elements at a time). Returns the 2
    new packed registers."""
    t = _F8_PTX[kind]
    ptx = (f"mma.sync.aligned.m16n8k32.row.col.f16.{t}.{t}.f16 {_operand_list('w', 0, 2)}, "
           f"{_operand_list('r', 0, A_REGS)}, {_operand_list('r', A_REGS, B_REGS)}, "
           f"{_operand_list('r', A_REGS + B_REGS, 2)};")
    args = _words(a, A_REGS, "A") + _words(b, B_REGS, "B") + _words(c, 2, "C")
    return cute.arch.inline_ptx(ptx, write_only_types=[Int32] * 2, read_only_args=args, loc=loc, ip=ip)


_F8F6F4_PTX = {"float8e4m3": "e4m3", "float8e5m2": "e5m2", "float4e2m1": "e2m1"}


@dsl_user_op
def mma_f8f6f4_m16n8k32(a_kind: str, b_kind: str, a: Fragment, b: Fragment, c: Sequence[object], *, loc=None,
                        ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k32.row.col.kind::f8f6f4.f32.<a>.<b>.f32`` (sm_120a): A and B of (possibly
    different) 8/6/4-bit float types, one element per byte with the s8 layout of the module docstring, C 4 fp32
    values. An e2m1 element sits in bits 2..5 of its byte (``code << 2``), as the instruction expects. Returns the
    4 new fp32 accumulators."""
    ta, tb = _F8F6F4_PTX[a_kind], _F8F6F4_PTX[b_kind]
    return _mma_k32_f32(f"mma.sync.aligned.m16n8k32.row.col.kind::f8f6f4.f32.{ta}.{tb}.f32", a, b, c, loc=loc,
                        ip=ip)


# ue8m0 scale factor 2^0 in all four bytes: the block-scaled fp4 MMA then computes the plain product
_UE8M0_ONES = 0x7F7F7F7F


def mma_mxf4_m16n8k64(a: Fragment, b: Fragment, c: Sequence[object], *, loc=None, ip=None) -> tuple:
    """``mma.sync.aligned.m16n8k64.row.col.kind::mxf4.block_scale.scale_vec::2X.f32.e2m1.e2m1.f32.ue8m0`` (sm_120a):
    e2m1 A (16x64) * B (64x8) + C in fp32 with unit block scales (every scale factor 2^0; the kernels apply their
    scales to the fp32 sums). A and B registers hold 8 packed e2m1 lanes each with the s4 layout of the module
    docstring; C is 4 fp32 values. Returns the 4 new fp32 accumulators."""
    ptx = ("{\n.reg .b16 sfid;\n.reg .b32 sf;\nmov.b16 sfid, 0;\n"
           f"mov.b32 sf, {_UE8M0_ONES};\n"
           "mma.sync.aligned.m16n8k64.row.col.kind::mxf4.block_scale.scale_vec::2X.f32.e2m1.e2m1.f32.ue8m0 "
           f"{_operand_list('w', 0, CD_REGS)}, {_operand_list('r', 0, A_REGS)}, "
           f"{_operand_list('r', A_REGS, B_REGS)}, {_operand_list('r', A_REGS + B_REGS, CD_REGS)}, "
           "{sf}, {sfid, sfid}, {sf}, {sfid, sfid};\n}")
    args = _words(a, A_REGS, "A") + _words(b, B_REGS, "B") + [cutlass.Float32(v) for v in c]
    return cute.arch.inline_ptx(ptx, write_only_types=[cutlass.Float32] * CD_REGS, read_only_args=args,
                                loc=loc, ip=ip)
