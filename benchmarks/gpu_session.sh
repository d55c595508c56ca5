#!/usr/bin/env bash
# The H100/H200 measurement steps, one per call (each fits a 10-minute command): writes logs, JSON and PNGs to
# $OUT (default benchmarks/results/run) and prints a short summary last. Run from the repository root with the
# CuTe DSL importable, e.g.
#   bash benchmarks/gpu_session.sh tests        # the whole GPU test suite (incl. the options still refused)
#   bash benchmarks/gpu_session.sh verify       # the MoE and stream-K GPU tests
#   bash benchmarks/gpu_session.sh large-m      # W8 (M 4096 / 8192) and W4 (M 8192) wgmma tiles: pipeline depth, the
#                                               # producer warpgroup, the persistent grid; then the MoE benchmark
#   bash benchmarks/gpu_session.sh moe-odd      # 48 / 160-row wgmma MoE blocks against 64 / 128-row ones (Qwen-like
#                                               # 384 / 512 tokens, Mixtral-like 128 / 512 tokens)
#   bash benchmarks/gpu_session.sh stream-k     # stream-K against the data-parallel / persistent wgmma tiles (W4, W8)
#   bash benchmarks/gpu_session.sh moe-gated    # MoE decode tiles: the full-length grid and the row cache switched
#   bash benchmarks/gpu_session.sh moe-wgmma-small  # wgmma MoE blocks of 16 / 32 rows at 16 / 64 / 512 tokens, and
#                                               # 32-row mma.sync blocks with deep K tiles (Mixtral-like, 64 tokens)
#   bash benchmarks/gpu_session.sh moe-staged   # wgmma MoE tiles with and without the staged store (and the
#                                               # persistent grid, cp.async rows): Qwen-like 512 / 4096, Mixtral-like 512
#   bash benchmarks/gpu_session.sh probe        # the first probes in one call: dense cluster_n / persistent at
#                                               # 8192^2 M 256 / 4096 and 28672x4096 M 4096; Qwen MoE tiles
#   bash benchmarks/gpu_session.sh dense        # wgmma tile / cluster_n / persistent probes at M 256 and 4096
#   bash benchmarks/gpu_session.sh glu          # silu GLU layers: wgmma tiles (staged GLU) against the default
#   bash benchmarks/gpu_session.sh moe-bm48     # 48-row blocks: tile width / depth, producer warpgroup, persistent grid,
#                                               # cp.async rows (Qwen-like 512, Mixtral-like 128 tokens)
#   bash benchmarks/gpu_session.sh moe-4096     # 96 / 128 / 160-row blocks at Qwen-like 4096 tokens
#   bash benchmarks/gpu_session.sh bench-dense  # the W4A16 g128 and W8A16 channelwise dense benches (no MoE)
#   bash benchmarks/gpu_session.sh a8-tests     # GPU tests of fold_offsets / rows8 / a_rows8 (a_rows8 refused until
#                                               # they pass)
#   bash benchmarks/gpu_session.sh a8-probe     # decode tiles with 8-row activation stages and deeper pipelines
#                                               # (a_rows8) against 16-row ones, M 1 / 8, four shapes
#   bash benchmarks/gpu_session.sh fold-tests   # GPU tests of fold_offsets / rows8 (decode, refused until they pass)
#   bash benchmarks/gpu_session.sh fold-probe   # decode tiles with and without fold_offsets / rows8, 8192^2 and
#                                               # 28672 x 4096 at M 1 / 16
#   bash benchmarks/gpu_session.sh moe-glu      # MoE up projections with a silu GLU: mma.sync / wgmma tiles
#   bash benchmarks/gpu_session.sh dense-small  # M 16 / 64 on wgmma: cluster split-K 2 / 4 with and without cluster_n
#                                               # (4096 x 14336 at M = 64: 128 CTAs of one warpgroup, 1.12x Humming)
#   bash benchmarks/gpu_session.sh decode8      # W8A16 channel decode (M 1 / 16), 28672 x 4096 and 8192^2: tile widths
#                                               # and depths (224 CTAs of 128 x 256 tiles take 1.7 waves at 1 per SM)
#   bash benchmarks/gpu_session.sh moe          # MoE probes: Qwen3-30B-A3B-like wgmma tiles at 512 / 4096 tokens
#   bash benchmarks/gpu_session.sh moe-ncu      # Nsight Compute of the Qwen-like down projection at 4096 tokens
#   bash benchmarks/gpu_session.sh decode-ncu   # Nsight Compute (stall reasons, top stall sites) of the default
#                                               # decode kernel, fp16 x uint4 g128, 8192^2, M = 1
#   bash benchmarks/gpu_session.sh wgmma-ncu    # the same for the wgmma kernel at 28672 x 4096, M = 4096, W4 g128
#                                               # and W8 channel (W8 is 8 % slower there, 1.11x Humming)
#   bash benchmarks/gpu_session.sh moe-small    # MoE decode probes (cluster split-K, n-major) + align timing
#   bash benchmarks/gpu_session.sh bench        # W4A16, W8A16 and MoE benchmarks with the current defaults
#   bash benchmarks/gpu_session.sh moe-bench    # the MoE benchmark alone (moe-bench3: three rounds per point)
#   bash benchmarks/gpu_session.sh atoms-tests  # GPU tests of two weight atoms per wgmma warpgroup (warp_n=128) and the
#                                               # other wgmma tests
#   bash benchmarks/gpu_session.sh atoms-probe  # warp_n=128 tiles: dense W8 / W4 at M = 4096, Qwen-like MoE
#   bash benchmarks/gpu_session.sh tests-many-tiles  # two-atom persistent grids walking many tiles, then the GPU suite
#   bash benchmarks/gpu_session.sh bench-w4-moe # the W4A16 g128 dense benchmark, then the MoE benchmark
#   bash benchmarks/gpu_session.sh layer-moe    # MoE GEMM / layer, autotuner, torch-op and example GPU tests
#   bash benchmarks/gpu_session.sh atoms-verify # the two-atom GPU tests again; warp_n=128 MoE tiles at Qwen-like 4096 tokens
#   bash benchmarks/gpu_session.sh atoms-dense  # W4 128 x 256 two-atom tiles at M 256-8192; Qwen-like 512 tokens
#   bash benchmarks/gpu_session.sh glu-atoms    # two-atom GLU / activation GPU tests; Qwen-like 4096-token two-atom tiles
#   bash benchmarks/gpu_session.sh rows-verify  # cp.async-rows / two-atom / GLU MoE GPU tests; Qwen-like 4096 tokens, 96-row blocks
#   bash benchmarks/gpu_session.sh rows-qwen4096  # Qwen-like 4096 tokens, 128-row producer-warpgroup tiles (rows, persistent)
#   bash benchmarks/gpu_session.sh tests-bm96   # the GPU suite; then Qwen-like 4096 tokens, 96 / 128-row two-atom rows tiles
#   bash benchmarks/gpu_session.sh bk128-qwen512  # Qwen-like 512 tokens: 48-row two-atom tiles 64 / 128 deep
#   bash benchmarks/gpu_session.sh moe-epi      # wgmma MoE GPU tests, then Qwen-like / Mixtral-like wgmma MoE points
#   bash benchmarks/gpu_session.sh moe-prefetch # the same after the MoE row prefetch (moe_prefetch_rows)
#   bash benchmarks/gpu_session.sh moe-staged128  # MoE GPU suite + examples, then the MoE bench (3 rounds)
#   bash benchmarks/gpu_session.sh moe-bulk     # moe_bulk_store GPU tests, then against the MoE defaults
#   bash benchmarks/gpu_session.sh moe-bulk-verify  # the bulk-store GPU tests again; 5-round A / B, Qwen down 4096
#   bash benchmarks/gpu_session.sh moe-verify96 # moe-bulk-verify, then Qwen-like 4096 tokens in 64- / 96-row blocks
#   bash benchmarks/gpu_session.sh moe-bulk-default  # MoE GPU suite + examples, MoE bench (3 rounds) with the bulk store
#   bash benchmarks/gpu_session.sh explore1     # W4 4096 x 14336 M = 1024 tiles; 512-wide MoE tiles at 512 tokens; MoE ncu
#   bash benchmarks/gpu_session.sh explore2     # 256-row tiles at 128 of 132 SMs (W4, W8); 512-wide MoE tiles, 512 tokens
#   bash benchmarks/gpu_session.sh tall-bench   # tests of the 256-row fill and 512-wide MoE defaults; W4 / W8 benches
#   bash benchmarks/gpu_session.sh moe-final    # the 256-row fill test; the MoE bench in three rounds
#   bash benchmarks/gpu_session.sh big-m        # 176 x 256 tiles at 8192^2 M = 8192 (W4) / 4096 (W8)
#   bash benchmarks/gpu_session.sh s24a         # W4 g128 decode at M = 16: wgmma 16-row tiles, split-K in a cluster,
#                                               # 128-wide tiles (flushed, back to back, weight in L2), 3 rounds
#   bash benchmarks/gpu_session.sh s24b         # Nsight Compute (pipes, issue, stalls) of the W4 g128 decode kernels at
#                                               # 8192^2 M = 1 / 16; 28672 x 4096 M = 16: the tuned tile against the
#                                               # per-warp-pipeline one back to back
#   bash benchmarks/gpu_session.sh s24c         # Qwen-like MoE up 512 / down 64 tile options (5 rounds); the bench's
#                                               # near-tie points again in 5 rounds (W8 28672 x 4096, 4096^2; W4 M = 64)
#   bash benchmarks/gpu_session.sh s24d         # Qwen-like MoE at 4096 tokens in 144-row blocks (an expert's ~256 rows
#                                               # in 2 blocks instead of 2.5 on average) against the 128-row default
#   bash benchmarks/gpu_session.sh s24e         # GPU tests of the 144-row MoE blocks and the wgmma MoE defaults around them
#   bash benchmarks/gpu_session.sh s24f         # the README's MoE bench (3 rounds) with the 144-row blocks
#   bash benchmarks/gpu_session.sh s24g         # Qwen-like up at 512 tokens: the raster / staged / evict-first options
#                                               # again and paired (5 rounds); Qwen-like 64 / 512 tokens bench, 5 rounds
#   bash benchmarks/gpu_session.sh s24h         # MoE GPU tests with the staged 48-row deep-K default; the MoE bench (3 rounds)
#   bash benchmarks/gpu_session.sh s24i         # the MoE bench points within 2 % of Humming again, 5 rounds, Humming only
#   bash benchmarks/gpu_session.sh s24j         # the 144-row MoE GPU tests again, with a GLU on 144-row blocks
#   bash benchmarks/gpu_session.sh s25a         # Qwen-like MoE up at 512 tokens: Nsight Compute of ours and Humming's kernel;
#                                               # the 512-wide 48-row tile, A in 4 / 8 pieces (5 rounds)
#   bash benchmarks/gpu_session.sh s25b         # Qwen-like MoE up at 512 tokens: four consumer warpgroups (one atom each over
#                                               # 256 wide, two each over 512 wide), 5 rounds
#   bash benchmarks/gpu_session.sh s25c         # Qwen-like MoE at 512 tokens: one-atom four-warpgroup tiles, up (options) and
#                                               # down, 7 rounds
#   bash benchmarks/gpu_session.sh s25d         # Nsight Compute stall reasons and warp-stall samples per SASS instruction of the
#                                               # Qwen-like MoE up default at 512 tokens
#   bash benchmarks/gpu_session.sh s25e         # piece_scales off / on (A in pieces: scales broadcast once per k-tile) on the
#                                               # Qwen-like MoE a_split tiles at 512 / 4096 tokens, 5 rounds
#   bash benchmarks/gpu_session.sh s25f         # GPU tests of piece_scales and the four-warpgroup 48-row deep-K default; the
#                                               # 32-row two-atom tile (Mixtral-like up at 64 tokens) with / without them
#   bash benchmarks/gpu_session.sh s25g         # GPU tests of the four-warpgroup 32-row MoE default; Qwen-like down at 64
#                                               # tokens on 16-row wgmma tiles with the producer warpgroup (5 rounds)
#   bash benchmarks/gpu_session.sh s25h         # the README's MoE bench (3 rounds) at the four-warpgroup / piece_scales defaults
#   bash benchmarks/gpu_session.sh s25i         # the README's W4 bench (3 rounds): the tuned a_split 4 tiles with piece_scales
#   bash benchmarks/gpu_session.sh s25j         # Qwen-like down at 64 tokens: mma.sync tile options (7 rounds); the W4 bench
#   bash benchmarks/gpu_session.sh s25k         # one K-warp on short-K 16-row MoE blocks: probe, GPU tests, Qwen-like down bench
#   bash benchmarks/gpu_session.sh s25l         # the short-K decode tests at the final rule; the README's MoE bench (3 rounds)
#   bash benchmarks/gpu_session.sh s23i         # MoE GPU tests at the 32-row two-atom default; the MoE bench (3 rounds)
#   bash benchmarks/gpu_session.sh s23h         # the s23g winner again (5 rounds), A in 4 pieces, without evict-first
#   bash benchmarks/gpu_session.sh s23g         # Mixtral-like up at 64 tokens: two-atom / 512-wide / producer 32-row tiles
#   bash benchmarks/gpu_session.sh s23f         # MoE GPU tests at the 32-row evict-first default; both autotuners
#   bash benchmarks/gpu_session.sh s23e         # the README's MoE bench with the 32-row MoE evict-first default (3 rounds)
#   bash benchmarks/gpu_session.sh s23d         # evict-first GPU tests; the README's W8A16 bench (3 rounds)
#   bash benchmarks/gpu_session.sh s23c         # dense GPU tests with the W8 evict-first default; MoE / mid-M evict probes
#   bash benchmarks/gpu_session.sh s23b         # evict_first on every W8 decode bench point and W4 8192^2 (5 rounds); MoE
#   bash benchmarks/gpu_session.sh s23a         # evict_first GPU tests; the dense decode probe of it (W4 g128, W8 channel)
#   bash benchmarks/gpu_session.sh s22f         # two-level MoE decode: the 8-warp exception and 64-wide 1-token tiles again
#   bash benchmarks/gpu_session.sh s22e         # MoE default-path / autotuner / example / torch-op / bench GPU tests
#   bash benchmarks/gpu_session.sh s22d         # the MoE and W4A16 benches (3 rounds each)
#   bash benchmarks/gpu_session.sh s22c         # two-level MoE decode off / on (5 rounds); W8A16 bench (3 rounds)
#   bash benchmarks/gpu_session.sh s22b         # MoE GPU suite with the two-level decode default; MoE bench (3 rounds)
#   bash benchmarks/gpu_session.sh s22a         # two-level group scales on MoE decode blocks (probe); MoE / wgmma suites
#   bash benchmarks/gpu_session.sh peer-ncu     # Nsight Compute of ours and Humming's kernels side by side (W8
#                                               # 8192^2 M = 4096, Qwen-like down at 4096 / 512 tokens)
#   bash benchmarks/gpu_session.sh moe-2cta     # shallow wgmma rings (two CTAs per SM) at Qwen-like 4096 tokens and
#                                               # dense W8 M = 4096
#   bash benchmarks/gpu_session.sh moe-tuned    # the MoE benchmark with autotune_moe (8 candidates) at 16 / 64 / 512 tokens
#   bash benchmarks/gpu_session.sh wpipe        # warp_pipeline GPU tests; W4 g128 decode tiles with and without it
#   bash benchmarks/gpu_session.sh swap         # warp_pipeline / swap_ab GPU tests; decode tiles with rows8 + swap_ab (W4, W8)
#   bash benchmarks/gpu_session.sh bench-w4-f16 # the fp16-accumulation GEMM tests, then the W4A16 g128 dense benchmark
#   bash benchmarks/gpu_session.sh wpipe-n      # warp_pipeline across N / on MoE: GPU tests (refused until they pass), probes
#   bash benchmarks/gpu_session.sh wpipe8       # the low-bit MoE two-atom test; W8 channel decode tiles with and without it
#   bash benchmarks/gpu_session.sh wave8        # W8A16 channel bench (one-wave decode stages); swapped decode kernels
#                                               # of other 4-bit formats with / without launch bounds; Mixtral-like
#                                               # MoE at 64 tokens in 32 / 48-row blocks
#   bash benchmarks/gpu_session.sh swap-lb      # GPU tests of the swap_ab + launch-bounds and one-wave W8 defaults;
#                                               # MoE decode blocks with the weight-tile-major grid
#   bash benchmarks/gpu_session.sh nmajor       # MoE GPU tests of the default decode blocks (weight-tile-major grid
#                                               # over >= 32 experts); the MoE bench
#   bash benchmarks/gpu_session.sh m64-split    # 4096 x 14336 at M = 64 (W4 g128, W8 channel): split-K 2 / 4 tiles
#   bash benchmarks/gpu_session.sh m64-2cta     # M = 64 at 4096 x 14336: wgmma tiles two CTAs per SM (3-4 stages), split 2 / 4
#   bash benchmarks/gpu_session.sh moe32        # GPU tests of the 32-row MoE decode blocks (MOE_DECODE_BLOCK_32, off
#                                               # until they pass); the MoE bench at 64 / 256 tokens with it on
#   bash benchmarks/gpu_session.sh w8-small     # W8 channel decode at 4096^2 (split-K 2 / 4 in a cluster, 128-256 deep
#                                               # tiles, 2-6 stages, warp_pipeline) and M = 64 at 4096 x 14336 on
#                                               # mma.sync tiles (W4 g128 and W8 channel)
#   bash benchmarks/gpu_session.sh rounds       # issue-5 shapes at M 256-8192 (W4 g128, W8 channel), 3 timing rounds
#                                               # in alternating order against cuBLAS and Humming
#   bash benchmarks/gpu_session.sh wg-raster    # GPU tests of moe_n_major on the wgmma MoE GEMM (refused until they
#                                               # pass); Qwen-like at 512 / 4096 tokens with and without it
#   bash benchmarks/gpu_session.sh pdl          # GPU tests of programmatic dependent launch; decode with pdl off / on
#                                               # (each prefetch depth): flushed, back to back, between torch kernels
#   bash benchmarks/gpu_session.sh hm-configs   # the kernel configs Humming's heuristics pick for the bench points
#   bash benchmarks/gpu_session.sh verify-new   # one call: the GPU tests of pdl, MOE_DECODE_BLOCK_32 and the wgmma
#                                               # MoE raster, then their timings (pdl back to back, Mixtral-like 64
#                                               # tokens in 32-row blocks, Qwen-like 512 tokens rastered per block)
#   bash benchmarks/gpu_session.sh bench-new    # W4A16 g128 dense bench (pdl decode defaults), then the MoE bench
#   bash benchmarks/gpu_session.sh final-a      # W4A16 g128 dense bench; pdl and per-warp pipeline GPU tests
#   bash benchmarks/gpu_session.sh final-b      # W8A16 channel dense bench; the dense GEMM GPU tests
#   bash benchmarks/gpu_session.sh odd-m        # GPU tests of dense wgmma tiles of 176 / 192 / 240 / 96 / 80 / 48 rows
#                                               # and of a_split (refused until they pass); large-M probes of those
#                                               # tiles, 176 x 256 two-atom ones with a_split 4 (W4 g128)
#   bash benchmarks/gpu_session.sh between      # decode back to back with a torch kernel between the GEMMs (W4, W8)
#   bash benchmarks/gpu_session.sh table        # the shipped tuning table (W4A16 g128; W8A16 channel), 8 candidates
#   bash benchmarks/gpu_session.sh rebuild-w4   # that table for one format from scratch, then its README bench
#   bash benchmarks/gpu_session.sh pp-tests     # GPU tests of pingpong (two consumer warpgroup sets, alternate tiles)
#   bash benchmarks/gpu_session.sh pp-probe     # pingpong against the defaults: Qwen-like MoE 512 / 4096, W8 / W4 large M
#   bash benchmarks/gpu_session.sh persistent-large  # dense M 1024-8192 defaults against the persistent grid
#   bash benchmarks/gpu_session.sh short-k-bench  # the persistent short-K default's GPU tests; W4 / W8 benches, 3 rounds
#   bash benchmarks/gpu_session.sh moe-decode-near  # 16-row MoE decode tiles at Mixtral-like 1 / Qwen-like 64 tokens
#   bash benchmarks/gpu_session.sh moe-qwen-try # Qwen-like MoE 512 / 4096: 128-deep k-tiles, n-major raster (A/B)
#   bash benchmarks/gpu_session.sh moe-qwen512-confirm  # the 48-row candidates of moe-qwen-try again, 5 rounds
#   bash benchmarks/gpu_session.sh moe48-bench  # the 48-row 128-deep default's GPU tests; the MoE bench, 3 rounds
#   bash benchmarks/gpu_session.sh moe-suite-final  # the MoE GPU suite and the examples
#   bash benchmarks/gpu_session.sh pair tests moe-odd    # two steps at once on a two-GPU machine (GPU 0, GPU 1)
# Every step has its own time limit, so one that overruns leaves the others' results.
set -uo pipefail
OUT=${OUT:-benchmarks/results/run}
mkdir -p "$OUT"
if [ "${1:-}" = pair ]; then
  # pair STEP_A STEP_B [LIMIT_S]: two steps at once on a two-GPU machine (GPU 0 and GPU 1), each with its own
  # $OUT/gpu0 | gpu1 and summary; returns when both have ended or after LIMIT_S (default 570) seconds
  a=${2:?"usage: gpu_session.sh pair STEP_A STEP_B [LIMIT_S]"} b=${3:?"usage: gpu_session.sh pair STEP_A STEP_B"}
  limit=${4:-570}
  # a side may chain steps with '+' (between+m64-2cta): they run one after the other on that GPU
  side() { local s; for s in ${1//+/ }; do bash "$0" "$s"; done; }
  CUDA_VISIBLE_DEVICES=0 OUT="$OUT/gpu0" timeout "$limit" bash -c "$(declare -f side); side $a" "$0" \
    > "$OUT/gpu0.txt" 2>&1 & p0=$!
  CUDA_VISIBLE_DEVICES=1 OUT="$OUT/gpu1" timeout "$limit" bash -c "$(declare -f side); side $b" "$0" \
    > "$OUT/gpu1.txt" 2>&1 & p1=$!
  wait "$p0" "$p1"
  cat "$OUT/gpu0.txt" "$OUT/gpu1.txt"
  if [ "$(find "$OUT" -type f | wc -l)" -gt 8 ]; then     # at most 8 files come back: one tar of both
    t="pair_${a//+/_}_${b//+/_}.tar"
    tar -cf "/tmp/$t" -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv "/tmp/$t" "$OUT/" \
      && echo "== packed into $OUT/$t"
  fi
  exit 0
fi
step=${1:?"usage: gpu_session.sh tests|verify|large-m|moe-bm48|moe-4096|a8-tests|a8-probe|fold-tests|fold-probe|fold-16w|decode-16w|moe-odd|stream-k|moe-glu|moe-gated|moe-staged|moe-wgmma-small|probe|dense|glu|dense-small|decode8|moe|moe-ncu|decode-ncu|wgmma-ncu|moe-small|bench|bench-dense|hot|decode-ncu-boost|decode-stalls|decode-sass|w8-decode|decode-warps|moe-bench|moe-2cta|peer-ncu|atoms-tests|atoms-probe|atoms-verify|atoms-dense|tests-many-tiles|bench-w4-moe|layer-moe|glu-atoms|rows-verify|rows-qwen4096|tests-bm96|bk128-qwen512|moe-tuned|wpipe|wpipe8|wpipe-n|swap|bench-w4-f16|table|wave8|swap-lb|nmajor|m64-split|moe32|w8-small|rounds|wg-raster|pdl|hm-configs|verify-new|bench-new|final-a|final-b|odd-m|between|m64-2cta|table-w4|table-w8|hm-moe|odd-w8|m256-w4|readme-w4|readme-w8|tall-w4|tall-w8|tall-one|table-final|wgmma-pdl|m64-cn|moe-512|m64-k4|m64-ncu|rowperm-a|rowperm-b|suite-a|suite-b|rowperm-staged|m64-2cta-w4|staged-w4|staged-w8|w8-8warp|ring-tests|store-w4|store-w8|w8-large-staged|moe-ring|four-wg-tests|moe-four-wg|glu-ring|kslice-tests|kslice-probe|kslice-w8|tune-tests|rebuild-w4|rebuild-w8|rounds3-w4|rounds3-w8|moe-ks-tests|moe-ks-probe|rounds3-moe|moe-mixtral64|moe-tests|pp-tests|pp-probe|persistent-large|short-k-bench|moe-decode-near|moe-qwen-try|moe-qwen512-confirm|moe48-bench|moe-suite-final|moe-bulk-verify|moe-verify96|moe-bulk-default|explore1|explore2|tall-bench|moe-final|big-m|s22a|s22b|s22c|s22d|s22e|s22f|s23a|s23b|s23c|s23d|s23e|s23f|s23g|s23h|s23i|s24a|s24b|s24c|s24d|s24e|s24f|s24g|s24h|s24i|s24j|s25a|s25b|s25c|s25d|s25e|s25f"}
tag=$(date -u +%Y-%m-%d)_$(python3 -c "import re, torch; m = re.search(r'[A-Z]+ ?[0-9]+', torch.cuda.get_device_name()); \
print(m.group(0).replace(' ', '').lower() if m else 'gpu')")

run() {   # run LIMIT_S LOG COMMAND...: one step, its log in $OUT, its exit status in the summary
  local limit=$1 log=$2; shift 2
  echo "== $* (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  echo "   exit $? -> $OUT/$log: $(tail -n 1 "$OUT/$log")"
}

# the README's three benchmarks, each under its own time limit (seconds)
# (bench_w4 / bench_w8 LIMIT [more bench arguments, e.g. --rounds 3])
bench_w4() { local l=$1; shift; run "$l" "${tag}_w4a16_g128.log" python3 -m humming_cute.bench \
  --m 1,16,64,256,1024,4096,8192 --json "$OUT/${tag}_w4a16_g128.json" --png "$OUT/${tag}_w4a16_g128.png" "$@"; }
bench_w8() { local l=$1; shift; run "$l" "${tag}_w8a16_channel.log" python3 -m humming_cute.bench --b-dtype int8 \
  --group-size 0 --m 1,16,64,256,1024,4096,8192 --json "$OUT/${tag}_w8a16_channel.json" \
  --png "$OUT/${tag}_w8a16_channel.png" "$@"; }
bench_moe() { local l=$1; shift; run "$l" "${tag}_moe_w4a16_g128.log" python3 -m humming_cute.bench --moe \
  --json "$OUT/${tag}_moe_w4a16_g128.json" --png "$OUT/${tag}_moe_w4a16_g128.png" "$@"; }

case "$step" in
  tests)
    run 560 "${tag}_gpu-tests.log" python3 -m pytest -m gpu tests/ -n 16 -q -rf ;;
  verify)
    run 420 "${tag}_moe-tests.log" python3 -m pytest -m gpu tests/test_moe_gpu.py tests/test_moe_align_gpu.py \
      tests/test_moe_autotune.py tests/test_stream_k.py -n 16 -q -rf ;;
  large-m)
    run 250 "${tag}_config_probe_w8_large_m.log" python3 benchmarks/config_probe.py --m 4096,8192 --b int8 --group 0 \
      --shapes 28672x4096,8192x8192 --families sm90 --ws --persistent --stages 3,4 \
      --match '^sm90 256x128x64 st[0-9] split1( ws)?( persistent)?$' --budget-s 30
    run 160 "${tag}_config_probe_w4_large_m.log" python3 benchmarks/config_probe.py --m 8192 \
      --shapes 8192x8192,4096x4096 --families sm90 --ws --persistent --stages 3,4 \
      --match '^sm90 256x128x64 st[0-9] split1( ws)?( persistent)?$' --budget-s 30
    bench_moe 170 ;;
  stream-k)
    run 150 "${tag}_config_probe_stream_k_m256.log" python3 benchmarks/config_probe.py --m 256 \
      --shapes 8192x8192,28672x4096 --families sm90 --ws --persistent --stream-k --unverified \
      --match '^sm90 128x128x(64|128) st[0-9] split1( ws)?( persistent| stream-k)?$' --budget-s 45
    run 220 "${tag}_config_probe_stream_k.log" python3 benchmarks/config_probe.py --m 1024,4096 \
      --shapes 8192x8192,28672x4096 --families sm90 --ws --persistent --stream-k --unverified \
      --match '^sm90 256x128x64 st[0-9] split1( ws)?( persistent| stream-k)?$' --budget-s 40
    run 150 "${tag}_config_probe_stream_k_w8.log" python3 benchmarks/config_probe.py --m 4096 --b int8 --group 0 \
      --shapes 28672x4096,8192x8192 --families sm90 --ws --persistent --stream-k --unverified \
      --match '^sm90 256x128x64 st[0-9] split1( ws)?( persistent| stream-k)?$' --budget-s 40 ;;
  moe-odd)
    run 250 "${tag}_moe_probe_bm48_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512,384 --block-m 48,64 --bn 128,256 --bk 64,128 --wgmma --unverified --match '^sm90' --budget-s 30
    run 300 "${tag}_moe_probe_bm160_mixtral.log" python3 benchmarks/moe_config_probe.py --presets mixtral \
      --tokens 512,128 --block-m 160,128,64,48 --bn 128,256 --bk 64 --wgmma --unverified --match '^sm90' \
      --budget-s 45 ;;
  moe-bm48)
    run 280 "${tag}_moe_probe_bm48_tiles.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b,mixtral \
      --tokens 512,128 --block-m 48 --bn 128,256 --bk 64,128 --wgmma --persistent --cp-async-rows --match '^sm90' \
      --budget-s 35 ;;
  moe-4096)
    run 280 "${tag}_moe_probe_qwen4096_odd.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096 --block-m 96,128,160 --bn 128,256 --bk 64 --wgmma --persistent --match '^sm90' --budget-s 60 ;;
  fold-tests)
    run 330 "${tag}_fold-tests.log" python3 -m pytest -m gpu tests/test_decode_fold_gpu.py -n 16 -q -rf ;;
  fold-16w)
    run 150 "${tag}_fold-tests-2.log" python3 -m pytest -m gpu tests/test_decode_fold_gpu.py -n 16 -q -rf \
      -k "1024-128-1-False or 1024-64-1-False" ;;
  decode-16w)
    run 200 "${tag}_decode_probe_16warps.log" python3 benchmarks/decode_config_probe.py --m 1,16 \
      --shapes 8192x8192,28672x4096 --bn 64 --kw 1024/64,1024/128 --stages 2,3 --split 1 --two-level 1 --fold ;;
  a8-tests)
    run 300 "${tag}_a-rows8-tests.log" python3 -m pytest -m gpu tests/test_decode_fold_gpu.py -n 16 -q -rf ;;
  a8-probe)
    run 300 "${tag}_decode_probe_a_rows8.log" python3 benchmarks/decode_config_probe.py --m 1,8 \
      --shapes 8192x8192,28672x4096 --bn 64,128 --kw 1024/128,512/128 --stages 3,4,5 --split 1 --two-level 1 \
      --fold --a-rows8
    run 240 "${tag}_decode_probe_a_rows8_cluster.log" python3 benchmarks/decode_config_probe.py --m 1,8 \
      --shapes 4096x14336,4096x4096 --bn 64 --kw 512/128 --stages 3,4,5 --split 2 --cluster --two-level 1 \
      --fold --a-rows8 ;;
  hot)
    run 200 "${tag}_decode_probe_hot_w4.log" python3 benchmarks/decode_config_probe.py --m 1,16 \
      --shapes 8192x8192,4096x14336 --bn 64 --kw 1024/128,512/64,256/64 --stages 3,4,6 --split 1 --two-level 1 \
      --rotate 2 --hot 32
    run 150 "${tag}_decode_probe_hot_w8.log" python3 benchmarks/decode_config_probe.py --m 1 --b int8 --group 0 \
      --shapes 8192x8192,4096x14336 --bn 64 --kw 256/64,512/128 --stages 4 --split 1 --two-level 0 --rotate 2 \
      --hot 32 ;;
  decode-ncu-boost)
    run 280 "${tag}_decode_ncu_boost.txt" ncu --clock-control none --profile-from-start off --section SpeedOfLight \
      --section WarpStateStats --section SchedulerStats --section Occupancy --section MemoryWorkloadAnalysis \
      --section InstructionStats python3 benchmarks/decode_profile.py --m 1 --shapes 8192x8192
    run 200 "${tag}_decode_ncu_boost_w8.txt" ncu --clock-control none --profile-from-start off \
      --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
      python3 benchmarks/decode_profile.py --m 1 --shapes 8192x8192 --b int8 --group 0 ;;
  w8-decode)
    run 330 "${tag}_decode_probe_w8_tiles.log" python3 benchmarks/decode_config_probe.py --m 1,16 --b int8 --group 0 \
      --shapes 28672x4096,4096x4096 --bn 64,128 --kw 256/64,512/128 --stages 4 --split 1,2 --cluster \
      --two-level 0 ;;
  decode-warps)
    run 330 "${tag}_decode_probe_warps.log" python3 benchmarks/decode_config_probe.py --m 1,8 \
      --shapes 8192x8192,4096x14336 --bn 64 --kw 1024/128,1024/64,512/64,512/128 --stages 3,4 --split 1,2 --cluster \
      --two-level 1 --fold --a-rows8 --hot 32 \
      --only '^bn64 (bk1024 wk128 warps8 st3 split1 2lvl1$|bk1024 wk64 warps16 st3 split1 2lvl1 fold rows8 a_rows8$|bk512 wk64 warps8 st[34] split2 cluster 2lvl1 fold rows8( a_rows8)?$|bk512 wk128 warps4 st[34] split2 cluster 2lvl1( fold rows8 a_rows8)?$)' ;;
  decode-sass)
    run 200 "${tag}_decode_ncu_sass_run.txt" ncu --clock-control none --profile-from-start off --section SourceCounters \
      --section WarpStateStats -o "$OUT/decode_sass" python3 benchmarks/decode_profile.py --m 1 --shapes 8192x8192
    ncu --import "$OUT/decode_sass.ncu-rep" --page source --print-source sass --csv > /tmp/decode_sass.csv 2>&1
    run 60 "${tag}_decode_ncu_sass.txt" python3 benchmarks/ncu_top_sass.py /tmp/decode_sass.csv --top 60
    gzip -c /tmp/decode_sass.csv > "$OUT/${tag}_decode_ncu_sass.csv.gz"; rm -f "$OUT/decode_sass.ncu-rep" ;;
  decode-stalls)
    run 280 "${tag}_decode_ncu_stalls.txt" ncu --clock-control none --profile-from-start off --section SourceCounters \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      python3 benchmarks/decode_profile.py --m 1 --shapes 8192x8192 ;;
  fold-probe)
    run 330 "${tag}_decode_probe_fold.log" python3 benchmarks/decode_config_probe.py --m 1,16 \
      --shapes 8192x8192,28672x4096 --bn 64,128 --kw 1024/128,512/128 --stages 3 --split 1 --two-level 1 --fold ;;
  moe-glu)
    run 300 "${tag}_moe_glu_probe.log" python3 benchmarks/moe_glu_probe.py --tokens 64,512,4096 ;;
  moe-gated)
    run 540 "${tag}_moe_probe_gated.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b,mixtral \
      --tokens 1,16,64 --small --row-cache --grid-bound --budget-s 25 ;;
  moe-staged)
    run 330 "${tag}_moe_probe_staged_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096,512 --block-m 64,128 --bn 128,256 --bk 64 --wgmma --staged --persistent --cp-async-rows \
      --unverified --match '^sm90' --budget-s 60
    run 200 "${tag}_moe_probe_staged_mixtral.log" python3 benchmarks/moe_config_probe.py --presets mixtral \
      --tokens 512 --block-m 64,128 --bn 128,256 --bk 64 --wgmma --staged --persistent --cp-async-rows \
      --unverified --match '^sm90' --budget-s 60 ;;
  moe-wgmma-small)
    run 420 "${tag}_moe_probe_wgmma_small.log" python3 benchmarks/moe_config_probe.py --presets mixtral,qwen3-30b-a3b \
      --tokens 64,512,16 --block-m 16,32 --bn 128,256 --bk 64,128 --wgmma --unverified --match '^sm90' --budget-s 22
    run 130 "${tag}_moe_probe_bm32_deep.log" python3 benchmarks/moe_config_probe.py --presets mixtral --tokens 64 \
      --block-m 32 --bn 128,256 --bk 128,256,512 --match '^sm80' --budget-s 45 ;;
  probe)
    run 200 "${tag}_config_probe_cluster_n.log" python3 benchmarks/config_probe.py --m 256,4096 \
      --shapes 8192x8192 --families sm90 --ws --persistent --cluster-n 2,4 \
      --match '^sm90 (128|256)x(128|256)x64 st[0-9] split1' --budget-s 55
    run 100 "${tag}_config_probe_cluster_n_28672.log" python3 benchmarks/config_probe.py --m 4096 \
      --shapes 28672x4096 --families sm90 --ws --persistent --cluster-n 2,4 \
      --match '^sm90 (128|256)x(128|256)x64 st[0-9] split1' --budget-s 55
    run 230 "${tag}_moe_probe_qwen4096.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096 --block-m 64,128 --bn 128,256 --bk 64 --wgmma --persistent --cluster-n 2 \
      --match '^sm90' --budget-s 85 ;;
  dense)
    run 290 "${tag}_config_probe_cluster_n.log" python3 benchmarks/config_probe.py --m 256,4096 \
      --shapes 8192x8192,28672x4096 --families sm90 --ws --persistent --cluster-n 2,4 \
      --match '^sm90 (128|256)x(128|256)x64 st[0-9] split1' --budget-s 65
    run 250 "${tag}_config_probe_w8.log" python3 benchmarks/config_probe.py --m 256,4096 --b int8 --group 0 \
      --shapes 8192x8192,28672x4096 --families sm90 --ws --cluster-n 2 \
      --match '^sm90 (128|256)x(128|256)x64 st[0-9] split1( ws)?( cn2)?$' --budget-s 55 ;;
  glu)
    run 300 "${tag}_config_probe_glu.log" python3 benchmarks/config_probe.py --glu --unverified --m 256,4096 \
      --shapes 8192x8192,28672x4096 --families sm90 --ws --match '^sm90 (64|128|256)x128x(64|128) st[0-9] split1' \
      --budget-s 50 ;;
  dense-small)
    run 540 "${tag}_config_probe_m64_cluster_n.log" python3 benchmarks/config_probe.py --m 64,16 \
      --shapes 4096x14336,8192x8192,4096x4096,28672x4096 --families sm90 --cluster --cluster-n 2,4 \
      --match '^sm90 64x(64|128)x(64|128) st[0-9] split(1|2|4)( cluster)?( cn[24])?$' --budget-s 60 ;;
  decode8)
    run 300 "${tag}_decode_config_probe_w8_28672.log" python3 benchmarks/decode_config_probe.py --b int8 \
      --group 0 --shapes 28672x4096,8192x8192 --bn 64,128,256 --kw 128/64,256/64,512/128 --stages 3,4 \
      --split 1 --two-level 0 ;;
  moe)
    run 270 "${tag}_moe_probe_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512 --block-m 32,64 --bn 128,256 --bk 64 --wgmma --persistent --cluster-n 2,4 --cp-async-rows \
      --match '^sm90' --budget-s 100
    run 270 "${tag}_moe_probe_qwen4096.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096 --block-m 64,128 --bn 128,256 --bk 64 --wgmma --persistent --cluster-n 2,4 --cp-async-rows \
      --match '^sm90' --budget-s 100 ;;
  decode-ncu)
    run 240 "${tag}_decode_ncu.txt" ncu --profile-from-start off --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
      --section SourceCounters --section InstructionStats python3 benchmarks/decode_profile.py --sizes 8192 --m 1 ;;
  wgmma-ncu)
    for b in "uint4 128" "int8 0"; do set -- $b
      run 200 "${tag}_wgmma_ncu_${1}.txt" ncu --profile-from-start off --section SpeedOfLight --section WarpStateStats \
        --section SchedulerStats --section Occupancy --section MemoryWorkloadAnalysis --section SourceCounters \
        --section InstructionStats python3 benchmarks/decode_profile.py --m 4096 --shapes 28672x4096 --b "$1" \
        --group "$2"
    done ;;
  moe-ncu)
    run 400 "${tag}_moe_ncu.txt" ncu --profile-from-start off --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
      python3 benchmarks/moe_profile.py --preset qwen3-30b-a3b --proj down --tokens 4096 \
      --variants persistent,rows,cn2 ;;
  moe-small)
    run 300 "${tag}_moe_probe_small.log" python3 benchmarks/moe_config_probe.py --tokens 1,16 --small \
      --cluster-split 2,4 --n-major --budget-s 60
    run 100 "${tag}_align_timing.log" python3 benchmarks/align_timing.py ;;
  bench)
    bench_w4 220
    bench_w8 180
    bench_moe 180 ;;
  bench-dense)
    bench_w4 290
    bench_w8 285 ;;
  atoms-tests)
    run 560 "${tag}_two-atoms-tests.log" python3 -m pytest -m gpu -n 16 -q -rf \
      "tests/test_act8_gpu.py::test_act8_wgmma_two_atoms" tests/test_gemm_sm90_gpu.py tests/test_moe_gpu.py \
      -k "wgmma" ;;
  atoms-probe)
    run 170 "${tag}_config_probe_two_atoms_w8.log" python3 benchmarks/config_probe.py --m 4096 --b int8 --group 0 \
      --shapes 8192x8192 --families sm90 --persistent --two-atoms \
      --match '^sm90 (128x256x64|128x512x64|256x128x64) st[0-9] split1( ws)?( persistent)?( wn128)?$' --budget-s 150
    run 130 "${tag}_config_probe_two_atoms_w4.log" python3 benchmarks/config_probe.py --m 4096 \
      --shapes 8192x8192 --families sm90 --persistent --two-atoms \
      --match '^sm90 (128x256x64|128x512x64|256x128x64) st[0-9] split1( ws)?( persistent)?( wn128)?$' --budget-s 110
    run 260 "${tag}_moe_probe_two_atoms_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096,512 --block-m 128,96,48 --bn 256,512 --bk 64 --wgmma --two-atoms --persistent --cp-async-rows \
      --match '^sm90.*wn128' --budget-s 55 ;;
  tests-many-tiles)
    # persistent CTAs walking many tiles with two atoms per warpgroup first, on their own time limit
    run 120 "${tag}_two-atoms-many-tiles.log" python3 -m pytest -m gpu -n 8 -q -rf \
      "tests/test_moe_gpu.py::test_moe_wgmma_two_atoms_many_tiles_per_cta" \
      "tests/test_gemm_sm90_gpu.py::test_wgmma_two_atoms_per_warpgroup"
    run 430 "${tag}_gpu-tests.log" python3 -m pytest -m gpu tests/ -n 16 -q -rf \
      --deselect "tests/test_moe_gpu.py::test_moe_wgmma_two_atoms_many_tiles_per_cta" ;;
  bench-w4-moe)
    bench_w4 320
    bench_moe 230 ;;
  layer-moe)
    # the layer's MoE path (moe_forward(out=...)), both autotuners' GPU runs, the examples
    run 400 "${tag}_layer-moe-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_moe_autotune.py tests/test_autotune.py tests/test_examples_gpu.py tests/test_torch_op.py ;;
  atoms-verify)
    run 200 "${tag}_two-atoms-tests-2.log" python3 -m pytest -m gpu -n 16 -q -rf \
      "tests/test_act8_gpu.py::test_act8_wgmma_two_atoms" "tests/test_gemm_sm90_gpu.py::test_wgmma_two_atoms_per_warpgroup" \
      "tests/test_moe_gpu.py::test_moe_wgmma_two_atoms"
    run 340 "${tag}_moe_probe_two_atoms_qwen4096.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 4096 --block-m 128,96 --bn 256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent' ;;
  atoms-dense)
    run 330 "${tag}_config_probe_two_atoms_w4_m.log" python3 benchmarks/config_probe.py --m 256,1024,4096,8192 \
      --shapes 8192x8192,28672x4096 --families sm90 --persistent --two-atoms \
      --match '^sm90 128x256x64 st[0-9] split1 ws persistent wn128$'
    run 230 "${tag}_moe_probe_two_atoms_qwen512.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 512 --block-m 48 --bn 256 --bk 64,128 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent rows' ;;
  glu-atoms)
    # the two-atom GLU staged store and epilogue activations on the two-atom default tile, then the Qwen-like
    # 4096-token two-atom MoE tiles (each candidate printed as it is timed)
    run 200 "${tag}_two-atoms-glu-tests.log" python3 -m pytest -m gpu -n 16 -q -rf \
      "tests/test_gemm_sm90_gpu.py::test_wgmma_glu_staged" "tests/test_moe_gpu.py::test_moe_wgmma_glu_staged" \
      "tests/test_gemm_sm90_gpu.py::test_wgmma_epilogue_activations"
    run 330 "${tag}_moe_probe_two_atoms_qwen4096.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 4096 --block-m 128,96 --bn 256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent' ;;
  rows-verify)
    # cp.async rows with two consumer warpgroups (the register split within the CTA's pool), two atoms, GLUs; then
    # the Qwen-like 4096-token tiles with 96-row blocks
    run 230 "${tag}_rows-tests.log" python3 -m pytest -m gpu -n 16 -q -rf \
      "tests/test_moe_gpu.py::test_moe_wgmma_cp_async_rows" "tests/test_moe_gpu.py::test_moe_wgmma_two_atoms" \
      "tests/test_moe_gpu.py::test_moe_wgmma_two_atoms_many_tiles_per_cta" "tests/test_moe_gpu.py::test_moe_wgmma_glu_staged" \
      "tests/test_gemm_sm90_gpu.py::test_wgmma_glu_staged"
    run 300 "${tag}_moe_probe_rows_qwen4096_bm96.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 4096 --block-m 96 --bn 128,256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent' ;;
  rows-qwen4096)
    run 540 "${tag}_moe_probe_rows_qwen4096_bm128.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 4096 --block-m 128 --bn 128,256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws' ;;
  tests-bm96)
    # the whole GPU suite, then Qwen-like 4096 tokens with 96-row blocks (two-atom tiles no longer spill once the
    # producer-warpgroup kernels carry launch bounds and ptxas keeps their setmaxnreg)
    run 440 "${tag}_gpu-tests.log" python3 -m pytest -m gpu tests/ -n 16 -q -rf
    run 120 "${tag}_moe_probe_bounds_qwen4096.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 4096 --block-m 96,128 --bn 256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent rows' ;;
  bk128-qwen512)
    # 48-row two-atom tiles 128 deep (they spilled while ptxas dropped setmaxnreg) against 64-deep ones
    run 190 "${tag}_moe_probe_bk128_qwen512.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 512 --block-m 48 --bn 256 --bk 64,128 --wgmma --two-atoms --persistent \
      --cp-async-rows --match '^sm90 ws.*persistent rows' ;;
  peer-ncu)
    run 400 "${tag}_peer_ncu.txt" ncu --profile-from-start off --section LaunchStats --section Occupancy \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats python3 benchmarks/peer_profile.py --m 4096 \
      --shapes 8192x8192 --b int8 --group 0 --moe qwen3-30b-a3b:down:4096,qwen3-30b-a3b:down:512 ;;
  moe-2cta)
    run 330 "${tag}_moe_probe_2cta_qwen4096.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096 --block-m 128 --bn 128,256 --bk 64 --wgmma --wgmma-stages 8,4,3 --match '^sm90' --budget-s 150
    run 220 "${tag}_config_probe_2cta_w8.log" python3 benchmarks/config_probe.py --m 4096 --b int8 --group 0 \
      --shapes 8192x8192,28672x4096 --families sm90 --stages 3,4 --match '^sm90 (128x128|256x128)x64 st[0-9] split1$' \
      --budget-s 90 ;;
  moe-bench)
    bench_moe 400 ;;
  moe-bench3)
    # the README's MoE benchmark, three rounds per point
    bench_moe 570 --rounds 3 ;;
  moe-tuned)
    run 560 "${tag}_moe_w4a16_g128_tuned.log" python3 -m humming_cute.bench --moe --autotune 8 --tokens 16,64,512 \
      --json "$OUT/${tag}_moe_w4a16_g128_tuned.json" ;;
  wpipe)
    # per-warp pipelines (warp_pipeline): GPU tests, then W4 g128 decode tiles with and without it
    run 200 "${tag}_warp-pipeline-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_warp_pipeline_gpu.py
    run 360 "${tag}_decode_probe_wpipe_w4.log" python3 benchmarks/decode_config_probe.py --m 1,16 --bn 64 \
      --kw 1024/128,512/128 --stages 3 --split 1,2 --cluster --two-level 1 --warp-pipeline --top 24 ;;
  swap)
    # warp_pipeline / swap_ab GPU tests; then decode tiles with warp_pipeline, with and without rows8 + swap_ab
    run 170 "${tag}_swap-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_warp_pipeline_gpu.py
    run 270 "${tag}_decode_probe_swap_w4.log" python3 benchmarks/decode_config_probe.py --m 1,8,16,32 --bn 64 \
      --kw 1024/128,1024/64,512/128 --stages 3 --split 1,2 --cluster --two-level 1 --warp-pipeline --swap \
      --only wpipe --top 12
    run 120 "${tag}_decode_probe_swap_w8.log" python3 benchmarks/decode_config_probe.py --m 1,8 --b int8 --group 0 \
      --bn 64 --kw 256/64 --stages 4 --split 1,2 --cluster --two-level 0 --swap --top 8 ;;
  bench-w4-f16)
    # the fp16-accumulation GEMM tests (decode defaults), then the W4A16 g128 dense benchmark
    run 90 "${tag}_f16-accum-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_gemm_gpu.py -k use_f16_accum
    bench_w4 330 ;;
  wpipe-n)
    # warp_pipeline with warps across N and on the MoE GEMM (refused until these pass): GPU tests, then MoE decode
    # tiles (Mixtral-like / Qwen-like at 16 / 64 tokens) and W8 28672 x 4096 decode tiles with and without it
    run 200 "${tag}_wpipe-n-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_warp_pipeline_gpu.py \
      tests/test_moe_gpu.py -k "warps_n or warp_pipeline"
    run 220 "${tag}_moe_probe_wpipe.log" python3 benchmarks/moe_config_probe.py --presets mixtral,qwen3-30b-a3b \
      --tokens 16,64 --small --warp-pipeline --unverified --budget-s 50
    run 120 "${tag}_decode_probe_wpipe_n_w8.log" python3 benchmarks/decode_config_probe.py --m 1,16 --b int8 \
      --group 0 --shapes 28672x4096 --bn 64,128,256 --kw 256/64,256/128,512/128 --stages 2,3,4 --split 1 \
      --two-level 0 --warp-pipeline --unverified --top 12 ;;
  wpipe8)
    # the 1- to 3-bit MoE two-atom defaults' GPU test; W8 channel decode tiles with and without warp_pipeline
    run 150 "${tag}_moe_low_bits_tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_moe_gpu.py -k low_bits
    run 400 "${tag}_decode_probe_wpipe_w8.log" python3 benchmarks/decode_config_probe.py --m 1,16 --b int8 --group 0 \
      --bn 64 --kw 256/64,512/128 --stages 4 --split 1,2 --cluster --two-level 0 --warp-pipeline --top 24 ;;
  wave8)
    run 200 "${tag}_w8a16_channel_wave.log" python3 -m humming_cute.bench --b-dtype int8 --group-size 0 \
      --m 1,16,64,256,1024,4096,8192 \
      --json "$OUT/${tag}_w8a16_channel_wave.json" --png "$OUT/${tag}_w8a16_channel_wave.png"
    for bg in int4/128 float4e2m1/32 uint5/0 uint4/128; do
      run 60 "${tag}_decode_probe_launch_bounds_${bg%/*}.log" python3 benchmarks/decode_config_probe.py --m 1 \
        --b "${bg%/*}" --group "${bg#*/}" --swap --launch-bounds --only '^$'
    done
    run 130 "${tag}_moe_probe_mixtral64.log" python3 benchmarks/moe_config_probe.py --presets mixtral --tokens 64 \
      --block-m 32,48 --bn 128,256 --bk 64,128 --wgmma --n-major --budget-s 40 ;;
  swap-lb)
    run 220 "${tag}_swap-lb-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_warp_pipeline_gpu.py \
      -k "launch_bounds or one_wave or default_tiles"
    run 300 "${tag}_moe_probe_n_major_small.log" python3 benchmarks/moe_config_probe.py \
      --presets mixtral,qwen3-30b-a3b --tokens 16,64 --small --n-major --match 'n-major' --budget-s 22 ;;
  nmajor)
    run 190 "${tag}_moe-n-major-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      -k "decode_tiles or matches_reference or grid_bound or cuda_graph or row_cache"
    run 230 "${tag}_moe_w4a16_g128_n_major.log" python3 -m humming_cute.bench --moe \
      --json "$OUT/${tag}_moe_w4a16_g128_n_major.json" --png "$OUT/${tag}_moe_w4a16_g128_n_major.png" ;;
  m64-split)
    run 115 "${tag}_config_probe_m64_split_w4.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --families sm90,sm80 --ws --cluster --match 'split(2|4)' --top 10 --budget-s 70
    run 115 "${tag}_config_probe_m64_split_w8.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --b int8 --group 0 --families sm90,sm80 --ws --cluster --match 'split(2|4)' --top 10 --budget-s 70 ;;
  m64-2cta)
    # M = 64 at 4096 x 14336 (W4 1.11x, W8 1.10x the peer, which runs 64 x 128 x 64 tiles two CTAs per SM): wgmma
    # tiles on 3-4 stages (two CTAs fit per SM) split 2 / 4, with / without the producer warpgroup and clusters
    run 140 "${tag}_config_probe_m64_2cta_w4.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --families sm90 --ws --cluster --stages 3,4 --match 'x64 st[34] split(2|4)' --top 10 --budget-s 100
    run 140 "${tag}_config_probe_m64_2cta_w8.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --b int8 --group 0 --families sm90 --ws --cluster --stages 3,4 --match 'x64 st[34] split(2|4)' --top 10 \
      --budget-s 100 ;;
  moe32)
    run 200 "${tag}_moe32-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py -k block32
    run 250 "${tag}_moe_w4a16_g128_block32.log" python3 -c "import sys, humming_cute.tune.heuristics as h; \
h.MOE_DECODE_BLOCK_32 = True; from humming_cute.bench.run import main; sys.exit(main(sys.argv[1:]))" --moe \
      --tokens 16,64,256 --json "$OUT/${tag}_moe_w4a16_g128_block32.json" ;;
  w8-small)
    run 200 "${tag}_decode_probe_w8_4096.log" python3 benchmarks/decode_config_probe.py --m 1 --b int8 --group 0 \
      --shapes 4096x4096 --bn 64 --kw 128/64,256/64 --stages 2,4,6 --split 2,4 --cluster \
      --two-level 0 --top 12
    run 150 "${tag}_config_probe_m64_sm80_w4.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --families sm80 --cluster --top 10 --budget-s 100
    run 150 "${tag}_config_probe_m64_sm80_w8.log" python3 benchmarks/config_probe.py --m 64 --shapes 4096x14336 \
      --b int8 --group 0 --families sm80 --cluster --top 10 --budget-s 100 ;;
  rounds)
    run 280 "${tag}_w4a16_g128_rounds.log" python3 -m humming_cute.bench --m 256,1024,4096,8192 \
      --shapes 8192x8192,28672x4096 --peers torch,humming --rounds 3 --back-to-back-m none \
      --json "$OUT/${tag}_w4a16_g128_rounds.json"
    run 280 "${tag}_w8a16_channel_rounds.log" python3 -m humming_cute.bench --b-dtype int8 --group-size 0 \
      --m 256,1024,4096,8192 --shapes 8192x8192,28672x4096 --peers torch,humming --rounds 3 \
      --back-to-back-m none --json "$OUT/${tag}_w8a16_channel_rounds.json" ;;
  wg-raster)
    run 200 "${tag}_wg-raster-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py -k wgmma_n_major
    run 330 "${tag}_moe_probe_wg_raster_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512,4096 --block-m 48,128 --bn 256 --bk 64 --wgmma --two-atoms --persistent --cp-async-rows \
      --n-major --unverified --match '^sm90 ws bm(48|128) bn256 bk64 wm(48|128) wn128 .*persistent rows' \
      --budget-s 60 ;;
  pdl)
    # pdl GPU tests (pdl_prefetch included); pdl off / on with each prefetch depth on the default decode tiles,
    # flushed, back to back and back to back with a torch kernel between the GEMMs (W4 g128, W8 channel)
    run 100 "${tag}_pdl-tests.log" python3 -m pytest -m gpu -n 12 -q -rf tests/test_pdl_gpu.py
    run 230 "${tag}_decode_probe_pdl_ab_w4.log" python3 benchmarks/decode_config_probe.py --m 1,16 --rotate 8 \
      --pdl-ab 3 --only '^$'
    run 230 "${tag}_decode_probe_pdl_ab_w8.log" python3 benchmarks/decode_config_probe.py --m 1,16 --rotate 8 \
      --pdl-ab 3 --only '^$' --b int8 --group 0 ;;
  hm-configs)
    run 120 "${tag}_humming_configs_w4.log" python3 benchmarks/humming_configs.py
    run 120 "${tag}_humming_configs_w8.log" python3 benchmarks/humming_configs.py --b int8 --group 0
    run 120 "${tag}_humming_configs_moe.log" python3 benchmarks/humming_configs.py --moe ;;
  verify-new)
    run 200 "${tag}_new-options-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_pdl_gpu.py \
      tests/test_moe_gpu.py -k "pdl or block32 or wgmma_n_major"
    run 110 "${tag}_decode_probe_pdl.log" python3 benchmarks/decode_config_probe.py --m 1,16 --rotate 8 --pdl \
      --unverified --only '^$' --shapes 8192x8192,4096x14336
    run 120 "${tag}_moe_w4a16_g128_block32.log" python3 -c "import sys, humming_cute.tune.heuristics as h; \
h.MOE_DECODE_BLOCK_32 = True; from humming_cute.bench.run import main; sys.exit(main(sys.argv[1:]))" --moe \
      --moe-preset mixtral --tokens 64 --back-to-back-m none --json "$OUT/${tag}_moe_w4a16_g128_block32.json"
    run 130 "${tag}_moe_probe_wg_raster_qwen512.log" python3 benchmarks/moe_config_probe.py \
      --presets qwen3-30b-a3b --tokens 512 --block-m 48 --bn 256 --bk 64 --wgmma --two-atoms --persistent \
      --cp-async-rows --n-major --unverified --match '^sm90 ws bm48 bn256 bk64 wm48 wn128 .*persistent rows' \
      --budget-s 40 ;;
  bench-new)
    # the W4A16 g128 dense benchmark (decode defaults with pdl, back to back included), then the MoE benchmark
    # (32-row Mixtral-like decode blocks)
    bench_w4 300
    bench_moe 220 ;;
  final-a)
    # W4A16 g128 dense bench (pdl with one weight stage before the wait); the pdl and per-warp pipeline GPU tests
    bench_w4 300
    run 230 "${tag}_pdl-wpipe-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_pdl_gpu.py \
      tests/test_warp_pipeline_gpu.py ;;
  final-b)
    # W8A16 channel dense bench; the dense GEMM GPU tests (every format at the decode defaults)
    bench_w8 285
    run 260 "${tag}_gemm-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_gpu.py ;;
  odd-m)
    # dense wgmma tiles of non-power-of-two heights and a_split (refused until these GPU tests pass), then large-M
    # probes of 176 / 192-row tiles and 176 x 256 two-atom tiles with a_split 4 (the peer runs 176 x 256 x 64 tiles
    # there) against the default
    run 200 "${tag}_odd-m-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_sm90_gpu.py \
      -k "odd_block_m or a_split"
    run 350 "${tag}_config_probe_odd_m_w4.log" python3 benchmarks/config_probe.py --m 4096,8192 \
      --shapes 8192x8192,28672x4096 --families sm90 --block-m 128,176,192 --ws --persistent --two-atoms \
      --a-split 4 --cluster-n 2 --unverified --top 8 --budget-s 90 \
      --match '(176x256x64 .*ws.*wn128 as4|176x128x64 .*ws|192x128x64 .*ws persistent$|128x256x64 .*ws persistent wn128( as4)?$)' ;;
  between)
    # decode back to back with a torch kernel after each GEMM (the realistic chain for pdl), W4 g128 and W8 channel
    run 150 "${tag}_w4a16_g128_between.log" python3 -m humming_cute.bench --m 1,16,64 --back-to-back-between \
      --json "$OUT/${tag}_w4a16_g128_between.json"
    run 150 "${tag}_w8a16_channel_between.log" python3 -m humming_cute.bench --b-dtype int8 --group-size 0 \
      --m 1,16,64 --back-to-back-between --json "$OUT/${tag}_w8a16_channel_between.json" ;;
  table|table-w4|table-w8)
    # the shipped tuning table (humming_cute/tune/tables/<card>.json): W4A16 g128 and W8A16 channel, 8 candidates
    # per (shape, M); a candidate replaces the heuristic default only when 3 % faster (build_table --min-gain)
    card=$(python3 -c "import re, torch; print(re.sub(r'[^A-Za-z0-9.-]+', '_', torch.cuda.get_device_name()))")
    [ "$step" != table-w8 ] && run 540 "${tag}_tune_table_w4a16.log" python3 -m humming_cute.tune.build_table \
      --b-dtype uint4 --group-size 128 --max-candidates 8 --rep-ms 30 --out "$OUT/${card}.json"
    [ "$step" != table-w4 ] && run 420 "${tag}_tune_table_w8a16.log" python3 -m humming_cute.tune.build_table \
      --b-dtype int8 --group-size 0 --max-candidates 8 --rep-ms 30 --out "$OUT/${card}.json" ;;
  odd-w8)
    # W8 large M (1.11x cuBLAS at 28672 x 4096 M = 4096): 176 / 192-row tiles and 176 x 256 two-atom tiles with
    # a_split 4 against the default (and the shipped table's entry where it has one)
    run 240 "${tag}_config_probe_odd_m_w8.log" python3 benchmarks/config_probe.py --m 4096 --shapes 28672x4096 \
      --b int8 --group 0 --families sm90 --block-m 128,176,192 --ws --persistent --two-atoms --a-split 4 \
      --cluster-n 2 --top 8 --budget-s 150 \
      --match '(176x256x64 .*ws.*wn128 as4|176x128x64 .*ws|192x128x64 .*ws persistent$|128x256x64 .*ws persistent wn128$)' ;;
  m256-w4)
    # W4 8192^2 M = 256 (1.075x cuBLAS): the wgmma tiles around the default, odd heights included
    run 150 "${tag}_config_probe_m256_w4.log" python3 benchmarks/config_probe.py --m 256 --shapes 8192x8192 \
      --families sm90 --block-m 64,128,176,256 --ws --persistent --two-atoms --a-split 4 --cluster-n 2 --top 10 \
      --budget-s 110 ;;
  readme-w4)
    bench_w4 300 ;;
  readme-w8)
    bench_w8 285 ;;
  rounds3-w4)
    # the README bench in 3 timing rounds per point, the order reversed every other round (median of the rounds'
    # medians: the card's clock drift over a row no longer favours whichever implementation ran first)
    bench_w4 560 --rounds 3 ;;
  rounds3-w8)
    bench_w8 560 --rounds 3 ;;
  rounds3-moe)
    bench_moe 560 --rounds 3 ;;
  tall-w4|tall-w8)
    # the tuning table at M = 1024-8192 with the tall-tile candidates (176 x 256 two-atom with a_split 4, 192 x 128),
    # built into a copy of the shipped tables ($OUT/tables, HUMMING_CUTE_TABLES_DIR: the two sides do not share a
    # file), then the README bench of that format against it
    mkdir -p "$OUT/tables" && cp humming_cute/tune/tables/*.json "$OUT/tables/"
    export HUMMING_CUTE_TABLES_DIR="$OUT/tables"
    if [ "$step" = tall-w4 ]; then
      run 230 "${tag}_tune_table_tall_w4a16.log" python3 -m humming_cute.tune.build_table --b-dtype uint4 \
        --group-size 128 --m 1024,4096,8192 --max-candidates 10 --rep-ms 30
      bench_w4 300
    else
      run 230 "${tag}_tune_table_tall_w8a16.log" python3 -m humming_cute.tune.build_table --b-dtype int8 \
        --group-size 0 --m 1024,4096,8192 --max-candidates 10 --rep-ms 30
      bench_w8 285
    fi ;;
  tall-one)
    # one GPU: the W8 tuning table at M = 1024-8192 with the tall-tile candidates, the W8 bench at those M against
    # it, then the W4 table at those M (all into a copy of the shipped tables, $OUT/tables)
    mkdir -p "$OUT/tables" && cp humming_cute/tune/tables/*.json "$OUT/tables/"
    export HUMMING_CUTE_TABLES_DIR="$OUT/tables"
    run 220 "${tag}_tune_table_tall_w8a16.log" python3 -m humming_cute.tune.build_table --b-dtype int8 \
      --group-size 0 --m 1024,4096,8192 --max-candidates 10 --rep-ms 30
    run 150 "${tag}_w8a16_channel_tall.log" python3 -m humming_cute.bench --b-dtype int8 --group-size 0 \
      --m 1024,4096,8192 --json "$OUT/${tag}_w8a16_channel_tall.json"
    run 170 "${tag}_tune_table_tall_w4a16.log" python3 -m humming_cute.tune.build_table --b-dtype uint4 \
      --group-size 128 --m 1024,4096,8192 --max-candidates 10 --rep-ms 30 ;;
  table-final)
    # the autotune GPU test, then the shipped tuning table from scratch (an empty $OUT/tables: the heuristics are
    # the defaults), W4A16 g128 and W8A16 channel at every bench M, each non-default winner confirmed against the
    # default in 3 alternating re-timings (build_table --confirm) and kept only when 3 % faster (--min-gain)
    mkdir -p "$OUT/tables" && export HUMMING_CUTE_TABLES_DIR="$OUT/tables"
    run 60 "${tag}_autotune-tests.log" python3 -m pytest -m gpu -q -rf tests/test_autotune.py
    for f in "uint4 128 w4a16" "int8 0 w8a16"; do
      set -- $f
      run 220 "${tag}_tune_table_final_$3.log" python3 -m humming_cute.tune.build_table --b-dtype "$1" \
        --group-size "$2" --m 1,16,64,256,1024,4096,8192 --max-candidates 8 --rep-ms 30
    done ;;
  wgmma-pdl)
    # pdl on the wgmma kernel (refused until these pass): its GPU tests, the on-disk kernel cache's GPU test (off
    # until it passes), then pdl off / on at M = 64 on the default wgmma tiles, flushed, back to back, and with a
    # torch kernel between (W4 g128, W8 channel)
    run 150 "${tag}_wgmma-pdl-tests.log" python3 -m pytest -m gpu -n 12 -q -rf tests/test_pdl_gpu.py -k wgmma
    run 90 "${tag}_disk-cache-tests.log" python3 -m pytest -m gpu -q -rf tests/test_kernel_disk_cache.py
    run 150 "${tag}_decode_probe_pdl_ab_wgmma_w4.log" python3 benchmarks/decode_config_probe.py --m 64 --rotate 8 \
      --pdl-ab 3 --only '^$' --unverified
    run 150 "${tag}_decode_probe_pdl_ab_wgmma_w8.log" python3 benchmarks/decode_config_probe.py --m 64 --rotate 8 \
      --pdl-ab 3 --only '^$' --unverified --b int8 --group 0 ;;
  m64-cn)
    # M = 64 (W4 4096 x 14336 1.11x the peer): the activation tile is re-read by every weight-tile CTA (64 x 64
    # tiles: 64 CTAs read all of x's K half each, about 4x the weight bytes through L2); multicast over 2 / 4 CTAs
    # along N on the split-in-a-cluster default and its 128-wide twin
    run 200 "${tag}_config_probe_m64_cn.log" python3 benchmarks/config_probe.py --m 64 \
      --shapes 4096x14336,8192x8192 --families sm90 --cluster --cluster-n 2,4 --top 10 --budget-s 90 \
      --match '^sm90 64x(64|128)x128 st[0-9]+ split2 cluster( cn[24])?$' ;;
  m64-k4)
    # M = 64 at 4096 x 14336: 128-wide weight tiles with split-K 4 inside a cluster (128 CTAs reading each
    # activation K slice once per 128 weight rows: half the L2 traffic of the 64 x 64 split-2 default), 64 / 128 deep
    run 200 "${tag}_config_probe_m64_k4.log" python3 benchmarks/config_probe.py --m 64 \
      --shapes 4096x14336,4096x4096 --families sm90 --cluster --top 10 --budget-s 120 --stages 4,6 \
      --match '^sm90 64x(64|128)x(64|128) st[0-9]+ split(2|4) cluster$' ;;
  m64-ncu)
    # Nsight Compute of ours and Humming's kernels where we trail: W4 g128 4096 x 14336 M = 64, W8 channel
    # 4096^2 M = 1, Qwen-like up / down at 512 tokens (L2 / DRAM traffic, stall reasons, occupancy)
    secs="--section LaunchStats --section Occupancy --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section SchedulerStats"
    run 200 "${tag}_peer_ncu_m64.txt" ncu --profile-from-start off $secs python3 benchmarks/peer_profile.py \
      --m 64 --shapes 4096x14336 --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512
    run 120 "${tag}_peer_ncu_w8_m1.txt" ncu --profile-from-start off $secs python3 benchmarks/peer_profile.py \
      --m 1 --shapes 4096x4096 --b int8 --group 0 ;;
  rowperm-a)
    # row_perm (conflict-free packed-weight loads on the wgmma path, the new default): its bitwise tests, then the
    # wgmma GEMM and MoE suites with it on against the reference
    run 120 "${tag}_row-perm-tests.log" python3 -m pytest -m gpu -n 12 -q -rf tests/test_row_perm_gpu.py
    run 400 "${tag}_row-perm-suite-a.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_sm90_gpu.py \
      tests/test_moe_gpu.py ;;
  rowperm-b)
    # the other suites that run wgmma kernels (8-bit activations, dense defaults, epilogues, pdl, stream-K, bench,
    # examples, disk cache), then row_perm off / on on the default configs (W4 g128, W8 channel, Qwen-like MoE)
    run 240 "${tag}_row-perm-suite-b.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_act8_gpu.py \
      tests/test_gemm_gpu.py tests/test_epilogue_gpu.py tests/test_pdl_gpu.py tests/test_stream_k.py \
      tests/test_bench_gpu.py tests/test_examples_gpu.py tests/test_kernel_disk_cache.py
    run 190 "${tag}_row_perm_probe_w4.log" python3 benchmarks/row_perm_probe.py --m 64,256,4096 \
      --moe qwen3-30b-a3b --moe-tokens 512,4096
    run 110 "${tag}_row_perm_probe_w8.log" python3 benchmarks/row_perm_probe.py --m 64,4096 --b int8 --group 0 ;;
  suite-a)
    # the GPU suite in two halves (one per GPU of a two-GPU host): wgmma GEMM and MoE side
    run 420 "${tag}_gpu-tests-a.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_gemm_sm90_gpu.py tests/test_moe_align_gpu.py tests/test_epilogue_gpu.py tests/test_row_perm_gpu.py \
      tests/test_pdl_gpu.py tests/test_stream_k.py tests/test_bench_gpu.py tests/test_examples_gpu.py \
      tests/test_kernel_disk_cache.py tests/test_autotune.py tests/test_moe_autotune.py ;;
  suite-b)
    # ... and the mma.sync / activation-quantization side
    run 420 "${tag}_gpu-tests-b.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_warp_pipeline_gpu.py \
      tests/test_gemm_gpu.py tests/test_act8_gpu.py tests/test_decode_fold_gpu.py tests/test_quantize_input_gpu.py \
      tests/test_mma_int_compile.py ;;
  rowperm-staged)
    # row_perm where it lost (two-atom / 256-row tiles, MoE at 4096 tokens: the permuted C stores are 4-byte
    # pieces): with the shared-memory staged C store, whose global stores are 16-byte row vectors either way
    run 210 "${tag}_row_perm_probe_staged.log" python3 benchmarks/row_perm_probe.py --staged --m 256,4096 \
      --shapes 8192x8192,28672x4096,4096x14336 --moe qwen3-30b-a3b --moe-tokens 4096 ;;
  m64-2cta-w4)
    # M = 64 at 4096 x 14336 with row_perm (the conflict-free weight loads): wgmma tiles two CTAs per SM again
    run 150 "${tag}_config_probe_m64_2cta_w4_rowperm.log" python3 benchmarks/config_probe.py --m 64 \
      --shapes 4096x14336 --families sm90 --ws --cluster --stages 3,4 --match 'x64 st[34] split(2|4)' --top 10 \
      --budget-s 110 ;;
  staged-w4|staged-w8)
    # the W4 / W8 benches at M = 256-8192 with heuristics.DENSE_WGMMA_STAGED on (the staged C store for dense wgmma
    # GEMMs from M = 256; the README runs are without it): decides whether it becomes the default (the JSON's
    # command line does not show the switch: say so where the run is cited)
    if [ "$step" = staged-w4 ]; then fmt="--b-dtype uint4 --group-size 128"; name=w4a16_g128; else
      fmt="--b-dtype int8 --group-size 0"; name=w8a16_channel; fi
    run 300 "${tag}_${name}_staged.log" python3 -c "import sys
import humming_cute.tune.heuristics as h
from humming_cute.bench.run import main
h.DENSE_WGMMA_STAGED = True
raise SystemExit(main(sys.argv[1:]))" $fmt --m 256,1024,4096,8192 --json "$OUT/${tag}_${name}_staged.json" ;;
  ring-tests)
    # the staged C store with its staging tiles in the activation ring (`GemmConfig.staging_in_ring`): the GPU tests
    # of the staged store (dense, GLU, two atoms, multicast, row_perm, MoE), each bitwise against the direct store
    run 400 "${tag}_staging-in-ring-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_sm90_gpu.py \
      tests/test_row_perm_gpu.py tests/test_moe_gpu.py -k "staged or cluster_n or two_atoms or glu" ;;
  store-w4|store-w8)
    # the default configs' direct C store against the staged store (in the ring where the CTA runs one tile), 3
    # alternating rounds, M = 256-8192 on the four shapes
    if [ "$step" = store-w4 ]; then fmt="--b uint4 --group 128"; name=w4; else fmt="--b int8 --group 0"; name=w8; fi
    run 250 "${tag}_store_probe_${name}.log" python3 benchmarks/row_perm_probe.py --store $fmt --m 256,1024,4096,8192 ;;
  w8-large-staged)
    # W8 at M = 4096 / 8192 on 8192^2 and M = 1024 on 28672 x 4096 (1.02-1.08x the peer with the staged default):
    # the staged wgmma tilings (in the ring; persistent ones beside it)
    run 300 "${tag}_config_probe_w8_large_staged.log" python3 benchmarks/config_probe.py --b int8 --group 0 \
      --m 4096,8192 --shapes 8192x8192 --families sm90 --ws --persistent --staged --two-atoms --match staged \
      --top 8 --budget-s 110
    run 150 "${tag}_config_probe_w8_28672_m1024_staged.log" python3 benchmarks/config_probe.py --b int8 --group 0 \
      --m 1024 --shapes 28672x4096 --families sm90 --ws --persistent --staged --two-atoms --match staged \
      --top 8 --budget-s 110 ;;
  moe-ring)
    # Qwen3-30B-A3B-like MoE at 512 / 4096 tokens (1.07-1.13x the peer): wgmma candidates with the staged store,
    # whose staging tiles now take the activation ring where the grid is not persistent
    run 400 "${tag}_moe_probe_staged_ring_qwen.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096,512 --block-m 48,128 --bn 128,256 --bk 64 --wgmma --staged --persistent --cp-async-rows \
      --match '^sm90' --budget-s 80 ;;
  four-wg-tests)
    # the producer warpgroup with four consumer warpgroups (20 warps): MoE and dense GPU tests
    run 300 "${tag}_four-consumer-wg-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_gemm_sm90_gpu.py -k "four_consumer or two_atoms_per_warpgroup" ;;
  moe-four-wg)
    # Qwen3-30B-A3B-like 512 tokens (1.07 / 1.10x the peer, whose kernel there runs 640 threads): 48-row blocks with
    # the producer and four consumer warpgroups (512-wide two-atom tiles with a_split 4, or 256-wide one-atom tiles)
    run 300 "${tag}_moe_probe_four_wg_qwen512.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512 --block-m 48 --bn 256,512 --bk 64 --wgmma --four-wg --a-split 4 --persistent --cp-async-rows \
      --match 'warps20' --budget-s 100 ;;
  glu-ring)
    # GLU layers: the default's 8 stages (fp32 staging tiles in the activation ring) against the 7 / 6 the staging
    # tiles left beside the ring
    run 200 "${tag}_glu_ring_probe.log" python3 benchmarks/glu_ring_probe.py --m 256,1024,4096 ;;
  kslice-tests)
    # warp_k = block_k / 2 on the wgmma mainloop (K halves across consumer warpgroups): its GPU tests, and the wgmma
    # suite's cluster / split / staged cases that run the same kernel code at warp_k = block_k
    run 300 "${tag}_kslice-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_sm90_gpu.py \
      -k "k_slices or cluster_n or staged_store or two_atoms" ;;
  kslice-probe)
    # ... against the default at M = 64 / 256 (the W4 M = 64 miss at 4096 x 14336: one warpgroup per SM issuing,
    # 2026-11-30_h200_peer_ncu_m64.txt)
    run 250 "${tag}_kslice_probe_w4.log" python3 benchmarks/kslice_probe.py --m 64,256 ;;
  kslice-w8)
    # K slices (warp_k = 64 on 128-deep wgmma tiles) for 8-bit weights at M = 64 / 256 (the default only takes them
    # for 4-bit weights, the format measured)
    run 250 "${tag}_kslice_probe_w8.log" python3 benchmarks/kslice_probe.py --m 64,256 --b int8 --group 0 ;;
  tune-tests)
    # the autotuners' GPU tests (the dense candidates include K slices up to M = 256)
    run 300 "${tag}_autotune-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_autotune.py \
      tests/test_moe_autotune.py ;;
  moe-ks-tests)
    # K slices on the persistent grid and the MoE GEMM (refused before): their GPU tests, dense and MoE
    run 420 "${tag}_kslice-moe-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_gemm_sm90_gpu.py -k "k_slices" ;;
  moe-ks-probe)
    # Qwen-like 512 tokens (48-row blocks, 1.07 / 1.10x Humming): producer-warpgroup persistent cp.async-rows tiles
    # 128 deep with and without K slices (the peer runs 16 mma.sync warps per SM there; ours 8 consumer warps)
    run 540 "${tag}_moe_probe_kslice_qwen512.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512 --block-m 48 --bn 128,256,64 --bk 128 --wgmma --persistent --cp-async-rows --two-atoms \
      --k-slices --match 'ws bm48 .*persistent rows' --budget-s 250 ;;
  moe-mixtral64)
    # Mixtral-like up projection at 64 tokens (32-row blocks on one-tile-per-CTA 32 x 256 x 128 wgmma tiles: 1.03x
    # Humming, 57 % of the memory floor over 6.8 waves of CTAs): the producer warpgroup with four consumer warpgroups,
    # the persistent grid, cp.async rows, K slices on 128-wide tiles
    run 500 "${tag}_moe_probe_mixtral64_persistent.log" python3 benchmarks/moe_config_probe.py --presets mixtral \
      --tokens 64 --block-m 32 --bn 256,128 --bk 128 --wgmma --four-wg --persistent --cp-async-rows --k-slices \
      --match '^sm90 ws bm32' --budget-s 300 ;;
  moe-tests)
    # the MoE GEMM GPU tests (defaults included)
    run 420 "${tag}_moe-gpu-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py ;;
  rebuild-w4|rebuild-w8)
    # the shipped tuning table of one format rebuilt from scratch with the current defaults (staged C store, K slices)
    # and candidates: an empty $OUT/tables (HUMMING_CUTE_TABLES_DIR), every bench M, 8 candidates, each non-default
    # winner confirmed in 3 alternating re-timings and kept only when 3 % faster; then that format's README bench
    # against the new table
    mkdir -p "$OUT/tables" && export HUMMING_CUTE_TABLES_DIR="$OUT/tables"
    if [ "$step" = rebuild-w4 ]; then
      run 260 "${tag}_tune_table_w4a16.log" python3 -m humming_cute.tune.build_table --b-dtype uint4 \
        --group-size 128 --m 1,16,64,256,1024,4096,8192 --max-candidates 8 --rep-ms 30
      bench_w4 200
    else
      run 260 "${tag}_tune_table_w8a16.log" python3 -m humming_cute.tune.build_table --b-dtype int8 \
        --group-size 0 --m 1,16,64,256,1024,4096,8192 --max-candidates 8 --rep-ms 30
      bench_w8 200
    fi ;;
  w8-8warp)
    # W8 4096^2 decode (1.04-1.09x the peer flushed, whose kernel runs 132 CTAs of 8 warps on 8 x 128 x 128 tiles,
    # 2026-11-30_h200_peer_ncu_w8_m1.txt; ours 128 CTAs of 4 warps): 8 K-split warps per CTA, 64 / 128-wide tiles
    run 220 "${tag}_decode_probe_w8_8warps.log" python3 benchmarks/decode_config_probe.py --m 1,16 --b int8 \
      --group 0 --shapes 4096x4096 --bn 64,128 --kw 512/64,256/32,1024/128 --stages 2,3,4 --split 1,2 --cluster \
      --two-level 0 --top 12 ;;
  moe-512)
    # Qwen3-30B-A3B-like 512 tokens (1.07 / 1.10x the peer, which runs 48 x 512 x 64 / 40 x 512 x 64 tiles with
    # stream-K there): 48-row wgmma blocks 512 wide (two atoms per warpgroup, four consumer warpgroups, a_split 2:
    # 106 registers, no spills) against the default 48 x 256
    run 240 "${tag}_moe_probe_bn512_qwen512.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 512 --block-m 48 --bn 256,512 --bk 64 --wgmma --two-atoms --a-split 2 --persistent --cp-async-rows ;;
  pp-tests)
    # pingpong (two sets of consumer warpgroups on alternate tiles of the persistent wgmma grid): its GPU tests, dense
    # (incl. the staged GLU store) and MoE, each also bitwise against the same tile without it
    run 300 "${tag}_pingpong-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_sm90_gpu.py \
      tests/test_moe_gpu.py -k pingpong ;;
  pp-probe)
    # pingpong against the defaults: Qwen-like MoE at 512 / 4096 tokens (1.03-1.14x the peer), W8 channel M = 1024 /
    # 4096 at 28672 x 4096 and 8192^2, W4 g128 8192^2 M = 8192 (the large-M points within 4 % of the peer)
    run 280 "${tag}_pingpong_probe_moe_w8.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512,qwen3-30b-a3b:up:4096,qwen3-30b-a3b:down:4096 \
      --dense 28672x4096:1024,28672x4096:4096,8192x8192:4096 --b int8 --group 0
    run 120 "${tag}_pingpong_probe_w4.log" python3 benchmarks/pingpong_probe.py --moe "" --dense 8192x8192:8192 ;;
  persistent-large)
    # the dense default at M = 1024-8192 (one 256 x 128 x 64 tile per CTA, two consumer warpgroups) against the same
    # tile with the producer warpgroup on the persistent grid (0.97-0.99x in the pingpong probe), 5 rounds, W8 / W4
    dims="28672x4096 8192x8192 4096x14336 4096x4096"
    specs=$(for d in $dims; do for m in 1024 4096 8192; do printf '%s:%s,' "$d" "$m"; done; done)
    run 280 "${tag}_persistent_probe_w8.log" python3 benchmarks/pingpong_probe.py --moe "" --dense "$specs" \
      --b int8 --group 0 --only '^persistent$' --rounds 5
    run 280 "${tag}_persistent_probe_w4.log" python3 benchmarks/pingpong_probe.py --moe "" --dense "$specs" \
      --only '^persistent$' --rounds 5 ;;
  short-k-bench)
    # GPU tests of the persistent short-K default (`WGMMA_PERSISTENT_SHORT_K`), then the README's W4 / W8 benches in
    # three rounds with it
    run 100 "${tag}_short-k-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_gemm_sm90_gpu.py \
      -k "persistent_short_k or pingpong"
    bench_w4 235 --rounds 3
    bench_w8 235 --rounds 3 ;;
  moe-decode-near)
    # the fixed short-K default test; then 16-row MoE decode tiles (block_n 64-256, K 128-1024 deep over up to 8
    # K-warps, 3 / 4 stages) at the two decode points within 2 % of the peer: Mixtral-like up at one token (1.011x)
    # and Qwen3-30B-A3B-like down at 64 tokens (1.006x)
    run 90 "${tag}_short-k-tests-2.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_gemm_sm90_gpu.py \
      -k "persistent_short_k"
    run 200 "${tag}_moe_probe_small_mixtral1.log" python3 benchmarks/moe_config_probe.py --presets mixtral \
      --tokens 1 --small --budget-s 90
    run 200 "${tag}_moe_probe_small_qwen64.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 64 --small --budget-s 90 ;;
  moe-qwen-try)
    # Qwen-like MoE at 512 / 4096 tokens (1.03-1.14x the peer): the default against 128-deep k-tiles (two-atom
    # A fragments in 2 pieces where the registers need it) and the weight-tile-major raster, 3 alternating rounds
    run 400 "${tag}_moe_probe_qwen_bk128.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512,qwen3-30b-a3b:up:4096,qwen3-30b-a3b:down:4096 \
      --try bk128as2=block_k:128,warp_k:128,a_split:2 --try bk128=block_k:128,warp_k:128 \
      --try nmajor=moe_n_major:True --only '^(bk128|nmajor)' ;;
  moe-qwen512-confirm)
    # the 48-row (Qwen-like 512 tokens) candidates within 3 % of the default in moe-qwen-try, combined, 5 rounds
    run 300 "${tag}_moe_probe_qwen512_confirm.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512 --rounds 5 \
      --try bk128as2=block_k:128,warp_k:128,a_split:2 --try nmajor=moe_n_major:True \
      --try bk128as2-nmajor=block_k:128,warp_k:128,a_split:2,moe_n_major:True --only '^(bk128|nmajor)' ;;
  moe48-bench)
    # GPU tests of the 128-deep 48-row default (`MOE_BLOCK_48_DEEP_K`), then the README's MoE bench, 3 rounds
    run 70 "${tag}_moe-block48-deep-k-tests.log" python3 -m pytest -m gpu -n 9 -q -rf tests/test_moe_gpu.py \
      -k "block48_deep_k"
    bench_moe 470 --rounds 3 ;;
  moe-suite-final)
    # the MoE GEMM GPU suite and the examples after the session's default changes (48-row 128-deep tiles)
    run 230 "${tag}_moe-gpu-tests-final.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_examples_gpu.py ;;
  moe-epi)
    # the wgmma MoE row store in one pass over each thread's routed rows (all atoms, one row address per row):
    # the wgmma MoE GPU tests, then the Qwen-like (512 / 4096 tokens) and Mixtral-like (64 / 512 / 4096) points
    run 200 "${tag}_moe-epilogue-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      -k "wgmma or sm90"
    run 180 "${tag}_moe_qwen_epi.log" python3 -m humming_cute.bench --moe --moe-preset qwen3-30b-a3b \
      --tokens 512,4096 --rounds 3 --json "$OUT/${tag}_moe_qwen_epi.json"
    run 180 "${tag}_moe_mixtral_epi.log" python3 -m humming_cute.bench --moe --moe-preset mixtral \
      --tokens 64,512,4096 --rounds 3 --json "$OUT/${tag}_moe_mixtral_epi.json" ;;
  moe-prefetch)
    # moe_prefetch_rows (the persistent MoE grid's storing threads copy the next tile's expert / rows and the
    # tile's routing weights / global scale by cp.async): its GPU tests, the wgmma MoE suite, then the Qwen-like
    # (512 / 4096 tokens) and Mixtral-like (64 / 512 / 4096) points
    run 260 "${tag}_moe-prefetch-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      -k "wgmma or sm90"
    run 140 "${tag}_moe_qwen_prefetch.log" python3 -m humming_cute.bench --moe --moe-preset qwen3-30b-a3b \
      --tokens 512,4096 --rounds 3 --json "$OUT/${tag}_moe_qwen_prefetch.json"
    run 170 "${tag}_moe_mixtral_prefetch.log" python3 -m humming_cute.bench --moe --moe-preset mixtral \
      --tokens 64,512,4096 --rounds 3 --json "$OUT/${tag}_moe_mixtral_prefetch.json" ;;
  moe-staged-try)
    # the staged MoE store (one row-table fill per tile now) against the default direct row store on the
    # two-atom Qwen-like tiles, 3 alternating rounds
    run 300 "${tag}_moe_probe_staged_two_atoms.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:512,qwen3-30b-a3b:down:4096,qwen3-30b-a3b:up:512,qwen3-30b-a3b:up:4096 \
      --try staged=staged_store:True --only '^staged$' --rounds 3 ;;
  moe-staged-try2)
    # the same after the staged MoE store's write loop takes one table read per row (was per element); Mixtral-like
    # 512 / 4096 tokens too
    run 300 "${tag}_moe_probe_staged_two_atoms_2.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:512,qwen3-30b-a3b:down:4096,qwen3-30b-a3b:up:512,qwen3-30b-a3b:up:4096,mixtral:up:512,mixtral:down:4096 \
      --try staged=staged_store:True --only '^staged$' --rounds 3 ;;
  moe-staged128)
    # the staged store as the 128-row two-atom MoE default (`MOE_STAGED_BLOCK_128`) and the row prefetch: the MoE
    # GEMM GPU suite and the examples, then the README's MoE bench in three rounds
    run 300 "${tag}_moe-gpu-tests-staged128.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_examples_gpu.py
    bench_moe 270 --rounds 3 ;;
  moe-bulk)
    # moe_bulk_store (each routed row leaves the staging tile as one cp.async.bulk copy): its GPU tests, then against
    # the defaults on Qwen-like 512 / 4096 tokens and Mixtral-like down at 4096 tokens, 3 alternating rounds
    run 120 "${tag}_moe-bulk-store-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_moe_gpu.py \
      -k "bulk_store"
    run 200 "${tag}_moe_probe_bulk_store.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:512,qwen3-30b-a3b:down:4096,qwen3-30b-a3b:up:512,qwen3-30b-a3b:up:4096,mixtral:down:4096 \
      --try bulk=staged_store:True,moe_bulk_store:True --only '^bulk$' --rounds 3 ;;
  moe-bulk-verify)
    # moe_bulk_store: its GPU tests (160-row blocks are refused until they pass) and the empty-routing refusal, then
    # against the staged default on Qwen-like down at 4096 tokens (0.970x in moe-bulk), 5 alternating rounds
    run 110 "${tag}_moe-bulk-store-tests-2.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_moe_gpu.py \
      -k "bulk_store or empty_routing"
    run 100 "${tag}_moe_probe_bulk_confirm.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:4096 --try bulk=moe_bulk_store:True --only '^bulk$' --rounds 5 ;;
  moe-verify96)
    # moe-bulk-verify, then Qwen-like up / down at 4096 tokens in 64- and 96-row blocks (11 / 10 % fewer padded
    # rows than the 128-row default's): two-atom 256-wide persistent tiles, direct and staged stores
    bash "$0" moe-bulk-verify
    run 270 "${tag}_moe_probe_bm96_qwen4096.log" python3 benchmarks/moe_config_probe.py --presets qwen3-30b-a3b \
      --tokens 4096 --block-m 64,96 --bn 256 --bk 64 --wgmma --two-atoms --persistent --cp-async-rows --staged \
      --match 'ws bm(64|96) bn256 .*wn128.*persistent rows' --budget-s 110 ;;
  moe-bulk-default)
    # the bulk copy-out as the default of the staged 128-row MoE tile at K <= 1024 (`MOE_BULK_STORE_SHORT_K`): the
    # MoE GEMM GPU suite and the examples, then the README's MoE bench in three rounds
    run 300 "${tag}_moe-gpu-tests-bulk.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_examples_gpu.py
    bench_moe 270 --rounds 3 ;;
  explore1)
    # W4 g128 4096 x 14336 at M = 1024 (1.02-1.05x Humming): 256-wide two-atom / 256-row tiles, persistent or not;
    # Qwen-like 512 tokens on 512-wide MoE tiles (four consumer warpgroups, A fragments in 2 / 4 pieces); the
    # Qwen-like down default at 512 tokens under Nsight Compute (warp-stall samples per SASS instruction)
    run 130 "${tag}_pingpong_probe_w4_14336_m1024.log" python3 benchmarks/pingpong_probe.py --moe "" \
      --dense 4096x14336:1024 --try wide=block_n:256,warp_n:128,warp_specialized:True,persistent_ctas:132 \
      --try wide1=block_n:256,warp_n:128,warp_specialized:True --try tall=block_m:256,warp_m:256 \
      --only '^(persistent|wide|wide1|tall)$' --rounds 5
    run 150 "${tag}_moe_probe_w512_qwen512.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:512,qwen3-30b-a3b:up:512 --try w512=block_n:512,a_split:2 \
      --try w512a4=block_n:512,a_split:4 --only '^w512' --rounds 3
    run 150 "${tag}_moe_ncu_sass_run.txt" ncu --clock-control none --profile-from-start off -k regex:Sm90MixedGemm \
      --section SourceCounters --section WarpStateStats --section SpeedOfLight -o "$OUT/moe_sass" \
      python3 benchmarks/moe_profile.py --preset qwen3-30b-a3b --proj down --tokens 512
    ncu --import "$OUT/moe_sass.ncu-rep" --page source --print-source sass --csv > /tmp/moe_sass.csv 2>&1
    run 60 "${tag}_moe_ncu_sass_qwen512.txt" python3 benchmarks/ncu_top_sass.py /tmp/moe_sass.csv --top 60
    gzip -c /tmp/moe_sass.csv > "$OUT/${tag}_moe_ncu_sass_qwen512.csv.gz"; rm -f "$OUT/moe_sass.ncu-rep" ;;
  explore2)
    # 256-row wgmma tiles where they give 128 of the 132 SMs a tile (4096^2 and 4096 x 14336 at M = 1024, 8192^2 at
    # M = 512; W4 g128 and W8 channel), 5 rounds; 512-wide MoE tiles at Qwen-like 512 tokens (down: the 4-piece A
    # fragments again, 5 rounds; up: 64-deep k-tiles)
    for bq in "uint4 128 w4" "int8 0 w8"; do set -- $bq
      run 150 "${tag}_pingpong_probe_tall_$3.log" python3 benchmarks/pingpong_probe.py --moe "" --b "$1" --group "$2" \
        --dense 4096x4096:1024,4096x14336:1024,8192x8192:512 --try tall=block_m:256,warp_m:256 \
        --try tallp=block_m:256,warp_m:256,warp_specialized:True,persistent_ctas:132 --only '^(tall|tallp)$' \
        --rounds 5
    done
    run 170 "${tag}_moe_probe_w512_qwen512_2.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:512,qwen3-30b-a3b:up:512 --try w512a4=block_n:512,a_split:4 \
      --try w512k64a4=block_n:512,block_k:64,warp_k:64,a_split:4 --try w512k64a2=block_n:512,block_k:64,warp_k:64,a_split:2 \
      --only '^w512' --rounds 5 ;;
  tall-bench)
    # GPU tests of the 256-row fill default (`WGMMA_TALL_MIN_FILL`) and the 512-wide 48-row MoE tile
    # (`MOE_BLOCK_48_WIDE_SHORT_K`), then the README's W4 / W8 benches in three rounds (the MoE one: moe-bench3)
    run 110 "${tag}_tall-wide-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_gemm_sm90_gpu.py \
      tests/test_moe_gpu.py -k "tall_fill or wide_short_k or block48_deep_k"
    bench_w4 230 --rounds 3
    bench_w8 230 --rounds 3 ;;
  moe-final)
    # the 256-row fill default's GPU test again (its odd-M cases had a wrong bias flag in tall-bench), then the
    # README's MoE bench in three rounds
    run 80 "${tag}_tall-fill-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_gemm_sm90_gpu.py \
      -k "tall_fill"
    bench_moe 270 --rounds 3 ;;
  big-m)
    # 8192^2 at M = 8192 (4-bit g128, 1.013x Humming) and M = 4096 (8-bit channel, 1.001x): 176 x 256 two-atom tiles
    # with 4-piece A fragments (Humming's shape there), with and without multicast over 2 CTAs, 5 rounds
    run 90 "${tag}_pingpong_probe_big_m_w4.log" python3 benchmarks/pingpong_probe.py --moe "" --dense 8192x8192:8192 \
      --try t176=block_m:176,warp_m:176,block_n:256,warp_n:128,a_split:4 \
      --try t176c2=block_m:176,warp_m:176,block_n:256,warp_n:128,a_split:4,cluster_n:2 --only '^t176' --rounds 5
    run 90 "${tag}_pingpong_probe_big_m_w8.log" python3 benchmarks/pingpong_probe.py --moe "" --b int8 --group 0 \
      --dense 8192x8192:4096 --try t176=block_m:176,warp_m:176,block_n:256,warp_n:128,a_split:4 \
      --try t176c2=block_m:176,warp_m:176,block_n:256,warp_n:128,a_split:4,cluster_n:2 --only '^t176' --rounds 5 ;;
  s22a)
    # MoE decode blocks (16-row mma.sync) with group scales on fp32 partial sums (two_level_scales), also with
    # fold_offsets and with per-warp pipelines over 128-deep warp k-ranges, against the defaults, 3 alternating
    # rounds; then the MoE / wgmma GEMM / MoE autotuner GPU suites (incl. the new two-level MoE tests)
    run 170 "${tag}_moe_probe_two_level.log" python3 benchmarks/pingpong_probe.py \
      --moe mixtral:up:1,mixtral:up:16,mixtral:down:1,qwen3-30b-a3b:up:1,qwen3-30b-a3b:up:16,qwen3-30b-a3b:down:64 \
      --try tl=two_level_scales:True --try tlf=two_level_scales:True,fold_offsets:True \
      --try tlw=two_level_scales:True,block_n:64,block_k:256,warp_k:128,warp_pipeline:True \
      --try tlwf=two_level_scales:True,fold_offsets:True,block_n:64,block_k:256,warp_k:128,warp_pipeline:True \
      --rounds 3
    run 360 "${tag}_moe-sm90-suites.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      tests/test_gemm_sm90_gpu.py tests/test_moe_autotune.py ;;
  s22b)
    # two-level group scales as the 16-row MoE default from K = 2048 (`MOE_DECODE_TWO_LEVEL_MIN_K`): the MoE GEMM GPU
    # suite, then the README's MoE bench in three rounds
    run 260 "${tag}_moe-gpu-tests-two-level.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py
    bench_moe 290 --rounds 3 ;;
  s22c)
    # the two-level MoE decode default off / on where the bench moved (Mixtral-like down at 16 tokens 1.001x Humming
    # after 0.988x) and at the other K >= 2048 decode points, 5 alternating rounds; then the README's W8A16 bench in
    # three rounds (the hand-added 8192^2 M = 4096 tuning entry)
    run 150 "${tag}_moe_probe_two_level_off.log" python3 benchmarks/pingpong_probe.py \
      --moe mixtral:down:16,mixtral:up:16,mixtral:down:1,qwen3-30b-a3b:up:64 --try one=two_level_scales:False \
      --rounds 5
    bench_w8 260 --rounds 3 ;;
  s22d)
    # the final defaults (two-level MoE decode scales except 8-warp tiles over more than one wave): the README's MoE
    # and W4A16 benches in three rounds
    bench_moe 290 --rounds 3
    bench_w4 270 --rounds 3 ;;
  s22e)
    # after the final two-level rule: the MoE tests of the default paths, both autotuners, the examples, the torch
    # op, the bench and the align GPU tests
    run 320 "${tag}_final-moe-paths-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_autotune.py tests/test_examples_gpu.py tests/test_torch_op.py tests/test_bench_gpu.py \
      tests/test_moe_align_gpu.py tests/test_moe_gpu.py -k "not test_moe_gpu or two_level or matches_reference or layer or graph or default" ;;
  s22f)
    # the 8-warp two-level exception again (Mixtral-like down at 16 tokens, one-level default now, two-level 'tl') and
    # Mixtral-like up at 1 token on 64 x 256 tiles with per-warp pipelines ('tlw', 0.917x the one-level tile in
    # s22a), 5 alternating rounds
    run 150 "${tag}_moe_probe_two_level_recheck.log" python3 benchmarks/pingpong_probe.py \
      --moe mixtral:down:16,mixtral:up:1 --try tl=two_level_scales:True \
      --try tlw=two_level_scales:True,block_n:64,block_k:256,warp_k:128,warp_pipeline:True --rounds 5 ;;
  s23a)
    # evict_first (the weight loads' L2 evict-first policy): its GPU tests (bitwise against the tiles without it);
    # flushed / back-to-back / kept-buffer timings of the default dense tiles with and without it, 3 rounds
    run 260 "${tag}_evict-first-tests.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_evict_first_gpu.py
    run 150 "${tag}_evict_probe_w4.log" python3 benchmarks/evict_probe.py --b uint4 --group 128 \
      --dense 8192x8192:1,8192x8192:16,4096x4096:1,28672x4096:1,4096x14336:64,8192x8192:256
    run 110 "${tag}_evict_probe_w8.log" python3 benchmarks/evict_probe.py --b int8 --group 0 \
      --dense 4096x4096:1,4096x4096:16,28672x4096:1,8192x8192:64 ;;
  s23b)
    # evict_first again, 5 alternating rounds: every W8 channel decode point of the bench, W4 g128 8192^2 M = 1 / 16
    # and 4096 x 14336 M = 1 (flushed 1.007-1.012x in s23a); then the MoE bench points with it ('ef'), 3 rounds
    run 200 "${tag}_evict_probe_w8_decode.log" python3 benchmarks/evict_probe.py --b int8 --group 0 --rounds 5 \
      --dense 8192x8192:1,8192x8192:16,4096x4096:1,4096x4096:16,28672x4096:1,28672x4096:16,4096x14336:1,4096x14336:16
    run 100 "${tag}_evict_probe_w4_decode.log" python3 benchmarks/evict_probe.py --b uint4 --group 128 --rounds 5 \
      --dense 8192x8192:1,8192x8192:16,4096x14336:1
    run 260 "${tag}_moe_probe_evict_first.log" python3 benchmarks/pingpong_probe.py --try ef=evict_first:True \
      --only '^ef$' --moe mixtral:up:1,mixtral:down:1,mixtral:up:16,mixtral:down:16,mixtral:up:64,qwen3-30b-a3b:up:1,qwen3-30b-a3b:up:16,qwen3-30b-a3b:down:64,qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:4096 ;;
  s23c)
    # the W8 decode evict-first default: the dense GEMM, PDL, bench and evict-first GPU tests; the Mixtral-like up
    # projection at 64 tokens with it again (0.984x in s23b), 5 rounds; wgmma tiles from M = 256 with it (W4 g128)
    run 250 "${tag}_evict-default-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_gemm_gpu.py \
      tests/test_pdl_gpu.py tests/test_evict_first_gpu.py tests/test_bench_gpu.py
    run 90 "${tag}_moe_probe_evict_mixtral64.log" python3 benchmarks/pingpong_probe.py --try ef=evict_first:True \
      --only '^ef$' --moe mixtral:up:64 --rounds 5
    run 180 "${tag}_evict_probe_w4_mid.log" python3 benchmarks/evict_probe.py --b uint4 --group 128 \
      --dense 8192x8192:256,8192x8192:1024,28672x4096:256,28672x4096:1024,4096x14336:256,4096x4096:1024 ;;
  s23d)
    # the evict-first GPU tests with the 32-row MoE up-projection default; the README's W8A16 bench (3 rounds) with
    # the W8 decode evict-first default
    run 100 "${tag}_evict-first-tests-2.log" python3 -m pytest -m gpu -n 8 -q -rf tests/test_evict_first_gpu.py
    bench_w8 300 --rounds 3 ;;
  s23e)
    # the README's MoE bench (3 rounds) with the 32-row MoE up-projection evict-first default
    bench_moe 300 --rounds 3 ;;
  s23g)
    # Mixtral-like up at 64 tokens (32-row blocks, 1.02x Humming's time): two weight atoms per consumer warpgroup,
    # 512-wide tiles, the producer warpgroup on the persistent grid, against the 32 x 256 x 128 default, 3 rounds
    run 200 "${tag}_moe_probe_mixtral64_atoms.log" python3 benchmarks/pingpong_probe.py --moe mixtral:up:64 \
      --try two=warp_n:128 --try two2=warp_n:128,a_split:2 \
      --try w512=block_n:512,warp_n:128,block_k:64,warp_k:64 --try w512s2=block_n:512,warp_n:128,a_split:2 \
      --try twows=warp_n:128,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True \
      --try twows2=warp_n:128,a_split:2,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True \
      --try two64=warp_n:128,block_k:64,warp_k:64,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True \
      --only '^(two|two2|w512|w512s2|twows|twows2|two64)$' --rounds 3 ;;
  s23h)
    # the Mixtral-like up 64-token winner of s23g (32 x 256 x 128, two atoms per consumer warpgroup, A in 2 pieces,
    # the producer warpgroup copying the rows, persistent; 0.976x) again in 5 rounds, with A in 4 pieces, and
    # without the evict-first weight loads
    run 200 "${tag}_moe_probe_mixtral64_atoms_confirm.log" python3 benchmarks/pingpong_probe.py --moe mixtral:up:64 \
      --try twows2=warp_n:128,a_split:2,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True \
      --try twows4=warp_n:128,a_split:4,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True \
      --try twows2ne=warp_n:128,a_split:2,warp_specialized:True,persistent_ctas:132,moe_cp_async_rows:True,evict_first:False \
      --only '^(twows2|twows4|twows2ne)$' --rounds 5 ;;
  s23i)
    # the 32-row up-projection default with two atoms per consumer warpgroup and the producer warpgroup: the MoE GPU
    # tests of the 32-row blocks, the reference matrix, layers, graphs, the evict-first tests and the MoE autotuner;
    # then the README's MoE bench (3 rounds)
    run 200 "${tag}_moe-block32-atoms-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_evict_first_gpu.py tests/test_moe_gpu.py -k "not test_moe_gpu or decode_block32 or matches_reference or layer or graph"
    bench_moe 300 --rounds 3 ;;
  s23f)
    # MoE GPU tests at the evict-first 32-row default (the 32-row blocks, the reference matrix, layers, graphs) and
    # both autotuners
    run 330 "${tag}_moe-evict-default-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_autotune.py tests/test_moe_gpu.py -k "not test_moe_gpu or decode_block32 or matches_reference or layer or graph" ;;
  s24a)
    # W4 g128 decode at M = 16 (8192^2: 64 % of the memory floor back to back): 16-row wgmma tiles (one warpgroup,
    # K slices over two, the producer warpgroup, evict-first loads), split-K 2 in a cluster on 512-deep mma.sync
    # tiles (64 / 128 wide); flushed, back to back on rotating copies, and back to back on one copy; 3 rounds
    W=mainloop:sm90,warp_pipeline:False,rows8:False,swap_ab:False,two_level_scales:False,pdl_prefetch:1
    T=block_m:16,warp_m:16,block_n:64,warp_n:64,block_k:128
    run 330 "${tag}_decode_probe_m16_w4.log" python3 benchmarks/pingpong_probe.py --moe "" --b2b --hot \
      --dense 8192x8192:16,4096x14336:16,28672x4096:16 \
      --try "wg=$W,$T,warp_k:128,stages:8" --try "wgks=$W,$T,warp_k:64,stages:8" \
      --try "wgksws=$W,$T,warp_k:64,stages:8,warp_specialized:True" --try "wgef=$W,$T,warp_k:128,stages:8,evict_first:True" \
      --try "wgc2=$W,$T,warp_k:128,stages:8,split_k:2,cluster_split_k:True" \
      --try c2=block_k:512,split_k:2,cluster_split_k:True \
      --try n128c2=block_n:128,warp_n:128,block_k:512,split_k:2,cluster_split_k:True --rounds 3 ;;
  s24b)
    # why the W4 decode kernel at M = 16 is not at the memory floor (back to back 12.9 us, and 12.3 us with its weight
    # in the L2, s24a): Nsight Compute at the boost clock, the tensor / ALU pipes, issue slots and stalls, M = 16 and
    # M = 1 (swapped tile); then 28672 x 4096 M = 16, the tuned table's tile against the per-warp-pipeline default
    for m in 16 1; do
      run 150 "${tag}_decode_ncu_m${m}_pipes.txt" ncu --clock-control none --profile-from-start off \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats \
        --section InstructionStats --section MemoryWorkloadAnalysis python3 benchmarks/decode_profile.py --m "$m" \
        --shapes 8192x8192
    done
    run 150 "${tag}_decode_probe_m16_28672_w4.log" python3 benchmarks/pingpong_probe.py --moe "" --b2b --hot \
      --dense 28672x4096:16,28672x4096:8 --try wp=block_n:64,block_k:512,warp_k:128,stages:3,warp_pipeline:True \
      --rounds 3 ;;
  s24c)
    # Qwen3-30B-A3B-like up at 512 tokens (1.027x Humming) and down at 64 (1.001x): the weight-tile-major raster, the
    # staged store, evict-first loads, 5 alternating rounds; then the bench points within 1 % of Humming or above it
    # again, 5 rounds each, Humming the only peer
    run 200 "${tag}_moe_probe_qwen_nm_staged.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:64 --try nm=moe_n_major:True --try st=staged_store:True \
      --try nmst=moe_n_major:True,staged_store:True --try ef=evict_first:True --only '^(nm|st|nmst|ef)$' --rounds 5
    run 200 "${tag}_w8a16_channel_ties.log" python3 -m humming_cute.bench --b-dtype int8 --group-size 0 \
      --shapes 28672x4096,4096x4096 --m 1,16,4096 --rounds 5 --peers humming --json "$OUT/${tag}_w8a16_channel_ties.json"
    run 120 "${tag}_w4a16_g128_ties.log" python3 -m humming_cute.bench --shapes 4096x14336 --m 64 --rounds 5 \
      --peers humming --json "$OUT/${tag}_w4a16_g128_ties.json" ;;
  s24d)
    # Qwen3-30B-A3B-like at 4096 tokens (256 routed rows per expert, sd ~16): 128-row blocks pad an expert to 2 or 3
    # blocks (2.49 on average, 319 rows), 144-row blocks to 2 (2.02, 291 rows). The 144-row tiles: two atoms with A in
    # 2 pieces, one atom per warpgroup over 128-wide tiles; each with and without the staged store; 5 rounds
    run 300 "${tag}_moe_probe_qwen4096_bm144.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:4096,qwen3-30b-a3b:down:4096:144,qwen3-30b-a3b:up:4096,qwen3-30b-a3b:up:4096:144 \
      --try as2=a_split:2 --try one=warp_n:64,block_n:128 \
      --try one_ns=warp_n:64,block_n:128,staged_store:False,moe_bulk_store:False \
      --try as2ns=a_split:2,staged_store:False,moe_bulk_store:False --only '^(as2|one|one_ns|as2ns)$' --rounds 5 ;;
  s24e)
    # MOE_BLOCK_144: its GPU tests (default tiles of 4 formats, 8-bit weights, the layer's choice end to end), the other
    # wgmma MoE default tiles, odd blocks, layers, graphs and the MoE autotuner
    run 400 "${tag}_moe-block144-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_moe_gpu.py -k "block144 or staged_block128 or odd_blocks or layer or graph or matches_reference or bulk_store or block48" ;;
  s24f)
    bench_moe 400 --rounds 3 ;;
  s24g)
    # Qwen3-30B-A3B-like up at 512 tokens (1.032x Humming in s24f): the weight-tile-major raster, the staged store and
    # evict-first loads (0.986 / 0.987 / 0.991x in s24c) alone and paired, 5 alternating rounds; then the Qwen-like
    # bench points at 64 / 512 tokens (1.001-1.032x in s24f) in 5 rounds, Humming the only peer
    run 200 "${tag}_moe_probe_qwen512_options.log" python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:up:512 \
      --try nm=moe_n_major:True --try st=staged_store:True --try ef=evict_first:True \
      --try nmef=moe_n_major:True,evict_first:True --try stef=staged_store:True,evict_first:True \
      --only '^(nm|st|ef|nmef|stef)$' --rounds 5
    run 200 "${tag}_moe_qwen_64_512.log" python3 -m humming_cute.bench --moe --moe-preset qwen3-30b-a3b --tokens 64,512 \
      --rounds 5 --peers humming --json "$OUT/${tag}_moe_qwen_64_512.json" ;;
  s24h)
    # MOE_BLOCK_48_DEEP_K_STAGED: the MoE GPU tests of the wgmma default tiles (as s24e), then the README's MoE bench
    run 250 "${tag}_moe-block48-staged-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_moe_gpu.py -k "block144 or staged_block128 or odd_blocks or layer or graph or matches_reference or bulk_store or block48 or two_atom"
    bench_moe 320 --rounds 3 ;;
  s24i)
    # the MoE bench points within 2 % of Humming's time in s24h (Qwen-like 64 / 512 tokens, Mixtral-like up at 64), 5
    # rounds, Humming the only peer
    run 200 "${tag}_moe_qwen_64_512_staged.log" python3 -m humming_cute.bench --moe --moe-preset qwen3-30b-a3b \
      --tokens 64,512 --rounds 5 --peers humming --json "$OUT/${tag}_moe_qwen_64_512_staged.json"
    run 150 "${tag}_moe_mixtral_up64.log" python3 -m humming_cute.bench --moe --moe-preset mixtral --moe-proj up \
      --tokens 64 --rounds 5 --peers humming --json "$OUT/${tag}_moe_mixtral_up64.json" ;;
  s24j)
    # the 144-row MoE tests (default tiles, 8-bit weights, the layer's choice) and the staged GLU tests, which now
    # include 144-row blocks (a caller may align a GLU layer to them; `moe_block_size` does not)
    run 200 "${tag}_moe-block144-glu-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      -k "block144 or glu_staged or layer_odd_blocks" ;;
  s25a)
    # Qwen3-30B-A3B-like up at 512 tokens (1.007-1.012x Humming): Nsight Compute at the boost clock of our default
    # (48 x 256 x 128, two consumer warpgroups) and Humming's kernel (pipes, issue, stalls); then the 512-wide 48-row
    # tile with A in 8 pieces, the default with A in 4 / 8 pieces and on 5 stages, 5 alternating rounds
    run 200 "${tag}_moe_ncu_qwen_up512.txt" ncu --clock-control none --profile-from-start off \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats \
      --section InstructionStats --section MemoryWorkloadAnalysis --section LaunchStats \
      python3 benchmarks/peer_profile.py --moe qwen3-30b-a3b:up:512
    run 300 "${tag}_moe_probe_qwen512_wide.log" python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:up:512 \
      --try w512a8=block_n:512,a_split:8 --try as4=a_split:4 --try as8=a_split:8 --try st5=stages:5 \
      --only '^(w512a8|as4|as8|st5)$' --rounds 5 ;;
  s25b)
    # Qwen3-30B-A3B-like up at 512 tokens: more warps per SM (Nsight, s25a: ours 2.92 warps per scheduler, 44 % issue,
    # tensor pipe 39 %; Humming's 20-warp CTA 4.99 warps, 58 %): four consumer warpgroups of one atom over the 256-wide
    # tile (A in 2 / 4 pieces), the 512-wide tile of A in 8 pieces again, with and without the staged store; 5 rounds
    run 300 "${tag}_moe_probe_qwen512_4wg.log" python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:up:512 \
      --try wg4a2=warp_n:64,a_split:2 --try wg4a4=warp_n:64,a_split:4 --try w512a8=block_n:512,a_split:8 \
      --try w512a8d=block_n:512,a_split:8,staged_store:False --only '^(wg4a2|wg4a4|w512a8|w512a8d)$' --rounds 5 ;;
  s25c)
    # Qwen3-30B-A3B-like at 512 tokens: the 256-wide tile on four one-atom consumer warpgroups (A in 2 pieces; 0.984x
    # the default in s25b) with the direct store, evict-first loads, the weight-tile-major raster; the down projection
    # (512 x 64 two-atom tile today) on 256-wide four-warpgroup tiles; 7 alternating rounds
    run 300 "${tag}_moe_probe_qwen512_4wg_up.log" python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:up:512 \
      --try wg4=warp_n:64,a_split:2 --try wg4d=warp_n:64,a_split:2,staged_store:False \
      --try wg4ef=warp_n:64,a_split:2,evict_first:True --try wg4nm=warp_n:64,a_split:2,moe_n_major:True \
      --only '^(wg4|wg4d|wg4ef|wg4nm)$' --rounds 7
    run 200 "${tag}_moe_probe_qwen512_4wg_down.log" python3 benchmarks/pingpong_probe.py --moe qwen3-30b-a3b:down:512 \
      --try wg4=block_n:256,warp_n:64,a_split:1 --try wg4a2=block_n:256,warp_n:64,a_split:2 \
      --only '^(wg4|wg4a2)$' --rounds 7 ;;
  s25d)
    # where the Qwen3-30B-A3B-like up default at 512 tokens waits (s25a: 44 % issue, tensor pipe 39 %): Nsight Compute
    # stall reasons per issued instruction and the warp-stall samples per SASS instruction, at the boost clock
    run 150 "${tag}_moe_ncu_sass_up512_run.txt" ncu --clock-control none --profile-from-start off -k regex:Sm90MixedGemm \
      --section SourceCounters --section WarpStateStats \
      --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio -o "$OUT/moe_sass" \
      python3 benchmarks/moe_profile.py --preset qwen3-30b-a3b --proj up --tokens 512
    ncu --import "$OUT/moe_sass.ncu-rep" --page details --print-details all > "$OUT/${tag}_moe_ncu_stalls_up512.txt" 2>&1
    ncu --import "$OUT/moe_sass.ncu-rep" --page source --print-source sass --csv > /tmp/moe_sass.csv 2>&1
    run 60 "${tag}_moe_ncu_sass_up512.txt" python3 benchmarks/ncu_top_sass.py /tmp/moe_sass.csv --top 80
    gzip -c /tmp/moe_sass.csv > "$OUT/${tag}_moe_ncu_sass_up512.csv.gz"; rm -f "$OUT/moe_sass.ncu-rep" ;;
  s25e)
    # `piece_scales` (a k-tile's pieces share piece 0's broadcast scales and zero points: s25d counted 16 PRMT and
    # 8 extra LDS / HADD2 per warp and k-tile on the Qwen-like up tile at 512 tokens) off against on, on the MoE
    # tiles with a_split > 1 (Qwen3-30B-A3B-like up / down at 512 tokens: 48 x 256 x 128 A in 2 pieces, 48 x 512 x 64
    # A in 4; at 4096 tokens the 144-row blocks, A in 2) and on the four-warpgroup 48-row tile (s25c); 5 rounds
    run 420 "${tag}_moe_probe_piece_scales.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:up:512,qwen3-30b-a3b:down:512,qwen3-30b-a3b:up:4096,qwen3-30b-a3b:down:4096 \
      --try off=piece_scales:False --try wg4=warp_n:64,a_split:2 --try wg4off=warp_n:64,a_split:2,piece_scales:False \
      --only '^(off|wg4|wg4off)$' --rounds 5 ;;
  s25f)
    # the four-warpgroup 48-row deep-K default (`MOE_BLOCK_48_DEEP_K_FOUR_WG`) and `piece_scales` (default on): the
    # wgmma MoE default-tile, odd-block, layer, graph and autotuner suites and the dense a_split tests (bitwise
    # against whole k-tiles); then the 32-row two-atom tile (Mixtral-like up at 64 tokens, A in 2 pieces) without
    # piece_scales and on four one-atom warpgroups, and the Qwen-like up default at 512 tokens against the two-atom
    # tile it replaced, 5 rounds
    run 330 "${tag}_piece-scales-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_moe_gpu.py tests/test_gemm_sm90_gpu.py -k "block144 or staged_block128 or odd_blocks or layer or graph \
      or matches_reference or bulk_store or block48 or two_atom or block32 or wide_short_k or a_split"
    run 200 "${tag}_moe_probe_piece_scales_2.log" python3 benchmarks/pingpong_probe.py \
      --moe mixtral:up:64,qwen3-30b-a3b:up:512 --try off=piece_scales:False --try wg4=warp_n:64 \
      --try two=warp_n:128 --only '^(off|wg4|two)$' --rounds 5 ;;
  s25g)
    # the four-warpgroup 32-row MoE default (`MOE_BLOCK_32_FOUR_WG`): the 32-row and wgmma MoE default-tile suites;
    # then Qwen3-30B-A3B-like down at 64 tokens (16-row mma.sync blocks, a tie with Humming) on 16-row wgmma tiles
    # with the producer warpgroup copying the rows, persistent, A in 2 pieces: four one-atom warpgroups over 256,
    # two over 128, two of two atoms over 256; 5 rounds
    run 300 "${tag}_moe-four-wg-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_moe_gpu.py -k "block32 or block48 or two_atom or layer or graph or matches_reference"
    W=mainloop:sm90,warp_m:16,block_k:128,warp_k:128,a_split:2,warp_specialized:True,persistent_ctas:132
    W=$W,moe_cp_async_rows:True,moe_row_cache:False,moe_n_major:False,two_level_scales:False
    run 200 "${tag}_moe_probe_qwen_down64_wgmma.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:64 --try "w256=$W,block_n:256,warp_n:64,stages:8" \
      --try "w128=$W,block_n:128,warp_n:64,stages:8" --try "w256b=$W,block_n:256,warp_n:128,stages:8" \
      --try "w256ef=$W,block_n:256,warp_n:64,stages:8,evict_first:True" --rounds 5 ;;
  s25h)
    bench_moe 560 --rounds 3 ;;
  s25i)
    bench_w4 560 --rounds 3 ;;
  s25j)
    # Qwen3-30B-A3B-like down at 64 tokens (16-row mma.sync blocks, 1.004x Humming in s25h, the one bench point above
    # it): evict-first loads, 2 / 4 stages, 256-wide tiles, 64-deep k-tiles, one K-warp; 7 alternating rounds; then
    # the README's W4 bench (3 rounds), whose tuned 176 x 256 tiles (A in 4 pieces) now share their scales
    run 200 "${tag}_moe_probe_qwen_down64_tiles.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:64 --try ef=evict_first:True --try st4=stages:4 --try st2=stages:2 \
      --try bn256=block_n:256 --try bk64=block_k:64,stages:6 --try wk128=warp_k:128 --rounds 7
    bench_w4 370 --rounds 3 ;;
  s25k)
    # `MOE_DECODE_SHORT_K_ONE_KWARP` (16-row MoE blocks over fewer than 8 k-tiles keep a k-tile on one warp): the
    # Qwen3-30B-A3B-like down projection at 1 / 16 / 64 tokens against the two K-warps it replaces, 7 rounds; the
    # MoE decode, layer and graph GPU tests; the Qwen-like down bench points at 1 / 16 / 64 tokens, 5 rounds
    run 150 "${tag}_moe_probe_short_k_kwarp.log" python3 benchmarks/pingpong_probe.py \
      --moe qwen3-30b-a3b:down:1,qwen3-30b-a3b:down:16,qwen3-30b-a3b:down:64 --try wk64=warp_k:64 --rounds 7
    run 200 "${tag}_moe-short-k-tests.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_autotune.py \
      tests/test_moe_gpu.py -k "decode or layer or graph or matches_reference or row_cache"
    run 150 "${tag}_moe_qwen_down_small.log" python3 -m humming_cute.bench --moe --moe-preset qwen3-30b-a3b \
      --moe-proj down --tokens 1,16,64 --rounds 5 --peers humming --json "$OUT/${tag}_moe_qwen_down_small.json" ;;
  s25l)
    # `MOE_DECODE_SHORT_K_ONE_KWARP` limited to tiles >= 128 wide (one-warp CTAs were slower at one token, s25k): its
    # GPU tests, then the README's MoE bench at the final defaults (3 rounds)
    run 120 "${tag}_moe-short-k-tests-2.log" python3 -m pytest -m gpu -n 16 -q -rf tests/test_moe_gpu.py \
      -k "short_k or decode_tiles"
    bench_moe 400 --rounds 3 ;;
  hm-moe)
    run 120 "${tag}_humming_configs_moe.log" python3 benchmarks/humming_configs.py --moe ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
# the device run returns at most 8 files: more than that travel as one tar (unpack it with tar -xf)
n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
if [ "$n" -gt 8 ]; then
  tar -cf "/tmp/${tag}_${step}.tar" -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv "/tmp/${tag}_${step}.tar" "$OUT/"
  echo "== $n files packed into $OUT/${tag}_${step}.tar"
fi
