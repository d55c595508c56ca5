"""`python -m humming_cute.bench`: time humming_cute's quantized GEMM over M and shapes against its peers (torch
cuBLAS on the dequantized weight, torch's int4 kernel, the Humming package) in the same process on the same card,
with the memory and compute floors measured in the same run; table, JSON and PNG.

``--moe`` times the MoE GEMM (``hc.moe_gemm``, vLLM's fused_moe contract) of preset layers (Qwen3-30B-A3B-like,
Mixtral-like; up and down projections) over token counts against a naive torch per-expert loop and Humming's MoE
(indexed) GEMM, with a memory floor made of the weights of the experts that got tokens.

Modules: `core` (options, floor arithmetic, table, JSON; no GPU), `plot` (PNG; no GPU), `timing` (L2-flushed
medians, copy bandwidth, cuBLAS rate), `peers` (one adapter per peer, dense and MoE), `run` (the dense loop and
`main`), `moe` (the MoE loop).
"""
