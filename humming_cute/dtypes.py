"""The value model of every number format the library handles.

Weights are stored as unsigned integer *codes*; a type knows the real value of each code. Integer weight
types use offset binary (`int4`: value = q - 8) or a dynamic zero point (`uint4`: value = q - z). Small float
types are sign/exponent/mantissa with no inf/nan codes (saturating), except that the layouts shared with
torch's fp8 dtypes keep torch's reserved codes (e4m3: S.1111.111 is NaN; e5mX: the all-ones exponent).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Union

__all__ = [
    "DataType", "IntegerType", "FloatType", "ScaleE8M0Type", "parse_dtype", "check_legal_pair", "is_legal_pair",
    "ACTIVATION_TYPES", "SCALE_TYPES",
]


class DataType:
    """Common base of all formats. Subclasses are frozen dataclasses (hashable, usable as cache keys)."""

    name: str
    bits: int

    @property
    def is_float(self) -> bool:
        return isinstance(self, FloatType)

    @property
    def is_integer(self) -> bool:
        return isinstance(self, IntegerType)

    @property
    def torch_dtype(self):
        """The torch dtype holding this format's *values* unchanged, or None."""
        import torch

        table = {
            "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
            "float8e4m3": torch.float8_e4m3fn, "float8e5m2": torch.float8_e5m2, "int8": torch.int8,
            "ue8m0": getattr(torch, "float8_e8m0fnu", None),
        }
        return table.get(self.name)

    @property
    def cutlass_type_name(self) -> str | None:
        """Name of the matching `cutlass` numeric type (resolved lazily by kernels), or None."""
        table = {
            "float16": "Float16", "bfloat16": "BFloat16", "float32": "Float32", "float8e4m3": "Float8E4M3FN",
            "float8e5m2": "Float8E5M2", "int8": "Int8", "int4": "Int4", "float4e2m1": "Float4E2M1FN",
            "float6e3m2": "Float6E3M2FN", "float6e2m3": "Float6E2M3FN", "ue8m0": "Float8E8M0FNU",
            "int32": "Int32",
        }
        return table.get(self.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class IntegerType(DataType):
    """A b-bit integer. As a weight: signed = offset-binary code q in [0, 2^b) with value q - 2^(b-1);
    unsigned = code q with value q - z (z a per-group zero point). As an activation: two's complement."""

    bits: int
    signed: bool

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 32):
            raise ValueError(f"integer bit width must be in 1..32, got {self.bits!r}")

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    def __repr__(self) -> str:
        return f"dtypes.{self.name}"

    @property
    def num_codes(self) -> int:
        return 1 << self.bits

    @property
    def offset(self) -> int:
        """Value subtracted from a stored code when no zero point is given (2^(b-1) for signed, else 0)."""
        return (1 << (self.bits - 1)) if self.signed else 0

    @property
    def min_value(self) -> int:
        return -self.offset

    @property
    def max_value(self) -> int:
        return self.num_codes - 1 - self.offset

    def values(self) -> list[float]:
        """Real value of every code 0..2^b-1 (zero point taken as 0 for unsigned types)."""
        if self.bits > 8:
            raise ValueError(f"value tables exist only for <= 8-bit types, not {self.name}")
        return [float(q - self.offset) for q in range(self.num_codes)]

    def valid_codes(self) -> list[int]:
        return list(range(self.num_codes))


@dataclass(frozen=True, repr=False)
class FloatType(DataType):
    """A signed float with `exp` exponent and `man` mantissa bits, bias 2^(exp-1)-1, subnormals.

    `ieee` marks fp16/bf16/fp32 (inf/nan, not used as packed weights)."""

    exp: int
    man: int
    ieee: bool = False

    def __post_init__(self):
        if not (isinstance(self.exp, int) and isinstance(self.man, int)):
            raise TypeError("exp and man must be ints")
        if self.exp < 1 or self.man < 0:
            raise ValueError(f"a float format needs exp >= 1 and man >= 0, got e{self.exp}m{self.man}")
        if not self.ieee and self.bits > 8:
            raise ValueError(f"small float formats have at most 8 bits, got {self.bits} (e{self.exp}m{self.man})")

    @property
    def bits(self) -> int:  # type: ignore[override]
        return 1 + self.exp + self.man

    @property
    def name(self) -> str:
        special = {(5, 10): "float16", (8, 7): "bfloat16", (8, 23): "float32"}
        if self.ieee:
            return special[(self.exp, self.man)]
        return f"float{self.bits}e{self.exp}m{self.man}"

    def __repr__(self) -> str:
        return f"dtypes.{self.name}"

    @property
    def bias(self) -> int:
        return (1 << (self.exp - 1)) - 1

    @property
    def num_codes(self) -> int:
        return 1 << self.bits

    def _reserved(self, code: int) -> bool:
        mag = code & ((1 << (self.exp + self.man)) - 1)
        e = mag >> self.man
        if self.ieee or self.exp == 5:  # IEEE-like: the all-ones exponent is inf/nan
            return e == (1 << self.exp) - 1
        if self.exp == 4 and self.man == 3:  # OCP e4m3fn: S.1111.111 is NaN
            return mag == 0x7F
        return False

    def decode(self, code: int) -> float:
        """Real value of one code (raises for a reserved code)."""
        if self._reserved(code):
            raise ValueError(f"code {code:#x} is reserved (inf/nan) in {self.name}")
        sign = -1.0 if (code >> (self.exp + self.man)) & 1 else 1.0
        mag = code & ((1 << (self.exp + self.man)) - 1)
        e, m = mag >> self.man, mag & ((1 << self.man) - 1)
        if e == 0:
            return sign * math.ldexp(m, 1 - self.bias - self.man)
        return sign * math.ldexp((1 << self.man) + m, e - self.bias - self.man)

    def valid_codes(self) -> list[int]:
        if self.bits > 8:
            raise ValueError(f"code tables exist only for <= 8-bit types, not {self.name}")
        return [c for c in range(self.num_codes) if not self._reserved(c)]

    def values(self) -> list[float]:
        """Real value of every code 0..2^b-1; NaN for reserved codes."""
        if self.bits > 8:
            raise ValueError(f"value tables exist only for <= 8-bit types, not {self.name}")
        return [math.nan if self._reserved(c) else self.decode(c) for c in range(self.num_codes)]

    @property
    def max_value(self) -> float:
        if self.ieee:
            return math.ldexp(2.0 - math.ldexp(1.0, -self.man), (1 << self.exp) - 2 - self.bias)
        top_e = (1 << self.exp) - 1
        if self.exp == 5:
            top_e -= 1
        top_m = (1 << self.man) - 1
        if self.exp == 4 and self.man == 3:
            top_m -= 1
        return math.ldexp((1 << self.man) + top_m, top_e - self.bias - self.man)

    @property
    def min_value(self) -> float:
        return -self.max_value

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, 1 - self.bias - self.man)


@dataclass(frozen=True, repr=False)
class ScaleE8M0Type(DataType):
    """The unsigned power-of-two scale type (OCP MX `E8M0`): value 2^(code-127), code 255 is NaN."""

    @property
    def name(self) -> str:
        return "ue8m0"

    @property
    def bits(self) -> int:  # type: ignore[override]
        return 8

    def __repr__(self) -> str:
        return "dtypes.ue8m0"

    @property
    def num_codes(self) -> int:
        return 256

    def valid_codes(self) -> list[int]:
        return list(range(255))

    def decode(self, code: int) -> float:
        if code == 255:
            raise ValueError("code 0xff is NaN in ue8m0")
        return math.ldexp(1.0, code - 127)

    def values(self) -> list[float]:
        return [math.nan if c == 255 else math.ldexp(1.0, c - 127) for c in range(256)]

    @property
    def max_value(self) -> float:
        return math.ldexp(1.0, 127)

    @property
    def min_value(self) -> float:
        return math.ldexp(1.0, -127)


AnyType = Union[IntegerType, FloatType, ScaleE8M0Type]

float16 = FloatType(5, 10, ieee=True)
bfloat16 = FloatType(8, 7, ieee=True)
float32 = FloatType(8, 23, ieee=True)
ue8m0 = ScaleE8M0Type()
float8e4m3 = FloatType(4, 3)
float8e5m2 = FloatType(5, 2)
float6e3m2 = FloatType(3, 2)
float6e2m3 = FloatType(2, 3)
float4e2m1 = FloatType(2, 1)
int32 = IntegerType(32, True)
for _b in range(1, 9):
    globals()[f"int{_b}"] = IntegerType(_b, True)
    globals()[f"uint{_b}"] = IntegerType(_b, False)
    __all__ += [f"int{_b}", f"uint{_b}"]
__all__ += ["float16", "bfloat16", "float32", "ue8m0", "float8e4m3", "float8e5m2", "float6e3m2", "float6e2m3",
            "float4e2m1"]

ACTIVATION_TYPES = ("float16", "bfloat16", "float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1")
SCALE_TYPES = ("float16", "bfloat16", "float8e4m3", "float8e5m2", "ue8m0", "float32")

_ALIASES = {
    "fp16": "float16", "half": "float16", "f16": "float16", "bf16": "bfloat16", "fp32": "float32",
    "float": "float32", "f32": "float32", "fp8": "float8e4m3", "e4m3": "float8e4m3", "fp8e4m3": "float8e4m3",
    "float8_e4m3fn": "float8e4m3", "float8e4m3fn": "float8e4m3", "e5m2": "float8e5m2", "fp8e5m2": "float8e5m2",
    "float8_e5m2": "float8e5m2", "fp4": "float4e2m1", "e2m1": "float4e2m1", "float4_e2m1fn": "float4e2m1",
    "float4e2m1fn": "float4e2m1", "mxfp4": "float4e2m1", "nvfp4": "float4e2m1", "e8m0": "ue8m0",
    "float8e8m0": "ue8m0", "float8_e8m0fnu": "ue8m0", "float8e8m0fnu": "ue8m0",
}


@functools.lru_cache(maxsize=None)
def _parse_name(name: str) -> AnyType:
    n = name.strip().lower().replace("torch.", "")
    n = _ALIASES.get(n, n)
    if n == "float16":
        return float16
    if n == "bfloat16":
        return bfloat16
    if n == "float32":
        return float32
    if n == "ue8m0":
        return ue8m0
    m = re.fullmatch(r"(u?)int(\d+)", n)
    if m:
        bits = int(m.group(2))
        if bits == 32 and not m.group(1):
            return int32
        if not 1 <= bits <= 8:
            raise ValueError(f"integer types have 1..8 bits, got {name!r}")
        return IntegerType(bits, signed=not m.group(1))
    m = re.fullmatch(r"(?:float|fp)?(\d+)?_?e(\d+)m(\d+)(?:fnu?|fn)?", n)
    if m:
        e, mm = int(m.group(2)), int(m.group(3))
        t = FloatType(e, mm)
        if m.group(1) is not None and int(m.group(1)) != t.bits:
            raise ValueError(f"{name!r}: 1 sign + {e} exponent + {mm} mantissa bits is {t.bits}, not {m.group(1)}")
        return t
    raise ValueError(
        f"unknown data type {name!r}; expected e.g. 'int4', 'uint4', 'float6e3m2', 'float8e4m3', 'float16', "
        f"'bfloat16', 'ue8m0'"
    )


def parse_dtype(x) -> AnyType:
    """Accept a type object, a name ('uint4', 'float6e3m2', 'bf16', ...) or a torch dtype."""
    if isinstance(x, (IntegerType, FloatType, ScaleE8M0Type)):
        return x
    if isinstance(x, str):
        return _parse_name(x)
    try:
        import torch

        if isinstance(x, torch.dtype):
            return _parse_name(str(x))
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"expected a humming_cute dtype, a type name or a torch dtype, got {type(x).__name__}: {x!r}")


# (activation name) -> (min SM, max symmetric int bits, max zero-point int bits, float rule (max E, max M) or None)
_LEGAL = {
    "float16": (80, 8, 8, (5, 10)),
    "bfloat16": (80, 8, 8, (8, 7)),
    "float8e4m3": (89, 5, 4, (4, 3)),
    "float8e5m2": (89, 4, 3, (5, 2)),
    "float4e2m1": (120, 3, 2, (2, 1)),
    "int8": (80, 8, 7, None),
    "int4": (80, 4, 3, None),
}


def min_sm_for_activation(a_dtype) -> int:
    a = parse_dtype(a_dtype)
    if a.name not in _LEGAL:
        raise ValueError(f"{a.name} is not an activation type; choose one of {', '.join(ACTIVATION_TYPES)}")
    return _LEGAL[a.name][0]


def check_legal_pair(a_dtype, b_dtype, has_zero_point: bool | None = None) -> None:
    """Raise ValueError unless activation type `a_dtype` represents every value of weight type `b_dtype` exactly
    (the table of SPEC §1). `uintN` weights imply a zero point; `has_zero_point=True` with a signed or float
    weight type is itself illegal."""
    a, b = parse_dtype(a_dtype), parse_dtype(b_dtype)
    if a.name not in _LEGAL:
        raise ValueError(f"{a.name} is not an activation type; choose one of {', '.join(ACTIVATION_TYPES)}")
    _, max_sym, max_zp, frule = _LEGAL[a.name]
    if isinstance(b, ScaleE8M0Type) or (isinstance(b, FloatType) and b.ieee) or b.bits > 8:
        raise ValueError(f"{b.name} is not a packed weight type (weights have 1..8 bits: intN, uintN, floatNeXmY)")
    if isinstance(b, IntegerType):
        if b.signed:
            if has_zero_point:
                raise ValueError(f"{b.name} is symmetric (offset binary); use uint{b.bits} for weights with a zero point")
            if b.bits > max_sym:
                raise ValueError(f"illegal pair: {a.name} activations hold symmetric int weights of at most "
                                 f"{max_sym} bits, got {b.name}")
        else:
            if has_zero_point is False:
                raise ValueError(f"{b.name} weights need a zero point; use int{b.bits} for symmetric weights")
            if b.bits > max_zp:
                raise ValueError(f"illegal pair: {a.name} activations hold zero-point (uint) weights of at most "
                                 f"{max_zp} bits, got {b.name}")
        return
    if has_zero_point:
        raise ValueError(f"float weights ({b.name}) take no zero point")
    if frule is None:
        raise ValueError(f"illegal pair: {a.name} activations take integer weights only, got {b.name}")
    max_e, max_m = frule
    if b.exp > max_e or b.man > max_m:
        raise ValueError(f"illegal pair: {a.name} activations hold float weights with exponent bits <= {max_e} and "
                         f"mantissa bits <= {max_m}, got {b.name} (e{b.exp}m{b.man})")


def is_legal_pair(a_dtype, b_dtype, has_zero_point: bool | None = None) -> bool:
    """True when `check_legal_pair` accepts the pair."""
    try:
        check_legal_pair(a_dtype, b_dtype, has_zero_point)
    except ValueError:
        return False
    return True


def check_scale_dtype(s_dtype) -> AnyType:
    s = parse_dtype(s_dtype)
    if s.name not in SCALE_TYPES:
        raise ValueError(f"scale dtype must be one of {', '.join(SCALE_TYPES)}, got {s.name}")
    return s
