"""Decoding binary programs (`isa.decode`, `isa.decode_row`): the inverse of `isa.encode`, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from golden_strategies import cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs

from lpu_jax import isa
from lpu_jax.config import groqchip1, tiny
from lpu_jax.isa import E, Instruction, Program, ProgramError, W

TINY = tiny()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(programs())
def test_decode_inverts_encode(p):
    arr = isa.encode(TINY, p)
    assert isa.decode(TINY, arr) == p
    assert np.array_equal(isa.encode(TINY, isa.decode(TINY, arr), length=arr.shape[1]), arr)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(TINY))
def test_decode_inverts_encode_on_the_differential_programs(case):
    """The golden test's programs draw every instruction of every unit (tests/test_golden.py checks that)."""
    p, _ = case
    assert isa.decode(TINY, isa.encode(TINY, p)) == p


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(groqchip1(), max_queues=6, max_len=5))
def test_decode_inverts_encode_on_groqchip1(p):
    cfg = groqchip1()
    assert isa.decode(cfg, isa.encode(cfg, p)) == p


def test_rows_decode_to_the_documented_instructions():
    """Rows written by hand from docs/isa.md §4's field table."""
    S = TINY.n_streams
    assert isa.decode_row(TINY, [16, 5, S + 3, 0, 0, 0, 0, 0]) == Instruction("Read", (5, W(3)))
    assert isa.decode_row(TINY, [2, 4, 3, -2, 0, 0, 0, 0]) == Instruction("Repeat", (4, 3, -2))
    assert isa.decode_row(TINY, [0] * 8) == Instruction("HALT")
    add = isa.VXM_BASE + isa.VXM_OPS["add"][0]
    f32 = 5  # docs/isa.md §3: element type codes i8 0, u8 1, i16 2, i32 3, f16 4, f32 5
    assert isa.decode_row(TINY, [add, f32, f32, 1, 2, S, 0, 0]) == Instruction("add.f32", (E(1), E(2), W(0)))
    conv = isa.VXM_BASE + isa.VXM_OPS["convert"][0]
    assert isa.decode_row(TINY, [conv, 3, f32, 0, 4, 0, 0, 0]) == Instruction("convert.i32.f32", (E(0), E(4)))


@pytest.mark.parametrize(
    "row, words",
    [
        ([99, 0, 0, 0, 0, 0, 0, 0], "unknown opcode 99"),
        ([16, 5, 1, 7, 0, 0, 0, 0], "field 3 is 7"),
        ([16, 5, 64, 0, 0, 0, 0, 0], "stream id 64"),
        ([isa.VXM_BASE, 9, 9, 0, 0, 0, 0, 0], "element type code 9"),
        ([isa.VXM_BASE, 5, 0, 0, 0, 0, 0, 0], "field 2 holds element type i8"),
        ([isa.ABC, 0, 0, 0, 5, 0, 0, 0], "ABC takes i8 or f16"),
        ([16, 5, 1, 0, 0, 0, 0], "8 fields"),
    ],
)
def test_bad_rows_are_named(row, words):
    with pytest.raises(ProgramError, match=words):
        isa.decode_row(TINY, row)


def test_bad_arrays_name_the_queue_and_row():
    p = Program({"MEM.E1": [Instruction("Read", (1, E(0))), Instruction("Write", (2, E(0)))]})
    arr = isa.encode(TINY, p)
    q = isa.queue_names(TINY).index("MEM.E1")
    bad = arr.copy()
    bad[q, 1, 5] = 1
    with pytest.raises(ProgramError, match=r"queue MEM.E1, row 1: Write: field 5 is 1"):
        isa.decode(TINY, bad)
    bad = arr.copy()
    bad[q, 3] = arr[q, 0]
    with pytest.raises(ProgramError, match=r"queue MEM.E1, row 3: a non-zero row after the queue's HALT at row 2"):
        isa.decode(TINY, bad)
    bad = arr.copy()
    bad[q, :, 0] = isa.NOP
    with pytest.raises(ProgramError, match="queue MEM.E1: no HALT row"):
        isa.decode(TINY, bad)
    with pytest.raises(ProgramError, match=r"must be \[24, L, 8\]"):
        isa.decode(TINY, arr[:3])
    bad = arr.copy()
    bad[q, 0, 1] = TINY.mem_words  # address out of range: validate names it
    with pytest.raises(ProgramError, match="MEM.E1"):
        isa.decode(TINY, bad)


@FAST
@given(st.lists(st.integers(-3, 200), min_size=8, max_size=8))
def test_any_row_decodes_or_raises_program_error(row):
    try:
        ins = isa.decode_row(TINY, row)
    except ProgramError as e:
        assert str(e)
    else:
        if ins.mnemonic != "HALT":
            assert isa.encode_instruction(TINY, ins) == row
