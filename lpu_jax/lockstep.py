"""Lock-step comparison: lpu_jax and a foreign implementation of the chip, one cycle at a time, stopping at the
first cycle where they part (docs/lockstep.md).

The foreign model (an RTL simulation, a C++ model, the golden interpreter) is driven through one callback:

    foreign(cycle) -> dict        advance one cycle, return that cycle's dense trace row
    or an object with .step() -> dict   (e.g. `lpu_jax.golden.Interp`)

The row holds the fields `trace.dense_fields(compare)` with the shapes of `sim.TRACE_FIELDS` for one cycle (no
leading time axis): for the default compare=("issue", "land", "commit"), `cycle` (int), `issued` int32 [Q, 8],
`landed_sid` int32 [N], `landed_width` int32 [N], `landed_data` uint8 [N, 4, L], `commit_addr` int32 [M],
`commit_lanes` int32 [M, L], `commit_data` uint8 [M, L]. Both rows become events (`trace.to_events`) and are
compared with `diff.Differ`: lpu_jax is "expected", the foreign model "actual".

    ls = LockStep(cfg, program, Interp(cfg, arr, mem), mem=mem)
    report = ls.run(10_000)          # stops after the first cycle with a divergence
    print(report)                    # cycle, unit, stream, lane, values, producing instruction
    cp = ls.checkpoint()             # lpu_jax's state (and the foreign's, if it has snapshot()/restore())
    ...
    ls.restore(cp)                   # continue from there, bit for bit

Each cycle runs `sim.run(cfg, program, state, 1, trace=fields, chunk=1)` (one compiled single-cycle scan, the state
donated so that the SRAM is never copied).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import sim
from .config import ChipConfig
from .diff import Differ, Mask, Report
from .state import MachineState, init_state
from .trace import SIGNALS, dense_fields, to_events

__all__ = ["Checkpoint", "LockStep"]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a lock-step run from `cycle`: lpu_jax's full state (a copy), the foreign
    model's snapshot (None if it offers no `snapshot()`), and the comparison's own memory (the hazard counts of
    the last cycle and the recent issue events that producers are looked up in)."""

    cycle: int
    state: MachineState
    foreign: Any
    hazards: tuple[np.ndarray | None, np.ndarray | None]
    history: tuple[dict | None, bool]


def _copy(state: MachineState) -> MachineState:
    return jax.tree.map(jnp.copy, state)


class LockStep:
    """lpu_jax beside a foreign model, cycle by cycle.

    cfg, program   the chip and the program (an `isa.Program` or its encoding int32 [Q, L, 8])
    foreign        `foreign(cycle) -> row` or an object with `.step() -> row` (module docstring)
    state | mem    lpu_jax's starting state (copied), or an SRAM image uint8 [M, W, L] for a fresh machine;
                   the foreign model must start from the same point
    compare        the signals compared every cycle (`trace.SIGNALS`); "streams" compares the whole stream file
    mask           a `diff.Mask` of what to ignore; limit: how many divergences a report lists
    sink           if given, called every cycle with lpu_jax's events of that cycle (the compared signals, and
                   issue), e.g. to keep a trace of the run
    """

    def __init__(
        self,
        cfg: ChipConfig,
        program,
        foreign,
        state: MachineState | None = None,
        mem: np.ndarray | None = None,
        compare: Iterable[str] = ("issue", "land", "commit"),
        mask: Mask | None = None,
        limit: int = 20,
        sink: Callable[[dict], None] | None = None,
    ):
        if state is not None and mem is not None:
            raise ValueError("give LockStep a state or a MEM image, not both")
        self.cfg = cfg
        self.program = sim._as_array(cfg, program)  # checked, on the device once (not copied every cycle)
        self._state = init_state(cfg, mem) if state is None else _copy(state)
        self._cycle = int(self._state.cycle)
        self.compare = tuple(compare)
        self._foreign_fields = dense_fields(self.compare)  # checks the names
        if not self.compare:
            raise ValueError(f"compare names no signal; choose from {', '.join(SIGNALS)}")
        self._signals = self.compare + (() if "issue" in self.compare else ("issue",))  # issue: for producers
        # Small chips record every trace field, whatever is compared: one compiled single-cycle scan per (config,
        # program size class), the one that short traced runs use too (the test suite's). Large chips record only
        # what is compared (groqchip1's stream file is 1.9 MB a cycle; copying it out halves the speed).
        small = 2 * cfg.n_positions * cfg.n_streams * cfg.n_lanes <= 1 << 16
        self._fields = tuple(sim.TRACE_FIELDS) if small else dense_fields(self._signals)
        if callable(foreign) and not hasattr(foreign, "step"):
            self._advance: Callable[[int], dict] = foreign
        elif callable(getattr(foreign, "step", None)):
            self._advance = lambda c: foreign.step()
        else:
            raise ValueError("foreign must be a callable foreign(cycle) -> row, or an object with a .step() method")
        self.foreign = foreign
        self._sink = sink
        self._differ = Differ(cfg, mask, limit)
        h0 = np.asarray(self._state.hazards.count, np.int64)
        self._prev = (h0, h0.copy())  # hazard counts before the next cycle: lpu_jax's, the foreign's

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> MachineState:
        """lpu_jax's state after the last cycle run. Live: the next step consumes its buffers (take a
        `checkpoint()` to keep one)."""
        return self._state

    @property
    def cycle(self) -> int:
        """The next cycle to run (= the number of cycles run, from a fresh machine)."""
        return self._cycle

    # ------------------------------------------------------------------ stepping
    def _foreign_row(self, c: int, like: dict) -> dict:
        row = self._advance(c)
        if not isinstance(row, dict):
            raise ValueError(f"cycle {c}: the foreign model returned {type(row).__name__}, not a dict of trace fields")
        out = {"cycle": np.array([c], np.int64)}
        if "cycle" in row and int(np.asarray(row["cycle"])) != c:
            raise ValueError(f"cycle {c}: the foreign model's row says cycle {int(np.asarray(row['cycle']))}")
        for f in self._foreign_fields[1:]:
            if f not in row:
                raise ValueError(f"cycle {c}: the foreign model's row lacks field {f!r} (needed for {self.compare})")
            v = np.asarray(row[f])
            want = like[f].shape[1:]
            if v.shape != want:
                raise ValueError(f"cycle {c}: the foreign model's field {f!r} has shape {v.shape}, expected {want}")
            out[f] = v[None]
        return out

    def _one(self) -> None:
        """Run one cycle on both sides and feed the comparison."""
        c = self._cycle
        self._state, tr = sim.run(self.cfg, self.program, self._state, 1, trace=self._fields, chunk=1, donate=True)
        self._cycle = c + 1
        mine = to_events(self.cfg, tr, self._signals, prev_hazards=self._prev[0])
        theirs = to_events(self.cfg, self._foreign_row(c, tr), self.compare, prev_hazards=self._prev[1])
        if "hazards" in self.compare:
            self._prev = (np.asarray(tr["hazards"][-1], np.int64), self._last_foreign_hazards(theirs))
        if self._sink is not None:
            self._sink(mine)
        expected = {s: mine[s] for s in self.compare}
        self._differ.add(expected, theirs, issue=mine["issue"])

    def _last_foreign_hazards(self, ev: dict) -> np.ndarray:
        h = ev["hazards"]["count"]
        return np.asarray(h[-1], np.int64) if len(h) else self._prev[1]

    def step(self) -> Report:
        """Run one cycle; the report of that cycle."""
        return self.run(1)

    def run(self, n: int) -> Report:
        """Run up to n cycles, stopping after the first cycle with a (unmasked) divergence. The report covers the
        cycles run by this call: equal after n cycles, else every divergence of the cycle it stopped in."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self._differ.reset()
        c0 = self._cycle
        for _ in range(int(n)):
            self._one()
            if self._differ.count:
                break
        rep = self._differ.report()
        return dataclasses.replace(rep, cycles=(c0, self._cycle - 1) if self._cycle > c0 else None)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Checkpoint:
        """A copy of everything needed to continue from the current cycle (lpu_jax's state; the foreign model's
        `snapshot()` where it has one)."""
        snap = self.foreign.snapshot() if callable(getattr(self.foreign, "snapshot", None)) else None
        hist = self._differ._tail, self._differ._seen_issue
        prev = (self._prev[0].copy(), self._prev[1].copy())
        return Checkpoint(self._cycle, _copy(self._state), snap, prev, hist)

    def restore(self, cp: Checkpoint, foreign: bool = True) -> None:
        """Continue from a checkpoint, bit for bit. With `foreign=False` only lpu_jax is restored (the caller puts
        the foreign model back to `cp.cycle` itself); otherwise the foreign model's `restore(snapshot)` is
        called, and a checkpoint without a foreign snapshot is an error."""
        if foreign:
            if cp.foreign is None or not callable(getattr(self.foreign, "restore", None)):
                raise ValueError(
                    f"the checkpoint of cycle {cp.cycle} holds no snapshot of the foreign model (it has no "
                    "snapshot()/restore()): put the foreign model back to that cycle yourself and call "
                    "restore(cp, foreign=False)"
                )
            self.foreign.restore(cp.foreign)
        self._state = _copy(cp.state)
        self._cycle = cp.cycle
        self._prev = (cp.hazards[0].copy(), cp.hazards[1].copy())
        self._differ._tail, self._differ._seen_issue = cp.history

    def save(self, path) -> None:
        """Write lpu_jax's state at the current cycle to a state file (`formats.write_state`)."""
        from . import formats

        formats.write_state(path, self.cfg, self._state)

    def load(self, path) -> None:
        """Continue lpu_jax from a state file (`formats.read_state`); the caller brings the foreign model to the
        same cycle. Producers of results issued before the loaded cycle are not known to later reports."""
        from . import formats

        cfg, state = formats.read_state(path)
        if cfg != self.cfg:
            raise ValueError(f"{path}: the state is of config {cfg.name!r}, this lock-step runs {self.cfg.name!r}")
        self._state = state
        self._cycle = int(state.cycle)
        h = np.asarray(state.hazards.count, np.int64)
        self._prev = (h, h.copy())
        self._differ._tail, self._differ._seen_issue = None, False
