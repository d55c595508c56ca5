"""The oracle itself: reference dense / MoE GEMM against naive Python loops, and the MoE align helper."""

import math

import pytest
import torch

from humming_cute.quant.activation import dequantize_activation, quantize_activation
from humming_cute.quant.reference import (
    ACTIVATIONS, apply_activation, moe_align_block_size_reference, reference_gemm, reference_moe_gemm,
)
from humming_cute.quant.weight import dequantize_weight, quantize_weight

M, N, K = 3, 6, 32


def _randn(*shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# naive scalar reference


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


NAIVE_ACT = {
    None: lambda v: v,
    "none": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "gelu_tanh": lambda v: 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3))),
    "quick_gelu": lambda v: v * _sigmoid(1.702 * v),
    "silu": lambda v: v * _sigmoid(v),
}


def _naive_row(xrow, w, bias, act):
    """One output row: xrow list[K], w list[N][K] -> act(xrow . w[n] + bias[n]) (interleaved GLU for *_glu)."""
    y = [sum(xrow[kk] * w[n][kk] for kk in range(len(xrow))) + (bias[n] if bias is not None else 0.0)
         for n in range(len(w))]
    if isinstance(act, str) and act.endswith("_glu"):
        f = NAIVE_ACT[act[:-4]]
        return [f(y[2 * j]) * y[2 * j + 1] for j in range(len(y) // 2)]
    return [NAIVE_ACT[act](v) for v in y]


def _naive_gemm(xd, wd, bias, act):
    xl, wl = xd.double().tolist(), wd.double().tolist()
    bl = bias.double().tolist() if bias is not None else None
    return torch.tensor([_naive_row(r, wl, bl, act) for r in xl], dtype=torch.float64)


def _close(out, ref, tol=2e-6):
    out, ref = out.double(), ref.double()
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = (out - ref).abs().max().item()
    assert err <= tol * (1.0 + ref.abs().max().item()), f"max err {err}"


# ---------------------------------------------------------------------------------------------------------------
# dense

WEIGHT_CASES = [
    dict(dtype="int4", group_size=16, scale_dtype="float16"),
    dict(dtype="uint4", group_size=16, scale_dtype="float16"),  # zero points
    dict(dtype="uint3", group_size=32, scale_dtype="bfloat16"),
    dict(dtype="int8", group_size=0, scale_dtype="bfloat16"),
    dict(dtype="float4e2m1", group_size=16, scale_dtype="float8e4m3", global_scale=True),  # NVFP4 style
    dict(dtype="float4e2m1", group_size=32, scale_dtype="ue8m0"),  # MXFP4 style
    dict(dtype="float6e3m2", group_size=16, scale_dtype="float16"),
    dict(dtype="float8e4m3", group_size=(4, 16), scale_dtype="float32"),  # 2-D blocks, partial in N
]


def _case_id(c):
    return f"{c['dtype']}-g{c['group_size']}-{c['scale_dtype']}" + ("-global" if c.get("global_scale") else "")


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=_case_id)
@pytest.mark.parametrize("x_dtype", [torch.float16, torch.bfloat16])
def test_dense_matches_naive(case, x_dtype):
    qw = quantize_weight(_randn(N, K, seed=1), **case)
    if case.get("global_scale"):
        assert qw.global_scale is not None
    x = _randn(M, K, seed=2, dtype=x_dtype)
    bias = _randn(N, seed=3)
    out = reference_gemm(x, qw, bias=bias, out_dtype=torch.float32)
    assert out.dtype == torch.float32 and out.shape == (M, N)
    _close(out, _naive_gemm(x, dequantize_weight(qw, torch.float64), bias, None))
    # default output dtype follows a 16-bit x; the rounding is the final cast only
    out16 = reference_gemm(x, qw, bias=bias)
    assert out16.dtype == x_dtype and torch.equal(out16, out.to(x_dtype))


@pytest.mark.parametrize("act", [a for a in ACTIVATIONS if not a.endswith("_glu")] + [None])
def test_dense_activations(act):
    qw = quantize_weight(_randn(N, K, seed=4), "uint4", 16)
    x = _randn(M, K, seed=5, dtype=torch.float16)
    bias = _randn(N, seed=6, dtype=torch.bfloat16)
    out = reference_gemm(x, qw, bias=bias, activation=act, out_dtype="float32")
    _close(out, _naive_gemm(x, dequantize_weight(qw, torch.float64), bias.float(), act))


@pytest.mark.parametrize("act", ["silu_glu", "gelu_glu", "relu_glu", "quick_gelu_glu"])
def test_glu_interleaved(act):
    qw = quantize_weight(_randn(N, K, seed=7), "int4", 32)
    x = _randn(M, K, seed=8, dtype=torch.bfloat16)
    bias = _randn(N, seed=9)
    out = reference_gemm(x, qw, bias=bias, activation=act, out_dtype=torch.float32)
    assert out.shape == (M, N // 2)
    ref = _naive_gemm(x, dequantize_weight(qw, torch.float64), bias, act)
    _close(out, ref)
    # the convention: even columns are the gate, odd columns the up projection
    y = reference_gemm(x, qw, bias=bias, out_dtype=torch.float32)
    base = act[:-4]
    assert torch.allclose(out, apply_activation(y[:, 0::2], base) * y[:, 1::2], rtol=1e-6, atol=1e-6)
    # glu=True with the plain name means the same
    assert torch.equal(reference_gemm(x, qw, bias=bias, activation=base, glu=True, out_dtype=torch.float32), out)


def test_custom_activations():
    qw = quantize_weight(_randn(N, K, seed=10), "float4e2m1", 16, "float8e4m3", global_scale=True)
    x = _randn(M, K, seed=11, dtype=torch.float16)
    y = reference_gemm(x, qw, out_dtype=torch.float32)
    out = reference_gemm(x, qw, activation=lambda v: v * v - 1.0, out_dtype=torch.float32)
    assert torch.equal(out, y * y - 1.0)
    out = reference_gemm(x, qw, activation=lambda g, u: torch.relu(g) * u * 2.0, glu=True, out_dtype=torch.float32)
    assert out.shape == (M, N // 2)
    assert torch.equal(out, torch.relu(y[:, 0::2]) * y[:, 1::2] * 2.0)
    # silu through a callable == the named one
    named = reference_gemm(x, qw, activation="silu_glu", out_dtype=torch.float32)
    custom = reference_gemm(x, qw, activation=lambda g, u: g * torch.sigmoid(g) * u, glu=True,
                            out_dtype=torch.float32)
    # torch.sigmoid vs F.silu: CPU kernels differ by up to ~5e-5 relative between vector ISAs
    assert torch.allclose(named, custom, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("a_dtype", ["int8", "int4", "float8e4m3", "float8e5m2", "float4e2m1"])
@pytest.mark.parametrize("x_group", [0, 16])
def test_dense_quantized_activations(a_dtype, x_group):
    wt = {"int8": "int4", "int4": "int3", "float8e4m3": "float4e2m1", "float8e5m2": "int4",
          "float4e2m1": "float4e2m1"}[a_dtype]
    qw = quantize_weight(_randn(N, K, seed=12), wt, 16)
    x = _randn(M, K, seed=13, dtype=torch.bfloat16)
    xq, xs = quantize_activation(x, a_dtype, x_group)
    bias = _randn(N, seed=14)
    out = reference_gemm(xq, qw, x_scales=xs, x_group_size=x_group, a_dtype=a_dtype, bias=bias, activation="gelu",
                         out_dtype=torch.float32)
    xd = dequantize_activation(xq, xs, a_dtype, x_group, out_dtype=torch.float64)
    _close(out, _naive_gemm(xd, dequantize_weight(qw, torch.float64), bias, "gelu"))
    # default output dtype for quantized activations is float16
    assert reference_gemm(xq, qw, x_scales=xs, x_group_size=x_group, a_dtype=a_dtype).dtype == torch.float16
    if a_dtype != "float4e2m1":  # the storage dtype names the type (int4 reads the same as int8)
        torch.testing.assert_close(reference_gemm(xq, qw, x_scales=xs, x_group_size=x_group, bias=bias,
                                                  activation="gelu", out_dtype=torch.float32), out)


def test_fp64_compute():
    qw = quantize_weight(_randn(N, K, seed=15), "uint4", 16)
    x = _randn(M, K, seed=16, dtype=torch.float16)
    o32 = reference_gemm(x, qw, activation="silu", out_dtype=torch.float32)
    o64 = reference_gemm(x, qw, activation="silu", out_dtype=torch.float32, compute_dtype=torch.float64)
    _close(o32, o64)
    _close(o64, _naive_gemm(x, dequantize_weight(qw, torch.float64), None, "silu"), tol=1e-7)


def test_dense_errors():
    qw = quantize_weight(_randn(N, K, seed=17), "int4", 16)
    x = _randn(M, K, seed=18, dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown activation 'swish'.*silu_glu"):
        reference_gemm(x, qw, activation="swish")
    with pytest.raises(ValueError, match="unknown activation"):
        apply_activation(x, "none_glu")
    with pytest.raises(ValueError, match="K = 16"):
        reference_gemm(x[:, :16], qw)
    with pytest.raises(ValueError, match="bias must have shape"):
        reference_gemm(x, qw, bias=torch.randn(N + 1))
    with pytest.raises(ValueError, match="need x_scales"):
        reference_gemm(x.to(torch.int8), qw)
    with pytest.raises(ValueError, match="x_scales are for"):
        reference_gemm(x, qw, x_scales=torch.ones(M, 1))
    with pytest.raises(TypeError, match="pass a_dtype"):
        reference_gemm(x.to(torch.uint8), qw, x_scales=torch.ones(M, 1))
    with pytest.raises(TypeError, match="stored as"):
        reference_gemm(x, qw, a_dtype="int8", x_scales=torch.ones(M, 1))
    with pytest.raises(TypeError, match="needs x of dtype"):
        reference_gemm(x, qw, a_dtype="bfloat16")
    with pytest.raises(ValueError, match="even number of columns"):
        reference_gemm(x, quantize_weight(_randn(5, K, seed=19), "int4", 16), activation="silu_glu")
    with pytest.raises(ValueError, match="2-D"):
        reference_gemm(x[None], qw)
    with pytest.raises(ValueError, match="dims"):
        reference_gemm(x, quantize_weight(_randn(2, N, K, seed=20), "int4", 16))
    with pytest.raises(TypeError, match="QuantizedWeight"):
        reference_gemm(x, torch.randn(N, K))
    with pytest.raises(ValueError, match="out_dtype"):
        reference_gemm(x, qw, out_dtype=torch.int32)
    with pytest.raises(ValueError, match="compute_dtype"):
        reference_gemm(x, qw, compute_dtype=torch.float16)
    with pytest.raises(ValueError, match="shape"):
        reference_gemm(x, qw, activation=lambda v: v[:, :1])
    with pytest.raises(ValueError, match="glu=True needs"):
        apply_activation(x, None, glu=True)


# ---------------------------------------------------------------------------------------------------------------
# MoE align


def _brute_align(topk_ids, block_m, num_experts):
    flat = topk_ids.reshape(-1).tolist()
    numel = len(flat)
    sorted_ids, experts = [], []
    for e in range(num_experts):
        ids = [i for i, v in enumerate(flat) if v == e]
        if not ids:
            continue
        nb = -(-len(ids) // block_m)
        sorted_ids += ids + [numel] * (nb * block_m - len(ids))
        experts += [e] * nb
    total = len(sorted_ids)
    length = numel + num_experts * (block_m - 1)
    sorted_ids += [numel] * (length - total)
    experts += [0] * (-(-length // block_m) - len(experts))
    return sorted_ids, experts, total


def _skewed_topk(m, top_k, probs, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.tensor(probs, dtype=torch.float64).expand(m, -1)
    return torch.multinomial(p, top_k, replacement=False, generator=g).to(torch.int32)


def test_align_vllm_docstring_example():
    topk_ids = torch.tensor([[2, 3, 4], [1, 2, 4], [1, 3, 4], [1, 2, 3]], dtype=torch.int32)
    s, e, n = moe_align_block_size_reference(topk_ids, 4, 5)
    assert n.tolist() == [16] and n.dtype == torch.int32
    assert s[:16].tolist() == [3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12]
    assert e[:4].tolist() == [1, 2, 3, 4]
    assert s.numel() == 12 + 5 * 3 and e.numel() == -(-27 // 4)


@pytest.mark.parametrize("m,top_k,num_experts,block_m", [
    (1, 1, 4, 16), (7, 2, 6, 4), (9, 3, 8, 8), (33, 4, 16, 16), (5, 2, 64, 32), (64, 1, 3, 1),
])
def test_align_matches_brute_force(m, top_k, num_experts, block_m):
    probs = [2.0 ** -(i % 5) if i % 3 else 0.0 for i in range(num_experts)]  # skewed, some experts empty
    probs[0] = probs[1] = 1.0
    if sum(p > 0 for p in probs) < top_k:
        probs = [1.0] * num_experts
    topk_ids = _skewed_topk(m, top_k, probs, seed=m * 31 + num_experts)
    s, e, n = moe_align_block_size_reference(topk_ids, block_m, num_experts)
    bs, be, bn = _brute_align(topk_ids, block_m, num_experts)
    assert (s.dtype, e.dtype, n.dtype) == (torch.int32, torch.int32, torch.int32)
    assert s.tolist() == bs and e.tolist() == be and n.tolist() == [bn]

    # invariants
    numel, total = m * top_k, n.item()
    assert total % block_m == 0 and total >= numel
    assert s.numel() == numel + num_experts * (block_m - 1)
    valid = s[:total]
    real = valid[valid < numel]
    assert sorted(real.tolist()) == list(range(numel))  # every id exactly once
    assert ((s == numel) | (s < numel)).all() and (s[total:] == numel).all()  # pad value is M * top_k
    flat = topk_ids.reshape(-1).long()
    for b in range(total // block_m):
        blk = s[b * block_m:(b + 1) * block_m]
        ids = blk[blk < numel].long()
        assert ids.numel() > 0  # no block is all padding
        assert (flat[ids] == e[b]).all()  # one expert per block
    # int64 topk_ids give the same answer
    s64, e64, n64 = moe_align_block_size_reference(topk_ids.long(), block_m, num_experts)
    assert torch.equal(s64, s) and torch.equal(e64, e) and torch.equal(n64, n)


def test_align_expert_map():
    topk_ids = _skewed_topk(10, 2, [4, 1, 1, 0, 1, 1], seed=3)
    expert_map = torch.tensor([-1, 0, 1, 2, -1, 3], dtype=torch.int32)
    s, e, n = moe_align_block_size_reference(topk_ids, 4, 6, expert_map=expert_map)
    s0, e0, n0 = moe_align_block_size_reference(topk_ids, 4, 6)
    assert torch.equal(s, s0) and torch.equal(n, n0)
    assert torch.equal(e, expert_map[e0.long()])
    assert (e[: n.item() // 4] == -1).any()


def test_align_errors():
    t = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="num_experts = 3"):
        moe_align_block_size_reference(t, 4, 3)
    with pytest.raises(TypeError, match="int32"):
        moe_align_block_size_reference(t.float(), 4, 4)
    with pytest.raises(ValueError, match="2-D"):
        moe_align_block_size_reference(t.reshape(-1), 4, 4)
    with pytest.raises(ValueError, match="block_m"):
        moe_align_block_size_reference(t, 0, 4)
    with pytest.raises(ValueError, match="expert_map"):
        moe_align_block_size_reference(t, 4, 4, expert_map=torch.zeros(3, dtype=torch.int32))


# ---------------------------------------------------------------------------------------------------------------
# MoE GEMM

E_GLOBAL, TOPK, MT = 6, 2, 9
PROBS = [0.5, 0.25, 0.15, 0.0, 0.1, 0.0]  # experts 3 and 5 get no tokens
EXPERT_MAP = [-1, 0, 1, 2, -1, 3]  # experts 0 (the busiest) and 4 live on another rank


def _naive_moe(x, w_local, bias, topk_ids, topk_weights, act, is_down, expert_map, mul):
    wl = w_local.double().tolist()
    bl = bias.double().tolist() if bias is not None else None
    xl = x.double().tolist()
    m, top_k = topk_ids.shape
    rows = []
    for t in range(m):
        slots = []
        for k in range(top_k):
            e = int(topk_ids[t, k])
            if expert_map is not None:
                e = expert_map[e]
            n_out = len(wl[0]) // 2 if isinstance(act, str) and act.endswith("_glu") else len(wl[0])
            if e < 0:
                slots.append([0.0] * n_out)
                continue
            xrow = xl[t * top_k + k] if is_down else xl[t]
            y = _naive_row(xrow, wl[e], bl[e] if bl is not None else None, act)
            wgt = float(topk_weights[t, k]) if mul else 1.0
            slots.append([v * wgt for v in y])
        rows.append(slots)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("is_down", [False, True], ids=["up", "down"])
@pytest.mark.parametrize("block_m", [4, 16])
@pytest.mark.parametrize("act,mul", [(None, True), ("silu_glu", False), ("gelu", True)])
@pytest.mark.parametrize("ep", [False, True], ids=["all-local", "expert-map"])
def test_moe_matches_naive(is_down, block_m, act, mul, ep):
    topk_ids = _skewed_topk(MT, TOPK, PROBS, seed=21)
    expert_map = torch.tensor(EXPERT_MAP, dtype=torch.int32) if ep else None
    e_local = 4 if ep else E_GLOBAL
    qw = quantize_weight(_randn(e_local, N, K, seed=22), "uint4", 16, "bfloat16")
    bias = _randn(e_local, N, seed=23)
    topk_weights = torch.softmax(_randn(MT, TOPK, seed=24), dim=-1)
    x = _randn(MT * TOPK if is_down else MT, K, seed=25, dtype=torch.float16)
    s, e, n = moe_align_block_size_reference(topk_ids, block_m, E_GLOBAL, expert_map=expert_map)

    out = reference_moe_gemm(x, qw, s, e, n, top_k=TOPK, block_m=block_m, topk_weights=topk_weights,
                             mul_topk_weights=mul, is_down=is_down, bias=bias, activation=act,
                             out_dtype=torch.float32)
    n_out = N // 2 if act == "silu_glu" else N
    assert out.shape == (MT, TOPK, n_out) and out.dtype == torch.float32
    ref = _naive_moe(x, dequantize_weight(qw, torch.float64), bias, topk_ids, topk_weights, act, is_down,
                     EXPERT_MAP if ep else None, mul)
    _close(out, ref)
    if ep:  # slots routed to remote experts are zero
        remote = torch.tensor(EXPERT_MAP)[topk_ids.long()] < 0
        assert remote.any() and (out[remote] == 0).all() and (out[~remote] != 0).any()

    # default dtype, and entries past num_tokens_post_padded are never read
    s2, e2 = s.clone(), e.clone()
    s2[n.item():] = torch.randint(0, MT * TOPK, (s2.numel() - n.item(),), dtype=torch.int32)
    e2[n.item() // block_m:] = 1
    out2 = reference_moe_gemm(x, qw, s2, e2, int(n), top_k=TOPK, block_m=block_m, topk_weights=topk_weights,
                              mul_topk_weights=mul, is_down=is_down, bias=bias, activation=act)
    assert out2.dtype == torch.float16 and torch.equal(out2, out.half())


def test_moe_quantized_activation_global_scale():
    """fp4 weights with a per-expert global scale, int8 per-group activations, down projection."""
    m, top_k, e_num = 5, 3, 4
    topk_ids = _skewed_topk(m, top_k, [1.0, 0.0, 2.0, 1.0], seed=30)  # expert 1 has no tokens
    qw = quantize_weight(_randn(e_num, N, K, seed=31), "float4e2m1", 16, "float8e4m3", global_scale=True)
    assert qw.global_scale.shape == (e_num,)
    x = _randn(m * top_k, K, seed=32, dtype=torch.bfloat16)
    xq, xs = quantize_activation(x, "int8", 16)
    topk_weights = torch.rand(m, top_k, generator=torch.Generator().manual_seed(33)) + 0.1
    s, e, n = moe_align_block_size_reference(topk_ids, 8, e_num)
    out = reference_moe_gemm(xq, qw, s, e, n, top_k=top_k, block_m=8, topk_weights=topk_weights,
                             mul_topk_weights=True, is_down=True, x_scales=xs, x_group_size=16, a_dtype="int8",
                             out_dtype=torch.float32)
    xd = dequantize_activation(xq, xs, "int8", 16, out_dtype=torch.float64)
    ref = _naive_moe(xd, dequantize_weight(qw, torch.float64), None, topk_ids, topk_weights, None, True, None, True)
    _close(out, ref)


def test_moe_skipped_block_is_zero():
    """A hand-made layout: block 1 is expert -1 and id 5 never appears -> those rows are zero."""
    m, top_k, e_num, bm = 3, 2, 2, 2
    qw = quantize_weight(_randn(e_num, N, K, seed=40), "int8", 0)
    x = _randn(m, K, seed=41, dtype=torch.float16)
    s = torch.tensor([0, 3, 1, 2, 4, 6, 6, 6], dtype=torch.int32)  # pad value 6 = M * top_k
    e = torch.tensor([1, -1, 0, 0], dtype=torch.int32)
    out = reference_moe_gemm(x, qw, s, e, torch.tensor([6], dtype=torch.int32), top_k=top_k, block_m=bm,
                             out_dtype=torch.float32)
    w = dequantize_weight(qw, torch.float64)
    assert (out[0, 1] == 0).all() and (out[1, 0] == 0).all() and (out[2, 1] == 0).all()  # ids 1, 2, 5
    _close(out[0, 0], (x[0].double() @ w[1].T))
    _close(out[1, 1], (x[1].double() @ w[1].T))
    _close(out[2, 0], (x[2].double() @ w[0].T))


def test_moe_errors():
    topk_ids = _skewed_topk(4, 2, [1, 1, 1], seed=50)
    qw = quantize_weight(_randn(3, N, K, seed=51), "int4", 16)
    x = _randn(4, K, seed=52, dtype=torch.float16)
    s, e, n = moe_align_block_size_reference(topk_ids, 4, 3)
    kw = dict(top_k=2, block_m=4)
    reference_moe_gemm(x, qw, s, e, n, **kw)  # fine
    with pytest.raises(ValueError, match="dims"):
        reference_moe_gemm(x, quantize_weight(_randn(N, K, seed=53), "int4", 16), s, e, n, **kw)
    with pytest.raises(TypeError, match="sorted_token_ids"):
        reference_moe_gemm(x, qw, s.float(), e, n, **kw)
    with pytest.raises(ValueError, match=r"\[-1, 3\)"):
        reference_moe_gemm(x, qw, s, torch.full_like(e, 3), n, **kw)
    with pytest.raises(ValueError, match="more than once"):
        reference_moe_gemm(x, qw, torch.zeros_like(s), e, n, **kw)
    with pytest.raises(ValueError, match="negative"):
        reference_moe_gemm(x, qw, s - 100, e, n, **kw)
    with pytest.raises(ValueError, match="needs topk_weights"):
        reference_moe_gemm(x, qw, s, e, n, mul_topk_weights=True, **kw)
    with pytest.raises(ValueError, match=r"topk_weights must have shape \(4, 2\)"):
        reference_moe_gemm(x, qw, s, e, n, topk_weights=torch.ones(4, 3), mul_topk_weights=True, **kw)
    with pytest.raises(ValueError, match="multiple of top_k"):
        reference_moe_gemm(x[:3], qw, s, e, n, is_down=True, **kw)
    with pytest.raises(ValueError, match="expert_ids has"):
        reference_moe_gemm(x, qw, s, e[:1], n, **kw)
    with pytest.raises(ValueError, match="outside"):
        reference_moe_gemm(x, qw, s, e, s.numel() + 1, **kw)
    with pytest.raises(ValueError, match="bias must have shape"):
        reference_moe_gemm(x, qw, s, e, n, bias=torch.randn(N), **kw)
    with pytest.raises(ValueError, match="top_k"):
        reference_moe_gemm(x, qw, s, e, n, top_k=0, block_m=4)
    with pytest.raises(ValueError, match="one value"):
        reference_moe_gemm(x, qw, s, e, torch.tensor([1, 2], dtype=torch.int32), **kw)
