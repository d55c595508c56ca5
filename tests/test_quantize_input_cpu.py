"""CPU checks of the fused activation-quantization kernel (`humming_cute.quantize_input`, kernels/quantize_input.py).

* Compile for sm_80, sm_89 and sm_90a; the PTX holds IEEE divisions (``div.rn.f32``, never ``div.approx`` /
  ``rcp``), the scale as a division by qmax, 128-bit loads, the butterfly absmax, the fp8 hardware conversion
  (``cvt.rn.satfinite.{e4m3,e5m2}x2.f32``) where it is used and the software rounding elsewhere; no spills.
* The kernel's arithmetic, re-done step by step in torch (`emulate`), equals the reference
  `quantize_activation` bit for bit: an exhaustive-style sweep of the software float rounding and random
  inputs with zero rows, ties, huge and tiny magnitudes.
* Argument errors come before any compile; the host wiring (config choice, output dtypes, uint8 view, empty M)
  is exercised with a stand-in kernel.
"""

from __future__ import annotations

import importlib
import re
import zlib

import pytest
import torch

pytest.importorskip("cutlass")

from humming_cute.kernels.quantize_input import (  # noqa: E402
    CACHE_ITERS, QMAX, THREADS, WARP_MAX_CHUNKS, QuantizeInputConfig, QuantizeInputKernel, fake_operands,
)
from humming_cute.quant.activation import quantize_activation  # noqa: E402
from humming_cute.testing import compile_for_arch, ptx_arch, ptxas_spills  # noqa: E402

# the module (the package may re-export the function under the same name)
qi = importlib.import_module("humming_cute.quantize_input")
quantize_input = qi.quantize_input

QTYPES = ["float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1"]
ARCHS = ["sm_80", "sm_89", "sm_90a"]
FMT = {"float8e4m3": (4, 3, 7), "float8e5m2": (5, 2, 15), "float4e2m1": (2, 1, 1)}
TINY = torch.finfo(torch.float32).tiny


# ================================================================================ emulation of the kernel's math
def soft_float_codes(v: torch.Tensor, qtype: str) -> torch.Tensor:
    """`QuantizeInputKernel.soft_float_code`, op for op, on fp32 values already clamped to [-qmax, qmax]."""
    e_bits, m_bits, bias = FMT[qtype]
    nbits = 1 + e_bits + m_bits
    bits = v.float().contiguous().view(torch.int32)
    sign = (bits >> (32 - nbits)) & (1 << (nbits - 1))
    u = bits & 0x7FFFFFFF
    shift = 23 - m_bits
    r = (u + ((1 << (shift - 1)) - 1) + ((u >> shift) & 1)) >> shift
    mag_normal = r - ((127 - bias) << m_bits)
    f = v.abs() * (2.0 ** (bias - 1 + m_bits))   # exact (power of two); fp32
    mag_sub = torch.round(f).to(torch.int32)      # cvt.rni: half to even
    mag = torch.where(u >= ((127 + 1 - bias) << 23), mag_normal, mag_sub)
    return ((sign | mag) & 0xFF).to(torch.uint8)


def emulate(x: torch.Tensor, qtype: str, group: int, hw_fp8: bool = False):
    """The kernel's computation in torch: NaN-propagating absmax, IEEE divisions, selects, clamp, rounding."""
    m, k = x.shape
    g = group or k
    qmax = QMAX[qtype]
    xf = x.float().reshape(m, k // g, g)
    amax = xf.abs().amax(-1, keepdim=True)
    s = amax / torch.full_like(amax, qmax)
    s = torch.where(s < TINY, torch.full_like(s, TINY), s)
    s = torch.where(amax == 0, torch.ones_like(s), s)
    v = xf / s
    v = torch.minimum(torch.maximum(v, torch.tensor(-qmax)), torch.tensor(qmax))
    if qtype in ("int8", "int4"):
        codes = torch.round(v).to(torch.int32).to(torch.uint8)   # two's complement byte
    elif hw_fp8:
        dt = torch.float8_e4m3fn if qtype == "float8e4m3" else torch.float8_e5m2
        codes = v.to(dt).view(torch.uint8)                        # model of cvt.rn.satfinite
    else:
        codes = soft_float_codes(v, qtype)
    return codes.reshape(m, k), s.reshape(m, k // g)


def ref_bytes(x: torch.Tensor, qtype: str, group: int):
    q, s = quantize_activation(x, qtype, group)
    return q.view(torch.uint8), s


# ================================================================================ inputs
def _grid_values(qtype: str) -> torch.Tensor:
    """Non-negative grid values of the target (fp64)."""
    if qtype in ("int8", "int4"):
        return torch.arange(0, QMAX[qtype] + 1, dtype=torch.float64)
    from humming_cute import dtypes

    vals = sorted({abs(v) for v in dtypes.parse_dtype(qtype).values() if v == v and abs(v) <= QMAX[qtype]})
    return torch.tensor(vals, dtype=torch.float64)


def _neighbours(v32: torch.Tensor, ulps: int) -> torch.Tensor:
    b = v32.contiguous().view(torch.int32)
    out = [(b + d).clamp(min=0) for d in range(-ulps, ulps + 1)]
    return torch.cat(out).view(torch.float32)


def sweep_values(qtype: str) -> torch.Tensor:
    """fp32 values in [-qmax, qmax] that stress the rounding: a strided walk over all bit patterns, every grid
    point and midpoint with their fp32 neighbours, fp32 subnormals; both signs."""
    qmax = torch.tensor(QMAX[qtype], dtype=torch.float32)
    top = int(qmax.view(torch.int32))
    walk = torch.arange(0, top + 1, 509, dtype=torch.int64).to(torch.int32).view(torch.float32)
    grid = _grid_values(qtype)
    mids = (grid[1:] + grid[:-1]) / 2
    special = torch.cat([grid, mids]).float()
    near = _neighbours(special, 3)
    sub = torch.tensor([0, 1, 2, 3, 0x7FFFFF, 0x800000, 0x800001], dtype=torch.int32).view(torch.float32)
    vals = torch.cat([walk, near, sub])
    vals = vals[(vals.abs() <= qmax)]
    return torch.cat([vals, -vals])


def _codes_at_scale_one(vals: torch.Tensor, qtype: str) -> torch.Tensor:
    """Reference codes of fp32 `vals` through quantize_activation itself: one fp32 row led by qmax (scale 1)."""
    row = torch.cat([torch.tensor([QMAX[qtype]]), vals]).reshape(1, -1)
    q, s = quantize_activation(row, qtype, 0)
    assert float(s) == 1.0
    return q.view(torch.uint8).reshape(-1)[1:]


def random_input(m: int, k: int, dtype: torch.dtype, seed: int, qtype: str = "int8") -> torch.Tensor:
    """Rows of varied magnitude, a zero row, a -0 row, a row at the dtype's extremes, a row with exact ties
    (led by qmax so that its scale is 1), a row of tiny values (scale underflow for bf16/fp32)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g).mul(6).sub(3).exp()
    if m >= 6:
        x[1] = 0.0
        x[2] = -0.0
        big = torch.finfo(dtype).max if dtype != torch.float32 else 3.0e38
        x[3] = torch.randn(k, generator=g).sign() * big * torch.rand(k, generator=g)
        x[3, 0] = big
        grid = _grid_values(qtype)
        mids = ((grid[1:] + grid[:-1]) / 2).float()
        reps = mids.repeat(k // len(mids) + 1)[:k]
        sign = torch.where(torch.rand(k, generator=g) < 0.5, -1.0, 1.0)
        x[4] = reps * sign
        x[4, ::16] = QMAX[qtype]   # every group (>= 16) holds qmax -> scale 1, the midpoints are exact ties
        tiny = 1e-38 if dtype != torch.float16 else 6e-8
        x[5] = torch.randn(k, generator=g) * tiny
    return x.to(dtype)


# ================================================================================ emulation == reference
@pytest.mark.parametrize("qtype", ["float8e4m3", "float8e5m2", "float4e2m1"])
def test_soft_float_rounding_matches_reference(qtype):
    vals = sweep_values(qtype)
    want = _codes_at_scale_one(vals, qtype)
    got = soft_float_codes(vals, qtype)
    bad = (got != want).nonzero()
    assert bad.numel() == 0, f"{bad.numel()} mismatches, first at {vals[bad[0]].item()!r}: " \
                             f"{got[bad[0]].item():#x} vs {want[bad[0]].item():#x}"
    if qtype != "float4e2m1":
        # the hardware conversion is modelled by torch's fp8 cast: same codes on the clamped range
        dt = torch.float8_e4m3fn if qtype == "float8e4m3" else torch.float8_e5m2
        assert torch.equal(vals.to(dt).view(torch.uint8), want)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 16, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_emulation_matches_reference(qtype, group, dtype):
    x = random_input(9, 256, dtype, seed=zlib.crc32(f"{qtype}{group}{dtype}".encode()), qtype=qtype)
    want_q, want_s = ref_bytes(x, qtype, group)
    for hw in ([False, True] if qtype.startswith("float8") else [False]):
        q, s = emulate(x, qtype, group, hw_fp8=hw)
        assert torch.equal(q, want_q)
        assert torch.equal(s.view(torch.int32), want_s.view(torch.int32))


def test_emulation_signed_zero_and_saturation():
    x = torch.tensor([[-0.0, 0.0, -1e-4, 448.0, -448.0, 1.0]], dtype=torch.float32)
    q, _ = emulate(x, "float8e4m3", 0)
    assert q.tolist() == [[0x80, 0x00, 0x80, 0x7E, 0xFE, 0x38]]
    q, _ = emulate(x, "float4e2m1", 0)
    want, _ = ref_bytes(x, "float4e2m1", 0)
    assert torch.equal(q, want) and q[0, 0] == 0x8 and q[0, 2] == 0x8


# ================================================================================ configs
def test_config_modes_and_grid():
    c = QuantizeInputConfig("int8", 0, "float16", "sm_90a")
    assert c.vec == 8 and c.mode == "block" and c.grid(5, 4096) == 5
    c = QuantizeInputConfig("int8", 128, "float16", "sm_90a")
    assert c.mode == "warp"
    # 16 lanes per group, 2 groups per warp, 4 warps -> 8 groups per CTA
    assert c.grid(3, 4096) == -(-3 * 32 // 8)
    c = QuantizeInputConfig("int8", 8 * WARP_MAX_CHUNKS * 2, "float16", "sm_90a")
    assert c.mode == "block" and c.grid(2, 8192) == 4   # one CTA per group
    assert QuantizeInputConfig("float8e4m3", 0, "float32", "sm_89").vec == 4
    assert QuantizeInputConfig("float8e4m3", 0, "float16", "sm_89").hw_float_cvt
    assert not QuantizeInputConfig("float8e4m3", 0, "float16", "sm_80").hw_float_cvt
    assert not QuantizeInputConfig("float8e4m3", 0, "float16", "sm_90a", soft_float=True).hw_float_cvt
    assert not QuantizeInputConfig("float4e2m1", 0, "float16", "sm_90a").hw_float_cvt
    for bad in [dict(qtype="int3"), dict(group_size=24), dict(group_size=8), dict(in_dtype="int8"),
                dict(vec=16), dict(vec=3)]:
        kw = dict(qtype="int8", group_size=0, in_dtype="float16", arch="sm_80")
        kw.update(bad)
        with pytest.raises(ValueError):
            QuantizeInputConfig(**kw)


def test_select_config_vector_width():
    x = torch.zeros(4, 4096, dtype=torch.float16)
    assert qi.select_config(x, "int8", 0, "sm_90a").vec == 8
    assert qi.select_config(torch.zeros(4, 100, dtype=torch.float16), "int8", 0, "sm_90a").vec == 4
    assert qi.select_config(torch.zeros(4, 37, dtype=torch.bfloat16), "int8", 0, "sm_90a").vec == 1
    assert qi.select_config(torch.zeros(4, 64, dtype=torch.float32), "int8", 16, "sm_90a").vec == 4
    buf = torch.zeros(4 * 4096 + 1, dtype=torch.float16)
    shifted = buf[1:].view(4, 4096)   # data pointer 2 bytes off a 16-byte boundary
    assert qi.select_config(shifted, "int8", 128, "sm_90a").vec == 1


# ================================================================================ argument errors (no compile)
@pytest.fixture
def no_compile(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("compiled although the arguments are invalid")

    monkeypatch.setattr(qi, "compile_quantize_input", boom)
    monkeypatch.setattr(qi, "get_quantize_kernel", boom)


def test_argument_errors(no_compile):
    x = torch.zeros(4, 256, dtype=torch.float16)
    with pytest.raises(ValueError, match="not quantized"):
        quantize_input(x, "float16")
    with pytest.raises(ValueError, match="not a quantized activation type"):
        quantize_input(x, "uint4")
    with pytest.raises(ValueError, match="unknown data type"):
        quantize_input(x, "int9x")
    with pytest.raises(TypeError, match="torch.Tensor"):
        quantize_input(x.numpy(), "int8")
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        quantize_input(x.to(torch.int32), "int8")
    with pytest.raises(ValueError, match="2-D"):
        quantize_input(x.reshape(4, 16, 16), "int8")
    with pytest.raises(ValueError, match="K = 0"):
        quantize_input(torch.zeros(4, 0, dtype=torch.float16), "int8")
    with pytest.raises(TypeError, match="group_size must be an int"):
        quantize_input(x, "int8", group_size=True)
    with pytest.raises(TypeError, match="group_size must be an int"):
        quantize_input(x, "int8", group_size=128.0)
    with pytest.raises(ValueError, match="power of two in"):
        quantize_input(x, "int8", group_size=-16)
    with pytest.raises(ValueError, match="powers of two >= 16"):
        quantize_input(x, "int8", group_size=8)
    with pytest.raises(ValueError, match="powers of two >= 16"):
        quantize_input(x, "int8", group_size=96)
    with pytest.raises(ValueError, match="larger than K"):
        quantize_input(x, "int8", group_size=512)
    with pytest.raises(ValueError, match="does not divide K"):
        quantize_input(torch.zeros(4, 192, dtype=torch.float16), "int8", group_size=128)
    with pytest.raises(ValueError, match="CUDA"):
        quantize_input(x, "int8", group_size=128)
    with pytest.raises(ValueError, match="CUDA"):
        quantize_input(x, torch.float8_e4m3fn)


# ================================================================================ host wiring with a stand-in kernel
def _fake_kernel_factory(calls):
    """A stand-in for the compiled kernel: checks the operands it gets and fills them with the emulation."""
    def kernel_for(cfg):
        def run(x, q8, s):
            calls.append((cfg, x, q8, s))
            assert q8.dtype == torch.uint8 and q8.shape == x.shape and q8.is_contiguous()
            assert s.dtype == torch.float32 and s.is_contiguous()
            assert x.stride() == (x.shape[1], 1)
            assert x.shape[1] % cfg.vec == 0 and x.data_ptr() % (cfg.vec * x.element_size()) == 0
            q, sc = emulate(x, cfg.qtype, cfg.group_size, hw_fp8=cfg.hw_float_cvt)
            q8.copy_(q)
            s.copy_(sc)
        return run
    return kernel_for


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 128])
def test_host_wiring(qtype, group):
    calls = []
    x = random_input(7, 512, torch.bfloat16, seed=3, qtype=qtype)
    q, s = qi._run(x, qtype, group, "sm_90a", False, kernel_for=_fake_kernel_factory(calls))
    want_q, want_s = quantize_activation(x, qtype, group)
    assert q.dtype == want_q.dtype and q.shape == want_q.shape and s.shape == want_s.shape
    assert torch.equal(q.view(torch.uint8), want_q.view(torch.uint8))
    assert torch.equal(s, want_s)
    (cfg, *_), = calls
    assert (cfg.qtype, cfg.group_size, cfg.in_dtype, cfg.arch) == (qtype, group, "bfloat16", "sm_90a")


def test_host_wiring_layouts():
    calls = []
    base = torch.randn(6, 300, dtype=torch.float16)
    x = base[:, 10:266]                           # rows not contiguous: copied
    q, s = qi._run(x, "int8", 0, "sm_80", False, kernel_for=_fake_kernel_factory(calls))
    assert torch.equal(q, quantize_activation(x, "int8")[0])
    one = base[2:3, :256]                         # one row: any leading stride is accepted without a copy
    q, s = qi._run(one, "float8e4m3", 16, "sm_89", False, kernel_for=_fake_kernel_factory(calls))
    assert torch.equal(q.view(torch.uint8), quantize_activation(one, "float8e4m3", 16)[0].view(torch.uint8))
    n = len(calls)
    q, s = qi._run(torch.zeros(0, 64, dtype=torch.float16), "int4", 16, "sm_80", False,
                   kernel_for=_fake_kernel_factory(calls))
    assert len(calls) == n and q.shape == (0, 64) and q.dtype == torch.int8 and s.shape == (0, 4)


# ================================================================================ compile for each arch, inspect PTX
_ARTIFACTS: dict = {}


def _compiled(cfg: QuantizeInputConfig):
    a = _ARTIFACTS.get(cfg)
    if a is None:
        a = _ARTIFACTS[cfg] = compile_for_arch(QuantizeInputKernel(cfg), *fake_operands(cfg), arch=cfg.arch,
                                               options="--enable-tvm-ffi")
    return a


def _f32_hex(v: float) -> str:
    """PTX spelling of an fp32 immediate."""
    return "0f%08X" % (int(torch.tensor(v, dtype=torch.float32).view(torch.int32)) & 0xFFFFFFFF)


def _check_ptx(cfg: QuantizeInputConfig):
    art = _compiled(cfg)
    ptx = art.ptx
    assert ptx_arch(ptx) == cfg.arch
    assert ptxas_spills(art) == 0
    # IEEE division everywhere: per element and for the scale; no approximate division or reciprocal
    n_div = len(re.findall(r"\bdiv\.rn\.f32\b", ptx))
    assert n_div >= cfg.vec + 1, n_div
    assert not re.search(r"\bdiv\.(approx|full)\b", ptx)
    assert not re.search(r"\bdiv\.rn\.ftz\b", ptx)
    assert not re.search(r"\brcp\.", ptx)
    # the scale: amax / qmax as an IEEE division by the constant, underflow to the smallest normal, 1 for amax 0
    assert re.search(rf"div\.rn\.f32\s+%r\d+, %r\d+, {_f32_hex(QMAX[cfg.qtype])};", ptx), "scale = amax / qmax"
    assert _f32_hex(TINY) in ptx and "0f3F800000" in ptx
    # saturation (NaN-propagating, like torch.clamp) and absmax
    assert "max.NaN.f32" in ptx and "min.NaN.f32" in ptx
    assert "shfl.sync.bfly.b32" in ptx
    if cfg.mode == "block":
        assert "bar.sync" in ptx
    # 128-bit loads when the vector is 16 bytes
    eb = {"float16": 2, "bfloat16": 2, "float32": 4}[cfg.in_dtype]
    if cfg.vec * eb == 16:
        assert re.search(r"ld\.global(\.nc)?\.v4\.(b32|f32|u32)", ptx)
    # conversions
    hw = {"float8e4m3": "cvt.rn.satfinite.e4m3x2.f32", "float8e5m2": "cvt.rn.satfinite.e5m2x2.f32"}
    if cfg.hw_float_cvt:
        assert hw[cfg.qtype] in ptx
    else:
        assert "e4m3x2" not in ptx and "e5m2x2" not in ptx
        assert "cvt.rni" in ptx
        if cfg.qtype in ("float8e4m3", "float8e5m2"):
            e_bits, m_bits, bias = FMT[cfg.qtype]
            assert _f32_hex(2.0 ** (bias - 1 + m_bits)) in ptx   # subnormal-range scaling of the soft rounding
    return ptx


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("group", [0, 128])
def test_compiles_for_arch(arch, qtype, group):
    cfg = QuantizeInputConfig(qtype, group, "float16", arch)
    _check_ptx(cfg)
    if qtype.startswith("float8"):
        assert cfg.hw_float_cvt == (arch != "sm_80")


@pytest.mark.parametrize("qtype, group, in_dtype, arch, vec, soft", [
    ("float8e5m2", 0, "bfloat16", "sm_90a", 0, False),
    ("int8", 0, "bfloat16", "sm_80", 0, False),
    ("int8", 16, "float32", "sm_90a", 0, False),
    ("float4e2m1", 16, "float16", "sm_89", 0, False),
    ("float4e2m1", 2048, "float16", "sm_90a", 0, False),     # warp mode, 8 chunks per lane
    ("float8e4m3", 4096, "float16", "sm_90a", 0, False),     # a group per CTA (block mode)
    ("float8e4m3", 128, "float16", "sm_90a", 0, True),       # software fp8 rounding forced on sm_90a
    ("float8e5m2", 0, "float16", "sm_89", 0, True),
    ("int8", 0, "float16", "sm_80", 1, False),               # odd K: scalar loads
    ("int8", 128, "float16", "sm_90a", 1, False),            # misaligned x: 32 lanes x 4 scalar chunks a group
    ("float8e4m3", 0, "bfloat16", "sm_89", 4, False),        # K % 8 == 4: 64-bit loads, fp8 pairs
    ("float8e4m3", 0, "float16", "sm_90a", 1, False),        # vec 1: one fp8 conversion per element
])
def test_compiles_variants(qtype, group, in_dtype, arch, vec, soft):
    cfg = QuantizeInputConfig(qtype, group, in_dtype, arch, vec=vec, soft_float=soft)
    _check_ptx(cfg)


def test_block_mode_caches_registers_and_rereads():
    # the per-token kernel keeps CACHE_ITERS chunks per thread and has a loop for the rest of long rows
    ptx = _check_ptx(QuantizeInputConfig("int8", 0, "float16", "sm_90a"))
    loads = re.findall(r"ld\.global(?:\.nc)?\.v4\.b32", ptx)
    assert len(loads) >= CACHE_ITERS + 2, len(loads)   # unrolled cached loads + the loops of both passes
    assert THREADS == 128 and ".reqntid 128, 1, 1" in ptx


def test_runtime_compile_cache(monkeypatch):
    qi.clear_cache()
    cfg = QuantizeInputConfig("int4", 16, "float16", "sm_89")
    before = qi.compile_stats()["compiles"]
    k1 = qi.get_quantize_kernel(cfg)
    k2 = qi.get_quantize_kernel(QuantizeInputConfig("int4", 16, "float16", "sm_89"))
    assert k1 is k2 and qi.compile_stats()["compiles"] == before + 1
    qi.clear_cache()
