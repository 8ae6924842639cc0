"""The compiler's check of its own schedule, before it returns it.

It works from the placed instructions alone, with the timing rules of docs/isa.md, not from the builder's
bookkeeping: for every instruction it derives where and when its result lands on which streams, and where and
when it reads its stream operands. Then it checks that
  * every stream operand an instruction reads is the value of the producer the schedule links it to: the nearest
    landing upstream on that stream's space-time diagonal (so no live value was overwritten in flight), and no
    two results land on one stream at one position in one cycle;
  * no queue issues two instructions at once and no SRAM bank is used twice in a cycle;
  * every Read of a word the program makes comes after the Write that commits it, and no word is written twice;
  * every output word is written; every address is inside the SRAM;
  * every plane installs (IW) only a fully loaded weight tile, loaded after its previous install, and every ABC
    runs on installed weights and has its ACC.
`ScheduleError` names the first violation.
"""

from __future__ import annotations

from collections import defaultdict

from .. import isa
from ..dtypes import dtype_by_name
from ..mxm import abc_latency
from ..sxm import sxm_delay
from .schedule import Schedule

__all__ = ["ScheduleError", "check_schedule", "flows"]


class ScheduleError(RuntimeError):
    """The schedule breaks a rule of the chip (a compiler bug): the message names the instruction and cycle."""


def _unit_pos(cfg, queue: str) -> int:
    kind, rest = queue.split(".", 1)
    if kind == "MEM":
        return int(cfg.positions[cfg.mem_slices[cfg.mem_names.index(rest)]])
    if kind == "VXM":
        return int(cfg.positions[cfg.vxm_slice])
    if kind == "MXM":
        return int(cfg.positions[cfg.mxm_slices[int(rest.split(".")[0])]])
    return int(cfg.positions[cfg.sxm_slices[cfg.sxm_names.index(rest.split(".")[0])]])


_LANE_OPS = ("Shift.up", "Shift.down", "Rotate.up", "Rotate.down", "Permute")


def _timing(cfg, ins: isa.Instruction):
    """The stream traffic of an instruction as a template: (emissions [(operand, streams, delay)], reads
    [(operand, streams)]): operand `operand` names the first of `streams` consecutive streams, whose values land
    `delay` cycles after the issue (emissions) or are read at the issue. None for an instruction the checker does
    not know. It depends on the mnemonic alone, and on the lane count of a shift and the mode of an ACC (`_key`)."""
    m, ops = ins.mnemonic, ins.operands
    em, rd = [], []
    if m == "Read":
        em.append((1, 1, cfg.delay("Read")))
    elif m == "Write":
        rd.append((1, 1))
    elif m == "LW":
        rd.append((1, ops[2]))
    elif m == "ABC.i8":
        rd.append((0, 1))
    elif m == "ABC.f16":
        rd.append((0, 2))
    elif m.startswith("ACC."):
        if ops[1] & isa.ACC_EMIT:
            em.append((2, 4, cfg.delay("mxm.acc")))
    elif m in _LANE_OPS:
        em.append((0, 1, sxm_delay(cfg, m, ops[2] if m != "Permute" else 0)))
        rd.append((1, 1))
        if m == "Permute":
            rd.append((2, 2))
    elif isa.vxm_parts(m) is not None:
        op, t1, t2 = isa.vxm_parts(m)
        w_in, w_out = dtype_by_name(t1).width, dtype_by_name(t2).width
        em.append((0, w_out, cfg.delay(isa.vxm_delay_class(op, t1))))
        rd += [(1 + j, w_in if not (op == "requant" and j == 1) else 4) for j in range(len(ops) - 1)]
    elif m == "Gather":
        em.append((0, 1, cfg.delay("Gather")))
        rd.append((1, 2))
    elif m not in ("NOP", "Repeat", "IW"):
        return None
    return em, rd


def _key(ins: isa.Instruction):
    """What `_timing` depends on: the mnemonic, and the lane count of a shift, the mode of an ACC, the count of an LW
    and the number of operands of a VXM op."""
    m, ops = ins.mnemonic, ins.operands
    if m in _LANE_OPS[:4] or m == "LW":
        return m, ops[2]
    if m.startswith("ACC."):
        return m, ops[1] & isa.ACC_EMIT
    return m, len(ops)


class _Flows:
    """`flows` for one config, with the unit position of every queue and the timing template of every kind of
    instruction (`_timing`) worked out once."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.S = cfg.n_streams
        self._pos: dict[str, int] = {}
        self._timing: dict = {}

    def __call__(self, queue: str, cycle: int, ins: isa.Instruction):
        pos = self._pos.get(queue)
        if pos is None:
            pos = self._pos[queue] = _unit_pos(self.cfg, queue)
        key = _key(ins)
        tpl = self._timing.get(key)
        if tpl is None:
            tpl = _timing(self.cfg, ins)
            if tpl is None:
                raise ScheduleError(f"{queue} at cycle {cycle}: the checker does not know `{ins}`")
            self._timing[key] = tpl
        S, ops = self.S, ins.operands
        em, rd = [], []
        for j, n, d in tpl[0]:
            s0 = (ops[j].dir != "E") * S + ops[j].index  # Stream.sid
            em += [(s0 + i, pos, cycle + d) for i in range(n)]
        for j, n in tpl[1]:
            s0 = (ops[j].dir != "E") * S + ops[j].index  # Stream.sid
            rd += [(s0 + i, pos, cycle) for i in range(n)]
        return em, rd


def flows(cfg, queue: str, cycle: int, ins: isa.Instruction):
    """(emissions, reads) of one instruction: emissions [(sid, position, landing cycle)], reads [(sid, position,
    cycle)], from the timing rules of docs/isa.md."""
    return _Flows(cfg)(queue, cycle, ins)


def check_schedule(sched: Schedule) -> None:
    cfg = sched.cfg
    S = cfg.n_streams
    instrs = sched.instrs
    flow = _Flows(cfg)

    def where(i):
        p = instrs[i]
        return f"`{p.ins}` on {p.queue} at cycle {p.cycle}"

    # queues
    busy = defaultdict(set)
    for i, p in enumerate(instrs):
        taken = busy[p.queue]
        for c in range(p.cycle, p.cycle + isa.occupancy(p.ins.mnemonic)):
            if c in taken:
                raise ScheduleError(f"{where(i)}: the queue already issues an instruction in cycle {c}")
            taken.add(c)
    # streams
    landings = {}  # (sid, diag) -> list of (position, producer)
    seen = {}
    reads = []  # per instruction, its stream reads
    for i, p in enumerate(instrs):
        em, rd = flow(p.queue, p.cycle, p.ins)
        reads.append(rd)
        for s, pos, land in em:
            key = (s, pos, land)
            if key in seen:
                raise ScheduleError(
                    f"{where(i)} and {where(seen[key])} put values on stream {s} at position {pos} "
                    f"in the same cycle {land}"
                )
            seen[key] = i
            d = land - pos if s < S else land + pos  # diagonal(s // S, pos, land)
            landings.setdefault((s, d), []).append((pos, i))
    links = defaultdict(dict)
    mem_links = {}
    for c, s, prod in sched.links:
        if s >= 0:
            links[c][s] = prod
        elif s == -1:
            mem_links[c] = prod
    for i, rd in enumerate(reads):
        for s, pos, cyc in rd:
            east = s < S
            d = cyc - pos if east else cyc + pos  # diagonal(s // S, pos, cyc)
            # the nearest landing at or upstream of pos
            best = None
            for lpos, j in landings.get((s, d), ()):
                if (lpos <= pos if east else lpos >= pos) and (best is None or abs(pos - lpos) < abs(pos - best[0])):
                    best = (lpos, j)
            want = links[i].get(s)
            if want is None:
                raise ScheduleError(f"{where(i)} reads stream {s} but the schedule names no producer for it")
            if best is None or best[1] != want:
                got = "nothing" if best is None else where(best[1])
                raise ScheduleError(
                    f"{where(i)} reads stream {s} expecting the value of {where(want)}, but finds "
                    f"{got} (a value overwritten in flight)"
                )
    # banks and MEM words
    banks = {}
    written = {}
    slice_of = {f"MEM.{n}": s for s, n in enumerate(cfg.mem_names)}
    words, bank_words, d_write = cfg.mem_words, cfg.bank_words, cfg.delay("Write")
    for i, p in enumerate(instrs):
        s = slice_of.get(p.queue)
        if s is None or p.ins.mnemonic not in ("Read", "Write"):  # a Gather's banks are data (the builder's)
            continue
        a = p.ins.operands[0]
        if not 0 <= a < words:
            raise ScheduleError(f"{where(i)}: address {a} is outside the slice (0..{words - 1})")
        write = p.ins.mnemonic == "Write"
        key = (s, a // bank_words, p.cycle + d_write if write else p.cycle)
        if key in banks:
            raise ScheduleError(
                f"{where(i)} and {where(banks[key])} use SRAM bank {key[1]} of slice "
                f"{cfg.mem_names[s]} in the same cycle {key[2]}"
            )
        banks[key] = i
        if write:
            if (s, a) in written:
                raise ScheduleError(f"{where(i)} writes word {a} of slice {cfg.mem_names[s]} a second time")
            written[(s, a)] = i
    for c, prod in mem_links.items():
        if instrs[c].cycle < instrs[prod].cycle + d_write:
            raise ScheduleError(f"{where(c)} reads before {where(prod)} commits the word")
    for name in sched.outputs:
        lay = sched.tensors[name].layout
        for s, a in zip(lay.slice.reshape(-1).tolist(), lay.addr.reshape(-1).tolist()):
            if (s, a) not in written:
                raise ScheduleError(f"output {name}: word {a} of slice {cfg.mem_names[s]} is never written")
    _check_planes(sched, where)


def _check_planes(sched: Schedule, where) -> None:
    cfg = sched.cfg
    L, d_iw, lat = cfg.n_lanes, cfg.delay("mxm.iw"), abc_latency(cfg)
    per_plane = defaultdict(list)
    for i, p in enumerate(sched.instrs):
        if p.queue.startswith("MXM."):
            per_plane[int(p.queue.split(".")[1])].append(i)
    acc_of = {prod: c for c, s, prod in sched.links if s == -2}  # ABC -> its ACC
    for _plane, idx in per_plane.items():
        idx.sort(key=lambda i: (sched.instrs[i].cycle, sched.instrs[i].queue))
        loaded = set()
        installs = []
        for i in idx:
            p = sched.instrs[i]
            m = p.ins.mnemonic
            if m == "LW":
                loaded.update(range(p.ins.operands[0], p.ins.operands[0] + p.ins.operands[2]))
            elif m == "IW":
                if len(loaded) != L:
                    raise ScheduleError(
                        f"{where(i)} installs a weight tile with {len(loaded)} of {L} rows loaded "
                        "since the previous install"
                    )
                loaded = set()
                installs.append(p.cycle)
            elif m.startswith("ABC"):
                if not installs or installs[0] + d_iw > p.cycle:
                    raise ScheduleError(f"{where(i)} runs before any weights are installed")
                a = acc_of.get(i)
                if a is None or sched.instrs[a].cycle != p.cycle + lat:
                    raise ScheduleError(f"{where(i)} has no ACC {lat} cycles later")
