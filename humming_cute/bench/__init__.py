"""`python -m humming_cute.bench`: time humming_cute's quantized GEMM over M and shapes against its peers (torch
cuBLAS on the dequantized weight, torch's int4 kernel, the Humming package) in the same process on the same card,
with the memory and compute floors measured in the same run; table, JSON and PNG.

``--a-dtype float8e4m3 / float8e5m2 / int8`` times the GEMM on per-token 8-bit activations (fp16 output) and the
fused activation quantization apart (and their sum), against torch's fp16 cuBLAS, ``torch._scaled_mm`` (fp8),
``torch._int_mm`` (int8) and Humming with the same 8-bit activations; the compute floor then uses the fp8 / int8
rate measured in the same run.

``--moe`` times the MoE GEMM (``hc.moe_gemm``, vLLM's fused_moe contract) of preset layers (Qwen3-30B-A3B-like,
Mixtral-like; up and down projections) over token counts against a naive torch per-expert loop and Humming's MoE
(indexed) GEMM, with a memory floor made of the weights of the experts that got tokens.

Modules: `core` (options, floor arithmetic, table, JSON; no GPU), `plot` (PNG; no GPU), `timing` (L2-flushed
medians, copy bandwidth, cuBLAS rate), `peers` (one adapter per peer, dense and MoE), `run` (the dense loop and
`main`), `moe` (the MoE loop).
"""
