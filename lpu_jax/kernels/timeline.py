"""A timeline: instructions placed at exact cycles on ICU queues, turned into a `Program` with NOPs and Repeats.

Kernel generators (and the compiler) think in "this Read issues at cycle 1234 on MEM.W17". `Timeline` records
that, refuses to put two instructions on one queue in one cycle (an `ABC.f16` holds its queue two cycles), keeps
the SRAM bank each MEM access uses, per cycle (`mem_free` / `place_mem`) and a set of other reserved resources,
answers "the first free cycle from c" for a queue or a bank (`next_free`, `first_free`), and finally writes each
queue as the shortest list the ICU rules allow (icu.py): gaps become `NOP n`, runs of one instruction at a
constant interval whose field 1 (Read/Write address, LW row, ACC row) advances by a constant stride become
`I; [NOP d - occupancy;] Repeat n, d, s`.
Every queue starts at cycle 0 (no Sync is needed: a program is statically timed from its first cycle).
"""

from __future__ import annotations

from collections import defaultdict

from .. import isa
from ..config import ChipConfig

__all__ = ["Timeline", "TimelineError", "first_free"]


class TimelineError(ValueError):
    """Two instructions on one queue in one cycle, or a resource reserved twice."""


_STRIDED: dict[str, bool] = {}  # mnemonic -> whether its field 1 can advance under a Repeat
_OCCUPANCY: dict[str, int] = {}  # mnemonic -> isa.occupancy


def _occupancy(mnemonic: str) -> int:
    """`isa.occupancy`, memoised in `_OCCUPANCY` (hot loops look there first)."""
    occ = _OCCUPANCY.get(mnemonic)
    if occ is None:
        occ = _OCCUPANCY[mnemonic] = isa.occupancy(mnemonic)
    return occ


def _strided(ins: isa.Instruction) -> bool:
    m = ins.mnemonic
    strided = _STRIDED.get(m)
    if strided is None:
        strided = _STRIDED[m] = isa.opcode(m) in isa.STRIDED
    return strided


def first_free(taken: dict[int, int], cycle: int) -> int:
    """The first cycle >= `cycle` not in `taken`.

    `taken` is a resource's occupancy as a skip map: its keys are the taken cycles, and each maps to a later cycle
    such that every cycle in between (the key included) is taken; a new taken cycle c maps to c + 1. The walk
    from `cycle` follows the map to the first free cycle, then points every key it passed at that cycle (path
    compression), so a long busy stretch is crossed in a step or two the next time. Cycles are only ever added,
    so an entry, once true, stays true."""
    nxt = taken.get(cycle)
    if nxt is None:
        return cycle
    passed = [cycle]
    while (after := taken.get(nxt)) is not None:
        passed.append(nxt)
        nxt = after
    for c in passed:
        taken[c] = nxt
    return nxt


class Timeline:
    """Instructions at exact cycles, per queue, plus reserved resources.

    `events[queue]`: cycle -> instruction. The occupancy of every queue (`_busy[queue]`) and of every SRAM bank
    (`_banks[(slice, bank)]`) is a skip map of its taken cycles (`first_free`): membership says whether a cycle
    is taken, and `first_free` finds the first free cycle from any cycle in about one step (`next_free`;
    `queue_map` and `bank_map` hand the maps to a scheduler's own search). For a scheduler that places MEM
    accesses, `mem_slots` keeps one more map per (slice, bank, bank delay) on request (`_slots`): the cycles an
    access cannot issue in, because of its queue or its bank; `_slot_views[queue]` lists those of a MEM queue,
    and every placement and bank reservation updates them."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self._names = set(isa.queue_names(cfg))
        self.events: dict[str, dict[int, isa.Instruction]] = defaultdict(dict)
        self._busy: dict[str, dict[int, int]] = defaultdict(dict)
        self._banks: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
        self._reserved: set = set()  # reserved resources other than SRAM banks
        self._slots: dict[tuple[int, int, int], dict[int, int]] = {}  # (slice, bank, bank delay) -> map
        self._slot_views: dict[str, list[tuple[int, int, dict[int, int]]]] = {}  # MEM queue -> [(bank, delay, map)]
        self._mem_q = [f"MEM.{n}" for n in cfg.mem_names]
        self._bank_words = cfg.bank_words
        self._d_write = cfg.delay("Write")
        self._d_scatter = cfg.delay("Scatter")

    # ------------------------------------------------------------------ placing
    def free(self, queue: str, cycle: int, occupancy: int = 1) -> bool:
        """Whether `queue` can issue an instruction occupying `occupancy` cycles at `cycle`."""
        busy = self._busy[queue]
        if occupancy == 1:
            return cycle >= 0 and cycle not in busy
        return cycle >= 0 and all(cycle + i not in busy for i in range(occupancy))

    def next_free(self, queue: str, cycle: int, occupancy: int = 1) -> int:
        """The first cycle >= `cycle` (and >= 0) at which `free(queue, c, occupancy)`."""
        busy = self._busy[queue]
        c = first_free(busy, max(cycle, 0))
        while occupancy > 1:
            late = next((c + i for i in range(1, occupancy) if c + i in busy), None)
            if late is None:
                break
            c = first_free(busy, late)
        return c

    def queue_map(self, queue: str) -> dict[int, int]:
        """The occupancy (skip map, `first_free`) of `queue`: read it, never change it."""
        return self._busy[queue]

    def place(self, queue: str, cycle: int, ins: isa.Instruction) -> None:
        """Issue `ins` on `queue` at `cycle`. Raises TimelineError if the queue is taken then."""
        if queue not in self._names:
            raise TimelineError(f"unknown queue {queue!r} for {self.cfg.name}")
        occ = _OCCUPANCY.get(ins.mnemonic) or _occupancy(ins.mnemonic)
        busy = self._busy[queue]
        if cycle < 0 or cycle in busy or (occ > 1 and not self.free(queue, cycle, occ)):
            raise TimelineError(f"{queue} is already busy at cycle {cycle} (placing `{ins}`)")
        self.events[queue][cycle] = ins
        cycles = (cycle,) if occ == 1 else range(cycle, cycle + occ)
        for c in cycles:
            busy[c] = c + 1
        for _, _, slots in self._slot_views.get(queue, ()):
            for c in cycles:
                if c not in slots:
                    slots[c] = c + 1

    def taken(self, key) -> bool:
        if _is_bank(key):
            return key[3] in self._banks[(key[1], key[2])]
        return key in self._reserved

    def reserve(self, key) -> None:
        """Reserve a resource (any hashable, e.g. ("bank", slice, bank, cycle)). Raises if already reserved."""
        if self.taken(key):
            raise TimelineError(f"resource {key} reserved twice")
        if _is_bank(key):
            self._take_bank(*key[1:])
        else:
            self._reserved.add(key)

    def _take_bank(self, s: int, bank: int, at: int) -> None:
        self._banks[(s, bank)][at] = at + 1
        for b, delay, slots in self._slot_views.get(self._mem_q[s], ()):
            if b == bank and at - delay not in slots:
                slots[at - delay] = at - delay + 1

    # ------------------------------------------------------------------ MEM accesses
    def _bank_use(self, s: int, t: int, mnemonic: str, addr: int):
        """The (slice, bank, cycle) an access uses: a Read/Gather at its issue, a Write/Scatter at its commit."""
        return ("bank", s, addr // self._bank_words, t + self._bank_delay(mnemonic))

    def _bank_delay(self, mnemonic: str) -> int:
        return self._d_write if mnemonic == "Write" else self._d_scatter if mnemonic == "Scatter" else 0

    def mem_slots(self, s: int, mnemonic: str, addr: int) -> dict[int, int]:
        """The cycles in which `mnemonic` on word `addr` of MEM slice s cannot issue (where `mem_free` is False,
        negative cycles aside) as a skip map (`first_free`): the taken cycles of the slice's queue, and those whose
        bank use falls on a taken cycle of the bank. Kept up to date from then on; read it, never change it."""
        key = (s, addr // self._bank_words, self._bank_delay(mnemonic))
        slots = self._slots.get(key)
        if slots is None:
            _, bank, delay = key
            slots = self._slots[key] = {c: c + 1 for c in self._busy[self._mem_q[s]]}
            for at in self._banks[(s, bank)]:
                if at - delay not in slots:
                    slots[at - delay] = at - delay + 1
            self._slot_views.setdefault(self._mem_q[s], []).append((bank, delay, slots))
        return slots

    def bank_map(self, s: int, addr: int) -> dict[int, int]:
        """The occupancy (skip map, `first_free`) of the SRAM bank of slice s holding word `addr`: read it, never
        change it."""
        return self._banks[(s, addr // self._bank_words)]

    def mem_free(self, s: int, t: int, mnemonic: str, addr: int) -> bool:
        """Whether MEM slice s (index west to east) can issue `mnemonic` touching `addr` at cycle t: its queue is
        free then, and so is the bank in the cycle the access uses it (no bank conflict)."""
        return t >= 0 and self.free(self._mem_q[s], t) and not self.taken(self._bank_use(s, t, mnemonic, addr))

    def place_mem(self, s: int, t: int, ins: isa.Instruction, addr: int | None = None) -> str:
        """Issue a MEM instruction on slice s at t and reserve its bank (`addr`: default the Read/Write address).
        Returns the queue's name. (`place` and `reserve` in one step: the queue, its slot maps and the bank are
        updated together.)"""
        a = ins.operands[0] if addr is None else addr
        queue = self._mem_q[s]
        busy = self._busy[queue]
        m = ins.mnemonic
        if t < 0 or t in busy or (_OCCUPANCY.get(m) or _occupancy(m)) != 1:
            self.place(queue, t, ins)  # refuses it, or places an instruction that holds the queue longer
        else:
            self.events[queue][t] = ins
            busy[t] = t + 1
        bank, at = a // self._bank_words, t + self._bank_delay(m)
        taken = self._banks[(s, bank)]
        if at in taken:
            raise TimelineError(f"resource {self._bank_use(s, t, m, a)} reserved twice")
        taken[at] = at + 1
        for b, delay, slots in self._slot_views.get(queue, ()):
            if t not in slots:
                slots[t] = t + 1
            if b == bank and at - delay not in slots:
                slots[at - delay] = at - delay + 1
        return queue

    @property
    def last_cycle(self) -> int:
        """The last cycle any instruction issues at (-1 if none)."""
        return max((max(ev) for ev in self.events.values() if ev), default=-1)

    # ------------------------------------------------------------------ writing
    def program(self) -> isa.Program:
        """The Program that issues every placed instruction at its cycle, in queue order."""
        return isa.Program({q: self._queue(self.events[q]) for q in isa.queue_names(self.cfg) if self.events.get(q)})

    @staticmethod
    def _queue(events: dict[int, isa.Instruction]) -> list[isa.Instruction]:
        times = sorted(events)
        evs = [events[t] for t in times]
        steps = [_run_step(a, b) for a, b in zip(evs, evs[1:])]  # from each instruction to the next
        n = len(times)
        out: list[isa.Instruction] = []
        free = 0  # the cycle the queue next fetches
        i = 0
        while i < n:
            t0, ins = times[i], evs[i]
            occ = _OCCUPANCY.get(ins.mnemonic) or _occupancy(ins.mnemonic)
            j = i  # extend a run i..j at interval d, stride s
            if i + 1 < n:
                d, s = times[i + 1] - t0, steps[i]
                if d >= occ and s is not None:
                    j = i + 1
                    while j + 1 < n and times[j + 1] - times[j] == d and steps[j] == s:
                        j += 1
                    # the Repeat holds the queue until t_j + d: the next event must not come sooner
                    if j + 1 < n and times[j + 1] < times[j] + d:
                        j -= 1
            if t0 > free:
                out.append(isa.Instruction("NOP", (t0 - free,)))
            out.append(ins)
            if j > i:
                if d > occ:
                    out.append(isa.Instruction("NOP", (d - occ,)))
                out.append(isa.Instruction("Repeat", (j - i, d, s)))
                free = times[j] + d
            else:
                free = t0 + occ
            i = j + 1
        return out


def _is_bank(key) -> bool:
    return type(key) is tuple and len(key) == 4 and key[0] == "bank"


def _run_step(a: isa.Instruction, b: isa.Instruction) -> int | None:
    """The stride that turns `a` into `b` (0 if equal), or None if no Repeat can."""
    if a.mnemonic != b.mnemonic:
        return None
    if a.operands == b.operands:
        return 0
    if _strided(a) and a.operands[1:] == b.operands[1:]:
        return b.operands[0] - a.operands[0]
    return None
