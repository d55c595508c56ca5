"""Epilogue activations written once, evaluated by torch (references, CPU) and by the CuTe DSL (kernels).

The math helpers here dispatch on their argument: a torch tensor or a Python number goes to torch / `math`, a
DSL value (a `cutlass` number inside a kernel) goes to `cutlass.cute.math`. A custom activation written with them
(and plain arithmetic) therefore runs in the fused epilogue *and* in the reference that tests it:

    import humming_cute as hc
    from humming_cute import activations as act

    def mish(x):
        return x * act.tanh(act.log1p(act.exp(x)))

    y = layer(x, activation=mish)                       # traced into the kernel, fp32
    def swiglu_clamped(gate, up):                       # GLU style: f(gate, up), on interleaved columns
        return act.silu(act.minimum(gate, 7.0)) * up
    y = layer(x, activation=swiglu_clamped, glu=True)

Data-dependent Python control flow (`if x > 0:`) cannot be traced: use `maximum`, `minimum`, `where`.
"""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["exp", "log", "log1p", "tanh", "erf", "sqrt", "sigmoid", "maximum", "minimum", "where",
           "relu", "silu", "gelu", "gelu_tanh", "quick_gelu", "BUILTIN", "resolve"]


def _is_torch(x) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _cm():
    import cutlass.cute as cute

    return cute.math


def _dispatch(name: str, x):
    if _is_torch(x):
        import torch

        return getattr(torch, name)(x)
    if isinstance(x, (int, float)):
        return getattr(math, name)(x)
    return getattr(_cm(), name)(x)


def exp(x):
    return _dispatch("exp", x)


def log(x):
    return _dispatch("log", x)


def log1p(x):
    return _dispatch("log1p", x)


def tanh(x):
    return _dispatch("tanh", x)


def erf(x):
    return _dispatch("erf", x)


def sqrt(x):
    return _dispatch("sqrt", x)


def sigmoid(x):
    return 1.0 / (1.0 + exp(-x))


def maximum(x, y):
    if _is_torch(x) or _is_torch(y):
        import torch

        return torch.maximum(torch.as_tensor(x), torch.as_tensor(y)) if not isinstance(y, (int, float)) \
            else torch.clamp_min(x, y)
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return max(x, y)
    import cutlass

    return cutlass.max(x, y)


def minimum(x, y):
    if _is_torch(x) or _is_torch(y):
        import torch

        return torch.minimum(torch.as_tensor(x), torch.as_tensor(y)) if not isinstance(y, (int, float)) \
            else torch.clamp_max(x, y)
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return min(x, y)
    import cutlass

    return cutlass.min(x, y)


def where(cond, a, b):
    """Elementwise select (torch.where / a DSL select)."""
    if _is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    if isinstance(cond, bool):
        return a if cond else b
    import cutlass

    return cutlass.select_(cond, a, b)


# ---- the built-in activations (the same formulas as quant/reference.py, in fp32)
def relu(x):
    return maximum(x, 0.0)


def silu(x):
    return x * sigmoid(x)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x * 0.7071067811865476))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def quick_gelu(x):
    return x * sigmoid(1.702 * x)


def _identity(x):
    return x


BUILTIN: dict[str, Callable] = {"none": _identity, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "gelu": gelu,
                                "gelu_tanh": gelu_tanh, "quick_gelu": quick_gelu, "silu": silu}


def resolve(activation, glu: bool = False) -> tuple[str, Callable | None, bool]:
    """Normalise an activation argument to (name, function, glu).

    A name may end in `_glu` (e.g. `silu_glu`: silu(gate) * up on interleaved gate/up columns). A callable
    takes one argument, or two (gate, up) with `glu=True`."""
    import inspect

    if activation is None:
        if glu:
            raise ValueError("glu=True needs an activation (e.g. 'silu' or a function f(gate, up))")
        return "none", None, False
    if isinstance(activation, str):
        name = activation.strip().lower()
        if name.endswith("_glu"):
            name, glu = name[:-4], True
        if name not in BUILTIN:
            known = ", ".join(sorted(BUILTIN) + [f"{n}_glu" for n in sorted(BUILTIN) if n != "none"])
            raise ValueError(f"unknown activation {activation!r}; known: {known}, or a Python function")
        if name == "none" and glu:
            raise ValueError("'none_glu' is not an activation")
        return name + ("_glu" if glu else ""), None, glu
    if callable(activation):
        try:
            params = [p for p in inspect.signature(activation).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        except (TypeError, ValueError):
            params = None
        want = 2 if glu else 1
        if params is not None and len(params) != want:
            qual = getattr(activation, "__qualname__", repr(activation))
            raise TypeError(f"custom activation {qual} takes {len(params)} required argument(s); it must take "
                            f"{want} ({'gate, up' if glu else 'x'}{' with glu=True' if glu else ''})")
        return "custom", activation, glu
    raise TypeError(f"activation must be None, a name or a callable, got {type(activation).__name__}")


def describe(fn: Callable) -> str:
    """`qualname (file:line)` of a user function, for error messages."""
    import inspect

    qual = getattr(fn, "__qualname__", repr(fn))
    try:
        src = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
        return f"{qual} ({src}:{line})"
    except (TypeError, OSError):
        return qual
