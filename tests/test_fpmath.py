"""Tests for lpu_jax.fpmath: bit-exact agreement with an independent numpy interpreter, accuracy, special values.

The numpy functions below (`np_*`) re-implement the documented algorithms with float32 numpy operations only (no
jax); the jitted jax functions must reproduce them bit for bit. Bits are compared through `.view(np.uint32)`.
Where the specification says "IEEE division / sqrt" the interpreter uses numpy's own `/` and `np.sqrt`, which
checks the module's integer implementations of them; `np.float16` conversion is the reference for f32_to_f16.
"""

from __future__ import annotations

import math
import os
import sys

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for lpu_jax

from strategies import f32_bit_arrays, f32_bit_sample

from lpu_jax import fpmath as F

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_HYP = 256  # fixed array length for hypothesis examples, so each jitted function compiles once

J = {
    name: jax.jit(getattr(F, name))
    for name in (
        "flush_f32",
        "exp_f32",
        "tanh_f32",
        "rsqrt_f32",
        "recip_f32",
        "f32_to_f16",
        "f16_to_f32",
        "f32_to_uint8",
        "min_f32",
        "max_f32",
        "canonicalize_nan_f32",
    )
}
J_INT = {b: jax.jit(lambda x, b=b: F.f32_to_int(x, b)) for b in (8, 16, 32)}


# --------------------------------------------------------------------------- independent numpy interpreter
def u32(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def f32(b) -> np.ndarray:
    return np.asarray(b, np.uint32).view(np.float32)


def c(h: int) -> np.float32:
    return np.array(h, np.uint32).view(np.float32)[()]


def np_flush(x):
    b = u32(x)
    return f32(np.where((b & 0x7F800000) == 0, b & 0x80000000, b))


def np_isnan(x):
    return (u32(x) & 0x7FFFFFFF) > 0x7F800000


def np_cnan(sign_bits):
    """Canonical NaN with the given sign bits (uint32 0 or 0x80000000)."""
    return f32(np.uint32(0x7FC00000) | (np.asarray(sign_bits, np.uint32) & np.uint32(0x80000000)))


def np_mul(a, b):
    ah = f32(u32(a) & 0xFFFFF000)
    al = a - ah
    bh = f32(u32(b) & 0xFFFFF000)
    bl = b - bh
    return ((al * bl + al * bh) + ah * bl) + ah * bh


EXP_C = [0x39500D01, 0x3AB60B61, 0x3C088889, 0x3D2AAAAB, 0x3E2AAAAB, 0x3F000000, 0x3F800000]  # C7..C1
TANH_T = [0x3B0D83E4, 0xBC066455, 0x3CB1DF5C, 0xBD5CF9E1, 0x3E088841, 0xBEAAAAAA]  # T5..T0


def np_exp(x):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        nan = np_isnan(x)
        xs = np.where(nan, np.float32(0), x)
        xs = np.where(xs > c(0x42B80000), c(0x42B80000), xs)
        xs = np.where(xs < c(0xC2DC0000), c(0xC2DC0000), xs)
        kf = np.rint(xs * c(0x3FB8AA3B))
        r1 = xs - kf * c(0x3F317200)
        r = r1 - kf * c(0x35BFBF00)
        r = np.where((u32(r) & 0x7FFFFFFF) < 0x2B800000, np.float32(0), r)
        q = np.full_like(r, c(EXP_C[0]))
        for h in EXP_C[1:]:
            q = c(h) + np_mul(q, r)
        p = np.float32(1) + np_mul(q, r)
        pb = p.view(np.int32)
        k = kf.astype(np.int32)
        e = (pb >> 23) + k
        out = np.where(e >= 255, np.int32(0x7F800000), np.where(e <= 0, np.int32(0), pb + (k << 23)))
        out = out.astype(np.int32).view(np.float32)
        return np.where(nan, np_cnan(u32(x)), out)


def np_tanh(x):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        b = u32(x)
        sign = b & np.uint32(0x80000000)
        a = f32(b & np.uint32(0x7FFFFFFF))
        small, branch, one = c(0x39800000), c(0x3F100000), c(0x41800000)
        ap = np.minimum(np.maximum(a, small), branch)  # a is never NaN where ap is used
        s = np_mul(ap, ap)
        q = np.full_like(s, c(TANH_T[0]))
        for h in TANH_T[1:]:
            q = c(h) + np_mul(q, s)
        t_poly = ap + np_mul(ap, np_mul(s, q))
        ae = np.minimum(np.maximum(a, branch), one)
        e = np_exp(ae + ae)
        t_exp = np.float32(1) - np.float32(2) / (e + np.float32(1))
        t = np.where(a < small, a, np.where(a < branch, t_poly, np.where(a < one, t_exp, np.float32(1))))
        out = f32(u32(t) | sign)
        return np.where(np_isnan(x), np_cnan(sign), out)


def np_rsqrt(x):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        y = np_flush(np.float32(1) / np.sqrt(x))
        neg = (u32(x) & 0x80000000) != 0
        nan_in = np_isnan(x)
        out = np.where(neg & (x != 0), np_cnan(0), y)
        return np.where(nan_in, np_cnan(u32(x)), out)


def np_recip(x):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        y = np_flush(np.float32(1) / x)
        return np.where(np_isnan(x), np_cnan(u32(x)), y)


def np_f32_to_f16(x):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        h = x.astype(np.float16).view(np.uint16)
        cn = np.uint16(0x7E00) | ((u32(x) >> 16) & 0x8000).astype(np.uint16)
        return np.where(np_isnan(x), cn, h).view(np.float16)


def np_f16_to_f32(h):
    h = np.asarray(h, np.float16)
    x = h.astype(np.float32)
    sign = (h.view(np.uint16).astype(np.uint32) & 0x8000) << 16
    return np.where(np.isnan(h), np_cnan(sign), x)


def np_f32_to_int(x, lo, hi, dtype):
    with np.errstate(all="ignore"):
        x = np_flush(np.asarray(x, np.float32))
        x = np.where(np_isnan(x), np.float32(0), x)
        r = np.rint(x).astype(np.float64)
        return np.clip(r, lo, hi).astype(np.int64).astype(dtype)


def np_min(a, b):
    a, b = np_flush(np.asarray(a, np.float32)), np_flush(np.asarray(b, np.float32))
    out = np.where(a < b, a, np.where(b < a, b, f32(u32(a) | u32(b))))
    return np.where(np_isnan(a) | np_isnan(b), np_cnan(0), out)


def np_max(a, b):
    a, b = np_flush(np.asarray(a, np.float32)), np_flush(np.asarray(b, np.float32))
    out = np.where(a > b, a, np.where(b > a, b, f32(u32(a) & u32(b))))
    return np.where(np_isnan(a) | np_isnan(b), np_cnan(0), out)


# --------------------------------------------------------------------------- inputs
SPECIAL = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
    0x7FBFFFFF, 0xFFFFFFFF, 0x7FA12345, 0xFFD00BAD, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,
    0x00400000, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000, 0x3F000000,
    0x4F000000, 0xCF000000, 0x4EFFFFFF, 0xCF000001, 0x477FEFFF, 0x477FF000, 0x33000000, 0x33000001,
]  # fmt: skip
# neighbourhoods: exp overflow / underflow / clamps, tanh branch points, int32 limit, fp16 limits
BOUNDARIES = [
    0x42B17218, 0xC2AEAC50, 0xC2AEAC4F, 0x42B80000, 0xC2DC0000, 0x3F100000, 0x39800000, 0x41800000,
    0x3F0C9F54, 0x41100000, 0x4F000000, 0x38800000, 0x33800000, 0x477FE000, 0x3EB17218, 0x3F317218,
]  # fmt: skip


F32 = f32_bit_arrays(SPECIAL, BOUNDARIES, N_HYP, spread=40, span=120.0)
SAMPLE = f32_bit_sample(100_000, 1, SPECIAL, BOUNDARIES, spread=300, exp_hi=5)


def assert_bits_equal(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    g = got.view(np.uint32 if got.dtype.itemsize == 4 else np.uint16 if got.dtype.itemsize == 2 else np.uint8)
    w = want.view(g.dtype)
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, f"{bad.size} mismatches, first at {bad[:5]}: got {g[bad[:5]]} want {w[bad[:5]]}"


def ulp_error(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|y - ref| in units of the ulp of the fp32 binade that holds ref (ref normal)."""
    _, e = np.frexp(ref)
    return np.abs(y.astype(np.float64) - ref) / np.ldexp(1.0, e - 24)


# --------------------------------------------------------------------------- the numpy interpreter vs jax
@FAST
@given(F32)
def test_exp_bit_exact_hypothesis(x):
    assert_bits_equal(J["exp_f32"](x), np_exp(x))


@FAST
@given(F32)
def test_tanh_bit_exact_hypothesis(x):
    assert_bits_equal(J["tanh_f32"](x), np_tanh(x))


def test_exp_tanh_bit_exact_sample():
    assert_bits_equal(J["exp_f32"](SAMPLE), np_exp(SAMPLE))
    assert_bits_equal(J["tanh_f32"](SAMPLE), np_tanh(SAMPLE))


def test_exp_special_values():
    x = f32([0, 0x80000000, 0x7F800000, 0xFF800000, 0xFFC00001, 0x7FC00001, 0x00000001, 0x80000001])
    want = [0x3F800000, 0x3F800000, 0x7F800000, 0, 0xFFC00000, 0x7FC00000, 0x3F800000, 0x3F800000]
    assert list(u32(J["exp_f32"](x))) == want
    # overflow boundary: 0x42B17217 < ln(FLT_MAX) < 0x42B17218
    assert np.isfinite(np.asarray(J["exp_f32"](f32([0x42B17217])))[0])
    assert u32(J["exp_f32"](f32([0x42B17218])))[0] == 0x7F800000
    # results below 2^-126 are +0, never subnormal
    y = np.asarray(J["exp_f32"](np.linspace(-110, -80, 20001, dtype=np.float32)))
    assert np.all((u32(y) == 0) | (u32(y) >= 0x00800000))
    assert np.all(u32(np.asarray(J["exp_f32"](np.float32([-87.4, -100, -1e30])))) == 0)


def test_tanh_special_values():
    x = f32([0, 0x80000000, 0x7F800000, 0xFF800000, 0xFFC00001, 0x7FC00001, 0x00000001, 0x80000001, 0x41800000])
    want = [0, 0x80000000, 0x3F800000, 0xBF800000, 0xFFC00000, 0x7FC00000, 0, 0x80000000, 0x3F800000]
    assert list(u32(J["tanh_f32"](x))) == want
    # exact odd symmetry
    pos = SAMPLE[(u32(SAMPLE) & 0x80000000) == 0]
    assert_bits_equal(J["tanh_f32"](-pos), f32(u32(J["tanh_f32"](pos)) ^ np.uint32(0x80000000)))
    # saturation to exactly 1.0, monotone across the branch points
    y = np.asarray(J["tanh_f32"](np.float32([9.1, 10, 15.99, 16, 1e30])))
    assert np.all(u32(y) == 0x3F800000)
    for h in (0x39800000, 0x3F100000, 0x41800000):
        xs = f32(np.arange(h - 2000, h + 2000, dtype=np.uint32))
        y = np.asarray(J["tanh_f32"](xs))
        assert np.all(np.diff(y.astype(np.float64)) >= 0)


# --------------------------------------------------------------------------- accuracy against float64
EXP_MAX_ULP = 1.25  # exhaustive measurement (lpu_jax/fpmath.py, docs/fpmath.md): 1.2206 ulp
TANH_MAX_ULP = 1.5  # exhaustive measurement: 1.4733 ulp, just above the branch point 0.5625


def test_exp_accuracy():
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.uniform(-87.33, 88.72, 150_000),
            rng.choice([-1.0, 1.0], 50_000) * np.exp(rng.uniform(-40, 0, 50_000)),
        ]
    ).astype(np.float32)
    y = np.asarray(J["exp_f32"](x))
    ref = np.exp(x.astype(np.float64))
    ok = (ref >= 2.0**-126) & (ref < np.float64(np.finfo(np.float32).max))
    err = ulp_error(y[ok], ref[ok])
    assert err.max() <= EXP_MAX_ULP, (err.max(), x[ok][np.argmax(err)])


def test_tanh_accuracy():
    rng = np.random.default_rng(8)
    x = np.concatenate(
        [
            rng.uniform(-10, 10, 80_000),
            rng.choice([-1.0, 1.0], 80_000) * np.exp(rng.uniform(-87, 3, 80_000)),
            rng.uniform(0.5, 0.7, 40_000),  # around the branch point 0.5625
        ]
    ).astype(np.float32)
    x = x[np.abs(x) >= 2.0**-126]
    y = np.asarray(J["tanh_f32"](x))
    err = ulp_error(y, np.tanh(x.astype(np.float64)))
    assert err.max() <= TANH_MAX_ULP, (err.max(), x[np.argmax(err)])


# --------------------------------------------------------------------------- the other functions
def test_flush_and_nan_helpers():
    b = u32(SAMPLE)
    assert_bits_equal(J["flush_f32"](SAMPLE), np_flush(SAMPLE))
    got = u32(J["flush_f32"](SAMPLE))
    sub = ((b & 0x7F800000) == 0) & ((b & 0x7FFFFF) != 0)
    assert sub.any() and np.all(got[sub] == (b[sub] & 0x80000000))
    assert u32(F.canonical_nan_f32(True)) == 0xFFC00000 and u32(F.canonical_nan_f32(False)) == 0x7FC00000
    assert list(u32(F.canonical_nan_f32(np.array([True, False])))) == [0xFFC00000, 0x7FC00000]
    want = np.where(np_isnan(SAMPLE), u32(np_cnan(b)), b)
    assert_bits_equal(J["canonicalize_nan_f32"](SAMPLE), f32(want))
    assert np.array_equal(np.asarray(F.is_nan_f32(SAMPLE)), np_isnan(SAMPLE))


@FAST
@given(F32)
def test_rsqrt_recip_hypothesis(x):
    assert_bits_equal(J["rsqrt_f32"](x), np_rsqrt(x))
    assert_bits_equal(J["recip_f32"](x), np_recip(x))


def test_rsqrt_recip_sample():
    assert_bits_equal(J["rsqrt_f32"](SAMPLE), np_rsqrt(SAMPLE))
    assert_bits_equal(J["recip_f32"](SAMPLE), np_recip(SAMPLE))
    x = f32([0, 0x80000000, 0x7F800000, 0xFF800000, 0xBF800000, 0xFFC00001, 0x00000001, 0x80000001])
    assert list(u32(J["rsqrt_f32"](x))) == [
        0x7F800000, 0xFF800000, 0, 0x7FC00000, 0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000,
    ]  # fmt: skip
    assert list(u32(J["recip_f32"](x))) == [
        0x7F800000, 0xFF800000, 0, 0x80000000, 0xBF800000, 0xFFC00000, 0x7F800000, 0xFF800000,
    ]  # fmt: skip
    assert list(u32(J["recip_f32"](f32([0x7F000000, 0xFEFFFFFF])))) == [0, 0x80000000]  # 1/2^127: flushed


def test_recip_rsqrt_whole_binades():
    """Every 3rd significand of [1, 4) and of the extreme binades: the integer division/sqrt equal IEEE numpy."""
    m = np.arange(0, 1 << 23, 3, dtype=np.uint32)
    x = f32(np.concatenate([(np.uint32(e) << 23) | m for e in (127, 128, 1, 254)]))
    assert_bits_equal(J["recip_f32"](x), np_recip(x))
    assert_bits_equal(J["rsqrt_f32"](x), np_rsqrt(x))


def test_f32_to_f16():
    assert_bits_equal(J["f32_to_f16"](SAMPLE), np_f32_to_f16(SAMPLE))
    # every high half (all exponents and signs) with low halves that probe the RNE ties
    hi = np.arange(2**16, dtype=np.uint32) << 16
    lows = np.array([0x0000, 0x0FFF, 0x1000, 0x1001, 0x2000, 0x3000, 0xE000, 0xFFFF], np.uint32)
    x = f32((hi[:, None] | lows[None, :]).ravel())
    assert_bits_equal(J["f32_to_f16"](x), np_f32_to_f16(x))
    # fp16 subnormal ties: k + 1/2 units of 2^-24
    k = np.arange(0, 1100, dtype=np.float64)
    x = ((k + 0.5) * 2.0**-24).astype(np.float32)
    assert_bits_equal(J["f32_to_f16"](x), np_f32_to_f16(x))
    y = np.asarray(J["f32_to_f16"](np.float32([65504, 65519.99, 65520, -1e9, 2.0**-25, 2.0**-24, -0.0])))
    assert list(y.view(np.uint16)) == [0x7BFF, 0x7BFF, 0x7C00, 0xFC00, 0, 1, 0x8000]
    assert list(np.asarray(J["f32_to_f16"](f32([0x7FC12345, 0xFF800001]))).view(np.uint16)) == [0x7E00, 0xFE00]


def test_f16_to_f32_exhaustive():
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    assert_bits_equal(J["f16_to_f32"](h), np_f16_to_f32(h))
    with pytest.raises(TypeError):
        F.f16_to_f32(np.zeros(3, np.float32))


def test_f16_round_trip():
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    h = h[~np.isnan(h)]
    assert_bits_equal(J["f32_to_f16"](J["f16_to_f32"](h)), h)


@pytest.mark.parametrize("bits,dtype", [(8, np.int8), (16, np.int16), (32, np.int32)])
def test_f32_to_int(bits, dtype):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    rng = np.random.default_rng(bits)
    x = np.concatenate(
        [
            SAMPLE,
            (rng.integers(-(2**bits), 2**bits, 100_000) / 2).astype(np.float32),  # many exact halves: ties
            np.float32([lo - 0.5, lo - 1, lo, hi, hi + 0.5, hi + 1, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]),
        ]
    )
    got = np.asarray(J_INT[bits](x))
    assert got.dtype == dtype
    assert np.array_equal(got, np_f32_to_int(x, lo, hi, dtype))


def test_f32_to_int32_limits():
    x = f32([0x4F000000, 0x4EFFFFFF, 0xCF000000, 0xCF000001, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000001])
    got = list(np.asarray(J_INT[32](x)))
    assert got == [2**31 - 1, 2147483520, -(2**31), -(2**31), 2**31 - 1, -(2**31), 0, 0]
    assert list(np.asarray(J_INT[8](np.float32([127.5, -128.5, 126.5, -0.0, np.nan])))) == [127, -128, 126, 0, 0]
    with pytest.raises(ValueError):
        F.f32_to_int(np.zeros(2, np.float32), 64)
    with pytest.raises(TypeError):
        F.exp_f32(np.zeros(2, np.float64))


def test_f32_to_uint8():
    x = np.concatenate([SAMPLE, np.float32([-0.5, -0.6, 0.5, 1.5, 254.5, 255.5, 256, 300, -300])])
    got = np.asarray(J["f32_to_uint8"](x))
    assert got.dtype == np.uint8
    assert np.array_equal(got, np_f32_to_int(x, 0, 255, np.uint8))


@FAST
@given(F32, F32)
def test_min_max_hypothesis(a, b):
    assert_bits_equal(J["min_f32"](a, b), np_min(a, b))
    assert_bits_equal(J["max_f32"](a, b), np_max(a, b))


def test_min_max_rules():
    p, m, n, s = 0x00000000, 0x80000000, 0xFFC12345, 0x80000001  # +0, -0, a negative NaN, a negative subnormal
    a = f32([p, m, p, m, n, 0x3F800000, 0x3F800000, s, s, 0x7F800000])
    b = f32([m, p, p, m, 0x3F800000, n, 0x3F800000, p, 0xBF800000, 0x7F800000])
    assert list(u32(J["min_f32"](a, b))) == [
        m, m, p, m, 0x7FC00000, 0x7FC00000, 0x3F800000, m, 0xBF800000, 0x7F800000,
    ]  # fmt: skip
    assert list(u32(J["max_f32"](a, b))) == [
        p, p, p, m, 0x7FC00000, 0x7FC00000, 0x3F800000, p, m, 0x7F800000,
    ]  # fmt: skip
    rng = np.random.default_rng(3)
    a, b = SAMPLE, rng.permutation(SAMPLE)
    assert_bits_equal(J["min_f32"](a, b), np_min(a, b))
    assert_bits_equal(J["max_f32"](a, b), np_max(a, b))


# --------------------------------------------------------------------------- jit == no jit
def test_jit_matches_eager():
    # the whole SAMPLE and every fp16 pattern: the shapes the tests above jit these functions for (no recompiles)
    x = SAMPLE
    y = x[::-1].copy()
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    unary = ["flush_f32", "exp_f32", "tanh_f32", "rsqrt_f32", "recip_f32", "f32_to_f16", "f32_to_uint8"]
    jitted = {n: np.asarray(J[n](x)) for n in unary}
    jitted["min"] = np.asarray(J["min_f32"](x, y))
    jitted["max"] = np.asarray(J["max_f32"](x, y))
    jitted["f16"] = np.asarray(J["f16_to_f32"](h))
    jitted["i32"] = np.asarray(J_INT[32](x))
    with jax.disable_jit():
        eager = {n: np.asarray(getattr(F, n)(x)) for n in unary}
        eager["min"] = np.asarray(F.min_f32(x, y))
        eager["max"] = np.asarray(F.max_f32(x, y))
        eager["f16"] = np.asarray(F.f16_to_f32(h))
        eager["i32"] = np.asarray(F.f32_to_int(x, 32))
    for n in jitted:
        assert_bits_equal(jitted[n], eager[n])


def test_constants_match_their_definitions():
    """The hex constants are what the docs say they are (independently of the module)."""
    assert c(0x3FB8AA3B) == np.float32(1 / math.log(2))
    assert c(0x3F317200) + c(0x35BFBF00) == np.float32(math.log(2))
    for n, h in zip(range(7, 0, -1), EXP_C, strict=True):
        assert c(h) == np.float32(1 / math.factorial(n))
    assert (0x3F317200 & 0x1FF) == 0  # LN2_HI: 15 significant bits
    assert (0x35BFBF00 & 0xFF) == 0  # LN2_LO: 16 significant bits


def np_ieee_mul_flushed(a, b):
    """numpy's IEEE float32 product (subnormals kept) of flushed inputs, then flushed; positive canonical NaN."""
    with np.errstate(all="ignore"):
        r = np_flush(a) * np_flush(b)
    r = np_flush(r)
    return np.where(np_isnan(r), f32(np.uint32(0x7FC00000)), r)


def test_mul_matches_ieee_then_flush_at_the_subnormal_boundary():
    # Products whose exact value is just below 2^-126: IEEE rounding takes some up to 2^-126 (XLA CPU's FTZ
    # would flush them), the rest are subnormal and flushed.
    rng = np.random.default_rng(11)
    x = (rng.uniform(1, 2, 100_000) * 2.0**-63).astype(np.float32)
    y = (2.0**-126 / x.astype(np.float64) * (1 + rng.uniform(-3e-7, 3e-7, x.size))).astype(np.float32)
    x = np.where(rng.random(x.size) < 0.5, -x, x)
    want = np_ieee_mul_flushed(x, y)
    assert (u32(want) & 0x7FFFFFFF == 0x00800000).sum() > 1000  # the boundary cases are really exercised
    assert_bits_equal(jax.jit(F.mul_f32)(x, y), want)
    a = np.array([0x2180376D, 0x21FCCF19, 0xA182DF22], np.uint32).view(np.float32)
    b = np.array([0x1E7F9155, 0x1E019D9B, 0x1E7A61FE], np.uint32).view(np.float32)
    want = np.array([0x00800000, 0x00800000, 0x80800000], np.uint32).view(np.float32)  # by hand: IEEE rounds up
    assert_bits_equal(np_ieee_mul_flushed(a, b), want)
    assert_bits_equal(jax.jit(F.mul_f32)(a, b), want)


@settings(max_examples=60, deadline=None)
@given(F32, F32)
def test_mul_bit_exact_hypothesis(a, b):
    n = min(a.size, b.size)
    assert_bits_equal(jax.jit(F.mul_f32)(a[:n], b[:n]), np_ieee_mul_flushed(a[:n], b[:n]))
