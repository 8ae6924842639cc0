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
from .resources import diagonal
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


def flows(cfg, queue: str, cycle: int, ins: isa.Instruction):
    """(emissions, reads) of one instruction: emissions [(sid, position, landing cycle)], reads [(sid, position,
    cycle)], from the timing rules of docs/isa.md."""
    pos = _unit_pos(cfg, queue)
    m, ops = ins.mnemonic, ins.operands
    sid = lambda s: s.sid(cfg)  # noqa: E731
    em, rd = [], []
    if m == "Read":
        em.append((sid(ops[1]), pos, cycle + cfg.delay("Read")))
    elif m == "Write":
        rd.append((sid(ops[1]), pos, cycle))
    elif m == "LW":
        rd += [(sid(ops[1]) + i, pos, cycle) for i in range(ops[2])]
    elif m == "ABC.i8":
        rd.append((sid(ops[0]), pos, cycle))
    elif m == "ABC.f16":
        rd += [(sid(ops[0]) + i, pos, cycle) for i in range(2)]
    elif m.startswith("ACC."):
        if ops[1] & isa.ACC_EMIT:
            em += [(sid(ops[2]) + i, pos, cycle + cfg.delay("mxm.acc")) for i in range(4)]
    elif m in ("Shift.up", "Shift.down", "Rotate.up", "Rotate.down", "Permute"):
        n = ops[2] if m != "Permute" else 0
        em.append((sid(ops[0]), pos, cycle + sxm_delay(cfg, m, n)))
        rd.append((sid(ops[1]), pos, cycle))
        if m == "Permute":
            rd += [(sid(ops[2]) + i, pos, cycle) for i in range(2)]
    elif isa.vxm_parts(m) is not None:
        op, t1, t2 = isa.vxm_parts(m)
        w_in, w_out = dtype_by_name(t1).width, dtype_by_name(t2).width
        d = cfg.delay(isa.vxm_delay_class(op, t1))
        em += [(sid(ops[0]) + i, pos, cycle + d) for i in range(w_out)]
        for j, s in enumerate(ops[1:]):
            w = w_in if not (op == "requant" and j == 1) else 4
            rd += [(sid(s) + i, pos, cycle) for i in range(w)]
    elif m in ("NOP", "Repeat", "IW"):
        pass
    else:
        raise ScheduleError(f"{queue} at cycle {cycle}: the checker does not know `{ins}`")
    return em, rd


def check_schedule(sched: Schedule) -> None:
    cfg = sched.cfg
    S = cfg.n_streams
    instrs = sched.instrs

    def where(i):
        p = instrs[i]
        return f"`{p.ins}` on {p.queue} at cycle {p.cycle}"

    # queues
    busy = defaultdict(set)
    for i, p in enumerate(instrs):
        for c in range(p.cycle, p.cycle + isa.occupancy(p.ins.mnemonic)):
            if c in busy[p.queue]:
                raise ScheduleError(f"{where(i)}: the queue already issues an instruction in cycle {c}")
            busy[p.queue].add(c)
    # streams
    landings = {}  # (sid, diag) -> list of (position, producer)
    seen = {}
    for i, p in enumerate(instrs):
        em, _ = flows(cfg, p.queue, p.cycle, p.ins)
        for s, pos, land in em:
            key = (s, pos, land)
            if key in seen:
                raise ScheduleError(
                    f"{where(i)} and {where(seen[key])} put values on stream {s} at position {pos} "
                    f"in the same cycle {land}"
                )
            seen[key] = i
            d = diagonal(s // S, pos, land)
            landings.setdefault((s, d), []).append((pos, i))
    links = defaultdict(dict)
    mem_links = {}
    for c, s, prod in sched.links:
        if s >= 0:
            links[c][s] = prod
        elif s == -1:
            mem_links[c] = prod
    for i, p in enumerate(instrs):
        _, rd = flows(cfg, p.queue, p.cycle, p.ins)
        for s, pos, cyc in rd:
            direction = s // S
            d = diagonal(direction, pos, cyc)
            # the nearest landing at or upstream of pos
            best = None
            for lpos, j in landings.get((s, d), ()):
                up = lpos <= pos if direction == 0 else lpos >= pos
                if up and (best is None or abs(pos - lpos) < abs(pos - best[0])):
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
    for i, p in enumerate(instrs):
        if not p.queue.startswith("MEM."):
            continue
        s = cfg.mem_names.index(p.queue[4:])
        a = p.ins.operands[0]
        if not 0 <= a < cfg.mem_words:
            raise ScheduleError(f"{where(i)}: address {a} is outside the slice (0..{cfg.mem_words - 1})")
        at = p.cycle + (cfg.delay("Write") if p.ins.mnemonic == "Write" else 0)
        key = (s, a // cfg.bank_words, at)
        if key in banks:
            raise ScheduleError(
                f"{where(i)} and {where(banks[key])} use SRAM bank {key[1]} of slice "
                f"{cfg.mem_names[s]} in the same cycle {at}"
            )
        banks[key] = i
        if p.ins.mnemonic == "Write":
            if (s, a) in written:
                raise ScheduleError(f"{where(i)} writes word {a} of slice {cfg.mem_names[s]} a second time")
            written[(s, a)] = i
    for c, prod in mem_links.items():
        r, w = instrs[c], instrs[prod]
        if r.cycle < w.cycle + cfg.delay("Write"):
            raise ScheduleError(f"{where(c)} reads before {where(prod)} commits the word")
    for name in sched.outputs:
        lay = sched.tensors[name].layout
        for s, a in zip(lay.slice.reshape(-1), lay.addr.reshape(-1)):
            if (int(s), int(a)) not in written:
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
