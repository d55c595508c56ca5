"""GemmConfig validation (every rule raises a clear error before anything compiles), name normalisation, and the
default configs of `humming_cute.tune`."""

import itertools

import pytest
import torch

from humming_cute.arch import get_arch
from humming_cute.config import GemmConfig, smem_bytes
from humming_cute.layouts.dequant_plan import make_plan
from humming_cute.tune import default_config


def test_defaults_validate():
    cfg = GemmConfig()
    assert cfg.validate() is cfg
    assert (cfg.a_dtype, cfg.b_dtype, cfg.c_dtype) == ("float16", "uint4", "float16")
    assert cfg.has_zero_point  # implied by uint4
    assert cfg.bits == 4 and cfg.warps_m == 1 and cfg.warps_n == 4 and cfg.num_threads == 128
    assert cfg.scale_rows == 1
    assert cfg.dequant_plan() == make_plan("float16", "uint4")


@pytest.mark.parametrize("kw", [
    dict(a_dtype="bfloat16", b_dtype="uint8", c_dtype="bfloat16"),
    dict(b_dtype="int4", group_size=0),
    dict(b_dtype="float8e4m3", group_size=32, block_k=128, block_n=128, stages=3),
    dict(a_dtype="bfloat16", b_dtype="float8e6m1"),
    dict(b_dtype="int1", group_size=16, block_m=16, warp_m=16),
    dict(block_m=128, block_n=128, warp_m=64, warp_n=128, stages=3),
    dict(arch="sm_90a", block_m=128, block_n=256, block_k=128, stages=4),
    dict(arch="sm_120", stages=2),
    dict(block_m=16, warp_m=16, block_n=64, warp_n=64, stages=2),  # one warp
])
def test_other_legal_configs(kw):
    GemmConfig(**kw).validate()


def _raises(exc, match, **kw):
    with pytest.raises(exc, match=match):
        GemmConfig(**kw).validate()


def test_illegal_dtype_pair():
    _raises(ValueError, r"illegal pair.*float8e6m1", b_dtype="float8e6m1")
    _raises(ValueError, r"not a packed weight type", b_dtype="float16")
    # a zero point with a symmetric weight type
    _raises(ValueError, r"int4 is symmetric", b_dtype="int4", has_zero_point=True)
    # fp8 activations take at most 4-bit zero-point weights
    _raises(ValueError, r"illegal pair", a_dtype="float8e4m3", b_dtype="uint8")


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown data type"):
        GemmConfig(a_dtype="half2")
    with pytest.raises(ValueError):
        GemmConfig(b_dtype="int9")


def test_fp4_activations_refused_until_verified():
    _raises(NotImplementedError, r"float4e2m1 activations in the GEMM are built but not yet verified",
            a_dtype="float4e2m1", b_dtype="int3", arch="sm_120a", group_size=0)


def test_int4_activations_enabled():
    GemmConfig(a_dtype="int4", b_dtype="int4", c_dtype="float16", group_size=0, block_m=16, block_n=64,
               block_k=128, warp_m=16, warp_n=64, warp_k=64, arch="sm_80").validate()


def test_fp4_activations_need_sm120():
    _raises(NotImplementedError, r"float4e2m1 activations use the block-scaled e2m1 mma.sync of sm_120a",
            a_dtype="float4e2m1", b_dtype="float4e2m1", arch="sm_90", group_size=0)


@pytest.mark.parametrize("a,b,group", [("int8", "uint4", 128), ("int8", "int8", 0), ("float8e4m3", "int4", 0),
                                       ("float8e5m2", "float8e5m2", 0)])
def test_8bit_activations_validate(a, b, group):
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, arch="sm_90")
    cfg.validate()
    assert cfg.act_bits == 8 and cfg.mainloop == "sm80"


@pytest.mark.parametrize("name,value", [("block_m", 48), ("block_n", 192), ("block_k", 96), ("warp_m", 24),
                                        ("warp_n", 96), ("block_m", 0), ("warp_n", -64)])
def test_non_power_of_two_dims(name, value):
    _raises(ValueError, rf"{name} must be a power of two, got {value}", **{name: value})


def test_warp_m_multiple_of_mma_m():
    _raises(ValueError, r"warp_m must be a multiple of the MMA's M=16, got 8", warp_m=8, block_m=8)


@pytest.mark.parametrize("wn", [8, 16, 32])
def test_warp_n_multiple_of_64(wn):
    _raises(ValueError, rf"warp_n must be a multiple of the weight atom's N=64, got {wn}", warp_n=wn)


@pytest.mark.parametrize("bk", [16, 32])
def test_block_k_multiple_of_64(bk):
    _raises(ValueError, rf"block_k must be a multiple of the weight atom's K=64, got {bk}", block_k=bk)


@pytest.mark.parametrize("kw", [dict(block_m=32, warp_m=64), dict(block_n=64, warp_n=128),
                                dict(block_m=16, warp_m=32, block_n=128, warp_n=256)])
def test_block_multiple_of_warp(kw):
    _raises(ValueError, r"block shape .* must be a multiple of the warp shape", **kw)


@pytest.mark.parametrize("kw", [dict(block_m=256, warp_m=16, block_n=256, warp_n=64),   # 16 x 4 = 64 warps
                                dict(block_m=128, warp_m=16, block_n=256, warp_n=64)])  # 8 x 4 = 32 warps
def test_too_many_warps(kw):
    _raises(ValueError, r"warps; 1..16 are allowed", **kw)


def test_sixteen_warps_allowed_by_warp_rule():
    cfg = GemmConfig(block_m=64, warp_m=16, block_n=256, warp_n=64, stages=2)
    assert cfg.num_threads == 512
    cfg.validate()


def test_warp_tile_register_limit():
    _raises(ValueError, r"more than 255 registers", block_m=128, warp_m=128, block_n=128, warp_n=128)


@pytest.mark.parametrize("stages", [1, 0, -3])
def test_stages_at_least_two(stages):
    _raises(ValueError, rf"stages must be >= 2, got {stages}", stages=stages)


def test_too_much_shared_memory():
    kw = dict(b_dtype="uint8", block_m=128, block_n=256, block_k=128, warp_m=64, warp_n=64, stages=12)
    need = smem_bytes(GemmConfig(**kw, arch="sm_86"))
    assert need > get_arch("sm_86").smem_per_block_bytes
    _raises(ValueError, rf"config needs {need} bytes of shared memory \(12 stages\); sm_86 allows 101376",
            **kw, arch="sm_86")
    # the same tiles with few stages fit sm_80 / sm_90, but not with 12 stages on sm_80 either
    GemmConfig(**{**kw, "stages": 2}, arch="sm_80").validate()
    _raises(ValueError, r"shared memory", **kw, arch="sm_80")


def test_smem_boundary_is_inclusive():
    """A config needing exactly the limit is legal; the limit comes from `arch`."""
    base = GemmConfig(b_dtype="int4", group_size=0, block_m=64, block_n=128, block_k=64, warp_m=64, warp_n=64,
                      stages=2, arch="sm_86")
    per_stage = smem_bytes(base) // 2
    assert per_stage == 64 * 64 * 2 + 128 * 64 * 4 // 8 + 128 * 2  # A + packed B + the one-row scale ring
    limit = get_arch("sm_86").smem_per_block_bytes
    fits = limit // per_stage
    base.with_(stages=fits).validate()
    with pytest.raises(ValueError, match="shared memory"):
        base.with_(stages=fits + 1).validate()


def test_smem_accounts_for_scales_and_zero_points():
    sym = GemmConfig(b_dtype="int4", group_size=32, stages=2)
    asym = GemmConfig(b_dtype="uint4", group_size=32, stages=2)
    chan = GemmConfig(b_dtype="int4", group_size=0, stages=2)
    assert sym.scale_rows == 2 and chan.scale_rows == 0
    # per stage: 2 rows of 256 fp16 scales (and as many zero points); channelwise keeps a one-row scale ring
    assert smem_bytes(asym) - smem_bytes(sym) == 2 * 2 * 256 * 2
    assert smem_bytes(sym) - smem_bytes(chan) == 2 * (2 - 1) * 256 * 2
    assert GemmConfig(group_size=256).scale_rows == 1


def test_staging_in_ring():
    """The wgmma kernel's C staging tiles share the activation ring when a CTA runs a single output tile and the
    ring is large enough: then the staged store costs no shared memory (128 x 128 x 64, 4 stages: still two CTAs
    per SM); a persistent grid, stream-K and split-K (their stages or partials stay live) and a ring smaller than
    the tiles (the fp32 GLU staging beside 3 stages) keep their own."""
    base = GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, block_m=128, block_n=128, block_k=64,
                      warp_m=128, warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90").validate()
    staged = base.with_(staged_store=True).validate()
    assert staged.staging_bytes == 128 * 72 * 2 * 2 and staged.staging_in_ring
    assert smem_bytes(staged) == smem_bytes(base)
    assert 2 * (smem_bytes(staged) + 1024) <= get_arch("sm_90a").smem_per_sm_bytes
    for other in (dict(warp_specialized=True, persistent_ctas=132), dict(split_k=2),
                  dict(warp_specialized=True, persistent_ctas=132, stream_k=True)):
        own = staged.with_(**other).validate()
        assert not own.staging_in_ring
        assert smem_bytes(own) - smem_bytes(base.with_(**other)) == staged.staging_bytes + 16
    glu = dict(glu=True, activation="silu_glu", warp_specialized=True)
    assert base.with_(**glu, staged_store=True, stages=3).staging_bytes == 128 * 68 * 2 * 4
    assert not base.with_(**glu, staged_store=True, stages=3).staging_in_ring        # 69632 > 3 x 16 KiB
    assert base.with_(**glu, staged_store=True, stages=6).staging_in_ring
    assert base.staging_bytes == 0 and not base.staging_in_ring
    assert not GemmConfig(staged_store=False).staging_in_ring


@pytest.mark.parametrize("gs", [24, 8, 1, 2, 100, -128])
def test_bad_group_size(gs):
    _raises(ValueError, rf"group_size must be 0 \(per channel\) or a power of two >= 16, got {gs}", group_size=gs)


@pytest.mark.parametrize("gs", [0, 16, 32, 64, 128, 256, 1024])
def test_good_group_size(gs):
    GemmConfig(group_size=gs).validate()


@pytest.mark.parametrize("c", ["float32", "int8", "float8e4m3"])
def test_bad_output_dtype(c):
    _raises(ValueError, rf"output dtype must be float16 or bfloat16, got {c}", c_dtype=c)


def test_sm75_not_supported():
    _raises(NotImplementedError, r"sm_75: the CuTe DSL kernels need sm_80 or newer", arch="sm_75")
    _raises(ValueError, r"unknown GPU architecture", arch="sm_70")


# -------------------------------------------------------------------------------------- equality / hashing

@pytest.mark.parametrize("x,y", [
    (dict(a_dtype="fp16"), dict(a_dtype="float16")),
    (dict(a_dtype="half"), dict(a_dtype=torch.float16)),
    (dict(a_dtype="bf16", c_dtype="bf16"), dict(a_dtype="bfloat16", c_dtype=torch.bfloat16)),
    (dict(b_dtype="e4m3"), dict(b_dtype="float8e4m3")),
    (dict(b_dtype="fp4"), dict(b_dtype="float4e2m1")),
    (dict(b_dtype="UINT4"), dict(b_dtype="uint4", has_zero_point=True)),
])
def test_equivalent_names_compare_and_hash_equal(x, y):
    cx, cy = GemmConfig(**x), GemmConfig(**y)
    assert cx == cy and hash(cx) == hash(cy)
    assert len({cx, cy}) == 1
    assert {cx: 1}[cy] == 1


def test_dequant_plan_is_derived_from_the_types():
    assert GemmConfig().dequant_plan() == make_plan("float16", "uint4")


def test_different_configs_differ():
    base = GemmConfig()
    for kw in (dict(a_dtype="bf16"), dict(b_dtype="uint8"), dict(group_size=64), dict(stages=3),
               dict(arch="sm_90"), dict(has_bias=True), dict(block_n=128)):
        assert base.with_(**kw) != base
    assert base.with_(b_dtype="uint4") == base


def test_config_is_frozen():
    with pytest.raises(Exception):
        GemmConfig().stages = 3  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- default_config

MS = [1, 7, 16, 64, 333, 4096]
NPADS = [64, 192, 4096, 4160]
KPADS = [64, 192, 4096, 4160]
GROUPS = [0, 32, 128]
TYPES = [("float16", "uint4"), ("float16", "int4"), ("bfloat16", "uint8"), ("float16", "int8"),
         ("bfloat16", "float8e4m3"), ("float16", "uint3")]


def _grid():
    for m, n, k, g in itertools.product(MS, NPADS, KPADS, GROUPS):
        if g and k % g:  # K is a multiple of the group size, so padded K is too (for groups >= 64, K_pad = K)
            continue
        yield m, n, k, g


def _check_default(arch, a, b):
    for m, n, k, g in _grid():
        cfg = default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch=arch)
        assert cfg.validate() is cfg, (m, n, k, g)
        # the shapes the dispatcher relies on
        assert n % cfg.block_n == 0 and k % cfg.block_k == 0, (m, n, k, g, cfg)
        assert cfg.group_size == g and cfg.a_dtype == a
        if g:
            assert (k // g) % cfg.scale_rows == 0, (m, n, k, g, cfg)


@pytest.mark.parametrize("a,b", TYPES)
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_default_config_validates(arch, a, b):
    _check_default(arch, a, b)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_default_config_small_m_uses_small_tiles(arch):
    cfg = default_config(1, 4096, 4096, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                         arch=arch)
    assert cfg.block_m == 16
    big = default_config(4096, 4096, 4096, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                         group_size=128, arch=arch)
    assert big.block_m >= 64


@pytest.mark.parametrize("arch", ["sm_86", "sm_89", "sm_120"])
def test_default_config_validates_on_99kb_archs(arch):
    for a, b in [("float16", "uint4"), ("bfloat16", "uint8")]:
        _check_default(arch, a, b)


def test_warp_k_and_split_k_rules():
    base = dict(a_dtype="float16", b_dtype="uint4", group_size=128, block_m=16, block_n=64, block_k=256,
                warp_m=16, warp_n=64)
    cfg = GemmConfig(**base, warp_k=64).validate()
    assert cfg.warps_k == 4 and cfg.num_threads == 128
    assert GemmConfig(**base).warp_k == 256          # 0 means "the whole block_k"
    with pytest.raises(ValueError, match="multiple of warp_k"):
        GemmConfig(**{**base, "block_k": 128}, warp_k=256).validate()
    with pytest.raises(ValueError, match="warp_k must be a power of two"):
        GemmConfig(**base, warp_k=96).validate()
    with pytest.raises(ValueError, match="split_k must be an int in 1..64"):
        GemmConfig(**base, split_k=0).validate()
    with pytest.raises(ValueError, match="split_k must be an int in 1..64"):
        GemmConfig(**base, split_k=65).validate()
    # the K-split warps' fp32 partial sums count towards shared memory
    from humming_cute.config import smem_bytes
    assert smem_bytes(GemmConfig(**base, warp_k=64)) - smem_bytes(GemmConfig(**base)) == 3 * 16 * 64 * 4


def test_batch_invariant_default_configs_share_the_k_structure():
    from humming_cute.tune import default_config

    cfgs = [default_config(m, 4096, 4096, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                           arch="sm_90a", batch_invariant=True) for m in (1, 7, 16, 33, 64, 333, 4096)]
    assert {(c.block_k, c.warp_k, c.split_k) for c in cfgs} == {(64, 64, 1)}


def test_one_wave_stages_for_wide_decode_weights(monkeypatch):
    """sm_90 decode tiles of 6-8 bit weights whose grid is more than one wave at the stages that fit take the most
    stages at which the grid is one wave (CTAs per SM by shared memory); grids already in one wave, 4-bit weights,
    other archs and the switch off keep their stages."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a", num_sms=132)
    per_sm = get_arch("sm_90a").smem_per_sm_bytes

    def waves(cfg, m, n):
        ctas = -(-m // cfg.block_m) * (n // cfg.block_n) * cfg.split_k
        return ctas / (132 * (per_sm // (smem_bytes(cfg) + 1024)))

    for b, g in (("int8", 0), ("uint8", 128), ("int6", 128)):
        for m in (1, 16):
            cfg = default_config(m, 28672, 4096, b_dtype=b, group_size=g, **kw).validate()
            assert cfg.stages == 2 and waves(cfg, m, 28672) <= 1, (b, m, cfg)
            assert waves(cfg.with_(stages=3), m, 28672) > 1      # the most stages that make one wave
        # one wave already: unchanged
        assert default_config(1, 8192, 8192, b_dtype=b, group_size=g, **kw).stages == 4
    assert default_config(1, 28672, 4096, b_dtype="uint4", group_size=128, **kw).stages == 3
    sm80 = default_config(1, 28672, 4096, b_dtype="int8", group_size=0, **{**kw, "arch": "sm_80"})
    monkeypatch.setattr(heur, "DECODE_ONE_WAVE_STAGES", False)
    assert default_config(1, 28672, 4096, b_dtype="int8", group_size=0, **kw).stages == 4
    assert default_config(1, 28672, 4096, b_dtype="int8", group_size=0, **{**kw, "arch": "sm_80"}) == sm80
