"""`python -m humming_cute.bench`: time humming_cute's quantized GEMM over M and shapes against its peers (torch
cuBLAS on the dequantized weight, torch's int4 kernel, the Humming package) in the same process on the same card,
with the memory and compute floors measured in the same run; table, JSON and PNG.

Modules: `core` (options, floor arithmetic, table, JSON; no GPU), `plot` (PNG; no GPU), `timing` (L2-flushed
medians, copy bandwidth, cuBLAS rate), `peers` (one adapter per peer), `run` (the loop and `main`).
"""
