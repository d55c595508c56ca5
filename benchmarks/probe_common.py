"""Shared by the config probes: a random weight quantized and prepared for fp16 activations, with the Humming
package's layer on the same codes and scales as the peer (None, with the reason printed, when it cannot be built);
the sweep arguments; enabling the not yet GPU-verified options a probe sweeps."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import humming_cute as hc  # noqa: E402
from humming_cute.bench.peers import PeerUnavailable, humming_moe_peer, humming_peer  # noqa: E402
from humming_cute.quant.weight import dequantize_weight  # noqa: E402


def print_header() -> tuple:
    """Print the card, driver, date and command line a probe's log starts with -> (the GPU's CuTe DSL target,
    its shared memory per block in bytes)."""
    from humming_cute.arch import current_arch, get_arch
    from humming_cute.bench.timing import environment

    env = environment(torch.device("cuda"), " ".join(sys.argv))
    print(f"# {env['card']} driver {env['driver']}, {env['date']}; python3 {env['command']}", flush=True)
    arch = current_arch().target
    return arch, get_arch(arch).smem_per_block_bytes


def sweep_arguments(p, match_help: str = "only candidates whose name matches this regex") -> None:
    """The arguments every config probe takes: a per-problem time budget and a name filter."""
    p.add_argument("--budget-s", type=float, default=1e9, help="seconds of sweeping per problem")
    p.add_argument("--match", default="", help=match_help)


def weight_and_peer(shape: tuple, b_dtype: str, group: int, *, moe: bool = False):
    """(float weight, QuantizedWeight, PreparedWeight, Humming peer or None) for a random weight of `shape`
    ([N, K], or [E, N, K] with `moe`)."""
    w = torch.randn(*shape, device="cuda")
    qw = hc.quantize_weight(w, b_dtype, group)
    pw = hc.prepare_weight(qw, "float16")
    make = humming_moe_peer if moe else humming_peer
    try:
        hm = make(qw, w, dequantize_weight(qw, dtype=torch.float32), torch.float16, 1e-2)
    except PeerUnavailable as e:
        hm = None
        print(f"# humming unavailable: {e}", flush=True)
    return w, qw, pw, hm


def _compile_one(cfg) -> str:
    """Compile one config into the on-disk kernel cache (a worker of `precompile`; options not yet GPU-verified are
    allowed here, the probe's own call still validates the config as the probe set it up)."""
    import humming_cute.config as hconfig
    from humming_cute.runtime.compile import get_kernel

    hconfig.ALLOW_UNVERIFIED = True
    try:
        get_kernel(cfg)
        return ""
    except Exception as e:  # noqa: BLE001 - the timed call reports it again
        return f"{type(e).__name__}: {str(e)[:120]}"


def precompile(cfgs, workers: int = 12) -> None:
    """Compile the configs in parallel processes into the on-disk kernel cache, so the probe's own calls load them
    (the cache must be on: HUMMING_CUTE_KERNEL_CACHE not 0). Call from under `if __name__ == "__main__":`."""
    import multiprocessing as mp
    import time

    todo = list(dict.fromkeys(cfgs))
    t0 = time.time()
    with mp.get_context("spawn").Pool(min(workers, max(len(todo), 1))) as pool:
        fails = [f for f in pool.map(_compile_one, todo) if f]
    print(f"# precompiled {len(todo)} kernels in {time.time() - t0:.0f} s ({len(fails)} failed)", flush=True)
