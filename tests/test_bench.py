"""The benchmark suite's pieces (scripts/bench.py, scripts/scalesim_gemm.py) on tiny inputs.

The SCALE-Sim files are checked against SCALE-Sim 3.0.0's own readers when its venv (.venv-scalesim) exists, and
against the key names and row format read off its source (scale_config.read_conf_file,
topology_utils.load_arrays_gemm, simulator.generate_reports) otherwise. Real benchmark runs are slow tests.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCALESIM_PY = ROOT / ".venv-scalesim" / "bin" / "python"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load("bench")
ss = _load("scalesim_gemm")

# Every (section, key) that SCALE-Sim 3.0.0's scale_config.read_conf_file reads with config.get / getboolean when
# sparsity is off and the interface bandwidth is CALC (read off scalesim/scale_config.py).
SCALESIM_KEYS = {
    "general": {"run_name"},
    "run_presets": {"interfacebandwidth", "useramulatortrace"},
    "architecture_presets": {
        "arrayheight",
        "arraywidth",
        "ifmapsramszkb",
        "filtersramszkb",
        "ofmapsramszkb",
        "ifmapoffset",
        "filteroffset",
        "ofmapoffset",
        "dataflow",
        "readrequestbuffer",
        "writerequestbuffer",
    },
    "layout": {
        "ifmapcustomlayout",
        "filtercustomlayout",
        "ifmapsrambankbandwidth",
        "ifmapsrambanknum",
        "ifmapsrambankport",
        "filtersrambankbandwidth",
        "filtersrambanknum",
        "filtersrambankport",
    },
    "sparsity": {"sparsitysupport"},
}


def test_config_has_the_five_sections_and_every_key():
    cp = configparser.ConfigParser()
    cp.read_string(ss.config_text("run1", 320, 320, "ws", 100, 200, 50))
    assert set(cp.sections()) == set(SCALESIM_KEYS)
    for sec, keys in SCALESIM_KEYS.items():
        missing = keys - set(cp[sec])
        assert not missing, f"[{sec}] lacks {sorted(missing)}"
    a = cp["architecture_presets"]
    assert (a["ArrayHeight"], a["ArrayWidth"], a["Dataflow"]) == ("320", "320", "ws")
    assert (a["IfmapSramSzkB"], a["FilterSramSzkB"], a["OfmapSramSzkB"]) == ("100", "200", "50")
    assert cp["general"]["run_name"] == "run1"
    assert cp["run_presets"]["InterfaceBandwidth"] == "CALC"
    assert cp["sparsity"]["SparsitySupport"].lower() == "false"
    with pytest.raises(ValueError, match="dataflow"):
        ss.config_text(dataflow="xy")


def test_topology_rows_in_scalesims_gemm_order():
    text = ss.topology_text([("a", (1024, 512, 2048)), ("b", (3, 5, 7))])
    lines = text.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Layer")
    # SCALE-Sim drops the text after a row's last comma and reads name, M, N, K
    rows = [[c.strip() for c in line.split(",")[:-1]] for line in lines[1:]]
    assert rows == [["a", "1024", "2048", "512"], ["b", "3", "7", "5"]]
    with pytest.raises(ValueError, match="comma"):
        ss.topology_text([("a,b", (1, 1, 1))])


def test_parse_shape():
    assert ss.parse_shape("2304x4096x1376") == (2304, 4096, 1376)
    assert ss.parse_shape("8X4X2") == (8, 4, 2)
    for bad in ("1024x1024", "axbxc", "0x1x1", ""):
        with pytest.raises(ValueError, match="shape"):
            ss.parse_shape(bad)


def test_read_compute_report(tmp_path):
    p = tmp_path / "COMPUTE_REPORT.csv"
    # the header and row format of simulator.generate_reports: "id, v, v, ...,"
    p.write_text(
        "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %,"
        " Compute Util %,\n0, 14179, 1277, 0, 25.05, 100.0, 20.0375,\n1, 9, 8, 1, 0.5, 1.0, 2.0,\n"
    )
    rows = ss.read_compute_report(p)
    assert rows[0] == {
        "layer_id": 0,
        "total_cycles_incl_prefetch": 14179,
        "total_cycles": 1277,
        "stall_cycles": 0,
        "overall_util_pct": 25.05,
        "mapping_efficiency_pct": 100.0,
        "compute_util_pct": 20.0375,
    }
    assert (rows[1]["layer_id"], rows[1]["total_cycles"], rows[1]["stall_cycles"]) == (1, 8, 1)
    p.write_text("LayerID, a,\n0, 1, 2,\n")
    with pytest.raises(ValueError, match=r"COMPUTE_REPORT.csv:2: expected 7 values"):
        ss.read_compute_report(p)


@pytest.mark.skipif(not SCALESIM_PY.exists(), reason="SCALE-Sim's venv (.venv-scalesim) is absent")
def test_scalesim_reads_our_files(tmp_path):
    """SCALE-Sim's own parsers read the config, topology and layout we write."""
    (tmp_path / "c.cfg").write_text(ss.config_text("r", 320, 256, "ws", 64, 32, 16))
    (tmp_path / "t.csv").write_text(ss.topology_text([("g1", (1024, 512, 2048)), ("g2", (3, 5, 7))]))
    (tmp_path / "l.csv").write_text(ss.layout_text())
    code = (
        "import json, sys\n"
        "from scalesim.scale_config import scale_config\n"
        "from scalesim.topology_utils import topologies\n"
        "from scalesim.layout_utils import layouts\n"
        "c = scale_config(); c.read_conf_file(sys.argv[1])\n"
        "t = topologies(); t.load_arrays(topofile=sys.argv[2], mnk_inputs=True); t.topo_calc_hyperparams()\n"
        "l = layouts(); l.load_arrays(layoutfile=sys.argv[3], mnk_inputs=True)\n"
        "print(json.dumps([c.valid_conf_flag, c.array_rows, c.array_cols, c.df, c.ifmap_sz_kb, c.filter_sz_kb,"
        " c.ofmap_sz_kb, c.use_user_bandwidth, c.sparsity_support, t.get_num_layers(),"
        " [t.calc_spatio_temporal_params('ws', i) for i in range(2)], l.num_layers]))\n"
    )
    out = subprocess.run(
        [str(SCALESIM_PY), "-c", code, *(str(tmp_path / f) for f in ("c.cfg", "t.csv", "l.csv"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # weight stationary: (array rows used: the window K, columns: the filters N, time: the ifmap rows M)
    assert got == [True, 320, 256, "ws", 64, 32, 16, False, False, 2, [[512, 2048, 1024], [5, 7, 3]], 0]


def _gemm_row(shape, sim_s, correct=True, cycles=1000):
    return {
        "shape": shape,
        "cycles": cycles,
        "utilisation": 0.5,
        "sim_s": sim_s,
        "compile_s": 3.0,
        "generate_s": 1.0,
        "sim_cycles_per_s": cycles / sim_s,
        "correct": correct,
    }


def _ss_row(shape, wall_s, cycles=2000):
    return {
        "shape": shape,
        "wall_s": wall_s,
        "total_cycles": cycles,
        "total_cycles_incl_prefetch": cycles + 5,
        "stall_cycles": 0,
        "overall_util_pct": 30.0,
    }


def test_compare_and_targets():
    gemm = [_gemm_row("320x320x320", 0.5), _gemm_row("1024x1024x1024", 2.0)]
    scal = {"results": [_ss_row("1024x1024x1024", 120.0), _ss_row("64x64x64", 1.0)]}
    comp = bench.compare(gemm, scal)
    assert [c["shape"] for c in comp] == ["1024x1024x1024"]  # only shapes both ran
    (c,) = comp
    assert c["speedup"] == 60.0 and c["speedup_incl_compile"] == 20.0  # 120 / 2, 120 / (2 + 3 + 1)
    assert (c["lpu_cycles"], c["scalesim_cycles"]) == (1000, 2000)
    sections = {
        "mem_vxm": {"rows": [{"config": "tiny", "cycles_per_s": 9e9}, {"config": "groqchip1", "cycles_per_s": 60e3}]},
        "mxm": {"rows": [{"config": "groqchip1", "cycles_per_s": 24_999.0}]},
        "minilm": {"rows": [{"seq_len": 128, "layers": 6, "sim_s": 9.0, "total_cold_s": 31.0}]},
    }
    t = {r["target"]: r for r in bench.targets(sections, comp, 128)}
    assert set(t) == {k for k, *_ in bench.TARGETS}
    assert (t["mem_vxm_groqchip1"]["measured"], t["mem_vxm_groqchip1"]["pass"]) == (60e3, True)
    assert t["mxm_groqchip1"]["pass"] is False
    assert (t["gemm_1024_vs_scalesim"]["measured"], t["gemm_1024_vs_scalesim"]["pass"]) == (60.0, True)
    assert t["minilm_128_sim"]["pass"] is True and t["minilm_128_total"]["pass"] is False
    # a wrong result does not count; a shorter MiniLM run is not the target's; absent sections are not measured
    comp_bad = bench.compare([_gemm_row("1024x1024x1024", 2.0, correct=False)], scal)
    sections["minilm"]["rows"][0]["seq_len"] = 16
    t = {r["target"]: r for r in bench.targets(sections, comp_bad, 16)}
    assert t["gemm_1024_vs_scalesim"]["pass"] is None and t["minilm_128_sim"]["measured"] is None
    assert all(r["pass"] is None for r in bench.targets({}, [], 128))


@pytest.fixture(scope="module")
def machine():
    return bench.machine_info()


def test_tables_render_every_part(machine):
    result = {
        "machine": machine,
        "sections": {
            "gemm": {"rows": [_gemm_row("1024x1024x1024", 2.0)], "runs": [{"shape": "1024x1024x1024", "wall_s": 1}]},
        },
        "scalesim": {"skipped": "SCALE-Sim's venv is absent"},
        "comparison": [],
        "targets": bench.targets({}, [], 128),
    }
    titles = [t for t, _, _ in bench.tables(result)]
    assert titles[0] == "machine" and titles[-1].startswith("targets")
    assert any(t.startswith("GEMM") for t in titles) and "SCALE-Sim" in titles
    text = bench.plain_table("t", ["a", "bbb"], [["xxxx", "1"], ["y", "22"]])
    assert text.splitlines() == ["t", "a     bbb", "xxxx  1  ", "y     22 "]
    md = bench.markdown_table("t", ["shape", "cycles"], [["1x2x3", "4"]])
    assert md.splitlines() == ["**t**", "", "| shape | cycles |", "|---|---:|", "| 1x2x3 | 4 |"]


def test_machine_info(machine):
    m = machine
    for k in ("cpu_model", "cpus", "cpus_usable", "ram_gib", "jax", "backend", "date_utc", "git_commit", "git_dirty"):
        assert k in m, k
    assert m["cpus"] >= 1 and m["ram_gib"] > 0
    assert m["git_commit"] is None or (len(m["git_commit"]) == 40 and int(m["git_commit"], 16) >= 0)


def test_subprocess_peak_memory_and_exit_status():
    """ru_maxrss of the child alone: a child that touches 200 MiB reports at least that, an idle one much less;
    the exit status passes through. Spawned from a small process, as bench.py's parent is (a child's ru_maxrss
    starts from its parent's resident size at the fork)."""
    big = "import sys; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); sys.exit(3)"
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(ROOT / 'scripts' / 'bench.py')!r})\n"
        "b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
        f"r = b.run_subprocess([sys.executable, '-c', {big!r}], timeout=120)\n"
        "s = b.run_subprocess([sys.executable, '-c', 'print(1234)'])\n"
        "print(json.dumps([r, s]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r, s = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["rc"] == 3 and r["peak_rss_mb"] >= 200
    assert s["rc"] == 0 and s["peak_rss_mb"] < 100 and "1234" in s["log_tail"]
    assert not r["timed_out"] and not s["timed_out"]


def test_subprocess_timeout():
    r = bench.run_subprocess([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"], timeout=3)
    assert r["timed_out"] and r["rc"] == -9 and r["wall_s"] < 30 and "x" in r["log_tail"]


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--cycles", "100", "--chunk", "64"], "multiples of --chunk"),
        (["--shapes", "12x3"], "shape must look like"),
        (["--only", "nope"], "invalid choice"),
        (["--scaling-lengths", "100"], "powers of two"),
        (["--from-json", "/nonexistent/bench.json"], "cannot read /nonexistent/bench.json"),
    ],
)
def test_bad_arguments_one_line(argv, msg, capsys):
    try:
        code = bench.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and msg in err[0], err


@pytest.mark.slow
def test_quick_run_writes_every_key(tmp_path):
    """A real run of the small sections on tiny: the JSON holds the machine, every section and the targets."""
    out = tmp_path / "b.json"
    argv = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--only", "mem_vxm", "mxm", "--configs", "tiny"]
    argv += ["--cycles", "256", "--chunk", "128", "--mxm-warm", "128", "--json", str(out), "--plain", "--quiet"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert set(d) >= {"suite", "machine", "args", "sections", "scalesim", "comparison", "targets", "total_wall_s"}
    assert set(d["sections"]) == {"mem_vxm", "mxm"}
    (r,) = d["sections"]["mem_vxm"]["rows"]
    assert r["config"] == "tiny" and r["cycles"] == 256 and r["hazards"] == 0 and r["still_running"]
    assert r["cycles_per_s"] == pytest.approx(256 / r["wall_s"])
    (m,) = d["sections"]["mxm"]["rows"]
    assert m["planes_used"] == 4 and m["hazards"] == 0 and 0 < m["utilisation"] <= 1
    assert d["sections"]["mem_vxm"]["peak_rss_mb"] > 50
    assert "MEM+VXM load" in p.stdout and "targets" in p.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SCALESIM_PY.exists(), reason="SCALE-Sim's venv (.venv-scalesim) is absent")
def test_scalesim_runs_one_gemm(tmp_path):
    out = tmp_path / "s.json"
    p = subprocess.run(
        [str(SCALESIM_PY), str(ROOT / "scripts" / "scalesim_gemm.py"), "--shapes", "64x64x64", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    (r,) = json.loads(out.read_text())["results"]
    # one fold of a 320x320 weight-stationary array: at least the 64 rows streamed plus the array's fill
    assert r["shape"] == "64x64x64" and r["stall_cycles"] == 0 and r["total_cycles"] >= 64 + 320
    assert r["wall_s"] > 0
