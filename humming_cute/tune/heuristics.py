"""Default kernel configs per M range (mma.sync path). Shapes are chosen so every variant validates:
block_n divides the padded N, block_k divides the padded K."""

from __future__ import annotations

import functools
import math
from typing import Optional

from ..arch import get_arch
from ..config import ACT8_TYPES, GemmConfig, smem_bytes
from ..dtypes import parse_dtype


def _largest_dividing(options, n: int) -> int:
    for o in options:
        if n % o == 0:
            return o
    return options[-1]


# smallest M that takes the wgmma mainloop on sm_90a by default (below it the mma.sync decode configs win)
SM90_MIN_M = 64

#: GLU epilogues take the wgmma mainloop by default from M = SM90_MIN_M (through the staged store,
#: `with_glu_staging`). H200, silu GLU, fp16 x uint4 g128 (benchmarks/results/2026-11-30_h200_config_probe_glu.log):
#: 0.45-0.61x the time of the mma.sync GLU kernel at M = 256 / 4096 on 8192^2 and 28672 x 4096; MoE GLU blocks of
#: 64 / 128 rows 0.58-0.73x (2026-11-30_h200_moe_glu_probe.log)
WGMMA_GLU = True

#: the smallest MoE block that takes the wgmma mainloop by default (`moe_uses_wgmma`). 16 / 32-row wgmma blocks
#: work but lose to the 16-row mma.sync decode tiles at 16 / 64 tokens and to 64-row wgmma blocks at 512 tokens
#: (H200, benchmarks/results/2026-11-30_h200_moe_probe_wgmma_small.log; one exception: Mixtral-like up at 64
#: tokens, 32-row blocks with 256 x 128 tiles 0.94x), so smaller blocks stay on mma.sync
WGMMA_MOE_MIN_BLOCK = 64

#: dense wgmma GEMMs whose data-parallel grid leaves more than STREAM_K_MIN_GAIN of the SMs' time idle in its last
#: wave run as stream-K (`with_stream_k`). GPU-tested, but slower than the data-parallel and persistent tiles at
#: every point probed (H200, fp16 x uint4 g128 / int8 channel, 8192^2 and 28672 x 4096, M 256-4096: 1.08-1.25x the
#: default's time; benchmarks/results/2026-11-30_h200_config_probe_stream_k*.log), so off
STREAM_K = False
STREAM_K_MIN_GAIN = 0.02

#: decode GEMMs with fp16 activations and int4 / uint4 weights under two-level group scales take
#: `fold_offsets` (the codes under their magic exponents straight into the MMAs, offsets and zero points folded
#: into each group's fp32 partial sum), and those of M <= 8 `rows8` (the m16 tile's rows 8-15 neither scaled per
#: group nor reduced across K-split warps). Together: 465 -> 395 SASS instructions per warp and k-tile and 190 ->
#: 128 registers at 8192 x 8192, M = 1, GPU-tested, but no faster (H200, fp16 x uint4 g128,
#: benchmarks/results/2026-11-30_h200_decode_probe_fold.log, ..._decode_probe_16warps.log: 8192^2 M = 1 18.3 /
#: 18.7 us against 18.7 / 18.7 us for the same tiles without them; M = 16 and 28672 x 4096 1-7 % slower; 16-warp
#: tiles that the 128 registers allow 20.7-51.3 us): the decode kernel's time is not set by its instruction count.
#: So off
FOLD_OFFSETS = False
DECODE_ROWS8 = False

#: with `rows8`: `a_rows8` (8 activation rows per pipeline stage instead of 16; the m16 MMA's rows 8-15 read rows
#: 0-7 again) and one more pipeline stage where that then fits: more weight bytes in flight per SM at decode (the
#: 16-warp tiles with one stage in flight were slower, 2026-11-30_h200_decode_probe_16warps.log). GPU-tested; not
#: faster (2026-11-30_h200_decode_probe_a_rows8.log, H200: 8192^2 M = 1 1024-deep tiles on 4 stages 18.9 us against
#: 18.8 us on 3 stages without it; 28672 x 4096 and the cluster split-K shapes 1-4 % slower): the decode kernel is
#: not short of bytes in flight (with its weight resident in L2 it still takes 13.8 of its 16.2 us back to back,
#: 2026-11-30_h200_decode_probe_hot_w4.log). So off
DECODE_A_ROWS8 = False

#: sm_90 decode tiles (M <= 32) of 16-bit activations and weights of at most 5 bits with one warp column
#: (block_n = warp_n; the k-tile split across warps) take `warp_pipeline`: each warp copies and waits for its own
#: slices, no CTA barrier per k-tile. H200, fp16 x uint4 g128 (benchmarks/results/2026-11-30_h200_decode_probe_wpipe_w4.log):
#: 8192^2 M = 1 / 16 17.3 / 17.7 us against 18.4 / 19.5 us (0.94 / 0.91x); 4096^2, 28672 x 4096 and 4096 x 14336
#: 0.97-0.99x. fp16 x int8 channel (..._wpipe_w8.log): 0.99-1.02x, so 6-8 bit weights keep the CTA-wide copies.
#: M 17-32 (32-row tiles, ..._decode_probe_swap_w4.log at M = 32): 8192^2 0.93x, 4096^2 0.96x, 4096 x 14336 0.95x
#: (28672 x 4096's default there has warps across N and keeps its tile)
DECODE_WARP_PIPELINE = True

#: those tiles at M <= 8 also take `rows8` + `swap_ab` (the dequantized weights as the MMA's A operand, the 8 live
#: activation rows as B: half the MMAs and half the two-level partial sums). H200, fp16 x uint4 g128, with
#: warp_pipeline (benchmarks/results/2026-11-30_h200_decode_probe_swap_w4.log): 8192^2 M = 1 / 8 16.1 / 16.3 us
#: against 17.1 / 17.5 us (0.94 / 0.93x), 28672 x 4096 0.94x, 4096 x 14336 0.92x, 4096^2 0.96-0.97x; the outputs
#: were bitwise those of the unswapped tiles. fp16 x int8 channel (..._swap_w8.log): 0.98-1.01x, not taken. For
#: formats other than fp16 x uint4 ptxas cuts some swapped kernels to 64-96 registers and spills in the main loop
#: (int3 with 32 / 64-groups, float3e1m1 / uint5 channel at 8192^2; int4, float4e2m1 and bf16 x uint4 on some of the
#: four bench shapes), so they take launch bounds of one CTA per SM (`launch_min_blocks=1`: up to 255 registers; no
#: spills). H200, 8192^2 M = 1 (2026-11-30_h200_decode_probe_launch_bounds_*.log): fp16 x int4 g128 15.5 us against
#: 16.1 us swapped without the bounds and 16.7 us unswapped (0.93x), fp16 x e2m1 g32 21.1 against 21.2 / 22.8 us
#: (0.92x); fp16 x uint4 (no spills without them) 16.1 against 16.0 us, so it keeps its kernel
DECODE_SWAP_AB = True

#: sm_90 decode tiles (M <= 32) of 6-8 bit weights and 16-bit activations whose grid takes more than one wave of
#: CTAs at the stage count that fits take the fewest stages (down to 2) at which it is one wave (more CTAs per SM
#: by shared memory). H200, fp16 x int8 channel, 28672 x 4096
#: (benchmarks/results/2026-11-30_h200_decode_probe_wpipe_n_w8.log): 128 x 256 tiles over 224 CTAs, one per SM at
#: 4 stages (1.7 waves): M = 1 / 16 35.8 / 36.4 us on 2 stages against 40.0 / 41.6 us (0.89 / 0.87x; Humming
#: 36.7 / 37.4 us)
DECODE_ONE_WAVE_STAGES = True

#: sm_90: 16-row mma.sync MoE blocks of 16-bit activations over many experts (>= 32; a few routed rows each) launch
#: the weight-tile-major grid (`moe_n_major`: the CTAs in flight cover all weight tiles of a few experts rather than
#: one weight tile of many). H200, fp16 x uint4 g128, the default tiles
#: (benchmarks/results/2026-11-30_h200_moe_probe_n_major_small.log): Qwen3-30B-A3B-like (E = 128) up at 16 / 64
#: tokens 51.8 / 73.1 us against 54.8 / 74.0 (0.94 / 0.99x), down 33.8 / 45.4 us against 36.7 / 46.7 (0.92 /
#: 0.97x); Mixtral-like (E = 8) 0.99-1.02x, so experts < 32 keep the block-major grid. (The grid's y dimension then
#: holds the routed blocks: at most 65535, so M x top_k <= 65535.)
MOE_DECODE_N_MAJOR = True

#: sm_90a MoE layers whose experts see 12-16 routed rows on average (about a tenth to a half of them more than 16,
#: which 16-row blocks split into a second block that reads the expert's weight again) take 32-row blocks: up-like
#: projections (N >= K) on 32 x 256 x 128 wgmma tiles (four consumer warpgroups), the others on 32 x 256 x 128
#: mma.sync tiles (8 warps) on the weight-tile-major grid. H200, fp16 x uint4 g128, Mixtral-like at 64 tokens
#: (benchmarks/results/2026-11-30_h200_moe_probe_mixtral64.log): up 201.6 us against 223.4 in 16-row blocks (Humming
#: 206.0), down 118.6 against 122.7 (Humming 130.7). Bench at those defaults
#: (benchmarks/results/2026-11-30_h200_moe_w4a16_g128_block32.json): up 202.5 us (1.025x Humming), down 119.2 us
#: (0.90x), from 1.12 / 0.95x in 16-row blocks
MOE_DECODE_BLOCK_32 = True

#: ... and of those the down projections with N < K on 32 x 128 x 128 wgmma tiles with the producer warpgroup
#: copying the rows by cp.async, the persistent grid and K slices (two consumer warpgroups per weight row range, one
#: half of every k-tile each) instead of mma.sync tiles. H200, fp16 x uint4 g128, Mixtral-like down at 64 tokens
#: (benchmarks/results/2026-12-01_h200_moe_probe_mixtral64_persistent.log): 104.4 us against 119.5 (0.87x; Humming
#: 131.7); the same tile without K slices 106.1-107.0 us
MOE_BLOCK_32_DOWN_WGMMA = True

#: ... and of those the up-like projections (32 x 256 x 128 wgmma tiles, an expert's rows in one block, so its weight
#: read once) load the weights under the L2 evict-first policy (`evict_first`). H200, fp16 x uint4 g128, Mixtral-like
#: up at 64 tokens, 3 / 5 alternating rounds: 0.984 / 0.987x the time without it
#: (benchmarks/results/2026-12-01_h200_moe_probe_evict_first.log, ..._moe_probe_evict_mixtral64.log); on the other MoE
#: bench points' tiles 0.996-1.013x, Qwen3-30B-A3B-like down at 4096 tokens (two 128-row blocks per expert) 1.041x
MOE_BLOCK_32_EVICT_FIRST = True

#: ... and with weights of at most 4 bits (16-bit activations, no GLU) two 64-row weight atoms per consumer warpgroup
#: (two warpgroups, A fragments in 2 pieces of the 128-deep k-tile) beside the producer warpgroup, which copies the
#: activation rows by cp.async, on the persistent grid, instead of four one-atom warpgroups. H200, fp16 x uint4 g128,
#: Mixtral-like up at 64 tokens, with the evict-first loads, 3 / 5 alternating rounds: 0.976 / 0.951x the four-warpgroup
#: tile's time (benchmarks/results/2026-12-01_h200_moe_probe_mixtral64_atoms.log, ..._atoms_confirm.log; without the
#: evict-first loads 0.990x; A in 4 pieces 1.008x; without the producer 1.04-1.06x; 512-wide tiles 1.01-1.08x)
MOE_BLOCK_32_TWO_ATOMS = True

#: ... that tile on four consumer warpgroups of one atom each (warp_n = 64, still A in 2 pieces beside the producer
#: warpgroup, persistent), with the k-tile's scales broadcast once for both pieces (`GemmConfig.piece_scales`). H200,
#: fp16 x uint4 g128, Mixtral-like up at 64 tokens, 5 alternating rounds: 185.2 against 191.5 us (0.967x;
#: benchmarks/results/2026-12-01_h200_moe_probe_piece_scales_2.log), as for the 48-row deep-K tile
#: (`MOE_BLOCK_48_DEEP_K_FOUR_WG`)
MOE_BLOCK_32_FOUR_WG = True

#: sm_90 dense mma.sync GEMMs of 16-bit activations (the tiles of M < 64) take programmatic dependent
#: launch (`pdl`) with the first stage's weights copied before the wait (`pdl_prefetch=1`): a GEMM launched right
#: after another starts its weight copies while that one finishes. H200, the default decode tiles, pdl off / on in
#: alternating rounds (benchmarks/results/2026-11-30_h200_decode_probe_pdl_ab_w4.log, ..._w8.log): back to back
#: 0.81-0.95x the time without it for fp16 x uint4 g128 (8192^2 M = 1: 11.3 against 12.8 us, 72 % of the memory
#: floor), 0.92-0.98x for fp16 x int8 channel; flushed single calls 0.98-1.02x; with a torch kernel (no pdl of its
#: own) between the GEMMs 1.00-1.03x. Copying all the prologue's weight stages before the wait (pdl_prefetch=0)
#: made the first k-tile wait for all of them: flushed up to 1.07x. Weights, scales and bias are read before the
#: previous grid is waited for: a kernel launched just before with programmatic dependents must not write them
#: (torch kernels and the wgmma GEMMs do not trigger early; each of our pdl GEMMs writes only its output and
#: split-K workspace, after its wait). Set to False to launch without it
DECODE_PDL = True

#: sm_90 dense mma.sync decode tiles (M <= 16: one block row, so every weight byte is read once) of 6-8 bit weights
#: and 16-bit activations load their weights under an L2 evict-first policy (`evict_first`). H200, fp16 x int8
#: channel, off / on in 5 alternating rounds at every decode point of the bench
#: (benchmarks/results/2026-12-01_h200_evict_probe_w8_decode.log): back to back (rotating weight copies) 0.888 / 0.890x
#: the time without it at 4096^2 M = 1 / 16, 0.92-0.99x at the other three shapes; flushed single calls 0.995-1.005x;
#: and a 16 MB buffer read before the GEMM is still in the L2 after it (its second read 10.4-11.5 us against
#: 12.4-12.5 us without the policy, 10.6 us in L2, 12.4 us evicted). fp16 x uint4 g128
#: (..._evict_probe_w4_decode.log): flushed 1.005-1.012x, back to back 0.986-0.995x, so 4-bit decode tiles keep the
#: default policy; the wgmma tiles at M = 64 were 1.01-1.04x slower with it (..._evict_probe_w4.log, ..._w8.log)
DECODE_EVICT_FIRST_W8 = True

#: MoE block sizes that only the wgmma mainloop takes (wgmma N = block_m, any multiple of 16; mma.sync tiles are
#: powers of two)
WGMMA_ONLY_MOE_BLOCKS = (48, 96, 144, 160)

#: `moe_block_size`: layers that the 144-row two-atom tile serves (`moe_block144_tile`: weights of at most 4 bits,
#: 16-bit activations, no GLU, N a multiple of 256) whose experts see more than 136 routed rows on average take
#: 144-row wgmma blocks where those pad the routing to at least 3 % fewer rows than 128-row blocks
#: (`moe_expected_padded_rows`: an expert of ~256 rows fills 2 blocks of 144 and 2 or 3 of 128). The tile: 144 x 256
#: x 64, two atoms per consumer warpgroup with the A fragments in 2 pieces (without them the two accumulators do not
#: fit the registers), the producer warpgroup copying the rows, persistent, the staged store (rows by bulk copies at
#: K <= 1024), as the 128-row tile. H200, fp16 x uint4 g128, Qwen3-30B-A3B-like at 4096 tokens (291 expected rows per
#: expert in 144-row blocks against 319), 5 rounds (benchmarks/results/2026-12-01_h200_moe_probe_qwen4096_bm144.log):
#: down 262.9 against 283.2 us (0.928x), up 430.1 against 459.2 us (0.937x); 144 x 128 one-atom tiles 1.14-1.23x the
#: two-atom one. Mixtral-like at 4096 tokens (~1024 rows per expert) pads to more rows in 144-row blocks and keeps 128
MOE_BLOCK_144 = True

#: `moe_block_size` picks 48-row wgmma blocks for 17-36 routed rows per expert and 160-row ones for 112-136: an
#: expert's rows (about Poisson around the mean) then rarely spill into a second, mostly padding block, which a
#: power-of-two block just above the mean does half the time (the 32-row blocks that split ~32-row experts lost,
#: 2026-11-30_h200_moe_probe_wgmma_small.log); a weight-heavy expert (Mixtral-like, 59 MB per up projection) is
#: then also read once instead of two or three times. H200, fp16 x uint4 g128, uniform routing
#: (benchmarks/results/2026-11-30_h200_moe_probe_bm48_qwen.log, ..._bm160_mixtral.log): Qwen3-30B-A3B-like at
#: 384 / 512 tokens 0.93-0.97x the 64-row blocks' time (up and down), Mixtral-like at 128 tokens 0.95-0.97x; 160-row
#: blocks with the producer warpgroup at 512 tokens 0.69x (up) / 0.70x (down)
WGMMA_MOE_ODD_BLOCKS = True

#: Two 64-row weight atoms per wgmma consumer warpgroup (warp_n = 128: two accumulators share each activation
#: fragment, so a CTA's weight tile doubles for the same activation reads), with the producer warpgroup. H200, fp16 x
#: uint4 g128: dense 8192^2 at M = 4096 in 128 x 256 x 64 tiles on a persistent grid 0.87 / 0.89x the default's
#: time in two probes (benchmarks/results/2026-11-30_h200_config_probe_two_atoms_w4.log, ..._w4_m.log; M = 1024 /
#: 8192 0.99x, 28672 x 4096 0.99-1.07x: not taken there); MoE 48-row blocks with 256-wide weight tiles, 64-deep
#: k-tiles (Qwen3-30B-A3B-like, 512 tokens, 2026-11-30_h200_moe_probe_two_atoms_qwen512.log): up 0.96x, down 0.87x the
#: 128 x 128-deep default
WGMMA_TWO_ATOMS = True

#: the 48-row MoE two-atom tile of weights of at most 4 bits over a K of at least 2048: 128-deep k-tiles, the
#: dequantized A fragments in 2 pieces per k-tile (`a_split`, so they fit the registers beside the two accumulators),
#: 7 stages. H200, fp16 x uint4 g128,
#: Qwen3-30B-A3B-like up projection (K = 2048) at 512 tokens, 3 / 5 alternating rounds: 0.972x / 0.970x the 64-deep
#: default's time (benchmarks/results/2026-12-01_h200_moe_probe_qwen_bk128.log, ..._qwen512_confirm.log); the down
#: projection (K = 768, 6 k-tiles) 1.023-1.034x, so not below K = 2048
MOE_BLOCK_48_DEEP_K = True

#: ... and that tile stores through the staged store (`staged_store`: each routed row's columns leave the
#: warpgroup's staging tile as 16-byte vectors). H200, fp16 x uint4 g128, Qwen3-30B-A3B-like up at 512 tokens, four
#: probes of 3-5 alternating rounds: 0.985 / 0.991 / 0.987 / 0.988x the direct row store's time
#: (benchmarks/results/2026-12-01_h200_moe_probe_staged_two_atoms.log, ..._2.log, ..._moe_probe_qwen_nm_staged.log,
#: ..._moe_probe_qwen512_options.log; there the weight-tile-major raster 0.986 / 0.991x and evict-first loads 0.991 /
#: 0.997x, both with the staged store 0.990-1.021x)
MOE_BLOCK_48_DEEP_K_STAGED = True

#: ... on four consumer warpgroups of one atom each (warp_n = 64) instead of two of two atoms: twice the warps to
#: hide the dequant's latency (Nsight Compute of the two-warpgroup tile, Qwen3-30B-A3B-like up at 512 tokens: 2.92
#: warps per scheduler, 44 % of issue slots busy, tensor pipe 39 %; benchmarks/results/2026-12-01_h200_moe_ncu_qwen_up512.txt),
#: with the k-tile's scales broadcast once for both pieces (`GemmConfig.piece_scales`). H200, fp16 x uint4 g128,
#: Qwen3-30B-A3B-like up at 512 tokens, 5 alternating rounds: 100.7 against 104.8 us (0.962x; without
#: `piece_scales` 0.992x, ..._moe_probe_piece_scales.log), 0.984 / 0.993x in two probes before `piece_scales`
#: (..._moe_probe_qwen512_4wg.log, ..._4wg_up.log)
MOE_BLOCK_48_DEEP_K_FOUR_WG = True

#: the 48-row MoE tile of weights of at most 4 bits over a K below 2048 (where it stays 64 deep): 512-wide weight
#: tiles, four consumer warpgroups of two atoms each beside the producer warpgroup (20 warps), the A fragments in 4
#: pieces. H200, fp16 x uint4 g128, Qwen3-30B-A3B-like down projection (K = 768) at 512 tokens, 3 / 5 alternating
#: rounds: 0.946x / 0.946x the 256-wide tile's time (benchmarks/results/2026-12-01_h200_moe_probe_w512_qwen512.log,
#: ..._2.log); the up projection (K = 2048) in 64-deep 512-wide tiles 1.017x its 128-deep default
MOE_BLOCK_48_WIDE_SHORT_K = True

#: the 128-row MoE two-atom tile (persistent, rows by cp.async) with the staged store: each routed row's columns leave
#: as 16-byte vectors from the warpgroup's staging tile (7 stages instead of 8). H200, fp16 x uint4 g128, 3
#: alternating rounds (benchmarks/results/2026-12-01_h200_moe_probe_staged_two_atoms.log, ..._2.log):
#: Qwen3-30B-A3B-like at 4096 tokens up 0.945x / 0.981x, down 0.971x (after the staged write loop's one table read per
#: row), Mixtral-like down at 4096 tokens 0.944x the direct row store's time; the 48-row tile (512 tokens) down 1.043x,
#: so not there
MOE_STAGED_BLOCK_128 = True

#: with it, at K <= 1024 (few k-tiles per output tile, so the store weighs): `moe_bulk_store`, each routed row of the
#: staged tile leaving shared memory as one cp.async.bulk copy that the next tile's k-tiles overlap (6 stages). H200,
#: fp16 x uint4 g128, Qwen3-30B-A3B-like down at 4096 tokens (K = 768), 5 alternating rounds: 0.968x the vector
#: copies' time (benchmarks/results/2026-12-01_h200_moe_probe_bulk_confirm.log); at K = 2048 (up) 1.014x and Mixtral-like
#: down (K = 14336) 1.021x (2026-12-01_h200_moe_probe_bulk_store.log), so not there
MOE_BULK_STORE_SHORT_K = True

#: 16-row mma.sync MoE blocks (decode) with group scales and 16-bit activations: each scale group's MMAs accumulate
#: unscaled in fp32 and the group's column scales are applied once per group (`two_level_scales`, as the dense
#: decode tiles do) instead of one packed multiply per weight pair in the dequant, where K >= this. H200, fp16 x
#: uint4 g128, 3 alternating rounds (benchmarks/results/2026-12-01_h200_moe_probe_two_level.log): Mixtral-like up at
#: 1 / 16 tokens 0.982 / 0.950x, down at 1 token 0.930x, Qwen3-30B-A3B-like up (K = 2048) at 1 / 16 tokens 0.935 /
#: 0.973x the time without; Qwen3-30B-A3B-like down (K = 768) at 64 tokens 1.022x, so not at short K. In 5 rounds
#: (2026-12-01_h200_moe_probe_two_level_off.log) one-level took 1.055 / 1.080 / 1.026x the two-level time on
#: Mixtral-like up at 16 tokens, down at 1 token and Qwen3-30B-A3B-like up at 64 tokens, but 0.983x on Mixtral-like
#: down at 16 tokens (8 warps, 128 x 256 tiles, 256 CTAs; 122 / 128 registers per thread without / with, two CTAs per
#: SM either way, so not occupancy; the cause is not known). So 8-warp tiles keep one-level scales unless the
#: expected grid is at most one CTA per SM (Mixtral-like down at 1 token: 128 CTAs of 8 warps, 0.93x with them)
MOE_DECODE_TWO_LEVEL_MIN_K = 2048

#: 16-row mma.sync MoE blocks over a K of fewer than 8 k-tiles (Qwen3-30B-A3B-like down, K = 768: 6 of 128) keep the
#: k-tile on one warp per weight column (warp_k = block_k: 2-warp CTAs of 128-wide tiles) instead of splitting it over
#: two K-warps and adding their sums in shared memory, where the weight tile is at least 128 wide. H200, fp16 x uint4
#: g128, Qwen3-30B-A3B-like down, 7 alternating rounds: at 64 tokens 43.1 against 45.2 us (0.953x;
#: benchmarks/results/2026-12-01_h200_moe_probe_qwen_down64_tiles.log; there 64-deep k-tiles 0.989x, evict-first
#: 0.996x, 256-wide tiles 1.029x, 2 / 4 stages 1.019 / 1.070x), 43.4 against 45.5 us at 64 and 33.0 against 34.0 us
#: at 16 tokens (..._moe_probe_short_k_kwarp.log); at one token (64-wide tiles) one-warp CTAs took 12.1 against
#: 10.3 us, so 64-wide tiles keep two K-warps
MOE_DECODE_SHORT_K_ONE_KWARP = True

#: dense wgmma GEMMs of 16-bit activations from M = 256 (unsplit, no GLU: those stage already) with the staged C store
#: (accumulators through shared memory, 16-byte row vectors to global). A CTA of one output tile keeps the staging
#: tiles in its activation ring (`GemmConfig.staging_in_ring`: no stage and no CTA per SM lost); a persistent grid
#: cuts its pipeline to fit them beside it. H200, default configs against the same configs with the direct store, 3
#: alternating rounds, M = 256-8192 on 8192^2, 4096^2, 28672 x 4096, 4096 x 14336: fp16 x uint4 g128 0.93-0.998x the
#: time at 15 of 16 points (1.03x at 4096 x 14336 M = 1024), fp16 x int8 channelwise 0.92-0.99x at all 16
#: (benchmarks/results/2026-11-30_h200_store_probe_w4.log, ..._w8.log); `autotune` times the direct store as a candidate
DENSE_WGMMA_STAGED = True

#: the M <= 64 wgmma tile of 4-bit weights (64 x 64 x 128, K split in two inside a cluster) with two consumer
#: warpgroups, each multiplying one half of every k-tile (warp_k = 64; their sums added in shared memory): one
#: warpgroup per SM left each SM's dequant and wgmma issue to 4 warps (Nsight Compute at 4096 x 14336 M = 64: 0.26
#: instructions per cycle and scheduler, 74 % of cycles without an eligible warp,
#: benchmarks/results/2026-11-30_h200_peer_ncu_m64.txt). H200, fp16 x uint4 g128, 3 alternating rounds
#: (benchmarks/results/2026-11-30_h200_kslice_probe_w4.log): 4096 x 14336 M = 64 28.4 against 30.0 us (0.95x),
#: 4096 x 4096 0.98x. The same for the 128 x 64 x 128 producer-warpgroup tile at M = 129..256
#: (2026-11-30_h200_kslice_probe_w4_refit.log): M = 256 4096 x 14336 49.9 against 51.7 us (0.965x), 4096^2 0.975x;
#: not for 8-bit weights (..._kslice_probe_w8_refit.log: 1.07-1.09x there, 1.00-1.06x at M = 64)
WGMMA_K_SLICES = True

#: dense 256-row wgmma tiles (16-bit activations, unsplit) over at least 6 tiles per SM of a K of at most 8192: the
#: producer warpgroup on the persistent grid (one CTA per SM), which loads each next tile's first k-tiles while the
#: consumers store the last, instead of one CTA per tile. H200, the default against it, 5 alternating rounds
#: (benchmarks/results/2026-12-01_h200_persistent_probe_w8.log, ..._w4.log): 28672 x 4096 M = 1024 / 4096 0.980 /
#: 0.968x (int8 channel), 0.982 / 0.972x (uint4 g128); 8192^2 M = 4096 int8 0.979x; 8192^2 M = 8192 / 4096^2 M = 8192
#: uint4 1.000 / 0.996x. Not taken with K = 14336 (4096 x 14336 M = 4096 / 8192: 1.001 / 1.012x) or fewer tiles
#: (8192^2 M = 1024 int8: 1.020x, 256 tiles)
WGMMA_PERSISTENT_SHORT_K = True

#: dense wgmma GEMMs above M = 256: 256-row tiles (one CTA per SM, the deepest pipeline that fits) already where their
#: grid gives at least this fraction of the SMs a tile, not only where it covers them all. A 256-row tile dequantizes
#: its weight tile once for twice the rows of a 128-row one. H200, 128 of 132 SMs (4 x 32 or 2 x 64 tiles), against
#: the 128 x 128 tiles taken before, 5 alternating rounds (benchmarks/results/2026-12-01_h200_pingpong_probe_tall_w4.log,
#: ..._w8.log): fp16 x uint4 g128 4096^2 / 4096 x 14336 at M = 1024 and 8192^2 at M = 512 0.873 / 0.855 / 0.839x,
#: int8 channel 0.942 / 0.921 / 0.910x
WGMMA_TALL_MIN_FILL = 0.95


def _deepest_stages(cfg: GemmConfig, arch: str, most: int = 8) -> GemmConfig:
    """`cfg` with the most pipeline stages (up to `most`) that fit the arch's shared memory."""
    limit = get_arch(arch).smem_per_block_bytes
    for st in range(most, 1, -1):
        if smem_bytes(cfg.with_(stages=st)) <= limit:
            return cfg.with_(stages=st)
    return cfg.with_(stages=2)


def _one_wave_stages(cfg: GemmConfig, ctas: int, arch: str, num_sms: int) -> GemmConfig:
    """`cfg` with the most stages (at least 2, at most its own) at which `ctas` CTAs fit one wave, counting CTAs per
    SM by shared memory (1 KB reserved per CTA); `cfg` itself when it already does or no stage count makes it."""
    per_sm = get_arch(arch).smem_per_sm_bytes
    for st in range(cfg.stages, 1, -1):
        c = cfg.with_(stages=st)
        if ctas <= num_sms * (per_sm // (smem_bytes(c) + 1024)):
            return c
    return cfg


def stream_k_gain(m: int, n_pad: int, cfg: GemmConfig, num_sms: int) -> float:
    """The fraction of the SMs' time a data-parallel grid of `cfg`'s tiles leaves idle in its last, part-filled
    wave (what stream-K can win back): ceil(waves) / waves - 1."""
    tiles = -(-m // cfg.block_m) * (n_pad // cfg.block_n)
    return -(-tiles // num_sms) * num_sms / tiles - 1.0


def with_stream_k(cfg: GemmConfig, m: int, n_pad: int, k_pad: int, num_sms: int) -> GemmConfig:
    """`cfg` as stream-K over a persistent grid of `num_sms` CTAs (producer warpgroup, 128-wide tiles) when
    `STREAM_K` is on, the tile is unsplit, 16-bit activations, and the data-parallel grid would leave more than
    `STREAM_K_MIN_GAIN` of the SMs' time idle in its last wave; else `cfg`."""
    if (not STREAM_K or cfg.mainloop != "sm90" or cfg.split_k != 1 or cfg.cluster_split_k
            or cfg.a_dtype not in ("float16", "bfloat16") or cfg.block_n > 128 or cfg.warp_n != 64
            or n_pad % cfg.block_n):
        return cfg
    tiles = -(-m // cfg.block_m) * (n_pad // cfg.block_n)
    if stream_k_gain(m, n_pad, cfg, num_sms) <= STREAM_K_MIN_GAIN or \
            (tiles * (k_pad // cfg.block_k) + 1) * num_sms >= 1 << 31:      # (the kernel's 32-bit unit arithmetic)
        return cfg
    out = cfg.with_(warp_specialized=True, persistent_ctas=num_sms, stream_k=True)
    while smem_bytes(out) > get_arch("sm_90a").smem_per_block_bytes and out.stages > 2:
        out = out.with_(stages=out.stages - 1)
    return out


def with_glu_staging(cfg: GemmConfig, keep_block_m: bool = False) -> GemmConfig:
    """A wgmma config with the staged store a GLU epilogue needs (raw fp32 accumulators in shared memory), its
    pipeline cut to fit: 256-row tiles (whose staging alone takes 139 KB) become 128 rows, or with `keep_block_m`
    (an MoE routing block) 256-wide weight tiles become 128 wide where fewer than 3 stages would fit."""
    if cfg.block_m > 128 and not keep_block_m:
        cfg = cfg.with_(block_m=128, warp_m=128)
    limit = get_arch("sm_90a").smem_per_block_bytes

    def fitted(c):
        sized = c.with_(staged_store=True, glu=True, activation="silu_glu")
        while smem_bytes(sized) > limit and sized.stages > 2:
            sized = sized.with_(stages=sized.stages - 1)
        return c.with_(staged_store=True, stages=sized.stages)
    out = fitted(cfg)
    if out.stages < 3 and cfg.block_n > 128:
        out = fitted(cfg.with_(block_n=128, stages=max(cfg.stages, 3)))
    return out


def with_dense_staging(cfg: GemmConfig, m: int) -> GemmConfig:
    """A dense wgmma config of 16-bit activations at M >= 256 (unsplit, no stream-K) with the staged C store, its
    pipeline cut to fit where the staging tiles cannot share the activation ring; other configs as they are
    (`DENSE_WGMMA_STAGED`)."""
    return cfg if m < 256 else with_staging_if_dense(cfg)


def with_staging_if_dense(cfg: GemmConfig) -> GemmConfig:
    """`with_dense_staging` without the M rule: for a tuned tiling applied at an M whose default stages."""
    if (cfg.mainloop != "sm90" or cfg.moe or cfg.glu or cfg.staged_store or cfg.split_k > 1
            or cfg.stream_k or cfg.a_dtype not in ("float16", "bfloat16")):
        return cfg
    out = cfg.with_(staged_store=True)
    while smem_bytes(out) > get_arch("sm_90a").smem_per_block_bytes and out.stages > 2:
        out = out.with_(stages=out.stages - 1)
    return out


def _sm90_mid_m_config(m: int, n_pad: int, k_pad: int, *, a_dtype: str, b_dtype: str, c_dtype: str,
                       group_size: int, has_bias: bool, num_sms: int) -> GemmConfig:
    """16-bit activations, 64 <= M <= 256 on the wgmma mainloop. Measured on H200
    (benchmarks/results/2026-11-29_h200_config_probe_m64_m256.log, fp16 x uint4 g128, four LLM shapes): k-tiles
    of 128 and the deepest pipeline that fits win everywhere (0.67-0.83x the time of the earlier 64-deep, 4-stage
    tiles); the widest weight tile that still gives ~3/4 of the SMs a CTA (fewer CTAs re-read the activations);
    split-K only while each split keeps >= 4096 of K (4096 x 4096 at M=64: 20.4 us unsplit, 24.2 us split 2)."""
    bm = 64 if m <= 64 else 128
    bk = 128 if k_pad % 128 == 0 and (group_size == 0 or group_size >= 128) else 64
    tiles_m = -(-m // bm)
    if m > 128 and -(-m // 256) * (n_pad // 128) >= num_sms:
        bm, bk, tiles_m = 256, 64, -(-m // 256)    # 28672 x 4096 at M=256: 256x128x64, 6 stages
    bn = 64
    for cand in ((256, 128) if bm == 64 else (128,)):
        if n_pad % cand == 0 and tiles_m * (n_pad // cand) * 4 >= 3 * num_sms:
            bn = cand
            break
    tiles = tiles_m * (n_pad // bn)
    split, cluster = 1, False
    if bm == 64 and tiles_m == 1 and (k_pad // bk) % 2 == 0 and k_pad >= 4096:
        # M <= 64 (benchmarks/results/2026-11-29_h200_config_probe_m64.log and ..._config_probe_ws_cluster.log):
        # split-K 2 inside a cluster with the narrowest weight tile whose two CTAs per tile fit one wave:
        # 8192^2 27.6 us (128-wide, against 33.2 unsplit), 4096^2 14.9 us (19.3), 4096 x 14336 31.4 us (39.6 with
        # the workspace split); where no 64/128-wide tile fits (28672 x 4096) the widest covering tile, unsplit
        for cand in (64, 128):
            if n_pad % cand == 0 and 3 * num_sms <= 8 * (n_pad // cand) and 2 * (n_pad // cand) <= num_sms:
                bn, tiles, split, cluster = cand, n_pad // cand, 2, True
                break
    while not cluster and tiles * split * 2 <= num_sms and k_pad // (split * 2) >= 4096 \
            and (k_pad // bk) % (split * 2) == 0:
        split *= 2
    # the producer warpgroup pays off unsplit (same logs: 64 x 64 x 128 at M=64 0.71-0.89x, 128 x 64 x 128 at
    # 4096 x 14336, M=256 0.94x; 64 x 128 x 128 at 28672 x 4096 0.86x), not with the workspace split
    ws = split == 1 and bn <= 128 and bm <= 128
    # `WGMMA_K_SLICES`: the 64 x 64 x 128 cluster-split tile of 4-bit weights (M <= 64) and its 128 x 64 x 128
    # producer-warpgroup tile at M = 129..256, with two warpgroups per weight row range, one half of every k-tile each
    four_bit = parse_dtype(b_dtype).bits == 4
    k_slices = WGMMA_K_SLICES and four_bit and (
        (cluster and (bm, bn, bk) == (64, 64, 128))
        or (m > 128 and ws and (bm, bn, bk) == (128, 64, 128)))
    wk = bk // 2 if k_slices else bk
    cfg = GemmConfig(a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype, group_size=group_size,
                     has_bias=has_bias, block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=wk,
                     stages=2, split_k=split, arch="sm_90a", mainloop="sm90", cluster_split_k=cluster,
                     warp_specialized=ws)
    return _deepest_stages(cfg, "sm_90a")


def sm90_config(m: int, n_pad: int, k_pad: int, *, a_dtype: str, b_dtype: str, c_dtype: str, group_size: int,
                has_bias: bool = False, num_sms: int = 132, fp8_fast_accum: bool = True) -> GemmConfig:
    """The wgmma mainloop's config for an (m, n_pad, k_pad) problem on sm_90a: the tokens are wgmma's N
    (block_m), two warpgroups take 64 weight rows each."""
    half = a_dtype in ("float16", "bfloat16")
    if m <= 256 and half:
        return _sm90_mid_m_config(m, n_pad, k_pad, a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype,
                                  group_size=group_size, has_bias=has_bias, num_sms=num_sms)
    # measured on H100 (benchmarks/results/2026-11-25_h100_sm90_config_probe.log), fp16 x uint4 g128 at
    # N=K=8192 and 28672x4096: 64x128x64 best at M=64; 256x128x64 wherever it still gives every SM a tile,
    # else 128x128x64
    if m <= 64:
        bm, bk, stages = 64, 64, 4
    elif m > 128 and -(-m // 256) * (n_pad // 128) >= num_sms:
        bm, bk, stages = 256, 64, 3
    elif m > 256 and half and -(-m // 256) * (n_pad // 128) >= WGMMA_TALL_MIN_FILL * num_sms:
        bm, bk, stages = 256, 64, 8      # (`WGMMA_TALL_MIN_FILL`: one wave of CTAs, the deepest ring, below)
    else:
        bm, bk, stages = 128, 64, 4
    if a_dtype in ACT8_TYPES and (group_size or (a_dtype != "int8" and not fp8_fast_accum)) and bm > 128:
        bm, stages = 128, 4   # a second (per k-tile) accumulator: 64 x 256 tiles would spill
    bn = 128 if n_pad % 128 == 0 else 64
    if a_dtype in ACT8_TYPES and k_pad % 128 == 0 and (group_size == 0 or group_size >= 128):
        bk = 128        # 8-bit activations: 128-byte rows (one full swizzle atom) per k-tile, within one group
    if k_pad % bk:
        bk = 64
    # small problems: narrower tiles, then split-K, until the grid covers the SMs (the H100 bench showed
    # 64x128 tiles at M=64, N=4096 leave three quarters of the SMs idle)
    tiles_m = -(-m // bm)
    if tiles_m * (n_pad // bn) * 2 <= num_sms and bn == 128:
        bn = 64
    split = 1
    tiles = tiles_m * (n_pad // bn)
    k_tiles = k_pad // bk
    while tiles * split * 2 <= num_sms and k_tiles // (split * 2) >= 2 * stages and split < 8:
        split *= 2
    cfg = GemmConfig(a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype, group_size=group_size,
                     has_bias=has_bias, block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64, warp_k=bk,
                     stages=stages, split_k=split, arch="sm_90a", mainloop="sm90", fp8_fast_accum=fp8_fast_accum)
    if (WGMMA_TWO_ATOMS and half and parse_dtype(b_dtype).bits == 4 and 2048 < m <= 4096 and n_pad <= 8192
            and n_pad % 256 == 0 and k_pad % 64 == 0 and split == 1):
        # 4-bit weights, M in (2048, 4096], N <= 8192: 128 x 256 x 64 tiles, two atoms per warpgroup, producer
        # warpgroup, persistent grid (`WGMMA_TWO_ATOMS`)
        return _deepest_stages(cfg.with_(block_m=128, warp_m=128, block_n=256, warp_n=128, block_k=64, warp_k=64,
                                         warp_specialized=True, persistent_ctas=num_sms), "sm_90a")
    if (WGMMA_PERSISTENT_SHORT_K and half and bm == 256 and split == 1 and k_pad <= 8192
            and tiles >= 6 * num_sms):
        # many 256-row tiles of a short K: the persistent grid with the producer warpgroup
        return _deepest_stages(cfg.with_(warp_specialized=True, persistent_ctas=num_sms), "sm_90a")
    limit = get_arch("sm_90a").smem_per_block_bytes
    while smem_bytes(cfg) > limit and cfg.stages > 2:
        cfg = cfg.with_(stages=cfg.stages - 1)
    return cfg


def default_config(m: int, n_pad: int, k_pad: int, *, a_dtype: str, b_dtype: str, c_dtype: str, group_size: int,
                   arch: str, has_bias: bool = False, num_sms: int = 132,
                   batch_invariant: bool = False, glu: bool = False,
                   mainloop: Optional[str] = None, act_group_size: int = 0,
                   fp8_fast_accum: bool = True) -> GemmConfig:
    """A sane config for an (m, n_pad, k_pad) problem; later replaced by measured tables / the autotuner.
    On sm_90a, M >= SM90_MIN_M takes the wgmma mainloop (GLU epilogues of 16-bit activations through the staged
    store while `WGMMA_GLU`; batch-invariant mode, 8-bit activations with group scales or a GLU stay on
    mma.sync); `mainloop` forces one ("sm80" / "sm90").

    `batch_invariant`: every M gets the same K reduction structure (block_k = warp_k = 64, no split-K), so a
    row's result never depends on M or on the other rows of the batch."""
    if mainloop not in (None, "sm80", "sm90"):
        raise ValueError(f"mainloop must be None (choose), 'sm80' or 'sm90', got {mainloop!r}")
    # 8-bit activations: per-token scales and channel scales or weight groups >= 64 (two-level per k-tile)
    wgmma_act = a_dtype in ("float16", "bfloat16") or (a_dtype in ACT8_TYPES and not act_group_size
                                                       and (group_size == 0 or group_size >= 64))
    if mainloop == "sm90" or (mainloop is None and get_arch(arch).sm == 90 and m >= SM90_MIN_M
                              and not batch_invariant and wgmma_act
                              and (not glu or (WGMMA_GLU and a_dtype in ("float16", "bfloat16")))):
        cfg = sm90_config(m, n_pad, k_pad, a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype,
                          group_size=group_size, has_bias=has_bias, num_sms=num_sms, fp8_fast_accum=fp8_fast_accum)
        if glu and cfg.block_m >= 128 and cfg.split_k == 1 and n_pad % 128 == 0 and k_pad % 64 == 0:
            # GLU at M > 64 (2026-11-30_h200_config_probe_glu.log): 128 x 128 x 64 tiles with the producer
            # warpgroup and the deepest pipeline beside the fp32 staging tile won at all four points probed
            # (0.92-0.94x the 128-deep tiles, 0.85-0.98x the 256-row ones, 0.90-0.94x without the producer)
            cfg = _deepest_stages(cfg.with_(block_m=128, warp_m=128, block_n=128, warp_n=64, block_k=64, warp_k=64,
                                            warp_specialized=True, persistent_ctas=0), "sm_90a")
        if not glu and mainloop is None:
            cfg = with_stream_k(cfg, m, n_pad, k_pad, num_sms)
            if DENSE_WGMMA_STAGED:
                cfg = with_dense_staging(cfg, m)
        return with_glu_staging(cfg) if glu else cfg
    if m <= 16:
        bm, wm = 16, 16
    elif m <= 32:
        bm, wm = 32, 32
    elif m <= 64:
        bm, wm = 64, 32
    else:
        bm, wm = 128, 64
        if a_dtype not in ("float16", "bfloat16"):
            wm = 32          # 8-bit activations: lane registers (and, with group scales, a partial accumulator)
            if act_group_size and b_dtype.startswith("uint"):
                wm = 16      # + zero-point words and activation group scales
    # enough CTAs to cover the SMs before widening the tile
    bn = 64
    for cand in (256, 128):
        if n_pad % cand == 0 and (n_pad // cand) * max(1, -(-m // bm)) >= num_sms:
            bn = cand
            break
    if wm < 64 and bm == 128:
        bn = min(bn, 128 if wm == 32 else 64)   # at most 8 warps: 255 registers per thread
    wn = 64
    # small M: a deep k-tile split across warps keeps enough weight bytes in flight per CTA. Measured on H200
    # (benchmarks/results/2026-11-29_h200_decode_config_probe.log, fp16 x uint4 g128, M = 1 and 16): BK=1024 with
    # 8 warps of WK=128 where K >= 8192, else BK=512 with 4 warps, 3 stages (two 96 KB CTAs per SM when the grid
    # has several waves); split-K 2 only when the grid covers fewer than 80 SMs, each split keeps >= 6 k-tiles
    # and K >= 12288 (4096 x 14336: 0.71x the unsplit time; 4096 x 4096: slower, also for int8 at BK=256)
    stages = 4
    split, cluster = 1, False
    if m <= 32:
        if parse_dtype(b_dtype).bits >= 6 and k_pad % 256 == 0 and a_dtype in ("float16", "bfloat16"):
            # 6-8 bit weights, 16-bit activations (H200, fp16 x int8 channel, M=1,
            # benchmarks/results/2026-11-29_h200_decode_config_probe_int8.log): BK=256 with 4 warps, 4 stages is
            # the fastest or within 1 % on all four shapes (28672 x 4096: 39.8 us against 50.9 us at BK=512)
            bk, wk, stages = 256, 64, 4
        elif k_pad % 1024 == 0 and k_pad >= 8192:
            bk, wk, stages = 1024, 128, 3
        elif k_pad % 512 == 0:
            bk, wk, stages = 512, 128, 3
        else:
            bk, wk, stages = _largest_dividing((256, 128, 64), k_pad), 64, 6
        wide = parse_dtype(b_dtype).bits >= 6
        if (m <= 16 and bk == 512 and parse_dtype(b_dtype).bits == 4 and bn == 128 and n_pad // 64 >= 3 * num_sms
                and get_arch(arch).sm == 90 and a_dtype in ("float16", "bfloat16")):
            # a grid of >= 3 waves either way: 64-wide tiles on 4 warps (H200, fp16 x uint4 g128, 28672 x 4096,
            # three probes: 2026-11-30_h200_decode_probe_fold.log M = 1 / 16 29.0 / 30.2 us against 30.5 / 31.4,
            # 2026-11-30_h200_decode_probe_a_rows8.log M = 1 / 8 28.9 / 28.9 us against 30.3 / 30.3)
            bn = 64
        ctas = -(-m // bm) * (n_pad // bn)
        cluster = (get_arch(arch).sm == 90 and a_dtype in ("float16", "bfloat16") and not glu
                   and (k_pad % 512 == 0 and k_pad // 512 >= 8 if not wide else bk == 256 and k_pad // 256 >= 16))
        if ctas < 80 and cluster and not batch_invariant:
            # sm_90: split-K 2 inside a cluster, 512-deep k-tiles over 4 warps (H200, fp16 x uint4 g128,
            # benchmarks/results/2026-11-29_h200_decode_cluster.log): 4096^2 M=1 11.2 us against 12.7 unsplit,
            # 4096 x 14336 M=1 / 16 18.8 / 19.4 us against 20.9 / 23.8 with the workspace split. 6-8 bit weights
            # keep their 256-deep, 4-stage tiles (H200, fp16 x int8 channel,
            # benchmarks/results/2026-11-30_h200_decode_probe_w8_cluster.log): 4096^2 M=1 / 16 14.7 / 14.9 us
            # against 16.3 / 16.9 unsplit, 4096 x 14336 23.7 / 24.2 us against 32.8 / 34.2 (26.7 / 30.1 with the
            # workspace split)
            if not wide:
                bk, wk, stages = 512, 128, 3
            split = 2
        elif ctas < 80 and (k_pad // bk) // 2 >= 6 and k_pad >= 12288 and not batch_invariant:
            split = 2
        else:
            cluster = False
    elif m <= 64:
        bk, wk = _largest_dividing((128, 64), k_pad), 64
    else:
        bk, wk = 64, 64
    if batch_invariant:
        bk, wk = 64, 64
    cfg = GemmConfig(a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype, group_size=group_size,
                     has_bias=has_bias, block_m=bm, block_n=bn, block_k=bk, warp_m=wm,
                     warp_n=wn, warp_k=wk, stages=stages, split_k=split, arch=arch, act_group_size=act_group_size,
                     cluster_split_k=split > 1 and cluster,
                     # decode: group scales on fp32 partial sums (no scale multiply per weight pair)
                     two_level_scales=(m <= 16 and group_size > 0 and a_dtype in ("float16", "bfloat16")
                                       and not batch_invariant))
    if FOLD_OFFSETS and cfg.two_level_scales and a_dtype == "float16" and b_dtype in ("int4", "uint4"):
        cfg = cfg.with_(fold_offsets=True)
    if DECODE_ROWS8 and m <= 8 and cfg.block_m == cfg.warp_m and a_dtype in ("float16", "bfloat16"):
        cfg = cfg.with_(rows8=True)
    if DECODE_A_ROWS8 and cfg.rows8 and cfg.block_m == 16:
        # 8 activation rows per stage: one more weight stage where it then fits (8192^2: 1024-deep tiles, 4 stages)
        cfg = cfg.with_(a_rows8=True)
        if smem_bytes(cfg.with_(stages=cfg.stages + 1)) <= get_arch(arch).smem_per_block_bytes:
            cfg = cfg.with_(stages=cfg.stages + 1)
    # fit the arch's shared memory: fewer stages first (down to 3), then a shallower / narrower block
    limit = get_arch(arch).smem_per_block_bytes
    while smem_bytes(cfg) > limit:
        if cfg.stages > 3:
            cfg = cfg.with_(stages=cfg.stages - 1)
        elif cfg.block_k > cfg.warp_k:
            cfg = cfg.with_(block_k=cfg.block_k // 2)
        elif cfg.block_n > cfg.warp_n:
            cfg = cfg.with_(block_n=cfg.block_n // 2)
        elif cfg.block_m > cfg.warp_m:
            cfg = cfg.with_(block_m=cfg.block_m // 2)
        else:
            cfg = cfg.with_(stages=2)
            break
    if (DECODE_ONE_WAVE_STAGES and get_arch(arch).sm == 90 and m <= 32 and parse_dtype(b_dtype).bits >= 6
            and a_dtype in ("float16", "bfloat16") and cfg.mainloop == "sm80"):
        cfg = _one_wave_stages(cfg, -(-m // cfg.block_m) * (n_pad // cfg.block_n) * cfg.split_k, arch, num_sms)
    if (DECODE_EVICT_FIRST_W8 and get_arch(arch).sm == 90 and m <= 16 and m <= cfg.block_m
            and parse_dtype(b_dtype).bits >= 6 and a_dtype in ("float16", "bfloat16") and cfg.mainloop == "sm80"):
        cfg = cfg.with_(evict_first=True)
    if (DECODE_WARP_PIPELINE and get_arch(arch).sm == 90 and m <= 32 and parse_dtype(b_dtype).bits <= 5
            and a_dtype in ("float16", "bfloat16") and cfg.block_m == cfg.warp_m and cfg.block_n == cfg.warp_n
            and cfg.warps_k > 1 and (group_size == 0 or cfg.warp_k % group_size == 0)):
        cfg = cfg.with_(warp_pipeline=True)
        if DECODE_SWAP_AB and m <= 8 and not cfg.fold_offsets and not cfg.use_f16_accum:
            cfg = cfg.with_(rows8=True, swap_ab=True)
            if not (b_dtype == "uint4" and a_dtype == "float16"):
                cfg = cfg.with_(launch_min_blocks=1)      # (`DECODE_SWAP_AB`: no spills)
    if (DECODE_PDL and get_arch(arch).sm == 90 and cfg.mainloop == "sm80" and a_dtype in ("float16", "bfloat16")
            and not cfg.moe):
        cfg = cfg.with_(pdl=True, pdl_prefetch=1)
    return cfg


def moe_uses_wgmma(arch: str, a_dtype: str, epilogue: bool = False, glu: bool = False) -> bool:
    """Whether MoE blocks of 64 / 128 rows run on the wgmma mainloop by default: sm_90a, 16-bit activations,
    and no activation in the epilogue (`epilogue`) unless it is a GLU (`glu`) and `WGMMA_GLU` (the GPU-tested
    staged GLU store; other activations on the wgmma MoE GEMM are not GPU-tested and stay on mma.sync)."""
    return (get_arch(arch).sm == 90 and a_dtype in ("float16", "bfloat16")
            and (not epilogue or (glu and WGMMA_GLU)))


def default_moe_config(block_m: int, n_pad: int, k_pad: int, *, a_dtype: str, b_dtype: str, c_dtype: str,
                       group_size: int, arch: str, has_bias: bool = False, top_k: int = 1, is_down: bool = False,
                       mul_topk_weights: bool = False, epilogue: bool = False,
                       mainloop: Optional[str] = None, num_tokens: Optional[int] = None,
                       num_experts: Optional[int] = None, num_sms: int = 132, glu: bool = False) -> GemmConfig:
    """The MoE GEMM's config: block_m is the routing alignment block; K deep and split across warps.
    `epilogue`: an activation / GLU follows (keeps the mma.sync mainloop unless it is a GLU, `glu`, which the wgmma
    kernel combines in its staged store while `WGMMA_GLU`); `mainloop` forces one. `num_tokens` and `num_experts`
    (when known) size 16-row decode tiles to the expected number of routed blocks."""
    if block_m not in (16, 32, 64, 128) + WGMMA_ONLY_MOE_BLOCKS:
        raise ValueError(f"MoE block_m must be 16, 32, 64 or 128 (or {', '.join(map(str, WGMMA_ONLY_MOE_BLOCKS))} "
                         f"on the wgmma mainloop), got {block_m}")
    if mainloop not in (None, "sm80", "sm90"):
        raise ValueError(f"mainloop must be None (choose), 'sm80' or 'sm90', got {mainloop!r}")
    wgmma_only = block_m in WGMMA_ONLY_MOE_BLOCKS
    if wgmma_only and (mainloop == "sm80" or (mainloop is None and not moe_uses_wgmma(arch, a_dtype, epilogue, glu))):
        raise ValueError(f"MoE blocks of {block_m} rows run on the wgmma mainloop only (sm_90a, 16-bit activations, "
                         f"no epilogue activation other than a GLU); use block_m 16 / 32 / 64 / 128")
    # 32-row blocks of experts with 12-16 routed rows each (`MOE_DECODE_BLOCK_32`)
    block32 = (MOE_DECODE_BLOCK_32 and block_m == 32 and mainloop is None
               and moe_uses_wgmma(arch, a_dtype, epilogue, glu) and n_pad % 256 == 0 and k_pad % 128 == 0)
    block32_down = (block32 and is_down and n_pad < k_pad and MOE_BLOCK_32_DOWN_WGMMA and not glu
                    and (group_size == 0 or group_size >= 128))
    if mainloop == "sm90" or (mainloop is None and (block_m >= WGMMA_MOE_MIN_BLOCK or wgmma_only
                                                    or (block32 and (n_pad >= k_pad or block32_down)))
                              and moe_uses_wgmma(arch, a_dtype, epilogue, glu)):
        # H200, fp16 x uint4 g128 (benchmarks/results/2026-11-29_h200_moe_wgmma.log, ..._moe_wgmma_mixtral.log):
        # wgmma, 64-deep k-tiles, the deepest pipeline; 64-row blocks with 128-wide weight tiles, 128-row blocks
        # with 256-wide ones: 0.58-0.85x the mma.sync time at 512-4096 tokens (Qwen3-30B-A3B-like, Mixtral-like)
        bn = 256 if block_m == 128 and n_pad % 256 == 0 else (128 if n_pad % 128 == 0 else 64)
        if glu and n_pad % 256 == 0 and block_m <= 128:
            # a GLU halves the outputs: 256-wide weight tiles keep 128-wide output rows in the staged store. H200,
            # silu GLU up projections at 512 tokens (benchmarks/results/2026-11-30_h200_moe_glu_probe.log): 0.75x
            # (Qwen3-30B-A3B-like) / 0.71x (Mixtral-like) the time of 128-wide tiles; without a GLU they are
            # 1.03-1.09x (2026-11-30_h200_moe_probe_bn256_*.log)
            bn = 256
        cfg = GemmConfig(a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype, group_size=group_size,
                         has_bias=has_bias, block_m=block_m, block_n=bn, block_k=64, warp_m=block_m, warp_n=64,
                         warp_k=64, stages=2, arch="sm_90a", mainloop="sm90", moe=True, moe_top_k=top_k,
                         moe_down=is_down, moe_mul_topk_weights=mul_topk_weights)
        if (block_m == 48 and not glu and WGMMA_TWO_ATOMS and n_pad % 256 == 0
                and a_dtype in ("float16", "bfloat16")):
            # 48-row blocks, 256-wide weight tiles in two atoms per warpgroup, 64-deep k-tiles, rows by cp.async,
            # persistent (`WGMMA_TWO_ATOMS`)
            cfg = cfg.with_(block_n=256, warp_n=128, warp_specialized=True, persistent_ctas=num_sms,
                            moe_cp_async_rows=True)
            if (MOE_BLOCK_48_DEEP_K and k_pad >= 2048 and k_pad % 128 == 0 and parse_dtype(b_dtype).bits <= 4
                    and (group_size == 0 or group_size >= 128)):
                cfg = cfg.with_(block_k=128, warp_k=128, a_split=2,     # (`MOE_BLOCK_48_DEEP_K`)
                                staged_store=MOE_BLOCK_48_DEEP_K_STAGED,
                                warp_n=64 if MOE_BLOCK_48_DEEP_K_FOUR_WG else 128)
            elif (MOE_BLOCK_48_WIDE_SHORT_K and k_pad < 2048 and n_pad % 512 == 0
                  and parse_dtype(b_dtype).bits <= 4):
                cfg = cfg.with_(block_n=512, a_split=4)                 # (`MOE_BLOCK_48_WIDE_SHORT_K`)
        elif (block_m in (128, 144) and not glu and WGMMA_TWO_ATOMS and n_pad % 256 == 0
              and parse_dtype(b_dtype).bits <= 4 and a_dtype in ("float16", "bfloat16")):
            # 128-row blocks, the same two-atom tile (rows by cp.async, no gathered copy of x; persistent). H200, fp16 x
            # uint4 g128, Qwen3-30B-A3B-like at 4096 tokens (2026-11-30_h200_moe_probe_rows_qwen4096_bm128.log): up
            # 472 / down 298 us against 494 / 328 with four one-atom warpgroups (256 x 128 tiles, gathered x); 144-row
            # blocks with the A fragments in 2 pieces (`MOE_BLOCK_144`)
            cfg = cfg.with_(block_n=256, warp_n=128, warp_specialized=True, persistent_ctas=num_sms,
                            moe_cp_async_rows=True, staged_store=MOE_STAGED_BLOCK_128,
                            moe_bulk_store=MOE_STAGED_BLOCK_128 and MOE_BULK_STORE_SHORT_K and k_pad <= 1024,
                            a_split=2 if block_m == 144 else 1)
        elif block_m == 48 and not glu and k_pad % 128 == 0 and (group_size == 0 or group_size >= 128):
            # 48-row blocks (~32 routed rows per expert): 128-deep k-tiles, the producer warpgroup loading the rows by
            # cp.async, one CTA per SM (2026-11-30_h200_moe_probe_bm48_tiles.log, uniform routing): Qwen3-30B-A3B-like
            # at 512 tokens up 119.8 / down 88.5 us against 129.8 / 86.8 with 128 x 64 tiles, Mixtral-like at 128
            # tokens up 263.9 / down 122.8 against 269.9 / 161.9
            cfg = cfg.with_(block_k=128, warp_k=128, warp_specialized=True, persistent_ctas=num_sms,
                            moe_cp_async_rows=True)
        if block32_down:
            # (N < K) 128-wide weight tiles, 128-deep k-tiles in two K slices, the producer warpgroup copying the
            # rows, persistent (`MOE_BLOCK_32_DOWN_WGMMA`)
            cfg = cfg.with_(block_n=128, block_k=128, warp_k=64, warp_specialized=True, persistent_ctas=num_sms,
                            moe_cp_async_rows=True)
        elif block32:
            # four consumer warpgroups over a 256-wide weight tile, 128-deep k-tiles, no producer warpgroup; the
            # weights under the L2 evict-first policy (`MOE_BLOCK_32_EVICT_FIRST`)
            cfg = cfg.with_(block_n=256, block_k=128, warp_k=128, evict_first=MOE_BLOCK_32_EVICT_FIRST)
            if (MOE_BLOCK_32_TWO_ATOMS and not glu and parse_dtype(b_dtype).bits <= 4
                    and a_dtype in ("float16", "bfloat16")):
                # two weight atoms per consumer warpgroup (A in 2 pieces), the producer warpgroup copying the rows,
                # persistent (`MOE_BLOCK_32_TWO_ATOMS`)
                cfg = cfg.with_(warp_n=64 if MOE_BLOCK_32_FOUR_WG else 128, a_split=2, warp_specialized=True,
                                persistent_ctas=num_sms, moe_cp_async_rows=True)     # (`MOE_BLOCK_32_FOUR_WG`)
        if block_m in (144, 160) and not glu:
            # 160-row blocks (an expert's ~128 rows in one block) with the producer warpgroup: 486 / 260 us against
            # 577 / 286 us without it (Mixtral-like up / down at 512 tokens, 2026-11-30_h200_moe_probe_bm160_mixtral.log);
            # 144-row blocks the two-atom tile cannot take too
            cfg = cfg.with_(warp_specialized=True)
        if k_pad % cfg.block_k == 0:
            cfg = _deepest_stages(cfg, "sm_90a")
            return with_glu_staging(cfg, keep_block_m=True) if glu else cfg
    wm = {16: 16, 32: 32, 64: 32, 128: 64}[block_m]
    if a_dtype not in ("float16", "bfloat16"):
        wm = min(wm, 32)     # 8/4-bit activations: weight lanes and partial sums need the registers
    bn = 128 if n_pad % 128 == 0 and block_m <= 32 else 64
    bk = _largest_dividing((128, 64), k_pad) if block_m <= 64 else 64
    stages = 4
    if block_m >= 64 and a_dtype in ("float16", "bfloat16"):
        # many rows per expert (H200, fp16 x uint4 g128, benchmarks/results/2026-11-29_h200_moe_config_probe.log):
        # wider weight tiles, one K-warp and 6 stages: 0.74-0.96x the time of 64 x 64 x 128 tiles at 512-4096
        # tokens (Qwen3-30B-A3B-like and Mixtral-like up / down); 128-row blocks with 256-wide tiles: 0.73x on
        # Mixtral up at 4096 tokens
        bk, stages = 64, 6
        want = 256 if block_m == 128 else 128
        bn = want if n_pad % want == 0 else (128 if n_pad % 128 == 0 else 64)
    wk, row_cache = 64, False
    if block_m == 16:
        bn, bk, wk, stages = _moe_decode_tile(n_pad, k_pad, b_bits=parse_dtype(b_dtype).bits, top_k=top_k,
                                              num_tokens=num_tokens, num_experts=num_experts, num_sms=num_sms,
                                              sixteen_bit_act=a_dtype in ("float16", "bfloat16"), bn=bn, bk=bk)
        # each lane loads its rows' ids / routing weights / activation scales once, before the stores: 0.83-0.98x
        # the time at 1-64 tokens (H200, fp16 x uint4 g128, 2026-11-30_h200_moe_probe_gated.log)
        row_cache = True
    # many experts of a few rows each: the weight-tile-major grid (`MOE_DECODE_N_MAJOR`)
    n_major = (MOE_DECODE_N_MAJOR and block_m == 16 and get_arch(arch).sm == 90 and a_dtype in ("float16", "bfloat16")
               and num_experts is not None and num_experts >= 32 and num_tokens is not None
               and num_tokens * top_k <= 65535)
    if block32:
        # (N < K) 256-wide weight tiles on 8 warps (two K-warps), 6 stages, the weight-tile-major grid
        bn, bk, wk, stages = 256, 128, 64, 6
        n_major = num_tokens is None or num_tokens * top_k <= 65535
    cfg = GemmConfig(a_dtype=a_dtype, b_dtype=b_dtype, c_dtype=c_dtype, group_size=group_size,
                     has_bias=has_bias, block_m=block_m, block_n=bn, block_k=bk, warp_m=wm,
                     warp_n=64, warp_k=wk, stages=stages, arch=arch, moe=True, moe_top_k=top_k, moe_down=is_down,
                     moe_mul_topk_weights=mul_topk_weights, moe_row_cache=row_cache, moe_n_major=n_major)
    if (block_m == 16 and group_size > 0 and a_dtype in ("float16", "bfloat16")
            and k_pad >= MOE_DECODE_TWO_LEVEL_MIN_K):
        # (`MOE_DECODE_TWO_LEVEL_MIN_K`) 8-warp tiles only where the expected grid is at most one CTA per SM (the
        # measured loss was on a two-wave 8-warp grid)
        warps = (bn // 64) * (bk // wk)
        ctas = (moe_expected_blocks(num_tokens, top_k, num_experts, 16) * (n_pad // bn)
                if num_tokens is not None and num_experts is not None else None)
        if warps < 8 or (ctas is not None and ctas <= num_sms):
            cfg = cfg.with_(two_level_scales=True)
    limit = get_arch(arch).smem_per_block_bytes
    while block_m == 16 and cfg.block_k > 256 and smem_bytes(cfg.with_(stages=min(cfg.stages, 3))) > limit:
        cfg = cfg.with_(block_k=cfg.block_k // 2)      # 8-bit weights: keep 3 stages of a shallower tile
    while smem_bytes(cfg) > limit and cfg.stages > 2:
        cfg = cfg.with_(stages=cfg.stages - 1)
    return cfg


def moe_expected_blocks(num_tokens: int, top_k: int, num_experts: int, block_m: int) -> float:
    """The expected number of non-empty block_m-row blocks after aligning num_tokens x top_k uniformly routed ids
    over num_experts: every expert hit opens one block, the rest fill blocks of block_m."""
    routed = num_tokens * top_k
    hit = num_experts * (1.0 - (1.0 - 1.0 / num_experts) ** routed) if num_experts > 1 else 1.0
    return hit + max(0.0, routed - hit) / block_m


def _moe_decode_tile(n_pad: int, k_pad: int, *, b_bits: int, top_k: int, num_tokens: Optional[int],
                     num_experts: Optional[int], num_sms: int, sixteen_bit_act: bool, bn: int, bk: int):
    """(block_n, block_k, warp_k, stages) of 16-row mma.sync MoE blocks, which read each weight tile for a few rows:
    bound by the weight bytes in flight. Few routed blocks (one token: top_k blocks) get 64-wide weight tiles when
    128-wide ones leave SMs without a CTA, and K tiles deep enough for ~48 KB of weight loads in flight per SM,
    split over more K-warps, keeping >= 8 k-tiles; 3 stages, 4 for 128-deep tiles over >= 64 k-tiles.
    H200, fp16 x uint4 g128 (2026-11-30_h200_moe_probe_gated.log): Mixtral-like down projection (K = 14336) at one
    token 64 x 1024 tiles on 8 warps 29 us against 60 us with 128 x 128 ones; at 16 tokens 128 x 256 on 8 warps
    86 us against 119; Qwen3-30B-A3B-like up at one token 64 x 256 14 us against 16; 3 stages 0.87-0.99x of 4."""
    if num_tokens is None or num_experts is None or not sixteen_bit_act:
        return bn, bk, 64, 3 if sixteen_bit_act else 4
    blocks = moe_expected_blocks(num_tokens, top_k, num_experts, 16)
    if bn == 128 and blocks * (n_pad // 128) < num_sms and n_pad % 64 == 0:
        bn = 64
    per_sm = blocks * (n_pad // bn) / num_sms
    for cand in (128, 256, 512, 1024):
        if k_pad % cand or k_pad // cand < 8:
            break
        bk = cand
        if per_sm * 2 * bn * cand * b_bits / 8 >= 48 * 1024:
            break
    stages = 4 if bk == 128 and k_pad // bk >= 64 else 3
    if MOE_DECODE_SHORT_K_ONE_KWARP and k_pad // bk < 8 and bn >= 128:
        return bn, bk, bk, stages           # (`MOE_DECODE_SHORT_K_ONE_KWARP`)
    return bn, bk, 64 if bk <= 256 else 128, stages


def moe_block144_tile(a_dtype: str, b_dtype: str, n_pad: int, glu: bool = False) -> bool:
    """Whether the 144-row two-atom wgmma MoE tile (`MOE_BLOCK_144`) serves a layer: weights of at most 4 bits,
    16-bit activations, no GLU, N (padded) a multiple of 256."""
    return (a_dtype in ("float16", "bfloat16") and parse_dtype(b_dtype).bits <= 4 and not glu
            and n_pad % 256 == 0)


@functools.lru_cache(maxsize=4096)
def moe_expected_padded_rows(num_tokens: int, top_k: int, num_experts: int, block_m: int) -> float:
    """Expected rows per expert after aligning uniformly routed ids to blocks of block_m rows: block_m x E[ceil(X /
    block_m)] for an expert's row count X ~ Binomial(num_tokens, top_k / num_experts), by the normal approximation
    (E[ceil(X / b)] = sum over j >= 0 of P(X > j b)). Cached: `moe_block_size` asks it on every MoE forward."""
    p = min(1.0, top_k / max(num_experts, 1))
    mean = num_tokens * p
    sd = math.sqrt(max(num_tokens * p * (1.0 - p), 1e-12))
    blocks, j = 0.0, 0
    while j * block_m <= mean + 8 * sd:
        blocks += 0.5 * math.erfc((j * block_m + 0.5 - mean) / (sd * math.sqrt(2.0)))
        j += 1
    return block_m * blocks


def moe_block_size(num_tokens: int, top_k: int, num_experts: int, *, wgmma: bool = False,
                   block144: bool = False) -> int:
    """The routing alignment block (= the MoE kernel's block_m) for a batch: small blocks when experts see few
    tokens each, so less padding is computed. `wgmma` (see `moe_uses_wgmma`): 64-row blocks from 17 rows per
    expert on (Qwen3-30B-A3B-like at 512 tokens, 32 rows per expert: 161 us with 64-row wgmma blocks against
    190 us with 32-row mma.sync blocks; ..._moe_wgmma.log). `block144` (`moe_block144_tile` of the layer): 144-row
    blocks may replace 128-row ones (`MOE_BLOCK_144`)."""
    per_expert = num_tokens * top_k / max(num_experts, 1)
    if wgmma and MOE_DECODE_BLOCK_32 and 12 < per_expert <= 16:
        return 32
    if per_expert <= 16:
        return 16
    if wgmma and WGMMA_MOE_ODD_BLOCKS and (per_expert <= 36 or 112 <= per_expert <= 136):
        return 48 if per_expert <= 36 else 160
    if wgmma and WGMMA_MOE_MIN_BLOCK <= 32 and per_expert <= 48:
        return 32
    if wgmma:
        # 128-row blocks (256-wide weight tiles) from 129 rows per expert on: Qwen3-30B-A3B-like at 4096 tokens (256
        # rows per expert) up 539 us against 600 us with 64-row blocks, down 512 against 503 (H200,
        # benchmarks/results/2026-11-30_h200_moe_probe_qwen4096.log)
        if (per_expert > 136 and wgmma and block144 and MOE_BLOCK_144
                and moe_expected_padded_rows(num_tokens, top_k, num_experts, 144)
                <= 0.97 * moe_expected_padded_rows(num_tokens, top_k, num_experts, 128)):
            return 144
        return 64 if per_expert <= 128 else 128
    if per_expert <= 48:
        return 32
    if per_expert <= 512:
        return 64
    return 128   # Mixtral-like up projection at 4096 tokens (1024 rows per expert): 0.84x the 64-row time
