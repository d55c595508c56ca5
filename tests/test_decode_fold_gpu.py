"""GPU tests of the decode options `fold_offsets` (4-bit codes under their magic exponents straight into the
MMAs; offsets and zero points folded into each group's fp32 partial sum) and `rows8` (M <= 8: the m16 tile's rows
8-15 neither scaled per group nor reduced across K-split warps), against the reference on fresh random data with
poisoned outputs; and `a_rows8` (8 activation rows per pipeline stage, with the deeper pipelines that then fit)."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.arch import get_arch
from humming_cute.config import smem_bytes
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import quantize_weight

pytestmark = pytest.mark.gpu


def _cfg(a, b, group, m, bk, wk, split, cluster, fold, rows8, bias, a_rows8=False, stages=3):
    from humming_cute.arch import current_arch

    cfg = hc.GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, has_bias=bias, block_m=16, block_n=64,
                        block_k=bk, warp_m=16, warp_n=64, warp_k=wk, stages=stages, split_k=split,
                        cluster_split_k=cluster, two_level_scales=True, fold_offsets=fold, rows8=rows8,
                        a_rows8=a_rows8, arch=current_arch().target)
    while smem_bytes(cfg) > get_arch(cfg.arch).smem_per_block_bytes and cfg.stages > 2:
        cfg = cfg.with_(stages=cfg.stages - 1)       # small groups: more scale rows per stage
    return cfg.validate()


def _check(a, b, group, scale, m, n, k, cfg, seed, *, scale_outliers=False):
    """The GEMM with `cfg` against the reference and against the same tiling without the two options."""
    torch.manual_seed(seed)
    ad = getattr(torch, a)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=ad)
    if scale_outliers:       # activation outliers: offsets 1024 x the row sums sit far above the q x terms
        x[:, ::97] *= 300.0
    bias = torch.randn(n, device="cuda", dtype=ad) if cfg.has_bias else None
    out = torch.full((m, n), float("nan"), device="cuda", dtype=ad)
    y = hc.gemm(x, pw, bias=bias, out=out, config=cfg).clone()
    assert not torch.isnan(y).any(), "an output was never written"
    ref = reference_gemm(x, qw, bias=bias, out_dtype=torch.float32)
    tol = 2e-3 if a == "float16" else 1e-2
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < tol, f"relative error {rel:.3e}"
    plain_cfg = cfg.with_(fold_offsets=False, rows8=False, a_rows8=False)
    while smem_bytes(plain_cfg) > get_arch(cfg.arch).smem_per_block_bytes and plain_cfg.stages > 2:
        plain_cfg = plain_cfg.with_(stages=plain_cfg.stages - 1)     # (a_rows8's deeper pipelines)
    plain = hc.gemm(x, pw, bias=bias, config=plain_cfg)
    rel_plain = ((plain.float() - ref).norm() / ref.norm()).item()
    assert rel < max(2 * rel_plain, 5e-4), f"{rel:.3e} against {rel_plain:.3e} without the options"
    return y


@pytest.mark.parametrize("b,group,scale", [("uint4", 128, "float16"), ("int4", 32, "bfloat16"),
                                           ("uint4", 64, "float8e4m3"), ("int4", 256, "float16"),
                                           ("uint4", 512, "float32")])
@pytest.mark.parametrize("m", [1, 5, 8, 16])
@pytest.mark.parametrize("bk,wk,split,cluster", [(1024, 128, 1, False), (512, 128, 2, False), (256, 64, 1, False),
                                                 (512, 128, 2, True), (1024, 64, 1, False)])
def test_fold_offsets(b, group, scale, m, bk, wk, split, cluster):
    """fold_offsets (with rows8 where M <= 8): groups smaller than, equal to and larger than a warp's k-range,
    K-split warps, split-K through the workspace and inside a cluster; zero points and symmetric codes."""
    if cluster and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    cfg = _cfg("float16", b, group, m, bk, wk, split, cluster, True, m <= 8, m % 2 == 1)
    _check("float16", b, group, scale, m, 320, 4096, cfg, m + bk + group)


@pytest.mark.parametrize("a,b,group", [("float16", "uint8", 128), ("bfloat16", "uint4", 128),
                                       ("bfloat16", "float4e2m1", 32), ("float16", "int3", 64)])
@pytest.mark.parametrize("m", [1, 8])
def test_rows8(a, b, group, m):
    """rows8 alone (formats fold_offsets does not take, both activation types), with K-split warps; and its
    launch check: more than 8 rows raise before launching."""
    cfg = _cfg(a, b, group, m, 512, 128, 1, False, False, True, m == 1)
    scale = "ue8m0" if b == "float4e2m1" else a
    _check(a, b, group, scale, m, 384, 2048, cfg, m + group)
    qw = quantize_weight(torch.randn(384, 2048, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(9, 2048, device="cuda", dtype=getattr(torch, a))
    with pytest.raises(ValueError, match="at most 8 rows"):
        hc.gemm(x, pw, bias=torch.zeros(384, device="cuda", dtype=x.dtype) if cfg.has_bias else None, config=cfg)


def test_fold_offsets_outliers():
    """Activation outliers (x300 on every 97th channel): the folded offsets stay within the dense tolerance."""
    for b in ("uint4", "int4"):
        cfg = _cfg("float16", b, 128, 1, 1024, 128, 1, False, True, True, False)
        _check("float16", b, 128, "float16", 1, 512, 8192, cfg, 3, scale_outliers=True)


@pytest.mark.parametrize("m", [1, 4, 8, 16])
@pytest.mark.parametrize("shape", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)])
def test_decode_defaults_with_switches(monkeypatch, m, shape):
    """The default decode configs of the four bench shapes with `FOLD_OFFSETS` and `DECODE_ROWS8` on, through
    `hc.gemm`'s default path (uint4 g128, fp16)."""
    import humming_cute.ops as ops
    import humming_cute.tune.heuristics as heur
    from humming_cute.arch import current_arch

    monkeypatch.setattr(heur, "FOLD_OFFSETS", True)
    monkeypatch.setattr(heur, "DECODE_ROWS8", True)
    ops._DEFAULTS.clear()
    n, k = shape
    torch.manual_seed(m + n)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    cfg = heur.default_config(m, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                              group_size=128, arch=current_arch().target)
    assert cfg.fold_offsets and cfg.rows8 == (m <= 8)
    y = hc.gemm(x, pw)
    ops._DEFAULTS.clear()
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3


@pytest.mark.parametrize("b,group,scale,fold", [("uint4", 128, "float16", True), ("int4", 32, "bfloat16", True),
                                                ("uint8", 128, "float16", False), ("int3", 64, "float16", False)])
@pytest.mark.parametrize("m", [1, 5, 8])
@pytest.mark.parametrize("bk,wk,split,cluster,stages", [(1024, 128, 1, False, 4), (512, 128, 2, False, 4),
                                                        (256, 64, 1, False, 5), (512, 128, 2, True, 4)])
def test_a_rows8(b, group, scale, fold, m, bk, wk, split, cluster, stages):
    """a_rows8: 8 activation rows per stage (the m16 MMA's rows 8-15 read rows 0-7 again) with the deeper
    pipelines that then fit, with and without fold_offsets, K-split warps, split-K and cluster split-K."""
    if cluster and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    cfg = _cfg("float16", b, group, m, bk, wk, split, cluster, fold, True, m % 2 == 1, a_rows8=True,
               stages=stages)
    _check("float16", b, group, scale, m, 320, 4096, cfg, m + bk + group + stages)


@pytest.mark.parametrize("m", [1, 8])
@pytest.mark.parametrize("shape", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)])
def test_decode_defaults_a_rows8(monkeypatch, m, shape):
    """The default decode configs with `DECODE_ROWS8` and `DECODE_A_ROWS8` on (and fold_offsets): uint4 g128,
    fp16, through `hc.gemm`'s default path."""
    import humming_cute.ops as ops
    import humming_cute.tune.heuristics as heur
    from humming_cute.arch import current_arch

    for name in ("FOLD_OFFSETS", "DECODE_ROWS8", "DECODE_A_ROWS8"):
        monkeypatch.setattr(heur, name, True)
    ops._DEFAULTS.clear()
    n, k = shape
    torch.manual_seed(m + n + 1)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    cfg = heur.default_config(m, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                              group_size=128, arch=current_arch().target)
    assert cfg.a_rows8 and cfg.rows8
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.gemm(x, pw, out=out)
    ops._DEFAULTS.clear()
    assert not torch.isnan(y).any()
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3
