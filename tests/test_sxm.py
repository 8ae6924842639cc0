"""SXM: Shift / Rotate / Permute / Distribute / Transpose.sg16 against numpy, with timings derived by hand.

tiny(), one stream-register position per slice:
    pos  0    1    2      3    4    5    6    7    8      9    10
         MXM  MXM  SXM.W  W1   W0   VXM  E0   E1   SXM.E  MXM  MXM
L = 32 lanes = 2 superlanes of 16; 16 streams per direction. SXM.W.0, SXM.W.1 sit at position 2, SXM.E.0,
SXM.E.1 at position 8. A MEM Read issued at t on a slice at position q is on its stream at q at t + 2 and at
position x at t + 2 + |q - x|; so a vector reaches the west SXM on a westward stream (every MEM slice lies east
of it) and the east SXM on an eastward one.

An SXM instruction issued at T reads its sources at its position at T; its result is on the destination there at
T + d + x: d = 2 (shift/rotate), 3 (permute), 2 (distribute), 3 (transpose); x = the most superlanes a byte moves
toward lower superlanes (shift/rotate: 0 for Shift.up, 1 for every other one with n > 0 on tiny), n_superlanes - 1
= 1 for Permute whatever the map, 0 for Distribute and Transpose.sg16. The expected lane mappings, staggers and
landing cycles below are written from those rules, independently of lpu_jax.sxm.

SXM unit u (W slice first) owns output ports 12 + 4u .. 12 + 4u + 3 (after 4 MEM, 4 VXM ALU and 4 MXM ports);
a transpose lands on all four (streams D+4k..D+4k+3 on port k), every other op on the first.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import TINY, TRACE, blank_mem, mem_index
from hypothesis import given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax.isa import E, Stream, W
from lpu_jax.isa import Instruction as I
from lpu_jax.kernels import Timeline
from lpu_jax.pipeline import port_positions

NL = 32  # lanes on tiny
G = 16  # lanes per superlane
NS = 16  # streams per direction
N_CYC = 40  # every run is 40 cycles, programs of the smallest size class: one compiled simulator for all
UNITS = ("SXM.W.0", "SXM.W.1", "SXM.E.0", "SXM.E.1")
SXM_POS = {"W": 2, "E": 8}
MEM_POS = {"W1": 3, "W0": 4, "E0": 6, "E1": 7}
D_READ = 2
D_SHIFT, D_PERMUTE, D_DISTRIBUTE, D_TRANSPOSE = 2, 3, 2, 3
PERMUTE_X = 1  # n_superlanes - 1 on tiny
SXM_PORT0 = 4 + 4 + 4  # n_mem + vxm_alus + n_planes
LANE_OPS = ("Shift.up", "Shift.down", "Rotate.up", "Rotate.down")
HZ = {k: i for i, k in enumerate(L.HAZARDS)}
LANE = np.arange(NL)


def port(unit: str, k: int = 0) -> int:
    return SXM_PORT0 + 4 * UNITS.index(unit) + k


def sxm_of(unit: str) -> str:
    return unit.split(".")[1]


def sid(s: Stream) -> int:
    return (0 if s.dir == "E" else 1) * NS + s.index


# --------------------------------------------------------------------------- numpy reference
def lane_sources(mnemonic: str, n: int) -> np.ndarray:
    """Source lane of every destination lane of a shift/rotate by n (-1: zero fill)."""
    if mnemonic == "Shift.up":
        return np.where(LANE >= n, LANE - n, -1)
    if mnemonic == "Shift.down":
        return np.where(LANE + n < NL, LANE + n, -1)
    if mnemonic == "Rotate.up":
        return (LANE - n) % NL
    assert mnemonic == "Rotate.down"
    return (LANE + n) % NL


def stagger(src: np.ndarray) -> int:
    """By brute force: the most superlanes any byte moves toward lower superlanes (0 if none moves down)."""
    x = 0
    for lane, s in enumerate(src):
        if s >= 0:
            x = max(x, s // G - lane // G)
    return x


def take(a: np.ndarray, src: np.ndarray) -> np.ndarray:
    """out[l] = a[src[l]], 0 where src[l] < 0."""
    out = np.zeros(NL, np.uint8)
    for lane, s in enumerate(src):
        if s >= 0:
            out[lane] = a[s]
    return out


def expected(mnemonic: str, a: np.ndarray, arg) -> tuple[np.ndarray, int]:
    """(result vector, cycles from issue to landing) of a one-stream SXM op on source a."""
    if mnemonic in LANE_OPS:
        src = lane_sources(mnemonic, arg)
        return take(a, src), D_SHIFT + stagger(src)
    arg = np.asarray(arg, np.int64)  # (a uint16 map would wrap the -1 of np.where)
    if mnemonic == "Permute":  # arg: the uint16 lane map
        return take(a, np.where(arg < NL, arg, -1)), D_PERMUTE + PERMUTE_X
    assert mnemonic == "Distribute"  # arg: the byte lane map, a remap inside each superlane
    return take(a, np.where(arg < G, G * (LANE // G) + arg, -1)), D_DISTRIBUTE


def transpose_ref(x: np.ndarray) -> np.ndarray:
    """uint8 [16, L] source streams A+j -> [16, L] destination streams D+i: out[i, 16s + j] = x[j, 16s + i]."""
    out = np.zeros_like(x)
    for i in range(16):
        for s in range(NL // G):
            for j in range(16):
                out[i, G * s + j] = x[j, G * s + i]
    return out


# --------------------------------------------------------------------------- building and running programs
class Rig:
    """A Timeline and a MEM image: vectors fed to an SXM slice at exact cycles, SXM instructions at exact cycles."""

    def __init__(self):
        self.tl = Timeline(TINY)
        self.mem = blank_mem(TINY)
        self.addr = dict.fromkeys(MEM_POS, 0)  # reads stay in bank 0 (addresses < 256); also the read count
        self.next_stream = {"E": 0, "W": 0}

    def stream(self, d: str, width: int = 1) -> Stream:
        """A fresh source stream (group) of direction d among indices 0..7 (destinations use 8..15)."""
        i = -(-self.next_stream[d] // width) * width
        self.next_stream[d] = i + width
        assert i + width <= 8
        return Stream(d, i)

    def feed(self, sxm: str, vec: np.ndarray, arrive: int, stream: Stream) -> None:
        """Read `vec` from some MEM slice so that it is on `stream` at SXM slice `sxm` at cycle `arrive`. The slice
        with the fewest reads so far that is free then: queues stay short (<= 7 instructions)."""
        p = SXM_POS[sxm]
        for name, q in sorted(MEM_POS.items(), key=lambda kv: (self.addr[kv[0]], abs(kv[1] - p))):
            if (stream.dir == "W") != (q > p):  # the stream must flow from the slice to the SXM
                continue
            t = arrive - D_READ - abs(q - p)
            if t >= 0 and self.tl.free(f"MEM.{name}", t):
                a = self.addr[name]
                self.addr[name] += 1
                self.mem[mem_index(TINY, name), a] = vec
                self.tl.place(f"MEM.{name}", t, I("Read", (a, stream)))
                return
        raise AssertionError(f"no MEM slice can feed {stream} to SXM.{sxm} at cycle {arrive}")

    def source(self, sxm: str, vec: np.ndarray, arrive: int) -> Stream:
        s = self.stream("W" if sxm == "W" else "E")
        self.feed(sxm, vec, arrive, s)
        return s

    def map16(self, sxm: str, m: np.ndarray, arrive: int) -> Stream:
        """A uint16 lane map on an even-aligned 2-stream group, little-endian: low byte on M, high byte on M+1."""
        s = self.stream("W" if sxm == "W" else "E", 2)
        self.feed(sxm, (m & 0xFF).astype(np.uint8), arrive, s)
        self.feed(sxm, (m >> 8).astype(np.uint8), arrive, Stream(s.dir, s.index + 1))
        return s

    def issue(self, unit: str, t: int, mnemonic: str, *ops) -> None:
        self.tl.place(unit, t, I(mnemonic, ops))

    def run(self):
        prog = L.encode(TINY, self.tl.program())
        return L.run(TINY, prog, L.init_state(TINY, self.mem), N_CYC, trace=TRACE)


def landings(tr: dict, unit: str) -> list[tuple[int, int, int]]:
    """(cycle, port k, stream id) of every result that landed on one of `unit`'s ports."""
    return [
        (int(c), k, int(tr["landed_sid"][c, port(unit, k)]))
        for c in range(tr["landed_sid"].shape[0])
        for k in range(4)
        if tr["landed_sid"][c, port(unit, k)] >= 0
    ]


def assert_on_stream(tr: dict, sxm: str, cycle: int, dst: Stream, vec: np.ndarray) -> None:
    """`vec` is on `dst` at the slice's position at `cycle`, and one position downstream a cycle later."""
    d, p = "EW".index(dst.dir), SXM_POS[sxm]
    np.testing.assert_array_equal(tr["streams"][cycle, d, p, dst.index], vec)
    np.testing.assert_array_equal(tr["streams"][cycle + 1, d, p + (1 if dst.dir == "E" else -1), dst.index], vec)


def run_one_stream_ops(ops: list[tuple]) -> None:
    """ops: (unit, issue cycle, mnemonic, destination, source vector a, lane count n or lane map). Feeds every
    operand to arrive at the issue cycle, runs, and checks that each result lands once, on the unit's port 0,
    exactly at issue + d + x, and is on the destination stream there and one hop downstream."""
    rig = Rig()
    want = {}
    for unit, t, m, dst, a, arg in ops:
        sx = sxm_of(unit)
        src = rig.source(sx, a, t)
        if m == "Permute":
            third = rig.map16(sx, arg, t)
        elif m == "Distribute":
            third = rig.source(sx, arg.astype(np.uint8), t)
        else:
            third = arg
        rig.issue(unit, t, m, dst, src, third)
        vec, delay = expected(m, a, arg)
        want[unit] = (t + delay, dst, vec)
    state, tr = rig.run()
    for unit in UNITS:
        if unit not in want:
            assert landings(tr, unit) == []
            continue
        c, dst, vec = want[unit]
        assert landings(tr, unit) == [(c, 0, sid(dst))], unit
        np.testing.assert_array_equal(tr["landed_data"][c, port(unit), 0], vec)
        assert_on_stream(tr, sxm_of(unit), c, dst, vec)
    assert L.hazard_report(TINY, state) == []


def issue_cycles(jitter=(0, 0, 0, 0)) -> list[int]:
    """One issue cycle per unit, 8 apart: the Reads feeding one op (T - 7 .. T - 3) never meet another op's."""
    return [8 + 8 * u + j for u, j in enumerate(jitter)]


# --------------------------------------------------------------------------- geometry
def test_floorplan_ports_and_delays_are_as_drawn():
    assert L.queue_names(TINY)[-4:] == UNITS
    assert TINY.n_lanes == NL and TINY.lanes_per_superlane == G and TINY.n_streams == NS
    assert TINY.n_superlanes - 1 == PERMUTE_X
    assert {s: int(TINY.positions[i]) for s, i in zip(TINY.sxm_names, TINY.sxm_slices)} == SXM_POS
    assert {f"{n}": int(TINY.positions[TINY.mem_slices[mem_index(TINY, n)]]) for n in MEM_POS} == MEM_POS
    assert TINY.n_mem + TINY.vxm_alus + TINY.n_planes == SXM_PORT0
    pp = port_positions(TINY)
    assert len(pp) == SXM_PORT0 + 4 * len(UNITS)
    for u in UNITS:
        assert [int(pp[port(u, k)]) for k in range(4)] == [SXM_POS[sxm_of(u)]] * 4
    assert TINY.delay("Read") == D_READ
    assert [TINY.delay(f"sxm.{k}") for k in ("shift", "permute", "distribute", "transpose")] == [
        D_SHIFT,
        D_PERMUTE,
        D_DISTRIBUTE,
        D_TRANSPOSE,
    ]


def test_reference_stagger_matches_hand_values():
    # tiny has two superlanes: a shift up never moves a byte down; every other shift/rotate by n > 0 moves some
    # byte from superlane 1 to superlane 0 (Shift.down n: lane 15 or lane 0 takes lane 15 + n or n >= 16;
    # Rotate.up n: lane 0 takes lane 32 - n; Rotate.down n: lane 15 takes lane 15 + n mod 32 when n <= 16,
    # lane 0 takes lane n when n >= 16).
    for m in LANE_OPS:
        for n in range(NL):
            assert stagger(lane_sources(m, n)) == (0 if m == "Shift.up" or n == 0 else 1), (m, n)
    np.testing.assert_array_equal(take(np.arange(1, 33, dtype=np.uint8), lane_sources("Shift.up", 30))[-3:], [0, 1, 2])


# --------------------------------------------------------------------------- shifts and rotates
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, NL - 1])
def test_shift_and_rotate_lane_counts_on_both_slices(n):
    # Round r: unit k runs op (k + r) mod 4 onto stream 8 + k of direction (k // 2 + r) mod 2 (E, W): over the four
    # rounds every op runs on both slices with both output directions.
    a = np.arange(1, NL + 1, dtype=np.uint8)  # distinct nonzero bytes: a zero in the result is a zero fill
    for r in range(4):
        ops = [
            (u, t, LANE_OPS[(k + r) % 4], Stream("EW"[(k // 2 + r) % 2], 8 + k), a, n)
            for k, (u, t) in enumerate(zip(UNITS, issue_cycles()))
        ]
        run_one_stream_ops(ops)


def test_shift_up_by_1_by_hand():
    # Source on W0 at pos 2 at T = 8: read from W1 (pos 3) at 8 - 2 - 1 = 5. Shift.up x = 0: E8 at pos 2 at 10,
    # at W1 (pos 3) at 11, where W1 writes it (committed at 12, address 300: bank 1, no clash with the read).
    a = np.arange(1, NL + 1, dtype=np.uint8)
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W1"), 7] = a
    tl = Timeline(TINY)
    tl.place("MEM.W1", 5, I("Read", (7, W(0))))
    tl.place("SXM.W.0", 8, I("Shift.up", (E(8), W(0), 1)))
    tl.place("MEM.W1", 11, I("Write", (300, E(8))))
    state, tr = L.run(TINY, L.encode(TINY, tl.program()), L.init_state(TINY, mem), N_CYC, trace=TRACE)
    want = np.concatenate([[0], a[:-1]]).astype(np.uint8)
    assert landings(tr, "SXM.W.0") == [(10, 0, sid(E(8)))]
    np.testing.assert_array_equal(L.mem_image(TINY, state)[mem_index(TINY, "W1"), 300], want)
    assert L.hazard_report(TINY, state) == []


def test_rotate_down_by_1_lands_a_cycle_later_than_shift_up():
    # Rotate.down 1 moves lane 16 to lane 15 (superlane 1 -> 0): x = 1, so it lands at T + 2 + 1, not T + 2.
    a = np.arange(1, NL + 1, dtype=np.uint8)
    rig = Rig()
    s = rig.source("E", a, 9)
    rig.issue("SXM.E.1", 9, "Rotate.down", W(12), s, 1)
    state, tr = rig.run()
    assert landings(tr, "SXM.E.1") == [(12, 0, sid(W(12)))]
    np.testing.assert_array_equal(tr["landed_data"][12, port("SXM.E.1"), 0], np.roll(a, -1))


lane_counts = st.one_of(st.sampled_from([0, 1, 15, 16, 17, NL - 1]), st.integers(0, NL - 1))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(LANE_OPS), lane_counts, st.sampled_from("EW")), min_size=4, max_size=4),
    st.lists(st.integers(0, 2), min_size=4, max_size=4),
    st.permutations(range(8, 16)),
    st.integers(0, 2**32 - 1),
)
def test_shift_rotate_random(specs, jitter, dst_index, seed):
    rng = np.random.default_rng(seed)
    ops = []
    for k, ((m, n, d), t) in enumerate(zip(specs, issue_cycles(jitter))):
        a = rng.integers(0, 256, NL, dtype=np.uint8)
        ops.append((UNITS[k], t, m, Stream(d, dst_index[k]), a, n))
    run_one_stream_ops(ops)


# --------------------------------------------------------------------------- permute and distribute
def test_permute_and_distribute_with_out_of_range_entries():
    rng = np.random.default_rng(11)
    a = np.arange(1, NL + 1, dtype=np.uint8)
    pmap = rng.permutation(NL).astype(np.uint16)
    # out of range: 32, 255; high byte set (256 would be lane 0 if the high byte were dropped), 0xFFFF
    pmap[[3, 7, 9, 20, 30]] = [32, 255, 256, 256 + 5, 0xFFFF]
    dmap = rng.integers(0, 16, NL).astype(np.uint8)
    dmap[[0, 5, 16, 31]] = [16, 31, 255, 200]
    ident = np.tile(np.arange(16), 2).astype(np.uint8)
    t = issue_cycles()
    run_one_stream_ops(
        [
            ("SXM.W.0", t[0], "Permute", E(8), a, pmap),
            ("SXM.W.1", t[1], "Distribute", W(9), a, dmap),
            ("SXM.E.0", t[2], "Distribute", E(10), a, ident),
            ("SXM.E.1", t[3], "Permute", W(11), a, LANE.astype(np.uint16)),  # identity: still x = 1
        ]
    )
    # spot checks of the reference by hand
    got, delay = expected("Permute", a, pmap)
    assert delay == 4 and got[3] == got[7] == got[9] == got[20] == got[30] == 0
    got, delay = expected("Distribute", a, dmap)
    assert delay == 2 and got[0] == got[5] == got[16] == got[31] == 0
    assert got[17] == a[16 + dmap[17]] and got[1] == a[dmap[1]]


@st.composite
def lane_map(draw, mnemonic):
    """A lane map with variety: a permutation, a gather with repeats, either with out-of-range entries."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mnemonic == "Permute":
        m = rng.permutation(NL) if draw(st.booleans()) else rng.integers(0, NL, NL)
        bad = rng.random(NL) < draw(st.sampled_from([0.0, 0.2, 0.5]))
        m = np.where(bad, rng.choice([NL, 255, 256, 257, 0x1F00, 0xFFFF], NL), m)
        return m.astype(np.uint16)
    m = rng.integers(0, 16, NL)
    bad = rng.random(NL) < draw(st.sampled_from([0.0, 0.2, 0.5]))
    return np.where(bad, rng.integers(16, 256, NL), m).astype(np.uint8)


@st.composite
def map_op(draw):
    m = draw(st.sampled_from(["Permute", "Distribute"]))
    return m, draw(lane_map(m)), draw(st.sampled_from("EW"))


@settings(max_examples=20, deadline=None)
@given(
    st.lists(map_op(), min_size=4, max_size=4),
    st.lists(st.integers(0, 2), min_size=4, max_size=4),
    st.permutations(range(8, 16)),
    st.integers(0, 2**32 - 1),
)
def test_permute_distribute_random(specs, jitter, dst_index, seed):
    rng = np.random.default_rng(seed)
    ops = []
    for k, ((m, mp, d), t) in enumerate(zip(specs, issue_cycles(jitter))):
        ops.append((UNITS[k], t, m, Stream(d, dst_index[k]), rng.integers(0, 256, NL, dtype=np.uint8), mp))
    run_one_stream_ops(ops)


# --------------------------------------------------------------------------- transpose
ARRIVE = (0, 1, 2, 6)
"""Cycle offsets at which packets 0..3 reach an SXM in the transpose tests. No two differ by 3 (a transpose's
delay): a result landing on the source streams never overwrites a packet passing, and an eastward result landing at
the east SXM never meets one arriving from the west SXM 6 hops away (9 cycles after its issue). Each MEM slice
reads once per packet: NOP, Read, Read, Read, NOP, Read fits a short queue."""


def packets(rig: Rig, sxm: str, x: np.ndarray, t0: int) -> None:
    """Source rows x[j] on streams j = 0..15 of the direction that reaches `sxm`; rows 4k..4k+3 (packet k) arrive
    at t0 + ARRIVE[k] (four MEM slices: four streams a cycle at most). Elsewhere the streams are zero."""
    d = "W" if sxm == "W" else "E"
    for j in range(16):
        rig.feed(sxm, x[j], t0 + ARRIVE[j // 4], Stream(d, j))


def masked(x: np.ndarray, k: int) -> np.ndarray:
    """x with only rows 4k..4k+3 kept: what the source group holds when packet k passes."""
    out = np.zeros_like(x)
    out[4 * k : 4 * k + 4] = x[4 * k : 4 * k + 4]
    return out


def assert_transpose_landed(tr, unit, cycle, dst_dir, out):
    for k in range(4):
        assert int(tr["landed_sid"][cycle, port(unit, k)]) == sid(Stream(dst_dir, 4 * k))
        np.testing.assert_array_equal(tr["landed_data"][cycle, port(unit, k)], out[4 * k : 4 * k + 4])
    np.testing.assert_array_equal(tr["streams"][cycle, "EW".index(dst_dir), SXM_POS[sxm_of(unit)]], out)


@pytest.mark.parametrize("sxm, dst_dir", [("W", "E"), ("W", "W"), ("E", "E"), ("E", "W")])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_transpose_sg16(sxm, dst_dir, seed):
    # Packet k (rows 4k..4k+3 of x) reaches the slice at T + ARRIVE[k]; unit k % 2 transposes the 16-stream group
    # then, and the 16 result streams land at T + ARRIVE[k] + 3 (x = 0).
    x = np.random.default_rng(seed).integers(0, 256, (16, NL), dtype=np.uint8)
    T = 8
    units = [u for u in UNITS if sxm_of(u) == sxm]
    src_dir = "W" if sxm == "W" else "E"
    rig = Rig()
    packets(rig, sxm, x, T)
    for k in range(4):
        rig.issue(units[k % 2], T + ARRIVE[k], "Transpose.sg16", Stream(dst_dir, 0), Stream(src_dir, 0))
    state, tr = rig.run()
    total = np.zeros_like(x)
    for k in range(4):
        out = transpose_ref(masked(x, k))
        assert_transpose_landed(tr, units[k % 2], T + ARRIVE[k] + D_TRANSPOSE, dst_dir, out)
        total |= out
    np.testing.assert_array_equal(total, transpose_ref(x))
    for i, u in enumerate(units):  # unit i: packets i, i + 2, on its four ports each
        assert landings(tr, u) == [
            (T + ARRIVE[k] + D_TRANSPOSE, p, sid(Stream(dst_dir, 4 * p))) for k in (i, i + 2) for p in range(4)
        ]
    assert L.hazard_report(TINY, state) == []


def test_transpose_by_hand():
    # out stream D+i, lane 16s + j = in stream A+j, lane 16s + i
    x = np.zeros((16, NL), np.uint8)
    x[1, 2] = 7  # stream A+1, lane 2 (superlane 0) -> stream D+2, lane 1
    x[3, 16 + 5] = 9  # stream A+3, lane 21 (superlane 1) -> stream D+5, lane 16 + 3
    out = transpose_ref(x)
    assert out[2, 1] == 7 and out[5, 19] == 9 and np.count_nonzero(out) == 2
    np.testing.assert_array_equal(transpose_ref(out), x)


@pytest.mark.parametrize("out_dir", ["E", "W"])
def test_transpose_twice_across_the_chip_is_the_identity(out_dir):
    # Packet k reaches the west SXM (pos 2) at a = T + ARRIVE[k] on W0..W15; W.(k%2) transposes it onto E0..E15: it
    # lands at pos 2 at a + 3 and reaches the east SXM (pos 8) 6 hops later, at a + 9, all 16 streams live at once;
    # E.(k%2) transposes it back: the packet lands on out_dir 0..15 at pos 8 at a + 12.
    x = np.random.default_rng(3).integers(1, 256, (16, NL), dtype=np.uint8)
    T = 8
    rig = Rig()
    packets(rig, "W", x, T)
    for k in range(4):
        rig.issue(f"SXM.W.{k % 2}", T + ARRIVE[k], "Transpose.sg16", E(0), W(0))
        rig.issue(f"SXM.E.{k % 2}", T + ARRIVE[k] + 9, "Transpose.sg16", Stream(out_dir, 0), E(0))
    state, tr = rig.run()
    for k in range(4):
        mid = transpose_ref(masked(x, k))
        assert np.count_nonzero(mid.any(axis=1)) == 16  # every one of the 16 streams carries data
        a = T + ARRIVE[k]
        assert_transpose_landed(tr, f"SXM.W.{k % 2}", a + 3, "E", mid)
        np.testing.assert_array_equal(tr["streams"][a + 9, 0, SXM_POS["E"]], mid)
        assert_transpose_landed(tr, f"SXM.E.{k % 2}", a + 12, out_dir, masked(x, k))
    assert L.hazard_report(TINY, state) == []


# --------------------------------------------------------------------------- chaining, Repeat
def test_result_is_consumed_at_its_own_position_in_its_landing_cycle():
    # W.0 Rotate.up E9, W0, 5 at T = 8 (x = 1): E9 holds it at pos 2 at 11. W.1 Shift.down W10, E9, 3 at 11 reads
    # it there (x = 1): lands at 14. W.0 Rotate.down W11, E9, 0 at 12 finds E9 gone (moved to pos 3): zeros at 14.
    a = np.random.default_rng(4).integers(1, 256, NL, dtype=np.uint8)
    rig = Rig()
    s = rig.source("W", a, 8)
    rig.issue("SXM.W.0", 8, "Rotate.up", E(9), s, 5)
    rig.issue("SXM.W.1", 11, "Shift.down", W(10), E(9), 3)
    rig.issue("SXM.W.0", 12, "Rotate.down", W(11), E(9), 0)
    state, tr = rig.run()
    mid = take(a, lane_sources("Rotate.up", 5))
    assert landings(tr, "SXM.W.0") == [(11, 0, sid(E(9))), (14, 0, sid(W(11)))]
    assert landings(tr, "SXM.W.1") == [(14, 0, sid(W(10)))]
    np.testing.assert_array_equal(tr["landed_data"][11, port("SXM.W.0"), 0], mid)
    np.testing.assert_array_equal(tr["landed_data"][14, port("SXM.W.1"), 0], take(mid, lane_sources("Shift.down", 3)))
    assert not tr["landed_data"][14, port("SXM.W.0"), 0].any()
    assert_on_stream(tr, "W", 14, W(10), take(mid, lane_sources("Shift.down", 3)))
    assert L.hazard_report(TINY, state) == []


def test_repeated_rotate_issues_every_cycle():
    # Three vectors pass the east SXM on E0 at 10, 11, 12; Rotate.up W9, E0, 16 placed at each cycle (the Timeline
    # writes it as one instruction and a Repeat) lands each at +3 (x = 1).
    vs = np.random.default_rng(5).integers(1, 256, (3, NL), dtype=np.uint8)
    rig = Rig()
    for i in range(3):
        rig.feed("E", vs[i], 10 + i, E(0))
        rig.issue("SXM.E.0", 10 + i, "Rotate.up", W(9), E(0), 16)
    assert any(ins.mnemonic == "Repeat" for ins in rig.tl.program().queues["SXM.E.0"])
    state, tr = rig.run()
    assert landings(tr, "SXM.E.0") == [(13 + i, 0, sid(W(9))) for i in range(3)]
    for i in range(3):
        np.testing.assert_array_equal(tr["landed_data"][13 + i, port("SXM.E.0"), 0], np.roll(vs[i], 16))
    assert L.hazard_report(TINY, state) == []


# --------------------------------------------------------------------------- hazards
def test_two_units_of_a_slice_on_one_stream_higher_unit_wins():
    # W.0 Rotate.up E9, a, 0 and W.1 Shift.up E9, b, 0 both at 8: both land on E9 at pos 2 at 10; W.1 wins.
    # At the same cycle E.0 and E.1 write different streams, and E.0 writes E9 too, at another position: no hazard.
    rng = np.random.default_rng(6)
    a, b, c, d = rng.integers(1, 256, (4, NL), dtype=np.uint8)
    rig = Rig()
    rig.issue("SXM.W.0", 8, "Rotate.up", E(9), rig.source("W", a, 8), 0)
    rig.issue("SXM.W.1", 8, "Shift.up", E(9), rig.source("W", b, 8), 0)
    rig.issue("SXM.E.0", 8, "Shift.up", E(9), rig.source("E", c, 8), 0)
    rig.issue("SXM.E.1", 8, "Shift.up", E(10), rig.source("E", d, 8), 0)
    state, tr = rig.run()
    k = HZ["stream_conflict"]
    assert np.asarray(state.hazards.count).tolist() == [int(i == k) for i in range(len(L.HAZARDS))]
    assert int(state.hazards.first_cycle[k]) == 10
    assert int(state.hazards.first_where[k]) == port("SXM.W.0") * 2 * NS + sid(E(9))
    assert L.hazard_report(TINY, state) == [
        "stream_conflict: 1 (first at cycle 10, stream E9 at position 2, lost by SXM.W.0 port 0)"
    ]
    assert_on_stream(tr, "W", 10, E(9), b)
    np.testing.assert_array_equal(tr["streams"][10, 0, 8, 9], c)
    np.testing.assert_array_equal(tr["streams"][10, 0, 8, 10], d)


@pytest.mark.parametrize("transpose_unit", [0, 1])
def test_transpose_and_shift_on_one_stream(transpose_unit):
    # E.<transpose_unit> Transpose.sg16 W0, E0 at 8 (lands at 11 on W0..W15); the other unit Shift.down W5, E4, 0
    # at 9 (x = 0, lands at 11). The higher unit takes W5; the loser loses W5 only (port 1 of a transpose: W4..W7).
    rng = np.random.default_rng(7)
    x = np.zeros((16, NL), np.uint8)
    x[:4] = rng.integers(1, 256, (4, NL), dtype=np.uint8)
    v = rng.integers(1, 256, NL, dtype=np.uint8)
    tu, su = f"SXM.E.{transpose_unit}", f"SXM.E.{1 - transpose_unit}"
    rig = Rig()
    for j in range(4):
        rig.feed("E", x[j], 8, E(j))
    rig.feed("E", v, 9, E(4))
    rig.issue(tu, 8, "Transpose.sg16", W(0), E(0))
    rig.issue(su, 9, "Shift.down", W(5), E(4), 0)
    state, tr = rig.run()
    out = transpose_ref(x)
    want = out.copy()
    if transpose_unit == 0:
        want[5] = v
        lost = port(tu, 1)
    else:
        lost = port(su, 0)
    k = HZ["stream_conflict"]
    assert int(state.hazards.count[k]) == 1 and int(state.hazards.first_cycle[k]) == 11
    assert int(state.hazards.first_where[k]) == lost * 2 * NS + sid(W(5))
    np.testing.assert_array_equal(tr["streams"][11, 1, SXM_POS["E"]], want)
    np.testing.assert_array_equal(tr["streams"][12, 1, SXM_POS["E"] - 1], want)
    assert L.hazard_report(TINY, state) == [
        f"stream_conflict: 1 (first at cycle 11, stream W5 at position 8, lost by SXM.E.0 port {1 - transpose_unit})"
    ]


def test_two_results_due_on_one_port_later_issue_wins():
    # W.0 Permute E10, a, M at 8 (3 + 1: due at 12), then Shift.up E11, b, 0 at 10 (2 + 0: due at 12 too).
    rng = np.random.default_rng(8)
    a, b = rng.integers(1, 256, (2, NL), dtype=np.uint8)
    rig = Rig()
    rig.issue("SXM.W.0", 8, "Permute", E(10), rig.source("W", a, 8), rig.map16("W", LANE.astype(np.uint16), 8))
    rig.issue("SXM.W.0", 10, "Shift.up", E(11), rig.source("W", b, 10), 0)
    state, tr = rig.run()
    k = HZ["port_conflict"]
    assert int(state.hazards.count[k]) == 1 and int(state.hazards.first_cycle[k]) == 10
    assert int(state.hazards.first_where[k]) == port("SXM.W.0")
    assert L.hazard_report(TINY, state) == ["port_conflict: 1 (first at cycle 10, SXM.W.0 port 0 (position 2))"]
    assert landings(tr, "SXM.W.0") == [(12, 0, sid(E(11)))]
    assert_on_stream(tr, "W", 12, E(11), b)
    assert not tr["streams"][12, 0, 2, 10].any()


# --------------------------------------------------------------------------- validation
GC1 = L.groqchip1()


@pytest.mark.parametrize(
    "cfg, queue, ins, words",
    [
        (TINY, "SXM.W.0", I("Shift.up", (E(0), W(0), 32)), "`Shift.up E0, W0, 32`: lane count 32 out of range (0..31"),
        (TINY, "SXM.E.1", I("Rotate.down", (E(0), W(0), -1)), "lane count -1 out of range (0..31 on tiny)"),
        (GC1, "SXM.W.3", I("Rotate.up", (E(0), W(0), 320)), "lane count 320 out of range (0..319 on groqchip1)"),
        (TINY, "SXM.W.0", I("Shift.down", (E(0), W(0), E(1))), "operand 3 must be an integer"),
        (TINY, "SXM.W.0", I("Shift.down", (E(0), W(0), True)), "operand 3 must be an integer"),
        (TINY, "SXM.W.0", I("Shift.down", (E(0), W(0))), "Shift.down takes 3 operand(s), got 2"),
        (TINY, "SXM.W.0", I("Shift.up", (3, W(0), 1)), "destination must be a stream like E3 or W0, got 3"),
        (TINY, "SXM.W.1", I("Shift.up", (E(0), W(16), 1)), "source W16 out of range"),
        (TINY, "SXM.W.0", I("Transpose.sg16", (E(8), W(0))), "destination E8..E23 out of range"),
        (TINY, "SXM.E.0", I("Transpose.sg16", (E(0), W(1))), "source W1..W16 out of range"),
        (GC1, "SXM.E.0", I("Transpose.sg16", (E(8), W(0))), "destination E8 is a 16-stream group and must start at"),
        (GC1, "SXM.E.0", I("Transpose.sg16", (E(0), W(4))), "source W4 is a 16-stream group and must start at a mult"),
        (TINY, "SXM.W.0", I("Permute", (E(0), W(0), E(3))), "map E3 is a 2-stream group and must start at a multiple"),
        (TINY, "SXM.W.0", I("Permute", (E(0), W(0), E(16))), "map E16..E17 out of range"),
        (TINY, "SXM.W.0", I("Distribute", (E(0), W(0), W(16))), "map W16 out of range"),
        (TINY, "MEM.W0", I("Shift.up", (E(0), W(0), 1)), "Shift.up is a SXM instruction and cannot run on a MEM queue"),
        (TINY, "SXM.W.0", I("Read", (0, E(0))), "Read is a MEM instruction and cannot run on a SXM queue"),
        (TINY, "SXM.W.2", I("Shift.up", (E(0), W(0), 1)), "unknown queue 'SXM.W.2'"),
    ],
)
def test_bad_sxm_operands_are_rejected(cfg, queue, ins, words):
    with pytest.raises(L.ProgramError, match=re.escape(words)):
        L.encode(cfg, L.Program({queue: [ins]}))


def test_repeat_of_an_sxm_op_takes_no_stride():
    prog = L.Program({"SXM.E.0": [I("Rotate.up", (E(0), W(0), 1)), I("Repeat", (2, 1, 1))]})
    with pytest.raises(L.ProgramError, match="a Repeat stride applies only to .* not to Rotate.up"):
        L.encode(TINY, prog)


def test_transpose_group_not_a_multiple_of_16_only_on_an_aligned_config():
    # the same out-of-alignment group is fine where groups need not be aligned (and fits: 8 + 16 <= 32)
    L.encode(GC1.replace(group_aligned=False), L.Program({"SXM.E.0": [I("Transpose.sg16", (E(8), W(0)))]}))


def test_transpose_sg16_needs_16_lane_superlanes():
    cfg = TINY.replace(lanes_per_superlane=8, n_superlanes=4)  # still 32 lanes
    prog = L.Program({"SXM.W.0": [I("Transpose.sg16", (E(0), W(0)))]})
    with pytest.raises(L.ProgramError, match="Transpose.sg16 needs 16-lane superlanes; tiny has 8"):
        L.encode(cfg, prog)
