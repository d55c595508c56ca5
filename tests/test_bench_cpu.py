"""The benchmark tool's pure-python parts (options, floor arithmetic, rows, table, JSON, progress, plot): no GPU."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest

from humming_cute.bench import core
from humming_cute.bench.core import OURS


# ------------------------------------------------------------------------------------------------------------
# options


def test_defaults_are_the_issue_defaults():
    a = core.parse_args([])
    assert a.shape_list == [(8192, 8192), (4096, 4096), (28672, 4096), (4096, 14336)]
    assert a.m_list == [1, 16, 64, 256, 1024, 4096]
    assert a.peer_list == ["torch", "int4", "humming"]
    assert (a.a_dtype, a.b_dtype, a.group_size, a.scale_dtype) == ("float16", "uint4", 128, "float16")
    assert a.json is None and a.png is None and a.reps > 0
    assert a.b2b_list == [1, 16, 64]


def test_back_to_back_options():
    assert core.parse_args(["--m", "1,256"]).b2b_list == [1]               # the default list, cut to --m
    assert core.parse_args(["--back-to-back-m", "none"]).b2b_list == []
    assert core.parse_args(["--back-to-back-m", "256,1", "--m", "1,256,4096"]).b2b_list == [256, 1]
    assert core.parse_args(["--moe"]).b2b_list == [1, 16, 64]                # MoE: token counts
    assert core.parse_args(["--moe", "--tokens", "2,16"]).b2b_list == [16]
    assert core.parse_args(["--moe", "--back-to-back-m", "2", "--tokens", "2,16"]).b2b_list == [2]
    for argv in (["--back-to-back-m", "7", "--m", "1,16"], ["--back-to-back-m", "1,16,64", "--m", "1,16"], ["--moe", "--back-to-back-m", "3", "--tokens", "1,2"],
                 ["--back-to-back-m", "0"]):
        with pytest.raises(SystemExit):
            core.parse_args(argv)


def test_back_to_back_between(monkeypatch):
    """--back-to-back-between (dense mode with back-to-back timings only): every back-to-back call is followed by
    a torch kernel on its output, ours and the peers' alike, and the JSON's timer note says so."""
    torch = pytest.importorskip("torch")
    import humming_cute as hc
    import humming_cute.bench.timing as timing
    from humming_cute.bench import run

    assert core.parse_args(["--back-to-back-between"]).back_to_back_between
    assert not core.parse_args([]).back_to_back_between
    for argv in (["--moe", "--back-to-back-between"], ["--back-to-back-between", "--back-to-back-m", "none"]):
        with pytest.raises(SystemExit):
            core.parse_args(argv)
    assert "torch kernel on its output" in timing.back_to_back_name(True)
    assert "torch kernel" not in timing.back_to_back_name()

    class Out(torch.Tensor):
        added = 0

        def add_(self, *a, **kw):
            Out.added += 1
            return super().add_(*a, **kw)

    class Peer:
        tol = 1e-3

        def to_input(self, x):
            return x

        def call(self, x):
            return torch.ones(2, 3).as_subclass(Out)

    monkeypatch.setattr(hc, "gemm", lambda x, p, **kw: torch.ones(2, 3).as_subclass(Out))
    monkeypatch.setattr(timing, "bench_ms_back_to_back", lambda fns, rep_ms=100.0: ([f() for f in fns], 0.25)[1])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **kw: None)
    rotation = {OURS: ["w0", "w1"], "humming": [Peer(), Peer()]}
    impls = {"humming": {"status": "ok"}}
    times, copies = run._back_to_back(rotation, impls, torch.zeros(2, 4), None, 1e-3, 1.0, _Bar(), {})
    assert Out.added == 0 and times == {OURS: 0.25, "humming": 0.25} and copies == {OURS: 2, "humming": 2}
    times, copies = run._back_to_back(rotation, impls, torch.zeros(2, 4), None, 1e-3, 1.0, _Bar(), {},
                                      between=True)
    assert times == {OURS: 0.25, "humming": 0.25}
    assert Out.added == 2 * (2 + 2)            # per implementation: the copy check and the timed calls


def test_timing_rounds(monkeypatch):
    """--rounds R (16-bit activations, dense and MoE): every ok implementation of a row is timed R times, the order
    reversed every other round, and reports the median of its rounds with the derived numbers recomputed; the
    first round's time is the one already measured; failed peers and peers without a call are left as they are."""
    import humming_cute.bench.timing as timing
    from humming_cute.bench import run

    assert core.parse_args([]).rounds == 1 and core.parse_args(["--rounds", "3"]).rounds == 3
    assert core.parse_args(["--moe", "--rounds", "2"]).rounds == 2
    for argv in (["--rounds", "0"], ["--a-dtype", "float8e4m3", "--b-dtype", "int4", "--rounds", "2"]):
        with pytest.raises(SystemExit):
            core.parse_args(argv)
    assert core.round_orders(["a", "b", "c"], 4) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"],
                                                     ["c", "b", "a"]]
    assert core.round_orders(["a", "b"], 1) == [["a", "b"]]

    row = dict(m=16, n=4096, k=4096, bytes_=core.format_bytes(16, 4096, 4096, b_bits=4, group_size=128,
                                                               scale_bits=16, zero_point=True),
               memory_floor=0.005, compute_floor=0.001)
    clock = iter(range(100))
    visits = []

    def fake_bench(fn, rep_ms=100.0, graph=True):
        visits.append(fn())
        return (10 + next(clock)) / 1000

    monkeypatch.setattr(timing, "bench_ms", fake_bench)
    impls = {OURS: core.ok_entry(0.020, 1e-4, 0.1, **row), "torch": core.ok_entry(0.030, 1e-4, 0.1, **row),
             "humming": core.skipped_entry("failed", "x"), "int4": core.ok_entry(0.040, 1e-4, 0.1, **row)}
    calls = {OURS: lambda: OURS, "torch": {"call": lambda: "torch"}, "humming": {}, "int4": {}}
    out = run._more_rounds(impls, calls, 3, 50.0, **row)
    assert visits == ["torch", OURS, OURS, "torch"]           # round 1 reversed, round 2 as given
    assert out[OURS]["ms_rounds"] == [0.020, 0.011, 0.012] and out[OURS]["ms"] == 0.012
    assert out["torch"]["ms_rounds"] == [0.030, 0.010, 0.013] and out["torch"]["ms"] == 0.013
    assert out[OURS]["tflops"] == core.impl_metrics(0.012, m=16, n=4096, k=4096, weight_bytes=row["bytes_"][
        "weight_total"], memory_floor=0.005, compute_floor=0.001)["tflops"]
    assert out["humming"] == impls["humming"] and out["int4"] == impls["int4"]       # no call kept: unchanged
    assert "ms_rounds" not in impls[OURS]                                             # the input is not modified
    json.dumps(core.sanitize(out))
    # an MoE record's sum with the routing alignment follows its new time
    moe = core.with_rounds(core.with_align(core.ok_entry(0.020, 1e-4, 0.1, **row), 0.005), [0.020, 0.030, 0.040],
                           **row)
    assert moe["ms"] == 0.030 and moe["ms_with_align"] == 0.030 + 0.005


def test_rotation_copies():
    from humming_cute.bench.timing import rotation_copies

    l2 = 50 << 20
    assert rotation_copies(33.5e6, l2) == 5            # 5 x 33.5 MB >= 3 x 50 MiB
    assert rotation_copies(134e6, l2) == 2             # at least two, whatever the size
    assert rotation_copies(1e3, l2) == 64              # at most 64
    assert all(r * w >= 3 * l2 for w in (8.4e6, 33.5e6, 59e6) for r in [rotation_copies(w, l2)])


def test_parse_shapes_and_ms():
    assert core.parse_shapes("8192x8192, 28672X4096") == [(8192, 8192), (28672, 4096)]
    assert core.parse_ms("1,16,16,4") == [1, 16, 4]
    for bad in ("", "8192", "8x", "0x64", "8x8x8", "ax8"):
        with pytest.raises(ValueError):
            core.parse_shapes(bad)
    for bad in ("", "0", "-1", "1.5", "x"):
        with pytest.raises(ValueError):
            core.parse_ms(bad)


def test_parse_peers():
    assert core.parse_peers("humming,torch") == ["torch", "humming"]  # canonical order
    assert core.parse_peers("all") == list(core.PEERS)
    assert core.parse_peers("none") == [] and core.parse_peers("") == []
    with pytest.raises(ValueError, match="marlin"):
        core.parse_peers("torch,marlin")


@pytest.mark.parametrize("argv", [["--peers", "cutlass"], ["--shapes", "8x"], ["--m", "0"], ["--a-dtype", "int4"],
                                  ["--group-size", "-1"], ["--group-size", "96", "--shapes", "64x128"],
                                  ["--reps", "0"]])
def test_bad_options_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        core.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_options_are_parsed():
    a = core.parse_args(["--a-dtype", "bfloat16", "--b-dtype", "int4", "--group-size", "0", "--scale-dtype",
                         "bfloat16", "--shapes", "256x512", "--m", "1,3", "--peers", "int4", "--json", "r.json",
                         "--png", "r.png", "--reps", "20"])
    assert (a.a_dtype, a.b_dtype, a.group_size, a.scale_dtype) == ("bfloat16", "int4", 0, "bfloat16")
    assert (a.shape_list, a.m_list, a.peer_list) == ([(256, 512)], [1, 3], ["int4"])
    assert (a.json, a.png, a.reps) == ("r.json", "r.png", 20.0)


def test_command_line_reproduces_the_call():
    assert core.command_line(["--m", "1,16", "--shapes", "a b"]) == \
        "python -m humming_cute.bench --m 1,16 --shapes 'a b'"


def test_tolerance():
    assert core.tolerance("float16") < core.tolerance("bfloat16") <= 1e-2


# ------------------------------------------------------------------------------------------------------------
# floor arithmetic


def test_format_bytes_w4a16_g128():
    b = core.format_bytes(1, 8192, 8192, b_bits=4, group_size=128, scale_bits=16, zero_point=True)
    assert b["weight"] == 8192 * 8192 // 2
    assert b["scales"] == 8192 * 64 * 2
    assert b["zero_points"] == 8192 * 64 // 2
    assert b["activations"] == 8192 * 2 and b["output"] == 8192 * 2
    assert b["weight_total"] == b["weight"] + b["scales"] + b["zero_points"]
    assert b["total"] == b["weight_total"] + b["activations"] + b["output"]


def test_format_bytes_channelwise_symmetric_and_fp8_scales():
    b = core.format_bytes(16, 4096, 14336, b_bits=8, group_size=0, scale_bits=32, zero_point=False)
    assert b["weight"] == 4096 * 14336 and b["scales"] == 4096 * 4 and b["zero_points"] == 0
    b = core.format_bytes(4, 64, 256, b_bits=4, group_size=32, scale_bits=8, zero_point=False)
    assert b["scales"] == 64 * 8 and b["activations"] == 4 * 256 * 2 and b["output"] == 4 * 64 * 2


def test_floors():
    # 3 TB/s (read + write counted) moves 3e9 bytes in 1 ms
    assert core.memory_floor_ms(3e9, 3e12) == pytest.approx(1.0)
    # 2*M*N*K = 2e12 flop at 1e15 flop/s = 2 ms
    assert core.compute_floor_ms(1000, 1000, 1000, 1e15) == pytest.approx(2e-3)
    assert core.compute_floor_ms(10000, 10000, 10000, 1e15) == pytest.approx(2.0)


def test_impl_metrics():
    e = core.impl_metrics(0.5, m=16, n=8192, k=8192, weight_bytes=1e9, memory_floor=0.25, compute_floor=0.1)
    assert e["ms"] == 0.5
    assert e["tflops"] == pytest.approx(2 * 16 * 8192 * 8192 / 0.5e-3 / 1e12)
    assert e["weight_gbps"] == pytest.approx(2000.0)
    assert e["pct_of_memory_floor"] == pytest.approx(50.0)
    assert e["pct_of_compute_floor"] == pytest.approx(20.0)
    assert e["pct_of_floor"] == pytest.approx(50.0)


# ------------------------------------------------------------------------------------------------------------
# rows, JSON, table


def _row(m=16, ours_ms=0.02, peers=None):
    n = k = 8192
    b = core.format_bytes(m, n, k, b_bits=4, group_size=128, scale_bits=16, zero_point=True)
    mf, cf = core.memory_floor_ms(b["total"], 3e12), core.compute_floor_ms(m, n, k, 7e14)
    impls = {OURS: core.ok_entry(ours_ms, 3e-4, 0.1, m=m, n=n, k=k, bytes_=b, memory_floor=mf, compute_floor=cf)}
    for name, v in (peers or {}).items():
        if isinstance(v, float):
            impls[name] = core.ok_entry(v, 4e-4, 0.1, m=m, n=n, k=k, bytes_=b, memory_floor=mf, compute_floor=cf)
        else:
            impls[name] = core.skipped_entry(*v)
    return core.build_row(m, n, k, b, mf, cf, impls)


def test_build_row_ratios():
    r = _row(ours_ms=0.02, peers={"torch": 0.06, "int4": ("skipped", "takes 4-bit ints only"),
                                  "humming": ("failed", "RuntimeError: boom")})
    assert r["ratio_vs"]["torch"] == pytest.approx(1 / 3)
    assert r["ratio_vs"]["int4"] is None and r["ratio_vs"]["humming"] is None
    assert r["floor_ms"] == max(r["memory_floor_ms"], r["compute_floor_ms"])
    assert r["impls"]["int4"] == {"status": "skipped", "reason": "takes 4-bit ints only"}
    assert r["impls"][OURS]["weight_gbps"] == pytest.approx(r["bytes"]["weight_total"] / 0.02e-3 / 1e9)


def test_skipped_entry_checks_status_and_truncates():
    with pytest.raises(AssertionError):
        core.skipped_entry("oops", "x")
    e = core.skipped_entry("failed", "y" * 10000)
    assert len(e["reason"]) < 2100 and e["reason"].endswith("[...]")


def test_assemble_result_is_strict_json(tmp_path):
    rows = [_row(1, peers={"torch": 0.05}), _row(16, peers={"torch": ("wrong", "rel err 1e-1")})]
    rows[0]["impls"][OURS]["rel_err_vs_float"] = float("nan")
    env = dict(card="NVIDIA H100 80GB HBM3", driver="580", torch="2.11", cutlass_dsl="4.8.1", date="2026-11-25",
               command="python -m humming_cute.bench")
    doc = core.assemble_result(env=env, config=dict(a_dtype="float16", shapes=("8192x8192",)),
                               measured=dict(copy_bandwidth_gbps=3000.0, cublas_peak_tflops=700.0),
                               peers={"torch": dict(label="torch", notes=[], reasons=["rel err 1e-1"])}, rows=rows,
                               extra=dict(compile={"compiles": 2}))
    text = json.dumps(doc, allow_nan=False)  # NaN became null
    back = json.loads(text)
    for key in ("card", "driver", "torch", "cutlass_dsl", "date", "command", "copy_bandwidth_gbps",
                "cublas_peak_tflops", "config", "peers", "rows", "compile"):
        assert key in back
    assert back["rows"][0]["impls"][OURS]["rel_err_vs_float"] is None
    assert back["config"]["shapes"] == ["8192x8192"]
    path = tmp_path / "r.json"
    core.write_json(str(path), doc)
    assert json.loads(path.read_text()) == back


def test_sanitize():
    assert core.sanitize({1: (1.0, math.inf, None, "s", True)}) == {"1": [1.0, None, None, "s", True]}
    assert core.sanitize(object()).startswith("<object")


def test_format_table():
    rows = [_row(1, ours_ms=0.025, peers={"torch": 0.05, "humming": ("skipped", "not installed")}),
            _row(4096, ours_ms=1.5, peers={"torch": 1.0, "humming": 2.0})]
    text = core.format_table(rows, ["torch", "humming"])
    lines = text.splitlines()
    assert len(lines) == 4
    assert "hc/torch" in lines[0] and "humming ms" in lines[0] and "int4" not in lines[0]
    assert all(len(line) == len(lines[0]) for line in lines[2:])
    assert "0.0250" in lines[2] and "0.500" in lines[2]  # ratio 0.025 / 0.05
    assert lines[2].rstrip().split("|")[3].split() == ["-", "-"]  # humming skipped on M=1
    assert "1.500" in lines[3] and "0.750" in lines[3]


def test_format_summary():
    s = core.format_summary({"int4": dict(label="torch int4", notes=["bf16 activations"],
                                          reasons=["takes 4-bit ints only"])})
    assert "int4: torch int4" in s and "note: bf16 activations" in s and "not timed: takes 4-bit ints only" in s


# ------------------------------------------------------------------------------------------------------------
# progress


def test_simple_progress_counts_and_prints(capsys):
    err = io.StringIO()
    p = core.SimpleProgress(3, "bench", file=err)
    p.set_postfix_str("8192x8192 M=1")
    p.update()
    p.write("[humming] not timed: not installed")
    p.update(2)
    p.close()
    assert "bench 3/3" in err.getvalue() and "8192x8192 M=1" in err.getvalue()
    assert "[humming] not timed: not installed" in capsys.readouterr().out


def test_progress_bar_works_with_or_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails -> fallback
    bar = core.progress_bar(2)
    assert isinstance(bar, core.SimpleProgress)
    bar.close()


# ------------------------------------------------------------------------------------------------------------
# plot and the command line


def test_png_without_matplotlib_says_so(monkeypatch, tmp_path):
    from humming_cute.bench import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    why = plot.write_png({"rows": [_row()]}, str(tmp_path / "x.png"))
    assert "matplotlib" in why and not (tmp_path / "x.png").exists()


def test_plot_command_redraws_a_saved_run(monkeypatch, tmp_path, capsys):
    """`python -m humming_cute.bench.plot RESULT.json OUT.png` reads the JSON and draws it (or says why not)."""
    import json

    from humming_cute.bench import plot

    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(rows=[_row(1, peers={"torch": 0.05})], card="card", config={},
                                    copy_bandwidth_gbps=3000.0, date="2026")))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot.main([str(path), str(tmp_path / "x.png")]) == 1 and "matplotlib" in capsys.readouterr().out
    monkeypatch.undo()      # the real module (or its absence) back: a second import would orphan its submodules
    pytest.importorskip("matplotlib")
    assert plot.main([str(path), str(tmp_path / "x.png")]) == 0 and (tmp_path / "x.png").stat().st_size > 1000


def test_plot_series_and_png(tmp_path):
    from humming_cute.bench import plot

    rows = [_row(1, peers={"torch": 0.05}), _row(16, peers={"torch": ("failed", "x")}), _row(64, peers={"torch": 0.06})]
    assert plot.series(rows, "torch", "ms", (8192, 8192)) == ([1, 64], [0.05, 0.06])
    assert plot.series(rows, OURS, "ms", (4096, 4096)) == ([], [])
    pytest.importorskip("matplotlib")
    doc = dict(rows=rows, card="card", config={}, copy_bandwidth_gbps=3000.0, date="2026")
    assert plot.write_png(doc, str(tmp_path / "x.png")) is None
    assert (tmp_path / "x.png").stat().st_size > 1000


def test_help_runs_without_a_gpu():
    out = subprocess.run([sys.executable, "-m", "humming_cute.bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for opt in ("--a-dtype", "--b-dtype", "--group-size", "--scale-dtype", "--shapes", "--m", "--peers", "--json",
                "--png", "--reps", "--moe", "--moe-preset", "--moe-proj", "--tokens", "qwen3-30b-a3b", "mixtral"):
        assert opt in out.stdout


def test_bench_modules_import_without_a_gpu():
    import humming_cute.bench.moe  # noqa: F401
    import humming_cute.bench.peers  # noqa: F401
    import humming_cute.bench.run  # noqa: F401
    import humming_cute.bench.timing  # noqa: F401


# ------------------------------------------------------------------------------------------------------------
# MoE mode: presets and options


def test_moe_presets_are_the_issue_layers():
    q, m = core.MOE_PRESETS["qwen3-30b-a3b"], core.MOE_PRESETS["mixtral"]
    assert (q["num_experts"], q["top_k"], q["up"], q["down"]) == (128, 8, (1536, 2048), (2048, 768))
    assert (m["num_experts"], m["top_k"], m["up"], m["down"]) == (8, 2, (28672, 4096), (4096, 14336))
    for p in (q, m):  # up = gate+up (2 x intermediate), down reads the intermediate
        assert p["up"][0] == 2 * p["down"][1] and p["up"][1] == p["down"][0]


def test_moe_defaults():
    a = core.parse_args(["--moe"])
    assert a.moe and a.moe_presets == ["qwen3-30b-a3b", "mixtral"] and a.moe_projections == ["up", "down"]
    assert a.token_list == [1, 16, 64, 512, 4096]
    assert a.peer_list == ["torch", "humming"]
    assert a.shape_list == [] and a.m_list == []
    assert [(j["preset"], j["projection"], j["n"], j["k"], j["is_down"]) for j in a.moe_jobs] == [
        ("qwen3-30b-a3b", "up", 1536, 2048, False), ("qwen3-30b-a3b", "down", 2048, 768, True),
        ("mixtral", "up", 28672, 4096, False), ("mixtral", "down", 4096, 14336, True)]
    assert all(j["num_experts"] in (128, 8) and j["top_k"] in (8, 2) for j in a.moe_jobs)
    dense = core.parse_args([])
    assert dense.moe is False and dense.moe_jobs == [] and dense.token_list is None


def test_moe_options_are_parsed():
    a = core.parse_args(["--moe", "--moe-preset", "mixtral", "--moe-proj", "down", "--tokens", "4096,1,1",
                         "--peers", "humming", "--group-size", "1024"])
    assert a.moe_presets == ["mixtral"] and a.moe_projections == ["down"] and a.token_list == [4096, 1]
    assert a.peer_list == ["humming"]
    assert [(j["n"], j["k"], j["num_experts"], j["top_k"]) for j in a.moe_jobs] == [(4096, 14336, 8, 2)]
    assert core.parse_args(["--moe", "--peers", "all"]).peer_list == ["torch", "humming"]
    assert core.parse_args(["--moe", "--peers", "none"]).peer_list == []
    assert core.parse_moe_presets("all") == ["qwen3-30b-a3b", "mixtral"]
    assert core.parse_moe_presets(" Mixtral ,mixtral") == ["mixtral"]
    assert core.parse_moe_projections("down,up") == ["down", "up"]


@pytest.mark.parametrize("argv", [["--tokens", "1"], ["--moe-preset", "mixtral"], ["--moe-proj", "up"],
                                  ["--moe", "--shapes", "64x64"], ["--moe", "--m", "1"],
                                  ["--moe", "--peers", "int4"], ["--moe", "--peers", "torch,cutlass"],
                                  ["--moe", "--moe-preset", "deepseek"], ["--moe", "--moe-preset", ","],
                                  ["--moe", "--moe-proj", "gate"], ["--moe", "--tokens", "0"],
                                  ["--moe", "--tokens", "1,x"],
                                  # 768 (qwen down K) is not a multiple of 512; 14336 is not of 4096
                                  ["--moe", "--group-size", "512"],
                                  ["--moe", "--moe-preset", "mixtral", "--group-size", "4096"],
                                  ["--moe", "--reps", "-1"], ["--moe", "--a-dtype", "float8e4m3"]])
def test_bad_moe_options_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        core.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_moe_group_size_is_checked_per_preset(capsys):
    assert core.parse_args(["--moe", "--moe-preset", "mixtral", "--group-size", "1024"]).group_size == 1024
    with pytest.raises(SystemExit):
        core.parse_args(["--moe", "--moe-preset", "qwen3-30b-a3b", "--group-size", "1024"])
    assert "768" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# MoE mode: floor arithmetic


def test_moe_format_bytes_counts_the_touched_experts():
    fmt = dict(b_bits=4, group_size=128, scale_bits=16, zero_point=True)
    b = core.moe_format_bytes(1, 1536, 2048, top_k=8, experts_touched=8, is_down=False, **fmt)
    one = 1536 * 2048 // 2 + 1536 * 16 * 2 + 1536 * 16 // 2  # one expert: codes + fp16 scales + 4-bit zeros
    assert b["weight_per_expert"] == one and b["experts_touched"] == 8
    assert b["weight"] == 8 * 1536 * 2048 // 2 and b["scales"] == 8 * 1536 * 16 * 2
    assert b["zero_points"] == 8 * 1536 * 16 // 2 and b["weight_total"] == 8 * one
    assert b["activations"] == 1 * 2048 * 2            # up: each token row read once
    assert b["output"] == 1 * 8 * 1536 * 2             # tokens * top_k rows written
    assert b["total"] == b["weight_total"] + b["activations"] + b["output"]
    # the weight part scales with the experts touched, the rest does not
    b3 = core.moe_format_bytes(1, 1536, 2048, top_k=8, experts_touched=3, is_down=False, **fmt)
    assert b3["weight_total"] == 3 * one and b3["activations"] == b["activations"] and b3["output"] == b["output"]
    # down: the routed rows are read
    d = core.moe_format_bytes(16, 4096, 14336, top_k=2, experts_touched=8, is_down=True, b_bits=4, group_size=0,
                              scale_bits=32, zero_point=False)
    assert d["weight"] == 8 * 4096 * 14336 // 2 and d["scales"] == 8 * 4096 * 4 and d["zero_points"] == 0
    assert d["activations"] == 16 * 2 * 14336 * 2 and d["output"] == 16 * 2 * 4096 * 2
    assert core.moe_format_bytes(4, 64, 128, top_k=2, experts_touched=0, is_down=False, **fmt)["weight_total"] == 0
    with pytest.raises(ValueError):
        core.moe_format_bytes(4, 64, 128, top_k=2, experts_touched=-1, is_down=False, **fmt)


def test_moe_floors():
    # Mixtral up, 1 token, 2 experts hit: 2 * 28672 * 4096 / 2 bytes of codes + scales + zeros ...
    b = core.moe_format_bytes(1, 28672, 4096, top_k=2, experts_touched=2, is_down=False, b_bits=4, group_size=128,
                              scale_bits=16, zero_point=True)
    # ... at 3.35 TB/s (read + write counted)
    assert core.memory_floor_ms(b["total"], 3.35e12) == pytest.approx(b["total"] / 3.35e12 * 1e3)
    assert b["weight_total"] == pytest.approx(2 * 28672 * 4096 * (0.5 + 2 / 128 + 0.5 / 128))
    assert core.moe_flops(16, 2, 4096, 14336) == 2.0 * 16 * 2 * 4096 * 14336
    assert core.compute_floor_ms(16 * 2, 4096, 14336, 1e15) == pytest.approx(core.moe_flops(16, 2, 4096, 14336)
                                                                               / 1e15 * 1e3)


def test_expected_experts_touched():
    assert core.expected_experts_touched(1, 8, 128) == pytest.approx(8)
    assert core.expected_experts_touched(2, 2, 8) == pytest.approx(8 * (1 - 0.75 ** 2))   # 3.5
    assert core.expected_experts_touched(4096, 8, 128) == pytest.approx(128)
    assert core.expected_experts_touched(3, 8, 8) == 8
    with pytest.raises(ValueError):
        core.expected_experts_touched(1, 9, 8)


def test_select_interval_follows_humming_launcher():
    iv = [[0, 8, "a"], [8, 64, "b"], [64, 1 << 30, "c"]]
    assert [core.select_interval(iv, m)[2] for m in (1, 8, 9, 64, 65, 1 << 30)] == ["a", "a", "b", "b", "c", "c"]
    assert core.select_interval([[0, 16, "a"], [16, 0, "z"]], 10 ** 6)[2] == "z"  # hi <= 0: no upper bound
    with pytest.raises(LookupError):
        core.select_interval(iv, 0)
    with pytest.raises(LookupError):
        core.select_interval([[0, 8, "a"]], 9)


# ------------------------------------------------------------------------------------------------------------
# MoE mode: rows, table, plot


_JOB = dict(preset="qwen3-30b-a3b", projection="up", num_experts=128, top_k=8, n=1536, k=2048, is_down=False)


def _moe_row(tokens=16, ours_ms=0.02, touched=60, align_ms=0.01, peers=None, job=_JOB):
    n, k, top_k = job["n"], job["k"], job["top_k"]
    b = core.moe_format_bytes(tokens, n, k, top_k=top_k, experts_touched=touched, is_down=job["is_down"],
                              b_bits=4, group_size=128, scale_bits=16, zero_point=True)
    mf, cf = core.memory_floor_ms(b["total"], 3e12), core.compute_floor_ms(tokens * top_k, n, k, 7e14)
    kw = dict(m=tokens * top_k, n=n, k=k, bytes_=b, memory_floor=mf, compute_floor=cf)
    impls = {OURS: core.with_align(core.ok_entry(ours_ms, 3e-4, 0.1, **kw), align_ms)}
    for name, v in (peers or {}).items():
        impls[name] = core.ok_entry(v, 4e-4, 0.1, **kw) if isinstance(v, float) else core.skipped_entry(*v)
    return core.build_moe_row(job, tokens, experts_touched=touched, block_m=16, bytes_=b, memory_floor=mf,
                              compute_floor=cf, impls=impls, align_ms=align_ms)


def test_build_moe_row():
    r = _moe_row(16, ours_ms=0.02, touched=60, peers={"torch": 0.08, "humming": ("failed", "RuntimeError: x")})
    assert (r["mode"], r["preset"], r["projection"], r["tokens"], r["top_k"]) == ("moe", "qwen3-30b-a3b", "up", 16, 8)
    assert r["m"] == 16 * 8 and r["flops"] == core.moe_flops(16, 8, 1536, 2048)
    assert r["experts_touched"] == 60 and r["num_experts"] == 128 and r["block_m"] == 16
    assert r["expected_experts_touched"] == pytest.approx(core.expected_experts_touched(16, 8, 128))
    assert r["ratio_vs"] == {"torch": pytest.approx(0.25), "humming": None}
    ours = r["impls"][OURS]
    assert ours["align_ms"] == 0.01 and ours["ms_with_align"] == pytest.approx(0.03) and r["align_ms"] == 0.01
    assert ours["pct_of_memory_floor"] == pytest.approx(100 * r["memory_floor_ms"] / 0.02)
    assert ours["weight_gbps"] == pytest.approx(r["bytes"]["weight_total"] / 0.02e-3 / 1e9)
    assert r["panel"] == "qwen3-30b-a3b up"
    # a record that is not ok gets no align fields
    assert core.with_align(core.skipped_entry("failed", "x"), 0.01) == {"status": "failed", "reason": "x"}


def test_moe_rows_are_strict_json(tmp_path):
    rows = [_moe_row(1, peers={"torch": 0.05}), _moe_row(4096, peers={"humming": ("wrong", "rel err 1e-1")})]
    doc = core.assemble_result(env=dict(card="H100"), config=dict(mode="moe", presets=core.MOE_PRESETS),
                               measured={}, peers={}, rows=rows)
    back = json.loads(json.dumps(doc, allow_nan=False))
    assert back["config"]["presets"]["mixtral"]["up"] == [28672, 4096]
    assert back["rows"][1]["impls"]["humming"]["status"] == "wrong"
    core.write_json(str(tmp_path / "m.json"), doc)
    assert json.loads((tmp_path / "m.json").read_text()) == back


def test_format_moe_table():
    down = dict(_JOB, projection="down", n=2048, k=768, is_down=True)
    rows = [_moe_row(1, ours_ms=0.025, touched=8, peers={"torch": 0.05, "humming": ("skipped", "not installed")}),
            _moe_row(4096, ours_ms=1.5, touched=128, peers={"torch": 3.0, "humming": 2.0}, job=down)]
    text = core.format_moe_table(rows, ["torch", "humming"])
    lines = text.splitlines()
    assert len(lines) == 4
    assert "hc/torch" in lines[0] and "hc/humming" in lines[0] and "align ms" in lines[0] and "E hit" in lines[0]
    assert all(len(line) == len(lines[0]) for line in lines[2:])
    assert "qwen3-30b-a3b" in lines[2] and " up " in lines[2] and "0.0250" in lines[2] and "0.500" in lines[2]
    assert lines[2].rstrip().split("|")[3].split() == ["-", "-"]  # humming skipped
    assert "down" in lines[3] and " 4096 " in lines[3] and "0.500" in lines[3] and "0.750" in lines[3]


def test_moe_plot_series_and_png(tmp_path):
    from humming_cute.bench import plot

    down = dict(_JOB, projection="down", n=2048, k=768, is_down=True)
    rows = [_moe_row(1, peers={"torch": 0.05}), _moe_row(16, peers={"torch": ("failed", "x")}),
            _moe_row(1, peers={"torch": 0.07}, job=down)]
    assert plot.series(rows, "torch", "ms", "qwen3-30b-a3b up") == ([1], [0.05])
    assert plot.series(rows, OURS, "ms", "qwen3-30b-a3b up") == ([1, 16], [0.02, 0.02])  # x = tokens, not M
    assert plot.series(rows, "torch", "ms", "qwen3-30b-a3b down") == ([1], [0.07])
    assert plot.panel_of(rows[2]) == "qwen3-30b-a3b down" and plot.panel_of(_row()) == (8192, 8192)
    pytest.importorskip("matplotlib")
    doc = dict(rows=rows, card="card", config={}, copy_bandwidth_gbps=3000.0, date="2026")
    assert plot.write_png(doc, str(tmp_path / "m.png")) is None
    assert (tmp_path / "m.png").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------------------
# MoE mode: the torch parts of the loop, run on the CPU (references, routing, the naive baseline, the loop's glue
# with humming_cute's kernel replaced by its reference)


def test_draw_routing_is_distinct_and_normalised():
    torch = pytest.importorskip("torch")
    from humming_cute.bench.moe import draw_routing

    ids, w = draw_routing(300, 8, 2, 5, torch.device("cpu"))
    assert ids.dtype == torch.int32 and ids.shape == (300, 2) and w.shape == (300, 2) and w.dtype == torch.float32
    assert bool((ids[:, 0] != ids[:, 1]).all()) and int(ids.min()) >= 0 and int(ids.max()) < 8
    assert torch.allclose(w.sum(1), torch.ones(300)) and bool((w > 0).all())
    counts = torch.bincount(ids.reshape(-1).long(), minlength=8)
    assert int(counts.min()) > 40  # 75 expected per expert
    ids2, _ = draw_routing(300, 8, 2, 5, torch.device("cpu"))
    assert torch.equal(ids, ids2)  # seeded
    ids3, _ = draw_routing(4, 128, 8, 1, torch.device("cpu"))
    assert all(len(set(r)) == 8 for r in ids3.tolist())


@pytest.mark.parametrize("down", [False, True])
def test_routed_reference_matches_reference_moe_gemm(down):
    torch = pytest.importorskip("torch")
    import humming_cute as hc
    from humming_cute.bench.moe import draw_routing, routed_reference
    from humming_cute.quant.reference import reference_moe_gemm

    e, top_k, tokens, n, k = 6, 2, 9, 32, 64
    qw = hc.quantize_weight(torch.randn(e, n, k), "uint4", 32, "float16")
    ids, tw = draw_routing(tokens, e, top_k, 3, torch.device("cpu"))
    x = torch.randn(tokens * top_k if down else tokens, k).half()
    s, ex, npad = hc.moe_align_block_size(ids, 16, e)
    ref = reference_moe_gemm(x, qw, s, ex, npad, top_k=top_k, block_m=16, topk_weights=tw, mul_topk_weights=down,
                             is_down=down, out_dtype=torch.float32)
    mine = routed_reference(x, hc.dequantize_weight(qw), ids, top_k, down, tw if down else None)
    assert mine.shape == (tokens, top_k, n)
    assert torch.allclose(mine, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("down", [False, True])
def test_torch_moe_peer_is_the_routed_product(down):
    torch = pytest.importorskip("torch")
    from humming_cute.bench.moe import draw_routing, routed_reference
    from humming_cute.bench.peers import MoeProblem, torch_moe_peer

    e, top_k, tokens, n, k = 8, 2, 5, 16, 32
    w = torch.randn(e, n, k)
    ids, tw = draw_routing(tokens, e, top_k, 7, torch.device("cpu"))
    x = torch.randn(tokens * top_k if down else tokens, k)
    peer = torch_moe_peer(w, 1e-6, mul_topk_weights=True)
    pb = MoeProblem(x=x, topk_ids=ids, topk_weights=tw, top_k=top_k, num_experts=e, is_down=down,
                    out=torch.full((tokens, top_k, n), float("nan")))
    call, info = peer.prepare(pb)
    assert info["experts_in_loop"] == int(torch.unique(ids).numel())
    y = call()
    assert y is pb.out and not bool(torch.isnan(y).any())
    ref = routed_reference(x, w, ids, top_k, down, tw if down else None)
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-4)


class _Bar:
    def __init__(self):
        self.messages, self.n = [], 0

    def set_postfix_str(self, s):
        pass

    def update(self, k=1):
        self.n += k

    def write(self, msg):
        self.messages.append(msg)


def _cpu_moe_setup(monkeypatch, fake_gemm):
    """Run `moe.job_rows` on the CPU: humming_cute's kernel replaced by `fake_gemm`, prepare_weight by the
    identity (the fake gets the QuantizedWeight), timing by a constant, no Humming package."""
    torch = pytest.importorskip("torch")
    import humming_cute as hc
    from humming_cute.bench import timing

    monkeypatch.setattr(hc, "prepare_weight", lambda qw, a_dtype: qw)
    monkeypatch.setattr(hc, "moe_gemm", fake_gemm)
    monkeypatch.setattr(timing, "bench_ms", lambda fn, rep_ms=100.0: (fn(), 0.5)[1])
    monkeypatch.setattr(timing, "bench_ms_back_to_back", lambda fns, rep_ms=100.0: ([f() for f in fns], 0.25)[1])
    monkeypatch.setattr(timing, "l2_bytes", lambda device: 50 << 20)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **kw: None)
    monkeypatch.setitem(sys.modules, "humming", None)  # import fails -> the peer is recorded as skipped
    return torch


def _reference_gemm(x, qw, sorted_ids, expert_ids, num_post, *, top_k, block_m, topk_weights=None,
                    mul_topk_weights=False, is_down=False, out=None):
    import torch

    from humming_cute.quant.reference import reference_moe_gemm

    y = reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                           topk_weights=topk_weights, mul_topk_weights=mul_topk_weights, is_down=is_down,
                           out_dtype=torch.float32)
    out.copy_(y.to(out.dtype))
    return out


@pytest.mark.parametrize("down", [False, True])
def test_moe_loop_on_cpu(monkeypatch, down):
    torch = _cpu_moe_setup(monkeypatch, _reference_gemm)
    from humming_cute.bench import moe

    args = core.parse_args(["--moe", "--tokens", "1,5,40", "--group-size", "64", "--reps", "1"])
    job = dict(preset="tiny", projection="down" if down else "up", num_experts=4, top_k=2, n=64, k=128,
               is_down=down)
    info = {p: dict(label=core.MOE_IMPL_LABELS[p], notes=[], reasons=[]) for p in args.peer_list}
    bar, configs = _Bar(), {}
    rows = moe.job_rows(job, args, device=torch.device("cpu"), copy_bw=3e12, peak=7e14, progress=bar,
                        peer_info=info, hc_configs=configs)
    assert [r["tokens"] for r in rows] == [1, 5, 40] and bar.n == 3
    for r in rows:
        ours, tp, hm = r["impls"][OURS], r["impls"]["torch"], r["impls"]["humming"]
        assert ours["status"] == "ok" and ours["rel_err"] < 2e-3 and ours["ms"] == 0.5
        assert ours["align_ms"] == 0.5 and ours["ms_with_align"] == 1.0
        assert tp["status"] == "ok" and tp["rel_err"] < 2e-3 and r["ratio_vs"]["torch"] == 1.0
        assert hm["status"] == "skipped" and "not importable" in hm["reason"] and r["ratio_vs"]["humming"] is None
        assert r["m"] == r["tokens"] * 2 and 1 <= r["experts_touched"] <= 4
        rows_in = r["tokens"] * 2 if down else r["tokens"]
        assert r["bytes"]["activations"] == rows_in * 128 * 2 and r["bytes"]["output"] == r["tokens"] * 2 * 64 * 2
        assert r["bytes"]["weight"] == r["experts_touched"] * 64 * 128 // 2
    assert rows[0]["experts_touched"] == 2  # one token: its top_k distinct experts
    b2b = rows[0]          # tokens = 1 is in the default --back-to-back-m; 5 and 40 are not
    assert b2b["impls"][OURS]["ms_back_to_back"] == 0.25 and b2b["impls"][OURS]["copies_back_to_back"] >= 2
    assert b2b["impls"]["torch"]["ms_back_to_back"] == 0.25 and b2b["ratio_back_to_back_vs"] == {
        "torch": 1.0, "humming": None}
    assert all("ratio_back_to_back_vs" not in r for r in rows[1:])
    assert "tokens" in core.format_back_to_back_table(rows, args.peer_list).splitlines()[0]
    assert len(info["humming"]["reasons"]) == 1 and any("not importable" in m for m in bar.messages)
    assert info["torch"]["notes"] and set(configs["tiny " + job["projection"]]) == {1, 5, 40}
    text = core.format_moe_table(rows, args.peer_list)
    assert len(text.splitlines()) == 5


@pytest.mark.parametrize("how", ["zeros", "unwritten"])
def test_moe_loop_stops_when_ours_is_wrong(monkeypatch, how):
    def broken(x, qw, *a, out=None, **kw):
        if how == "zeros":
            out.zero_()
        return out  # "unwritten": still the NaN the runner filled in

    torch = _cpu_moe_setup(monkeypatch, broken)
    from humming_cute.bench import moe

    args = core.parse_args(["--moe", "--tokens", "3", "--group-size", "64", "--peers", "none"])
    job = dict(preset="tiny", projection="up", num_experts=4, top_k=2, n=64, k=128, is_down=False)
    with pytest.raises(core.BenchError, match="moe_gemm is wrong"):
        moe.job_rows(job, args, device=torch.device("cpu"), copy_bw=3e12, peak=7e14, progress=_Bar(),
                     peer_info={}, hc_configs={})


def test_moe_loop_records_a_wrong_or_failing_peer(monkeypatch):
    torch = _cpu_moe_setup(monkeypatch, _reference_gemm)
    from humming_cute.bench import moe, peers
    from humming_cute.bench.moe import routed_reference

    other = torch.randn(4, 64, 128)  # a peer holding its own weight is checked against that weight

    def own_weight_peer(qw, w, w_deq, a_dtype, tol):
        def prepare(pb):
            def call():
                pb.out.copy_(routed_reference(pb.x, other, pb.topk_ids, pb.top_k, pb.is_down).to(pb.out.dtype))
                return pb.out
            return call, dict(block_m=8)
        return peers.MoePeer(name="humming", prepare=prepare, tol=tol, mul_topk_weights=False, ref_weight=other)

    def bad_torch_peer(w16, tol, mul_topk_weights):
        def prepare(pb):
            return (lambda: pb.out.zero_()), {}
        return peers.MoePeer(name="torch", prepare=prepare, tol=tol, mul_topk_weights=True)

    monkeypatch.setattr(peers, "humming_moe_peer", own_weight_peer)
    monkeypatch.setattr(peers, "torch_moe_peer", bad_torch_peer)
    args = core.parse_args(["--moe", "--tokens", "3,7", "--group-size", "64"])
    job = dict(preset="tiny", projection="down", num_experts=4, top_k=2, n=64, k=128, is_down=True)
    info = {p: dict(label=core.MOE_IMPL_LABELS[p], notes=[], reasons=[]) for p in args.peer_list}
    rows = moe.job_rows(job, args, device=torch.device("cpu"), copy_bw=3e12, peak=7e14, progress=_Bar(),
                        peer_info=info, hc_configs={})
    for r in rows:
        hm, tp = r["impls"]["humming"], r["impls"]["torch"]
        assert hm["status"] == "ok" and hm["rel_err"] < 2e-3 and hm["block_m"] == 8
        assert hm["rel_err_vs_float"] > 0.5  # its weight is not the float weight of this layer
        assert tp["status"] == "wrong" and "relative error" in tp["reason"] and r["ratio_vs"]["torch"] is None
    assert len(info["torch"]["reasons"]) == 2  # one distinct reason per token count


def _fake_humming(calls):
    """A stand-in for the `humming` package with the pieces humming_moe_peer uses, following the contract its
    docstring cites: pack_weight (here the identity), HummingLayer(num_experts=E) whose dequant_tensors reads
    uintN codes with zero points, and an indexed forward that reads input row id // top_k, writes output row id,
    skips ids >= inputs.size(0) * top_k, one expert per block of block_shape[0] rows; get_heuristics_config
    returns [lo, hi, config] intervals."""
    import types

    import torch

    intervals = [[0, 16, {"block_shape": (16, 64, 64)}], [16, 1 << 30, {"block_shape": (48, 64, 64)}]]

    class Param:
        is_cuda, device = True, torch.device("cpu")

    class Schema:
        def dequant_tensors(self, t):
            g = t["weight"].shape[-1] // t["weight_scale"].shape[-1]
            z = t["zero_point"].float().repeat_interleave(g, -1)
            return (t["weight"].float() - z) * t["weight_scale"].float().repeat_interleave(g, -1)

    class HummingLayer:
        def __init__(self, **kw):
            calls.append(("init", kw))
            self.weight_schema, self.tensors, self.humming_config = Schema(), {}, "layer-config"

        def cuda(self):
            return self

        def load_from_tensors(self, tensors):
            self.tensors = dict(tensors)

        def named_parameters(self):
            return [(k, types.SimpleNamespace(data=v)) for k, v in self.tensors.items()]

        def parameters(self):
            return [Param()]

        def transform(self):
            self.w = self.weight_schema.dequant_tensors(self.tensors)

        def __call__(self, x, outputs=None, sorted_ids=None, expert_ids=None, num_tokens_padded=None, top_k=1,
                     compute_config=None):
            rows = x.shape[0] * top_k
            bm = select(rows)
            calls.append(("call", dict(top_k=top_k, bm=bm, out_shape=tuple(outputs.shape), cc=compute_config)))
            npad = int(num_tokens_padded.reshape(-1)[0])
            assert npad % bm == 0
            for b in range(npad // bm):
                e = int(expert_ids[b])
                for i in sorted_ids[b * bm:(b + 1) * bm].tolist():
                    if i < rows:
                        outputs[i] = (x[i // top_k].float() @ self.w[e].t()).to(outputs.dtype)
            return outputs

    def select(rows):
        return core.select_interval(intervals, rows)[2]["block_shape"][0]

    def get_heuristics_config(layer_config, shape_m=None, gemm_type="dense", device=None):
        calls.append(("heuristics", dict(layer_config=layer_config, shape_m=shape_m, gemm_type=gemm_type)))
        return intervals

    mods = {"humming": types.ModuleType("humming"), "humming.ops": types.ModuleType("humming.ops"),
            "humming.layer": types.ModuleType("humming.layer"), "humming.tune": types.ModuleType("humming.tune")}
    mods["humming.ops"].pack_weight = lambda codes, bits: codes
    mods["humming"].ops = mods["humming.ops"]
    mods["humming.layer"].HummingLayer = HummingLayer
    mods["humming.tune"].get_heuristics_config = get_heuristics_config
    return mods


@pytest.mark.parametrize("down", [False, True])
def test_humming_moe_adapter_glue(monkeypatch, down):
    torch = _cpu_moe_setup(monkeypatch, _reference_gemm)
    from humming_cute.bench import moe

    calls = []
    for name, mod in _fake_humming(calls).items():
        monkeypatch.setitem(sys.modules, name, mod)
    args = core.parse_args(["--moe", "--tokens", "3,20", "--group-size", "64", "--peers", "humming"])
    job = dict(preset="tiny", projection="down" if down else "up", num_experts=4, top_k=2, n=64, k=128,
               is_down=down)
    info = {"humming": dict(label="h", notes=[], reasons=[])}
    rows = moe.job_rows(job, args, device=torch.device("cpu"), copy_bw=3e12, peak=7e14, progress=_Bar(),
                        peer_info=info, hc_configs={})
    assert info["humming"]["reasons"] == []
    assert any("same codes and scales" in note for note in info["humming"]["notes"])
    for r in rows:
        h = r["impls"]["humming"]
        assert h["status"] == "ok" and h["rel_err"] < 2e-3, h
        assert h["block_m"] == (16 if r["tokens"] * 2 <= 16 else 48)  # the interval of the routed rows
    init = [c[1] for c in calls if c[0] == "init"][0]
    assert init["num_experts"] == 4 and (init["shape_n"], init["shape_k"]) == (64, 128)
    assert init["weight_config"] == {"b_dtype": "uint4", "weight_scale_group_size": 64, "has_zero_point": True}
    heur = [c[1] for c in calls if c[0] == "heuristics"]
    assert heur and all(h["gemm_type"] == "indexed" and h["shape_m"] is None for h in heur)
    runs = [c[1] for c in calls if c[0] == "call"]
    assert runs and all(c["cc"] == {"gemm_type": "indexed"} for c in runs)
    assert {c["top_k"] for c in runs} == {1 if down else 2}       # down: top_k=1 over the routed rows
    assert {c["out_shape"] for c in runs} == {(3 * 2, 64), (20 * 2, 64)}


def test_main_moe_mode_on_cpu(monkeypatch, tmp_path, capsys):
    torch = _cpu_moe_setup(monkeypatch, _reference_gemm)
    from humming_cute.bench import moe, run, timing

    monkeypatch.setitem(core.MOE_PRESETS, "tiny", dict(num_experts=4, top_k=2, up=(64, 128), down=(128, 32),
                                                       note="a tiny layer for this test"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(timing, "environment", lambda device, command: dict(
        card="fake card", sm="9.0", sm_count=132, torch=torch.__version__, cutlass_dsl=None, humming_kernels=None,
        timer="fake", command=command, date="2026-01-01"))
    monkeypatch.setattr(timing, "copy_bandwidth", lambda rep_ms=100.0: 3e12)
    monkeypatch.setattr(timing, "cublas_peak_flops", lambda dtype, size=8192, rep_ms=100.0: 7e14)
    job_rows = moe.job_rows
    monkeypatch.setattr(moe, "job_rows", lambda job, args, **kw: job_rows(job, args, **dict(kw, device="cpu")))
    js, png = tmp_path / "moe.json", tmp_path / "moe.png"
    assert run.main(["--moe", "--moe-preset", "tiny", "--tokens", "2,9", "--group-size", "32", "--json", str(js),
                     "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "hc/torch" in out and "hc/humming" in out and "tiny" in out and "not importable" in out
    doc = json.loads(js.read_text())
    assert doc["config"]["mode"] == "moe" and doc["config"]["tokens"] == [2, 9]
    assert doc["config"]["presets"]["tiny"]["up"] == [64, 128] and doc["config"]["projections"] == ["up", "down"]
    assert doc["config"]["peers"] == ["torch", "humming"] and "routing" in doc["config"]
    assert [(r["projection"], r["tokens"]) for r in doc["rows"]] == [("up", 2), ("up", 9), ("down", 2), ("down", 9)]
    assert all(r["impls"][OURS]["status"] == "ok" and r["impls"]["torch"]["status"] == "ok" for r in doc["rows"])
    assert doc["peers"]["humming"]["reasons"] and doc["peers"]["torch"]["label"] == core.MOE_IMPL_LABELS["torch"]
    assert doc["rows"][2]["bytes"]["activations"] == 2 * 2 * 32 * 2  # down: routed rows x K=32
    if "PNG: " + str(png) in out:
        assert png.stat().st_size > 1000
    else:
        assert "matplotlib" in out


def test_markdown_table_from_committed_results():
    """The README tables are rendered from the committed bench JSON (dense and MoE modes)."""
    import json
    import pathlib

    from humming_cute.bench.markdown import table

    res = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    dense = json.loads((res / "2026-11-25_h100_w4a16_sm90.json").read_text())
    t = table(dense).splitlines()
    assert len(t) == 2 + len(dense["rows"])
    assert t[0].startswith("| N x K | M | humming-cute ms") and "vs Humming" in t[0]
    first = dense["rows"][0]
    assert f"{first['impls']['humming_cute']['ms']:.4f}" in t[2]
    moe = json.loads((res / "2026-11-25_h100_moe_w4a16_g128.json").read_text())
    t = table(moe).splitlines()
    assert len(t) == 2 + len(moe["rows"]) and t[2].startswith("| qwen3-30b-a3b up | 1 |")


def test_back_to_back_markdown_matches_the_readme():
    """The README's tables (flushed and back to back) are rendered from the committed JSON; runs without back-to-back
    timings have none."""
    import json
    import pathlib

    from humming_cute.bench.markdown import back_to_back_table, table

    root = pathlib.Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    for name in ("2026-12-01_h200_w4a16_g128_final.json", "2026-12-01_h200_w8a16_channel_evict.json",
                 "2026-12-01_h200_moe_w4a16_g128_final.json"):
        doc = json.loads((root / "benchmarks" / "results" / name).read_text())
        assert table(doc) in readme                                 # (the flushed table too)
        t = back_to_back_table(doc)
        assert t is not None and len(t.splitlines()) == 2 + 12     # 4 shapes x M = 1, 16, 64
        assert t in readme
        row = next(r for r in doc["rows"] if r.get("tokens", r["m"]) == 1)
        ours = row["impls"][OURS]
        assert ours["copies_back_to_back"] >= 2 and ours["ms_back_to_back"] < ours["ms"]
    old = json.loads((root / "benchmarks" / "results" / "2026-11-25_h100_w4a16_sm90.json").read_text())
    assert back_to_back_table(old) is None
