"""Tile-level chip work built from jobs: transposes, and MXM passes whose weights are computed tensors.

Transpose (Y = X^T, one byte plane at a time; the algorithm of `kernels/transpose.py`). For each L x L tile of X:
  1. rotate:  A[i] = Rotate.down(X[i], i)            one SXM job per row i of the tile, into a scratch tile;
  2. gather:  B[r][l] = A[(r - l) mod L][l]          a MEM Gather on the scratch slice per output row r, lane l
                                                     reading scratch row (r - l) mod L (a constant map);
  3. permute: Y[r][j] = B[r][(r - j) mod L]          one SXM Permute per output row (a constant lane map).
so Y[r][j] = X[j][r]. The scratch tile is one slice, one SRAM bank, zero in the MEM image: rows of the tile
beyond X's last row are never written and stay zero, so Y's padding lanes are zero. The output rows are spread
over many slices, so that an MXM weight load (LW) can take many consecutive rows in one cycle.

MXM passes (`mxm_pass`): `Builder.mxm_units`, the weight-stationary schedule of every matrix product, for weight
tiles given row by row, each byte row a word of a computed tensor or a zero word: attention multiplies by Q^T per
head (the other rows zero) and by the softmax probabilities.
"""

from __future__ import annotations

import math

import numpy as np

from ..isa import Instruction as I
from .builder import Row, SchedulingError, Vec

__all__ = ["alloc_table", "byte_done", "byte_rows", "gather_job", "mxm_pass", "transpose", "zero_word"]


def byte_rows(v: Vec) -> list[Row]:
    return [Row(s, a, v.ready, v.writers[b] if b < len(v.writers) else -1) for b, (s, a) in enumerate(v.words)]


def zero_word(low, avoid: set) -> Row:
    """A zero byte word (a constant) in a slice not in `avoid` (one per slice, made when first needed)."""
    b = low.b
    pool = low.zero_words
    for s, row in pool.items():
        if s not in avoid:
            return row
    t = low.name("zero")
    b.alloc(t, (1, low.cfg.n_lanes), "i8", "const", np.zeros((1, low.cfg.n_lanes), np.int8), avoid=avoid)
    ((s, a),) = b.out_words(t, 0, 0)
    if s in avoid:
        raise SchedulingError("no slice is left for a zero word of a weight tile")
    pool[s] = Row(s, a)
    return pool[s]


# ---------------------------------------------------------------------------------------------- gathers
def gather_job(low, ss: int, map_vec: Vec, dst, addrs, what: str, t0: int = 0):
    """One MEM `Gather` on slice ss (lane l reads the word at map[l], the uint16 on the map's 2-stream group)
    into the words `dst`; `addrs`: an address in every SRAM bank the lanes may read (each is reserved). The
    slice's one output port must not take a Read's result in the cycle the gather's lands (d(Gather) may exceed
    d(Read)), so the queue idles (NOP) in the cycle such a Read would issue. Returns `Builder.job`'s tuple."""
    b, cfg = low.b, low.cfg
    extra = cfg.delay("Gather") - cfg.delay("Read")
    if extra < 0:
        raise SchedulingError(f"{what}: a Gather faster than a Read (d(Gather) < d(Read)) is not supported")
    q = f"MEM.{cfg.mem_names[ss]}"
    out = b.job(
        [q],
        int(b.pos_mem[ss]),
        [map_vec],
        dst,
        cfg.delay("Gather"),
        lambda q_, sb, db: I("Gather", (db, sb[0])),
        what=what,
        t0=t0,
        occupancy=1 + extra,
        unit_mem=[(ss, "Gather", a) for a in addrs],
    )
    if extra:
        b._put(q, out[0] + extra, I("NOP", (1,)))
    return out


def alloc_table(low, name: str, value: np.ndarray) -> list[tuple[str, int, int, int]]:
    """Place a lookup table [V, D] (a parameter) for gathers: rows in chunks, each chunk's byte planes of every
    lane tile in slices of their own, all at the same addresses: a zero word, the chunk's rows, a zero word (a
    clamped address outside the chunk reads zero). Returns [(tensor, first row, rows, address of the first
    zero word)] per chunk."""
    from ..dtypes import dtype_by_name
    from ..kernels.layout import TensorLayout
    from .schedule import TensorInfo

    cfg, b = low.cfg, low.b
    V, D = value.shape
    dt = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int8): "i8"}[value.dtype]
    w, T = dtype_by_name(dt).width, math.ceil(D / cfg.n_lanes)
    chunks, r0, taken = [], 0, set()
    while r0 < V:
        # the emptiest slices of one hemisphere, the chunks alternating between them (the table must not fill
        # one; a chunk's gathers take their address from the other)
        side = b.sides[len(chunks) % 2]
        free = sorted((s for s in side if s not in taken), key=lambda s: b.next_addr[s])[: T * w]
        a0 = int(max(b.next_addr[free])) if len(free) == T * w else cfg.mem_words
        n = min(V - r0, cfg.mem_words - a0 - 2)
        if n < 1:
            b._capacity(name, (V - r0 + 2) * T * w)
        sl = np.broadcast_to(np.asarray(free, np.int32).reshape(1, T, w), (n + 2, T, w)).copy()
        ad = np.broadcast_to((a0 + np.arange(n + 2, dtype=np.int32))[:, None, None], (n + 2, T, w)).copy()
        rows = np.zeros((n + 2, D), value.dtype)
        rows[1:-1] = value[r0 : r0 + n]
        t = low.name(f"{name}_rows{r0}_")
        b.sched.tensors[t] = TensorInfo(t, TensorLayout((n + 2, D), dt, sl, ad), "param", rows, (n + 2, D))
        b.ready[t] = np.zeros((n + 2, T), np.int64)
        b.writer[t] = np.full((n + 2, T, w), -1, np.int64)
        b.next_addr[free] = a0 + n + 2
        taken.update(int(s) for s in free)
        chunks.append((t, r0, n, a0))
        r0 += n
    return chunks


# ---------------------------------------------------------------------------------------------- transpose
def transpose(low, row_vec, R: int, C: int, dtype: str, what: str) -> str:
    """Y [C, R] = X^T for X [R, C] of `dtype`, where row_vec(i, J) is the Vec of X row i, lane tile J. Returns the
    new tensor's name (its rows spread over slice groups, all bytes of a row in one hemisphere)."""
    cfg, b = low.cfg, low.b
    L = cfg.n_lanes
    w = {"i8": 1, "u8": 1, "f16": 2, "i16": 2, "f32": 4, "i32": 4}[dtype]
    Ti, Tj = math.ceil(R / L), math.ceil(C / L)
    groups = max(1, min(cfg.n_streams // 2, len(b.sides[0]) // w))
    y = low.name("tr")
    b.alloc(y, (C, R), dtype, "temp", groups=groups)
    pmap = low.on_chip(low.const_val(((np.arange(L)[:, None] - np.arange(L)[None, :]) % L).astype(np.int16)))
    for Ii in range(Ti):
        for J in range(Tj):
            rows_out = min(L, C - J * L)
            for bp in range(w):
                # 1. rotate the tile's rows into a zero scratch tile (one slice, one bank)
                sc = low.name("scratch")
                info = b.alloc(sc, (L, L), "i8", "const", np.zeros((L, L), np.int8), groups=1, one_bank=True)
                ss, base = int(info.layout.slice[0, 0, 0]), int(info.layout.addr[0, 0, 0])
                ready, last = 0, -1
                for i in range(min(L, R - Ii * L)):
                    v = row_vec(Ii * L + i, J)
                    one = Vec([v.words[bp]], v.ready, v.writers[bp : bp + 1])
                    _, _, ws, end = b.sxm("Rotate.down", one, None, i, b.out_words(sc, i, 0), f"{what} (rotate)")
                    if end > ready:
                        ready, last = end, ws[0]
                # 2. gather each output row into B, 3. permute it into Y
                r0 = np.arange(rows_out)
                gvals = (base + (r0[:, None] - np.arange(L)[None, :]) % L).astype(np.int16)
                gmap = low.name("gmap")  # in the other hemisphere: its two bytes reach the scratch slice together
                b.alloc(gmap, gvals.shape, "i16", "const", gvals, side=1 - b.side_of(ss))
                bt = low.name("gath")
                b.alloc(bt, (rows_out, L), "i8", "temp")
                for r in range(rows_out):
                    _, gi, ws, end = gather_job(
                        low, ss, b.vec(gmap, r, 0), b.out_words(bt, r, 0), [base], f"{what} (gather)", ready
                    )
                    if last >= 0:
                        b._link(gi, -1, last)
                    b.done(bt, r, 0, end, ws)
                    words = b.out_words(y, J * L + r, Ii)
                    _, _, ws, end = b.sxm(
                        "Permute", b.vec(bt, r, 0), b.vec(pmap.tensor, r, 0), 0, [words[bp]], f"{what} (permute)"
                    )
                    byte_done(b, y, J * L + r, Ii, bp, end, ws[0])
    return y


def byte_done(b, name: str, r: int, t: int, bp: int, end: int, write: int) -> None:
    """Byte plane bp of vector (r, t) written (byte 0 first): the vector is ready when its last byte is."""
    writers = b.writer[name][r, t].copy()
    writers[bp] = write
    b.done(name, r, t, end if bp == 0 else max(end, int(b.ready[name][r, t])), writers)


# ---------------------------------------------------------------------------------------------- MXM passes
def mxm_pass(low, units, f16: bool, what: str) -> None:
    """`Builder.mxm_units` with units round-robin over the planes and zero rows from `zero_word`."""
    b = low.b
    b.mxm_units(units, f16, what, [b.next_plane() for _ in units], zero=lambda avoid: zero_word(low, avoid))
