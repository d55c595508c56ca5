"""Autotuning of the dense GEMM: time candidate configs of a problem on the actual GPU, keep the fastest in a JSON
file, and let `humming_cute.gemm` take it for every later call of that problem (also in new processes).

A problem is (GPU name, arch, library version, weight format, padded N and K, output dtype, bias, activation scale
grouping, and M rounded up to a power of two). Measured tables shipped with the library
(``humming_cute/tune/tables/<GPU name>.json``, written by ``python -m humming_cute.tune.build_table`` on that GPU;
their keys hold ``*`` for the version) answer where the user's cache has no entry. `autotune(x, weight, ...)` tunes one problem explicitly (e.g. while
a server warms up); with ``HUMMING_CUTE_AUTOTUNE=1`` the first `gemm` call of an untuned problem tunes it (never
while a CUDA graph is being captured). Every candidate is first checked against the default config's output on
the same inputs; a candidate that fails to compile, launch or agree is skipped. The cache file is
``$HUMMING_CUTE_TUNE_CACHE`` or ``~/.cache/humming_cute/autotune.json``; entries of another GPU, arch or library
version are never used.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import tempfile
import threading
import time
from typing import Callable, Optional

from ..arch import get_arch
from ..config import ACT8_TYPES, GemmConfig, smem_bytes

__all__ = ["autotune", "candidate_configs", "lookup", "tuned_config", "apply_entry", "problem_key", "m_bucket",
           "cache_path", "TuneCache", "TUNED_FIELDS", "enabled_on_the_fly", "table_file", "TABLES_DIR"]

#: the config fields an entry stores (the tiling and scheduling); everything else comes from the call
TUNED_FIELDS = ("block_m", "block_n", "block_k", "warp_m", "warp_n", "warp_k", "stages", "split_k", "mainloop",
                "two_level_scales", "warp_specialized", "cluster_split_k", "cluster_n", "persistent_ctas", "stream_k",
                "warp_pipeline", "a_split", "staged_store")
#: scheduling options an entry may lack (written before they existed), and their "off" values
_OFF_UNLESS_GIVEN = {"warp_specialized": False, "cluster_split_k": False, "cluster_n": 1, "persistent_ctas": 0,
                     "stream_k": False, "warp_pipeline": False, "a_split": 1, "staged_store": False}
#: mma.sync-only options of a decode default that a wgmma candidate drops
_MMA_SYNC_ONLY_OFF = dict(warp_pipeline=False, rows8=False, a_rows8=False, swap_ab=False, fold_offsets=False,
                          launch_min_blocks=0, pdl=False)
_SCHEMA = 1


def cache_path() -> str:
    p = os.environ.get("HUMMING_CUTE_TUNE_CACHE")
    return p if p else os.path.join(os.path.expanduser("~"), ".cache", "humming_cute", "autotune.json")


def enabled_on_the_fly() -> bool:
    """True when ``HUMMING_CUTE_AUTOTUNE`` asks `gemm` to tune untuned problems on their first call."""
    return os.environ.get("HUMMING_CUTE_AUTOTUNE", "0") not in ("", "0", "false", "False")


def m_bucket(m: int) -> int:
    """M rounded up to a power of two (the tuned config of a bucket serves every M in it)."""
    if m < 1:
        raise ValueError(f"M must be >= 1, got {m}")
    return 1 << (m - 1).bit_length()


def problem_key(*, device_name: str, arch: str, version: str, a_dtype: str, b_dtype: str, c_dtype: str,
                group_size: int, has_zero_point: bool, n_pad: int, k_pad: int, m: int, has_bias: bool,
                act_group_size: int = 0) -> str:
    """The cache key of a problem (a string, so the JSON file stays readable)."""
    return "|".join(str(v) for v in (device_name, arch, version, a_dtype, b_dtype, c_dtype, group_size,
                                     int(has_zero_point), n_pad, k_pad, m_bucket(m), int(has_bias), act_group_size))


class TuneCache:
    """The tuned configs of one JSON file: loaded once, written atomically after every new entry. A missing or
    unreadable file is an empty cache (an unreadable one is left alone and rewritten only by a new entry)."""

    def __init__(self, path: Optional[str] = None):
        self.path = path or cache_path()
        self.lock = threading.Lock()
        self.entries: dict = {}
        try:
            with open(self.path) as f:
                data = json.load(f)
            if isinstance(data, dict) and data.get("schema") == _SCHEMA and isinstance(data.get("entries"), dict):
                self.entries = data["entries"]
        except (OSError, ValueError):
            pass

    def get(self, key: str) -> Optional[dict]:
        e = self.entries.get(key)
        return e if isinstance(e, dict) and isinstance(e.get("config"), dict) else None

    def put(self, key: str, entry: dict) -> None:
        with self.lock:
            self.entries[key] = entry
            self._write()

    def drop(self, key: str) -> None:
        """Remove an entry (if present) and rewrite the file."""
        with self.lock:
            if self.entries.pop(key, None) is not None:
                self._write()

    def _write(self) -> None:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autotune-", dir=d or ".")
        with os.fdopen(fd, "w") as f:
            json.dump({"schema": _SCHEMA, "entries": self.entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


_CACHE: Optional[TuneCache] = None


def _cache() -> TuneCache:
    global _CACHE
    if _CACHE is None or _CACHE.path != cache_path():
        _CACHE = TuneCache()
    return _CACHE


def apply_entry(base: GemmConfig, entry: dict) -> Optional[GemmConfig]:
    """`base` (the call's default config) with an entry's tiling, if that is valid for the call; else None."""
    from .heuristics import with_staging_if_dense

    fields = {k: v for k, v in entry.get("config", {}).items() if k in TUNED_FIELDS}
    # an entry from before `staged_store` was tuned: the C store of the default (the staged one where the default
    # stages; it was timed against the direct store)
    stage_like_default = "staged_store" not in fields and base.staged_store
    for k, off in _OFF_UNLESS_GIVEN.items():
        fields.setdefault(k, off)
    if fields.get("mainloop") == "sm90":      # (a wgmma tiling on an mma.sync default: its decode-only options off)
        fields = {**_MMA_SYNC_ONLY_OFF, **fields}
    try:
        cfg = fit_epilogue(base.with_(**fields))
        return (with_staging_if_dense(cfg) if stage_like_default else cfg).validate()
    except (ValueError, NotImplementedError, TypeError):
        return None


def fit_epilogue(cfg: GemmConfig) -> GemmConfig:
    """A tuned tiling under the call's epilogue: a GLU on the wgmma mainloop goes through the staged store (its
    pipeline cut to fit beside the staging tile), the mma.sync mainloop has none."""
    from .heuristics import with_glu_staging

    if cfg.glu and cfg.mainloop == "sm90":    # (also a tiling staged for a plain epilogue: fp32 tiles are larger)
        return with_glu_staging(cfg, keep_block_m=cfg.moe)    # (an MoE block keeps its routing height)
    if cfg.mainloop != "sm90" and cfg.staged_store:
        return cfg.with_(staged_store=False)
    return cfg


def _collector(base: GemmConfig, limit: int) -> Callable:
    """add(cfg, into): validate `cfg` and append it to the list `into`, unless it is invalid (or not yet
    GPU-verified), already collected (`base` counts as collected), over `limit` bytes of shared memory or over 512
    threads."""
    seen = {base}

    def add(cfg, into):
        try:
            cfg = cfg.validate()
        except (ValueError, NotImplementedError):
            return
        if cfg not in seen and smem_bytes(cfg) <= limit and cfg.num_threads <= 512:
            seen.add(cfg)
            into.append(cfg)
    return add


def _deepest(cfg: GemmConfig, most: int, limit: int) -> Optional[GemmConfig]:
    """`cfg` with the most pipeline stages (up to `most`) within `limit` bytes of shared memory, or None."""
    for st in range(most, 1, -1):
        if smem_bytes(cfg.with_(stages=st)) <= limit:
            return cfg.with_(stages=st)
    return None


def _time_candidates(cands, run: Callable, timed: Callable, ref, *, timer: Callable, tol: float, dev,
                     verbose: bool, who: str) -> list:
    """[(ms, index, cfg)] of the candidates that run (`run(cfg)` -> output) and agree with `ref` within `tol`,
    each timed as timer(fn) with fn a no-argument call of `timed(cfg)` (its default argument is the config)."""
    import torch

    results = []
    for cfg in cands:
        try:
            y = run(cfg)
            torch.cuda.synchronize(dev)
        except Exception as e:  # noqa: BLE001 - a candidate that cannot run is skipped, not fatal
            if verbose:
                print(f"{who}: skipped {cfg}: {type(e).__name__}: {e}")
            continue
        err = _rel_err(y, ref)
        if not err <= tol:
            if verbose:
                print(f"{who}: skipped {cfg}: relative difference {err:.2e} to the default config")
            continue
        ms = float(timer(lambda cfg=cfg: timed(cfg)))
        results.append((ms, len(results), cfg))
        if verbose:
            print(f"{who}: {ms * 1e3:9.2f} us  {cfg}")
    if not results:
        raise RuntimeError(f"{who}: no candidate config ran (not even the default)")
    return results


def _merge(base: GemmConfig, sm80_list: list, sm90_list: list, max_candidates: int) -> list:
    """`base`, then candidates of its own mainloop first (a small max_candidates keeps the likelier winners), with at
    least a quarter of the list for the other mainloop; at most `max_candidates`."""
    own, other = (sm90_list, sm80_list) if base.mainloop == "sm90" else (sm80_list, sm90_list)
    keep_other = min(len(other), max(1, (max_candidates - 1) // 4))   # at least a quarter for the other mainloop
    n_own = min(len(own), max(0, max_candidates - 1 - keep_other))
    out = [base] + own[:n_own] + other[:max(0, max_candidates - 1 - n_own)]
    return out[:max_candidates]


def candidate_configs(base: GemmConfig, m: int, n_pad: int, k_pad: int, *, num_sms: int = 132,
                      max_candidates: int = 40) -> list:
    """Configs to time for a problem whose default config is `base`: `base` first, then tilings of the mma.sync
    mainloop (and of the wgmma mainloop on sm_90a for 16-bit and per-token 8-bit activations) around it -
    block_n, block_k split across warps, stages, split-K (on sm_90 also inside a cluster), the wgmma kernel's
    producer warpgroup - each validated and fitting shared memory, without duplicates, at most `max_candidates` in
    all. wgmma tiles from M = 32 on (their token tile is at least 64)."""
    arch = get_arch(base.arch)
    limit = arch.smem_per_block_bytes
    add = _collector(base, limit)
    sm80_list: list = []
    sm90_list: list = []

    def deepest(cfg, most):
        return _deepest(cfg, most, limit)

    def small_grid(bm, bn, split):   # split-K only where the unsplit grid leaves SMs idle
        return split == 1 or -(-m // bm) * (n_pad // bn) * split <= 2 * num_sms

    sm80 = base
    if base.mainloop == "sm90":   # the mma.sync default of the same problem, to tile around
        from .heuristics import default_config

        sm80 = default_config(m, n_pad, k_pad, a_dtype=base.a_dtype, b_dtype=base.b_dtype, c_dtype=base.c_dtype,
                              group_size=base.group_size, arch=base.arch, has_bias=base.has_bias, num_sms=num_sms,
                              mainloop="sm80", act_group_size=base.act_group_size,
                              fp8_fast_accum=base.fp8_fast_accum)
        add(sm80, sm80_list)
    kws = ((128, 64), (256, 64), (512, 128), (1024, 128)) if m <= 32 else ((64, 64), (128, 64), (128, 128))
    for bn in (64, 128, 256):
        for bk, wk in kws:
            for split in (1, 2, 4):
                if n_pad % bn or k_pad % bk or not small_grid(sm80.block_m, bn, split):
                    continue
                if split > 1 and ((k_pad // bk) % split or k_pad // bk // split < 2):
                    continue
                for cluster in ((False, True) if split > 1 and arch.sm >= 90 else (False,)):
                    # with and without per-warp pipelines (invalid ones are dropped)
                    for wp in (sm80.warp_pipeline, not sm80.warp_pipeline):
                        cfg = deepest(sm80.with_(block_n=bn, block_k=bk, warp_k=wk, split_k=split, stages=2,
                                                 cluster_split_k=cluster, warp_pipeline=wp), 4)
                        if cfg is not None:
                            add(cfg, sm80_list)
    if arch.sm == 90 and m >= 32 and (base.a_dtype in ("float16", "bfloat16")
                                      or (base.a_dtype in ACT8_TYPES and base.act_group_size == 0)):
        for bm in (b for b in (64, 128, 256) if b <= max(64, 2 * m)):
            for bn in (64, 128):
                for bk in (64, 128):
                    for split in (1, 2):
                        if n_pad % bn or k_pad % bk or not small_grid(bm, bn, split) or (k_pad // bk) % split:
                            continue
                        # plain, with the producer warpgroup, and (split) with the split inside a cluster;
                        # unsplit and cluster-split ones also with the activation tile multicast over 2 CTAs
                        for ws, cluster in ((False, False), (True, False), (False, split > 1)):
                            for cn in (1, 2) if (split == 1 or cluster) and (n_pad // bn) % 2 == 0 else (1,):
                                cfg = base.with_(block_m=bm, block_n=bn, block_k=bk, warp_m=bm, warp_n=64,
                                                 warp_k=bk, split_k=split, mainloop="sm90", two_level_scales=False,
                                                 **_MMA_SYNC_ONLY_OFF,
                                                 stages=2, activation="none", custom_activation=None, glu=False,
                                                 warp_specialized=ws, cluster_split_k=cluster, cluster_n=cn,
                                                 persistent_ctas=0, stream_k=False)
                                cfg = deepest(cfg, 8)
                                if cfg is not None:
                                    add(cfg, sm90_list)
                                    if ws and split == 1 and cn == 1:
                                        add(cfg.with_(persistent_ctas=num_sms, stream_k=True), sm90_list)
        # 256-wide tiles of two 64-row weight atoms per warpgroup (warp_n=128): without and with the producer
        # warpgroup, and with it on a persistent grid (`heuristics.WGMMA_TWO_ATOMS`)
        for bm in (b for b in (64, 128) if b <= max(64, 2 * m)):
            if n_pad % 256 or k_pad % 64:
                continue
            for ws, persistent in ((False, False), (True, False), (True, True)):
                cfg = base.with_(block_m=bm, block_n=256, block_k=64, warp_m=bm, warp_n=128, warp_k=64, split_k=1,
                                 mainloop="sm90", two_level_scales=False, stages=2, activation="none",
                                 **_MMA_SYNC_ONLY_OFF,
                                 custom_activation=None, glu=False, warp_specialized=ws, cluster_split_k=False,
                                 cluster_n=1, persistent_ctas=num_sms if persistent else 0, stream_k=False)
                cfg = deepest(cfg, 8)
                if cfg is not None:
                    add(cfg, sm90_list)
    if base.mainloop == "sm90":
        # tiles of the default's shape first (then its block_m, then the rest): with a small max_candidates the
        # variants of the default tile (deeper pipeline, producer warpgroup, multicast) are timed before tiles a
        # quarter of its height (H200, 28672 x 4096 at M = 4096: the default 256 x 128 tile with 6 stages instead
        # of 3 took 0.91x the time, benchmarks/results/2026-11-30_h200_config_probe_cluster_n_28672.log)
        sm90_list.sort(key=lambda c: (c.block_m != base.block_m, c.block_n != base.block_n,
                                      c.split_k != base.split_k))
    if arch.sm == 90 and m <= 256 and base.a_dtype in ("float16", "bfloat16"):
        # K halves across two consumer warpgroups (`heuristics.WGMMA_K_SLICES`): the default tile with the other
        # choice first, then every 128-deep wgmma candidate of the default's height with them (the last)
        flip = deepest(base.with_(warp_k=base.block_k if base.warp_k < base.block_k else base.block_k // 2), 8)
        first_k: list = []
        if base.mainloop == "sm90" and base.block_k == 128 and flip is not None:
            if flip in sm90_list:                 # (already a candidate of the loops above: moved to the front)
                sm90_list.remove(flip)
                first_k.append(flip)
            else:
                add(flip, first_k)
        more_k: list = []
        for c in sm90_list:
            if c.block_k == 128 and c.warp_k == 128 and c.block_m == base.block_m:
                sliced = deepest(c.with_(warp_k=64), 8)
                if sliced is not None:
                    add(sliced, more_k)
        sm90_list = first_k + sm90_list + more_k
    if base.mainloop == "sm90" and m >= 256 and not base.glu:
        # the default tile with the other C store first: the direct store where the default stages
        # (`heuristics.DENSE_WGMMA_STAGED`), the staged store where it does not
        from .heuristics import with_dense_staging

        other = base.with_(staged_store=False) if base.staged_store else with_dense_staging(base, m)
        if other != base:
            first: list = []
            add(other, first)
            sm90_list = first + sm90_list
    if arch.sm == 90 and m >= 1024 and base.a_dtype in ("float16", "bfloat16") and k_pad % 64 == 0:
        # tall tiles first (a small max_candidates keeps them): 176 x 256 of two weight atoms per warpgroup with the
        # A fragments in 4 pieces (`a_split`), the activation tile multicast over 2 CTAs or not, and 192 x 128, all
        # with the producer warpgroup on a persistent grid (H200, W8A16 28672 x 4096 at M = 4096: 0.88 / 0.91x the
        # default's time, benchmarks/results/2026-11-30_h200_config_probe_odd_m_w8.log)
        tall: list = []
        for bm, bn, wn, a_split, cn in ((176, 256, 128, 4, 2), (176, 256, 128, 4, 1), (192, 128, 64, 1, 1)):
            if n_pad % (bn * cn):
                continue
            cfg = base.with_(block_m=bm, block_n=bn, block_k=64, warp_m=bm, warp_n=wn, warp_k=64, split_k=1,
                             mainloop="sm90", two_level_scales=False, stages=2, activation="none",
                             **_MMA_SYNC_ONLY_OFF, custom_activation=None, glu=False, warp_specialized=True,
                             cluster_split_k=False, cluster_n=cn, persistent_ctas=num_sms, stream_k=False,
                             a_split=a_split)
            cfg = deepest(cfg, 8)
            if cfg is not None:
                add(cfg, tall)
        sm90_list = tall + sm90_list
    return _merge(base, sm80_list, sm90_list, max_candidates)


@functools.lru_cache(maxsize=None)
def _device_name_of(index: int) -> str:
    import torch

    return torch.cuda.get_device_name(index)


def _device_name(device) -> str:
    import torch

    return _device_name_of(device.index if device.index is not None else torch.cuda.current_device())


def _version() -> str:
    from .. import __version__

    return __version__


def _key_for(x, weight, c_name: str, has_bias: bool, x_group: int, arch: str, version: Optional[str] = None) -> str:
    return problem_key(device_name=_device_name(x.device), arch=arch, version=version or _version(),
                       a_dtype=weight.a_dtype,
                       b_dtype=weight.b_dtype, c_dtype=c_name, group_size=weight.group_size,
                       has_zero_point=weight.has_zero_point, n_pad=weight.n_pad, k_pad=weight.k_pad,
                       m=x.shape[0], has_bias=has_bias, act_group_size=x_group)


#: where the shipped tables are read from (and build_table writes by default); HUMMING_CUTE_TABLES_DIR replaces
#: it (a table measured on the user's own card, or one being built beside the shipped one)
TABLES_DIR = os.environ.get("HUMMING_CUTE_TABLES_DIR") or os.path.join(os.path.dirname(__file__), "tables")
_TABLES: dict = {}


def table_file(device_name: str) -> str:
    """The shipped table of a GPU: its name with every run of characters other than letters, digits, '.' and
    '-' replaced by '_' (``NVIDIA H200`` -> ``NVIDIA_H200.json``)."""
    return os.path.join(TABLES_DIR, re.sub(r"[^A-Za-z0-9.-]+", "_", device_name).strip("_") + ".json")


def _table(device_name: str) -> TuneCache:
    t = _TABLES.get(device_name)
    if t is None:
        t = _TABLES[device_name] = TuneCache(table_file(device_name))
    return t


def lookup(x, weight, c_name: str, has_bias: bool, x_group: int, arch: str) -> Optional[dict]:
    """The entry of this call's problem: the user's cache first, then the table shipped for this GPU; or None
    (always None off CUDA)."""
    if x.device.type != "cuda":
        return None
    cache = _cache()
    if cache.entries:
        e = cache.get(_key_for(x, weight, c_name, has_bias, x_group, arch))
        if e is not None:
            return e
    table = _table(_device_name(x.device))
    if not table.entries:
        return None
    return table.get(_key_for(x, weight, c_name, has_bias, x_group, arch, version="*"))


def tuned_config(base: GemmConfig, x, weight, *, bias=None, out_dtype=None, x_scales=None, x_group: int = 0,
                 c_name: str, arch: str) -> GemmConfig:
    """`base` (a call's default config) with its problem's tuned tiling when the cache has one that is valid for
    the call; with on-the-fly tuning enabled, an untuned problem is tuned first (outside CUDA graph capture)."""
    import torch

    entry = lookup(x, weight, c_name, bias is not None, x_group, arch)
    if entry is None and enabled_on_the_fly() and not torch.cuda.is_current_stream_capturing():
        autotune(x, weight, bias=bias, out_dtype=out_dtype, x_scales=x_scales)
        entry = lookup(x, weight, c_name, bias is not None, x_group, arch)
    if entry is None:
        return base
    cfg = apply_entry(base, entry)
    return cfg if cfg is not None else base


def _rel_err(y, ref) -> float:
    d = (y.float() - ref.float()).norm()
    return float(d / ref.float().norm().clamp_min(1e-30))


def autotune(x, weight, *, bias=None, out_dtype=None, x_scales=None, rep_ms: float = 50.0,
             max_candidates: int = 40, timer: Optional[Callable] = None, tolerance: Optional[float] = None,
             verbose: bool = False, cache: Optional[TuneCache] = None, version: Optional[str] = None,
             min_gain: float = 0.0, confirm_rounds: int = 0) -> GemmConfig:
    """Tune `hc.gemm(x, weight, bias=, out_dtype=, x_scales=)` for x's M bucket on x's GPU: time every candidate
    config (`candidate_configs`) with `bench_ms` (L2 flushed, graph replay), keep the fastest in the cache and
    return it. `timer(fn) -> ms` replaces `bench_ms` (tests). `tolerance`: the largest relative difference to the
    default config's output a candidate may show (default 1e-2 for bf16 output, 2e-3 otherwise). `cache` /
    `version`: where the entry goes and the version in its key (`build_table` writes shipped tables with "*").
    `min_gain`: a candidate replaces the default config only when it takes less than 1 / (1 + min_gain) of the
    default's time (so that timing noise does not swap the default for an equal config; the shipped tables use
    0.03). `confirm_rounds`: the winner and the default are timed again this many times, in alternating order, and
    compared by the medians (a drift of the card's clocks during the sweep then falls on both alike)."""
    import torch

    from .. import ops

    if not (isinstance(rep_ms, (int, float)) and rep_ms > 0):
        raise ValueError(f"rep_ms must be a positive number, got {rep_ms!r}")
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
        raise ValueError(f"max_candidates must be a positive int, got {max_candidates!r}")
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
        raise ValueError(f"min_gain must be a number in [0, 1), got {min_gain!r}")
    if isinstance(confirm_rounds, bool) or not isinstance(confirm_rounds, int) or confirm_rounds < 0:
        raise ValueError(f"confirm_rounds must be an int >= 0, got {confirm_rounds!r}")
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError("autotune times kernels: it cannot run while a CUDA graph is being captured")
    ops.check_input(x, weight, bias)
    x_scales, x_group = ops._check_x_scales(x, weight, x_scales, out_dtype)
    c_dtype = out_dtype or x.dtype
    c_name = ops._C_NAMES.get(c_dtype)
    if c_name is None:
        raise TypeError(f"out_dtype must be torch.float16 or torch.bfloat16, got {c_dtype}")
    if x.shape[0] == 0:
        raise ValueError("autotune needs at least one row of x")
    dev = x.device
    arch = ops.device_target(dev)
    num_sms = ops._num_sms(dev)
    from .heuristics import default_config

    m = x.shape[0]
    base = default_config(m, weight.n_pad, weight.k_pad, a_dtype=weight.a_dtype, b_dtype=weight.b_dtype,
                          c_dtype=c_name, group_size=weight.group_size, arch=arch, has_bias=bias is not None,
                          num_sms=num_sms, act_group_size=x_group)
    if timer is None:
        from ..bench.timing import bench_ms

        def timer(fn):
            return bench_ms(fn, rep_ms)
    tol = tolerance if tolerance is not None else (1e-2 if c_dtype == torch.bfloat16 else 2e-3)
    kw = dict(bias=bias, out_dtype=c_dtype, x_scales=x_scales)
    ref = ops.gemm(x, weight, config=base, **kw)

    def run(cfg):
        return ops.gemm(x, weight, config=cfg, **kw)

    results = _time_candidates(candidate_configs(base, m, weight.n_pad, weight.k_pad, num_sms=num_sms,
                                                 max_candidates=max_candidates),
                               run, run, ref, timer=timer, tol=tol, dev=dev, verbose=verbose, who="autotune")
    best_ms, _, best = min(results)
    default_ms = next(ms for ms, _, c in results if c == base) if any(c == base for _, _, c in results) else None
    if default_ms is not None and best != base and confirm_rounds:
        times = {base: [default_ms], best: [best_ms]}
        for r in range(confirm_rounds):
            for cfg in ((base, best) if r % 2 else (best, base)):
                times[cfg].append(float(timer(lambda cfg=cfg: run(cfg))))
        default_ms, best_ms = statistics.median(times[base]), statistics.median(times[best])
    if default_ms is not None and best_ms * (1 + min_gain) > default_ms:
        best_ms, best = default_ms, base                   # not faster by min_gain: the default stays
    entry = {"config": {f: getattr(best, f) for f in TUNED_FIELDS}, "ms": best_ms, "default_ms": default_ms,
             "is_default": best == base,
             "candidates": len(results), "m": m, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (cache or _cache()).put(_key_for(x, weight, c_name, bias is not None, x_group, arch, version=version), entry)
    ops._DEFAULTS.clear()      # memoised default configs of earlier calls may now be superseded
    return best

