"""Hypothesis strategies for the differential test of the golden interpreter (tests/test_golden.py).

`cases(cfg)` draws `(program, mem)`: a random program that `isa.validate(cfg, ...)` accepts, dense enough in time
that data really flows between units, and a random SRAM image. Every instruction of every unit can appear:
  ICU  NOP, Repeat (with strides; rarely with counts up to the int32 limit), Sync (first or mid-queue), Notify
  MEM  Read, Write, Gather, Scatter
  VXM  every op of `isa.VXM_OPS` over every element type it takes, `convert.FROM.TO` for all 36 pairs, `requant`
  MXM  LW, IW, ABC.i8, ABC.f16 (both halves), ACC.i32, ACC.f32 (all four modes)
  SXM  Shift.up/down, Rotate.up/down, Permute, Distribute, Transpose.sg16
Timing is random (hazards are specified behaviour, and both models must report the same ones), but shaped so that
the interesting cases are common:
  * addresses come mostly from a few words at the bottom of each bank (read-after-write, bank conflicts);
  * a plane's ACC queue is, half of the time, the mirror of its ABC queue shifted by the product latency, so
    that products meet their ACCs (with the right type, or sometimes the wrong one);
  * SRAM words are drawn from four byte populations: uniform bytes, small bytes (in-range Gather/Scatter/Permute
    maps, small fp16 values), special values (NaN, inf, subnormal, -0, ... laid out so that stream groups
    reassemble them: `mem_image`) and zeros.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from lpu_jax import isa
from lpu_jax.config import ChipConfig

__all__ = ["VXM_MNEMONICS", "cases", "mem_image", "mem_images", "programs"]

_TYPES = ("i8", "u8", "i16", "i32", "f16", "f32")


# Special values, as bit patterns: zeros, infinities, NaNs (quiet, signalling, negative), subnormals, the
# smallest normals, 1, the largest finite, and the boundaries of fpmath.md (exp clamp, tanh branches, 2^31).
_SPECIAL_F32 = np.array(
    [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x00000001,
     0x807FFFFF, 0x00800000, 0x80800000, 0x3F800000, 0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F000000,
     0x42B80000, 0xC2DC0000, 0x39800000, 0x3F100000, 0x41800000, 0x4F000000, 0xCF000000, 0x3FC00000],
    np.uint32,
)  # fmt: skip
_SPECIAL_F16 = np.array(
    [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0x0001, 0x83FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF,
     0xFBFF, 0x3800, 0x3E00],
    np.uint32,
)  # fmt: skip


def mem_image(cfg: ChipConfig, seed: int) -> np.ndarray:
    """uint8 [M, mem_words, L]: every word drawn from one of four byte populations: uniform bytes, small bytes,
    special values, zeros (equally likely; in half of the images 90% of the words are special, and in half of
    the images the special values are all finite).

    Special words are built so that stream groups reassemble whole special values: lane l of an even address of
    the slice k-th from the VXM holds byte k % 4 of the f32 special value chosen for lane l (the same choice in
    every slice), an odd address byte k % 2 of an f16 one. The streamers (`_streamer`) put slice k's words on
    stream k % 4, so an f32 group E0..E3 (or W0..W3) carries whole special values.
    """
    rng = np.random.default_rng(seed)
    M, W, L = cfg.n_mem, cfg.mem_words, cfg.n_lanes
    heavy = rng.integers(0, 2)  # half of the images are mostly special values
    kind = rng.choice(4, (M, W, 1), p=(0.04, 0.03, 0.9, 0.03) if heavy else (0.25, 0.25, 0.25, 0.25))
    uniform = rng.integers(0, 256, (M, W, L), dtype=np.uint8)
    small = rng.integers(0, 32, (M, W, L), dtype=np.uint8) >> rng.integers(0, 5, (M, W, 1)).astype(np.uint8)
    t32, t16 = _SPECIAL_F32, _SPECIAL_F16
    if rng.integers(0, 2):  # half of the images: finite values only (so that dot products stay finite)
        t32 = t32[(t32 & 0x7F800000) != 0x7F800000]
        t16 = t16[(t16 & 0x7C00) != 0x7C00]
    v32 = t32[rng.integers(0, len(t32), L)]  # the value of each lane
    v16 = t16[rng.integers(0, len(t16), L)]
    h = M // 2
    k = np.array([h - 1 - m if m < h else m - h for m in range(M)])[:, None, None]
    even = (np.arange(W) % 2 == 0)[None, :, None]
    b32 = (v32[None, None, :] >> (8 * (k % 4)).astype(np.uint32)) & 0xFF
    b16 = (v16[None, None, :] >> (8 * (k % 2)).astype(np.uint32)) & 0xFF
    special = np.where(even, b32, b16).astype(np.uint8)
    return np.select([kind == 0, kind == 1, kind == 2], [uniform, small, special], 0).astype(np.uint8)


def mem_images(cfg: ChipConfig) -> st.SearchStrategy[np.ndarray]:
    return st.integers(0, 2**32 - 1).map(lambda s: mem_image(cfg, s))


def _stream(draw, cfg: ChipConfig, width: int = 1, dirs: str = "EW") -> isa.Stream:
    """A stream group base: mostly among the first 2 (or 4, or 8) streams of a direction, so that consumers find the
    data producers put there; sometimes anywhere."""
    step = width if cfg.group_aligned else 1
    top = (cfg.n_streams - width) // step
    hot = draw(st.sampled_from((1, 1, 3, 7, top)))
    k = draw(st.integers(0, min(top, max(hot // step, 0)))) * step
    return isa.Stream(draw(st.sampled_from(dirs)), k)


def _addr(draw, cfg: ChipConfig) -> int:
    """Mostly one of the first 4 words of either bank; sometimes anywhere."""
    if draw(st.integers(0, 3)):
        return draw(st.sampled_from((0, cfg.bank_words))) + draw(st.integers(0, 3))
    return draw(st.integers(0, cfg.mem_words - 1))


def _mem_ins(draw, cfg: ChipConfig) -> isa.Instruction:
    m = draw(st.sampled_from(("Read", "Read", "Read", "Write", "Write", "Gather", "Scatter")))
    if m in ("Read", "Write"):
        return isa.Instruction(m, (_addr(draw, cfg), _stream(draw, cfg)))
    return isa.Instruction(m, (_stream(draw, cfg), _stream(draw, cfg, 2)))


def _vxm_mnemonics() -> tuple[str, ...]:
    """Every VXM mnemonic: op.T for each allowed T, convert.FROM.TO for all 36 pairs, requant.i32."""
    out = [f"{op}.{t}" for op, (_, _, ts) in isa.VXM_OPS.items() if op not in ("convert", "requant") for t in ts]
    return tuple(out + [f"convert.{a}.{b}" for a in _TYPES for b in _TYPES] + ["requant.i32"])


VXM_MNEMONICS = _vxm_mnemonics()


_BY_OP = {op: [m for m in VXM_MNEMONICS if m.split(".")[0] == op] for op in isa.VXM_OPS}


def _vxm_ins(draw, cfg: ChipConfig, mn: str | None = None) -> isa.Instruction:
    """A VXM instruction: the op first (each of the 29 equally likely), then its types."""
    mn = mn or draw(st.sampled_from(_BY_OP[draw(st.sampled_from(sorted(_BY_OP)))]))
    op, t1, t2 = isa.vxm_parts(mn)
    return isa.Instruction(mn, tuple(_stream(draw, cfg, w) for w in isa.vxm_widths(op, t1, t2)))


def _vxm_chain(draw, cfg: ChipConfig) -> list[isa.Instruction]:
    """Two VXM ops, the second issued when the first's result lands and reading it as its first source (typed
    data of full width: an f32 group from a convert, say, which the SRAM streams of a small chip cannot fill)."""
    first = _vxm_ins(draw, cfg)
    op, t1, t2 = isa.vxm_parts(first.mnemonic)
    out = {"convert": t2, "requant": "i8"}.get(op, t1)
    if op in ("eq", "ne", "lt", "le", "gt", "ge") and out in ("f16", "f32"):
        out = {"f16": "i16", "f32": "i32"}[out]  # a compare's 0/1 reads best as an integer
    ops = sorted(op for op, ms in _BY_OP.items() if any(isa.vxm_parts(m)[1] == out for m in ms))
    follow = [m for m in _BY_OP[draw(st.sampled_from(ops))] if isa.vxm_parts(m)[1] == out]
    second = _vxm_ins(draw, cfg, draw(st.sampled_from(follow)))
    second = isa.Instruction(second.mnemonic, (second.operands[0], first.operands[0]) + second.operands[2:])
    wait = cfg.delay(isa.vxm_delay_class(op, t1)) - 1
    return [first] + [isa.Instruction("NOP", (wait,))] * bool(wait) + [second]


def _sxm_ins(draw, cfg: ChipConfig, src_dir: str) -> isa.Instruction:
    """src_dir: mostly the direction that brings data to this SXM slice (westward streams in the west)."""
    src = src_dir if draw(st.integers(0, 4)) else "EW"
    choices = ["Shift.up", "Shift.down", "Rotate.up", "Rotate.down", "Permute", "Distribute"]
    if cfg.lanes_per_superlane == 16 and cfg.n_streams >= 16:
        choices.append("Transpose.sg16")
    m = draw(st.sampled_from(choices))
    if m == "Transpose.sg16":
        return isa.Instruction(m, (_stream(draw, cfg, 16), _stream(draw, cfg, 16, src)))
    d, a = _stream(draw, cfg), _stream(draw, cfg, 1, src)
    if m == "Permute":
        return isa.Instruction(m, (d, a, _stream(draw, cfg, 2, src)))
    if m == "Distribute":
        return isa.Instruction(m, (d, a, _stream(draw, cfg, 1, src)))
    lps = cfg.lanes_per_superlane
    n = draw(st.one_of(st.integers(0, cfg.n_lanes - 1), st.sampled_from((0, 1, lps - 1, lps, lps + 1))))
    return isa.Instruction(m, (d, a, min(n, cfg.n_lanes - 1)))


def _plane_dirs(cfg: ChipConfig, plane: int) -> tuple[str, str]:
    d_in = "EW"[cfg.plane_in_dir(plane)]
    return d_in, "EW"[1 - cfg.plane_in_dir(plane)]


def _lw_iw(draw, cfg: ChipConfig, plane: int) -> isa.Instruction:
    if draw(st.integers(0, 3)) == 0:
        return isa.Instruction("IW", ())
    return _lw(draw, cfg, plane)


def _lw(draw, cfg: ChipConfig, plane: int) -> isa.Instruction:
    d_in, _ = _plane_dirs(cfg, plane)
    n = draw(st.one_of(st.sampled_from((1, 2, 2, 2, 4)), st.integers(1, min(cfg.n_streams, cfg.n_lanes))))
    s = isa.Stream(d_in, draw(st.integers(0, min(1, cfg.n_streams - n))))
    r = draw(st.integers(0, cfg.n_lanes - n))
    return isa.Instruction("LW", (r, s, n))


def _abc(draw, cfg: ChipConfig, plane: int, kind: str | None = None) -> isa.Instruction:
    d_in, _ = _plane_dirs(cfg, plane)
    kind = kind or draw(st.sampled_from(("i8", "f16")))
    near = draw(st.integers(0, 4)) > 0  # mostly streams 0/1, where the streamers put data
    if kind == "i8":
        s = isa.Stream(d_in, draw(st.integers(0, 1))) if near else _stream(draw, cfg, 1, d_in)
        return isa.Instruction("ABC.i8", (s,))
    s = isa.Stream(d_in, 0) if near else _stream(draw, cfg, 2, d_in)
    return isa.Instruction("ABC.f16", (s, draw(st.integers(0, 1))))


def _acc(draw, cfg: ChipConfig, plane: int, kind: str | None = None) -> isa.Instruction:
    _, d_out = _plane_dirs(cfg, plane)
    kind = kind or draw(st.sampled_from(("i32", "f32")))
    rows = min(cfg.mxm_acc_rows, 4) if draw(st.booleans()) else cfg.mxm_acc_rows
    return isa.Instruction(
        f"ACC.{kind}", (draw(st.integers(0, rows - 1)), draw(st.integers(0, 3)), _stream(draw, cfg, 4, d_out))
    )


def _strided_limit(cfg: ChipConfig, ins: isa.Instruction) -> int | None:
    """Exclusive bound of the field a Repeat stride advances, or None if it has none (isa._stride_limit)."""
    if ins.mnemonic in ("Read", "Write"):
        return cfg.mem_words
    if ins.mnemonic == "LW":
        return cfg.n_lanes - ins.operands[2] + 1
    if ins.mnemonic.startswith("ACC."):
        return cfg.mxm_acc_rows
    return None


def _body(draw, cfg: ChipConfig, make, n_max: int, repeat: bool = True) -> list[isa.Instruction]:
    """A queue body: unit instructions from `make(draw)` (one, or a list) with NOP gaps and Repeats."""
    out: list[isa.Instruction] = []
    last, value = None, None  # the most recent unit instruction and its strided field as last issued
    for _ in range(draw(st.integers(1, n_max))):
        gap = draw(st.sampled_from((0, 0, 0, 1, 1, 2, 3, 5)))
        if draw(st.integers(0, 40)) == 0:  # rarely: a NOP that outlasts the run (up to the int32 limit)
            gap = draw(st.sampled_from((70, 2**31 - 2, 2**31 - 1)))
        if gap:
            out.append(isa.Instruction("NOP", (gap,)))
        if repeat and last is not None and draw(st.integers(0, 4)) == 0:
            n = draw(st.integers(1, 3)) if draw(st.integers(0, 15)) else draw(st.sampled_from((40, 2**31 - 1)))
            d = draw(st.integers(isa.occupancy(last.mnemonic), 3))
            hi = _strided_limit(cfg, last)
            s = 0
            if hi is not None and draw(st.booleans()):
                s = draw(st.integers(-2, 2))
                if not 0 <= value + n * s < hi:
                    s = 0
            out.append(isa.Instruction("Repeat", (n, d, s)))
            if hi is not None:
                value += n * s
            continue
        made = make(draw)
        ins = made[-1] if isinstance(made, list) else made
        out += made if isinstance(made, list) else [made]
        last = ins
        value = ins.operands[0] if _strided_limit(cfg, ins) is not None else None
    return out


def _times(body: list[isa.Instruction]) -> list[tuple[int, isa.Instruction]]:
    """Issue cycle of each unit instruction of a Repeat-free, Sync-free body started at cycle 0."""
    t, out = 0, []
    for ins in body:
        if ins.mnemonic == "NOP":
            t += ins.operands[0]
        else:
            out.append((t, ins))
            t += isa.occupancy(ins.mnemonic)
    return out


def _mirror(draw, cfg: ChipConfig, plane: int, abcs: list[isa.Instruction]) -> list[isa.Instruction]:
    """An ACC queue whose ACCs issue exactly when the ABC queue's products are due (mxm.md 'Timing')."""
    lat = cfg.delay("mxm.abc") + cfg.n_superlanes - 1
    out, t = [], 0
    for when, abc in _times(abcs):
        if when > 10_000:  # after a NOP that outlasts the run
            break
        kind = "i32" if abc.mnemonic == "ABC.i8" else "f32"
        if draw(st.integers(0, 7)) == 0:  # sometimes the wrong type, or no ACC at all
            if draw(st.booleans()):
                continue
            kind = "f32" if kind == "i32" else "i32"
        if when + lat > t:
            out.append(isa.Instruction("NOP", (when + lat - t,)))
            t = when + lat
        out.append(_acc(draw, cfg, plane, kind))
        t += 1
    return out


def _streamer(draw, cfg: ChipConfig, m: int) -> list[isa.Instruction]:
    """A MEM queue that reads a run of consecutive words onto one stream, one a cycle: a stream full of data,
    mostly toward the other half of the chip (west slices stream east, east slices west) on stream k % 4, k the
    slice's number in its hemisphere: slices fill streams 0, 1, 2, 3 (an fp16 or fp32 group, LW rows)."""
    n = draw(st.one_of(st.integers(4, 40), st.integers(40, 64)))
    s = draw(st.sampled_from((0, 1, 1, -1)))
    n = min(n, cfg.mem_words - 1) if s else n  # the last address, a + n * s, stays in range
    a = draw(st.integers(max(0, -s * n), cfg.mem_words - 1 - max(0, s * n)))
    lead = draw(st.integers(0, 4))
    h = cfg.n_mem // 2
    toward, k = ("E", h - 1 - m) if m < h else ("W", m - h)  # k counts outward from the VXM
    stream = isa.Stream(toward, k % 4) if draw(st.integers(0, 4)) else _stream(draw, cfg)
    return [isa.Instruction("NOP", (lead,))] * bool(lead) + [
        isa.Instruction("Read", (a, stream)),
        isa.Instruction("Repeat", (n, 1, s)),
    ]


def _weights(draw, cfg: ChipConfig, plane: int) -> list[isa.Instruction]:
    """A weight queue that starts with a few LWs and an IW (so that ABCs multiply by data, not zeros)."""
    out = [isa.Instruction("NOP", (draw(st.integers(6, 16)),))]  # the streams fill first
    for _ in range(draw(st.integers(1, 3))):
        gap = draw(st.integers(0, 6))
        out += [isa.Instruction("NOP", (gap,))] * bool(gap) + [_lw(draw, cfg, plane)]
    return out + [isa.Instruction("IW", ())]


@st.composite
def programs(draw, cfg: ChipConfig, n_max: int = 12) -> isa.Program:
    """A random valid program for `cfg` (module docstring). Queues hold at most ~3 * n_max instructions."""
    names = isa.queue_names(cfg)
    queues: dict[str, list[isa.Instruction]] = {}
    for q in names:
        unit = q.split(".")[0]
        if unit != "MEM" and draw(st.integers(0, 9)) < 3:  # about a third of the queues stay empty
            continue
        if unit == "MEM":
            m = cfg.mem_names.index(q.split(".")[1])
            queues[q] = _streamer(draw, cfg, m) if draw(st.integers(0, 4)) else []
            queues[q] += _body(draw, cfg, lambda d: _mem_ins(d, cfg), n_max)
        elif unit == "VXM":
            vxm = lambda d: _vxm_chain(d, cfg) if d(st.integers(0, 2)) == 0 else _vxm_ins(d, cfg)  # noqa: E731
            queues[q] = _body(draw, cfg, vxm, n_max)
        elif unit == "SXM":
            k = cfg.sxm_names.index(q.split(".")[1])
            src_dir = "W" if cfg.sxm_slices[k] < cfg.vxm_slice else "E"
            queues[q] = _body(draw, cfg, lambda d, s=src_dir: _sxm_ins(d, cfg, s), n_max)
    for p in range(cfg.n_planes):
        if draw(st.integers(0, 3)) == 0:
            continue
        w = _weights(draw, cfg, p) if draw(st.integers(0, 3)) else []
        queues[f"MXM.{p}.W"] = w + _body(draw, cfg, lambda d, p=p: _lw_iw(d, cfg, p), n_max)
        mirror = draw(st.booleans())
        lead = draw(st.integers(0, 24)) if draw(st.integers(0, 3)) == 0 else draw(st.integers(12, 30))
        abcs = [isa.Instruction("NOP", (lead,))] * bool(lead)
        abcs += _body(draw, cfg, lambda d, p=p: _abc(d, cfg, p), n_max, repeat=not mirror)
        queues[f"MXM.{p}.A"] = abcs
        if mirror:
            queues[f"MXM.{p}.C"] = _mirror(draw, cfg, p, abcs)
        else:
            queues[f"MXM.{p}.C"] = _body(draw, cfg, lambda d, p=p: _acc(d, cfg, p), n_max)
    # Sync / Notify: some queues park first; one notifier releases them (or a late Sync parks for good).
    if queues and draw(st.integers(0, 3)) == 0:
        busy = sorted(queues)
        notifier = draw(st.sampled_from(busy))
        wait = draw(st.integers(1, 6))
        queues[notifier] = [isa.Instruction("NOP", (wait,)), isa.Instruction("Notify", ())] + queues[notifier]
        for q in busy:
            if q != notifier and draw(st.integers(0, 2)) == 0:
                late = draw(st.sampled_from((0, 0, 0, wait, wait + 1)))
                pre = [isa.Instruction("NOP", (late,))] if late else []
                queues[q] = pre + [isa.Instruction("Sync", ())] + queues[q]
        if draw(st.booleans()):  # a Sync in the middle of a queue, and a second Notify at the notifier's end
            q = draw(st.sampled_from(busy))
            k = draw(st.integers(0, len(queues[q])))
            queues[q] = queues[q][:k] + [isa.Instruction("Sync", ())] + queues[q][k:]
            queues[notifier] = queues[notifier] + [isa.Instruction("Notify", ())]
    prog = isa.Program(queues)
    isa.validate(cfg, prog)
    return prog


def cases(cfg: ChipConfig, n_max: int = 12) -> st.SearchStrategy[tuple[isa.Program, np.ndarray]]:
    """(program, SRAM image) pairs for the differential test."""
    return st.tuples(programs(cfg, n_max), mem_images(cfg))
