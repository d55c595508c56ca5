"""MoE autotuning: candidate configs, cache keys, entries applied to a call, and the tuning loop (CPU, with a
stand-in for the GPU calls); one real tuning run on the GPU (marked `gpu`)."""

from __future__ import annotations

import json

import pytest
import torch

import humming_cute.tune.moe_autotune as mat
from humming_cute.config import smem_bytes
from humming_cute.arch import get_arch
from humming_cute.tune.heuristics import default_moe_config

_KW = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128)


def _base(block_m, n, k, *, arch="sm_90a", tokens=1, experts=128, top_k=8, **extra):
    return default_moe_config(block_m, n, k, arch=arch, top_k=top_k, num_tokens=tokens, num_experts=experts,
                              **{**_KW, **extra}).validate()


@pytest.mark.parametrize("block_m,arch,n,k,tokens", [(16, "sm_90a", 1536, 2048, 1), (16, "sm_89", 4096, 14336, 1),
                                                     (64, "sm_90a", 1536, 2048, 512),
                                                     (128, "sm_90a", 2048, 768, 4096), (32, "sm_80", 1536, 2048, 400),
                                                     (32, "sm_90a", 1536, 2048, 256), (48, "sm_90a", 2048, 768, 512),
                                                     (48, "sm_90a", 1536, 2048, 512)])
def test_moe_candidates_are_valid_and_distinct(block_m, arch, n, k, tokens):
    """The default first, then distinct valid tilings of the same routing block that fit shared memory; the
    default's mainloop first; wgmma tiles only on sm_90a from 32-row blocks (16-row ones lost to the mma.sync
    decode tiles); the row cache and the grid order both ways and cluster split-K for decode blocks on sm_90."""
    base = _base(block_m, n, k, arch=arch, tokens=tokens)
    cands = mat.moe_candidate_configs(base, tokens, n, k, num_experts=128, max_candidates=200)
    assert cands[0] == base and len(set(cands)) == len(cands) > 8
    limit = get_arch(arch).smem_per_block_bytes
    for c in cands:
        assert c.validate() == c and c.block_m == block_m and c.moe and smem_bytes(c) <= limit
        assert n % c.block_n == 0 and k % c.block_k == 0
    sm90 = [c for c in cands if c.mainloop == "sm90"]
    assert bool(sm90) == (arch == "sm_90a" and block_m >= 32)
    if sm90:
        # (the tiles after the default are whole-k-tile A fragments: the default's pieces are not inherited)
        assert all(c.a_split == 1 for c in sm90 if c != base)
        assert any(c.warp_specialized and c.persistent_ctas for c in sm90)
        assert any(c.moe_cp_async_rows for c in sm90) and any(c.cluster_n == 2 for c in sm90)
        # the default's own mainloop first (48-row blocks are wgmma tiles only)
        first_sm80 = next((i for i, c in enumerate(cands) if c.mainloop == "sm80"), len(cands))
        assert all(c.mainloop == "sm90" for c in cands[1:first_sm80])
        assert (first_sm80 == len(cands)) == (block_m == 48)
    if block_m <= 32:
        assert {c.moe_row_cache for c in cands} == {True, False}
        assert any(c.block_k >= 512 for c in cands)
        assert any(c.cluster_split_k for c in cands) == (get_arch(arch).sm >= 90)
        # both grid orders, whichever the default takes (16-row blocks over 128 experts: weight-tile-major)
        assert {c.moe_n_major for c in cands if c.mainloop == "sm80"} == {True, False}
        # (32-row blocks on sm_90a with N < K: the `MOE_DECODE_BLOCK_32` mma.sync tile, weight-tile-major)
        assert base.moe_n_major == (arch == "sm_90a" and (block_m == 16 or n < k))
    short = mat.moe_candidate_configs(base, tokens, n, k, num_experts=128, max_candidates=6)
    assert len(short) == 6 and short[0] == base
    if sm90 and block_m != 48:
        assert any(c.mainloop == "sm80" for c in short)     # at least one of the other mainloop


def test_moe_candidates_keep_the_epilogue():
    """A GLU epilogue stays on every candidate; its wgmma candidates (the default's mainloop first) take the staged
    store, without cp.async rows or multicast (not GPU-tested with a GLU). An element-wise activation keeps every
    candidate on mma.sync (not GPU-tested in the wgmma MoE epilogue)."""
    base = default_moe_config(64, 1536, 2048, arch="sm_90a", top_k=8, epilogue=True, glu=True, **_KW).with_(
        activation="silu_glu", glu=True).validate()
    assert base.mainloop == "sm90" and base.staged_store
    cands = mat.moe_candidate_configs(base, 512, 1536, 2048, num_experts=128, max_candidates=100)
    assert all(c.glu and c.activation == "silu_glu" for c in cands)
    sm90 = [c for c in cands if c.mainloop == "sm90"]
    assert len(sm90) > 4 and all(c.staged_store and not c.moe_cp_async_rows and c.cluster_n == 1 for c in sm90)
    assert any(c.persistent_ctas for c in sm90) and any(c.mainloop == "sm80" for c in cands)
    assert cands[1].mainloop == "sm90"
    silu = default_moe_config(64, 1536, 2048, arch="sm_90a", top_k=8, epilogue=True, **_KW).with_(
        activation="silu").validate()
    assert silu.mainloop == "sm80"
    cands = mat.moe_candidate_configs(silu, 512, 1536, 2048, num_experts=128, max_candidates=100)
    assert all(c.activation == "silu" and c.mainloop == "sm80" for c in cands)


def test_moe_key_and_entries():
    """Keys separate every part of an MoE problem (token bucket, experts, top_k, projection, block, epilogue) and
    never meet a dense key; an entry applies its tiling to a call's default, or is ignored when it does not fit."""
    kw = dict(device_name="G", arch="sm_90a", version="v", a_dtype="float16", b_dtype="uint4", c_dtype="float16",
              group_size=128, has_zero_point=True, n_pad=1536, k_pad=2048, num_experts=128, top_k=8, tokens=5,
              block_m=16, is_down=False, mul_topk_weights=False, has_bias=False, epilogue="none")
    key = mat.moe_problem_key(**kw)
    assert key.startswith("moe|") and mat.moe_problem_key(**{**kw, "tokens": 8}) == key    # same bucket (8)
    for change in (dict(tokens=9), dict(num_experts=64), dict(top_k=2), dict(is_down=True), dict(block_m=32),
                   dict(epilogue="silu_glu"), dict(mul_topk_weights=True), dict(has_bias=True)):
        assert mat.moe_problem_key(**{**kw, **change}) != key, change
    base = _base(16, 1536, 2048)
    cfg = mat.apply_moe_entry(base, {"config": {"block_n": 64, "block_k": 512, "warp_k": 128, "stages": 3,
                                                "moe_row_cache": False, "block_m": 64}})
    assert (cfg.block_n, cfg.block_k, cfg.warp_k, cfg.moe_row_cache, cfg.block_m) == (64, 512, 128, False, 16)
    assert mat.apply_moe_entry(base, {"config": {"block_k": 96}}) is None
    assert mat.apply_moe_entry(base, {"config": {"mainloop": "sm90", "warp_m": 16, "block_k": 64,
                                                 "warp_k": 64}}) is None        # the row cache is mma.sync's
    # the default's bulk copy-out (staged persistent 128-row tile at K = 768) stays where the entry's tiling takes
    # it and is dropped where it does not (no persistent grid)
    bulk = _base(128, 2048, 768, tokens=4096, is_down=True, mul_topk_weights=True)
    assert bulk.moe_bulk_store
    assert mat.apply_moe_entry(bulk, {"config": {"stages": 5}}).moe_bulk_store
    plain = mat.apply_moe_entry(bulk, {"config": {"persistent_ctas": 0}})
    assert plain is not None and not plain.moe_bulk_store and plain.persistent_ctas == 0


class _FakeOps:
    """Stands in for humming_cute.ops on the CPU: moe_gemm returns a value per config (one candidate disagrees, one
    raises)."""

    def __init__(self, base):
        self._DEFAULTS = {"stale": 1}
        self.base = base

    def _check_moe_inputs(self, x, weight, s, e, n, top_k, *a):
        return x.shape[0]

    def moe_default_config(self, x, weight, tokens, **kw):
        return self.base

    def device_target(self, dev):
        return "sm_90a"

    def _num_sms(self, dev):
        return 132

    def moe_gemm(self, x, weight, s, e, n, *, config, out=None, **kw):
        if config.block_k == 1024 and config.moe_row_cache:
            raise RuntimeError("does not launch")
        y = torch.ones(x.shape[0], kw["top_k"], weight.shape_n)
        if config.cluster_split_k and config.split_k == 4:
            y[0, 0, 0] = 5.0                                                # disagrees with the default
        return y


class _W:
    a_dtype, b_dtype, group_size, has_zero_point = "float16", "uint4", 128, True
    shape_n, n_pad, k_pad = 1536, 1536, 2048
    packed = torch.empty(128, 1)


class _X:
    """Stands in for a CUDA activation tensor (lookups only answer for CUDA tensors)."""

    def __init__(self, m, k=2048):
        self.shape = (m, k)
        self.device = torch.device("cuda", 0)
        self.dtype = torch.float16


def test_autotune_moe_picks_the_fastest_agreeing_candidate(monkeypatch, tmp_path):
    import humming_cute.ops as real_ops

    base = _base(16, 1536, 2048, tokens=3)
    fake = _FakeOps(base)
    for name in ("_check_moe_inputs", "moe_default_config", "device_target", "_num_sms", "moe_gemm", "_DEFAULTS"):
        monkeypatch.setattr(real_ops, name, getattr(fake, name))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(mat, "_device_name", lambda dev: "FakeGPU")
    monkeypatch.setenv("HUMMING_CUTE_TUNE_CACHE", str(tmp_path / "t.json"))
    x, w = _X(3), _W()
    routing = (None, None, None)

    def made_up_ms(cfg):   # fastest: cluster split 4 (disagrees), then 64 x 512 tiles without the row cache
        if cfg.cluster_split_k and cfg.split_k == 4:
            return 0.001
        return 0.01 if (cfg.block_n, cfg.block_k, cfg.moe_row_cache) == (64, 512, False) else 0.05

    timed = []

    def timer(fn):
        cfg = fn.__defaults__[0]
        timed.append(cfg)
        return made_up_ms(cfg)

    best = mat.autotune_moe(x, w, *routing, top_k=8, block_m=16, timer=timer)
    assert (best.block_n, best.block_k, best.moe_row_cache) == (64, 512, False)
    assert not any(c.cluster_split_k and c.split_k == 4 for c in timed)
    assert not any(c.block_k == 1024 and c.moe_row_cache for c in timed)
    assert real_ops._DEFAULTS == {}                                      # memoised defaults dropped
    entry = mat.lookup_moe(x, w, base, 3, "sm_90a")
    assert entry["config"]["block_k"] == 512 and entry["ms"] == 0.01 and entry["default_ms"] == 0.05
    assert mat.tuned_moe_config(base, x, w, routing, tokens=4, arch="sm_90a") == best           # same bucket
    assert mat.tuned_moe_config(base, x, w, routing, tokens=5, arch="sm_90a") == base           # another bucket
    assert mat.lookup_moe(torch.zeros(3, 2048), w, base, 3, "sm_90a") is None                   # off CUDA
    stored = json.load(open(tmp_path / "t.json"))["entries"]
    assert len(stored) == 1 and next(iter(stored)).startswith("moe|FakeGPU|sm_90a|")
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="captured"):
        mat.autotune_moe(x, w, *routing, top_k=8, block_m=16, timer=timer)
    with pytest.raises(ValueError, match="max_candidates"):
        mat.autotune_moe(x, w, *routing, top_k=8, block_m=16, max_candidates=0)


@pytest.mark.gpu
def test_autotune_moe_on_the_gpu(monkeypatch, tmp_path):
    """A real MoE tuning run through the layer: the winner agrees with the reference, is stored, and later
    moe_forward calls of that token bucket take it."""
    import humming_cute as hc
    from humming_cute import ops
    from humming_cute.quant.reference import reference_moe_gemm

    monkeypatch.setenv("HUMMING_CUTE_TUNE_CACHE", str(tmp_path / "t.json"))
    torch.manual_seed(0)
    layer = hc.HummingLayer(512, 1024, "float16", "uint4", "float16", "float16", 128, num_experts=8).cuda()
    for e in range(8):
        layer.load_weight(torch.randn(512, 1024, device="cuda"), expert_id=e)
    layer.finish_load()
    ids = torch.stack([torch.randperm(8)[:2] for _ in range(5)]).int().cuda()
    tw = torch.rand(5, 2, device="cuda")
    x = torch.randn(5, 1024, device="cuda", dtype=torch.float16)
    best = layer.autotune_moe(x, ids, tw, rep_ms=5, max_candidates=8)
    y = layer.moe_forward(x, ids, tw)
    bm = layer.moe_block_size(5, 2)
    s, ei, npost = hc.moe_align_block_size(ids, bm, 8)
    ref = reference_moe_gemm(x, layer.quantized_weight(), s, ei, npost, top_k=2, block_m=bm,
                             out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3
    stored = json.load(open(tmp_path / "t.json"))["entries"]
    assert len(stored) == 1 and next(iter(stored.values()))["config"]["block_k"] == best.block_k
    used = [v[1] for v in ops._DEFAULTS.values() if v[0]() is layer._prepared]
    assert used and all(mat.apply_moe_entry(c, {"config": {f: getattr(best, f) for f in mat.MOE_TUNED_FIELDS}})
                        == c for c in used)


def test_entries_fit_the_epilogue():
    """A tuned tiling applied under a GLU: wgmma tiles take the staged store (dense 256-row tiles cut to 128 rows),
    mma.sync tiles drop it; an entry from before persistent_ctas / stream_k existed applies with them off."""
    from humming_cute.tune.autotune import TUNED_FIELDS, apply_entry
    from humming_cute.tune.heuristics import default_config

    kw = dict(_KW, arch="sm_90a")
    glu = dict(activation="silu_glu", glu=True)
    moe = default_moe_config(64, 1536, 2048, top_k=8, epilogue=True, glu=True, **kw).with_(**glu).validate()
    s80 = default_moe_config(64, 1536, 2048, top_k=8, epilogue=True, mainloop="sm80", **kw)
    got = mat.apply_moe_entry(moe, {"config": {f: getattr(s80, f) for f in mat.MOE_TUNED_FIELDS}})
    assert (got.mainloop, got.staged_store, got.glu, got.block_m) == ("sm80", False, True, 64)
    dense80 = default_config(16, 8192, 4096, glu=True, **kw).with_(**glu).validate()
    c90 = default_config(8192, 8192, 4096, **kw)
    assert c90.block_m == 256
    got = apply_entry(dense80, {"config": {f: getattr(c90, f) for f in TUNED_FIELDS}})
    assert (got.mainloop, got.staged_store, got.block_m) == ("sm90", True, 128) and got.stages >= 3
    old = {f: getattr(c90, f) for f in TUNED_FIELDS if f not in ("persistent_ctas", "stream_k", "warp_specialized")}
    got = apply_entry(default_config(8192, 8192, 4096, **kw).with_(warp_specialized=True, persistent_ctas=132),
                      {"config": old})
    assert (got.persistent_ctas, got.stream_k, got.warp_specialized) == (0, False, False)


def test_odd_block_candidates():
    """48-row routing blocks (wgmma only): the candidates are wgmma tiles of that height, none on mma.sync."""
    base = _base(48, 1536, 2048, tokens=512)
    cands = mat.moe_candidate_configs(base, 512, 1536, 2048, num_experts=128, max_candidates=100)
    assert cands[0] == base and len(cands) > 8
    assert all(c.mainloop == "sm90" and c.block_m == c.warp_m == 48 for c in cands)


def test_two_atom_moe_candidates():
    """wgmma MoE candidates include 256-wide two-atom tiles (persistent, cp.async rows) where N allows, also under a
    GLU (through the staged store)."""
    base = _base(48, 1536, 2048, tokens=512)
    cands = mat.moe_candidate_configs(base, 512, 1536, 2048, num_experts=128, max_candidates=200)
    two = [c for c in cands if c.warp_n == 128]
    assert any(c.persistent_ctas and c.moe_cp_async_rows for c in two)
    assert any(not c.warp_specialized for c in two)
    assert all(c.block_n == 256 and c.block_m == 48 for c in two)
    glu = _base(64, 1536, 2048, tokens=512, epilogue=True, glu=True).with_(activation="silu_glu", glu=True)
    two_glu = [c for c in mat.moe_candidate_configs(glu, 512, 1536, 2048, num_experts=128, max_candidates=200)
               if c.warp_n == 128]
    assert two_glu and all(c.glu and c.staged_store and c.block_n == 256 for c in two_glu)
