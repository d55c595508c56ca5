"""Helpers for tests: compile CuTe DSL code for any architecture on a machine without a GPU."""

from humming_cute.testing.ptx import (
    CompiledArtifacts,
    PtxasResources,
    compile_for_arch,
    parse_ptxas_log,
    ptx_arch,
    ptxas_spills,
)

__all__ = [
    "CompiledArtifacts",
    "PtxasResources",
    "compile_for_arch",
    "parse_ptxas_log",
    "ptx_arch",
    "ptxas_spills",
]
