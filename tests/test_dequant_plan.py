"""The register dequant transform (`layouts/dequant_plan.py`): every code of every legal (16-bit activation,
weight) pair decodes bit-exactly, scales round like the activation type, and illegal pairs raise."""

import math
import os

import numpy as np
import pytest
import torch

from humming_cute import dtypes
from humming_cute.layouts.dequant_plan import emulate_codes, emulate_pairs, make_plan, plane_widths

# A fresh seed per run on top of the fixed ones; HC_TEST_SEED=<seed> reproduces a failing run.
FRESH_SEED = int(os.environ.get("HC_TEST_SEED", int.from_bytes(os.urandom(4), "little")))

ACTS = ["float16", "bfloat16"]
INT_TYPES = [f"int{b}" for b in range(1, 9)] + [f"uint{b}" for b in range(1, 9)]
FLOAT_TYPES = [f"float{1 + e + m}e{e}m{m}" for e in range(1, 8) for m in range(0, 8 - e)]
ALL_WEIGHT_TYPES = INT_TYPES + FLOAT_TYPES
TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _legal(a, b) -> bool:
    return dtypes.is_legal_pair(a, b)


LEGAL_PAIRS = [(a, b) for a in ACTS for b in ALL_WEIGHT_TYPES if _legal(a, b)]
ILLEGAL_PAIRS = [(a, b) for a in ACTS for b in ALL_WEIGHT_TYPES if not _legal(a, b)]


def _is_uint(t) -> bool:
    return isinstance(t, dtypes.IntegerType) and not t.signed


def _zero_points(bits: int, rng: np.random.Generator) -> list[int]:
    top = (1 << bits) - 1
    return sorted({0, 1, 1 << (bits - 1), top, int(rng.integers(0, top + 1))} & set(range(top + 1)))


def test_enumeration_and_legality_table():
    """28 small float formats and 16 integer formats; fp16 rejects exactly the formats with more than 5 exponent
    bits, bf16 accepts every <= 8-bit format."""
    assert len(FLOAT_TYPES) == 28 and len(INT_TYPES) == 16
    assert sorted(b for a, b in ILLEGAL_PAIRS if a == "float16") == sorted(
        ["float8e6m1", "float7e6m0", "float8e7m0"])
    assert [b for a, b in ILLEGAL_PAIRS if a == "bfloat16"] == []


@pytest.mark.parametrize("bits", range(1, 9))
def test_plane_widths(bits):
    planes = plane_widths(bits)
    assert sum(planes) == bits
    assert set(planes) <= {8, 4, 2, 1}
    assert len(set(planes)) == len(planes)  # one plane per power of two
    assert list(planes) == sorted(planes, reverse=True)  # the widest (low code bits) first
    assert plane_widths(bits) == {1: (1,), 2: (2,), 3: (2, 1), 4: (4,), 5: (4, 1), 6: (4, 2), 7: (4, 2, 1),
                                  8: (8,)}[bits]


@pytest.mark.parametrize("bits", [0, 9, -1, 16])
def test_plane_widths_rejects(bits):
    with pytest.raises(ValueError, match="1..8 bits"):
        plane_widths(bits)


@pytest.mark.parametrize("a,b", LEGAL_PAIRS, ids=[f"{a}-{b}" for a, b in LEGAL_PAIRS])
def test_every_code_exact(a, b):
    """emulate_codes over every valid code equals the type's value table bit-exactly (and q - z for uint with
    several zero points, 0 and 2^b - 1 included)."""
    plan = make_plan(a, b)
    t = dtypes.parse_dtype(b)
    assert plan.a_dtype == a and plan.b_dtype == t.name and plan.bits == t.bits
    assert plan.planes == plane_widths(t.bits)
    codes = np.array(t.valid_codes(), dtype=np.uint32)
    values = np.array(t.values(), dtype=np.float64)[codes]
    assert not np.isnan(values).any()

    out = emulate_codes(plan, codes)
    assert out.dtype == TORCH_HALF[a] and out.shape == (len(codes),)
    got = out.to(torch.float64).numpy()
    # float64 comparison: -0.0 == 0.0, so the sign of a zero is irrelevant here ...
    np.testing.assert_array_equal(got, values, err_msg=f"{a} x {b}")
    assert np.isfinite(got).all()
    # ... and every zero value decodes to a zero of either sign
    assert (np.abs(got[values == 0]) == 0).all()
    if t.is_float:
        # the float path moves the sign bit, so (-)0 keeps its sign (harmless either way for the MMA)
        assert (np.signbit(got) == np.signbit(values)).all()

    if _is_uint(t):
        rng = np.random.default_rng(t.bits)
        zs = _zero_points(t.bits, rng)
        assert 0 in zs and (1 << t.bits) - 1 in zs
        cc, zz = np.meshgrid(codes, np.array(zs, dtype=np.uint32), indexing="ij")
        got = emulate_codes(plan, cc, zz).to(torch.float64).numpy()
        np.testing.assert_array_equal(got, cc.astype(np.float64) - zz.astype(np.float64), err_msg=f"{a} x {b}")
    elif t.is_integer:
        # symmetric: z = None means the offset 2^(b-1); passing it explicitly gives the same
        z = np.full(codes.shape, t.offset, dtype=np.uint32)
        assert torch.equal(emulate_codes(plan, codes, z), out)


@pytest.mark.parametrize("a", ACTS)
def test_pairs_two_different_codes(a):
    """Both halves of a pair decode independently (low half = first value), for every legal type."""
    rng = np.random.default_rng(FRESH_SEED)
    for _, b in [p for p in LEGAL_PAIRS if p[0] == a]:
        t = dtypes.parse_dtype(b)
        plan = make_plan(a, b)
        valid = np.array(t.valid_codes(), dtype=np.uint32)
        c0 = rng.choice(valid, 300)
        c1 = rng.choice(valid, 300)
        vals = np.array(t.values(), dtype=np.float64)
        z = rng.integers(0, 1 << t.bits, 300).astype(np.uint32) if _is_uint(t) else None
        out = emulate_pairs(plan, c0 | (c1 << 16), z).to(torch.float64).numpy()
        assert out.shape == (300, 2)
        want0 = c0 - z.astype(np.float64) if z is not None else vals[c0]
        want1 = c1 - z.astype(np.float64) if z is not None else vals[c1]
        np.testing.assert_array_equal(out[:, 0], want0, err_msg=f"{a} x {b} seed {FRESH_SEED}")
        np.testing.assert_array_equal(out[:, 1], want1, err_msg=f"{a} x {b} seed {FRESH_SEED}")


def _random_half_scales(a: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Activation-representable scales (as the prepared group scales are) of both signs over many binades."""
    mag = np.exp2(rng.uniform(-10.0, 6.0, n)) * np.where(rng.random(n) < 0.3, -1.0, 1.0)
    return torch.from_numpy(mag).to(TORCH_HALF[a]).to(torch.float32).numpy()


@pytest.mark.parametrize("a", ACTS)
@pytest.mark.parametrize("seed", [0, 1, "fresh"])
def test_pairs_with_scale_round_like_activation(a, seed):
    """value * scale (scale in the activation type) comes out as the correctly rounded activation-type product."""
    rng = np.random.default_rng(FRESH_SEED if seed == "fresh" else seed)
    half = TORCH_HALF[a]
    for _, b in [p for p in LEGAL_PAIRS if p[0] == a]:
        t = dtypes.parse_dtype(b)
        plan = make_plan(a, b)
        valid = np.array(t.valid_codes(), dtype=np.uint32)
        n = 400
        c0, c1 = rng.choice(valid, n), rng.choice(valid, n)
        z = rng.integers(0, 1 << t.bits, n).astype(np.uint32) if _is_uint(t) else None
        s = _random_half_scales(a, n, rng)
        out = emulate_pairs(plan, c0 | (c1 << 16), z, scale=s)
        assert out.dtype == half
        vals = np.array(t.values(), dtype=np.float64)
        v = np.stack([c0 - z.astype(np.float64), c1 - z.astype(np.float64)] if z is not None
                     else [vals[c0], vals[c1]], -1)
        # value and scale are both exact in the activation type, so the fp64 product is exact and one rounding
        # to the activation type is the correct result
        want = torch.from_numpy(v * s.astype(np.float64)[:, None]).to(half)
        assert torch.equal(out.to(torch.float64).nan_to_num(), want.to(torch.float64).nan_to_num()), \
            f"{a} x {b} seed {seed}/{FRESH_SEED}"


def test_emulate_pairs_scale_array_like_fp32_input():
    """A float32 scale that is not activation-representable is first rounded to the activation type (what the
    prepared operands hold), then multiplied."""
    plan = make_plan("float16", "int4")
    codes = np.arange(16, dtype=np.uint32)
    s = np.full(16, 0.1, dtype=np.float32)
    out = emulate_pairs(plan, codes | (codes << 16), scale=s)[..., 0].to(torch.float64)
    s16 = float(torch.tensor(0.1, dtype=torch.float16))
    want = torch.tensor([(q - 8) * s16 for q in range(16)], dtype=torch.float64).to(torch.float16)
    assert torch.equal(out, want.to(torch.float64))


# ---------------------------------------------------------------------------------------------------- plan kinds

@pytest.mark.parametrize("b", ["int8", "uint8"])
def test_bf16_8bit_uses_split_path_and_is_exact(b):
    plan = make_plan("bfloat16", b)
    assert plan.kind == "int8_bf16"
    assert plan.zp_is_magic_offset is False
    assert plan.subtrahend(5) == 5.0  # the kernel subtracts plain z on this path
    codes = np.arange(256, dtype=np.uint32)
    if b == "int8":
        got = emulate_codes(plan, codes).to(torch.float64).numpy()
        np.testing.assert_array_equal(got, codes - 128.0)
    else:
        for z in (0, 1, 127, 128, 200, 255):
            got = emulate_codes(plan, codes, np.full(256, z, dtype=np.uint32)).to(torch.float64).numpy()
            np.testing.assert_array_equal(got, codes.astype(np.float64) - z)
    # the naive magic-number path would be wrong here: 128 + q is not exact in bf16 for q >= 128
    assert float(torch.tensor(128.0 + 129.0, dtype=torch.bfloat16)) != 257.0


@pytest.mark.parametrize("a,b", [("float16", f"{s}int{n}") for s in ("", "u") for n in range(1, 9)]
                         + [("bfloat16", f"{s}int{n}") for s in ("", "u") for n in range(1, 8)])
def test_int_magic_path(a, b):
    plan = make_plan(a, b)
    assert plan.kind == "int" and plan.zp_is_magic_offset
    assert (plan.magic, plan.magic_value) == ((0x6400, 1024.0) if a == "float16" else (0x4300, 128.0))
    assert plan.half_bits(plan.magic_value) == plan.magic
    t = dtypes.parse_dtype(b)
    assert plan.sym_offset == t.offset
    assert plan.subtrahend(3) == plan.magic_value + 3
    assert plan.pair_mask == ((1 << t.bits) - 1) * 0x00010001


@pytest.mark.parametrize("a,b", [p for p in LEGAL_PAIRS if "float" in p[1]],
                         ids=[f"{a}-{b}" for a, b in LEGAL_PAIRS if "float" in b])
def test_float_plan_constants(a, b):
    plan = make_plan(a, b)
    t = dtypes.parse_dtype(b)
    t_man, t_bias = (10, 15) if a == "float16" else (7, 127)
    assert plan.kind == "float"
    assert plan.shift_left == t_man - t.man
    assert plan.sign_bit == t.exp + t_man <= 15
    assert plan.mag_mask == ((1 << (t.exp + t.man)) - 1) << (t_man - t.man)
    assert plan.exp_factor == math.ldexp(1.0, t_bias - t.bias)
    # the factor is an exact power of two of the activation type
    assert float(torch.tensor(plan.exp_factor, dtype=TORCH_HALF[a])) == plan.exp_factor
    assert plan.has_exp_factor == (plan.exp_factor != 1.0)


# ---------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("a,b,match", [
    ("float16", "float8e6m1", "illegal pair.*exponent bits <= 5"),
    ("float16", "float7e6m0", "illegal pair"),
    ("float16", "float8e7m0", "illegal pair"),
    ("float16", "float16", "not a packed weight type"),
    ("bfloat16", "bfloat16", "not a packed weight type"),
    ("float16", "ue8m0", "not a packed weight type"),
    ("float16", "int32", "not a packed weight type"),
    ("bfloat16", "float32", "not a packed weight type"),
])
def test_illegal_pairs_raise(a, b, match):
    with pytest.raises(ValueError, match=match):
        make_plan(a, b)


@pytest.mark.parametrize("a", ["int8", "int4", "float8e4m3", "float8e5m2", "float4e2m1"])
def test_non_16bit_activations_not_implemented(a):
    with pytest.raises(NotImplementedError, match="float16/bfloat16"):
        make_plan(a, "int4")


@pytest.mark.parametrize("a", ["float32", "uint4"])
def test_non_activation_type_raises(a):
    with pytest.raises((ValueError, NotImplementedError), match=r"float16/bfloat16|not an activation type"):
        make_plan(a, "int4")


@pytest.mark.parametrize("name", ["int9", "uint0", "float9e4m4", "e8m1", "float8e4m4"])
def test_bad_weight_names_raise(name):
    with pytest.raises(ValueError):
        make_plan("bfloat16", name)


def test_aliases_give_same_plan():
    assert make_plan("fp16", "e4m3") == make_plan("float16", "float8e4m3") == make_plan(torch.float16,
                                                                                          "float8_e4m3fn")
    assert make_plan("bf16", "fp4") == make_plan(dtypes.bfloat16, dtypes.float4e2m1)


@pytest.mark.parametrize("b", ["int4", "uint4"])
@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_slot4_decode_every_code_exact(b, slot):
    """The shift-free 4-bit fp16 decode (`kernels.dequant.decode_slot4`, emulated): every code of both halves of
    pair `slot`, against every zero point (uint4) or the symmetric offset (int4), gives q - offset exactly."""
    from humming_cute.layouts.dequant_plan import emulate_slot4

    plan = make_plan("float16", b)
    q_lo, q_hi = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    q_lo, q_hi = q_lo.ravel(), q_hi.ravel()
    other = (np.arange(256) * 7) % 16                           # noise in the other nibbles
    words = np.zeros(256, dtype=np.int64)
    for s in range(4):
        lo = q_lo if s == slot else other
        hi = q_hi if s == slot else (other + 3) % 16
        words |= (lo << (4 * s)) | (hi << (16 + 4 * s))
    zs = range(16) if b == "uint4" else [None]
    for zv in zs:
        z = None if zv is None else np.full(256, zv)
        got = emulate_slot4(plan, words, slot, z)
        off = 8 if zv is None else zv
        assert np.array_equal(got[:, 0], q_lo - off) and np.array_equal(got[:, 1], q_hi - off)
