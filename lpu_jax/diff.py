"""First-divergence reports: where two runs of the chip part, in words a verification engineer can act on.

Two implementations (lpu_jax and an RTL or C++ model, or two versions of one) are compared on their trace
**events** (`lpu_jax.trace`: issue, land, commit, streams, hazards) or on their **states** (a `MachineState` or a
MEM image). A report names the first divergence as

    cycle 18,211, MEM slice W17, stream E5, lane 203: expected 0x3c, got 0x3d,
    written by `Read 0x1a0, E5` issued at cycle 18,209 on MEM.W17

and counts every divergence, per signal. "Expected" is the first argument (normally lpu_jax), "actual" the second.

    rep = compare_events(cfg, expected, actual, mask=Mask.parse(ignore=["hazards"]))
    rep.equal, rep.count, rep.count["land"], rep.first, rep.items, str(rep), rep.to_dict()
    rep = compare_states(cfg, state_a, state_b)          # leaf by leaf; MEM images work too

Matching (events): rows are matched by key, issue by (cycle, queue), land by (cycle, port), commit by (cycle,
slice), streams and hazards by cycle. A key on one side only is one divergence (`kind` "only_expected" or
"only_actual"); a matched row whose columns differ is one divergence (`kind` "differs"), described by its first
differing column and, for byte columns, its first differing byte (lowest stream row, then lowest lane).
Divergences are ordered by cycle, then signal (issue, land, commit, streams, hazards), then queue/port/slice.

Producers: a land divergence names the instruction whose result landed: the one issued on the queue that feeds
the port (MEM port m <- queue m; VXM ALU a <- queue M + a; MXM plane p <- `MXM.p.C`; an SXM unit's ports <- its
queue; docs/isa.md §2) at cycle c - d, d its result delay (docs/isa.md §6, docs/mxm.md, docs/sxm.md), taken
from the expected side's issue events. When two such instructions land on one port in one cycle the later
issue wins (a `port_conflict`, docs/isa.md §8), and so is named. A commit divergence names the Write/Scatter
issued d(Write) / d(Scatter) before it on that slice.

Long runs: `Differ` takes the events chunk by chunk (in cycle order) and keeps only the counts, the first
`limit` divergences and the last few cycles of issue events (for producers), so traces never need to be whole
in memory; `compare_events` is one `Differ.add`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from . import isa
from .config import ChipConfig
from .dtypes import DTYPES
from .state import HAZARDS, SXM_PORTS, MachineState, n_ports, port_name
from .trace import SIGNALS, Events, columns

__all__ = [
    "Count",
    "Differ",
    "Divergence",
    "Mask",
    "Producer",
    "Report",
    "compare_events",
    "compare_states",
    "find_commit_producer",
    "find_producer",
    "find_producers",
    "producer_queue",
    "result_delay",
    "stream_name",
]

_KEY = {"issue": "queue", "land": "port", "commit": "slice"}
_ORDER = {s: i for i, s in enumerate(SIGNALS)}
_VXM_BY_INDEX = {v[0]: k for k, v in isa.VXM_OPS.items()}
_DTYPE_NAME = {d.code: d.name for d in DTYPES}
_SXM_BY_OPCODE = {isa.opcode(m): m for m in isa.SXM_SIGS}
NO_ISSUE = "producer unknown: the trace has no issue events"


def stream_name(cfg: ChipConfig, sid: int) -> str:
    """Stream id -> its name: dir = sid // S ("E" 0, "W" 1), index = sid % S; e.g. "E5", "W3"."""
    S = cfg.n_streams
    sid = int(sid)
    if not 0 <= sid < 2 * S:
        return f"stream id {sid} (out of range)"
    return f"{'EW'[sid // S]}{sid % S}"


def _instr(cfg: ChipConfig, row) -> str:
    """The assembly text of an encoded row, or the raw row where it does not decode."""
    row = [int(v) for v in np.asarray(row).reshape(-1)]
    try:
        return str(isa.decode_row(cfg, row))
    except (ValueError, KeyError, IndexError, AttributeError):
        return f"row {row}"


# ============================================================================ masks
def _span(text: str, what: str) -> tuple[int, int]:
    """ "A:B" -> (A, B) meaning A <= x < B; "A:" and ":B" leave a side open; "A" is (A, A + 1)."""
    s = str(text).strip()
    try:
        if ":" in s:
            lo, hi = s.split(":", 1)
            a = int(lo, 0) if lo.strip() else 0
            b = int(hi, 0) if hi.strip() else 2**62
        else:
            a = int(s, 0)
            b = a + 1
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not START:STOP (integers; either side may be left out)") from None
    if a < 0 or b <= a:
        raise ValueError(f"{what}: {text!r} must have 0 <= START < STOP")
    return a, b


@dataclasses.dataclass(frozen=True)
class Mask:
    """What a comparison ignores. Masked differences are not counted.

    signals   whole signals ("hazards") or, for states, leaves and their groups ("mem", "icu", "mxm.acc")
    columns   event columns "signal.column" ("land.data", "issue.row", "commit.addr")
    cycles    cycle windows (start, stop): start <= cycle < stop
    lanes     lane windows (start, stop): bytes in these lanes (land/commit/streams data, MEM, stream registers)
    queues    queue indices or names ("MEM.W17"), for issue events
    ports     output port indices (`state.port_name` order), for land events
    slices    MEM slice indices or names ("W17"), for commit events and MEM state
    """

    signals: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    cycles: tuple[tuple[int, int], ...] = ()
    lanes: tuple[tuple[int, int], ...] = ()
    queues: tuple[int | str, ...] = ()
    ports: tuple[int, ...] = ()
    slices: tuple[int | str, ...] = ()

    @classmethod
    def parse(
        cls,
        ignore: Iterable[str] = (),
        cycles: Iterable[str] = (),
        lanes: Iterable[str] = (),
        queues: Iterable[str] = (),
        ports: Iterable[str] = (),
        slices: Iterable[str] = (),
    ) -> Mask:
        """From command-line strings: `ignore` "hazards" or "land.data"; `cycles`/`lanes` "100:200" (start
        inclusive, stop exclusive; "100:" and ":200" leave a side open; "7" alone is 7:8); `queues` "MEM.W17" or
        an index; `ports` an index; `slices` "W17" or an index."""
        sig, col = [], []
        for item in ignore:
            item = str(item).strip()
            if not item:
                raise ValueError("--ignore: empty name")
            head, _, tail = item.partition(".")
            if tail and head in _KEY.keys() | {"streams", "hazards"}:
                known = columns_of(head)
                if tail not in known:
                    raise ValueError(f"--ignore {item}: {head} has no column {tail!r}; its columns: {', '.join(known)}")
                col.append(item)
            else:
                sig.append(item)
        ports_i = []
        for p in ports:
            try:
                ports_i.append(int(str(p), 0))
            except ValueError:
                raise ValueError(f"--ignore-port: {p!r} is not a port index") from None
        as_int = lambda v: int(v) if str(v).strip().isdigit() else str(v).strip()  # noqa: E731
        return cls(
            signals=tuple(sig),
            columns=tuple(col),
            cycles=tuple(_span(c, "--ignore-cycles") for c in cycles),
            lanes=tuple(_span(c, "--ignore-lanes") for c in lanes),
            queues=tuple(as_int(q) for q in queues),
            ports=tuple(ports_i),
            slices=tuple(as_int(s) for s in slices),
        )

    def resolve(self, cfg: ChipConfig) -> _Resolved:
        """Check the mask against `cfg` (names exist, indices in range) and build its lookup tables."""
        names = isa.queue_names(cfg)
        Q, N, M, L = len(names), n_ports(cfg), cfg.n_mem, cfg.n_lanes

        def index(v, table, n, what):
            if isinstance(v, str):
                if v in table:
                    return table.index(v)
                raise ValueError(f"no {what} named {v!r} on {cfg.name}; known: {', '.join(table)}")
            if not 0 <= int(v) < n:
                raise ValueError(f"{what} index {v} out of range 0..{n - 1} on {cfg.name}")
            return int(v)

        for c in self.columns:
            head, _, tail = c.partition(".")
            if head not in SIGNALS or tail not in columns_of(head):
                raise ValueError(f"unknown column {c!r} to ignore")
        q = np.zeros(Q, bool)
        q[[index(v, names, Q, "queue") for v in self.queues]] = True
        p = np.zeros(N, bool)
        p[[index(v, (), N, "output port") for v in self.ports]] = True
        m = np.zeros(M, bool)
        m[[index(v, cfg.mem_names, M, "MEM slice") for v in self.slices]] = True
        lanes = np.zeros(L, bool)
        for a, b in self.lanes:
            if a >= L:
                raise ValueError(f"lane window {a}:{b} starts past the last lane ({L - 1}) of {cfg.name}")
            lanes[a:b] = True
        return _Resolved(self, {"issue": q, "land": p, "commit": m}, lanes)

    @property
    def empty(self) -> bool:
        return not any(dataclasses.astuple(self))


def columns_of(signal: str) -> tuple[str, ...]:
    """The maskable columns of an event signal (all but cycle and the key)."""
    from .config import tiny

    return tuple(k for k in columns(tiny(), signal) if k not in ("cycle", _KEY.get(signal)))


class _Resolved:
    """A mask checked against a config: boolean tables of ignored keys and lanes."""

    def __init__(self, mask: Mask, keys: dict[str, np.ndarray], lanes: np.ndarray):
        self.mask, self.keys, self.lanes = mask, keys, lanes
        self.any_lane = bool(lanes.any())

    def signal(self, name: str) -> bool:
        """True if the whole signal (or state leaf `name`, or a group above it) is ignored."""
        return any(name == s or name.startswith(s + ".") for s in self.mask.signals)

    def column(self, signal: str, col: str) -> bool:
        return f"{signal}.{col}" in self.mask.columns

    def cycles(self, cyc: np.ndarray) -> np.ndarray:
        """bool [n]: which cycles are ignored."""
        out = np.zeros(len(cyc), bool)
        for a, b in self.mask.cycles:
            out |= (cyc >= a) & (cyc < b)
        return out


# ============================================================================ producers
class Producer(NamedTuple):
    """The instruction that produced a value: issued at `cycle` on queue `queue` (a name); `text` its assembly."""

    cycle: int
    queue: str
    text: str
    row: tuple[int, ...]

    def __str__(self) -> str:
        return f"`{self.text}` issued at cycle {self.cycle:,} on {self.queue}"


def result_delay(cfg: ChipConfig, row) -> int | None:
    """Cycles from issue to the landing of an instruction's stream result; None if it puts nothing on a stream.

    Read d(Read), Gather d(Gather) (docs/isa.md §6.2); a VXM op d(`isa.vxm_delay_class(op, T)`) (§6.3); an ACC
    with the emit bit d(mxm.acc) (docs/mxm.md "Timing"); an SXM move its class delay plus its superlane stagger
    (docs/sxm.md "Timing", `sxm.sxm_delay`). Write, Scatter, LW, IW, ABC and ICU instructions land nothing.
    """
    from .sxm import sxm_delay

    op = int(row[0])
    if op == isa.READ:
        return cfg.delay("Read")
    if op == isa.GATHER:
        return cfg.delay("Gather")
    if op == isa.ACC:
        return cfg.delay("mxm.acc") if int(row[3]) & isa.ACC_EMIT else None
    if op in _SXM_BY_OPCODE:
        m = _SXM_BY_OPCODE[op]
        n = int(row[4]) if m.startswith(("Shift", "Rotate")) else 0
        if not 0 <= n < cfg.n_lanes:
            return None
        return sxm_delay(cfg, m, n)
    if op >= isa.VXM_BASE:
        name = _VXM_BY_INDEX.get(op - isa.VXM_BASE)
        t = _DTYPE_NAME.get(int(row[1]))
        if name is None or t is None:
            return None
        return cfg.delay(isa.vxm_delay_class(name, t))
    return None


def _result_groups(cfg: ChipConfig, row) -> list[tuple[int, int]]:
    """(port offset within the unit, stream id of the group base) of each result group an instruction lands."""
    op = int(row[0])
    if op in (isa.READ, isa.GATHER):
        return [(0, int(row[2]))]
    if op == isa.ACC:
        return [(0, int(row[2]))]
    if op == isa.TRANSPOSE:
        return [(k, int(row[2]) + 4 * k) for k in range(SXM_PORTS)]
    if op in _SXM_BY_OPCODE:
        return [(0, int(row[2]))]
    if op >= isa.VXM_BASE:
        return [(0, int(row[3]))]
    return []


def producer_queue(cfg: ChipConfig, port: int) -> tuple[int, int]:
    """(queue index, port offset within its unit) of the queue whose instructions land on output `port`."""
    M, A, Pl = cfg.n_mem, cfg.vxm_alus, cfg.n_planes
    port = int(port)
    if not 0 <= port < n_ports(cfg):
        raise ValueError(f"output port {port} out of range 0..{n_ports(cfg) - 1} on {cfg.name}")
    if port < M + A:
        return port, 0
    if port < M + A + Pl:
        return M + A + 3 * (port - M - A) + 2, 0  # MXM.p.C
    u, k = divmod(port - M - A - Pl, SXM_PORTS)
    return M + A + 3 * Pl + u, k


def _max_delay(cfg: ChipConfig) -> int:
    """An upper bound on any result or commit delay (the stagger of SXM moves included)."""
    return max(d for _, d in cfg.delays) + cfg.n_superlanes + 1


def find_producers(cfg: ChipConfig, issue: dict | None, port: int, cycle: int) -> list[Producer]:
    """Every instruction in `issue` (events, as `trace.to_events` makes them) whose result is due on output
    `port` at `cycle`, in issue order (more than one only on a port conflict, where the last one wins)."""
    if issue is None:
        return []
    q, k = producer_queue(cfg, port)
    cyc, queue, rows = issue["cycle"], issue["queue"], issue["row"]
    idx = np.nonzero((queue == q) & (cyc <= cycle) & (cyc >= cycle - _max_delay(cfg)))[0]
    name = isa.queue_names(cfg)[q]
    out = []
    for i in idx:
        row = rows[i]
        d = result_delay(cfg, row)
        if d is None or int(cyc[i]) + d != cycle or not any(off == k for off, _ in _result_groups(cfg, row)):
            continue
        out.append(Producer(int(cyc[i]), name, _instr(cfg, row), tuple(int(v) for v in row)))
    return sorted(out, key=lambda p: p.cycle)


def find_producer(cfg: ChipConfig, issue: dict | None, port: int, cycle: int) -> Producer | None:
    """The instruction whose result lands on output `port` at `cycle` (the later issue on a port conflict)."""
    found = find_producers(cfg, issue, port, cycle)
    return found[-1] if found else None


def find_commit_producer(cfg: ChipConfig, issue: dict | None, m: int, cycle: int) -> Producer | None:
    """The Write/Scatter committed on MEM slice m at `cycle` (docs/isa.md §6.2: the later issue wins)."""
    if issue is None:
        return None
    cyc, queue, rows = issue["cycle"], issue["queue"], issue["row"]
    dw, ds = cfg.delay("Write"), cfg.delay("Scatter")
    ok = (queue == m) & (
        ((rows[:, 0] == isa.WRITE) & (cyc + dw == cycle)) | ((rows[:, 0] == isa.SCATTER) & (cyc + ds == cycle))
    )
    idx = np.nonzero(ok)[0]
    if not len(idx):
        return None
    i = idx[np.argmax(cyc[idx])]
    return Producer(int(cyc[i]), isa.queue_names(cfg)[m], _instr(cfg, rows[i]), tuple(int(v) for v in rows[i]))


# ============================================================================ reports
class Count(int):
    """The number of divergences: an int (the total) that also answers per signal: `count["land"]`."""

    by_signal: dict[str, int]

    def __new__(cls, by_signal: dict[str, int]):
        obj = super().__new__(cls, sum(by_signal.values()))
        obj.by_signal = dict(by_signal)
        return obj

    def __getitem__(self, signal: str) -> int:
        return self.by_signal.get(signal, 0)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """One place where the two sides differ.

    cycle     the cycle (events), or None (states)
    signal    "issue", "land", "commit", "streams", "hazards" (events), or the state leaf ("mem", "icu.pc")
    kind      "differs", "only_expected" (an event the actual side lacks) or "only_actual"
    unit      the place in words: "MEM slice W17", "VXM ALU 2", "MEM.W17" (a queue), "stream registers at
              position 12", "hazard bank_conflict", or a state leaf with its index
    column    the first differing column ("data", "row", "sid", ...), None for a one-sided event
    stream    the stream, "E5" / "W3", where one is involved
    address   the SRAM address, where one is involved
    lane      the first differing lane, where bytes differ
    expected  the expected value: a byte or count (int) or a description (str)
    actual    the actual value, likewise
    producer  the instruction that produced the expected value (`Producer`), a str saying why it is unknown, or None
    lanes     how many bytes of this event (or leaf) differ (0 when not bytes)
    where     the queue / port / slice index (events), or the index tuple (states)
    """

    cycle: int | None
    signal: str
    kind: str
    unit: str
    column: str | None = None
    stream: str | None = None
    address: int | None = None
    lane: int | None = None
    expected: Any = None
    actual: Any = None
    producer: Producer | str | None = None
    lanes: int = 0
    where: Any = None
    hex: bool = dataclasses.field(default=False, repr=False)

    def _value(self, v) -> str:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return f"{int(v):#04x}" if self.hex else f"{int(v)}"
        return str(v)

    def __str__(self) -> str:
        place = [] if self.cycle is None else [f"cycle {self.cycle:,}"]
        place.append(self.unit)
        if self.stream is not None:
            place.append(f"stream {self.stream}")
        if self.address is not None:
            place.append(f"address {self.address:#x}")
        if self.lane is not None:
            place.append(f"lane {self.lane}")
        head = ", ".join(place)
        if self.kind == "differs":
            what = f"{self.column}: " if self.column not in (None, "data", "row", "count") else ""
            body = f"{what}expected {self._value(self.expected)}, got {self._value(self.actual)}"
            if self.lanes > 1:
                body += f" ({self.lanes} bytes differ)"
        elif self.kind == "only_expected":
            body = f"only in expected: {self._value(self.expected)}"
        else:
            body = f"only in actual: {self._value(self.actual)}"
        out = f"{head}: {body}"
        if isinstance(self.producer, Producer):
            out += f", written by {self.producer}"
        elif self.producer:
            out += f" ({self.producer})"
        return out

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("cycle", "signal", "kind", "unit", "column", "stream", "address", "lane")}
        for k in ("expected", "actual"):
            v = getattr(self, k)
            d[k] = int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
        p = self.producer
        d["producer"] = p._asdict() | {"row": list(p.row)} if isinstance(p, Producer) else p
        d["lanes"] = int(self.lanes)
        d["where"] = list(self.where) if isinstance(self.where, tuple) else self.where
        d["text"] = str(self)
        return d


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of a comparison.

    equal   True when no (unmasked) divergence was found
    count   the number of divergences (an int; `count[signal]` per signal or state leaf)
    first   the first `Divergence` (None if equal)
    items   the first `limit` divergences, in order
    compared  the signals (or state leaves) compared; notes: what was not compared, and why
    """

    count: Count
    items: tuple[Divergence, ...]
    compared: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    cycles: tuple[int, int] | None = None

    @property
    def equal(self) -> bool:
        return int(self.count) == 0

    @property
    def first(self) -> Divergence | None:
        return self.items[0] if self.items else None

    def __str__(self) -> str:
        what = ", ".join(self.compared) if self.compared else "nothing"
        span = f" over cycles {self.cycles[0]:,}..{self.cycles[1]:,}" if self.cycles else ""
        notes = "".join(f" Note: {n}." for n in self.notes)
        if self.equal:
            return f"equal: no divergence in {what}{span}.{notes}"
        per = ", ".join(f"{s} {n:,}" for s, n in self.count.by_signal.items() if n)
        n = int(self.count)
        head = f"{n:,} divergence{'s' if n != 1 else ''} ({per}){span}; the first: {self.first}."
        more = ""
        if len(self.items) > 1:
            more = " Then: " + "; ".join(str(d) for d in self.items[1:]) + "."
        if n > len(self.items):
            more += f" ({n - len(self.items):,} more not listed.)"
        return head + more + notes

    def to_dict(self) -> dict:
        return {
            "equal": self.equal,
            "count": int(self.count),
            "count_by_signal": {k: int(v) for k, v in self.count.by_signal.items()},
            "first": self.first.to_dict() if self.first else None,
            "items": [d.to_dict() for d in self.items],
            "compared": list(self.compared),
            "notes": list(self.notes),
            "cycles": list(self.cycles) if self.cycles else None,
            "text": str(self),
        }


# ============================================================================ event comparison
class Differ:
    """Compares two event streams chunk by chunk, in cycle order, keeping only what a report needs.

        d = Differ(cfg, mask, limit=20)
        for exp, act in aligned_chunks:   # each pair covers the same cycles
            d.add(exp, act)
        report = d.report()

    `stop_after`: `add` returns after the first chunk with a divergence; callers that want to stop there read
    `d.count`. Producers are looked up in the expected side's issue events, including the last cycles of earlier
    chunks; `extra_issue` (events) can supply issue events of the expected side when it does not record them.
    """

    def __init__(self, cfg: ChipConfig, mask: Mask | None = None, limit: int = 20):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.cfg = cfg
        self.mask = (mask or Mask()).resolve(cfg)
        bad = [s for s in self.mask.mask.signals if s not in SIGNALS]
        if bad:
            raise ValueError(f"cannot ignore {bad[0]!r}: not a trace signal (known: {', '.join(SIGNALS)})")
        self.limit = int(limit)
        self.counts: dict[str, int] = {}
        self.items: list[tuple[tuple, Divergence]] = []
        self.compared: list[str] = []
        self.notes: list[str] = []
        self._tail: dict | None = None  # expected issue events of the last `_max_delay` cycles
        self._seen_issue = False
        self._layout: dict[str, tuple[tuple[str, ...], int]] = {}
        self.lo: int | None = None
        self.hi: int | None = None

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        """Forget the counts and divergences (keep the issue history, for producers): start a new report."""
        self.counts, self.items, self.compared, self.notes = {}, [], [], []
        self.lo = self.hi = None

    def add(self, expected: Events, actual: Events, issue: dict | None = None) -> int:
        """Compare one chunk (both sides covering the same cycles). `issue`: the expected side's issue events to
        find producers in, when `expected` has none. Returns the number of divergences found in it."""
        sigs = [s for s in SIGNALS if s in expected and s in actual]
        for s in SIGNALS:
            if (s in expected) != (s in actual) and not self.mask.signal(s):
                side = "expected" if s in expected else "actual"
                note = f"{s} recorded only on the {side} side: not compared"
                if note not in self.notes:
                    self.notes.append(note)
        for s in sigs:
            if s not in self.compared and not self.mask.signal(s):
                self.compared.append(s)
        history = self._history(expected.get("issue", issue))
        found = 0
        cands: list[tuple[tuple, Divergence]] = []
        for s in sigs:
            if self.mask.signal(s):
                continue
            self._span(expected[s]["cycle"])
            self._span(actual[s]["cycle"])
            n, items = self._signal(s, expected[s], actual[s], history)
            self.counts[s] = self.counts.get(s, 0) + n
            found += n
            cands += items
        room = self.limit - len(self.items)
        if room > 0 and cands:
            cands.sort(key=lambda t: t[0])
            self.items += cands[:room]
        return found

    def _span(self, cyc: np.ndarray) -> None:
        if len(cyc):
            lo, hi = int(cyc.min()), int(cyc.max())
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)

    def _history(self, issue: dict | None) -> dict | None:
        """The expected issue events to find producers in: the kept tail of earlier chunks, then this chunk's."""
        if issue is None:
            return self._tail if self._seen_issue else None
        self._seen_issue = True
        both = issue if self._tail is None else {k: np.concatenate([self._tail[k], issue[k]]) for k in issue}
        if len(both["cycle"]):
            keep = both["cycle"] > int(both["cycle"].max()) - _max_delay(self.cfg) - 1
            self._tail = {k: v[keep] for k, v in both.items()}
        else:
            self._tail = both
        return both

    def report(self) -> Report:
        cycles = None if self.lo is None else (self.lo, self.hi)
        items = tuple(d for _, d in self.items)
        return Report(Count(self.counts), items, tuple(self.compared), tuple(self.notes), cycles)

    # ------------------------------------------------------------------ one signal
    def _signal(self, s: str, e: dict, a: dict, history) -> tuple[int, list]:
        cfg, mask = self.cfg, self.mask
        kc = _KEY.get(s)
        if s not in self._layout:
            nk = {"issue": len(isa.queue_names(cfg)), "land": n_ports(cfg), "commit": cfg.n_mem}.get(s, 1)
            self._layout[s] = (tuple(columns(cfg, s)), nk)
        cols, nk = self._layout[s]
        for side, ev in (("expected", e), ("actual", a)):
            missing = [c for c in cols if c not in ev]
            if missing:
                raise ValueError(f"the {side} {s} events lack column {missing[0]!r}")
        if all(np.array_equal(e[c], a[c]) for c in cols):  # the common case, cheaply (lock-step: every cycle)
            return 0, []
        ke = np.asarray(e["cycle"], np.int64) * nk + (np.asarray(e[kc], np.int64) if kc else 0)
        ka = np.asarray(a["cycle"], np.int64) * nk + (np.asarray(a[kc], np.int64) if kc else 0)
        for side, k in (("expected", ke), ("actual", ka)):
            if len(np.unique(k)) != len(k):
                what = f"(cycle, {kc})" if kc else "cycle"
                raise ValueError(f"the {side} {s} events name one {what} twice")
        both, ie, ia = np.intersect1d(ke, ka, assume_unique=True, return_indices=True)
        only_e = np.setdiff1d(np.arange(len(ke)), ie)
        only_a = np.setdiff1d(np.arange(len(ka)), ia)
        # matched rows: which differ (after masking columns and lanes)
        diff = np.zeros(len(both), bool)
        for c in cols:
            if c in ("cycle", kc) or mask.column(s, c):
                continue
            x, y = np.asarray(e[c])[ie], np.asarray(a[c])[ia]
            if x.shape[1:] != y.shape[1:]:
                raise ValueError(f"{s}.{c}: expected rows of shape {x.shape[1:]}, actual {y.shape[1:]}")
            d = x != y
            if c in ("data", "lanes") and mask.any_lane:
                d &= ~mask.lanes
            diff |= d.any(axis=tuple(range(1, d.ndim)))
        # candidate rows: (kind, index into e or a, cycle, key)
        kinds = [("differs", ie[diff], ia[diff]), ("only_expected", only_e, None), ("only_actual", None, only_a)]
        total = 0
        out = []
        for kind, i_e, i_a in kinds:
            src, idx = (e, i_e) if i_e is not None else (a, i_a)
            cyc = np.asarray(src["cycle"], np.int64)[idx]
            key = np.asarray(src[kc], np.int64)[idx] if kc else np.zeros(len(idx), np.int64)
            keep = ~mask.cycles(cyc)
            if kc:
                keep &= ~mask.keys[s][key]
            total += int(keep.sum())
            sel = np.nonzero(keep)[0]
            if self.limit - len(self.items) <= 0 or not len(sel):
                continue
            order = np.lexsort((key[sel], cyc[sel]))[: self.limit - len(self.items)]
            for j in sel[order]:
                je = None if i_e is None else int(i_e[j])
                ja = None if i_a is None else int(i_a[j])
                dv = self._describe(s, kind, e, je, a, ja, history)
                out.append(((int(cyc[j]), _ORDER[s], int(key[j])), dv))
        return total, out

    def _describe(self, s: str, kind: str, e: dict, ie, a: dict, ia, history) -> Divergence:
        cfg = self.cfg
        row_e = None if ie is None else {k: v[ie] for k, v in e.items()}
        row_a = None if ia is None else {k: v[ia] for k, v in a.items()}
        one = row_e if row_e is not None else row_a
        cyc = int(one["cycle"])
        if s == "issue":
            q = int(one["queue"])
            text = lambda r: "nothing issued" if r is None else f"`{_instr(cfg, r['row'])}`"  # noqa: E731
            addr = None
            if int(one["row"][0]) in (isa.READ, isa.WRITE):
                addr = int(one["row"][1])
            return Divergence(
                cyc, s, kind, isa.queue_names(cfg)[q], "row" if kind == "differs" else None,
                expected=text(row_e), actual=text(row_a), address=addr, where=q,
            )  # fmt: skip
        if s == "land":
            return self._land(kind, row_e, row_a, history)
        if s == "commit":
            return self._commit(kind, row_e, row_a, history)
        if s == "streams":
            return self._streams(cyc, kind, row_e, row_a)
        # hazards
        if kind != "differs":
            show = lambda r: "no change" if r is None else _counts(r["count"])  # noqa: E731
            return Divergence(cyc, s, kind, "hazard counts", expected=show(row_e), actual=show(row_a))
        ce, ca = np.asarray(row_e["count"]), np.asarray(row_a["count"])
        k = int(np.nonzero(ce != ca)[0][0])
        name = HAZARDS[k] if k < len(HAZARDS) else f"hazard {k}"
        return Divergence(cyc, s, kind, f"hazard {name}", "count", expected=int(ce[k]), actual=int(ca[k]), where=k)

    def _land(self, kind: str, re, ra, history) -> Divergence:
        cfg = self.cfg
        one = re if re is not None else ra
        cyc, port = int(one["cycle"]), int(one["port"])
        unit = port_name(cfg, port)
        if history is None:
            prod: Producer | str | None = NO_ISSUE
        else:
            prod = find_producer(cfg, history, port, cyc)
            if prod is None:
                name = isa.queue_names(cfg)[producer_queue(cfg, port)[0]]
                prod = f"producer unknown: no instruction issued on {name} lands at this cycle in the expected trace"
        desc = lambda r: f"a {int(r['width'])}-stream result on {stream_name(cfg, r['sid'])}"  # noqa: E731
        if kind != "differs":
            return Divergence(
                cyc, "land", kind, unit, stream=stream_name(cfg, one["sid"]),
                expected="nothing landed" if re is None else desc(re),
                actual="nothing landed" if ra is None else desc(ra), producer=prod, where=port,
            )  # fmt: skip
        for c in ("sid", "width"):
            if int(re[c]) != int(ra[c]) and not self.mask.column("land", c):
                show = (lambda v: stream_name(cfg, v)) if c == "sid" else int
                return Divergence(
                    cyc, "land", kind, unit, c, stream=stream_name(cfg, re["sid"]),
                    expected=show(re[c]), actual=show(ra[c]), producer=prod, where=port,
                )  # fmt: skip
        d = np.asarray(re["data"]) != np.asarray(ra["data"])
        d &= ~self.mask.lanes[None]
        k, lane = (int(v) for v in np.argwhere(d)[0])
        sid = int(re["sid"]) + k
        return Divergence(
            cyc, "land", kind, unit, "data", stream=stream_name(cfg, sid), address=_address(prod), lane=lane,
            expected=int(re["data"][k, lane]), actual=int(ra["data"][k, lane]), producer=prod,
            lanes=int(d.sum()), where=port, hex=True,
        )  # fmt: skip

    def _commit(self, kind: str, re, ra, history) -> Divergence:
        cfg = self.cfg
        one = re if re is not None else ra
        cyc, m = int(one["cycle"]), int(one["slice"])
        unit = f"MEM slice {cfg.mem_names[m]}"
        prod = NO_ISSUE if history is None else find_commit_producer(cfg, history, m, cyc)
        if prod is None:
            prod = f"producer unknown: no Write/Scatter issued on MEM.{cfg.mem_names[m]} commits at this cycle"

        def desc(r):
            if r is None:
                return "no commit"
            if int(r["addr"]) >= 0:
                return f"a Write commit to address {int(r['addr']):#x}"
            return f"a Scatter commit to {int((np.asarray(r['lanes']) >= 0).sum())} lanes"

        if kind != "differs":
            addr = int(one["addr"]) if int(one["addr"]) >= 0 else None
            return Divergence(
                cyc, "commit", kind, unit, address=addr, expected=desc(re), actual=desc(ra), producer=prod, where=m
            )
        if int(re["addr"]) != int(ra["addr"]) and not self.mask.column("commit", "addr"):
            show = lambda v: f"{int(v):#x}" if int(v) >= 0 else "none (a Scatter)"  # noqa: E731
            return Divergence(
                cyc, "commit", kind, unit, "addr", expected=show(re["addr"]), actual=show(ra["addr"]),
                producer=prod, where=m,
            )  # fmt: skip
        for c in ("lanes", "data"):
            if self.mask.column("commit", c):
                continue
            d = (np.asarray(re[c]) != np.asarray(ra[c])) & ~self.mask.lanes
            if not d.any():
                continue
            lane = int(np.nonzero(d)[0][0])
            addr = int(re["addr"]) if int(re["addr"]) >= 0 else int(re["lanes"][lane])
            return Divergence(
                cyc, "commit", kind, unit, c, address=addr if addr >= 0 else None, lane=lane,
                expected=int(re[c][lane]), actual=int(ra[c][lane]), producer=prod, lanes=int(d.sum()), where=m,
                hex=c == "data",
            )  # fmt: skip
        raise AssertionError("commit rows marked different but no column differs")

    def _streams(self, cyc: int, kind: str, re, ra) -> Divergence:
        cfg = self.cfg
        if kind != "differs":
            return Divergence(
                cyc, "streams", kind, "stream registers",
                expected="a stream file" if re is not None else "none recorded",
                actual="a stream file" if ra is not None else "none recorded",
            )  # fmt: skip
        d = (np.asarray(re["data"]) != np.asarray(ra["data"])) & ~self.mask.lanes
        dr, p, i, lane = (int(v) for v in np.argwhere(d)[0])
        return Divergence(
            cyc, "streams", kind, _position_words(cfg, p), "data", stream=stream_name(cfg, dr * cfg.n_streams + i),
            lane=lane, expected=int(re["data"][dr, p, i, lane]), actual=int(ra["data"][dr, p, i, lane]),
            lanes=int(d.sum()), where=(dr, p, i, lane), hex=True,
        )  # fmt: skip


def _address(prod) -> int | None:
    """The SRAM address a Read producer read (None for other producers)."""
    if isinstance(prod, Producer) and prod.row[0] == isa.READ:
        return int(prod.row[1])
    return None


def _counts(c) -> str:
    c = np.asarray(c)
    parts = [f"{HAZARDS[k] if k < len(HAZARDS) else k} {int(v)}" for k, v in enumerate(c) if v]
    return "counts " + (", ".join(parts) if parts else "all 0")


def _position_words(cfg: ChipConfig, p: int) -> str:
    """ "stream registers at position 12 (MEM slice W0)"; the slice is named where one sits at p."""
    at = [s for s, q in enumerate(cfg.positions) if int(q) == p]
    if not at:
        return f"stream registers at position {p}"
    s = at[0]
    kind = cfg.floorplan[s]
    if kind == "MEM":
        name = f"MEM slice {cfg.mem_names[list(cfg.mem_slices).index(s)]}"
    elif kind == "SXM":
        name = f"SXM.{cfg.sxm_names[list(cfg.sxm_slices).index(s)]}"
    elif kind == "MXM":
        name = f"MXM plane {list(cfg.mxm_slices).index(s)}"
    else:
        name = "VXM"
    return f"stream registers at position {p} ({name})"


def compare_events(
    cfg: ChipConfig, expected: Events, actual: Events, mask: Mask | None = None, limit: int = 20
) -> Report:
    """Compare two runs' events (`lpu_jax.trace`): every divergence counted, the first `limit` described.

    Signals recorded on only one side are not compared (the report's notes say so).
    """
    d = Differ(cfg, mask, limit)
    d.add(expected, actual)
    return d.report()


# ============================================================================ state comparison
def _leaves(cfg: ChipConfig, x) -> dict[str, np.ndarray]:
    """{leaf path: numpy array} of a MachineState (streams by position, MEM address-linear) or a MEM image."""
    import jax

    if isinstance(x, MachineState):
        out = {}
        flat, _ = jax.tree_util.tree_flatten_with_path(x)
        for path, v in flat:
            name = jax.tree_util.keystr(path, simple=True, separator=".")
            out[name] = np.asarray(v)
        c = int(out["cycle"]) - 1
        P = cfg.n_positions
        p = np.arange(P)
        s = out["streams"]
        out["streams"] = np.stack([s[0, (p - c) % P], s[1, (p + c) % P]])
        out["mem"] = out["mem"].reshape(cfg.n_mem, cfg.mem_words, cfg.n_lanes)
        return out
    img = np.asarray(x)
    if img.dtype != np.uint8 or img.size != cfg.n_mem * cfg.mem_words * cfg.n_lanes:
        raise ValueError(
            f"a MEM image must be uint8 [{cfg.n_mem}, {cfg.mem_words}, {cfg.n_lanes}] for {cfg.name}, "
            f"got {img.dtype} {img.shape}"
        )
    return {"mem": img.reshape(cfg.n_mem, cfg.mem_words, cfg.n_lanes)}


def _leaf_words(cfg: ChipConfig, leaf: str, idx: tuple) -> dict:
    """Divergence fields naming an index of a state leaf."""
    if leaf == "mem":
        m, addr, lane = idx
        return {"unit": f"MEM slice {cfg.mem_names[m]}", "address": addr, "lane": lane}
    if leaf == "streams":
        d, p, i, lane = idx
        return {"unit": _position_words(cfg, p), "stream": stream_name(cfg, d * cfg.n_streams + i), "lane": lane}
    unit = f"{leaf}{list(idx)}" if idx else leaf
    group = leaf.split(".")[0]
    if idx and group == "icu":
        unit += f" (queue {isa.queue_names(cfg)[idx[0]]})"
    elif idx and group == "hazards" and idx[0] < len(HAZARDS):
        unit += f" ({HAZARDS[idx[0]]})"
    elif idx and group == "mxm" and leaf not in ("mxm.prod", "mxm.prod_meta"):
        unit += f" (MXM plane {idx[0]})"
    elif len(idx) >= 2 and leaf in ("inflight.out_meta", "inflight.out_data"):
        unit += f" ({port_name(cfg, idx[1])})"
    elif len(idx) >= 2 and leaf.startswith("inflight."):
        unit += f" (MEM slice {cfg.mem_names[idx[1]]})"
    return {"unit": unit}


def compare_states(cfg: ChipConfig, expected, actual, mask: Mask | None = None, limit: int = 20) -> Report:
    """Compare two machine states (or MEM images, uint8 [M, W, L]; a state against an image compares MEM only)
    leaf by leaf. `count[leaf]` is the number of differing elements of each leaf; items are the first `limit`
    differing elements, leaf by leaf (in pytree order), each in words: MEM -> slice, address, lane; streams ->
    position, stream, lane (by position, as `sim.stream_file`); other leaves -> path and index.

    The mask's `signals` name leaves or groups to skip ("mem", "icu", "mxm.acc"), `lanes` applies to MEM and the
    stream registers, `slices` to MEM.
    """
    rm = (mask or Mask()).resolve(cfg)
    le, la = _leaves(cfg, expected), _leaves(cfg, actual)
    names = [k for k in le if k in la]
    for sig in rm.mask.signals:
        if not any(k == sig or k.startswith(sig + ".") for k in names):
            raise ValueError(f"cannot ignore {sig!r}: no such state leaf or group (leaves: {', '.join(names)})")
    notes = []
    if set(le) != set(la):
        notes.append("a MachineState compared with a MEM image: only MEM is compared")
    counts: dict[str, int] = {}
    items: list[Divergence] = []
    for leaf in names:
        if rm.signal(leaf):
            continue
        x, y = le[leaf], la[leaf]
        if x.shape != y.shape:
            raise ValueError(f"state leaf {leaf}: expected shape {x.shape}, actual {y.shape} (different configs?)")
        d = x != y
        if leaf in ("mem", "streams") and rm.any_lane:
            d &= ~rm.lanes
        if leaf == "mem":
            d &= ~rm.keys["commit"][:, None, None]
        n = int(d.sum())
        counts[leaf] = n
        if n and len(items) < limit:
            for idx in np.argwhere(d)[: limit - len(items)]:
                idx = tuple(int(i) for i in idx)
                words = _leaf_words(cfg, leaf, idx)
                ex, ac, is_byte = x[idx].item(), y[idx].item(), x.dtype == np.uint8
                dv = Divergence(None, leaf, "differs", expected=ex, actual=ac, lanes=n, where=idx, hex=is_byte, **words)
                items.append(dv)
    compared = tuple(k for k in names if not rm.signal(k))
    return Report(Count(counts), tuple(items), compared, tuple(notes))
