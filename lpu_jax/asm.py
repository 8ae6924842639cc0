"""Text assembly for LPU programs: `parse` text into an `isa.Program`, `format_program` back to canonical text.

Grammar (EBNF; docs/assembly.md has the long form)::

    file        = { line "\\n" } ;
    line        = [ directive | instruction ] [ comment ] ;
    comment     = "#" { any character } ;                 (* to the end of the line *)
    directive   = ".queue" QUEUE ;
    instruction = MNEMONIC [ operand { "," operand } ] ;
    operand     = INT | STREAM ;
    INT         = [ "-" | "+" ] ( decimal | "0x" hex ) ;
    STREAM      = ( "E" | "W" ) decimal ;                 (* eastward / westward stream index *)
    QUEUE       = "MEM." ( "W" | "E" ) number | "VXM." number | "MXM." number "." ( "W" | "A" | "C" )
                | "SXM." ( "W" | "E" | "S" number ) "." number ;
    MNEMONIC    = "NOP" | "Repeat" | "Sync" | "Notify" | "Read" | "Write" | "Gather" | "Scatter"
                | "LW" | "IW" | "ABC.i8" | "ABC.f16" | "ACC.i32" | "ACC.f32"
                | "Shift.up" | "Shift.down" | "Rotate.up" | "Rotate.down" | "Permute" | "Distribute"
                | "Transpose.sg16" | OP "." TYPE | "convert." TYPE "." TYPE | "requant.i32" ;

Whitespace (spaces, tabs) is free between tokens; blank and comment-only lines are allowed. Mnemonics and
stream letters are case-sensitive. `.queue NAME` sends the following instructions to queue NAME; naming a queue
again continues it. `Repeat n, d` (two operands) means stride 0 and is stored as `(n, d, 0)`.

Every parsed `Instruction` carries `loc=(line, col)` of its mnemonic (both 1-based; a tab counts as one column),
so `isa.validate` errors point back into the text. Syntax errors raise `isa.ProgramError("line L, col C: ...")`
with C at the offending token (for too few operands: the mnemonic).

`format_program` prints the canonical form: per non-empty queue, in the program's dict order, a `.queue NAME`
line then one instruction per line indented by 4 spaces (`str(Instruction)`: addresses in hex, streams like E5,
`Repeat` always with 3 operands); a blank line between queues; every line ends with a newline. Comments are not
kept. Round trips: `parse(format_program(p)) == p` for every valid program, and `format_program(parse(t)) == t`
for canonical text t.
"""

from __future__ import annotations

import re

from . import isa
from .config import ChipConfig
from .dtypes import DTYPES

__all__ = ["format_program", "parse"]

_INT_RE = re.compile(r"[+-]?(?:0x[0-9A-Fa-f]+|[0-9]+)")
_STREAM_RE = re.compile(r"([EW])([0-9]+)")
_N = r"(?:0|[1-9][0-9]*)"
_QUEUE_RE = re.compile(rf"MEM\.[EW]{_N}|VXM\.{_N}|MXM\.{_N}\.[WAC]|SXM\.(?:W|E|S{_N})\.{_N}")
_DTYPE_NAMES = tuple(d.name for d in DTYPES)
_DIRECTIVES = (".queue",)
_INT_KINDS = {k: "an integer" for k in isa.INT_KINDS} | {"addr": "an address", "count": "a count"}


def _mnemonic_problem(m: str) -> str | None:
    """Why `m` is not a mnemonic of the ISA (None if it is one)."""
    if isa.signature(m) is not None:
        vx = isa.vxm_parts(m)
        if vx is None:
            return None
        op, t1, t2 = vx
        for t in (t1, t2):
            if t not in _DTYPE_NAMES:
                return f"unknown mnemonic {m!r}: unknown element type {t!r} (known: {', '.join(_DTYPE_NAMES)})"
        allowed = isa.VXM_OPS[op][2]
        if t1 not in allowed:
            return f"unknown mnemonic {m!r}: {op} does not take {t1} (takes {', '.join(allowed)})"
        return None
    head = m.split(".", 1)[0]
    if head in isa.VXM_OPS:
        form = {"convert": "convert.FROM.TO", "requant": "requant.i32"}.get(head, f"{head}.TYPE")
        return f"unknown mnemonic {m!r}: write it as {form}"
    low = {k.lower(): k for k in (*isa.ICU_SIGS, *isa.MEM_SIGS, *isa.MXM_SIGS, *isa.SXM_SIGS)}
    fam = [k for k in (*isa.MXM_SIGS, *isa.SXM_SIGS) if k.split(".")[0] == head]
    if fam and m not in fam:
        return f"unknown mnemonic {m!r} (the {head} forms are {', '.join(fam)})"
    hint = f" (mnemonics are case-sensitive: did you mean {low[m.lower()]}?)" if m.lower() in low else ""
    return f"unknown mnemonic {m!r}{hint}"


def _tokens(s: str):
    """Split one comment-stripped line into (text, col) tokens: "," alone, else maximal runs of other non-space."""
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\f\v":
            i += 1
        elif c == ",":
            out.append((",", i + 1))
            i += 1
        else:
            j = i
            while j < n and s[j] not in " \t\r\f\v,":
                j += 1
            out.append((s[i:j], i + 1))
            i = j
    return out


def _operand(tok: str, line: int, col: int):
    if _INT_RE.fullmatch(tok):
        return int(tok, 0) if "x" in tok else int(tok, 10)
    if tok[0] in "+-0123456789":
        raise _syntax(line, col, f"bad integer {tok!r} (write decimal like 42 or hex like 0x2a)")
    m = _STREAM_RE.fullmatch(tok)
    if m:
        return isa.Stream(m.group(1), int(m.group(2)))
    if tok[0] in "EW":
        raise _syntax(line, col, f"bad stream token {tok!r} (write E or W then a decimal index, like E3 or W0)")
    raise _syntax(line, col, f"bad operand {tok!r}: expected an integer or a stream like E3 or W0")


def _syntax(line: int, col: int, msg: str) -> isa.ProgramError:
    return isa.ProgramError(f"line {line}, col {col}: {msg}")


def parse(text: str, cfg: ChipConfig | None = None) -> isa.Program:
    """Parse assembly text into a Program (see the module docstring for the grammar).

    Every Instruction gets `loc=(line, col)` of its mnemonic. Syntax errors raise `isa.ProgramError` whose
    message starts "line L, col C:". With `cfg`, queue names are checked against `isa.queue_names(cfg)` (an
    unknown queue is reported at its `.queue` directive) and then `isa.validate(cfg, program)` runs.
    """
    queues: dict[str, list[isa.Instruction]] = {}
    known = set(isa.queue_names(cfg)) if cfg is not None else None
    current: str | None = None
    for lineno, raw in enumerate(text.split("\n"), start=1):
        toks = _tokens(raw.split("#", 1)[0])
        if not toks:
            continue
        head, hcol = toks[0]
        if head == ",":
            raise _syntax(lineno, hcol, "unexpected ',' at the start of a line")
        if head.startswith("."):
            if head not in _DIRECTIVES:
                raise _syntax(lineno, hcol, f"unknown directive {head!r} (known: {', '.join(_DIRECTIVES)})")
            if len(toks) < 2:
                raise _syntax(lineno, hcol, ".queue needs a queue name, like MEM.W0 or VXM.0")
            name, ncol = toks[1]
            if not _QUEUE_RE.fullmatch(name):
                raise _syntax(
                    lineno, ncol, f"bad queue name {name!r} (queues look like MEM.W17, MEM.E0, VXM.3, MXM.0.W, SXM.E.1)"
                )
            if known is not None and name not in known:
                ex = ", ".join(isa.queue_names(cfg)[:3])
                raise _syntax(
                    lineno, ncol, f"unknown queue {name!r} for config {cfg.name!r} (queues look like {ex}, ...)"
                )
            if len(toks) > 2:
                raise _syntax(lineno, toks[2][1], f"unexpected {toks[2][0]!r} after the queue name")
            current = name
            queues.setdefault(name, [])
            continue
        problem = _mnemonic_problem(head)
        if problem:
            raise _syntax(lineno, hcol, problem)
        if current is None:
            raise _syntax(lineno, hcol, f"instruction {head} comes before any .queue directive")
        # operands: tok ("," tok)*
        ops, cols = [], []
        rest = toks[1:]
        k = 0
        while k < len(rest):
            tok, col = rest[k]
            if tok == ",":
                raise _syntax(lineno, col, "expected an operand, got ','")
            ops.append(_operand(tok, lineno, col))
            cols.append(col)
            k += 1
            if k < len(rest):
                sep, scol = rest[k]
                if sep != ",":
                    raise _syntax(lineno, scol, f"missing ',' before {sep!r}")
                k += 1
                if k == len(rest):
                    raise _syntax(lineno, scol, "expected an operand after ','")
        sig = isa.signature(head)
        counts = (2, 3) if head == "Repeat" else (len(sig),)
        if len(ops) not in counts:
            want = " or ".join(map(str, counts))
            where = cols[counts[-1]] if len(ops) > counts[-1] else hcol
            raise _syntax(lineno, where, f"{head} takes {want} operand(s), got {len(ops)}")
        if head == "Repeat" and len(ops) == 2:
            ops.append(0)
        for j, (kind, v, col) in enumerate(zip(sig, ops, cols)):
            if kind in _INT_KINDS and not isinstance(v, int):
                raise _syntax(lineno, col, f"operand {j + 1} of {head} must be {_INT_KINDS[kind]}, got stream {v}")
            if kind not in _INT_KINDS and isinstance(v, int):
                raise _syntax(lineno, col, f"operand {j + 1} of {head} must be a stream like E3 or W0, got integer {v}")
        queues[current].append(isa.Instruction(head, tuple(ops), loc=(lineno, hcol)))
    program = isa.Program(queues)
    if cfg is not None:
        isa.validate(cfg, program)
    return program


def _canonical(ins: isa.Instruction) -> isa.Instruction:
    if ins.mnemonic == "Repeat" and len(ins.operands) == 2:
        return isa.Instruction("Repeat", (*ins.operands, 0))
    return ins


def format_program(program: isa.Program) -> str:
    """Canonical text of a program (comments and `loc` are not kept; empty queues are left out)."""
    blocks = []
    for name, instrs in program.queues.items():
        if instrs:
            lines = [f".queue {name}"] + [f"    {_canonical(ins)}" for ins in instrs]
            blocks.append("".join(line + "\n" for line in lines))
    return "\n".join(blocks)
