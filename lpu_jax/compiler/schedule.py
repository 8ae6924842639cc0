"""The schedule as data: every choice the compiler made, apart from the program emitted from it.

A `Schedule` holds
  * `tensors`: every tensor's place in MEM (`TensorLayout`: the slice and word of every vector byte) and its role
    (param, input, const, temp, output), with the values of params and constants;
  * `instrs`: every instruction with its queue and exact issue cycle (`Placed`); the stream of every transfer is
    in the instruction's operands;
  * `links`: for every stream operand an instruction reads, the instruction that put the value there;
  * `ops`: per lowered operation, what it was, its instructions and its tiling (for matmuls: planes and tiles).
`emit()` turns it into a `Program` and `mem_image()` into the initial SRAM contents. A tuner (or a partitioner)
may change cycles, slices or streams here and emit again, without lowering again; `check.check_schedule` says
whether the result is still valid.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..kernels.layout import TensorLayout
from ..kernels.timeline import Timeline

__all__ = ["Placed", "Schedule", "TensorInfo", "OpInfo"]


@dataclasses.dataclass
class Placed:
    """One instruction at its issue cycle on its ICU queue."""

    queue: str
    cycle: int
    ins: isa.Instruction
    op: int = -1  # index into Schedule.ops


@dataclasses.dataclass
class TensorInfo:
    """A tensor in MEM. role: "param" (weights, in the MEM image), "const" (compiler constants, in the image),
    "input" (placed per run), "temp" (made by the program), "output" (made by the program, read back)."""

    name: str
    layout: TensorLayout
    role: str
    value: np.ndarray | None = None  # params and constants: the matrix stored (layout.shape, layout dtype)
    logical_shape: tuple = ()
    replicated: bool = False  # each row's value is in every lane (a reduction result): read lane 0
    tile_slice: np.ndarray | None = None  # MXM weights: int32 [K tiles, N tiles, L], the slice of each byte row
    tile_addr: np.ndarray | None = None  # ... and its address
    chunk: int = 0  # MXM weights: byte rows per LW (each from its own slice)


@dataclasses.dataclass
class OpInfo:
    """One lowered operation: its kind, where it came from, the first and last cycle of its instructions."""

    kind: str
    source: str = ""
    detail: dict = dataclasses.field(default_factory=dict)
    first: int = 1 << 60
    last: int = -1


@dataclasses.dataclass
class Schedule:
    cfg: ChipConfig
    tensors: dict[str, TensorInfo] = dataclasses.field(default_factory=dict)
    instrs: list[Placed] = dataclasses.field(default_factory=list)
    links: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    """(consumer instruction, stream id read, producer instruction)."""
    ops: list[OpInfo] = dataclasses.field(default_factory=list)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    zeros: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(slice, address) of words the program reads that must be zero (padding)."""

    @property
    def cycles(self) -> int:
        """Cycles from cycle 0 until the last instruction has acted (a Write committed)."""
        end = 0
        for p in self.instrs:
            d = self.cfg.delay("Write") if p.ins.mnemonic == "Write" else 0
            end = max(end, p.cycle + d + 1)
        return end

    def emit(self) -> isa.Program:
        """The program that issues every instruction at its cycle (NOPs and Repeats between)."""
        tl = Timeline(self.cfg)
        for p in self.instrs:
            tl.place(p.queue, p.cycle, p.ins)
        return tl.program()

    def mem_image(self, values: dict[str, np.ndarray] | None = None, poison: int | None = None) -> np.ndarray:
        """Initial SRAM: params and constants at their layouts, `values` (input name -> matrix) at theirs, the
        padding words zero. `poison`: fill every other word (temps and outputs included) with this byte."""
        cfg = self.cfg
        mem = np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)
        if poison is not None:
            mem[:] = poison
        values = values or {}
        for name, t in self.tensors.items():
            if t.role in ("param", "const"):
                t.layout.place(cfg, mem, t.value)
            elif t.role == "input":
                if name not in values:
                    raise ValueError(f"the program needs input {name!r} (inputs: {', '.join(self.inputs)})")
                t.layout.place(cfg, mem, values[name])
        if self.zeros:
            z = np.asarray(self.zeros, np.int64)
            mem[z[:, 0], z[:, 1]] = 0
        return mem
