"""Reference activation quantization: round trips, exact grid values, nearest rounding, scales, errors."""

import math
import zlib

import pytest
import torch

from humming_cute import dtypes
from humming_cute.quant.activation import (
    ACTIVATION_QUANT_TYPES, activation_max_value, activation_storage_dtype, dequantize_activation,
    quantize_activation, round_to_float_format,
)

QMAX = {"float8e4m3": 448.0, "float8e5m2": 57344.0, "int8": 127.0, "int4": 7.0, "float4e2m1": 6.0}


def _grid(name):
    """Sorted fp64 tensor of every value a quantized activation of `name` may take."""
    if name in ("int8", "int4"):
        q = int(QMAX[name])
        return torch.arange(-q, q + 1, dtype=torch.float64)
    vals = [v for v in dtypes.parse_dtype(name).values() if not math.isnan(v) and abs(v) <= QMAX[name]]
    return torch.tensor(sorted(set(vals)), dtype=torch.float64)


def _values(q, name):
    """Real values of quantized activations, independent of the module (fp4 decoded via dtypes)."""
    if name == "float4e2m1":
        t = dtypes.float4e2m1
        return torch.tensor([t.decode(int(c)) for c in q.reshape(-1)], dtype=torch.float64).reshape(q.shape)
    return q.to(torch.float64)


def _rand(m, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g).mul(3).exp()  # rows of varied magnitude
    return x.to(dtype)


def test_tables():
    assert set(ACTIVATION_QUANT_TYPES) == set(QMAX)
    for name, qmax in QMAX.items():
        assert activation_max_value(name) == qmax
    assert activation_storage_dtype("fp8") == torch.float8_e4m3fn
    assert activation_storage_dtype("e5m2") == torch.float8_e5m2
    assert activation_storage_dtype("int4") == torch.int8
    assert activation_storage_dtype("fp4") == torch.uint8


@pytest.mark.parametrize("name", list(QMAX))
@pytest.mark.parametrize("group_size", [0, 16, 64])
@pytest.mark.parametrize("in_dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_round_trip_exact_and_nearest(name, group_size, in_dtype):
    m, k = 5, 128
    x = _rand(m, k, in_dtype, seed=zlib.crc32(f"{name}/{group_size}/{in_dtype}".encode()))
    q, s = quantize_activation(x, name, group_size)
    g = group_size or k
    assert q.dtype == activation_storage_dtype(name) and q.shape == (m, k)
    assert s.dtype == torch.float32 and s.shape == (m, k // g)

    # scales are absmax / qmax (fp32), per token or per group
    amax = x.float().reshape(m, k // g, g).abs().amax(-1)
    torch.testing.assert_close(s, amax / QMAX[name], rtol=0, atol=0)

    # every code is a representable value inside the symmetric range
    vals = _values(q, name)
    grid = _grid(name)
    assert torch.isin(vals, grid).all()
    if name == "float4e2m1":
        assert int(q.max()) <= 15

    # dequantized = scale * representable value, exactly (fp32 product)
    d = dequantize_activation(q, s, name, group_size)
    assert d.dtype == torch.float32 and d.shape == (m, k)
    want = (vals.float().reshape(m, k // g, g) * s.reshape(m, k // g, 1)).reshape(m, k)
    assert torch.equal(d, want)

    # round to nearest: |x/s - value| is the distance to the nearest grid point (<= half a step)
    v = (x.double().reshape(m, k // g, g) / s.double().reshape(m, k // g, 1)).reshape(m, k).clamp(-QMAX[name],
                                                                                                QMAX[name])
    nearest = (v.reshape(-1, 1) - grid.reshape(1, -1)).abs().min(dim=1).values.reshape(m, k)
    assert torch.allclose((v - vals).abs(), nearest, rtol=0, atol=1e-6 * QMAX[name])

    # and the reconstruction error is at most half of the local step times the scale
    idx = torch.searchsorted(grid, vals.reshape(-1)).clamp(1, grid.numel() - 2)
    half_step = torch.maximum(grid[idx + 1] - grid[idx], grid[idx] - grid[idx - 1]).reshape(m, k) / 2
    scale_full = s.double().repeat_interleave(g, dim=1)
    err = (d.double() - x.double()).abs()
    assert (err <= half_step * scale_full * (1 + 1e-5) + 1e-12).all()


@pytest.mark.parametrize("name,row,expect", [
    # scale is exactly 1 (absmax == qmax): pure rounding, ties to even
    ("int8", [127, 0.5, 1.5, 2.5, -0.5, -2.5, 3.49, -126.5], [127, 0, 2, 2, 0, -2, 3, -126]),
    ("int4", [7, 0.5, 1.5, 2.5, -3.5, -6.5, 4.51, 0.0], [7, 0, 2, 2, -4, -6, 5, 0]),
    ("float4e2m1", [6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5], [6, 0, 1, 1, 2, 2, 4, 4]),
    ("float4e2m1", [-6, -0.2, -0.3, -2.6, -4.9, 5.1, 0.5, 1.5], [-6, -0.0, -0.5, -3, -4, 6, 0.5, 1.5]),
    ("float8e4m3", [448, 1.0625, 1.1875, 3.0, 240, 248, -0.0, 2**-9], [448, 1, 1.25, 3, 240, 256, 0, 2**-9]),
    ("float8e5m2", [57344, 1.125, 1.375, 4.5, 0.5, 3.0, 6.5, 7.5], [57344, 1, 1.5, 4, 0.5, 3, 6, 8]),
])
def test_ties_to_even(name, row, expect):
    x = torch.tensor([row], dtype=torch.float32)
    q, s = quantize_activation(x, name)
    assert s.item() == 1.0
    vals = _values(q, name)
    assert vals.reshape(-1).tolist() == [float(e) for e in expect]


def test_fp4_negative_zero_keeps_sign():
    x = torch.tensor([[6.0, -0.1, 0.1, 0.0]])
    q, _ = quantize_activation(x, "float4e2m1")
    assert q.tolist() == [[0b0111, 0b1000, 0b0000, 0b0000]]


@pytest.mark.parametrize("name", ["float8e4m3", "float8e5m2"])
def test_generic_float_rounding_matches_torch_casts(name):
    t = dtypes.parse_dtype(name)
    g = torch.Generator().manual_seed(3)
    # random magnitudes over the whole range (normals and subnormals), plus every midpoint of the grid
    v = torch.exp2(torch.empty(20000).uniform_(math.log2(t.min_subnormal) - 2, math.log2(t.max_value), generator=g))
    v = v * torch.where(torch.rand(20000, generator=g) < 0.5, -1.0, 1.0)
    grid = _grid(name).float()
    mids = (grid[1:] + grid[:-1]) / 2
    v = torch.cat([v, mids, grid]).clamp(-t.max_value, t.max_value)
    ours = round_to_float_format(v, t)
    theirs = v.to(t.torch_dtype).float()
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", list(QMAX))
@pytest.mark.parametrize("group_size", [0, 16])
def test_zero_and_tiny_rows(name, group_size):
    x = _rand(4, 32, torch.float32, seed=11)
    x[1] = 0.0
    x[2] = 1e-40  # fp32 subnormal: absmax / qmax underflows
    x[3, :16] = 0.0  # a zero group next to a nonzero one
    q, s = quantize_activation(x, name, group_size)
    d = dequantize_activation(q, s, name, group_size)
    assert torch.isfinite(s).all() and (s > 0).all()
    assert torch.isfinite(d).all()
    assert (d[1] == 0).all()
    assert (s[1] == 1).all()
    if group_size:
        assert s[3, 0] == 1 and (d[3, :16] == 0).all()
    assert (d[2].abs() <= 1e-38).all()


@pytest.mark.parametrize("name", list(QMAX))
def test_per_group_vs_per_token(name):
    x = _rand(3, 64, torch.float16, seed=5)
    q0, s0 = quantize_activation(x, name, 0)
    qk, sk = quantize_activation(x, name, 64)  # one group spanning K == per token
    assert torch.equal(s0, sk) and torch.equal(q0.view(torch.uint8), qk.view(torch.uint8))
    q16, s16 = quantize_activation(x, name, 16)
    assert (s16 <= s0).all()  # each group's absmax is at most the row's
    assert torch.equal(s16.amax(dim=1, keepdim=True), s0)
    e0 = (dequantize_activation(q0, s0, name) - x.float()).norm()
    e16 = (dequantize_activation(q16, s16, name, 16) - x.float()).norm()
    assert e16 <= e0 * 1.05


def test_fp64_dequant():
    x = _rand(2, 32, torch.float32, seed=8)
    q, s = quantize_activation(x, "int8", 16)
    d64 = dequantize_activation(q, s, "int8", 16, out_dtype=torch.float64)
    assert d64.dtype == torch.float64
    assert torch.allclose(d64.float(), dequantize_activation(q, s, "int8", 16), rtol=1e-7, atol=0)


def test_errors():
    x = _rand(2, 32, torch.float16, seed=1)
    with pytest.raises(ValueError, match="not quantized"):
        quantize_activation(x, "float16")
    with pytest.raises(ValueError, match="not a quantized activation type"):
        quantize_activation(x, "uint4")
    with pytest.raises(ValueError, match="not a quantized activation type"):
        quantize_activation(x, "float6e3m2")
    with pytest.raises(ValueError, match="unknown data type"):
        quantize_activation(x, "int9x")
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        quantize_activation(x.to(torch.int32), "int8")
    with pytest.raises(ValueError, match="2-D"):
        quantize_activation(x.reshape(2, 2, 16), "int8")
    with pytest.raises(ValueError, match="does not divide"):
        quantize_activation(x, "int8", 24)
    with pytest.raises(ValueError, match="positive divisor"):
        quantize_activation(x, "int8", -16)
    with pytest.raises(TypeError, match="group_size"):
        quantize_activation(x, "int8", 16.0)
    q, s = quantize_activation(x, "int8", 16)
    with pytest.raises(TypeError, match="stored as"):
        dequantize_activation(q.to(torch.uint8), s, "int8", 16)
    with pytest.raises(ValueError, match="shape"):
        dequantize_activation(q, s, "int8", 0)
    with pytest.raises(ValueError, match="shape"):
        dequantize_activation(q, s[:, :1].contiguous(), "int8", 16)
    with pytest.raises(TypeError, match="float"):
        dequantize_activation(q, s.to(torch.int32), "int8", 16)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        dequantize_activation(q, s, "int4", 16)  # int8 codes are out of int4 range
    q4, s4 = quantize_activation(x, "fp4")
    with pytest.raises(ValueError, match="0..15"):
        dequantize_activation(q4 | 0x10, s4, "fp4")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(QMAX))
@pytest.mark.parametrize("group_size", [0, 32])
def test_cuda_matches_cpu_bitwise(name, group_size):
    x = _rand(64, 256, torch.bfloat16, seed=77)
    qc, sc = quantize_activation(x, name, group_size)
    qg, sg = quantize_activation(x.cuda(), name, group_size)
    assert torch.equal(qc.view(torch.uint8), qg.cpu().view(torch.uint8)) and torch.equal(sc, sg.cpu())
    assert torch.equal(dequantize_activation(qc, sc, name, group_size),
                       dequantize_activation(qg, sg, name, group_size).cpu())
