"""Multi-GPU: kernels on a non-default device, and tensor-parallel HummingLayers across two GPUs with
torch.distributed (NCCL, NVLink multicast off). Marked `multigpu`: skipped with fewer than 2 GPUs.

Run on a 2-GPU machine: `pytest -m multigpu tests/test_multigpu.py`."""

from __future__ import annotations

import os

import pytest
import torch

import humming_cute as hc
from humming_cute.quant.reference import reference_gemm

pytestmark = pytest.mark.multigpu

TOL = 2e-3


def _layer(n, k, device, group=128, bias=False):
    return hc.HummingLayer(n, k, hc.dtypes.float16, hc.dtypes.uint4, hc.dtypes.float16, hc.dtypes.float16, group,
                           has_bias=bias).to(device)


def _rel(y, ref):
    return ((y.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("m", [1, 300])     # decode (mma.sync) and prefill (wgmma on sm_90) kernels
def test_layer_on_non_current_device(m):
    """A layer on cuda:1 compiles and launches there while cuda:0 is current; two layers on two devices used
    alternately stay correct (per-device kernels, dummies, split-K counters)."""
    torch.manual_seed(0)
    torch.cuda.set_device(0)
    layers, xs = [], []
    for d in (0, 1):
        lay = _layer(512, 1024, f"cuda:{d}")
        lay.load_weight(torch.randn(512, 1024, device=f"cuda:{d}"))
        lay.finish_load()
        layers.append(lay)
        xs.append(torch.randn(m, 1024, device=f"cuda:{d}", dtype=torch.float16))
    for _ in range(3):
        for lay, x in zip(layers, xs):
            assert torch.cuda.current_device() == 0
            y = lay(x)
            assert y.device == x.device
            ref = reference_gemm(x, lay.quantized_weight(), out_dtype=torch.float32)
            assert _rel(y, ref) < TOL
    # split-K workspaces/counters are per device: the same explicit split-K config on both devices
    for lay, x in zip(layers, xs):
        y = lay(x, block_shape=(16, 64, 64), warp_shape=(16, 64, 64), split_k=4)
        assert _rel(y, reference_gemm(x, lay.quantized_weight(), out_dtype=torch.float32)) < TOL


def _tp_worker(rank: int, world: int, port: int, q) -> None:
    """One process per GPU: column- and row-parallel layers from slices of one float weight."""
    import torch.distributed as dist

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        dev = torch.device("cuda", rank)
        g = torch.Generator().manual_seed(1)
        # column parallel: N = 1000 split in 500-row slices (not multiples of 64: padded at load)
        n, k, m = 1000, 1024, 37
        w = torch.randn(n, k, generator=g)
        x = torch.randn(m, k, generator=g).to(dev, torch.float16)
        rows = n // world
        col = _layer(rows, k, dev)
        col.load_weight(w[rank * rows:(rank + 1) * rows].to(dev))
        col.finish_load()
        part = col(x)
        parts = [torch.empty_like(part) for _ in range(world)]
        dist.all_gather(parts, part)
        full = _layer(n, k, dev)
        full.load_weight(w.to(dev))
        full.finish_load()
        ref = reference_gemm(x, full.quantized_weight(), out_dtype=torch.float32)
        col_err = _rel(torch.cat(parts, dim=1), ref)
        # row parallel: K = 1088 split in 544-column slices (not multiples of 64), group 32 aligned to the cut
        n2, k2 = 768, 1088
        w2 = torch.randn(n2, k2, generator=g)
        x2 = torch.randn(m, k2, generator=g).to(dev, torch.float16)
        cols = k2 // world
        row = _layer(n2, cols, dev, group=32)
        row.load_weight(w2[:, rank * cols:(rank + 1) * cols].to(dev))
        row.finish_load()
        y = row(x2[:, rank * cols:(rank + 1) * cols].contiguous()).float()
        dist.all_reduce(y)
        full2 = _layer(n2, k2, dev, group=32)
        full2.load_weight(w2.to(dev))
        full2.finish_load()
        ref2 = reference_gemm(x2, full2.quantized_weight(), out_dtype=torch.float32)
        q.put((rank, col_err, _rel(y, ref2)))
    finally:
        dist.destroy_process_group()


def test_tensor_parallel_layers_match_unsharded():
    import socket

    import torch.multiprocessing as mp

    world = 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    procs = [ctx.Process(target=_tp_worker, args=(r, world, port, q)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    results = sorted(q.get() for _ in range(world))
    for rank, col_err, row_err in results:
        assert col_err < TOL, f"rank {rank}: column-parallel relative error {col_err:.3e}"
        # two fp16 partial outputs are summed: one more fp16 rounding than the unsharded layer
        assert row_err < 2 * TOL, f"rank {rank}: row-parallel relative error {row_err:.3e}"
