"""Programmatic dependent launch on the dense GEMM (`GemmConfig.pdl`): the rules, and what the PTX must show -
the first stages' weight copies before `griddepcontrol.wait`, no global load or store before it, and
`griddepcontrol.launch_dependents` after the last copy (mma.sync; on the wgmma kernel the producer's first weight
TMA loads before its wait and no store before the consumers'); the defaults that take it."""

from __future__ import annotations

import re

import pytest

from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune.heuristics import default_config

KW = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16, warp_m=16,
          block_n=64, warp_n=64, block_k=512, warp_k=128, stages=3, two_level_scales=True, arch="sm_90a")


WG = dict(mainloop="sm90", block_m=64, warp_m=64, block_k=64, warp_k=64, two_level_scales=False)


def test_rules():
    """Only the dense GEMM with 16-bit activations on sm_90+: mma.sync, or wgmma without a persistent grid and
    with one weight stage before the wait."""
    GemmConfig(**KW, pdl=True).validate()
    for bad in (dict(arch="sm_80"), dict(moe=True, two_level_scales=False),
                dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0, two_level_scales=False),
                dict(WG, warp_specialized=True, persistent_ctas=132, pdl_prefetch=1), dict(WG)):
        with pytest.raises(ValueError, match="pdl"):
            GemmConfig(**{**KW, **bad}, pdl=True).validate()
    with pytest.raises(ValueError, match="pdl_prefetch must be 1"):
        GemmConfig(**{**KW, **WG}, pdl=True, pdl_prefetch=2).validate()
    assert GemmConfig(**{**KW, **WG}, pdl=True, pdl_prefetch=1).validate().pdl


@pytest.mark.parametrize("m,n,k,extra", [(64, 4096, 14336, dict()), (256, 8192, 8192, dict()),
                                         (256, 8192, 4096, dict(warp_specialized=True, cluster_n=2)),
                                         (128, 4096, 4096, dict(split_k=2, cluster_split_k=False))])
def test_wgmma_compiles(m, n, k, extra):
    """wgmma with pdl (the M = 64 default: split-K in a cluster, no producer warpgroup; the M = 256 default with
    the producer warpgroup; multicast; split-K through the workspace): the same TMA loads as without pdl, the
    first of them (weights) before a wait, no global store or atomic before the consumers' wait, one
    launch_dependents, no spills; without pdl no griddepcontrol at all."""
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm

    base = default_config(m, n, k, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                          arch="sm_90a").with_(**extra).validate()
    assert base.mainloop == "sm90" and not base.pdl and not base.persistent_ctas
    cfg = base.with_(pdl=True, pdl_prefetch=1).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm90MixedGemm(base), *fake_operands(base), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    assert "griddepcontrol" not in ref.ptx
    assert ptx.count("griddepcontrol.launch_dependents") == 1 and ptx.count("griddepcontrol.wait") >= 2
    assert ptx.count("cp.async.bulk.tensor") == ref.ptx.count("cp.async.bulk.tensor") > 0
    assert "cp.async.bulk.tensor" in ptx[:ptx.index("griddepcontrol.wait")]
    last_wait = ptx.rindex("griddepcontrol.wait")
    assert ptx.index("griddepcontrol.launch_dependents") < last_wait
    assert not re.search(r"\b(st|red|atom)\.global", ptx[:last_wait])
    assert re.search(r"\bst\.global", ptx[last_wait:])
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("m,b,g,extra", [(1, "uint4", 128, dict()), (16, "int8", 0, dict()),
                                         (1, "int4", 128, dict(split_k=2, cluster_split_k=True, block_k=256)),
                                         (64, "uint4", 128, dict(mainloop="sm80"))])
def test_compiles(m, b, g, extra):
    """The default decode tiles (with warp_pipeline / swap_ab where they take them), split-K in a cluster and a
    64-row mma.sync tile: one wait, one launch_dependents, the same cp.async count as without pdl, only weight and
    scale copies (no global load or store) before the wait, none after launch_dependents, no spills."""
    extra = dict(extra)
    base = default_config(m, 4096, 4096, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g,
                          arch="sm_90a", **({"mainloop": extra.pop("mainloop")} if "mainloop" in extra else {}))
    cfg = base.with_(**extra).validate()
    assert cfg.pdl, "the sm_90 mma.sync defaults take pdl (`heuristics.DECODE_PDL`)"
    base = cfg.with_(pdl=False).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(base), *fake_operands(base), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    assert ptx.count("griddepcontrol.wait") == 1 and ptx.count("griddepcontrol.launch_dependents") == 1
    assert "griddepcontrol" not in ref.ptx
    assert ptx.count("cp.async.cg") == ref.ptx.count("cp.async.cg") > 0
    before = ptx[:ptx.index("griddepcontrol.wait")]
    assert before.count("cp.async.cg") > 0 and "cp.async.commit_group" not in before
    assert not re.search(r"\b(ld|st|red|atom)\.global", before)
    assert "cp.async.cg" not in ptx[ptx.index("griddepcontrol.launch_dependents"):]
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_defaults():
    """pdl (one weight stage before the wait) is on for the sm_90 dense mma.sync tiles of 16-bit activations
    (M < 64) and nowhere else."""
    kw = dict(a_dtype="float16", c_dtype="float16", group_size=128)
    for m in (1, 8, 16, 33, 63):
        assert default_config(m, 8192, 8192, b_dtype="uint4", arch="sm_90a", **kw).pdl
    assert default_config(1, 4096, 4096, b_dtype="int8", arch="sm_90a", a_dtype="bfloat16", c_dtype="bfloat16",
                          group_size=0).pdl
    assert not default_config(256, 8192, 8192, b_dtype="uint4", arch="sm_90a", **kw).pdl      # wgmma
    assert not default_config(1, 8192, 8192, b_dtype="uint4", arch="sm_80", **kw).pdl
    assert not default_config(1, 8192, 8192, b_dtype="int4", arch="sm_90a", a_dtype="float8e4m3",
                              c_dtype="float16", group_size=0).pdl


@pytest.mark.parametrize("m,n,stages,pre", [(1, 8192, 3, 1), (16, 4096, 4, 2)])
def test_prefetch_stages(m, n, stages, pre):
    """pdl_prefetch: only the first `pre` stages' weight copies come before the wait (0: all stages - 1); the rest
    of the kernel is the same; bad values are refused."""
    base = default_config(m, n, 4096, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                          arch="sm_90a").with_(stages=stages)
    assert base.pdl and base.stages - 1 > pre
    arts = {}
    assert base.pdl_prefetch == 1                                   # the default
    for p in (0, pre):
        cfg = base.with_(pdl_prefetch=p).validate()
        arts[p] = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a",
                                   options="--enable-tvm-ffi")
    before = {p: a.ptx[:a.ptx.index("griddepcontrol.wait")].count("cp.async.cg") for p, a in arts.items()}
    assert before[pre] * (base.stages - 1) == before[0] * pre > 0
    assert arts[pre].ptx.count("cp.async.cg") == arts[0].ptx.count("cp.async.cg")
    assert sum(r.spill_bytes for r in arts[pre].ptxas.values()) == 0
    for bad in (dict(pdl_prefetch=base.stages), dict(pdl_prefetch=-1), dict(pdl_prefetch=1.5)):
        with pytest.raises(ValueError, match="pdl_prefetch"):
            base.with_(**bad).validate()
    assert base.with_(pdl=False) == base.with_(pdl=False, pdl_prefetch=0)      # (ignored without pdl)
