"""`torch.ops.humming_cute.gemm`, `.moe_gemm` and `.moe_align_block_size`: the GEMMs and the MoE routing alignment
as torch.library custom ops with fake (meta) implementations, so that `torch.compile` / `torch.export` trace
through a `HummingLayer` (dense or MoE) without a graph break.

The op takes the prepared weight's tensors and its describing scalars (schema types only); built-in activations
pass by name. Custom Python activations are not schema types: layers using them are called directly."""

from __future__ import annotations

from typing import Optional

import torch

from ..layouts.prepared import PreparedWeight

__all__ = ["gemm_op", "moe_gemm_op", "moe_align_op"]

_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _weight(packed, group_scales, neg_sub, channel_scales, epilogue_factor, a_dtype, b_dtype, group_size,
            shape_n, shape_k) -> PreparedWeight:
    return PreparedWeight(packed=packed, group_scales=group_scales, neg_sub=neg_sub, channel_scales=channel_scales,
                          epilogue_factor=epilogue_factor, a_dtype=a_dtype, b_dtype=b_dtype, group_size=group_size,
                          shape_n=shape_n, shape_k=shape_k, n_pad=packed.shape[-2] * 64,
                          k_pad=-(-shape_k // 64) * 64)


@torch.library.custom_op("humming_cute::gemm", mutates_args=())
def gemm_op(x: torch.Tensor, packed: torch.Tensor, group_scales: Optional[torch.Tensor],
            neg_sub: Optional[torch.Tensor], channel_scales: Optional[torch.Tensor], epilogue_factor: torch.Tensor,
            bias: Optional[torch.Tensor], a_dtype: str, b_dtype: str, group_size: int, shape_n: int, shape_k: int,
            out_dtype: torch.dtype, activation: str, batch_invariant: bool) -> torch.Tensor:
    """C = act(x @ dequant(W)^T * scales + bias) with W given by its prepared tensors."""
    from ..ops import gemm

    w = _weight(packed, group_scales, neg_sub, channel_scales, epilogue_factor, a_dtype, b_dtype, group_size,
                shape_n, shape_k)
    return gemm(x, w, bias=bias, out_dtype=out_dtype, batch_invariant=batch_invariant,
                activation=None if activation == "none" else activation)


@gemm_op.register_fake
def _gemm_fake(x, packed, group_scales, neg_sub, channel_scales, epilogue_factor, bias, a_dtype, b_dtype,
               group_size, shape_n, shape_k, out_dtype, activation, batch_invariant):
    n_out = shape_n // 2 if activation.endswith("_glu") else shape_n
    return x.new_empty((x.shape[0], n_out), dtype=out_dtype)


def call_gemm_op(x: torch.Tensor, w: PreparedWeight, bias, out_dtype: torch.dtype, activation: str,
                 batch_invariant: bool) -> torch.Tensor:
    return torch.ops.humming_cute.gemm(x, w.packed, w.group_scales, w.neg_sub, w.channel_scales, w.epilogue_factor,
                                       bias, w.a_dtype, w.b_dtype, w.group_size, w.shape_n, w.shape_k, out_dtype,
                                       activation, batch_invariant)


@torch.library.custom_op("humming_cute::moe_align_block_size", mutates_args=())
def moe_align_op(topk_ids: torch.Tensor, block_m: int, num_experts: int,
                 expert_map: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sorted_token_ids, expert_ids, num_tokens_post_padded) of `moe_align.moe_align_block_size`."""
    from ..moe_align import moe_align_block_size

    outs = moe_align_block_size(topk_ids, block_m, num_experts, expert_map)
    return tuple(t.clone() if t._base is not None else t for t in outs)   # op outputs own their storage


@moe_align_op.register_fake
def _moe_align_fake(topk_ids, block_m, num_experts, expert_map):
    max_padded = topk_ids.numel() + num_experts * (block_m - 1)      # the sizes depend on the shapes only
    return (topk_ids.new_empty((max_padded,), dtype=torch.int32),
            topk_ids.new_empty((-(-max_padded // block_m),), dtype=torch.int32),
            topk_ids.new_empty((1,), dtype=torch.int32))


@torch.library.custom_op("humming_cute::moe_gemm", mutates_args=())
def moe_gemm_op(x: torch.Tensor, packed: torch.Tensor, group_scales: Optional[torch.Tensor],
                neg_sub: Optional[torch.Tensor], channel_scales: Optional[torch.Tensor],
                epilogue_factor: torch.Tensor, bias: Optional[torch.Tensor], sorted_token_ids: torch.Tensor,
                expert_ids: torch.Tensor, num_tokens_post_padded: torch.Tensor, topk_weights: Optional[torch.Tensor],
                a_dtype: str, b_dtype: str, group_size: int, shape_n: int, shape_k: int, top_k: int, block_m: int,
                mul_topk_weights: bool, is_down: bool, out_dtype: torch.dtype, activation: str) -> torch.Tensor:
    """`ops.moe_gemm` (the vLLM fused_moe contract) with the experts' weight given by its prepared tensors."""
    from ..ops import moe_gemm

    w = _weight(packed, group_scales, neg_sub, channel_scales, epilogue_factor, a_dtype, b_dtype, group_size,
                shape_n, shape_k)
    return moe_gemm(x, w, sorted_token_ids, expert_ids, num_tokens_post_padded, top_k=top_k, block_m=block_m,
                    topk_weights=topk_weights, mul_topk_weights=mul_topk_weights, is_down=is_down, bias=bias,
                    activation=None if activation == "none" else activation, out_dtype=out_dtype)


@moe_gemm_op.register_fake
def _moe_gemm_fake(x, packed, group_scales, neg_sub, channel_scales, epilogue_factor, bias, sorted_token_ids,
                   expert_ids, num_tokens_post_padded, topk_weights, a_dtype, b_dtype, group_size, shape_n, shape_k,
                   top_k, block_m, mul_topk_weights, is_down, out_dtype, activation):
    m_tokens = x.shape[0] // top_k if is_down else x.shape[0]
    n_out = shape_n // 2 if activation.endswith("_glu") else shape_n
    return x.new_empty((m_tokens, top_k, n_out), dtype=out_dtype)


def call_moe_gemm_op(x: torch.Tensor, w: PreparedWeight, routing, *, top_k: int, block_m: int, topk_weights,
                     mul_topk_weights: bool, is_down: bool, bias, out_dtype: torch.dtype,
                     activation: str) -> torch.Tensor:
    """The MoE GEMM through `torch.ops.humming_cute.moe_gemm`; `routing` = the alignment's three tensors."""
    return torch.ops.humming_cute.moe_gemm(x, w.packed, w.group_scales, w.neg_sub, w.channel_scales,
                                           w.epilogue_factor, bias, *routing, topk_weights, w.a_dtype, w.b_dtype,
                                           w.group_size, w.shape_n, w.shape_k, top_k, block_m, mul_topk_weights,
                                           is_down, out_dtype, activation)
