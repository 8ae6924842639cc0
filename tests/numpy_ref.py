"""Plain-numpy reference of the VXM element semantics, written from the specification (the module docstrings of
`lpu_jax/vxm.py` and `lpu_jax/fpmath.py`, docs/fpmath.md), without calling lpu_jax.

`ref_vxm(op, t1, t2, a, b, c)` takes an op name ("add", ..., "convert", "requant"), the dtype names t1/t2
("i8", "u8", "i16", "i32", "f16", "f32"; for `convert` t1 = source and t2 = destination; for `requant` t1 = "i32")
and the raw little-endian element bits a/b/c (uint32 arrays of any one shape; bits above the element width are
ignored). It returns (bits uint32, output dtype name); the bits are masked to the output width.

Floating point: numpy float32 arithmetic is IEEE binary32 with gradual underflow (numpy never enables FTZ), so
"fp32 IEEE, round to nearest even, subnormals flushed on input and output" is: flush the inputs, compute, flush
the result. exp/tanh reuse the independent numpy interpreter of tests/test_fpmath.py; rsqrt/recip use numpy's
correctly rounded sqrt and division; f32 -> f16 uses numpy's `astype(np.float16)` (round to nearest even, fp16
subnormals kept, overflow to inf); every NaN result is the canonical 0x7FC00000 (f16 0x7E00).
"""

from __future__ import annotations

import numpy as np
from test_fpmath import np_exp, np_tanh

__all__ = ["WIDTH", "INT_RANGE", "FLOATS", "INTS", "ref_vxm", "out_type", "flush_bits"]

WIDTH = {"i8": 1, "u8": 1, "i16": 2, "i32": 4, "f16": 2, "f32": 4}
INT_RANGE = {"i8": (-128, 127), "u8": (0, 255), "i16": (-32768, 32767), "i32": (-(2**31), 2**31 - 1)}
FLOATS = ("f16", "f32")
INTS = ("i8", "u8", "i16", "i32")
CANON = {"f32": 0x7FC00000, "f16": 0x7E00}


def mask_of(t: str) -> np.uint32:
    return np.uint32((1 << (8 * WIDTH[t])) - 1)


def out_type(op: str, t1: str, t2: str) -> str:
    return t2 if op == "convert" else "i8" if op == "requant" else t1


def flush_bits(b: np.ndarray) -> np.ndarray:
    """fp32 bits: subnormals -> signed zero."""
    b = np.asarray(b, np.uint32)
    return np.where((b & np.uint32(0x7F800000)) == 0, b & np.uint32(0x80000000), b)


def _flush(x: np.ndarray) -> np.ndarray:
    return flush_bits(np.asarray(x, np.float32).view(np.uint32)).view(np.float32)


def _int_value(u: np.ndarray, t: str) -> np.ndarray:
    """Masked bits -> the integer value (int64): sign-extended for i8/i16/i32, zero-extended for u8."""
    v = u.astype(np.int64)
    if t == "u8":
        return v
    n = 8 * WIDTH[t]
    return np.where(v >= (1 << (n - 1)), v - (1 << n), v)


def _float_value(u: np.ndarray, t: str) -> np.ndarray:
    """Masked bits -> float32 value: f16 widened exactly, then (every fp32 input) flushed."""
    if t == "f16":
        x = u.astype(np.uint16).view(np.float16).astype(np.float32)
    else:
        x = u.astype(np.uint32).view(np.float32)
    return _flush(x)


def _encode_float(x: np.ndarray, t: str) -> np.ndarray:
    """float32 value -> bits of t: flushed, rounded to f16 if t is f16, every NaN canonical."""
    x = _flush(x)
    nan = np.isnan(x)
    if t == "f16":
        with np.errstate(over="ignore"):
            bits = x.astype(np.float16).view(np.uint16).astype(np.uint32)
    else:
        bits = x.view(np.uint32).copy()
    return np.where(nan, np.uint32(CANON[t]), bits).astype(np.uint32)


def _float_to_int(x: np.ndarray, t: str) -> np.ndarray:
    """float32 value (already flushed) -> int64 value: NaN -> 0, round half to even, saturate (inf included)."""
    lo, hi = INT_RANGE[t]
    r = np.rint(np.where(np.isnan(x), np.float32(0), x).astype(np.float64))
    return np.clip(r, lo, hi).astype(np.int64)


def _min_max(a: np.ndarray, b: np.ndarray, is_min: bool) -> np.ndarray:
    ab, bb = a.view(np.uint32), b.view(np.uint32)
    if is_min:
        out = np.where(a < b, a, np.where(b < a, b, (ab | bb).view(np.float32)))
    else:
        out = np.where(a > b, a, np.where(b > a, b, (ab & bb).view(np.float32)))
    return np.where(np.isnan(a) | np.isnan(b), np.float32(np.nan), out).astype(np.float32)


_CMP = {
    "eq": np.equal,
    "ne": np.not_equal,  # IEEE: NaN != anything is true
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}
_FLOAT_ARITH = ("add", "sub", "mul", "min", "max", "neg", "abs", "relu", "exp", "tanh", "rsqrt", "recip")


def ref_vxm(op: str, t1: str, t2: str, a, b, c) -> tuple[np.ndarray, str]:
    """Reference bits (uint32, masked to the output width) and output dtype name of one VXM op."""
    a, b, c = (np.asarray(x, np.uint32) for x in (a, b, c))
    m1 = mask_of(t1)
    ua, ub, uc = a & m1, b & m1, c & m1
    tout = out_type(op, t1, t2)
    mout = mask_of(tout)
    is_f = t1 in FLOATS

    with np.errstate(all="ignore"):
        if op == "requant":
            ia = _int_value(a, "i32")
            prod = _flush(ia.astype(np.float32) * b.view(np.float32))  # one fp32 rounding, then flush
            return (_float_to_int(prod, "i8").astype(np.uint32) & mout), tout

        if op == "convert":
            if t1 in FLOATS:
                x = _float_value(ua, t1)
                if t2 in FLOATS:
                    return _encode_float(x, t2) & mout, tout
                return _float_to_int(x, t2).astype(np.uint32) & mout, tout
            ia = _int_value(ua, t1)
            if t2 in FLOATS:
                return _encode_float(ia.astype(np.float32), t2) & mout, tout  # int -> fp32 (RNE) -> f16 (RNE)
            lo, hi = INT_RANGE[t2]
            return np.clip(ia, lo, hi).astype(np.uint32) & mout, tout

        if op == "mov":
            return ua & mout, tout
        if op == "select":
            return np.where(ua != 0, ub, uc) & mout, tout

        if op in _CMP:
            if is_f:
                r = _CMP[op](_float_value(ua, t1), _float_value(ub, t1))
            else:
                r = _CMP[op](_int_value(ua, t1), _int_value(ub, t1))
            return r.astype(np.uint32), tout

        if is_f:
            if op not in _FLOAT_ARITH:
                raise ValueError(f"{op} does not take {t1}")
            x, y = _float_value(ua, t1), _float_value(ub, t1)
            one = np.float32(1)
            r = {
                "add": lambda: x + y,
                "sub": lambda: x - y,
                "mul": lambda: x * y,
                "min": lambda: _min_max(x, y, True),
                "max": lambda: _min_max(x, y, False),
                "neg": lambda: -x,
                "abs": lambda: np.abs(x),
                "relu": lambda: np.where(np.isnan(x) | (x > 0), x, np.float32(0)),
                "exp": lambda: np_exp(x),
                "tanh": lambda: np_tanh(x),
                "rsqrt": lambda: _flush(one / np.sqrt(x)),
                "recip": lambda: _flush(one / x),
            }[op]()
            return _encode_float(np.asarray(r, np.float32), tout) & mout, tout

        # integers, computed on the extended value (int64) and truncated to the width
        ia, ib = _int_value(ua, t1), _int_value(ub, t1)
        n = 8 * WIDTH[t1]
        amount = ub.astype(np.int64)  # B read as unsigned
        big = amount >= n
        sh = np.minimum(amount, n - 1)
        uva = ua.astype(np.int64)
        r = {
            "add": lambda: ia + ib,
            "sub": lambda: ia - ib,
            "mul": lambda: ia * ib,  # |product| < 2^62
            "min": lambda: np.minimum(ia, ib),
            "max": lambda: np.maximum(ia, ib),
            "and": lambda: uva & ub.astype(np.int64),
            "or": lambda: uva | ub.astype(np.int64),
            "xor": lambda: uva ^ ub.astype(np.int64),
            "shl": lambda: np.where(big, 0, uva << sh),
            "shru": lambda: np.where(big, 0, uva >> sh),
            "shr": lambda: (ia >> sh) if t1 != "u8" else np.where(big, 0, uva >> sh),
            "neg": lambda: -ia,
            "abs": lambda: np.abs(ia),
            "relu": lambda: np.maximum(ia, 0),
            "not": lambda: ~uva,
        }[op]()
        return (r & np.int64(int(mout))).astype(np.uint32), tout
