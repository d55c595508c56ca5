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


@pytest.mark.parametrize("argv", [["--peers", "cutlass"], ["--shapes", "8x"], ["--m", "0"], ["--a-dtype", "int8"],
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
                "--png", "--reps"):
        assert opt in out.stdout


def test_bench_modules_import_without_a_gpu():
    import humming_cute.bench.peers  # noqa: F401
    import humming_cute.bench.run  # noqa: F401
    import humming_cute.bench.timing  # noqa: F401
