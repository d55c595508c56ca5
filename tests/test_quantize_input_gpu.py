"""GPU tests of the fused activation-quantization kernel against the reference (marked `gpu`; not yet run).

`humming_cute.quantize_input` must equal `humming_cute.quantize_activation` exactly: codes byte for byte (signed
zeros included) and scales bit for bit. Every launch here goes through the host path with its outputs poisoned
first, twice with different byte patterns, so an element the kernel fails to write cannot match by chance.
Inputs: rows of varied magnitude, zero and -0 rows, rows at the dtype's extremes, exact rounding ties, tiny rows
(scale underflow), odd K, misaligned data pointers, long rows (beyond the register cache), every group-size
path (warp groups, one CTA per group, per token), the hardware fp8 conversion and the software one.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from humming_cute import dtypes
from humming_cute.quant.activation import quantize_activation

pytestmark = pytest.mark.gpu

qi = importlib.import_module("humming_cute.quantize_input")   # the module (the package re-exports the function)

QTYPES = ["float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1"]
QMAX = {"float8e4m3": 448.0, "float8e5m2": 57344.0, "int8": 127.0, "int4": 7.0, "float4e2m1": 6.0}
FP8 = ("float8e4m3", "float8e5m2")


def _grid(qtype):
    if qtype in ("int8", "int4"):
        return torch.arange(0, QMAX[qtype] + 1, dtype=torch.float64)
    vals = sorted({abs(v) for v in dtypes.parse_dtype(qtype).values() if not math.isnan(v) and abs(v) <= QMAX[qtype]})
    return torch.tensor(vals, dtype=torch.float64)


def make_input(m, k, dtype, qtype, seed=0, device="cuda"):
    """Random rows of varied magnitude plus special rows (when m >= 6): zeros, -0, extremes, exact ties led by
    qmax in every 16 elements (scale 1), tiny values (fp32 scale underflow for bf16/fp32)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g).mul(6).sub(3).exp()
    if m >= 6:
        x[1] = 0.0
        x[2] = -0.0
        big = torch.finfo(dtype).max if dtype != torch.float32 else 3.0e38
        x[3] = torch.randn(k, generator=g).sign() * big * torch.rand(k, generator=g)
        x[3, 0] = -big
        grid = _grid(qtype)
        mids = ((grid[1:] + grid[:-1]) / 2).float()
        sign = torch.where(torch.rand(k, generator=g) < 0.5, -1.0, 1.0)
        x[4] = mids.repeat(k // len(mids) + 1)[:k] * sign
        x[4, ::16] = QMAX[qtype]
        x[5] = torch.randn(k, generator=g) * (6e-8 if dtype == torch.float16 else 1e-38)
    return x.to(dtype).to(device)


def _poisoned(byte):
    def kernel_for(cfg):
        real = qi.get_quantize_kernel(cfg)

        def run(x, q8, s):
            q8.fill_(byte)
            s.fill_(float("nan"))
            real(x, q8, s)
        return run
    return kernel_for


def check(x, qtype, group, soft_float=False):
    """Kernel == reference (CPU and CUDA), with poisoned outputs; returns the kernel's codes as bytes."""
    want_q, want_s = quantize_activation(x.cpu(), qtype, group)
    want8 = want_q.view(torch.uint8)
    arch = qi._arch_of(x.device)
    got = None
    for byte in (0x5A, 0xA5):
        q, s = qi._run(x, qtype, group, arch, soft_float, kernel_for=_poisoned(byte))
        torch.cuda.synchronize()
        assert q.dtype == want_q.dtype and q.shape == want_q.shape and s.shape == want_s.shape
        q8 = q.view(torch.uint8).cpu()
        bad = (q8 != want8).nonzero()
        if bad.numel():
            i, j = bad[0].tolist()
            raise AssertionError(f"{bad.shape[0]} code mismatches ({qtype}, group {group}, {x.dtype}, "
                                 f"soft={soft_float}); first at [{i}, {j}]: x={x[i, j].item()!r} "
                                 f"scale={want_s[i, j // (group or x.shape[1])].item()!r} "
                                 f"got {q8[i, j].item():#04x} want {want8[i, j].item():#04x}")
        sc = s.cpu()
        assert torch.equal(sc.view(torch.int32), want_s.view(torch.int32)), \
            f"scales differ at {(sc != want_s).nonzero()[:4].tolist()}"
        got = q8
    # the device-agnostic reference on the GPU agrees as well
    rq, rs = quantize_activation(x, qtype, group)
    assert torch.equal(rq.view(torch.uint8).cpu(), want8) and torch.equal(rs.cpu(), want_s), \
        "the reference itself differs between CUDA and CPU (not a kernel failure)"
    return got


# ------------------------------------------------------------------------ every type x group path x input dtype
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 16, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_matches_reference(qtype, group, dtype):
    check(make_input(333, 4096, dtype, qtype, seed=1), qtype, group)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 128])
def test_fp32_input(qtype, group):
    check(make_input(17, 1024, torch.float32, qtype, seed=2), qtype, group)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m", [1, 2, 7])
def test_small_m(qtype, m):
    check(make_input(m, 256, torch.float16, qtype, seed=m), qtype, 0)
    check(make_input(m, 256, torch.float16, qtype, seed=m), qtype, 16)


# ------------------------------------------------------------------------ every code path of the kernel
@pytest.mark.parametrize("qtype", QTYPES)
def test_long_rows_beyond_register_cache(qtype):
    # per token: 128 threads x 8 cached chunks x 8 halves = 8192; 20480 also runs the re-read loop
    check(make_input(9, 20480, torch.float16, qtype, seed=3), qtype, 0)
    check(make_input(3, 8192 + 8, torch.bfloat16, qtype, seed=4), qtype, 0)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group, k", [(2048, 4096), (4096, 8192), (8192, 16384), (16384, 16384)])
def test_large_groups(qtype, group, k):
    # 2048: warp mode with 8 chunks per lane; 4096 and up: one CTA per group
    check(make_input(7, k, torch.float16, qtype, seed=5), qtype, group)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("k", [16, 37, 100, 4098])
def test_odd_k_per_token(qtype, k):
    # vec 8, 1, 4, 2
    check(make_input(11, k, torch.float16, qtype, seed=k), qtype, 0)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 16, 128])
def test_misaligned_pointer(qtype, group):
    m, k = 6, 1024
    buf = make_input(1, m * k + 1, torch.float16, qtype, seed=6).reshape(-1)
    x = buf[1:].view(m, k)
    assert qi.select_config(x, qtype, group, qi._arch_of(x.device)).vec == 1
    check(x, qtype, group)


def test_non_contiguous_rows():
    base = make_input(8, 600, torch.bfloat16, "int8", seed=7)
    check(base[:, 44:556], "int8", 128)
    check(base[3:4, :512], "float8e4m3", 0)


@pytest.mark.parametrize("qtype", FP8)
@pytest.mark.parametrize("group", [0, 128])
def test_soft_fp8_equals_hardware(qtype, group):
    x = make_input(65, 2048, torch.bfloat16, qtype, seed=8)
    soft = check(x, qtype, group, soft_float=True)
    if qi._arch_of(x.device) != "sm_80":
        assert torch.equal(soft, check(x, qtype, group, soft_float=False))


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_rounding_sweep(qtype, soft):
    """fp32 input rows led by qmax (scale exactly 1): every grid point and midpoint with fp32 neighbours, a
    strided walk over all fp32 bit patterns up to qmax, fp32 subnormals, both signs -> every code bit-exact."""
    if soft and qtype not in FP8:
        pytest.skip("soft_float only changes fp8")
    qmax = torch.tensor(QMAX[qtype], dtype=torch.float32)
    top = int(qmax.view(torch.int32))
    walk = torch.arange(0, top + 1, 4093, dtype=torch.int64).to(torch.int32).view(torch.float32)
    grid = _grid(qtype)
    special = torch.cat([grid, (grid[1:] + grid[:-1]) / 2]).float().view(torch.int32)
    near = torch.cat([(special + d).clamp(min=0) for d in range(-3, 4)]).view(torch.float32)
    sub = torch.tensor([0, 1, 2, 3, 0x7FFFFF, 0x800000, 0x800001], dtype=torch.int32).view(torch.float32)
    vals = torch.cat([walk, near, sub])
    vals = vals[vals.abs() <= qmax]
    vals = torch.cat([vals, -vals])
    k = 4096
    n_rows = -(-vals.numel() // (k - 1))
    vals = torch.cat([vals, torch.zeros(n_rows * (k - 1) - vals.numel())]).reshape(n_rows, k - 1)
    x = torch.cat([qmax.expand(n_rows, 1), vals], dim=1).cuda()
    check(x, qtype, 0, soft_float=soft)


# ------------------------------------------------------------------------ public entry point, graphs, M = 0
def test_public_api_and_empty():
    x = make_input(40, 512, torch.float16, "float8e4m3", seed=9)
    q, s = qi.quantize_input(x, "float8e4m3", 128)
    rq, rs = quantize_activation(x.cpu(), "float8e4m3", 128)
    assert q.dtype == torch.float8_e4m3fn and torch.equal(q.view(torch.uint8).cpu(), rq.view(torch.uint8))
    assert torch.equal(s.cpu(), rs)
    q, s = qi.quantize_input(x[:0], "int4", 16)
    assert q.shape == (0, 512) and s.shape == (0, 32)
    with pytest.raises(ValueError, match="does not divide"):
        qi.quantize_input(x[:, :320], "int8", 256)


def test_cuda_graph_replay():
    x = make_input(64, 1024, torch.bfloat16, "int8", seed=10)
    qi.quantize_input(x, "int8", 128)      # compile outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        q, s = qi.quantize_input(x, "int8", 128)
    x.copy_(make_input(64, 1024, torch.bfloat16, "int8", seed=11))
    g.replay()
    torch.cuda.synchronize()
    rq, rs = quantize_activation(x.cpu(), "int8", 128)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)


def test_side_stream():
    x = make_input(128, 2048, torch.float16, "float4e2m1", seed=12)
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        q, s = qi.quantize_input(x, "float4e2m1", 0)
    st.synchronize()
    rq, rs = quantize_activation(x.cpu(), "float4e2m1", 0)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)
