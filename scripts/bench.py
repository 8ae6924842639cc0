"""The lpu_jax benchmark suite: simulator speed, GEMMs, MiniLM, scaling, and the side-by-side with SCALE-Sim.

    python scripts/bench.py --json docs/results/bench_cpu2.json            # everything (MiniLM seq 128: slow)
    python scripts/bench.py --skip minilm                                  # the quick sections
    python scripts/bench.py --only mem_vxm mxm --configs tiny              # a few sections, small sizes

Sections (docs/benchmarks.md says what each measures and how):
  mem_vxm   simulated cycles/s on `programs.mem_vxm_load` (every MEM slice and VXM ALU busy), per config;
  mxm       simulated cycles/s while a GEMM kernel keeps all four MXM planes busy with MEM feeding them;
  gemm      the GEMM shapes of the MXM issue (int8, bit-exact against numpy): cycles, compile, simulate, cycles/s;
  minilm    the MiniLM-L6 forward pass: compile, simulated cycles, simulate wall time, cosine vs flax;
  scaling   us per simulated cycle against the number of MEM slices and the program length (size class);
  scalesim  SCALE-Sim v3 on the same GEMM shapes, run in its own venv (skipped with a note when it is absent).

Each section (each GEMM shape) runs in a fresh subprocess of this script (`--section NAME --json-part FILE`), so
its compile caches are cold and its peak memory (ru_maxrss, read by the parent with os.wait4) is its own. The
JSON holds the machine, the arguments, every section's rows, the SCALE-Sim comparison and the issue's targets,
each with its measured value and pass/fail.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # bench_gemm and scalesim_gemm live next to this file
    sys.path.insert(0, str(HERE))

SECTIONS = ("mem_vxm", "mxm", "gemm", "minilm", "scaling", "scalesim")
DEFAULT_SHAPES = ("320x320x320", "1024x1024x1024", "2304x4096x1376", "4096x4096x4096")
"""The MXM issue's shapes (scripts/bench_gemm.py's DEFAULT_SHAPES)."""
MXM_SHAPES = {"tiny": "96x96x96", "groqchip1": "1280x2560x1280"}
"""The mxm section's GEMM per config: on groqchip1 its schedule keeps all four planes busy (97% of peak) for
10,563 cycles; tiny's 2 KiB of SRAM per slice holds no GEMM that fills its planes (21% of peak)."""
MINILM_SENTENCE = "The cat sat."
SCALESIM_PYTHON = ROOT / ".venv-scalesim" / "bin" / "python"

TARGETS = (
    # (key, description, unit, threshold, direction)
    ("mem_vxm_groqchip1", "groqchip1 MEM+VXM load: simulated cycles/s", "cycles/s", 50_000, ">="),
    ("mxm_groqchip1", "groqchip1 all four MXM planes busy: simulated cycles/s", "cycles/s", 25_000, ">="),
    ("gemm_1024_vs_scalesim", "1024^3 int8 GEMM simulated bit-exact: SCALE-Sim wall / our wall", "x", 50, ">="),
    ("minilm_128_sim", "MiniLM-L6 seq 128: simulate wall time", "s", 10, "<"),
    ("minilm_128_total", "MiniLM-L6 seq 128: wall time with every compile (cold)", "s", 30, "<"),
)


# ---------------------------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, cores, RAM, Python/jax versions and backend, the date (UTC) and the git commit."""
    info: dict = {"cpu_model": None, "cpus": os.cpu_count(), "ram_gib": None}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cpus_usable"] = os.cpu_count()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu_model"] = platform.processor() or None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    info["machine"] = platform.machine()
    info["python"] = platform.python_version()
    info["date_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    info["git_commit"] = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    info["git_dirty"] = None if dirty is None else bool(dirty)
    # jax's details from a child: the parent stays small, because a child's ru_maxrss starts from the parent's
    # resident size at the fork (Linux keeps the larger of the two across exec)
    code = (
        "import jax, json; print(json.dumps([jax.__version__, jax.default_backend(), [str(d) for d in jax.devices()]]))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        info["jax"], info["backend"], info["devices"] = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        info["jax"] = info["backend"] = info["devices"] = None
    return info


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# ---------------------------------------------------------------------------------------------- sections
# Each runs in its own process and returns a JSON-able dict with a "rows" list.


def _config(name: str):
    import lpu_jax as L

    if name not in ("tiny", "small", "groqchip1"):
        raise ValueError(f"unknown config {name!r}; known: tiny, small, groqchip1")
    return getattr(L, name)()


def _timed_rate(cfg, arr, make_state, warm: int, cycles: int, chunk: int, repeats: int = 2, units: str = "auto"):
    """Compile (one scan of `chunk` cycles on a scratch state), then the best of `repeats` timed runs of `cycles`
    cycles that start after `warm` untimed cycles from `make_state()`. Returns (compile_s, best_s, final state).
    `units`: `sim.run`'s (auto: the units the program does not use are left out of the compiled cycle)."""
    import lpu_jax as L

    t0 = time.perf_counter()
    s, _ = L.run(cfg, arr, make_state(), chunk, chunk=chunk, donate=True, units=units)
    s.cycle.block_until_ready()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        s = make_state()
        if warm:
            s, _ = L.run(cfg, arr, s, warm, chunk=chunk, donate=True, units=units)
            s.cycle.block_until_ready()
        t0 = time.perf_counter()
        s, _ = L.run(cfg, arr, s, cycles, chunk=chunk, donate=True, units=units)
        s.cycle.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return compile_s, best, s


def section_mem_vxm(args) -> dict:
    """scripts/bench_sim.py's measurement: the program runs cycles + chunk cycles, so every timed cycle is busy."""
    import numpy as np

    import lpu_jax as L
    from lpu_jax import programs

    rows = []
    for name in args.configs:
        cfg = _config(name)
        arr = L.encode(cfg, programs.mem_vxm_load(cfg, args.cycles + args.chunk))
        compile_s, best, s = _timed_rate(
            cfg, arr, lambda: L.init_state(cfg), 0, args.cycles, args.chunk, units=args.units
        )
        rows.append(
            {
                "config": cfg.name,
                "mem_slices": cfg.n_mem,
                "vxm_alus": cfg.vxm_alus,
                "busy_queues": int(np.count_nonzero(arr[:, 0, 0])),
                "cycles": args.cycles,
                "wall_s": best,
                "cycles_per_s": args.cycles / best,
                "us_per_cycle": best / args.cycles * 1e6,
                "compile_s": compile_s,
                "hazards": int(np.asarray(s.hazards.count).sum()),
                "still_running": not L.is_idle(s, arr),
            }
        )
    return {"rows": rows}


def section_mxm(args) -> dict:
    """A GEMM kernel keeps the four MXM planes busy, MEM feeding them: time `cycles` cycles after `warm` cycles
    (the first weights installed), with the inputs placed in MEM, best of 2."""
    import numpy as np
    from scalesim_gemm import parse_shape

    import lpu_jax as L
    from lpu_jax import isa
    from lpu_jax.kernels import gemm

    rows = []
    for name in args.configs:
        cfg = _config(name)
        shape = args.mxm_shape if args.mxm_shape else MXM_SHAPES.get(cfg.name, MXM_SHAPES["tiny"])
        M, K, N = parse_shape(shape)
        t0 = time.perf_counter()
        k = gemm(cfg, M, K, N, "i8")
        gen_s = time.perf_counter() - t0
        warm = min(args.mxm_warm, max(0, k.cycles - args.cycles))
        warm -= warm % args.chunk  # whole scans: the timed runs reuse the one compiled scan length
        cycles = min(args.cycles, k.cycles - warm)
        cycles -= cycles % args.chunk
        if cycles <= 0:
            raise ValueError(f"mxm: the {shape} GEMM runs {k.cycles} cycles, fewer than one chunk of {args.chunk}")
        rng = np.random.default_rng(args.seed)
        a = rng.integers(-128, 128, (M, K), dtype=np.int8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        img = k.mem_image({"a": a, "b": b})
        arr = isa.encode(cfg, k.program)
        compile_s, best, s = _timed_rate(
            cfg, arr, lambda: L.init_state(cfg, img), warm, cycles, args.chunk, units=args.units
        )
        planes_used = len({q.split(".")[1] for q, v in k.program.queues.items() if q.startswith("MXM.") and v})
        rows.append(
            {
                "config": cfg.name,
                "shape": shape,
                "planes": cfg.n_planes,
                "planes_used": planes_used,
                "schedule_cycles": k.cycles,
                "utilisation": k.utilisation,
                "generate_s": gen_s,
                "warm_cycles": warm,
                "cycles": cycles,
                "wall_s": best,
                "cycles_per_s": cycles / best,
                "us_per_cycle": best / cycles * 1e6,
                "compile_s": compile_s,
                "hazards": int(np.asarray(s.hazards.count).sum()),
            }
        )
    return {"rows": rows}


def section_gemm(args) -> dict:
    """One GEMM shape (scripts/bench_gemm.bench: int8, bit-exact check against numpy) on groqchip1."""
    import bench_gemm
    from scalesim_gemm import parse_shape

    import lpu_jax as L

    r = bench_gemm.bench(L.groqchip1(), parse_shape(args.shape), "i8", check=True, seed=args.seed, units=args.units)
    return {"rows": [r]}


def section_minilm(args) -> dict:
    """Compile MiniLM for groqchip1, compile the simulator on a scratch state, simulate one sentence, compare."""
    import numpy as np

    from lpu_jax.embed import ChipEmbedder
    from lpu_jax.sim import run
    from lpu_jax.state import init_state

    t0 = time.perf_counter()
    emb = ChipEmbedder("fp16", args.minilm_seq, layers=args.minilm_layers)
    compile_s = time.perf_counter() - t0
    rep = emb.report()
    # the simulator's own (XLA) compile, on a scratch state with the same program: Compiled.run's scan shapes
    t0 = time.perf_counter()
    s, _ = run(emb.cfg, emb.compiled.encoded(1024), init_state(emb.cfg), 256, chunk=256, donate=True)
    s.cycle.block_until_ready()
    sim_compile_s = time.perf_counter() - t0
    del s
    vec, runs = emb.embed([MINILM_SENTENCE])
    ref = emb.reference([MINILM_SENTENCE])
    sim_s = runs[0].wall_seconds
    return {
        "rows": [
            {
                "model": "all-MiniLM-L6-v2",
                "layers": args.minilm_layers or 6,
                "policy": "fp16",
                "seq_len": args.minilm_seq,
                "sentence": MINILM_SENTENCE,
                "instructions": rep.instructions,
                "cycles": rep.cycles,
                "latency_us": rep.latency_us,
                "compile_s": compile_s,
                "sim_compile_s": sim_compile_s,
                "sim_s": sim_s,
                "sim_cycles_per_s": rep.cycles / sim_s,
                "total_cold_s": compile_s + sim_compile_s + sim_s,
                "hazards": runs[0].hazards,
                "cosine_vs_flax_fp32": float(np.dot(vec[0], ref[0])),
            }
        ]
    }


def section_scaling(args) -> dict:
    """us per simulated cycle of the MEM+VXM load on groqchip1 geometry with fewer/more MEM slices, and on
    groqchip1 with the same program padded to longer size classes (HALT rows)."""
    import lpu_jax as L
    from lpu_jax import programs
    from lpu_jax.config import standard_floorplan

    base = L.groqchip1()
    rows = []

    def one(kind, cfg, length=None):
        arr = L.encode(cfg, programs.mem_vxm_load(cfg, args.scaling_cycles + args.chunk), length)
        compile_s, best, _ = _timed_rate(
            cfg, arr, lambda: L.init_state(cfg), 0, args.scaling_cycles, args.chunk, units=args.units
        )
        rows.append(
            {
                "vary": kind,
                "mem_slices": cfg.n_mem,
                "program_length": int(arr.shape[1]),
                "cycles": args.scaling_cycles,
                "wall_s": best,
                "us_per_cycle": best / args.scaling_cycles * 1e6,
                "cycles_per_s": args.scaling_cycles / best,
                "compile_s": compile_s,
            }
        )

    for h in args.scaling_slices:
        if h < 1:
            raise ValueError(f"--scaling-slices: MEM slices per hemisphere must be >= 1, got {h}")
        one("mem_slices", base.replace(name=f"groqchip1_mem{2 * h}", floorplan=standard_floorplan(h)))
    for length in args.scaling_lengths:
        one("program_length", base, length)
    return {"rows": rows}


SECTION_FUNCS = {
    "mem_vxm": section_mem_vxm,
    "mxm": section_mxm,
    "gemm": section_gemm,
    "minilm": section_minilm,
    "scaling": section_scaling,
}


# ---------------------------------------------------------------------------------------------- the driver


def _child_argv(args, section: str, part: Path, **extra) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--section", section, "--json-part", str(part)]
    argv += ["--configs", *args.configs, "--cycles", str(args.cycles), "--chunk", str(args.chunk)]
    argv += ["--units", args.units]
    argv += ["--mxm-warm", str(args.mxm_warm), "--seed", str(args.seed)]
    if args.mxm_shape:
        argv += ["--mxm-shape", args.mxm_shape]
    argv += ["--minilm-seq", str(args.minilm_seq)]
    if args.minilm_layers:
        argv += ["--minilm-layers", str(args.minilm_layers)]
    argv += ["--scaling-cycles", str(args.scaling_cycles)]
    argv += ["--scaling-slices", *map(str, args.scaling_slices), "--scaling-lengths", *map(str, args.scaling_lengths)]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def run_subprocess(argv: list[str], timeout: float | None = None) -> dict:
    """Run argv; returns rc, wall_s, peak_rss_mb (the child's ru_maxrss from os.wait4), timed_out and the tail of
    its output. Past `timeout` seconds the child is killed (rc -9)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=err, stderr=subprocess.STDOUT, cwd=ROOT, text=True)
        timed_out = False
        while True:  # os.wait4 reaps the child itself (Popen.wait would, and lose the rusage)
            pid, status, ru = os.wait4(p.pid, os.WNOHANG if timeout is not None else 0)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                timed_out = True
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        wall = time.perf_counter() - t0
        err.seek(0)
        tail = err.read()[-4000:]
    return {"rc": rc, "wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "timed_out": timed_out, "log_tail": tail}


def run_section(args, section: str, **extra) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "part.json"
        res = run_subprocess(_child_argv(args, section, part, **extra))
        out = json.loads(part.read_text()) if part.exists() else {"rows": []}
    out.update(res)
    if res["rc"] != 0:
        out["error"] = (res["log_tail"].strip().splitlines() or ["(no output)"])[-1]
    if res["rc"] == 0:
        out.pop("log_tail")
    return out


def run_scalesim(args, shapes) -> dict:
    """SCALE-Sim on `shapes` in its own venv; {"skipped": why} when the venv is absent."""
    py = Path(args.scalesim_python)
    if not py.exists():
        return {
            "skipped": f"SCALE-Sim's venv is absent ({py}); create it with: python -m venv .venv-scalesim && "
            ".venv-scalesim/bin/pip install scalesim==3.0.0 'numpy<2.3'"
        }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scalesim.json"
        argv = [str(py), str(HERE / "scalesim_gemm.py"), "--json", str(out), "--shapes", *shapes]
        res = run_subprocess(argv, timeout=args.scalesim_timeout)
        data = json.loads(out.read_text()) if out.exists() else {"results": []}
    data.update(res)
    done = {r["shape"] for r in data["results"]}
    if res["timed_out"]:
        left = [s for s in shapes if s not in done]
        data["note"] = f"stopped after --scalesim-timeout {args.scalesim_timeout:g} s; not measured: {', '.join(left)}"
    elif res["rc"] != 0:
        data["error"] = (res["log_tail"].strip().splitlines() or ["(no output)"])[-1]
    if res["rc"] == 0:
        data.pop("log_tail")
    return data


def compare(gemm_rows: list[dict], scalesim: dict) -> list[dict]:
    """One row per shape both ran: our cycles and wall times next to SCALE-Sim's, and the speed ratios."""
    theirs = {r["shape"]: r for r in scalesim.get("results", [])}
    out = []
    for r in gemm_rows:
        s = theirs.get(r["shape"])
        if s is None:
            continue
        out.append(
            {
                "shape": r["shape"],
                "lpu_cycles": r["cycles"],
                "lpu_utilisation": r["utilisation"],
                "scalesim_cycles": s["total_cycles"],
                "scalesim_cycles_incl_prefetch": s["total_cycles_incl_prefetch"],
                "scalesim_stall_cycles": s["stall_cycles"],
                "scalesim_util_pct": s["overall_util_pct"],
                "lpu_sim_s": r["sim_s"],
                "lpu_compile_s": r["compile_s"],
                "lpu_generate_s": r["generate_s"],
                "scalesim_wall_s": s["wall_s"],
                "speedup": s["wall_s"] / r["sim_s"],
                "speedup_incl_compile": s["wall_s"] / (r["sim_s"] + r["compile_s"] + r["generate_s"]),
                "lpu_bit_exact": r["correct"],
            }
        )
    return out


def targets(sections: dict, comparison: list[dict], minilm_seq: int) -> list[dict]:
    """The issue's targets, each with the measured value (None when its section did not run) and pass/fail."""

    def row(sec, **match):
        for r in sections.get(sec, {}).get("rows", []):
            if all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    measured = {}
    r = row("mem_vxm", config="groqchip1")
    measured["mem_vxm_groqchip1"] = r and r["cycles_per_s"]
    r = row("mxm", config="groqchip1")
    measured["mxm_groqchip1"] = r and r["cycles_per_s"]
    c = next((c for c in comparison if c["shape"] == "1024x1024x1024"), None)
    measured["gemm_1024_vs_scalesim"] = c["speedup"] if c and c["lpu_bit_exact"] else None
    r = row("minilm", seq_len=128, layers=6)
    measured["minilm_128_sim"] = r and r["sim_s"]
    measured["minilm_128_total"] = r and r["total_cold_s"]
    out = []
    for key, what, unit, thr, op in TARGETS:
        v = measured[key]
        ok = None if v is None else (v >= thr if op == ">=" else v < thr)
        out.append({"target": key, "what": what, "unit": unit, "threshold": f"{op} {thr}", "measured": v, "pass": ok})
    return out


def run_suite(args) -> dict:
    chosen = [s for s in SECTIONS if (not args.only or s in args.only) and s not in (args.skip or ())]
    t_start = time.perf_counter()
    result: dict = {"suite": "lpu_jax bench", "machine": machine_info(), "args": vars(args).copy(), "sections": {}}
    result["args"].pop("section", None)
    result["args"].pop("json_part", None)
    sections = result["sections"]
    for sec in chosen:
        if sec == "scalesim":
            continue
        _say(args, f"running {sec} ...")
        if sec == "gemm":
            parts = [run_section(args, "gemm", shape=shape) for shape in args.shapes]
            sections["gemm"] = {
                "rows": [r for p in parts for r in p["rows"]],
                "runs": [
                    {k: v for k, v in p.items() if k != "rows"} | {"shape": s} for p, s in zip(parts, args.shapes)
                ],
            }
        else:
            sections[sec] = run_section(args, sec)
        _say(args, f"  {sec} done in {_section_wall(sections[sec]):.0f} s")
    if "scalesim" in chosen:
        _say(args, "running scalesim ...")
        result["scalesim"] = run_scalesim(args, args.shapes)
    else:
        result["scalesim"] = {"skipped": "not selected"}
    result["comparison"] = compare(sections.get("gemm", {}).get("rows", []), result["scalesim"])
    result["targets"] = targets(sections, result["comparison"], args.minilm_seq)
    result["total_wall_s"] = time.perf_counter() - t_start
    return result


def _section_wall(sec: dict) -> float:
    if "runs" in sec:
        return sum(r["wall_s"] for r in sec["runs"])
    return sec.get("wall_s", 0.0)


def _say(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the table


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float) and not spec:
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return format(v, spec)


LEFT_COLUMNS = frozenset(
    ("config", "shape", "GEMM", "target", "threshold", "vary", "cpu", "jax", "backend", "date (UTC)", "commit", "note")
)
"""Text columns, aligned left (numbers are aligned right)."""


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows of strings) for every part of the result, in the order printed."""
    out = []
    m = result["machine"]
    out.append(
        (
            "machine",
            ["cpu", "cores", "RAM GiB", "jax", "backend", "date (UTC)", "commit"],
            [
                [
                    str(m.get("cpu_model")),
                    str(m.get("cpus_usable")),
                    _fmt(m.get("ram_gib")),
                    str(m.get("jax")),
                    str(m.get("backend")),
                    str(m.get("date_utc")),
                    (m.get("git_commit") or "-")[:10] + ("+dirty" if m.get("git_dirty") else ""),
                ]
            ],
        )
    )
    secs = result["sections"]
    for sec in secs.values():
        if sec.get("error"):
            out.append(("error", ["section", "error"], [[str(sec.get("section", "?")), sec["error"]]]))
    if "mem_vxm" in secs:
        s = secs["mem_vxm"]
        out.append(
            (
                f"MEM+VXM load (peak RSS {_fmt(s.get('peak_rss_mb'), ',.0f')} MB)",
                ["config", "MEM", "ALUs", "busy queues", "cycles", "cycles/s", "us/cycle", "compile s", "hazards"],
                [
                    [r["config"], r["mem_slices"], r["vxm_alus"], r["busy_queues"], r["cycles"]]
                    + [_fmt(r["cycles_per_s"], ",.0f"), _fmt(r["us_per_cycle"], ".1f"), _fmt(r["compile_s"], ".1f")]
                    + [r["hazards"]]
                    for r in s["rows"]
                ],
            )
        )
    if "mxm" in secs:
        s = secs["mxm"]
        out.append(
            (
                f"all MXM planes busy (GEMM kernel; peak RSS {_fmt(s.get('peak_rss_mb'), ',.0f')} MB)",
                ["config", "GEMM", "MXM use", "timed cycles", "cycles/s", "us/cycle", "compile s", "hazards"],
                [
                    [r["config"], r["shape"], _fmt(r["utilisation"], ".1%"), f"{r['warm_cycles']}+{r['cycles']}"]
                    + [_fmt(r["cycles_per_s"], ",.0f"), _fmt(r["us_per_cycle"], ".1f"), _fmt(r["compile_s"], ".1f")]
                    + [r["hazards"]]
                    for r in s["rows"]
                ],
            )
        )
    if "gemm" in secs:
        s = secs["gemm"]
        peaks = {r["shape"]: r.get("peak_rss_mb") for r in s["runs"]}
        out.append(
            (
                "GEMM int8 on groqchip1 (bit-exact vs numpy)",
                ["shape", "cycles", "MXM use", "gen s", "compile s", "sim s", "cycles/s", "peak MB", "exact"],
                [
                    [r["shape"], f"{r['cycles']:,}", _fmt(r["utilisation"], ".1%"), _fmt(r["generate_s"], ".1f")]
                    + [_fmt(r["compile_s"], ".1f"), _fmt(r["sim_s"], ".2f"), _fmt(r["sim_cycles_per_s"], ",.0f")]
                    + [_fmt(peaks.get(r["shape"]), ",.0f"), _fmt(r["correct"])]
                    for r in s["rows"]
                ],
            )
        )
    if "minilm" in secs:
        s = secs["minilm"]
        out.append(
            (
                f"MiniLM-L6 forward pass, fp16 (peak RSS {_fmt(s.get('peak_rss_mb'), ',.0f')} MB)",
                ["seq", "layers", "cycles", "compile s", "sim compile s", "sim s", "total cold s", "cosine", "haz"],
                [
                    [r["seq_len"], r["layers"], f"{r['cycles']:,}", _fmt(r["compile_s"], ".1f")]
                    + [_fmt(r["sim_compile_s"], ".1f"), _fmt(r["sim_s"], ".1f"), _fmt(r["total_cold_s"], ".1f")]
                    + [_fmt(r["cosine_vs_flax_fp32"], ".6f"), r["hazards"]]
                    for r in s["rows"]
                ],
            )
        )
    if "scaling" in secs:
        s = secs["scaling"]
        out.append(
            (
                "cost per cycle: MEM slices and program length (MEM+VXM load, groqchip1 geometry)",
                ["vary", "MEM slices", "program rows", "us/cycle", "cycles/s", "compile s"],
                [
                    [r["vary"], r["mem_slices"], r["program_length"], _fmt(r["us_per_cycle"], ".1f")]
                    + [_fmt(r["cycles_per_s"], ",.0f"), _fmt(r["compile_s"], ".1f")]
                    for r in s["rows"]
                ],
            )
        )
    ss = result.get("scalesim", {})
    for key in ("skipped", "error", "note"):
        if key in ss:
            out.append(("SCALE-Sim", ["note"], [[ss[key]]]))
    if result.get("comparison"):
        out.append(
            (
                f"side by side with SCALE-Sim {ss.get('scalesim', '')} (320x320 ws array; wall times on this machine)",
                ["shape", "lpu cycles", "SCALE-Sim cycles", "lpu sim s", "SCALE-Sim s", "speedup", "incl. compile"],
                [
                    [c["shape"], f"{c['lpu_cycles']:,}", f"{c['scalesim_cycles']:,}", _fmt(c["lpu_sim_s"], ".2f")]
                    + [
                        _fmt(c["scalesim_wall_s"], ".1f"),
                        _fmt(c["speedup"], ".1f"),
                        _fmt(c["speedup_incl_compile"], ".2f"),
                    ]
                    for c in result["comparison"]
                ],
            )
        )
    out.append(
        (
            "targets (2-core CPU)",
            ["target", "threshold", "measured", "pass"],
            [
                [t["what"], f"{t['threshold']} {t['unit']}", _fmt(t["measured"], ",.1f")]
                + ["-" if t["pass"] is None else ("pass" if t["pass"] else "FAIL")]
                for t in result["targets"]
            ],
        )
    )
    return [(title, head, [[str(c) for c in r] for r in rows]) for title, head, rows in out]


def print_tables(result: dict, plain: bool = False, markdown: bool = False) -> None:
    parts = tables(result)
    if markdown:
        for title, head, rows in parts:
            print(markdown_table(title, head, rows))
        return
    try:
        if plain:
            raise ImportError
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for title, head, rows in parts:
            print(plain_table(title, head, rows))
        return
    con = Console(width=None if sys.stdout.isatty() else 160)
    for title, head, rows in parts:
        t = Table(title=title, title_justify="left")
        for h in head:
            t.add_column(h, justify="left" if h in LEFT_COLUMNS else "right")
        for r in rows:
            t.add_row(*r)
        con.print(t)


def markdown_table(title: str, head: list[str], rows: list[list[str]]) -> str:
    """One part as a GitHub markdown table under a bold title (docs/benchmarks.md's tables)."""
    right = [h not in LEFT_COLUMNS for h in head]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plain_table(title: str, head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [title, "  ".join(h.ljust(n) for h, n in zip(head, w))]
    lines += ["  ".join(c.ljust(n) for c, n in zip(r, w)) for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse with one line on stderr for a bad argument (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="bench.py", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--skip", nargs="+", choices=SECTIONS, help="skip these sections")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this path")
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["tiny", "groqchip1"],
        choices=["tiny", "small", "groqchip1"],
        help="configs of mem_vxm and mxm (default tiny groqchip1)",
    )
    ap.add_argument("--cycles", type=int, default=2048, help="timed cycles of mem_vxm and mxm (default 2048)")
    ap.add_argument("--chunk", type=int, default=256, help="cycles per scan (default 256)")
    ap.add_argument(
        "--units",
        choices=("auto", "all"),
        default="auto",
        help="sim.run's units: auto (default) leaves out the units a program does not use; all steps every unit",
    )
    ap.add_argument("--mxm-shape", help=f"the GEMM MxKxN of the mxm section (default per config: {MXM_SHAPES})")
    ap.add_argument("--mxm-warm", type=int, default=512, help="untimed cycles before the mxm window (default 512)")
    ap.add_argument(
        "--shapes",
        nargs="+",
        default=list(DEFAULT_SHAPES),
        help="GEMM shapes MxKxN of gemm and scalesim (default: the MXM issue's four)",
    )
    ap.add_argument("--minilm-seq", type=int, default=128, help="MiniLM sequence length (default 128)")
    ap.add_argument("--minilm-layers", type=int, help="the first N of MiniLM's 6 layers only (quicker)")
    ap.add_argument("--scaling-cycles", type=int, default=1024, help="timed cycles per scaling row (default 1024)")
    ap.add_argument(
        "--scaling-slices",
        nargs="+",
        type=int,
        default=[4, 11, 22, 44],
        help="MEM slices per hemisphere (default 4 11 22 44)",
    )
    ap.add_argument(
        "--scaling-lengths",
        nargs="+",
        type=int,
        default=[64, 1024, 8192],
        help="program size classes in rows (default 64 1024 8192)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the GEMM inputs (default 0)")
    ap.add_argument(
        "--scalesim-timeout", type=float, default=1800, help="stop SCALE-Sim after this many seconds (default 1800)"
    )
    ap.add_argument("--scalesim-python", default=str(SCALESIM_PYTHON), help="the python of SCALE-Sim's venv")
    ap.add_argument("--plain", action="store_true", help="plain text tables (rich is used when installed)")
    ap.add_argument("--markdown", action="store_true", help="markdown tables (for docs/benchmarks.md)")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON; run nothing")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--section", choices=sorted(SECTION_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--json-part", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    return ap


def check_args(ap, args) -> None:
    from scalesim_gemm import parse_shape

    for flag, v in (("--cycles", args.cycles), ("--chunk", args.chunk), ("--scaling-cycles", args.scaling_cycles)):
        if v < 1:
            ap.error(f"{flag} must be >= 1, got {v}")
    if args.cycles % args.chunk or args.scaling_cycles % args.chunk:
        ap.error(f"--cycles and --scaling-cycles must be multiples of --chunk ({args.chunk})")
    try:
        for s in [*args.shapes, *([args.mxm_shape] if args.mxm_shape else [])]:
            parse_shape(s)
    except ValueError as e:
        ap.error(str(e))
    for n in args.scaling_lengths:
        if n < 64 or n & (n - 1):
            ap.error(f"--scaling-lengths must be powers of two >= 64, got {n}")
    if args.minilm_seq < 2:
        ap.error(f"--minilm-seq must be >= 2, got {args.minilm_seq}")


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    check_args(ap, args)
    if args.section:  # a child: one section, its JSON part, no table
        if args.json_part is None:
            ap.error("--section needs --json-part")
        try:
            out = SECTION_FUNCS[args.section](args)
        except (ValueError, OSError, NotImplementedError) as e:
            print(f"bench.py --section {args.section}: error: {e}", file=sys.stderr)
            return 2
        out["section"] = args.section
        args.json_part.write_text(json.dumps(out, indent=1, default=float))
        return 0
    if args.from_json:  # only the tables of an earlier run
        try:
            result = json.loads(args.from_json.read_text())
        except (OSError, ValueError) as e:
            print(f"bench.py: error: cannot read {args.from_json}: {e}", file=sys.stderr)
            return 2
        print_tables(result, args.plain, args.markdown)
        return 0
    result = run_suite(args)
    print_tables(result, args.plain, args.markdown)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        _say(args, f"wrote {args.json}")
    failed = [s for s, v in result["sections"].items() if v.get("error") or any(r.get("rc") for r in v.get("runs", []))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
