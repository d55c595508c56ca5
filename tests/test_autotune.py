"""The autotuner: candidate configs, the cache file, the choice of the fastest agreeing candidate (CPU, with the
GPU calls replaced), and a real tuning run (marked `gpu`)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from humming_cute.arch import get_arch
from humming_cute.config import smem_bytes
from humming_cute.tune import autotune as at
from humming_cute.tune.heuristics import default_config


def _base(m, n, k, a="float16", b="uint4", g=128, arch="sm_90a", c=None):
    return default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=c or ("float16" if a not in
                          ("float16", "bfloat16") else a), group_size=g, arch=arch)


@pytest.mark.parametrize("m,n,k,a,b,g,arch", [
    (1, 8192, 8192, "float16", "uint4", 128, "sm_90a"), (16, 4096, 4096, "bfloat16", "int8", 0, "sm_80"),
    (64, 4096, 14336, "float16", "uint4", 128, "sm_90a"), (256, 28672, 4096, "float16", "int4", 0, "sm_90a"),
    (4096, 4096, 4096, "bfloat16", "uint4", 64, "sm_90a"), (300, 4096, 4096, "float8e4m3", "int4", 0, "sm_90a"),
    (40, 1024, 2048, "int8", "uint4", 128, "sm_86"), (8, 512, 1024, "bfloat16", "float4e2m1", 32, "sm_120a")])
def test_candidates(m, n, k, a, b, g, arch):
    base = _base(m, n, k, a, b, g, arch)
    cands = at.candidate_configs(base, m, n, k, max_candidates=40)
    assert cands[0] == base and len(cands) == len(set(cands)) and 2 <= len(cands) <= 40
    limit = get_arch(arch).smem_per_block_bytes
    for c in cands:
        c.validate()
        assert smem_bytes(c) <= limit and n % c.block_n == 0 and k % c.block_k == 0
        assert (k // c.block_k) % c.split_k == 0
        assert (c.a_dtype, c.b_dtype, c.group_size, c.arch) == (base.a_dtype, base.b_dtype, base.group_size, arch)
    wgmma = [c for c in cands if c.mainloop == "sm90"]
    assert bool(wgmma) == (arch == "sm_90a" and m >= 32)
    assert any(c.mainloop == "sm80" for c in cands)
    assert len(at.candidate_configs(base, m, n, k, max_candidates=3)) <= 3


def test_keys_and_buckets():
    assert [at.m_bucket(m) for m in (1, 2, 3, 16, 17, 4096, 4097)] == [1, 2, 4, 16, 32, 4096, 8192]
    with pytest.raises(ValueError):
        at.m_bucket(0)
    kw = dict(device_name="NVIDIA H200", arch="sm_90a", version="0.1.0", a_dtype="float16", b_dtype="uint4",
              c_dtype="float16", group_size=128, has_zero_point=True, n_pad=4096, k_pad=4096, m=20, has_bias=False)
    k0 = at.problem_key(**kw)
    assert at.problem_key(**{**kw, "m": 32}) == k0                      # same bucket
    for change in (dict(m=33), dict(device_name="NVIDIA H100"), dict(version="0.2.0"), dict(has_bias=True),
                   dict(group_size=64), dict(act_group_size=128), dict(c_dtype="bfloat16")):
        assert at.problem_key(**{**kw, **change}) != k0, change


def test_cache_file(tmp_path):
    path = str(tmp_path / "sub" / "tune.json")
    c = at.TuneCache(path)
    assert c.get("k") is None
    c.put("k", {"config": {"block_n": 128}, "ms": 0.01})
    assert at.TuneCache(path).get("k")["config"] == {"block_n": 128}
    assert os.listdir(tmp_path / "sub") == ["tune.json"]                 # written atomically, no leftovers
    with open(path, "w") as f:
        f.write("{not json")
    assert at.TuneCache(path).entries == {}
    with open(path, "w") as f:
        json.dump({"schema": 999, "entries": {"k": {"config": {}}}}, f)
    assert at.TuneCache(path).entries == {}


def test_apply_entry():
    base = _base(16, 4096, 4096)
    good = {"config": {"block_n": 128, "block_k": 256, "warp_k": 64, "stages": 4, "split_k": 2, "nonsense": 1}}
    cfg = at.apply_entry(base, good)
    assert (cfg.block_n, cfg.block_k, cfg.warp_k, cfg.stages, cfg.split_k) == (128, 256, 64, 4, 2)
    assert at.apply_entry(base, {"config": {"block_k": 96}}) is None      # invalid for this call: default kept
    glu = base.with_(activation="silu_glu", glu=True)
    assert at.apply_entry(glu, {"config": {"mainloop": "sm90", "block_m": 64, "warp_m": 64, "warp_k": 64,
                                           "block_k": 64}}) is None
    # a wgmma tiling on a decode default with mma.sync-only options (swap_ab, launch bounds): those switched off
    from humming_cute.tune.heuristics import default_config

    dec = default_config(1, 4096, 4096, a_dtype="float16", b_dtype="int4", c_dtype="float16", group_size=128,
                         arch="sm_90a")
    assert dec.swap_ab and dec.launch_min_blocks == 1
    wg = at.apply_entry(dec, {"config": {"mainloop": "sm90", "block_m": 64, "warp_m": 64, "block_n": 128,
                                         "warp_n": 64, "block_k": 64, "warp_k": 64, "stages": 4, "split_k": 1,
                                         "two_level_scales": False}})
    assert wg is not None and wg.mainloop == "sm90" and not (wg.swap_ab or wg.rows8 or wg.warp_pipeline or wg.pdl)
    assert wg.launch_min_blocks == 0


class _FakeOps:
    """Stands in for humming_cute.ops on the CPU: gemm returns a value per config (one candidate disagrees, one
    raises); the timer reads a made-up time per config."""

    def __init__(self):
        self._DEFAULTS = {"stale": 1}
        self._C_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
        self.calls = 0

    def check_input(self, x, weight, bias):
        pass

    def _check_x_scales(self, x, weight, x_scales, out_dtype):
        return None, 0

    def device_target(self, dev):
        return "sm_90a"

    def _num_sms(self, dev):
        return 132

    def gemm(self, x, weight, config=None, **kw):
        self.calls += 1
        if config.block_n == 256 and config.mainloop == "sm80":
            raise RuntimeError("does not launch")
        y = torch.ones(x.shape[0], weight.shape_n)
        if config.split_k == 4:
            y[0, 0] = 5.0                                                  # disagrees with the default
        return y


class _W:
    a_dtype, b_dtype, group_size, has_zero_point = "float16", "uint4", 128, True
    shape_n, n_pad, k_pad = 1024, 1024, 2048


class _X:
    """Stands in for a CUDA activation tensor (lookups only answer for CUDA tensors)."""

    def __init__(self, m, k=2048):
        self.shape = (m, k)
        self.device = torch.device("cuda", 0)
        self.dtype = torch.float16


def _fake_gpu(monkeypatch, tmp_path):
    """autotune without a GPU: the ops it calls answer from _FakeOps, its cache is a fresh file in tmp_path."""
    import humming_cute.ops as real_ops

    fake = _FakeOps()
    for name in ("check_input", "_check_x_scales", "device_target", "_num_sms", "gemm", "_DEFAULTS", "_C_NAMES"):
        monkeypatch.setattr(real_ops, name, getattr(fake, name))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(at, "_device_name", lambda dev: "FakeGPU")
    monkeypatch.setenv("HUMMING_CUTE_TUNE_CACHE", str(tmp_path / "t.json"))
    return real_ops


def test_autotune_picks_the_fastest_agreeing_candidate(monkeypatch, tmp_path):
    real_ops = _fake_gpu(monkeypatch, tmp_path)
    x = _X(64)
    w = _W()
    base = _base(64, 1024, 2048)
    cands = at.candidate_configs(base, 64, 1024, 2048)

    def made_up_ms(cfg):   # fastest: split-K 4 (disagrees), then a 128-wide wgmma tile
        return {4: 0.001}.get(cfg.split_k, 0.02 if (cfg.mainloop, cfg.block_n, cfg.block_k) == ("sm90", 128, 128)
                              else 0.05)

    timed = []

    def timer(fn):
        cfg = fn.__defaults__[0]
        timed.append(cfg)
        return made_up_ms(cfg)

    best = at.autotune(x, w, timer=timer)
    assert (best.mainloop, best.block_n, best.block_k, best.split_k) == ("sm90", 128, 128, 1)
    assert all(c.split_k != 4 for c in timed) and all(not (c.block_n == 256 and c.mainloop == "sm80")
                                                    for c in timed)
    assert len(timed) == sum(1 for c in cands if c.split_k != 4 and not (c.block_n == 256 and c.mainloop == "sm80"))
    assert real_ops._DEFAULTS == {}                                      # memoised defaults dropped
    entry = at.lookup(x, w, "float16", False, 0, "sm_90a")
    assert entry["config"]["block_n"] == 128 and entry["ms"] == 0.02 and entry["default_ms"] == 0.05
    assert at.tuned_config(base, x, w, c_name="float16", arch="sm_90a") == best
    # another M bucket is not tuned: the default stays
    assert at.tuned_config(_base(16, 1024, 2048), _X(16), w, c_name="float16",
                           arch="sm_90a") == _base(16, 1024, 2048)
    # off CUDA there is nothing to look up
    assert at.lookup(torch.zeros(64, 2048), w, "float16", False, 0, "sm_90a") is None
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="captured"):
        at.autotune(x, w, timer=timer)


@pytest.mark.parametrize("cand_ms,expect_default", [(0.048, True), (0.0485, True), (0.046, False)])
def test_autotune_min_gain_keeps_the_default(monkeypatch, tmp_path, cand_ms, expect_default):
    """min_gain: a candidate replaces the default only when faster by that fraction (0.05 here: below 0.0476 ms
    against the default's 0.05); otherwise the default config is stored, with its own time."""
    _fake_gpu(monkeypatch, tmp_path)
    x, w, base = _X(64), _W(), _base(64, 1024, 2048)

    def timer(fn):
        cfg = fn.__defaults__[0]
        return 0.05 if cfg == base else (cand_ms if (cfg.mainloop, cfg.block_n, cfg.block_k) == ("sm90", 128, 128)
                                         else 0.07)

    best = at.autotune(x, w, timer=timer, min_gain=0.05)
    entry = at.lookup(x, w, "float16", False, 0, "sm_90a")
    if expect_default:
        assert best == base and entry["ms"] == 0.05
    else:
        assert (best.mainloop, best.block_n, best.block_k) == ("sm90", 128, 128) and entry["ms"] == cand_ms
    assert entry["default_ms"] == 0.05 and entry["is_default"] == expect_default
    assert at.autotune(x, w, timer=timer, min_gain=0.0) != base        # without it the fastest always wins
    for bad in (-0.1, 1.0, True, "3%"):
        with pytest.raises(ValueError, match="min_gain"):
            at.autotune(x, w, timer=timer, min_gain=bad)


def test_autotune_confirm_rounds(monkeypatch, tmp_path):
    """confirm_rounds: a winner of the sweep and the default are timed again in alternating order and compared by
    medians; a candidate that was fast only in the sweep (clock drift) does not replace the default, one that stays
    fast does."""
    _fake_gpu(monkeypatch, tmp_path)
    x, w, base = _X(64), _W(), _base(64, 1024, 2048)
    for later_ms, expect_default in ((0.0505, True), (0.044, False)):
        seen = {}

        def timer(fn):
            cfg = fn.__defaults__[0]
            seen[cfg] = seen.get(cfg, 0) + 1
            if cfg == base:
                return 0.05
            if (cfg.mainloop, cfg.block_n, cfg.block_k) == ("sm90", 128, 128):
                return 0.04 if seen[cfg] == 1 else later_ms                 # the sweep's time, then the rounds'
            return 0.07

        best = at.autotune(x, w, timer=timer, min_gain=0.03, confirm_rounds=3)
        entry = at.lookup(x, w, "float16", False, 0, "sm_90a")
        winner = next(c for c in seen if (c.mainloop, c.block_n, c.block_k) == ("sm90", 128, 128))
        assert seen[base] == 4 and seen[winner] == 4                        # the sweep + 3 rounds each
        assert (best == base) == expect_default and entry["is_default"] == expect_default
        assert entry["default_ms"] == 0.05 and entry["ms"] == (0.05 if expect_default else later_ms)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="confirm_rounds"):
            at.autotune(x, w, timer=timer, confirm_rounds=bad)


@pytest.mark.gpu
def test_autotune_on_the_gpu(monkeypatch, tmp_path):
    """A real tuning run on a small problem: the winner agrees with the reference, is stored, and later default
    calls of that M bucket take it."""
    import humming_cute as hc
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight

    monkeypatch.setenv("HUMMING_CUTE_TUNE_CACHE", str(tmp_path / "t.json"))
    torch.manual_seed(0)
    qw = quantize_weight(torch.randn(1024, 2048, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(48, 2048, device="cuda", dtype=torch.float16)
    best = hc.autotune(x, pw, rep_ms=10, max_candidates=8)
    ref = reference_gemm(x, qw, out_dtype=torch.float32)
    y = hc.gemm(torch.randn(40, 2048, device="cuda", dtype=torch.float16), pw)   # same bucket (64)
    assert y.shape == (40, 1024)
    y = hc.gemm(x, pw)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3
    entry = json.load(open(tmp_path / "t.json"))["entries"]
    assert len(entry) == 1 and next(iter(entry.values()))["config"]["block_n"] == best.block_n
    from humming_cute import ops

    used = [v[1] for v in ops._DEFAULTS.values() if v[0]() is pw]
    assert used and all(at.apply_entry(c, {"config": {f: getattr(best, f) for f in at.TUNED_FIELDS}}) == c
                        for c in used)


def test_bench_autotune_option():
    from humming_cute.bench.core import parse_args

    assert parse_args(["--autotune", "12"]).autotune == 12 and parse_args([]).autotune == 0
    assert parse_args(["--moe", "--autotune", "4"]).autotune == 4          # MoE rows tune with autotune_moe
    for argv in (["--autotune", "-1"], ["--moe", "--autotune", "-2"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_autotune_argument_errors():
    x = torch.zeros(4, 64, dtype=torch.float16)
    for kw, match in ((dict(rep_ms=0), "rep_ms"), (dict(rep_ms="fast"), "rep_ms"), (dict(max_candidates=0),
                      "max_candidates"), (dict(max_candidates=True), "max_candidates")):
        with pytest.raises(ValueError, match=match):
            at.autotune(x, _W(), **kw)


def test_shipped_table_answers_after_the_user_cache(monkeypatch, tmp_path):
    """A GPU's shipped table (version '*' in its keys) is consulted where the user's cache has no entry; the
    user's entry wins where both have one."""
    monkeypatch.setattr(at, "TABLES_DIR", str(tmp_path / "tables"))
    monkeypatch.setattr(at, "_TABLES", {})
    monkeypatch.setattr(at, "_device_name", lambda dev: "NVIDIA H200")
    monkeypatch.setenv("HUMMING_CUTE_TUNE_CACHE", str(tmp_path / "user.json"))
    assert at.table_file("NVIDIA H200") == str(tmp_path / "tables" / "NVIDIA_H200.json")
    assert os.path.basename(at.table_file("NVIDIA H100 80GB HBM3")) == "NVIDIA_H100_80GB_HBM3.json"
    x, w = _X(16), _W()
    assert at.lookup(x, w, "float16", False, 0, "sm_90a") is None
    at.TuneCache(at.table_file("NVIDIA H200")).put(at._key_for(x, w, "float16", False, 0, "sm_90a", version="*"),
                                                    {"config": {"block_n": 128}})
    monkeypatch.setattr(at, "_TABLES", {})        # tables are read once per process: start a fresh one
    assert at.lookup(x, w, "float16", False, 0, "sm_90a")["config"] == {"block_n": 128}
    at.TuneCache(str(tmp_path / "user.json")).put(at._key_for(x, w, "float16", False, 0, "sm_90a"),
                                                   {"config": {"block_n": 256}})
    monkeypatch.setattr(at, "_CACHE", None)
    assert at.lookup(x, w, "float16", False, 0, "sm_90a")["config"] == {"block_n": 256}


def test_tune_cache_drop(tmp_path):
    """drop removes an entry from the file too (build_table drops problems where the default stays)."""
    c = at.TuneCache(str(tmp_path / "t.json"))
    c.put("a", {"config": {"block_n": 64}})
    c.put("b", {"config": {"block_n": 128}})
    c.drop("a")
    c.drop("missing")
    assert set(at.TuneCache(str(tmp_path / "t.json")).entries) == {"b"}


def test_build_table_arguments():
    from humming_cute.tune.build_table import parse_args

    a = parse_args(["--shapes", "1024x2048,4096x4096", "--m", "1,64"])
    assert a.shape_list == [(1024, 2048), (4096, 4096)] and a.m_list == [1, 64]
    assert a.min_gain == 0.03 and a.confirm == 3
    assert parse_args(["--min-gain", "0"]).min_gain == 0.0
    for argv in (["--shapes", "10x"], ["--m", "0"], ["--max-candidates", "0"], ["--shapes", ""], ["--min-gain", "-1"],
                 ["--min-gain", "1"], ["--confirm", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_candidates_cover_the_sm90_scheduling_options():
    """On sm_90a the candidates include the producer warpgroup and split-K inside a cluster, and tiles that turn
    an inherited option off (an unsplit tile of a cluster-split default is not dropped); entries written before
    those fields existed apply with them off."""
    from humming_cute.tune.heuristics import default_config

    base = default_config(64, 8192, 8192, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                          arch="sm_90a")
    assert base.cluster_split_k
    cands = at.candidate_configs(base, 64, 8192, 8192, max_candidates=400)
    assert any(c.warp_specialized for c in cands) and any(c.cluster_split_k and c.mainloop == "sm80" for c in cands)
    assert any(c.mainloop == "sm90" and c.split_k == 1 and not c.cluster_split_k for c in cands)
    old = {"config": {f: getattr(base, f) for f in at.TUNED_FIELDS if f not in ("warp_specialized",
                                                                              "cluster_split_k")}}
    old["config"]["split_k"] = 1
    got = at.apply_entry(base, old)
    assert got is not None and not got.cluster_split_k and not got.warp_specialized


def test_wgmma_candidates_start_with_the_default_tile():
    """On sm_90a the wgmma candidates of the default's tile shape come first (after, from M = 1024 with 16-bit
    activations, three tall tiles: 176 x 256 two-atom with a_split 4, multicast 2 or not, and 192 x 128, producer
    warpgroup, persistent; then, from M = 256, the default with the staged C store), so a short candidate list
    still times its deeper-pipeline, producer-warpgroup and multicast variants."""
    from humming_cute.tune.heuristics import default_config

    # (4096 x 14336 at M = 8192: one 256-row tile per CTA; 28672 x 4096 runs it on the persistent grid)
    base = default_config(8192, 4096, 14336, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                          group_size=128, arch="sm_90a")
    assert base.mainloop == "sm90" and base.block_m == 256 and not base.persistent_ctas
    cands = at.candidate_configs(base, 8192, 4096, 14336, max_candidates=10)
    wg = [c for c in cands[1:] if c.mainloop == "sm90"]
    tall = [(c.block_m, c.block_n, c.warp_n, c.a_split, c.cluster_n, c.warp_specialized, c.persistent_ctas)
            for c in wg[:3]]
    assert tall == [(176, 256, 128, 4, 2, True, 132), (176, 256, 128, 4, 1, True, 132),
                    (192, 128, 64, 1, 1, True, 132)]
    # then the default with the direct C store (the default stages, `heuristics.DENSE_WGMMA_STAGED`; in the ring)
    assert base.staged_store and base.staging_in_ring and wg[3] == base.with_(staged_store=False)
    wg = wg[4:]
    assert len(wg) >= 3 and all((c.block_m, c.block_n) == (base.block_m, base.block_n) for c in wg[:3])
    assert any(c.stages > base.stages and not c.warp_specialized and c.cluster_n == 1 for c in wg)
    assert any(c.warp_specialized for c in wg) and any(c.cluster_n == 2 for c in wg)
    # below M = 1024, and with 8-bit activations, no tall tiles
    for m, a in ((256, "float16"), (4096, "float8e4m3")):
        b = default_config(m, 28672, 4096, a_dtype=a, b_dtype="int4" if a != "float16" else "uint4",
                           c_dtype="float16", group_size=0 if a != "float16" else 128, arch="sm_90a")
        assert not any(c.block_m in (176, 192) or c.a_split > 1
                       for c in at.candidate_configs(b, m, 28672, 4096, max_candidates=400))
    # an entry's a_split is applied (and one written before that field existed applies with a_split 1)
    entry = {"config": {f: getattr(cands[2], f) for f in at.TUNED_FIELDS}}
    assert at.apply_entry(base, entry) == cands[2] and cands[2].a_split == 4
    del entry["config"]["a_split"]
    assert at.apply_entry(base, entry) is None          # 176 x 256 two-atom tiles need the pieces


def test_two_atom_candidates():
    """Dense wgmma candidates include 256-wide two-atom tiles (with and without the producer warpgroup, persistent);
    the other wgmma candidates do not inherit a persistent grid from a two-atom default (M = 4096, 8192^2)."""
    from humming_cute.tune.heuristics import default_config

    base = default_config(4096, 8192, 8192, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                          group_size=128, arch="sm_90a")
    assert (base.warp_n, base.persistent_ctas) == (128, 132)
    cands = at.candidate_configs(base, 4096, 8192, 8192, max_candidates=400)
    two = [c for c in cands[1:] if c.mainloop == "sm90" and c.warp_n == 128]
    assert {(c.block_m, c.warp_specialized, c.persistent_ctas > 0) for c in two} >= {(64, False, False),
                                                                                      (64, True, True),
                                                                                      (128, True, False)}
    assert all(c.block_n == 256 and c.block_k == 64 and c.split_k == 1 for c in two)
    one = [c for c in cands[1:] if c.mainloop == "sm90" and c.warp_n == 64]
    assert one and all(c.warp_specialized or not c.persistent_ctas for c in one)
    assert any(not c.persistent_ctas for c in one if c.warp_specialized)


def test_shipped_tables_apply_to_their_problems():
    """Every entry of every shipped table (humming_cute/tune/tables) is a valid tiling for its own problem (the
    key's formats, padded N / K and M bucket) and differs from the heuristic default there (entries equal to the
    default are not shipped: they would pin today's heuristics)."""
    import glob

    from humming_cute.tune.heuristics import default_config

    files = glob.glob(os.path.join(at.TABLES_DIR, "*.json"))
    assert files, "no shipped table"
    for f in files:
        data = json.load(open(f))
        assert data["schema"] == at._SCHEMA and data["entries"]
        for key, entry in data["entries"].items():
            dev, arch, version, a, b, c, group, zp, n, k, m, bias, act_group = key.split("|")
            assert version == "*" and os.path.basename(f) == os.path.basename(at.table_file(dev))
            base = default_config(int(m), int(n), int(k), a_dtype=a, b_dtype=b, c_dtype=c, group_size=int(group),
                                  arch=arch, has_bias=bias == "1", act_group_size=int(act_group))
            assert base.has_zero_point == (zp == "1")
            cfg = at.apply_entry(base, entry)
            assert cfg is not None and cfg.validate() == cfg and cfg != base, key
            assert entry["ms"] * 1.03 <= entry["default_ms"], key       # build_table's --min-gain


def test_tables_dir_from_the_environment(tmp_path):
    """HUMMING_CUTE_TABLES_DIR replaces the shipped tables' directory (read at import)."""
    import subprocess
    import sys

    code = "import humming_cute.tune.autotune as at; print(at.table_file('NVIDIA H200'))"
    env = {**os.environ, "HUMMING_CUTE_TABLES_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tmp_path / "NVIDIA_H200.json")
    env.pop("HUMMING_CUTE_TABLES_DIR")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == os.path.join(at.TABLES_DIR, "NVIDIA_H200.json")


def test_staged_store_entries():
    """`staged_store` is a tuned field: an entry with it applies it (on a dense wgmma default), one written before
    the field existed applies without it."""
    from humming_cute.tune.heuristics import default_config

    base = default_config(4096, 8192, 8192, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                          group_size=128, arch="sm_90a")
    staged = base.with_(staged_store=True, stages=6).validate()
    entry = {"config": {f: getattr(staged, f) for f in at.TUNED_FIELDS}}
    assert at.apply_entry(base, entry) == staged
    del entry["config"]["staged_store"]
    assert at.apply_entry(base, entry) == base.with_(stages=6)


def test_k_slice_candidates():
    """Up to M = 256 the wgmma candidates include the K halves across two consumer warpgroups (warp_k = 64 on
    128-deep tiles): the default tile with the other choice right after the default, then the 128-deep tiles of the
    default's height with them."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    for m, n, k in ((64, 4096, 14336), (64, 8192, 8192)):
        base = default_config(m, n, k, **kw)
        cands = at.candidate_configs(base, m, n, k, max_candidates=40)
        assert cands[0] == base and len(set(cands)) == len(cands)
        other = 128 if base.warp_k == 64 else 64          # (the default's own choice flipped)
        assert cands[1] == base.with_(warp_k=other, stages=cands[1].stages)
        assert any(c.warp_k == 64 and c.block_k == 128 for c in cands)
    big = default_config(4096, 8192, 8192, **kw)
    assert not any(c.mainloop == "sm90" and c.warp_k < c.block_k
                   for c in at.candidate_configs(big, 4096, 8192, 8192, max_candidates=40))
