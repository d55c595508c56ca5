"""The SM80+ mixed-input GEMM: cp.async multistage pipeline, ldmatrix for A, packed B words read with
128-bit shared loads, the register dequant transform, mma.sync m16n8k16 with fp32 accumulation, and a
fused epilogue (channel scale, global scale, bias). Runs on sm_80, 86, 89, 90 and 120.

Operands (all built by the host from a `GemmConfig`):
  A     [M, K_pad]                       activations (fp16/bf16), K-major
  B     [N_pad / 64, K_pad / 64 * atom]  int32, the kernel layout of `layouts/weight.py`
  S     [groups, N_pad / 2]              int32 view of group scales in the activation type (N permuted)
  Z     [groups, N_pad / 2]              int32 view of negated zero-point subtrahends (same layout)
  CS    [N_pad]                          fp32 channel scales (group_size == 0)
  G     [1]                              fp32 global scale (times any exact power-of-two correction)
  bias  [N]                              output dtype
  C     [M, N]                           output
"""

from __future__ import annotations


import cutlass
import cutlass.cute as cute
from cutlass.cute.nvgpu import cpasync, warp

from ..config import GemmConfig
from ..layouts.weight import ATOM_K, ATOM_N, atom_words
from . import dequant as dq
from .cache_hints import cp_async_16b_hinted, evict_first_policy
from .epilogue import Epilogue
from .mma import (mma_bf16_m16n8k16, mma_f16_m16n8k16, mma_f8_m16n8k32, mma_f8_m16n8k32_f16acc, mma_f8f6f4_m16n8k32,
                  mma_mxf4_m16n8k64, mma_s4_m16n8k64, mma_s8_m16n8k32)
from .scheduler import cluster_split_reduce, split_k_reduce

_CUTLASS_TYPES = {"float16": cutlass.Float16, "bfloat16": cutlass.BFloat16, "float32": cutlass.Float32}


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, cap), 0, -1):
        if n % d == 0:
            return d
    return 1


_F16_2POW_M13 = 0x08000800    # fp16 2^-13 in both halves


class Sm80MixedGemm:
    """Builds and launches one kernel variant for a validated `GemmConfig`."""

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg.validate()
        if cfg.mainloop != "sm80":
            raise ValueError(f"Sm80MixedGemm builds mainloop='sm80' configs, got {cfg.mainloop!r} "
                             f"(kernels/mainloop_sm90.py builds 'sm90')")
        # quantized activations (`act8`: 8-bit, and int4 with `act4`): the A tile travels as 16-bit units of 2
        # (4) codes (cp.async / ldmatrix unchanged, K halved / quartered); the weight becomes 8-bit (4-bit) lanes
        # and the MMA is m16n8k32 (s4 m16n8k64)
        self.act8 = cfg.act_bits < 16
        self.act4 = cfg.act_bits == 4
        self.int_acc = cfg.a_dtype in ("int8", "int4")     # exact s32 MMA accumulators
        # fp8 MMAs accumulating in fp16 (use_f16_accum), into the partial accumulator `acc_i`
        self.f16acc8 = self.act8 and cfg.use_f16_accum
        self.mma_k = cfg.act_mma_k
        if self.act8:
            self.lane = cfg.lane_plan()
            self.plan = self.lane.half
            self.planes = self.lane.planes
            self.a_type = cutlass.Float16
        else:
            self.lane = None
            self.plan = cfg.dequant_plan()
            self.planes = self.plan.planes
            self.a_type = _CUTLASS_TYPES[cfg.a_dtype]
        self.c_type = _CUTLASS_TYPES[cfg.c_dtype]
        self.bm, self.bn, self.bk = cfg.block_m, cfg.block_n, cfg.block_k
        self.wm, self.wn, self.wk = cfg.warp_m, cfg.warp_n, cfg.warp_k
        self.warps_n = cfg.warps_n
        self.warps_mn = cfg.warps_m * cfg.warps_n
        self.warps_k = cfg.warps_k
        self.threads = cfg.num_threads
        self.stages = cfg.stages
        self.bits = cfg.bits
        self.aw = atom_words(self.bits)
        self.bk_words = self.bk // ATOM_K * self.aw       # int32 words of one 64-column strip per k-tile
        self.bn_atoms = self.bn // ATOM_N
        self.wn_atoms = self.wn // ATOM_N
        self.k_steps = self.wk // self.mma_k                  # MMA k-steps of one warp per k-tile
        self.bk_a = self.bk * cfg.act_bits // 16              # A tile width in 16-bit elements
        self.wk_a = self.wk * cfg.act_bits // 16
        self.wk_atoms = self.wk // ATOM_K
        self.group = cfg.group_size
        self.srows = cfg.scale_rows
        self.has_zp = cfg.has_zero_point
        self.split_k = cfg.split_k
        self.glu = cfg.glu
        self.moe = cfg.moe
        self.moe_down = cfg.moe_down
        self.top_k = cfg.moe_top_k
        self.epilogue = Epilogue(cfg, self.c_type)
        # two-level fp16 scales take a float weight format's power-of-two exponent factor (one multiply per group)
        self.defer_exp = (cfg.two_level_scales and not self.act8 and self.plan.has_exp_factor
                          and cfg.a_dtype == "float16")
        self.fold = cfg.fold_offsets      # offsets / zero points out of the dequant, into the group flush
        self.rows8 = cfg.rows8            # M <= 8: rows 8-15 of the m16 tile are padding, never stored
        self.a_rows = 8 if cfg.a_rows8 else self.bm    # activation rows per shared-memory stage
        # per-warp pipelines: each warp copies the (a_rows, wk) activation slice, the (bn, wk) weight slice and the
        # wk / group scale rows of its own k-range ("chunk" kt * warps_k + wk_idx of width wk)
        self.wpipe = cfg.warp_pipeline
        # with pdl: the leading stages whose weights are copied before griddepcontrol.wait
        self.pdl_pre = (cfg.pdl_prefetch or cfg.stages - 1) if cfg.pdl else 0
        # with warps across N each warp column keeps its own copy of the activation stages (warp column j: stages
        # j * stages .. (j + 1) * stages - 1 of the A ring)
        self.a_stages = self.stages * (self.warps_n if self.wpipe else 1)
        self.wk_words = self.wk // ATOM_K * self.aw
        self.wrows = self.wk // self.group if self.group > 0 else 0
        # swap_ab (rows8): weights as the MMA's A operand (pairs of n8 tiles = 16 weight columns), the 8 live
        # activation rows as B; the accumulators (4, wn / 16) are moved into the usual layout after the main loop
        self.swap = cfg.swap_ab

    def live(self, mi: int, h: int) -> bool:
        """Whether the accumulator rows 16 mi + 8 h .. + 7 of a warp tile can hold output rows (trace time)."""
        return not self.rows8 or (mi == 0 and h == 0)

    def live_acc(self, i: int) -> bool:
        """`live` for the flat index of an accumulator ((2 columns, 2 row halves), m16 tiles, n8 tiles)."""
        return self.live((i // 4) % (self.wm // 16), (i % 4) // 2)

    # ------------------------------------------------------------------ host-side (trace time) builders
    def _g2s_copy(self, dtype, rows: int, cols: int, threads: int = 0):
        """A cp.async 128-bit tiled copy of a row-major (rows, cols) tile by at most `threads` threads (default: the
        CTA's) and the number of threads it uses."""
        threads = threads or self.threads
        vec = 128 // dtype.width
        cols_vec = cols // vec
        tc = _largest_divisor_at_most(cols_vec, threads)
        tr = _largest_divisor_at_most(rows, threads // tc)
        atom = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), dtype,
                                   num_bits_per_copy=128)
        thr = cute.make_layout((tr, tc), stride=(tc, 1))
        val = cute.make_layout((1, vec))
        return cute.make_tiled_copy_tv(atom, thr, val), tr * tc

    @cute.jit
    def __call__(self, mA: cute.Tensor, mB: cute.Tensor, mS: cute.Tensor, mZ: cute.Tensor, mCS: cute.Tensor,
                 mG: cute.Tensor, mBias: cute.Tensor, mC: cute.Tensor, mWS: cute.Tensor, mCnt: cute.Tensor,
                 mSorted: cute.Tensor, mExpert: cute.Tensor, mNumPost: cute.Tensor, mTopkW: cute.Tensor,
                 stream):
        # A tile in shared memory: 64-element rows, 128-bit chunks XOR-swizzled so ldmatrix is conflict-free.
        # A K-split warp must own whole swizzle atoms: slicing an atom in the middle shifts the swizzled
        # addresses (8-bit activations with warp_k = 64 span 32 16-bit columns, half a 64-column atom)
        sw_cols = min(self.wk_a, 64)
        # the swizzle's period must divide every warp's slice (8 x 16 atoms of int4 activations: warps may start 8
        # rows / 16 columns apart): XOR 3 chunk bits with 3 row bits (period 512 elements) for 64- and 32-column
        # atoms, 1 with 1 (period 128, one 8 x 16 atom) for 16-column atoms
        sw_bits = 3 if sw_cols >= 32 else 1
        a_atom = cute.make_composed_layout(cute.make_swizzle(sw_bits, 3, 3), 0,
                                           cute.make_layout((8, sw_cols), stride=(sw_cols, 1)))
        sA_layout = cute.tile_to_shape(a_atom, (self.a_rows, self.bk_a, self.a_stages), (0, 1, 2))
        sB_layout = cute.make_layout((self.bn_atoms, self.bk_words, self.stages),
                                     stride=(self.bk_words, 1, self.bn_atoms * self.bk_words))
        srows = max(self.srows, 1)
        sS_layout = cute.make_layout((srows, self.bn // 2, self.stages),
                                     stride=(self.bn // 2, 1, srows * self.bn // 2))

        if cutlass.const_expr(self.wpipe):
            # one warp's slices of a k-tile (kernel: load_tile with the warp's chunk index and lane)
            copy_A, nthr_A = self._g2s_copy(self.a_type, self.a_rows, self.wk_a, 32)
            copy_B, nthr_B = self._g2s_copy(cutlass.Int32, self.wn_atoms, self.wk_words, 32)
            copy_S, nthr_S = self._g2s_copy(cutlass.Int32, max(self.wrows, 1), self.wn // 2, 32)
        else:
            copy_A, nthr_A = self._g2s_copy(self.a_type, self.a_rows, self.bk_a)
            copy_B, nthr_B = self._g2s_copy(cutlass.Int32, self.bn_atoms, self.bk_words)
            copy_S, nthr_S = self._g2s_copy(cutlass.Int32, srows, self.bn // 2)

        mma_op = warp.MmaF16BF16Op(self.a_type, cutlass.Float16 if self.cfg.use_f16_accum else cutlass.Float32,
                                   (16, 8, 16))
        tiled_mma = cute.make_tiled_mma(mma_op, cute.make_layout((1, 1, 1)))

        if cutlass.const_expr(self.moe):
            # one CTA row per block_m sorted (token, slot) ids; per-expert operands carry a leading E mode
            grid_m = cute.ceil_div(cute.size(mSorted, mode=[0]), self.bm)
            grid_n = cute.size(mB, mode=[1]) // self.bn_atoms
        else:
            grid_m = cute.ceil_div(cute.size(mA, mode=[0]), self.bm)
            grid_n = cute.size(mB, mode=[0]) // self.bn_atoms
        self.kernel(mA, mB, mS, mZ, mCS, mG, mBias, mC, mWS, mCnt, mSorted, mExpert, mNumPost, mTopkW,
                    sA_layout, sB_layout, sS_layout,
                    copy_A, copy_B, copy_S, tiled_mma, nthr_A, nthr_B, nthr_S).launch(
            grid=[grid_n, grid_m, self.split_k] if self.cfg.moe_n_major else [grid_m, grid_n, self.split_k],
            block=[self.threads, 1, 1],
            cluster=[1, 1, self.split_k] if self.cfg.cluster_split_k else None, stream=stream,
            min_blocks_per_mp=self.cfg.launch_min_blocks, use_pdl=self.cfg.pdl)

    @cute.jit
    def load_tile(self, kt, stage, tidx, nthr_A: cutlass.Constexpr, nthr_B: cutlass.Constexpr,
                  nthr_S: cutlass.Constexpr, copy_A, copy_B, copy_S, tAgA, tAsA, tApA, tBgB, tBsB, tSgS, tSsS,
                  tZgZ, tZsZ, mA, tAcA, tArow, part: cutlass.Constexpr = 0):
        """Issue the cp.async copies of k-tile `kt` into pipeline stage `stage`: all of them (`part` 0), the
        weight / scale / zero-point ones (1) or the activation ones (2)."""
        if tidx < nthr_A and part != 1:
            for i in cutlass.range_constexpr(cute.size(tAgA, mode=[1])):
                if tApA[i]:
                    if cutlass.const_expr(self.moe):
                        # gathered row: same per-thread layout as the dense tile, based at activation row tArow[i]
                        k0 = tAcA[0, i, 0, kt][1]
                        ptr = mA.iterator + (tArow[i] * cute.size(mA, mode=[1]) + k0)
                        src = cute.make_tensor(ptr.align(16), tAgA[None, i, None, kt].layout)
                        cute.copy(copy_A, src, tAsA[None, i, None, stage])
                    else:
                        cute.copy(copy_A, tAgA[None, i, None, kt], tAsA[None, i, None, stage])
        if tidx < nthr_B and part != 2:
            if cutlass.const_expr(self.cfg.evict_first):
                cp_async_16b_hinted(tBgB[None, None, None, kt], tBsB[None, None, None, stage], evict_first_policy())
            else:
                cute.copy(copy_B, tBgB[None, None, None, kt], tBsB[None, None, None, stage])
        if cutlass.const_expr(self.group > 0 and part != 2):
            if tidx < nthr_S:
                r = (kt * self.bk) // (self.group * max(self.srows, 1))
                if cutlass.const_expr(self.wpipe):
                    r = kt              # the warp's chunk holds wk / group whole scale rows
                if cutlass.const_expr(not self.act8):   # 8-bit activations read fp32 group scales from global
                    cute.copy(copy_S, tSgS[None, None, None, r], tSsS[None, None, None, stage])
                if cutlass.const_expr(self.has_zp):
                    cute.copy(copy_S, tZgZ[None, None, None, r], tZsZ[None, None, None, stage])

    @staticmethod
    def plane_word(words: dict, b_views, a, pi, ka_l, q, ka, atom_n, lane, stage):
        """Packed word q of plane pi for n-atom a / k-atom ka_l of this thread; its 128-bit vector is loaded
        from shared memory once per k-tile (`words` caches the register copies at trace time)."""
        key = (a, pi, ka_l, q // 4)
        if key not in words:
            rw = cute.make_rmem_tensor(cute.make_layout(4), cutlass.Int32)
            cute.autovec_copy(b_views[pi][None, lane, q // 4, ka, atom_n, stage], rw)
            words[key] = rw
        return words[key][q % 4]

    @cute.jit
    def mma_tile_act8(self, acc, acc_i, s2r_A, tXsA, tXrA, tCrA, b_views, z_view, tCcC, mS, mX, kt, m0, n0, M,
                      wk_idx, wn_idx, lane, g, stage):
        """One k-tile of a warp with 8-bit activations: per k32 step, ldmatrix the A fragments (16-bit pairs of
        8-bit codes), turn the weight pairs into 8-bit lanes (b0 = k 4t..4t+3, b1 = k 16+4t..16+4t+3 of column
        8j + g; layout `mma_k=32`), one m16n8k32 MMA per (m16, n8) tile.

        Group scales (two-level accumulation): the MMAs of one scale group accumulate into `acc_i` (s32 for int8,
        fp32 for fp8), which is added to `acc` times the group's fp32 column scales at the group's end (and at
        the end of the warp's k-range), then cleared. Zero points arrive per column as lane constants (int8) or
        fp16 subtrahends (fp8) in the zero-point stage buffer.

        4-bit activations (`act4`): k64 steps (one weight atom each), A fragments are 16-bit units of 4 codes,
        B registers of 8 lanes (b0 = k 8t..8t+7: slot groups 0, 1; b1 = k 32+8t..: slot groups 2, 3; layout
        `mma_k=64`), one s4 m16n8k64 MMA into s32 (int4) or block-scaled e2m1 m16n8k64 MMA with unit scales into
        fp32 (e2m1, sm_120a) per (m16, n8) tile."""
        rAi = cute.recast_tensor(tCrA, cutlass.Int32)          # (4 regs, m16 tiles, MMA k-steps)
        mk = self.mma_k
        words = {}
        zps = {}
        xgroup = self.cfg.act_group_size
        wseg = min(self.group, self.wk) // mk if self.group > 0 else 0   # MMA k-steps per weight scale group
        xseg = min(xgroup, self.wk) // mk if xgroup > 0 else 0           # ... per activation scale group
        flush_every = min(v for v in (wseg, xseg, self.k_steps) if v > 0)
        two_level = self.group > 0 or xgroup > 0
        for s in cutlass.range_constexpr(self.k_steps):
            ka_l = (s * mk) // ATOM_K
            ka = wk_idx * self.wk_atoms + ka_l
            # zero-point row of this step inside the stage (as in the 16-bit path)
            zrow = (s * mk) // self.group if 0 < self.group < self.wk else 0
            if cutlass.const_expr(0 < self.group < self.bk):
                zrow = (wk_idx * self.wk) // self.group + zrow
            cute.copy(s2r_A, tXsA[None, None, s, stage], tXrA[None, None, s])
            for a in cutlass.range_constexpr(self.wn_atoms):
                atom_n = wn_idx * self.wn_atoms + a
                for j in cutlass.range_constexpr(8):
                    bregs = []
                    for hb in cutlass.range_constexpr(2):
                        # (slot group, pair) of the register's lanes in k order
                        if cutlass.const_expr(self.act4):
                            lane_pairs = [(2 * hb + h, r) for h in range(2) for r in range(2)]
                        else:
                            lane_pairs = [(2 * (s % 2) + hb, r) for r in range(2)]
                        codes = []
                        for ss, r in lane_pairs:
                            p = 2 * j + r
                            pw = []
                            slots = []
                            for pi, w in enumerate(self.planes):
                                per_word = 16 // w
                                q = ss * w + p // per_word
                                pw.append(self.plane_word(words, b_views, a, pi, ka_l, q, ka, atom_n, lane, stage))
                                slots.append(p % per_word)
                            codes.append(dq.extract_pair(self.lane, pw, slots))
                        zsub = None
                        if cutlass.const_expr(self.has_zp):
                            zkey = (a, s // wseg)
                            if cutlass.const_expr(zkey not in zps):
                                rz = cute.make_rmem_tensor(cute.make_layout(4), cutlass.Int32)
                                cute.autovec_copy(z_view[None, g, atom_n, zrow, stage], rz)
                                zps[zkey] = rz
                            zw = zps[zkey][j // 2]
                            zsub = dq.broadcast_lo(zw) if j % 2 == 0 else dq.broadcast_hi(zw)
                        if cutlass.const_expr(self.act4):
                            bregs.append(dq.lanes4(self.lane, codes[0], codes[1], codes[2], codes[3], zsub))
                        else:
                            bregs.append(dq.lanes8(self.lane, codes[0], codes[1], zsub))
                    nj = a * 8 + j
                    for mi in cutlass.range_constexpr(self.wm // 16):
                        a_regs = [rAi[v, mi, s] for v in range(4)]
                        if cutlass.const_expr(self.cfg.a_dtype == "float4e2m1" and not self.act4):
                            # e2m1 codes (one per byte) x e4m3 weight lanes: the mixed kind::f8f6f4 MMA
                            dst = acc_i if two_level else acc
                            d = mma_f8f6f4_m16n8k32("float4e2m1", "float8e4m3", a_regs, bregs,
                                                    [dst[v, mi, nj] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                dst[v, mi, nj] = d[v]
                        elif cutlass.const_expr(self.cfg.a_dtype == "float4e2m1"):
                            dst = acc_i if two_level else acc
                            d = mma_mxf4_m16n8k64(a_regs, bregs, [dst[v, mi, nj] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                dst[v, mi, nj] = d[v]
                        elif cutlass.const_expr(self.act4):
                            d = mma_s4_m16n8k64(None, a_regs, bregs, [acc_i[v, mi, nj] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                acc_i[v, mi, nj] = d[v]
                        elif cutlass.const_expr(self.cfg.a_dtype == "int8"):
                            d = mma_s8_m16n8k32(None, a_regs, bregs, [acc_i[v, mi, nj] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                acc_i[v, mi, nj] = d[v]
                        elif cutlass.const_expr(self.f16acc8):
                            # fp16 accumulators as packed pairs: register w = elements 2w, 2w + 1
                            acc_h = cute.recast_tensor(acc_i, cutlass.Int32)
                            d = mma_f8_m16n8k32_f16acc(self.cfg.a_dtype, a_regs, bregs,
                                                       [acc_h[w, mi, nj] for w in range(2)])
                            for w in cutlass.range_constexpr(2):
                                acc_h[w, mi, nj] = d[w]
                        else:
                            dst = acc_i if two_level else acc
                            d = mma_f8_m16n8k32(self.cfg.a_dtype, a_regs, bregs,
                                                [dst[v, mi, nj] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                dst[v, mi, nj] = d[v]
            if cutlass.const_expr(two_level and (s + 1) % flush_every == 0):
                k = kt * self.bk + wk_idx * self.wk + s * mk
                self.flush_group(acc, acc_i, tCcC, mS, n0, k // max(self.group, 1), mX, m0, M,
                                 k // max(xgroup, 1))

    @cute.jit
    def flush_group(self, acc, acc_i, tCcC, mS, n0, grp, mX, m0, M, xgrp):
        """acc += acc_i * w_scale[grp, column] * x_scale[row, xgrp]; acc_i = 0 (the second level of the two-level
        accumulation; each factor only where that operand has groups along K)."""
        mSf = cute.recast_tensor(mS, cutlass.Float32)           # fp32 group scales [groups, N_pad]
        xgroups = cute.size(mX, mode=[0]) // M                   # activation scales [M, xgroups], flattened
        for i in cutlass.range_constexpr(cute.size(acc)):
            c = tCcC[i]
            sc = cutlass.Float32(1.0)
            if cutlass.const_expr(self.group > 0):
                sc = mSf[grp, n0 + c[1]]
            if cutlass.const_expr(self.cfg.act_group_size > 0):
                # rows past M and groups past K (padding) read an in-bounds scale; their values are never stored
                row = cutlass.min(m0 + c[0], M - 1)
                sc = sc * mX[row * xgroups + cutlass.min(xgrp, xgroups - 1)]
            if cutlass.const_expr(self.int_acc):
                acc[i] = acc[i] + acc_i[i].to(cutlass.Float32) * sc
                acc_i[i] = cutlass.Int32(0)
            elif cutlass.const_expr(self.f16acc8):
                acc[i] = acc[i] + acc_i[i].to(cutlass.Float32) * sc
                acc_i[i] = cutlass.Float16(0.0)
            else:
                acc[i] = acc[i] + acc_i[i] * sc
                acc_i[i] = cutlass.Float32(0.0)

    # ------------------------------------------------------------------ the kernel
    @cute.kernel
    def kernel(self, mA: cute.Tensor, mB: cute.Tensor, mS: cute.Tensor, mZ: cute.Tensor, mCS: cute.Tensor,
               mG: cute.Tensor, mBias: cute.Tensor, mC: cute.Tensor, mWS: cute.Tensor, mCnt: cute.Tensor,
               mSorted: cute.Tensor, mExpert: cute.Tensor, mNumPost: cute.Tensor, mTopkW: cute.Tensor,
               sA_layout: cute.ComposedLayout,
               sB_layout: cute.Layout, sS_layout: cute.Layout, copy_A: cute.TiledCopy, copy_B: cute.TiledCopy,
               copy_S: cute.TiledCopy, tiled_mma: cute.TiledMma, nthr_A: cutlass.Constexpr,
               nthr_B: cutlass.Constexpr, nthr_S: cutlass.Constexpr):
        plan = self.plan
        tidx, _, _ = cute.arch.thread_idx()
        bm_idx, bn_idx, z_idx = cute.arch.block_idx()
        if cutlass.const_expr(self.cfg.moe_n_major):
            bn_idx, bm_idx, z_idx = cute.arch.block_idx()
        warp_idx = tidx // 32
        lane = tidx % 32
        wk_idx = warp_idx // self.warps_mn
        wm_idx = (warp_idx % self.warps_mn) // self.warps_n
        wn_idx = warp_idx % self.warps_n
        g = lane // 4

        M = cute.size(mA, mode=[0])
        N = cute.size(mC, mode=[1])
        if cutlass.const_expr(self.glu):
            N = N * 2   # C holds N/2 GLU outputs; predicates run over the N accumulator columns
        k_tiles_all = cute.size(mA, mode=[1]) // self.bk_a
        # split-K across CTAs: CTA z takes k-tiles [kt0, kt0 + k_tiles)
        kt_per = (k_tiles_all + self.split_k - 1) // self.split_k
        kt0 = z_idx * kt_per
        k_tiles = cutlass.max(cutlass.min(kt_per, k_tiles_all - kt0), 0)
        is_last = True
        if cutlass.const_expr(self.moe):
            # this CTA's expert; blocks past num_tokens_post_padded or of another rank's expert (-1) load and
            # store nothing (their rows are left untouched)
            expert = mExpert[bm_idx]
            in_range = bm_idx * self.bm < mNumPost[0]
            k_tiles = cutlass.select_(in_range, cutlass.select_(expert >= 0, k_tiles, 0), 0)
            is_last = expert >= 0
            e_idx = cutlass.max(expert, 0)
            mB = mB[e_idx, None, None]
            mS = mS[e_idx, None, None]
            mZ = mZ[e_idx, None, None]
            mCS = mCS[e_idx, None]
            mG = mG[e_idx, None]
            mBias = mBias[e_idx, None]

        # ---- shared memory
        smem = cutlass.utils.SmemAllocator()
        sA = smem.allocate_tensor(self.a_type, sA_layout, byte_alignment=128)
        sB = smem.allocate_tensor(cutlass.Int32, sB_layout, byte_alignment=128)
        sS = smem.allocate_tensor(cutlass.Int32, sS_layout, byte_alignment=128)
        # zero points get their own ring only when the format has them (the views below then alias sS, unread)
        sZ = smem.allocate_tensor(cutlass.Int32, sS_layout, byte_alignment=128) if self.has_zp else sS

        # ---- global tiles of this CTA
        if cutlass.const_expr(self.moe):
            # only the per-thread layout of this tile is used: MoE rows are gathered (see load_tile)
            gA = cute.local_tile(mA, (self.bm, self.bk_a), (0, None))
        else:
            gA = cute.local_tile(mA, (self.a_rows, self.bk_a), (bm_idx, None))           # (BM, BK, kt)
        if cutlass.const_expr(self.moe):
            cA = cute.local_tile(cute.make_identity_tensor((cute.size(mSorted, mode=[0]), cute.size(mA, mode=[1]))),
                                 (self.bm, self.bk_a), (bm_idx, None))
        else:
            cA = cute.local_tile(cute.make_identity_tensor(mA.shape), (self.a_rows, self.bk_a), (bm_idx, None))
        gB = cute.local_tile(mB, (self.bn_atoms, self.bk_words), (bn_idx, None))     # (atoms, words, kt)
        srows = max(self.srows, 1)
        gS = cute.local_tile(mS, (srows, self.bn // 2), (None, bn_idx))              # (rows, BN/2, r)
        gZ = cute.local_tile(mZ, (srows, self.bn // 2), (None, bn_idx))
        if cutlass.const_expr(self.wpipe):
            # this warp's weight columns: warp column wn_idx of weight tile bn_idx
            wrows = max(self.wrows, 1)
            wcol = bn_idx * self.warps_n + wn_idx
            gB = cute.local_tile(mB, (self.wn_atoms, self.wk_words), (wcol, None))    # (atoms, words, chunk)
            gS = cute.local_tile(mS, (wrows, self.wn // 2), (None, wcol))             # (rows, WN/2, chunk)
            gZ = cute.local_tile(mZ, (wrows, self.wn // 2), (None, wcol))

        # the copies' views of shared memory and the copying thread's index (its lane when each warp copies its
        # own k-range: chunk kt * warps_k + wk_idx of the wk-wide global tiles)
        sA_cp, sB_cp, sS_cp, sZ_cp = sA, sB, sS, sZ
        cidx = tidx
        if cutlass.const_expr(self.wpipe):
            if cutlass.const_expr(self.moe):
                gA = cute.local_tile(mA, (self.bm, self.wk_a), (0, None))
                cA = cute.local_tile(cute.make_identity_tensor((cute.size(mSorted, mode=[0]),
                                                                cute.size(mA, mode=[1]))),
                                     (self.bm, self.wk_a), (bm_idx, None))
            else:
                gA = cute.local_tile(mA, (self.a_rows, self.wk_a), (bm_idx, None))
                cA = cute.local_tile(cute.make_identity_tensor(mA.shape), (self.a_rows, self.wk_a), (bm_idx, None))
            sA_cp = cute.local_tile(sA, (self.a_rows, self.wk_a, self.stages), (0, wk_idx, wn_idx))
            sB_cp = cute.local_tile(sB, (self.wn_atoms, self.wk_words, self.stages), (wn_idx, wk_idx, 0))
            cidx = lane
        thr_A = copy_A.get_slice(cidx)
        tAgA = thr_A.partition_S(gA)
        tAsA = thr_A.partition_D(sA_cp)
        tAcA = thr_A.partition_S(cA)
        tApA = cute.make_rmem_tensor(cute.make_layout((cute.size(tAgA, mode=[1]),)), cutlass.Boolean)
        tArow = cute.make_rmem_tensor(cute.make_layout((cute.size(tAgA, mode=[1]),)), cutlass.Int32)
        if cutlass.const_expr(self.moe):
            n_sorted = cute.size(mSorted, mode=[0])
            n_rows_out = cute.size(mC, mode=[0])          # M * top_k
            for i in cutlass.range_constexpr(cute.size(tApA)):
                pos = tAcA[0, i, 0, 0][0]                   # = bm_idx * BM + row in the tile
                tok = mSorted[cutlass.min(pos, n_sorted - 1)]
                ok = pos < n_sorted
                tok = cutlass.select_(ok, tok, n_rows_out)
                tApA[i] = tok < n_rows_out
                if cutlass.const_expr(self.moe_down):
                    tArow[i] = tok
                else:
                    tArow[i] = tok // self.top_k
        else:
            for i in cutlass.range_constexpr(cute.size(tApA)):
                tApA[i] = cute.elem_less(tAcA[0, i, 0, 0][0], M)
        if cutlass.const_expr(self.wpipe):
            wrows = max(self.wrows, 1)
            sS_cp = cute.local_tile(sS, (wrows, self.wn // 2, self.stages), (wk_idx, wn_idx, 0))
            sZ_cp = cute.local_tile(sZ, (wrows, self.wn // 2, self.stages), (wk_idx, wn_idx, 0))
        thr_B = copy_B.get_slice(cidx)
        tBgB = thr_B.partition_S(gB)
        tBsB = thr_B.partition_D(sB_cp)
        thr_S = copy_S.get_slice(cidx)
        tSgS = thr_S.partition_S(gS)
        tSsS = thr_S.partition_D(sS_cp)
        tZgZ = thr_S.partition_S(gZ)
        tZsZ = thr_S.partition_D(sZ_cp)

        # ---- MMA partitions (one warp = one tiled MMA over its WM x WN tile)
        thr_mma = tiled_mma.get_slice(lane)
        sA_mma = sA
        if cutlass.const_expr(self.cfg.a_rows8):
            # 8 activation rows per stage; the m16 MMA's rows 8-15 read rows 0-7 again (results never stored)
            sA_mma = cute.make_tensor(sA.iterator, cute.composition(sA.layout, cute.make_layout(
                ((8, 2), self.bk_a, self.a_stages), stride=((1, 0), 8, 8 * self.bk_a))))
        # (a warp column's own activation stages with warp_pipeline)
        sA_w = cute.local_tile(sA_mma, (self.wm, self.wk_a, self.stages), (wm_idx, wk_idx,
                                                                           wn_idx if self.wpipe else 0))
        tCsA = thr_mma.partition_A(sA_w)
        tCrA = tiled_mma.make_fragment_A(tCsA[None, None, None, 0])
        s2r_A = cute.make_tiled_copy_A(cute.make_copy_atom(warp.LdMatrix8x8x16bOp(False, 4), self.a_type),
                                       tiled_mma)
        thr_s2r_A = s2r_A.get_slice(lane)
        tXsA = thr_s2r_A.partition_S(sA_w)
        tXrA = thr_s2r_A.retile(tCrA)

        cC = cute.make_identity_tensor((self.wm, self.wn))
        tCcC = thr_mma.partition_C(cC)
        acc = cute.make_rmem_tensor(tCcC.shape, cutlass.Float32)
        acc.fill(0.0)
        acc_mma = acc          # use_f16_accum: the 16-bit MMAs accumulate in fp16, widened after the mainloop
        if cutlass.const_expr(self.cfg.use_f16_accum and not self.act8):
            acc_mma = cute.make_rmem_tensor(tCcC.shape, cutlass.Float16)
            acc_mma.fill(0.0)
        cfg_xg = self.cfg.act_group_size
        acc_i = acc            # int8 MMAs accumulate exactly in int32; 8-bit group scales need a partial sum
        if cutlass.const_expr(self.act8 and self.int_acc):
            acc_i = cute.make_rmem_tensor(tCcC.shape, cutlass.Int32)
            acc_i.fill(0)
        elif cutlass.const_expr(self.f16acc8):
            acc_i = cute.make_rmem_tensor(tCcC.shape, cutlass.Float16)
            acc_i.fill(0.0)
        elif cutlass.const_expr(self.act8 and (self.group > 0 or cfg_xg > 0)):
            acc_i = cute.make_rmem_tensor(tCcC.shape, cutlass.Float32)
            acc_i.fill(0.0)
        elif cutlass.const_expr(self.cfg.two_level_scales):
            acc_mma = cute.make_rmem_tensor(tCcC.shape, cutlass.Float32)   # one scale group's unscaled sum
            acc_mma.fill(0.0)
        rAi = cute.recast_tensor(tCrA, cutlass.Int32)       # (4 regs, m16 tiles, k16 steps)
        acc_sw = acc
        part_sw = acc
        if cutlass.const_expr(self.swap):
            # D of the swapped MMA of n8 tiles (2p, 2p + 1): v = 0, 1: column 8 (2p) + g, rows 2t, 2t + 1;
            # v = 2, 3: column 8 (2p + 1) + g, the same rows
            acc_sw = cute.make_rmem_tensor(cute.make_layout((4, self.wn // 16)), cutlass.Float32)
            acc_sw.fill(0.0)
            part_sw = acc_sw
            if cutlass.const_expr(self.cfg.two_level_scales):
                part_sw = cute.make_rmem_tensor(cute.make_layout((4, self.wn // 16)), cutlass.Float32)
                part_sw.fill(0.0)
        accP = acc
        accS = acc
        if cutlass.const_expr(self.fold):
            # per m16 tile: P = 960 x the activations of k-rows 8-15, S = all of them, summed over the group
            accP = cute.make_rmem_tensor(cute.make_layout((4, self.wm // 16)), cutlass.Float32)
            accS = cute.make_rmem_tensor(cute.make_layout((4, self.wm // 16)), cutlass.Float32)
            accP.fill(0.0)
            accS.fill(0.0)
        n8 = self.wn // 8
        rB = cute.make_rmem_tensor(cute.make_layout(((2, 2), n8, 1)), self.a_type)
        rBu = cute.recast_tensor(rB, cutlass.Int32)     # ((1, 2), n8, 1): pair r of n8 tile j at r + 2 j

        # per-plane views of the packed B stage buffer: (word, lane, vec, k-atom, n-atom, stage)
        b_views = []
        off = 0
        for w in self.planes:
            bview = cute.make_tensor(sB.iterator + off, cute.make_layout(
                (4, 32, w, self.bk // ATOM_K, self.bn_atoms, self.stages),
                stride=(1, 4, 128, self.aw, self.bk_words, self.bn_atoms * self.bk_words)))
            b_views.append(bview)
            off += 128 * w
        # scale / zero-point views: (word, g, n-atom, row, stage); 4 words = 8 halves of columns 8j + g
        s_view = cute.make_tensor(sS.iterator, cute.make_layout(
            (4, 8, self.bn_atoms, srows, self.stages), stride=(1, 4, 32, self.bn // 2, srows * self.bn // 2)))
        z_view = cute.make_tensor(sZ.iterator, s_view.layout)
        z_half = cute.make_tensor(cute.recast_ptr(sZ.iterator, dtype=self.a_type), cute.make_layout(
            (8, 8, self.bn_atoms, srows, self.stages), stride=(1, 8, 64, self.bn, srows * self.bn)))
        # the same scales as halves: (j, g, n-atom, row, stage) = the scale of column 8j + g of the atom
        s_half = cute.make_tensor(cute.recast_ptr(sS.iterator, dtype=self.a_type), cute.make_layout(
            (8, 8, self.bn_atoms, srows, self.stages), stride=(1, 8, 64, self.bn, srows * self.bn)))

        # ---- prologue
        # the copies' tile index of k-tile kt: kt, or the warp's chunk (kt * warps_k + wk_idx)
        cmul = self.warps_k if self.wpipe else 1
        coff = wk_idx if self.wpipe else 0
        # programmatic dependent launch: the first `pre` stages' weights and scales (nothing the previous grid
        # writes) while that grid finishes, then wait for it before the activations and any store; those weight
        # copies join the first stage's cp.async group
        pre = self.pdl_pre
        if cutlass.const_expr(self.cfg.pdl):
            for st in cutlass.range_constexpr(pre):
                if st < k_tiles:
                    self.load_tile((kt0 + st) * cmul + coff, st, cidx, nthr_A, nthr_B, nthr_S, copy_A, copy_B,
                                   copy_S, tAgA, tAsA, tApA, tBgB, tBsB, tSgS, tSsS, tZgZ, tZsZ, mA, tAcA, tArow, 1)
            cute.arch.griddepcontrol_wait()
        for st in cutlass.range_constexpr(self.stages - 1):
            if st < k_tiles:
                self.load_tile((kt0 + st) * cmul + coff, st, cidx, nthr_A, nthr_B, nthr_S, copy_A, copy_B, copy_S,
                               tAgA, tAsA, tApA, tBgB, tBsB, tSgS, tSsS, tZgZ, tZsZ, mA, tAcA, tArow,
                               2 if st < pre else 0)
            cute.arch.cp_async_commit_group()

        # ---- main loop
        for kt in range(k_tiles):
            stage = kt % self.stages
            cute.arch.cp_async_wait_group(self.stages - 2)
            # the stage's data is visible to its readers, and the stage loaded next (read in the previous
            # iteration) is free: every thread of the CTA, or of the warp that alone copies and reads its slices
            if cutlass.const_expr(self.wpipe):
                cute.arch.sync_warp()
            else:
                cute.arch.sync_threads()
            nxt = kt + self.stages - 1
            if nxt < k_tiles:
                self.load_tile((kt0 + nxt) * cmul + coff, nxt % self.stages, cidx, nthr_A, nthr_B, nthr_S, copy_A,
                               copy_B, copy_S, tAgA, tAsA, tApA, tBgB, tBsB, tSgS, tSsS, tZgZ, tZsZ, mA, tAcA, tArow)
            cute.arch.cp_async_commit_group()

            if cutlass.const_expr(self.act8):
                self.mma_tile_act8(acc, acc_i, s2r_A, tXsA, tXrA, tCrA, b_views, z_view, tCcC, mS, mTopkW, kt0 + kt,
                                   bm_idx * self.bm + wm_idx * self.wm, bn_idx * self.bn + wn_idx * self.wn, M,
                                   wk_idx, wn_idx, lane, g, stage)
            else:
                words = {}
                scl = {}
                for s in cutlass.range_constexpr(self.k_steps):
                    ka_l, ss = s // 4, s % 4
                    ka = wk_idx * self.wk_atoms + ka_l
                    cute.copy(s2r_A, tXsA[None, None, s, stage], tXrA[None, None, s])
                    # group-scale row inside the stage: a per-warp part and a static per-step part
                    row_s = (s * 16) // self.group if 0 < self.group < self.wk else 0
                    row = row_s
                    if cutlass.const_expr(0 < self.group < self.bk):
                        row = (wk_idx * self.wk) // self.group + row_s
                    for a in cutlass.range_constexpr(self.wn_atoms):
                        atom_n = wn_idx * self.wn_atoms + a
                        if cutlass.const_expr(self.group > 0 and (a, row_s) not in scl):
                            rs = cute.make_rmem_tensor(cute.make_layout(4), cutlass.Int32)
                            cute.autovec_copy(s_view[None, g, atom_n, row, stage], rs)
                            if cutlass.const_expr(self.cfg.use_f16_accum):
                                # prepared group scales put the largest |weight| near 2^13 (range for fp32
                                # sums); fp16 sums need it near 1: scale by 2^-13 here, 2^13 after the mainloop
                                for i in cutlass.range_constexpr(4):
                                    rs[i] = dq.mul2(plan, rs[i], cutlass.Int32(_F16_2POW_M13))
                            rz = None
                            if cutlass.const_expr(self.has_zp and not self.fold):
                                rz = cute.make_rmem_tensor(cute.make_layout(4), cutlass.Int32)
                                cute.autovec_copy(z_view[None, g, atom_n, row, stage], rz)
                            scl[(a, row_s)] = (rs, rz)
                        # packed words of this step, per plane
                        plane_words = []
                        for pi, w in enumerate(plan.planes):
                            q0 = ss * w
                            ws = []
                            for i in cutlass.range_constexpr(w):
                                ws.append(self.plane_word(words, b_views, a, pi, ka_l, q0 + i, ka, atom_n, lane,
                                                          stage))
                            plane_words.append(ws)
                        for p in cutlass.range_constexpr(16):
                            j, r = p // 2, p % 2
                            pw = []
                            slots = []
                            for pi, w in enumerate(plan.planes):
                                per_word = 16 // w
                                pw.append(plane_words[pi][p // per_word])
                                slots.append(p % per_word)
                            neg_sub = None
                            sc = None
                            if cutlass.const_expr(self.group > 0):
                                rs, rz = scl[(a, row_s)]
                                sw = rs[j // 2]
                                sc = dq.broadcast_lo(sw) if j % 2 == 0 else dq.broadcast_hi(sw)
                                if cutlass.const_expr(self.has_zp and not self.fold):
                                    zw = rz[j // 2]
                                    neg_sub = dq.broadcast_lo(zw) if j % 2 == 0 else dq.broadcast_hi(zw)
                            if cutlass.const_expr(self.fold):
                                val = dq.decode_slot4_raw(plan, pw[0], slots[0])
                            elif cutlass.const_expr(dq.is_fast4(plan)):
                                val = dq.decode_slot4(plan, pw[0], slots[0], neg_sub)
                            else:
                                # two-level scales, fp16: a float format's exponent factor goes to the group scale
                                # (the unfactored values are exact fp16 normals / subnormals; bf16 keeps it, its
                                # unfactored values would sit near fp32's denormal range)
                                val = dq.extract_decode(plan, pw, slots, neg_sub, exp_factor=not self.defer_exp)
                            if cutlass.const_expr(self.group > 0 and not self.cfg.two_level_scales):
                                val = dq.mul2(plan, val, sc)
                            rBu[r + 2 * (a * 8 + j)] = val
                    if cutlass.const_expr(self.swap):
                        mma16 = mma_f16_m16n8k16 if self.cfg.a_dtype == "float16" else mma_bf16_m16n8k16
                        for pp in cutlass.range_constexpr(self.wn // 16):
                            nt = 2 * pp
                            # A rows g / g + 8 = columns of n8 tiles nt / nt + 1; B = activation rows 0-7
                            d = mma16([rBu[2 * nt], rBu[2 * nt + 2], rBu[2 * nt + 1], rBu[2 * nt + 3]],
                                      [rAi[0, 0, s], rAi[2, 0, s]], [part_sw[v, pp] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                part_sw[v, pp] = d[v]
                    else:
                        cute.gemm(tiled_mma, acc_mma, tCrA[None, None, s], rB[None, None, 0], acc_mma)
                    if cutlass.const_expr(self.fold):
                        for mi in cutlass.range_constexpr(self.wm // 16):
                            a_regs = [rAi[v, mi, s] for v in range(4)]
                            dP = mma_f16_m16n8k16(a_regs, [dq.reg_const(w) for w in dq.FOLD_B_HI],
                                                  [accP[v, mi] for v in range(4)])
                            dS = mma_f16_m16n8k16(a_regs, [dq.reg_const(w) for w in dq.FOLD_B_ONES],
                                                  [accS[v, mi] for v in range(4)])
                            for v in cutlass.range_constexpr(4):
                                accP[v, mi] = dP[v]
                                accS[v, mi] = dS[v]
                    if cutlass.const_expr(self.cfg.two_level_scales
                                          and (s + 1) % (min(self.group, self.wk) // 16) == 0):
                        # the end of a scale group inside this warp's k-range: acc += partial * column scale
                        srow = (s * 16) // self.group if 0 < self.group < self.wk else 0
                        if cutlass.const_expr(0 < self.group < self.bk):
                            srow = (wk_idx * self.wk) // self.group + srow
                        if cutlass.const_expr(self.swap):
                            for pp in cutlass.range_constexpr(self.wn // 16):
                                for v in cutlass.range_constexpr(4):
                                    nj = 2 * pp + v // 2
                                    sc = s_half[nj % 8, g, wn_idx * self.wn_atoms + nj // 8, srow,
                                                stage].to(cutlass.Float32)
                                    if cutlass.const_expr(self.defer_exp):
                                        sc = sc * float(plan.exp_factor)
                                    acc_sw[v, pp] = acc_sw[v, pp] + part_sw[v, pp] * sc
                                    part_sw[v, pp] = cutlass.Float32(0.0)
                        # accumulator v of n8 tile nj holds column 8 nj + 2 (lane % 4) + v % 2 (rows g, g + 8)
                        for nj in cutlass.range_constexpr(self.wn // 8 if not self.swap else 0):
                            for e in cutlass.range_constexpr(2):
                                sc = s_half[nj % 8, 2 * (lane % 4) + e, wn_idx * self.wn_atoms + nj // 8, srow,
                                            stage].to(cutlass.Float32)
                                if cutlass.const_expr(self.defer_exp):
                                    sc = sc * float(plan.exp_factor)
                                nz = cutlass.Float32(-(plan.magic_value + plan.sym_offset))
                                if cutlass.const_expr(self.fold and self.has_zp):
                                    # -(1024 + z) of this column and group
                                    nz = z_half[nj % 8, 2 * (lane % 4) + e, wn_idx * self.wn_atoms + nj // 8, srow,
                                                stage].to(cutlass.Float32)
                                for mi in cutlass.range_constexpr(self.wm // 16):
                                    for h in cutlass.range_constexpr(2):
                                        if cutlass.const_expr(self.live(mi, h)):
                                            v = 2 * h + e
                                            part = acc_mma[v, mi, nj]
                                            if cutlass.const_expr(self.fold):
                                                # sum (c_k + q) x - sum (c_k + z) x = part + P + (-(1024 + z)) S
                                                part = part + accP[2 * h, mi] + nz * accS[2 * h, mi]
                                            acc[v, mi, nj] = acc[v, mi, nj] + part * sc
                                            acc_mma[v, mi, nj] = cutlass.Float32(0.0)
                        if cutlass.const_expr(self.fold):
                            accP.fill(0.0)
                            accS.fill(0.0)

        cute.arch.cp_async_wait_group(0)
        if cutlass.const_expr(self.cfg.pdl):
            cute.arch.griddepcontrol_launch_dependents()      # the next grid may start (it waits for this one)
        if cutlass.const_expr(self.cfg.use_f16_accum and not self.act8):
            back = 8192.0 if self.group > 0 else 1.0     # undo the 2^-13 on the group scales (exact)
            for i in cutlass.range_constexpr(cute.size(acc)):
                acc[i] = acc_mma[i].to(cutlass.Float32) * back
        if cutlass.const_expr(self.act8 and (self.int_acc or self.f16acc8) and self.group == 0 and cfg_xg == 0):
            for i in cutlass.range_constexpr(cute.size(acc)):
                acc[i] = acc_i[i].to(cutlass.Float32)

        if cutlass.const_expr(self.swap):
            # into the usual layout: acc[e, 0, nj] of lane (g, t) = row g, column 8 nj + 2t + e, held by lane
            # (2t + e, g // 2) as its register (nj % 2) * 2 + g % 2 of pair nj // 2; rows 8-15 are padding (rows8)
            acc.fill(0.0)
            t4 = lane % 4
            for nj in cutlass.range_constexpr(self.wn // 8):
                for e in cutlass.range_constexpr(2):
                    src = (2 * t4 + e) * 4 + g // 2
                    x0 = cute.arch.shuffle_sync(acc_sw[(nj % 2) * 2, nj // 2], src)
                    x1 = cute.arch.shuffle_sync(acc_sw[(nj % 2) * 2 + 1, nj // 2], src)
                    acc[e, 0, nj] = cutlass.select_(g % 2 == 1, x1, x0)

        # ---- K-split warps: add the partial sums in shared memory, in a fixed order
        if cutlass.const_expr(self.warps_k > 1):
            # rows8: rows 8-15 are not reduced (a_rows8: nor given scratch space)
            live = [i for i in range(cute.size(acc)) if self.live_acc(i) or not self.cfg.a_rows8]
            nacc = len(live)
            red_layout = cute.make_layout((nacc, 32, self.warps_mn, self.warps_k - 1),
                                          stride=(32, 1, nacc * 32, nacc * 32 * self.warps_mn))
            sR = smem.allocate_tensor(cutlass.Float32, red_layout, byte_alignment=16)
            wmn = warp_idx % self.warps_mn
            if wk_idx > 0:
                for r in cutlass.range_constexpr(nacc):
                    if cutlass.const_expr(self.live_acc(live[r])):
                        sR[r, lane, wmn, wk_idx - 1] = acc[live[r]]
            cute.arch.sync_threads()
            if wk_idx == 0:
                for j in cutlass.range_constexpr(self.warps_k - 1):
                    for r in cutlass.range_constexpr(nacc):
                        if cutlass.const_expr(self.live_acc(live[r])):
                            acc[live[r]] = acc[live[r]] + sR[r, lane, wmn, j]

        m0 = bm_idx * self.bm + wm_idx * self.wm
        n0 = bn_idx * self.bn + wn_idx * self.wn

        # ---- split-K across CTAs: every CTA stores its fp32 partial; the last one to arrive (atomic ticket)
        # adds all partials in split order, so the result does not depend on arrival order, and stores C
        if cutlass.const_expr(self.split_k > 1 and self.cfg.cluster_split_k):
            # the split's CTAs form one cluster (1, 1, split_k): each leaves its partial in its own shared memory,
            # CTA 0 adds them in rank order through distributed shared memory - no global round trips
            red_last = cluster_split_reduce(acc, smem, lane + 32 * (warp_idx % self.warps_mn), 32 * self.warps_mn,
                                            wk_idx == 0, z_idx, self.split_k)
            if cutlass.const_expr(self.moe):
                is_last = cutlass.select_(red_last, is_last, red_last)   # rank 0 of a block with an expert here
            else:
                is_last = red_last
        elif cutlass.const_expr(self.split_k > 1):
            sFlag = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)
            grid_n = cute.size(mB, mode=[0]) // self.bn_atoms
            is_last = split_k_reduce(acc, tCcC, m0, n0, M, bm_idx * grid_n + bn_idx, z_idx, mWS, mCnt, sFlag, tidx,
                                     wk_idx == 0, self.split_k, False)

        # ---- epilogue: scales, bias, activation (fp32), cast, predicated store (kernels/epilogue.py)
        # 8/4-bit activation scales per row: the row-weight operand (dense), the workspace slot (MoE, no split-K)
        mXS = mWS if cutlass.const_expr(self.moe) else mTopkW
        self.epilogue.store(acc, tCcC, m0, n0, M, N, wk_idx, is_last, mG, mCS, mBias, mC, mSorted, mTopkW, mXS)
