"""8/4-bit activation lanes: every code of every legal (activation, weight) pair becomes its exact value in the
activation's format, with every zero point, through the packed-word arithmetic the kernels use (CPU emulation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from humming_cute import dtypes as dt
from humming_cute.layouts.dequant_plan import emulate_lanes, make_lane_plan

LANE_ACTS = ["float8e4m3", "float8e5m2", "float4e2m1", "int8", "int4"]
WEIGHTS = ([f"int{b}" for b in range(1, 9)] + [f"uint{b}" for b in range(1, 9)]
           + [f"float{1 + e + m}e{e}m{m}" for e in range(1, 6) for m in range(0, 7) if 1 + e + m <= 8])


def _legal(a, b):
    return dt.is_legal_pair(a, b)


PAIRS = [(a, b) for a, b in itertools.product(LANE_ACTS, WEIGHTS) if _legal(a, b)]


def test_pairs_cover_the_spec_table():
    names = {a: [b for aa, b in PAIRS if aa == a] for a in LANE_ACTS}
    assert "int5" in names["float8e4m3"] and "uint4" in names["float8e4m3"] and "float8e4m3" in names["float8e4m3"]
    assert "int8" in names["int8"] and "uint7" in names["int8"] and "int4" in names["int4"]
    assert "uint3" in names["int4"] and "float4e2m1" in names["float4e2m1"] and "uint2" in names["float4e2m1"]
    assert "int5" not in names["float8e5m2"] and "uint8" not in names["int8"]


@pytest.mark.parametrize("a,b", PAIRS)
def test_every_code_exact(a, b):
    plan = make_lane_plan(a, b)
    w = dt.parse_dtype(b)
    codes = np.arange(w.num_codes if isinstance(w, dt.IntegerType) else 1 << w.bits)
    if isinstance(w, dt.IntegerType) and not w.signed:
        for z in range(w.num_codes):       # every zero point the type allows
            got = emulate_lanes(plan, codes, np.full(codes.shape, z))
            assert torch.equal(got.to(torch.float64), torch.tensor([float(q - z) for q in codes],
                                                                   dtype=torch.float64)), f"z={z}"
        return
    values = w.values()                    # NaN for reserved (inf/nan) codes, which are skipped
    got = emulate_lanes(plan, codes)
    for c, v, g in zip(codes, values, got.tolist()):
        if isinstance(v, float) and math.isnan(v):
            continue
        assert g == v, f"code {c}: lane value {g}, expected {v}"


def test_int_lanes_are_twos_complement_words():
    plan = make_lane_plan("int8", "int8")
    assert plan.lane_add_word(128) == 0                       # int8 weights: only the xor 0x80808080
    p4 = make_lane_plan("int4", "uint3")
    assert p4.lane_bits == 4 and p4.lane_add_word(7) == 0x11111111


@pytest.mark.parametrize("a,b", [("float8e4m3", "int6"), ("float8e5m2", "uint4"), ("int8", "uint8"),
                                 ("int8", "float4e2m1"), ("int4", "int5"), ("float4e2m1", "int4")])
def test_illegal_pairs_rejected(a, b):
    with pytest.raises(ValueError, match="illegal pair|integer weights only"):
        make_lane_plan(a, b)


def test_16bit_activations_point_to_make_plan():
    with pytest.raises(ValueError, match="make_plan"):
        make_lane_plan("float16", "int4")


def test_is_legal_pair():
    assert dt.is_legal_pair("float8e4m3", "int5") and not dt.is_legal_pair("float8e4m3", "int6")
    assert dt.is_legal_pair("int8", "uint7", True) and not dt.is_legal_pair("int8", "int4", True)
