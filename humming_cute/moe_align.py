"""`moe_align_block_size` for the MoE GEMM: group the routed (token, slot) ids by expert and pad each expert's
run to a multiple of the kernel's block_m.

Two implementations with the same output, both on the routing tensor's device, with no host synchronisation and
shapes that depend only on (M, top_k, num_experts, block_m), so they can be captured in a CUDA graph and replayed
for any routing: a sequence of torch ops (any device), and CuTe DSL kernels (`kernels/moe_align.py`, CUDA): one
CTA up to 4096 routed ids, a pair of multi-CTA launches above. The result is exactly vLLM's layout (and
`quant.reference.moe_align_block_size_reference`'s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .runtime.compile import KernelCache, compile_aux

__all__ = ["moe_align_block_size", "kernel_threads", "compile_moe_align", "align_smem_words", "MoeAlignConfig",
           "IMPLS", "use_multi", "multi_ctas", "multi_smem_words"]

IMPLS = ("auto", "torch", "kernel")

_KERNELS = KernelCache("moe_align")
_NO_MAP: dict = {}
_SMALL = 4096          # routed ids up to this many: a CTA of few threads (see kernel_threads)
_LAUNCH: dict = {}     # (device, numel > _SMALL, experts, block_m, has_map, multi) -> compiled kernel


@dataclass(frozen=True)
class MoeAlignConfig:
    """One compiled variant of the alignment kernel: the expert count, the block size, threads of its single CTA,
    whether an expert map (global -> local id or -1) rewrites the expert ids, and the arch."""

    num_experts: int
    block_m: int
    threads: int
    has_map: bool
    arch: str
    unroll: int = 8
    multi: bool = False     # the multi-CTA kernel pair (kernels/moe_align.py: MoeAlignMultiKernel)

    def __post_init__(self):
        for name in ("num_experts", "block_m", "threads", "unroll"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.threads % 32 or self.threads > 1024:
            raise ValueError(f"threads must be a multiple of 32 up to 1024, got {self.threads}")
        if self.unroll > 64:
            raise ValueError(f"unroll must be at most 64 ids per batch, got {self.unroll}")


#: above _SMALL routed ids: the multi-CTA kernel pair (coalesced warp-wide loads, a grid of up to _MAX_CTAS CTAs)
#: instead of one CTA; False keeps one CTA at any size
MULTI_CTA = True
_MULTI_THREADS = 256
_MAX_CTAS = 64          # each CTA of the scatter launch reads every CTA's count row: keep the grid modest

def use_multi(numel: int) -> bool:
    """Whether `numel` routed ids take the multi-CTA kernel pair."""
    return numel > _SMALL and MULTI_CTA


def multi_ctas(numel: int) -> int:
    """CTAs of the multi-CTA kernel pair for `numel` ids: about 1024 ids (4 steps of 32 per warp) each."""
    return max(1, min(_MAX_CTAS, -(-numel // 1024)))


def align_smem_words(num_experts: int, threads: int) -> int:
    """int32 words of shared memory the kernel's CTA uses: a count row per thread plus the totals row, and the
    padded run starts."""
    return (threads + 1) * num_experts + num_experts + 1


def multi_smem_words(num_experts: int, threads: int) -> int:
    """int32 words of shared memory of a multi-CTA kernel CTA: a count row per warp, run starts, the CTA's
    offsets and the expert totals."""
    return (threads // 32) * num_experts + 3 * num_experts + 1


def _arch_smem(arch: str) -> int:
    from .arch import get_arch

    return get_arch(arch).smem_per_block_bytes


def kernel_threads(numel: int, num_experts: int, arch: str) -> Optional[int]:
    """Threads of the alignment kernel's single CTA for `numel` routed ids, or None when even 32 threads' count
    rows of `num_experts` do not fit the arch's shared memory (the torch path is used then). Few threads keep the
    per-expert prefix over thread rows short for decode-sized batches; more keep each thread's chunk short."""
    from .arch import get_arch

    limit = get_arch(arch).smem_per_block_bytes
    for t in ((256, 128, 64, 32) if numel > _SMALL else (64, 32)):
        if align_smem_words(num_experts, t) * 4 <= limit:
            return t
    return None


def compile_moe_align(cfg):
    """Compile a `MoeAlignConfig` for its arch (no GPU needed); the TVM-FFI callable
    f(ids, sorted_ids, expert_ids, num_post, expert_map)."""
    from .kernels.moe_align import MoeAlignKernel, MoeAlignMultiKernel, fake_multi_operands, fake_operands

    if cfg.multi:
        return compile_aux(MoeAlignMultiKernel(cfg), fake_multi_operands(cfg), cfg.arch, _KERNELS)
    return compile_aux(MoeAlignKernel(cfg), fake_operands(cfg), cfg.arch, _KERNELS)


def _use_kernel(impl: str, topk_ids: torch.Tensor) -> bool:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "kernel":
        if topk_ids.device.type != "cuda":
            raise ValueError(f"the moe_align_block_size kernel runs on CUDA tensors; topk_ids is on "
                             f"{topk_ids.device} (impl='torch' runs anywhere)")
        return True
    return impl == "auto" and topk_ids.device.type == "cuda"


def _align_kernel(topk_ids, block_m, num_experts, expert_map, max_padded, n_blocks, explicit: bool):
    """The kernel path; None when the expert count does not fit (auto falls back to torch)."""
    dev = topk_ids.device
    numel = topk_ids.numel()
    multi = use_multi(numel)
    key = (dev, numel > _SMALL, num_experts, block_m, expert_map is not None, multi)   # what the choice reads
    kernel = _LAUNCH.get(key)
    if kernel is None:
        from .ops import device_target

        arch = device_target(dev)
        if multi:
            threads = _MULTI_THREADS
            if multi_smem_words(num_experts, threads) * 4 > _arch_smem(arch):
                threads = None
        else:
            threads = kernel_threads(numel, num_experts, arch)
        if threads is None:
            if explicit:
                raise ValueError(f"{num_experts} experts do not fit the alignment kernel's shared memory on {arch}; "
                                 f"use impl='torch'")
            return None
        cfg = MoeAlignConfig(num_experts, block_m, threads, expert_map is not None, arch, multi=multi)
        kernel = _LAUNCH[key] = _KERNELS.get(cfg, compile_moe_align)
    ids = topk_ids.reshape(-1)
    if ids.dtype != torch.int32 or not ids.is_contiguous():
        ids = ids.to(torch.int32).contiguous()
    sorted_ids = torch.empty(max_padded, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(n_blocks, dtype=torch.int32, device=dev)
    num_post = torch.empty(1, dtype=torch.int32, device=dev)
    if expert_map is not None:
        emap = expert_map.to(dev, torch.int32).contiguous()
    else:
        emap = _NO_MAP.get(dev)
        if emap is None:
            emap = _NO_MAP[dev] = torch.zeros(1, dtype=torch.int32, device=dev)
    if multi:
        ws = torch.empty(multi_ctas(numel) * num_experts, dtype=torch.int32, device=dev)   # per-CTA counts
        kernel(ids, sorted_ids, expert_ids, num_post, emap, ws)
    else:
        kernel(ids, sorted_ids, expert_ids, num_post, emap)
    return sorted_ids, expert_ids, num_post


def moe_align_block_size(topk_ids: torch.Tensor, block_m: int, num_experts: int,
                         expert_map: Optional[torch.Tensor] = None, *, impl: str = "auto"):
    """-> (sorted_token_ids int32 [M*top_k + E*(block_m-1)], expert_ids int32 [ceil(that / block_m)],
    num_tokens_post_padded int32 [1]).

    Flat ids t * top_k + k are grouped by expert (increasing), ascending within an expert, each run padded to a
    multiple of `block_m` with the pad value M * top_k. Blocks past the padded total get expert 0 (vLLM's
    convention; the kernel stops at num_tokens_post_padded). `expert_map` (global -> local id or -1) is applied
    to expert_ids at the end: blocks of experts on another rank get -1. Ids outside [0, num_experts) are not
    checked here (that would need a device sync); they are dropped from every run.

    `impl`: "torch" (the op sequence, any device), "kernel" (the single-CTA CuTe DSL kernel, CUDA only) or "auto"
    (the kernel on CUDA tensors when the expert count fits its shared memory, else torch)."""
    if not isinstance(topk_ids, torch.Tensor) or topk_ids.dim() != 2 or topk_ids.is_floating_point():
        raise ValueError("topk_ids must be an integer tensor [M, top_k]")
    if not isinstance(block_m, int) or block_m <= 0:
        raise ValueError(f"block_m must be a positive int, got {block_m!r}")
    if not isinstance(num_experts, int) or num_experts <= 0:
        raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
    if expert_map is not None and expert_map.numel() != num_experts:
        raise ValueError(f"expert_map must have num_experts = {num_experts} entries, got {expert_map.numel()}")
    dev = topk_ids.device
    numel = topk_ids.numel()
    max_padded = numel + num_experts * (block_m - 1)
    n_blocks = -(-max_padded // block_m)
    if _use_kernel(impl, topk_ids) and numel > 0:
        out = _align_kernel(topk_ids, block_m, num_experts, expert_map, max_padded, n_blocks, impl == "kernel")
        if out is not None:
            return out
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
        expert_ids = expert_map.to(dev).long()[expert_ids]
    num_post = ends[-1:].to(torch.int32)
    return sorted_ids, expert_ids.to(torch.int32), num_post
