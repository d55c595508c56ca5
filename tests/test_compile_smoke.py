"""CuTe DSL compiles for every CI target on a machine without a GPU (humming_cute.testing.ptx)."""

from __future__ import annotations

import os
import re

import pytest

cutlass = pytest.importorskip("cutlass")
import cutlass.cute as cute  # noqa: E402
from cutlass.cute.runtime import make_fake_compact_tensor  # noqa: E402

from humming_cute.arch import CI_TARGETS  # noqa: E402
from humming_cute.testing import (  # noqa: E402
    compile_for_arch,
    parse_ptxas_log,
    ptx_arch,
    ptxas_spills,
)


@cute.kernel
def _copy_kernel(src: cute.Tensor, dst: cute.Tensor):
    tidx, _, _ = cute.arch.thread_idx()
    dst[tidx] = src[tidx] * 2.0


@cute.jit
def _copy(src: cute.Tensor, dst: cute.Tensor):
    _copy_kernel(src, dst).launch(grid=(1, 1, 1), block=(32, 1, 1))


@cute.kernel
def _mma_kernel(tiled_mma: cute.TiledMma, gA: cute.Tensor, gB: cute.Tensor, gC: cute.Tensor):
    tidx, _, _ = cute.arch.thread_idx()
    thr_mma = tiled_mma.get_slice(tidx)
    tCgA = thr_mma.partition_A(gA)
    tCgB = thr_mma.partition_B(gB)
    tCgC = thr_mma.partition_C(gC)
    tCrA = tiled_mma.make_fragment_A(tCgA)
    tCrB = tiled_mma.make_fragment_B(tCgB)
    tCrC = tiled_mma.make_fragment_C(tCgC)
    cute.autovec_copy(tCgA, tCrA)
    cute.autovec_copy(tCgB, tCrB)
    tCrC.fill(0.0)
    cute.gemm(tiled_mma, tCrC, tCrA, tCrB, tCrC)
    cute.autovec_copy(tCrC, tCgC)  # store: keeps the MMA alive


@cute.jit
def _one_mma(a: cute.Tensor, b: cute.Tensor, c: cute.Tensor):
    op = cute.nvgpu.warp.MmaF16BF16Op(cutlass.Float16, cutlass.Float32, (16, 8, 16))
    tiled_mma = cute.make_tiled_mma(op)
    _mma_kernel(tiled_mma, a, b, c).launch(grid=(1, 1, 1), block=(32, 1, 1))


def _fake(dtype, shape, row_major=False):
    order = tuple(reversed(range(len(shape)))) if row_major else None
    if order is None:
        return make_fake_compact_tensor(dtype, shape, assumed_align=16)
    return make_fake_compact_tensor(dtype, shape, stride_order=order, assumed_align=16)


@pytest.mark.parametrize("arch", CI_TARGETS)
def test_tiny_kernel_compiles_for_arch(arch: str, tmp_path) -> None:
    src = _fake(cutlass.Float32, (32,))
    dst = _fake(cutlass.Float32, (32,))
    out = compile_for_arch(_copy, src, dst, arch=arch, keep_dir=tmp_path)
    assert ptx_arch(out.ptx) == arch
    assert re.search(rf"^\.target {arch}$", out.ptx, re.MULTILINE)
    assert out.arch == arch
    assert out.ptx_path is not None and os.path.dirname(out.ptx_path) == str(tmp_path)
    assert out.cubin_path is not None and out.cubin is not None and out.cubin[:4] == b"\x7fELF"
    assert out.compiled is not None and out.compile_seconds > 0
    # ptxas report of the one kernel: some registers, no spills.
    assert len(out.ptxas) == 1
    (res,) = out.ptxas.values()
    assert res.arch == arch and res.registers is not None and res.registers > 0
    assert ptxas_spills(out) == 0


def test_mma_sync_in_sm90a_ptx(tmp_path) -> None:
    a = _fake(cutlass.Float16, (16, 16), row_major=True)
    b = _fake(cutlass.Float16, (8, 16), row_major=True)
    c = _fake(cutlass.Float32, (16, 8), row_major=True)
    out = compile_for_arch(_one_mma, a, b, c, arch="sm_90a", keep_dir=tmp_path)
    assert ptx_arch(out.ptx) == "sm_90a"
    assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in out.ptx
    assert ptxas_spills(out) == 0


def test_arch_forms_and_state_restored(tmp_path) -> None:
    from cutlass.cutlass_dsl import CuTeDSL

    envar = CuTeDSL._get_dsl().envar
    before_env = os.environ.get("CUTE_DSL_ARCH")
    before_cached = envar._arch
    src = _fake(cutlass.Float32, (32,))
    dst = _fake(cutlass.Float32, (32,))
    out = compile_for_arch(_copy, src, dst, arch=90, ptxas_info=False)  # 90 -> sm_90a
    assert ptx_arch(out.ptx) == "sm_90a" and out.ptxas == {}
    out = compile_for_arch(_copy, src, dst, arch="sm_90", keep_dir=tmp_path)  # DSL name kept
    assert ptx_arch(out.ptx) == "sm_90"
    assert os.environ.get("CUTE_DSL_ARCH") == before_env
    assert envar._arch == before_cached


def test_unsupported_requests() -> None:
    src = _fake(cutlass.Float32, (32,))
    with pytest.raises(NotImplementedError, match="CuTe DSL cannot target sm_75"):
        compile_for_arch(_copy, src, src, arch="sm_75")
    with pytest.raises(ValueError, match="arch="):
        compile_for_arch(_copy, src, src, arch="sm_80", options="--gpu-arch sm_80")


def test_ptx_arch_errors() -> None:
    with pytest.raises(ValueError, match="no .target"):
        ptx_arch(".version 8.8\n")
    with pytest.raises(ValueError, match="several"):
        ptx_arch(".target sm_80\n.target sm_90a\n")


# What the DSL prints for a kernel that spills (remarks{ptx}; colours removed, names shortened):
# the ptxas report is re-wrapped and indented inside the diagnostic.
_SPILL_REMARK = """\
\x1b[96mremark[ptxas]:\x1b[0m ptxas detected register spills
  remark: Spilled values are placed in local memory.

          ptxas output:
          ptxas info    : 0 bytes gmem
          ptxas info    : Compiling entry function
          'kernel_cutlass_mma_kernel_0'
          for 'sm_90a'
          ptxas info    : Function properties for
          kernel_cutlass_mma_kernel_0
          ptxas         .     208 bytes stack frame, 200 bytes spill stores, 200 bytes spill loads
          ptxas info    : Used 255 registers, used 1 barriers, 208 bytes cumulative stack size
          ptxas info    : Compile time = 332.462 ms
"""

_PLAIN_REMARK = """\
remark[ptxas info]: ptxas output: ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'kernel_a' for 'sm_80'
ptxas info    : Function properties for kernel_a
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 16 registers, used 0 barriers, 376 bytes cmem[0]
ptxas info    : Compiling entry function 'kernel_b' for 'sm_80'
ptxas info    : Function properties for kernel_b
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem, 376 bytes cmem[0]
"""


def test_parse_ptxas_log() -> None:
    spill = parse_ptxas_log(_SPILL_REMARK)
    res = spill["kernel_cutlass_mma_kernel_0"]
    assert (res.arch, res.registers, res.barriers) == ("sm_90a", 255, 1)
    assert (res.stack_frame_bytes, res.spill_store_bytes, res.spill_load_bytes) == (208, 200, 200)
    assert res.spills and ptxas_spills(_SPILL_REMARK) == 400

    plain = parse_ptxas_log(_PLAIN_REMARK)
    assert list(plain) == ["kernel_a", "kernel_b"]
    assert plain["kernel_a"].registers == 16 and not plain["kernel_a"].spills
    assert plain["kernel_b"].smem_bytes == 1024 and plain["kernel_b"].spill_bytes == 12
    assert ptxas_spills(plain) == 12

    with pytest.raises(ValueError, match="no ptxas resource report"):
        ptxas_spills("nothing here")
