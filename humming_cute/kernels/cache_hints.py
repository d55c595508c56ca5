"""L2 cache policies for the weight loads (`GemmConfig.evict_first`): a 64-bit policy made by `createpolicy`
(sm_80+), given to the TMA loads as their cache hint and to cp.async through its `.L2::cache_hint` form, which
the DSL's cp.async atom does not expose."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute

__all__ = ["evict_first_policy", "cp_async_16b_hinted"]


@cute.jit
def evict_first_policy():
    """-> Int64: an L2 policy under which every line the access brings in is evicted first."""
    return cute.arch.inline_ptx("createpolicy.fractional.L2::evict_first.b64 {$w0}, 1.0;",
                                write_only_types=[cutlass.Int64], read_only_args=[])


@cute.jit
def cp_async_16b_hinted(src: cute.Tensor, dst: cute.Tensor, policy):
    """The copy `cute.copy(cp.async 128-bit atom, src, dst)` makes, with `policy` as each copy's L2 cache hint.
    `src` / `dst` are one thread's partition of a 128-bit tiled copy: (vector, rest...) with whole 16-byte
    vectors in mode 0 (global source, shared destination)."""
    assert cute.size(src, mode=[0]) * src.element_type.width == 128, "mode 0 must be one 16-byte vector"
    n = cute.size(src) // cute.size(src, mode=[0])
    vs = cute.group_modes(src, 1, cute.rank(src))
    vd = cute.group_modes(dst, 1, cute.rank(dst))
    for i in cutlass.range_constexpr(n):
        cute.arch.inline_ptx("cp.async.cg.shared.global.L2::cache_hint [{$r0}], [{$r1}], 16, {$r2};",
                             read_only_args=[vd[None, i].iterator.toint(), vs[None, i].iterator.toint(), policy])
