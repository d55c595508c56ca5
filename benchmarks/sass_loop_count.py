"""Count the SASS instructions of a kernel's main loop, without a GPU: compile the default (or a given) config,
disassemble the cubin with nvdisasm and print the opcode histogram of the longest backward-branch loop.

Needs `nvdisasm` (PATH, $NVDISASM, or `pip install nvidia-cuda-nvdisasm`). Usage:

    python3 benchmarks/sass_loop_count.py --m 1 --shape 8192x8192 --b uint4 --group 128 [--arch sm_90a]
    python3 benchmarks/sass_loop_count.py ... --set block_k=512,warp_k=128     # override config fields
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from humming_cute.runtime.compile import fake_operands  # noqa: E402
from humming_cute.testing.ptx import compile_for_arch  # noqa: E402
from humming_cute.tune.heuristics import default_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--m", type=int, default=1)
p.add_argument("--shape", default="8192x8192", help="NxK")
p.add_argument("--a", default="float16")
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--arch", default="sm_90a")
p.add_argument("--set", default="", help="comma-separated field=value overrides of the default config")
args = p.parse_args()


def nvdisasm() -> str:
    for cand in (os.environ.get("NVDISASM"), shutil.which("nvdisasm")):
        if cand and os.path.exists(cand):
            return cand
    try:
        import nvidia.cu13  # noqa: F401  (pip package nvidia-cuda-nvdisasm)
        found = glob.glob(os.path.join(os.path.dirname(nvidia.cu13.__path__[0]), "cu13", "bin", "nvdisasm"))
        if found:
            return found[0]
    except ImportError:
        pass
    sys.exit("nvdisasm not found: put it on PATH, set NVDISASM, or pip install nvidia-cuda-nvdisasm")


def loop_histogram(sass: str):
    """(instruction count, opcode counter) of the longest loop closed by a backward branch."""
    lines = sass.splitlines()
    labels = {ln.strip().rstrip(":"): i for i, ln in enumerate(lines) if re.match(r"\s*\.L_x_\d+:\s*$", ln)}
    best = None
    for i, ln in enumerate(lines):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", ln)
        if m and labels.get(m.group(1), i) < i and (best is None or i - labels[m.group(1)] > best[1] - best[0]):
            best = (labels[m.group(1)], i)
    if best is None:
        return 0, collections.Counter()
    ops = collections.Counter()
    for ln in lines[best[0]:best[1] + 1]:
        m = re.match(r"\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", ln)
        if m:
            ops[m.group(1)] += 1
    return sum(ops.values()), ops


n, k = map(int, args.shape.split("x"))
cfg = default_config(args.m, n, k, a_dtype=args.a, b_dtype=args.b, c_dtype=args.a if args.a in ("float16", "bfloat16")
                     else "float16", group_size=args.group, arch=args.arch)
for item in filter(None, args.set.split(",")):
    key, value = item.split("=")
    cur = getattr(cfg, key)
    cfg = cfg.with_(**{key: type(cur)(value) if not isinstance(cur, bool) else value in ("1", "True", "true")})
cfg = cfg.validate()
if cfg.mainloop == "sm90":
    from humming_cute.kernels.mainloop_sm90 import Sm90MixedGemm as Kernel
else:
    from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm as Kernel
with tempfile.TemporaryDirectory() as d:
    art = compile_for_arch(Kernel(cfg), *fake_operands(cfg), arch=args.arch, options="--enable-tvm-ffi", keep_dir=d)
    cubin = glob.glob(os.path.join(d, "*.cubin"))[0]
    sass = subprocess.run([nvdisasm(), "-c", cubin], capture_output=True, text=True, check=True).stdout
total, ops = loop_histogram(sass)
print(cfg)
print(f"registers / spills: {[(r.registers, r.spill_bytes) for r in art.ptxas.values()]}")
print(f"main loop: {total} SASS instructions per warp per iteration")
for op, c in ops.most_common(20):
    print(f"  {op:10s} {c}")
