"""Results in flight: every unit output port has a ring of pending results, indexed by the cycle they land at.

An instruction issued at cycle t on a slice at position p whose result has functional delay d puts the result
on its stream group at position p at cycle t + d (architecture.md §3). `emit` files the result in slot
(t + d) mod D of its port; `land` writes the results due at the current cycle onto the stream ring. A consumer
at position q therefore sees it at cycle t + d + |q - p|, and at no other cycle.

Ports: 0..M-1 are the MEM slices (west to east), M..M+A-1 the VXM ALUs. Conflicts are hazards, never errors:
  * two results due on one port in one cycle: the later-issued one replaces the earlier (`port_conflict`);
  * two VXM ALUs writing one stream in one cycle: the higher ALU index wins (`stream_conflict`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import streams as st
from .config import ChipConfig
from .state import HAZARDS, InFlight, MachineState, record_hazard

__all__ = ["emit", "land", "port_positions"]

PORT_CONFLICT = HAZARDS.index("port_conflict")
STREAM_CONFLICT = HAZARDS.index("stream_conflict")


def port_positions(cfg: ChipConfig) -> np.ndarray:
    """Stream-register position of every output port, int32 [N]."""
    mem = cfg.positions[cfg.mem_slices]
    vxm = np.full(cfg.vxm_alus, cfg.positions[cfg.vxm_slice], np.int32)
    return np.concatenate([mem, vxm]).astype(np.int32)


def emit(
    cfg: ChipConfig,
    state: MachineState,
    ports: np.ndarray,
    valid: jnp.ndarray,
    sid: jnp.ndarray,
    width: jnp.ndarray,
    data: jnp.ndarray,
    delay: jnp.ndarray,
) -> MachineState:
    """File results of `ports` (static int [n]) due at cycle + delay. data uint8 [n, 4, L]; valid bool [n]."""
    f = state.inflight
    D = cfg.delay_slots
    slot = (state.cycle + delay) % D
    ports = jnp.asarray(ports)
    busy = valid & (f.out_sid[slot, ports] >= 0)
    hz = record_hazard(state.hazards, PORT_CONFLICT, busy, state.cycle, ports)
    slot = jnp.where(valid, slot, D)  # out of range: dropped
    f = f.replace(
        out_sid=f.out_sid.at[slot, ports].set(sid, mode="drop"),
        out_width=f.out_width.at[slot, ports].set(width, mode="drop"),
        out_data=f.out_data.at[slot, ports].set(data, mode="drop"),
    )
    return state.replace(inflight=f, hazards=hz)


def land(cfg: ChipConfig, state: MachineState) -> tuple[MachineState, dict]:
    """Write every result due this cycle onto the streams at its port's position; free its slot."""
    f: InFlight = state.inflight
    c = state.cycle
    slot = c % cfg.delay_slots
    sid, width, data = f.out_sid[slot], f.out_width[slot], f.out_data[slot]
    k = jnp.arange(4)
    valid = (sid[:, None] >= 0) & (k[None, :] < width[:, None])  # [N, 4]
    rows = st.row_index(cfg, sid[:, None] + k[None, :], jnp.asarray(port_positions(cfg))[:, None], c)
    # VXM ALUs share one position: resolve their write conflicts (higher ALU index wins).
    M = cfg.n_mem
    vr, vv = rows[M:].reshape(-1), valid[M:].reshape(-1)
    n = vr.shape[0]
    later = jnp.asarray(np.triu(np.ones((n, n), bool), k=1))
    lose = jnp.any((vr[:, None] == vr[None, :]) & vv[:, None] & vv[None, :] & later, axis=1)
    hz = record_hazard(state.hazards, STREAM_CONFLICT, lose, c, (sid[M:, None] + k[None, :]).reshape(-1))
    valid = valid.at[M:].set(valid[M:] & ~lose.reshape(-1, 4))
    streams = st.write_rows(cfg, state.streams, jnp.where(valid, rows, -1), data)
    f = f.replace(out_sid=f.out_sid.at[slot].set(-1))
    landed = {"sid": sid, "width": width, "data": data}
    return state.replace(streams=streams, inflight=f, hazards=hz), landed
