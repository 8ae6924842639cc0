"""First-divergence reports (lpu_jax.diff) and `lpu-jax diff`.

The program under test is docs/isa.md §7's worked example on tiny(). Every expected place, value and producer in
these tests is derived by hand from that section's timing table and the MEM image, not read from the code under
test:
    cycle 0   MEM.W1 (MEM slice W1, port 0) issues `Read 0x5, E0`; the row x = mem[W1, 5] lands on E0 at cycle 2
    cycle 4   VXM.0 issues `add.i8 E1, E0, E0`; (2x) mod 256 lands on E1 at cycle 5 through port M + 0 (VXM ALU 0)
    cycle 6   MEM.E0 issues `Write 0x9, E1`; the sum commits to MEM slice E0 address 9 at cycle 7
    cycle 8   MEM.E0 issues `Read 0x9, W2`; the sum lands on W2 at cycle 10 through port 2 (MEM slice E0)
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import TRACE
from golden_strategies import cases, mem_image
from hypothesis import HealthCheck, given, settings

import lpu_jax as L
from lpu_jax import diff, isa, trace
from lpu_jax.diff import Mask, compare_events, compare_states

TINY = L.tiny()
EXAMPLE = """
.queue MEM.W1
    Read 0x5, E0
.queue VXM.0
    NOP 4
    add.i8 E1, E0, E0
.queue MEM.E0
    NOP 6
    Write 0x9, E1
    NOP 1
    Read 0x9, W2
"""
N = 16
W1, E0 = TINY.mem_names.index("W1"), TINY.mem_names.index("E0")
VXM0 = TINY.n_mem  # output port of VXM ALU 0 (docs/isa.md §2: one port per MEM slice, then one per ALU)


@pytest.fixture(scope="module")
def example():
    """(mem, state after N cycles, events of every signal) of the worked example."""
    mem = mem_image(TINY, 7)
    arr = isa.encode(TINY, L.parse(EXAMPLE, TINY), length=64)
    state, tr = L.run(TINY, arr, L.init_state(TINY, mem), N, trace=TRACE)
    return mem, state, trace.to_events(TINY, tr, trace.SIGNALS)


def _row(ev: dict, signal: str, cycle: int, key: int) -> int:
    cols = ev[signal]
    k = {"issue": "queue", "land": "port", "commit": "slice"}[signal]
    (i,) = np.nonzero((cols["cycle"] == cycle) & (cols[k] == key))[0]
    return int(i)


def _flip_land(ev, cycle, port, lane, bit=0x04):
    out = copy.deepcopy(ev)
    out["land"]["data"][_row(ev, "land", cycle, port), 0, lane] ^= bit
    return out


# ---------------------------------------------------------------------------------------------- the report
def test_equal_events_give_an_equal_report(example):
    _, _, ev = example
    rep = compare_events(TINY, ev, copy.deepcopy(ev))
    assert rep.equal and rep.count == 0 and rep.first is None and rep.items == ()
    assert rep.compared == trace.SIGNALS
    assert str(rep).startswith("equal: no divergence")


def test_vxm_result_byte_names_cycle_alu_stream_lane_values_and_producer(example):
    mem, _, ev = example
    x = int(mem[W1, 5, 7])
    want = (2 * x) % 256
    rep = compare_events(TINY, ev, _flip_land(ev, 5, VXM0, 7))
    assert not rep.equal and rep.count == 1 and rep.count["land"] == 1 and rep.count["issue"] == 0
    d = rep.first
    assert (d.cycle, d.signal, d.kind, d.unit, d.stream, d.lane) == (5, "land", "differs", "VXM ALU 0", "E1", 7)
    assert (d.expected, d.actual) == (want, want ^ 0x04)
    assert (d.producer.cycle, d.producer.queue, d.producer.text) == (4, "VXM.0", "add.i8 E1, E0, E0")
    text = str(rep)
    assert f"cycle 5, VXM ALU 0, stream E1, lane 7: expected {want:#04x}, got {want ^ 4:#04x}" in text
    assert "written by `add.i8 E1, E0, E0` issued at cycle 4 on VXM.0" in text


def test_read_result_names_the_address_read(example):
    mem, _, ev = example
    d = compare_events(TINY, ev, _flip_land(ev, 2, W1, 3, bit=0x80)).first
    assert (d.cycle, d.unit, d.stream, d.address, d.lane) == (2, "MEM slice W1", "E0", 5, 3)
    assert (d.expected, d.actual) == (int(mem[W1, 5, 3]), int(mem[W1, 5, 3]) ^ 0x80)
    assert str(d.producer) == "`Read 0x5, E0` issued at cycle 0 on MEM.W1"
    # the read-back of the Write: cycle 10, port of MEM slice E0, stream W2, address 9
    d = compare_events(TINY, ev, _flip_land(ev, 10, E0, 0)).first
    assert (d.cycle, d.unit, d.stream, d.address, d.expected) == (
        10,
        "MEM slice E0",
        "W2",
        9,
        (2 * int(mem[W1, 5, 0])) % 256,
    )
    assert str(d.producer) == "`Read 0x9, W2` issued at cycle 8 on MEM.E0"


def test_commit_byte_names_slice_address_lane_and_the_write(example):
    mem, _, ev = example
    act = copy.deepcopy(ev)
    act["commit"]["data"][_row(ev, "commit", 7, E0), 11] ^= 1
    d = compare_events(TINY, ev, act).first
    assert (d.cycle, d.signal, d.unit, d.address, d.lane, d.column) == (7, "commit", "MEM slice E0", 9, 11, "data")
    assert d.expected == (2 * int(mem[W1, 5, 11])) % 256 and d.actual == d.expected ^ 1
    assert str(d.producer) == "`Write 0x9, E1` issued at cycle 6 on MEM.E0"


def test_event_on_one_side_only(example):
    _, _, ev = example
    act = copy.deepcopy(ev)
    keep = np.arange(len(ev["issue"]["cycle"])) != _row(ev, "issue", 6, E0)
    act["issue"] = {k: v[keep] for k, v in ev["issue"].items()}
    rep = compare_events(TINY, ev, act)
    d = rep.first
    assert (d.cycle, d.signal, d.kind, d.unit, d.address) == (6, "issue", "only_expected", "MEM.E0", 9)
    assert d.expected == "`Write 0x9, E1`" and d.actual == "nothing issued"
    assert "only in expected: `Write 0x9, E1`" in str(rep)
    # the other way round: the actual side has an event the expected lacks
    d = compare_events(TINY, act, ev).first
    assert (d.kind, d.actual, d.expected) == ("only_actual", "`Write 0x9, E1`", "nothing issued")


def test_a_differing_issued_instruction(example):
    _, _, ev = example
    act = copy.deepcopy(ev)
    act["issue"]["row"][_row(ev, "issue", 0, W1), 1] ^= 1  # Read 0x5 -> Read 0x4
    d = compare_events(TINY, ev, act).first
    assert (d.cycle, d.unit, d.expected, d.actual, d.address) == (0, "MEM.W1", "`Read 0x5, E0`", "`Read 0x4, E0`", 5)


def test_counts_order_and_limit(example):
    _, _, ev = example
    act = _flip_land(_flip_land(_flip_land(ev, 10, E0, 1), 5, VXM0, 2), 2, W1, 3)
    act["hazards"] = {"cycle": np.array([9]), "count": np.array([[1, 0, 0, 0, 0]])}
    rep = compare_events(TINY, ev, act)
    assert rep.count == 4 and rep.count["land"] == 3 and rep.count["hazards"] == 1
    assert [(d.cycle, d.signal) for d in rep.items] == [(2, "land"), (5, "land"), (9, "hazards"), (10, "land")]
    assert rep.items[2].kind == "only_actual" and "bank_conflict 1" in rep.items[2].actual
    short = compare_events(TINY, ev, act, limit=1)
    assert short.count == 4 and len(short.items) == 1 and "(3 more not listed.)" in str(short)


def test_report_to_dict_is_json(example):
    _, _, ev = example
    d = json.loads(json.dumps(compare_events(TINY, ev, _flip_land(ev, 5, VXM0, 7)).to_dict()))
    assert d["equal"] is False and d["count"] == 1 and d["count_by_signal"]["land"] == 1
    f = d["first"]
    assert (f["cycle"], f["unit"], f["stream"], f["lane"]) == (5, "VXM ALU 0", "E1", 7)
    assert f["producer"]["text"] == "add.i8 E1, E0, E0" and f["producer"]["cycle"] == 4


def test_missing_issue_events_say_producer_unknown(example):
    _, _, ev = example
    act = _flip_land(ev, 5, VXM0, 7)
    no_issue = {s: v for s, v in ev.items() if s != "issue"}
    d = compare_events(TINY, no_issue, {s: v for s, v in act.items() if s != "issue"}).first
    assert d.producer == diff.NO_ISSUE == "producer unknown: the trace has no issue events"


# ---------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    "mask, equal",
    [
        (dict(ignore=["land.data"]), True),
        (dict(ignore=["land"]), True),
        (dict(ignore=["hazards"]), False),
        (dict(cycles=["5"]), True),
        (dict(cycles=["0:5"]), False),
        (dict(cycles=["4:"]), True),
        (dict(lanes=["0:8"]), True),
        (dict(lanes=["8:16"]), False),
        (dict(ports=[str(VXM0)]), True),
        (dict(ports=["0"]), False),
    ],
)
def test_masked_differences_are_not_counted(example, mask, equal):
    _, _, ev = example
    rep = compare_events(TINY, ev, _flip_land(ev, 5, VXM0, 7), mask=Mask.parse(**mask))
    assert rep.equal == equal and rep.count == (0 if equal else 1)


def test_mask_queues_and_slices_by_name(example):
    _, _, ev = example
    act = copy.deepcopy(ev)
    act["issue"]["row"][_row(ev, "issue", 8, E0), 1] = 3
    act["commit"]["data"][_row(ev, "commit", 7, E0), 0] ^= 1
    assert compare_events(TINY, ev, act).count == 2
    assert compare_events(TINY, ev, act, Mask.parse(queues=["MEM.E0"])).count["issue"] == 0
    assert compare_events(TINY, ev, act, Mask.parse(queues=["MEM.W1"])).count["issue"] == 1
    assert compare_events(TINY, ev, act, Mask.parse(slices=["E0"])).count["commit"] == 0
    assert compare_events(TINY, ev, act, Mask.parse(slices=[str(E0)], queues=[str(E0)])).equal


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(cycles=["10-20"]), "--ignore-cycles: '10-20' is not START:STOP"),
        (dict(lanes=["5:3"]), "0 <= START < STOP"),
        (dict(ignore=["land.bogus"]), "land has no column 'bogus'"),
        (dict(ports=["x"]), "not a port index"),
    ],
)
def test_mask_parse_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Mask.parse(**kw)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(queues=["MEM.W9"]), "no queue named 'MEM.W9'"),
        (dict(slices=["X3"]), "no MEM slice named 'X3'"),
        (dict(ports=["999"]), "output port index 999 out of range"),
        (dict(lanes=["40:50"]), "past the last lane"),
        (dict(ignore=["hazard"]), "cannot ignore 'hazard': not a trace signal"),
    ],
)
def test_mask_resolve_errors(example, kw, msg):
    """Names and ranges are checked against the config when a comparison starts."""
    _, _, ev = example
    with pytest.raises(ValueError, match=msg):
        compare_events(TINY, ev, ev, Mask.parse(**kw))


def test_bad_events_are_clear_errors(example):
    _, _, ev = example
    broken = copy.deepcopy(ev)
    del broken["land"]["data"]
    with pytest.raises(ValueError, match="actual land events lack column 'data'"):
        compare_events(TINY, ev, broken)
    twice = copy.deepcopy(ev)
    twice["commit"] = {k: np.concatenate([v, v]) for k, v in ev["commit"].items()}
    with pytest.raises(ValueError, match=r"name one \(cycle, slice\) twice"):
        compare_events(TINY, twice, ev)


# ---------------------------------------------------------------------------------------------- chunked
def test_chunked_differ_equals_one_shot_and_finds_producers_across_chunks(example):
    _, _, ev = example
    act = _flip_land(_flip_land(ev, 10, E0, 1), 2, W1, 3)
    d = diff.Differ(TINY)
    for lo, hi in ((0, 1), (1, 3), (3, 9), (9, N)):  # the Read of cycle 0 and its landing at 2 in different chunks
        d.add(trace.select(ev, lo, hi), trace.select(act, lo, hi))
    whole = compare_events(TINY, ev, act)
    assert d.report().items == whole.items and d.report().count == whole.count == 2
    assert str(d.report().first.producer) == "`Read 0x5, E0` issued at cycle 0 on MEM.W1"
    assert str(d.report().items[1].producer) == "`Read 0x9, W2` issued at cycle 8 on MEM.E0"


# ---------------------------------------------------------------------------------------------- producers
STREAM_WRITERS = {"Read", "Gather", "ACC.i32", "ACC.f32", *isa.SXM_SIGS}


def _destination(ins: isa.Instruction, offset: int, cfg: L.ChipConfig) -> int:
    """The stream id an instruction's result group `offset` lands on, from its syntax (docs/isa.md §4, §6)."""
    m = ins.mnemonic
    if m == "Read":
        return ins.operands[1].sid(cfg)
    if m.startswith("ACC."):
        return ins.operands[2].sid(cfg)
    if m == "Transpose.sg16":
        return ins.operands[0].sid(cfg) + 4 * offset  # four 4-stream groups, one per port (docs/sxm.md)
    return ins.operands[0].sid(cfg)  # Gather S, VXM D, SXM D


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(TINY))
def test_every_land_and_commit_has_its_producer(case):
    """On random programs, every result the simulator lands has one producer (two only where the trace counts a
    port conflict, and then the later one), a stream-writing instruction whose destination is the landed stream;
    every commit has its Write (address as committed) or Scatter."""
    program, mem = case
    arr = isa.encode(TINY, program, length=64)
    state, tr = L.run(TINY, arr, L.init_state(TINY, mem), 64, trace=TRACE)
    ev = trace.to_events(TINY, tr, ("issue", "land", "commit", "hazards"))
    conflicts = int(np.asarray(state.hazards.count)[L.HAZARDS.index("port_conflict")])
    land = ev["land"]
    for c, port, sid in zip(land["cycle"], land["port"], land["sid"]):
        found = diff.find_producers(TINY, ev["issue"], int(port), int(c))
        assert found, f"no producer for the land on port {port} at cycle {c}"
        assert len(found) == 1 or conflicts, f"{len(found)} producers and no port conflict counted"
        ins = isa.decode_row(TINY, found[-1].row)
        assert ins.mnemonic in STREAM_WRITERS or isa.vxm_parts(ins.mnemonic), ins
        assert _destination(ins, diff.producer_queue(TINY, int(port))[1], TINY) == sid, (ins, sid)
    com = ev["commit"]
    for c, m, addr in zip(com["cycle"], com["slice"], com["addr"]):
        p = diff.find_commit_producer(TINY, ev["issue"], int(m), int(c))
        ins = isa.decode_row(TINY, p.row)
        assert ins.mnemonic in ("Write", "Scatter")
        assert (ins.operands[0] if ins.mnemonic == "Write" else -1) == addr


def test_result_delay_follows_the_docs():
    """docs/isa.md §6 and config.DEFAULT_DELAYS, written out: Read 2, Gather 3, add.i8 1, add.f32 2, exp.f16 6,
    convert 2, requant 3; ACC with the emit bit 1, without it nothing; a Write lands nothing."""
    cfg = TINY
    enc = lambda text: isa.encode_instruction(cfg, L.parse(f".queue VXM.0\n {text}", None).queues["VXM.0"][0])  # noqa: E731
    for text, d in [("Read 0x3, E1", 2), ("Gather E1, W2", 3), ("add.i8 E0, E1, E2", 1), ("add.f32 E0, E4, E8", 2),
                    ("exp.f16 E0, E2", 6), ("convert.i8.f32 E0, E4", 2), ("requant.i32 E0, E4, E8", 3),
                    ("ACC.i32 0, 2, E4", 1), ("ACC.i32 0, 1, E4", None), ("Write 0x3, E1", None)]:  # fmt: skip
        assert diff.result_delay(cfg, enc(text)) == d, text


# ---------------------------------------------------------------------------------------------- states
def _ring_slot(cfg, cycle_after, dr, p):
    """The ring slot of position p after `cycle_after` cycles (state.py: slot (p - c) mod P eastward, (p + c) mod
    P westward, c the cycle just run)."""
    c = cycle_after - 1
    return (p - c) % cfg.n_positions if dr == 0 else (p + c) % cfg.n_positions


def test_compare_states_in_words(example):
    mem, state, _ = example
    assert compare_states(TINY, state, state).equal
    sram = np.array(state.mem).reshape(TINY.n_mem, TINY.mem_words, TINY.n_lanes)
    assert sram[E0, 9, 3] == (2 * int(mem[W1, 5, 3])) % 256  # the worked example's Write landed
    sram[E0, 9, 3] ^= 0x10
    streams = np.array(state.streams)
    streams[1, _ring_slot(TINY, N, 1, 5), 2, 0] ^= 1  # W2 at position 5 (the VXM), lane 0
    pc = np.array(state.icu.pc)
    pc[E0] += 1
    other = state.replace(mem=sram.reshape(state.mem.shape), streams=streams, icu=state.icu.replace(pc=pc))
    rep = compare_states(TINY, state, other)
    assert rep.count == 3 and rep.count["mem"] == 1 and rep.count["streams"] == 1 and rep.count["icu.pc"] == 1
    by = {d.signal: d for d in rep.items}
    m = by["mem"]
    assert (m.unit, m.address, m.lane, m.expected, m.actual) == (
        "MEM slice E0",
        9,
        3,
        sram[E0, 9, 3] ^ 0x10,
        sram[E0, 9, 3],
    )
    assert "MEM slice E0, address 0x9, lane 3" in str(m)
    s = by["streams"]
    assert (s.unit, s.stream, s.lane) == ("stream registers at position 5 (VXM)", "W2", 0)
    assert "queue MEM.E0" in by["icu.pc"].unit
    masked = compare_states(TINY, state, other, Mask.parse(ignore=["mem", "icu"], lanes=["0:1"]))
    assert masked.equal
    with pytest.raises(ValueError, match="cannot ignore 'icu.bogus': no such state leaf"):
        compare_states(TINY, state, other, Mask.parse(ignore=["icu.bogus"]))


def test_compare_mem_images(example):
    mem, state, _ = example
    other = mem.copy()
    other[W1, 0x1F, 30] ^= 0xFF
    rep = compare_states(TINY, mem, other)
    assert rep.count == 1 and (rep.first.unit, rep.first.address, rep.first.lane) == ("MEM slice W1", 0x1F, 30)
    mixed = compare_states(TINY, state, L.mem_image(TINY, state))
    assert mixed.equal and "only MEM is compared" in mixed.notes[0]
    with pytest.raises(ValueError, match="MEM image must be uint8"):
        compare_states(TINY, mem, mem[:2])


# ---------------------------------------------------------------------------------------------- lpu-jax diff
def _write_trace(path, ev, bounds):
    from lpu_jax import formats

    with formats.TraceWriter(path, TINY, tuple(ev)) as w:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            w.append(trace.select(ev, lo, hi))


def test_cli_diff_traces_streams_chunks(example, tmp_path, capsys):
    from lpu_jax.cli import main

    _, _, ev = example
    act = _flip_land(ev, 5, VXM0, 7)
    a, b = tmp_path / "a.lputrace", tmp_path / "b.lputrace"
    _write_trace(a, ev, [0, 3, 7, 12, N])  # chunked differently on the two sides
    _write_trace(b, act, [0, 5, 6, N])
    assert main(["diff", str(a), str(a)]) == 0
    assert "equal: no divergence" in capsys.readouterr().out
    out = tmp_path / "r.json"
    assert main(["diff", str(a), str(b), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "cycle 5, VXM ALU 0, stream E1, lane 7" in text and "`add.i8 E1, E0, E0` issued at cycle 4" in text
    assert json.loads(out.read_text())["first"]["stream"] == "E1"
    assert main(["diff", str(a), str(b), "--ignore", "land.data"]) == 0
    assert main(["diff", str(a), str(b), "--ignore-lanes", "7", "--ignore-cycles", "0:2"]) == 0
    assert main(["diff", str(a), str(b), "--ignore-port", str(VXM0)]) == 0


def test_cli_diff_states_and_mem(example, tmp_path, capsys):
    from lpu_jax import formats
    from lpu_jax.cli import main

    mem, state, _ = example
    sa, sb, ma, mb = (tmp_path / n for n in ("a.lpustate", "b.lpustate", "a.lpumem", "b.lpumem"))
    formats.write_state(sa, TINY, state)
    other = np.array(L.mem_image(TINY, state))
    other[E0, 9, 3] ^= 1
    formats.write_state(sb, TINY, state.replace(mem=other.reshape(state.mem.shape)))
    formats.write_mem(ma, TINY, mem)
    formats.write_mem(mb, TINY, other)
    assert main(["diff", str(sa), str(sb)]) == 1
    assert "MEM slice E0, address 0x9, lane 3" in capsys.readouterr().out
    assert main(["diff", str(sa), str(sb), "--ignore-slice", "E0"]) == 0
    assert main(["diff", str(ma), str(ma)]) == 0
    assert main(["diff", str(sa), str(mb)]) == 1  # a state against an image: MEM only


def test_cli_diff_bad_input_is_one_line(example, tmp_path, capsys):
    from lpu_jax import formats
    from lpu_jax.cli import main

    mem, _, ev = example
    t, m, junk = tmp_path / "a.lputrace", tmp_path / "a.lpumem", tmp_path / "junk"
    _write_trace(t, ev, [0, N])
    formats.write_mem(m, TINY, mem)
    junk.write_bytes(b"not a trace at all")
    for argv, msg in [
        ([str(t), str(m)], "diff compares two traces, or two states / MEM images"),
        ([str(t), str(junk)], "not an lpu_jax file"),
        ([str(t), str(tmp_path / "missing")], "missing"),
        ([str(t), str(t), "--ignore-cycles", "x"], "not START:STOP"),
        ([str(t), str(t), "--ignore-queue", "MEM.Q"], "no queue named 'MEM.Q'"),
    ]:
        assert main(["diff", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lpu-jax diff: error:") and msg in err, err


@pytest.mark.parametrize("seed", range(4))
def test_trace_alignment_of_differently_chunked_sides(example, seed):
    """`lpu-jax diff`'s chunk alignment: both sides cut at random cycles (empty chunks included) give the report
    of the whole events."""
    from lpu_jax.cli.diff import diff_traces

    _, _, ev = example
    act = _flip_land(_flip_land(ev, 10, E0, 1), 2, W1, 3)
    act["commit"]["data"][_row(ev, "commit", 7, E0), 5] ^= 1
    rng = np.random.default_rng(seed)

    def pieces(events):
        cuts = sorted(set(rng.integers(0, N + 4, rng.integers(0, 8)).tolist()) | {0, N + 4})
        return iter([trace.select(events, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])])

    d = diff.Differ(TINY)
    diff_traces((pieces(ev), pieces(act)), (tuple(ev), tuple(act)), d)
    whole = compare_events(TINY, ev, act)
    assert d.report().count == whole.count == 3 and d.report().items == whole.items


@pytest.mark.slow
def test_cli_diff_of_long_recorded_traces(tmp_path, capsys):
    """Two 3,000-cycle recordings of a busy program, chunked differently (64 and 100 cycles), one with a byte
    changed in the sink at cycle 2,500: `lpu-jax diff` streams both and names that cycle."""
    from lpu_jax import formats, programs
    from lpu_jax.cli import main

    n = 3000
    arr = isa.encode(TINY, programs.mem_vxm_load(TINY, n))
    mem = mem_image(TINY, 5)
    sig = ("issue", "land", "commit")

    def changed(events):
        land = events["land"]
        hit = np.nonzero(land["cycle"] == 2500)[0]
        if len(hit):
            land["data"][hit[0], 0, 9] ^= 0x01
        return events

    for name, chunk, edit in (("a", 64, None), ("b", 100, changed)):
        with formats.TraceWriter(tmp_path / f"{name}.lputrace", TINY, sig) as w:
            sink = w.append if edit is None else (lambda ev, w=w: w.append(edit(ev)))
            trace.record(TINY, arr, L.init_state(TINY, mem), n, sig, chunk_cycles=chunk, sink=sink)
    assert main(["diff", str(tmp_path / "a.lputrace"), str(tmp_path / "b.lputrace")]) == 1
    out = capsys.readouterr().out
    assert "1 divergence (land 1) over cycles 0..2,999" in out and "cycle 2,500," in out and "lane 9" in out
