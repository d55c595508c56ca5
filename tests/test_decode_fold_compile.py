"""`fold_offsets` and `rows8` on a CPU: config rules, the raw 4-bit decode, the default switches, and the decode
kernel compiled for sm_80 / sm_90a / sm_120a with the extra MMAs on register operands and no spills."""

from __future__ import annotations

import re

import numpy as np
import pytest

from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.runtime.compile import fake_operands
from humming_cute.testing.ptx import compile_for_arch
from humming_cute.tune.heuristics import default_config

KW = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=16, warp_m=16,
          block_n=64, warp_n=64, block_k=512, warp_k=128, stages=3, two_level_scales=True, arch="sm_90a")


def test_rules():
    """fold_offsets takes only fp16 x int4 / uint4 with two-level scales, rows8 only the dense mma.sync GEMM with
    one warp row per block and 16-bit activations; each is named in the error."""
    GemmConfig(**KW, fold_offsets=True, rows8=True).validate()
    for bad in (dict(a_dtype="bfloat16", c_dtype="bfloat16"), dict(b_dtype="uint8"), dict(two_level_scales=False),
                dict(b_dtype="int3")):
        with pytest.raises(ValueError, match="fold_offsets"):
            GemmConfig(**{**KW, **bad}, fold_offsets=True).validate()
    for bad in (dict(block_m=32), dict(moe=True, two_level_scales=False), dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0,
                                                         two_level_scales=False, c_dtype="float16")):
        with pytest.raises(ValueError, match="rows8"):
            GemmConfig(**{**KW, **bad}, rows8=True).validate()


def test_raw_decode_values():
    """The magic patterns of the raw decode: (q | 0x6400) = 1024 + q and (q << 4 | 0x5400) = 64 + q, exact in
    fp16 for every 4-bit code; the constant B operands are (0, 960) and (1, 1)."""
    from humming_cute.kernels import dequant as dq

    for q in range(16):
        assert np.uint16(0x6400 | q).view(np.float16) == 1024 + q
        assert np.uint16(0x5400 | (q << 4)).view(np.float16) == 64 + q
    hi = np.array(dq.FOLD_B_HI, dtype=np.uint32).view(np.float16)
    assert list(hi) == [0, 0, 960, 960]
    assert list(np.array(dq.FOLD_B_ONES, dtype=np.uint32).view(np.float16)) == [1, 1, 1, 1]


def test_default_switches(monkeypatch):
    """Off by default; on, the decode configs of fp16 x int4 / uint4 with group scales take fold_offsets, and those
    of M <= 8 rows8; other formats, bf16 and M > 8 keep what they had."""
    import humming_cute.tune.heuristics as heur

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    cfg = default_config(1, 8192, 8192, **kw)
    assert not cfg.fold_offsets and cfg.rows8 == cfg.swap_ab     # (rows8 only with swap_ab, DECODE_SWAP_AB)
    monkeypatch.setattr(heur, "FOLD_OFFSETS", True)
    monkeypatch.setattr(heur, "DECODE_ROWS8", True)
    for m, n, k in ((1, 8192, 8192), (8, 4096, 4096), (16, 28672, 4096), (1, 4096, 14336)):
        cfg = default_config(m, n, k, **kw).validate()
        assert cfg.fold_offsets and cfg.rows8 == (m <= 8) and cfg.two_level_scales
    assert not default_config(1, 8192, 8192, **{**kw, "b_dtype": "uint8"}).fold_offsets
    assert default_config(1, 8192, 8192, **{**kw, "b_dtype": "uint8"}).rows8
    bf = default_config(1, 8192, 8192, **{**kw, "a_dtype": "bfloat16", "c_dtype": "bfloat16"})
    assert not bf.fold_offsets and bf.rows8
    assert not default_config(64, 8192, 8192, **kw).fold_offsets


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_120a"])
@pytest.mark.parametrize("b,rows8", [("uint4", True), ("int4", False)])
def test_compiles(arch, b, rows8):
    """The decode kernel with fold_offsets: one m16n8k16 MMA per n8 tile and k16 step plus two on constant B
    registers (never immediates), the 0x5400 magic of the odd slots, no packed-half FMA left (the dequant's
    subtractions are gone), no spills."""
    cfg = GemmConfig(**{**KW, "b_dtype": b, "arch": arch, "block_k": 256}, fold_offsets=True, rows8=rows8).validate()
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    raw = re.findall(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32[^;]*;", art.ptx)
    operands = [re.findall(r"\{([^}]*)\}", m) for m in raw]
    assert raw and all(len(o) == 4 for o in operands)
    assert not any(re.search(r"(^|,)\s*-?\d", o[2]) for o in operands), "a constant B operand as an immediate"
    assert str(0x54005400) in art.ptx or "0x54005400" in art.ptx.lower()
    assert not re.search(r"fma\.rn\.f16x2", art.ptx)
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0


def test_a_rows8(monkeypatch):
    """a_rows8: needs rows8 and 16-row blocks; half the activation shared memory (and
    reduction scratch for rows 0-7 only), so 1024-deep decode tiles take 4 stages; compiles without spills with
    the same ldmatrix count as 16-row tiles; the default switch adds the stage."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.config import smem_bytes

    cfg = GemmConfig(**{**KW, "block_k": 1024, "stages": 4}, rows8=True, a_rows8=True)
    cfg.validate()
    with pytest.raises(ValueError, match="a_rows8"):
        cfg.with_(rows8=False).validate()
    full = cfg.with_(rows8=False, a_rows8=False, stages=3)
    assert smem_bytes(cfg) < smem_bytes(full) <= 232448 < smem_bytes(full.with_(stages=4))
    base = GemmConfig(**{**KW, "block_k": 1024, "stages": 3}, rows8=True)
    art = compile_for_arch(Sm80MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    ref = compile_for_arch(Sm80MixedGemm(base), *fake_operands(base), arch="sm_90a",
                           options="--enable-tvm-ffi")
    assert sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert art.ptx.count("ldmatrix") == ref.ptx.count("ldmatrix")
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    monkeypatch.setattr(heur, "DECODE_ROWS8", True)
    plain = default_config(1, 8192, 8192, **kw)
    monkeypatch.setattr(heur, "DECODE_A_ROWS8", True)
    deep = default_config(1, 8192, 8192, **kw).validate()
    assert deep.a_rows8 and deep.stages == plain.stages + 1 and smem_bytes(deep) <= 232448
    assert not default_config(16, 8192, 8192, **kw).a_rows8
