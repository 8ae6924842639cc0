"""Tests for lpu_jax.asm: parsing, canonical printing, round trips and error locations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs

from lpu_jax import isa
from lpu_jax.asm import format_program, parse
from lpu_jax.config import groqchip1, tiny
from lpu_jax.isa import E, Instruction, Program, ProgramError, W

TINY = tiny()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- a hand-written program
HAND = """\
# A small program for tiny(): comments, blank lines, hex and decimal integers.

.queue MEM.W0          # first queue
    Read 0x10, E0      # load address 16 onto eastward stream 0
    Repeat 3, 1        # two operands: stride 0
  Write 20,W1

    NOP 5
.queue VXM.0
\tadd.f32 E4, E0, E4
    convert.i8.f32  W0 , E1
requant.i32 E0,E4,W0#no space before the comment
   # comment-only line, indented
.queue MEM.W0   # named again: continues the queue
    Repeat 2, 1, -0x3
    Gather E3, W2
    Sync
    Notify
    NOP +0x7fffffff
"""

HAND_PROGRAM = Program(
    {
        "MEM.W0": (
            Instruction("Read", (16, E(0))),
            Instruction("Repeat", (3, 1, 0)),
            Instruction("Write", (20, W(1))),
            Instruction("NOP", (5,)),
            Instruction("Repeat", (2, 1, -3)),
            Instruction("Gather", (E(3), W(2))),
            Instruction("Sync"),
            Instruction("Notify"),
            Instruction("NOP", (2**31 - 1,)),
        ),
        "VXM.0": (
            Instruction("add.f32", (E(4), E(0), E(4))),
            Instruction("convert.i8.f32", (W(0), E(1))),
            Instruction("requant.i32", (E(0), E(4), W(0))),
        ),
    }
)

HAND_CANONICAL = """\
.queue MEM.W0
    Read 0x10, E0
    Repeat 3, 1, 0
    Write 0x14, W1
    NOP 5
    Repeat 2, 1, -3
    Gather E3, W2
    Sync
    Notify
    NOP 2147483647

.queue VXM.0
    add.f32 E4, E0, E4
    convert.i8.f32 W0, E1
    requant.i32 E0, E4, W0
"""


def test_hand_written_program_parses_to_the_python_program():
    p = parse(HAND)
    assert p == HAND_PROGRAM
    assert list(p.queues) == ["MEM.W0", "VXM.0"]
    assert parse(HAND, TINY) == HAND_PROGRAM  # and it is valid for tiny()


def test_hand_written_program_locations():
    p = parse(HAND)
    locs = {q: [ins.loc for ins in v] for q, v in p.queues.items()}
    # counted by hand from HAND: line numbers are 1-based, col is the mnemonic's first character
    assert locs["MEM.W0"] == [(4, 5), (5, 5), (6, 3), (8, 5), (15, 5), (16, 5), (17, 5), (18, 5), (19, 5)]
    assert locs["VXM.0"] == [(10, 2), (11, 5), (12, 1)]


def test_canonical_text():
    assert format_program(HAND_PROGRAM) == HAND_CANONICAL
    assert format_program(parse(HAND)) == HAND_CANONICAL
    assert parse(HAND_CANONICAL) == HAND_PROGRAM
    assert format_program(parse(HAND_CANONICAL)) == HAND_CANONICAL


def test_format_details():
    assert format_program(Program({})) == ""
    assert parse("") == Program({})
    assert parse("\n\n  # nothing\n") == Program({})
    # empty queues are left out; a two-operand Repeat (not normalised) still prints three operands
    p = Program({"VXM.1": (), "MEM.E0": (Instruction("Read", (0, E(1))), Instruction("Repeat", (2, 3)))})
    assert format_program(p) == ".queue MEM.E0\n    Read 0x0, E1\n    Repeat 2, 3, 0\n"
    # an empty `.queue` section parses to an empty queue, which compares equal to no queue
    assert parse(".queue VXM.2\n") == Program({})
    assert parse(".queue VXM.2\n").queues == {"VXM.2": ()}


def test_crlf_and_free_whitespace():
    text = ".queue\tMEM.E1\r\n\tRead\t1 ,\tE2\r\n  Repeat 1,1 , 1\r\n"
    p = parse(text, TINY)
    assert p == Program({"MEM.E1": (Instruction("Read", (1, E(2))), Instruction("Repeat", (1, 1, 1)))})
    assert [i.loc for i in p.queues["MEM.E1"]] == [(2, 2), (3, 3)]


def test_ints_in_all_forms():
    p = parse(".queue MEM.E0\n NOP 0x1F\n NOP +12\n NOP 007\n Repeat 1, 0xa, -0\n Repeat 1, 1, -0x0\n")
    assert [i.operands for i in p.queues["MEM.E0"]] == [(31,), (12,), (7,), (1, 10, 0), (1, 1, 0)]


def test_syntax_only_without_cfg():
    # out-of-range values are a matter for validate(): parse without a config accepts them
    text = ".queue MEM.W99\n    Read 0x1000, E100\n    add.f32 E1, E2, E3\n"
    p = parse(text)
    assert p.queues["MEM.W99"][0] == Instruction("Read", (0x1000, E(100)))
    with pytest.raises(ProgramError):
        parse(text, TINY)


# --------------------------------------------------------------------------- round trips on random programs
@FAST
@given(programs())
def test_random_programs_are_valid_and_round_trip(p):
    isa.validate(TINY, p)
    text = format_program(p)
    q = parse(text)
    assert q == p
    assert parse(text, TINY) == p
    assert format_program(q) == text
    # locations point at each mnemonic of the canonical text
    lines = text.split("\n")
    for instrs in q.queues.values():
        for ins in instrs:
            line, col = ins.loc
            assert col == 5 and lines[line - 1][4:].split(" ", 1)[0] == ins.mnemonic


@settings(max_examples=30, deadline=None)
@given(programs(groqchip1(), max_queues=6, max_len=5))
def test_random_groqchip1_programs_round_trip(p):
    cfg = groqchip1()
    isa.validate(cfg, p)
    assert parse(format_program(p), cfg) == p


def _int_text(v: int, style: int) -> str:
    sign = "-" if v < 0 else ""
    if style == 0:
        return str(v)
    if style == 1:
        return sign + hex(abs(v))
    if style == 2:
        return (sign or "+") + str(abs(v))
    return sign + "00" + str(abs(v))


@st.composite
def noisy_texts(draw, p: Program):
    """A non-canonical text of `p` (random whitespace, comments, int styles, split queues, 2-operand Repeat),
    with the expected loc of every instruction."""
    ws = st.sampled_from(["", " ", "  ", "\t", " \t "])
    ws1 = st.sampled_from([" ", "  ", "\t", " \t "])
    comment = st.sampled_from(["", "", "# c", "#", "  # x, y: E0 .queue"])
    first, second = [], []
    for q, instrs in p.queues.items():
        k = draw(st.integers(0, len(instrs)))
        first.append((q, instrs[:k]))
        second.append((q, instrs[k:]))
    lines: list[str] = []
    locs: dict[str, list] = {q: [] for q in p.queues}

    def junk():
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(ws) + draw(comment))

    for q, instrs in first + second:
        junk()
        lines.append(draw(ws) + ".queue" + draw(ws1) + q + draw(ws) + draw(comment))
        for ins in instrs:
            junk()
            ops = list(ins.operands)
            if ins.mnemonic == "Repeat" and ops[2] == 0 and draw(st.booleans()):
                ops = ops[:2]
            parts = [_int_text(o, draw(st.integers(0, 3))) if isinstance(o, int) else str(o) for o in ops]
            lead = draw(ws)
            body = ins.mnemonic
            if parts:
                body += draw(ws1) + "".join((draw(ws) + "," + draw(ws) if i else "") + t for i, t in enumerate(parts))
            lines.append(lead + body + draw(ws) + draw(comment))
            locs[q].append((len(lines), len(lead) + 1))
    junk()
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"])), locs


@FAST
@given(st.data())
def test_noisy_text_parses_to_the_same_program(data):
    p = data.draw(programs())
    text, locs = data.draw(noisy_texts(p))
    q = parse(text, TINY)
    assert q == p
    assert {k: [i.loc for i in v] for k, v in q.queues.items()} == locs
    assert format_program(q) == format_program(p)


# --------------------------------------------------------------------------- syntax errors
SYNTAX_ERRORS = [
    # (text, line, col, words expected in the message)
    (".queue MEM.W0\n    Raed 0x1, E0\n", 2, 5, ["unknown mnemonic", "'Raed'"]),
    (".queue MEM.W0\n\n  read 1, E0\n", 3, 3, ["unknown mnemonic", "case-sensitive", "Read"]),
    (".queue VXM.0\n    add.f64 E0, E0, E0\n", 2, 5, ["unknown mnemonic", "unknown element type 'f64'"]),
    (".queue VXM.0\n    and.f32 E0, E0, E0\n", 2, 5, ["unknown mnemonic", "and does not take f32"]),
    (".queue VXM.0\n    add E0, E0, E0\n", 2, 5, ["unknown mnemonic", "add.TYPE"]),
    (".queue MXM.1.A\n    ABC.i16 W0\n", 2, 5, ["unknown mnemonic 'ABC.i16'", "the ABC forms are ABC.i8, ABC.f16"]),
    (".queue MXM.1.W\n    lw 0, W0, 1\n", 2, 5, ["case-sensitive", "did you mean LW"]),
    (".queue MXM.1.X\n", 1, 8, ["bad queue name 'MXM.1.X'"]),
    (".queue VXM.0\n convert.i32 E0, E0\n", 2, 2, ["unknown mnemonic", "convert.FROM.TO"]),
    (".queue MEM.W0\n    Read 0x1g, E0\n", 2, 10, ["bad integer", "'0x1g'"]),
    (".queue MEM.W0\n    Read 12a, E0\n", 2, 10, ["bad integer", "'12a'"]),
    (".queue MEM.W0\n    Read -, E0\n", 2, 10, ["bad integer", "'-'"]),
    (".queue MEM.W0\n    Read 0X10, E0\n", 2, 10, ["bad integer", "'0X10'"]),
    (".queue MEM.W0\n    Read 1, E3a\n", 2, 13, ["bad stream token", "'E3a'"]),
    (".queue MEM.W0\n    Read 1, W-1\n", 2, 13, ["bad stream token", "'W-1'"]),
    (".queue MEM.W0\n    Read 1, e3\n", 2, 13, ["bad operand", "'e3'"]),
    (".queue MEM.W0\n    Read 1, E0, E1\n", 2, 17, ["Read takes 2 operand(s), got 3"]),
    (".queue MEM.W0\n    Read 1\n", 2, 5, ["Read takes 2 operand(s), got 1"]),
    (".queue MEM.W0\n    Sync 1\n", 2, 10, ["Sync takes 0 operand(s), got 1"]),
    (".queue MEM.W0\n    Read 1, E0\n    Repeat 1\n", 3, 5, ["Repeat takes 2 or 3 operand(s), got 1"]),
    (".queue MEM.W0\n Read 1, E0\n Repeat 1, 2, 3, 4\n", 3, 18, ["Repeat takes 2 or 3 operand(s), got 4"]),
    (".queue MEM.W0\n    Read 1 E0\n", 2, 12, ["missing ','", "'E0'"]),
    (".queue MEM.W0\n    Read 1,\n", 2, 11, ["expected an operand after ','"]),
    (".queue MEM.W0\n    Read 1,,E0\n", 2, 12, ["expected an operand, got ','"]),
    (".queue MEM.W0\n    Read , 1, E0\n", 2, 10, ["expected an operand, got ','"]),
    (".queue MEM.W0\n    , Read 1, E0\n", 2, 5, ["unexpected ','"]),
    (".queue MEM.W0\n    Read E0, 1\n", 2, 10, ["operand 1 of Read must be an address", "stream E0"]),
    (".queue MEM.W0\n    Gather E0, 2\n", 2, 16, ["operand 2 of Gather must be a stream", "integer 2"]),
    (".queue MEM.W0\n    NOP E1\n", 2, 9, ["operand 1 of NOP must be a count"]),
    (".queue VXM.0\n    add.i8 E0, 1, E2\n", 2, 16, ["operand 2 of add.i8 must be a stream"]),
    ("# header\n\n  NOP 1\n", 3, 3, ["before any .queue"]),
    (".qeueu MEM.W0\n", 1, 1, ["unknown directive", "'.qeueu'"]),
    ("\n  .queue\n", 2, 3, [".queue needs a queue name"]),
    (".queue FOO.1\n", 1, 8, ["bad queue name", "'FOO.1'"]),
    (".queue  mem.w0\n", 1, 9, ["bad queue name", "'mem.w0'"]),
    (".queue MEM.W01\n", 1, 8, ["bad queue name", "'MEM.W01'"]),
    (".queue MEM.W0 VXM.0\n", 1, 15, ["unexpected 'VXM.0' after the queue name"]),
]


@pytest.mark.parametrize("text,line,col,words", SYNTAX_ERRORS)
def test_syntax_errors(text, line, col, words):
    for cfg in (None, TINY):
        with pytest.raises(ProgramError) as ei:
            parse(text, cfg)
        msg = str(ei.value)
        assert msg.startswith(f"line {line}, col {col}: "), msg
        for w in words:
            assert w in msg, (w, msg)


# --------------------------------------------------------------------------- validation errors (with tiny())
VALIDATION_ERRORS = [
    # (text, line, col, words): col is the mnemonic's, or the queue name's for an unknown queue
    (".queue MEM.W0\n    Read 1, E16\n", 2, 5, ["(MEM.W0[0])", "stream E16 out of range", "16 streams"]),
    (".queue MEM.E1\n    Gather W7, E15\n", 2, 5, ["map E15", "out of range"]),
    (".queue VXM.3\n  mov.i32 E0, W14\n", 2, 3, ["(VXM.3[0])", "source 1 W14..W17 out of range"]),
    (".queue MEM.W0\n  NOP 1\n\n    Write 0x200, W0\n", 4, 5, ["(MEM.W0[1])", "address 0x200 out of range", "0x1ff"]),
    (".queue MEM.W0\n    Read -1, W0\n", 2, 5, ["address -0x1 out of range"]),
    (".queue MEM.W0\n    add.f32 E0, E0, E4\n", 2, 5, ["add.f32 is a VXM instruction", "cannot run on a MEM queue"]),
    (".queue VXM.1\n Read 0, E0\n", 2, 2, ["Read is a MEM instruction", "cannot run on a VXM queue"]),
    (".queue VXM.0\n    add.i16 E1, E2, E4\n", 2, 5, ["destination E1 is a 2-stream group", "multiple of 2"]),
    (
        ".queue VXM.0\n    convert.i8.f32 E4, E0\n    convert.i8.i32 W0, E1\n    add.f32 E0, W2, E0\n",
        4,
        5,
        ["(VXM.0[2])", "source 1 W2 is a 4-stream group", "multiple of 4"],
    ),
    (".queue MEM.W0\n    Gather E0, W1\n", 2, 5, ["map W1 is a 2-stream group"]),
    (".queue MEM.W0\n    NOP 3\n    Repeat 2, 1\n", 3, 5, ["(MEM.W0[1])", "Repeat has no earlier unit instruction"]),
    (".queue VXM.0\n    Repeat 2, 1\n", 2, 5, ["Repeat has no earlier unit instruction"]),
    (".queue MEM.W0\n    Read 0x1fc, E0\n    Repeat 2, 1, 2\n", 3, 5, ["last repetition reaches address 0x200"]),
    (".queue MEM.W0\n    Gather E0, W2\n    Repeat 2, 1, 1\n", 3, 5, ["stride applies only to Read/Write"]),
    (".queue MXM.0.W\n    LW 0, E8, 4\n", 2, 5, ["(MXM.0.W[0])", "plane 0 (west) takes westward streams, not E8"]),
    (".queue MXM.3.C\n    ACC.i32 0, 2, E4\n", 2, 5, ["plane 3 (east) emits on westward streams, not E4"]),
    (".queue MXM.1.A\n    ACC.f32 0, 2, E4\n", 2, 5, ["runs on a plane's accumulators (.C) queue"]),
    (".queue MXM.1.W\n    LW 30, W0, 4\n", 2, 5, ["weight-buffer rows 30..33: out of range (0..31)"]),
    (".queue MXM.1.A\n    ABC.f16 W2, 1\n    Repeat 3, 1\n", 3, 5, ["occupies its queue 2 cycles"]),
    (".queue MXM.1.C\n    ACC.i32 30, 1, E0\n    Repeat 3, 1, 1\n", 3, 5, ["reaches accumulator row 33"]),
    (".queue MXM.1.C\n    ACC.i32 0, 4, E0\n", 2, 5, ["ACC mode 4 out of range (0..3"]),
    (".queue SXM.W.0\n    Transpose.sg16 E0, W8\n", 2, 5, ["source W8..W23 out of range"]),
    (".queue SXM.E.1\n    Shift.down E0, W8, 32\n", 2, 5, ["lane count 32 out of range (0..31"]),
    (".queue SXM.E.0\n    ABC.i8 W0\n", 2, 5, ["ABC.i8 is a MXM instruction", "cannot run on a SXM queue"]),
    (".queue MEM.W0\n    NOP 0\n", 2, 5, ["NOP count must be >= 1, got 0"]),
    (".queue MEM.W0\n    Read 0, E0\n    Repeat 1, 0\n", 3, 5, ["Repeat count must be >= 1, got 0"]),
    (".queue MEM.W2\n    NOP 1\n", 1, 8, ["unknown queue 'MEM.W2'", "'tiny'"]),
    (".queue MXM.4.W\n    IW\n", 1, 8, ["unknown queue 'MXM.4.W'"]),
    (".queue MEM.W0\n    NOP 1\n  .queue VXM.4\n", 3, 10, ["unknown queue 'VXM.4'"]),
]


@pytest.mark.parametrize("text,line,col,words", VALIDATION_ERRORS)
def test_validation_errors(text, line, col, words):
    parse(text)  # syntactically fine: no config, no error
    with pytest.raises(ProgramError) as ei:
        parse(text, TINY)
    msg = str(ei.value)
    assert msg.startswith(f"line {line}, col {col}"), msg
    for w in words:
        assert w in msg, (w, msg)


def test_validate_reports_unknown_opcode_and_queue_of_python_programs():
    # parse() never builds these (it rejects the mnemonic/queue itself, with a location); validate() still does
    with pytest.raises(ProgramError, match="unknown opcode 'Load'"):
        isa.validate(TINY, Program({"MEM.W0": (Instruction("Load", (0, E(0))),)}))
    with pytest.raises(ProgramError, match="unknown queue 'MEM.W7'"):
        isa.validate(TINY, Program({"MEM.W7": (Instruction("NOP", (1,)),)}))
    bad = Program({"MEM.W0": (Instruction("NOP", (1,)), Instruction("Read", (0x200, E(0)), loc=(7, 3)))})
    with pytest.raises(ProgramError, match=r"^line 7, col 3 \(MEM.W0\[1\]\)"):
        isa.validate(TINY, bad)
