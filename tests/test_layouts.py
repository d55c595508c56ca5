"""The kernel weight layout (`layouts/weight.py`) and the prepared operands (`layouts/prepared.py`).

The structural tests re-derive, from the layout's docstring only (not from its private index helper), where a
lane's code pairs live, and decode packed words the way the kernel does (`kernels/gemm_sm80.py`: 128-bit
shared loads per plane, `dequant.extract_pair`, scale / zero-point vectors read at columns 8j + g)."""

import math
import os

import numpy as np
import pytest
import torch

from humming_cute import dtypes
from humming_cute.layouts.dequant_plan import emulate_pairs, make_plan, plane_widths
from humming_cute.layouts.prepared import prepare_weight, round_up
from humming_cute.layouts.weight import (
    ATOM_K, ATOM_N, atom_words, pack_weight, permute_n, unpack_weight, unpermute_n,
)
from humming_cute.quant import decode_scales, dequantize_weight, quantize_weight

# A fresh seed per run on top of the fixed ones; HC_TEST_SEED=<seed> reproduces a failing run.
FRESH_SEED = int(os.environ.get("HC_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _codes(shape, bits, seed):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 1 << bits, shape, generator=g, dtype=torch.uint8)
    c.view(-1)[0] = (1 << bits) - 1  # all-ones codes set the sign bit of some words
    return c


# ------------------------------------------------------------------------------------- independent layout decoder

def layout_pairs(packed: torch.Tensor, bits: int):
    """Decode a packed weight from the documented layout alone.

    Returns (pairs uint32 [.., n_atoms, k_atoms, 32 lanes, 4 steps, 16 pairs], n index, k index) where a pair
    word holds, like `dequant.extract_pair` produces it, the code of (n, k) in its low half and of (n, k + 1) in
    its high half (all planes OR'ed), and n / k broadcast against the pair array (k is the even k).

    Docstring rules used: atom (na, ka) occupies packed[.., na, ka*128*bits : (ka+1)*128*bits]; inside it the
    planes (widths plane_widths(bits), low code bits first) follow one another, 128*w words each; word q of lane
    `lane` of a plane sits at (q // 4) * 128 + lane * 4 + q % 4; pair p = 2j + r of k16 step ss is in word
    q = ss*w + p // (16/w), slot s = p % (16/w), codes at bits [s*w, s*w+w) and [16+s*w, 16+s*w+w); it holds
    column n = 8j + g and rows k = ss*16 + 2t + 8r (+1), with g = lane // 4, t = lane % 4.
    """
    lead = packed.shape[:-2]
    na, ka = packed.shape[-2], packed.shape[-1] // (128 * bits)
    words = packed.contiguous().numpy().view(np.uint32).reshape(*lead, na, ka, 128 * bits)
    lane = np.arange(32).reshape(32, 1, 1)
    ss = np.arange(4).reshape(1, 4, 1)
    p = np.arange(16).reshape(1, 1, 16)
    pairs = np.zeros((*lead, na, ka, 32, 4, 16), dtype=np.uint32)
    start, shift = 0, 0
    for w in plane_widths(bits):
        per_half = 16 // w
        q = ss * w + p // per_half
        slot = p % per_half
        off = start + (q // 4) * 128 + lane * 4 + q % 4        # [32, 4, 16]
        word = words[..., off]                                  # [.., na, ka, 32, 4, 16]
        mask = ((1 << w) - 1) * 0x00010001
        pairs |= ((word >> (slot * w).astype(np.uint32)) & np.uint32(mask)) << np.uint32(shift)
        start += 128 * w
        shift += w
    g, t = lane // 4, lane % 4
    j, r = p // 2, p % 2
    n_in = (8 * j + g)                                          # [32, 1, 16]
    k_in = ss * 16 + 2 * t + 8 * r                              # [32, 4, 16]
    n = np.arange(na).reshape(na, 1, 1, 1, 1) * ATOM_N + n_in
    k = np.arange(ka).reshape(1, ka, 1, 1, 1) * ATOM_K + k_in
    return pairs, np.broadcast_to(n, pairs.shape[len(lead):]), np.broadcast_to(k, pairs.shape[len(lead):])


# ------------------------------------------------------------------------------------------------ pack / unpack

@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("shape", [(64, 64), (128, 192), (2, 64, 128), (2, 3, 64, 64)],
                         ids=["1atom", "2x3atoms", "moe2", "lead2x3"])
def test_pack_unpack_round_trip(bits, shape):
    codes = _codes(shape, bits, 17 * bits + len(shape))
    p = pack_weight(codes, bits)
    n, k = shape[-2:]
    assert p.dtype == torch.int32 and p.is_contiguous()
    assert p.shape == (*shape[:-2], n // 64, k // 64 * atom_words(bits))
    assert atom_words(bits) == 128 * bits
    u = unpack_weight(p, bits)
    assert u.dtype == torch.uint8 and torch.equal(u, codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_unpack_round_trip_fresh(bits):
    g = torch.Generator().manual_seed(FRESH_SEED + bits)
    e, na, ka = (int(x) for x in torch.randint(1, 4, (3,), generator=g))
    codes = torch.randint(0, 1 << bits, (e, na * 64, ka * 64), generator=g, dtype=torch.uint8)
    assert torch.equal(unpack_weight(pack_weight(codes, bits), bits), codes), f"HC_TEST_SEED={FRESH_SEED}"


@pytest.mark.parametrize("bits", range(1, 9))
def test_atoms_are_stored_n_major_and_independent(bits):
    """Atom (na, ka) is packed[.., na, ka*atom_words : (ka+1)*atom_words] and depends only on its own codes."""
    codes = _codes((128, 192), bits, 5 + bits)
    p = pack_weight(codes, bits)
    aw = atom_words(bits)
    for na in range(2):
        for ka in range(3):
            sub = codes[na * 64:(na + 1) * 64, ka * 64:(ka + 1) * 64].contiguous()
            assert torch.equal(p[na, ka * aw:(ka + 1) * aw], pack_weight(sub, bits)[0])


@pytest.mark.parametrize("bits", [4, 3, 8, 1, 2, 5, 6, 7])
@pytest.mark.parametrize("seed", [0, "fresh"])
def test_structural_layout(bits, seed):
    """Decoding the packed words per the docstring yields codes[n = 8j + g, k = ss*16 + 2t + 8r (+1)]."""
    s = FRESH_SEED if seed == "fresh" else seed
    codes = _codes((2, 128, 192), bits, s + bits)  # MoE leading dim, 2 x 3 atoms
    pairs, n, k = layout_pairs(pack_weight(codes, bits), bits)
    c = codes.numpy()
    want_lo = c[:, n, k]
    want_hi = c[:, n, k + 1]
    assert np.array_equal(pairs & 0xFFFF, want_lo), f"seed {s}"
    assert np.array_equal(pairs >> 16, want_hi), f"seed {s}"
    # every code of the weight is delivered exactly once
    seen = np.zeros(c.shape[1:], dtype=np.int64)
    np.add.at(seen, (n, k), 1)
    np.add.at(seen, (n, k + 1), 1)
    assert (seen == 1).all()


def test_structural_layout_single_code_probe():
    """A single nonzero code lands in exactly one documented word/slot (4-bit: word q = ss*4 + p//4)."""
    bits = 4
    for (n, k) in [(0, 0), (9, 3), (63, 63), (17, 42), (64 + 5, 128 + 13)]:
        codes = torch.zeros(128, 192, dtype=torch.uint8)
        codes[n, k] = 0xB
        words = pack_weight(codes, bits).numpy().view(np.uint32)
        nz = np.argwhere(words)
        assert len(nz) == 1
        na, col = nz[0]
        ka, off = divmod(int(col), atom_words(bits))
        nn, kk = n % 64, k % 64
        j, g = divmod(nn, 8)
        ss, kr = divmod(kk, 16)
        r, rest = divmod(kr, 8)
        t, h = divmod(rest, 2)
        lane, p = 4 * g + t, 2 * j + r
        q, slot = ss * 4 + p // 4, p % 4
        assert (na, ka) == (n // 64, k // 64)
        assert off == (q // 4) * 128 + lane * 4 + q % 4
        assert words[na, col] == 0xB << (16 * h + 4 * slot)


def test_pack_errors():
    with pytest.raises(TypeError, match="uint8"):
        pack_weight(torch.zeros(64, 64, dtype=torch.int32), 4)
    with pytest.raises(TypeError, match="uint8"):
        pack_weight(torch.zeros(64, 64, dtype=torch.float32), 4)
    with pytest.raises(ValueError, match="multiples of 64"):
        pack_weight(torch.zeros(96, 64, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="multiples of 64"):
        pack_weight(torch.zeros(64, 32, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match=r"\[N, K\] or \[E, N, K\]"):
        pack_weight(torch.zeros(64, dtype=torch.uint8), 4)
    c = torch.zeros(64, 64, dtype=torch.uint8)
    c[3, 5] = 16
    with pytest.raises(ValueError, match=r"a code is >= 2\^4.*\[0, 15\]"):
        pack_weight(c, 4)
    c[3, 5] = 2
    with pytest.raises(ValueError, match=r"a code is >= 2\^1"):
        pack_weight(c, 1)
    with pytest.raises(ValueError, match="1..8 bits"):
        pack_weight(torch.zeros(64, 64, dtype=torch.uint8), 9)


def test_unpack_errors():
    p = pack_weight(torch.zeros(64, 64, dtype=torch.uint8), 4)
    with pytest.raises(TypeError, match="int32"):
        unpack_weight(p.to(torch.int64), 4)
    with pytest.raises(ValueError, match="multiple of 512"):
        unpack_weight(p[:, :100], 4)
    with pytest.raises(ValueError, match="multiple of 384"):
        unpack_weight(p, 3)


# ----------------------------------------------------------------------------------------------------- permute

@pytest.mark.parametrize("shape", [(64,), (3, 128), (2, 5, 192)])
def test_permute_round_trip_and_order(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    y = permute_n(x)
    assert y.shape == x.shape
    assert torch.equal(unpermute_n(y), x)
    assert torch.equal(permute_n(unpermute_n(x)), x)
    # position 64*blk + 8g + j holds column 64*blk + 8j + g: a thread with row g reads columns 8j + g, j = 0..7
    for blk in range(shape[-1] // 64):
        for g in range(8):
            for j in range(8):
                assert torch.equal(y[..., 64 * blk + 8 * g + j], x[..., 64 * blk + 8 * j + g])
    for dtype in (torch.float16, torch.bfloat16, torch.int32, torch.uint8):
        xi = torch.arange(shape[-1]).expand(shape).to(dtype)
        assert torch.equal(unpermute_n(permute_n(xi)), xi)


def test_permute_errors():
    with pytest.raises(ValueError, match="multiple of 64"):
        permute_n(torch.zeros(4, 100))


# ------------------------------------------------------------------------------------------------ prepare_weight

def _weight(shape, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * scale
    # rows of different magnitudes, so scales span a few binades
    return w * torch.exp2(torch.randint(-3, 3, (*shape[:-1], 1), generator=g).float())


def _decoded_group_scales(pw) -> torch.Tensor:
    """fp64 [.., N_pad, groups]: un-permuted activation-typed group scales times the epilogue factor."""
    s = unpermute_n(pw.group_scales.view(TORCH_HALF[pw.a_dtype])).to(torch.float64).transpose(-1, -2)
    f = pw.epilogue_factor.to(torch.float64)
    return s * (f[:, None, None] if s.dim() == 3 else f[0])


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
@pytest.mark.parametrize("b", ["int4", "uint4", "uint3", "float4e2m1", "int8", "uint8", "float8e4m3"])
def test_prepare_shapes_padding_and_scales(a, b):
    """N=200, K=352, group 32: N padded to 256, K to 384 (12 groups); scales recovered exactly."""
    n, k, gs = 200, 352, 32
    sdt = "float16" if a == "float16" else "bfloat16"
    qw = quantize_weight(_weight((n, k), 3), b, gs, sdt)
    pw = prepare_weight(qw, a)
    t = dtypes.parse_dtype(b)
    assert (pw.n_pad, pw.k_pad, pw.shape_n, pw.shape_k) == (256, 384, n, k)
    assert (pw.a_dtype, pw.b_dtype, pw.group_size) == (a, t.name, gs)
    assert pw.packed.dtype == torch.int32 and pw.packed.shape == (4, 6 * atom_words(t.bits))
    assert pw.group_scales.dtype == torch.int32 and pw.group_scales.shape == (12, 128)
    assert pw.channel_scales is None
    assert pw.epilogue_factor.dtype == torch.float32 and pw.epilogue_factor.shape == (1,)
    # codes: the original ones, zero padding
    u = unpack_weight(pw.packed, t.bits)
    assert torch.equal(u[:n, :k], qw.codes)
    assert not u[n:].any() and not u[:, k:].any()
    # group scales: exact (same 16-bit type, power-of-two normalisation folded into the epilogue factor)
    s = _decoded_group_scales(pw)
    assert s.shape == (256, 12)
    assert torch.equal(s[:n, :11], decode_scales(qw.scales, qw.scale_dtype))
    half_scales = unpermute_n(pw.group_scales.view(TORCH_HALF[a]))
    assert torch.isfinite(half_scales).all()
    f = float(pw.epilogue_factor[0])
    assert math.frexp(f)[0] == 0.5  # an exact power of two (no global scale)
    if a == "float16":
        # normalised so that no |value * scale| overflows fp16
        vmax = max(abs(v) for v in t.values() if not math.isnan(v))
        assert float(half_scales.abs().max()) * vmax < 65504
    # zero points
    if t.is_integer and not t.signed:
        plan = make_plan(a, b)
        assert pw.has_zero_point and pw.neg_sub.dtype == torch.int32 and pw.neg_sub.shape == (12, 128)
        zs = unpermute_n(pw.neg_sub.view(TORCH_HALF[a])).to(torch.float64).transpose(-1, -2)
        z = qw.zero_points.to(torch.float64)
        if plan.zp_is_magic_offset:
            assert torch.equal(zs[:n, :11], -(plan.magic_value + z))
        else:
            assert a == "bfloat16" and t.bits == 8
            assert torch.equal(zs[:n, :11], -z)
    else:
        assert pw.neg_sub is None and not pw.has_zero_point


@pytest.mark.parametrize("b", ["int4", "uint4", "float4e2m1"])
def test_prepare_fp32_scales_within_fp16_rounding(b):
    qw = quantize_weight(_weight((200, 352), 4), b, 32, "float32")
    pw = prepare_weight(qw, "float16")
    s = _decoded_group_scales(pw)[:200, :11]
    ref = decode_scales(qw.scales, qw.scale_dtype)
    rel = ((s - ref).abs() / ref.abs())
    assert float(rel.max()) <= 2.0 ** -11  # one round-to-nearest to fp16 (normal range)
    assert float(rel.max()) > 0  # fp32 scales are generally not fp16-exact: it really rounded


@pytest.mark.parametrize("a,sdt", [("float16", "float8e4m3"), ("bfloat16", "float8e4m3"), ("bfloat16", "ue8m0"),
                                   ("bfloat16", "float8e5m2"), ("float16", "float8e5m2")])
def test_prepare_exact_for_representable_scale_types(a, sdt):
    qw = quantize_weight(_weight((128, 256), 5), "int4", 64, sdt)
    pw = prepare_weight(qw, a)
    assert torch.equal(_decoded_group_scales(pw)[:, :4], decode_scales(qw.scales, qw.scale_dtype))


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
@pytest.mark.parametrize("b,sdt", [("int4", "float16"), ("float8e4m3", "float32"), ("int8", "bfloat16")])
def test_prepare_channelwise(a, b, sdt):
    n, k = 200, 352
    qw = quantize_weight(_weight((n, k), 6), b, 0, sdt)
    pw = prepare_weight(qw, a)
    assert pw.group_size == 0 and pw.group_scales is None and pw.neg_sub is None
    assert pw.channel_scales.dtype == torch.float32 and pw.channel_scales.shape == (256,)
    assert torch.equal(pw.channel_scales[:n].to(torch.float64), decode_scales(qw.scales, qw.scale_dtype)[:, 0])
    assert torch.isfinite(pw.channel_scales).all()
    assert torch.equal(pw.epilogue_factor, torch.ones(1))
    assert torch.equal(unpack_weight(pw.packed, qw.b_dtype.bits)[:n, :k], qw.codes)


def test_prepare_channelwise_zero_point_not_implemented():
    qw = quantize_weight(_weight((64, 64), 7), "uint4", 0)
    with pytest.raises(NotImplementedError, match="zero points need a group size"):
        prepare_weight(qw, "float16")


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
def test_prepare_moe_and_global_scale(a):
    e, n, k = 3, 130, 96
    w = _weight((e, n, k), 8) * torch.tensor([1.0, 30.0, 0.01])[:, None, None]
    qw = quantize_weight(w, "uint4", 32, "float16" if a == "float16" else "bfloat16", global_scale=True)
    pw = prepare_weight(qw, a)
    assert (pw.n_pad, pw.k_pad) == (192, 128)
    assert pw.packed.shape == (e, 3, 2 * atom_words(4))
    assert pw.group_scales.shape == pw.neg_sub.shape == (e, 4, 96)
    assert pw.epilogue_factor.shape == (e,)
    g = qw.global_scale.to(torch.float64)
    s = _decoded_group_scales(pw)
    assert torch.allclose(s[:, :n, :3], decode_scales(qw.scales, qw.scale_dtype) * g[:, None, None],
                          rtol=2.0 ** -23, atol=0)
    # the factor is the global scale times an exact power of two
    ratio = pw.epilogue_factor.to(torch.float64) / g
    for x in ratio.tolist():
        assert math.frexp(x)[0] == 0.5
    assert torch.equal(unpack_weight(pw.packed, 4)[:, :n, :k], qw.codes)


def test_prepare_illegal_pair_raises():
    qw = quantize_weight(_weight((64, 64), 9), "float8e6m1", 32, "float32")
    with pytest.raises(ValueError, match="illegal pair"):
        prepare_weight(qw, "float16")
    prepare_weight(qw, "bfloat16")  # legal there




@pytest.mark.parametrize("n,k", [(128, 128),
                                 (136, 128),
                                 (128, 160)])
def test_scale_normalisation_ignores_padding(n, k):
    """fp16 scales of e5m2 weights are ~absmax / 57344 (fp16 subnormal range); the normalisation must lift them,
    not shift them further down because of the padded (1.0) scales."""
    w = _weight((n, k), 13)
    qw = quantize_weight(w, "float8e5m2", 32, "float16")
    pw = prepare_weight(qw, "float16")
    ref = decode_scales(qw.scales, qw.scale_dtype)
    assert torch.equal(_decoded_group_scales(pw)[:n, :ref.shape[1]], ref)


# ------------------------------------------------------------------- end to end: operands as the kernel reads them

def _kernel_view_dequant(pw) -> torch.Tensor:
    """The B operand the kernel builds, emulated on the CPU from the prepared operands: pairs located by the
    documented layout, decoded by the plan, times the group scale read from the permuted vector at columns
    8j + g (zero point from the negated subtrahend). Returns activation-typed [.., N_pad, K_pad]."""
    plan = make_plan(pw.a_dtype, pw.b_dtype)
    half = TORCH_HALF[pw.a_dtype]
    pairs, n, k = layout_pairs(pw.packed, plan.bits)
    lead = pw.packed.shape[:-2]
    grp = k // pw.group_size
    # kernel: 16-byte vector of row `grp`, atom n // 64, thread row g = n % 8, element j = (n % 64) // 8
    def read(op):
        v = op.view(half).reshape(*lead, op.shape[-2], -1, 8, 8)  # [.., groups, n_atoms, g, j]
        return v[..., grp, n // 64, n % 8, (n % 64) // 8]
    s = read(pw.group_scales).to(torch.float32).numpy()
    z = None
    if pw.neg_sub is not None:
        ns = -read(pw.neg_sub).to(torch.float64).numpy()
        z = ns - plan.magic_value if plan.zp_is_magic_offset else ns
        assert (z == np.round(z)).all() and (z >= 0).all()
    vals = emulate_pairs(plan, pairs, z, scale=s)  # [.., na, ka, 32, 4, 16, 2]
    out = torch.zeros(*lead, pw.n_pad, pw.k_pad, dtype=half)
    n, k = torch.from_numpy(n.copy()), torch.from_numpy(k.copy())
    out[..., n, k] = vals[..., 0]
    out[..., n, k + 1] = vals[..., 1]
    return out


@pytest.mark.parametrize("a,b,sdt", [
    ("float16", "uint4", "float16"), ("float16", "int4", "float16"), ("float16", "uint3", "float16"),
    ("float16", "float6e3m2", "float16"), ("float16", "uint8", "float16"), ("float16", "float8e4m3", "float16"),
    ("float16", "float8e5m2", "float16"),
    ("bfloat16", "uint8", "bfloat16"), ("bfloat16", "int8", "bfloat16"), ("bfloat16", "uint7", "bfloat16"),
    ("bfloat16", "float8e4m3", "bfloat16"), ("bfloat16", "int2", "bfloat16"), ("float16", "int1", "float16"),
])
@pytest.mark.parametrize("seed", [11, "fresh"])
def test_kernel_view_matches_dequantize_weight(a, b, sdt, seed):
    """Every weight element the kernel feeds the MMA is value * scale rounded once to the activation type,
    relative to `dequantize_weight` divided by the epilogue factor (an exact power of two here)."""
    s = FRESH_SEED % 2 ** 31 if seed == "fresh" else seed
    n, k, gs = 136, 160, 32
    qw = quantize_weight(_weight((n, k), s), b, gs, sdt)
    pw = prepare_weight(qw, a)
    got = _kernel_view_dequant(pw)
    f = float(pw.epilogue_factor[0])
    want = (dequantize_weight(qw, torch.float64) / f).to(TORCH_HALF[a])
    assert torch.equal(got[:n, :k], want), f"seed {s}"
    assert torch.isfinite(got).all()  # padding decodes to finite values (activations are zero-padded in K)


def test_kernel_view_moe_bf16_split_path():
    w = _weight((2, 64, 128), 12) * torch.tensor([1.0, 100.0])[:, None, None]
    qw = quantize_weight(w, "uint8", 64, "bfloat16")
    pw = prepare_weight(qw, "bfloat16")
    got = _kernel_view_dequant(pw)
    f = pw.epilogue_factor.to(torch.float64)
    want = (dequantize_weight(qw, torch.float64) / f[:, None, None]).to(torch.bfloat16)
    assert torch.equal(got, want)


def test_round_up():
    assert [round_up(x, 64) for x in (1, 64, 65, 200, 352)] == [64, 64, 128, 256, 384]


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_pack_weight_in_row_chunks_equals_whole(bits):
    from humming_cute.layouts.weight import pack_weight as pw, unpack_weight as uw

    c = torch.randint(0, 1 << bits, (2, 320, 192), dtype=torch.uint8)
    whole = pw(c, bits, rows_per_chunk=1 << 20)
    for rows in (64, 128, 200):
        assert torch.equal(pw(c, bits, rows_per_chunk=rows), whole)
    assert torch.equal(uw(whole, bits), c)


# ---- layouts for the 8-bit (m16n8k32) and 4-bit (m16n8k64) MMAs
def _ptx_b_coords(mma_k, lane):
    """(n, k) of each B-fragment value of thread `lane`, from the PTX ISA's fragment tables (independent of
    pair_coords): k32 (.s8/.e4m3/.e5m2): 8 values, k = 4t + (i % 4) + 16 (i >= 4); k64 (.s4/.e2m1 as 4-bit): 16
    values, k = 8t + (i % 8) + 32 (i >= 8); n = g."""
    g, t = lane // 4, lane % 4
    if mma_k == 32:
        return [(g, 4 * t + (i % 4) + 16 * (i >= 4)) for i in range(8)]
    return [(g, 8 * t + (i % 8) + 32 * (i >= 8)) for i in range(16)]


@pytest.mark.parametrize("mma_k", [32, 64])
def test_pair_coords_follow_the_mma_fragment(mma_k):
    from humming_cute.layouts.weight import pair_coords

    seen = set()
    for lane in range(32):
        for j in range(8):                        # n8 tile
            for step in range(64 // mma_k):        # MMA k-steps inside the 64-wide atom
                vals = []
                pairs = 4 if mma_k == 32 else 8
                for c in range(pairs):             # register order: pairs c, each (k, k + 1)
                    ss, r = (2 * step + c // 2, c % 2) if mma_k == 32 else (c // 2, c % 2)
                    n, k = pair_coords(mma_k, lane, ss, 2 * j + r)
                    vals += [(n - 8 * j, k - step * mma_k), (n - 8 * j, k + 1 - step * mma_k)]
                    seen.update({(n, k), (n, k + 1)})
                assert vals == _ptx_b_coords(mma_k, lane), (lane, j, step)
    assert len(seen) == 64 * 64                    # every (n, k) of the atom exactly once


@pytest.mark.parametrize("mma_k", [32, 64])
@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_roundtrip_mma_k(bits, mma_k):
    from humming_cute.layouts.weight import pack_weight, unpack_weight

    torch.manual_seed(bits + mma_k)
    codes = torch.randint(0, 1 << bits, (2, 128, 192), dtype=torch.uint8)
    packed = pack_weight(codes, bits, mma_k=mma_k)
    assert torch.equal(unpack_weight(packed, bits, mma_k=mma_k), codes)
    if bits > 1:                                   # a different MMA's layout puts codes elsewhere
        assert not torch.equal(packed, pack_weight(codes, bits))


def test_mma_k_rejected():
    from humming_cute.layouts.weight import pack_weight

    with pytest.raises(ValueError, match="mma_k"):
        pack_weight(torch.zeros(64, 64, dtype=torch.uint8), 4, mma_k=8)
