"""humming_cute.arch: lookups, facts and error messages (pure Python, no GPU)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from humming_cute.arch import (
    ACTIVATION_TYPES,
    CI_TARGETS,
    KNOWN_ARCHS,
    ArchInfo,
    current_arch,
    dsl_target,
    get_arch,
)


def test_known_archs_listed_in_order() -> None:
    assert list(KNOWN_ARCHS) == [75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121]
    for sm, info in KNOWN_ARCHS.items():
        assert info.sm == sm
        assert info.name == f"sm_{sm}"


@pytest.mark.parametrize(
    "spec", [90, "sm_90", "sm_90a", "90a", "90", "SM_90A", "9.0", (9, 0), KNOWN_ARCHS[90]]
)
def test_get_arch_accepts_every_spelling(spec: object) -> None:
    assert get_arch(spec) is KNOWN_ARCHS[90]


@pytest.mark.parametrize(
    ("spec", "sm"),
    [((8, 9), 89), ("sm_100a", 100), ("sm_100f", 100), ("121a", 121), (75, 75), ("sm80", 80)],
)
def test_get_arch_other_archs(spec: object, sm: int) -> None:
    assert get_arch(spec).sm == sm


@pytest.mark.parametrize("spec", [70, "sm_70", "sm_95a", (7, 0), "hopper", "", None, 9.0, True, (9, 10)])
def test_get_arch_unknown_lists_known(spec: object) -> None:
    with pytest.raises(ValueError, match=r"unknown GPU architecture .*known architectures: sm_75, sm_80"):
        get_arch(spec)


def test_targets() -> None:
    expected = {
        80: "sm_80",
        86: "sm_86",
        87: "sm_87",
        89: "sm_89",
        90: "sm_90a",
        100: "sm_100a",
        103: "sm_103a",
        110: "sm_110a",
        120: "sm_120a",
        121: "sm_121a",
    }
    for sm, target in expected.items():
        assert KNOWN_ARCHS[sm].target == target
        assert dsl_target(sm) == target
    assert KNOWN_ARCHS[75].target is None
    assert not KNOWN_ARCHS[75].dsl_supported
    assert set(CI_TARGETS) <= set(expected.values())


def test_dsl_target_sm75_is_not_implemented() -> None:
    message = (
        r"CuTe DSL cannot target sm_75; the library falls back to a torch dequantize\+matmul path there"
    )
    with pytest.raises(NotImplementedError, match=message):
        dsl_target("sm_75")


def test_dsl_target_unknown_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown GPU architecture"):
        dsl_target(61)


def test_instruction_facts() -> None:
    a = KNOWN_ARCHS
    assert [sm for sm in a if a[sm].has_cp_async] == [80, 86, 87, 89, 90, 100, 103, 110, 120, 121]
    assert all(info.has_ldmatrix and info.has_mma_sync_f16 and info.has_mma_sync_int8 for info in a.values())
    assert [sm for sm in a if a[sm].has_mma_sync_fp8] == [89, 90, 100, 103, 110, 120, 121]
    assert [sm for sm in a if a[sm].mma_sync_fp8_native] == [89, 120, 121]
    assert [sm for sm in a if a[sm].mma_sync_int4_native] == [75, 80, 86, 87, 89]
    assert [sm for sm in a if a[sm].has_tma] == [90, 100, 103, 110, 120, 121]
    assert [sm for sm in a if a[sm].has_wgmma] == [90]
    assert [sm for sm in a if a[sm].has_tcgen05] == [100, 103, 110]
    assert [sm for sm in a if a[sm].has_blockscaled_mma_sync] == [120, 121]


def test_shared_memory() -> None:
    a = KNOWN_ARCHS
    assert a[80].smem_per_block_bytes == 166912 == a[87].smem_per_block_bytes
    for sm in (86, 89, 120, 121):
        assert a[sm].smem_per_block_bytes == 101376
    for sm in (90, 100, 103, 110):
        assert a[sm].smem_per_block_bytes == 232448
    for info in a.values():
        assert info.smem_per_block_bytes <= info.smem_per_sm_bytes


def test_activation_types_follow_min_sm() -> None:
    assert get_arch(80).activation_types == ("float16", "bfloat16", "int8", "int4")
    assert get_arch(86).activation_types == get_arch(80).activation_types
    assert get_arch(89).activation_types == (
        "float16", "bfloat16", "float8e4m3", "float8e5m2", "int8", "int4",
    )
    assert get_arch(90).activation_types == get_arch(89).activation_types
    assert get_arch(120).activation_types == ACTIVATION_TYPES
    assert "float4e2m1" not in get_arch(100).activation_types
    assert get_arch(75).activation_types == ("float16", "int8")
    assert get_arch(90).supports_activation("float8e4m3")
    assert not get_arch(80).supports_activation("float8e4m3")


def test_arch_info_is_frozen_and_typed() -> None:
    info = get_arch("sm_90a")
    assert isinstance(info, ArchInfo)
    assert info.capability == (9, 0) and str(info) == "sm_90"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.sm = 80  # type: ignore[misc]


def test_current_arch_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        current_arch()


def test_current_arch_maps_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (12, 0))
    assert current_arch() is KNOWN_ARCHS[120]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(NotImplementedError, match=r"'Tesla V100' .*\(sm_70\), which humming_cute does not support"):
        current_arch()


def test_import_pulls_in_neither_torch_nor_cutlass() -> None:
    # humming_cute/__init__.py may import heavier modules; load arch.py on its own.
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('arch_only', {get_arch.__code__.co_filename!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['arch_only'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "bad = [m for m in ('torch', 'cutlass') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert mod.get_arch('sm_90a').target == 'sm_90a'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
