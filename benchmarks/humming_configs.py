"""Print the kernel config the reference Humming package's heuristics pick (humming.tune.get_heuristics_config on
the layer's LayerConfig, `HummingLayer.humming_config`) for the bench's dense shapes and M, next to ours
(`default_config`): what the peer runs where we are behind. Needs a GPU and humming-kernels. Usage:

    python3 benchmarks/humming_configs.py [--b uint4 --group 128] [--m 1,16,64,256,1024,4096,8192]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from humming_cute.arch import current_arch  # noqa: E402
from humming_cute.bench.peers import _humming_layer  # noqa: E402
from humming_cute.quant.weight import dequantize_weight, quantize_weight  # noqa: E402
from humming_cute.tune.heuristics import default_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--shapes", default="8192x8192,4096x4096,28672x4096,4096x14336")
p.add_argument("--m", default="1,16,64,256,1024,4096,8192")
args = p.parse_args()

from humming.tune import get_heuristics_config  # noqa: E402

print(f"# {torch.cuda.get_device_name()}; fp16 x {args.b} group {args.group}", flush=True)
for shape in args.shapes.split(","):
    n, k = map(int, shape.split("x"))
    qw = quantize_weight(torch.randn(n, k, device="cuda"), args.b, args.group, "float16")
    w_ours = dequantize_weight(qw, dtype=torch.float32)
    layer, _, _ = _humming_layer(qw, w_ours, w_ours, torch.float16)
    for m in map(int, args.m.split(",")):
        try:
            theirs = get_heuristics_config(layer.humming_config, shape_m=m)
        except Exception as e:  # noqa: BLE001 - a probe reports and goes on
            theirs = f"{type(e).__name__}: {e}"
        ours = default_config(m, n, k, a_dtype="float16", b_dtype=args.b, c_dtype="float16",
                              group_size=args.group, arch=current_arch().target)
        print(f"{n}x{k} M={m}\n  humming: {theirs}\n  ours:    {ours}", flush=True)
    del layer
