"""GPU tests of programmatic dependent launch (`GemmConfig.pdl`, the sm_90 decode default): chains of GEMMs in
which each layer reads the previous one's output and writes into the buffer the layer before it read (ping-pong),
eagerly and replayed as a CUDA graph, bitwise equal to the same chain without pdl; split-K through the shared
counters and workspace included."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.arch import current_arch
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import quantize_weight
from humming_cute.tune.heuristics import default_config

pytestmark = pytest.mark.gpu

LAYERS = 6


def _chain(xs, pws, bufs, cfg):
    """x -> layer 0 -> layer 1 -> ...: layer i reads the previous output and writes bufs[i % 2]."""
    y = xs
    for i, pw in enumerate(pws):
        y = hc.gemm(y, pw, out=bufs[i % 2], config=cfg)
    return y


@pytest.mark.parametrize("m,b,g,extra", [(1, "uint4", 128, dict()), (8, "int4", 32, dict()),
                                         (16, "int8", 0, dict()), (1, "uint4", 128, dict(split_k=2)),
                                         (1, "uint4", 128, dict(split_k=2, cluster_split_k=True)),
                                         (64, "uint4", 128, dict(mainloop="sm80")),
                                         (1, "uint4", 128, dict(pdl_prefetch=0)),
                                         (16, "int8", 0, dict(pdl_prefetch=2))])
@pytest.mark.parametrize("graph", [False, True])
def test_pdl_chain(m, b, g, extra, graph):
    """Six dependent layers of 2048 x 2048 with pdl: every layer against the reference of its actual input, and
    the chain's output bitwise equal to the chain without pdl."""
    _check_chain(m, b, g, extra, graph)


@pytest.mark.parametrize("m,b,g,extra", [(64, "uint4", 128, dict()), (64, "int8", 0, dict(split_k=2)),
                                         (256, "uint4", 128, dict(warp_specialized=True)),
                                         (256, "uint4", 128, dict(warp_specialized=True, cluster_n=2)),
                                         (333, "uint8", 64, dict(split_k=2, cluster_split_k=True)),
                                         (128, "int4", 128, dict(block_m=176, warp_m=176, warp_specialized=True,
                                                                 stages=3))])
@pytest.mark.parametrize("graph", [False, True])
def test_pdl_chain_wgmma(m, b, g, extra, graph):
    """pdl on the wgmma kernel: the producer's first weight TMA loads before its wait,
    the activation tiles after it; with and without the producer warpgroup, multicast, split-K in a cluster and
    through the workspace, a 176-row tile; the same chain checks as on mma.sync."""
    _check_chain(m, b, g, {**extra, "mainloop": "sm90"}, graph)


def _check_chain(m, b, g, extra, graph):
    if current_arch().sm < 90:
        pytest.skip("programmatic dependent launch needs sm_90+")
    n = k = 2048
    torch.manual_seed(m + g + len(extra))
    qws = [quantize_weight(torch.randn(n, k, device="cuda") / 45, b, g, "float16") for _ in range(LAYERS)]
    pws = [hc.prepare_weight(q, "float16") for q in qws]
    kw = {"mainloop": extra["mainloop"]} if "mainloop" in extra else {}
    base = default_config(m, n, k, a_dtype="float16", b_dtype=b, c_dtype="float16", group_size=g,
                          arch=current_arch().target, **kw)
    base = base.with_(**{f: v for f, v in extra.items() if f not in ("mainloop", "pdl_prefetch")},
                      pdl=False).validate()
    assert base.mainloop == kw.get("mainloop", base.mainloop)
    cfg = base.with_(pdl=True, pdl_prefetch=extra.get("pdl_prefetch", 1)).validate()
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    plain = _chain(x, pws, [torch.empty(m, n, device="cuda", dtype=torch.float16) for _ in range(2)], base).clone()
    bufs = [torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16) for _ in range(2)]
    if graph:
        _chain(x, pws, bufs, cfg)                   # compile outside the capture
        torch.cuda.synchronize()
        for t in bufs:
            t.fill_(float("nan"))
        gr = torch.cuda.CUDAGraph()
        with torch.cuda.graph(gr):
            y = _chain(x, pws, bufs, cfg)
        for _ in range(3):
            gr.replay()
    else:
        for _ in range(3):
            y = _chain(x, pws, bufs, cfg)
    torch.cuda.synchronize()
    assert torch.equal(y, plain), "the chain with pdl differs from the chain without it"
    # the last layer against the reference of its own input (the previous layer's output)
    prev = _chain(x, pws[:-1], [torch.empty(m, n, device="cuda", dtype=torch.float16) for _ in range(2)], base)
    ref = reference_gemm(prev, qws[-1], out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-3
