"""The dequant transform in registers: packed code words -> fp16x2 / bf16x2 MMA operand registers.

It repeats, with 32-bit integer and packed-half operations, what `layouts/dequant_plan.py` describes and
emulates on the CPU. All constants come from the plan; nothing is re-derived here.
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute

from ..layouts.dequant_plan import DequantPlan

_NEG_ZERO2 = 0x80008000


def i32(x: int) -> cutlass.Int32:
    """A 32-bit pattern as a signed Int32 constant."""
    x &= 0xFFFFFFFF
    return cutlass.Int32(x - (1 << 32) if x >= (1 << 31) else x)


def and_or(x, mask: int, bits: int):
    """(x & mask) | bits in one LOP3 (LLVM's separate and / or stay two instructions in SASS: a LOP3 takes one
    immediate, so ptxas keeps the loop-invariant constant in a register only when it sees a single lop3)."""
    return cute.arch.lop3(x, i32(mask), i32(bits), 0xEA)


def half2_const(plan: DequantPlan, x: float) -> cutlass.Int32:
    """Both halves set to the activation-typed bits of x."""
    h = plan.half_bits(x)
    return i32(h | (h << 16))


def fma2(plan: DequantPlan, a, b, c):
    """a * b + c on packed halves of the activation type (one HFMA2)."""
    if plan.a_dtype == "float16":
        return cute.arch.fma_packed_f16x2(a, b, c)
    return cute.arch.fma_packed_bf16x2(a, b, c)


def mul2(plan: DequantPlan, a, b):
    return fma2(plan, a, b, i32(_NEG_ZERO2))


def extract_pair(plan: DequantPlan, plane_words, slot_per_plane):
    """Both codes of one pair, each in its own 16-bit half: shift, mask and OR the planes together."""
    code = None
    shift = 0
    for (w, word), slot in zip(zip(plan.planes, plane_words), slot_per_plane):
        mask = ((1 << w) - 1) * 0x00010001
        part = word >> (slot * w) if slot else word
        part = part & i32(mask)
        if shift:
            part = part << shift
        code = part if code is None else (code | part)
        shift += w
    return code


def extract_decode(plan: DequantPlan, plane_words, slot_per_plane, neg_sub=None, exp_factor: bool = True):
    """`decode_pair(extract_pair(...))`; for integer codes in one plane the mask and the magic exponent go in one
    LOP3 (shift, LOP3, HFMA2 per pair)."""
    if plan.kind == "int" and len(plan.planes) == 1:
        w = plan.planes[0]
        slot = slot_per_plane[0]
        word = plane_words[0]
        if is_byte_int(plan):
            # 8-bit codes: one PRMT puts byte `slot` of each half under the magic exponent byte
            x = _prmt2(word, i32(plan.magic >> 8), slot | 0x40 | (2 + slot) << 8 | 0x4000)
        else:
            part = word >> (slot * w) if slot else word
            x = and_or(part, ((1 << w) - 1) * 0x00010001, plan.magic * 0x00010001)
        if neg_sub is None:
            neg_sub = half2_const(plan, -(plan.magic_value + plan.sym_offset))
        return fma2(plan, x, half2_const(plan, 1.0), neg_sub)
    return decode_pair(plan, extract_pair(plan, plane_words, slot_per_plane), neg_sub, exp_factor)


def decode_pair(plan: DequantPlan, code, neg_sub=None, exp_factor: bool = True):
    """Codes (one per half) -> activation-typed values (one per half), exact.

    `neg_sub` is the per-column negated subtrahend -(magic + z) (or -z for the split 8-bit bf16 path) as a
    packed pair; None means the symmetric constant. `exp_factor=False` leaves float codes short of the plan's
    power-of-two exponent factor (the caller applies it to a scale instead)."""
    one = half2_const(plan, 1.0)
    if plan.kind == "int":
        if neg_sub is None:
            neg_sub = half2_const(plan, -(plan.magic_value + plan.sym_offset))
        x = code | i32(plan.magic * 0x00010001)
        return fma2(plan, x, one, neg_sub)
    if plan.kind == "int8_bf16":
        if neg_sub is None:
            neg_sub = half2_const(plan, -float(plan.sym_offset))
        lo = (code & i32(0x007F007F)) | i32(0x43004300)
        x = fma2(plan, lo, one, half2_const(plan, -128.0))
        hi = ((code >> 7) & i32(0x00010001)) * i32(0x4300)
        x = fma2(plan, hi, one, x)
        return fma2(plan, x, one, neg_sub)
    # float: align exponent/mantissa with the activation type, move the sign, fix the bias by 2^k
    t = code << plan.shift_left if plan.shift_left else code
    if plan.sign_bit != 15:
        mag = t & i32(plan.mag_mask * 0x00010001)
        sgn = (t & i32((1 << plan.sign_bit) * 0x00010001)) << (15 - plan.sign_bit)
        t = mag | sgn
    if plan.has_exp_factor and exp_factor:
        t = mul2(plan, t, half2_const(plan, plan.exp_factor))
    return t


def is_byte_int(plan: DequantPlan) -> bool:
    """8-bit integer codes in one plane under a magic number whose low byte is zero (fp16: 1024 + q): a pair's
    magic-exponent halves are one byte permute of the code word."""
    return plan.kind == "int" and tuple(plan.planes) == (8,) and plan.magic & 0xFF == 0


def _prmt2(a, b, selector: int):
    """prmt.b32 of two registers: result byte i = byte (selector >> 4 i) & 7 of (b:a)."""
    return cute.arch.inline_ptx(f"prmt.b32 {{$w0}}, {{$r0}}, {{$r1}}, {selector:#06x};",
                                write_only_types=[cutlass.Int32], read_only_args=[a, b])


def is_fast4(plan: DequantPlan) -> bool:
    """4-bit integer codes in one plane under fp16 activations: `decode_slot4` applies (1024 + 16 q is exact in
    fp16, so odd slots need no shift)."""
    return plan.kind == "int" and plan.a_dtype == "float16" and tuple(plan.planes) == (4,)


def odd_slot_sub(plan: DequantPlan, neg_sub):
    """The odd-slot offset of `decode_slot4` from its even one: -(1024 + z) + 960 = -(64 + z), exact."""
    return fma2(plan, neg_sub, half2_const(plan, 1.0), half2_const(plan, plan.magic_value * 15 / 16))


def decode_slot4(plan: DequantPlan, word, slot: int, neg_sub=None, odd_sub=None):
    """Pair `slot` (0..3: bits 4 slot .. 4 slot + 3 of each half) of a 4-bit code word -> fp16 values q - offset.

    Even slots: (word & 0x000F000F) | magic = 1024 + q, plus -(1024 + z). Odd slots read the nibble where it is:
    (word & 0x00F000F0) | magic = 1024 + 16 q, times 1/16 plus -(64 + z) in one HFMA2, both exact. Slots 2, 3 use
    word >> 8 (one shift for two pairs). `neg_sub` is -(1024 + z) per half (None: the symmetric offset);
    `odd_sub`, where given, is `odd_slot_sub(plan, neg_sub)` computed once by the caller."""
    w = word >> 8 if slot >= 2 else word
    off = plan.magic_value + plan.sym_offset
    if slot % 2 == 0:
        x = and_or(w, 0x000F000F, plan.magic * 0x00010001)
        sub = neg_sub if neg_sub is not None else half2_const(plan, -off)
        return fma2(plan, x, half2_const(plan, 1.0), sub)
    x = and_or(w, 0x00F000F0, plan.magic * 0x00010001)
    if neg_sub is None:
        sub = half2_const(plan, -(plan.magic_value / 16 + plan.sym_offset))
    else:
        sub = odd_sub if odd_sub is not None else odd_slot_sub(plan, neg_sub)
    return fma2(plan, x, half2_const(plan, 1.0 / 16), sub)


def decode_slot4_raw(plan: DequantPlan, word, slot: int):
    """Pair `slot` of a 4-bit code word under its magic exponent, offsets left in (`fold_offsets`): even slots
    (word & 0x000F000F) | 0x6400 = 1024 + q, odd slots (word & 0x00F000F0) | 0x5400 = 64 + q (q sits at mantissa
    bits 4-7, whose unit is 1/16 in [64, 128)); one LOP3 each, both exact. The kernel subtracts the offsets and
    the zero point from the group's fp32 partial sum."""
    if not is_fast4(plan) or plan.magic != 0x6400:
        raise ValueError(f"decode_slot4_raw takes 4-bit integer codes under fp16 (magic 0x6400), got {plan}")
    w = word >> 8 if slot >= 2 else word
    if slot % 2 == 0:
        return and_or(w, 0x000F000F, 0x64006400)
    return and_or(w, 0x00F000F0, 0x54005400)


def reg_const(x: int):
    """A 32-bit constant in a register (an MMA operand cannot be an immediate; inline PTX would get one)."""
    x &= 0xFFFFFFFF
    return cute.arch.inline_ptx(f"mov.b32 {{$w0}}, {x:#010x};", write_only_types=[cutlass.Int32], read_only_args=[])


#: fp16 pairs of the `fold_offsets` constant B operands: the offsets' sum minus 1024 x the activations' sum is
#: 960 x the sum over the k-rows 8-15 of each k16 step (64 + q there, 1024 + q in rows 0-7)
FOLD_B_HI = [0, 0x63806380]       # (0, 960) per B register: rows 0-7, rows 8-15
FOLD_B_ONES = [0x3C003C00, 0x3C003C00]


def _prmt_self(w, selector: int):
    return cute.arch.inline_ptx(f"prmt.b32 {{$w0}}, {{$r0}}, {{$r0}}, {selector:#06x};",
                                write_only_types=[cutlass.Int32], read_only_args=[w])


def broadcast_lo(w):
    """(lo, hi) -> (lo, lo) of a packed pair (one PRMT)."""
    return _prmt_self(w, 0x1010)


def broadcast_hi(w):
    """(lo, hi) -> (hi, hi) of a packed pair (one PRMT)."""
    return _prmt_self(w, 0x3232)


# ---- 8-bit activation lanes (see layouts/dequant_plan.py: LanePlan) --------------------------------------------
_FP8_PTX = {"float8e4m3": "e4m3x2", "float8e5m2": "e5m2x2"}


def _bytes_of_pairs(c0, c1):
    """Low bytes of both halves of c0 then of c1 -> one register of four 8-bit lanes (one PRMT)."""
    return cute.arch.inline_ptx("prmt.b32 {$w0}, {$r0}, {$r1}, 0x6420;", write_only_types=[cutlass.Int32],
                                read_only_args=[c0, c1])


def lanes8(lane, c0, c1, neg_sub=None):
    """Two code pairs (k, k+1) and (k+2, k+3), each pair in the two 16-bit halves of c0 / c1, -> one register of
    four 8-bit activation-format lanes holding the exact values q - offset, lane i = k + i.

    identity: float weights of the activation's own format: the codes are the lanes. int_lanes: add a per-lane
    constant and flip the top bit (carry-free; lane arithmetic of `LanePlan`); with a zero point `neg_sub` is
    that constant for the column, 2^7 - z in every byte. half_cvt: the exact fp16 transform (`neg_sub`: the
    fp16 pair -(magic + z)), then one exact cvt to fp8 per pair."""
    if lane.kind == "identity":
        return _bytes_of_pairs(c0, c1)
    if lane.kind == "int_lanes":
        v = _bytes_of_pairs(c0, c1)
        add = i32(lane.lane_add_word(lane.sym_offset)) if neg_sub is None else neg_sub   # zero point: per column
        return (v + add) ^ i32(0x80808080)
    f0 = decode_pair(lane.half, c0, neg_sub)
    f1 = decode_pair(lane.half, c1, neg_sub)
    cvt = _FP8_PTX[lane.a_dtype]
    return cute.arch.inline_ptx(
        "{\n.reg .b16 lo, hi;\n"
        f"cvt.rn.satfinite.{cvt}.f16x2 lo, {{$r0}};\n"
        f"cvt.rn.satfinite.{cvt}.f16x2 hi, {{$r1}};\n"
        "mov.b32 {$w0}, {lo, hi};\n}", write_only_types=[cutlass.Int32], read_only_args=[f0, f1])


def lanes4(lane, c0, c1, c2, c3, neg_sub=None):
    """Four code pairs (k, k+1) .. (k+6, k+7), each pair in the two 16-bit halves of c0..c3 (codes < 16), -> one
    register of eight 4-bit lanes, lane i = k + i: int4 lanes holding q - offset (int_lanes plans), or the e2m1
    codes themselves (identity plans: e2m1 weights under e2m1 activations).

    Each pair's two codes become one byte (lo | hi << 4: OR with itself shifted down by 12), three PRMTs gather
    the four low bytes, then the carry-free per-lane add and top-bit flip of `LanePlan` give two's complement;
    `neg_sub` (zero points) is that add constant of the column in every nibble."""
    if lane.lane_bits != 4 or lane.kind not in ("int_lanes", "identity"):
        raise ValueError(f"lanes4 builds int4 / e2m1 lanes; {lane.a_dtype} x {lane.b_dtype} is a {lane.kind} plan")
    v = cute.arch.inline_ptx(
        "{\n.reg .b32 t0, t1, t2, t3, lo, hi;\n"
        "shr.b32 t0, {$r0}, 12;\nor.b32 t0, t0, {$r0};\n"
        "shr.b32 t1, {$r1}, 12;\nor.b32 t1, t1, {$r1};\n"
        "shr.b32 t2, {$r2}, 12;\nor.b32 t2, t2, {$r2};\n"
        "shr.b32 t3, {$r3}, 12;\nor.b32 t3, t3, {$r3};\n"
        "prmt.b32 lo, t0, t1, 0x0040;\nprmt.b32 hi, t2, t3, 0x0040;\n"
        "prmt.b32 {$w0}, lo, hi, 0x5410;\n}", write_only_types=[cutlass.Int32], read_only_args=[c0, c1, c2, c3])
    if lane.kind == "identity":
        return v
    add = i32(lane.lane_add_word(lane.sym_offset)) if neg_sub is None else neg_sub
    return (v + add) ^ i32(0x88888888)
