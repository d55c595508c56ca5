"""`moe_align_block_size` for the MoE GEMM: group the routed (token, slot) ids by expert and pad each expert's
run to a multiple of the kernel's block_m.

Plain torch, on the routing tensor's device, with no host synchronisation and shapes that depend only on
(M, top_k, num_experts, block_m): it can be captured in a CUDA graph and replayed for any routing. The result is
exactly vLLM's layout (and `quant.reference.moe_align_block_size_reference`'s)."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["moe_align_block_size"]


def moe_align_block_size(topk_ids: torch.Tensor, block_m: int, num_experts: int,
                         expert_map: Optional[torch.Tensor] = None):
    """-> (sorted_token_ids int32 [M*top_k + E*(block_m-1)], expert_ids int32 [ceil(that / block_m)],
    num_tokens_post_padded int32 [1]).

    Flat ids t * top_k + k are grouped by expert (increasing), ascending within an expert, each run padded to a
    multiple of `block_m` with the pad value M * top_k. Blocks past the padded total get expert 0 (vLLM's
    convention; the kernel stops at num_tokens_post_padded). `expert_map` (global -> local id or -1) is applied
    to expert_ids at the end: blocks of experts on another rank get -1. Ids outside [0, num_experts) are not
    checked here (that would need a device sync); they are dropped from every run."""
    if not isinstance(topk_ids, torch.Tensor) or topk_ids.dim() != 2 or topk_ids.is_floating_point():
        raise ValueError("topk_ids must be an integer tensor [M, top_k]")
    if not isinstance(block_m, int) or block_m <= 0:
        raise ValueError(f"block_m must be a positive int, got {block_m!r}")
    if not isinstance(num_experts, int) or num_experts <= 0:
        raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
    dev = topk_ids.device
    numel = topk_ids.numel()
    max_padded = numel + num_experts * (block_m - 1)
    n_blocks = -(-max_padded // block_m)
    flat = topk_ids.reshape(-1).long()
    valid = (flat >= 0) & (flat < num_experts)
    key = torch.where(valid, flat, torch.full_like(flat, num_experts))       # invalid ids sort last
    counts = torch.zeros(num_experts + 1, dtype=torch.long, device=dev)
    counts.scatter_add_(0, key, torch.ones_like(key))
    counts = counts[:num_experts]
    padded = (counts + block_m - 1) // block_m * block_m
    ends = torch.cumsum(padded, 0)
    starts = ends - padded
    sorted_key, order = torch.sort(key, stable=True)                          # ids ascending within an expert
    first = torch.cumsum(counts, 0) - counts                                  # first position of each expert
    e_sorted = sorted_key.clamp_max(num_experts - 1)
    rank = torch.arange(numel, device=dev) - first[e_sorted]
    dest = starts[e_sorted] + rank
    dest = torch.where(sorted_key < num_experts, dest, torch.full_like(dest, max_padded))  # drop invalid ids
    sorted_ids = torch.full((max_padded + 1,), numel, dtype=torch.int32, device=dev)
    sorted_ids.scatter_(0, dest, order.to(torch.int32))
    sorted_ids = sorted_ids[:max_padded]
    block_start = torch.arange(n_blocks, device=dev) * block_m
    expert_ids = torch.searchsorted(ends, block_start, right=True)
    expert_ids = torch.where(expert_ids >= num_experts, torch.zeros_like(expert_ids), expert_ids)
    if expert_map is not None:
        if expert_map.numel() != num_experts:
            raise ValueError(f"expert_map must have num_experts = {num_experts} entries, got {expert_map.numel()}")
        expert_ids = expert_map.to(dev).long()[expert_ids]
    num_post = ends[-1:].to(torch.int32)
    return sorted_ids, expert_ids.to(torch.int32), num_post
