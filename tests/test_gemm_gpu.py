"""GPU tests of the mma.sync mixed-input GEMM against the reference oracle (marked `gpu`).

Coverage is a covering design rather than the full cross product (each kernel variant costs a compile):
every weight type x both activation types once, with group size, scale dtype, global scale and bias rotating;
an M x shape sweep on representative formats; every scale dtype; and an exhaustive per-code check of the
in-kernel dequant (an identity activation reads the dequantized weight back exactly).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import humming_cute as hc
from humming_cute import dtypes as dt
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import QuantizedWeight, dequantize_weight, quantize_weight, scale_torch_dtype

pytestmark = pytest.mark.gpu

ACTS = ["float16", "bfloat16"]
INT_TYPES = [f"int{b}" for b in range(1, 9)] + [f"uint{b}" for b in range(1, 9)]
FLOAT_TYPES = ["float4e2m1", "float6e3m2", "float6e2m3", "float8e4m3", "float8e5m2", "float4e1m2", "float4e3m0",
               "float7e2m4", "float5e2m2", "float8e2m5"]
SCALES = ["float16", "bfloat16", "float8e4m3", "float8e5m2", "ue8m0", "float32"]
TOL = {"float16": 2e-3, "bfloat16": 1e-2}


def _legal(a, b):
    return dt.is_legal_pair(a, b)


def run_case(a, b, group, scale_dtype, m, n, k, *, global_scale=False, bias=False, seed=0, config=None):
    torch.manual_seed(seed)
    dev = "cuda"
    ad = getattr(torch, a)
    w = torch.randn(n, k, device=dev)
    qw = quantize_weight(w, b, group, scale_dtype, global_scale=global_scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device=dev, dtype=ad)
    bv = torch.randn(n, device=dev, dtype=ad) if bias else None
    out = torch.full((m, n), float("nan"), device=dev, dtype=ad)  # poisoned: an unwritten element fails
    y = hc.gemm(x, pw, bias=bv, out=out, config=config)
    torch.cuda.synchronize()
    ref = reference_gemm(x, qw, bias=bv, out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "NaN in the output (unwritten element or overflow)"
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel <= TOL[a], f"relative error {rel:.3e} > {TOL[a]}"
    # elementwise bound: a few ulps of the output type on top of the norm-relative error
    bound = 8 * TOL[a] * ref.abs().max().item() + 1e-3
    assert (y.float() - ref).abs().max().item() <= bound
    return rel


# ---- every weight type x both activation types (covering design for the other options)
_TYPE_CASES = []
for i, (a, b) in enumerate(itertools.product(ACTS, INT_TYPES + FLOAT_TYPES)):
    if not _legal(a, b):
        continue
    groups = [0, 32, 64, 128]
    g = groups[i % 4]
    if b.startswith("uint") and g == 0:
        g = 128
    s = SCALES[i % len(SCALES)]
    if s == "ue8m0" and b.startswith("int1"):
        s = "float16"
    _TYPE_CASES.append((a, b, g, s, bool(i % 2), bool((i // 2) % 2)))


@pytest.mark.parametrize("a,b,group,scale,glob,bias", _TYPE_CASES)
def test_every_weight_type(a, b, group, scale, glob, bias):
    run_case(a, b, group, scale, 7, 256, 512, global_scale=glob, bias=bias)


# ---- M x shapes on representative formats
_SWEEP = [("float16", "uint4", 128, "float16"), ("bfloat16", "uint4", 128, "bfloat16"),
          ("float16", "int4", 0, "float16"), ("bfloat16", "int8", 64, "bfloat16"),
          ("float16", "float4e2m1", 32, "float8e4m3"), ("bfloat16", "float8e4m3", 0, "float32")]
_SHAPES = [(256, 512), (4096, 4096), (8192, 8192), (200, 352)]


# 8192 x 8192 runs at M in (1, 16, 333) only, to bound the test time
_MNK = [(m, n, k) for (n, k) in _SHAPES for m in [1, 7, 16, 64, 333, 1024]
        if (n, k) != (8192, 8192) or m in (1, 16, 333)]


@pytest.mark.parametrize("a,b,group,scale", _SWEEP)
@pytest.mark.parametrize("m,n,k", _MNK)
def test_m_and_shapes(a, b, group, scale, m, n, k):
    if group and k % group:
        group = 32
    run_case(a, b, group, scale, m, n, k, global_scale=(b == "float4e2m1"), bias=(m % 2 == 1))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("a", ACTS)
def test_scale_dtypes(a, scale):
    run_case(a, "uint4", 128, scale, 16, 512, 1024)
    run_case(a, "float4e2m1", 32, scale, 16, 512, 1024, global_scale=True)


def test_two_d_block_scales():
    torch.manual_seed(3)
    w = torch.randn(384, 512, device="cuda")
    qw = quantize_weight(w, "float8e4m3", (128, 128), "float32")
    pw = hc.prepare_weight(qw, "bfloat16")
    x = torch.randn(33, 512, device="cuda", dtype=torch.bfloat16)
    y = hc.gemm(x, pw)
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2


# ---- exhaustive dequant check on the GPU: x = identity reads dequant(W)^T back exactly
@pytest.mark.parametrize("a", ACTS)
@pytest.mark.parametrize("b", INT_TYPES + FLOAT_TYPES)
def test_dequant_every_code_exact(a, b):
    if not _legal(a, b):
        pytest.skip(f"{a} x {b} is an illegal pair (tested in test_dtypes)")
    t = dt.parse_dtype(b)
    codes = torch.tensor(t.valid_codes(), dtype=torch.uint8)
    k = 256
    n = 64
    reps = -(-(n * k) // len(codes))
    c = codes.repeat(reps)[: n * k].reshape(n, k)
    c = c[:, torch.randperm(k)].contiguous().cuda()
    sdt = scale_torch_dtype("float16")
    if t.is_integer and not t.signed:
        z = torch.randint(0, 1 << t.bits, (n, k // 64), dtype=torch.uint8, device="cuda")
        qw = QuantizedWeight(c, t, torch.ones(n, k // 64, dtype=sdt, device="cuda"), "float16", 64, z)
    else:
        qw = QuantizedWeight(c, t, torch.ones(n, k // 64, dtype=sdt, device="cuda"), "float16", 64)
    ad = getattr(torch, a)
    pw = hc.prepare_weight(qw, a)
    eye = torch.eye(k, dtype=ad, device="cuda")
    y = hc.gemm(eye, pw, out=torch.full((k, n), float("nan"), dtype=ad, device="cuda"))
    want = dequantize_weight(qw, torch.float64).t()
    assert torch.equal(y.double(), want.to(ad).double()), "in-kernel dequant differs from dequantize_weight"


# ---- the layer: float weight quantized on load, slices via offset_n, explicit shapes, padding, bias
def test_layer_slices_and_shapes():
    torch.manual_seed(5)
    n1, n2, k = 192, 136, 704
    layer = hc.HummingLayer(n1 + n2, k, dt.float16, dt.uint4, dt.float16, dt.float16, weight_scale_group_size=64,
                            has_bias=True).cuda()
    w1, w2 = torch.randn(n1, k, device="cuda"), torch.randn(n2, k, device="cuda")
    bias = torch.randn(n1 + n2, device="cuda", dtype=torch.float16)
    layer.load_weight(w1, offset_n=0)
    layer.load_weight(w2, offset_n=n1)
    layer.load_weight(bias=bias)
    layer.finish_load()
    x = torch.randn(2, 5, k, device="cuda", dtype=torch.float16)
    ref = reference_gemm(x.reshape(-1, k), layer.quantized_weight(), bias=bias, out_dtype=torch.float32)
    for kw in ({}, dict(block_shape=(64, 64, 64), warp_shape=(64, 64, 64)),
               dict(block_shape=(16, 128, 64), warp_shape=(16, 64, 64), stages=3)):
        y = layer(x, **kw)
        assert y.shape == (2, 5, n1 + n2)
        assert ((y.reshape(-1, n1 + n2).float() - ref).norm() / ref.norm()).item() < 2e-3


def test_layer_prepacked_codes():
    torch.manual_seed(6)
    n, k = 256, 512
    qw = quantize_weight(torch.randn(n, k, device="cuda"), "int3", 128, "bfloat16")
    layer = hc.HummingLayer(n, k, dt.bfloat16, dt.int3, dt.bfloat16, dt.bfloat16, 128).cuda()
    layer.load_weight(hc.pack(qw.codes, 3), weight_scale=qw.scales, packed=True)
    layer.finish_load()
    x = torch.randn(9, k, device="cuda", dtype=torch.bfloat16)
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((layer(x).float() - ref).norm() / ref.norm()).item() < 1e-2


def test_wrong_inputs_raise_before_launch():
    qw = quantize_weight(torch.randn(128, 256, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    with pytest.raises(TypeError, match="float16"):
        hc.gemm(torch.randn(4, 256, device="cuda", dtype=torch.bfloat16), pw)
    with pytest.raises(ValueError, match="K=128"):
        hc.gemm(torch.randn(4, 128, device="cuda", dtype=torch.float16), pw)
    with pytest.raises(ValueError, match="CPU"):
        hc.gemm(torch.randn(4, 256, dtype=torch.float16), hc.prepare_weight(qw.to("cpu"), "float16"))
    with pytest.raises(ValueError, match="bias"):
        hc.gemm(torch.randn(4, 256, device="cuda", dtype=torch.float16), pw,
                bias=torch.zeros(7, device="cuda", dtype=torch.float16))


# ---- k-tiles split across warps (partial sums added in shared memory), groups below / between / above WK
@pytest.mark.parametrize("a,b,group", [("float16", "uint4", 32), ("float16", "uint4", 128), ("bfloat16", "int4", 0),
                                       ("float16", "float4e2m1", 64), ("bfloat16", "uint3", 256),
                                       ("float16", "int8", 128)])
@pytest.mark.parametrize("m", [1, 16, 29, 64])
def test_warp_k_split(a, b, group, m):
    from humming_cute.arch import current_arch

    bm = 16 if m <= 16 else 32 if m <= 32 else 64
    bn, bk = (128, 256) if bm <= 32 else (64, 128)
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=(m % 2 == 1), block_m=bm,
                        block_n=bn, block_k=bk, warp_m=min(bm, 32), warp_n=64, warp_k=64, stages=3,
                        arch=current_arch().target)
    run_case(a, b, group, a, m, 384, 1024, bias=(m % 2 == 1), config=cfg)


# ---- two-level group scales for 16-bit activations (fp32 partial sum per group, scaled at the group's end)
_TWO_LEVEL = [("float16", "uint4", 128, "float16"), ("float16", "int4", 32, "bfloat16"),
              ("bfloat16", "uint4", 64, "bfloat16"), ("float16", "uint8", 128, "float16"),
              ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "int3", 256, "float32"),
              ("float16", "int2", 128, "float8e4m3")]


@pytest.mark.parametrize("a,b,group,scale", _TWO_LEVEL)
@pytest.mark.parametrize("m", [1, 16, 29])
@pytest.mark.parametrize("bk,wk,split", [(512, 128, 1), (256, 64, 1), (128, 64, 2)])
def test_two_level_scales(a, b, group, scale, m, bk, wk, split):
    """Groups smaller than, equal to and larger than a warp's k-range and the k-tile; K-split warps and split-K."""
    from humming_cute.arch import current_arch

    bm = 16 if m <= 16 else 32
    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=(m == 29), block_m=bm,
                        block_n=64, block_k=bk, warp_m=bm, warp_n=64, warp_k=wk, stages=3, split_k=split,
                        two_level_scales=True, arch=current_arch().target)
    run_case(a, b, group, scale, m, 320, 2048, bias=(m == 29), config=cfg, seed=m + bk)


# ---- split-K across CTAs: fp32 workspace, last CTA adds the partials in split order (deterministic)
@pytest.mark.parametrize("split", [2, 3, 5])
@pytest.mark.parametrize("m", [1, 7, 40])
def test_split_k(split, m):
    from humming_cute.arch import current_arch

    bm = 16 if m <= 16 else 64
    cfg = hc.GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                        has_bias=(m % 2 == 1), block_m=bm, block_n=64, block_k=256 if bm == 16 else 128,
                        warp_m=min(bm, 32), warp_n=64, warp_k=64, stages=3, split_k=split,
                        arch=current_arch().target)
    run_case("float16", "uint4", 128, "float16", m, 320, 2048, bias=(m % 2 == 1), config=cfg)
    # repeated launches reuse the arrival counters and give bitwise identical results
    torch.manual_seed(11)
    qw = quantize_weight(torch.randn(320, 2048, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, 2048, device="cuda", dtype=torch.float16)
    b = torch.randn(320, device="cuda", dtype=torch.float16) if m % 2 else None
    ys = [hc.gemm(x, pw, bias=b, config=cfg).clone() for _ in range(3)]
    assert all(torch.equal(ys[0], y) for y in ys[1:])



@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0")])
@pytest.mark.parametrize("split,m", [(2, 1), (4, 16), (3, 40), (8, 7)])
def test_cluster_split_k(a, b, group, scale, split, m):
    """Split-K inside a thread-block cluster (sm_90+): partials added by CTA 0 through distributed shared memory.
    Same summation order as the workspace split-K: the two agree bitwise."""
    from humming_cute.arch import current_arch

    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    bm = 16 if m <= 16 else 64
    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=m % 2 == 1, block_m=bm, block_n=64,
              block_k=128, warp_m=min(bm, 32), warp_n=64, warp_k=64, stages=3, split_k=split,
              arch=current_arch().target)
    cfg = hc.GemmConfig(**kw, cluster_split_k=True)
    run_case(a, b, group, scale, m, 320, 3072, bias=m % 2 == 1, config=cfg, seed=split + m)
    torch.manual_seed(12)
    qw = quantize_weight(torch.randn(320, 3072, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, 3072, device="cuda", dtype=getattr(torch, a))
    bias = torch.randn(320, device="cuda", dtype=getattr(torch, a)) if m % 2 else None
    y_cluster = hc.gemm(x, pw, bias=bias, config=cfg)
    y_global = hc.gemm(x, pw, bias=bias, config=hc.GemmConfig(**kw))
    assert torch.equal(y_cluster, y_global)


# ---- batch invariance: a row's result never depends on M or on the other rows
@pytest.mark.parametrize("b,group", [("uint4", 128), ("int8", 0), ("float4e2m1", 32)])
def test_batch_invariant_bitwise(b, group):
    torch.manual_seed(12)
    n, k = 1024, 4096
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group)
    pw = hc.prepare_weight(qw, "bfloat16")
    x = torch.randn(300, k, device="cuda", dtype=torch.bfloat16)
    full = hc.gemm(x, pw, batch_invariant=True)
    for lo, hi in ((0, 1), (0, 7), (0, 16), (0, 64), (50, 51), (100, 229), (299, 300)):
        part = hc.gemm(x[lo:hi], pw, batch_invariant=True)
        assert torch.equal(part, full[lo:hi]), f"rows {lo}:{hi} differ from the same rows in a batch of 300"
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((full.float() - ref).norm() / ref.norm()).item() < 1e-2


# ---- fp16 accumulation (use_f16_accum)
@pytest.mark.parametrize("b,group", [("uint4", 128), ("int4", 0), ("float4e2m1", 32)])
@pytest.mark.parametrize("m", [1, 16, 333])
def test_use_f16_accum(b, group, m):
    """fp16 in, fp16 accumulate, fp16 out. Tolerance 1e-2: K = 1024 products summed in fp16 (11-bit mantissa)
    instead of fp32 lose about sqrt(K) / 2^11 relative to the sum's magnitude in the worst rows."""
    torch.manual_seed(m)
    qw = quantize_weight(torch.randn(384, 1024, device="cuda"), b, group, "float16")
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, 1024, device="cuda", dtype=torch.float16)
    out = torch.full((m, 384), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(x, pw, out=out, use_f16_accum=True)
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert not torch.isnan(y).any()
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2
