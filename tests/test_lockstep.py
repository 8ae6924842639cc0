"""Lock-step comparison (lpu_jax.lockstep) with the golden interpreter as the foreign model.

The injected-difference tests use docs/isa.md §7's worked example on tiny(); the place, values and producer of
each expected divergence are derived by hand from that section's timing table (see tests/test_diff.py's
docstring) and the MEM image, not read from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ODD
from golden_strategies import cases, mem_image
from hypothesis import HealthCheck, given, settings
from test_diff import EXAMPLE, VXM0, W1

import lpu_jax as L
from lpu_jax import isa, programs, trace
from lpu_jax.diff import Mask, compare_states
from lpu_jax.golden import Interp
from lpu_jax.lockstep import LockStep

TINY = L.tiny()
LENGTH = 64  # one program size class: one compiled single-cycle simulator for every test


def example():
    mem = mem_image(TINY, 11)
    return isa.encode(TINY, L.parse(EXAMPLE, TINY), length=LENGTH), mem


# ---------------------------------------------------------------------------------------------- agreement
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(TINY))
def test_the_golden_interpreter_keeps_lock_step(case):
    program, mem = case
    arr = isa.encode(TINY, program, length=LENGTH)
    ls = LockStep(TINY, arr, Interp(TINY, arr, mem), mem=mem)
    rep = ls.run(64)
    assert rep.equal, str(rep)
    assert ls.cycle == 64 and rep.cycles == (0, 63)


def test_every_signal_in_lock_step_and_the_state_after():
    arr, mem = example()
    it = Interp(TINY, arr, mem)
    ls = LockStep(TINY, arr, it, mem=mem, compare=trace.SIGNALS)
    assert ls.run(16).equal
    assert compare_states(TINY, ls.state, it.mem).equal  # the SRAM after, against the interpreter's image


# ---------------------------------------------------------------------------------------------- checkpoints
class Recorder:
    """A foreign model that keeps the rows it returns (and offers the interpreter's snapshot/restore)."""

    def __init__(self, it: Interp):
        self.it, self.rows = it, []

    def step(self) -> dict:
        row = self.it.step()
        self.rows.append(row)
        return row

    def snapshot(self):
        return self.it.snapshot()

    def restore(self, snap) -> None:
        self.it.restore(snap)


def _same_events(a: list, b: list) -> bool:
    ea, eb = trace.concat(a), trace.concat(b)
    return all(np.array_equal(ea[s][k], eb[s][k]) for s in ea for k in ea[s])


def _same_rows(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[f], y[f]) for x, y in zip(a, b) for f in x)


def test_checkpoint_restore_is_bit_identical():
    cfg = TINY
    arr = isa.encode(cfg, programs.mem_vxm_load(cfg, 64), length=LENGTH)
    mem = mem_image(cfg, 3)
    events: list = []
    rec = Recorder(Interp(cfg, arr, mem))
    ls = LockStep(cfg, arr, rec, mem=mem, compare=trace.SIGNALS, sink=events.append)
    assert ls.run(30).equal
    cp = ls.checkpoint()
    n_ev, n_rows = len(events), len(rec.rows)
    assert ls.run(30).equal
    first_ev, first_rows = events[n_ev:], rec.rows[n_rows:]
    state_first = ls.checkpoint().state
    ls.restore(cp)
    assert ls.cycle == 30
    n_ev, n_rows = len(events), len(rec.rows)
    assert ls.run(30).equal
    again_ev, again_rows = events[n_ev:], rec.rows[n_rows:]
    assert _same_events(first_ev, again_ev) and _same_rows(first_rows, again_rows)
    assert compare_states(cfg, state_first, ls.state).equal
    # and both equal an uninterrupted 60-cycle run
    whole: list = []
    rec2 = Recorder(Interp(cfg, arr, mem))
    ls2 = LockStep(cfg, arr, rec2, mem=mem, compare=trace.SIGNALS, sink=whole.append)
    assert ls2.run(60).equal
    assert _same_events(whole[30:], again_ev) and _same_rows(rec2.rows[30:], again_rows)
    assert compare_states(cfg, ls2.state, ls.state).equal


def test_restore_without_a_foreign_snapshot():
    arr, mem = example()
    it = Interp(TINY, arr, mem)
    ls = LockStep(TINY, arr, lambda c: it.step(), mem=mem)  # a plain callback: no snapshot()
    assert ls.run(5).equal
    cp, snap = ls.checkpoint(), it.snapshot()
    assert cp.foreign is None
    assert ls.run(5).equal
    with pytest.raises(ValueError, match="holds no snapshot of the foreign model"):
        ls.restore(cp)
    it.restore(snap)  # the caller puts the foreign model back itself
    ls.restore(cp, foreign=False)
    assert ls.cycle == 5 and ls.run(11).equal


def test_save_and_load(tmp_path):
    from lpu_jax import formats

    arr, mem = example()
    it = Interp(TINY, arr, mem)
    ls = LockStep(TINY, arr, it, mem=mem)
    assert ls.run(6).equal
    ls.save(tmp_path / "c6.lpustate")
    snap = it.snapshot()
    it2 = Interp(TINY, arr, mem)
    it2.restore(snap)
    ls2 = LockStep(TINY, arr, it2)
    ls2.load(tmp_path / "c6.lpustate")
    assert ls2.cycle == 6 and ls2.run(10).equal
    assert compare_states(TINY, ls2.state, it2.mem).equal
    formats.write_state(tmp_path / "odd.lpustate", ODD, L.init_state(ODD))
    with pytest.raises(ValueError, match="lock-step runs 'tiny'"):
        ls2.load(tmp_path / "odd.lpustate")


# ---------------------------------------------------------------------------------------------- injected bits
def test_flipped_stream_register_bit_is_caught_at_the_consumer():
    """(a) One bit of the foreign model's stream registers: E0 at position 4 (the Read's row passing, cycle 3),
    lane 7. At cycle 4 it moves to position 5, where `add.i8 E1, E0, E0` reads it; the sum lands at cycle 5 on
    E1 through VXM ALU 0. Expected (2x) mod 256, got (2(x ^ 1)) mod 256, x = mem[W1, 5, 7]."""
    arr, mem = example()
    it = Interp(TINY, arr, mem)

    def foreign(c):
        if c == 4:
            it.R[0, 4, 0, 7] ^= 1  # R[dir, position, stream, lane] as cycle 3 left it
        return it.step()

    ls = LockStep(TINY, arr, foreign, mem=mem)
    rep = ls.run(16)
    x = int(mem[W1, 5, 7])
    d = rep.first
    assert rep.count == 1 and ls.cycle == 6  # stopped after cycle 5
    assert (d.cycle, d.signal, d.unit, d.stream, d.lane) == (5, "land", "VXM ALU 0", "E1", 7)
    assert (d.expected, d.actual) == ((2 * x) % 256, (2 * (x ^ 1)) % 256)
    assert str(d.producer) == "`add.i8 E1, E0, E0` issued at cycle 4 on VXM.0"


def test_flipped_bit_of_a_result_in_flight():
    """(a) One bit of a result on its way: the sum due at cycle 5 on VXM ALU 0's port, byte 0, lane 20."""
    arr, mem = example()
    it = Interp(TINY, arr, mem)

    def foreign(c):
        if c == 5:
            it.pending[VXM0][5].data[0, 20] ^= 0x40
        return it.step()

    rep = LockStep(TINY, arr, foreign, mem=mem).run(16)
    x = int(mem[W1, 5, 20])
    d = rep.first
    assert (d.cycle, d.unit, d.stream, d.lane) == (5, "VXM ALU 0", "E1", 20)
    assert (d.expected, d.actual) == ((2 * x) % 256, ((2 * x) % 256) ^ 0x40)


def test_flipped_mem_bit_is_caught_where_it_is_read():
    """(b) One bit of the foreign model's MEM image: W1 address 5 lane 7, read at cycle 0, landing on E0 at
    cycle 2 through MEM slice W1's port."""
    arr, mem = example()
    theirs = mem.copy()
    theirs[W1, 5, 7] ^= 0x10
    rep = LockStep(TINY, arr, Interp(TINY, arr, theirs), mem=mem).run(16)
    d = rep.first
    assert (d.cycle, d.unit, d.stream, d.address, d.lane) == (2, "MEM slice W1", "E0", 5, 7)
    assert (d.expected, d.actual) == (int(mem[W1, 5, 7]), int(mem[W1, 5, 7]) ^ 0x10)
    assert str(d.producer) == "`Read 0x5, E0` issued at cycle 0 on MEM.W1"
    assert "cycle 2, MEM slice W1, stream E0, address 0x5, lane 7" in str(rep)


def test_flipped_instruction_bit_is_caught_at_issue_or_where_it_lands():
    """(c) One bit of an instruction in the foreign model's program: `Read 0x5, E0` becomes `Read 0x4, E0`.
    Comparing issue events: cycle 0, queue MEM.W1. Comparing results only: cycle 2, MEM slice W1, E0, the first
    lane where words 4 and 5 of W1 differ."""
    arr, mem = example()
    theirs = arr.copy()
    q = isa.queue_names(TINY).index("MEM.W1")
    theirs[q, 0, 1] ^= 1
    d = LockStep(TINY, arr, Interp(TINY, theirs, mem), mem=mem).run(16).first
    assert (d.cycle, d.signal, d.unit, d.address) == (0, "issue", "MEM.W1", 5)
    assert (d.expected, d.actual) == ("`Read 0x5, E0`", "`Read 0x4, E0`")
    lane = int(np.nonzero(mem[W1, 4] != mem[W1, 5])[0][0])
    ls = LockStep(TINY, arr, Interp(TINY, theirs, mem), mem=mem, compare=("land", "commit"))
    d = ls.run(16).first
    assert (d.cycle, d.unit, d.stream, d.address, d.lane) == (2, "MEM slice W1", "E0", 5, lane)
    assert (d.expected, d.actual) == (int(mem[W1, 5, lane]), int(mem[W1, 4, lane]))
    assert str(d.producer) == "`Read 0x5, E0` issued at cycle 0 on MEM.W1"  # producers need no issue compare
    masked = LockStep(TINY, arr, Interp(TINY, theirs, mem), mem=mem, mask=Mask.parse(queues=["MEM.W1"], ports=["0"]))
    rep = masked.run(4)  # the landing at 2 and the issue at 0 are masked; the difference reaches the VXM at 4...
    assert rep.equal
    rep = masked.run(12)  # ...and its sum lands at 5
    assert (rep.first.cycle, rep.first.unit) == (5, "VXM ALU 0")


# ---------------------------------------------------------------------------------------------- protocol
def test_foreign_protocol_errors():
    arr, mem = example()

    def wrap(edit):
        """A foreign callback: a fresh interpreter whose rows go through `edit(row, cycle)`."""
        it = Interp(TINY, arr, mem)
        return lambda c: edit(it.step(), c)

    drop = wrap(lambda row, c: {k: v for k, v in row.items() if k != "landed_data"})
    bad_shape = wrap(lambda row, c: row | {"commit_data": np.zeros((3, 3), np.uint8)})
    late = wrap(lambda row, c: row | {"cycle": c + 1})

    for foreign, msg in [
        (drop, "cycle 0: the foreign model's row lacks field 'landed_data'"),
        (bad_shape, r"cycle 0: the foreign model's field 'commit_data' has shape \(3, 3\), expected \(4, 32\)"),
        (late, "cycle 0: the foreign model's row says cycle 1"),
        (lambda c: [c], "returned list, not a dict"),
    ]:
        with pytest.raises(ValueError, match=msg):
            LockStep(TINY, arr, foreign, mem=mem).run(1)
    it = Interp(TINY, arr, mem)
    with pytest.raises(ValueError, match="foreign must be"):
        LockStep(TINY, arr, 42, mem=mem)
    with pytest.raises(ValueError, match="not both"):
        LockStep(TINY, arr, it, state=L.init_state(TINY), mem=mem)
    with pytest.raises(ValueError, match="unknown trace signal 'bogus'"):
        LockStep(TINY, arr, it, mem=mem, compare=("bogus",))
    with pytest.raises(ValueError, match="n must be an int"):
        LockStep(TINY, arr, it, mem=mem).run(-1)
