"""Stream timing against cycle numbers derived by hand (architecture.md §3, issue: Timing).

tiny() floorplan, one stream-register position per slice:
    pos  0    1    2    3    4    5    6    7    8    9    10
         MXM  MXM  SXM  W1   W0   VXM  E0   E1   SXM  MXM  MXM
Default delays: Read 2, Write 1, vxm.int 1, vxm.float 2.
"""

from __future__ import annotations

import numpy as np
from conftest import ODD, TRACE, blank_mem, mem_index

import lpu_jax as L
from lpu_jax.isa import E, Instruction, W

TINY = L.tiny()


def _floorplan_is_as_drawn(cfg):
    assert list(cfg.positions) == list(range(11))
    assert cfg.mem_names == ("W1", "W0", "E0", "E1") and cfg.vxm_slice == 5


def test_floorplan_positions():
    _floorplan_is_as_drawn(TINY)


def _pattern(seed=0):
    return np.random.default_rng(seed).integers(1, 256, TINY.n_lanes, dtype=np.uint8)


def _read_w1_write_e1(write_at: int, cfg=TINY, read_at: int = 0):
    mem = blank_mem(cfg)
    data = _pattern()
    mem[mem_index(cfg, "W1"), 5] = data
    prog = L.Program(
        {
            "MEM.W1": ([Instruction("NOP", (read_at,))] if read_at else []) + [Instruction("Read", (5, E(1)))],
            "MEM.E1": ([Instruction("NOP", (write_at,))] if write_at else []) + [Instruction("Write", (9, E(1)))],
        }
    )
    state, tr = L.run(cfg, prog, L.init_state(cfg, mem), write_at + 4, trace=TRACE)
    return data, L.mem_image(cfg, state)[mem_index(cfg, "E1"), 9], tr["streams"]


def test_read_reaches_consumer_exactly_at_t_plus_d_plus_hops():
    # Read issued at t=0 on W1 (pos 3): on E1 at pos 3 at 0 + 2 = 2, at pos 7 (E1) at 2 + 4 = 6.
    data, got, _ = _read_w1_write_e1(6)
    np.testing.assert_array_equal(got, data)
    for early_or_late in (5, 7):  # one cycle earlier or later the Write sees the empty stream
        _, got, _ = _read_w1_write_e1(early_or_late)
        np.testing.assert_array_equal(got, np.zeros_like(data))


def test_read_issued_later_shifts_arrival():
    # Read at t=3: at pos 7 at 3 + 2 + 4 = 9.
    data, got, _ = _read_w1_write_e1(9, read_at=3)
    np.testing.assert_array_equal(got, data)


def test_value_moves_one_hop_per_cycle_and_falls_off_the_edge():
    data, _, streams = _read_w1_write_e1(6)
    east = streams[:, 0, :, 1, :]  # [cycle, pos, lanes] of stream E1
    present = [(c, p) for c in range(east.shape[0]) for p in range(TINY.n_positions) if east[c, p].any()]
    # On at pos 3 at cycle 2, pos 4 at 3, ..., pos 10 at 9; gone at 10 (does not re-enter at pos 0).
    assert present == [(2 + k, 3 + k) for k in range(8)]
    np.testing.assert_array_equal(east[2, 3], data)


def test_westward_read():
    # Read on E1 (pos 7) onto W2 at t=0: lands at pos 7 at 2, reaches W1 (pos 3) at 2 + 4 = 6.
    mem = blank_mem(TINY)
    data = _pattern(1)
    mem[mem_index(TINY, "E1"), 0] = data
    for t_write, expect in ((5, False), (6, True), (7, False)):
        prog = L.Program(
            {
                "MEM.E1": [Instruction("Read", (0, W(2)))],
                "MEM.W1": [Instruction("NOP", (t_write,)), Instruction("Write", (3, W(2)))],
            }
        )
        state, _ = L.run(TINY, prog, L.init_state(TINY, mem), 10, trace=TRACE)
        got = L.mem_image(TINY, state)[mem_index(TINY, "W1"), 3]
        np.testing.assert_array_equal(got, data if expect else 0 * data)


def test_configured_delay_and_positions_change_arrival():
    # Read delay 5 and a gap of 3 extra stream registers between W0 and the VXM: W1 at 3, E1 at 10.
    # (conftest.ODD, shared with test_icu: its Notify delay of 4 does not matter here)
    cfg = ODD
    assert cfg.delay("Read") == 5 and list(cfg.positions) == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13]
    assert cfg.n_positions == 14
    # Read at 0 on pos 3: lands at 5, reaches pos 10 at 5 + 7 = 12.
    data, got, _ = _read_w1_write_e1(12, cfg=cfg)
    np.testing.assert_array_equal(got, data)
    _, got, _ = _read_w1_write_e1(11, cfg=cfg)
    assert not got.any()


def test_vxm_result_timing_and_chaining():
    # W1 (pos 3) reads a at t=0 onto E0: at the VXM (pos 5) at 0 + 2 + 2 = 4.
    # W0 (pos 4) reads b at t=1 onto E1: at the VXM at 1 + 2 + 1 = 4.
    # VXM.0 add.i8 E2, E0, E1 at 4: the sum is on E2 at pos 5 at 4 + 1 = 5.
    # VXM.1 neg.i8 E3, E2 at 5 (zero hops: the same position): -sum on E3 at pos 5 at 6.
    # E0 (pos 6) writes E3 at 6 + 1 = 7; E1 (pos 7) writes E2 at 5 + 2 = 7.
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, TINY.n_lanes).astype(np.int8)
    b = rng.integers(-128, 128, TINY.n_lanes).astype(np.int8)
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W1"), 0] = a.view(np.uint8)
    mem[mem_index(TINY, "W0"), 0] = b.view(np.uint8)
    prog = L.Program(
        {
            "MEM.W1": [Instruction("Read", (0, E(0)))],
            "MEM.W0": [Instruction("NOP", (1,)), Instruction("Read", (0, E(1)))],
            "VXM.0": [Instruction("NOP", (4,)), Instruction("add.i8", (E(2), E(0), E(1)))],
            "VXM.1": [Instruction("NOP", (5,)), Instruction("neg.i8", (E(3), E(2)))],
            "MEM.E0": [Instruction("NOP", (7,)), Instruction("Write", (1, E(3)))],
            "MEM.E1": [Instruction("NOP", (7,)), Instruction("Write", (1, E(2)))],
        }
    )
    state, _ = L.run(TINY, prog, L.init_state(TINY, mem), 10, trace=TRACE)
    img = L.mem_image(TINY, state)
    s = (a.astype(np.int16) + b).astype(np.int8)  # wrapping int8 addition
    np.testing.assert_array_equal(img[mem_index(TINY, "E1"), 1].view(np.int8), s)
    np.testing.assert_array_equal(img[mem_index(TINY, "E0"), 1].view(np.int8), (-s.astype(np.int16)).astype(np.int8))
    assert int(np.asarray(state.hazards.count).sum()) == 0


def _write_then_read(n_cycles: int):
    # W0 (pos 4) reads addr 0 onto E3 at t=0: on the stream at pos 4 at 2, at E0 (pos 6) at 4.
    # E0 writes it to addr 7 at 4: committed at 4 + d(Write) = 5. E0 reads addr 7 onto E4 at 5 (the commit is
    # made first in a cycle, so the read sees it): on the stream at pos 6 at 7, at E1 (pos 7) at 8; E1 writes it
    # to addr 2 at 8.
    mem = blank_mem(TINY)
    data = _pattern(3)
    mem[mem_index(TINY, "W0"), 0] = data
    prog = L.Program(
        {
            "MEM.W0": [Instruction("Read", (0, E(3)))],
            "MEM.E0": [Instruction("NOP", (4,)), Instruction("Write", (7, E(3))), Instruction("Read", (7, E(4)))],
            "MEM.E1": [Instruction("NOP", (8,)), Instruction("Write", (2, E(4)))],
        }
    )
    state, _ = L.run(TINY, prog, L.init_state(TINY, mem), n_cycles, trace=TRACE)
    img = L.mem_image(TINY, state)
    return data, img[mem_index(TINY, "E0"), 7], img[mem_index(TINY, "E1"), 2]


def test_write_commits_at_t_plus_d():
    data, e0, _ = _write_then_read(5)  # cycles 0..4 ran: the commit due at 5 is not made yet
    assert not e0.any()
    data, e0, _ = _write_then_read(6)
    np.testing.assert_array_equal(e0, data)


def test_read_in_the_commit_cycle_sees_the_commit():
    data, e0, e1 = _write_then_read(10)
    np.testing.assert_array_equal(e0, data)
    np.testing.assert_array_equal(e1, data)
