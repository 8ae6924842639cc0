"""Determinism and stability of the simulator: jit == no jit, chunked == whole, stable shapes, no recompiles."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TRACE, blank_mem, mem_index

import lpu_jax as L
from lpu_jax import programs, sim
from lpu_jax.config import standard_floorplan
from lpu_jax.isa import E, Instruction, W

TINY = L.tiny()


def _busy_program(seed: int = 0) -> tuple[L.Program, np.ndarray]:
    """Every unit busy: reads, writes, a gather, a scatter, int and float VXM ops, Repeat, Sync/Notify."""
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, (TINY.n_mem, TINY.mem_words, TINY.n_lanes), dtype=np.uint8)
    mem[mem_index(TINY, "E0"), :4] %= 64  # plausible gather maps
    mem[mem_index(TINY, "E1"), :4] = 0
    prog = L.Program(
        {
            "MEM.W1": [Instruction("Sync", ()), Instruction("Read", (0, E(0))), Instruction("Repeat", (7, 1, 1))],
            "MEM.W0": [Instruction("Read", (8, E(4))), Instruction("Repeat", (5, 2, 3)), Instruction("Notify", ())],
            "MEM.E0": [
                Instruction("Read", (0, W(2))),
                Instruction("Repeat", (3, 1, 1)),
                Instruction("Write", (40, E(0))),
            ],
            "MEM.E1": [Instruction("Read", (0, W(3))), Instruction("NOP", (3,)), Instruction("Scatter", (E(4), W(2)))],
            "VXM.0": [Instruction("add.f32", (E(4), E(0), W(0))), Instruction("Repeat", (9, 1, 0))],
            "VXM.1": [Instruction("NOP", (2,)), Instruction("exp.f16", (W(6), E(0))), Instruction("Repeat", (4, 2, 0))],
            "VXM.2": [Instruction("mul.i32", (W(0), E(4), W(4))), Instruction("Repeat", (6, 1, 0))],
            "VXM.3": [Instruction("requant.i32", (E(7), E(4), W(4))), Instruction("tanh.f32", (W(4), E(0)))],
        }
    )
    return prog, mem


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _assert_same(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_one_step_keeps_every_leaf_shape_and_dtype():
    prog, mem = _busy_program()
    s0 = L.init_state(TINY, mem)
    s1 = L.step(TINY, s0, prog)
    chex.assert_trees_all_equal_shapes_and_dtypes(s0, s1)
    assert not any(x.weak_type for x in jax.tree.leaves(s1))  # no weakly typed leaves in the carry
    assert int(s1.cycle) == 1 and s1.cycle.dtype == jnp.int32


def test_run_equals_repeated_step():
    prog, mem = _busy_program(1)
    s = L.init_state(TINY, mem)
    whole, _ = L.run(TINY, prog, s, 12, trace=TRACE)
    for _ in range(12):
        s = L.step(TINY, s, prog)
    _assert_same(whole, s)


def test_chunked_run_equals_whole_run_including_traces():
    prog, mem = _busy_program(2)
    s0 = L.init_state(TINY, mem)
    whole, tw = L.run(TINY, prog, s0, 30, trace=TRACE)
    a, ta = L.run(TINY, prog, s0, 13, trace=TRACE)
    b, tb = L.run(TINY, prog, a, 17, trace=TRACE)
    _assert_same(whole, b)
    for f in TRACE:
        np.testing.assert_array_equal(tw[f], np.concatenate([ta[f], tb[f]]))
    # and with a small scan chunk, which splits the run differently
    c, tc = L.run(TINY, prog, s0, 30, trace=TRACE, chunk=8)
    _assert_same(whole, c)


@pytest.mark.slow  # op-by-op execution compiles each of the step's primitives: over a minute on a CI machine
def test_jit_equals_no_jit():
    # In the default run, tests/test_golden.py::test_random_programs_agree_on_tiny checks the jitted simulator, bit
    # for bit on every trace field, against lpu_jax.golden.interp (a numpy interpreter that shares no code with it),
    # and test_fpmath.test_jit_matches_eager / test_dotmath's jit-vs-eager tests cover the numeric kernels.
    prog, mem = _busy_program(3)
    s0 = L.init_state(TINY, mem)
    jitted, _ = L.run(TINY, prog, s0, 4, trace=TRACE)  # covers the exp.f16 issued at 2
    arr = jnp.asarray(L.encode(TINY, prog))
    s = s0
    with jax.disable_jit():
        for _ in range(4):
            s = sim._step(TINY, s, arr)[0]
    _assert_same(jitted, s)


def test_runs_are_reproducible_and_the_input_state_is_untouched():
    prog, mem = _busy_program(4)
    s0 = L.init_state(TINY, mem)
    before = _leaves(s0)
    a, _ = L.run(TINY, prog, s0, 20, trace=TRACE)
    b, _ = L.run(TINY, prog, s0, 20, trace=TRACE)
    _assert_same(a, b)
    for x, y in zip(before, _leaves(s0), strict=True):
        np.testing.assert_array_equal(x, y)


def test_donated_run_equals_copying_run():
    prog, mem = _busy_program(7)
    kept, _ = L.run(TINY, prog, L.init_state(TINY, mem), 9, trace=TRACE)
    given, _ = L.run(TINY, prog, L.init_state(TINY, mem), 9, trace=TRACE, donate=True)
    _assert_same(kept, given)


def test_second_program_of_the_same_size_class_does_not_recompile():
    p1, mem = _busy_program(5)
    p2 = L.Program({"MEM.W1": [Instruction("Read", (3, E(1)))], "VXM.2": [Instruction("neg.i32", (W(4), W(0)))]})
    assert L.encode(TINY, p1).shape == L.encode(TINY, p2).shape
    # both scan lengths, chunk and 1 (the chunk and fields of the test above: compiled once for both tests)
    L.run(TINY, p1, L.init_state(TINY, mem), 8 + 3, trace=TRACE, chunk=8)
    n = sim.TRACE_COUNT["scan"]
    L.run(TINY, p2, L.init_state(TINY, mem), 8 + 5, trace=TRACE, chunk=8)
    assert sim.TRACE_COUNT["scan"] == n


SMALL_BE = L.ChipConfig(
    name="small-be",
    n_superlanes=2,
    floorplan=standard_floorplan(12),
    n_streams=16,
    mem_words=32,
    vxm_alus=4,
    group_byte_order="big",
)
"""A small chip whose stream groups carry the most significant byte on the base stream: 12 + 12 MEM slices (as
relu_fma needs) of 32 words, 16 + 16 streams, 4 ALUs. The two tests below share it: one compiled simulator."""


def test_demo_program_on_a_small_config_matches_numpy():
    # on a small big-endian chip (relu_fma packs its fp32 vectors in cfg.group_byte_order); the CLI runs it on
    # the little-endian groqchip1 (test_errors.test_cli_fma_runs_and_checks_against_numpy)
    cfg = SMALL_BE
    rng = np.random.default_rng(6)
    a, b, c = (rng.standard_normal((5, cfg.n_lanes)).astype(np.float32) for _ in range(3))
    built = programs.relu_fma(cfg, a, b, c)
    state, _ = L.run(cfg, built.program, L.init_state(cfg, built.mem), built.done, trace=TRACE)
    y = programs.read_output(cfg, L.mem_image(cfg, state), built.outputs["y"])
    ref = np.where(a * b + c > 0, a * b + c, np.float32(0))
    np.testing.assert_array_equal(y.view(np.uint32), ref.view(np.uint32))
    assert L.is_idle(state, L.encode(cfg, built.program))


def test_demo_program_rejects_a_chip_too_small():
    z = np.zeros((2, TINY.n_lanes), np.float32)
    with pytest.raises(ValueError, match="needs >= 12 MEM slices per hemisphere"):
        programs.relu_fma(TINY, z, z, z)


def test_stream_file_matches_ring_layout():
    # A value read by W1 (pos 3) at 0 lands at 2: stream_file after 3 cycles shows it at position 3 only.
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W1"), 0] = 9
    s, _ = L.run(TINY, L.Program({"MEM.W1": [Instruction("Read", (0, E(2)))]}), L.init_state(TINY, mem), 3, trace=TRACE)
    f = np.asarray(L.stream_file(TINY, s))
    where = sorted({(d, p, k) for d, p, k, _ in zip(*np.nonzero(f))})
    assert where == [(0, 3, 2)]


def test_big_endian_stream_groups_end_to_end():
    # add.i32 x + x on a chip whose stream groups carry the most significant byte on the base stream (numpy's
    # pack_np gives the planes). Four west slices W0..W3 (positions v-1..v-4) each read one plane onto E4..E7,
    # timed so that all four reach the VXM (position v) at cycle 6; the sum lands on E0..E3 at 7 and slice E(k)
    # (position v+1+k) writes stream E(k) at 8 + k.
    cfg = SMALL_BE
    rng = np.random.default_rng(8)
    x = rng.integers(-(2**31), 2**31, cfg.n_lanes, dtype=np.int64).astype(np.int32)
    planes = L.pack_np(x, "i32", "big")  # row k rides on stream E4 + k
    mem = np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)
    v = int(cfg.positions[cfg.vxm_slice])
    assert [int(cfg.positions[cfg.mem_slices[mem_index(cfg, f"W{k}")]]) for k in range(4)] == [
        v - 1 - k for k in range(4)
    ]
    q = {}
    for k in range(4):  # W(k) at position v - 1 - k reads plane k onto E(4 + k), arriving at the VXM at 2 + 4 = 6
        m = mem_index(cfg, f"W{k}")
        mem[m, 0] = planes[k]
        q[f"MEM.W{k}"] = ([Instruction("NOP", (3 - k,))] if k < 3 else []) + [Instruction("Read", (0, E(4 + k)))]
    q["VXM.0"] = [Instruction("NOP", (6,)), Instruction("add.i32", (E(0), E(4), E(4)))]  # lands at 7 on E0..E3
    for k in range(4):  # E(k) at position v + 1 + k sees it at 7 + 1 + k
        q[f"MEM.E{k}"] = [Instruction("NOP", (8 + k,)), Instruction("Write", (1, E(k)))]
    state, _ = L.run(cfg, L.Program(q), L.init_state(cfg, mem), 14, trace=TRACE)
    img = L.mem_image(cfg, state)
    got = L.unpack_np(np.stack([img[mem_index(cfg, f"E{k}"), 1] for k in range(4)]), "i32", "big")
    np.testing.assert_array_equal(got, (x.astype(np.int64) * 2).astype(np.int32))
