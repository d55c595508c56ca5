"""The kernel layout of a packed weight (the offline repack), and its exact inverse. Pure torch.

The weight is cut into 64 (n) x 64 (k) *atoms*. An atom is what one warp consumes for four m16n8k16 MMA steps
over eight n8 tiles. Inside an atom every thread's B-fragment values are stored together, so that a thread
reads them from shared memory with 128-bit loads and no bank conflicts:

    for each plane of width w (see `dequant_plan.plane_widths`):   128*w int32 words
        word offset = (q // 4) * 128 + lane * 4 + q % 4       (q = the thread's word index, 0 .. 4w-1)

A thread (lane; g = lane // 4, t = lane % 4) needs, for k16 step `ss` (0..3) and n8 tile `j` (0..7), two
registers r = 0, 1 holding the pairs (k = 2t + 8r, k = 2t + 8r + 1) of column n = 8j + g. Pair p = 2j + r of
step ss lives in word q = ss*w + p // (16/w) at slot s = p % (16/w): its two codes in bits [s*w, s*w+w) and
[16 + s*w, 16 + s*w + w).

The same words and slots serve the 8-bit (m16n8k32) and 4-bit (m16n8k64) MMAs: only the (n, k) a pair slot
holds changes (`pair_coords`, `pack_weight(..., mma_k=32 / 64)`), so that the pairs of one register are the
consecutive k values that MMA expects in one 32-bit fragment register.

Atoms are stored n-major: `packed[n // 64, (k // 64) * 128 * bits + ...]`, so one block tile reads one
contiguous run per 64 columns. Group scales and zero points are permuted inside every 64 columns so that a
thread reads the eight values of its columns 8j + g (j = 0..7) as one 16-byte vector.
"""

from __future__ import annotations

import functools

import torch

from .dequant_plan import plane_widths

__all__ = ["ATOM_N", "ATOM_K", "MMA_KS", "atom_words", "pack_weight", "unpack_weight", "pair_coords", "permute_n",
           "unpermute_n"]

ATOM_N = 64
ATOM_K = 64


def atom_words(bits: int) -> int:
    """int32 words in one 64x64 atom of `bits`-bit codes."""
    return ATOM_N * ATOM_K * bits // 32


MMA_KS = (16, 32, 64)


def pair_coords(mma_k: int, lane: int, ss: int, p: int) -> tuple[int, int]:
    """(n, k) inside a 64x64 atom of the first code of pair p (0..15) of step ss (0..3) of thread `lane`; the
    pair's second code sits at k + 1. The word/slot structure is the same for every MMA; only which (n, k) a
    pair slot holds depends on the MMA's K (16: fp16/bf16 m16n8k16; 32: 8-bit m16n8k32; 64: 4-bit m16n8k64):

      k16: pair (j, r) = (p // 2, p % 2) of k16 step ss: n = 8j + g, k = 16 ss + 2t + 8r
      k32: k32 step ss // 2, pair c = 2 (ss % 2) + r: k = 32 (ss // 2) + 4t + (0, 2, 16, 18)[c]
           (register b0 = pairs c = 0, 1 = k 4t..4t+3; b1 = pairs 2, 3 = k 16+4t..16+4t+3)
      k64: pair c = 2 ss + r: k = 8t + (0, 2, 4, 6, 32, 34, 36, 38)[c]
           (b0 = pairs 0..3 = k 8t..8t+7; b1 = pairs 4..7 = k 32+8t..32+8t+7)
    """
    g, t = lane // 4, lane % 4
    j, r = p // 2, p % 2
    n = 8 * j + g
    if mma_k == 16:
        return n, 16 * ss + 2 * t + 8 * r
    if mma_k == 32:
        return n, 32 * (ss // 2) + 4 * t + (0, 2, 16, 18)[2 * (ss % 2) + r]
    if mma_k == 64:
        return n, 8 * t + (0, 2, 4, 6, 32, 34, 36, 38)[2 * ss + r]
    raise ValueError(f"mma_k must be one of {MMA_KS}, got {mma_k}")


@functools.lru_cache(maxsize=None)
def _plane_index(w: int, mma_k: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """For a plane of width w: (flat n*64+k index [128w, 32/w], bit position [128w, 32/w]) of every value."""
    vals_per_half = 16 // w
    n_idx = torch.empty(128 * w, 32 // w, dtype=torch.long)
    bitpos = torch.empty(128 * w, 32 // w, dtype=torch.long)
    for lane in range(32):
        for ss in range(4):
            for p in range(16):
                q = ss * w + p // vals_per_half
                slot = p % vals_per_half
                off = (q // 4) * 128 + lane * 4 + q % 4
                n, k0 = pair_coords(mma_k, lane, ss, p)
                for h in range(2):
                    col = h * vals_per_half + slot
                    n_idx[off, col] = n * ATOM_K + k0 + h
                    bitpos[off, col] = h * 16 + slot * w
    return n_idx, bitpos


def _check_codes(codes: torch.Tensor, bits: int) -> None:
    if codes.dtype != torch.uint8:
        raise TypeError(f"codes must be torch.uint8 (one code per element), got {codes.dtype}")
    if codes.dim() < 2:
        raise ValueError(f"codes must be [N, K] or [E, N, K], got shape {tuple(codes.shape)}")
    n, k = codes.shape[-2:]
    if n % ATOM_N or k % ATOM_K:
        raise ValueError(f"codes must be padded to multiples of {ATOM_N} (N) and {ATOM_K} (K), got N={n}, K={k}")
    if bits < 8 and codes.numel() and int(codes.max()) >= (1 << bits):
        raise ValueError(f"a code is >= 2^{bits}; codes of a {bits}-bit type lie in [0, {(1 << bits) - 1}]")


def pack_weight(codes: torch.Tensor, bits: int, *, rows_per_chunk: int = 1024, mma_k: int = 16) -> torch.Tensor:
    """Repack codes [.., N, K] (uint8, N and K multiples of 64) into the kernel layout int32 [.., N/64, K/64*4*32*bits].

    `mma_k` names the MMA the layout feeds (16 for fp16/bf16 activations, 32 for 8-bit, 64 for 4-bit; see
    `pair_coords`). Works on `rows_per_chunk` rows of N at a time so that the int64 temporaries stay small."""
    _check_codes(codes, bits)
    if mma_k not in MMA_KS:
        raise ValueError(f"mma_k must be one of {MMA_KS}, got {mma_k}")
    n = codes.shape[-2]
    step = max(ATOM_N, rows_per_chunk // ATOM_N * ATOM_N)
    if n > step:
        return torch.cat([_pack_rows(codes[..., r:r + step, :], bits, mma_k) for r in range(0, n, step)], dim=-2)
    return _pack_rows(codes, bits, mma_k)


def _pack_rows(codes: torch.Tensor, bits: int, mma_k: int = 16) -> torch.Tensor:
    lead = codes.shape[:-2]
    n, k = codes.shape[-2:]
    na, ka = n // ATOM_N, k // ATOM_K
    atoms = codes.reshape(*lead, na, ATOM_N, ka, ATOM_K).transpose(-3, -2)  # [.., na, ka, 64, 64]
    atoms = atoms.reshape(*lead, na, ka, ATOM_N * ATOM_K).to(torch.int64)
    parts = []
    shift = 0
    for w in plane_widths(bits):
        n_idx, bitpos = _plane_index(w, mma_k)
        n_idx, bitpos = n_idx.to(codes.device), bitpos.to(codes.device)
        v = (atoms[..., n_idx] >> shift) & ((1 << w) - 1)  # [.., na, ka, 128w, 32/w]
        words = (v << bitpos).sum(-1)
        parts.append(words)
        shift += w
    packed = torch.cat(parts, -1)  # [.., na, ka, 128*bits]
    packed = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    return packed.reshape(*lead, na, ka * atom_words(bits)).contiguous()


def unpack_weight(packed: torch.Tensor, bits: int, *, mma_k: int = 16) -> torch.Tensor:
    """Exact inverse of `pack_weight` (same `mma_k`): int32 kernel layout -> uint8 codes [.., N, K]."""
    if mma_k not in MMA_KS:
        raise ValueError(f"mma_k must be one of {MMA_KS}, got {mma_k}")
    if packed.dtype != torch.int32:
        raise TypeError(f"packed weight must be torch.int32, got {packed.dtype}")
    aw = atom_words(bits)
    if packed.dim() < 2 or packed.shape[-1] % aw:
        raise ValueError(f"packed weight's last dim must be a multiple of {aw} for {bits}-bit codes, "
                         f"got shape {tuple(packed.shape)}")
    lead = packed.shape[:-2]
    na, ka = packed.shape[-2], packed.shape[-1] // aw
    words = packed.reshape(*lead, na, ka, aw).to(torch.int64) & 0xFFFFFFFF
    out = torch.zeros(*lead, na, ka, ATOM_N * ATOM_K, dtype=torch.int64, device=packed.device)
    shift, start = 0, 0
    for w in plane_widths(bits):
        n_idx, bitpos = _plane_index(w, mma_k)
        n_idx, bitpos = n_idx.to(packed.device), bitpos.to(packed.device)
        pw = words[..., start:start + 128 * w]  # [.., 128w]
        v = (pw.unsqueeze(-1) >> bitpos) & ((1 << w) - 1)  # [.., 128w, 32/w]
        idx = n_idx.expand(*v.shape).reshape(*lead, na, ka, -1)
        out.scatter_add_(-1, idx, (v << shift).reshape(*lead, na, ka, -1))
        shift += w
        start += 128 * w
    out = out.reshape(*lead, na, ka, ATOM_N, ATOM_K).transpose(-3, -2)
    return out.reshape(*lead, na * ATOM_N, ka * ATOM_K).to(torch.uint8)


def _perm(device) -> torch.Tensor:
    i = torch.arange(ATOM_N, device=device)
    # new position g*8 + j holds old column j*8 + g
    return (i % 8) * 8 + i // 8


def permute_n(x: torch.Tensor) -> torch.Tensor:
    """Permute the last dim (N, a multiple of 64) of group scales / zero points into the kernel's order."""
    n = x.shape[-1]
    if n % ATOM_N:
        raise ValueError(f"N must be a multiple of {ATOM_N}, got {n}")
    v = x.reshape(*x.shape[:-1], n // ATOM_N, ATOM_N)
    return v[..., _perm(x.device)].reshape(x.shape).contiguous()


def unpermute_n(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `permute_n`."""
    n = x.shape[-1]
    v = x.reshape(*x.shape[:-1], n // ATOM_N, ATOM_N)
    inv = torch.argsort(_perm(x.device))
    return v[..., inv].reshape(x.shape).contiguous()
