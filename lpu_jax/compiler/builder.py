"""Placing chip work in space and time: tensors in MEM slices, instructions at exact cycles, values on streams.

Every unit instruction the compiler places is a *job* of the same shape: its operand vectors are read from MEM
(one `Read` per byte, timed so that every byte reaches the unit in the cycle it issues), the unit runs, and its
result is written back to MEM (one `Write` per byte, in the cycle the byte passes the slice). The builder puts a
job at the first cycle, not earlier than its operands are in MEM, where all it needs is free: the unit's queue,
the MEM queues and SRAM banks of its Reads and Writes, the unit's output port, and a stream (group) for every
flight (`resources.Resources`). Jobs of independent operations interleave wherever those resources allow: that
is how independent work overlaps, and how a consumer starts on the first rows of a tensor while its producer
is still making the last ones.

MXM work has its own shape (`matmul`): weight tiles are loaded (LW) and installed (IW) per plane, activation rows
stream in (ABC) and the accumulators take and emit them (ACC), with the same resource rules.
"""

from __future__ import annotations

import math

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..dtypes import dtype_by_name
from ..isa import Instruction as I
from ..kernels.layout import CapacityError, TensorLayout
from ..mxm import abc_latency
from ..sxm import sxm_delay
from .resources import Resources
from .schedule import OpInfo, Placed, Schedule, TensorInfo

__all__ = ["Builder", "Vec", "SchedulingError"]

_MAX_WAIT = 200_000  # cycles a job may be pushed back before the builder gives up (a bug, never a real limit)


class SchedulingError(RuntimeError):
    """The builder found no cycle for a job (it names the job)."""


class Collision(Exception):
    """Two operand vectors of one job share a MEM slice (`index`: the later one), so they cannot both be read in
    the cycle the unit needs them."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


class Vec:
    """An operand vector: the MEM words of its bytes [(slice, addr)] and the cycle from which a Read sees them."""

    __slots__ = ("words", "ready", "writers")

    def __init__(self, words, ready, writers=()):
        self.words = [(int(s), int(a)) for s, a in words]
        self.ready = int(ready)
        self.writers = tuple(writers)


def _stream(direction: int, index: int) -> isa.Stream:
    return isa.Stream("EW"[direction], int(index))


class Builder:
    """Allocates MEM, places jobs, and records everything in a `Schedule`."""

    def __init__(self, cfg: ChipConfig, reserve_words: int = 0):
        self.cfg = cfg
        self.res = Resources(cfg)
        self.sched = Schedule(cfg)
        self.next_addr = np.full(cfg.n_mem, reserve_words, np.int64)
        self.ready: dict[str, np.ndarray] = {}  # tensor -> int64 [R, T]: cycle a Read may see the vector
        self.writer: dict[str, np.ndarray] = {}  # tensor -> int64 [R, T, w]: instruction that wrote each word
        self.pos_mem = cfg.positions[cfg.mem_slices].astype(int)
        self.pos_vxm = int(cfg.positions[cfg.vxm_slice])
        self.pos_plane = cfg.positions[cfg.mxm_slices].astype(int)
        self.pos_sxm = cfg.positions[cfg.sxm_slices].astype(int)
        self.dR, self.dW = cfg.delay("Read"), cfg.delay("Write")
        h = cfg.mem_per_hemisphere
        self.sides = (list(range(h - 1, -1, -1)), list(range(h, cfg.n_mem)))  # nearest the VXM first
        self._rr = [0, 0]
        self._side = 0
        self.op = -1
        self.plane_lw_free = {p: 0 for p in range(cfg.n_planes)}
        self.plane_abc_free = {p: 0 for p in range(cfg.n_planes)}

    # ------------------------------------------------------------------ memory
    def alloc(
        self, name: str, shape, dtype: str, role: str, value=None, side=None, replicated=False, avoid=()
    ) -> TensorInfo:
        """Place a matrix [R, C] of `dtype`: each byte plane in its own slice of one hemisphere (so a vector's
        bytes travel as one stream group), rows at consecutive addresses. Even and odd column tiles, and even and
        odd rows, go to different slice groups where the hemisphere has room, so that a job combining two tiles
        or two rows of one tensor reads them in the same cycle. Slices in `avoid` (the operands of the job that
        writes this tensor) and the most used slices are taken last."""
        cfg = self.cfg
        R, C = int(shape[0]), int(shape[1])
        w = dtype_by_name(dtype).width
        T = math.ceil(C / cfg.n_lanes)
        if side is None:
            side = self._side
            self._side ^= 1
        cands = self.sides[side]
        if len(cands) < w:
            raise CapacityError(
                f"{name}: a {dtype} tensor needs {w} MEM slices in one hemisphere; {cfg.name} has {len(cands)}"
            )
        avoid = set(avoid)
        order = sorted(
            range(len(cands)),
            key=lambda i: (cands[i] in avoid, self.next_addr[cands[i]], (i - self._rr[side]) % len(cands)),
        )
        groups = 2 if (T > 1 or R > 1) and len(cands) >= 2 * w else 1
        chosen = [[cands[i] for i in order[g * w : (g + 1) * w]] for g in range(groups)]
        self._rr[side] = (self._rr[side] + w * groups) % len(cands)
        sl = np.zeros((R, T, w), np.int32)
        ad = np.zeros((R, T, w), np.int32)
        rr, tt = np.meshgrid(np.arange(R), np.arange(T), indexing="ij")
        grp = (rr + tt) % groups
        for g in range(groups):
            n_g = int((grp == g).sum())
            for b, s in enumerate(chosen[g]):
                a0 = int(self.next_addr[s])
                if a0 + n_g > cfg.mem_words:
                    self._capacity(name, R * T * w)
                self.next_addr[s] = a0 + n_g
                sl[..., b][grp == g] = s
                ad[..., b][grp == g] = a0 + np.arange(n_g)
        lay = TensorLayout((R, C), dtype, sl, ad)
        info = TensorInfo(name, lay, role, value, (R, C), replicated)
        self.sched.tensors[name] = info
        ready = 0 if role in ("param", "const", "input") else 1 << 60
        self.ready[name] = np.full((R, T), ready, np.int64)
        self.writer[name] = np.full((R, T, w), -1, np.int64)
        return info

    def _capacity(self, name, need_words):
        cfg = self.cfg
        used = int(self.next_addr.sum()) * cfg.n_lanes
        raise CapacityError(
            f"the model does not fit the SRAM of {cfg.name}: placing {name} needs {need_words * cfg.n_lanes} more "
            f"bytes; {used} of {cfg.sram_bytes} bytes are already used ({cfg.n_mem} slices x {cfg.mem_words} "
            f"words x {cfg.n_lanes} B)"
        )

    def vec(self, name: str, r: int, t: int) -> Vec:
        lay = self.sched.tensors[name].layout
        return Vec(zip(lay.slice[r, t], lay.addr[r, t]), self.ready[name][r, t], self.writer[name][r, t])

    def out_words(self, name: str, r: int, t: int):
        lay = self.sched.tensors[name].layout
        return list(zip(lay.slice[r, t].tolist(), lay.addr[r, t].tolist()))

    def done(self, name: str, r: int, t: int, ready: int, writers) -> None:
        self.ready[name][r, t] = ready
        self.writer[name][r, t] = writers

    # ------------------------------------------------------------------ ops and instructions
    def begin(self, kind: str, source: str = "", **detail) -> int:
        self.sched.ops.append(OpInfo(kind, source, detail))
        self.op = len(self.sched.ops) - 1
        return self.op

    def _put(self, queue: str, cycle: int, ins: isa.Instruction) -> int:
        self.res.tl.place(queue, cycle, ins)
        self.sched.instrs.append(Placed(queue, int(cycle), ins, self.op))
        o = self.sched.ops[self.op]
        o.first, o.last = min(o.first, cycle), max(o.last, cycle)
        return len(self.sched.instrs) - 1

    def _put_mem(self, s: int, cycle: int, ins: isa.Instruction) -> int:
        i = self._put(f"MEM.{self.cfg.mem_names[s]}", cycle, ins)
        self.res.tl.reserve(self.res.tl._bank_use(s, cycle, ins.mnemonic, ins.operands[0]))
        return i

    def _link(self, consumer: int, sid: int, producer: int) -> None:
        self.sched.links.append((consumer, sid, producer))
        if sid == -1:
            dep = self.sched.instrs[producer].op
            if dep != self.op:
                self.sched.ops[self.op].detail.setdefault("deps", set()).add(dep)

    def _dir(self, src_pos: int, dst_pos: int) -> int:
        return 0 if dst_pos > src_pos else 1

    # ------------------------------------------------------------------ one job
    def job(
        self,
        queues,
        pos_u: int,
        srcs: list[Vec],
        dst: list | None,
        delay: int,
        make,
        port=None,
        what: str = "",
        t0: int = 0,
        occupancy: int = 1,
        src_widths=None,
    ):
        """Place one unit instruction fed from MEM and (if `dst`) written back to MEM.

        queues: candidate queue names (the first free one is used). srcs: operand vectors (each one stream
        group). dst: the result's words [(slice, addr)] or None. delay: issue to landing. make(queue,
        [src stream bases], dst base) -> Instruction. Returns (issue cycle, instruction index, write indices).
        """
        cfg, res, tl = self.cfg, self.res, self.res.tl
        dR, dW = self.dR, self.dW
        # one Read serves operands that are the same vector; different vectors must come from different slices
        fields = []
        uniq: list[Vec] = []
        for v in srcs:
            k = next((i for i, u in enumerate(uniq) if u.words == v.words), None)
            if k is None:
                uniq.append(v)
                k = len(uniq) - 1
            fields.append(k)
        used = set()
        for i, v in enumerate(uniq):
            sl = {s for s, _ in v.words}
            if sl & used or len(sl) != len(v.words):
                raise Collision(i if sl & used else -1)
            used |= sl
        srcs = uniq
        src_pos = [[int(self.pos_mem[s]) for s, _ in v.words] for v in srcs]
        src_dir = []
        for ps in src_pos:
            dirs = {self._dir(p, pos_u) for p in ps}
            if len(dirs) != 1:
                raise SchedulingError(f"{what}: an operand's bytes lie on both sides of the unit")
            src_dir.append(dirs.pop())
        dst_pos = [int(self.pos_mem[s]) for s, _ in dst] if dst else []
        if dst:
            dirs = {self._dir(pos_u, p) for p in dst_pos}
            if len(dirs) != 1:
                raise SchedulingError(f"{what}: the result's bytes lie on both sides of the unit")
            out_dir = dirs.pop()
        t = t0
        for v, ps in zip(srcs, src_pos):
            t = max(t, v.ready + dR + max(abs(p - pos_u) for p in ps))
        start = t
        while True:
            if t - start > _MAX_WAIT:
                raise SchedulingError(f"no cycle found for {what} within {_MAX_WAIT} cycles of {start}")
            q = next((q for q in queues if tl.free(q, t, occupancy)), None)
            if q is None or (port is not None and not res.port_free(port(q), t + delay)):
                t += 1
                continue
            acc = []  # (slice, cycle, mnemonic, addr)
            for v, ps in zip(srcs, src_pos):
                for (s, a), p in zip(v.words, ps):
                    acc.append((s, t - dR - abs(p - pos_u), "Read", a))
            if dst:
                for (s, a), p in zip(dst, dst_pos):
                    acc.append((s, t + delay + abs(p - pos_u), "Write", a))
            if not self._mem_ok(acc):
                t += 1
                continue
            mark = res.mark()
            bases = []
            ok = True
            for v, ps, d in zip(srcs, src_pos, src_dir):
                w = len(v.words)
                base = self._find_in(d, w, ps, pos_u, t)
                if base is None:
                    ok = False
                    break
                for b, p in enumerate(ps):
                    res.reserve_flight(
                        d * cfg.n_streams + base + b, res.diag(d, pos_u, t), min(p, pos_u), max(p, pos_u)
                    )
                bases.append(base)
            dbase = None
            if ok and dst:
                dbase = self._find_in(out_dir, len(dst), dst_pos, pos_u, t + delay)
                ok = dbase is not None
                if ok:
                    for b, p in enumerate(dst_pos):
                        res.reserve_flight(
                            out_dir * cfg.n_streams + dbase + b,
                            res.diag(out_dir, pos_u, t + delay),
                            min(p, pos_u),
                            max(p, pos_u),
                        )
            if not ok:
                res.undo(mark)
                t += 1
                continue
            break
        # commit
        if port is not None:
            res.reserve_port(port(q), t + delay)
        reads = []
        k = 0
        for v, ps, d, base in zip(srcs, src_pos, src_dir, bases):
            for b, ((s, a), p) in enumerate(zip(v.words, ps)):
                ri = self._put_mem(s, t - dR - abs(p - pos_u), I("Read", (a, _stream(d, base + b))))
                if b < len(v.writers) and v.writers[b] >= 0:
                    self._link(ri, -1, int(v.writers[b]))
                reads.append((ri, d * cfg.n_streams + base + b))
                k += 1
        groups = [_stream(d, b) for d, b in zip(src_dir, bases)]
        ui = self._put(q, t, make(q, [groups[k] for k in fields], _stream(out_dir, dbase) if dst else None))
        for ri, sid in reads:
            self._link(ui, sid, ri)
        writes = []
        if dst:
            for b, ((s, a), p) in enumerate(zip(dst, dst_pos)):
                wi = self._put_mem(s, t + delay + abs(p - pos_u), I("Write", (a, _stream(out_dir, dbase + b))))
                self._link(wi, out_dir * cfg.n_streams + dbase + b, ui)
                writes.append(wi)
        end = max((self.sched.instrs[w].cycle for w in writes), default=t) + dW
        return t, ui, writes, end

    def _mem_ok(self, acc) -> bool:
        tl = self.res.tl
        keys = set()
        banks = set()
        for s, c, m, a in acc:
            if (s, c) in keys:
                return False
            keys.add((s, c))
            b = tl._bank_use(s, c, m, a)
            if b in banks or not tl.mem_free(s, c, m, a):
                return False
            banks.add(b)
        return True

    def _find_in(self, d, w, ps, pos_u, t):
        """An aligned stream group base for w bytes whose flights run between positions ps and the unit (pos_u),
        on the diagonal through (pos_u, t): operands arriving at t, or a result landing at t."""
        res, S = self.res, self.cfg.n_streams
        diag = res.diag(d, pos_u, t)
        for base in range(0, S - w + 1, w):
            if all(res.flight_free(d * S + base + b, diag, min(p, pos_u), max(p, pos_u)) for b, p in enumerate(ps)):
                return base
        return None

    # ------------------------------------------------------------------ unit jobs
    def vxm(self, mnemonic: str, srcs: list[Vec], dst, what: str, t0: int = 0):
        """One VXM instruction `mnemonic` (e.g. "add.f32") on any free ALU."""
        op, t1, _ = isa.vxm_parts(mnemonic)
        d = self.cfg.delay(isa.vxm_delay_class(op, t1))
        queues = [f"VXM.{a}" for a in range(self.cfg.vxm_alus)]

        def make(q, sb, db):
            return I(mnemonic, (db, *sb))

        while True:
            try:
                return self.job(queues, self.pos_vxm, srcs, dst, d, make, port=lambda q: q, what=what, t0=t0)
            except Collision as c:
                srcs = self._separate(srcs, c.index, what)

    def _separate(self, srcs: list[Vec], index: int, what: str) -> list[Vec]:
        """Copy operand `index` (by a VXM mov) into slices that no other operand uses."""
        if index < 0:
            raise SchedulingError(f"{what}: an operand vector has two bytes in one MEM slice")
        v = srcs[index]
        others = {s for i, u in enumerate(srcs) if i != index for s, _ in u.words}
        dt = {1: "i8", 2: "f16", 4: "f32"}[len(v.words)]
        name = f"_copy{len(self.sched.tensors)}"
        side = 0 if int(self.pos_mem[v.words[0][0]]) < self.pos_vxm else 1
        self.alloc(name, (1, self.cfg.n_lanes), dt, "temp", side=side, avoid=others)
        if {s for s, _ in self.out_words(name, 0, 0)} & others:
            self.sched.tensors.pop(name)
            self.alloc(name, (1, self.cfg.n_lanes), dt, "temp", side=1 - side, avoid=others)
        _, _, ws, end = self.vxm(f"mov.{dt}", [v], self.out_words(name, 0, 0), f"copy for {what}")
        self.done(name, 0, 0, end, ws)
        out = list(srcs)
        out[index] = self.vec(name, 0, 0)
        return out

    def sxm(self, mnemonic: str, src: Vec, extra: Vec | None, n: int, dst, what: str, t0: int = 0):
        """One SXM lane instruction on a single byte stream: Shift/Rotate by n lanes, or Permute with the
        2-byte lane map `extra`. Any unit of either SXM slice."""
        cfg = self.cfg
        d = sxm_delay(cfg, mnemonic, n)
        best = None
        for j, name in enumerate(cfg.sxm_names):
            queues = [f"SXM.{name}.{u}" for u in range(cfg.sxm_units)]
            if not queues:
                continue
            srcs = [src] if extra is None else [src, extra]

            def make(q, sb, db):
                if mnemonic == "Permute":
                    return I("Permute", (db, sb[0], sb[1]))
                return I(mnemonic, (db, sb[0], n))

            best = (queues, int(self.pos_sxm[j]), srcs, make)
            # prefer the SXM slice nearer the operand
            if abs(int(self.pos_mem[src.words[0][0]]) - int(self.pos_sxm[j])) <= cfg.n_positions // 2:
                break
        if best is None:
            raise SchedulingError(f"{cfg.name} has no SXM units")
        queues, pos, srcs, make = best
        while True:
            try:
                return self.job(queues, pos, srcs, dst, d, make, port=lambda q: q, what=what, t0=t0)
            except Collision as c:
                srcs = self._separate(srcs, c.index, what)

    # ------------------------------------------------------------------ matmul
    def matmul(self, a: str, w: str, out: str, f16: bool, what: str, a_rows=None):
        """out[M, N] = a[M, K] @ w[K, N] on the MXM: int8 -> int32 or fp16 -> fp32 (weights `w` stored by
        `alloc_weights`). Weight-stationary: per (N tile, M block) unit, K tiles in order; the next tile's
        weights load while the current one computes."""
        cfg, _res, tl = self.cfg, self.res, self.res.tl
        L = cfg.n_lanes
        winfo = self.sched.tensors[w]
        Kt, Nt, _kd = winfo.detail_kt, winfo.detail_nt, (L // 2 if f16 else L)
        M = self.sched.tensors[out].layout.shape[0]
        a_rows = np.arange(M) if a_rows is None else np.asarray(a_rows)
        blocks = _blocks(M, cfg.mxm_acc_rows)
        units = [(n, b) for n in range(Nt) for b in range(len(blocks))]
        planes = list(range(cfg.n_planes))
        lat, d_acc, d_iw = abc_latency(cfg), cfg.delay("mxm.acc"), cfg.delay("mxm.iw")
        occ = 2 if f16 else 1
        self.sched.ops[self.op].detail.update(planes=len(planes), k_tiles=Kt, n_tiles=Nt, m_blocks=len(blocks))
        # per plane, across matmuls: the cycle from which the next tile's LWs may start (after the last IW, which
        # captured the buffer) and the cycle after the last ABC
        plane_free, abc_free = self.plane_lw_free, self.plane_abc_free
        for i, (n, b) in enumerate(units):
            p = planes[i % len(planes)]
            din, dout = cfg.plane_in_dir(p), 1 - cfg.plane_in_dir(p)
            pos_p = int(self.pos_plane[p])
            m0, m1 = blocks[b]
            last_abc = abc_free[p] - 1
            lw_t = plane_free[p]
            for kk in range(Kt):
                lw_end = self._load_tile(p, w, kk, n, lw_t, what)
                # IW: after the tile's LWs, and taking effect right after the previous tile's last ABC
                t_iw = max(lw_end + 1, last_abc + 1 - d_iw)
                while not tl.free(f"MXM.{p}.W", t_iw):
                    t_iw += 1
                self._put(f"MXM.{p}.W", t_iw, I("IW", ()))
                t = t_iw + d_iw
                tile, half = divmod(kk, 2) if f16 else (kk, 0)
                for m in range(m0, m1):
                    src = self.vec(a, int(a_rows[m]), tile)
                    last = kk == Kt - 1
                    mode = (isa.ACC_ADD if kk else 0) | (isa.ACC_EMIT if last else 0)
                    dst = self.out_words(out, m, n) if last else None
                    t, ai = self._abc(
                        p, pos_p, din, dout, src, dst, t, lat, d_acc, f16, half, m - m0, mode, out, m, n, what
                    )
                    last_abc = t
                    t += occ
                lw_t = t_iw + 1  # the next tile's LWs may start once this one is installed
            abc_free[p] = last_abc + 1
            plane_free[p] = lw_t

    def _abc(self, p, pos_p, din, dout, src: Vec, dst, t, lat, d_acc, f16, half, row, mode, out, m, n, what):
        """Place one activation row: its Reads, ABC at t' >= t, ACC at t' + lat (and on the last K tile the
        four Writes of the emitted row)."""
        cfg, res, tl = self.cfg, self.res, self.res.tl
        S = cfg.n_streams
        ps = [int(self.pos_mem[s]) for s, _ in src.words]
        t = max(t, src.ready + self.dR + max(abs(x - pos_p) for x in ps))
        pds = [int(self.pos_mem[s]) for s, _ in dst] if dst else []
        qa, qc = f"MXM.{p}.A", f"MXM.{p}.C"
        occ = 2 if f16 else 1
        start = t
        while True:
            if t - start > _MAX_WAIT:
                raise SchedulingError(f"no cycle found for an ABC of {what}")
            t_acc = t + lat
            if not (tl.free(qa, t, occ) and tl.free(qc, t_acc)):
                t += 1
                continue
            acc = [(s, t - self.dR - abs(x - pos_p), "Read", a) for (s, a), x in zip(src.words, ps)]
            if dst:
                acc += [(s, t_acc + d_acc + abs(x - pos_p), "Write", a) for (s, a), x in zip(dst, pds)]
            if not self._mem_ok(acc):
                t += 1
                continue
            mark = res.mark()
            base = self._find_in(din, len(src.words), ps, pos_p, t)
            ok = base is not None
            if ok:
                for b, x in enumerate(ps):
                    res.reserve_flight(din * S + base + b, res.diag(din, pos_p, t), min(x, pos_p), max(x, pos_p))
            dbase = 0
            if ok and dst:
                dbase = self._find_in(dout, 4, pds, pos_p, t_acc + d_acc)
                ok = dbase is not None
                if ok:
                    for b, x in enumerate(pds):
                        res.reserve_flight(
                            dout * S + dbase + b, res.diag(dout, pos_p, t_acc + d_acc), min(x, pos_p), max(x, pos_p)
                        )
            if not ok:
                res.undo(mark)
                t += 1
                continue
            break
        reads = []
        for b, ((s, a), x) in enumerate(zip(src.words, ps)):
            ri = self._put_mem(s, t - self.dR - abs(x - pos_p), I("Read", (a, _stream(din, base + b))))
            if b < len(src.writers) and src.writers[b] >= 0:
                self._link(ri, -1, int(src.writers[b]))
            reads.append((ri, din * S + base + b))
        ins = I("ABC.f16", (_stream(din, base), half)) if f16 else I("ABC.i8", (_stream(din, base),))
        ai = self._put(qa, t, ins)
        for ri, sid in reads:
            self._link(ai, sid, ri)
        ci = self._put(qc, t + lat, I("ACC.f32" if f16 else "ACC.i32", (row, mode, _stream(dout, dbase))))
        self._link(ci, -2, ai)
        if dst:
            ws = []
            for b, ((s, a), x) in enumerate(zip(dst, pds)):
                wi = self._put_mem(s, t + lat + d_acc + abs(x - pos_p), I("Write", (a, _stream(dout, dbase + b))))
                self._link(wi, dout * S + dbase + b, ci)
                ws.append(wi)
            end = max(self.sched.instrs[x].cycle for x in ws) + self.dW
            self.done(out, m, n, end, ws)
        return t, ai

    def _load_tile(self, p, w, kk, n, t, what) -> int:
        """LW the L byte rows of weight tile (kk, n) into plane p from cycle t, up to `chunk` rows a cycle, each
        row from its own slice; returns the last LW's cycle."""
        cfg, res, tl = self.cfg, self.res, self.res.tl
        S, L = cfg.n_streams, cfg.n_lanes
        winfo = self.sched.tensors[w]
        sl, ad = winfo.tile_slice[kk, n], winfo.tile_addr[kk, n]  # [L]
        din = cfg.plane_in_dir(p)
        pos_p = int(self.pos_plane[p])
        q = f"MXM.{p}.W"
        chunk = winfo.chunk
        last = t
        for r0 in range(0, L, chunk):
            rows = range(r0, min(L, r0 + chunk))
            start = t
            while True:
                if t - start > _MAX_WAIT:
                    raise SchedulingError(f"no cycle found for a weight load of {what}")
                if not tl.free(q, t):
                    t += 1
                    continue
                ps = [int(self.pos_mem[sl[r]]) for r in rows]
                acc = [(int(sl[r]), t - self.dR - abs(x - pos_p), "Read", int(ad[r])) for r, x in zip(rows, ps)]
                if not self._mem_ok(acc):
                    t += 1
                    continue
                base = self._find_run(din, len(rows), ps, pos_p, t)
                if base is None:
                    t += 1
                    continue
                break
            reads = []
            for b, (r, x) in enumerate(zip(rows, ps)):
                res.reserve_flight(din * S + base + b, res.diag(din, pos_p, t), min(x, pos_p), max(x, pos_p))
                ri = self._put_mem(
                    int(sl[r]), t - self.dR - abs(x - pos_p), I("Read", (int(ad[r]), _stream(din, base + b)))
                )
                reads.append((ri, din * S + base + b))
            li = self._put(q, t, I("LW", (r0, _stream(din, base), len(rows))))
            for ri, sid in reads:
                self._link(li, sid, ri)
            last = t
            t += 1
        return last

    def _find_run(self, d, n, ps, pos_u, t):
        """A base for n consecutive streams (any alignment) free for rows arriving from ps at pos_u in cycle t."""
        res, S = self.res, self.cfg.n_streams
        diag = res.diag(d, pos_u, t)
        for base in range(0, S - n + 1):
            if all(res.flight_free(d * S + base + b, diag, min(p, pos_u), max(p, pos_u)) for b, p in enumerate(ps)):
                return base
        return None

    def alloc_weights(self, name: str, value: np.ndarray, f16: bool, chunk: int | None = None) -> TensorInfo:
        """Place a weight matrix [K, N] (int8 or float16) as MXM tiles: tile (kk, n) has L byte rows (int8: weight
        rows; fp16: weight row k's two bytes are byte rows 2k, 2k+1), padding rows zero. Byte row r of a tile is
        in slice `group[r % chunk]`, so one LW of `chunk` rows reads `chunk` different slices in one cycle."""
        cfg = self.cfg
        L, S = cfg.n_lanes, cfg.n_streams
        K, N = value.shape
        kd = L // 2 if f16 else L
        Kt, Nt = math.ceil(K / kd), math.ceil(N / L)
        chunk = min(chunk or S // 2, cfg.n_mem, S)
        # the slices with the most free words
        order = np.argsort(self.next_addr, kind="stable")[:chunk]
        group = [int(s) for s in order]
        tsl = np.zeros((Kt, Nt, L), np.int32)
        tad = np.zeros((Kt, Nt, L), np.int32)
        for i, s in enumerate(group):
            rows = [r for r in range(L) if r % chunk == i]
            need = Kt * Nt * len(rows)
            a0 = int(self.next_addr[s])
            if a0 + need > cfg.mem_words:
                self._capacity(name, need * len(group))
            self.next_addr[s] = a0 + need
            addrs = a0 + np.arange(need).reshape(Kt, Nt, len(rows))
            tsl[:, :, rows] = s
            tad[:, :, rows] = addrs
        # the stored matrix: [Kt * Nt * L, L] byte rows, as a TensorLayout of uint8 rows
        rows_bytes = np.zeros((Kt, Nt, L, L), np.uint8)
        wv = np.zeros((Kt * kd, Nt * L), value.dtype)
        wv[:K, :N] = value
        if f16:
            u = wv.view(np.uint16).astype(np.uint32)
            b = [(u & 0xFF).astype(np.uint8), (u >> 8).astype(np.uint8)]
            if cfg.group_byte_order == "big":
                b = b[::-1]
            for kk in range(Kt):
                for n in range(Nt):
                    blk = slice(kk * kd, (kk + 1) * kd), slice(n * L, (n + 1) * L)
                    rows_bytes[kk, n, 0::2] = b[0][blk]
                    rows_bytes[kk, n, 1::2] = b[1][blk]
        else:
            v8 = wv.view(np.uint8)
            for kk in range(Kt):
                for n in range(Nt):
                    rows_bytes[kk, n] = v8[kk * L : (kk + 1) * L, n * L : (n + 1) * L]
        flat = rows_bytes.reshape(-1, L)
        lay = TensorLayout((flat.shape[0], L), "u8", tsl.reshape(-1, 1, 1), tad.reshape(-1, 1, 1))
        info = TensorInfo(name, lay, "param", flat, (K, N))
        info.tile_slice, info.tile_addr, info.chunk = tsl, tad, chunk
        info.detail_kt, info.detail_nt = Kt, Nt
        self.sched.tensors[name] = info
        return info


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    k = math.ceil(n / size)
    cut = [round(i * n / k) for i in range(k + 1)]
    return [(cut[i], cut[i + 1]) for i in range(k)]
