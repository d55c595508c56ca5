"""GPU tests of `warp_pipeline` (each K-split warp copies and waits for its own slices of a k-tile; no CTA barrier
in the main loop): against the reference on fresh random data with poisoned outputs, and bitwise against the same
tile with the CTA-wide copies (only the synchronisation differs, so must the results not)."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.arch import current_arch, get_arch
from humming_cute.config import smem_bytes
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import quantize_weight

pytestmark = pytest.mark.gpu


def _fit(cfg):
    while smem_bytes(cfg) > get_arch(cfg.arch).smem_per_block_bytes and cfg.stages > 2:
        cfg = cfg.with_(stages=cfg.stages - 1)
    return cfg


def _run(a, b, group, scale, m, n, k, cfg, seed, *, bitwise: bool = True):
    """`cfg` against the reference; and against the same tile without the option under test: bitwise
    (`warp_pipeline`: only the synchronisation differs), or within 2x its error (`swap_ab`: other MMA operands)."""
    torch.manual_seed(seed)
    ad = getattr(torch, a)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=ad)
    bias = torch.randn(n, device="cuda", dtype=ad) if cfg.has_bias else None
    out = torch.full((m, n), float("nan"), device="cuda", dtype=ad)
    y = hc.gemm(x, pw, bias=bias, out=out, config=cfg).clone()
    assert not torch.isnan(y).any(), "an output was never written"
    ref = reference_gemm(x, qw, bias=bias, out_dtype=torch.float32)
    tol = 2e-3 if a == "float16" else 1e-2
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < tol, f"relative error {rel:.3e}"
    if bitwise:
        cta = hc.gemm(x, pw, bias=bias, config=cfg.with_(warp_pipeline=False))
        assert torch.equal(y, cta), "differs from the same tile with CTA-wide copies"
    else:
        plain = hc.gemm(x, pw, bias=bias, config=cfg.with_(swap_ab=False))
        rel_plain = ((plain.float() - ref).norm() / ref.norm()).item()
        assert rel < max(2 * rel_plain, 5e-4), f"{rel:.3e} against {rel_plain:.3e} without the swap"


FORMATS = [("float16", "uint4", 128, "float16"), ("float16", "int4", 32, "bfloat16"),
           ("float16", "int8", 0, "float16"), ("bfloat16", "uint4", 64, "float32"),
           ("float16", "float4e2m1", 32, "ue8m0"), ("float16", "uint3", 128, "float16"),
           ("bfloat16", "uint2", 128, "bfloat16"), ("float16", "float8e4m3", 0, "float16")]


@pytest.mark.parametrize("a,b,group,scale", FORMATS)
@pytest.mark.parametrize("m", [1, 7, 16])
@pytest.mark.parametrize("bk,wk,split,cluster,two_level", [(1024, 128, 1, False, True), (512, 128, 2, True, True),
                                                           (256, 64, 1, False, False), (512, 128, 2, False, True),
                                                           (256, 128, 1, False, False)])
def test_warp_pipeline(a, b, group, scale, m, bk, wk, split, cluster, two_level):
    """Dense decode tiles with per-warp pipelines: K-split warps of 64 / 128, split-K in a cluster and through the
    workspace, two-level and per-pair scales, zero points, channel scales, bias on odd M."""
    if cluster and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    wk = max(wk, group)         # warp_pipeline: a warp's k-range holds whole scale groups
    cfg = _fit(hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=m % 2 == 1, block_m=16,
                             block_n=64, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=4, split_k=split,
                             cluster_split_k=cluster, two_level_scales=two_level and group > 0,
                             warp_pipeline=True, arch=current_arch().target)).validate()
    _run(a, b, group, scale, m, 320, 4096, cfg, m + bk + wk + split + (group or 1))


@pytest.mark.parametrize("a,b,group,scale", FORMATS[:4])
@pytest.mark.parametrize("m", [17, 32])
@pytest.mark.parametrize("bk,wk,split,cluster", [(512, 128, 1, False), (256, 64, 1, False), (512, 128, 2, True)])
def test_warp_pipeline_bm32(a, b, group, scale, m, bk, wk, split, cluster):
    """32-row decode tiles (M 17-32: two m16 tiles per warp) with per-warp pipelines."""
    wk = max(wk, group)
    cfg = _fit(hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=m % 2 == 1, block_m=32,
                             block_n=64, block_k=bk, warp_m=32, warp_n=64, warp_k=wk, stages=3, split_k=split,
                             cluster_split_k=cluster, two_level_scales=group > 0, warp_pipeline=True,
                             arch=current_arch().target)).validate()
    _run(a, b, group, scale, m, 320, 4096, cfg, m + bk + split)


@pytest.mark.parametrize("m", [1, 8])
def test_warp_pipeline_rows8(m):
    """With rows8 / a_rows8 (8 activation rows per stage) and fold_offsets."""
    for extra in (dict(rows8=True), dict(rows8=True, a_rows8=True, stages=4), dict(rows8=True, fold_offsets=True)):
        cfg = _fit(hc.GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                                 block_m=16, block_n=64, block_k=1024, warp_m=16, warp_n=64, warp_k=128,
                                 **{"stages": 3, **extra}, two_level_scales=True, warp_pipeline=True,
                                 arch=current_arch().target)).validate()
        _run("float16", "uint4", 128, "float16", m, 256, 8192, cfg, m + len(extra))


@pytest.mark.parametrize("m", [1, 16, 32])
@pytest.mark.parametrize("shape", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)])
@pytest.mark.parametrize("b,group", [("uint4", 128), ("int8", 0)])
def test_warp_pipeline_default_tiles(m, shape, b, group):
    """The default decode tiles of the bench shapes with warp_pipeline switched on (where they take it)."""
    from humming_cute.tune.heuristics import default_config

    n, k = shape
    base = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=group,
                          arch=current_arch().target)
    assert base.mainloop == "sm80"
    # a tile with warps across N (28672 x 4096 int8) is narrowed to one warp column, as the option needs
    cfg = base.with_(block_n=base.warp_n, warp_pipeline=True).validate()
    _run("float16", b, group, "float16", m, n, k, cfg, m + n + k)


SWAP_FORMATS = [("float16", "uint4", 128, "float16"), ("bfloat16", "int4", 32, "bfloat16"),
                ("float16", "int8", 0, "float16"), ("float16", "float4e2m1", 32, "ue8m0"),
                ("bfloat16", "uint3", 64, "float32"), ("float16", "uint8", 128, "float16")]


@pytest.mark.parametrize("a,b,group,scale", SWAP_FORMATS)
@pytest.mark.parametrize("m", [1, 5, 8])
@pytest.mark.parametrize("bk,wk,split,cluster,two_level,wpipe", [(1024, 128, 1, False, True, True),
                                                                 (512, 128, 2, True, True, False),
                                                                 (256, 64, 1, False, False, True),
                                                                 (512, 128, 2, False, True, True),
                                                                 (512, 128, 1, False, False, False)])
def test_swap_ab(a, b, group, scale, m, bk, wk, split, cluster, two_level, wpipe):
    """swap_ab (weights as the MMA's A operand, the 8 live activation rows as B) at M <= 8: two-level and per-pair
    group scales, channel scales, zero points, a float format's deferred exponent factor (fp16, two-level), K-split
    warps with and without per-warp pipelines, split-K in a cluster and through the workspace; against the reference
    and within 2x the error of the same tile without the swap."""
    if cluster and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    wk = max(wk, group) if wpipe else wk
    cfg = _fit(hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=m % 2 == 1, block_m=16,
                             block_n=64, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=4, split_k=split,
                             cluster_split_k=cluster, two_level_scales=two_level and group > 0, rows8=True,
                             swap_ab=True, warp_pipeline=wpipe, arch=current_arch().target)).validate()
    _run(a, b, group, scale, m, 320, 4096, cfg, m + bk + wk + split + (group or 1), bitwise=False)


@pytest.mark.parametrize("shape", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)])
def test_swap_ab_default_tiles(shape):
    """The default decode tiles of the bench shapes (uint4 g128 and int8 channel, M = 1 and 8) with rows8 + swap_ab."""
    from humming_cute.tune.heuristics import default_config

    n, k = shape
    for b, group in (("uint4", 128), ("int8", 0)):
        for m in (1, 8):
            base = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=group,
                                  arch=current_arch().target)
            cfg = base.with_(rows8=True, swap_ab=True).validate()
            torch.manual_seed(m + n + k)
            qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, "float16")
            pw = hc.prepare_weight(qw, "float16")
            x = torch.randn(m, k, device="cuda", dtype=torch.float16)
            out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
            y = hc.gemm(x, pw, out=out, config=cfg)
            ref = reference_gemm(x, qw, out_dtype=torch.float32)
            assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3, (b, m)


@pytest.mark.parametrize("a,b,group,scale", FORMATS[:5])
@pytest.mark.parametrize("m", [1, 7, 16])
@pytest.mark.parametrize("bn,bk,wk,split,cluster", [(128, 256, 64, 1, False), (256, 256, 128, 1, False),
                                                    (128, 512, 128, 2, True), (128, 256, 128, 2, False)])
def test_warp_pipeline_warps_n(a, b, group, scale, m, bn, bk, wk, split, cluster):
    """Warps across N with per-warp pipelines (each warp column its own copy of the activation slice): against the
    reference and bitwise equal to the CTA-wide copies."""
    if cluster and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    wk = max(wk, group)
    cfg = _fit(hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=m % 2 == 1, block_m=16,
                             block_n=bn, block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=4, split_k=split,
                             cluster_split_k=cluster, two_level_scales=group > 0, warp_pipeline=True,
                             arch=current_arch().target)).validate()
    _run(a, b, group, scale, m, 512, 4096, cfg, m + bn + bk + wk + split)


LB_FORMATS = [("float16", "int4", 128, "float16"), ("float16", "float4e2m1", 32, "ue8m0"),
              ("bfloat16", "uint4", 128, "bfloat16"), ("bfloat16", "uint3", 64, "float32"),
              ("float16", "uint5", 128, "float16"), ("float16", "int2", 32, "float16")]


@pytest.mark.parametrize("a,b,group,scale", LB_FORMATS)
@pytest.mark.parametrize("m", [1, 8])
@pytest.mark.parametrize("shape", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)])
def test_swap_ab_defaults_with_launch_bounds(a, b, group, scale, m, shape):
    """The decode defaults of <= 5-bit formats other than fp16 x uint4 at M <= 8 (swap_ab with launch bounds of one
    CTA per SM) on the bench shapes: against the reference and within 2x the error of the unswapped tile."""
    from humming_cute.tune.heuristics import default_config

    n, k = shape
    cfg = default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, arch=current_arch().target)
    if current_arch().sm == 90:
        assert cfg.swap_ab == cfg.warp_pipeline and cfg.launch_min_blocks == cfg.swap_ab, cfg
    if not cfg.swap_ab:   # (other archs, tiles with warps across N: the same tile swapped)
        cfg = cfg.with_(rows8=True, swap_ab=True, launch_min_blocks=1).validate()
    _run(a, b, group, scale, m, n, k, cfg, m + n + k + group, bitwise=False)


@pytest.mark.parametrize("b,group", [("int8", 0), ("uint8", 128), ("int6", 128)])
@pytest.mark.parametrize("m", [1, 5, 16])
def test_one_wave_decode_defaults(b, group, m):
    """6-8 bit decode defaults at 28672 x 4096 (2 stages, so the 224-CTA grid is one wave on sm_90) against the
    reference, and bitwise equal to the same tile with the stages that fit (only the pipeline depth differs)."""
    from humming_cute.tune.heuristics import default_config

    n, k = 28672, 4096
    cfg = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=group,
                         arch=current_arch().target)
    if current_arch().sm == 90:
        assert cfg.stages == 2, cfg
    torch.manual_seed(m + group)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, "float16")
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(x, pw, out=out, config=cfg).clone()
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3
    deep = _fit(cfg.with_(stages=4))
    assert torch.equal(y, hc.gemm(x, pw, config=deep)), "differs from the deeper pipeline"
