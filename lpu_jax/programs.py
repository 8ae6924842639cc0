"""Small hand-scheduled programs: the demo `relu(a * b + c)` and the MEM+VXM benchmark load.

Each builder places data in MEM and times every instruction by the rules of `pipeline` (a result issued at t
on a slice at position p is on its stream at p at t + d_func and at position q at t + d_func + |q - p|), the way
the compiler will. They return a `Built`: the program, the MEM image, where the outputs are, and the cycle
after which the program has finished.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import ChipConfig
from .dtypes import pack_np
from .isa import E, Instruction, Program, W

__all__ = ["Built", "mem_vxm_load", "read_output", "relu_fma"]


@dataclasses.dataclass(frozen=True)
class Built:
    program: Program
    mem: np.ndarray
    """uint8 [M, mem_words, L]: the initial SRAM image."""
    outputs: dict
    """name -> (MEM index per byte plane, first address, number of vectors, dtype name)."""
    done: int
    """Cycles to run: every result is committed to SRAM by the end of cycle done - 1."""


def _mem_index(cfg: ChipConfig, name: str) -> int:
    return cfg.mem_names.index(name)


def _pos(cfg: ChipConfig, mem_index: int) -> int:
    return int(cfg.positions[cfg.mem_slices[mem_index]])


def _wait(n: int) -> list[Instruction]:
    return [Instruction("NOP", (n,))] if n > 0 else []


def _stream_rows(first: Instruction, n: int) -> list[Instruction]:
    """`first` then n-1 repetitions one cycle apart, addresses advancing by 1 (Read/Write) or fixed (VXM)."""
    stride = 1 if first.mnemonic in ("Read", "Write") else 0
    return [first] + ([Instruction("Repeat", (n - 1, 1, stride))] if n > 1 else [])


def relu_fma(cfg: ChipConfig, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Built:
    """relu(a * b + c) on fp32 vectors a, b, c of shape [n, L], computed by the VXM.

    Placement: byte plane k of a, b, c lives in west MEM slices W(k), W(4+k), W(8+k) at addresses 0..n-1; the
    result's byte plane k goes to east slice E(k). Inputs ride eastward streams E0-3, E4-7, E8-11; the
    product and the sum go west on W0-3 and W4-7 (nothing reads them there); the result goes east on E12-15.
    Vector i is multiplied at cycle T0 + i: one vector per cycle, pipelined through three ALUs.
    """
    n, L = a.shape
    if a.shape != b.shape or a.shape != c.shape or L != cfg.n_lanes:
        raise ValueError(f"relu_fma: a, b, c must all be float32 [n, {cfg.n_lanes}], got {a.shape} {b.shape} {c.shape}")
    if n < 1:
        raise ValueError(f"relu_fma needs at least one vector, got {n}")
    if n > cfg.mem_words:
        raise ValueError(f"relu_fma: {n} vectors do not fit in a MEM slice of {cfg.mem_words} words")
    if cfg.mem_per_hemisphere < 12 or cfg.n_streams < 16 or cfg.vxm_alus < 3:
        raise ValueError(
            f"relu_fma needs >= 12 MEM slices per hemisphere, >= 16 streams and >= 3 VXM ALUs; "
            f"{cfg.name} has {cfg.mem_per_hemisphere}, {cfg.n_streams} and {cfg.vxm_alus}"
        )
    dR, dW, dF = cfg.delay("Read"), cfg.delay("Write"), cfg.delay("vxm.float")
    v = int(cfg.positions[cfg.vxm_slice])
    mem = np.zeros((cfg.n_mem, cfg.mem_words, L), np.uint8)
    queues: dict[str, list[Instruction]] = {}
    # Reads: plane k of operand j from W(4j + k), on stream E(4j + k), arriving at the VXM at T0 + i (+ dF for c).
    srcs = []
    for j, x in enumerate((a, b, c)):
        planes = pack_np(x.astype(np.float32), "f32", cfg.group_byte_order)  # [n, 4, L]
        for k in range(4):
            m = _mem_index(cfg, f"W{4 * j + k}")
            mem[m, :n] = planes[:, k]
            srcs.append((m, 4 * j + k, dF if j == 2 else 0))
    T0 = dR + max(v - _pos(cfg, m) for m, _, _ in srcs)
    for m, s, extra in srcs:
        start = T0 + extra - dR - (v - _pos(cfg, m))
        queues[f"MEM.{cfg.mem_names[m]}"] = _wait(start) + _stream_rows(Instruction("Read", (0, E(s))), n)
    # VXM: mul at T0 + i, add at T0 + dF + i, relu at T0 + 2 dF + i; the result lands at T0 + 3 dF + i.
    alu = [
        Instruction("mul.f32", (W(0), E(0), E(4))),
        Instruction("add.f32", (W(4), W(0), E(8))),
        Instruction("relu.f32", (E(12), W(4))),
    ]
    for k, ins in enumerate(alu):
        queues[f"VXM.{k}"] = _wait(T0 + k * dF) + _stream_rows(ins, n)
    # Writes: plane k of the result reaches E(k) at T0 + 3 dF + i + (p - v).
    out = []
    last = 0
    for k in range(4):
        m = _mem_index(cfg, f"E{k}")
        t = T0 + 3 * dF + (_pos(cfg, m) - v)
        queues[f"MEM.{cfg.mem_names[m]}"] = _wait(t) + _stream_rows(Instruction("Write", (0, E(12 + k))), n)
        out.append(m)
        last = max(last, t + n - 1 + dW)
    return Built(Program(queues), mem, {"y": (tuple(out), 0, n, "f32")}, done=last + 1)


def read_output(cfg: ChipConfig, mem_image: np.ndarray, where: tuple) -> np.ndarray:
    """The typed vectors [n, L] stored at `where` = (MEM index per byte plane, address, n, dtype)."""
    from .dtypes import unpack_np

    planes, addr, n, dt = where
    g = np.stack([mem_image[m, addr : addr + n] for m in planes], axis=1)  # [n, w, L]
    return unpack_np(g, dt, cfg.group_byte_order)


def mem_vxm_load(cfg: ChipConfig, n_cycles: int) -> Program:
    """A load that keeps every MEM slice and every VXM ALU busy every cycle, for benchmarks.

    West slices stream reads east; east slices write what passes; ALU a adds fp32 groups (a < A/2, results on
    westward groups) or int8 streams (a >= A/2, results on eastward streams), all on distinct streams.
    """
    S, A = cfg.n_streams, cfg.vxm_alus
    h = cfg.mem_per_hemisphere
    q: dict[str, list[Instruction]] = {}
    n = max(n_cycles, 1)
    rows = min(cfg.mem_words, n)
    for j in range(h):
        # reads cycle through `rows` addresses: n repeats, wrapped into address windows the validator accepts
        body: list[Instruction] = []
        left = n
        while left > 0:
            k = min(left, rows)
            body += _stream_rows(Instruction("Read", (0, E(j % S))), k)
            left -= k
        q[f"MEM.W{j}"] = body
        body = []
        left = n
        while left > 0:
            k = min(left, rows)
            body += _stream_rows(Instruction("Write", (0, E((j + 1) % S))), k)
            left -= k
        q[f"MEM.E{j}"] = body
    groups = S // 4
    for a in range(A):
        if a < A // 2:
            g = a % groups
            ins = Instruction("add.f32", (W(4 * g), E(4 * g), E(4 * ((g + 1) % groups))))
        else:
            s = (a - A // 2) % S
            ins = Instruction("add.i8", (E(s), E(s), E((s + 1) % S)))
        q[f"VXM.{a}"] = _stream_rows(ins, n)
    return Program(q)
