"""The config check's shared-memory estimate (`config.smem_bytes`) against what the compiled kernels really ask
for at launch (the dynamic shared-memory size in the host IR), for the default configs of typical problems and the
options that change the shared-memory plan, on both mainloops: never below it (a config that passes the check must
launch) and at most 1 KiB above it. CPU only: the kernels are compiled, not run."""

from __future__ import annotations

import pytest

from humming_cute.config import smem_bytes
from humming_cute.runtime.compile import compile_kernel
from humming_cute.testing.ptx import launch_smem_bytes
from humming_cute.tune.heuristics import default_config, default_moe_config

H = dict(a_dtype="float16", c_dtype="float16")


def _dense(m, n, k, b, g, arch="sm_90a", **kw):
    return default_config(m, n, k, **{**H, **kw}, b_dtype=b, group_size=g, arch=arch)


CASES = {
    # mma.sync mainloop
    "decode 1024-deep": lambda: _dense(1, 8192, 8192, "uint4", 128),
    "decode cluster split-K": lambda: _dense(16, 4096, 4096, "uint4", 128),
    "decode int8 channel": lambda: _dense(1, 8192, 8192, "int8", 0),
    "decode fold rows8 a_rows8 int4 g32": lambda: _dense(1, 8192, 8192, "int4", 32).with_(
        fold_offsets=True, rows8=True, a_rows8=True, swap_ab=False, stages=4),
    "decode int4 g32 without zero points": lambda: _dense(1, 8192, 8192, "int4", 32),
    "fp8 activations": lambda: _dense(16, 4096, 4096, "int4", 0, a_dtype="float8e4m3"),
    "int4 activations": lambda: _dense(64, 4096, 4096, "int4", 0, a_dtype="int4"),
    "sm_80 uint4 zero points g32": lambda: _dense(256, 4096, 4096, "uint4", 32, arch="sm_80"),
    "sm_120 uint4 channel": lambda: _dense(256, 28672, 4096, "uint4", 0, arch="sm_120a"),
    "sm_80 uint3 g64 bias": lambda: _dense(64, 4096, 4096, "uint3", 64, arch="sm_80", has_bias=True),
    "MoE mma.sync decode": lambda: default_moe_config(16, 1536, 2048, **H, b_dtype="uint4", group_size=128,
                                                      arch="sm_90a", top_k=8),
    # wgmma mainloop
    "wgmma 256 x 128 tiles": lambda: _dense(8192, 8192, 8192, "uint4", 128),
    "wgmma producer warpgroup": lambda: _dense(256, 8192, 8192, "uint4", 128),
    "wgmma cluster split-K": lambda: _dense(64, 8192, 8192, "uint4", 128),
    "wgmma GLU staged": lambda: _dense(256, 8192, 8192, "uint4", 128, glu=True),
    "wgmma int8 channel": lambda: _dense(4096, 8192, 8192, "int8", 0),
    "wgmma fp8 activations": lambda: _dense(4096, 8192, 8192, "int4", 0, a_dtype="float8e4m3"),
    "wgmma persistent stream-K": lambda: _dense(256, 8192, 8192, "uint4", 128).with_(
        persistent_ctas=132, stream_k=True, staged_store=False),
    "wgmma staged store in the ring": lambda: _dense(1024, 4096, 4096, "uint4", 128),
    "wgmma staged store, multicast": lambda: _dense(8192, 8192, 8192, "uint4", 128).with_(
        staged_store=True, cluster_n=2),
    "wgmma two atoms per warpgroup, staged": lambda: _dense(4096, 8192, 8192, "uint4", 128).with_(
        staged_store=True, stages=4),
    "wgmma MoE two atoms, producer, rows": lambda: default_moe_config(
        48, 1536, 2048, **H, b_dtype="uint4", group_size=128, arch="sm_90a", top_k=8, num_tokens=512,
        num_experts=128).with_(block_n=256, warp_n=128, block_k=64, warp_k=64, stages=6),
    "wgmma MoE": lambda: default_moe_config(64, 1536, 2048, **H, b_dtype="uint4", group_size=128, arch="sm_90a",
                                            top_k=8, num_tokens=512, num_experts=128),
}


@pytest.mark.parametrize("name", list(CASES))
def test_smem_estimate_covers_the_launch(name):
    cfg = CASES[name]().validate()
    need = launch_smem_bytes(str(compile_kernel(cfg).ir_module))
    assert len(need) == 1
    est = smem_bytes(cfg)
    assert need[0] <= est <= need[0] + 1024, f"{name}: estimate {est}, kernel launches with {need[0]} ({cfg})"


def test_launch_smem_bytes_fails_loudly_without_a_launch():
    with pytest.raises(ValueError, match="no kernel launch"):
        launch_smem_bytes("llvm.func @f() {\n  llvm.return\n}")
