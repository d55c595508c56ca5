"""The frozen build-time configuration of one GEMM kernel, and its validation.

Every decision the host makes (types, tile shapes, stages, scale placement, epilogue) is a field here; the
kernel reads nothing else. `validate()` raises a clear error naming the rule before anything is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from . import dtypes as dt
from .arch import get_arch
from .layouts.dequant_plan import DequantPlan, make_plan
from .layouts.weight import ATOM_K, ATOM_N

__all__ = ["GemmConfig", "smem_bytes"]

# quantized activation types of the mma.sync kernel: 8-bit (m16n8k32 MMAs) and int4 (s4 m16n8k64)
ACT8_TYPES = ("float8e4m3", "float8e5m2", "int8")
ACT4_TYPES = ("int4", "float4e2m1")
QUANT_ACT_TYPES = ACT8_TYPES + ACT4_TYPES
# Built and compile-checked, not yet run on a GPU: fp4 (e2m1) activations (sm_120a: block-scaled m16n8k64 MMA with
# e2m1 weights, kind::f8f6f4 m16n8k32 with other weights).
# Configs using them are refused unless this is set (the compile tests set it).
ALLOW_UNVERIFIED = False
UNVERIFIED_ACT_TYPES = ("float4e2m1",)


def act_bits(a_dtype: str, b_dtype: str) -> int:
    """Bits per activation element inside the kernels (see `GemmConfig.act_bits`)."""
    if a_dtype == "float4e2m1":
        return 4 if b_dtype == "float4e2m1" else 8
    return 8 if a_dtype in ACT8_TYPES else 4 if a_dtype in ACT4_TYPES else 16


def act_mma_k(a_dtype: str, b_dtype: str) -> int:
    """K of one MMA step for the (activation, weight) pair: 256 / act_bits."""
    return 256 // act_bits(a_dtype, b_dtype)

_MMA_M, _MMA_N, _MMA_K = 16, 8, 16


def _pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class GemmConfig:
    """One kernel variant. Shapes: block (BM, BN, BK) per CTA, warp (WM, WN, WK) per warp; WK < BK splits each
    k-tile across BK / WK warps whose partial sums are added in shared memory (deterministic order)."""

    a_dtype: str = "float16"
    b_dtype: str = "uint4"
    c_dtype: str = "float16"
    group_size: int = 128          # 0 = one scale per output channel (applied in the epilogue, fp32)
    has_zero_point: bool = False   # implied by uintN weights
    has_bias: bool = False
    block_m: int = 64
    block_n: int = 256
    block_k: int = 64
    warp_m: int = 64
    warp_n: int = 64
    warp_k: int = 0                # 0 = block_k; smaller splits each k-tile across warps (reduced in smem)
    stages: int = 4
    split_k: int = 1               # CTAs sharing one output tile along K (fp32 workspace, deterministic sum)
    activation: str = "none"       # epilogue activation name ("silu", "silu_glu", ...) or "custom"
    custom_activation: Optional[Callable] = None   # the user's function when activation == "custom"
    glu: bool = False              # gate/up interleaved columns -> N/2 outputs
    moe: bool = False              # indexed MoE GEMM (vLLM fused_moe contract); block_m = the alignment block
    moe_top_k: int = 1             # up/gate projection reads activation row id // top_k
    moe_down: bool = False         # down projection: reads activation row id
    moe_mul_topk_weights: bool = False  # multiply each output row by topk_weights[id]
    arch: str = "sm_80"
    mainloop: str = "sm80"         # "sm80": cp.async + mma.sync; "sm90": TMA + mbarriers + wgmma (sm_90a)
    act_group_size: int = 0        # 8-bit activations: scale group along K (0 = one scale per token)
    # fp8 activations on the wgmma mainloop: True keeps the fp8 wgmma accumulator across k-tiles (fastest; the
    # tensor cores keep fewer mantissa bits than fp32 there); False promotes each k-tile's partial sum into an
    # fp32 accumulator (cuBLAS's default accuracy, about 30 % slower)
    fp8_fast_accum: bool = True
    # fp16 or e4m3 activations and fp16 output on the mma.sync mainloop: accumulate in fp16 (m16n8k16.f16 /
    # m16n8k32.f16.e4m3 MMAs; twice the MMA rate on GPUs whose fp32-accumulate rate is halved, e.g. GeForce parts)
    # at fp16's precision and range (group scales: fp16 partial sums per group, folded into fp32)
    use_f16_accum: bool = False
    # fp16/bf16 activations with group scales on the mma.sync mainloop: the MMAs of one scale group accumulate
    # unscaled weights into an fp32 partial sum, multiplied by the group's scales at the group's end (two-level
    # accumulation) instead of scaling every dequantized weight pair. Fewer instructions per weight when the tile
    # has few rows (decode); more per output element
    two_level_scales: bool = False
    # wgmma mainloop only: a producer warpgroup issues the TMA loads while the consumer warpgroups (one per 64
    # weight rows) only dequantize and multiply, with registers moved from the producer to them (setmaxnreg)
    warp_specialized: bool = False
    # wgmma mainloop with the producer warpgroup: a persistent grid of this many CTAs (0 = one CTA per tile) walks
    # the output tiles; the producer loads the next tile's k-tiles while the consumers run the epilogue
    persistent_ctas: int = 0
    # wgmma mainloop, dense: the epilogue stages each warpgroup's finished tile in shared memory and stores C in
    # 16-byte row vectors (the transposed accumulators otherwise store 2-byte elements strided by N)
    staged_store: bool = False
    # sm_90+: split-K across the CTAs of one cluster (1, 1, split_k), partial sums added by CTA 0 through
    # distributed shared memory instead of a global workspace and ticket (both mainloops)
    cluster_split_k: bool = False
    # MoE on the mma.sync mainloop: blockIdx.x walks the weight tiles and blockIdx.y the routed blocks, so the few
    # routed blocks of a decode batch start in the first wave, ahead of the padding blocks a token-independent
    # grid also launches (which exit at once). On the wgmma mainloop: the tiles are rastered one routed block at a
    # time (all its weight tiles, then the next block) instead of 8 block rows sweeping N together
    moe_n_major: bool = False
    # wgmma mainloop: clusters of this many CTAs take adjacent weight tiles of one block row and share its
    # activation tile - each loads 1/cluster_n of it and TMA multicasts the piece into every CTA of the cluster
    # (the activation tile is most of a k-tile's bytes: 16 of 20 KB at 128 x 128 x 64 with 4-bit weights, read
    # again by every weight tile from L2). 1 = no cluster; N / block_n must be a multiple
    cluster_n: int = 1
    # wgmma MoE with the producer warpgroup: its 128 threads copy the activation rows of each block by cp.async in
    # routed order straight from x (row id // top_k, or id for the down projection), while one of them TMA-loads the
    # weights; without it x is first gathered into routed order (a copy of top_k x the activation bytes)
    moe_cp_async_rows: bool = False
    # MoE on the mma.sync mainloop: each lane loads its accumulator rows' output row ids (and routing weights /
    # activation scales) once, before the epilogue's first store, instead of once per element behind the previous
    # element's store to C (the wgmma MoE epilogue always reads its rows once, through shared memory)
    moe_row_cache: bool = False
    # wgmma mainloop with the persistent grid, dense: stream-K - the grid's CTAs split the problem's (output tile,
    # k-tile) units evenly, so a tile may be shared by consecutive CTAs; each stores its fp32 partial in a workspace
    # slot and the last to arrive adds them in CTA (= K) order and runs the epilogue (no wave left part-empty)
    stream_k: bool = False
    # mma.sync, fp16 activations, 4-bit integer weights with two-level group scales (decode): the MMAs take the
    # codes under their magic exponents as they are (1024 + q in the k-rows 0-7 of each k16 step, 64 + q in rows
    # 8-15: one LOP3 per pair, no subtraction) and two more MMAs per k16 step sum the activations (all of them, and
    # 960 x the rows 8-15); at each group's end the partial sum gets those offsets and the zero point back in fp32
    # (acc_i + P + (-(1024 + z)) S), so the per-pair HADD2 / HFMA2 of the dequant drop out
    fold_offsets: bool = False
    # mma.sync, dense, one warp row per block (block_m = warp_m), 16-bit activations: the GEMM serves M <= 8 rows
    # (checked at launch), so rows 8-15 of each m16 tile are padding: their group partial sums are not scaled
    # and K-split warps do not reduce them (half the fp32 work per group at decode)
    rows8: bool = False
    # with rows8: the activation tile keeps 8 rows per pipeline stage (the m16 MMA's rows 8-15 read rows 0-7 again;
    # their results are never stored): half the activation shared memory, room for a deeper weight pipeline
    a_rows8: bool = False
    # mma.sync, 16-bit activations, one warp row per block (block_m = warp_m): each warp copies only its own slices
    # of the activations, weights and group scales (its own cp.async groups), so the main loop waits for a k-tile
    # with a warp barrier instead of a CTA barrier - a warp whose data has landed goes on while another still waits
    # (decode tiles). With warps across N (block_n > warp_n) every warp column keeps its own copy of the activation
    # slice (warps_n x the activation shared memory); the MoE GEMM takes it too (each warp gathers its own rows)
    warp_pipeline: bool = False
    # with rows8 (M <= 8): the MMAs take the dequantized weights as their A operand (16 weight columns) and the
    # activations as B (the 8 live rows), so one m16n8k16 covers 16 columns of the live rows instead of 8 columns
    # of 16 rows of which 8 are padding - half the MMAs, half the fp32 partial sums of two-level scales
    swap_ab: bool = False
    # mma.sync: launch bounds promising ptxas this many CTAs per SM (0: none, only the thread count). 1 lets ptxas
    # take up to 255 registers per thread where without it some decode kernels were cut to 64-96 and spilled
    launch_min_blocks: int = 0
    # programmatic dependent launch (sm_90+, dense, 16-bit activations; wgmma without a persistent grid): the
    # kernel may start while the previous kernel on the stream finishes; it copies its first weight / scale
    # stages, then waits for that grid (griddepcontrol.wait) before it reads the activations or writes anything,
    # and lets the next one start after its main loop. Weights, scales, zero points and bias are read before the
    # wait: nothing launched just before may write them
    pdl: bool = False
    # with pdl: how many leading pipeline stages' weights are copied before the wait (0: all stages - 1). They join
    # the first stage's cp.async group, so the first k-tile waits for all of them: fewer start the main loop
    # sooner, more overlap more of the previous kernel's tail (the defaults take 1). Without pdl it reads 0. The
    # wgmma kernel (no persistent grid) takes 1: its producer issues the first k-tile's weight and scale TMA
    # loads, waits, then the activation tile's
    pdl_prefetch: int = 0
    # wgmma mainloop, 16-bit activations: the dequantized weight fragments are double-buffered in a_split pieces of
    # a k-tile (block_k / 16 / a_split k16 steps each) instead of whole k-tiles: block_k / a_split A registers per
    # atom and buffer instead of block_k, so taller two-atom tiles fit the register file (e.g. 176 x 256 x 64,
    # a_split 4), at the cost of a wgmma wait per piece
    a_split: int = 1
    # wgmma mainloop: which weight rows each warp dequantizes. The packed format gives lane l the four 16-row groups'
    # words of its k-slice side by side, so a warp reading one group's word per lane (rows 16 wr ..) hits every
    # 4th bank: 4-way conflicts on every weight load. With row_perm warp w, lane group g takes rows 16 (g % 4) +
    # g // 4 + 2 w (+ 8) instead of 16 w + g (+ 8): the 32 lanes read 32 banks; the accumulator rows follow the same
    # permutation into the epilogue's coordinates, so each warp's C stores are 4-byte pieces of 4 row groups instead
    # of 16 contiguous bytes (the mma.sync mainloop ignores it). None: on where it measured faster on the H200: dense
    # GEMMs with at most 128 activation rows and one weight atom per warpgroup or the staged store (`use_row_perm`)
    row_perm: Optional[bool] = None
    # wgmma mainloop with the persistent grid: two sets of consumer warpgroups (block_n / warp_n each) take alternate
    # tiles of the CTA's walk, each set a whole tile, so one set's epilogue (and the wait for its first stages) runs
    # while the other set's wgmmas multiply ("ping-pong"); twice the consumer warpgroups of the tile, sharing the ring
    pingpong: bool = False
    # wgmma MoE GEMM with the staged store on the persistent grid (not GLU, pingpong or stream-K): each warpgroup
    # stages all of its atoms' columns of a tile at once and each routed row leaves shared memory as one
    # asynchronous bulk copy (cp.async.bulk, no register round trip), which the next tile's k-tiles overlap
    moe_bulk_store: bool = False
    # both mainloops: the weight loads (cp.async / TMA) carry an L2 evict-first cache policy, so weight lines, which
    # a decode GEMM reads exactly once, are the first the L2 drops: the activations, outputs and whatever the
    # neighbouring kernels keep hot (a KV cache, the next layer's inputs) stay resident. Where several CTAs read
    # one weight tile (more than one block row of activations), a line may be gone before the next reads it
    evict_first: bool = False
    # wgmma mainloop with a_split > 1 and one scale row per k-tile (group_size >= block_k): piece 0 of each k-tile
    # keeps its broadcast group scales and zero-point offsets in registers for the k-tile's other pieces instead of
    # each piece loading and broadcasting them again (outputs bitwise equal; False: per piece, as before). Other
    # tiles and the mma.sync mainloop have no pieces to share between: there it changes nothing either way
    piece_scales: bool = True

    def __post_init__(self):
        # normalise names so equal configs compare/hash equal
        object.__setattr__(self, "a_dtype", dt.parse_dtype(self.a_dtype).name)
        object.__setattr__(self, "b_dtype", dt.parse_dtype(self.b_dtype).name)
        object.__setattr__(self, "c_dtype", dt.parse_dtype(self.c_dtype).name)
        if self.warp_k == 0:
            object.__setattr__(self, "warp_k", self.block_k)
        if not self.pdl and isinstance(self.pdl_prefetch, int):
            object.__setattr__(self, "pdl_prefetch", 0)        # (only meaningful with pdl)
        b = dt.parse_dtype(self.b_dtype)
        if isinstance(b, dt.IntegerType) and not b.signed:
            object.__setattr__(self, "has_zero_point", True)

    # ---- derived ----
    @property
    def bits(self) -> int:
        return dt.parse_dtype(self.b_dtype).bits

    @property
    def warps_m(self) -> int:
        return self.block_m // self.warp_m

    @property
    def warps_n(self) -> int:
        return self.block_n // self.warp_n

    @property
    def warps_k(self) -> int:
        return self.block_k // self.warp_k

    @property
    def use_row_perm(self) -> bool:
        """Whether the wgmma kernel permutes its warps' weight rows (`row_perm`, or its default when None)."""
        if self.mainloop != "sm90":
            return False
        if self.row_perm is not None:
            return bool(self.row_perm)
        return not self.moe and self.block_m <= 128 and (self.warp_n == 64 or self.staged_store)

    @property
    def staging_bytes(self) -> int:
        """Bytes of the wgmma kernel's C staging tiles (`staged_store`; 0 without): per consumer warpgroup block_m
        rows of one 64-wide atom, padded (fp32 accumulators with a GLU epilogue, C elements otherwise)."""
        if self.mainloop != "sm90" or not self.staged_store:
            return 0
        n_wg = self.epilogue_warpgroups
        if self.glu:
            return self.block_m * (ATOM_N + 4) * n_wg * 4
        if self.moe_bulk_store:          # all of the warpgroup's atoms' columns
            return self.block_m * (self.warp_n + 8) * n_wg * 2
        return self.block_m * (ATOM_N + 8) * n_wg * 2

    @property
    def staging_in_ring(self) -> bool:
        """Whether the wgmma kernel's C staging tiles reuse the activation ring's shared memory instead of their
        own: a CTA that runs one output tile (no persistent grid, no stream-K, no split-K partials in shared
        memory) is done with its stages when the epilogue starts, so the staging costs no pipeline stage and no
        CTA per SM (128 x 128 x 64 tiles: 4 stages and two CTAs per SM either way)."""
        if not self.staging_bytes or self.persistent_ctas or self.stream_k or self.split_k > 1:
            return False
        return self.staging_bytes <= self.stages * self.block_m * self.block_k * self.act_bits // 8

    @property
    def consumer_warpgroups(self) -> int:
        """wgmma mainloop: consumer warpgroups, one per warp_n weight rows and per warp_k slice of each k-tile (two
        sets of them with `pingpong`)."""
        return self.block_n // self.warp_n * (self.block_k // self.warp_k) * (2 if self.pingpong else 1)

    @property
    def epilogue_warpgroups(self) -> int:
        """wgmma mainloop: the warpgroups that store tiles, each with its own staging tile and row table: one per
        warp_n weight rows (of each set with `pingpong`)."""
        return self.block_n // self.warp_n * (2 if self.pingpong else 1)

    @property
    def moe_prefetch_rows(self) -> bool:
        """wgmma MoE GEMM on the persistent grid (not stream-K or pingpong): each storing thread loads the next tile's
        expert and routed rows by cp.async into its own shared-memory slots before the current tile's epilogue, and
        a tile's routing weights and global scale at its start, so no consumer waits on a global load per tile."""
        return (self.moe and self.mainloop == "sm90" and self.persistent_ctas > 0 and not self.stream_k
                and not self.pingpong)

    @property
    def num_threads(self) -> int:
        if self.mainloop == "sm90":   # one warpgroup per warp_n (64 or 128) weight rows and warp_k of each k-tile
            return 128 * (self.consumer_warpgroups + (1 if self.warp_specialized else 0))   # (+ the producer)
        return 32 * self.warps_m * self.warps_n * self.warps_k

    @property
    def scale_rows(self) -> int:
        """Group-scale rows one k-tile needs."""
        if self.group_size == 0:
            return 0
        return max(1, self.block_k // self.group_size)

    def dequant_plan(self) -> DequantPlan:
        return make_plan(self.a_dtype, self.b_dtype)

    def lane_plan(self):
        from .layouts.dequant_plan import make_lane_plan

        return make_lane_plan(self.a_dtype, self.b_dtype)

    def with_(self, **kw) -> "GemmConfig":
        return replace(self, **kw)

    def validate(self) -> "GemmConfig":
        """Raise ValueError/NotImplementedError naming the broken rule; return self when legal."""
        a = dt.parse_dtype(self.a_dtype)
        b = dt.parse_dtype(self.b_dtype)
        dt.check_legal_pair(a, b, self.has_zero_point)
        if a.name in QUANT_ACT_TYPES:
            self._validate_act8(a)
        elif self.act_group_size:
            raise ValueError("act_group_size is for 8-bit activations (their scales along K)")
        elif a.name not in ("float16", "bfloat16"):
            raise NotImplementedError(f"the GEMM takes float16/bfloat16/float8e4m3/float8e5m2/int8/int4 activations; "
                                      f"{a.name} activations are not implemented yet")
        if self.c_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"output dtype must be float16 or bfloat16, got {self.c_dtype}")
        if self.use_f16_accum:
            if (self.a_dtype not in ("float16", "float8e4m3") or self.c_dtype != "float16"
                    or self.mainloop != "sm80"):
                raise NotImplementedError(f"use_f16_accum takes float16 or float8e4m3 activations and float16 output "
                                          f"on the mma.sync mainloop, got {self.a_dtype} x -> {self.c_dtype} on "
                                          f"{self.mainloop!r}")
        if self.two_level_scales:
            if self.a_dtype not in ("float16", "bfloat16") or self.group_size == 0 or self.mainloop != "sm80":
                raise ValueError(f"two_level_scales is for float16/bfloat16 activations with group scales on the "
                                 f"mma.sync mainloop, got {self.a_dtype} activations, group_size={self.group_size} on "
                                 f"{self.mainloop!r}")
            if self.use_f16_accum:
                raise NotImplementedError("two_level_scales is not combined with use_f16_accum")
        if self.fold_offsets:
            if (self.a_dtype != "float16" or self.b_dtype not in ("int4", "uint4") or not self.two_level_scales
                    or self.mainloop != "sm80"):
                raise ValueError(f"fold_offsets takes float16 activations and int4 / uint4 weights with two-level "
                                 f"group scales (two_level_scales=True) on the mma.sync mainloop, got "
                                 f"{self.a_dtype} x {self.b_dtype}, two_level_scales={self.two_level_scales} on "
                                 f"{self.mainloop!r}")
        if self.rows8:
            if (self.mainloop != "sm80" or self.moe or self.block_m != self.warp_m
                    or self.a_dtype not in ("float16", "bfloat16")):
                raise ValueError(f"rows8 takes the dense mma.sync GEMM with one warp row per block (block_m = "
                                 f"warp_m) and float16/bfloat16 activations, got mainloop={self.mainloop!r}, "
                                 f"moe={self.moe}, block_m={self.block_m}, warp_m={self.warp_m}, {self.a_dtype}")
        if self.warp_pipeline:
            if (self.mainloop != "sm80" or self.block_m != self.warp_m
                    or self.a_dtype not in ("float16", "bfloat16")):
                raise ValueError(f"warp_pipeline takes the mma.sync GEMM with 16-bit activations and one warp row "
                                 f"per block (block_m = warp_m), got mainloop={self.mainloop!r}, {self.a_dtype} "
                                 f"activations, block_m={self.block_m}, warp_m={self.warp_m}")
            wk = self.warp_k or self.block_k
            if self.group_size and wk % self.group_size:
                raise ValueError(f"warp_pipeline: each warp copies its own group-scale rows, so warp_k must be a "
                                 f"multiple of group_size; got warp_k={wk}, group_size={self.group_size}")
        if self.swap_ab:
            if not self.rows8 or self.fold_offsets or self.use_f16_accum:
                raise ValueError(f"swap_ab takes rows8=True (M <= 8) without fold_offsets or use_f16_accum, got "
                                 f"rows8={self.rows8}, fold_offsets={self.fold_offsets}, "
                                 f"use_f16_accum={self.use_f16_accum}")
        if self.a_rows8:
            if not self.rows8 or self.block_m != 16:
                raise ValueError(f"a_rows8 takes rows8=True and block_m = 16, got rows8={self.rows8}, "
                                 f"block_m={self.block_m}")
        if not isinstance(self.launch_min_blocks, int) or not 0 <= self.launch_min_blocks <= 32:
            raise ValueError(f"launch_min_blocks must be an int in 0..32, got {self.launch_min_blocks!r}")
        if self.pdl:
            if (self.moe or self.a_dtype not in ("float16", "bfloat16") or get_arch(self.arch).sm < 90
                    or (self.mainloop == "sm90" and (self.persistent_ctas or self.stream_k))):
                raise ValueError(f"pdl takes the dense GEMM with 16-bit activations on sm_90+ (mma.sync, or wgmma "
                                 f"without a persistent grid), got mainloop={self.mainloop!r}, moe={self.moe}, "
                                 f"{self.a_dtype} activations, arch={self.arch}, "
                                 f"persistent_ctas={self.persistent_ctas}")
            if self.mainloop == "sm90":
                if self.pdl_prefetch != 1:
                    raise ValueError(f"pdl on the wgmma mainloop copies the first k-tile's weights before the wait: "
                                     f"pdl_prefetch must be 1, got {self.pdl_prefetch!r}")
        if not isinstance(self.pdl_prefetch, int) or not 0 <= self.pdl_prefetch < max(self.stages, 1):
            raise ValueError(f"pdl_prefetch must be an int in 0..stages - 1 ({self.stages - 1}), got "
                             f"{self.pdl_prefetch!r}")
        if self.row_perm not in (None, True, False):
            raise ValueError(f"row_perm must be None (the default rule), True or False, got {self.row_perm!r}")
        if self.a_split != 1 and self.mainloop != "sm90":
            raise ValueError(f"a_split takes the wgmma mainloop (mainloop='sm90'), got mainloop={self.mainloop!r}")
        if self.launch_min_blocks and self.mainloop != "sm80":
            raise ValueError(f"launch_min_blocks takes the mma.sync mainloop (the wgmma kernels set their own launch "
                             f"bounds), got mainloop={self.mainloop!r}")
        arch = get_arch(self.arch)
        if arch.sm < 80:
            raise NotImplementedError(f"{arch.name}: the CuTe DSL kernels need sm_80 or newer")
        gs = self.group_size
        if gs != 0 and (not _pow2(gs) or gs < 16):
            raise ValueError(f"group_size must be 0 (per channel) or a power of two >= 16, got {gs}")
        # wgmma tiles may hold any multiple of 16 activation rows (wgmma N = block_m): MoE blocks of e.g. 48 rows
        # pad an expert with ~32 routed rows a quarter less than 64-row ones without splitting it in two; dense
        # tiles of e.g. 176 x 128 carry more MACs per shared-memory byte than 128 x 128 where 256 x 128 does not fit
        odd_m = (self.mainloop == "sm90" and self.block_m == self.warp_m
                 and self.block_m % 16 == 0 and not _pow2(self.block_m))
        for name, v in (("block_m", self.block_m), ("block_n", self.block_n), ("block_k", self.block_k),
                        ("warp_m", self.warp_m), ("warp_n", self.warp_n), ("warp_k", self.warp_k)):
            if not _pow2(v) and not (odd_m and name in ("block_m", "warp_m")):
                raise ValueError(f"{name} must be a power of two, got {v}"
                                 + (" (wgmma tiles: a multiple of 16)" if name == "block_m" else ""))
        if self.warp_m % _MMA_M:
            raise ValueError(f"warp_m must be a multiple of the MMA's M={_MMA_M}, got {self.warp_m}")
        if self.warp_n % ATOM_N:
            raise ValueError(f"warp_n must be a multiple of the weight atom's N={ATOM_N}, got {self.warp_n}")
        if self.block_k % ATOM_K:
            raise ValueError(f"block_k must be a multiple of the weight atom's K={ATOM_K}, got {self.block_k}")
        if self.warp_k % ATOM_K:
            raise ValueError(f"warp_k must be a multiple of the weight atom's K={ATOM_K}, got {self.warp_k}")
        if self.block_k % self.warp_k:
            raise ValueError(f"block_k={self.block_k} must be a multiple of warp_k={self.warp_k}")
        if self.block_m % self.warp_m or self.block_n % self.warp_n:
            raise ValueError(f"block shape ({self.block_m}, {self.block_n}) must be a multiple of the warp shape "
                             f"({self.warp_m}, {self.warp_n})")
        # (the wgmma kernel's producer warpgroup may join four consumer warpgroups: 20 warps, the producer's
        # registers handed to the consumers by setmaxnreg, `wgmma_register_split`)
        most = 20 if self.mainloop == "sm90" and self.warp_specialized else 16
        if not 1 <= self.num_threads // 32 <= most:
            raise ValueError(f"block/warp shapes give {self.num_threads // 32} warps; 1..{most} are allowed")
        if self.mainloop != "sm90" and self.warp_m * self.warp_n > 64 * 128:
            raise ValueError(f"warp tile {self.warp_m}x{self.warp_n} needs more than 255 registers per thread "
                             f"for its fp32 accumulators; use warp_m * warp_n <= 8192")
        from .activations import BUILTIN

        base = self.activation[:-4] if self.activation.endswith("_glu") else self.activation
        if self.activation == "custom":
            if not callable(self.custom_activation):
                raise ValueError("activation='custom' needs custom_activation, a Python function")
        elif base not in BUILTIN or (base == "none" and self.activation != "none"):
            raise ValueError(f"unknown epilogue activation {self.activation!r}; known: {', '.join(sorted(BUILTIN))} "
                             f"(+ '_glu'), or 'custom'")
        elif self.custom_activation is not None:
            raise ValueError("custom_activation is given but activation is not 'custom'")
        if self.activation.endswith("_glu") and not self.glu:
            raise ValueError(f"activation {self.activation!r} needs glu=True")
        if self.glu and self.activation == "none":
            raise ValueError("glu=True needs an activation")
        if self.moe:
            if self.split_k != 1 and not (self.cluster_split_k and self.mainloop == "sm80"):
                raise NotImplementedError("the MoE GEMM splits K only inside a thread-block cluster on the mma.sync "
                                          "mainloop (cluster_split_k=True, mainloop='sm80')")
            if self.split_k != 1 and self.a_dtype not in ("float16", "bfloat16"):
                raise NotImplementedError(f"the MoE GEMM splits K for float16/bfloat16 activations, not "
                                          f"{self.a_dtype}")
            if not isinstance(self.moe_top_k, int) or self.moe_top_k < 1:
                raise ValueError(f"moe_top_k must be a positive int, got {self.moe_top_k!r}")
        elif self.moe_down or self.moe_mul_topk_weights or self.moe_top_k != 1 or self.moe_n_major:
            raise ValueError("moe_top_k / moe_down / moe_mul_topk_weights / moe_n_major need moe=True")
        if self.moe_row_cache:
            if not self.moe or self.mainloop != "sm80":
                raise ValueError("moe_row_cache is an option of the mma.sync MoE GEMM (moe=True, mainloop='sm80'); "
                                 "the wgmma MoE epilogue reads its rows once anyway")
        if self.mainloop not in ("sm80", "sm90"):
            raise ValueError(f"mainloop must be 'sm80' (mma.sync) or 'sm90' (wgmma), got {self.mainloop!r}")
        if not isinstance(self.persistent_ctas, int) or self.persistent_ctas < 0:
            raise ValueError(f"persistent_ctas must be an int >= 0, got {self.persistent_ctas!r}")
        if self.persistent_ctas and self.mainloop != "sm90":
            raise ValueError("persistent_ctas is an option of the wgmma mainloop (mainloop='sm90')")
        if self.stream_k and self.mainloop != "sm90":
            raise ValueError("stream_k is an option of the wgmma mainloop (mainloop='sm90') with persistent_ctas")
        if not isinstance(self.pingpong, bool):
            raise ValueError(f"pingpong must be True or False, got {self.pingpong!r}")
        if self.pingpong and self.mainloop != "sm90":
            raise ValueError("pingpong is an option of the wgmma mainloop (mainloop='sm90') with persistent_ctas")
        if not isinstance(self.moe_bulk_store, bool):
            raise ValueError(f"moe_bulk_store must be True or False, got {self.moe_bulk_store!r}")
        if not isinstance(self.evict_first, bool):
            raise ValueError(f"evict_first must be True or False, got {self.evict_first!r}")
        if not isinstance(self.piece_scales, bool):
            raise ValueError(f"piece_scales must be True or False, got {self.piece_scales!r}")
        if self.moe_bulk_store and self.mainloop != "sm90":
            raise ValueError("moe_bulk_store is an option of the wgmma MoE GEMM (mainloop='sm90')")
        if self.staged_store:
            if self.mainloop != "sm90":
                raise ValueError("staged_store is an option of the wgmma kernel (mainloop='sm90')")
        if self.cluster_n not in (1, 2, 4) or isinstance(self.cluster_n, bool):
            raise ValueError(f"cluster_n must be 1, 2 or 4, got {self.cluster_n!r}")
        if self.mainloop == "sm90":
            self._validate_sm90(arch)
        elif self.cluster_n != 1 or self.moe_cp_async_rows:
            raise ValueError("cluster_n (activation tiles multicast across a cluster) and moe_cp_async_rows are "
                             "options of the wgmma mainloop (mainloop='sm90')")
        elif self.warp_specialized:
            raise ValueError("warp_specialized is an option of the wgmma mainloop (mainloop='sm90')")
        if self.cluster_split_k:
            if arch.sm < 90:
                raise ValueError(f"cluster_split_k needs sm_90 and newer (thread block clusters); got {arch.name}")
            if self.warp_specialized:
                raise ValueError("cluster_split_k takes the wgmma kernel without the producer warpgroup "
                                 "(warp_specialized=False)")
            if not 2 <= self.split_k <= 8:
                raise ValueError(f"cluster_split_k needs split_k in 2..8 (one cluster of split_k CTAs), got "
                                 f"{self.split_k}")
        if not isinstance(self.split_k, int) or not 1 <= self.split_k <= 64:
            raise ValueError(f"split_k must be an int in 1..64, got {self.split_k!r}")
        if self.stages < 2:
            raise ValueError(f"stages must be >= 2, got {self.stages}")
        need = smem_bytes(self)
        if need > arch.smem_per_block_bytes:
            raise ValueError(f"config needs {need} bytes of shared memory ({self.stages} stages); {arch.name} "
                             f"allows {arch.smem_per_block_bytes}: use fewer stages or smaller tiles")
        return self


    @property
    def act_bits(self) -> int:
        """Bits per activation element in the kernel: 16, 8 for fp8 / int8 activations, 4 for int4 and for e2m1
        with e2m1 weights; e2m1 with other weights travels one code per byte (the kind::f8f6f4 MMA's container)."""
        return act_bits(self.a_dtype, self.b_dtype)

    @property
    def act_mma_k(self) -> int:
        """K of one MMA of the activation type: 16 (fp16/bf16 m16n8k16), 32 (8-bit m16n8k32), 64 (4-bit m16n8k64)."""
        return act_mma_k(self.a_dtype, self.b_dtype)

    def _validate_act8(self, a) -> None:
        """Quantized activations: fp8 e4m3/e5m2 (from sm_89), int8 (sm_80) with m16n8k32 MMAs, int4 (sm_80; s4
        m16n8k64, mma.sync only). The weight becomes 8/4-bit lanes (`layouts.dequant_plan.make_lane_plan`),
        per-token activation scales and channel weight scales apply in the fp32 epilogue, group scales by
        two-level accumulation."""
        arch = get_arch(self.arch)
        if arch.sm < (89 if a.name.startswith("float8") else 80):
            raise NotImplementedError(f"{a.name} activations need sm_89 or newer (fp8 mma.sync); {arch.name} has none")
        if a.name == "float4e2m1":
            if arch.sm not in (120, 121):
                raise NotImplementedError(f"float4e2m1 activations use the block-scaled e2m1 mma.sync of sm_120a / "
                                          f"sm_121a; {arch.name} has none")
        if a.name in UNVERIFIED_ACT_TYPES and not ALLOW_UNVERIFIED:
            raise NotImplementedError(f"{a.name} activations in the GEMM are built but not yet verified on a GPU; "
                                      f"they are not enabled")
        if self.mainloop == "sm90" and a.name in ACT4_TYPES:
            raise NotImplementedError(f"{a.name} activations run on the mma.sync mainloop (mainloop='sm80')")
        if self.mainloop == "sm90" and (self.act_group_size or 0 < self.group_size < self.block_k):
            raise NotImplementedError("the wgmma mainloop takes 8-bit activations with per-token scales and channel "
                                      "weight scales or weight groups of at least block_k; activation groups and "
                                      "smaller weight groups run on the mma.sync mainloop (mainloop='sm80')")
        promote = a.name != "int8" and not self.fp8_fast_accum
        if self.mainloop == "sm90" and (self.group_size or promote) and self.block_m > 128:
            raise ValueError(f"fp8 activations and weight groups on the wgmma mainloop keep a second (per k-tile) "
                             f"accumulator: block_m must be <= 128, got {self.block_m}")
        mk = self.act_mma_k
        if self.group_size and self.group_size < mk:
            raise ValueError(f"{a.name} activations take weight scale groups of at least {mk} (the MMA's K), got "
                             f"{self.group_size}")
        if self.has_zero_point and not self.group_size:
            raise ValueError("zero points need a group size")
        ag = self.act_group_size
        if ag and (not _pow2(ag) or ag < mk):
            raise ValueError(f"act_group_size must be 0 (per token) or a power of two >= {mk}, got {ag}")
        if self.moe and self.act_group_size:
            raise NotImplementedError(f"the MoE GEMM takes {a.name} activations with per-token scales "
                                      f"(act_group_size=0)")
        if self.warp_k % mk or self.block_k % 64:
            raise ValueError(f"{a.name} activations need warp_k and block_k multiples of the MMA's K ({mk}) and "
                             f"atom (64)")

    def _validate_sm90(self, arch) -> None:
        """The wgmma mainloop: the weight is wgmma's A (64 rows per warpgroup, dequantized in registers), the
        activations its B (N = block_m tokens, from swizzled shared memory)."""
        if arch.sm != 90:
            raise NotImplementedError(f"the wgmma mainloop needs sm_90a (Hopper); {arch.name} has no wgmma: use "
                                      f"mainloop='sm80'")
        if not 16 <= self.block_m <= 256:
            raise ValueError(f"the wgmma mainloop takes block_m in 16..256 (wgmma's N), got {self.block_m}")
        if (self.warp_m != self.block_m or self.warp_n not in (ATOM_N, 2 * ATOM_N)
                or self.warp_k not in (self.block_k, self.block_k // 2)):
            raise ValueError(f"the wgmma mainloop's warpgroup tile is (block_m, 64 or 128, block_k or block_k / 2) "
                             f"= ({self.block_m}, 64 | 128, {self.block_k} | {self.block_k // 2}); got warp shape "
                             f"({self.warp_m}, {self.warp_n}, {self.warp_k})")
        if self.warp_k < self.block_k:
            # two consumer warpgroups per weight row range, each multiplying one half of every k-tile; their fp32
            # partial sums are added in shared memory before each tile's epilogue (dense or MoE, one tile per CTA or
            # a persistent grid)
            if (self.act_bits != 16 or self.a_split != 1 or self.stream_k or self.glu
                    or (self.split_k > 1 and not self.cluster_split_k)):
                raise ValueError("warp_k < block_k on the wgmma mainloop (K split across consumer warpgroups) takes "
                                 "16-bit activations, a_split=1, no GLU, no stream-K, and split-K only inside a "
                                 "cluster (cluster_split_k)")
        if self.block_n // self.warp_n not in (1, 2, 4) or self.consumer_warpgroups > 4:
            raise ValueError(f"the wgmma mainloop takes 1, 2 or 4 consumer warpgroups (block_n / warp_n x block_k / "
                             f"warp_k); got block_n={self.block_n}, warp_n={self.warp_n}, block_k={self.block_k}, "
                             f"warp_k={self.warp_k}")
        if self.warp_n > ATOM_N:
            # two 64-row weight atoms per warpgroup (two accumulators sharing each activation fragment)
            two_level = self.act_bits == 8 and (self.group_size > 0 or (self.a_dtype != "int8"
                                                                        and not self.fp8_fast_accum))
            if self.split_k != 1 or self.stream_k or two_level:
                raise ValueError("warp_n=128 on the wgmma mainloop takes split_k=1, no stream_k and one accumulator "
                                 "per atom (16-bit activations, or 8-bit ones with channel scales and fp8_fast_accum)")
            # a consumer thread keeps block_m fp32 accumulators (two atoms) and two k-tiles of A fragments for each
            # atom (warp_k registers for 16-bit activations, warp_k / 2 for 8-bit lanes); leave 32 for the rest
            n_cons = self.consumer_warpgroups
            if self.warp_specialized:
                budget = wgmma_register_split(n_cons, self.moe_cp_async_rows)[1]
            else:
                budget = min(255, 65536 // (128 * n_cons)) // 8 * 8
            need = self.block_m + (self.warp_k // self.a_split if self.act_bits == 16 else self.warp_k // 2)
            if need > budget - 32:
                raise ValueError(f"warp_n=128 keeps block_m accumulator and {need - self.block_m} A-fragment "
                                 f"registers per thread ({need}); {n_cons} consumer warpgroup(s) leave {budget} "
                                 f"registers, so at most {budget - 32}: use a smaller block_m / block_k, fewer "
                                 f"consumer warpgroups or warp_n=64")
        if self.block_k not in (64, 128):
            raise ValueError(f"the wgmma mainloop takes block_k 64 or 128, got {self.block_k}")
        if self.a_split != 1:
            if self.act_bits != 16 or self.a_split not in (2, 4) or (self.block_k // 16) % self.a_split:
                raise ValueError(f"a_split takes 16-bit activations and 2 or 4 pieces of the k-tile's "
                                 f"{self.block_k // 16} k16 steps, got a_split={self.a_split!r}, {self.a_dtype} "
                                 f"activations")
        if self.glu:
            if not self.staged_store:
                raise NotImplementedError("GLU epilogues on the wgmma mainloop combine gate / up pairs in the staged "
                                          "store (staged_store=True); or run on the mma.sync mainloop "
                                          "(mainloop='sm80')")
        if self.moe and self.a_dtype not in ("float16", "bfloat16"):
            # 8-bit activations: the per-row activation scales come in the workspace slot as on the mma.sync path;
            # weight groups (two-level accumulation) read the expert's own fp32 scale rows
            if self.moe_cp_async_rows:
                raise NotImplementedError(f"the wgmma MoE GEMM takes {self.a_dtype} activations with TMA-loaded "
                                          f"rows (moe_cp_async_rows copies 16-bit rows)")
        if self.persistent_ctas:
            two_level = self.act_bits == 8 and (self.group_size > 0 or (self.a_dtype != "int8"
                                                                        and not self.fp8_fast_accum))
            if not self.warp_specialized or self.split_k != 1 or two_level:
                raise ValueError("persistent_ctas takes the producer warpgroup (warp_specialized=True), split_k=1 "
                                 "and one accumulator (16-bit activations, or 8-bit ones with channel scales and "
                                 "fp8_fast_accum)")
        if self.moe_bulk_store and (not self.moe or not self.staged_store or self.glu or not self.persistent_ctas
                                    or self.pingpong or self.stream_k):
            raise ValueError("moe_bulk_store takes the wgmma MoE GEMM with the staged store on the persistent grid "
                             "(moe=True, staged_store=True, persistent_ctas > 0), without a GLU, pingpong or "
                             "stream_k")
        if self.pingpong:
            if (not self.persistent_ctas or self.stream_k or self.warp_k < self.block_k or self.cluster_n != 1
                    or self.act_bits != 16):
                raise ValueError("pingpong takes the wgmma mainloop's persistent grid (persistent_ctas > 0, "
                                 "warp_specialized=True) with 16-bit activations, without stream_k, K slices "
                                 "(warp_k < block_k) or clusters (cluster_n=1)")
        if self.stream_k:
            if (not self.persistent_ctas or self.moe or self.cluster_n != 1 or self.cluster_split_k
                    or self.act_bits != 16):
                raise ValueError("stream_k takes the dense wgmma GEMM with the persistent grid (persistent_ctas > 0, "
                                 "warp_specialized=True, split_k=1), cluster_n=1 and 16-bit activations")
        if self.moe_cp_async_rows:
            if not self.moe or not self.warp_specialized or self.cluster_n != 1:
                raise ValueError("moe_cp_async_rows takes the wgmma MoE GEMM with the producer warpgroup "
                                 "(moe=True, warp_specialized=True) and cluster_n=1 (rows by cp.async are not "
                                 "multicast)")
        if self.cluster_n > 1:
            if self.split_k != 1 and not self.cluster_split_k:
                raise ValueError(f"cluster_n > 1 splits K only inside the cluster (cluster_split_k=True: a cluster "
                                 f"(cluster_n, 1, split_k)), got split_k={self.split_k} through the workspace")
            if self.cluster_n * self.split_k > 8:
                raise ValueError(f"a cluster of cluster_n x split_k = {self.cluster_n * self.split_k} CTAs; at most 8")
            if self.persistent_ctas % self.cluster_n:
                raise ValueError(f"persistent_ctas ({self.persistent_ctas}) must be a multiple of cluster_n "
                                 f"({self.cluster_n}): whole clusters walk the tiles")
        if self.warp_specialized and self.consumer_warpgroups > 2:
            # three or four consumer warpgroups beside the producer share the register file (`wgmma_register_split`:
            # 152 / 104 registers each): a thread's accumulators (block_m / 2 per atom) and its two k-tiles of A
            # fragments (warp_k / 4 per atom and k-tile, over a_split pieces) must leave 32 for the rest
            n_cons = self.consumer_warpgroups
            atoms = self.warp_n // ATOM_N
            budget = wgmma_register_split(n_cons, self.moe_cp_async_rows)[1]
            a_regs = (self.warp_k // 2 if self.act_bits == 16 else self.warp_k // 4) // self.a_split
            need = atoms * (self.block_m // 2 + a_regs)
            if need > budget - 32:
                raise ValueError(f"warp_specialized with {n_cons} consumer warpgroups leaves {budget} registers per "
                                 f"consumer thread; this tile keeps {need} in accumulators and A fragments (at most "
                                 f"{budget - 32}): use fewer consumer warpgroups, a smaller block_m or a_split")


def check_weight_tiles(cfg: GemmConfig, n_pad: int, k_pad: int) -> None:
    """Raise ValueError unless the config's tiles divide the (padded) weight: block_n | N, block_k | K, and N's
    weight tiles fill whole clusters (cluster_n)."""
    if n_pad % cfg.block_n or k_pad % cfg.block_k:
        raise ValueError(f"block_n={cfg.block_n} must divide the padded N={n_pad} and block_k={cfg.block_k} the "
                         f"padded K={k_pad}")
    if (n_pad // cfg.block_n) % cfg.cluster_n:
        raise ValueError(f"cluster_n={cfg.cluster_n} must divide the {n_pad // cfg.block_n} weight tiles of N={n_pad} "
                         f"(block_n={cfg.block_n})")


def wgmma_register_split(n_consumer_wgs: int, cp_async_rows: bool = False) -> tuple[int, int]:
    """Registers per thread after the wgmma kernel's `setmaxnreg` (producer warpgroup, consumer warpgroups).
    The consumers' increase draws on the CTA's register pool, which holds what the launch gave every thread (under
    one-CTA-per-SM launch bounds 65536 / threads in steps of 8, and ptxas gives 256-thread kernels 240): a split
    asking more than the pool holds leaves the last consumer warp waiting for registers that never come, so the
    kernel hangs. The producer keeps 40 registers, or 56 when its threads copy activation rows by cp.async (their
    row indices stay in registers)."""
    threads = 128 * (n_consumer_wgs + 1)
    pool = min(240, 65536 // threads // 8 * 8) * threads
    producer = 56 if cp_async_rows else 40
    return producer, min(240, (pool - 128 * producer) // (128 * n_consumer_wgs) // 8 * 8)


def smem_bytes(cfg: GemmConfig) -> int:
    """Shared memory of one CTA: A + packed B + group scales (+ zero points), per stage."""
    a = (8 if cfg.a_rows8 else cfg.block_m) * cfg.block_k * cfg.act_bits // 8
    if cfg.warp_pipeline and cfg.mainloop == "sm80":
        a *= cfg.warps_n             # one copy of the activation slice per warp column
    b = cfg.block_n * cfg.block_k * cfg.bits // 8
    # the mma.sync kernel keeps a scale ring of >= 1 row per stage (channelwise too) and a zero-point ring only
    # for formats with zero points
    s = max(cfg.scale_rows, 1) * cfg.block_n * 2 * (2 if cfg.has_zero_point else 1)
    if cfg.mainloop == "sm90":
        # the wgmma kernel allocates its scale and zero-point rings (fp16 pairs, >= 1 row) whatever it uses
        s = 2 * max(cfg.scale_rows, 1) * cfg.block_n * 2
        part = cfg.block_m * cfg.block_n * 4 + 16 if cfg.cluster_split_k else 0   # split-K partial (cluster)
        n_wg = cfg.epilogue_warpgroups       # staging tiles and row tables: one per storing warpgroup
        if cfg.staged_store and not cfg.staging_in_ring:    # C staging tiles beside the stages
            part += cfg.staging_bytes + 16
        if cfg.moe:
            part += cfg.block_m * 12 * n_wg + 32     # the epilogue's routed-row tables
        if cfg.moe_prefetch_rows:   # per storing thread: next expert, next rows, global scale
            part += 128 * 4 * (2 + (cfg.block_m + 127) // 128) * n_wg + 32
        if cfg.stream_k:
            part += 16                                                  # the shared tile's ticket
        if cfg.pingpong:
            part += 16                                   # the two sets' turn barriers
        if cfg.warp_k < cfg.block_k:      # the fp32 partial sums of the second half of each k-tile's warpgroups
            part += (cfg.block_k // cfg.warp_k - 1) * cfg.block_m * cfg.block_n * 4 + 16
        return cfg.stages * (a + b + s) + 1024 + 16 * cfg.stages + 128 + part   # + alignment, mbarriers, flag
    live_rows = 8 if cfg.a_rows8 else cfg.block_m       # a_rows8: only rows 0-7 get reduction scratch
    reduce = (cfg.warps_k - 1) * live_rows * cfg.block_n * 4   # fp32 partial sums of the K-split warps
    if cfg.cluster_split_k:
        reduce += cfg.block_m * cfg.block_n * 4 + 16             # this CTA's split-K partial, read by rank 0
    return cfg.stages * (a + b + s) + reduce
