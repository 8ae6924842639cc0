"""The assembly line: stream registers as rings, so that moving every value one hop per cycle costs nothing.

Rules (architecture.md §3, [A] one stream-register position per slice by default):
  * every cycle every stream value moves one position in its direction (east: p -> p+1, west: p -> p-1);
  * a value leaving the chip's edge falls off, and the position it leaves empty at the other edge holds 0;
  * a slice's result written onto a stream at its position replaces the value passing there.

The value at position p during cycle c is stored in ring slot `(p - c) mod P` (east) or `(p + c) mod P` (west).
From cycle c to c+1 every value keeps its slot and so moves one position. The one cost is the edge: at the start
of cycle c the slot of the entry position (p = 0 east, p = P-1 west) still holds the value that just fell off the
far edge, so it is cleared. The ring is addressed as a flat row array `[2 * P * S, L]`.
"""

from __future__ import annotations

import jax.numpy as jnp

from .config import ChipConfig

__all__ = ["edge_rows", "read_rows", "row_index", "write_rows"]


def row_index(cfg: ChipConfig, sid: jnp.ndarray, pos: jnp.ndarray, cycle: jnp.ndarray) -> jnp.ndarray:
    """Flat ring row of stream `sid` (dir * S + index) at position `pos` during `cycle` (broadcasting)."""
    P, S = cfg.n_positions, cfg.n_streams
    d = sid // S
    slot = jnp.where(d == 0, pos - cycle, pos + cycle) % P
    return (d * P + slot) * S + sid % S


def edge_rows(cfg: ChipConfig, cycle: jnp.ndarray) -> jnp.ndarray:
    """Flat ring rows of every stream at the entry positions during `cycle`, int32 [2 * S]: they still hold what
    just fell off the far edge, and must read as 0 (nothing wraps round)."""
    S = cfg.n_streams
    sid = jnp.arange(2 * S)
    pos = jnp.where(sid < S, 0, cfg.n_positions - 1)
    return row_index(cfg, sid, pos, cycle)


def read_rows(cfg: ChipConfig, streams: jnp.ndarray, rows: jnp.ndarray) -> jnp.ndarray:
    """Gather flat ring rows: `rows` int32 [...] -> uint8 [..., L]. Callers pass rows in range (`row_index` of a
    valid stream id always is); an index out of range is clamped, never a per-byte select."""
    flat = streams.reshape(-1, cfg.n_lanes)
    return flat.at[rows].get(mode="clip")


def write_rows(cfg: ChipConfig, streams: jnp.ndarray, rows: jnp.ndarray, data: jnp.ndarray) -> jnp.ndarray:
    """Scatter `data` uint8 [..., L] to flat ring rows `rows` [...]; rows < 0 or out of range are dropped.

    Callers guarantee that the valid rows are distinct (conflicts are resolved before, as hazards).
    """
    flat = streams.reshape(-1, cfg.n_lanes)
    n = flat.shape[0]
    rows = jnp.where(rows < 0, n, rows)
    flat = flat.at[rows.reshape(-1)].set(data.reshape(-1, cfg.n_lanes), mode="drop", unique_indices=False)
    return flat.reshape(streams.shape)
