"""Autotuning of the MoE GEMM: time candidate configs of an MoE problem on the actual GPU with a real routing, keep
the fastest in the autotuner's JSON file, and let `humming_cute.moe_gemm` take it for every later call of that
problem (also in new processes).

An MoE problem is (GPU name, arch, library version, weight format, padded N and K, expert count, top_k, up or down
projection, routing-weight multiply, bias, epilogue kind, output dtype, the routing block `block_m`, and the token
count rounded up to a power of two). The routing block itself is not tuned: it is the alignment the caller made
(`HummingLayer.moe_block_size`); the tiling around it is - weight tile width and depth, K split across warps,
stages, split-K inside a cluster, the row cache and n-major grid of the mma.sync kernel, and on sm_90a the wgmma
kernel with its producer warpgroup, persistent grid, cp.async rows and multicast. Every candidate is first checked
against the default config's output on the same inputs; one that fails to compile, launch or agree is skipped.
With ``HUMMING_CUTE_AUTOTUNE=1`` the first `moe_gemm` call of an untuned problem tunes it on that call's routing
(never while a CUDA graph is being captured)."""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..arch import get_arch
from ..config import GemmConfig
from .autotune import (TuneCache, _cache, _collector, _deepest, _device_name, _merge, _table, _time_candidates,
                       _version, enabled_on_the_fly, fit_epilogue, m_bucket)

__all__ = ["autotune_moe", "moe_candidate_configs", "moe_problem_key", "apply_moe_entry", "lookup_moe",
           "tuned_moe_config", "MOE_TUNED_FIELDS"]

#: the config fields an MoE entry stores (block_m is the caller's routing block, part of the key)
MOE_TUNED_FIELDS = ("block_n", "block_k", "warp_m", "warp_n", "warp_k", "stages", "split_k", "mainloop",
                    "two_level_scales", "warp_specialized", "cluster_split_k", "cluster_n", "persistent_ctas",
                    "moe_row_cache", "moe_n_major", "moe_cp_async_rows")


def moe_problem_key(*, device_name: str, arch: str, version: str, a_dtype: str, b_dtype: str, c_dtype: str,
                    group_size: int, has_zero_point: bool, n_pad: int, k_pad: int, num_experts: int, top_k: int,
                    tokens: int, block_m: int, is_down: bool, mul_topk_weights: bool, has_bias: bool,
                    epilogue: str) -> str:
    """The cache key of an MoE problem (a string; "moe" first, so it never meets a dense key)."""
    return "|".join(str(v) for v in ("moe", device_name, arch, version, a_dtype, b_dtype, c_dtype, group_size,
                                     int(has_zero_point), n_pad, k_pad, num_experts, top_k, m_bucket(tokens),
                                     block_m, int(is_down), int(mul_topk_weights), int(has_bias), epilogue))


def apply_moe_entry(base: GemmConfig, entry: dict) -> Optional[GemmConfig]:
    """`base` (the call's default MoE config) with an entry's tiling, if that is valid for the call; else None. The
    default's bulk copy-out (`moe_bulk_store`) stays where the entry's tiling takes it (the staged persistent tile)."""
    fields = {k: v for k, v in entry.get("config", {}).items() if k in MOE_TUNED_FIELDS}
    for bulk in dict.fromkeys((base.moe_bulk_store, False)):
        try:
            return fit_epilogue(base.with_(moe_bulk_store=bulk, **fields)).validate()
        except (ValueError, NotImplementedError, TypeError):
            continue
    return None


def moe_candidate_configs(base: GemmConfig, tokens: int, n_pad: int, k_pad: int, *, num_experts: int,
                          num_sms: int = 132, max_candidates: int = 40) -> list:
    """Configs to time for an MoE problem whose default config is `base` (block_m fixed): `base` first, then
    mma.sync tilings around it (weight tile width, K tile depth split across warps, stages, the row cache, the
    n-major grid; split-K inside a cluster for 16 / 32-row blocks on sm_90) and, on sm_90a with 16-bit activations
    and no activation epilogue, wgmma tiles (with the producer warpgroup, the persistent grid, cp.async rows, both,
    multicast over 2 CTAs). Each is validated (options not yet verified on a GPU are left out) and fits shared
    memory; no duplicates; at most `max_candidates`, the default's own mainloop first."""
    from .heuristics import WGMMA_ONLY_MOE_BLOCKS, default_moe_config

    arch = get_arch(base.arch)
    limit = arch.smem_per_block_bytes
    bm = base.block_m
    add = _collector(base, limit)
    sm80_list: list = []
    sm90_list: list = []

    def deepest(cfg, most):
        return _deepest(cfg, most, limit)

    common = dict(a_dtype=base.a_dtype, b_dtype=base.b_dtype, c_dtype=base.c_dtype, group_size=base.group_size,
                  arch=base.arch, has_bias=base.has_bias, top_k=base.moe_top_k, is_down=base.moe_down,
                  mul_topk_weights=base.moe_mul_topk_weights, num_tokens=tokens, num_experts=num_experts,
                  num_sms=num_sms)
    epilogue = dict(activation=base.activation, custom_activation=base.custom_activation, glu=base.glu)
    sm80 = base
    mma_sync = bm not in WGMMA_ONLY_MOE_BLOCKS          # (48 / 96 / 144 / 160-row blocks: wgmma tiles only)
    if base.mainloop == "sm90" and mma_sync:   # the mma.sync default of the same block, to tile around
        sm80 = default_moe_config(bm, n_pad, k_pad, mainloop="sm80", **common).with_(**epilogue)
        add(sm80, sm80_list)
    decode = bm <= 32
    kws = ((128, 64), (256, 64), (512, 128), (1024, 128)) if decode else ((64, 64), (128, 64), (128, 128))
    if not mma_sync:
        kws = ()
    for bn in (64, 128, 256):
        for bk, wk in kws:
            if n_pad % bn or k_pad % bk:
                continue
            for most in ((3, 4) if decode else (6,)):
                cfg = deepest(sm80.with_(block_n=bn, block_k=bk, warp_k=wk, stages=2, split_k=1,
                                         cluster_split_k=False, moe_n_major=False), most)
                if cfg is None:
                    continue
                for row_cache in ((True, False) if decode else (False,)):
                    add(cfg.with_(moe_row_cache=row_cache), sm80_list)
                if decode:      # (the block-major grid above, the weight-tile-major one here)
                    add(cfg.with_(moe_n_major=True, moe_row_cache=True), sm80_list)
                if decode and arch.sm >= 90 and bn == 64:
                    for split in (2, 4):
                        if (k_pad // bk) % split == 0 and k_pad // bk // split >= 2:
                            add(cfg.with_(split_k=split, cluster_split_k=True, moe_row_cache=True), sm80_list)
    # plain tiles first, then other depths of pipeline, the row cache switched, split-K and the n-major grid: with a
    # small max_candidates the tile shapes are timed before the options
    sm80_list.sort(key=lambda c: (c.split_k > 1 or c.moe_n_major, c.moe_row_cache != sm80.moe_row_cache,
                                  c.stages != sm80.stages))
    # wgmma tiles: 16-bit activations, 32-row blocks and up (16-row ones lost to the mma.sync decode tiles by
    # 9-46 %, benchmarks/results/2026-11-30_h200_moe_probe_wgmma_small.log), no epilogue activation or a GLU
    # (through the staged store)
    if (arch.sm == 90 and base.a_dtype in ("float16", "bfloat16") and bm >= 32
            and (base.activation == "none" or base.glu)):
        # one 64-row weight atom per warpgroup, and 256-wide tiles of two (warp_n=128, 64-deep; under a GLU through
        # the staged store: `WGMMA_TWO_ATOMS`)
        tiles = [(bn, bk, 64) for bn in (64, 128, 256) for bk in (64, 128)] + [(256, 64, 128)]
        for bn, bk, wn in tiles:
            if n_pad % bn or k_pad % bk:
                continue
            for ws in (False, True):
                cfg = base.with_(mainloop="sm90", block_n=bn, block_k=bk, warp_m=bm, warp_n=wn, warp_k=bk,
                                 split_k=1, cluster_split_k=False, two_level_scales=False, moe_row_cache=False,
                                 moe_n_major=False, warp_specialized=ws, stages=2, staged_store=base.glu,
                                 moe_bulk_store=False, persistent_ctas=0, moe_cp_async_rows=False, cluster_n=1,
                                 a_split=1)
                cfg = deepest(cfg, 8)
                if cfg is None:
                    continue
                add(cfg, sm90_list)
                if ws:
                    add(cfg.with_(persistent_ctas=num_sms), sm90_list)
                    if not base.glu:
                        if wn == 64:
                            add(cfg.with_(moe_cp_async_rows=True), sm90_list)
                        add(cfg.with_(persistent_ctas=num_sms, moe_cp_async_rows=True), sm90_list)
                if (n_pad // bn) % 2 == 0 and not base.glu and wn == 64:
                    add(cfg.with_(cluster_n=2), sm90_list)
        # tiles of the default's shape first: with a small max_candidates its variants are timed before the rest
        sm90_list.sort(key=lambda c: (c.block_n != base.block_n, c.warp_n != base.warp_n,
                                      c.block_k != base.block_k))
    return _merge(base, sm80_list, sm90_list, max_candidates)


def _epilogue_kind(cfg: GemmConfig) -> str:
    return cfg.activation if cfg.custom_activation is None else ("custom_glu" if cfg.glu else "custom")


def _key(x, weight, base: GemmConfig, tokens: int, arch: str, version: Optional[str] = None) -> str:
    return moe_problem_key(device_name=_device_name(x.device), arch=arch, version=version or _version(),
                           a_dtype=weight.a_dtype, b_dtype=weight.b_dtype, c_dtype=base.c_dtype,
                           group_size=weight.group_size, has_zero_point=weight.has_zero_point, n_pad=weight.n_pad,
                           k_pad=weight.k_pad, num_experts=weight.packed.shape[0], top_k=base.moe_top_k,
                           tokens=tokens, block_m=base.block_m, is_down=base.moe_down,
                           mul_topk_weights=base.moe_mul_topk_weights, has_bias=base.has_bias,
                           epilogue=_epilogue_kind(base))


def lookup_moe(x, weight, base: GemmConfig, tokens: int, arch: str) -> Optional[dict]:
    """The entry of this call's MoE problem (`base`: its default config): the user's cache first, then the table
    shipped for this GPU; or None (always None off CUDA)."""
    if x.device.type != "cuda":
        return None
    cache = _cache()
    if cache.entries:
        e = cache.get(_key(x, weight, base, tokens, arch))
        if e is not None:
            return e
    table = _table(_device_name(x.device))
    if not table.entries:
        return None
    return table.get(_key(x, weight, base, tokens, arch, version="*"))


def tuned_moe_config(base: GemmConfig, x, weight, routing, *, tokens: int, arch: str, topk_weights=None,
                     bias=None, x_scales=None) -> GemmConfig:
    """`base` (a call's default MoE config) with its problem's tuned tiling when the cache has one that is valid for
    the call; with on-the-fly tuning enabled, an untuned problem is tuned first on this call's routing (outside
    CUDA graph capture)."""
    import torch

    entry = lookup_moe(x, weight, base, tokens, arch)
    if entry is None and enabled_on_the_fly() and not torch.cuda.is_current_stream_capturing():
        autotune_moe(x, weight, *routing, top_k=base.moe_top_k, block_m=base.block_m, topk_weights=topk_weights,
                     mul_topk_weights=base.moe_mul_topk_weights, is_down=base.moe_down, bias=bias,
                     activation=base.custom_activation or (None if base.activation == "none" else base.activation),
                     glu=base.glu, out_dtype=getattr(torch, base.c_dtype), x_scales=x_scales)
        entry = lookup_moe(x, weight, base, tokens, arch)
    if entry is None:
        return base
    cfg = apply_moe_entry(base, entry)
    return cfg if cfg is not None else base


def autotune_moe(x, weight, sorted_token_ids, expert_ids, num_tokens_post_padded, *, top_k: int, block_m: int,
                 topk_weights=None, mul_topk_weights: bool = False, is_down: bool = False, bias=None,
                 activation=None, glu: bool = False, out_dtype=None, x_scales=None, rep_ms: float = 50.0,
                 max_candidates: int = 40, timer: Optional[Callable] = None, tolerance: Optional[float] = None,
                 verbose: bool = False, cache: Optional[TuneCache] = None,
                 version: Optional[str] = None) -> GemmConfig:
    """Tune `hc.moe_gemm(x, weight, sorted_token_ids, expert_ids, num_tokens_post_padded, top_k=, block_m=, ...)`
    (the same arguments; the routing from `moe_align_block_size` with this `block_m`) for this token-count bucket
    on x's GPU: time every candidate (`moe_candidate_configs`) with `bench_ms` (L2 flushed, graph replay), keep the
    fastest in the cache and return it. `timer(fn) -> ms` replaces `bench_ms` (tests). `tolerance`: the largest
    relative difference to the default config's output a candidate may show (default 1e-2 for bf16 output, 2e-3
    otherwise). `cache` / `version`: where the entry goes and the version in its key."""
    import torch

    from .. import ops

    if not (isinstance(rep_ms, (int, float)) and rep_ms > 0):
        raise ValueError(f"rep_ms must be a positive number, got {rep_ms!r}")
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
        raise ValueError(f"max_candidates must be a positive int, got {max_candidates!r}")
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError("autotune_moe times kernels: it cannot run while a CUDA graph is being captured")
    from ..activations import resolve

    routing = (sorted_token_ids, expert_ids, num_tokens_post_padded)
    tokens = ops._check_moe_inputs(x, weight, *routing, top_k, topk_weights, mul_topk_weights, is_down, bias,
                                   block_m)
    if tokens == 0:
        raise ValueError("autotune_moe needs at least one token")
    act_name, act_fn, glu = resolve(activation, glu)
    c_name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(out_dtype or x.dtype)
    if c_name is None:
        raise TypeError(f"out_dtype must be torch.float16 or torch.bfloat16, got {out_dtype or x.dtype}")
    base = ops.moe_default_config(x, weight, tokens, top_k=top_k, block_m=block_m, is_down=is_down,
                                  mul_topk_weights=mul_topk_weights, has_bias=bias is not None, c_name=c_name,
                                  act_name=act_name, act_fn=act_fn, glu=glu)
    cfg_kw = dict(top_k=top_k, block_m=block_m, topk_weights=topk_weights, mul_topk_weights=mul_topk_weights,
                  is_down=is_down, bias=bias, out_dtype=out_dtype, x_scales=x_scales)
    ref = ops.moe_gemm(x, weight, *routing, config=base, **cfg_kw)    # checks the remaining arguments
    dev = x.device
    if timer is None:
        from ..bench.timing import bench_ms

        def timer(fn):
            return bench_ms(fn, rep_ms)
    tol = tolerance if tolerance is not None else (1e-2 if base.c_dtype == "bfloat16" else 2e-3)
    buf = torch.empty_like(ref)      # timed calls write here (no output allocation in the timing)
    cands = moe_candidate_configs(base, tokens, weight.n_pad, weight.k_pad, num_experts=weight.packed.shape[0],
                                  num_sms=ops._num_sms(dev), max_candidates=max_candidates)
    results = _time_candidates(cands, lambda cfg: ops.moe_gemm(x, weight, *routing, config=cfg, **cfg_kw),
                               lambda cfg: ops.moe_gemm(x, weight, *routing, config=cfg, out=buf, **cfg_kw), ref,
                               timer=timer, tol=tol, dev=dev, verbose=verbose, who="autotune_moe")
    best_ms, _, best = min(results)
    default_ms = next((ms for ms, _, c in results if c == base), None)
    entry = {"config": {f: getattr(best, f) for f in MOE_TUNED_FIELDS}, "ms": best_ms, "default_ms": default_ms,
             "candidates": len(results), "tokens": tokens, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (cache or _cache()).put(_key(x, weight, base, tokens, ops.device_target(dev), version=version), entry)
    ops._DEFAULTS.clear()      # memoised default configs of earlier calls may now be superseded
    return best
