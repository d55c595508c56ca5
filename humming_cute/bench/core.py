"""The pure-python half of the benchmark: options, floor arithmetic, per-row metrics, table and JSON.

Nothing here touches a GPU (or imports torch), so all of it is tested on a CPU (``tests/test_bench_cpu.py``).

Definitions used everywhere:

- *bytes that must move* for one GEMM ``C[M, N] = A[M, K] @ W[N, K]^T`` in a given weight format: the packed
  weight (``N * K * bits / 8``), its scales (one per group, in the scale dtype), its zero points (``bits`` each),
  the activations (``M * K``) and the output (``M * N``) in the activation dtype (8-bit activations: one byte
  each, and an fp16 output). It depends on the format only, not on how an implementation stores it, so every
  implementation of a row is held to the same floor.
- *memory floor* = bytes / copy bandwidth measured in the same run (a device-to-device copy of S bytes counts
  2 S bytes moved, so the two are in the same unit).
- *compute floor* = ``2 M N K`` / the rate of a large cuBLAS GEMM measured in the same run: fp16/bf16 for
  16-bit activations, ``torch._scaled_mm`` fp8 e4m3 or ``torch._int_mm`` int8 for 8-bit ones.
- ``pct_of_memory_floor`` = 100 * memory floor / time (100 % = at the floor); likewise for compute.
- ``ratio_vs[peer]`` = humming_cute time / peer time (below 1: humming_cute is faster).

8-bit activations (``--a-dtype float8e4m3 / float8e5m2 / int8``, dense mode only): humming_cute's ``ms`` is the GEMM
on per-token codes made before timing; ``quant_ms`` is ``hc.quantize_input`` timed apart and ``ms_end_to_end`` the
sum. A peer that quantizes the 16-bit activations itself also records ``ms_end_to_end`` (its quantization and
GEMM timed together; a peer that takes them as they are: its ``ms``), and the row gets
``ratio_end_to_end_vs[peer]``.

MoE mode (``--moe``): one row per (preset, projection, tokens). A row's ``m`` is the number of routed rows
``tokens * top_k``; flops are ``2 * tokens * top_k * N * K`` (padding rows not counted). The bytes that must move
are the weights (+ scales, zero points) of the experts that received at least one token, the activations
(``tokens`` rows for the up projection, ``tokens * top_k`` rows for the down projection) and the output
(``tokens * top_k`` rows), see `moe_format_bytes`. Routing tensors are not counted (a few KB).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from typing import Iterable, Optional

__all__ = [
    "DEFAULT_SHAPES", "DEFAULT_MS", "DEFAULT_BACK_TO_BACK_MS", "PEERS", "OURS", "IMPL_LABELS", "ACTIVATION_DTYPES",
    "BenchError", "with_back_to_back", "format_back_to_back_table",
    "parse_shapes", "parse_ms", "parse_peers", "build_parser", "parse_args", "command_line",
    "ACT8_DTYPES", "ACT8_PEERS", "DENSE_PEERS", "is_act8", "default_peers", "with_quantize",
    "tolerance", "format_bytes", "memory_floor_ms", "compute_floor_ms", "impl_metrics", "ok_entry",
    "skipped_entry", "round_orders", "with_rounds",
    "build_row", "assemble_result", "sanitize", "write_json", "format_table", "format_summary",
    "SimpleProgress", "progress_bar",
    "MOE_PRESETS", "MOE_PROJECTIONS", "MOE_PEERS", "MOE_IMPL_LABELS", "DEFAULT_MOE_TOKENS", "parse_moe_presets",
    "parse_moe_projections", "moe_jobs", "moe_format_bytes", "moe_flops", "expected_experts_touched",
    "select_interval", "with_align", "build_moe_row", "format_moe_table",
]

DEFAULT_SHAPES = "8192x8192,4096x4096,28672x4096,4096x14336"
DEFAULT_MS = "1,16,64,256,1024,4096"
DEFAULT_BACK_TO_BACK_MS = "1,16,64"
#: the peers of a 16-bit activation run, in the order they are measured and printed
PEERS = ("torch", "int4", "humming")
#: the peers of an 8-bit activation run (int_mm only for int8 activations, see `default_peers`)
ACT8_PEERS = ("torch", "scaled_mm", "int_mm", "humming")
#: every dense peer, in the order they are measured and printed; one that does not apply is recorded as skipped
DENSE_PEERS = ("torch", "int4", "scaled_mm", "int_mm", "humming")
OURS = "humming_cute"
IMPL_LABELS = {
    OURS: "humming_cute gemm",
    "torch": "torch matmul (cuBLAS) on the dequantized weight",
    "int4": "torch._weight_int4pack_mm (tinygemm int4)",
    "scaled_mm": "torch._scaled_mm fp8 e4m3 x e4m3, row-wise scales, dequantized weight re-quantized per channel",
    "int_mm": "torch._int_mm int8 x int8 -> int32, dequantized weight re-quantized per channel, scales by torch",
    "humming": "Humming (humming-kernels) HummingLayer",
}
#: short column names for the table
_SHORT = {OURS: "hc", "torch": "torch", "int4": "int4", "scaled_mm": "fp8mm", "int_mm": "i8mm", "humming": "humming"}
ACT8_DTYPES = ("float8e4m3", "float8e5m2", "int8")
ACTIVATION_DTYPES = ("float16", "bfloat16") + ACT8_DTYPES
#: longest reason kept (a compiler's error output can be pages long)
_MAX_REASON = 2000

#: MoE layers of issue 7's benchmark: experts, routed experts per token, and (N, K) of each projection.
#: "up" is the fused gate+up projection (N = 2 x intermediate, GLU pairs), "down" the down projection
#: (K = intermediate). Every implementation computes the plain GEMM (no activation fused), so the up rows
#: write all N columns.
MOE_PRESETS = {
    "qwen3-30b-a3b": dict(num_experts=128, top_k=8, up=(1536, 2048), down=(2048, 768),
                          note="Qwen3-30B-A3B-like: hidden 2048, expert intermediate 768 (up = gate+up, 2 x 768)"),
    "mixtral": dict(num_experts=8, top_k=2, up=(28672, 4096), down=(4096, 14336),
                    note="Mixtral-8x7B-like: hidden 4096, expert intermediate 14336 (up = gate+up, 2 x 14336)"),
}
MOE_PROJECTIONS = ("up", "down")
DEFAULT_MOE_TOKENS = "1,16,64,512,4096"
#: the MoE peers, in the order they are measured and printed
MOE_PEERS = ("torch", "humming")
MOE_IMPL_LABELS = {
    OURS: "humming_cute moe_gemm (GEMM only; moe_align_block_size timed apart)",
    "torch": "naive torch baseline: per-expert loop of gather, matmul on the dequantized weight, scatter",
    "humming": "Humming (humming-kernels) HummingLayer(num_experts=E), indexed GEMM",
}


class BenchError(RuntimeError):
    """humming_cute itself failed (wrong result or an exception): the run must stop."""


# ------------------------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------------------------

def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"8192x8192,28672x4096"`` -> ``[(8192, 8192), (28672, 4096)]`` as (N, K) pairs."""
    shapes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"a shape is NxK (two positive integers), got {item!r}")
        n, k = (int(p) for p in parts)
        if n <= 0 or k <= 0:
            raise ValueError(f"N and K must be positive, got {item!r}")
        shapes.append((n, k))
    if not shapes:
        raise ValueError("no shapes given")
    return shapes


def parse_ms(text: str, what: str = "M") -> list[int]:
    """``"1,16,64"`` -> ``[1, 16, 64]`` (positive integers, duplicates dropped, order kept)."""
    ms: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or int(item) <= 0:
            raise ValueError(f"{what} must be a positive integer, got {item!r}")
        if int(item) not in ms:
            ms.append(int(item))
    if not ms:
        raise ValueError(f"no {what} given")
    return ms


def is_act8(a_dtype: str) -> bool:
    """Whether `a_dtype` is an 8-bit activation type (quantized per token before the GEMM)."""
    return a_dtype in ACT8_DTYPES


def default_peers(a_dtype: str) -> tuple:
    """The dense peers that apply to `a_dtype` (what ``--peers all`` means): `PEERS` for 16-bit activations;
    torch (the fp16 cuBLAS baseline), scaled_mm, int_mm (int8 only) and humming for 8-bit ones."""
    if not is_act8(a_dtype):
        return PEERS
    return tuple(p for p in ACT8_PEERS if p != "int_mm" or a_dtype == "int8")


def parse_peers(text: str, choices: tuple = PEERS, all_of: Optional[tuple] = None) -> list[str]:
    """``"torch,humming"`` -> ``["torch", "humming"]`` in the canonical order of `choices`; ``""`` or ``"none"``
    -> ``[]``; ``"all"`` -> all of `all_of` (default: all of `choices`)."""
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    names.discard("none")
    if "all" in names:
        names = set(all_of if all_of is not None else choices)
    unknown = sorted(names - set(choices))
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {', '.join(choices)} (or 'all' / 'none')")
    return [p for p in choices if p in names]


def _parse_names(text: str, choices, what: str) -> list[str]:
    names: list[str] = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "all":
            names.extend(c for c in choices if c not in names)
            continue
        if item not in choices:
            raise ValueError(f"unknown {what} {item!r}; choose from {', '.join(choices)} (or 'all')")
        if item not in names:
            names.append(item)
    if not names:
        raise ValueError(f"no {what} given")
    return names


def parse_moe_presets(text: str) -> list[str]:
    """``"mixtral,qwen3-30b-a3b"`` -> those preset names, order kept; ``"all"`` -> every preset."""
    return _parse_names(text, tuple(MOE_PRESETS), "MoE preset")


def parse_moe_projections(text: str) -> list[str]:
    """``"up,down"`` -> ``["up", "down"]`` (order kept); ``"all"`` -> both."""
    return _parse_names(text, MOE_PROJECTIONS, "MoE projection")


def moe_jobs(presets: list[str], projections: list[str]) -> list[dict]:
    """One job per (preset, projection): everything the MoE loop needs to build that layer."""
    jobs = []
    for name in presets:
        p = MOE_PRESETS[name]
        for proj in projections:
            n, k = p[proj]
            jobs.append(dict(preset=name, projection=proj, num_experts=p["num_experts"], top_k=p["top_k"], n=n, k=k,
                             is_down=proj == "down"))
    return jobs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m humming_cute.bench",
        description="Time humming_cute's quantized GEMM over M and shapes against its peers (torch cuBLAS on the "
                    "dequantized weight, torch's int4 kernel, torch._scaled_mm / torch._int_mm for 8-bit "
                    "activations, the Humming package), all in this process on this "
                    "card. With --moe, time the MoE GEMM (vLLM fused_moe contract) of preset layers over token "
                    "counts against a naive torch per-expert loop and Humming's MoE (indexed) GEMM instead. Every "
                    "output is checked against the reference before it is timed. Times are medians with L2 flushed "
                    "before each run (and, for --back-to-back-m, also back to back over weight copies larger than "
                    "the L2); floors use the copy bandwidth and cuBLAS rate measured in the same run.")
    p.add_argument("--a-dtype", default="float16", choices=ACTIVATION_DTYPES,
                   help="activation dtype; an 8-bit one (dense mode only) times the GEMM on per-token codes "
                        "(fp16 output) and the fused activation quantization apart")
    p.add_argument("--b-dtype", default="uint4", help="weight dtype (e.g. uint4, int4, int8, float4e2m1)")
    p.add_argument("--group-size", type=int, default=128, help="scale group along K (0: one scale per channel)")
    p.add_argument("--scale-dtype", default="float16",
                   help="scale dtype (float16, bfloat16, float8e4m3, float8e5m2, ue8m0, float32)")
    p.add_argument("--shapes", default=None, help=f"comma-separated NxK (default {DEFAULT_SHAPES}; not with --moe)")
    p.add_argument("--m", default=None, help=f"comma-separated M (default {DEFAULT_MS}; not with --moe)")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated peers to measure: dense mode from {','.join(DENSE_PEERS)} (default and "
                        f"'all': {','.join(PEERS)} for 16-bit activations, {','.join(ACT8_PEERS)} for 8-bit ones, "
                        f"int_mm with int8 only), MoE mode from {','.join(MOE_PEERS)} ('none' for none)")
    p.add_argument("--reps", type=float, default=100.0,
                   help="milliseconds of timed runs per measurement (about 25 ms of "
                        "warm-up runs come first); default 100")
    p.add_argument("--rounds", type=int, default=1,
                   help="16-bit activations: time every implementation of a row this many times, "
                        "the order reversed in every other round (ours first, then the peers; then the peers "
                        "backwards, ours last; ...), "
                        "and report the median of the rounds' medians: a drift of the card's clocks over a row "
                        "then falls on every implementation alike; default 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, activations and routing")
    p.add_argument("--autotune", type=int, default=0, metavar="N",
                   help="before timing humming_cute at each (shape, M) (with --moe: each (layer, tokens) on its "
                        "routing), tune it over up to N candidate configs (humming_cute.autotune / autotune_moe; "
                        "the winner also lands in the tuning cache); 0 (default): the default configs")
    p.add_argument("--back-to-back-m", default=None, metavar="MS",
                   help="comma-separated M of --m (with --moe: token counts of --tokens) also timed back to back: "
                        "many calls in one CUDA graph, each on its own weight copy (copies together >= 3x the L2), "
                        f"no flush, no per-call event; 'none' for none (default {DEFAULT_BACK_TO_BACK_MS})")
    p.add_argument("--back-to-back-between", action="store_true",
                   help="dense mode: in the back-to-back timings, a small torch kernel on each call's output after "
                        "the call (y.add_(0)), for every implementation: the chain of a decode step in which a norm "
                        "or activation kernel sits between two GEMMs (so a GEMM launched with programmatic dependent "
                        "launch cannot start before the previous one ends)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON here")
    p.add_argument("--png", default=None, metavar="PATH",
                   help="plot time and %% of the memory floor vs M (vs tokens with --moe) here (needs matplotlib)")
    moe = p.add_argument_group("MoE mode")
    moe.add_argument("--moe", action="store_true",
                     help="benchmark the MoE GEMM (hc.moe_gemm) of preset layers with random uniform routing "
                          "(distinct experts per token) instead of the dense GEMM")
    moe.add_argument("--moe-preset", default=None,
                     help=f"comma-separated presets from {', '.join(MOE_PRESETS)} (or 'all'; default all): "
                          + "; ".join(f"{name}: E={v['num_experts']}, top_k={v['top_k']}, up NxK="
                                      f"{v['up'][0]}x{v['up'][1]}, down NxK={v['down'][0]}x{v['down'][1]}"
                                      for name, v in MOE_PRESETS.items()))
    moe.add_argument("--moe-proj", default=None,
                     help="comma-separated projections from up (gate+up: reads token rows), down (reads routed "
                          "rows, multiplies by the routing weights); default both")
    moe.add_argument("--tokens", default=None, help=f"comma-separated token counts (default {DEFAULT_MOE_TOKENS})")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse and validate; adds ``peer_list`` and either ``shape_list`` and ``m_list`` (dense mode; both empty in
    MoE mode) or ``moe_presets``, ``moe_projections``, ``token_list`` and ``moe_jobs`` (MoE mode; empty or None
    in dense mode)."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        if args.moe and is_act8(args.a_dtype):
            raise ValueError(f"8-bit activations (--a-dtype {args.a_dtype}) are benchmarked in the dense mode only")
        if args.moe:
            for opt, value in (("--shapes", args.shapes), ("--m", args.m)):
                if value is not None:
                    raise ValueError(f"{opt} is for the dense mode; with --moe the shapes come from --moe-preset "
                                     f"and the batch from --tokens")
            args.shape_list, args.m_list = [], []
            args.moe_presets = parse_moe_presets(args.moe_preset if args.moe_preset is not None else "all")
            args.moe_projections = parse_moe_projections(args.moe_proj if args.moe_proj is not None else "all")
            args.token_list = parse_ms(args.tokens if args.tokens is not None else DEFAULT_MOE_TOKENS, "tokens")
            args.moe_jobs = moe_jobs(args.moe_presets, args.moe_projections)
            if args.peers is not None and "int4" in {x.strip().lower() for x in args.peers.split(",")}:
                raise ValueError("the int4 peer (torch._weight_int4pack_mm) has no MoE path; MoE peers are "
                                 + ", ".join(MOE_PEERS))
            args.peer_list = parse_peers(args.peers if args.peers is not None else "all", MOE_PEERS)
        else:
            for opt, value in (("--moe-preset", args.moe_preset), ("--moe-proj", args.moe_proj),
                               ("--tokens", args.tokens)):
                if value is not None:
                    raise ValueError(f"{opt} needs --moe")
            args.shape_list = parse_shapes(args.shapes if args.shapes is not None else DEFAULT_SHAPES)
            args.m_list = parse_ms(args.m if args.m is not None else DEFAULT_MS)
            args.peer_list = parse_peers(args.peers if args.peers is not None else "all", DENSE_PEERS,
                                         default_peers(args.a_dtype))
            args.moe_presets, args.moe_projections, args.token_list, args.moe_jobs = [], [], None, []
        # back-to-back timings: M of --m (dense mode), token counts of --tokens (MoE mode)
        # (the default list is cut to the batch sizes being run; values given explicitly must all be among them)
        explicit = args.back_to_back_m is not None
        b2b = (args.back_to_back_m if explicit else DEFAULT_BACK_TO_BACK_MS).strip().lower()
        batch, what = (args.token_list, "--tokens") if args.moe else (args.m_list, "--m")
        args.b2b_list = [] if b2b == "none" else parse_ms(b2b, "back-to-back M")
        stray = [m for m in args.b2b_list if m not in batch]
        if stray and explicit:
            raise ValueError(f"--back-to-back-m {stray} not in {what} {batch}")
        args.b2b_list = [m for m in args.b2b_list if m in batch]
        if args.back_to_back_between and (args.moe or not args.b2b_list):
            raise ValueError("--back-to-back-between takes the dense mode with back-to-back timings "
                             "(--back-to-back-m)")
        if args.autotune < 0:
            raise ValueError(f"--autotune takes a candidate count >= 0, got {args.autotune}")
    except ValueError as e:
        p.error(str(e))
    if args.group_size < 0:
        p.error(f"--group-size must be 0 (per channel) or positive, got {args.group_size}")
    if args.group_size:
        ks = [(j["n"], j["k"]) for j in args.moe_jobs] if args.moe else args.shape_list
        bad = [(n, k) for n, k in ks if k % args.group_size]
        if bad:
            p.error(f"--group-size {args.group_size} does not divide K of {bad}")
    if not args.reps > 0:
        p.error(f"--reps must be positive, got {args.reps}")
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.rounds > 1 and is_act8(args.a_dtype):
        p.error("--rounds is for 16-bit activations")
    return args


def command_line(argv: Iterable[str]) -> str:
    """The command that reproduces this run."""
    return " ".join(["python", "-m", "humming_cute.bench"] + [shlex.quote(a) for a in argv])


def tolerance(a_dtype: str) -> float:
    """Largest accepted relative (Frobenius) error of an output against its fp32 reference, for `a_dtype`
    activations: 16-bit runs write the activation dtype; 8-bit runs write fp16 and their reference is made from
    the same 8-bit codes, so only the summation order and the output rounding differ - and for fp8 the fp8 wgmma
    accumulator of the default fast accumulation, which holds fewer mantissa bits than fp32 (2.1e-3 measured at
    K = 8192 for e4m3 x e4m3 on H100)."""
    return {"float16": 2e-3, "bfloat16": 1e-2, "float8e4m3": 4e-3, "float8e5m2": 4e-3, "int8": 2e-3}[a_dtype]


# ------------------------------------------------------------------------------------------------------------
# floor arithmetic
# ------------------------------------------------------------------------------------------------------------

def format_bytes(m: int, n: int, k: int, *, b_bits: int, group_size: int, scale_bits: int, zero_point: bool,
                 a_bytes: int = 2, c_bytes: int = 2) -> dict:
    """Bytes that must move for one GEMM in this weight format (see the module docstring).

    `group_size` 0 means one scale per output channel. Returns the parts and ``weight_total`` (weight + scales
    + zero points: what the weight GB/s counts) and ``total`` (everything: what the memory floor counts)."""
    groups_per_row = 1 if group_size == 0 else -(-k // group_size)
    scale_count = n * groups_per_row
    weight = n * k * b_bits / 8
    scales = scale_count * scale_bits / 8
    zeros = scale_count * b_bits / 8 if zero_point else 0.0
    acts = m * k * a_bytes
    out = m * n * c_bytes
    return dict(weight=weight, scales=scales, zero_points=zeros, activations=acts, output=out,
                weight_total=weight + scales + zeros, total=weight + scales + zeros + acts + out)


def memory_floor_ms(total_bytes: float, copy_bw_bytes_per_s: float) -> float:
    """Time to move `total_bytes` at the measured copy bandwidth, in milliseconds."""
    return total_bytes / copy_bw_bytes_per_s * 1e3


def compute_floor_ms(m: int, n: int, k: int, peak_flops: float) -> float:
    """Time of ``2 M N K`` flops at the measured cuBLAS rate (flop/s), in milliseconds."""
    return 2.0 * m * n * k / peak_flops * 1e3


def moe_format_bytes(tokens: int, n: int, k: int, *, top_k: int, experts_touched: int, is_down: bool, b_bits: int,
                     group_size: int, scale_bits: int, zero_point: bool, a_bytes: int = 2, c_bytes: int = 2) -> dict:
    """Bytes that must move for one MoE GEMM (see the module docstring): the weight, scales and zero points of
    the `experts_touched` experts that received at least one token (each read once), the activations read once
    (``tokens`` rows for the up projection, ``tokens * top_k`` routed rows for the down projection) and the
    ``tokens * top_k`` output rows. Same keys as `format_bytes`, plus ``experts_touched`` and
    ``weight_per_expert`` (one expert's weight + scales + zero points)."""
    if not 0 <= experts_touched:
        raise ValueError(f"experts_touched must be >= 0, got {experts_touched}")
    one = format_bytes(0, n, k, b_bits=b_bits, group_size=group_size, scale_bits=scale_bits, zero_point=zero_point,
                       a_bytes=a_bytes, c_bytes=c_bytes)
    rows_in = tokens * top_k if is_down else tokens
    weight = experts_touched * one["weight"]
    scales = experts_touched * one["scales"]
    zeros = experts_touched * one["zero_points"]
    acts = rows_in * k * a_bytes
    out = tokens * top_k * n * c_bytes
    return dict(weight=weight, scales=scales, zero_points=zeros, activations=acts, output=out,
                weight_total=weight + scales + zeros, total=weight + scales + zeros + acts + out,
                experts_touched=experts_touched, weight_per_expert=one["weight_total"])


def moe_flops(tokens: int, top_k: int, n: int, k: int) -> float:
    """Useful flops of one MoE GEMM: ``2 * tokens * top_k * N * K`` (padding rows of the blocks not counted)."""
    return 2.0 * tokens * top_k * n * k


def expected_experts_touched(tokens: int, top_k: int, num_experts: int) -> float:
    """Expected number of experts that get at least one token when each token picks `top_k` distinct experts
    uniformly at random: ``E * (1 - (1 - top_k / E) ** tokens)`` (an expert is missed by one token with
    probability ``(E - top_k) / E``). For the JSON, next to the count measured on the drawn routing."""
    if not 0 < top_k <= num_experts:
        raise ValueError(f"top_k must be in [1, E={num_experts}], got {top_k}")
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def select_interval(intervals, m: int):
    """The entry of ``[[lo, hi, config], ...]`` that serves `m` rows: ``lo < m <= hi``, ``hi <= 0`` meaning no
    upper bound. This is how Humming's launcher picks a kernel among the intervals of its heuristic configs
    (csrc/launcher/launcher.cpp, ``find_kernel_configs_target_index``, with ``1 << 30`` for ``hi <= 0``).
    Raises LookupError when no interval holds `m`."""
    for entry in intervals:
        lo, hi = int(entry[0]), int(entry[1])
        hi = hi if hi > 0 else 1 << 30
        if lo < m <= hi:
            return entry
    raise LookupError(f"no interval holds m={m} in {[(e[0], e[1]) for e in intervals]}")


def impl_metrics(ms: float, *, m: int, n: int, k: int, weight_bytes: float, memory_floor: float,
                 compute_floor: float) -> dict:
    """Derived numbers of one implementation's time on one row."""
    s = ms * 1e-3
    return dict(ms=ms, tflops=2.0 * m * n * k / s / 1e12, weight_gbps=weight_bytes / s / 1e9,
                pct_of_memory_floor=100.0 * memory_floor / ms, pct_of_compute_floor=100.0 * compute_floor / ms,
                pct_of_floor=100.0 * max(memory_floor, compute_floor) / ms)


def ok_entry(ms: float, rel_err: float, rel_err_vs_float: Optional[float], *, m: int, n: int, k: int,
             bytes_: dict, memory_floor: float, compute_floor: float, notes: Optional[list] = None) -> dict:
    """An implementation's record on a row that it ran correctly."""
    e = dict(status="ok", rel_err=rel_err, rel_err_vs_float=rel_err_vs_float)
    e.update(impl_metrics(ms, m=m, n=n, k=k, weight_bytes=bytes_["weight_total"], memory_floor=memory_floor,
                          compute_floor=compute_floor))
    if notes:
        e["notes"] = list(notes)
    return e


def round_orders(names: list, rounds: int) -> list:
    """The order in which `rounds` timing rounds visit `names`: as given in even rounds (round 0 is the first
    measurement), reversed in odd ones, so each name's rounds straddle the others' symmetrically."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(rounds)]


def with_rounds(entry: dict, times: list, *, m: int, n: int, k: int, bytes_: dict, memory_floor: float,
                compute_floor: float) -> dict:
    """`entry` (an ok record) with its time and derived numbers replaced by the median of the rounds' times
    `times` (the first one the entry's own), which it keeps as ``ms_rounds``."""
    import statistics

    out = dict(entry)
    out.update(impl_metrics(statistics.median(times), m=m, n=n, k=k, weight_bytes=bytes_["weight_total"],
                            memory_floor=memory_floor, compute_floor=compute_floor))
    out["ms_rounds"] = list(times)
    if "align_ms" in out:          # (humming_cute's MoE record: the sum with the routing alignment follows)
        out["ms_with_align"] = out["ms"] + out["align_ms"]
    return out


def skipped_entry(status: str, reason: str, **extra) -> dict:
    """An implementation's record on a row where it was not timed: status 'skipped' (unavailable or not
    applicable), 'failed' (it raised) or 'wrong' (its output failed the check)."""
    assert status in ("skipped", "failed", "wrong"), status
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + " [...]"
    return dict(status=status, reason=reason, **extra)


def build_row(m: int, n: int, k: int, bytes_: dict, memory_floor: float, compute_floor: float,
              impls: dict) -> dict:
    """One (shape, M) row: the floors, each implementation's record and humming_cute's ratio to each peer; when
    humming_cute has an end-to-end time (8-bit activations), also ``ratio_end_to_end_vs`` each peer's."""
    ours = impls.get(OURS, {})
    ratio, ratio_e2e = {}, {}
    for name, e in impls.items():
        if name == OURS:
            continue
        ok = ours.get("status") == "ok" and e.get("status") == "ok"
        ratio[name] = ours["ms"] / e["ms"] if ok else None
        ok_e2e = ok and ours.get("ms_end_to_end") is not None and e.get("ms_end_to_end") is not None
        ratio_e2e[name] = ours["ms_end_to_end"] / e["ms_end_to_end"] if ok_e2e else None
    row = dict(m=m, n=n, k=k, flops=2.0 * m * n * k, bytes=bytes_, memory_floor_ms=memory_floor,
               compute_floor_ms=compute_floor, floor_ms=max(memory_floor, compute_floor), impls=impls,
               ratio_vs=ratio)
    if "ms_end_to_end" in ours:
        row["ratio_end_to_end_vs"] = ratio_e2e
    return row


def with_quantize(entry: dict, quant_ms: Optional[float]) -> dict:
    """humming_cute's 8-bit-activation record plus the time of the fused activation quantization it needs
    (``quant_ms``, timed apart) and the sum (``ms_end_to_end``). A record that is not ok is returned unchanged."""
    if entry.get("status") == "ok" and quant_ms is not None:
        entry = dict(entry, quant_ms=quant_ms, ms_end_to_end=entry["ms"] + quant_ms)
    return entry


def with_align(entry: dict, align_ms: Optional[float]) -> dict:
    """humming_cute's MoE record plus the time of the routing alignment it needs (``align_ms``, timed apart) and
    the sum (``ms_with_align``). A record that is not ok is returned unchanged."""
    if entry.get("status") == "ok" and align_ms is not None:
        entry = dict(entry, align_ms=align_ms, ms_with_align=entry["ms"] + align_ms)
    return entry


def build_moe_row(job: dict, tokens: int, *, experts_touched: int, block_m: int, bytes_: dict, memory_floor: float,
                  compute_floor: float, impls: dict, align_ms: Optional[float] = None,
                  extra: Optional[dict] = None) -> dict:
    """One (preset, projection, tokens) row. Same keys as `build_row` (``m`` = routed rows ``tokens * top_k``),
    plus the MoE fields and ``panel`` (the plot panel: preset and projection)."""
    top_k = job["top_k"]
    row = build_row(tokens * top_k, job["n"], job["k"], bytes_, memory_floor, compute_floor, impls)
    row.update(mode="moe", preset=job["preset"], projection=job["projection"], tokens=tokens, top_k=top_k,
               num_experts=job["num_experts"], experts_touched=experts_touched,
               expected_experts_touched=expected_experts_touched(tokens, top_k, job["num_experts"]),
               block_m=block_m, align_ms=align_ms, panel=f"{job['preset']} {job['projection']}")
    if extra:
        row.update(extra)
    return row


# ------------------------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------------------------

def sanitize(obj):
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(key): sanitize(v) for key, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return str(obj)


def assemble_result(*, env: dict, config: dict, measured: dict, peers: dict, rows: list,
                    extra: Optional[dict] = None) -> dict:
    """The JSON document: environment (card, driver, versions, date, command), the benchmark's configuration,
    what was measured once (copy bandwidth, cuBLAS rate), per-peer status, then the rows."""
    doc = dict(schema="humming_cute.bench/2", **env, config=config, **measured, peers=peers, rows=rows)
    if extra:
        doc.update(extra)
    return sanitize(doc)


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(sanitize(doc), f, indent=1, allow_nan=False)
        f.write("\n")


# ------------------------------------------------------------------------------------------------------------
# text output
# ------------------------------------------------------------------------------------------------------------

def _fmt(v, spec: str, width: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def _fixed_table(rows: list, peers: list[str], lead_head: str, our_head: str, lead, ours_cells) -> str:
    """Fixed-width table: per row the leading cells, humming_cute's cells, each peer's time and our ratio to it,
    and the relative error. `lead(row)` / `ours_cells(row, ours)` give a row's first two cells."""
    head = [lead_head, our_head]
    for p in peers:
        s = _SHORT[p]
        head.append(f"{s + ' ms':>10} {'hc/' + s:>10}")
    head.append(f"{'relerr':>8}")
    lines = [" | ".join(head)]
    lines.append("-" * len(lines[0]))
    for r in rows:
        ours = r["impls"].get(OURS, {})
        cells = [lead(r), ours_cells(r, ours)]
        for p in peers:
            e = r["impls"].get(p, {})
            t = e.get("ms") if e.get("status") == "ok" else None
            cells.append(f"{_fmt(t, '.4f', 10)} {_fmt(r['ratio_vs'].get(p), '.3f', 10)}")
        cells.append(_fmt(ours.get("rel_err"), ".1e", 8))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def format_table(rows: list, peers: list[str]) -> str:
    """Fixed-width table: one line per row, humming_cute's numbers, then each peer's time and our ratio to it.
    A peer not timed on a row shows '-' (its reason is in the JSON and printed once when it happened). Rows of an
    8-bit activation run add humming_cute's quantization time (``q ms``) and GEMM + quantization (``e2e ms``)."""
    act8 = any("quant_ms" in r["impls"].get(OURS, {}) for r in rows)
    q_head = f" {'q ms':>8} {'e2e ms':>9}" if act8 else ""

    def ours(r, o):
        cells = [_fmt(o.get("ms"), ".4f", 9)]
        if act8:
            cells += [_fmt(o.get("quant_ms"), ".4f", 8), _fmt(o.get("ms_end_to_end"), ".4f", 9)]
        return " ".join(cells + [_fmt(o.get("pct_of_memory_floor"), ".1f", 6),
                                 _fmt(o.get("pct_of_compute_floor"), ".1f", 6), _fmt(o.get("tflops"), ".1f", 8),
                                 _fmt(o.get("weight_gbps"), ".0f", 7)])

    return _fixed_table(rows, peers, f"{'M':>6} {'N':>6} {'K':>6}",
                        f"{'hc ms':>9}{q_head} {'%mem':>6} {'%cmp':>6} {'TFLOP/s':>8} {'GB/s':>7}",
                        lambda r: f"{r['m']:>6} {r['n']:>6} {r['k']:>6}", ours)


def with_back_to_back(row: dict, times: dict, copies: dict) -> dict:
    """A row plus its back-to-back times (`bench_ms_back_to_back`): ``ms_back_to_back`` / ``copies_back_to_back``
    and % of the memory floor on each timed implementation, and ``ratio_back_to_back_vs`` each peer."""
    for name, ms in times.items():
        e = row["impls"][name]
        e.update(ms_back_to_back=ms, copies_back_to_back=copies[name],
                 pct_of_memory_floor_back_to_back=100.0 * row["memory_floor_ms"] / ms)
    ours = times.get(OURS)
    row["ratio_back_to_back_vs"] = {name: (ours / times[name] if ours is not None and name in times else None)
                                    for name in row["impls"] if name != OURS}
    return row


def format_back_to_back_table(rows: list, peers: list[str]) -> str:
    """The rows that were also timed back to back: our time, % of the memory floor, each peer's time and ratio."""
    rows = [r for r in rows if "ratio_back_to_back_vs" in r]
    moe = any(r.get("mode") == "moe" for r in rows)
    lead = f"{'preset':>13} {'proj':>4} {'tokens':>6}" if moe else f"{'M':>6} {'N':>6} {'K':>6}"
    head = f"{lead} | {'hc ms':>9} {'%mem':>6}" + "".join(
        f" | {p + ' ms':>10} {'hc/' + p:>10}" for p in peers)
    lines = [head, "-" * len(head)]
    for r in rows:
        o = r["impls"].get(OURS, {})
        cells = [f"{r['preset'][:13]:>13} {r['projection']:>4} {r['tokens']:>6}" if moe else
                 f"{r['m']:>6} {r['n']:>6} {r['k']:>6}",
                 f"{_fmt(o.get('ms_back_to_back'), '.4f', 9)} "
                 f"{_fmt(o.get('pct_of_memory_floor_back_to_back'), '.1f', 6)}"]
        for p in peers:
            cells.append(f"{_fmt(r['impls'].get(p, {}).get('ms_back_to_back'), '.4f', 10)} "
                         f"{_fmt(r['ratio_back_to_back_vs'].get(p), '.3f', 10)}")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def format_moe_table(rows: list, peers: list[str]) -> str:
    """Fixed-width MoE table: one line per (preset, projection, tokens): experts touched, block_m, humming_cute's
    GEMM time and its numbers, the alignment time, then each peer's time and our ratio to it."""
    return _fixed_table(
        rows, peers, f"{'preset':>13} {'proj':>4} {'tokens':>6} {'E hit':>5} {'bm':>3}",
        f"{'hc ms':>9} {'align ms':>8} {'%mem':>6} {'TFLOP/s':>8} {'GB/s':>7}",
        lambda r: (f"{r['preset'][:13]:>13} {r['projection']:>4} {r['tokens']:>6} {r['experts_touched']:>5} "
                   f"{r['block_m']:>3}"),
        lambda r, o: " ".join([_fmt(o.get("ms"), ".4f", 9), _fmt(r.get("align_ms"), ".4f", 8),
                               _fmt(o.get("pct_of_memory_floor"), ".1f", 6), _fmt(o.get("tflops"), ".1f", 8),
                               _fmt(o.get("weight_gbps"), ".0f", 7)]))


def format_summary(peers: dict) -> str:
    """One line per peer: how it was measured (notes) and why it was not, where it was not (reasons)."""
    lines = []
    for name, info in peers.items():
        lines.append(f"{name}: {info.get('label', IMPL_LABELS.get(name, name))}")
        for note in info.get("notes", []):
            lines.append(f"    note: {note}")
        for reason in info.get("reasons", []):
            lines.append(f"    not timed: {reason}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# progress
# ------------------------------------------------------------------------------------------------------------

class SimpleProgress:
    """The fallback progress display when tqdm is missing: ``bench 3/24 8192x8192 M=64`` on stderr."""

    def __init__(self, total: int, desc: str = "bench", file=None):
        self.total, self.n, self.desc = total, 0, desc
        self.file = file if file is not None else sys.stderr
        self.postfix = ""

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s
        self._draw()

    def update(self, k: int = 1) -> None:
        self.n += k
        self._draw()

    def _draw(self) -> None:
        self.file.write(f"\r{self.desc} {self.n}/{self.total} {self.postfix}".ljust(60))
        self.file.flush()

    def write(self, msg: str) -> None:
        """Print a message on stdout without mangling the counter line."""
        self.file.write("\r" + " " * 60 + "\r")
        self.file.flush()
        print(msg, flush=True)
        self._draw()

    def close(self) -> None:
        self.file.write("\n")
        self.file.flush()


class _TqdmProgress:
    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def set_postfix_str(self, s: str) -> None:
        self.bar.set_postfix_str(s)

    def update(self, k: int = 1) -> None:
        self.bar.update(k)

    def write(self, msg: str) -> None:
        self._tqdm.write(msg, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, desc: str = "bench"):
    """tqdm on stderr when installed, else `SimpleProgress`. Both have update/set_postfix_str/write/close."""
    try:
        return _TqdmProgress(total, desc)
    except ImportError:
        return SimpleProgress(total, desc)
