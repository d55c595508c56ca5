"""GPU tests of `evict_first` (the weight loads' L2 evict-first cache policy, both mainloops): a cache hint only, so
every output must match the reference and equal, bit for bit, the same config's output without it (marked
`gpu`)."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute.arch import current_arch
from humming_cute.quant.weight import quantize_weight
from humming_cute.tune import default_config

from test_gemm_gpu import run_case  # noqa: E402 (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.gpu

# (activation, weight, group, scale dtype): 4-bit with zero points, 8-bit channel, fp4 with e8m0 group scales,
# 3-bit with bf16 activations
_FORMATS = [("float16", "uint4", 128, "float16"), ("float16", "int8", 0, "float16"),
            ("float16", "float4e2m1", 32, "ue8m0"), ("bfloat16", "int3", 64, "bfloat16")]


def _default(a, b, group, m, n, k, bias):
    return default_config(m, n, k, a_dtype=a, b_dtype=b, c_dtype=a, group_size=group, arch=current_arch().target,
                          has_bias=bias, num_sms=torch.cuda.get_device_properties(0).multi_processor_count)


@pytest.mark.parametrize("a,b,group,scale", _FORMATS)
@pytest.mark.parametrize("m,n,k", [(1, 4096, 4096), (16, 2048, 8192), (64, 1024, 2048), (333, 768, 1024)])
def test_evict_first_default_tiles(a, b, group, scale, m, n, k):
    """The default tile of each problem (decode tiles with split-K in a cluster, swapped MMAs and per-warp
    pipelines; wgmma tiles on sm_90a from M = 64) with the hint: against the reference, and bitwise against the
    same tile without it."""
    bias = m % 2 == 1
    cfg = _default(a, b, group, m, n, k, bias)
    run_case(a, b, group, scale, m, n, k, bias=bias, config=cfg.with_(evict_first=True), seed=m + n)
    torch.manual_seed(7)
    pw = hc.prepare_weight(quantize_weight(torch.randn(n, k, device="cuda"), b, group, scale), a)
    x = torch.randn(m, k, device="cuda", dtype=getattr(torch, a))
    bv = torch.randn(n, device="cuda", dtype=getattr(torch, a)) if bias else None
    outs = [hc.gemm(x, pw, bias=bv, config=cfg.with_(evict_first=ef)).clone() for ef in (True, False)]
    assert torch.equal(outs[0], outs[1]), f"{cfg}: evict_first changed the output"


@pytest.mark.parametrize("tokens,proj,e", [(1, "up", 16), (16, "down", 16), (512, "up", 16), (64, "up", 8)])
def test_evict_first_moe(tokens, proj, e):
    """The MoE GEMM's default tiles (16-row mma.sync decode blocks; on sm_90a wgmma blocks, among them the 32-row
    up-projection block that takes the hint by default at ~16 routed rows per expert) with and without the hint:
    the same bits, and within the tolerance of the reference."""
    from humming_cute.bench.moe import draw_routing
    from humming_cute.quant.reference import reference_moe_gemm
    from humming_cute.tune.heuristics import default_moe_config, moe_block_size, moe_uses_wgmma

    torch.manual_seed(tokens)
    top_k, n, k = 2, 1024, 1024
    down = proj == "down"
    qw = quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    ids, tw = draw_routing(tokens, e, top_k, tokens, "cuda")
    x = torch.randn(tokens * top_k if down else tokens, k, device="cuda", dtype=torch.float16)
    arch = current_arch().target
    bm = moe_block_size(tokens, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"))
    s, ei, npost = hc.moe_align_block_size(ids, bm, e)
    cfg = default_moe_config(bm, pw.n_pad, pw.k_pad, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                             group_size=128, arch=arch, top_k=top_k, is_down=down, mul_topk_weights=down,
                             num_tokens=tokens, num_experts=e,
                             num_sms=torch.cuda.get_device_properties(0).multi_processor_count)
    if tokens == 64 and arch == "sm_90a":
        assert cfg.block_m == 32 and cfg.mainloop == "sm90" and cfg.evict_first     # (`MOE_BLOCK_32_EVICT_FIRST`)
    outs = []
    for ef in (True, False):
        out = torch.full((tokens, top_k, n), float("nan"), device="cuda", dtype=torch.float16)
        outs.append(hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw,
                                mul_topk_weights=down, is_down=down, out=out, config=cfg.with_(evict_first=ef)))
    torch.cuda.synchronize()
    assert not torch.isnan(outs[0]).any()
    assert torch.equal(outs[0], outs[1])
    ref = reference_moe_gemm(x, qw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw, mul_topk_weights=down,
                             is_down=down).float()
    rel = ((outs[0].float() - ref).norm() / ref.norm()).item()
    assert rel <= 2e-3, rel
