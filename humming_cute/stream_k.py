"""Stream-K work split (`GemmConfig.stream_k`), host side: the integer arithmetic the wgmma kernel follows, in
plain Python for the launch (grid, workspace size) and the tests.

The problem's units are its (output tile, k-tile) pairs in tile-major order, U = tiles * k_tiles. CTA c of a grid
of C takes units [c U // C, (c + 1) U // C): whole tiles, plus at either end part of a tile that its neighbours
share. A shared tile's parts are stored in workspace slots (CTA c: its first tile in slot 2c, its last in 2c + 1)
and added in CTA order by the last part to finish, which also runs the epilogue.
"""

from __future__ import annotations

__all__ = ["stream_k_ctas", "cta_units", "tile_parts", "cta_work", "workspace_rows"]

#: the kernel's unit arithmetic is 32-bit: (units + 1) * ctas must stay below 2^31
MAX_UNIT_PRODUCT = 1 << 31


def stream_k_ctas(tiles: int, k_tiles: int, persistent_ctas: int) -> int:
    """The grid: `persistent_ctas`, but never more CTAs than units (every CTA takes at least one k-tile)."""
    units = tiles * k_tiles
    if (units + 1) * persistent_ctas >= MAX_UNIT_PRODUCT:
        raise ValueError(f"stream_k: {units} (tile, k-tile) units on {persistent_ctas} CTAs overflow the kernel's "
                         f"32-bit unit arithmetic; use larger tiles or stream_k=False")
    return max(1, min(persistent_ctas, units))


def cta_units(c: int, units: int, ctas: int) -> tuple[int, int]:
    """[first, end) units of CTA c."""
    return c * units // ctas, (c + 1) * units // ctas


def cta_of_unit(u: int, units: int, ctas: int) -> int:
    """The CTA whose range holds unit u: the largest c with c U // C <= u."""
    return ((u + 1) * ctas - 1) // units


def tile_parts(tile: int, k_tiles: int, units: int, ctas: int) -> tuple[int, int]:
    """(first CTA, number of CTAs) that work on output tile `tile`."""
    first = cta_of_unit(tile * k_tiles, units, ctas)
    last = cta_of_unit((tile + 1) * k_tiles - 1, units, ctas)
    return first, last - first + 1


def cta_work(c: int, tiles: int, k_tiles: int, ctas: int) -> list[tuple[int, int, int, int]]:
    """CTA c's work in order: (tile, first k-tile, end k-tile, workspace slot or -1 for a whole tile)."""
    units = tiles * k_tiles
    u0, u1 = cta_units(c, units, ctas)
    out = []
    for tile in range(u0 // k_tiles, (u1 - 1) // k_tiles + 1):
        k0 = max(u0 - tile * k_tiles, 0)
        k1 = min(u1 - tile * k_tiles, k_tiles)
        whole = k0 == 0 and k1 == k_tiles
        out.append((tile, k0, k1, -1 if whole else 2 * c + (0 if tile == u0 // k_tiles else 1)))
    return out


def workspace_rows(ctas: int, block_m: int) -> int:
    """Rows of the fp32 partial workspace [rows, block_n]: two tile slots per CTA."""
    return 2 * ctas * block_m
