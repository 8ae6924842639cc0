"""A plain, slow, loop-based numpy interpreter of the LPU ISA, written from the documents.

It is the second implementation that the differential test (tests/test_golden.py) runs against `lpu_jax.sim`.
Its value is that it shares no semantics with the simulator: it was written from docs/isa.md (sections cited in
the code as "isa §N"), docs/model.md, docs/mxm.md, docs/mxm_math.md, docs/sxm.md and docs/fpmath.md, and the module
docstrings named there. It imports:
  * `lpu_jax.config` (geometry and delays are inputs),
  * `lpu_jax.isa` for the program FORMAT only (queue names and `encode`, to turn a `Program` into rows),
  * `lpu_jax.reference.chipnum`, an independent numpy implementation of the fp32 element functions
    (flush, add, sub, mul, min/max, neg, abs, exp, tanh, rsqrt, recip, f16 <-> f32) written from docs/fpmath.md.
It never imports lpu_jax.sim, state, mem, vxm, mxm, sxm, icu, pipeline, streams, fpmath or dotmath.

The machine is kept the "equivalent description without rings" of isa §5: a register file
`R[dir, position, stream]` (uint8 [L]) that is shifted one position at the start of every cycle, and plain
dictionaries of pending results keyed by their due cycle. Everything else is Python loops over queues, ports,
slices, planes and lanes; only whole vectors use numpy.

API:
    it = Interp(cfg, program, mem)   program: isa.Program or its encoding int32 [Q, Lp, 8]; mem uint8 [M, W, L]
    row = it.step()                  one cycle; returns that cycle's trace row (dict, TRACE_FIELDS)
    traces = it.run(n)               n cycles; {field: array [n, ...]}
    it.mem                           SRAM image uint8 [M, W, L] (address-linear)
    snap = it.snapshot(); it.restore(snap)   a deep copy of the state, and back to it (checkpoints)
    it.hz_count / hz_first_cycle / hz_first_where   int64 [5] (HAZARD_KINDS order)

Trace fields (as `sim.TRACE_FIELDS`, for the cycle c just run):
    cycle          int                c
    issued         int32 [Q, 8]       the row each queue issued (0 row: none)
    landed_sid     int32 [N]          stream id of the group base a port landed at c, -1 if none
    landed_width   int32 [N]          its width (0 where nothing landed)
    landed_data    uint8 [N, 4, L]    its bytes, row k for stream base+k (0 where nothing landed)
    commit_addr    int32 [M]          address of the Write committed at c, -1 if none
    commit_lanes   int32 [M, L]       lane addresses of the Scatter committed at c, -1 where none
    commit_data    uint8 [M, L]       the committed bytes (0 where nothing commits)
    streams        uint8 [2, P, S, L] the register file after the cycle's landing
    hazards        int64 [5]          running hazard counts
Unused entries of landed_width/landed_data/commit_data are 0 here; the simulator leaves stale ring contents
there, so `compare_traces` masks them.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..reference import chipnum as cn

__all__ = ["HAZARD_KINDS", "TRACE_FIELDS", "Difference", "Interp", "compare_traces", "run_program"]

# isa §8, in index order.
HAZARD_KINDS = ("bank_conflict", "port_conflict", "stream_conflict", "address_range", "mxm_unpaired")
BANK, PORT, STREAM, RANGE, UNPAIRED = range(5)
TRACE_FIELDS = (
    "cycle",
    "issued",
    "landed_sid",
    "landed_width",
    "landed_data",
    "commit_addr",
    "commit_lanes",
    "commit_data",
    "streams",
    "hazards",
)
NEVER = 2**31 - 1
SXM_PORTS = 4  # isa §2: four output ports per SXM unit (a Transpose.sg16 puts out four 4-stream groups)

# isa §4: opcodes.
HALT, NOP, REPEAT, SYNC, NOTIFY = 0, 1, 2, 3, 4
READ, WRITE, GATHER, SCATTER = 16, 17, 18, 19
LW, IW, ABC, ACC = 20, 21, 22, 23
SHIFT_UP, SHIFT_DOWN, ROTATE_UP, ROTATE_DOWN, PERMUTE, DISTRIBUTE, TRANSPOSE = 24, 25, 26, 27, 28, 29, 30
VXM_BASE = 32
STRIDED = (READ, WRITE, LW, ACC)  # isa §4: field 1 is the one a Repeat stride advances

# isa §3: element types, code -> (name, width in bytes, is float).
DTYPE = {0: ("i8", 1, False), 1: ("u8", 1, False), 2: ("i16", 2, False), 3: ("i32", 4, False),
         4: ("f16", 2, True), 5: ("f32", 4, True)}  # fmt: skip
INT_RANGE = {"i8": (-128, 127), "u8": (0, 255), "i16": (-32768, 32767), "i32": (-(2**31), 2**31 - 1)}

# isa §6.3 table: VXM op index -> (name, arity). Index = opcode - 32.
VXM_TABLE = ["add", "sub", "mul", "min", "max", "and", "or", "xor", "shl", "shr", "shru", "eq", "ne", "lt", "le",
             "gt", "ge", "select", "neg", "abs", "relu", "not", "mov", "exp", "tanh", "rsqrt", "recip", "convert",
             "requant"]  # fmt: skip
VXM_ARITY = dict.fromkeys(("neg", "abs", "relu", "not", "mov", "exp", "tanh", "rsqrt", "recip", "convert"), 1)
VXM_ARITY["select"] = 3  # every other op: 2
TRANSCENDENTAL = ("exp", "tanh", "rsqrt", "recip")
CANON_NAN = {"f32": 0x7FC00000, "f16": 0x7E00}


# ============================================================================ VXM element semantics (isa §6.3)
def _mask(width: int) -> int:
    return (1 << (8 * width)) - 1


def _ival(u: np.ndarray, t: str) -> np.ndarray:
    """Masked raw bits -> int64 value: sign-extended (i8, i16, i32) or zero-extended (u8)."""
    v = u.astype(np.int64)
    if t == "u8":
        return v
    n = 8 * DTYPE_W[t]
    return np.where(v >= (1 << (n - 1)), v - (1 << n), v)


DTYPE_W = {name: w for name, w, _ in DTYPE.values()}


def _fval(u: np.ndarray, t: str) -> np.ndarray:
    """Masked raw bits -> float32 value: f16 widened exactly, every fp32 value flushed (fpmath.md 'Flushing')."""
    if t == "f16":
        x = cn.f16_to_f32(u.astype(np.uint16).view(np.float16))
    else:
        x = u.astype(np.uint32).view(np.float32)
    return cn.flush(x)


def _fbits(x: np.ndarray, t: str) -> np.ndarray:
    """float32 result -> bits of t: flushed, rounded once to f16 for f16, every NaN the positive canonical NaN
    (isa §6.3 'NaN': the sign bit is clear even for a one-input op on a negative NaN)."""
    x = cn.flush(np.asarray(x, np.float32))
    nan = np.isnan(x)
    if t == "f16":
        bits = cn.f32_to_f16(x).view(np.uint16).astype(np.uint64)
    else:
        bits = x.view(np.uint32).astype(np.uint64)
    return np.where(nan, CANON_NAN[t], bits).astype(np.uint64)


def _float_to_int(x: np.ndarray, t: str) -> np.ndarray:
    """Flushed float32 -> int64 of type t: NaN -> 0, round half to even, saturate (±inf too) (fpmath.md
    'Conversions')."""
    lo, hi = INT_RANGE[t]
    r = np.rint(np.where(np.isnan(x), 0.0, x.astype(np.float64)))
    return np.clip(r, lo, hi).astype(np.int64)


def _int_to_f32(v: np.ndarray) -> np.ndarray:
    """int64 (|v| < 2^53) -> float32, one rounding to nearest even (float64 holds v exactly)."""
    return v.astype(np.float64).astype(np.float32)


def vxm_element(op: str, t1: str, t2: str, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, str]:
    """One VXM op lane by lane (isa §6.3 'Element semantics'). a, b, c: raw little-endian element bits (uint64
    [L], already masked to each source's width). Returns (result bits uint64 [L], output type)."""
    w1 = DTYPE_W[t1]
    m1 = _mask(w1)
    is_f = t1 in ("f16", "f32")
    with np.errstate(all="ignore"):
        if op == "requant":  # D(i8) = sat(rne(flush(f32(A) * B))); A i32, B f32 (flushed)
            fa = _int_to_f32(_ival(a & 0xFFFFFFFF, "i32"))
            fb = _fval(b & 0xFFFFFFFF, "f32")
            p = cn.mul(fa, fb)  # one IEEE fp32 multiplication of the flushed inputs, flushed
            return (_float_to_int(p, "i8") & 0xFF).astype(np.uint64), "i8"
        if op == "convert":
            mo = _mask(DTYPE_W[t2])
            if is_f:
                x = _fval(a, t1)
                if t2 in ("f16", "f32"):
                    return _fbits(x, t2), t2
                return (_float_to_int(x, t2) & mo).astype(np.uint64), t2
            v = _ival(a, t1)
            if t2 in ("f16", "f32"):  # int -> f32 (RNE); int -> f16 goes through fp32 (two roundings)
                return _fbits(_int_to_f32(v), t2), t2
            lo, hi = INT_RANGE[t2]
            return (np.clip(v, lo, hi) & mo).astype(np.uint64), t2
        if op == "mov":  # raw bits
            return a & m1, t1
        if op == "select":  # B where A has any bit set (within T's width), else C; raw bits
            return np.where(a != 0, b, c) & m1, t1
        cmp = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
               "ge": np.greater_equal}  # fmt: skip
        if op in cmp:  # an integer 1 or 0 of the operands' width
            if is_f:
                r = cmp[op](_fval(a, t1), _fval(b, t1))  # flushed values; NaN: false except ne
            else:
                r = cmp[op](_ival(a, t1), _ival(b, t1))
            return r.astype(np.uint64), t1
        if is_f:
            x, y = _fval(a, t1), _fval(b, t1)
            if op == "add":
                r = cn.add(x, y)
            elif op == "sub":
                r = cn.sub(x, y)
            elif op == "mul":
                r = cn.mul(x, y)
            elif op == "min":
                r = cn.min_(x, y)
            elif op == "max":
                r = cn.max_(x, y)
            elif op == "neg":
                r = cn.neg(x)
            elif op == "abs":
                r = cn.abs_(x)
            elif op == "relu":  # x if x > 0 else +0.0; NaN stays NaN
                r = np.where(np.isnan(x) | (x > 0), x, np.float32(0))
            elif op == "exp":
                r = cn.exp(x)
            elif op == "tanh":
                r = cn.tanh(x)
            elif op == "rsqrt":
                r = cn.rsqrt(x)
            elif op == "recip":
                r = cn.recip(x)
            else:
                raise ValueError(f"{op} does not take {t1}")
            return _fbits(r, t1), t1
        # integers: two's complement on the extended value, truncated to the width
        ia, ib = _ival(a, t1), _ival(b, t1)
        ua, ub = a.astype(np.int64), b.astype(np.int64)
        n = 8 * w1
        amount = ub  # B read as unsigned within its width
        big = amount >= n
        sh = np.minimum(amount, n - 1)
        if op == "add":
            r = ia + ib
        elif op == "sub":
            r = ia - ib
        elif op == "mul":
            r = ia * ib
        elif op == "min":
            r = np.minimum(ia, ib)
        elif op == "max":
            r = np.maximum(ia, ib)
        elif op == "and":
            r = ua & ub
        elif op == "or":
            r = ua | ub
        elif op == "xor":
            r = ua ^ ub
        elif op == "shl":
            r = np.where(big, 0, ua << sh)
        elif op == "shru":
            r = np.where(big, 0, ua >> sh)
        elif op == "shr":  # arithmetic for signed types (sign fill), logical for u8
            r = np.where(big, 0, ua >> sh) if t1 == "u8" else ia >> sh
        elif op == "neg":
            r = -ia
        elif op == "abs":
            r = np.abs(ia)
        elif op == "relu":
            r = np.maximum(ia, 0)
        elif op == "not":
            r = ~ua
        else:
            raise ValueError(f"{op} does not take {t1}")
        return (r & m1).astype(np.uint64), t1


def vxm_delay_class(op: str, t1: str) -> str:
    """isa §6.3 'Timing'."""
    if op in TRANSCENDENTAL:
        return "vxm.transcendental"
    if op in ("convert", "requant"):
        return "vxm." + op
    return "vxm.float" if t1 in ("f16", "f32") else "vxm.int"


# ============================================================================ MXM dot products (mxm_math.md)
def dot_i8(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y_j = sum_k int8(x_k) * int8(w_kj), exact; returned as int32 bits (uint64 [N])."""
    xi = x.astype(np.uint8).view(np.int8).astype(np.int64)
    wi = w.astype(np.uint8).view(np.int8).astype(np.int64)
    y = np.zeros(w.shape[1], np.int64)
    for k in range(len(xi)):
        y += xi[k] * wi[k]
    return (y & 0xFFFFFFFF).astype(np.uint64)


def _f16_decode(b: int) -> tuple[str, int]:
    """fp16 bits -> ("nan", 0) | ("inf", ±1) | ("fin", X) with value = X * 2^-24 exactly."""
    s = -1 if b & 0x8000 else 1
    e, m = (b >> 10) & 0x1F, b & 0x3FF
    if e == 0x1F:
        return ("inf", s) if m == 0 else ("nan", 0)
    if e == 0:
        return "fin", s * m
    return "fin", s * ((1024 + m) << (e - 1))


def _round_f32(n: int) -> int:
    """The fp32 bits of n * 2^-48 rounded once to nearest even (n an exact Python int; 0 -> +0)."""
    if n == 0:
        return 0
    sign = 0x80000000 if n < 0 else 0
    mag = abs(n)
    shift = max(mag.bit_length() - 24, 0)
    q = mag >> shift
    if shift:
        r = mag - (q << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
            if q == 1 << 24:
                q >>= 1
                shift += 1
    v = np.float32(math.ldexp(q, shift - 48))  # exact: q has <= 24 bits, 2^-48 <= v < 2^45
    return int(v.view(np.uint32)) | sign


def dot_f16(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """mxm_math.md 'Definition' and 'Special values': y_j = the exact sum of the K products x_k * w_kj rounded
    once to fp32; NaN (canonical) if a product is NaN (NaN factor, inf * 0) or +inf and -inf products meet; ±inf
    if there are infinite products all of one sign; an exact zero sum is +0. x uint16 [K], w uint16 [K, N]."""
    xs = [_f16_decode(int(v)) for v in x]
    out = np.zeros(w.shape[1], np.uint64)
    for j in range(w.shape[1]):
        total, nan, pinf, ninf = 0, False, False, False
        for k, (kx, vx) in enumerate(xs):
            kw, vw = _f16_decode(int(w[k, j]))
            if kx == "nan" or kw == "nan":
                nan = True
            elif kx == "inf" or kw == "inf":
                sx = vx if kx == "inf" else (0 if vx == 0 else (1 if vx > 0 else -1))
                sw = vw if kw == "inf" else (0 if vw == 0 else (1 if vw > 0 else -1))
                if sx * sw == 0:
                    nan = True  # inf * 0
                elif sx * sw > 0:
                    pinf = True
                else:
                    ninf = True
            else:
                total += vx * vw
        if nan or (pinf and ninf):
            out[j] = 0x7FC00000
        elif pinf:
            out[j] = 0x7F800000
        elif ninf:
            out[j] = 0xFF800000
        else:
            out[j] = _round_f32(total)
    return out


# ============================================================================ SXM lane moves (sxm.md)
def _stagger(cfg: ChipConfig, src: list[int | None]) -> int:
    """sxm.md 'Timing': the most superlanes any byte moves down (0 if none moves down). src[l] is the source
    lane of destination lane l, None for a zero fill."""
    lps = cfg.lanes_per_superlane
    drops = [s // lps - ln // lps for ln, s in enumerate(src) if s is not None]
    return max([0] + drops)


# ============================================================================ the interpreter
class _Result:
    """One result in flight on an output port: its stream group and bytes (row k = stream base + k)."""

    __slots__ = ("sid", "width", "data")

    def __init__(self, sid: int, width: int, data: np.ndarray):
        self.sid, self.width, self.data = sid, width, data


class Interp:
    """The chip, one cycle at a time, in plain Python (isa §5)."""

    def __init__(self, cfg: ChipConfig, program, mem: np.ndarray | None = None):
        self.cfg = cfg
        if isinstance(program, isa.Program):
            program = isa.encode(cfg, program)
        self.prog = np.asarray(program, np.int64)
        self.names = isa.queue_names(cfg)
        Q = len(self.names)
        assert self.prog.ndim == 3 and self.prog.shape[0] == Q and self.prog.shape[2] == 8
        S, L, M, W = cfg.n_streams, cfg.n_lanes, cfg.n_mem, cfg.mem_words
        self.S, self.L, self.M, self.W = S, L, M, W
        self.P = cfg.n_positions
        self.A, self.Pl = cfg.vxm_alus, cfg.n_planes
        self.U = len(cfg.sxm_slices) * cfg.sxm_units
        self.N = M + self.A + self.Pl + SXM_PORTS * self.U
        # Positions (model.md §1; isa §2).
        pos = [int(p) for p in cfg.positions]
        self.mem_pos = [pos[s] for s in cfg.mem_slices]
        self.vxm_pos = pos[cfg.vxm_slice]
        self.mxm_pos = [pos[s] for s in cfg.mxm_slices]
        self.sxm_pos = [pos[s] for s in cfg.sxm_slices for _ in range(cfg.sxm_units)]
        self.port_pos = self.mem_pos + [self.vxm_pos] * self.A + self.mxm_pos
        self.port_pos += [p for p in self.sxm_pos for _ in range(SXM_PORTS)]
        self.q_vxm, self.q_mxm = M, M + self.A
        self.q_sxm = M + self.A + 3 * self.Pl
        # State.
        self.cycle = 0
        self.R = np.zeros((2, self.P, S, L), np.uint8)
        self.mem = np.zeros((M, W, L), np.uint8) if mem is None else np.array(mem, np.uint8).reshape(M, W, L)
        self.pc = [0] * Q
        self.next = [0] * Q
        self.parked = [False] * Q
        self.rep_left = [0] * Q
        self.rep_d = [0] * Q
        self.rep_stride = [0] * Q
        self.last: list[np.ndarray | None] = [None] * Q
        self.pending: list[dict[int, _Result]] = [{} for _ in range(self.N)]  # port -> {due: result}
        self.commits: list[dict[int, tuple]] = [{} for _ in range(M)]  # slice -> {due: (addr|lanes, data)}
        self.wbuf = np.zeros((self.Pl, L, L), np.uint8)
        self.staged = np.zeros((self.Pl, L, L), np.uint8)
        self.warr = np.zeros((self.Pl, L, L), np.uint8)
        self.install_due = [-1] * self.Pl
        self.prod: list[dict[int, tuple[int, np.ndarray]]] = [{} for _ in range(self.Pl)]  # {due: (kind, bits)}
        self.acc = np.zeros((self.Pl, cfg.mxm_acc_rows, L), np.uint64)
        self.hz_count = np.zeros(5, np.int64)
        self.hz_first_cycle = np.full(5, -1, np.int64)
        self.hz_first_where = np.full(5, -1, np.int64)

    # ------------------------------------------------------------------ streams and groups (isa §3)
    def _sid(self, sid: int) -> tuple[int, int]:
        return divmod(int(sid), self.S)

    def _stream(self, sid: int, pos: int) -> np.ndarray:
        d, i = self._sid(sid)
        return self.R[d, pos, i].copy()

    def _group_rows(self, sid: int, pos: int, w: int) -> np.ndarray:
        """The w streams sid..sid+w-1 at pos, in stream order, uint8 [w, L]."""
        d, i = self._sid(sid)
        return self.R[d, pos, i : i + w].copy()

    def _row_of_byte(self, k: int, w: int) -> int:
        """Stream offset (from the group base) of byte k of a w-byte element (isa §3 'Byte order')."""
        return k if self.cfg.group_byte_order == "little" else w - 1 - k

    def _group_value(self, sid: int, pos: int, w: int) -> np.ndarray:
        """The w-byte elements on group sid at pos as raw bits uint64 [L]."""
        rows = self._group_rows(sid, pos, w)
        v = np.zeros(self.L, np.uint64)
        for k in range(w):
            v |= rows[self._row_of_byte(k, w)].astype(np.uint64) << np.uint64(8 * k)
        return v

    def _value_rows(self, v: np.ndarray, w: int) -> np.ndarray:
        """Raw bits uint64 [L] -> the w stream rows (stream order) that carry them, uint8 [w, L]."""
        rows = np.zeros((w, self.L), np.uint8)
        for k in range(w):
            rows[self._row_of_byte(k, w)] = ((v >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8)
        return rows

    # ------------------------------------------------------------------ one cycle (isa §5)
    def step(self) -> dict:
        """Run cycle `self.cycle` (stages in the order of isa §5) and return its trace row."""
        c = self.cycle
        if c > 0:  # every value moves one position; the entry positions read 0
            self.R[0, 1:] = self.R[0, :-1].copy()
            self.R[0, 0] = 0
            self.R[1, :-1] = self.R[1, 1:].copy()
            self.R[1, self.P - 1] = 0
        self._hits: list[tuple[int, int, int, int]] = []  # (kind, stage, flat index, where), see _hit
        issued = self._icu(c)
        landed = self._land(c)
        out: list[tuple[int, _Result]] = []  # (port, result) filed in the emit stage
        delays: list[int] = []
        commit = self._mem(c, issued, out, delays)
        self._vxm(c, issued, out, delays)
        self._mxm(c, issued, out, delays)
        self._sxm(c, issued, out, delays)
        self._emit(c, out, delays)
        self._record(c)
        self.cycle = c + 1
        row = {
            "cycle": c,
            "issued": issued.astype(np.int32),
            **landed,
            **commit,
            "streams": self.R.copy(),
            "hazards": self.hz_count.copy(),
        }
        return row

    def snapshot(self) -> dict:
        """A deep copy of the machine's state (everything but the config and the program): `restore` returns to
        it, bit for bit, as often as wanted (checkpoints of `lpu_jax.lockstep`)."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("cfg", "prog", "names")})

    def restore(self, snap: dict) -> None:
        """Return to a `snapshot()` (the snapshot stays intact, for another restore)."""
        self.__dict__.update(copy.deepcopy(snap))

    def run(self, n: int) -> dict:
        """Run n cycles; {field: array [n, ...]} for every field of TRACE_FIELDS."""
        rows = [self.step() for _ in range(n)]
        return {f: np.stack([np.asarray(r[f]) for r in rows]) if rows else np.zeros((0,)) for f in TRACE_FIELDS}

    # ------------------------------------------------------------------ hazards (isa §8)
    def _hit(self, kind: int, stage: int, flat: int, where: int) -> None:
        """stage: 0 land, 1 MEM, 2 MXM, 3 emit (the order first_where is taken in); flat: index in its list."""
        self._hits.append((kind, stage, flat, where))

    def _record(self, c: int) -> None:
        for k in range(5):
            mine = [h for h in self._hits if h[0] == k]
            if not mine:
                continue
            self.hz_count[k] += len(mine)
            if self.hz_first_cycle[k] < 0:
                self.hz_first_cycle[k] = c
                self.hz_first_where[k] = min(mine, key=lambda h: (h[1], h[2]))[3]

    # ------------------------------------------------------------------ ICU (isa §6.1)
    def _icu(self, c: int) -> np.ndarray:
        Q = len(self.names)
        issued = np.zeros((Q, 8), np.int64)
        notify = False
        for q in range(Q):
            if self.parked[q] or self.next[q] != c:
                continue
            if self.rep_left[q] > 0:  # the next repetition of an active Repeat
                issued[q] = self._repeat_once(q)
                self.rep_left[q] -= 1
                self.next[q] = c + self.rep_d[q]
                continue
            row = self.prog[q, self.pc[q]].copy()
            op = int(row[0])
            if op == HALT:  # halts for good; pc stays
                self.next[q] = NEVER
            elif op == NOP:
                self.pc[q] += 1
                self.next[q] = c + int(row[1])
            elif op == REPEAT:  # the first repetition issues in the Repeat's own fetch cycle
                self.pc[q] += 1
                n, d, s = int(row[1]), int(row[2]), int(row[3])
                self.rep_stride[q], self.rep_d[q] = s, d
                issued[q] = self._repeat_once(q)
                self.rep_left[q] = n - 1
                self.next[q] = c + d
            elif op == SYNC:
                self.pc[q] += 1
                self.parked[q] = True
                self.next[q] = NEVER
            elif op == NOTIFY:
                self.pc[q] += 1
                self.next[q] = c + 1
                notify = True
            else:  # a unit instruction
                self.pc[q] += 1
                issued[q] = row
                self.last[q] = row
                f16_abc = op == ABC and int(row[4]) == 4
                self.next[q] = c + (2 if f16_abc else 1)  # isa.occupancy: ABC.f16 takes its queue 2 cycles
        if notify:  # every queue parked at c (including one that parked at c) is released
            for q in range(Q):
                if self.parked[q]:
                    self.parked[q] = False
                    self.next[q] = c + self.cfg.delay("Notify")
        return issued

    def _repeat_once(self, q: int) -> np.ndarray:
        row = self.last[q].copy()
        if int(row[0]) in STRIDED:
            row[1] += self.rep_stride[q]
        self.last[q] = row
        return row

    # ------------------------------------------------------------------ land (isa §5 stage 2, §8 stream_conflict)
    def _land(self, c: int) -> dict:
        N, L = self.N, self.L
        sid = np.full(N, -1, np.int64)
        width = np.zeros(N, np.int64)
        data = np.zeros((N, 4, L), np.uint8)
        due = {}
        for p in range(N):
            r = self.pending[p].pop(c, None)
            if r is not None:
                due[p] = r
                sid[p], width[p] = r.sid, r.width
                data[p, : r.width] = r.data
        for p, r in due.items():
            for k in range(r.width):
                s = r.sid + k
                lost = any(
                    j > p and self.port_pos[j] == self.port_pos[p] and due[j].sid <= s < due[j].sid + due[j].width
                    for j in due
                )
                if lost:  # the higher port index wins, stream by stream
                    self._hit(STREAM, 0, p * 4 + k, p * 2 * self.S + s)
                    continue
                d, i = self._sid(s)
                self.R[d, self.port_pos[p], i] = r.data[k]
        return {"landed_sid": sid.astype(np.int32), "landed_width": width.astype(np.int32), "landed_data": data}

    # ------------------------------------------------------------------ MEM (isa §6.2)
    def _map(self, sid: int, pos: int) -> np.ndarray:
        """The uint16 lane map on the 2-stream group sid at pos, int64 [L]."""
        return self._group_value(sid, pos, 2).astype(np.int64)

    def _mem(self, c: int, issued: np.ndarray, out: list, delays: list) -> dict:
        M, W, L, BW = self.M, self.W, self.L, self.cfg.bank_words
        use = np.zeros((M, 2), np.int64)
        commit_addr = np.full(M, -1, np.int64)
        commit_lanes = np.full((M, L), -1, np.int64)
        commit_data = np.zeros((M, L), np.uint8)
        # 1-2. operands off the streams; new commits filed (one per slice per cycle: the later replaces).
        for m in range(M):
            row = issued[m]
            op, p = int(row[0]), self.mem_pos[m]
            if op == WRITE:
                self._file_commit(c, m, c + self.cfg.delay("Write"), int(row[1]), self._stream(row[2], p))
            elif op == SCATTER:
                mp = self._map(row[3], p)
                if (mp >= W).any():
                    self._hit(RANGE, 1, 2 * M + m, m)
                lanes = np.where(mp < W, mp, -1)
                self._file_commit(c, m, c + self.cfg.delay("Scatter"), lanes, self._stream(row[2], p))
        # 3. commits due now.
        for m in range(M):
            cm = self.commits[m].pop(c, None)
            if cm is None:
                continue
            target, data = cm
            commit_data[m] = data
            if isinstance(target, int):  # a Write: 1 access to its bank
                self.mem[m, target] = data
                commit_addr[m] = target
                use[m, target // BW] += 1
            else:  # a Scatter: lane l to address target[l], byte l only; 1 access per bank touched
                commit_lanes[m] = target
                for lane in range(L):
                    if target[lane] >= 0:
                        self.mem[m, target[lane], lane] = data[lane]
                for b in range(2):
                    use[m, b] += int(((target >= 0) & (target // BW == b)).any())
        # 4. reads issued now see this cycle's commits.
        for m in range(M):
            row = issued[m]
            op, p = int(row[0]), self.mem_pos[m]
            if op == READ:
                a = int(row[1])
                use[m, a // BW] += 1
                out.append((m, _Result(int(row[2]), 1, self.mem[m, a][None].copy())))
                delays.append(self.cfg.delay("Read"))
            elif op == GATHER:
                mp = self._map(row[3], p)
                if (mp >= W).any():
                    self._hit(RANGE, 1, 2 * M + m, m)
                v = np.zeros(L, np.uint8)
                for lane in range(L):
                    if mp[lane] < W:
                        v[lane] = self.mem[m, mp[lane], lane]
                for b in range(2):
                    use[m, b] += int(((mp < W) & (mp // BW == b)).any())
                out.append((m, _Result(int(row[2]), 1, v[None])))
                delays.append(self.cfg.delay("Gather"))
        # 5. bank use.
        for m in range(M):
            for b in range(2):
                if use[m, b] >= 2:
                    self._hit(BANK, 1, m * 2 + b, m * 2 + b)
        return {
            "commit_addr": commit_addr.astype(np.int32),
            "commit_lanes": commit_lanes.astype(np.int32),
            "commit_data": commit_data,
        }

    def _file_commit(self, c: int, m: int, due: int, target, data: np.ndarray) -> None:
        if due in self.commits[m]:
            self._hit(PORT, 1, self.M + m, m)
        self.commits[m][due] = (target, data)

    # ------------------------------------------------------------------ VXM (isa §6.3)
    def _vxm(self, c: int, issued: np.ndarray, out: list, delays: list) -> None:
        for a in range(self.A):
            row = issued[self.q_vxm + a]
            opc = int(row[0])
            if opc < VXM_BASE:
                continue
            op = VXM_TABLE[opc - VXM_BASE]
            t1, w1, _ = DTYPE[int(row[1])]
            t2, w2, _ = DTYPE[int(row[2])]
            arity = VXM_ARITY.get(op, 2)
            if op == "convert":
                widths = (w1,)
            elif op == "requant":
                widths = (4, 4)
            else:
                widths = (w1,) * arity
            srcs = [self._group_value(row[4 + k], self.vxm_pos, widths[k]) for k in range(arity)]
            srcs += [np.zeros(self.L, np.uint64)] * (3 - arity)
            bits, tout = vxm_element(op, t1, t2, *srcs)
            wout = DTYPE_W[tout]
            out.append((self.M + a, _Result(int(row[3]), wout, self._value_rows(bits, wout))))
            delays.append(self.cfg.delay(vxm_delay_class(op, t1)))

    # ------------------------------------------------------------------ MXM (mxm.md)
    def _mxm(self, c: int, issued: np.ndarray, out: list, delays: list) -> None:
        L, cfg = self.L, self.cfg
        lat = cfg.delay("mxm.abc") + cfg.n_superlanes - 1
        for p in range(self.Pl):
            pos = self.mxm_pos[p]
            if self.install_due[p] == c:  # installs due now take effect
                self.warr[p] = self.staged[p]
                self.install_due[p] = -1
            rw, ra, rc = (issued[self.q_mxm + 3 * p + k] for k in range(3))
            if int(rw[0]) == LW:  # rows r..r+n-1 <- streams S..S+n-1
                r, s, n = int(rw[1]), int(rw[2]), int(rw[3])
                self.wbuf[p, r : r + n] = self._group_rows(s, pos, n)
            elif int(rw[0]) == IW:  # captures the buffer; takes effect d(mxm.iw) later (a second IW replaces)
                self.staged[p] = self.wbuf[p]
                self.install_due[p] = c + cfg.delay("mxm.iw")
            if int(ra[0]) == ABC:
                if int(ra[4]) == 0:  # ABC.i8 S
                    x = self._stream(ra[2], pos)
                    self.prod[p][c + lat] = (0, dot_i8(x, self.warr[p]))
                else:  # ABC.f16 S, h: lanes h*L/2 .. +L/2, weights read as fp16 [L/2, L]
                    K = L // 2
                    h = int(ra[3])
                    x = self._group_value(ra[2], pos, 2)[h * K : (h + 1) * K].astype(np.uint16)
                    wb = self.warr[p].astype(np.uint16)
                    lo, hi = self._row_of_byte(0, 2), self._row_of_byte(1, 2)
                    w = np.stack([wb[2 * k + lo] | (wb[2 * k + hi] << 8) for k in range(K)])
                    self.prod[p][c + lat] = (1, dot_f16(x, w))
            product = self.prod[p].pop(c, None)
            if int(rc[0]) == ACC:
                a, dsid, mode, t = int(rc[1]), int(rc[2]), int(rc[3]), int(rc[4])
                kind = 0 if t == 3 else 1
                if product is None or product[0] != kind:
                    self._hit(UNPAIRED, 2, p, p)
                    pv = np.zeros(L, np.uint64)
                else:
                    pv = product[1]
                if mode & 1:  # ACC_ADD
                    if kind == 0:
                        self.acc[p, a] = (self.acc[p, a] + pv) & np.uint64(0xFFFFFFFF)
                    else:
                        f32 = lambda v: v.astype(np.uint32).view(np.float32)  # noqa: E731
                        self.acc[p, a] = _fbits(cn.add(f32(self.acc[p, a]), f32(pv)), "f32")
                else:
                    self.acc[p, a] = pv
                if mode & 2:  # ACC_EMIT: the new row on the 4-stream group D
                    out.append((self.M + self.A + p, _Result(dsid, 4, self._value_rows(self.acc[p, a], 4))))
                    delays.append(cfg.delay("mxm.acc"))
            elif product is not None:  # a product due with no ACC to take it is lost
                self._hit(UNPAIRED, 2, p, p)

    # ------------------------------------------------------------------ SXM (sxm.md)
    def _sxm(self, c: int, issued: np.ndarray, out: list, delays: list) -> None:
        L, cfg = self.L, self.cfg
        lps = cfg.lanes_per_superlane
        for g in range(self.U):
            row = issued[self.q_sxm + g]
            op = int(row[0])
            if not SHIFT_UP <= op <= TRANSPOSE:
                continue
            pos = self.sxm_pos[g]
            port = self.M + self.A + self.Pl + SXM_PORTS * g
            dsid, asid = int(row[2]), int(row[3])
            if op == TRANSPOSE:  # out stream D+i, lane 16s+j = in stream A+j, lane 16s+i
                src = self._group_rows(asid, pos, 16)
                res = np.zeros((16, L), np.uint8)
                for s in range(L // 16):
                    for i in range(16):
                        for j in range(16):
                            res[i, 16 * s + j] = src[j, 16 * s + i]
                for k in range(4):
                    out.append((port + k, _Result(dsid + 4 * k, 4, res[4 * k : 4 * k + 4])))
                    delays.append(cfg.delay("sxm.transpose"))
                continue
            a = self._stream(asid, pos)
            n = int(row[4])
            if op == SHIFT_UP:
                srcl = [ln - n if ln >= n else None for ln in range(L)]
            elif op == SHIFT_DOWN:
                srcl = [ln + n if ln + n < L else None for ln in range(L)]
            elif op == ROTATE_UP:
                srcl = [(ln - n) % L for ln in range(L)]
            elif op == ROTATE_DOWN:
                srcl = [(ln + n) % L for ln in range(L)]
            elif op == PERMUTE:  # a[map[l]], 0 where map[l] >= L; map = the uint16 group M
                mp = self._map(row[4], pos)
                srcl = [int(mp[ln]) if mp[ln] < L else None for ln in range(L)]
            else:  # DISTRIBUTE: a[16 (l div 16) + map[l]], 0 where map[l] >= 16; map = the byte on stream M
                mp = self._stream(row[4], pos)
                srcl = [lps * (ln // lps) + int(mp[ln]) if mp[ln] < lps else None for ln in range(L)]
            res = np.array([a[s] if s is not None else 0 for s in srcl], np.uint8)
            if op in (SHIFT_UP, SHIFT_DOWN, ROTATE_UP, ROTATE_DOWN):
                d = cfg.delay("sxm.shift") + _stagger(cfg, srcl)
            elif op == PERMUTE:  # the map is data: always the full stagger
                d = cfg.delay("sxm.permute") + cfg.n_superlanes - 1
            else:
                d = cfg.delay("sxm.distribute")
            out.append((port, _Result(dsid, 1, res[None])))
            delays.append(d)

    # ------------------------------------------------------------------ emit (isa §5 stage 7)
    def _emit(self, c: int, out: list, delays: list) -> None:
        for (port, r), d in sorted(zip(out, delays), key=lambda t: t[0][0]):
            due = c + d
            if due in self.pending[port]:  # the later-issued result replaces the earlier
                self._hit(PORT, 3, port, port)
            self.pending[port][due] = r


# ============================================================================ helpers for the differential test
def run_program(cfg: ChipConfig, program, mem: np.ndarray | None, n_cycles: int) -> tuple[Interp, dict]:
    """Run `n_cycles` cycles; returns the interpreter (final state) and its traces."""
    it = Interp(cfg, program, mem)
    return it, it.run(n_cycles)


class Difference(NamedTuple):
    """The first place two traces differ: cycle, field, index in that cycle's array, and the two values."""

    cycle: int
    field: str
    index: tuple
    a: object
    b: object

    def __str__(self) -> str:
        return f"cycle {self.cycle}: {self.field}{list(self.index)}: {self.a} vs {self.b}"


def compare_traces(a: dict, b: dict, fields=TRACE_FIELDS) -> Difference | None:
    """The first difference between two traces (dicts {field: array [n, ...]} as `sim.run` returns them), or None.

    landed_width/landed_data are compared only where a result landed (landed_sid >= 0 in `a`) and only in the
    rows of its width; commit_data only where a commit was made. Those entries are don't-cares: the simulator's
    trace shows stale ring slots there.
    """
    n = len(a["cycle"])
    masks = {}
    if "landed_sid" in a:
        live = np.asarray(a["landed_sid"]) >= 0
        masks["landed_width"] = live
        rows = np.arange(4)[None, None, :] < np.asarray(a["landed_width"])[:, :, None]
        masks["landed_data"] = (live[:, :, None] & rows)[..., None]
    if "commit_addr" in a:
        made = (np.asarray(a["commit_addr"]) >= 0) | (np.asarray(a["commit_lanes"]) >= 0).any(-1)
        masks["commit_data"] = made[..., None]
    for c in range(n):
        for f in fields:
            x, y = np.asarray(a[f][c]), np.asarray(b[f][c])
            if x.shape != y.shape:
                return Difference(c, f, (), x.shape, y.shape)
            diff = x.astype(np.int64) != y.astype(np.int64)
            if f in masks:
                diff &= np.broadcast_to(masks[f][c], diff.shape)
            if diff.any():
                idx = tuple(int(i) for i in np.argwhere(diff)[0])
                return Difference(c, f, idx, x[idx], y[idx])
    return None
