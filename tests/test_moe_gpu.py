"""GPU tests of the MoE GEMM (vLLM fused_moe contract) against the reference (marked `gpu`)."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.quant.reference import reference_moe_gemm
from humming_cute.quant.weight import quantize_weight
from humming_cute.tune.heuristics import moe_block_size

pytestmark = pytest.mark.gpu


def _routing(tokens, experts, top_k, skewed, gen):
    if skewed:   # most slots go to a few experts; many experts get no token
        hot = torch.randint(0, min(3, experts), (tokens, top_k), generator=gen)
        ids = torch.where(torch.rand(tokens, top_k, generator=gen) < 0.85, hot,
                          torch.randint(0, experts, (tokens, top_k), generator=gen))
        # distinct experts per token, as routers produce
        for t in range(tokens):
            seen = set()
            for k in range(top_k):
                e = int(ids[t, k])
                while e in seen:
                    e = (e + 1) % experts
                ids[t, k] = e
                seen.add(e)
    else:
        ids = torch.stack([torch.randperm(experts, generator=gen)[:top_k] for _ in range(tokens)])
    return ids.to(torch.int32)


CASES = [(8, 2, 1), (8, 2, 7), (8, 1, 64), (64, 8, 7), (64, 8, 64), (128, 8, 1), (128, 8, 1000), (8, 2, 1000),
         (8, 2, 3000)]   # the last: 750 rows per expert, 128-row blocks


@pytest.mark.parametrize("experts,top_k,tokens", CASES)
@pytest.mark.parametrize("skewed", [False, True])
@pytest.mark.parametrize("down", [False, True])
def test_moe_matches_reference(experts, top_k, tokens, skewed, down):
    gen = torch.Generator().manual_seed(experts * 1000 + tokens * 10 + top_k)
    n, k = 256, 512
    w = torch.randn(experts, n, k, generator=gen).cuda()
    qw = quantize_weight(w, "uint4" if not down else "int4", 128)
    pw = hc.prepare_weight(qw, "float16")
    ids = _routing(tokens, experts, top_k, skewed, gen).cuda()
    emap = None
    if skewed:   # expert parallelism: every third expert lives on another rank
        emap = torch.arange(experts, dtype=torch.int32, device="cuda")
        emap[::3] = -1
    block_m = moe_block_size(tokens, top_k, experts)
    sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, block_m, experts, emap)
    x = torch.randn(tokens * top_k if down else tokens, k, generator=gen).to("cuda", torch.float16)
    topk_w = torch.rand(tokens, top_k, generator=gen).cuda()
    bias = torch.randn(experts, n, generator=gen).to("cuda", torch.float16) if tokens % 2 else None
    out = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=torch.float16)
    if emap is not None:
        out.zero_()   # rows of experts on another rank are left untouched
    y = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m, topk_weights=topk_w,
                    mul_topk_weights=down, is_down=down, bias=bias, out=out)
    ref = reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                             topk_weights=topk_w, mul_topk_weights=down, is_down=down, bias=bias,
                             out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output row was never written"
    rel = ((y.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
    assert rel < 2e-3, f"relative error {rel:.3e}"


@pytest.mark.parametrize("a", ["bfloat16", "float8e4m3"])
def test_moe_glu_and_layer(a):
    """An MoE layer with silu_glu; with fp8 activations it quantizes its fp16 input per row first (the reference
    then runs on the same codes and scales)."""
    from humming_cute.quant.activation import quantize_activation

    act8 = a != "bfloat16"
    if act8:
        if torch.cuda.get_device_capability() < (8, 9):
            pytest.skip("fp8 mma.sync needs sm_89+")
    io = "float16" if act8 else "bfloat16"
    torch.manual_seed(6 if act8 else 4)
    e, n, k, top_k, tokens = 8, 256, 512, 2, 33
    layer = hc.HummingLayer(n, k, a, "uint4", io, io, 128, num_experts=e, activation="silu_glu").cuda()
    for i in range(e):
        layer.load_weight(torch.randn(n, k, device="cuda"), expert_id=i)
    layer.finish_load()
    ids = torch.stack([torch.randperm(e)[:top_k] for _ in range(tokens)]).to(torch.int32).cuda()
    x = torch.randn(tokens, k, device="cuda", dtype=getattr(torch, io))
    y = layer.moe_forward(x, ids)
    assert y.shape == (tokens, top_k, n // 2)
    block_m = layer.moe_block_size(tokens, top_k)
    s, ei, npost = hc.moe_align_block_size(ids, block_m, e)
    xs = None
    if act8:
        x, xs = quantize_activation(x, a, 0)
    ref = reference_moe_gemm(x, layer.quantized_weight(), s, ei, npost, top_k=top_k, block_m=block_m,
                             activation="silu_glu", x_scales=xs, a_dtype=a if act8 else None,
                             out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < (2e-3 if act8 else 1e-2)


def test_moe_layer_out_buffer():
    """moe_forward(out=...): the GEMM writes into the caller's (here NaN-filled) buffer, bitwise what a fresh output
    gets, every routed row written; out of the wrong device / dtype / shape is refused before the launch."""
    torch.manual_seed(9)
    e, n, k, top_k, tokens = 8, 256, 512, 2, 300
    layer = hc.HummingLayer(n, k, "float16", "uint4", "float16", "float16", 128, num_experts=e).cuda()
    for i in range(e):
        layer.load_weight(torch.randn(n, k, device="cuda"), expert_id=i)
    layer.finish_load()
    ids = torch.stack([torch.randperm(e)[:top_k] for _ in range(tokens)]).to(torch.int32).cuda()
    x = torch.randn(tokens, k, device="cuda", dtype=torch.float16)
    y = layer.moe_forward(x, ids)
    buf = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=torch.float16)
    y2 = layer.moe_forward(x, ids, out=buf)
    assert y2.data_ptr() == buf.data_ptr() and not torch.isnan(buf).any() and torch.equal(y2, y)
    for bad in (torch.empty(tokens, top_k, n, dtype=torch.float16),
                torch.empty(tokens, top_k, n, device="cuda", dtype=torch.bfloat16),
                torch.empty(tokens, top_k, n + 8, device="cuda", dtype=torch.float16)):
        with pytest.raises(ValueError, match="out must be"):
            layer.moe_forward(x, ids, out=bad)


def test_moe_cuda_graph_replays_for_any_routing():
    torch.manual_seed(5)
    e, n, k, top_k, tokens, block_m = 16, 128, 256, 2, 24, 16
    qw = quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(tokens, k, device="cuda", dtype=torch.float16)
    ids = torch.zeros(tokens, top_k, dtype=torch.int32, device="cuda")
    out = torch.zeros(tokens, top_k, n, device="cuda", dtype=torch.float16)

    def step():
        s, ei, npost = hc.moe_align_block_size(ids, block_m, e)
        out.zero_()
        hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=block_m, out=out)
        return s, ei, npost

    step()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        s, ei, npost = step()
    for trial in range(3):
        ids.copy_(torch.stack([torch.randperm(e)[:top_k] for _ in range(tokens)]).to(torch.int32))
        g.replay()
        torch.cuda.synchronize()
        ref = reference_moe_gemm(x, qw, s, ei, npost, top_k=top_k, block_m=block_m, out_dtype=torch.float32)
        assert ((out.float() - ref).norm() / ref.norm()).item() < 2e-3, f"replay {trial}"


FORMATS = [  # (weight type, group size, scale dtype, global scale, activation dtype)
    ("uint4", 128, "float16", False, torch.float16),
    ("int8", 0, "float16", False, torch.bfloat16),
    ("float4e2m1", 32, "ue8m0", True, torch.bfloat16),
    ("int3", 64, "bfloat16", False, torch.float16),
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("block_m", [16, 32, 64, 128])
@pytest.mark.parametrize("split_warps", [False, True])
def test_moe_formats_and_tiles(fmt, block_m, split_warps):
    """Every MoE tile height, with K split across warps or not, on several weight formats and both
    activation dtypes (the default config splits K across warps; the other variant keeps one K-warp)."""
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    b_dtype, group, scale_dtype, gscale, a_dtype = fmt
    gen = torch.Generator().manual_seed(block_m + 7 * split_warps)
    e, n, k, top_k, tokens = 8, 192, 256, 2, 45
    qw = quantize_weight(torch.randn(e, n, k, generator=gen).cuda(), b_dtype, group, scale_dtype,
                         global_scale=gscale)
    a_name = "float16" if a_dtype == torch.float16 else "bfloat16"
    pw = hc.prepare_weight(qw, a_name)
    ids = _routing(tokens, e, top_k, False, gen).cuda()
    sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, block_m, e)
    x = torch.randn(tokens, k, generator=gen).to("cuda", a_dtype)
    cfg = default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                             group_size=pw.group_size, arch=device_target(x.device), top_k=top_k,
                             mainloop="sm80")   # the mma.sync tiles (test_moe_wgmma covers the wgmma ones)
    cfg = cfg.with_(warp_k=64 if split_warps else cfg.block_k, block_k=128 if split_warps else cfg.block_k)
    while smem_bytes(cfg) > get_arch(cfg.arch).smem_per_block_bytes:   # deeper k-tiles: fewer stages fit
        cfg = cfg.with_(stages=cfg.stages - 1)
    cfg = cfg.validate()
    assert (cfg.warps_k > 1) == split_warps
    out = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=a_dtype)
    y = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m, config=cfg, out=out)
    ref = reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                             out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output row was never written"
    tol = 2e-3 if a_dtype == torch.float16 else 1e-2
    rel = ((y.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
    assert rel < tol, f"relative error {rel:.3e} (config {cfg})"


@pytest.mark.parametrize("a,b,group", [("float8e4m3", "int4", 0), ("float8e4m3", "uint4", 128), ("int8", "int8", 0),
                                       ("int8", "uint4", 128), ("int4", "int4", 0)])
@pytest.mark.parametrize("tokens,top_k,down", [(1, 2, False), (37, 8, False), (300, 2, True)])
def test_moe_act8(a, b, group, tokens, top_k, down):
    """The MoE GEMM with 8/4-bit activations: codes + one fp32 scale per row of x (gathered with the row), the
    per-expert weight's lanes, two-level group scales. Same codes and scales in the reference: tolerance 2e-3
    (summation order and the fp16 output)."""
    if torch.cuda.get_device_capability() < (8, 9) and a.startswith("float8"):
        pytest.skip("fp8 mma.sync needs sm_89+")
    _check_act8_moe(a, b, group, tokens, top_k, down, moe_block_size(tokens, top_k, 8), lambda bm: None)


_ACT8_FORMATS = [("float8e4m3", "int4", 0), ("int8", "int8", 0), ("float8e4m3", "float8e4m3", 0),
                 ("float8e4m3", "uint4", 128), ("int8", "int4", 128)]
_ACT8_ROUTINGS = [(1, 2, False, 64, False, 0), (300, 8, True, 64, True, 0), (3000, 2, False, 128, False, 0),
                  (700, 2, True, 64, True, 7)]     # the last: a persistent grid (one accumulator: channel scales)


@pytest.mark.parametrize("a,b,group,tokens,top_k,down,block_m,ws,ctas",
                         [f + r for f in _ACT8_FORMATS for r in _ACT8_ROUTINGS if not (f[2] and r[5])])
def test_moe_wgmma_act8(a, b, group, tokens, top_k, down, block_m, ws, ctas):
    """The wgmma MoE GEMM with 8-bit activations: codes gathered in routed order, each row's fp32 activation scale
    (row id // top_k, or id) from the workspace slot; channel scales, or weight groups of 128 by two-level
    accumulation over the expert's own scale rows; against the reference and the mma.sync MoE GEMM on the same
    codes."""
    from humming_cute.config import GemmConfig

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group, block_m=block_m, block_n=128,
                     block_k=128, warp_m=block_m, warp_n=64, warp_k=128, stages=4, arch="sm_90a", mainloop="sm90",
                     moe=True, moe_top_k=top_k, moe_down=down, moe_mul_topk_weights=down, warp_specialized=ws,
                     persistent_ctas=ctas).validate()
    sm80 = cfg.with_(mainloop="sm80", warp_m=min(block_m, 64), warp_k=64, stages=3, warp_specialized=False,
                     persistent_ctas=0).validate()
    y, y80 = _check_act8_moe(a, b, group, tokens, top_k, down, block_m, lambda bm: cfg, lambda bm: sm80)
    assert ((y.float() - y80.float()).norm() / y80.float().norm()).item() < 2e-3


def _check_act8_moe(a, b, group, tokens, top_k, down, block_m, config, also=None):
    """8 experts [256, 512] of `b` (scale group `group`), a routing, `a` codes of x with per-row fp32 scales: the
    MoE GEMM with config(block_m) (None: the default) against the reference; -> (output, the output of
    also(block_m) on the same inputs, or None)."""
    from humming_cute.quant.activation import quantize_activation

    gen = torch.Generator().manual_seed(tokens * 10 + top_k)
    experts, n, k = 8, 256, 512
    qw = quantize_weight(torch.randn(experts, n, k, generator=gen).cuda(), b, group)
    pw = hc.prepare_weight(qw, a)
    ids = _routing(tokens, experts, top_k, False, gen).cuda()
    sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, block_m, experts)
    xq, xs = quantize_activation(torch.randn(tokens * top_k if down else tokens, k, generator=gen).cuda(), a, 0)
    topk_w = torch.rand(tokens, top_k, generator=gen).cuda()
    kw = dict(top_k=top_k, block_m=block_m, topk_weights=topk_w, mul_topk_weights=down, is_down=down,
              out_dtype=torch.float16, x_scales=xs)
    out = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=torch.float16)
    y = hc.moe_gemm(xq, pw, sorted_ids, expert_ids, num_post, out=out, config=config(block_m), **kw)
    ref = reference_moe_gemm(xq, qw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                             topk_weights=topk_w, mul_topk_weights=down, is_down=down, x_scales=xs, a_dtype=a,
                             out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output row was never written"
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < 2e-3, f"relative error {rel:.3e}"
    other = None if also is None else hc.moe_gemm(xq, pw, sorted_ids, expert_ids, num_post, config=also(block_m),
                                                  **kw)
    return y, other


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,ws", [
    (8, 2, 1, 64, 64, False, False, False), (8, 2, 300, 64, 128, True, True, False),
    (64, 8, 37, 64, 64, False, True, True), (8, 2, 3000, 128, 128, False, False, False),
    (8, 2, 3000, 128, 128, True, False, True), (8, 2, 2000, 128, 256, True, True, False),
    (128, 8, 200, 64, 256, False, False, False)])
def test_moe_wgmma(fmt, experts, top_k, tokens, block_m, bn, down, skewed, ws):
    """The MoE GEMM on the wgmma mainloop (sm_90a): x gathered into sorted order, per-expert weight and scale rows
    by TMA, the MoE epilogue on transposed accumulators; experts of another rank (-1) left untouched, routing
    weights, bias, with and without the producer warpgroup."""
    from humming_cute.arch import get_arch
    from humming_cute.config import GemmConfig, smem_bytes

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    def config(pw, a_name, has_bias):
        bk = 64 if 0 < pw.group_size < 128 else 128
        cfg = GemmConfig(a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name, group_size=pw.group_size,
                         has_bias=has_bias, block_m=block_m, block_n=bn, block_k=bk, warp_m=block_m, warp_n=64,
                         warp_k=bk, stages=4, arch="sm_90a", mainloop="sm90", moe=True, moe_top_k=top_k,
                         moe_down=down, moe_mul_topk_weights=down, warp_specialized=ws)
        while smem_bytes(cfg) > get_arch("sm_90a").smem_per_block_bytes:    # 8-bit weights, 256-wide tiles
            cfg = cfg.with_(stages=cfg.stages - 1)
        return cfg.validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512 if bn == 256 else 384, 512, block_m,
                  tokens + experts + block_m, config)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,ctas", [
    (8, 2, 1, 64, 64, False, False, 132), (64, 8, 37, 64, 128, True, True, 5), (8, 2, 3000, 128, 128, True, False, 132),
    (128, 8, 200, 64, 64, False, True, 1)])
def test_moe_wgmma_persistent(fmt, experts, top_k, tokens, block_m, bn, down, skewed, ctas):
    """The wgmma MoE GEMM on a persistent grid (producer warpgroup): each tile looks up its block's expert; padding
    blocks and other ranks' experts (-1) take no k-tiles and store nothing, also when one CTA walks every tile."""

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    config = _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_specialized=True, persistent_ctas=ctas)
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 384, 512, block_m, tokens + experts + ctas, config)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,cn,ctas", [
    (8, 2, 1, 64, 64, False, False, 4, 0), (64, 8, 37, 64, 128, True, True, 2, 0),
    (8, 2, 3000, 128, 128, True, False, 2, 132), (128, 8, 200, 64, 64, False, True, 4, 4)])
def test_moe_wgmma_cluster_n(fmt, experts, top_k, tokens, block_m, bn, down, skewed, cn, ctas):
    """The wgmma MoE GEMM with the activation tile multicast over clusters of cn CTAs (one routed block, cn
    weight tiles of its expert), one CTA per tile or a persistent grid: padding blocks and other ranks' experts
    (-1) are skipped by the whole cluster."""

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    config = _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_specialized=ctas > 0, persistent_ctas=ctas,
                               cluster_n=cn)
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, 512, block_m, tokens + experts + cn, config)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,bk,down,skewed,ctas", [
    (8, 2, 1, 64, 128, 64, False, False, 0), (64, 8, 37, 64, 128, 64, True, True, 0),
    (8, 2, 3000, 128, 64, 64, True, False, 132), (128, 8, 200, 64, 128, 128, False, True, 3),
    (8, 2, 3000, 128, 128, 64, False, True, 132), (16, 4, 900, 128, 128, 64, True, False, 0)])
def test_moe_wgmma_cp_async_rows(fmt, experts, top_k, tokens, block_m, bn, bk, down, skewed, ctas):
    """moe_cp_async_rows: the producer warpgroup copies x's rows in routed order by cp.async (no gathered copy of
    x), one CTA per tile or a persistent grid: matches the reference, and bitwise the TMA path over the gathered
    rows (padding positions leave their rows stale; those outputs are never stored)."""

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")

    def config(rows):
        return _wgmma_moe_config(block_m, bn, bk, top_k, down, warp_specialized=True, persistent_ctas=ctas,
                                 moe_cp_async_rows=rows)

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 512, block_m, tokens + experts + bk, config(True),
                  same_as=config(False))


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,ws", [
    (8, 2, 1, 16, 128, False, False, False), (64, 8, 37, 32, 128, True, True, True),
    (8, 2, 300, 32, 64, True, False, False), (128, 8, 200, 16, 128, False, True, True),
    (8, 2, 64, 32, 128, False, False, True)])
def test_moe_wgmma_small_blocks(fmt, experts, top_k, tokens, block_m, bn, down, skewed, ws):
    """wgmma MoE blocks of 16 / 32 routed rows (wgmma N = 16 / 32): against the reference, with padding, other ranks'
    experts, routing weights and bias, with and without the producer warpgroup."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 512, block_m, tokens + experts + 3 * block_m,
                  _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_specialized=ws))


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,n,down,skewed,ws,ctas,rows", [
    (8, 2, 1, 64, 64, 384, False, False, False, 0, False), (64, 8, 37, 64, 128, 604, True, True, True, 0, False),
    (8, 2, 3000, 128, 256, 512, True, False, False, 0, False),
    (128, 8, 200, 64, 128, 384, False, True, True, 132, True),
    (8, 2, 300, 128, 128, 604, False, False, True, 5, False), (64, 8, 37, 64, 128, 384, True, True, True, 0, True)])
def test_moe_wgmma_staged_store(fmt, experts, top_k, tokens, block_m, bn, n, down, skewed, ws, ctas,
                                rows):
    """staged_store on the wgmma MoE GEMM: each routed row leaves the staging tile as 16-byte vectors (N = 604: rows
    not 16-byte aligned take the element stores), padding and other ranks' rows untouched; bitwise equal to the per-
    element MoE epilogue, with and without the producer warpgroup, the persistent grid and cp.async rows."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")

    def config(staged):
        return _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_specialized=ws, persistent_ctas=ctas,
                                 moe_cp_async_rows=rows, staged_store=staged)

    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, 512, block_m, tokens + experts + n, config(True),
                  same_as=config(False))


@pytest.mark.parametrize("a,b,group", [("float16", "uint4", 128), ("bfloat16", "int8", 0)])
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,n,down,ws,ctas,wn", [
    (8, 2, 45, 64, 128, 384, False, False, 0, 64), (8, 2, 300, 128, 256, 512, True, False, 0, 64),
    (64, 8, 37, 64, 128, 604, True, True, 132, 64), (8, 2, 200, 64, 64, 256, False, True, 0, 64),
    (128, 8, 500, 64, 256, 512, False, False, 0, 64), (64, 8, 300, 48, 256, 512, False, True, 132, 128),
    (8, 2, 300, 128, 256, 512, True, False, 0, 128), (8, 2, 700, 144, 128, 512, False, True, 0, 64)])
def test_moe_wgmma_glu_staged(a, b, group, experts, top_k, tokens, block_m, bn, n, down, ws, ctas,
                              wn):
    """A GLU epilogue on the wgmma MoE GEMM (through the staged store): gate / up pairs combined per routed row,
    routing weights, padding and other ranks' rows untouched (N / 2 = 302: element stores); against the reference
    and close to the mma.sync GLU MoE epilogue."""
    from humming_cute.arch import get_arch
    from humming_cute.config import GemmConfig, smem_bytes
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import WGMMA_ONLY_MOE_BLOCKS, default_moe_config

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    gen = torch.Generator().manual_seed(tokens + n)
    dtype = getattr(torch, a)
    qw = quantize_weight(torch.randn(experts, n, 512, generator=gen).cuda(), b, group)
    pw = hc.prepare_weight(qw, a)
    ids = _routing(tokens, experts, top_k, True, gen).cuda()
    emap = torch.arange(experts, dtype=torch.int32, device="cuda")
    emap[::3] = -1
    s, ei, npost = hc.moe_align_block_size(ids, block_m, experts, emap)
    x = torch.randn(tokens * top_k if down else tokens, 512, generator=gen).to("cuda", dtype)
    w = torch.rand(tokens, top_k, generator=gen).cuda()
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, block_m=block_m, block_n=bn, block_k=64,
                     warp_m=block_m, warp_n=wn, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90", moe=True,
                     moe_top_k=top_k, moe_down=down, moe_mul_topk_weights=down, warp_specialized=ws,
                     persistent_ctas=ctas, staged_store=True, activation="silu_glu", glu=True)
    while smem_bytes(cfg) > get_arch("sm_90a").smem_per_block_bytes:     # the fp32 staging tiles take stages
        cfg = cfg.with_(stages=cfg.stages - 1)
    cfg = cfg.validate()
    kw = dict(top_k=top_k, topk_weights=w, mul_topk_weights=down, is_down=down, activation="silu_glu")
    y = hc.moe_gemm(x, pw, s, ei, npost, block_m=block_m, config=cfg, **kw)
    ref = reference_moe_gemm(x, qw, s, ei, npost, top_k=top_k, block_m=block_m, topk_weights=w,
                             mul_topk_weights=down, is_down=down, activation="silu_glu", out_dtype=torch.float32)
    off = (emap[ids.long()] < 0).reshape(tokens, top_k)
    assert (y[off] == 0).all(), "a row of another rank's expert was written"
    tol = 2e-3 if a == "float16" else 1e-2
    assert ((y.float() - ref).norm() / ref.norm()).item() < tol
    if block_m in WGMMA_ONLY_MOE_BLOCKS:
        return                           # (no mma.sync tile of this many rows to compare with)
    cfg80 = default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group,
                               arch=device_target(torch.device("cuda")), top_k=top_k, is_down=down,
                               mul_topk_weights=down, epilogue=True, mainloop="sm80").with_(activation="silu_glu",
                                                                                            glu=True)
    y80 = hc.moe_gemm(x, pw, s, ei, npost, block_m=block_m, config=cfg80.validate(), **kw)
    assert ((y.float() - y80.float()).norm() / y80.float().norm()).item() < tol



@pytest.mark.parametrize("activation", ["silu", "gelu_tanh", "custom"])
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,ws,staged", [
    (8, 2, 45, 64, 128, False, False, False), (64, 8, 37, 64, 128, True, True, True),
    (8, 2, 300, 128, 256, False, False, True)])
def test_moe_wgmma_activation(activation, experts, top_k, tokens, block_m, bn, down, ws, staged):
    """Element-wise activations (built-in and custom) in the wgmma MoE epilogue, per element and through the staged
    store, with bias and routing weights: against the reference, other ranks' rows untouched (MoE layers with such
    activations default to mma.sync)."""
    from humming_cute import activations
    from humming_cute.config import GemmConfig

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")

    def clipped_silu(v):
        return activations.minimum(activations.silu(v), 4.0)

    act = clipped_silu if activation == "custom" else activation
    name, act_fn, _ = activations.resolve(act, False)
    gen = torch.Generator().manual_seed(tokens + experts + bn)
    n, k = 512 if bn == 256 else 384, 512
    qw = quantize_weight(torch.randn(experts, n, k, generator=gen).cuda(), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    ids = _routing(tokens, experts, top_k, True, gen).cuda()
    emap = torch.arange(experts, dtype=torch.int32, device="cuda")
    emap[::3] = -1
    s, ei, npost = hc.moe_align_block_size(ids, block_m, experts, emap)
    x = torch.randn(tokens * top_k if down else tokens, k, generator=gen).to("cuda", torch.float16)
    w = torch.rand(tokens, top_k, generator=gen).cuda()
    bias = torch.randn(experts, n, generator=gen).to("cuda", torch.float16)
    cfg = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, has_bias=True,
                     block_m=block_m, block_n=bn, block_k=64, warp_m=block_m, warp_n=64, warp_k=64, stages=3,
                     arch="sm_90a", mainloop="sm90", moe=True, moe_top_k=top_k, moe_down=down,
                     moe_mul_topk_weights=down, warp_specialized=ws, staged_store=staged,
                     activation=name, custom_activation=act_fn).validate()
    kw = dict(top_k=top_k, topk_weights=w, mul_topk_weights=down, is_down=down, bias=bias, activation=act)
    y = hc.moe_gemm(x, pw, s, ei, npost, block_m=block_m, config=cfg, **kw)
    ref = reference_moe_gemm(x, qw, s, ei, npost, block_m=block_m, out_dtype=torch.float32, **kw)
    off = (emap[ids.long()] < 0).reshape(tokens, top_k)
    assert (y[off] == 0).all(), "a row of another rank's expert was written"
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("block_m,experts,top_k,tokens,n,bn,down,skewed,extra", [
    (48, 128, 8, 512, 384, 128, False, True, {}), (48, 128, 8, 512, 384, 128, True, False, {"warp_specialized": True}),
    (48, 8, 2, 300, 512, 256, False, False, {"staged_store": True}),
    (48, 64, 8, 37, 604, 128, True, True, {"warp_specialized": True, "moe_cp_async_rows": True}),
    (48, 128, 8, 200, 384, 128, False, True, {"warp_specialized": True, "persistent_ctas": 132}),
    (48, 8, 2, 1, 384, 64, True, False, {}), (160, 8, 2, 512, 384, 128, False, True, {}),
    (160, 8, 2, 700, 604, 128, True, False, {"warp_specialized": True, "staged_store": True}),
    (96, 16, 4, 300, 384, 128, False, True, {"warp_specialized": True, "moe_cp_async_rows": True})])
def test_moe_wgmma_odd_blocks(fmt, block_m, experts, top_k, tokens, n, bn, down, skewed, extra):
    """wgmma MoE blocks of 48 / 96 / 160 routed rows (wgmma N = block_m, not a power of two): against the reference
    with padding, other ranks' experts, routing weights and bias; with the producer warpgroup, the staged store, cp.async rows and the persistent grid."""

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, 512, block_m, tokens + experts + n + bn,
                  _wgmma_moe_config(block_m, bn, 64, top_k, down, **extra))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("block_m,experts,top_k,tokens,n,bn,down,skewed,extra", [
    (48, 128, 8, 512, 1024, 512, False, True, {"warp_n": 128, "a_split": 4}),
    (48, 64, 8, 300, 1000, 512, True, False, {"warp_n": 128, "a_split": 4, "moe_cp_async_rows": True,
                                             "persistent_ctas": 132}),
    (48, 8, 2, 200, 1000, 256, True, True, {"staged_store": True}),
    (32, 128, 8, 64, 1024, 256, False, False, {"moe_cp_async_rows": True, "persistent_ctas": 132})])
def test_moe_wgmma_four_consumer_warpgroups(fmt, block_m, experts, top_k, tokens, n, bn, down, skewed, extra):
    """The producer warpgroup with four consumer warpgroups (20 warps; the producer's registers handed to them by
    setmaxnreg, 104 each): two weight atoms per warpgroup with the A fragments in pieces (512-wide weight tiles)
    or one atom each (256 wide), with cp.async rows, the persistent grid and the staged store, against the
    reference with padding, other ranks' experts, routing weights and bias."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, 512, block_m, tokens + experts + n + bn,
                  _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_specialized=True, **extra))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("block_m,experts,top_k,tokens,n,down,skewed", [
    (48, 128, 8, 512, 384, False, True), (48, 128, 8, 333, 640, True, False), (48, 8, 2, 128, 512, False, False),
    (160, 8, 2, 512, 384, True, True), (32, 8, 2, 64, 512, True, True), (32, 8, 2, 61, 768, True, False)])
def test_moe_default_odd_blocks(fmt, block_m, experts, top_k, tokens, n, down, skewed):
    """The default configs of 48 / 160-row blocks (`default_moe_config`: 48 with 128-deep k-tiles, the producer
    warpgroup, cp.async rows and one CTA per SM where the groups allow; 160 with the producer warpgroup) and of
    32-row blocks of down projections with N < K (`MOE_BLOCK_32_DOWN_WGMMA`: K slices, persistent, cp.async rows
    where the groups allow) against the reference."""
    from humming_cute.tune.heuristics import default_moe_config

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    sms = torch.cuda.get_device_properties(0).multi_processor_count

    def make(pw, a_name, has_bias):
        return default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                  group_size=pw.group_size, arch="sm_90a", has_bias=has_bias, top_k=top_k,
                                  is_down=down, mul_topk_weights=down, num_tokens=tokens, num_experts=experts,
                                  num_sms=sms).validate()
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, 1024, block_m, tokens + experts + n, make)


@pytest.mark.parametrize("activation", [None, "silu_glu"])
@pytest.mark.parametrize("e,top_k,tokens,block_m,glu_block_m", [(32, 4, 200, 48, 48), (8, 2, 512, 160, 160),
                                                                (128, 8, 4096, 144, 128)])
def test_moe_layer_odd_blocks(activation, e, top_k, tokens, block_m, glu_block_m):
    """`moe_block_size` (`WGMMA_MOE_ODD_BLOCKS`, `MOE_BLOCK_144`): 48-row blocks at 25 rows per expert, 160-row ones
    at 128 (the producer warpgroup without a GLU), 144-row ones at 256 (128-row ones under a GLU), end to end
    through `HummingLayer.moe_forward` (align, default config, GEMM; a GLU through the staged store) against the
    reference."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    torch.manual_seed(block_m)
    n, k = 512, 512
    layer = hc.HummingLayer(n, k, "float16", "uint4", "float16", "float16", 128, num_experts=e,
                            activation=activation).cuda()
    for i in range(e):
        layer.load_weight(torch.randn(n, k, device="cuda"), expert_id=i)
    layer.finish_load()
    block_m = glu_block_m if activation else block_m
    assert layer.moe_block_size(tokens, top_k) == block_m
    ids = torch.stack([torch.randperm(e)[:top_k] for _ in range(tokens)]).to(torch.int32).cuda()
    w = torch.rand(tokens, top_k, device="cuda")
    x = torch.randn(tokens, k, device="cuda", dtype=torch.float16)
    y = layer.moe_forward(x, ids, w)
    s, ei, npost = hc.moe_align_block_size(ids, block_m, e)
    ref = reference_moe_gemm(x, layer.quantized_weight(), s, ei, npost, top_k=top_k, block_m=block_m, topk_weights=w,
                             activation=activation, out_dtype=torch.float32)
    assert y.shape == ref.shape
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3

@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,extra", [
    (8, 2, 1, 64, 256, False, False, {}), (64, 8, 37, 48, 256, True, True,
                                           dict(warp_specialized=True, persistent_ctas=132, moe_cp_async_rows=True)),
    (8, 2, 3000, 128, 256, True, False, dict(warp_specialized=True, persistent_ctas=132)),
    (128, 8, 200, 96, 128, False, True, {}), (8, 2, 500, 32, 512, True, True, dict(staged_store=True)),
    (16, 4, 2000, 128, 256, False, True, dict(warp_specialized=True, persistent_ctas=132, moe_cp_async_rows=True))])
def test_moe_wgmma_two_atoms(fmt, experts, top_k, tokens, block_m, bn, down, skewed, extra):
    """The wgmma MoE GEMM with two 64-row weight atoms per consumer warpgroup (warp_n=128): against the reference
    (padding, other ranks' experts untouched, routing weights, bias), and bitwise against one atom per warpgroup
    where that fits (block_n <= 128 with the producer warpgroup, <= 256 without)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    fits_one = bn <= (128 if extra.get("warp_specialized") else 256)
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, 512, block_m, tokens + experts + bn,
                  _wgmma_moe_config(block_m, bn, 64, top_k, down, warp_n=128, **extra),
                  same_as=_wgmma_moe_config(block_m, bn, 64, top_k, down, **extra) if fits_one else None)


@pytest.mark.parametrize("fmt", [("uint1", 128, "float16", False, torch.float16),
                                 ("int2", 64, "bfloat16", False, torch.bfloat16),
                                 ("uint3", 128, "float16", False, torch.float16),
                                 ("float3e1m1", 64, "float16", False, torch.float16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,down", [(8, 2, 3000, 128, True), (64, 8, 300, 48, False)])
def test_moe_two_atom_defaults_low_bits(fmt, experts, top_k, tokens, block_m, down):
    """The default 48 / 128-row MoE tiles (two 64-row atoms per warpgroup, cp.async rows, persistent) on 1- to 3-bit
    weights: against the reference and bitwise against one atom per warpgroup on 128-wide tiles."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    # (48-row blocks over K < 2048 take 512-wide tiles of four warpgroups: `MOE_BLOCK_48_WIDE_SHORT_K`)
    default = _default_moe(block_m, top_k, down, warp_n=128, block_n=512 if block_m == 48 else 256,
                           moe_cp_async_rows=True)

    _check_routed(fmt, experts, top_k, tokens, down, True, 512, 512, block_m, tokens + experts, default,
                  same_as=_wgmma_moe_config(block_m, 128, 64, top_k, down, warp_specialized=True,
                                            persistent_ctas=132, moe_cp_async_rows=True))


@pytest.mark.parametrize("fmt", FORMATS[:1], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,down,ctas,rows", [
    (8, 2, 3000, 128, True, 4, False), (16, 4, 2000, 96, False, 3, True), (64, 8, 600, 48, True, 5, True)])
def test_moe_wgmma_two_atoms_many_tiles_per_cta(fmt, experts, top_k, tokens, block_m, down, ctas, rows):
    """Two atoms per warpgroup on a persistent grid of a few CTAs, so each walks many tiles (the pipeline state
    and the epilogue's tables carry across tiles): against the reference and bitwise one atom per warpgroup."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    kw = dict(warp_specialized=True, persistent_ctas=ctas, moe_cp_async_rows=rows)
    _check_routed(fmt, experts, top_k, tokens, down, skewed=True, n=512, k=512, block_m=block_m,
                  seed=tokens + ctas, make_config=_wgmma_moe_config(block_m, 256, 64, top_k, down, warp_n=128, **kw),
                  same_as=_wgmma_moe_config(block_m, 128, 64, top_k, down, **kw))


@pytest.mark.parametrize("fmt", FORMATS[:2], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,warp_n,down,ctas,staged", [
    (64, 8, 600, 48, 256, 128, True, 5, False), (16, 4, 2000, 160, 128, 64, True, 3, False),
    (8, 2, 3000, 128, 256, 128, False, 132, False), (32, 4, 700, 160, 128, 64, False, 4, True),
    (128, 8, 300, 48, 256, 128, True, 132, True)])
def test_moe_wgmma_prefetch_rows(fmt, experts, top_k, tokens, block_m, bn, warp_n, down, ctas, staged):
    """`moe_prefetch_rows` (the persistent grid's storing threads copy the next tile's expert and routed rows, then
    the tile's routing weights and global scale, by cp.async): a few CTAs walking many tiles, 160-row blocks (two
    table rows per thread), other ranks' experts, the direct and the staged store; against the reference and
    bitwise equal to the same tile with one tile per CTA (no prefetch)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    kw = dict(warp_specialized=True, moe_cp_async_rows=True, warp_n=warp_n, staged_store=staged)
    made = {}

    def persistent(pw, a_name, has_bias):
        made["cfg"] = _wgmma_moe_config(block_m, bn, 64, top_k, down, persistent_ctas=ctas, **kw)(pw, a_name,
                                                                                               has_bias)
        return made["cfg"]

    _check_routed(fmt, experts, top_k, tokens, down, skewed=True, n=512, k=512, block_m=block_m,
                  seed=tokens + ctas + block_m, make_config=persistent,
                  same_as=_wgmma_moe_config(block_m, bn, 64, top_k, down, persistent_ctas=0, **kw))
    assert made["cfg"].moe_prefetch_rows


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,k,block_m,bn,down,skewed,extra", [
    (128, 8, 512, 640, 48, 128, False, True, dict(warp_specialized=True, persistent_ctas=132, moe_cp_async_rows=True)),
    (64, 8, 300, 512, 48, 128, True, False, dict(warp_specialized=True, persistent_ctas=5, moe_cp_async_rows=True)),
    (8, 2, 200, 640, 64, 64, True, True, {}),
    (16, 4, 333, 512, 32, 128, False, True, dict(warp_specialized=True, persistent_ctas=132, staged_store=True)),
    (32, 4, 700, 640, 96, 64, True, True, dict(warp_specialized=True, moe_cp_async_rows=True)),
    (64, 8, 600, 512, 48, 128, False, True, dict(warp_n=128, warp_specialized=True, persistent_ctas=7))])
def test_moe_wgmma_k_slices(fmt, experts, top_k, tokens, k, block_m, bn, down, skewed, extra):
    """K slices on the wgmma MoE GEMM (warp_k = block_k / 2: two consumer warpgroups per weight row range, each
    multiplying one half of every k-tile, slice 0 adding the other's sums and storing): one tile per CTA or a
    persistent grid (a few CTAs walking many tiles, the shared sum buffer reused), the producer warpgroup, cp.async
    rows, the staged store, two atoms; against the reference (padding, other ranks' experts untouched, routing
    weights, bias). Formats with groups under 128 run the same tile with 64-deep k-tiles, so unsliced."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    made = {}

    def sliced(pw, a_name, has_bias):
        cfg = _wgmma_moe_config(block_m, bn, 128, top_k, down, warp_k=64, **extra)(pw, a_name, has_bias)
        made["cfg"] = cfg
        return cfg

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, k, block_m, tokens + experts + bn + k, sliced)
    if fmt[1] == 0 or fmt[1] >= 128:
        assert made["cfg"].warp_k == 64 and made["cfg"].consumer_warpgroups == 2 * (bn // made["cfg"].warp_n)


def _wgmma_moe_config(block_m, bn, bk, top_k, down, **kw):
    """make_config for `_check_routed`: a wgmma MoE config of this tile (block_k down to 64 for 64-groups) with the
    routing's top_k / projection and the options in `kw`."""
    from humming_cute.config import GemmConfig

    def make(pw, a_name, has_bias):
        bk_ = 64 if 0 < pw.group_size < bk else bk
        opts = {"warp_n": 64, "stages": 4, **kw}
        opts["warp_k"] = min(opts.get("warp_k", bk_), bk_)      # (K slices: warp_k = block_k / 2)
        return GemmConfig(a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name, group_size=pw.group_size,
                          has_bias=has_bias, block_m=block_m, block_n=bn, block_k=bk_, warp_m=block_m,
                          arch="sm_90a", mainloop="sm90", moe=True, moe_top_k=top_k, moe_down=down,
                          moe_mul_topk_weights=down, **opts).validate()
    return make


def _default_moe(block_m, top_k, down, /, **expect):
    """make_config for `_check_routed`: the MoE GEMM's default config of this routing block for the weight, with the
    fields in `expect` asserted (a callable value is called with the prepared weight first)."""
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    def default(pw, a_name, has_bias):
        cfg = default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                 group_size=pw.group_size, arch=device_target(torch.device("cuda")),
                                 has_bias=has_bias, top_k=top_k, is_down=down, mul_topk_weights=down)
        got = {f: getattr(cfg, f) for f in expect}
        want = {f: v(pw) if callable(v) else v for f, v in expect.items()}
        assert got == want, (got, want)
        return cfg.validate()
    return default


def _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, block_m, seed, make_config, same_as=None):
    """Random weights of format `fmt` and a routing (every third expert on another rank when `skewed`), the MoE
    GEMM with make_config(prepared weight, activation dtype name, has_bias) against the reference: every routed
    row written, rows of other ranks' experts untouched, routing weights and bias (odd token counts) applied; with
    `same_as` (another make_config) also bitwise equal to that config's output."""
    b_dtype, group, scale_dtype, gscale, a_dtype = fmt
    gen = torch.Generator().manual_seed(seed)
    qw = quantize_weight(torch.randn(experts, n, k, generator=gen).cuda(), b_dtype, group, scale_dtype,
                         global_scale=gscale)
    a_name = "float16" if a_dtype == torch.float16 else "bfloat16"
    pw = hc.prepare_weight(qw, a_name)
    ids = _routing(tokens, experts, top_k, skewed, gen).cuda()
    emap = None
    if skewed:
        emap = torch.arange(experts, dtype=torch.int32, device="cuda")
        emap[::3] = -1
    sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, block_m, experts, emap)
    x = torch.randn(tokens * top_k if down else tokens, k, generator=gen).to("cuda", a_dtype)
    topk_w = torch.rand(tokens, top_k, generator=gen).cuda()
    bias = torch.randn(experts, n, generator=gen).to("cuda", a_dtype) if tokens % 2 else None
    cfg = make_config(pw, a_name, bias is not None)
    out = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=a_dtype)
    if emap is not None:
        out.zero_()
    y = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m, topk_weights=topk_w,
                    mul_topk_weights=down, is_down=down, bias=bias, out=out, config=cfg)
    ref = reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                             topk_weights=topk_w, mul_topk_weights=down, is_down=down, bias=bias,
                             out_dtype=torch.float32)
    assert not torch.isnan(y).any(), "an output row was never written"
    if emap is not None:
        off = (emap[ids.long()] < 0).reshape(tokens, top_k)
        assert (y[off] == 0).all(), "a row of another rank's expert was written"
    tol = 2e-3 if a_dtype == torch.float16 else 1e-2
    rel = ((y.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
    assert rel < tol, f"relative error {rel:.3e} (config {cfg})"
    if same_as is not None:
        y2 = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                         topk_weights=topk_w, mul_topk_weights=down, is_down=down, bias=bias,
                         config=same_as(pw, a_name, bias is not None))
        assert torch.equal(y, y2), "not bitwise equal to the reference config's output"


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,down,skewed", [
    (8, 2, 1, False, False), (8, 2, 7, True, True), (128, 8, 1, True, False), (64, 8, 33, False, True),
    (8, 1, 64, True, True)])
@pytest.mark.parametrize("split,n_major", [(2, False), (4, False), (3, True), (1, True)])
def test_moe_cluster_split_k(fmt, experts, top_k, tokens, down, skewed, split, n_major):
    """Decode-sized MoE blocks with K split inside a thread-block cluster (mma.sync mainloop, sm_90+) and / or the
    weight-tile-major grid (moe_n_major): matches the reference; blocks of another rank's expert (-1) stay untouched
    in every CTA of the cluster; bias and routing weights applied once."""
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    if split > 1 and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")

    def config(pw, a_name, has_bias):
        cfg = default_moe_config(16, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                 group_size=pw.group_size, arch=device_target(torch.device("cuda")),
                                 has_bias=has_bias, top_k=top_k, is_down=down, mul_topk_weights=down)
        return cfg.with_(split_k=split, cluster_split_k=split > 1, moe_n_major=n_major).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 1536, 16, experts + 31 * tokens + split, config)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("experts,top_k,tokens,k,down", [(128, 8, 1, 2048, False), (8, 2, 300, 4096, True),
                                                         (64, 8, 37, 520, False), (8, 1, 2000, 768, True)])
def test_moe_gather_kernel(monkeypatch, dtype, experts, top_k, tokens, k, down):
    """The gather kernel of the wgmma MoE path writes the same rows as the torch ops below num_tokens_post_padded
    (padding ids: x's last row), and the MoE GEMM through it gives the same bits."""
    from humming_cute import moe_gather
    from humming_cute.config import GemmConfig
    from humming_cute.moe_gather import gather_sorted_rows

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the gather feeds the wgmma mainloop (sm_90)")
    gen = torch.Generator().manual_seed(tokens + k)
    ids = _routing(tokens, experts, top_k, False, gen).cuda()
    sorted_ids, expert_ids, num_post = hc.moe_align_block_size(ids, 64, experts)
    x = torch.randn(tokens * top_k if down else tokens, k, generator=gen).to("cuda", dtype)
    monkeypatch.setattr(moe_gather, "USE_KERNEL", False)                   # the torch ops
    want = gather_sorted_rows(x, sorted_ids, num_post, top_k, down)
    monkeypatch.setattr(moe_gather, "USE_KERNEL", True)                    # the kernel
    got = gather_sorted_rows(x, sorted_ids, num_post, top_k, down)
    n = int(num_post.item())
    assert torch.equal(got[:n], want[:n])
    if k % 64 == 0:
        a_name = "float16" if dtype == torch.float16 else "bfloat16"
        qw = quantize_weight(torch.randn(experts, 256, k, generator=gen).cuda(), "uint4", 128)
        pw = hc.prepare_weight(qw, a_name)
        cfg = GemmConfig(a_dtype=a_name, b_dtype="uint4", c_dtype=a_name, group_size=128, block_m=64, block_n=128,
                         block_k=64, warp_m=64, warp_n=64, warp_k=64, stages=4, arch="sm_90a", mainloop="sm90",
                         moe=True, moe_top_k=top_k, moe_down=down).validate()
        y1 = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=64, is_down=down, config=cfg)
        monkeypatch.setattr(moe_gather, "USE_KERNEL", False)
        y0 = hc.moe_gemm(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=64, is_down=down, config=cfg)
        assert torch.equal(y1, y0)


@pytest.mark.parametrize("fmt", FORMATS[:2], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,down,skewed", [
    (128, 8, 1, 16, False, False), (128, 8, 7, 16, True, True), (64, 8, 3, 64, False, True),
    (8, 2, 1, 128, True, False), (128, 8, 15, 64, True, False), (256, 8, 2, 128, False, True)])
def test_moe_grid_bound(fmt, experts, top_k, tokens, block_m, down, skewed):
    """The MoE GEMM launched over the M * top_k-block prefix of the routing tensors (`ops.moe_grid_view`, the
    default), default configs of both mainloops: every routed row written, other ranks' rows untouched, against
    the reference."""
    from humming_cute.ops import MOE_GRID_BOUND, moe_grid_view

    assert MOE_GRID_BOUND
    padded = tokens * top_k + experts * (block_m - 1)       # the routing tensors' length from the alignment
    assert moe_grid_view(torch.empty(padded), torch.empty(-(-padded // block_m)), tokens * top_k,
                         block_m)[0].numel() < padded      # the case takes the shorter grid
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 512, block_m, tokens * 13 + experts + block_m,
                  lambda pw, a_name, has_bias: None)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [
    (8, 2, 1, 512, 8192, True, False), (8, 2, 16, 1024, 8192, True, True), (128, 8, 1, 512, 2048, False, False),
    (64, 8, 5, 384, 4096, False, True)])
def test_moe_decode_tiles(fmt, experts, top_k, tokens, n, k, down, skewed):
    """The default 16-row MoE decode tiles when few blocks are routed (64-wide weight tiles, K tiles of 256-1024
    split over up to 8 K-warps, the row cache), as moe_gemm picks them: against the reference, padding, other
    ranks' experts, routing weights and bias included."""
    from humming_cute.ops import _num_sms, device_target
    from humming_cute.tune.heuristics import default_moe_config

    a_name = "float16" if fmt[4] == torch.float16 else "bfloat16"
    cfg = default_moe_config(16, n, k, a_dtype=a_name, b_dtype=fmt[0], c_dtype=a_name, group_size=fmt[1],
                             arch=device_target(torch.device("cuda")), top_k=top_k, is_down=down,
                             mul_topk_weights=down, num_tokens=tokens, num_experts=experts,
                             num_sms=_num_sms(torch.device("cuda")))
    assert cfg.mainloop == "sm80" and cfg.moe_row_cache and cfg.block_n == 64 and cfg.block_k >= 256, cfg
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 16, tokens * 31 + experts,
                  lambda pw, a, has_bias: None)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [
    (128, 8, 64, 2048, 768, True, True), (128, 8, 1, 2048, 768, True, False), (64, 8, 20, 1024, 512, False, True),
    (16, 4, 33, 512, 896, True, False)])
def test_moe_decode_short_k(fmt, experts, top_k, tokens, n, k, down, skewed):
    """16-row MoE decode blocks over fewer than 8 k-tiles keep each k-tile on one warp per weight column where the
    weight tile is at least 128 wide (`MOE_DECODE_SHORT_K_ONE_KWARP`: warp_k = block_k; 64-wide tiles of one token
    keep two K-warps, as do the 64-wide tiles of 33 tokens over 16 experts), as moe_gemm picks them: against the reference, padding, other ranks' experts, routing weights
    and bias included."""
    from humming_cute.ops import _num_sms, device_target
    from humming_cute.tune.heuristics import default_moe_config

    a_name = "float16" if fmt[4] == torch.float16 else "bfloat16"
    cfg = default_moe_config(16, n, k, a_dtype=a_name, b_dtype=fmt[0], c_dtype=a_name, group_size=fmt[1],
                             arch=device_target(torch.device("cuda")), top_k=top_k, is_down=down,
                             mul_topk_weights=down, num_tokens=tokens, num_experts=experts,
                             num_sms=_num_sms(torch.device("cuda")))
    assert cfg.mainloop == "sm80" and k // cfg.block_k < 8, cfg
    assert (cfg.warp_k == cfg.block_k) == (cfg.block_n >= 128) == (tokens in (64, 20)), cfg
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 16, tokens * 7 + experts + k,
                  lambda pw, a, has_bias: None)


def _sm80_moe_config(block_m, top_k, down, **extra):
    """make_config for `_check_routed`: the default mma.sync MoE config with `extra` fields."""
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    def make(pw, a_name, has_bias):
        cfg = default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                 group_size=pw.group_size, arch=device_target(torch.device("cuda")),
                                 has_bias=has_bias, top_k=top_k, is_down=down, mul_topk_weights=down,
                                 mainloop="sm80")
        return cfg.with_(**extra).validate()
    return make


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,down,skewed", [
    (128, 8, 1, 16, False, False), (64, 8, 33, 16, True, True), (8, 2, 300, 64, True, False),
    (8, 1, 64, 32, False, True), (8, 2, 1000, 128, False, False)])
def test_moe_row_cache(fmt, experts, top_k, tokens, block_m, down, skewed):
    """moe_row_cache on the mma.sync MoE GEMM (each lane's row ids and routing weights loaded once, before the
    stores): against the reference and bitwise equal to the per-element epilogue, with padding, other ranks'
    experts, routing weights and bias."""
    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 512, block_m, tokens + experts + block_m,
                  _sm80_moe_config(block_m, top_k, down, moe_row_cache=True),
                  same_as=_sm80_moe_config(block_m, top_k, down, moe_row_cache=False))


@pytest.mark.parametrize("a,b,group,down", [("float8e4m3", "int4", 0, True), ("int8", "uint4", 128, False),
                                            ("float16", "uint4", 128, False), ("bfloat16", "int8", 0, True)])
def test_moe_row_cache_act8_and_glu(a, b, group, down):
    """moe_row_cache with 8-bit activations (per-row activation scales from the cache) and with a GLU epilogue
    (16-bit activations; gate / up pairs share a row): bitwise equal to the per-element epilogue."""
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    if torch.cuda.get_device_capability() < (8, 9) and a.startswith("float8"):
        pytest.skip("fp8 mma.sync needs sm_89+")
    act8 = a not in ("float16", "bfloat16")
    if act8:
        def config(row_cache):
            def make(bm):
                return default_moe_config(bm, 256, 512, a_dtype=a, b_dtype=b, c_dtype="float16", group_size=group,
                                          arch=device_target(torch.device("cuda")), top_k=8 if not down else 2,
                                          is_down=down, mul_topk_weights=down).with_(
                                              moe_row_cache=row_cache).validate()
            return make
        top_k = 2 if down else 8
        y, y0 = _check_act8_moe(a, b, group, 37, top_k, down, 16, config(True), also=config(False))
        assert torch.equal(y, y0)
        return
    gen = torch.Generator().manual_seed(5)
    e, n, k, top_k, tokens = 8, 256, 512, 2, 45
    dtype = getattr(torch, a)
    qw = quantize_weight(torch.randn(e, n, k, generator=gen).cuda(), b, group)
    pw = hc.prepare_weight(qw, a)
    ids = torch.stack([torch.randperm(e, generator=gen)[:top_k] for _ in range(tokens)]).int().cuda()
    s, ei, npost = hc.moe_align_block_size(ids, 16, e)
    x = torch.randn(tokens * top_k if down else tokens, k, generator=gen).to("cuda", dtype)
    w = torch.rand(tokens, top_k, generator=gen).cuda()
    cfg = default_moe_config(16, pw.n_pad, pw.k_pad, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group,
                             arch=device_target(torch.device("cuda")), top_k=top_k, is_down=down,
                             mul_topk_weights=down, epilogue=True).with_(activation="silu_glu", glu=True)
    kw = dict(top_k=top_k, block_m=16, topk_weights=w, mul_topk_weights=down, is_down=down, activation="silu_glu")
    y = hc.moe_gemm(x, pw, s, ei, npost, config=cfg.with_(moe_row_cache=True).validate(), **kw)
    y0 = hc.moe_gemm(x, pw, s, ei, npost, config=cfg.with_(moe_row_cache=False).validate(), **kw)
    ref = reference_moe_gemm(x, qw, s, ei, npost, top_k=top_k, block_m=16, topk_weights=w, mul_topk_weights=down,
                             is_down=down, activation="silu_glu", out_dtype=torch.float32)
    assert torch.equal(y, y0)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,down,skewed", [
    (128, 8, 1, 16, False, False), (64, 8, 33, 16, True, True), (8, 2, 16, 16, True, False),
    (8, 1, 64, 32, False, True), (8, 2, 7, 32, True, True)])
@pytest.mark.parametrize("bn", [128, 256])
def test_moe_warp_pipeline(fmt, experts, top_k, tokens, block_m, down, skewed, bn):
    """warp_pipeline on the mma.sync MoE GEMM (each warp copies its own gathered activation rows, weight columns and
    scales; with warps across N every warp column its own copy of the rows): against the reference and bitwise
    equal to the CTA-wide copies, with padding, other ranks' experts, routing weights and bias."""
    from humming_cute.arch import get_arch
    from humming_cute.config import smem_bytes

    def make(wp):
        base = _sm80_moe_config(block_m, top_k, down)

        def config(pw, a_name, has_bias):
            cfg = base(pw, a_name, has_bias).with_(block_n=bn, block_k=128, warp_k=128, warp_pipeline=True)
            while smem_bytes(cfg) > get_arch(cfg.arch).smem_per_block_bytes and cfg.stages > 2:
                cfg = cfg.with_(stages=cfg.stages - 1)     # (every warp column's own activation rows)
            return cfg.with_(warp_pipeline=wp).validate()
        return config

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, 1024, block_m, tokens + experts + block_m + bn,
                  make(True), same_as=make(False))


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [
    (8, 2, 64, 1024, 512, False, False), (8, 2, 64, 512, 1024, True, True), (8, 2, 61, 1024, 512, False, True),
    (16, 4, 60, 512, 1024, True, False)])
@pytest.mark.parametrize("down_wgmma", [True, False])
def test_moe_decode_block32(monkeypatch, fmt, experts, top_k, tokens, n, k, down, skewed, down_wgmma):
    """32-row blocks for experts of 12-16 routed rows (`MOE_DECODE_BLOCK_32`, a default): up-like
    projections on 32 x 256 x 128 wgmma tiles; down projections with N < K on 32 x 128 x 128 wgmma tiles in K
    slices with the producer warpgroup, cp.async rows and the persistent grid (`MOE_BLOCK_32_DOWN_WGMMA`, groups of
    >= 128), the others (and all with it off) on 32 x 256 x 128 mma.sync tiles on the weight-tile-major grid, as
    moe_gemm picks them; against the reference, padding, other ranks' experts, routing weights and bias."""
    import humming_cute.tune.heuristics as heur
    from humming_cute.ops import _num_sms, device_target
    from humming_cute.tune.heuristics import default_moe_config, moe_block_size

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the 32-row decode blocks are an sm_90a default")
    monkeypatch.setattr(heur, "MOE_DECODE_BLOCK_32", True)
    monkeypatch.setattr(heur, "MOE_BLOCK_32_DOWN_WGMMA", down_wgmma)
    assert moe_block_size(tokens, top_k, experts, wgmma=True) == 32
    sliced = down_wgmma and down and n < k and (fmt[1] == 0 or fmt[1] >= 128)

    def make(pw, a_name, has_bias):
        cfg = default_moe_config(32, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                 group_size=pw.group_size, arch=device_target(torch.device("cuda")),
                                 has_bias=has_bias, top_k=top_k, is_down=down, mul_topk_weights=down,
                                 num_tokens=tokens, num_experts=experts, num_sms=_num_sms(torch.device("cuda")))
        if sliced:
            assert (cfg.mainloop, cfg.block_n, cfg.block_k, cfg.warp_k) == ("sm90", 128, 128, 64), cfg
            assert cfg.warp_specialized and cfg.moe_cp_async_rows and cfg.persistent_ctas > 0
        else:
            assert cfg.block_n == 256 and cfg.block_k == 128
            assert (cfg.mainloop == "sm90") == (n >= k) and cfg.moe_n_major == (n < k), cfg
        # the up-like wgmma blocks load their weights evict-first (`MOE_BLOCK_32_EVICT_FIRST`)
        assert cfg.evict_first == (cfg.mainloop == "sm90" and not sliced and heur.MOE_BLOCK_32_EVICT_FIRST), cfg
        return cfg

    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 32, tokens + experts + n, make)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,block_m,bn,down,skewed,extra", [
    (128, 8, 200, 64, 128, False, True, dict()),
    (64, 8, 37, 48, 256, True, True, dict(warp_n=128, warp_specialized=True, persistent_ctas=132,
                                          moe_cp_async_rows=True)),
    (8, 2, 1000, 128, 256, True, False, dict(warp_n=128, warp_specialized=True, persistent_ctas=132,
                                             moe_cp_async_rows=True)),
    (8, 2, 300, 64, 128, False, False, dict(cluster_n=2)),
    (16, 4, 99, 64, 128, True, True, dict(warp_specialized=True, persistent_ctas=7))])
def test_moe_wgmma_n_major(fmt, experts, top_k, tokens, block_m, bn, down, skewed, extra):
    """moe_n_major on the wgmma MoE GEMM (one routed block's weight tiles at a time; not a default):
    against the reference and bitwise equal to the grouped raster (only the tile order differs), with the producer
    warpgroup, a persistent grid of fewer CTAs than tiles, cp.async rows, multicast clusters, padding and other
    ranks' experts."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    base = _wgmma_moe_config(block_m, bn, 64, top_k, down, **extra)

    def n_major(pw, a_name, has_bias):
        return base(pw, a_name, has_bias).with_(moe_n_major=True).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, 512, block_m, tokens + experts + block_m,
                  n_major, same_as=base)


@pytest.mark.parametrize("fmt", FORMATS[:3], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,k,block_m,bn,wn,down,skewed,extra", [
    (128, 8, 512, 640, 48, 128, 128, False, True, dict(persistent_ctas=132, moe_cp_async_rows=True)),
    (64, 8, 300, 512, 48, 128, 64, True, False, dict(persistent_ctas=5, moe_cp_async_rows=True)),
    (16, 4, 333, 512, 32, 128, 64, False, True, dict(persistent_ctas=132, staged_store=True)),
    (8, 2, 3000, 512, 128, 128, 128, True, True, dict(persistent_ctas=4, moe_cp_async_rows=True)),
    (32, 4, 700, 640, 96, 64, 64, True, True, dict(persistent_ctas=3))])
def test_moe_wgmma_pingpong(fmt, experts, top_k, tokens, k, block_m, bn, wn, down, skewed, extra):
    """pingpong on the wgmma MoE GEMM: two sets of consumer warpgroups on alternate tiles of the persistent grid,
    stepping over the other set's stages (blocks past the padded count or of other ranks' experts take none):
    against the reference (padding, other ranks' experts untouched, routing weights, bias) and bitwise equal to the
    same tile without pingpong."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    kw = dict(warp_n=wn, warp_specialized=True, **extra)
    made = {}

    def pp(pw, a_name, has_bias):
        made["cfg"] = _wgmma_moe_config(block_m, bn, 64, top_k, down, pingpong=True, **kw)(pw, a_name, has_bias)
        return made["cfg"]

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, k, block_m, tokens + experts + bn + k, pp,
                  same_as=_wgmma_moe_config(block_m, bn, 64, top_k, down, **kw))
    assert made["cfg"].pingpong and made["cfg"].consumer_warpgroups == 2 * bn // wn


@pytest.mark.parametrize("fmt", [FORMATS[0], ("int4", 0, "float16", False, torch.bfloat16),
                                 ("uint2", 128, "float16", False, torch.float16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,down,skewed", [(128, 8, 512, False, True), (64, 8, 300, True, False),
                                                              (16, 2, 77, False, True)])
def test_moe_block48_deep_k_default(fmt, experts, top_k, tokens, down, skewed):
    """The default 48-row blocks of weights of at most 4 bits over K >= 2048 (`MOE_BLOCK_48_DEEP_K`: four consumer
    warpgroups of one atom, `MOE_BLOCK_48_DEEP_K_FOUR_WG`, 128-deep k-tiles, A fragments in 2 pieces sharing the
    k-tile's scale registers, `piece_scales`, cp.async rows, persistent, the staged store,
    `MOE_BLOCK_48_DEEP_K_STAGED`): against the reference (padding, other ranks' experts untouched, routing weights,
    bias) and bitwise equal to two warpgroups of two atoms, each piece reading its own scales, with the direct row
    store."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    default = _default_moe(48, top_k, down, block_m=48, block_n=256, warp_n=64, block_k=128, a_split=2,
                           moe_cp_async_rows=True, staged_store=True, piece_scales=True, consumer_warpgroups=4)

    def direct(pw, a_name, has_bias):
        return default(pw, a_name, has_bias).with_(staged_store=False, warp_n=128, piece_scales=False).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 512, 2048, 48, tokens + experts, default,
                  same_as=direct)


@pytest.mark.parametrize("fmt", [FORMATS[0], ("int4", 0, "float16", False, torch.bfloat16),
                                 ("uint2", 128, "float16", False, torch.float16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [(128, 8, 512, 1024, 768, True, True),
                                                                  (64, 8, 300, 512, 512, False, False),
                                                                  (16, 2, 77, 1536, 1024, True, True)])
def test_moe_block48_wide_short_k_default(fmt, experts, top_k, tokens, n, k, down, skewed):
    """The default 48-row blocks of weights of at most 4 bits over K < 2048 (`MOE_BLOCK_48_WIDE_SHORT_K`: 512-wide
    weight tiles, four consumer warpgroups of two atoms, A fragments in 4 pieces, cp.async rows, persistent): against
    the reference (padding, other ranks' experts untouched, routing weights, bias) and bitwise equal to the
    256-wide two-warpgroup tile."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    default = _default_moe(48, top_k, down, block_m=48, block_n=512, warp_n=128, block_k=64, a_split=4,
                           moe_cp_async_rows=True, consumer_warpgroups=4)

    def narrow(pw, a_name, has_bias):
        return default(pw, a_name, has_bias).with_(block_n=256, a_split=1).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 48, tokens + experts + n, default,
                  same_as=narrow)


@pytest.mark.parametrize("fmt", [FORMATS[0], ("int4", 0, "float16", False, torch.bfloat16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [(128, 8, 4096, 512, 768, True, True),
                                                                  (8, 2, 3000, 512, 2048, False, False),
                                                                  (16, 4, 1001, 768, 512, True, False)])
def test_moe_staged_block128_default(fmt, experts, top_k, tokens, n, k, down, skewed):
    """The default 128-row blocks (`MOE_STAGED_BLOCK_128`: two atoms per warpgroup, cp.async rows, persistent, the
    staged store; at K <= 1024 its rows leave by bulk copies, `MOE_BULK_STORE_SHORT_K`): against the reference
    (padding, other ranks' experts untouched, routing weights, bias) and bitwise equal to the same tile with the
    direct row store."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    default = _default_moe(128, top_k, down, block_n=256, warp_n=128, staged_store=True, moe_cp_async_rows=True,
                           moe_bulk_store=lambda pw: pw.k_pad <= 1024)

    def direct(pw, a_name, has_bias):
        return default(pw, a_name, has_bias).with_(staged_store=False, moe_bulk_store=False).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 128, tokens + experts + n, default,
                  same_as=direct)


@pytest.mark.parametrize("fmt", [FORMATS[0], FORMATS[2], ("int4", 0, "float16", False, torch.bfloat16),
                                 ("uint2", 128, "float16", False, torch.float16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [(128, 8, 4096, 512, 768, True, True),
                                                                  (8, 2, 3000, 512, 2048, False, False),
                                                                  (16, 4, 1001, 768, 512, True, False)])
def test_moe_block144_default(fmt, experts, top_k, tokens, n, k, down, skewed):
    """The default 144-row blocks (`MOE_BLOCK_144`: the 128-row two-atom tile with A in 2 pieces, cp.async rows,
    persistent, the staged store; bulk row copies at K <= 1024): against the reference (padding, other ranks'
    experts untouched, routing weights, bias) and bitwise equal to the same tile with the direct row store."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    default = _default_moe(144, top_k, down, block_n=256, warp_n=128, a_split=2, staged_store=True,
                           moe_cp_async_rows=True, moe_bulk_store=lambda pw: pw.k_pad <= 1024)

    def direct(pw, a_name, has_bias):
        return default(pw, a_name, has_bias).with_(staged_store=False, moe_bulk_store=False).validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 144, tokens + experts + n + 144, default,
                  same_as=direct)


@pytest.mark.parametrize("fmt", [FORMATS[1], ("int8", 128, "float16", False, torch.float16)],
                         ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,k,down,skewed", [(128, 8, 4096, 512, 768, True, True),
                                                                  (8, 2, 1500, 384, 512, False, False)])
def test_moe_block144_wide_weights(fmt, experts, top_k, tokens, n, k, down, skewed):
    """144-row blocks of 8-bit weights (which `moe_block_size` does not pick; a caller may align to them): the
    default 144 x 128 tile of one atom per warpgroup with the producer warpgroup, against the reference."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    default = _default_moe(144, top_k, down, block_n=128, warp_n=64, a_split=1, warp_specialized=True)
    _check_routed(fmt, experts, top_k, tokens, down, skewed, n, k, 144, tokens + experts + n, default)


@pytest.mark.parametrize("fmt", FORMATS[:2], ids=lambda f: f"{f[0]}-g{f[1]}-{f[2]}")
@pytest.mark.parametrize("experts,top_k,tokens,n,block_m,bn,warp_n,down,ctas", [
    (128, 8, 4096, 512, 128, 256, 128, True, 132), (16, 4, 1001, 768, 128, 256, 128, False, 5),
    (64, 8, 600, 512, 48, 256, 128, True, 7), (16, 4, 2000, 640, 160, 128, 64, True, 3)])
def test_moe_wgmma_bulk_store(fmt, experts, top_k, tokens, n, block_m, bn, warp_n, down, ctas):
    """`moe_bulk_store` (each routed row of a tile leaves the staging tile as one cp.async.bulk copy, the next
    tile's staging waiting for the copies' reads): a persistent grid of many or a few CTAs, 48 / 128 / 160-row
    blocks, other ranks' experts; against the reference and bitwise equal to the same tile with the staged store's
    vector copies."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 only")
    kw = dict(warp_specialized=True, moe_cp_async_rows=True, warp_n=warp_n, staged_store=True, persistent_ctas=ctas)
    made = {}

    def bulk(pw, a_name, has_bias):
        made["cfg"] = _wgmma_moe_config(block_m, bn, 64, top_k, down, moe_bulk_store=True, **kw)(pw, a_name,
                                                                                              has_bias)
        return made["cfg"]

    _check_routed(fmt, experts, top_k, tokens, down, skewed=True, n=n, k=512, block_m=block_m,
                  seed=tokens + n + block_m, make_config=bulk,
                  same_as=_wgmma_moe_config(block_m, bn, 64, top_k, down, **kw))
    assert made["cfg"].moe_bulk_store and made["cfg"].moe_prefetch_rows


def test_moe_gemm_rejects_empty_routing():
    """Empty routing tensors with rows in x are refused before any launch (the persistent MoE grid reads the first
    tile's expert and rows before its tile loop); x without rows returns the output untouched."""
    qw = quantize_weight(torch.randn(4, 128, 256).cuda(), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(3, 256, device="cuda", dtype=torch.float16)
    ids = hc.moe_align_block_size(torch.zeros(3, 2, dtype=torch.int32, device="cuda"), 16, 4)
    empty = torch.zeros(0, dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="must not be empty"):
        hc.moe_gemm(x, pw, empty, empty, ids[2], top_k=2, block_m=16)
    out = hc.moe_gemm(x[:0], pw, empty, empty, ids[2], top_k=2, block_m=16)
    assert out.shape == (0, 2, 128)


_TWO_LEVEL_FORMATS = [FORMATS[0], FORMATS[2], FORMATS[3], ("int4", 128, "float16", False, torch.float16),
                      ("float4e2m1", 32, "ue8m0", True, torch.float16)]


@pytest.mark.parametrize("fmt,extra", [(f, x) for f in _TWO_LEVEL_FORMATS for x in ("", "fold", "wpipe", "split2")
                                       # fold_offsets takes fp16 x int4 / uint4 (the rule is a CPU test)
                                       if x != "fold" or (f[4] == torch.float16 and f[0] in ("uint4", "int4"))],
                         ids=lambda v: (f"{v[0]}-g{v[1]}-{v[2]}-{str(v[4])[6:]}" if isinstance(v, tuple)
                                        else v or "plain"))
@pytest.mark.parametrize("experts,top_k,tokens,down,skewed", [
    (8, 2, 1, False, False), (8, 2, 7, True, True), (128, 8, 3, False, True), (64, 8, 33, True, False)])
def test_moe_two_level_scales(fmt, extra, experts, top_k, tokens, down, skewed):
    """Decode-sized mma.sync MoE blocks (16 rows) with group scales applied to fp32 partial sums per group
    (two_level_scales, the default from K = 2048), alone, with the zero-point offsets folded out of the dequant
    (fold_offsets), with per-warp pipelines over 128-deep warp k-ranges (warp_pipeline) and with split-K 2 in a
    cluster: matches the reference, routing weights / bias / other ranks' experts as in every MoE test."""
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import default_moe_config

    def config(pw, a_name, has_bias):
        cfg = default_moe_config(16, pw.n_pad, pw.k_pad, a_dtype=a_name, b_dtype=pw.b_dtype, c_dtype=a_name,
                                 group_size=pw.group_size, arch=device_target(torch.device("cuda")),
                                 has_bias=has_bias, top_k=top_k, is_down=down, mul_topk_weights=down)
        assert cfg.mainloop == "sm80" and cfg.block_m == 16
        cfg = cfg.with_(two_level_scales=True, fold_offsets=extra == "fold")
        if extra == "wpipe":
            cfg = cfg.with_(block_n=64, block_k=256, warp_k=128, warp_pipeline=True)
        if extra == "split2":
            cfg = cfg.with_(split_k=2, cluster_split_k=True)
        return cfg.validate()

    _check_routed(fmt, experts, top_k, tokens, down, skewed, 256, 1536, 16,
                  experts + 17 * tokens + len(extra), config)
