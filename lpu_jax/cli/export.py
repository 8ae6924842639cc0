"""`lpu-jax` subcommands: trace-to-vcd, trace-to-perfetto (a recorded .lputrace to a viewer's file).

    lpu-jax trace-to-vcd run.lputrace -o run.vcd [--signals issue,land] [--window A:B] [--lanes A:B]
                                               [--queues MEM.W1,VXM,MXM.0] [--time cycles|real]
    lpu-jax trace-to-perfetto run.lputrace -o run.json [--window A:B] [same options]

Both read the trace one chunk at a time (`formats.iter_trace`) and write as they go (`lpu_jax.export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _range(text: str, what: str, open_ends: bool) -> tuple[int | None, int | None]:
    """'A:B' -> (A, B); with open_ends, 'A:' and ':B' leave that end None."""
    a, sep, b = text.partition(":")
    try:
        if not sep:
            raise ValueError
        lo = int(a) if a.strip() or not open_ends else None
        hi = int(b) if b.strip() or not open_ends else None
    except ValueError:
        form = "A:B (A: or :B leave an end open)" if open_ends else "A:B"
        raise ValueError(f"{what} must be {form} with integers, got {text!r}") from None
    if (lo is not None and lo < 0) or (lo is not None and hi is not None and hi < lo):
        raise ValueError(f"{what} {text!r} must have 0 <= A <= B")
    return lo, hi


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"expected comma-separated names, got {text!r}")
    return names


def _open(args):
    """(cfg, kwargs for the writers, chunks, window) of the input trace and the options."""
    from .. import formats, trace
    from ..export import EXPORTED, unit_selection

    window = _range(args.window, "--window", True) if args.window else (None, None)
    cfg, header, chunks = formats.iter_trace(args.trace)
    recorded = header.get("signals", [])
    signals = _names(args.signals)
    if signals is None:
        signals = [s for s in EXPORTED if s in recorded]
        if not signals:
            have, want = ", ".join(recorded), ", ".join(EXPORTED)
            raise ValueError(f"{args.trace}: the trace records {have}, none of the exported signals ({want})")
    kw: dict = {"signals": signals, "time": args.time}
    if args.lanes:
        kw["lanes"] = _range(args.lanes, "--lanes", False)
    if args.queues:
        kw.update(unit_selection(cfg, _names(args.queues)))
    lo, hi = window

    def pieces():
        for ch in chunks:
            if lo is None and hi is None:
                yield ch
                continue
            yield trace.select(ch, lo, hi)
            if hi is not None and any(len(c["cycle"]) and c["cycle"][-1] >= hi for c in ch.values()):
                return  # chunks come in time order: the rest lies after the window

    span = header.get("window") or [0, None]
    start = span[0] if lo is None else max(lo, span[0])  # never before the recorded cycles
    stop = hi if hi is not None else span[1]
    return cfg, kw, pieces(), start, stop


def _to_vcd(args) -> int:
    from ..export import write_vcd

    cfg, kw, chunks, start, stop = _open(args)
    n = write_vcd(args.output, cfg, chunks, start=start, stop=stop, **kw)
    print(f"lpu-jax trace-to-vcd: wrote {args.output} ({n} events, cycles from {start}; {cfg.name})")
    return 0


def _to_perfetto(args) -> int:
    from ..export import write_perfetto

    cfg, kw, chunks, _, _ = _open(args)
    n = write_perfetto(args.output, cfg, chunks, **kw)
    print(f"lpu-jax trace-to-perfetto: wrote {args.output} ({n} trace events; {cfg.name}); open it in ui.perfetto.dev")
    return 0


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("trace", type=Path, help="the trace file (.lputrace, written by formats.TraceWriter / run --trace)")
    p.add_argument("-o", "--output", type=Path, required=True, help=f"the {what} file to write")
    p.add_argument(
        "--signals", help="comma-separated: issue, land, commit, hazards (default: those the trace recorded)"
    )
    p.add_argument("--window", help="only cycles A <= c < B (A:B; A: or :B leave an end open)")
    p.add_argument("--lanes", help="the lanes whose bytes are shown, A:B (start, stop; default 0:4)")
    p.add_argument(
        "--queues",
        help="comma-separated queues or units (MEM.W1, VXM, MXM.0, SXM.E.1, ...): their issues, ports and SRAM "
        "commits only (default: all)",
    )
    p.add_argument(
        "--time",
        choices=["cycles", "real"],
        default="cycles",
        help="time axis: one cycle per time unit (default), or true time at the config's clock",
    )


def register(sub) -> None:
    """Add this module's subcommands to the `lpu-jax` argument parser's subparsers."""
    v = sub.add_parser(
        "trace-to-vcd",
        help="a trace as a VCD waveform (GTKWave): per unit, issued opcodes and text, landed streams, SRAM commits",
        description="Write a recorded trace as a VCD file; docs/traces.md lists the variables. Each event is a "
        "one-cycle pulse: values are x (text empty) where nothing happened; hazard counts hold.",
    )
    _common(v, "VCD")
    v.set_defaults(func=_to_vcd)
    p = sub.add_parser(
        "trace-to-perfetto",
        help="a trace as Chrome trace-event JSON for ui.perfetto.dev: a track per queue, port and SRAM",
        description="Write a recorded trace as Chrome trace-event JSON (ui.perfetto.dev, chrome://tracing); "
        "docs/traces.md describes the tracks. With --time cycles one cycle shows as 1 us.",
    )
    _common(p, "JSON")
    p.set_defaults(func=_to_perfetto)
