"""Trace events to viewers: VCD for waveform viewers (GTKWave) and Chrome trace-event JSON for Perfetto.

Both writers take the events of `lpu_jax.trace` as an iterable of chunks (`formats.iter_trace`'s iterator, the
chunks `trace.record` hands its sink, or a list holding one `Events`) and write as they go: one chunk in memory
at a time, never the whole trace. Chunks must come in time order (every cycle of a chunk after every cycle of
the one before), as `trace.record` makes them. docs/traces.md describes the signals and how to view them.

Selection (both writers): `signals` of `EXPORTED` (default: those the chunks hold), `queues` (names such as
"MEM.W1" or indices in `isa.queue_names` order), `ports` (names such as "MEM.W1", "VXM.0", "MXM.1",
"SXM.E.0.port2", see `port_scope`, or port indices), `slices` (MEM slice names "W1" / "MEM.W1" or indices, west
to east) and `lanes=(start, stop)`, the lanes whose bytes are shown. `unit_selection(cfg, names)` turns unit or
queue names ("MXM.0", "SXM.E", "MEM") into all three.

VCD (`write_vcd`), one scope per unit, named as the queues ("MEM.W17", "VXM.3", "MXM.0.W", "SXM.E.1"):
    <queue>.issue        event     fires at every instruction the queue issues
    <queue>.op           integer   its opcode (docs/isa.md §4)
    <queue>.text         string    its text, `str(isa.decode_row(cfg, row))` (GTKWave shows a space as \\x20)
    <unit>.port.land     event     fires at every result put onto a stream by the unit's output port
                                   (SXM units have four ports: <unit>.port0 .. port3)
    <unit>.port.sid      integer   stream id of the group's base (dir * n_streams + index)
    <unit>.port.width    integer   group width in streams (1, 2, 4; 16 = 4 ports of a Transpose)
    <unit>.port.lane<k>  reg 32    lane k of the group: byte of stream row r in bits 8r..8r+7 (rows >= width are
                                   0), so a 4-stream group reads as its 32-bit word when
                                   cfg.group_byte_order is "little"
    MEM.<s>.sram.commit  event     fires at every SRAM write (Write or Scatter commit)
    MEM.<s>.sram.addr    integer   the Write's address; -1 for a Scatter
    MEM.<s>.sram.lane<k> reg 8     the byte committed in lane k (0 where the lane was not written)
    MEM.<s>.sram.lane<k>_addr  integer  the address lane k's byte went to; -1 where the lane was not written
    hazards.<kind>       integer   running hazard counts (`state.HAZARDS`), held between changes (before the
                                   first change: 0 for a dump from cycle 0, else x)
Idle convention: an event is a one-cycle pulse. Every value above except the hazard counts is x (unknown) in
cycles where nothing happened, takes the event's value in the event's cycle and returns to x the next cycle
(text returns to ""); two equal events in consecutive cycles show as one value two cycles wide, and the event
vars (issue, land, commit) tell them apart. Time: `time="cycles"` (default) writes cycle c at time c with a
1 ns timescale, so the viewer's nanoseconds read as cycles; `time="real"` writes true time at `cfg.clock_hz`
with a 1 ps timescale (cycle c at round(c * 1e12 / clock_hz) ps).

Perfetto (`perfetto_events`, `write_perfetto`): `{"traceEvents": [...], "displayTimeUnit": "ns"}`. One process
per unit kind (pid 1 MEM, 2 VXM, 3 MXM, 4 SXM) and pid 5 "hazards"; in each, one thread (track) per queue (named
as the queue), one per output port ("MEM.W1.port", "SXM.E.0.port2") and, for MEM, one per slice's SRAM
commits ("MEM.W1.sram"). Each issued instruction is a complete event ("ph": "X") on its queue's track: name the
decoded text, ts its cycle, dur its occupancy of the queue (`isa.occupancy`: 2 cycles for ABC.f16, else 1),
args {"row": the encoded row, "queue", "cycle"}. Each landed result is an instant event ("ph": "i", thread
scope) on its port's track, named by its streams ("E3", "W4..W7"), args {"port", "sid", "width", "cycle",
"bytes": [[byte of lane k for the chosen lanes] for each row < width]}; each SRAM commit an instant event on
the slice's sram track ("Write 0x1f" or "Scatter"), args {"slice", "addr", "lane_addr", "bytes", "cycle"}.
Hazard counts are a counter event ("ph": "C", name "hazards", args {kind: count}) at every cycle where they
changed. Time: ts is in the format's microseconds; `time="cycles"` (default) gives ts = cycle, so 1 cycle shows
as 1 us; `time="real"` gives true time (ts = cycle * 1e6 / clock_hz). Events come in time order; the metadata
("M": process_name, thread_name, thread_sort_index) of a track comes just before its first event, so tracks
with no events do not show.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction

import numpy as np

from . import isa
from .config import ChipConfig
from .diff import producer_queue
from .state import HAZARDS, SXM_PORTS, n_ports, port_name
from .trace import Events, columns

__all__ = [
    "EXPORTED",
    "perfetto_events",
    "port_scope",
    "unit_selection",
    "write_perfetto",
    "write_vcd",
]

EXPORTED = ("issue", "land", "commit", "hazards")
"""The event signals the viewers show (`streams`, the whole register file, is not exported)."""

_PIDS = {"MEM": 1, "VXM": 2, "MXM": 3, "SXM": 4, "hazards": 5}


# --------------------------------------------------------------------------- naming and selection
def port_scope(cfg: ChipConfig, port: int) -> str:
    """The name of an output port: "MEM.W1.port", "VXM.2.port", "MXM.0.port", "SXM.E.1.port3"."""
    M, A, Pl = cfg.n_mem, cfg.vxm_alus, cfg.n_planes
    if not 0 <= port < n_ports(cfg):
        raise ValueError(f"port {port} out of range 0..{n_ports(cfg) - 1} on {cfg.name}")
    if port < M:
        return f"MEM.{cfg.mem_names[port]}.port"
    if port < M + A:
        return f"VXM.{port - M}.port"
    if port < M + A + Pl:
        return f"MXM.{port - M - A}.port"
    u, k = divmod(port - M - A - Pl, SXM_PORTS)
    return f"SXM.{cfg.sxm_names[u // cfg.sxm_units]}.{u % cfg.sxm_units}.port{k}"


def _examples(names: tuple[str, ...]) -> str:
    return ", ".join(names[:3]) + (f", ..., {names[-1]}" if len(names) > 3 else "")


def _indices(given, names: tuple[str, ...], aliases: dict[str, int], what: str, cfg: ChipConfig) -> np.ndarray:
    """bool [len(names)]: which of `names` to keep (all for None); `given` holds names, aliases or indices."""
    keep = np.zeros(len(names), bool)
    if given is None:
        keep[:] = True
        return keep
    if isinstance(given, (str, int, np.integer)):
        given = [given]
    lookup = {n: i for i, n in enumerate(names)} | aliases
    for g in given:
        if isinstance(g, (int, np.integer)) and not isinstance(g, bool):
            if not 0 <= g < len(names):
                raise ValueError(f"{what} index {g} out of range 0..{len(names) - 1} on {cfg.name}")
            keep[int(g)] = True
        elif isinstance(g, str) and g in lookup:
            keep[lookup[g]] = True
        else:
            raise ValueError(f"unknown {what} {g!r} on {cfg.name} ({what} names look like {_examples(names)})")
    return keep


class _Selection:
    """The chosen queues, ports, MEM slices and lanes, checked."""

    def __init__(self, cfg: ChipConfig, queues, ports, slices, lanes):
        self.queue_names = isa.queue_names(cfg)
        self.port_names = tuple(port_scope(cfg, p) for p in range(n_ports(cfg)))
        port_alias = {n.rsplit(".", 1)[0]: i for i, n in enumerate(self.port_names) if n.endswith(".port")}
        self.slice_names = tuple(f"MEM.{n}" for n in cfg.mem_names)
        slice_alias = {n: i for i, n in enumerate(cfg.mem_names)}
        self.queues = _indices(queues, self.queue_names, {}, "queue", cfg)
        self.ports = _indices(ports, self.port_names, port_alias, "port", cfg)
        self.slices = _indices(slices, self.slice_names, slice_alias, "MEM slice", cfg)
        try:
            lo, hi = (int(x) for x in lanes)
        except (TypeError, ValueError):
            raise ValueError(f"lanes must be a (start, stop) pair of ints, got {lanes!r}") from None
        if not 0 <= lo < hi <= cfg.n_lanes:
            raise ValueError(f"lanes ({lo}, {hi}) must satisfy 0 <= start < stop <= {cfg.n_lanes} on {cfg.name}")
        self.lanes = range(lo, hi)


def unit_selection(cfg: ChipConfig, names: Iterable[str]) -> dict[str, list[int]]:
    """{"queues", "ports", "slices": indices} of the units or queues named.

    A name selects every queue it names or contains ("MEM.W1", "MXM.0.W", "MXM.0", "SXM.E", "VXM"), the output
    ports of those units ("MXM.0.W" selects plane 0's port; "SXM.E.1" its four ports) and, for MEM, the slices'
    SRAM commits. A name that matches nothing raises ValueError.
    """
    if isinstance(names, str):
        names = [names]
    qn = isa.queue_names(cfg)
    pn = [port_scope(cfg, p).rsplit(".", 1)[0] for p in range(n_ports(cfg))]  # the port's unit
    sn = [f"MEM.{n}" for n in cfg.mem_names]

    def hit(unit: str, name: str) -> bool:
        return unit == name or unit.startswith(name + ".") or name.startswith(unit + ".")

    out: dict[str, set[int]] = {"queues": set(), "ports": set(), "slices": set()}
    for name in names:
        q = {i for i, u in enumerate(qn) if u == name or u.startswith(name + ".")}
        if not q:
            raise ValueError(f"no queue or unit named {name!r} on {cfg.name} (names look like {_examples(qn)})")
        out["queues"] |= q
        out["ports"] |= {i for i, u in enumerate(pn) if hit(u, name)}
        out["slices"] |= {i for i, u in enumerate(sn) if hit(u, name)}
    return {k: sorted(v) for k, v in out.items()}


def _signals(signals, first: Events | None) -> tuple[str, ...]:
    """The signals to export: checked `signals`, or those of EXPORTED that the first chunk holds."""
    if signals is None:
        if first is None:
            return EXPORTED
        out = tuple(s for s in EXPORTED if s in first)
        if not out:
            have = ", ".join(first) or "none"
            raise ValueError(f"the events hold none of the exported signals ({', '.join(EXPORTED)}); they hold {have}")
        return out
    if isinstance(signals, str):
        signals = [signals]
    signals = tuple(signals)
    for s in signals:
        if s == "streams":
            raise ValueError(f"the streams signal is not exported (too large); choose from {', '.join(EXPORTED)}")
        if s not in EXPORTED:
            raise ValueError(f"unknown signal {s!r}; exported signals: {', '.join(EXPORTED)}")
    if len(set(signals)) != len(signals):
        raise ValueError(f"signals named twice: {signals}")
    return signals


class _Chunks:
    """Checks each chunk (signals present, columns, time order) while iterating."""

    def __init__(self, cfg: ChipConfig, chunks: Iterable[Events], signals):
        if isinstance(chunks, dict):
            raise ValueError("chunks must be an iterable of Events (e.g. [events]), not one Events dict")
        self.cfg = cfg
        self.it = iter(chunks)
        self.first = next(self.it, None)
        self.signals = _signals(signals, self.first)
        self.last = None  # last cycle of the previous chunks
        self.k = 0

    def __iter__(self) -> Iterator[Events]:
        if self.first is not None:
            first, self.first = self.first, None  # held no longer than its turn
            yield self._check(first)
        for ch in self.it:
            yield self._check(ch)

    def _check(self, ch: Events) -> Events:
        k = self.k
        self.k += 1
        if not isinstance(ch, dict):
            raise ValueError(f"event chunk {k} is a {type(ch).__name__}, not an Events dict")
        lo = None
        for s in self.signals:
            if s not in ch:
                have = ", ".join(ch) or "none"
                raise ValueError(f"the trace has no {s!r} events (event chunk {k} holds: {have})")
            cols = ch[s]
            for c, (_, shape) in columns(self.cfg, s).items():
                if c not in cols:
                    raise ValueError(f"event chunk {k}: signal {s!r} lacks column {c!r}")
                if tuple(np.shape(cols[c])[1:]) != shape or len(cols[c]) != len(cols["cycle"]):
                    raise ValueError(
                        f"event chunk {k}: {s}.{c} has shape {np.shape(cols[c])}, expected [n, *{shape}] "
                        f"with n = {len(cols['cycle'])} (events of another config?)"
                    )
            cyc = np.asarray(cols["cycle"])
            if len(cyc):
                if (np.diff(cyc) < 0).any():
                    raise ValueError(f"event chunk {k}: {s} events are not sorted by cycle")
                lo = int(cyc[0]) if lo is None else min(lo, int(cyc[0]))
        if lo is not None and self.last is not None and lo <= self.last:
            raise ValueError(
                f"event chunks out of order: chunk {k} starts at cycle {lo}, not after cycle {self.last} "
                "of the chunks before it"
            )
        for s in self.signals:
            cyc = ch[s]["cycle"]
            if len(cyc):
                self.last = int(cyc[-1]) if self.last is None else max(self.last, int(cyc[-1]))
        return ch


def _check_time(time: str) -> None:
    if time not in ("cycles", "real"):
        raise ValueError(f"time must be 'cycles' or 'real', got {time!r}")


class _Text:
    """Decoded instruction text of encoded rows, cached."""

    def __init__(self, cfg: ChipConfig):
        self.cfg, self.cache = cfg, {}

    def __call__(self, row: list[int], where: str) -> tuple[str, int]:
        key = tuple(row)
        if key not in self.cache:
            try:
                ins = isa.decode_row(self.cfg, row)
            except ValueError as e:
                raise ValueError(f"{where}: the issued row {list(row)} does not decode: {e}") from None
            self.cache[key] = (str(ins), isa.occupancy(ins.mnemonic))
        return self.cache[key]


def _land_words(data: np.ndarray, lanes: range) -> np.ndarray:
    """int64 [n, len(lanes)]: per lane, the group's bytes with row r in bits 8r..8r+7."""
    d = np.asarray(data, np.int64)[:, :, lanes.start : lanes.stop]
    return d[:, 0] | (d[:, 1] << 8) | (d[:, 2] << 16) | (d[:, 3] << 24)


def _stream_text(cfg: ChipConfig, sid: int, width: int) -> str:
    S = cfg.n_streams
    d, i = "EW"[sid // S], sid % S
    return f"{d}{i}" if width <= 1 else f"{d}{i}..{d}{i + width - 1}"


@contextmanager
def _text_out(out):
    """A text file to write: `out` itself if it has .write, else a path opened for writing (removed again if
    writing fails, so that no half-written file is left)."""
    if hasattr(out, "write"):
        yield out
        return
    path = os.fspath(out)
    f = open(path, "w", encoding="utf-8", newline="\n")
    try:
        with f:
            yield f
    except BaseException:
        os.remove(path)
        raise


# --------------------------------------------------------------------------- VCD
def write_vcd(
    out,
    cfg: ChipConfig,
    chunks: Iterable[Events],
    signals: Iterable[str] | None = None,
    *,
    queues=None,
    ports=None,
    slices=None,
    lanes: tuple[int, int] = (0, 4),
    time: str = "cycles",
    start: int = 0,
    stop: int | None = None,
    hazards0=None,
) -> int:
    """Write the events of `chunks` as a VCD file (module docstring: variables, idle convention, time).

    `out`: a path or a text file. `start`: the cycle the dump begins at (the initial values, all idle); `stop`:
    the cycle it ends at (default: the cycle after the last change). `hazards0`: the hazard counts before the
    first change (default: zeros when `start` is 0, a run recorded from a fresh machine; else x, unknown, since
    events record only changes). Returns the number of events written (issues, landings, commits and hazard
    changes).
    """
    from vcd import VCDWriter

    _check_time(time)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a cycle >= 0, got {start!r}")
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, (int, np.integer)) or stop < start):
        raise ValueError(f"stop must be a cycle >= start ({start}), got {stop!r}")
    sel = _Selection(cfg, queues, ports, slices, lanes)
    src = _Chunks(cfg, chunks, signals)
    sigs = src.signals
    if hazards0 is None:
        h0 = [0] * len(HAZARDS) if start == 0 else ["x"] * len(HAZARDS)
    else:
        h0 = [int(x) for x in np.asarray(hazards0, np.int64).reshape(-1)]
        if len(h0) != len(HAZARDS):
            raise ValueError(f"hazards0 must hold {len(HAZARDS)} counts ({', '.join(HAZARDS)}), got {len(h0)}")
    if time == "cycles":
        scale, ratio = "1 ns", Fraction(1)
    else:
        scale, ratio = "1 ps", Fraction(10**12) / Fraction(cfg.clock_hz)

    def at(c: int) -> int:
        return round(c * ratio)

    with _text_out(out) as f:
        w = VCDWriter(
            f,
            timescale=scale,
            date="",
            version="lpu_jax.export",
            comment=f"{cfg.name}; time: {time} ({'1 ns = 1 cycle' if time == 'cycles' else f'{cfg.clock_hz:g} Hz'})",
            init_timestamp=at(start),
        )
        st = _VcdState(w, cfg, sel, sigs, h0, start)
        for ch in src:
            st.chunk(ch, at)
        st.flush(None, at)
        end = st.end if stop is None else max(stop, st.end or stop)
        w.close(at(end) if end is not None else None)
    return st.n_events


class _VcdState:
    """VCD variables and the idle returns still to write (they wait for the next chunk: it may have events at
    the same cycle)."""

    def __init__(self, w, cfg: ChipConfig, sel: _Selection, sigs: tuple[str, ...], h0: list, start: int):
        self.w, self.cfg, self.sel, self.sigs, self.start = w, cfg, sel, sigs, start
        self.vars: list = []  # index -> pyvcd variable
        self.idle: list = []  # index -> idle value (None: holds, no idle return)
        self.text = _Text(cfg)
        self.q: dict[int, tuple[int, int, int]] = {}
        self.p: dict[int, tuple[int, int, int, list[int]]] = {}
        self.m: dict[int, tuple[int, int, list[int], list[int]]] = {}
        self.h: list[int] = []
        self.pending: dict[int, set[int]] = {}  # cycle -> var indices to return to idle then
        self.n_events = 0
        self.end: int | None = None
        self._register(h0)
        w.flush()  # the header and the initial (idle) values at the start time

    def _var(self, scope: str, name: str, kind: str, size=None, init=None, idle="x") -> int:
        self.vars.append(self.w.register_var(scope, name, kind, size=size, init=init))
        self.idle.append(idle)
        return len(self.vars) - 1

    def _register(self, h0: list) -> None:
        sel, lanes = self.sel, self.sel.lanes
        if "issue" in self.sigs:
            for q in np.nonzero(sel.queues)[0]:
                s = sel.queue_names[q]
                ev = self._var(s, "issue", "event", idle=None)
                self.q[int(q)] = (
                    ev,
                    self._var(s, "op", "integer", 32, "x"),
                    self._var(s, "text", "string", init="", idle=""),
                )
        if "land" in self.sigs:
            for p in np.nonzero(sel.ports)[0]:
                s = sel.port_names[p]
                ev = self._var(s, "land", "event", idle=None)
                sid, width = self._var(s, "sid", "integer", 32, "x"), self._var(s, "width", "integer", 32, "x")
                self.p[int(p)] = (ev, sid, width, [self._var(s, f"lane{k}", "reg", 32, "x") for k in lanes])
        if "commit" in self.sigs:
            for m in np.nonzero(sel.slices)[0]:
                s = sel.slice_names[m] + ".sram"
                ev, addr = self._var(s, "commit", "event", idle=None), self._var(s, "addr", "integer", 32, "x")
                data = [self._var(s, f"lane{k}", "reg", 8, "x") for k in lanes]
                la = [self._var(s, f"lane{k}_addr", "integer", 32, "x") for k in lanes]
                self.m[int(m)] = (ev, addr, data, la)
        if "hazards" in self.sigs:
            self.h = [self._var("hazards", k, "integer", 64, v, idle=None) for k, v in zip(HAZARDS, h0)]

    def chunk(self, ch: Events, at) -> None:
        changes: dict[int, dict[int, object]] = {}

        def put(c: int, items) -> None:
            d = changes.setdefault(c, {})
            for v, x in items:
                d[v] = x

        if "issue" in self.sigs:
            e = ch["issue"]
            for c, q, row in zip(e["cycle"].tolist(), e["queue"].tolist(), np.asarray(e["row"]).tolist()):
                if q in self.q:
                    ev, op, tx = self.q[q]
                    text = self.text(row, f"cycle {c}, queue {self.sel.queue_names[q]}")[0]
                    put(c, ((ev, True), (op, int(row[0])), (tx, text)))
                    self.n_events += 1
        if "land" in self.sigs:
            e = ch["land"]
            words = _land_words(e["data"], self.sel.lanes).tolist()
            for c, p, sid, wd, ws in zip(
                e["cycle"].tolist(), e["port"].tolist(), e["sid"].tolist(), e["width"].tolist(), words
            ):
                if p in self.p:
                    ev, vs, vw, vl = self.p[p]
                    put(c, ((ev, True), (vs, sid), (vw, wd), *zip(vl, ws)))
                    self.n_events += 1
        if "commit" in self.sigs:
            e = ch["commit"]
            lo, hi = self.sel.lanes.start, self.sel.lanes.stop
            data = np.asarray(e["data"])[:, lo:hi].tolist()
            la = np.asarray(e["lanes"])[:, lo:hi].tolist()
            for c, m, a, d, ln in zip(e["cycle"].tolist(), e["slice"].tolist(), e["addr"].tolist(), data, la):
                if m in self.m:
                    ev, va, vd, vla = self.m[m]
                    eff = [a if a >= 0 else x for x in ln]
                    put(c, ((ev, True), (va, a), *zip(vd, d), *zip(vla, eff)))
                    self.n_events += 1
        if "hazards" in self.sigs:
            e = ch["hazards"]
            for c, cnt in zip(e["cycle"].tolist(), np.asarray(e["count"]).tolist()):
                put(c, zip(self.h, cnt))
                self.n_events += 1
        if changes:
            self.flush(max(changes), at, changes)

    def flush(self, upto: int | None, at, changes=None) -> None:
        """Write the changes and idle returns of cycles <= upto (all when None)."""
        changes = changes or {}
        ct = sorted(changes)
        if ct and ct[0] < self.start:
            raise ValueError(f"an event at cycle {ct[0]} comes before the dump's start, cycle {self.start}")
        w, vars_, idle = self.w, self.vars, self.idle
        i = 0
        while True:  # the next cycle with events or idle returns (those at most one cycle after an event)
            tc = ct[i] if i < len(ct) else None
            tp = min(self.pending) if self.pending else None
            if tp is not None and upto is not None and tp > upto:
                tp = None
            if tc is None and tp is None:
                break
            t = tc if tp is None or (tc is not None and tc <= tp) else tp
            if t == tc:
                i += 1
            now = changes.get(t, {})
            back = self.pending.pop(t, set()) - now.keys()
            ts = at(t)
            for v in sorted(set(now) | back):
                w.change(vars_[v], ts, now[v] if v in now else idle[v])
            nxt = [v for v in now if idle[v] is not None]
            if nxt:
                self.pending.setdefault(t + 1, set()).update(nxt)
            self.end = t + 1 if self.end is None else max(self.end, t + 1)
        if upto is None:
            assert not self.pending


# --------------------------------------------------------------------------- Perfetto
def perfetto_events(
    cfg: ChipConfig,
    chunks: Iterable[Events],
    signals: Iterable[str] | None = None,
    *,
    queues=None,
    ports=None,
    slices=None,
    lanes: tuple[int, int] = (0, 4),
    time: str = "cycles",
) -> Iterator[dict]:
    """Chrome trace events (dicts) of the events of `chunks`, in time order (module docstring: tracks, time)."""
    _check_time(time)
    sel = _Selection(cfg, queues, ports, slices, lanes)
    src = _Chunks(cfg, chunks, signals)
    return _perfetto(cfg, sel, src, time)


def _perfetto(cfg: ChipConfig, sel: _Selection, src: _Chunks, time: str) -> Iterator[dict]:
    sigs = src.signals
    scale = 1 if time == "cycles" else 1e6 / cfg.clock_hz  # ts units (us) per cycle
    text = _Text(cfg)
    lo, hi = sel.lanes.start, sel.lanes.stop
    pwords = [port_name(cfg, p) for p in range(n_ports(cfg))]
    named_p: set[int] = set()
    named_t: set[tuple[int, int]] = set()

    def meta(pid: int, tid: int, name: str, order: int) -> Iterator[dict]:
        if pid not in named_p:
            named_p.add(pid)
            pname = next(k for k, v in _PIDS.items() if v == pid)
            yield {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": pname}}
            yield {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        if (pid, tid) not in named_t and tid:
            named_t.add((pid, tid))
            yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            yield {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": order}}

    for ch in src:
        rows: list[tuple[int, int, int, object]] = []  # (cycle, kind, index, payload) sorted: time order
        if "issue" in sigs:
            e = ch["issue"]
            for c, q, row in zip(e["cycle"].tolist(), e["queue"].tolist(), np.asarray(e["row"]).tolist()):
                if sel.queues[q]:
                    rows.append((c, 0, q, row))
        if "land" in sigs:
            e = ch["land"]
            data = np.asarray(e["data"])[:, :, lo:hi].tolist()
            for c, p, sid, wd, d in zip(
                e["cycle"].tolist(), e["port"].tolist(), e["sid"].tolist(), e["width"].tolist(), data
            ):
                if sel.ports[p]:
                    rows.append((c, 1, p, (sid, wd, d[:wd])))
        if "commit" in sigs:
            e = ch["commit"]
            data = np.asarray(e["data"])[:, lo:hi].tolist()
            la = np.asarray(e["lanes"])[:, lo:hi].tolist()
            for c, m, a, d, ln in zip(e["cycle"].tolist(), e["slice"].tolist(), e["addr"].tolist(), data, la):
                if sel.slices[m]:
                    rows.append((c, 2, m, (a, d, ln)))
        if "hazards" in sigs:
            e = ch["hazards"]
            for c, cnt in zip(e["cycle"].tolist(), np.asarray(e["count"]).tolist()):
                rows.append((c, 3, 0, cnt))
        rows.sort(key=lambda r: r[:3])
        for c, kind, i, x in rows:
            ts = c * scale
            if kind == 0:
                name = sel.queue_names[i]
                pid, tid = _PIDS[isa.queue_unit(name)], i + 1
                yield from meta(pid, tid, name, 10 * i)
                txt, occ = text(x, f"cycle {c}, queue {name}")
                args = {"row": x, "queue": name, "cycle": c}
                yield {
                    "name": txt,
                    "cat": "issue",
                    "ph": "X",
                    "pid": pid,
                    "tid": tid,
                    "ts": ts,
                    "dur": occ * scale,
                    "args": args,
                }
            elif kind == 1:
                sid, wd, d = x
                name = sel.port_names[i]
                pid, tid = _PIDS[name.split(".", 1)[0]], 1001 + i
                yield from meta(pid, tid, name, 10 * producer_queue(cfg, i)[0] + 5)
                args = {"port": pwords[i], "sid": sid, "width": wd, "cycle": c, "lanes": [lo, hi], "bytes": d}
                yield {
                    "name": _stream_text(cfg, sid, wd),
                    "cat": "land",
                    "ph": "i",
                    "s": "t",
                    "pid": pid,
                    "tid": tid,
                    "ts": ts,
                    "args": args,
                }
            elif kind == 2:
                a, d, ln = x
                name = sel.slice_names[i] + ".sram"
                pid, tid = _PIDS["MEM"], 2001 + i
                yield from meta(pid, tid, name, 10 * i + 8)
                eff = [a if a >= 0 else v for v in ln]
                args = {
                    "slice": sel.slice_names[i],
                    "addr": a,
                    "lane_addr": eff,
                    "lanes": [lo, hi],
                    "bytes": d,
                    "cycle": c,
                }
                label = f"Write {a:#x}" if a >= 0 else "Scatter"
                yield {
                    "name": label,
                    "cat": "commit",
                    "ph": "i",
                    "s": "t",
                    "pid": pid,
                    "tid": tid,
                    "ts": ts,
                    "args": args,
                }
            else:
                pid = _PIDS["hazards"]
                yield from meta(pid, 0, "", 0)
                yield {"name": "hazards", "ph": "C", "pid": pid, "tid": 0, "ts": ts, "args": dict(zip(HAZARDS, x))}


def write_perfetto(
    out,
    cfg: ChipConfig,
    chunks: Iterable[Events],
    signals: Iterable[str] | None = None,
    *,
    queues=None,
    ports=None,
    slices=None,
    lanes: tuple[int, int] = (0, 4),
    time: str = "cycles",
) -> int:
    """Write `perfetto_events` as a Chrome trace-event JSON file, one event a line, streaming (the array is never
    built). `out`: a path or a text file. Returns the number of trace events written (metadata included)."""
    events = perfetto_events(cfg, chunks, signals, queues=queues, ports=ports, slices=slices, lanes=lanes, time=time)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    n = 0
    with _text_out(out) as f:
        f.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        for ev in events:
            f.write((",\n" if n else "") + encode(ev))
            n += 1
        f.write("\n]}\n")
    return n
