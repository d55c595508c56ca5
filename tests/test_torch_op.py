"""`torch.ops.humming_cute.gemm` is registered with a fake implementation: shapes propagate under FakeTensorMode
and `torch.export` traces a HummingLayer into a graph that holds the op (no GPU needed)."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import humming_cute as hc
from humming_cute.runtime.torch_ops import call_gemm_op


def _prepared():
    qw = hc.quantize_weight(torch.randn(128, 256), "uint4", 128)
    return hc.prepare_weight(qw, "float16")


def test_fake_impl_shapes():
    pw = _prepared()
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(7, 256, dtype=torch.float16)
        y = call_gemm_op(x, pw, None, torch.bfloat16, "none", False)
        g = call_gemm_op(x, pw, None, torch.float16, "silu_glu", False)
    assert y.shape == (7, 128) and y.dtype == torch.bfloat16
    assert g.shape == (7, 64) and g.dtype == torch.float16


def test_export_traces_the_layer_through_the_op():
    layer = hc.HummingLayer(128, 256, "float16", "uint4", "float16", "float16", 128, activation="gelu")
    layer.load_weight(torch.randn(128, 256))
    layer.finish_load()
    ep = torch.export.export(layer, (torch.randn(2, 3, 256, dtype=torch.float16),))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert any("humming_cute.gemm" in t for t in targets), targets
    out = [n for n in ep.graph.nodes if n.op == "output"][0]
    assert tuple(out.args[0][0].meta["val"].shape) == (2, 3, 128)


def _moe_layer(**kw):
    layer = hc.HummingLayer(128, 256, "float16", "uint4", "float16", "float16", 128, num_experts=4, **kw)
    for e in range(4):
        layer.load_weight(torch.randn(128, 256), expert_id=e)
    layer.finish_load()
    return layer


def test_moe_fake_impl_shapes():
    """`moe_align_block_size` / `moe_gemm` ops: the fake implementations give the real sizes (the routing tensors'
    lengths depend on M * top_k, E and block_m only; GLU halves N; down projections read M * top_k rows)."""
    from humming_cute.runtime.torch_ops import call_moe_gemm_op

    layer = _moe_layer()
    ids = torch.tensor([[0, 3], [1, 3], [2, 2]], dtype=torch.int32)
    real = hc.moe_align_block_size(ids, 16, 4, impl="torch")
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = torch.ops.humming_cute.moe_align_block_size(ids, 16, 4, None)
        assert [tuple(t.shape) for t in fake] == [tuple(t.shape) for t in real]
        assert all(t.dtype == torch.int32 for t in fake)
        kw = dict(top_k=2, block_m=16, topk_weights=None, mul_topk_weights=False, bias=None)
        up = call_moe_gemm_op(torch.empty(3, 256, dtype=torch.float16), layer._prepared, fake, is_down=False,
                              out_dtype=torch.float16, activation="none", **kw)
        glu = call_moe_gemm_op(torch.empty(3, 256, dtype=torch.float16), layer._prepared, fake, is_down=False,
                               out_dtype=torch.bfloat16, activation="silu_glu", **kw)
        down = call_moe_gemm_op(torch.empty(6, 256, dtype=torch.float16), layer._prepared, fake, is_down=True,
                                out_dtype=torch.float16, activation="none", **kw)
    assert up.shape == (3, 2, 128) and glu.shape == (3, 2, 64) and glu.dtype == torch.bfloat16
    assert down.shape == (3, 2, 128)


def test_export_traces_the_moe_layer_through_the_ops():
    """An MoE layer under torch.export: the routing alignment and the MoE GEMM appear as the two custom ops, and the
    output has the [M, top_k, N] shape."""
    layer = _moe_layer(activation="gelu")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.moe = layer

        def forward(self, x, topk_ids, topk_weights):
            return self.moe.moe_forward(x, topk_ids, topk_weights)

    ids = torch.tensor([[0, 3], [1, 2], [2, 2], [3, 0], [1, 1]], dtype=torch.int32)
    ep = torch.export.export(Block(), (torch.randn(5, 256, dtype=torch.float16), ids, torch.rand(5, 2)))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert any("humming_cute.moe_align_block_size" in t for t in targets), targets
    assert any("humming_cute.moe_gemm" in t for t in targets), targets
    out = [n for n in ep.graph.nodes if n.op == "output"][0]
    assert tuple(out.args[0][0].meta["val"].shape) == (5, 2, 128)
