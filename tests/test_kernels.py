"""Kernel generators against numpy: GEMM (int8 bit-exact, fp16 within the derived bound), transpose in MEM, and
the Timeline that turns placed instructions into programs.

The fp16 bound (docs/kernels.md): each MXM sub-product over a K tile of L/2 rows is the exact sum rounded once to
fp32 (relative error <= u = 2^-24), and the Kt tile results are summed in fp32 in tile order (Kt - 1 more
roundings). Standard recursive-summation analysis gives |C - C_exact| <= gamma(Kt) * sum_k |a_k b_k| with
gamma(n) = n u / (1 - n u). The float64 reference adds its own error, at most K * 2^-53 * sum_k |a_k b_k|.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TINY, TRACE
from hypothesis import given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax import isa
from lpu_jax.isa import E, W
from lpu_jax.isa import Instruction as I
from lpu_jax.kernels import CapacityError, Timeline, gemm, run_kernel, transpose

LENGTH = 1024  # every kernel run encodes at (at least) this size class: one compiled simulator for the suite
CHUNK = 1  # and runs in single-cycle scans: the scan the CLI's gemm compiles too (test_errors); a second scan length
# would cost a compile that takes longer than the few thousand single-cycle steps of these runs
HZ_FREE: list[str] = []


def _run(kernel, values):
    out, state = run_kernel(kernel, values, length=LENGTH, chunk=CHUNK)
    assert L.hazard_report(kernel.cfg, state) == HZ_FREE
    assert L.is_idle(state, isa.encode(kernel.cfg, kernel.program, length=None))  # done within its cycle count
    return out


@settings(max_examples=12, deadline=None)
@given(
    st.integers(1, 70),
    st.integers(1, 70),
    st.integers(1, 70),
    st.sampled_from([None, (1,), (2,), (0, 3), (1, 2)]),
    st.integers(0, 2**32 - 1),
)
def test_gemm_int8_is_bit_exact(M, K, N, planes, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    a[0, :] = -128  # the largest products
    b[:, 0] = -128
    k = gemm(TINY, M, K, N, "i8", planes)
    out = _run(k, {"a": a, "b": b})["c"]
    np.testing.assert_array_equal(out, a.astype(np.int64) @ b.astype(np.int64))
    assert out.dtype == np.int32
    peak = TINY.n_planes * TINY.n_lanes**2  # int8: every plane's L x L MACs each cycle
    assert k.utilisation == pytest.approx(M * K * N / (peak * k.cycles))


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 40), st.integers(1, 90), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_gemm_fp16_within_the_accumulation_bound(M, K, N, seed):
    rng = np.random.default_rng(seed)
    scale = 2.0 ** rng.integers(-8, 8, (M, K))  # spread exponents
    a = (rng.standard_normal((M, K)) * scale).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    k = gemm(TINY, M, K, N, "f16")
    out = _run(k, {"a": a, "b": b})["c"]
    assert out.dtype == np.float32
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64
    mag = np.abs(a64) @ np.abs(b64)
    u = 2.0**-24
    kt = math.ceil(K / (TINY.n_lanes // 2))
    bound = kt * u / (1 - kt * u) * mag + K * 2.0**-53 * mag
    err = np.abs(out.astype(np.float64) - ref)
    assert (err <= bound).all(), float((err / np.maximum(bound, 1e-300)).max())
    peak = TINY.n_planes * (TINY.n_lanes // 2) * TINY.n_lanes // 2  # fp16: a quarter of the int8 MAC rate
    assert k.utilisation == pytest.approx(M * K * N / (peak * k.cycles))


def test_gemm_fp16_one_k_tile_is_rounded_once():
    # K <= L/2: one sub-product, so the result is the exact sum rounded once: equal to float64 (exact here)
    rng = np.random.default_rng(3)
    a = (rng.integers(-2047, 2048, (5, 16)) / 64).astype(np.float16)
    b = (rng.integers(-2047, 2048, (16, 9)) / 32).astype(np.float16)
    out = _run(gemm(TINY, 5, 16, 9, "f16"), {"a": a, "b": b})["c"]
    np.testing.assert_array_equal(out, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_transpose_in_mem(R, C, seed):
    x = np.random.default_rng(seed).integers(-128, 128, (R, C), dtype=np.int8)
    k = transpose(TINY, R, C)
    np.testing.assert_array_equal(_run(k, {"x": x})["y"], x.T)


def test_gemm_bad_arguments_and_capacity():
    with pytest.raises(ValueError, match="M must be a positive int"):
        gemm(TINY, 0, 3, 3)
    with pytest.raises(ValueError, match="dtype must be 'i8' or 'f16'"):
        gemm(TINY, 3, 3, 3, "f32")
    with pytest.raises(ValueError, match="planes must be distinct plane indices in 0..3"):
        gemm(TINY, 3, 3, 3, planes=(4,))
    with pytest.raises(CapacityError, match=r"needs \d+ more words in MEM slice .*\(tiny: 4 slices x 512 words"):
        gemm(TINY, 500, 500, 500)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 2)), min_size=1, max_size=25, unique_by=lambda e: e[0]))
def test_timeline_program_issues_every_instruction_at_its_cycle(events):
    """Random Reads (a few addresses, so runs with strides appear) placed at random cycles on one queue: the
    program's issue trace is exactly the placement (the ICU's NOP/Repeat rules make it so)."""
    tl = Timeline(TINY)
    for t, k in events:
        tl.place("MEM.W0", t, I("Read", (7 * k + t // 4, E(k))))
    state, tr = L.run(TINY, tl.program(), None, 64, trace=TRACE)
    q = isa.queue_names(TINY).index("MEM.W0")
    got = {c: tuple(tr["issued"][c, q, :3]) for c in range(64) if tr["issued"][c, q, 0]}
    want = {t: (isa.READ, 7 * k + t // 4, k) for t, k in events}
    assert got == want


_KINDS = {  # queue, instruction for a value v (the strided field where there is one), occupancy
    "read": ("MEM.E1", lambda v: I("Read", (v, W(3))), 1),
    "lw": ("MXM.2.W", lambda v: I("LW", (v % 30, E(4), 2)), 1),
    "acc": ("MXM.0.C", lambda v: I("ACC.i32", (v % 32, 0, E(0))), 1),
    "abc16": ("MXM.1.A", lambda v: I("ABC.f16", (W(2), v % 2)), 2),
}


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(sorted(_KINDS)), st.lists(st.integers(0, 58), min_size=1, max_size=20, unique=True), st.data())
def test_timeline_strided_and_two_cycle_instructions(kind, cycles, data):
    """LW rows and ACC rows advance under Repeat strides like addresses; an ABC.f16 holds its queue two cycles."""
    queue, make, occ = _KINDS[kind]
    tl = Timeline(TINY)
    placed = {}
    for t in sorted(cycles):
        if tl.free(queue, t, occ):
            v = data.draw(st.sampled_from([t, t // 2, 5]))  # constant, strided and irregular runs
            tl.place(queue, t, make(v))
            placed[t] = isa.encode_instruction(TINY, make(v))
    state, tr = L.run(TINY, tl.program(), None, 64, trace=TRACE)
    q = isa.queue_names(TINY).index(queue)
    got = {c: list(tr["issued"][c, q]) for c in range(64) if tr["issued"][c, q, 0]}
    assert got == placed


def test_timeline_refuses_a_busy_queue():
    tl = Timeline(TINY)
    tl.place("MXM.1.A", 4, I("ABC.f16", (W(2), 0)))  # holds the queue at 4 and 5
    with pytest.raises(ValueError, match="MXM.1.A is already busy at cycle 5"):
        tl.place("MXM.1.A", 5, I("ABC.i8", (W(2),)))


@pytest.mark.slow
def test_gemm_isca_2304x4096x1376_on_groqchip1_reaches_80_percent_bit_exact():
    """P22's GEMM case (>= 80% MXM utilisation on the real chip) in the cycle-level simulator, int8, bit-exact."""
    cfg = L.groqchip1()
    M, K, N = 2304, 4096, 1376
    rng = np.random.default_rng(2022)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    k = gemm(cfg, M, K, N)
    assert k.utilisation >= 0.80
    out, state = run_kernel(k, {"a": a, "b": b})
    assert L.hazard_report(cfg, state) == []
    np.testing.assert_array_equal(out["c"], a.astype(np.int64) @ b.astype(np.int64))
