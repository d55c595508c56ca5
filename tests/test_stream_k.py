"""Stream-K (`GemmConfig.stream_k`): the unit split the kernel follows (host model, CPU), its config rules and
compile check (CPU), and the GEMM against the reference (GPU)."""
import re

import pytest
import torch

from humming_cute import stream_k as sk
from humming_cute.config import GemmConfig


@pytest.mark.parametrize("tiles,k_tiles,ctas", [(128, 64, 132), (3584, 64, 132), (2, 8, 132), (7, 5, 3), (1, 1, 1),
                                                (5, 7, 35), (64, 16, 132)])
def test_units_are_covered_once_and_parts_agree(tiles, k_tiles, ctas):
    """Every (tile, k-tile) unit is worked on by exactly one CTA; a tile's parts are consecutive CTAs whose count
    and first CTA `tile_parts` gives; a CTA uses at most two workspace slots (its first and last tile), the slot
    the reducer computes for each part (2c + (0 if it is c's first tile else 1)) is the one the part writes, and
    only tiles split over several CTAs use the workspace."""
    ctas = sk.stream_k_ctas(tiles, k_tiles, ctas)
    units = tiles * k_tiles
    seen = [[] for _ in range(tiles)]
    for c in range(ctas):
        work = sk.cta_work(c, tiles, k_tiles, ctas)
        assert work, "every CTA takes at least one unit"
        assert sum(k1 - k0 for _, k0, k1, _ in work) == sk.cta_units(c, units, ctas)[1] - sk.cta_units(c, units,
                                                                                                        ctas)[0]
        assert len({slot for *_, slot in work if slot >= 0}) == len([1 for *_, slot in work if slot >= 0]) <= 2
        for tile, k0, k1, slot in work:
            assert 0 <= k0 < k1 <= k_tiles
            seen[tile].append((k0, k1, c, slot))
    for tile, parts in enumerate(seen):
        ks = sorted(parts)
        assert ks[0][0] == 0 and ks[-1][1] == k_tiles
        assert all(a[1] == b[0] for a, b in zip(ks, ks[1:])), "the parts tile K without gap or overlap"
        first, n = sk.tile_parts(tile, k_tiles, units, ctas)
        assert [p[2] for p in ks] == list(range(first, first + n))      # consecutive CTAs, in K order
        for k0, k1, c, slot in ks:
            if n == 1:
                assert slot == -1
            else:
                first_tile = c * units // ctas // k_tiles
                assert slot == 2 * c + (0 if tile == first_tile else 1)
    assert sk.workspace_rows(ctas, 128) == 2 * ctas * 128


def test_grid_and_overflow():
    assert sk.stream_k_ctas(2, 8, 132) == 16 and sk.stream_k_ctas(128, 64, 132) == 132
    with pytest.raises(ValueError, match="32-bit"):
        sk.stream_k_ctas(1 << 20, 1 << 6, 132)


def test_config_rules(monkeypatch):
    """stream_k: the dense wgmma GEMM with the persistent grid, 16-bit activations; other combinations are named in
    the error."""
    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, warp_m=128,
              block_n=128, warp_n=64, block_k=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90",
              warp_specialized=True, persistent_ctas=132, stream_k=True)
    GemmConfig(**kw).validate()
    for bad in (dict(persistent_ctas=0), dict(moe=True, moe_top_k=2), dict(cluster_n=2),
                dict(a_dtype="float8e4m3", b_dtype="int4", group_size=0)):
        with pytest.raises(ValueError, match="stream_k"):
            GemmConfig(**{**kw, **bad}).validate()
    with pytest.raises(ValueError, match="stream_k is an option of the wgmma mainloop"):
        GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, stream_k=True).validate()


@pytest.mark.parametrize("extra", [dict(), dict(b_dtype="int8", group_size=0, staged_store=True),
                                   dict(block_m=256, warp_m=256)])
def test_stream_k_compiles(monkeypatch, extra):
    """The persistent wgmma kernel with stream-K: the tile ticket (atomic add), fences around the partials, no
    spills."""
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm
    from humming_cute.runtime.compile import fake_operands
    from humming_cute.testing.ptx import compile_for_arch

    kw = {**dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=128, warp_m=128,
                 block_n=128, warp_n=64, block_k=64, warp_k=64, stages=6, arch="sm_90a", mainloop="sm90",
                 warp_specialized=True, persistent_ctas=132, stream_k=True), **extra}
    cfg = GemmConfig(**kw).validate()
    art = compile_for_arch(Sm90MixedGemm(cfg), *fake_operands(cfg), arch="sm_90a", options="--enable-tvm-ffi")
    assert re.search(r"atom\.(global\.)?add", art.ptx) and art.ptx.count("fence.acq_rel.gpu") >= 2
    assert "wgmma.mma_async" in art.ptx and sum(r.spill_bytes for r in art.ptxas.values()) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("a,b,group", [("float16", "uint4", 128), ("bfloat16", "int8", 0),
                                       ("float16", "float4e2m1", 32)])
@pytest.mark.parametrize("m,n,k,bm,ctas,extra", [
    (333, 640, 4096, 128, 7, {}), (1, 256, 512, 128, 132, {}), (700, 512, 1024, 256, 132, {}),
    (200, 640, 2048, 128, 13, {"staged_store": True}), (96, 512, 1024, 128, 9, {"glu": True})])
def test_stream_k_gemm(monkeypatch, a, b, group, m, n, k, bm, ctas, extra):
    """Stream-K against the reference (tiles shared by 2..8 CTAs, CTAs holding the tail of one tile and the head
    of the next, more CTAs than tiles), bitwise the same on a second launch (parts added in K order) and close to
    the persistent grid without stream-K; every output written."""
    import humming_cute as hc
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes
    from humming_cute.quant.reference import reference_gemm
    from humming_cute.quant.weight import quantize_weight

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    gen = torch.Generator().manual_seed(m + n + k)
    qw = quantize_weight(torch.randn(n, k, generator=gen).cuda(), b, group)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, generator=gen).to("cuda", getattr(torch, a))
    glu = extra.get("glu", False)
    act = "silu_glu" if glu else None
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=bm, warp_m=bm, block_n=128,
                     warp_n=64, block_k=64, warp_k=64, stages=6, arch="sm_90a", mainloop="sm90",
                     warp_specialized=True, persistent_ctas=ctas, stream_k=True,
                     staged_store=extra.get("staged_store", False) or glu,
                     activation="silu_glu" if glu else "none", glu=glu)
    while smem_bytes(cfg) > get_arch("sm_90a").smem_per_block_bytes:
        cfg = cfg.with_(stages=cfg.stages - 1)
    cfg = cfg.validate()
    out = torch.full((m, n // 2 if glu else n), float("nan"), device="cuda", dtype=x.dtype)
    y = hc.gemm(x, pw, config=cfg, activation=act, out=out).clone()
    assert not torch.isnan(y).any(), "an output was never written"
    ref = reference_gemm(x, qw, activation=act, out_dtype=torch.float32)
    tol = 2e-3 if a == "float16" else 1e-2
    assert ((y.float() - ref).norm() / ref.norm()).item() < tol
    assert torch.equal(hc.gemm(x, pw, config=cfg, activation=act), y), "stream-K is deterministic"
    plain = hc.gemm(x, pw, config=cfg.with_(stream_k=False), activation=act)
    assert ((y.float() - plain.float()).norm() / plain.float().norm()).item() < tol


def test_default_switch(monkeypatch):
    """`heuristics.STREAM_K` (off: stream-K measured slower than the data-parallel tiles): on, unsplit 16-bit dense wgmma tiles whose last wave
    would leave more than 2 % of the SMs' time idle become stream-K over one CTA per SM (the tile's own stages,
    fitting shared memory); full waves, split tiles, 8-bit activations, GLU layers and explicit mainloops stay."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    kw = dict(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, arch="sm_90a")
    assert not heur.default_config(256, 8192, 8192, **kw).stream_k
    monkeypatch.setattr(heur, "STREAM_K", True)
    cfg = heur.default_config(256, 8192, 8192, **kw).validate()       # 128 tiles on 132 SMs
    assert (cfg.stream_k, cfg.persistent_ctas, cfg.warp_specialized) == (True, 132, True)
    assert smem_bytes(cfg) <= get_arch("sm_90a").smem_per_block_bytes
    assert heur.stream_k_gain(256, 8192, cfg, 132) > 0.02
    assert not heur.default_config(256, 8192, 8192, num_sms=128, **kw).stream_k     # 128 tiles, one full wave
    assert not heur.default_config(64, 4096, 14336, **kw).stream_k                   # split-K tiles
    assert not heur.default_config(4096, 8192, 8192, glu=True, **kw).stream_k
    assert not heur.default_config(4096, 8192, 8192, mainloop="sm90", **kw).stream_k
    assert not heur.default_config(4096, 8192, 8192, **{**kw, "a_dtype": "float8e4m3", "b_dtype": "int4",
                                                        "group_size": 0}).stream_k
