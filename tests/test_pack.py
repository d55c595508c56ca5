"""pack / unpack (plain bit packing along the last dim) and zero-point packing."""

import os

import pytest
import torch

from humming_cute.quant import pack, packed_size, pack_zero_points, unpack, unpack_zero_points

FRESH_SEED = int(os.environ.get("HC_TEST_SEED", int.from_bytes(os.urandom(4), "little")))


def reference_pack(codes, bits):
    """Bit-by-bit oracle (Python ints)."""
    rows = codes.reshape(-1, codes.shape[-1]).tolist()
    nw = -(-codes.shape[-1] * bits // 32)
    out = []
    for row in rows:
        stream = 0
        for i, c in enumerate(row):
            stream |= int(c) << (i * bits)
        words = [(stream >> (32 * j)) & 0xFFFFFFFF for j in range(nw)]
        out.append([w - (1 << 32) if w >= (1 << 31) else w for w in words])
    return torch.tensor(out, dtype=torch.int32).reshape(*codes.shape[:-1], nw)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 100, 255])
def test_round_trip(bits, k):
    g = torch.Generator().manual_seed(1000 * bits + k)
    codes = torch.randint(0, 1 << bits, (3, 5, k), generator=g, dtype=torch.uint8)
    p = pack(codes, bits)
    assert p.dtype == torch.int32 and p.shape == (3, 5, -(-k * bits // 32)) == (3, 5, packed_size(k, bits))
    assert torch.equal(p, reference_pack(codes, bits))
    u = unpack(p, bits, k)
    assert u.dtype == torch.uint8 and torch.equal(u, codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_round_trip_fresh(bits):
    g = torch.Generator().manual_seed(FRESH_SEED + bits)
    k = int(torch.randint(1, 600, (1,), generator=g))
    codes = torch.randint(0, 1 << bits, (4, k), generator=g, dtype=torch.uint8)
    # all-ones codes set the sign bit of words: must survive the int32 reinterpretation
    codes[0] = (1 << bits) - 1
    p = pack(codes, bits)
    assert torch.equal(p, reference_pack(codes, bits)), f"HC_TEST_SEED={FRESH_SEED}"
    assert torch.equal(unpack(p, bits, k), codes), f"HC_TEST_SEED={FRESH_SEED}"


def test_hand_computed_3bit_straddle():
    # code i occupies stream bits 3i..3i+2; code 10 straddles bits 30..32 (word 0 bits 30-31, word 1 bit 0)
    codes = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 7, 5], dtype=torch.uint8)
    # word 0: bits 0..29 hold codes 0..9, bits 30..31 hold the low 2 bits of code 10 (7 -> 0b11)
    w0 = sum(int(c) << (3 * i) for i, c in enumerate(codes[:10].tolist())) | (0b11 << 30)
    # word 1: bit 0 is the high bit of code 10 (1), bits 1..3 hold code 11 (5)
    w1 = 0b1 | (5 << 1)
    p = pack(codes, 3)
    # by hand, high to low: 11 010 001 000 111 110 101 100 011 010 001 = 0xD11F58D1; word 1 = 0b1011
    assert w0 == 0xD11F58D1 and w1 == 0b1011
    assert p.tolist() == [0xD11F58D1 - (1 << 32), 0b1011]
    assert torch.equal(unpack(p, 3, 12), codes)


def test_4bit_is_gptq_order():
    codes = torch.arange(8, dtype=torch.uint8)
    assert pack(codes, 4).tolist() == [0x76543210]
    assert pack(torch.tensor([0xF] * 8, dtype=torch.uint8), 4).tolist() == [-1]
    assert pack(torch.tensor([1, 2, 3, 4], dtype=torch.uint8), 8).tolist() == [0x04030201]


def test_other_integer_dtypes_and_empty():
    codes = torch.tensor([[1, 0, 3, 2]], dtype=torch.int64)
    assert torch.equal(unpack(pack(codes, 2), 2, 4), codes.to(torch.uint8))
    e = pack(torch.zeros(3, 0, dtype=torch.uint8), 4)
    assert e.shape == (3, 0)
    assert unpack(e, 4, 0).shape == (3, 0)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_zero_points(bits):
    g = torch.Generator().manual_seed(bits)
    for shape in [(6, 100), (2, 4, 33)]:  # [G, N] and MoE [E, G, N]
        z = torch.randint(0, 1 << bits, shape, generator=g, dtype=torch.uint8)
        p = pack_zero_points(z, bits)
        assert p.shape == shape[:-1] + (-(-shape[-1] * bits // 32),)
        assert torch.equal(p, reference_pack(z, bits))
        assert torch.equal(unpack_zero_points(p, bits, shape[-1]), z)
    with pytest.raises(ValueError, match=r"\[\.\., G, N\]"):
        pack_zero_points(torch.zeros(8, dtype=torch.uint8), bits)
    with pytest.raises(ValueError, match=r"\[\.\., G, words\]"):
        unpack_zero_points(torch.zeros(8, dtype=torch.int32), bits, 8)


def test_errors():
    with pytest.raises(ValueError, match=r"3-bit codes must lie in \[0, 7\] \(max 7\), got 8"):
        pack(torch.tensor([1, 8, 2], dtype=torch.uint8), 3)
    with pytest.raises(ValueError, match="max 15.*got -1"):
        pack(torch.tensor([1, -1], dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="bits must be an int in 1..8, got 9"):
        pack(torch.zeros(4, dtype=torch.uint8), 9)
    with pytest.raises(ValueError, match="bits must be an int in 1..8, got 0"):
        unpack(torch.zeros(4, dtype=torch.int32), 0, 4)
    with pytest.raises(TypeError, match="integer tensor"):
        pack(torch.zeros(4), 4)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        pack([1, 2], 4)
    with pytest.raises(ValueError, match="at least one dimension"):
        pack(torch.tensor(3, dtype=torch.uint8), 4)
    with pytest.raises(TypeError, match="torch.int32"):
        unpack(torch.zeros(4, dtype=torch.int64), 4, 32)
    with pytest.raises(ValueError, match="10 codes of 3 bits take 1 int32 words, but packed has 2"):
        unpack(torch.zeros(2, dtype=torch.int32), 3, 10)
    with pytest.raises(ValueError, match="non-negative int"):
        unpack(torch.zeros(2, dtype=torch.int32), 3, -1)
