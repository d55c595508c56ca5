"""GPU tests of the Hopper wgmma mainloop (TMA + mbarrier pipeline, register-dequantized weight as wgmma's A)
against the reference oracle (marked `gpu`; skipped on GPUs other than sm_90)."""

from __future__ import annotations

import pytest
import torch

from humming_cute.config import GemmConfig
from humming_cute.tune.heuristics import sm90_config

from test_gemm_gpu import run_case  # noqa: E402 (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_sm90():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 (H100/H200) only")


FORMATS = [  # weight type, group size, scale dtype
    ("int4", 128, "float16"),
    ("uint4", 128, "bfloat16"),
    ("int8", 0, "float16"),
    ("float4e2m1", 32, "ue8m0"),
    ("float8e4m3", 0, "float32"),
    ("uint3", 64, "float16"),
    ("int2", 128, "float8e4m3"),
    ("uint8", 128, "float16"),
]


def _cfg(a, b, g, m, n, k, **kw):
    return sm90_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, has_bias=kw.get("bias", False))


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
@pytest.mark.parametrize("b,group,scale", FORMATS)
@pytest.mark.parametrize("m", [1, 64, 333, 4096])
def test_wgmma_matches_reference(a, b, group, scale, m):
    n, k = 512, 1024
    bias = m % 2 == 1
    cfg = _cfg(a, b, group, m, n, k, bias=bias)
    assert cfg.mainloop == "sm90"
    run_case(a, b, group, scale, m, n, k, bias=bias, global_scale=(m == 333), config=cfg, seed=m)


@pytest.mark.parametrize("bm,bn,bk,stages", [(16, 64, 64, 4), (32, 256, 64, 3), (256, 128, 64, 3),
                                             (128, 128, 128, 3), (64, 64, 128, 2)])
def test_wgmma_tile_shapes(bm, bn, bk, stages):
    """Every warpgroup count and wgmma N, deep and shallow k-tiles, on a padded shape (N, K not tile multiples)."""
    cfg = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=64, block_m=bm,
                     block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk, stages=stages, arch="sm_90a",
                     mainloop="sm90")
    n = 440 if bn == 64 else 500          # padded to 448 / 512
    k = 960 if bk == 64 else 1024
    run_case("float16", "uint4", 64, "float16", 300, n, k, config=cfg, seed=bm + bn)


def test_default_config_takes_wgmma_for_prefill():
    """hc.gemm picks the wgmma mainloop by itself from M=64 on an sm_90 GPU."""
    rel = run_case("bfloat16", "uint4", 128, "bfloat16", 200, 1024, 2048)
    assert rel < 1e-2


@pytest.mark.parametrize("split,m,bm,bn", [(2, 64, 64, 64), (3, 200, 128, 128), (4, 1, 64, 64)])
def test_wgmma_split_k(split, m, bm, bn):
    """Split-K across CTAs on the wgmma mainloop (uneven split included), deterministic: two runs agree bitwise."""
    cfg = GemmConfig(a_dtype="bfloat16", b_dtype="int4", c_dtype="bfloat16", group_size=128, block_m=bm,
                     block_n=bn, block_k=64, warp_m=bm, warp_n=64, warp_k=64, stages=3, split_k=split,
                     arch="sm_90a", mainloop="sm90", has_bias=True)
    run_case("bfloat16", "int4", 128, "bfloat16", m, 384, 1280, config=cfg, seed=split, bias=True)
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    torch.manual_seed(1)
    pw = hc.prepare_weight(quantize_weight(torch.randn(384, 1280, device="cuda"), "int4", 128), "bfloat16")
    x = torch.randn(m, 1280, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(384, device="cuda", dtype=torch.bfloat16)
    assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=cfg))


@pytest.mark.parametrize("activation", ["silu", "gelu", "quick_gelu"])
@pytest.mark.parametrize("m", [150, 3000])
def test_wgmma_epilogue_activations(activation, m):
    """Built-in and custom activations on the wgmma path's transposed epilogue (M >= 64 takes it by default; M = 3000
    takes the two-atom default tile, `WGMMA_TWO_ATOMS`)."""
    import humming_cute as hc
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight

    torch.manual_seed(3)
    qw = quantize_weight(torch.randn(256, 512, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(m, 512, device="cuda", dtype=torch.float16)
    bias = torch.randn(256, device="cuda", dtype=torch.float16)
    cfg = sm90_config(m, 256, 512, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                      has_bias=True).with_(activation=activation)
    assert cfg.warp_n == (128 if m == 3000 else 64)
    y = hc.gemm(x, pw, bias=bias, activation=activation, config=cfg)
    ref = reference_gemm(x, qw, bias=bias, activation=activation, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,bk,stages,split", [(1, 64, 64, 128, 8, 1), (64, 64, 64, 128, 6, 2),
                                                     (333, 128, 128, 64, 4, 1), (4096, 256, 128, 64, 3, 1),
                                                     (200, 128, 128, 128, 3, 3)])
def test_wgmma_warp_specialized(a, b, group, scale, m, bm, bn, bk, stages, split):
    """A producer warpgroup issues the TMA loads, the consumers only dequantize and multiply (setmaxnreg moves
    registers to them); split-K synchronises the consumers by a named barrier."""

    if group and group < bk:
        bk = 64
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=bk,
                     warp_m=bm, warp_n=64, warp_k=bk, stages=stages, split_k=split, arch="sm_90a", mainloop="sm90",
                     warp_specialized=True, has_bias=m % 2 == 1)
    run_case(a, b, group, scale, m, 512, 1280 if bk == 64 else 1024, bias=m % 2 == 1, config=cfg, seed=m + bm)



@pytest.mark.parametrize("split,m,bm,bn,bk", [(2, 64, 64, 64, 128), (3, 200, 128, 128, 64), (4, 1, 64, 64, 64)])
def test_wgmma_cluster_split_k(split, m, bm, bn, bk):
    """Cluster split-K on the wgmma mainloop agrees with the reference and, bitwise, with the workspace split-K
    (same summation order)."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    kw = dict(a_dtype="bfloat16", b_dtype="int4", c_dtype="bfloat16", group_size=128,
              block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk, stages=3, split_k=split,
              arch="sm_90a", mainloop="sm90", has_bias=True)
    cfg = GemmConfig(**kw, cluster_split_k=True)
    run_case("bfloat16", "int4", 128, "bfloat16", m, 384, 1536, config=cfg, seed=split, bias=True)
    torch.manual_seed(2)
    pw = hc.prepare_weight(quantize_weight(torch.randn(384, 1536, device="cuda"), "int4", 128), "bfloat16")
    x = torch.randn(m, 1536, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(384, device="cuda", dtype=torch.bfloat16)
    assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=GemmConfig(**kw)))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,bk,stages,ctas", [(1, 64, 64, 128, 8, 132), (333, 128, 128, 64, 4, 5),
                                                    (4096, 128, 128, 128, 4, 132), (700, 64, 128, 128, 6, 1),
                                                    (2000, 256, 64, 64, 3, 7)])
def test_wgmma_persistent(a, b, group, scale, m, bm, bn, bk, stages, ctas):
    """A persistent grid of `ctas` CTAs walks the tiles (down to one CTA taking them all): agrees with the
    reference and, bitwise, with one CTA per tile (same k order); the pipeline carries on across tiles, so an
    uneven split of tiles over CTAs and tiles of several shapes end correctly."""

    _check_option(a, b, group, scale, m, 640, bm, bn, bk, stages, dict(warp_specialized=True),
                  dict(persistent_ctas=ctas), m + ctas)


def _check_option(a, b, group, scale, m, n, bm, bn, bk, stages, base_kw, option_kw, seed):
    """A wgmma config with `option_kw` on top of `base_kw`: against the reference (run_case), and bitwise against
    the same config without the option (same data, same k order). block_k drops to 64 for groups under it."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    if group and group < bk:
        bk = 64
    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=bk, warp_m=bm,
              warp_n=64, warp_k=bk, stages=stages, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1, **base_kw)
    cfg = GemmConfig(**kw, **option_kw)
    k = 1280 if bk == 64 else 1024
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg, seed=seed)
    torch.manual_seed(m)
    dt = getattr(torch, a)
    pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
    x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt) if m % 2 == 1 else None
    assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=GemmConfig(**kw)))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0")])
@pytest.mark.parametrize("m,n,bm,bn,extra", [(1, 640, 64, 64, {}), (333, 604, 128, 128, {}),
                                             (4096, 640, 256, 128, {}), (200, 640, 128, 128, {"split_k": 2}),
                                             (700, 600, 128, 128, {"warp_specialized": True, "persistent_ctas": 5})])
@pytest.mark.parametrize("offset_out", [False, True])
def test_wgmma_staged_store(a, b, group, scale, m, n, bm, bn, extra, offset_out):
    """staged_store: C goes through shared memory and leaves in 16-byte row vectors where N is a multiple of 8
    and C's base is 16-byte aligned, else element by element (N = 604, an output view one element into its
    buffer); agrees with the reference and bitwise with the direct store, also with split-K and the persistent
    grid."""
    import humming_cute as hc
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight

    bk = 64
    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=bk, warp_m=bm,
              warp_n=64, warp_k=bk, stages=3, arch="sm_90a", mainloop="sm90", has_bias=True, activation="silu",
              **extra)
    cfg = GemmConfig(**kw, staged_store=True)
    torch.manual_seed(m + n)
    dt = getattr(torch, a)
    k = 1280
    w = torch.randn(n, k, device="cuda")
    qw = quantize_weight(w, b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt)
    buf = torch.full((m * n + 1,), float("nan"), device="cuda", dtype=dt)
    out = (buf[1:] if offset_out else buf[:-1]).view(m, n)       # poisoned; unaligned base when offset
    y = hc.gemm(x, pw, bias=bias, out=out, config=cfg, activation="silu")
    ref = reference_gemm(x, qw, bias=bias, activation="silu", out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output element was never written"
    assert ((y.float() - ref).norm() / ref.norm()).item() < (2e-3 if a == "float16" else 1e-2)
    assert torch.equal(y, hc.gemm(x, pw, bias=bias, config=GemmConfig(**kw), activation="silu"))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,bk,stages,cn,extra", [
    (1, 16, 64, 64, 6, 4, {}), (333, 128, 128, 64, 4, 2, {}), (4096, 128, 128, 64, 4, 2, {"warp_specialized": True}),
    (700, 64, 128, 128, 4, 2, {"warp_specialized": True, "persistent_ctas": 6}),
    (2000, 256, 64, 64, 3, 4, {"warp_specialized": True, "persistent_ctas": 8}),
    (97, 64, 64, 128, 4, 2, {"staged_store": True}),
    (64, 64, 64, 128, 4, 2, {"split_k": 2, "cluster_split_k": True}),
    (5, 16, 64, 128, 4, 4, {"split_k": 2, "cluster_split_k": True})])
def test_wgmma_cluster_n(a, b, group, scale, m, bm, bn, bk, stages, cn, extra):
    """cluster_n: clusters of cn CTAs share one activation tile, each loading 1/cn of it by TMA multicast; agrees
    with the reference and bitwise with cn = 1 (same data, same k order), also with the producer warpgroup, a
    persistent grid (clusters walk the tiles), the staged store and split-K inside a (cn, 1, split) cluster; 16-row
    tiles split 4 ways."""

    _check_option(a, b, group, scale, m, 1024, bm, bn, bk, stages, extra, dict(cluster_n=cn), m + cn)


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0")])
@pytest.mark.parametrize("m,n,bm,bn,extra", [(1, 640, 64, 64, {}), (333, 604, 128, 128, {}),
                                             (4096, 640, 256, 128, {}), (200, 640, 128, 128, {"split_k": 2}),
                                             (700, 600, 128, 128, {"warp_specialized": True, "persistent_ctas": 5}),
                                             (77, 256, 32, 128, {}), (333, 1240, 128, 256, {"warp_n": 128}),
                                             (700, 1000, 128, 256, {"warp_n": 128, "warp_specialized": True,
                                                                    "persistent_ctas": 5}),
                                             (333, 640, 128, 128, {"warp_specialized": True, "stages": 6})])
@pytest.mark.parametrize("activation", ["silu_glu", "custom"])
def test_wgmma_glu_staged(a, b, group, scale, m, n, bm, bn, extra, activation):
    """GLU epilogues on the wgmma mainloop: raw fp32 accumulators staged in shared memory, gate / up pairs combined in
    the copy and stored as 16-byte vectors (N / 2 = 302: element stores), built-in and custom GLU, bias; against the
    reference and close to the mma.sync GLU epilogue, also with split-K and the persistent grid; every output
    written."""
    import humming_cute as hc
    from humming_cute import activations as act
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight


    def swiglu_clamped(gate, up):
        return act.silu(act.minimum(gate, 7.0)) * up

    fn = swiglu_clamped if activation == "custom" else activation
    _, act_fn, _ = act.resolve(fn, True)
    name = "custom" if activation == "custom" else "silu_glu"
    bk = 64
    kw = {**dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=bk, warp_m=bm,
                 warp_n=64, warp_k=bk, stages=3, arch="sm_90a", mainloop="sm90", has_bias=True, activation=name,
                 custom_activation=act_fn, glu=True), **extra}
    cfg = GemmConfig(**kw, staged_store=True)
    while smem_bytes(cfg) > get_arch("sm_90a").smem_per_block_bytes:   # the fp32 staging tiles take stages
        cfg = cfg.with_(stages=cfg.stages - 1)
    torch.manual_seed(m + n)
    dt = getattr(torch, a)
    k = 1280
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt)
    out = torch.full((m, n // 2), float("nan"), device="cuda", dtype=dt)
    y = hc.gemm(x, pw, bias=bias, out=out, config=cfg, activation=fn, glu=True)
    ref = reference_gemm(x, qw, bias=bias, activation=fn, glu=True, out_dtype=torch.float32)
    assert y.shape == (m, n // 2) and not torch.isnan(y).any(), "an output element was never written"
    tol = 2e-3 if a == "float16" else 1e-2
    assert ((y.float() - ref).norm() / ref.norm()).item() < tol
    y80 = hc.gemm(x, pw, bias=bias, activation=fn, glu=True)             # the mma.sync GLU epilogue
    assert ((y.float() - y80.float()).norm() / y80.float().norm()).item() < tol


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,stages,extra", [
    (333, 128, 256, 4, {}), (1, 64, 128, 4, {}), (700, 16, 512, 3, {}),
    (4096, 128, 256, 4, dict(warp_specialized=True, persistent_ctas=132)),
    (300, 128, 256, 4, dict(warp_specialized=True)), (2000, 128, 256, 4, dict(warp_specialized=True,
                                                                              persistent_ctas=7)),
    (333, 128, 256, 3, dict(staged_store=True)),
    (2000, 128, 256, 4, dict(cluster_n=2)),
    # four consumer warpgroups beside the producer (20 warps, 104 registers each after setmaxnreg)
    (300, 48, 512, 4, dict(warp_specialized=True, a_split=4)),
    (77, 32, 512, 4, dict(warp_specialized=True, a_split=2, persistent_ctas=5))])
def test_wgmma_two_atoms_per_warpgroup(a, b, group, scale, m, bm, bn, stages, extra):
    """warp_n=128: each consumer warpgroup takes two 64-row weight atoms (two accumulators, one activation
    fragment per k-step): against the reference on a padded N, and bitwise against one atom per warpgroup
    (warp_n=64, same k order) where that fits the register file (block_n <= 256)."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=64, warp_m=bm,
              warp_k=64, stages=stages, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1, **extra)
    cfg = GemmConfig(**kw, warp_n=128).validate()
    n = 1000 if bn == 512 or extra.get("cluster_n") else 1240 if bn == 256 else 600   # padded to whole tiles
    k = 1280
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg, seed=m + bn)
    if bn <= 256 and not (extra.get("warp_specialized") and bn > 128):
        torch.manual_seed(m)
        dt = getattr(torch, a)
        pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
        x = torch.randn(m, k, device="cuda", dtype=dt)
        bias = torch.randn(n, device="cuda", dtype=dt) if m % 2 == 1 else None
        one = GemmConfig(**kw, warp_n=64).validate()
        assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=one))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,extra", [
    (64, 64, 64, dict(split_k=2, cluster_split_k=True)), (1, 16, 64, {}),
    (333, 64, 128, dict(warp_specialized=True)), (200, 64, 128, dict(staged_store=True)),
    (97, 64, 64, dict(cluster_n=2)), (77, 32, 256, dict(warp_n=128)),
    (5, 16, 64, dict(split_k=2, cluster_split_k=True, cluster_n=2)),
    (1000, 64, 128, dict(warp_specialized=True, persistent_ctas=132)),
    (700, 48, 64, dict(warp_specialized=True, persistent_ctas=5, staged_store=True)),
    (900, 64, 128, dict(warp_n=128, warp_specialized=True, persistent_ctas=3))])
def test_wgmma_k_slices(a, b, group, scale, m, bm, bn, extra):
    """warp_k = block_k / 2: two consumer warpgroups per weight row range, each multiplying one half of every
    k-tile, their sums added in shared memory: against the reference (poisoned output), with split-K inside a
    cluster, the producer warpgroup (four consumer warpgroups), the staged store, multicast, two atoms per
    warpgroup and persistent grids (a few CTAs walking many tiles); k-tiles 128 deep, 10 of them (5 per split)."""
    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=128, warp_m=bm,
              warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1)
    cfg = GemmConfig(**{**kw, **extra}).validate()
    assert cfg.consumer_warpgroups == 2 * (bn // cfg.warp_n)
    run_case(a, b, group, scale, m, 1000, 1280, bias=m % 2 == 1, config=cfg, seed=m + bn)


def _deepest_fitting(cfg: GemmConfig) -> GemmConfig:
    """`cfg` validated at the deepest pipeline (from its own stage count down to 2) that fits shared memory."""
    while True:
        try:
            return cfg.validate()
        except ValueError as e:
            if "shared memory" not in str(e) or cfg.stages == 2:
                raise
            cfg = cfg.with_(stages=cfg.stages - 1)


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,extra", [
    (333, 176, 128, dict(warp_specialized=True)), (1000, 192, 128, dict()), (1, 80, 64, dict()),
    (4096, 176, 128, dict(warp_specialized=True, persistent_ctas=132)),
    (700, 96, 256, dict(warp_n=128, warp_specialized=True, persistent_ctas=7)),
    (2000, 176, 128, dict(warp_specialized=True, cluster_n=2)),
    (1500, 176, 128, dict(warp_specialized=True, cluster_n=4)),
    (300, 160, 128, dict(split_k=2)), (97, 48, 64, dict(staged_store=True)),
    (600, 240, 128, dict(warp_specialized=True))])
def test_wgmma_dense_odd_block_m(a, b, group, scale, m, bm, bn, extra):
    """Dense wgmma tiles of a multiple of 16 activation rows that is not a power of two (wgmma N = block_m):
    against the reference with partial last row tiles, the producer warpgroup, persistent grids, two atoms per
    warpgroup, multicast clusters of 2 / 4 (block_m / 4 = 44 rows per CTA), split-K and the staged store."""
    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=64, warp_m=bm,
              warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1)
    cfg = _deepest_fitting(GemmConfig(**{**kw, **extra}))
    n = 1024 if extra.get("cluster_n") or bn == 256 else 600
    run_case(a, b, group, scale, m, n, 1280, bias=m % 2 == 1, config=cfg, seed=m + bm)


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,wn,a_split,extra", [
    (333, 128, 128, 64, 2, dict(warp_specialized=True)), (1, 64, 128, 64, 4, dict()),
    (4096, 128, 256, 128, 2, dict(warp_specialized=True, persistent_ctas=132)),
    (1000, 176, 256, 128, 4, dict(warp_specialized=True)),
    (3000, 176, 256, 128, 4, dict(warp_specialized=True, persistent_ctas=132, cluster_n=2)),
    (200, 128, 128, 64, 4, dict(split_k=2))])
def test_wgmma_a_split(a, b, group, scale, m, bm, bn, wn, a_split, extra):
    """a_split: the dequantized weight fragments double-buffered in pieces of a k-tile :
    against the reference, and bitwise against whole-k-tile buffers (same k order) where those fit the registers
    (176 x 256 two-atom tiles do not)."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=64, warp_m=bm,
              warp_n=wn, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1, **extra)
    cfg = _deepest_fitting(GemmConfig(**kw, a_split=a_split))
    n, k = (1024 if bn == 256 else 640), 1280
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg, seed=m + a_split)
    if bm != 176:
        torch.manual_seed(m)
        dt = getattr(torch, a)
        pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
        x = torch.randn(m, k, device="cuda", dtype=dt)
        bias = torch.randn(n, device="cuda", dtype=dt) if m % 2 == 1 else None
        whole = cfg.with_(a_split=1).validate()
        assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=whole))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16"),
                                             ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "uint3", 64,
                                                                                       "float16")])
@pytest.mark.parametrize("m,bm,bn,wn,extra", [
    (1000, 64, 64, 64, dict(persistent_ctas=132)), (700, 48, 64, 64, dict(persistent_ctas=5, staged_store=True)),
    (900, 64, 128, 128, dict(persistent_ctas=3)), (333, 128, 128, 128, dict(persistent_ctas=7, staged_store=True)),
    (1000, 64, 128, 64, dict(persistent_ctas=4, a_split=2)),
    (4096, 128, 128, 128, dict(persistent_ctas=132, row_perm=True))])
def test_wgmma_pingpong(a, b, group, scale, m, bm, bn, wn, extra):
    """pingpong: two sets of consumer warpgroups on alternate tiles of the persistent grid (each set stepping its
    pipeline states over the other's stages): against the reference (poisoned output) with a few CTAs walking many
    tiles (odd and even counts per CTA), the staged store, two atoms, four consumer warpgroups, permuted rows; and
    bitwise equal to the same tile without pingpong (same k order)."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    kw = dict(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn, block_k=64, warp_m=bm,
              warp_n=wn, warp_k=64, stages=6, arch="sm_90a", mainloop="sm90", has_bias=m % 2 == 1,
              warp_specialized=True, **extra)
    cfg = _deepest_fitting(GemmConfig(**kw, pingpong=True))
    assert cfg.consumer_warpgroups == 2 * bn // wn
    n, k = 1000, 1280
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg, seed=m + bn)
    torch.manual_seed(m + 1)
    dt = getattr(torch, a)
    pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
    x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt) if m % 2 == 1 else None
    one = cfg.with_(pingpong=False).validate()
    assert torch.equal(hc.gemm(x, pw, bias=bias, config=cfg), hc.gemm(x, pw, bias=bias, config=one))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16")])
@pytest.mark.parametrize("m,bm,bn,wn,ctas", [(700, 64, 128, 128, 5), (333, 64, 128, 64, 132)])
def test_wgmma_pingpong_glu(a, b, group, scale, m, bm, bn, wn, ctas):
    """pingpong with the staged GLU epilogue (each warpgroup its own fp32 staging tile): against the reference and
    bitwise equal to the same tile without pingpong; every output written."""
    import humming_cute as hc
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight

    cfg = _deepest_fitting(GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, block_n=bn,
                                      block_k=64, warp_m=bm, warp_n=wn, warp_k=64, stages=6, arch="sm_90a",
                                      mainloop="sm90", has_bias=True, activation="silu_glu", glu=True,
                                      staged_store=True, warp_specialized=True, persistent_ctas=ctas, pingpong=True))
    torch.manual_seed(m)
    dt = getattr(torch, a)
    n, k = 1024, 1280
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt)
    out = torch.full((m, n // 2), float("nan"), device="cuda", dtype=dt)
    y = hc.gemm(x, pw, bias=bias, out=out, config=cfg, activation="silu_glu", glu=True)
    ref = reference_gemm(x, qw, bias=bias, activation="silu_glu", glu=True, out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output element was never written"
    tol = 2e-3 if a == "float16" else 1e-2
    assert ((y.float() - ref).norm() / ref.norm()).item() < tol
    one = cfg.with_(pingpong=False).validate()
    assert torch.equal(y, hc.gemm(x, pw, bias=bias, config=one, activation="silu_glu", glu=True))


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16")])
@pytest.mark.parametrize("m,n,k", [(1024, 28672, 4096), (8192, 4096, 4096), (1100, 28672, 4096)])
def test_wgmma_persistent_short_k_default(a, b, group, scale, m, n, k):
    """The default of many 256-row tiles over a short K (`WGMMA_PERSISTENT_SHORT_K`: the producer warpgroup on the
    persistent grid, staged store): against the reference (poisoned output), a partial last row tile included."""
    from humming_cute.tune import default_config

    cfg = default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, arch="sm_90a").validate()
    assert (cfg.block_m, cfg.persistent_ctas > 0, cfg.warp_specialized, cfg.staged_store) == (256, True, True, True)
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg, seed=m + n)


@pytest.mark.parametrize("a,b,group,scale", [("float16", "uint4", 128, "float16"), ("bfloat16", "int8", 0, "float16")])
@pytest.mark.parametrize("m,n,k", [(1024, 4096, 2048), (1001, 4096, 1024), (512, 8192, 1024)])
def test_wgmma_tall_fill_default(a, b, group, scale, m, n, k):
    """256-row tiles where their grid gives 128 of 132 SMs a tile (`WGMMA_TALL_MIN_FILL`: one CTA per SM, the
    deepest ring beside the staged store's tiles): against the reference (poisoned output, a partial last row tile
    included) and bitwise equal to the 128-row tiles taken before."""
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight
    from humming_cute.tune import default_config

    cfg = default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, arch="sm_90a",
                         num_sms=132).validate()
    assert (cfg.block_m, cfg.persistent_ctas, cfg.staged_store, cfg.staging_in_ring) == (256, 0, True, True)
    assert cfg.stages >= 5
    run_case(a, b, group, scale, m, n, k, bias=m % 2 == 1, config=cfg.with_(has_bias=m % 2 == 1).validate(),
             seed=m + n)
    torch.manual_seed(m + k)
    pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
    x = torch.randn(m, k, device="cuda", dtype=getattr(torch, a))
    short = cfg.with_(block_m=128, warp_m=128, stages=4).validate()
    assert torch.equal(hc.gemm(x, pw, config=cfg), hc.gemm(x, pw, config=short))
