"""8-bit activations (fp8 e4m3 / e5m2, int8) on the mma.sync kernel: the variants compile for their archs with
the intended m16n8k32 MMA and no spills; illegal configs are refused with clear errors."""

from __future__ import annotations

import re

import pytest
import torch

import humming_cute.config as hconfig
from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.layouts.prepared import prepare_weight
from humming_cute.quant.weight import quantize_weight
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune import default_config


@pytest.fixture(autouse=True)
def _int4_enabled(monkeypatch):
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)


CASES = [  # activation, weight, arch, expected MMA type string, conversion instruction or None
    ("float8e4m3", "int4", "sm_89", "f32.e4m3.e4m3.f32", "cvt.rn.satfinite.e4m3x2.f16x2"),
    ("float8e4m3", "float8e4m3", "sm_90a", "f32.e4m3.e4m3.f32", None),
    ("float8e5m2", "float6e3m2", "sm_120a", "f32.e5m2.e5m2.f32", "cvt.rn.satfinite.e5m2x2.f16x2"),
    ("float8e4m3", "int5", "sm_89", "f32.e4m3.e4m3.f32", "cvt.rn.satfinite.e4m3x2.f16x2"),
    ("int8", "int8", "sm_80", "s32.s8.s8.s32", None),
    ("int8", "int3", "sm_90a", "s32.s8.s8.s32", None),
    ("int4", "int4", "sm_80", "s32.s4.s4.s32", None),
    ("int4", "int2", "sm_90a", "s32.s4.s4.s32", None),
]
GROUP_CASES = [  # two-level accumulation: activation, weight, weight group, activation group, M, arch
    ("float8e4m3", "uint4", 128, 0, 16, "sm_89"), ("int8", "uint7", 64, 0, 4096, "sm_80"),
    ("int8", "int4", 32, 0, 64, "sm_90a"), ("float8e4m3", "float4e2m1", 32, 0, 4096, "sm_90a"),
    ("float8e5m2", "int3", 128, 0, 1, "sm_120a"), ("float8e4m3", "uint4", 128, 128, 333, "sm_90a"),
    ("int8", "int8", 0, 128, 4096, "sm_80"), ("float8e4m3", "int4", 0, 64, 1, "sm_89"),
    ("int4", "uint3", 64, 0, 16, "sm_80"), ("int4", "int4", 0, 128, 4096, "sm_90a"),
]


@pytest.mark.parametrize("a,b,arch,mma,cvt", CASES)
def test_act8_compiles(a, b, arch, mma, cvt):
    m = 4096 if b == "int8" else 16
    cfg = default_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype="bfloat16", group_size=0, arch=arch)
    assert cfg.mainloop == "sm80" and cfg.act_bits == (4 if a == "int4" else 8)
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    ptx = art.ptx
    mk = 64 if a == "int4" else 32
    assert re.search(rf"mma\.sync\.aligned\.m16n8k{mk}\.row\.col\.{re.escape(mma)}", ptx)
    assert not re.search(r"mma\.sync\.aligned\.m16n8k16", ptx)
    assert "ldmatrix.sync.aligned" in ptx and "cp.async.cg.shared.global" in ptx
    if cvt:
        assert cvt in ptx
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas and spills == 0, f"{cfg}: {spills} spill bytes"


@pytest.mark.parametrize("a,b,g,xg,m,arch", GROUP_CASES)
def test_act8_group_scales_compile(a, b, g, xg, m, arch):
    cfg = default_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype="float16", group_size=g, arch=arch,
                         act_group_size=xg)
    assert cfg.act_group_size == xg
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    assert f"mma.sync.aligned.m16n8k{64 if a == 'int4' else 32}.row.col" in art.ptx
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas and spills == 0, f"{cfg}: {spills} spill bytes"


@pytest.mark.parametrize("kw,match", [
    (dict(arch="sm_80"), "sm_89"),
    (dict(group_size=16), "at least 32"),
    (dict(act_group_size=48), "act_group_size"),
    (dict(b_dtype="uint4", group_size=0), "zero points need a group size"),
    (dict(moe=True, act_group_size=128), "per-token scales"),
    (dict(mainloop="sm90", warp_m=16, block_k=64, warp_k=64, block_m=16, group_size=32), "mma.sync mainloop"),
    (dict(mainloop="sm90", warp_m=256, block_k=64, warp_k=64, block_m=256, group_size=64), "block_m must be <= 128"),
    (dict(mainloop="sm90", warp_m=16, block_k=64, warp_k=64, block_m=16, act_group_size=128),
     "mma.sync mainloop"),
])
def test_act8_config_errors(kw, match):
    base = dict(a_dtype="float8e4m3", b_dtype="int4", c_dtype="float16", group_size=0, block_m=16, block_n=128,
                block_k=128, warp_m=16, warp_n=64, warp_k=64, arch="sm_90a")
    base.update(kw)
    with pytest.raises((NotImplementedError, ValueError), match=match):
        GemmConfig(**base).validate()


def test_prepare_weight_act8():
    qw = quantize_weight(torch.randn(128, 256), "int4", 0)
    pw = prepare_weight(qw, "float8e4m3")
    assert pw.a_dtype == "float8e4m3" and pw.channel_scales is not None and pw.group_scales is None
    from humming_cute.layouts.weight import unpack_weight

    assert torch.equal(unpack_weight(pw.packed, 4, mma_k=32), qw.codes)       # the m16n8k32 layout
    # group scales: fp32, column order (no permutation, no rounding); zero points as per-column lane constants
    qg = quantize_weight(torch.randn(100, 256), "uint7", 64)
    pg = prepare_weight(qg, "int8")
    sc = pg.group_scales.view(torch.float32)
    assert sc.shape == (4, 128) and torch.equal(sc[:, :100], qg.scales.float().t()) and not sc[:, 100:].any()
    from humming_cute.layouts.weight import unpermute_n

    lanes = unpermute_n(pg.neg_sub.view(torch.int16)).to(torch.int32) & 0xFF
    assert torch.equal(lanes[:, :100], (128 - qg.zero_points.t()).to(torch.int32))
    with pytest.raises(ValueError, match="illegal pair"):
        prepare_weight(quantize_weight(torch.randn(128, 256), "int8", 0), "float8e4m3")


def test_layer_act8_load(monkeypatch):
    import humming_cute as hc

    layer = hc.HummingLayer(256, 512, "float8e4m3", "uint4", "bfloat16", "float16", 128)
    layer.load_weight(torch.randn(256, 512))
    layer.finish_load()
    pw = layer._prepared
    assert pw.a_dtype == "float8e4m3" and pw.group_size == 128 and pw.neg_sub is not None
    assert hc.HummingLayer(64, 64, "int8", "int8", None, "float16", 0).c_dtype.name == "float16"
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", False)   # MoE layers with 8-bit activations are enabled
    assert hc.HummingLayer(64, 64, "int8", "int8", None, "float16", 0, num_experts=4).num_experts == 4


def test_act_group_size_needs_8bit_activations():
    with pytest.raises(ValueError, match="act_group_size is for 8-bit"):
        GemmConfig(a_dtype="float16", b_dtype="int4", act_group_size=128).validate()


@pytest.mark.parametrize("a,b,g,m,mma", [("float8e4m3", "int4", 0, 4096, "m64n256k32.f32.e4m3.e4m3"),
                                         ("float8e5m2", "int3", 0, 64, "m64n64k32.f32.e5m2.e5m2"),
                                         ("int8", "int8", 0, 4096, "m64n256k32.satfinite.s32.s8.s8"),
                                         ("float8e4m3", "uint4", 128, 4096, "m64n128k32.f32.e4m3.e4m3"),
                                         ("int8", "int4", 64, 256, "m64n128k32.satfinite.s32.s8.s8")])
def test_act8_wgmma_compiles(a, b, g, m, mma):
    """8-bit activations with per-token scales at M >= 64 take the wgmma mainloop on sm_90a: k32 fp8 / s8 wgmma
    with the weight's 8-bit lanes in registers (weight groups: one partial sum per k-tile), no spills."""
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm

    cfg = default_config(m, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype="float16", group_size=g, arch="sm_90a")
    assert cfg.mainloop == "sm90" and cfg.block_k == (64 if g == 64 else 128)
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert f"wgmma.mma_async.sync.aligned.{mma}" in art.ptx
    assert "cp.async.bulk.tensor" in art.ptx
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas and spills == 0, f"{cfg}: {spills} spill bytes"


@pytest.mark.parametrize("g,xg,m", [(0, 0, 1), (64, 0, 16), (0, 128, 4096)])
def test_fp4_activations_compile_sm120(g, xg, m):
    """e2m1 activations x e2m1 weights on sm_120a: the block-scaled m16n8k64 e2m1 MMA (unit ue8m0 scales; the
    kernel's own fp32 scales apply to the sums) on packed 4-bit A fragments and identity weight lanes, no spills.
    Compile-checked only (no sm_120 GPU has run it)."""
    cfg = default_config(m, 4096, 4096, a_dtype="float4e2m1", b_dtype="float4e2m1", c_dtype="bfloat16",
                         group_size=g, arch="sm_120a", act_group_size=xg)
    assert cfg.mainloop == "sm80" and cfg.act_bits == 4
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_120a", options="--enable-tvm-ffi")
    assert ("mma.sync.aligned.m16n8k64.row.col.kind::mxf4.block_scale.scale_vec::2X.f32.e2m1.e2m1.f32.ue8m0"
            in art.ptx)
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas and spills == 0, f"{cfg}: {spills} spill bytes"


@pytest.mark.parametrize("b,g,xg,m", [("int3", 0, 0, 1), ("uint2", 64, 0, 16), ("float3e1m1", 32, 128, 4096),
                                       ("int2", 128, 0, 333)])
def test_fp4_activations_other_weights_compile_sm120(b, g, xg, m):
    """e2m1 activations x other legal weights on sm_120a: e2m1 codes one per byte (bits 2..5) and e4m3 weight
    lanes in the mixed-format kind::f8f6f4 m16n8k32 MMA, no spills. Compile-checked only."""
    cfg = default_config(m, 4096, 4096, a_dtype="float4e2m1", b_dtype=b, c_dtype="float16", group_size=g,
                         arch="sm_120a", act_group_size=xg)
    assert cfg.mainloop == "sm80" and cfg.act_bits == 8 and cfg.act_mma_k == 32
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_120a", options="--enable-tvm-ffi")
    assert "mma.sync.aligned.m16n8k32.row.col.kind::f8f6f4.f32.e2m1.e4m3.f32" in art.ptx
    assert "cvt.rn.satfinite.e4m3x2.f16x2" in art.ptx
    assert not re.search(r"mma\.sync\.aligned\.m16n8k(16|64)", art.ptx)
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert art.ptxas and spills == 0, f"{cfg}: {spills} spill bytes"


@pytest.mark.parametrize("kw,match", [(dict(arch="sm_90a"), "sm_120a"), (dict(b_dtype="int4"), "int4"),
                                      (dict(group_size=32), "at least 64")])
def test_fp4_activation_errors(kw, match):
    base = dict(a_dtype="float4e2m1", b_dtype="float4e2m1", c_dtype="float16", group_size=0, block_m=16,
                block_n=64, block_k=128, warp_m=16, warp_n=64, warp_k=64, arch="sm_120a")
    base.update(kw)
    with pytest.raises((NotImplementedError, ValueError), match=match):
        GemmConfig(**base).validate()


@pytest.mark.parametrize("b,g,xg,m,arch", [("int4", 0, 0, 16, "sm_89"), ("uint4", 128, 0, 4096, "sm_120a"),
                                           ("float8e4m3", 0, 128, 333, "sm_90a")])
def test_e4m3_f16_accum_compiles(b, g, xg, m, arch):
    """use_f16_accum with e4m3 activations: fp16-accumulating m16n8k32 MMAs only, no spills; fp16 output only."""
    cfg = default_config(m, 4096, 4096, a_dtype="float8e4m3", b_dtype=b, c_dtype="float16", group_size=g,
                         act_group_size=xg, arch=arch, mainloop="sm80").with_(use_f16_accum=True).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    assert re.search(r"mma\.sync\.aligned\.m16n8k32\.row\.col\.f16\.e4m3\.e4m3\.f16", art.ptx)
    assert not re.search(r"mma\.sync\.aligned\.m16n8k32\.row\.col\.f32", art.ptx)
    assert art.ptxas and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    with pytest.raises(NotImplementedError, match="float16 output"):
        cfg.with_(c_dtype="bfloat16").validate()
    with pytest.raises(NotImplementedError, match="float8e4m3 activations"):
        default_config(16, 4096, 4096, a_dtype="float8e5m2", b_dtype="int4", c_dtype="float16", group_size=0,
                       arch="sm_89").with_(use_f16_accum=True).validate()


@pytest.mark.parametrize("a,b,g,arch", [("float8e4m3", "int4", 0, "sm_89"), ("int8", "uint4", 128, "sm_80"),
                                        ("int4", "int3", 0, "sm_80")])
def test_act8_glu_compiles(monkeypatch, a, b, g, arch):
    """GLU epilogues with 8/4-bit activations (the per-token scale multiplies gate and up): compile without spills
    and validate without the unverified-feature switch."""
    cfg = default_config(16, 4096, 4096, a_dtype=a, b_dtype=b, c_dtype="float16", group_size=g, arch=arch,
                         glu=True).with_(activation="silu_glu", glu=True)
    art = compile_for_arch(Sm80MixedGemm(cfg.validate()), *fake_operands(cfg), arch=arch,
                           options="--enable-tvm-ffi")
    assert art.ptxas and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", False)
    cfg.validate()
