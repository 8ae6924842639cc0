"""`lpu-jax` subcommands: diff.

    lpu-jax diff A B [--ignore SIGNAL|SIGNAL.COLUMN]... [--ignore-cycles START:STOP]... [--ignore-lanes START:STOP]...
                     [--ignore-queue NAME]... [--ignore-port N]... [--ignore-slice NAME]... [--limit N] [--json OUT]

A and B are two traces (.lputrace) or two states / MEM images (.lpustate, .lpumem), told apart by their magic
bytes. Traces are read chunk by chunk (`formats.iter_trace`) and compared in cycle order, so neither is ever whole
in memory. Prints the report (docs/lockstep.md); exit 0 if equal, 1 if they differ, 2 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["register"]


def _chunks(it):
    """The chunks of an `iter_trace` iterator, with the largest cycle each one holds (None for an empty chunk)."""
    for ev in it:
        hi = [int(c["cycle"].max()) for c in ev.values() if len(c["cycle"])]
        yield ev, (max(hi) if hi else None)


def _split(ev: dict, cut: int) -> tuple[dict, dict]:
    """(events of cycles < cut, the rest)."""
    lo, hi = {}, {}
    for s, cols in ev.items():
        k = cols["cycle"] < cut
        lo[s] = {c: v[k] for c, v in cols.items()}
        hi[s] = {c: v[~k] for c, v in cols.items()}
    return lo, hi


def _join(a: dict, b: dict) -> dict:
    return {s: {c: np.concatenate([a[s][c], b[s][c]]) for c in b[s]} for s in b}


def diff_traces(its, signals, differ) -> None:
    """Feed two traces' chunk iterators (one config) to a `diff.Differ`, aligned by cycle.

    A chunk holds whole cycles (`trace.record` cuts between cycles), so once a side has read a chunk whose largest
    cycle is h, its cycles <= h are complete. Everything complete on both sides is compared; the side that is
    behind reads its next chunk. So about one chunk per side is in memory at a time.
    """
    from ..trace import empty

    chunks = [_chunks(it) for it in its]
    pend = [empty(differ.cfg, sig) for sig in signals]
    hi = [-1, -1]
    done = [False, False]
    while not all(done):
        i = min((k for k in (0, 1) if not done[k]), key=lambda k: hi[k])
        nxt = next(chunks[i], None)
        if nxt is None:
            done[i] = True
        else:
            pend[i] = _join(pend[i], nxt[0])
            hi[i] = hi[i] if nxt[1] is None else max(hi[i], nxt[1])
        cut = min(2**62 if done[k] else hi[k] + 1 for k in (0, 1))
        now_a, pend[0] = _split(pend[0], cut)
        now_b, pend[1] = _split(pend[1], cut)
        if any(len(c["cycle"]) for ev in (now_a, now_b) for c in ev.values()):
            differ.add(now_a, now_b)
    differ.add(*pend)


def _diff(args) -> int:
    from .. import formats
    from ..diff import Differ, Mask, compare_states

    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    kinds = [formats.file_kind(p) for p in (args.a, args.b)]
    mask = Mask.parse(args.ignore, args.ignore_cycles, args.ignore_lanes, args.ignore_queue, args.ignore_port,
                      args.ignore_slice)  # fmt: skip
    if kinds == ["trace", "trace"]:
        cfg, head_a, it_a = formats.iter_trace(args.a)
        cfg_b, head_b, it_b = formats.iter_trace(args.b)
        if cfg != cfg_b:
            raise ValueError(f"{args.a} was recorded on {cfg.name!r}, {args.b} on a different config ({cfg_b.name!r})")
        differ = Differ(cfg, mask, args.limit)
        diff_traces((it_a, it_b), (head_a["signals"], head_b["signals"]), differ)
        report = differ.report()
    elif set(kinds) <= {"state", "mem"}:
        sides = []
        for p, k in zip((args.a, args.b), kinds):
            sides.append(formats.read_state(p) if k == "state" else formats.read_mem(p))
        (cfg, x), (cfg_b, y) = sides
        if cfg != cfg_b:
            raise ValueError(f"{args.a} is of config {cfg.name!r}, {args.b} of a different config ({cfg_b.name!r})")
        report = compare_states(cfg, x, y, mask, args.limit)
    else:
        raise ValueError(
            f"{args.a} is a {kinds[0]} file and {args.b} a {kinds[1]} file: diff compares two traces, or two "
            "states / MEM images"
        )
    print(f"lpu-jax diff: {args.a} (expected) vs {args.b} (actual)")
    print(report)
    if args.json:
        out = report.to_dict() | {"expected": str(args.a), "actual": str(args.b)}
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0 if report.equal else 1


def register(sub) -> None:
    """Add this module's subcommands to the `lpu-jax` argument parser's subparsers."""
    d = sub.add_parser(
        "diff",
        help="compare two traces (or two states / MEM images) and report the first divergence in words",
        description="Compare two traces, or two states / MEM images (docs/lockstep.md). "
        "Exit 0 if equal, 1 if they differ, 2 on bad input.",
    )
    d.add_argument("a", type=Path, help="the expected side (.lputrace, .lpustate or .lpumem)")
    d.add_argument("b", type=Path, help="the actual side, of the same kind")
    d.add_argument("--ignore", action="append", default=[], metavar="SIGNAL[.COLUMN]",
                   help="skip a signal (hazards) or a column (land.data); repeatable")  # fmt: skip
    d.add_argument("--ignore-cycles", action="append", default=[], metavar="START:STOP",
                   help="skip cycles START <= c < STOP (either side may be left out); repeatable")  # fmt: skip
    d.add_argument("--ignore-lanes", action="append", default=[], metavar="START:STOP",
                   help="skip these lanes of every byte column; repeatable")  # fmt: skip
    d.add_argument("--ignore-queue", action="append", default=[], metavar="NAME",
                   help="skip a queue's issue events (MEM.W17, or its index); repeatable")  # fmt: skip
    d.add_argument("--ignore-port", action="append", default=[], metavar="N",
                   help="skip an output port's land events (its index); repeatable")  # fmt: skip
    d.add_argument("--ignore-slice", action="append", default=[], metavar="NAME",
                   help="skip a MEM slice's commits and SRAM (W17, or its index); repeatable")  # fmt: skip
    d.add_argument("--limit", type=int, default=20, help="divergences to list (default 20); all are counted")
    d.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON to OUT")
    d.set_defaults(func=_diff)
