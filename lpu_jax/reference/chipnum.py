"""chipnum: a plain-numpy evaluator of jaxprs with the LPU chip's numerics (docs/numerics.md, docs/fpmath.md).

`evaluate` walks a jaxpr equation by equation and computes every value with numpy, giving each primitive the
result the chip program must produce: the VXM's fp32 rules (flushed subnormals, canonical NaNs, exp and tanh by
the documented algorithms, division as a multiplication by a reciprocal), reductions in the lane order of a chip
with `lanes` lanes, and matrix products as the MXM computes them. docs/numerics.md is the contract; this module is
its independent implementation. It imports only numpy, the standard library and jax (to trace functions and to
walk jaxprs), never `lpu_jax.fpmath`, the simulator or the compiler: if it shared their code it would prove nothing.

API
---
    evaluate(closed_jaxpr, *args, lanes) -> list[np.ndarray]   one array per jaxpr output
    run(fn, *args, lanes)                -> fn's output pytree  (= evaluate(jax.make_jaxpr(fn)(*args), *leaves))

Element-wise functions (numpy arrays of any shape, or Python scalars; float32 in, float32 out unless noted):
    flush(x)             fp32 subnormal -> zero of the same sign (bit operations)
    add(a, b), sub(a, b) IEEE round to nearest even of the flushed inputs, result flushed
    mul(a, b)            IEEE product of the flushed inputs (exact in float64, rounded once), result flushed
    neg(x), abs_(x)      sign bit flipped / cleared
    max_(a, b), min_(a, b)  NaN if either is NaN; equal values: max = bits(a) & bits(b), min = bits(a) | bits(b)
    exp(x), tanh(x)      the algorithms of docs/fpmath.md, step by step (not libm)
    rsqrt(x)             flush(1 / sqrt(x)), IEEE sqrt then IEEE division
    recip(x)             flush(1 / x), IEEE division
    div(a, b)            mul(a, recip(b)): two roundings (the VXM has no divider)
    round_(x)            round half to even, to an fp32 integer
    f32_to_f16(x)        float32 -> float16, round to nearest even, fp16 subnormals kept, NaN -> 0x7E00 | sign
    f16_to_f32(h)        float16 -> float32, exact; NaN -> canonical fp32 NaN with the sign
    to_int8_sat(x)       float32 -> int8: flush, NaN -> 0, round half to even, saturate to [-128, 127]
    lane_sum(x, lanes)   float32 [..., n] -> [...]: the chip's sum over the last axis (order below)

Every fp32 value an operation takes is flushed first and every fp32 result is flushed. Every NaN an operation
makes is the canonical 0x7FC00000; its sign bit is set only when the operation has one input (neg, abs_, exp,
tanh, rsqrt, recip, round_, the conversions) and that input is a NaN with its sign bit set. Structural operations
(reshape, slice, gather, select_n, ...) move values unchanged, bits included.

Semantics per jaxpr primitive
-----------------------------
float32 element-wise: add sub mul neg abs max min exp tanh rsqrt div (= mul(a, recip(b))), square (= mul(x, x)),
  integer_pow y = 2, 3 (mul(x, x), then mul(that, x)), round (to nearest even only), clamp (min(max(x, lo), hi)),
  is_finite, comparisons eq ne lt le gt ge (exact, on the flushed values).
float16 element-wise: the VXM's rule: widen exactly to fp32, the fp32 operation above, round once to fp16.
integers and bools: exact numpy arithmetic, wrapping in two's complement; div and rem truncate toward zero, with
  XLA's results for a zero divisor (x / 0 = -1, x % 0 = x) and INT_MIN / -1 = INT_MIN. and or not xor.
convert_element_type: f32 -> f16 `f32_to_f16`; f16 -> f32 `f16_to_f32`; float -> integer the VXM's saturating
  conversion (flush, NaN -> 0, round half to even, saturate); for the quantisation pattern
  `round -> clamp -> convert` of docs/numerics.md this equals jax's result exactly, but on a value that is not
  already an integer the chip rounds where jax truncates. int -> f32 exact / round to nearest even; int -> f16
  through fp32 (two roundings, as the VXM); int -> int wraps (as XLA); anything -> bool is `!= 0`.
reduce_sum (float32): over the LAST axis (length n) in lane order: if n > lanes the tiles of `lanes` lanes are
  added in order (`acc = tile0; acc = add(acc, tile1); ...`, the last tile zero-padded), then the first
  min(n, lanes) lanes of acc, zero-padded to a power of two, are summed by the pairwise tree
  `v = add(v[0::2], v[1::2])` until one lane is left. Over any other axis (whole vectors): the same pairwise
  tree over that axis, zero-padded to a power of two. When several axes are reduced, the last axis (if it is one
  of them) goes first in lane order, then the other reduced axes one at a time, the highest-numbered first, each
  with its own tree.
reduce_max / reduce_min (float32): max_ / min_ folded (any order gives the same bits). argmax / argmin: the first
  index of the largest (smallest) flushed value, or of the first NaN (as jax). Integer and bool reductions, and
  cumsum on integers: exact (wrapping).
dot_general: int x int -> int exact (int64, then wrapped to the result type); float16 x float16 -> float32 (or
  float16, rounded last with f32_to_f16): the contraction is cut into chunks of lanes // 2 in order, each chunk's
  sum of exact products is computed in float64 (the MXM's special-value rules: NaN if a product is NaN or +inf
  and -inf products meet, else +-inf if there are infinite products, an exact zero sum is +0) and rounded once to
  fp32, and the chunk results are added in order with `add`. float64 is exact for the products but may round a
  chunk sum where the MXM does not, in rare cases: docs/numerics.md compares this path with a tolerance.
  float32 x float32 -> float32 (the fp32 policy only; NOT chip-exact): one float64 sum of the exact products,
  rounded once to fp32 and flushed. Batch dimensions and any contracting dimensions are supported.
Structural (exact): broadcast_in_dim reshape transpose squeeze expand_dims rev slice dynamic_slice
  dynamic_update_slice (start indices clamped as XLA does) concatenate pad split iota select_n gather (the full
  XLA gather with jax's modes: clip / promise_in_bounds clamp, fill_or_drop fills out-of-bound slices)
  stop_gradient copy optimization_barrier.
Calls and control flow: the sub-jaxprs of jit / pjit, closed_call, core_call, remat, custom_jvp_call and
  custom_vjp_call are evaluated in place; cond, while and scan run their bodies with Python loops.
Anything else (sin, sqrt, log, logistic, erf, sort, float cumsum, ...) raises `NotImplementedError` naming the
primitive and the user's source line. `SUPPORTED_PRIMITIVES` lists the names.

Arithmetic notes. numpy float32 +, -, *, / and sqrt are IEEE round to nearest even. numpy does not flush
subnormals, and the ones it could make are removed by `flush`; `mul` computes the exact product in float64 and
decides the only subnormal boundary that matters (a product rounding up to 2^-126) explicitly, so no result here
depends on the processor's flush-to-zero mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal

__all__ = [
    "SUPPORTED_PRIMITIVES",
    "Unsupported",
    "abs_",
    "add",
    "div",
    "evaluate",
    "exp",
    "f16_to_f32",
    "f32_to_f16",
    "flush",
    "lane_sum",
    "max_",
    "min_",
    "mul",
    "neg",
    "recip",
    "round_",
    "rsqrt",
    "run",
    "sub",
    "tanh",
    "to_int8_sat",
]

# ------------------------------------------------------------------------------------------------ bit helpers
_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_EXP = np.uint32(0x7F800000)  # the exponent field; also the bits of +inf
_CNAN = np.uint32(0x7FC00000)
_CNAN16 = 0x7E00
_MIN_NORMAL = 2.0**-126
_TINY_MID = 2.0**-126 - 2.0**-150  # midpoint between 2^-126 and the largest fp32 subnormal


def _c(bits: int) -> np.float32:
    """The fp32 constant with bit pattern `bits`."""
    return np.array(bits, np.uint32).view(np.float32)[()]


def _f32_in(x, name: str = "x") -> np.ndarray:
    """x as a float32 ndarray; an array of another dtype raises TypeError (Python scalars are converted)."""
    dt = getattr(x, "dtype", None)
    if dt is not None and np.dtype(dt) != np.float32:
        raise TypeError(f"{name} must be float32, got {np.dtype(dt)}")
    return np.asarray(x, np.float32)


def _u(x) -> np.ndarray:
    """Bits of a float32 array (uint32 view)."""
    return np.asarray(x, np.float32).view(np.uint32)


def _f(b) -> np.ndarray:
    """float32 array with the given bits."""
    return np.asarray(b, np.uint32).view(np.float32)


def _isnan(x) -> np.ndarray:
    return (_u(x) & _ABS) > _EXP


def _nan_signed(x) -> np.ndarray:
    """The canonical NaN carrying x's sign bit (for one-input operations on a NaN input)."""
    return _f(_CNAN | (_u(x) & _SIGN))


def _two_input_result(r) -> np.ndarray:
    """Flush a result and make its NaNs the positive canonical NaN (two-input operations)."""
    r = flush(np.asarray(r, np.float32))
    return np.where(_isnan(r), _f(_CNAN), r)


def _xmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The contraction-proof product of docs/fpmath.md: split both factors at 12 significant bits (mask
    0xFFFFF000) and add the four exact partial products as ((al*bl + al*bh) + ah*bl) + ah*bh."""
    ah = _f(_u(a) & np.uint32(0xFFFFF000))
    bh = _f(_u(b) & np.uint32(0xFFFFF000))
    al, bl = a - ah, b - bh
    return ((al * bl + al * bh) + ah * bl) + ah * bh


# ------------------------------------------------------------------------------------------------ element-wise
def flush(x) -> np.ndarray:
    """fp32 values with exponent field 0 -> the zero of the same sign; everything else unchanged."""
    b = _u(_f32_in(x))
    return _f(np.where((b & _EXP) == 0, b & _SIGN, b))


def add(a, b) -> np.ndarray:
    """a + b: IEEE round to nearest even of the flushed inputs, flushed; NaN -> +canonical."""
    a, b = flush(_f32_in(a, "a")), flush(_f32_in(b, "b"))
    with np.errstate(all="ignore"):
        return _two_input_result(a + b)


def sub(a, b) -> np.ndarray:
    """a - b: IEEE round to nearest even of the flushed inputs, flushed; NaN -> +canonical."""
    a, b = flush(_f32_in(a, "a")), flush(_f32_in(b, "b"))
    with np.errstate(all="ignore"):
        return _two_input_result(a - b)


def mul(a, b) -> np.ndarray:
    """a * b: the IEEE product of the flushed inputs, rounded to nearest even, then flushed; NaN -> +canonical.

    The product of two fp32 values is exact in float64 (48 significant bits, exponents far inside float64's
    normal range) and is rounded once to fp32. Below 2^-126 the rounded IEEE result is either 2^-126 (when the
    exact product is at least the midpoint 2^-126 - 2^-150; a tie goes to 2^-126, whose significand is even) or
    a subnormal that the flush turns into zero: decided here explicitly, with the sign of the product.
    """
    a, b = flush(_f32_in(a, "a")), flush(_f32_in(b, "b"))
    with np.errstate(all="ignore"):
        p = a.astype(np.float64) * b.astype(np.float64)
        mag = np.abs(p)
        tiny = np.where(mag >= _TINY_MID, np.copysign(_MIN_NORMAL, p), np.copysign(0.0, p))
        p = np.where(mag < _MIN_NORMAL, tiny, p)
        return _two_input_result(p.astype(np.float32))


def neg(x) -> np.ndarray:
    """-x (the sign bit flipped) of the flushed input; NaN -> canonical NaN with x's sign."""
    x = flush(_f32_in(x))
    return np.where(_isnan(x), _nan_signed(x), _f(_u(x) ^ _SIGN))


def abs_(x) -> np.ndarray:
    """|x| (the sign bit cleared) of the flushed input; NaN -> canonical NaN with x's sign."""
    x = flush(_f32_in(x))
    return np.where(_isnan(x), _nan_signed(x), _f(_u(x) & _ABS))


def max_(a, b) -> np.ndarray:
    """Maximum of the flushed inputs; NaN if either is NaN (+canonical); equal values -> f32(bits(a) & bits(b))."""
    a, b = flush(_f32_in(a, "a")), flush(_f32_in(b, "b"))
    out = np.where(a > b, a, np.where(b > a, b, _f(_u(a) & _u(b))))
    return np.where(_isnan(a) | _isnan(b), _f(_CNAN), out)


def min_(a, b) -> np.ndarray:
    """Minimum of the flushed inputs; NaN if either is NaN (+canonical); equal values -> f32(bits(a) | bits(b))."""
    a, b = flush(_f32_in(a, "a")), flush(_f32_in(b, "b"))
    out = np.where(a < b, a, np.where(b < a, b, _f(_u(a) | _u(b))))
    return np.where(_isnan(a) | _isnan(b), _f(_CNAN), out)


_EXP_HI, _EXP_LO = _c(0x42B80000), _c(0xC2DC0000)  # clamp range [-110, 92]
_LOG2E, _LN2_HI, _LN2_LO = _c(0x3FB8AA3B), _c(0x3F317200), _c(0x35BFBF00)
_EXP_COEFFS = [_c(h) for h in (0x39500D01, 0x3AB60B61, 0x3C088889, 0x3D2AAAAB, 0x3E2AAAAB, 0x3F000000, 0x3F800000)]
_ONE, _TWO, _ZERO = np.float32(1.0), np.float32(2.0), np.float32(0.0)


def exp(x) -> np.ndarray:
    """e^x by docs/fpmath.md: clamp, Cody-Waite reduction, degree-7 Taylor in Horner form with exact products,
    scaling by 2^k on the exponent field. NaN -> canonical NaN with x's sign; results below 2^-126 are +0."""
    x = flush(_f32_in(x))
    with np.errstate(all="ignore"):
        nan = _isnan(x)
        xs = np.where(nan, _ZERO, x)
        xs = np.where(xs > _EXP_HI, _EXP_HI, np.where(xs < _EXP_LO, _EXP_LO, xs))
        kf = np.rint(xs * _LOG2E)  # one fp32 product, rounded half to even to an integer in [-159, 133]
        r = (xs - kf * _LN2_HI) - kf * _LN2_LO  # the first product and difference are exact
        r = np.where((_u(r) & _ABS) < np.uint32(0x2B800000), _ZERO, r)  # |r| < 2^-40 -> +0
        q = np.full(r.shape, _EXP_COEFFS[0], np.float32)
        for coeff in _EXP_COEFFS[1:]:
            q = coeff + _xmul(q, r)
        p = _ONE + _xmul(q, r)  # in [0.70, 1.42]
        p_bits = np.asarray(p, np.float32).view(np.int32).astype(np.int64)
        k = kf.astype(np.int64)
        field = (p_bits >> 23) + k
        out = np.where(field >= 255, 0x7F800000, np.where(field <= 0, 0, p_bits + (k << 23)))
        out = _f(out.astype(np.uint32))
    return np.where(nan, _nan_signed(x), out)


_TANH_SMALL, _TANH_BRANCH, _TANH_ONE = _c(0x39800000), _c(0x3F100000), _c(0x41800000)  # 2^-12, 0.5625, 16
_TANH_COEFFS = [_c(h) for h in (0x3B0D83E4, 0xBC066455, 0x3CB1DF5C, 0xBD5CF9E1, 0x3E088841, 0xBEAAAAAA)]  # T5..T0


def tanh(x) -> np.ndarray:
    """tanh(x) by docs/fpmath.md: t = T(|x|) with its sign bit set from x (exactly odd). T(a) = a below 2^-12,
    an odd polynomial below 0.5625, 1 - 2 / (exp(2a) + 1) below 16, and 1 from there on."""
    x = flush(_f32_in(x))
    sign = _u(x) & _SIGN
    a = _f(_u(x) & _ABS)
    with np.errstate(all="ignore"):
        ap = np.minimum(np.maximum(a, _TANH_SMALL), _TANH_BRANCH)  # (only used where a is not NaN)
        s = _xmul(ap, ap)
        q = np.full(s.shape, _TANH_COEFFS[0], np.float32)
        for coeff in _TANH_COEFFS[1:]:
            q = coeff + _xmul(q, s)
        t_poly = ap + _xmul(ap, _xmul(s, q))
        ae = np.minimum(np.maximum(a, _TANH_BRANCH), _TANH_ONE)
        t_exp = _ONE - _TWO / (exp(ae + ae) + _ONE)  # IEEE division; the quotient is always normal here
        t = np.where(
            a < _TANH_SMALL, a, np.where(a < _TANH_BRANCH, t_poly, np.where(a < _TANH_ONE, t_exp, _ONE))
        ).astype(np.float32)
    out = _f(_u(t) | sign)
    return np.where(_isnan(x), _nan_signed(x), out)


def rsqrt(x) -> np.ndarray:
    """flush(1 / sqrt(flush(x))), IEEE sqrt then IEEE division: +0 -> +inf, -0 -> -inf, +inf -> +0, any x < 0
    -> +canonical NaN, NaN -> canonical NaN with x's sign."""
    x = flush(_f32_in(x))
    with np.errstate(all="ignore"):
        y = flush(_ONE / np.sqrt(x))
    negative = ((_u(x) & _SIGN) != 0) & (x != 0)
    y = np.where(negative, _f(_CNAN), y)
    return np.where(_isnan(x), _nan_signed(x), y)


def recip(x) -> np.ndarray:
    """flush(1 / flush(x)), IEEE division: +-0 -> +-inf, +-inf and |x| > 2^126 -> +-0, NaN -> canonical with
    x's sign."""
    x = flush(_f32_in(x))
    with np.errstate(all="ignore"):
        y = flush(_ONE / x)
    return np.where(_isnan(x), _nan_signed(x), y)


def div(a, b) -> np.ndarray:
    """a / b as the chip computes it: mul(a, recip(b)), two roundings (docs/numerics.md)."""
    return mul(a, recip(_f32_in(b, "b")))


def round_(x) -> np.ndarray:
    """Round half to even to an fp32 integer (of the flushed input); NaN -> canonical NaN with x's sign."""
    x = flush(_f32_in(x))
    return np.where(_isnan(x), _nan_signed(x), np.rint(x))


def f32_to_f16(x) -> np.ndarray:
    """float32 -> float16 by bit manipulation (docs/fpmath.md): flush, round to nearest even, overflow to +-inf,
    fp16 subnormals kept, NaN -> 0x7E00 with x's sign."""
    b = _u(flush(_f32_in(x))).astype(np.int64)
    sign = (b >> 16) & 0x8000
    e = (b >> 23) & 0xFF
    m = b & 0x7FFFFF
    # normal fp16 result (e >= 113): 10 mantissa bits kept, 13 dropped
    v = ((np.maximum(e, 113) - 112) << 10) + (m >> 13)
    rem = m & 0x1FFF
    v = v + ((rem > 0x1000) | ((rem == 0x1000) & ((v & 1) == 1)))
    v = np.minimum(v, 0x7C00)
    # subnormal fp16 result (e <= 112): a multiple of 2^-24
    big_m = m | 0x800000
    sh = np.clip(126 - e, 14, 25)
    vs = big_m >> sh
    rems = big_m & ((1 << sh) - 1)
    half = 1 << (sh - 1)
    vs = vs + ((rems > half) | ((rems == half) & ((vs & 1) == 1)))
    v = np.where(e >= 113, v, vs)
    v = np.where(e == 0, 0, v)
    v = np.where(e == 0xFF, np.where(m == 0, 0x7C00, _CNAN16), v)
    return (v | sign).astype(np.uint16).view(np.float16)


def f16_to_f32(h) -> np.ndarray:
    """float16 -> float32, exact (fp16 subnormals become normal fp32 values); NaN -> canonical with its sign."""
    dt = getattr(h, "dtype", None)
    if dt is None or np.dtype(dt) != np.float16:
        raise TypeError(f"h must be float16, got {dt}")
    hb = np.asarray(h).view(np.uint16).astype(np.uint32)
    sign = (hb & np.uint32(0x8000)) << np.uint32(16)
    e = (hb >> np.uint32(10)) & np.uint32(0x1F)
    m = hb & np.uint32(0x3FF)
    normal = ((e + np.uint32(112)) << np.uint32(23)) | (m << np.uint32(13))
    sub_ = _u(m.astype(np.float32) * np.float32(2.0**-24))  # exact, m < 2^10; never an fp32 subnormal
    special = np.where(m == 0, _EXP, _CNAN)
    v = np.where(e == 0, sub_, np.where(e == 0x1F, special, normal))
    return _f(v | sign)


def _to_int_sat(x, dtype) -> np.ndarray:
    """float32 -> integer dtype: flush, NaN -> 0, round half to even, saturate to the type's range."""
    dtype = np.dtype(dtype)
    x = flush(_f32_in(x))
    r = np.rint(np.where(_isnan(x), _ZERO, x)).astype(np.float64)
    info = np.iinfo(dtype)
    return np.clip(r, info.min, info.max).astype(np.int64).astype(dtype)


def to_int8_sat(x) -> np.ndarray:
    """float32 -> int8, the VXM's saturating conversion: flush, NaN -> 0, round half to even, clip [-128, 127]."""
    return _to_int_sat(x, np.int8)


# ------------------------------------------------------------------------------------------------ reductions
def _check_lanes(lanes) -> int:
    if isinstance(lanes, bool) or not isinstance(lanes, int | np.integer) or lanes < 1:
        raise ValueError(f"lanes must be a positive int, got {lanes!r}")
    return int(lanes)


def lane_sum(x, lanes: int) -> np.ndarray:
    """Sum over the last axis of a float32 [..., n] array in the chip's lane order -> [...].

    If n > lanes, the tiles of `lanes` lanes are added in order (the last tile zero-padded); then the first
    min(n, lanes) lanes, zero-padded to a power of two, are summed pairwise, `v = add(v[0::2], v[1::2])`, until
    one lane is left (docs/numerics.md, "Reductions"). n = 0 gives +0.
    """
    x = _f32_in(x)
    lanes = _check_lanes(lanes)
    if x.ndim == 0:
        raise ValueError("lane_sum needs an array with at least one axis")
    n = x.shape[-1]
    lead = x.shape[:-1]
    if n == 0:
        return np.zeros(lead, np.float32)
    if n > lanes:
        pad = (-n) % lanes
        tiles = np.concatenate([x, np.zeros(lead + (pad,), np.float32)], axis=-1).reshape(lead + (-1, lanes))
        v = tiles[..., 0, :]
        for t in range(1, tiles.shape[-2]):
            v = add(v, tiles[..., t, :])
    else:
        v = x
    return _pairwise_last(v)


def _pairwise_last(v: np.ndarray) -> np.ndarray:
    """float32 [..., w] (w >= 1) -> [...]: zero-pad to a power of two, then `v = add(v[0::2], v[1::2])`."""
    lead = v.shape[:-1]
    width = 1 << (v.shape[-1] - 1).bit_length()
    v = np.concatenate([v, np.zeros(lead + (width - v.shape[-1],), np.float32)], axis=-1)
    while v.shape[-1] > 1:
        v = add(v[..., 0::2], v[..., 1::2])
    return flush(v[..., 0])


def _tree_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum of float32 x over a non-lane `axis` (whole vectors added): the pairwise tree of docs/numerics.md."""
    v = np.moveaxis(x, axis, -1)
    if v.shape[-1] == 0:
        return np.zeros(v.shape[:-1], np.float32)
    return _pairwise_last(v)


def _fold_front(x: np.ndarray, axes: Sequence[int], op: Callable, empty) -> np.ndarray:
    """Reduce `axes` of x sequentially in row-major index order with the two-input `op`."""
    axes = sorted(axes)
    rest = [d for d in range(x.ndim) if d not in axes]
    y = np.transpose(x, axes + rest)
    y = y.reshape((-1,) + tuple(x.shape[d] for d in rest))
    if y.shape[0] == 0:
        return np.full(y.shape[1:], empty, x.dtype)
    acc = y[0]
    for i in range(1, y.shape[0]):
        acc = op(acc, y[i])
    return np.asarray(acc)


def _reduce_sum(x: np.ndarray, axes: Sequence[int], lanes: int) -> np.ndarray:
    axes = sorted(int(a) for a in axes)
    if not axes:
        return x
    if x.dtype.kind in "iub":
        return np.sum(x.astype(np.int64), axis=tuple(axes))
    if x.dtype != np.float32:
        raise NotImplementedError(f"reduce_sum of {x.dtype} (only float32 and integers)")
    if axes[-1] == x.ndim - 1:
        x = lane_sum(x, lanes)
        axes = axes[:-1]
    for axis in reversed(axes):
        x = _tree_sum(x, axis)
    return x


def _reduce_minmax(x: np.ndarray, axes: Sequence[int], is_max: bool) -> np.ndarray:
    axes = tuple(sorted(int(a) for a in axes))
    if not axes:
        return x
    if x.dtype.kind in "iub":
        if x.size == 0:
            info = np.iinfo(x.dtype) if x.dtype.kind != "b" else None
            fill = (info.min if is_max else info.max) if info else (not is_max)
            return np.full([s for d, s in enumerate(x.shape) if d not in axes], fill, x.dtype)
        return np.max(x, axis=axes) if is_max else np.min(x, axis=axes)
    if x.dtype == np.float32:
        return flush(_fold_front(x, axes, max_ if is_max else min_, -np.inf if is_max else np.inf))
    if x.dtype == np.float16:
        y = _reduce_minmax(f16_to_f32(x), axes, is_max)
        return f32_to_f16(y)
    raise NotImplementedError(f"reduce_{'max' if is_max else 'min'} of {x.dtype}")


# ------------------------------------------------------------------------------------------------ dot_general
def _special_aware_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [B, M, K] @ [B, K, N] with the MXM's special-value rules (docs/mxm_math.md): NaN if a product is
    NaN (a NaN factor or inf * 0) or +inf and -inf products meet; else +-inf if there are infinite products; else
    the sum of the finite products, an exact zero being +0. The rules are applied explicitly, so a BLAS that
    skips zero factors cannot change them."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    s = np.matmul(np.where(fa, a, 0.0), np.where(fb, b, 0.0))
    s = np.where(s == 0, 0.0, s)  # -0 -> +0
    if fa.all() and fb.all():
        return s

    def count(x, y):
        return np.matmul(x.astype(np.float64), y.astype(np.float64)) > 0

    nan_a, nan_b = np.isnan(a), np.isnan(b)
    pinf_a, ninf_a, pinf_b, ninf_b = a == np.inf, a == -np.inf, b == np.inf, b == -np.inf
    inf_a, inf_b = pinf_a | ninf_a, pinf_b | ninf_b
    zero_a, zero_b = a == 0, b == 0
    pos_a, neg_a, pos_b, neg_b = a > 0, a < 0, b > 0, b < 0
    ones_a, ones_b = np.ones_like(a, bool), np.ones_like(b, bool)
    nan = count(nan_a, ones_b) | count(ones_a, nan_b) | count(inf_a, zero_b) | count(zero_a, inf_b)
    pinf = count(pinf_a, pos_b) | count(ninf_a, neg_b) | count(pos_a, pinf_b) | count(neg_a, ninf_b)
    ninf = count(pinf_a, neg_b) | count(ninf_a, pos_b) | count(pos_a, ninf_b) | count(neg_a, pinf_b)
    s = np.where(pinf, np.inf, np.where(ninf, -np.inf, s))
    return np.where(nan | (pinf & ninf), np.nan, s)


def _dot_f16(a: np.ndarray, b: np.ndarray, lanes: int) -> np.ndarray:
    """float16 [B, M, K] x [B, K, N] -> float32 [B, M, N]: chunks of lanes // 2 along K, each an exact-product
    float64 sum rounded once to fp32, the chunk results added in order with the chip's fp32 add."""
    if lanes < 2:
        raise ValueError(f"a float16 dot_general needs lanes >= 2, got {lanes}")
    chunk = lanes // 2
    a64 = f16_to_f32(a).astype(np.float64)  # exact widening (NaNs canonical: the MXM ignores payloads)
    b64 = f16_to_f32(b).astype(np.float64)
    k = a.shape[-1]
    acc = None
    for start in range(0, max(k, 1), chunk):
        part = _special_aware_matmul(a64[..., start : start + chunk], b64[..., start : start + chunk, :])
        with np.errstate(all="ignore"):
            part = _two_input_result(part.astype(np.float32))
        acc = part if acc is None else add(acc, part)
    return acc


def _dot_general(lhs, rhs, dimension_numbers, out_dtype, lanes: int) -> np.ndarray:
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = (tuple(int(d) for d in t) for t in (lc, rc, lb, rb))
    lf = tuple(d for d in range(lhs.ndim) if d not in lc and d not in lb)
    rf = tuple(d for d in range(rhs.ndim) if d not in rc and d not in rb)
    batch_shape = tuple(lhs.shape[d] for d in lb)
    m_shape, n_shape = tuple(lhs.shape[d] for d in lf), tuple(rhs.shape[d] for d in rf)
    k = math.prod(lhs.shape[d] for d in lc)
    bsz = math.prod(batch_shape)
    a = np.transpose(lhs, lb + lf + lc).reshape(bsz, math.prod(m_shape), k)
    b = np.transpose(rhs, rb + rc + rf).reshape(bsz, k, math.prod(n_shape))
    out_dtype = np.dtype(out_dtype)
    kinds = (a.dtype.kind, b.dtype.kind)
    if kinds[0] in "iu" and kinds[1] in "iu" and out_dtype.kind in "iu":
        c = np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(out_dtype)
    elif a.dtype == np.float16 and b.dtype == np.float16 and out_dtype in (np.float32, np.float16):
        c = _dot_f16(a, b, lanes)
        if out_dtype == np.float16:
            c = f32_to_f16(c)
    elif a.dtype == np.float32 and b.dtype == np.float32 and out_dtype == np.float32:
        with np.errstate(all="ignore"):
            s = _special_aware_matmul(flush(a).astype(np.float64), flush(b).astype(np.float64))
            c = _two_input_result(s.astype(np.float32))
    else:
        raise NotImplementedError(f"dot_general {a.dtype} x {b.dtype} -> {out_dtype}")
    return c.reshape(batch_shape + m_shape + n_shape)


# ------------------------------------------------------------------------------------------------ gather
def _mode_name(mode) -> str:
    name = getattr(mode, "name", None) or str(mode)
    return name.rsplit(".", 1)[-1].upper()


def _gather(operand: np.ndarray, indices: np.ndarray, dnums, slice_sizes, mode, fill_value) -> np.ndarray:
    """XLA gather with the index vector in the last axis of `indices` (as jax always builds it)."""
    offset_dims = tuple(dnums.offset_dims)
    collapsed = tuple(dnums.collapsed_slice_dims)
    start_index_map = tuple(dnums.start_index_map)
    operand_batching = tuple(getattr(dnums, "operand_batching_dims", ()))
    indices_batching = tuple(getattr(dnums, "start_indices_batching_dims", ()))
    slice_sizes = tuple(int(s) for s in slice_sizes)
    idx = np.asarray(indices).astype(np.int64)
    batch_shape = idx.shape[:-1]
    nb, rank = len(batch_shape), operand.ndim
    starts = np.zeros(batch_shape + (rank,), np.int64)
    for k, d in enumerate(start_index_map):
        starts[..., d] = idx[..., k]
    for od, idim in zip(operand_batching, indices_batching, strict=True):
        shape = [1] * nb
        shape[idim] = batch_shape[idim]
        starts[..., od] = np.arange(batch_shape[idim]).reshape(shape)
    upper = np.array(operand.shape, np.int64) - np.array(slice_sizes, np.int64)
    name = _mode_name(mode)
    if name not in ("CLIP", "PROMISE_IN_BOUNDS", "FILL_OR_DROP"):
        raise NotImplementedError(f"gather mode {name}")
    sim = list(start_index_map)
    in_bounds = np.all((starts[..., sim] >= 0) & (starts[..., sim] <= upper[sim]), axis=-1)
    starts = np.clip(starts, 0, upper)
    index_arrays = []
    for d in range(rank):
        s = starts[..., d].reshape(batch_shape + (1,) * rank)
        window = [1] * rank
        window[d] = slice_sizes[d]
        index_arrays.append(s + np.arange(slice_sizes[d]).reshape((1,) * nb + tuple(window)))
    r = operand[tuple(index_arrays)]  # batch_shape + slice_sizes
    if name == "FILL_OR_DROP":
        if fill_value is None:
            kind = operand.dtype.kind
            if kind == "f":
                fill_value = np.nan
            elif kind == "b":
                fill_value = True
            else:
                info = np.iinfo(operand.dtype)
                fill_value = info.min if kind == "i" else info.max
        fill = np.array(fill_value).astype(operand.dtype)
        r = np.where(in_bounds.reshape(batch_shape + (1,) * rank), r, fill)
    drop = set(collapsed) | set(operand_batching)
    r = r.reshape(batch_shape + tuple(s for d, s in enumerate(slice_sizes) if d not in drop))
    return np.moveaxis(r, list(range(nb, r.ndim)), list(offset_dims))


# ------------------------------------------------------------------------------------------------ rules
class Unsupported(NotImplementedError):
    """A primitive (or a parameter of one) with no chip semantics here; the message names it and its source."""


class _Ctx:
    def __init__(self, lanes: int):
        self.lanes = lanes


def _unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(what)


def _float_unary(f32_fn: Callable, int_fn: Callable | None = None):
    """A rule for an element-wise one-input primitive: float32 -> f32_fn, float16 -> widened, f32_fn, rounded."""

    def rule(ctx, eqn, x):
        if x.dtype == np.float32:
            return f32_fn(x)
        if x.dtype == np.float16:
            return f32_to_f16(f32_fn(f16_to_f32(x)))
        if int_fn is not None and x.dtype.kind in "iub":
            with np.errstate(all="ignore"):
                return int_fn(x)
        raise _unsupported(f"{eqn.primitive.name} on {x.dtype}")

    return rule


def _float_binary(f32_fn: Callable, int_fn: Callable | None = None):
    """A rule for an element-wise two-input primitive, as `_float_unary`."""

    def rule(ctx, eqn, a, b):
        if a.dtype == np.float32 and b.dtype == np.float32:
            return f32_fn(a, b)
        if a.dtype == np.float16 and b.dtype == np.float16:
            return f32_to_f16(f32_fn(f16_to_f32(a), f16_to_f32(b)))
        if int_fn is not None and a.dtype.kind in "iub" and b.dtype.kind in "iub":
            with np.errstate(all="ignore"):
                return int_fn(a, b)
        raise _unsupported(f"{eqn.primitive.name} on {a.dtype}, {b.dtype}")

    return rule


def _compare(np_fn: Callable):
    def rule(ctx, eqn, a, b):
        if a.dtype == np.float32:
            a, b = flush(a), flush(b)
        return np_fn(a, b)

    return rule


def _int_div(a, b):
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    safe = np.where(b64 == 0, 1, b64)
    q = np.abs(a64) // np.abs(safe) * np.sign(a64) * np.sign(safe)
    return np.where(b64 == 0, -1, q).astype(np.result_type(a, b))  # wraps INT_MIN / -1 back to INT_MIN


def _int_rem(a, b):
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    safe = np.where(b64 == 0, 1, b64)
    r = a64 - (np.abs(a64) // np.abs(safe) * np.sign(a64) * np.sign(safe)) * safe
    return np.where(b64 == 0, a64, r).astype(np.result_type(a, b))


def _no_float_rem(a, b):
    raise _unsupported("rem on floats (no chip semantics)")


def _integer_pow(ctx, eqn, x):
    y = int(eqn.params["y"])
    if x.dtype.kind in "iu":
        with np.errstate(all="ignore"):
            if y < 0:
                raise _unsupported(f"integer_pow y={y} on integers")
            return np.asarray(np.power(x.astype(np.int64), y)).astype(x.dtype)
    if y not in (2, 3):
        raise _unsupported(f"integer_pow with y={y} (the chip semantics cover y = 2, 3)")

    def f32_pow(v):
        sq = mul(v, v)
        return sq if y == 2 else mul(sq, v)

    return _float_unary(f32_pow)(ctx, eqn, x)


def _round(ctx, eqn, x):
    method = eqn.params.get("rounding_method")
    if int(method) != 1:  # lax.RoundingMethod.TO_NEAREST_EVEN
        raise _unsupported(f"round with rounding_method={method} (the chip rounds half to even; use jnp.round)")
    return _float_unary(round_)(ctx, eqn, x)


def _is_finite(ctx, eqn, x):
    if x.dtype == np.float32:
        return (_u(x) & _EXP) != _EXP
    return np.isfinite(x)


def _clamp(ctx, eqn, lo, x, hi):
    if x.dtype.kind in "iu":
        return np.minimum(np.maximum(x, lo), hi)
    fmax, fmin = _float_binary(max_), _float_binary(min_)
    return fmin(ctx, eqn, fmax(ctx, eqn, x, lo.astype(x.dtype)), hi.astype(x.dtype))


def _select_n(ctx, eqn, pred, *cases):
    if len(cases) == 1:
        return cases[0]
    if pred.dtype == np.bool_:
        return np.where(pred, cases[1], cases[0])
    return np.select([pred == i for i in range(len(cases) - 1)], list(cases[:-1]), cases[-1])


def _convert(ctx, eqn, x):
    dst = np.dtype(eqn.params["new_dtype"])
    src = x.dtype
    supported = {np.dtype(t) for t in (np.float32, np.float16, np.int8, np.int16, np.int32, np.uint8, np.uint32)}
    supported.add(np.dtype(np.bool_))
    if src not in supported or dst not in supported:
        raise _unsupported(f"convert_element_type {src} -> {dst}")
    if src == dst:
        return x
    if dst == np.bool_:
        return (flush(x) if src == np.float32 else x) != 0
    if src == np.bool_:
        return x.astype(dst)
    if src == np.float32:
        return f32_to_f16(x) if dst == np.float16 else _to_int_sat(x, dst)
    if src == np.float16:
        wide = f16_to_f32(x)
        return wide if dst == np.float32 else _to_int_sat(wide, dst)
    # integer source
    if dst == np.float32:
        return x.astype(np.float32)
    if dst == np.float16:
        return f32_to_f16(x.astype(np.float32))
    return x.astype(dst)


def _dot_general_rule(ctx, eqn, lhs, rhs):
    out_dtype = eqn.outvars[0].aval.dtype
    return _dot_general(lhs, rhs, eqn.params["dimension_numbers"], out_dtype, ctx.lanes)


def _broadcast_in_dim(ctx, eqn, x, *dyn):
    if dyn:
        raise _unsupported("broadcast_in_dim with dynamic shapes")
    shape = tuple(eqn.params["shape"])
    expanded = [1] * len(shape)
    for i, d in enumerate(eqn.params["broadcast_dimensions"]):
        expanded[d] = x.shape[i]
    return np.array(np.broadcast_to(x.reshape(expanded), shape))


def _reshape(ctx, eqn, x, *dyn):
    if dyn or eqn.params.get("dimensions") is not None:
        raise _unsupported("reshape with dimensions or dynamic shapes")
    return np.reshape(x, tuple(eqn.params["new_sizes"]))


def _slice(ctx, eqn, x):
    p = eqn.params
    strides = p.get("strides") or (1,) * x.ndim
    return x[tuple(slice(s, e, st) for s, e, st in zip(p["start_indices"], p["limit_indices"], strides, strict=True))]


def _clamped_starts(shape, sizes, starts) -> list[int]:
    return [int(np.clip(int(s), 0, dim - size)) for s, dim, size in zip(starts, shape, sizes, strict=True)]


def _dynamic_slice(ctx, eqn, x, *starts):
    sizes = tuple(eqn.params["slice_sizes"])
    if len(starts) != x.ndim:
        raise _unsupported("dynamic_slice with dynamic sizes")
    st = _clamped_starts(x.shape, sizes, starts)
    return x[tuple(slice(s, s + n) for s, n in zip(st, sizes, strict=True))]


def _dynamic_update_slice(ctx, eqn, x, update, *starts):
    st = _clamped_starts(x.shape, update.shape, starts)
    out = np.array(x)
    out[tuple(slice(s, s + n) for s, n in zip(st, update.shape, strict=True))] = update
    return out


def _pad(ctx, eqn, x, value):
    out = x
    for d, (lo, hi, interior) in enumerate(eqn.params["padding_config"]):
        n = out.shape[d]
        if interior > 0 and n > 1:
            shape = list(out.shape)
            shape[d] = n + (n - 1) * interior
            dilated = np.full(shape, value, x.dtype)
            idx = [slice(None)] * out.ndim
            idx[d] = slice(None, None, interior + 1)
            dilated[tuple(idx)] = out
            out = dilated
        n = out.shape[d]
        idx = [slice(None)] * out.ndim
        idx[d] = slice(max(-lo, 0), n - max(-hi, 0))
        out = out[tuple(idx)]
        widths = [(0, 0)] * out.ndim
        widths[d] = (max(lo, 0), max(hi, 0))
        out = np.pad(out, widths, constant_values=value)
    return out


def _split(ctx, eqn, x):
    sizes = [int(s) for s in eqn.params["sizes"]]
    return np.split(x, np.cumsum(sizes)[:-1], axis=int(eqn.params["axis"]))


def _iota(ctx, eqn, *dyn):
    p = eqn.params
    shape, dim = tuple(p["shape"]), int(p["dimension"])
    view = [1] * len(shape)
    view[dim] = shape[dim]
    return np.array(np.broadcast_to(np.arange(shape[dim]).reshape(view), shape)).astype(np.dtype(p["dtype"]))


def _gather_rule(ctx, eqn, operand, indices):
    p = eqn.params
    return _gather(operand, indices, p["dimension_numbers"], p["slice_sizes"], p["mode"], p.get("fill_value"))


def _argminmax(is_max: bool):
    def rule(ctx, eqn, x):
        (axis,) = eqn.params["axes"]
        if x.dtype == np.float32:
            x = flush(x)
        r = np.argmax(x, axis=axis) if is_max else np.argmin(x, axis=axis)
        return r.astype(np.dtype(eqn.params["index_dtype"]))

    return rule


def _cumsum(ctx, eqn, x):
    if x.dtype.kind not in "iu":
        raise _unsupported(f"cumsum on {x.dtype} (only integers have an order-free result)")
    axis = int(eqn.params["axis"])
    y = np.flip(x, axis) if eqn.params.get("reverse") else x
    y = np.cumsum(y.astype(np.int64), axis=axis)
    return (np.flip(y, axis) if eqn.params.get("reverse") else y).astype(x.dtype)


def _identity(ctx, eqn, *args):
    return list(args) if eqn.primitive.multiple_results else args[0]


def _sub_jaxpr(eqn):
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, ClosedJaxpr | Jaxpr):
            return sub
    raise _unsupported(f"{eqn.primitive.name} without a sub-jaxpr")


def _call_closed(sub, args, ctx) -> list[np.ndarray]:
    if isinstance(sub, ClosedJaxpr):
        return _eval_jaxpr(sub.jaxpr, sub.consts, list(args), ctx)
    return _eval_jaxpr(sub, [], list(args), ctx)


def _call(ctx, eqn, *args):
    return _call_closed(_sub_jaxpr(eqn), args, ctx)


def _cond(ctx, eqn, index, *ops):
    branches = eqn.params["branches"]
    i = int(np.clip(int(index), 0, len(branches) - 1))
    return _call_closed(branches[i], ops, ctx)


def _while(ctx, eqn, *args):
    p = eqn.params
    nc, nb = int(p["cond_nconsts"]), int(p["body_nconsts"])
    cconsts, bconsts, carry = args[:nc], args[nc : nc + nb], list(args[nc + nb :])
    while bool(_call_closed(p["cond_jaxpr"], [*cconsts, *carry], ctx)[0]):
        carry = _call_closed(p["body_jaxpr"], [*bconsts, *carry], ctx)
    return carry


def _scan(ctx, eqn, *args):
    p = eqn.params
    nc, ncarry, length = int(p["num_consts"]), int(p["num_carry"]), int(p["length"])
    consts, carry, xs = args[:nc], list(args[nc : nc + ncarry]), args[nc + ncarry :]
    steps = range(length - 1, -1, -1) if p.get("reverse") else range(length)
    ys: list[list[np.ndarray]] = []
    for i in steps:
        out = _call_closed(p["jaxpr"], [*consts, *carry, *(x[i] for x in xs)], ctx)
        carry, y = out[:ncarry], out[ncarry:]
        ys.append(y)
    if p.get("reverse"):
        ys.reverse()
    y_avals = [v.aval for v in eqn.outvars[ncarry:]]
    stacked = [
        np.stack([step[j] for step in ys]) if ys else np.zeros(aval.shape, aval.dtype) for j, aval in enumerate(y_avals)
    ]
    return [*carry, *stacked]


def _float_reduce(kind: str):
    def rule(ctx, eqn, x):
        axes = eqn.params["axes"]
        if kind == "sum":
            return _reduce_sum(x, axes, ctx.lanes)
        return _reduce_minmax(x, axes, kind == "max")

    return rule


def _bool_reduce(np_fn: Callable):
    def rule(ctx, eqn, x):
        if x.dtype.kind not in "iub":
            raise _unsupported(f"{eqn.primitive.name} on {x.dtype}")
        return np_fn(x, axis=tuple(eqn.params["axes"]))

    return rule


_RULES: dict[str, Callable] = {
    # float32 arithmetic (VXM), integers exact
    "add": _float_binary(add, np.add),
    "sub": _float_binary(sub, np.subtract),
    "mul": _float_binary(mul, np.multiply),
    "div": _float_binary(div, _int_div),
    "rem": _float_binary(_no_float_rem, _int_rem),
    "max": _float_binary(max_, np.maximum),
    "min": _float_binary(min_, np.minimum),
    "neg": _float_unary(neg, np.negative),
    "abs": _float_unary(abs_, np.abs),
    "square": _float_unary(lambda x: mul(x, x), np.square),
    "integer_pow": _integer_pow,
    "exp": _float_unary(exp),
    "tanh": _float_unary(tanh),
    "rsqrt": _float_unary(rsqrt),
    "round": _round,
    "is_finite": _is_finite,
    "clamp": _clamp,
    # comparisons and logic
    "eq": _compare(np.equal),
    "ne": _compare(np.not_equal),
    "lt": _compare(np.less),
    "le": _compare(np.less_equal),
    "gt": _compare(np.greater),
    "ge": _compare(np.greater_equal),
    "and": lambda ctx, eqn, a, b: np.bitwise_and(a, b),
    "or": lambda ctx, eqn, a, b: np.bitwise_or(a, b),
    "xor": lambda ctx, eqn, a, b: np.bitwise_xor(a, b),
    "not": lambda ctx, eqn, a: np.invert(a),
    "select_n": _select_n,
    "convert_element_type": _convert,
    # reductions
    "reduce_sum": _float_reduce("sum"),
    "reduce_max": _float_reduce("max"),
    "reduce_min": _float_reduce("min"),
    "reduce_and": _bool_reduce(np.all),
    "reduce_or": _bool_reduce(np.any),
    "argmax": _argminmax(True),
    "argmin": _argminmax(False),
    "cumsum": _cumsum,
    # matrix products
    "dot_general": _dot_general_rule,
    # structure
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "transpose": lambda ctx, eqn, x: np.transpose(x, tuple(eqn.params["permutation"])),
    "squeeze": lambda ctx, eqn, x: np.squeeze(x, axis=tuple(eqn.params["dimensions"])),
    "expand_dims": lambda ctx, eqn, x: np.expand_dims(x, tuple(eqn.params["dimensions"])),
    "rev": lambda ctx, eqn, x: np.flip(x, axis=tuple(eqn.params["dimensions"])),
    "slice": _slice,
    "dynamic_slice": _dynamic_slice,
    "dynamic_update_slice": _dynamic_update_slice,
    "concatenate": lambda ctx, eqn, *xs: np.concatenate(xs, axis=int(eqn.params["dimension"])),
    "pad": _pad,
    "split": _split,
    "iota": _iota,
    "gather": _gather_rule,
    "stop_gradient": _identity,
    "copy": _identity,
    "copy_p": _identity,
    "optimization_barrier": _identity,
    # calls and control flow
    "jit": _call,
    "pjit": _call,
    "closed_call": _call,
    "core_call": _call,
    "remat": _call,
    "remat2": _call,
    "checkpoint": _call,
    "custom_jvp_call": _call,
    "custom_vjp_call": _call,
    "custom_vjp_call_jaxpr": _call,
    "cond": _cond,
    "while": _while,
    "scan": _scan,
}

SUPPORTED_PRIMITIVES: frozenset[str] = frozenset(_RULES)
"""Names of the jaxpr primitives `evaluate` knows (some only for some dtypes or parameters, see the docstring)."""


# ------------------------------------------------------------------------------------------------ evaluator
def _source_of(eqn) -> str:
    """The user's source line of an equation ('file:line (function)'), or '' when jax cannot say."""
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # noqa: BLE001 - best effort: a private jax API
        return ""


def _located(eqn, what: str) -> Unsupported:
    where = _source_of(eqn)
    return Unsupported(f"chipnum: {what}" + (f" at {where}" if where else ""))


def _as_value(x, aval, what: str) -> np.ndarray:
    """An input or constant as a numpy array of the aval's dtype and shape."""
    arr = np.asarray(x)
    dtype = np.dtype(aval.dtype)
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    if tuple(arr.shape) != tuple(aval.shape):
        raise ValueError(f"{what}: shape {arr.shape} does not match the jaxpr's {tuple(aval.shape)}")
    return arr


def _store(out, aval, eqn) -> np.ndarray:
    """Check a rule's result against the jaxpr's type: the shape must match; an integer or bool result is cast to
    the declared type (numpy promotes where XLA keeps the width), a float of the wrong type is a bug here."""
    arr = np.asarray(out)
    dtype = np.dtype(aval.dtype)
    if arr.dtype != dtype:
        if arr.dtype.kind == "f" or dtype.kind == "f":
            raise RuntimeError(f"chipnum internal error: {eqn.primitive.name} gave {arr.dtype}, expected {dtype}")
        arr = arr.astype(dtype)
    if tuple(arr.shape) != tuple(aval.shape):
        raise RuntimeError(
            f"chipnum internal error: {eqn.primitive.name} gave shape {arr.shape}, expected {tuple(aval.shape)}"
        )
    return arr


def _eval_jaxpr(jaxpr: Jaxpr, consts: Sequence, args: Sequence, ctx: _Ctx) -> list[np.ndarray]:
    env: dict = {}

    def read(v):
        if isinstance(v, Literal):
            return np.asarray(v.val, dtype=np.dtype(v.aval.dtype))
        return env[v]

    if len(args) != len(jaxpr.invars):
        raise ValueError(f"the jaxpr takes {len(jaxpr.invars)} arguments, got {len(args)}")
    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = _as_value(c, v.aval, "constant")
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        rule = _RULES.get(name)
        if rule is None:
            raise _located(eqn, f"primitive '{name}' is not supported (no chip semantics)")
        vals = [read(v) for v in eqn.invars]
        try:
            out = rule(ctx, eqn, *vals)
        except Unsupported:
            raise
        except NotImplementedError as e:
            raise _located(eqn, f"primitive '{name}': {e}") from None
        outs = list(out) if eqn.primitive.multiple_results else [out]
        for v, o in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, DropVar):
                env[v] = _store(o, v.aval, eqn)
    return [read(v) for v in jaxpr.outvars]


def evaluate(closed_jaxpr, *args, lanes: int) -> list[np.ndarray]:
    """Evaluate a (closed) jaxpr with the chip's numerics on a chip of `lanes` lanes.

    Args:
      closed_jaxpr: a `ClosedJaxpr` (from `jax.make_jaxpr`) or a `Jaxpr` without constants.
      *args: one array per jaxpr input, converted to the input's dtype (shapes must match).
      lanes: the lane count L of the chip (`cfg.n_lanes`): the reduction order and the fp16 matmul chunk (L/2)
        depend on it.

    Returns:
      one numpy array per jaxpr output.

    Raises:
      NotImplementedError (`Unsupported`): a primitive, or a dtype or parameter of one, without chip semantics;
        the message names the primitive and the user's source line.
    """
    ctx = _Ctx(_check_lanes(lanes))
    if isinstance(closed_jaxpr, ClosedJaxpr):
        jaxpr, consts = closed_jaxpr.jaxpr, closed_jaxpr.consts
    elif isinstance(closed_jaxpr, Jaxpr):
        jaxpr, consts = closed_jaxpr, []
    else:
        raise TypeError(f"evaluate needs a ClosedJaxpr or a Jaxpr, got {type(closed_jaxpr).__name__}")
    if len(args) != len(jaxpr.invars):
        raise ValueError(f"the jaxpr takes {len(jaxpr.invars)} arguments, got {len(args)}")
    vals = [_as_value(a, v.aval, f"argument {i}") for i, (a, v) in enumerate(zip(args, jaxpr.invars, strict=True))]
    return _eval_jaxpr(jaxpr, consts, vals, ctx)


def run(fn: Callable, *args, lanes: int):
    """Trace `fn(*args)` with `jax.make_jaxpr` and evaluate it with the chip's numerics on `lanes` lanes.

    Returns fn's output pytree with numpy arrays as leaves. Example:

        >>> import numpy as np, jax.numpy as jnp
        >>> float(run(lambda x: jnp.sum(x), np.ones(5, np.float32), lanes=4))
        5.0
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    leaves = jax.tree_util.tree_leaves(args)
    outs = evaluate(closed, *leaves, lanes=lanes)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)
