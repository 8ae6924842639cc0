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
from golden_strategies import VXM_MNEMONICS, cases, mem_image, programs
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
_UNIT_MNEMONICS = set(isa.ICU_SIGS) | set(isa.MEM_SIGS) | set(isa.MXM_SIGS) | set(isa.SXM_SIGS)
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
@settings(max_examples=40, **CHECKS)
@given(cases(TINY))
def test_random_programs_agree_on_tiny(case):
    check(TINY, *case)


@pytest.mark.slow
def test_random_programs_agree_on_tiny_long():
    """2000 programs; they also cover every VXM mnemonic (all 169 op/type pairs) and every other instruction."""
    seen: set[str] = set()

    @settings(max_examples=2000, **CHECKS)
    @given(cases(TINY))
    def inner(case):
        check(TINY, *case)
        seen.update(ins.mnemonic for body in case[0].queues.values() for ins in body)

    inner()
    assert len(VXM_MNEMONICS) == 16 * 6 + 7 * 4 + 4 * 2 + 36 + 1  # isa §6.3: 169
    every = set(VXM_MNEMONICS) | _UNIT_MNEMONICS
    assert every <= seen, sorted(every - seen)


_VARIANTS = {
    "small": L.small(),
    "wide (20 superlanes: full-size stagger)": L.tiny().replace(name="wide", n_superlanes=20, stagger_cycles=20),
    "tight in-flight rings (7 slots)": L.tiny().replace(name="tight", max_delay_slots=7),
    "8-lane superlanes": L.tiny().replace(name="lps8", n_superlanes=4, lanes_per_superlane=8),
    "odd floorplan (3 SXM slices, 3 east planes, empty edge positions)": L.tiny().replace(
        name="odd",
        floorplan=("SXM", "MXM", "SXM", "MEM", "VXM", "MEM", "MXM", "MXM", "SXM"),
        slice_positions=(2, 3, 5, 6, 7, 8, 9, 12, 13),
        vxm_alus=3,
        sxm_units=3,
        mem_words=64,
    ),
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


def _dense_vxm_program(mnemonic: str) -> L.Program:
    """One VXM op issued every cycle on fresh operands: MEM.W1/W0 stream words onto E1/E0 and MEM.E0/E1 onto
    W0/W1 (so 1- and 2-byte groups E0 and W0 are full at the VXM from cycle 4); VXM.0 and VXM.1 widen them every
    cycle to 4-byte groups E4 and W4 (convert.f16.f32 or convert.i16.i32), which land at the VXM two cycles
    later; VXM.2 and VXM.3 run the op under test on them from cycle 6 (A from the east group, B from the west)."""
    op, t1, t2 = isa.vxm_parts(mnemonic)
    src = {"convert": t1, "requant": "i32"}.get(op, t1)
    wide = {"f32": "convert.f16.f32", "i32": "convert.i16.i32"}.get(src)
    a, b = (E(4), W(4)) if wide else (E(0), W(0))
    if op == "requant":  # B is an f32 scale
        wide, b = "convert.i16.i32", W(4)
    widths = isa.vxm_widths(op, t1, t2)
    srcs = [a, b, a][: len(widths) - 1]
    queues = {
        "MEM.W1": [Instruction("Read", (0, E(1))), Instruction("Repeat", (60, 1, 1))],
        "MEM.W0": [Instruction("Read", (1, E(0))), Instruction("Repeat", (60, 1, 1))],
        "MEM.E0": [Instruction("Read", (2, W(0))), Instruction("Repeat", (60, 1, 1))],
        "MEM.E1": [Instruction("Read", (3, W(1))), Instruction("Repeat", (60, 1, 1))],
        "VXM.2": [Instruction("NOP", (6,)), Instruction(mnemonic, (E(12), *srcs)), Instruction("Repeat", (50, 1, 0))],
        "VXM.3": [
            Instruction("NOP", (6,)),
            Instruction(mnemonic, (W(12), *srcs[::-1])),
            Instruction("Repeat", (50, 1, 0)),
        ],
    }
    if wide:
        scale = "convert.f16.f32" if op == "requant" else wide
        queues["VXM.0"] = [Instruction("NOP", (4,)), Instruction(wide, (E(4), E(0))), Instruction("Repeat", (50, 1, 0))]
        queues["VXM.1"] = [
            Instruction("NOP", (4,)),
            Instruction(scale, (W(4), W(0))),
            Instruction("Repeat", (50, 1, 0)),
        ]
    return L.Program(queues)


@pytest.mark.slow
def test_every_vxm_mnemonic_on_dense_operands():
    """All 169 VXM mnemonics, each issued 2 x 51 times on fresh operands, on four SRAM images: uniform bytes and
    three of the strategy's (special values among them)."""
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 256, (TINY.n_mem, TINY.mem_words, TINY.n_lanes), dtype=np.uint8)
    images = [uniform] + [mem_image(TINY, s) for s in (1, 2, 3)]
    for mnemonic in VXM_MNEMONICS:
        for mem in images:
            check(TINY, _dense_vxm_program(mnemonic), mem)


def _mnemonics_drawn(cfg: L.ChipConfig, n: int) -> set[str]:
    seen: set[str] = set()

    @settings(max_examples=n, derandomize=True, database=None, **CHECKS)
    @given(programs(cfg))
    def collect(prog):
        seen.update(ins.mnemonic for body in prog.queues.values() for ins in body)

    collect()
    return seen


def test_the_strategy_draws_every_instruction():
    seen = _mnemonics_drawn(TINY, 30)  # 20 draws missed `exp` (measured); 30 draw every op
    assert _UNIT_MNEMONICS <= seen, _UNIT_MNEMONICS - seen
    assert set(isa.VXM_OPS) <= {m.split(".")[0] for m in seen}, set(isa.VXM_OPS) - {m.split(".")[0] for m in seen}


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


@settings(max_examples=6, **CHECKS)
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


# ---------------------------------------------------------------------------------------------- the documents' examples
def _issues(trace: dict, cfg: L.ChipConfig, queue: str) -> list[tuple[int, int]]:
    """(cycle, field 1) of every instruction a queue issued."""
    q = L.queue_names(cfg).index(queue)
    return [(c, int(r[1])) for c, r in enumerate(trace["issued"][:, q]) if r[0]]


def _doc_example(queues: dict, n: int = 24):
    """Run a documented example on both models (they must agree) and return the interpreter."""
    prog, mem = L.Program(queues), mem_image(TINY, 11)
    state, tr, it, ti = run_both(TINY, prog, mem, n)
    assert disagreement(TINY, state, tr, it, ti) is None
    return it, ti


def test_worked_example_of_isa_section_7():
    """isa.md §7: Read at 0 lands at 2 on pos 3; the add at 4 lands at 5; Write at 6 commits at 7; read-back at 8
    lands at 10 on pos 6 and reaches pos 0 at 16. Without the NOP 1, a bank conflict at 7, where 4."""
    it, tr = _doc_example(
        {
            "MEM.W1": [Instruction("Read", (5, E(0)))],
            "VXM.0": [Instruction("NOP", (4,)), Instruction("add.i8", (E(1), E(0), E(0)))],
            "MEM.E0": [
                Instruction("NOP", (6,)),
                Instruction("Write", (9, E(1))),
                Instruction("NOP", (1,)),
                Instruction("Read", (9, W(2))),
            ],
        }
    )
    mem = mem_image(TINY, 11)
    word = mem[0, 5]
    total = ((word.astype(np.int64) * 2) & 0xFF).astype(np.uint8)
    assert (tr["landed_sid"][2, 0], tr["landed_sid"][5, TINY.n_mem]) == (0, 1)  # E0 at 2, E1 (sid 1) at 5
    assert np.array_equal(tr["streams"][4, 0, 5, 0], word)  # E0 reaches pos 5 at 4
    assert tr["commit_addr"][7, 2] == 9 and np.array_equal(it.mem[2, 9], total)
    assert tr["landed_sid"][10, 2] == TINY.n_streams + 2  # W2 at pos 6 at 10
    assert np.array_equal(tr["streams"][16, 1, 0, 2], total) and not tr["streams"][17, 1, :, 2].any()
    assert it.hz_count.tolist() == [0] * 5
    it, _ = _doc_example(
        {
            "MEM.W1": [Instruction("Read", (5, E(0)))],
            "VXM.0": [Instruction("NOP", (4,)), Instruction("add.i8", (E(1), E(0), E(0)))],
            "MEM.E0": [Instruction("NOP", (6,)), Instruction("Write", (9, E(1))), Instruction("Read", (9, W(2)))],
        }
    )
    assert (it.hz_count[0], it.hz_first_cycle[0], it.hz_first_where[0]) == (1, 7, 4)


def test_repeat_and_sync_examples_of_isa_section_6_1():
    _, tr = _doc_example(
        {
            "MEM.W1": [Instruction("Read", (16, E(0))), Instruction("Repeat", (3, 1, 1))],
            "MEM.W0": [Instruction("Read", (7, E(1))), Instruction("NOP", (3,)), Instruction("Repeat", (5, 4, 0))],
            "MEM.E0": [Instruction("Read", (7, W(1))), Instruction("Repeat", (3, 4, 0))],
        }
    )
    assert _issues(tr, TINY, "MEM.W1") == [(0, 16), (1, 17), (2, 18), (3, 19)]
    assert _issues(tr, TINY, "MEM.W0") == [(t, 7) for t in (0, 4, 8, 12, 16, 20)]
    assert _issues(tr, TINY, "MEM.E0") == [(0, 7), (1, 7), (5, 7), (9, 7)]
    _, tr = _doc_example(
        {
            "MEM.W1": [Instruction("NOP", (5,)), Instruction("Notify", ()), Instruction("Read", (1, E(0)))],
            "MEM.W0": [Instruction("Sync", ()), Instruction("Read", (2, E(1)))],
            "MEM.E1": [Instruction("NOP", (5,)), Instruction("Sync", ()), Instruction("Read", (3, W(0)))],
            "MEM.E0": [Instruction("NOP", (6,)), Instruction("Sync", ()), Instruction("Read", (4, W(1)))],
        }
    )
    assert [_issues(tr, TINY, q) for q in ("MEM.W1", "MEM.W0", "MEM.E1", "MEM.E0")] == [
        [(6, 1)],
        [(6, 2)],
        [(6, 3)],
        [],
    ]


def test_conflict_examples_of_isa_section_6():
    """isa.md §6.2/§6.3: a Scatter at t and a Write at t+1 commit at t+2 (port_conflict at t+1, where m); a Gather
    at t and a Read at t+1 land at t+3 (where m); exp.f32 at t and add.i8 at t+5 on one ALU (where M + a)."""
    it, _ = _doc_example({"MEM.E1": [Instruction("Scatter", (E(0), E(2))), Instruction("Write", (3, E(0)))]})
    assert (it.hz_count[1], it.hz_first_cycle[1], it.hz_first_where[1]) == (1, 1, 3)
    it, _ = _doc_example({"MEM.W0": [Instruction("Gather", (E(0), E(2))), Instruction("Read", (3, E(0)))]})
    assert (it.hz_count[1], it.hz_first_cycle[1], it.hz_first_where[1]) == (1, 1, 1)
    it, _ = _doc_example(
        {
            "VXM.2": [
                Instruction("exp.f32", (E(0), E(4))),
                Instruction("NOP", (4,)),
                Instruction("add.i8", (E(8), W(0), W(0))),
            ]
        }
    )
    assert (it.hz_count[1], it.hz_first_cycle[1], it.hz_first_where[1]) == (1, 5, TINY.n_mem + 2)
    # isa.md §8: in one cycle, a commit conflict (MEM list) takes precedence over result conflicts (emit list),
    # even over a lower port: Scatter/Write on E1 (m = 3), Gather/Read on W1 (port 0), add.f32/add.i8 on VXM.0.
    it, _ = _doc_example(
        {
            "MEM.E1": [Instruction("Scatter", (E(0), E(2))), Instruction("Write", (3, E(0)))],
            "MEM.W1": [Instruction("Gather", (E(0), E(2))), Instruction("Read", (3, E(0)))],
            "VXM.0": [Instruction("add.f32", (E(0), E(4), E(4))), Instruction("add.i8", (E(8), W(0), W(0)))],
        }
    )
    assert (it.hz_count[1], it.hz_first_cycle[1], it.hz_first_where[1]) == (3, 1, 3)


def test_weights_install_example_of_mxm_md():
    """mxm.md 'Timing': an IW issued at t is in use by ABCs issued at t + d(mxm.iw) = t + 2, not before; the product
    reaches the ACC issued d(mxm.abc) + n_superlanes - 1 = 5 cycles after its ABC; y_j = sum_k x_k w_kj."""
    # MEM.E0 (pos 6) and MEM.E1 (pos 7) read word k at cycle k onto W0 / W1: at plane 0 (pos 0) during cycle c,
    # W0 holds E0's word c - 8 and W1 holds E1's word c - 9.
    queues = {
        "MEM.E0": [Instruction("Read", (0, W(0))), Instruction("Repeat", (30, 1, 1))],
        "MEM.E1": [Instruction("Read", (0, W(1))), Instruction("Repeat", (30, 1, 1))],
        "MXM.0.W": [Instruction("NOP", (9,)), Instruction("LW", (0, W(0), 1)), Instruction("IW", ())],  # 9, 10
        "MXM.0.A": [Instruction("NOP", (11,)), Instruction("ABC.i8", (W(1),)), Instruction("ABC.i8", (W(1),))],
        "MXM.0.C": [
            Instruction("NOP", (16,)),
            Instruction("ACC.i32", (0, 2, E(0))),  # 16: the product of the ABC at 11 (old weights: zeros)
            Instruction("ACC.i32", (1, 2, E(4))),  # 17: the product of the ABC at 12 (the new weights)
        ],
    }
    mem = np.random.default_rng(5).integers(0, 256, (TINY.n_mem, TINY.mem_words, TINY.n_lanes), dtype=np.uint8)
    state, tr, it, ti = run_both(TINY, L.Program(queues), mem, 24)
    assert disagreement(TINY, state, tr, it, ti) is None
    assert it.hz_count.tolist() == [0] * 5
    w0 = mem[2, 1].view(np.int8).astype(np.int64)  # weight row 0: E0's word 1 (LW at 9)
    x = mem[3, 3].view(np.int8).astype(np.int64)  # the ABC at 12 reads E1's word 3
    port = TINY.n_mem + TINY.vxm_alus  # plane 0's port
    assert (tr["landed_sid"][17, port], tr["landed_sid"][18, port]) == (0, 4)
    assert not tr["landed_data"][17, port].any()
    y = ((x[0] * w0) & 0xFFFFFFFF).astype(np.uint32)
    assert np.array_equal(tr["landed_data"][18, port], y.view(np.uint8).reshape(-1, 4).T)


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
