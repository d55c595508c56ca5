"""fp16 activations x uint4 weights with a zero point per group of 128: build, load, finish_load, forward."""

import torch

import humming_cute as hc

N, K = 4096, 4096
layer = hc.HummingLayer(shape_n=N, shape_k=K, a_dtype=hc.dtypes.float16, b_dtype=hc.dtypes.uint4,
                        c_dtype=hc.dtypes.float16, bs_dtype=hc.dtypes.float16,
                        weight_scale_group_size=128).cuda()

# codes + scales + zero points, e.g. from a checkpoint (here: quantized from a random weight)
qw = hc.quantize_weight(torch.randn(N, K, device="cuda"), "uint4", 128, "float16")
layer.load_weight(weight=qw.codes, weight_scale=qw.scales, zero_point=qw.zero_points)
layer.finish_load()

x = torch.randn(64, K, device="cuda", dtype=torch.float16)
y = layer(x, block_shape=(64, 256, 64), warp_shape=(64, 64, 64))
ref = hc.reference_gemm(x, qw, out_dtype=torch.float32)
err = ((y.float() - ref).norm() / ref.norm()).item()
print(f"y: {tuple(y.shape)} {y.dtype}, relative error vs reference {err:.2e}:", "OK" if err < 2e-3 else "FAIL")
