"""`python -m humming_cute.bench` end to end on a tiny problem, 16-bit and 8-bit activations (marked `gpu`): every
output is checked by the tool itself, so a run that returns 0 with the peers timed is the test."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("a_dtype", ["float16", "float8e4m3", "float8e5m2", "int8"])
def test_bench_main_tiny(a_dtype, tmp_path, capsys):
    import torch

    from humming_cute.bench import core, run

    fp8 = a_dtype.startswith("float8")
    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 activations need sm_89+")
    js = tmp_path / "bench.json"
    assert run.main(["--a-dtype", a_dtype, "--b-dtype", "int4", "--group-size", "0", "--shapes", "256x512",
                     "--m", "1,16,40", "--reps", "5", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["config"]["a_dtype"] == a_dtype and len(doc["rows"]) == 3
    for row in doc["rows"]:
        ours = row["impls"][core.OURS]
        assert ours["status"] == "ok" and ours["ms"] > 0
        for name in doc["config"]["peers"]:
            e = row["impls"][name]
            assert e["status"] in ("ok", "skipped"), f"{name} at M={row['m']}: {e}"
        if a_dtype != "float16":
            assert ours["quant_ms"] > 0 and ours["ms_end_to_end"] > ours["ms"]
            sm = torch.cuda.get_device_capability() >= (9, 0)
            assert row["impls"]["scaled_mm"]["status"] == "ok" or not sm, row["impls"]["scaled_mm"]
            assert row["impls"]["scaled_mm"].get("ms_end_to_end", 1.0) > 0
            if a_dtype == "int8":
                assert row["impls"]["int_mm"]["status"] == "ok", row["impls"]["int_mm"]
        if row["m"] in (1, 16):     # the default --back-to-back-m: ours and every peer timed ok, back to back too
            assert ours["ms_back_to_back"] > 0 and ours["copies_back_to_back"] >= 2
            for name in doc["config"]["peers"]:
                e = row["impls"][name]
                assert e["status"] != "ok" or e["ms_back_to_back"] > 0, f"{name} at M={row['m']}: {e}"
        else:
            assert "ms_back_to_back" not in ours and "ratio_back_to_back_vs" not in row
    out = capsys.readouterr().out
    assert "hc/torch" in out and "back to back" in out


def test_bench_moe_tiny(tmp_path, capsys, monkeypatch):
    """The MoE mode end to end on a small layer: every implementation checked, then timed, and at tokens = 1 (in
    the default --back-to-back-m) timed back to back too."""
    from humming_cute.bench import core, run

    monkeypatch.setitem(core.MOE_PRESETS, "small", dict(num_experts=8, top_k=2, up=(512, 256), down=(256, 256),
                                                        note="a small layer for this test"))
    js = tmp_path / "moe.json"
    assert run.main(["--moe", "--moe-preset", "small", "--tokens", "1,9", "--reps", "5", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["config"]["back_to_back_tokens"] == [1] and len(doc["rows"]) == 4
    for row in doc["rows"]:
        ours = row["impls"][core.OURS]
        assert ours["status"] == "ok" and ours["ms"] > 0
        if row["tokens"] == 1:
            assert ours["ms_back_to_back"] > 0 and ours["copies_back_to_back"] >= 2
            for name in doc["config"]["peers"]:
                e = row["impls"][name]
                assert e["status"] != "ok" or e["ms_back_to_back"] > 0, f"{name}: {e}"
        else:
            assert "ratio_back_to_back_vs" not in row
    assert "back to back" in capsys.readouterr().out
