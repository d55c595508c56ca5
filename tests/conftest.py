"""Skip GPU tests where there is no GPU: `gpu` needs one CUDA device, `multigpu` needs two."""

from __future__ import annotations

import os

import pytest

# compiled kernels stay in the test process: the on-disk kernel cache (on by default for users) is off unless a
# test switches it on for a directory of its own (tests/test_kernel_disk_cache.py)
os.environ.setdefault("HUMMING_CUTE_KERNEL_CACHE", "0")


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    if not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [
        i for i in items if i.get_closest_marker("gpu") or i.get_closest_marker("multigpu")
    ]
    if not gpu_items:
        return
    count = _cuda_device_count()
    for item in gpu_items:
        if item.get_closest_marker("gpu") and count < 1:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        elif item.get_closest_marker("multigpu") and count < 2:
            item.add_marker(pytest.mark.skip(reason="needs 2+ GPUs"))
