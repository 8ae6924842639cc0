"""MEM: the 2 x n_mem SRAM slices. `Read`, `Write`, `Gather`, `Scatter` (architecture.md §2, §5).

All MEM slices run as one vectorised kernel; the instruction of slice m is row m of `ins` (int32 [M, F]).
Semantics, for an instruction issued at cycle t on MEM slice m at position p (delays d from ChipConfig.delays):
  * `Read a, S`: reads address a at cycle t; the 320 bytes land on stream S at p at t + d(Read).
  * `Write a, S`: takes the bytes on stream S at p at cycle t; they are committed to address a at cycle
    t + d(Write), and a Read issued at that cycle or later sees them.
  * `Gather S, M`: lane l reads address `map[l]` at cycle t, where map is the uint16 on the 2-stream group M at
    p at cycle t ([A] one address per lane: each lane of a slice is its own SRAM column). Lands on S at
    t + d(Gather).
  * `Scatter S, M`: lane l of stream S at cycle t is committed to address `map[l]` at t + d(Scatter).
  * [A] bank = address // (mem_words / 2). A cycle's SRAM accesses are the commits due in it and the reads
    issued in it; commits happen first. Reading one bank while committing to the other works. Two accesses to
    one bank in one cycle are a `bank_conflict` hazard (where = m * 2 + bank): both still happen.
  * Lane addresses >= mem_words in Gather/Scatter are an `address_range` hazard (where = m): the lane reads 0 /
    writes nothing.
  * One commit per slice per cycle: a second one due in the same cycle replaces the first (`port_conflict`,
    where = m).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import isa
from . import streams as st
from .config import ChipConfig
from .dtypes import unpack_u16
from .pipeline import port_positions
from .state import HAZARDS, MachineState

__all__ = ["mem_step"]

BANK_CONFLICT = HAZARDS.index("bank_conflict")
ADDRESS_RANGE = HAZARDS.index("address_range")
PORT_CONFLICT = HAZARDS.index("port_conflict")


def _lane_banks(lanes: jnp.ndarray, bank_words: int) -> jnp.ndarray:
    """int32 [M, 2]: whether any lane address (>= 0) of each slice falls in bank 0 / bank 1."""
    b = jnp.where(lanes >= 0, lanes // bank_words, -1)
    return jnp.stack([jnp.any(b == 0, axis=1), jnp.any(b == 1, axis=1)], 1).astype(jnp.int32)


def _commit(cfg: ChipConfig, state: MachineState):
    """Commit the Write/Scatter data due this cycle to SRAM. Returns (state, commits, bank use int [M, 2])."""
    M, W, L, BW, D = cfg.n_mem, cfg.mem_words, cfg.n_lanes, cfg.bank_words, cfg.delay_slots
    f = state.inflight
    c = state.cycle
    now = c % D
    m = jnp.arange(M)
    due = f.wr_meta[now, :, 0] == c
    addr = jnp.where(due, f.wr_meta[now, :, 1], -1)  # Write address, -1: none (or a Scatter)
    scatter_due = due & (f.wr_meta[now, :, 1] < 0)
    data = f.wr_data[now]
    sram = state.mem.reshape(M * W, L)
    sram = sram.at[jnp.where(addr >= 0, m * W + addr, M * W)].set(data, mode="drop")
    banks = jnp.arange(2)

    def scatter(s):
        lanes = jnp.where(scatter_due[:, None], f.sc_addr[now], -1)
        idx = jnp.where(lanes >= 0, (m[:, None] * W + lanes) * L + jnp.arange(L), M * W * L)
        s = s.reshape(-1).at[idx].set(data, mode="drop").reshape(M * W, L)
        return s, _lane_banks(lanes, BW)

    # Scatters are rare: their per-lane work runs only in cycles that commit one.
    sram, use = jax.lax.cond(jnp.any(scatter_due), scatter, lambda s: (s, jnp.zeros((M, 2), jnp.int32)), sram)
    use += ((addr[:, None] >= 0) & (addr[:, None] // BW == banks)).astype(jnp.int32)
    commits = {"wr_addr": addr, "scatter": scatter_due, "data": data}
    return state.replace(mem=sram.reshape(state.mem.shape)), commits, use


def mem_step(cfg: ChipConfig, state: MachineState, ins: jnp.ndarray):
    """One cycle of every MEM slice. `ins` int32 [M, F]: the rows the MEM queues issued (opcode 0: none).

    Returns (state with SRAM and pending commits updated, port outputs for `pipeline.emit`, commits made this
    cycle, hazards seen). Commits due this cycle go first; reads then see them (docs: bank conflicts).
    Each buffer is written before it is read in a cycle, so XLA updates the rings and the SRAM in place.
    """
    M, W, L, BW, D = cfg.n_mem, cfg.mem_words, cfg.n_lanes, cfg.bank_words, cfg.delay_slots
    c = state.cycle
    banks = jnp.arange(2)
    op, addr, sid, msid = ins[:, 0], ins[:, 1], ins[:, 2], ins[:, 3]
    m = jnp.arange(M)
    pos = jnp.asarray(port_positions(cfg)[:M])
    is_read, is_write = op == isa.READ, op == isa.WRITE
    is_gather, is_scatter = op == isa.GATHER, op == isa.SCATTER

    # Operands off the streams at each slice's position: the data (Write/Scatter), and for Gather/Scatter the
    # 2-stream address map (read only in cycles that have one).
    got = st.read_rows(cfg, state.streams, st.row_index(cfg, sid, pos, c))  # [M, L]

    def lane_map(streams, which):
        """uint16 lane addresses of the slices where `which`, off their 2-stream map groups (-1 elsewhere and
        where out of range), and which of those slices had a lane out of range."""
        g = st.read_rows(cfg, streams, st.row_index(cfg, jnp.stack([msid, msid + 1], 1), pos[:, None], c))
        a = unpack_u16(g, cfg.group_byte_order).astype(jnp.int32)  # [M, L] lane addresses
        return jnp.where(which[:, None] & (a < W), a, -1), which & jnp.any(a >= W, axis=1)

    # New commits: Write / Scatter data taken off the stream now, committed after d(Write) / d(Scatter).
    f = state.inflight
    stores = is_write | is_scatter
    due = c + jnp.where(is_write, cfg.delay("Write"), cfg.delay("Scatter"))
    cslot = due % D
    old = f.wr_meta[cslot, m]
    busy = stores & (old[:, 0] == due)
    meta = jnp.where(stores[:, None], jnp.stack([due, jnp.where(is_write, addr, -1)], 1), old)

    def file_scatter(ring, streams):  # the lane addresses of new Scatters (rare: only in cycles that issue one)
        lanes, oob = lane_map(streams, is_scatter)
        return ring.at[jnp.where(is_scatter, cslot, D), m].set(lanes, mode="drop"), oob

    sc_addr, oob_s = jax.lax.cond(
        jnp.any(is_scatter), file_scatter, lambda r, s: (r, jnp.zeros(M, bool)), f.sc_addr, state.streams
    )
    f = f.replace(
        wr_meta=f.wr_meta.at[cslot, m].set(meta),
        sc_addr=sc_addr,
        wr_data=f.wr_data.at[jnp.where(stores, cslot, D), m].set(got, mode="drop"),
    )
    state = state.replace(inflight=f)

    # Commits due now (read from the rings after this cycle's new entries went in: their slots differ), then the
    # reads issued now, which see them.
    state, commits, use = _commit(cfg, state)
    sram = state.mem.reshape(M * W, L)
    read_row = sram.at[m * W + addr].get(mode="clip")

    def gather(s, rows, streams):
        gl, oob = lane_map(streams, is_gather)
        idx = (m[:, None] * W + jnp.maximum(gl, 0)) * L + jnp.arange(L)
        got = jnp.where(gl >= 0, s.reshape(-1).at[idx].get(), 0).astype(jnp.uint8)
        return jnp.where(is_gather[:, None], got, rows), _lane_banks(gl, BW), oob

    # Gathers are rare: their per-lane work (and the merge with the row reads) runs only in cycles that have one.
    loaded, g_use, oob_g = jax.lax.cond(
        jnp.any(is_gather),
        gather,
        lambda s, rows, _: (rows, jnp.zeros((M, 2), jnp.int32), jnp.zeros(M, bool)),
        sram,
        read_row,
        state.streams,
    )
    use += g_use + (is_read[:, None] & (addr[:, None] // BW == banks)).astype(jnp.int32)

    out = {
        "valid": is_read | is_gather,
        "sid": sid,
        "width": jnp.ones_like(sid),
        "data": loaded[:, None, :],  # [M, 1, L]: MEM results are 1 stream wide
        "delay": jnp.where(is_read, cfg.delay("Read"), cfg.delay("Gather")),
    }
    hits = [
        (ADDRESS_RANGE, oob_s | oob_g, m),
        (BANK_CONFLICT, use >= 2, m[:, None] * 2 + banks[None, :]),
        (PORT_CONFLICT, busy, m),
    ]
    return state, out, commits, hits
