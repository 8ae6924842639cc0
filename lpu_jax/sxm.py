"""SXM: the switch units, `cfg.sxm_units` per SXM slice, each driven by its own ICU queue (docs/sxm.md).

An instruction issued at cycle t reads its source stream(s) at the SXM slice's position at t and puts its result
on the destination at that position at t + d + x, where d is the class delay (`sxm.shift`, `sxm.distribute`,
`sxm.permute`, `sxm.transpose`) and x the stagger the data must wait for when it moves toward lower superlanes
(architecture.md §3: superlane k runs k cycles after superlane 0, and the model keeps vectors in superlane-0
time). Lane l of the destination, for source vector a (L lanes):
  * `Shift.up D, A, n`:    a[l - n], 0 where l < n             (data moves toward higher lanes: x = 0)
  * `Shift.down D, A, n`:  a[l + n], 0 where l + n >= L        (x = the most superlanes any byte moves down)
  * `Rotate.up D, A, n`:   a[(l - n) mod L]                    (x = the same rule: the wrapped bytes move down)
  * `Rotate.down D, A, n`: a[(l + n) mod L]
  * `Permute D, A, M`:     a[map[l]], 0 where map[l] >= L; map = the uint16 on the 2-stream group M (any
                           permutation, or any lane gather). x = n_superlanes - 1 always: the map is data, and
                           the timing must not depend on data.
  * `Distribute D, A, M`:  a[16 * (l // 16) + map[l]], 0 where map[l] >= 16; map = the byte on stream M (a remap
                           of the 16 lanes of each superlane, with zero fill). x = 0.
  * `Transpose.sg16 D, A`: 16 streams in, 16 out: out stream D+i, lane 16s + j = in stream A+j, lane 16s + i
                           (a 16 x 16 byte transpose inside every superlane s). x = 0.
The lane count n of shifts and rotates is in 0..L-1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import isa
from . import streams as st
from .config import ChipConfig
from .dtypes import unpack_u16
from .state import SXM_PORTS, MachineState

__all__ = ["sxm_step", "sxm_delay"]

_LANE_OPS = (isa.SHIFT_UP, isa.SHIFT_DOWN, isa.ROTATE_UP, isa.ROTATE_DOWN)


def _sources(op: int, n: int, L: int) -> np.ndarray:
    """Source lane of every destination lane for a shift/rotate by n (-1: zero fill)."""
    lane = np.arange(L)
    if op == isa.SHIFT_UP:
        return np.where(lane >= n, lane - n, -1)
    if op == isa.SHIFT_DOWN:
        return np.where(lane + n < L, lane + n, -1)
    if op == isa.ROTATE_UP:
        return (lane - n) % L
    return (lane + n) % L


@functools.cache
def stagger_table(cfg: ChipConfig) -> np.ndarray:
    """int32 [4, L]: for Shift.up/.down, Rotate.up/.down by n lanes, the most superlanes any byte moves down.
    Computed once per config (kernel generators ask for it row by row). Read-only."""
    L, G = cfg.n_lanes, cfg.lanes_per_superlane
    t = np.zeros((4, L), np.int32)
    for i, op in enumerate(_LANE_OPS):
        for n in range(L):
            src = _sources(op, n, L)
            ok = src >= 0
            drop = src[ok] // G - np.arange(L)[ok] // G
            t[i, n] = max(0, int(drop.max())) if ok.any() else 0
    t.setflags(write=False)
    return t


def sxm_delay(cfg: ChipConfig, mnemonic: str, n: int = 0) -> int:
    """Cycles from issue to landing of an SXM instruction (class delay + stagger), as the simulator uses them."""
    if mnemonic in ("Shift.up", "Shift.down", "Rotate.up", "Rotate.down"):
        i = _LANE_OPS.index(isa.opcode(mnemonic))
        return cfg.delay("sxm.shift") + int(stagger_table(cfg)[i, n])
    if mnemonic == "Permute":
        return cfg.delay("sxm.permute") + cfg.n_superlanes - 1
    return cfg.delay("sxm.distribute" if mnemonic == "Distribute" else "sxm.transpose")


def _delays(cfg: ChipConfig) -> np.ndarray:
    """int32 [8, L]: delay of opcode SHIFT_UP + i with lane count n, for i in 0..6 (row 7 unused)."""
    t = np.zeros((8, cfg.n_lanes), np.int32)
    t[:4] = cfg.delay("sxm.shift") + stagger_table(cfg)
    t[4] = cfg.delay("sxm.permute") + cfg.n_superlanes - 1
    t[5] = cfg.delay("sxm.distribute")
    t[6] = cfg.delay("sxm.transpose")
    return t


def sxm_step(cfg: ChipConfig, state: MachineState, ins: jnp.ndarray) -> dict:
    """One cycle of every SXM unit. `ins` int32 [U, F]. Returns the port outputs for `pipeline.emit` (SXM_PORTS
    ports per unit: a transpose uses all four, every other op the first)."""
    U, L, G = ins.shape[0], cfg.n_lanes, cfg.lanes_per_superlane
    if U == 0:
        none = jnp.zeros((0,), jnp.int32)
        return {"valid": none > 0, "sid": none, "width": none, "data": jnp.zeros((0, 4, L), jnp.uint8), "delay": none}
    op, dst, src, n = ins[:, 0], ins[:, 2], ins[:, 3], ins[:, 4]
    active = (op >= isa.SHIFT_UP) & (op <= isa.TRANSPOSE)
    transpose = op == isa.TRANSPOSE
    pos = jnp.asarray(np.repeat(cfg.positions[cfg.sxm_slices], cfg.sxm_units))
    c = state.cycle
    lane = jnp.arange(L)

    def compute(streams):
        k = jnp.arange(16)
        a = st.read_rows(cfg, streams, st.row_index(cfg, src[:, None] + k, pos[:, None], c))  # [U, 16, L]
        mp = st.read_rows(cfg, streams, st.row_index(cfg, n[:, None] + jnp.arange(2), pos[:, None], c))  # [U, 2, L]
        map16 = unpack_u16(mp, cfg.group_byte_order).astype(jnp.int32)
        map8 = mp[:, 0].astype(jnp.int32)
        nn = n[:, None]
        idx = jnp.select(
            [op[:, None] == o for o in (*_LANE_OPS, isa.PERMUTE, isa.DISTRIBUTE)],
            [
                jnp.where(lane >= nn, lane - nn, -1),
                jnp.where(lane + nn < L, lane + nn, -1),
                (lane - nn) % L,
                (lane + nn) % L,
                jnp.where(map16 < L, map16, -1),
                jnp.where(map8 < G, lane // G * G + map8, -1),
            ],
            -1,
        )
        moved = jnp.where(idx >= 0, jnp.take_along_axis(a[:, 0], jnp.maximum(idx, 0), axis=1), 0).astype(jnp.uint8)
        t = a.reshape(U, 16, L // G, G).transpose(0, 3, 2, 1).reshape(U, 16, L)  # out[i, 16s+j] = in[j, 16s+i]
        zero = jnp.zeros((U, 15, L), jnp.uint8)
        return jnp.where(transpose[:, None, None], t, jnp.concatenate([moved[:, None], zero], 1))

    rows = jax.lax.cond(jnp.any(active), compute, lambda s: jnp.zeros((U, 16, L), jnp.uint8), state.streams)
    kp = jnp.arange(SXM_PORTS)
    valid = active[:, None] & ((kp == 0) | transpose[:, None])  # [U, ports]
    width = jnp.where(transpose[:, None], 4, jnp.where(kp == 0, 1, 0))
    delay = jnp.asarray(_delays(cfg))[jnp.clip(op - isa.SHIFT_UP, 0, 7), jnp.where(op <= isa.PERMUTE, n, 0) % L]
    return {
        "valid": valid.reshape(-1),
        "sid": (dst[:, None] + 4 * kp).reshape(-1),
        "width": jnp.broadcast_to(width, valid.shape).reshape(-1).astype(jnp.int32),
        "data": rows.reshape(U * SXM_PORTS, 4, L),
        "delay": jnp.broadcast_to(delay[:, None], valid.shape).reshape(-1),
    }
