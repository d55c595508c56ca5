"""Turn a `QuantizedWeight` into the operands the kernel reads (pure torch, done once at load time).

Padding: N and K are zero-padded to multiples of 64 (the weight atom). Group scales are decoded, rounded to the
activation type (exact for fp16/bf16-representable scales: e4m3, e5m2, same-type 16-bit; fp32/bf16->fp16 and
ue8m0->fp16 round), normalised by an exact power of two so that no dequantized value overflows or underflows
fp16, transposed to [groups, N] and permuted to the kernel's column order. The power of two, the global scale
and nothing else go to the epilogue as one fp32 factor. Channel scales (group_size 0) stay fp32, exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .. import dtypes as dt
from ..quant.weight import QuantizedWeight, decode_scales
from .dequant_plan import DequantPlan, make_lane_plan, make_plan
from .weight import ATOM_K, ATOM_N, pack_weight, permute_n

__all__ = ["PreparedWeight", "prepare_weight", "round_up"]

_TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


@dataclass
class PreparedWeight:
    """Kernel-ready operands of one dense weight (MoE: one leading expert dim on every tensor)."""

    packed: torch.Tensor                  # int32 [.., N_pad/64, K_pad/64 * atom_words]
    group_scales: Optional[torch.Tensor]  # int32 view [.., groups, N_pad/2] of activation-typed scales
    neg_sub: Optional[torch.Tensor]       # int32 view [.., groups, N_pad/2] of -(magic + z)
    channel_scales: Optional[torch.Tensor]  # fp32 [.., N_pad]
    epilogue_factor: torch.Tensor         # fp32 [1] (or [E]): global scale * 2^shift
    a_dtype: str
    b_dtype: str
    group_size: int                       # 0 = channelwise; a 2-D block (bn, bk) becomes bk
    shape_n: int
    shape_k: int
    n_pad: int
    k_pad: int

    @property
    def has_zero_point(self) -> bool:
        return self.neg_sub is not None

    @property
    def device(self) -> torch.device:
        return self.packed.device


def _pad_last2(x: torch.Tensor, rows: int, cols: int, value=0) -> torch.Tensor:
    r, c = x.shape[-2:]
    if r == rows and c == cols:
        return x
    out = torch.full((*x.shape[:-2], rows, cols), value, dtype=x.dtype, device=x.device)
    out[..., :r, :c] = x
    return out


def _group_params(qw: QuantizedWeight, n: int, k: int):
    """Per-(n, group) fp64 scales and zero points with a 1-D group along K (2-D blocks expanded along N)."""
    s = decode_scales(qw.scales, qw.scale_dtype).to(torch.float64)
    z = None if qw.zero_points is None else qw.zero_points.to(torch.float64)
    gs = qw.group_size
    if isinstance(gs, tuple):
        bn, bk = gs
        s = s.repeat_interleave(bn, dim=-2)[..., :n, :]
        if z is not None:
            z = z.repeat_interleave(bn, dim=-2)[..., :n, :]
        return s, z, bk
    return s, z, gs


def prepare_weight(qw: QuantizedWeight, a_dtype="float16") -> PreparedWeight:
    """Build the kernel operands of `qw` for activations of type `a_dtype`: fp16/bf16 (m16n8k16 layout, scales
    for the in-register dequant), fp8 / int8 (m16n8k32 layout) or int4 / e2m1 (m16n8k64 layout), the last two
    with fp32 group scales for two-level accumulation and zero points as lane constants."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"prepare_weight takes a QuantizedWeight (see quantize_weight), got {type(qw).__name__}")
    a = dt.parse_dtype(a_dtype)
    b = qw.b_dtype if not isinstance(qw.b_dtype, str) else dt.parse_dtype(qw.b_dtype)
    b = dt.parse_dtype(b)
    act8 = a.name in ("float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1")   # quantized activations
    if act8:
        make_lane_plan(a, b)                 # checks the pair
        plan = None
    else:
        plan: DequantPlan = make_plan(a, b)  # also checks the pair
    n, k = qw.codes.shape[-2:]
    n_pad, k_pad = round_up(n, ATOM_N), round_up(k, ATOM_K)
    dev = qw.codes.device
    codes = _pad_last2(qw.codes, n_pad, k_pad, 0)
    # MMA K: 64 for 4-bit activation codes (int4; e2m1 with e2m1 weights), 32 for 8-bit ones (e2m1 with other
    # weights is one code per byte for the kind::f8f6f4 m16n8k32 MMA), 16 for fp16/bf16
    from ..config import act_mma_k

    packed = pack_weight(codes, b.bits, mma_k=act_mma_k(a.name, b.name))

    s, z, g = _group_params(qw, n, k)
    lead = qw.codes.shape[:-2]
    gscale = (qw.global_scale.to(torch.float64).reshape(lead) if qw.global_scale is not None
              else torch.ones(lead, dtype=torch.float64, device=dev))
    half = _TORCH_HALF.get(a.name)   # None for 8-bit activations
    if g == 0:
        # one scale per output channel: exact, in the fp32 epilogue
        cs = _pad_last2(s[..., :1], n_pad, 1, 1.0)[..., 0]
        group_scales = None
        shift = torch.zeros(lead, dtype=torch.float64, device=dev)
        group = 0
        channel_scales = cs.to(torch.float32).contiguous()
        if z is not None:
            raise NotImplementedError("zero points need a group size (use group_size=K for one group per row)")
        neg_sub = None
    elif act8:
        # 8-bit activations: fp32 group scales [groups, N_pad] in column order, applied to a partial accumulator
        # at every group end (two-level accumulation); no rounding of any scale
        group = g
        groups = -(-k_pad // g)
        shift = torch.zeros(lead, dtype=torch.float64, device=dev)
        s_pad = _pad_last2(s.to(torch.float32), n_pad, groups, 0.0)
        group_scales = s_pad.transpose(-1, -2).contiguous().view(torch.int32)
        channel_scales = None
        neg_sub = None
        if z is not None:
            lane = make_lane_plan(a, b)
            z = _pad_last2(z, n_pad, groups, 0.0).transpose(-1, -2)
            if lane.kind == "int_lanes" and lane.lane_bits == 4:   # int4 lanes: 2^3 - z in every nibble
                c = (8 - z).to(torch.int32)
                sub16 = (c * 0x1111).to(torch.int16)
            elif lane.kind == "int_lanes":   # the per-lane add constant 2^7 - z, one byte per lane of the column
                c = (128 - z).to(torch.int32)
                sub16 = (c | (c << 8)).to(torch.int16)
            else:                          # fp16 subtrahend -(1024 + z) of the exact fp16 transform
                sub16 = (-(z + lane.half.magic_value)).to(torch.float16).view(torch.int16)
            neg_sub = permute_n(sub16.contiguous()).view(torch.int32).contiguous()
    else:
        group = g
        groups = -(-k_pad // g)
        # exact power-of-two normalisation so that |value * scale| stays well inside fp16 (from the real
        # scales only: padding must not move it)
        vmax = max(abs(v) for v in b.values() if not math.isnan(v)) or 1.0
        amax = s.abs().flatten(-2).amax(-1).clamp_min(1e-30)  # per expert
        if a.name == "float16":
            shift = torch.floor(torch.log2(amax * vmax)) - 13.0
        else:
            shift = torch.zeros_like(amax)
        # padded columns are never stored and padded groups meet zero activations: pad with 0
        s_norm = _pad_last2(s * torch.exp2(-shift)[..., None, None], n_pad, groups, 0.0)
        group_scales = permute_n(s_norm.to(half).transpose(-1, -2).contiguous()).view(torch.int32).contiguous()
        channel_scales = None
        neg_sub = None
        if z is not None:
            z = _pad_last2(z, n_pad, groups, 0.0)
            sub = -(z + plan.magic_value) if plan.zp_is_magic_offset else -z
            neg_sub = permute_n(sub.to(half).transpose(-1, -2).contiguous()).view(torch.int32).contiguous()
    factor = (gscale * torch.exp2(shift)).to(torch.float32).reshape(-1).contiguous()
    return PreparedWeight(packed=packed, group_scales=group_scales, neg_sub=neg_sub,
                          channel_scales=channel_scales, epilogue_factor=factor, a_dtype=a.name, b_dtype=b.name,
                          group_size=group, shape_n=n, shape_k=k, n_pad=n_pad, k_pad=k_pad)
