"""Bit-exact floating-point semantics of the VXM: flushing, NaNs, exp, tanh, rsqrt, reciprocal, conversions, min/max.

Every function here gives the same bits on every XLA backend (CPU and GPU), under `jax.jit` or not, and the
algorithms below are written so that a plain-numpy float32 interpreter that follows them step by step reproduces
those bits exactly (tests/test_fpmath.py holds one). docs/fpmath.md states the same rules for the ISA manual.

Why the care (each hazard was observed, jax 0.11.2, XLA CPU vs XLA GPU on an H200):
  * XLA CPU runs with flush-to-zero / denormals-are-zero (1e-30f * 1e-9f gives 0.0), XLA GPU does not (1e-39).
    So fp32 subnormals are flushed EXPLICITLY, with integer bit operations, on inputs and outputs, and no
    intermediate of exp/tanh is ever subnormal (the ranges below guarantee it), so FTZ cannot act on them.
  * XLA GPU contracts `a*b + c` into a fused multiply-add (a plain a*b+c differed on 23% of random inputs). So
    every floating product whose result feeds an addition or subtraction is EXACT in fp32: each factor is split
    with a bit mask so that every partial product has <= 24 significant bits. Then fma(x, y, c) equals
    round(round(x*y) + c) and contraction cannot change a bit. (Veltkamp splitting, v*4097, is not used: its
    product feeds a subtraction and is not exact.)
  * XLA GPU's fp32 division and sqrt are NOT correctly rounded (1/x differed from IEEE on ~13% of inputs). The
    semantics still use IEEE correctly rounded division and sqrt, but they are COMPUTED with exact uint32 integer
    arithmetic (see "Division" and "Square root"), so any IEEE implementation (numpy) reproduces them.
  * `jnp.exp`, `jnp.tanh`, `lax.rsqrt` differ between backends and are never used; neither are
    `jnp.minimum`/`jnp.maximum` (their +-0 result is backend-dependent).
  Operations used: fp32 +, -, * (exact where it matters), round-half-even to integer, float<->int conversions of
  in-range integers, integer and bit operations (including exact unsigned integer division), comparisons, selects.

Notation: `bits(x)` is the uint32 bit pattern of an fp32 value, `f32(b)` the value of a bit pattern, hex constants
are fp32 bit patterns, all fp32 arithmetic is IEEE round-to-nearest-even. Every function is elementwise on any
shape and takes float32 (Python scalars are converted; other array dtypes raise TypeError). An error of n ulp
means |result - exact| = n * 2^(floor(log2 |exact|) - 23), the exact value taken from float64.

Rules
-----
Subnormal flushing (`flush_f32`): if `bits(x) & 0x7F800000 == 0` the result is `f32(bits(x) & 0x80000000)` (the
  signed zero), else x unchanged. Every fp32 operation below flushes its fp32 inputs first and its fp32 result.
Canonical NaN: every fp32 NaN an operation produces is the quiet NaN `0x7FC00000`, with the sign bit set exactly
  when the operation has ONE input and that input is a NaN with its sign bit set (`canonical_nan_f32(negative)`
  builds it, `canonicalize_nan_f32` applies it). A NaN created from a non-NaN input (rsqrt of a negative number)
  and the NaN of a two-input operation (min, max) are always the positive `0x7FC00000`. An fp32 value is a NaN
  when `bits(x) & 0x7FFFFFFF > 0x7F800000`. The canonical fp16 NaN is `0x7E00` (sign bit 0x8000 kept the same way).

Contraction-proof product `mul(a, b)` (used wherever a product feeds an addition): split(v) = (vh, vl) with
  vh = f32(bits(v) & 0xFFFFF000) (sign, exponent and the top 11 mantissa bits: 12 significant bits) and
  vl = v - vh (exact, <= 12 significant bits); then mul(a, b) = ((al*bl + al*bh) + ah*bl) + ah*bh, evaluated in
  exactly that order; each of the four products is exact (operands are kept >= 2^-63, so none underflows).

Division `div(a, b)` for finite normal a, b > 0 (the IEEE quotient, flushed): ma = (bits(a) & 0x7FFFFF) | 0x800000,
  mb likewise (24-bit significands), ea, eb the exponent fields. q = 1 if ma >= mb else 0, r = ma - q*mb; then for
  n in (8, 8, 8, 2): t = r << n, d = t // mb (exact uint32 division), r = t - d*mb, q = (q << n) | d. Now
  q = floor(ma * 2^26 / mb) in [2^25, 2^27) and sticky = (r != 0). If q >= 2^26: drop sh = 3 bits and
  E = ea - eb + 127, else sh = 2 and E = ea - eb + 126. sig = q >> sh, rem = q mod 2^sh, half = 2^(sh-1);
  sig += 1 if rem > half or (rem == half and (sticky or sig odd)). If sig == 2^24: sig = 2^23, E += 1.
  E >= 255 -> +inf, E <= 0 -> +0 (flushed), else f32((E << 23) | (sig & 0x7FFFFF)). This is round-to-nearest-even of
  a/b with unbounded exponent, then flushed; for every use below it equals flush(IEEE a / b).
Square root `sqrt(x)` for finite normal x > 0 (the IEEE root): e = exponent field, m = (bits(x) & 0x7FFFFF) | 0x800000,
  mm = m << 1 if e is odd else m << 2 (so M = mm * 2^24 is in [2^48, 2^50)). Bitwise integer square root of M:
  root = rem = 0; for i in 0..24: digit = (mm >> (24 - 2i)) & 3 for i <= 12, else 0; rem = (rem << 2) | digit;
  trial = (root << 2) | 1; if rem >= trial: rem -= trial, root = (root << 1) | 1, else root = root << 1.
  Then root = floor(sqrt(M)) in [2^24, 2^25); sig = (root >> 1) + (root & 1) (never a tie: M is even);
  field = (e + 127) >> 1 if e is odd else (e + 126) >> 1; result f32((field << 23) | (sig & 0x7FFFFF)).

`mul_f32(a, b)`: the IEEE product (round to nearest even, subnormal results possible), then flushed. XLA CPU's
  FTZ flushes a product whose exact value lies just below 2^-126 even when IEEE rounding takes it up to 2^-126,
  so the boundary is decided explicitly. a, b = flush(a), flush(b); p = a * b. If a and b are finite and nonzero
  and |p| < 2^-126 (p is 0, a subnormal, or whatever the backend made of a tiny product): let s, l be |a|, |b|
  ordered so that s <= l; s' = s * 2^64 (exact); p' = s' * l (now in the normal range near the boundary) and its
  exact error e' = (((s'h*lh - p') + s'h*ll) + s'l*lh) + s'l*ll (split as in `mul`; every product exact).
  With T' = 2^-62 - 2^-86 (= (2^-126 - 2^-150) * 2^64, the midpoint between 2^-126 and the largest subnormal):
  the result is 2^-126 if p' > T' or (p' == T' and e' >= 0), else 0, with the sign of a*b. Otherwise the result
  is flush(p). NaNs are canonical (positive: a two-input operation).

`exp_f32(x)`
  0. x = flush(x). NaN -> canonical NaN with x's sign. (+inf -> +inf and -inf -> +0 follow from the steps.)
  1. xs = x with NaN replaced by 0, then clamped: xs > 92.0 (0x42B80000) -> 92.0; xs < -110.0 (0xC2DC0000) -> -110.0.
  2. kf = round_half_even(xs * LOG2E), LOG2E = 0x3FB8AA3B; the product is one fp32 multiplication that feeds no
     addition (identical on every backend); kf is an exact integer in [-159, 133] (8 bits), kept as fp32.
  3. r1 = xs - kf * LN2_HI, LN2_HI = 0x3F317200 (15 significant bits): the product is exact (8 + 15 bits) and so is
     the difference (r1 is a multiple of min(2^-15, ulp(xs)) and |r1| < 0.35).
  4. r = r1 - kf * LN2_LO, LN2_LO = 0x35BFBF00 (ln2 - LN2_HI rounded to 16 significant bits): the product is exact
     (8 + 16 bits), the difference is rounded. |r| <= 0.3467.
  5. If |r| < 2^-40 (`bits(r) & 0x7FFFFFFF < 0x2B800000`): r = +0 (exp(r) rounds to 1 there; this keeps every
     partial product of step 6 normal).
  6. Polynomial (Taylor, coefficients 1/n! rounded to fp32):
        C7 = 0x39500D01, C6 = 0x3AB60B61, C5 = 0x3C088889, C4 = 0x3D2AAAAB, C3 = 0x3E2AAAAB, C2 = 0x3F000000,
        C1 = 0x3F800000;  q = C7; then for c in C6, C5, C4, C3, C2, C1: q = c + mul(q, r); p = 1.0 + mul(q, r).
     p lies in [0.70, 1.42].
  7. Scale by 2^k with integer arithmetic: k = int32(kf), E = (bits(p) >> 23) + k. If E >= 255 the result is +inf;
     if E <= 0 (p * 2^k would be below 2^-126, i.e. subnormal) it is +0; else f32(bits(p) + (k << 23)) = p * 2^k.
  Accuracy (measured exhaustively over every fp32 x whose exp is a finite normal number, against float64):
  max error 1.2206 ulp (at x = 59.265224, 0x426D0F97).

`tanh_f32(x)`
  0. x = flush(x). NaN -> canonical NaN with x's sign. s_bit = bits(x) & 0x80000000, a = f32(bits(x) & 0x7FFFFFFF).
     The result is f32(bits(t) | s_bit) with t = T(a) >= 0 below, so tanh is exactly odd and tanh(-0) = -0.
  1. a < 2^-12 (0x39800000): t = a (tanh(a) rounds to a there).
  2. 2^-12 <= a < 0.5625 (0x3F100000): odd polynomial, with ap = a clamped into [2^-12, 0.5625]:
        s = mul(ap, ap); q = T5; then for c in T4, T3, T2, T1, T0: q = c + mul(q, s); t = ap + mul(ap, mul(s, q))
     with T0 = 0xBEAAAAAA, T1 = 0x3E088841, T2 = 0xBD5CF9E1, T3 = 0x3CB1DF5C, T4 = 0xBC066455, T5 = 0x3B0D83E4
     (a minimax fit of (tanh(a) - a) / a^3 as a polynomial in s = a^2 on [0, 0.5625^2], relative error 2^-33).
  3. 0.5625 <= a < 16.0 (0x41800000): with ae = a clamped into [0.5625, 16], e = exp_f32(ae + ae) (the doubling is
     exact), t = 1.0 - div(2.0, e + 1.0).
  4. a >= 16.0 (including +inf): t = 1.0 exactly (step 3 already gives exactly 1.0 from a > 9.01 on).
  Accuracy (measured exhaustively over every normal fp32 x, against float64): max error 1.4733 ulp, at
  x = 0.5638677 (0x3F1059A2), just above the branch point 0.5625 where 1 - 2/(e+1) loses the most to cancellation;
  the polynomial branch stays at or below 0.7722 ulp, the a < 2^-12 branch at or below 0.3333 ulp.

`rsqrt_f32(x)` = flush(1 / sqrt(flush(x))), both operations IEEE round-to-nearest-even (computed as
  div(1, sqrt(x)) above): +0 -> +inf, -0 -> -inf, +inf -> +0, x < 0 (including -inf) -> +canonical NaN 0x7FC00000,
  NaN -> canonical NaN with x's sign. Finite results are always normal.
`recip_f32(x)` = flush(1 / flush(x)), IEEE division (computed as sign | div(1, |x|)): +-0 -> +-inf, +-inf -> +-0,
  |x| > 2^126 gives a signed zero (the IEEE result is subnormal), NaN -> canonical NaN with x's sign.

`f32_to_f16(x)` -> float16: x = flush(x); then by bit manipulation (not `astype`, so no backend conversion
  instruction or FTZ mode is involved), round to nearest even: NaN -> 0x7E00 with x's sign; +-inf -> +-inf; results
  with magnitude >= 65520 -> +-inf; fp16 subnormals (|x| < 2^-14) are KEPT, rounded to a multiple of 2^-24 (ties to
  even; |x| <= 2^-25 gives +-0). The sign is always kept. Equal to numpy's `astype(np.float16)` on flushed input
  except that NaNs are canonical. With e = bits(x) >> 23 & 0xFF, m = bits(x) & 0x7FFFFF: e == 0 -> 0; e == 255 ->
  inf or NaN; e >= 113 (normal target): v = ((e - 112) << 10) + (m >> 13), plus 1 when the dropped 13 bits are
  > 0x1000, or == 0x1000 and v is odd; v >= 0x7C00 -> 0x7C00. e <= 112 (subnormal target): M = m | 0x800000,
  sh = min(126 - e, 25), v = M >> sh, plus 1 when M mod 2^sh > 2^(sh-1), or equal to it and v is odd.
  The fp16 bits are v | ((bits(x) >> 16) & 0x8000).
`f16_to_f32(x)` (float16 in): exact widening (fp16 subnormals m * 2^-24 become normal fp32 values); NaN -> canonical
  fp32 NaN with the input's sign.
`f32_to_int(x, bits)` for bits in (8, 16, 32) -> int8/int16/int32, and `f32_to_uint8(x)` -> uint8: x = flush(x),
  NaN -> 0, else round half to even to an integer and saturate to the type's range (+-inf saturate too). For int32,
  fp32 2147483648.0 (2^31) and above give 2147483647, -2^31 and below give -2147483648 (no wrapping).
`min_f32(a, b)`, `max_f32(a, b)`: inputs flushed; if either is NaN -> +canonical NaN 0x7FC00000; else if a < b
  (resp. a > b) -> a, if b < a (resp. b > a) -> b; if a == b (this includes +0 == -0) min returns
  f32(bits(a) | bits(b)) and max returns f32(bits(a) & bits(b)): min(+0, -0) = -0, max(+0, -0) = +0, and equal
  nonzero values are returned unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "canonical_nan_f32",
    "canonicalize_nan_f32",
    "exp_f32",
    "f16_to_f32",
    "f32_to_f16",
    "f32_to_int",
    "f32_to_uint8",
    "flush_f32",
    "mul_f32",
    "is_nan_f32",
    "max_f32",
    "min_f32",
    "recip_f32",
    "rsqrt_f32",
    "tanh_f32",
]

# ------------------------------------------------------------------------------------------------ constants
CANONICAL_NAN_F32 = 0x7FC00000
CANONICAL_NAN_F16 = 0x7E00

_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_EXP = np.uint32(0x7F800000)
_INF = np.uint32(0x7F800000)
_HI12 = np.uint32(0xFFFFF000)

# exp_f32
_EXP_CLAMP_HI = 0x42B80000  # 92.0
_EXP_CLAMP_LO = 0xC2DC0000  # -110.0
_LOG2E = 0x3FB8AA3B
_LN2_HI = 0x3F317200
_LN2_LO = 0x35BFBF00
_TINY_R = 0x2B800000  # 2^-40
_EXP_C = (0x39500D01, 0x3AB60B61, 0x3C088889, 0x3D2AAAAB, 0x3E2AAAAB, 0x3F000000, 0x3F800000)  # C7 .. C1

# tanh_f32
_TANH_SMALL = 0x39800000  # 2^-12
_TANH_BRANCH = 0x3F100000  # 0.5625
_TANH_ONE = 0x41800000  # 16.0
_TANH_T = (0x3B0D83E4, 0xBC066455, 0x3CB1DF5C, 0xBD5CF9E1, 0x3E088841, 0xBEAAAAAA)  # T5 .. T0


def _c(b: int) -> np.float32:
    """The fp32 constant with bit pattern b."""
    return np.array(b, np.uint32).view(np.float32)[()]


# ------------------------------------------------------------------------------------------------ bit helpers
def _as_f32(x, name: str = "x") -> jax.Array:
    dt = getattr(x, "dtype", None)
    if dt is not None and np.dtype(dt) != np.float32:
        raise TypeError(f"{name} must be float32, got {np.dtype(dt)}")
    return jnp.asarray(x, jnp.float32)


def _bits(x: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(x, jnp.uint32)


def _f32(b: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(b, jnp.float32)


def _flush(x: jax.Array) -> jax.Array:
    b = _bits(x)
    return _f32(jnp.where((b & _EXP) == 0, b & _SIGN, b))


def _isnan(x: jax.Array) -> jax.Array:
    return (_bits(x) & _ABS) > _INF


def _nan_like(x: jax.Array, negative) -> jax.Array:
    sign = jnp.where(negative, _SIGN, np.uint32(0))
    return _f32(jnp.broadcast_to(sign | np.uint32(CANONICAL_NAN_F32), jnp.shape(x)))


def _split(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(vh, vl): vh keeps 12 significant bits (mask 0xFFFFF000), vl = v - vh is exact with <= 12 bits."""
    vh = _f32(_bits(v) & _HI12)
    return vh, v - vh


def _mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Contraction-proof product: ((al*bl + al*bh) + ah*bl) + ah*bh, every partial product exact in fp32."""
    ah, al = _split(a)
    bh, bl = _split(b)
    return ((al * bl + al * bh) + ah * bl) + ah * bh


def _u(v: int) -> np.uint32:
    return np.uint32(v)


def _div_pos(a: jax.Array, b: jax.Array) -> jax.Array:
    """a / b for finite positive normal fp32 a, b: IEEE round-to-nearest-even by integer long division.

    Results >= 2^128 (after rounding) are +inf, results < 2^-126 are +0. XLA:GPU's fp32 divide is not correctly
    rounded, so the quotient of the significands is computed with exact uint32 division (docstring, "Division").
    """
    ab, bb = _bits(a), _bits(b)
    ma = (ab & _u(0x7FFFFF)) | _u(0x800000)
    mb = (bb & _u(0x7FFFFF)) | _u(0x800000)
    q = (ma >= mb).astype(jnp.uint32)
    r = ma - q * mb
    for step in (8, 8, 8, 2):  # r < mb < 2^24, so r << 8 < 2^32
        t = r << step
        d = lax.div(t, mb)
        r = t - d * mb
        q = (q << step) | d  # finally q = floor(ma * 2^26 / mb), in [2^25, 2^27)
    sticky = r != 0
    wide = q >= _u(1 << 26)
    field = (ab >> 23).astype(jnp.int32) - (bb >> 23).astype(jnp.int32) + jnp.where(wide, 127, 126)
    sh = jnp.where(wide, _u(3), _u(2))
    sig = q >> sh
    rem = q & ((_u(1) << sh) - _u(1))
    half = _u(1) << (sh - _u(1))
    up = (rem > half) | ((rem == half) & (sticky | ((sig & _u(1)) == 1)))
    sig = sig + up.astype(jnp.uint32)
    carry = sig == _u(1 << 24)
    sig = jnp.where(carry, _u(1 << 23), sig)
    field = field + carry.astype(jnp.int32)
    out = (field.astype(jnp.uint32) << 23) | (sig & _u(0x7FFFFF))
    out = jnp.where(field >= 255, _INF, jnp.where(field <= 0, _u(0), out))
    return _f32(out)


def _sqrt_pos(x: jax.Array) -> jax.Array:
    """sqrt(x) for finite positive normal fp32 x: IEEE round-to-nearest by a bitwise integer square root.

    XLA:GPU's fp32 sqrt is not guaranteed correctly rounded, so it is computed exactly (docstring, "Square root").
    """
    xb = _bits(x)
    e = xb >> 23
    m = (xb & _u(0x7FFFFF)) | _u(0x800000)
    odd = (e & _u(1)) == 1
    mm = jnp.where(odd, m << 1, m << 2)  # < 2^26; M = mm * 2^24
    root = jnp.zeros_like(mm)
    rem = jnp.zeros_like(mm)
    for i in range(25):
        digit = (mm >> (24 - 2 * i)) & _u(3) if i <= 12 else _u(0)
        rem = (rem << 2) | digit
        trial = (root << 2) | _u(1)
        ge = rem >= trial
        rem = jnp.where(ge, rem - trial, rem)
        root = (root << 1) | ge.astype(jnp.uint32)  # finally root = floor(sqrt(M)), in [2^24, 2^25)
    sig = (root >> 1) + (root & _u(1))  # round half up == nearest: sqrt(M) is never a midpoint
    field = jnp.where(odd, (e + _u(127)) >> 1, (e + _u(126)) >> 1)
    return _f32((field << 23) | (sig & _u(0x7FFFFF)))


# ------------------------------------------------------------------------------------------------ public API
def flush_f32(x) -> jax.Array:
    """fp32 subnormals -> zero of the same sign (bit operations only); everything else unchanged."""
    return _flush(_as_f32(x))


def is_nan_f32(x) -> jax.Array:
    """True where x is a NaN (`bits & 0x7FFFFFFF > 0x7F800000`)."""
    return _isnan(_as_f32(x))


def canonical_nan_f32(negative=False) -> jax.Array:
    """The canonical quiet NaN 0x7FC00000, with the sign bit set where `negative` is true (shape of `negative`)."""
    neg = jnp.asarray(negative, jnp.bool_)
    return _nan_like(neg, neg)


def canonicalize_nan_f32(x) -> jax.Array:
    """Every NaN -> 0x7FC00000 with its own sign bit; other values unchanged (subnormals are NOT flushed)."""
    x = _as_f32(x)
    b = _bits(x)
    return jnp.where(_isnan(x), _f32((b & _SIGN) | np.uint32(CANONICAL_NAN_F32)), x)


def exp_f32(x) -> jax.Array:
    """e^x, bit-exact on every backend (algorithm in the module docstring)."""
    x = _flush(_as_f32(x))
    b = _bits(x)
    nan = _isnan(x)
    xs = jnp.where(nan, np.float32(0), x)
    xs = jnp.where(xs > _c(_EXP_CLAMP_HI), _c(_EXP_CLAMP_HI), xs)
    xs = jnp.where(xs < _c(_EXP_CLAMP_LO), _c(_EXP_CLAMP_LO), xs)
    kf = lax.round(xs * _c(_LOG2E), lax.RoundingMethod.TO_NEAREST_EVEN)
    r1 = xs - kf * _c(_LN2_HI)
    r = r1 - kf * _c(_LN2_LO)
    r = jnp.where((_bits(r) & _ABS) < np.uint32(_TINY_R), np.float32(0), r)
    q = _c(_EXP_C[0])
    for c in _EXP_C[1:]:
        q = _c(c) + _mul(q, r)
    p = np.float32(1) + _mul(q, r)
    pb = lax.bitcast_convert_type(p, jnp.int32)
    k = kf.astype(jnp.int32)
    e = (pb >> 23) + k
    out = jnp.where(e >= 255, np.int32(_INF), jnp.where(e <= 0, np.int32(0), pb + (k << 23)))
    out = lax.bitcast_convert_type(out, jnp.float32)
    return jnp.where(nan, _f32((b & _SIGN) | np.uint32(CANONICAL_NAN_F32)), out)


def tanh_f32(x) -> jax.Array:
    """tanh(x), exactly odd, bit-exact on every backend (algorithm in the module docstring)."""
    x = _flush(_as_f32(x))
    b = _bits(x)
    sign = b & _SIGN
    a = _f32(b & _ABS)
    small, branch, one = _c(_TANH_SMALL), _c(_TANH_BRANCH), _c(_TANH_ONE)
    # polynomial branch
    ap = jnp.where(a < small, small, jnp.where(a > branch, branch, a))
    s = _mul(ap, ap)
    q = _c(_TANH_T[0])
    for c in _TANH_T[1:]:
        q = _c(c) + _mul(q, s)
    t_poly = ap + _mul(ap, _mul(s, q))
    # exp branch
    ae = jnp.where(a < branch, branch, jnp.where(a > one, one, a))
    e = exp_f32(ae + ae)
    t_exp = np.float32(1) - _div_pos(jnp.full_like(e, 2.0), e + np.float32(1))
    t = jnp.where(a < small, a, jnp.where(a < branch, t_poly, jnp.where(a < one, t_exp, np.float32(1))))
    out = _f32(_bits(t) | sign)
    return jnp.where(_isnan(x), _f32(sign | np.uint32(CANONICAL_NAN_F32)), out)


def rsqrt_f32(x) -> jax.Array:
    """flush(1 / flush(sqrt(flush(x)))) with IEEE sqrt and division; x < 0 -> +canonical NaN."""
    x = _flush(_as_f32(x))
    b = _bits(x)
    ab = b & _ABS
    nan_in = ab > _INF
    neg = (b & _SIGN) != 0
    pos_normal = (ab >= _u(0x00800000)) & (ab < _INF) & ~neg
    xn = jnp.where(pos_normal, x, np.float32(1))
    y = _div_pos(jnp.ones_like(xn), _sqrt_pos(xn))
    y = jnp.where(ab == 0, _f32(_INF | (b & _SIGN)), jnp.where(ab == _INF, np.float32(0), y))
    res_nan = nan_in | (neg & (ab != 0))
    return jnp.where(res_nan, _nan_like(x, nan_in & neg), y)


def recip_f32(x) -> jax.Array:
    """flush(1 / flush(x)) with IEEE division; NaN -> canonical NaN with x's sign."""
    x = _flush(_as_f32(x))
    b = _bits(x)
    ab, sign = b & _ABS, b & _SIGN
    normal = (ab >= _u(0x00800000)) & (ab < _INF)
    y = _div_pos(jnp.ones_like(x), jnp.where(normal, _f32(ab), np.float32(1)))
    yb = jnp.where(ab == 0, _INF, jnp.where(ab == _INF, _u(0), _bits(y)))
    return jnp.where(ab > _INF, _nan_like(x, sign != 0), _f32(yb | sign))


def f32_to_f16(x) -> jax.Array:
    """fp32 -> fp16, round to nearest even, overflow to +-inf, fp16 subnormals kept, canonical NaN 0x7E00."""
    x = _flush(_as_f32(x))
    b = _bits(x)
    sign = (b >> 16) & np.uint32(0x8000)
    e = (b >> 23) & np.uint32(0xFF)
    m = b & np.uint32(0x7FFFFF)
    # normal fp16 target (e >= 113); computed with e clamped so the shifts stay in range
    en = jnp.maximum(e, np.uint32(113))
    v = ((en - np.uint32(112)) << 10) + (m >> 13)
    rem = m & np.uint32(0x1FFF)
    up = (rem > np.uint32(0x1000)) | ((rem == np.uint32(0x1000)) & ((v & np.uint32(1)) == 1))
    v = v + up.astype(jnp.uint32)
    v_norm = jnp.where(v >= np.uint32(0x7C00), np.uint32(0x7C00), v)
    # subnormal fp16 target (e <= 112)
    big_m = m | np.uint32(0x800000)
    sh = jnp.clip(np.int32(126) - e.astype(jnp.int32), 14, 25).astype(jnp.uint32)
    vs = big_m >> sh
    rems = big_m & ((np.uint32(1) << sh) - np.uint32(1))
    half = np.uint32(1) << (sh - np.uint32(1))
    ups = (rems > half) | ((rems == half) & ((vs & np.uint32(1)) == 1))
    v_sub = vs + ups.astype(jnp.uint32)
    v = jnp.where(e >= np.uint32(113), v_norm, v_sub)
    v = jnp.where(e == 0, np.uint32(0), v)
    v = jnp.where(e == np.uint32(0xFF), jnp.where(m == 0, np.uint32(0x7C00), np.uint32(CANONICAL_NAN_F16)), v)
    return lax.bitcast_convert_type((v | sign).astype(jnp.uint16), jnp.float16)


def f16_to_f32(x) -> jax.Array:
    """Exact fp16 -> fp32 widening (fp16 subnormals become normal fp32); NaN -> canonical fp32 NaN, sign kept."""
    dt = getattr(x, "dtype", None)
    if dt is None or np.dtype(dt) != np.float16:
        raise TypeError(f"x must be float16, got {dt}")
    h = lax.bitcast_convert_type(jnp.asarray(x), jnp.uint16).astype(jnp.uint32)
    sign = (h & np.uint32(0x8000)) << 16
    e = (h >> 10) & np.uint32(0x1F)
    m = h & np.uint32(0x3FF)
    normal = ((e + np.uint32(112)) << 23) | (m << 13)
    sub = _bits(m.astype(jnp.float32) * np.float32(2.0**-24))  # exact: m < 2^10, result >= 2^-24
    inf_nan = jnp.where(m == 0, _INF, np.uint32(CANONICAL_NAN_F32))
    v = jnp.where(e == 0, sub, jnp.where(e == np.uint32(0x1F), inf_nan, normal))
    return _f32(v | sign)


_INT_TYPES = {8: jnp.int8, 16: jnp.int16, 32: jnp.int32}


def f32_to_int(x, bits: int = 32) -> jax.Array:
    """fp32 -> signed int of `bits` (8, 16, 32): flush, NaN -> 0, round half to even, saturate."""
    if bits not in _INT_TYPES:
        raise ValueError(f"bits must be 8, 16 or 32, got {bits!r}")
    x = _flush(_as_f32(x))
    r = lax.round(jnp.where(_isnan(x), np.float32(0), x), lax.RoundingMethod.TO_NEAREST_EVEN)
    lo = np.float32(-(2.0 ** (bits - 1)))
    if bits == 32:
        hi = np.float32(2147483520.0)  # largest fp32 below 2^31
        i = jnp.clip(r, lo, hi).astype(jnp.int32)
        return jnp.where(r >= np.float32(2.0**31), np.int32(2**31 - 1), i)
    hi = np.float32(2.0 ** (bits - 1) - 1)
    return jnp.clip(r, lo, hi).astype(jnp.int32).astype(_INT_TYPES[bits])


def f32_to_uint8(x) -> jax.Array:
    """fp32 -> uint8: flush, NaN -> 0, round half to even, saturate to [0, 255]."""
    x = _flush(_as_f32(x))
    r = lax.round(jnp.where(_isnan(x), np.float32(0), x), lax.RoundingMethod.TO_NEAREST_EVEN)
    return jnp.clip(r, np.float32(0), np.float32(255)).astype(jnp.int32).astype(jnp.uint8)


def _minmax(a, b, is_min: bool) -> jax.Array:
    a = _flush(_as_f32(a, "a"))
    b = _flush(_as_f32(b, "b"))
    ab, bb = _bits(a), _bits(b)
    if is_min:
        first, second, tie = a < b, b < a, _f32(ab | bb)
    else:
        first, second, tie = a > b, b > a, _f32(ab & bb)
    out = jnp.where(first, a, jnp.where(second, b, tie))
    nan = _isnan(a) | _isnan(b)
    return jnp.where(nan, _f32(jnp.full(jnp.shape(out), CANONICAL_NAN_F32, jnp.uint32)), out)


def mul_f32(a, b) -> jax.Array:
    """a * b: IEEE round-to-nearest-even with subnormal results flushed, decided the same way on every backend."""
    a, b = _flush(_as_f32(a, "a")), _flush(_as_f32(b, "b"))
    p = a * b
    aa, ab = jnp.abs(a), jnp.abs(b)
    s = jnp.minimum(aa, ab) * np.float32(2.0**64)
    big = jnp.maximum(aa, ab)
    pp = s * big
    sh, sl = _split(s)
    bh, bl = _split(big)
    err = (((sh * bh - pp) + sh * bl) + sl * bh) + sl * bl
    t = np.float32(2.0**-62 - 2.0**-86)
    up = (pp > t) | ((pp == t) & (err >= 0))
    neg = (_bits(a) ^ _bits(b)) & _SIGN
    tiny = _f32(jnp.where(up, np.uint32(0x00800000), np.uint32(0)) | neg)
    finite = (aa > 0) & (ab > 0) & (aa < np.float32(np.inf)) & (ab < np.float32(np.inf))
    r = jnp.where(finite & (jnp.abs(p) < np.float32(2.0**-126)), tiny, _flush(p))
    return jnp.where(_isnan(r), _nan_like(r, False), r)


def min_f32(a, b) -> jax.Array:
    """Minimum: NaN if either is NaN (+canonical); -0 if the values are equal and either is -0."""
    return _minmax(a, b, True)


def max_f32(a, b) -> jax.Array:
    """Maximum: NaN if either is NaN (+canonical); +0 if the values are equal and either is +0."""
    return _minmax(a, b, False)
