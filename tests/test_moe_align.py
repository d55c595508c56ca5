"""The graph-safe `moe_align_block_size` equals the reference construction exactly."""

from __future__ import annotations

import pytest
import torch

from humming_cute.moe_align import moe_align_block_size
from humming_cute.quant.reference import moe_align_block_size_reference


@pytest.mark.parametrize("tokens,top_k,experts,block_m", [(1, 1, 8, 16), (7, 2, 8, 16), (64, 8, 128, 16),
                                                          (1000, 8, 64, 64), (33, 2, 8, 1), (5, 4, 3, 128)])
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
