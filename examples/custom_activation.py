"""A custom epilogue activation written in Python and compiled into the GEMM kernel.

The function uses `humming_cute.activations` math, so the same function also runs on torch tensors: the
reference below checks the fused kernel with it."""

import torch

import humming_cute as hc
from humming_cute import activations as act


def swiglu_clamped(gate, up):
    """gpt-oss style: silu of a clamped gate times the up projection (interleaved gate/up columns)."""
    return act.silu(act.minimum(gate, 7.0)) * up


N, K = 2 * 2048, 4096   # gate and up interleaved: column 2j is gate j, column 2j + 1 is up j
layer = hc.HummingLayer(shape_n=N, shape_k=K, a_dtype=hc.dtypes.bfloat16, b_dtype=hc.dtypes.float4e2m1,
                        c_dtype=hc.dtypes.bfloat16, bs_dtype=hc.dtypes.ue8m0, weight_scale_group_size=32,
                        activation=swiglu_clamped, glu=True).cuda()
layer.load_weight(torch.randn(N, K, device="cuda"))          # quantized to MXFP4 on load
layer.finish_load()

x = torch.randn(8, K, device="cuda", dtype=torch.bfloat16)
y = layer(x)                                                  # [8, N / 2]
ref = hc.reference_gemm(x, layer.quantized_weight(), activation=swiglu_clamped, glu=True, out_dtype=torch.float32)
err = ((y.float() - ref).norm() / ref.norm()).item()
print(f"y: {tuple(y.shape)}, relative error vs reference {err:.2e}:", "OK" if err < 1e-2 else "FAIL")
