"""The host-side description of the in-register dequant transform, and its CPU emulation.

A packed weight word holds *pairs* of b-bit codes: the pair's first value sits in bits [s, s+b) and its second
in bits [16+s, 16+s+b). A shift and a mask therefore yield both codes, each in its own 16-bit half, and a
few more 32-bit operations turn them into a ready fp16x2/bf16x2 register. Widths that are not 1, 2, 4 or 8
are split into *planes* of those widths (e.g. 7 = 4 + 2 + 1) that are packed separately and OR'ed back.

Integer codes use the exponent "magic number" trick: OR-ing a code into the mantissa of 1024.0 (fp16) or
128.0 (bf16) gives 1024 + q exactly; subtracting (1024 + z) gives q - z exactly. Float codes are moved so that
their exponent and mantissa fields line up with the activation type's, then multiplied by the exact power of
two 2^(bias_act - bias_weight).

The kernel (`kernels/dequant.py`) receives a `DequantPlan` and emits the same operations; `emulate_pairs`
repeats them with numpy/torch so that every code can be checked on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .. import dtypes as dt

__all__ = ["DequantPlan", "make_plan", "plane_widths", "emulate_pairs", "emulate_codes", "emulate_slot4", "LanePlan",
           "make_lane_plan", "emulate_lanes"]


def plane_widths(bits: int) -> tuple[int, ...]:
    """Split a code width into packed planes of 8, 4, 2 or 1 bits, low bits first."""
    if not 1 <= bits <= 8:
        raise ValueError(f"weight codes have 1..8 bits, got {bits}")
    if bits == 8:
        return (8,)
    out = []
    for w in (4, 2, 1):
        if bits & w:
            out.append(w)
    return tuple(out)


def _f16_bits(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def _bf16_bits(x: float) -> int:
    return int(torch.tensor([x], dtype=torch.bfloat16).view(torch.int16)[0]) & 0xFFFF


def _half_bits(a_name: str, x: float) -> int:
    return _f16_bits(x) if a_name == "float16" else _bf16_bits(x)


@dataclass(frozen=True)
class DequantPlan:
    """Everything the kernel needs to know to turn packed code pairs into activation-typed pairs."""

    a_dtype: str            # "float16" or "bfloat16"
    b_dtype: str            # weight type name
    bits: int
    planes: tuple[int, ...]  # plane widths, low code bits first
    kind: str               # "int" (magic number), "int8_bf16" (split magic), "float"
    magic: int = 0          # 16-bit pattern OR'ed into each half (ints)
    magic_value: float = 0.0  # its value as a float
    zp_is_magic_offset: bool = True  # zero-point subtrahend stored as magic_value + z (else plain z)
    sym_offset: int = 0     # 2^(b-1) for symmetric ints, 0 for uint
    shift_left: int = 0     # floats: left shift that aligns the mantissa
    mag_mask: int = 0       # floats: per-half mask of exponent+mantissa after the shift
    sign_bit: int = 0       # floats: per-half position of the sign after the shift
    exp_factor: float = 1.0  # floats: exact power of two applied after placement

    @property
    def has_exp_factor(self) -> bool:
        return self.kind == "float" and self.exp_factor != 1.0

    def half_bits(self, x: float) -> int:
        return _half_bits(self.a_dtype, x)

    @property
    def pair_mask(self) -> int:
        return ((1 << self.bits) - 1) * 0x00010001

    def subtrahend(self, z: float) -> float:
        """The value the kernel subtracts from an integer pair: magic + z (or z for the split 8-bit bf16 path)."""
        return (self.magic_value + z) if self.zp_is_magic_offset else float(z)


def make_plan(a_dtype, b_dtype) -> DequantPlan:
    """Build the transform for a (16-bit activation, weight) pair; raises for pairs the transform cannot do."""
    a, b = dt.parse_dtype(a_dtype), dt.parse_dtype(b_dtype)
    if a.name not in ("float16", "bfloat16"):
        raise NotImplementedError(f"the register dequant transform targets float16/bfloat16 activations, not {a.name}")
    dt.check_legal_pair(a, b)
    planes = plane_widths(b.bits)
    if isinstance(b, dt.IntegerType):
        off = b.offset
        if a.name == "float16":
            return DequantPlan(a.name, b.name, b.bits, planes, "int", magic=0x6400, magic_value=1024.0,
                               sym_offset=off)
        if b.bits <= 7:
            return DequantPlan(a.name, b.name, b.bits, planes, "int", magic=0x4300, magic_value=128.0,
                               sym_offset=off)
        # 8-bit codes do not fit bf16's 7-bit mantissa: q = ((128 | lo7) - 128) + 128 * bit7, then q - z.
        return DequantPlan(a.name, b.name, b.bits, planes, "int8_bf16", magic=0x4300, magic_value=128.0,
                           zp_is_magic_offset=False, sym_offset=off)
    assert isinstance(b, dt.FloatType)
    t_man = 10 if a.name == "float16" else 7
    t_bias = 15 if a.name == "float16" else 127
    sl = t_man - b.man
    mag_mask = ((1 << (b.exp + b.man)) - 1) << sl
    sign_bit = b.exp + b.man + sl
    factor = math.ldexp(1.0, t_bias - b.bias)
    return DequantPlan(a.name, b.name, b.bits, planes, "float", shift_left=sl, mag_mask=mag_mask,
                       sign_bit=sign_bit, exp_factor=factor)


def _to_half(bits_u16: np.ndarray, a_name: str) -> torch.Tensor:
    t = torch.from_numpy(bits_u16.astype(np.uint16).view(np.int16).copy())
    return t.view(torch.float16 if a_name == "float16" else torch.bfloat16)


def _half_const(a_name: str, x: float) -> torch.Tensor:
    return torch.tensor([x], dtype=torch.float16 if a_name == "float16" else torch.bfloat16)


def _fp16_exact(v: np.ndarray) -> np.ndarray:
    """`v` (float64) rounded to fp16; raises if any value is not exactly representable (a rounding step)."""
    h = v.astype(np.float16).astype(np.float64)
    if not np.array_equal(h, v):
        raise ArithmeticError("an intermediate value of the 4-bit slot decode is not exact in fp16")
    return h


def emulate_slot4(plan: DequantPlan, words: np.ndarray, slot: int, z: np.ndarray | None = None) -> np.ndarray:
    """Emulate `kernels.dequant.decode_slot4` (4-bit codes, fp16): pair `slot` of 32-bit code words -> values
    [..., 2] (low half first), every intermediate checked exact in fp16. Even slots: (w & 0x000F000F) | magic
    = 1024 + q, plus -(1024 + z); odd slots: (w & 0x00F000F0) | magic = 1024 + 16 q, times 1/16 plus -(64 + z),
    where -(64 + z) = -(1024 + z) + 960; slots 2, 3 read w >> 8. `z` per word (None: the symmetric offset)."""
    if plan.kind != "int" or plan.a_dtype != "float16" or tuple(plan.planes) != (4,):
        raise ValueError("emulate_slot4 is for 4-bit integer codes under fp16 activations")
    w = words.astype(np.uint64) & 0xFFFFFFFF
    if slot >= 2:
        w = w >> 8
    mask = 0x000F000F if slot % 2 == 0 else 0x00F000F0
    x = (w & mask) | (plan.magic * 0x00010001)
    halves = np.stack([x & 0xFFFF, x >> 16], -1).astype(np.uint16).view(np.float16).astype(np.float64)
    zz = np.full(w.shape, plan.sym_offset, dtype=np.float64) if z is None else z.astype(np.float64)
    neg_sub = _fp16_exact(-(plan.magic_value + zz))[..., None]
    if slot % 2 == 0:
        return _fp16_exact(halves + neg_sub)
    if z is None:
        sub = _fp16_exact(np.full_like(neg_sub, -(plan.magic_value / 16 + plan.sym_offset)))
    else:
        sub = _fp16_exact(neg_sub + plan.magic_value * 15 / 16)
    return _fp16_exact(halves * (1.0 / 16) + sub)


def emulate_pairs(plan: DequantPlan, pairs: np.ndarray, z: np.ndarray | None = None,
                  scale: np.ndarray | None = None) -> torch.Tensor:
    """Emulate the kernel on uint32 words that hold code pairs in their two halves (already shifted and
    masked, planes OR'ed). Returns the activation-typed values, shape [..., 2] (low half first).
    `z` (zero points, per pair) and `scale` (per pair, float) are optional."""
    p = pairs.astype(np.uint32)
    a = plan.a_dtype
    if plan.kind in ("int", "int8_bf16"):
        if plan.kind == "int":
            x = _to_half(np.stack([(p | (plan.magic * 0x00010001)) & 0xFFFF,
                                   ((p | (plan.magic * 0x00010001)) >> 16) & 0xFFFF], -1), a)
        else:
            lo = p & 0x007F007F
            hi = (p >> 7) & 0x00010001
            x = _to_half(np.stack([(lo | 0x43004300) & 0xFFFF, ((lo | 0x43004300) >> 16) & 0xFFFF], -1), a)
            x = x - _half_const(a, 128.0)
            hiv = hi * 0x4300
            x = x + _to_half(np.stack([hiv & 0xFFFF, hiv >> 16], -1), a)
        zz = np.full(p.shape, plan.sym_offset, dtype=np.float64) if z is None else z.astype(np.float64)
        sub = torch.from_numpy(np.vectorize(plan.subtrahend)(zz)).to(x.dtype).unsqueeze(-1)
        x = x - sub
    else:
        t = (p << plan.shift_left) & 0xFFFFFFFF
        mag = t & (plan.mag_mask * 0x00010001)
        if plan.sign_bit != 15:
            sgn = ((t & ((1 << plan.sign_bit) * 0x00010001)) << (15 - plan.sign_bit)) & 0xFFFFFFFF
        else:
            sgn = t & 0x80008000
        r = mag | sgn
        x = _to_half(np.stack([r & 0xFFFF, r >> 16], -1), a)
        if plan.has_exp_factor:
            x = x * _half_const(a, plan.exp_factor)
    if scale is not None:
        x = x * torch.from_numpy(np.asarray(scale, dtype=np.float32)).to(x.dtype).unsqueeze(-1)
    return x


def emulate_codes(plan: DequantPlan, codes: np.ndarray, z: np.ndarray | None = None) -> torch.Tensor:
    """Emulate the transform on single codes (each code is placed in both halves of a pair)."""
    c = codes.astype(np.uint32)
    return emulate_pairs(plan, c | (c << 16), z)[..., 0]


# ---------------------------------------------------------------------------------------------------------------
# 8-bit and 4-bit activation lanes (fp8 / int8 / int4 / fp4 MMAs)
#
# With 8/4-bit activations the MMA takes 4 (8-bit) or 8 (4-bit) weight values per 32-bit register, in the
# activation's own format, and group scales cannot be applied before the MMA without rounding: they rescale a
# partial accumulator at each group boundary instead (two-level accumulation), so the lanes hold q - z exactly.
#
# * weights of the activation's own float format (e4m3 under e4m3, ...): the codes already are the lanes.
# * other float targets (e4m3, e5m2, e2m1): the 16-bit transform above produces exact fp16 pairs (zero point already
#   subtracted); one conversion instruction per pair (cvt.rn.satfinite.e4m3x2.f16x2 / .e5m2x2.f16x2 on sm_89+,
#   .e2m1x2.f32 on sm_100a+/sm_120a) packs them into the target format. Legal pairs make every value exactly
#   representable, so the conversion never rounds.
# * integer targets (int8, int4): plain lane arithmetic without carries. A lane holding a code q becomes
#   ((q + (2^(w-1) - o)) mod 2^w) xor 2^(w-1), i.e. q - o in w-bit two's complement, where o is the symmetric
#   offset 2^(b-1) or the group's zero point z, and w = 8 or 4. The legal-pair table bounds q and o so that the
#   add never carries into the next lane: one add with a per-group constant and one xor per register.


@dataclass(frozen=True)
class LanePlan:
    """How packed weight codes become 8-bit or 4-bit activation-format lanes."""

    a_dtype: str              # float8e4m3 | float8e5m2 | float4e2m1 | int8 | int4
    b_dtype: str
    bits: int
    planes: tuple[int, ...]
    kind: str                 # "identity" (weight type == activation type), "half_cvt" (16-bit transform +
                              # exact conversion) or "int_lanes"
    lane_bits: int            # 8 or 4
    sym_offset: int = 0       # 2^(b-1) for symmetric ints, 0 for uint / float weights
    half: Optional[DequantPlan] = None   # the fp16 transform used by "half_cvt"

    def lane_add(self, offset: int) -> int:
        """The per-lane constant added before the xor, for subtrahend `offset` (symmetric offset or zero point)."""
        h = 1 << (self.lane_bits - 1)
        return (h - offset) % (1 << self.lane_bits)

    def lane_add_word(self, offset: int) -> int:
        """`lane_add` replicated into every lane of a 32-bit word."""
        c = self.lane_add(offset)
        lanes = 32 // self.lane_bits
        return sum(c << (i * self.lane_bits) for i in range(lanes))


def make_lane_plan(a_dtype, b_dtype) -> LanePlan:
    """The lane transform of an (8/4-bit activation, weight) pair; raises for illegal pairs (SPEC table)."""
    a, b = dt.parse_dtype(a_dtype), dt.parse_dtype(b_dtype)
    if a.name not in ("float8e4m3", "float8e5m2", "float4e2m1", "int8", "int4"):
        raise ValueError(f"lane plans are for 8/4-bit activations, not {a.name} (see make_plan for fp16/bf16)")
    dt.check_legal_pair(a, b)
    planes = plane_widths(b.bits)
    off = b.offset if isinstance(b, dt.IntegerType) else 0
    if a.name in ("int8", "int4"):
        return LanePlan(a.name, b.name, b.bits, planes, "int_lanes", 8 if a.name == "int8" else 4, sym_offset=off)
    if a.name == "float4e2m1" and b.name != "float4e2m1":
        # e2m1 activations with other weights: e4m3 weight lanes for the mixed-format kind::f8f6f4 m16n8k32 MMA of
        # sm_120a (e2m1 A, e4m3 B); every weight legal under e2m1 is exact in e4m3
        return LanePlan("float8e4m3", b.name, b.bits, planes, "half_cvt", 8, sym_offset=off,
                        half=make_plan("float16", b))
    lane_bits = 4 if a.name == "float4e2m1" else 8
    if b.name == a.name:   # e4m3 / e5m2 / e2m1 weights under the same activation format: the codes are the lanes
        return LanePlan(a.name, b.name, b.bits, planes, "identity", lane_bits)
    return LanePlan(a.name, b.name, b.bits, planes, "half_cvt", lane_bits, sym_offset=off,
                    half=make_plan("float16", b))


def _float_lane_bits(values: torch.Tensor, a_name: str) -> np.ndarray:
    """Exact conversion of fp16 values to the 8/4-bit float format's bit patterns (raises if one would round)."""
    v = values.to(torch.float32)
    if a_name == "float4e2m1":
        grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
        mag = v.abs()
        idx = (mag.unsqueeze(-1) == grid).float().argmax(-1)
        if not bool((grid[idx] == mag).all()):
            raise ArithmeticError("a value is not representable in e2m1")
        sign = (torch.signbit(v)).to(torch.int64) << 3
        return (idx.to(torch.int64) | sign).numpy()
    tdt = torch.float8_e4m3fn if a_name == "float8e4m3" else torch.float8_e5m2
    return v.to(tdt).view(torch.uint8).to(torch.int64).numpy()   # exact for legal values (the tests check)


def emulate_lanes(plan: LanePlan, codes: np.ndarray, z: np.ndarray | None = None) -> torch.Tensor:
    """Emulate the lane transform on single codes (any shape; `z` per code for uint weights).

    Returns the lanes' values: int64 for integer targets, float32 for float targets. The arithmetic is done on
    packed 32-bit words exactly as the kernel does it (4 or 8 lanes per word), so a carry between lanes or a
    rounding conversion would show up as a wrong value."""
    c = np.asarray(codes, dtype=np.int64).reshape(-1)
    zz = (np.full(c.shape, plan.sym_offset, dtype=np.int64) if z is None
          else np.asarray(z, dtype=np.int64).reshape(-1))
    if plan.kind in ("identity", "half_cvt"):
        if plan.kind == "identity":
            bits = c
        else:
            halves = emulate_codes(plan.half, c.astype(np.uint32), None if z is None else zz.astype(np.float64))
            bits = _float_lane_bits(halves, plan.a_dtype)
        if plan.a_dtype == "float4e2m1":
            table = {i: v for i, v in enumerate([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])}
            out = np.array([(-1.0 if b >> 3 else 1.0) * table[b & 7] for b in bits], dtype=np.float32)
            return torch.from_numpy(out).reshape(np.shape(codes))
        tdt = torch.float8_e4m3fn if plan.a_dtype == "float8e4m3" else torch.float8_e5m2
        return torch.from_numpy(bits.astype(np.uint8)).view(tdt).to(torch.float32).reshape(np.shape(codes))
    w = plan.lane_bits
    lanes = 32 // w
    n = len(c)
    pad = (-n) % lanes
    c = np.concatenate([c, np.zeros(pad, dtype=np.int64)])
    zz = np.concatenate([zz, np.full(pad, plan.sym_offset, dtype=np.int64)])
    mask = (1 << w) - 1
    if np.any(c > mask) or np.any((zz < 0) | (zz > mask)):
        raise ValueError("codes / zero points do not fit the lanes")
    c = c.reshape(-1, lanes)
    zz = zz.reshape(-1, lanes)
    shifts = np.arange(lanes, dtype=np.int64) * w
    word = (c << shifts).sum(-1)                                        # codes packed into 32-bit words
    add = ((np.vectorize(plan.lane_add)(zz)) << shifts).sum(-1)         # the per-lane constants
    flip = sum((1 << (w - 1)) << (i * w) for i in range(lanes))
    res = ((word + add) & 0xFFFFFFFF) ^ flip                            # one add, one xor per word
    out = (res[:, None] >> shifts) & mask
    out = np.where(out >= (1 << (w - 1)), out - (1 << w), out)          # w-bit two's complement
    return torch.from_numpy(out.reshape(-1)[:n]).reshape(np.shape(codes))
