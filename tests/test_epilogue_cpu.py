"""Fused epilogue activations: one formula for torch and the DSL, validation, per-arch compilation, and readable
errors for custom functions the DSL cannot trace."""

from __future__ import annotations

import math

import pytest
import torch

from humming_cute import activations as act
from humming_cute.config import GemmConfig
from humming_cute.kernels.gemm_sm80 import Sm80MixedGemm
from humming_cute.quant.reference import apply_activation
from humming_cute.runtime.compile import compile_kernel, fake_operands
from humming_cute.testing.ptx import compile_for_arch

BUILTINS = ["relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "quick_gelu", "silu"]


def mish(x):
    return x * act.tanh(act.log1p(act.exp(x)))


def swiglu_clamped(gate, up):
    return act.silu(act.minimum(gate, 7.0)) * up


@pytest.mark.parametrize("name", BUILTINS)
def test_shared_formula_matches_the_reference(name):
    # torch's own CPU kernels (torch.sigmoid, exp) differ between CPUs / vector ISAs by up to ~5e-5 relative, so the
    # tolerance allows that much; a wrong formula is off by far more.
    torch.manual_seed(0)
    y = torch.randn(64, 96) * 4
    assert torch.allclose(act.BUILTIN[name](y), apply_activation(y, name), rtol=2e-4, atol=1e-5)
    g = apply_activation(y, name + "_glu")
    assert g.shape == (64, 48)
    assert torch.allclose(g, act.BUILTIN[name](y[:, 0::2]) * y[:, 1::2], rtol=2e-4, atol=1e-4)


def test_custom_functions_run_on_torch_and_numbers():
    y = torch.linspace(-5, 5, 101)
    assert torch.allclose(mish(y), y * torch.tanh(torch.nn.functional.softplus(y)), atol=1e-6)
    assert math.isclose(mish(1.0), 1.0 * math.tanh(math.log1p(math.exp(1.0))))
    assert torch.allclose(swiglu_clamped(y, y), torch.nn.functional.silu(y.clamp_max(7.0)) * y)


def test_resolve_and_config_errors():
    assert act.resolve("silu_glu") == ("silu_glu", None, True)
    assert act.resolve("silu", glu=True) == ("silu_glu", None, True)
    assert act.resolve(mish) == ("custom", mish, False)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        act.resolve("swish")
    with pytest.raises(TypeError, match="must take 2"):
        act.resolve(mish, glu=True)
    with pytest.raises(TypeError, match="must take 1"):
        act.resolve(swiglu_clamped)
    with pytest.raises(ValueError, match="glu=True needs an activation"):
        act.resolve(None, glu=True)
    with pytest.raises(TypeError, match="activation must be"):
        act.resolve(3)
    base = dict(block_m=16, block_n=64, block_k=64, warp_m=16, warp_n=64)
    with pytest.raises(ValueError, match="unknown epilogue activation"):
        GemmConfig(**base, activation="swish").validate()
    with pytest.raises(ValueError, match="needs custom_activation"):
        GemmConfig(**base, activation="custom").validate()
    with pytest.raises(ValueError, match="needs glu=True"):
        GemmConfig(**base, activation="silu_glu").validate()
    # configs with the same function share a cache entry; another function is another kernel
    assert GemmConfig(**base, activation="custom", custom_activation=mish) == \
        GemmConfig(**base, activation="custom", custom_activation=mish)
    assert GemmConfig(**base, activation="custom", custom_activation=mish) != \
        GemmConfig(**base, activation="custom", custom_activation=lambda x: x)


_EPILOGUES = [dict(activation=n) for n in BUILTINS] + [
    dict(activation="silu_glu", glu=True), dict(activation="custom", custom_activation=mish),
    dict(activation="custom", custom_activation=swiglu_clamped, glu=True)]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("epi", _EPILOGUES, ids=lambda e: e["activation"] + ("_fn" if "custom_activation" in e else ""))
def test_every_epilogue_compiles(arch, epi):
    cfg = GemmConfig(a_dtype="bfloat16", b_dtype="uint4", c_dtype="bfloat16", group_size=128, has_bias=True,
                     block_m=16, block_n=64, block_k=128, warp_m=16, warp_n=64, warp_k=64, arch=arch, **epi)
    art = compile_for_arch(Sm80MixedGemm(cfg.validate()), *fake_operands(cfg), arch=arch,
                           options="--enable-tvm-ffi", ptxas_info=False)
    assert "mma.sync.aligned.m16n8k16" in art.ptx
    if epi["activation"] in ("silu", "sigmoid", "quick_gelu", "silu_glu") or "custom_activation" in epi:
        assert "ex2.approx" in art.ptx   # the exp of the sigmoid / softplus


def test_untraceable_custom_function_gives_a_readable_error():
    def uses_python_if(x):
        if x > 0:
            return x
        return 0.0 * x

    cfg = GemmConfig(a_dtype="float16", b_dtype="int4", group_size=0, block_m=16, block_n=64, block_k=64,
                     warp_m=16, warp_n=64, activation="custom", custom_activation=uses_python_if)
    with pytest.raises(ValueError, match=r"custom activation .*uses_python_if .*test_epilogue_cpu.py:\d+.* "
                                         r"could not be compiled"):
        compile_kernel(cfg)
