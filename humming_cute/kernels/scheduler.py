"""Cross-CTA work split shared by the mainloops: the deterministic split-K reduction.

Every CTA of a split stores its fp32 partial tile in a workspace; an atomic ticket per output tile tells the last
CTA to arrive, which adds the partials in split order (so the result never depends on arrival order), keeps the
sum in its accumulators for the epilogue and resets the ticket for the next launch (the counter buffer is per
device and stream)."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline

__all__ = ["split_k_reduce"]


@cute.jit
def _barrier(bar_threads: cutlass.Constexpr):
    if cutlass.const_expr(bar_threads == 0):
        cute.arch.sync_threads()
    else:
        pipeline.NamedBarrier(barrier_id=1, num_threads=bar_threads).arrive_and_wait()


@cute.jit
def split_k_reduce(acc, tCcC, m0, n0, M, tile, z_idx, mWS, mCnt, sFlag, tidx, owner,
                   split_k: cutlass.Constexpr, transposed: cutlass.Constexpr, bar_threads: cutlass.Constexpr = 0):
    """-> is_last. `acc[i]` sits at (m0, n0) + tCcC[i] ((n, m) when `transposed`); only threads with `owner`
    hold a partial (the first K-warp); mWS is [split_k * M, N_pad] fp32, mCnt the per-tile tickets.
    `bar_threads`: 0 when the whole CTA runs this (CTA barriers), else the number of threads that do (threads
    0 .. bar_threads - 1, synchronised by named barrier 1; a warp-specialized kernel's consumers)."""
    mi = 1 if transposed else 0
    ni = 0 if transposed else 1
    if owner:
        for i in cutlass.range_constexpr(cute.size(acc)):
            coord = tCcC[i]
            m = m0 + coord[mi]
            if m < M:
                mWS[z_idx * M + m, n0 + coord[ni]] = acc[i]
    cute.arch.fence_acq_rel_gpu()
    _barrier(bar_threads)
    if tidx == 0:
        sFlag[0] = cute.arch.atomic_add(mCnt.iterator + tile, cutlass.Int32(1))
    _barrier(bar_threads)
    is_last = sFlag[0] == split_k - 1
    if is_last:
        cute.arch.fence_acq_rel_gpu()
        if owner:
            for i in cutlass.range_constexpr(cute.size(acc)):
                coord = tCcC[i]
                m = m0 + coord[mi]
                if m < M:
                    tot = cutlass.Float32(0.0)
                    for zz in cutlass.range_constexpr(split_k):
                        tot = tot + mWS[zz * M + m, n0 + coord[ni]]
                    acc[i] = tot
        if tidx == 0:
            mCnt[tile] = 0
    return is_last
