"""The oracle: reference dense and MoE GEMMs in plain torch (fp32 by default, fp64 on request).

Every kernel test compares against these functions. They favour being obviously right over being fast:
dequantize everything (weights with `quant.weight.dequantize_weight`, 8/4-bit activations with
`quant.activation.dequantize_activation`), multiply in `compute_dtype`, add the bias, apply the activation,
cast once at the end.

    C = act( dequant(x) @ dequant(W)^T + bias )

Conventions (the kernels must follow the same):

- **GLU interleave.** A GLU activation (``"silu_glu"``, or any ``"<name>_glu"``, or a callable with
  ``glu=True``) reads the pre-activation ``y[..., N]`` as *interleaved* pairs: column ``2j`` is the gate and
  column ``2j + 1`` the up projection of output column ``j``; ``out[..., j] = act(y[..., 2j]) * y[..., 2j + 1]``,
  so the output is ``N / 2`` wide. (A checkpoint with ``[gate; up]`` stacked halves must be interleaved at load.)
  The bias is added before the activation, so it is also ``N`` wide and interleaved.
- **MoE** follows vLLM's ``fused_moe`` contract (see `reference_moe_gemm`); output rows that no valid block
  writes (experts -1 on another rank, ids that never occur) are **zero** in the reference, as vLLM's kernel
  writes zeros for an expert -1 block.
- fp32 matmuls run at full fp32 precision (TF32 is switched off for the duration of the call on CUDA).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Union

import torch
import torch.nn.functional as F

from .. import dtypes as _dt
from .activation import ACTIVATION_QUANT_TYPES, activation_storage_dtype, dequantize_activation
from .weight import QuantizedWeight, dequantize_weight

__all__ = [
    "ACTIVATIONS", "apply_activation", "reference_gemm", "reference_moe_gemm", "moe_align_block_size_reference",
]


def _quick_gelu(y):
    return y * torch.sigmoid(1.702 * y)


_BASE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda y: y,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": lambda y: F.gelu(y),  # erf form
    "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
    "quick_gelu": _quick_gelu,  # y * sigmoid(1.702 y)
    "silu": F.silu,
}

#: every activation name `apply_activation` knows: the elementwise ones and their interleaved-GLU forms
ACTIVATIONS = tuple(_BASE_ACTIVATIONS) + tuple(f"{n}_glu" for n in _BASE_ACTIVATIONS if n != "none")

Activation = Union[None, str, Callable]


def _is_glu(activation: Activation, glu: bool) -> bool:
    if isinstance(activation, str):
        return glu or activation.lower().endswith("_glu")
    return bool(glu) and activation is not None


def apply_activation(y: torch.Tensor, activation: Activation = None, *, glu: bool = False) -> torch.Tensor:
    """Apply `activation` to `y` (computed in y's dtype).

    `activation` is None / ``"none"``, a name of `ACTIVATIONS`, or a callable:
    - ``f(y)`` for an elementwise callable (it is called once on the whole tensor; it must return y's shape);
    - with ``glu=True``: ``f(gate, up)`` on the interleaved halves ``gate = y[..., 0::2]``, ``up = y[..., 1::2]``.
    A ``"<name>_glu"`` name (e.g. ``"silu_glu"``) is ``act(gate) * up`` on the interleaved halves; ``glu=True``
    with a plain name means the same as its ``_glu`` form. GLU output is ``y.shape[-1] // 2`` wide.
    """
    if activation is None:
        if glu:
            raise ValueError("glu=True needs an activation (e.g. 'silu' or a callable f(gate, up))")
        return y
    if isinstance(activation, str):
        name = activation.lower()
        base = name[:-4] if name.endswith("_glu") else name
        if base not in _BASE_ACTIVATIONS or (base == "none" and name != "none"):
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}, or a callable")
        if base == "none" and glu:
            raise ValueError("glu=True needs an activation, not 'none'")
        fn = _BASE_ACTIVATIONS[base]
        if not _is_glu(name, glu):
            return fn(y)
        gate, up = _split_glu(y)
        return fn(gate) * up
    if not callable(activation):
        raise TypeError(f"activation must be None, a name ({', '.join(ACTIVATIONS)}) or a callable, "
                        f"got {type(activation).__name__}")
    if glu:
        gate, up = _split_glu(y)
        out = activation(gate, up)
        want = gate.shape
    else:
        out = activation(y)
        want = y.shape
    if not isinstance(out, torch.Tensor) or out.shape != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"custom activation must return a tensor of shape {tuple(want)}, got {got}")
    return out


def _split_glu(y: torch.Tensor):
    if y.shape[-1] % 2:
        raise ValueError(f"a GLU activation needs an even number of columns (interleaved gate/up), "
                         f"got {y.shape[-1]}")
    return y[..., 0::2], y[..., 1::2]


# ----------------------------------------------------------------------------------------------------------------
# helpers


_OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FP16_INPUTS = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}
_INFER_QUANT = {torch.float8_e4m3fn: "float8e4m3", torch.float8_e5m2: "float8e5m2", torch.int8: "int8"}


@contextlib.contextmanager
def full_fp32_matmul():
    """No TF32 inside: the oracle's fp32 products are real fp32 products."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _resolve_out_dtype(out_dtype, default: torch.dtype) -> torch.dtype:
    if out_dtype is None:
        return default
    if not isinstance(out_dtype, torch.dtype):
        out_dtype = _dt.parse_dtype(out_dtype).torch_dtype
    if out_dtype not in _OUT_DTYPES:
        raise ValueError(f"out_dtype must be float16, bfloat16 or float32, got {out_dtype}")
    return out_dtype


def _check_compute_dtype(compute_dtype):
    if compute_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")


def _dequant_x(x, x_scales, x_group_size, a_dtype, compute_dtype):
    """-> (x as compute_dtype values [rows, K], default output dtype)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D [rows, K], got shape {tuple(x.shape)}")
    if a_dtype is None:
        if x.dtype in _FP16_INPUTS:
            name = _FP16_INPUTS[x.dtype]
        elif x.dtype in _INFER_QUANT:
            name = _INFER_QUANT[x.dtype]  # int4 lives in int8 storage with the same values: int8 reads it right
        else:
            raise TypeError(f"cannot tell the activation type of x with dtype {x.dtype}; pass a_dtype "
                            f"(e.g. a_dtype='float4e2m1' for uint8 fp4 codes)")
    else:
        name = _dt.parse_dtype(a_dtype).name
    if name in ("float16", "bfloat16", "float32"):
        want = _dt.parse_dtype(name).torch_dtype
        if x.dtype != want:
            raise TypeError(f"a_dtype {name} needs x of dtype {want}, got {x.dtype}")
        if x_scales is not None:
            raise ValueError(f"x_scales are for 8/4-bit activations; x is {name}")
        return x.to(compute_dtype), x.dtype
    if name not in ACTIVATION_QUANT_TYPES:
        raise ValueError(f"{name} is not an activation type; choose one of {', '.join(_dt.ACTIVATION_TYPES)}")
    if x.dtype != activation_storage_dtype(name):
        raise TypeError(f"{name} activations are stored as {activation_storage_dtype(name)}, got x of dtype "
                        f"{x.dtype}")
    if x_scales is None:
        raise ValueError(f"{name} activations need x_scales (fp32 [rows, 1] or [rows, K // x_group_size])")
    return dequantize_activation(x, x_scales, name, x_group_size, out_dtype=compute_dtype), torch.float16


def _check_qweight(qw, ndim: int, what: str):
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a QuantizedWeight (from quantize_weight), got {type(qw).__name__}")
    if qw.codes.dim() != ndim:
        raise ValueError(f"{what} needs weight codes of {ndim} dims, got shape {tuple(qw.codes.shape)}")


def _check_bias(bias, shape, device):
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
        raise TypeError("bias must be a float tensor")
    if tuple(bias.shape) != tuple(shape):
        raise ValueError(f"bias must have shape {tuple(shape)}, got {tuple(bias.shape)}")
    if bias.device != device:
        raise ValueError(f"bias is on {bias.device} but x on {device}")


def _check_device(x, qw):
    if qw.codes.device != x.device:
        raise ValueError(f"x is on {x.device} but the weight on {qw.codes.device}")


# ----------------------------------------------------------------------------------------------------------------
# dense


def reference_gemm(x: torch.Tensor, qw: QuantizedWeight, *, bias: torch.Tensor | None = None,
                   activation: Activation = None, glu: bool = False, out_dtype=None,
                   x_scales: torch.Tensor | None = None, x_group_size: int = 0, a_dtype=None,
                   compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``act(dequant(x) @ dequant(W)^T + bias)`` -> ``[M, N]`` (``[M, N // 2]`` for GLU) in `out_dtype`.

    - `x`: ``[M, K]`` fp16/bf16 (fp32 accepted), or an 8/4-bit activation as produced by `quantize_activation`
      with its fp32 `x_scales` (``[M, 1]`` or ``[M, K // x_group_size]``). `a_dtype` names the activation type;
      it is inferred from x.dtype when unambiguous (fp8, int8; int4 is int8 storage with the same values), and
      required for fp4 (uint8 codes).
    - `qw`: a dense `QuantizedWeight` (codes ``[N, K]``). `bias`: ``[N]`` (pre-GLU width), any float dtype.
    - `activation` / `glu`: see `apply_activation`.
    - `out_dtype`: default x.dtype for 16/32-bit x, float16 for quantized x.
    - `compute_dtype`: torch.float32 (default) or torch.float64.
    """
    _check_compute_dtype(compute_dtype)
    _check_qweight(qw, 2, "reference_gemm (dense)")
    xd, default_out = _dequant_x(x, x_scales, x_group_size, a_dtype, compute_dtype)
    out_dtype = _resolve_out_dtype(out_dtype, default_out)
    n, k = qw.codes.shape
    if xd.shape[1] != k:
        raise ValueError(f"x has K = {xd.shape[1]} columns but the weight has K = {k}")
    _check_device(x, qw)
    _check_bias(bias, (n,), x.device)

    w = dequantize_weight(qw, dtype=compute_dtype).to(compute_dtype)  # [N, K]
    with full_fp32_matmul():
        y = xd @ w.t()
    if bias is not None:
        y = y + bias.to(compute_dtype)
    y = apply_activation(y, activation, glu=glu)
    return y.to(out_dtype)


# ----------------------------------------------------------------------------------------------------------------
# MoE


def _int_tensor(t, name: str, ndim: int | None = 1) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be int32 (int64 accepted), got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def _pos_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


def reference_moe_gemm(x: torch.Tensor, qw: QuantizedWeight, sorted_token_ids: torch.Tensor,
                       expert_ids: torch.Tensor, num_tokens_post_padded, *, top_k: int, block_m: int,
                       topk_weights: torch.Tensor | None = None, mul_topk_weights: bool = False,
                       is_down: bool = False, bias: torch.Tensor | None = None, activation: Activation = None,
                       glu: bool = False, out_dtype=None, x_scales: torch.Tensor | None = None,
                       x_group_size: int = 0, a_dtype=None,
                       compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reference MoE GEMM with vLLM's ``fused_moe`` contract. Returns ``[M, top_k, N']`` (N' = N, or N/2 for GLU).

    - `qw`: MoE `QuantizedWeight`, codes ``[E, N, K]`` (E = local experts). `bias`: ``[E, N]`` or None.
    - `sorted_token_ids`: int32 ``[L]`` of flat ids ``id = token * top_k + k``; an id ``>= M * top_k`` is padding.
    - `expert_ids`: int32 ``[>= ceil(num_tokens_post_padded / block_m)]``: the (local) expert of each block of
      `block_m` consecutive sorted entries; -1 means the expert lives on another rank: the block is skipped.
    - `num_tokens_post_padded`: int32 tensor ``[1]`` (or an int): only the first that many entries are read.
    - Up/gate projection (``is_down=False``): x is ``[M, K]`` and entry `id` reads row ``id // top_k``.
      Down projection (``is_down=True``): x is ``[M * top_k, K]`` and entry `id` reads row ``id``.
    - Entry `id` writes ``out.view(M * top_k, N')[id] = act(x_row @ W_e^T + bias_e)``, times
      ``topk_weights.view(-1)[id]`` (= topk_weights[token, k], after the activation) when `mul_topk_weights`.
    - Output rows no valid entry writes are zero (vLLM's kernel writes zeros for expert -1 blocks).
    - x may be an 8/4-bit activation with `x_scales` (per row of x), as in `reference_gemm`.
    """
    _check_compute_dtype(compute_dtype)
    _check_qweight(qw, 3, "reference_moe_gemm")
    top_k = _pos_int(top_k, "top_k")
    block_m = _pos_int(block_m, "block_m")
    xd, default_out = _dequant_x(x, x_scales, x_group_size, a_dtype, compute_dtype)
    out_dtype = _resolve_out_dtype(out_dtype, default_out)
    num_experts, n, k = qw.codes.shape
    rows, kx = xd.shape
    if kx != k:
        raise ValueError(f"x has K = {kx} columns but the weight has K = {k}")
    if is_down:
        if rows % top_k:
            raise ValueError(f"down projection: x must have M * top_k rows; {rows} is not a multiple of "
                             f"top_k = {top_k}")
        m = rows // top_k
    else:
        m = rows
    device = x.device
    _check_device(x, qw)
    _check_bias(bias, (num_experts, n), device)

    sorted_token_ids = _int_tensor(sorted_token_ids, "sorted_token_ids")
    expert_ids = _int_tensor(expert_ids, "expert_ids")
    if isinstance(num_tokens_post_padded, torch.Tensor):
        _int_tensor(num_tokens_post_padded, "num_tokens_post_padded", ndim=None)
        if num_tokens_post_padded.numel() != 1:
            raise ValueError(f"num_tokens_post_padded must hold one value, got shape "
                             f"{tuple(num_tokens_post_padded.shape)}")
        num_valid = int(num_tokens_post_padded.reshape(-1)[0])
    elif isinstance(num_tokens_post_padded, int) and not isinstance(num_tokens_post_padded, bool):
        num_valid = num_tokens_post_padded
    else:
        raise TypeError("num_tokens_post_padded must be an int32 tensor [1] or an int")
    for name, t in (("sorted_token_ids", sorted_token_ids), ("expert_ids", expert_ids)):
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but x on {device}")
    if not 0 <= num_valid <= sorted_token_ids.numel():
        raise ValueError(f"num_tokens_post_padded = {num_valid} is outside [0, len(sorted_token_ids) = "
                         f"{sorted_token_ids.numel()}]")
    num_blocks = -(-num_valid // block_m)
    if expert_ids.numel() < num_blocks:
        raise ValueError(f"expert_ids has {expert_ids.numel()} entries but {num_valid} sorted entries in blocks of "
                         f"{block_m} need {num_blocks}")
    if mul_topk_weights:
        if topk_weights is None:
            raise ValueError("mul_topk_weights=True needs topk_weights [M, top_k]")
    if topk_weights is not None:
        if not isinstance(topk_weights, torch.Tensor) or not topk_weights.is_floating_point():
            raise TypeError("topk_weights must be a float tensor [M, top_k]")
        if tuple(topk_weights.shape) != (m, top_k):
            raise ValueError(f"topk_weights must have shape {(m, top_k)}, got {tuple(topk_weights.shape)}")

    ids = sorted_token_ids[:num_valid].long()
    experts = expert_ids[:num_blocks].long().repeat_interleave(block_m)[:num_valid]
    if num_valid:
        if int(ids.min()) < 0:
            raise ValueError("sorted_token_ids holds a negative id")
        lo, hi = int(experts.min()), int(experts.max())
        if lo < -1 or hi >= num_experts:
            raise ValueError(f"expert_ids must lie in [-1, {num_experts}) (E = {num_experts} local experts), "
                             f"got values in [{lo}, {hi}]")
    valid = (ids < m * top_k) & (experts >= 0)
    if torch.unique(ids[valid]).numel() != int(valid.sum()):
        raise ValueError("sorted_token_ids holds a valid id more than once")

    w = dequantize_weight(qw, dtype=compute_dtype).to(compute_dtype)  # [E, N, K]
    n_out = n // 2 if _is_glu(activation, glu) else n
    out = torch.zeros(m * top_k, n_out, dtype=compute_dtype, device=device)
    for e in torch.unique(experts[valid]).tolist():
        sel = valid & (experts == e)
        flat_ids = ids[sel]
        x_rows = xd[flat_ids if is_down else flat_ids // top_k]
        with full_fp32_matmul():
            y = x_rows @ w[e].t()
        if bias is not None:
            y = y + bias[e].to(compute_dtype)
        y = apply_activation(y, activation, glu=glu)
        if mul_topk_weights:
            y = y * topk_weights.reshape(-1)[flat_ids].to(compute_dtype)[:, None]
        out[flat_ids] = y
    return out.reshape(m, top_k, n_out).to(out_dtype)


def moe_align_block_size_reference(topk_ids: torch.Tensor, block_m: int, num_experts: int,
                                   expert_map: torch.Tensor | None = None):
    """vLLM's ``moe_align_block_size`` in plain torch -> ``(sorted_token_ids, expert_ids, num_tokens_post_padded)``.

    - `topk_ids`: int ``[M, top_k]`` of *global* expert ids in ``[0, num_experts)``.
    - Flat ids ``t * top_k + k`` are grouped by expert (experts in increasing order, ids in increasing order
      within an expert); each expert's run is padded to a multiple of `block_m` with the pad value
      ``M * top_k``; experts with no ids take no blocks.
    - `sorted_token_ids`: int32 of length ``M * top_k + num_experts * (block_m - 1)`` (the most padding can
      need), filled with the pad value past the end; `expert_ids`: int32 ``[ceil(len / block_m)]``, one expert
      per block, 0 for blocks past `num_tokens_post_padded` (as vLLM); `num_tokens_post_padded`: int32 ``[1]``.
    - `expert_map` (int ``[num_experts]``, global -> local id or -1) is applied to `expert_ids` at the end, as
      in vLLM: blocks of experts on another rank get -1.
    """
    topk_ids = _int_tensor(topk_ids, "topk_ids", ndim=2)
    block_m = _pos_int(block_m, "block_m")
    num_experts = _pos_int(num_experts, "num_experts")
    device = topk_ids.device
    numel = topk_ids.numel()
    flat = topk_ids.reshape(-1).long()
    if numel and (int(flat.min()) < 0 or int(flat.max()) >= num_experts):
        raise ValueError(f"topk_ids must lie in [0, num_experts = {num_experts}), got values in "
                         f"[{int(flat.min())}, {int(flat.max())}]")

    max_padded = numel + num_experts * (block_m - 1)
    sorted_ids = torch.full((max_padded,), numel, dtype=torch.int32, device=device)
    expert_ids = torch.zeros(-(-max_padded // block_m), dtype=torch.int32, device=device)
    order = torch.sort(flat, stable=True).indices  # flat ids, grouped by expert, increasing within an expert
    counts = torch.bincount(flat, minlength=num_experts).tolist()
    pos = start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        sorted_ids[pos:pos + c] = order[start:start + c].to(torch.int32)
        nb = -(-c // block_m)
        expert_ids[pos // block_m:pos // block_m + nb] = e
        pos += nb * block_m
        start += c
    num_tokens_post_padded = torch.tensor([pos], dtype=torch.int32, device=device)

    if expert_map is not None:
        expert_map = _int_tensor(expert_map, "expert_map")
        if expert_map.numel() != num_experts:
            raise ValueError(f"expert_map must have num_experts = {num_experts} entries, got {expert_map.numel()}")
        expert_ids = expert_map.to(device)[expert_ids.long()].to(torch.int32)
    return sorted_ids, expert_ids, num_tokens_post_padded
