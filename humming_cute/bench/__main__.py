"""`python -m humming_cute.bench --help`: time humming_cute's GEMM against its peers (see `run.py`)."""

from humming_cute.bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
