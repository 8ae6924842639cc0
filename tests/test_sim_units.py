"""`run(..., units="auto")`: leaving out the units a program does not use gives the same bits as the full cycle."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import TINY, TRACE
from golden_strategies import mem_image

import lpu_jax as L
from lpu_jax import isa, sim
from lpu_jax.isa import E, Instruction, W


def _same(a, b):
    (sa, ta), (sb, tb) = a, b
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(sa)[0], jax.tree.leaves(sb)):
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
    for f in ta:
        assert np.array_equal(ta[f], tb[f]), f


MEM_ONLY = L.Program(
    {
        "MEM.W1": [Instruction("Read", (5, E(0))), Instruction("Repeat", (6, 1, 1))],
        "MEM.E1": [Instruction("NOP", (3,)), Instruction("Write", (9, E(0))), Instruction("Repeat", (5, 1, 1))],
    }
)
MEM_VXM = L.Program(
    {
        "MEM.W1": [Instruction("Read", (5, E(0))), Instruction("Repeat", (6, 1, 1))],
        "VXM.0": [
            Instruction("NOP", (2,)),
            Instruction("add.i8", (E(1), E(0), E(0))),
            Instruction("Repeat", (6, 1, 0)),
        ],
        "MEM.E1": [Instruction("NOP", (4,)), Instruction("Write", (9, E(1))), Instruction("Repeat", (5, 1, 1))],
    }
)
# Every unit: an MXM product and an SXM result are still in flight after 4 cycles.
BUSY = L.Program(
    {
        "MEM.W1": [Instruction("Read", (5, W(0)))],
        "MXM.0.W": [Instruction("LW", (0, W(0), 1)), Instruction("IW", ())],
        "MXM.0.A": [Instruction("NOP", (1,)), Instruction("ABC.i8", (W(1),))],
        "SXM.W.0": [Instruction("NOP", (2,)), Instruction("Rotate.up", (W(3), W(2), 1))],
    }
)


@pytest.mark.parametrize(
    "prog, units",
    [
        pytest.param(MEM_ONLY, (), marks=pytest.mark.slow),
        (MEM_VXM, ("vxm",)),
        pytest.param(BUSY, ("mxm", "sxm"), marks=pytest.mark.slow),  # the default run has it from a later state
    ],
)
def test_auto_units_give_the_same_bits(prog, units):
    """(Each set of units is one more compile of the tiny simulator: the default run checks two sets, this one's
    MEM+VXM and test_work_in_flight_keeps_its_unit's MXM+SXM.)"""
    mem = mem_image(TINY, 3)
    arr = isa.encode(TINY, prog)
    assert sim.units_needed(TINY, arr, L.init_state(TINY, mem)) == units  # read off the program by hand
    full = L.run(TINY, arr, L.init_state(TINY, mem), 16, trace=TRACE)
    _same(L.run(TINY, arr, L.init_state(TINY, mem), 16, trace=TRACE, units="auto"), full)


def test_work_in_flight_keeps_its_unit():
    """A MEM-only program continued from a state with MXM and SXM work in flight still steps them."""
    mem = mem_image(TINY, 4)
    busy = isa.encode(TINY, BUSY)
    s4, _ = L.run(TINY, busy, L.init_state(TINY, mem), 4, trace=TRACE)
    nxt = isa.encode(TINY, MEM_ONLY)
    assert sim.units_needed(TINY, nxt, s4) == ("mxm", "sxm")
    full = L.run(TINY, nxt, s4, 16, trace=TRACE)
    _same(L.run(TINY, nxt, s4, 16, trace=TRACE, units="auto"), full)
    # once everything has landed (ABC's product at 1 + 21 + 3 cycles, docs/mxm.md), nothing is left in flight
    s40, _ = L.run(TINY, busy, L.init_state(TINY, mem), 40, trace=TRACE)
    assert sim.units_needed(TINY, nxt, s40) == ()


def test_units_must_be_all_or_auto():
    with pytest.raises(ValueError, match="units must be 'all' or 'auto'"):
        L.run(TINY, MEM_ONLY, None, 1, units="some")
