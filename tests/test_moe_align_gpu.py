"""GPU tests of the single-CTA `moe_align_block_size` kernel against the torch ops and the reference (marked `gpu`)."""

from __future__ import annotations

import pytest
import torch

from humming_cute.moe_align import kernel_threads, moe_align_block_size
from humming_cute.quant.reference import moe_align_block_size_reference

pytestmark = pytest.mark.gpu

NAMES = ("sorted_token_ids", "expert_ids", "num_tokens_post_padded")


def _poison_allocator():
    """Leave -7 in the caching allocator's free blocks, so outputs the kernel never writes show up."""
    junk = torch.full((1 << 22,), -7, dtype=torch.int32, device="cuda")
    del junk


def _ids(tokens, top_k, experts, seed, kind):
    g = torch.Generator().manual_seed(seed)
    if kind == "skewed":
        hot = torch.randint(0, min(3, experts), (tokens, top_k), generator=g)
        ids = torch.where(torch.rand(tokens, top_k, generator=g) < 0.9, hot,
                          torch.randint(0, experts, (tokens, top_k), generator=g))
    else:
        ids = torch.rand(tokens, experts, generator=g).argsort(dim=1)[:, :top_k]
    ids = ids.to(torch.int32)
    if kind == "invalid" and ids.numel():
        ids.view(-1)[::5] = -1
        ids.view(-1)[1::7] = experts
    return ids


_SIZES = [(1, 1, 8), (1, 8, 128), (7, 2, 8), (64, 8, 64), (300, 2, 8), (1000, 8, 128), (4096, 8, 128),
          (8192, 8, 256), (3, 4, 3)]


@pytest.mark.parametrize("tokens,top_k,experts,multi", [s + (False,) for s in _SIZES]
                         + [s + (True,) for s in _SIZES if s[0] * s[1] > 4096]
                         + [(4097, 1, 8, True), (20000, 8, 512, True), (131072, 8, 128, True)])
@pytest.mark.parametrize("block_m", [1, 16, 48, 64, 128])
@pytest.mark.parametrize("kind", ["uniform", "skewed", "invalid"])
def test_kernel_matches_torch_and_reference(tokens, top_k, experts, multi, block_m, kind, monkeypatch):
    """`multi`: above 4096 routed ids the multi-CTA kernel pair (the default there), else one CTA at any size
    (`moe_align.MULTI_CTA = False`); up to 4096 ids one CTA either way."""
    from humming_cute import moe_align
    from humming_cute.moe_align import use_multi

    monkeypatch.setattr(moe_align, "MULTI_CTA", multi)
    assert use_multi(tokens * top_k) == multi
    ids = _ids(tokens, top_k, experts, tokens * 7 + experts + block_m, kind).cuda()
    emap = torch.arange(experts, dtype=torch.int32, device="cuda")
    emap[::3] = -1
    for m in (None, emap):
        _poison_allocator()
        got = moe_align_block_size(ids, block_m, experts, m, impl="kernel")
        want = moe_align_block_size(ids, block_m, experts, m, impl="torch")
        for a, b, name in zip(got, want, NAMES):
            assert a.dtype == torch.int32 and a.device == ids.device and torch.equal(a, b), \
                f"{name} (threads {kernel_threads(ids.numel(), experts, 'sm_90a')})"
        if kind != "invalid":
            ref = moe_align_block_size_reference(ids.cpu(), block_m, experts, None if m is None else m.cpu())
            for a, b, name in zip(got, ref, NAMES):
                assert torch.equal(a.cpu(), b), name


def test_kernel_takes_int64_and_strided_ids():
    ids = _ids(50, 4, 16, 3, "uniform").cuda()
    want = moe_align_block_size(ids, 16, 16, impl="torch")
    wide = torch.zeros(50, 8, dtype=torch.int64, device="cuda")
    wide[:, ::2] = ids.long()
    for variant in (ids.long(), wide[:, ::2]):
        got = moe_align_block_size(variant, 16, 16, impl="kernel")
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("experts,top_k,tokens,block_m,multi", [(64, 8, 40, 16, False), (128, 8, 4096, 64, True)])
def test_kernel_in_a_cuda_graph_replays_for_any_routing(experts, top_k, tokens, block_m, multi):
    """Captured once, replayed for new routings (the multi-CTA pair rewrites its per-CTA counts every call)."""
    from humming_cute.moe_align import use_multi

    assert use_multi(tokens * top_k) == multi
    ids = torch.zeros(tokens, top_k, dtype=torch.int32, device="cuda")
    moe_align_block_size(ids, block_m, experts, impl="kernel")      # compile outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        outs = moe_align_block_size(ids, block_m, experts, impl="kernel")
    for trial in range(4):
        ids.copy_(_ids(tokens, top_k, experts, 100 + trial, "skewed" if trial % 2 else "uniform").cuda())
        g.replay()
        torch.cuda.synchronize()
        want = moe_align_block_size_reference(ids.cpu(), block_m, experts)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(outs, want)), f"replay {trial}"
