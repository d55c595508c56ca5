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
