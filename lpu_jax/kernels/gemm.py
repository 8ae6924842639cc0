"""GEMM on the MXM: C[M, N] = A[M, K] @ B[K, N], int8 -> int32 or fp16 -> fp32 (docs/kernels.md).

The schedule (weight-stationary, as P20/P22 describe the MXM's use):
  * K is tiled by the plane's depth (L = n_lanes rows for int8, L/2 for fp16) and N by L columns; M is cut into
    blocks of at most `mxm_acc_rows` rows, so one block's partial sums stay in a plane's accumulators.
  * A *unit* is one (N tile, M block). Units go round-robin to the planes, N-major, so at any time the planes
    work on different M blocks and read their activations from different MEM slices.
  * For each unit a plane runs every K tile in turn: the tile's weights are installed (IW), then the block's
    activation rows stream in, one ABC per row (per 2 cycles for fp16), and ACC adds each product into the
    row's accumulator (the first K tile sets it). The last K tile also emits the row: 4 streams (int32/fp32)
    that 4 MEM slices write.
  * The next tile's weights load (LW, from MEM over the streams) while the current tile computes; its IW is
    placed so that it takes effect the cycle after the current tile's last ABC. So the MXM does not wait for
    weights, except for the very first tile.
Every instruction is placed at an exact cycle with a list scheduler (`Timeline`): a row's ABC goes at the first
cycle where its activation Read(s), its ACC and (last tile) its four Writes all find their MEM queue slot and
SRAM bank free. Streams are dedicated (results, activations and weights of each plane on their own stream
indices), and values on one stream reach their one consumer at distinct cycles, so no stream value is ever
overwritten before it is used.
"""

from __future__ import annotations

import functools
import heapq
import math

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..isa import Instruction as I
from ..mxm import abc_latency
from .base import Kernel
from .layout import Allocator, CapacityError, TensorLayout
from .timeline import Timeline

__all__ = ["gemm"]


@functools.cache
def _stream(direction: int, index: int) -> isa.Stream:
    return isa.Stream("EW"[direction], int(index))


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """Split range(n) into ceil(n / size) nearly equal blocks (start, stop)."""
    k = math.ceil(n / size)
    cut = [round(i * n / k) for i in range(k + 1)]
    return [(cut[i], cut[i + 1]) for i in range(k)]


def gemm(cfg: ChipConfig, M: int, K: int, N: int, dtype: str = "i8", planes=None) -> Kernel:
    """A program computing C = A @ B on the MXM planes `planes` (default: all).

    dtype "i8": A, B int8, C int32 (exact). dtype "f16": A, B float16, C float32 (each K/L*2-long sub-product
    rounded once, then summed in fp32 across K tiles: docs/kernels.md gives the error bound).
    Returns a `Kernel` with layouts "a", "b" (inputs) and "c" (output). Raises ValueError for bad shapes and
    `CapacityError` if the operands do not fit the SRAM or the planes lack streams.
    """
    for name, v in (("M", M), ("K", K), ("N", N)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"gemm: {name} must be a positive int, got {v!r}")
    if dtype not in ("i8", "f16"):
        raise ValueError(f"gemm: dtype must be 'i8' or 'f16', got {dtype!r}")
    if cfg.n_planes == 0:
        raise ValueError(f"gemm: {cfg.name} has no MXM planes")
    planes = tuple(range(cfg.n_planes)) if planes is None else tuple(planes)
    if not planes or len(set(planes)) != len(planes) or not all(0 <= p < cfg.n_planes for p in planes):
        raise ValueError(f"gemm: planes must be distinct plane indices in 0..{cfg.n_planes - 1}, got {planes}")
    return _Gemm(cfg, int(M), int(K), int(N), dtype, planes).build()


class _Gemm:
    def __init__(self, cfg, M, K, N, dtype, planes):
        self.cfg, self.M, self.K, self.N, self.dtype, self.planes = cfg, M, K, N, dtype, planes
        L = cfg.n_lanes
        self.f16 = dtype == "f16"
        self.kd = L // 2 if self.f16 else L  # K rows per sub-op
        self.wa = 2 if self.f16 else 1  # activation bytes (streams per activation group)
        self.occ = 2 if self.f16 else 1
        self.Kt = math.ceil(K / self.kd)
        self.Nt = math.ceil(N / L)
        self.At = math.ceil(K / L)  # activation column tiles (L elements each)
        self.mblocks = _blocks(M, cfg.mxm_acc_rows)
        self.units = [(n, b) for n in range(self.Nt) for b in range(len(self.mblocks))]
        self.plane_of = {u: planes[i % len(planes)] for i, u in enumerate(self.units)}
        self.pos_mem = cfg.positions[cfg.mem_slices]
        self.pos_plane = cfg.positions[cfg.mxm_slices]
        self.tl = Timeline(cfg)
        self.last_write = -1

    # ------------------------------------------------------------------ resources
    def _streams(self):
        """Stream indices per plane: results (4, outgoing), activations (wa, incoming), weights (n_w, incoming)."""
        cfg, S = self.cfg, self.cfg.n_streams
        self.din = {p: cfg.plane_in_dir(p) for p in self.planes}
        self.res, self.act, self.wst = {}, {}, {}
        for d in (0, 1):
            producers = [p for p in self.planes if self.din[p] != d]
            consumers = [p for p in self.planes if self.din[p] == d]
            for i, p in enumerate(producers):
                self.res[p] = 4 * i
            nxt = 4 * len(producers)
            for p in consumers:
                nxt += -nxt % self.wa
                self.act[p] = nxt
                nxt += self.wa
            if consumers:
                n_w = (S - nxt) // len(consumers)
                if n_w < 1:
                    raise CapacityError(
                        f"gemm: {cfg.name} has {S} streams per direction, too few for the results, activations "
                        f"and weights of planes {consumers} (use fewer planes)"
                    )
                for i, p in enumerate(consumers):
                    self.wst[p] = (nxt + i * n_w, n_w)

    def _slices(self):
        """MEM slice roles, sized by the words each operand needs: result slices (4 per plane, one per byte, or a
        multiple), one activation slice group per plane, and weight slices (at least one per weight stream).
        Too few slices: roles share slices (the scheduler then spaces their accesses)."""
        M, L = self.cfg.n_mem, self.cfg.n_lanes
        P = len(self.planes)
        if M < 4:
            raise CapacityError(
                f"gemm: needs at least 4 MEM slices (one per byte of a 32-bit result); {self.cfg.name} has {M}"
            )
        n_w = max(n for _, n in self.wst.values())
        need = {"a": self.M * self.At * self.wa, "b": self.Kt * self.Nt * L, "c": self.M * self.Nt * 4}
        total = sum(need.values())
        if M >= 4 * P + self.wa * P + n_w:
            nc = max(1, min(round(M * need["c"] / total / (4 * P)), (M - self.wa * P - n_w) // (4 * P)))
            na = max(self.wa, min(round(M * need["a"] / total / P), (M - 4 * P * nc - n_w) // P))
            nb = M - 4 * P * nc - na * P
        else:
            nc, na, nb = 1, self.wa, min(M, n_w)
        take = iter(list(range(M)) * (1 + (4 * P * nc + na * P + nb) // M))
        self.cs = {p: [[next(take) for _ in range(nc)] for _ in range(4)] for p in self.planes}
        self.ag = [[next(take) for _ in range(na)] for _ in range(P)]
        nb = min(M, nb)
        self.bs = [next(take) for _ in range(nb)]  # nb <= M consecutive takes: distinct slices
        self.chunk = min(n_w, nb)  # rows per LW: each from its own slice

    # ------------------------------------------------------------------ layouts
    def _layouts(self):
        cfg, L, M = self.cfg, self.cfg.n_lanes, self.M
        alloc = Allocator(cfg)
        P = len(self.planes)
        # A [M, K]: rows of block b, column tile t, byte j in slice ag[b % P][(t * wa + j) % ga], contiguous.
        a_sl = np.zeros((M, self.At, self.wa), np.int32)
        a_ad = np.zeros_like(a_sl)
        for b, (m0, m1) in enumerate(self.mblocks):
            grp = self.ag[b % P]
            for t in range(self.At):
                for j in range(self.wa):
                    s = grp[(t * self.wa + j) % len(grp)]
                    a_sl[m0:m1, t, j] = s
                    a_ad[m0:m1, t, j] = alloc.take(s, m1 - m0, "gemm operand A") + np.arange(m1 - m0)
        # B: every byte row r (0..L-1) of every weight tile (k tile, n tile), padding rows included.
        bsl = np.zeros((self.Kt, self.Nt, L), np.int32)
        bad = np.zeros_like(bsl)
        # byte row r of a tile comes from slice g*chunk + r % chunk of the B slices, g rotating over the tiles:
        # each slice then serves one stream of the LW chunks, at consecutive addresses (a Read + Repeat per tile)
        groups = max(1, len(self.bs) // self.chunk)
        for kk in range(self.Kt):
            for n in range(self.Nt):
                g = (kk * self.Nt + n) % groups
                for r in range(L):
                    s = self.bs[g * self.chunk + r % self.chunk]
                    bsl[kk, n, r], bad[kk, n, r] = s, alloc.take(s, 1, "gemm operand B")
        self.bsl, self.bad = bsl, bad
        # the real rows of B as a TensorLayout [K, N] (bytes j of row k: byte row k*wa + j of its tile)
        k = np.arange(self.K)
        kk, q = k // self.kd, k % self.kd
        j = np.arange(self.wa)
        rows = q[:, None] * self.wa + j[None, :]  # [K, wa]
        b_sl = bsl[kk[:, None, None], np.arange(self.Nt)[None, :, None], rows[:, None, :]]
        b_ad = bad[kk[:, None, None], np.arange(self.Nt)[None, :, None], rows[:, None, :]]
        real = np.zeros(bsl.shape, bool)
        real[kk[:, None, None], np.arange(self.Nt)[None, :, None], rows[:, None, :]] = True
        self.zeros = np.stack([bsl[~real], bad[~real]], 1).astype(np.int32)
        # C [M, N]: plane p's results, byte j, in its slices cs[p][j] (unit by unit in turn), in emission order.
        c_sl = np.zeros((M, self.Nt, 4), np.int32)
        c_ad = np.zeros_like(c_sl)
        done = {p: 0 for p in self.planes}
        for u in self.units:
            n, b = u
            m0, m1 = self.mblocks[b]
            p = self.plane_of[u]
            for j, group in enumerate(self.cs[p]):
                s = group[done[p] % len(group)]
                c_sl[m0:m1, n, j] = s
                c_ad[m0:m1, n, j] = alloc.take(s, m1 - m0, "gemm result C") + np.arange(m1 - m0)
            done[p] += 1
        out = "f32" if self.f16 else "i32"
        self.layouts = {
            "a": TensorLayout((self.M, self.K), self.dtype, a_sl, a_ad),
            "b": TensorLayout((self.K, self.N), self.dtype, b_sl, b_ad),
            "c": TensorLayout((self.M, self.N), out, c_sl, c_ad),
        }

    # ------------------------------------------------------------------ placement helpers
    def _dist(self, s: int, p: int, incoming: bool) -> int:
        """Hops between MEM slice s and plane p; the slice must be upstream (incoming) / downstream of the plane."""
        d = int(self.pos_mem[s]) - int(self.pos_plane[p])
        if self.din[p] == 0:  # east plane: fed by eastward streams from the west, emits westward
            d = -d
        if d <= 0:
            raise CapacityError(f"gemm: MEM slice {self.cfg.mem_names[s]} is not on plane {p}'s stream path")
        return d

    def _read_ok(self, s, a, t) -> bool:
        return self.tl.mem_free(s, t, "Read", a)

    def _read(self, s, a, t, stream):
        self.tl.place_mem(s, t, I("Read", (int(a), stream)))

    def _write_ok(self, s, a, t) -> bool:
        return self.tl.mem_free(s, t, "Write", a)

    def _write(self, s, a, t, stream):
        self.tl.place_mem(s, t, I("Write", (int(a), stream)))
        self.last_write = max(self.last_write, t)

    # ------------------------------------------------------------------ weights
    def _load_weights(self, p: int, step, start: int) -> int:
        """Place the LWs (and their Reads) of a step's weight tile from cycle `start`; return the last LW cycle."""
        n, _, kk = step
        base, n_w = self.wst[p]
        n_w = min(n_w, self.chunk)
        dR, L = self.cfg.delay("Read"), self.cfg.n_lanes
        q = f"MXM.{p}.W"
        t = start
        for r0 in range(0, L, n_w):
            rows = range(r0, min(L, r0 + n_w))
            src = [(int(self.bsl[kk, n, r]), int(self.bad[kk, n, r])) for r in rows]
            while True:
                reads = [(s, a, t - dR - self._dist(s, p, True)) for s, a in src]
                if (
                    self.tl.free(q, t)
                    and all(self._read_ok(*x) for x in reads)
                    and len({x[0] for x in reads}) == len(reads)
                ):
                    break
                t += 1
            for i, (s, a, tr) in enumerate(reads):
                self._read(s, a, tr, _stream(self.din[p], base + i))
            self.tl.place(q, t, I("LW", (r0, _stream(self.din[p], base), len(rows))))
            t += 1
        return t - 1

    # ------------------------------------------------------------------ the schedule
    def _steps(self, p):
        return [(n, b, kk) for (n, b) in self.units if self.plane_of[(n, b)] == p for kk in range(self.Kt)]

    def _schedule(self):
        cfg = self.cfg
        d_iw, lat, d_acc, dR = cfg.delay("mxm.iw"), abc_latency(cfg), cfg.delay("mxm.acc"), cfg.delay("Read")
        a, c = self.layouts["a"], self.layouts["c"]
        st = {}
        for p in self.planes:
            steps = self._steps(p)
            if steps:
                st[p] = {"steps": steps, "i": 0, "row": 0, "t": 0, "last_abc": -1, "lw_last": {0: None}}
                st[p]["lw_last"][0] = self._load_weights(p, steps[0], 0)
                self._begin_step(p, st[p], d_iw)
        heap = [(s["t"], p) for p, s in st.items()]
        heapq.heapify(heap)
        while heap:
            t, p = heapq.heappop(heap)
            s = st[p]
            n, b, kk = s["steps"][s["i"]]
            m0, m1 = self.mblocks[b]
            m = m0 + s["row"]
            tile, half = divmod(kk, 2) if self.f16 else (kk, 0)
            reads = []
            for j in range(self.wa):
                sl, ad = int(a.slice[m, tile, j]), int(a.addr[m, tile, j])
                reads.append((sl, ad, t - dR - self._dist(sl, p, True)))
            ok = all(self._read_ok(*x) for x in reads) and len({x[0] for x in reads}) == len(reads)
            last = kk == self.Kt - 1
            t_acc = t + lat
            writes = []
            if ok and last:
                for j in range(4):
                    sl, ad = int(c.slice[m, n, j]), int(c.addr[m, n, j])
                    writes.append((sl, ad, t_acc + d_acc + self._dist(sl, p, False)))
                ok = all(self._write_ok(*x) for x in writes) and len({(x[0], x[2]) for x in writes}) == 4
            if not ok:
                heapq.heappush(heap, (t + 1, p))
                continue
            din, dout = self.din[p], 1 - self.din[p]
            for j, x in enumerate(reads):
                self._read(*x, _stream(din, self.act[p] + j))
            if self.f16:
                self.tl.place(f"MXM.{p}.A", t, I("ABC.f16", (_stream(din, self.act[p]), half)))
            else:
                self.tl.place(f"MXM.{p}.A", t, I("ABC.i8", (_stream(din, self.act[p]),)))
            mode = (isa.ACC_ADD if kk else 0) | (isa.ACC_EMIT if last else 0)
            acc = "ACC.f32" if self.f16 else "ACC.i32"
            self.tl.place(f"MXM.{p}.C", t_acc, I(acc, (m - m0, mode, _stream(dout, self.res[p]))))
            for j, x in enumerate(writes):
                self._write(*x, _stream(dout, self.res[p] + j))
            s["last_abc"] = t
            s["t"] = t + self.occ
            s["row"] += 1
            if s["row"] == m1 - m0:
                s["row"] = 0
                s["i"] += 1
                if s["i"] == len(s["steps"]):
                    continue
                self._begin_step(p, s, d_iw)
            heapq.heappush(heap, (s["t"], p))

    def _begin_step(self, p, s, d_iw):
        """Install the current step's weights (IW) to take effect right after the previous step's last ABC, and
        start loading the next step's."""
        i = s["i"]
        t = max(s["lw_last"][i] + 1, s["last_abc"] + 1 - d_iw, 0)
        q = f"MXM.{p}.W"
        while not self.tl.free(q, t):
            t += 1
        self.tl.place(q, t, I("IW", ()))
        s["t"] = max(s["t"], t + d_iw)
        if i + 1 < len(s["steps"]):
            s["lw_last"][i + 1] = self._load_weights(p, s["steps"][i + 1], t + 1)

    def build(self) -> Kernel:
        self._streams()
        self._slices()
        self._layouts()
        self._schedule()
        cfg, L = self.cfg, self.cfg.n_lanes
        cycles = self.last_write + cfg.delay("Write") + 1
        peak = cfg.n_planes * L * L if not self.f16 else cfg.n_planes * (L // 2) * L // 2
        return Kernel(
            name=f"gemm_{self.dtype}_{self.M}x{self.K}x{self.N}",
            cfg=cfg,
            program=self.tl.program(),
            layouts=self.layouts,
            inputs=("a", "b"),
            outputs=("c",),
            cycles=cycles,
            macs=self.M * self.K * self.N,
            peak_macs_per_cycle=peak,
            zeros=self.zeros,
        )
