"""The instruction set: opcodes, operand signatures, instructions, programs and their array encoding.

The ISA's opcode numbers and field layout are lpu_jax's own ([A]: Groq's encodings are not public,
architecture.md §5) and are stable: docs/isa.md lists them. Semantics live in the unit modules and docs/isa.md.

Array encoding (what the jitted simulator reads): every instruction is one row of `N_FIELDS` int32:
  `[opcode, f1, f2, f3, f4, f5, f6, f7]`
  ICU   NOP n            [1, n]
        Repeat n, d, s   [2, n, d, s]
        Sync             [3]
        Notify           [4]
  MEM   Read a, S        [16, a, S]          (S: stream id = dir * n_streams + index; dir 0 east, 1 west)
        Write a, S       [17, a, S]
        Gather S, M      [18, 0, S, M]       (M: base of a 2-stream uint16 address group)
        Scatter S, M     [19, 0, S, M]
  MXM   LW r, S, n           [20, r, S, n]       (weight-buffer rows r..r+n-1 <- streams S..S+n-1)
        IW                   [21]
        ABC.T S[, h]         [22, 0, S, h, T]    (T: i8 or f16; h: the f16 half)
        ACC.T a, m, D        [23, a, D, m, T]    (T: i32 or f32; a: accumulator row; m: mode bits)
  SXM   Shift.up D, A, n     [24, 0, D, A, n]    (Shift.down 25, Rotate.up 26, Rotate.down 27)
        Permute D, A, M      [28, 0, D, A, M]    (M: 2-stream uint16 lane map)
        Distribute D, A, M   [29, 0, D, A, M]    (M: 1-stream lane map)
        Transpose.sg16 D, A  [30, 0, D, A]       (16-stream groups)
  VXM   op.T D, A[, B[, C]]      [32 + op, T, T2, D, A, B, C]   (T, T2: dtype codes, dtypes.DTYPES)
  opcode 0 is HALT: the padding after a queue's last instruction.
Field 1 is the one a `Repeat` stride advances (Read/Write address, LW row, ACC accumulator row).
A program is `int32 [n_queues, L, N_FIELDS]`, L a power of two >= 64 (a size class: programs of one class share
one compiled simulator).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .config import ChipConfig
from .dtypes import DTYPES, dtype_by_code, dtype_by_name

__all__ = [
    "E",
    "W",
    "Instruction",
    "Program",
    "ProgramError",
    "Stream",
    "decode",
    "decode_row",
    "encode",
    "queue_names",
]

N_FIELDS = 8

# --------------------------------------------------------------------------- opcodes (stable numbers)
HALT, NOP, REPEAT, SYNC, NOTIFY = 0, 1, 2, 3, 4
READ, WRITE, GATHER, SCATTER = 16, 17, 18, 19
LW, IW, ABC, ACC = 20, 21, 22, 23
SHIFT_UP, SHIFT_DOWN, ROTATE_UP, ROTATE_DOWN, PERMUTE, DISTRIBUTE, TRANSPOSE = 24, 25, 26, 27, 28, 29, 30
VXM_BASE = 32
STRIDED = (READ, WRITE, LW, ACC)
"""Opcodes whose field 1 (operand 0) a Repeat stride advances."""

# VXM operations: name -> (index, arity, allowed dtypes). Index is stable: opcode = 32 + index.
_INT = ("i8", "u8", "i16", "i32")
_ALL = _INT + ("f16", "f32")
_FLT = ("f16", "f32")
VXM_OPS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "add": (0, 2, _ALL),
    "sub": (1, 2, _ALL),
    "mul": (2, 2, _ALL),
    "min": (3, 2, _ALL),
    "max": (4, 2, _ALL),
    "and": (5, 2, _INT),
    "or": (6, 2, _INT),
    "xor": (7, 2, _INT),
    "shl": (8, 2, _INT),
    "shr": (9, 2, _INT),
    "shru": (10, 2, _INT),
    "eq": (11, 2, _ALL),
    "ne": (12, 2, _ALL),
    "lt": (13, 2, _ALL),
    "le": (14, 2, _ALL),
    "gt": (15, 2, _ALL),
    "ge": (16, 2, _ALL),
    "select": (17, 3, _ALL),
    "neg": (18, 1, _ALL),
    "abs": (19, 1, _ALL),
    "relu": (20, 1, _ALL),
    "not": (21, 1, _INT),
    "mov": (22, 1, _ALL),
    "exp": (23, 1, _FLT),
    "tanh": (24, 1, _FLT),
    "rsqrt": (25, 1, _FLT),
    "recip": (26, 1, _FLT),
    "convert": (27, 1, _ALL),  # convert.FROM.TO
    "requant": (28, 2, ("i32",)),  # requant.i32 D(i8), A(i32), B(f32 scale)
}
TRANSCENDENTAL = ("exp", "tanh", "rsqrt", "recip")


def vxm_delay_class(op: str, dtype: str) -> str:
    """The `ChipConfig.delays` class of a VXM op (its d_func)."""
    if op in TRANSCENDENTAL:
        return "vxm.transcendental"
    if op == "convert":
        return "vxm.convert"
    if op == "requant":
        return "vxm.requant"
    return "vxm.float" if dtype in _FLT else "vxm.int"


# Operand kinds: "addr" (MEM address), "count" (>= 1), "int" (any int), "stream", "group2" / "group4" /
# "group16" (aligned stream groups), "row" (weight-buffer row), "acc" (accumulator row), "mode" (ACC mode bits
# 0..3), "half" (0 or 1), "lanes" (a lane count 0..n_lanes-1).
INT_KINDS = ("addr", "count", "int", "row", "acc", "mode", "half", "lanes")
GROUP_WIDTH = {"stream": 1, "group2": 2, "group4": 4, "group16": 16}
ICU_SIGS = {"NOP": ("count",), "Repeat": ("count", "count", "int"), "Sync": (), "Notify": ()}
MEM_SIGS = {
    "Read": ("addr", "stream"),
    "Write": ("addr", "stream"),
    "Gather": ("stream", "group2"),
    "Scatter": ("stream", "group2"),
}
MXM_SIGS = {
    "LW": ("row", "stream", "count"),
    "IW": (),
    "ABC.i8": ("stream",),
    "ABC.f16": ("group2", "half"),
    "ACC.i32": ("acc", "mode", "group4"),
    "ACC.f32": ("acc", "mode", "group4"),
}
MXM_ROLE = {"LW": "W", "IW": "W", "ABC.i8": "A", "ABC.f16": "A", "ACC.i32": "C", "ACC.f32": "C"}
"""Which of a plane's three queues runs each MXM instruction: W (weights), A (activations), C (accumulators)."""
ACC_ADD, ACC_EMIT = 1, 2
"""ACC mode bits: ACC_ADD adds the product to the accumulator row (else the row starts from the product);
ACC_EMIT puts the new row value onto the destination group."""
SXM_SIGS = {
    "Shift.up": ("stream", "stream", "lanes"),
    "Shift.down": ("stream", "stream", "lanes"),
    "Rotate.up": ("stream", "stream", "lanes"),
    "Rotate.down": ("stream", "stream", "lanes"),
    "Permute": ("stream", "stream", "group2"),
    "Distribute": ("stream", "stream", "stream"),
    "Transpose.sg16": ("group16", "group16"),
}
_OPCODE = {
    "NOP": NOP,
    "Repeat": REPEAT,
    "Sync": SYNC,
    "Notify": NOTIFY,
    "Read": READ,
    "Write": WRITE,
    "Gather": GATHER,
    "Scatter": SCATTER,
    "LW": LW,
    "IW": IW,
    "ABC.i8": ABC,
    "ABC.f16": ABC,
    "ACC.i32": ACC,
    "ACC.f32": ACC,
    "Shift.up": SHIFT_UP,
    "Shift.down": SHIFT_DOWN,
    "Rotate.up": ROTATE_UP,
    "Rotate.down": ROTATE_DOWN,
    "Permute": PERMUTE,
    "Distribute": DISTRIBUTE,
    "Transpose.sg16": TRANSPOSE,
}


class Stream(NamedTuple):
    """A stream: direction "E" (eastward) or "W" (westward) and index in [0, n_streams)."""

    dir: str
    index: int

    def __str__(self) -> str:
        return f"{self.dir}{self.index}"

    def sid(self, cfg: ChipConfig) -> int:
        return (0 if self.dir == "E" else 1) * cfg.n_streams + self.index


def E(i: int) -> Stream:
    """Eastward stream i."""
    return Stream("E", int(i))


def W(i: int) -> Stream:
    """Westward stream i."""
    return Stream("W", int(i))


class ProgramError(ValueError):
    """A malformed program. The message names the queue, the instruction and, for text, line and column."""


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction: a mnemonic (e.g. "Read", "add.f32", "convert.i32.f32") and its operands.

    `loc` is the (line, column) it was parsed from, if any; it takes no part in equality.
    """

    mnemonic: str
    operands: tuple = ()
    loc: tuple[int, int] | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        sig = signature(self.mnemonic)
        parts = [_fmt(k, v) for k, v in zip(sig, self.operands)] if sig is not None else [str(o) for o in self.operands]
        return self.mnemonic + (" " + ", ".join(parts) if parts else "")


def _fmt(kind: str, v) -> str:
    if kind == "addr" and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return hex(v)
    return str(v) if isinstance(v, (int, np.integer, Stream)) else repr(v)


def vxm_parts(mnemonic: str) -> tuple[str, str, str] | None:
    """ "add.f32" -> ("add", "f32", "f32"); "convert.i32.f32" -> ("convert", "i32", "f32"); else None."""
    parts = mnemonic.split(".")
    if parts[0] not in VXM_OPS:
        return None
    if parts[0] == "convert":
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None
    if parts[0] == "requant":
        return (parts[0], parts[1], "i8") if len(parts) == 2 else None
    return (parts[0], parts[1], parts[1]) if len(parts) == 2 else None


def opcode(mnemonic: str) -> int | None:
    """The opcode of a non-VXM mnemonic (None for VXM ops and unknown names)."""
    return _OPCODE.get(mnemonic)


def signature(mnemonic: str) -> tuple[str, ...] | None:
    """Operand kinds of a mnemonic, or None if it is unknown."""
    if mnemonic in ICU_SIGS:
        return ICU_SIGS[mnemonic]
    if mnemonic in MEM_SIGS:
        return MEM_SIGS[mnemonic]
    if mnemonic in MXM_SIGS:
        return MXM_SIGS[mnemonic]
    if mnemonic in SXM_SIGS:
        return SXM_SIGS[mnemonic]
    p = vxm_parts(mnemonic)
    if p is None:
        return None
    return ("stream",) * (VXM_OPS[p[0]][1] + 1)


def unit_of(mnemonic: str) -> str | None:
    if mnemonic in ICU_SIGS:
        return "ICU"
    if mnemonic in MEM_SIGS:
        return "MEM"
    if mnemonic in MXM_SIGS:
        return "MXM"
    if mnemonic in SXM_SIGS:
        return "SXM"
    if vxm_parts(mnemonic) is not None:
        return "VXM"
    return None


# --------------------------------------------------------------------------- queues
def occupancy(mnemonic: str) -> int:
    """Cycles an instruction occupies its queue: 2 for `ABC.f16` (an fp16 sub-op takes the plane two cycles: the
    fp16 rate is 1/4 of int8's, P22), 1 for every other unit instruction."""
    return 2 if mnemonic == "ABC.f16" else 1


def queue_names(cfg: ChipConfig) -> tuple[str, ...]:
    """ICU queue names in array order: one per MEM slice ("MEM.W43".."MEM.E43"), one per VXM ALU ("VXM.0".."VXM.15"),
    three per MXM plane ("MXM.0.W", "MXM.0.A", "MXM.0.C", ...: weights, activations, accumulators), then one per SXM
    unit ("SXM.W.0", ..., "SXM.E.3")."""
    return (
        tuple(f"MEM.{n}" for n in cfg.mem_names)
        + tuple(f"VXM.{i}" for i in range(cfg.vxm_alus))
        + tuple(f"MXM.{p}.{r}" for p in range(cfg.n_planes) for r in "WAC")
        + tuple(f"SXM.{s}.{u}" for s in cfg.sxm_names for u in range(cfg.sxm_units))
    )


def queue_unit(name: str) -> str:
    return name.split(".", 1)[0]


# --------------------------------------------------------------------------- programs
@dataclasses.dataclass(frozen=True)
class Program:
    """Per-queue instruction lists: `{queue name: (Instruction, ...)}`. Queues not named are empty."""

    queues: dict

    def __post_init__(self):
        object.__setattr__(self, "queues", {k: tuple(v) for k, v in self.queues.items()})

    def __eq__(self, other) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        strip = lambda q: {k: v for k, v in q.items() if v}  # noqa: E731
        return strip(self.queues) == strip(other.queues)

    def __hash__(self):
        return hash(tuple(sorted((k, v) for k, v in self.queues.items() if v)))

    @property
    def n_instructions(self) -> int:
        return sum(len(v) for v in self.queues.values())


def _err(queue: str, idx: int, ins: Instruction | None, msg: str) -> ProgramError:
    where = f"{queue}[{idx}]"
    if ins is not None and ins.loc is not None:
        where = f"line {ins.loc[0]}, col {ins.loc[1]} ({where})"
    text = f" `{ins}`" if ins is not None else ""
    return ProgramError(f"{where}{text}: {msg}")


def _check_stream(cfg: ChipConfig, v, width: int, what: str) -> str | None:
    if not isinstance(v, Stream) or v.dir not in ("E", "W") or type(v.index) is not int:
        return f"{what} must be a stream like E3 or W0, got {v!r}"
    if not 0 <= v.index < cfg.n_streams or v.index + width > cfg.n_streams:
        span = f"{v}..{v.dir}{v.index + width - 1}" if width > 1 else str(v)
        return (
            f"{what} {span} out of range ({cfg.name} has {cfg.n_streams} streams per direction, 0..{cfg.n_streams - 1})"
        )
    if cfg.group_aligned and v.index % width:
        return f"{what} {v} is a {width}-stream group and must start at a multiple of {width}"
    return None


def validate(cfg: ChipConfig, program: Program) -> None:
    """Raise ProgramError naming the queue, instruction (and line, col) of the first problem found."""
    names = set(queue_names(cfg))
    for q, instrs in program.queues.items():
        if q not in names:
            ex = ", ".join(sorted(names)[:3])
            raise ProgramError(f"unknown queue {q!r} for config {cfg.name!r} (queues look like {ex}, ...)")
        last = None  # (mnemonic, address) of the most recent unit instruction, for Repeat
        for i, ins in enumerate(instrs):
            msg = _check_instruction(cfg, q, ins, last)
            if msg:
                raise _err(q, i, ins, msg)
            m = ins.mnemonic
            if unit_of(m) != "ICU":
                last = [m, ins.operands[0] if opcode(m) in STRIDED else None, ins.operands]
            elif m == "Repeat" and last is not None and last[1] is not None:
                last[1] += ins.operands[0] * ins.operands[2]


def _stride_limit(cfg: ChipConfig, ins_mnemonic: str, operands) -> tuple[int, str]:
    """(exclusive upper bound, what) of a strided field: MEM address, LW row, ACC row."""
    if ins_mnemonic == "LW":
        return cfg.n_lanes - operands[2] + 1, "weight-buffer row"
    if ins_mnemonic.startswith("ACC."):
        return cfg.mxm_acc_rows, "accumulator row"
    return cfg.mem_words, "address"


def _check_instruction(cfg: ChipConfig, queue: str, ins: Instruction, last) -> str | None:
    m = ins.mnemonic
    sig = signature(m)
    if sig is None:
        return f"unknown opcode {m!r}"
    unit = queue_unit(queue)
    u = unit_of(m)
    if u != "ICU" and u != unit:
        return f"{m} is a {u} instruction and cannot run on a {unit} queue"
    if u == "MXM" and MXM_ROLE[m] != queue.rsplit(".", 1)[1]:
        role = {"W": "weights (.W)", "A": "activations (.A)", "C": "accumulators (.C)"}[MXM_ROLE[m]]
        return f"{m} runs on a plane's {role} queue, not on {queue}"
    ops = ins.operands
    if m == "Repeat" and len(ops) == 2:
        return "internal: Repeat operands must be normalised to (n, d, stride)"
    if len(ops) != len(sig):
        return f"{m} takes {len(sig)} operand(s), got {len(ops)}"
    vx = vxm_parts(m)
    if vx is not None:
        op, t1, t2 = vx
        for t in (t1, t2):
            if t not in {d.name for d in DTYPES}:
                return f"unknown element type {t!r}"
        if t1 not in VXM_OPS[op][2]:
            return f"{op} does not take {t1} (takes {', '.join(VXM_OPS[op][2])})"
        widths = vxm_widths(op, t1, t2)
        for k, (v, w) in enumerate(zip(ops, widths)):
            e = _check_stream(cfg, v, w, "destination" if k == 0 else f"source {k}")
            if e:
                return e
        return None
    names = _operand_names(m, sig)
    for k, (kind, v) in enumerate(zip(sig, ops)):
        if kind in GROUP_WIDTH:
            e = _check_stream(cfg, v, GROUP_WIDTH[kind], names[k])
            if e:
                return e
            continue
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            return f"operand {k + 1} must be an integer, got {v!r}"
        bounds = {
            "row": (cfg.n_lanes, "weight-buffer row"),
            "acc": (cfg.mxm_acc_rows, "accumulator row"),
            "mode": (4, "ACC mode"),
            "half": (2, "fp16 half"),
            "lanes": (cfg.n_lanes, "lane count"),
        }
        if kind in bounds and not 0 <= v < bounds[kind][0]:
            return f"{bounds[kind][1]} {v} out of range (0..{bounds[kind][0] - 1} on {cfg.name})"
        if kind == "addr" and not 0 <= v < cfg.mem_words:
            return (
                f"address {v:#x} out of range (MEM slices of {cfg.name} hold {cfg.mem_words} words, "
                f"0..{cfg.mem_words - 1:#x})"
            )
        if kind == "count" and not 1 <= v < 2**31:
            return f"{m} count must be >= 1, got {v}"
    e = _check_unit_operands(cfg, queue, m, ops)
    if e:
        return e
    if m == "Repeat":
        if last is None:
            return "Repeat has no earlier unit instruction in this queue to repeat"
        n, d, stride = ops
        if stride and last[1] is None:
            return f"a Repeat stride applies only to Read/Write addresses, LW rows and ACC rows, not to {last[0]}"
        if d < occupancy(last[0]):
            return f"{last[0]} occupies its queue {occupancy(last[0])} cycles: the Repeat interval must be >= that"
        if last[1] is not None:
            end = last[1] + n * stride
            hi, what = _stride_limit(cfg, last[0], last[2])
            if not 0 <= end < hi:
                f = (lambda v: f"{v:#x}") if what == "address" else str
                return f"the last repetition reaches {what} {f(end)}, out of range (0..{f(hi - 1)})"
    return None


def _operand_names(m: str, sig: tuple[str, ...]) -> list[str]:
    """Words for each operand in error messages."""
    if m in ("Permute", "Distribute"):
        return ["destination", "source", "map"]
    if m in SXM_SIGS:
        return ["destination", "source", "lane count"]
    if m == "ABC.f16":
        return ["source", "half"]
    names = {"stream": "stream", "group2": "map", "group4": "destination", "group16": "group"}
    return [names.get(k, k) for k in sig]


def _check_unit_operands(cfg: ChipConfig, queue: str, m: str, ops) -> str | None:
    """MXM direction and span rules (docs/mxm.md)."""
    if m == "Transpose.sg16" and cfg.lanes_per_superlane != 16:
        return f"Transpose.sg16 needs 16-lane superlanes; {cfg.name} has {cfg.lanes_per_superlane}"
    if unit_of(m) != "MXM" or m == "IW":
        return None
    plane = int(queue.split(".")[1])
    d_in = "EW"[cfg.plane_in_dir(plane)]
    d_out = "EW"[1 - cfg.plane_in_dir(plane)]
    side = "west" if d_in == "W" else "east"
    if m == "LW":
        r, s, n = ops
        if s.index + n > cfg.n_streams:
            return f"LW takes streams {s}..{s.dir}{s.index + n - 1}: out of range ({cfg.n_streams} per direction)"
        if r + n > cfg.n_lanes:
            return f"LW writes weight-buffer rows {r}..{r + n - 1}: out of range (0..{cfg.n_lanes - 1})"
        src = s
    elif m.startswith("ABC"):
        src = ops[0]
    else:
        if ops[2].dir != d_out:
            return f"plane {plane} ({side}) emits on {'eastward' if d_out == 'E' else 'westward'} streams, not {ops[2]}"
        return None
    if src.dir != d_in:
        return f"plane {plane} ({side}) takes {'eastward' if d_in == 'E' else 'westward'} streams, not {src}"
    return None


def vxm_widths(op: str, t1: str, t2: str) -> tuple[int, ...]:
    """Stream-group width of (destination, sources...) of a VXM op."""
    w1, w2 = dtype_by_name(t1).width, dtype_by_name(t2).width
    if op == "convert":
        return (w2, w1)
    if op == "requant":
        return (1, 4, 4)
    return (w1,) * (VXM_OPS[op][1] + 1)


def encode_instruction(cfg: ChipConfig, ins: Instruction) -> list[int]:
    m, ops = ins.mnemonic, ins.operands
    row = [0] * N_FIELDS
    vx = vxm_parts(m)
    if vx is not None:
        op, t1, t2 = vx
        row[0] = VXM_BASE + VXM_OPS[op][0]
        row[1], row[2] = dtype_by_name(t1).code, dtype_by_name(t2).code
        for k, s in enumerate(ops):
            row[3 + k] = s.sid(cfg)
        return row
    row[0] = _OPCODE[m]
    sid = lambda v: v.sid(cfg) if isinstance(v, Stream) else int(v)  # noqa: E731
    if m.startswith("ABC."):
        h = ops[1] if len(ops) > 1 else 0
        row[2], row[3], row[4] = sid(ops[0]), h, dtype_by_name(m.split(".")[1]).code
        return row
    if m.startswith("ACC."):
        row[1], row[2], row[3], row[4] = ops[0], sid(ops[2]), ops[1], dtype_by_name(m.split(".")[1]).code
        return row
    if m in SXM_SIGS:
        for k, v in enumerate(ops):
            row[2 + k] = sid(v)
        return row
    if m in ("Gather", "Scatter"):
        row[2], row[3] = ops[0].sid(cfg), ops[1].sid(cfg)
        return row
    for k, v in enumerate(ops):
        row[1 + k] = v.sid(cfg) if isinstance(v, Stream) else int(v)
    return row


MIN_LENGTH = 64
"""Smallest size class: small programs share one compiled simulator (a row of padding costs nothing per cycle)."""


def size_class(n: int) -> int:
    """Padded queue length: the next power of two >= max(n + 1, MIN_LENGTH) (one HALT always follows)."""
    L = MIN_LENGTH
    while L < n + 1:
        L *= 2
    return L


def encode(cfg: ChipConfig, program: Program, length: int | None = None) -> np.ndarray:
    """Validate and encode a program as `int32 [n_queues, L, N_FIELDS]` (HALT-padded)."""
    validate(cfg, program)
    names = queue_names(cfg)
    longest = max((len(v) for v in program.queues.values()), default=0)
    L = size_class(longest) if length is None else length
    if L < longest + 1 or L & (L - 1):
        raise ProgramError(
            f"a queue holds {longest} instructions; the requested length {L} must be a power of two > {longest}"
        )
    arr = np.zeros((len(names), L, N_FIELDS), np.int32)
    for qi, name in enumerate(names):
        for i, ins in enumerate(program.queues.get(name, ())):
            arr[qi, i] = encode_instruction(cfg, ins)
    return arr


# --------------------------------------------------------------------------- decoding (binary -> Program)
_MNEMONIC = {v: k for k, v in _OPCODE.items() if not k.startswith(("ABC.", "ACC."))}
_VXM_BY_INDEX = {v[0]: k for k, v in VXM_OPS.items()}


def _stream_of(cfg: ChipConfig, sid: int, field: int) -> Stream:
    S = cfg.n_streams
    if not 0 <= sid < 2 * S:
        raise ProgramError(f"field {field} holds stream id {sid}, outside 0..{2 * S - 1} for {cfg.name}")
    return Stream("EW"[sid // S], sid % S)


def _dtype_name(code: int, field: int) -> str:
    try:
        return dtype_by_code(code).name
    except (KeyError, ValueError):
        raise ProgramError(f"field {field} holds element type code {code}, which is not an ISA type") from None


def decode_row(cfg: ChipConfig, row) -> Instruction:
    """The instruction of one encoded row (int [N_FIELDS]): the inverse of `encode_instruction`.

    Raises ProgramError for an unknown opcode, a bad element type code or stream id, or a non-zero field the
    instruction does not use (so that `encode_instruction(cfg, decode_row(cfg, r)) == r` for every accepted r).
    A HALT row (opcode 0) decodes to Instruction("HALT"), which is not a program instruction.
    """
    r = [int(x) for x in np.asarray(row).reshape(-1)]
    if len(r) != N_FIELDS:
        raise ProgramError(f"an encoded instruction has {N_FIELDS} fields, got {len(r)}")
    op = r[0]
    if op == HALT:
        used: tuple[int, ...] = ()
        ins = Instruction("HALT")
    elif op >= VXM_BASE:
        name = _VXM_BY_INDEX.get(op - VXM_BASE)
        if name is None:
            raise ProgramError(f"unknown opcode {op}")
        t1, t2 = _dtype_name(r[1], 1), _dtype_name(r[2], 2)
        m = f"convert.{t1}.{t2}" if name == "convert" else f"{name}.{t1}"
        n = VXM_OPS[name][1] + 1
        ins = Instruction(m, tuple(_stream_of(cfg, r[3 + k], 3 + k) for k in range(n)))
        used = (1, 2, *range(3, 3 + n))
        if name != "convert" and (t2 != (t1 if name != "requant" else "i8")):
            raise ProgramError(f"field 2 holds element type {t2}, but {m} needs {t1 if name != 'requant' else 'i8'}")
    elif op == ABC:
        t = _dtype_name(r[4], 4)
        if t not in ("i8", "f16"):
            raise ProgramError(f"field 4 holds element type {t}; ABC takes i8 or f16")
        m = f"ABC.{t}"
        ins = Instruction(m, (_stream_of(cfg, r[2], 2),) + ((r[3],) if t == "f16" else ()))
        used = (2, 3, 4) if t == "f16" else (2, 4)
    elif op == ACC:
        t = _dtype_name(r[4], 4)
        if t not in ("i32", "f32"):
            raise ProgramError(f"field 4 holds element type {t}; ACC takes i32 or f32")
        ins = Instruction(f"ACC.{t}", (r[1], r[3], _stream_of(cfg, r[2], 2)))
        used = (1, 2, 3, 4)
    elif op in _MNEMONIC:
        m = _MNEMONIC[op]
        sig = signature(m)
        first = 2 if (m in SXM_SIGS or m in ("Gather", "Scatter")) else 1
        ops = tuple(
            r[first + k] if kind in INT_KINDS else _stream_of(cfg, r[first + k], first + k)
            for k, kind in enumerate(sig)
        )
        ins = Instruction(m, ops)
        used = tuple(range(first, first + len(sig)))
    else:
        raise ProgramError(f"unknown opcode {op}")
    for k in range(1, N_FIELDS):
        if k not in used and r[k] != 0:
            raise ProgramError(f"{ins.mnemonic}: field {k} is {r[k]}, but the instruction does not use it (must be 0)")
    return ins


def decode(cfg: ChipConfig, arr) -> Program:
    """The program of an encoded array int32 [n_queues, L, N_FIELDS]: the inverse of `encode`.

    Each queue ends at its first HALT row; every row after it must be zero (HALT padding). The result is
    validated (`validate`). Errors name the queue and the row.
    """
    arr = np.asarray(arr)
    names = queue_names(cfg)
    if arr.ndim != 3 or arr.shape[0] != len(names) or arr.shape[2] != N_FIELDS:
        raise ProgramError(
            f"an encoded program must be [{len(names)}, L, {N_FIELDS}] for {cfg.name}, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise ProgramError(f"an encoded program must hold integers, got {arr.dtype}")
    queues = {}
    for qi, name in enumerate(names):
        halts = np.nonzero(arr[qi, :, 0] == HALT)[0]
        if not len(halts):
            raise ProgramError(f"queue {name}: no HALT row (each queue must end with one)")
        end = int(halts[0])
        if arr[qi, end:].any():
            bad = end + int(np.nonzero(arr[qi, end:].any(-1))[0][0])
            raise ProgramError(f"queue {name}, row {bad}: a non-zero row after the queue's HALT at row {end}")
        body = []
        for i in range(end):
            try:
                body.append(decode_row(cfg, arr[qi, i]))
            except ProgramError as e:
                raise ProgramError(f"queue {name}, row {i}: {e}") from None
        if body:
            queues[name] = tuple(body)
    prog = Program(queues)
    validate(cfg, prog)
    return prog
