"""Results in flight: every unit output port has a ring of pending results, indexed by the cycle they land at.

An instruction issued at cycle t on a slice at position p whose result has functional delay d puts the result
on its stream group at position p at cycle t + d (architecture.md §3). `emit` files the result in slot
(t + d) mod D of its port, stamped with its due cycle t + d; `land` writes the results due at the current cycle
onto the stream ring. A consumer at position q therefore sees it at cycle t + d + |q - p|, and at no other cycle.

Ports (`state.n_ports`): 0..M-1 the MEM slices (west to east), then the A VXM ALUs, the MXM planes (one 4-stream
port each) and the SXM units (`state.SXM_PORTS` ports each, so that a Transpose.sg16 can put 16 streams out).
Conflicts are hazards, never errors:
  * two results due on one port in one cycle: the later-issued one replaces the earlier (`port_conflict`,
    where = port);
  * two ports at one position (the VXM's ALUs, an SXM slice's units) writing one stream in one cycle: the higher
    port index wins (`stream_conflict`, where = losing port * 2S + stream id dir * S + index).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import streams as st
from .config import ChipConfig
from .state import HAZARDS, SXM_PORTS, MachineState, n_ports

__all__ = ["emit", "land", "port_positions", "unit_ports"]

PORT_CONFLICT = HAZARDS.index("port_conflict")
STREAM_CONFLICT = HAZARDS.index("stream_conflict")


def port_positions(cfg: ChipConfig) -> np.ndarray:
    """Stream-register position of every output port, int32 [N]."""
    mem = cfg.positions[cfg.mem_slices]
    vxm = np.full(cfg.vxm_alus, cfg.positions[cfg.vxm_slice], np.int32)
    mxm = cfg.positions[cfg.mxm_slices]
    sxm = np.repeat(cfg.positions[cfg.sxm_slices], cfg.sxm_units * SXM_PORTS)
    return np.concatenate([mem, vxm, mxm, sxm]).astype(np.int32)


def _shared_later(cfg: ChipConfig) -> np.ndarray:
    """bool [n, n] over the non-MEM ports: [i, j] when port j sits at port i's position and has a higher index."""
    pp = port_positions(cfg)[cfg.n_mem :]
    n = len(pp)
    return (pp[:, None] == pp[None, :]) & np.triu(np.ones((n, n), bool), k=1)


def unit_ports(cfg: ChipConfig, unit: str) -> np.ndarray:
    """The output ports of a unit kind ("mem", "vxm", "mxm", "sxm"), int [n], in port order."""
    M, A, Pl = cfg.n_mem, cfg.vxm_alus, cfg.n_planes
    bounds = {"mem": (0, M), "vxm": (M, M + A), "mxm": (M + A, M + A + Pl), "sxm": (M + A + Pl, n_ports(cfg))}
    return np.arange(*bounds[unit])


def _land_rows(cfg: ChipConfig, units: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(port, row k) of every result row that can land: row 0 of each MEM port (MEM results are one stream
    wide) and rows 0..3 of the ports of the other units in `units` (a unit left out has nothing in flight)."""
    p = [unit_ports(cfg, "mem")]
    k = [np.zeros(cfg.n_mem, np.int64)]
    for u in ("vxm", "mxm", "sxm"):
        if u in units:
            up = unit_ports(cfg, u)
            p.append(np.repeat(up, 4))
            k.append(np.tile(np.arange(4), len(up)))
    return np.concatenate(p), np.concatenate(k)


def land(cfg: ChipConfig, state: MachineState, units=("vxm", "mxm", "sxm")) -> tuple[MachineState, dict, list]:
    """Write every result due this cycle onto the streams at its port's position, and clear the entry slots
    (`streams.edge_rows`) where nothing lands. `units`: the non-MEM units that may have results in flight
    (`sim.units_needed`); the rows of the others are not looked at.

    Returns the state, the landed results (for traces) and the hazards seen.
    """
    f = state.inflight
    c = state.cycle
    now = c % cfg.delay_slots
    meta, data = f.out_meta[now], f.out_data[now]  # [N, 3], [N, 4, L]
    due, sid, width = meta[:, 0], meta[:, 1], meta[:, 2]
    k = jnp.arange(4)
    valid = (due == c)[:, None] & (k[None, :] < width[:, None])  # [N, 4]
    rows = st.row_index(cfg, sid[:, None] + k[None, :], jnp.asarray(port_positions(cfg))[:, None], c)
    # Ports that share a position (VXM ALUs, an SXM slice's units) resolve their write conflicts: the higher port
    # index wins. Port i's stream k (sid_i + k, k < width_i) loses if a later port j's group holds it.
    M = cfg.n_mem
    vs = jnp.where(due[M:] == c, sid[M:], -8)  # idle ports: a group no stream id can fall in
    vw = width[M:]
    later = jnp.asarray(_shared_later(cfg))  # [i, j]
    mine = vs[:, None] + k[None, :]  # [n, 4]
    held = (mine[:, :, None] >= vs[None, None, :]) & (mine[:, :, None] < (vs + vw)[None, None, :])  # [i, k, j]
    lose = valid[M:] & jnp.any(held & later[:, None, :], axis=2)
    where = (jnp.arange(M, valid.shape[0])[:, None] * 2 * cfg.n_streams) + mine
    hits = [(STREAM_CONFLICT, lose, where)]
    valid = valid.at[M:].set(valid[M:] & ~lose)
    sel_p, sel_k = _land_rows(cfg, units)
    rows = jnp.where(valid, rows, -1)[sel_p, sel_k]
    # Clear the entry slots in the same scatter, except where a result lands (it replaces the whole row anyway).
    edge = st.edge_rows(cfg, c)
    pp = port_positions(cfg)
    if (pp == 0).any() or (pp == cfg.n_positions - 1).any():  # static: only a port at an edge can collide
        edge = jnp.where(jnp.any(edge[:, None] == rows[None, :], axis=1), -1, edge)
    L = cfg.n_lanes
    all_rows = jnp.concatenate([rows, edge])
    all_data = jnp.concatenate([data[sel_p, sel_k], jnp.zeros((edge.shape[0], L), jnp.uint8)])
    streams = st.write_rows(cfg, state.streams, all_rows, all_data)
    landed = {"sid": jnp.where(due == c, sid, -1), "width": width, "data": data}
    return state.replace(streams=streams), landed, hits


def emit(cfg: ChipConfig, state: MachineState, outs: list[dict]) -> tuple[MachineState, list]:
    """File the results of every port due at cycle + delay. `outs`: one dict per unit, in port order, with
    valid bool [n], sid/width/delay int32 [n] and data uint8 [n, w, L] (w <= 4 rows: the unit's widest result).
    Returns the state and the hazards seen."""
    f = state.inflight
    D = cfg.delay_slots
    cat = lambda k: jnp.concatenate([o[k] for o in outs])  # noqa: E731
    valid, due = cat("valid"), state.cycle + cat("delay")
    ports = jnp.arange(valid.shape[0])
    slot = due % D
    old = f.out_meta[slot, ports]  # [N, 3]
    busy = valid & (old[:, 0] == due)
    meta = jnp.where(valid[:, None], jnp.stack([due, cat("sid"), cat("width")], 1), old)
    data = f.out_data
    first = 0
    for o in outs:  # one scatter per unit, of only the rows it can fill (none for a unit left out of the run)
        n, w = o["data"].shape[:2]
        p = jnp.arange(first, first + n)
        if not o.get("idle", False):
            data = data.at[jnp.where(o["valid"], slot[first : first + n], D), p, :w].set(o["data"], mode="drop")
        first += n
    f = f.replace(out_meta=f.out_meta.at[slot, ports].set(meta), out_data=data)
    return state.replace(inflight=f), [(PORT_CONFLICT, busy, ports)]
