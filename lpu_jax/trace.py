"""Traces as events: what happened, cycle by cycle, in a sparse form that files, diffs and viewers share.

`sim.run(..., trace=fields)` returns dense per-cycle arrays (`sim.TRACE_FIELDS`): one row per queue, per port and
per MEM slice every cycle, live or not, with stale ring contents where nothing happened. A golden model's users
want the events instead: this module turns dense traces into events and records long runs chunk by chunk.

Signals (the user chooses which to record):
    issue    every instruction issued: cycle, queue, and its encoded row (docs/isa.md §4)
    land     every result put onto a stream (a unit output written at its port's position): cycle, port,
             stream id of the group base (dir * S + index), width in streams, the bytes
    commit   every SRAM write made (Write or Scatter commit): cycle, MEM slice, address (-1 for a Scatter),
             per-lane addresses (-1 where a lane is not written; all -1 for a Write), the bytes
    streams  the whole stream register file after the cycle's landing (dense, large: 1.9 MB a cycle on
             groqchip1, so record it over a window)
    hazards  the running hazard counts (`state.HAZARDS` order), at every cycle where they changed (from the
             counts the machine had when recording began)

Events: `{signal: {column: numpy array}}`, every column of one signal with the same first length n:
    issue    cycle int64 [n], queue int32 [n], row int32 [n, 8]
    land     cycle int64 [n], port int32 [n], sid int32 [n], width int32 [n], data uint8 [n, 4, L]
    commit   cycle int64 [n], slice int32 [n], addr int32 [n], lanes int32 [n, L], data uint8 [n, L]
    streams  cycle int64 [n], data uint8 [n, 2, P, S, L]   ([dir, position, stream, lane], as `sim.stream_file`)
    hazards  cycle int64 [n], count int64 [n, K]
Rows are sorted by cycle, then by queue / port / slice. Bytes that carry nothing are zero (land rows >= width;
commit lanes not written), so two implementations that agree give equal events.

    state, ev = record(cfg, program, state, 10_000, signals=("issue", "land"), window=(2_000, 3_000))
    record(cfg, program, None, 100_000, sink=writer.append)   # chunk by chunk, never the whole trace in memory
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .config import ChipConfig
from .isa import N_FIELDS, queue_names
from .state import HAZARDS, MachineState, init_state, n_ports

__all__ = [
    "SIGNALS",
    "DEFAULT_SIGNALS",
    "Events",
    "check_signals",
    "columns",
    "concat",
    "dense_fields",
    "empty",
    "record",
    "select",
    "to_events",
]

Events = dict[str, dict[str, np.ndarray]]

SIGNALS = ("issue", "land", "commit", "streams", "hazards")
DEFAULT_SIGNALS = ("issue", "land", "commit", "hazards")
_DENSE = {
    "issue": ("issued",),
    "land": ("landed_sid", "landed_width", "landed_data"),
    "commit": ("commit_addr", "commit_lanes", "commit_data"),
    "streams": ("streams",),
    "hazards": ("hazards",),
}
_KEY = {"issue": "queue", "land": "port", "commit": "slice"}


def columns(cfg: ChipConfig, signal: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{column: (numpy dtype name, shape of one row)} of a signal: the events' layout for `cfg`."""
    L, P, S = cfg.n_lanes, cfg.n_positions, cfg.n_streams
    c = {"cycle": ("int64", ())}
    if signal == "issue":
        return c | {"queue": ("int32", ()), "row": ("int32", (N_FIELDS,))}
    if signal == "land":
        return c | {"port": ("int32", ()), "sid": ("int32", ()), "width": ("int32", ()), "data": ("uint8", (4, L))}
    if signal == "commit":
        return c | {"slice": ("int32", ()), "addr": ("int32", ()), "lanes": ("int32", (L,)), "data": ("uint8", (L,))}
    if signal == "streams":
        return c | {"data": ("uint8", (2, P, S, L))}
    if signal == "hazards":
        return c | {"count": ("int64", (len(HAZARDS),))}
    raise ValueError(f"unknown trace signal {signal!r}; known: {', '.join(SIGNALS)}")


def check_signals(signals: Iterable[str], nonempty: bool = False) -> tuple[str, ...]:
    """The signals as a tuple; ValueError for an unknown or repeated name (or none, with `nonempty`)."""
    signals = tuple(signals)
    for s in signals:
        if s not in SIGNALS:
            raise ValueError(f"unknown trace signal {s!r}; known: {', '.join(SIGNALS)}")
    if len(set(signals)) != len(signals):
        raise ValueError(f"trace signals named twice: {signals}")
    if nonempty and not signals:
        raise ValueError("a trace records one or more distinct signals, got none")
    return signals


def dense_fields(signals: Iterable[str]) -> tuple[str, ...]:
    """The `sim.TRACE_FIELDS` that `to_events` needs for these signals ("cycle" first)."""
    out = ["cycle"]
    for s in check_signals(signals):
        out += _DENSE[s]
    return tuple(out)


def empty(cfg: ChipConfig, signals: Iterable[str] = DEFAULT_SIGNALS) -> Events:
    """Events with no rows."""
    return {
        s: {k: np.zeros((0, *shape), dt) for k, (dt, shape) in columns(cfg, s).items()} for s in check_signals(signals)
    }


def _pick(n: int, allowed, what: str) -> np.ndarray:
    """bool [n]: which queues/ports/slices to keep (all when `allowed` is None)."""
    keep = np.ones(n, bool)
    if allowed is not None:
        idx = np.asarray(list(allowed), np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{what} index out of range 0..{n - 1}: {idx.tolist()}")
        keep[:] = False
        keep[idx] = True
    return keep


def to_events(
    cfg: ChipConfig,
    dense: dict,
    signals: Iterable[str] = DEFAULT_SIGNALS,
    *,
    queues: Iterable[int] | None = None,
    ports: Iterable[int] | None = None,
    slices: Iterable[int] | None = None,
    prev_hazards: np.ndarray | None = None,
) -> Events:
    """Events of a dense trace (`sim.run`'s or `golden.Interp.run`'s dict {field: [n, ...]}).

    `queues`/`ports`/`slices`: keep only these indices (queue order `isa.queue_names`, port order
    `state.port_name`, MEM slice order west to east). `prev_hazards`: the counts before the first cycle (default
    zeros), so that a chunked trace records only changes.
    """
    signals = check_signals(signals)
    missing = [f for f in dense_fields(signals) if f not in dense]
    if missing:
        raise ValueError(f"the dense trace lacks field {missing[0]!r} needed for signals {signals}")
    cyc = np.asarray(dense["cycle"], np.int64)
    out: Events = {}
    if "issue" in signals:
        rows = np.asarray(dense["issued"], np.int32)
        live = (rows[:, :, 0] != 0) & _pick(rows.shape[1], queues, "queue")[None]
        t, q = np.nonzero(live)
        out["issue"] = {"cycle": cyc[t], "queue": q.astype(np.int32), "row": rows[t, q]}
    if "land" in signals:
        sid = np.asarray(dense["landed_sid"], np.int32)
        live = (sid >= 0) & _pick(sid.shape[1], ports, "port")[None]
        t, p = np.nonzero(live)
        width = np.asarray(dense["landed_width"], np.int32)[t, p]
        data = np.array(np.asarray(dense["landed_data"])[t, p], np.uint8)
        data[np.arange(4)[None, :] >= width[:, None]] = 0
        out["land"] = {"cycle": cyc[t], "port": p.astype(np.int32), "sid": sid[t, p], "width": width, "data": data}
    if "commit" in signals:
        addr = np.asarray(dense["commit_addr"], np.int32)
        lanes = np.asarray(dense["commit_lanes"], np.int32)
        live = ((addr >= 0) | (lanes >= 0).any(-1)) & _pick(addr.shape[1], slices, "MEM slice")[None]
        t, m = np.nonzero(live)
        a, ln = addr[t, m], lanes[t, m]
        ln = np.where((a >= 0)[:, None], -1, ln)
        data = np.array(np.asarray(dense["commit_data"])[t, m], np.uint8)
        data[(a < 0)[:, None] & (ln < 0)] = 0
        out["commit"] = {"cycle": cyc[t], "slice": m.astype(np.int32), "addr": a, "lanes": ln, "data": data}
    if "streams" in signals:
        out["streams"] = {"cycle": cyc.copy(), "data": np.asarray(dense["streams"], np.uint8)}
    if "hazards" in signals:
        h = np.asarray(dense["hazards"], np.int64)
        before = np.zeros(h.shape[1:], np.int64) if prev_hazards is None else np.asarray(prev_hazards, np.int64)
        prev = np.concatenate([before[None], h[:-1]]) if len(h) else h
        t = np.nonzero((h != prev).any(-1))[0]
        out["hazards"] = {"cycle": cyc[t], "count": h[t]}
    return out


def concat(parts: list[Events]) -> Events:
    """Join events of consecutive pieces of one run (same signals)."""
    if not parts:
        raise ValueError("concat needs at least one piece of events")
    return {s: {k: np.concatenate([p[s][k] for p in parts]) for k in parts[0][s]} for s in parts[0]}


def select(events: Events, start: int | None = None, stop: int | None = None) -> Events:
    """The events of cycles start <= cycle < stop."""
    out: Events = {}
    for s, cols in events.items():
        c = cols["cycle"]
        keep = np.ones(len(c), bool)
        if start is not None:
            keep &= c >= start
        if stop is not None:
            keep &= c < stop
        out[s] = {k: v[keep] for k, v in cols.items()}
    return out


def _chunk_for(cfg: ChipConfig, signals: tuple[str, ...], budget_bytes: int = 96 << 20) -> int:
    """Cycles per recorded chunk so that one chunk's dense trace stays within about `budget_bytes`."""
    L, M, N, Q = cfg.n_lanes, cfg.n_mem, n_ports(cfg), len(queue_names(cfg))
    per = {"issue": Q * N_FIELDS * 4, "land": N * (8 + 4 * L), "commit": M * (4 + 5 * L), "hazards": 4 * len(HAZARDS)}
    per["streams"] = 2 * cfg.n_positions * cfg.n_streams * L
    size = 8 + sum(per[s] for s in signals)
    n = int(max(1, min(4096, budget_bytes // size)))
    return n // 256 * 256 if n >= 256 else n  # whole scans of 256 cycles (`sim.run` runs a remainder cycle by cycle)


def record(
    cfg: ChipConfig,
    program,
    state: MachineState | None = None,
    n_cycles: int = 1,
    signals: Iterable[str] = DEFAULT_SIGNALS,
    *,
    window: tuple[int, int] | None = None,
    queues: Iterable[int] | None = None,
    ports: Iterable[int] | None = None,
    slices: Iterable[int] | None = None,
    chunk_cycles: int | None = None,
    sink: Callable[[Events], None] | None = None,
    progress: Callable[[int], None] | None = None,
    units: str = "all",
) -> tuple[MachineState, Events | None]:
    """Run `n_cycles` cycles from `state` (default: a fresh machine), recording the chosen signals.

    `window=(start, stop)`: record only cycles start <= c < stop (absolute cycle numbers; cycles before the
    window run untraced, at full speed, and the run stops at `n_cycles` as usual). The run goes in chunks of
    `chunk_cycles` (default: about 96 MB of dense trace each); each chunk's events go to `sink` if given (then
    nothing is kept and the second return value is None), else they are joined and returned. `progress(k)` is
    called with the number of cycles run so far after every chunk. `units`: as `sim.run`'s ("auto" leaves out
    the units the program does not use: the same bits, faster, one more compile). The input state is left intact.
    """
    import jax.numpy as jnp

    from . import sim

    signals = check_signals(signals)
    if not isinstance(n_cycles, (int, np.integer)) or n_cycles < 0:
        raise ValueError(f"n_cycles must be an int >= 0, got {n_cycles!r}")
    prog = sim._as_array(cfg, program)
    state = init_state(cfg) if state is None else state
    c0 = int(state.cycle)
    end = c0 + int(n_cycles)
    lo, hi = (c0, end) if window is None else (int(window[0]), int(window[1]))
    if window is not None and not (0 <= lo <= hi):
        raise ValueError(f"window must be (start, stop) with 0 <= start <= stop, got {window}")
    lo, hi = max(lo, c0), min(hi, end)
    chunk = chunk_cycles or _chunk_for(cfg, signals)
    if chunk < 1:
        raise ValueError(f"chunk_cycles must be >= 1, got {chunk}")
    fields = dense_fields(signals)
    parts: list[Events] = []
    prev = None
    first = True
    done = c0

    def advance(s, n, trace):
        nonlocal first
        s, tr = sim.run(cfg, prog, s, n, trace=trace, chunk=min(256, n), donate=not first, units=units)
        first = False
        return s, tr

    if lo > c0:  # run up to the window untraced
        state, _ = advance(state, min(lo, end) - c0, ())
        done = min(lo, end)
        if progress:
            progress(done - c0)
    while done < hi:
        n = min(chunk, hi - done)
        if "hazards" in signals and prev is None:  # the counts before the first traced cycle
            prev = np.asarray(state.hazards.count, np.int64)
        state, tr = advance(state, n, fields)
        ev = to_events(cfg, tr, signals, queues=queues, ports=ports, slices=slices, prev_hazards=prev)
        if "hazards" in signals:
            prev = np.asarray(tr["hazards"][-1], np.int64)
        done += n
        if sink is not None:
            sink(ev)
        else:
            parts.append(ev)
        if progress:
            progress(done - c0)
    if done < end:
        state, _ = advance(state, end - done, ())
        if progress:
            progress(end - c0)
    if first:  # nothing ran: still hand back a copy, never the caller's buffers
        import jax

        state = jax.tree.map(jnp.copy, state)
    if sink is not None:
        return state, None
    return state, (concat(parts) if parts else empty(cfg, signals))
