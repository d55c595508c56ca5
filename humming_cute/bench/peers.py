"""The peers humming_cute is timed against, each behind one small adapter that returns a `Peer`.

An adapter either returns a ready `Peer` or raises `PeerUnavailable` (with the reason to print) when the peer
does not apply to this format or is not installed; any other exception is reported by the runner as a failure.
A peer never stops the run. Each `Peer` says what weight it really multiplies by (`ref_weight`), so that its
output is checked against ``x @ ref_weight^T`` before it is timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..dtypes import parse_dtype
from ..quant.weight import QuantizedWeight, decode_scales

__all__ = ["Peer", "PeerUnavailable", "torch_peer", "int4_peer", "humming_peer"]


class PeerUnavailable(Exception):
    """The peer does not apply here (format, dtype, shape, card) or is not installed; the message says why."""


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class Peer:
    name: str
    call: Callable[[torch.Tensor], torch.Tensor]  # timed: call(x_peer) -> [M, N]
    tol: float                                     # accepted relative error against the reference below
    # the activations this peer is given, made from ours outside the timed region (e.g. a bf16 copy)
    to_input: Callable[[torch.Tensor], torch.Tensor] = _identity
    # fp32 [N, K]: the weight it multiplies by; None means humming_cute's own dequantized weight
    ref_weight: Optional[torch.Tensor] = None
    notes: list = field(default_factory=list)


def _name(t) -> str:
    return t if isinstance(t, str) else t.name


# ------------------------------------------------------------------------------------------------------------
# torch matmul (cuBLAS) on the dequantized weight
# ------------------------------------------------------------------------------------------------------------

def torch_peer(w16: torch.Tensor, tol: float) -> Peer:
    """``x @ w16^T`` with torch (cuBLAS), `w16` our dequantized weight stored in the activation dtype."""
    return Peer(name="torch", call=lambda x: torch.matmul(x, w16.t()), tol=tol,
                notes=[f"weight: humming_cute's dequantized weight stored as {w16.dtype}"])


# ------------------------------------------------------------------------------------------------------------
# torch's int4 kernel (tinygemm)
# ------------------------------------------------------------------------------------------------------------

_INT4_GROUPS = (32, 64, 128, 256)


def int4_peer(qw: QuantizedWeight, tol_bf16: float) -> Peer:
    """``torch._weight_int4pack_mm`` on humming_cute's own 4-bit codes and scales.

    The kernel (aten/src/ATen/native/cuda/int4mm.cu) computes ``w = (q - 8) * scale + zero`` per group with a
    bf16 scale and a bf16 *float* zero, from unsigned 4-bit codes ``q``, on bf16 activations, giving bf16.
    Our formats map onto it exactly up to the bf16 rounding of scale and zero:

    - ``int4`` (value ``q - 8``, code = offset binary): ``scale = s``, ``zero = 0``;
    - ``uint4`` (value ``q - z``): ``(q - z) s = (q - 8) s + (8 - z) s``, so ``zero = (8 - z) s``.

    Operands as torch expects them (torch >= 2.5, the layout torchao's tinygemm int4 uses):
    ``_convert_weight_to_int4pack(uint8 [N, K/2], innerKTiles)`` with element ``2j`` in the high nibble of byte
    ``j``; ``qScaleAndZeros`` bf16 ``[K/G, N, 2]`` (``[..., 0]`` scale, ``[..., 1]`` zero); group size 32..256;
    ``K`` a multiple of ``innerKTiles * 16``; ``N`` a multiple of 8. Seen on torch 2.11 (H100): the packing
    needs uint8 (int32 codes are refused), the other nibble order gives a wrong product, and fp16 activations
    are refused (``A.dtype() == at::kBFloat16``).
    """
    if not (hasattr(torch, "_weight_int4pack_mm") and hasattr(torch, "_convert_weight_to_int4pack")):
        raise PeerUnavailable(f"torch {torch.__version__} has no _weight_int4pack_mm/_convert_weight_to_int4pack")
    b = _name(qw.b_dtype)
    if b not in ("int4", "uint4"):
        raise PeerUnavailable(f"the int4 kernel takes 4-bit integer weights only, not {b}")
    gs = qw.group_size
    if isinstance(gs, tuple) or gs not in _INT4_GROUPS:
        raise PeerUnavailable(f"the int4 kernel takes group sizes {_INT4_GROUPS} along K only, not {gs!r}")
    if qw.global_scale is not None:
        raise PeerUnavailable("the int4 kernel has no global scale")
    n, k = qw.shape_n, qw.shape_k
    inner_k_tiles = next((t for t in (8, 4, 2) if k % (t * 16) == 0), None)
    if inner_k_tiles is None or n % 8:
        raise PeerUnavailable(f"the int4 kernel needs K % 32 == 0 and N % 8 == 0, got N={n}, K={k}")
    if torch.cuda.get_device_capability(qw.codes.device) < (8, 0):
        raise PeerUnavailable("the int4 kernel needs sm_80 or newer")

    s = decode_scales(qw.scales, qw.scale_dtype)                        # float64 [N, K/G]
    if b == "uint4":
        zero = (8.0 - qw.zero_points.to(torch.float64)) * s
    else:
        zero = torch.zeros_like(s)
    s_bf, z_bf = s.to(torch.bfloat16), zero.to(torch.bfloat16)
    scale_and_zero = torch.stack([s_bf, z_bf], dim=-1).transpose(0, 1).contiguous()  # [K/G, N, 2]
    q = qw.codes.to(torch.int32)                                         # [N, K], 0..15
    w_u8 = ((q[:, 0::2] << 4) | q[:, 1::2]).to(torch.uint8).contiguous()  # [N, K/2]
    w_packed = torch._convert_weight_to_int4pack(w_u8, inner_k_tiles)
    # what the kernel should compute, in fp32 from the bf16 scale and zero it was given
    ref = (q.to(torch.float32) - 8.0) * s_bf.float().repeat_interleave(gs, dim=1) \
        + z_bf.float().repeat_interleave(gs, dim=1)
    notes = [f"innerKTiles={inner_k_tiles}; scales{' and zeros' if b == 'uint4' else ''} rounded to bf16; "
             f"bf16 activations and output (the kernel takes bf16 only)"]
    return Peer(name="int4", call=lambda xb: torch._weight_int4pack_mm(xb, w_packed, gs, scale_and_zero),
                tol=tol_bf16, to_input=lambda x: x.to(torch.bfloat16), ref_weight=ref, notes=notes)


# ------------------------------------------------------------------------------------------------------------
# the reference Humming package (humming-kernels, import name `humming`)
# ------------------------------------------------------------------------------------------------------------

#: our scale dtype name -> Humming's (humming/dtypes.py spells UE8M0 "float8e8m0"). 16-bit scales are not named:
#: Humming keeps them in the layer's torch dtype (schema/humming.py, HummingWeightSchema.get_tensors_attrs).
_HUMMING_FP8_SCALES = {"float8e4m3": "float8e4m3", "float8e5m2": "float8e5m2", "ue8m0": "float8e8m0"}


def _same_weight(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= 1e-6 * b.abs().max())


def humming_peer(qw: QuantizedWeight, w_float: torch.Tensor, w_ours: torch.Tensor, a_dtype: torch.dtype,
                 tol: float) -> Peer:
    """A `humming.layer.HummingLayer` holding the same quantized weight as humming_cute where it can.

    Calls (humming-kernels 0.1.19; files of the installed package):

    1. ``HummingLayer(shape_n=N, shape_k=K, weight_config={...}, torch_dtype=a_dtype).cuda()`` (layer.py,
       class HummingLayer; README's usage example moves it to the GPU with ``.cuda()``). weight_config keys are
       the fields of ``HummingWeightSchema`` (schema/humming.py): ``b_dtype``, ``weight_scale_group_size``
       (0 = per channel), ``has_zero_point``, ``bs_dtype`` (scale dtype). Its ``__post_init__`` turns a signed
       ``intN`` into ``uintN`` without zero point, which utils/weight.py ``dequantize_weight`` reads as
       ``q - 2^(N-1)``: the same offset-binary codes as ours.
    2. Same weight: the tensors Humming's own quantizer would produce (schema/humming.py
       ``HummingWeightSchema.quant_tensor`` -> utils/weight.py ``quantize_weight(pack=True)``), made from OUR codes
       and scales: ``weight`` = ``humming.ops.pack_weight(codes int32 [N, K], bits)`` -> int32 [N, K*bits/32];
       ``weight_scale`` [N, K/G] (or [N, 1]); ``zero_point`` = pack_weight of the transposed zero points,
       transposed back -> int32 [N*bits/32, K/G]. Loaded with ``layer.load_from_tensors(tensors)`` (layer.py,
       a ``load_state_dict(strict=False)``), then checked: ``layer.weight_schema.dequant_tensors(params)``
       (schema/humming.py) must equal humming_cute's dequantized weight.
    3. Otherwise (scale dtype Humming would round, a layout it rejects, a mismatch): ``layer.
       load_from_unquantized(w_float)`` (layer.py), Humming's own quantization of the same float weight; its
       reference is then its own ``dequant_tensors`` of what it loaded.
    4. ``layer.transform()`` (layer.py: repacks into the kernel layout), then ``layer(x)`` (``forward`` ->
       forward.py ``humming_forward`` -> ops/gemm.py ``humming_gemm``, which picks the kernel config by its
       heuristics (tune/) for each M and JIT-compiles it on first use).
    """
    try:
        import humming  # noqa: F401  (registers humming.ops)
        from humming import ops as hops
        from humming.layer import HummingLayer
    except ImportError as e:
        raise PeerUnavailable(f"the Humming package (humming-kernels) is not importable: {e}") from e

    b, scale = _name(qw.b_dtype), _name(qw.scale_dtype)
    gs = qw.group_size
    if isinstance(gs, tuple):
        raise PeerUnavailable(f"2-D block scales {gs} are not mapped onto Humming in this adapter")
    if qw.global_scale is not None:
        raise PeerUnavailable("global scales are not mapped onto Humming in this adapter")
    n, k = qw.shape_n, qw.shape_k
    bits = parse_dtype(b).bits
    is_uint = b.startswith("uint")
    a_name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}[a_dtype]

    config = {"b_dtype": b, "weight_scale_group_size": gs, "has_zero_point": is_uint}
    if scale in _HUMMING_FP8_SCALES:
        config["bs_dtype"] = _HUMMING_FP8_SCALES[scale]
    layer = HummingLayer(shape_n=n, shape_k=k, weight_config=dict(config), torch_dtype=a_dtype).cuda()
    notes = [f"weight_config={config}"]

    if scale in _HUMMING_FP8_SCALES or scale == a_name:
        why_not = _load_same_weight(layer, hops, qw, bits, is_uint, w_ours)
    else:
        why_not = f"Humming keeps {scale} scales in {a_name}"
    if why_not is None:
        notes.append("same codes and scales as humming_cute (Humming's dequantized weight is identical)")
        ref = None  # checked against humming_cute's own reference
    else:
        notes.append(f"{why_not}: Humming quantized the same float weight itself (load_from_unquantized)")
        layer.load_from_unquantized(w_float)
        ref = _loaded_weight(layer)
    layer.transform()
    return Peer(name="humming", call=lambda x: layer(x), tol=tol, ref_weight=ref, notes=notes)


def _loaded_weight(layer) -> torch.Tensor:
    """fp32 [N, K]: Humming's own dequantization of the tensors loaded in `layer` (before transform())."""
    params = {name: p.data for name, p in layer.named_parameters()}
    return layer.weight_schema.dequant_tensors(params).float()


def _load_same_weight(layer, hops, qw: QuantizedWeight, bits: int, is_uint: bool,
                      w_ours: torch.Tensor) -> Optional[str]:
    """Load humming_cute's codes, scales and zero points into `layer`; None when Humming then holds exactly our
    weight, else the reason it does not."""
    try:
        codes = qw.codes.to(torch.int32).contiguous()                                # [N, K]
        tensors = {"weight": hops.pack_weight(codes, bits),                           # [N, K*bits/32]
                   "weight_scale": qw.scales.contiguous()}                            # [N, K/G] or [N, 1]
        if is_uint:
            zt = qw.zero_points.to(torch.int32).t().contiguous()                      # [K/G, N]
            tensors["zero_point"] = hops.pack_weight(zt, bits).t().contiguous()      # [N*bits/32, K/G]
        layer.load_from_tensors(tensors)
        w_h = _loaded_weight(layer)
    except Exception as e:  # noqa: BLE001 - any failure here falls back to Humming's own quantization
        return f"loading humming_cute's codes failed ({type(e).__name__}: {e})"
    if not _same_weight(w_h, w_ours):
        return "humming_cute's codes loaded into Humming dequantize to a different weight"
    return None
