"""Tests for lpu_jax.dotmath: exact int8 and fp16 dot products against independent exact references.

References, none of which uses the code under test:
  * int8: numpy int64 matmul.
  * fp16: each fp16 value (numpy float16 -> float64, exact) is the integer X * 2^-24; the finite part of a dot
    product is the exact Python-int (object dtype) matmul sum V = sum X*W, and the expected fp32 is the
    correctly rounded value of the Fraction V / 2^48, found by comparing the three fp32 neighbours of
    float32(float(q)) with Fractions (ties to the even bit pattern). Special values come from float64 products.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for lpu_jax

from lpu_jax.dotmath import DOT_F16_MAX_K, DOT_I8_MAX_K, dot_f16, dot_i8

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
J16 = jax.jit(dot_f16)
J8 = jax.jit(dot_i8)
NAN, PINF, NINF = 0x7FC00000, 0x7F800000, 0xFF800000
K_HYP, N_HYP = 24, 3  # fixed hypothesis shapes: the jitted function compiles once


# --------------------------------------------------------------------------- references
def f32_rne_bits(q: Fraction) -> int:
    """Bits of the fp32 nearest to q (ties to even); q must be in the normal fp32 range or zero (-> +0)."""
    if q == 0:
        return 0
    c = np.float32(float(q))  # float(q) is correctly rounded to float64: c is within one fp32 ulp of the answer
    cands = [np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))]
    best = min(cands, key=lambda v: (abs(Fraction(float(v)) - q), int(np.float32(v).view(np.uint32)) & 1))
    return int(np.float32(best).view(np.uint32))


def frac_dot(xb, wb) -> Fraction:
    """Exact sum of the products of two 1-D fp16 bit vectors (finite values), with Fractions."""
    return sum(
        (Fraction(float(a)) * Fraction(float(b)) for a, b in zip(xb.view(np.float16), wb.view(np.float16))),
        Fraction(0),
    )


def _ints(bits: np.ndarray) -> np.ndarray:
    """fp16 bits -> object array of Python ints X with value = X * 2^-24 (NaN/inf -> 0)."""
    v = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    return np.vectorize(lambda a: int(a * 2.0**24), otypes=[object])(v)


def ref_f16(xb: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """Expected uint32 bits of dot_f16 for x [..., K] and w [..., K, N] (jnp.matmul batch broadcasting)."""
    xb, wb = np.asarray(xb, np.uint16), np.asarray(wb, np.uint16)
    v = np.matmul(_ints(xb)[..., None, :], _ints(wb))[..., 0, :]  # exact Python ints, value * 2^48
    xf = xb.view(np.float16).astype(np.float64)[..., :, None]
    wf = wb.view(np.float16).astype(np.float64)
    with np.errstate(invalid="ignore"):
        p = xf * wf  # [..., K, N]: inf only from an inf factor, NaN from a NaN factor or inf*0
    nan = np.isnan(p).any(-2)
    pinf, ninf = (p == np.inf).any(-2), (p == -np.inf).any(-2)
    shape = np.broadcast_shapes(v.shape, nan.shape)
    v, nan, pinf, ninf = (np.broadcast_to(a, shape) for a in (v, nan, pinf, ninf))
    out = np.empty(shape, np.uint32)
    for idx in np.ndindex(shape):
        if nan[idx] or (pinf[idx] and ninf[idx]):
            out[idx] = NAN
        elif pinf[idx]:
            out[idx] = PINF
        elif ninf[idx]:
            out[idx] = NINF
        else:
            out[idx] = f32_rne_bits(Fraction(int(v[idx]), 2**48))
    return out


def f16bits(values) -> np.ndarray:
    """fp16 bits of values that must be exactly representable."""
    a = np.asarray(values, np.float64)
    h = a.astype(np.float16)
    assert np.array_equal(h.astype(np.float64), a, equal_nan=True), "not an exact fp16 value"
    return h.view(np.uint16)


def check(xb, wb, fn=J16):
    got = np.asarray(fn(np.asarray(xb, np.uint16), np.asarray(wb, np.uint16)))
    want = ref_f16(xb, wb)
    assert got.dtype == np.uint32
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[0]}: got {got[tuple(bad[0])]:#010x} want " + (
        f"{want[tuple(bad[0])]:#010x}"
    )
    return got


def one(xs, ws) -> int:
    """dot_f16 of one short x (fp16 bits) with one column ws, padded to the hypothesis shape (one compilation):
    column 0 is ws, column 1 is ws with every sign flipped, column 2 is zero; all three checked."""
    x = np.zeros(K_HYP, np.uint16)
    w = np.zeros((K_HYP, N_HYP), np.uint16)
    x[: len(xs)] = xs
    w[: len(ws), 0] = ws
    w[: len(ws), 1] = np.asarray(ws, np.uint16) ^ 0x8000
    return int(check(x, w)[0])


# --------------------------------------------------------------------------- strategies
def finite_f16() -> st.SearchStrategy[int]:
    """Finite fp16 bits, uniform over the 2 * 31 * 1024 patterns: the exponent field is uniform over 0..30, so
    subnormals and both extremes are frequent (one draw per element keeps generation fast)."""
    return st.integers(0, 2 * 31 * 1024 - 1).map(lambda v: ((v // (31 * 1024)) << 15) | (v % (31 * 1024)))


SPECIALS = (0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFFFF, 0x0000, 0x8000)


def any_f16() -> st.SearchStrategy[int]:
    return st.one_of(finite_f16(), st.sampled_from(SPECIALS))


def arrays(elem, n: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(elem, min_size=n, max_size=n).map(lambda v: np.array(v, np.uint16))


# --------------------------------------------------------------------------- int8
def ref_i8(x, w):
    return np.matmul(x.view(np.int8).astype(np.int64)[..., None, :], w.view(np.int8).astype(np.int64))[..., 0, :]


@pytest.mark.parametrize("xs, ws", [((7,), (7, 5)), ((2, 3, 33), (33, 9)), ((4, 20), (4, 20, 6)), ((20,), (3, 20, 2))])
def test_i8_random(xs, ws):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, xs, dtype=np.uint8)
    w = rng.integers(0, 256, ws, dtype=np.uint8)
    want = ref_i8(x, w)
    for fn in (dot_i8, J8):
        got = np.asarray(fn(x, w))
        assert got.dtype == np.int32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_i8_extremes():
    k = DOT_I8_MAX_K
    cases = {
        "-128*-128": (np.full(k, 0x80, np.uint8), np.full((k, 1), 0x80, np.uint8)),  # exactly 2^24
        "-128*127": (np.full(k, 0x80, np.uint8), np.full((k, 1), 0x7F, np.uint8)),
        "127*127": (np.full(k, 0x7F, np.uint8), np.full((k, 1), 0x7F, np.uint8)),
        "2^24 - 1": (np.r_[np.full(k - 1, 0x80), 0x7F].astype(np.uint8), np.full((k, 1), 0x80, np.uint8)),
    }
    for name, (x, w) in cases.items():
        want = ref_i8(x, w)
        assert np.array_equal(np.asarray(J8(x, w)), want), name
        assert np.array_equal(np.asarray(dot_i8(x.view(np.int8), w.view(np.int8))), want), name
    assert int(ref_i8(*cases["-128*-128"])[0]) == 2**24


def test_i8_errors():
    with pytest.raises(ValueError, match="exceeds"):
        dot_i8(np.zeros(DOT_I8_MAX_K + 1, np.uint8), np.zeros((DOT_I8_MAX_K + 1, 2), np.uint8))
    with pytest.raises(ValueError, match="mismatch"):
        dot_i8(np.zeros(4, np.uint8), np.zeros((5, 2), np.uint8))
    with pytest.raises(ValueError, match="broadcast"):
        dot_i8(np.zeros((3, 4), np.uint8), np.zeros((2, 4, 2), np.uint8))
    with pytest.raises(TypeError):
        dot_i8(np.zeros(4, np.int32), np.zeros((4, 2), np.uint8))


# --------------------------------------------------------------------------- fp16: decoding, exhaustively
def test_f16_decode_exhaustive():
    """Every fp16 bit pattern: the limbs recompose the exact scaled integer X (value = X * 2^-24), each limb is an
    integer of magnitude <= 255 (so exact even in bf16 matmul inputs), and the class features match numpy."""
    import ml_dtypes

    from lpu_jax.dotmath import _decode_f16

    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    limbs, feats = jax.jit(_decode_f16)(h)
    limbs = np.asarray(limbs)  # [L, 65536]
    v = h.view(np.float16).astype(np.float64)
    finite = np.isfinite(v)
    assert np.all(np.abs(limbs) <= 255) and np.all(limbs == np.round(limbs))
    np.testing.assert_array_equal(limbs.astype(ml_dtypes.bfloat16).astype(np.float32), limbs)
    x = sum(limbs[i].astype(np.int64) << (8 * i) for i in range(limbs.shape[0]))
    np.testing.assert_array_equal(x, (np.where(finite, v, 0) * 2.0**24).astype(np.int64))
    sign = np.where(np.signbit(v), -1.0, 1.0)
    want = {
        "inf": np.isinf(v),
        "fin": finite & (v != 0),
        "zero": v == 0,
        "s_inf": sign * np.isinf(v),
        "s_fin": sign * (finite & (v != 0)),
        "nan": np.isnan(v),
    }
    for name, w in want.items():
        np.testing.assert_array_equal(np.asarray(feats[name]), w, err_msg=name)


# --------------------------------------------------------------------------- fp16: reference self-checks
def test_reference_rounding_helper():
    one = Fraction(1)
    assert f32_rne_bits(one + Fraction(1, 2**24)) == 0x3F800000  # tie, to even (down)
    assert f32_rne_bits(one + Fraction(3, 2**24)) == 0x3F800002  # tie, to even (up)
    assert f32_rne_bits(one + Fraction(1, 2**24) + Fraction(1, 2**60)) == 0x3F800001
    assert f32_rne_bits(-one - Fraction(3, 2**24)) == 0xBF800002
    assert f32_rne_bits(Fraction(1, 2**48)) == 0x27800000


# --------------------------------------------------------------------------- fp16: random and structured
@FAST
@given(arrays(finite_f16(), K_HYP), arrays(finite_f16(), K_HYP * N_HYP), st.integers(1, K_HYP))
def test_f16_random_finite(x, w, k):
    x = x.copy()
    x[k:] = 0  # effective K = k
    check(x, w.reshape(K_HYP, N_HYP))


@FAST
@given(
    arrays(finite_f16(), K_HYP // 2 - 2),
    arrays(finite_f16(), K_HYP // 2 - 2),
    finite_f16(),
    finite_f16(),
    st.permutations(range(K_HYP)),
)
def test_f16_cancellation(a, b, x_last, w_last, perm):
    """Pairs x*w and (-x)*w cancel exactly; one more (often tiny) term survives, among huge cancelling ones."""
    xs = np.r_[a, a ^ 0x8000, 0x7BFF, 0xFBFF, x_last].astype(np.uint16)  # +-65504 cancel too
    ws = np.r_[b, b, 0x7BFF, 0x7BFF, w_last].astype(np.uint16)
    xs, ws = np.r_[xs, 0][perm].astype(np.uint16), np.r_[ws, 0][perm].astype(np.uint16)
    w = np.stack([ws, ws ^ 0x8000, np.zeros_like(ws)], axis=-1)  # also the negated sum, and a zero column
    got = check(xs, w)
    exact = Fraction(float(np.uint16(x_last).view(np.float16))) * Fraction(float(np.uint16(w_last).view(np.float16)))
    assert got[0] == f32_rne_bits(exact)
    assert got[2] == 0  # +0.0


def test_f16_huge_plus_tiny():
    big, tiny = 0x7BFF, 0x0001  # 65504, 2^-24
    assert one([big, tiny, big ^ 0x8000], [big, tiny, big]) == 0x27800000  # 2^-48 exactly
    assert one([big, tiny], [big, tiny]) == np.float32(65504.0**2).view(np.uint32)  # 65504^2 + 2^-48 rounds down


@st.composite
def ties(draw):
    """(x, w, tie): fp16 bits (8 terms) whose exact dot product lies halfway between two adjacent fp32 values
    (tie) or, with a sticky term 2^-48 added, just off it; spread over 53 binades."""
    m24 = draw(st.integers(2**23, 2**24 - 1))
    t = 2 * m24 + 1  # odd 25-bit integer: t * 2^g is a midpoint of two adjacent fp32 values
    g = draw(st.integers(-48, 4))
    xs, ws = [], []
    for i, c in enumerate((t & 511, (t >> 9) & 511, t >> 18)):  # t = sum c_i 2^(9i), each c_i < 2^9
        if c == 0:
            continue
        p = 9 * i + g
        a = draw(st.integers(max(-24, p - 15), min(7, p + 24)))  # x = c * 2^a, w = 2^(p - a): both exact fp16
        xs.append(c * 2.0**a)
        ws.append(2.0 ** (p - a))
    big = draw(st.sampled_from([0.0, 1.0, 65504.0, 3.0 * 2**-20]))
    xs += [big, -big]
    ws += [big, big]
    sticky = draw(st.booleans())
    if sticky:  # a sticky term +-2^-48: no longer a tie
        xs.append(2.0**-24)
        ws.append(draw(st.sampled_from([2.0**-24, -(2.0**-24)])))
    sign = draw(st.sampled_from([1.0, -1.0]))
    xs = [sign * v for v in xs] + [0.0] * (8 - len(xs))
    ws = ws + [0.0] * (8 - len(ws))
    perm = draw(st.permutations(range(8)))
    return f16bits(np.array(xs)[perm]), f16bits(np.array(ws)[perm]), not sticky


@FAST
@given(ties())
def test_f16_ties_to_even(case):
    x, w, tie = case
    got = one(x, w)
    q = frac_dot(x, w)
    r = np.uint32(got).view(np.float32)
    other = np.nextafter(r, np.float32(np.inf if q > Fraction(float(r)) else -np.inf))  # neighbour beyond q
    assert abs(q - Fraction(float(r))) <= abs(q - Fraction(float(other)))  # nearest
    if tie:  # the construction is a true midpoint, and the result is the even neighbour
        assert 2 * q == Fraction(float(r)) + Fraction(float(other))
        assert got & 1 == 0
    else:
        assert 2 * q != Fraction(float(r)) + Fraction(float(other))


def test_f16_ties_explicit():
    one_, e = 1.0, 2.0**-12  # e * e = 2^-24
    for xs, ws, want in [
        ([one_, e], [one_, e], 0x3F800000),  # 1 + 2^-24: tie, down to even
        ([one_, e, e, e], [one_, e, e, e], 0x3F800002),  # 1 + 3 * 2^-24: tie, up to even
        ([-one_, -e], [one_, e], 0xBF800000),
        ([-one_, -e, -e, -e], [one_, e, e, e], 0xBF800002),
        ([one_, e, 2.0**-24], [one_, e, 2.0**-12], 0x3F800001),  # 1 + 2^-24 + 2^-36: just above the tie
    ]:
        assert one(f16bits(xs), f16bits(ws)) == want


@FAST
@given(arrays(any_f16(), 6), arrays(any_f16(), 6 * N_HYP))
def test_f16_specials_random(x, w):
    """About half the entries special; only 6 of the K terms are drawn (the rest 0 * 0) so finite results occur."""
    xp, wp = np.zeros(K_HYP, np.uint16), np.zeros((K_HYP, N_HYP), np.uint16)
    xp[:6], wp[:6] = x, w.reshape(6, N_HYP)
    check(xp, wp)


PINF16, NINF16, QNAN16, ONE16, MONE16, MAX16 = 0x7C00, 0xFC00, 0x7E00, 0x3C00, 0xBC00, 0x7BFF
ZERO16, NZERO16 = 0x0000, 0x8000


def test_f16_specials_explicit():
    cases = [
        ([PINF16, ONE16], [ZERO16, ONE16], NAN),  # inf * 0
        ([ZERO16, ONE16], [NINF16, ONE16], NAN),  # 0 * -inf
        ([PINF16, ONE16], [ONE16, NINF16], NAN),  # +inf and -inf products
        ([PINF16, NINF16], [ONE16, MONE16], PINF),  # +inf * 1 and -inf * -1: both +inf
        ([PINF16, ONE16], [ONE16, ONE16], PINF),
        ([PINF16, PINF16], [MONE16, MONE16], NINF),
        ([NINF16, ONE16], [NINF16, MAX16], PINF),  # -inf * -inf
        ([NZERO16, PINF16], [ONE16, MONE16], NINF),
        ([QNAN16, ONE16], [ONE16, ONE16], NAN),
        ([0xFE00, ONE16], [ONE16, ONE16], NAN),  # a negative NaN input still gives the positive canonical NaN
        ([0x7C01, ONE16], [ZERO16, ONE16], NAN),  # signalling NaN times zero
        ([ONE16, ONE16], [0xFFFF, ONE16], NAN),
        ([PINF16, MAX16], [ONE16, MAX16], PINF),  # inf beats a huge finite sum
    ]
    for xs, ws, want in cases:
        assert one(xs, ws) == want, (xs, ws)


def test_f16_zero_sums():
    cases = [
        ([NZERO16, NZERO16], [ONE16, ONE16]),  # -0 * 1 twice: IEEE addition would give -0.0; the MXM gives +0.0
        ([NZERO16], [NZERO16]),
        ([ONE16, MONE16], [ONE16, ONE16]),  # exact cancellation
        ([MAX16, 0x0001, MAX16 ^ 0x8000, 0x8001], [MAX16, 0x0001, MAX16, 0x0001]),  # huge and subnormal cancel
        ([ZERO16], [ZERO16]),
    ]
    for xs, ws in cases:
        assert one(xs, ws) == 0, (xs, ws)


def test_f16_k0():
    assert np.asarray(J16(np.zeros((2, 0), np.uint16), np.zeros((0, 3), np.uint16))).tolist() == [[0] * 3] * 2


# --------------------------------------------------------------------------- fp16: sizes, chunks, batching
def _spread(rng, shape, emin=0, emax=30):
    """Random finite fp16 bits with exponent field uniform in [emin, emax]."""
    s = rng.integers(0, 2, shape, dtype=np.uint16)
    e = rng.integers(emin, emax + 1, shape, dtype=np.uint16)
    m = rng.integers(0, 1024, shape, dtype=np.uint16)
    return (s << 15) | (e << 10) | m


def test_f16_mxm_size():
    """The shape the MXM model uses: batch 4, K = 160, N = 320 (full exact check of every element)."""
    rng = np.random.default_rng(7)
    x = _spread(rng, (4, 160), 5, 20)
    w = _spread(rng, (160, 320), 5, 20)
    x[3] = _spread(rng, (160,))  # every binade, subnormals included
    got = check(x, w)
    # a few columns against plain Fraction sums too (the Python-int reference path cross-checked)
    for p, n in [(0, 0), (1, 17), (3, 319)]:
        assert int(got[p, n]) == f32_rne_bits(frac_dot(x[p], w[:, n]))


def test_f16_chunked():
    """K = 600: three chunks of 256, the last one zero-padded."""
    rng = np.random.default_rng(600)
    x, w = _spread(rng, (2, 600)), _spread(rng, (600, 3))
    x[1] = _spread(rng, (600,), 20, 30)  # large terms: chunk sums near the bound
    w[:, 2] = _spread(rng, (600,), 20, 30)
    check(x, w)


def test_f16_max_k_extremes():
    k = DOT_F16_MAX_K
    big = np.full(k, 0x7BFF, np.uint16)  # 65504: the largest possible sum, 4096 * 65504^2
    sub = np.full(k, 0x03FF, np.uint16)  # largest subnormal
    alt = np.where(np.arange(k) % 2 == 0, 0x7BFF, 0x8001).astype(np.uint16)  # 65504 and -2^-24 alternate
    x = np.stack([big, sub, alt, big ^ 0x8000])
    w = np.stack([big, sub ^ 0x8000, alt, alt], axis=-1)
    got = check(x, w)
    assert int(got[0, 0]) == np.float32(k * 65504.0**2).view(np.uint32)
    with pytest.raises(ValueError, match="exceeds"):
        dot_f16(np.zeros(k + 1, np.uint16), np.zeros((k + 1, 1), np.uint16))


def test_f16_batching():
    rng = np.random.default_rng(3)
    k, n = K_HYP, N_HYP  # the hypothesis shape: (x [K], w [K, N]) is already compiled
    w2 = _spread(rng, (k, n))
    w3 = _spread(rng, (4, k, n))
    x1 = _spread(rng, (k,))
    x2 = _spread(rng, (4, k))
    x3 = _spread(rng, (2, 4, k))  # (x [B, K] with a shared w [K, N] is test_f16_mxm_size)
    for x, w, shape in [
        (x1, w2, (n,)),
        (x2, w3, (4, n)),  # one weight matrix per row
        (x3, w3, (2, 4, n)),  # batch dimensions broadcast
    ]:
        got = check(x, w)
        assert got.shape == shape
    rows = np.stack([np.asarray(J16(x2[p], w3[p])) for p in range(4)])
    np.testing.assert_array_equal(np.asarray(J16(x2, w3)), rows)


def test_f16_jit_matches_eager_and_float16_inputs():
    """Eager (op by op) and jitted (fused) evaluation give the same bits. x and w are both 8 x 8 so that the eager
    run compiles each primitive for one shape only (an eager call costs about 0.03 s per distinct primitive)."""
    rng = np.random.default_rng(5)
    x, w = _spread(rng, (8, 8)), _spread(rng, (8, 8))
    x[0, :3] = [PINF16, QNAN16, ZERO16]
    x[1, :2] = [PINF16, MAX16]
    w[:3, 1] = [ZERO16, ONE16, NINF16]
    w[:2, 2] = [MONE16, MAX16]
    eager = np.asarray(dot_f16(x, w))
    np.testing.assert_array_equal(eager, np.asarray(J16(x, w)))
    np.testing.assert_array_equal(eager, np.asarray(dot_f16(x.view(np.float16), w.view(np.float16))))
    np.testing.assert_array_equal(eager, ref_f16(x, w))
    assert {NAN, PINF, NINF} <= set(eager.ravel().tolist())


def test_f16_errors():
    with pytest.raises(TypeError):
        dot_f16(np.zeros(4, np.float32), np.zeros((4, 2), np.uint16))
    with pytest.raises(TypeError):
        dot_f16([1, 2], np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="mismatch"):
        dot_f16(np.zeros(4, np.uint16), np.zeros((3, 2), np.uint16))
    with pytest.raises(ValueError):
        dot_f16(np.zeros(4, np.uint16), np.zeros(4, np.uint16))
