"""HummingLayer on the CPU: loading (float / codes / packed / slices / experts), finish_load, the SM75
fallback's arithmetic, and every error raised before anything is compiled."""

from __future__ import annotations

import pytest
import torch

import humming_cute as hc
from humming_cute import dtypes as dt
from humming_cute.quant.reference import reference_gemm


def _layer(**kw):
    args = dict(shape_n=192, shape_k=256, a_dtype=dt.float16, b_dtype=dt.uint4, c_dtype=dt.float16,
                bs_dtype=dt.float16, weight_scale_group_size=64)
    args.update(kw)
    return hc.HummingLayer(**args)


def test_float_weight_in_slices_equals_whole():
    torch.manual_seed(0)
    w = torch.randn(192, 256)
    whole, sliced = _layer(), _layer()
    whole.load_weight(w)
    sliced.load_weight(w[:64], offset_n=0)
    sliced.load_weight(w[64:], offset_n=64)
    for name in ("weight_codes", "weight_scale", "zero_point"):
        assert torch.equal(getattr(whole, name), getattr(sliced, name))
    whole.finish_load()
    assert whole._prepared.packed.shape == (192 // 64, 256 // 64 * 64 * 64 * 4 // 32)


def test_codes_packed_codes_and_fallback_match_reference():
    torch.manual_seed(1)
    qw = hc.quantize_weight(torch.randn(192, 256), "int3", 128, "bfloat16")
    layer = _layer(b_dtype=dt.int3, a_dtype=dt.bfloat16, c_dtype=dt.bfloat16, bs_dtype=dt.bfloat16,
                   weight_scale_group_size=128, has_bias=True)
    bias = torch.randn(192, dtype=torch.bfloat16)
    layer.load_weight(hc.pack(qw.codes, 3), weight_scale=qw.scales, bias=bias, packed=True)
    assert torch.equal(layer.weight_codes, qw.codes)
    layer.finish_load()
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    y = layer._fallback(x)   # the sm_75 path: torch dequantize + matmul
    ref = reference_gemm(x, qw, bias=bias, out_dtype=torch.float32)
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_per_expert_loading():
    torch.manual_seed(2)
    layer = _layer(num_experts=3, has_global_scale=True, b_dtype=dt.float4e2m1, bs_dtype=dt.float8e4m3,
                   weight_scale_group_size=32)
    ws = [torch.randn(192, 256) for _ in range(3)]
    for e, w in enumerate(ws):
        layer.load_weight(w, expert_id=e)
    for e, w in enumerate(ws):
        qw = hc.quantize_weight(w, "float4e2m1", 32, "float8e4m3", global_scale=True)
        assert torch.equal(layer.weight_codes[e], qw.codes)
        assert torch.equal(layer.global_scale[e], qw.global_scale)
    layer.finish_load()
    assert layer._prepared.packed.shape[0] == 3 and layer._prepared.epilogue_factor.shape == (3,)
    with pytest.raises(TypeError, match="moe_forward"):
        layer(torch.randn(2, 256, dtype=torch.float16))
    with pytest.raises(ValueError, match="same CUDA device"):
        layer.moe_forward(torch.randn(2, 256, dtype=torch.float16), torch.zeros(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"x must be \[2, K\].*up projection"):
        layer.moe_forward(torch.randn(3, 256, dtype=torch.float16), torch.zeros(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"x must be \[4, K\].*down projection"):
        layer.moe_forward(torch.randn(2, 256, dtype=torch.float16), torch.zeros(2, 2, dtype=torch.int32),
                          is_down=True)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="illegal pair"):
        _layer(a_dtype=dt.float16, b_dtype="float8e6m1")
    with pytest.raises(NotImplementedError, match="float4e2m1 activations"):
        _layer(a_dtype="float4e2m1", b_dtype="float4e2m1")
    with pytest.raises(ValueError, match="power of two"):
        _layer(weight_scale_group_size=48)
    with pytest.raises(ValueError, match="not divisible"):
        _layer(weight_scale_group_size=512)
    with pytest.raises(ValueError, match="positive int"):
        _layer(shape_n=0)
    layer = _layer()
    with pytest.raises(TypeError, match="uint8"):
        layer.load_weight(torch.zeros(192, 256, dtype=torch.int16))
    with pytest.raises(ValueError, match="K=128"):
        layer.load_weight(torch.zeros(192, 128, dtype=torch.uint8))
    with pytest.raises(ValueError, match="exceed"):
        layer.load_weight(torch.zeros(64, 256, dtype=torch.uint8), offset_n=160)
    with pytest.raises(ValueError, match="valid uint4 code"):
        layer.load_weight(torch.full((192, 256), 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="dense layer"):
        layer.load_weight(torch.zeros(192, 256, dtype=torch.uint8), expert_id=0)
    with pytest.raises(TypeError, match="weight_scale must be"):
        layer.load_weight(weight_scale=torch.ones(192, 4, dtype=torch.float32))
    with pytest.raises(ValueError, match="do not pass weight_scale"):
        layer.load_weight(torch.randn(192, 256), weight_scale=torch.ones(192, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="take no zero point"):
        _layer(b_dtype=dt.int4).load_weight(zero_point=torch.zeros(192, 4, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="finish_load"):
        layer(torch.randn(2, 256, dtype=torch.float16))
    layer.load_weight(torch.randn(192, 256))
    layer.finish_load()
    with pytest.raises(ValueError, match="K=100"):
        layer(torch.randn(2, 100, dtype=torch.float16))
    with pytest.raises(ValueError, match="CPU"):
        layer(torch.randn(2, 256, dtype=torch.float16))


def test_gemm_rejects_bad_bias_and_out_before_launch(monkeypatch):
    import humming_cute.ops as ops

    qw = hc.quantize_weight(torch.randn(128, 256), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(4, 256, dtype=torch.float16)
    # pretend x is on a GPU so that the checks after the device check run; nothing may be compiled
    monkeypatch.setattr(ops, "check_input", lambda *a: None)
    monkeypatch.setattr("humming_cute.runtime.compile.get_kernel",
                        lambda cfg: (_ for _ in ()).throw(AssertionError("compiled despite bad input")))
    cfg = hc.GemmConfig(a_dtype="float16", b_dtype="uint4", group_size=128, has_bias=True, block_m=16,
                        block_n=64, block_k=64, warp_m=16, warp_n=64)
    with pytest.raises(TypeError, match="bias must have the output dtype"):
        hc.gemm(x, pw, bias=torch.zeros(128, dtype=torch.float32), config=cfg)
    with pytest.raises(ValueError, match="out must be"):
        hc.gemm(x, pw, out=torch.empty(4, 127, dtype=torch.float16), config=cfg.with_(has_bias=False))
    with pytest.raises(ValueError, match="config does not match"):
        hc.gemm(x, pw, config=cfg.with_(b_dtype="int4", has_bias=False))


def _launch_recorder(monkeypatch):
    """Run gemm/moe_gemm's host path on CPU tensors up to the kernel call and record the arguments."""
    import humming_cute.ops as ops
    import humming_cute.runtime.compile as rc

    calls = []

    def fake_get_kernel(cfg):
        def k(*args):
            calls.append((cfg, args))
        return k

    monkeypatch.setattr(rc, "get_kernel", fake_get_kernel)
    monkeypatch.setattr(ops, "check_input", lambda *a: None)
    monkeypatch.setattr(ops, "device_target", lambda d: "sm_90a")
    monkeypatch.setattr(ops, "_num_sms", lambda d: 132)
    return calls


def _assert_matches_fakes(cfg, args):
    """The launch passes one tensor per compiled operand, with the compiled dtype and rank."""
    from humming_cute.runtime.compile import fake_operands

    fakes = fake_operands(cfg)[:-1]   # the stream comes from the TVM-FFI environment
    assert len(args) == len(fakes)
    to_torch = {"Float16": torch.float16, "BFloat16": torch.bfloat16, "Float32": torch.float32,
                "Int32": torch.int32}
    for i, (a, f) in enumerate(zip(args, fakes)):
        assert a.dim() == len(f.shape), f"operand {i}: rank {a.dim()} != {len(f.shape)}"
        assert a.dtype == to_torch[f.element_type.__name__], f"operand {i}: {a.dtype} vs {f.element_type}"
        assert a.is_contiguous(), f"operand {i} is not contiguous"


@pytest.mark.parametrize("kw", [dict(), dict(bias=True), dict(activation="silu_glu"), dict(group=0)])
def test_gemm_launch_plumbing(monkeypatch, kw):
    calls = _launch_recorder(monkeypatch)
    qw = hc.quantize_weight(torch.randn(128, 256), "uint4" if kw.get("group", 128) else "int4", kw.get("group", 128))
    pw = hc.prepare_weight(qw, "float16")
    bias = torch.zeros(128, dtype=torch.float16) if kw.get("bias") else None
    y = hc.gemm(torch.randn(5, 256, dtype=torch.float16), pw, bias=bias, activation=kw.get("activation"))
    assert y.shape == (5, 64 if kw.get("activation") else 128)
    cfg, args = calls[0]
    _assert_matches_fakes(cfg, args)


@pytest.mark.parametrize("down", [False, True])
def test_moe_launch_plumbing(monkeypatch, down):
    import humming_cute.ops as ops

    calls = _launch_recorder(monkeypatch)
    monkeypatch.setattr(ops, "_check_moe_inputs", lambda x, w, *a: x.shape[0] // 2 if down else x.shape[0])
    qw = hc.quantize_weight(torch.randn(4, 128, 256), "uint4", 128)
    pw = hc.prepare_weight(qw, "float16")
    x = torch.randn(6 if down else 3, 256, dtype=torch.float16)
    ids = hc.moe_align_block_size(torch.tensor([[0, 1], [2, 3], [1, 0]], dtype=torch.int32), 16, 4)
    y = hc.moe_gemm(x, pw, *ids, top_k=2, block_m=16, is_down=down, mul_topk_weights=down,
                    topk_weights=torch.rand(3, 2))
    assert y.shape == (3, 2, 128)
    cfg, args = calls[0]
    assert cfg.moe and cfg.moe_down == down and cfg.block_m == 16
    _assert_matches_fakes(cfg, args)


def test_prepare_weight_rejects_a_non_quantized_weight():
    with pytest.raises(TypeError, match="QuantizedWeight"):
        hc.prepare_weight(torch.randn(128, 256), "float16")


def test_kernel_activations_packing():
    """How x reaches the kernel: K zero-padded, int4 codes two per byte (even k low), e2m1 codes against e2m1
    weights two per byte, against other weights one per byte in bits 2..5 (kind::f8f6f4's container), all as a
    16-bit view; 16-bit x only padded."""
    from types import SimpleNamespace

    from humming_cute.ops import _kernel_activations

    def w(a, b, k, k_pad):
        return SimpleNamespace(a_dtype=a, b_dtype=b, shape_k=k, k_pad=k_pad)

    codes = torch.randint(-8, 8, (3, 100), dtype=torch.int8)
    got = _kernel_activations(codes, w("int4", "int4", 100, 128)).view(torch.uint8)
    assert got.shape == (3, 64)     # K padded to 128 codes -> 64 bytes (32 fp16 units)
    u = torch.nn.functional.pad(codes.view(torch.uint8), (0, 28))
    assert torch.equal(got, (u[:, 0::2] & 0xF) | (u[:, 1::2] << 4))
    e2 = torch.randint(0, 16, (2, 64), dtype=torch.uint8)
    same = _kernel_activations(e2, w("float4e2m1", "float4e2m1", 64, 64)).view(torch.uint8)
    assert torch.equal(same, (e2[:, 0::2] & 0xF) | (e2[:, 1::2] << 4))
    wide = _kernel_activations(e2, w("float4e2m1", "int3", 64, 64)).view(torch.uint8)
    assert torch.equal(wide, e2 << 2) and wide.shape == (2, 64)
    f8 = torch.randn(2, 64).to(torch.float8_e4m3fn)
    assert torch.equal(_kernel_activations(f8, w("float8e4m3", "int4", 64, 64)).view(torch.uint8),
                       f8.view(torch.uint8))
    x16 = torch.randn(2, 60, dtype=torch.float16)
    p16 = _kernel_activations(x16, w("float16", "uint4", 60, 64))
    assert p16.shape == (2, 64) and torch.equal(p16[:, :60], x16) and not p16[:, 60:].any()
