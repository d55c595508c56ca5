"""Programmatic dependent launch on the dense mma.sync GEMM (`GemmConfig.pdl`): the rules, and what the PTX must
show - the first stages' weight copies before `griddepcontrol.wait`, no global load or store before it, and
`griddepcontrol.launch_dependents` after the last copy. Refused until GPU-verified (`ALLOW_UNVERIFIED`)."""

from __future__ import annotations

import re

import pytest

import humming_cute.config as hconfig
from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune.heuristics import default_config

KW = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16, warp_m=16,
          block_n=64, warp_n=64, block_k=512, warp_k=128, stages=3, two_level_scales=True, arch="sm_90a")


def test_rules(monkeypatch):
    """Refused until GPU-verified; then only the dense mma.sync GEMM with 16-bit activations on sm_90+."""
    with pytest.raises(NotImplementedError, match="pdl .* not yet verified"):
        GemmConfig(**KW, pdl=True).validate()
    GemmConfig(**KW).validate()
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)
    GemmConfig(**KW, pdl=True).validate()
    for bad in (dict(arch="sm_80"), dict(moe=True, two_level_scales=False),
                dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0, two_level_scales=False),
                dict(mainloop="sm90", block_m=64, warp_m=64, block_k=64, warp_k=64, two_level_scales=False)):
        with pytest.raises(ValueError, match="pdl"):
            GemmConfig(**{**KW, **bad}, pdl=True).validate()


@pytest.mark.parametrize("m,b,g,extra", [(1, "uint4", 128, dict()), (16, "int8", 0, dict()),
                                         (1, "int4", 128, dict(split_k=2, cluster_split_k=True, block_k=256)),
                                         (64, "uint4", 128, dict(mainloop="sm80"))])
def test_compiles(monkeypatch, m, b, g, extra):
    """The default decode tiles (with warp_pipeline / swap_ab where they take them), split-K in a cluster and a
    64-row mma.sync tile: one wait, one launch_dependents, the same cp.async count as without pdl, only weight and
    scale copies (no global load or store) before the wait, none after launch_dependents, no spills."""
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)
    extra = dict(extra)
    base = default_config(m, 4096, 4096, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g,
                          arch="sm_90a", **({"mainloop": extra.pop("mainloop")} if "mainloop" in extra else {}))
    base = base.with_(**extra).validate()
    cfg = base.with_(pdl=True).validate()
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
