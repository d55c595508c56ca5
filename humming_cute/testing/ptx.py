"""Compile CuTe DSL functions for a named GPU architecture without a GPU, and inspect the result.

Used by the per-arch compile checks (DESIGN.md, "Compile-verified per arch on CPU"): a test
compiles a kernel for sm_80 ... sm_120a on any machine, then asserts on the PTX text (intended
instructions present) and on ptxas's resource report (registers, no spills).

How it works with CuTe DSL 4.8.1 (found by experiment):

* ``cute.compile(fn, *args, options="--gpu-arch sm_90a --keep-ptx --keep-cubin --dump-dir D")``
  compiles for that target; ops built inside the jit function see the ``--gpu-arch`` value.
  Ops built *outside* ``cute.compile`` read the DSL's environment settings, which are read once
  at ``import cutlass``; so besides ``CUTE_DSL_ARCH`` we also set the DSL's cached arch for the
  duration of the compile and restore both afterwards.
* The dump directory must exist beforehand: if it does not, the DSL silently writes nothing and
  ``compiled.artifacts.PTX`` holds the would-be *path* instead of the text.
* The compile option token ``remarks{ptx}`` makes the DSL run ``ptxas -v`` and print its report
  (registers, stack frame, spill bytes per kernel) as a "remark" to ``sys.stderr`` with ANSI
  colours; with spills the report is re-wrapped inside a longer diagnostic. We capture
  ``sys.stderr`` during the compile and parse the whitespace-normalised text.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

__all__ = [
    "CompiledArtifacts",
    "PtxasResources",
    "compile_for_arch",
    "ptx_arch",
    "parse_ptxas_log",
    "ptxas_spills",
    "launch_smem_bytes",
]

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TARGET_RE = re.compile(r"^\s*\.target\s+([A-Za-z0-9_]+)", re.MULTILINE)

# Event patterns over the whitespace-collapsed ptxas report, scanned in order.
_PTXAS_EVENT_RE = re.compile(
    r"Compiling entry function '(?P<entry>[^']+)' for '(?P<arch>[^']+)'"
    r"|Function properties for (?P<props>[A-Za-z0-9_$.]+)"
    r"|(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, "
    r"(?P<loads>\d+) bytes spill loads"
    r"|Used (?P<regs>\d+) registers(?:, used (?P<barriers>\d+) barriers)?"
    r"(?:, (?P<smem>\d+) bytes smem)?"
)


@dataclass(frozen=True)
class PtxasResources:
    """ptxas's resource report for one function."""

    kernel: str
    arch: str | None = None
    registers: int | None = None
    barriers: int | None = None
    smem_bytes: int | None = None
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes

    @property
    def spills(self) -> bool:
        return self.spill_bytes > 0


@dataclass
class CompiledArtifacts:
    """What one :func:`compile_for_arch` call produced."""

    arch: str
    ptx: str
    ptx_path: str | None
    cubin_path: str | None
    compiled: Any
    compile_seconds: float
    log: str = ""
    ptxas: dict[str, PtxasResources] = field(default_factory=dict)

    @property
    def cubin(self) -> bytes | None:
        if self.cubin_path is None:
            return None
        with open(self.cubin_path, "rb") as f:
            return f.read()


def _strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def ptx_arch(ptx: str) -> str:
    """The value of the ``.target`` directive of a PTX module, e.g. ``"sm_90a"``.

    With several concatenated modules they must agree; raises ``ValueError`` otherwise or when
    there is no ``.target`` directive.
    """
    targets = set(_TARGET_RE.findall(ptx))
    if not targets:
        raise ValueError("no .target directive found in the PTX text")
    if len(targets) > 1:
        raise ValueError(f"PTX text holds several .target directives: {sorted(targets)}")
    return targets.pop()


def parse_ptxas_log(text: str) -> dict[str, PtxasResources]:
    """Per-function resources from ptxas ``-v`` output (raw, or as the DSL's remark prints it)."""
    flat = " ".join(_strip_ansi(text).split())
    found: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for m in _PTXAS_EVENT_RE.finditer(flat):
        if m.group("entry"):
            current = found.setdefault(m.group("entry"), {"kernel": m.group("entry")})
            current["arch"] = m.group("arch")
        elif m.group("props"):
            current = found.setdefault(m.group("props"), {"kernel": m.group("props")})
        elif current is None:
            continue
        elif m.group("stack") is not None:
            current["stack_frame_bytes"] = int(m.group("stack"))
            current["spill_store_bytes"] = int(m.group("stores"))
            current["spill_load_bytes"] = int(m.group("loads"))
        elif m.group("regs") is not None:
            current["registers"] = int(m.group("regs"))
            if m.group("barriers") is not None:
                current["barriers"] = int(m.group("barriers"))
            if m.group("smem") is not None:
                current["smem_bytes"] = int(m.group("smem"))
    return {name: PtxasResources(**fields) for name, fields in found.items()}


def ptxas_spills(source: CompiledArtifacts | str | dict[str, PtxasResources]) -> int:
    """Total register-spill bytes (stores + loads) over all functions ptxas reported.

    ``source`` is a :class:`CompiledArtifacts` compiled with ``ptxas_info=True`` (the default), a
    captured log, or the dict :func:`parse_ptxas_log` returns. Raises ``ValueError`` when there
    is no ptxas report at all, so a check can never pass vacuously.
    """
    if isinstance(source, CompiledArtifacts):
        report = source.ptxas
    elif isinstance(source, str):
        report = parse_ptxas_log(source)
    else:
        report = source
    if not report:
        raise ValueError(
            "no ptxas resource report found; compile with ptxas_info=True (options 'remarks{ptx}')"
        )
    return sum(r.spill_bytes for r in report.values())


def _resolve_target(arch: Any) -> str:
    """A CuTe DSL target name: DSL names (``"sm_90"``, ``"sm_100f"``) are kept as given,
    anything else goes through :func:`humming_cute.arch.dsl_target` (``90`` -> ``"sm_90a"``)."""
    from cutlass.base_dsl import Arch

    if isinstance(arch, str) and arch in Arch.__members__:
        return arch
    from humming_cute.arch import dsl_target

    return dsl_target(arch)


@contextlib.contextmanager
def _dsl_arch(target: str) -> Iterator[None]:
    """Point ``CUTE_DSL_ARCH`` and the DSL's cached copy of it at ``target``, then restore."""
    from cutlass.cutlass_dsl import CuTeDSL

    envar = CuTeDSL._get_dsl().envar
    had_env = "CUTE_DSL_ARCH" in os.environ
    old_env = os.environ.get("CUTE_DSL_ARCH")
    sentinel = object()
    old_cached = getattr(envar, "_arch", sentinel)
    os.environ["CUTE_DSL_ARCH"] = target
    envar.arch = target
    try:
        yield
    finally:
        if had_env:
            os.environ["CUTE_DSL_ARCH"] = old_env  # type: ignore[assignment]
        else:
            os.environ.pop("CUTE_DSL_ARCH", None)
        if old_cached is not sentinel:
            envar._arch = old_cached


_TEMP_DIRS: list[str] = []


def _cleanup_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup_temp_dirs)


def _find_artifact(dump_dir: str, stem: str | None, target: str, ext: str, since: float) -> list[str]:
    if stem:
        expected = os.path.join(dump_dir, f"{stem}.{target}.{ext}")
        if os.path.isfile(expected):
            return [expected]
    # Fallback: whatever this compile wrote into the directory.
    paths = []
    for name in sorted(os.listdir(dump_dir)):
        path = os.path.join(dump_dir, name)
        if name.endswith(f".{ext}") and os.path.isfile(path) and os.path.getmtime(path) >= since:
            paths.append(path)
    return paths


def compile_for_arch(
    fn: Callable[..., Any],
    *args: Any,
    arch: Any,
    options: str = "",
    keep_dir: str | os.PathLike[str] | None = None,
    ptxas_info: bool = True,
) -> CompiledArtifacts:
    """Compile a ``@cute.jit`` function for ``arch`` (no GPU needed) and keep its PTX and cubin.

    ``arch`` is a CuTe DSL target (``"sm_90a"``, ``"sm_80"``) or anything
    :func:`humming_cute.arch.get_arch` accepts (``90`` -> ``"sm_90a"``). ``options`` are extra
    ``cute.compile`` options. Artifacts go to ``keep_dir`` (created if needed) or to a temporary
    directory removed at interpreter exit. With ``ptxas_info`` the ptxas resource report is
    parsed into ``.ptxas`` (see :func:`ptxas_spills`). Not thread-safe: it switches the DSL's
    process-wide target for the duration of the compile.
    """
    if "--gpu-arch" in options:
        raise ValueError("pass the target as arch=..., not as '--gpu-arch' in options")
    target = _resolve_target(arch)

    import cutlass.cute as cute

    if keep_dir is None:
        dump_dir = tempfile.mkdtemp(prefix=f"humming_cute_{target}_")
        _TEMP_DIRS.append(dump_dir)
    else:
        dump_dir = os.fspath(keep_dir)
        os.makedirs(dump_dir, exist_ok=True)  # the DSL silently skips dumping into a missing dir
    dump_dir = os.path.abspath(dump_dir)

    parts = [f"--gpu-arch {target}", "--keep-ptx", "--keep-cubin", f"--dump-dir {dump_dir}"]
    if ptxas_info and "remarks{ptx}" not in options:
        parts.append("remarks{ptx}")
    if options.strip():
        parts.append(options.strip())
    full_options = " ".join(parts)

    captured = io.StringIO()
    since = time.time() - 1.0
    start = time.perf_counter()
    try:
        with _dsl_arch(target), contextlib.redirect_stderr(captured):
            compiled = cute.compile(fn, *args, options=full_options)
    except BaseException:
        sys.stderr.write(captured.getvalue())  # do not swallow the compiler's own diagnostics
        raise
    seconds = time.perf_counter() - start
    log = _strip_ansi(captured.getvalue())

    stem = getattr(compiled, "function_name", None)
    ptx_paths = _find_artifact(dump_dir, stem, target, "ptx", since)
    cubin_paths = _find_artifact(dump_dir, stem, target, "cubin", since)
    if ptx_paths:
        texts = []
        for path in ptx_paths:
            with open(path) as f:
                texts.append(f.read())
        ptx = "\n".join(texts)
    else:
        artifact = getattr(getattr(compiled, "artifacts", None), "PTX", None)
        if not isinstance(artifact, str) or ".target" not in artifact:
            raise RuntimeError(f"CuTe DSL produced no PTX for {target} in {dump_dir}")
        ptx = artifact

    return CompiledArtifacts(
        arch=target,
        ptx=ptx,
        ptx_path=ptx_paths[0] if ptx_paths else None,
        cubin_path=cubin_paths[0] if cubin_paths else None,
        compiled=compiled,
        compile_seconds=seconds,
        log=log,
        ptxas=parse_ptxas_log(log) if ptxas_info else {},
    )


_LAUNCH_STRUCT = r"!llvm\.struct<\(array<3 x i32>, array<3 x i32>, i64, ptr, ptr, i32\)>"


def launch_smem_bytes(ir_text: str) -> list[int]:
    """The dynamic shared memory size of each kernel launch in a compiled function's host IR (the i64 constant
    stored into the third field, ``sharedMemBytes``, of the DSL's launch-config struct). Raises ``ValueError`` when
    the IR holds no such store (a DSL whose launch lowering changed), so a test built on it fails loudly."""
    sizes = []
    for body in ir_text.split("llvm.func @")[1:]:      # SSA names are per function
        consts = dict(re.findall(r"(%\d+) = llvm\.mlir\.constant\((\d+) : i64\) : i64", body))
        slots = set(re.findall(r"(%\d+) = llvm\.getelementptr %\d+\[0, 2\] : \(!llvm\.ptr\) -> !llvm\.ptr, "
                               + _LAUNCH_STRUCT, body))
        for value, slot in re.findall(r"llvm\.store (%\d+), (%\d+) : i64, !llvm\.ptr", body):
            if slot in slots and value in consts:
                sizes.append(int(consts[value]))
    if not sizes:
        raise ValueError("no kernel launch with a constant shared-memory size found in the IR")
    return sizes
