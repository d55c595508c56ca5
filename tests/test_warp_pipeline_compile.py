"""`warp_pipeline` on a CPU: which configs take it (each error names it), and the decode kernel compiled with it:
the main loop's CTA barrier becomes a warp barrier, the copies keep their count, no spills."""

from __future__ import annotations

import re

import pytest

from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch

KW = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16, warp_m=16,
          block_n=64, warp_n=64, block_k=512, warp_k=128, stages=3, two_level_scales=True, arch="sm_90a")


def test_rules():
    """mma.sync with 16-bit activations, one warp row per block, and whole scale groups per warp; warps across N
    and the MoE GEMM are valid."""
    GemmConfig(**KW, warp_pipeline=True).validate()
    GemmConfig(**{**KW, "b_dtype": "int8", "group_size": 0, "two_level_scales": False},
               warp_pipeline=True).validate()
    for bad in (dict(block_m=32), dict(mainloop="sm90", block_m=64, warp_m=64, block_k=64, warp_k=64,
                                       two_level_scales=False),
                dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0, two_level_scales=False),
                dict(group_size=256)):
        with pytest.raises(ValueError, match="warp_pipeline"):
            GemmConfig(**{**KW, **bad}, warp_pipeline=True).validate()
    # the same configs without the option are valid: each error above is the option's own
    for ok in (dict(block_n=128), dict(group_size=256), dict(moe=True, two_level_scales=False)):
        GemmConfig(**{**KW, **ok}).validate()
    for extra in (dict(block_n=128), dict(moe=True, two_level_scales=False)):
        GemmConfig(**{**KW, **extra}, warp_pipeline=True).validate()
    # launch bounds: the mma.sync kernel's option (the wgmma kernels set their own), 0..32 CTAs per SM
    GemmConfig(**KW, launch_min_blocks=1).validate()
    for bad in (dict(mainloop="sm90", block_m=64, warp_m=64, block_k=64, warp_k=64, two_level_scales=False,
                     launch_min_blocks=1), dict(launch_min_blocks=-1), dict(launch_min_blocks=33)):
        with pytest.raises(ValueError, match="launch_min_blocks"):
            GemmConfig(**{**KW, **bad}).validate()


def _bars(ptx: str) -> tuple[int, int]:
    return len(re.findall(r"\bbar(?:rier)?\.sync\b", ptx)), len(re.findall(r"\bbar\.warp\.sync\b", ptx))


_EXTRAS = [dict(), dict(b_dtype="int8", group_size=0, two_level_scales=False, block_k=256, warp_k=64, stages=4),
           dict(split_k=2, cluster_split_k=True), dict(group_size=32, block_k=256, warp_k=64)]


# (clusters need sm_90+: the config check refuses cluster split-K on sm_80)
@pytest.mark.parametrize("arch,extra", [(a, e) for a in ("sm_80", "sm_90a", "sm_120a") for e in _EXTRAS
                                        if not (a == "sm_80" and e.get("cluster_split_k"))])
def test_compiles(arch, extra):
    """One CTA barrier fewer (the main loop's) and one warp barrier; the same number of cp.async copies; no spills."""
    base = GemmConfig(**{**KW, **extra, "arch": arch})
    if arch == "sm_120a":
        base = base.with_(stages=2)       # its 99 KB of shared memory per block
    base = base.validate()
    cfg = base.with_(warp_pipeline=True).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(base), *fake_operands(base), arch=arch, options="--enable-tvm-ffi")
    (cta, warp), (cta0, warp0) = _bars(art.ptx), _bars(ref.ptx)
    assert (cta, warp) == (cta0 - 1, warp0 + 1), ((cta, warp), (cta0, warp0))
    assert art.ptx.count("cp.async.cg") == ref.ptx.count("cp.async.cg") > 0
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_swap_ab_rules():
    """swap_ab needs rows8 (M <= 8) and neither fold_offsets nor fp16 accumulation; each error names it."""
    GemmConfig(**KW, rows8=True, swap_ab=True).validate()
    for bad in (dict(rows8=False), dict(rows8=True, fold_offsets=True),
                dict(rows8=True, use_f16_accum=True, two_level_scales=False)):
        with pytest.raises(ValueError, match="swap_ab"):
            GemmConfig(**{**KW, **bad}, swap_ab=True).validate()


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_120a"])
@pytest.mark.parametrize("extra", [dict(), dict(a_dtype="bfloat16", c_dtype="bfloat16", b_dtype="int8", group_size=0,
                                                two_level_scales=False, block_k=256, warp_k=64),
                                   dict(block_n=128, block_k=256, warp_k=64, warp_pipeline=False,
                                        two_level_scales=False)])
def test_swap_ab_compiles(arch, extra):
    """Half the m16n8k16 MMAs of the same tile without the swap (16 weight columns x 8 rows each), of the operand
    type; the accumulators moved by warp shuffles; no spills."""
    kw = {**KW, "rows8": True, "warp_pipeline": True, **extra, "arch": arch,
          "stages": 2 if arch == "sm_120a" else KW["stages"]}
    base = GemmConfig(**kw).validate()
    cfg = base.with_(swap_ab=True).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(base), *fake_operands(base), arch=arch, options="--enable-tvm-ffi")
    t = "bf16" if kw["a_dtype"] == "bfloat16" else "f16"
    op = rf"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.{t}\.{t}\.f32"
    n_swap, n_ref = len(re.findall(op, art.ptx)), len(re.findall(op, ref.ptx))
    assert n_ref > 0 and 2 * n_swap == n_ref, (n_swap, n_ref)
    assert art.ptx.count("shfl.sync") >= cfg.warp_n // 4
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_default_switch(monkeypatch):
    """sm_90 decode defaults (M <= 32) of <= 5-bit weights with one warp column take warp_pipeline (and at M <= 8
    rows8 + swap_ab); 6-8 bit weights,
    other archs, M > 32, groups wider than a warp's k-range and the switch off keep the CTA-wide copies; the
    autotuner's mma.sync candidates come with and without it."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.tune.autotune import candidate_configs
    from humming_cute.tune.heuristics import default_config

    kw = dict(a_dtype="float16", c_dtype="float16", arch="sm_90a")
    for m, n, k in ((1, 8192, 8192), (16, 8192, 8192), (1, 4096, 4096), (16, 28672, 4096), (1, 4096, 14336)):
        for b, g in (("uint4", 128), ("int4", 32), ("float4e2m1", 32), ("uint3", 64)):
            cfg = default_config(m, n, k, b_dtype=b, group_size=g, **kw).validate()
            assert cfg.warp_pipeline == (cfg.block_n == cfg.warp_n), (m, n, k, b, cfg)
    assert default_config(1, 8192, 8192, b_dtype="uint4", group_size=128, **kw).warp_pipeline
    assert not default_config(1, 8192, 8192, b_dtype="int8", group_size=0, **kw).warp_pipeline
    assert not default_config(1, 8192, 8192, b_dtype="int4", group_size=256, **kw).warp_pipeline
    assert default_config(32, 8192, 8192, b_dtype="uint4", group_size=128, **kw).warp_pipeline
    assert not default_config(32, 28672, 4096, b_dtype="uint4", group_size=128, **kw).warp_pipeline   # bn 128
    assert not default_config(33, 8192, 8192, b_dtype="uint4", group_size=128, **kw).warp_pipeline
    assert not default_config(1, 8192, 8192, b_dtype="uint4", group_size=128,
                              **{**kw, "arch": "sm_80"}).warp_pipeline
    base = default_config(1, 8192, 8192, b_dtype="uint4", group_size=128, **kw)
    cands = candidate_configs(base, 1, 8192, 8192, max_candidates=200)
    assert any(c.warp_pipeline for c in cands[1:]) and any(not c.warp_pipeline for c in cands)
    assert any(c.block_n == 128 for c in cands)        # warps across N: without per-warp pipelines
    for m in (1, 8, 9, 16):      # M <= 8 also rows8 + swap_ab
        cfg = default_config(m, 8192, 8192, b_dtype="uint4", group_size=128, **kw).validate()
        assert cfg.swap_ab == cfg.rows8 == (m <= 8)
    assert not default_config(1, 8192, 8192, b_dtype="int8", group_size=0, **kw).swap_ab
    assert default_config(1, 8192, 8192, b_dtype="uint4", group_size=128, **kw).launch_min_blocks == 0
    for b, g, a in (("int4", 128, "float16"), ("float4e2m1", 32, "float16"), ("uint4", 128, "bfloat16")):
        cfg = default_config(1, 8192, 8192, b_dtype=b, group_size=g, **{**kw, "a_dtype": a, "c_dtype": a})
        assert cfg.swap_ab and cfg.launch_min_blocks == 1     # (the other formats: launch bounds, no spills)
    monkeypatch.setattr(heur, "DECODE_SWAP_AB", False)
    assert not default_config(1, 8192, 8192, b_dtype="uint4", group_size=128, **kw).swap_ab
    monkeypatch.setattr(heur, "DECODE_WARP_PIPELINE", False)
    assert not default_config(1, 8192, 8192, b_dtype="uint4", group_size=128, **kw).warp_pipeline


@pytest.mark.parametrize("extra", [dict(block_n=128), dict(block_n=256, b_dtype="int8", group_size=0,
                                                           two_level_scales=False, block_k=256, warp_k=128, stages=2),
                                   dict(moe=True, moe_top_k=8, two_level_scales=False, block_n=128, block_k=128),
                                   dict(moe=True, moe_down=True, moe_mul_topk_weights=True, two_level_scales=False,
                                        block_n=256, block_k=128, moe_row_cache=True)])
def test_compiles_warps_n_and_moe(extra):
    """Warps across N (each warp column its own activation stages: warps_n x the activation shared memory in the
    estimate) and the MoE GEMM: the main loop's CTA barrier becomes a warp barrier, no spills."""
    from humming_cute.config import smem_bytes
    from humming_cute.runtime.compile import compile_kernel
    from humming_cute.testing.ptx import launch_smem_bytes

    base = GemmConfig(**{**KW, **extra}).validate()
    cfg = base.with_(warp_pipeline=True).validate()
    a_bytes = base.block_m * base.block_k * 2 * base.stages
    assert smem_bytes(cfg) - smem_bytes(base) == (base.warps_n - 1) * a_bytes
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))      # what the kernel really allocates
    assert len(need) == 1 and need[0] <= smem_bytes(cfg) <= need[0] + 1024, (need, smem_bytes(cfg))
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(base), *fake_operands(base), arch="sm_90a", options="--enable-tvm-ffi")
    (cta, warp), (cta0, warp0) = _bars(art.ptx), _bars(ref.ptx)
    assert (cta, warp) == (cta0 - 1, warp0 + 1), ((cta, warp), (cta0, warp0))
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("m,n,k,b,g,a", [
    (1, 28672, 4096, "int4", 128, "float16"), (1, 4096, 14336, "float4e2m1", 32, "float16"),
    (1, 4096, 14336, "uint4", 0, "bfloat16"), (1, 8192, 8192, "uint5", 0, "float16"),
    (8, 4096, 14336, "uint4", 32, "float16"), (1, 28672, 4096, "uint4", 128, "float16")])
def test_decode_defaults_do_not_spill(m, n, k, b, g, a):
    """Decode defaults with the per-warp pipelines (and swap_ab at M <= 8) compile without spills; the first four
    spilled with swap_ab when they had no launch bounds (ptxas cut them to 64-80 registers): their PTX now carries
    `.minnctapersm 1`."""
    from humming_cute.tune.heuristics import default_config

    cfg = default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch="sm_90a").validate()
    assert cfg.warp_pipeline and cfg.swap_ab == (m <= 8)
    assert cfg.launch_min_blocks == (m <= 8 and not (b == "uint4" and a == "float16"))
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert bool(re.search(r"\.minnctapersm\s+1\b", art.ptx)) == (cfg.launch_min_blocks == 1)
