"""What a kernel generator returns, and how to run one on the simulator."""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import isa
from ..config import ChipConfig
from ..sim import run
from ..state import init_state, mem_image
from .layout import TensorLayout

__all__ = ["Kernel", "run_kernel"]


@dataclasses.dataclass
class Kernel:
    """A generated program with everything needed to use it.

    `layouts` names each operand and result ("a", "b", "c", ...) with its place in MEM; `inputs` / `outputs` say
    which are which. `zeros`: int32 [n, 2] (slice, address) of padding words the program reads and that must hold
    zeros (`run_kernel` clears them). `cycles`: cycles to run from a quiet machine at cycle 0 until the last
    result is committed to MEM. `macs`: useful multiply-accumulates; `peak_macs_per_cycle`: the MXM's peak for
    the element type (0 for kernels that do not use the MXM)."""

    name: str
    cfg: ChipConfig
    program: isa.Program
    layouts: dict[str, TensorLayout]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    cycles: int
    macs: int = 0
    peak_macs_per_cycle: int = 0
    zeros: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int32))
    constants: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Values the program reads besides its inputs (e.g. lane maps), placed at `layouts[name]` by `mem_image`."""

    @property
    def utilisation(self) -> float:
        """MXM utilisation: useful MACs / (peak MACs per cycle x cycles)."""
        if not self.peak_macs_per_cycle or not self.cycles:
            return 0.0
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def mem_image(self, values: dict[str, np.ndarray], mem: np.ndarray | None = None) -> np.ndarray:
        """A MEM image (uint8 [M, mem_words, L]) holding the inputs at their layouts and zeros where needed."""
        cfg = self.cfg
        if mem is None:
            mem = np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)
        missing = [k for k in self.inputs if k not in values]
        if missing:
            raise ValueError(f"kernel {self.name} needs input {missing[0]!r} (inputs: {', '.join(self.inputs)})")
        for k in self.inputs:
            self.layouts[k].place(cfg, mem, values[k])
        for k, v in self.constants.items():
            self.layouts[k].place(cfg, mem, v)
        if len(self.zeros):
            mem[self.zeros[:, 0], self.zeros[:, 1]] = 0
        return mem


def run_kernel(kernel: Kernel, values: dict[str, np.ndarray], length: int = 1024, **run_kw):
    """Run `kernel` on the simulator from a quiet machine with its inputs placed. Returns (outputs dict, state).

    `length`: encode the program at least at this padded queue length (a power of two; default 1024), so that
    kernels of different sizes share one compiled simulator. Extra keyword arguments go to `sim.run` (e.g. `chunk`)."""
    cfg = kernel.cfg
    state = init_state(cfg, kernel.mem_image(values))
    longest = max((len(q) for q in kernel.program.queues.values()), default=0)
    length = max(length, isa.size_class(longest))
    prog = isa.encode(cfg, kernel.program, length=length)
    state, _ = run(cfg, prog, state, kernel.cycles, donate=True, **run_kw)
    img = mem_image(cfg, state)
    return {k: kernel.layouts[k].read(cfg, img) for k in kernel.outputs}, state
