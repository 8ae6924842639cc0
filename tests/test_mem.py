"""MEM: Read/Write round trips, Gather/Scatter against numpy, bank conflicts and other hazards.

tiny(): W1 at position 3, W0 at 4, VXM at 5, E0 at 6, E1 at 7; 512 words per slice (banks: 0..255, 256..511).
Delays: Read 2, Write 1, Gather 3, Scatter 2.
"""

from __future__ import annotations

import numpy as np
from conftest import blank_mem, mem_index, run_tiny
from hypothesis import given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax.isa import E, Instruction, W
from lpu_jax.state import HAZARDS

TINY = L.tiny()
NL, WORDS = TINY.n_lanes, TINY.mem_words
HZ = {k: i for i, k in enumerate(HAZARDS)}


def nop(n):
    return [Instruction("NOP", (n,))] if n > 0 else []


def _hazards(state):
    h = state.hazards
    return np.asarray(h.count), np.asarray(h.first_cycle), np.asarray(h.first_where)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_streamed_copy_w1_to_e1(seed, n):
    # W1 reads rows 0..n-1 on E5 at cycles 0..n-1; each reaches E1 (pos 7) at t + 2 + 4; E1 writes rows 10..
    rng = np.random.default_rng(seed)
    mem = blank_mem(TINY)
    rows = rng.integers(0, 256, (n, NL), dtype=np.uint8)
    mem[mem_index(TINY, "W1"), :n] = rows
    rep = lambda ins: [ins] + ([Instruction("Repeat", (n - 1, 1, 1))] if n > 1 else [])  # noqa: E731
    state, tr = run_tiny(
        {"MEM.W1": rep(Instruction("Read", (0, E(5)))), "MEM.E1": nop(6) + rep(Instruction("Write", (10, E(5))))},
        mem,
        n + 8,
    )
    np.testing.assert_array_equal(L.mem_image(TINY, state)[mem_index(TINY, "E1"), 10 : 10 + n], rows)
    # Writes issued at 6 .. 6+n-1 commit at 7 .. 7+n-1 to rows 10 ..; the trace shows each commit once.
    e1 = mem_index(TINY, "E1")
    assert [(c, int(a)) for c, a in enumerate(tr["commit_addr"][:, e1]) if a >= 0] == [
        (7 + i, 10 + i) for i in range(n)
    ]
    assert not _hazards(state)[0].any()


def _map_program(mem: np.ndarray, addr: np.ndarray) -> dict:
    """Put the uint16 lane addresses `addr` on the 2-stream group W2/W3 at W0 (pos 4) at cycle 5.

    E0 (pos 6) reads the low bytes onto W2 at 1: at pos 6 at 3, at pos 4 at 5. E1 (pos 7) reads the high bytes
    onto W3 at 0: at pos 7 at 2, at pos 4 at 5.
    """
    mem[mem_index(TINY, "E0"), 0] = (addr & 0xFF).astype(np.uint8)
    mem[mem_index(TINY, "E1"), 0] = (addr >> 8).astype(np.uint8)
    return {
        "MEM.E0": nop(1) + [Instruction("Read", (0, W(2)))],
        "MEM.E1": [Instruction("Read", (0, W(3)))],
    }


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_gather_against_numpy(seed):
    rng = np.random.default_rng(seed)
    mem = blank_mem(TINY)
    table = rng.integers(0, 256, (WORDS, NL), dtype=np.uint8)
    addr = rng.integers(0, WORDS + 40, NL)  # some lanes out of range
    mem[mem_index(TINY, "W0")] = table
    q = _map_program(mem, addr)
    # Gather at 5 on W0 onto E0: lands at pos 4 at 5 + 3 = 8, reaches E1 (pos 7) at 11; E1 writes it to row 9.
    q["MEM.W0"] = nop(5) + [Instruction("Gather", (E(0), W(2)))]
    q["MEM.E1"] = q["MEM.E1"] + nop(10) + [Instruction("Write", (9, E(0)))]
    state, _ = run_tiny(q, mem, 14)
    ok = addr < WORDS
    expect = np.where(ok, table[np.minimum(addr, WORDS - 1), np.arange(NL)], 0)
    np.testing.assert_array_equal(L.mem_image(TINY, state)[mem_index(TINY, "E1"), 9], expect)
    count, first_cycle, first_where = _hazards(state)
    assert count[HZ["address_range"]] == (0 if ok.all() else 1)
    if not ok.all():
        assert first_cycle[HZ["address_range"]] == 5 and first_where[HZ["address_range"]] == mem_index(TINY, "W0")


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_scatter_against_numpy(seed):
    rng = np.random.default_rng(seed)
    mem = blank_mem(TINY)
    before = rng.integers(0, 256, (WORDS, NL), dtype=np.uint8)
    addr = rng.integers(0, WORDS + 40, NL)
    data = rng.integers(0, 256, NL, dtype=np.uint8)
    mem[mem_index(TINY, "W0")] = before
    mem[mem_index(TINY, "W1"), 3] = data
    q = _map_program(mem, addr)
    # The data: W1 (pos 3) reads it onto E6 at 2: at pos 3 at 4, at W0 (pos 4) at 5. Scatter at 5 on W0.
    q["MEM.W1"] = nop(2) + [Instruction("Read", (3, E(6)))]
    q["MEM.W0"] = nop(5) + [Instruction("Scatter", (E(6), W(2)))]
    state, tr = run_tiny(q, mem, 9)
    expect = before.copy()
    ok = addr < WORDS
    # The commit is due at 5 + d(Scatter) = 7: the trace shows its lane addresses then, and no commit before.
    w0 = mem_index(TINY, "W0")
    np.testing.assert_array_equal(tr["commit_lanes"][7, w0], np.where(ok, addr, -1))
    assert (tr["commit_lanes"][:7] == -1).all() and (tr["commit_addr"] == -1).all()
    np.testing.assert_array_equal(tr["commit_data"][7, w0], data)
    expect[addr[ok], np.arange(NL)[ok]] = data[ok]
    np.testing.assert_array_equal(L.mem_image(TINY, state)[mem_index(TINY, "W0")], expect)
    assert _hazards(state)[0][HZ["address_range"]] == (0 if ok.all() else 1)


def _read_during_commit(read_addr: int):
    # E0 reads nothing useful at 0 ... set-up: W0 writes stream E7 (zeros) to address 300 (bank 1) at t=1: the
    # commit is due at 2. W0 also reads `read_addr` at 2: the same cycle.
    q = {"MEM.W0": nop(1) + [Instruction("Write", (300, E(7))), Instruction("Read", (read_addr, E(1)))]}
    state, _ = run_tiny(q, None, 5)
    return _hazards(state)


def test_read_one_bank_while_committing_the_other():
    count, _, _ = _read_during_commit(3)  # bank 0 read, bank 1 commit
    assert not count.any()


def test_bank_conflict_counted_with_cycle_and_place():
    count, first_cycle, first_where = _read_during_commit(290)  # both bank 1
    k = HZ["bank_conflict"]
    assert count[k] == 1 and count.sum() == 1
    assert first_cycle[k] == 2
    assert first_where[k] == mem_index(TINY, "W0") * 2 + 1


def test_hazard_report_in_words():
    q = {"MEM.W0": nop(1) + [Instruction("Write", (300, E(7))), Instruction("Read", (290, E(1)))]}
    state, _ = run_tiny(q, None, 5)
    assert L.hazard_report(TINY, state) == ["bank_conflict: 1 (first at cycle 2, MEM slice W0, bank 1)"]
    q = {"VXM.0": [Instruction("mov.i8", (E(3), E(0)))], "VXM.2": [Instruction("mov.i8", (E(3), E(1)))]}
    state, _ = run_tiny(q, None, 4)
    want = "stream_conflict: 1 (first at cycle 1, stream E3 at position 5, lost by VXM ALU 0)"
    assert L.hazard_report(TINY, state) == [want]
    assert L.hazard_report(TINY, run_tiny({}, None, 2)[0]) == []


def test_port_conflict_two_results_due_in_one_cycle():
    # Gather at 0 (due 3) and Read at 1 (due 3) on W0: one output port, one cycle. The later issue wins.
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W0"), 5] = 77
    q = {
        "MEM.W0": [Instruction("Gather", (E(0), E(2))), Instruction("Read", (5, E(1)))],
        "MEM.E0": nop(5) + [Instruction("Write", (0, E(1)))],  # the Read's result: at pos 4 at 3, pos 6 at 5
        "MEM.E1": nop(6) + [Instruction("Write", (0, E(0)))],  # where the Gather's would be
    }
    state, _ = run_tiny(q, mem, 9)
    count, first_cycle, first_where = _hazards(state)
    k = HZ["port_conflict"]
    assert count[k] == 1 and first_cycle[k] == 1 and first_where[k] == mem_index(TINY, "W0")
    img = L.mem_image(TINY, state)
    assert (img[mem_index(TINY, "E0"), 0] == 77).all()
    assert not img[mem_index(TINY, "E1"), 0].any()


def test_stream_conflict_between_alus():
    q = {
        "VXM.0": [Instruction("mov.i8", (E(3), E(0)))],
        "VXM.2": [Instruction("mov.i8", (E(3), E(1)))],
    }
    state, _ = run_tiny(q, None, 4)
    count, first_cycle, first_where = _hazards(state)
    k = HZ["stream_conflict"]
    assert count[k] == 1 and first_cycle[k] == 1 and first_where[k] == (TINY.n_mem + 0) * 2 * TINY.n_streams + 3
    # (where = the losing port, VXM ALU 0, times 2S, plus stream E3; it lands at 0 + 1)
