"""Hypothesis strategies for valid LPU programs (shared by the test modules).

`programs(cfg)` draws a random `isa.Program` that `isa.validate(cfg, ...)` accepts: random queues from
`isa.queue_names(cfg)`; MEM queues get Read/Write/Gather/Scatter with in-range addresses and streams, VXM queues get
VXM ops with allowed element types and aligned stream groups of the right width (`isa.vxm_widths`), and both get
the ICU instructions NOP/Repeat/Sync/Notify; MXM queues get the instructions of their role (LW/IW, ABC, ACC) on
streams of the plane's directions; SXM queues get shifts, rotates, permutes, distributes and transposes. A Repeat
only follows some unit instruction; it has a nonzero stride only after a Read/Write/LW/ACC, chosen so that its last
value stays in range, and an interval >= the repeated instruction's occupancy.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from lpu_jax import isa
from lpu_jax.config import ChipConfig, tiny
from lpu_jax.dtypes import DTYPES

__all__ = [
    "counts",
    "f32_bit_arrays",
    "f32_bit_sample",
    "mem_queue",
    "programs",
    "queue_body",
    "streams",
    "vxm_instructions",
    "vxm_queue",
]

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


def _directed(cfg: ChipConfig, d: str, width: int = 1) -> st.SearchStrategy[isa.Stream]:
    step = width if cfg.group_aligned else 1
    return st.integers(0, (cfg.n_streams - width) // step).map(lambda k: isa.Stream(d, k * step))


@st.composite
def mxm_instruction(draw, cfg: ChipConfig, queue: str) -> tuple[isa.Instruction, int | None, int]:
    """A valid instruction for an MXM queue, with its strided value (or None) and its stride limit."""
    _, plane, role = queue.split(".")
    d_in = "EW"[cfg.plane_in_dir(int(plane))]
    d_out = "EW"[1 - cfg.plane_in_dir(int(plane))]
    if role == "W":
        if draw(st.booleans()):
            return isa.Instruction("IW"), None, 0
        n = draw(st.integers(1, cfg.n_streams))
        s = draw(st.integers(0, cfg.n_streams - n))
        r = draw(st.integers(0, cfg.n_lanes - n))
        return isa.Instruction("LW", (r, isa.Stream(d_in, s), n)), r, cfg.n_lanes - n + 1
    if role == "A":
        if draw(st.booleans()):
            return isa.Instruction("ABC.i8", (draw(_directed(cfg, d_in)),)), None, 0
        return isa.Instruction("ABC.f16", (draw(_directed(cfg, d_in, 2)), draw(st.integers(0, 1)))), None, 0
    a = draw(st.integers(0, cfg.mxm_acc_rows - 1))
    t = draw(st.sampled_from(("i32", "f32")))
    ins = isa.Instruction(f"ACC.{t}", (a, draw(st.integers(0, 3)), draw(_directed(cfg, d_out, 4))))
    return ins, a, cfg.mxm_acc_rows


@st.composite
def sxm_instruction(draw, cfg: ChipConfig) -> isa.Instruction:
    m = draw(st.sampled_from(sorted(isa.SXM_SIGS)))
    if m == "Transpose.sg16":
        return isa.Instruction(m, (draw(streams(cfg, 16)), draw(streams(cfg, 16))))
    if m == "Permute":
        return isa.Instruction(m, (draw(streams(cfg)), draw(streams(cfg)), draw(streams(cfg, 2))))
    if m == "Distribute":
        return isa.Instruction(m, (draw(streams(cfg)), draw(streams(cfg)), draw(streams(cfg))))
    return isa.Instruction(m, (draw(streams(cfg)), draw(streams(cfg)), draw(st.integers(0, cfg.n_lanes - 1))))


@st.composite
def queue_body(draw, cfg: ChipConfig, unit: str, max_len: int = 8, queue: str | None = None):
    """A valid instruction sequence for one queue of `unit` ("MEM", "VXM", "MXM" or "SXM"; MXM needs `queue`)."""
    n = draw(st.integers(0, max_len))
    out: list[isa.Instruction] = []
    last = None  # [mnemonic, strided value or None, limit] of the latest unit instruction, as isa.validate tracks
    unit_ops = {"MEM": ("Read", "Write", "Gather", "Scatter"), "VXM": ("vxm",) * 4}.get(unit, (unit.lower(),) * 4)
    for _ in range(n):
        kinds = unit_ops + ("NOP", "Sync", "Notify") + (("Repeat",) * 2 if last is not None else ())
        kind = draw(st.sampled_from(kinds))
        if kind in ("Read", "Write"):
            a = draw(st.integers(0, cfg.mem_words - 1))
            ins = isa.Instruction(kind, (a, draw(streams(cfg))))
            last = [kind, a, cfg.mem_words]
        elif kind in ("Gather", "Scatter"):
            ins = isa.Instruction(kind, (draw(streams(cfg)), draw(streams(cfg, 2))))
            last = [kind, None, 0]
        elif kind == "vxm":
            ins = draw(vxm_instructions(cfg))
            last = [ins.mnemonic, None, 0]
        elif kind == "mxm":
            ins, v, lim = draw(mxm_instruction(cfg, queue))
            last = [ins.mnemonic, v, lim]
        elif kind == "sxm":
            ins = draw(sxm_instruction(cfg))
            last = [ins.mnemonic, None, 0]
        elif kind == "NOP":
            ins = isa.Instruction("NOP", (draw(counts()),))
        elif kind in ("Sync", "Notify"):
            ins = isa.Instruction(kind)
        else:  # Repeat
            rep, d = draw(counts()), draw(counts())
            d = max(d, isa.occupancy(last[0]))
            stride = 0
            if last[1] is not None:
                a = last[1]
                lo, hi = -(a // rep), (last[2] - 1 - a) // rep
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
    return isa.Program({q: draw(queue_body(cfg, isa.queue_unit(q), max_len, q)) for q in names})


# --------------------------------------------------------------------------- float32 bit patterns
def _near(points, spread: int):
    """Bit patterns within `spread` ulps of one of `points`, either sign."""
    return st.tuples(st.sampled_from(points), st.integers(-spread, spread), st.booleans()).map(
        lambda t: ((t[0] + t[1]) & 0x7FFFFFFF) | (0x80000000 if t[2] else 0)
    )


def f32_bit_arrays(special, points, n: int = 256, spread: int = 64, span: float = 130.0):
    """float32 arrays of fixed length n (so a jitted function compiles once), drawn as bit patterns: any 32 bits,
    the `special` patterns, patterns near `points` (branch points), and floats in [-span, span]; zero-padded."""
    moderate = st.floats(-span, span, width=32).map(lambda v: int(np.array(v, np.float32).view(np.uint32)))
    elements = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(special), _near(points, spread), moderate)

    def pad(vals):
        arr = np.zeros(n, np.uint32)
        arr[: len(vals)] = vals
        return arr.view(np.float32)

    return st.lists(elements, min_size=1, max_size=n).map(pad)


def f32_bit_sample(n: int, seed: int, special, points, spread: int, exp_hi: float) -> np.ndarray:
    """A fixed float32 sample, both signs of each: n random bit patterns, n uniform values in [-120, 120], n
    log-uniform magnitudes in [e^-90, e^exp_hi], the `special` patterns and every pattern within `spread` of
    `points`."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32),
        rng.uniform(-120, 120, n).astype(np.float32).view(np.uint32),
        (rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(-90, exp_hi, n))).astype(np.float32).view(np.uint32),
        np.array(special, np.uint32),
        (np.array(points, np.int64)[:, None] + np.arange(-spread, spread)).astype(np.uint32).ravel(),
    ]
    b = np.concatenate(parts)
    return np.concatenate([b, b ^ np.uint32(0x80000000)]).view(np.float32)
