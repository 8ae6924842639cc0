"""Bad input gets a clear error naming the problem and where it is (programs, arrays, run arguments, CLI)."""

from __future__ import annotations

import numpy as np
import pytest

import lpu_jax as L
from lpu_jax.cli import main
from lpu_jax.isa import E, Instruction, Stream

TINY = L.tiny()


def _prog(*ins, queue="MEM.W0"):
    return L.Program({queue: list(ins)})


@pytest.mark.parametrize(
    "prog, words",
    [
        (_prog(Instruction("Jump", (1,))), "unknown opcode 'Jump'"),
        (_prog(Instruction("Read", (0, E(16)))), "stream E16 out of range"),
        (_prog(Instruction("Read", (512, E(0)))), "address 0x200 out of range"),
        (_prog(Instruction("Read", (0, E(0))), Instruction("Repeat", (600, 1, 1))), "last repetition reaches address"),
        (_prog(Instruction("add.f32", (E(0), E(4), E(1))), queue="VXM.0"), "source 2 E1 is a 4-stream group"),
        (
            _prog(Instruction("add.f32", (E(0), E(4), E(0)))),
            "add.f32 is a VXM instruction and cannot run on a MEM queue",
        ),
        (_prog(Instruction("add.f32", (E(0), E(4), E(16))), queue="VXM.0"), "out of range"),
        (_prog(Instruction("Read", (0, E(0))), queue="VXM.0"), "Read is a MEM instruction"),
        (_prog(Instruction("Repeat", (2, 1, 0))), "Repeat has no earlier unit instruction"),
        (_prog(Instruction("NOP", (0,))), "NOP count must be >= 1"),
        (_prog(Instruction("Read", (0, E(0))), queue="MEM.W7"), "unknown queue 'MEM.W7'"),
        (_prog(Instruction("Read", (E(0), 3))), "operand 1 must be an integer"),
        (_prog(Instruction("Read", (0, Stream("E", 1.5)))), "must be a stream"),
    ],
)
def test_bad_program_is_rejected_with_its_place(prog, words):
    with pytest.raises(L.ProgramError) as e:
        L.encode(TINY, prog)
    assert words in str(e.value)
    if "unknown queue" not in words:
        assert str(e.value).startswith("MEM.W0[") or str(e.value).startswith("VXM.0[")


def test_text_program_errors_carry_line_and_column():
    with pytest.raises(L.ProgramError, match=r"line 3, col 5 .*address 0x250 out of range"):
        L.parse(".queue MEM.W0\n    Read 0, E0\n    Read 0x250, E1\n", TINY)


def test_bad_encoded_program_shape():
    with pytest.raises(L.ProgramError, match=r"int32 \[24, L, 8\]"):
        L.run(TINY, np.zeros((3, 8, 8), np.int32), None, 1)


def test_bad_run_arguments():
    p = _prog(Instruction("Read", (0, E(0))))
    with pytest.raises(ValueError, match="unknown trace field 'stream'"):
        L.run(TINY, p, None, 1, trace=("stream",))
    with pytest.raises(ValueError, match="n_cycles must be an int >= 0"):
        L.run(TINY, p, None, -1)


def test_bad_mem_image():
    with pytest.raises(ValueError, match=r"MEM image must be uint8 \[4, 512, 32\]"):
        L.init_state(TINY, np.zeros((4, 512, 31), np.uint8))
    with pytest.raises(ValueError, match="MEM image must be uint8"):
        L.init_state(TINY, np.zeros((4, 512, 32), np.int8))


def test_cli_bad_input_exits_non_zero_with_one_line(capsys):
    assert main(["fma", "--vectors", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lpu-jax fma: error: relu_fma needs at least one vector, got 0"]
    assert main(["fma", "--vectors", "9000"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "lpu-jax fma: error: relu_fma: 9000 vectors do not fit in a MEM slice of 8192 words"
    )
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_cli_gemm_reports_and_checks(capsys):
    assert main(["gemm", "20", "40", "36", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "MXM use" in out and "cycles" in out
    assert main(["gemm", "0", "4", "4", "--config", "tiny", "--no-run"]) == 2
    assert capsys.readouterr().err.strip() == "lpu-jax gemm: error: gemm: M must be a positive int, got 0"


def test_cli_fma_runs_and_checks_against_numpy(capsys):
    assert main(["fma", "--vectors", "2"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "cycles" in out and "latency" in out
