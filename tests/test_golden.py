"""Differential test: the JAX simulator against the golden numpy interpreter (lpu_jax.golden, docs/golden.md).

Random legal programs (tests/golden_strategies.py) run on both; every cycle's trace (issued rows, landed results,
SRAM commits, the whole stream register file, hazard counts), the final SRAM image and the hazard record
(count, first cycle, first place) must be identical. One jitted simulator serves every program: programs are
padded to one size class (`LENGTH`) and run for a fixed number of cycles (`N_CYCLES`), with the trace fields the
rest of the suite uses (conftest.TRACE), so in a full run the compiled scan is shared.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TRACE
from golden_strategies import cases, mem_image
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax import isa
from lpu_jax.golden import Interp, compare_traces
from lpu_jax.golden.interp import dot_f16, vxm_element
from lpu_jax.isa import E, Instruction, W

TINY = L.tiny()
LENGTH = 64  # the size class every generated program is padded to (one compiled simulator)
N_CYCLES = 64
CHECKS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_both(cfg: L.ChipConfig, program, mem: np.ndarray, n: int = N_CYCLES, interp_mem: np.ndarray | None = None):
    """Run the simulator and the interpreter; returns (sim state, sim trace, interpreter, interpreter trace)."""
    arr = isa.encode(cfg, program, length=LENGTH)
    state, tr = L.run(cfg, arr, L.init_state(cfg, mem), n, trace=TRACE)
    it = Interp(cfg, arr, mem if interp_mem is None else interp_mem)
    return state, tr, it, it.run(n)


def disagreement(cfg: L.ChipConfig, state, tr, it, ti) -> str | None:
    """The first difference between the two runs, in words (traces first, then final SRAM and hazards)."""
    d = compare_traces(ti, tr)
    if d is not None:
        return f"trace: {d}"
    mem = L.mem_image(cfg, state)
    if not np.array_equal(mem, it.mem):
        idx = tuple(int(i) for i in np.argwhere(mem != it.mem)[0])
        return f"final SRAM {list(idx)}: interp {it.mem[idx]} vs sim {mem[idx]}"
    h = state.hazards
    for name, mine in (("count", it.hz_count), ("first_cycle", it.hz_first_cycle), ("first_where", it.hz_first_where)):
        theirs = np.asarray(getattr(h, name))
        if not np.array_equal(theirs, mine):
            return f"hazards.{name}: interp {mine.tolist()} vs sim {theirs.tolist()}"
    return None


def check(cfg: L.ChipConfig, program, mem: np.ndarray, n: int = N_CYCLES) -> None:
    d = disagreement(cfg, *run_both(cfg, program, mem, n))
    assert d is None, f"{d}\nprogram:\n{L.format_program(program)}"


# ---------------------------------------------------------------------------------------------- differential
@settings(max_examples=60, **CHECKS)
@given(cases(TINY))
def test_random_programs_agree_on_tiny(case):
    check(TINY, *case)


@pytest.mark.slow
@settings(max_examples=2000, **CHECKS)
@given(cases(TINY))
def test_random_programs_agree_on_tiny_long(case):
    check(TINY, *case)


_VARIANTS = {
    "small": L.small(),
    "wide (20 superlanes: full-size stagger)": L.tiny().replace(name="wide", n_superlanes=20, stagger_cycles=20),
    "big-endian, unaligned groups, gaps, other delays": L.tiny().replace(
        name="tiny-variant",
        group_byte_order="big",
        group_aligned=False,
        slice_positions=(0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13),
        delays=tuple(
            (k, {"Read": 3, "Write": 2, "Gather": 2, "Scatter": 3, "Notify": 2, "vxm.int": 2, "mxm.iw": 1}.get(k, v))
            for k, v in L.tiny().delays
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_random_programs_agree_on_other_configs(variant):
    cfg = _VARIANTS[variant]

    @settings(max_examples=150, **CHECKS)
    @given(cases(cfg))
    def inner(case):
        check(cfg, *case)

    inner()


# ---------------------------------------------------------------------------------------------- not vacuous
def _flip_case() -> tuple[isa.Program, np.ndarray]:
    prog = L.Program(
        {
            "MEM.W1": [Instruction("Read", (5, E(0)))],  # t = 0, lands on E0 at pos 3 at t = 2
            "VXM.0": [Instruction("NOP", (4,)), Instruction("add.i8", (E(1), E(0), E(0)))],
            "MEM.E0": [Instruction("NOP", (6,)), Instruction("Write", (9, E(1))), Instruction("Read", (9, W(2)))],
        }
    )
    return prog, mem_image(TINY, 7)


@pytest.mark.parametrize("lane, bit", [(7, 0), (0, 7), (31, 3)])
def test_a_flipped_bit_is_caught_at_the_right_cycle_slice_and_lane(lane, bit):
    prog, mem = _flip_case()
    state, tr, it, ti = run_both(TINY, prog, mem)
    assert disagreement(TINY, state, tr, it, ti) is None
    bad = mem.copy()
    bad[0, 5, lane] ^= np.uint8(1 << bit)  # MEM.W1 (m = 0), address 5
    state, tr, it, ti = run_both(TINY, prog, mem, interp_mem=bad)
    d = compare_traces(ti, tr)
    assert d is not None
    # The Read issued at 0 lands at 0 + d(Read) = 2 on port 0 (MEM.W1), stream row 0, that lane.
    assert (d.cycle, d.field, d.index) == (2, "landed_data", (0, 0, lane)), d
    assert int(d.a) ^ int(d.b) == 1 << bit
    # and it is everywhere downstream: the stream file at cycle 2 (E0 at position 3), the final SRAM (E0 word 9,
    # unless the add.i8 of the bit with itself drops it: x + x loses bit 7)
    assert compare_traces(ti, tr, fields=("streams",)).index == (0, 3, 0, lane)
    if bit < 7:
        assert disagreement(TINY, state, tr, it, ti).startswith("trace")
        assert not np.array_equal(it.mem[2, 9], L.mem_image(TINY, state)[2, 9])


@settings(max_examples=10, **CHECKS)
@given(cases(TINY), st.integers(0, 31), st.integers(0, 7))
def test_a_flipped_bit_in_a_random_program_is_caught_where_it_is_first_read(case, lane, bit):
    """Flip a bit of the word the first Read of the program reads (if no Gather or commit came first)."""
    prog, mem = case
    arr = isa.encode(TINY, prog, length=LENGTH)
    _, tr = L.run(TINY, arr, L.init_state(TINY, mem), N_CYCLES, trace=TRACE)
    M = TINY.n_mem
    ops = tr["issued"][:, :M, 0]
    reads = np.argwhere(ops == isa.READ)
    assume(len(reads))
    t, m = (int(x) for x in reads[0])
    a = int(tr["issued"][t, m, 1])
    assume(not (ops[: t + 1] == isa.GATHER).any())
    assume(not ((tr["commit_addr"][: t + 1] >= 0).any() or (tr["commit_lanes"][: t + 1] >= 0).any()))
    bad = mem.copy()
    bad[m, a, lane] ^= np.uint8(1 << bit)
    it = Interp(TINY, arr, bad)
    d = compare_traces(it.run(N_CYCLES), tr)
    # Nothing read the word before t, and slices have their own SRAM: the Read at t on slice m is where it shows.
    assert d is not None and (d.cycle, d.field, d.index) == (t + TINY.delay("Read"), "landed_data", (m, 0, lane)), d


# ---------------------------------------------------------------------------------------------- interpreter units
def test_interpreter_numerics_spot_checks():
    """A few values straight from the documents (isa §6.3, mxm_math.md)."""
    u = lambda *v: np.array(v, np.uint64)  # noqa: E731
    assert vxm_element("add", "i8", "i8", u(127), u(1), u(0))[0].tolist() == [0x80]  # wraps
    assert vxm_element("abs", "i8", "i8", u(0x80), u(0), u(0))[0].tolist() == [0x80]
    assert vxm_element("exp", "f32", "f32", u(0xFFC00001), u(0), u(0))[0].tolist() == [0x7FC00000]  # + canonical
    assert vxm_element("eq", "f32", "f32", u(0x80000000), u(0), u(0))[0].tolist() == [1]  # -0 == +0
    assert vxm_element("convert", "i32", "u8", u(0xFFFFFFFF), u(0), u(0))[0].tolist() == [0]  # saturates
    assert vxm_element("convert", "u8", "i8", u(255), u(0), u(0))[0].tolist() == [127]
    assert vxm_element("neg", "f32", "f32", u(1), u(0), u(0))[0].tolist() == [0x80000000]  # flushed, then negated
    assert vxm_element("shr", "i8", "i8", u(0x80), u(9), u(0))[0].tolist() == [0xFF]  # sign fill
    assert vxm_element("select", "f32", "f32", u(0x80000000), u(0x7FC00001), u(5))[0].tolist() == [0x7FC00001]
    # fp16 dot: (-0) * 1 + (-0) * 1 is +0; 1 * inf + (-1) * inf is NaN; 65504^2 * 2 is exact then rounded
    one, inf, mz, big = 0x3C00, 0x7C00, 0x8000, 0x7BFF
    assert dot_f16(u(mz, mz), u([one], [one])).tolist() == [0]
    assert dot_f16(u(one, 0xBC00), u([inf], [inf])).tolist() == [0x7FC00000]
    assert dot_f16(u(big, big), u([big], [big])).tolist() == [int(np.float32(2 * 65504.0**2).view(np.uint32))]
