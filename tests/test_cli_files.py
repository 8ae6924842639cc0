"""`lpu-jax asm`, `disasm`, `mem` and `run`, called in-process through `lpu_jax.cli.main`.

The run's outputs are checked against independent computations: its trace file against the golden interpreter's
events (lpu_jax.golden, a separate numpy implementation), its SRAM image against the interpreter's, its final
state against a direct `sim.run`. Bad input must exit 2 with exactly one line `lpu-jax CMD: error: ...` on stderr.
The simulator runs use a scan the rest of the suite compiles (tiny, every trace field, 8 cycles: tests/test_sim.py).
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import lpu_jax as L
from lpu_jax import formats, programs, trace
from lpu_jax.cli import main
from lpu_jax.golden import Interp

TINY = L.tiny()
ALL = ",".join(trace.SIGNALS)
N = 48
PROGRAM = programs.mem_vxm_load(TINY, 64)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (TINY.n_mem, TINY.mem_words, TINY.n_lanes), dtype=np.uint8)


def _golden_events(program, image, n: int, start: int = 0, stop: int | None = None) -> dict:
    """Events of cycles start <= c < stop of the golden interpreter's run (every signal)."""
    dense = Interp(TINY, L.encode(TINY, program), image).run(n)
    ev = trace.to_events(TINY, dense, trace.SIGNALS)
    return trace.select(ev, start, stop)


def _events_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for s in a:
        for k in a[s]:
            assert a[s][k].dtype == b[s][k].dtype and a[s][k].shape == b[s][k].shape, (s, k)
            np.testing.assert_array_equal(a[s][k], b[s][k], err_msg=f"{s}.{k}")


def _fails(capsys, argv: list[str], *pattern: str) -> str:
    """Run `lpu-jax argv`: exit 2 and exactly one line on stderr, 'lpu-jax CMD: error: ...' matching `pattern`."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"lpu-jax {argv[0]}: error: "), err
    for p in pattern:
        assert re.search(p, err), (p, err)
    return err


# --------------------------------------------------------------------------- asm, disasm
SOURCE = """\
# A hand-written program: odd spacing, a comment, a queue named twice.
.queue VXM.0
  add.i8   E1,E2 , E3      # one int8 add
.queue MEM.W0
    Read 16, E0
    Repeat 3, 1, 1
	NOP 4
.queue MEM.W0
    Write 0x20, W1
"""
CANONICAL = """\
.queue MEM.W0
    Read 0x10, E0
    Repeat 3, 1, 1
    NOP 4
    Write 0x20, W1

.queue VXM.0
    add.i8 E1, E2, E3
"""
"""What disasm prints for SOURCE: queues in the chip's order, addresses in hex, one space after each comma
(docs/assembly.md, "Canonical form"), written out by hand."""


def test_asm_then_disasm_gives_canonical_text(tmp_path, capsys):
    (tmp_path / "p.s").write_text(SOURCE)
    assert main(["asm", str(tmp_path / "p.s"), "-o", str(tmp_path / "p.lpuprog")]) == 0
    assert "5 instructions on tiny" in capsys.readouterr().out
    cfg, arr = formats.read_program(tmp_path / "p.lpuprog")
    assert cfg == TINY
    # the rows by hand (docs/isa.md §4): Read [16, a, S], Repeat [2, n, d, s], NOP [1, n], Write [17, a, S] with
    # S = dir * 16 + index; add.i8 [32 + 0, T, T, D, A, B] with i8's type code
    w0 = L.queue_names(TINY).index("MEM.W0")
    assert arr[w0, :5].tolist() == [
        [16, 16, 0, 0, 0, 0, 0, 0],
        [2, 3, 1, 1, 0, 0, 0, 0],
        [1, 4, 0, 0, 0, 0, 0, 0],
        [17, 32, 17, 0, 0, 0, 0, 0],
        [0] * 8,
    ]
    i8 = L.DTYPES[[d.name for d in L.DTYPES].index("i8")].code
    assert arr[L.queue_names(TINY).index("VXM.0"), 0].tolist() == [32, i8, i8, 1, 2, 3, 0, 0]
    assert main(["disasm", str(tmp_path / "p.lpuprog")]) == 0
    assert capsys.readouterr().out == CANONICAL
    assert main(["disasm", str(tmp_path / "p.lpuprog"), "-o", str(tmp_path / "back.s")]) == 0
    assert (tmp_path / "back.s").read_text() == CANONICAL
    # the canonical text assembles to the same bytes
    assert main(["asm", str(tmp_path / "back.s"), "-o", str(tmp_path / "q.lpuprog")]) == 0
    np.testing.assert_array_equal(formats.read_program(tmp_path / "q.lpuprog")[1], arr)


def test_asm_config_sets_the_chip(tmp_path):
    (tmp_path / "p.s").write_text(".queue MEM.W7\n    Read 0x3ff, E31\n")
    assert main(["asm", str(tmp_path / "p.s"), "-o", str(tmp_path / "p.lpuprog"), "--config", "groqchip1"]) == 0
    cfg, arr = formats.read_program(tmp_path / "p.lpuprog")
    assert cfg == L.groqchip1() and arr.shape == (len(L.queue_names(cfg)), 64, 8)
    assert arr[L.queue_names(cfg).index("MEM.W7"), 0, :3].tolist() == [16, 0x3FF, 31]


def test_asm_and_disasm_errors(tmp_path, capsys):
    s = tmp_path / "bad.s"
    s.write_text(".queue MEM.W0\n    Read 16, E0\n    Raed 3, E1\n")
    _fails(capsys, ["asm", s, "-o", tmp_path / "x"], r"bad\.s: line 3, col 5: unknown mnemonic 'Raed'")
    s.write_text(".queue MEM.W9\n    Read 16, E0\n")
    _fails(capsys, ["asm", s, "-o", tmp_path / "x"], r"line 1, col 8: unknown queue 'MEM\.W9' for config 'tiny'")
    s.write_text(".queue MEM.W0\n    Read 0x200, E0\n")  # tiny's slices hold 512 words
    _fails(capsys, ["asm", s, "-o", tmp_path / "x"], r"address 0x200 out of range")
    _fails(capsys, ["asm", tmp_path / "none.s", "-o", tmp_path / "x"], "No such file")
    s.write_bytes(b"\xff\xfe.queue")
    _fails(capsys, ["asm", s, "-o", tmp_path / "x"], "not UTF-8 text")
    assert not (tmp_path / "x").exists()
    # disasm: the wrong kind, a damaged file, rows that are no instruction
    formats.write_mem(tmp_path / "m.lpumem", TINY, _image(0))
    _fails(capsys, ["disasm", tmp_path / "m.lpumem"], r"m\.lpumem: magic: this is a MEM image file, not a program")
    formats.write_program(tmp_path / "p.lpuprog", TINY, PROGRAM)
    data = (tmp_path / "p.lpuprog").read_bytes()
    (tmp_path / "cut.lpuprog").write_bytes(data[:-100])
    _fails(capsys, ["disasm", tmp_path / "cut.lpuprog"], r"cut\.lpuprog: block 0 \(program\): truncated")
    arr = np.zeros((len(L.queue_names(TINY)), 64, 8), np.int32)
    arr[1, 0, 0] = 99
    formats.write_program(tmp_path / "op.lpuprog", TINY, arr)
    _fails(capsys, ["disasm", tmp_path / "op.lpuprog"], r"op\.lpuprog: queue MEM\.W0, row 0: unknown opcode 99")
    _fails(capsys, ["disasm", tmp_path / "nope.lpuprog"], r"nope\.lpuprog: cannot read: No such file")


@pytest.mark.parametrize(
    "cmd, options",
    [
        ("asm", ["-o OUTPUT", "--config {tiny,small,groqchip1}"]),
        ("disasm", ["-o OUTPUT"]),
        ("mem", ["--zeros", "--random SEED", "--from FILE.npy", "-o OUTPUT"]),
        (
            "run",
            ["--mem MEM", "--cycles CYCLES", "--trace TRACE", "--signals SIGNALS", "--window WINDOW", "--state-out"],
        ),
    ],
)
def test_help(capsys, cmd, options):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lpu-jax {cmd}")
    for o in options:
        assert o in out, o


# --------------------------------------------------------------------------- mem
def test_mem_images(tmp_path, capsys):
    p = tmp_path / "z.lpumem"
    assert main(["mem", "--config", "tiny", "--zeros", "-o", str(p)]) == 0
    cfg, image = formats.read_mem(p)
    assert cfg == TINY and image.shape == (4, 512, 32) and not image.any()
    assert main(["mem", "--random", "5", "-o", str(p)]) == 0
    np.testing.assert_array_equal(formats.read_mem(p)[1], _image(5))
    src = _image(9)
    np.save(tmp_path / "a.npy", src)
    assert main(["mem", "--from", str(tmp_path / "a.npy"), "-o", str(p)]) == 0
    np.testing.assert_array_equal(formats.read_mem(p)[1], src)
    assert main(["mem", "--config", "small", "--zeros", "-o", str(p)]) == 0
    assert formats.read_mem(p)[1].shape == (16, 1024, 32)
    np.save(tmp_path / "b.npy", src[:, :100])
    _fails(
        capsys,
        ["mem", "--from", tmp_path / "b.npy", "-o", p],
        r"b\.npy: the SRAM image of tiny is uint8 \[4, 512, 32\]",
    )
    (tmp_path / "c.npy").write_bytes(b"not numpy")
    _fails(capsys, ["mem", "--from", tmp_path / "c.npy", "-o", p], r"c\.npy: not a \.npy array")


# --------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The program as assembly text and as a .lpuprog (through `lpu-jax asm`), and a random SRAM image."""
    d = tmp_path_factory.mktemp("cli_run")
    (d / "load.s").write_text(L.format_program(PROGRAM))
    assert main(["asm", str(d / "load.s"), "-o", str(d / "load.lpuprog")]) == 0
    image = _image(3)
    formats.write_mem(d / "in.lpumem", TINY, image)
    np.save(d / "in.npy", image)
    return d, image


def test_run_outputs_match_independent_runs(inputs, tmp_path, capsys):
    d, image = inputs
    out = {k: tmp_path / f"out.{k}" for k in ("lputrace", "lpustate", "lpumem")}
    # --units all: the compiled scan tests/test_sim.py made (tests/test_sim_units.py checks that auto is the same)
    argv = ["run", d / "load.lpuprog", "--mem", d / "in.lpumem", "--cycles", N, "--chunk", 8, "--signals", ALL]
    argv += ["--units", "all"]
    argv += ["--trace", out["lputrace"], "--state-out", out["lpustate"], "--mem-out", out["lpumem"], "--quiet"]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0
    stdout = capsys.readouterr().out
    # the trace equals the golden interpreter's events, chunk by chunk
    golden = _golden_events(PROGRAM, image, N)
    cfg, header, ev = formats.read_trace(out["lputrace"])
    assert cfg == TINY and header["signals"] == list(trace.SIGNALS) and header["window"] == [0, N]
    assert header["end"]["chunks"] == N // 8 and header["meta"]["cycles"] == N
    _events_equal(ev, golden)
    # the summary line: the cycles and the events of each signal
    assert stdout.count("\n") == 1 and stdout.startswith(f"lpu-jax run: {N} cycles on tiny; ")
    for s in trace.SIGNALS:
        assert f"{s} {len(golden[s]['cycle'])}" in stdout
    assert "hazard report: none" in stdout and "cycles/s" in stdout
    # the SRAM image equals the interpreter's; the state equals a direct sim.run's
    it = Interp(TINY, L.encode(TINY, PROGRAM), image)
    it.run(N)
    np.testing.assert_array_equal(formats.read_mem(out["lpumem"])[1], it.mem)
    assert (it.mem != image).any()
    state, _ = L.run(TINY, PROGRAM, L.init_state(TINY, image), N, trace=tuple(L.TRACE_FIELDS), chunk=8)
    got = formats.read_state(out["lpustate"])[1]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(formats.read_mem(out["lpumem"])[1], L.mem_image(TINY, state))


def test_run_assembly_text_npy_image_and_window(inputs, tmp_path, capsys):
    """A .s program with --config, a .npy image, and a window covering the whole run (':32' is 0:32)."""
    d, image = inputs
    t = tmp_path / "w.lputrace"
    argv = [
        "run",
        d / "load.s",
        "--config",
        "tiny",
        "--mem",
        d / "in.npy",
        "--cycles",
        32,
        "--chunk",
        8,
        "--units",
        "all",
    ]
    assert main([str(a) for a in [*argv, "--signals", ALL, "--window", ":32", "--trace", t]]) == 0
    _, header, ev = formats.read_trace(t)
    assert header["window"] == [0, 32] and header["meta"]["program"].endswith("load.s")
    _events_equal(ev, _golden_events(PROGRAM, image, 32))
    assert "lpu-jax run: 32 cycles on tiny; events: issue " in capsys.readouterr().out


def test_run_zero_cycles_without_mem(inputs, tmp_path, capsys):
    """No --mem: the SRAM starts at zero; 0 cycles leave it so (and compile nothing)."""
    d, _ = inputs
    assert main(["run", str(d / "load.lpuprog"), "--cycles", "0", "--mem-out", str(tmp_path / "m.lpumem")]) == 0
    cfg, image = formats.read_mem(tmp_path / "m.lpumem")
    assert cfg == TINY and not image.any()
    assert "lpu-jax run: 0 cycles on tiny; events: none recorded; hazard report: none" in capsys.readouterr().out


@pytest.mark.slow
def test_run_window_and_untraced(inputs, tmp_path, capsys):
    """--window 16:32 records only those cycles (the rest run untraced); a run without signals gives the same SRAM."""
    d, image = inputs
    t = tmp_path / "w.lputrace"
    base = ["run", d / "load.lpuprog", "--mem", d / "in.lpumem", "--cycles", N, "--chunk", 8, "--units", "all"]
    assert main([str(a) for a in [*base, "--signals", ALL, "--window", "16:32", "--trace", t]]) == 0
    _, header, ev = formats.read_trace(t)
    assert header["window"] == [16, 32] and header["end"]["chunks"] == 2
    _events_equal(ev, _golden_events(PROGRAM, image, N, 16, 32))
    assert main([str(a) for a in [*base, "--mem-out", tmp_path / "m.lpumem"]]) == 0
    it = Interp(TINY, L.encode(TINY, PROGRAM), image)
    it.run(N)
    np.testing.assert_array_equal(formats.read_mem(tmp_path / "m.lpumem")[1], it.mem)


def test_run_bad_input(inputs, tmp_path, capsys):
    """Each mistake: exit 2, one line on stderr naming it (all found before anything runs)."""
    d, image = inputs
    prog, mem = d / "load.lpuprog", d / "in.lpumem"
    run = ["run", prog, "--cycles", 8]
    _fails(capsys, ["run", tmp_path / "none.lpuprog", "--cycles", 8], r"none\.lpuprog: cannot read: No such file")
    _fails(capsys, ["run", tmp_path / "none.s", "--cycles", 8], "No such file")
    _fails(capsys, ["run", mem, "--cycles", 8], r"in\.lpumem is a MEM image file, not a program")
    (tmp_path / "cut.lpuprog").write_bytes(prog.read_bytes()[:-1])
    _fails(capsys, ["run", tmp_path / "cut.lpuprog", "--cycles", 8], r"cut\.lpuprog: block 0 \(program\): truncated")
    flipped = bytearray(prog.read_bytes())
    flipped[100] ^= 1
    (tmp_path / "flip.lpuprog").write_bytes(bytes(flipped))
    _fails(capsys, ["run", tmp_path / "flip.lpuprog", "--cycles", 8], r"flip\.lpuprog: header: CRC mismatch")
    _fails(capsys, [*run, "--config", "small"], r"load\.lpuprog is a program for tiny, but --config says small")
    for w in ("5", "9:3", "a:b", "1:2:3"):
        _fails(capsys, [*run, "--trace", tmp_path / "t", "--window", w], r"--window must")
    _fails(capsys, [*run, "--window", "0:4"], "--window chooses the cycles to record")
    _fails(capsys, [*run, "--signals", "issue,lands"], r"unknown trace signal 'lands' in --signals")
    _fails(capsys, [*run, "--cycles", "-1"], r"--cycles must be >= 0")
    np.save(tmp_path / "short.npy", image[:, :256])
    _fails(
        capsys, [*run, "--mem", tmp_path / "short.npy"], r"short\.npy: the SRAM image of tiny is uint8 \[4, 512, 32\]"
    )
    np.save(tmp_path / "i8.npy", image.astype(np.int8))
    _fails(capsys, [*run, "--mem", tmp_path / "i8.npy"], r"got int8 \[4, 512, 32\]")
    formats.write_mem(tmp_path / "small.lpumem", L.small(), np.zeros((16, 1024, 32), np.uint8))
    _fails(capsys, [*run, "--mem", tmp_path / "small.lpumem"], r"is a MEM image for small, but the program is for tiny")
    _fails(capsys, [*run, "--mem", prog], r"load\.lpuprog is a program file, not a MEM image")
    _fails(capsys, [*run, "--trace", tmp_path / "no" / "t.lputrace"], r"cannot write .*t\.lputrace: no directory")
    assert not (tmp_path / "t").exists()
