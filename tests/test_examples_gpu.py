"""The README's Python blocks and the scripts in examples/ run as written on a GPU (marked `gpu`)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import runpy

import pytest
import torch

pytestmark = pytest.mark.gpu

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


def test_readme_python_blocks_run():
    """Every ```python block of the README, in order, in one namespace (later blocks use earlier names)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    ns: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), ns)     # noqa: S102 - the README's own code
    torch.cuda.synchronize()
    y = ns["y"]
    assert isinstance(y, torch.Tensor) and y.is_cuda and not torch.isnan(y).any()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name):
    """Each example checks itself against the reference and prints OK or FAIL."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
    text = out.getvalue()
    assert "OK" in text and "FAIL" not in text, text
