"""The Hopper (sm_90a) mixed-input GEMM: TMA loads into an mbarrier-guarded multistage ring, the packed weight
dequantized in registers and fed to `wgmma` as its register operand A, the activations read by `wgmma` from
swizzled shared memory as operand B, and the shared fused epilogue.

The GEMM is computed transposed, C^T[N, M] = W[N, K] . A[M, K]^T, because `wgmma` takes only its A operand from
registers: the weight rows are wgmma's M (64 per 64-row weight atom; a warpgroup takes one atom, or two with
warp_n = 128, one accumulator each) and the tokens are wgmma's N (`block_m`, 16..256). The packed weight, scales
and zero points are the same tensors the mma.sync kernel reads (`layouts/weight.py`): warp r of a warpgroup takes
the pairs of n8 tiles 2r and 2r + 1 of each k16 step, which are exactly the rows 16r .. 16r + 15 of wgmma's A
fragment.

8-bit activations (fp8 e4m3 / e5m2, int8; channel weight scales, per-token activation scales): the weight is
turned into 8-bit lanes (`dequant.lanes8`, layout `mma_k=32`) and the wgmma is k32 with fp8 or s8 operands; warp
r takes n8 tiles 2r, 2r + 1 again (the m16n8k32 B fragment of a tile is the k32 A fragment of its 8 rows).

Operands and their order are those of `gemm_sm80.Sm80MixedGemm` (the MoE operands are unused).
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass.cute.nvgpu import OperandMajorMode, cpasync, warpgroup
from cutlass.utils import LayoutEnum

from ..config import GemmConfig, wgmma_register_split
from ..layouts.weight import ATOM_K, ATOM_N, atom_words
from . import dequant as dq
from .epilogue import Epilogue, copy_word
from .cache_hints import evict_first_policy
from .scheduler import cluster_split_reduce, split_k_reduce, stream_k_reduce

_CUTLASS_TYPES = {"float16": cutlass.Float16, "bfloat16": cutlass.BFloat16}
_ACT8_TYPES = {"float8e4m3": cutlass.Float8E4M3FN, "float8e5m2": cutlass.Float8E5M2, "int8": cutlass.Int8}
_CHUNK = 128      # int32 words per innermost TMA box row of the packed weight
_RASTER_M = 8     # block rows that sweep all of N together (A tiles stay in L2 while the weights stream)
_RING_FREE_BARRIER = 7   # named barrier: every consumer warpgroup is done with the stages (`staging_in_ring`)
_K_SLICE_BARRIER = 6     # named barrier: the K-slice warpgroups' partial sums are in shared memory (warp_k < block_k)


def c_coordinates(bm: int, row_perm: bool):
    """The (weight row n, activation row m) coordinates of one atom's wgmma C tile (ATOM_N x bm). With `row_perm`,
    A row r = g0 + 4 g1 + 8 h + 16 w (lane group g = g0 + 4 g1 of warp w, half h) holds weight row
    16 g0 + g1 + 8 h + 2 w: the rows whose packed words that thread reads without bank conflicts."""
    ident = cute.make_identity_tensor((ATOM_N, bm))
    if cutlass.const_expr(row_perm):
        ident = cute.composition(ident, cute.make_layout(((4, 2, 2, 4), bm), stride=((16, 1, 8, 2), ATOM_N)))
    return ident


class Sm90MixedGemm:
    """Builds and launches one wgmma kernel variant for a validated `GemmConfig` (mainloop='sm90')."""

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg.validate()
        if cfg.mainloop != "sm90":
            raise ValueError(f"Sm90MixedGemm needs mainloop='sm90', got {cfg.mainloop!r}")
        self.act8 = cfg.act_bits == 8
        if self.act8:
            self.lane = cfg.lane_plan()
            self.plan = self.lane.half
            self.planes = self.lane.planes
            self.a_type = _ACT8_TYPES[cfg.a_dtype]
        else:
            self.lane = None
            self.plan = cfg.dequant_plan()
            self.planes = self.plan.planes
            self.a_type = _CUTLASS_TYPES[cfg.a_dtype]
        self.acc_type = cutlass.Int32 if cfg.a_dtype == "int8" else cutlass.Float32
        self.c_type = _CUTLASS_TYPES[cfg.c_dtype]
        self.bm, self.bn, self.bk = cfg.block_m, cfg.block_n, cfg.block_k
        # consumer warpgroups: each takes wa 64-row weight atoms (warp_n = 64 wa), one accumulator per atom, the
        # atoms' wgmmas sharing each activation fragment (wa = 2 halves the activation reads per weight row)
        self.wa = cfg.warp_n // ATOM_N
        self.n_wg = self.bn // cfg.warp_n
        # warp_k < block_k: kw consumer warpgroups per weight row range, warpgroup (wg_n, wg_k) = wg_n + n_wg wg_k
        # multiplying slice wg_k of every k-tile; the partial sums of wg_k > 0 are added into wg_k = 0's in shared
        # memory, which alone runs the epilogue
        self.kw = cfg.block_k // cfg.warp_k
        # pingpong: two sets of kw n_wg consumer warpgroups, set s = wg // n_wg taking the CTA's tiles s, s + 2, ..
        self.pp = 2 if cfg.pingpong else 1
        self.n_cwg = self.n_wg * self.kw * self.pp
        self.n_epi = cfg.epilogue_warpgroups          # staging tiles / row tables / epilogue barriers
        self.threads = cfg.num_threads
        # warp specialization: a producer warpgroup after the consumers, whose first warp issues the TMA loads;
        # registers move from it to the consumers (setmaxnreg), within the register file
        self.ws = cfg.warp_specialized
        self.persistent = cfg.persistent_ctas > 0
        self.stream_k = cfg.stream_k
        self.cons_threads = 128 * self.n_cwg
        self.cons_warps = self.cons_threads // 32
        self.epi_threads = 128 * self.n_wg          # the warpgroups that run the epilogue (wg_k = 0)
        # registers per thread after setmaxnreg, within the CTA's pool (`wgmma_register_split`)
        self.producer_regs, self.consumer_regs = wgmma_register_split(self.n_cwg, cfg.moe_cp_async_rows)
        self.stages = cfg.stages
        self.bits = cfg.bits
        self.aw = atom_words(self.bits)
        self.bk_words = self.bk // ATOM_K * self.aw
        self.bk_chunks = self.bk_words // _CHUNK
        self.bn_atoms = self.bn // ATOM_N
        self.mma_k = 32 if self.act8 else 16
        self.k_steps = self.bk // self.mma_k
        # A fragments double-buffered in a_split pieces of `sub` k-steps each (cfg.a_split; 1: whole k-tiles)
        self.a_split = cfg.a_split
        self.row_perm = cfg.use_row_perm
        self.sub = self.k_steps // (cfg.a_split * self.kw)
        self.group = cfg.group_size
        self.srows = max(cfg.scale_rows, 1)
        self.has_zp = cfg.has_zero_point
        # 16-bit activations: group scales (fp16/bf16 pairs) come by TMA and multiply the weight; 8-bit
        # activations: fp32 group scales multiply each k-tile's partial sum (two-level accumulation, group_size
        # >= block_k), read from global memory
        self.tma_scales = self.group > 0 and not self.act8
        # pieces of a k-tile (a_split) under one scale row share piece 0's scale registers (`mma_pieces`)
        self.cache_scales = (cfg.piece_scales and cfg.a_split > 1 and self.kw == 1 and not self.act8
                             and self.group >= self.bk)
        # fp8 wgmma keeps fewer mantissa bits than fp32 in its accumulator: with fp8_fast_accum=False the fp8
        # partial sums are promoted into the fp32 accumulator after every k-tile as well (cuBLAS's default)
        self.two_level = self.act8 and (self.group > 0 or (cfg.a_dtype != "int8" and not cfg.fp8_fast_accum))
        self.split_k = cfg.split_k
        self.moe = cfg.moe
        # activation multicast: clusters of cn CTAs along the weight tiles of one block row (cfg.cluster_n)
        self.cn = cfg.cluster_n
        # block rows that sweep N together: one on the MoE GEMM's weight-tile-major raster (`moe_n_major`)
        self.raster_m = 1 if cfg.moe_n_major else _RASTER_M
        self.cluster_shape = (self.cn, 1) if self.cn > 1 else None
        # MoE activation rows by cp.async from the producer warpgroup's 128 threads (cfg.moe_cp_async_rows)
        self.rows = cfg.moe_cp_async_rows
        self.epilogue = Epilogue(cfg, self.c_type)
        half = self.bn // 2
        a_bytes = 0 if self.rows else self.bm * self.bk * cfg.act_bits // 8      # (cp.async rows: not TMA bytes)
        self.tx_bytes = (a_bytes + self.bn_atoms * self.bk_words * 4
                         + (self.srows * half * 4 if self.tma_scales else 0)
                         + (self.srows * half * 4 if self.has_zp else 0))

    @cute.jit
    def __call__(self, mA: cute.Tensor, mB: cute.Tensor, mS: cute.Tensor, mZ: cute.Tensor, mCS: cute.Tensor,
                 mG: cute.Tensor, mBias: cute.Tensor, mC: cute.Tensor, mWS: cute.Tensor, mCnt: cute.Tensor,
                 mSorted: cute.Tensor, mExpert: cute.Tensor, mNumPost: cute.Tensor, mTopkW: cute.Tensor,
                 stream):
        if cutlass.const_expr(self.act8):
            mA = cute.recast_tensor(mA, self.a_type)    # the [M, K/2] 16-bit view of the codes -> [M, K]
        tiled_mma = sm90_utils.make_trivial_tiled_mma(
            self.a_type, self.a_type, OperandMajorMode.K, OperandMajorMode.K, self.acc_type, (1, 1, 1),
            (ATOM_N, self.bm), warpgroup.OperandSource.RMEM)
        # activations: wgmma's B operand, K-major, swizzled for the wgmma descriptors
        sA_layout = sm90_utils.make_smem_layout_b(LayoutEnum.ROW_MAJOR, (self.bn, self.bm, self.bk), self.a_type,
                                                  self.stages)
        op = cpasync.CopyBulkTensorTileG2SOp()
        if cutlass.const_expr(self.cn > 1):
            # each CTA of the cluster loads 1/cn of the activation tile and multicasts it to all of them
            tma_a, gA_tma = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileG2SMulticastOp(), mA,
                                                         cute.slice_(sA_layout, (None, None, 0)), (self.bm, self.bk),
                                                         num_multicast=self.cn)
        else:
            tma_a, gA_tma = cpasync.make_tiled_tma_atom(op, mA, cute.slice_(sA_layout, (None, None, 0)),
                                                         (self.bm, self.bk))
        # packed weight: one contiguous run of bk_words per 64-row atom and k-tile, cut into 128-word box rows
        if cutlass.const_expr(self.moe):
            # MoE: the experts' weight rows and scale rows one after another (x arrives gathered in sorted order)
            n_exp = cute.size(mB, mode=[0])
            b_rows = cute.size(mB, mode=[1])
            words = cute.size(mB, mode=[2])
            mB3 = cute.make_tensor(mB.iterator, cute.make_layout((n_exp * b_rows, words // _CHUNK, _CHUNK),
                                                                 stride=(words, _CHUNK, 1)))
            s_rows = cute.size(mS, mode=[1])
            s_cols = cute.size(mS, mode=[2])
            mS = cute.make_tensor(mS.iterator, cute.make_layout((n_exp * s_rows, s_cols), stride=(s_cols, 1)))
            # (zero points keep two 16-bit entries per word: with fp32 scales (8-bit activations) their rows are
            # narrower than the scales' rows)
            z_rows = cute.size(mZ, mode=[1])
            z_cols = cute.size(mZ, mode=[2])
            mZ = cute.make_tensor(mZ.iterator, cute.make_layout((n_exp * z_rows, z_cols), stride=(z_cols, 1)))
        else:
            words = cute.size(mB, mode=[1])
            mB3 = cute.make_tensor(mB.iterator, cute.make_layout((cute.size(mB, mode=[0]), words // _CHUNK, _CHUNK),
                                                                 stride=(words, _CHUNK, 1)))
        sB_layout = cute.make_layout((self.bn_atoms, self.bk_chunks, _CHUNK, self.stages),
                                     stride=(self.bk_words, _CHUNK, 1, self.bn_atoms * self.bk_words))
        tma_b, gB_tma = cpasync.make_tiled_tma_atom(op, mB3, cute.slice_(sB_layout, (None, None, None, 0)),
                                                     (self.bn_atoms, self.bk_chunks, _CHUNK))
        half = self.bn // 2
        sS_layout = cute.make_layout((self.srows, half, self.stages), stride=(half, 1, self.srows * half))
        tma_s, gS_tma = tma_a, gA_tma       # placeholders when the variant has no group scales / zero points
        tma_z, gZ_tma = tma_a, gA_tma
        if cutlass.const_expr(self.tma_scales):
            tma_s, gS_tma = cpasync.make_tiled_tma_atom(op, mS, cute.slice_(sS_layout, (None, None, 0)),
                                                         (self.srows, half))
        if cutlass.const_expr(self.has_zp):
            tma_z, gZ_tma = cpasync.make_tiled_tma_atom(op, mZ, cute.slice_(sS_layout, (None, None, 0)),
                                                         (self.srows, half))
        # (cp.async rows: x is not gathered, the block rows are those of the sorted ids)
        tiles_m = cute.ceil_div(cute.size(mSorted if self.rows else mA, mode=[0]), self.bm)
        tiles_n = cute.size(mB, mode=[1 if self.moe else 0]) // self.bn_atoms
        self.kernel(tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, mS, mCS, mG, mBias, mC, mWS, mCnt,
                    mTopkW, mSorted, mExpert, mNumPost, tiled_mma, sA_layout, sB_layout, sS_layout, tiles_m,
                    tiles_n, mA).launch(
            grid=[self.grid_ctas(tiles_m * tiles_n, mA), 1, self.split_k], block=[self.threads, 1, 1],
            cluster=[self.cn, 1, self.split_k] if self.cfg.cluster_split_k or self.cn > 1 else None, stream=stream,
            min_blocks_per_mp=1 if self.ws else 0, use_pdl=self.cfg.pdl)

    def grid_ctas(self, tiles, mA):
        """The grid's CTAs: one per tile, or the persistent grid (never more CTAs than tiles; with stream-K never
        more than (tile, k-tile) units, `humming_cute.stream_k.stream_k_ctas`)."""
        if not self.persistent:
            return tiles
        if self.stream_k:
            return cutlass.min(tiles * cute.ceil_div(cute.size(mA, mode=[1]), self.bk), self.cfg.persistent_ctas)
        return cutlass.min(tiles, self.cfg.persistent_ctas)

    @cute.jit
    def produce(self, pipe, state, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ,
                tZsZ, s_off):
        """Warp 0: wait for a free stage, then start the TMA loads of k-tile `kt0 + state.count` into it."""
        pipe.producer_acquire(state)
        kt = kt0 + state.count
        st = state.index
        bar = pipe.producer_get_barrier(state)
        if cutlass.const_expr(not self.cfg.pdl):
            self.produce_a(tma_a, tAgA, tAsA, kt, st, bar)
        if cutlass.const_expr(self.cfg.evict_first):
            cute.copy(tma_b, tBgB[None, kt], tBsB[None, st], tma_bar_ptr=bar, cache_policy=evict_first_policy())
        else:
            cute.copy(tma_b, tBgB[None, kt], tBsB[None, st], tma_bar_ptr=bar)
        if cutlass.const_expr(self.group > 0):
            r = (kt * self.bk) // (self.group * self.srows)
            if cutlass.const_expr(self.moe):
                r = r + s_off                    # this expert's scale rows
            if cutlass.const_expr(self.tma_scales):
                cute.copy(tma_s, tSgS[None, r], tSsS[None, st], tma_bar_ptr=bar)
            if cutlass.const_expr(self.has_zp):
                cute.copy(tma_z, tZgZ[None, r], tZsZ[None, st], tma_bar_ptr=bar)
        if cutlass.const_expr(self.cfg.pdl):
            # programmatic dependent launch: the first k-tile's weights and scales (nothing the previous grid
            # writes) are on their way while that grid finishes; wait for it before the activations
            if state.count == 0:
                cute.arch.griddepcontrol_wait()
            self.produce_a(tma_a, tAgA, tAsA, kt, st, bar)
        pipe.producer_commit(state)

    @cute.jit
    def produce_a(self, tma_a, tAgA, tAsA, kt, st, bar):
        """The TMA load of k-tile `kt`'s activation tile into stage `st` (multicast over the cluster's CTAs)."""
        if cutlass.const_expr(self.cn > 1):
            mask = (1 << self.cn) - 1           # the cluster's CTAs of this k-range: ranks cn z .. cn z + cn - 1
            if cutlass.const_expr(self.cfg.cluster_split_k):
                _, _, z = cute.arch.block_in_cluster_idx()
                mask = mask << (self.cn * z)
            cute.copy(tma_a, tAgA[None, kt], tAsA[None, st], tma_bar_ptr=bar, mcast_mask=cutlass.Int16(mask))
        elif cutlass.const_expr(not self.rows):     # (cp.async rows: the producer warpgroup copies them)
            cute.copy(tma_a, tAgA[None, kt], tAsA[None, st], tma_bar_ptr=bar)

    @cute.jit
    def row_copy(self, sA, mX, tidx):
        """cp.async rows (`rows`): this producer thread's slice of a 16-byte-per-copy tiled copy of one (block_m,
        block_k) activation tile over the producer warpgroup's 128 threads -> (copy, shared-memory destinations
        (CPY, rows, 1, stage), the per-thread global layout source, (row, k) coordinates in the tile)."""
        tc = self.bk // 8
        atom = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), self.a_type,
                                   num_bits_per_copy=128)
        copy = cute.make_tiled_copy_tv(atom, cute.make_layout((128 // tc, tc), stride=(tc, 1)),
                                       cute.make_layout((1, 8)))
        thr = copy.get_slice(tidx - self.cons_threads)
        tXsA = thr.partition_D(sA)
        tXgX = thr.partition_S(cute.local_tile(mX, (self.bm, self.bk), (0, None)))   # only its layout is used
        tXcX = thr.partition_S(cute.make_identity_tensor((self.bm, self.bk)))
        return copy, tXsA, tXgX, tXcX

    @cute.jit
    def block_rows(self, tXcX, mSorted, mC, bm_idx):
        """cp.async rows: the x row of each of this thread's copy rows in block row bm_idx (id // top_k, or the id
        for the down projection) and whether it is a routed row (padding positions copy nothing: their outputs
        are never stored)."""
        n_rm = cute.size(tXcX, mode=[1])
        rows = cute.make_rmem_tensor(cute.make_layout(n_rm), cutlass.Int32)
        ok = cute.make_rmem_tensor(cute.make_layout(n_rm), cutlass.Boolean)
        n_sorted = cute.size(mSorted, mode=[0])
        n_out = cute.size(mC, mode=[0])           # M * top_k routed rows
        for i in cutlass.range_constexpr(n_rm):
            pos = bm_idx * self.bm + tXcX[0, i, 0][0]
            tok = mSorted[cutlass.min(pos, n_sorted - 1)]
            tok = cutlass.select_(pos < n_sorted, tok, n_out)
            ok[i] = tok < n_out
            if cutlass.const_expr(self.cfg.moe_down):
                rows[i] = tok
            else:
                rows[i] = tok // self.cfg.moe_top_k
        return rows, ok

    @cute.jit
    def produce_rows(self, pipe, state, kt0, warp_idx, copy, tXsA, tXgX, tXcX, rows, ok, mX, tma_a, tAgA, tAsA,
                     tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, s_off):
        """cp.async rows, every producer thread: once k-tile `kt0 + state.count`'s stage is free, the first producer
        warp starts the weights' TMA loads (its arrive carries their bytes) and every thread copies its activation
        rows, then arrives when its copies land (cp.async.mbarrier.arrive.noinc: 1 + 128 arrivals per stage)."""
        if warp_idx == self.cons_warps:
            self.produce(pipe, state, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ,
                         tZsZ, s_off)
        else:
            pipe.sync_object_empty.wait(state.index, state.phase)
        kt = kt0 + state.count
        st = state.index
        K = cute.size(mX, mode=[1])
        for i in cutlass.range_constexpr(cute.size(tXcX, mode=[1])):
            if ok[i]:
                k0 = kt * self.bk + tXcX[0, i, 0][1]
                src = cute.make_tensor((mX.iterator + (rows[i] * K + k0)).align(16), tXgX[None, i, None, 0].layout)
                cute.copy(copy, src, tXsA[None, i, None, st])
        cute.arch.cp_async_mbarrier_arrive_noinc(pipe.producer_get_barrier(state))

    @cute.jit
    def tile_coords(self, tile, tiles_m, tiles_n):
        """(block row, block column) of linear tile `tile` in the grouped raster: `raster_m` block rows (_RASTER_M;
        one with `moe_n_major`) walk all of N before the next rows start. With clusters (cn > 1) `tile` counts
        cluster tiles (cn adjacent weight tiles of one block row); CTA `rank` of the cluster takes column
        cn * column + rank."""
        cols = tiles_n // self.cn
        per_group = self.raster_m * cols
        first_m = (tile // per_group) * self.raster_m
        rows = cutlass.min(tiles_m - first_m, self.raster_m)
        r_in = tile % per_group
        row = first_m + r_in % rows
        col = r_in // rows
        if cutlass.const_expr(self.cn > 1):
            col = col * self.cn + cute.arch.block_in_cluster_idx()[0]
        return row, col

    @cute.jit
    def smem_pipeline(self, sA_layout, sB_layout, sS_layout):
        """The CTA's shared memory (pipeline barriers, activation / packed weight / scale / zero-point stages) and
        its TMA pipeline: -> (allocator, pipeline, sA, sB, sS, sZ)."""
        smem = cutlass.utils.SmemAllocator()
        bars = smem.allocate_array(cutlass.Int64, 2 * self.stages, byte_alignment=8)
        sA = smem.allocate_tensor(self.a_type, sA_layout.outer, byte_alignment=1024, swizzle=sA_layout.inner)
        sB = smem.allocate_tensor(cutlass.Int32, sB_layout, byte_alignment=128)
        sS = smem.allocate_tensor(cutlass.Int32, sS_layout, byte_alignment=128)
        sZ = smem.allocate_tensor(cutlass.Int32, sS_layout, byte_alignment=128)
        pipe = pipeline.PipelineTmaAsync.create(
            barrier_storage=bars, num_stages=self.stages,
            # cp.async rows: the TMA thread's arrive plus one cp.async arrive (noinc) per producer thread
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, 129 if self.rows else 1),
            # with multicast every CTA of the cluster writes into this one's stages: each consumer warp releases a
            # stage to all cn producers (lanes 0..cn-1 arrive on CTA `lane`'s empty barrier)
            # (pingpong: one set of consumer warpgroups reads each stage)
            consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, self.cons_warps // self.pp * self.cn),
            # (a cluster (cn, 1, split) of multicast and split-K: only the cn CTAs of one k-range share stages)
            tx_count=self.tx_bytes, defer_sync=True,
            cta_layout_vmnk=cute.make_layout((1, self.cn, 1, self.split_k if self.cn > 1 and self.cfg.cluster_split_k
                                              else 1)))
        pipeline.pipeline_init_arrive(cluster_shape_mn=self.cluster_shape, is_relaxed=True)
        return smem, pipe, sA, sB, sS, sZ

    @cute.jit
    def tile_partitions(self, tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, sA, sB, sS, sZ, bm_idx,
                        bn_idx, b_tile):
        """TMA partitions of one output tile's operands, k-tile index last: -> (gA, tAsA, tAgA, tBsB, tBgB, tSsS,
        tSgS, tZsZ, tZgZ); `b_tile` is the weight tile (an expert's own rows for MoE)."""
        gA = cute.local_tile(gA_tma, (self.bm, self.bk), (bm_idx, None))
        rank = 0
        if cutlass.const_expr(self.cn > 1):
            rank = cute.arch.block_in_cluster_idx()[0]  # this CTA's piece of the multicast activation tile
        tAsA, tAgA = cpasync.tma_partition(tma_a, rank, cute.make_layout(self.cn), cute.group_modes(sA, 0, 2),
                                           cute.group_modes(gA, 0, 2))
        gB = cute.local_tile(gB_tma, (self.bn_atoms, self.bk_chunks, _CHUNK), (b_tile, None, 0))
        tBsB, tBgB = cpasync.tma_partition(tma_b, 0, cute.make_layout(1), cute.group_modes(sB, 0, 3),
                                           cute.group_modes(gB, 0, 3))
        tSsS, tSgS, tZsZ, tZgZ = tAsA, tAgA, tAsA, tAgA
        if cutlass.const_expr(self.group > 0):
            if cutlass.const_expr(self.tma_scales):
                gS = cute.local_tile(gS_tma, (self.srows, self.bn // 2), (None, bn_idx))
                tSsS, tSgS = cpasync.tma_partition(tma_s, 0, cute.make_layout(1), cute.group_modes(sS, 0, 2),
                                                   cute.group_modes(gS, 0, 2))
            if cutlass.const_expr(self.has_zp):
                gZ = cute.local_tile(gZ_tma, (self.srows, self.bn // 2), (None, bn_idx))
                tZsZ, tZgZ = cpasync.tma_partition(tma_z, 0, cute.make_layout(1), cute.group_modes(sZ, 0, 2),
                                                   cute.group_modes(gZ, 0, 2))
        return gA, tAsA, tAgA, tBsB, tBgB, tSsS, tSgS, tZsZ, tZgZ

    @cute.kernel
    def kernel(self, tma_a: cute.CopyAtom, gA_tma: cute.Tensor, tma_b: cute.CopyAtom, gB_tma: cute.Tensor,
               tma_s: cute.CopyAtom, gS_tma: cute.Tensor, tma_z: cute.CopyAtom, gZ_tma: cute.Tensor,
               mS: cute.Tensor, mCS: cute.Tensor, mG: cute.Tensor, mBias: cute.Tensor, mC: cute.Tensor,
               mWS: cute.Tensor,
               mCnt: cute.Tensor, mTopkW: cute.Tensor, mSorted: cute.Tensor, mExpert: cute.Tensor,
               mNumPost: cute.Tensor, tiled_mma: cute.TiledMma,
               sA_layout: cute.ComposedLayout, sB_layout: cute.Layout, sS_layout: cute.Layout,
               tiles_m: cutlass.Int32, tiles_n: cutlass.Int32, mX: cute.Tensor):
        plan = self.plan
        tidx, _, _ = cute.arch.thread_idx()
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        wg = warp_idx // 4          # warpgroup: 64-row weight atoms wa wg .. wa wg + wa - 1 of the tile
        wr = warp_idx % 4           # warp in the warpgroup = rows 16 wr .. 16 wr + 15 of the atom
        lane = tidx % 32
        g = lane // 4
        if cutlass.const_expr(self.row_perm):
            # the weight rows this thread dequantizes (and the packed-word lane / row group it reads them from):
            # A rows 16 wr + g (+ 8) hold weight rows 16 (g % 4) + g // 4 + 2 wr (+ 8): conflict-free weight loads
            wr, g = g % 4, g // 4 + 2 * wr
            lane = 4 * g + lane % 4
        if warp_idx == 0:
            cpasync.prefetch_descriptor(tma_a)
            cpasync.prefetch_descriptor(tma_b)
            if cutlass.const_expr(self.tma_scales):
                cpasync.prefetch_descriptor(tma_s)
            if cutlass.const_expr(self.has_zp):
                cpasync.prefetch_descriptor(tma_z)

        if cutlass.const_expr(self.persistent):
            self.persistent_tiles(plan, tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, mCS, mG, mBias,
                                  mC, mWS, mCnt, mTopkW, mSorted, mExpert, mNumPost, tiled_mma, sA_layout, sB_layout,
                                  sS_layout, tiles_m, tiles_n, tidx, warp_idx, wg, wr, lane, g, mX)
        else:
            bid, _, z_idx = cute.arch.block_idx()
            bm_idx, bn_idx = self.tile_coords(bid // self.cn, tiles_m, tiles_n)
            # MoE: the block's expert; blocks past num_tokens_post_padded or of another rank's expert (-1) load and
            # store nothing. (in range, has an expert, scale-row offset of the expert)
            moe_st, b_tile, e_idx = self.moe_block(mExpert, mNumPost, gA_tma, bm_idx, bn_idx, tiles_n)
            if cutlass.const_expr(self.moe):
                mCS = mCS[e_idx, None]
                mG = mG[e_idx, None]
                mBias = mBias[e_idx, None]

            # ---- shared memory and the TMA pipeline; TMA partitions of this CTA's tiles (k-tile index last)
            smem, pipe, sA, sB, sS, sZ = self.smem_pipeline(sA_layout, sB_layout, sS_layout)
            (gA, tAsA, tAgA, tBsB, tBgB, tSsS, tSgS, tZsZ,
             tZgZ) = self.tile_partitions(tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, sA, sB, sS, sZ,
                                          bm_idx, bn_idx, b_tile)

            # ---- a producer warpgroup (warp specialization: one warp issues the TMA loads, the others idle with few
            # registers) and the consumer warpgroups; or all warpgroups consume and warp 0 also produces
            args = (plan, pipe, smem, tiled_mma, sA, sB, sS, sZ, gA, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s,
                    tSgS, tSsS, tma_z, tZgZ, tZsZ, tidx, warp_idx, wg, wr, lane, g, bm_idx, bn_idx, z_idx, tiles_n, mS,
                    mCS, mG, mBias, mC, mWS, mCnt, mTopkW, mSorted, moe_st)
            if cutlass.const_expr(self.ws):
                if warp_idx >= self.cons_warps:
                    cute.arch.setmaxregister_decrease(self.producer_regs)
                    pipeline.pipeline_init_wait(cluster_shape_mn=self.cluster_shape)
                    kt0, k_tiles = self.k_range(gA, z_idx, moe_st)
                    if cutlass.const_expr(self.rows):
                        copy, tXsA, tXgX, tXcX = self.row_copy(sA, mX, tidx)
                        rows, ok = self.block_rows(tXcX, mSorted, mC, bm_idx)
                        prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                        for _ in cutlass.range(k_tiles, unroll=1):
                            self.produce_rows(pipe, prod, kt0, warp_idx, copy, tXsA, tXgX, tXcX, rows, ok, mX, tma_a,
                                              tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ,
                                              moe_st[2])
                            prod.advance()
                        cute.arch.cp_async_commit_group()      # no producer thread leaves with copies in flight
                        cute.arch.cp_async_wait_group(0)
                        if warp_idx == self.cons_warps:
                            pipe.producer_tail(prod)
                    elif warp_idx == self.cons_warps:
                        prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                        for _ in cutlass.range(k_tiles, unroll=1):
                            self.produce(pipe, prod, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS,
                                         tma_z, tZgZ, tZsZ, moe_st[2])
                            prod.advance()
                        pipe.producer_tail(prod)
                else:
                    cute.arch.setmaxregister_increase(self.consumer_regs)
                    self.consume(*args)
            else:
                self.consume(*args)
        if cutlass.const_expr(self.cn > 1):
            # no CTA leaves while a peer may still multicast into its stages or arrive on its barriers
            cute.arch.cluster_arrive()
            cute.arch.cluster_wait()

    @cute.jit
    def persistent_tiles(self, plan: cutlass.Constexpr, tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma,
                         mCS, mG, mBias, mC, mWS, mCnt, mTopkW, mSorted, mExpert, mNumPost, tiled_mma, sA_layout,
                         sB_layout, sS_layout, tiles_m, tiles_n, tidx, warp_idx, wg, wr, lane, g, mX):
        """Persistent grid (`persistent_ctas`): CTA b takes output tiles b, b + grid, ... in the grouped raster.
        The producer warp runs ahead through the tiles' k-tiles; the pipeline states carry on from tile to tile, so
        the next tile's first stages load while the consumers finish and store the current one. MoE: each tile
        looks up its block's expert (blocks past num_tokens_post_padded or of another rank's expert take no
        k-tiles and store nothing)."""
        bid, _, _ = cute.arch.block_idx()
        n_ctas, _, _ = cute.arch.grid_dim()
        n_tiles = tiles_m * tiles_n          # a multiple of cn: clusters of cn CTAs walk cluster tiles
        smem, pipe, sA, sB, sS, sZ = self.smem_pipeline(sA_layout, sB_layout, sS_layout)
        # the tiles this CTA walks: every grid-th tile, or with stream-K (`humming_cute.stream_k`) the tiles of its
        # even share [u0, u1) of the (tile, k-tile) units
        t_start, t_stop, t_step = bid // self.cn, n_tiles // self.cn, n_ctas // self.cn
        kt_all = cute.size(cute.local_tile(gA_tma, (self.bm, self.bk), (0, None)), mode=[2])
        units = n_tiles * kt_all
        u0 = bid * units // n_ctas
        u1 = (bid + 1) * units // n_ctas
        sFlag = None
        if cutlass.const_expr(self.stream_k):
            t_start, t_stop, t_step = u0 // kt_all, (u1 - 1) // kt_all + 1, 1
            sFlag = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)   # the tile's ticket
        sOrder = None
        if cutlass.const_expr(self.pp > 1):
            # pingpong: barrier s completes once per tile of the other set whose k-tile waits have all passed (one
            # arrive per warp of that set); set s waits on it before its own tile's first k-tile
            sOrder = smem.allocate_array(cutlass.Int64, 2, byte_alignment=8)
            if tidx == 0:
                cute.arch.mbarrier_init(sOrder, 4 * self.n_wg)
                cute.arch.mbarrier_init(sOrder + 1, 4 * self.n_wg)
            cute.arch.mbarrier_init_fence()        # (the pipeline's init sync below orders it before any use)
        if warp_idx >= self.cons_warps:
            cute.arch.setmaxregister_decrease(self.producer_regs)
            pipeline.pipeline_init_wait(cluster_shape_mn=self.cluster_shape)
            producing = warp_idx == self.cons_warps
            if cutlass.const_expr(self.rows):
                producing = warp_idx >= self.cons_warps          # the whole warpgroup copies activation rows
            if producing:
                copy, tXsA, tXgX, tXcX = self.row_copy(sA, mX, tidx) if self.rows else (None, None, None, None)
                prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                for tile in cutlass.range(t_start, t_stop, t_step, unroll=1):
                    bm_idx, bn_idx = self.tile_coords(tile, tiles_m, tiles_n)
                    moe_st, b_tile, _ = self.moe_block(mExpert, mNumPost, gA_tma, bm_idx, bn_idx, tiles_n)
                    (gA, tAsA, tAgA, tBsB, tBgB, tSsS, tSgS, tZsZ,
                     tZgZ) = self.tile_partitions(tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, sA,
                                                  sB, sS, sZ, bm_idx, bn_idx, b_tile)
                    k0, k_tiles = self.k_range(gA, 0, moe_st)
                    if cutlass.const_expr(self.stream_k):
                        k0 = cutlass.max(u0 - tile * kt_all, 0)
                        k_tiles = cutlass.min(u1 - tile * kt_all, kt_all) - k0
                    prod.reset_count()                 # produce() reads the k-tile index from the count
                    if cutlass.const_expr(self.rows):
                        rows, ok = self.block_rows(tXcX, mSorted, mC, bm_idx)
                        for _ in cutlass.range(k_tiles, unroll=1):
                            self.produce_rows(pipe, prod, 0, warp_idx, copy, tXsA, tXgX, tXcX, rows, ok, mX, tma_a,
                                              tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ,
                                              moe_st[2])
                            prod.advance()
                    else:
                        for _ in cutlass.range(k_tiles, unroll=1):
                            self.produce(pipe, prod, k0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS,
                                         tma_z, tZgZ, tZsZ, moe_st[2])
                            prod.advance()
                if cutlass.const_expr(self.rows):
                    cute.arch.cp_async_commit_group()          # no producer thread leaves with copies in flight
                    cute.arch.cp_async_wait_group(0)
                if warp_idx == self.cons_warps:
                    pipe.producer_tail(prod)
        else:
            cute.arch.setmaxregister_increase(self.consumer_regs)
            # the consumers' shared memory, allocated before the branch on the warpgroup's K slice (the allocator
            # hands out offsets at trace time, and both traced branches must use the same ones)
            wg_n = wg % self.n_wg if self.kw > 1 or self.pp > 1 else wg
            # the warpgroup's staging tile, row table and epilogue barrier (one per storing warpgroup)
            slot = wg if self.pp > 1 else wg_n
            sC = self.staging_tile(smem, slot, sA) if self.cfg.staged_store else None
            sTok, sF = self.moe_row_table(smem, slot) if self.moe else (None, None)
            sPre = self.moe_prefetch_slots(smem, slot, tidx % 128) if self.cfg.moe_prefetch_rows else None
            sR = self.k_slice_buffer(smem) if self.kw > 1 else None
            tiled_mma.set(warpgroup.Field.ACCUMULATE, True)     # (before the branch: it makes a new MMA value)
            args = (plan, pipe, tiled_mma, sA, sB, sS, sZ, tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma,
                    mCS, mG, mBias, mC, mWS, mCnt, mTopkW, mSorted, mExpert, mNumPost, tiles_m, tiles_n, tidx,
                    warp_idx, wg_n, wr, lane, g, (t_start, t_stop, t_step), (kt_all, units, u0, u1, n_ctas, bid),
                    sFlag, sOrder, sC, sTok, sF, sR, sPre, slot, wg // self.n_wg)
            if cutlass.const_expr(self.kw == 1):
                self.persistent_consume(*args, 0)
            else:
                # warp_k < block_k: the warpgroups of slice 0 and those of slice 1 walk the same tiles, each
                # multiplying its half of every k-tile (the pipeline states stay inside each branch)
                if wg // self.n_wg == 0:
                    self.persistent_consume(*args, 0)
                else:
                    self.persistent_consume(*args, 1)

    @cute.jit
    def persistent_consume(self, plan: cutlass.Constexpr, pipe, tiled_mma, sA, sB, sS, sZ, tma_a, gA_tma, tma_b,
                           gB_tma, tma_s, gS_tma, tma_z, gZ_tma, mCS, mG, mBias, mC, mWS, mCnt, mTopkW, mSorted,
                           mExpert, mNumPost, tiles_m, tiles_n, tidx, warp_idx, wg, wr, lane, g, walk, units_of, sFlag,
                           sOrder, sC, sTok, sF, sR, sPre, eslot, side, piece: cutlass.Constexpr):
        """The consumer warpgroups of the persistent grid: this CTA's tiles in turn, each tile's k-tiles (with
        warp_k < block_k only slice `piece` of each; slice 0's warpgroups add the other slice's sums and store),
        then its epilogue (stream-K: the tile's shares reduced first). With `pingpong` set `side` takes every
        other tile of the walk, its pipeline states stepping over the stages of the other set's tiles; it starts
        a tile's k-tiles only once the other set has waited for all of its previous tile's (`sOrder`): a stage's full
        barrier then has at most one fill outstanding, so the wait on its phase parity cannot pass on a fill two
        rounds old (and the two sets' wgmmas take turns, one set's epilogue under the other's mainloop)."""
        t_start, t_stop, t_step = walk
        kt_all, units, u0, u1, n_ctas, bid = units_of
        (tCrB, tCcC, accs, _, rA0, rA1, rAu0, rAu1, b_views, s_view,
         z_view) = self.consumer_operands(tiled_mma, tidx, sA, sB, sS, sZ)
        pipeline.pipeline_init_wait(cluster_shape_mn=self.cluster_shape)
        prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)   # (unused)
        cons = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
        rel = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
        # (the producer arguments of mma_k_tiles are traced but unused with the producer warpgroup)
        (gA0, tAsA, tAgA, tBsB, tBgB, tSsS, tSgS, tZsZ,
         tZgZ) = self.tile_partitions(tma_a, gA_tma, tma_b, gB_tma, tma_s, gS_tma, tma_z, gZ_tma, sA, sB, sS, sZ,
                                      0, 0, 0)
        M = cute.size(mC, mode=[0])
        N = cute.size(mC, mode=[1])
        if cutlass.const_expr(self.cfg.glu):
            N = N * 2   # C holds N/2 GLU outputs; the epilogue runs over the N accumulator columns
        xs = self.act_scales(mG, mWS, mTopkW)
        first = t_start
        if cutlass.const_expr(self.pp > 1):
            first = t_start + side * t_step
        # `moe_prefetch_rows`: the next tile's expert and routed rows are copied (cp.async, this thread's slots)
        # before this tile's epilogue, a tile's routing weights (into the row table) and global scale at its start,
        # so neither the k-tile count nor the epilogue waits on a global load (K slices: slice 0's warpgroups)
        pref = self.cfg.moe_prefetch_rows and piece == 0
        nch = self.epilogue.moe_row_chunks() if self.moe else 1
        r_cur = cute.make_rmem_tensor(cute.make_layout(1 + nch), cutlass.Int32)    # expert, row ids
        num_post = 0
        if cutlass.const_expr(pref):
            num_post = mNumPost[0]
            self.moe_prefetch(first, t_stop, tiles_m, tiles_n, mExpert, mSorted, sPre)
        for tile in cutlass.range(first, t_stop, t_step * self.pp, unroll=1):
            if cutlass.const_expr(self.pp > 1):
                # the producer loaded the previous tile's k-tiles (the other set's) into the ring first: skip them
                prev = cutlass.max(tile - t_step, t_start)
                pm_idx, pn_idx = self.tile_coords(prev, tiles_m, tiles_n)
                p_st, _, _ = self.moe_block(mExpert, mNumPost, gA_tma, pm_idx, pn_idx, tiles_n)
                _, p_tiles = self.k_range(gA0, 0, p_st)
                for _ in cutlass.range(cutlass.select_(tile > t_start, p_tiles, 0), unroll=1):
                    cons.advance()
                    rel.advance()
            bm_idx, bn_idx = self.tile_coords(tile, tiles_m, tiles_n)
            pre = None
            gs = None
            if cutlass.const_expr(pref):
                cute.arch.cp_async_wait_group(0)        # this tile's expert and rows (issued during the last tile)
                # (every thread copied the same expert into its own slot; warp-uniform keeps the k-tile loop's
                # descriptors in uniform registers)
                expert = cute.arch.make_warp_uniform(sPre[0][0])
                r_cur[0] = expert
                e_idx = cutlass.max(expert, 0)
                moe_st = (bm_idx * self.bm < num_post, expert >= 0, 0)
                self.epilogue.moe_rows_read(bm_idx * self.bm, mC, mSorted, tidx % 128, sPre[0], r_cur)
                self.epilogue.moe_rows_weights(mC, mTopkW, xs, tidx % 128, r_cur, 1, None, sF)
                copy_word(mG[e_idx, None], 0, sPre[1], 0)
                cute.arch.cp_async_commit_group()
                pre = r_cur
            else:
                moe_st, _, e_idx = self.moe_block(mExpert, mNumPost, gA_tma, bm_idx, bn_idx, tiles_n)
            _, k_tiles = self.k_range(gA0, 0, moe_st)
            if cutlass.const_expr(self.stream_k):
                k_tiles = cutlass.min(u1 - tile * kt_all, kt_all) - cutlass.max(u0 - tile * kt_all, 0)
                # the CTAs sharing this tile (`humming_cute.stream_k.tile_parts`) and this part's slot
                first = ((tile * kt_all + 1) * n_ctas - 1) // units
                n_parts = (((tile + 1) * kt_all) * n_ctas - 1) // units - first + 1
                slot = 2 * bid + cutlass.select_(tile == t_start, 0, 1)
            for acc in accs:
                acc.fill(0 if self.acc_type is cutlass.Int32 else 0.0)
            cons.reset_count()                     # mma_k_tiles counts this tile's k-tiles from 0
            rel.reset_count()
            if cutlass.const_expr(self.pp > 1):
                # completion n of barrier `side` ends the other set's tile n + 1 - side of its own walk: this set's
                # tile j of its walk waits for completion j - 1 + side (none before the CTA's first tile)
                turn = (tile - first) // (2 * t_step) - 1 + side
                if turn >= 0:
                    cute.arch.mbarrier_wait(sOrder + side, turn % 2)
            cons, rel, prod = self.mma_k_tiles(plan, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1,
                                               b_views, s_view, z_view, cons, rel, prod, 0, k_tiles, warp_idx,
                                               wg, wr, lane, g, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s,
                                               tSgS, tSsS, tma_z, tZgZ, tZsZ, (True, True, 0), piece)
            if cutlass.const_expr(self.pp > 1):
                if tidx % 32 == 0:                 # this warp has passed every k-tile wait of the tile
                    cute.arch.mbarrier_arrive(sOrder + (1 - side))
            warpgroup.wait_group(0)
            for _ in cutlass.range(cons.count - rel.count, unroll=1):   # free the stages still held
                pipe.consumer_release(rel)
                rel.advance()
            if cutlass.const_expr(pref):
                self.moe_prefetch(tile + t_step, t_stop, tiles_m, tiles_n, mExpert, mSorted, sPre)
                cute.arch.cp_async_wait_group(1)        # the routing weights and global scale have landed
                gs = sPre[1][0]
            if cutlass.const_expr(self.kw > 1):
                self.add_k_slices(accs, sR, tidx, piece)
                # the buffer is free again once slice 0 has read it (slice 1 runs on to the next tile meanwhile)
                cute.arch.barrier(barrier_id=_K_SLICE_BARRIER, number_of_threads=self.cons_threads)
            store = (accs, tCcC, tidx, wg, eslot, bm_idx, bn_idx, e_idx, moe_st, M, N, mCS, mG, mBias, mC, mSorted,
                     mTopkW, xs, sTok, sF, sC, pre, gs)
            if cutlass.const_expr(piece == 0):           # (slice 0's warpgroups store the tile)
                if cutlass.const_expr(self.stream_k):
                    is_last = cutlass.Boolean(True)
                    if n_parts > 1:                    # a tile shared with the neighbouring CTAs
                        is_last = stream_k_reduce(accs[0], tCcC, wg * ATOM_N, tile, slot, first, n_parts, units,
                                                  n_ctas, kt_all, mWS, mCnt, sFlag, tidx, self.bm, self.cons_threads)
                    if is_last:
                        self.persistent_store(*store)
                else:
                    self.persistent_store(*store)
        if cutlass.const_expr(pref):
            cute.arch.cp_async_wait_group(0)     # (the copies for the tile past the walk's end)
        if cutlass.const_expr(self.cfg.moe_bulk_store):
            cute.arch.cp_async_bulk_wait_group(0)     # the last tile's row copies, before the CTA's memory goes

    @cute.jit
    def persistent_store(self, accs, tCcC, tidx, wg, slot, bm_idx, bn_idx, e_idx, moe_st, M, N, mCS, mG, mBias, mC,
                         mSorted, mTopkW, xs, sTok, sF, sC, pre, gs):
        """The epilogue of one finished tile of the persistent grid (MoE: all of the warpgroup's atoms in one pass,
        `pre` the routed rows fetched early; else each atom in turn; `wg` names its weight rows, `slot` its staging
        tile / row table and named barrier)."""
        if cutlass.const_expr(self.moe):
            outs = [self.float_acc(accs[a], tCcC) for a in range(self.wa)]
            n0 = bn_idx * self.bn + wg * self.wa * ATOM_N
            if cutlass.const_expr(self.cfg.moe_bulk_store):
                self.epilogue.store_moe_bulk(outs, tCcC, bm_idx * self.bm, n0, ATOM_N, N, moe_st[1],
                                             self.moe_gscale(mG, e_idx, gs), mCS[e_idx, None], mBias[e_idx, None],
                                             mC, mSorted, mTopkW, xs, sTok, sF, sC, tidx % 128, 2 + slot, pre)
            elif cutlass.const_expr(self.cfg.staged_store):
                self.epilogue.store_moe_staged(outs, tCcC, bm_idx * self.bm, n0, ATOM_N, N, moe_st[1],
                                               self.moe_gscale(mG, e_idx, gs), mCS[e_idx, None], mBias[e_idx, None],
                                               mC, mSorted, mTopkW, xs, sTok, sF, sC, tidx % 128, 2 + slot, pre)
            else:
                self.epilogue.store_moe_rows(outs, tCcC, bm_idx * self.bm, n0, ATOM_N, N, moe_st[1],
                                             self.moe_gscale(mG, e_idx, gs), mCS[e_idx, None], mBias[e_idx, None],
                                             mC, mSorted, mTopkW, xs, sTok, sF, tidx % 128, 2 + slot, pre)
        else:
            for a in cutlass.range_constexpr(self.wa):
                out = self.float_acc(accs[a], tCcC)
                n0 = bn_idx * self.bn + (wg * self.wa + a) * ATOM_N
                if cutlass.const_expr(self.cfg.staged_store and self.cfg.glu):
                    self.epilogue.store_staged_glu(out, tCcC, bm_idx * self.bm, n0, M, N, mG, mCS, mBias, mC, xs, sC,
                                                   tidx % 128, 2 + slot)
                elif cutlass.const_expr(self.cfg.staged_store):
                    self.epilogue.store_staged(out, tCcC, bm_idx * self.bm, n0, M, N, mG, mCS, mBias, mC, xs, sC,
                                               tidx % 128, 2 + slot)
                else:
                    self.epilogue.store(out, tCcC, bm_idx * self.bm, n0, M, N, 0, True, mG, mCS, mBias, mC, mCS, xs,
                                        xs, transposed=True)

    @cute.jit
    def float_acc(self, acc, tCcC):
        """The accumulator as fp32 for the epilogue: int8's exact s32 sums converted, else itself."""
        out = acc
        if cutlass.const_expr(self.acc_type is cutlass.Int32 and not self.two_level):
            out = cute.make_rmem_tensor(tCcC.shape, cutlass.Float32)
            for i in cutlass.range_constexpr(cute.size(acc)):
                out[i] = acc[i].to(cutlass.Float32)
        return out

    def act_scales(self, mG, mWS, mTopkW):
        """The epilogue's per-row activation-scale operand (chosen at trace time): 8-bit activations' per-token
        scales travel in the row-weight operand (dense) or in the workspace slot (MoE, whose row-weight operand holds
        the routing weights), as on the mma.sync path; 16-bit activations have none (mG stands in, unread)."""
        if self.act8:
            return mWS if self.moe else mTopkW
        return mG

    def moe_gscale(self, mG, e_idx, gs):
        """The MoE block's global scale: `gs` where the tile's start copied it (`moe_prefetch_rows`), else loaded."""
        return mG[e_idx, None][0] if gs is None else gs

    @cute.jit
    def moe_prefetch_slots(self, smem, slot, t):
        """`moe_prefetch_rows`: this storing thread's shared-memory slots (thread-major: no bank conflicts) ->
        (Int32 [expert, row ids of `Epilogue.moe_rows_fetch_async`], Float32 [the expert's global scale])."""
        n = 1 + self.epilogue.moe_row_chunks()
        sP = smem.allocate_tensor(cutlass.Int32, cute.make_layout((128, n, self.n_epi), stride=(1, 128, 128 * n)),
                                  byte_alignment=16)
        sG = smem.allocate_tensor(cutlass.Float32, cute.make_layout((128, 1, self.n_epi), stride=(1, 128, 128)),
                                  byte_alignment=16)
        return sP[t, None, slot], sG[t, None, slot]

    @cute.jit
    def moe_prefetch(self, tile, t_stop, tiles_m, tiles_n, mExpert, mSorted, sPre):
        """`moe_prefetch_rows`: start copying linear tile `tile`'s MoE block - its expert and this thread's routed
        rows - into the thread's slots sPre[0] (one cp.async group). A tile past the walk's end `t_stop` copies the
        last tile's (unused)."""
        bm_idx, _ = self.tile_coords(cutlass.max(cutlass.min(tile, t_stop - 1), 0), tiles_m, tiles_n)
        bm_idx = cutlass.min(bm_idx, cute.size(mExpert, mode=[0]) - 1)
        copy_word(mExpert, bm_idx, sPre[0], 0)
        self.epilogue.moe_rows_fetch_async(bm_idx * self.bm, mSorted, cute.arch.thread_idx()[0] % 128, sPre[0])
        cute.arch.cp_async_commit_group()

    @cute.jit
    def moe_block(self, mExpert, mNumPost, gA_tma, bm_idx, bn_idx, tiles_n):
        """-> ((in range, has an expert, scale-row offset), weight tile, expert index) of block row bm_idx; a dense
        GEMM's block is always in range with weight tile bn_idx."""
        moe_st = (True, True, 0)
        b_tile = bn_idx
        e_idx = 0
        if cutlass.const_expr(self.moe):
            expert = mExpert[bm_idx]
            e_idx = cutlass.max(expert, 0)
            s_off = 0
            if cutlass.const_expr(self.group > 0):
                s_off = e_idx * (cute.size(gA_tma, mode=[1]) // (self.group * self.srows))
            moe_st = (bm_idx * self.bm < mNumPost[0], expert >= 0, s_off)
            b_tile = e_idx * tiles_n + bn_idx
        return moe_st, b_tile, e_idx

    @cute.jit
    def moe_row_table(self, smem, wg):
        """This warpgroup's table of the block's routed rows (MoE epilogue, `Epilogue.store_moe_rows`): output row
        ids (block_m Int32) and (routing weight, activation scale) pairs (block_m x 2 Float32)."""
        sTok = smem.allocate_tensor(cutlass.Int32, cute.make_layout((self.bm, self.n_epi)), byte_alignment=16)
        sF = smem.allocate_tensor(cutlass.Float32, cute.make_layout((self.bm, 2, self.n_epi),
                                                                    stride=(2, 1, 2 * self.bm)), byte_alignment=16)
        return sTok[None, wg], sF[None, None, wg]

    @cute.jit
    def staging_tile(self, smem, wg, sA):
        """This warpgroup's C staging tile (`staged_store`): block_m token rows of 64 + 8 output columns; with a GLU
        epilogue the raw fp32 accumulators, 64 + 4 columns (the pairs are combined in the copy). With
        `staging_in_ring` the tiles lie at the start of the activation ring (the CTA's last output tile: every
        stage has landed and been read), after a barrier of the consumer threads, so no warpgroup's staging
        overwrites a stage another warpgroup's wgmmas may still read. `moe_bulk_store`: all of the warpgroup's
        atoms' columns (warp_n + 8)."""
        dtype, pad = (cutlass.Float32, 4) if self.cfg.glu else (self.c_type, 8)
        row = (self.wa if self.cfg.moe_bulk_store else 1) * ATOM_N + pad
        layout = cute.make_layout((self.bm, row, self.n_epi), stride=(row, 1, self.bm * row))
        if cutlass.const_expr(self.cfg.staging_in_ring):
            cute.arch.barrier(barrier_id=_RING_FREE_BARRIER, number_of_threads=self.epi_threads)
            ring = cute.make_ptr(dtype, sA.iterator.toint(), cute.AddressSpace.smem, assumed_align=1024)
            sC = cute.make_tensor(ring, layout)
        else:
            sC = smem.allocate_tensor(dtype, layout, byte_alignment=16)
        return sC[None, None, wg]

    @cute.jit
    def k_range(self, gA, z_idx, moe_st):
        """(first k-tile, k-tile count) of this CTA: split-K CTA z takes k-tiles [kt0, kt0 + k_tiles); an MoE
        block out of range or without an expert on this rank takes none."""
        k_tiles_all = cute.size(gA, mode=[2])
        kt_per = (k_tiles_all + self.split_k - 1) // self.split_k
        kt0 = z_idx * kt_per
        k_tiles = cutlass.max(cutlass.min(kt_per, k_tiles_all - kt0), 0)
        if cutlass.const_expr(self.moe):
            k_tiles = cutlass.select_(moe_st[0], cutlass.select_(moe_st[1], k_tiles, 0), 0)
        return kt0, k_tiles

    @cute.jit
    def consume(self, plan: cutlass.Constexpr, pipe, smem, tiled_mma, sA, sB, sS, sZ, gA, tma_a, tAgA, tAsA, tma_b,
                tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, tidx, warp_idx, wg, wr, lane, g, bm_idx, bn_idx,
                z_idx, tiles_n, mS, mCS, mG, mBias, mC, mWS, mCnt, mTopkW, mSorted, moe_st):
        """The consumer warpgroups: dequantize each k-tile into wgmma A registers, run the wgmmas, release the
        stage; then split-K and the epilogue. Without a producer warp, warp 0 also issues the TMA loads."""
        (tCrB, tCcC, accs, acc_t, rA0s, rA1s, rAu0s, rAu1s, b_views, s_view,
         z_view) = self.consumer_operands(tiled_mma, tidx, sA, sB, sS, sZ)
        acc = accs[0]
        wg_k = 0
        if cutlass.const_expr(self.kw > 1):      # this warpgroup's k-slice; from here wg names its weight rows
            wg_k = wg // self.n_wg
            wg = wg % self.n_wg

        pipeline.pipeline_init_wait(cluster_shape_mn=self.cluster_shape)

        kt0, k_tiles = self.k_range(gA, z_idx, moe_st)
        prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
        if cutlass.const_expr(not self.ws) and warp_idx == 0:
            for _ in cutlass.range(cutlass.min(self.stages, k_tiles), unroll=1):
                self.produce(pipe, prod, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ,
                             tZsZ, moe_st[2])
                prod.advance()
        cons = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
        rel = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
        tiled_mma.set(warpgroup.Field.ACCUMULATE, True)

        if cutlass.const_expr(self.two_level):
            # 8-bit activations with group scales (group_size >= block_k), or promoted fp8: each k-tile's wgmmas
            # write a fresh partial sum into acc_t; once they have completed it is folded into acc (times the
            # tile's fp32 scales of this thread's two weight rows, wgmma C rows g and g + 8 of warp wr). The
            # dequant of the next k-tile still overlaps the wgmmas; the fold sits between two k-tiles' wgmmas.
            # (one atom per warpgroup: config validation)
            rA0, rA1, rAu0, rAu1 = rA0s[0], rA1s[0], rAu0s[0], rAu1s[0]
            mSf = cute.recast_tensor(mS, cutlass.Float32)
            n_row = bn_idx * self.bn + wg * ATOM_N + 16 * wr + g
            rsc = cute.make_rmem_tensor(cute.make_layout((2, 2)), cutlass.Float32)   # (row half, tile parity)
            if k_tiles > 0:
                pipe.consumer_wait(cons)
                self.dequant(plan, rAu0, b_views, s_view, z_view, wg, wr, lane, g, cons.index, 0)
                if cutlass.const_expr(self.group > 0):
                    grp = (kt0 * self.bk) // self.group
                    if cutlass.const_expr(self.moe):
                        grp = grp + moe_st[2]                # this expert's scale rows
                    rsc[0, 0] = mSf[grp, n_row]
                    rsc[1, 0] = mSf[grp, n_row + 8]
            for _ in cutlass.range(k_tiles // 2, unroll=1):
                for half in cutlass.range_constexpr(2):
                    cur = rA0 if half == 0 else rA1
                    nxt = rAu1 if half == 0 else rAu0
                    stage = cons.index
                    warpgroup.wait_group(0)                  # the previous k-tile's wgmmas are done
                    if cons.count > 0:
                        self.fold(acc, acc_t, rsc, 1 - half)
                        pipe.consumer_release(rel)
                        rel.advance()
                        if cutlass.const_expr(not self.ws) and warp_idx == 0:
                            if prod.count < k_tiles:
                                self.produce(pipe, prod, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS,
                                             tSsS, tma_z, tZgZ, tZsZ, moe_st[2])
                                prod.advance()
                    warpgroup.fence()
                    tiled_mma.set(warpgroup.Field.ACCUMULATE, False)
                    for s in cutlass.range_constexpr(self.k_steps):
                        cute.gemm(tiled_mma, acc_t, cur[None, None, s], tCrB[None, None, s, stage], acc_t)
                        tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
                    warpgroup.commit_group()
                    cons.advance()
                    if cons.count < k_tiles:
                        pipe.consumer_wait(cons)
                        self.dequant(plan, nxt, b_views, s_view, z_view, wg, wr, lane, g, cons.index, 0)
                        if cutlass.const_expr(self.group > 0):
                            grp = ((kt0 + cons.count) * self.bk) // self.group
                            if cutlass.const_expr(self.moe):
                                grp = grp + moe_st[2]
                            rsc[0, 1 - half] = mSf[grp, n_row]
                            rsc[1, 1 - half] = mSf[grp, n_row + 8]
            if k_tiles % 2 == 1:                             # odd count: the last k-tile sits in buffer 0
                # (the wgmma issue is written out here and in the loop on purpose: moving the ACCUMULATE toggling
                # into a helper called inside the dynamic loop made the DSL emit IR that fails dominance checks)
                stage = cons.index
                warpgroup.wait_group(0)
                if cons.count > 0:
                    self.fold(acc, acc_t, rsc, 1)
                warpgroup.fence()
                tiled_mma.set(warpgroup.Field.ACCUMULATE, False)
                for s in cutlass.range_constexpr(self.k_steps):
                    cute.gemm(tiled_mma, acc_t, rA0[None, None, s], tCrB[None, None, s, stage], acc_t)
                    tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
                warpgroup.commit_group()
                cons.advance()
                warpgroup.wait_group(0)
                self.fold(acc, acc_t, rsc, 0)
            else:
                warpgroup.wait_group(0)
                if k_tiles > 0:
                    self.fold(acc, acc_t, rsc, 1)
        elif cutlass.const_expr(self.kw == 1):
            cons, rel, prod = self.mma_k_tiles(plan, pipe, tiled_mma, accs, tCrB, rA0s, rA1s, rAu0s, rAu1s, b_views,
                                               s_view, z_view, cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane,
                                               g, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z,
                                               tZgZ, tZsZ, moe_st)
        else:
            # K split across warpgroups: slice wg_k of every k-tile (the pipeline states stay inside each branch)
            if wg_k == 0:
                self.k_slice(plan, pipe, tiled_mma, accs, tCrB, rA0s, rA1s, rAu0s, rAu1s, b_views, s_view, z_view,
                             cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA, tma_b,
                             tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st, 0)
            else:
                self.k_slice(plan, pipe, tiled_mma, accs, tCrB, rA0s, rA1s, rAu0s, rAu1s, b_views, s_view, z_view,
                             cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA, tma_b,
                             tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st, 1)
        if cutlass.const_expr(self.kw == 1):
            self.finish_stages(pipe, cons, rel)
        if cutlass.const_expr(self.cfg.pdl):
            # the next grid may start; and no store before the previous grid has finished (the producer waited
            # before the first activation tile; this wait also covers a CTA without k-tiles)
            cute.arch.griddepcontrol_launch_dependents()
            cute.arch.griddepcontrol_wait()
        # int8: exact s32 sums -> fp32 for the epilogue
        accs = [self.float_acc(a, tCcC) for a in accs]
        if cutlass.const_expr(self.kw > 1):
            self.add_k_slices(accs, self.k_slice_buffer(smem), tidx, wg_k)
        acc = accs[0]

        # ---- split-K: every CTA stores its fp32 partial; the last to arrive (atomic ticket) adds the partials in
        # split order (deterministic) and runs the epilogue
        M = cute.size(mC, mode=[0])
        N = cute.size(mC, mode=[1])
        if cutlass.const_expr(self.cfg.glu):
            N = N * 2   # C holds N/2 GLU outputs; the epilogue runs over the N accumulator columns
        m0 = bm_idx * self.bm
        n0 = bn_idx * self.bn + wg * ATOM_N
        is_last = moe_st[1]
        if cutlass.const_expr(self.split_k > 1 and self.cfg.cluster_split_k):
            # (with warp_k < block_k the warpgroups of slice 0 hold the sums; the others only meet the barriers)
            owner = True if self.kw == 1 else wg_k == 0
            slot = tidx % self.epi_threads
            if cutlass.const_expr(self.cn > 1):        # split r's CTA of this weight tile: cluster rank x + cn r
                red_last = cluster_split_reduce(acc, smem, slot, self.epi_threads, owner, z_idx, self.split_k,
                                                cute.arch.block_in_cluster_idx()[0], self.cn)
            else:
                red_last = cluster_split_reduce(acc, smem, slot, self.epi_threads, owner, z_idx, self.split_k)
            if cutlass.const_expr(self.moe):
                is_last = cutlass.select_(red_last, is_last, red_last)   # rank 0 of a block with an expert here
            else:
                is_last = red_last
        elif cutlass.const_expr(self.split_k > 1):
            sFlag = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)
            is_last = split_k_reduce(acc, tCcC, m0, n0, M, bm_idx * tiles_n + bn_idx, z_idx, mWS, mCnt, sFlag, tidx,
                                     True, self.split_k, True, self.cons_threads if self.ws else 0)

        # ---- epilogue (coordinates are (n, m): transposed), each of the warpgroup's atoms in turn; with warp_k <
        # block_k by the warpgroups of slice 0
        xs = self.act_scales(mG, mWS, mTopkW)
        if cutlass.const_expr(self.kw == 1):
            self.tile_epilogue(accs, tCcC, smem, sA, m0, bn_idx, M, N, is_last, mG, mCS, mBias, mC, mSorted, mTopkW,
                               xs, tidx, wg)
        else:
            if wg_k == 0:
                self.tile_epilogue(accs, tCcC, smem, sA, m0, bn_idx, M, N, is_last, mG, mCS, mBias, mC, mSorted,
                                   mTopkW, xs, tidx, wg)

    @cute.jit
    def tile_epilogue(self, accs, tCcC, smem, sA, m0, bn_idx, M, N, is_last, mG, mCS, mBias, mC, mSorted, mTopkW, xs,
                      tidx, wg):
        """The epilogue of one output tile by warpgroup `wg`: MoE rows (all atoms in one pass over the routed rows),
        else each atom in turn, staged or direct."""
        sTok, sF = self.moe_row_table(smem, wg) if self.moe else (None, None)
        sC = self.staging_tile(smem, wg, sA) if self.cfg.staged_store else None
        if cutlass.const_expr(self.moe):
            n0 = bn_idx * self.bn + wg * self.wa * ATOM_N
            if cutlass.const_expr(self.cfg.staged_store):
                self.epilogue.store_moe_staged(accs, tCcC, m0, n0, ATOM_N, N, is_last, mG[0], mCS, mBias, mC,
                                               mSorted, mTopkW, xs, sTok, sF, sC, tidx % 128, 2 + wg)
            else:
                self.epilogue.store_moe_rows(accs, tCcC, m0, n0, ATOM_N, N, is_last, mG[0], mCS, mBias, mC, mSorted,
                                             mTopkW, xs, sTok, sF, tidx % 128, 2 + wg)
        else:
            for a in cutlass.range_constexpr(self.wa):
                acc = accs[a]
                n0 = bn_idx * self.bn + (wg * self.wa + a) * ATOM_N
                if cutlass.const_expr(self.cfg.staged_store):
                    if is_last:
                        if cutlass.const_expr(self.cfg.glu):
                            self.epilogue.store_staged_glu(acc, tCcC, m0, n0, M, N, mG, mCS, mBias, mC, xs, sC,
                                                           tidx % 128, 2 + wg)
                        else:
                            self.epilogue.store_staged(acc, tCcC, m0, n0, M, N, mG, mCS, mBias, mC, xs, sC, tidx % 128,
                                                       2 + wg)
                else:
                    self.epilogue.store(acc, tCcC, m0, n0, M, N, 0, is_last, mG, mCS, mBias, mC, mCS, xs, xs,
                                        transposed=True)

    @cute.jit
    def finish_stages(self, pipe, cons, rel):
        """After a tile's k-tiles: wait for the last wgmmas; with the producer warpgroup release the stages still
        held (the producer's tail waits until every stage is free)."""
        warpgroup.wait_group(0)
        if cutlass.const_expr(self.ws):
            for _ in cutlass.range(cons.count - rel.count, unroll=1):
                pipe.consumer_release(rel)
                rel.advance()

    @cute.jit
    def k_slice(self, plan: cutlass.Constexpr, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1, b_views, s_view,
                z_view, cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA, tma_b, tBgB,
                tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st, piece: cutlass.Constexpr):
        """warp_k < block_k: this warpgroup's slice `piece` of every k-tile of the tile, then its stages released."""
        cons, rel, prod = self.mma_k_tiles(plan, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1, b_views, s_view,
                                           z_view, cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a,
                                           tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ,
                                           moe_st, piece)
        self.finish_stages(pipe, cons, rel)

    def k_slice_buffer(self, smem):
        """warp_k < block_k: shared memory for the fp32 sums of the slices after the first (thread-major: slot,
        value, slice), allocated once per CTA."""
        n = self.bm // 2 * self.wa          # accumulator values per thread: block_m / 2 per 64-row atom
        return smem.allocate_tensor(cutlass.Float32, cute.make_layout(
            (n, self.epi_threads, self.kw - 1), stride=(self.epi_threads, 1, n * self.epi_threads)), byte_alignment=16)

    @cute.jit
    def add_k_slices(self, accs, sR, tidx, wg_k):
        """warp_k < block_k: the warpgroups of slice wg_k > 0 leave their fp32 sums in shared memory (`sR`,
        conflict-free); after a barrier of all consumer threads slice 0's add them in slice order."""
        nacc = cute.size(accs[0])
        slot = tidx % self.epi_threads
        if wg_k > 0:
            for a in cutlass.range_constexpr(self.wa):
                for i in cutlass.range_constexpr(nacc):
                    sR[a * nacc + i, slot, wg_k - 1] = accs[a][i]
        cute.arch.barrier(barrier_id=_K_SLICE_BARRIER, number_of_threads=self.cons_threads)
        if wg_k == 0:
            for j in cutlass.range_constexpr(1, self.kw):
                for a in cutlass.range_constexpr(self.wa):
                    for i in cutlass.range_constexpr(nacc):
                        accs[a][i] = accs[a][i] + sR[a * nacc + i, slot, j - 1]

    @cute.jit
    def consumer_operands(self, tiled_mma, tidx, sA, sB, sS, sZ):
        """A consumer thread's operands: wgmma B fragments over the activation stages, C coordinates, one
        accumulator per atom (and the two-level partial sum), per atom two register buffers of A fragments (lists
        of wa), views of the packed weight / scale / zero-point stages."""
        # ---- wgmma partitions: this warpgroup's slice; B (activations) by shared-memory descriptors
        thr_mma = tiled_mma.get_slice(tidx % 128)
        tCsB = thr_mma.partition_B(sA)
        tCrB = tiled_mma.make_fragment_B(tCsB)                  # (MMA, MMA_N, MMA_K, stage)
        tCcC = thr_mma.partition_C(c_coordinates(self.bm, self.row_perm))   # (n, m) coordinates
        accs = []
        for _ in cutlass.range_constexpr(self.wa):
            acc = cute.make_rmem_tensor(tCcC.shape, cutlass.Float32 if self.two_level else self.acc_type)
            acc.fill(0 if self.acc_type is cutlass.Int32 and not self.two_level else 0.0)
            accs.append(acc)
        acc_t = accs[0]   # two-level: one k-tile's partial sum (s32 for int8, fp32 for fp8)
        if cutlass.const_expr(self.two_level):
            acc_t = cute.make_rmem_tensor(tCcC.shape, self.acc_type)
        # two register buffers of wgmma A fragments: one feeds the in-flight wgmma, the other is being dequantized
        # (4 registers per k-step: 2 x 2 16-bit values, or 4 x 2 x 2 8-bit lanes)
        frag = ((4 if self.act8 else 2, 2, 2), 1, self.sub)
        rA0, rA1, rAu0, rAu1 = [], [], [], []
        for _ in cutlass.range_constexpr(self.wa):
            if cutlass.const_expr(self.a_type is cutlass.Int8):     # the s8 wgmma wants its own (signed) type
                r0 = tiled_mma.make_fragment_A(cute.make_layout(frag))
                r1 = tiled_mma.make_fragment_A(cute.make_layout(frag))
            else:
                r0 = cute.make_rmem_tensor(cute.make_layout(frag), self.a_type)
                r1 = cute.make_rmem_tensor(cute.make_layout(frag), self.a_type)
            rA0.append(r0)
            rA1.append(r1)
            rAu0.append(cute.recast_tensor(r0, cutlass.Int32))     # register (reg, step) at reg + 4 step
            rAu1.append(cute.recast_tensor(r1, cutlass.Int32))

        # per-plane views of a packed B stage: (word, lane, vec, k-atom, n-atom, stage)
        b_views = []
        off = 0
        for w in self.planes:
            b_views.append(cute.make_tensor(sB.iterator + off, cute.make_layout(
                (4, 32, w, self.bk // ATOM_K, self.bn_atoms, self.stages),
                stride=(1, 4, 128, self.aw, self.bk_words, self.bn_atoms * self.bk_words))))
            off += 128 * w
        # scale / zero-point views: (word, g, n-atom, row, stage); word r holds columns 16r + g and 16r + 8 + g
        s_view = cute.make_tensor(sS.iterator, cute.make_layout(
            (4, 8, self.bn_atoms, self.srows, self.stages),
            stride=(1, 4, 32, self.bn // 2, self.srows * self.bn // 2)))
        z_view = cute.make_tensor(sZ.iterator, s_view.layout)
        return tCrB, tCcC, accs, acc_t, rA0, rA1, rAu0, rAu1, b_views, s_view, z_view

    @cute.jit
    def mma_k_tiles(self, plan: cutlass.Constexpr, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1, b_views,
                    s_view, z_view, cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA,
                    tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st, piece: cutlass.Constexpr = 0):
        """One tile's k-tiles, one accumulator per atom (`accs`; the A buffers are per-atom lists too): -> (cons,
        rel, prod) states after them. With warp_k < block_k only slice `piece` (this warpgroup's wg_k) of every
        k-tile: its k16 steps piece * sub .. + sub - 1. The software pipeline inside each warpgroup: while the
        wgmmas of k-tile kt run on one register buffer, k-tile kt + 1 is dequantized into the other; a stage is
        released once its wgmmas have completed. With a_split > 1 the buffers hold a piece of a k-tile each: while
        the wgmmas of piece h run, piece h + 1 (or the next k-tile's first) is dequantized into the other buffer."""
        if cutlass.const_expr(self.a_split > 1):
            return self.mma_pieces(plan, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1, b_views, s_view, z_view,
                                   cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA, tma_b,
                                   tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st)
        if k_tiles > 0:
            pipe.consumer_wait(cons)
            self.dequant_atoms(plan, rAu0, b_views, s_view, z_view, wg, wr, lane, g, cons.index, piece)
        for _ in cutlass.range(k_tiles // 2, unroll=1):
            for half in cutlass.range_constexpr(2):
                cur = rA0 if half == 0 else rA1
                nxt = rAu1 if half == 0 else rAu0
                stage = cons.index
                warpgroup.fence()
                for s in cutlass.range_constexpr(self.sub):
                    for a in cutlass.range_constexpr(self.wa):
                        cute.gemm(tiled_mma, accs[a], cur[a][None, None, s], tCrB[None, None, piece * self.sub + s,
                                                                                  stage], accs[a])
                warpgroup.commit_group()
                warpgroup.wait_group(1)                  # the previous k-tile's wgmmas are done
                if cons.count > 0:
                    pipe.consumer_release(rel)
                    rel.advance()
                    # refill the stage just released (warp 0 must release before it waits for the stage to be
                    # empty: it is one of the consumers)
                    if cutlass.const_expr(not self.ws) and warp_idx == 0:
                        if prod.count < k_tiles:
                            self.produce(pipe, prod, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS, tSsS,
                                         tma_z, tZgZ, tZsZ, moe_st[2])
                            prod.advance()
                cons.advance()
                if cons.count < k_tiles:
                    pipe.consumer_wait(cons)
                    self.dequant_atoms(plan, nxt, b_views, s_view, z_view, wg, wr, lane, g, cons.index, piece)
        if k_tiles % 2 == 1:                             # odd count: the last k-tile sits in buffer 0
            stage = cons.index
            warpgroup.fence()
            for s in cutlass.range_constexpr(self.sub):
                for a in cutlass.range_constexpr(self.wa):
                    cute.gemm(tiled_mma, accs[a], rA0[a][None, None, s], tCrB[None, None, piece * self.sub + s, stage],
                              accs[a])
            warpgroup.commit_group()
            cons.advance()
        return cons, rel, prod

    @cute.jit
    def mma_pieces(self, plan: cutlass.Constexpr, pipe, tiled_mma, accs, tCrB, rA0, rA1, rAu0, rAu1, b_views,
                   s_view, z_view, cons, rel, prod, kt0, k_tiles, warp_idx, wg, wr, lane, g, tma_a, tAgA, tAsA,
                   tma_b, tBgB, tBsB, tma_s, tSgS, tSsS, tma_z, tZgZ, tZsZ, moe_st):
        """`mma_k_tiles` with a_split (even) pieces per k-tile: the wgmmas of piece h of k-tile kt on one buffer
        while the next piece is dequantized into the other; a stage is released once the wgmmas of its last piece
        have completed (checked after the next k-tile's first piece is issued). Where one scale row covers the
        k-tile (`cache_scales`), piece 0 keeps each atom's broadcast scales and zero-point offsets in registers
        (`caches`) for the k-tile's other pieces, instead of every piece loading and broadcasting them again."""
        caches = None
        if cutlass.const_expr(self.cache_scales):
            caches = [cute.make_rmem_tensor(cute.make_layout(6), cutlass.Int32) for _ in range(self.wa)]
        if k_tiles > 0:
            pipe.consumer_wait(cons)
            self.dequant_atoms(plan, rAu0, b_views, s_view, z_view, wg, wr, lane, g, cons.index, 0, caches)
        for _ in cutlass.range(k_tiles, unroll=1):
            stage = cons.index
            for h in cutlass.range_constexpr(self.a_split):
                cur = rA0 if h % 2 == 0 else rA1
                nxt = rAu1 if h % 2 == 0 else rAu0
                warpgroup.fence()
                for j in cutlass.range_constexpr(self.sub):
                    for a in cutlass.range_constexpr(self.wa):
                        cute.gemm(tiled_mma, accs[a], cur[a][None, None, j], tCrB[None, None, h * self.sub + j, stage],
                                  accs[a])
                warpgroup.commit_group()
                warpgroup.wait_group(1)                  # the previous piece's wgmmas are done
                if cutlass.const_expr(h == 0):
                    if cons.count > 0:                   # ... the last piece of the previous k-tile: its stage
                        pipe.consumer_release(rel)
                        rel.advance()
                        if cutlass.const_expr(not self.ws) and warp_idx == 0:
                            if prod.count < k_tiles:
                                self.produce(pipe, prod, kt0, tma_a, tAgA, tAsA, tma_b, tBgB, tBsB, tma_s, tSgS,
                                             tSsS, tma_z, tZgZ, tZsZ, moe_st[2])
                                prod.advance()
                if cutlass.const_expr(h + 1 < self.a_split):
                    self.dequant_atoms(plan, nxt, b_views, s_view, z_view, wg, wr, lane, g, stage, h + 1, caches)
                else:
                    cons.advance()
                    if cons.count < k_tiles:
                        pipe.consumer_wait(cons)
                        self.dequant_atoms(plan, nxt, b_views, s_view, z_view, wg, wr, lane, g, cons.index, 0,
                                           caches)
        return cons, rel, prod

    @cute.jit
    def dequant_atoms(self, plan: cutlass.Constexpr, rAus, b_views, s_view, z_view, wg, wr, lane, g, stage,
                      part: cutlass.Constexpr, caches=None):
        """Dequantize piece `part` (of a_split) of one k-tile of each of the warpgroup's atoms (wg wa + a) into its
        A buffer rAus[a] (`caches[a]`: that atom's scale registers, see `mma_pieces`)."""
        for a in cutlass.range_constexpr(self.wa):
            self.dequant(plan, rAus[a], b_views, s_view, z_view, wg * self.wa + a, wr, lane, g, stage, part,
                         caches[a] if caches is not None else None)

    @cute.jit
    def fold(self, acc, acc_t, rsc, parity: cutlass.Constexpr):
        """acc += acc_t * scale of the value's weight row (C fragment value i: row g for (i // 2) even, g + 8
        for odd), with the scales of the k-tile of this parity; without weight groups acc += acc_t."""
        for i in cutlass.range_constexpr(cute.size(acc)):
            if cutlass.const_expr(self.group == 0):
                acc[i] = acc[i] + acc_t[i]
            elif cutlass.const_expr(self.acc_type is cutlass.Int32):
                sc = rsc[(i // 2) % 2, parity]
                acc[i] = acc[i] + acc_t[i].to(cutlass.Float32) * sc
            else:
                acc[i] = acc[i] + acc_t[i] * rsc[(i // 2) % 2, parity]

    @cute.jit
    def dequant(self, plan: cutlass.Constexpr, rAu, b_views, s_view, z_view, wg, wr, lane, g, stage,
                part: cutlass.Constexpr, cache=None):
        """Dequantize this warp's weight rows of one k-tile (its piece `part` of a_split: 16-bit activations) of
        atom `wg` (the weight tile's 64-row atom) into wgmma A registers (16- or 8-bit)."""
        if cutlass.const_expr(self.act8):
            self.dequant_tile8(rAu, b_views, z_view, wg, wr, lane, g, stage)
        else:
            self.dequant_tile(plan, rAu, b_views, s_view, z_view, wg, wr, lane, g, stage, part, cache)

    def pair_words(self, b_views, ss, ka, wg, wr, lane, stage):
        """Per plane, the packed words holding pairs 4 wr .. 4 wr + 3 of slot group `ss` of k-atom `ka`, and the
        static slot of each pair in its (pre-shifted) word."""
        plane_words = []
        plane_slots = []
        for pi, w in enumerate(self.planes):
            if cutlass.const_expr(w == 8):      # 2 pairs per word: words 8 ss + 2 wr + (0, 1)
                q = 8 * ss + 2 * wr
                w0 = b_views[pi][q % 4, lane, q // 4, ka, wg, stage]
                w1 = b_views[pi][(q + 1) % 4, lane, (q + 1) // 4, ka, wg, stage]
                plane_words.append([w0, w0, w1, w1])
                plane_slots.append([0, 1, 0, 1])
            elif cutlass.const_expr(w == 4):    # 4 pairs per word: word 4 ss + wr
                wd = b_views[pi][wr, lane, ss, ka, wg, stage]
                plane_words.append([wd, wd, wd, wd])
                plane_slots.append([0, 1, 2, 3])
            elif cutlass.const_expr(w == 2):    # 8 pairs per word: word 2 ss + wr // 2, slots 4 (wr % 2) + i
                q = 2 * ss + wr // 2
                wd = b_views[pi][q % 4, lane, q // 4, ka, wg, stage] >> (8 * (wr % 2))
                plane_words.append([wd, wd, wd, wd])
                plane_slots.append([0, 1, 2, 3])
            else:                               # 16 pairs per word: word ss, slots 4 wr + i
                wd = b_views[pi][ss, lane, 0, ka, wg, stage] >> (4 * wr)
                plane_words.append([wd, wd, wd, wd])
                plane_slots.append([0, 1, 2, 3])
        return plane_words, plane_slots

    @cute.jit
    def dequant_tile8(self, rAu, b_views, z_view, wg, wr, lane, g, stage):
        """8-bit activations: this warp's 16 weight rows of one k-tile as 8-bit lanes in wgmma's k32 A fragment.

        Slot group ss = 2 (s % 2) + hb of k-atom s // 2 holds k 16 hb + 4t .. + 3 of k32 step s (layout
        `mma_k=32`); its pairs 2 jj, 2 jj + 1 (n8 tile 2 wr + jj) make the lanes of A register jj + 2 hb (rows g /
        g + 8, k 4t / 16 + 4t). Zero points (group_size >= block_k: one row per stage) arrive as the lane
        constants / fp16 subtrahends of columns 16 wr + g (tile 2 wr) and 16 wr + 8 + g (tile 2 wr + 1)."""
        zsub = [None, None]
        if cutlass.const_expr(self.has_zp):
            zw = z_view[wr, g, wg, 0, stage]
            zsub = [dq.broadcast_lo(zw), dq.broadcast_hi(zw)]
        for s in cutlass.range_constexpr(self.k_steps):
            for hb in cutlass.range_constexpr(2):
                plane_words, plane_slots = self.pair_words(b_views, 2 * (s % 2) + hb, s // 2, wg, wr, lane, stage)
                codes = [dq.extract_pair(self.lane, [pw[i] for pw in plane_words], [sl[i] for sl in plane_slots])
                         for i in range(4)]
                for jj in cutlass.range_constexpr(2):
                    rAu[jj + 2 * hb + 4 * s] = dq.lanes8(self.lane, codes[2 * jj], codes[2 * jj + 1], zsub[jj])

    @cute.jit
    def dequant_tile(self, plan: cutlass.Constexpr, rAu, b_views, s_view, z_view, wg, wr, lane, g, stage,
                     part: cutlass.Constexpr, cache=None):
        """Dequantize this warp's 16 weight rows of one k-tile (k16 steps part * sub .. + sub - 1 of it) into
        wgmma A registers. `cache` (one scale row per k-tile, `cache_scales`): piece 0 stores the broadcast
        scales, zero points and odd-slot offsets there; the other pieces read them instead of shared memory.

        Pair i (0..3) of a k16 step is n8 tile 2 wr + i // 2, k half i % 2 of the mma.sync B layout; it is
        A register (i // 2) + 2 (i % 2) (rows g / g + 8, k 2t / 2t + 8)."""
        fast4 = dq.is_fast4(plan)
        for j in cutlass.range_constexpr(self.sub):
            s = part * self.sub + j
            ka, ss = s // 4, s % 4
            row = (s * 16) // self.group if 0 < self.group < self.bk else 0
            sc_lo = sc_hi = z_lo = z_hi = None
            odd_subs = [None, None]
            if cutlass.const_expr(self.group > 0 and cache is not None and (part > 0 or j > 0)):
                sc_lo, sc_hi = cache[0], cache[1]        # (stored by piece 0 of this k-tile, below)
                if cutlass.const_expr(self.has_zp):
                    z_lo, z_hi = cache[2], cache[3]
                    if cutlass.const_expr(fast4):
                        odd_subs = [cache[4], cache[5]]
            elif cutlass.const_expr(self.group > 0):
                sw = s_view[wr, g, wg, row, stage]
                sc_lo, sc_hi = dq.broadcast_lo(sw), dq.broadcast_hi(sw)
                if cutlass.const_expr(self.has_zp):
                    zw = z_view[wr, g, wg, row, stage]
                    z_lo, z_hi = dq.broadcast_lo(zw), dq.broadcast_hi(zw)
                    if cutlass.const_expr(fast4):
                        odd_subs = [dq.odd_slot_sub(plan, z_lo), dq.odd_slot_sub(plan, z_hi)]
                if cutlass.const_expr(cache is not None):
                    cache[0], cache[1] = sc_lo, sc_hi
                    if cutlass.const_expr(self.has_zp):
                        cache[2], cache[3] = z_lo, z_hi
                        if cutlass.const_expr(fast4):
                            cache[4], cache[5] = odd_subs[0], odd_subs[1]
            plane_words, plane_slots = self.pair_words(b_views, ss, ka, wg, wr, lane, stage)
            for i in cutlass.range_constexpr(4):
                neg_sub = None
                if cutlass.const_expr(self.has_zp):
                    neg_sub = z_lo if i // 2 == 0 else z_hi
                if cutlass.const_expr(fast4):
                    val = dq.decode_slot4(plan, plane_words[0][i], plane_slots[0][i], neg_sub, odd_subs[i // 2])
                else:
                    val = dq.extract_decode(plan, [pw[i] for pw in plane_words], [sl[i] for sl in plane_slots],
                                            neg_sub)
                if cutlass.const_expr(self.group > 0):
                    val = dq.mul2(plan, val, sc_lo if i // 2 == 0 else sc_hi)
                rAu[(i // 2) + 2 * (i % 2) + 4 * j] = val
