"""GPU tests of the fused epilogue: every built-in activation and GLU, bias on/off, fp16 and bf16, and two custom
Python activations, against the reference (marked `gpu`)."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute import activations as act
from humming_cute.quant.reference import reference_gemm
from humming_cute.quant.weight import quantize_weight

pytestmark = pytest.mark.gpu

TOL = {"float16": 2e-3, "bfloat16": 1e-2}


def mish(x):
    return x * act.tanh(act.log1p(act.exp(x)))


def swiglu_clamped(gate, up):
    return act.silu(act.minimum(gate, 7.0)) * up


def _check(a, activation, glu, bias, m=33, n=384, k=512, b="uint4", group=128):
    torch.manual_seed(hash((a, str(activation), glu, bias)) % 1000)
    ad = getattr(torch, a)
    qw = quantize_weight(torch.randn(n, k, device="cuda"), b, group)
    pw = hc.prepare_weight(qw, a)
    x = torch.randn(m, k, device="cuda", dtype=ad)
    bv = torch.randn(n, device="cuda", dtype=ad) if bias else None
    n_out = n // 2 if glu or (isinstance(activation, str) and activation.endswith("_glu")) else n
    out = torch.full((m, n_out), float("nan"), device="cuda", dtype=ad)
    y = hc.gemm(x, pw, bias=bv, activation=activation, glu=glu, out=out)
    ref = reference_gemm(x, qw, bias=bv, activation=activation, glu=glu, out_dtype=torch.float32)
    assert y.shape == ref.shape == (m, n_out)
    assert not torch.isnan(y).any()
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel <= TOL[a], f"relative error {rel:.3e}"


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "quick_gelu", "silu",
                                        "silu_glu", "gelu_glu"])
def test_builtin_activations(a, bias, activation):
    _check(a, activation, False, bias)


@pytest.mark.parametrize("a", ["float16", "bfloat16"])
@pytest.mark.parametrize("bias", [False, True])
def test_custom_activations(a, bias):
    _check(a, mish, False, bias)
    _check(a, swiglu_clamped, True, bias)


def test_glu_with_split_paths_and_channel_scales():
    # small M (warp-K split) and channelwise scales go through the same epilogue
    _check("float16", "silu_glu", False, True, m=1, b="int4", group=0)
    _check("bfloat16", swiglu_clamped, True, False, m=5, b="float4e2m1", group=32)


def test_layer_with_activation():
    torch.manual_seed(9)
    layer = hc.HummingLayer(256, 512, "float16", "uint4", "float16", "float16", 128, has_bias=True,
                            activation="silu_glu").cuda()
    layer.load_weight(torch.randn(256, 512, device="cuda"), bias=torch.randn(256, device="cuda",
                                                                            dtype=torch.float16))
    layer.finish_load()
    x = torch.randn(3, 7, 512, device="cuda", dtype=torch.float16)
    y = layer(x)
    assert y.shape == (3, 7, 128)
    ref = reference_gemm(x.reshape(-1, 512), layer.quantized_weight(), bias=layer.bias, activation="silu_glu",
                         out_dtype=torch.float32)
    assert ((y.reshape(-1, 128).float() - ref).norm() / ref.norm()).item() < 2e-3
    y2 = layer(x, block_shape=(16, 64, 128), warp_shape=(16, 64, 64))
    assert ((y2.reshape(-1, 128).float() - ref).norm() / ref.norm()).item() < 2e-3
