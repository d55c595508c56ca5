"""GPU tests of `row_perm` on the wgmma mainloop (each warp dequantizes a permuted set of weight rows so that its
packed-weight shared-memory loads are conflict-free; the accumulator rows follow the permutation into the
epilogue): bitwise equal to the kernel without it, dense and MoE, across the epilogue and scheduling variants
(the rest of the wgmma suite runs the default rule, `GemmConfig.use_row_perm`, against the reference)."""

from __future__ import annotations

import pytest
import torch

from humming_cute.config import GemmConfig

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_sm90():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the wgmma mainloop runs on sm_90 (H100/H200) only")


BASE = dict(block_k=64, warp_k=64, arch="sm_90a", mainloop="sm90")
DENSE = [  # (a, b, group, m, n, k, config fields)
    ("float16", "uint4", 128, 333, 1000, 1280, dict(block_m=128, block_n=128, warp_m=128, warp_n=64, stages=4)),
    ("bfloat16", "int8", 0, 64, 4096, 2048, dict(block_m=64, block_n=64, warp_m=64, warp_n=64, stages=6,
                                                  split_k=2, cluster_split_k=True)),
    ("float16", "uint3", 64, 200, 600, 1024, dict(block_m=64, block_n=128, warp_m=64, warp_n=64, stages=4,
                                                  split_k=2)),
    ("float16", "float4e2m1", 32, 700, 1240, 1024, dict(block_m=128, block_n=256, warp_m=128, warp_n=128,
                                                        stages=4, warp_specialized=True, persistent_ctas=9)),
    ("float16", "int2", 128, 333, 1000, 1024, dict(block_m=128, block_n=128, warp_m=128, warp_n=64, stages=3,
                                                   staged_store=True)),
    ("bfloat16", "uint4", 128, 2000, 1024, 1024, dict(block_m=128, block_n=256, warp_m=128, warp_n=64, stages=4,
                                                      cluster_n=2)),
    ("float16", "uint4", 128, 1000, 1024, 2048, dict(block_m=176, block_n=256, warp_m=176, warp_n=128, stages=3,
                                                     a_split=4, warp_specialized=True)),
    ("float16", "uint8", 128, 900, 1024, 1024, dict(block_m=128, block_n=128, warp_m=128, warp_n=64, stages=4,
                                                    warp_specialized=True, persistent_ctas=132, stream_k=True)),
    ("float8e4m3", "int4", 128, 333, 1024, 1024, dict(block_m=128, block_n=128, warp_m=128, warp_n=64,
                                                      block_k=128, warp_k=128, stages=4, two_level_scales=False)),
    ("int8", "int8", 0, 333, 1024, 1024, dict(block_m=128, block_n=128, warp_m=128, warp_n=64, block_k=128,
                                              warp_k=128, stages=4)),
]


# every case plain, and with a GLU epilogue where that exists (16-bit activations, no stream-K)
CASES = [(i, glu) for i, c in enumerate(DENSE) for glu in (False, True)
         if not (glu and (c[0] in ("float8e4m3", "int8") or c[6].get("stream_k")))]


@pytest.mark.parametrize("case,glu", CASES)
def test_row_perm_dense_bitwise(case, glu):
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    a, b, group, m, n, k, fields = DENSE[case]
    act8 = a in ("float8e4m3", "int8")
    torch.manual_seed(case)
    kw = {**BASE, **fields}
    cfg = GemmConfig(a_dtype=a, b_dtype=b, c_dtype="bfloat16" if a == "bfloat16" else "float16", group_size=group,
                     has_bias=m % 2 == 1, **kw)
    if glu:
        cfg = cfg.with_(activation="silu_glu", glu=True, staged_store=True)
        while True:
            try:
                cfg.validate()
                break
            except ValueError as e:
                if "shared memory" not in str(e):
                    raise
                cfg = cfg.with_(stages=cfg.stages - 1)
    cfg = cfg.with_(row_perm=True).validate()
    assert cfg.use_row_perm
    off = cfg.with_(row_perm=False).validate()
    w = torch.randn(n, k, device="cuda")
    dt = torch.bfloat16 if a == "bfloat16" else torch.float16
    x_scales = None
    if act8:
        pw = hc.prepare_weight(quantize_weight(w, b, group), a)
        xf = torch.randn(m, k, device="cuda")
        x, x_scales = hc.quantize_input(xf, a, 0)
    else:
        pw = hc.prepare_weight(quantize_weight(w, b, group), a)
        x = torch.randn(m, k, device="cuda", dtype=dt)
    bias = torch.randn(n, device="cuda", dtype=dt) if m % 2 == 1 else None
    kwargs = dict(bias=bias, x_scales=x_scales, out_dtype=dt)
    y_on = hc.gemm(x, pw, config=cfg, **kwargs)
    y_off = hc.gemm(x, pw, config=off, **kwargs)
    torch.cuda.synchronize()
    assert torch.isfinite(y_off.float()).all()
    assert torch.equal(y_on, y_off)


@pytest.mark.parametrize("block_m,bn,ws,extra", [(48, 256, True, dict(warp_n=128, persistent_ctas=132,
                                                                       moe_cp_async_rows=True)),
                                                 (64, 128, True, {}), (128, 256, False, dict(warp_n=128)),
                                                 (64, 128, True, dict(staged_store=True))])
@pytest.mark.parametrize("down", [False, True])
def test_row_perm_moe_bitwise(block_m, bn, ws, extra, down):
    import humming_cute as hc
    from humming_cute.quant.weight import quantize_weight

    extra = dict(extra)            # (the parametrize dict is shared by the down / up cases)
    torch.manual_seed(block_m + bn)
    e, top_k, tokens, n, k = 8, 2, 300, 512, 1024
    pw = hc.prepare_weight(quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128), "float16")
    ids = torch.randint(0, e, (tokens, top_k), device="cuda", dtype=torch.int32)
    tw = torch.rand(tokens, top_k, device="cuda")
    x = torch.randn(tokens * top_k if down else tokens, k, device="cuda", dtype=torch.float16)
    s, ei, npost = hc.moe_align_block_size(ids, block_m, e)
    cfg = GemmConfig(a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128, block_m=block_m,
                     block_n=bn, warp_m=block_m, warp_n=extra.pop("warp_n", 64), stages=4, moe=True,
                     moe_top_k=top_k, moe_down=down, moe_mul_topk_weights=down, warp_specialized=ws,
                     two_level_scales=False, row_perm=True, **BASE, **extra).validate()
    outs = []
    for c in (cfg, cfg.with_(row_perm=False).validate()):
        outs.append(hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=block_m, topk_weights=tw,
                                mul_topk_weights=down, is_down=down, config=c))
    torch.cuda.synchronize()
    assert outs[1].abs().sum() > 0
    assert torch.equal(outs[0], outs[1])
