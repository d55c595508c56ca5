"""The pure-python half of the benchmark: options, floor arithmetic, per-row metrics, table and JSON.

Nothing here touches a GPU (or imports torch), so all of it is tested on a CPU (``tests/test_bench_cpu.py``).

Definitions used everywhere:

- *bytes that must move* for one GEMM ``C[M, N] = A[M, K] @ W[N, K]^T`` in a given weight format: the packed
  weight (``N * K * bits / 8``), its scales (one per group, in the scale dtype), its zero points (``bits`` each),
  the activations (``M * K``) and the output (``M * N``) in the activation dtype. It depends on the format only,
  not on how an implementation stores it, so every implementation of a row is held to the same floor.
- *memory floor* = bytes / copy bandwidth measured in the same run (a device-to-device copy of S bytes counts
  2 S bytes moved, so the two are in the same unit).
- *compute floor* = ``2 M N K`` / the rate of a large cuBLAS fp16/bf16 GEMM measured in the same run.
- ``pct_of_memory_floor`` = 100 * memory floor / time (100 % = at the floor); likewise for compute.
- ``ratio_vs[peer]`` = humming_cute time / peer time (below 1: humming_cute is faster).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from typing import Iterable, Optional

__all__ = [
    "DEFAULT_SHAPES", "DEFAULT_MS", "PEERS", "OURS", "IMPL_LABELS", "ACTIVATION_DTYPES", "BenchError",
    "parse_shapes", "parse_ms", "parse_peers", "build_parser", "parse_args", "command_line",
    "tolerance", "format_bytes", "memory_floor_ms", "compute_floor_ms", "impl_metrics", "ok_entry",
    "skipped_entry", "build_row", "assemble_result", "sanitize", "write_json", "format_table", "format_summary",
    "SimpleProgress", "progress_bar",
]

DEFAULT_SHAPES = "8192x8192,4096x4096,28672x4096,4096x14336"
DEFAULT_MS = "1,16,64,256,1024,4096"
#: the peers, in the order they are measured and printed
PEERS = ("torch", "int4", "humming")
OURS = "humming_cute"
IMPL_LABELS = {
    OURS: "humming_cute gemm",
    "torch": "torch matmul (cuBLAS) on the dequantized weight",
    "int4": "torch._weight_int4pack_mm (tinygemm int4)",
    "humming": "Humming (humming-kernels) HummingLayer",
}
#: short column names for the table
_SHORT = {OURS: "hc", "torch": "torch", "int4": "int4", "humming": "humming"}
ACTIVATION_DTYPES = ("float16", "bfloat16")
#: longest reason kept (a compiler's error output can be pages long)
_MAX_REASON = 2000


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


def parse_ms(text: str) -> list[int]:
    """``"1,16,64"`` -> ``[1, 16, 64]`` (positive integers, duplicates dropped, order kept)."""
    ms: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or int(item) <= 0:
            raise ValueError(f"M must be a positive integer, got {item!r}")
        if int(item) not in ms:
            ms.append(int(item))
    if not ms:
        raise ValueError("no M given")
    return ms


def parse_peers(text: str) -> list[str]:
    """``"torch,humming"`` -> ``["torch", "humming"]`` in the canonical order; ``""`` or ``"none"`` -> ``[]``."""
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    names.discard("none")
    if "all" in names:
        names = set(PEERS)
    unknown = sorted(names - set(PEERS))
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {', '.join(PEERS)} (or 'all' / 'none')")
    return [p for p in PEERS if p in names]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m humming_cute.bench",
        description="Time humming_cute's quantized GEMM over M and shapes against its peers (torch cuBLAS on the "
                    "dequantized weight, torch's int4 kernel, the Humming package), all in this process on this "
                    "card. Every output is checked against the reference before it is timed. Times are medians "
                    "with L2 flushed before each run; floors use the copy bandwidth and cuBLAS rate measured in "
                    "the same run.")
    p.add_argument("--a-dtype", default="float16", choices=ACTIVATION_DTYPES, help="activation dtype")
    p.add_argument("--b-dtype", default="uint4", help="weight dtype (e.g. uint4, int4, int8, float4e2m1)")
    p.add_argument("--group-size", type=int, default=128, help="scale group along K (0: one scale per channel)")
    p.add_argument("--scale-dtype", default="float16",
                   help="scale dtype (float16, bfloat16, float8e4m3, float8e5m2, ue8m0, float32)")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma-separated NxK (default {DEFAULT_SHAPES})")
    p.add_argument("--m", default=DEFAULT_MS, help=f"comma-separated M (default {DEFAULT_MS})")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma-separated peers to measure, from {','.join(PEERS)} ('none' for none; default all)")
    p.add_argument("--reps", type=float, default=100.0,
                   help="milliseconds of timed runs per measurement (triton do_bench's 'rep'; about 25 ms of "
                        "warm-up runs come first); default 100")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and activations")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON here")
    p.add_argument("--png", default=None, metavar="PATH",
                   help="plot time and %% of the memory floor vs M here (needs matplotlib)")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse and validate; adds ``shape_list``, ``m_list`` and ``peer_list``."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.shape_list = parse_shapes(args.shapes)
        args.m_list = parse_ms(args.m)
        args.peer_list = parse_peers(args.peers)
    except ValueError as e:
        p.error(str(e))
    if args.group_size < 0:
        p.error(f"--group-size must be 0 (per channel) or positive, got {args.group_size}")
    if args.group_size:
        bad = [(n, k) for n, k in args.shape_list if k % args.group_size]
        if bad:
            p.error(f"--group-size {args.group_size} does not divide K of {bad}")
    if not args.reps > 0:
        p.error(f"--reps must be positive, got {args.reps}")
    return args


def command_line(argv: Iterable[str]) -> str:
    """The command that reproduces this run."""
    return " ".join(["python", "-m", "humming_cute.bench"] + [shlex.quote(a) for a in argv])


def tolerance(a_dtype: str) -> float:
    """Largest accepted relative (Frobenius) error of an output in `a_dtype` against its fp32 reference."""
    return {"float16": 2e-3, "bfloat16": 1e-2}[a_dtype]


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


def skipped_entry(status: str, reason: str, **extra) -> dict:
    """An implementation's record on a row where it was not timed: status 'skipped' (unavailable or not
    applicable), 'failed' (it raised) or 'wrong' (its output failed the check)."""
    assert status in ("skipped", "failed", "wrong"), status
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + " [...]"
    return dict(status=status, reason=reason, **extra)


def build_row(m: int, n: int, k: int, bytes_: dict, memory_floor: float, compute_floor: float,
              impls: dict) -> dict:
    """One (shape, M) row: the floors, each implementation's record and humming_cute's ratio to each peer."""
    ours = impls.get(OURS, {})
    ratio = {}
    for name, e in impls.items():
        if name == OURS:
            continue
        ok = ours.get("status") == "ok" and e.get("status") == "ok"
        ratio[name] = ours["ms"] / e["ms"] if ok else None
    return dict(m=m, n=n, k=k, flops=2.0 * m * n * k, bytes=bytes_, memory_floor_ms=memory_floor,
                compute_floor_ms=compute_floor, floor_ms=max(memory_floor, compute_floor), impls=impls,
                ratio_vs=ratio)


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


def format_table(rows: list, peers: list[str]) -> str:
    """Fixed-width table: one line per row, humming_cute's numbers, then each peer's time and our ratio to it.
    A peer not timed on a row shows '-' (its reason is in the JSON and printed once when it happened)."""
    head = [f"{'M':>6} {'N':>6} {'K':>6}", f"{'hc ms':>9} {'%mem':>6} {'%cmp':>6} {'TFLOP/s':>8} {'GB/s':>7}"]
    for p in peers:
        s = _SHORT[p]
        head.append(f"{s + ' ms':>10} {'hc/' + s:>10}")
    head.append(f"{'relerr':>8}")
    lines = [" | ".join(head)]
    lines.append("-" * len(lines[0]))
    for r in rows:
        ours = r["impls"].get(OURS, {})
        cells = [f"{r['m']:>6} {r['n']:>6} {r['k']:>6}",
                 " ".join([_fmt(ours.get("ms"), ".4f", 9), _fmt(ours.get("pct_of_memory_floor"), ".1f", 6),
                           _fmt(ours.get("pct_of_compute_floor"), ".1f", 6), _fmt(ours.get("tflops"), ".1f", 8),
                           _fmt(ours.get("weight_gbps"), ".0f", 7)])]
        for p in peers:
            e = r["impls"].get(p, {})
            t = e.get("ms") if e.get("status") == "ok" else None
            cells.append(f"{_fmt(t, '.4f', 10)} {_fmt(r['ratio_vs'].get(p), '.3f', 10)}")
        cells.append(_fmt(ours.get("rel_err"), ".1e", 8))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


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
