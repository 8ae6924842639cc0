"""The simulator: one cycle of the whole chip (`step`), and `run`, a jitted `lax.scan` over cycles.

A cycle c, in order (each stage a pure function; `state.cycle` is advanced here and nowhere else):
  1. ICU      every queue issues at most one instruction;
  2. land     results due at c go onto the streams at their unit's position (replacing what passes there), and
              the entry slots at the chip's edges are cleared (what fell off one edge does not wrap round);
  3. MEM      Write/Scatter operands are taken off the streams and filed to commit at c + d_func; the commits
              due at c are made; then the reads issued at c see them;
  4. VXM      ALU operands are taken off the streams; results are computed;
  5. MXM      installs due take effect; LW, IW, ABC take their operands; ACC takes the product due at c;
  6. SXM      operands are taken off the streams; results are computed;
  7. emit     MEM, VXM, MXM and SXM results are filed to land at c + d_func (+ the stagger they cross);
  8. cycle    c + 1: every stream value has moved one hop (the ring does it for free).
So a result due at c can be consumed at c by a unit at the same position, and at c + |q - p| at position q.
Inside a cycle every large buffer is written before it is read (or read only by the op that writes it), which
lets XLA update the SRAM, the stream ring and the pipeline rings in place instead of copying them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import isa
from .config import ChipConfig
from .icu import icu_step
from .mem import mem_step
from .mxm import mxm_step
from .pipeline import emit, land, unit_ports
from .state import MachineState, init_state, record_hazards
from .sxm import sxm_step
from .vxm import vxm_step

__all__ = ["TRACE_FIELDS", "is_idle", "run", "step", "stream_file"]


ALL_UNITS = ("vxm", "mxm", "sxm")
"""The units `_step` can leave out when a run does not need them (`units_needed`)."""


def _idle_out(n: int, L: int) -> dict:
    z = jnp.zeros((n,), jnp.int32)
    return {"valid": z > 0, "sid": z, "width": z, "data": jnp.zeros((n, 1, L), jnp.uint8), "delay": z, "idle": True}


def _step(cfg: ChipConfig, state: MachineState, program: jnp.ndarray, units=ALL_UNITS) -> tuple[MachineState, dict]:
    M, A, Pl = cfg.n_mem, cfg.vxm_alus, cfg.n_planes
    c = state.cycle
    with jax.named_scope("icu"):
        icu, issued = icu_step(cfg, state.icu, program, c)
        state = state.replace(icu=icu)
    with jax.named_scope("land"):
        state, landed, h_land = land(cfg, state, units)
    with jax.named_scope("mem"):
        state, mem_out, commits, h_mem = mem_step(cfg, state, issued[:M])
    with jax.named_scope("vxm"):
        vxm_out = vxm_step(cfg, state, issued[M : M + A]) if "vxm" in units else _idle_out(A, cfg.n_lanes)
    with jax.named_scope("mxm"):
        if "mxm" in units:
            state, mxm_out, h_mxm = mxm_step(cfg, state, issued[M + A : M + A + 3 * Pl])
        else:
            mxm_out, h_mxm = _idle_out(Pl, cfg.n_lanes), []
    with jax.named_scope("sxm"):
        U = cfg.n_sxm_units
        sxm_out = sxm_step(cfg, state, issued[M + A + 3 * Pl :]) if "sxm" in units else _idle_out(U * 4, cfg.n_lanes)
    with jax.named_scope("emit"):
        state, h_emit = emit(cfg, state, [mem_out, vxm_out, mxm_out, sxm_out])
    hits = h_land + h_mem + h_mxm + h_emit
    state = state.replace(hazards=record_hazards(state.hazards, hits, c), cycle=c + 1)
    return state, {"issued": issued, "landed": landed, "commits": commits}


def stream_file(cfg: ChipConfig, state: MachineState) -> jnp.ndarray:
    """Stream registers by position, uint8 [2, P, S, L] ([dir, position, stream, lane]), as they were during the
    cycle just run (state.cycle - 1), after that cycle's results landed."""
    c = state.cycle - 1
    P = cfg.n_positions
    p = jnp.arange(P)
    return jnp.stack([state.streams[0, (p - c) % P], state.streams[1, (p + c) % P]])


# What a trace can record, per cycle (each a function of the state after the cycle and the cycle's events).
TRACE_FIELDS = {
    "cycle": lambda cfg, s, ev: s.cycle - 1,
    "issued": lambda cfg, s, ev: ev["issued"],  # int32 [Q, F]: rows issued per queue (opcode 0: none)
    "landed_sid": lambda cfg, s, ev: ev["landed"]["sid"],  # int32 [N]: stream written per port (-1: none)
    "landed_width": lambda cfg, s, ev: ev["landed"]["width"],  # int32 [N]
    "landed_data": lambda cfg, s, ev: ev["landed"]["data"],  # uint8 [N, 4, L]
    "commit_addr": lambda cfg, s, ev: ev["commits"]["wr_addr"],  # int32 [M]: Write commits (-1: none)
    # int32 [M, L]: Scatter commits per lane (-1: none); the ring slot of this cycle still holds them
    "commit_lanes": lambda cfg, s, ev: jnp.where(
        ev["commits"]["scatter"][:, None], s.inflight.sc_addr[(s.cycle - 1) % cfg.delay_slots], -1
    ),
    "commit_data": lambda cfg, s, ev: ev["commits"]["data"],  # uint8 [M, L]
    "streams": lambda cfg, s, ev: stream_file(cfg, s),  # uint8 [2, P, S, L]
    "hazards": lambda cfg, s, ev: s.hazards.count,  # int32 [K]: running totals
}


def step(cfg: ChipConfig, state: MachineState, program) -> MachineState:
    """Advance one cycle. `program`: a Program or its encoding (isa.encode). Jitted per (cfg, size class)."""
    return _jit_step(cfg, state, _as_array(cfg, program))


@functools.partial(jax.jit, static_argnums=0)
def _jit_step(cfg, state, program):
    return _step(cfg, state, program)[0]


TRACE_COUNT = {"scan": 0}
"""How many times the scan body has been traced (a test checks that a new program does not retrace)."""


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4), donate_argnums=(5,))
def _scan(cfg: ChipConfig, length: int, fields: tuple[str, ...], unroll: int, units, state, program):
    TRACE_COUNT["scan"] += 1

    def body(s, _):
        s, ev = _step(cfg, s, program, units)
        return s, {f: TRACE_FIELDS[f](cfg, s, ev) for f in fields}

    return jax.lax.scan(body, state, None, length=length, unroll=min(unroll, length))


def _as_array(cfg: ChipConfig, program) -> jnp.ndarray:
    if isinstance(program, isa.Program):
        return jnp.asarray(isa.encode(cfg, program))
    Q = len(isa.queue_names(cfg))
    if (  # already on the device (a caller stepping cycle by cycle keeps it there): no copy
        isinstance(program, jax.Array)
        and program.dtype == jnp.int32
        and program.ndim == 3
        and program.shape[0] == Q
        and program.shape[2] == isa.N_FIELDS
    ):
        return program
    arr = np.asarray(program)
    if arr.ndim != 3 or arr.shape[0] != Q or arr.shape[2] != isa.N_FIELDS or arr.dtype != np.int32:
        raise isa.ProgramError(
            f"an encoded program must be int32 [{Q}, L, {isa.N_FIELDS}] for {cfg.name}, got {arr.dtype} {arr.shape}"
        )
    return jnp.asarray(arr)


def units_needed(cfg: ChipConfig, program, state: MachineState) -> tuple[str, ...]:
    """The units a run must step: those the program has instructions for, and the MXM if the state holds MXM work
    in flight. A unit left out is exactly idle: the VXM and the SXM keep no state, their pending results sit in
    the result rings (landed as usual), and an MXM with no instruction and nothing due changes nothing."""
    ops = np.asarray(program)[..., 0]  # no sort or copy: a few passes over the opcode column
    c = int(state.cycle)
    due = np.asarray(state.inflight.out_meta)[..., 0]  # [D, N]: a result still to land on a unit's port

    def pending(unit):
        return bool((due[:, unit_ports(cfg, unit)] >= c).any())

    units = []
    if (ops >= isa.VXM_BASE).any() or pending("vxm"):
        units.append("vxm")
    mxm_busy = (np.asarray(state.mxm.prod_meta)[..., 0] >= c).any() or (np.asarray(state.mxm.install_due) >= c).any()
    if ((ops >= isa.LW) & (ops <= isa.ACC)).any() or mxm_busy or pending("mxm"):
        units.append("mxm")
    if ((ops >= isa.SHIFT_UP) & (ops <= isa.TRANSPOSE)).any() or pending("sxm"):
        units.append("sxm")
    return tuple(units)


def _pieces(n: int, chunk: int) -> list[int]:
    """Split n cycles into scans of two static lengths only (chunk and 1), so any n compiles at most twice."""
    return [chunk] * (n // chunk) + [1] * (n % chunk)


def run(
    cfg: ChipConfig,
    program,
    state: MachineState | None = None,
    n_cycles: int = 1,
    trace: tuple[str, ...] | list[str] = (),
    chunk: int = 256,
    unroll: int = 1,
    donate: bool = False,
    units: str = "all",
) -> tuple[MachineState, dict]:
    """Run `n_cycles` cycles from `state` (default: a fresh `init_state(cfg)`).

    Returns the final state and a dict {field: numpy array [n_cycles, ...]} for each requested trace field
    (`TRACE_FIELDS`). The scan is jitted per (config, program size class, scan length, fields): a second program
    of the same size class reuses the compiled code. The cycles run in scans of `chunk` cycles, then single
    cycles for the remainder, so any n_cycles compiles at most two scan lengths. The input state is left intact
    (it is copied once) unless `donate=True`, which hands its buffers to the run (no copy of the SRAM; the input
    state must not be used afterwards).

    `units="auto"` leaves out of the compiled cycle the VXM, MXM or SXM when the program has no instruction for
    it and nothing of it is in flight (`units_needed`): the same bits, measured 1.5-2x faster on a MEM+VXM
    program at groqchip1, at the price of one compile per set of units (so it is not the default).
    """
    if not isinstance(n_cycles, (int, np.integer)) or n_cycles < 0:
        raise ValueError(f"n_cycles must be an int >= 0, got {n_cycles!r}")
    fields = tuple(trace)
    bad = [f for f in fields if f not in TRACE_FIELDS]
    if bad:
        raise ValueError(f"unknown trace field {bad[0]!r}; known: {', '.join(TRACE_FIELDS)}")
    prog = _as_array(cfg, program)
    if state is None:
        state = init_state(cfg)
    elif not donate:
        state = jax.tree.map(jnp.copy, state)
    if units not in ("all", "auto"):
        raise ValueError(f"units must be 'all' or 'auto', got {units!r}")
    units = ALL_UNITS if units == "all" else units_needed(cfg, prog, state)
    parts: dict[str, list] = {f: [] for f in fields}
    for length in _pieces(int(n_cycles), chunk):
        state, ys = _scan(cfg, length, fields, unroll, units, state, prog)
        for f in fields:
            parts[f].append(np.asarray(ys[f]))
    out = {f: (np.concatenate(v) if v else np.zeros((0,))) for f, v in parts.items()}
    return state, out


def is_idle(state: MachineState, program) -> bool:
    """True when every queue has halted and no result is in flight (the program has finished)."""
    arr = np.asarray(program)
    pc = np.asarray(state.icu.pc)
    halted = arr[np.arange(arr.shape[0]), pc, 0] == isa.HALT
    c = int(state.cycle)
    quiet = (
        (np.asarray(state.inflight.out_meta)[..., 0] < c).all()
        and (np.asarray(state.inflight.wr_meta)[..., 0] < c).all()
        and (np.asarray(state.mxm.prod_meta)[..., 0] < c).all()
        and (np.asarray(state.mxm.install_due) < c).all()
    )
    return bool(halted.all() and (np.asarray(state.icu.rep_left) == 0).all() and quiet)
