"""CPU compile checks of `evict_first`: the weight loads of both mainloops take an L2 evict-first policy made by
`createpolicy` (cp.async in its `.L2::cache_hint` form, the TMA loads with that policy as their hint); without
the option no policy is made, and the number of copies does not change."""

from __future__ import annotations

import re

import pytest

from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune import default_config

_POLICY = re.compile(r"createpolicy\.fractional\.L2::evict_first\.b64\s+(%rd\d+)")


def _ptx(cfg):
    kernel = Sm80MixedGemm if cfg.mainloop == "sm80" else Sm90MixedGemm
    art = compile_for_arch(kernel(cfg), *fake_operands(cfg), arch=cfg.arch, options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    return art.ptx


@pytest.mark.parametrize("arch,m,n,k,b,g", [("sm_80", 1, 4096, 4096, "uint4", 128),
                                            ("sm_90a", 1, 4096, 4096, "int8", 0),       # split-K in a cluster
                                            ("sm_90a", 1, 8192, 8192, "uint4", 128),    # per-warp pipeline, swap
                                            ("sm_120a", 16, 2048, 2048, "float4e2m1", 32)])
def test_evict_first_cp_async(arch, m, n, k, b, g):
    cfg = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g, arch=arch)
    assert cfg.mainloop == "sm80"
    plain, hinted = _ptx(cfg.with_(evict_first=False)), _ptx(cfg.with_(evict_first=True))
    assert not _POLICY.search(plain) and "L2::cache_hint" not in plain
    policies = set(_POLICY.findall(hinted))
    assert policies
    hinted_copies = re.findall(r"cp\.async\.cg\.shared\.global\.L2::cache_hint \[[^\]]+\], \[[^\]]+\], 16, (%rd\d+);",
                               hinted)
    assert hinted_copies and set(hinted_copies) <= policies
    # the same copies: the weight's now carry the hint, the activations' and scales' do not
    count = lambda ptx: len(re.findall(r"cp\.async\.cg\.shared\.global", ptx))   # noqa: E731
    assert count(plain) == count(hinted)
    assert len(hinted_copies) < count(hinted)


@pytest.mark.parametrize("m,n,k,b,g", [(64, 4096, 4096, "uint4", 128),       # cluster split-K, K slices
                                       (256, 4096, 4096, "int8", 0),          # producer warpgroup, staged store
                                       (4096, 8192, 8192, "uint4", 128)])     # 256-row persistent tiles
def test_evict_first_tma(m, n, k, b, g):
    cfg = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g, arch="sm_90a")
    assert cfg.mainloop == "sm90"
    plain, hinted = _ptx(cfg.with_(evict_first=False)), _ptx(cfg.with_(evict_first=True))
    assert not _POLICY.search(plain)
    policies = set(_POLICY.findall(hinted))
    assert policies
    tma = lambda ptx: re.findall(r"cp\.async\.bulk\.tensor\.\S+\.L2::cache_hint [^;]*, (%rd\d+);", ptx)  # noqa: E731
    assert len(tma(plain)) == len(tma(hinted))
    assert set(tma(hinted)) & policies, "no TMA load takes the evict-first policy"
    assert not set(tma(plain)) & policies


def test_evict_first_must_be_bool():
    with pytest.raises(ValueError, match="evict_first"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, evict_first=1).validate()
