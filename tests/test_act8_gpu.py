"""GPU tests of 8-bit (fp8 e4m3 / e5m2, int8) and int4 activations in the GEMM kernels (marked `gpu`).

Tolerance: the kernel and the reference multiply the same exactly representable values (activation codes times
weight lanes that hold q - offset exactly; fp32 group scales applied to fp32 partial sums), so they differ only by
the fp32 summation order and the final rounding to the fp16 output: a relative error of 2e-3 (about 2 fp16 ulps)
is the bound."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.quant.activation import quantize_activation
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import quantize_weight

pytestmark = pytest.mark.gpu

PAIRS = [  # activation, weight, weight scale group (0 = per channel), scale dtype: every legal must-show pair
    ("float8e4m3", "int4", 0, "float32"), ("float8e4m3", "int5", 0, "float16"),
    ("float8e4m3", "float8e4m3", 0, "float32"), ("float8e4m3", "float4e2m1", 32, "ue8m0"),
    ("float8e4m3", "uint4", 128, "float16"), ("float8e4m3", "int3", 64, "float32"),
    ("float8e4m3", "float6e3m2", 128, "bfloat16"),
    ("float8e5m2", "int4", 0, "float16"), ("float8e5m2", "float6e3m2", 0, "float32"),
    ("float8e5m2", "int3", 128, "bfloat16"), ("float8e5m2", "float4e2m1", 32, "ue8m0"),
    ("int8", "int8", 0, "float32"), ("int8", "int4", 32, "float16"), ("int8", "uint7", 64, "bfloat16"),
    ("int8", "int7", 0, "bfloat16"), ("int8", "uint4", 128, "float16"),
    ("int4", "int4", 0, "float32"), ("int4", "uint3", 64, "float16"), ("int4", "int3", 128, "bfloat16")]


@pytest.fixture(autouse=True)
def _needs_fp8():
    if torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 mma.sync needs sm_89+ (the int8 cases run from sm_80 but share this file)")


def _check(a, b, group, scale, m, n, k, *, xgroup=0, config=None, tol=2e-3):
    """Random weight and activations, both quantized; the GEMM into a NaN-poisoned output against the reference
    on the same codes and scales."""
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    xq, xs = quantize_activation(torch.randn(m, k, device="cuda"), a, xgroup)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.float16, out=out, config=config)
    ref = reference_gemm(xq, qw, x_scales=xs, x_group_size=xgroup, a_dtype=a, out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output element was never written"
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < tol, f"relative error {rel:.3e}"


@pytest.mark.parametrize("a,b,group,scale", PAIRS)
@pytest.mark.parametrize("m", [1, 16, 333, 4096])
@pytest.mark.parametrize("xgroup", [0, 128])       # activation scales per token / per group of 128
def test_act8_matches_reference(a, b, group, scale, m, xgroup):
    torch.manual_seed(m)
    k = 1088 if group in (0, 32, 64) and not xgroup else 1152   # 1088: padded to 1152 inside
    _check(a, b, group, scale, m, 384, k, xgroup=xgroup)


def test_act8_bias_and_bf16_output():
    torch.manual_seed(7)
    qw = quantize_weight(torch.randn(256, 512, device="cuda"), "int4", 0)
    pw = hc.prepare_weight(qw, "float8e4m3")
    xq, xs = quantize_activation(torch.randn(40, 512, device="cuda"), "float8e4m3", 0)
    bias = torch.randn(256, device="cuda", dtype=torch.bfloat16)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.bfloat16, bias=bias, activation="silu")
    ref = reference_gemm(xq, qw, x_scales=xs, a_dtype="float8e4m3", bias=bias, activation="silu",
                         out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.parametrize("a,b,group", [("float8e4m3", "uint4", 128), ("int8", "int8", 0), ("int4", "uint3", 128)])
def test_layer_quantizes_activations(a, b, group):
    """HummingLayer with 8-bit activations quantizes fp16 x per token on the GPU, or takes codes + scales."""
    torch.manual_seed(11)
    layer = hc.HummingLayer(512, 1024, a, b, "float16", "float16", group).cuda()
    layer.load_weight(torch.randn(512, 1024, device="cuda"))
    layer.finish_load()
    x = torch.randn(3, 50, 1024, device="cuda", dtype=torch.float16)
    y = layer(x)
    xq, xs = quantize_activation(x.reshape(-1, 1024), a, 0)
    ref = reference_gemm(xq, layer.quantized_weight(), x_scales=xs, a_dtype=a, out_dtype=torch.float32)
    assert y.shape == (3, 50, 512)
    assert ((y.reshape(-1, 512).float() - ref).norm() / ref.norm()).item() < 2e-3
    y2 = layer(xq, x_scales=xs)
    assert ((y2.float() - ref).norm() / ref.norm()).item() < 2e-3


@pytest.mark.parametrize("a,b,group,xgroup", [("float8e4m3", "uint4", 128, 0), ("int8", "int8", 0, 128),
                                              ("float8e5m2", "int4", 0, 0), ("int8", "int4", 32, 0),
                                              ("int4", "uint3", 64, 0), ("int4", "int4", 0, 128)])
@pytest.mark.parametrize("bk,split", [(64, 1), (128, 1), (256, 1), (128, 3)])
def test_act8_k_split_warps(a, b, group, xgroup, bk, split):
    """K split across warps (each warp owns 64 of the k-tile's `bk` codes, a slice of the swizzled A tile) and
    across CTAs (fp32 partials) with 8-bit activations and one- or two-level scales."""
    from humming_cute.arch import current_arch

    torch.manual_seed(bk + split)
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, block_m=64, block_n=64,
                        block_k=bk, warp_m=32, warp_n=64, warp_k=64, stages=3, split_k=split,
                        act_group_size=xgroup, arch=current_arch().target)
    _check(a, b, group, "float16", 40, 320, 2048, xgroup=xgroup, config=cfg)


@pytest.mark.parametrize("b,group,xgroup", [("int4", 0, 0), ("uint4", 128, 0), ("float8e4m3", 0, 0),
                                           ("int3", 64, 128)])
@pytest.mark.parametrize("m", [1, 16, 333, 4096])
def test_e4m3_f16_accum(b, group, xgroup, m):
    """e4m3 activations with fp16 accumulators (use_f16_accum, fp16 output). Static activation scales with small
    codes keep the fp16 partial sums far from overflow (65504). Tolerance 1e-2: about K / 32 = 36 fp16 roundings
    (one per m16n8k32 MMA) of a running sum, each up to 2^-11 of it, instead of fp32 sums."""
    torch.manual_seed(m + group)
    n, k = 384, 1152
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, "float16")
    pw = hc.prepare_weight(qw, "float8e4m3")
    # |x| ~ 4 codes against int weights (lanes <= 8), ~ 1/4 against e4m3 weights (lanes up to 448): sums of
    # K = 1152 products stay below ~2^13 (the first GPU run overflowed to inf with |x| ~ 4 against e4m3 weights)
    xq = (torch.randn(m, k, device="cuda") * (0.25 if b == "float8e4m3" else 4.0)).to(torch.float8_e4m3fn)
    ng = k // xgroup if xgroup else 1
    xs = torch.rand(m, ng, device="cuda") * 0.5 + 0.25
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.float16, out=out, use_f16_accum=True)
    ref = reference_gemm(xq, qw, x_scales=xs, x_group_size=xgroup, a_dtype="float8e4m3", out_dtype=torch.float32)
    assert not torch.isnan(y).any() and not torch.isinf(y).any()
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < 1e-2, f"relative error {rel:.3e}"


@pytest.mark.parametrize("a,b,group,xgroup", [("float8e4m3", "int4", 0, 0), ("int8", "uint4", 128, 0),
                                              ("float8e5m2", "int3", 0, 128), ("int4", "int4", 0, 0)])
@pytest.mark.parametrize("m", [1, 40])
def test_act8_glu(a, b, group, xgroup, m):
    """silu_glu on interleaved gate/up columns with 8/4-bit activations: the per-token scale multiplies gate and up
    before the activation."""
    torch.manual_seed(m)
    qw = quantize_weight(torch.randn(256, 1024, device="cuda"), b, group, "float16")
    pw = hc.prepare_weight(qw, a)
    xq, xs = quantize_activation(torch.randn(m, 1024, device="cuda"), a, xgroup)
    out = torch.full((m, 128), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.float16, out=out, activation="silu_glu")
    ref = reference_gemm(xq, qw, x_scales=xs, x_group_size=xgroup, a_dtype=a, activation="silu_glu",
                         out_dtype=torch.float32)
    assert y.shape == (m, 128) and not torch.isnan(y).any()
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < 2e-3, f"relative error {rel:.3e}"


def _sm90():
    from humming_cute.arch import current_arch

    if current_arch().sm != 90:
        pytest.skip("the wgmma mainloop needs sm_90a")


_WGMMA_PAIRS = [("float8e4m3", "int4", 0), ("float8e4m3", "float8e4m3", 0), ("float8e5m2", "int3", 0),
                ("float8e4m3", "float4e2m1", 0), ("int8", "int8", 0), ("int8", "int4", 0),
                ("float8e4m3", "uint4", 128), ("float8e4m3", "int4", 256), ("int8", "uint4", 128),
                ("int8", "int4", 64), ("float8e5m2", "float4e2m1", 128)]
_WGMMA_TILES = [(64, 64, 64, 1), (128, 128, 128, 1), (256, 128, 128, 1), (64, 128, 128, 2)]


def _wgmma_cases():
    """(pair, tile, fp8_fast_accum): weight groups and promoted fp8 keep a second accumulator (block_m <= 128);
    groups span whole k-tiles; promotion (fast=False) only for fp8."""
    for p in _WGMMA_PAIRS:
        for t in _WGMMA_TILES:
            for fast in (True, False):
                second = p[2] > 0 or not fast
                if (not fast and p[0] == "int8") or (second and t[0] > 128) or (p[2] and p[2] < t[2]):
                    continue
                yield p + t + (fast,)


@pytest.mark.parametrize("a,b,group,bm,bn,bk,split,fast", list(_wgmma_cases()))
def test_act8_wgmma(a, b, group, bm, bn, bk, split, fast):
    """8-bit activations on the wgmma mainloop with per-token activation scales and channel weight scales or weight
    groups >= block_k (two-level: one partial sum per k-tile, folded with fp32 scales; fp8 partial sums are
    promoted every k-tile): tile shapes, split-K, a ragged M; the default dispatch of M >= 64 is covered by
    test_act8_matches_reference, a long K by test_act8_wgmma_long_k."""
    _sm90()
    torch.manual_seed(bm + bk)
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, block_m=bm, block_n=bn,
                        block_k=bk, warp_m=bm, warp_n=64, warp_k=bk, stages=3, split_k=split, arch="sm_90a",
                        mainloop="sm90", fp8_fast_accum=fast)
    _check(a, b, group, "float32" if group == 0 else "float16", 333, 384, 1536, config=cfg)


@pytest.mark.parametrize("a,b,fast,tol", [("float8e4m3", "float8e4m3", False, 1e-3),
                                          ("float8e4m3", "int4", False, 1e-3),
                                          ("float8e4m3", "float8e4m3", True, 4e-3), ("int8", "int8", True, 1e-3)])
def test_act8_wgmma_long_k(a, b, fast, tol):
    """K = 8192: with fp8_fast_accum=False the fp8 wgmma partial sums are promoted to fp32 every k-tile and the
    error stays at the fp16 output rounding (1e-3); the default fast accumulation keeps the fp8 wgmma accumulator,
    which holds fewer mantissa bits (2.1e-3 measured for e4m3 x e4m3 on H100; bound 4e-3); int8 sums are exact."""
    _sm90()
    torch.manual_seed(3)
    m, n, k = 256, 512, 8192
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, 0, "float32")
    pw = hc.prepare_weight(qw, a)
    xq, xs = quantize_activation(torch.randn(m, k, device="cuda"), a, 0)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.float16, fp8_fast_accum=fast)
    ref = reference_gemm(xq, qw, x_scales=xs, a_dtype=a, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < tol


def test_act8_wgmma_epilogue():
    """bias, an activation and bf16 output on the wgmma mainloop with fp8 activations (default dispatch)."""
    _sm90()
    torch.manual_seed(5)
    qw = quantize_weight(torch.randn(512, 1024, device="cuda"), "int4", 0)
    pw = hc.prepare_weight(qw, "float8e4m3")
    xq, xs = quantize_activation(torch.randn(300, 1024, device="cuda"), "float8e4m3", 0)
    bias = torch.randn(512, device="cuda", dtype=torch.bfloat16)
    y = hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.bfloat16, bias=bias, activation="gelu")
    ref = reference_gemm(xq, qw, x_scales=xs, a_dtype="float8e4m3", bias=bias, activation="gelu",
                         out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.parametrize("a,b,group,bm,split", [("float8e4m3", "uint4", 128, 128, 1), ("int8", "int8", 0, 64, 2)])
def test_act8_wgmma_warp_specialized(monkeypatch, a, b, group, bm, split):
    """The producer warpgroup with 8-bit activations (two-level per k-tile accumulation for the grouped weight;
    split-K consumers on a named barrier). Built and compile-checked; enabled here for its GPU run."""
    import humming_cute.config as hconfig

    _sm90()
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)
    torch.manual_seed(bm + split)
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, block_m=bm, block_n=128,
                        block_k=128, warp_m=bm, warp_n=64, warp_k=128, stages=4, split_k=split, arch="sm_90a",
                        mainloop="sm90", warp_specialized=True)
    _check(a, b, group, "float32" if group == 0 else "float16", 333, 384, 1536, config=cfg)


@pytest.mark.parametrize("a,b,group,bm,bn", [("float8e4m3", "int4", 0, 128, 256), ("int8", "int8", 0, 64, 128),
                                             ("float8e4m3", "float8e4m3", 0, 64, 256)])
def test_act8_wgmma_two_atoms(a, b, group, bm, bn):
    """8-bit activations (channel weight scales, one accumulator per atom) with two 64-row weight atoms per
    warpgroup (warp_n=128)."""
    _sm90()
    torch.manual_seed(bm + bn)
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, block_m=bm, block_n=bn,
                        block_k=128, warp_m=bm, warp_n=128, warp_k=128, stages=3, arch="sm_90a", mainloop="sm90",
                        fp8_fast_accum=True)
    _check(a, b, group, "float32", 333, 1024, 1536, config=cfg)
