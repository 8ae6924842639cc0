"""MXM: LW / IW / ABC / ACC against numpy, with timings derived by hand from the rules in mxm.py.

tiny(): plane p sits at `positions[mxm_slices[p]]` (0, 1 west; 9, 10 east); MEM W1..E1 at 3, 4, 6, 7. A Read
issued at t on a slice at position q lands there at t + d(Read) = t + 2 and reaches position x at t + 2 + |q - x|.
West planes take westward streams and emit eastward. The product of an ABC issued at t is due to the ACC issued
at t + d(mxm.abc) + (n_superlanes - 1) = t + 4 + 1; an emitted row lands at the plane at t_acc + d(mxm.acc).
"""

from __future__ import annotations

import numpy as np
from conftest import TINY, TRACE, blank_mem, mem_index
from hypothesis import given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax import isa
from lpu_jax.isa import E, W
from lpu_jax.isa import Instruction as I
from lpu_jax.kernels import Timeline

NL = TINY.n_lanes
HZ = {k: i for i, k in enumerate(L.HAZARDS)}
TR = TRACE  # the suite-wide trace fields: one compiled simulator for all
ABC_LAT = TINY.delay("mxm.abc") + TINY.n_superlanes - 1
D_ACC, D_IW, D_R = TINY.delay("mxm.acc"), TINY.delay("mxm.iw"), TINY.delay("Read")


def plane_pos(p):
    return int(TINY.positions[TINY.mxm_slices[p]])


def slice_pos(name):
    return int(TINY.positions[TINY.mem_slices[mem_index(TINY, name)]])


def port(p):
    return TINY.n_mem + TINY.vxm_alus + p


def words(rows4: np.ndarray) -> np.ndarray:
    """uint8 [..., 4, L] little-endian stream bytes -> uint32 [..., L]."""
    r = rows4.astype(np.uint32)
    return r[..., 0, :] | r[..., 1, :] << 8 | r[..., 2, :] << 16 | r[..., 3, :] << 24


def feed(tl: Timeline, plane: int, slice_name: str, addr: int, arrive: int, stream: isa.Stream):
    """Read MEM word `addr` of `slice_name` so that it reaches `plane` at cycle `arrive` on `stream`."""
    t = arrive - D_R - abs(slice_pos(slice_name) - plane_pos(plane))
    tl.place(f"MEM.{slice_name}", t, I("Read", (addr, stream)))


def load_weights(tl, plane, slice_name, base, start, stream, rows=NL):
    """Weight rows base..base+rows-1 of `slice_name`, one per cycle, LW'd into rows 0.. from cycle `start`."""
    for r in range(rows):
        feed(tl, plane, slice_name, base + r, start + r, stream)
        tl.place(f"MXM.{plane}.W", start + r, I("LW", (r, stream, 1)))
    return start + rows


def emitted(trace, plane):
    """(cycle, int32 row) of every result plane `plane` put on the streams."""
    sids = trace["landed_sid"][:, port(plane)]
    return [(c, words(trace["landed_data"][c, port(plane)])) for c in np.flatnonzero(sids >= 0)]


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2]))
def test_int8_matvec_is_exact_and_lands_on_time(seed, plane):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (NL, NL), dtype=np.int8)
    x = rng.integers(-128, 128, (3, NL), dtype=np.int8)
    x[0] = -128  # extremes: -128 * -128 summed over every lane
    w[:, 0] = -128
    mem = blank_mem(TINY)
    wsl, xsl = ("W0", "W1") if plane < 2 else ("E0", "E1")  # upstream of the plane
    mem[mem_index(TINY, wsl), :NL] = w.view(np.uint8)
    mem[mem_index(TINY, xsl), :3] = x.view(np.uint8)
    din = "EW"[TINY.plane_in_dir(plane)]
    dout = "EW"[1 - TINY.plane_in_dir(plane)]
    tl = Timeline(TINY)
    t = load_weights(tl, plane, wsl, 0, 8, isa.Stream(din, 8))
    tl.place(f"MXM.{plane}.W", t, I("IW"))
    t_abc = t + D_IW  # the first cycle the new weights are in use
    for i in range(3):
        feed(tl, plane, xsl, i, t_abc + i, isa.Stream(din, 9))
        tl.place(f"MXM.{plane}.A", t_abc + i, I("ABC.i8", (isa.Stream(din, 9),)))
        tl.place(f"MXM.{plane}.C", t_abc + i + ABC_LAT, I("ACC.i32", (i, isa.ACC_EMIT, isa.Stream(dout, 4))))
    state, tr = L.run(TINY, tl.program(), L.init_state(TINY, mem), t_abc + 3 + ABC_LAT + D_ACC + 2, trace=TR)
    ref = x.astype(np.int64) @ w.astype(np.int64)
    out = emitted(tr, plane)
    assert [c for c, _ in out] == [t_abc + i + ABC_LAT + D_ACC for i in range(3)]
    np.testing.assert_array_equal(np.stack([v for _, v in out]).view(np.int32), ref)
    np.testing.assert_array_equal(np.asarray(state.mxm.acc)[plane, :3].view(np.int32), ref)
    assert L.hazard_report(TINY, state) == []


def test_iw_takes_effect_d_iw_cycles_later_and_lw_after_it_does_not_leak():
    rng = np.random.default_rng(5)
    w1, w2, w3 = (rng.integers(-128, 128, (NL, NL), dtype=np.int8) for _ in range(3))
    x = rng.integers(-128, 128, NL, dtype=np.int8)
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W1"), :NL] = w1.view(np.uint8)
    mem[mem_index(TINY, "W1"), NL : 2 * NL] = w2.view(np.uint8)
    mem[mem_index(TINY, "E0"), :NL] = w3.view(np.uint8)
    mem[mem_index(TINY, "W0"), 0] = x.view(np.uint8)
    tl = Timeline(TINY)
    t = load_weights(tl, 1, "W1", 0, 8, W(8))
    tl.place("MXM.1.W", t, I("IW"))  # installs w1 at t + D_IW
    t2 = load_weights(tl, 1, "W1", NL, t + 1, W(8))
    tl.place("MXM.1.W", t2, I("IW"))  # installs w2 at t2 + D_IW
    load_weights(tl, 1, "E0", 0, t2 + 1, W(10))  # w3 goes into the buffer after the IW: never installed
    # ABCs just before and at the second install, and one long after
    abc = [t2 + D_IW - 1, t2 + D_IW, t2 + D_IW + 2 * NL]
    for k, ta in enumerate(abc):
        feed(tl, 1, "W0", 0, ta, W(9))
        tl.place("MXM.1.A", ta, I("ABC.i8", (W(9),)))
        tl.place("MXM.1.C", ta + ABC_LAT, I("ACC.i32", (k, 0, E(0))))
    state, _ = L.run(TINY, tl.program(), L.init_state(TINY, mem), abc[-1] + ABC_LAT + 2, trace=TR)
    got = np.asarray(state.mxm.acc)[1, :3].view(np.int32)
    xi = x.astype(np.int64)
    np.testing.assert_array_equal(got, [xi @ w1, xi @ w2, xi @ w2])
    assert L.hazard_report(TINY, state) == []


def test_acc_modes_set_add_and_emit_only_when_asked():
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, (NL, NL), dtype=np.int8)
    x = rng.integers(-128, 128, (3, NL), dtype=np.int8)
    mem = blank_mem(TINY)
    mem[mem_index(TINY, "W1"), :NL] = w.view(np.uint8)
    mem[mem_index(TINY, "W0"), :3] = x.view(np.uint8)
    tl = Timeline(TINY)
    t = load_weights(tl, 1, "W1", 0, 8, W(8))
    tl.place("MXM.1.W", t, I("IW"))
    modes = [0, isa.ACC_ADD, isa.ACC_ADD | isa.ACC_EMIT]  # set, add, add+emit into row 5
    for i, mode in enumerate(modes):
        ta = t + D_IW + i
        feed(tl, 1, "W0", i, ta, W(9))
        tl.place("MXM.1.A", ta, I("ABC.i8", (W(9),)))
        tl.place("MXM.1.C", ta + ABC_LAT, I("ACC.i32", (5, mode, E(0))))
    state, tr = L.run(TINY, tl.program(), L.init_state(TINY, mem), t + D_IW + 3 + ABC_LAT + 3, trace=TR)
    ref = (x.astype(np.int64) @ w.astype(np.int64)).sum(0)
    out = emitted(tr, 1)
    assert [c for c, _ in out] == [t + D_IW + 2 + ABC_LAT + D_ACC]  # only the third ACC emits
    np.testing.assert_array_equal(out[0][1].view(np.int32), ref)


def test_unpaired_acc_and_product_are_hazards():
    tl = Timeline(TINY)
    tl.place("MXM.2.A", 3, I("ABC.i8", (E(8),)))  # product due at 3 + ABC_LAT: nobody takes it
    tl.place("MXM.2.C", 3 + ABC_LAT + 1, I("ACC.i32", (0, isa.ACC_EMIT, W(0))))  # one cycle late: no product
    state, _ = L.run(TINY, tl.program(), None, 3 + ABC_LAT + 4, trace=TR)
    k = HZ["mxm_unpaired"]
    assert np.asarray(state.hazards.count)[k] == 2
    assert np.asarray(state.hazards.first_cycle)[k] == 3 + ABC_LAT
    assert L.hazard_report(TINY, state) == [f"mxm_unpaired: 2 (first at cycle {3 + ABC_LAT}, MXM plane 2)"]


def _f16_exact_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """float64 sum of fp16 products (exact here: the values span few binades), rounded once to fp32."""
    return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fp16_half_dot_rounded_once_two_cycle_occupancy(seed):
    rng = np.random.default_rng(seed)
    K = NL // 2
    # values k * 2^-6 with |k| < 2^11: every product and partial sum is exact in float64
    w = (rng.integers(-2047, 2048, (K, NL)) / 64).astype(np.float16)
    xs = (rng.integers(-2047, 2048, (2, NL)) / 64).astype(np.float16)  # two activation vectors of L elements
    mem = blank_mem(TINY)
    wb = L.pack_np(w, "f16")  # [K, 2, L]: weight row k = buffer rows 2k, 2k+1
    mem[mem_index(TINY, "W1"), :NL] = wb.reshape(NL, NL)
    xb = L.pack_np(xs, "f16")  # [2, 2, L]
    mem[mem_index(TINY, "W0"), :2] = xb[:, 0]
    mem[mem_index(TINY, "E0"), :2] = xb[:, 1]
    tl = Timeline(TINY)
    t = load_weights(tl, 1, "W1", 0, 8, W(8))
    tl.place("MXM.1.W", t, I("IW"))
    t0 = t + D_IW
    cases = [(0, 0), (0, 1), (1, 1)]  # (vector, half)
    for i, (v, h) in enumerate(cases):
        ta = t0 + 2 * i  # ABC.f16 holds its queue two cycles
        feed(tl, 1, "W0", v, ta, W(10))
        feed(tl, 1, "E0", v, ta, W(11))
        tl.place("MXM.1.A", ta, I("ABC.f16", (W(10), h)))
        tl.place("MXM.1.C", ta + ABC_LAT, I("ACC.f32", (i, isa.ACC_EMIT, E(0))))
    state, tr = L.run(TINY, tl.program(), L.init_state(TINY, mem), t0 + 6 + ABC_LAT + 3, trace=TR)
    issued = [c for c in range(tr["issued"].shape[0]) if tr["issued"][c, isa.queue_names(TINY).index("MXM.1.A"), 0]]
    assert issued == [t0, t0 + 2, t0 + 4]
    out = emitted(tr, 1)
    got = np.stack([v for _, v in out]).view(np.float32)
    ref = np.stack([_f16_exact_reference(xs[v, h * K : (h + 1) * K], w) for v, h in cases])
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert L.hazard_report(TINY, state) == []


def test_abc_f16_repeat_needs_an_interval_of_two():
    prog = L.Program({"MXM.1.A": [I("ABC.f16", (W(2), 0)), I("Repeat", (3, 1, 0))]})
    try:
        L.encode(TINY, prog)
    except L.ProgramError as e:
        assert "occupies its queue 2 cycles" in str(e)
    else:
        raise AssertionError("Repeat of ABC.f16 every cycle was accepted")


def test_groqchip1_installs_all_four_planes_in_under_40_cycles_when_streams_are_full():
    """P20: all weights installed in < 40 cycles. Each edge's 32 streams feed its two planes 16 rows a cycle each,
    so every plane's 320 rows load in 20 cycles (LW), and the IW issued right after is in use d(mxm.iw) later."""
    cfg = L.groqchip1()
    Lc, dR, d_iw = cfg.n_lanes, cfg.delay("Read"), cfg.delay("mxm.iw")
    lat = cfg.delay("mxm.abc") + cfg.n_superlanes - 1
    rng = np.random.default_rng(11)
    w = rng.integers(-128, 128, (4, Lc, Lc), dtype=np.int8)
    x = rng.integers(-128, 128, (4, Lc), dtype=np.int8)
    mem = np.zeros((cfg.n_mem, cfg.mem_words, Lc), np.uint8)
    pos_m = cfg.positions[cfg.mem_slices]
    west = sorted(range(cfg.n_mem // 2), key=lambda s: pos_m[s])[:33]
    east = sorted(range(cfg.n_mem // 2, cfg.n_mem), key=lambda s: -pos_m[s])[:33]
    tl = Timeline(cfg)
    t0 = 40  # the first LW: late enough for every Read to issue at a cycle >= 0
    for p in range(4):
        din = "EW"[cfg.plane_in_dir(p)]
        near = west if din == "W" else east
        slices = near[16 * (p % 2) : 16 * (p % 2) + 16]
        pp = int(cfg.positions[cfg.mxm_slices[p]])
        for j in range(Lc // 16):  # 20 LWs of 16 rows
            for i, s in enumerate(slices):
                mem[s, j] = w[p, 16 * j + i].view(np.uint8)
                tl.place(
                    f"MEM.{cfg.mem_names[s]}",
                    t0 + j - dR - abs(int(pos_m[s]) - pp),
                    I("Read", (j, isa.Stream(din, 16 * (p % 2) + i))),
                )
            tl.place(f"MXM.{p}.W", t0 + j, I("LW", (16 * j, isa.Stream(din, 16 * (p % 2)), 16)))
        t_iw = t0 + Lc // 16
        tl.place(f"MXM.{p}.W", t_iw, I("IW"))
        t_abc = t_iw + d_iw  # the first cycle the new weights are in use
        s = near[32]
        mem[s, 100 + p] = x[p].view(np.uint8)
        q = f"MEM.{cfg.mem_names[s]}"
        tl.place(q, t_abc - dR - abs(int(pos_m[s]) - pp), I("Read", (100 + p, isa.Stream(din, 0))))
        tl.place(f"MXM.{p}.A", t_abc, I("ABC.i8", (isa.Stream(din, 0),)))
        tl.place(f"MXM.{p}.C", t_abc + lat, I("ACC.i32", (0, 0, isa.Stream("EW"[1 - cfg.plane_in_dir(p)], 0))))
    assert t_abc - t0 == Lc // 16 + d_iw < 40
    state, _ = L.run(cfg, tl.program(), L.init_state(cfg, mem), t_abc + lat + 2, donate=True)
    acc = np.asarray(state.mxm.acc)[:, 0].view(np.int32)
    for p in range(4):
        np.testing.assert_array_equal(acc[p], x[p].astype(np.int64) @ w[p].astype(np.int64), err_msg=f"plane {p}")
    assert L.hazard_report(cfg, state) == []
