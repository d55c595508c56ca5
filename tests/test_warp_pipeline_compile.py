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
    """Dense mma.sync with 16-bit activations, warps only along K, and whole scale groups per warp."""
    GemmConfig(**KW, warp_pipeline=True).validate()
    GemmConfig(**{**KW, "b_dtype": "int8", "group_size": 0, "two_level_scales": False},
               warp_pipeline=True).validate()
    for bad in (dict(block_n=128), dict(block_m=32), dict(mainloop="sm90", block_m=64, warp_m=64, block_k=64,
                                                          warp_k=64, two_level_scales=False),
                dict(moe=True, two_level_scales=False),
                dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0, two_level_scales=False),
                dict(group_size=256)):
        with pytest.raises(ValueError, match="warp_pipeline"):
            GemmConfig(**{**KW, **bad}, warp_pipeline=True).validate()
    # the same configs without the option are valid: each error above is the option's own
    for bad in (dict(block_n=128), dict(group_size=256)):
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
