"""lpu_jax.compiler: JAX functions (flax models with their parameters) compiled into statically scheduled programs.

    compiled = compile_fn(fn, params, *example_inputs, cfg=tiny())
    outputs, state = compiled.run(*inputs)        # on the cycle-level simulator
    print(compiled.report())

The lowering goes through the jaxpr (`lower.py`), the placement of every tensor, instruction and stream flight is
recorded as data (`schedule.Schedule`), checked (`check.check_schedule`) and emitted as a `Program` with its
initial MEM image. docs/compiler.md describes it; docs/numerics.md what numbers it produces.
"""

from __future__ import annotations

import dataclasses
import gc
import time

import jax
import numpy as np

from .. import isa
from ..config import ChipConfig
from ..kernels.layout import CapacityError
from .builder import Builder, SchedulingError
from .check import ScheduleError, check_schedule
from .lower import _F, Lowering, LoweringError, Val
from .report import Report, make_report
from .schedule import Schedule

__all__ = [
    "CapacityError",
    "Compiled",
    "LoweringError",
    "Schedule",
    "ScheduleError",
    "SchedulingError",
    "check_schedule",
    "compile_fn",
]


def _leaf_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path) or "param"


@dataclasses.dataclass
class Compiled:
    """A compiled function: its schedule, program, where its inputs and outputs live, and how to run it."""

    cfg: ChipConfig
    schedule: Schedule
    program: isa.Program
    in_names: list[str]
    in_shapes: list[tuple]
    in_dtypes: list[np.dtype]
    out_names: list[str]
    out_shapes: list[tuple]
    out_tree: object
    compile_seconds: float = 0.0

    @property
    def cycles(self) -> int:
        return self.schedule.cycles

    def mem_image(self, *inputs, poison: int | None = None) -> np.ndarray:
        if len(inputs) != len(self.in_names):
            raise ValueError(f"the program takes {len(self.in_names)} inputs, got {len(inputs)}")
        values = {}
        for name, x, shape, dt in zip(self.in_names, inputs, self.in_shapes, self.in_dtypes):
            x = np.asarray(x)
            if x.shape != shape or x.dtype != dt:
                raise ValueError(f"input {name}: expected {dt} {shape}, got {x.dtype} {x.shape}")
            # a scalar is placed in every lane of one vector (it meets vectors as a replicated value)
            values[name] = x.reshape(-1, shape[-1]) if shape else np.full((1, self.cfg.n_lanes), x, dt)
        return self.schedule.mem_image(values, poison=poison)

    def update_image(self, mem: np.ndarray, changes: dict) -> np.ndarray:
        """A copy of the MEM image `mem` (the final SRAM of a run, say) with the inputs {index: value} placed
        again: decoding runs step after step with its KV cache left in SRAM, and only the token and position
        written anew."""
        mem = np.array(mem)
        for k, x in changes.items():
            name, shape, dt = self.in_names[k], self.in_shapes[k], self.in_dtypes[k]
            x = np.asarray(x)
            if x.shape != shape or x.dtype != dt:
                raise ValueError(f"input {name}: expected {dt} {shape}, got {x.dtype} {x.shape}")
            v = x.reshape(-1, shape[-1]) if shape else np.full((1, self.cfg.n_lanes), x, dt)
            self.schedule.tensors[name].layout.place(self.cfg, mem, v)
        return mem

    def read_outputs(self, mem: np.ndarray):
        outs = []
        for name, shape in zip(self.out_names, self.out_shapes):
            m = self.schedule.tensors[name].layout.read(self.cfg, mem)
            outs.append(m.reshape(shape))
        return jax.tree.unflatten(self.out_tree, outs)

    def encoded(self, length: int = 1024) -> np.ndarray:
        """The program as the simulator's int32 array, padded to at least `length` (a power of two) so that
        programs of different sizes share one compiled simulator."""
        longest = max((len(q) for q in self.program.queues.values()), default=0)
        return isa.encode(self.cfg, self.program, length=max(length, isa.size_class(longest)))

    def run(self, *inputs, poison: int | None = None, mem: np.ndarray | None = None, length: int = 1024, **run_kw):
        """Run on the simulator from a quiet machine. Returns (outputs as the function's pytree, final state).
        `poison`: fill every MEM word that is not a parameter, constant or input with this byte first."""
        from ..sim import run as sim_run
        from ..state import init_state, mem_image

        img = self.mem_image(*inputs, poison=poison) if mem is None else mem
        prog = self.encoded(length)
        chunk = run_kw.setdefault("chunk", 256)
        n = -(-self.cycles // chunk) * chunk  # whole scans: one compiled simulator (the program has halted)
        state, _ = sim_run(self.cfg, prog, init_state(self.cfg, img), n, donate=True, **run_kw)
        return self.read_outputs(mem_image(self.cfg, state)), state

    def report(self) -> Report:
        return make_report(self.schedule, self.compile_seconds)


def compile_fn(fn, params, *example_inputs, cfg: ChipConfig, check: bool = True) -> Compiled:
    """Compile `fn(params, *inputs)` for the chip `cfg`.

    `params` (any pytree of arrays) are the weights: they go into the MEM image. `example_inputs` fix the input
    shapes and dtypes; their values are not used. Raises `LoweringError` (unsupported primitive or shape, naming
    the source line), `CapacityError` (the model does not fit the SRAM: bytes needed and available) and
    `ScheduleError` (the schedule failed its own check: a compiler bug)."""
    # The scheduler makes millions of small objects that live to the end: the cyclic garbage collector would
    # rescan them again and again (measured: 16% of a MiniLM-block compile); cycles are collected afterwards.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compile(fn, params, example_inputs, cfg, check)
    finally:
        if enabled:
            gc.enable()


def _compile(fn, params, example_inputs, cfg: ChipConfig, check: bool) -> Compiled:
    t0 = time.perf_counter()
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(params, *example_inputs)
    out_flat, out_tree = jax.tree.flatten(out_shape)
    p_leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    in_leaves = jax.tree.leaves(example_inputs)
    b = Builder(cfg)
    low = Lowering(cfg, b)
    args = []
    for path, leaf in p_leaves:
        a = np.asarray(leaf)
        args.append(Val(None, a.shape, _F.get(str(a.dtype), str(a.dtype)), const=a, param=_leaf_name(path)))
    # inputs updated in place (dynamic_update_slice of an input: a KV cache) keep each tile's rows in one slice
    # run, so that a computed row index gives the row's address
    n_p = len(p_leaves)
    inplace = {
        closed.jaxpr.invars.index(e.invars[0]) - n_p
        for e in closed.jaxpr.eqns
        if e.primitive.name == "dynamic_update_slice" and e.invars[0] in closed.jaxpr.invars[n_p:]
    }
    in_names, in_shapes, in_dtypes = [], [], []
    for i, leaf in enumerate(in_leaves):
        a = np.asarray(leaf)
        dt = _F.get(str(a.dtype))
        if dt is None:
            raise LoweringError(f"input {i} has dtype {a.dtype}, which the chip does not hold")
        name = f"in{i}"
        if a.dtype == np.bool_:
            raise LoweringError(f"input {i} is bool: pass it as int32")
        in_names.append(name)
        in_shapes.append(tuple(a.shape))
        in_dtypes.append(a.dtype)
        if a.ndim == 0:  # a scalar: one vector with the value in every lane (`Compiled.mem_image`)
            b.alloc(name, (1, cfg.n_lanes), dt, "input")
            args.append(Val(name, (), dt, np.zeros((), np.int64), "rep", ld=None))
            continue
        R = int(np.prod(a.shape[:-1])) if a.ndim > 1 else 1
        b.alloc(name, (R, a.shape[-1]), dt, "input", groups=1 if i in inplace else None)
        if i in inplace:
            low.inplace.add(name)
        args.append(Val(name, tuple(a.shape), dt, np.arange(R).reshape(a.shape[:-1]), "full"))
    outs = low.run(closed, args)
    out_names = []
    for i, v in enumerate(outs):
        o = low.output(v, f"out{i}")
        out_names.append(o.tensor)
    sched = b.sched
    sched.inputs = tuple(in_names)
    sched.outputs = tuple(out_names)
    if check:
        check_schedule(sched)
    program = sched.emit()
    isa.validate(cfg, program)  # every instruction well formed for cfg (raises ProgramError naming it)
    return Compiled(
        cfg,
        sched,
        program,
        in_names,
        in_shapes,
        in_dtypes,
        out_names,
        [tuple(o.shape) for o in out_flat],
        out_tree,
        time.perf_counter() - t0,
    )
