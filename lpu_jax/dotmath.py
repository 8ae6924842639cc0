"""Exact dot products of the matrix unit (MXM): int8 x int8 -> int32, and fp16 x fp16 -> fp32 rounded once.

Both functions are pure, work under `jax.jit`, and give the same bits on every XLA backend (CPU, GPU, with or
without TF32 / bf16 matmul passes or FMA contraction). docs/mxm_math.md states the same rules for the ISA manual.

Functions and shapes
--------------------
`dot_i8(x, w) -> int32`
  x: raw int8 bytes, uint8 (or int8) [..., K]; w: raw int8 bytes, uint8 (or int8) [..., K, N]; K <= 1024.
  result[..., n] = sum_k int8(x[..., k]) * int8(w[..., k, n]), exactly, as int32 [..., N].
`dot_f16(x, w) -> uint32`
  x: fp16 bit patterns, uint16 (or float16, bitcast) [..., K]; w: fp16 bit patterns, uint16 (or float16)
  [..., K, N]; K <= 4096. result[..., n] is the fp32 bit pattern (uint32 [..., N]) of the EXACT sum of the K
  products x[..., k] * w[..., k, n], rounded ONCE to fp32, round to nearest, ties to even.
Batch dimensions follow `jnp.matmul(x[..., None, :], w)[..., 0, :]`: w is either one matrix [K, N] shared by
every row of x, or a batch [..., K, N] whose batch dimensions broadcast against x's leading dimensions. The
result has shape broadcast(x.shape[:-1], w.shape[:-2]) + (N,). Shapes are checked statically (ValueError).
`DOT_I8_MAX_K` = 1024 and `DOT_F16_MAX_K` = 4096 are the bounds on K; a larger K raises ValueError.

Exactness (x64 is off in this repository, so only fp32 / int32 / uint32 arithmetic is used)
-------------------------------------------------------------------------------------------
Both functions use fp32 matmuls (`precision=HIGHEST`) on small integers held as fp32. Every operand has <= 8
significant bits, so it is exact even if a backend rounds matmul inputs to TF32 (11 bits) or bf16 (8 bits);
every product and every partial sum of any subset of products (that is, every intermediate of ANY summation
order, blocking, split-K or FMA contraction) is an integer of magnitude <= 2^24, hence exact in fp32. The only
requirement on the backend is fp32 (or wider) accumulation. Integer-valued fp32 inputs are never subnormal, so
XLA CPU's flush-to-zero cannot act (the stance of `lpu_jax.fpmath`: no result may depend on FTZ or contraction).

dot_i8: int8 values lie in [-128, 127], so every product lies in [-16256, 16384] and a sum of at most K = 1024
  of them lies in [-16646144, 16777216] = [-1024*16256, 2^24]. K = 1024 with x = w = -128 everywhere reaches
  exactly 2^24, which is still an fp32 integer, so the bound is K <= 1024. The fp32 sum converts to int32
  exactly.
dot_f16: an fp16 value is X * 2^-24 with X an integer, |X| < 2^40: with sign s, exponent field e, mantissa m,
  X = m for e = 0 (subnormals, decoded with integer operations, never through a float conversion that could
  flush them) and X = (1024 + m) << (e - 1) for 1 <= e <= 30. |X| is split into 5 limbs of 8 bits,
  |X| = sum_i X_i 2^(8i), 0 <= X_i <= 255, each limb carrying the sign of X. Then
      sum_k x_k w_k = 2^-48 * sum_{i,j} T_ij 2^(8(i+j)),   T_ij = sum_k X_ik W_jk.
  K is cut into chunks of at most 256; one fp32 matmul per chunk computes all 25 T_ij at once (x limbs [L, Kc]
  times w limbs [Kc, L*N]); a chunk sum has magnitude <= 256 * 255^2 = 16646400 < 2^24, so it is exact, and it
  converts exactly to int32. The chunk sums are added in int32: |T_ij| <= 4096 * 255^2 < 2^28. The 9 diagonal
  sums U_s = sum_{i+j=s} T_ij (s = 0..8, at most 5 terms: |U_s| <= 5 * 4096 * 255^2 < 1.34e9 < 2^31) are
  normalised by one carry propagation in base 2^8 (int32; c = U_s + carry, digit c & 255, carry c >> 8 with an
  arithmetic shift; every intermediate < 2^31) into the exact integer V = sum_s U_s 2^(8s) = top * 2^72 +
  sum_s d_s 2^(8s), 0 <= d_s <= 255, |top| < 2^20 (|V| < 4096 * (2^40)^2 = 2^92). V is packed into three uint32
  words as a 96-bit two's complement number, V < 0 iff top < 0, and |V| is its complement plus one (with word
  carries). |V| is rounded to 24 significant bits with integer operations: normalise by the leading-zero count
  lz of the 96 bits, keep 24 bits, guard bit g and sticky bit t (OR of everything below), add 1 when g and
  (t or the kept value is odd); a carry out of the mantissa moves into the exponent field. The biased exponent
  of 2^-48 |V| is 174 - lz, always in [79, 170]: no overflow and no subnormal is possible (the smallest nonzero
  |sum| is 2^-48, the largest is below 4096 * 65504^2 < 2^45).

Special values of dot_f16 (per output element, over its K products)
--------------------------------------------------------------------
  * NaN (always the canonical quiet NaN 0x7FC00000) if any product is NaN (a NaN factor, or inf * 0), or if
    products +inf and -inf are both present;
  * else +inf (0x7F800000) / -inf (0xFF800000) if there are infinite products, all of that sign;
  * else the exact sum rounded once; an exact zero sum is +0.0 (0x00000000), whatever the signs of the zero
    products (IEEE addition would give -0.0 for a sum of -0.0 products; the MXM does not).
  NaN and inf inputs contribute 0 to the finite sum. The special products are counted with fp32 matmuls of
  0/+-1 indicators (integer counts of magnitude <= 2K <= 8192, exact; see `_specials`) and NaN inputs with
  reductions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lpu_jax.fpmath import CANONICAL_NAN_F32

__all__ = ["DOT_F16_MAX_K", "DOT_I8_MAX_K", "dot_f16", "dot_i8"]

DOT_I8_MAX_K = 1024  # 1024 * (-128) * (-128) = 2^24: the largest K whose int8 sums stay exact in fp32
DOT_F16_MAX_K = 4096

_HIGHEST = lax.Precision.HIGHEST
_LIMB_BITS = 8
_N_LIMBS = 5  # 5 * 8 = 40 bits: |X| < 2^40
_CHUNK = 256  # 256 * 255 * 255 < 2^24
_POS_INF_F32 = 0x7F800000
_NEG_INF_F32 = 0xFF800000

_u = np.uint32


def _raw(x, udt, alt, name: str) -> jax.Array:
    """x as raw unsigned bit patterns of dtype `udt`; `alt` (same width) is bitcast, anything else is a TypeError."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        raise TypeError(f"{name} must be an array of {np.dtype(udt)}, got {type(x).__name__}")
    dt = np.dtype(dt)
    x = jnp.asarray(x)
    if dt == np.dtype(udt):
        return x
    if dt == np.dtype(alt):
        return lax.bitcast_convert_type(x, udt)
    raise TypeError(f"{name} must be {np.dtype(udt)} (or {np.dtype(alt)}), got {dt}")


def _check_shapes(x: jax.Array, w: jax.Array, max_k: int, fn: str) -> int:
    if x.ndim < 1 or w.ndim < 2:
        raise ValueError(f"{fn}: x must be [..., K] and w [..., K, N], got {x.shape} and {w.shape}")
    k = x.shape[-1]
    if w.shape[-2] != k:
        raise ValueError(f"{fn}: K mismatch, x {x.shape} and w {w.shape}")
    if k > max_k:
        raise ValueError(f"{fn}: K = {k} exceeds the exactness bound {max_k}")
    try:
        np.broadcast_shapes(x.shape[:-1], w.shape[:-2])
    except ValueError:
        raise ValueError(f"{fn}: batch dimensions of x {x.shape} and w {w.shape} do not broadcast") from None
    return k


def _rowdot(a: jax.Array, b: jax.Array) -> jax.Array:
    """a [..., K] (fp32), b [..., K, M] (fp32) -> [..., M] = jnp.matmul(a[..., None, :], b)[..., 0, :]."""
    if b.ndim == 2:
        return jnp.matmul(a, b, precision=_HIGHEST)
    return jnp.matmul(a[..., None, :], b, precision=_HIGHEST)[..., 0, :]


# ------------------------------------------------------------------------------------------------ int8
def dot_i8(x, w) -> jax.Array:
    """Exact int8 dot products: x uint8 [..., K], w uint8 [..., K, N] (raw int8 bytes) -> int32 [..., N]; K <= 1024."""
    x = _raw(x, jnp.uint8, jnp.int8, "x")
    w = _raw(w, jnp.uint8, jnp.int8, "w")
    _check_shapes(x, w, DOT_I8_MAX_K, "dot_i8")
    return dot_i8_values(i8_as_f32(x), i8_as_f32(w))


def i8_as_f32(b: jax.Array) -> jax.Array:
    """Raw int8 bytes (uint8) -> their values as float32 (exact)."""
    return lax.bitcast_convert_type(b, jnp.int8).astype(jnp.float32)


def dot_i8_values(xf: jax.Array, wf: jax.Array) -> jax.Array:
    """`dot_i8` on int8 values already held as float32 (`i8_as_f32`), for callers that keep weights decoded:
    xf [..., K], wf [..., K, N] -> int32 [..., N]; exact for K <= 1024 (no shape checks)."""
    return _rowdot(xf, wf).astype(jnp.int32)  # an exact integer, |value| <= 2^24


# ------------------------------------------------------------------------------------------------ fp16
def _decode_f16(h: jax.Array) -> tuple[jax.Array, dict]:
    """fp16 bits (uint16, [..., M]) -> (limbs fp32 [..., L, M], features: dict of fp32 arrays [..., M]).

    Limb i = sign * ((|X| >> 8i) & 255): exact in fp32 (and in bf16), all 0 for NaN and inf inputs. Features,
    0/1 (or -1/0/1 for the signed ones): "inf", "fin" (finite nonzero), "zero", "s_inf" / "s_fin" (times the sign),
    and the bool "nan".
    """
    h = h.astype(jnp.uint32)
    neg = (h >> 15) == _u(1)
    e = (h >> 10) & _u(0x1F)
    m = h & _u(0x3FF)
    special = e == _u(0x1F)
    s = jnp.where(e == _u(0), m, m | _u(0x400))  # significand, < 2^11
    sh = jnp.maximum(e.astype(jnp.int32) - 1, 0)  # |X| = s << sh, sh <= 29 for finite values
    d = sh[..., None, :] - np.arange(0, _N_LIMBS * _LIMB_BITS, _LIMB_BITS, dtype=np.int32)[:, None]  # [..., L, M]
    left = (s[..., None, :] << jnp.clip(d, 0, 31).astype(jnp.uint32)) & _u(0xFF)
    right = (s[..., None, :] >> jnp.clip(-d, 0, 31).astype(jnp.uint32)) & _u(0xFF)  # s < 2^11: >> 31 gives 0
    limbs = jnp.where(special[..., None, :], _u(0), jnp.where(d >= 0, left, right)).astype(jnp.float32)
    limbs = jnp.where(neg[..., None, :], -limbs, limbs)
    sign = jnp.where(neg, np.float32(-1), np.float32(1))
    zero = (h & _u(0x7FFF)) == _u(0)
    inf = (special & (m == _u(0))).astype(jnp.float32)
    fin = (~special & ~zero).astype(jnp.float32)
    feats = {"inf": inf, "fin": fin, "zero": zero.astype(jnp.float32), "s_inf": sign * inf, "s_fin": sign * fin}
    feats["nan"] = special & (m != _u(0))
    return limbs, feats


def _specials(xf: dict, wf: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(nan, pos_inf, neg_inf) flags [..., N] from the features of x [..., K] and w [..., K, N].

    Three counts, each one fp32 matmul over 2K terms of 0/+-1 values (so every count is an integer of magnitude
    <= 2K <= 8192, exact): the number of infinite products
        T = sum_k inf(x_k) nz(w_kn) + fin(x_k) inf(w_kn)      (nz = inf + fin: nonzero, not NaN),
    their signed sum S (the same with every factor times its sign), and the number of inf * 0 products
        Z = sum_k zero(x_k) inf(w_kn) + inf(x_k) zero(w_kn).
    There is a +inf product iff T + S > 0 (= 2 * their number), a -inf product iff T - S > 0.
    """
    a = jnp.stack(
        [
            jnp.concatenate([xf["inf"], xf["fin"]], axis=-1),
            jnp.concatenate([xf["s_inf"], xf["s_fin"]], axis=-1),
            jnp.concatenate([xf["zero"], xf["inf"]], axis=-1),
        ],
        axis=-2,
    )  # [..., 3, 2K]
    b = jnp.stack(
        [
            jnp.concatenate([wf["inf"] + wf["fin"], wf["inf"]], axis=-2),
            jnp.concatenate([wf["s_inf"] + wf["s_fin"], wf["s_inf"]], axis=-2),
            jnp.concatenate([wf["inf"], wf["zero"]], axis=-2),
        ],
        axis=-3,
    )  # [..., 3, 2K, N]
    if b.ndim == 3:
        c = jnp.einsum("...rk,rkn->...rn", a, b, precision=_HIGHEST)
    else:
        c = jnp.matmul(a[..., None, :], b, precision=_HIGHEST)[..., 0, :]  # [..., 3, N]
    t, sgn, z = c[..., 0, :], c[..., 1, :], c[..., 2, :]
    pos_inf, neg_inf = t + sgn > 0, t - sgn > 0
    nan = (z > 0) | jnp.any(xf["nan"], axis=-1)[..., None] | jnp.any(wf["nan"], axis=-2)
    return nan | (pos_inf & neg_inf), pos_inf, neg_inf


def _limb_products(xs: jax.Array, ws: jax.Array, k: int) -> jax.Array:
    """T[..., i, j, n] = sum_k X_ik W_jkn, exact int32 (|T| < 2^28); fp32 limbs x [..., L, K], w [..., K, L, N]."""
    n = ws.shape[-1]
    ws = ws.reshape(ws.shape[:-2] + (_N_LIMBS * n,))  # [..., K, L*N], column j*N + n
    if k <= _CHUNK:
        t = jnp.matmul(xs, ws, precision=_HIGHEST).astype(jnp.int32)  # [..., L, L*N], each |.| < 2^24
    else:
        c = -(-k // _CHUNK)
        pad = c * _CHUNK - k
        xs = jnp.pad(xs, [(0, 0)] * (xs.ndim - 1) + [(0, pad)])
        xs = jnp.moveaxis(xs.reshape(xs.shape[:-1] + (c, _CHUNK)), -2, -3)  # [..., C, L, Kc]
        ws = jnp.pad(ws, [(0, 0)] * (ws.ndim - 2) + [(0, pad), (0, 0)])
        ws = ws.reshape(ws.shape[:-2] + (c, _CHUNK, ws.shape[-1]))  # [..., C, Kc, L*N]
        t = jnp.matmul(xs, ws, precision=_HIGHEST).astype(jnp.int32)  # [..., C, L, L*N], each chunk exact
        t = jnp.sum(t, axis=-3)  # int32, |.| <= 4096 * 255^2 < 2^28
    return t.reshape(t.shape[:-1] + (_N_LIMBS, n))


def _diagonal_sums(t: jax.Array) -> jax.Array:
    """U[..., s, n] = sum_{i+j=s} T[..., i, j, n] for s = 0..2L-2 (int32; at most 5 terms, |U| < 5 * 2^28 < 2^31).

    Shear: pad j to 2L, flatten (i, j) to i*2L + j = i*(2L-1) + (i+j), drop the last L, reshape to (L, 2L-1).
    """
    L = _N_LIMBS
    t = jnp.pad(t, [(0, 0)] * (t.ndim - 2) + [(0, L), (0, 0)])  # [..., L, 2L, N]
    t = t.reshape(t.shape[:-3] + (2 * L * L, t.shape[-1]))[..., : L * (2 * L - 1), :]
    t = t.reshape(t.shape[:-2] + (L, 2 * L - 1, t.shape[-1]))  # [..., i, i + j, N]
    return jnp.sum(t, axis=-3)


def _round_to_f32_bits(u: jax.Array) -> jax.Array:
    """fp32 bits of 2^-48 * V, V = sum_s u[..., s, :] 2^(8s) (exact int32 U_s), rounded to nearest even."""
    # carry propagation in base 2^8: V = top * 2^72 + sum_s d_s 2^(8s), d_s in [0, 255]
    carry = jnp.zeros_like(u[..., 0, :])
    d = []
    for s in range(u.shape[-2]):
        c = u[..., s, :] + carry  # |c| < 2^31
        d.append((c & 0xFF).astype(jnp.uint32))
        carry = c >> _LIMB_BITS  # arithmetic shift: floor division; finally |top| < 2^20
    neg = carry < 0
    # V as a 96-bit two's complement number in three words
    lo = d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
    mid = d[4] | (d[5] << 8) | (d[6] << 16) | (d[7] << 24)
    hi = d[8] | lax.bitcast_convert_type(carry << _LIMB_BITS, jnp.uint32)
    # |V| (negate: complement and add 1, with carries)
    c0 = (lo == _u(0)).astype(jnp.uint32)
    c1 = c0 & (mid == _u(0)).astype(jnp.uint32)
    lo = jnp.where(neg, ~lo + _u(1), lo)
    mid = jnp.where(neg, ~mid + c0, mid)
    hi = jnp.where(neg, ~hi + c1, hi)
    # normalise by the leading-zero count and round to 24 significant bits
    lz = jnp.where(
        hi != _u(0), lax.clz(hi), jnp.where(mid != _u(0), _u(32) + lax.clz(mid), _u(64) + lax.clz(lo))
    )  # leading zeros of the 96-bit |V|; 96 for V = 0 (handled at the end)
    q, r = lz >> 5, lz & _u(31)
    h = jnp.where(q == _u(0), hi, jnp.where(q == _u(1), mid, lo))
    m = jnp.where(q == _u(0), mid, jnp.where(q == _u(1), lo, _u(0)))
    lw = jnp.where(q == _u(0), lo, _u(0))
    h2 = (h << r) | _shr(m, r)  # normalised: bit 31 of h2 is the leading 1
    m2 = (m << r) | _shr(lw, r)
    l2 = lw << r
    sig25 = h2 >> 7
    sig = sig25 >> 1  # 24 bits, bit 23 set
    guard = sig25 & _u(1)
    sticky = ((h2 & _u(0x7F)) | m2 | l2) != _u(0)
    up = guard & (sticky | ((sig & _u(1)) == _u(1))).astype(jnp.uint32)
    biased = _u(174) - lz  # exponent of 2^-48 |V| is (95 - lz) - 48; biased: + 127. In [79, 170].
    bits = ((biased - _u(1)) << 23) + sig + up  # a mantissa carry-out correctly bumps the exponent
    bits = bits | (neg.astype(jnp.uint32) << 31)
    return jnp.where((hi | mid | lo) == _u(0), _u(0), bits)


def _shr(a: jax.Array, r: jax.Array) -> jax.Array:
    """a >> (32 - r) for r in [0, 31], with a >> 32 = 0 (no out-of-range shift is ever issued)."""
    return jnp.where(r == _u(0), _u(0), a >> ((_u(32) - r) & _u(31)))


def dot_f16(x, w) -> jax.Array:
    """fp16 x fp16 dot products, exact sum rounded once to fp32 (RNE), as uint32 bits.

    x: fp16 bits uint16 [..., K]; w: fp16 bits uint16 [..., K, N] (or [K, N]); K <= 4096 -> uint32 [..., N].
    Special values and the exactness argument: module docstring.
    """
    x = _raw(x, jnp.uint16, jnp.float16, "x")
    w = _raw(w, jnp.uint16, jnp.float16, "w")
    k = _check_shapes(x, w, DOT_F16_MAX_K, "dot_f16")
    xl, xf = _decode_f16(x)  # [..., L, K]
    wl, wf = _decode_f16(w)  # [..., K, L, N]
    finite = _round_to_f32_bits(_diagonal_sums(_limb_products(xl, wl, k)))
    nan, pos_inf, neg_inf = _specials(xf, wf)
    out = jnp.where(neg_inf, _u(_NEG_INF_F32), finite)
    out = jnp.where(pos_inf, _u(_POS_INF_F32), out)
    return jnp.where(nan, _u(CANONICAL_NAN_F32), out)
