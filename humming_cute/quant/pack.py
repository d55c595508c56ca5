"""Plain bit packing of codes (the checkpoint form), and its inverse.

``pack(codes[..., K], bits)`` concatenates the `bits`-bit codes of the last dimension into a little-endian bit
stream, LSB first: code ``i`` occupies bits ``i*bits .. i*bits + bits - 1`` of the stream, and bit ``j`` of the
stream is bit ``j % 32`` of int32 word ``j // 32``. Codes of odd widths (3/5/6/7 bits) straddle word boundaries.
The result has ``ceil(K * bits / 32)`` int32 words per row (unused high bits of the last word are 0). This is
the GPTQ / AutoRound ``qweight`` packing along the packed dimension (4 and 8 bits: 8 or 4 codes per word, code 0
in the lowest bits).

Zero points are packed the same way along N (GPTQ ``qzeros`` style): ``[.., G, N] -> [.., G, ceil(N*bits/32)]``.
(``QuantizedWeight.zero_points`` is ``[.., N, G]``: transpose it first.)

Everything is vectorized torch on the input's device: the only Python loop is over the 32 code slots of a
32-code chunk (which always fills exactly `bits` words).
"""

from __future__ import annotations

import torch

__all__ = ["pack", "unpack", "pack_zero_points", "unpack_zero_points", "packed_size"]

_MASK32 = (1 << 32) - 1


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")
    return bits


def packed_size(k: int, bits: int) -> int:
    """Number of int32 words holding `k` codes of `bits` bits: ``ceil(k * bits / 32)``."""
    return -(-k * _check_bits(bits) // 32)


def _slots(bits: int):
    """For each code slot i of a 32-code chunk: (word, shift, straddles)."""
    out = []
    for i in range(32):
        word, shift = divmod(i * bits, 32)
        out.append((word, shift, shift + bits > 32))
    return out


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack `bits`-bit codes along the last dim: integer ``[..., K]`` -> int32 ``[..., ceil(K * bits / 32)]``."""
    bits = _check_bits(bits)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor (torch.uint8), got {codes.dtype}")
    if codes.dim() == 0:
        raise ValueError("codes must have at least one dimension (the packed one is the last)")
    k = codes.shape[-1]
    lead = codes.shape[:-1]
    if codes.numel():
        c = codes.to(torch.int64)
        lo_ok, hi_ok = bool((c >= 0).all()), bool((c < (1 << bits)).all())
        if not (lo_ok and hi_ok):
            bad = int(c.min()) if not lo_ok else int(c.max())
            raise ValueError(f"{bits}-bit codes must lie in [0, {(1 << bits) - 1}] (max {(1 << bits) - 1}), "
                             f"got {bad}")
    else:
        c = codes.to(torch.int64)
    nwords = packed_size(k, bits)
    chunks = -(-k // 32)
    if chunks * 32 != k:
        c = torch.nn.functional.pad(c, (0, chunks * 32 - k))
    c = c.reshape(*lead, chunks, 32)
    words = torch.zeros(*lead, chunks, bits, dtype=torch.int64, device=codes.device)
    for i, (wd, sh, straddle) in enumerate(_slots(bits)):
        v = c[..., i]
        words[..., wd] |= (v << sh) & _MASK32
        if straddle:
            words[..., wd + 1] |= v >> (32 - sh)
    words = words.reshape(*lead, chunks * bits)[..., :nwords]
    # reinterpret the unsigned 32-bit words as int32
    words = torch.where(words >= (1 << 31), words - (1 << 32), words)
    return words.to(torch.int32)


def unpack(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of :func:`pack`: int32 ``[..., ceil(k * bits / 32)]`` -> uint8 codes ``[..., k]``."""
    bits = _check_bits(bits)
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.int32:
        raise TypeError(f"packed must be a torch.int32 tensor, got {packed.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    if packed.dim() == 0:
        raise ValueError("packed must have at least one dimension (the packed one is the last)")
    nwords = packed_size(k, bits)
    if packed.shape[-1] != nwords:
        raise ValueError(f"{k} codes of {bits} bits take {nwords} int32 words, but packed has "
                         f"{packed.shape[-1]} in its last dimension")
    lead = packed.shape[:-1]
    chunks = -(-k // 32)
    w = packed.to(torch.int64) & _MASK32
    if chunks * bits != nwords:
        w = torch.nn.functional.pad(w, (0, chunks * bits - nwords))
    w = w.reshape(*lead, chunks, bits)
    mask = (1 << bits) - 1
    cols = []
    for wd, sh, straddle in _slots(bits):
        v = w[..., wd] >> sh
        if straddle:
            v = v | (w[..., wd + 1] << (32 - sh))
        cols.append(v & mask)
    codes = torch.stack(cols, dim=-1).reshape(*lead, chunks * 32)[..., :k]
    return codes.to(torch.uint8)


def pack_zero_points(zero_points: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer zero points ``[.., G, N]`` along N (GPTQ ``qzeros``): -> int32 ``[.., G, ceil(N*bits/32)]``."""
    if isinstance(zero_points, torch.Tensor) and zero_points.dim() < 2:
        raise ValueError(f"zero_points must be [.., G, N], got shape {tuple(zero_points.shape)}")
    return pack(zero_points, bits)


def unpack_zero_points(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_zero_points`: int32 ``[.., G, ceil(n*bits/32)]`` -> uint8 ``[.., G, n]``."""
    if isinstance(packed, torch.Tensor) and packed.dim() < 2:
        raise ValueError(f"packed zero points must be [.., G, words], got shape {tuple(packed.shape)}")
    return unpack(packed, bits, n)
