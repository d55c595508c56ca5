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
