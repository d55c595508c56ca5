"""The fused epilogue of the mma.sync kernels: fp32 accumulators -> global and channel scale -> bias ->
activation (built-in, GLU, or the user's Python function) -> output dtype -> predicated store.

Every decision comes from the config: which scales exist, the activation, GLU. GLU reads accumulator pairs
(i, i + 1), which the m16n8 C fragment places in columns (2t, 2t + 1): gate and up of output column n / 2.
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
from cutlass.cute.nvgpu import cpasync
from cutlass.experimental.primitives import nvvm_wrapper as prims

from ..activations import BUILTIN
from ..config import GemmConfig

__all__ = ["Epilogue", "bulk_copy_s2g", "copy_word"]


@cute.jit
def copy_word(src, i, dst, j):
    """One 4-byte element src[i] (global) -> dst[j] (shared) by cp.async (the caller commits and waits)."""
    atom = cute.make_copy_atom(cpasync.CopyG2SOp(), src.element_type, num_bits_per_copy=32)
    cute.copy(atom, cute.make_tensor(src.iterator + cute.crd2idx(i, src.layout), cute.make_layout(1)),
              cute.make_tensor(dst.iterator + cute.crd2idx(j, dst.layout), cute.make_layout(1)))


def bulk_copy_s2g(dst, src, nbytes: int):
    """`nbytes` (a multiple of 16) from shared memory at `src` to global memory at `dst` (both 16-byte aligned) as
    one asynchronous bulk copy of the calling thread (cp.async.bulk ... .bulk_group; the caller commits and waits)."""
    prims.cp_async_bulk_global_shared_cta(dst, src, nbytes)


class Epilogue:
    """Epilogue of one kernel variant."""

    def __init__(self, cfg: GemmConfig, c_type):
        self.cfg = cfg
        self.c_type = c_type
        self.channel_scale = cfg.group_size == 0
        self.has_bias = cfg.has_bias
        self.glu = cfg.glu
        self.moe = cfg.moe
        self.mul_topk = cfg.moe_mul_topk_weights
        # 8/4-bit activations with one scale per token: fp32 [M] in the row-weight operand (per-group activation
        # scales are applied in the mainloop instead)
        self.token_scale = cfg.act_bits < 16 and cfg.act_group_size == 0
        self.custom = cfg.activation == "custom"
        if self.custom:
            self.act_fn = cfg.custom_activation
        else:
            base = cfg.activation[:-4] if cfg.activation.endswith("_glu") else cfg.activation
            self.act_fn = None if base == "none" else BUILTIN[base]

    def scale_bias(self, v, gscale, n, mCS, mBias):
        """fp32 accumulator -> scaled (global, channel) value plus bias, before the activation."""
        out = v * gscale
        if cutlass.const_expr(self.channel_scale):
            out = out * mCS[n]
        if cutlass.const_expr(self.has_bias):
            out = out + mBias[n].to(cutlass.Float32)
        return out

    def glu_value(self, vg, vu, gscale, n, mCS, mBias):
        """GLU of weight columns n (gate) and n + 1 (up): act(gate) * up, or the custom f(gate, up), on the scaled
        values plus bias (the one GLU arithmetic of every epilogue, so they agree bitwise)."""
        gate = self.scale_bias(vg, gscale, n, mCS, mBias)
        up = self.scale_bias(vu, gscale, n + 1, mCS, mBias)
        if cutlass.const_expr(self.custom):
            return self.act_fn(gate, up)
        return self.act_fn(gate) * up

    def moe_value(self, v, v_up, xs, gscale, n, mCS, mBias):
        """One MoE output element in fp32 before the routing weight: accumulator(s) times the row's activation
        scale, scales and bias, the activation (GLU: `v` gate, `v_up` up of column n // 2). The one arithmetic of
        every MoE epilogue, so they agree bitwise."""
        if cutlass.const_expr(self.glu):
            out = self.glu_value(v * xs, v_up * xs, gscale, n, mCS, mBias)
        else:
            out = self.scale_bias(v * xs, gscale, n, mCS, mBias)
            if cutlass.const_expr(self.act_fn is not None):
                out = self.act_fn(out)
        return out

    @cute.jit
    def row_scales(self, sF, r):
        """(activation scale, routing weight) of MoE row-table row r, 1.0 where the epilogue has none."""
        xs = cutlass.Float32(1.0)
        if cutlass.const_expr(self.token_scale):
            xs = sF[r, 1]
        wt = cutlass.Float32(1.0)
        if cutlass.const_expr(self.mul_topk):
            wt = sF[r, 0]
        return xs, wt

    @cute.jit
    def moe_out(self, v, xs, wt, gscale, n, mCS, mBias):
        """One finished MoE output element (no GLU) in the output type: `moe_value`, then the routing weight - the
        arithmetic of every wgmma MoE store, so they agree bitwise."""
        out = self.moe_value(v, None, xs, gscale, n, mCS, mBias)
        if cutlass.const_expr(self.mul_topk):
            out = out * wt
        return out.to(self.c_type)

    @cute.jit
    def store(self, acc, tCcC, m0, n0, M, N, wk_idx, is_last, mG, mCS, mBias, mC, mSorted, mTopkW, mXS,
              transposed: cutlass.Constexpr = False):
        """Apply the epilogue to a warp's accumulators and store the elements inside (M, N). `transposed`: the
        accumulator coordinates are (n, m) (the wgmma mainloop computes C^T = W A^T). `mXS`: per-row activation
        scales of 8/4-bit activations (fp32, indexed by the activation row)."""
        gscale = mG[0]   # global scale times the exact power-of-two scale normalisation
        if cutlass.const_expr(self.moe):
            self.store_moe(acc, tCcC, m0, n0, N, wk_idx, is_last, gscale, mCS, mBias, mC, mSorted, mTopkW, mXS)
        elif cutlass.const_expr(not self.glu):
            for i in cutlass.range_constexpr(cute.size(acc)):
                coord = tCcC[i]
                m = m0 + coord[1 if transposed else 0]
                n = n0 + coord[0 if transposed else 1]
                if m < M and n < N and wk_idx == 0 and is_last:
                    v = acc[i]
                    if cutlass.const_expr(self.token_scale):
                        v = v * mXS[m]
                    out = self.scale_bias(v, gscale, n, mCS, mBias)
                    if cutlass.const_expr(self.act_fn is not None):
                        out = self.act_fn(out)
                    mC[m, n] = out.to(self.c_type)
        else:
            for ii in cutlass.range_constexpr(cute.size(acc) // 2):
                coord = tCcC[2 * ii]
                m = m0 + coord[0]
                n = n0 + coord[1]
                if m < M and n < N and wk_idx == 0 and is_last:
                    vg = acc[2 * ii]
                    vu = acc[2 * ii + 1]
                    if cutlass.const_expr(self.token_scale):
                        vg = vg * mXS[m]
                        vu = vu * mXS[m]
                    mC[m, n // 2] = self.glu_value(vg, vu, gscale, n, mCS, mBias).to(self.c_type)

    @cute.jit
    def store_staged(self, acc, tCcC, m0, n0, M, N, mG, mCS, mBias, mC, mXS, sC, t, bar_id):
        """One wgmma warpgroup's transposed accumulators (64 weight columns x block_m tokens) -> C through shared
        memory (`staged_store`): each thread puts its finished values at (token, column) of the warpgroup's
        staging tile sC (block_m, 64 + 8 padding: the four token rows of one store land in different banks), then
        8 threads copy one token's 64 columns as 16-byte vectors - 128-byte segments instead of 2-byte stores
        strided by N. `t`: thread index in the warpgroup; `bar_id`: its named barrier."""
        gscale = mG[0]
        for i in cutlass.range_constexpr(cute.size(acc)):
            coord = tCcC[i]
            n = cutlass.min(n0 + coord[0], N - 1)      # columns past N are computed and never stored
            v = acc[i]
            if cutlass.const_expr(self.token_scale):
                v = v * mXS[cutlass.min(m0 + coord[1], M - 1)]
            out = self.scale_bias(v, gscale, n, mCS, mBias)
            if cutlass.const_expr(self.act_fn is not None):
                out = self.act_fn(out)
            sC[coord[1], coord[0]] = out.to(self.c_type)
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)
        # 16-byte vectors need 16-byte aligned rows of C (C is compact: row stride N); else element stores
        vec_ok = (N % 8 == 0) & (mC.iterator.toint() % 16 == 0)
        for r in cutlass.range_constexpr(cute.size(sC, mode=[0]) // 16):
            row = t // 8 + 16 * r
            col = (t % 8) * 8
            m = m0 + row
            n = n0 + col
            if m < M:
                self.copy_staged_row(sC, row, col, mC, m, m * N, n, N, vec_ok)
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)   # sC is free for the next tile

    @cute.jit
    def stage_raw(self, acc, tCcC, sC, bar_id):
        """The warpgroup's fp32 accumulators into its fp32 staging tile at (token, weight column), then sync."""
        for i in cutlass.range_constexpr(cute.size(acc)):
            coord = tCcC[i]
            sC[coord[1], coord[0]] = acc[i]
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)

    @cute.jit
    def glu_row8(self, sC, row, c0, n0, N, xs, gscale, mCS, mBias, wt):
        """Outputs c0..c0+7 of staging row `row` in the output type (GLU: weight columns n0 + 2c gate, n0 + 2c + 1
        up, raw fp32 in sC, times the row's activation scale `xs` for 8/4-bit activations; times the routing
        weight `wt` in an MoE GEMM that multiplies by it)."""
        vals = cute.make_rmem_tensor(cute.make_layout(8), self.c_type)
        for j in cutlass.range_constexpr(8):
            c = c0 + j
            n = cutlass.min(n0 + 2 * c, N - 2)     # pairs past N are computed and never stored
            vg = sC[row, 2 * c]
            vu = sC[row, 2 * c + 1]
            if cutlass.const_expr(self.token_scale):
                vg = vg * xs
                vu = vu * xs
            v = self.glu_value(vg, vu, gscale, n, mCS, mBias)
            if cutlass.const_expr(self.moe and self.mul_topk):
                v = v * wt
            vals[j] = v.to(self.c_type)
        return vals

    @cute.jit
    def store_row8(self, vals, mC, m, row_off, n, N, vec_ok):
        """8 finished values (c_type) -> C row m, columns n..n+7 (`row_off` = m * N): one 16-byte vector where C's
        rows allow it, else element stores inside N."""
        if vec_ok and n + 8 <= N:
            dst = cute.make_tensor((mC.iterator + (row_off + n)).align(16), cute.make_layout(8))
            dst.store(vals.load())
        else:
            for j in cutlass.range_constexpr(8):
                if n + j < N:
                    mC[m, n + j] = vals[j]

    @cute.jit
    def store_staged_glu(self, acc, tCcC, m0, n0, M, N, mG, mCS, mBias, mC, mXS, sC, t, bar_id):
        """`store_staged` with a GLU epilogue (wgmma): the raw fp32 accumulators go to the warpgroup's fp32 staging
        tile, then 4 threads per token row each combine 8 gate / up column pairs (`glu_value`, the arithmetic of
        the mma.sync GLU epilogue) and store the 8 outputs as one 16-byte vector. `N`: the weight's columns (C
        holds N / 2)."""
        gscale = mG[0]
        self.stage_raw(acc, tCcC, sC, bar_id)
        n_out = N // 2
        vec_ok = (n_out % 8 == 0) & (mC.iterator.toint() % 16 == 0)
        bm = self.cfg.block_m
        for rr in cutlass.range_constexpr((bm + 31) // 32):
            row = t // 4 + 32 * rr
            c0 = (t % 4) * 8
            m = m0 + row
            if row < bm and m < M:
                xs = cutlass.Float32(1.0)
                if cutlass.const_expr(self.token_scale):
                    xs = mXS[m]
                vals = self.glu_row8(sC, row, c0, n0, N, xs, gscale, mCS, mBias, None)
                self.store_row8(vals, mC, m, m * n_out, n0 // 2 + c0, n_out, vec_ok)
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)   # sC is free for the next tile

    @cute.jit
    def copy_staged_row(self, sC, row, col, mC, m, row_off, n, N, vec_ok):
        """Columns col..col+7 of staging row `row` -> C row m at column n (`row_off` = m * N, the row's element
        offset): one 16-byte vector where C's rows allow it, else element stores inside N."""
        if vec_ok and n + 8 <= N:
            src = cute.make_tensor(sC.iterator + row * cute.size(sC, mode=[1]) + col, cute.make_layout(8))
            dst = cute.make_tensor((mC.iterator + (row_off + n)).align(16), cute.make_layout(8))
            dst.store(src.load())
        else:
            for j in cutlass.range_constexpr(8):
                if n + j < N:
                    mC[m, n + j] = sC[row, col + j]

    def moe_row_chunks(self) -> int:
        """Table rows per thread of a warpgroup (rows t, t + 128, ... of the block)."""
        return (self.cfg.block_m + 127) // 128

    @cute.jit
    def moe_rows_fetch(self, m0, mC, mSorted, t, rows, base: cutlass.Constexpr):
        """The output row ids of this thread's table rows of the block at sorted position m0 (M * top_k for a
        padding position) into rows[base + k]."""
        n_sorted = cute.size(mSorted, mode=[0])
        n_rows = cute.size(mC, mode=[0])
        bm = self.cfg.block_m
        for rr in cutlass.range_constexpr(self.moe_row_chunks()):
            r = rr * 128 + t
            if r < bm:
                pos = m0 + r
                tok = mSorted[cutlass.min(pos, n_sorted - 1)]
                rows[base + rr] = cutlass.select_(pos < n_sorted, tok, n_rows)

    @cute.jit
    def moe_rows_fetch_async(self, m0, mSorted, t, sP):
        """`moe_rows_fetch` by cp.async into this thread's slots sP[1 + k] (the padding test is `moe_rows_read`'s):
        the persistent grid issues it for the next tile before the current tile's epilogue."""
        n_sorted = cute.size(mSorted, mode=[0])
        for rr in cutlass.range_constexpr(self.moe_row_chunks()):
            r = rr * 128 + t
            if r < self.cfg.block_m:
                copy_word(mSorted, cutlass.min(m0 + r, n_sorted - 1), sP, 1 + rr)

    @cute.jit
    def moe_rows_read(self, m0, mC, mSorted, t, sP, rows):
        """The ids `moe_rows_fetch_async` copied into sP, as `moe_rows_fetch` returns them, into rows[1 + k]."""
        n_sorted = cute.size(mSorted, mode=[0])
        n_rows = cute.size(mC, mode=[0])
        for rr in cutlass.range_constexpr(self.moe_row_chunks()):
            r = rr * 128 + t
            if r < self.cfg.block_m:
                rows[1 + rr] = cutlass.select_(m0 + r < n_sorted, sP[1 + rr], n_rows)

    @cute.jit
    def moe_rows_weights(self, mC, mTopkW, mXS, t, rows, base: cutlass.Constexpr, rF, sF):
        """The routing weight and activation scale of this thread's table rows (ids in rows[base + k]): into rF[0 / 1,
        k], or with rF None by cp.async straight into the table sF (row r: weight, scale)."""
        n_rows = cute.size(mC, mode=[0])
        for rr in cutlass.range_constexpr(self.moe_row_chunks()):
            r = rr * 128 + t
            if r < self.cfg.block_m:
                safe = cutlass.min(rows[base + rr], n_rows - 1)
                if cutlass.const_expr(self.mul_topk):
                    if cutlass.const_expr(rF is None):
                        copy_word(mTopkW, safe, sF[r, None], 0)
                    else:
                        rF[0, rr] = mTopkW[safe]
                if cutlass.const_expr(self.token_scale):
                    row_x = safe if self.cfg.moe_down else safe // self.cfg.moe_top_k
                    if cutlass.const_expr(rF is None):
                        copy_word(mXS, row_x, sF[r, None], 1)
                    else:
                        rF[1, rr] = mXS[row_x]

    @cute.jit
    def moe_rows_table(self, rows, base: cutlass.Constexpr, rF, sTok, sF, t, bar_id):
        """This thread's fetched table rows into the warpgroup's table (`sTok`: output row id; `sF`: routing weight,
        activation scale, unless rF is None: already there), then sync the warpgroup."""
        for rr in cutlass.range_constexpr(self.moe_row_chunks()):
            r = rr * 128 + t
            if r < self.cfg.block_m:
                sTok[r] = rows[base + rr]
                if cutlass.const_expr(rF is not None):
                    if cutlass.const_expr(self.mul_topk):
                        sF[r, 0] = rF[0, rr]
                    if cutlass.const_expr(self.token_scale):
                        sF[r, 1] = rF[1, rr]
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)

    @cute.jit
    def fill_moe_rows(self, m0, mC, mSorted, mTopkW, mXS, sTok, sF, t, bar_id, pre=None):
        """Read the block's block_m routed rows once into the warpgroup's table (`sTok`: output row id, or M * top_k
        for a padding position; `sF`: routing weight, activation scale), then sync the warpgroup. `pre`: a register
        tensor holding this thread's row ids at index 1, 2, ... whose weights already landed in sF (the persistent
        grid's `Sm90MixedGemm.moe_prefetch`)."""
        if cutlass.const_expr(pre is None):
            nch = self.moe_row_chunks()
            rows = cute.make_rmem_tensor(cute.make_layout(nch), cutlass.Int32)
            rF = cute.make_rmem_tensor(cute.make_layout((2, nch)), cutlass.Float32)
            self.moe_rows_fetch(m0, mC, mSorted, t, rows, 0)
            self.moe_rows_weights(mC, mTopkW, mXS, t, rows, 0, rF, sF)
            self.moe_rows_table(rows, 0, rF, sTok, sF, t, bar_id)
        else:
            self.moe_rows_table(pre, 1, None, sTok, sF, t, bar_id)

    @cute.jit
    def store_moe_rows(self, accs, tCcC, m0, n0, atom_n: cutlass.Constexpr, N, is_last, gscale, mCS, mBias, mC,
                       mSorted, mTopkW, mXS, sTok, sF, t, bar_id, pre=None):
        """The wgmma MoE epilogue of one warpgroup's atoms (`accs`: transposed accumulators, (weight column, block
        row); atom a covers weight columns n0 + a * atom_n ...): the warpgroup first reads each of the block's
        block_m routed rows once into shared memory (`fill_moe_rows`), then walks the thread's block rows
        (`moe_rows_loop`): one table read, one row address and one predicate per row, then that row's elements of
        every atom. The element loop holds no global loads behind its stores (a load after a store to C waits for it,
        as the compiler cannot tell them apart). `t`: thread index in the warpgroup; `bar_id`: its named barrier;
        `pre`: the table rows this thread already fetched (`fill_moe_rows`)."""
        self.fill_moe_rows(m0, mC, mSorted, mTopkW, mXS, sTok, sF, t, bar_id, pre)
        if is_last:
            if n0 + len(accs) * atom_n <= N:      # every column in range: no per-element predicate
                self.moe_rows_loop(accs, tCcC, n0, atom_n, N, False, gscale, mCS, mBias, mC, sTok, sF)
            else:
                self.moe_rows_loop(accs, tCcC, n0, atom_n, N, True, gscale, mCS, mBias, mC, sTok, sF)
        cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)   # the table is free for the next tile

    @cute.jit
    def moe_rows_loop(self, accs, tCcC, n0, atom_n: cutlass.Constexpr, N, check_n: cutlass.Constexpr, gscale, mCS,
                      mBias, mC, sTok, sF):
        """`store_moe_rows`'s element loop over the thread's block rows. The wgmma C fragment's value c + 2 h + 4 j
        is block row (thread's) + c + 8 j, weight column (thread's) + 8 h: a row's elements are h = 0, 1 of every
        atom, stored from one row address (without `check_n` in one basic block, so the address is computed once)."""
        n_rows = cute.size(mC, mode=[0])
        for j in cutlass.range_constexpr(cute.size(tCcC) // 4):
            for c in cutlass.range_constexpr(2):
                r = tCcC[c + 4 * j][1]
                tok = sTok[r]
                if tok < n_rows:
                    xs, wt = self.row_scales(sF, r)
                    row = mC[tok, None]
                    for a in cutlass.range_constexpr(len(accs)):
                        for h in cutlass.range_constexpr(2):
                            i = c + 2 * h + 4 * j
                            n = n0 + a * atom_n + tCcC[i][0]
                            out = self.moe_out(accs[a][i], xs, wt, gscale, n, mCS, mBias)
                            if cutlass.const_expr(check_n):
                                if n < N:
                                    row[n] = out
                            else:
                                row[n] = out

    @cute.jit
    def store_moe_staged(self, accs, tCcC, m0, n0, atom_n: cutlass.Constexpr, N, is_last, gscale, mCS, mBias, mC,
                         mSorted, mTopkW, mXS, sTok, sF, sC, t, bar_id, pre=None):
        """`store_moe_rows` through the warpgroup's staging tile (`staged_store` on the wgmma MoE GEMM), one atom
        at a time after one fill of the row table: finished values go to sC (block row, column), then 8 threads
        copy one routed row's 64 columns to its output row as 16-byte vectors (padding rows skipped) instead of
        2-byte stores four rows at a time. GLU: the raw fp32 accumulators are staged and 4 threads per row combine
        the gate / up pairs (as `store_staged_glu`). `N`: the weight's columns; `pre` as in `store_moe_rows`."""
        n_rows = cute.size(mC, mode=[0])
        if is_last:
            self.fill_moe_rows(m0, mC, mSorted, mTopkW, mXS, sTok, sF, t, bar_id, pre)
            for a in cutlass.range_constexpr(len(accs)):
                acc = accs[a]
                na = n0 + a * atom_n
                if cutlass.const_expr(self.glu):
                    self.stage_raw(acc, tCcC, sC, bar_id)
                    n_out = N // 2
                    vec_ok = (n_out % 8 == 0) & (mC.iterator.toint() % 16 == 0)
                    bm = self.cfg.block_m
                    for rr in cutlass.range_constexpr((bm + 31) // 32):
                        row = t // 4 + 32 * rr
                        c0 = (t % 4) * 8
                        if row < bm:
                            tok = sTok[row]
                            if tok < n_rows:
                                xs = cutlass.Float32(1.0)
                                if cutlass.const_expr(self.token_scale):
                                    xs = sF[row, 1]
                                wt = sF[row, 0] if self.mul_topk else None
                                vals = self.glu_row8(sC, row, c0, na, N, xs, gscale, mCS, mBias, wt)
                                self.store_row8(vals, mC, tok, cutlass.Int64(tok) * n_out, na // 2 + c0, n_out,
                                                vec_ok)
                    cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)   # sC is free again
                else:
                    # the thread's block rows in turn (C fragment value c + 2 h + 4 j: row c + 8 j, column 8 h; see
                    # `moe_rows_loop`): one table read per row, `moe_out`
                    for j in cutlass.range_constexpr(cute.size(tCcC) // 4):
                        for c in cutlass.range_constexpr(2):
                            r = tCcC[c + 4 * j][1]
                            xs, wt = self.row_scales(sF, r)
                            for h in cutlass.range_constexpr(2):
                                i = c + 2 * h + 4 * j
                                col = tCcC[i][0]
                                n = cutlass.min(na + col, N - 1)      # columns past N are computed, never stored
                                sC[r, col] = self.moe_out(acc[i], xs, wt, gscale, n, mCS, mBias)
                    cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)
                    vec_ok = (N % 8 == 0) & (mC.iterator.toint() % 16 == 0)
                    for rr in cutlass.range_constexpr(cute.size(sC, mode=[0]) // 16):
                        row = t // 8 + 16 * rr
                        col = (t % 8) * 8
                        tok = sTok[row]
                        n = na + col
                        if tok < n_rows:
                            self.copy_staged_row(sC, row, col, mC, tok, cutlass.Int64(tok) * N, n, N, vec_ok)
                    cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)   # sC is free again

    @cute.jit
    def store_moe_bulk(self, accs, tCcC, m0, n0, atom_n: cutlass.Constexpr, N, is_last, gscale, mCS, mBias, mC,
                       mSorted, mTopkW, mXS, sTok, sF, sC, t, bar_id, pre=None):
        """`moe_bulk_store`: the warpgroup's finished tile (all atoms: sC holds block_m rows of len(accs) * atom_n
        columns) staged in shared memory in one pass over the thread's block rows (`moe_out`), then thread t sends
        table row t (and t + 128) to its output row as one asynchronous bulk copy (cp.async.bulk shared -> global,
        16-byte aligned rows; else element stores inside N). The next tile waits for the copies' reads of sC before
        its own staging, so the global writes run under its k-tiles."""
        n_rows = cute.size(mC, mode=[0])
        width = len(accs) * atom_n
        if is_last:
            cute.arch.cp_async_bulk_wait_group(0, read=True)    # the last tile's copies have read sC ...
            self.fill_moe_rows(m0, mC, mSorted, mTopkW, mXS, sTok, sF, t, bar_id, pre)    # (... for every thread)
            for j in cutlass.range_constexpr(cute.size(tCcC) // 4):
                for c in cutlass.range_constexpr(2):
                    r = tCcC[c + 4 * j][1]
                    xs, wt = self.row_scales(sF, r)
                    for a in cutlass.range_constexpr(len(accs)):
                        for h in cutlass.range_constexpr(2):
                            i = c + 2 * h + 4 * j
                            col = a * atom_n + tCcC[i][0]
                            n = cutlass.min(n0 + col, N - 1)      # columns past N are computed, never stored
                            sC[r, col] = self.moe_out(accs[a][i], xs, wt, gscale, n, mCS, mBias)
            cute.arch.fence_proxy("async.shared", space="cta")     # the staged values, visible to the bulk copies
            cute.arch.barrier(barrier_id=bar_id, number_of_threads=128)
            elt = self.c_type.width // 8
            bulk_ok = ((N * elt) % 16 == 0) & (mC.iterator.toint() % 16 == 0) & (n0 + width <= N)
            pitch = cute.size(sC, mode=[1])
            for rr in cutlass.range_constexpr(self.moe_row_chunks()):
                r = rr * 128 + t
                if r < self.cfg.block_m:
                    tok = sTok[r]
                    if tok < n_rows:
                        if bulk_ok:
                            bulk_copy_s2g(mC.iterator + (cutlass.Int64(tok) * N + n0), sC.iterator + r * pitch,
                                          width * elt)
                        else:
                            for col in cutlass.range_constexpr(width):
                                if n0 + col < N:
                                    mC[tok, n0 + col] = sC[r, col]
            cute.arch.cp_async_bulk_commit_group()

    @cute.jit
    def store_moe(self, acc, tCcC, m0, n0, N, wk_idx, is_last, gscale, mCS, mBias, mC, mSorted, mTopkW, mXS):
        """The mma.sync MoE epilogue (the wgmma one is `store_moe_rows`): tile row r is sorted position m0 + r; its
        output row is the flat id sorted_token_ids[pos] (padding ids >= M * top_k are skipped); the routing weight
        multiplies after the activation. Only the first K-warp stores: it holds the sum over the K-split warps.
        8/4-bit activations: the activation row's scale (row id // top_k up, row id down) multiplies the
        accumulators first."""
        if cutlass.const_expr(self.cfg.moe_row_cache):
            self.store_moe_cached(acc, tCcC, m0, n0, N, wk_idx, is_last, gscale, mCS, mBias, mC, mSorted, mTopkW, mXS)
        else:
            n_sorted = cute.size(mSorted, mode=[0])
            n_rows = cute.size(mC, mode=[0])
            step = 2 if self.glu else 1
            for ii in cutlass.range_constexpr(cute.size(acc) // step):
                i = ii * step
                coord = tCcC[i]
                pos = m0 + coord[0]
                n = n0 + coord[1]
                tok = mSorted[cutlass.min(pos, n_sorted - 1)]
                if pos < n_sorted and tok < n_rows and n < N and wk_idx == 0 and is_last:
                    xs = cutlass.Float32(1.0)
                    if cutlass.const_expr(self.token_scale):
                        xs = mXS[tok if self.cfg.moe_down else tok // self.cfg.moe_top_k]
                    v_up = acc[i + 1] if self.glu else None
                    out = self.moe_value(acc[i], v_up, xs, gscale, n, mCS, mBias)
                    if cutlass.const_expr(self.mul_topk):
                        out = out * mTopkW[tok]
                    if cutlass.const_expr(self.glu):
                        mC[tok, n // 2] = out.to(self.c_type)
                    else:
                        mC[tok, n] = out.to(self.c_type)

    @cute.jit
    def store_moe_cached(self, acc, tCcC, m0, n0, N, wk_idx, is_last, gscale, mCS, mBias, mC, mSorted, mTopkW,
                         mXS):
        """`store_moe` on the mma.sync accumulators with `moe_row_cache`: acc[v, mi, nj] is row 16 mi + g + 8 (v // 2)
        of the warp tile, so a lane's elements share 2 x (warp_m / 16) rows. Their output row ids (a padding
        position: M * top_k), routing weights and activation scales are loaded first, all before the first store,
        then the elements are stored in the same arithmetic as `store_moe`."""
        n_sorted = cute.size(mSorted, mode=[0])
        n_rows = cute.size(mC, mode=[0])
        n_mi = cute.size(tCcC, mode=[1])
        n_nj = cute.size(tCcC, mode=[2])
        toks = cute.make_rmem_tensor(cute.make_layout((2, n_mi)), cutlass.Int32)
        wts = cute.make_rmem_tensor(cute.make_layout((2, n_mi)), cutlass.Float32)
        xss = cute.make_rmem_tensor(cute.make_layout((2, n_mi)), cutlass.Float32)
        for mi in cutlass.range_constexpr(n_mi):
            for h in cutlass.range_constexpr(2):
                pos = m0 + tCcC[2 * h, mi, 0][0]
                tok = mSorted[cutlass.min(pos, n_sorted - 1)]
                toks[h, mi] = cutlass.select_(pos < n_sorted, tok, n_rows)
        for mi in cutlass.range_constexpr(n_mi):
            for h in cutlass.range_constexpr(2):
                safe = cutlass.min(toks[h, mi], n_rows - 1)
                wts[h, mi] = cutlass.Float32(1.0)
                xss[h, mi] = cutlass.Float32(1.0)
                if cutlass.const_expr(self.mul_topk):
                    wts[h, mi] = mTopkW[safe]
                if cutlass.const_expr(self.token_scale):
                    xss[h, mi] = mXS[safe if self.cfg.moe_down else safe // self.cfg.moe_top_k]
        for nj in cutlass.range_constexpr(n_nj):
            for mi in cutlass.range_constexpr(n_mi):
                for v in cutlass.range_constexpr(0, 4, 2 if self.glu else 1):
                    tok = toks[v // 2, mi]
                    n = n0 + tCcC[v, mi, nj][1]
                    if tok < n_rows and n < N and wk_idx == 0 and is_last:
                        v_up = acc[v + 1, mi, nj] if self.glu else None
                        out = self.moe_value(acc[v, mi, nj], v_up, xss[v // 2, mi], gscale, n, mCS, mBias)
                        if cutlass.const_expr(self.mul_topk):
                            out = out * wts[v // 2, mi]
                        if cutlass.const_expr(self.glu):
                            mC[tok, n // 2] = out.to(self.c_type)
                        else:
                            mC[tok, n] = out.to(self.c_type)
