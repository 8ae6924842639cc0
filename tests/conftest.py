"""Shared helpers for the tests: configs and a small program runner."""

from __future__ import annotations

import numpy as np
import pytest

import lpu_jax as L

TINY = L.tiny()


@pytest.fixture(scope="session")
def tiny():
    return TINY


def blank_mem(cfg: L.ChipConfig) -> np.ndarray:
    return np.zeros((cfg.n_mem, cfg.mem_words, cfg.n_lanes), np.uint8)


def mem_index(cfg: L.ChipConfig, name: str) -> int:
    return cfg.mem_names.index(name)


def issued_at(trace: dict, cfg: L.ChipConfig, queue: str) -> list[tuple[int, int, int]]:
    """(cycle, opcode, field 1) of every instruction a queue issued, from an 'issued' trace."""
    q = L.queue_names(cfg).index(queue)
    rows = trace["issued"][:, q]
    return [(c, int(r[0]), int(r[1])) for c, r in enumerate(rows) if r[0] != 0]


TRACE = tuple(L.TRACE_FIELDS)
"""The trace fields the tests record (all of them), also where a test reads none: one set, so that the suite compiles
the tiny simulator for it once (a run with other fields, or none, compiles the scan again)."""

ODD = TINY.replace(
    delays=tuple((n, {"Read": 5, "Notify": 4}.get(n, d)) for n, d in TINY.delays),
    slice_positions=(0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13),
)
"""tiny with non-default timing: Read delay 5, Notify delay 4, and a gap of 3 extra stream registers between W0 and the
VXM (positions 0..4, 8..13). The tests of configurable delays and positions share it (and TRACE): one compile."""


def run_tiny(queues: dict, mem: np.ndarray | None = None, n: int = 16, cfg: L.ChipConfig = TINY):
    """Run a program given as {queue: [Instruction]} on `cfg` from a quiet state; returns (state, trace)."""
    state = L.init_state(cfg, blank_mem(cfg) if mem is None else mem)
    return L.run(cfg, L.Program(queues), state, n, trace=TRACE)
