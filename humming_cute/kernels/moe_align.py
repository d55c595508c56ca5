"""`moe_align_block_size` in one single-CTA kernel (`MoeAlignKernel`; a multi-CTA pair for many ids below): the same output as the torch version of
`humming_cute/moe_align.py` (vLLM's layout: experts ascending, flat ids ascending within an expert, every run padded
to a multiple of block_m with the pad value numel; expert 0 - or map[0] - for the blocks past the padded total).

Thread t owns the contiguous chunk [t * C, (t + 1) * C) of the flat ids (C = ceil(numel / T)), so ranks are stable
without atomics:

1. every thread counts its chunk's ids per expert into its own shared-memory row ``cnt[t + 1][e]``;
2. per expert, an exclusive prefix over the thread rows (``cnt[t + 1][e]`` becomes the number of e's in the chunks
   before t; ``cnt[0][e]`` the expert's total);
3. thread 0 turns the totals into padded run starts and writes num_tokens_post_padded;
4. expert ids per block and the pad value for each run's tail and past the total;
5. every thread walks its chunk again in order and writes id i to ``start[e] + cnt[t + 1][e]++``.

Ids outside [0, E) are dropped, as in the torch version. Shared memory: `humming_cute.moe_align.align_smem_words`.
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
from cutlass.memory import SmemAllocator

from ..moe_align import MoeAlignConfig

__all__ = ["MoeAlignKernel", "MoeAlignMultiKernel", "fake_operands", "fake_multi_operands"]

_BATCH = 4     # multi-CTA kernel: 32-id steps whose loads a warp issues before processing them


def fake_operands(cfg: MoeAlignConfig):
    """Memory-less operands (ids, sorted_ids, expert_ids, num_post, expert_map, stream) for compiling `cfg`."""
    from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

    def t1():
        return make_fake_compact_tensor(cutlass.Int32, (cute.sym_int(),), assumed_align=4)

    return t1(), t1(), t1(), t1(), t1(), make_fake_stream(use_tvm_ffi_env_stream=True)


class MoeAlignKernel:
    """Builds and launches the alignment kernel of one `MoeAlignConfig`."""

    def __init__(self, cfg: MoeAlignConfig):
        self.cfg = cfg
        self.E = cfg.num_experts
        self.bm = cfg.block_m
        self.T = cfg.threads
        self.unroll = cfg.unroll     # ids loaded per batch: independent loads in flight per thread

    @cute.jit
    def __call__(self, mIds: cute.Tensor, mSorted: cute.Tensor, mExpert: cute.Tensor, mNum: cute.Tensor,
                 mMap: cute.Tensor, stream):
        self.kernel(mIds, mSorted, mExpert, mNum, mMap).launch(grid=[1, 1, 1], block=[self.T, 1, 1],
                                                                stream=stream)

    @cute.jit
    def expert_value(self, mMap: cute.Tensor, e):
        """The id written for expert e: e itself, or map[e]."""
        v = e
        if cutlass.const_expr(self.cfg.has_map):
            v = mMap[e]
        return v

    @cute.jit
    def write_runs(self, mSorted: cute.Tensor, mExpert: cute.Tensor, mMap: cute.Tensor, starts, totals, numel,
                   max_padded, n_blocks, first, step):
        """Shared out over the threads first, first + step, ...: the expert id of every block, and the pad value
        on each run's tail (after the expert's `totals[e]` ids) and past the padded total starts[E]."""
        E = self.E
        bm = self.bm
        total = starts[E]
        for e in range(first, E, step):
            s0 = starts[e]
            s1 = starts[e + 1]
            v = self.expert_value(mMap, e)
            for b in range(s0 // bm, s1 // bm):
                mExpert[b] = v
            for p in range(s0 + totals[e], s1):
                mSorted[p] = numel
        v0 = self.expert_value(mMap, 0)
        for b in range(total // bm + first, n_blocks, step):
            mExpert[b] = v0
        for p in range(total + first, max_padded, step):
            mSorted[p] = numel

    @cute.jit
    def walk_chunk(self, mIds: cute.Tensor, mSorted: cute.Tensor, cnt, starts, ids, lo, hi, row,
                   scatter: cutlass.Constexpr):
        """Walk ids [lo, hi) in order, `unroll` independent loads at a time; ids outside [0, E) are skipped. Count
        them in this thread's row (`scatter` False), or write id i to starts[e] + cnt[row + e]++ (True)."""
        E = self.E
        for base in range(lo, hi, self.unroll):
            for u in cutlass.range_constexpr(self.unroll):
                ids[u] = cutlass.Int32(-1)
                if base + u < hi:
                    ids[u] = mIds[base + u]
            for u in cutlass.range_constexpr(self.unroll):
                e = ids[u]
                if e >= 0:
                    if e < E:
                        r = cnt[row + e]
                        if cutlass.const_expr(scatter):
                            mSorted[starts[e] + r] = base + u
                        cnt[row + e] = r + 1

    @cute.kernel
    def kernel(self, mIds: cute.Tensor, mSorted: cute.Tensor, mExpert: cute.Tensor, mNum: cute.Tensor,
               mMap: cute.Tensor):
        E = self.E
        T = self.T
        bm = self.bm
        tidx, _, _ = cute.arch.thread_idx()
        numel = cute.size(mIds, mode=[0])
        max_padded = cute.size(mSorted, mode=[0])
        n_blocks = cute.size(mExpert, mode=[0])

        smem = SmemAllocator()
        cnt = smem.allocate_tensor(cutlass.Int32, cute.make_layout((T + 1) * E), byte_alignment=16)
        starts = smem.allocate_tensor(cutlass.Int32, cute.make_layout(E + 1), byte_alignment=16)
        ids = cute.make_rmem_tensor(cute.make_layout(self.unroll), cutlass.Int32)

        for i in range(tidx, (T + 1) * E, T):
            cnt[i] = cutlass.Int32(0)
        cute.arch.sync_threads()

        chunk = (numel + T - 1) // T
        lo = cutlass.min(tidx * chunk, numel)
        hi = cutlass.min(lo + chunk, numel)
        row = (tidx + 1) * E

        # 1. counts of this thread's chunk
        self.walk_chunk(mIds, mSorted, cnt, starts, ids, lo, hi, row, False)
        cute.arch.sync_threads()

        # 2. per expert: exclusive prefix over the thread rows, the total in row 0
        for e in range(tidx, E, T):
            s = cutlass.Int32(0)
            for r in range(1, T + 1):
                c = cnt[r * E + e]
                cnt[r * E + e] = s
                s = s + c
            cnt[e] = s
        cute.arch.sync_threads()

        # 3. padded run starts and the padded total
        if tidx == 0:
            acc = cutlass.Int32(0)
            for e in range(E):
                starts[e] = acc
                acc = acc + (cnt[e] + (bm - 1)) // bm * bm
            starts[E] = acc
            mNum[0] = acc
        cute.arch.sync_threads()

        # 4. expert id of every block; pad value on each run's tail and past the total
        self.write_runs(mSorted, mExpert, mMap, starts, cnt, numel, max_padded, n_blocks, tidx, T)

        # 5. scatter, in id order within the chunk (stable)
        self.walk_chunk(mIds, mSorted, cnt, starts, ids, lo, hi, row, True)


class MoeAlignMultiKernel(MoeAlignKernel):
    """The alignment over a grid of G CTAs (`MoeAlignConfig.multi`; G = len(workspace) / E), for many routed ids:
    two launches, no atomics, so the result is deterministic and a CUDA graph replays it for any routing.

    Warp w of CTA g owns a contiguous run of the flat ids and walks it 32 at a time (lane l reads id base + l, so the
    loads coalesce); ``match.any`` groups the lanes of one expert, and a lane's rank in its group is the number of
    lower lanes of that expert, so ranks follow id order without atomics:

    1. `count` launch: each warp's per-expert counts into its shared-memory row; the CTA's totals go to
       workspace[g * E + e];
    2. `scatter` launch: the same counts again, an exclusive prefix over the CTA's warps, the CTA's offset within
       each expert (the sum of the workspace rows before g) and the expert totals (all rows); warp 0 scans the
       padded totals into run starts; every warp walks its ids again and writes id i to
       start[e] + CTA offset + warp offset + (ids of e already written by this warp) + rank. The CTAs share the
       expert ids, the run tails' pad values and num_tokens_post_padded out between them."""

    def __init__(self, cfg: MoeAlignConfig):
        super().__init__(cfg)
        self.W = cfg.threads // 32

    @cute.jit
    def __call__(self, mIds: cute.Tensor, mSorted: cute.Tensor, mExpert: cute.Tensor, mNum: cute.Tensor,
                 mMap: cute.Tensor, mWs: cute.Tensor, stream):
        G = cute.size(mWs, mode=[0]) // self.E
        self.kernel(mIds, mSorted, mExpert, mNum, mMap, mWs, False).launch(grid=[G, 1, 1], block=[self.T, 1, 1],
                                                                           stream=stream)
        self.kernel(mIds, mSorted, mExpert, mNum, mMap, mWs, True).launch(grid=[G, 1, 1], block=[self.T, 1, 1],
                                                                          stream=stream)

    @cute.jit
    def walk(self, mIds: cute.Tensor, mSorted: cute.Tensor, cnt, starts, cbase, lo, hi, row, lane,
             scatter: cutlass.Constexpr):
        """This warp's ids [lo, hi), 32 per step (`_BATCH` steps' loads first). Count them per expert in the warp's
        row (`scatter` False), or write each to its place and count it there (True)."""
        E = self.E
        keys = cute.make_rmem_tensor(cute.make_layout(_BATCH), cutlass.Int32)
        for base in range(lo, hi, 32 * _BATCH):
            for u in cutlass.range_constexpr(_BATCH):
                keys[u] = cutlass.Int32(E)                 # out of range / invalid ids: one key, never counted
                i = base + 32 * u + lane
                if i < hi:
                    e = mIds[i]
                    if e >= 0:
                        if e < E:
                            keys[u] = e
            for u in cutlass.range_constexpr(_BATCH):
                e = keys[u]
                same = cute.arch.match_sync(0xFFFFFFFF, e, "any")
                lower = same & cute.arch.lanemask_lt()
                if cutlass.const_expr(scatter):
                    if e < E:
                        mSorted[starts[e] + cbase[e] + cnt[row + e] + cute.arch.popc(lower)] = base + 32 * u + lane
                    cute.arch.sync_warp()
                if e < E:
                    if lower == 0:                         # the group's lowest lane adds the group's size
                        cnt[row + e] = cnt[row + e] + cute.arch.popc(same)
                if cutlass.const_expr(scatter):
                    cute.arch.sync_warp()

    @cute.kernel
    def kernel(self, mIds: cute.Tensor, mSorted: cute.Tensor, mExpert: cute.Tensor, mNum: cute.Tensor,
               mMap: cute.Tensor, mWs: cute.Tensor, scatter: cutlass.Constexpr):
        E = self.E
        T = self.T
        W = self.W
        bm = self.bm
        tidx, _, _ = cute.arch.thread_idx()
        g, _, _ = cute.arch.block_idx()
        G, _, _ = cute.arch.grid_dim()
        warp = tidx // 32
        lane = tidx % 32
        numel = cute.size(mIds, mode=[0])

        smem = SmemAllocator()
        cnt = smem.allocate_tensor(cutlass.Int32, cute.make_layout(W * E), byte_alignment=16)
        starts = smem.allocate_tensor(cutlass.Int32, cute.make_layout(E + 1), byte_alignment=16)
        cbase = smem.allocate_tensor(cutlass.Int32, cute.make_layout(E), byte_alignment=16)
        tot = smem.allocate_tensor(cutlass.Int32, cute.make_layout(E), byte_alignment=16)
        for i in range(tidx, W * E, T):
            cnt[i] = cutlass.Int32(0)
        cute.arch.sync_threads()

        # this warp's ids: G * W runs of `per` ids (a multiple of 32), in order
        per = (numel + G * W * 32 - 1) // (G * W * 32) * 32
        lo = cutlass.min((g * W + warp) * per, numel)
        hi = cutlass.min(lo + per, numel)
        row = warp * E
        self.walk(mIds, mSorted, cnt, starts, cbase, lo, hi, row, lane, False)
        cute.arch.sync_threads()

        if cutlass.const_expr(not scatter):
            for e in range(tidx, E, T):
                s = cutlass.Int32(0)
                for w in cutlass.range_constexpr(W):
                    s = s + cnt[w * E + e]
                mWs[g * E + e] = s
        else:
            # per expert: exclusive prefix over this CTA's warps; the CTA's offset and the expert's total
            for e in range(tidx, E, T):
                s = cutlass.Int32(0)
                for w in cutlass.range_constexpr(W):
                    c = cnt[w * E + e]
                    cnt[w * E + e] = s
                    s = s + c
                before = cutlass.Int32(0)
                total = cutlass.Int32(0)
                for gg in cutlass.range(G, unroll=8):
                    v = mWs[gg * E + e]
                    total = total + v
                    if gg < g:
                        before = before + v
                cbase[e] = before
                tot[e] = total
            cute.arch.sync_threads()

            # padded run starts: lane l of warp 0 sums experts [l * S, l * S + S), a shuffle scan over the lanes
            if warp == 0:
                S = (E + 31) // 32
                e0 = lane * S
                local = cutlass.Int32(0)
                for j in cutlass.range_constexpr(S):
                    if e0 + j < E:
                        local = local + (tot[e0 + j] + (bm - 1)) // bm * bm
                incl = local
                for sh in cutlass.range_constexpr(5):
                    v = cute.arch.shuffle_sync_up(incl, 1 << sh)
                    if lane >= (1 << sh):
                        incl = incl + v
                acc = incl - local
                for j in cutlass.range_constexpr(S):
                    if e0 + j < E:
                        starts[e0 + j] = acc
                        acc = acc + (tot[e0 + j] + (bm - 1)) // bm * bm
                if lane == 31:
                    starts[E] = incl
            cute.arch.sync_threads()

            # shared out over the CTAs: expert id of every block, pad value on each run's tail and past the total
            if g == 0:
                if tidx == 0:
                    mNum[0] = starts[E]
            self.write_runs(mSorted, mExpert, mMap, starts, tot, numel, cute.size(mSorted, mode=[0]),
                            cute.size(mExpert, mode=[0]), g * T + tidx, G * T)

            # scatter, in id order
            self.walk(mIds, mSorted, cnt, starts, cbase, lo, hi, row, lane, True)


def fake_multi_operands(cfg: MoeAlignConfig):
    """`fake_operands` plus the workspace of per-CTA counts, for compiling a multi-CTA `cfg`."""
    from cutlass.cute.runtime import make_fake_compact_tensor

    ops = fake_operands(cfg)
    return ops[:5] + (make_fake_compact_tensor(cutlass.Int32, (cute.sym_int(),), assumed_align=4),) + ops[5:]
