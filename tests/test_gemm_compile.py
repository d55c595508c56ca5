"""The mma.sync GEMM compiles for every target arch on a CPU, with the intended instructions and no spills."""

from __future__ import annotations

import re

import pytest

from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune import default_config

ARCHS = ["sm_80", "sm_86", "sm_89", "sm_90a", "sm_120a"]

# representative default configs: decode (M=1), mid (M=64), prefill (M=4096)
CASES = [
    ("float16", "uint4", 128, 1),
    ("bfloat16", "int8", 0, 64),
    ("float16", "float4e2m1", 32, 4096),
    ("bfloat16", "uint8", 64, 32),
]


def _compile(arch, a, b, g, m):
    cfg = default_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch=arch, mainloop="sm80")
    cfg.validate()
    return cfg, compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("a,b,g,m", CASES)
def test_compiles_with_intended_instructions(arch, a, b, g, m):
    cfg, art = _compile(arch, a, b, g, m)
    ptx = art.ptx
    assert re.search(rf"\.target\s+{arch}\b", ptx)
    t = "bf16" if a == "bfloat16" else "f16"
    assert re.search(rf"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.{t}\.{t}\.f32", ptx)
    assert "ldmatrix.sync.aligned" in ptx
    assert "cp.async.cg.shared.global" in ptx
    # packed weight words are read from shared memory with 128-bit loads
    assert "ld.shared.v4.u32" in ptx or "ld.shared.v4.b32" in ptx
    # the dequant transform runs on packed halves
    assert re.search(rf"\b(fma|add|sub|mul)(\.rn)?\.{t}x2\b", ptx)
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas, "ptxas printed no resource report"
    assert spills == 0, f"{cfg}: ptxas reports {spills} spill bytes"


def test_compile_time_is_reported():
    from humming_cute.runtime import compile as rc

    before = rc.compile_stats()["compiles"]
    cfg = default_config(16, 256, 512, a_dtype="float16", b_dtype="int4", c_dtype="float16", group_size=0,
                         arch="sm_80")
    rc.compile_kernel(cfg)
    st = rc.compile_stats()
    assert st["compiles"] == before + 1 and 0 < st["last_seconds"] < 60


def test_use_f16_accum_compiles():
    """use_f16_accum: fp16-accumulating m16n8k16 MMAs, no spills; refused for anything but fp16 (or e4m3)
    activations and fp16 output on the mma.sync mainloop."""
    cfg = default_config(16, 4096, 4096, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                         arch="sm_86").with_(use_f16_accum=True, two_level_scales=False).validate()
    bf = default_config(16, 4096, 4096, a_dtype="bfloat16", b_dtype="uint4", c_dtype="bfloat16", group_size=128,
                        arch="sm_86").with_(use_f16_accum=True)
    with pytest.raises(NotImplementedError, match="float16 or float8e4m3 activations and float16 output"):
        bf.validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_86", options="--enable-tvm-ffi")
    assert re.search(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f16\.f16\.f16\.f16", art.ptx)
    assert not re.search(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32", art.ptx)
    assert art.ptxas and sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.parametrize("b,group,arch", [("uint4", 128, "sm_80"), ("int3", 64, "sm_90a"), ("float4e2m1", 32, "sm_89")])
def test_decode_two_level_scales_compile(b, group, arch):
    """M <= 16 with group scales: the default config scales fp32 partial sums at group ends (two_level_scales), so
    the mainloop multiplies no dequantized weight pair by a scale; compiles without spills."""
    cfg = default_config(1, 8192, 8192, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=group,
                         arch=arch)
    assert cfg.two_level_scales
    if arch == "sm_90a":   # smaller shared memories (sm_80, sm_89) take shallower k-tiles
        assert cfg.block_k == 1024 and cfg.warps_k == 8 and cfg.stages == 3
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    assert "mul.f16x2" not in art.ptx and "fma.rn.f32" in art.ptx
    assert art.ptxas and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="two_level_scales"):
        cfg.with_(group_size=0).validate()


@pytest.mark.parametrize("b,g,m,k,split", [("uint4", 128, 1, 4096, 2), ("int8", 0, 16, 14336, 4),
                                           ("float4e2m1", 32, 64, 4096, 8)])
def test_cluster_split_k_compiles(b, g, m, k, split):
    """cluster_split_k: two cluster barriers, CTA 0 reads the other ranks' partials with ld.shared::cluster,
    no global ticket (atomics); no spills; refused off sm_90+ and outside split_k 2..8."""

    cfg = default_config(m, 4096, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g,
                         arch="sm_90a", mainloop="sm80").with_(split_k=split, cluster_split_k=True).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ptx = art.ptx
    assert ptx.count("barrier.cluster.arrive") == 2 and ptx.count("barrier.cluster.wait") == 2
    assert ptx.count("ld.shared::cluster.f32") >= split - 1 and "mapa.shared::cluster" in ptx
    assert "atom.global" not in ptx
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(ValueError, match="sm_90 and newer"):
        cfg.with_(arch="sm_89", pdl=False).validate()
    with pytest.raises(ValueError, match="2..8"):
        cfg.with_(split_k=1).validate()


@pytest.mark.parametrize("n,k,cluster", [(4096, 4096, True), (4096, 14336, True), (8192, 8192, False),
                                         (28672, 4096, False), (2048, 768, False)])
def test_decode_defaults_cluster_split(n, k, cluster):
    """Decode (M <= 32) on sm_90a, 16-bit activations: grids under 80 CTAs split K in two inside a cluster
    (<= 5-bit weights: 512-deep k-tiles, 4 warps, where K has >= 8 such k-tiles; 8-bit weights: their 256-deep
    4-stage tiles, >= 16 of them); never on other archs, GLU or batch-invariant configs."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128)
    for m in (1, 16):
        cfg = default_config(m, n, k, arch="sm_90a", **kw).validate()
        assert cfg.cluster_split_k == cluster
        if cluster:
            assert (cfg.split_k, cfg.block_k, cfg.warp_k, cfg.num_threads) == (2, 512, 128, 128)
    for other in (dict(arch="sm_89"), dict(arch="sm_90a", glu=True), dict(arch="sm_90a", batch_invariant=True)):
        assert not default_config(1, n, k, **kw, **other).cluster_split_k
    w8 = default_config(1, n, k, arch="sm_90a", **{**kw, "b_dtype": "int8", "group_size": 0}).validate()
    assert w8.cluster_split_k == cluster
    if cluster:
        assert (w8.split_k, w8.block_k, w8.warp_k, w8.stages, w8.num_threads) == (2, 256, 64, 4, 128)
    assert not default_config(1, n, k, arch="sm_89", **{**kw, "b_dtype": "int8", "group_size": 0}).cluster_split_k


@pytest.mark.parametrize("a,b,g,m,arch", [("float16", "uint4", 128, 1, "sm_90a"), ("bfloat16", "int4", 0, 16, "sm_80"),
                                          ("float16", "int8", 0, 1, "sm_89")])
def test_integer_decode_fuses_mask_and_magic(a, b, g, m, arch):
    """Integer codes become (code & mask) | magic in one lop3 (LUT 0xEA = 234), 8-bit codes under fp16 one prmt
    of each half's code byte and the magic byte (selectors 0x4240 / 0x4341): no separate or.b32 with the
    magic exponent survives, and pair broadcasts of group scales / zero points are prmt (0x1010 / 0x3232)."""
    cfg = default_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype=a, group_size=g, arch=arch)
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    magic = {"float16": 0x64006400, "bfloat16": 0x43004300}[a]
    if b == "int8" and a == "float16":
        assert "0x4240" in art.ptx and "0x4341" in art.ptx
        assert not re.search(r"lop3\.b32 [^;]*, 234;", art.ptx)
    else:
        assert re.search(r"lop3\.b32 [^;]*, 234;", art.ptx)
    assert not re.search(rf"or\.b32 [^;]*, {magic};", art.ptx)
    if g:
        assert "prmt.b32" in art.ptx and "0x1010" in art.ptx.lower()
