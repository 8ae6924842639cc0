"""VCD and Perfetto export of trace events (lpu_jax.export), read back with independent parsers.

The events are those of a hand-written program on tiny (issues on MEM, VXM, MXM with the two-cycle ABC.f16, SXM;
Repeats; a Write and a Scatter commit; bank, mxm_unpaired and address_range hazards), in 20 one-cycle chunks, as
`trace.record(..., chunk_cycles=1)` hands them to its sink. By default they come from the golden interpreter (no
compilation: the simulator's compile for this program would cost 30-50 s here); the slow test records the same
run with `trace.record` on the simulator and checks that it exports to the same files. The VCD is parsed with
vcdvcd (string values, which vcdvcd skips, by a few lines here); what every variable must hold at every cycle is
computed here from the events with numpy.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import TINY

from lpu_jax import asm, isa, trace
from lpu_jax.export import EXPORTED, perfetto_events, port_scope, unit_selection, write_perfetto, write_vcd
from lpu_jax.golden.interp import Interp
from lpu_jax.state import HAZARDS, init_state, n_ports

vcdvcd = pytest.importorskip("vcdvcd")

PROGRAM = """
.queue MEM.W1
    Read 0x5, E0
    Repeat 3, 1, 1
    Read 0x2, E5
.queue MEM.W0
    NOP 5
    Read 0x1, E4
.queue VXM.0
    NOP 4
    add.i8 E1, E0, E0
    Repeat 2, 1
.queue MEM.E0
    NOP 6
    Write 0x9, E1
    Read 0x9, W2
.queue MEM.E1
    NOP 10
    Scatter E0, E4
.queue MXM.2.A
    NOP 2
    ABC.f16 E0, 0
    ABC.f16 E2, 1
.queue MXM.2.C
    NOP 7
    ACC.i32 0, 2, W0
.queue SXM.E.0
    NOP 2
    Shift.up E3, E0, 1
"""
N_CYCLES = 20
LANES = (2, 6)


def _program_and_mem(cfg):
    rng = np.random.default_rng(3)
    mem = rng.integers(0, 256, (cfg.n_mem, cfg.mem_words, cfg.n_lanes), dtype=np.uint8)
    mem[1, 2] = rng.integers(0, 3, cfg.n_lanes)  # W0 address 2: the Scatter map's high bytes, some in range
    return asm.parse(PROGRAM, cfg), mem


def _golden_chunks(cfg, program, mem, n: int) -> list:
    """Event chunks of one cycle each, from the golden interpreter (as `trace.record(..., chunk_cycles=1)` makes
    them from the simulator: the events of two models that agree are equal; the slow test checks it here)."""
    it, prev, chunks = Interp(cfg, program, mem), None, []
    for _ in range(n):
        dense = it.run(1)
        chunks.append(trace.to_events(cfg, dense, trace.SIGNALS, prev_hazards=prev))
        prev = dense["hazards"][-1]
    return chunks


@pytest.fixture(scope="module")
def recorded():
    """(cfg, list of one-cycle event chunks) of PROGRAM on tiny, all signals."""
    cfg = TINY
    chunks = _golden_chunks(cfg, *_program_and_mem(cfg), N_CYCLES)
    ev = trace.concat(chunks)
    # the program exercises what the tests check: else they would pass vacuously
    assert len(ev["issue"]["cycle"]) >= 12 and len(ev["land"]["cycle"]) >= 8
    assert (ev["commit"]["addr"] >= 0).any() and (ev["commit"]["addr"] < 0).any()
    assert len(ev["hazards"]["cycle"]) >= 2
    assert np.diff(np.unique(ev["issue"]["cycle"])).min() == 1  # events in consecutive cycles (idle returns)
    return cfg, chunks


@pytest.mark.slow
def test_recorded_run_exports_alike(recorded):
    """`trace.record` of the simulator, chunk by chunk, exports to the same files as the golden events."""
    cfg, gold = recorded
    program, mem = _program_and_mem(cfg)
    chunks = []
    trace.record(cfg, program, init_state(cfg, mem), N_CYCLES, trace.SIGNALS, chunk_cycles=1, sink=chunks.append)
    for write in (write_vcd, write_perfetto):
        a, b = io.StringIO(), io.StringIO()
        write(a, cfg, chunks)
        write(b, cfg, gold)
        assert a.getvalue() == b.getvalue(), write.__name__


@pytest.fixture(scope="module")
def events(recorded):
    return trace.concat(recorded[1])


# --------------------------------------------------------------------------- an independent VCD reading
def _vcd(text: str):
    """(vcdvcd object, {reference: [(time, string value)]} of the string variables)."""
    v = vcdvcd.VCDVCD(vcd_string=text)
    ids = {}
    for ref, i in v.references_to_ids.items():
        ids.setdefault(i, ref)
    strings: dict[str, list] = {}
    t, body = 0, False
    for line in text.splitlines():
        if line.startswith("$enddefinitions"):
            body = True
        elif body and line.startswith("#"):
            t = int(line[1:])
        elif body and line.startswith("s"):
            val, ident = line[1:].rsplit(" ", 1)
            strings.setdefault(ids[ident], []).append((t, val.replace("\\x20", " ").replace("\\\\", "\\")))
    return v, strings


def _at(tv: list, times) -> list:
    """The value at each time of a (time, value) change list (the last change at or before it; None before)."""
    out, k, cur = [], 0, None
    for t in times:
        while k < len(tv) and tv[k][0] <= t:
            cur = tv[k][1]
            k += 1
        out.append(cur)
    return out


def _num(s, bits: int | None = None, signed: bool = False):
    """A VCD vector value as an int (None for x)."""
    if s is None or "x" in s.lower():
        return None
    v = int(s, 2)
    if signed and bits and len(s) == bits and s[0] == "1":
        v -= 1 << bits
    return v


def _expect(n_times: int, cycles, values) -> list:
    """None everywhere except value[i] at cycle[i] (an event pulse and its idle return)."""
    out: list = [None] * n_times
    for c, x in zip(cycles, values):
        out[int(c)] = x
    return out


def _check_pulses(v, ref, cycles, values, T, *, bits=32, signed=True, event=False):
    tv = v[ref].tv
    if event:
        assert sorted(t for t, _ in tv) == sorted(int(c) for c in cycles), ref
        return
    got = [_num(s, bits, signed) for s in _at(tv, range(T))]
    assert got == _expect(T, cycles, values), ref


# --------------------------------------------------------------------------- VCD
def test_vcd_every_event_at_its_cycle_then_idle(recorded, events):
    cfg, chunks = recorded
    buf = io.StringIO()
    n = write_vcd(buf, cfg, chunks, lanes=LANES)
    v, strings = _vcd(buf.getvalue())
    ev = events
    assert n == sum(len(ev[s]["cycle"]) for s in EXPORTED)
    assert v.timescale["unit"] == "ns" and v.timescale["magnitude"] == 1
    T = N_CYCLES + 2
    lanes = range(*LANES)
    names = isa.queue_names(cfg)
    iss = ev["issue"]
    for q, name in enumerate(names):
        k = iss["queue"] == q
        cyc, rows = iss["cycle"][k], iss["row"][k]
        _check_pulses(v, f"{name}.op", cyc, rows[:, 0].tolist(), T)
        _check_pulses(v, f"{name}.issue", cyc, None, T, event=True)
        # the text: "" when idle, else the instruction, which assembles back to the issued row
        text = _at(strings.get(f"{name}.text", []), range(T))
        for t in range(T):
            hit = np.nonzero(cyc == t)[0]
            if not len(hit):
                assert text[t] in ("", None), (name, t, text[t])
                continue
            ins = asm.parse(f".queue {name}\n    {text[t]}\n", cfg).queues[name][0]
            assert isa.encode_instruction(cfg, ins) == rows[hit[0]].tolist(), (name, t, text[t])
    land = ev["land"]
    for p in range(n_ports(cfg)):
        s = port_scope(cfg, p)
        k = land["port"] == p
        cyc = land["cycle"][k]
        _check_pulses(v, f"{s}.land", cyc, None, T, event=True)
        _check_pulses(v, f"{s}.sid", cyc, land["sid"][k].tolist(), T)
        _check_pulses(v, f"{s}.width", cyc, land["width"][k].tolist(), T)
        d = land["data"][k].astype(np.int64)
        for lane in lanes:
            word = sum(d[:, r, lane] * 256**r for r in range(4))
            _check_pulses(v, f"{s}.lane{lane}", cyc, word.tolist(), T, signed=False)
    com = ev["commit"]
    for m, mname in enumerate(cfg.mem_names):
        s = f"MEM.{mname}.sram"
        k = com["slice"] == m
        cyc, addr = com["cycle"][k], com["addr"][k]
        _check_pulses(v, f"{s}.commit", cyc, None, T, event=True)
        _check_pulses(v, f"{s}.addr", cyc, addr.tolist(), T)
        for lane in lanes:
            _check_pulses(v, f"{s}.lane{lane}", cyc, com["data"][k][:, lane].tolist(), T, bits=8, signed=False)
            where = [int(a) if a >= 0 else int(ln) for a, ln in zip(addr, com["lanes"][k][:, lane])]
            _check_pulses(v, f"{s}.lane{lane}_addr", cyc, where, T)
    hz = ev["hazards"]
    for j, kind in enumerate(HAZARDS):
        got = [_num(s, 64) for s in _at(v[f"hazards.{kind}"].tv, range(T))]
        want = [int(hz["count"][hz["cycle"] <= t][-1, j]) if (hz["cycle"] <= t).any() else 0 for t in range(T)]
        assert got == want, kind
    # lanes outside the chosen range are not there
    assert f"MEM.W1.port.lane{LANES[1]}" not in v.references_to_ids


def test_vcd_streams_chunk_by_chunk(recorded, events):
    """Several chunks give the same file as their concatenation; the file grows while chunks are pulled."""
    cfg, chunks = recorded
    one, many = io.StringIO(), io.StringIO()
    write_vcd(one, cfg, [events])
    sizes = []

    def pulled():
        for ch in chunks:
            sizes.append(len(many.getvalue()))
            yield ch

    write_vcd(many, cfg, pulled())
    assert many.getvalue() == one.getvalue()
    assert len(set(sizes[2:])) > N_CYCLES // 2  # written as it went, not at the end


def test_vcd_selection_and_real_time(recorded, events, tmp_path):
    cfg, chunks = recorded
    path = tmp_path / "sel.vcd"
    write_vcd(path, cfg, chunks, ["issue", "hazards"], queues=["MXM.2.A", 4], time="real")
    v, _ = _vcd(path.read_text())
    ops = {r.rsplit(".", 1)[0] for r in v.references_to_ids if r.endswith(".op")}
    assert ops == {"MXM.2.A", "VXM.0"}
    assert not any(".port." in r or ".sram." in r for r in v.references_to_ids)
    assert v.timescale["unit"] == "ps"
    k = events["issue"]["queue"] == isa.queue_names(cfg).index("MXM.2.A")
    want = [round(int(c) * 10**12 / 900e6) for c in events["issue"]["cycle"][k]]  # tiny runs at 900 MHz
    assert cfg.clock_hz == 900e6
    assert sorted(t for t, _ in v["MXM.2.A.issue"].tv) == want
    # the ABC.f16 pair: each a pulse one cycle wide, back to x at the next cycle's time
    c0, c1 = (int(c) for c in events["issue"]["cycle"][k])
    ps = lambda c: round(c * 10**12 / 900e6)  # noqa: E731
    tv = [(t, _num(s)) for t, s in v["MXM.2.A.op"].tv]
    assert tv == [(0, None), (ps(c0), 22), (ps(c0 + 1), None), (ps(c1), 22), (ps(c1 + 1), None)]


# --------------------------------------------------------------------------- Perfetto
def test_perfetto_structure(recorded, events, tmp_path):
    cfg, chunks = recorded
    path = tmp_path / "t.json"
    n = write_perfetto(path, cfg, chunks, lanes=LANES)
    doc = json.loads(path.read_text())
    assert set(doc) == {"traceEvents", "displayTimeUnit"} and doc["displayTimeUnit"] == "ns"
    evs = doc["traceEvents"]
    assert len(evs) == n
    meta = [e for e in evs if e["ph"] == "M"]
    pname = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    tname = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    names = isa.queue_names(cfg)
    # one X event per issued instruction, on its queue's track in its unit's process, ts = cycle
    xs = [e for e in evs if e["ph"] == "X"]
    iss = events["issue"]
    assert len(xs) == len(iss["cycle"])
    got = sorted((e["ts"], tname[e["pid"], e["tid"]], tuple(e["args"]["row"]), e["dur"]) for e in xs)
    want = sorted(
        (int(c), names[q], tuple(r.tolist()), 2 if (r[0] == isa.ABC and r[4] == 4) else 1)  # code 4: f16
        for c, q, r in zip(iss["cycle"], iss["queue"], iss["row"])
    )
    assert got == want
    for e in xs:
        assert pname[e["pid"]] == names[e["tid"] - 1].split(".")[0]
        q = tname[e["pid"], e["tid"]]
        ins = asm.parse(f".queue {q}\n    {e['name']}\n", cfg).queues[q][0]
        assert isa.encode_instruction(cfg, ins) == e["args"]["row"]
    # tracks do not overlap: per queue, each instruction ends before the next one starts
    for track in {(e["pid"], e["tid"]) for e in xs}:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in xs if (e["pid"], e["tid"]) == track)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), tname[track]
    assert sum(e["dur"] == 2 for e in xs) == 2  # the two ABC.f16
    # landings and commits: instant events on per-port / per-slice tracks
    land = events["land"]
    ins_ = [e for e in evs if e["ph"] == "i" and e["cat"] == "land"]
    assert sorted((e["ts"], tname[e["pid"], e["tid"]], e["args"]["sid"], e["args"]["width"]) for e in ins_) == sorted(
        (int(c), port_scope(cfg, int(p)), int(s), int(w))
        for c, p, s, w in zip(land["cycle"], land["port"], land["sid"], land["width"])
    )
    for e in ins_:
        (k,) = np.nonzero(
            (land["cycle"] == e["ts"]) & (land["sid"] == e["args"]["sid"]) & (land["port"] == e["tid"] - 1001)
        )[0]
        w = int(land["width"][k])
        assert e["args"]["bytes"] == land["data"][k, :w, LANES[0] : LANES[1]].tolist()
    com = [e for e in evs if e["ph"] == "i" and e["cat"] == "commit"]
    c = events["commit"]
    assert sorted((e["ts"], tname[e["pid"], e["tid"]], e["args"]["addr"]) for e in com) == sorted(
        (int(t), f"MEM.{cfg.mem_names[m]}.sram", int(a)) for t, m, a in zip(c["cycle"], c["slice"], c["addr"])
    )
    # hazard counters: one C event per change, with the counts
    cs = [e for e in evs if e["ph"] == "C"]
    hz = events["hazards"]
    assert [e["ts"] for e in cs] == hz["cycle"].tolist()
    assert [[e["args"][k] for k in HAZARDS] for e in cs] == hz["count"].tolist()
    # every track used is named, and named once
    used = {(e["pid"], e["tid"]) for e in evs if e["ph"] in "Xi"}
    assert used == set(tname) and len(tname) == sum(e["name"] == "thread_name" for e in meta)
    assert [e["ts"] for e in evs if "ts" in e] == sorted(e["ts"] for e in evs if "ts" in e)  # time order


def test_perfetto_streams_chunk_by_chunk(recorded, events):
    cfg, chunks = recorded
    one, many = io.StringIO(), io.StringIO()
    write_perfetto(one, cfg, [events])
    write_perfetto(many, cfg, chunks)
    assert many.getvalue() == one.getvalue()
    pulled = []

    def gen():
        for k, ch in enumerate(chunks):
            pulled.append(k)
            yield ch

    it = perfetto_events(cfg, gen())
    next(e for e in it if e["ph"] == "X")  # the first instruction: cycle 0
    assert len(pulled) <= 2  # lazily: the rest of the trace has not been read


def test_perfetto_real_time_and_selection(recorded, events):
    cfg, chunks = recorded
    evs = list(perfetto_events(cfg, chunks, ["issue"], queues=["MEM.W1"], time="real"))
    xs = [e for e in evs if e["ph"] == "X"]
    k = events["issue"]["queue"] == 0
    assert [e["ts"] for e in xs] == pytest.approx((events["issue"]["cycle"][k] * 1e6 / cfg.clock_hz).tolist())
    assert all(e["dur"] == pytest.approx(1e6 / cfg.clock_hz) for e in xs)
    assert {e["args"]["queue"] for e in xs} == {"MEM.W1"} and not any(e["ph"] in "iC" for e in evs)


# --------------------------------------------------------------------------- selection helpers and errors
def test_unit_selection_and_port_names():
    cfg = TINY  # M = 4 slices, A = 4 ALUs, 4 planes, SXM units W.0, W.1, E.0, E.1 with 4 ports each
    assert port_scope(cfg, 0) == "MEM.W1.port" and port_scope(cfg, 4) == "VXM.0.port"
    assert port_scope(cfg, 10) == "MXM.2.port" and port_scope(cfg, 23) == "SXM.E.0.port3"
    assert unit_selection(cfg, ["MXM.2"]) == {"queues": [14, 15, 16], "ports": [10], "slices": []}
    assert unit_selection(cfg, ["MXM.2.A"]) == {"queues": [15], "ports": [10], "slices": []}
    assert unit_selection(cfg, ["SXM.E.0", "MEM.E1"]) == {
        "queues": [3, 22],
        "ports": [3, 20, 21, 22, 23],
        "slices": [3],
    }
    assert unit_selection(cfg, ["VXM"])["queues"] == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="no queue or unit named 'VXM.9'"):
        unit_selection(cfg, ["VXM.9"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"signals": ["issue", "glitch"]}, "unknown signal 'glitch'"),
        ({"signals": ["streams"]}, "streams signal is not exported"),
        ({"lanes": (4, 2)}, r"lanes \(4, 2\) must satisfy 0 <= start < stop <= 32"),
        ({"lanes": (0, 33)}, "lanes"),
        ({"lanes": (-1, 2)}, "lanes"),
        ({"queues": ["MEM.W9"]}, "unknown queue 'MEM.W9' on tiny"),
        ({"queues": [24]}, "queue index 24 out of range 0..23"),
        ({"ports": ["VXM.7.port2"]}, "unknown port 'VXM.7.port2'"),
        ({"slices": ["X3"]}, "unknown MEM slice 'X3'"),
        ({"time": "wall"}, "time must be 'cycles' or 'real'"),
    ],
)
def test_bad_arguments(recorded, kwargs, match, tmp_path):
    cfg, chunks = recorded
    for write in (write_vcd, write_perfetto):
        with pytest.raises(ValueError, match=match):
            write(tmp_path / "x", cfg, chunks, **kwargs)
        assert not (tmp_path / "x").exists()


def test_bad_chunks(recorded, events, tmp_path):
    cfg, chunks = recorded
    only_issue = {"issue": events["issue"]}
    for write in (write_vcd, write_perfetto):
        with pytest.raises(ValueError, match="the trace has no 'commit' events"):
            write(tmp_path / "x", cfg, [only_issue], ["issue", "commit"])
        with pytest.raises(ValueError, match="event chunks out of order: chunk 3 starts at cycle 0"):
            write(tmp_path / "x", cfg, chunks[:3] + chunks[:1])
        assert not (tmp_path / "x").exists()  # no half-written file is left
        with pytest.raises(ValueError, match="not one Events dict"):
            write(tmp_path / "x", cfg, events)
    with pytest.raises(ValueError, match="before the dump's start, cycle 5"):
        write_vcd(io.StringIO(), cfg, chunks, start=5)
    with pytest.raises(ValueError, match="start must be a cycle >= 0, got -1"):
        write_vcd(io.StringIO(), cfg, chunks, start=-1)
    with pytest.raises(ValueError, match=r"stop must be a cycle >= start \(5\), got 3"):
        write_vcd(io.StringIO(), cfg, chunks, start=5, stop=3)


# --------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def trace_file(recorded, tmp_path_factory):
    from lpu_jax import formats

    cfg, chunks = recorded
    path = tmp_path_factory.mktemp("export") / "run.lputrace"
    with formats.TraceWriter(path, cfg, trace.SIGNALS) as w:
        for ch in chunks:
            w.append(ch)
    return path


def _cli(argv, capsys):
    from lpu_jax.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_trace_to_vcd(recorded, events, trace_file, tmp_path, capsys):
    cfg, chunks = recorded
    out = tmp_path / "run.vcd"
    rc, text, err = _cli(["trace-to-vcd", str(trace_file), "-o", str(out)], capsys)
    assert rc == 0 and not err and str(out) in text
    ref = io.StringIO()
    write_vcd(ref, cfg, chunks)
    assert out.read_text() == ref.getvalue()
    # a window, some units and lanes: the same as the library on the selected events
    argv = ["trace-to-vcd", str(trace_file), "-o", str(out), "--window", "5:12", "--queues", "MXM.2,MEM.E0"]
    rc, _, err = _cli([*argv, "--lanes", "3:5", "--signals", "issue,land,commit"], capsys)
    assert rc == 0 and not err
    v, _ = _vcd(out.read_text())
    units = {r.split(".")[0] + "." + r.split(".")[1] for r in v.references_to_ids}
    assert units == {"MXM.2", "MEM.E0"} and "MEM.E0.port.lane3" in v.references_to_ids
    assert not any(r.startswith("hazards") for r in v.references_to_ids)
    times = sorted({t for r in ("MXM.2.A.issue", "MXM.2.C.issue", "MEM.E0.issue") for t, _ in v[r].tv})
    want = events["issue"]["cycle"][np.isin(events["issue"]["queue"], [2, 14, 15, 16])]
    assert times == sorted({int(c) for c in want if 5 <= c < 12}) and times
    assert v.begintime == 5 and v.endtime == 12


def test_cli_trace_to_perfetto(events, trace_file, tmp_path, capsys):
    out = tmp_path / "run.json"
    rc, text, err = _cli(["trace-to-perfetto", str(trace_file), "-o", str(out), "--window", "4:"], capsys)
    assert rc == 0 and not err and "perfetto" in text
    evs = json.loads(out.read_text())["traceEvents"]
    xs = sorted(e["ts"] for e in evs if e["ph"] == "X")
    assert xs == sorted(int(c) for c in events["issue"]["cycle"] if c >= 4)
    assert [e["ts"] for e in evs if e["ph"] == "C"] == [int(c) for c in events["hazards"]["cycle"] if c >= 4]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--queues", "MEM.W7"], "no queue or unit named 'MEM.W7'"),
        (["--lanes", "0:99"], r"lanes \(0, 99\) must satisfy"),
        (["--lanes", "2"], "--lanes must be A:B"),
        (["--window", "9:3"], "--window '9:3' must have 0 <= A <= B"),
        (["--signals", "issue,streams"], "streams signal is not exported"),
        (["--signals", "isue"], "unknown signal 'isue'"),
    ],
)
def test_cli_errors(trace_file, tmp_path, capsys, extra, match):
    import re

    for cmd in ("trace-to-vcd", "trace-to-perfetto"):
        rc, text, err = _cli([cmd, str(trace_file), "-o", str(tmp_path / "o"), *extra], capsys)
        assert rc == 2 and not text and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"lpu-jax {cmd}: error: ") and re.search(match, err), err
        assert not (tmp_path / "o").exists()


def test_cli_not_a_trace(tmp_path, capsys):
    bad = tmp_path / "x.vcd"
    bad.write_text("$comment not a trace $end\n")
    rc, _, err = _cli(["trace-to-vcd", str(bad), "-o", str(tmp_path / "o.vcd")], capsys)
    assert rc == 2 and str(bad) in err and len(err.strip().splitlines()) == 1


def test_cli_trace_recorded_over_a_window(events, tmp_path, capsys):
    """A trace of cycles 5..19 dumps from cycle 5, its hazard counts x (unknown) until their first change."""
    from lpu_jax import formats

    path, out = tmp_path / "w.lputrace", tmp_path / "w.vcd"
    with formats.TraceWriter(path, TINY, EXPORTED, window=(5, N_CYCLES)) as w:
        w.append(trace.select({s: events[s] for s in EXPORTED}, 5, N_CYCLES))
    rc, _, err = _cli(["trace-to-vcd", str(path), "-o", str(out), "--window", "0:30"], capsys)
    assert rc == 0 and not err
    v, _ = _vcd(out.read_text())
    assert v.begintime == 5 and v.endtime == 30
    hz = events["hazards"]
    first = int(hz["cycle"][hz["cycle"] >= 5][0])
    for j, kind in enumerate(HAZARDS):
        got = [_num(s, 64) for s in _at(v[f"hazards.{kind}"].tv, range(5, 30))]
        want = [None if t < first else int(hz["count"][hz["cycle"] <= t][-1, j]) for t in range(5, 30)]
        assert got == want, kind
