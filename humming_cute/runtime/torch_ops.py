"""`torch.ops.humming_cute.gemm`: the dense GEMM as a torch.library custom op with a fake (meta) implementation,
so that `torch.compile` / `torch.export` trace through a `HummingLayer` without a graph break.

The op takes the prepared weight's tensors and its describing scalars (schema types only); built-in activations
pass by name. Custom Python activations are not schema types: layers using them are called directly."""

from __future__ import annotations

from typing import Optional

import torch

from ..layouts.prepared import PreparedWeight

__all__ = ["gemm_op"]

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
