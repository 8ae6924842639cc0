"""Lowering a jaxpr to chip work: every equation becomes VXM, SXM and MXM jobs on vectors in MEM.

Values. Some axes of a value run along the lanes (tiles of L lanes; normally the last, but attention keeps some
values transposed and a reshape may split the lanes into heads: `Val.ld`, `Val.nl`); every other axis indexes
vectors ("rows"). A lowered value (`Val`) is a tensor in MEM plus a view: `rows` (an int array over the row axes:
which tensor row each logical row reads; broadcasts, reshapes, transposes and slices of row axes only change this
array) and a lane kind: "full" (the lane axes are the tensor's columns) or "rep" (one number per row, the same in
every lane: a reduction result, a scalar input; a broadcast of it along lanes reads its one vector for every
tile). Values computed from literals and shapes alone (masks, iota) are folded at compile time into constants;
nothing that depends on a parameter or an input is computed off the chip. Temporaries' words are reused once no
live variable refers to them (`sweep`).

docs/numerics.md gives the numbers each primitive must produce; docs/compiler.md the instruction sequences.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import types

import jax
import numpy as np

from .. import fpmath
from ..isa import Instruction as I
from ..kernels.gemm import _blocks
from . import tiles
from .builder import Builder, Vec

__all__ = ["LoweringError", "Val", "Lowering"]

_LAYOUT_PRIMS = (
    "reshape",
    "transpose",
    "squeeze",
    "expand_dims",
    "broadcast_in_dim",
    "slice",
    "dynamic_slice",
    "gather",
    "concatenate",
    "rev",
)
_F = {"float32": "f32", "float16": "f16", "int8": "i8", "int32": "i32", "uint8": "u8", "int16": "i16", "bool": "i32"}
"""JAX dtype -> the chip's element type. A bool is held as an int32 1 or 0 (what the VXM's compares write)."""


class LoweringError(NotImplementedError):
    """A primitive, a shape or a dtype the compiler cannot put on the chip. The message names the primitive and
    the user's source line."""


def source_of(eqn) -> str:
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - older jax
        return "<unknown source>"


@dataclasses.dataclass
class Val:
    """A lowered value. tensor None: a compile-time constant (`const`) or a parameter not yet in MEM (`param`).

    Layout: the `nl` axes from `ld` on run along the lanes (flattened row-major: the tensor's columns); every other
    axis indexes vectors, and `rows` (int64 over those axes, `lead`) gives the tensor row of every logical row. A
    "full" value in the natural layout has its last axis along the lanes; attention keeps some values with
    another axis along the lanes (a transposed layout). A "rep" value holds one number per row, the same in every
    lane: its lane axes (if `ld` is not None) are broadcast, and a reduction result has none."""

    tensor: str | None
    shape: tuple
    dtype: str
    rows: np.ndarray | None = None  # int64 over `lead`: the tensor row of every logical row
    lanes: str = "full"  # "full" or "rep"
    ld: int | None = -1  # the first lane axis (-1: the last nl axes); rep: None when there is no lane axis
    nl: int = 1  # how many axes run along the lanes
    clean: bool = True  # full only: the padding lanes of the last tile hold zeros
    const: np.ndarray | None = None
    param: str | None = None  # the parameter's name, for values that are parameters (never folded)
    pending: dict | None = None  # a `round` (and clamps) waiting for its int8 conversion

    def __post_init__(self):
        if self.ld == -1:
            self.ld = len(self.shape) - self.nl if len(self.shape) >= self.nl else None

    @property
    def lane_axes(self) -> tuple:
        return () if self.ld is None else tuple(range(self.ld, self.ld + self.nl))

    @property
    def lead(self) -> tuple:
        la = self.lane_axes
        return tuple(d for i, d in enumerate(self.shape) if i not in la)

    @property
    def width(self) -> int:
        """The number of lanes the value's lane axes fill (1 for a value without lane axes)."""
        return int(np.prod([self.shape[i] for i in self.lane_axes])) if self.lane_axes else 1

    @property
    def natural(self) -> bool:
        """Whether the lanes are the trailing axes (the tensor's rows and columns are the row-major order)."""
        return self.ld is not None and self.ld + self.nl == len(self.shape)

    @property
    def is_const(self) -> bool:
        return self.tensor is None and self.param is None and self.pending is None

    def rows_full(self) -> np.ndarray:
        """`rows` as an array over the whole shape, with the lane axes of size 1."""
        r = np.asarray(self.rows)
        if r.ndim == 0:
            return r.reshape((1,) * len(self.shape))
        full = list(self.shape)
        for i in self.lane_axes:
            full[i] = 1
        return r.reshape(full)


def rows_for(v: Val, shape: tuple, ld: int | None, nl: int) -> np.ndarray | None:
    """v's rows over the lead axes of `shape` with lane axes (ld, nl), or None when v is not the same along those
    lanes (its lanes would have to become rows: a relayout)."""
    r = v.rows_full()
    r = r.reshape((1,) * (len(shape) - r.ndim) + r.shape)
    try:
        r = np.broadcast_to(r, tuple(1 if v.lanes == "full" and i in v.lane_axes else d for i, d in enumerate(shape)))
    except ValueError:
        return None
    if v.lanes == "full" and (v.ld, v.nl) != (ld, nl):
        return None
    lanes = () if ld is None else tuple(range(ld, ld + nl))
    for i in lanes:
        if r.shape[i] > 1:
            if np.any(r != np.take(r, [0], axis=i)):
                return None
            r = np.take(r, [0], axis=i)
    return r.reshape([d for i, d in enumerate(r.shape) if i not in lanes]) if lanes else r


class Lowering:
    """Walks a ClosedJaxpr and places its work with a `Builder`."""

    def __init__(self, cfg, builder: Builder):
        self.cfg = cfg
        self.b = builder
        self.n = 0
        self._consts: dict = {}
        self._weights: dict = {}
        self._params: dict = {}
        self.zero_words: dict = {}  # slice -> tiles.Row: a zero byte word in that slice
        self.refs: collections.Counter = collections.Counter()  # tensor -> live variables referring to it
        self.pinned: set = set()  # tensors kept to the end (cached results)
        self.released: set = set()
        self.inplace: set = set()  # input tensors updated in place (dynamic_update_slice): states such as a KV cache
        self._unreferenced: list = []
        self._swept = 0
        self.source = ""

    # ------------------------------------------------------------------ names, constants, parameters
    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def err(self, msg: str) -> LoweringError:
        return LoweringError(f"{msg} (at {self.source})")

    @staticmethod
    def const_val(c) -> Val:
        return _const(c)

    def on_chip(self, v: Val) -> Val:
        """The value in MEM: constants as splat vectors or rows (role const), parameters as rows (role param)."""
        if v.pending is not None:
            raise self.err("`round` is supported only as part of an int8 quantisation: round, clamp, convert to int8")
        if v.tensor is not None:
            return v
        c = np.asarray(v.const)
        if c.dtype == np.bool_:
            c = c.astype(np.int32)
        dt = _F.get(str(c.dtype))
        if dt is None:
            raise self.err(f"a {c.dtype} value cannot be placed on the chip")
        if v.param is None:  # constants are shared by value, parameters by name
            cache, key, role, base = self._consts, (c.dtype.str, c.shape, c.tobytes()), "const", "const"
            splat = c.size >= 1 and bool(np.all(c == c.reshape(-1)[0]))
        else:
            cache, key, role, base = self._params, v.param, "param", v.param
            splat = c.ndim == 0
        if key in cache:
            return cache[key]
        t = self.name(base + "_")
        if splat:  # one vector with the value in every lane, read for every row and tile
            self.b.alloc(t, (1, self.cfg.n_lanes), dt, role, np.full((1, self.cfg.n_lanes), c.reshape(-1)[0], c.dtype))
            out = Val(t, v.shape, dt, np.zeros((), np.int64), "rep", ld=None)
        else:
            x = c.reshape(-1, c.shape[-1])
            self.b.alloc(t, x.shape, dt, role, x)
            out = Val(t, v.shape, dt, np.arange(x.shape[0]).reshape(c.shape[:-1]), "full", clean=True)
        cache[key] = out
        return out

    def new_full(self, shape, dtype: str, role="temp", clean=True, ld: int | None = -1, nl: int = 1) -> Val:
        shape = tuple(int(x) for x in shape)
        v = Val(None, shape, dtype, ld=ld, nl=nl)
        R = int(np.prod(v.lead)) if v.lead else 1
        t = self.name("t")
        self.b.alloc(t, (R, v.width), dtype, role)
        return dataclasses.replace(v, tensor=t, rows=np.arange(R).reshape(v.lead), clean=clean)

    def new_rep(self, shape, dtype: str, ld: int | None = None, nl: int = 1, role="temp") -> Val:
        shape = tuple(int(x) for x in shape)
        v = Val(None, shape, dtype, lanes="rep", ld=ld, nl=nl)
        R = int(np.prod(v.lead)) if v.lead else 1
        t = self.name("r")
        self.b.alloc(t, (R, 1), dtype, role, replicated=True)
        return dataclasses.replace(v, tensor=t, rows=np.arange(R).reshape(v.lead))

    # ------------------------------------------------------------------ vectors of a value
    def vec(self, v: Val, idx: tuple, t: int) -> Vec:
        """The vector of value v for output row `idx` (over the output's leading axes) and lane tile t."""
        r = int(v.rows[idx[len(idx) - v.rows.ndim :]])  # rows broadcast against the trailing axes of idx
        return self.b.vec(v.tensor, r, 0 if v.lanes == "rep" else t)

    def tiles(self, v: Val) -> int:
        if v.lanes == "rep":
            return 1
        return max(1, math.ceil(v.width / self.cfg.n_lanes))

    # ------------------------------------------------------------------ the walk
    def run(self, closed, args: list[Val]) -> list[Val]:
        """Lower a ClosedJaxpr applied to `args`; returns the output values."""
        return self._run_inner(closed.jaxpr, [_const(c) for c in closed.consts], args)

    def eqn(self, eqn, ins: list[Val]) -> list[Val]:
        prim = eqn.primitive.name
        p = eqn.params
        if prim in ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat"):
            sub = p.get("jaxpr") or p.get("call_jaxpr") or p.get("fun_jaxpr")
            closed = sub if hasattr(sub, "jaxpr") else None
            inner = closed.jaxpr if closed is not None else sub
            consts = [_const(c) for c in (closed.consts if closed is not None else [])]
            env_outer = self.source
            inner_vals = self._run_inner(inner, consts, ins)
            self.source = env_outer
            return inner_vals
        if all(v.is_const for v in ins):  # shapes and literals only (iota, masks): folded at compile time
            with jax.default_device(jax.devices("cpu")[0]):
                outs = eqn.primitive.bind(*[v.const for v in ins], **p)
            outs = outs if eqn.primitive.multiple_results else [outs]
            return [_const(o) for o in outs]
        # layout-only ops on parameters (constant indices) stay parameters: a relayout is placement, not computation
        if (
            prim in _LAYOUT_PRIMS
            and ins[0].param is not None
            and ins[0].tensor is None
            and all(v.is_const for v in ins[1:])
        ):
            with jax.default_device(jax.devices("cpu")[0]):
                out = eqn.primitive.bind(ins[0].const, *[v.const for v in ins[1:]], **p)
            return [Val(None, tuple(out.shape), ins[0].dtype, const=np.asarray(out), param=f"{ins[0].param}.{prim}")]
        handler = getattr(self, "p_" + prim, None)
        if handler is None:
            raise self.err(f"the compiler does not support the primitive `{prim}`")
        out = handler(eqn, *ins)
        return out if isinstance(out, list) else [out]

    def _run_inner(self, jaxpr, consts, args):
        """Lower the equations in order. Memory: every tensor counts the live variables that refer to it; after
        each equation the temporaries nothing refers to any more are released (`sweep`), so their words can hold
        later tensors. The caller binds the results before the next sweep."""
        Literal = jax.extend.core.Literal
        env: dict = {}
        last: dict = {}  # variable -> index of the last equation that reads it
        for i, e in enumerate(jaxpr.eqns):
            for a in e.invars:
                if not isinstance(a, Literal):
                    last[a] = i
        keep = {a for a in jaxpr.outvars if not isinstance(a, Literal)}

        def read(a):
            return _const(a.val) if isinstance(a, Literal) else env[a]

        def bind(var, v):
            env[var] = v
            if v.tensor is not None:
                self.refs[v.tensor] += 1

        def drop(var):
            v = env.pop(var)
            if v.tensor is not None:
                self.refs[v.tensor] -= 1
                if self.refs[v.tensor] == 0:
                    self._unreferenced.append(v.tensor)

        for var, c in zip(jaxpr.constvars, consts):
            bind(var, c)
        for var, v in zip(jaxpr.invars, args):
            bind(var, v)
        for i, e in enumerate(jaxpr.eqns):
            ins = [read(a) for a in e.invars]
            self.source = source_of(e)
            for var, v in zip(e.outvars, self.eqn(e, ins)):
                bind(var, v)
            for a in {a for a in (*e.invars, *e.outvars) if not isinstance(a, Literal)}:
                if a in env and last.get(a, -1) <= i and a not in keep:
                    drop(a)
            self.sweep()
        out = [read(a) for a in jaxpr.outvars]
        for var in list(env):
            drop(var)
        return out

    def sweep(self) -> None:
        """Release the temporaries made since the last sweep, or left without references, that nothing refers
        to (values are bound to variables; cached results are pinned)."""
        b = self.b
        cands = b.created[self._swept :] + self._unreferenced
        self._swept = len(b.created)
        self._unreferenced = []
        for name in cands:
            info = b.sched.tensors.get(name)
            if info is not None and info.role == "temp" and self.refs[name] == 0 and name not in self.pinned:
                if name not in self.released:
                    self.released.add(name)
                    b.release(name)

    # ------------------------------------------------------------------ element-wise
    _KEEPS_ZERO = {"add", "sub", "mul", "max", "min", "tanh", "convert", "select"}

    def elementwise(self, op: str, mnemonic: str, ins: list[Val], out_dtype: str, shape=None) -> Val:
        """One VXM instruction per output vector: out = op(ins) lane by lane. Operands have the output's shape
        (or are scalars); the output takes the layout of its first full operand (else of its first replicated
        one with lane axes), and a replicated operand meets it by reading its one vector for every tile."""
        ins = [self.on_chip(v) for v in ins]
        shape = tuple(int(d) for d in (shape if shape is not None else max((v.shape for v in ins), key=len)))
        fulls = sorted((v for v in ins if v.lanes == "full"), key=lambda v: v.shape != shape)  # stable
        laned = [v for v in ins if v.lanes == "rep" and v.ld is not None and v.shape == shape]
        ld, nl = (fulls[0].ld, fulls[0].nl) if fulls else (laned[0].ld, laned[0].nl) if laned else (None, 1)
        fixed = []
        for v in ins:
            if v.shape and v.shape != shape and len(v.shape) == len(shape):  # size-1 axes broadcast
                v = self.broadcast(v, shape, tuple(range(len(shape))))
            rows = rows_for(v, shape, ld, nl)
            if rows is None and v.lanes == "full" and v.shape == shape:
                v = self.lanes_to_rows(v, ld, nl)
                rows = rows_for(v, shape, ld, nl)
            if rows is None:
                raise self.err(f"operand shapes {[u.shape for u in ins]} do not broadcast to {shape} in one layout")
            fixed.append(dataclasses.replace(v, shape=shape, rows=rows, ld=ld, nl=nl))
        ins = fixed
        if fulls:
            w = ins[0].width
            clean = w % self.cfg.n_lanes == 0 or (
                op in self._KEEPS_ZERO and all(v.lanes == "full" and v.clean for v in ins)
            )
            out = self.new_full(shape, out_dtype, clean=clean, ld=ld, nl=nl)
        else:
            out = self.new_rep(shape, out_dtype, ld=ld, nl=nl)
        self.place_elementwise(mnemonic, ins, out)
        return out

    def place_elementwise(self, mnemonic: str, ins: list[Val], out: Val, what=None):
        b = self.b
        what = what or f"{mnemonic} at {self.source}"
        T = self.tiles(out)
        lead = out.lead
        for idx in np.ndindex(*lead):
            r = int(out.rows[idx])
            for t in range(T):
                srcs = [self.vec(v, idx, t) for v in ins]
                _, _, writes, end = b.vxm(mnemonic, srcs, b.out_words(out.tensor, r, t), what)
                b.done(out.tensor, r, t, end, writes)

    def p_add(self, eqn, x, y):
        return self.binary(eqn, "add", x, y)

    def p_sub(self, eqn, x, y):
        return self.binary(eqn, "sub", x, y)

    def p_mul(self, eqn, x, y):
        return self.binary(eqn, "mul", x, y)

    def p_max(self, eqn, x, y):
        if x.pending is not None or y.pending is not None:
            return self.clamp_pending(x, y, "lo")
        return self.binary(eqn, "max", x, y)

    def p_min(self, eqn, x, y):
        if x.pending is not None or y.pending is not None:
            return self.clamp_pending(x, y, "hi")
        return self.binary(eqn, "min", x, y)

    def binary(self, eqn, op, x, y):
        """float32 arithmetic, or int32 (add, sub, mul wrap around; max, min): the VXM's and lax's agree."""
        dt = _F.get(str(eqn.outvars[0].aval.dtype))
        if dt != "f32" and not (dt == "i32" and str(eqn.outvars[0].aval.dtype) == "int32"):
            raise self.err(f"`{op}` on {dt} is not supported (element-wise arithmetic runs in float32 or int32)")
        self.b.begin(op, self.source)
        return self.elementwise(op, f"{op}.{dt}", [x, y], dt, eqn.outvars[0].aval.shape)

    def unary(self, eqn, op, x):
        dt = _F.get(str(eqn.outvars[0].aval.dtype))
        if dt != "f32":
            raise self.err(f"`{op}` on {dt} is not supported (element-wise arithmetic runs in float32)")
        self.b.begin(op, self.source)
        return self.elementwise(op, f"{op}.f32", [x], dt, eqn.outvars[0].aval.shape)

    def p_neg(self, eqn, x):
        return self.unary(eqn, "neg", x)

    def p_exp(self, eqn, x):
        return self.unary(eqn, "exp", x)

    def p_tanh(self, eqn, x):
        return self.unary(eqn, "tanh", x)

    def p_rsqrt(self, eqn, x):
        return self.unary(eqn, "rsqrt", x)

    def p_div(self, eqn, x, y):
        # docs/numerics.md: div(a, b) = mul(a, recip(b))
        if str(eqn.outvars[0].aval.dtype) != "float32":
            raise self.err(f"`div` on {eqn.outvars[0].aval.dtype} is not supported (float32 only)")
        if y.is_const:
            r = Val(None, y.shape, y.dtype, const=np.asarray(fpmath.recip_f32(np.asarray(y.const, np.float32))))
        else:
            self.b.begin("recip", self.source)
            r = self.elementwise("recip", "recip.f32", [y], "f32", y.shape)
        return self.binary(eqn, "mul", x, r)

    def p_integer_pow(self, eqn, x):
        n = eqn.params["y"]
        if n not in (2, 3):
            raise self.err(f"integer_pow with exponent {n} is not supported (only 2 and 3)")
        sq = self.binary(eqn, "mul", x, x)
        return sq if n == 2 else self.binary(eqn, "mul", sq, x)

    def p_round(self, eqn, x):
        if int(eqn.params["rounding_method"]) != int(jax.lax.RoundingMethod.TO_NEAREST_EVEN):
            raise self.err("`round` away from zero is not supported (the VXM rounds half to even)")
        return dataclasses.replace(x, pending={"src": x, "lo": None, "hi": None})

    def p_clamp(self, eqn, lo, x, hi):
        """lax.clamp(lo, x, hi): on a rounded value, part of an int8 quantisation; otherwise max then min."""
        if x.pending is not None:
            return self.clamp_pending(self.clamp_pending(x, lo, "lo"), hi, "hi")
        return self.binary(eqn, "min", self.binary(eqn, "max", x, lo), hi)

    def clamp_pending(self, x, y, which):
        v, c = (x, y) if x.pending is not None else (y, x)
        if not c.is_const or not np.all(c.const == np.asarray(c.const).flat[0]):
            raise self.err("`round` followed by a clamp with a non-constant bound is not supported")
        bound = float(np.asarray(c.const).flat[0])
        pend = dict(v.pending)
        pend[which] = bound
        return dataclasses.replace(v, pending=pend)

    def compare(self, eqn, op, x, y):
        """x op y for float32 or int32 operands: an int32 1 or 0 per element (the jaxpr's bool)."""
        dts = {v.dtype for v in (x, y)}
        if len(dts) != 1 or dts & {"f16", "i8", "u8", "i16"}:
            raise self.err(f"comparison `{op}` of {sorted(dts)} is not supported (float32 or int32 operands)")
        self.b.begin(op, self.source)
        return self.elementwise(op, f"{op}.{dts.pop()}", [x, y], "i32", eqn.outvars[0].aval.shape)

    def p_lt(self, eqn, x, y):
        return self.compare(eqn, "lt", x, y)

    def p_le(self, eqn, x, y):
        return self.compare(eqn, "le", x, y)

    def p_gt(self, eqn, x, y):
        return self.compare(eqn, "gt", x, y)

    def p_ge(self, eqn, x, y):
        return self.compare(eqn, "ge", x, y)

    def p_eq(self, eqn, x, y):
        return self.compare(eqn, "eq", x, y)

    def p_ne(self, eqn, x, y):
        return self.compare(eqn, "ne", x, y)

    def p_select_n(self, eqn, pred, *cases):
        """select_n(p, a, b): b where p, else a (a bool p; `select.T` on 4-byte types, whose predicate is the
        compare's int32 1 or 0)."""
        if len(cases) != 2 or str(eqn.invars[0].aval.dtype) != "bool":
            raise self.err("select_n is supported with a bool predicate and two cases (jnp.where)")
        dt = _F.get(str(eqn.outvars[0].aval.dtype))
        if dt not in ("f32", "i32"):
            raise self.err(f"select of {dt} values is not supported (float32 or int32)")
        self.b.begin("select", self.source)
        return self.elementwise("select", f"select.{dt}", [pred, cases[1], cases[0]], dt, eqn.outvars[0].aval.shape)

    def p_convert_element_type(self, eqn, x):
        to = _F.get(str(eqn.params["new_dtype"]))
        if x.pending is not None:
            if to != "i8":
                raise self.err("`round` is supported only when its result is converted to int8")
            return self.quantise(x)
        frm = x.dtype
        if to == frm:
            return x
        ok = {("f32", "f16"), ("f16", "f32"), ("i32", "f32"), ("i8", "f32"), ("f32", "i32"), ("i8", "i32")}
        if (frm, to) not in ok:
            raise self.err(f"conversion {frm} -> {to} is not supported")
        self.b.begin("convert", self.source)
        out = self.elementwise("convert", f"convert.{frm}.{to}", [x], to, x.shape)
        return out

    def quantise(self, x: Val) -> Val:
        """clip(round(v), lo, hi).astype(int8) -> [max.f32 v, lo] [min.f32 v, hi] convert.f32.i8 (the VXM's
        conversion rounds half to even and saturates to [-128, 127])."""
        pend = x.pending
        v = pend["src"]
        lo, hi = pend["lo"], pend["hi"]
        for bound, op in ((lo, "max"), (hi, "min")):
            if bound is None:
                continue
            if bound != round(bound):
                raise self.err("int8 quantisation with a non-integer clamp bound is not supported")
            limit = -128 if op == "max" else 127
            if (op == "max" and bound <= limit) or (op == "min" and bound >= limit):
                continue
            self.b.begin("quantise." + op, self.source)
            c = Val(None, (), "f32", const=np.float32(bound))
            v = self.elementwise(op, f"{op}.f32", [v, c], "f32", v.shape)
        self.b.begin("quantise", self.source)
        return self.elementwise("convert", "convert.f32.i8", [v], "i8", v.shape)

    # ------------------------------------------------------------------ shapes and views
    def p_broadcast_in_dim(self, eqn, x):
        shape, bd = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
        if x.pending is not None:
            raise self.err("`round` is supported only as part of an int8 quantisation")
        return self.broadcast(self.on_chip(x), shape, bd)

    def broadcast(self, x: Val, shape: tuple, bd: tuple) -> Val:
        """A view: x's axes go to `bd` of `shape`, the other axes (and size-1 ones) are broadcast by repeating
        rows. A full value's lane axes stay lane axes (they must keep their sizes); a replicated value without
        lane axes gains the last axis as its lane axis when that axis is new or was of size 1."""
        expand = [1] * len(shape)
        rf = x.rows_full()
        for i, d in enumerate(bd):
            expand[d] = rf.shape[i]
        if x.ld is not None:
            ld = bd[x.ld]
            if [bd[i] for i in x.lane_axes] != list(range(ld, ld + x.nl)):
                raise self.err(f"broadcast of {x.shape} to {shape} splits or reorders the lane axes")
            if x.lanes == "full" and any(shape[bd[i]] != x.shape[i] for i in x.lane_axes):
                raise self.err(f"broadcast of {x.shape} to {shape} along the lane axis of a non-replicated value")
            nl = x.nl
        elif shape and (len(shape) - 1 not in bd or x.shape[bd.index(len(shape) - 1)] == 1):
            ld, nl = len(shape) - 1, 1
        else:
            ld, nl = None, 1
        lanes = set() if ld is None else set(range(ld, ld + nl))
        target = tuple(1 if i in lanes else d for i, d in enumerate(shape))
        rows = np.broadcast_to(rf.reshape(expand), target)
        rows = rows.reshape([d for i, d in enumerate(target) if i not in lanes])
        return dataclasses.replace(x, shape=shape, rows=rows, ld=ld, nl=nl)

    def p_reshape(self, eqn, x):
        if eqn.params.get("dimensions") is not None:
            raise self.err("reshape with a dimension order is not supported")
        return self.reshape(x, tuple(eqn.params["new_sizes"]))

    def reshape(self, x, shape):
        """A view when the lane axes stay one block of axes between the same leading and trailing sizes (a split
        of the lanes into heads, a merge of row axes); otherwise an error."""
        x = self.on_chip(x)
        shape = tuple(int(d) for d in shape)
        if x.ld is None:
            return dataclasses.replace(x, shape=shape, rows=np.asarray(x.rows).reshape(shape), nl=1)
        before = int(np.prod(x.shape[: x.ld]))
        after = int(np.prod(x.shape[x.ld + x.nl :]))
        w = x.width
        for k in range(len(shape), -1, -1):  # the latest lane block first (a size-1 axis stays a row axis)
            if int(np.prod(shape[:k])) != before:
                continue
            for m in range(1, len(shape) - k + 1):
                if int(np.prod(shape[k : k + m])) == w and int(np.prod(shape[k + m :])) == after:
                    lead = shape[:k] + shape[k + m :]
                    return dataclasses.replace(x, shape=shape, rows=np.asarray(x.rows).reshape(lead), ld=k, nl=m)
        if x.lanes == "rep" and w == 1:
            return dataclasses.replace(x, shape=shape, rows=x.rows_full().reshape(shape), ld=None, nl=1)
        raise self.err(f"reshape {x.shape} -> {shape} moves data across the lanes (not supported)")

    def p_squeeze(self, eqn, x):
        shape = tuple(d for i, d in enumerate(x.shape) if i not in eqn.params["dimensions"])
        return self.reshape(x, shape)

    def p_expand_dims(self, eqn, x):
        return self.reshape(x, tuple(eqn.outvars[0].aval.shape))

    def p_copy(self, eqn, x):
        return x

    def p_slice(self, eqn, x):
        """A view when only axes that index vectors are sliced (a part of the lanes would need a lane shift)."""
        x = self.on_chip(x)
        start, limit = eqn.params["start_indices"], eqn.params["limit_indices"]
        strides = eqn.params["strides"] or (1,) * len(start)
        lanes = x.lane_axes  # a replicated value's lane axes are broadcast: any part of them is the same
        if x.lanes == "full" and any((start[i], limit[i], strides[i]) != (0, x.shape[i], 1) for i in lanes):
            raise self.err(f"slice of a {x.shape} value along its lanes is not supported")
        sl = tuple(slice(a, z, st) for a, z, st in zip(start, limit, strides))
        rows = np.broadcast_to(x.rows_full(), tuple(1 if i in lanes else d for i, d in enumerate(x.shape)))
        rows = rows[tuple(slice(None) if i in lanes else sl[i] for i in range(len(sl)))]
        shape = tuple(len(range(a, z, st)) for a, z, st in zip(start, limit, strides))
        keep = [d for i, d in enumerate(rows.shape) if i not in lanes]
        return dataclasses.replace(x, shape=shape, rows=rows.reshape(keep) if lanes else rows)

    def p_transpose(self, eqn, x):
        """A view: the axes permuted. Lane axes stay lanes (a full value may end up transposed: lanes not last)."""
        perm = tuple(eqn.params["permutation"])
        x = self.on_chip(x)
        shape = tuple(x.shape[i] for i in perm)
        rf = x.rows_full().transpose(perm)
        if x.ld is None:
            return dataclasses.replace(x, shape=shape, rows=rf)
        new = [perm.index(i) for i in x.lane_axes]
        if new != list(range(new[0], new[0] + x.nl)):
            raise self.err(f"transpose {perm} of a {x.shape} value reorders its lane axes (not supported)")
        rows = rf.reshape([d for i, d in enumerate(rf.shape) if i not in new])
        return dataclasses.replace(x, shape=shape, rows=rows, ld=new[0])

    # ------------------------------------------------------------------ reductions
    def p_reduce_sum(self, eqn, x):
        return self.reduce(eqn, x, "add")

    def p_reduce_max(self, eqn, x):
        return self.reduce(eqn, x, "max")

    def p_reduce_min(self, eqn, x):
        return self.reduce(eqn, x, "min")

    def p_argmax(self, eqn, x):
        """The first index of the maximum along the lanes: the maximum (a lane reduction), the lanes that equal it
        select their index (a float32 lane-index constant, exact below 2^24), the others +inf, then the minimum,
        converted to int32."""
        axes = tuple(eqn.params["axes"])
        x = self.on_chip(x)
        if x.dtype != "f32" or x.lanes != "full" or x.nl != 1 or axes != (x.ld,):
            raise self.err(f"argmax over axes {axes} of a {x.dtype} {x.shape} value is not supported (float32, lanes)")
        if _F.get(str(eqn.params["index_dtype"])) != "i32":
            raise self.err("argmax with an index type other than int32 is not supported")
        n = x.width
        if n >= 1 << 24:
            raise self.err(f"argmax over {n} lanes: indices must be exact in float32 (< 2^24)")
        m = self.lane_reduce(x, "max")
        m = dataclasses.replace(m, shape=x.shape, ld=x.ld, nl=1)  # the maximum of each row, in every lane
        self.b.begin("argmax", self.source)
        eq = self.elementwise("eq", "eq.f32", [x, m], "i32", x.shape)
        idx = self.broadcast(self.on_chip(self.const_val(np.arange(n, dtype=np.float32))), x.shape, (x.ld,))
        cand = self.elementwise("select", "select.f32", [eq, idx, self.const_val(np.float32(np.inf))], "f32", x.shape)
        first = self.lane_reduce(cand, "min")
        self.b.begin("argmax", self.source)
        return self.elementwise("convert", "convert.f32.i32", [first], "i32", first.shape)

    def reduce(self, eqn, x, op):
        axes = tuple(eqn.params["axes"])
        dt = _F.get(str(eqn.outvars[0].aval.dtype))
        if dt != "f32":
            raise self.err(f"reduction over {dt} is not supported (reductions run in float32)")
        x = self.on_chip(x)
        if len(axes) == 1 and x.lanes == "full" and axes[0] in x.lane_axes and x.nl == 1:
            return self.lane_reduce(x, op)
        if len(axes) == 1 and x.lanes == "full" and axes[0] not in x.lane_axes:
            return self.row_reduce(x, axes[0], op)
        raise self.err(f"reduction over axes {axes} of a {x.shape} value is not supported")

    def mask_padding(self, x: Val, fill: float) -> Val:
        """x with the padding lanes of its last tile set to `fill` (a select against a lane-mask constant)."""
        L, C = self.cfg.n_lanes, x.width
        if C % L == 0 or (fill == 0.0 and x.clean):
            return x
        npd = {"f32": np.float32, "f16": np.float16}[x.dtype]
        T = self.tiles(x)
        mask = np.zeros((1, T * L), npd)
        mask[0, :C] = 1
        m = self.on_chip(Val(None, (1, T * L), x.dtype, const=mask))
        z = self.on_chip(Val(None, (), x.dtype, const=npd(fill)))
        self.b.begin("mask", self.source)
        out = self.new_full(x.shape, x.dtype, clean=fill == 0.0, ld=x.ld, nl=x.nl)
        b = self.b
        for idx in np.ndindex(*x.lead):
            r = int(out.rows[idx])
            for t in range(T):
                if t < T - 1:
                    srcs = [self.vec(x, idx, t)]
                    _, _, w, end = b.vxm(f"mov.{x.dtype}", srcs, b.out_words(out.tensor, r, t), "mask (copy)")
                else:
                    srcs = [b.vec(m.tensor, 0, t), self.vec(x, idx, t), b.vec(z.tensor, 0, 0)]
                    _, _, w, end = b.vxm(f"select.{x.dtype}", srcs, b.out_words(out.tensor, r, t), "mask")
                b.done(out.tensor, r, t, end, w)
        return out

    def lane_reduce(self, x: Val, op: str) -> Val:
        """Sum (max) over the lanes of every row: the tiles combined in order, then log2 steps of a lane shift
        (Shift.down for sums, zero fill; Rotate.down for max) and an add (max); lane 0 ends with the total,
        which a Permute with an all-zero lane map copies to every lane (docs/numerics.md gives the order)."""
        cfg, b = self.cfg, self.b
        L = cfg.n_lanes
        x = self.mask_padding(x, {"add": 0.0, "max": float("-inf"), "min": float("inf")}[op])
        b.begin(f"reduce_{op}", self.source)
        T = self.tiles(x)
        w = min(x.width, L)
        lead = x.lead
        out = self.new_rep(lead, "f32", ld=None)
        zmaps = self.zero_maps()
        shift = "Shift.down" if op == "add" else "Rotate.down"
        steps = []
        k = 1
        while k < w:
            steps.append(k)
            k *= 2
        for idx in np.ndindex(*lead):
            r_out = int(out.rows[idx])
            acc = self.vec(x, idx, 0)
            for t in range(1, T):
                acc = self._vxm_new(f"{op}.f32", [acc, self.vec(x, idx, t)], f"reduce tile {t}")
            for k in steps:
                sh = self._sxm_new(shift, acc, None, k, f"reduce shift {k}")
                acc = self._vxm_new(f"{op}.f32", [acc, sh], f"reduce step {k}")
            # broadcast lane 0
            words = b.out_words(out.tensor, r_out, 0)
            writes, end = [], 0
            for j in range(4):
                src = Vec([acc.words[j]], acc.ready, acc.writers[j : j + 1])
                mp = next((m for m in zmaps if acc.words[j][0] not in m.slices), zmaps[0]).vec
                _, _, ws, e = b.sxm("Permute", src, mp, 0, [words[j]], "reduce broadcast")
                writes += ws
                end = max(end, e)
            b.done(out.tensor, r_out, 0, end, writes)
        return out

    def zero_maps(self):
        """All-zero Permute lane maps (uint16, 2 slices each) in three different slice pairs, so that a Permute can
        always take its map from slices other than its data byte's."""
        if not hasattr(self, "_zmaps"):
            L = self.cfg.n_lanes
            self._zmaps = []
            used: set = set()
            for k in range(3):
                t = self.name("zmap")
                self.b.alloc(t, (1, L), "i16", "const", np.zeros((1, L), np.int16), side=k % 2, avoid=used)
                v = self.b.vec(t, 0, 0)
                sl = {s for s, _ in v.words}
                used |= sl
                self._zmaps.append(types.SimpleNamespace(vec=v, slices=sl))
        return self._zmaps

    def _scratch(self, dtype: str, rows: int = 1, side=None) -> str:
        t = self.name("s")
        self.b.alloc(t, (rows, self.cfg.n_lanes), dtype, "temp", side=side)
        return t

    def _vxm_new(self, mnemonic, srcs, what, side=None) -> Vec:
        """One VXM job into a fresh one-vector scratch tensor (in hemisphere `side` if given); returns it."""
        b = self.b
        dt = mnemonic.split(".")[-1]
        t = self._scratch(dt, side=side)
        _, _, ws, end = b.vxm(mnemonic, srcs, b.out_words(t, 0, 0), f"{what} at {self.source}")
        b.done(t, 0, 0, end, ws)
        return b.vec(t, 0, 0)

    def _sxm_new(self, mnemonic, src: Vec, extra, n, what) -> Vec:
        """The same SXM lane instruction on each byte of `src` (one unit instruction per byte) into scratch."""
        b = self.b
        t = self._scratch("f32" if len(src.words) == 4 else {1: "i8", 2: "f16"}[len(src.words)])
        words = b.out_words(t, 0, 0)
        writes, end = [], 0
        for j in range(len(src.words)):
            one = Vec([src.words[j]], src.ready, src.writers[j : j + 1])
            _, _, ws, e = b.sxm(mnemonic, one, extra, n, [words[j]], f"{what} at {self.source}")
            writes += ws
            end = max(end, e)
        b.done(t, 0, 0, end, writes)
        return b.vec(t, 0, 0)

    def row_reduce(self, x: Val, axis: int, op: str) -> Val:
        """Sum (max) over an axis that indexes vectors: whole vectors combined pairwise, v = v[0::2] + v[1::2]
        (zero-padded to a power of two), log2 n deep. When that axis is the value's last (a transposed layout),
        the order is the lane reduction's (docs/numerics.md): first every L-th vector added in order (the lane
        tiles), then the tree over the first min(n, L)."""
        b, L = self.b, self.cfg.n_lanes
        b.begin(f"reduce_{op}_rows", self.source)
        shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
        ld = x.ld - 1 if axis < x.ld else x.ld
        out = self.new_full(shape, "f32", clean=x.clean, ld=ld, nl=x.nl)
        T = self.tiles(x)
        n = x.shape[axis]
        p = axis - (x.nl if axis > x.ld else 0)  # the axis among x's lead axes
        zero = self.on_chip(Val(None, (), "f32", const=np.float32({"add": 0.0, "max": -np.inf, "min": np.inf}[op])))
        zv = b.vec(zero.tensor, 0, 0)
        as_lanes = axis == len(x.shape) - 1 and n > L
        w = min(n, L) if axis == len(x.shape) - 1 else n
        npow = 1 << max(0, (w - 1).bit_length())
        for idx in np.ndindex(*out.lead):
            r_out = int(out.rows[idx])
            for t in range(T):
                vs = [self.vec(x, idx[:p] + (i,) + idx[p:], t) for i in range(w)]
                if as_lanes:  # the lane tiles, in order: part j = x[j] + x[j + L] + ... (the last tile zero-padded)
                    for k in range(1, math.ceil(n / L)):
                        vs = [
                            self._vxm_new(
                                f"{op}.f32",
                                [v, self.vec(x, idx[:p] + (j + k * L,) + idx[p:], t) if j + k * L < n else zv],
                                "row reduce (tiles)",
                            )
                            for j, v in enumerate(vs)
                        ]
                vs += [zv] * (npow - len(vs))
                while len(vs) > 2:
                    vs = [self._vxm_new(f"{op}.f32", vs[i : i + 2], "row reduce") for i in range(0, len(vs), 2)]
                mn = f"{op}.f32" if len(vs) == 2 else "mov.f32"
                _, _, ws, end = b.vxm(mn, vs, b.out_words(out.tensor, r_out, t), f"row reduce at {self.source}")
                b.done(out.tensor, r_out, t, end, ws)
        return out

    # ------------------------------------------------------------------ matrix products
    def p_dot_general(self, eqn, x, w):
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        pet = eqn.params.get("preferred_element_type")
        out_dt = _F.get(str(eqn.outvars[0].aval.dtype))
        kinds = (x.dtype, w.dtype, out_dt)
        if kinds == ("i8", "i8", "i32"):
            f16 = False
        elif kinds == ("f16", "f16", "f32"):
            f16 = True
        else:
            raise self.err(
                f"matrix product {kinds[0]} x {kinds[1]} -> {kinds[2]} is not supported (int8 x int8 -> "
                f"int32 or float16 x float16 -> float32; preferred_element_type={pet})"
            )
        dims = (tuple(lc), tuple(rc), tuple(lb), tuple(rb))
        if lb or rb:
            if dims == ((2,), (2,), (1,), (1,)) and len(x.shape) == len(w.shape) == 3:
                return self.attention_scores(x, w, f16, out_dt)
            if dims == ((0,), (2,), (1,), (0,)) and len(x.shape) == len(w.shape) == 3:
                return self.attention_context(x, w, f16, out_dt)
            raise self.err(
                f"dot_general {x.shape} x {w.shape} with dimension numbers {dims} is not supported (with batch "
                "dimensions: attention's einsums qhd,khd->hqk and hqk,khd->qhd)"
            )
        if w.param is None or w.tensor is not None:
            raise self.err("the right operand of a matrix product must be a parameter (weights in MEM)")
        if tuple(lc) != (len(x.shape) - 1,) or len(w.shape) != 2 or tuple(rc) not in ((0,), (1,)):
            raise self.err(f"dot_general {x.shape} x {w.shape} contracting {lc}, {rc} is not supported")
        wv = np.asarray(w.const)
        if tuple(rc) == (1,):
            wv = wv.T
        x = self.natural(self.on_chip(x))
        if x.lanes != "full" or x.nl != 1:
            raise self.err("the left operand of a matrix product must be a full tensor with its last axis on lanes")
        if f16:
            x = self.mask_padding(x, 0.0)
        key = (w.param, rc)
        if key not in self._weights:
            name = self.name(w.param + "_w")
            self.b.alloc_weights(name, np.ascontiguousarray(wv), f16)
            self._weights[key] = name
        wname = self._weights[key]
        self.b.begin(
            "matmul",
            self.source,
            shape=(int(np.prod(x.lead)) if x.lead else 1, wv.shape[0], wv.shape[1]),
            dtype="f16" if f16 else "i8",
        )
        shape = tuple(x.shape[:-1]) + (wv.shape[1],)
        out = self.new_full(shape, out_dt, clean=True)
        a_rows = np.asarray(x.rows).reshape(-1)
        self.b.matmul(x.tensor, wname, out.tensor, f16, f"matmul at {self.source}", a_rows=a_rows)
        return out

    # ------------------------------------------------------------------ attention
    def _heads(self, v: Val, f16: bool, what: str) -> tuple:
        """(T, H, dh) of a value [T, H, dh] whose heads split its lanes; every head inside one MXM K tile."""
        v = self.on_chip(v)
        if v.lanes != "full" or (v.ld, v.nl) != (1, 2):
            raise self.err(f"{what} {v.shape} must be a [T, D] tensor split into heads along its lanes")
        T, H, dh = v.shape
        kd = self.cfg.n_lanes // 2 if f16 else self.cfg.n_lanes
        if kd % dh:
            raise self.err(f"head size {dh} does not divide the MXM depth {kd}: a head would straddle two K tiles")
        return v, T, H, dh

    def transposed_rows(self, v: Val, R: int, what: str) -> str:
        """The tensor Y [width, R] = (v's rows 0..R-1)^T."""
        self.b.begin("transpose", self.source, shape=(R, v.width))
        rows = np.asarray(v.rows).reshape(-1)
        return tiles.transpose(
            self, lambda i, J: self.b.vec(v.tensor, int(rows[i]), J), R, v.width, v.dtype, f"{what} at {self.source}"
        )

    def attention_scores(self, q: Val, k: Val, f16: bool, out_dt: str) -> Val:
        """s[h, i, j] = q[i, h, :] . k[j, h, :], kept transposed: rows (h, j), lanes i (the softmax over j then
        combines whole vectors). Per head, the MXM holds Q^T's rows of that head (the other rows zero) and the
        key rows stream through it."""
        q, Tq, H, dh = self._heads(q, f16, "the queries")
        k, Tk, H2, dh2 = self._heads(k, f16, "the keys")
        if (H2, dh2) != (H, dh):
            raise self.err(f"queries {q.shape} and keys {k.shape} have different heads")
        if f16:
            k = self.mask_padding(k, 0.0)  # 0 x (garbage) would be NaN for a non-finite fp16 pattern
        cfg, b, L = self.cfg, self.b, self.cfg.n_lanes
        kd = L // 2 if f16 else L
        w = 2 if f16 else 1
        qt = self.transposed_rows(q, Tq, "queries^T")
        b.begin("matmul", self.source, shape=(H * Tk, dh, Tq), dtype="f16" if f16 else "i8", attention="scores")
        out = self.new_full((H, Tq, Tk), out_dt, clean=not f16, ld=1)
        units = []
        for h in range(H):
            tile, off = divmod(h * dh, L)
            half, r_in = divmod(off, kd)
            for n in range(math.ceil(Tq / L)):
                wrows = [None] * L
                for d in range(dh):
                    for bp, row in enumerate(tiles.byte_rows(b.vec(qt, h * dh + d, n))):
                        wrows[(r_in + d) * w + bp] = row
                for m0, m1 in _blocks(Tk, cfg.mxm_acc_rows):
                    avecs = [self.vec(k, (j,), tile) for j in range(m0, m1)]
                    outs = [(out.tensor, int(out.rows[h, j]), n) for j in range(m0, m1)]
                    units.append(([(wrows, half, avecs)], outs))
        tiles.mxm_pass(self, units, f16, f"attention scores at {self.source}")
        return out

    def attention_context(self, v: Val, p: Val, f16: bool, out_dt: str) -> Val:
        """c[h, d, i] = sum_j v[j, h, d] p[h, i, j], with p in the scores' transposed layout (rows (h, j), lanes
        i): per head, the MXM holds p's rows of that head (keys along the K axis, the other rows zero) and V^T's
        rows of that head stream through it. The result has rows (h, d) and lanes i."""
        v, Tk, H, dh = self._heads(v, f16, "the values")
        p = self.on_chip(p)
        if p.lanes != "full" or (p.ld, p.nl) != (1, 1) or p.shape[0] != H or p.shape[2] != Tk:
            raise self.err(
                f"attention probabilities {p.shape} must come from the compiler's attention scores (rows "
                "(head, key), lanes query)"
            )
        Tq = p.shape[1]
        cfg, b, L = self.cfg, self.b, self.cfg.n_lanes
        kd = L // 2 if f16 else L
        w = 2 if f16 else 1
        vt = self.transposed_rows(v, Tk, "values^T")
        b.begin("matmul", self.source, shape=(H * dh, Tk, Tq), dtype="f16" if f16 else "i8", attention="context")
        out = self.new_full((H, dh, Tq), out_dt, clean=False)
        units = []
        for h in range(H):
            for n in range(math.ceil(Tq / L)):
                wtiles = []
                for kt in range(math.ceil(Tk / kd)):
                    wrows = [None] * L
                    for j in range(kt * kd, min(Tk, (kt + 1) * kd)):
                        for bp, row in enumerate(tiles.byte_rows(b.vec(p.tensor, int(p.rows[h, j]), n))):
                            wrows[(j - kt * kd) * w + bp] = row
                    wtiles.append((wrows, *divmod(kt, 2)) if f16 else (wrows, kt, 0))
                for m0, m1 in _blocks(dh, cfg.mxm_acc_rows):
                    ksteps = [
                        (wr, half, [b.vec(vt, h * dh + d, tile) for d in range(m0, m1)]) for wr, tile, half in wtiles
                    ]
                    outs = [(out.tensor, int(out.rows[h, d]), n) for d in range(m0, m1)]
                    units.append((ksteps, outs))
        tiles.mxm_pass(self, units, f16, f"attention context at {self.source}")
        return out

    def natural(self, x: Val) -> Val:
        """x [A, B] held transposed (lanes A, rows B) brought to the natural layout by a transpose on the chip."""
        if x.lanes != "full" or x.natural:
            return x
        if x.nl != 1 or len(x.shape) != 2 or x.ld != 0:
            raise self.err(f"a {x.shape} value with lane axes {x.lane_axes} cannot be brought to rows x lanes")
        A, B = x.shape
        y = self.transposed_rows(x, B, "relayout")
        return Val(y, (A, B), x.dtype, np.arange(A), "full", clean=True)

    def lanes_to_rows(self, v: Val, ld: int | None, nl: int) -> Val:
        """A full value used where its lane axis indexes rows (a key bias added to transposed attention scores):
        every (row, lane) of it that is used becomes a vector with that number in every lane (an SXM Permute
        with an all-equal lane map, byte by byte). Returns a replicated value with lane axes (ld, nl)."""
        lanes = set() if ld is None else set(range(ld, ld + nl))
        if v.nl != 1 or v.ld in lanes:
            raise self.err(f"a {v.shape} operand would need a transposition to meet the other operands' layout")
        a = v.ld
        rf = np.broadcast_to(v.rows_full(), tuple(1 if i == a else d for i, d in enumerate(v.shape)))
        for i in sorted(lanes):
            if np.any(rf != np.take(rf, [0], axis=i)):
                raise self.err(f"a {v.shape} operand differs along the lanes of the other operands' layout")
            rf = np.take(rf, [0], axis=i)
        lane_idx = np.arange(v.shape[a]).reshape([-1 if i == a else 1 for i in range(len(v.shape))])
        shp = np.broadcast_shapes(rf.shape, lane_idx.shape)
        pairs = np.stack([np.broadcast_to(rf, shp), np.broadcast_to(lane_idx, shp)], -1)
        keep = [i for i in range(len(v.shape)) if i not in lanes]
        pairs = pairs.reshape([shp[i] for i in keep] + [2])
        uniq, inv = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
        key = ("rows", v.tensor, uniq.tobytes())
        if key not in self._consts:
            L, b = self.cfg.n_lanes, self.b
            maps = self.on_chip(self.const_val(np.repeat(np.arange(L, dtype=np.int16)[:, None], L, 1)))
            b.begin("lanes_to_rows", self.source)
            rep = self.new_rep((len(uniq),), v.dtype, ld=None)
            for i, (r, j) in enumerate(uniq):
                src = b.vec(v.tensor, int(r), int(j) // L)
                words = b.out_words(rep.tensor, i, 0)
                writes, end = [], 0
                for bp in range(len(src.words)):
                    one = Vec([src.words[bp]], src.ready, src.writers[bp : bp + 1])
                    _, _, ws, e = b.sxm(
                        "Permute", one, b.vec(maps.tensor, int(j) % L, 0), 0, [words[bp]], "lanes to rows"
                    )
                    writes += ws
                    end = max(end, e)
                b.done(rep.tensor, i, 0, end, writes)
            self._consts[key] = rep.tensor
            self.pinned.add(rep.tensor)  # shared by every later use (the key bias of each layer)
        rows = inv.reshape(pairs.shape[:-1])
        return Val(self._consts[key], v.shape, v.dtype, rows, "rep", ld=ld, nl=nl)

    # ------------------------------------------------------------------ embedding lookups
    def p_gather(self, eqn, table, idx):
        """table[ids] for a parameter table [V, D] and int32 ids [N] (jnp.take(table, ids, axis=0, mode="clip")):
        per id, a vector with the id in every lane (`lanes_to_rows`), clamped to [0, V - 1] and turned into the
        row's address in each chunk of the table (`tiles.alloc_table`) by VXM int32 arithmetic; its low two bytes
        are the lane map of one MEM Gather per byte plane and lane tile. Chunks OR together (the others read a
        zero word)."""
        dn, sizes = eqn.params["dimension_numbers"], tuple(eqn.params["slice_sizes"])
        mode = str(eqn.params["mode"])
        ok = (
            table.param is not None
            and table.tensor is None
            and len(table.shape) == 2
            and tuple(dn.offset_dims) == (1,)
            and tuple(dn.collapsed_slice_dims) == (0,)
            and tuple(dn.start_index_map) == (0,)
            and sizes == (1, table.shape[1])
            and idx.dtype == "i32"
            and len(idx.shape) == 2
            and idx.shape[1] == 1
        )
        if not ok:
            raise self.err(
                "gather is supported as an embedding lookup only: jnp.take(table, ids, axis=0) of a "
                "parameter table [V, D] with int32 ids [N]"
            )
        if "CLIP" not in mode and "PROMISE" not in mode:
            raise self.err(f"gather mode {mode} is not supported (use mode='clip': out-of-range ids clamp)")
        N = idx.shape[0]
        idx = self.on_chip(idx)
        if idx.lanes == "rep":  # already one id per row, in every lane (a scalar token)
            rows = rows_for(idx, (N, 1), 1, 1)
            if rows is None:
                raise self.err("the ids of an embedding lookup vary along its lanes")
            ids = Val(idx.tensor, (N, 1), "i32", rows, "rep", ld=1)
        elif idx.ld == 0:
            ids = self.lanes_to_rows(idx, 1, 1)  # [N, 1]: row n holds id n in every lane
        else:
            raise self.err("the ids of an embedding lookup must be one vector of int32 (lanes along the ids)")
        return self.lookup(table, ids, N)

    def p_dynamic_slice(self, eqn, table, *starts):
        """lax.dynamic_slice(table, (i, 0), (1, D)) of a parameter table with a computed row i: the lookup of
        one row (the start clamps to [0, V - 1], as dynamic_slice's does)."""
        sizes = tuple(eqn.params["slice_sizes"])
        ok = (
            table.param is not None
            and table.tensor is None
            and len(table.shape) == 2
            and sizes == (1, table.shape[1])
            and len(starts) == 2
            and starts[1].is_const
            and int(np.asarray(starts[1].const)) == 0
            and starts[0].dtype == "i32"
        )
        if not ok:
            raise self.err("dynamic_slice is supported as one row (i, 0) of size (1, D) of a parameter table")
        i = self.on_chip(starts[0])
        if i.lanes != "rep" or i.shape != ():
            raise self.err("the row of a dynamic_slice must be a scalar")
        return self.lookup(table, Val(i.tensor, (1, 1), "i32", np.asarray(i.rows).reshape(1), "rep", ld=1), 1)

    def lookup(self, table: Val, ids: Val, N: int) -> Val:
        """Rows ids[n] (clamped to [0, V - 1]) of a parameter table [V, D]; ids: a replicated [N, 1] value, id n
        in every lane of its row n."""
        V, D = table.shape
        b, cfg = self.b, self.cfg
        key = ("table", table.param)
        if key not in self._weights:
            self._weights[key] = tiles.alloc_table(self, table.param, np.asarray(table.const))
        chunks = self._weights[key]
        dt = _F[str(np.asarray(table.const).dtype)]
        b.begin("gather", self.source, rows=N, chunks=len(chunks))
        out = self.new_full((N, D), dt, clean=True)
        T, w = self.tiles(out), len(b.out_words(out.tensor, 0, 0))
        i32 = lambda x: self.on_chip(self.const_val(np.int32(x))).tensor  # noqa: E731
        lo, hi = (0, 1) if cfg.group_byte_order == "little" else (2, 3)
        for n in range(N):
            v = self.vec(ids, (n,), 0)
            v = self._vxm_new("max.i32", [v, b.vec(i32(0), 0, 0)], "ids clamp")
            v = self._vxm_new("min.i32", [v, b.vec(i32(V - 1), 0, 0)], "ids clamp")
            parts = []  # per chunk: [tile][byte] -> Vec of the gathered byte
            for tname, r0, rows, a0 in chunks:
                lay = b.sched.tensors[tname].layout
                other = 1 - b.side_of(int(lay.slice[0, 0, 0]))  # the map's bytes reach every slice of the chunk
                clamp = r0 > 0 or r0 + rows < V  # ids outside this chunk read one of its zero words
                a = self._vxm_new(
                    "add.i32", [v, b.vec(i32(a0 + 1 - r0), 0, 0)], "row address", None if clamp else other
                )
                if clamp:
                    a = self._vxm_new("max.i32", [a, b.vec(i32(a0), 0, 0)], "row address clamp")
                    a = self._vxm_new("min.i32", [a, b.vec(i32(a0 + rows + 1), 0, 0)], "row address clamp", other)
                amap = Vec([a.words[lo], a.words[hi]], a.ready, a.writers[lo : hi + 1])
                banks = sorted(
                    {a0 // cfg.bank_words * cfg.bank_words, (a0 + rows + 1) // cfg.bank_words * cfg.bank_words}
                )
                got = []
                for t in range(T):
                    row = []
                    for bp in range(w):
                        ss = int(lay.slice[0, t, bp])
                        if len(chunks) == 1:
                            dst = [b.out_words(out.tensor, n, t)[bp]]
                        else:
                            dst = b.out_words(self._scratch("i8"), 0, 0)
                        _, _, ws, end = tiles.gather_job(self, ss, amap, dst, banks, f"gather at {self.source}")
                        if len(chunks) == 1:
                            tiles.byte_done(b, out.tensor, n, t, bp, end, ws[0])
                        row.append(Vec(dst, end, ws))
                    got.append(row)
                parts.append(got)
            if len(chunks) > 1:
                for t in range(T):
                    for bp in range(w):
                        vs = [pt[t][bp] for pt in parts]
                        while len(vs) > 2:
                            vs = [
                                self._vxm_new("or.u8", vs[i : i + 2], "chunk merge") if i + 1 < len(vs) else vs[i]
                                for i in range(0, len(vs), 2)
                            ]
                        dst = [b.out_words(out.tensor, n, t)[bp]]
                        mn = "or.u8" if len(vs) == 2 else "mov.u8"
                        _, _, ws, end = b.vxm(mn, vs, dst, f"gather merge at {self.source}")
                        tiles.byte_done(b, out.tensor, n, t, bp, end, ws[0])
        return out

    # ------------------------------------------------------------------ state updated in place
    def p_dynamic_update_slice(self, eqn, x, upd, *starts):
        """x with one row replaced at a computed index (the decoder's KV cache write): x must be an input held
        for in-place updates (`compile_fn` finds them), the update one row of x's width, every start index but
        the row's a constant. Per lane tile and byte plane, one MEM `Scatter` puts the update's bytes at the row's
        address, computed on the chip from the index (clamped like dynamic_update_slice's); the result is the
        same tensor, whose rows can be read once the scatters have committed."""
        b, cfg = self.b, self.cfg
        x = self.on_chip(x)
        info = b.sched.tensors.get(x.tensor)
        dyn = [k for k, v in enumerate(starts) if not v.is_const]
        lead = x.lead
        ok = (
            info is not None
            and x.tensor in self.inplace
            and x.lanes == "full"
            and x.natural
            and x.nl == 1
            and len(dyn) == 1
            and dyn[0] < len(x.shape) - 1
            and all(upd.shape[k] == 1 for k in range(len(x.shape) - 1))
            and upd.shape[-1] == x.shape[-1]
            and upd.dtype == x.dtype
        )
        if not ok:
            raise self.err(
                "dynamic_update_slice is supported as one row of an input state (the KV cache) at a computed index"
            )
        starts_c = [0 if k in dyn else int(np.asarray(v.const)) for k, v in enumerate(starts)]
        d = dyn[0]
        stride = int(np.prod(lead[d + 1 :])) if d + 1 < len(lead) else 1  # rows per step of the dynamic index
        base_row = int(np.ravel_multi_index(tuple(starts_c[: len(lead)]), lead))
        if np.asarray(x.rows).reshape(-1).tolist() != list(range(int(np.prod(lead)))):
            raise self.err("dynamic_update_slice of a view of an input state is not supported")
        upd = self.on_chip(upd)
        T, lay = self.tiles(x), info.layout
        w = lay.slice.shape[-1]
        i = self.on_chip(starts[d])
        if i.lanes != "rep" or i.shape != ():
            raise self.err("the index of a dynamic_update_slice must be a scalar")
        b.begin("scatter", self.source)
        i32 = lambda v: b.vec(self.on_chip(self.const_val(np.int32(v))).tensor, 0, 0)  # noqa: E731
        iv = self._vxm_new("max.i32", [b.vec(i.tensor, int(i.rows), 0), i32(0)], "index clamp")
        iv = self._vxm_new("min.i32", [iv, i32(lead[d] - 1)], "index clamp")
        lo, hi = (0, 1) if cfg.group_byte_order == "little" else (2, 3)
        dS = cfg.delay("Scatter")
        urow = int(np.asarray(upd.rows).reshape(-1)[0])
        commits = 0
        extra = dS - cfg.delay("Write")  # a Write issued this much later would commit in the scatter's cycle
        if extra < 0:
            raise self.err("a Scatter that commits before a Write issued with it is not supported")
        maps: dict = {}
        for t in range(T):
            src = b.vec(upd.tensor, urow, t)
            for bp in range(w):
                ss, a0 = int(lay.slice[0, t, bp]), int(lay.addr[0, t, bp])
                if (a0, b.side_of(ss)) not in maps:  # word (row r) of a one-group layout is at a0 + r * T
                    a = self._vxm_new("mul.i32", [iv, i32(stride * T)], "row address")
                    a = self._vxm_new("add.i32", [a, i32(a0 + base_row * T)], "row address", 1 - b.side_of(ss))
                    maps[(a0, b.side_of(ss))] = Vec([a.words[lo], a.words[hi]], a.ready, a.writers[lo : hi + 1])
                amap = maps[(a0, b.side_of(ss))]
                col = lay.addr[:, t, bp]
                last = max((b.last_read.get((ss, int(ad)), 0) for ad in col), default=0)
                banks = sorted({int(ad) // cfg.bank_words * cfg.bank_words for ad in (col.min(), col.max())})
                one = Vec([src.words[bp]], src.ready, src.writers[bp : bp + 1])
                q = f"MEM.{cfg.mem_names[ss]}"
                t_i, _, _, _ = b.job(
                    [q],
                    int(b.pos_mem[ss]),
                    [one, amap],
                    None,
                    0,
                    lambda q_, sb, db: I("Scatter", (sb[0], sb[1])),
                    what=f"scatter at {self.source}",
                    t0=last + 1,
                    occupancy=1 + extra,
                    unit_mem=[(ss, "Scatter", a_) for a_ in banks],
                )
                if extra:
                    b._put(q, t_i + extra, I("NOP", (1,)))
                commits = max(commits, t_i + dS + 1)
        # every row may be the updated one: reads of x wait for the commits (they see the MEM image's words, or
        # the scatter's, which the check does not link)
        b.ready[x.tensor] = np.maximum(b.ready[x.tensor], commits)
        return x

    # ------------------------------------------------------------------ outputs
    def output(self, v: Val, name: str) -> Val:
        """The value as a plain output tensor in the natural layout (copied when it is a view, a constant, an
        input or a replicated value with lane axes)."""
        v = self.on_chip(v)
        if v.lanes == "full" and not v.natural:
            raise self.err(f"an output {v.shape} in a transposed layout is not supported")
        info = self.b.sched.tensors[v.tensor]
        plain = np.array_equal(np.asarray(v.rows).reshape(-1), np.arange(np.asarray(v.rows).size))
        if v.tensor in self.inplace and plain:  # a state updated in place: the output is the input's words
            return v
        if info.role == "temp" and plain and (v.lanes == "full" or v.ld is None):
            info.role = "output"
            return v
        self.b.begin("copy", "output")
        if v.lanes == "full" or v.ld is not None:
            out = self.new_full(v.shape, v.dtype, role="output", ld=v.ld, nl=v.nl)
        else:
            out = self.new_rep(v.shape, v.dtype, ld=None, role="output")
        self.place_elementwise(f"mov.{v.dtype}", [v], out, "output copy")
        return out


def _const(c) -> Val:
    c = np.asarray(c)
    return Val(None, tuple(c.shape), _F.get(str(c.dtype), str(c.dtype)), const=c)
