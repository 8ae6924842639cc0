"""The file formats (docs/formats.md): round trips, the documented numpy-only reader, and fuzzing of every reader.

The fuzzing takes files written by the library and damages them (truncations, flipped bits, overwritten bytes,
absurd lengths and shapes re-signed with valid CRCs, random headers, random garbage); every damaged file must give
a FormatError naming the file, never another exception, and a damaged file that loads must equal the original.
The container is taken apart and rebuilt here from the byte-level description in docs/formats.md (struct and
zlib), independently of lpu_jax.formats.
"""

from __future__ import annotations

import ast
import json
import re
import struct
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lpu_jax as L
from lpu_jax import formats as F
from lpu_jax import programs, trace
from lpu_jax.formats import FormatError

ROOT = Path(__file__).resolve().parent.parent
TINY = L.tiny()
N_CYCLES, CHUNK = 48, 8
K = N_CYCLES // CHUNK
"""The recorded run: mem_vxm_load on tiny() for 48 cycles in K = 6 chunks of 8, every signal (the dense fields are then
conftest.TRACE and the scan length 8, which tests/test_sim.py compiles too)."""
FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
KINDS = ("program", "mem", "state", "trace")
READ = {"program": F.read_program, "mem": F.read_mem, "state": F.read_state, "trace": F.read_trace}


def _events_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b), (list(a), list(b))
    for s in a:
        assert list(a[s]) == list(b[s]), s
        for k in a[s]:
            x, y = np.asarray(a[s][k]), np.asarray(b[s][k])
            assert x.dtype == y.dtype and x.shape == y.shape, (s, k, x.dtype, y.dtype, x.shape, y.shape)
            np.testing.assert_array_equal(x, y, err_msg=f"{s}.{k}")


def _leaves(state) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(p, simple=True, separator="."): np.asarray(x)
        for p, x in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def _states_equal(a, b) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert list(la) == list(lb)
    for k in la:
        assert la[k].dtype == lb[k].dtype and la[k].shape == lb[k].shape, k
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


@pytest.fixture(scope="module")
def run():
    """The recorded run from a random SRAM: (program, final state, events of every signal, events of each chunk,
    the initial SRAM image)."""
    prog = programs.mem_vxm_load(TINY, N_CYCLES + CHUNK)  # still busy after the recorded cycles
    image = np.random.default_rng(7).integers(0, 256, (TINY.n_mem, TINY.mem_words, TINY.n_lanes), dtype=np.uint8)
    state, ev = trace.record(TINY, prog, L.init_state(TINY, image), N_CYCLES, trace.SIGNALS, chunk_cycles=CHUNK)
    chunks = [trace.select(ev, c, c + CHUNK) for c in range(0, N_CYCLES, CHUNK)]
    return prog, state, ev, chunks, image


@pytest.fixture(scope="module")
def files(run, tmp_path_factory):
    """One small file of each kind, its bytes, and what it holds: {kind: (path, bytes, content)}."""
    prog, state, ev, chunks, image = run
    d = tmp_path_factory.mktemp("formats")
    sig = ("issue", "land", "commit", "hazards")
    out = {}
    F.write_program(d / "p.lpuprog", TINY, prog)
    out["program"] = (d / "p.lpuprog", L.encode(TINY, prog))
    F.write_mem(d / "m.lpumem", TINY, image)
    out["mem"] = (d / "m.lpumem", image)
    F.write_state(d / "s.lpustate", TINY, state)
    out["state"] = (d / "s.lpustate", state)
    with F.TraceWriter(d / "t.lputrace", TINY, sig, meta={"program": "mem_vxm_load"}, window=(0, N_CYCLES)) as w:
        for c in chunks:
            w.append({s: c[s] for s in sig})
    out["trace"] = (d / "t.lputrace", {s: ev[s] for s in sig})
    return _Quiet({k: (p, p.read_bytes(), v) for k, (p, v) in out.items()})


class _Quiet(dict):
    """A dict that hypothesis reports briefly (the files are hundreds of kB)."""

    def __repr__(self) -> str:
        return f"<files {', '.join(self)}>"


def _same(kind: str, got, content) -> None:
    """A file that loads holds exactly `content`."""
    if kind == "trace":
        _events_equal(got[2], content)
    elif kind == "state":
        _states_equal(got[1], content)
    else:
        assert got[1].dtype == content.dtype
        np.testing.assert_array_equal(got[1], content)


# --------------------------------------------------------------------------- the config
CONFIGS = [
    L.tiny(),
    L.small(),
    L.groqchip1(),
    L.tiny().replace(
        delays=tuple((n, {"Read": 5}.get(n, d)) for n, d in L.tiny().delays),
        slice_positions=(0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13),
        group_byte_order="big",
        clock_hz=1.25e9,
    ),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_config_dict_round_trip(cfg):
    d = F.config_to_dict(cfg)
    assert json.loads(json.dumps(d)) == d  # plain JSON
    assert d["n_superlanes"] == cfg.n_superlanes and d["floorplan"] == list(cfg.floorplan)
    back = F.config_from_dict(json.loads(json.dumps(d)))
    assert back == cfg and isinstance(back.floorplan, tuple) and isinstance(back.delays[0], tuple)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d.pop("n_streams"), "config.n_streams: missing"),
        (lambda d: d.update(colour="red"), "config.colour: unknown field"),
        (lambda d: d.update(n_streams="16"), "config.n_streams: must be an integer"),
        (lambda d: d.update(n_streams=16.0), "config.n_streams: must be an integer"),
        (lambda d: d.update(n_streams=True), "config.n_streams: must be an integer"),
        (lambda d: d.update(group_aligned=1), "config.group_aligned: must be true or false"),
        (lambda d: d.update(clock_hz=float("nan")), "config.clock_hz: must be a finite number"),
        (lambda d: d.update(floorplan="MEM"), "config.floorplan: must be a list"),
        (lambda d: d.update(floorplan=["MEM", 3]), "config.floorplan[1]: must be a string"),
        (lambda d: d["delays"].__setitem__(2, ["Gather"]), "config.delays[2]: must be a list of 2 values"),
        (lambda d: d.update(slice_positions=[0, "1"]), "config.slice_positions[1]: must be an integer"),
        (lambda d: d.update(n_streams=6), "ChipConfig.n_streams: must be a multiple of 4"),
        (lambda d: d.update(floorplan=["MEM", "VXM"]), "ChipConfig.floorplan"),
        (lambda d: d.update(floorplan=["MEM", "VXM", "MEM"], lanes_per_superlane=2**21), "n_lanes is beyond"),
        (lambda d: d.update(floorplan=["MEM", "VXM", "MEM"] + ["SXM"] * 9, sxm_units=2**17), "queues is beyond"),
    ],
)
def test_config_from_dict_names_the_field(change, field):
    d = F.config_to_dict(TINY)
    change(d)
    with pytest.raises(FormatError, match=re.escape(field)):
        F.config_from_dict(d)


def test_config_from_dict_wants_an_object():
    with pytest.raises(FormatError, match="config: must be a JSON object"):
        F.config_from_dict([1, 2])


# --------------------------------------------------------------------------- round trips
def test_program_round_trip(files, run, tmp_path):
    prog = run[0]
    cfg, arr = F.read_program(files["program"][0])
    assert cfg == TINY and arr.dtype == np.int32
    np.testing.assert_array_equal(arr, L.encode(TINY, prog))
    from lpu_jax import isa

    assert isa.decode(TINY, arr) == prog
    # an encoded array, any power-of-two length
    arr128 = L.encode(TINY, prog, length=128)
    F.write_program(tmp_path / "a.lpuprog", TINY, arr128.astype(np.int64))
    np.testing.assert_array_equal(F.read_program(tmp_path / "a.lpuprog")[1], arr128)
    assert F.file_kind(tmp_path / "a.lpuprog") == "program"


def test_program_writer_rejects_bad_arrays(tmp_path):
    Q = len(L.queue_names(TINY))
    with pytest.raises(ValueError, match=r"int32 \[24, L, 8\] for tiny"):
        F.write_program(tmp_path / "x", TINY, np.zeros((Q - 1, 64, 8), np.int32))
    with pytest.raises(ValueError, match="int32 values"):
        F.write_program(tmp_path / "x", TINY, np.full((Q, 64, 8), 2**31, np.int64))
    with pytest.raises(ValueError, match="int32 values"):
        F.write_program(tmp_path / "x", TINY, np.zeros((Q, 64, 8), np.float32))
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_mem_round_trip(files, tmp_path):
    path, _, image = files["mem"]
    cfg, got = F.read_mem(path)
    assert cfg == TINY and got.dtype == np.uint8 and got.flags.writeable
    np.testing.assert_array_equal(got, image)
    with pytest.raises(ValueError, match=r"uint8 \[4, 512, 32\] for tiny"):
        F.write_mem(tmp_path / "m", TINY, image[:, :256])
    with pytest.raises(ValueError, match="MEM image must be uint8"):
        F.write_mem(tmp_path / "m", TINY, image.astype(np.int8))


def test_state_round_trip_continues_the_run(files, run):
    """A state file is a full checkpoint: 16 more cycles from the read state equal 16 more from the original."""
    prog, state, _, _, image = run
    cfg, got = F.read_state(files["state"][0])
    assert cfg == TINY and isinstance(got, L.MachineState)
    _states_equal(got, state)
    assert int(got.cycle) == N_CYCLES and (L.mem_image(TINY, got) != image).any()  # a real run: data was committed
    s1, e1 = trace.record(TINY, prog, state, CHUNK, trace.SIGNALS, chunk_cycles=CHUNK)
    s2, e2 = trace.record(TINY, prog, got, CHUNK, trace.SIGNALS, chunk_cycles=CHUNK)
    _events_equal(e1, e2)
    _states_equal(s1, s2)
    assert len(e1["issue"]["cycle"]) > 0 and e1["issue"]["cycle"].min() == N_CYCLES


def test_state_writer_rejects_another_config(run, tmp_path):
    with pytest.raises(ValueError, match="a small state has"):
        F.write_state(tmp_path / "s", L.small(), run[1])


@pytest.mark.parametrize("compress", [True, False])
def test_trace_streamed_chunk_by_chunk_equals_record(run, tmp_path, compress):
    """trace.record(..., sink=writer.append) on disk equals trace.record without a sink (compressed or not)."""
    prog, _, ev, _, image = run
    p = tmp_path / "t.lputrace"
    meta = {"seed": 3, "note": "x"}
    with F.TraceWriter(p, TINY, trace.SIGNALS, meta=meta, window=(0, N_CYCLES), compress=compress) as w:
        start = L.init_state(TINY, image)
        state, none = trace.record(TINY, prog, start, N_CYCLES, trace.SIGNALS, chunk_cycles=CHUNK, sink=w.append)
    assert none is None and w.closed and w.chunks == K
    cfg, header, got = F.read_trace(p)
    assert cfg == TINY and header["signals"] == list(trace.SIGNALS)
    assert header["meta"] == {"seed": 3, "note": "x"} and header["window"] == [0, N_CYCLES]
    assert header["compression"] == ("zlib" if compress else None)
    counts = {s: len(ev[s]["cycle"]) for s in trace.SIGNALS}
    assert header["end"] == {"chunks": K, "counts": counts}
    assert counts["issue"] > 0 and counts["land"] > 0 and counts["commit"] > 0 and counts["streams"] == N_CYCLES
    _events_equal(got, ev)
    _states_equal(state, run[1])
    # iter_trace: one chunk at a time, each the events of its 16 cycles
    cfg, header, it = F.iter_trace(p)
    parts = list(it)
    assert len(parts) == K
    for k, part in enumerate(parts):
        _events_equal(part, trace.select(ev, k * CHUNK, (k + 1) * CHUNK))


def test_trace_without_chunks_reads_empty(tmp_path):
    p = tmp_path / "e.lputrace"
    F.TraceWriter(p, TINY, ("issue", "hazards")).close()
    cfg, header, ev = F.read_trace(p)
    _events_equal(ev, trace.empty(TINY, ("issue", "hazards")))
    assert header["meta"] == {} and header["window"] is None and header["end"]["chunks"] == 0


def test_unfinished_trace(run, tmp_path):
    """A writer left by an exception writes no end block: reading says truncated; allow_truncated reads the chunks."""
    _, _, ev, chunks, _ = run
    p = tmp_path / "u.lputrace"
    with pytest.raises(RuntimeError):
        with F.TraceWriter(p, TINY, trace.SIGNALS) as w:
            w.append(chunks[0])
            w.append(chunks[1])
            raise RuntimeError("the run crashed")
    with pytest.raises(FormatError, match=r"u\.lputrace: end block: missing: the trace is truncated after 2 complete"):
        F.read_trace(p)
    with pytest.raises(FormatError, match="truncated"):
        F.iter_trace(p)
    cfg, header, it = F.iter_trace(p, allow_truncated=True)
    assert header["end"] is None
    parts = list(it)
    assert len(parts) == 2
    _events_equal(trace.concat(parts), trace.select(ev, 0, 2 * CHUNK))
    # cut inside the second chunk's data: only the first chunk is complete
    data = p.read_bytes()
    hlen = struct.unpack_from("<I", data, 12)[0]
    first = 20 + hlen + 20 + struct.unpack_from("<Q", data, 20 + hlen + 4)[0]
    for cut in (first + 3, first + 25, len(data) - 1):
        (tmp_path / "c.lputrace").write_bytes(data[:cut])
        _, header, it = F.iter_trace(tmp_path / "c.lputrace", allow_truncated=True)
        parts = list(it)
        assert len(parts) == 1 and header["end"] is None
        _events_equal(parts[0], chunks[0])


def test_trace_writer_rejects_bad_input(run, tmp_path):
    chunk = run[3][0]
    p = tmp_path / "w.lputrace"
    with pytest.raises(ValueError, match="unknown trace signal 'issues'"):
        F.TraceWriter(p, TINY, ("issues",))
    with pytest.raises(ValueError, match="must be JSON"):
        F.TraceWriter(p, TINY, ("issue",), meta={"f": object()})
    with pytest.raises(ValueError, match="0 <= start <= stop"):
        F.TraceWriter(p, TINY, ("issue",), window=(5, 2))
    w = F.TraceWriter(p, TINY, ("issue", "land"))
    with pytest.raises(ValueError, match="lack signal 'land'"):
        w.append({"issue": chunk["issue"]})
    with pytest.raises(ValueError, match="hold signal 'commit'"):
        w.append({"issue": chunk["issue"], "land": chunk["land"], "commit": chunk["commit"]})
    bad = dict(chunk["issue"], row=chunk["issue"]["row"][:, :4])
    with pytest.raises(ValueError, match=r"issue.row has shape \[\d+, 4\]; expected \[\d+, 8\]"):
        w.append({"issue": bad, "land": chunk["land"]})
    bad = dict(chunk["issue"], queue=chunk["issue"]["queue"].astype(np.float64))
    with pytest.raises(ValueError, match="issue.queue is float64"):
        w.append({"issue": bad, "land": chunk["land"]})
    w.append({"issue": chunk["issue"], "land": chunk["land"]})
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.append({"issue": chunk["issue"], "land": chunk["land"]})
    assert F.read_trace(p)[1]["end"]["chunks"] == 1


def test_file_kind_and_wrong_kinds(files, tmp_path):
    for kind, (path, _, _) in files.items():
        assert F.file_kind(path) == kind
        other = {"program": "mem", "mem": "state", "state": "trace", "trace": "program"}[kind]
        with pytest.raises(FormatError, match=f"magic: this is a {F._WORDS[kind]} file, not a {F._WORDS[other]}"):
            READ[other](path)
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY\x01\x00")
    with pytest.raises(FormatError, match=r"x\.npy: magic: not an lpu_jax file"):
        F.file_kind(tmp_path / "x.npy")
    with pytest.raises(FormatError, match=r"nope\.lpuprog: cannot read: No such file"):
        F.read_program(tmp_path / "nope.lpuprog")


# --------------------------------------------------------------------------- the bytes, independently
def _split(data: bytes):
    """(magic, version, flags, header bytes, [(tag, data)]) of a well-formed file, per docs/formats.md."""
    magic, version, flags, hlen = struct.unpack_from("<8sHHI", data)
    header = data[16 : 16 + hlen]
    assert struct.unpack_from("<I", data, 16 + hlen)[0] == zlib.crc32(data[: 16 + hlen])
    pos, blocks = 20 + hlen, []
    while pos < len(data):
        tag, n, dcrc, hcrc = struct.unpack_from("<4sQII", data, pos)
        assert hcrc == zlib.crc32(data[pos : pos + 16]) and dcrc == zlib.crc32(data[pos + 20 : pos + 20 + n])
        blocks.append((tag, data[pos + 20 : pos + 20 + n]))
        pos += 20 + n
    assert pos == len(data)
    return magic, version, flags, header, blocks


def _block(tag: bytes, data: bytes, n: int | None = None) -> bytes:
    head = struct.pack("<4sQI", tag, len(data) if n is None else n, zlib.crc32(data))
    return head + struct.pack("<I", zlib.crc32(head)) + data


def _build(magic, version, flags, header: bytes, blocks, lengths=None) -> bytes:
    """A file with valid CRCs throughout (block lengths as given in `lengths`, else the true ones)."""
    head = struct.pack("<8sHHI", magic, version, flags, len(header)) + header
    out = head + struct.pack("<I", zlib.crc32(head))
    for i, (tag, data) in enumerate(blocks):
        out += _block(tag, data, None if lengths is None else lengths[i])
    return out


def test_layout_matches_the_spec(files):
    """The bytes as docs/formats.md describes them, read with struct alone."""
    for kind, (_, data, content) in files.items():
        magic, version, flags, header, blocks = _split(data)
        assert magic == F.MAGIC[kind] and len(magic) == 8 and version == 1 and flags == 0
        h = json.loads(header)
        assert h["config"]["n_superlanes"] == 2 and h["config"]["mem_words"] == 512
        if kind == "trace":
            assert [t for t, _ in blocks] == [b"CHNK"] * K + [b"TEND"]
            ns = len(h["signals"])
            end = np.frombuffer(blocks[-1][1], "<u8")
            assert end.tolist() == [K, *(len(content[s]["cycle"]) for s in h["signals"])]
            assert h["compression"] == "zlib"  # the default: uint64 length, then a zlib stream of that length
            chunks = [zlib.decompress(b[8:]) for _, b in blocks[:K]]
            assert [struct.unpack_from("<Q", b)[0] for _, b in blocks[:K]] == [len(c) for c in chunks]
            heads = [np.frombuffer(c, "<u8", count=1 + ns) for c in chunks]
            assert [int(h[0]) for h in heads] == list(range(K))  # chunk indices
            assert np.sum([h[1:] for h in heads], axis=0).tolist() == end[1:].tolist()
            # the first column of the first chunk is issue.cycle, int64 little-endian
            n0 = int(heads[0][1])
            first = np.frombuffer(chunks[0], "<i8", count=n0, offset=8 + 8 * ns)
            np.testing.assert_array_equal(first, content["issue"]["cycle"][:n0])
        else:
            assert all(t == b"ARRY" for t, _ in blocks) and len(blocks) == len(h["arrays"])
        if kind == "program":
            assert h["queues"][:2] == ["MEM.W1", "MEM.W0"] and h["arrays"] == [
                {"name": "program", "dtype": "<i4", "shape": [24, 64, 8]}
            ]
            np.testing.assert_array_equal(np.frombuffer(blocks[0][1], "<i4").reshape(24, 64, 8), content)
        if kind == "mem":
            assert blocks[0][1] == content.tobytes()
        if kind == "state":
            names = [a["name"] for a in h["arrays"]]
            assert names[:4] == ["cycle", "streams", "mem", "icu.pc"] and "hazards.first_where" in names
            assert np.frombuffer(blocks[0][1], "<i4").tolist() == [N_CYCLES]


def _doc_reader():
    text = (ROOT / "docs" / "formats.md").read_text()
    section = text.split("## A numpy-only reader", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"numpy", "json", "struct", "zlib"}, imported
    ns: dict = {}
    exec(compile(code, "docs/formats.md", "exec"), ns)
    return ns["read_lpu_file"]


def test_the_documented_numpy_reader(files, run, tmp_path):
    """The numpy-only reader of docs/formats.md, run on the library's files, returns the library readers' arrays."""
    read = _doc_reader()
    for kind, (path, _, _) in files.items():
        k, header, data = read(path)
        assert k == kind and header["config"] == F.config_to_dict(TINY)
        if kind == "program":
            np.testing.assert_array_equal(data["program"], F.read_program(path)[1])
        elif kind == "mem":
            np.testing.assert_array_equal(data["mem"], F.read_mem(path)[1])
        elif kind == "state":
            lib = _leaves(F.read_state(path)[1])
            assert list(data) == list(lib)
            for name, a in lib.items():
                assert data[name].dtype == a.dtype and data[name].shape == a.shape, name
                np.testing.assert_array_equal(data[name], a, err_msg=name)
        else:
            _events_equal(data, F.read_trace(path)[2])
    # a trace with every signal, and one without chunks
    p = tmp_path / "all.lputrace"
    with F.TraceWriter(p, TINY, trace.SIGNALS) as w:
        for c in run[3]:
            w.append(c)
    _events_equal(read(p)[2], run[2])
    F.TraceWriter(tmp_path / "e.lputrace", TINY, ("land",)).close()
    _events_equal(read(tmp_path / "e.lputrace")[2], trace.empty(TINY, ("land",)))
    # it rejects damage too
    data = bytearray(p.read_bytes())
    data[-30] ^= 4
    (tmp_path / "bad.lputrace").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC mismatch"):
        read(tmp_path / "bad.lputrace")


@pytest.mark.parametrize("kind", KINDS)
def test_newer_version_is_refused(files, kind, tmp_path):
    magic, _, flags, header, blocks = _split(files[kind][1])
    p = tmp_path / "v2"
    p.write_bytes(_build(magic, 2, flags, header, blocks))
    word = F._WORDS[kind]
    with pytest.raises(
        FormatError, match=re.escape(f"version 2 of the {word} format is newer than this reader (reads 1)")
    ):
        READ[kind](p)
    p.write_bytes(_build(magic, 1, 4, header, blocks))
    with pytest.raises(FormatError, match="unknown flags 0x0004"):
        READ[kind](p)


# --------------------------------------------------------------------------- fuzzing
def _load(kind: str, data: bytes, path: Path, content) -> bool:
    """Write `data` and read it: False after a FormatError naming the file, True if it loaded (and equals content)."""
    path.write_bytes(data)
    try:
        got = READ[kind](path)
    except FormatError as e:
        assert str(path) in str(e) and len(str(e)) > len(str(path)) + 5, str(e)
        assert "\n" not in str(e)
        return False
    _same(kind, got, content)
    return True


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _fuzz(files, scratch, kind, data, must_fail=True):
    loaded = _load(kind, data, scratch / f"f.{kind}", files[kind][2])
    assert not (must_fail and loaded), "a damaged file loaded"


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, **FUZZ)
@given(st.data())
def test_fuzz_truncation(files, scratch, kind, data):
    raw = files[kind][1]
    cut = data.draw(st.integers(0, len(raw) - 1))
    _fuzz(files, scratch, kind, raw[:cut])


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=50, **FUZZ)
@given(st.data())
def test_fuzz_bit_flip(files, scratch, kind, data):
    raw = bytearray(files[kind][1])
    # half the flips in the first 400 bytes (prefix, header, first block header), half anywhere
    hi = data.draw(st.sampled_from([min(400, len(raw)), len(raw)]))
    bit = data.draw(st.integers(0, 8 * hi - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    _fuzz(files, scratch, kind, bytes(raw))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, **FUZZ)
@given(st.data())
def test_fuzz_overwritten_bytes(files, scratch, kind, data):
    """Up to 8 bytes overwritten anywhere: an error, or (the same bytes written back) the original."""
    raw = bytearray(files[kind][1])
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _fuzz(files, scratch, kind, bytes(raw), must_fail=bytes(raw) != files[kind][1])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def _paths(v, at=()):
    """Every place in a JSON value (paths of keys and indices)."""
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, (*at, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, (*at, i))


def _replace(v, path, new):
    if not path:
        return new
    v = v.copy()
    v[path[0]] = _replace(v[path[0]], path[1:], new)
    return v


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, **FUZZ)
@given(st.data())
def test_fuzz_header_values(files, scratch, kind, data):
    """Any value of the header replaced by any JSON value (sizes, shapes, config fields ...), CRCs valid: an error,
    or a file holding the original arrays."""
    magic, version, flags, header, blocks = _split(files[kind][1])
    h = json.loads(header)
    paths = [p for p in _paths(h) if p]
    where = data.draw(st.sampled_from(paths))
    new = data.draw(
        JSON | st.integers(-1, 2**64) | st.lists(st.integers(-1, 2**40), max_size=5) | st.sampled_from([[], {}, 0])
    )
    text = json.dumps(_replace(h, where, new)).encode()
    _fuzz(files, scratch, kind, _build(magic, version, flags, text, blocks), must_fail=False)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, **FUZZ)
@given(header=JSON | st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
def test_fuzz_random_header(files, scratch, kind, header):
    magic, version, flags, _, blocks = _split(files[kind][1])
    text = header.encode("utf-8") if isinstance(header, str) else json.dumps(header).encode()
    _fuzz(files, scratch, kind, _build(magic, version, flags, text, blocks))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, **FUZZ)
@given(st.data())
def test_fuzz_absurd_lengths(files, scratch, kind, data):
    """The header length, a block's length or a chunk's event counts set to anything (the CRCs made valid)."""
    raw = files[kind][1]
    magic, version, flags, header, blocks = _split(raw)
    what = data.draw(st.sampled_from(["header", "block", "counts", "version"]))
    big = st.integers(0, 2**64 - 1) | st.integers(0, 2 * len(raw))
    if what == "header":  # no CRC can be made valid for a wrong header length: it moves the CRC
        out = bytearray(raw)
        struct.pack_into("<I", out, 12, data.draw(st.integers(0, 2**32 - 1).filter(lambda n: n != len(header))))
        out = bytes(out)
    elif what == "block":
        k = data.draw(st.integers(0, len(blocks) - 1))
        lengths = [len(b) for _, b in blocks]
        lengths[k] = data.draw(big.filter(lambda n: n != lengths[k]))
        out = _build(magic, version, flags, header, blocks, lengths)
    elif what == "counts" and kind == "trace":
        k = data.draw(st.integers(0, len(blocks) - 1))
        tag, b = blocks[k]
        n = len(json.loads(header)["signals"])
        counts = data.draw(st.lists(big, min_size=n + 1, max_size=n + 1))
        new = struct.pack(f"<{n + 1}Q", *counts) + (b[8 * (n + 1) :] if tag == b"CHNK" else b"")
        if new == b:
            return
        out = _build(magic, version, flags, header, [*blocks[:k], (tag, new), *blocks[k + 1 :]])
    else:
        v = data.draw(st.integers(0, 2**16 - 1).filter(lambda v: v != 1))
        out = _build(magic, v, flags, header, blocks)
    _fuzz(files, scratch, kind, out)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, **FUZZ)
@given(st.data())
def test_fuzz_blocks_added_or_dropped(files, scratch, kind, data):
    magic, version, flags, header, blocks = _split(files[kind][1])
    k = data.draw(st.integers(0, len(blocks) - 1))
    how = data.draw(st.sampled_from(["drop", "repeat", "swap", "append", "garbage"]))
    if how == "drop":
        blocks = blocks[:k] + blocks[k + 1 :]
    elif how == "repeat":
        blocks = blocks[: k + 1] + blocks[k:]
    elif how == "swap":
        j = data.draw(st.integers(0, len(blocks) - 1))
        if blocks[j] == blocks[k]:
            return
        blocks[j], blocks[k] = blocks[k], blocks[j]
    elif how == "append":
        blocks = [*blocks, (data.draw(st.sampled_from([b"ARRY", b"CHNK", b"TEND"])), data.draw(st.binary(max_size=40)))]
    out = _build(magic, version, flags, header, blocks)
    if how == "garbage":
        out += data.draw(st.binary(min_size=1, max_size=40))
    _fuzz(files, scratch, kind, out)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, **FUZZ)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_garbage(files, scratch, kind, junk, with_magic):
    data = (F.MAGIC[kind] + junk) if with_magic else junk
    _fuzz(files, scratch, kind, data)
    try:
        assert F.MAGIC[F.file_kind(scratch / f"f.{kind}")] == data[:8]
    except FormatError as e:
        assert str(e)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=3000, **FUZZ)
@given(st.data())
def test_fuzz_many_mutations(files, scratch, kind, data):
    """Many more truncations, flips and overwrites (slow)."""
    raw = bytearray(files[kind][1])
    how = data.draw(st.sampled_from(["cut", "flip", "bytes"]))
    if how == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    else:
        for _ in range(data.draw(st.integers(1, 16))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _fuzz(files, scratch, kind, bytes(raw), must_fail=bytes(raw) != files[kind][1])
