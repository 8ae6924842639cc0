"""MEM: the 2 x n_mem SRAM slices. `Read`, `Write`, `Gather`, `Scatter` (architecture.md §2, §5).

All MEM slices run as one vectorised kernel; the instruction of slice m is row m of `ins` (int32 [M, F]).
Semantics, for an instruction issued at cycle t on MEM slice m at position p (delays d from ChipConfig.delays):
  * `Read a, S`: reads address a at cycle t; the 320 bytes land on stream S at p at t + d(Read).
  * `Write a, S`: takes the bytes on stream S at p at cycle t; they are committed to address a at t + d(Write)
    (visible to a Read issued at t + d(Write) + 1 or later).
  * `Gather S, M`: lane l reads address `map[l]` at cycle t, where map is the uint16 on the 2-stream group M at
    p at cycle t ([A] one address per lane; each lane of a slice is its own SRAM column). Lands on S at t+d(Gather).
  * `Scatter S, M`: lane l of stream S at cycle t is committed to address `map[l]` at t + d(Scatter).
  * [A] bank = address // (mem_words / 2). A cycle's SRAM accesses are the reads issued in it plus the commits
    due in it. Reading one bank while committing to the other works. Two accesses to one bank in one cycle are a
    `bank_conflict` hazard (where = m * 2 + bank): both still happen, the read sees the old contents.
  * Lane addresses >= mem_words in Gather/Scatter are an `address_range` hazard (where = m): the lane reads 0 /
    writes nothing.
  * One commit per slice per cycle: a second one due in the same cycle replaces the first (`port_conflict`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import isa
from . import streams as st
from .config import ChipConfig
from .pipeline import emit, port_positions
from .state import HAZARDS, MachineState, record_hazard

__all__ = ["mem_step"]

BANK_CONFLICT = HAZARDS.index("bank_conflict")
ADDRESS_RANGE = HAZARDS.index("address_range")
PORT_CONFLICT = HAZARDS.index("port_conflict")


def _map_addresses(cfg: ChipConfig, lo: jnp.ndarray, hi: jnp.ndarray) -> jnp.ndarray:
    """uint16 lane addresses from a 2-stream group (rows base, base+1), honouring the group byte order."""
    if cfg.group_byte_order == "big":
        lo, hi = hi, lo
    return lo.astype(jnp.int32) | (hi.astype(jnp.int32) << 8)


def mem_step(cfg: ChipConfig, state: MachineState, ins: jnp.ndarray) -> tuple[MachineState, dict]:
    """One cycle of every MEM slice. `ins` int32 [M, F]: the rows the MEM queues issued (opcode 0: none)."""
    M, W, L, BW, D = cfg.n_mem, cfg.mem_words, cfg.n_lanes, cfg.bank_words, cfg.delay_slots
    c = state.cycle
    op, addr, sid, msid = ins[:, 0], ins[:, 1], ins[:, 2], ins[:, 3]
    m = jnp.arange(M)
    pos = jnp.asarray(port_positions(cfg)[:M])
    is_read, is_write = op == isa.READ, op == isa.WRITE
    is_gather, is_scatter = op == isa.GATHER, op == isa.SCATTER
    indirect = is_gather | is_scatter

    # Operands off the streams at each slice's position: data (Write/Scatter) and the 2-stream map.
    rows = st.row_index(cfg, jnp.stack([sid, msid, msid + 1], 1), pos[:, None], c)
    got = st.read_rows(cfg, state.streams, rows)  # [M, 3, L]
    lane_addr = _map_addresses(cfg, got[:, 1], got[:, 2])  # [M, L]
    lane_ok = lane_addr < W
    oob = indirect & ~jnp.all(lane_ok, axis=1)
    hz = record_hazard(state.hazards, ADDRESS_RANGE, oob, c, m)

    # SRAM accesses this cycle: reads issued now, commits due now.
    f = state.inflight
    now = c % D
    wr_addr, sc_addr, wr_data = f.wr_addr[now], f.sc_addr[now], f.wr_data[now]
    sram = state.mem.reshape(M * W, L)
    read_row = sram.at[m * W + addr].get(mode="clip")
    gathered = jax.lax.cond(
        jnp.any(is_gather),
        lambda: jnp.where(
            lane_ok,
            sram.reshape(-1)
            .at[((m[:, None] * W + jnp.minimum(lane_addr, W - 1)) * L + jnp.arange(L))]
            .get(mode="clip"),
            0,
        ).astype(jnp.uint8),
        lambda: jnp.zeros((M, L), jnp.uint8),
    )
    banks = jnp.arange(2)
    lane_bank = lane_addr // BW
    use = (is_read[:, None] & (addr[:, None] // BW == banks)).astype(jnp.int32)
    use += is_gather[:, None] & jnp.any(lane_ok[:, None, :] & (lane_bank[:, None, :] == banks[None, :, None]), 2)
    use += (wr_addr[:, None] >= 0) & (wr_addr[:, None] // BW == banks)
    use += jnp.any((sc_addr[:, None, :] >= 0) & (sc_addr[:, None, :] // BW == banks[None, :, None]), 2)
    clash = use >= 2  # [M, 2]
    hz = record_hazard(hz, BANK_CONFLICT, clash, c, m[:, None] * 2 + banks[None, :])

    # Commits due now (after the reads: a read in the same cycle sees the old contents).
    sram = sram.at[jnp.where(wr_addr >= 0, m * W + wr_addr, M * W)].set(wr_data, mode="drop")
    sram = jax.lax.cond(
        jnp.any(sc_addr >= 0),
        lambda s: (
            s.reshape(-1)
            .at[jnp.where(sc_addr >= 0, (m[:, None] * W + sc_addr) * L + jnp.arange(L), M * W * L)]
            .set(wr_data, mode="drop")
            .reshape(M * W, L)
        ),
        lambda s: s,
        sram,
    )
    f = f.replace(wr_addr=f.wr_addr.at[now].set(-1), sc_addr=f.sc_addr.at[now].set(-1))

    # New commits: Write / Scatter data taken off the stream now, committed after d(Write) / d(Scatter).
    stores = is_write | is_scatter
    cslot = (c + jnp.where(is_write, cfg.delay("Write"), cfg.delay("Scatter"))) % D
    busy = stores & ((f.wr_addr[cslot, m] >= 0) | jnp.any(f.sc_addr[cslot, m] >= 0, axis=1))
    hz = record_hazard(hz, PORT_CONFLICT, busy, c, m)
    cslot = jnp.where(stores, cslot, D)
    f = f.replace(
        wr_addr=f.wr_addr.at[cslot, m].set(jnp.where(is_write, addr, -1), mode="drop"),
        sc_addr=f.sc_addr.at[cslot, m].set(jnp.where(is_scatter[:, None] & lane_ok, lane_addr, -1), mode="drop"),
        wr_data=f.wr_data.at[cslot, m].set(got[:, 0], mode="drop"),
    )
    state = state.replace(mem=sram.reshape(state.mem.shape), inflight=f, hazards=hz)

    # Read / Gather results go to the slice's output port.
    loads = is_read | is_gather
    data = jnp.where(is_gather[:, None], gathered, read_row)
    out = jnp.zeros((M, 4, L), jnp.uint8).at[:, 0].set(data)
    delay = jnp.where(is_read, cfg.delay("Read"), cfg.delay("Gather"))
    state = emit(cfg, state, jnp.arange(M), loads, sid, jnp.ones_like(sid), out, delay)
    commits = {"wr_addr": wr_addr, "sc_addr": sc_addr, "data": wr_data}
    return state, commits
