"""The default wgmma configs with `row_perm` on and off (the weight rows each warp dequantizes permuted so that
its packed-weight shared-memory loads are conflict-free), in alternating rounds: dense fp16 x (--b, --group) at
every M in --m over --shapes, then MoE presets at --moe-tokens. Each pair is first checked bitwise equal, then
timed with `humming_cute.bench.timing.bench_ms` (L2 flushed, CUDA-graph replay); medians of --rounds rounds.
With --staged both also with the shared-memory staged C store. With --store the default config (its own
row_perm) against the same config with the staged C store instead (the staging tiles in the activation ring where
the CTA runs one output tile, `GemmConfig.staging_in_ring`; else beside it, pipeline cut to fit).

    python3 benchmarks/row_perm_probe.py --m 64,256,4096 --b uint4 --group 128
    python3 benchmarks/row_perm_probe.py --store --m 256,1024,4096,8192
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import humming_cute as hc  # noqa: E402
import humming_cute.ops as hops  # noqa: E402
from humming_cute.bench.core import MOE_PRESETS  # noqa: E402
from humming_cute.bench.moe import draw_routing  # noqa: E402
from humming_cute.bench.timing import bench_ms  # noqa: E402
from humming_cute.tune.heuristics import moe_block_size, moe_uses_wgmma  # noqa: E402
from probe_common import print_header  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--m", default="64,256,1024,4096")
p.add_argument("--shapes", default="8192x8192,4096x4096,28672x4096,4096x14336")
p.add_argument("--b", default="uint4")
p.add_argument("--group", type=int, default=128)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--moe", default="", help="comma-separated MoE presets (fp16 x uint4 g128), e.g. qwen3-30b-a3b")
p.add_argument("--moe-tokens", default="512,4096")
p.add_argument("--staged", action="store_true", help="also both with the staged C store (staged_store=True)")
p.add_argument("--store", action="store_true", help="direct / staged C store on the default configs instead")
args = p.parse_args()
arch, _ = print_header()
torch.manual_seed(0)


def ab(label: str, runs: dict) -> None:
    """Bitwise check against the first variant ("off"), then `rounds` timings of every variant, the order reversed
    every other round, medians, each over the first's time."""
    names = list(runs)
    ref = runs[names[0]]().clone()
    differ = [n for n in names[1:] if not torch.equal(runs[n](), ref)]
    times = {n: [] for n in names}
    for r in range(args.rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(bench_ms(runs[n], 60) * 1e3)
    med = {n: statistics.median(t) for n, t in times.items()}
    cols = "  ".join(f"{n} {med[n]:8.1f}us" + (f" x{med[n] / med[names[0]]:.3f}" if i else "")
                     for i, n in enumerate(names))
    print(f"  {label:66s} {cols}{'  OUTPUTS DIFFER: ' + ', '.join(differ) if differ else ''}", flush=True)


def with_staging(c):
    """`c` with the staged C store, fewer pipeline stages where the staging tiles need them; None if none fit."""
    c = c.with_(staged_store=True)
    while True:
        try:
            return c.validate()
        except ValueError as e:
            if "shared memory" not in str(e) or c.stages <= 2:
                return None
            c = c.with_(stages=c.stages - 1)


def variants(cfg) -> dict:
    """off / on, and with --staged the two with the shared-memory staged C store (16-byte row vectors); with
    --store the default's direct store and its staged store."""
    if args.store:
        direct = cfg.with_(staged_store=False).validate()
        staged = with_staging(direct)
        out = {"direct": direct}
        if staged is not None:
            out[f"staged{'(ring)' if staged.staging_in_ring else f'(st{staged.stages})'}"] = staged
        return out
    out = {"off": cfg.with_(row_perm=False).validate(), "on": cfg.with_(row_perm=True).validate()}
    if args.staged and not cfg.staged_store:
        for name in ("off", "on"):
            c = with_staging(out[name])
            if c is not None:
                out[f"{name}+staged"] = c
    return out


print(f"# fp16 x {args.b} group {args.group}; {'direct / staged C store' if args.store else 'row_perm off / on'}, "
      f"{args.rounds} rounds", flush=True)
for shape in args.shapes.split(","):
    n, k = map(int, shape.split("x"))
    qw = hc.quantize_weight(torch.randn(n, k, device="cuda"), args.b, args.group)
    pw = hc.prepare_weight(qw, "float16")
    for m in map(int, args.m.split(",")):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        hc.gemm(x, pw)
        cfg = next(v[1] for key, v in hops._DEFAULTS.items() if key[0] == m and v[0]() is pw)
        if cfg.mainloop != "sm90":
            print(f"  N={n} K={k} M={m}: the default is {cfg.mainloop} (row_perm is a wgmma option)", flush=True)
            continue
        out = torch.empty(m, n, device="cuda", dtype=torch.float16)
        tile = (f"{cfg.block_m}x{cfg.block_n}x{cfg.block_k} wn{cfg.warp_n} st{cfg.stages} split{cfg.split_k}"
                + (" ws" if cfg.warp_specialized else "") + (f" p{cfg.persistent_ctas}" if cfg.persistent_ctas else ""))
        ab(f"N={n} K={k} M={m} {tile} (default {'on' if cfg.use_row_perm else 'off'})",
           {name: (lambda c=c, x=x, pw=pw, out=out: hc.gemm(x, pw, config=c, out=out))
            for name, c in variants(cfg).items()})
for preset in filter(None, args.moe.split(",")):
    pr = MOE_PRESETS[preset]
    e, top_k = pr["num_experts"], pr["top_k"]
    for proj in ("up", "down"):
        n, k = pr[proj]
        down = proj == "down"
        qw = hc.quantize_weight(torch.randn(e, n, k, device="cuda"), "uint4", 128)
        pw = hc.prepare_weight(qw, "float16")
        for tokens in map(int, args.moe_tokens.split(",")):
            ids, tw = draw_routing(tokens, e, top_k, 0, "cuda")
            x = torch.randn(tokens * top_k if down else tokens, k, device="cuda", dtype=torch.float16)
            bm = moe_block_size(tokens, top_k, e, wgmma=moe_uses_wgmma(arch, "float16"))
            s, ei, npost = hc.moe_align_block_size(ids, bm, e)
            cfg = hops.moe_default_config(x, pw, tokens, top_k=top_k, block_m=bm, is_down=down,
                                          mul_topk_weights=down, has_bias=False, c_name="float16", act_name="none")
            if cfg.mainloop != "sm90":
                print(f"  {preset} {proj} tokens={tokens}: the default is {cfg.mainloop}", flush=True)
                continue
            out = torch.zeros(tokens, top_k, n, device="cuda", dtype=torch.float16)

            def call(c, s=s, ei=ei, npost=npost, x=x, pw=pw, bm=bm, tw=tw, down=down, out=out, top_k=top_k):
                return hc.moe_gemm(x, pw, s, ei, npost, top_k=top_k, block_m=bm, topk_weights=tw,
                                   mul_topk_weights=down, is_down=down, out=out, config=c)
            ab(f"{preset} {proj} tokens={tokens} bm{bm} bn{cfg.block_n} wn{cfg.warp_n} "
               f"(default {'on' if cfg.use_row_perm else 'off'})",
               {name: (lambda c=c, f=call: f(c)) for name, c in variants(cfg).items()})
print("done", flush=True)
