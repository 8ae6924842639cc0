"""Matrix transpose in MEM: Y = X^T for a byte matrix X [R, C] (int8), through the SXM and MEM Gather.

Moving a byte from lane j to lane i of another vector needs the SXM (lanes move within a vector) and MEM Gather
(each lane picks its own word, but stays in its lane). Three shuffles do a full L x L tile (L = n_lanes), for
rows and lanes indexed mod L:
  1. rotate:  A[i][j] = X[i][(j + i) mod L]       `Rotate.down D, S, i` on each row i, written to a scratch tile;
  2. gather:  B[i][l] = A[(i - l) mod L][l]       `Gather` on the scratch slice, lane l reading row (i - l) mod L;
  3. permute: Y[i][j] = B[i][(i - j) mod L]       `Permute` with map j -> (i - j) mod L, written out.
Indeed Y[i][j] = A[j][(i - j) mod L] = X[j][i]. A matrix larger than L x L is done tile by tile (tile (I, J) of X
becomes tile (J, I) of Y); rows of a tile beyond R read a zero word. The gather and permute maps (one 2-stream
uint16 vector per row i) are constants the kernel places in MEM. Every instruction is placed at an exact cycle
(`Timeline`), each row at the first cycle where its MEM queue slots, SRAM banks and SXM queue are free.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ChipConfig
from ..isa import Instruction as I
from ..isa import Stream
from ..sxm import sxm_delay
from .base import Kernel
from .layout import Allocator, CapacityError, TensorLayout
from .timeline import Timeline

__all__ = ["transpose"]


def transpose(cfg: ChipConfig, R: int, C: int, sxm: int = 0) -> Kernel:
    """A program that writes Y = X^T (int8 [C, R]) for X int8 [R, C], using SXM slice `sxm` (default the west one).

    Returns a `Kernel` with layouts "x" (input), "y" (output) and the constant maps "gmap", "pmap"."""
    for name, v in (("R", R), ("C", C)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"transpose: {name} must be a positive int, got {v!r}")
    if not 0 <= sxm < len(cfg.sxm_slices):
        raise ValueError(f"transpose: {cfg.name} has {len(cfg.sxm_slices)} SXM slices, no slice {sxm}")
    return _Transpose(cfg, int(R), int(C), sxm).build()


def _tile_columns(alloc: Allocator, rows: int, tiles: int, slices: list[int], what: str):
    """A byte matrix's layout arrays (slice, addr) int32 [rows, tiles, 1]: column tile t in slices[t mod n], its
    rows at consecutive addresses."""
    sl = np.zeros((rows, tiles, 1), np.int32)
    ad = np.zeros_like(sl)
    for t in range(tiles):
        s = slices[t % len(slices)]
        sl[:, t, 0] = s
        ad[:, t, 0] = alloc.take(s, rows, what) + np.arange(rows)
    return sl, ad


class _Transpose:
    def __init__(self, cfg: ChipConfig, R: int, C: int, sxm: int):
        self.cfg, self.R, self.C = cfg, R, C
        L = cfg.n_lanes
        self.L = L
        self.px = int(cfg.positions[cfg.sxm_slices[sxm]])
        pos = cfg.positions[cfg.mem_slices]
        self.pos = pos
        if (pos > self.px).all():
            self.din, self.dout = "W", "E"  # MEM lies east of this SXM: data comes west to it, goes back east
        elif (pos < self.px).all():
            self.din, self.dout = "E", "W"
        else:
            raise ValueError("transpose: the MEM slices must all lie on one side of the SXM slice")
        self.units = [f"SXM.{cfg.sxm_names[sxm]}.{u}" for u in range(cfg.sxm_units)]
        self.tl = Timeline(cfg)
        if cfg.n_mem < 3:
            raise CapacityError(f"transpose: needs at least 3 MEM slices; {cfg.name} has {cfg.n_mem}")

    def _hops(self, s: int) -> int:
        return abs(int(self.pos[s]) - self.px)

    def build(self) -> Kernel:
        cfg, L, R, C = self.cfg, self.L, self.R, self.C
        d = lambda k: cfg.delay(k)  # noqa: E731
        S = lambda i, dr=None: Stream(dr or self.din, i)  # noqa: E731
        M = cfg.n_mem
        # Roles: the scratch slice is the one nearest the SXM, so every other slice is upstream of it.
        order = sorted(range(M), key=self._hops)
        ss = order[0]
        rest = order[1:]
        gm = [rest[0], rest[1 % len(rest)]]
        pm = [rest[2 % len(rest)], rest[3 % len(rest)]]
        if pm[0] == pm[1]:
            pm[1] = rest[0]
        xs = rest[::-1]  # far slices hold X, so X reads do not crowd the map slices
        ys = rest
        Ti, Tj = math.ceil(R / L), math.ceil(C / L)
        alloc = Allocator(cfg)
        scratch = alloc.take(ss, L, "transpose scratch tile")
        if scratch // cfg.bank_words != (scratch + L - 1) // cfg.bank_words:  # one bank: one Gather, one bank use
            scratch = alloc.take(ss, L, "transpose scratch tile")
        zs = rest[-1]
        zero = alloc.take(zs, 1, "transpose zero word")
        i = np.arange(L)
        gvals = (scratch + (i[:, None] - i[None, :]) % L).astype(np.int16)  # row i, lane l: row (i - l) mod L
        pvals = ((i[:, None] - i[None, :]) % L).astype(np.int16)  # row i, lane j: (i - j) mod L
        maps = {}
        for name, sl in (("gmap", gm), ("pmap", pm)):
            s_ = np.zeros((L, 1, 2), np.int32)
            a_ = np.zeros_like(s_)
            for j in range(2):
                s_[:, 0, j] = sl[j]
                a_[:, 0, j] = alloc.take(sl[j], L, f"transpose {name}") + i
            maps[name] = TensorLayout((L, L), "i16", s_, a_)
        x_sl, x_ad = _tile_columns(alloc, R, Tj, xs, "transpose input X")
        y_sl, y_ad = _tile_columns(alloc, C, Ti, ys, "transpose output Y")

        u_rot, u_perm = self.units[0], self.units[-1]
        dR, dW, dG = d("Read"), d("Write"), d("Gather")
        d_perm = sxm_delay(cfg, "Permute")
        last_gather = -1
        last_write = -1
        t = 0
        for Ii in range(Ti):
            for J in range(Tj):
                # phase 1: rotate every row of the tile into the scratch tile
                commits = []
                for r in range(L):
                    row = Ii * L + r
                    src = (int(x_sl[row, J, 0]), int(x_ad[row, J, 0])) if row < R else (zs, zero)
                    d_rot = sxm_delay(cfg, "Rotate.down", r)
                    while True:
                        tr = t - dR - self._hops(src[0])
                        tw = t + d_rot + self._hops(ss)
                        if (
                            self.tl.mem_free(src[0], tr, "Read", src[1])
                            and self.tl.free(u_rot, t)
                            and tw + dW > last_gather
                            and self.tl.mem_free(ss, tw, "Write", scratch + r)
                        ):
                            break
                        t += 1
                    self.tl.place_mem(src[0], tr, I("Read", (src[1], S(0))))
                    self.tl.place(u_rot, t, I("Rotate.down", (S(0, self.dout), S(0), r)))
                    self.tl.place_mem(ss, tw, I("Write", (scratch + r, S(0, self.dout))))
                    commits.append(tw + dW)
                    t += 1
                # phase 2: gather + permute each output row that exists
                g = max(commits)
                rows = min(L, C - J * L)
                for r in range(rows):
                    while True:
                        tm = [g - dR - self._hops(s) + self._hops(ss) for s in gm]
                        tp = g + dG + self._hops(ss)
                        tq = [tp - dR - self._hops(s) for s in pm]
                        ys_, ya = int(y_sl[J * L + r, Ii, 0]), int(y_ad[J * L + r, Ii, 0])
                        tw = tp + d_perm + self._hops(ys_)
                        # the two map groups: (slice, cycle, address, stream) of each byte row's Read
                        map_reads = [
                            (s, tc[k], int(maps[name].addr[r, 0, k]), S(base + k))
                            for name, sl, tc, base in (("gmap", gm, tm, 2), ("pmap", pm, tq, 4))
                            for k, s in enumerate(sl)
                        ]
                        ok = (
                            self.tl.mem_free(ss, g, "Gather", scratch)
                            and all(self.tl.mem_free(s, tc, "Read", a) for s, tc, a, _ in map_reads)
                            and self.tl.free(u_perm, tp)
                            and self.tl.mem_free(ys_, tw, "Write", ya)
                            and len(
                                {(ss, g), (gm[0], tm[0]), (gm[1], tm[1]), (pm[0], tq[0]), (pm[1], tq[1]), (ys_, tw)}
                            )
                            == 6
                        )
                        if ok:
                            break
                        g += 1
                    for s, tc, a, strm in map_reads:
                        self.tl.place_mem(s, tc, I("Read", (a, strm)))
                    self.tl.place_mem(ss, g, I("Gather", (S(1), S(2))), addr=scratch)
                    self.tl.place(u_perm, tp, I("Permute", (S(1, self.dout), S(1), S(4))))
                    self.tl.place_mem(ys_, tw, I("Write", (ya, S(1, self.dout))))
                    last_gather = g
                    last_write = max(last_write, tw)
                    g += 1
        layouts = {
            "x": TensorLayout((R, C), "i8", x_sl, x_ad),
            "y": TensorLayout((C, R), "i8", y_sl, y_ad),
            **maps,
        }
        kernel = Kernel(
            name=f"transpose_{R}x{C}",
            cfg=cfg,
            program=self.tl.program(),
            layouts=layouts,
            inputs=("x",),
            outputs=("y",),
            cycles=last_write + dW + 1,
            zeros=np.array([[zs, zero]], np.int32),
            constants={"gmap": gvals, "pmap": pvals},
        )
        return kernel
