"""Fused activation quantization: fp16/bf16/fp32 ``x[M, K]`` -> 8/4-bit codes + fp32 scales in one kernel.

Bit-exact twin of `humming_cute.quant.activation.quantize_activation` (see that module for the conventions):

* ``amax = max |x|`` over the group in fp32 (NaN-propagating max, like torch's ``amax``);
* ``scale = amax / qmax`` with an IEEE division (``div.rn.f32``); a quotient below the smallest normal fp32 becomes
  that value; ``amax == 0`` gives scale 1;
* ``v = x / scale`` (``div.rn.f32`` per element, never a reciprocal), clamped to ``[-qmax, qmax]``;
* codes: integers by round-half-even (``cvt.rni``); e4m3 / e5m2 by ``cvt.rn.satfinite.{e4m3,e5m2}x2.f32`` on
  sm_89+, else (sm_80, or ``soft_float``) by an exact integer re-rounding of the fp32 bits; e2m1 always by that
  re-rounding. Negative values that round to zero keep their sign bit (fp formats).

Output codes are written as raw bytes (``q`` is passed as a ``uint8`` view of the storage dtype): int8/int4 as
two's complement bytes, fp8 as their encodings, e2m1 as ``sign << 3 | exp << 1 | man`` (one code per byte).

Two CTA shapes (both 128 threads, 128-bit loads of ``vec`` elements, predicated tails):

* ``block``: one CTA per segment, a segment being a row (per token) or a group larger than ``WARP_MAX_CHUNKS``
  chunks. The first ``CACHE_ITERS`` chunks of every thread stay in registers between the absmax pass and the
  quantize pass (a row of up to 128 * 8 * 8 = 8192 fp16 is read once); later chunks are read again.
  absmax: warp butterfly + one shared-memory slot per warp.
* ``warp``: groups of ``G`` elements handled by ``tpg = min(G / vec, 32)`` lanes each (absmax by a butterfly
  within the lane group), ``32 / tpg`` groups per warp, groups numbered over the flattened ``[M, K / G]`` so the
  whole grid is busy for any K / G. Lanes past the last group load the last group again and store nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
from cutlass.memory import SmemAllocator

__all__ = ["QuantizeInputConfig", "QuantizeInputKernel", "fake_operands", "QUANT_TYPES", "INPUT_DTYPES",
           "QMAX", "THREADS", "CACHE_ITERS", "WARP_MAX_CHUNKS"]

#: target type -> (qmax, storage kind)
QMAX = {"float8e4m3": 448.0, "float8e5m2": 57344.0, "int8": 127.0, "int4": 7.0, "float4e2m1": 6.0}
QUANT_TYPES = tuple(QMAX)
#: small float formats: name -> (exponent bits, mantissa bits, bias)
_FLOAT_FMT = {"float8e4m3": (4, 3, 7), "float8e5m2": (5, 2, 15), "float4e2m1": (2, 1, 1)}
_HW_CVT = {"float8e4m3": "e4m3x2", "float8e5m2": "e5m2x2"}
INPUT_DTYPES = {"float16": (cutlass.Float16, 2), "bfloat16": (cutlass.BFloat16, 2), "float32": (cutlass.Float32, 4)}

THREADS = 128
CACHE_ITERS = 8          # block mode: chunks per thread kept in registers between the two passes
WARP_MAX_CHUNKS = 256    # warp mode for groups of at most 32 lanes x 8 chunks
_FP32_TINY = 2.0 ** -126  # smallest normal fp32 (torch.finfo(torch.float32).tiny)


@dataclass(frozen=True)
class QuantizeInputConfig:
    """One compiled variant. ``vec``: elements per vector load (0 = a full 16 bytes); ``soft_float``: use the
    integer re-rounding for fp8 even where the hardware conversion exists (it is always used on sm_80)."""

    qtype: str
    group_size: int
    in_dtype: str
    arch: str
    vec: int = 0
    soft_float: bool = False

    def __post_init__(self):
        if self.qtype not in QMAX:
            raise ValueError(f"qtype must be one of {', '.join(QUANT_TYPES)}, got {self.qtype!r}")
        if self.in_dtype not in INPUT_DTYPES:
            raise ValueError(f"in_dtype must be one of {', '.join(INPUT_DTYPES)}, got {self.in_dtype!r}")
        g = self.group_size
        if isinstance(g, bool) or not isinstance(g, int) or (g != 0 and (g < 16 or g & (g - 1))):
            raise ValueError(f"group_size must be 0 (per token) or a power of two >= 16, got {g!r}")
        eb = INPUT_DTYPES[self.in_dtype][1]
        full = 16 // eb
        if self.vec == 0:
            object.__setattr__(self, "vec", full)
        v = self.vec
        if v < 1 or v > full or v & (v - 1):
            raise ValueError(f"vec must be a power of two <= {full} for {self.in_dtype}, got {v}")
        if g and g % v:
            raise ValueError(f"vec {v} must divide group_size {g}")

    @property
    def sm(self) -> int:
        from ..arch import get_arch

        return get_arch(self.arch).sm

    @property
    def hw_float_cvt(self) -> bool:
        return self.qtype in _HW_CVT and not self.soft_float and self.sm >= 89

    @property
    def mode(self) -> str:
        if self.group_size == 0 or self.group_size // self.vec > WARP_MAX_CHUNKS:
            return "block"
        return "warp"

    def grid(self, m: int, k: int) -> int:
        """Number of CTAs the kernel launches for ``x[m, k]`` (mirrors the device-side computation)."""
        if self.group_size == 0:
            return m
        n_groups = m * (k // self.group_size)
        if self.mode == "block":
            return n_groups
        tpg = min(self.group_size // self.vec, 32)
        per_cta = (THREADS // 32) * (32 // tpg)
        return -(-n_groups // per_cta)


def fake_operands(cfg: QuantizeInputConfig):
    """Memory-less operands (x, q as uint8, scales, stream) for compiling `cfg` without a GPU."""
    from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

    in_t, eb = INPUT_DTYPES[cfg.in_dtype]
    v = cfg.vec

    def t2(dtype, div, align):
        return make_fake_compact_tensor(dtype, (cute.sym_int(), cute.sym_int(divisibility=div)),
                                        stride_order=(1, 0), assumed_align=align)

    x = t2(in_t, v, eb * v)
    q = t2(cutlass.Uint8, v, v)
    s = t2(cutlass.Float32, 1, 4)
    return x, q, s, make_fake_stream(use_tvm_ffi_env_stream=True)


def _nan_max(a, b):
    return cute.arch.fmax(a, b, nan=True)


class QuantizeInputKernel:
    """Builds and launches the quantization kernel of one `QuantizeInputConfig`."""

    def __init__(self, cfg: QuantizeInputConfig):
        self.cfg = cfg
        self.in_type = INPUT_DTYPES[cfg.in_dtype][0]
        self.qmax = QMAX[cfg.qtype]
        self.vec = cfg.vec
        self.group = cfg.group_size
        self.mode = cfg.mode
        self.is_int = cfg.qtype in ("int8", "int4")
        self.hw = cfg.hw_float_cvt
        self.fmt = _FLOAT_FMT.get(cfg.qtype)
        self.warps = THREADS // 32
        if self.mode == "warp":
            self.chunks = self.group // self.vec                  # chunks of one group
            self.tpg = min(self.chunks, 32)                       # lanes per group
            self.ipl = self.chunks // self.tpg                    # chunks per lane
            self.gpc = self.warps * (32 // self.tpg)              # groups per CTA

    # ------------------------------------------------------------------ host side (trace time)
    @cute.jit
    def __call__(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor, stream):
        M = cute.size(mX, mode=[0])
        K = cute.size(mX, mode=[1])
        if cutlass.const_expr(self.group == 0):
            grid = M
        elif cutlass.const_expr(self.mode == "block"):
            grid = M * (K // self.group)
        else:
            grid = cute.ceil_div(M * (K // self.group), self.gpc)
        self.kernel(mX, mQ, mS).launch(grid=[grid, 1, 1], block=[THREADS, 1, 1], stream=stream)

    # ------------------------------------------------------------------ device helpers
    @cute.jit
    def scale_of(self, amax):
        """absmax -> scale, as the reference: amax / qmax (IEEE), at least the smallest normal, 1 for amax 0."""
        s = amax / cutlass.Float32(self.qmax)
        s = cutlass.select_(s < cutlass.Float32(_FP32_TINY), cutlass.Float32(_FP32_TINY), s)
        return cutlass.select_(amax == cutlass.Float32(0.0), cutlass.Float32(1.0), s)

    @cute.jit
    def scaled(self, x, scale):
        """x / scale (div.rn.f32) saturated to [-qmax, qmax]; NaN stays NaN like torch.clamp."""
        v = x / scale
        v = cute.arch.fmax(v, cutlass.Float32(-self.qmax), nan=True)
        return cute.arch.fmin(v, cutlass.Float32(self.qmax), nan=True)

    @cute.jit
    def soft_float_code(self, v):
        """Code of fp32 `v` (|v| <= qmax) rounded to nearest-even in the small float format, from its bits."""
        e_bits, m_bits, bias = self.fmt
        nbits = 1 + e_bits + m_bits
        bits = v.bitcast(cutlass.Int32)
        sign = (bits >> (32 - nbits)) & (1 << (nbits - 1))
        u = bits & 0x7FFFFFFF
        shift = 23 - m_bits
        # normal range of the target: drop `shift` mantissa bits with round-half-even (a carry may bump the
        # exponent, which is the right answer), then re-bias the exponent
        r = (u + ((1 << (shift - 1)) - 1) + ((u >> shift) & 1)) >> shift
        mag_normal = r - ((127 - bias) << m_bits)
        # subnormal range: |v| / (smallest subnormal) is exact (a power-of-two scaling), then round half-even
        f = cute.math.abs(v) * cutlass.Float32(2.0 ** (bias - 1 + m_bits))
        mag_sub = cute.math.roundeven(f).to(cutlass.Int32)
        min_normal_bits = (127 + 1 - bias) << 23
        mag = cutlass.select_(u >= min_normal_bits, mag_normal, mag_sub)
        return sign | mag

    @cute.jit
    def hw_pair(self, v0, v1):
        """Two fp8 codes from one cvt.rn.satfinite.{e4m3,e5m2}x2.f32: v0 in bits 0-7, v1 in bits 8-15."""
        ptx = ("{\n.reg .b16 qi_t;\n"
               f"cvt.rn.satfinite.{_HW_CVT[self.cfg.qtype]}.f32 qi_t, {{$r1}}, {{$r0}};\n"
               "cvt.u32.u16 {$w0}, qi_t;\n}")
        return cute.arch.inline_ptx(ptx, write_only_types=[cutlass.Int32], read_only_args=[v0, v1])

    @cute.jit
    def quantize_chunk(self, rX, rQ, scale):
        """rX: `vec` input elements (registers) -> rQ: `vec` code bytes."""
        if cutlass.const_expr(self.hw):
            for p in cutlass.range_constexpr(self.vec // 2):
                v0 = self.scaled(rX[2 * p].to(cutlass.Float32), scale)
                v1 = self.scaled(rX[2 * p + 1].to(cutlass.Float32), scale)
                w = self.hw_pair(v0, v1)
                rQ[2 * p] = w.to(cutlass.Uint8)
                rQ[2 * p + 1] = (w >> 8).to(cutlass.Uint8)
            if cutlass.const_expr(self.vec % 2 == 1):
                v0 = self.scaled(rX[self.vec - 1].to(cutlass.Float32), scale)
                rQ[self.vec - 1] = self.hw_pair(v0, v0).to(cutlass.Uint8)
        else:
            for e in cutlass.range_constexpr(self.vec):
                v = self.scaled(rX[e].to(cutlass.Float32), scale)
                if cutlass.const_expr(self.is_int):
                    code = cute.math.roundeven(v).to(cutlass.Int32)
                else:
                    code = self.soft_float_code(v)
                rQ[e] = code.to(cutlass.Uint8)

    @cute.jit
    def chunk_amax(self, rX, amax):
        for e in cutlass.range_constexpr(self.vec):
            amax = _nan_max(amax, cute.math.abs(rX[e].to(cutlass.Float32)))
        return amax

    # ------------------------------------------------------------------ the kernel
    @cute.kernel
    def kernel(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor):
        if cutlass.const_expr(self.mode == "warp"):
            self.warp_groups(mX, mQ, mS)
        else:
            self.block_segment(mX, mQ, mS)

    @cute.jit
    def warp_groups(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor):
        vec, tpg, ipl = self.vec, self.tpg, self.ipl
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        warp = tidx // 32
        lane = tidx % 32
        M = cute.size(mX, mode=[0])
        K = cute.size(mX, mode=[1])
        ngk = K // self.group
        total = M * ngk
        gid = bidx * self.gpc + warp * (32 // tpg) + lane // tpg
        sub = lane % tpg
        valid = gid < total
        gid_c = cutlass.min(gid, total - 1)            # lanes past the end re-read the last group
        row = gid_c // ngk
        gi = gid_c - row * ngk
        gX = cute.zipped_divide(mX, (1, vec))           # ((1, vec), (M, K / vec))
        gQ = cute.zipped_divide(mQ, (1, vec))
        rX = cute.make_rmem_tensor(cute.make_layout((vec, ipl)), self.in_type)
        rQ = cute.make_rmem_tensor(cute.make_layout((vec, ipl)), cutlass.Uint8)
        c0 = gi * self.chunks + sub
        amax = cutlass.Float32(0.0)
        for j in cutlass.range_constexpr(ipl):
            cute.autovec_copy(gX[(None, (row, c0 + j * tpg))], rX[None, j])
            amax = self.chunk_amax(rX[None, j], amax)
        amax = cute.arch.warp_reduction(amax, _nan_max, threads_in_group=tpg)
        scale = self.scale_of(amax)
        for j in cutlass.range_constexpr(ipl):
            self.quantize_chunk(rX[None, j], rQ[None, j], scale)
        if valid:
            for j in cutlass.range_constexpr(ipl):
                cute.autovec_copy(rQ[None, j], gQ[(None, (row, c0 + j * tpg))])
            if sub == 0:
                mS[row, gi] = scale

    @cute.jit
    def block_segment(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor):
        vec = self.vec
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        warp = tidx // 32
        lane = tidx % 32
        K = cute.size(mX, mode=[1])
        if cutlass.const_expr(self.group == 0):
            row = bidx
            gi = 0
            n_chunks = K // vec
            c0 = 0
        else:
            ngk = K // self.group
            row = bidx // ngk
            gi = bidx - row * ngk
            n_chunks = self.group // vec
            c0 = gi * n_chunks
        n_iter = (n_chunks + THREADS - 1) // THREADS
        gX = cute.zipped_divide(mX, (1, vec))
        gQ = cute.zipped_divide(mQ, (1, vec))
        rX = cute.make_rmem_tensor(cute.make_layout((vec, CACHE_ITERS)), self.in_type)
        rT = cute.make_rmem_tensor(cute.make_layout(vec), self.in_type)
        rQ = cute.make_rmem_tensor(cute.make_layout(vec), cutlass.Uint8)
        smem = SmemAllocator()
        sRed = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.warps), byte_alignment=16)

        # pass 1: absmax (the first CACHE_ITERS chunks of this thread stay in registers)
        amax = cutlass.Float32(0.0)
        for j in cutlass.range_constexpr(CACHE_ITERS):
            c = tidx + j * THREADS
            if c < n_chunks:
                cute.autovec_copy(gX[(None, (row, c0 + c))], rX[None, j])
                amax = self.chunk_amax(rX[None, j], amax)
        for it in range(CACHE_ITERS, n_iter):
            c = tidx + it * THREADS
            if c < n_chunks:
                cute.autovec_copy(gX[(None, (row, c0 + c))], rT)
                amax = self.chunk_amax(rT, amax)
        amax = cute.arch.warp_reduction(amax, _nan_max)
        if lane == 0:
            sRed[warp] = amax
        cute.arch.sync_threads()
        amax = sRed[0]
        for w in cutlass.range_constexpr(1, self.warps):
            amax = _nan_max(amax, sRed[w])
        scale = self.scale_of(amax)

        # pass 2: codes
        for j in cutlass.range_constexpr(CACHE_ITERS):
            c = tidx + j * THREADS
            if c < n_chunks:
                self.quantize_chunk(rX[None, j], rQ, scale)
                cute.autovec_copy(rQ, gQ[(None, (row, c0 + c))])
        for it in range(CACHE_ITERS, n_iter):
            c = tidx + it * THREADS
            if c < n_chunks:
                cute.autovec_copy(gX[(None, (row, c0 + c))], rT)
                self.quantize_chunk(rT, rQ, scale)
                cute.autovec_copy(rQ, gQ[(None, (row, c0 + c))])
        if tidx == 0:
            mS[row, gi] = scale
