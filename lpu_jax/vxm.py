"""VXM: the vector unit in the middle of the chip, `vxm_alus` ALUs, each driven by its own ICU queue.

An ALU instruction `op.T D, A[, B[, C]]` issued at cycle t reads its source stream groups at the VXM's position
at cycle t and puts its result on the group D at the VXM's position at t + d_func (`isa.vxm_delay_class`).
All ALUs run as one vectorised kernel. The element semantics (docs/isa.md has the full table):

Integers (i8, u8, i16, i32): two's complement, computed on the sign- (or zero-, for u8) extended value and
  truncated to the width, so add/sub/mul/neg/abs wrap. min/max/compares are signed (unsigned for u8).
  `shl`/`shru` shift in zeros; `shr` is arithmetic for signed types, logical for u8. The shift amount is B read
  as unsigned; an amount >= the width gives 0 (`shl`, `shru`) or the sign fill (`shr`).
Floats (f16, f32) [A]: IEEE 754 binary32 arithmetic, round to nearest even, with fp32 subnormals flushed to
  signed zero on input and output (the chip's VXM is 32-bit; XLA CPU flushes, XLA GPU does not, so the model
  flushes explicitly to be the same everywhere). f16 operands are widened exactly to fp32, the op is done in fp32
  and the result rounded once to f16 (fp32 has p >= 2*11+2, so for + - * this equals native f16). The fp32
  product is `fpmath.mul_f32`: IEEE rounding decides the subnormal boundary, not the backend's flush-to-zero.
  Every NaN a float op produces is the canonical quiet NaN 0x7FC00000 (f16 0x7E00). min/max return NaN if
  either input is NaN, and -0.0 < +0.0. `relu(x) = x if x > 0 else +0.0` (NaN stays NaN).
  exp/tanh/rsqrt/recip follow the algorithms of `fpmath` (docs/fpmath.md), written so that every product feeding
  an addition is exact: a fused multiply-add cannot change a bit.
Compares write an integer 1 or 0 of the operands' width; `select.T D, A, B, C` gives B where A has any bit set,
  else C; `mov` copies bits.
Conversions `convert.FROM.TO`: float->float round to nearest even (overflow to inf); float->int round half to
  even and saturate (NaN -> 0); int->int saturate; int->float round to nearest even (int -> f16 goes through
  fp32: two roundings). `requant.i32 D, A, B`: D(i8) = sat(rne(flush(f32(A) * B))), A i32, B an f32 scale
  per lane: the int32 -> int8 requantisation of architecture.md §4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import fpmath as fm
from . import isa
from . import streams as st
from .config import ChipConfig
from .dtypes import DTYPES
from .state import MachineState

__all__ = ["vxm_compute", "vxm_step", "delay_table"]

_W = np.array([d.width for d in DTYPES], np.int32)
_SIGNED_INT = np.array([(not d.is_float) and d.is_signed for d in DTYPES])
_FLOAT = np.array([d.is_float for d in DTYPES])
_F16, _I8, _U8, _I16 = (next(d.code for d in DTYPES if d.name == n) for n in ("f16", "i8", "u8", "i16"))
_INT_MIN = np.array([0 if d.is_float else np.iinfo(d.np_dtype).min for d in DTYPES], np.int32)
_INT_MAX = np.array([0 if d.is_float else np.iinfo(d.np_dtype).max for d in DTYPES], np.int32)
OPS = {k: v[0] for k, v in isa.VXM_OPS.items()}
_CANON_F32 = np.uint32(0x7FC00000)
_CANON_F16 = np.uint32(0x7E00)


def delay_table(cfg: ChipConfig) -> np.ndarray:
    """d_func of every (VXM op index, dtype code): int32 [64, len(DTYPES)]."""
    t = np.ones((64, len(DTYPES)), np.int32)
    for name, (i, _, _) in isa.VXM_OPS.items():
        for d in DTYPES:
            t[i, d.code] = cfg.delay(isa.vxm_delay_class(name, d.name))
    return t


def _mask(width):
    return jnp.where(width >= 4, jnp.uint32(0xFFFFFFFF), (jnp.uint32(1) << (8 * width).astype(jnp.uint32)) - 1)


def _maybe(pred, fn, *args):
    """fn(*args) where `pred` (a traced bool) holds, else zeros of the same shape: costly element work runs only
    in the cycles that need it. The cond also makes XLA materialise the result once."""
    shapes = jax.eval_shape(fn, *args)
    zeros = lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
    return jax.lax.cond(pred, fn, zeros, *args)


def _float_value(u: jnp.ndarray, t: jnp.ndarray, any_f16) -> jnp.ndarray:
    """Raw little-endian bits u uint32 [..] of a float type t [..] -> its flushed fp32 value (f16 widened exactly;
    the f16 path runs only if `any_f16`)."""
    u = u & _mask(jnp.asarray(_W)[t])
    f32 = jax.lax.bitcast_convert_type(u, jnp.float32)
    f16 = _maybe(any_f16, lambda v: fm.f16_to_f32(jax.lax.bitcast_convert_type(v.astype(jnp.uint16), jnp.float16)), u)
    return fm.flush_f32(jnp.where(t == _F16, f16, f32))


def _encode_float(x: jnp.ndarray, t: jnp.ndarray, any_f16) -> jnp.ndarray:
    """fp32 value -> bits of type t (f16 or f32), flushed, NaN canonical."""
    x = fm.flush_f32(x)
    b32 = jnp.where(jnp.isnan(x), _CANON_F32, jax.lax.bitcast_convert_type(x, jnp.uint32))

    def f16_bits(x):
        h = fm.f32_to_f16(x)
        return jnp.where(jnp.isnan(h), _CANON_F16, jax.lax.bitcast_convert_type(h, jnp.uint16).astype(jnp.uint32))

    return jnp.where(t == _F16, _maybe(any_f16, f16_bits, x), b32)


def _to_int(x: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    """fp32 -> integer type t: round half to even, saturate, NaN -> 0 (as int32 bits)."""
    r8 = fm.f32_to_int(x, 8)
    r16 = fm.f32_to_int(x, 16)
    r32 = fm.f32_to_int(x, 32)
    ru8 = fm.f32_to_uint8(x).astype(jnp.int32)
    return jnp.select(
        [t == _I8, t == _U8, t == _I16], [r8.astype(jnp.int32), ru8, r16.astype(jnp.int32)], r32.astype(jnp.int32)
    )


# Op classes: each is computed only in the cycles where some ALU runs one of its ops (a cond per class), so a
# cycle costs what its ops need, not what the whole ISA could need.
_CLASSES = {
    "iarith": ("add", "sub", "mul", "min", "max", "neg", "abs", "relu"),  # on integer types
    "bits": ("and", "or", "xor", "not", "shl", "shr", "shru"),
    "move": ("eq", "ne", "lt", "le", "gt", "ge", "select", "mov"),  # any type: integer results or bit copies
    "fadd": ("add", "sub", "neg", "abs", "relu"),  # on f16 / f32
    "fmul": ("mul",),  # on f16 / f32
    "fminmax": ("min", "max"),  # on f16 / f32
    "convert": ("convert", "requant"),
    "exp": ("exp",),
    "tanh": ("tanh",),
    "rsqrt": ("rsqrt",),
    "recip": ("recip",),
}


def _class_of(op, is_f):
    """Class index (position in _CLASSES) of every (op, is-float) pair: int32 [...]."""
    cls = jnp.full(op.shape, -1, jnp.int32)
    for k, (name, ops) in enumerate(_CLASSES.items()):
        hit = jnp.isin(op, jnp.asarray([OPS[o] for o in ops]))
        if name == "iarith":
            hit &= ~is_f
        elif name.startswith("f"):
            hit &= is_f
        cls = jnp.where((cls < 0) & hit, k, cls)
    return cls


def vxm_compute(op, t1, t2, a, b, c, active=None):
    """Element semantics of the VXM. op/t1/t2 int32 [A]; a/b/c raw little-endian uint32 bits [A, L].

    Returns (bits uint32 [A, L] masked to the output width, output dtype code int32 [A]).
    """
    if active is None:
        active = jnp.ones(op.shape, bool)
    t_out = jnp.where(op == OPS["convert"], t2, jnp.where(op == OPS["requant"], _I8, t1))
    is_f1 = jnp.asarray(_FLOAT)[t1]
    cls = jnp.where(active, _class_of(op, is_f1), -1)
    uses = lambda *names: jnp.any(jnp.isin(cls, jnp.asarray([list(_CLASSES).index(n) for n in names])))  # noqa: E731
    any_f16_in = jnp.any(active & (t1 == _F16))
    any_f16_out = jnp.any(active & (t_out == _F16))
    op, t1, t2, t_out, cls2 = op[:, None], t1[:, None], t2[:, None], t_out[:, None], cls[:, None]
    w = jnp.asarray(_W)[t1]
    is_f = jnp.asarray(_FLOAT)[t1]
    u32 = lambda v: jax.lax.bitcast_convert_type(v, jnp.uint32)  # noqa: E731

    def pick(cases):
        return jnp.select([op == OPS[k] for k in cases], list(cases.values()), jnp.uint32(0))

    def ints(x):
        """(bits masked to the width, the sign- or zero-extended int32 value) of raw bits x."""
        u = x & _mask(w)
        sh = (32 - 8 * w).astype(jnp.int32)
        ui = jax.lax.bitcast_convert_type(u, jnp.int32)
        return u, jnp.where(jnp.asarray(_SIGNED_INT)[t1], (ui << sh) >> sh, ui)

    def floats(x):
        """The flushed fp32 value of raw bits x of type t1 (f16 widened exactly)."""
        return _float_value(x, t1, any_f16_in)

    def iarith(a, b):
        (_, ia), (_, ib) = ints(a), ints(b)
        r = {"add": ia + ib, "sub": ia - ib, "mul": ia * ib, "min": jnp.minimum(ia, ib), "max": jnp.maximum(ia, ib)}
        r |= {"neg": -ia, "abs": jnp.abs(ia), "relu": jnp.maximum(ia, 0)}
        return pick({k: u32(v) for k, v in r.items()})

    def bitops(a, b):
        (ua, ia), (ub, _) = ints(a), ints(b)
        nb = (8 * w).astype(jnp.uint32)
        shl = jnp.where(ub >= nb, 0, ua << jnp.minimum(ub, 31))
        shru = jnp.where(ub >= nb, 0, ua >> jnp.minimum(ub, 31))
        sar = u32(ia >> jnp.minimum(ub, nb - 1).astype(jnp.int32))
        r = {"and": ua & ub, "or": ua | ub, "xor": ua ^ ub, "not": ~ua, "shl": shl, "shru": shru}
        return pick(r | {"shr": jnp.where(jnp.asarray(_SIGNED_INT)[t1], sar, shru)})

    def move(a, b, c):
        (ua, ia), (ub, ib), (uc, _) = ints(a), ints(b), ints(c)
        fa, fb = floats(a), floats(b)
        ci = {"eq": ia == ib, "ne": ia != ib, "lt": ia < ib, "le": ia <= ib, "gt": ia > ib, "ge": ia >= ib}
        cf = {"eq": fa == fb, "ne": ~(fa == fb), "lt": fa < fb, "le": fa <= fb, "gt": fa > fb, "ge": fa >= fb}
        r = {k: jnp.where(is_f, cf[k], ci[k]).astype(jnp.uint32) for k in ci}
        return pick(r | {"select": jnp.where(ua != 0, ub, uc), "mov": ua})

    def fadd(a, b):
        fa, fb = floats(a), floats(b)
        relu = jnp.where(jnp.isnan(fa) | (fa > 0), fa, jnp.float32(0))
        r = {"add": fa + fb, "sub": fa - fb, "neg": -fa, "abs": jnp.abs(fa), "relu": relu}
        fval = jnp.select([op == OPS[k] for k in r], list(r.values()), jnp.float32(0))
        return _encode_float(fval, t_out, any_f16_out)

    def fmul(a, b):
        return _encode_float(fm.mul_f32(floats(a), floats(b)), t_out, any_f16_out)

    def fminmax(a, b):
        fa, fb = floats(a), floats(b)
        return _encode_float(jnp.where(op == OPS["min"], fm.min_f32(fa, fb), fm.max_f32(fa, fb)), t_out, any_f16_out)

    def convert(a, b):
        _, ia = ints(a)
        fa = floats(a)
        sat = u32(jnp.clip(ia, jnp.asarray(_INT_MIN)[t2], jnp.asarray(_INT_MAX)[t2]))
        to_int = jnp.where(is_f, u32(_to_int(fa, t2)), sat)
        to_float = _encode_float(jnp.where(is_f, fa, ia.astype(jnp.float32)), t_out, any_f16_out)
        conv = jnp.where(jnp.asarray(_FLOAT)[t2], to_float, to_int)
        scaled = fm.flush_f32(ia.astype(jnp.float32) * fm.flush_f32(jax.lax.bitcast_convert_type(b, jnp.float32)))
        return jnp.where(op == OPS["requant"], u32(fm.f32_to_int(scaled, 8).astype(jnp.int32)), conv)

    def unary(fn):
        return lambda a: _encode_float(fn(floats(a)), t_out, any_f16_out)

    bodies = {
        "iarith": (iarith, (a, b)),
        "bits": (bitops, (a, b)),
        "move": (move, (a, b, c)),
        "fadd": (fadd, (a, b)),
        "fmul": (fmul, (a, b)),
        "fminmax": (fminmax, (a, b)),
        "convert": (convert, (a, b)),
        "exp": (unary(fm.exp_f32), (a,)),
        "tanh": (unary(fm.tanh_f32), (a,)),
        "rsqrt": (unary(fm.rsqrt_f32), (a,)),
        "recip": (unary(fm.recip_f32), (a,)),
    }
    bits = jnp.zeros(a.shape, jnp.uint32)
    for k, (name, (fn, args)) in enumerate(bodies.items()):
        bits = jnp.where(cls2 == k, _maybe(uses(name), fn, *args), bits)
    return bits & _mask(jnp.asarray(_W)[t_out]), t_out[:, 0]


def _gather_bits(rows4: jnp.ndarray) -> jnp.ndarray:
    """uint8 [..., 4, L] stream bytes (rows base..base+3) -> little-endian uint32 [..., L]."""
    r = rows4.astype(jnp.uint32)
    return r[..., 0, :] | (r[..., 1, :] << 8) | (r[..., 2, :] << 16) | (r[..., 3, :] << 24)


def vxm_step(cfg: ChipConfig, state: MachineState, ins: jnp.ndarray) -> dict:
    """One cycle of every VXM ALU. `ins` int32 [A, F]: the rows the VXM queues issued (opcode 0: none).

    Reads its operands off the streams; returns the ALUs' port outputs for `pipeline.emit`."""
    active = (ins[:, 0] >= isa.VXM_BASE) & (ins[:, 0] < isa.VXM_BASE + len(isa.VXM_OPS))
    op = jnp.where(active, ins[:, 0] - isa.VXM_BASE, 0)
    t1, t2, dst = ins[:, 1], ins[:, 2], ins[:, 3]
    pos = cfg.positions[cfg.vxm_slice]
    k = jnp.arange(4)
    srcs = ins[:, 4:7]  # [A, 3]
    w_src = jnp.broadcast_to(jnp.where(op == OPS["requant"], 4, jnp.asarray(_W)[t1])[:, None], srcs.shape)

    def compute(streams):
        # Rows of every source group (big-endian groups reversed); bytes beyond the group's width are read but
        # masked off by the decoding, so every row index can stay in range (min(sid, 2S - 1)).
        kk = k if cfg.group_byte_order == "little" else jnp.where(k < w_src[..., None], w_src[..., None] - 1 - k, k)
        sid = jnp.minimum(srcs[..., None] + kk, 2 * cfg.n_streams - 1)
        got = st.read_rows(cfg, streams, st.row_index(cfg, sid, pos, state.cycle))  # [A, 3, 4, L]
        raw = _gather_bits(got)  # [A, 3, L]
        return vxm_compute(op, t1, t2, raw[:, 0], raw[:, 1], raw[:, 2], active)

    # Under a cond: skipped in cycles with no ALU op, and materialised once (not re-fused into every output byte).
    bits, t_out = jax.lax.cond(
        jnp.any(active), compute, lambda s: (jnp.zeros((ins.shape[0], cfg.n_lanes), jnp.uint32), t1), state.streams
    )
    w_out = jnp.asarray(_W)[t_out]
    out = jnp.stack([(bits >> (8 * i)).astype(jnp.uint8) for i in range(4)], 1)  # [A, 4, L]
    if cfg.group_byte_order == "big":
        idx = jnp.where(k[None, :] < w_out[:, None], w_out[:, None] - 1 - k[None, :], k[None, :])
        out = jnp.take_along_axis(out, idx[:, :, None], axis=1)
    delay = jnp.asarray(delay_table(cfg))[op, t1]
    return {"valid": active, "sid": dst, "width": w_out, "data": out, "delay": delay}
