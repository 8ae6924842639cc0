"""`lpu-jax` subcommands on files: asm, disasm, run, mem (docs/formats.md, docs/assembly.md).

    lpu-jax asm prog.s -o prog.lpuprog --config tiny          text assembly -> binary program
    lpu-jax disasm prog.lpuprog [-o prog.s]                     binary program -> canonical text
    lpu-jax mem --config tiny --random 0 -o data.lpumem        an SRAM image to start from
    lpu-jax run prog.lpuprog --mem data.lpumem --cycles 1000 --trace run.lputrace --state-out end.lpustate

Bad input (a missing or malformed file, a file of the wrong kind, a bad --window, an unknown signal, an image of the
wrong shape) raises ValueError or OSError, which `lpu-jax` prints as one line `lpu-jax CMD: error: ...` (exit 2).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["register"]

CONFIGS = ("tiny", "small", "groqchip1")


def register(sub) -> None:
    """Add this module's subcommands to the `lpu-jax` argument parser's subparsers."""
    a = sub.add_parser(
        "asm",
        help="assemble a text program (docs/assembly.md) into a binary .lpuprog file",
        description="Assemble a text program (docs/assembly.md) into a binary program file (docs/formats.md).",
    )
    a.add_argument("input", type=Path, help="assembly text (.s)")
    a.add_argument("-o", "--output", type=Path, required=True, help="the program file to write (.lpuprog)")
    a.add_argument("--config", choices=CONFIGS, default="tiny", help="the chip the program is for (default tiny)")
    a.set_defaults(func=_asm)

    d = sub.add_parser(
        "disasm",
        help="print a binary .lpuprog program as canonical assembly text",
        description="Decode a binary program file (isa.decode) and print it as canonical assembly text.",
    )
    d.add_argument("input", type=Path, help="a program file (.lpuprog)")
    d.add_argument("-o", "--output", type=Path, help="write the text here instead of to stdout")
    d.set_defaults(func=_disasm)

    m = sub.add_parser(
        "mem",
        help="make an SRAM image file (.lpumem): zeros, random bytes or a .npy array",
        description="Make an SRAM image file, uint8 [n_mem, mem_words, n_lanes] for the chosen chip.",
    )
    m.add_argument("--config", choices=CONFIGS, default="tiny", help="the chip (default tiny)")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--zeros", action="store_true", help="every byte zero")
    src.add_argument(
        "--random", type=int, metavar="SEED", help="uniform random bytes: numpy default_rng(SEED).integers(0, 256)"
    )
    src.add_argument("--from", dest="from_npy", type=Path, metavar="FILE.npy", help="a uint8 [M, W, L] .npy array")
    m.add_argument("-o", "--output", type=Path, required=True, help="the image file to write (.lpumem)")
    m.set_defaults(func=_mem)

    r = sub.add_parser(
        "run",
        help="run a program for N cycles on the simulator, streaming an event trace to disk",
        description=(
            "Run a program on the cycle-level simulator from an SRAM image, recording the chosen trace signals "
            "chunk by chunk (the trace is written as it goes, never held whole in memory). Prints one summary "
            "line: cycles, events per signal, hazards, wall time, cycles/s. Hazards do not change the exit code."
        ),
    )
    r.add_argument("program", type=Path, help="a program file (.lpuprog) or assembly text (.s, see --config)")
    r.add_argument(
        "--mem", type=Path, help="the initial SRAM: a .lpumem image or a uint8 [M, W, L] .npy array (default zeros)"
    )
    r.add_argument("--cycles", type=int, required=True, help="how many cycles to run")
    r.add_argument("--trace", type=Path, help="write the event trace here (.lputrace)")
    r.add_argument(
        "--signals",
        help="comma-separated trace signals from issue, land, commit, streams, hazards "
        "(default with --trace: issue,land,commit,hazards)",
    )
    r.add_argument("--window", help="record only cycles A <= c < B, given as A:B (either side may be left out)")
    r.add_argument("--state-out", type=Path, help="write the final machine state here (.lpustate)")
    r.add_argument("--mem-out", type=Path, help="write the final SRAM image here (.lpumem)")
    r.add_argument(
        "--config", choices=CONFIGS, help="the chip for assembly text (default tiny); a .lpuprog names its own"
    )
    r.add_argument("--chunk", type=int, help="cycles per trace chunk (default: about 96 MB of dense trace)")
    r.add_argument(
        "--units",
        choices=("auto", "all"),
        default="auto",
        help="auto (default): leave out of the simulated cycle the VXM, MXM or SXM the program never uses (same "
        "bits, faster); all: step every unit",
    )
    r.add_argument("--quiet", action="store_true", help="no progress display")
    r.set_defaults(func=_run)


# --------------------------------------------------------------------------- helpers
def _config(name: str):
    from .. import config

    return getattr(config, name)()


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n"))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _parse(path: Path, cfg):
    from ..asm import parse
    from ..isa import ProgramError

    text = _read_text(path)
    try:
        return parse(text, cfg)
    except ProgramError as e:
        raise ValueError(f"{path}: {_one_line(e)}") from None


def _load_program(path: Path, config: str | None):
    """(cfg, encoded program) from a .lpuprog file or assembly text."""
    from .. import formats
    from ..isa import encode

    try:
        kind = formats.file_kind(path)
    except formats.FormatError:
        kind = None
    if kind is not None or path.suffix == ".lpuprog":
        if kind not in (None, "program"):
            raise ValueError(f"{path} is a {formats._WORDS[kind]} file, not a program (.lpuprog or assembly text)")
        cfg, arr = formats.read_program(path)
        if config is not None and _config(config) != cfg:
            raise ValueError(f"{path} is a program for {cfg.name}, but --config says {config}")
        return cfg, arr
    cfg = _config(config or "tiny")
    return cfg, encode(cfg, _parse(path, cfg))


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except OSError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a .npy array ({type(e).__name__}: {_one_line(e)})") from None


def _check_image(cfg, image: np.ndarray, path: Path) -> np.ndarray:
    want = (cfg.n_mem, cfg.mem_words, cfg.n_lanes)
    if image.dtype != np.uint8 or image.shape != want:
        raise ValueError(
            f"{path}: the SRAM image of {cfg.name} is uint8 {list(want)} (MEM slices, words, lanes), "
            f"got {image.dtype} {list(image.shape)}"
        )
    return image


def _load_mem(path: Path, cfg) -> np.ndarray:
    from .. import formats

    try:
        kind = formats.file_kind(path)
    except formats.FormatError:
        kind = None
    if kind is None and path.suffix != ".lpumem":
        return _check_image(cfg, _load_npy(path), path)
    if kind not in (None, "mem"):
        raise ValueError(f"{path} is a {formats._WORDS[kind]} file, not a MEM image (.lpumem or .npy)")
    mcfg, image = formats.read_mem(path)
    if mcfg != cfg:
        raise ValueError(f"{path} is a MEM image for {mcfg.name}, but the program is for {cfg.name}")
    return image


def _window(text: str | None, n: int) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo = int(parts[0]) if parts[0].strip() else 0
        hi = int(parts[1]) if parts[1].strip() else n
    except ValueError:
        raise ValueError(
            f"--window must be A:B with integer cycles A <= B (either may be left out), got {text!r}"
        ) from None
    if not 0 <= lo <= hi:
        raise ValueError(f"--window must have 0 <= A <= B, got {text!r}")
    return lo, hi


def _signals(text: str | None, tracing: bool) -> tuple[str, ...]:
    from ..trace import DEFAULT_SIGNALS, SIGNALS

    if text is None:
        return DEFAULT_SIGNALS if tracing else ()
    sig = tuple(s.strip() for s in text.split(",") if s.strip())
    for s in sig:
        if s not in SIGNALS:
            raise ValueError(f"unknown trace signal {s!r} in --signals; known: {', '.join(SIGNALS)}")
    if len(set(sig)) != len(sig) or not sig:
        raise ValueError(f"--signals must name one or more distinct signals, got {text!r}")
    return sig


class _Progress:
    """Cycles done so far: a rich progress bar on a terminal, else a plain line to stderr at most every 2 s."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar = total, quiet, None
        self.t0 = self.last = time.perf_counter()
        if quiet or not sys.stderr.isatty():
            return
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        except ImportError:
            return
        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.task = self.bar.add_task("cycles", total=total)
        self.bar.start()

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            return
        now = time.perf_counter()
        if not self.quiet and now - self.last >= 2.0 and done < self.total:
            self.last = now
            print(
                f"  {done:,}/{self.total:,} cycles ({done / max(self.total, 1):.0%}), {now - self.t0:.1f} s",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _check_out(path: Path | None) -> None:
    """Fail before running, not after, if an output cannot be written."""
    if path is not None and not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: no directory {path.parent}")


# --------------------------------------------------------------------------- the commands
def _asm(args) -> int:
    from ..formats import write_program

    cfg = _config(args.config)
    program = _parse(args.input, cfg)
    write_program(args.output, cfg, program)
    print(f"lpu-jax asm: {program.n_instructions} instructions on {cfg.name} -> {args.output}")
    return 0


def _disasm(args) -> int:
    from ..asm import format_program
    from ..formats import read_program
    from ..isa import ProgramError, decode

    cfg, arr = read_program(args.input)
    try:
        text = format_program(decode(cfg, arr))
    except ProgramError as e:
        raise ValueError(f"{args.input}: {_one_line(e)}") from None
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _mem(args) -> int:
    from ..formats import write_mem

    cfg = _config(args.config)
    shape = (cfg.n_mem, cfg.mem_words, cfg.n_lanes)
    if args.zeros:
        image, what = np.zeros(shape, np.uint8), "zeros"
    elif args.random is not None:
        image = np.random.default_rng(args.random).integers(0, 256, shape, dtype=np.uint8)
        what = f"random bytes (seed {args.random})"
    else:
        image, what = _check_image(cfg, _load_npy(args.from_npy), args.from_npy), str(args.from_npy)
    write_mem(args.output, cfg, image)
    print(f"lpu-jax mem: {cfg.name} SRAM image uint8 {list(shape)} of {what} -> {args.output}")
    return 0


def _run(args) -> int:
    from .. import formats, sim, trace
    from ..state import hazard_report, init_state, mem_image

    if args.cycles < 0:
        raise ValueError(f"--cycles must be >= 0, got {args.cycles}")
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    n = args.cycles
    signals = _signals(args.signals, args.trace is not None)
    window = _window(args.window, n)
    if window is not None and not signals:
        raise ValueError("--window chooses the cycles to record: give --trace or --signals too")
    for out in (args.trace, args.state_out, args.mem_out):
        _check_out(out)
    cfg, program = _load_program(args.program, args.config)
    image = _load_mem(args.mem, cfg) if args.mem is not None else None
    state = init_state(cfg, image)

    counts = dict.fromkeys(signals, 0)
    progress = _Progress(n, args.quiet)
    t0 = time.perf_counter()
    try:
        if signals:
            lo, hi = window if window is not None else (0, n)
            meta = {"tool": "lpu-jax run", "program": str(args.program), "mem": str(args.mem) if args.mem else None}
            meta["cycles"] = n
            ctx = contextlib.nullcontext()
            if args.trace is not None:
                ctx = formats.TraceWriter(args.trace, cfg, signals, meta, window=(min(lo, n), min(hi, n)))
            with ctx as writer:  # left by an exception: no end block, the file reads as an unfinished trace

                def sink(ev):
                    for s in signals:
                        counts[s] += len(ev[s]["cycle"])
                    if writer is not None:
                        writer.append(ev)

                state, _ = trace.record(
                    cfg,
                    program,
                    state,
                    n,
                    signals,
                    window=window,
                    chunk_cycles=args.chunk,
                    sink=sink,
                    progress=progress,
                    units=args.units,
                )
        else:
            step = args.chunk or 4096
            done = 0
            while done < n:
                k = min(step, n - done)
                state, _ = sim.run(cfg, program, state, k, chunk=min(256, k), donate=done > 0, units=args.units)
                done += k
                progress(done)
        state.cycle.block_until_ready()
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    if args.state_out is not None:
        formats.write_state(args.state_out, cfg, state)
    if args.mem_out is not None:
        formats.write_mem(args.mem_out, cfg, mem_image(cfg, state))
    hz = hazard_report(cfg, state)
    events = ", ".join(f"{s} {c}" for s, c in counts.items()) or "none recorded"
    print(
        f"lpu-jax run: {n} cycles on {cfg.name}; events: {events}; hazard report: {'; '.join(hz) if hz else 'none'}; "
        f"{wall:.2f} s wall (compilation included), {n / max(wall, 1e-9):,.0f} cycles/s"
    )
    return 0
