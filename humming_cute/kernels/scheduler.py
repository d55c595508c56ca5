"""Cross-CTA work split shared by the mainloops: the deterministic split-K and stream-K reductions.

Every CTA of a split stores its fp32 partial tile in a workspace; an atomic ticket per output tile tells the last
CTA to arrive, which adds the partials in split order (so the result never depends on arrival order), keeps the
sum in its accumulators for the epilogue and resets the ticket for the next launch (the counter buffer is per
device and stream)."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline

__all__ = ["split_k_reduce", "cluster_split_reduce", "stream_k_reduce"]


@cute.jit
def _barrier(bar_threads: cutlass.Constexpr):
    if cutlass.const_expr(bar_threads == 0):
        cute.arch.sync_threads()
    else:
        pipeline.NamedBarrier(barrier_id=1, num_threads=bar_threads).arrive_and_wait()


@cute.jit
def _ticket(mCnt, tile, sFlag, tidx, bar_threads: cutlass.Constexpr):
    """After this CTA's partial stores: publish them (fence), then take the tile's arrival ticket (0, 1, ...; one
    atomic add by thread 0, shared through sFlag) -> the ticket, the same in every thread."""
    cute.arch.fence_acq_rel_gpu()
    _barrier(bar_threads)
    if tidx == 0:
        sFlag[0] = cute.arch.atomic_add(mCnt.iterator + tile, cutlass.Int32(1))
    _barrier(bar_threads)
    return sFlag[0]


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
    is_last = _ticket(mCnt, tile, sFlag, tidx, bar_threads) == split_k - 1
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


@cute.jit
def cluster_split_reduce(acc, smem, slot, n_slots: cutlass.Constexpr, owner, rank, split_k: cutlass.Constexpr,
                         peer_base=0, peer_stride: cutlass.Constexpr = 1):
    """-> is_last. Split-K inside a thread-block cluster (1, 1, split_k): every owner thread leaves its partial
    sums in this CTA's shared memory at column `slot` of an (acc size, n_slots) fp32 buffer; after a cluster
    barrier, rank 0 adds those of ranks 1 .. split_k - 1 in rank order (mapa + ld.shared::cluster), and a second
    barrier keeps the other CTAs and their shared memory alive until it has. The order is the workspace split-K's,
    so both give the same bits. `rank` is this CTA's split index; split r's CTA has cluster rank
    peer_base + peer_stride * r (a cluster (cn, 1, split_k) of the wgmma kernel's activation multicast: x + cn r)."""
    nacc = cute.size(acc)
    sP = smem.allocate_tensor(cutlass.Float32, cute.make_layout((nacc, n_slots), stride=(n_slots, 1)),
                              byte_alignment=16)
    if owner:
        for i in cutlass.range_constexpr(nacc):
            sP[i, slot] = acc[i]
    cute.arch.cluster_arrive()
    cute.arch.cluster_wait()
    if rank == 0:
        if owner:
            for r in cutlass.range_constexpr(1, split_k):
                for i in cutlass.range_constexpr(nacc):
                    addr = (sP.iterator + (i * n_slots + slot)).toint()
                    acc[i] = acc[i] + cute.arch.inline_ptx(
                        "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, {$r0}, {$r1};\n"
                        "ld.shared::cluster.f32 {$w0}, [ra];\n}",
                        write_only_types=[cutlass.Float32],
                        read_only_args=[addr, cutlass.Int32(peer_base + peer_stride * r)])
    cute.arch.cluster_arrive()
    cute.arch.cluster_wait()
    return rank == 0


@cute.jit
def stream_k_reduce(acc, tCcC, n_off, tile, slot, first_cta, n_parts, units, ctas, k_tiles, mWS, mCnt, sFlag, tidx,
                    bm: cutlass.Constexpr, bar_threads: cutlass.Constexpr, transposed: cutlass.Constexpr = True):
    """-> is_last. Stream-K fixup of one output tile shared by CTAs first_cta .. first_cta + n_parts - 1 (see
    `humming_cute.stream_k`): every part stores its fp32 partial at workspace slot `slot` (mWS is [2 ctas * bm,
    bn]: CTA c's first tile in slot 2c, its last in 2c + 1; (m, n) tile-local, n offset by `n_off`); a ticket per
    tile tells the last to arrive, which adds the parts in CTA order (K order: the bits never depend on arrival
    order) into its accumulators for the epilogue and resets the ticket."""
    mi = 1 if transposed else 0
    ni = 0 if transposed else 1
    for i in cutlass.range_constexpr(cute.size(acc)):
        coord = tCcC[i]
        mWS[slot * bm + coord[mi], n_off + coord[ni]] = acc[i]
    is_last = _ticket(mCnt, tile, sFlag, tidx, bar_threads) == n_parts - 1
    _barrier(bar_threads)            # sFlag is read by every thread before the next tile's ticket overwrites it
    if is_last:
        cute.arch.fence_acq_rel_gpu()
        for i in cutlass.range_constexpr(cute.size(acc)):
            acc[i] = cutlass.Float32(0.0)
        for j in cutlass.range(n_parts, unroll=1):
            c = first_cta + j
            part = 2 * c + cutlass.select_(c * units // ctas // k_tiles == tile, 0, 1)
            for i in cutlass.range_constexpr(cute.size(acc)):
                coord = tCcC[i]
                acc[i] = acc[i] + mWS[part * bm + coord[mi], n_off + coord[ni]]
        if tidx == 0:
            mCnt[tile] = 0
    return is_last
