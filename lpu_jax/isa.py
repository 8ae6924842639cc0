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
  VXM   op.T D, A[, B[, C]]      [32 + op, T, T2, D, A, B, C]   (T, T2: dtype codes, dtypes.DTYPES)
  opcode 0 is HALT: the padding after a queue's last instruction.
A program is `int32 [n_queues, L, N_FIELDS]`, L a power of two >= 8 (a size class: programs of one class share
one compiled simulator).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .config import ChipConfig
from .dtypes import DTYPES, dtype_by_name

__all__ = [
    "E",
    "W",
    "Instruction",
    "Program",
    "ProgramError",
    "Stream",
    "encode",
    "queue_names",
]

N_FIELDS = 8

# --------------------------------------------------------------------------- opcodes (stable numbers)
HALT, NOP, REPEAT, SYNC, NOTIFY = 0, 1, 2, 3, 4
READ, WRITE, GATHER, SCATTER = 16, 17, 18, 19
VXM_BASE = 32

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


# Operand kinds: "addr" (MEM address), "count" (>= 1), "int" (any int), "stream", "group2" (2-stream group).
ICU_SIGS = {"NOP": ("count",), "Repeat": ("count", "count", "int"), "Sync": (), "Notify": ()}
MEM_SIGS = {
    "Read": ("addr", "stream"),
    "Write": ("addr", "stream"),
    "Gather": ("stream", "group2"),
    "Scatter": ("stream", "group2"),
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


def signature(mnemonic: str) -> tuple[str, ...] | None:
    """Operand kinds of a mnemonic, or None if it is unknown."""
    if mnemonic in ICU_SIGS:
        return ICU_SIGS[mnemonic]
    if mnemonic in MEM_SIGS:
        return MEM_SIGS[mnemonic]
    p = vxm_parts(mnemonic)
    if p is None:
        return None
    return ("stream",) * (VXM_OPS[p[0]][1] + 1)


def unit_of(mnemonic: str) -> str | None:
    if mnemonic in ICU_SIGS:
        return "ICU"
    if mnemonic in MEM_SIGS:
        return "MEM"
    if vxm_parts(mnemonic) is not None:
        return "VXM"
    return None


# --------------------------------------------------------------------------- queues
def queue_names(cfg: ChipConfig) -> tuple[str, ...]:
    """ICU queue names in array order: one per MEM slice ("MEM.W43".."MEM.E43"), then one per VXM ALU."""
    return tuple(f"MEM.{n}" for n in cfg.mem_names) + tuple(f"VXM.{i}" for i in range(cfg.vxm_alus))


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
        unit = queue_unit(q)
        last = None  # (mnemonic, address) of the most recent unit instruction, for Repeat
        for i, ins in enumerate(instrs):
            msg = _check_instruction(cfg, unit, ins, last)
            if msg:
                raise _err(q, i, ins, msg)
            m = ins.mnemonic
            if unit_of(m) != "ICU":
                last = [m, ins.operands[0] if m in ("Read", "Write") else None]
            elif m == "Repeat" and last is not None and last[1] is not None:
                last[1] += ins.operands[0] * ins.operands[2]


def _check_instruction(cfg: ChipConfig, unit: str, ins: Instruction, last) -> str | None:
    m = ins.mnemonic
    sig = signature(m)
    if sig is None:
        return f"unknown opcode {m!r}"
    u = unit_of(m)
    if u != "ICU" and u != unit:
        return f"{m} is a {u} instruction and cannot run on a {unit} queue"
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
    for k, (kind, v) in enumerate(zip(sig, ops)):
        if kind in ("stream", "group2"):
            e = _check_stream(cfg, v, 2 if kind == "group2" else 1, "map" if kind == "group2" else "stream")
            if e:
                return e
            continue
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            return f"operand {k + 1} must be an integer, got {v!r}"
        if kind == "addr" and not 0 <= v < cfg.mem_words:
            return (
                f"address {v:#x} out of range (MEM slices of {cfg.name} hold {cfg.mem_words} words, "
                f"0..{cfg.mem_words - 1:#x})"
            )
        if kind == "count" and not 1 <= v < 2**31:
            return f"{m} count must be >= 1, got {v}"
    if m == "Repeat":
        if last is None:
            return "Repeat has no earlier unit instruction in this queue to repeat"
        n, _, stride = ops
        if stride and last[1] is None:
            return f"a Repeat stride applies only to Read/Write addresses, not to {last[0]}"
        if last[1] is not None:
            end = last[1] + n * stride
            if not 0 <= end < cfg.mem_words:
                return f"the last repetition reaches address {end:#x}, out of range (0..{cfg.mem_words - 1:#x})"
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
    if m in ("Gather", "Scatter"):
        row[2], row[3] = ops[0].sid(cfg), ops[1].sid(cfg)
        return row
    for k, v in enumerate(ops):
        row[1 + k] = v.sid(cfg) if isinstance(v, Stream) else int(v)
    return row


def size_class(n: int) -> int:
    """Padded queue length: the next power of two >= max(n + 1, 8) (one HALT always follows)."""
    L = 8
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
