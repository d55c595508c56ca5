"""Reference (host-side, pure torch) quantization of activations to 8-bit and 4-bit types.

`quantize_activation(x, dtype, group_size)` turns fp16/bf16/fp32 activations ``x[M, K]`` into

=============  =========================  ==============================================================
type           storage of ``q``           values
=============  =========================  ==============================================================
float8e4m3     ``torch.float8_e4m3fn``    the fp8 value itself, |v| <= 448
float8e5m2     ``torch.float8_e5m2``      the fp8 value itself, |v| <= 57344
int8           ``torch.int8``             integers in [-127, 127] (symmetric; -128 is never produced)
int4           ``torch.int8``             integers in [-7, 7] (symmetric; -8 is never produced), unpacked
float4e2m1     ``torch.uint8``            one 4-bit code ``sign | exp(2) | man(1)`` per element, unpacked
=============  =========================  ==============================================================

and fp32 ``scales`` of shape ``[M, 1]`` (per token, ``group_size=0``) or ``[M, K // group_size]`` (per group of
``group_size`` consecutive K elements). The real value of element ``(m, k)`` is
``value(q[m, k]) * scales[m, k // group_size]``.

Conventions:
- scale = absmax / max_value, with max_value = 448 (e4m3), 57344 (e5m2), 127 (int8), 7 (int4), 6 (e2m1),
  computed in fp32. A group whose absmax is 0 gets scale 1 (its codes are all 0); a positive absmax so small that
  the quotient underflows gets the smallest normal fp32 instead (never 0, never NaN).
- ``x / scale`` (fp32) is rounded to the nearest representable value, ties to even, then saturated to
  ``[-max_value, max_value]``. Negative values that round to zero keep their sign (-0, like torch's fp8 casts).
- Non-finite inputs are not checked: NaN/inf propagate (a NaN scale makes the group NaN).

Everything is device-agnostic torch (CPU or CUDA tensors).
"""

from __future__ import annotations

import torch

from .. import dtypes as _dt

__all__ = [
    "ACTIVATION_QUANT_TYPES", "quantize_activation", "dequantize_activation", "activation_storage_dtype",
    "activation_max_value", "round_to_float_format",
]

#: the activation types this module quantizes to (16-bit activations are used as they are)
ACTIVATION_QUANT_TYPES = ("float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1")

_STORAGE = {
    "float8e4m3": torch.float8_e4m3fn,
    "float8e5m2": torch.float8_e5m2,
    "int8": torch.int8,
    "int4": torch.int8,
    "float4e2m1": torch.uint8,
}
_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _parse_act_type(dtype):
    t = _dt.parse_dtype(dtype)
    if t.name not in _STORAGE:
        if t.name in ("float16", "bfloat16", "float32"):
            raise ValueError(f"{t.name} activations are not quantized; quantize_activation targets one of "
                             f"{', '.join(ACTIVATION_QUANT_TYPES)}")
        raise ValueError(f"{t.name} is not a quantized activation type; choose one of "
                         f"{', '.join(ACTIVATION_QUANT_TYPES)}")
    return t


def activation_storage_dtype(dtype) -> torch.dtype:
    """The torch dtype that holds quantized activations of `dtype` (see the module table)."""
    return _STORAGE[_parse_act_type(dtype).name]


def activation_max_value(dtype) -> float:
    """The largest magnitude a quantized activation of `dtype` takes (127 for int8 and 7 for int4: symmetric)."""
    t = _parse_act_type(dtype)
    if isinstance(t, _dt.IntegerType):
        return float((1 << (t.bits - 1)) - 1)
    return float(t.max_value)


def _check_group(group_size, k: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int (0 = one scale per token), got {group_size!r}")
    if group_size < 0:
        raise ValueError(f"group_size must be 0 (per token) or a positive divisor of K, got {group_size}")
    if group_size > 0 and k % group_size != 0:
        raise ValueError(f"group_size {group_size} does not divide K = {k}")
    return group_size if group_size > 0 else k


def round_to_float_format(v: torch.Tensor, ftype) -> torch.Tensor:
    """Round fp32 `v` to the nearest value of the small float format `ftype` (ties to even), saturating at its
    max value. Returns fp32 values on the format's grid (sign of zero kept). Used for fp4 e2m1, which has no
    torch dtype; it agrees with torch's fp8 casts for e4m3/e5m2 on in-range values."""
    t = _dt.parse_dtype(ftype)
    if not isinstance(t, _dt.FloatType) or t.ieee:
        raise ValueError(f"round_to_float_format needs a small float format (e.g. float4e2m1), got {t.name}")
    v = v.float()
    mag = v.abs().clamp(max=t.max_value)
    # unbiased exponent of |v| (frexp: |v| = f * 2^e with f in [0.5, 1)), clamped to the smallest normal exponent
    _, e = torch.frexp(mag)
    e = (e - 1).clamp(min=1 - t.bias)
    step = torch.ldexp(torch.ones_like(mag), e - t.man)  # spacing of the grid in that binade (exact power of 2)
    q = torch.round(mag / step) * step  # division by a power of two is exact; torch.round is half-to-even
    q = q.clamp(max=t.max_value)
    return torch.where(torch.signbit(v), -q, q)


def _float_codes(vals: torch.Tensor, t: _dt.FloatType) -> torch.Tensor:
    """Codes (uint8) of fp32 values that lie exactly on the grid of `t`."""
    mags = torch.tensor([t.decode(c) for c in range(1 << (t.exp + t.man))], dtype=torch.float32,
                        device=vals.device)  # ascending: the float encoding is monotone in the magnitude code
    mag_code = torch.searchsorted(mags, vals.abs().contiguous())
    sign = torch.signbit(vals).to(torch.int64) << (t.exp + t.man)
    return (mag_code | sign).to(torch.uint8)


def _float_values(codes: torch.Tensor, t: _dt.FloatType) -> torch.Tensor:
    table = torch.tensor(t.values(), dtype=torch.float32, device=codes.device)
    return table[codes.long()]


def check_activation_input(x) -> tuple[int, int]:
    """The checks every activation quantizer makes on `x` (a 2-D fp16/bf16/fp32 tensor with K > 0); -> (M, K)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _INPUT_DTYPES:
        raise TypeError(f"x must be float16, bfloat16 or float32 to be quantized, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D [M, K], got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("x has K = 0 columns")
    return tuple(x.shape)


def quantize_activation(x: torch.Tensor, dtype, group_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize activations ``x[M, K]`` (fp16/bf16/fp32) to `dtype` with fp32 per-token or per-group scales.

    Returns ``(q, scales)``: `q` ``[M, K]`` in the storage dtype of the module table, `scales` fp32 ``[M, 1]``
    (``group_size=0``) or ``[M, K // group_size]``.
    """
    t = _parse_act_type(dtype)
    m, k = check_activation_input(x)
    g = _check_group(group_size, k)

    qmax = activation_max_value(t)
    xg = x.float().reshape(m, k // g, g)
    amax = xg.abs().amax(dim=-1, keepdim=True)
    # divide by a same-device tensor: CUDA turns division by a Python scalar into a multiplication by its
    # reciprocal (1 ulp off), and the scale must be the same bits on every device
    scale = (amax / torch.full_like(amax, qmax)).clamp(min=torch.finfo(torch.float32).tiny)
    scale = torch.where(amax == 0, torch.ones_like(scale), scale)
    v = (xg / scale).clamp(-qmax, qmax)  # saturate (exact: qmax is representable)

    if isinstance(t, _dt.IntegerType):
        q = torch.round(v).to(torch.int8)
    elif t.name == "float4e2m1":
        q = _float_codes(round_to_float_format(v, t), t)
    else:  # fp8: torch's casts round to nearest even (CPU and CUDA)
        q = v.to(_STORAGE[t.name])
    return q.reshape(m, k), scale.reshape(m, k // g)


def dequantize_activation(q: torch.Tensor, scales: torch.Tensor, dtype, group_size: int = 0, *,
                          out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `quantize_activation`: ``value(q) * scale`` of shape ``[M, K]``, computed and returned in
    `out_dtype` (fp32 by default; fp64 for an exact product).

    `scales` is ``[M, 1]`` for ``group_size=0`` or ``[M, K // group_size]`` (any float dtype).
    """
    if out_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"out_dtype must be torch.float32 or torch.float64, got {out_dtype}")
    t = _parse_act_type(dtype)
    if not isinstance(q, torch.Tensor) or not isinstance(scales, torch.Tensor):
        raise TypeError("q and scales must be torch.Tensors")
    want = _STORAGE[t.name]
    if q.dtype != want:
        raise TypeError(f"{t.name} activations are stored as {want}, got q of dtype {q.dtype}")
    if q.dim() != 2:
        raise ValueError(f"q must be 2-D [M, K], got shape {tuple(q.shape)}")
    if not scales.is_floating_point():
        raise TypeError(f"scales must be a float tensor (fp32), got {scales.dtype}")
    m, k = q.shape
    g = _check_group(group_size, k)
    if tuple(scales.shape) != (m, k // g):
        what = "per token" if group_size == 0 else f"per group of {group_size}"
        raise ValueError(f"scales ({what}) must have shape {(m, k // g)}, got {tuple(scales.shape)}")
    if scales.device != q.device:
        raise ValueError(f"q is on {q.device} but scales on {scales.device}")

    if t.name == "int4":
        if q.numel() and (int(q.min()) < -8 or int(q.max()) > 7):
            raise ValueError("int4 activations must hold values in [-8, 7]")
        vals = q.float()
    elif t.name == "float4e2m1":
        if q.numel() and int(q.max()) > 15:
            raise ValueError("float4e2m1 activations are 4-bit codes (0..15), one per uint8")
        vals = _float_values(q, t)
    else:
        vals = q.float()
    out = vals.to(out_dtype).reshape(m, k // g, g) * scales.to(out_dtype).reshape(m, k // g, 1)
    return out.reshape(m, k)
