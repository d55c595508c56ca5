"""MoE GEMM on the CPU: config rules, per-arch compilation of the up / down / GLU variants (their PTX keeps the
dense kernel's instructions), and argument checks that fire before anything is compiled."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune.heuristics import default_moe_config, moe_block_size


def test_config_rules():
    base = dict(block_m=16, block_n=64, block_k=64, warp_m=16, warp_n=64)
    GemmConfig(**base, moe=True, moe_top_k=8).validate()
    with pytest.raises(NotImplementedError, match="splits K only inside a thread-block cluster"):
        GemmConfig(**base, moe=True, split_k=2).validate()
    with pytest.raises(ValueError, match="need moe=True"):
        GemmConfig(**base, moe_down=True).validate()
    with pytest.raises(ValueError, match="block_m must be 16, 32, 64 or 128"):
        default_moe_config(24, 1536, 2048, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                           group_size=128, arch="sm_90a")
    assert moe_block_size(1, 8, 128) == 16 and moe_block_size(512, 8, 8) == 64 and moe_block_size(4096, 8, 8) == 128
    assert moe_block_size(512, 8, 128) == 32 and moe_block_size(512, 8, 128, wgmma=True) == 48
    assert moe_block_size(1, 8, 128, wgmma=True) == 16 and moe_block_size(4096, 2, 8, wgmma=True) == 128


@pytest.mark.parametrize("block_m,n,bn", [(16, 1536, 128), (32, 1536, 128), (64, 1536, 128), (128, 28672, 256),
                                          (128, 4160, 64)])
def test_moe_defaults_take_wgmma_on_sm90(block_m, n, bn):
    """sm_90a, 16-bit activations, blocks of 64 / 128 rows: the wgmma mainloop (64-deep k-tiles, deepest
    pipeline, 128 / 256-wide weight tiles); smaller blocks, other archs, 8-bit activations, an activation in the
    epilogue, or mainloop="sm80" keep mma.sync."""
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, top_k=8)
    cfg = default_moe_config(block_m, n, 2048, arch="sm_90a", **kw).validate()
    if block_m < 64:
        assert cfg.mainloop == "sm80"
        return
    assert (cfg.mainloop, cfg.block_n, cfg.block_k, cfg.warp_m) == ("sm90", bn, 64, block_m)
    assert smem_bytes(cfg) <= get_arch("sm_90a").smem_per_block_bytes < smem_bytes(cfg.with_(stages=cfg.stages + 1)) \
        or cfg.stages == 8
    assert default_moe_config(block_m, n, 2048, arch="sm_80", **kw).mainloop == "sm80"
    assert default_moe_config(block_m, n, 2048, arch="sm_90a", epilogue=True, **kw).mainloop == "sm80"
    assert default_moe_config(block_m, n, 2048, arch="sm_90a", mainloop="sm80", **kw).mainloop == "sm80"
    assert default_moe_config(block_m, n, 2048, arch="sm_90a", **{**kw, "a_dtype": "float8e4m3"}).mainloop == "sm80"
    with pytest.raises(ValueError, match="mainloop must be"):
        default_moe_config(block_m, n, 2048, arch="sm_90a", mainloop="wgmma", **kw)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("kind", ["up", "down", "glu"])
def test_moe_variants_compile(arch, kind):
    kw = dict(up=dict(top_k=8), down=dict(top_k=8, is_down=True, mul_topk_weights=True),
              glu=dict(top_k=2))[kind]
    cfg = default_moe_config(16, 1536, 2048, a_dtype="bfloat16", b_dtype="uint4", c_dtype="bfloat16",
                             group_size=128, arch=arch, has_bias=(kind == "down"), **kw)
    if kind == "glu":
        cfg = cfg.with_(activation="silu_glu", glu=True)
    art = compile_for_arch(Sm80MixedGemm(cfg.validate()), *fake_operands(cfg), arch=arch,
                           options="--enable-tvm-ffi")
    assert "mma.sync.aligned.m16n8k16" in art.ptx and "cp.async.cg.shared.global" in art.ptx
    assert "ld.shared.v4" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_moe_gemm_rejects_bad_arguments_before_compiling():
    qw = hc.quantize_weight(torch.randn(4, 128, 256), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(3, 256, dtype=torch.float16)
    ids = hc.moe_align_block_size(torch.zeros(3, 2, dtype=torch.int32), 16, 4)
    with pytest.raises(ValueError, match="same CUDA device"):
        hc.moe_gemm(x, pw, *ids, top_k=2, block_m=16)
    dense = hc.prepare_weight(hc.quantize_weight(torch.randn(128, 256), "uint4", 128), "float16")
    with pytest.raises(ValueError, match="MoE weight"):
        hc.moe_gemm(x, dense, *ids, top_k=2, block_m=16)
    with pytest.raises(ValueError, match="K=128"):
        hc.moe_gemm(torch.randn(3, 128, dtype=torch.float16), pw, *ids, top_k=2, block_m=16)


@pytest.mark.parametrize("a,b,group,arch,kind,bm", [
    ("float8e4m3", "int4", 0, "sm_89", "up", 16), ("float8e4m3", "uint4", 128, "sm_90a", "down", 64),
    ("int8", "uint4", 128, "sm_80", "glu", 32), ("int8", "int8", 0, "sm_80", "down", 128),
    ("int4", "int4", 0, "sm_80", "up", 16)])
def test_moe_act8_compiles(a, b, group, arch, kind, bm):
    """The MoE GEMM with 8/4-bit activations (per-row activation scales in the workspace slot, applied to the
    gathered row's accumulators): compiles without spills with the activation type's MMA; per-group activation
    scales are refused."""
    kw = dict(up=dict(top_k=8), down=dict(top_k=8, is_down=True, mul_topk_weights=True), glu=dict(top_k=2))[kind]
    cfg = default_moe_config(bm, 1536, 2048, a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group,
                             arch=arch, **kw)
    if kind == "glu":
        cfg = cfg.with_(activation="silu_glu", glu=True)
    art = compile_for_arch(Sm80MixedGemm(cfg.validate()), *fake_operands(cfg), arch=arch,
                           options="--enable-tvm-ffi")
    mma = {"float8e4m3": "m16n8k32.row.col.f32.e4m3.e4m3.f32", "int8": "m16n8k32.row.col.s32.s8.s8.s32",
           "int4": "m16n8k64.row.col.s32.s4.s4.s32"}[a]
    assert f"mma.sync.aligned.{mma}" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(NotImplementedError, match="per-token scales"):
        cfg.with_(act_group_size=128).validate()


@pytest.mark.parametrize("down,split", [(False, 2), (True, 4)])
def test_moe_cluster_split_k_compiles(down, split):
    """Decode-sized MoE blocks may split K inside a thread-block cluster (mma.sync mainloop, sm_90+): two cluster
    barriers, CTA 0 adds the partials through distributed shared memory, no global atomics, no spills; refused on
    the wgmma mainloop, for 8-bit activations and before sm_90."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a", top_k=8,
              is_down=down, mul_topk_weights=down)
    cfg = default_moe_config(16, 2048, 4096, **kw).with_(split_k=split, cluster_split_k=True).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    assert ptx.count("barrier.cluster.arrive") == 2 and ptx.count("ld.shared::cluster.f32") >= split - 1
    assert "atom.global" not in ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="sm_90 and newer"):
        cfg.with_(arch="sm_89").validate()
    with pytest.raises(NotImplementedError, match="float16/bfloat16 activations"):
        cfg.with_(a_dtype="float8e4m3", b_dtype="int4", group_size=0, has_zero_point=False,
                  two_level_scales=False).validate()
    with pytest.raises(NotImplementedError, match="splits K only inside"):
        cfg.with_(cluster_split_k=False).validate()
    wg = default_moe_config(64, 2048, 4096, **kw)
    assert wg.mainloop == "sm90"
    with pytest.raises(NotImplementedError, match="splits K only inside"):
        wg.with_(split_k=2, cluster_split_k=True).validate()


def test_moe_n_major_grid_compiles():
    """moe_n_major swaps the mma.sync MoE grid's x / y (weight tiles first): same kernel body, refused off MoE (the
    wgmma mainloop's raster: `test_moe_wgmma_n_major_raster_compiles`)."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a", top_k=8)
    cfg = default_moe_config(16, 1536, 2048, **kw).with_(moe_n_major=True)
    art = compile_for_arch(Sm80MixedGemm(cfg.validate()), *fake_operands(cfg), arch="sm_90a",
                           options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(cfg.with_(moe_n_major=False)), *fake_operands(cfg), arch="sm_90a",
                           options="--enable-tvm-ffi")
    assert "%ctaid.y" in art.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    for op in ("mma.sync", "cp.async.cg", "ldmatrix", "st.global"):       # the same kernel, block indices swapped
        assert art.ptx.count(op) == ref.ptx.count(op), op
    with pytest.raises(ValueError, match="need moe=True"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, moe_n_major=True).validate()


def test_moe_decode_default_n_major(monkeypatch):
    """sm_90: 16-row decode blocks of 16-bit activations over >= 32 experts take the weight-tile-major grid when the
    token count is known and M x top_k fits the grid's y dimension; fewer experts, other blocks, 8-bit activations,
    unknown token counts, other archs and the switch off keep the block-major grid."""
    import humming_cute.tune.heuristics as heur

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a", top_k=8)
    for t in (1, 16, 64):
        assert default_moe_config(16, 2048, 768, num_tokens=t, num_experts=128, **kw).validate().moe_n_major
    assert not default_moe_config(16, 2048, 768, num_tokens=8192, num_experts=128, **kw).moe_n_major
    assert not default_moe_config(16, 2048, 768, **kw).moe_n_major
    assert not default_moe_config(16, 28672, 4096, num_tokens=64, num_experts=8, **{**kw, "top_k": 2}).moe_n_major
    assert not default_moe_config(32, 2048, 768, num_tokens=64, num_experts=128, **kw).moe_n_major
    assert not default_moe_config(16, 2048, 768, num_tokens=16, num_experts=128, **{**kw, "arch": "sm_80"}).moe_n_major
    assert not default_moe_config(16, 2048, 768, num_tokens=16, num_experts=128,
                                  **{**kw, "a_dtype": "float8e4m3", "b_dtype": "int4", "group_size": 0}).moe_n_major
    monkeypatch.setattr(heur, "MOE_DECODE_N_MAJOR", False)
    assert not default_moe_config(16, 2048, 768, num_tokens=16, num_experts=128, **kw).moe_n_major


@pytest.mark.parametrize("kw", [dict(top_k=8), dict(top_k=2, is_down=True, mul_topk_weights=True, has_bias=True),
                                dict(top_k=8, epilogue=True),
                                dict(top_k=2, is_down=True, mul_topk_weights=True, a_dtype="float8e4m3",
                                     b_dtype="int4", group_size=0)],
                         ids=["up", "down-weights-bias", "glu", "fp8-down"])
def test_moe_row_cache_compiles(kw):
    """moe_row_cache: the mma.sync MoE epilogue loads each lane's row ids (routing weights, activation scales)
    once per row before its stores: fewer global loads than the per-element epilogue, the same MMAs and stores,
    no spills; the default of 16-row blocks; refused off the mma.sync MoE GEMM."""
    import re

    full = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_89"), **kw}
    cfg = default_moe_config(16, 1536, 2048, **full)
    assert cfg.moe_row_cache
    assert not default_moe_config(32, 1536, 2048, **full).moe_row_cache
    cfg = cfg.with_(moe_row_cache=False)
    if kw.get("epilogue"):
        cfg = cfg.with_(activation="silu_glu", glu=True)
    arts = [compile_for_arch(Sm80MixedGemm(c.validate()), *fake_operands(c), arch="sm_89",
                             options="--enable-tvm-ffi") for c in (cfg, cfg.with_(moe_row_cache=True))]
    loads = [len(re.findall(r"ld\.global", a.ptx)) for a in arts]
    stores = [len(re.findall(r"st\.global", a.ptx)) for a in arts]
    assert loads[1] < loads[0] and stores[1] == stores[0], (loads, stores)
    assert arts[1].ptx.count("mma.sync") == arts[0].ptx.count("mma.sync")
    assert sum(r.spill_bytes for r in arts[1].ptxas.values()) == 0
    with pytest.raises(ValueError, match="mma.sync MoE GEMM"):
        default_moe_config(64, 1536, 2048, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                           arch="sm_90a", mainloop="sm90").with_(moe_row_cache=True).validate()
    with pytest.raises(ValueError, match="mma.sync MoE GEMM"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, moe_row_cache=True).validate()


@pytest.mark.parametrize("down", [False, True])
def test_gather_sorted_rows(down):
    """The wgmma MoE path's activation gather (torch path on the CPU): row p is x[id // top_k] (x[id] down),
    padding ids take x's last row; the gather kernel compiles for sm_90a with 16-byte loads and stores."""
    import re

    from humming_cute.kernels.moe_gather import MoeGatherKernel
    from humming_cute.kernels.moe_gather import fake_operands as gather_operands
    from humming_cute.moe_gather import MoeGatherConfig, gather_sorted_rows

    gen = torch.Generator().manual_seed(5)
    tokens, top_k, e = 9, 2, 4
    ids = torch.stack([torch.randperm(e, generator=gen)[:top_k] for _ in range(tokens)]).to(torch.int32)
    sorted_ids, _, num_post = hc.moe_align_block_size(ids, 16, e)
    x = torch.randn(tokens * top_k if down else tokens, 64, generator=gen)
    got = gather_sorted_rows(x, sorted_ids, num_post, top_k, down)
    for p, t in enumerate(sorted_ids.tolist()):
        row = (t if down else t // top_k) if t < tokens * top_k else x.shape[0] - 1
        assert torch.equal(got[p], x[row])
    cfg = MoeGatherConfig("float16", top_k, down, "sm_90a")
    art = compile_for_arch(MoeGatherKernel(cfg), *gather_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert re.search(r"ld\.global(\.nc)?\.v4", art.ptx) and "st.global.v4" in art.ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("experts,top_k,tokens,block_m,mapped", [(128, 8, 1, 16, False), (128, 8, 3, 64, True),
                                                                 (8, 2, 1, 128, False), (64, 8, 5, 16, True),
                                                                 (8, 2, 300, 64, False), (256, 8, 2, 128, True)])
def test_moe_grid_view_keeps_every_routed_block(experts, top_k, tokens, block_m, mapped):
    """`moe_grid_view` cuts the routing tensors to M * top_k blocks when they are longer: for random routings
    (other ranks' experts included) num_tokens_post_padded stays inside the view, and the reference MoE GEMM on
    the view equals the one on the full tensors."""
    from humming_cute.ops import moe_grid_view
    from humming_cute.quant.reference import reference_moe_gemm
    from humming_cute.quant.weight import quantize_weight

    gen = torch.Generator().manual_seed(tokens * 31 + experts + block_m)
    qw = quantize_weight(torch.randn(experts, 64, 128, generator=gen), "uint4", 64)
    x = torch.randn(tokens, 128, generator=gen).half()
    emap = None
    if mapped:
        emap = torch.arange(experts, dtype=torch.int32)
        emap[::3] = -1
    for trial in range(4):
        ids = torch.stack([torch.randperm(experts, generator=gen)[:top_k] for _ in range(tokens)]).int()
        if trial % 2:
            ids = torch.minimum(ids, torch.full_like(ids, 2))          # crowded: few experts, long blocks
        sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, block_m, experts, emap, impl="torch")
        s_view, e_view = moe_grid_view(sorted_ids, expert_ids, tokens * top_k, block_m)
        routed = tokens * top_k
        if routed * block_m < sorted_ids.numel():
            assert s_view.numel() == routed * block_m and e_view.numel() == routed
            assert s_view.data_ptr() == sorted_ids.data_ptr()            # a view, no copy
        else:
            assert s_view is sorted_ids and e_view is expert_ids
        assert int(num_post) <= s_view.numel()
        assert torch.equal(e_view[:int(num_post) // block_m], expert_ids[:int(num_post) // block_m])
        kw = dict(top_k=top_k, block_m=block_m, out_dtype=torch.float32)
        assert torch.equal(reference_moe_gemm(x, qw, s_view, e_view, num_post, **kw),
                           reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, **kw))


def test_wgmma_moe_min_block(monkeypatch):
    """`WGMMA_MOE_MIN_BLOCK`: blocks below it stay on mma.sync by default (64: the 16 / 32-row wgmma blocks lost to
    the mma.sync decode tiles and to 64-row blocks); lowered to 32 (and without the 48-row blocks), experts with
    17-48 rows get 32-row wgmma blocks."""
    import humming_cute.tune.heuristics as heur

    monkeypatch.setattr(heur, "WGMMA_MOE_ODD_BLOCKS", False)
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a", top_k=8)
    assert heur.moe_block_size(512, 8, 128, wgmma=True) == 64            # 32 rows per expert
    assert heur.default_moe_config(32, 1536, 2048, **kw).mainloop == "sm80"
    monkeypatch.setattr(heur, "WGMMA_MOE_MIN_BLOCK", 32)
    assert heur.moe_block_size(512, 8, 128, wgmma=True) == 32
    assert heur.moe_block_size(64, 8, 128, wgmma=True) == 16             # 4 rows per expert: mma.sync decode
    assert heur.moe_block_size(1024, 8, 128, wgmma=True) == 64
    cfg = heur.default_moe_config(32, 1536, 2048, **kw)
    assert (cfg.mainloop, cfg.block_m, cfg.warp_m) == ("sm90", 32, 32)
    assert heur.default_moe_config(16, 1536, 2048, **kw).mainloop == "sm80"


@pytest.mark.parametrize("n,k,down", [(1024, 512, False), (512, 1024, True)])
def test_moe_decode_block32_compiles(monkeypatch, n, k, down):
    """`MOE_DECODE_BLOCK_32` (a default): experts of 12-16 routed rows take 32-row blocks; up-like (N >= K)
    32 x 256 x 128 wgmma tiles (<= 4-bit weights: four one-atom consumer warpgroups, A in 2 pieces, beside the
    producer warpgroup, persistent), down projections with N < K 32 x 128 x 128 wgmma tiles in K slices
    (`MOE_BLOCK_32_DOWN_WGMMA`; without it 32 x 256 x 128 mma.sync tiles on the weight-tile-major grid); both
    compile for sm_90a without spills. Off, or on other archs, the choices are the usual ones."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, top_k=2, is_down=down,
              mul_topk_weights=down, num_tokens=64, num_experts=8)
    assert heur.MOE_DECODE_BLOCK_32
    monkeypatch.setattr(heur, "MOE_DECODE_BLOCK_32", False)
    assert moe_block_size(64, 2, 8, wgmma=True) == 16
    off = default_moe_config(32, n, k, arch="sm_90a", **kw)
    monkeypatch.setattr(heur, "MOE_DECODE_BLOCK_32", True)
    assert moe_block_size(64, 2, 8, wgmma=True) == 32 and moe_block_size(64, 2, 8) == 16
    assert moe_block_size(48, 2, 8, wgmma=True) == 16 and moe_block_size(68, 2, 8, wgmma=True) == 48
    assert default_moe_config(32, n, k, arch="sm_80", **kw) == default_moe_config(32, n, k, arch="sm_80", **{
        **kw, "num_tokens": None})                                      # (sm_80: no such rule)
    cfg = default_moe_config(32, n, k, arch="sm_90a", **kw).validate()
    assert cfg != off and (cfg.mainloop, cfg.block_n, cfg.block_k) == ("sm90", 128 if down else 256, 128)
    # (the down projection: `MOE_BLOCK_32_DOWN_WGMMA`, K slices with the producer warpgroup and cp.async rows on the
    # persistent grid; off, 32 x 256 x 128 mma.sync tiles on the weight-tile-major grid)
    # (the up projection of <= 4-bit weights: `MOE_BLOCK_32_TWO_ATOMS`, two atoms per consumer warpgroup with A in 2
    # pieces, the producer warpgroup copying the rows, persistent; its weights evict-first, `MOE_BLOCK_32_EVICT_FIRST`)
    assert (cfg.warp_k, cfg.warp_specialized, cfg.moe_cp_async_rows, bool(cfg.persistent_ctas)) == (
        (64, True, True, True) if down else (128, True, True, True))
    # (`MOE_BLOCK_32_FOUR_WG`: the up tile's four consumer warpgroups of one atom each, two of two atoms without it)
    assert (cfg.warp_n, cfg.a_split, cfg.evict_first, cfg.consumer_warpgroups) == (
        (64, 1, False, 4) if down else (64, 2, True, 4))
    if not down:
        monkeypatch.setattr(heur, "MOE_BLOCK_32_FOUR_WG", False)
        two = default_moe_config(32, n, k, arch="sm_90a", **kw).validate()
        assert (two.warp_n, two.a_split, two.consumer_warpgroups, two.warp_specialized) == (128, 2, 2, True)
        monkeypatch.setattr(heur, "MOE_BLOCK_32_FOUR_WG", True)
        monkeypatch.setattr(heur, "MOE_BLOCK_32_TWO_ATOMS", False)
        four = default_moe_config(32, n, k, arch="sm_90a", **kw).validate()
        assert (four.warp_n, four.a_split, four.warp_specialized, four.persistent_ctas, four.evict_first) == (
            64, 1, False, 0, True)
        eight_bit = default_moe_config(32, n, k, arch="sm_90a", **{**kw, "b_dtype": "int8", "group_size": 0})
        assert eight_bit.mainloop == "sm90" and eight_bit.warp_n == 64      # (two atoms: weights of <= 4 bits)
        monkeypatch.setattr(heur, "MOE_BLOCK_32_TWO_ATOMS", True)
    assert default_moe_config(32, n, k, arch="sm_90a", **{**kw, "group_size": 64}).mainloop == (
        "sm80" if down else "sm90")                                      # (K slices: groups of >= 128)
    monkeypatch.setattr(heur, "MOE_BLOCK_32_DOWN_WGMMA", False)
    mma = default_moe_config(32, n, k, arch="sm_90a", **kw).validate()
    assert (mma.mainloop == "sm90") == (not down) and mma.moe_n_major == down
    assert (mma.block_n, mma.block_k) == (256, 128)
    kernel = Sm90MixedGemm(cfg) if cfg.mainloop == "sm90" else Sm80MixedGemm(cfg)
    art = compile_for_arch(kernel, *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("block_m,extra", [(64, dict()), (48, dict()), (128, dict()), (64, dict(cluster_n=2))])
def test_moe_wgmma_n_major_raster_compiles(block_m, extra):
    """moe_n_major on the wgmma MoE GEMM (GPU-tested, not a default): one routed block's weight tiles at a
    time instead of 8 block rows sweeping N; only the tile-index arithmetic differs (the same wgmma, TMA and store
    counts), no spills."""
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a", top_k=8)
    base = default_moe_config(block_m, 1536, 2048, **kw).with_(**extra).validate()
    assert base.mainloop == "sm90" and not base.moe_n_major
    cfg = base.with_(moe_n_major=True).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm90MixedGemm(base), *fake_operands(base), arch="sm_90a", options="--enable-tvm-ffi")
    assert art.ptx != ref.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    for op in ("wgmma.mma_async", "cp.async.bulk.tensor", "st.global"):
        assert art.ptx.count(op) == ref.ptx.count(op), op


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_moe_decode_two_level_default(arch):
    """16-row MoE blocks with group scales and 16-bit activations take two-level scales (fp32 partial sums scaled
    once per group) from K = 2048: the weight pairs' packed scale multiplies leave the dequant, the MMAs stay, no
    spills. Short K, channel scales, 8-bit activations, larger blocks and 8-warp tiles over more than one CTA per SM
    keep the one-level dequant."""
    import re

    import humming_cute.tune.heuristics as heur

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch=arch, top_k=2)
    cfg = default_moe_config(16, 28672, 4096, num_tokens=1, num_experts=8, **kw).validate()
    assert cfg.two_level_scales and cfg.mainloop == "sm80"
    assert default_moe_config(16, 2048, heur.MOE_DECODE_TWO_LEVEL_MIN_K, **kw).two_level_scales
    assert default_moe_config(16, 1536, 2048, **{**kw, "a_dtype": "bfloat16", "c_dtype": "bfloat16",
                                                 "b_dtype": "float4e2m1", "group_size": 32}).two_level_scales
    assert not default_moe_config(16, 2048, 768, num_tokens=64, num_experts=128, **kw).two_level_scales
    assert not default_moe_config(16, 4096, 4096, **{**kw, "b_dtype": "int8", "group_size": 0}).two_level_scales
    assert not default_moe_config(16, 4096, 4096, **{**kw, "a_dtype": "float8e4m3", "b_dtype": "int4"}).two_level_scales
    assert not default_moe_config(32, 4096, 4096, **{**kw, "arch": "sm_80"}).two_level_scales
    # 8-warp tiles (Mixtral-like down, K = 14336) only where the expected grid fits one CTA per SM
    one_token = default_moe_config(16, 4096, 14336, num_tokens=1, num_experts=8, **{**kw, "arch": "sm_90a"})
    assert one_token.num_threads == 256 and one_token.two_level_scales
    many = default_moe_config(16, 4096, 14336, num_tokens=16, num_experts=8, **{**kw, "arch": "sm_90a"})
    assert many.num_threads == 256 and not many.two_level_scales
    one = cfg.with_(two_level_scales=False)
    arts = [compile_for_arch(Sm80MixedGemm(c), *fake_operands(c), arch=arch, options="--enable-tvm-ffi")
            for c in (one, cfg)]
    muls = [len(re.findall(r"mul(\.rn)?\.f16x2", a.ptx)) for a in arts]
    assert muls[1] < muls[0], muls
    assert arts[1].ptx.count("mma.sync") == arts[0].ptx.count("mma.sync")
    assert sum(r.spill_bytes for r in arts[1].ptxas.values()) == 0


def test_moe_expected_padded_rows_matches_sampling():
    """`moe_expected_padded_rows` (normal approximation) against the mean over sampled uniform routings of the rows
    `moe_align_block_size` pads each expert to (within 1.5 %), for the block sizes `MOE_BLOCK_144` weighs."""
    from humming_cute.tune.heuristics import moe_expected_padded_rows

    gen = torch.Generator().manual_seed(0)
    for tokens, top_k, experts in ((4096, 8, 128), (4096, 2, 8), (1100, 8, 64), (6400, 8, 128)):
        ids = torch.rand(32, tokens, experts, generator=gen).argsort(dim=-1)[..., :top_k]
        counts = torch.nn.functional.one_hot(ids.reshape(32, -1), experts).sum(1).float()    # [trial, expert]
        for block_m in (128, 144):
            sampled = ((counts / block_m).ceil() * block_m).mean().item()
            approx = moe_expected_padded_rows(tokens, top_k, experts, block_m)
            assert abs(approx - sampled) <= 0.015 * sampled, (tokens, top_k, experts, block_m, approx, sampled)


@pytest.mark.parametrize("b,g,a,n,k,down", [("uint4", 128, "float16", 2048, 768, True),
                                            ("uint4", 128, "float16", 1536, 2048, False),
                                            ("float4e2m1", 32, "bfloat16", 512, 768, True),
                                            ("int8", 0, "bfloat16", 512, 1024, False)])
def test_moe_block144(monkeypatch, b, g, a, n, k, down):
    """`MOE_BLOCK_144`: Qwen3-30B-A3B-like routing at 4096 tokens (~256 rows per expert) aligns to 144-row blocks for
    layers the two-atom tile serves (<= 4-bit weights, 16-bit activations, no GLU, N % 256 == 0), 128 otherwise, off,
    or where 144-row blocks pad more (Mixtral-like: ~1024 rows per expert). The 144-row default: the two-atom tile
    with A in 2 pieces (the 128-row tile's staged store, bulk row copies at K <= 1024); 8-bit weights a 144 x 128 tile
    of one atom per warpgroup with the producer warpgroup. Both compile for sm_90a without spills."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm

    tile = heur.moe_block144_tile(a, b, n)
    assert tile == (b != "int8")
    assert not heur.moe_block144_tile(a, b, n, glu=True) and not heur.moe_block144_tile(a, b, 640)
    assert moe_block_size(4096, 8, 128, wgmma=True, block144=tile) == (144 if tile else 128)
    assert moe_block_size(4096, 8, 128, wgmma=True) == 128 and moe_block_size(4096, 8, 128, block144=True) == 64
    assert moe_block_size(4096, 2, 8, wgmma=True, block144=True) == 128
    assert moe_block_size(2048, 8, 128, wgmma=True, block144=True) == 160          # (the 160-row window first)
    monkeypatch.setattr(heur, "MOE_BLOCK_144", False)
    assert moe_block_size(4096, 8, 128, wgmma=True, block144=True) == 128
    cfg = default_moe_config(144, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch="sm_90a", top_k=8,
                             is_down=down, mul_topk_weights=down).validate()
    assert (cfg.mainloop, cfg.block_m, cfg.warp_m, cfg.warp_specialized) == ("sm90", 144, 144, True)
    if tile:
        assert (cfg.block_n, cfg.warp_n, cfg.a_split, cfg.persistent_ctas, cfg.moe_cp_async_rows,
                cfg.staged_store, cfg.moe_bulk_store) == (256, 128, 2, 132, True, True, k <= 1024)
    else:
        assert (cfg.block_n, cfg.warp_n, cfg.a_split) == (128, 64, 1)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="wgmma mainloop only"):
        default_moe_config(144, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch="sm_90a", top_k=8,
                           mainloop="sm80")
