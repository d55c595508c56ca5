"""Signed integer mma.sync (s8 m16n8k32, s4 m16n8k64) from `kernels/mma.py`: compiles on CPU for every target
with the exact signed PTX and no spills, its fragment maps agree with CuTe's own atom layouts, and (marked `gpu`)
one warp computes one tile exactly."""

from __future__ import annotations

import re

import cutlass
import cutlass.cute as cute
import pytest
from cutlass import Int8, Int32
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

from humming_cute.kernels.mma import (
    A_REGS,
    B_REGS,
    CD_REGS,
    S4_M16N8K64,
    S8_M16N8K32,
    IntMmaSpec,
    check_int_mma_arch,
    mma_s4_m16n8k64,
    mma_s8_m16n8k32,
)
from humming_cute.testing.ptx import compile_for_arch

ARCHS = ["sm_80", "sm_89", "sm_90a", "sm_120a"]
S8_PTX = "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"
S4_PTX = "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32"
UNSIGNED_MMA_RE = re.compile(r"mma\.sync\.\S*\.u(?:8|4)\b")


# ---------------------------------------------------------------------------------------------- the test kernel
@cute.kernel
def _int_mma_kernel(mA8: cute.Tensor, mB8: cute.Tensor, mA4: cute.Tensor, mB4: cute.Tensor, mC: cute.Tensor,
                    mD8: cute.Tensor, mD4: cute.Tensor):
    """One warp; lane l reads its registers from row l of every operand and writes its D words to row l.

    The s8 MMA takes rmem tensors (A as 16 int8, recast to 4 words inside the op; D accumulates into C in place),
    the s4 MMA takes lists of Int32 values, so both call forms are exercised."""
    lane, _, _ = cute.arch.thread_idx()
    rA = cute.make_rmem_tensor(cute.make_layout(4 * A_REGS), Int8)
    rB = cute.make_rmem_tensor(cute.make_layout(B_REGS), Int32)
    rC = cute.make_rmem_tensor(cute.make_layout(CD_REGS), Int32)
    cute.autovec_copy(mA8[lane, None], rA)
    cute.autovec_copy(mB8[lane, None], rB)
    cute.autovec_copy(mC[lane, None], rC)
    mma_s8_m16n8k32(rC, rA, rB, rC)
    cute.autovec_copy(rC, mD8[lane, None])

    a4 = [mA4[lane, i] for i in range(A_REGS)]
    b4 = [mB4[lane, i] for i in range(B_REGS)]
    c4 = [mC[lane, i] for i in range(CD_REGS)]
    d4 = mma_s4_m16n8k64(None, a4, b4, c4)
    for i in cutlass.range_constexpr(CD_REGS):
        mD4[lane, i] = d4[i]


@cute.jit
def _launch(mA8: cute.Tensor, mB8: cute.Tensor, mA4: cute.Tensor, mB4: cute.Tensor, mC: cute.Tensor,
            mD8: cute.Tensor, mD4: cute.Tensor, stream):
    _int_mma_kernel(mA8, mB8, mA4, mB4, mC, mD8, mD4).launch(grid=[1, 1, 1], block=[32, 1, 1], stream=stream)


def _fake_operands():
    """(A8 [32, 16] int8, B8 [32, 2], A4 [32, 4], B4 [32, 2], C, D8, D4 [32, 4] int32, stream); rows = lanes."""

    def rows_of(dtype, cols):
        return make_fake_compact_tensor(dtype, (cute.sym_int(), cols), stride_order=(1, 0), assumed_align=16)

    return (rows_of(Int8, 4 * A_REGS), rows_of(Int32, B_REGS), rows_of(Int32, A_REGS), rows_of(Int32, B_REGS),
            rows_of(Int32, CD_REGS), rows_of(Int32, CD_REGS), rows_of(Int32, CD_REGS),
            make_fake_stream(use_tvm_ffi_env_stream=True))


def _compile(arch: str):
    return compile_for_arch(_launch, *_fake_operands(), arch=arch, options="--enable-tvm-ffi")


# ---------------------------------------------------------------------------------------------- CPU tests
def test_ptx_text_is_signed():
    assert S8_M16N8K32.instruction == S8_PTX
    assert S4_M16N8K64.instruction == S4_PTX
    for spec in (S8_M16N8K32, S4_M16N8K64):
        assert spec.ptx.startswith(spec.instruction + " {{$w0}, {$w1}, {$w2}, {$w3}}, ")
        assert spec.ptx.endswith("{{$r6}, {$r7}, {$r8}, {$r9}};")


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90a", "sm_100a", "sm_120a", "sm_121a", 90, "80"])
def test_arch_guard_accepts_sm80_and_newer(arch):
    assert check_int_mma_arch(arch) is None


@pytest.mark.parametrize("arch", ["sm_75", "sm_70", "sm_61", 75, "75"])
def test_arch_guard_rejects_older_targets(arch):
    with pytest.raises(NotImplementedError, match="sm_80"):
        check_int_mma_arch(arch)


def test_arch_guard_rejects_non_names():
    with pytest.raises(ValueError):
        check_int_mma_arch("hopper")


@pytest.mark.parametrize("spec", [S8_M16N8K32, S4_M16N8K64], ids=["s8", "s4"])
def test_fragment_maps_cover_each_element_once(spec: IntMmaSpec):
    e = spec.per_reg
    a = [spec.a_coord(l, r, j) for l in range(32) for r in range(A_REGS) for j in range(e)]
    b = [spec.b_coord(l, r, j) for l in range(32) for r in range(B_REGS) for j in range(e)]
    cd = [spec.cd_coord(l, r) for l in range(32) for r in range(CD_REGS)]
    assert sorted(a) == [(m, k) for m in range(spec.m) for k in range(spec.k)]
    assert sorted(b) == [(k, n) for k in range(spec.k) for n in range(spec.n)]
    assert sorted(cd) == [(m, n) for m in range(spec.m) for n in range(spec.n)]


def _cute_tv_maps(kind: str) -> dict[str, list[list[int]]]:
    """CuTe's (thread, value) -> column-major tile index maps of the float atom with the same fragment shape:
    e4m3 m16n8k32 (sm_89) for s8, block-scaled e2m1 m16n8k64 (sm_120a) for s4."""
    from cutlass.cute.nvgpu import warp

    out: dict[str, list[list[int]]] = {}

    @cute.jit
    def record():
        if cutlass.const_expr(kind == "s8"):
            op = warp.MmaFP8Op(cutlass.Float8E4M3FN, cutlass.Float32, (16, 8, 32))
        else:
            op = warp.MmaMXF4Op(cutlass.Float4E2M1FN, cutlass.Float32, cutlass.Float8E8M0FNU)
        tiled = cute.make_tiled_mma(op)
        for name, layout in (("A", tiled.tv_layout_A), ("B", tiled.tv_layout_B), ("C", tiled.tv_layout_C)):
            nv = cute.size(layout, mode=[1])
            out[name] = [[layout((t, v)) for v in range(nv)] for t in range(32)]

    cute.compile(record, options=f"--gpu-arch {'sm_89' if kind == 's8' else 'sm_120a'}")
    return out


@pytest.mark.parametrize("kind", ["s8", "s4"])
def test_fragment_maps_match_cute_atom_layouts(kind):
    spec = S8_M16N8K32 if kind == "s8" else S4_M16N8K64
    e = spec.per_reg
    tv = _cute_tv_maps(kind)
    assert len(tv["A"][0]) == A_REGS * e and len(tv["B"][0]) == B_REGS * e and len(tv["C"][0]) == CD_REGS
    for lane in range(32):
        for v in range(A_REGS * e):
            m, k = spec.a_coord(lane, v // e, v % e)
            assert tv["A"][lane][v] == m + spec.m * k, (lane, v)
        for v in range(B_REGS * e):
            k, n = spec.b_coord(lane, v // e, v % e)
            assert tv["B"][lane][v] == n + spec.n * k, (lane, v)
        for v in range(CD_REGS):
            m, n = spec.cd_coord(lane, v)
            assert tv["C"][lane][v] == m + spec.m * n, (lane, v)


@pytest.mark.parametrize("arch", ARCHS)
def test_compiles_with_signed_int_mma(arch):
    art = _compile(arch)
    ptx = art.ptx
    assert re.search(rf"\.target\s+{arch}\b", ptx)
    s8 = re.findall(rf"{re.escape(S8_PTX)}\s+\{{%r\d+, %r\d+, %r\d+, %r\d+\}}, ", ptx)
    s4 = re.findall(rf"{re.escape(S4_PTX)}\s+\{{%r\d+, %r\d+, %r\d+, %r\d+\}}, ", ptx)
    assert len(s8) == 1, "expected exactly one s8 m16n8k32 mma.sync"
    assert len(s4) == 1, "expected exactly one s4 m16n8k64 mma.sync"
    assert not UNSIGNED_MMA_RE.search(ptx), "unsigned integer mma.sync in the PTX"
    assert ptx.count("mma.sync") == 2
    assert art.ptxas, "ptxas printed no resource report"
    spills = sum(r.spill_bytes for r in art.ptxas.values())
    assert spills == 0, f"ptxas reports {spills} spill bytes on {arch}"


def test_operand_count_is_checked():
    @cute.kernel
    def bad(mA: cute.Tensor):
        lane, _, _ = cute.arch.thread_idx()
        x = mA[lane, 0]
        mma_s8_m16n8k32(None, [x, x, x], [x, x], [x, x, x, x])

    @cute.jit
    def launch(mA: cute.Tensor):
        bad(mA).launch(grid=[1, 1, 1], block=[32, 1, 1])

    fake = make_fake_compact_tensor(Int32, (cute.sym_int(), 4), stride_order=(1, 0), assumed_align=16)
    with pytest.raises(Exception, match="4 registers"):
        cute.compile(launch, fake, options="--gpu-arch sm_80")


# ---------------------------------------------------------------------------------------------- GPU test
def _pack(vals, bits: int):
    """[..., 32 // bits] small signed ints (int64) -> [...] int32 words, element j in bits [j*bits, (j+1)*bits)."""
    import torch

    mask = (1 << bits) - 1
    word = torch.zeros(vals.shape[:-1], dtype=torch.int64)
    for j in range(vals.shape[-1]):
        word |= (vals[..., j] & mask) << (bits * j)
    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)


def _gather(coord, regs: int, spec: IntMmaSpec, mat):
    """Per-lane register words [32, regs] of matrix `mat` (int64) under fragment map `coord(lane, reg, elem)`."""
    import torch

    idx = torch.tensor([[[coord(l, r, j) for j in range(spec.per_reg)] for r in range(regs)] for l in range(32)])
    return _pack(mat[idx[..., 0], idx[..., 1]], spec.bits)


def _scatter_cd(spec: IntMmaSpec, frag):
    """[32, 4] per-lane accumulator words -> the 16 x 8 D tile."""
    import torch

    out = torch.zeros(spec.m, spec.n, dtype=frag.dtype)
    for l in range(32):
        for i in range(CD_REGS):
            out[spec.cd_coord(l, i)] = frag[l, i]
    return out


def _operands(spec: IntMmaSpec, gen):
    """A [16, K], B [K, 8] with extreme signed values (incl. negative products), as int64 on the CPU."""
    import torch

    lo, hi = -(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1
    a = torch.randint(lo, hi + 1, (spec.m, spec.k), generator=gen, dtype=torch.int64)
    b = torch.randint(lo, hi + 1, (spec.k, spec.n), generator=gen, dtype=torch.int64)
    a[0, :] = lo           # lo * lo
    b[:, 0] = lo
    a[1, :] = hi           # hi * lo < 0
    b[:, 1] = hi           # hi * hi and lo * hi at (0, 1)
    a[2, ::2], a[2, 1::2] = lo, hi
    b[::3, 2] = -1
    return a, b


def _unpack(words, bits: int):
    """Inverse of `_pack`: [...] int32 words -> [..., 32 // bits] signed ints (int64)."""
    import torch

    w = words.to(torch.int64) & 0xFFFFFFFF
    fields = torch.stack([(w >> (bits * j)) & ((1 << bits) - 1) for j in range(32 // bits)], dim=-1)
    return torch.where(fields >= 1 << (bits - 1), fields - (1 << bits), fields)


@pytest.mark.parametrize("spec", [S8_M16N8K32, S4_M16N8K64], ids=["s8", "s4"])
def test_host_fragment_packing_round_trips(spec: IntMmaSpec):
    """The GPU test's host-side gather/pack (CPU check): unpacking every lane's words restores A and B."""
    import torch

    a, b = _operands(spec, torch.Generator().manual_seed(7))
    fa = _gather(spec.a_coord, A_REGS, spec, a)
    fb = _gather(spec.b_coord, B_REGS, spec, b)
    ua, ub = _unpack(fa, spec.bits), _unpack(fb, spec.bits)
    a2, b2 = torch.zeros_like(a), torch.zeros_like(b)
    for lane in range(32):
        for j in range(spec.per_reg):
            for r in range(A_REGS):
                a2[spec.a_coord(lane, r, j)] = ua[lane, r, j]
            for r in range(B_REGS):
                b2[spec.b_coord(lane, r, j)] = ub[lane, r, j]
    assert torch.equal(a2, a) and torch.equal(b2, b)
    if spec.bits == 8:
        # the kernel reads A as 16 bytes per lane and recasts them to 4 words: byte order = element order
        g, t = divmod(5, 4)
        expected = a[g, 4 * t:4 * t + 4].tolist() + a[g + 8, 4 * t:4 * t + 4].tolist()
        assert fa.view(torch.int8)[5, :8].tolist() == expected


@pytest.mark.gpu
def test_int_mma_matches_reference_on_gpu():
    import torch

    from humming_cute.arch import current_arch, dsl_target

    arch = dsl_target(current_arch())
    check_int_mma_arch(arch)
    compiled = _compile(arch).compiled

    gen = torch.Generator().manual_seed(1234)
    a8, b8 = _operands(S8_M16N8K32, gen)
    a4, b4 = _operands(S4_M16N8K64, gen)
    c = torch.randint(-(1 << 20), 1 << 20, (S8_M16N8K32.m, S8_M16N8K32.n), generator=gen, dtype=torch.int64)
    c[0, 0], c[15, 7] = -(1 << 30), (1 << 30)

    # per-lane register words, built on the host (the kernel only loads row `lane` of each)
    s8, s4 = S8_M16N8K32, S4_M16N8K64
    fa8 = _gather(s8.a_coord, A_REGS, s8, a8)
    fb8 = _gather(s8.b_coord, B_REGS, s8, b8)
    fa4 = _gather(s4.a_coord, A_REGS, s4, a4)
    fb4 = _gather(s4.b_coord, B_REGS, s4, b4)
    fc = torch.tensor([[int(c[s8.cd_coord(l, i)]) for i in range(CD_REGS)] for l in range(32)], dtype=torch.int32)

    dev = torch.device("cuda")
    d8 = torch.full((32, CD_REGS), -7, dtype=torch.int32, device=dev)
    d4 = torch.full((32, CD_REGS), -7, dtype=torch.int32, device=dev)
    compiled(fa8.view(torch.int8).contiguous().to(dev), fb8.to(dev), fa4.to(dev), fb4.to(dev), fc.to(dev), d8, d4)
    torch.cuda.synchronize()

    ref8 = (a8 @ b8 + c).to(torch.int32)
    ref4 = (a4 @ b4 + c).to(torch.int32)
    got8 = _scatter_cd(s8, d8.cpu())
    got4 = _scatter_cd(s4, d4.cpu())
    assert torch.equal(got8, ref8), f"s8 m16n8k32 mismatch:\n{got8}\nexpected\n{ref8}"
    assert torch.equal(got4, ref4), f"s4 m16n8k64 mismatch:\n{got4}\nexpected\n{ref4}"
    # the extreme rows really exercise signed products (an unsigned MMA would differ here)
    assert int(ref8[1, 0] - c[1, 0]) == s8.k * 127 * -128
    assert int(ref4[1, 0] - c[1, 0]) == s4.k * 7 * -8
