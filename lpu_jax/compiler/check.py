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

import itertools
from collections import defaultdict

import numpy as np

from .. import isa
from ..dtypes import dtype_by_name
from ..mxm import abc_latency
from ..sxm import sxm_delay
from .schedule import Placed, Schedule

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
    not know. It depends on the mnemonic and the number of operands alone, and on the lane count of a shift, the
    row count of an LW and the mode of an ACC (`_field`)."""
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
    elif m == "Scatter":
        rd += [(0, 1), (1, 2)]
    elif m == "Gather":
        em.append((0, 1, cfg.delay("Gather")))
        rd.append((1, 2))
    elif m not in ("NOP", "Repeat", "IW"):
        return None
    return em, rd


def _field(mnemonic: str) -> int:
    """The operand `_timing` depends on besides the mnemonic: the lane count of a shift and the row count of an LW
    (2), the mode of an ACC (1); -1 where it depends on the number of operands (a VXM op) or nothing."""
    if mnemonic in _LANE_OPS[:4] or mnemonic == "LW":
        return 2
    return 1 if mnemonic.startswith("ACC.") else -1


class _Flows:
    """The stream traffic of instructions for one config, with the unit position of every queue and the timing
    template (`_timing`) of every kind of instruction worked out once."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._pos: dict[str, int] = {}  # queue -> unit position
        self._field: dict[str, int] = {}  # mnemonic -> `_field`
        self._timing: dict = {}  # (mnemonic, field or operand count) -> `_timing`

    def table(self, instrs):
        """Every emission and read of `instrs`: two int64 arrays [n, 4] of (sid, position, cycle, instruction),
        in the order of the instructions and, within one, of its template. If an instruction is refused (one the
        checker does not know: `ScheduleError`), the arrays hold those of the instructions before it, and its
        index and the exception come with them (else the index is len(instrs) - 1 and the exception None)."""
        cfg, S = self.cfg, self.cfg.n_streams
        pos_of, field_of, timing = self._pos, self._field, self._timing
        em, rd = [], []
        i, error = 0, None
        try:
            for i, p in enumerate(instrs):
                queue, cycle, ins = p.queue, p.cycle, p.ins
                pos = pos_of.get(queue)
                if pos is None:
                    pos = pos_of[queue] = _unit_pos(cfg, queue)
                m, ops = ins.mnemonic, ins.operands
                f = field_of.get(m)
                if f is None:
                    f = field_of[m] = _field(m)
                key = (m, ops[f] if f >= 0 else len(ops))
                tpl = timing.get(key)
                if tpl is None:
                    tpl = _timing(cfg, ins)
                    if tpl is None:
                        raise ScheduleError(f"{queue} at cycle {cycle}: the checker does not know `{ins}`")
                    timing[key] = tpl
                for j, n, d in tpl[0]:
                    s0 = (ops[j].dir != "E") * S + ops[j].index  # Stream.sid
                    for k in range(n):
                        em += (s0 + k, pos, cycle + d, i)
                for j, n in tpl[1]:
                    s0 = (ops[j].dir != "E") * S + ops[j].index
                    for k in range(n):
                        rd += (s0 + k, pos, cycle, i)
        except Exception as exc:  # noqa: BLE001 -- the caller raises it, after the checks that come first
            error = exc
        em, rd = (np.array(x, np.int64).reshape(-1, 4) for x in (em, rd))
        if error is not None:
            em, rd = em[em[:, 3] < i], rd[rd[:, 3] < i]
        return em, rd, i, error


def flows(cfg, queue: str, cycle: int, ins: isa.Instruction):
    """(emissions, reads) of one instruction: emissions [(sid, position, landing cycle)], reads [(sid, position,
    cycle)], from the timing rules of docs/isa.md."""
    em, rd, _, error = _Flows(cfg).table([Placed(queue, cycle, ins)])
    if error is not None:
        raise error
    return [tuple(x) for x in em[:, :3].tolist()], [tuple(x) for x in rd[:, :3].tolist()]


def _int_rows(rows, width: int) -> np.ndarray:
    """int64 [len(rows), width] from a list of tuples of ints (faster than np.array on a list of tuples)."""
    return np.fromiter(itertools.chain.from_iterable(rows), np.int64, len(rows) * width).reshape(-1, width)


def _first_repeat(keys: np.ndarray) -> tuple[int, int] | None:
    """The first position whose key occurs at an earlier position, and that earlier (first) position; or None."""
    if len(keys) < 2:
        return None
    order = np.argsort(keys, kind="stable")  # equal keys stay in order: each run starts at its first position
    sk = keys[order]
    rep = np.flatnonzero(sk[1:] == sk[:-1]) + 1
    if not len(rep):
        return None
    later = order[rep]
    k = int(later.argmin())
    pos = int(later[k])
    return pos, int(order[np.searchsorted(sk, keys[pos])])


def _last_per_key(keys: np.ndarray, values: np.ndarray):
    """A dict's view of [(key, value)] assigned in order: the distinct keys (sorted) with the last value of each."""
    order = np.argsort(keys, kind="stable")
    sk, sv = keys[order], values[order]
    last = np.flatnonzero(np.append(sk[1:] != sk[:-1], True)) if len(sk) else np.zeros(0, np.int64)
    return sk[last], sv[last]


def _lookup(keys: np.ndarray, values: np.ndarray, want: np.ndarray, missing: int = -1) -> np.ndarray:
    """values[k] where keys[k] == want (keys sorted and distinct), else `missing`."""
    if not len(keys):
        return np.full(len(want), missing, np.int64)
    j = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[j] == want, values[j], missing)


def check_schedule(sched: Schedule) -> None:
    """Raise `ScheduleError` naming the first violation (module docstring), in the order: queues, then streams
    (landings, then reads), then SRAM banks and words, then planes. Each check runs over all instructions at once
    (numpy); the message is the one a walk through the instructions in order meets first."""
    cfg = sched.cfg
    S = cfg.n_streams
    instrs = sched.instrs
    n = len(instrs)

    def where(i):
        p = instrs[i]
        return f"`{p.ins}` on {p.queue} at cycle {p.cycle}"

    # queues: every cycle an instruction holds its queue
    q, cyc, occ, mem = _instruction_table(sched)
    held = np.repeat(np.arange(n), occ)
    c = cyc[held] + np.arange(len(held)) - np.repeat(np.cumsum(occ) - occ, occ)
    rep = _first_repeat(q[held] * (c.max(initial=0) - c.min(initial=0) + 1) + c - c.min(initial=0))
    if rep is not None:
        e = rep[0]
        raise ScheduleError(f"{where(int(held[e]))}: the queue already issues an instruction in cycle {int(c[e])}")
    # streams: no two landings on one stream at one place and cycle
    em, rd, _, error = _Flows(cfg).table(instrs)
    s, pos, land = em[:, 0], em[:, 1], em[:, 2]
    span_p = int(pos.max(initial=0)) + 1
    span_c = int(land.max(initial=0)) - int(land.min(initial=0)) + 1
    rep = _first_repeat((s * span_p + pos) * span_c + land - land.min(initial=0))
    if rep is not None:
        (si, p_, l_, i), first = em[rep[0]].tolist(), int(em[rep[1], 3])
        raise ScheduleError(
            f"{where(i)} and {where(first)} put values on stream {si} at position {p_} in the same cycle {l_}"
        )
    if error is not None:
        raise error
    # streams: every read finds its linked producer, the nearest landing at or upstream of it on its diagonal
    links = _int_rows(sched.links, 3)
    sl = links[links[:, 1] >= 0]
    rs, rp, rc, ri = rd.T
    n_sid = int(max(sl[:, 1].max(initial=0), rs.max(initial=0), s.max(initial=0), 2 * S)) + 1
    link_keys, link_prod = _last_per_key(sl[:, 0] * n_sid + sl[:, 1], sl[:, 2])
    want = _lookup(link_keys, link_prod, ri * n_sid + rs)
    # landings and reads by (stream, diagonal, position), as one number: sorted, the nearest landing upstream of a
    # read is the last one at or before it (east) or the first at or after it (west) within its (stream, diagonal)
    ld, rdiag = np.where(s < S, land - pos, land + pos), np.where(rs < S, rc - rp, rc + rp)
    lo = min(ld.min(initial=0), rdiag.min(initial=0))
    n_diag = max(ld.max(initial=0), rdiag.max(initial=0)) - lo + 1
    n_pos = max(pos.max(initial=0), rp.max(initial=0)) + 1
    lgroup, rgroup = s * n_diag + ld - lo, rs * n_diag + rdiag - lo
    order = np.argsort(lgroup * n_pos + pos)
    lkey, lprod = (lgroup * n_pos + pos)[order], em[order, 3]
    rkey = rgroup * n_pos + rp
    j = np.where(rs < S, np.searchsorted(lkey, rkey, "right") - 1, np.searchsorted(lkey, rkey, "left"))
    best = np.full(len(rd), -1, np.int64)
    if len(lkey):
        jc = np.clip(j, 0, len(lkey) - 1)
        found = (j >= 0) & (j < len(lkey)) & (lkey[jc] // n_pos == rgroup)
        best = np.where(found, lprod[jc], -1)
    wrong = np.flatnonzero((want < 0) | (best != want))
    if len(wrong):
        r = int(wrong[0])
        si, i, w, b = int(rs[r]), int(ri[r]), int(want[r]), int(best[r])
        if w < 0:
            raise ScheduleError(f"{where(i)} reads stream {si} but the schedule names no producer for it")
        got = "nothing" if b < 0 else where(b)
        raise ScheduleError(
            f"{where(i)} reads stream {si} expecting the value of {where(w)}, but finds "
            f"{got} (a value overwritten in flight)"
        )
    _check_mem(sched, links, cyc, mem, where)
    _check_planes(sched, where)


def _instruction_table(sched: Schedule):
    """One pass over the instructions: int64 arrays of each one's queue (a number per queue), issue cycle and
    occupancy, and [(instruction, slice, address, cycle, is a Write)] of the MEM Reads and Writes (a Gather's
    banks are data, the builder's: Reads and Writes only)."""
    slice_of = {f"MEM.{n}": s for s, n in enumerate(sched.cfg.mem_names)}
    queue_id: dict[str, int] = {}
    occupancy: dict[str, int] = {}
    q, cyc, occ, mem = [], [], [], []
    for i, p in enumerate(sched.instrs):
        queue, cycle, m = p.queue, p.cycle, p.ins.mnemonic
        k = queue_id.get(queue)
        if k is None:
            k = queue_id[queue] = len(queue_id)
        o = occupancy.get(m)
        if o is None:
            o = occupancy[m] = isa.occupancy(m)
        q.append(k)
        cyc.append(cycle)
        occ.append(o)
        if (m == "Read" or m == "Write") and queue in slice_of:
            mem += (i, slice_of[queue], p.ins.operands[0], cycle, m == "Write")
    return (*(np.array(x, np.int64) for x in (q, cyc, occ)), np.array(mem, np.int64).reshape(-1, 5))


def _check_mem(sched: Schedule, links: np.ndarray, cyc_all: np.ndarray, mem: np.ndarray, where) -> None:
    """SRAM banks and words: addresses in range, one access per bank and cycle, Reads after the Writes they are
    linked to (links [(consumer, -1, producer)]) and seeing them (a word is reused only after its previous value's
    last Read; a Read of the MEM image comes before every Write of the word), every output word written.
    cyc_all: every instruction's cycle; mem: the MEM Reads and Writes (`_instruction_table`)."""
    cfg, instrs = sched.cfg, sched.instrs
    words, bank_words, d_write = cfg.mem_words, cfg.bank_words, cfg.delay("Write")
    idx, s, a, cyc, write = mem.T
    write = write.astype(bool)
    outside = (a < 0) | (a >= words)
    a_in = np.clip(a, 0, words - 1)  # an address outside is refused before its bank or word counts
    at = cyc + np.where(write, d_write, 0)
    n_at, n_banks = int(at.max(initial=0) - at.min(initial=0)) + 1, -(-words // bank_words)
    bank_rep = _first_repeat((s * n_banks + a_in // bank_words) * n_at + at - at.min(initial=0))
    wpos = np.flatnonzero(write)
    word_rep = _first_repeat((s[wpos] * words + a_in[wpos]) * n_at + at[wpos] - at.min(initial=0))
    k = min(
        int(np.argmax(outside)) if outside.any() else len(a),
        bank_rep[0] if bank_rep else len(a),
        int(wpos[word_rep[0]]) if word_rep else len(a),
    )
    if k < len(a):
        i, sk, ak = int(idx[k]), int(s[k]), instrs[int(idx[k])].ins.operands[0]
        if outside[k]:
            raise ScheduleError(f"{where(i)}: address {ak} is outside the slice (0..{words - 1})")
        if bank_rep and bank_rep[0] == k:
            raise ScheduleError(
                f"{where(i)} and {where(int(idx[bank_rep[1]]))} use SRAM bank {ak // bank_words} of slice "
                f"{cfg.mem_names[sk]} in the same cycle {int(at[k])}"
            )
        raise ScheduleError(f"{where(i)} writes word {ak} of slice {cfg.mem_names[sk]} twice in one cycle")
    # Reads after the Writes that commit their words: in the order a dict of the links keeps them
    ml = links[links[:, 1] == -1]
    consumers, producers = _last_per_key(ml[:, 0], ml[:, 2])
    first_at = np.unique(ml[:, 0], return_index=True)[1]  # the consumers' first links, in consumer order
    early = cyc_all[consumers] < cyc_all[producers] + d_write
    if early.any():
        k = int(np.flatnonzero(early)[first_at[early].argmin()])
        raise ScheduleError(f"{where(int(consumers[k]))} reads before {where(int(producers[k]))} commits the word")
    # every Read sees its linked Write: the last to commit by the Read's cycle (commits come first in a cycle)
    key, base = s * words + a_in, at.min(initial=0)
    wk = key[write] * n_at + at[write] - base
    order = np.argsort(wk, kind="stable")
    wk, widx = wk[order], idx[write][order]
    rsel = ~write
    rkey, rcyc, ridx = key[rsel], cyc[rsel], idx[rsel]
    j = np.searchsorted(wk, rkey * n_at + np.clip(rcyc - base, -1, n_at - 1), "right") - 1
    jc = np.clip(j, 0, max(len(wk) - 1, 0))
    seen = np.where(
        (j >= 0) & (len(wk) > 0) & (wk[jc] // n_at == rkey) & (rcyc >= base), widx[jc] if len(wk) else -1, -1
    )
    want = np.full(len(instrs), -1, np.int64)
    want[consumers] = producers
    bad = np.flatnonzero(seen != want[ridx])
    if len(bad):
        r = int(bad[0])
        i, w, g = int(ridx[r]), int(want[ridx[r]]), int(seen[r])
        if w < 0:
            raise ScheduleError(f"{where(i)} reads the MEM image, but {where(g)} has already written the word")
        raise ScheduleError(f"{where(i)} expects the word {where(w)} wrote, but {where(g)} overwrote it")
    written = np.unique(s[write] * words + a[write])
    for name in sched.outputs:
        if sched.tensors[name].role == "input":  # a state updated in place: the image's words or a Scatter's
            continue
        lay = sched.tensors[name].layout
        sl, ad = lay.slice.reshape(-1).astype(np.int64), lay.addr.reshape(-1).astype(np.int64)
        missing = np.flatnonzero(~np.isin(sl * words + ad, written))
        if len(missing):
            m = int(missing[0])
            raise ScheduleError(
                f"output {name}: word {int(ad[m])} of slice {cfg.mem_names[int(sl[m])]} is never written"
            )


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
