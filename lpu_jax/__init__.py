"""lpu_jax: a cycle-level JAX golden model of Groq's first-generation LPU (GroqChip1, the TSP).

Public API (everything else is internal):
  configuration   ChipConfig, ConfigError, groqchip1, small, tiny
  byte streams    DTYPES, pack, unpack, pack_np, unpack_np
  programs        Instruction, Program, ProgramError, Stream, E, W, encode, queue_names, parse, format_program
  state           MachineState, init_state, mem_image, HAZARDS, hazard_report
  simulator       step, run, is_idle, stream_file, TRACE_FIELDS

The golden-model tools are submodules (docs/formats.md, docs/traces.md, docs/lockstep.md):
  lpu_jax.formats   program, MEM image, state and trace files (FormatError)
  lpu_jax.trace     events from dense traces; record(...) chunk by chunk
  lpu_jax.diff      first-divergence reports (compare_events, compare_states, Mask)
  lpu_jax.lockstep  LockStep: lpu_jax beside a foreign model, cycle by cycle; checkpoints
  lpu_jax.export    VCD and Perfetto exports of traces
  lpu_jax.golden    the independent numpy interpreter
"""

from .asm import format_program, parse
from .config import ChipConfig, ConfigError, groqchip1, small, tiny
from .dtypes import DTYPES, pack, pack_np, unpack, unpack_np
from .isa import E, Instruction, Program, ProgramError, Stream, W, encode, queue_names
from .sim import TRACE_FIELDS, is_idle, run, step, stream_file
from .state import HAZARDS, MachineState, hazard_report, init_state, mem_image

__all__ = [
    "DTYPES",
    "E",
    "HAZARDS",
    "TRACE_FIELDS",
    "ChipConfig",
    "ConfigError",
    "Instruction",
    "MachineState",
    "Program",
    "ProgramError",
    "Stream",
    "W",
    "encode",
    "format_program",
    "groqchip1",
    "hazard_report",
    "init_state",
    "is_idle",
    "mem_image",
    "pack",
    "pack_np",
    "parse",
    "queue_names",
    "run",
    "small",
    "step",
    "stream_file",
    "tiny",
    "unpack",
    "unpack_np",
]
