"""ICU: in-order issue, NOP, Repeat and Sync/Notify, checked against issue cycles derived by hand."""

from __future__ import annotations

from conftest import ODD, TRACE, issued_at, run_tiny

import lpu_jax as L
from lpu_jax import isa
from lpu_jax.isa import E, Instruction

TINY = L.tiny()
R, WR, NOTIFY = isa.READ, isa.WRITE, isa.NOTIFY


def _issued(queues: dict, n: int, trace_queue: str):
    _, tr = run_tiny(queues, None, n)
    return issued_at(tr, TINY, trace_queue)


def test_in_order_one_per_cycle():
    q = [Instruction("Read", (a, E(0))) for a in (3, 1, 2)]
    assert _issued({"MEM.W1": q}, 6, "MEM.W1") == [(0, R, 3), (1, R, 1), (2, R, 2)]


def test_nop_occupies_n_cycles():
    q = [
        Instruction("NOP", (1,)),
        Instruction("Read", (0, E(0))),
        Instruction("NOP", (4,)),
        Instruction("Read", (1, E(0))),
    ]
    # NOP 1 occupies cycle 0; Read at 1; NOP 4 occupies 2..5; Read at 6.
    assert _issued({"MEM.W1": q}, 9, "MEM.W1") == [(1, R, 0), (6, R, 1)]


def test_repeat_consecutive_with_stride():
    # Read at 0; Repeat 3, 1, 2 issues at 1, 2, 3 with addresses 12, 14, 16; the next instruction at 1 + 3*1 = 4.
    q = [Instruction("Read", (10, E(0))), Instruction("Repeat", (3, 1, 2)), Instruction("Write", (0, E(1)))]
    assert _issued({"MEM.W1": q}, 7, "MEM.W1") == [(0, R, 10), (1, R, 12), (2, R, 14), (3, R, 16), (4, WR, 0)]


def test_repeat_spaced_and_accumulating():
    # Read at 0; NOP 2 occupies 1..2; Repeat 2, 3, 1 issues at 3 and 6 (addresses 1, 2) and occupies 3..8;
    # Repeat 1, 1, 5 issues at 9 with address 7; Write at 10.
    q = [
        Instruction("Read", (0, E(0))),
        Instruction("NOP", (2,)),
        Instruction("Repeat", (2, 3, 1)),
        Instruction("Repeat", (1, 1, 5)),
        Instruction("Write", (4, E(2))),
    ]
    assert _issued({"MEM.W1": q}, 13, "MEM.W1") == [(0, R, 0), (3, R, 1), (6, R, 2), (9, R, 7), (10, WR, 4)]


def test_repeat_of_a_vxm_op():
    q = [Instruction("add.i8", (E(2), E(0), E(1))), Instruction("Repeat", (2, 2, 0))]
    got = _issued({"VXM.1": q}, 6, "VXM.1")
    assert [c for c, _, _ in got] == [0, 1, 3]


def test_sync_parks_until_notify():
    # W1 parks at 0. W0: NOP 5 occupies 0..4, Notify at 5; parked queues resume at 5 + d(Notify) = 6.
    # E0 parks at 2 (after Read at 0 and NOP 1 at 1) and is released by the same Notify.
    queues = {
        "MEM.W1": [Instruction("Sync", ()), Instruction("Read", (1, E(0)))],
        "MEM.W0": [Instruction("NOP", (5,)), Instruction("Notify", ()), Instruction("Read", (2, E(1)))],
        "MEM.E0": [
            Instruction("Read", (0, E(3))),
            Instruction("NOP", (1,)),
            Instruction("Sync", ()),
            Instruction("Read", (5, E(3))),
        ],
    }
    _, tr = run_tiny(queues, None, 10)
    assert issued_at(tr, TINY, "MEM.W1") == [(6, R, 1)]
    assert issued_at(tr, TINY, "MEM.W0") == [(6, R, 2)]
    assert issued_at(tr, TINY, "MEM.E0") == [(0, R, 0), (6, R, 5)]


def test_sync_released_by_notify_in_the_same_cycle_and_configurable_delay():
    cfg = ODD  # d(Notify) = 4 (its other changes, to Read's delay and to positions, do not matter here)
    assert cfg.delay("Notify") == 4
    queues = {
        "MEM.W1": [Instruction("Sync", ()), Instruction("Read", (1, E(0)))],
        "MEM.W0": [Instruction("Notify", ())],
    }
    _, tr = L.run(cfg, L.Program(queues), None, 8, trace=TRACE)
    assert issued_at(tr, cfg, "MEM.W1") == [(4, R, 1)]  # Sync at 0, Notify at 0: released at 0 + 4


def test_halted_program_is_idle():
    prog = L.Program({"MEM.W1": [Instruction("Read", (0, E(0)))]})
    arr = L.encode(TINY, prog)
    state, _ = L.run(TINY, prog, None, 2, trace=TRACE)
    assert not L.is_idle(state, arr)  # the read is in flight until it lands at 2
    state, _ = L.run(TINY, prog, state, 1, trace=TRACE)
    assert L.is_idle(state, arr)
