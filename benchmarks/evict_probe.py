"""`evict_first` (the weight loads' L2 evict-first policy) against the same config without it, dense GEMMs of fp16
activations: outputs compared bitwise, then in alternating rounds (medians of --rounds)
  * flushed: one call after the L2 is evicted (`bench_ms`);
  * back to back: one CUDA graph of calls on rotating weight copies larger than the L2 (`bench_ms_back_to_back`);
  * kept: what the L2 keeps across the GEMM - a --keep-mb buffer is read (into the L2), the GEMM runs, and the
    time of a second read of the buffer (torch's sum) is taken; the less of it the GEMM's weight lines pushed
    out, the faster that read. Also printed: the same read with the buffer in the L2 and with it evicted.

    python3 benchmarks/evict_probe.py --dense 8192x8192:1,28672x4096:16 --b uint4 --group 128
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import humming_cute as hc  # noqa: E402
import humming_cute.ops as hops  # noqa: E402
from humming_cute.bench.timing import (_flush, bench_ms, bench_ms_back_to_back, l2_bytes,  # noqa: E402
                                       rotation_copies)
from probe_common import print_header  # noqa: E402


def kept_read_us(buf, gemm, reps: int = 60) -> float:
    """Median microseconds of buf.sum() right after [L2 flush, buf.sum(), gemm()] (`gemm` None: no GEMM between;
    'cold': the flush right before the timed read)."""
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(reps):
        _flush()
        buf.sum()
        if gemm == "cold":
            _flush()
        elif gemm is not None:
            gemm()
        s.record()
        buf.sum()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e) * 1e3)
    return statistics.median(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dense", default="8192x8192:1,8192x8192:16,4096x4096:1,28672x4096:1,4096x14336:1",
                   help="NxK:M, comma-separated")
    p.add_argument("--b", default="uint4")
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep-mb", type=float, default=16.0, help="the buffer read before and after the GEMM (MB)")
    args = p.parse_args()
    print_header()
    dev = torch.device("cuda")
    buf = torch.randn(int(args.keep_mb * 2 ** 20) // 4, device=dev)
    print(f"# L2 {l2_bytes(dev) / 2 ** 20:.0f} MB; kept buffer {args.keep_mb:.0f} MB read by torch.sum: "
          f"in L2 {kept_read_us(buf, None):.1f} us, evicted {kept_read_us(buf, 'cold'):.1f} us", flush=True)
    for spec in filter(None, args.dense.split(",")):
        shape, m = spec.split(":")
        n, k = map(int, shape.split("x"))
        m = int(m)
        torch.manual_seed(0)
        w = torch.randn(n, k, device=dev)
        qw = hc.quantize_weight(w, args.b, args.group)
        pws = [hc.prepare_weight(qw, "float16")]
        x = torch.randn(m, k, device=dev, dtype=torch.float16)
        hc.gemm(x, pws[0])
        cfg = next(v[1] for key, v in hops._DEFAULTS.items() if key[0] == m and v[0]() is pws[0])
        wbytes = sum(t.numel() * t.element_size() for t in (pws[0].packed,))
        copies = rotation_copies(wbytes, l2_bytes(dev))
        pws += [hc.prepare_weight(qw, "float16") for _ in range(copies - 1)]
        runs = {"off": cfg.with_(evict_first=False), "on": cfg.with_(evict_first=True)}
        outs = {name: hc.gemm(x, pws[0], config=c).clone() for name, c in runs.items()}
        same = torch.equal(outs["off"], outs["on"])
        times = {name: {"flushed": [], "b2b": [], "kept": []} for name in runs}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                c = runs[name]
                t = times[name]
                t["flushed"].append(bench_ms(lambda: hc.gemm(x, pws[0], config=c), 60) * 1e3)
                t["b2b"].append(bench_ms_back_to_back([lambda p=pw: hc.gemm(x, p, config=c) for pw in pws], 60) * 1e3)
                t["kept"].append(kept_read_us(buf, lambda: hc.gemm(x, pws[0], config=c)))
        med = {name: {key: statistics.median(v) for key, v in t.items()} for name, t in times.items()}
        tile = (f"{cfg.mainloop} {cfg.block_m}x{cfg.block_n}x{cfg.block_k} st{cfg.stages} split{cfg.split_k}"
                f"{' cluster' if cfg.cluster_split_k else ''}")
        print(f"  {args.b} g{args.group} N={n} K={k} M={m} ({tile}; weight {wbytes / 2 ** 20:.0f} MB, {copies} "
              f"copies back to back; outputs bitwise equal: {same}; default evict_first={cfg.evict_first})",
              flush=True)
        for name in runs:
            mm = med[name]
            print(f"    evict_first {name:3s}: flushed {mm['flushed']:7.1f} us  x{mm['flushed'] / med['off']['flushed']:.3f}"
                  f"   back to back {mm['b2b']:7.1f} us  x{mm['b2b'] / med['off']['b2b']:.3f}"
                  f"   kept-buffer read after it {mm['kept']:6.1f} us", flush=True)
        pws = None
        torch.cuda.empty_cache()
    print("done", flush=True)


if __name__ == "__main__":
    main()
