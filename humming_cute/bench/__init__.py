"""`python -m humming_cute.bench`: time a quantized GEMM against torch over M, with the memory floor."""
