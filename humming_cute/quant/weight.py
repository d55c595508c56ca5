"""Host-side (pure torch, any device) quantization of weights to every weight type, and its exact inverse.

A quantized weight is a :class:`QuantizedWeight`: one unsigned ``uint8`` *code* per element (the code model of
:mod:`humming_cute.dtypes`: ``intN`` offset binary, value ``q - 2^(b-1)``; ``uintN`` value ``q - z`` with a
per-group zero point ``z``; ``floatNeXmY`` the sign|exponent|mantissa bit pattern), scales in the scale dtype, an
optional integer zero point per scale group and an optional fp32 global scale per tensor (per expert for MoE).
The real value of element ``(n, k)`` is ``value(code) [- z] * scale * global_scale``.

Scale groups (``group_size``):

- ``0``: one scale per output channel, scales ``[.., N, 1]``;
- ``G`` (a power of two, 16..K, dividing K): one scale per G consecutive K elements, scales ``[.., N, K // G]``;
- ``(bn, bk)`` (powers of two): 2-D blocks (e.g. 128x128 FP8 block scaling), scales
  ``[.., ceil(N / bn), ceil(K / bk)]``; the last block in N or K may be partial.

Zero points (``uintN`` only) have the shape of the scales.

How the scale of a group is chosen (then *rounded to the scale dtype first*; codes are computed from that rounded
scale by round-to-nearest, so each element gets the nearest representable level given the stored scale):

- float weight types: ``scale = absmax / max_value`` (positive); ``|w / scale|`` beyond ``max_value`` (possible
  after the scale rounded down) saturates to ``±max_value``.
- ``intN`` (symmetric, llama.cpp Q4_0 style): ``scale = w_at_absmax / -(2^(b-1))``, so the largest-magnitude
  element maps to code 0 (value ``-2^(b-1)``) and the extra level is on its side; scales may be negative. When
  ``max == -min`` the negative element is taken (positive scale).
- ``uintN`` (asymmetric): the range ``[lo, hi]`` is the group's ``[min, max]`` widened to include 0 (GPTQ style,
  so ``z`` always lies in ``[0, 2^b)`` and 0 is exact); ``scale = (hi - lo) / (2^b - 1)``,
  ``z = clamp(round(-lo / scale), 0, 2^b - 1)`` (from the rounded scale), ``code = clamp(round(w / scale) + z)``.
- ``ue8m0`` scales (positive powers of two) use the smallest power of two with no clipping:
  floats ``2^ceil(log2(absmax / max_value))``; uint ``2^ceil(log2((hi - lo) / (2^b - 1)))``; ``intN`` (whose
  positive side has one level less) ``2^ceil(log2(max(max / max(2^(b-1) - 1, 1), -min / 2^(b-1))))`` -- for
  ``int1`` (values {-1, 0}) positive weights necessarily quantize to 0. Exponents below -127 are clamped to
  -127 (no clipping); above 127 is an error.
- An all-zero group gets scale 1 and the code of 0 (zero point 0). A nonzero scale that underflows the scale dtype
  becomes the smallest positive (subnormal) value of that dtype with the same sign (no clipping); a scale that
  overflows the scale dtype raises ``ValueError`` (use ``global_scale=True`` or a wider scale dtype).
- Round to nearest: ties go to the even magnitude code for floats and to the even integer for ints
  (``torch.round``); for floats the sign bit follows the input, so tiny negative weights give ``-0``.
- ``global_scale=True`` (NVFP4 style): ``global = amax(|w|) / (R * S)`` per tensor (per expert), fp32, where
  ``R`` is the largest magnitude a group scale multiplies (``max_value`` for floats, ``2^(b-1)`` for ``intN``,
  ``(2^b - 1) / 2`` for ``uintN``) and ``S = min(max_value(scale dtype), 2^16)`` (capped so that the global
  scale stays a normal fp32 number with bf16/fp32/ue8m0 scales; for e4m3 this is NVFP4's ``amax / (6 * 448)``).
  Group scales are then computed on ``w / global``. A float or tensor gives the global scale explicitly.

Arithmetic is float64 (exact for every comparison that matters); large weights are processed in row chunks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .. import dtypes as _dt
from ..dtypes import FloatType, IntegerType, ScaleE8M0Type

__all__ = [
    "QuantizedWeight", "quantize_weight", "dequantize_weight", "quantize_to_codes", "code_value_table",
    "decode_scales", "scale_torch_dtype", "WEIGHT_INPUT_DTYPES",
]

#: torch dtypes `quantize_weight` accepts for the float weight
WEIGHT_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_SCALE_TORCH = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float8e4m3": torch.float8_e4m3fn,
    "float8e5m2": torch.float8_e5m2,
    "ue8m0": getattr(torch, "float8_e8m0fnu", None),
}

# Elements (after padding to whole blocks) processed per float64 chunk of a dense weight.
_CHUNK_ELEMS = 1 << 24

GroupSize = Union[int, tuple]


# ----------------------------------------------------------------------------------------------------------------
# type helpers
# ----------------------------------------------------------------------------------------------------------------

def _weight_type(dtype) -> Union[IntegerType, FloatType]:
    t = _dt.parse_dtype(dtype)
    if isinstance(t, ScaleE8M0Type) or (isinstance(t, FloatType) and t.ieee) or t.bits > 8:
        raise ValueError(f"{t.name} is not a weight type; weights are intN / uintN (N = 1..8) or floatNeXmY "
                         f"(1 + X + Y <= 8 bits), e.g. 'int4', 'uint4', 'float4e2m1'")
    return t


def _scale_type(scale_dtype):
    s = _dt.check_scale_dtype(scale_dtype)
    if _SCALE_TORCH.get(s.name) is None:  # pragma: no cover - old torch without float8_e8m0fnu
        raise NotImplementedError(f"this torch ({torch.__version__}) has no dtype for {s.name} scales")
    return s


def scale_torch_dtype(scale_dtype) -> torch.dtype:
    """The torch dtype that stores scales of `scale_dtype` (ue8m0 -> ``torch.float8_e8m0fnu``)."""
    return _SCALE_TORCH[_scale_type(scale_dtype).name]


def _scale_limits(s) -> tuple[float, float, float]:
    """(max value, overflow threshold (values at or above round past the max), smallest positive value)."""
    if isinstance(s, ScaleE8M0Type):
        return s.max_value, s.max_value, s.min_value
    mx = s.max_value
    _, e = math.frexp(mx)
    thr = mx + math.ldexp(1.0, e - 2 - s.man)  # max + half an ulp of the top binade
    return mx, thr, s.min_subnormal


def _is_pow2(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1 and (x & (x - 1)) == 0


def _block_shape(group_size, k: int) -> tuple[int, int]:
    """(bn, bk) of a validated group size for a weight with K = k."""
    if isinstance(group_size, tuple):
        return group_size
    return (1, k) if group_size == 0 else (1, group_size)


def _check_group_size(group_size, k: int) -> GroupSize:
    if isinstance(group_size, list):
        group_size = tuple(group_size)
    if isinstance(group_size, tuple):
        if len(group_size) != 2 or not all(_is_pow2(v) for v in group_size):
            raise ValueError(f"a 2-D block group_size must be a (bn, bk) pair of powers of two, got {group_size!r}")
        return group_size
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int (0 = per output channel, or a power of two >= 16) or a "
                        f"(bn, bk) tuple, got {type(group_size).__name__}: {group_size!r}")
    if group_size == 0:
        return 0
    if group_size < 0 or not _is_pow2(group_size):
        raise ValueError(f"group_size must be 0 (per output channel) or a power of two, got group_size={group_size}")
    if group_size < 16:
        raise ValueError(f"group_size must be at least 16 (or 0 for per output channel), got group_size={group_size}")
    if k % group_size != 0:
        raise ValueError(f"K={k} is not divisible by group_size={group_size}")
    return group_size


# ----------------------------------------------------------------------------------------------------------------
# code <-> value tables and rounding
# ----------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _value_list(t) -> tuple:
    return tuple(t.values())


def code_value_table(b_dtype, device=None) -> torch.Tensor:
    """float64 tensor of the value of every code ``0 .. 2^b - 1`` of `b_dtype` (NaN for reserved codes).

    ``uintN`` values are ``q`` (zero point 0); ``intN`` ``q - 2^(b-1)``; ``ue8m0`` ``2^(q - 127)``."""
    t = _dt.parse_dtype(b_dtype)
    if t.bits > 8:
        raise ValueError(f"code tables exist only for <= 8-bit types, not {t.name}")
    return torch.tensor(_value_list(t), dtype=torch.float64, device=device)


@functools.lru_cache(maxsize=None)
def _rounding_grid(t) -> tuple[tuple, tuple]:
    """(sorted levels, midpoints) for round-to-nearest. FloatType: magnitudes of codes 0 .. n-1 (the valid codes of
    one sign are contiguous from 0 and increasing). ue8m0: all 255 positive values."""
    if isinstance(t, FloatType):
        mags = []
        for c in range(1 << (t.exp + t.man)):
            if t._reserved(c):
                break
            mags.append(t.decode(c))
        assert all(t._reserved(c) for c in range(len(mags), 1 << (t.exp + t.man))), t
    else:
        mags = [math.ldexp(1.0, c - 127) for c in range(255)]
    assert all(a < b for a, b in zip(mags, mags[1:])), t
    mids = tuple((a + b) / 2 for a, b in zip(mags, mags[1:]))  # exact in float64
    return tuple(mags), mids


def _nearest_index(a: torch.Tensor, mids: tuple) -> torch.Tensor:
    """Index of the nearest level for float64 `a` given the (exact) midpoints; ties go to the even index."""
    m = torch.tensor(mids, dtype=torch.float64, device=a.device)
    idx = torch.bucketize(a, m)  # m[i-1] < a <= m[i] -> i: ties land on the lower index
    tie = a == m[idx.clamp(max=len(mids) - 1)]
    return torch.where(tie & (idx % 2 == 1), idx + 1, idx)


def quantize_to_codes(x: torch.Tensor, b_dtype, zero_point=None) -> torch.Tensor:
    """Round already-scaled values `x` to the nearest code of `b_dtype` (uint8, same shape and device).

    Integers: ``clamp(round(x) + offset, 0, 2^b - 1)`` with offset ``2^(b-1)`` (``intN``) or the zero point
    (``uintN``; `zero_point` an int or a tensor broadcastable to `x`, default 0); ``torch.round`` ties to even.
    Floats: nearest magnitude (ties to the even code), saturating at ``max_value``, the sign bit from the input's
    sign bit (``-0.0`` and tiny negatives give the negative-zero code). ``ue8m0``: nearest power of two in
    ``[2^-127, 2^127]``. NaN inputs are not supported."""
    t = _dt.parse_dtype(b_dtype)
    if t.bits > 8:
        raise ValueError(f"codes exist only for <= 8-bit types, not {t.name}")
    if zero_point is not None and not (isinstance(t, IntegerType) and not t.signed):
        raise ValueError(f"only uintN types take a zero point, not {t.name}")
    x = x.to(torch.float64)
    if isinstance(t, IntegerType):
        off = t.offset if t.signed else 0
        q = torch.round(x) + off
        if zero_point is not None:
            z = zero_point.to(device=x.device, dtype=torch.float64) if isinstance(zero_point, torch.Tensor) \
                else float(zero_point)
            q = q + z
        return q.clamp_(0, t.num_codes - 1).to(torch.uint8)
    _, mids = _rounding_grid(t)
    if isinstance(t, ScaleE8M0Type):
        return _nearest_index(x, mids).to(torch.uint8)
    idx = _nearest_index(x.abs(), mids)
    sign = torch.signbit(x).to(torch.int64) << (t.exp + t.man)
    return (idx | sign).to(torch.uint8)


def decode_scales(scales: torch.Tensor, scale_dtype=None) -> torch.Tensor:
    """Exact float64 values of a scale tensor (ue8m0: ``2^(code - 127)``, NaN for code 255)."""
    e8m0 = _SCALE_TORCH["ue8m0"]
    if (scale_dtype is not None and _dt.parse_dtype(scale_dtype).name == "ue8m0") or scales.dtype == e8m0:
        c = scales.view(torch.uint8).to(torch.float64) if scales.dtype != torch.uint8 else scales.to(torch.float64)
        return torch.where(c == 255, torch.full_like(c, math.nan), torch.exp2(c - 127))
    return scales.to(torch.float64)


def _pow2_ceil_exponent(raw: torch.Tensor) -> torch.Tensor:
    """int64 exponent e of the smallest 2^e >= raw (raw > 0, float64)."""
    m, e = torch.frexp(raw)
    e = e.to(torch.int64)
    return torch.where(m == 0.5, e - 1, e)


# ----------------------------------------------------------------------------------------------------------------
# the container
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class QuantizedWeight:
    """Codes, scales, zero points and global scale of a dense ``[N, K]`` or MoE ``[E, N, K]`` weight.

    - ``codes``: uint8 ``[N, K]`` / ``[E, N, K]``, one code per element (not packed).
    - ``b_dtype``: the weight type (IntegerType / FloatType; a name is accepted and parsed).
    - ``scales``: in the scale dtype's torch dtype, ``[.., N, 1]`` (group_size 0), ``[.., N, K // G]`` or
      ``[.., ceil(N / bn), ceil(K / bk)]`` (group_size ``(bn, bk)``).
    - ``scale_dtype``: one of ``dtypes.SCALE_TYPES``.
    - ``group_size``: 0, G, or ``(bn, bk)``.
    - ``zero_points``: uint8, the shape of ``scales``, values in ``[0, 2^b)``; required for ``uintN``, else None.
    - ``global_scale``: fp32 ``[]`` (dense) or ``[E]`` (MoE), or None.

    Shapes and dtypes are checked on construction (no value checks, nothing synchronises a GPU)."""

    codes: torch.Tensor
    b_dtype: object
    scales: torch.Tensor
    scale_dtype: object
    group_size: GroupSize = 0
    zero_points: Optional[torch.Tensor] = None
    global_scale: Optional[torch.Tensor] = None

    def __post_init__(self):
        self.b_dtype = _weight_type(self.b_dtype)
        self.scale_dtype = _scale_type(self.scale_dtype)
        c = self.codes
        if not isinstance(c, torch.Tensor) or c.dtype != torch.uint8:
            raise TypeError(f"codes must be a torch.uint8 tensor, got "
                            f"{c.dtype if isinstance(c, torch.Tensor) else type(c).__name__}")
        if c.dim() not in (2, 3):
            raise ValueError(f"codes must be [N, K] or [E, N, K], got shape {tuple(c.shape)}")
        n, k = c.shape[-2:]
        self.group_size = _check_group_size(self.group_size, k)
        bn, bk = _block_shape(self.group_size, k)
        lead = tuple(c.shape[:-2])
        want = lead + (-(-n // bn), -(-k // bk))
        sdt = _SCALE_TORCH[self.scale_dtype.name]
        if not isinstance(self.scales, torch.Tensor) or self.scales.dtype != sdt:
            got = self.scales.dtype if isinstance(self.scales, torch.Tensor) else type(self.scales).__name__
            raise TypeError(f"scales of scale_dtype {self.scale_dtype.name} must be a {sdt} tensor, got {got}")
        if tuple(self.scales.shape) != want:
            raise ValueError(f"scales must have shape {want} for codes {tuple(c.shape)} and "
                             f"group_size={self.group_size!r}, got {tuple(self.scales.shape)}")
        is_uint = isinstance(self.b_dtype, IntegerType) and not self.b_dtype.signed
        if is_uint and self.zero_points is None:
            raise ValueError(f"{self.b_dtype.name} weights need zero_points (use int{self.b_dtype.bits} for "
                             f"symmetric weights)")
        if self.zero_points is not None:
            if not is_uint:
                raise ValueError(f"only uintN weights take zero points, not {self.b_dtype.name}")
            if self.zero_points.dtype != torch.uint8 or tuple(self.zero_points.shape) != want:
                raise ValueError(f"zero_points must be a torch.uint8 tensor of shape {want}, got "
                                 f"{self.zero_points.dtype} {tuple(self.zero_points.shape)}")
        if self.global_scale is not None:
            g = self.global_scale
            if not isinstance(g, torch.Tensor) or g.dtype != torch.float32 or tuple(g.shape) != lead:
                raise ValueError(f"global_scale must be a float32 tensor of shape {lead}, got "
                                 f"{getattr(g, 'dtype', type(g).__name__)} {tuple(getattr(g, 'shape', ()))}")

    @property
    def shape_n(self) -> int:
        return self.codes.shape[-2]

    @property
    def shape_k(self) -> int:
        return self.codes.shape[-1]

    @property
    def num_experts(self) -> Optional[int]:
        return self.codes.shape[0] if self.codes.dim() == 3 else None

    @property
    def has_zero_point(self) -> bool:
        return self.zero_points is not None

    @property
    def block_shape(self) -> tuple[int, int]:
        """(bn, bk) covered by one scale: (1, K) per channel, (1, G) per group, or the 2-D block."""
        return _block_shape(self.group_size, self.shape_k)

    @property
    def device(self) -> torch.device:
        return self.codes.device

    def to(self, device, non_blocking: bool = False) -> "QuantizedWeight":
        def mv(x):
            return None if x is None else x.to(device, non_blocking=non_blocking)

        return QuantizedWeight(mv(self.codes), self.b_dtype, mv(self.scales), self.scale_dtype, self.group_size,
                               mv(self.zero_points), mv(self.global_scale))


# ----------------------------------------------------------------------------------------------------------------
# quantize / dequantize
# ----------------------------------------------------------------------------------------------------------------

def _global_range(t) -> float:
    """R: the largest |value| a group scale multiplies for weight type t."""
    if isinstance(t, FloatType):
        return t.max_value
    if t.signed:
        return float(1 << (t.bits - 1))
    return (t.num_codes - 1) / 2


def _quantize_2d(w: torch.Tensor, t, s, bn: int, bk: int, g: Optional[torch.Tensor]):
    """Quantize one [n, K] slab (n a multiple of bn unless it is the last). Returns codes, scales, zero points."""
    n, k = w.shape
    nb, kb = -(-n // bn), -(-k // bk)
    x = w.to(torch.float64)
    if g is not None:
        x = x / g.to(torch.float64)
    if nb * bn != n or kb * bk != k:  # zero padding changes no absmax and (0 being in range) no uint range
        x = torch.nn.functional.pad(x, (0, kb * bk - k, 0, nb * bn - n))
    xb = x.view(nb, bn, kb, bk)
    e8m0 = isinstance(s, ScaleE8M0Type)
    is_uint = isinstance(t, IntegerType) and not t.signed
    lo = None
    if isinstance(t, FloatType):
        raw = xb.abs().amax(dim=(1, 3)) / t.max_value
    else:
        mx, mn = xb.amax(dim=(1, 3)), xb.amin(dim=(1, 3))
        half = float(1 << (t.bits - 1))
        if is_uint:
            lo = mn.clamp(max=0)
            raw = (mx.clamp(min=0) - lo) / (t.num_codes - 1)
        elif e8m0:
            raw = torch.maximum(mx / max(half - 1, 1.0), -mn / half)
        else:
            raw = torch.where(mx > -mn, mx, mn) / -half
    raw = torch.where(raw == 0, torch.ones_like(raw), raw)  # all-zero group: scale 1, codes of 0

    smax, sthr, smin = _scale_limits(s)
    if e8m0:
        e = _pow2_ceil_exponent(raw)
        if bool((e > 127).any()):
            bad = float(raw.max())
            raise ValueError(f"a scale of {bad:.6g} exceeds the ue8m0 maximum 2^127; use global_scale=True")
        scodes = (e.clamp(min=-127) + 127).to(torch.uint8)
        stored = scodes.view(_SCALE_TORCH["ue8m0"])
    else:
        big = raw.abs() >= sthr
        if bool(big.any()):
            bad = float(raw.abs()[big].max())
            raise ValueError(f"a weight scale of {bad:.6g} overflows {s.name} scales (max {smax:g}); use "
                             f"global_scale=True or a wider scale_dtype")
        sdt = _SCALE_TORCH[s.name]
        stored = raw.to(torch.float32).to(sdt)
        # a nonzero scale that underflowed: the smallest positive scale of the dtype, same sign
        dec = stored.to(torch.float64)
        fixed = torch.where(dec == 0, torch.sign(raw) * smin, dec)
        stored = fixed.to(torch.float32).to(sdt)
    sc = decode_scales(stored, s)

    zp = None
    zfull = None
    if is_uint:
        zq = torch.round(-lo / sc).clamp_(0, t.num_codes - 1)
        zp = zq.to(torch.uint8)
        zfull = zq[:, None, :, None]
    codes = quantize_to_codes(xb / sc[:, None, :, None], t, zero_point=zfull)
    codes = codes.reshape(nb * bn, kb * bk)[:n, :k].contiguous()
    return codes, stored, zp


def _quantize_slab(w, t, s, bn, bk, g):
    """Quantize a [N, K] weight in float64 row chunks (whole blocks per chunk)."""
    n, k = w.shape
    kpad = -(-k // bk) * bk
    rows = max(1, _CHUNK_ELEMS // (kpad * bn)) * bn
    if rows >= n:
        return _quantize_2d(w, t, s, bn, bk, g)
    parts = [_quantize_2d(w[i:i + rows], t, s, bn, bk, g) for i in range(0, n, rows)]
    codes = torch.cat([p[0] for p in parts], 0)
    stored = torch.cat([p[1].view(torch.uint8) if p[1].dtype.itemsize == 1 else p[1] for p in parts], 0)
    if parts[0][1].dtype.itemsize == 1:
        stored = stored.view(parts[0][1].dtype)
    zp = torch.cat([p[2] for p in parts], 0) if parts[0][2] is not None else None
    return codes, stored, zp


def quantize_weight(w: torch.Tensor, dtype, group_size: GroupSize = 0, scale_dtype="float16", *,
                    global_scale: Union[bool, float, torch.Tensor, None] = False,
                    zero_point: Optional[bool] = None) -> QuantizedWeight:
    """Quantize a float weight ``[N, K]`` (dense) or ``[E, N, K]`` (MoE) to `dtype` with round to nearest.

    `dtype`: weight type (name, dtypes object); ``uintN`` implies a per-group zero point (`zero_point`, if given,
    must agree). `group_size`: 0 (per output channel), a power of two 16..K dividing K, or ``(bn, bk)`` 2-D blocks.
    `scale_dtype`: one of ``dtypes.SCALE_TYPES``. `global_scale`: False/None, True (computed per tensor / expert)
    or a positive float / tensor (``[]`` or ``[E]``). See the module docstring for how scales are chosen."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in WEIGHT_INPUT_DTYPES:
        raise TypeError(f"w must be float16, bfloat16 or float32, got {w.dtype}")
    if w.dim() not in (2, 3):
        raise ValueError(f"w must be 2-D [N, K] or 3-D [E, N, K] (MoE), got {w.dim()}-D shape {tuple(w.shape)}")
    if w.numel() == 0:
        raise ValueError(f"w must not be empty, got shape {tuple(w.shape)}")
    t = _weight_type(dtype)
    s = _scale_type(scale_dtype)
    is_uint = isinstance(t, IntegerType) and not t.signed
    if zero_point is not None and bool(zero_point) != is_uint:
        if is_uint:
            raise ValueError(f"{t.name} weights always have a zero point; use int{t.bits} for symmetric weights")
        raise ValueError(f"{t.name} weights take no zero point; use uint{t.bits} for weights with a zero point"
                         if isinstance(t, IntegerType) else f"float weights ({t.name}) take no zero point")
    k = w.shape[-1]
    group_size = _check_group_size(group_size, k)
    bn, bk = _block_shape(group_size, k)
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w contains NaN or inf; only finite weights can be quantized")

    moe = w.dim() == 3
    lead = tuple(w.shape[:-2])
    g = None
    if global_scale is True:
        amax = w.abs().to(torch.float32).amax(dim=(-2, -1)).to(torch.float64)
        denom = _global_range(t) * min(_scale_limits(s)[0], 65536.0)
        g = (amax / denom).to(torch.float32)
        g = torch.where(g > 0, g, torch.ones_like(g))
    elif global_scale is not None and global_scale is not False:
        if isinstance(global_scale, bool):  # pragma: no cover - True handled above
            raise AssertionError
        g = torch.as_tensor(global_scale, dtype=torch.float32, device=w.device).clone()
        if g.dim() == 0 and moe:
            g = g.expand(lead).clone()
        if tuple(g.shape) != lead:
            raise ValueError(f"global_scale must be a scalar{' or have shape ' + str(lead) if moe else ''}, got shape "
                             f"{tuple(g.shape)}")
        if not bool((torch.isfinite(g) & (g > 0)).all()):
            raise ValueError(f"global_scale must be positive and finite, got {g.tolist()}")

    if moe:
        parts = [_quantize_slab(w[e], t, s, bn, bk, None if g is None else g[e]) for e in range(w.shape[0])]
        codes = torch.stack([p[0] for p in parts])
        st = [p[1] for p in parts]
        if st[0].dtype.itemsize == 1:
            scales = torch.stack([x.view(torch.uint8) for x in st]).view(st[0].dtype)
        else:
            scales = torch.stack(st)
        zp = torch.stack([p[2] for p in parts]) if is_uint else None
    else:
        codes, scales, zp = _quantize_slab(w, t, s, bn, bk, g)
    return QuantizedWeight(codes, t, scales, s, group_size, zp, g)


def _expand(x: torch.Tensor, bn: int, bk: int, n: int, k: int) -> torch.Tensor:
    """Broadcast per-block values [.., nb, kb] to per-element [.., n, k]."""
    if bn > 1:
        x = x.repeat_interleave(bn, dim=-2)[..., :n, :]
    if bk > 1:
        x = x.repeat_interleave(bk, dim=-1)[..., :k]
    return x


def dequantize_weight(qw: QuantizedWeight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The real values ``value(code) [- z] * scale * global_scale`` of every element, ``[N, K]`` / ``[E, N, K]``.

    Computed in float32 (float64 when ``dtype=torch.float64``), then cast to `dtype`. Reserved (NaN) float codes
    dequantize to NaN."""
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    t = qw.b_dtype
    n, k = qw.shape_n, qw.shape_k
    bn, bk = qw.block_shape
    if qw.zero_points is not None:
        z = _expand(qw.zero_points.to(ct), bn, bk, n, k)
        vals = qw.codes.to(ct) - z
    else:
        vals = code_value_table(t, qw.codes.device).to(ct)[qw.codes.long()]
    out = vals * _expand(decode_scales(qw.scales, qw.scale_dtype).to(ct), bn, bk, n, k)
    if qw.global_scale is not None:
        g = qw.global_scale.to(ct)
        out = out * (g[:, None, None] if g.dim() == 1 else g)
    return out.to(dtype)
