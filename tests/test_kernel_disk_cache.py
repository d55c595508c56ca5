"""The on-disk kernel cache (`runtime.compile.disk_cache_dir`): compiled GEMMs (and the alignment, gather and
activation-quantization kernels) exported as object files and loaded by later processes instead of compiling. CPU: the switch and its environment variable, the keys, the export and
the load (a loaded kernel is the TVM-FFI function with the GEMM's 14 parameters), recovery from a bad file; GPU:
a kernel loaded from disk launches and matches the compiled one bitwise."""

from __future__ import annotations

import os

import pytest
import torch

import humming_cute.config as hconfig
import humming_cute.runtime.compile as rc
from humming_cute.tune.heuristics import default_config


def _cfg(m=1, n=2048, k=2048, **kw):
    return default_config(m, n, k, a_dtype="float16", b_dtype="uint4", c_dtype="float16", group_size=128,
                          arch="sm_90a", **kw)


def _no_compile(key):
    raise AssertionError("compiled although the disk cache holds the kernel")


def test_switch(monkeypatch, tmp_path):
    """On by default; switched off (DISK_CACHE_ENABLED = False) a set HUMMING_CUTE_KERNEL_CACHE warns once; on, the
    variable names the directory, '0' / 'off' turn it off, unset means ~/.cache/humming_cute/kernels."""
    assert rc.DISK_CACHE_ENABLED is True                               # (the shipped default)
    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", False)
    monkeypatch.setattr(rc, "_warned", set())
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="switched off"):
        assert rc.disk_cache_dir() is None
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)              # (not the switch of this cache)
    assert rc.disk_cache_dir() is None
    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    assert rc.disk_cache_dir() == str(tmp_path)
    for off in ("0", "off", "OFF", "false"):
        monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", off)
        assert rc.disk_cache_dir() is None
    monkeypatch.delenv("HUMMING_CUTE_KERNEL_CACHE")
    assert rc.disk_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "humming_cute", "kernels")


def test_keys(monkeypatch):
    """One file per (family, config), changed by any config field, the library version or the package's
    sources."""
    a, b = _cfg(), _cfg().with_(stages=2)
    ka = rc.disk_key("gemm", a)
    assert ka == rc.disk_key("gemm", _cfg()) and ka.startswith("gemm-") and ka.endswith(".o")
    assert ka != rc.disk_key("gemm", b) and ka != rc.disk_key("other", a)
    assert ka != rc.disk_key("gemm", a.with_(arch="sm_80", pdl=False))
    monkeypatch.setattr(rc, "_SOURCE_HASH", "0" * 64)
    assert rc.disk_key("gemm", a) != ka
    import humming_cute

    monkeypatch.setattr(rc, "_SOURCE_HASH", None)
    assert rc.disk_key("gemm", a) == ka
    monkeypatch.setattr(humming_cute, "__version__", "0.0.0-other")
    assert rc.disk_key("gemm", a) != ka


def test_export_and_load(monkeypatch, tmp_path):
    """A kernel compiled in one cache is written to disk; a fresh cache (a new process) loads it without compiling:
    the GEMM's TVM-FFI function, which checks its 14 parameters; a file that does not load is compiled again and
    rewritten; the memory cache answers before the disk."""
    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    cfg = _cfg()
    first = rc.KernelCache("gemm")
    compiled = first.get(cfg, rc.compile_kernel)
    path = tmp_path / rc.disk_key("gemm", cfg)
    assert path.is_file() and path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [path.name]                  # no temporary file left
    assert first.get(cfg, _no_compile) is compiled and first.stats["disk_loads"] == 0

    second = rc.KernelCache("gemm")
    loaded = second.get(cfg, _no_compile)
    assert second.stats["disk_loads"] == 1 and second.stats["compiles"] == 0
    with pytest.raises(TypeError, match="Expects 14 parameters"):
        loaded(*[torch.zeros(16, 64, dtype=torch.float16)] * 13)

    path.write_bytes(b"not an object file")
    monkeypatch.setattr(rc, "_warned", set())
    third = rc.KernelCache("gemm")
    calls = []

    def compile_counted(key):
        calls.append(key)
        return rc.compile_kernel(key)

    with pytest.warns(RuntimeWarning, match="could not load the cached kernel"):
        third.get(cfg, compile_counted)
    assert calls == [cfg] and path.stat().st_size > 1000
    assert rc.KernelCache("gemm").get(cfg, _no_compile) is not None             # the rewritten file loads


@pytest.mark.parametrize("family", ["moe_align", "moe_align_multi", "moe_gather", "quantize_input"])
def test_aux_families(monkeypatch, tmp_path, family):
    """The alignment, gather and activation-quantization kernels are kept on disk too; each loads as the TVM-FFI
    function with as many parameters as its call site passes (5 / 6 / 4 / 3; the stream comes from the
    environment)."""
    import importlib

    from humming_cute.kernels.quantize_input import QuantizeInputConfig

    # (the package's `quantize_input` / `moe_align_block_size` functions shadow the module names)
    moe_align, moe_gather, qi = (importlib.import_module(f"humming_cute.{m}")
                                 for m in ("moe_align", "moe_gather", "quantize_input"))

    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    cfg, fn, name, nargs = {
        "moe_align": (moe_align.MoeAlignConfig(8, 16, 64, False, "sm_90a"), moe_align.compile_moe_align,
                      "moe_align", 5),
        "moe_align_multi": (moe_align.MoeAlignConfig(8, 16, 256, True, "sm_90a", multi=True),
                            moe_align.compile_moe_align, "moe_align", 6),
        "moe_gather": (moe_gather.MoeGatherConfig("float16", 8, False, "sm_90a"), moe_gather.compile_moe_gather,
                       "moe_gather", 4),
        "quantize_input": (QuantizeInputConfig("float8e4m3", 0, "float16", "sm_90a"), qi.compile_quantize_input,
                           "quantize_input", 3)}[family]
    module = {"moe_align": moe_align, "moe_gather": moe_gather, "quantize_input": qi}[name]
    assert module._KERNELS.family == name
    rc.KernelCache(name).get(cfg, fn)
    assert (tmp_path / rc.disk_key(name, cfg)).is_file()
    loaded = rc.KernelCache(name).get(cfg, _no_compile)
    with pytest.raises(TypeError, match=f"Expects {nargs} parameters"):
        loaded(*[torch.zeros(4, dtype=torch.int32)] * (nargs + 1))


def test_not_cached(monkeypatch, tmp_path):
    """No disk copy while the cache is off, for a family without a name, or for a custom Python activation (its
    function has no stable key)."""
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", False)
    monkeypatch.setattr(rc, "_warned", {"disabled"})
    made = []
    assert rc.KernelCache("gemm").get(_cfg(), lambda key: made.append(key) or object()) is not None
    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    assert rc.KernelCache().get(_cfg(), lambda key: made.append(key) or object()) is not None
    custom = _cfg().with_(custom_activation=lambda v: v * 2.0)
    assert rc.KernelCache("gemm").get(custom, lambda key: made.append(key) or object()) is not None
    assert len(made) == 3 and not any(tmp_path.iterdir())


@pytest.mark.gpu
def test_loaded_kernel_matches_on_the_gpu(monkeypatch, tmp_path):
    """A GEMM loaded from the disk cache (as a new process would) launches and gives the compiled kernel's output
    bitwise, for an mma.sync decode config and a wgmma one."""
    import humming_cute as hc
    from humming_cute.arch import current_arch
    from humming_cute.quant.weight import quantize_weight

    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    torch.manual_seed(0)
    qw = quantize_weight(torch.randn(2048, 2048, device="cuda"), "uint4", 128, "float16")
    pw = hc.prepare_weight(qw, "float16")
    for m in (1, 256):
        x = torch.randn(m, 2048, device="cuda", dtype=torch.float16)
        cfg = default_config(m, 2048, 2048, a_dtype="float16", b_dtype="uint4", c_dtype="float16",
                             group_size=128, arch=current_arch().target)
        rc.clear_cache()
        monkeypatch.setattr(rc, "_GEMMS", rc.KernelCache("gemm"))
        y = hc.gemm(x, pw, config=cfg).clone()
        monkeypatch.setattr(rc, "_GEMMS", rc.KernelCache("gemm"))         # a new process: nothing in memory
        y2 = torch.full_like(y, float("nan"))
        hc.gemm(x, pw, config=cfg, out=y2)
        torch.cuda.synchronize()
        assert rc.compile_stats()["disk_loads"] == 1 and rc.compile_stats()["compiles"] == 0
        assert torch.equal(y, y2)


@pytest.mark.gpu
def test_loaded_aux_kernels_match_on_the_gpu(monkeypatch, tmp_path):
    """The activation-quantization, alignment and gather kernels loaded from the disk cache launch and give the
    compiled kernels' outputs bitwise."""
    import importlib

    import humming_cute as hc

    monkeypatch.setattr(rc, "DISK_CACHE_ENABLED", True)
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    mods = {m: importlib.import_module(f"humming_cute.{m}") for m in ("moe_align", "moe_gather", "quantize_input")}
    torch.manual_seed(0)
    x = torch.randn(37, 512, device="cuda", dtype=torch.float16)
    topk = torch.randint(0, 8, (37, 2), device="cuda", dtype=torch.int32)

    def run():
        for name, mod in mods.items():                  # a new process: nothing compiled in memory
            monkeypatch.setattr(mod, "_KERNELS", rc.KernelCache(name))
            if hasattr(mod, "_LAUNCH"):
                monkeypatch.setattr(mod, "_LAUNCH", {})
        q, s = hc.quantize_input(x, "float8e4m3", 0)
        sorted_ids, experts, num_post = hc.moe_align_block_size(topk, 16, 8, impl="kernel")
        rows = mods["moe_gather"].gather_sorted_rows(x, sorted_ids, num_post, 2, False)
        torch.cuda.synchronize()
        n = int(num_post.item())
        return [q.view(torch.uint8).clone(), s.clone(), sorted_ids.clone(), experts.clone(), num_post.clone(),
                rows[:n].clone()]

    first = run()
    assert all(mod._KERNELS.stats["compiles"] >= 1 for mod in mods.values())
    assert len(list(tmp_path.iterdir())) >= 3
    second = run()
    assert all(mod._KERNELS.stats["compiles"] == 0 and mod._KERNELS.stats["disk_loads"] >= 1
               for mod in mods.values())
    for a, b in zip(first, second):
        assert torch.equal(a, b)
