"""The on-disk kernel cache (`runtime.compile.disk_cache_dir`): compiled GEMMs exported as object files and loaded
by later processes instead of compiling. CPU: the switch and its environment variable, the keys, the export and
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
    """Off until GPU-verified (a set HUMMING_CUTE_KERNEL_CACHE then warns once); then the variable names the
    directory, '0' / 'off' turn it off, unset means ~/.cache/humming_cute/kernels."""
    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", False)
    monkeypatch.setattr(rc, "_warned", set())
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="not yet verified"):
        assert rc.disk_cache_dir() is None
    monkeypatch.setattr(hconfig, "ALLOW_UNVERIFIED", True)              # (not the switch of this cache)
    assert rc.disk_cache_dir() is None
    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", True)
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
    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", True)
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


def test_not_cached(monkeypatch, tmp_path):
    """No disk copy while the cache is off, for a family without a name, or for a custom Python activation (its
    function has no stable key)."""
    monkeypatch.setenv("HUMMING_CUTE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", False)
    monkeypatch.setattr(rc, "_warned", {"unverified"})
    made = []
    assert rc.KernelCache("gemm").get(_cfg(), lambda key: made.append(key) or object()) is not None
    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", True)
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

    monkeypatch.setattr(rc, "DISK_CACHE_VERIFIED", True)
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
