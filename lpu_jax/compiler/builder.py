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

import functools
import math

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..dtypes import dtype_by_name, pack_np
from ..isa import Instruction as I
from ..kernels.gemm import _blocks
from ..kernels.layout import CapacityError, TensorLayout
from ..kernels.timeline import first_free
from ..mxm import abc_latency
from ..sxm import sxm_delay
from .resources import Resources
from .schedule import OpInfo, Placed, Schedule, TensorInfo

__all__ = ["Builder", "Vec", "SchedulingError"]

_MAX_WAIT = 200_000  # cycles a job may be pushed back before the builder gives up (a bug, never a real limit)


class SchedulingError(RuntimeError):
    """The builder found no cycle for a job (it names the job)."""


class Row:
    """One byte row of an MXM weight tile: a MEM word, the cycle from which it can be read, and its writer."""

    __slots__ = ("slice", "addr", "ready", "writer")

    def __init__(self, s, a, ready=0, writer=-1):
        self.slice, self.addr, self.ready, self.writer = int(s), int(a), int(ready), int(writer)


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
        # memory reuse: words of released tensors, per slice sorted [start, length] ranges; a reused word may be
        # written only after the last Read of its previous value (and after that value's own Write)
        self.free_ranges: list[list[list[int]]] = [[] for _ in range(cfg.n_mem)]
        self.free_words = np.zeros(cfg.n_mem, np.int64)
        self.created: list[str] = []  # tensors placed by `alloc`, in order
        self.last_read: dict[tuple[int, int], int] = {}  # (slice, addr) -> the last cycle a Read of it issues
        self.free_at: dict[tuple[int, int], int] = {}  # (slice, addr) -> a Write must commit after this cycle
        self.plane_lw_free = {p: 0 for p in range(cfg.n_planes)}
        self.plane_abc_free = {p: 0 for p in range(cfg.n_planes)}

    def side_of(self, s: int) -> int:
        """The hemisphere (0 west, 1 east) of MEM slice s."""
        return 0 if s < self.cfg.mem_per_hemisphere else 1

    def next_plane(self) -> int:
        """The MXM plane for the next unit of work (round-robin)."""
        self._plane = (getattr(self, "_plane", -1) + 1) % self.cfg.n_planes
        return self._plane

    # ------------------------------------------------------------------ memory
    def alloc(
        self,
        name: str,
        shape,
        dtype: str,
        role: str,
        value=None,
        side=None,
        replicated=False,
        avoid=(),
        groups: int | None = None,
        one_bank: bool = False,
    ) -> TensorInfo:
        """Place a matrix [R, C] of `dtype`: each byte plane in its own slice of one hemisphere (so a vector's
        bytes travel as one stream group), rows at consecutive addresses. Even and odd column tiles, and even and
        odd rows, go to different slice groups where the hemisphere has room, so that a job combining two tiles
        or two rows of one tensor reads them in the same cycle. Slices in `avoid` (the operands of the job that
        writes this tensor) and the most used slices are taken last. `groups`: spread the vectors over this many
        slice groups instead ((row + tile) mod groups; an MXM weight load takes consecutive rows from distinct
        slices). `one_bank`: each slice's words in one SRAM bank (a Gather reads one bank)."""
        cfg = self.cfg
        R, C = int(shape[0]), int(shape[1])
        w = dtype_by_name(dtype).width
        T = math.ceil(C / cfg.n_lanes)
        if side is None:  # alternate hemispheres; the other one when this one is full
            side = self._side
            self._side ^= 1
            args = (name, shape, dtype, role, value)
            kw = dict(replicated=replicated, avoid=avoid, groups=groups, one_bank=one_bank)
            try:
                return self.alloc(*args, side=side, **kw)
            except CapacityError:
                return self.alloc(*args, side=1 - side, **kw)
        cands = self.sides[side]
        if len(cands) < w:
            raise CapacityError(
                f"{name}: a {dtype} tensor needs {w} MEM slices in one hemisphere; {cfg.name} has {len(cands)}"
            )
        if groups is None:
            groups = 2 if (T > 1 or R > 1) and len(cands) >= 2 * w else 1
        reuse = role in ("temp", "output")
        for g in (groups, 1):  # the slices with room (two groups only where there are enough of them)
            roomy = [s for s in cands if self._find(s, math.ceil(R * T / g), one_bank, reuse)[0] is not None]
            if len(roomy) >= w * g:
                cands, groups = roomy, g
                break
        avoid = set(avoid)
        order = sorted(
            range(len(cands)),
            key=lambda i: (cands[i] in avoid, self.used(cands[i]), (i - self._rr[side]) % len(cands)),
        )
        groups = max(1, min(groups, len(cands) // w))
        chosen = [[cands[i] for i in order[g * w : (g + 1) * w]] for g in range(groups)]
        self._rr[side] = (self._rr[side] + w * groups) % len(cands)
        sl = np.zeros((R, T, w), np.int32)
        ad = np.zeros((R, T, w), np.int32)
        rr, tt = np.meshgrid(np.arange(R), np.arange(T), indexing="ij")
        grp = (rr + tt) % groups
        takes = []
        for g in range(groups):
            n_g = int((grp == g).sum())
            for b, s in enumerate(chosen[g]):
                a0, where = self._find(s, n_g, one_bank, reuse)
                if a0 is None:
                    self._capacity(name, R * T * w)
                takes.append((s, a0, n_g, where))
                sl[..., b][grp == g] = s
                ad[..., b][grp == g] = a0 + np.arange(n_g)
        for s, a0, n_g, where in takes:  # only once everything fits
            self._take(s, a0, n_g, where)
        lay = TensorLayout((R, C), dtype, sl, ad)
        info = TensorInfo(name, lay, role, value, (R, C), replicated)
        self.sched.tensors[name] = info
        self.created.append(name)
        ready = 0 if role in ("param", "const", "input") else 1 << 60
        self.ready[name] = np.full((R, T), ready, np.int64)
        self.writer[name] = np.full((R, T, w), -1, np.int64)
        return info

    def used(self, s: int) -> int:
        """Words of slice s holding live tensors."""
        return int(self.next_addr[s] - self.free_words[s])

    def _find(self, s: int, n: int, one_bank: bool, reuse: bool = True):
        """Where n consecutive words of slice s can go: (address, index of the free range or -1 for the end), the
        lowest released range first if `reuse` (tensors the program writes; words in the MEM image never move
        below the end, which only grows); (None, None) when nowhere."""
        bw, W = self.cfg.bank_words, self.cfg.mem_words

        def fit(a):
            return (a // bw + 1) * bw if one_bank and a // bw != (a + n - 1) // bw else a

        for i, (a, ln) in enumerate(self.free_ranges[s] if reuse else ()):
            a0 = fit(a)
            if a0 + n <= a + ln:
                return a0, i
        a0 = fit(int(self.next_addr[s]))
        return (a0, -1) if a0 + n <= W else (None, None)

    def _take(self, s: int, a0: int, n: int, where: int) -> None:
        if where < 0:
            self.next_addr[s] = a0 + n
            return
        a, ln = self.free_ranges[s].pop(where)
        rest = [[a, a0 - a], [a0 + n, a + ln - a0 - n]]
        self.free_ranges[s][where:where] = [r for r in rest if r[1] > 0]
        self.free_words[s] -= n

    def release(self, name: str) -> None:
        """The tensor's words may hold new tensors: each may be written again once its last Read has issued."""
        lay = self.sched.tensors[name].layout
        ready = np.repeat(self.ready[name][..., None], lay.slice.shape[-1], -1)
        ready = np.where(ready >= 1 << 59, 0, ready)
        by_slice: dict[int, list[int]] = {}
        for s, a, r in zip(lay.slice.reshape(-1).tolist(), lay.addr.reshape(-1).tolist(), ready.reshape(-1).tolist()):
            self.free_at[(s, a)] = max(r, self.last_read.get((s, a), 0))
            by_slice.setdefault(s, []).append(a)
        for s, addrs in by_slice.items():
            ranges = self.free_ranges[s] + [[a, 1] for a in addrs]
            ranges.sort()
            merged = [ranges[0]]
            for a, ln in ranges[1:]:
                if a == merged[-1][0] + merged[-1][1]:
                    merged[-1][1] += ln
                else:
                    merged.append([a, ln])
            self.free_ranges[s] = merged
            self.free_words[s] = sum(ln for _, ln in merged)

    def _capacity(self, name, need_words):
        cfg = self.cfg
        used = sum(self.used(s) for s in range(cfg.n_mem)) * cfg.n_lanes
        raise CapacityError(
            f"the model does not fit the SRAM of {cfg.name}: placing {name} needs {need_words * cfg.n_lanes} more "
            f"bytes; {used} of {cfg.sram_bytes} bytes are already used ({cfg.n_mem} slices x {cfg.mem_words} "
            f"words x {cfg.n_lanes} B)"
        )

    def vec(self, name: str, r: int, t: int) -> Vec:
        lay = self.sched.tensors[name].layout
        words = zip(lay.slice[r, t].tolist(), lay.addr[r, t].tolist())
        return Vec(words, int(self.ready[name][r, t]), self.writer[name][r, t].tolist())

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
        return self._record(queue, cycle, ins)

    def _put_mem(self, s: int, cycle: int, ins: isa.Instruction) -> int:
        return self._record(self.res.tl.place_mem(s, cycle, ins), cycle, ins)  # and its bank

    def _record(self, queue: str, cycle: int, ins: isa.Instruction) -> int:
        """Add a placed instruction to the schedule (and its cycle to the current op's span); returns its index."""
        instrs = self.sched.instrs
        instrs.append(Placed(queue, int(cycle), ins, self.op))
        o = self.sched.ops[self.op]
        if cycle < o.first:
            o.first = cycle
        if cycle > o.last:
            o.last = cycle
        return len(instrs) - 1

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
        align: bool = True,
        after=(),
        emit_dir: int = 0,
        unit_mem=(),
    ):
        """Place one unit instruction fed from MEM and (if `dst`) written back to MEM.

        queues: candidate queue names (the first free one is used). srcs: operand vectors, each one stream
        group (aligned to its width unless `align` is False). dst: the result's words [(slice, addr)] or None.
        delay: issue to the result's landing at the unit. make(queue, [src groups], dst group) -> Instruction.
        after: [(queue, offset, make)] instructions that issue `offset` cycles after the unit's, on their own
        queues (an ABC's ACC); when given, the last of them emits the result. emit_dir: the direction of the
        result streams an instruction names when there is no `dst` (an ACC that does not emit). unit_mem: the
        unit is a MEM slice that reads its own SRAM (a Gather): [(slice, mnemonic, address)], one address in every
        bank it may read; those banks are reserved in the issue cycle. Operands that
        are the same vector share one Read; operands in a common slice are separated first (`_separate`).
        Returns (issue cycle, instruction index, write indices, cycle from which the result can be read).
        """
        srcs, fields = self._distinct(srcs, what)
        res, tl, S = self.res, self.res.tl, self.cfg.n_streams
        dR = self.dR
        src_pos = [[int(self.pos_mem[s]) for s, _ in v.words] for v in srcs]
        src_dir = [self._side_of(ps, pos_u, what, "an operand") for ps in src_pos]
        dst_pos = [int(self.pos_mem[s]) for s, _ in dst] if dst else []
        out_dir = self._side_of(dst_pos, pos_u, what, "the result", out=True) if dst else emit_dir
        t = t0
        for v, ps in zip(srcs, src_pos):
            t = max(t, v.ready + dR + max(abs(p - pos_u) for p in ps))
        for (s, a), p in zip(dst or (), dst_pos):  # a reused word: commit after its last value's last Read
            fa = self.free_at.get((s, a))
            if fa is not None:
                t = max(t, fa + 1 - delay - abs(p - pos_u) - self.dW)
        start = t
        # the MEM accesses, by their cycle relative to the unit's issue cycle
        acc = [(s, -dR - abs(p - pos_u), "Read", a) for v, ps in zip(srcs, src_pos) for (s, a), p in zip(v.words, ps)]
        acc += [(s, delay + abs(p - pos_u), "Write", a) for (s, a), p in zip(dst or (), dst_pos)]
        if unit_mem:
            acc.append((unit_mem[0][0], 0, unit_mem[0][1], unit_mem[0][2]))
        if not self._mem_ok(acc):  # two accesses that collide whatever the cycle
            raise SchedulingError(f"no cycle found for {what} within {_MAX_WAIT} cycles of {start}")
        # What must be free at t + offset, besides a unit queue: the `after` queues, the MEM accesses' queues and
        # banks. No instruction issues before cycle 0.
        waits = [(tl.queue_map(aq), off) for aq, off, _ in after] + self._mem_waits(acc)
        waits += [(tl.bank_map(s, a), tl._bank_use(s, 0, m, a)[3]) for s, m, a in unit_mem[1:]]
        t = max(t, 0, *(-off for _, off, _ in after), *(-off for _, off, _, _ in acc))
        unit_maps = [tl.queue_map(q) for q in queues]
        # The first cycle where everything is free. Each MEM access and `after` queue says from which cycle on it
        # is free (`first_free`): the search goes round them, moving t there, until a whole round finds all of
        # them free at t; then a unit queue (the first free one, as `next_free` says), the output port and the
        # stream flights, the last two a cycle at a time. It finds the cycle that trying every one in turn finds.
        n = len(waits)
        while True:
            if t - start > _MAX_WAIT:
                raise SchedulingError(f"no cycle found for {what} within {_MAX_WAIT} cycles of {start}")
            i = free_in_a_row = 0
            while free_in_a_row < n:
                m, off = waits[i]
                if t + off in m:
                    t = first_free(m, t + off) - off
                    free_in_a_row = 0
                free_in_a_row += 1
                i = i + 1 if i + 1 < n else 0
            if occupancy == 1:
                k = next((k for k, m in enumerate(unit_maps) if t not in m), None)
            else:
                k = next((k for k, q in enumerate(queues) if tl.free(q, t, occupancy)), None)
            if k is None:
                t = min(tl.next_free(q, t, occupancy) for q in queues)
                continue
            if port is not None and not res.port_free(port(queues[k]), t + delay):
                t += 1
                continue
            mark = res.mark()
            bases = [self._claim(d, ps, pos_u, t, align) for ps, d in zip(src_pos, src_dir)]
            dbase = self._claim(out_dir, dst_pos, pos_u, t + delay, True) if dst and None not in bases else 0
            if None in bases or dbase is None:
                res.undo(mark)
                t += 1
                continue
            break
        q = queues[k]
        if port is not None:
            res.reserve_port(port(q), t + delay)
        stream = self._stream_of
        groups = [stream(d, b) for d, b in zip(src_dir, bases)]
        reads = []
        for v, ps, d, base in zip(srcs, src_pos, src_dir, bases):
            writers = v.writers
            for b, ((s, a), p) in enumerate(zip(v.words, ps)):
                tr = t - dR - abs(p - pos_u)
                ri = self._put_mem(s, tr, I("Read", (a, stream(d, base + b))))
                self.last_read[(s, a)] = max(tr, self.last_read.get((s, a), 0))
                if b < len(writers) and writers[b] >= 0:
                    self._link(ri, -1, int(writers[b]))
                reads.append((ri, d * S + base + b))
        ui = self._put(q, t, make(q, [groups[k] for k in fields], stream(out_dir, dbase)))
        for s, m, a in unit_mem:
            tl.reserve(tl._bank_use(s, t, m, a))
        for ri, sid in reads:
            self._link(ui, sid, ri)
        emitter = ui
        for aq, off, mk in after:
            emitter = self._put(aq, t + off, mk(stream(out_dir, dbase)))
            self._link(emitter, -2, ui)
        writes = []
        for b, ((s, a), p) in enumerate(zip(dst or (), dst_pos)):
            wi = self._put_mem(s, t + delay + abs(p - pos_u), I("Write", (a, stream(out_dir, dbase + b))))
            self._link(wi, out_dir * S + dbase + b, emitter)
            writes.append(wi)
        end = max((self.sched.instrs[w].cycle for w in writes), default=t) + self.dW
        return t, ui, writes, end

    @staticmethod
    @functools.cache
    def _stream_of(direction: int, index: int) -> isa.Stream:
        """`_stream(direction, index)`, one shared object per stream: a Stream is a tuple the garbage collector
        scans, and a program names streams a few hundred thousand times."""
        return _stream(direction, index)

    def _distinct(self, srcs: list[Vec], what: str):
        """Operands that are the same vector share one Read (returns the distinct vectors and, per operand, its
        index among them); different vectors must not share a MEM slice, so one of two that do is copied."""
        while True:
            uniq: list[Vec] = []
            fields = []
            for v in srcs:
                k = next((i for i, u in enumerate(uniq) if u.words == v.words), None)
                if k is None:
                    uniq.append(v)
                    k = len(uniq) - 1
                fields.append(k)
            used: set = set()
            clash = None
            for i, v in enumerate(uniq):
                sl = {s for s, _ in v.words}
                if len(sl) != len(v.words):
                    raise SchedulingError(f"{what}: an operand vector has two bytes in one MEM slice")
                if sl & used:
                    clash = i
                    break
                used |= sl
            if clash is None:
                return uniq, fields
            sep = self._separate(uniq, clash, what)
            srcs = [sep[k] for k in fields]

    def _side_of(self, positions, pos_u, what, which, out=False) -> int:
        dirs = {self._dir(pos_u, p) if out else self._dir(p, pos_u) for p in positions}
        if len(dirs) != 1:
            raise SchedulingError(f"{what}: {which}'s bytes lie on both sides of the unit")
        return dirs.pop()

    def _mem_ok(self, acc) -> bool:
        """Whether the MEM accesses acc [(slice, cycle, mnemonic, addr)] of one job can all issue: no two on one
        slice in one cycle, none on an SRAM bank another uses in the same cycle. The cycles may be relative to the
        job's issue cycle: the answer is the same for every issue cycle (whether the queues and banks are free
        then is `_mem_waits`)."""
        tl = self.res.tl
        slots = {(s, c) for s, c, _, _ in acc}
        banks = {tl._bank_use(s, c, m, a) for s, c, m, a in acc}
        return len(slots) == len(banks) == len(acc)

    def _mem_waits(self, acc) -> list:
        """For the MEM accesses acc [(slice, offset from the issue cycle, mnemonic, addr)] of one job: the cycles
        each cannot issue in (`Timeline.mem_slots`: its queue or its bank taken) and its offset."""
        mem_slots = self.res.tl.mem_slots
        return [(mem_slots(s, m, a), off) for s, off, m, a in acc]

    def _claim(self, d, ps, pos_u, t, align: bool):
        """Reserve the lowest stream base (a multiple of the width if `align`) whose streams base + b are free for
        flights between positions ps[b] and the unit (pos_u) on the diagonal through (pos_u, t): operands
        arriving at t, or a result landing at t. Returns the base, or None."""
        spans = [(p, pos_u) if p < pos_u else (pos_u, p) for p in ps]
        return self.res.claim(d, self.res.diag(d, pos_u, t), spans, len(ps) if align else 1)

    # ------------------------------------------------------------------ unit jobs
    def vxm(self, mnemonic: str, srcs: list[Vec], dst, what: str, t0: int = 0):
        """One VXM instruction `mnemonic` (e.g. "add.f32") on any free ALU."""
        op, t1, _ = isa.vxm_parts(mnemonic)
        d = self.cfg.delay(isa.vxm_delay_class(op, t1))
        queues = [f"VXM.{a}" for a in range(self.cfg.vxm_alus)]
        return self.job(
            queues,
            self.pos_vxm,
            srcs,
            dst,
            d,
            lambda q, sb, db: I(mnemonic, (db, *sb)),
            port=lambda q: q,
            what=what,
            t0=t0,
        )

    def _separate(self, srcs: list[Vec], index: int, what: str) -> list[Vec]:
        """Copy operand `index` (by a VXM mov) into slices that no other operand uses."""
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
        2-byte lane map `extra`, on any unit of the SXM slice nearest the operand."""
        cfg = self.cfg
        if not cfg.n_sxm_units:
            raise SchedulingError(f"{cfg.name} has no SXM units")
        j = min(range(len(cfg.sxm_names)), key=lambda j: abs(int(self.pos_mem[src.words[0][0]]) - int(self.pos_sxm[j])))
        queues = [f"SXM.{cfg.sxm_names[j]}.{u}" for u in range(cfg.sxm_units)]

        def make(q, sb, db):
            return I("Permute", (db, sb[0], sb[1])) if mnemonic == "Permute" else I(mnemonic, (db, sb[0], n))

        srcs = [src] if extra is None else [src, extra]
        return self.job(
            queues,
            int(self.pos_sxm[j]),
            srcs,
            dst,
            sxm_delay(cfg, mnemonic, n),
            make,
            port=lambda q: q,
            what=what,
            t0=t0,
        )

    # ------------------------------------------------------------------ matmul
    def matmul(self, a: str, w: str, out: str, f16: bool, what: str, a_rows=None):
        """out[M, N] = a[M, K] @ w[K, N] on the MXM: int8 -> int32 or fp16 -> fp32 (weights `w` stored by
        `alloc_weights`). Weight-stationary: per (N tile, M block) unit, K tiles in order (`mxm_units`)."""
        cfg = self.cfg
        winfo = self.sched.tensors[w]
        Kt, Nt = winfo.tile_slice.shape[:2]
        M = self.sched.tensors[out].layout.shape[0]
        a_rows = np.arange(M) if a_rows is None else np.asarray(a_rows)
        blocks = _blocks(M, cfg.mxm_acc_rows)
        self.sched.ops[self.op].detail.update(planes=cfg.n_planes, k_tiles=Kt, n_tiles=Nt, m_blocks=len(blocks))
        units = []
        for n in range(Nt):
            for m0, m1 in blocks:
                ksteps = []
                for kk in range(Kt):
                    tile, half = divmod(kk, 2) if f16 else (kk, 0)
                    sl, ad = winfo.tile_slice[kk, n].tolist(), winfo.tile_addr[kk, n].tolist()
                    rows = [Row(s, a_) for s, a_ in zip(sl, ad)]
                    ksteps.append((rows, half, [self.vec(a, int(a_rows[m]), tile) for m in range(m0, m1)]))
                units.append((ksteps, [(out, m, n) for m in range(m0, m1)]))
        self.mxm_units(units, f16, what, [i % cfg.n_planes for i in range(len(units))])

    def mxm_units(self, units, f16: bool, what: str, planes, zero=None) -> None:
        """Weight-stationary MXM work. units: [(ksteps, outs)], one accumulator pass each, on plane planes[i]:
        ksteps [(wrows, half, avecs)] in accumulation order, wrows the tile's L byte rows (`Row`, or None for a
        zero row, which `zero(avoid)` supplies), half the fp16 lane half of the activations, avecs the activation
        Vec of every output row; outs [(tensor, row, tile)] the output rows, written when the last k step emits
        them. Per plane, across passes: the LWs start after the plane's last IW (which captured the buffer), the
        next IW takes effect after its last ABC, and the next tile loads while the current one computes."""
        cfg, tl = self.cfg, self.res.tl
        lat, d_acc, d_iw = abc_latency(cfg), cfg.delay("mxm.acc"), cfg.delay("mxm.iw")
        occ = isa.occupancy("ABC.f16" if f16 else "ABC.i8")
        for (ksteps, outs), p in zip(units, planes):
            pos_p = int(self.pos_plane[p])
            last_abc, lw_t = self.plane_abc_free[p] - 1, self.plane_lw_free[p]
            for kk, (wrows, half, avecs) in enumerate(ksteps):
                lw_end = self._load_rows(p, wrows, lw_t, zero, what)
                t_iw = max(lw_end + 1, last_abc + 1 - d_iw)
                while not tl.free(f"MXM.{p}.W", t_iw):
                    t_iw += 1
                self._put(f"MXM.{p}.W", t_iw, I("IW", ()))
                t = t_iw + d_iw
                last = kk == len(ksteps) - 1
                mode = (isa.ACC_ADD if kk else 0) | (isa.ACC_EMIT if last else 0)
                for m, av in enumerate(avecs):

                    def acc(dg, row=m, mode=mode):
                        return I("ACC.f32" if f16 else "ACC.i32", (row, mode, dg))

                    def abc(q, sb, db, half=half):
                        return I("ABC.f16", (sb[0], half)) if f16 else I("ABC.i8", (sb[0],))

                    name, r, tile = outs[m]
                    t, _, ws, end = self.job(
                        [f"MXM.{p}.A"],
                        pos_p,
                        [av],
                        self.out_words(name, r, tile) if last else None,
                        lat + d_acc,
                        abc,
                        what=what,
                        t0=t,
                        occupancy=occ,
                        after=[(f"MXM.{p}.C", lat, acc)],
                        emit_dir=1 - cfg.plane_in_dir(p),
                    )
                    if last:
                        self.done(name, r, tile, end, ws)
                    last_abc = t
                    t += occ
                lw_t = t_iw + 1  # the next tile's LWs may start once this one is installed
            self.plane_abc_free[p] = last_abc + 1
            self.plane_lw_free[p] = lw_t

    def _load_rows(self, p, wrows: list, t: int, zero, what: str) -> int:
        """LW the L byte rows into plane p from cycle t: runs of consecutive rows from distinct slices (at most
        n_streams / 2; a zero row reads `zero(slices the run uses)`), one LW each; returns the last LW's cycle."""
        chunk = self.cfg.n_streams // 2
        r0 = 0
        L = len(wrows)
        while r0 < L:
            rows, used = [], set()
            while r0 + len(rows) < L and len(rows) < chunk:
                w = wrows[r0 + len(rows)]
                if w is None:
                    w = zero(used)
                elif w.slice in used:
                    break
                used.add(w.slice)
                rows.append(w)
            k = len(rows)
            src = Vec([(w.slice, w.addr) for w in rows], max(w.ready for w in rows), [w.writer for w in rows])
            t, _, _, _ = self.job(
                [f"MXM.{p}.W"],
                int(self.pos_plane[p]),
                [src],
                None,
                0,
                lambda q, sb, db, r0=r0, k=k: I("LW", (r0, sb[0], k)),
                what=f"weight load of {what}",
                t0=t,
                align=False,
            )
            t += 1
            r0 += k
        return t - 1

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
        # the stored matrix: [Kt * Nt * L, L] byte rows (each weight row's bytes in stream-group order), as a
        # TensorLayout of uint8 rows
        wv = np.zeros((Kt * kd, Nt * L), value.dtype)
        wv[:K, :N] = value
        tiles = wv.reshape(Kt, kd, Nt, L).transpose(0, 2, 1, 3)
        flat = pack_np(tiles, "f16" if f16 else "i8", cfg.group_byte_order).reshape(-1, L)
        lay = TensorLayout((flat.shape[0], L), "u8", tsl.reshape(-1, 1, 1), tad.reshape(-1, 1, 1))
        info = TensorInfo(name, lay, "param", flat, (K, N), tile_slice=tsl, tile_addr=tad, chunk=chunk)
        self.sched.tensors[name] = info
        return info
