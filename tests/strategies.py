"""Hypothesis strategies for valid LPU programs (shared by the test modules).

`programs(cfg)` draws a random `isa.Program` that `isa.validate(cfg, ...)` accepts: random queues from
`isa.queue_names(cfg)`; MEM queues get Read/Write/Gather/Scatter with in-range addresses and streams, VXM queues get
VXM ops with allowed element types and aligned stream groups of the right width (`isa.vxm_widths`), and both get
the ICU instructions NOP/Repeat/Sync/Notify. A Repeat only follows some unit instruction, and it has a nonzero
stride only after a Read/Write, chosen so that its last address stays in range.
"""

from __future__ import annotations

from hypothesis import strategies as st

from lpu_jax import isa
from lpu_jax.config import ChipConfig, tiny
from lpu_jax.dtypes import DTYPES

__all__ = ["counts", "mem_queue", "programs", "queue_body", "streams", "vxm_instructions", "vxm_queue"]

_MAX_COUNT = 2**31 - 1
_DTYPE_NAMES = tuple(d.name for d in DTYPES)


def counts() -> st.SearchStrategy[int]:
    """A NOP/Repeat count >= 1: mostly small, sometimes up to the int32 limit."""
    return st.one_of(st.integers(1, 16), st.integers(1, _MAX_COUNT))


def streams(cfg: ChipConfig, width: int = 1) -> st.SearchStrategy[isa.Stream]:
    """A stream (group base) of `width` streams, in range and aligned if `cfg.group_aligned`."""
    step = width if cfg.group_aligned else 1
    index = st.integers(0, (cfg.n_streams - width) // step).map(lambda k: k * step)
    return st.builds(isa.Stream, st.sampled_from(("E", "W")), index)


@st.composite
def vxm_instructions(draw, cfg: ChipConfig) -> isa.Instruction:
    """One valid VXM instruction: op, allowed element type(s), aligned stream groups of the right widths."""
    op = draw(st.sampled_from(sorted(isa.VXM_OPS)))
    t1 = draw(st.sampled_from(isa.VXM_OPS[op][2]))
    if op == "convert":
        t2 = draw(st.sampled_from(_DTYPE_NAMES))
        mnemonic = f"convert.{t1}.{t2}"
    elif op == "requant":
        t2, mnemonic = "i8", f"requant.{t1}"
    else:
        t2, mnemonic = t1, f"{op}.{t1}"
    assert isa.vxm_parts(mnemonic) == (op, t1, t2)
    widths = isa.vxm_widths(op, t1, t2)
    return isa.Instruction(mnemonic, tuple(draw(streams(cfg, w)) for w in widths))


@st.composite
def queue_body(draw, cfg: ChipConfig, unit: str, max_len: int = 8) -> tuple[isa.Instruction, ...]:
    """A valid instruction sequence for one queue of `unit` ("MEM" or "VXM")."""
    n = draw(st.integers(0, max_len))
    out: list[isa.Instruction] = []
    last = None  # [mnemonic, address or None] of the latest unit instruction, tracked like isa.validate does
    unit_ops = ("Read", "Write", "Gather", "Scatter") if unit == "MEM" else ("vxm",) * 4
    for _ in range(n):
        kinds = unit_ops + ("NOP", "Sync", "Notify") + (("Repeat",) * 2 if last is not None else ())
        kind = draw(st.sampled_from(kinds))
        if kind in ("Read", "Write"):
            a = draw(st.integers(0, cfg.mem_words - 1))
            ins = isa.Instruction(kind, (a, draw(streams(cfg))))
            last = [kind, a]
        elif kind in ("Gather", "Scatter"):
            ins = isa.Instruction(kind, (draw(streams(cfg)), draw(streams(cfg, 2))))
            last = [kind, None]
        elif kind == "vxm":
            ins = draw(vxm_instructions(cfg))
            last = [ins.mnemonic, None]
        elif kind == "NOP":
            ins = isa.Instruction("NOP", (draw(counts()),))
        elif kind in ("Sync", "Notify"):
            ins = isa.Instruction(kind)
        else:  # Repeat
            rep, d = draw(counts()), draw(counts())
            stride = 0
            if last[1] is not None:
                a = last[1]
                lo, hi = -(a // rep), (cfg.mem_words - 1 - a) // rep
                stride = draw(st.one_of(st.just(0), st.integers(lo, hi)))
                last[1] = a + rep * stride
            ins = isa.Instruction("Repeat", (rep, d, stride))
        out.append(ins)
    return tuple(out)


def mem_queue(cfg: ChipConfig, max_len: int = 8) -> st.SearchStrategy[tuple[isa.Instruction, ...]]:
    return queue_body(cfg, "MEM", max_len)


def vxm_queue(cfg: ChipConfig, max_len: int = 8) -> st.SearchStrategy[tuple[isa.Instruction, ...]]:
    return queue_body(cfg, "VXM", max_len)


@st.composite
def programs(draw, cfg: ChipConfig | None = None, max_queues: int = 4, max_len: int = 8) -> isa.Program:
    """A random valid Program for `cfg` (default `tiny()`): up to `max_queues` distinct queues in random order,
    each with up to `max_len` instructions (a queue may be empty)."""
    cfg = tiny() if cfg is None else cfg
    names = draw(st.lists(st.sampled_from(isa.queue_names(cfg)), unique=True, max_size=max_queues))
    return isa.Program({q: draw(queue_body(cfg, isa.queue_unit(q), max_len)) for q in names})
