"""Gather the MoE GEMM's activation rows into sorted order for the wgmma mainloop, which loads whole activation
tiles by TMA: row p of the output is x[sorted_token_ids[p] // top_k] (up / gate projection) or
x[sorted_token_ids[p]] (down projection); padding ids (>= the number of routed rows) take the last row of x.

One launch instead of a chain of torch ops, and rows past num_tokens_post_padded are not copied (the GEMM never
reads them): CTA b copies rows [b * ROWS, (b + 1) * ROWS) when they start below num_tokens_post_padded; each warp
takes ROWS / 4 of them together, 16 bytes per lane and row.
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute

from ..moe_gather import MoeGatherConfig

__all__ = ["MoeGatherKernel", "fake_operands", "ROWS", "THREADS"]

ROWS = 16        # rows per CTA
THREADS = 128    # 4 warps


def fake_operands(cfg: MoeGatherConfig):
    """Memory-less operands (x, sorted_ids, num_post, out, stream) for compiling `cfg`."""
    from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

    dt = cutlass.BFloat16 if cfg.dtype == "bfloat16" else cutlass.Float16

    def rows():
        return make_fake_compact_tensor(dt, (cute.sym_int(), cute.sym_int(divisibility=8)), stride_order=(1, 0),
                                        assumed_align=16)

    def ints():
        return make_fake_compact_tensor(cutlass.Int32, (cute.sym_int(),), assumed_align=4)

    return rows(), ints(), ints(), rows(), make_fake_stream(use_tvm_ffi_env_stream=True)


class MoeGatherKernel:
    """Builds and launches the row gather of one `MoeGatherConfig`."""

    def __init__(self, cfg: MoeGatherConfig):
        self.cfg = cfg

    @cute.jit
    def __call__(self, mX: cute.Tensor, mSorted: cute.Tensor, mNum: cute.Tensor, mOut: cute.Tensor, stream):
        grid = cute.ceil_div(cute.size(mSorted, mode=[0]), ROWS)
        self.kernel(mX, mSorted, mNum, mOut).launch(grid=[grid, 1, 1], block=[THREADS, 1, 1], stream=stream)

    @cute.kernel
    def kernel(self, mX: cute.Tensor, mSorted: cute.Tensor, mNum: cute.Tensor, mOut: cute.Tensor):
        tidx, _, _ = cute.arch.thread_idx()
        bid, _, _ = cute.arch.block_idx()
        warp = tidx // 32
        lane = tidx % 32
        rows_x = cute.size(mX, mode=[0])
        k = cute.size(mX, mode=[1])
        n_sorted = cute.size(mSorted, mode=[0])
        n_ids = rows_x if self.cfg.is_down else rows_x * self.cfg.top_k    # routed (token, slot) rows
        row0 = bid * ROWS
        per_warp = ROWS // (THREADS // 32)
        if row0 < mNum[0]:
            # this warp's rows: positions p, their source rows (padding ids: x's last row)
            pos = []
            srcs = []
            for r in cutlass.range_constexpr(per_warp):
                p = row0 + warp + (THREADS // 32) * r
                tok = mSorted[cutlass.min(p, n_sorted - 1)]
                src = tok if self.cfg.is_down else tok // self.cfg.top_k
                pos.append(p)
                srcs.append(cutlass.select_(tok < n_ids, src, rows_x - 1))
            # 16 bytes per lane and row; all rows' loads are issued before their stores (independent loads in
            # flight)
            for v in cutlass.range(lane * 8, k, 32 * 8, unroll=2):
                vals = []
                for r in cutlass.range_constexpr(per_warp):
                    s = cute.make_tensor((mX.iterator + srcs[r] * k + v).align(16), cute.make_layout(8))
                    vals.append(s.load())
                for r in cutlass.range_constexpr(per_warp):
                    if pos[r] < n_sorted:
                        d = cute.make_tensor((mOut.iterator + pos[r] * k + v).align(16), cute.make_layout(8))
                        d.store(vals[r])
