"""Print the kernel config the reference Humming package's heuristics pick (humming.tune.get_heuristics_config on
the layer's LayerConfig, `HummingLayer.humming_config`) for the bench's dense shapes and M, next to ours
(`default_config`): what the peer runs where we are behind. `--moe`: its indexed-GEMM config for the MoE bench's
layers at each token count (the interval holding the routed rows, tokens x top_k), next to our routing block and
`default_moe_config`. Needs a GPU and humming-kernels (only the layer configs are built: no weights). Usage:

    python3 benchmarks/humming_configs.py [--b uint4 --group 128] [--m 1,16,64,256,1024,4096,8192]
    python3 benchmarks/humming_configs.py --moe [--tokens 1,16,64,512,4096]
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
p.add_argument("--moe", action="store_true", help="the MoE bench's layers (indexed GEMM) instead of dense shapes")
p.add_argument("--tokens", default="1,16,64,512,4096")
args = p.parse_args()

from humming.tune import get_heuristics_config  # noqa: E402

if args.moe:
    from humming.layer import HummingLayer
    from humming.transform import prepare_layer_config

    from humming_cute.bench.core import MOE_PRESETS
    from humming_cute.bench.core import select_interval
    from humming_cute.tune.heuristics import default_moe_config, moe_block_size, moe_uses_wgmma

    arch = current_arch().target
    print(f"# {torch.cuda.get_device_name()}; MoE fp16 x {args.b} group {args.group}", flush=True)
    for name, pre in MOE_PRESETS.items():
        e, top_k = pre["num_experts"], pre["top_k"]
        for proj in ("up", "down"):
            n, k = pre[proj]
            cfg = {"b_dtype": args.b, "weight_scale_group_size": args.group,
                   "has_zero_point": args.b.startswith("uint")}
            layer = HummingLayer(shape_n=n, shape_k=k, weight_config=cfg, torch_dtype=torch.float16, num_experts=e)
            # the layer's LayerConfig as transform() builds it, without weights (humming_config is set by transform)
            lcfg = prepare_layer_config(shape_n=n, shape_k=k, weight_schema=layer.weight_schema,
                                        input_schema=layer.input_schema, num_experts=e, torch_dtype=torch.float16,
                                        has_bias=layer.has_bias, device=torch.device("cuda"))
            intervals = get_heuristics_config(lcfg, gemm_type="indexed", device=torch.device("cuda"))
            for t in map(int, args.tokens.split(",")):
                rows = t * top_k
                theirs = select_interval(intervals, rows)[2]
                bm = moe_block_size(t, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"))
                ours = default_moe_config(bm, n, k, a_dtype="float16", b_dtype=args.b, c_dtype="float16",
                                          group_size=args.group, arch=arch, top_k=top_k, is_down=proj == "down",
                                          mul_topk_weights=proj == "down", num_tokens=t, num_experts=e)
                print(f"{name} {proj} tokens={t} (rows {rows})\n  humming: {theirs}\n  ours:    {ours}", flush=True)
            del layer
    sys.exit(0)

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
