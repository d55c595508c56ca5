"""The graph-safe `moe_align_block_size` equals the reference construction exactly."""

from __future__ import annotations

import re

import pytest
import torch

from humming_cute.moe_align import moe_align_block_size
from humming_cute.quant.reference import moe_align_block_size_reference


@pytest.mark.parametrize("tokens,top_k,experts,block_m", [(1, 1, 8, 16), (7, 2, 8, 16), (64, 8, 128, 16),
                                                          (1000, 8, 64, 64), (33, 2, 8, 1), (5, 4, 3, 128),
                                                          (512, 8, 128, 48)])
@pytest.mark.parametrize("routing", ["uniform", "skewed"])
def test_matches_reference(tokens, top_k, experts, block_m, routing):
    g = torch.Generator().manual_seed(tokens * 31 + experts)
    if routing == "uniform":
        ids = torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(tokens)])
    else:  # most tokens go to a few experts; many experts get none
        hot = torch.randint(0, min(3, experts), (tokens, top_k), generator=g)
        ids = torch.where(torch.rand(tokens, top_k, generator=g) < 0.9, hot,
                          torch.randint(0, experts, (tokens, top_k), generator=g))
    ids = ids.to(torch.int32)
    emap = torch.arange(experts, dtype=torch.int32)
    emap[::3] = -1
    for m in (None, emap):
        got = moe_align_block_size(ids, block_m, experts, m)
        want = moe_align_block_size_reference(ids, block_m, experts, m)
        for a, b, name in zip(got, want, ("sorted_token_ids", "expert_ids", "num_tokens_post_padded")):
            assert a.dtype == torch.int32 and torch.equal(a, b), name


def test_shapes_do_not_depend_on_the_routing():
    a = moe_align_block_size(torch.zeros(9, 2, dtype=torch.int32), 16, 8)
    b = moe_align_block_size(torch.arange(18, dtype=torch.int32).reshape(9, 2) % 8, 16, 8)
    assert [t.shape for t in a] == [t.shape for t in b]


def test_errors():
    with pytest.raises(ValueError, match="integer tensor"):
        moe_align_block_size(torch.zeros(4, 2), 16, 8)
    with pytest.raises(ValueError, match="block_m"):
        moe_align_block_size(torch.zeros(4, 2, dtype=torch.int32), 0, 8)
    with pytest.raises(ValueError, match="expert_map"):
        moe_align_block_size(torch.zeros(4, 2, dtype=torch.int32), 16, 8, torch.arange(7))


# ---- the single-CTA alignment kernel (kernels/moe_align.py) ------------------------------------------------------

def _routing(tokens, top_k, experts, seed, invalid=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(tokens)]).to(torch.int32)
    if invalid and ids.numel():   # ids outside [0, E) are dropped by every implementation
        flat = ids.view(-1)
        flat[::5] = -1
        flat[1::7] = experts
    return ids


def _emulate_kernel(ids, block_m, experts, threads, emap=None):
    """The kernel's five steps in plain Python, writing each output element through `put`, which refuses a second
    write; afterwards every element must have been written once (the kernel's outputs start as torch.empty)."""
    flat = ids.reshape(-1).tolist()
    numel = len(flat)
    max_padded = numel + experts * (block_m - 1)
    n_blocks = -(-max_padded // block_m)
    out = {"sorted": [None] * max_padded, "expert": [None] * n_blocks}

    def put(name, i, v):
        assert out[name][i] is None, f"{name}[{i}] written twice"
        out[name][i] = v

    chunk = -(-numel // threads)
    bounds = [(min(t * chunk, numel), min(t * chunk + chunk, numel)) for t in range(threads)]
    cnt = [[0] * experts for _ in range(threads + 1)]
    for t, (lo, hi) in enumerate(bounds):                       # 1. counts per thread row
        for i in range(lo, hi):
            if 0 <= flat[i] < experts:
                cnt[t + 1][flat[i]] += 1
    for e in range(experts):                                     # 2. exclusive prefix over rows
        s = 0
        for r in range(1, threads + 1):
            cnt[r][e], s = s, s + cnt[r][e]
        cnt[0][e] = s
    starts = [0] * (experts + 1)                                 # 3. padded starts
    for e in range(experts):
        starts[e + 1] = starts[e] + -(-cnt[0][e] // block_m) * block_m
    total = starts[experts]
    val = (lambda e: int(emap[e])) if emap is not None else (lambda e: e)
    for e in range(experts):                                     # 4. block experts, padding
        for b in range(starts[e] // block_m, starts[e + 1] // block_m):
            put("expert", b, val(e))
        for p in range(starts[e] + cnt[0][e], starts[e + 1]):
            put("sorted", p, numel)
    for b in range(total // block_m, n_blocks):
        put("expert", b, val(0))
    for p in range(total, max_padded):
        put("sorted", p, numel)
    for t, (lo, hi) in enumerate(bounds):                        # 5. stable scatter
        for i in range(lo, hi):
            e = flat[i]
            if 0 <= e < experts:
                put("sorted", starts[e] + cnt[t + 1][e], i)
                cnt[t + 1][e] += 1
    assert None not in out["sorted"] and None not in out["expert"], "an output element was never written"
    return (torch.tensor(out["sorted"], dtype=torch.int32), torch.tensor(out["expert"], dtype=torch.int32),
            torch.tensor([total], dtype=torch.int32))


@pytest.mark.parametrize("tokens,top_k,experts,block_m,threads", [
    (1, 1, 8, 16, 64), (7, 2, 8, 16, 32), (64, 8, 128, 16, 64), (1000, 8, 64, 64, 256), (33, 2, 8, 1, 64),
    (5, 4, 3, 128, 32), (3, 2, 256, 32, 128)])
@pytest.mark.parametrize("invalid", [False, True])
def test_kernel_algorithm(tokens, top_k, experts, block_m, threads, invalid):
    """The kernel's algorithm (per-thread chunks, prefix over thread rows, stable scatter) gives the reference
    layout and writes every output element exactly once - including chunks that are empty or cut short. This
    checks the algorithm, not its DSL translation (the GPU test does that)."""
    ids = _routing(tokens, top_k, experts, tokens + experts, invalid)
    emap = torch.arange(experts, dtype=torch.int32)
    emap[1::3] = -1
    for m in (None, emap):
        got = _emulate_kernel(ids, block_m, experts, threads, m)
        want = moe_align_block_size_reference(ids, block_m, experts, m) if not invalid else \
            moe_align_block_size(ids, block_m, experts, m, impl="torch")
        for a, b, name in zip(got, want, ("sorted_token_ids", "expert_ids", "num_tokens_post_padded")):
            assert torch.equal(a, b), name


def test_kernel_impl_choice():

    ids = torch.zeros(4, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match="impl must be"):
        moe_align_block_size(ids, 16, 8, impl="cuda")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        moe_align_block_size(ids, 16, 8, impl="kernel")
    # auto on a CPU tensor takes the torch ops
    got = moe_align_block_size(ids, 16, 8)
    assert torch.equal(got[0], moe_align_block_size_reference(ids, 16, 8)[0])


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_120a"])
def test_kernel_threads_fit_shared_memory(arch):
    from humming_cute.arch import get_arch
    from humming_cute.moe_align import align_smem_words, kernel_threads

    limit = get_arch(arch).smem_per_block_bytes
    for experts in (1, 8, 64, 128, 256, 384):
        for numel in (1, 64, 4096, 4097, 1 << 17):
            t = kernel_threads(numel, experts, arch)
            assert t is not None and align_smem_words(experts, t) * 4 <= limit
            assert t <= 64 or numel > 4096
    assert kernel_threads(16, 1 << 12, arch) is None      # 32 count rows of 4096 experts: the torch path


@pytest.mark.parametrize("experts,block_m,threads,has_map,arch,unroll", [
    (8, 16, 64, False, "sm_80", 8), (128, 64, 256, True, "sm_90a", 8), (256, 128, 128, False, "sm_90a", 16),
    (64, 1, 32, True, "sm_120a", 8), (128, 48, 256, False, "sm_90a", 8)])
def test_kernel_compiles(experts, block_m, threads, has_map, arch, unroll):
    """The alignment kernel compiles for each arch without spills: one CTA, barriers between its steps."""
    from humming_cute.kernels.moe_align import MoeAlignKernel, fake_operands
    from humming_cute.moe_align import MoeAlignConfig
    from humming_cute.testing.ptx import compile_for_arch

    cfg = MoeAlignConfig(experts, block_m, threads, has_map, arch, unroll)
    art = compile_for_arch(MoeAlignKernel(cfg), *fake_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    assert art.ptxas and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert art.ptx.count("bar.sync") >= 4
    with pytest.raises(ValueError, match="threads"):
        MoeAlignConfig(experts, block_m, 48, has_map, arch)
    with pytest.raises(ValueError, match="unroll"):
        MoeAlignConfig(experts, block_m, threads, has_map, arch, 65)


@pytest.mark.parametrize("experts,block_m,has_map,arch", [(128, 64, False, "sm_90a"), (8, 128, True, "sm_80"),
                                                       (512, 16, True, "sm_90a"), (3, 1, False, "sm_120a"),
                                                       (128, 48, False, "sm_90a")])
def test_multi_cta_kernels_compile(experts, block_m, has_map, arch):
    """The multi-CTA pair (many routed ids): two kernels in one compiled call, warp-wide match.any grouping and a
    shuffle scan, no atomics (deterministic), no spills, for each arch."""
    from humming_cute.kernels.moe_align import MoeAlignMultiKernel, fake_multi_operands
    from humming_cute.moe_align import MoeAlignConfig, multi_smem_words
    from humming_cute.testing.ptx import compile_for_arch

    cfg = MoeAlignConfig(experts, block_m, 256, has_map, arch, multi=True)
    art = compile_for_arch(MoeAlignMultiKernel(cfg), *fake_multi_operands(cfg), arch=arch, options="--enable-tvm-ffi")
    assert len(art.ptxas) == 2 and sum(r.spill_bytes for r in art.ptxas.values()) == 0
    assert art.ptx.count(".entry") == 2 and "match.any.sync" in art.ptx and "shfl.sync.up" in art.ptx
    assert not re.search(r"\b(atom|red)\.", art.ptx), "the multi-CTA pair uses no atomics"
    assert multi_smem_words(experts, 256) == 8 * experts + 3 * experts + 1


def test_multi_cta_takes_over_above_4096_ids():
    """The multi-CTA pair takes over above 4096 routed ids; its grid is about 1024 ids per CTA, at most 64 CTAs."""
    from humming_cute import moe_align

    assert moe_align.use_multi(32768) and moe_align.use_multi(4097) and not moe_align.use_multi(4096)
    assert [moe_align.multi_ctas(n) for n in (4097, 32768, 1 << 20)] == [5, 32, 64]
