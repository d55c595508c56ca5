"""A Mixture-of-Experts layer with the vLLM fused_moe contract: route, align, GEMM, check against the reference."""

import torch

import humming_cute as hc
from humming_cute.quant.reference import reference_moe_gemm

E, TOP_K, N, K, TOKENS = 8, 2, 1024, 2048, 64
layer = hc.HummingLayer(shape_n=N, shape_k=K, a_dtype=hc.dtypes.float16, b_dtype=hc.dtypes.uint4,
                        c_dtype=hc.dtypes.float16, bs_dtype=hc.dtypes.float16, weight_scale_group_size=128,
                        num_experts=E).cuda()
for e in range(E):                                    # one expert at a time, as checkpoints are read
    layer.load_weight(torch.randn(N, K, device="cuda"), expert_id=e)
layer.finish_load()

x = torch.randn(TOKENS, K, device="cuda", dtype=torch.float16)
logits = torch.randn(TOKENS, E, device="cuda")
topk_weights, topk_ids = torch.topk(logits.softmax(-1), TOP_K)
y = layer.moe_forward(x, topk_ids.to(torch.int32))    # up/gate projection: [TOKENS, TOP_K, N]

block_m = layer.moe_block_size(TOKENS, TOP_K)
sorted_ids, expert_ids, num_post = hc.moe_align_block_size(topk_ids.to(torch.int32), block_m, E)
ref = reference_moe_gemm(x, layer.quantized_weight(), sorted_ids, expert_ids, num_post, top_k=TOP_K,
                         block_m=block_m, out_dtype=torch.float32)
err = ((y.float() - ref).norm() / ref.norm()).item()
print(f"y: {tuple(y.shape)}, relative error vs reference {err:.2e}:", "OK" if err < 2e-3 else "FAIL")
