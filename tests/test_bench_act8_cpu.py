"""The benchmark tool with 8-bit activations (``--a-dtype float8e4m3 / float8e5m2 / int8``), on the CPU: options,
rows, table, the peers' adapters (torch._scaled_mm, torch._int_mm and Humming stand-ins that check the calling
contract the adapters rely on) and a whole dense run with humming_cute's kernels replaced by the reference."""

from __future__ import annotations

import json
import sys
import types

import pytest

from humming_cute.bench import core
from humming_cute.bench.core import OURS

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------------------------------------
# options, rows, table


def test_act8_options_and_default_peers():
    assert core.parse_args([]).peer_list == ["torch", "int4", "humming"]  # 16-bit runs unchanged
    a = core.parse_args(["--a-dtype", "float8e4m3", "--b-dtype", "int4", "--group-size", "0"])
    assert a.a_dtype == "float8e4m3" and a.peer_list == ["torch", "scaled_mm", "humming"]
    assert core.parse_args(["--a-dtype", "int8"]).peer_list == ["torch", "scaled_mm", "int_mm", "humming"]
    assert core.parse_args(["--a-dtype", "float8e5m2", "--peers", "all"]).peer_list == ["torch", "scaled_mm",
                                                                                        "humming"]
    # any dense peer may be named; one that does not apply is recorded as skipped when the run prepares it
    assert core.parse_args(["--a-dtype", "int8", "--peers", "humming,int4,int_mm"]).peer_list == [
        "int4", "int_mm", "humming"]
    assert core.parse_args(["--peers", "scaled_mm"]).peer_list == ["scaled_mm"]
    assert core.default_peers("bfloat16") == core.PEERS and core.is_act8("int8") and not core.is_act8("float16")
    assert core.tolerance("int8") == 2e-3 and core.tolerance("float8e4m3") == core.tolerance("float8e5m2") == 4e-3


@pytest.mark.parametrize("argv", [["--a-dtype", "int4"], ["--a-dtype", "float4e2m1"], ["--moe", "--a-dtype", "int8"],
                                  ["--a-dtype", "int8", "--peers", "marlin"]])
def test_bad_act8_options_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        core.parse_args(argv)
    assert e.value.code == 2 and "error" in capsys.readouterr().err


def _act8_row(m=16, ours_ms=0.02, quant_ms=0.005, peers=None):
    n = k = 4096
    b = core.format_bytes(m, n, k, b_bits=4, group_size=0, scale_bits=16, zero_point=False, a_bytes=1)
    mf, cf = core.memory_floor_ms(b["total"], 3e12), core.compute_floor_ms(m, n, k, 1.4e15)
    metrics = dict(m=m, n=n, k=k, bytes_=b, memory_floor=mf, compute_floor=cf)
    impls = {OURS: core.with_quantize(core.ok_entry(ours_ms, 3e-4, 0.03, **metrics), quant_ms)}
    for name, v in (peers or {}).items():
        if isinstance(v, tuple) and isinstance(v[0], float):
            impls[name] = dict(core.ok_entry(v[0], 4e-4, 0.03, **metrics), ms_end_to_end=v[1])
        elif isinstance(v, float):
            impls[name] = core.ok_entry(v, 4e-4, 0.03, **metrics)
        else:
            impls[name] = core.skipped_entry(*v)
    return core.build_row(m, n, k, b, mf, cf, impls)


def test_act8_bytes_quantize_entry_and_end_to_end_ratios():
    r = _act8_row(peers={"scaled_mm": (0.04, 0.05), "torch": 0.05, "humming": ("skipped", "not installed")})
    assert r["bytes"]["activations"] == 16 * 4096 and r["bytes"]["output"] == 16 * 4096 * 2
    ours = r["impls"][OURS]
    assert ours["quant_ms"] == 0.005 and ours["ms_end_to_end"] == pytest.approx(0.025)
    assert r["ratio_vs"]["scaled_mm"] == pytest.approx(0.5)
    assert r["ratio_end_to_end_vs"]["scaled_mm"] == pytest.approx(0.5)
    assert r["ratio_end_to_end_vs"]["torch"] is None and r["ratio_end_to_end_vs"]["humming"] is None
    assert core.with_quantize(core.skipped_entry("failed", "x"), 0.1) == {"status": "failed", "reason": "x"}
    # a 16-bit row has no end-to-end ratios
    b = core.format_bytes(1, 64, 64, b_bits=4, group_size=0, scale_bits=16, zero_point=False)
    plain = core.build_row(1, 64, 64, b, 1.0, 1.0, {OURS: core.ok_entry(0.1, 0.0, 0.0, m=1, n=64, k=64, bytes_=b,
                                                                         memory_floor=1.0, compute_floor=1.0)})
    assert "ratio_end_to_end_vs" not in plain


def test_act8_table_has_quantize_and_end_to_end_columns():
    rows = [_act8_row(1, peers={"scaled_mm": (0.04, 0.05), "int_mm": ("skipped", "int8 only")}),
            _act8_row(256, ours_ms=0.1, quant_ms=0.01, peers={"scaled_mm": (0.2, 0.25), "int_mm": 0.3})]
    lines = core.format_table(rows, ["scaled_mm", "int_mm"]).splitlines()
    assert "q ms" in lines[0] and "e2e ms" in lines[0] and "hc/fp8mm" in lines[0] and "i8mm ms" in lines[0]
    assert all(len(line) == len(lines[0]) for line in lines[2:])
    assert "0.0050" in lines[2] and "0.0250" in lines[2] and "0.1100" in lines[3]


# ------------------------------------------------------------------------------------------------------------
# peers: unavailable paths (this machine's torch has no CUDA GPU, or the peer does not apply)


def test_act8_peers_are_unavailable_without_cuda_or_out_of_place(monkeypatch):
    import humming_cute as hc
    from humming_cute.bench import peers as P

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    w = torch.randn(64, 128)
    with pytest.raises(P.PeerUnavailable, match="CUDA"):
        P.scaled_mm_peer(w, "float8e4m3")
    with pytest.raises(P.PeerUnavailable, match="CUDA"):
        P.int_mm_peer(w, "int8")
    with pytest.raises(P.PeerUnavailable, match="8-bit activations"):
        P.scaled_mm_peer(w, "float16")
    with pytest.raises(P.PeerUnavailable, match="int8 activations"):
        P.int_mm_peer(w, "float8e4m3")
    qw = hc.quantize_weight(w, "int4", 32, "bfloat16")
    with pytest.raises(P.PeerUnavailable, match="not float8e4m3"):
        P.int4_peer(qw, 1e-2, "float8e4m3")
    monkeypatch.setitem(sys.modules, "humming", None)
    with pytest.raises(P.PeerUnavailable, match="not importable"):
        P.humming_peer(qw, w, hc.dequantize_weight(qw), torch.float16, 2e-3, "int8")


def test_act8_peers_need_torch_ops_and_shapes(monkeypatch):
    from humming_cute.bench import peers as P

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    with pytest.raises(P.PeerUnavailable, match="multiples of 16"):
        P.scaled_mm_peer(torch.randn(40, 128), "int8")
    with pytest.raises(P.PeerUnavailable, match="multiples of 8"):
        P.int_mm_peer(torch.randn(64, 36), "int8")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(P.PeerUnavailable, match="sm_89"):
        P.scaled_mm_peer(torch.randn(64, 128), "float8e4m3")
    monkeypatch.delattr(torch, "_scaled_mm")
    monkeypatch.delattr(torch, "_int_mm")
    with pytest.raises(P.PeerUnavailable, match="no _scaled_mm"):
        P.scaled_mm_peer(torch.randn(64, 128), "float8e4m3")
    with pytest.raises(P.PeerUnavailable, match="no _int_mm"):
        P.int_mm_peer(torch.randn(64, 128), "int8")


# ------------------------------------------------------------------------------------------------------------
# peers: the adapters' glue, with stand-ins that check the contract of torch's ops (CPU)


def _fake_scaled_mm(calls, refuse_fp16=False):
    def scaled_mm(a, b, scale_a, scale_b, out_dtype=None, **kw):
        assert a.dtype == b.dtype == torch.float8_e4m3fn and b.stride(0) == 1, "mat2 must be column-major"
        assert a.shape[1] % 16 == 0 and b.shape[0] % 16 == 0 and b.shape[1] % 16 == 0
        assert scale_a.shape == (a.shape[0], 1) and scale_b.shape == (1, b.shape[1])
        assert scale_a.dtype == scale_b.dtype == torch.float32
        calls.append(out_dtype)
        if refuse_fp16 and out_dtype == torch.float16:
            raise RuntimeError("Only bf16 high precision output types are supported for row-wise scaling.")
        return ((a.float() @ b.float()) * scale_a * scale_b).to(out_dtype)
    return scaled_mm


def _fake_int_mm(a, b):
    assert a.dtype == b.dtype == torch.int8 and b.stride(0) == 1, "mat2 must be column-major"
    if a.shape[0] <= 16:
        raise RuntimeError(f"self.size(0) needs to be greater than 16, but got {a.shape[0]}")
    return (a.double() @ b.double()).to(torch.int32)


def _patch_torch_ops(monkeypatch, refuse_fp16=False):
    from humming_cute.bench import timing

    calls: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **kw: None)
    monkeypatch.setattr(torch, "_scaled_mm", _fake_scaled_mm(calls, refuse_fp16), raising=False)
    monkeypatch.setattr(torch, "_int_mm", _fake_int_mm, raising=False)
    monkeypatch.setattr(timing, "bench_ms", lambda fn, rep_ms=100.0: (fn(), 0.5)[1])
    monkeypatch.setattr(timing, "bench_ms_back_to_back", lambda fns, rep_ms=100.0: ([f() for f in fns], 0.25)[1])
    monkeypatch.setattr(timing, "l2_bytes", lambda device: 50 << 20)
    return calls


def _measure(peer, x, w, w_deq):
    from humming_cute.bench import run

    n, k = w.shape
    b = core.format_bytes(x.shape[0], n, k, b_bits=4, group_size=0, scale_bits=16, zero_point=False, a_bytes=1)
    y_ref = x.float() @ w_deq.t()
    return run._measure_peer(peer, x, y_ref, x.float() @ w.t(), w_deq, 1.0, m=x.shape[0], n=n, k=k, bytes_=b,
                             memory_floor=1e-3, compute_floor=1e-3, end_to_end=True)


@pytest.mark.parametrize("a_name", ["float8e4m3", "float8e5m2", "int8"])
@pytest.mark.parametrize("refuse_fp16", [False, True])
def test_scaled_mm_peer_glue(monkeypatch, a_name, refuse_fp16):
    from humming_cute.bench import peers as P
    from humming_cute.quant.activation import quantize_activation

    calls = _patch_torch_ops(monkeypatch, refuse_fp16)
    w = torch.randn(64, 128)
    peer = P.scaled_mm_peer(w, a_name)
    assert calls[0] == torch.float16  # the probe tries fp16 first
    x = torch.randn(5, 128).half()
    q, s = peer.to_input(x)
    assert torch.equal(q.view(torch.uint8), quantize_activation(x, "float8e4m3", 0)[0].view(torch.uint8))
    assert peer.ref_weight.shape == (64, 128) and (peer.ref_weight - w).norm() / w.norm() < 0.06
    e = _measure(peer, x, w, w)
    assert e["status"] == "ok" and e["rel_err"] < peer.tol and e["ms"] == 0.5, e
    assert e["ms_end_to_end"] == 0.5 and e["rel_err_end_to_end"] < peer.tol
    assert 0.005 < e["rel_err_vs_float"] < 0.1  # fp8 activations and weight vs the float product
    assert peer.call((q, s)).dtype == torch.float16
    if refuse_fp16:
        assert calls[-1] == torch.bfloat16 and peer.tol == core.tolerance("bfloat16")
        assert any("bf16 output" in note for note in peer.notes)
    else:
        assert set(calls) == {torch.float16} and peer.tol == 2e-3


@pytest.mark.parametrize("m", [1, 16, 17, 40])
def test_int_mm_peer_glue_pads_small_m(monkeypatch, m):
    from humming_cute.bench import peers as P
    from humming_cute.quant.activation import quantize_activation

    _patch_torch_ops(monkeypatch)
    w = torch.randn(64, 128)
    peer = P.int_mm_peer(w, "int8")
    x = torch.randn(m, 128).half()
    q, s = peer.to_input(x)
    assert q.shape[0] == max(m, 17) and s.shape == (m, 1) and not q[m:].any()
    assert torch.equal(q[:m], quantize_activation(x, "int8", 0)[0])  # humming_cute's own codes
    e = _measure(peer, x, w, w)
    assert e["status"] == "ok" and e["rel_err"] < 1e-3 and "ms_end_to_end" in e, e
    assert peer.call((q, s)).shape == (m, 64)


def test_peer_wrong_end_to_end_is_recorded_not_timed(monkeypatch):
    from humming_cute.bench import peers as P

    _patch_torch_ops(monkeypatch)
    w = torch.randn(64, 128)
    peer = P.int_mm_peer(w, "int8")
    peer.end_to_end = lambda x: torch.zeros(x.shape[0], 64, dtype=torch.float16)
    e = _measure(peer, torch.randn(20, 128).half(), w, w)
    assert e["status"] == "ok" and "ms_end_to_end" not in e and "relative error" in e["end_to_end_reason"]


def test_torch_peer_end_to_end_is_its_own_time(monkeypatch):
    from humming_cute.bench import peers as P

    _patch_torch_ops(monkeypatch)
    w = torch.randn(64, 128)
    e = _measure(P.torch_peer(w.half(), 2e-3), torch.randn(3, 128).half(), w, w)
    assert e["status"] == "ok" and e["ms_end_to_end"] == e["ms"] == 0.5


def _fake_humming(calls, compatible=True):
    """A stand-in for the `humming` package following the contract `humming_peer` cites for 8-bit activations:
    HummingLayer(input_config={"dtype": ...}, torch_dtype=...), input_schema.is_compatible_with, a forward that
    takes codes + fp32 scales [M, 1] (input_scale) or quantizes a 16-bit input itself; pack_weight the identity,
    int4 weights read as (q - 8) * scale."""
    from humming_cute.quant.activation import dequantize_activation, quantize_activation

    class WeightSchema:
        def dequant_tensors(self, t):
            return (t["weight"].float() - 8) * t["weight_scale"].float()

    class InputSchema:
        def is_compatible_with(self, weight_schema, param_dtype):
            calls.append(("compatible", param_dtype))
            return compatible

    class HummingLayer:
        def __init__(self, **kw):
            calls.append(("init", kw))
            self.kw, self.tensors = kw, {}
            self.weight_schema, self.input_schema = WeightSchema(), InputSchema()

        def cuda(self):
            return self

        def load_from_tensors(self, tensors):
            self.tensors = dict(tensors)

        def named_parameters(self):
            return [(k, types.SimpleNamespace(data=v)) for k, v in self.tensors.items()]

        def transform(self):
            self.w = self.weight_schema.dequant_tensors(self.tensors)
            self.humming_config = types.SimpleNamespace(use_int_weight_scale=False)

        def __call__(self, x, input_scale=None):
            a = self.kw["input_config"]["dtype"]
            if x.dtype in (torch.float16, torch.bfloat16, torch.float32):
                calls.append(("quantizes", x.dtype))
                x, input_scale = quantize_activation(x, a, 0)
            assert input_scale.shape == (x.shape[0], 1) and input_scale.dtype == torch.float32
            return (dequantize_activation(x, input_scale, a) @ self.w.t()).to(self.kw["torch_dtype"])

    mods = {"humming": types.ModuleType("humming"), "humming.ops": types.ModuleType("humming.ops"),
            "humming.layer": types.ModuleType("humming.layer")}
    mods["humming.ops"].pack_weight = lambda codes, bits: codes
    mods["humming"].ops = mods["humming.ops"]
    mods["humming.layer"].HummingLayer = HummingLayer
    return mods


@pytest.mark.parametrize("a_name", ["float8e4m3", "float8e5m2", "int8"])
def test_humming_act8_adapter_glue(monkeypatch, a_name):
    import humming_cute as hc
    from humming_cute.bench import peers as P

    _patch_torch_ops(monkeypatch)
    calls: list = []
    for name, mod in _fake_humming(calls).items():
        monkeypatch.setitem(sys.modules, name, mod)
    w = torch.randn(64, 128)
    qw = hc.quantize_weight(w, "int4", 0, "bfloat16" if a_name == "float8e5m2" else "float16")
    w_deq = hc.dequantize_weight(qw)
    peer = P.humming_peer(qw, w, w_deq, torch.float16, 2e-3, a_name)
    init = [c[1] for c in calls if c[0] == "init"][0]
    out = torch.bfloat16 if a_name == "float8e5m2" else torch.float16  # Humming wants bf16 output for e5m2
    assert init["input_config"] == {"dtype": a_name} and init["torch_dtype"] == out
    assert init["weight_config"] == {"b_dtype": "int4", "weight_scale_group_size": 0, "has_zero_point": False}
    assert ("compatible", out) in calls and peer.tol == max(core.tolerance(a_name), core.tolerance(str(out)[6:]))
    assert peer.ref_weight is None and any("same codes and scales" in note for note in peer.notes)
    x = torch.randn(7, 128).half()
    q, s = peer.to_input(x)
    assert s.shape == (7, 1) and s.untyped_storage().nbytes() == 8 * 4  # Humming's round_up(M, 4) buffer
    e = _measure(peer, x, w, w_deq)
    assert e["status"] == "ok" and e["rel_err"] < peer.tol and e["ms_end_to_end"] == 0.5, e
    assert ("quantizes", torch.float16) in calls  # end-to-end: Humming quantizes the 16-bit x itself


def test_humming_act8_refused_pair_is_unavailable(monkeypatch):
    import humming_cute as hc
    from humming_cute.bench import peers as P

    _patch_torch_ops(monkeypatch)
    for name, mod in _fake_humming([], compatible=False).items():
        monkeypatch.setitem(sys.modules, name, mod)
    qw = hc.quantize_weight(torch.randn(64, 128), "uint4", 32, "float16")
    with pytest.raises(P.PeerUnavailable, match="Humming refuses float8e5m2 activations"):
        P.humming_peer(qw, torch.randn(64, 128), hc.dequantize_weight(qw), torch.float16, 2e-3, "float8e5m2")


# ------------------------------------------------------------------------------------------------------------
# a whole dense 8-bit run on the CPU: humming_cute's kernels replaced by the reference


def _cpu_main_setup(monkeypatch):
    import humming_cute as hc
    from humming_cute.bench import run, timing
    from humming_cute.quant.activation import quantize_activation
    from humming_cute.quant.reference import reference_gemm

    _patch_torch_ops(monkeypatch)

    def gemm(x, qw, x_scales=None, out_dtype=None):
        return reference_gemm(x, qw, x_scales=x_scales, out_dtype=torch.float32).to(out_dtype or x.dtype)

    monkeypatch.setattr(hc, "prepare_weight", lambda qw, a_dtype: qw)
    monkeypatch.setattr(hc, "gemm", gemm)
    monkeypatch.setattr(hc, "quantize_input", lambda x, dtype, group_size=0: quantize_activation(x, dtype, group_size))
    monkeypatch.setitem(sys.modules, "humming", None)
    monkeypatch.setattr(timing, "environment", lambda device, command: dict(
        card="fake card", sm="9.0", sm_count=132, torch=torch.__version__, cutlass_dsl=None, humming_kernels=None,
        timer="fake", command=command, date="2026-01-01"))
    monkeypatch.setattr(timing, "copy_bandwidth", lambda rep_ms=100.0: 3e12)
    monkeypatch.setattr(timing, "cublas_peak_flops", lambda dtype, size=8192, rep_ms=100.0: 7e14)
    monkeypatch.setattr(timing, "act8_peak_flops", lambda a_dtype, size=8192, rep_ms=100.0: (
        1.4e15, f"fake {a_dtype} 8192x8192x8192, random data"))
    shape_rows = run._shape_rows
    monkeypatch.setattr(run, "_shape_rows", lambda n, k, args, **kw: shape_rows(n, k, args, **dict(kw, device="cpu")))
    return run


@pytest.mark.parametrize("a_name", ["int8", "float8e4m3"])
def test_main_act8_on_cpu_json_table_markdown(monkeypatch, tmp_path, capsys, a_name):
    from humming_cute.bench.markdown import table

    run = _cpu_main_setup(monkeypatch)
    js, png = tmp_path / "a8.json", tmp_path / "a8.png"
    assert run.main(["--a-dtype", a_name, "--b-dtype", "int4", "--group-size", "0", "--shapes", "64x128",
                     "--m", "1,20", "--json", str(js), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "q ms" in out and "e2e ms" in out and "hc/fp8mm" in out and "not importable" in out
    assert f"fake {a_name} 8192x8192x8192 1400 TFLOP/s" in out
    doc = json.loads(js.read_text())
    cfg = doc["config"]
    assert cfg["a_dtype"] == a_name and cfg["output_dtype"] == "float16" and "quantize_input" in cfg["activations"]
    want = ["torch", "scaled_mm", "int_mm", "humming"] if a_name == "int8" else ["torch", "scaled_mm", "humming"]
    assert cfg["peers"] == want and doc["cublas_peak_tflops"] == pytest.approx(1400.0)
    assert doc["cublas_peak_problem"].startswith(f"fake {a_name}")
    assert set(doc["peers"]) == set(want) and doc["peers"]["scaled_mm"]["notes"]
    for r in doc["rows"]:
        ours = r["impls"][OURS]
        assert ours["status"] == "ok" and ours["rel_err"] < 2e-3 and ours["quant_ms"] == 0.5
        assert ours["ms_end_to_end"] == 1.0 and 0.005 < ours["rel_err_vs_float"] < 0.3  # int4 weight
        assert r["bytes"]["activations"] == r["m"] * 128 and r["bytes"]["output"] == r["m"] * 64 * 2
        for p in want[:-1]:
            assert r["impls"][p]["status"] == "ok" and r["impls"][p]["ms_end_to_end"] == 0.5, r["impls"][p]
            assert r["ratio_end_to_end_vs"][p] == pytest.approx(2.0)
        assert r["impls"]["humming"]["status"] == "skipped" and r["ratio_end_to_end_vs"]["humming"] is None
    b2b, plain = doc["rows"]        # M = 1 is in the default --back-to-back-m, 20 is not
    assert cfg["back_to_back_ms"] == [1] and "ratio_back_to_back_vs" not in plain
    assert b2b["impls"][OURS]["ms_back_to_back"] == 0.25 and b2b["impls"][OURS]["copies_back_to_back"] >= 2
    for p in want[:-1]:
        assert b2b["impls"][p]["ms_back_to_back"] == 0.25 and b2b["ratio_back_to_back_vs"][p] == 1.0
    assert b2b["ratio_back_to_back_vs"]["humming"] is None and "back to back" in out
    md = table(doc).splitlines()
    assert len(md) == 2 + len(doc["rows"])
    assert md[0].startswith("| N x K | M | humming-cute ms | quantize ms | end-to-end ms | % memory floor")
    assert "torch._scaled_mm fp8 ms" in md[0] and "vs Humming end-to-end" in md[0]
    assert md[2].startswith("| 64 x 128 | 1 | 0.5000 | 0.5000 | 1.0000 |")
    if "PNG: " + str(png) in out:
        assert png.stat().st_size > 1000
    else:
        assert "matplotlib" in out


def test_main_act8_records_int4_as_not_applicable(monkeypatch, tmp_path, capsys):
    run = _cpu_main_setup(monkeypatch)
    js = tmp_path / "a8.json"
    assert run.main(["--a-dtype", "float8e5m2", "--b-dtype", "int4", "--group-size", "0", "--shapes", "64x128",
                     "--m", "4", "--peers", "int4,int_mm", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    row = doc["rows"][0]
    assert row["impls"]["int4"]["status"] == "skipped" and "float8e5m2" in row["impls"]["int4"]["reason"]
    assert row["impls"]["int_mm"]["status"] == "skipped" and "int8 activations" in row["impls"]["int_mm"]["reason"]


def test_main_act8_stops_when_quantize_input_differs(monkeypatch, tmp_path):
    import humming_cute as hc
    from humming_cute.quant.activation import quantize_activation

    run = _cpu_main_setup(monkeypatch)

    def off_by_one(x, dtype, group_size=0):
        q, s = quantize_activation(x, dtype, group_size)
        return q, s * 2

    monkeypatch.setattr(hc, "quantize_input", off_by_one)
    with pytest.raises(core.BenchError, match="quantize_input"):
        run.main(["--a-dtype", "int8", "--b-dtype", "int4", "--group-size", "0", "--shapes", "64x128", "--m", "3",
                  "--peers", "none"])
