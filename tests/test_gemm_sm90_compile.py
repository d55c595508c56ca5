"""The wgmma mainloop compiles for sm_90a on a CPU with TMA, mbarriers and wgmma in its PTX and no spills; it
refuses other targets and the features it does not have, with clear errors."""

from __future__ import annotations

import re

import pytest

from humming_cute.config import GemmConfig
from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune import default_config
from humming_cute.tune.heuristics import sm90_config

CASES = [  # a, b, group, m: plane widths 4, 8, 4+2+1, 2, 1 and both activation types
    ("float16", "uint4", 128, 4096),
    ("bfloat16", "int8", 0, 64),
    ("float16", "uint7", 64, 333),
    ("bfloat16", "float4e2m1", 32, 1024),
    ("float16", "int2", 128, 128),
]


@pytest.mark.parametrize("a,b,g,m", CASES)
def test_sm90_compiles_with_tma_mbarrier_wgmma(a, b, g, m):
    cfg = sm90_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    t = "bf16" if a == "bfloat16" else "f16"
    assert re.search(rf"wgmma\.mma_async\.sync\.aligned\.m64n{cfg.block_m}k16\.f32\.{t}\.{t}", ptx)
    assert "cp.async.bulk.tensor" in ptx
    assert "mbarrier" in ptx
    assert not re.search(r"mma\.sync\.aligned", ptx), "the wgmma kernel must not fall back to mma.sync"
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas, "ptxas printed no resource report"
    assert spills == 0, f"{cfg}: ptxas reports {spills} spill bytes"


def _sm90(**kw):
    base = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, block_n=128,
                block_k=64, warp_m=128, warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90")
    base.update(kw)
    return GemmConfig(**base)


@pytest.mark.parametrize("arch", ["sm_80", "sm_89", "sm_100a", "sm_120a"])
def test_sm90_mainloop_refuses_other_archs(arch):
    with pytest.raises(NotImplementedError, match="needs sm_90a"):
        _sm90(arch=arch).validate()


@pytest.mark.parametrize("kw,match", [
    (dict(glu=True, activation="silu_glu"), "GLU"),
    (dict(a_dtype="float8e4m3", b_dtype="uint4", group_size=32), "weight groups of at least block_k"),
    (dict(split_k=0), "split_k"),
    (dict(block_n=512), "block_n|warps"),
    (dict(block_m=8, warp_m=8), "block_m|power of two|multiple"),
    (dict(warp_n=192, block_n=192), "warpgroup tile|warp shape|multiple|power of two"),
    (dict(warp_n=256, block_n=256), "warpgroup tile"),
    (dict(block_k=256, warp_k=256), "block_k"),
    (dict(mainloop="sm100"), "mainloop"),
])
def test_sm90_config_errors(kw, match):
    with pytest.raises((ValueError, NotImplementedError), match=match):
        _sm90(**kw).validate()


def test_default_config_dispatch():
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128)
    assert default_config(4096, 8192, 8192, arch="sm_90a", **kw).mainloop == "sm90"
    assert default_config(64, 8192, 8192, arch="sm_90a", **kw).mainloop == "sm90"
    assert default_config(16, 8192, 8192, arch="sm_90a", **kw).mainloop == "sm80"
    assert default_config(4096, 8192, 8192, arch="sm_80", **kw).mainloop == "sm80"
    assert default_config(4096, 8192, 8192, arch="sm_120a", **kw).mainloop == "sm80"
    assert default_config(4096, 8192, 8192, arch="sm_90a", batch_invariant=True, **kw).mainloop == "sm80"
    assert default_config(4096, 8192, 8192, arch="sm_90a", glu=True, **kw).mainloop == "sm90"
    fp8 = {**kw, "a_dtype": "float8e4m3", "b_dtype": "int4", "group_size": 0}
    assert default_config(4096, 8192, 8192, arch="sm_90a", **fp8).mainloop == "sm90"
    assert default_config(4096, 8192, 8192, arch="sm_90a", glu=True, **fp8).mainloop == "sm80"


def _mish(x):
    from humming_cute import activations as act

    return x * act.tanh(act.log(1.0 + act.exp(x)))


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu", _mish])
def test_sm90_epilogue_activations_compile(activation):
    """The wgmma mainloop's (transposed) epilogue takes built-in and custom activations, with bias."""
    from humming_cute.activations import resolve

    name, fn, _ = resolve(activation)
    cfg = sm90_config(256, 4096, 4096, a_dtype="bfloat16", b_dtype="uint4", c_dtype="bfloat16", group_size=128,
                      has_bias=True).with_(activation=name, custom_activation=fn)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert "wgmma.mma_async" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("n,k", [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336), (1536, 2048)])
@pytest.mark.parametrize("m", [64, 96, 256])
def test_sm90_mid_m_configs(n, k, m):
    """16-bit activations at 64 <= M <= 256: valid configs that fit shared memory, 128-deep k-tiles within a weight
    group (64 for 256-token tiles), split-K only over whole k-tiles and K >= 4096 per split."""
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    cfg = sm90_config(m, n, k, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128).validate()
    assert cfg.mainloop == "sm90" and cfg.block_m >= min(m, 128)
    assert smem_bytes(cfg) <= get_arch("sm_90a").smem_per_block_bytes
    assert smem_bytes(cfg.with_(stages=cfg.stages + 1)) > get_arch("sm_90a").smem_per_block_bytes or cfg.stages == 8
    assert cfg.block_k == (64 if cfg.block_m == 256 else 128)
    assert (k // cfg.block_k) % cfg.split_k == 0
    if cfg.cluster_split_k:    # M <= 64: two CTAs per weight tile in one cluster, one wave covering >= 3/4 SMs
        assert m <= 64 and cfg.split_k == 2 and cfg.block_n <= 128 and 99 <= 2 * n // cfg.block_n <= 132
    else:
        assert k // cfg.split_k >= 4096 or cfg.split_k == 1
    assert cfg.warp_specialized == (cfg.split_k == 1 and cfg.block_n <= 128 and cfg.block_m <= 128)
    g64 = sm90_config(m, n, k, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=64)
    assert g64.block_k == 64, "a k-tile must not span two weight groups"


@pytest.mark.parametrize("a,b,g,bm,bn,bk,split", [("float16", "uint4", 128, 64, 64, 128, 2),
                                                  ("bfloat16", "int8", 0, 256, 128, 64, 1),
                                                  ("float8e4m3", "uint4", 128, 128, 128, 128, 1)])
def test_sm90_warp_specialized_compiles(a, b, g, bm, bn, bk, split):
    """warp_specialized: one more warpgroup; it gives registers away (setmaxnreg.dec 40), the consumers take them
    (setmaxnreg.inc); TMA from the producer only; split-K consumers meet on named barrier 1; no spills."""

    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=g, block_m=bm, block_n=bn, block_k=bk,
                     warp_m=bm, warp_n=64, warp_k=bk, stages=3, split_k=split, arch="sm_90a", mainloop="sm90",
                     warp_specialized=True).validate()
    assert cfg.num_threads == 128 * (bn // 64 + 1)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+40;", ptx)
    inc = int(re.search(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+);", ptx).group(1))
    assert inc * 128 * (bn // 64) + 40 * 128 <= 65536 and inc % 8 == 0
    assert f".reqntid {cfg.num_threads}" in ptx and "wgmma.mma_async" in ptx and "cp.async.bulk.tensor" in ptx
    assert (f"bar.sync \t1, {128 * (bn // 64)};" in ptx) == (split > 1)
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_sm90_warp_specialized_errors():

    with pytest.raises(ValueError, match="consumer warpgroups leaves|leave 104 registers"):
        _sm90(warp_specialized=True, block_n=256).validate()
    with pytest.raises(ValueError, match="option of the wgmma mainloop"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, warp_specialized=True).validate()


@pytest.mark.parametrize("a,b,g,bm,bn,bk,down,ws", [("float16", "uint4", 128, 64, 128, 64, False, False),
                                                    ("bfloat16", "int8", 0, 128, 128, 128, True, False),
                                                    ("float16", "float4e2m1", 32, 64, 64, 64, True, True)])
def test_sm90_moe_compiles(a, b, g, bm, bn, bk, down, ws):
    """The MoE GEMM on the wgmma mainloop: per-expert weight / scale rows by TMA, wgmma, no spills (8-bit
    activations: `test_sm90_moe_act8_compiles`)."""

    kw = dict(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=g, block_m=bm, block_n=bn, block_k=bk, warp_m=bm,
              warp_n=64, warp_k=bk, stages=4, arch="sm_90a", mainloop="sm90", moe=True, moe_top_k=2,
              moe_down=down, moe_mul_topk_weights=down, warp_specialized=ws)
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert "wgmma.mma_async" in art.ptx and "cp.async.bulk.tensor" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("bm,ws,down", [(16, False, False), (32, True, True), (16, True, True), (32, False, False)])
def test_sm90_moe_small_blocks_compile(bm, ws, down):
    """wgmma MoE blocks of 16 / 32 routed rows (wgmma N = 16 / 32; less padding computed when experts see 17-48
    rows): the m64n16 / m64n32 wgmma, no spills, chosen by default_moe_config when mainloop='sm90' is forced."""
    from humming_cute.tune.heuristics import default_moe_config

    cfg = default_moe_config(bm, 1536, 2048, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                             arch="sm_90a", top_k=8, is_down=down, mul_topk_weights=down, mainloop="sm90")
    cfg = cfg.with_(warp_specialized=ws)
    assert (cfg.mainloop, cfg.block_m, cfg.warp_m) == ("sm90", bm, bm)
    art = compile_for_arch(Sm90MixedGemm(cfg.validate()), *fake_operands(cfg), arch="sm_90a",
                           options="--enable-tvm-ffi")
    assert set(re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16", art.ptx)) == {str(bm)}
    assert "cp.async.bulk.tensor" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("bm,bn,bk,split", [(64, 64, 128, 2), (128, 128, 64, 4)])
def test_sm90_cluster_split_k_compiles(bm, bn, bk, split):
    """Cluster split-K on the wgmma mainloop: cluster barriers and DSMEM loads instead of the workspace ticket;
    not with the producer warpgroup."""

    cfg = _sm90(block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_k=bk, split_k=split,
                cluster_split_k=True).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert art.ptx.count("barrier.cluster.arrive") == 2 and "ld.shared::cluster.f32" in art.ptx
    assert "atom.global" not in art.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="producer warpgroup"):
        cfg.with_(warp_specialized=True).validate()


@pytest.mark.parametrize("a,b,g,bm,bn,bk", [("float16", "uint4", 128, 128, 128, 128),
                                          ("bfloat16", "int8", 0, 256, 64, 64),
                                          ("float8e4m3", "int4", 0, 128, 128, 128)])
def test_sm90_persistent_compiles(a, b, g, bm, bn, bk):
    """persistent_ctas: the grid is min(tiles, persistent_ctas) and each CTA strides over the tiles (%nctaid),
    with the producer warpgroup, dense and MoE; no spills; refused without the producer warpgroup, with split-K,
    for two-level 8-bit accumulation and off the wgmma mainloop."""
    kw = dict(a_dtype=a, b_dtype=b, c_dtype="bfloat16" if a == "bfloat16" else "float16", group_size=g,
              block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk, stages=4, arch="sm_90a",
              mainloop="sm90", warp_specialized=True, persistent_ctas=132)
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert "%nctaid.x" in art.ptx and re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+40;", art.ptx)
    assert "wgmma.mma_async" in art.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    bads = [dict(warp_specialized=False), dict(split_k=2),
            dict(a_dtype="float8e4m3", b_dtype="uint4", group_size=128, block_m=128, warp_m=128, c_dtype="float16")]
    for bad in bads:
        with pytest.raises(ValueError, match="persistent_ctas takes"):
            GemmConfig(**{**kw, **bad}).validate()
    with pytest.raises(ValueError, match="option of the wgmma mainloop"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, persistent_ctas=132).validate()
    if a in ("float16", "bfloat16"):     # the MoE GEMM too: each tile looks up its block's expert
        moe = GemmConfig(**{**kw, "moe": True, "moe_top_k": 2, "block_n": 64}).validate()
        art = compile_for_arch(Sm90MixedGemm(moe), *fake_operands(moe), arch="sm_90a", options="--enable-tvm-ffi")
        assert "%nctaid.x" in art.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="int >= 0"):
        GemmConfig(**{**kw, "persistent_ctas": -1}).validate()


@pytest.mark.parametrize("bm,bn,ws,pc,split", [(128, 128, False, 0, 1), (256, 128, False, 0, 1),
                                              (128, 64, True, 132, 1), (64, 64, False, 0, 2)])
def test_sm90_staged_store_compiles(bm, bn, ws, pc, split):
    """staged_store: each warpgroup stages its tile in shared memory, then stores C in 16-byte row vectors
    (st.global.v4, block_m / 16 per thread) between two named barriers; no spills; refused off the wgmma
    mainloop (and, until verified, on the MoE GEMM: `test_sm90_moe_staged_store_compiles`)."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm, block_n=bn,
              block_k=64, warp_m=bm, warp_n=64, warp_k=64, stages=3, arch="sm_90a", mainloop="sm90",
              warp_specialized=ws, persistent_ctas=pc, split_k=split, has_bias=True, staged_store=True)
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert len(re.findall(r"st\.global\.v4\.", art.ptx)) == bm // 16
    assert len(re.findall(r"bar\.sync\s+(%r\d+|[2-5]), 128;", art.ptx)) >= 2
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    # one output tile per CTA: the staging tiles take the activation ring's memory, after one barrier of all
    # consumer threads; the persistent grid and split-K keep their own
    assert cfg.staging_in_ring == (pc == 0 and split == 1)
    ring_bars = re.findall(r"bar\.sync\s+7, (\d+);", art.ptx)
    assert ring_bars == ([str(128 * (bn // 64))] if cfg.staging_in_ring else [])
    with pytest.raises(ValueError, match="option of the wgmma kernel"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, staged_store=True).validate()


@pytest.mark.parametrize("bm,bn,ws,pc,down", [(128, 256, False, 0, True), (64, 128, True, 132, False),
                                              (32, 128, False, 0, True)])
def test_sm90_moe_staged_store_compiles(bm, bn, ws, pc, down):
    """staged_store on the wgmma MoE GEMM: the finished tile goes through the warpgroup's staging tile, then each
    routed row leaves as 16-byte vectors at its output row (st.global.v4, block_m / 16 per thread; 2-byte stores
    only where a row is not 16-byte aligned); no spills."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm, block_n=bn,
              block_k=64, warp_m=bm, warp_n=64, warp_k=64, stages=3, arch="sm_90a", mainloop="sm90",
              warp_specialized=ws, persistent_ctas=pc, has_bias=True, moe=True, moe_top_k=8, moe_down=down,
              moe_mul_topk_weights=down)
    arts = [compile_for_arch(Sm90MixedGemm(c), *fake_operands(c), arch="sm_90a", options="--enable-tvm-ffi")
            for c in (GemmConfig(**kw).validate(), GemmConfig(**kw, staged_store=True).validate())]
    assert len(re.findall(r"st\.global\.v4\.", arts[1].ptx)) == bm // 16
    # 2-byte stores: without staging one per accumulator element in each of the two row loops (all columns in
    # range; columns checked against N); with it only the fallback of unaligned rows
    stores = [len(re.findall(r"st\.global\.(?:b16|u16|f16)", a.ptx)) for a in arts]
    assert stores == [2 * bm * 64 // 128, bm // 16 * 8], stores
    assert sum(r.spill_bytes for r in arts[1].ptxas.values()) == 0


_SM90_BASE = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, block_n=128,
                  block_k=64, warp_m=128, warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90")


def _compile_sm90(fields: dict):
    """Validate (with the default switches) and compile a wgmma config for sm_90a -> (config, artifacts)."""
    cfg = GemmConfig(**fields).validate()
    return cfg, compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")


@pytest.mark.parametrize("kw", [
    dict(cluster_n=2),
    dict(cluster_n=4, block_m=16, warp_m=16, block_n=64, stages=6),
    dict(cluster_n=2, warp_specialized=True, persistent_ctas=132),
    dict(cluster_n=2, a_dtype="float8e4m3", b_dtype="int4", group_size=0, block_k=128, warp_k=128, stages=3),
    dict(cluster_n=2, moe=True, moe_top_k=2, block_m=64, warp_m=64),
    dict(cluster_n=4, moe=True, moe_top_k=8, block_m=64, warp_m=64, block_n=64, warp_specialized=True,
         persistent_ctas=128),
    dict(cluster_n=2, block_m=64, warp_m=64, block_n=64, split_k=2, cluster_split_k=True),
    dict(cluster_n=4, block_m=16, warp_m=16, block_n=64, block_k=128, warp_k=128, split_k=2, cluster_split_k=True)],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_sm90_cluster_n_compiles(kw):
    """cluster_n: the activation tile is TMA-multicast over a cluster of CTAs along N (each loads its piece with a
    CTA mask), consumers release stages to every producer of the cluster (remote mbarrier arrives), and the CTAs
    meet at a cluster barrier before leaving; dense, persistent, 8-bit activations, MoE, and with split-K inside a
    (cluster_n, 1, split_k) cluster (multicast among the CTAs of one k-range, the split's partials read from rank
    x + cluster_n r); no spills."""
    cfg, art = _compile_sm90({**_SM90_BASE, **kw})
    ptx = art.ptx
    assert re.search(r"cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global\.tile\.mbarrier::complete_tx::bytes"
                     r"\.multicast::cluster", ptx), "the activation tile is not multicast"
    assert "mapa.shared::cluster" in ptx and "mbarrier.arrive.shared::cluster" in ptx   # remote stage release
    assert "%cluster_ctaid.x" in ptx and "barrier.cluster.wait" in ptx
    if cfg.cluster_split_k:
        assert "%cluster_ctaid.z" in ptx and "ld.shared::cluster.f32" in ptx
    assert "wgmma.mma_async" in ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_sm90_cluster_n_refusals():
    """Illegal cluster_n combinations fail validation with a reason; the launch checks N's tiles fill clusters."""
    from humming_cute.config import check_weight_tiles

    for bad, match in [(dict(cluster_n=3), "cluster_n must be 1, 2 or 4"), (dict(cluster_n=True), "cluster_n must"),
                       (dict(cluster_n=2, split_k=2), "splits K only inside the cluster"),
                       (dict(cluster_n=4, split_k=4, cluster_split_k=True), "at most 8"),
                       (dict(cluster_n=4, warp_specialized=True, persistent_ctas=130), "multiple of cluster_n")]:
        with pytest.raises(ValueError, match=match):
            _sm90(**bad).validate()
    with pytest.raises(ValueError, match="options of the wgmma mainloop"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, cluster_n=2).validate()
    cfg = _sm90(cluster_n=4).validate()
    check_weight_tiles(cfg, 4096, 4096)                        # 32 weight tiles: 8 clusters
    with pytest.raises(ValueError, match="cluster_n=4 must divide the 6 weight tiles"):
        check_weight_tiles(cfg, 768, 4096)
    with pytest.raises(ValueError, match="block_n=128 must divide"):
        check_weight_tiles(cfg, 700, 4096)


@pytest.mark.parametrize("kw", [
    dict(moe_top_k=8),
    dict(moe_top_k=2, moe_down=True, moe_mul_topk_weights=True, block_m=128, warp_m=128, block_n=64,
         persistent_ctas=132),
    dict(moe_top_k=8, block_k=128, warp_k=128, group_size=0, b_dtype="int8")],
    ids=["up", "down-persistent", "int8-bk128"])
def test_sm90_moe_cp_async_rows_compiles(kw):
    """moe_cp_async_rows: the producer warpgroup copies the block's activation rows by cp.async (16-byte copies
    into the swizzled stage, one per 16 rows per thread) and arrives on the stage's barrier when they land
    (noinc: 128 such arrivals plus the TMA thread's), the weights still by TMA; no spills. Refused without the
    producer warpgroup or MoE, and with cluster_n."""
    full = {**_SM90_BASE, **dict(block_m=64, warp_m=64, moe=True, warp_specialized=True, moe_cp_async_rows=True),
            **kw}
    cfg, art = _compile_sm90(full)
    ptx = art.ptx
    copies = cfg.block_m * cfg.block_k // 8 // 128
    assert len(re.findall(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 16, 16;", ptx)) == copies
    assert "cp.async.mbarrier.arrive.noinc.shared.b64" in ptx
    assert re.search(r"mov\.b32\s+%r\d+, 129;", ptx)          # the stages' full barriers expect 129 arrivals
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+56;", ptx)      # `wgmma_register_split`
    assert "wgmma.mma_async" in ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    for bad in (dict(warp_specialized=False, persistent_ctas=0),
                dict(moe=False, moe_top_k=1, moe_down=False, moe_mul_topk_weights=False),
                dict(cluster_n=2)):
        with pytest.raises(ValueError, match="moe_cp_async_rows takes"):
            GemmConfig(**{**full, **bad}).validate()
    with pytest.raises(ValueError, match="options of the wgmma mainloop"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, moe=True, moe_cp_async_rows=True).validate()


@pytest.mark.parametrize("kw", [
    dict(a_dtype="int8", b_dtype="int8", moe_top_k=8),
    dict(a_dtype="float8e4m3", b_dtype="int4", moe_top_k=2, moe_down=True, moe_mul_topk_weights=True,
         block_m=128, warp_m=128, stages=3),
    dict(a_dtype="float8e4m3", b_dtype="float8e4m3", moe_top_k=8, warp_specialized=True, persistent_ctas=132),
    dict(a_dtype="float8e4m3", b_dtype="uint4", group_size=128, moe_top_k=8),
    dict(a_dtype="int8", b_dtype="int4", group_size=128, moe_top_k=2, moe_down=True, moe_mul_topk_weights=True),
    dict(a_dtype="float8e4m3", b_dtype="int4", fp8_fast_accum=False, moe_top_k=8)],
    ids=["int8-int8-up", "e4m3-int4-down", "e4m3-e4m3-persistent", "e4m3-uint4-g128", "int8-int4-g128-down",
         "e4m3-int4-promoted"])
def test_sm90_moe_act8_compiles(kw):
    """The wgmma MoE GEMM with 8-bit activations (k32 fp8 / s8 wgmma on the weight's 8-bit lanes; channel scales,
    or weight groups by two-level accumulation over the expert's own fp32 scale rows; fp8 promoted per k-tile):
    compiles without spills; refused with cp.async rows (16-bit copies)."""
    full = {**_SM90_BASE, **dict(c_dtype="float16", group_size=0, block_m=64, warp_m=64, block_k=128, warp_k=128,
                                 moe=True), **kw}
    cfg, art = _compile_sm90(full)
    t = "s32.s8.s8" if cfg.a_dtype == "int8" else "f32.e4m3.e4m3"
    assert re.search(rf"wgmma\.mma_async\.sync\.aligned\.m64n{cfg.block_m}k32\.(satfinite\.)?{t}", art.ptx)
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(NotImplementedError, match="activations with TMA-loaded rows"):
        GemmConfig(**{**full, **dict(warp_specialized=True, moe_cp_async_rows=True, persistent_ctas=0)}).validate()


@pytest.mark.parametrize("extra", [dict(block_m=128, warp_m=128, block_n=128),
                                   dict(block_m=64, warp_m=64, block_n=128, warp_specialized=True,
                                        persistent_ctas=132),
                                   dict(block_m=64, warp_m=64, block_n=128, moe=True, moe_top_k=8),
                                   dict(block_m=128, warp_m=128, block_n=256, moe=True, moe_top_k=2, moe_down=True,
                                        moe_mul_topk_weights=True, stages=2)])
def test_sm90_glu_staged_compiles(extra):
    """GLU epilogues on the wgmma mainloop (dense and MoE): the raw fp32 accumulators go through the staging tile
    and each thread stores 8 GLU outputs as one 16-byte vector (st.global.v4, block_m / 32 per thread; 2-byte stores
    only for rows that are not 16-byte aligned); no spills; refused without the staged store."""
    kw = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_k=64, warp_n=64,
                 warp_k=64, stages=3, arch="sm_90a", mainloop="sm90", has_bias=True, activation="silu_glu",
                 glu=True), **extra}
    with pytest.raises(NotImplementedError, match="staged store"):
        GemmConfig(**kw).validate()
    cfg = GemmConfig(**kw, staged_store=True).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    bm = cfg.block_m
    assert len(re.findall(r"st\.global\.v4\.", art.ptx)) == -(-bm // 32)
    assert len(re.findall(r"st\.global\.(?:b16|u16|f16)", art.ptx)) == -(-bm // 32) * 8
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_wgmma_glu_defaults(monkeypatch):
    """GLU layers on sm_90a: dense GLU from M = 64 takes the wgmma kernel with the staged store (above M = 64 the
    measured 128 x 128 x 64 tile with the producer warpgroup and the deepest pipeline that fits); MoE GLU blocks of
    64 / 128 rows take it with 256-wide weight tiles; MoE blocks with other activations stay on mma.sync;
    `heuristics.WGMMA_GLU = False` puts every GLU layer back on mma.sync."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128)
    glu = dict(activation="silu_glu", glu=True)
    limit = get_arch("sm_90a").smem_per_block_bytes
    for m in (64, 300, 4096):
        cfg = default_config(m, 28672, 4096, arch="sm_90a", glu=True, **kw).with_(**glu).validate()
        assert cfg.mainloop == "sm90" and cfg.staged_store and cfg.block_m <= 128 and smem_bytes(cfg) <= limit
        if m > 64:
            assert (cfg.block_m, cfg.block_n, cfg.block_k, cfg.warp_specialized) == (128, 128, 64, True)
            # (the deepest that fits, at most 8: its fp32 staging tiles take the activation ring)
            assert cfg.stages >= 6 and (cfg.stages == 8 or smem_bytes(cfg.with_(stages=cfg.stages + 1)) > limit)
    assert default_config(16, 28672, 4096, arch="sm_90a", glu=True, **kw).mainloop == "sm80"     # decode
    assert heur.moe_uses_wgmma("sm_90a", "float16", epilogue=True, glu=True)
    assert not heur.moe_uses_wgmma("sm_90a", "float16", epilogue=True)
    assert heur.default_moe_config(64, 1536, 2048, arch="sm_90a", top_k=8, epilogue=True,
                                   **kw).mainloop == "sm80"
    # 8-bit weights: 256-wide tiles leave < 3 stages beside the staging tile, so 128 wide
    for bm, b, g, n, bn in ((64, "uint4", 128, 4096, 256), (128, "uint4", 128, 4096, 256),
                            (128, "int8", 0, 4096, 128), (64, "uint4", 128, 384, 128)):
        cfg = heur.default_moe_config(bm, n, 2048, arch="sm_90a", top_k=2, epilogue=True, glu=True,
                                      **{**kw, "b_dtype": b, "group_size": g}).with_(**glu).validate()
        assert (cfg.mainloop, cfg.block_m, cfg.block_n, cfg.staged_store) == ("sm90", bm, bn, True)
        assert cfg.stages >= 3 and smem_bytes(cfg) <= limit
    monkeypatch.setattr(heur, "WGMMA_GLU", False)
    assert default_config(4096, 28672, 4096, arch="sm_90a", glu=True, **kw).mainloop == "sm80"
    assert not heur.moe_uses_wgmma("sm_90a", "float16", epilogue=True, glu=True)
    assert heur.default_moe_config(64, 1536, 2048, arch="sm_90a", top_k=8, epilogue=True, glu=True,
                                   **kw).mainloop == "sm80"


def test_sm90_moe_activation_validates():
    """Element-wise activations in the wgmma MoE epilogue (GPU-tested: test_moe_wgmma_activation) validate beside
    GLU epilogues and plain MoE configs; MoE layers with them still default to mma.sync (`moe_uses_wgmma`)."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=64, warp_m=64,
              block_n=128, block_k=64, warp_n=64, warp_k=64, stages=3, arch="sm_90a", mainloop="sm90", moe=True,
              moe_top_k=8)
    GemmConfig(**kw).validate()
    GemmConfig(**kw, activation="silu_glu", glu=True, staged_store=True).validate()
    GemmConfig(**kw, activation="silu").validate()
    from humming_cute.tune.heuristics import moe_uses_wgmma
    assert not moe_uses_wgmma("sm_90a", "float16", epilogue=True)


@pytest.mark.parametrize("bm,extra", [(48, dict()), (48, dict(warp_specialized=True, moe_cp_async_rows=True)),
                                      (48, dict(staged_store=True, moe_down=True, moe_mul_topk_weights=True)),
                                      (48, dict(activation="silu_glu", glu=True, staged_store=True, block_n=256)),
                                      (160, dict(warp_specialized=True)), (160, dict(staged_store=True)),
                                      (96, dict(activation="silu_glu", glu=True, staged_store=True, block_n=256))])
def test_sm90_moe_odd_blocks_compile(bm, extra):
    """wgmma MoE blocks of 48 / 96 / 160 routed rows (wgmma N = block_m, not a power of two): that wgmma, no spills,
    the stores of block_m rows (staged: block_m / 16 16-byte vectors per thread; GLU: ceil(block_m / 32))."""
    kw = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, has_bias=True, block_m=bm,
                 warp_m=bm, block_n=128, block_k=64, warp_n=64, warp_k=64, stages=4, arch="sm_90a",
                 mainloop="sm90", moe=True, moe_top_k=8), **extra}
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert set(re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16", art.ptx)) == {str(bm)}
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    v4 = len(re.findall(r"st\.global\.v4\.", art.ptx))
    assert v4 == (-(-bm // 32) if cfg.glu else bm // 16 if cfg.staged_store else 0)


def test_moe_odd_block_rules(monkeypatch):
    """48 / 96 / 160-row MoE blocks: wgmma configs (mma.sync tiles stay powers of two; dense wgmma tiles of such
    heights too: `test_sm90_dense_odd_m_compiles`), named in the errors; `default_moe_config` builds them on sm_90a
    with 16-bit activations and refuses them elsewhere; `moe_block_size` picks 48 for 17-36 and 160 for 112-136 rows per expert (`WGMMA_MOE_ODD_BLOCKS`,
    on); 160-row blocks without a GLU take the producer warpgroup; 48- and 128-row blocks of 4-bit weights take
    two-atom 256-wide tiles with cp.async rows on a persistent grid (`WGMMA_TWO_ATOMS`)."""
    import humming_cute.tune.heuristics as heur

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128)
    with pytest.raises(ValueError, match="power of two"):
        GemmConfig(**kw, block_m=48, warp_m=48, block_n=128, warp_n=64, block_k=64, warp_k=64, moe=True).validate()
    dense48 = GemmConfig(**kw, block_m=48, warp_m=48, block_n=128, warp_n=64, block_k=64, warp_k=64,
                         arch="sm_90a", mainloop="sm90").validate()      # dense ones too (GPU-verified)
    assert (dense48.block_m, dense48.moe) == (48, False)
    with pytest.raises(ValueError, match="multiple of 16"):
        GemmConfig(**kw, block_m=40, warp_m=40, block_n=128, warp_n=64, block_k=64, warp_k=64, arch="sm_90a",
                   mainloop="sm90", moe=True).validate()
    cfg = heur.default_moe_config(48, 1536, 2048, arch="sm_90a", top_k=8, **kw).validate()
    assert (cfg.mainloop, cfg.block_m, cfg.warp_m) == ("sm90", 48, 48)
    for bad in (dict(arch="sm_89"), dict(arch="sm_90a", mainloop="sm80"), dict(arch="sm_90a", epilogue=True),
                dict(arch="sm_90a", a_dtype="float8e4m3")):
        with pytest.raises(ValueError, match="wgmma mainloop only"):
            heur.default_moe_config(48, 1536, 2048, **{**kw, **bad})
    with pytest.raises(ValueError, match="48, 96, 144, 160 on the wgmma"):
        heur.default_moe_config(40, 1536, 2048, arch="sm_90a", **kw)
    big = heur.default_moe_config(160, 28672, 4096, arch="sm_90a", top_k=2, epilogue=True, glu=True,
                                  **kw).with_(activation="silu_glu", glu=True).validate()
    assert (big.block_m, big.block_n, big.staged_store) == (160, 128, True)      # no 256-wide tiles past 128 rows
    assert [heur.moe_block_size(t, 8, 128, wgmma=True) for t in (288, 512, 576, 600)] == [48, 48, 48, 64]
    assert [heur.moe_block_size(t, 2, 8, wgmma=True) for t in (440, 512, 544, 560)] == [64, 160, 160, 128]
    assert heur.default_moe_config(160, 28672, 4096, arch="sm_90a", top_k=2, **kw).warp_specialized
    d48 = heur.default_moe_config(48, 2048, 768, arch="sm_90a", top_k=8, is_down=True, **kw).validate()
    # (WGMMA_TWO_ATOMS: tiles of two atoms per warpgroup, 64-deep, rows by cp.async, persistent; 512 wide below
    # K = 2048 where N allows, `MOE_BLOCK_48_WIDE_SHORT_K`; 128-deep from K = 2048, `MOE_BLOCK_48_DEEP_K`)
    assert (d48.block_n, d48.warp_n, d48.block_k, d48.warp_specialized, d48.persistent_ctas,
            d48.moe_cp_async_rows) == (512, 128, 64, True, 132, True)
    d48 = heur.default_moe_config(48, 1792, 768, arch="sm_90a", top_k=8, is_down=True, **kw).validate()
    assert (d48.block_n, d48.warp_n, d48.block_k, d48.a_split) == (256, 128, 64, 1)     # (N % 512 != 0)
    d48 = heur.default_moe_config(48, 1536, 2048, arch="sm_90a", top_k=8, **{**kw, "group_size": 64}).validate()
    assert (d48.block_n, d48.warp_n, d48.block_k, d48.warp_specialized) == (256, 128, 64, True)
    # 128-row blocks: the same two-atom tile for 4-bit weights (not 8-bit ones, not under a GLU)
    d128 = heur.default_moe_config(128, 2048, 768, arch="sm_90a", top_k=8, is_down=True, mul_topk_weights=True,
                                   **kw).validate()
    assert (d128.block_n, d128.warp_n, d128.block_k, d128.warp_specialized, d128.persistent_ctas,
            d128.moe_cp_async_rows, d128.num_threads) == (256, 128, 64, True, 132, True, 384)
    for other in (dict(b_dtype="int8", group_size=0), dict(epilogue=True, glu=True)):
        assert heur.default_moe_config(128, 2048, 768, arch="sm_90a", top_k=8, **{**kw, **other}).warp_n == 64
    monkeypatch.setattr(heur, "WGMMA_TWO_ATOMS", False)
    assert heur.default_moe_config(128, 2048, 768, arch="sm_90a", top_k=8, **kw).warp_n == 64
    d48 = heur.default_moe_config(48, 1536, 2048, arch="sm_90a", top_k=8, **kw).validate()
    assert (d48.block_k, d48.warp_specialized, d48.persistent_ctas, d48.moe_cp_async_rows) == (128, True, 132, True)
    d48 = heur.default_moe_config(48, 1536, 2048, arch="sm_90a", top_k=8, **{**kw, "group_size": 64}).validate()
    assert (d48.block_k, d48.warp_specialized, d48.persistent_ctas) == (64, False, 0)     # 64-groups: 64-deep
    d48 = heur.default_moe_config(48, 1472, 2048, arch="sm_90a", top_k=8, **kw).validate()
    assert d48.warp_n == 64                                      # (N not a multiple of 256: one atom per warpgroup)
    assert not big.warp_specialized
    monkeypatch.setattr(heur, "WGMMA_MOE_ODD_BLOCKS", False)
    assert heur.moe_block_size(512, 8, 128, wgmma=True) == 64 and heur.moe_block_size(512, 2, 8, wgmma=True) == 64
    assert heur.moe_block_size(512, 8, 128, wgmma=False) == 32 and heur.moe_block_size(128, 8, 128, wgmma=True) == 16


@pytest.mark.parametrize("moe,ws,bm", [(False, False, 128), (False, True, 128), (True, True, 48), (True, False, 96)])
def test_sm90_two_atoms_per_warpgroup_compiles(moe, ws, bm):
    """warp_n=128: a warpgroup takes two 64-row weight atoms; against warp_n=64 on the same 256-wide tile the
    kernel has half the threads and each warpgroup issues twice the wgmmas (two accumulators per activation
    fragment); no spills."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm, block_n=256,
              block_k=64, warp_m=bm, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90", warp_specialized=ws,
              moe=moe, moe_top_k=8 if moe else 1, persistent_ctas=132 if ws else 0)
    two = GemmConfig(**kw, warp_n=128).validate()
    assert two.num_threads == 128 * (2 + ws)
    art = compile_for_arch(Sm90MixedGemm(two), *fake_operands(two), arch="sm_90a", options="--enable-tvm-ffi")
    assert f".reqntid {two.num_threads}" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    if not ws:     # (a producer warpgroup takes at most two consumer warpgroups: no 4-warpgroup twin)
        one = GemmConfig(**kw, warp_n=64).validate()
        ref = compile_for_arch(Sm90MixedGemm(one), *fake_operands(one), arch="sm_90a", options="--enable-tvm-ffi")
        assert art.ptx.count("wgmma.mma_async") == 2 * ref.ptx.count("wgmma.mma_async")


def test_sm90_two_atoms_errors():
    base = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, block_n=256,
                block_k=64, warp_m=128, warp_n=128, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90")
    GemmConfig(**base).validate()
    with pytest.raises(ValueError, match="warp_n=128 on the wgmma mainloop takes split_k=1"):
        GemmConfig(**{**base, "split_k": 2}).validate()
    with pytest.raises(ValueError, match="one accumulator per atom"):
        GemmConfig(**{**base, "a_dtype": "float8e4m3", "b_dtype": "int4", "fp8_fast_accum": False,
                      "group_size": 0}).validate()
    with pytest.raises(ValueError, match="warpgroup tile"):
        GemmConfig(**{**base, "warp_n": 256}).validate()
    with pytest.raises(ValueError, match="A-fragment registers"):
        GemmConfig(**{**base, "block_m": 256, "warp_m": 256}).validate()
    with pytest.raises(ValueError, match="A-fragment registers"):
        GemmConfig(**{**base, "block_m": 64, "warp_m": 64, "block_n": 512}).validate()
    GemmConfig(**{**base, "glu": True, "activation": "silu_glu", "staged_store": True}).validate()   # GPU-tested
    with pytest.raises(ValueError, match="multiple of the warp shape"):
        GemmConfig(**{**base, "block_n": 64, "warp_n": 128}).validate()
    with pytest.raises(ValueError, match="consumer warpgroups leaves|leave 104 registers"):
        GemmConfig(**{**base, "block_n": 512, "warp_specialized": True}).validate()


def test_dense_two_atom_default():
    """`WGMMA_TWO_ATOMS`: 4-bit weights with 16-bit activations at M in (2048, 4096] and N <= 8192 take 128 x 256 x 64
    tiles of two atoms per warpgroup with the producer warpgroup on a persistent grid; other M, wider N and 8-bit
    weights keep one atom per warpgroup."""
    from humming_cute.tune.heuristics import default_config

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a")
    c = default_config(4096, 8192, 8192, b_dtype="uint4", group_size=128, **kw).validate()
    assert (c.block_m, c.block_n, c.warp_n, c.warp_specialized, c.persistent_ctas) == (128, 256, 128, True, 132)
    for m, n, b, g in ((8192, 8192, "uint4", 128), (1024, 8192, "uint4", 128), (4096, 28672, "uint4", 128),
                       (4096, 8192, "int8", 0)):
        assert default_config(m, n, 8192, b_dtype=b, group_size=g, **kw).warp_n == 64


@pytest.mark.parametrize("moe", [False, True])
def test_sm90_two_atoms_glu_compiles(moe):
    """A GLU epilogue (staged fp32 accumulators) with two atoms per warpgroup (GPU-tested: test_wgmma_glu_staged,
    test_moe_wgmma_glu_staged): validates without ALLOW_UNVERIFIED, no spills, within the shared-memory estimate."""
    from humming_cute.config import smem_bytes
    from humming_cute.testing.ptx import launch_smem_bytes

    cfg = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128,
                     block_n=256, block_k=64, warp_m=128, warp_n=128, warp_k=64, stages=4, arch="sm_90a",
                     mainloop="sm90", warp_specialized=True, staged_store=True, activation="silu_glu", glu=True,
                     moe=moe, moe_top_k=8 if moe else 1).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    from humming_cute.runtime.compile import compile_kernel
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert need[0] <= smem_bytes(cfg) <= need[0] + 1024


@pytest.mark.parametrize("bm,bn,staged,down,pc", [(128, 256, False, True, 132), (48, 256, False, False, 132),
                                                   (160, 128, True, True, 132), (128, 256, False, True, 0)])
def test_sm90_moe_prefetch_rows_compiles(bm, bn, staged, down, pc):
    """`moe_prefetch_rows` (wgmma MoE on the persistent grid): each storing thread copies its next tile's expert and
    routed rows, then the tile's routing weights and global scale, by 4-byte cp.async (160-row blocks: two rows per
    thread); the k-tile loop keeps its wgmma descriptors in uniform registers (the expert is warp-uniform); no
    spills; the launch's shared memory within the estimate. Off without the persistent grid."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    cfg = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm,
                     block_n=bn, block_k=64, warp_m=bm, warp_n=128 if bm <= 128 else 64, warp_k=64, stages=4,
                     arch="sm_90a", mainloop="sm90", warp_specialized=True, persistent_ctas=pc,
                     moe_cp_async_rows=True, staged_store=staged, moe=True, moe_top_k=8, moe_down=down,
                     moe_mul_topk_weights=down).validate()
    assert cfg.moe_prefetch_rows == (pc > 0)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    words = len(re.findall(r"cp\.async\.ca\.shared\.global\s+\[[^\]]+\],\s*\[[^\]]+\],\s*4,", art.ptx))
    rows = (bm + 127) // 128
    # per traced copy site: expert + rows (before the loop and before each epilogue), weight (down) + global scale
    assert words == (2 * (1 + rows) + rows * down + 1 if pc else 0), words
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert need[0] <= smem_bytes(cfg) <= need[0] + 1024
    assert not cfg.with_(stream_k=True).moe_prefetch_rows and not cfg.with_(pingpong=True).moe_prefetch_rows


@pytest.mark.parametrize("extra", [
    dict(warp_specialized=True),                                                           # 2 consumers, TMA rows
    dict(warp_specialized=True, moe=True, moe_top_k=8, moe_cp_async_rows=True),            # 2 consumers, cp.async rows
    dict(warp_specialized=True, moe=True, moe_top_k=8, moe_cp_async_rows=True, block_n=256, warp_n=128,
         persistent_ctas=132),                                                             # two atoms per warpgroup
    dict(warp_specialized=True, block_n=64),                                               # 1 consumer
    dict(warp_specialized=True, moe=True, moe_top_k=8, moe_cp_async_rows=True, block_m=96, warp_m=96, block_n=256,
         warp_n=128, persistent_ctas=132, stages=8)])                 # (spilled when ptxas dropped setmaxnreg)
def test_sm90_register_split_fits_the_pool(extra):
    """The producer's setmaxnreg.dec and the consumers' setmaxnreg.inc ask at most the registers the launch gave the
    CTA (threads x the 65536 / threads cap): asking more leaves a consumer warp waiting for ever (128-row blocks with
    cp.async rows and two consumer warpgroups used to ask 64 + 224, 1024 registers past the pool, and hung)."""
    from humming_cute.config import wgmma_register_split

    cfg, art = _compile_sm90({**_SM90_BASE, **extra})
    dec = [int(v) for v in re.findall(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+(\d+)", art.ptx)]
    inc = [int(v) for v in re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+)", art.ptx)]
    n_cons = cfg.block_n // cfg.warp_n
    assert dec and inc and (dec[0], inc[0]) == wgmma_register_split(n_cons, cfg.moe_cp_async_rows)
    threads = 128 * (n_cons + 1)
    assert re.search(rf"\.reqntid {threads}, 1, 1", art.ptx)
    # launch bounds of one CTA per SM: without them ptxas may not know the entry register count and then drops the
    # setmaxnreg pair (warning C7508), leaving the consumers at 65536 / threads registers (spills for 96-row blocks)
    assert re.search(r"\.minnctapersm 1\b", art.ptx)
    pool = min(240, 65536 // threads // 8 * 8) * threads
    assert 128 * max(dec) + 128 * n_cons * max(inc) <= pool
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_wgmma_register_split_values():
    """The splits the kernels take: 40 / 232 with two consumer warpgroups (CUTLASS's 384-thread split), 56 / 224
    with cp.async rows, 240 (the cap) with one consumer, 152 with three; never past the pool."""
    from humming_cute.config import wgmma_register_split

    assert wgmma_register_split(2) == (40, 232) and wgmma_register_split(2, True) == (56, 224)
    assert wgmma_register_split(1) == (40, 240) and wgmma_register_split(3) == (40, 152)
    for n in (1, 2, 3):
        for rows in (False, True):
            p, c = wgmma_register_split(n, rows)
            threads = 128 * (n + 1)
            assert 128 * p + 128 * n * c <= min(240, 65536 // threads // 8 * 8) * threads


@pytest.mark.parametrize("bm,bn,extra", [
    (176, 128, dict(warp_specialized=True)), (192, 128, dict()), (160, 128, dict(split_k=2)),
    (96, 256, dict(warp_n=128, warp_specialized=True, persistent_ctas=132)),
    (176, 128, dict(warp_specialized=True, cluster_n=2)), (48, 64, dict(staged_store=True)),
    (240, 128, dict(warp_specialized=True, persistent_ctas=132))])
def test_sm90_dense_odd_m_compiles(bm, bn, extra):
    """Dense wgmma tiles of any multiple of 16 activation rows (wgmma N = block_m; 176 x 128 carries 1.4x the MACs
    of 128 x 128 per k-tile for 1.3x the shared memory): that wgmma, no spills, with the producer warpgroup,
    split-K, two atoms, multicast clusters, the staged store, a persistent grid."""
    kw = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, has_bias=True, block_m=bm,
                 warp_m=bm, block_n=bn, block_k=64, warp_n=64, warp_k=64, stages=4, arch="sm_90a",
                 mainloop="sm90"), **extra}
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert set(re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16", art.ptx)) == {str(bm)}
    assert "cp.async.bulk.tensor" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="multiple of 16"):
        GemmConfig(**{**kw, "block_m": bm + 8, "warp_m": bm + 8}).validate()


@pytest.mark.parametrize("bm,bn,wn,a_split,extra", [
    (128, 128, 64, 2, dict(warp_specialized=True)), (176, 256, 128, 4, dict(warp_specialized=True)),
    (176, 256, 128, 4, dict(warp_specialized=True, persistent_ctas=132, cluster_n=2)),
    (64, 128, 64, 4, dict()), (48, 256, 128, 2, dict(warp_specialized=True, moe=True, moe_top_k=8))])
def test_sm90_a_split_compiles(bm, bn, wn, a_split, extra):
    """a_split: the wgmma A fragments double-buffered in pieces of a k-tile: one wgmma per k16 step and atom in
    the loop (as with whole k-tiles), a wgmma wait per piece, no spills; 176 x 256 tiles of two atoms per warpgroup
    fit only with it."""
    kw = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm, warp_m=bm,
                 block_n=bn, warp_n=wn, block_k=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90"), **extra}
    cfg = GemmConfig(**kw, a_split=a_split).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert art.ptx.count("wgmma.mma_async") == 4 * (wn // 64)           # 4 k16 steps x atoms, once in the loop
    assert len(re.findall(r"wgmma\.wait_group\.sync\.aligned\s+1;", art.ptx)) == a_split
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    if bm == 176:
        with pytest.raises(ValueError, match="warp_n=128 keeps block_m accumulator"):
            GemmConfig(**kw).validate()                                 # whole k-tiles: too many registers


def test_sm90_a_split_errors():
    """a_split: 2 or 4 pieces of a 16-bit k-tile, wgmma only; anything else is named in the error."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, warp_m=128,
              block_n=128, warp_n=64, block_k=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90")
    assert GemmConfig(**kw, a_split=2).validate().a_split == 2
    for bad, match in ((dict(a_split=3), "a_split takes"), (dict(a_split=8), "a_split takes"),
                       (dict(a_split=2, a_dtype="float8e4m3", b_dtype="int4", group_size=0, c_dtype="float16"),
                        "a_split takes"),
                       (dict(a_split=2, mainloop="sm80", block_m=64, warp_m=32, block_k=128, warp_k=64),
                        "a_split takes the wgmma")):
        with pytest.raises(ValueError, match=match):
            GemmConfig(**{**kw, **bad}).validate()


@pytest.mark.parametrize("bm,bn,wn,bk,a_split,b,group,cached", [
    (48, 256, 64, 128, 2, "uint4", 128, True), (48, 512, 128, 64, 4, "uint4", 128, True),
    (128, 128, 64, 64, 2, "uint3", 64, True), (128, 128, 64, 64, 2, "uint4", 32, False),
    (128, 128, 64, 64, 1, "uint4", 128, False)])
def test_sm90_piece_scales_compiles(bm, bn, wn, bk, a_split, b, group, cached):
    """`piece_scales`: with A in pieces (a_split > 1) under one scale row per k-tile (group_size >= block_k), the
    k-tile's first piece loads and broadcasts the scales and zero points and the others reuse its registers: fewer
    shared-memory loads and PRMTs than with the option off, no spills; groups shorter than the k-tile or whole
    k-tiles compile to the same PTX either way."""
    kw = dict(a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=group, block_m=bm, warp_m=bm, block_n=bn,
              warp_n=wn, block_k=bk, warp_k=bk, stages=4, arch="sm_90a", mainloop="sm90", a_split=a_split,
              warp_specialized=True)
    if bm == 48:
        kw.update(moe=True, moe_top_k=8, moe_cp_async_rows=True, persistent_ctas=132)
    ptx = {}
    for on in (True, False):
        cfg = GemmConfig(**kw, piece_scales=on).validate()
        art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
        assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
        ptx[on] = art.ptx
    count = {on: (len(re.findall(r"ld\.shared", p)), len(re.findall(r"\bprmt\.", p))) for on, p in ptx.items()}
    if cached:
        assert count[True][0] < count[False][0] and count[True][1] < count[False][1], count
    else:
        assert count[True] == count[False], count
    with pytest.raises(ValueError, match="piece_scales must be True or False"):
        GemmConfig(**kw, piece_scales=1).validate()


def test_row_perm_coordinates():
    """`row_perm`: thread (warp w, lane 4 g + t) dequantizes weight rows 16 (g % 4) + g // 4 + 2 w (+ 8) from
    lane 4 (g // 4 + 2 w) + t's words of row group g % 4 (the kernel's substitution); the C coordinates its
    accumulators get (`c_coordinates`) name those rows, the activation columns unchanged; and the weight words
    the 32 lanes of a warp read (offset row group + 4 lane) fall in 32 different banks."""
    import cutlass
    import cutlass.cute as cute
    import cutlass.utils.hopper_helpers as sm90_utils
    from cutlass.cute.nvgpu import warpgroup

    from humming_cute.kernels.mainloop_sm90 import c_coordinates
    from humming_cute.testing.ptx import _dsl_arch

    bm = 32
    got = {}

    @cute.jit
    def probe():
        mma = sm90_utils.make_trivial_tiled_mma(cutlass.Float16, cutlass.Float16, warpgroup.OperandMajorMode.K,
                                                warpgroup.OperandMajorMode.K, cutlass.Float32, (1, 1, 1), (64, bm),
                                                warpgroup.OperandSource.RMEM)
        for perm in cutlass.range_constexpr(2):
            for t in cutlass.range_constexpr(128):
                c = mma.get_slice(t).partition_C(c_coordinates(bm, perm == 1))
                got[(perm, t)] = [tuple(int(v) for v in re.findall(r"-?\d+", str(c[i])))
                                  for i in range(cute.size(c))]

    with _dsl_arch("sm_90a"):
        probe()
    for t in range(128):
        w, lane = t // 32, t % 32
        g, tq = lane // 4, lane % 4
        wr_d, g_d = g % 4, g // 4 + 2 * w               # the kernel's substitution
        lane_d = 4 * g_d + tq
        rows = {16 * wr_d + lane_d // 4, 16 * wr_d + lane_d // 4 + 8}   # (the rows of that packed word)
        plain, perm = got[(0, t)], got[(1, t)]
        assert len(plain) == len(perm) == bm // 2
        assert {n for n, _ in plain} == {16 * w + g, 16 * w + g + 8}
        assert {n for n, _ in perm} == rows
        assert [m for _, m in perm] == [m for _, m in plain]
        for (n0, _), (n1, _) in zip(plain, perm):      # A row r -> weight row pi(r), the same map for every value
            r = n0
            assert n1 == 16 * (r % 4) + (r // 4) % 2 + 8 * ((r // 8) % 2) + 2 * (r // 16)
    for w in range(4):
        banks = set()
        for lane in range(32):
            g, tq = lane // 4, lane % 4
            banks.add((g % 4 + 4 * (4 * (g // 4 + 2 * w) + tq)) % 32)
        assert len(banks) == 32


def test_row_perm_rule():
    """`row_perm=None` (the default) permutes the wgmma kernel's weight rows where that measured faster (dense, at
    most 128 activation rows, one atom per warpgroup or the staged store); True / False force it; the mma.sync
    mainloop never uses it."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    for m, n, k, want in ((64, 4096, 14336, True), (256, 8192, 8192, True), (4096, 8192, 8192, True),
                          (8192, 8192, 8192, False), (1, 8192, 8192, False)):
        cfg = default_config(m, n, k, **kw)
        assert cfg.row_perm is None
        assert cfg.use_row_perm == want, (m, n, k, cfg)
        if cfg.mainloop == "sm90":
            assert cfg.use_row_perm == (cfg.block_m <= 128 and (cfg.warp_n == 64 or cfg.staged_store))
            assert not cfg.with_(moe=True).use_row_perm and cfg.with_(moe=True, row_perm=True).use_row_perm
            assert cfg.with_(row_perm=not want).use_row_perm == (not want)
        else:
            assert not cfg.with_(row_perm=True).use_row_perm
    two = default_config(4096, 8192, 8192, **kw)                # 128 x 256, two atoms per warpgroup, staged
    assert two.warp_n == 128 and two.use_row_perm and not two.with_(staged_store=False).use_row_perm
    assert not default_config(4096, 28672, 4096, **kw).with_(staged_store=True).use_row_perm   # (256 rows)
    with pytest.raises(ValueError, match="row_perm"):
        default_config(64, 4096, 4096, **kw).with_(row_perm="yes").validate()


def test_dense_staged_default(monkeypatch):
    """`heuristics.DENSE_WGMMA_STAGED` (on by default): dense wgmma configs of 16-bit activations from M = 256 take
    the staged C store - in the activation ring with the same pipeline where the CTA runs one tile, beside it with
    the pipeline cut to fit on a persistent grid; split, GLU, MoE, 8-bit and smaller-M configs keep theirs. With the
    staged store `row_perm` stays on for two-atom 128-row tiles (off for 256-row ones)."""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    problems = ((4096, 8192, 8192), (8192, 4096, 14336), (8192, 28672, 4096), (1024, 4096, 4096), (256, 8192, 8192),
                (64, 4096, 14336))
    assert h.DENSE_WGMMA_STAGED
    staged = {mnk: default_config(*mnk, **kw).validate() for mnk in problems}
    monkeypatch.setattr(h, "DENSE_WGMMA_STAGED", False)
    plain = {mnk: default_config(*mnk, **kw) for mnk in problems}
    assert not any(c.staged_store for c in plain.values())
    for mnk, cfg in staged.items():
        before = plain[mnk]
        if mnk[0] >= 256:
            assert cfg == before.with_(staged_store=True, stages=cfg.stages) and smem_bytes(cfg) <= 227 * 1024
            assert cfg.staging_in_ring == (before.persistent_ctas == 0)
            assert cfg.stages == before.stages if cfg.staging_in_ring else cfg.stages < before.stages
            assert cfg.use_row_perm == (cfg.block_m <= 128)
        else:
            assert cfg == before
    assert staged[(4096, 8192, 8192)].warp_n == 128 and staged[(4096, 8192, 8192)].persistent_ctas  # two atoms
    assert staged[(8192, 4096, 14336)].staging_in_ring                       # one 256-row tile per CTA
    assert not staged[(8192, 28672, 4096)].staging_in_ring                   # persistent (`WGMMA_PERSISTENT_SHORT_K`)
    glu = default_config(4096, 8192, 8192, glu=True, **kw)
    monkeypatch.setattr(h, "DENSE_WGMMA_STAGED", True)
    assert glu == default_config(4096, 8192, 8192, glu=True, **kw)
    a8 = dict(kw, a_dtype="float8e4m3", b_dtype="int4", group_size=0)
    assert not default_config(4096, 8192, 8192, **a8).staged_store


def test_four_consumer_warpgroups_with_the_producer():
    """The producer warpgroup beside four consumer warpgroups (20 warps): launched with 96 registers per thread, the
    producer gives 56 of them back and the consumers take 104 (setmaxnreg); tiles whose accumulators and A fragments
    need more are refused, as are more than 20 warps."""
    base = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=48, block_n=512,
                block_k=64, warp_m=48, warp_n=128, warp_k=64, stages=8, arch="sm_90a", mainloop="sm90", moe=True,
                moe_top_k=8, warp_specialized=True, a_split=4, moe_cp_async_rows=True, persistent_ctas=132)
    cfg = GemmConfig(**base).validate()
    assert cfg.num_threads == 640
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+56;", art.ptx)
    assert re.search(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+104;", art.ptx)
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert all(r.registers <= 96 for r in art.ptxas.values())
    with pytest.raises(ValueError, match="104 registers"):
        GemmConfig(**{**base, "a_split": 2}).validate()               # 48 + 2 x 16 > 72
    with pytest.raises(ValueError, match="104 registers"):
        GemmConfig(**{**base, "block_m": 128, "warp_m": 128, "warp_n": 64, "block_n": 256, "a_split": 1}).validate()
    GemmConfig(**{**base, "warp_n": 64, "block_n": 256, "a_split": 1}).validate()     # 24 + 16 <= 72
    with pytest.raises(ValueError, match="1..16 are allowed"):
        GemmConfig(**{**base, "warp_specialized": False, "persistent_ctas": 0, "moe_cp_async_rows": False,
                      "warp_n": 64, "block_n": 1024}).validate()


def test_wgmma_k_slices_persistent_and_moe_compile():
    """K slices on the persistent grid and the MoE GEMM: each slice's warpgroups walk the same tiles, slice 0's add
    the other's sums (named barrier 6 over all consumer threads, then again once the buffer is read) and store; a
    persistent MoE tile with cp.async rows (four consumer warpgroups and the producer, 640 threads) and a dense one
    compile without spills within the launch's shared memory; a one-tile-per-CTA MoE tile keeps one barrier."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    moe = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=48, block_n=128,
                     block_k=128, warp_m=48, warp_n=64, warp_k=64, stages=6, arch="sm_90a", mainloop="sm90",
                     moe=True, moe_top_k=8, warp_specialized=True, persistent_ctas=132,
                     moe_cp_async_rows=True).validate()
    dense = GemmConfig(a_dtype="bfloat16", b_dtype="int8", c_dtype="bfloat16", group_size=0, block_m=128,
                       block_n=64, block_k=128, warp_m=128, warp_n=64, warp_k=64, stages=4, arch="sm_90a",
                       mainloop="sm90", warp_specialized=True, persistent_ctas=132, staged_store=True).validate()
    one = moe.with_(persistent_ctas=0).validate()
    for cfg, threads, syncs in ((moe, 640, 4), (dense, 384, 4), (one, 640, 1)):
        assert cfg.consumer_warpgroups * 128 + 128 == threads == cfg.num_threads
        art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
        assert re.findall(r"bar\.sync\s+6, (\d+);", art.ptx) == [str(threads - 128)] * syncs
        assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
        need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
        assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024


def test_wgmma_k_slices_compile(monkeypatch):
    """warp_k = block_k / 2 on the wgmma mainloop: two consumer warpgroups per weight row range, each multiplying one
    half of every k-tile; the second half's fp32 sums meet the first's in shared memory after one barrier of all
    consumer threads (named barrier 6); the estimate covers the launch; the default of the M = 64 cluster-split
    tile of 4-bit weights; refused with the options it does not take."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    import humming_cute.tune.heuristics as h

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    cfg = default_config(64, 4096, 14336, **kw).validate()          # the default at M = 64 (`WGMMA_K_SLICES`)
    assert (cfg.block_m, cfg.block_n, cfg.block_k, cfg.warp_k, cfg.split_k, cfg.cluster_split_k) == (
        64, 64, 128, 64, 2, True)
    monkeypatch.setattr(h, "WGMMA_K_SLICES", False)
    base = default_config(64, 4096, 14336, **kw)
    assert base == cfg.with_(warp_k=128, stages=base.stages)
    assert default_config(64, 4096, 14336, **{**kw, "b_dtype": "int8", "group_size": 0}).warp_k == 128
    assert cfg.consumer_warpgroups == 2 and cfg.num_threads == 256
    assert smem_bytes(cfg) - smem_bytes(cfg.with_(warp_k=128)) == 64 * 64 * 4 + 16
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert re.findall(r"bar\.sync\s+6, (\d+);", art.ptx) == ["256"]
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for bad in (dict(a_split=2), dict(split_k=2, cluster_split_k=False),
                dict(split_k=1, cluster_split_k=False, warp_specialized=True, persistent_ctas=132, stream_k=True),
                dict(glu=True, activation="silu_glu", staged_store=True)):
        with pytest.raises(ValueError, match="K split across consumer warpgroups"):
            base.with_(warp_k=64, **bad).validate()
    with pytest.raises(ValueError, match="multiple of the weight atom's K"):
        base.with_(block_k=128, warp_k=32).validate()
    with pytest.raises(ValueError, match="K split across consumer warpgroups"):
        GemmConfig(a_dtype="float8e4m3", b_dtype="int4", c_dtype="float16", group_size=0, block_m=64, block_n=64,
                   block_k=128, warp_m=64, warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90").validate()


def test_wgmma_pingpong_compile():
    """pingpong: two sets of consumer warpgroups on alternate tiles of the persistent grid (a MoE tile with cp.async
    rows, a dense staged tile of two atoms per warpgroup) compile for sm_90a without spills, each warpgroup with its
    own staging tile / row table (the estimate covers the launch); refused without the persistent grid, with
    stream-K, K slices, clusters or 8-bit activations (not GPU-tested), and on the mma.sync mainloop."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    moe = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=48, block_n=128,
                     block_k=64, warp_m=48, warp_n=128, warp_k=64, stages=8, arch="sm_90a", mainloop="sm90",
                     moe=True, moe_top_k=8, warp_specialized=True, persistent_ctas=132, moe_cp_async_rows=True,
                     pingpong=True)
    dense = GemmConfig(a_dtype="float16", b_dtype="int8", c_dtype="float16", group_size=0, block_m=128,
                       block_n=128, block_k=64, warp_m=128, warp_n=128, warp_k=64, stages=4, arch="sm_90a",
                       mainloop="sm90", warp_specialized=True, persistent_ctas=132, staged_store=True, pingpong=True)
    for cfg in (moe, dense):
        cfg = cfg.validate()
        assert cfg.consumer_warpgroups == 2 and cfg.epilogue_warpgroups == 2 and cfg.num_threads == 384
        one = cfg.with_(pingpong=False)
        # a staging tile / row table per storing warpgroup: one more than the single set's
        extra = (cfg.block_m * 12 if cfg.moe else one.staging_bytes) + 16       # (+ the turn barriers)
        if one.moe_prefetch_rows:          # (the single set's MoE row prefetch slots; pingpong has none)
            extra -= 128 * 4 * (2 + (one.block_m + 127) // 128) * one.epilogue_warpgroups + 32
        assert smem_bytes(cfg) - smem_bytes(one) == extra
        art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
        assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
        need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
        assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for base, bad in ((moe, dict(persistent_ctas=0)), (dense, dict(stream_k=True, block_n=64, warp_n=64)),
                      (moe, dict(block_n=64, warp_n=64, block_k=128, warp_k=64)),
                      (moe, dict(cluster_n=2, moe_cp_async_rows=False)),
                      (dense, dict(a_dtype="float8e4m3", b_dtype="int4", c_dtype="float16", staged_store=False,
                                   block_k=128, warp_k=128))):
        with pytest.raises(ValueError, match="pingpong takes"):
            base.with_(**bad).validate()
    with pytest.raises(ValueError, match="pingpong is an option of the wgmma mainloop"):
        GemmConfig(pingpong=True, arch="sm_90a").validate()
    with pytest.raises(ValueError, match="pingpong must be True or False"):
        GemmConfig(pingpong=1, arch="sm_90a").validate()


def test_wgmma_tall_fill_default_compile(monkeypatch):
    """`WGMMA_TALL_MIN_FILL`: above M = 256, 256-row tiles also where their grid gives 128 of 132 SMs a tile (one CTA
    per SM, the deepest ring beside the staged store's tiles: 6 stages for 4-bit, 5 for 8-bit weights), compiled for
    sm_90a without spills within the launch's shared memory; fewer tiles, 8-bit activations and the switch off keep
    the 128-row tiles."""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes
    from humming_cute.tune.heuristics import default_config

    kw = dict(c_dtype="float16", arch="sm_90a", num_sms=132)
    w4 = dict(kw, a_dtype="float16", b_dtype="uint4", group_size=128)
    w8 = dict(kw, a_dtype="bfloat16", b_dtype="int8", group_size=0)
    cfg = default_config(1024, 4096, 14336, **w4).validate()
    assert (cfg.block_m, cfg.block_n, cfg.stages, cfg.persistent_ctas, cfg.staging_in_ring) == (256, 128, 6, 0, True)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for mnk in ((1024, 4096, 4096), (512, 8192, 8192), (1001, 4096, 4096)):
        assert (default_config(*mnk, **w4).block_m, default_config(*mnk, **w8).block_m) == (256, 256), mnk
    assert default_config(1024, 4096, 4096, **w8).stages == 5
    for mnk in ((768, 4096, 4096), (256, 8192, 8192), (512, 4096, 4096)):
        assert default_config(*mnk, **w4).block_m <= 128, mnk
    a8 = dict(kw, a_dtype="float8e4m3", b_dtype="int4", group_size=0)
    assert default_config(1024, 4096, 4096, **a8).block_m == 128
    monkeypatch.setattr(h, "WGMMA_TALL_MIN_FILL", 1.01)
    assert default_config(1024, 4096, 14336, **w4).block_m == 128


def test_moe_block48_deep_k_default_compile(monkeypatch):
    """`MOE_BLOCK_48_DEEP_K`: the 48-row MoE tile of weights of at most 4 bits over K >= 2048 takes 128-deep k-tiles
    with its A fragments in 2 pieces on four one-atom consumer warpgroups (`MOE_BLOCK_48_DEEP_K_FOUR_WG`, 6 stages;
    two-atom warpgroups without it) and the staged store (`MOE_BLOCK_48_DEEP_K_STAGED`), compiled
    for sm_90a without spills within the launch's shared memory; K = 768, 8-bit weights, groups under 128 and the
    switch off keep the 64-deep tile."""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes
    from humming_cute.tune.heuristics import default_moe_config

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a", top_k=8)
    cfg = default_moe_config(48, 1536, 2048, b_dtype="uint4", group_size=128, **kw).validate()
    assert (cfg.block_n, cfg.warp_n, cfg.block_k, cfg.warp_k, cfg.a_split, cfg.stages, cfg.staged_store,
            cfg.consumer_warpgroups, cfg.piece_scales) == (256, 64, 128, 128, 2, 6, True, 4, True)
    monkeypatch.setattr(h, "MOE_BLOCK_48_DEEP_K_STAGED", False)
    assert default_moe_config(48, 1536, 2048, b_dtype="uint4", group_size=128, **kw) == cfg.with_(staged_store=False,
                                                                                                    stages=7)
    monkeypatch.setattr(h, "MOE_BLOCK_48_DEEP_K_STAGED", True)
    monkeypatch.setattr(h, "MOE_BLOCK_48_DEEP_K_FOUR_WG", False)
    two = default_moe_config(48, 1536, 2048, b_dtype="uint4", group_size=128, **kw)
    assert (two.warp_n, two.consumer_warpgroups, two.stages) == (128, 2, 7)
    monkeypatch.setattr(h, "MOE_BLOCK_48_DEEP_K_FOUR_WG", True)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for n, k, b, g in ((2048, 768, "uint4", 128), (1536, 2048, "int8", 0), (1536, 2048, "uint4", 64)):
        assert default_moe_config(48, n, k, b_dtype=b, group_size=g, is_down=k < n, **kw).block_k == 64
    monkeypatch.setattr(h, "MOE_BLOCK_48_DEEP_K", False)
    off = default_moe_config(48, 1536, 2048, b_dtype="uint4", group_size=128, **kw)
    assert (off.block_k, off.a_split, off.stages) == (64, 1, 8)


def test_moe_block48_wide_short_k_default_compile(monkeypatch):
    """`MOE_BLOCK_48_WIDE_SHORT_K`: the 48-row MoE tile of weights of at most 4 bits over K < 2048 takes 512-wide
    weight tiles (four consumer warpgroups of two atoms beside the producer warpgroup, A fragments in 4 pieces, 8
    stages), compiled for sm_90a without spills within the launch's shared memory; K >= 2048, 8-bit weights, N not a
    multiple of 512 and the switch off keep the 256-wide tile."""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes
    from humming_cute.tune.heuristics import default_moe_config

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a", top_k=8, group_size=128)
    cfg = default_moe_config(48, 2048, 768, b_dtype="uint4", is_down=True, mul_topk_weights=True, **kw).validate()
    assert (cfg.block_n, cfg.warp_n, cfg.block_k, cfg.a_split, cfg.stages, cfg.num_threads) == (
        512, 128, 64, 4, 8, 640)
    assert cfg.warp_specialized and cfg.persistent_ctas and cfg.moe_cp_async_rows
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for n, k, b in ((1536, 2048, "uint4"), (2048, 768, "uint8"), (1792, 768, "uint4")):
        assert default_moe_config(48, n, k, b_dtype=b, is_down=k < n, **kw).block_n == 256, (n, k, b)
    monkeypatch.setattr(h, "MOE_BLOCK_48_WIDE_SHORT_K", False)
    off = default_moe_config(48, 2048, 768, b_dtype="uint4", is_down=True, mul_topk_weights=True, **kw)
    assert (off.block_n, off.a_split, off.stages) == (256, 1, 8)


def test_moe_staged_block128_default_compile(monkeypatch):
    """`MOE_STAGED_BLOCK_128`: the 128-row two-atom MoE tile (persistent, cp.async rows) of 16-bit activations takes
    the staged store at the deepest pipeline beside its staging tiles (7 stages), compiled for sm_90a without spills
    within the launch's shared memory; the switch off keeps the direct row store at 8 stages. (The bulk copy-out of
    short K is switched off here: `test_moe_bulk_store_default` covers it.)"""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes
    from humming_cute.tune.heuristics import default_moe_config

    monkeypatch.setattr(h, "MOE_BULK_STORE_SHORT_K", False)
    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a", top_k=8, b_dtype="uint4", group_size=128)
    for n, k, down in ((2048, 768, True), (1536, 2048, False)):
        cfg = default_moe_config(128, n, k, is_down=down, mul_topk_weights=down, **kw).validate()
        assert (cfg.block_n, cfg.warp_n, cfg.persistent_ctas > 0, cfg.moe_cp_async_rows) == (256, 128, True, True)
        assert cfg.staged_store and not cfg.staging_in_ring and cfg.stages == 7 and cfg.moe_prefetch_rows
        art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
        assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
        assert len(re.findall(r"st\.global\.v4\.", art.ptx)) == 2 * 128 // 16     # (per atom: 8 rows / thread)
        need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
        assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    monkeypatch.setattr(h, "MOE_STAGED_BLOCK_128", False)
    off = default_moe_config(128, 2048, 768, is_down=True, mul_topk_weights=True, **kw)
    assert (off.staged_store, off.stages) == (False, 8)


def test_moe_bulk_store_default(monkeypatch):
    """`MOE_BULK_STORE_SHORT_K`: the staged 128-row two-atom MoE tile takes the bulk copy-out at K <= 1024 (6 stages,
    compiled for sm_90a without spills within the launch's shared memory), not at longer K, not without the staged
    store, and not with the switch off."""
    import humming_cute.tune.heuristics as h
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes
    from humming_cute.tune.heuristics import default_moe_config

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a", top_k=8, b_dtype="uint4", group_size=128)
    cfg = default_moe_config(128, 2048, 768, is_down=True, mul_topk_weights=True, **kw).validate()
    assert cfg.staged_store and cfg.moe_bulk_store and cfg.stages == 6 and cfg.moe_prefetch_rows
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert len(re.findall(r"cp\.async\.bulk\.global\.shared::cta\.bulk_group", art.ptx)) == 1
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    assert default_moe_config(128, 2048, 1024, is_down=True, mul_topk_weights=True, **kw).moe_bulk_store
    for n, k in ((1536, 2048), (2048, 1280)):
        assert not default_moe_config(128, n, k, **kw).moe_bulk_store
    monkeypatch.setattr(h, "MOE_BULK_STORE_SHORT_K", False)
    assert not default_moe_config(128, 2048, 768, is_down=True, mul_topk_weights=True, **kw).moe_bulk_store
    monkeypatch.setattr(h, "MOE_BULK_STORE_SHORT_K", True)
    monkeypatch.setattr(h, "MOE_STAGED_BLOCK_128", False)
    off = default_moe_config(128, 2048, 768, is_down=True, mul_topk_weights=True, **kw)
    assert not off.staged_store and not off.moe_bulk_store


@pytest.mark.parametrize("bm,bn,warp_n,down", [(128, 256, 128, True), (160, 128, 64, False)])
def test_sm90_moe_bulk_store_compiles(bm, bn, warp_n, down):
    """`moe_bulk_store`: the staged MoE tile leaves shared memory by cp.async.bulk (one per routed row, after the
    proxy fence), the next tile's staging waits for the copies' reads and the CTA for all of them before it exits;
    the staging tile holds all of a warpgroup's atoms (the estimate's staging bytes follow); no spills, within the
    estimate. Refused off the staged persistent MoE GEMM, with a GLU, pingpong or stream-K."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    raw = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=bm,
                     block_n=bn, block_k=64, warp_m=bm, warp_n=warp_n, warp_k=64, stages=5, arch="sm_90a",
                     mainloop="sm90", warp_specialized=True, persistent_ctas=132, moe_cp_async_rows=True,
                     staged_store=True, moe_bulk_store=True, moe=True, moe_top_k=8, moe_down=down,
                     moe_mul_topk_weights=down)
    cfg = raw.validate()
    assert cfg.staging_bytes == bm * (warp_n + 8) * (bn // warp_n) * 2
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert len(re.findall(r"cp\.async\.bulk\.global\.shared::cta\.bulk_group", art.ptx)) == (bm + 127) // 128
    assert re.search(r"cp\.async\.bulk\.wait_group\.read\s+0;", art.ptx)
    assert re.search(r"cp\.async\.bulk\.wait_group\s+0;", art.ptx)
    assert re.search(r"fence\.proxy\.async\.shared::cta;", art.ptx)
    assert "st.global.v4" not in art.ptx                 # (no vector copy-out: the rows leave by bulk copies)
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024
    for bad in (dict(staged_store=False), dict(persistent_ctas=0)):
        with pytest.raises(ValueError, match="moe_bulk_store takes"):
            cfg.with_(**bad).validate()
    with pytest.raises(ValueError, match="moe_bulk_store must be True or False"):
        cfg.with_(moe_bulk_store=1).validate()
    with pytest.raises(ValueError, match="moe_bulk_store"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, moe_bulk_store=True).validate()

