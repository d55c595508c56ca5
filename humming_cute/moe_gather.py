"""The MoE GEMM's activation gather for the wgmma mainloop: x's rows in sorted (expert-grouped) order.

Two paths with the same rows below num_tokens_post_padded (the only rows the GEMM reads): torch ops (any device)
and one CuTe DSL kernel (`kernels/moe_gather.py`, CUDA, 16-bit x with K a multiple of 8), which skips the rows
past num_tokens_post_padded and replaces the op chain by one launch. Both are CUDA-graph safe (no host sync)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .runtime.compile import KernelCache, compile_aux

__all__ = ["gather_sorted_rows", "MoeGatherConfig", "compile_moe_gather"]

#: gather with the CuTe DSL kernel where it applies (False: the torch ops)
USE_KERNEL = True

_KERNELS = KernelCache("moe_gather")
_LAUNCH: dict = {}


@dataclass(frozen=True)
class MoeGatherConfig:
    """One compiled gather: x's dtype, the routing's top_k and projection, the target arch."""
    dtype: str
    top_k: int
    is_down: bool
    arch: str


def compile_moe_gather(cfg: MoeGatherConfig):
    """Compile a `MoeGatherConfig` for its arch (no GPU needed): f(x, sorted_ids, num_post, out)."""
    from .kernels.moe_gather import MoeGatherKernel, fake_operands

    return compile_aux(MoeGatherKernel(cfg), fake_operands(cfg), cfg.arch, _KERNELS)


def _kernel_ok(x: torch.Tensor) -> bool:
    return (x.device.type == "cuda" and x.dtype in (torch.float16, torch.bfloat16) and x.shape[1] % 8 == 0
            and x.is_contiguous() and x.data_ptr() % 16 == 0 and USE_KERNEL)


def gather_sorted_rows(x: torch.Tensor, sorted_token_ids: torch.Tensor, num_tokens_post_padded: torch.Tensor,
                       top_k: int, is_down: bool) -> torch.Tensor:
    """-> [len(sorted_token_ids), K]: row p is x[id // top_k] (up / gate) or x[id] (down) for id =
    sorted_token_ids[p]; padding ids take x's last row. Rows from num_tokens_post_padded on are unspecified (the
    kernel path leaves them unwritten)."""
    if _kernel_ok(x):
        from .ops import device_target

        key = (x.device, x.dtype, top_k, is_down)
        kernel = _LAUNCH.get(key)
        if kernel is None:
            cfg = MoeGatherConfig("bfloat16" if x.dtype == torch.bfloat16 else "float16", top_k, is_down,
                                  device_target(x.device))
            kernel = _LAUNCH[key] = _KERNELS.get(cfg, compile_moe_gather)
        out = torch.empty(sorted_token_ids.numel(), x.shape[1], dtype=x.dtype, device=x.device)
        kernel(x, sorted_token_ids, num_tokens_post_padded, out)
        return out
    src = sorted_token_ids.long() if is_down else sorted_token_ids.long() // top_k
    return x.index_select(0, src.clamp_max(x.shape[0] - 1))
