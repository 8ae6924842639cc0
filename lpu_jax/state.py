"""The machine state: one pytree of dtype-pinned arrays, advanced one cycle at a time by `sim.step`.

Notation: P = `cfg.n_positions` stream-register positions per direction, S = `cfg.n_streams` streams per
direction, L = `cfg.n_lanes` lanes (bytes per vector), M = `cfg.n_mem` MEM slices, Q = ICU queues
(`isa.queue_names`), N = output ports (`n_ports`: one per MEM slice, one per VXM ALU, one per MXM plane, four per
SXM unit), D = `cfg.delay_slots`, F = `isa.N_FIELDS`, K = number of hazard kinds (`HAZARDS`), Pl = MXM planes,
R = `cfg.mxm_acc_rows`.

Streams are a *ring* per direction (implementation-notes.md): the value at position p during cycle c lives in
slot `(p - c) mod P` (eastward, dir 0) or `(p + c) mod P` (westward, dir 1). Moving every value one hop is then
free: the slot stays, the cycle counter moves. `streams.py` holds the index arithmetic.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from .config import ChipConfig
from .isa import N_FIELDS, queue_names

__all__ = [
    "HAZARDS",
    "Hazards",
    "InFlight",
    "MachineState",
    "MxmState",
    "QueueState",
    "hazard_report",
    "init_state",
    "NEVER",
]

NEVER = np.int32(2**31 - 1)
"""Timer value of a queue that will not issue again by itself (halted, or parked by Sync)."""

HAZARDS = (
    "bank_conflict",  # two SRAM accesses to one bank of one MEM slice in one cycle
    "port_conflict",  # two results (or two SRAM commits) due on one port of a unit in one cycle; the later issue wins
    "stream_conflict",  # two ports at one position (VXM ALUs, SXM units) write one stream in one cycle (higher wins)
    "address_range",  # a Gather/Scatter lane address >= mem_words (the lane reads 0 / writes nothing)
    "mxm_unpaired",  # an ACC with no product of its type due on its plane, or a product due with no ACC to take it
)


@struct.dataclass
class QueueState:
    """ICU state of the Q instruction queues (in-order issue, architecture.md §3)."""

    pc: jnp.ndarray
    """int32 [Q]: index of the next instruction to fetch."""
    next_cycle: jnp.ndarray
    """int32 [Q]: the cycle at which the queue next issues (fetches, or issues a repetition); NEVER if halted/parked."""
    parked: jnp.ndarray
    """bool [Q]: parked by Sync, waiting for a Notify."""
    rep_left: jnp.ndarray
    """int32 [Q]: repetitions still to issue for the current Repeat."""
    rep_d: jnp.ndarray
    """int32 [Q]: cycles between repetitions of the current Repeat."""
    rep_stride: jnp.ndarray
    """int32 [Q]: address increment per repetition of the current Repeat."""
    last: jnp.ndarray
    """int32 [Q, F]: the last unit instruction issued (with its address as last issued): what Repeat re-issues."""


@struct.dataclass
class InFlight:
    """Results inside unit pipelines, in rings indexed by the cycle they land at: slot = cycle mod D.

    An entry is live only while its `due` stamp equals the current cycle, so landing never needs to clear it.
    """

    out_meta: jnp.ndarray
    """int32 [D, N, 3]: per port and slot (due cycle, stream id dir*S+index of the group base, width in streams);
    due -1: never written."""
    out_data: jnp.ndarray
    """uint8 [D, N, 4, L]: the result's bytes, row k for stream base+k (rows >= width unused)."""
    wr_meta: jnp.ndarray
    """int32 [D, M, 2]: per MEM slice and slot (due cycle of a pending SRAM commit, address of a Write or -1 for a
    Scatter)."""
    sc_addr: jnp.ndarray
    """int32 [D, M, L]: per-lane addresses of a pending Scatter commit (-1: lane not written)."""
    wr_data: jnp.ndarray
    """uint8 [D, M, L]: the bytes of the pending Write/Scatter."""


@struct.dataclass
class MxmState:
    """The MXM planes (docs/mxm.md): weight buffer, staged install, installed array, products, accumulators."""

    wbuf: jnp.ndarray
    """uint8 [Pl, L, L]: the weight buffer LW writes (row r, lane j). int8 weights: row k is weight row k; fp16:
    rows 2k, 2k+1 are the two bytes (in group byte order) of weight row k."""
    staged: jnp.ndarray
    """uint8 [Pl, L, L]: the buffer as an IW captured it, waiting to take effect."""
    warr: jnp.ndarray
    """uint8 [Pl, L, L]: the installed weights that ABC multiplies by."""
    warr_f32: jnp.ndarray
    """float32 [Pl, L, L]: `warr` read as int8 values (kept with it, so int8 ABCs need no decoding)."""
    install_due: jnp.ndarray
    """int32 [Pl]: the cycle the staged weights become installed (-1: none pending)."""
    prod: jnp.ndarray
    """uint32 [D, Pl, L]: products in flight, by due cycle mod D: int32 (ABC.i8) or fp32 (ABC.f16) bits."""
    prod_meta: jnp.ndarray
    """int32 [D, Pl, 2]: (due cycle, kind 0 int32 / 1 fp32) of each product slot; due -1: never written."""
    acc: jnp.ndarray
    """uint32 [Pl, R, L]: accumulator rows, int32 or fp32 bits as the ACC that wrote them."""


@struct.dataclass
class Hazards:
    """Structural hazards seen so far. The simulator never stops on them: it counts them (implementation-notes)."""

    count: jnp.ndarray
    """int32 [K]: how many times each kind of `HAZARDS` happened."""
    first_cycle: jnp.ndarray
    """int32 [K]: cycle the first occurrence was detected (for port conflicts: the later instruction's issue); -1."""
    first_where: jnp.ndarray
    """int32 [K]: where it first happened; -1 if none. bank_conflict: MEM index * 2 + bank; port_conflict: port
    (= MEM index for MEM slices); stream_conflict: port * 2S + stream id (dir * S + index); address_range: MEM
    index; mxm_unpaired: plane."""


@struct.dataclass
class MachineState:
    """Complete state of one chip. Every leaf keeps its shape and dtype across `step`."""

    cycle: jnp.ndarray
    """int32 []: the cycle about to run. Advanced only by `sim.step`."""
    streams: jnp.ndarray
    """uint8 [2, P, S, L]: stream registers, dir 0 eastward, dir 1 westward, ring-indexed (module docstring)."""
    mem: jnp.ndarray
    """uint8 [M, 2, mem_words // 2, L]: SRAM, two banks per MEM slice; address a is bank a // (mem_words//2)."""
    icu: QueueState
    inflight: InFlight
    mxm: MxmState
    hazards: Hazards


SXM_PORTS = 4
"""Output ports per SXM unit: a Transpose.sg16 result is 16 streams, four 4-stream groups."""


def n_ports(cfg: ChipConfig) -> int:
    return cfg.n_mem + cfg.vxm_alus + cfg.n_planes + SXM_PORTS * cfg.n_sxm_units


def init_state(cfg: ChipConfig, mem: np.ndarray | None = None) -> MachineState:
    """A quiet machine at cycle 0: zero streams, nothing in flight, queues ready to fetch their first instruction.

    `mem`, if given, is the SRAM image, uint8 [M, mem_words, L] (address-linear) or [M, 2, mem_words//2, L].
    """
    P, S, L, M, D = cfg.n_positions, cfg.n_streams, cfg.n_lanes, cfg.n_mem, cfg.delay_slots
    Q, N, Pl = len(queue_names(cfg)), n_ports(cfg), cfg.n_planes
    shape = (M, 2, cfg.bank_words, L)
    if mem is None:
        sram = jnp.zeros(shape, jnp.uint8)
    else:
        mem = np.asarray(mem)
        if mem.dtype != np.uint8 or mem.size != np.prod(shape) or mem.shape[0] != M or mem.shape[-1] != L:
            raise ValueError(
                f"MEM image must be uint8 [{M}, {cfg.mem_words}, {L}] for {cfg.name}, got {mem.dtype} {mem.shape}"
            )
        sram = jnp.asarray(mem.reshape(shape))
    i32 = lambda *s: jnp.zeros(s, jnp.int32)  # noqa: E731
    return MachineState(
        cycle=jnp.zeros((), jnp.int32),
        streams=jnp.zeros((2, P, S, L), jnp.uint8),
        mem=sram,
        icu=QueueState(
            pc=i32(Q),
            next_cycle=i32(Q),
            parked=jnp.zeros((Q,), bool),
            rep_left=i32(Q),
            rep_d=i32(Q),
            rep_stride=i32(Q),
            last=i32(Q, N_FIELDS),
        ),
        inflight=InFlight(
            out_meta=jnp.full((D, N, 3), -1, jnp.int32),
            out_data=jnp.zeros((D, N, 4, L), jnp.uint8),
            wr_meta=jnp.full((D, M, 2), -1, jnp.int32),
            sc_addr=jnp.full((D, M, L), -1, jnp.int32),
            wr_data=jnp.zeros((D, M, L), jnp.uint8),
        ),
        mxm=MxmState(
            wbuf=jnp.zeros((Pl, L, L), jnp.uint8),
            staged=jnp.zeros((Pl, L, L), jnp.uint8),
            warr=jnp.zeros((Pl, L, L), jnp.uint8),
            warr_f32=jnp.zeros((Pl, L, L), jnp.float32),
            install_due=jnp.full((Pl,), -1, jnp.int32),
            prod=jnp.zeros((D, Pl, L), jnp.uint32),
            prod_meta=jnp.full((D, Pl, 2), -1, jnp.int32),
            acc=jnp.zeros((Pl, cfg.mxm_acc_rows, L), jnp.uint32),
        ),
        hazards=Hazards(
            count=i32(len(HAZARDS)),
            first_cycle=jnp.full((len(HAZARDS),), -1, jnp.int32),
            first_where=jnp.full((len(HAZARDS),), -1, jnp.int32),
        ),
    )


def record_hazards(h: Hazards, hits: list[tuple[int, jnp.ndarray, jnp.ndarray]], cycle: jnp.ndarray) -> Hazards:
    """Count every `(kind, hit bool [...], where int [...])`; remember the cycle and place of each kind's first.

    Vectorised over kinds (a few array ops per cycle, not a few per kind): kinds not in `hits` count 0.
    """
    K = h.count.shape[0]
    n = [jnp.zeros((), jnp.int32)] * K
    w = [jnp.full((), -1, jnp.int32)] * K
    for kind, hit, where in hits:
        if hit.size == 0:  # a unit this config does not have
            continue
        hit = hit.reshape(-1)
        n[kind] = n[kind] + jnp.sum(hit, dtype=jnp.int32)
        wh = jnp.broadcast_to(where, hit.shape if where.ndim == 0 else where.shape).reshape(-1)
        w[kind] = jnp.where(w[kind] >= 0, w[kind], jnp.where(hit.any(), wh[jnp.argmax(hit)], -1))
    n, w = jnp.stack(n), jnp.stack(w)
    first = (h.count == 0) & (n > 0)
    return Hazards(
        count=h.count + n,
        first_cycle=jnp.where(first, cycle, h.first_cycle),
        first_where=jnp.where(first, w, h.first_where),
    )


def mem_image(cfg: ChipConfig, state: MachineState) -> np.ndarray:
    """SRAM as an address-linear numpy array uint8 [M, mem_words, L]."""
    return np.asarray(state.mem).reshape(cfg.n_mem, cfg.mem_words, cfg.n_lanes)


def port_name(cfg: ChipConfig, port: int) -> str:
    """Words for an output port: "MEM slice W3", "VXM ALU 2", "MXM plane 1", "SXM.E.0 port 2"."""
    M, A, Pl = cfg.n_mem, cfg.vxm_alus, cfg.n_planes
    if port < M:
        return f"MEM slice {cfg.mem_names[port]}"
    if port < M + A:
        return f"VXM ALU {port - M}"
    if port < M + A + Pl:
        return f"MXM plane {port - M - A}"
    u, k = divmod(port - M - A - Pl, SXM_PORTS)
    return f"SXM.{cfg.sxm_names[u // cfg.sxm_units]}.{u % cfg.sxm_units} port {k}"


def hazard_report(cfg: ChipConfig, state: MachineState) -> list[str]:
    """One line per kind of hazard seen: how many, and the cycle and place of the first, in words.

    For example `bank_conflict: 3 (first at cycle 18211, MEM slice W17, bank 1)`. Empty if none was seen.
    """
    from .pipeline import port_positions

    count = np.asarray(state.hazards.count)
    cyc = np.asarray(state.hazards.first_cycle)
    where = np.asarray(state.hazards.first_where)
    S = cfg.n_streams
    lines = []
    for k, kind in enumerate(HAZARDS):
        if not count[k]:
            continue
        w = int(where[k])
        if kind == "bank_conflict":
            place = f"MEM slice {cfg.mem_names[w // 2]}, bank {w % 2}"
        elif kind == "address_range":
            place = f"MEM slice {cfg.mem_names[w]}"
        elif kind == "port_conflict":
            place = f"{port_name(cfg, w)} (position {int(port_positions(cfg)[w])})"
        elif kind == "mxm_unpaired":
            place = f"MXM plane {w}"
        else:
            p, sid = divmod(w, 2 * S)
            stream = f"{'EW'[sid // S]}{sid % S}"
            place = f"stream {stream} at position {int(port_positions(cfg)[p])}, lost by {port_name(cfg, p)}"
        lines.append(f"{kind}: {int(count[k])} (first at cycle {int(cyc[k])}, {place})")
    return lines
