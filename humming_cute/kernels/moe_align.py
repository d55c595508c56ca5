"""`moe_align_block_size` in one single-CTA kernel: the same output as the torch version of
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

__all__ = ["MoeAlignKernel", "fake_operands"]


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
        total = starts[E]
        for e in range(tidx, E, T):
            s0 = starts[e]
            s1 = starts[e + 1]
            v = self.expert_value(mMap, e)
            for b in range(s0 // bm, s1 // bm):
                mExpert[b] = v
            for p in range(s0 + cnt[e], s1):
                mSorted[p] = numel
        v0 = self.expert_value(mMap, 0)
        for b in range(total // bm + tidx, n_blocks, T):
            mExpert[b] = v0
        for p in range(total + tidx, max_padded, T):
            mSorted[p] = numel

        # 5. scatter, in id order within the chunk (stable)
        self.walk_chunk(mIds, mSorted, cnt, starts, ids, lo, hi, row, True)
