"""ICU: the instruction queues. In-order issue, `NOP n`, `Repeat n, d[, s]`, `Sync` / `Notify` (architecture.md §3).

Every queue issues at most one instruction per cycle, strictly in program order. An instruction *occupies* its
queue for a number of cycles; the queue's next instruction issues when that time is up:
  * a unit instruction (MEM, VXM, MXM, SXM): issues at its cycle t and occupies 1 cycle (next issue t+1), except
    `ABC.f16`, which occupies 2 (`isa.occupancy`: an fp16 sub-op takes its plane two cycles);
  * `NOP n` (n >= 1): issues nothing and occupies n cycles (next issue t+n);
  * `Repeat n, d, s` (n, d >= 1) [A]: re-issues the queue's most recent unit instruction n times, at cycles
    t, t+d, ..., t+(n-1)d, each time with its field 1 advanced by s (Read/Write address, LW row, ACC row;
    the advance accumulates over consecutive Repeats), and occupies n*d cycles. So `Read a, E0; Repeat 3, 1, 1`
    reads a..a+3 in four consecutive cycles, and `Read a, E0; NOP 3; Repeat 5, 4` reads every 4th cycle;
  * `Sync` parks the queue (it issues nothing until released);
  * `Notify` issued at cycle t releases every queue parked at t (including one that parks at t); a released
    queue issues its next instruction at t + d_func(Notify). `Notify` occupies 1 cycle;
  * after its last instruction a queue halts (the array encoding pads with HALT).

`icu_step(cfg, state, program)` returns the new queue state and the rows issued this cycle, int32 [Q, F]
(opcode 0 where a queue issued nothing). It is a pure function of the state and the program array.
"""

from __future__ import annotations

import jax.numpy as jnp

from . import isa
from .config import ChipConfig
from .dtypes import dtype_by_name
from .state import NEVER, QueueState

_F16 = dtype_by_name("f16").code

__all__ = ["icu_step"]


def icu_step(
    cfg: ChipConfig, q: QueueState, program: jnp.ndarray, cycle: jnp.ndarray
) -> tuple[QueueState, jnp.ndarray]:
    """One cycle of every queue. `program` is int32 [Q, L, F] (isa.encode)."""
    Q = program.shape[0]
    cur = program[jnp.arange(Q), q.pc]  # [Q, F]
    op = cur[:, 0]
    ready = (q.next_cycle == cycle) & ~q.parked
    repeating = ready & (q.rep_left > 0)
    fetch = ready & (q.rep_left == 0)

    f_repeat = fetch & (op == isa.REPEAT)
    f_unit = fetch & (op >= isa.READ)
    f_nop = fetch & (op == isa.NOP)
    f_sync = fetch & (op == isa.SYNC)
    f_notify = fetch & (op == isa.NOTIFY)
    f_halt = fetch & (op == isa.HALT)

    # The repeated row: the last unit instruction with its field 1 advanced (isa.STRIDED: address, LW/ACC row).
    stride = jnp.where(f_repeat, cur[:, 3], q.rep_stride)
    strided = jnp.isin(q.last[:, 0], jnp.asarray(isa.STRIDED))
    rep_row = q.last.at[:, 1].add(jnp.where(strided, stride, 0))
    again = repeating | f_repeat
    issued = jnp.where(again[:, None], rep_row, jnp.where(f_unit[:, None], cur, 0))
    last = jnp.where((again | f_unit)[:, None], issued, q.last)

    rep_d = jnp.where(f_repeat, cur[:, 2], q.rep_d)
    rep_left = jnp.where(f_repeat, cur[:, 1] - 1, jnp.where(repeating, q.rep_left - 1, q.rep_left))
    nxt = q.next_cycle
    nxt = jnp.where(again, cycle + rep_d, nxt)
    occupy = jnp.where((op == isa.ABC) & (cur[:, 4] == _F16), 2, 1)
    nxt = jnp.where(f_unit | f_notify, cycle + occupy, nxt)
    nxt = jnp.where(f_nop, cycle + cur[:, 1], nxt)
    nxt = jnp.where(f_sync | f_halt, NEVER, nxt)
    parked = q.parked | f_sync
    pc = q.pc + (fetch & ~f_halt).astype(jnp.int32)

    # Notify releases every parked queue (program-wide).
    release = jnp.any(f_notify) & parked
    nxt = jnp.where(release, cycle + cfg.delay("Notify"), nxt)
    parked = parked & ~release

    new = QueueState(pc=pc, next_cycle=nxt, parked=parked, rep_left=rep_left, rep_d=rep_d, rep_stride=stride, last=last)
    return new, issued
